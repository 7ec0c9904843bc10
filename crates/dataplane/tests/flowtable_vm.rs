//! nftables' software flowtable in front of the nft backend's ruleset: run inside
//! the VM by integration/vm/flowtable-bench.sh (`--ignored`; this machine's kernel
//! has no nf_flow_table). The lab is `integration::Lab::two_arm()` (client, lb1,
//! lb2, srv1, srv2); lb1 carries the nft backend's table for one round-robin service
//! with its SNAT rule, and small Rust servers answer each request (a 4-byte length)
//! with that many bytes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use dataplane::nft::flowtable::Flowtable;
use dataplane::{Dataplane, NftBackend, Scheduler};
use integration::{Host, Lab, Prefix};
use vm_common::{ip, note, web_state, SNAT_VIP, VIP};

mod vm_common;

/// conntrack's IPS_OFFLOAD: the flow is in a flowtable.
const OFFLOAD: u32 = 1 << 14;

fn vip() -> SocketAddr {
    SocketAddr::new(ip(VIP), 80)
}

/// Answers each request (a 4-byte big-endian length) with that many bytes.
fn sized_server(host: &Host, addr: SocketAddr) {
    let listener = host.tcp_listen(addr).unwrap();
    thread::spawn(move || {
        for s in listener.incoming().flatten() {
            thread::spawn(move || serve(s));
        }
    });
}

fn serve(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let body = vec![b'x'; 256 * 1024];
    let mut req = [0u8; 4];
    while s.read_exact(&mut req).is_ok() {
        let mut left = u32::from_be_bytes(req) as usize;
        while left > 0 {
            let n = left.min(body.len());
            if s.write_all(&body[..n]).is_err() {
                return;
            }
            left -= n;
        }
    }
}

/// One request of `size` bytes on `s`.
fn request(s: &mut TcpStream, size: u32, buf: &mut [u8]) -> std::io::Result<()> {
    s.write_all(&size.to_be_bytes())?;
    let mut left = size as usize;
    while left > 0 {
        let want = left.min(buf.len());
        let n = s.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        left -= n;
    }
    Ok(())
}

/// Requests of `size` bytes on `conns` keep-alive connections for `secs`:
/// (requests per second, bytes per second, lb's entries to the VIP offloaded and all,
/// half-way through).
fn load(
    client: &Host,
    lb: &Host,
    conns: usize,
    size: u32,
    secs: f64,
) -> (f64, f64, (usize, usize)) {
    let streams: Vec<TcpStream> = (0..conns)
        .map(|_| {
            let s = client.tcp_connect(vip(), Duration::from_secs(10)).unwrap();
            s.set_nodelay(true).unwrap();
            s
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let workers: Vec<_> = streams
        .into_iter()
        .map(|mut s| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut buf = vec![0u8; 256 * 1024];
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    request(&mut s, size, &mut buf).unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    thread::sleep(Duration::from_secs_f64(secs / 2.0));
    let seen = offloaded(lb);
    thread::sleep(Duration::from_secs_f64(secs / 2.0));
    stop.store(true, Ordering::Relaxed);
    let n: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    let t = start.elapsed().as_secs_f64();
    (n as f64 / t, n as f64 * f64::from(size) / t, seen)
}

fn devices() -> Vec<String> {
    vec!["eth0".into(), "eth1".into()]
}

/// The flowtable on `lb` over eth0 and eth1 (lbd's module), or none.
fn flowtable(lb: &Host, on: bool) {
    lb.run_in(|| {
        let ft = Flowtable::new("lbsuite").unwrap();
        if on {
            ft.apply(&devices()).unwrap();
        } else {
            ft.remove().unwrap();
        }
    })
    .unwrap();
}

/// How many of lb1's conntrack entries to the VIP are offloaded, of how many.
fn offloaded(lb: &Host) -> (usize, usize) {
    let all = entries(lb);
    let off = all.iter().filter(|e| e.status.has(OFFLOAD)).count();
    (off, all.len())
}

/// What lbd's sync selects: to the VIP, or source-NATed to the server-side VIP.
fn selection() -> ctsync::FlowFilter {
    ctsync::FlowFilter {
        orig_dst: vec![ip(VIP)],
        reply_dst: vec![ip(SNAT_VIP)],
        ..ctsync::FlowFilter::default()
    }
}

/// `lb`'s conntrack entries of the service.
fn entries(lb: &Host) -> Vec<ctsync::Entry> {
    lb.run_in(|| ctsync::Conntrack::open().and_then(|mut c| c.dump(&selection())))
        .unwrap()
        .unwrap()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// lb1 and lb2 balancing with the nft backend, the VIPs on lb1, servers on srv1 and
/// srv2.
fn lab_with_lb1_active() -> Lab {
    let lab = Lab::two_arm().unwrap();
    let lb1 = &lab["lb1"];
    lb1.add_address("eth0", Prefix::new(ip(VIP), 24)).unwrap();
    lb1.add_address("eth1", Prefix::new(ip(SNAT_VIP), 24))
        .unwrap();
    for lb in ["lb1", "lb2"] {
        let mut nft = lab[lb]
            .run_in(|| NftBackend::new("lbsuite"))
            .unwrap()
            .unwrap();
        nft.apply(&web_state(Scheduler::Rr, [1, 1])).unwrap();
    }
    sized_server(&lab["srv1"], "198.18.1.21:80".parse().unwrap());
    sized_server(&lab["srv2"], "198.18.1.22:80".parse().unwrap());
    lab
}

/// Rounds and seconds per figure: integration/vm/flowtable-bench.sh puts
/// `flowtable-bench.conf` (`ROUNDS SECS`) beside the test binary; without it (the VM
/// stage, ipvs-tests.sh) one short round, which still checks the offload.
fn bench_settings() -> (usize, f64) {
    let conf = std::env::current_exe()
        .ok()
        .and_then(|p| std::fs::read_to_string(p.with_file_name("flowtable-bench.conf")).ok());
    let parsed = conf.as_deref().and_then(|c| {
        let mut w = c.split_whitespace();
        Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?))
    });
    parsed.unwrap_or((1, 1.0))
}

/// Keep-alive request rate and 100 KiB transfer throughput through lb1, without and
/// with the flowtable, interleaved (the order alternates), medians of the rounds.
#[test]
#[ignore = "needs nf_flow_table: run in the VM"]
fn flowtable_bench_keepalive_and_100k_with_and_without() {
    let (rounds, secs) = bench_settings();
    let conns = 8;
    let lab = lab_with_lb1_active();
    let (client, lb1) = (&lab["client"], &lab["lb1"]);
    // [off, on] per figure.
    let mut rps = [Vec::new(), Vec::new()];
    let mut bulk = [Vec::new(), Vec::new()];
    let mut seen = [(0, 0), (0, 0)];
    for r in 0..rounds {
        let order = if r % 2 == 0 { [0, 1] } else { [1, 0] };
        for on in order {
            flowtable(lb1, on == 1);
            let (k, _, s) = load(client, lb1, conns, 100, secs);
            seen[on] = s;
            let (_, b, _) = load(client, lb1, conns, 100 * 1024, secs);
            rps[on].push(k);
            bulk[on].push(b / (1024.0 * 1024.0));
            note(&format!(
                "round {r} flowtable {}: keep-alive {k:.0} req/s, 100 KiB {:.1} MiB/s, offloaded {}/{} entries",
                if on == 1 { "on " } else { "off" },
                b / (1024.0 * 1024.0),
                seen[on].0,
                seen[on].1
            ));
        }
    }
    flowtable(lb1, false);
    let (k0, k1) = (median(&mut rps[0]), median(&mut rps[1]));
    let (b0, b1) = (median(&mut bulk[0]), median(&mut bulk[1]));
    note(&format!(
        "medians of {rounds} ({conns} connections, {secs} s each): keep-alive {k0:.0} -> {k1:.0} req/s ({:.2}x), 100 KiB {b0:.1} -> {b1:.1} MiB/s ({:.2}x)",
        k1 / k0,
        b1 / b0
    ));
    assert_eq!(seen[0].0, 0, "no flowtable, no offloaded entry");
    assert!(
        seen[1].0 > 0,
        "flowtable on: entries offloaded {:?}",
        seen[1]
    );
    lab.down().unwrap();
}

fn port(s: &TcpStream) -> u16 {
    s.local_addr().unwrap().port()
}

/// The entry of the client's connection from `port`.
fn entry_of(lb: &Host, port: u16) -> Option<ctsync::Entry> {
    entries(lb)
        .into_iter()
        .find(|e| e.orig.src_port() == Some(port))
}

fn describe(e: &ctsync::Entry) -> String {
    format!(
        "tcp {:?}, timeout {:?} s, status {:#x}{}",
        e.tcp.map(|t| t.state),
        e.timeout,
        e.status.0,
        if e.status.has(OFFLOAD) {
            " (OFFLOAD)"
        } else {
            ""
        }
    )
}

/// Events until `idle` passes without one: (kind, TCP state, timeout) of the
/// connection from `port`.
fn drain(events: &mut ctsync::Events, port: u16, keep: &mut Vec<String>) -> Vec<String> {
    let mut seen = Vec::new();
    for ev in events.by_ref() {
        let Ok(ev) = ev else { break };
        if ev.entry.orig.src_port() == Some(port) {
            seen.push(format!(
                "{:?} {:?} {:?}",
                ev.kind,
                ev.entry.tcp.map(|t| t.state),
                ev.entry.timeout
            ));
            keep.push(ctsync::encode_line(&ev));
        }
    }
    seen
}

/// What the connection-state sync sees of offloaded connections: the events lb1's
/// conntrack sends while a connection is offloaded, at its end, the entries lb2
/// commits from them, and a takeover by lb2 (which has the flowtable too).
#[test]
#[ignore = "needs nf_flow_table: run in the VM"]
fn flowtable_sync_events_and_takeover_of_offloaded_connections() {
    let lab = lab_with_lb1_active();
    let (client, lb1, lb2) = (&lab["client"], &lab["lb1"], &lab["lb2"]);
    flowtable(lb1, true);
    flowtable(lb2, true);
    // What is there is read back, and asked for again it is not rewritten.
    lb1.run_in(|| {
        let ft = Flowtable::new("lbsuite").unwrap();
        assert_eq!(ft.current().unwrap(), Some(devices()));
        assert!(!ft.ensure(&devices()).unwrap());
        assert!(!ft.ensure(&["eth1".into(), "eth0".into()]).unwrap());
    })
    .unwrap();
    let listed = lb1
        .exec_ok(&["nft", "list", "table", "inet", "lbsuite_flow"])
        .unwrap();
    assert!(listed.contains("flow add @ft"), "{listed}");
    note(&format!(
        "lb1: {}",
        listed.split_whitespace().collect::<Vec<_>>().join(" ")
    ));
    let mut events = lb1
        .run_in(|| ctsync::subscribe(selection()))
        .unwrap()
        .unwrap();
    events
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();

    let mut buf = vec![0u8; 256 * 1024];
    let mut held = client.tcp_connect(vip(), Duration::from_secs(10)).unwrap();
    let p = port(&held);
    let mut lines = Vec::new();
    request(&mut held, 100, &mut buf).unwrap();
    let setup = drain(&mut events, p, &mut lines);
    note(&format!(
        "events of a connection up to its first reply: {setup:?}"
    ));
    let first = entry_of(lb1, p).unwrap();
    note(&format!("lb1's entry then: {}", describe(&first)));
    // Traffic while offloaded: 200 requests, 100 KiB each.
    for _ in 0..200 {
        request(&mut held, 100 * 1024, &mut buf).unwrap();
    }
    let during = drain(&mut events, p, &mut lines);
    let busy = entry_of(lb1, p).unwrap();
    note(&format!(
        "events during 200 x 100 KiB while offloaded: {during:?}; lb1's entry: {}",
        describe(&busy)
    ));
    assert!(busy.status.has(OFFLOAD), "offloaded: {}", describe(&busy));

    // The backup commits what the events carried.
    let mut store = ctsync::SyncStore::new();
    for l in &lines {
        store.apply(ctsync::decode_line(l).unwrap());
    }
    let mut ct2 = lb2.run_in(ctsync::Conntrack::open).unwrap().unwrap();
    let report = store.commit(&mut ct2).unwrap();
    assert!(report.batch.failed.is_empty(), "{report:?}");
    let on_lb2 = entry_of(lb2, p).unwrap();
    note(&format!("lb2's committed entry: {}", describe(&on_lb2)));
    assert_eq!(on_lb2.reply, busy.reply, "the same NAT mapping on lb2");

    // A connection synced by a dump instead (lbd's full dump to a peer that
    // (re)connects): offloaded entries come without timeout and TCP state from the
    // kernel, and ctsync reads them as established and liberal.
    let mut dumped = client.tcp_connect(vip(), Duration::from_secs(10)).unwrap();
    let pd = port(&dumped);
    request(&mut dumped, 100 * 1024, &mut buf).unwrap();
    let from_dump = entry_of(lb1, pd).unwrap();
    assert!(from_dump.status.has(OFFLOAD), "{}", describe(&from_dump));
    // As the kernel dumps it (ctsync fills the two in): lb2's kernel refuses it.
    let mut raw = from_dump.clone();
    raw.timeout = None;
    raw.tcp = None;
    let refused = ct2.replace_batch(std::slice::from_ref(&raw)).unwrap();
    note(&format!(
        "the same entry without timeout and TCP state, as 6.1 dumps it: lb2 writes {refused:?}"
    ));
    let r = ct2.replace_batch(std::slice::from_ref(&from_dump)).unwrap();
    let on_lb2_dumped = entry_of(lb2, pd).unwrap();
    note(&format!(
        "an offloaded entry as lb1's dump reads: {}; written into lb2 ({r:?}): {}",
        describe(&from_dump),
        describe(&on_lb2_dumped)
    ));
    assert_eq!(r.created, 1, "{r:?}");

    // A connection that ends: its FIN leaves the flowtable, conntrack sees the close.
    let mut closing = client.tcp_connect(vip(), Duration::from_secs(10)).unwrap();
    let pc = port(&closing);
    request(&mut closing, 100 * 1024, &mut buf).unwrap();
    let _ = drain(&mut events, pc, &mut Vec::new());
    let was = entry_of(lb1, pc).unwrap();
    closing.shutdown(std::net::Shutdown::Both).unwrap();
    drop(closing);
    let closed = drain(&mut events, pc, &mut Vec::new());
    let after = entry_of(lb1, pc);
    note(&format!(
        "a connection closed by the client: before {}; events {closed:?}; after {}",
        describe(&was),
        after.as_ref().map_or("gone".into(), describe)
    ));
    assert!(
        !closed.is_empty(),
        "conntrack reports the close of an offloaded connection"
    );

    // Takeover: lb1's cables out, the addresses on lb2.
    lab.set_cable("lb1", "eth0", false).unwrap();
    lab.set_cable("lb1", "eth1", false).unwrap();
    lb2.add_address("eth0", Prefix::new(ip(VIP), 24)).unwrap();
    lb2.add_address("eth1", Prefix::new(ip(SNAT_VIP), 24))
        .unwrap();
    for h in ["client", "srv1", "srv2"] {
        lab[h].exec_ok(&["ip", "neigh", "flush", "all"]).unwrap();
    }
    held.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let t = Instant::now();
    for _ in 0..20 {
        request(&mut held, 100 * 1024, &mut buf).unwrap();
    }
    dumped
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    for _ in 0..20 {
        request(&mut dumped, 100 * 1024, &mut buf).unwrap();
    }
    let now = entry_of(lb2, p).unwrap();
    note(&format!(
        "takeover: 20 x 100 KiB on the connection synced by events and 20 on the one synced by a dump, through lb2, in {:?}; lb2's entry: {}",
        t.elapsed(),
        describe(&now)
    ));
    assert_eq!(now.reply, busy.reply);
    assert!(
        now.status.has(OFFLOAD),
        "offloaded on lb2: {}",
        describe(&now)
    );
    lab.down().unwrap();
}

/// On any kernel: a device that does not exist is named; without nf_flow_table
/// (this machine's kernel) the error says the kernel has no flowtable, and `nft`
/// agrees; with it (the VM) the table is there as documented.
#[test]
fn flowtable_missing_device_or_kernel_support_is_named() {
    if !integration::have_root("flowtable_missing_device_or_kernel_support_is_named") {
        return;
    }
    let lab = Lab::two_arm().unwrap();
    let lb1 = &lab["lb1"];
    let (missing, result) = lb1
        .run_in(|| {
            let ft = Flowtable::new("lbsuite").unwrap();
            assert_eq!(ft.current().unwrap(), None);
            // Nothing there: nothing to remove, no commit.
            ft.remove().unwrap();
            let missing = ft.apply(&["eth0".into(), "nosuch0".into()]);
            let result = ft.apply(&devices());
            (missing.map_err(|e| e.to_string()), result)
        })
        .unwrap();
    match missing {
        Err(e) => assert!(e.contains("nosuch0 does not exist"), "{e}"),
        Ok(()) => panic!("a flowtable on a missing device"),
    }
    match result {
        Ok(()) => {
            let listed = lb1
                .exec_ok(&["nft", "list", "table", "inet", "lbsuite_flow"])
                .unwrap();
            assert!(listed.contains("devices = { eth0, eth1 }"), "{listed}");
            assert!(
                listed.contains("ct state established ct status dnat flow add @ft"),
                "{listed}"
            );
            note("this kernel has the flowtable");
        }
        Err(e @ dataplane::nft::flowtable::FlowtableError::Unsupported { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("the kernel has no nftables flowtable"),
                "{text}"
            );
            // The nft CLI is refused the same.
            let path = std::env::temp_dir().join(format!("ft-{}.nft", lb1.netns()));
            std::fs::write(
                &path,
                "table inet lbsuite_probe {\n flowtable ft {\n hook ingress priority 0\n devices = { eth0 }\n }\n}\n",
            )
            .unwrap();
            let out = lb1.exec(&["nft", "-f", path.to_str().unwrap()]).unwrap();
            let _ = std::fs::remove_file(&path);
            assert!(
                !out.status.success(),
                "nft made a flowtable where lbd could not"
            );
            println!("{text}");
        }
        Err(e) => panic!("{e}"),
    }
    lab.down().unwrap();
}
