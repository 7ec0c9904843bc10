//! Least-connection scheduling (lc, wlc) on the nft backend, on a real lbd in
//! namespaces (needs root): new connections go where fewer are open, as counted in
//! conntrack and fed into the service's slots.

mod support;

use std::io::BufReader;
use std::net::TcpStream;
use std::process::Output;
use std::thread;
use std::time::Duration;

use integration::Host;
use support::*;

/// How many of `held` are on srv1 and on srv2.
fn on(held: &[(BufReader<TcpStream>, String)]) -> (usize, usize) {
    let n = |s: &str| held.iter().filter(|(_, n)| n == s).count();
    (n("srv1"), n("srv2"))
}

fn vrrpctl(setup: &Setup, args: &[&str]) -> Output {
    let out = std::process::Command::new(sibling_binary("vrrpctl"))
        .arg("--socket")
        .arg(setup.lbd_socket("lb1"))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "vrrpctl {args:?}: {out:?}");
    out
}

/// Whether every DNAT slot of the table sends to `addr`.
fn all_slots_to(host: &Host, addr: &str) -> bool {
    let slots = dnat_slots(host);
    !slots.is_empty() && slots.values().all(|b| b == addr)
}

const NFT: (&str, &str) = ("backend = \"auto\"", "backend = \"nft\"");
const LC: (&str, &str) = ("scheduler = \"rr\"", "scheduler = \"lc\"");
const WLC: (&str, &str) = ("scheduler = \"rr\"", "scheduler = \"wlc\"");
/// srv1 weight 3 (srv2 keeps 1).
const SRV1_3: (&str, &str) = ("weight = 1\n# Health", "weight = 3\n# Health");

#[test]
fn new_connections_go_where_fewer_are_open() {
    if !integration::have_root("new_connections_go_where_fewer_are_open") {
        return;
    }
    let setup = Setup::two_arm();
    setup.add_vip("lb1", "eth0", VIP);
    setup.add_vip("lb1", "eth1", SNAT_VIP);
    named_echo_server(setup.host("srv1"), "198.18.1.21:80", "srv1");
    named_echo_server(setup.host("srv2"), "198.18.1.22:80", "srv2");
    setup.write_config("lb1", &[NO_CHECKS, NFT, LC]);
    let mut lbd = setup.start_lbd("lb1");
    let status = setup.wait_applied("lb1");
    assert_eq!(status["backend"]["name"], "nft");
    assert_eq!(status["services"][0]["scheduler"], "lc");
    let client = setup.host("client");
    let lb = setup.host("lb1");

    // 12 connections held open on srv1 (srv2 drained meanwhile).
    vrrpctl(&setup, &["server", "drain", "web/srv2"]);
    let mut held: Vec<_> = (0..12).map(|_| connect_named(client)).collect();
    assert_eq!(on(&held), (12, 0));
    vrrpctl(&setup, &["server", "enable", "web/srv2"]);

    // lc: once counted, every slot goes to srv2 (0 open against 12), and short
    // connections keep going there (wrr would alternate).
    wait_for("every slot on srv2", PATIENCE, || {
        all_slots_to(lb, "198.18.1.22")
    });
    let short: Vec<String> = (0..20)
        .map(|_| {
            thread::sleep(Duration::from_millis(20));
            connect_named(client).1
        })
        .collect();
    println!("lc, 12 open on srv1, 0 on srv2: 20 short connections went to {short:?}");
    assert!(short.iter().all(|s| s == "srv2"), "{short:?}");

    // A restarted lbd counts the connections already open (from a dump: they send
    // no events while held): every slot on srv2 again, not the 1:1 of the plan.
    lbd.signal(libc::SIGKILL).unwrap();
    let _ = lbd.wait_timeout(Duration::from_secs(10));
    let _lbd = setup.start_lbd("lb1");
    setup.wait_applied("lb1");
    wait_for("every slot on srv2 after a restart", PATIENCE, || {
        all_slots_to(lb, "198.18.1.22")
    });

    // wlc with weights 3:1 and the 12 still open on srv1: the new held connections
    // bring the active counts to 3:1 (srv2 first, until it has 4; wrr would send
    // 15 of 20 to srv1, 27:5).
    setup.write_config("lb1", &[NO_CHECKS, NFT, WLC, SRV1_3]);
    setup.reload("lb1").unwrap();
    assert_eq!(setup.status("lb1")["services"][0]["scheduler"], "wlc");
    wait_for("every slot on srv2", PATIENCE, || {
        all_slots_to(lb, "198.18.1.22")
    });
    for _ in 0..20 {
        thread::sleep(Duration::from_millis(50));
        held.push(connect_named(client));
    }
    let (a, b) = on(&held);
    println!("wlc 3:1, 12 open on srv1, then 20 more held: srv1 {a}, srv2 {b}");
    assert_eq!(a + b, 32);
    assert!(b >= 6 && a.abs_diff(3 * b) <= 4, "srv1 {a}, srv2 {b}");
    // lbd's own count agrees (the status counts every second).
    wait_for("status counts the held connections", PATIENCE, || {
        let s = setup.status("lb1");
        let active = |i: usize| s["services"][0]["servers"][i]["active_connections"].as_u64();
        active(0) == Some(a as u64) && active(1) == Some(b as u64)
    });
}
