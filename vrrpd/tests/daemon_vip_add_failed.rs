//! A takeover whose VIPs cannot be added (issue 14): the node must not stay MASTER
//! without them. Needs root (prints SKIP otherwise).

mod support;

use std::time::Duration;

use support::*;

/// The IPv6 VIP of the third member, `public6`.
const VIP6: &str = "2001:db8:0:a::100";

/// The example with the IPv6 instance `public6` as the group's last member: its VIP
/// add is the one that fails when IPv6 is disabled on eth0 (the kernel refuses it).
fn with_ipv6(text: &mut String) {
    with_public6(text, 61, &[&format!("{VIP6}/64")]);
}

fn ipv6_on_eth0(c: &Cluster, node: &str, on: bool) {
    let value = if on { "0" } else { "1" };
    c.host(node)
        .exec_ok(&[
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.eth0.disable_ipv6={value}"),
        ])
        .unwrap();
}

fn failures(c: &Cluster, node: &str) -> f64 {
    sample(
        &scrape(c.host(node)),
        "vrrp_takeover_vip_failures_total",
        &[("vrrp_instance", "public6")],
    )
    .unwrap_or(f64::NAN)
}

/// lb1 dies while IPv6 is disabled on lb2's eth0: lb2's takeover fails at the
/// third member, it takes the first two members' VIPs back, goes to FAULT and
/// never reports MASTER; it tries again after its fault hold, and once IPv6 is
/// back it takes over with every VIP.
#[test]
fn a_failed_vip_add_leaves_no_master_and_is_retried() {
    if !integration::have_root("a_failed_vip_add_leaves_no_master_and_is_retried") {
        return;
    }
    let c = Cluster::up_with(&[], with_ipv6);
    let mut lb1 = c.start("lb1");
    let lb2 = c.start("lb2");
    wait_for("lb1 holds both VIPs", PATIENCE, || has_both(c.host("lb1")));
    wait_for("lb2 is BACKUP", PATIENCE, || c.state_of("lb2") == "BACKUP");
    assert_eq!(failures(&c, "lb2"), 0.0, "the series exists at 0");
    ipv6_on_eth0(&c, "lb2", false);

    lb1.signal(libc::SIGKILL).unwrap();
    assert!(lb1.wait_timeout(Duration::from_secs(5)).unwrap().is_some());
    c.lab.set_cable("lb1", "eth0", false).unwrap();
    c.lab.set_cable("lb1", "eth1", false).unwrap();

    let took = wait_for("lb2 gave a takeover up", PATIENCE, || {
        failures(&c, "lb2") >= 1.0
    });
    println!("lb2's takeover failed {took:?} after lb1's death");
    let status = c.status("lb2");
    assert_eq!(group_state(&status), "FAULT", "{status:#}");
    let failed = status["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "public6")
        .unwrap();
    assert_eq!(
        failed["last_transition"]["reason"], "vip_add_failed",
        "{status:#}"
    );
    // The first members' VIPs went back: no address answers for the group here.
    assert!(has_neither(c.host("lb2")));
    assert!(lb2
        .stderr()
        .contains("takeover given up: the VIPs could not be added"));

    // FAULT for one Master_Down_Interval, BACKUP for another, then a new try that
    // fails the same way: never MASTER in between.
    let retried = Duration::from_secs(12);
    let mut seen_backup = false;
    holds_for("lb2 never reports MASTER", retried, || {
        let state = c.state_of("lb2");
        seen_backup |= state == "BACKUP";
        state != "MASTER"
    });
    assert!(seen_backup, "the fault never cleared");
    assert!(failures(&c, "lb2") >= 2.0, "no second attempt");

    // IPv6 back (its node address with it: disabling took every address).
    ipv6_on_eth0(&c, "lb2", true);
    c.host("lb2")
        .exec_ok(&[
            "ip",
            "addr",
            "add",
            "2001:db8:0:a::12/64",
            "dev",
            "eth0",
            "nodad",
        ])
        .unwrap();
    let took = wait_for("lb2 holds every VIP", PATIENCE, || {
        has_both(c.host("lb2")) && has(c.host("lb2"), "eth0", VIP6)
    });
    println!("lb2 took over {took:?} after IPv6 came back");
    assert_eq!(group_state(&c.status("lb2")), "MASTER");
}
