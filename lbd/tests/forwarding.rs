//! lbd on a node whose `net.ipv4.ip_forward` is 0 while NAT services need it (the
//! operator's symptom: servers healthy, no answers through the VIP): it says so in
//! its log (once), its status and its metrics, and all three clear when the sysctl
//! is set. Needs root (prints SKIP otherwise).

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;

const METRICS: &str = "127.0.0.1:9613";
const WARNING: &str = "net.ipv4.ip_forward is 0 on this node";
const CLEARED: &str = "net.ipv4.ip_forward is 1 again";

/// The status entry of `family`.
fn family<'a>(status: &'a Value, family: &str) -> &'a Value {
    status["forwarding"]
        .as_array()
        .and_then(|a| a.iter().find(|f| f["family"] == family))
        .unwrap_or_else(|| panic!("no {family} in forwarding: {}", status["forwarding"]))
}

#[test]
fn forwarding_off_under_nat_services_is_told_and_clears_when_set() {
    if !integration::have_root("forwarding_off_under_nat_services_is_told_and_clears_when_set") {
        return;
    }
    let setup = Setup::two_arm();
    setup.add_vip("lb1", "eth0", VIP);
    setup.add_vip("lb1", "eth1", SNAT_VIP);
    let _srv1 = Responder::start(setup.host("srv1"), "198.18.1.21:80", "srv1");
    let _srv2 = Responder::start(setup.host("srv2"), "198.18.1.22:80", "srv2");
    let lb1 = setup.host("lb1");
    lb1.set_sysctl("net.ipv4.ip_forward", "0").unwrap();
    assert_eq!(lb1.sysctl("net.ipv4.ip_forward").unwrap(), "0");
    setup.write_config("lb1", &[NO_CHECKS]);
    let lbd = setup.start_lbd("lb1");
    let status = setup.wait_applied("lb1");
    let client = setup.host("client");
    let vip = format!("{VIP}:80");

    // The symptom: the rules are there, the servers are up, nothing answers.
    assert_eq!(
        try_fetch(client, &vip),
        None,
        "no answer without forwarding"
    );

    let v4 = family(&status, "ipv4");
    println!("status forwarding: {}", status["forwarding"]);
    assert_eq!(v4["sysctl"], "net.ipv4.ip_forward");
    assert_eq!(v4["enabled"], false);
    assert_eq!(
        v4["needed_by"],
        serde_json::json!(["service web", "nat web-snat"])
    );
    // Nothing IPv6 in the file: IPv6 forwarding is nobody's concern.
    assert_eq!(family(&status, "ipv6")["needed_by"], serde_json::json!([]));

    let metrics = scrape(lb1, METRICS);
    assert_eq!(
        sample(&metrics, r#"lbd_ip_forwarding{family="ipv4"}"#),
        Some(0.0)
    );
    assert_eq!(
        sample(&metrics, r#"lbd_ip_forwarding_needed{family="ipv4"}"#),
        Some(2.0)
    );
    assert_eq!(
        sample(&metrics, r#"lbd_ip_forwarding_needed{family="ipv6"}"#),
        Some(0.0)
    );

    // Read every second, told once: a few ticks later still one warning.
    std::thread::sleep(Duration::from_secs(3));
    let log = lbd.stderr();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains(WARNING)).collect();
    println!("warning: {warnings:?}");
    assert_eq!(warnings.len(), 1, "one warning, not one per tick:\n{log}");
    assert!(warnings[0].contains("WARN"), "{}", warnings[0]);
    assert!(
        warnings[0].contains("sysctl -w net.ipv4.ip_forward=1")
            && warnings[0].contains("service web, nat web-snat"),
        "the warning names the services and the fix: {}",
        warnings[0]
    );

    // The operator sets it: everything clears within a tick or two.
    lb1.exec_ok(&["sysctl", "-w", "net.ipv4.ip_forward=1"])
        .unwrap();
    wait_for("status says ipv4 forwarding is on", PATIENCE, || {
        family(&setup.status("lb1"), "ipv4")["enabled"] == true
    });
    wait_for("lbd_ip_forwarding{family=\"ipv4\"} is 1", PATIENCE, || {
        sample(&scrape(lb1, METRICS), r#"lbd_ip_forwarding{family="ipv4"}"#) == Some(1.0)
    });
    wait_for("lbd logs that forwarding is back", PATIENCE, || {
        lbd.stderr().contains(CLEARED)
    });
    let reply = fetch(client, &vip);
    println!("through the VIP with forwarding on: {reply:?}");
    assert!(reply.0.starts_with("srv"), "{reply:?}");
    assert_eq!(reply.1, SNAT_VIP);
    assert_eq!(lbd.stderr().matches(WARNING).count(), 1);
}
