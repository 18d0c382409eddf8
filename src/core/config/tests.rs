//! Tests of what core reads itself: `[main]`, registered sections handed their table, unknown
//! sections, listeners from sections and the address check across them. The whole server's
//! configuration is tested beside the wiring (`server/conf_tests.rs`).

use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::*;

/// A section as a protocol would declare one: a list of addresses and a limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct EchoConf {
    #[serde(with = "listen_list")]
    listen: Vec<SocketAddr>,
    max_line: Size,
}

impl Default for EchoConf {
    fn default() -> EchoConf {
        EchoConf {
            listen: Vec::new(),
            max_line: Size(1024),
        }
    }
}

const ECHO: Protocol = Protocol {
    name: "echo",
    label: "echo",
};

impl Section for EchoConf {
    const NAME: &'static str = "echo";

    fn validate(&self) -> Result<(), Invalid> {
        at_least(
            self.max_line,
            Size(2),
            &KeyPath::root(Self::NAME).key("max_line"),
        )
    }

    fn listeners(&self) -> Vec<Listener> {
        let owner = KeyPath::root(Self::NAME);
        let at = owner.key("listen");
        self.listen
            .iter()
            .enumerate()
            .map(|(i, addr)| Listener {
                addr: *addr,
                protocol: ECHO,
                backlog: 7,
                reuseport: false,
                deferred: 0,
                at: at.index(i),
                owner: owner.clone(),
            })
            .collect()
    }
}

/// A second protocol, to see addresses checked across sections.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ChatConf {
    #[serde(with = "listen_list")]
    listen: Vec<SocketAddr>,
}

impl Section for ChatConf {
    const NAME: &'static str = "chat";

    fn validate(&self) -> Result<(), Invalid> {
        Ok(())
    }

    fn listeners(&self) -> Vec<Listener> {
        let owner = KeyPath::root(Self::NAME);
        self.listen
            .iter()
            .enumerate()
            .map(|(i, addr)| Listener {
                addr: *addr,
                protocol: Protocol {
                    name: "chat",
                    label: "chat",
                },
                backlog: 9,
                reuseport: false,
                deferred: 0,
                at: owner.key("listen").index(i),
                owner: owner.clone(),
            })
            .collect()
    }
}

fn sections() -> Sections {
    let mut s = Sections::new();
    s.add::<EchoConf>().add::<ChatConf>();
    s
}

fn parse(text: &str) -> Result<Conf, String> {
    Conf::parse(
        text,
        Path::new("conf/x.toml"),
        Path::new("/srv"),
        &sections(),
    )
    .map_err(|e| e.to_string())
}

#[test]
fn main_alone() {
    let conf = Conf::parse("", Path::new("x.toml"), Path::new("/srv"), &Sections::new())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(conf.main.worker_connections, 10240);
    assert!(conf.listeners().is_empty());
    assert_eq!(conf.get::<EchoConf>(), None);
    let e = Conf::parse(
        "[echo]\n",
        Path::new("x.toml"),
        Path::new("/"),
        &Sections::new(),
    );
    assert_eq!(
        e.map(drop).map_err(|e| e.to_string()),
        Err("x.toml:1: echo: unknown key".to_string())
    );
}

#[test]
fn a_registered_section_is_read_and_handed_back() {
    let conf =
        parse("[echo]\nlisten = [\"7\"]\nmax_line = \"4k\"\n").unwrap_or_else(|e| panic!("{e}"));
    let echo = conf.section::<EchoConf>();
    assert_eq!(echo.max_line, Size(4096));
    assert_eq!(conf.section::<ChatConf>(), &ChatConf::default());
    let got = conf.listeners();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].kind, got[0].backlog), (ECHO, 7));
    let dumped = conf.dump();
    assert!(
        dumped.contains("[echo]\nlisten = [\"0.0.0.0:7\"]\nmax_line = \"4k\"\n"),
        "{dumped}"
    );
    assert!(dumped.contains("\n[chat]\nlisten = []\n"), "{dumped}");
    let again = parse(&dumped).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again, conf);
}

#[test]
fn a_section_left_out_runs_on_its_defaults_and_says_it_was_not_written() {
    let conf = parse("[echo]\nmax_line = \"4k\"\n").unwrap_or_else(|e| panic!("{e}"));
    assert!(conf.written::<EchoConf>());
    assert!(
        !conf.written::<ChatConf>(),
        "a module may stay off without its section"
    );
    assert_eq!(conf.section::<ChatConf>(), &ChatConf::default());
}

#[test]
fn errors_in_a_registered_section_name_file_line_and_key() {
    let e = parse("[main]\nworker_processes = 1\n[echo]\nmax_lin = 4\n");
    assert_eq!(
        e.unwrap_err(),
        "conf/x.toml:4: echo.max_lin: unknown key (did you mean `max_line`?)"
    );
    let e = parse("[echo]\n\nmax_line = \"1\"\n");
    assert_eq!(
        e.unwrap_err(),
        "conf/x.toml:3: echo.max_line: must be at least 2, not 1"
    );
    let e = parse("[echo]\nmax_line = \"1x\"\n");
    assert_eq!(
        e.unwrap_err(),
        "conf/x.toml:2: echo.max_line: \"1x\" is not a size"
    );
    let e = parse("[eco]\n");
    assert_eq!(
        e.unwrap_err(),
        "conf/x.toml:1: eco: unknown key (did you mean `echo`?)"
    );
}

#[test]
fn an_address_belongs_to_one_section() {
    let e =
        parse("[echo]\nlisten = [\"7\"]\n[chat]\nlisten = [\"127.0.0.1:8\", \"127.0.0.1:7\"]\n");
    assert_eq!(
        e.unwrap_err(),
        "conf/x.toml:4: chat.listen[1]: 127.0.0.1:7 is already an echo address (echo)"
    );
    let conf = parse("[chat]\nlisten = [\"9\"]\n[echo]\nlisten = [\"7\"]\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let kinds: Vec<&str> = conf.listeners().iter().map(|l| l.kind.name).collect();
    assert_eq!(
        kinds,
        ["echo", "chat"],
        "in registration order, not the file's"
    );
}

#[test]
#[should_panic(expected = "section [echo] registered twice")]
fn a_section_is_registered_once() {
    sections().add::<EchoConf>();
}
