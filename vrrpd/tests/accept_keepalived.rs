//! Acceptance: vrrpd (lb1) and keepalived 2.2.7 (lb2) as the two members of
//! one cluster, VRRPv2 and VRRPv3, in both roles: the higher priority wins,
//! failover works both ways, neither side counts errors for the other's
//! packets. Needs root and /usr/sbin/keepalived (prints SKIP otherwise).

mod support;

use std::time::Duration;

use integration::Process;
use support::keepalived::{self, Params};
use support::*;

/// Longer than the longest Master_Down_Interval here (3.61 s).
const HOLD: Duration = Duration::from_secs(6);

fn ready(test: &str) -> bool {
    if !integration::have_root(test) {
        return false;
    }
    if !std::path::Path::new(keepalived::KEEPALIVED).exists() {
        if std::env::var(integration::REQUIRE_ROOT_ENV).is_ok_and(|v| v == "1") {
            panic!("{test}: needs {}", keepalived::KEEPALIVED);
        }
        println!("SKIP (needs keepalived): {test}");
        return false;
    }
    true
}

/// The cluster with vrrpd's side edited to `params` and lb1's priority.
fn cluster(params: Params, lb1_priority: u8) -> Cluster {
    let edits = params.vrrpd_edits();
    let mut pairs: Vec<(&str, &str)> = edits.iter().map(|(f, t)| (*f, t.as_str())).collect();
    let prio = format!("priority = {{ edge = {lb1_priority} }}");
    pairs.push(("priority = { edge = 150 }", &prio));
    Cluster::up(&pairs)
}

fn start_keepalived(c: &Cluster, params: Params, priority: u8) -> Process {
    keepalived::start(
        c.host("lb2"),
        c.dir.path(),
        &params.keepalived_conf("lb2", priority),
    )
}

/// Asserts keepalived logged no packet-check failure.
fn assert_keepalived_clean(ka: &Process) {
    let log = keepalived::log(ka);
    let errors = keepalived::error_lines(&log);
    assert!(errors.is_empty(), "keepalived complained: {errors:#?}");
}

/// Cables of `node` in or out, both links.
fn cables(c: &Cluster, node: &str, connected: bool) {
    c.lab.set_cable(node, "eth0", connected).unwrap();
    c.lab.set_cable(node, "eth1", connected).unwrap();
}

/// Adverts of both instances reached vrrpd and were accepted.
fn assert_heard_both(metrics: &str) {
    for name in ["public", "server"] {
        let got = sample(
            metrics,
            "vrrp_adverts_received_total",
            &[("vrrp_instance", name)],
        )
        .unwrap_or(0.0);
        assert!(got > 0.0, "vrrpd heard no advert for {name}:\n{metrics}");
    }
}

/// vrrpd 150 against keepalived 100: vrrpd MASTER; vrrpd dies, keepalived
/// takes both VIPs; vrrpd returns and preempts.
fn vrrpd_master(params: Params) {
    let c = cluster(params, 150);
    let mut lb1 = c.start("lb1");
    wait_for("lb1 holds both VIPs", PATIENCE, || has_both(c.host("lb1")));
    let ka = start_keepalived(&c, params, 100);
    wait_for("keepalived BACKUP on both instances", PATIENCE, || {
        let log = keepalived::log(&ka);
        keepalived::entered(&log, "public", "BACKUP") >= 1
            && keepalived::entered(&log, "server", "BACKUP") >= 1
    });
    holds_for("lb1 keeps both VIPs, lb2 holds none", HOLD, || {
        has_both(c.host("lb1")) && has_neither(c.host("lb2"))
    });
    let log = keepalived::log(&ka);
    assert_eq!(keepalived::entered(&log, "public", "MASTER"), 0, "{log}");
    assert_eq!(group_state(&c.status("lb1")), "MASTER");
    assert_no_receive_errors(&scrape(c.host("lb1")));

    // vrrpd dies with its cables.
    lb1.signal(libc::SIGKILL).unwrap();
    assert!(lb1.wait_timeout(Duration::from_secs(5)).unwrap().is_some());
    cables(&c, "lb1", false);
    wait_for("keepalived holds both VIPs", PATIENCE, || {
        has_both(c.host("lb2"))
    });
    let log = keepalived::log(&ka);
    assert!(keepalived::entered(&log, "public", "MASTER") >= 1, "{log}");
    assert!(keepalived::entered(&log, "server", "MASTER") >= 1, "{log}");

    // vrrpd returns: cleans its leftovers, hears keepalived, preempts.
    cables(&c, "lb1", true);
    let _lb1 = c.start("lb1");
    wait_for("vrrpd preempts back", PATIENCE, || {
        has_both(c.host("lb1")) && has_neither(c.host("lb2"))
    });
    wait_for("keepalived back in BACKUP", PATIENCE, || {
        let log = keepalived::log(&ka);
        keepalived::entered(&log, "public", "BACKUP") >= 2
            && keepalived::entered(&log, "server", "BACKUP") >= 2
    });
    let metrics = scrape(c.host("lb1"));
    assert_heard_both(&metrics);
    assert_no_receive_errors(&metrics);
    assert_keepalived_clean(&ka);
}

/// keepalived 150 against vrrpd 100: keepalived MASTER; it dies, vrrpd takes
/// both VIPs; it returns and preempts.
fn keepalived_master(params: Params) {
    let c = cluster(params, 100);
    let ka = start_keepalived(&c, params, 150);
    wait_for("keepalived holds both VIPs", PATIENCE, || {
        has_both(c.host("lb2"))
    });
    let _lb1 = c.start("lb1");
    wait_for("vrrpd BACKUP", PATIENCE, || c.state_of("lb1") == "BACKUP");
    holds_for("lb2 keeps both VIPs, lb1 holds none", HOLD, || {
        has_both(c.host("lb2")) && has_neither(c.host("lb1"))
    });
    let s1 = c.status("lb1");
    assert_eq!(group_state(&s1), "BACKUP", "{s1:#}");
    for i in s1["instances"].as_array().unwrap() {
        assert_eq!(i["state"], "BACKUP", "{i:#}");
        let peer = if i["name"] == "public" {
            "198.18.0.12"
        } else {
            "198.18.1.12"
        };
        assert_eq!(i["master_address"], peer, "{i:#}");
    }
    let metrics = scrape(c.host("lb1"));
    assert_heard_both(&metrics);
    assert_no_receive_errors(&metrics);

    // keepalived dies with its cables.
    ka.signal(libc::SIGKILL).unwrap();
    let mut ka = ka;
    assert!(ka.wait_timeout(Duration::from_secs(5)).unwrap().is_some());
    let dead_log = keepalived::log(&ka);
    cables(&c, "lb2", false);
    wait_for("vrrpd holds both VIPs", PATIENCE, || {
        has_both(c.host("lb1"))
    });
    assert_eq!(group_state(&c.status("lb1")), "MASTER");

    // keepalived returns and preempts.
    cables(&c, "lb2", true);
    let ka2 = start_keepalived(&c, params, 150);
    wait_for("keepalived preempts back", PATIENCE, || {
        has_both(c.host("lb2")) && has_neither(c.host("lb1"))
    });
    wait_for("vrrpd back in BACKUP", PATIENCE, || {
        c.state_of("lb1") == "BACKUP"
    });
    let log2 = keepalived::log(&ka2);
    assert!(
        keepalived::entered(&log2, "public", "MASTER") >= 1,
        "{log2}"
    );
    let metrics = scrape(c.host("lb1"));
    assert_no_receive_errors(&metrics);
    let errors = keepalived::error_lines(&format!("{dead_log}{log2}"));
    assert!(errors.is_empty(), "keepalived complained: {errors:#?}");
}

#[test]
fn v3_vrrpd_master_keepalived_backup_and_failover_both_ways() {
    if !ready("v3_vrrpd_master_keepalived_backup_and_failover_both_ways") {
        return;
    }
    vrrpd_master(Params {
        version: 3,
        interval_ms: 1000,
    });
}

#[test]
fn v3_keepalived_master_vrrpd_backup_and_failover_both_ways() {
    if !ready("v3_keepalived_master_vrrpd_backup_and_failover_both_ways") {
        return;
    }
    keepalived_master(Params {
        version: 3,
        interval_ms: 1000,
    });
}

#[test]
fn v2_vrrpd_master_keepalived_backup_and_failover_both_ways() {
    if !ready("v2_vrrpd_master_keepalived_backup_and_failover_both_ways") {
        return;
    }
    vrrpd_master(Params {
        version: 2,
        interval_ms: 1000,
    });
}

#[test]
fn v2_keepalived_master_vrrpd_backup_and_failover_both_ways() {
    if !ready("v2_keepalived_master_vrrpd_backup_and_failover_both_ways") {
        return;
    }
    keepalived_master(Params {
        version: 2,
        interval_ms: 1000,
    });
}
