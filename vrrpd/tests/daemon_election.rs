//! Two real vrrpd nodes on the two-arm lab: the election, status and metrics.
//! Needs root (prints SKIP otherwise).

mod support;

use std::time::Duration;

use support::*;

#[test]
fn higher_priority_node_becomes_master_of_both_vips() {
    if !integration::have_root("higher_priority_node_becomes_master_of_both_vips") {
        return;
    }
    let c = Cluster::up(&[]);
    let _lb1 = c.start("lb1");
    let _lb2 = c.start("lb2");
    let took = wait_for("lb1 holds both VIPs", PATIENCE, || has_both(c.host("lb1")));
    println!("lb1 MASTER with both VIPs {took:?} after start");
    // lb2 stays BACKUP: it never takes a VIP while lb1 advertises.
    holds_for("lb2 holds neither VIP", Duration::from_secs(3), || {
        has_neither(c.host("lb2"))
    });
    assert!(has_both(c.host("lb1")));

    let s1 = c.status("lb1");
    assert_eq!(group_state(&s1), "MASTER", "{s1:#}");
    for i in s1["instances"].as_array().unwrap() {
        assert_eq!(i["state"], "MASTER", "{i:#}");
        assert_eq!(i["priority"], 150);
    }
    let s2 = c.status("lb2");
    assert_eq!(group_state(&s2), "BACKUP", "{s2:#}");
    let public = s2["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "public")
        .unwrap();
    assert_eq!(public["state"], "BACKUP");
    assert_eq!(public["master_address"], "198.18.0.11");
    assert_eq!(public["priority"], 100);
}

#[test]
fn metrics_show_the_master_and_its_adverts() {
    if !integration::have_root("metrics_show_the_master_and_its_adverts") {
        return;
    }
    let c = Cluster::up(&[]);
    let _lb1 = c.start("lb1");
    let _lb2 = c.start("lb2");
    wait_for("lb1 holds both VIPs", PATIENCE, || has_both(c.host("lb1")));
    let public = [
        ("vrrp_instance", "public"),
        ("group", "edge"),
        ("interface", "eth0"),
        ("vrid", "51"),
    ];
    let with_state = |state| {
        let mut l = public.to_vec();
        l.push(("state", state));
        l
    };
    let mut text = String::new();
    wait_for("lb1 has sent adverts", PATIENCE, || {
        text = scrape(c.host("lb1"));
        sample(&text, "vrrp_adverts_sent_total", &public).unwrap_or(0.0) > 0.0
    });
    assert_eq!(
        sample(&text, "vrrp_instance_state", &with_state("master")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "vrrp_instance_state", &with_state("backup")),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "vrrp_instance_priority", &public),
        Some(150.0)
    );
    assert_eq!(
        sample(
            &text,
            "vrrp_decode_errors_total",
            &[("interface", "eth0"), ("kind", "bad_checksum")]
        ),
        Some(0.0)
    );
    assert!(
        sample(
            &text,
            "vrrp_transitions_total",
            &[
                ("vrrp_instance", "server"),
                ("from", "backup"),
                ("to", "master")
            ]
        ) == Some(1.0),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "vrrp_takeover_phase_seconds_count",
            &[("group", "edge"), ("phase", "vips_added")]
        ) >= Some(1.0)
    );
    // lb1 has no lbd: the prepare was a miss, counted.
    assert_eq!(
        sample(
            &text,
            "vrrp_prepare_misses_total",
            &[("group", "edge"), ("reason", "absent")]
        ),
        Some(1.0),
        "{text}"
    );

    let text2 = scrape(c.host("lb2"));
    assert_eq!(
        sample(&text2, "vrrp_instance_state", &with_state("backup")),
        Some(1.0),
        "{text2}"
    );
    assert!(
        sample(&text2, "vrrp_adverts_received_total", &public).unwrap_or(0.0) > 0.0,
        "{text2}"
    );
}
