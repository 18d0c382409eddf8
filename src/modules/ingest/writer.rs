//! The ingest writer on the worker's I/O thread ([`crate::core::io::Work`]): stores each batch
//! the ingest hook hands it through [`store::write`], one transaction per batch, and answers
//! with the tickets whose acknowledgements may now leave.
//!
//! A batch is answered only once it is committed: while PostgreSQL is unreachable the writer
//! reconnects with a growing delay and tries the same batch again, so nothing acknowledged is
//! ever missing (the acknowledgements wait; the spool that lets them leave meanwhile is the
//! next step). Batches are written one at a time on one connection, in the order they came.

use std::rc::Rc;
use std::time::Duration;

use tokio_postgres::{Client, Config, NoTls};

use crate::core::io::{Served, Work};
use crate::log;
use crate::modules::database::migrate::redact;
use crate::modules::ingest::batch::{Report, Written};
use crate::modules::ingest::conf::IngestConf;
use crate::modules::ingest::store;

/// First and longest wait before trying PostgreSQL again.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// How long a connection attempt may take when the URL does not say.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A batch's answer: its tickets (in batch order) and what the store said.
#[derive(Debug)]
pub struct Answer {
    pub tickets: Vec<Option<u64>>,
    pub written: Written,
    /// When the batch's oldest report was received (for the ingest lag).
    pub oldest: Option<chrono::DateTime<chrono::Utc>>,
}

/// The writer, made on the I/O thread.
pub struct Writer {
    url: String,
    conf: IngestConf,
    /// The connection; `None` until made, and again after it broke.
    client: tokio::sync::Mutex<Option<Client>>,
}

impl Writer {
    pub fn new(url: String, conf: IngestConf) -> Writer {
        Writer {
            url,
            conf,
            client: tokio::sync::Mutex::new(None),
        }
    }

    /// Stores `reports`, trying again until PostgreSQL commits them.
    async fn store(&self, reports: &[Report]) -> Written {
        let mut wait = RETRY_FIRST;
        let mut client = self.client.lock().await;
        loop {
            if client.is_none() {
                match connect(&self.url).await {
                    Ok(c) => *client = Some(c),
                    Err(e) => {
                        log!(
                            Error,
                            "ingest: cannot connect to {}: {e}",
                            redact(&self.url)
                        );
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(RETRY_MAX);
                        continue;
                    }
                }
            }
            let c = client.as_mut().expect("connected just above");
            match store::write(c, reports, &self.conf).await {
                Ok(w) => return w,
                Err(e) => {
                    log!(
                        Error,
                        "ingest: a batch of {} not stored: {e}",
                        reports.len()
                    );
                    if c.is_closed() {
                        *client = None;
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(RETRY_MAX);
                }
            }
        }
    }
}

/// What the event loop asks of its I/O thread.
#[derive(Debug)]
pub enum Job {
    /// Store a batch of reports.
    Store(Vec<Report>),
}

/// The I/O thread's answer to a [`Job`], in kind.
#[derive(Debug)]
pub enum Done {
    Stored(Answer),
}

impl Work for Writer {
    type Request = Job;
    type Answer = Done;

    fn serve(self: Rc<Self>, job: Job) -> Served<Done> {
        Box::pin(async move {
            match job {
                Job::Store(reports) => {
                    let written = self.store(&reports).await;
                    Done::Stored(Answer {
                        tickets: reports.iter().map(|r| r.ticket).collect(),
                        written,
                        oldest: reports.iter().map(|r| r.received_at).min(),
                    })
                }
            }
        })
    }
}

/// A connection to `url`; its driver runs as a task of the I/O thread's runtime.
async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let mut config: Config = url.parse()?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    let (client, connection) = config.connect(NoTls).await?;
    tokio::task::spawn_local(async move {
        if let Err(e) = connection.await {
            log!(Warn, "ingest: the database connection ended: {e}");
        }
    });
    Ok(client)
}
