//! Smoke tests of the real binary: start, answer, stop.

mod common;
use common::*;

#[test]
fn return_status_and_keepalive() {
    let port = free_port();
    let s = Server::start(port, &basic_conf(port, "", "", ""));
    let r = get(s.addr(), "/health");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "ok\n");
    assert!(r.header("Date").is_some());
    assert!(r.header("Server").unwrap().starts_with("bizzy"));
    let st = get(s.addr(), "/status");
    assert!(
        st.text().starts_with("Active connections: "),
        "{}",
        st.text()
    );
    let mut c = connect(s.addr());
    let mut buf = Vec::new();
    for _ in 0..3 {
        use std::io::Write;
        c.write_all(b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap();
        let r = read_response(&mut c, &mut buf, false).unwrap();
        assert_eq!(r.status, 200);
        assert!(r.header("Connection").is_none());
    }
}
