//! Connection-state sync in network namespaces: a balanced (DNAT + pool SNAT) TCP
//! connection on lb1 is streamed through events, serialized, committed into lb2's
//! kernel, and keeps working through lb2 once the addresses move there.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use ctsync::{
    decode_line, encode_line, subscribe, Conntrack, FlowFilter, Status, SyncStore, TcpState,
};
use integration::{Host, Lab, Prefix};

const VIP: &str = "198.18.0.100";
const SNAT: &str = "198.18.1.100";
const SERVER: &str = "198.18.1.21:80";
const RULES: &str = "table ip ctsync_test {
  chain pre { type nat hook prerouting priority -100; ip daddr 198.18.0.100 tcp dport 80 dnat to 198.18.1.21:80; }
  chain post { type nat hook postrouting priority 100; ip daddr 198.18.1.21 tcp dport 80 snat to 198.18.1.100:20000-29999 random; }
}
";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn load_rules(host: &Host) {
    // The namespace's name is unique to the lab: tests running side by side do not
    // share the file.
    let path = std::env::temp_dir().join(format!("ctsync-{}.nft", host.netns()));
    std::fs::write(&path, RULES).unwrap();
    let out = host.exec_ok(&["nft", "-f", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    out.unwrap();
}

/// Echoes every byte back on each accepted connection.
fn echo_server(host: &Host) {
    let listener = host.tcp_listen(SERVER.parse().unwrap()).unwrap();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
}

/// Sends `msg` and returns what came back (an error on reset or timeout).
fn echo(s: &mut TcpStream, msg: &str) -> std::io::Result<String> {
    s.write_all(msg.as_bytes())?;
    let mut buf = vec![0u8; msg.len()];
    s.read_exact(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The flows of the test's service: to the VIP, or source-NATed to the SNAT address.
fn selection() -> FlowFilter {
    FlowFilter {
        orig_dst: vec![ip(VIP)],
        reply_dst: vec![ip(SNAT)],
        ..FlowFilter::default()
    }
}

/// `host`'s conntrack events of [`selection`], with a read timeout.
fn subscribed(host: &Host, timeout: Duration) -> ctsync::Events {
    let mut events = host.run_in(|| subscribe(selection())).unwrap().unwrap();
    events.set_read_timeout(Some(timeout)).unwrap();
    events
}

/// Moves the VIP and the SNAT address from `from` to `to`, and makes the client and
/// the server re-resolve them.
fn move_addresses(lab: &Lab, from: &str, to: &str) {
    let prefix = |a: &str| Prefix::new(ip(a), 24);
    lab[from].del_address("eth0", prefix(VIP)).unwrap();
    lab[from].del_address("eth1", prefix(SNAT)).unwrap();
    lab[to].add_address("eth0", prefix(VIP)).unwrap();
    lab[to].add_address("eth1", prefix(SNAT)).unwrap();
    for h in ["client", "srv1"] {
        lab[h].exec_ok(&["ip", "neigh", "flush", "all"]).unwrap();
    }
}

/// The two-arm lab with lb1 active: the VIP and the SNAT address on lb1, the
/// service's rules on both nodes, srv1 echoing.
fn lb1_active() -> Lab {
    let lab = Lab::two_arm().unwrap();
    lab["lb1"]
        .add_address("eth0", Prefix::new(ip(VIP), 24))
        .unwrap();
    lab["lb1"]
        .add_address("eth1", Prefix::new(ip(SNAT), 24))
        .unwrap();
    load_rules(&lab["lb1"]);
    load_rules(&lab["lb2"]);
    echo_server(&lab["srv1"]);
    lab
}

/// Failover by hand: lb1 loses its cables, lb2 takes the addresses, the client and
/// the server re-resolve them.
fn crash_of_lb1(lab: &Lab) {
    lab.set_cable("lb1", "eth0", false).unwrap();
    lab.set_cable("lb1", "eth1", false).unwrap();
    lab["lb2"]
        .add_address("eth0", Prefix::new(ip(VIP), 24))
        .unwrap();
    lab["lb2"]
        .add_address("eth1", Prefix::new(ip(SNAT), 24))
        .unwrap();
    for h in ["client", "srv1"] {
        lab[h].exec_ok(&["ip", "neigh", "flush", "all"]).unwrap();
    }
}

/// `node`'s entries of the test's service.
fn entries_of(host: &Host) -> Vec<ctsync::Entry> {
    host.run_in(|| Conntrack::open().and_then(|mut c| c.dump(&selection())))
        .unwrap()
        .unwrap()
}

/// A connection goes out to lb2 and comes back to lb1, which still holds its own
/// entry from before: written with `replace`, lb2's entry takes its place (and the
/// stale TCP window with it) and the connection goes on; refreshed in place, as an
/// update does, the stale window makes the client's next segments INVALID on lb1.
fn out_and_back(replace: bool) -> std::io::Result<String> {
    let lab = lb1_active();
    let (client, lb1, lb2) = (&lab["client"], &lab["lb1"], &lab["lb2"]);
    let vip: SocketAddr = format!("{VIP}:80").parse().unwrap();
    let mut held = client.tcp_connect(vip, Duration::from_secs(10)).unwrap();
    held.set_read_timeout(Some(Duration::from_secs(4))).unwrap();
    assert_eq!(echo(&mut held, "one").unwrap(), "one");

    // Out: lb1's entry goes into lb2, the addresses follow; the window moves on there.
    let mut ct2 = lb2.run_in(Conntrack::open).unwrap().unwrap();
    let r = ct2.replace_batch(&entries_of(lb1)).unwrap();
    assert_eq!(r.created, 1, "{r:?}");
    move_addresses(&lab, "lb1", "lb2");
    let big = "x".repeat(60_000);
    // Segments far larger than 64 KiB of unscaled window: the entry written into
    // lb2 must carry the window scales.
    for _ in 0..20 {
        assert_eq!(echo(&mut held, &big).unwrap().len(), big.len());
    }
    // Back: lb2's entry goes into lb1, which still holds its own from before.
    assert_eq!(entries_of(lb1).len(), 1, "lb1 kept its own entry");
    let mut ct1 = lb1.run_in(Conntrack::open).unwrap().unwrap();
    let from_lb2 = entries_of(lb2);
    if replace {
        let r = ct1.replace_batch(&from_lb2).unwrap();
        assert_eq!((r.created, r.replaced), (0, 1), "{r:?}");
    } else {
        let r = ct1.insert_batch(&from_lb2).unwrap();
        assert_eq!((r.created, r.updated), (0, 1), "{r:?}");
    }
    move_addresses(&lab, "lb2", "lb1");
    echo(&mut held, &big).and_then(|_| echo(&mut held, "three"))
}

#[test]
fn out_and_back_the_peers_entry_replaces_the_stale_one() {
    if !integration::have_root("out_and_back_the_peers_entry_replaces_the_stale_one") {
        return;
    }
    assert_eq!(out_and_back(true).unwrap(), "three");
}

#[test]
fn out_and_back_an_entry_refreshed_in_place_breaks_the_connection() {
    if !integration::have_root("out_and_back_an_entry_refreshed_in_place_breaks_the_connection") {
        return;
    }
    let answer = out_and_back(false);
    println!("refreshed in place: {answer:?}");
    assert!(
        answer.is_err(),
        "the stale window should break it: {answer:?}"
    );
}

/// Events caused by the writer socket's own requests are not reported to a
/// subscriber that ignores its port id; the kernel's own (and other sockets') are.
#[test]
fn events_of_the_own_writes_are_not_reported() {
    if !integration::have_root("events_of_the_own_writes_are_not_reported") {
        return;
    }
    let lab = Lab::two_arm().unwrap();
    let lb2 = &lab["lb2"];
    load_rules(lb2);
    let entry = |port: u16| {
        let orig = ctsync::Tuple::tcp(ip("198.18.0.10"), port, ip(VIP), 80);
        ctsync::Entry {
            orig,
            reply: orig.inverted(),
            status: Status(Status::ASSURED | Status::SEEN_REPLY),
            timeout: Some(300),
            mark: None,
            zone: None,
            tcp: None,
            id: None,
        }
    };
    let mut events = subscribed(lb2, Duration::from_millis(300));
    let mut writer = lb2.run_in(Conntrack::open).unwrap().unwrap();
    let mut other = lb2.run_in(Conntrack::open).unwrap().unwrap();
    events.ignore_portid(writer.portid().unwrap()).unwrap();
    let r = writer.replace_batch(&[entry(40001)]).unwrap();
    assert_eq!(r.created, 1);
    let r = writer.replace_batch(&[entry(40001)]).unwrap();
    assert_eq!(r.replaced, 1);
    let r = other.replace_batch(&[entry(40002)]).unwrap();
    assert_eq!(r.created, 1);
    let mut seen = Vec::new();
    loop {
        match events.next() {
            Some(Ok(ev)) => seen.push((ev.kind, ev.entry.orig.src_port())),
            Some(Err(ctsync::Error::TimedOut)) | None => break,
            Some(Err(e)) => panic!("{e}"),
        }
    }
    println!("{seen:?}");
    assert!(
        seen.iter().all(|(_, port)| *port == Some(40002)),
        "the writer's own entries were reported: {seen:?}"
    );
    assert!(
        seen.contains(&(ctsync::EventKind::New, Some(40002))),
        "{seen:?}"
    );
    // The kernel's own delete (a timeout, or here another socket) is reported.
    other.delete(&entry(40001).orig).unwrap();
    let ev = events.next().unwrap().unwrap();
    assert_eq!(
        (ev.kind, ev.entry.orig.src_port()),
        (ctsync::EventKind::Destroy, Some(40001))
    );
}

/// An established connection of another client to the VIP (DNAT only).
fn background_entry(i: usize) -> ctsync::Entry {
    ctsync::synthetic::background_entry(i, ip(VIP), ip("198.18.1.21"))
}

/// After the kernel dropped events (the subscriber did not read), the subscriber is
/// told once, and the events that follow are reported again: the kernel keeps
/// dropping silently until the socket's queue has been read empty.
#[test]
fn events_after_an_overflow_are_reported_again() {
    if !integration::have_root("events_after_an_overflow_are_reported_again") {
        return;
    }
    let lab = Lab::two_arm().unwrap();
    let lb1 = &lab["lb1"];
    let mut events = subscribed(lb1, Duration::from_millis(500));
    events.set_receive_buffer(4 << 20).unwrap();
    let mut ct = lb1.run_in(Conntrack::open).unwrap().unwrap();
    // Far more than a 4 MiB receive buffer holds.
    let burst: Vec<_> = (0..40_000).map(background_entry).collect();
    assert_eq!(ct.replace_batch(&burst).unwrap().created, burst.len());
    let first = events.next().unwrap();
    assert!(matches!(first, Err(ctsync::Error::EventsLost)), "{first:?}");
    // What the caller dumps now is complete; what follows must be reported.
    let later: Vec<_> = (40_000..40_010).map(background_entry).collect();
    assert_eq!(ct.replace_batch(&later).unwrap().created, later.len());
    let mut seen = 0;
    while let Some(Ok(ev)) = events.next() {
        if later.iter().any(|e| e.orig == ev.entry.orig) {
            seen += 1;
        }
    }
    assert_eq!(seen, later.len(), "events after the overflow");
}

/// The default subscription holds a burst that overflows a 4 MiB buffer: 40,000
/// new entries written at once, unread until the burst is over, all reported (two
/// seconds of new flows at 20,000 a second, a sender kept off the CPU meanwhile).
#[test]
fn the_default_subscription_holds_a_burst_of_40000_new_entries() {
    if !integration::have_root("the_default_subscription_holds_a_burst_of_40000_new_entries") {
        return;
    }
    let lab = Lab::two_arm().unwrap();
    let lb1 = &lab["lb1"];
    let mut events = subscribed(lb1, Duration::from_millis(500));
    let mut ct = lb1.run_in(Conntrack::open).unwrap().unwrap();
    let burst: Vec<_> = (0..40_000).map(background_entry).collect();
    assert_eq!(ct.replace_batch(&burst).unwrap().created, burst.len());
    let mut news = 0;
    loop {
        match events.next() {
            Some(Ok(ev)) if ev.kind == ctsync::EventKind::New => news += 1,
            Some(Ok(_)) => {}
            Some(Err(ctsync::Error::TimedOut)) | None => break,
            Some(Err(e)) => panic!("after {news} new entries: {e}"),
        }
    }
    assert_eq!(news, burst.len());
}

fn local_port(s: &TcpStream) -> u16 {
    s.local_addr().unwrap().port()
}

#[test]
fn balanced_connection_survives_failover_after_commit() {
    if !integration::have_root("balanced_connection_survives_failover_after_commit") {
        return;
    }
    let lab = lb1_active();
    let (client, lb1, lb2) = (&lab["client"], &lab["lb1"], &lab["lb2"]);

    let filter = selection();
    let events = subscribed(lb1, Duration::from_secs(5));

    let vip: SocketAddr = format!("{VIP}:80").parse().unwrap();
    let mut synced = client.tcp_connect(vip, Duration::from_secs(10)).unwrap();
    let mut unsynced = client.tcp_connect(vip, Duration::from_secs(10)).unwrap();
    assert_eq!(echo(&mut synced, "one").unwrap(), "one");
    assert_eq!(echo(&mut unsynced, "uno").unwrap(), "uno");
    let port = local_port(&synced);

    // Active node: stream events into lines until the synced flow is established.
    let mut lines = Vec::new();
    for ev in events {
        let ev = ev.unwrap();
        let done = ev.entry.orig.src_port() == Some(port)
            && ev
                .entry
                .tcp
                .is_some_and(|t| t.state == TcpState::ESTABLISHED);
        if ev.entry.orig.src_port() == Some(port) {
            lines.push(encode_line(&ev));
        }
        if done {
            break;
        }
    }
    assert!(
        lines[0].contains("\"kind\":\"new\""),
        "first event is new: {}",
        lines[0]
    );

    // The dump on lb1 shows the flow with both NAT mappings.
    let dumped = lb1
        .run_in(|| Conntrack::open().and_then(|mut c| c.dump(&filter)))
        .unwrap()
        .unwrap();
    let entry = dumped
        .iter()
        .find(|e| e.orig.src_port() == Some(port))
        .unwrap()
        .clone();
    assert!(entry
        .status
        .has(Status::SRC_NAT | Status::DST_NAT | Status::ASSURED | Status::SEEN_REPLY));
    assert_eq!(entry.dnat(), Some((ip("198.18.1.21"), Some(80))));
    let (snat_ip, snat_port) = entry.snat().unwrap();
    let snat_port = snat_port.unwrap();
    assert_eq!(snat_ip, ip(SNAT));
    assert!(
        (20000..=29999).contains(&snat_port),
        "pool port {snat_port}"
    );
    let listed = lb1
        .exec_ok(&["conntrack", "-L", "-p", "tcp", "--sport", &port.to_string()])
        .unwrap();
    assert!(
        listed.contains(&format!("dport={snat_port}")),
        "lb1 conntrack -L: {listed}"
    );

    // Backup node: lines in, store, commit into lb2's kernel.
    let mut store = SyncStore::new();
    for line in &lines {
        store.apply(decode_line(line).unwrap());
    }
    assert_eq!(store.len(), 1);
    let mut ct2 = lb2.run_in(Conntrack::open).unwrap().unwrap();
    let report = store.commit(&mut ct2).unwrap();
    assert_eq!(
        (report.batch.created, report.batch.replaced),
        (1, 0),
        "{report:?}"
    );
    assert!(report.batch.failed.is_empty(), "{report:?}");
    println!("commit of {} entry: {:?}", store.len(), report.elapsed);
    // A second commit replaces the entry (deleted and created anew).
    let again = store.commit(&mut ct2).unwrap();
    assert_eq!(
        (again.batch.created, again.batch.replaced),
        (0, 1),
        "{again:?}"
    );

    // lb2's kernel holds the same mapping: the same reply tuple, with the NAT bits.
    let on_lb2 = ct2.dump(&filter).unwrap();
    assert_eq!(on_lb2.len(), 1, "{on_lb2:?}");
    assert_eq!(on_lb2[0].reply, entry.reply);
    assert!(on_lb2[0]
        .status
        .has(Status::SRC_NAT | Status::DST_NAT | Status::SRC_NAT_DONE | Status::DST_NAT_DONE));
    assert_eq!(on_lb2[0].tcp.map(|t| t.state), Some(TcpState::ESTABLISHED));
    let listed = lb2
        .exec_ok(&["conntrack", "-L", "-p", "tcp", "--sport", &port.to_string()])
        .unwrap();
    assert!(
        listed.contains(&format!(
            "src=198.18.1.21 dst={SNAT} sport=80 dport={snat_port}"
        )),
        "lb2 conntrack -L: {listed}"
    );

    crash_of_lb1(&lab);

    assert_eq!(
        echo(&mut synced, "two").unwrap(),
        "two",
        "synced connection through lb2"
    );
    assert_eq!(echo(&mut synced, "three").unwrap(), "three");
    // Control: the connection that was not committed gets a new pool port on lb2 and
    // srv1 resets it.
    let control = echo(&mut unsynced, "dos");
    assert!(
        control.is_err(),
        "unsynced connection should break, got {control:?}"
    );

    // The kernel counts the synced flow as SRC_NAT on lb2 with the same port still.
    let after = ct2.dump(&filter).unwrap();
    let kept = after
        .iter()
        .find(|e| e.orig.src_port() == Some(port))
        .unwrap();
    assert_eq!(kept.reply, entry.reply);
}

/// A backup writes a connection as its events arrive: created at the first, changed
/// in place at the others (the kernel holds it as the backup wrote it, and it has seen
/// no packet there), and it still carries the connection at a takeover: its TCP window
/// is picked up from the first segments through the new master.
#[test]
fn an_entry_the_backup_wrote_changes_in_place_and_survives_the_takeover() {
    if !integration::have_root(
        "an_entry_the_backup_wrote_changes_in_place_and_survives_the_takeover",
    ) {
        return;
    }
    let lab = lb1_active();
    let (client, lb1, lb2) = (&lab["client"], &lab["lb1"], &lab["lb2"]);
    let events = subscribed(lb1, Duration::from_secs(5));
    let vip: SocketAddr = format!("{VIP}:80").parse().unwrap();
    let mut conn = client.tcp_connect(vip, Duration::from_secs(10)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(4))).unwrap();
    assert_eq!(echo(&mut conn, "one").unwrap(), "one");
    let port = local_port(&conn);

    let mut store = SyncStore::new();
    store.set_tracking(true);
    let mut ct2 = lb2.run_in(Conntrack::open).unwrap().unwrap();
    let mut reports = Vec::new();
    for ev in events {
        let ev = ev.unwrap();
        if ev.entry.orig.src_port() != Some(port) {
            continue;
        }
        let established = ev
            .entry
            .tcp
            .is_some_and(|t| t.state == TcpState::ESTABLISHED);
        store.apply(decode_line(&encode_line(&ev)).unwrap());
        reports.push(store.flush(&mut ct2).unwrap());
        if established {
            break;
        }
    }
    let sum = |f: fn(&ctsync::CommitReport) -> usize| reports.iter().map(f).sum::<usize>();
    assert!(
        reports.len() >= 2,
        "new and at least one update: {reports:?}"
    );
    assert_eq!(reports[0].batch.created, 1, "{reports:?}");
    assert_eq!(sum(|r| r.batch.replaced), 0, "{reports:?}");
    assert_eq!(sum(|r| r.batch.updated), reports.len() - 1, "{reports:?}");
    assert_eq!(sum(|r| r.batch.failed.len()), 0, "{reports:?}");
    let on_lb2 = entries_of(lb2);
    let on_lb1 = entries_of(lb1);
    assert_eq!(on_lb2.len(), 1, "{on_lb2:?}");
    assert_eq!(on_lb2[0].reply, on_lb1[0].reply, "the same NAT mapping");
    assert_eq!(on_lb2[0].tcp.map(|t| t.state), Some(TcpState::ESTABLISHED));
    assert!(on_lb2[0].status.has(Status::ASSURED | Status::SEEN_REPLY));

    crash_of_lb1(&lab);
    let big = "x".repeat(60_000);
    assert_eq!(echo(&mut conn, &big).unwrap().len(), big.len());
    assert_eq!(echo(&mut conn, "two").unwrap(), "two", "through lb2");
}

/// Traffic the filter drops must not keep `next` from coming back idle: the sync
/// sender heartbeats on that, and a peer that hears nothing for 5 s drops the stream.
#[test]
fn busy_unselected_traffic_still_yields_timeouts() {
    if !integration::have_root("busy_unselected_traffic_still_yields_timeouts") {
        return;
    }
    let lab = Lab::two_arm().unwrap();
    let (lb1, srv1) = (&lab["lb1"], &lab["srv1"]);
    load_rules(lb1);
    echo_server(srv1);
    let mut events = subscribed(lb1, Duration::from_millis(300));
    // lb1 connects to a closed port of srv1 again and again (refused at once): each
    // attempt makes conntrack events that the filter (VIP, SNAT address) does not
    // select.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let started = std::time::Instant::now();
    let (made, outcome) = std::thread::scope(|scope| {
        let busy = scope.spawn(|| {
            let mut made = 0u32;
            let closed: SocketAddr = "198.18.1.21:81".parse().unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = lb1.tcp_connect(closed, Duration::from_secs(1));
                made += 1;
            }
            made
        });
        // Should `next` never come back while the traffic runs, the traffic stops
        // after 5 s, `next` then times out late, and the test fails instead of hanging.
        scope.spawn(|| {
            let until = std::time::Instant::now() + Duration::from_secs(5);
            while std::time::Instant::now() < until
                && !stop.load(std::sync::atomic::Ordering::Relaxed)
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        let mut outcome = Vec::new();
        for _ in 0..3 {
            let t = std::time::Instant::now();
            let item = events.next().unwrap();
            outcome.push((item.map(|_| "event"), t.elapsed()));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (busy.join().unwrap(), outcome)
    });
    println!(
        "{made} unselected connection attempts in {:?}: {outcome:?}",
        started.elapsed()
    );
    assert!(made > 10, "the busy loop made only {made} attempts");
    for (item, took) in outcome {
        assert!(
            matches!(item, Err(ctsync::Error::TimedOut)),
            "expected an idle timeout, got {item:?}"
        );
        assert!(took < Duration::from_millis(1500), "took {took:?}");
    }
}

/// An entry as IPVS's NAT forwarding leaves it on the master, with the suite's
/// source NAT to a pool port: the reply's source is the real server (IPVS altered
/// the reply tuple itself, so no DST_NAT bit), its destination the SNAT port.
/// Written into another node's kernel it must read back the same, or the server's
/// replies after a takeover would match no entry (and IPVS finds none to answer).
#[test]
fn ipvs_shaped_entry_is_written_with_its_real_server_and_snat_port() {
    if !integration::have_root("ipvs_shaped_entry_is_written_with_its_real_server_and_snat_port") {
        return;
    }
    let lab = Lab::two_arm().unwrap();
    let lb2 = &lab["lb2"];
    load_rules(lb2);
    let mut entry = background_entry(7);
    let client = entry.orig.src;
    entry.reply = ctsync::Tuple::tcp(ip("198.18.1.21"), 80, ip(SNAT), 24_680);
    entry.status =
        Status(Status::ASSURED | Status::SEEN_REPLY | Status::SRC_NAT | Status::SRC_NAT_DONE);
    assert_eq!(entry.dnat(), None);
    let mut ct = lb2.run_in(Conntrack::open).unwrap().unwrap();
    assert_eq!(
        ct.replace_batch(std::slice::from_ref(&entry))
            .unwrap()
            .created,
        1
    );
    let back: Vec<_> = entries_of(lb2)
        .into_iter()
        .filter(|e| e.orig.src == client)
        .collect();
    assert_eq!(back.len(), 1, "{back:?}");
    assert_eq!(back[0].orig, entry.orig);
    assert_eq!(back[0].reply, entry.reply, "reply tuple as on the master");
    assert_eq!(back[0].snat(), Some((ip(SNAT), Some(24_680))));
    assert_eq!(back[0].dnat(), None, "no DST_NAT bit: IPVS does the DNAT");
    // Written again (the out-and-back path: delete + create), the same.
    assert_eq!(
        ct.replace_batch(std::slice::from_ref(&entry))
            .unwrap()
            .replaced,
        1
    );
    let again: Vec<_> = entries_of(lb2)
        .into_iter()
        .filter(|e| e.orig.src == client)
        .collect();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].reply, entry.reply);
}
