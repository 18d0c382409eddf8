//! A module from outside core: it declares a content handler name and a configuration section of
//! its own, the wiring registers both, and neither core nor the HTTP layer is changed for it.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::core::config::{between, Conf, Invalid, KeyPath, Section, Sections};
use crate::core::shm::Zones;
use crate::core::stats;
use crate::http::conf::LocationConf;
use crate::http::module::{ContentKey, InitError, Module, Registry};
use crate::http::phase::{ContentHandler, Cx};
use crate::http::runtime::Http;
use crate::http::stats as hstats;
use crate::http::{Flow, HttpError, Request, Response};

/// `[greet]`: what the greeting handler answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct GreetConf {
    text: String,
    times: u32,
}

impl Default for GreetConf {
    fn default() -> GreetConf {
        GreetConf {
            text: "hello".to_string(),
            times: 1,
        }
    }
}

impl Section for GreetConf {
    const NAME: &'static str = "greet";

    fn validate(&self) -> Result<(), Invalid> {
        between(self.times, 1, 3, &KeyPath::root(Self::NAME).key("times"))
    }
}

/// The locations a content factory was asked to answer, by matcher.
type Made = Rc<RefCell<Vec<String>>>;

/// Serves `handler = "greet"`; remembers each location it was asked to answer.
struct GreetModule {
    made: Made,
}

struct Greet(String);

impl Module for GreetModule {
    fn name(&self) -> &'static str {
        "greet"
    }

    fn handlers(&self) -> &[&'static str] {
        &["greet"]
    }

    fn init(&self, reg: &mut Registry<'_>) -> Result<(), InitError> {
        let greet = reg.conf.section::<GreetConf>();
        let text = greet.text.repeat(greet.times as usize);
        let made = self.made.clone();
        let factory = move |l: &LocationConf| {
            made.borrow_mut().push(l.matcher.to_string());
            Ok(Rc::new(Greet(text.clone())) as Rc<dyn ContentHandler>)
        };
        reg.content(ContentKey::Handler("greet"), Box::new(factory));
        Ok(())
    }
}

impl ContentHandler for Greet {
    fn handle(&self, _req: &mut Request, _cx: &mut Cx<'_>) -> Result<Flow, HttpError> {
        Ok(Flow::Done(Response::error_json(200, "greeting", &self.0)))
    }
}

/// The server's modules and this one, and their sections with `[greet]`.
fn wired() -> (Vec<Box<dyn Module>>, Sections, Made) {
    let made = Rc::new(RefCell::new(Vec::new()));
    let mut modules = crate::modules::all();
    modules.push(Box::new(GreetModule { made: made.clone() }));
    let mut sections = super::sections(&modules);
    sections.add::<GreetConf>();
    (modules, sections, made)
}

const TEXT: &str = "[http]\naccess_log = \"off\"\n[[http.server]]\nlisten = [\"127.0.0.1:8080\"]\n\
                    [[http.server.location]]\nprefix = \"/hi/\"\nhandler = \"greet\"\n\
                    [greet]\ntext = \"hi\"\ntimes = 2\n";

fn parse(text: &str) -> Result<Conf, String> {
    let (_, sections, _) = wired();
    Conf::parse(text, Path::new("conf/x.toml"), Path::new("/srv"), &sections)
        .map_err(|e| e.to_string())
}

#[test]
fn the_section_is_read_and_checked() {
    let conf = parse(TEXT).unwrap_or_else(|e| panic!("{e}"));
    let greet = conf.section::<GreetConf>();
    assert_eq!((greet.text.as_str(), greet.times), ("hi", 2));
    assert!(conf
        .dump()
        .ends_with("\n[greet]\ntext = \"hi\"\ntimes = 2\n"));
    let e = parse(&TEXT.replace("times = 2", "times = 9")).unwrap_err();
    assert_eq!(
        e,
        "conf/x.toml:10: greet.times: must be between 1 and 3, not 9"
    );
    let e = parse(&TEXT.replace("times = 2", "tims = 2")).unwrap_err();
    assert_eq!(
        e,
        "conf/x.toml:10: greet.tims: unknown key (did you mean `times`?)"
    );
}

#[test]
fn the_handler_name_is_known_to_locations() {
    let e = parse(&TEXT.replace("handler = \"greet\"", "handler = \"gret\"")).unwrap_err();
    let want = "conf/x.toml:7: http.server[0].location[0].handler: \"gret\" is not one of \
                \"api\", \"status\", \"metrics\", \"static\", \"greet\"";
    assert_eq!(e, want);
    let without = TEXT.split("[greet]").next().expect("the http part");
    let plain = Conf::parse(
        without,
        Path::new("conf/x.toml"),
        Path::new("/srv"),
        &super::sections(&crate::modules::all()),
    );
    let e = plain.map(drop).map_err(|e| e.to_string()).unwrap_err();
    assert!(
        e.starts_with("conf/x.toml:7: http.server[0].location[0].handler: \"greet\" is not one of"),
        "{e}"
    );
}

#[test]
fn the_location_is_answered_by_the_module() {
    let (modules, sections, made) = wired();
    let conf = Conf::parse(TEXT, Path::new("x.toml"), Path::new("/srv"), &sections)
        .unwrap_or_else(|e| panic!("{e}"));
    let wanted = [
        (stats::ZONE.to_string(), stats::zone_size()),
        (hstats::ZONE.to_string(), hstats::zone_size()),
    ];
    let zones = Zones::build(&wanted, None).expect("the stats zones");
    let http = Http::build(&Arc::new(conf), &zones, &[], &modules, &Default::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(*made.borrow(), ["prefix \"/hi/\""]);
    let loc = http.servers.servers[0]
        .find("/hi/there")
        .expect("the location");
    assert_eq!(loc.conf.handler.as_deref(), Some("greet"));
}
