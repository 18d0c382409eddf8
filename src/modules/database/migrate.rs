//! `bizzy migrate`: brings the PostgreSQL schema of `database.url` up to date.
//!
//! The schema is versioned SQL, embedded in the binary ([`MIGRATIONS`], the files of
//! `migrations/`). The versions applied are rows of `schema_migrations`, each with the SHA-256
//! of the text that was applied, so that a migration edited after it shipped is refused rather
//! than silently skipped.
//!
//! Several nodes may start at once: the whole run holds a session-level advisory lock
//! ([`LOCK_KEY`]), so the second waits, then finds nothing left to do. Each migration runs in
//! its own transaction with its bookkeeping row: it is applied whole or not at all.
//!
//! Called from the command line (`src/main.rs`) on a current-thread tokio runtime built here;
//! never from a worker's event loop.

use std::error::Error;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio_postgres::{Client, Config, NoTls};

use super::DatabaseConf;
use crate::core::config::Conf;
use crate::log;

/// One versioned step of the schema.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Applied in increasing order; never reused.
    pub version: i32,
    /// The file name without `.sql`, e.g. `0001_people`.
    pub name: &'static str,
    /// SQL run as one transaction (so no `CREATE INDEX CONCURRENTLY`, no `VACUUM`).
    pub sql: &'static str,
}

impl Migration {
    fn sha256(&self) -> Vec<u8> {
        Sha256::digest(self.sql.as_bytes()).as_slice().to_vec()
    }
}

macro_rules! migration {
    ($version:expr, $name:literal) => {
        Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("migrations/", $name, ".sql")),
        }
    };
}

/// The schema, in order.
pub const MIGRATIONS: &[Migration] = &[
    migration!(1, "0001_people"),
    migration!(2, "0002_hives"),
    migration!(3, "0003_sensors"),
    migration!(4, "0004_reports"),
    migration!(5, "0005_rollups"),
    migration!(6, "0006_spool"),
    migration!(7, "0007_occupancy"),
    migration!(8, "0008_sensor_notify"),
    migration!(9, "0009_api_token"),
    migration!(10, "0010_token_notify"),
    migration!(11, "0011_config_notify"),
    migration!(12, "0012_public"),
    migration!(13, "0013_hive_notify"),
    migration!(14, "0014_me"),
    migration!(15, "0015_premium"),
    migration!(16, "0016_threshold_band"),
];

/// The advisory lock every `bizzy migrate` holds while it works: "bizzymig" in ASCII.
pub const LOCK_KEY: i64 = 0x6269_7a7a_796d_6967;

/// How long to wait for a server that does not answer, unless the URL says
/// (`connect_timeout=`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The migrations this run applied, in order: `(version, name)`.
    pub applied: Vec<(i32, &'static str)>,
    /// The highest version in the database afterwards (0: none).
    pub version: i32,
}

/// Why the schema could not be brought up to date.
#[derive(Debug)]
pub enum MigrateError {
    /// The tokio runtime could not be built.
    Runtime(std::io::Error),
    /// `database.url` is not a connection string tokio-postgres accepts.
    Url(tokio_postgres::Error),
    /// The server could not be reached or refused the login.
    Connect {
        url: String,
        source: tokio_postgres::Error,
    },
    /// Taking the lock or reading `schema_migrations` failed.
    Bookkeeping(tokio_postgres::Error),
    /// A migration failed; its transaction was rolled back.
    Apply {
        version: i32,
        name: &'static str,
        source: tokio_postgres::Error,
    },
    /// A migration already applied differs from the one in this binary.
    Changed { version: i32, name: &'static str },
}

impl fmt::Display for MigrateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MigrateError::Runtime(e) => write!(f, "cannot start the runtime: {e}"),
            MigrateError::Url(e) => write!(f, "database.url: {}", chain(e)),
            MigrateError::Connect { url, source } => {
                write!(f, "cannot connect to {url}: {}", chain(source))
            }
            MigrateError::Bookkeeping(e) => {
                write!(f, "cannot read schema_migrations: {}", chain(e))
            }
            MigrateError::Apply {
                version,
                name,
                source,
            } => write!(
                f,
                "migration {version} ({name}) failed and was rolled back: {}",
                chain(source)
            ),
            MigrateError::Changed { version, name } => write!(
                f,
                "migration {version} ({name}) was changed after it was applied; \
                 write a new migration instead"
            ),
        }
    }
}

impl Error for MigrateError {}

/// An error and its causes, as one line (tokio-postgres keeps the server's message in the
/// source).
pub fn chain(e: &dyn Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// Applies the pending [`MIGRATIONS`] to `database.url`.
pub fn migrate(conf: &DatabaseConf) -> Result<Report, MigrateError> {
    migrate_with(&conf.url, MIGRATIONS)
}

/// Applies the pending `migrations` to the database at `url`, on a runtime of its own.
pub fn migrate_with(url: &str, migrations: &[Migration]) -> Result<Report, MigrateError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(MigrateError::Runtime)?;
    rt.block_on(run(url, migrations))
}

/// How long the master waits for the migrations before it starts the workers anyway.
const ON_START_WAIT: Duration = Duration::from_secs(60);

/// `database.migrate_on_start`: runs `bizzy migrate` as a process of its own (the master holds
/// no runtime and no thread when it forks) and waits for it, at most `ON_START_WAIT` (60 s). A
/// database that cannot be reached does not stop the server: it starts, serves, and its first
/// worker applies the migrations once the database answers ([`run`]). Logged either way.
pub fn on_start(conf: &Conf, exe: &Path) {
    if !conf.written::<DatabaseConf>() || !conf.section::<DatabaseConf>().migrate_on_start {
        return;
    }
    let child = std::process::Command::new(exe)
        .arg("migrate")
        .arg("-c")
        .arg(&conf.file)
        .arg("-p")
        .arg(&conf.prefix)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            log!(Error, "migrate: cannot start {}: {e}", exe.display());
            return;
        }
    };
    let started = std::time::Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() < ON_START_WAIT => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let output = |pipe: Option<&mut dyn std::io::Read>| {
        let mut s = String::new();
        if let Some(p) = pipe {
            let _ = p.read_to_string(&mut s);
        }
        s
    };
    let out = output(child.stdout.as_mut().map(|p| p as &mut dyn std::io::Read));
    let err = output(child.stderr.as_mut().map(|p| p as &mut dyn std::io::Read));
    for line in out.lines() {
        log!(Notice, "{}", line.trim_start_matches("bizzy: "));
    }
    match status {
        Some(s) if s.success() => {}
        _ => {
            let why = err
                .lines()
                .last()
                .map(|l| l.trim_start_matches("bizzy: [emerg] ").to_string())
                .unwrap_or_else(|| "no answer in time".into());
            log!(
                Error,
                "{why}: the server starts without it, and applies the migrations once the \
                 database answers"
            );
        }
    }
}

/// Applies the pending `migrations` to the database at `url`, holding the advisory lock.
pub async fn run(url: &str, migrations: &[Migration]) -> Result<Report, MigrateError> {
    let mut client = connect(url).await?;
    // Session-level: held across the per-migration transactions, released by
    // disconnecting, even if this process dies.
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(MigrateError::Bookkeeping)?;
    let done = applied(&client).await?;
    let mut report = Report {
        applied: Vec::new(),
        version: done.iter().map(|d| d.0).max().unwrap_or(0),
    };
    for m in migrations {
        match done.iter().find(|d| d.0 == m.version) {
            Some(d) if d.1 != m.sha256() => {
                return Err(MigrateError::Changed {
                    version: m.version,
                    name: m.name,
                })
            }
            Some(_) => {}
            None => {
                apply(&mut client, m).await?;
                report.applied.push((m.version, m.name));
                report.version = report.version.max(m.version);
            }
        }
    }
    Ok(report)
}

/// Connects with [`CONNECT_TIMEOUT`] unless the URL sets one; the connection is driven by a
/// task on the current runtime.
async fn connect(url: &str) -> Result<Client, MigrateError> {
    let mut config: Config = url.parse().map_err(MigrateError::Url)?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("bizzy migrate");
    }
    let (client, connection) =
        config
            .connect(NoTls)
            .await
            .map_err(|source| MigrateError::Connect {
                url: redact(url),
                source,
            })?;
    tokio::spawn(connection);
    Ok(client)
}

/// Creates `schema_migrations` if needed (under the lock: concurrent `CREATE TABLE IF NOT
/// EXISTS` can still collide) and reads what it holds: `(version, sha256)`.
async fn applied(client: &Client) -> Result<Vec<(i32, Vec<u8>)>, MigrateError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    integer PRIMARY KEY,
                 name       text NOT NULL,
                 sha256     bytea NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(MigrateError::Bookkeeping)?;
    let rows = client
        .query("SELECT version, sha256 FROM schema_migrations", &[])
        .await
        .map_err(MigrateError::Bookkeeping)?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Runs one migration and records it, in one transaction.
async fn apply(client: &mut Client, m: &Migration) -> Result<(), MigrateError> {
    let failed = |source| MigrateError::Apply {
        version: m.version,
        name: m.name,
        source,
    };
    let tx = client.transaction().await.map_err(failed)?;
    tx.batch_execute(m.sql).await.map_err(failed)?;
    tx.execute(
        "INSERT INTO schema_migrations (version, name, sha256) VALUES ($1, $2, $3)",
        &[&m.version, &m.name, &m.sha256()],
    )
    .await
    .map_err(failed)?;
    tx.commit().await.map_err(failed)
}

/// `url` with its password, if any (`user:password@` or `password=`), replaced by `***`, fit
/// for a log or a terminal.
pub fn redact(url: &str) -> String {
    let mut out = redact_userinfo(url);
    if let Some(i) = out.find("password=").map(|i| i + "password=".len()) {
        let end = out[i..].find('&').map_or(out.len(), |j| i + j);
        out.replace_range(i..end, "***");
    }
    out
}

fn redact_userinfo(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let authority_end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| start + i);
    let Some(at) = url[start..authority_end].rfind('@').map(|i| start + i) else {
        return url.to_string();
    };
    match url[start..at].find(':') {
        Some(colon) => format!("{}:***{}", &url[..start + colon], &url[at..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_increase_and_names_match() {
        for pair in MIGRATIONS.windows(2) {
            assert!(pair[0].version < pair[1].version, "{:?}", pair[1].name);
        }
        for m in MIGRATIONS {
            assert!(
                m.name.starts_with(&format!("{:04}_", m.version)),
                "{} is not version {}",
                m.name,
                m.version
            );
            assert!(!m.sql.trim().is_empty());
        }
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgresql://bizzy:s3cret@db:5432/bizzy"),
            "postgresql://bizzy:***@db:5432/bizzy"
        );
        assert_eq!(
            redact("postgresql://bizzy@127.0.0.1/bizzy"),
            "postgresql://bizzy@127.0.0.1/bizzy"
        );
        assert_eq!(
            redact("postgres://h/db?user=a@b"),
            "postgres://h/db?user=a@b"
        );
        assert_eq!(
            redact("postgres://h/db?password=x&user=y"),
            "postgres://h/db?password=***&user=y"
        );
    }
}
