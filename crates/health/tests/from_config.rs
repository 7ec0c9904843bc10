//! Targets built from cluster.toml.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use health::{targets_from_config, Probe, TargetName};

const EXTRA: &str = r#"
[[service]]
name = "dns"
vip = "198.18.0.100"
port = 53
protocol = "udp"
[[service.server]]
name = "ns1"
address = "198.18.1.31"
port = 53
check = "dns-check"
[[service.server]]
name = "unchecked"
address = "198.18.1.32"
port = 53

[[check]]
name = "dns-check"
type = "udp_dns"
query_name = "example.org"
interval_ms = 500
timeout_ms = 200
rise = 1
fall = 4
jitter_percent = 0
dampening = { max_transitions = 0 }
"#;

#[test]
fn targets_for_checked_servers_of_the_example() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../cluster.toml.example");
    let text = std::fs::read_to_string(&path).unwrap() + EXTRA;
    let cfg = config::parse(&text, "cluster.toml").unwrap();
    let view = cfg.node_view(Some("lb1")).unwrap();
    let source: IpAddr = "198.18.1.11".parse().unwrap();
    let targets = targets_from_config(&view.services, &view.checks, |_, _| Some(source));

    let names: Vec<String> = targets.iter().map(|t| t.name.to_string()).collect();
    assert!(names.contains(&"web/srv1".to_string()), "{names:?}");
    assert!(
        !names.contains(&"dns/unchecked".to_string()),
        "no check, no target"
    );

    let srv1 = targets
        .iter()
        .find(|t| t.name == TargetName::new("web", "srv1"))
        .unwrap();
    assert_eq!(srv1.address, "198.18.1.21:80".parse().unwrap());
    assert_eq!(srv1.source, Some(source));
    let Probe::Http(http) = &srv1.check.probe else {
        panic!("web-http is an http check: {:?}", srv1.check.probe);
    };
    assert_eq!(
        (http.path.as_str(), http.expect_status.as_slice()),
        ("/", &[200][..])
    );
    assert!(!http.verify_cert, "plain HTTP never verifies");
    assert_eq!(srv1.check.interval, Duration::from_millis(1000));
    assert_eq!(srv1.check.timeout, Duration::from_millis(500));
    assert_eq!((srv1.check.rise, srv1.check.fall), (2, 2));
    assert_eq!(srv1.check.jitter_permille, Some(100));
    assert_eq!(
        srv1.check.dampening,
        health::TargetDampening::Limit(health::Dampening {
            max_transitions: 4,
            window: Duration::from_secs(60),
            hold: Duration::from_secs(30),
        })
    );

    let ns1 = targets
        .iter()
        .find(|t| t.name == TargetName::new("dns", "ns1"))
        .unwrap();
    assert_eq!(
        ns1.check.probe,
        Probe::UdpDns {
            query_name: "example.org".into()
        }
    );
    assert_eq!((ns1.check.rise, ns1.check.fall), (1, 4));
    assert_eq!(ns1.check.jitter_permille, Some(0));
    assert_eq!(ns1.check.dampening, health::TargetDampening::Off);
}
