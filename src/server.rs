//! Wires the modules and protocols into the engine: the [`App`] the master builds cycles with.

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use crate::core::config::{Conf, ListenKind};
use crate::core::process::{App, Prepared, Services, WorkerCtx};
use crate::core::shm::Zones;
use crate::http::runtime::{Http, HttpPrepared, Module};
use crate::http::stats as hstats;
use crate::mqtt::service::{self as mqtt, MqttPrepared, NoHooks};

/// The whole server: HTTP with every module.
pub struct Bizzy {
    modules: Vec<Box<dyn Module>>,
}

impl Default for Bizzy {
    fn default() -> Self {
        Bizzy {
            modules: crate::modules::all(),
        }
    }
}

impl App for Bizzy {
    fn kinds(&self) -> &[ListenKind] {
        &[ListenKind::Http, ListenKind::Mqtt]
    }

    fn zones(&self, conf: &Conf) -> Vec<(String, usize)> {
        let mut z = vec![(hstats::ZONE.to_string(), hstats::zone_size())];
        z.extend(mqtt::zones(conf));
        for m in &self.modules {
            z.extend(m.zones(conf));
        }
        z
    }

    fn files(&self, conf: &Conf) -> Vec<PathBuf> {
        self.modules.iter().flat_map(|m| m.files(conf)).collect()
    }

    fn check(&self, conf: &Conf) -> Result<(), String> {
        if conf.mqtt.listen.is_empty() {
            return Ok(());
        }
        MqttPrepared::build(conf, Rc::new(NoHooks)).map(drop)
    }

    fn reaped(&self, zones: &Zones, slot: usize) {
        if let Some(z) = zones.get(hstats::ZONE) {
            hstats::reap(z, slot);
        }
        mqtt::reaped(zones, slot);
    }

    fn prepare(
        &self,
        conf: &Conf,
        zones: &Zones,
        files: &[(PathBuf, std::fs::File)],
    ) -> Result<Box<dyn Prepared>, String> {
        let conf = Arc::new(conf.clone());
        let http = Http::build(&conf, zones, files, &self.modules)?;
        let mqtt = if conf.mqtt.listen.is_empty() {
            None
        } else {
            Some(MqttPrepared::build(&conf, Rc::new(NoHooks))?)
        };
        Ok(Box::new(Both {
            http: HttpPrepared {
                http: Rc::new(http),
            },
            mqtt,
        }))
    }
}

/// HTTP always, MQTT when it has listeners.
struct Both {
    http: HttpPrepared,
    mqtt: Option<MqttPrepared>,
}

impl Prepared for Both {
    fn services(&self, ctx: &WorkerCtx<'_>) -> Result<Services, String> {
        let mut s = self.http.services(ctx)?;
        if let Some(m) = &self.mqtt {
            s.push((ListenKind::Mqtt, Box::new(m.service(ctx)?)));
        }
        Ok(s)
    }
}
