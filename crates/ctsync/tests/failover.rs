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

fn local_port(s: &TcpStream) -> u16 {
    s.local_addr().unwrap().port()
}

#[test]
fn balanced_connection_survives_failover_after_commit() {
    if !integration::have_root("balanced_connection_survives_failover_after_commit") {
        return;
    }
    let lab = Lab::two_arm().unwrap();
    let (client, lb1, lb2, srv1) = (&lab["client"], &lab["lb1"], &lab["lb2"], &lab["srv1"]);
    lb1.add_address("eth0", Prefix::new(ip(VIP), 24)).unwrap();
    lb1.add_address("eth1", Prefix::new(ip(SNAT), 24)).unwrap();
    load_rules(lb1);
    load_rules(lb2);
    echo_server(srv1);

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
        (report.batch.created, report.batch.updated),
        (1, 0),
        "{report:?}"
    );
    assert!(report.batch.failed.is_empty(), "{report:?}");
    println!("commit of {} entry: {:?}", store.len(), report.elapsed);
    // Idempotent: a second commit refreshes.
    let again = store.commit(&mut ct2).unwrap();
    assert_eq!(
        (again.batch.created, again.batch.updated),
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

    // Failover by hand: lb1 loses its cables, lb2 takes the addresses, neighbours re-resolve.
    lab.set_cable("lb1", "eth0", false).unwrap();
    lab.set_cable("lb1", "eth1", false).unwrap();
    lb2.add_address("eth0", Prefix::new(ip(VIP), 24)).unwrap();
    lb2.add_address("eth1", Prefix::new(ip(SNAT), 24)).unwrap();
    client.exec_ok(&["ip", "neigh", "flush", "all"]).unwrap();
    srv1.exec_ok(&["ip", "neigh", "flush", "all"]).unwrap();

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
