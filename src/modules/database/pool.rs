//! The connections of a worker's I/O thread: at most `database.pool_size`, made when first
//! needed and again after one broke, handed to one task at a time. A task that finds every
//! connection taken waits its turn (first come, first served); the figures say how many are
//! taken and how many tasks wait, for `/metrics`. Runs inside the I/O thread's current-thread
//! runtime: nothing here is `Send`, and nothing needs to be.
//!
//! Every connection ([`open`]) has a connect timeout and TCP keepalives that find a silently
//! dead peer within about a minute, unless the URL chooses its own (a connection that only
//! waits, as a LISTEN does, would otherwise learn of a lost server after the system's two
//! hours).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{Client, Config, Connection, NoTls, Socket};

use crate::log;
use crate::modules::database::migrate::{self, redact};

/// How long a connection attempt may take when the URL does not say.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle time before the first keepalive probe, when the URL does not say.
const KEEPALIVES_IDLE: Duration = Duration::from_secs(30);

/// A worker's connections.
pub struct Pool {
    url: String,
    /// Set on every connection (`SET name TO 'value'`): who this node is, say.
    settings: Vec<(String, String)>,
    idle: RefCell<Vec<Client>>,
    permits: Semaphore,
    size: usize,
    figures: Rc<Figures>,
    /// Told the figures whenever they change.
    watch: Option<Watch>,
}

/// Told the pool's figures when they change.
type Watch = Box<dyn Fn(&Figures)>;

/// What the pool is doing.
#[derive(Debug, Default)]
pub struct Figures {
    /// Connections handed out.
    pub in_use: Cell<usize>,
    /// Tasks waiting for one.
    pub waiting: Cell<usize>,
}

/// A connection handed to one task; back to the pool when dropped, unless it broke.
pub struct Conn<'p> {
    pool: &'p Pool,
    client: Option<Client>,
    _permit: tokio::sync::SemaphorePermit<'p>,
}

impl Pool {
    /// A pool of at most `size` connections (1 at least) to `url`.
    pub fn new(url: &str, size: usize, settings: Vec<(String, String)>) -> Pool {
        let size = size.max(1);
        Pool {
            url: url.to_string(),
            settings,
            idle: RefCell::new(Vec::new()),
            permits: Semaphore::new(size),
            size,
            figures: Rc::new(Figures::default()),
            watch: None,
        }
    }

    /// Calls `f` with the figures whenever they change (for `/metrics`).
    pub fn watch(mut self, f: impl Fn(&Figures) + 'static) -> Pool {
        self.watch = Some(Box::new(f));
        self
    }

    fn changed(&self) {
        if let Some(w) = &self.watch {
            w(&self.figures);
        }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    pub fn figures(&self) -> &Figures {
        &self.figures
    }

    /// A connection: an idle one, or a new one while the pool has room; else waits for one to
    /// come back. An error is the database's (unreachable, refused).
    pub async fn get(&self) -> Result<Conn<'_>, tokio_postgres::Error> {
        let f = &self.figures;
        f.waiting.set(f.waiting.get() + 1);
        self.changed();
        let permit = self.permits.acquire().await;
        f.waiting.set(f.waiting.get() - 1);
        self.changed();
        let permit = permit.expect("the pool's semaphore is never closed");
        let reuse = {
            let mut idle = self.idle.borrow_mut();
            idle.retain(|c| !c.is_closed());
            idle.pop()
        };
        let client = match reuse {
            Some(c) => c,
            None => connect(&self.url, &self.settings).await?,
        };
        f.in_use.set(f.in_use.get() + 1);
        self.changed();
        Ok(Conn {
            pool: self,
            client: Some(client),
            _permit: permit,
        })
    }
}

impl std::ops::Deref for Conn<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("held until dropped")
    }
}

impl std::ops::DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("held until dropped")
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        let f = &self.pool.figures;
        f.in_use.set(f.in_use.get() - 1);
        if let Some(c) = self.client.take() {
            if !c.is_closed() {
                self.pool.idle.borrow_mut().push(c);
            }
        }
        self.pool.changed();
    }
}

/// A connection to `url` with `settings` applied; its driver runs as a task of the current
/// thread's runtime (a `LocalSet`).
pub async fn connect(
    url: &str,
    settings: &[(String, String)],
) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = open(url).await?;
    let shown = redact(url);
    tokio::task::spawn_local(async move {
        if let Err(e) = connection.await {
            log!(Warn, "database: the connection to {shown} ended: {e}");
        }
    });
    for (name, value) in settings {
        let value = value.replace('\'', "''");
        client
            .batch_execute(&format!("SET {name} TO '{value}'"))
            .await?;
    }
    Ok(client)
}

/// A connection to `url` whose driver the caller polls (to see its notifications, say).
pub async fn open(
    url: &str,
) -> Result<(Client, Connection<Socket, NoTlsStream>), tokio_postgres::Error> {
    let mut config: Config = url.parse()?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if !url.contains("keepalives_idle") {
        config.keepalives_idle(KEEPALIVES_IDLE);
    }
    config.connect(NoTls).await
}

/// An error with its causes, as one line: tokio-postgres keeps the server's message there
/// ("db error: ...").
pub fn describe(e: &tokio_postgres::Error) -> String {
    migrate::chain(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_database_is_an_error_and_frees_the_slot() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("postgresql://x@127.0.0.1:{port}/x?connect_timeout=1");
        let pool = Pool::new(&url, 1, Vec::new());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async {
            assert!(pool.get().await.is_err());
            assert!(pool.get().await.is_err(), "the permit came back");
            assert_eq!(pool.figures().in_use.get(), 0);
            assert_eq!(pool.figures().waiting.get(), 0);
        });
    }
}
