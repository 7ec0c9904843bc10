//! The nft backend against the kernel, inside network namespaces (needs root).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use dataplane::{
    Backend, Counting, Counts, Dataplane, DesiredState, DnatSlot, Forwarding, NatProtocol,
    NftBackend, Persistence, PortSpec, Protocol, Scheduler, Service, SnatRule, SnatSource,
};
use integration::{Host, Lab, Prefix};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn backend(name: &str, addr: &str, weight: u32) -> Backend {
    Backend {
        name: name.into(),
        addr: ip(addr),
        port: Some(80),
        weight,
    }
}

fn web(scheduler: Scheduler, w1: u32, w2: u32) -> Service {
    Service {
        name: "web".into(),
        vip: ip("198.18.0.100"),
        ports: PortSpec::Single(80),
        protocol: Protocol::Tcp,
        scheduler,
        backends: vec![
            backend("srv1", "198.18.1.21", w1),
            backend("srv2", "198.18.1.22", w2),
        ],
        forward: Forwarding::Nat,
        persistence: None,
    }
}

fn snat_web(source: SnatSource) -> SnatRule {
    SnatRule {
        name: "web-out".into(),
        in_iface: Some("eth0".into()),
        out_iface: Some("eth1".into()),
        protocol: NatProtocol::Tcp,
        orig_daddr: ip("198.18.0.100"),
        orig_dports: Some(PortSpec::Single(80)),
        source,
    }
}

fn backend_in(host: &Host) -> NftBackend {
    backend_counting(host, Counting::Traffic)
}

fn backend_counting(host: &Host, counting: Counting) -> NftBackend {
    host.run_in(move || NftBackend::with_counting("lbsuite", counting))
        .unwrap()
        .unwrap()
}

/// Top-level objects of `nft -j list table inet <t>`: kind -> names.
fn objects(host: &Host, table: &str) -> BTreeMap<String, Vec<String>> {
    let out = host
        .exec_ok(&["nft", "-j", "list", "table", "inet", table])
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for o in v["nftables"].as_array().unwrap() {
        for (kind, body) in o.as_object().unwrap() {
            if let Some(name) = body.get("name").and_then(|n| n.as_str()) {
                m.entry(kind.clone()).or_default().push(name.to_owned());
            }
            if kind == "rule" {
                let c = body.get("comment").and_then(|c| c.as_str()).unwrap_or("");
                m.entry("rule".into()).or_default().push(c.to_owned());
            }
        }
    }
    m
}

fn slots_of<'a>(slots: &'a [DnatSlot], vip: &str) -> Vec<&'a DnatSlot> {
    slots.iter().filter(|s| s.vip == ip(vip)).collect()
}

#[test]
fn layout_diff_and_foreign_table_in_namespace() {
    if !integration::have_root("layout_diff_and_foreign_table_in_namespace") {
        return;
    }
    let lab = Lab::one_arm().unwrap();
    let lb = &lab["lb1"];
    lb.exec_ok(&["nft", "add", "table", "inet", "testown"])
        .unwrap();
    lb.exec_ok(&[
        "nft",
        "add chain inet testown input { type filter hook input priority 0; }",
    ])
    .unwrap();
    lb.exec_ok(&[
        "nft",
        "add rule inet testown input tcp dport 22 counter accept",
    ])
    .unwrap();
    let foreign_before = lb
        .exec_ok(&["nft", "-j", "list", "table", "inet", "testown"])
        .unwrap();

    let dns = Service {
        name: "dns".into(),
        vip: ip("198.18.0.101"),
        ports: PortSpec::Single(53),
        protocol: Protocol::Udp,
        scheduler: Scheduler::Rr,
        backends: vec![
            backend("srv1", "198.18.1.21", 1),
            backend("srv2", "198.18.1.22", 1),
        ],
        forward: Forwarding::Nat,
        persistence: None,
    };
    let ftp = Service {
        name: "passive".into(),
        vip: ip("198.18.0.102"),
        ports: PortSpec::Range(10000, 10010),
        protocol: Protocol::Tcp,
        scheduler: Scheduler::Sh,
        backends: vec![Backend {
            port: None,
            ..backend("srv1", "198.18.1.21", 1)
        }],
        forward: Forwarding::Nat,
        persistence: None,
    };
    let state = DesiredState {
        services: vec![web(Scheduler::Wrr, 3, 1), dns, ftp],
        snat: vec![snat_web(SnatSource::Pool(vec![
            (ip("198.18.1.100"), Some((20000, 29999))),
            (ip("198.18.1.101"), Some((20000, 29999))),
        ]))],
    };
    let mut nft = backend_in(lb);
    let first = nft.apply(&state).unwrap();
    println!("first apply: {first:?}");
    assert!(first.kernel.nft.table_created);
    // The five base chains, and a chain of their own for web and dns (round robin).
    assert_eq!(first.kernel.nft.chains_added, 5 + 2);
    // web 4 + dns 2 + range 1 DNAT slots, 4 packet and 4 connection counter keys
    // (single-port backends), 2 pool entries, web's and dns's jumps to their chains.
    assert_eq!(first.kernel.nft.elements_added, 4 + 2 + 1 + 4 + 4 + 2 + 2);
    // In the desired state's terms: three services, their five servers, one SNAT rule.
    let added = |n| Counts {
        added: n,
        changed: 0,
        removed: 0,
    };
    assert_eq!(
        (first.services, first.servers, first.nat_rules),
        (added(3), added(5), added(1))
    );

    let objs = objects(lb, "lbsuite");
    println!("nft -j list table inet lbsuite: {objs:?}");
    assert_eq!(
        objs["chain"],
        vec![
            "lb_dnat",
            "lb_dnat_range",
            "lb_snat",
            "lb_count",
            "lb_conn",
            "svc_tcp_198.18.0.100_80",
            "svc_udp_198.18.0.101_53"
        ]
    );
    // Round-robin slots sit in the maps of their services' buckets.
    let (rr, mut maps): (Vec<String>, Vec<String>) = objs["map"]
        .iter()
        .cloned()
        .partition(|m| m.starts_with("dnat4_bucket_"));
    maps.sort();
    assert!((1..=2).contains(&rr.len()), "{rr:?}");
    assert_eq!(maps, vec!["dnatr4_hash_1", "snat_web_out", "svc4"]);
    assert_eq!(objs["set"], vec!["conn4", "count4"]);
    // lb_dnat's jump, the range map's rule, snat, count, conn; a rule per chain.
    assert_eq!(objs["rule"].len(), 5 + 2, "{:?}", objs["rule"]);
    let listing = lb
        .exec_ok(&["nft", "list", "table", "inet", "lbsuite"])
        .unwrap();
    println!("{listing}");
    assert!(
        listing.contains("numgen inc mod 4 map @dnat4_bucket_"),
        "{listing}"
    );
    assert!(
        listing.contains("meta l4proto . ip daddr . th dport vmap @svc4"),
        "{listing}"
    );
    assert!(
        listing.contains("jhash ip saddr mod 1 seed 0x4c425355 map @dnatr4_hash_1"),
        "{listing}"
    );

    let before = nft.read_back().unwrap().nft.dnat_slots();
    let web_slots = slots_of(&before, "198.18.0.100");
    assert_eq!(web_slots.len(), 4);
    assert_eq!(
        web_slots
            .iter()
            .filter(|s| s.backend == ip("198.18.1.21"))
            .count(),
        3
    );
    let range = slots_of(&before, "198.18.0.102");
    assert_eq!(range[0].ports, PortSpec::Range(10000, 10010));
    assert_eq!(range[0].backend_port, None);

    let again = nft.apply(&state).unwrap();
    println!("same state again: {again:?}");
    assert_eq!(again.changes(), 0);
    assert_eq!(again.messages, 0);

    // A restarted lbd adopts the table: it diffs against the kernel, changes nothing.
    let mut adopted = backend_in(lb);
    let adopt = adopted.apply(&state).unwrap();
    println!("adopting apply: {adopt:?}");
    assert!(adopt.reread);
    assert_eq!(adopt.changes(), 0);
    assert_eq!(
        (adopt.services, adopt.servers),
        (Counts::default(), Counts::default())
    );

    // One weight change (3:1 -> 1:3, same slot count) touches web's slots only.
    let mut changed = state.clone();
    changed.services[0] = web(Scheduler::Wrr, 1, 3);
    let report = nft.apply(&changed).unwrap();
    println!("weight change: {report:?}");
    assert_eq!(
        report.kernel.nft.sets_added
            + report.kernel.nft.sets_removed
            + report.kernel.nft.rules_added
            + report.kernel.nft.rules_removed,
        0
    );
    assert!(
        report.kernel.nft.elements_added > 0
            && report.kernel.nft.elements_added == report.kernel.nft.elements_removed
    );
    let two_weights = Counts {
        added: 0,
        changed: 2,
        removed: 0,
    };
    assert_eq!(
        (report.services, report.servers, report.nat_rules),
        (Counts::default(), two_weights, Counts::default()),
        "both of web's servers changed weight, nothing else"
    );
    let after = nft.read_back().unwrap().nft.dnat_slots();
    let others = |v: &[DnatSlot]| {
        v.iter()
            .filter(|s| s.vip != ip("198.18.0.100"))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(others(&before), others(&after));
    let web_after = slots_of(&after, "198.18.0.100");
    assert_eq!(
        web_after
            .iter()
            .filter(|s| s.backend == ip("198.18.1.22"))
            .count(),
        3
    );

    // A drained backend (weight 0) leaves the slots; dns's counter counts to 1.
    let mut drained = changed.clone();
    drained.services[1].backends[1].weight = 0;
    let report = nft.apply(&drained).unwrap();
    println!("drain: {report:?}");
    let listing = lb
        .exec_ok(&[
            "nft",
            "list",
            "chain",
            "inet",
            "lbsuite",
            "svc_udp_198.18.0.101_53",
        ])
        .unwrap();
    assert!(
        listing.contains("numgen inc mod 1 map @dnat4_bucket_"),
        "{listing}"
    );

    assert_eq!(
        foreign_before,
        lb.exec_ok(&["nft", "-j", "list", "table", "inet", "testown"])
            .unwrap()
    );
    nft.teardown().unwrap();
    assert!(lb
        .exec(&["nft", "list", "table", "inet", "lbsuite"])
        .map(|o| !o.status.success())
        .unwrap());
    assert_eq!(
        foreign_before,
        lb.exec_ok(&["nft", "-j", "list", "table", "inet", "testown"])
            .unwrap()
    );
    // Tearing down twice is fine.
    nft.teardown().unwrap();
}

/// Whether `nft -j list map` shows a counter on the elements of map `name`.
fn map_counts(host: &Host, table: &str, name: &str) -> bool {
    let out = host
        .exec_ok(&["nft", "-j", "list", "map", "inet", table, name])
        .unwrap();
    out.contains("\"counter\"")
}

/// Whether `nft -j list set` shows a counter on the elements of set `name`.
fn set_counts(host: &Host, table: &str, name: &str) -> bool {
    let out = host
        .exec_ok(&["nft", "-j", "list", "set", "inet", table, name])
        .unwrap();
    out.contains("\"counter\"")
}

#[test]
fn counting_modes_shape_the_table() {
    if !integration::have_root("counting_modes_shape_the_table") {
        return;
    }
    let lab = Lab::one_arm().unwrap();
    let lb = &lab["lb1"];
    // Single-port services only, no SNAT: lb_dnat and the connection count.
    let state = DesiredState {
        services: vec![web(Scheduler::Random, 3, 1)],
        snat: vec![],
    };
    let mut nft = lb.run_in(|| NftBackend::new("lbsuite")).unwrap().unwrap();
    assert_eq!(nft.counting(), Counting::Connections);
    let r = nft.apply(&state).unwrap();
    assert_eq!(r.kernel.nft.chains_added, 2, "{r:?}");
    let objs = objects(lb, "lbsuite");
    assert_eq!(objs["chain"], vec!["lb_dnat", "lb_conn"]);
    assert_eq!(objs["set"], vec!["conn4"], "no packet count set: {objs:?}");
    // A counter per backend, none per slot.
    assert!(!map_counts(lb, "lbsuite", "dnat4_rand_4"));
    assert!(set_counts(lb, "lbsuite", "conn4"));
    let counters = nft.counters().unwrap();
    assert!(counters
        .iter()
        .all(|c| c.packets.is_none() && c.bytes.is_none()));

    // Traffic adds the forward chain and its set; the maps stay.
    nft.set_counting(Counting::Traffic);
    let r = nft.apply(&state).unwrap();
    println!("to traffic: {r:?}");
    assert!(r.reread);
    assert_eq!(
        (
            r.kernel.nft.chains_added,
            r.kernel.nft.sets_added,
            r.kernel.nft.sets_removed
        ),
        (1, 1, 0)
    );
    let objs = objects(lb, "lbsuite");
    assert_eq!(objs["chain"], vec!["lb_dnat", "lb_conn", "lb_count"]);
    // (listed in creation order)
    assert_eq!(objs["set"], vec!["conn4", "count4"]);
    assert!(nft.counters().unwrap().iter().all(|c| c.packets == Some(0)));

    // Off: both count chains and their sets go.
    nft.set_counting(Counting::Off);
    let r = nft.apply(&state).unwrap();
    println!("to off: {r:?}");
    assert_eq!(
        (r.kernel.nft.chains_removed, r.kernel.nft.sets_removed),
        (2, 2),
        "{r:?}"
    );
    let objs = objects(lb, "lbsuite");
    assert_eq!(objs["chain"], vec!["lb_dnat"]);
    assert!(!objs.contains_key("set"), "no set left: {objs:?}");
    assert_eq!(nft.apply(&state).unwrap().changes(), 0);

    // A range service brings its chain; removing it takes the chain away again,
    // through the incremental path.
    let mut ranged = state.clone();
    ranged.services.push(Service {
        name: "passive".into(),
        vip: ip("198.18.0.102"),
        ports: PortSpec::Range(10000, 10010),
        protocol: Protocol::Tcp,
        scheduler: Scheduler::Sh,
        backends: vec![Backend {
            port: None,
            ..backend("srv1", "198.18.1.21", 1)
        }],
        forward: Forwarding::Nat,
        persistence: None,
    });
    let r = nft.apply(&ranged).unwrap();
    assert!(!r.reread);
    assert_eq!(r.kernel.nft.chains_added, 1, "{r:?}");
    assert_eq!(
        objects(lb, "lbsuite")["chain"],
        vec!["lb_dnat", "lb_dnat_range"]
    );
    let r = nft.apply(&state).unwrap();
    assert!(!r.reread);
    assert_eq!(r.kernel.nft.chains_removed, 1, "{r:?}");
    assert_eq!(objects(lb, "lbsuite")["chain"], vec!["lb_dnat"]);
    nft.teardown().unwrap();
}

/// Whether table inet `table` exists in `host`.
fn table_exists(host: &Host, table: &str) -> bool {
    host.exec_ok(&["nft", "list", "table", "inet", table])
        .is_ok_and(|out| out.contains(table))
}

#[test]
fn a_first_apply_checks_before_it_sends_and_counts_in_a_second_batch() {
    if !integration::have_root("a_first_apply_checks_before_it_sends_and_counts_in_a_second_batch")
    {
        return;
    }
    let lab = Lab::one_arm().unwrap();
    let lb = &lab["lb1"];
    let state = DesiredState {
        services: vec![web(Scheduler::Rr, 1, 1)],
        snat: vec![],
    };
    let mut nft = lb.run_in(|| NftBackend::new("lbsuite")).unwrap().unwrap();

    // A state the backend refuses: never checked, the error said, nothing sent.
    let mut bad = web(Scheduler::Rr, 1, 1);
    bad.backends[0].addr = ip("2001:db8::1");
    let refused = DesiredState {
        services: vec![bad],
        snat: vec![],
    };
    let (mut checked, mut outcome) = (false, None);
    nft.apply_first(
        &refused,
        || {
            checked = true;
            true
        },
        |r| outcome = Some(r),
    );
    assert!(!checked);
    let err = outcome.take().unwrap().unwrap_err();
    assert!(err.to_string().contains("same family"), "{err}");
    assert!(!table_exists(lb, "lbsuite"));

    // Checked, then stopped by the caller (its own set-up failed): nothing sent.
    let mut present_at_check = None;
    nft.apply_first(
        &state,
        || {
            present_at_check = Some(table_exists(lb, "lbsuite"));
            false
        },
        |r| outcome = Some(r),
    );
    assert_eq!(present_at_check, Some(false));
    assert!(matches!(outcome.take(), Some(Ok(None))), "{outcome:?}");
    assert!(!table_exists(lb, "lbsuite"));

    // On a kernel without the table: checked before anything is sent; the caller
    // hears of the apply when the services forward and nothing counts yet; the
    // counting's batch follows before apply_first returns.
    let mut sets_when_applied = None;
    nft.apply_first(
        &state,
        || {
            present_at_check = Some(table_exists(lb, "lbsuite"));
            true
        },
        |r| {
            outcome = Some(r);
            sets_when_applied = Some(objects(lb, "lbsuite").remove("set"));
        },
    );
    assert_eq!(present_at_check, Some(false));
    let report = outcome.take().unwrap().unwrap().unwrap();
    assert_eq!(report.services.added, 1, "{report:?}");
    let maps = objects(lb, "lbsuite")["map"].clone();
    assert!(!maps.is_empty(), "the services' maps are there: {maps:?}");
    assert_eq!(
        sets_when_applied,
        Some(None),
        "no count set in the first batch"
    );
    assert_eq!(objects(lb, "lbsuite")["set"], vec!["conn4"]);
    assert!(set_counts(lb, "lbsuite", "conn4"));
    // The table is what a plain apply makes: nothing differs, from this backend's
    // record or from a new backend that reads the kernel.
    assert!(nft.verify(&state).unwrap().is_empty());
    assert_eq!(nft.apply(&state).unwrap().changes(), 0);
    let mut reader = lb.run_in(|| NftBackend::new("lbsuite")).unwrap().unwrap();
    let r = reader.apply(&state).unwrap();
    assert!(r.reread && r.changes() == 0, "{r:?}");

    // A start on a kernel that holds the table (a crash left no adoption record)
    // keeps what counts: the count set is there when the caller hears.
    let mut restarted = lb.run_in(|| NftBackend::new("lbsuite")).unwrap().unwrap();
    restarted.apply_first(
        &state,
        || true,
        |r| {
            outcome = Some(r);
            sets_when_applied = Some(objects(lb, "lbsuite").remove("set"));
        },
    );
    let report = outcome.take().unwrap().unwrap().unwrap();
    assert_eq!(report.changes(), 0, "{report:?}");
    assert_eq!(sets_when_applied, Some(Some(vec!["conn4".to_owned()])));
    restarted.teardown().unwrap();
}

#[test]
fn refused_scheduler_and_bad_state_change_nothing() {
    let mut dry = dataplane::DryRun::new(dataplane::BackendKind::Nft);
    let mut s = web(Scheduler::Sed, 1, 1);
    let err = dry
        .apply(&DesiredState {
            services: vec![s.clone()],
            snat: vec![],
        })
        .unwrap_err();
    assert!(err.to_string().contains("scheduler sed"), "{err}");
    s.scheduler = Scheduler::Rr;
    s.backends[0].addr = ip("2001:db8::1");
    let err = dry
        .apply(&DesiredState {
            services: vec![s],
            snat: vec![],
        })
        .unwrap_err();
    assert!(err.to_string().contains("same family"), "{err}");
    assert!(dry.applied().is_none());
}

/// A server thread answering "<name> <peer address>" to each connection.
struct PeerServer {
    stop: Arc<AtomicBool>,
}

impl PeerServer {
    fn start(host: &Host, addr: SocketAddr, name: &str) -> PeerServer {
        let listener: TcpListener = host.tcp_listen(addr).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, name) = (Arc::clone(&stop), name.to_owned());
        thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, peer)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = write!(s, "{name} {}", peer.ip());
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        PeerServer { stop }
    }
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn fetch(client: &Host) -> (String, String) {
    let mut s = client
        .tcp_connect("198.18.0.100:80".parse().unwrap(), Duration::from_secs(5))
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let mut it = out.split_whitespace();
    (
        it.next().unwrap_or("").to_owned(),
        it.next().unwrap_or("").to_owned(),
    )
}

fn two_arm_with_vips() -> Lab {
    let lab = Lab::two_arm().unwrap();
    let lb = &lab["lb1"];
    lb.add_address("eth0", Prefix::new(ip("198.18.0.100"), 24))
        .unwrap();
    lb.add_address("eth1", Prefix::new(ip("198.18.1.100"), 24))
        .unwrap();
    lb.add_address("eth1", Prefix::new(ip("198.18.1.101"), 24))
        .unwrap();
    lab
}

#[test]
fn end_to_end_balancing_and_snat() {
    if !integration::have_root("end_to_end_balancing_and_snat") {
        return;
    }
    let lab = two_arm_with_vips();
    let _s1 = PeerServer::start(&lab["srv1"], "198.18.1.21:80".parse().unwrap(), "srv1");
    let _s2 = PeerServer::start(&lab["srv2"], "198.18.1.22:80".parse().unwrap(), "srv2");
    let mut nft = backend_in(&lab["lb1"]);
    let snat = vec![snat_web(SnatSource::Address(ip("198.18.1.100")))];
    let client = &lab["client"];

    nft.apply(&DesiredState {
        services: vec![web(Scheduler::Rr, 1, 1)],
        snat: snat.clone(),
    })
    .unwrap();
    let listing = lab["lb1"]
        .exec_ok(&["nft", "list", "chain", "inet", "lbsuite", "lb_snat"])
        .unwrap();
    println!("{listing}");
    let replies: Vec<(String, String)> = (0..10).map(|_| fetch(client)).collect();
    println!("rr replies: {replies:?}");
    for pair in replies.windows(2) {
        assert_ne!(pair[0].0, pair[1].0, "rr alternates: {replies:?}");
    }
    assert!(
        replies.iter().all(|(_, peer)| peer == "198.18.1.100"),
        "servers see the SNAT address: {replies:?}"
    );
    let counters = nft.counters().unwrap();
    println!("counters after 10 rr connections: {counters:?}");
    assert_eq!(counters.iter().map(|c| c.connections).sum::<u64>(), 10);
    assert!(counters
        .iter()
        .all(|c| c.connections == 5 && c.packets.unwrap_or(0) > 0));

    // The default counts connections only (no per-packet lookup), in its nat chain;
    // the connection counters carry on across the change (same set).
    nft.set_counting(Counting::Connections);
    nft.apply(&DesiredState {
        services: vec![web(Scheduler::Rr, 1, 1)],
        snat: snat.clone(),
    })
    .unwrap();
    for _ in 0..4 {
        fetch(client);
    }
    let counters = nft.counters().unwrap();
    println!("counters after 4 more rr connections, connections only: {counters:?}");
    assert!(counters
        .iter()
        .all(|c| c.connections == 5 + 2 && c.packets.is_none()));

    nft.apply(&DesiredState {
        services: vec![web(Scheduler::Wrr, 3, 1)],
        snat: snat.clone(),
    })
    .unwrap();
    let n = 400;
    let srv1 = (0..n).filter(|_| fetch(client).0 == "srv1").count();
    let share = srv1 as f64 / n as f64;
    println!("wrr 3:1 over {n} connections: srv1 {srv1} ({share:.3})");
    assert!((share - 0.75).abs() <= 0.075, "srv1 share {share}");

    for sched in [Scheduler::Sh, Scheduler::Mh] {
        nft.apply(&DesiredState {
            services: vec![web(sched, 1, 1)],
            snat: snat.clone(),
        })
        .unwrap();
        let seen: std::collections::BTreeSet<String> = (0..20).map(|_| fetch(client).0).collect();
        println!("{sched}: one client reached {seen:?}");
        assert_eq!(seen.len(), 1, "{sched} keeps one client on one server");
    }
}

/// Opens up to `n` connections through the VIP and keeps them; returns how many got up.
fn hold_connections(client: &Host, n: usize) -> Vec<std::net::TcpStream> {
    let addr: SocketAddr = "198.18.0.100:80".parse().unwrap();
    (0..n)
        .filter_map(|_| client.tcp_connect(addr, Duration::from_millis(700)).ok())
        .collect()
}

#[test]
fn snat_pool_lets_more_connections_through() {
    if !integration::have_root("snat_pool_lets_more_connections_through") {
        return;
    }
    let lab = two_arm_with_vips();
    // Connections are held, never accepted: the backlog completes the handshakes.
    let _listener = lab["srv1"]
        .tcp_listen("198.18.1.21:80".parse().unwrap())
        .unwrap();
    let one_server = Service {
        backends: vec![backend("srv1", "198.18.1.21", 1)],
        ..web(Scheduler::Rr, 1, 1)
    };
    let mut nft = backend_in(&lab["lb1"]);
    let client = &lab["client"];

    let single = SnatSource::Pool(vec![(ip("198.18.1.100"), Some((20000, 20003)))]);
    nft.apply(&DesiredState {
        services: vec![one_server.clone()],
        snat: vec![snat_web(single)],
    })
    .unwrap();
    let held_single = hold_connections(client, 10);
    println!(
        "1 address x 4 ports: {} of 10 concurrent connections",
        held_single.len()
    );
    assert_eq!(held_single.len(), 4);
    drop(held_single);

    // Fresh client ports and a second address: the old mappings stay in conntrack,
    // the new address brings 4 more ports.
    let pool = SnatSource::Pool(vec![
        (ip("198.18.1.100"), Some((20004, 20007))),
        (ip("198.18.1.101"), Some((20004, 20007))),
    ]);
    nft.apply(&DesiredState {
        services: vec![one_server],
        snat: vec![snat_web(pool)],
    })
    .unwrap();
    let held_pool = hold_connections(client, 10);
    println!(
        "2 addresses x 4 ports: {} of 10 concurrent connections",
        held_pool.len()
    );
    assert_eq!(held_pool.len(), 8);
}

/// Connects to `addr` through lb1 and returns the server's name.
fn fetch_from(client: &Host, addr: &str) -> String {
    let mut s = client
        .tcp_connect(addr.parse().unwrap(), Duration::from_secs(5))
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_whitespace().next().unwrap_or("").to_owned()
}

#[test]
fn round_robin_advances_only_on_its_own_services() {
    if !integration::have_root("round_robin_advances_only_on_its_own_services") {
        return;
    }
    let lab = two_arm_with_vips();
    let (client, lb) = (&lab["client"], &lab["lb1"]);
    lb.add_address("eth0", Prefix::new(ip("198.18.0.101"), 24))
        .unwrap();
    // Routed connections to the servers' own addresses go through lb1 both ways.
    client
        .add_route(Prefix::new(ip("198.18.1.0"), 24), ip("198.18.0.11"))
        .unwrap();
    for srv in ["srv1", "srv2"] {
        lab[srv]
            .ip(&["route", "replace", "198.18.0.0/24", "via", "198.18.1.11"])
            .unwrap();
    }
    let _s1 = PeerServer::start(&lab["srv1"], "198.18.1.21:80".parse().unwrap(), "srv1");
    let _s2 = PeerServer::start(&lab["srv2"], "198.18.1.22:80".parse().unwrap(), "srv2");
    let _s1b = PeerServer::start(&lab["srv1"], "198.18.1.21:81".parse().unwrap(), "srv1b");
    // A second rr service with three slots (srv1, srv2, and srv1b: srv1's port 81).
    let mut three = web(Scheduler::Rr, 1, 1);
    three.name = "three".into();
    three.vip = ip("198.18.0.101");
    three.backends = vec![
        backend("srv1", "198.18.1.21", 1),
        backend("srv2", "198.18.1.22", 1),
        Backend {
            port: Some(81),
            ..backend("srv1b", "198.18.1.21", 1)
        },
    ];
    // A twin of web (port 81, the same two servers): the same slot count, so that
    // before each service had a counter of its own, web and twin shared one and
    // strictly interleaved connections gave each the same server every time.
    let mut twin = web(Scheduler::Rr, 1, 1);
    twin.name = "twin".into();
    twin.ports = PortSpec::Single(81);
    let mut nft = backend_counting(lb, Counting::Connections);
    nft.apply(&DesiredState {
        services: vec![web(Scheduler::Rr, 1, 1), three, twin],
        snat: vec![
            snat_web(SnatSource::Address(ip("198.18.1.100"))),
            SnatRule {
                name: "three-out".into(),
                orig_daddr: ip("198.18.0.101"),
                ..snat_web(SnatSource::Address(ip("198.18.1.101")))
            },
        ],
    })
    .unwrap();
    let listing = lb
        .exec_ok(&["nft", "list", "table", "inet", "lbsuite"])
        .unwrap();
    println!("{listing}");
    // Sets say what they hold; elements name their service (and backend).
    assert!(
        listing.contains("comment \"round robin: each service's chain, with its counter\""),
        "{listing}"
    );
    assert!(listing.contains("comment \"DNAT: slots of the services of bucket "));
    assert!(listing.contains("comment \"three srv1b\""), "{listing}");
    assert!(
        listing.contains("chain svc_tcp_198.18.0.101_80 {"),
        "a chain per service: {listing}"
    );
    for (set, comment) in [
        ("svc4", "\"web\""),
        ("svc4", "\"three\""),
        ("conn4", "\"web srv2\""),
    ] {
        let set_listing = lb
            .exec_ok(&["nft", "list", "set", "inet", "lbsuite", set])
            .or_else(|_| lb.exec_ok(&["nft", "list", "map", "inet", "lbsuite", set]))
            .unwrap();
        assert!(
            set_listing.contains(&format!("comment {comment}")),
            "{set}: {set_listing}"
        );
    }

    // A VIP request, then a routed connection that is for no service, in turn.
    let mut vip = Vec::new();
    for _ in 0..6 {
        vip.push(fetch_from(client, "198.18.0.100:80"));
        assert_eq!(fetch_from(client, "198.18.1.21:80"), "srv1");
    }
    println!("VIP replies between routed connections: {vip:?}");
    for pair in vip.windows(2) {
        assert_ne!(pair[0], pair[1], "rr alternates: {vip:?}");
    }

    // Two services interleaved: each walks its own servers in turn.
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..6 {
        a.push(fetch_from(client, "198.18.0.100:80"));
        b.push(fetch_from(client, "198.18.0.101:80"));
    }
    println!("interleaved: web {a:?}, three {b:?}");
    for pair in a.windows(2) {
        assert_ne!(pair[0], pair[1], "web alternates: {a:?}");
    }
    // three walks its three servers: each once in every three connections.
    for w in b.windows(3) {
        let distinct: std::collections::BTreeSet<&String> = w.iter().collect();
        assert_eq!(distinct.len(), 3, "three takes its servers in turn: {b:?}");
    }

    // Two services of the same slot count, interleaved: A, B, A, B, ... Each
    // alternates exactly (a shared counter would give each one server only).
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..8 {
        a.push(fetch_from(client, "198.18.0.100:80"));
        b.push(fetch_from(client, "198.18.0.100:81"));
    }
    println!("interleaved, same slot count: web {a:?}, twin {b:?}");
    for (name, seq) in [("web", &a), ("twin", &b)] {
        for pair in seq.windows(2) {
            assert_ne!(pair[0], pair[1], "{name} alternates: {seq:?}");
        }
    }
}

/// The persist set's elements, as `nft list set` prints them (empty: none).
fn remembered(lb: &Host) -> String {
    let out = lb
        .exec_ok(&["nft", "list", "set", "inet", "lbsuite", "persist4_tcp"])
        .unwrap();
    out.split_once("elements = {")
        .map(|(_, e)| e.split('}').next().unwrap_or("").trim().to_owned())
        .unwrap_or_default()
}

#[test]
fn persistence_keeps_a_client_on_its_server_until_its_timeout() {
    if !integration::have_root("persistence_keeps_a_client_on_its_server_until_its_timeout") {
        return;
    }
    let lab = two_arm_with_vips();
    let (client, lb) = (&lab["client"], &lab["lb1"]);
    // Routed both ways through lb1: the servers see the client's own address.
    client
        .add_route(Prefix::new(ip("198.18.1.0"), 24), ip("198.18.0.11"))
        .unwrap();
    for srv in ["srv1", "srv2"] {
        lab[srv]
            .ip(&["route", "replace", "198.18.0.0/24", "via", "198.18.1.11"])
            .unwrap();
    }
    let _s1 = PeerServer::start(&lab["srv1"], "198.18.1.21:80".parse().unwrap(), "srv1");
    let _s2 = PeerServer::start(&lab["srv2"], "198.18.1.22:80".parse().unwrap(), "srv2");
    let _s1b = PeerServer::start(&lab["srv1"], "198.18.1.21:81".parse().unwrap(), "srv1b");
    let timeout_s = 2;
    let mut sticky = web(Scheduler::Rr, 1, 1);
    sticky.persistence = Some(Persistence {
        timeout_s,
        prefix_len: 32,
    });
    let mut state = DesiredState {
        services: vec![sticky],
        snat: vec![],
    };
    let mut nft = backend_counting(lb, Counting::Connections);
    nft.apply(&state).unwrap();
    println!(
        "{}",
        lb.exec_ok(&["nft", "list", "table", "inet", "lbsuite"])
            .unwrap()
    );
    let vip = "198.18.0.100:80";
    // Round robin would alternate; the client keeps the server it got first.
    let first = fetch_from(client, vip);
    let got: Vec<String> = (0..5).map(|_| fetch_from(client, vip)).collect();
    println!(
        "first {first}, then {got:?}; remembered: {}",
        remembered(lb)
    );
    assert!(got.iter().all(|g| *g == first), "{first} then {got:?}");
    assert!(remembered(lb).contains("198.18.0.10"), "{}", remembered(lb));

    // Whatever the server set does meanwhile: a server added, the other's weight up.
    let other = if first == "srv1" { 1 } else { 0 };
    state.services[0].backends[other].weight = 3;
    state.services[0].backends.push(Backend {
        port: Some(81),
        ..backend("srv1b", "198.18.1.21", 2)
    });
    nft.apply(&state).unwrap();
    let got: Vec<String> = (0..6).map(|_| fetch_from(client, vip)).collect();
    println!("after the server set changed: {got:?}");
    assert!(got.iter().all(|g| *g == first), "{first} then {got:?}");

    // For timeout_s after its last connection: connections 1 s apart for twice the
    // timeout keep it (each restarts the timeout).
    for _ in 0..(2 * timeout_s) {
        thread::sleep(Duration::from_secs(1));
        assert_eq!(fetch_from(client, vip), first);
    }
    // Its server drained: the client gets another one, and keeps that.
    let own = if first == "srv1" { 0 } else { 1 };
    state.services[0].backends[own].weight = 0;
    nft.apply(&state).unwrap();
    let next = fetch_from(client, vip);
    let got: Vec<String> = (0..4).map(|_| fetch_from(client, vip)).collect();
    println!("{first} drained: {next}, then {got:?}");
    assert_ne!(next, first);
    assert!(got.iter().all(|g| *g == next), "{next} then {got:?}");

    // Idle past the timeout: forgotten (the kernel removes the elements).
    thread::sleep(Duration::from_millis(u64::from(timeout_s) * 1000 + 1500));
    assert_eq!(remembered(lb), "", "every element expired");
    // An apply leaves the kernel's elements alone and has nothing to change.
    let again = fetch_from(client, vip);
    assert!(remembered(lb).contains("198.18.0.10"));
    let r = nft.apply(&state).unwrap();
    assert_eq!(r.changes(), 0, "{r:?}");
    assert!(remembered(lb).contains("198.18.0.10"), "{again}");
}

#[test]
fn a_thousand_snat_rules_are_one_map_lookup() {
    if !integration::have_root("a_thousand_snat_rules_are_one_map_lookup") {
        return;
    }
    let lab = two_arm_with_vips();
    let (client, lb) = (&lab["client"], &lab["lb1"]);
    let _s1 = PeerServer::start(&lab["srv1"], "198.18.1.21:80".parse().unwrap(), "srv1");
    let one = Service {
        backends: vec![backend("srv1", "198.18.1.21", 1)],
        ..web(Scheduler::Rr, 1, 1)
    };
    // 1,000 rules for other VIPs before the service's own (the last one).
    let mut snat: Vec<SnatRule> = (0..1000)
        .map(|i| SnatRule {
            name: format!("other{i}"),
            orig_daddr: IpAddr::from([198, 19, (i / 250) as u8, (i % 250 + 1) as u8]),
            ..snat_web(SnatSource::Address(ip("198.18.1.101")))
        })
        .collect();
    snat.push(snat_web(SnatSource::Address(ip("198.18.1.100"))));
    // Other shapes: a port range without interfaces, an IPv6 rule, a pool.
    snat.push(SnatRule {
        name: "high-ports".into(),
        in_iface: None,
        out_iface: None,
        orig_dports: Some(PortSpec::Range(1024, 2047)),
        ..snat_web(SnatSource::Address(ip("198.18.1.101")))
    });
    snat.push(SnatRule {
        name: "v6".into(),
        protocol: NatProtocol::Any,
        orig_daddr: ip("2001:db8:0:a::100"),
        orig_dports: None,
        ..snat_web(SnatSource::Address(ip("2001:db8:0:b::100")))
    });
    snat.push(SnatRule {
        name: "pool".into(),
        orig_daddr: ip("198.18.0.102"),
        ..snat_web(SnatSource::Pool(vec![(ip("198.18.1.101"), None)]))
    });
    let mut state = DesiredState {
        services: vec![one],
        snat,
    };
    let mut nft = backend_counting(lb, Counting::Connections);
    let r = nft.apply(&state).unwrap();
    println!("first apply: {r:?}");
    let listing = lb
        .exec_ok(&["nft", "list", "chain", "inet", "lbsuite", "lb_snat"])
        .unwrap();
    println!("{listing}");
    let rules: Vec<String> = nft
        .read_back()
        .unwrap()
        .nft
        .rules
        .into_iter()
        .filter(|(c, _)| c == "lb_snat")
        .map(|(_, r)| r)
        .collect();
    assert_eq!(
        rules.len(),
        4,
        "one rule per map and one for the pool: {rules:?}"
    );
    let objs = objects(lb, "lbsuite");
    for m in ["snat4_1", "snat4_2", "snat6_3", "snat_pool"] {
        assert!(objs["map"].contains(&m.to_owned()), "{m}: {objs:?}");
    }
    assert_eq!(
        fetch(client).1,
        "198.18.1.100",
        "the service's own rule applies"
    );

    // One rule's address changes: one element out, one in, no rule touched.
    state.snat[1000].source = SnatSource::Address(ip("198.18.1.101"));
    let r = nft.apply(&state).unwrap();
    println!("one address changed: {r:?}");
    assert_eq!(
        (
            r.kernel.nft.elements_added,
            r.kernel.nft.elements_removed,
            r.kernel.nft.rules_added,
            r.kernel.nft.rules_removed
        ),
        (1, 1, 0, 0)
    );
    assert_eq!(fetch(client).1, "198.18.1.101");
    let map = lb
        .exec_ok(&["nft", "list", "map", "inet", "lbsuite", "snat4_1"])
        .unwrap();
    assert!(
        map.contains("198.18.0.100 . 80 comment \"web-out\" : 198.18.1.101"),
        "elements name their SNAT rule: {}",
        map.lines()
            .filter(|l| l.contains("198.18.0.100"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // A restarted lbd adopts the table as it is; nothing drifts.
    let mut again = backend_counting(lb, Counting::Connections);
    let r = again.apply(&state).unwrap();
    assert!(r.reread);
    assert_eq!(r.changes(), 0, "adoption changes nothing: {r:?}");
    assert!(again.verify(&state).unwrap().is_empty());
    // Someone deletes an element: verify names the map, apply puts it back.
    lb.exec_ok(&[
        "nft",
        "delete element inet lbsuite snat4_1 { tcp . \"eth0\" . \"eth1\" . 198.18.0.100 . 80 }",
    ])
    .unwrap();
    let drift = again.verify(&state).unwrap();
    println!("after a foreign delete: {drift:?}");
    assert!(format!("{drift:?}").contains("snat4_1"), "{drift:?}");
    assert_eq!(again.apply(&state).unwrap().kernel.nft.elements_added, 1);
    assert_eq!(fetch(client).1, "198.18.1.101");
}
