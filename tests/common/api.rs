//! Helpers of `tests/api_calls.rs`: business API calls routed and run as the HTTP side does
//! (`route`, then `Call::run` on a client), on a migrated database of the test's own, with a
//! small world (a platform admin, an account administered by alice, a hive) to start from.

use bizzy::modules::api::caller::Caller;
use bizzy::modules::api::route::route;
use bizzy::modules::database::migrate::{migrate_with, MIGRATIONS};
use serde_json::{json, Value};
use tokio_postgres::{Client, NoTls};

use crate::common::pg::TestDb;

/// An answer: status, JSON body (null for none), and the field of a validation error.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub field: Option<String>,
}

impl Answer {
    /// (status, field): what a refusal is checked by.
    pub fn refusal(&self) -> (u16, Option<&str>) {
        (self.status, self.field.as_deref())
    }

    /// The `id` of the body.
    pub fn id(&self) -> i64 {
        self.body["id"]
            .as_i64()
            .unwrap_or_else(|| panic!("no id: {self:?}"))
    }
}

pub fn caller(uid: &str, platform_admin: bool) -> Caller {
    Caller {
        uid: uid.into(),
        platform_admin,
    }
}

/// Routes and runs one call on `db`, as the HTTP side does. `target` may carry a query.
pub async fn call(
    db: &Client,
    who: Option<&Caller>,
    method: &str,
    target: &str,
    body: &Value,
) -> Answer {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let bytes = match body {
        Value::Null => Vec::new(),
        b => serde_json::to_vec(b).expect("JSON"),
    };
    let result = match route(method, path, query, &bytes, who) {
        Ok(c) => c.run(db).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(j) if j.body.is_empty() => Answer {
            status: j.status,
            body: Value::Null,
            field: None,
        },
        Ok(j) => Answer {
            status: j.status,
            body: serde_json::from_slice(&j.body).expect("an answer is JSON"),
            field: None,
        },
        Err(e) => Answer {
            status: e.status,
            body: json!({ "code": e.code, "message": e.message }),
            field: e.field,
        },
    }
}

/// Runs `test` on a migrated database of its own (its URL and a client), on a current-thread
/// runtime.
pub fn with_db<F>(test: impl FnOnce(String, Client) -> F)
where
    F: std::future::Future<Output = ()>,
{
    let db = TestDb::new();
    migrate_with(&db.url, MIGRATIONS).expect("the schema applies");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let client = connect(&db.url).await;
        test(db.url.clone(), client).await;
    });
}

/// A client on a connection of its own.
pub async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.expect("connects");
    tokio::spawn(conn);
    client
}

/// A valid hive body named `name` (no reset_time: 04:00).
pub fn hive_body(name: &str) -> Value {
    json!({
        "name": name,
        "type": "bar",
        "address": {"street": "Str. Lipscani 1", "city": "Bucharest", "zip": "030031",
                    "country": "RO", "latitude": 44.43, "longitude": 26.1},
        "time_zone": "Europe/Bucharest",
        "capacity": 120,
    })
}

/// The platform admin (root), an account "Acme" administered by alice, one hive of it, and bob,
/// who administers nothing.
pub struct World {
    pub db: Client,
    pub root: Caller,
    pub alice: Caller,
    pub bob: Caller,
    pub account: i64,
    pub hive: i64,
}

impl World {
    pub async fn new(db: Client) -> World {
        let root = caller("root", true);
        let a = call(
            &db,
            Some(&root),
            "POST",
            "/v1/accounts",
            &json!({"name": "Acme"}),
        )
        .await;
        assert_eq!(a.status, 201, "{a:?}");
        let account = a.id();
        let admin = format!("/v1/accounts/{account}/admins/alice");
        let put = call(&db, Some(&root), "PUT", &admin, &Value::Null).await;
        assert_eq!(put.status, 204, "{put:?}");
        let hives = format!("/v1/accounts/{account}/hives");
        let h = call(&db, Some(&root), "POST", &hives, &hive_body("The Hive")).await;
        assert_eq!(h.status, 201, "{h:?}");
        World {
            db,
            root,
            alice: caller("alice", false),
            bob: caller("bob", false),
            account,
            hive: h.id(),
        }
    }

    /// A call by `who`.
    pub async fn by(&self, who: &Caller, method: &str, target: &str, body: Value) -> Answer {
        call(&self.db, Some(who), method, target, &body).await
    }

    /// A call by alice, the account's admin.
    pub async fn alice(&self, method: &str, target: &str, body: Value) -> Answer {
        self.by(&self.alice, method, target, body).await
    }

    /// Registers the sensor `device_id` on the world's hive, as alice.
    pub async fn sensor(&self, device_id: &str) {
        let body = json!({"hive_id": self.hive, "device_id": device_id});
        let s = self.alice("POST", &self.under("sensors"), body).await;
        assert_eq!(s.status, 201, "{s:?}");
    }

    /// A display token named `name` for the world's hive, asked by alice.
    pub async fn token(&self, name: &str) -> Answer {
        let body = json!({"name": name, "hive_ids": [self.hive]});
        self.alice("POST", &self.under("tokens"), body).await
    }

    /// The status of a call by `who` (None: anonymous) without a body.
    pub async fn status(&self, who: Option<&Caller>, method: &str, target: &str) -> u16 {
        call(&self.db, who, method, target, &Value::Null)
            .await
            .status
    }

    /// `/v1/accounts/{account}/{what}`.
    pub fn under(&self, what: &str) -> String {
        format!("/v1/accounts/{}/{what}", self.account)
    }

    /// A second account, of root's, with a hive: (account, hive).
    pub async fn other_account(&self) -> (i64, i64) {
        let root = &self.root;
        let a = self
            .by(root, "POST", "/v1/accounts", json!({"name": "Other"}))
            .await;
        let hives = format!("/v1/accounts/{}/hives", a.id());
        let h = self.by(root, "POST", &hives, hive_body("Theirs")).await;
        (a.id(), h.id())
    }
}
