//! `handler = "metrics"`: the node's counters in the Prometheus text format (0.0.4), summed
//! across workers from shared memory.

use std::fmt::Write;
use std::rc::Rc;

use bytes::Bytes;

use crate::core::shm::Zone;
use crate::core::stats;
use crate::http::conf::LocationConf;
use crate::http::module::{ContentKey, InitError, Module, Registry};
use crate::http::phase::{ContentHandler, Cx};
use crate::http::stats as hstats;
use crate::http::{Flow, HttpError, Request, Response};
use crate::modules::api::stats as astats;
use crate::modules::ingest::stats as istats;
use crate::mqtt::stats as mstats;

/// The `handler` of the locations this module answers.
const HANDLER: &str = "metrics";

pub struct MetricsModule;

struct Metrics {
    core: Zone,
    http: Zone,
    mqtt: Option<Zone>,
    ingest: Option<Zone>,
    cache: Option<Zone>,
}

impl Module for MetricsModule {
    fn name(&self) -> &'static str {
        HANDLER
    }

    fn handlers(&self) -> &[&'static str] {
        &[HANDLER]
    }

    fn init(&self, reg: &mut Registry<'_>) -> Result<(), InitError> {
        let (core, http) = crate::modules::status::zones(reg)?;
        let mqtt = reg.zones.get(mstats::ZONE).cloned();
        let ingest = reg.zones.get(istats::ZONE).cloned();
        let cache = reg.zones.get(astats::ZONE).cloned();
        reg.content(
            ContentKey::Handler(HANDLER),
            Box::new(move |_: &LocationConf| {
                Ok(Rc::new(Metrics {
                    core: core.clone(),
                    http: http.clone(),
                    mqtt: mqtt.clone(),
                    ingest: ingest.clone(),
                    cache: cache.clone(),
                }) as Rc<dyn ContentHandler>)
            }),
        );
        Ok(())
    }
}

/// Writes one metric family: HELP, TYPE and its samples.
pub fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, v) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {v}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    }
}

fn one(v: u64) -> Vec<(String, u64)> {
    vec![(String::new(), v)]
}

impl Metrics {
    fn render(&self) -> String {
        let c = stats::totals(&self.core);
        let h = hstats::totals(&self.http);
        let mut s = String::with_capacity(2048);
        family(
            &mut s,
            "bizzy_connections_active",
            "gauge",
            "Client connections open now.",
            &one(c.active),
        );
        family(
            &mut s,
            "bizzy_connections_accepted_total",
            "counter",
            "Client connections accepted.",
            &one(c.accepted),
        );
        family(
            &mut s,
            "bizzy_connections_handled_total",
            "counter",
            "Client connections handled.",
            &one(c.handled),
        );
        let per: Vec<(String, u64)> = stats::per_worker(&self.core)
            .into_iter()
            .map(|(slot, _, accepted, _)| (format!("worker=\"{slot}\""), accepted))
            .collect();
        family(
            &mut s,
            "bizzy_worker_connections_accepted_total",
            "counter",
            "Connections accepted, by worker slot.",
            &per,
        );
        family(
            &mut s,
            "bizzy_http_requests_total",
            "counter",
            "HTTP requests answered.",
            &one(h.requests),
        );
        let by: Vec<(String, u64)> = h
            .by_status
            .iter()
            .map(|(code, n)| (format!("status=\"{code}\""), *n))
            .collect();
        family(
            &mut s,
            "bizzy_http_responses_total",
            "counter",
            "HTTP responses, by status.",
            &by,
        );
        family(
            &mut s,
            "bizzy_http_response_bytes_total",
            "counter",
            "Bytes of HTTP responses queued for sending.",
            &one(h.bytes_sent),
        );
        let states = vec![
            ("state=\"reading\"".to_string(), h.reading),
            ("state=\"writing\"".to_string(), h.writing),
            ("state=\"waiting\"".to_string(), h.waiting),
        ];
        family(
            &mut s,
            "bizzy_http_connections",
            "gauge",
            "HTTP connections by state.",
            &states,
        );
        if let Some(z) = &self.mqtt {
            render_mqtt(&mut s, &mstats::totals(z));
        }
        if let Some(z) = &self.cache {
            render_cache(&mut s, &astats::totals(z));
        }
        if let Some(z) = &self.ingest {
            render_ingest(&mut s, &istats::totals(z));
        }
        s
    }
}

fn by_qos(v: &[u64; 3]) -> Vec<(String, u64)> {
    v.iter()
        .enumerate()
        .map(|(q, n)| (format!("qos=\"{q}\""), *n))
        .collect()
}

fn render_mqtt(s: &mut String, m: &mstats::Totals) {
    family(
        s,
        "bizzy_mqtt_clients_connected",
        "gauge",
        "MQTT clients connected now.",
        &one(m.connected),
    );
    family(
        s,
        "bizzy_mqtt_sessions",
        "gauge",
        "MQTT sessions held, connected or not.",
        &one(m.sessions),
    );
    family(
        s,
        "bizzy_mqtt_connects_total",
        "counter",
        "MQTT CONNECTs accepted.",
        &one(m.connects),
    );
    family(
        s,
        "bizzy_mqtt_connects_refused_total",
        "counter",
        "MQTT connections refused (CONNACK codes 1-5, connect_rate).",
        &one(m.refused),
    );
    family(
        s,
        "bizzy_mqtt_messages_received_total",
        "counter",
        "PUBLISH packets received from clients, by QoS.",
        &by_qos(&m.received),
    );
    family(
        s,
        "bizzy_mqtt_messages_sent_total",
        "counter",
        "PUBLISH packets sent to clients, by QoS.",
        &by_qos(&m.sent),
    );
    let dropped: Vec<(String, u64)> = m
        .dropped
        .iter()
        .map(|(why, n)| (format!("reason=\"{why}\""), *n))
        .collect();
    family(
        s,
        "bizzy_mqtt_messages_dropped_total",
        "counter",
        "Messages not delivered or not accepted, by reason.",
        &dropped,
    );
    family(
        s,
        "bizzy_mqtt_retained_messages",
        "gauge",
        "Retained messages held.",
        &one(m.retained),
    );
    family(
        s,
        "bizzy_mqtt_handovers_total",
        "counter",
        "Connections and sessions moved to another worker.",
        &one(m.handed_over),
    );
}

impl ContentHandler for Metrics {
    fn handle(&self, _req: &mut Request, _cx: &mut Cx<'_>) -> Result<Flow, HttpError> {
        let body = Bytes::from(self.render());
        let mut r = Response::with_body(200, "text/plain; version=0.0.4; charset=utf-8", body);
        r.header("Cache-Control", "no-cache");
        Ok(Flow::Done(r))
    }
}

fn render_cache(s: &mut String, t: &astats::Totals) {
    let by = |label: &str, v: &[(&str, u64)]| -> Vec<(String, u64)> {
        v.iter()
            .map(|(k, n)| (format!("{label}=\"{k}\""), *n))
            .collect()
    };
    family(
        s,
        "bizzy_cache_answers_total",
        "counter",
        "Public reads answered from the worker's copy (fresh, expired while refreshed) or after waiting for a read.",
        &by(
            "how",
            &[
                ("fresh", t.fresh),
                ("expired", t.expired),
                ("waited", t.waited),
            ],
        ),
    );
    family(
        s,
        "bizzy_cache_reads_total",
        "counter",
        "Reads of the public resources on the I/O threads, by who answered them.",
        &by(
            "from",
            &[
                ("replica", t.replica),
                ("database", t.database),
                ("none", t.none),
            ],
        ),
    );
    family(
        s,
        "bizzy_live_streams",
        "gauge",
        "Live event streams open (GET /v1/hives/{id}/live).",
        &[(String::new(), t.streams)],
    );
    family(
        s,
        "bizzy_live_events_total",
        "counter",
        "Occupancy changes sent on live streams (the state each stream starts with not counted).",
        &[(String::new(), t.events)],
    );
}

fn render_ingest(s: &mut String, t: &istats::Totals) {
    let one = |v: u64| vec![(String::new(), v)];
    let families: [(&str, &str, &str, u64); 13] = [
        (
            "bizzy_ingest_reports_accepted_total",
            "counter",
            "Valid sensor reports taken from MQTT.",
            t.accepted,
        ),
        (
            "bizzy_ingest_reports_stored_total",
            "counter",
            "Sensor reports committed to PostgreSQL (duplicates included).",
            t.stored,
        ),
        (
            "bizzy_ingest_duplicates_total",
            "counter",
            "Reports identical to one stored within the duplicate window.",
            t.duplicates,
        ),
        (
            "bizzy_ingest_batches_total",
            "counter",
            "Batches committed (one transaction each).",
            t.batches,
        ),
        (
            "bizzy_ingest_batched_reports_total",
            "counter",
            "Reports in the committed batches (divided by batches: the batch size).",
            t.batched,
        ),
        (
            "bizzy_ingest_queued_reports",
            "gauge",
            "Reports handed to the writers and not yet committed.",
            t.queued,
        ),
        (
            "bizzy_ingest_lag_milliseconds",
            "gauge",
            "Receive to commit of the last batch's oldest report, the largest over the workers.",
            t.lag_ms,
        ),
        (
            "bizzy_ingest_reports_spooled_total",
            "counter",
            "Reports acknowledged once fsynced to a spool file while PostgreSQL was unreachable.",
            t.spooled,
        ),
        (
            "bizzy_ingest_spool_reports",
            "gauge",
            "Reports waiting in spool files to be replayed into PostgreSQL.",
            t.spool_reports,
        ),
        (
            "bizzy_ingest_spool_bytes",
            "gauge",
            "Bytes of records waiting in spool files to be replayed.",
            t.spool_bytes,
        ),
        (
            "bizzy_database_connections_in_use",
            "gauge",
            "Database connections the workers' I/O threads have handed out.",
            t.db_in_use,
        ),
        (
            "bizzy_database_waiting",
            "gauge",
            "Tasks of the workers' I/O threads waiting for a database connection.",
            t.db_waiting,
        ),
        (
            "bizzy_io_jobs",
            "gauge",
            "Jobs handed to the workers' I/O threads and not yet answered.",
            t.io_jobs,
        ),
    ];
    for (name, kind, help, v) in families {
        family(s, name, kind, help, &one(v));
    }
    let by: Vec<(String, u64)> = t
        .rejected
        .iter()
        .map(|(r, n)| (format!("reason=\"{r}\""), *n))
        .collect();
    family(
        s,
        "bizzy_ingest_rejected_total",
        "counter",
        "Sensor messages not taken, by reason.",
        &by,
    );
}
