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

#[test]
fn root_points_to_metrics_and_only_get_is_served() {
    let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), Registry::new()).unwrap();
    let root = get(server.addr(), "/");
    assert!(root.contains(" 200 "), "{root}");
    assert!(root.ends_with("see /metrics\n"), "{root}");
    let with_query = get(server.addr(), "/metrics?name[]=up");
    assert!(with_query.contains(" 200 "), "{with_query}");

    let mut stream = TcpStream::connect(server.addr()).unwrap();
    write!(
        stream,
        "POST /metrics HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    // Read-only: the path exists, the method does not.
    assert!(reply.starts_with("HTTP/1.1 405"), "{reply}");
    assert!(reply.to_ascii_lowercase().contains("allow: get"), "{reply}");
    // Without a status page, /status is just another unknown path.
    assert!(get(server.addr(), "/status").contains(" 404 "));
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let registry = Registry::new();
    let counter = IntCounterVec::new(Opts::new("lb_test_total", "A test counter"), &["k"]).unwrap();
    registry.register(Box::new(counter.clone())).unwrap();
    counter.with_label_values(&["v"]).inc();
    let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), registry).unwrap();

    let stream = TcpStream::connect(server.addr()).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    for expected in ["lb_test_total{k=\"v\"} 1", "lb_test_total{k=\"v\"} 2"] {
        write!(writer, "GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
        let (head, body) = read_response(&mut reader);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
        assert!(body.contains(expected), "{body}");
        counter.with_label_values(&["v"]).inc();
    }
}

/// One response with a Content-Length body: (head, body).
fn read_response(reader: &mut impl std::io::BufRead) -> (String, String) {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        head.push_str(&line);
    }
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap();
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    (head, String::from_utf8(body).unwrap())
}

/// A collector as slow as lbd's on a huge conntrack table.
struct SlowCollector {
    gauge: metrics::prometheus::IntGauge,
    delay: std::time::Duration,
}

impl metrics::prometheus::core::Collector for SlowCollector {
    fn desc(&self) -> Vec<&metrics::prometheus::core::Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<metrics::prometheus::proto::MetricFamily> {
        std::thread::sleep(self.delay);
        self.gauge.collect()
    }
}

#[test]
fn a_render_slower_than_the_idle_timeout_is_still_answered() {
    let registry = Registry::new();
    let gauge = metrics::prometheus::IntGauge::new("lb_slow", "Slow to collect").unwrap();
    gauge.set(5);
    let idle = std::time::Duration::from_millis(500);
    registry
        .register(Box::new(SlowCollector {
            gauge,
            delay: idle * 3,
        }))
        .unwrap();
    let limits = metrics::Limits {
        idle_timeout: idle,
        ..metrics::Limits::default()
    };
    let server =
        MetricsServer::start_with("127.0.0.1:0".parse().unwrap(), registry, limits).unwrap();
    let reply = get(server.addr(), "/metrics");
    assert!(reply.contains("lb_slow 5"), "{reply}");
}
