//! The status page: served beside /metrics when the daemon gives one, read-only,
//! with the headers that keep other origins and injected markup out.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use metrics::prometheus::Registry;
use metrics::{MetricsServer, StatusPage};

fn request(addr: SocketAddr, head: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(stream, "{head}\r\nConnection: close\r\n\r\n").unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    reply
}

fn get(addr: SocketAddr, path: &str) -> String {
    request(addr, &format!("GET {path} HTTP/1.1\r\nHost: {addr}"))
}

fn header<'a>(reply: &'a str, name: &str) -> Option<&'a str> {
    let head = reply.split("\r\n\r\n").next()?;
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn body(reply: &str) -> &str {
    reply.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// A page whose status is `{"node": <name>, "asked": <how many times so far>}`.
fn server(name: &'static str) -> (MetricsServer, Arc<AtomicUsize>) {
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&asked);
    let page = StatusPage::new("vrrpd", move || {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        async move { Ok(format!("{{\"node\":{name:?},\"asked\":{n}}}").into_bytes()) }
    });
    let server =
        MetricsServer::start_with_status("127.0.0.1:0".parse().unwrap(), Registry::new(), page)
            .unwrap();
    (server, asked)
}

#[test]
fn the_page_and_its_json_are_served_with_a_strict_policy_and_no_cors() {
    let (server, asked) = server("lb1");
    let page = get(server.addr(), "/status");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert_eq!(
        header(&page, "content-type"),
        Some("text/html; charset=utf-8")
    );
    let policy = header(&page, "content-security-policy").expect("a CSP");
    assert!(policy.starts_with("default-src 'none'"), "{policy}");
    assert!(policy.contains("connect-src 'self'"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert_eq!(header(&page, "x-content-type-options"), Some("nosniff"));
    assert!(header(&page, "access-control-allow-origin").is_none());
    let html = body(&page);
    assert!(html.contains("data-daemon=\"vrrpd\""), "{html}");
    assert!(!html.contains("<form") && !html.contains("method=\"post\""));
    assert!(
        !html.contains("src=") && !html.contains("href="),
        "external assets"
    );

    let json = get(server.addr(), "/status.json");
    assert!(json.starts_with("HTTP/1.1 200"), "{json}");
    assert_eq!(header(&json, "content-type"), Some("application/json"));
    assert_eq!(header(&json, "cache-control"), Some("no-store"));
    assert!(header(&json, "access-control-allow-origin").is_none());
    let value: serde_json::Value = serde_json::from_str(body(&json)).unwrap();
    assert_eq!(value["node"], "lb1");
    // Requests close together share one question to the daemon.
    let again = get(server.addr(), "/status.json");
    assert_eq!(body(&again), body(&json));
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    std::thread::sleep(std::time::Duration::from_millis(600));
    let later: serde_json::Value =
        serde_json::from_str(body(&get(server.addr(), "/status.json"))).unwrap();
    assert_eq!(later["asked"], 2);
}

#[test]
fn writes_and_foreign_host_names_are_refused() {
    let (server, asked) = server("lb1");
    let addr = server.addr();
    for method in ["POST", "PUT", "DELETE"] {
        let reply = request(
            addr,
            &format!("{method} /status.json HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0"),
        );
        assert!(reply.starts_with("HTTP/1.1 405"), "{method}: {reply}");
    }
    // A page on another name rebound to this address: refused before the daemon is asked.
    let rebound = request(
        addr,
        &format!(
            "GET /status.json HTTP/1.1\r\nHost: attacker.example:{}",
            addr.port()
        ),
    );
    assert!(rebound.starts_with("HTTP/1.1 421"), "{rebound}");
    assert_eq!(asked.load(Ordering::SeqCst), 0);
    let local = request(
        addr,
        &format!("GET /status HTTP/1.1\r\nHost: localhost:{}", addr.port()),
    );
    assert!(local.starts_with("HTTP/1.1 200"), "{local}");
}

#[test]
fn a_failing_source_is_a_503_with_its_reason() {
    let page = StatusPage::new("lbd", || async { Err("lbd is shutting down".to_owned()) });
    let server =
        MetricsServer::start_with_status("127.0.0.1:0".parse().unwrap(), Registry::new(), page)
            .unwrap();
    let reply = get(server.addr(), "/status.json");
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
    assert!(body(&reply).contains("lbd is shutting down"), "{reply}");
    // /metrics is unaffected.
    assert!(get(server.addr(), "/metrics").starts_with("HTTP/1.1 200"));
}
