//! Configuration push (PROTOCOL.md section 5, DESIGN.md section 10): a configuration inserted
//! into `sensor_report_config` (by the business API, or by hand) reaches its sensor on whichever
//! node and worker holds it, as the retained QoS 1 message of `commands/sensor/{device_id}`.
//!
//! ```text
//!   INSERT sensor_report_config -> trigger (migration 0011) -> NOTIFY bizzy_config at commit
//!   every node, slot 0: Configs::notified -> WorkerDb::push -> Outbox::publish (retained, QoS 1)
//!   the broker: retained store, this worker's subscribers, the siblings (the mesh)
//! ```
//!
//! The notification carries the whole configuration ([`from_notice`]), so no node reads the
//! database for it. Notifications sent while the LISTEN connection was down are lost: when it
//! listens again, [`Configs`] asks the I/O thread for the newest configuration of every sensor
//! that got one since shortly before the last notification heard ([`newest`]). A configuration
//! read that way may be older than one heard meanwhile: [`Published`] keeps the newest id
//! published per sensor, and nothing older or equal is published again; a sensor deleted,
//! renamed or made anew is forgotten there ([`SensorEar`]), and so is every sensor when LISTEN
//! takes effect again (its catch-up publishes afresh). Runs on the event loop,
//! except [`newest`], which the I/O thread runs; never blocks.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::time::{Duration, SystemTime};

use crate::log;
use crate::modules::database::listen::{Hear, Missed};
use crate::modules::ingest::decode::Configuration;
use crate::modules::ingest::worker::WorkerDb;
use crate::modules::ingest::writer::Job;
use crate::mqtt::codec::QoS;
use crate::mqtt::session::Message;

/// The LISTEN channel of new configurations (migration 0011).
pub const CHANNEL: &str = "bizzy_config";

/// How far back a re-established LISTEN looks for configurations it may have missed, before the
/// last notification it heard: a configuration's `created_at` is its transaction's start, which
/// precedes its notification by as long as the transaction took. Configurations are rare, and
/// sending one again costs a sensor one status message.
const MISSED_MARGIN: Duration = Duration::from_secs(60);

/// A sensor and the configuration to publish for it.
pub type Push = (String, Configuration);

/// `configuration`'s retained message on `commands/sensor/{device_id}`, at QoS 1; `None` when a
/// value is out of its range (the table's checks make that impossible but for id 0).
pub fn configuration_message(device_id: &str, c: &Configuration) -> Option<Message> {
    let Ok(payload) = c.encode() else {
        log!(
            Warn,
            "ingest: configuration {} of sensor {device_id} is out of range: not published",
            c.configuration_id
        );
        return None;
    };
    Some(Message {
        topic: format!("commands/sensor/{device_id}").into(),
        payload: bytes::Bytes::copy_from_slice(&payload),
        qos: QoS::AtLeastOnce,
        retain: true,
    })
}

/// A notification of [`CHANNEL`] read back: `device_id configuration_id threshold_cm
/// reporting_interval_min status_interval_min event_threshold`.
pub fn from_notice(payload: &str) -> Option<Push> {
    let fields: Vec<&str> = payload.split(' ').collect();
    let [device_id, id, threshold, reporting, status, event] = fields[..] else {
        return None;
    };
    if device_id.is_empty() {
        return None;
    }
    let small = |s: &str| s.parse::<u16>().ok();
    let c = Configuration {
        threshold_cm: small(threshold)?,
        reporting_interval_min: small(reporting)?,
        status_interval_min: small(status)?,
        event_threshold: small(event)?,
        configuration_id: id.parse().ok()?,
    };
    Some((device_id.to_string(), c))
}

/// The newest configuration id this worker published per sensor.
#[derive(Debug, Default)]
pub struct Published(RefCell<HashMap<String, u32>>);

impl Published {
    /// Whether `id` is newer than what was published for `device_id`; if so, it is now.
    pub fn newer(&self, device_id: &str, id: u32) -> bool {
        let mut m = self.0.borrow_mut();
        match m.get_mut(device_id) {
            Some(last) if *last >= id => false,
            Some(last) => {
                *last = id;
                true
            }
            None => {
                m.insert(device_id.to_string(), id);
                true
            }
        }
    }

    /// Forgets what was published for `device_id`, or for every sensor (`None`).
    pub fn forget(&self, device_id: Option<&str>) {
        match device_id {
            Some(d) => {
                self.0.borrow_mut().remove(d);
            }
            None => self.0.borrow_mut().clear(),
        }
    }
}

/// The follower of the sensor logins' channel ([`super::login::CHANNEL`]) beside [`Configs`]:
/// [`Published`] is keyed by device id, but configuration ids count per sensor row, so when a
/// sensor is deleted, renamed or made anew its device id is forgotten (the next sensor to carry
/// it counts from 1 again; an empty payload, a TRUNCATE, forgets every one).
pub struct SensorEar(Weak<WorkerDb>);

impl SensorEar {
    pub fn new(db: &Rc<WorkerDb>) -> Rc<SensorEar> {
        Rc::new(SensorEar(Rc::downgrade(db)))
    }
}

impl Hear for SensorEar {
    /// Nothing: [`Configs`] hears the same connection's LISTEN and forgets everything.
    fn listening(&self) {}

    fn notified(&self, payload: &str) {
        if let Some(db) = self.0.upgrade() {
            db.forget_pushed(Some(payload).filter(|d| !d.is_empty()));
        }
    }
}

/// The follower of [`CHANNEL`], on one worker per node (slot 0).
pub struct Configs {
    db: Weak<WorkerDb>,
    /// When the last notification came, or LISTEN took effect (at first, the worker's start:
    /// a configuration committed between the retained restore and LISTEN is caught up too).
    missed: Missed,
}

impl Configs {
    pub fn new(db: &Rc<WorkerDb>) -> Rc<Configs> {
        Rc::new(Configs {
            db: Rc::downgrade(db),
            missed: Missed::new(Some(SystemTime::now()), MISSED_MARGIN),
        })
    }
}

impl Hear for Configs {
    fn listening(&self) {
        let (Some(since), Some(db)) = (self.missed.listening(), self.db.upgrade()) else {
            return;
        };
        // Which sensors were deleted or made anew meanwhile is not known: the catch-up
        // publishes afresh, and what is heard from now on is newer or is not published.
        db.forget_pushed(None);
        db.catch_up(Job::ConfigurationsSince(since), "configurations");
    }

    fn notified(&self, payload: &str) {
        self.missed.heard();
        let Some(db) = self.db.upgrade() else {
            return;
        };
        match from_notice(payload) {
            Some(push) => db.push(&[push]),
            None => log!(
                Warn,
                "ingest: a configuration notification that does not read: {payload}"
            ),
        }
    }
}

/// The newest configuration of every live sensor (that got one since `since`, if given), in
/// sensor order. Run on the I/O thread.
pub async fn newest(
    c: &tokio_postgres::Client,
    since: Option<SystemTime>,
) -> Result<Vec<Push>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT DISTINCT ON (s.id) s.device_id, c.configuration_id, c.threshold_cm,
                    c.reporting_interval_min, c.status_interval_min, c.event_threshold
             FROM sensor s JOIN sensor_report_config c ON c.sensor_id = s.id
             WHERE s.deleted_at IS NULL
               AND ($1::timestamptz IS NULL OR s.id IN
                    (SELECT sensor_id FROM sensor_report_config WHERE created_at >= $1))
             ORDER BY s.id, c.configuration_id DESC",
            &[&since],
        )
        .await?;
    let small = |v: i32| u16::try_from(v).unwrap_or(u16::MAX);
    Ok(rows
        .iter()
        .map(|r| {
            let c = Configuration {
                configuration_id: u32::try_from(r.get::<_, i64>(1)).unwrap_or(0),
                threshold_cm: small(r.get(2)),
                reporting_interval_min: small(r.get(3)),
                status_interval_min: small(r.get(4)),
                event_threshold: small(r.get(5)),
            };
            (r.get::<_, String>(0), c)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_reads_back_as_the_configuration_it_announces() {
        let (device, c) = from_notice("door-1 7 80 15 60 10").expect("reads");
        assert_eq!(device, "door-1");
        assert_eq!(
            c,
            Configuration {
                threshold_cm: 80,
                reporting_interval_min: 15,
                status_interval_min: 60,
                event_threshold: 10,
                configuration_id: 7,
            }
        );
        let m = configuration_message(&device, &c).expect("in range");
        assert_eq!(&*m.topic, "commands/sensor/door-1");
        assert_eq!(&m.payload[..], [0, 80, 0, 15, 0, 60, 0, 10, 0, 0, 0, 7]);
        assert_eq!((m.qos, m.retain), (QoS::AtLeastOnce, true));
    }

    #[test]
    fn a_notice_with_a_field_missing_extra_or_not_a_number_is_refused() {
        for bad in [
            "",
            "door-1 7 80 15 60",
            "door-1 7 80 15 60 10 1",
            "door-1 x 80 15 60 10",
            "door-1 7 80 15 60 70000",
            " 7 80 15 60 10",
        ] {
            assert_eq!(from_notice(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn an_older_or_equal_id_is_not_published_again() {
        let p = Published::default();
        assert!(p.newer("a", 2));
        assert!(!p.newer("a", 2));
        assert!(!p.newer("a", 1));
        assert!(p.newer("b", 1));
        assert!(p.newer("a", 3));
    }

    #[test]
    fn a_forgotten_sensor_counts_from_1_again() {
        let p = Published::default();
        assert!(p.newer("a", 3));
        assert!(p.newer("b", 3));
        p.forget(Some("a"));
        assert!(p.newer("a", 1));
        assert!(!p.newer("b", 1));
        p.forget(None);
        assert!(p.newer("a", 1));
        assert!(p.newer("b", 1));
    }
}
