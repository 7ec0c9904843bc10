//! A service quorum lost on lb1 (its checks blocked at the servers, lb2's pass)
//! lowers lb1's VRRP priority through vrrpd's `track.set`: lb2 takes the VIPs;
//! when the quorum returns lb1 preempts back. Both nodes check all along: the
//! BACKUP's lbd shows health too (needs root, vrrpd built next to lbd).

mod health_support;
mod support;

use std::time::Instant;

use serde_json::Value;

use health_support::*;
use support::*;

const QUORUM: &[(&str, &str)] = &[
    ("\ninterval_ms = 1000\n", "\ninterval_ms = 200\n"),
    ("\ntimeout_ms = 500\n", "\ntimeout_ms = 100\n"),
    ("# quorum = 1\n", "quorum = 1\n"),
];

/// Drops lbd's checks from lb1 (198.18.1.11) at the server, or lets them through.
fn block_lb1_checks(setup: &Setup, server: &str, block: bool) {
    let h = setup.host(server);
    if block {
        h.exec_ok(&["nft", "add", "table", "ip", "hcblock"])
            .unwrap();
        h.exec_ok(&[
            "nft",
            "add",
            "chain",
            "ip",
            "hcblock",
            "input",
            "{ type filter hook input priority 0; }",
        ])
        .unwrap();
        h.exec_ok(&[
            "nft",
            "add",
            "rule",
            "ip",
            "hcblock",
            "input",
            "ip",
            "saddr",
            "198.18.1.11",
            "tcp",
            "dport",
            "80",
            "drop",
        ])
        .unwrap();
    } else {
        h.exec_ok(&["nft", "delete", "table", "ip", "hcblock"])
            .unwrap();
    }
}

fn has_vip(setup: &Setup, node: &str) -> bool {
    setup
        .host(node)
        .addresses("eth0")
        .unwrap()
        .iter()
        .any(|p| p.addr.to_string() == VIP)
}

#[test]
fn lost_quorum_moves_the_vips_to_the_peer_and_back() {
    if !integration::have_root("lost_quorum_moves_the_vips_to_the_peer_and_back") {
        return;
    }
    let setup = Setup::two_arm();
    let _srv1 = TestServer::start(setup.host("srv1"), "198.18.1.21:80", "srv1");
    let _srv2 = TestServer::start(setup.host("srv2"), "198.18.1.22:80", "srv2");
    for node in ["lb1", "lb2"] {
        setup.write_config(node, QUORUM);
    }
    let _lbd1 = setup.start_lbd("lb1");
    let _lbd2 = setup.start_lbd("lb2");
    setup.wait_applied("lb1");
    setup.wait_applied("lb2");
    let _vrrpd1 = setup.start_vrrpd("lb1");
    let _vrrpd2 = setup.start_vrrpd("lb2");
    let priority = |node: &str| -> Option<u64> {
        request(&setup.vrrpd_socket(node), "status", Value::Null)
            .ok()
            .and_then(|s| s["instances"][0]["priority"].as_u64())
    };
    wait_for("lb1 MASTER, lb2 BACKUP", PATIENCE, || {
        setup.role("lb1").as_deref() == Some("MASTER")
            && setup.role("lb2").as_deref() == Some("BACKUP")
    });
    assert!(has_vip(&setup, "lb1"));

    // The backup checks as well: its status has fresh results while BACKUP.
    wait_for("lb2's lbd reports passing checks", PATIENCE, || {
        let s = setup.status("lb2");
        ["srv1", "srv2"].iter().all(|n| {
            let b = server(&s, "web", n);
            b["checks"].as_u64().unwrap_or(0) >= 3 && b["last_check"]["ok"] == true
        })
    });
    assert_eq!(setup.role("lb2").as_deref(), Some("BACKUP"));
    let s = setup.status("lb2");
    println!("lb2 (BACKUP) sees srv1: {}", server(&s, "web", "srv1"));
    assert_eq!(s["services"][0]["quorum"]["met"], true);

    let blocked = Instant::now();
    block_lb1_checks(&setup, "srv1", true);
    block_lb1_checks(&setup, "srv2", true);
    wait_for(
        "lb1's quorum lost and its priority lowered",
        PATIENCE,
        || {
            setup.status("lb1")["services"][0]["quorum"]["met"] == false
                && priority("lb1") == Some(90)
        },
    );
    let lowered = blocked.elapsed();
    wait_for("the VIPs on lb2", PATIENCE, || {
        has_vip(&setup, "lb2") && !has_vip(&setup, "lb1")
    });
    let moved = blocked.elapsed();
    println!(
        "checks blocked: lb1 priority 150 -> 90 after {:.0} ms, VIPs on lb2 after {:.0} ms",
        lowered.as_secs_f64() * 1e3,
        moved.as_secs_f64() * 1e3
    );
    wait_for("lb2 MASTER, lb1 BACKUP", PATIENCE, || {
        setup.role("lb2").as_deref() == Some("MASTER")
            && setup.role("lb1").as_deref() == Some("BACKUP")
    });
    let s1 = setup.status("lb1");
    println!("lb1 (BACKUP) sees srv1: {}", server(&s1, "web", "srv1"));
    assert_eq!(server(&s1, "web", "srv1")["health"], "down");
    assert_eq!(
        server(&s1, "web", "srv1")["last_check"]["reason"],
        "timeout"
    );
    assert_eq!(
        s1["priority_tracks"]["vrrpd"]["accepted"][0]["weight_delta"],
        -60
    );
    let v1 = request(&setup.vrrpd_socket("lb1"), "status", Value::Null).unwrap();
    println!("lb1 vrrpd tracking: {}", v1["groups"][0]["tracking"]);
    assert_eq!(v1["groups"][0]["tracking"]["delta"], -60);
    let m = scrape(setup.host("lb1"), "127.0.0.1:9613");
    assert_eq!(
        sample(&m, r#"lbd_service_quorum_met{service="web"}"#),
        Some(0.0)
    );
    assert_eq!(
        sample(&m, r#"lbd_priority_track_delta{group="edge"}"#),
        Some(-60.0)
    );
    // lb2's servers are all up: it serves through the VIP.
    let (_, peer) = fetch(setup.host("client"), &format!("{VIP}:80"));
    assert_eq!(peer, SNAT_VIP);

    let unblocked = Instant::now();
    block_lb1_checks(&setup, "srv1", false);
    block_lb1_checks(&setup, "srv2", false);
    wait_for("lb1 MASTER again", PATIENCE, || {
        setup.role("lb1").as_deref() == Some("MASTER") && has_vip(&setup, "lb1")
    });
    println!(
        "checks unblocked: lb1 MASTER again after {:.0} ms",
        unblocked.elapsed().as_secs_f64() * 1e3
    );
    assert_eq!(priority("lb1"), Some(150));
    wait_for("lb2 BACKUP without the VIP", PATIENCE, || {
        setup.role("lb2").as_deref() == Some("BACKUP") && !has_vip(&setup, "lb2")
    });
    let m = scrape(setup.host("lb1"), "127.0.0.1:9613");
    assert_eq!(
        sample(&m, r#"lbd_priority_track_delta{group="edge"}"#),
        Some(0.0)
    );
}
