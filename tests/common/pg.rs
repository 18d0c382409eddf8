//! A fresh PostgreSQL database per test, on the cluster that `scripts/with-postgres` started
//! and named in `BIZZY_TEST_PG`; dropped (with its sessions) when the handle drops. A test
//! that needs PostgreSQL and finds no `BIZZY_TEST_PG` fails: it never skips silently.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bizzy::mqtt::auth::secret::hash_secret;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A database of its own for one test.
pub struct TestDb {
    /// `postgresql://postgres@127.0.0.1:PORT/<name>`.
    pub url: String,
    /// The database name.
    pub name: String,
    admin: String,
}

impl TestDb {
    /// Creates an empty database with a name no other test (or run) uses.
    pub fn new() -> TestDb {
        let admin = std::env::var("BIZZY_TEST_PG").unwrap_or_else(|_| {
            panic!(
                "BIZZY_TEST_PG is not set: this test needs PostgreSQL; run it as \
                 `scripts/with-postgres cargo test ...` (scripts/test does)"
            )
        });
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("the clock is after 1970")
            .subsec_nanos();
        let name = format!(
            "bizzy_test_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        query(&admin, &format!("CREATE DATABASE {name}"));
        TestDb {
            url: with_dbname(&admin, &name),
            name,
            admin,
        }
    }

    /// Runs `sql` (one or more statements) in this database; every row they return, as text
    /// (NULL is None).
    pub fn query(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        query(&self.url, sql)
    }

    /// A hive ("The Hive", a bar in Europe/Bucharest, capacity 120, of a new account) with the
    /// sensor `device_id` on it (its secret [`secret_of`]), in a migrated database: their ids.
    pub fn hive_with_sensor(&self, device_id: &str) -> (String, String) {
        let hive = self
            .value(
                "WITH a AS (INSERT INTO account (name) VALUES ('Acme') RETURNING id),
                      ad AS (INSERT INTO address (street, city, zip, country, latitude, longitude)
                             VALUES ('Str. Lipscani 1', 'Bucharest', '030031', 'RO', 44.43, 26.10)
                             RETURNING id)
                 INSERT INTO hive (account_id, address_id, hive_type_id, name, time_zone, capacity)
                 SELECT a.id, ad.id, t.id, 'The Hive', 'Europe/Bucharest', 120
                 FROM a, ad, hive_type t WHERE t.code = 'bar'
                 RETURNING id",
            )
            .expect("a hive id");
        let sensor = self.add_sensor(&hive, device_id);
        (hive, sensor)
    }

    /// Registers the sensor `device_id` on `hive`, its secret [`secret_of`] stored as the
    /// business API stores it: its id.
    pub fn add_sensor(&self, hive: &str, device_id: &str) -> String {
        let hash = hash_secret(secret_of(device_id).as_bytes());
        self.value(&format!(
            "INSERT INTO sensor (device_id, hive_id, secret_hash)
             VALUES ('{device_id}', {hive}, '{hash}')
             RETURNING id"
        ))
        .expect("a sensor id")
    }

    /// The first column of the first row of `sql`.
    pub fn value(&self, sql: &str) -> Option<String> {
        self.query(sql)
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next())
            .unwrap_or_else(|| panic!("no row from {sql}"))
    }
}

impl Default for TestDb {
    fn default() -> TestDb {
        TestDb::new()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // FORCE ends the sessions a failed test may have left behind.
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = try_query(&self.admin, &sql) {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

/// The MQTT password of a sensor the fixtures register: its device id and `-secret`.
pub fn secret_of(device_id: &str) -> String {
    format!("{device_id}-secret")
}

/// `url` naming database `name` instead of its own.
fn with_dbname(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    format!("{}/{name}{query}", &base[..host_end])
}

/// Runs `sql` at `url`; panics with the server's message on an error.
pub fn query(url: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    try_query(url, sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Runs `sql` at `url` through the simple-query protocol, on a runtime of its own.
pub fn try_query(url: &str, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds");
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(|e| describe(&e))?;
        tokio::spawn(conn);
        let messages = client.simple_query(sql).await.map_err(|e| describe(&e))?;
        let mut rows = Vec::new();
        for m in messages {
            if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
                rows.push((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect());
            }
        }
        Ok(rows)
    })
}

/// An error with its source: tokio-postgres keeps the server's message there.
fn describe(e: &tokio_postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}
