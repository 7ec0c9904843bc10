//! Acceptance, asserted on captures taken by tcpdump in a neighbour: IPv6
//! failover with unsolicited neighbour advertisements, and the priority-0
//! release on SIGTERM. Needs root and tcpdump (prints SKIP otherwise).
//!
//! (A restarted vrrpd removing VIPs left by a crash while the peer is MASTER
//! is daemon_failover.rs: `bring_back` in both of its node-death tests.)

mod support;

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use support::capture::{self, Tcpdump};
use support::*;
use vrrp::checksum::ChecksumForm;

const VIP6: &str = "2001:db8:0:a::100";
const VIP6_LL: &str = "fe80::100";

fn ready(test: &str) -> bool {
    if !integration::have_root(test) {
        return false;
    }
    let found = std::process::Command::new("tcpdump")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        if std::env::var(integration::REQUIRE_ROOT_ENV).is_ok_and(|v| v == "1") {
            panic!("{test}: needs tcpdump");
        }
        println!("SKIP (needs tcpdump): {test}");
    }
    found
}

/// The example with the IPv6 instance `public6` (VRID 51 on eth0: first a
/// link-local VIP, then a global one, as RFC 9568 §7.2 wants) in the group.
fn with_ipv6(text: &mut String) {
    with_public6(text, 51, &[&format!("{VIP6_LL}/64"), &format!("{VIP6}/64")]);
}

fn has_v6(c: &Cluster, node: &str) -> bool {
    has(c.host(node), "eth0", VIP6) && has(c.host(node), "eth0", VIP6_LL)
}

fn lb2_mac(c: &Cluster) -> [u8; 6] {
    capture::mac(&c.host("lb2").link("eth0").unwrap().mac)
}

#[test]
fn ipv6_instance_fails_over_with_unsolicited_neighbour_advertisements() {
    if !ready("ipv6_instance_fails_over_with_unsolicited_neighbour_advertisements") {
        return;
    }
    let c = Cluster::up_with(&[], with_ipv6);
    let mut lb1 = c.start("lb1");
    let _lb2 = c.start("lb2");
    wait_for("lb1 holds every VIP", PATIENCE, || {
        has_both(c.host("lb1")) && has_v6(&c, "lb1")
    });
    wait_for("lb2 is BACKUP", PATIENCE, || c.state_of("lb2") == "BACKUP");
    assert!(!has_v6(&c, "lb2"));
    let s2 = c.status("lb2");
    let public6 = s2["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "public6")
        .unwrap()
        .clone();
    assert_eq!(public6["state"], "BACKUP", "{s2:#}");
    // IPv6 adverts come from the master's link-local address.
    let master: IpAddr = public6["master_address"].as_str().unwrap().parse().unwrap();
    assert!(
        matches!(master, IpAddr::V6(a) if a.segments()[0] == 0xfe80),
        "{s2:#}"
    );

    let tcpdump = Tcpdump::start(
        c.host("client"),
        "eth0",
        "icmp6 and ip6[40] == 136",
        c.dir.path(),
        "na",
    );
    lb1.signal(libc::SIGKILL).unwrap();
    assert!(lb1.wait_timeout(Duration::from_secs(5)).unwrap().is_some());
    c.lab.set_cable("lb1", "eth0", false).unwrap();
    c.lab.set_cable("lb1", "eth1", false).unwrap();
    wait_for("lb2 holds every VIP", PATIENCE, || {
        has_both(c.host("lb2")) && has_v6(&c, "lb2")
    });

    let mac = lb2_mac(&c);
    let global: Ipv6Addr = VIP6.parse().unwrap();
    let link_local: Ipv6Addr = VIP6_LL.parse().unwrap();
    let from_lb2 = |t: Ipv6Addr| {
        let frames = tcpdump.frames_so_far();
        capture::neighbour_adverts(&frames)
            .into_iter()
            .any(|na| na.src_mac == mac && na.target == t)
    };
    wait_for(
        "the client saw lb2's NA for the global VIP",
        PATIENCE,
        || from_lb2(global) && from_lb2(link_local),
    );
    let nas = capture::neighbour_adverts(&tcpdump.finish());
    let ours: Vec<_> = nas.iter().filter(|na| na.src_mac == mac).collect();
    for target in [global, link_local] {
        let na = ours
            .iter()
            .find(|na| na.target == target)
            .unwrap_or_else(|| panic!("no NA for {target}: {nas:#?}"));
        assert!(na.override_flag, "O flag clear: {na:?}");
        assert!(!na.solicited, "S flag set on an unsolicited NA: {na:?}");
        assert_eq!(na.dst, "ff02::1".parse::<Ipv6Addr>().unwrap(), "{na:?}");
    }
    assert_eq!(c.state_of("lb2"), "MASTER");
}

#[test]
fn sigterm_sends_priority_zero_on_both_links_and_the_peer_takes_over() {
    if !ready("sigterm_sends_priority_zero_on_both_links_and_the_peer_takes_over") {
        return;
    }
    let c = Cluster::up(&[]);
    let mut lb1 = c.start("lb1");
    let _lb2 = c.start("lb2");
    wait_for("lb1 holds both VIPs", PATIENCE, || has_both(c.host("lb1")));
    wait_for("lb2 is BACKUP", PATIENCE, || c.state_of("lb2") == "BACKUP");

    // The public link seen by the client, the server link seen by lb2.
    let public = Tcpdump::start(
        c.host("client"),
        "eth0",
        "ip proto 112",
        c.dir.path(),
        "public",
    );
    let server = Tcpdump::start(
        c.host("lb2"),
        "eth1",
        "ip proto 112",
        c.dir.path(),
        "server",
    );
    lb1.signal(libc::SIGTERM).unwrap();
    wait_for("lb2 holds both VIPs", PATIENCE, || has_both(c.host("lb2")));
    let status = lb1.wait_timeout(Duration::from_secs(10)).unwrap();
    assert!(status.is_some_and(|s| s.success()), "{}", lb1.stderr());
    assert!(has_neither(c.host("lb1")));

    for (tcpdump, vrid, old, new) in [
        (public, 51, "198.18.0.11", "198.18.0.12"),
        (server, 52, "198.18.1.11", "198.18.1.12"),
    ] {
        let (old, new): (IpAddr, IpAddr) = (old.parse().unwrap(), new.parse().unwrap());
        let new_master_heard = || {
            capture::adverts(&tcpdump.frames_so_far())
                .iter()
                .any(|(_, r)| r.ip.src == new && r.advert.priority == 100)
        };
        wait_for("an advert of the new master", PATIENCE, new_master_heard);
        let adverts = capture::adverts(&tcpdump.finish());
        let summary: Vec<(IpAddr, u8, u8)> = adverts
            .iter()
            .map(|(_, r)| (r.ip.src, r.advert.vrid, r.advert.priority))
            .collect();
        // Every captured advert decoded (checksum, TTL 255) and is ours,
        // VRRPv3 over IPv4 with keepalived's pseudo-header checksum.
        assert!(summary.iter().all(|(_, v, _)| *v == vrid), "{summary:?}");
        assert!(
            adverts
                .iter()
                .all(|(_, r)| r.checksum_form == ChecksumForm::PseudoHeader),
            "{summary:?}"
        );
        let release = summary
            .iter()
            .position(|&(src, _, prio)| src == old && prio == 0)
            .unwrap_or_else(|| panic!("no priority-0 advert from {old}: {summary:?}"));
        // Nothing from the old master after its release; the new master after.
        assert!(
            summary[release + 1..].iter().all(|&(src, _, _)| src != old),
            "{summary:?}"
        );
        assert!(
            summary[release + 1..]
                .iter()
                .any(|&(src, _, prio)| src == new && prio == 100),
            "{summary:?}"
        );
        assert!(
            summary[..release]
                .iter()
                .all(|&(src, _, prio)| src == old && prio == 150),
            "{summary:?}"
        );
    }
}
