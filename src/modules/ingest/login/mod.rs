//! Sensors log in from the database (DESIGN.md section 6): the worker's [`Authority`] over the
//! sensor table, combined with mosquitto's password and ACL files.
//!
//! Who answers a CONNECT:
//!
//! | user name | checked against | rights |
//! |---|---|---|
//! | none | `allow_anonymous` | the ACL file's anonymous rules |
//! | one the password file names | the password file | the ACL file |
//! | a device id (`[A-Za-z0-9_-]{1,64}`) of a live sensor | its secret's hash | a sensor's |
//! | a device id of a deleted sensor | refused, 0x05 | |
//! | `token:{id}` of a display token ([`token`]) | its secret's hash, not revoked | a display's |
//! | `token:{id}` of a revoked token | refused, 0x05 | |
//! | anything else | the files (as without a database) | the ACL file |
//!
//! The password file comes first: an operator's account keeps working whatever is registered
//! through the business API, and never waits for PostgreSQL. A sensor logs in with user name
//! and client identifier both its device id (PROTOCOL.md: the device id is its MQTT client id
//! and user name); another client identifier is refused with 0x02, so a sensor has one session
//! and a stolen secret cannot open a second one beside it. A sensor may publish under
//! `sensors/{own id}/` only and subscribe to `commands/sensor/{own id}` only, whatever the ACL
//! file says; its refused PUBLISHes are dropped as the ACL file's are.
//!
//! Answers come from the worker's copy of the logins ([`table`]), read through the worker's I/O
//! thread ([`store`]) once LISTEN on [`CHANNEL`] took effect, and kept current by its
//! notifications (migration 0008). A device id the copy does not have (it is not read yet, or
//! the sensor is new), or whose entry is stale, is looked up for the CONNECT
//! ([`Verdict::Later`]); when PostgreSQL does not answer within [`store::LOOKUP_TIMEOUT`], the
//! CONNECT is refused with 0x05. A user name held to a sensor's rights is one the copy knows as
//! a sensor's, or any device-id-shaped name not in the password file while the copy was never
//! read: the narrower rights until the worker knows (a session may come from a sibling worker
//! without a CONNECT here).
//!
//! Cut off at once: a notification on [`CHANNEL`] means the device id's login changed (deleted,
//! new secret, other hive: migration 0008 announces nothing else), one on [`token::CHANNEL`]
//! that the token changed (migration 0010). Every worker of every node hears it and cuts off
//! the clients it holds under that login ([`Verdicts::cut_off`] by user name: a sensor's is its
//! device id, a display's `token:{id}`); they must log in again, against the database. A
//! password verified while such a notification came does not let its CONNECT in (0x05). When
//! LISTEN takes effect again (notifications may have been missed), the logins the new read
//! of the sensor table changed, and the tokens a new lookup finds gone, are cut off too.
//!
//! Cost on the event loop: a CONNECT whose password this worker has already verified with the
//! same hash costs the authority a SHA-256 of the password and a map lookup (72 ns,
//! `benches/sensor_login.rs`). A password not seen before is checked with PBKDF2 on the I/O
//! thread's blocking pool (0.92 ms of CPU at [`secret::ITERATIONS`]), never here. A storm of
//! 1,000 sensors on 2 workers (`scripts/bench-login`): all accepted in 0.63 s cold (0.94 s of
//! PBKDF2 off the loops) and in 31 ms warm; the event loops spent 39 us cold and 24 us warm per
//! CONNECT, from accept to close, the broker's work included.
//!
//! [`secret::ITERATIONS`]: crate::mqtt::auth::secret::ITERATIONS

pub mod store;
pub mod table;
pub mod token;

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use crate::log;
use crate::modules::database::listen::Hear;
use crate::modules::ingest::decode::valid_device_id;
use crate::modules::ingest::worker::WorkerDb;
use crate::modules::ingest::writer::Job;
use crate::mqtt::auth::{Authority, Cut, FileAuthority, Login, Op, Refusal, Verdict, Verdicts};
use store::{Ask, Check, Digest, Found, Reply, TokenFound};
use table::{sensor_allows, Step, Table, Waiter};
use token::{token_allows, token_id, Tokens};

/// The channel on which the database announces a changed sensor login (its payload the device
/// id, empty for all of them).
pub const CHANNEL: &str = "bizzy_sensor";

/// The worker's authority: sensors and display tokens from the database, everyone else from
/// the files.
pub struct SensorAuthority {
    files: Rc<FileAuthority>,
    db: Rc<WorkerDb>,
    verdicts: Verdicts,
    table: RefCell<Table>,
    tokens: RefCell<Tokens>,
    /// What follows [`token::CHANNEL`] (the listener holds it weakly).
    token_ear: Rc<TokenEar>,
}

/// The follower of [`token::CHANNEL`], for its authority.
struct TokenEar(Weak<SensorAuthority>);

impl SensorAuthority {
    /// The authority over the worker's I/O thread `db`; late answers go through `verdicts`.
    /// The copy of the logins is read once LISTEN takes effect.
    pub fn start(
        db: Rc<WorkerDb>,
        files: Rc<FileAuthority>,
        verdicts: &Verdicts,
    ) -> Rc<SensorAuthority> {
        let a = Rc::new_cyclic(|weak| SensorAuthority {
            files,
            db: Rc::clone(&db),
            verdicts: verdicts.clone(),
            table: RefCell::new(Table::default()),
            tokens: RefCell::new(Tokens::default()),
            token_ear: Rc::new(TokenEar(weak.clone())),
        });
        let weak = Rc::downgrade(&a);
        db.set_logins(move |r| {
            if let Some(a) = weak.upgrade() {
                a.reply(r);
            }
        });
        db.hear(CHANNEL, Rc::downgrade(&a) as Weak<dyn Hear>);
        db.hear(
            token::CHANNEL,
            Rc::downgrade(&a.token_ear) as Weak<dyn Hear>,
        );
        a
    }

    /// The token `username` names if the token table is to check it (`Some(None)`: a token's
    /// user name without a valid id).
    fn token_name(&self, username: Option<&str>) -> Option<Option<i64>> {
        username.filter(|u| !self.files.knows(u)).and_then(token_id)
    }

    /// The device id `username` names if the sensor table is to check it: a device-id-shaped
    /// name the password file does not have.
    fn sensor_name<'a>(&self, username: Option<&'a str>) -> Option<&'a str> {
        username.filter(|u| !self.files.knows(u) && valid_device_id(u))
    }

    /// Answers the CONNECT of `ticket` for sensor `device`, now or later (having asked the I/O
    /// thread). Nothing is copied for a CONNECT the copy answers at once.
    /// A lookup's answer that a notification overtook is stale: its CONNECTs are looked up
    /// again rather than answered from it.
    fn answer(&self, device: &str, login: &Login<'_>, ticket: u64) -> Verdict {
        let step = self
            .table
            .borrow()
            .check(device, login.client_id, login.password, true);
        match step {
            Step::Allow => Verdict::Allow,
            Step::Refuse(r) => Verdict::Refuse(r),
            Step::Verify { phc, digest } => {
                let check = Check {
                    ticket,
                    client_id: login.client_id.to_string(),
                    device_id: device.to_string(),
                    phc,
                    password: login.password.unwrap_or_default().to_vec(),
                    digest,
                };
                self.ask(Ask::Verify(Box::new(check)))
            }
            Step::Lookup => {
                let w = Waiter::of(login, ticket);
                if !self.table.borrow_mut().wait(device, w) {
                    return Verdict::Later;
                }
                match self.ask(Ask::One(device.to_string())) {
                    Verdict::Later => Verdict::Later,
                    refused => {
                        self.table.borrow_mut().lookup_failed(device);
                        refused
                    }
                }
            }
        }
    }

    /// A waiting CONNECT's verdict, given now unless it is to come later still.
    fn give(&self, ticket: u64, v: Verdict) {
        match v {
            Verdict::Allow => self.verdicts.answer(ticket, Ok(())),
            Verdict::Refuse(r) => self.verdicts.answer(ticket, Err(r)),
            Verdict::Later => {}
        }
    }

    /// Asks the I/O thread; a refusal if it cannot take the question now.
    fn ask(&self, ask: Ask) -> Verdict {
        match self.db.send(Job::Login(ask)) {
            Ok(()) => Verdict::Later,
            Err(e) => {
                log!(
                    Error,
                    "sensor logins: the I/O thread cannot take a question ({e})"
                );
                Verdict::Refuse(Refusal::NotAuthorised)
            }
        }
    }

    /// An answer of the I/O thread.
    fn reply(&self, r: Reply) {
        match r {
            Reply::All(Ok(rows)) => {
                let changed = self.table.borrow_mut().loaded(rows);
                log!(
                    Info,
                    "sensor logins: {} device ids read",
                    self.table.borrow().len()
                );
                for d in changed
                    .into_iter()
                    .filter(|d| self.sensor_name(Some(d)).is_some())
                {
                    self.verdicts.cut_off(Cut::User(d));
                }
            }
            Reply::All(Err(e)) => {
                self.table.borrow_mut().load_failed();
                log!(Error, "sensor logins: cannot read the sensor table: {e}");
            }
            Reply::One { device_id, found } => self.looked_up(&device_id, found),
            Reply::Token { id, found } => self.token_looked_up(id, found),
            Reply::Verified { check, ok } => {
                let v = match self.verified(&check.device_id, &check.phc, check.digest, ok) {
                    Ok(()) => Verdict::Allow,
                    // The login changed (or a notification says it may have) while its
                    // password was checked: asked again against what the table has now,
                    // looked up if need be, rather than refused.
                    Err(Refusal::NotAuthorised) if ok => self.again(&check),
                    Err(r) => Verdict::Refuse(r),
                };
                self.give(check.ticket, v);
            }
        }
    }

    /// A password check came for a device id or a token's user name: remembered, and the
    /// CONNECT's answer; a login that changed meanwhile does not let it in.
    fn verified(&self, name: &str, phc: &str, digest: Digest, ok: bool) -> Result<(), Refusal> {
        let holds = match token_id(name) {
            Some(id) => {
                let id = id.unwrap_or_default();
                self.tokens.borrow_mut().verified(id, phc, digest, ok);
                self.tokens.borrow().holds(id, phc)
            }
            None => {
                self.table.borrow_mut().verified(name, phc, digest, ok);
                self.table.borrow().holds(name, phc)
            }
        };
        match (ok, holds) {
            (false, _) => Err(Refusal::BadCredentials),
            (true, false) => Err(Refusal::NotAuthorised),
            (true, true) => Ok(()),
        }
    }

    /// The CONNECT of `c` asked again, as it came: a sensor's or a token's.
    fn again(&self, c: &Check) -> Verdict {
        let login = Login {
            client_id: &c.client_id,
            username: Some(&c.device_id),
            password: Some(&c.password),
        };
        match token_id(&c.device_id) {
            Some(Some(id)) => self.answer_token(id, &login, c.ticket),
            Some(None) => Verdict::Refuse(Refusal::NotAuthorised),
            None => self.answer(&c.device_id, &login, c.ticket),
        }
    }

    /// A lookup's answer: the CONNECTs that waited for it are answered or go on.
    fn looked_up(&self, device: &str, found: Result<Found, store::LoginError>) {
        let found = match found {
            Ok(f) => f,
            Err(e) => {
                let waiters = self.table.borrow_mut().lookup_failed(device);
                log!(
                    Error,
                    "sensor logins: cannot look up {device}: {e}; {} CONNECT(s) refused",
                    waiters.len()
                );
                for w in waiters {
                    self.verdicts.answer(w.ticket, Err(Refusal::NotAuthorised));
                }
                return;
            }
        };
        let unknown = found == Found::Unknown;
        let waiters = self.table.borrow_mut().looked_up(device, found);
        for w in waiters {
            let ticket = w.ticket;
            let login = Login {
                client_id: &w.client_id,
                username: Some(device),
                password: w.password.as_deref(),
            };
            let v = if unknown {
                self.files.check(login.username, login.password).into()
            } else {
                self.answer(device, &login, ticket)
            };
            self.give(ticket, v);
        }
    }
}

/// Display tokens: the same steps as a sensor's, over [`Tokens`].
impl SensorAuthority {
    /// Answers the CONNECT of `ticket` with token `id`, now or later.
    fn answer_token(&self, id: i64, login: &Login<'_>, ticket: u64) -> Verdict {
        let step = self.tokens.borrow().check(id, login.password);
        match step {
            Step::Allow => Verdict::Allow,
            Step::Refuse(r) => Verdict::Refuse(r),
            Step::Verify { phc, digest } => self.ask(Ask::Verify(Box::new(Check {
                ticket,
                client_id: login.client_id.to_string(),
                device_id: token::username(id),
                phc,
                password: login.password.unwrap_or_default().to_vec(),
                digest,
            }))),
            Step::Lookup => {
                let w = Waiter::of(login, ticket);
                if !self.tokens.borrow_mut().wait(id, w) {
                    return Verdict::Later;
                }
                match self.ask(Ask::Token(id)) {
                    Verdict::Later => Verdict::Later,
                    refused => {
                        self.tokens.borrow_mut().lookup_failed(id);
                        refused
                    }
                }
            }
        }
    }

    /// A token's lookup answered: the CONNECTs that waited for it are answered or go on; a
    /// token gone cuts off whoever is still logged in with it (a lookup after LISTEN resumed).
    fn token_looked_up(&self, id: i64, found: Result<TokenFound, store::LoginError>) {
        let found = match found {
            Ok(f) => f,
            Err(e) => {
                let waiters = self.tokens.borrow_mut().lookup_failed(id);
                log!(
                    Error,
                    "display tokens: cannot look up token {id}: {e}; {} CONNECT(s) refused",
                    waiters.len()
                );
                for w in waiters {
                    self.verdicts.answer(w.ticket, Err(Refusal::NotAuthorised));
                }
                return;
            }
        };
        if !matches!(found, TokenFound::Live { .. }) {
            self.verdicts.cut_off(Cut::User(token::username(id)));
        }
        let unknown = found == TokenFound::Unknown;
        let waiters = self.tokens.borrow_mut().looked_up(id, found);
        for w in waiters {
            let login = Login {
                client_id: &w.client_id,
                username: None,
                password: w.password.as_deref(),
            };
            let v = if unknown {
                Verdict::Refuse(Refusal::BadCredentials)
            } else {
                self.answer_token(id, &login, w.ticket)
            };
            self.give(w.ticket, v);
        }
    }

    /// A notification: token `id` changed. Forgotten, and its clients cut off.
    fn token_changed(&self, id: i64) {
        self.tokens.borrow_mut().forget(id);
        self.verdicts.cut_off(Cut::User(token::username(id)));
    }

    /// LISTEN on the tokens' channel took effect (or every token changed): changes may have
    /// been missed, so every token known is forgotten and looked up again (a gone one's
    /// clients are then cut off).
    fn tokens_listening(&self) {
        for id in self.tokens.borrow_mut().forget_all() {
            if self.ask(Ask::Token(id)) != Verdict::Later {
                return;
            }
        }
    }
}

impl Authority for SensorAuthority {
    fn connect(&self, login: &Login<'_>, ticket: u64) -> Verdict {
        match self.sensor_name(login.username) {
            Some(device) => self.answer(device, login, ticket),
            None => match self.token_name(login.username) {
                Some(Some(id)) => self.answer_token(id, login, ticket),
                Some(None) => Verdict::Refuse(Refusal::BadCredentials),
                None => self.files.connect(login, ticket),
            },
        }
    }

    fn allows(&self, client_id: &str, username: Option<&str>, op: Op, topic: &str) -> bool {
        match self.sensor_name(username) {
            Some(device) if self.table.borrow().is_sensor(device) => {
                sensor_allows(device, op, topic)
            }
            _ => match self.token_name(username) {
                Some(Some(id)) => match self.tokens.borrow().hives(id) {
                    Some(hives) => token_allows(hives, op, topic),
                    None => token_allows(&[], op, topic),
                },
                Some(None) => false,
                None => self.files.allows(client_id, username, op, topic),
            },
        }
    }

    fn screens_delivery(&self) -> bool {
        self.files.screens_delivery()
    }
}

impl Hear for SensorAuthority {
    fn listening(&self) {
        self.table.borrow_mut().load_asked();
        if self.ask(Ask::All) != Verdict::Later {
            self.table.borrow_mut().load_failed();
        }
    }

    fn notified(&self, payload: &str) {
        let device = (!payload.is_empty()).then_some(payload);
        let cut = match device {
            Some(d) => vec![d.to_string()],
            None => self.table.borrow().devices(),
        };
        self.table.borrow_mut().notified(device);
        for d in cut
            .into_iter()
            .filter(|d| self.sensor_name(Some(d)).is_some())
        {
            self.verdicts.cut_off(Cut::User(d));
        }
        if device.is_none() {
            self.listening();
        }
    }
}

impl Hear for TokenEar {
    fn listening(&self) {
        if let Some(a) = self.0.upgrade() {
            a.tokens_listening();
        }
    }

    fn notified(&self, payload: &str) {
        let Some(a) = self.0.upgrade() else {
            return;
        };
        match payload.parse::<i64>() {
            Ok(id) => a.token_changed(id),
            Err(_) if payload.is_empty() => a.tokens_listening(),
            Err(_) => log!(
                Error,
                "display tokens: a notification names no token: {payload:?}"
            ),
        }
    }
}
