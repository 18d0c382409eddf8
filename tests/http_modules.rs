//! Location and server selection, and the modules behind them, through the real binary:
//! limit_req, /metrics, /status and the access log.

mod common;
use common::*;

use std::collections::HashMap;
use std::time::Duration;

fn ret(matcher: &str, body: &str) -> String {
    format!("[[http.server.location]]\n{matcher}\nreturn = {{ status = 200, body = \"{body}\" }}\n")
}

fn get_host(s: &Server, host: Option<&str>, path: &str) -> Resp {
    let raw = match host {
        Some(h) => format!("GET {path} HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n"),
        None => format!("GET {path} HTTP/1.0\r\n\r\n"),
    };
    send(s.addr(), raw.as_bytes())
}

#[test]
fn locations_match_exact_then_regex_then_longest_prefix() {
    let port = free_port();
    let locs = [
        ret("prefix = \"/x\"", "prefix-x"),
        ret("exact = \"/x\"", "exact-x"),
        ret("regex = \"^/x\"", "regex-x"),
        ret("regex = '\\.txt$'", "regex-txt"),
        ret("regex = \"(?i)^/case/\"", "regex-case"),
        ret("prefix = \"/a/\"", "prefix-a"),
        ret("prefix = \"/a/b/\"", "prefix-ab"),
        ret("prefix = \"/\"", "root"),
    ]
    .concat();
    let s = Server::start(port, &basic_conf(port, "", "", &locs));
    for (path, want) in [
        ("/x", "exact-x"),
        ("/x?q=1", "exact-x"),
        ("/xy", "regex-x"),
        ("/x/", "regex-x"),
        ("/x.txt", "regex-x"),
        ("/a/b/c", "prefix-ab"),
        ("/a/b/", "prefix-ab"),
        ("/a/c", "prefix-a"),
        ("/a/b", "prefix-a"),
        ("/a/b/c.txt", "regex-txt"),
        ("/CASE/1", "regex-case"),
        ("/zzz", "root"),
        ("/health", "ok\n"),
    ] {
        let r = get(s.addr(), path);
        assert_eq!((r.status, r.text().as_str()), (200, want), "{path}");
    }
}

#[test]
fn a_path_no_location_matches_gets_404() {
    let port = free_port();
    let s = Server::start(
        port,
        &basic_conf(port, "", "", &ret("prefix = \"/only/\"", "o")),
    );
    assert_eq!(get(s.addr(), "/only/x").text(), "o");
    assert_eq!(get(s.addr(), "/other").status, 404);
}

fn server(port: u16, names: &str, body: &str) -> String {
    format!(
        "[[http.server]]\nlisten = [\"127.0.0.1:{port}\"]\nserver_name = {names}\n{}",
        ret("prefix = \"/\"", body)
    )
}

#[test]
fn server_name_selects_among_servers_on_one_address() {
    let port = free_port();
    let http = format!(
        "[http]\naccess_log = \"off\"\n{}{}{}",
        server(port, r#"["a.test", "alias.test"]"#, "A"),
        server(port, r#"["b.test", "*.wild.test", "www.*"]"#, "B"),
        server(port, r#"["*.deep.wild.test"]"#, "C"),
    );
    let s = Server::start(port, &raw_conf(&http));
    for (host, want) in [
        (Some("a.test"), "A"),
        (Some("ALIAS.test"), "A"),
        (Some("a.test."), "A"),
        (Some("b.test"), "B"),
        (Some(format!("b.test:{port}").as_str()), "B"),
        (Some("x.wild.test"), "B"),
        (Some("y.x.wild.test"), "B"),
        (Some("y.deep.wild.test"), "C"),
        (Some("wild.test"), "A"),
        (Some("www.example.org"), "B"),
        (Some("unknown.test"), "A"),
        (Some("127.0.0.1"), "A"),
        (None, "A"),
    ] {
        let r = get_host(&s, host, "/");
        assert_eq!(r.text(), want, "Host {host:?}");
    }
}

#[test]
fn an_absolute_form_target_names_the_server() {
    let port = free_port();
    let http = format!(
        "[http]\naccess_log = \"off\"\n{}{}",
        server(port, r#"["a.test"]"#, "A"),
        server(port, r#"["b.test"]"#, "B"),
    );
    let s = Server::start(port, &raw_conf(&http));
    let raw = b"GET http://b.test/x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n";
    assert_eq!(
        send(s.addr(), raw).text(),
        "B",
        "RFC 9112 3.2.2: the target's authority replaces Host"
    );
}

#[test]
fn the_catch_all_server_takes_unknown_hosts() {
    let port = free_port();
    let http = format!(
        "[http]\naccess_log = \"off\"\n{}{}",
        server(port, r#"["a.test"]"#, "A"),
        server(port, r#"["_"]"#, "ANY"),
    );
    let s = Server::start(port, &raw_conf(&http));
    assert_eq!(get_host(&s, Some("a.test"), "/").text(), "A");
    assert_eq!(
        get_host(&s, Some("other.test"), "/").text(),
        "ANY",
        "docs/configuration.md: the `_` server before the first one"
    );
}

#[test]
fn limit_req_refuses_beyond_burst_with_retry_after() {
    let port = free_port();
    let zone = "[http.limit_req_zone.slow]\nrate = \"1r/s\"\nburst = 2";
    let loc = format!(
        "{}limit_req = \"slow\"\n",
        ret("prefix = \"/limited\"", "L")
    );
    let s = Server::start(port, &basic_conf(port, "", zone, &loc));
    let codes: Vec<Resp> = (0..4).map(|_| get(s.addr(), "/limited")).collect();
    let statuses: Vec<u16> = codes.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200, 200, 429]);
    let retry: u64 = codes[3]
        .header("Retry-After")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=3).contains(&retry), "Retry-After: {retry}");
    assert_eq!(get(s.addr(), "/health").status, 200, "other locations");
    assert_eq!(get(s.addr(), "/limited").status, 429);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(get(s.addr(), "/limited").status, 200, "the bucket leaks");
}

/// Samples of a Prometheus text page, by name with labels; checks the format on the way.
fn parse_metrics(page: &str) -> HashMap<String, f64> {
    let mut typed: HashMap<String, String> = HashMap::new();
    let mut samples = HashMap::new();
    for line in page.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(
                typed.insert(name.into(), kind.into()).is_none(),
                "two TYPE lines for {name}"
            );
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(
            !line.is_empty() && !line.starts_with('#'),
            "stray line {line:?}"
        );
        let (key, value) = line.rsplit_once(' ').expect("name value");
        let name = key.split('{').next().unwrap();
        assert!(typed.contains_key(name), "{name} sampled before its # TYPE");
        if key.contains('{') {
            assert!(key.ends_with('}'), "{line}");
        }
        if typed[name] == "counter" {
            assert!(name.ends_with("_total"), "counter {name}");
        }
        samples.insert(key.to_string(), value.parse::<f64>().expect("a number"));
    }
    samples
}

#[test]
fn metrics_are_prometheus_text_summed_over_workers() {
    let port = free_port();
    let s = Server::start(port, &basic_conf(port, "", "", ""));
    let r = get(s.addr(), "/metrics");
    assert_eq!(r.status, 200);
    assert!(r
        .header("Content-Type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let before = parse_metrics(&r.text());
    for _ in 0..20 {
        assert_eq!(get(s.addr(), "/health").status, 200);
    }
    assert_eq!(get(s.addr(), "/nowhere").status, 404);
    let after = parse_metrics(&get(s.addr(), "/metrics").text());
    let d = |k: &str| after.get(k).copied().unwrap_or(0.0) - before.get(k).copied().unwrap_or(0.0);
    assert_eq!(
        d("bizzy_http_requests_total"),
        22.0,
        "20 + 404 + the first /metrics"
    );
    assert_eq!(d("bizzy_http_responses_total{status=\"404\"}"), 1.0);
    assert_eq!(d("bizzy_http_responses_total{status=\"200\"}"), 21.0);
    assert_eq!(d("bizzy_connections_accepted_total"), 22.0);
    let per_worker: f64 = after
        .iter()
        .filter(|(k, _)| k.starts_with("bizzy_worker_connections_accepted_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(per_worker, after["bizzy_connections_accepted_total"]);
    assert!(after["bizzy_connections_active"] >= 1.0);
}

#[test]
fn status_has_the_stub_status_shape() {
    let port = free_port();
    let s = Server::start(port, &basic_conf(port, "", "", ""));
    let figures = |body: &str| -> Vec<u64> {
        let lines: Vec<&str> = body.split('\n').collect();
        assert_eq!(lines.len(), 5, "{body:?}");
        assert!(lines[0].starts_with("Active connections: "), "{body}");
        assert_eq!(lines[1], "server accepts handled requests");
        let words = |l: &str| -> Vec<u64> {
            l.split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect()
        };
        assert!(lines[3].starts_with("Reading: ") && lines[3].contains(" Writing: "));
        assert!(lines[3].contains(" Waiting: "), "{body}");
        assert_eq!(lines[4], "");
        [words(lines[0]), words(lines[2]), words(lines[3])].concat()
    };
    let a = figures(&get(s.addr(), "/status").text());
    get(s.addr(), "/health");
    let b = figures(&get(s.addr(), "/status").text());
    assert_eq!(a.len(), 7);
    assert_eq!(b[3], a[3] + 2, "requests");
    assert_eq!(b[1], a[1] + 2, "accepts");
    assert!(b[1] >= b[2] && b[0] >= 1 && b[5] >= 1, "{b:?}");
}

#[test]
fn access_log_combined_lines() {
    let port = free_port();
    let s = Server::start(port, &basic_conf(port, "", "", ""));
    let raw = "GET /health?x=1 HTTP/1.1\r\nHost: a\r\nUser-Agent: test \"agent\"/1.0\r\n\
               Referer: http://ref.example/\r\nConnection: close\r\n\r\n";
    assert_eq!(send(s.addr(), raw.as_bytes()).status, 200);
    let lines = access_lines(&s, 1);
    let line = lines
        .iter()
        .find(|l| l.contains("/health?x=1"))
        .unwrap_or_else(|| panic!("no line in {lines:?}"));
    let (ip, rest) = line.split_once(" - - [").expect("addr - - [");
    assert_eq!(ip, "127.0.0.1");
    let (time, rest) = rest.split_once("] ").expect("time]");
    let (date, zone) = time.split_once(' ').expect("time zone");
    assert!(
        zone.len() == 5 && (zone.starts_with('+') || zone.starts_with('-')),
        "{time}"
    );
    let parts: Vec<&str> = date.split(['/', ':']).collect();
    assert_eq!(parts.len(), 6, "{time}");
    assert_eq!(
        rest,
        "\"GET /health?x=1 HTTP/1.1\" 200 3 \"http://ref.example/\" \"test \\x22agent\\x22/1.0\""
    );
}

#[test]
fn access_log_json_lines_parse() {
    let port = free_port();
    let s = Server::start(
        port,
        &basic_conf(port, "", "access_log_format = \"json\"", ""),
    );
    let raw =
        "GET /health HTTP/1.1\r\nHost: h.test\r\nUser-Agent: ua \"q\"\r\nConnection: close\r\n\r\n";
    send(s.addr(), raw.as_bytes());
    get(s.addr(), "/missing");
    let lines = access_lines(&s, 2);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let v: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let ok = v
        .iter()
        .find(|j| j["uri"] == "/health")
        .expect("the /health line");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["protocol"], "HTTP/1.1");
    assert_eq!(ok["remote_addr"], "127.0.0.1");
    assert_eq!(ok["host"], "h.test");
    assert_eq!(ok["http_user_agent"], "ua \"q\"");
    assert_eq!(ok["body_bytes_sent"], 3);
    assert!(ok["bytes_sent"].as_u64().unwrap() > 3);
    assert!(ok["request_time"].is_number());
    assert!(ok["time"].as_str().unwrap().ends_with('Z'));
    assert!(v.iter().any(|j| j["status"] == 404));
}

#[test]
fn access_log_off_writes_nothing() {
    let port = free_port();
    let http = format!(
        "[http]\naccess_log = \"off\"\n{}",
        server(port, r#"["_"]"#, "x")
    );
    let s = Server::start(port, &raw_conf(&http));
    for _ in 0..3 {
        assert_eq!(get(s.addr(), "/").status, 200);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        s.access_log(),
        "",
        "access log written with access_log = \"off\""
    );
}

#[test]
fn a_location_can_keep_out_of_the_access_log() {
    let port = free_port();
    let loc = format!("{}access_log = false\n", ret("exact = \"/quiet\"", "q"));
    let s = Server::start(port, &basic_conf(port, "", "", &loc));
    get(s.addr(), "/quiet");
    get(s.addr(), "/health");
    let lines = access_lines(&s, 1);
    assert!(lines.iter().any(|l| l.contains("/health")), "{lines:?}");
    assert!(!lines.iter().any(|l| l.contains("/quiet")), "{lines:?}");
}

/// nginx logs requests it refuses before they are parsed; so do we (with "-" as the request).
#[test]
fn refused_requests_reach_the_access_log() {
    let port = free_port();
    let s = Server::start(port, &basic_conf(port, "", "", ""));
    let r = send(s.addr(), b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
    assert_eq!(r.status, 400);
    let lines = access_lines(&s, 1);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("127.0.0.1 - - [") && l.contains("] \"-\" 400 ")),
        "{lines:?}"
    );
}

/// A specific address and the wildcard of the same port: one socket (the wildcard) is bound, as
/// nginx does, and a connection to the specific address still reaches the server configured for
/// it (found with getsockname).
#[test]
fn a_specific_address_beside_the_wildcard_reaches_its_own_server() {
    let port = free_port();
    let conf = raw_conf(&format!(
        r#"
[http]
access_log = "off"

[[http.server]]
listen = ["0.0.0.0:{port}"]
  [[http.server.location]]
  exact = "/"
  return = {{ status = 200, body = "wildcard\n" }}

[[http.server]]
listen = ["127.0.0.2:{port}"]
  [[http.server.location]]
  exact = "/"
  return = {{ status = 200, body = "specific\n" }}
"#
    ));
    let s = Server::start(port, &conf);
    assert_eq!(
        get(s.addr(), "/").text(),
        "wildcard\n",
        "127.0.0.1 is served by the wildcard"
    );
    let specific = std::net::SocketAddr::from(([127, 0, 0, 2], port));
    assert_eq!(get(specific, "/").text(), "specific\n");
}
