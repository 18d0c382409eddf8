//! Tests of the configuration as a whole, with every section the wiring registers: the example
//! file, defaults, `dump()` round trips, listeners, and every validation error with its exact
//! `file:line: key: message` text.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::core::config::*;
use crate::http::conf::{HttpConf, LocationMatch};
use crate::modules::{
    auth::AuthConf, cache::CacheConf, database::DatabaseConf, ingest::IngestConf,
};
use crate::mqtt::conf::MqttConf;

const EXAMPLE: &str = include_str!("../../conf/bizzy.toml");

/// The sections of the whole server.
fn all() -> Sections {
    super::sections(&crate::modules::all())
}

impl Conf {
    /// Parses with every section the server registers.
    fn parse_all(text: &str, file: &Path, prefix: &Path) -> Result<Conf, ConfError> {
        Conf::parse(text, file, prefix, &all())
    }

    fn http(&self) -> &HttpConf {
        self.section()
    }

    fn mqtt(&self) -> &MqttConf {
        self.section()
    }

    fn database(&self) -> &DatabaseConf {
        self.section()
    }

    fn cache(&self) -> &CacheConf {
        self.section()
    }

    fn auth(&self) -> &AuthConf {
        self.section()
    }

    fn ingest(&self) -> &IngestConf {
        self.section()
    }
}

fn parse(text: &str) -> Conf {
    match Conf::parse_all(text, Path::new("conf/x.toml"), Path::new("/srv/bizzy")) {
        Ok(conf) => conf,
        Err(e) => panic!("{e}"),
    }
}

/// The error text of an invalid configuration.
fn err(text: &str) -> String {
    match Conf::parse_all(text, Path::new("conf/x.toml"), Path::new("/srv/bizzy")) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn addr(text: &str) -> SocketAddr {
    parse_listen(text).expect("test address")
}

/// A server on 127.0.0.1:8080 with the given location lines (line 4 onwards).
fn server_with(location: &str) -> String {
    format!("[[http.server]]\nlisten = [\"127.0.0.1:8080\"]\n[[http.server.location]]\n{location}")
}

#[test]
fn example_loads() {
    let conf = Conf::parse_all(
        EXAMPLE,
        Path::new("conf/bizzy.toml"),
        Path::new("/srv/bizzy"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(conf.main.worker_processes, 2);
    assert_eq!(conf.main.pid, Path::new("/srv/bizzy/var/run/bizzy.pid"));
    assert_eq!(
        conf.main.error_log,
        Path::new("/srv/bizzy/var/log/error.log")
    );
    assert_eq!(
        conf.http().access_log.as_deref(),
        Some(Path::new("/srv/bizzy/var/log/access.log"))
    );
    let server = &conf.http().server[0];
    assert_eq!(server.listen, vec![addr("127.0.0.1:8080")]);
    let matchers: Vec<String> = server
        .location
        .iter()
        .map(|l| l.matcher.to_string())
        .collect();
    let want = [
        "exact \"/health\"",
        "exact \"/status\"",
        "exact \"/metrics\"",
        "prefix \"/v1/\"",
        "prefix \"/\"",
    ];
    assert_eq!(matchers, want);
    let health = server.location[0].return_.as_ref().expect("return");
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    assert_eq!(server.location[3].handler, Some("api".to_string()));
    assert_eq!(server.location[3].limit_req.as_deref(), Some("public"));
    assert_eq!(
        server.location[4].root.as_deref(),
        Some(Path::new("/srv/bizzy/html"))
    );
    let zone = &conf.http().limit_req_zone["public"];
    assert_eq!(
        (zone.rate.per_second, zone.burst, zone.nodelay),
        (50.0, 100, true)
    );
    assert_eq!(conf.mqtt().listen, vec![addr("127.0.0.1:1883")]);
    assert_eq!(conf.auth().admin_uids, vec!["uid-of-the-first-operator"]);
    assert_eq!(
        conf.file,
        std::env::current_dir().unwrap().join("conf/bizzy.toml")
    );
}

#[test]
fn example_shows_the_defaults() {
    let conf = parse(EXAMPLE);
    let empty = parse("");
    assert_eq!(conf.http().access_log, empty.http().access_log);
    assert_eq!(conf.database(), empty.database());
    assert_eq!(conf.cache(), empty.cache());
    assert_eq!(conf.ingest(), empty.ingest());
    let mut main = conf.main.clone();
    main.worker_processes = 1;
    assert_eq!(main, empty.main);
    let mut http = conf.http().clone();
    http.server.clear();
    http.limit_req_zone.clear();
    assert_eq!(&http, empty.http());
    let mut mqtt = conf.mqtt().clone();
    mqtt.listen.clear();
    // The example names the demo's password file; the default is none.
    mqtt.password_file = None;
    assert_eq!(&mqtt, empty.mqtt());
}

#[test]
fn empty_file_is_valid() {
    let conf = parse("");
    assert!(conf.http().server.is_empty());
    assert!(conf.listeners().is_empty());
    assert_eq!(conf.main.worker_connections, 10240);
    assert_eq!(conf.main.log_level, LogLevel::Info);
    assert_eq!(conf.http().keepalive_timeout, Dur::secs(75));
    assert_eq!(conf.http().client_max_body_size, Size(1 << 20));
    assert_eq!(conf.http().gzip_types.len(), 8);
    assert_eq!(conf.mqtt().max_packet_size, Size(64 << 10));
    assert_eq!(conf.database().spool_dir, Path::new("/srv/bizzy/var/spool"));
    assert_eq!(
        conf.auth().certificates,
        Path::new("/srv/bizzy/conf/firebase-certs.json")
    );
    assert_eq!(conf.ingest().max_clock_skew, Dur::secs(600));
    assert_eq!(conf.prefix, Path::new("/srv/bizzy"));
}

#[test]
fn auto_worker_processes_is_the_cpu_count() {
    let conf = parse("[main]\nworker_processes = \"auto\"\n");
    assert_eq!(conf.main.worker_processes, auto_worker_processes());
    assert!(conf.main.worker_processes >= 1);
    let e = err("[main]\nworker_processes = \"many\"\n");
    let want = "conf/x.toml:2: main.worker_processes: \"many\" is neither a number of processes nor \"auto\"";
    assert_eq!(e, want);
}

#[test]
fn special_values() {
    let conf = parse(
        "[main]\nerror_log = \"stderr\"\npid = \"/run/bizzy.pid\"\n[http]\naccess_log = \"off\"\n",
    );
    assert_eq!(conf.main.error_log, PathBuf::from("stderr"));
    assert_eq!(conf.main.pid, PathBuf::from("/run/bizzy.pid"));
    assert_eq!(conf.http().access_log, None);
    let conf = parse("[main]\nlog_level = \"warn\"\n");
    assert_eq!(conf.main.log_level, LogLevel::Warn);
    assert!(LogLevel::Debug < LogLevel::Crit);
}

#[test]
fn dump_reparses_to_an_equal_configuration() {
    let rich = format!("{EXAMPLE}\n[http.types]\ngeojson = \"application/geo+json\"\n")
        .replace(
            "# worker_rlimit_nofile = 65536",
            "worker_rlimit_nofile = 65536",
        )
        .replace(
            "access_log = \"var/log/access.log\"",
            "access_log = \"off\"",
        )
        .replace("# connect_rate = \"10r/s\"", "connect_rate = \"600r/m\"")
        .replace("# password_file", "password_file")
        .replace("# expires = \"1h\"", "expires = \"1500ms\"")
        .replace("# gzip = false", "gzip = false");
    let rich = rich.replacen("[http.types]                          # extension = MIME type, added to the built-in table; default empty\n", "", 1);
    for text in [EXAMPLE, "", rich.as_str()] {
        let conf = parse(text);
        let dumped = conf.dump();
        let again = parse(&dumped);
        assert_eq!(again, conf, "dump:\n{dumped}");
    }
    let conf = parse(&rich);
    assert_eq!(conf.main.worker_rlimit_nofile, Some(65536));
    assert_eq!(
        conf.mqtt().connect_rate.as_ref().map(|r| r.per_second),
        Some(10.0)
    );
    assert_eq!(conf.http().types["geojson"], "application/geo+json");
    let dumped = conf.dump();
    assert!(dumped.contains("access_log = \"off\""), "{dumped}");
    assert!(dumped.contains("expires = \"1500ms\""), "{dumped}");
}

#[test]
fn listeners_are_distinct() {
    let text = "[[http.server]]\nlisten = [\"127.0.0.1:8080\", \"8081\"]\nbacklog = 100\n\
                [[http.server]]\nlisten = [\"127.0.0.1:8080\"]\nserver_name = [\"example.com\"]\nbacklog = 100\n\
                [mqtt]\nlisten = [\"[::1]:1883\"]\nbacklog = 50\n";
    let got = parse(text).listeners();
    let want = vec![
        ListenSpec {
            addr: addr("127.0.0.1:8080"),
            kind: crate::http::PROTOCOL,
            backlog: 100,
            reuseport: false,
            deferred: 0,
        },
        ListenSpec {
            addr: addr("0.0.0.0:8081"),
            kind: crate::http::PROTOCOL,
            backlog: 100,
            reuseport: false,
            deferred: 0,
        },
        ListenSpec {
            addr: addr("[::1]:1883"),
            kind: crate::mqtt::conf::PROTOCOL,
            backlog: 50,
            reuseport: false,
            deferred: 0,
        },
    ];
    assert_eq!(got, want);
}

#[test]
fn deferred_accept_waits_as_long_as_the_header_timeout() {
    let text = "[http]\nclient_header_timeout = \"2500ms\"\n\
                [[http.server]]\nlisten = [\"8082\"]\ndeferred = true\n";
    assert_eq!(
        parse(text).listeners()[0].deferred,
        3,
        "whole seconds, rounded up"
    );
}

#[test]
fn server_names_are_lowercased() {
    let conf = parse("[[http.server]]\nlisten = [\"8080\"]\nserver_name = [\"Example.COM\", \"*.Example.com\"]\n");
    assert_eq!(
        conf.http().server[0].server_name,
        vec!["example.com", "*.example.com"]
    );
}

#[test]
fn load_reads_a_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bizzy.toml");
    std::fs::write(&file, EXAMPLE).expect("write");
    let conf = Conf::load(&file, dir.path(), &all()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(conf.file, file);
    assert_eq!(conf.main.pid, dir.path().join("var/run/bizzy.pid"));
    let missing = Conf::load(Path::new("conf/none.toml"), Path::new("."), &all()).unwrap_err();
    assert_eq!(
        missing.to_string(),
        "conf/none.toml: cannot read: No such file or directory"
    );
    assert_eq!(missing.line, None);
}

#[test]
fn syntax_errors_name_the_line() {
    let e = err("[http]\nkeepalive_timeout = \"75s\"\nkeepalive_timeout = \"5s\"\n");
    assert_eq!(e, "conf/x.toml:3: duplicate key");
    let e = err("[main]\nworker_processes = 2\n[http\n");
    assert!(e.starts_with("conf/x.toml:3: "), "{e}");
}

#[test]
fn unknown_keys_name_line_and_path() {
    let e = err("[htp]\n");
    assert_eq!(e, "conf/x.toml:1: htp: unknown key (did you mean `http`?)");
    let e = err("[http]\ngzip = true\nkeepalive_timout = \"10s\"\n");
    assert_eq!(
        e,
        "conf/x.toml:3: http.keepalive_timout: unknown key (did you mean `keepalive_timeout`?)"
    );
    let e = err("[cache]\nsomething_else = 1\n");
    assert_eq!(e, "conf/x.toml:2: cache.something_else: unknown key");
}

#[test]
fn unknown_key_deep_inside_a_location() {
    let text = "[[http.server]]\nlisten = [\"8080\"]\n\
                [[http.server.location]]\nexact = \"/a\"\nhandler = \"api\"\n\
                [[http.server.location]]\nprefix = \"/b/\"\nhandler = \"static\"\nrooot = \"html\"\n";
    let e = err(text);
    assert_eq!(
        e,
        "conf/x.toml:9: http.server[0].location[1].rooot: unknown key (did you mean `root`?)"
    );
    let e = err(&server_with(
        "exact = \"/\"\nreturn = { status = 200, bodyy = \"x\" }\n",
    ));
    assert_eq!(e, "conf/x.toml:5: http.server[0].location[0].return.bodyy: unknown key (did you mean `body`?)");
}

#[test]
fn wrong_types_and_units_name_the_key() {
    let e = err("[http]\nkeepalive_timeout = \"10x\"\n");
    assert_eq!(
        e,
        "conf/x.toml:2: http.keepalive_timeout: \"10x\" is not a duration"
    );
    let e = err("[http]\n\nkeepalive_requests = \"many\"\n");
    let want = "conf/x.toml:3: http.keepalive_requests: invalid type: string \"many\", expected a non-negative integer";
    assert_eq!(e, want);
    let e = err("[http]\nclient_max_body_size = \"1x\"\n");
    assert_eq!(
        e,
        "conf/x.toml:2: http.client_max_body_size: \"1x\" is not a size"
    );
    let e = err("[http]\nclient_max_body_size = -1\n");
    assert_eq!(
        e,
        "conf/x.toml:2: http.client_max_body_size: -1 is negative"
    );
    let e = err("[http]\nsend_timeout = 10\n");
    assert_eq!(
        e,
        "conf/x.toml:2: http.send_timeout: 10 has no unit (write e.g. \"10s\" or \"10ms\")"
    );
    let e = err("[main]\nlog_level = \"loud\"\n");
    let want = "conf/x.toml:2: main.log_level: \"loud\" is not one of \"debug\", \"info\", \"notice\", \"warn\", \"error\", \"crit\"";
    assert_eq!(e, want);
    let e = err("[mqtt]\nlisten = \"1883\"\n");
    assert_eq!(
        e,
        "conf/x.toml:2: mqtt.listen: invalid type: string \"1883\", expected an array"
    );
    let e = err("[[http.server]]\nlisten = [\"8080\", \"localhost:80\"]\n");
    let want = "conf/x.toml:2: http.server[0].listen: \"localhost:80\" is not a listening address \
                (write \"127.0.0.1:8080\", \"[::1]:8080\", \"*:8080\" or \"8080\")";
    assert_eq!(e, want);
    let e = err(&server_with("exact = \"/\"\nhandler = \"apii\"\n"));
    let want = "conf/x.toml:5: http.server[0].location[0].handler: \"apii\" is not one of \"api\", \"status\", \"metrics\", \"static\"";
    assert_eq!(e, want);
}

#[test]
fn main_section_errors() {
    let e = err("[main]\nworker_processes = 0\n");
    assert_eq!(
        e,
        "conf/x.toml:2: main.worker_processes: must be between 1 and 1024, not 0"
    );
    let e = err("[main]\nworker_connections = 8\n");
    assert_eq!(
        e,
        "conf/x.toml:2: main.worker_connections: must be between 16 and 1048576, not 8"
    );
    let e = err("[main]\nworker_rlimit_nofile = 1024\n");
    let want = "conf/x.toml:2: main.worker_rlimit_nofile: must be at least worker_connections (10240), not 1024";
    assert_eq!(e, want);
    let e = err("[main]\nuser = \"a:b:c\"\n");
    assert_eq!(
        e,
        "conf/x.toml:2: main.user: \"a:b:c\" is not \"user\" or \"user:group\""
    );
    let e = err("[main]\npid = \"\"\n");
    assert_eq!(e, "conf/x.toml:2: main.pid: must not be empty");
}

#[test]
fn http_section_errors() {
    let e = err("[http]\ngzip_comp_level = 10\n");
    assert_eq!(
        e,
        "conf/x.toml:2: http.gzip_comp_level: must be between 1 and 9, not 10"
    );
    let e = err("[http]\nclient_header_buffer_size = \"16k\"\n");
    assert_eq!(
        e,
        "conf/x.toml:2: http.client_header_buffer_size: must be between 128 and 8k, not 16k"
    );
    let e = err("[http]\nsend_timeout = \"0s\"\n");
    assert_eq!(
        e,
        "conf/x.toml:2: http.send_timeout: must be at least 1ms, not 0s"
    );
    let e = err("[http]\ngzip_types = [\"text/html\", \"json\"]\n");
    assert_eq!(
        e,
        "conf/x.toml:2: http.gzip_types[1]: \"json\" is not a MIME type"
    );
    let e = err("[http.types]\n\".geojson\" = \"application/geo+json\"\n");
    let want = "conf/x.toml:2: http.types.\".geojson\": \".geojson\" is not a file extension (write it without the dot)";
    assert_eq!(e, want);
    let e = err("[http]\nkeepalive_requests = 0\n");
    assert_eq!(
        e,
        "conf/x.toml:2: http.keepalive_requests: must be at least 1, not 0"
    );
}

#[test]
fn limit_req_zone_errors() {
    let e = err("[http.limit_req_zone.z]\nburst = 5\n");
    assert_eq!(e, "conf/x.toml:1: http.limit_req_zone.z.rate: is required");
    let e = err("[http.limit_req_zone.z]\nrate = \"0r/s\"\n");
    assert_eq!(
        e,
        "conf/x.toml:2: http.limit_req_zone.z.rate: \"0r/s\": a rate must be more than 0"
    );
    let e = err("[http.limit_req_zone.z]\nrate = \"5r/s\"\nsize = \"16k\"\n");
    assert_eq!(
        e,
        "conf/x.toml:3: http.limit_req_zone.z.size: must be at least 32k, not 16k"
    );
    let e = err("[http.limit_req_zone.z]\nrate = \"5r/s\"\nstatus = 200\n");
    assert_eq!(
        e,
        "conf/x.toml:3: http.limit_req_zone.z.status: must be between 400 and 599, not 200"
    );
    let e = err("[http.limit_req_zone.z]\nrate = \"5r/s\"\nkey = \"uri\"\n");
    assert_eq!(
        e,
        "conf/x.toml:3: http.limit_req_zone.z.key: \"uri\" is not one of \"remote_addr\""
    );
}

#[test]
fn location_matcher_errors() {
    let e = err(&server_with("handler = \"api\"\n"));
    assert_eq!(
        e,
        "conf/x.toml:3: http.server[0].location[0]: needs one of `exact`, `prefix` or `regex`"
    );
    let e = err(&server_with(
        "exact = \"/a\"\nprefix = \"/a\"\nhandler = \"api\"\n",
    ));
    let want = "conf/x.toml:5: http.server[0].location[0].prefix: cannot be combined with `exact` \
                (a location has exactly one of exact, prefix, regex)";
    assert_eq!(e, want);
    let inline = "[[http.server]]\nlisten = [\"8080\"]\nlocation = [\n  { prefix = \"/\", handler = \"api\" },\n  \
                  { exact = \"/\", prefix = \"/\" },\n]\n";
    let e = err(inline);
    let want = "conf/x.toml:5: http.server[0].location[1].prefix: cannot be combined with `exact` \
                (a location has exactly one of exact, prefix, regex)";
    assert_eq!(e, want);
    let e = err(&server_with("prefix = \"v1/\"\nhandler = \"api\"\n"));
    assert_eq!(
        e,
        "conf/x.toml:4: http.server[0].location[0].prefix: \"v1/\" must start with \"/\""
    );
    let e = err(&server_with("regex = \"^/(a\"\nhandler = \"api\"\n"));
    assert_eq!(e, "conf/x.toml:4: http.server[0].location[0].regex: \"^/(a\" is not a valid regex: unclosed group");
    let conf = parse(&server_with(
        "regex = \"(?i)\\\\.png$\"\nhandler = \"api\"\n",
    ));
    assert_eq!(
        conf.http().server[0].location[0].matcher,
        LocationMatch::Regex("(?i)\\.png$".into())
    );
    let text = server_with("exact = \"/a\"\nhandler = \"api\"\n[[http.server.location]]\nexact = \"/a\"\nhandler = \"status\"\n");
    let e = err(&text);
    assert_eq!(
        e,
        "conf/x.toml:7: http.server[0].location[1].exact: duplicates http.server[0].location[0]"
    );
}

#[test]
fn location_answer_errors() {
    let e = err(&server_with("exact = \"/\"\n"));
    assert_eq!(
        e,
        "conf/x.toml:3: http.server[0].location[0]: needs `return` or `handler`"
    );
    let e = err(&server_with(
        "exact = \"/\"\nreturn = { status = 204 }\nhandler = \"api\"\n",
    ));
    assert_eq!(
        e,
        "conf/x.toml:6: http.server[0].location[0].handler: cannot be combined with `return`"
    );
    let e = err(&server_with("exact = \"/\"\nhandler = \"static\"\n"));
    assert_eq!(
        e,
        "conf/x.toml:3: http.server[0].location[0].root: is required with handler = \"static\""
    );
    let e = err(&server_with(
        "exact = \"/\"\nhandler = \"api\"\nroot = \"html\"\n",
    ));
    assert_eq!(
        e,
        "conf/x.toml:6: http.server[0].location[0].root: is only allowed with handler = \"static\""
    );
    let e = err(&server_with(
        "exact = \"/\"\nhandler = \"api\"\nexpires = \"1h\"\n",
    ));
    assert_eq!(e, "conf/x.toml:6: http.server[0].location[0].expires: is only allowed with handler = \"static\"");
    let e = err(&server_with(
        "exact = \"/\"\nhandler = \"api\"\nlimit_req = \"nope\"\n",
    ));
    let want = "conf/x.toml:6: http.server[0].location[0].limit_req: no zone \"nope\" is defined in [http.limit_req_zone]";
    assert_eq!(e, want);
    let e = err(&server_with(
        "prefix = \"/\"\nhandler = \"static\"\nroot = \"html\"\nindex = [\"a/b.html\"]\n",
    ));
    assert_eq!(
        e,
        "conf/x.toml:7: http.server[0].location[0].index[0]: \"a/b.html\" is not a file name"
    );
}

#[test]
fn return_errors() {
    let e = err(&server_with("exact = \"/\"\nreturn = { status = 600 }\n"));
    assert_eq!(e, "conf/x.toml:5: http.server[0].location[0].return.status: must be between 100 and 599, not 600");
    let e = err(&server_with(
        "exact = \"/\"\nreturn = { status = 200, location = \"/x\" }\n",
    ));
    let want = "conf/x.toml:5: http.server[0].location[0].return.location: is only allowed with status 301, 302, 303, 307 or 308";
    assert_eq!(e, want);
    let e = err(&server_with(
        "exact = \"/\"\n\n[http.server.location.return]\nstatus = 301\n",
    ));
    assert_eq!(
        e,
        "conf/x.toml:6: http.server[0].location[0].return.location: is required with status 301"
    );
    let e = err(&server_with(
        "exact = \"/\"\nreturn = { content_type = \"plain\" }\n",
    ));
    assert_eq!(e, "conf/x.toml:5: http.server[0].location[0].return.content_type: \"plain\" is not a MIME type");
    let conf = parse(&server_with(
        "exact = \"/old\"\nreturn = { status = 308, location = \"https://example.com/new\" }\n",
    ));
    let ret = conf.http().server[0].location[0]
        .return_
        .clone()
        .expect("return");
    assert_eq!(ret.location.as_deref(), Some("https://example.com/new"));
    assert_eq!(ret.content_type, "text/plain");
}

#[test]
fn server_errors() {
    let e = err("[[http.server]]\nbacklog = 10\n");
    assert_eq!(
        e,
        "conf/x.toml:1: http.server[0].listen: needs at least one address"
    );
    let e = err("[[http.server]]\nlisten = [\"8080\", \"*:8080\"]\n");
    assert_eq!(
        e,
        "conf/x.toml:2: http.server[0].listen[1]: 0.0.0.0:8080 is given twice"
    );
    let e = err("[[http.server]]\nlisten = [\"8080\"]\nbacklog = 0\n");
    assert_eq!(
        e,
        "conf/x.toml:3: http.server[0].backlog: must be between 1 and 65535, not 0"
    );
    let e = err("[[http.server]]\nlisten = [\"8080\"]\nserver_name = [\"a.*.com\"]\n");
    let want = "conf/x.toml:3: http.server[0].server_name[0]: \"a.*.com\" is not a host name, \"*.example.com\", \"example.*\" or \"_\"";
    assert_eq!(e, want);
    let e = err("[[http.server]]\nlisten = [\"8080\"]\nserver_name = []\n");
    assert_eq!(
        e,
        "conf/x.toml:3: http.server[0].server_name: needs at least one name (\"_\" matches any)"
    );
}

#[test]
fn servers_together_errors() {
    let text = "[[http.server]]\nlisten = [\"127.0.0.1:8080\"]\nserver_name = [\"a.com\", \"_\"]\n\
                [[http.server]]\nlisten = [\"127.0.0.1:8081\", \"127.0.0.1:8080\"]\nserver_name = [\"b.com\", \"A.com\"]\n";
    let e = err(text);
    let want = "conf/x.toml:6: http.server[1].server_name[1]: \"A.com\" on 127.0.0.1:8080 is already served by http.server[0]";
    assert_eq!(e, want);
    let text = "[[http.server]]\nlisten = [\"8080\"]\n[[http.server]]\nlisten = [\"8080\"]\nserver_name = [\"b.com\"]\nbacklog = 10\n";
    let e = err(text);
    let want = "conf/x.toml:6: http.server[1].backlog: 10 differs from 511 set for 0.0.0.0:8080 by http.server[0]";
    assert_eq!(e, want);
    let text = "[[http.server]]\nlisten = [\"8080\"]\nreuseport = true\n[[http.server]]\nlisten = [\"8080\"]\nserver_name = [\"b.com\"]\n";
    let e = err(text);
    let want = "conf/x.toml:4: http.server[1].reuseport: false differs from true set for 0.0.0.0:8080 by http.server[0]";
    assert_eq!(e, want);
    let text = "[[http.server]]\nlisten = [\"8080\"]\n[[http.server]]\nlisten = [\"8080\"]\nserver_name = [\"b.com\"]\ndeferred = true\n";
    let e = err(text);
    let want = "conf/x.toml:6: http.server[1].deferred: true differs from false set for 0.0.0.0:8080 by http.server[0]";
    assert_eq!(e, want);
    let text = "[[http.server]]\nlisten = [\"8080\"]\n[[http.server]]\nlisten = [\"8080\"]\n";
    let e = err(text);
    assert_eq!(e, "conf/x.toml:3: http.server[1].server_name[0]: \"_\" on 0.0.0.0:8080 is already served by http.server[0]");
    let text = "[[http.server]]\nlisten = [\"8080\"]\n[mqtt]\nlisten = [\"1883\", \"*:8080\"]\n";
    let e = err(text);
    assert_eq!(
        e,
        "conf/x.toml:4: mqtt.listen[1]: 0.0.0.0:8080 is already an HTTP address (http.server[0])"
    );
    let text = "[[http.server]]\nlisten = [\"127.0.0.1:8080\"]\n[mqtt]\nlisten = [\"*:8080\"]\n";
    assert_eq!(
        err(text),
        "conf/x.toml:4: mqtt.listen[0]: 0.0.0.0:8080 is already an HTTP address (http.server[0])",
        "a wildcard and a specific address of one port share a socket"
    );
}

proptest::proptest! {
    #[test]
    fn any_text_gives_a_conf_or_an_error(text in "(\\PC|\n|\\[|\\]|=|\"){0,200}") {
        let _ = Conf::parse_all(&text, Path::new("f.toml"), Path::new("/"));
    }

    #[test]
    fn any_value_in_the_example_gives_a_conf_or_an_error(line in 0usize..120, value in 0usize..12) {
        const VALUES: [&str; 12] = [
            "\"\"", "0", "-1", "\"x\"", "[]", "{}", "true", "1.5", "\"0s\"",
            "99999999999999999999", "[\"\"]", "{ status = 0 }",
        ];
        let text: Vec<String> = EXAMPLE
            .lines()
            .enumerate()
            .map(|(i, l)| match l.split_once(" = ") {
                Some((key, _)) if i == line => format!("{key} = {}", VALUES[value]),
                _ => l.to_string(),
            })
            .collect();
        let _ = Conf::parse_all(&text.join("\n"), Path::new("f.toml"), Path::new("/"));
    }

    #[test]
    fn units_never_panic_and_round_trip(text in "[0-9]{0,22}(ms|s|m|h|d|k|K|g|r/s|r/m|x)?") {
        if let Ok(d) = text.parse::<Dur>() {
            proptest::prop_assert_eq!(d.to_string().parse::<Dur>(), Ok(d));
        }
        if let Ok(s) = text.parse::<Size>() {
            proptest::prop_assert_eq!(s.to_string().parse::<Size>(), Ok(s));
        }
        if let Ok(r) = text.parse::<Rate>() {
            proptest::prop_assert!(r.per_second > 0.0);
        }
    }
}
