//! The endpoint serves the registry's metrics and nothing else.

use std::io::{Read, Write};
use std::net::TcpStream;

use metrics::prometheus::{IntCounterVec, Opts, Registry};
use metrics::MetricsServer;

fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    reply
}

#[test]
fn serves_registered_metrics_in_text_format() {
    let registry = Registry::new();
    let adverts = IntCounterVec::new(
        Opts::new("vrrp_adverts_sent_total", "Adverts sent"),
        &["instance"],
    )
    .unwrap();
    registry.register(Box::new(adverts.clone())).unwrap();
    adverts.with_label_values(&["public"]).inc_by(7);

    let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), registry).unwrap();
    assert!(server.addr().ip().is_loopback());
    assert_ne!(server.addr().port(), 0);
    let reply = get(server.addr(), "/metrics");
    assert!(
        reply.starts_with("HTTP/1.0 200") || reply.starts_with("HTTP/1.1 200"),
        "{reply}"
    );
    assert!(reply.contains("text/plain; version=0.0.4"), "{reply}");
    assert!(
        reply.contains("vrrp_adverts_sent_total{instance=\"public\"} 7"),
        "{reply}"
    );

    adverts.with_label_values(&["public"]).inc();
    assert!(get(server.addr(), "/metrics").contains("{instance=\"public\"} 8"));
}

#[test]
fn other_paths_get_404_and_bad_address_is_an_error() {
    let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), Registry::new()).unwrap();
    let reply = get(server.addr(), "/debug");
    assert!(reply.contains(" 404 "), "{reply}");
    let taken = server.addr();
    let err = MetricsServer::start(taken, Registry::new()).unwrap_err();
    assert!(err.to_string().contains(&taken.to_string()), "{err}");
}
