//! The real lbd balancing through the VIP, in network namespaces (needs root):
//! schedulers, source NAT, health, Maglev stability, SNAT pools and their metrics.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use support::*;

const METRICS: &str = "127.0.0.1:9613";

#[test]
fn two_arm_schedulers_snat_and_health() {
    if !integration::have_root("two_arm_schedulers_snat_and_health") {
        return;
    }
    let setup = Setup::two_arm();
    setup.add_vip("lb1", "eth0", VIP);
    setup.add_vip("lb1", "eth1", SNAT_VIP);
    let _srv1 = Responder::start(setup.host("srv1"), "198.18.1.21:80", "srv1");
    let mut srv2 = Some(Responder::start(
        setup.host("srv2"),
        "198.18.1.22:80",
        "srv2",
    ));
    setup.write_config("lb1", &[]);
    let _lbd = setup.start_lbd("lb1");
    let status = setup.wait_applied("lb1");
    assert_eq!(status["backend"]["name"], "nft");
    let client = setup.host("client");
    let vip = format!("{VIP}:80");

    // rr alternates; servers see the server-side VIP.
    let replies: Vec<(String, String)> = (0..10).map(|_| fetch(client, &vip)).collect();
    println!("rr: {replies:?}");
    for pair in replies.windows(2) {
        assert_ne!(pair[0].0, pair[1].0, "rr alternates: {replies:?}");
    }
    assert!(
        replies.iter().all(|(_, peer)| peer == SNAT_VIP),
        "servers see the SNAT VIP: {replies:?}"
    );
    // ... and have no route back through the balancer: only their own subnet.
    for srv in ["srv1", "srv2"] {
        assert!(
            !has_route(setup.host(srv), "198.18.0.10"),
            "{srv} routes to the client"
        );
    }

    // wrr 3:1 through a reload.
    setup.write_config(
        "lb1",
        &[
            ("scheduler = \"rr\"", "scheduler = \"wrr\""),
            ("weight = 1\n# Health", "weight = 3\n# Health"),
        ],
    );
    let reply = setup.reload("lb1").unwrap();
    println!("reload to wrr 3:1: {reply}");
    assert_eq!(reply["services_changed"], serde_json::json!(["web"]));
    let n = 400;
    let srv1 = (0..n).filter(|_| fetch(client, &vip).0 == "srv1").count();
    let share = srv1 as f64 / n as f64;
    println!("wrr 3:1 over {n} connections: srv1 {srv1} ({share:.3})");
    assert!((share - 0.75).abs() <= 0.075, "srv1 share {share}");

    // sh keeps one client on one server.
    setup.write_config("lb1", &[("scheduler = \"rr\"", "scheduler = \"sh\"")]);
    setup.reload("lb1").unwrap();
    let seen: BTreeSet<String> = (0..20).map(|_| fetch(client, &vip).0).collect();
    println!("sh: one client reached {seen:?}");
    assert_eq!(seen.len(), 1);

    // Back to rr; srv2 stops answering: its check fails, it leaves balancing.
    setup.write_config("lb1", &[]);
    setup.reload("lb1").unwrap();
    srv2.take();
    wait_for("srv2 down in lbd's status", PATIENCE, || {
        let s = setup.status("lb1");
        s["services"][0]["servers"][1]["health"] == "down"
    });
    let status = setup.status("lb1");
    let srv2_status = &status["services"][0]["servers"][1];
    println!("srv2 after it stopped: {srv2_status}");
    assert_eq!(srv2_status["effective_weight"], 0);
    assert_eq!(srv2_status["weight"], 1);
    assert_eq!(srv2_status["last_check"]["ok"], false);
    let after: Vec<String> = (0..10).map(|_| fetch(client, &vip).0).collect();
    assert!(after.iter().all(|s| s == "srv1"), "{after:?}");
    // Counters count from when the slots were (re)made: srv2's exit made new ones.
    let status = setup.status("lb1");
    let srv1_status = &status["services"][0]["servers"][0];
    assert!(
        srv1_status["connections"].as_u64().unwrap() > 0,
        "{srv1_status}"
    );

    let metrics = scrape(setup.host("lb1"), METRICS);
    let labels = r#"{address="198.18.1.22:80",backend="srv2",service="web"}"#;
    assert_eq!(
        sample(&metrics, &format!("lbd_backend_up{labels}")),
        Some(0.0)
    );
    assert_eq!(
        sample(&metrics, &format!("lbd_backend_weight{labels}")),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &metrics,
            r#"lbd_health_transitions_total{backend="srv2",service="web",to="down"}"#
        ),
        Some(1.0)
    );
    let conns = sample(
        &metrics,
        r#"lbd_backend_connections_total{address="198.18.1.21:80",backend="srv1",service="web"}"#,
    )
    .unwrap();
    assert!(conns >= 10.0, "srv1 connections {conns}");
    assert!(metrics.contains("lbd_health_check_duration_seconds_count{check=\"web-http\"}"));
    assert!(metrics
        .contains("lbd_health_check_last_duration_seconds{backend=\"srv1\",service=\"web\"}"));
}

#[test]
fn one_arm_round_robin_and_snat() {
    if !integration::have_root("one_arm_round_robin_and_snat") {
        return;
    }
    let setup = Setup::one_arm();
    setup.add_vip("lb1", "eth0", VIP);
    setup.add_vip("lb1", "eth0", "198.18.0.101");
    let _srv1 = Responder::start(setup.host("srv1"), "198.18.0.21:80", "srv1");
    let _srv2 = Responder::start(setup.host("srv2"), "198.18.0.22:80", "srv2");
    setup.write_config("lb1", ONE_ARM);
    let _lbd = setup.start_lbd("lb1");
    setup.wait_applied("lb1");
    let replies: Vec<(String, String)> = (0..10)
        .map(|_| fetch(setup.host("client"), &format!("{VIP}:80")))
        .collect();
    println!("one-arm rr: {replies:?}");
    for pair in replies.windows(2) {
        assert_ne!(pair[0].0, pair[1].0, "rr alternates: {replies:?}");
    }
    assert!(
        replies.iter().all(|(_, peer)| peer == "198.18.0.101"),
        "servers see the SNAT VIP: {replies:?}"
    );
}

/// Four servers, mh; a reload removes one: the Maglev table in the kernel changes in
/// about a quarter of its slots (the removed server's), not more.
#[test]
fn maglev_removal_moves_about_one_nth() {
    if !integration::have_root("maglev_removal_moves_about_one_nth") {
        return;
    }
    let setup = Setup::two_arm();
    let four = "[[service.server]]\nname = \"srv3\"\naddress = \"198.18.1.23\"\n\n[[service.server]]\nname = \"srv4\"\naddress = \"198.18.1.24\"\n\n# ---------------------------------------------------------------------------\n# Health checks";
    let marker = "# ---------------------------------------------------------------------------\n# Health checks";
    let with4 = [
        NO_CHECKS,
        ("scheduler = \"rr\"", "scheduler = \"mh\""),
        (marker, four),
    ];
    setup.write_config("lb1", &with4);
    let _lbd = setup.start_lbd("lb1");
    setup.wait_applied("lb1");
    let before = dnat_slots(setup.host("lb1"));
    let per_backend = |m: &BTreeMap<(String, u64), String>| {
        let mut c: BTreeMap<String, usize> = BTreeMap::new();
        for b in m.values() {
            *c.entry(b.clone()).or_default() += 1;
        }
        c
    };
    println!("mh table before: {:?}", per_backend(&before));
    let size = before.len();
    assert_eq!(size, 251, "Maglev table size for 4 backends");

    let three = "[[service.server]]\nname = \"srv3\"\naddress = \"198.18.1.23\"\n\n# ---------------------------------------------------------------------------\n# Health checks";
    setup.write_config(
        "lb1",
        &[
            NO_CHECKS,
            ("scheduler = \"rr\"", "scheduler = \"mh\""),
            (marker, three),
        ],
    );
    setup.reload("lb1").unwrap();
    let after = dnat_slots(setup.host("lb1"));
    println!("mh table after removing srv4: {:?}", per_backend(&after));
    assert_eq!(after.len(), size, "same table size");
    assert!(!after.values().any(|b| b == "198.18.1.24"));
    let changed = before
        .iter()
        .filter(|(k, b)| after.get(*k) != Some(*b))
        .count();
    let removed_share = before.values().filter(|b| *b == "198.18.1.24").count();
    println!("{changed} of {size} slots changed; srv4 held {removed_share}");
    // Every slot of srv4 must move; Maglev moves a few others as well.
    assert!(changed >= removed_share);
    assert!(
        changed as f64 <= size as f64 / 4.0 * 1.25,
        "{changed} of {size} slots changed"
    );
}

/// A small SNAT port range: one address lets 4 connections through, two let 8;
/// exhaustion shows in lbd_snat_port_utilization_ratio.
#[test]
fn snat_pool_capacity_and_utilization() {
    if !integration::have_root("snat_pool_capacity_and_utilization") {
        return;
    }
    let setup = Setup::two_arm();
    setup.add_vip("lb1", "eth0", VIP);
    setup.add_vip("lb1", "eth1", SNAT_VIP);
    setup.add_vip("lb1", "eth1", "198.18.1.101");
    // Held, never accepted: the backlog completes the handshakes.
    let _listener = setup
        .host("srv1")
        .tcp_listen("198.18.1.21:80".parse().unwrap())
        .unwrap();
    let one_server = (
        "[[service.server]]\nname = \"srv2\"\naddress = \"198.18.1.22\"\nport = 80\nweight = 1\n",
        "",
    );
    let two_vips = (
        "vips = [\"198.18.1.100/24\"]",
        "vips = [\"198.18.1.100/24\", \"198.18.1.101/24\"]",
    );
    let pool = |p: &str| {
        (
            "snat = { address = \"198.18.1.100\" }".to_owned(),
            format!("snat = {{ pool = [{p}] }}"),
        )
    };
    let single = pool("{ address = \"198.18.1.100\", ports = \"20000-20003\" }");
    setup.write_config(
        "lb1",
        &[NO_CHECKS, one_server, two_vips, (&single.0, &single.1)],
    );
    let _lbd = setup.start_lbd("lb1");
    setup.wait_applied("lb1");
    let client = setup.host("client");
    let hold = |n: usize| -> Vec<std::net::TcpStream> {
        (0..n)
            .filter_map(|_| {
                client
                    .tcp_connect(
                        format!("{VIP}:80").parse().unwrap(),
                        Duration::from_millis(700),
                    )
                    .ok()
            })
            .collect()
    };
    let held_single = hold(10);
    println!("1 address x 4 ports: {} of 10", held_single.len());
    assert_eq!(held_single.len(), 4);
    let metrics = scrape(setup.host("lb1"), METRICS);
    let ratio = sample(
        &metrics,
        r#"lbd_snat_port_utilization_ratio{address="198.18.1.100"}"#,
    );
    let in_use = sample(&metrics, r#"lbd_snat_ports_in_use{address="198.18.1.100"}"#);
    println!("utilization {ratio:?}, in use {in_use:?}");
    assert!(ratio.unwrap() >= 1.0, "{metrics}");
    assert_eq!(in_use, Some(4.0));
    drop(held_single);

    // Fresh ports and a second address: 4 more.
    let double = pool(
        "{ address = \"198.18.1.100\", ports = \"20004-20007\" }, { address = \"198.18.1.101\", ports = \"20004-20007\" }",
    );
    setup.write_config(
        "lb1",
        &[NO_CHECKS, one_server, two_vips, (&double.0, &double.1)],
    );
    setup.reload("lb1").unwrap();
    let held_pool = hold(10);
    println!("2 addresses x 4 ports: {} of 10", held_pool.len());
    assert_eq!(held_pool.len(), 8);
    let metrics = scrape(setup.host("lb1"), METRICS);
    let ratio101 = sample(
        &metrics,
        r#"lbd_snat_port_utilization_ratio{address="198.18.1.101"}"#,
    );
    println!("198.18.1.101 utilization {ratio101:?}");
    assert_eq!(ratio101, Some(1.0));
}
