//! Connections to `database.url` made on a worker's I/O thread: a connect timeout when the URL
//! sets none, and TCP keepalives that find a silently dead peer within about a minute when the
//! URL does not choose its own (a connection that only waits, as a LISTEN does, would
//! otherwise learn of a lost server after the system's two hours).

use std::time::Duration;

use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{Client, Config, Connection, NoTls, Socket};

use crate::log;

/// How long a connection attempt may take when the URL does not say.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle time before the first keepalive probe, when the URL does not say.
const KEEPALIVES_IDLE: Duration = Duration::from_secs(30);

/// A connection to `url` whose driver the caller polls (to see its notifications).
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

/// A connection to `url` whose driver runs as a task of the I/O thread's runtime; `what` names
/// its user in the log line written when it ends with an error.
pub async fn connect(url: &str, what: &'static str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = open(url).await?;
    tokio::task::spawn_local(async move {
        if let Err(e) = connection.await {
            log!(
                Warn,
                "{what}: the database connection ended: {}",
                describe(&e)
            );
        }
    });
    Ok(client)
}

/// An error with its cause: tokio-postgres keeps the server's message there ("db error: ...").
pub fn describe(e: &tokio_postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}
