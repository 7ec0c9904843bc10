//! Issue 11, "never two masters": a VIP is never the node's own source address
//! (start, reload, restart after a crash), and a SIGTERM release on IPv6 reaches
//! the peer before the VIPs go. Needs root and tcpdump (prints SKIP otherwise).

mod support;

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use serde_json::Value;
use support::capture::{self, Tcpdump};
use support::*;

/// A link-local VIP: what vrrpd once took for its own link-local address.
const VIP6_LL: &str = "fe80::c8";
const VIP6: &str = "2001:db8:0:a::c8";

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

/// The example plus an IPv6-only sync group `v6` (instance `public6`, VRID 61 on
/// eth0, a link-local VIP then a global one): alone in its group, so its
/// adverts are the only ones that can tell the peer anything about it.
fn with_v6_group(text: &mut String) {
    for (from, to) in [
        (
            "priority = { edge = 150 }",
            "priority = { edge = 150, v6 = 150 }",
        ),
        (
            "priority = { edge = 100 }",
            "priority = { edge = 100, v6 = 100 }",
        ),
    ] {
        assert!(text.contains(from), "{from}");
        *text = text.replacen(from, to, 1);
    }
    text.push_str(&format!(
        "\n[[sync_group]]\nname = \"v6\"\ninstances = [\"public6\"]\n\
         \n[[instance]]\nname = \"public6\"\ninterface = \"eth0\"\nvrid = 61\n\
         vips = [\"{VIP6_LL}/64\", \"{VIP6}/64\"]\n"
    ));
}

/// The state of sync group `v6` in `node`'s status ("" while its vrrpd is
/// not answering: just started, or gone).
fn v6_state(c: &Cluster, node: &str) -> String {
    let socket = c.socket(node);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = rt.block_on(async {
        let client = ctl::Client::connect(&socket).await.ok()?;
        client
            .request_with_timeout("status", Value::Null, Duration::from_secs(10))
            .await
            .ok()
    });
    status
        .as_ref()
        .and_then(|s| s["groups"].as_array())
        .and_then(|gs| gs.iter().find(|g| g["name"] == "v6"))
        .and_then(|g| g["state"].as_str())
        .unwrap_or("")
        .to_owned()
}

fn has_v6(c: &Cluster, node: &str) -> bool {
    has(c.host(node), "eth0", VIP6) && has(c.host(node), "eth0", VIP6_LL)
}

fn has_no_v6(c: &Cluster, node: &str) -> bool {
    !has(c.host(node), "eth0", VIP6) && !has(c.host(node), "eth0", VIP6_LL)
}

/// The kernel's own (EUI-64) link-local address of `node`'s eth0.
fn eui64_link_local(c: &Cluster, node: &str) -> Ipv6Addr {
    let m = capture::mac(&c.host(node).link("eth0").unwrap().mac);
    Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([m[0] ^ 0x02, m[1]]),
        u16::from_be_bytes([m[2], 0xff]),
        u16::from_be_bytes([0xfe, m[3]]),
        u16::from_be_bytes([m[4], m[5]]),
    )
}

/// Captures VRRP over IPv6 on `node`'s eth0.
fn capture_v6(c: &Cluster, node: &str, name: &str) -> Tcpdump {
    Tcpdump::start(
        c.host(node),
        "eth0",
        "ip6 and ip6[6] == 112",
        c.dir.path(),
        name,
    )
}

/// VRRP frames of VRID 61 in a capture, decoded or not: (source, priority) when
/// they decode (checksum, hop limit), the error otherwise.
fn vrid61(frames: &[Vec<u8>]) -> Vec<Result<(IpAddr, u8), String>> {
    frames
        .iter()
        .filter_map(|f| {
            // Ethernet, IPv6 (next header 112), VRRP: the VRID is the message's 2nd byte.
            if f.get(12..14)? != [0x86, 0xdd] || *f.get(20)? != 112 || *f.get(55)? != 61 {
                return None;
            }
            Some(
                vrrp::frame::decode_frame(vrrp::frame::LinkType::Ethernet, f)
                    .map(|r| (r.ip.src, r.advert.priority))
                    .map_err(|e| e.to_string()),
            )
        })
        .collect()
}

/// The capture shows a priority-0 advert from `source`, and every VRID 61
/// advert in it decodes (checksum, hop limit).
fn assert_released_from(tcpdump: Tcpdump, source: Ipv6Addr) {
    let release = Ok((IpAddr::V6(source), 0));
    // Frames reach the file in blocks: wait for it rather than stop at once.
    let seen = std::time::Instant::now();
    while !vrid61(&tcpdump.frames_so_far()).contains(&release) && seen.elapsed() < PATIENCE {
        std::thread::sleep(Duration::from_millis(50));
    }
    let adverts = vrid61(&tcpdump.finish());
    assert!(
        adverts.contains(&release),
        "no priority-0 advert from the real link-local {source}: {adverts:?}"
    );
    assert!(adverts.iter().all(Result::is_ok), "{adverts:?}");
}

/// Every series of vrrpd's receive-error metrics on `node` is 0.
fn assert_no_receive_errors_on(c: &Cluster, node: &str) {
    assert_no_receive_errors(&scrape(c.host(node)));
}

/// `vrrpctl reload` in `node` (or the same request through the client): the
/// groups it reported per outcome ("unchanged", "restarted", ...).
fn reload(c: &Cluster, node: &str) -> Vec<(String, Vec<String>)> {
    let socket = c.socket(node);
    match vrrpctl() {
        Some(bin) => {
            let out = c
                .host(node)
                .exec_ok(&[
                    bin.to_str().unwrap(),
                    "--socket",
                    socket.to_str().unwrap(),
                    "reload",
                ])
                .unwrap();
            println!("vrrpctl reload:\n{out}");
            // "<socket>: applied (updated: edge; unchanged: v6)", or "(nothing changed)".
            let what = out
                .split_once(": applied (")
                .and_then(|(_, rest)| rest.trim_end().strip_suffix(')'))
                .unwrap_or_else(|| panic!("not applied: {out}"));
            what.split("; ")
                .filter_map(|l| l.split_once(": "))
                .map(|(k, v)| (k.to_owned(), v.split(", ").map(str::to_owned).collect()))
                .collect()
        }
        None => {
            let report = request(&socket, "reload", Value::Null);
            ["unchanged", "updated", "restarted", "added", "removed"]
                .iter()
                .map(|k| {
                    let names = report[*k]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect();
                    ((*k).to_owned(), names)
                })
                .collect()
        }
    }
}

/// Brings up lb1 MASTER and lb2 BACKUP of both groups.
fn pair(c: &Cluster) -> (integration::Process, integration::Process) {
    let lb1 = c.start("lb1");
    wait_for("lb1 holds every VIP", PATIENCE, || {
        has_both(c.host("lb1")) && has_v6(c, "lb1")
    });
    let lb2 = c.start("lb2");
    wait_for("lb2 is BACKUP of v6", PATIENCE, || {
        v6_state(c, "lb2") == "BACKUP"
    });
    (lb1, lb2)
}

#[test]
fn sigterm_release_on_ipv6_reaches_the_peer_within_skew_time() {
    if !ready("sigterm_release_on_ipv6_reaches_the_peer_within_skew_time") {
        return;
    }
    let c = Cluster::up_with(&[], with_v6_group);
    let (mut lb1, _lb2) = pair(&c);
    let lb1_ll = eui64_link_local(&c, "lb1");
    let tcpdump = capture_v6(&c, "lb2", "release");
    // Let one advert of lb1 pass the capture, so the release is timed from a
    // steady state.
    wait_for("an advert of lb1 captured", PATIENCE, || {
        vrid61(&tcpdump.frames_so_far()).contains(&Ok((IpAddr::V6(lb1_ll), 150)))
    });
    lb1.signal(libc::SIGTERM).unwrap();
    let took = wait_for("lb2 holds the IPv6 VIPs", PATIENCE, || has_v6(&c, "lb2"));
    println!("lb2 took the IPv6 VIPs {took:?} after lb1's SIGTERM");
    let status = lb1.wait_timeout(Duration::from_secs(10)).unwrap();
    assert!(status.is_some_and(|s| s.success()), "{}", lb1.stderr());
    assert!(has_no_v6(&c, "lb1"));
    let log = lb1.stderr();
    assert!(!log.contains("advert not sent"), "{log}");

    assert_released_from(tcpdump, lb1_ll);
    // Skew_Time at priority 100 and 1 s adverts is 0.61 s; Master_Down_Interval
    // 3.61 s. Well under the latter: the release was heard.
    assert!(
        took < Duration::from_secs(2),
        "lb2 took {took:?}: it waited out Master_Down_Interval"
    );
    assert_eq!(v6_state(&c, "lb2"), "MASTER");
}

#[test]
fn reload_on_a_master_with_a_link_local_vip_changes_nothing() {
    if !ready("reload_on_a_master_with_a_link_local_vip_changes_nothing") {
        return;
    }
    let c = Cluster::up_with(&[], with_v6_group);
    let (lb1, _lb2) = pair(&c);
    let lb1_ll = eui64_link_local(&c, "lb1");
    let tcpdump = capture_v6(&c, "lb2", "reload");
    let report = reload(&c, "lb1");
    let unchanged: Vec<String> = vec!["edge".into(), "v6".into()];
    assert!(
        report
            .iter()
            .all(|(k, names)| names.is_empty() || (k == "unchanged" && *names == unchanged)),
        "a no-op reload changed something: {report:?}"
    );
    // Three advert intervals: lb1 keeps the VIPs, lb2 stays BACKUP.
    holds_for(
        "lb1 MASTER with every VIP, lb2 BACKUP",
        Duration::from_secs(3),
        || has_v6(&c, "lb1") && has_no_v6(&c, "lb2"),
    );
    assert_eq!(v6_state(&c, "lb1"), "MASTER");
    assert_eq!(v6_state(&c, "lb2"), "BACKUP");
    let log = lb1.stderr();
    assert!(!log.contains("VIPs removed"), "{log}");
    let adverts = vrid61(&tcpdump.finish());
    assert!(adverts.len() >= 2, "{adverts:?}");
    assert!(
        adverts.iter().all(|a| *a == Ok((IpAddr::V6(lb1_ll), 150))),
        "every advert from lb1's real link-local {lb1_ll}, valid, priority 150: {adverts:?}"
    );
    assert_no_receive_errors_on(&c, "lb2");
}

#[test]
fn restart_after_sigkill_with_a_leftover_link_local_vip_uses_the_real_link_local() {
    if !ready("restart_after_sigkill_with_a_leftover_link_local_vip_uses_the_real_link_local") {
        return;
    }
    let c = Cluster::up_with(&[], with_v6_group);
    let (mut lb1, _lb2) = pair(&c);
    let lb1_ll = eui64_link_local(&c, "lb1");
    lb1.signal(libc::SIGKILL).unwrap();
    assert!(lb1.wait_timeout(Duration::from_secs(5)).unwrap().is_some());
    c.lab.set_cable("lb1", "eth0", false).unwrap();
    c.lab.set_cable("lb1", "eth1", false).unwrap();
    wait_for("lb2 holds the IPv6 VIPs", PATIENCE, || has_v6(&c, "lb2"));
    assert!(has_v6(&c, "lb1"), "SIGKILL left no VIPs behind?");

    // lb1 comes back with fe80::c8 still on eth0: it must not take it for its own.
    c.lab.set_cable("lb1", "eth0", true).unwrap();
    c.lab.set_cable("lb1", "eth1", true).unwrap();
    let tcpdump = capture_v6(&c, "lb2", "restart");
    let mut lb1 = c.start("lb1");
    let took = wait_for("lb1 preempts the IPv6 group back", PATIENCE, || {
        v6_state(&c, "lb1") == "MASTER" && has_v6(&c, "lb1") && has_no_v6(&c, "lb2")
    });
    println!("lb1 back {took:?} after its restart");
    let log = lb1.stderr();
    let opened = format!("family=IPv6 source={lb1_ll}");
    assert!(log.contains(&opened), "{log}");
    assert!(!log.contains("advert not sent"), "{log}");
    wait_for("lb2 BACKUP of v6", PATIENCE, || {
        v6_state(&c, "lb2") == "BACKUP"
    });

    // And its release on SIGTERM reaches lb2 at once (Skew_Time, not
    // Master_Down_Interval): the priority-0 advert leaves from a live address.
    lb1.signal(libc::SIGTERM).unwrap();
    let took = wait_for("lb2 holds the IPv6 VIPs again", PATIENCE, || {
        has_v6(&c, "lb2")
    });
    println!("lb2 took the IPv6 VIPs {took:?} after lb1's SIGTERM");
    let status = lb1.wait_timeout(Duration::from_secs(10)).unwrap();
    assert!(status.is_some_and(|s| s.success()), "{}", lb1.stderr());
    let log = lb1.stderr();
    assert!(!log.contains("advert not sent"), "{log}");
    assert_released_from(tcpdump, lb1_ll);
    assert!(
        took < Duration::from_secs(2),
        "lb2 took {took:?}: it waited out Master_Down_Interval"
    );
    assert_no_receive_errors_on(&c, "lb2");
}
