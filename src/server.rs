//! Wires the modules and protocols into the engine: the [`App`] the master builds cycles with,
//! and the configuration sections each part declared ([`sections`]).

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use crate::core::config::{Conf, Protocol, Sections};
use crate::core::process::{App, AppError, Helper, Prepared, Services, WorkerCtx};
use crate::core::shm::Zones;
use crate::http::conf::HttpSection;
use crate::http::module::{Module, Shared};
use crate::http::runtime::Http;
use crate::http::service::HttpPrepared;
use crate::http::stats as hstats;
use crate::modules::ingest::hook::IngestHooks;
use crate::modules::ingest::stats as istats;
use crate::modules::ingest::worker::WorkerDbSlot;
use crate::modules::live::{Bus, LiveConf};
use crate::modules::{
    auth::{Auth, AuthConf},
    cache::{manager::CacheManager, CacheConf},
    database::DatabaseConf,
    ingest::IngestConf,
};
use crate::mqtt::conf::{MqttConf, PROTOCOL as MQTT};
use crate::mqtt::service::{self as mqtt, MqttPrepared, NoHooks};

/// The whole server: HTTP with every module.
pub struct Bizzy {
    modules: Vec<Box<dyn Module>>,
    sections: Sections,
}

impl Default for Bizzy {
    fn default() -> Self {
        let modules = crate::modules::all();
        Bizzy {
            sections: sections(&modules),
            modules,
        }
    }
}

/// Every configuration section, in the order `bizzy -T` prints them: `[http]` (whose locations
/// may name the content handlers of `modules`), `[mqtt]`, then the product modules' sections.
pub fn sections(modules: &[Box<dyn Module>]) -> Sections {
    let handlers = modules.iter().flat_map(|m| m.handlers()).copied().collect();
    let mut s = Sections::new();
    s.add_kind(Box::new(HttpSection::new(handlers)))
        .add::<MqttConf>()
        .add::<DatabaseConf>()
        .add::<CacheConf>()
        .add::<AuthConf>()
        .add::<IngestConf>()
        .add::<LiveConf>();
    s
}

impl App for Bizzy {
    fn sections(&self) -> &Sections {
        &self.sections
    }

    fn kinds(&self) -> &[Protocol] {
        &[crate::http::PROTOCOL, MQTT]
    }

    fn zones(&self, conf: &Conf) -> Vec<(String, usize)> {
        let mut z = vec![(hstats::ZONE.to_string(), hstats::zone_size())];
        z.extend(mqtt::zones(conf));
        z.push((istats::ZONE.to_string(), istats::zone_size()));
        for m in &self.modules {
            z.extend(m.zones(conf));
        }
        z
    }

    fn files(&self, conf: &Conf) -> Vec<PathBuf> {
        self.modules.iter().flat_map(|m| m.files(conf)).collect()
    }

    fn check(&self, conf: &Conf) -> Result<(), AppError> {
        auth(conf)?;
        if conf.section::<MqttConf>().listen.is_empty() {
            return Ok(());
        }
        MqttPrepared::build(conf, Rc::new(NoHooks))
            .map(drop)
            .map_err(AppError::from)
    }

    fn reaped(&self, zones: &Zones, slot: usize) {
        if let Some(z) = zones.get(hstats::ZONE) {
            hstats::reap(z, slot);
        }
        mqtt::reaped(zones, slot);
        if let Some(z) = zones.get(istats::ZONE) {
            istats::reap(z, slot);
        }
        if let Some(z) = zones.get(crate::modules::api::stats::ZONE) {
            crate::modules::api::stats::reap(z, slot);
        }
    }

    fn before_workers(&self, conf: &Conf, exe: &std::path::Path) {
        crate::modules::database::migrate::on_start(conf, exe);
    }

    fn prepare(
        &self,
        conf: &Conf,
        zones: &Zones,
        files: &[(PathBuf, std::fs::File)],
    ) -> Result<Box<dyn Prepared>, AppError> {
        let conf = Arc::new(conf.clone());
        let auth = auth(&conf)?;
        let db = Rc::new(WorkerDbSlot::new(&conf));
        let live = Rc::new(Bus::new());
        let mut shared = Shared::default();
        shared.put(Rc::clone(&db));
        shared.put(Rc::clone(&live));
        if let Some(auth) = auth {
            shared.put(auth);
        }
        let http = Http::build(&conf, zones, files, &self.modules, &shared)?;
        let mqtt = if conf.section::<MqttConf>().listen.is_empty() {
            None
        } else {
            let hooks = Rc::new(IngestHooks::new(Rc::clone(&db), live));
            Some(MqttPrepared::build(&conf, hooks)?)
        };
        Ok(Box::new(Both {
            http: HttpPrepared {
                http: Rc::new(http),
            },
            mqtt,
            db,
            cache: CacheManager::new(&conf).map(Rc::new),
        }))
    }
}

/// The cycle's `[auth]`, certificates loaded (in the master, by `check` for `-t` and by
/// `prepare` for each cycle, so a bad file fails `-t` and refuses a reload): `None` without an
/// `[auth]` section. `prepare` shares it with the HTTP modules (`reg.shared.get::<Auth>()`).
pub fn auth(conf: &Conf) -> Result<Option<Rc<Auth>>, AppError> {
    Auth::load(conf).map_err(AppError::from)
}

/// HTTP always, MQTT when it has listeners, and the worker's I/O thread with a database.
struct Both {
    http: HttpPrepared,
    mqtt: Option<MqttPrepared>,
    db: Rc<WorkerDbSlot>,
    /// The cache manager process, with a `[cache]` section.
    cache: Option<Rc<CacheManager>>,
}

impl Prepared for Both {
    fn services(&self, ctx: &WorkerCtx<'_>) -> Result<Services, AppError> {
        // Started before the services, so that the HTTP API has it without MQTT too.
        self.db.start(ctx);
        let mut s = self.http.services(ctx)?;
        if let Some(m) = &self.mqtt {
            s.push((MQTT, Box::new(m.service(ctx)?)));
        }
        Ok(s)
    }

    fn helpers(&self) -> Vec<Rc<dyn Helper>> {
        self.cache
            .iter()
            .map(|c| Rc::clone(c) as Rc<dyn Helper>)
            .collect()
    }
}

#[cfg(test)]
mod conf_tests;

#[cfg(test)]
mod module_tests;
