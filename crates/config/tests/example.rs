//! The shipped cluster.toml.example validates and yields the documented node views.

use std::net::IpAddr;
use std::path::PathBuf;

fn example_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../cluster.toml.example")
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn example_loads() {
    let cfg = match config::load(&example_path()) {
        Ok(c) => c,
        Err(e) => panic!("example refused:\n{e}"),
    };
    assert_eq!(cfg.node_names(), vec!["lb1", "lb2"]);
    assert_eq!(cfg.cluster.name, "edge");
    let public = cfg.instance("public").unwrap();
    assert_eq!(public.vrid, 51);
    assert_eq!(public.version, vrrp::packet::Version::V3);
    assert_eq!(public.advert_interval_ms, 1000);
    assert_eq!(public.vips[0].address.to_string(), "198.18.0.100/24");
    assert_eq!(public.checksum, vrrp::checksum::ChecksumForm::PseudoHeader);
    let server = cfg.instance("server").unwrap();
    assert_eq!(server.vrid, 52);
    assert_eq!(server.vips[0].address.to_string(), "198.18.1.100/24");
    let web = &cfg.services[0];
    assert_eq!(web.vip, ip("198.18.0.100"));
    assert_eq!(web.ports, config::PortRange::single(80));
    assert_eq!(web.scheduler, config::Scheduler::Rr);
    assert_eq!(web.mode, config::Forwarding::Nat);
    let addrs: Vec<(IpAddr, Option<u16>, u32)> = web
        .servers
        .iter()
        .map(|s| (s.address, s.port, s.weight))
        .collect();
    assert_eq!(
        addrs,
        vec![
            (ip("198.18.1.21"), Some(80), 1),
            (ip("198.18.1.22"), Some(80), 1)
        ]
    );
    let check = cfg.check("web-http").unwrap();
    assert_eq!(
        (check.interval_ms, check.timeout_ms, check.rise, check.fall),
        (1000, 500, 2, 2)
    );
    match &check.kind {
        config::CheckKind::Http(h) => {
            assert_eq!(h.path, "/");
            assert_eq!(h.expect_status, vec![200]);
        }
        other => panic!("unexpected check kind {other:?}"),
    }
    let nat = &cfg.nat[0];
    assert_eq!(nat.snat, config::SnatTarget::Address(ip("198.18.1.100")));
    assert_eq!(nat.destination_ports, Some(config::PortRange::single(80)));
    assert_eq!(cfg.dataplane.backend, config::BackendChoice::Auto);
    assert_eq!(cfg.metrics.vrrpd_listen.to_string(), "127.0.0.1:9612");
    assert_eq!(
        cfg.control.lbd_socket,
        PathBuf::from("/run/lbsuite/lbd.sock")
    );
}

#[test]
fn example_view_lb1() {
    let cfg = config::load(&example_path()).unwrap();
    let v = cfg.node_view(Some("lb1")).unwrap();
    assert_eq!(v.name, "lb1");
    assert_eq!(v.peer.name, "lb2");
    let g = v.group("edge").unwrap();
    assert_eq!((g.priority, g.peer_priority), (150, 100));
    let names: Vec<&str> = g.instances.iter().map(|i| i.config.name.as_str()).collect();
    assert_eq!(names, vec!["public", "server"]);
    let public = v.instance("public").unwrap();
    assert_eq!(public.priority, 150);
    assert_eq!(public.source_address, Some(ip("198.18.0.11")));
    assert_eq!(public.peer_addresses[0].address, ip("198.18.0.12"));
    assert!(
        public.unicast_peers.is_empty(),
        "multicast instance has no unicast peers"
    );
    let server = v.instance("server").unwrap();
    assert_eq!(server.source_address, Some(ip("198.18.1.11")));
    assert_eq!(v.sync.local_address, Some(ip("198.18.1.11")));
    assert_eq!(v.sync.peer_address, Some(ip("198.18.1.12")));
    assert_eq!(v.services.len(), 1);
    assert_eq!(v.nat.len(), 1);
    assert!(v.check("web-http").is_some());
    assert!(
        v.summary().contains("edge priority 150 [public, server]"),
        "{}",
        v.summary()
    );
}

#[test]
fn example_view_lb2() {
    let cfg = config::load(&example_path()).unwrap();
    let v = cfg.node_view(Some("lb2")).unwrap();
    assert_eq!(v.name, "lb2");
    assert_eq!(v.peer.name, "lb1");
    let g = v.group("edge").unwrap();
    assert_eq!((g.priority, g.peer_priority), (100, 150));
    let public = v.instance("public").unwrap();
    assert_eq!(public.source_address, Some(ip("198.18.0.12")));
    assert_eq!(
        v.instance("server").unwrap().source_address,
        Some(ip("198.18.1.12"))
    );
    assert_eq!(v.sync.local_address, Some(ip("198.18.1.12")));
    assert_eq!(v.sync.peer_address, Some(ip("198.18.1.11")));
}

#[test]
fn example_views_select_by_hostname() {
    let cfg = config::load(&example_path()).unwrap();
    assert_eq!(cfg.node_view_for_hostname("lb2").unwrap().name, "lb2");
    assert_eq!(
        cfg.node_view_for_hostname("lb1.example.net").unwrap().name,
        "lb1"
    );
    let err = cfg.node_view_for_hostname("web7").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("`web7` matches no [[node]]"), "{text}");
    assert!(
        text.contains("lb1 (hostname lb1), lb2 (hostname lb2)"),
        "{text}"
    );
    let err = cfg.node_view(Some("lb3")).unwrap_err().to_string();
    assert!(
        err.contains("no node is named `lb3`") && err.contains("lb1, lb2"),
        "{err}"
    );
}

#[test]
fn unreadable_file_names_the_path() {
    let err = config::load(std::path::Path::new("/nonexistent/cluster.toml")).unwrap_err();
    assert!(err.is_io());
    let text = err.to_string();
    assert!(
        text.starts_with("/nonexistent/cluster.toml: cannot read"),
        "{text}"
    );
}

#[test]
fn config_serializes_for_status() {
    let cfg = config::load(&example_path()).unwrap();
    let json = serde_json::to_value(&cfg).unwrap();
    assert_eq!(json["instance"][0]["vips"][0]["address"], "198.18.0.100/24");
    // The protocol core's enums, in the file's own words.
    assert_eq!(json["instance"][0]["version"], 3);
    assert_eq!(json["instance"][0]["checksum"], "pseudo-header");
    assert_eq!(json["service"][0]["ports"], "80");
    assert_eq!(json["check"][0]["type"], "http");
    assert_eq!(json["nat"][0]["snat"]["address"], "198.18.1.100");
    let back: config::ClusterConfig = serde_json::from_value(json).unwrap();
    let mut expect = cfg.clone();
    expect.source_file = String::new();
    // The fingerprint and warnings come from reading the file, not from its schema.
    expect.fingerprint = String::new();
    expect.warnings = Vec::new();
    assert_eq!(back, expect);
}

#[test]
fn full_file_resolves_peers_defaults_and_kinds() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/valid/v2_unicast_ipv6.toml");
    let cfg = config::load(&path).unwrap();
    let lb1 = cfg.node_view(Some("lb1.example.net")).unwrap();
    assert_eq!(lb1.name, "lb1");
    // Explicit peers win; otherwise the peer node's addresses of the instance's family.
    assert_eq!(
        lb1.instance("server").unwrap().unicast_peers,
        vec![ip("198.18.1.12")]
    );
    assert_eq!(
        lb1.instance("public6").unwrap().unicast_peers,
        vec![ip("2001:db8:0:a::12")]
    );
    assert_eq!(lb1.instance("public6").unwrap().source_address, None);
    let lb2 = cfg.node_view(Some("lb2")).unwrap();
    assert_eq!(
        lb2.instance("server").unwrap().unicast_peers,
        vec![ip("198.18.1.11")]
    );
    assert_eq!(lb2.group("legacy").unwrap().priority, 110);
    assert_eq!(lb2.sync.peer_address, Some(ip("198.18.1.11")));
    let old = cfg.instance("old").unwrap();
    assert_eq!(old.version, vrrp::packet::Version::V2);
    assert_eq!(old.vips[0].address.to_string(), "198.18.0.110/32");
    assert_eq!(old.auth_pass.as_deref(), Some("secret12"));
    assert!(!old.preempt && old.accept_mode);
    let public = cfg.instance("public").unwrap();
    assert_eq!(public.checksum, vrrp::checksum::ChecksumForm::MessageOnly);
    let json = serde_json::to_value([old, public]).unwrap();
    assert_eq!(
        (&json[0]["version"], &json[1]["checksum"]),
        (&2.into(), &"rfc9568".into())
    );
    assert_eq!(public.track_interfaces[1].weight, 0);
    assert_eq!(public.garp.count, 3);
    let web = &cfg.services[0];
    assert_eq!(web.scheduler, config::Scheduler::Mh);
    assert_eq!(
        web.servers[0].port,
        Some(80),
        "server port defaults to the service port"
    );
    assert_eq!(web.sorry_server.unwrap().port, Some(80));
    assert_eq!(web.persistence.unwrap().prefix_len, 24);
    let range = &cfg.services[2];
    assert_eq!(range.ports.len(), 11);
    assert_eq!(
        range.servers[0].port, None,
        "a port-range service keeps the destination port"
    );
    assert_eq!(cfg.check("dns").unwrap().rise, 2);
    assert_eq!(
        cfg.check("half-open").unwrap().kind,
        config::CheckKind::TcpSyn
    );
    assert_eq!(cfg.check("dns").unwrap().fall, 3);
    match &cfg.check("https").unwrap().kind {
        config::CheckKind::Https(h) => assert!(!h.verify_cert && h.path == "/"),
        other => panic!("{other:?}"),
    }
    match &cfg.nat[0].snat {
        config::SnatTarget::Pool(p) => {
            assert_eq!(p[0].ports.unwrap().to_string(), "20000-29999");
            assert_eq!(p[1].ports, None);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(cfg.control.group.as_deref(), Some("lbsuite"));
    assert!(!cfg.metrics.enabled);
    assert_eq!(cfg.dataplane.backend, config::BackendChoice::Nft);
}

#[test]
fn example_health_settings_and_defaults() {
    let cfg = config::load(&example_path()).unwrap();
    let web = &cfg.services[0];
    assert!(web.inhibit_on_failure);
    assert!(!web.counters, "packet and byte counters are off by default");
    assert_eq!(web.quorum, None);
    assert_eq!(
        web.quorum_priority_delta,
        config::DEFAULT_QUORUM_PRIORITY_DELTA
    );
    let check = cfg.check("web-http").unwrap();
    assert_eq!(check.jitter_percent, 10);
    assert_eq!(check.dampening, Some(config::FlapDampening::default()));

    let text = std::fs::read_to_string(example_path()).unwrap();
    let edited = text
        .replacen(
            "inhibit_on_failure = true",
            "inhibit_on_failure = false\nquorum = 2\nquorum_priority_delta = -100\ncounters = true",
            1,
        )
        .replacen(
            "dampening = { max_transitions = 4, window_ms = 60000, hold_ms = 30000 }",
            "dampening = { max_transitions = 0 }\njitter_percent = 0",
            1,
        )
        .replacen("jitter_percent = 10\n", "", 1);
    let cfg = config::parse(&edited, "edited.toml").unwrap();
    let web = &cfg.services[0];
    assert!(!web.inhibit_on_failure);
    assert!(web.counters);
    let wrong = text.replacen("inhibit_on_failure = true", "counters = \"yes\"", 1);
    let err = config::parse(&wrong, "wrong.toml").unwrap_err().to_string();
    assert!(err.contains("counters"), "{err}");
    assert_eq!(web.quorum, Some(2));
    assert_eq!(web.quorum_priority_delta, -100);
    let check = cfg.check("web-http").unwrap();
    assert_eq!((check.jitter_percent, check.dampening), (0, None));
}
