//! Every connection survives every failover (needs root, and vrrpd built next to
//! lbd): 200 echo connections through the VIP, source-NATed from a port pool, held
//! through a crash, a SIGTERM of vrrpd and its restart, a failover drill out and back
//! (twice), maintenance on and off, a fail-back after lb1's reboot, lbd crashing
//! alone on either node, a takeover with 100,000 other synced entries, and UDP flows
//! that outlive their conntrack timeout on the backup several times over. With sync
//! off (the controls) the pool gives the moved connections new ports and the servers
//! reset them.

mod support;

use std::thread;
use std::time::Duration;

use serde_json::Value;
use support::held::*;
use support::*;

const CONNECTIONS: usize = 200;
/// How long one connection may take to answer after a takeover: TCP's retransmission
/// backoff over a 3.6 s Master_Down_Interval is up to ~7 s.
const ANSWER: Duration = Duration::from_secs(15);

/// Holds [`CONNECTIONS`] through lb1 and checks they all answer before anything moves.
fn held_through_lb1(setup: &Setup) -> HeldConnections {
    let mut held = HeldConnections::open(setup, CONNECTIONS);
    assert_eq!(held.survivors(ANSWER), CONNECTIONS, "before any failover");
    held
}

/// Waits until `node` holds a complete copy of its peer's entries (at least `n`),
/// all of them written into its kernel.
fn wait_synced(setup: &Setup, node: &str, n: u64) {
    wait_sync_complete(&setup.lbd_socket(node), n, PATIENCE);
}

/// Prints and returns how many of `held` answer; `what` names the moment.
fn count(held: &mut HeldConnections, what: &str) -> usize {
    let n = held.survivors(ANSWER);
    println!("{what}: {n}/{} connections answer", held.len());
    n
}

fn lbd_sync(setup: &Setup, node: &str) -> Value {
    setup.status(node)["sync"].clone()
}

#[test]
fn crash_keeps_every_connection() {
    if !integration::have_root("crash_keeps_every_connection") {
        return;
    }
    let (setup, daemons) = two_nodes(true, &[]);
    let mut held = held_through_lb1(&setup);
    wait_synced(&setup, "lb2", CONNECTIONS as u64);
    kill_lb1(&setup, &daemons);
    assert_eq!(count(&mut held, "after lb1's crash"), CONNECTIONS);
    let prepare = &setup.status("lb2")["prepare"]["last"]["reply"]["sync"];
    println!("lb2's prepare: {prepare}");
    assert_eq!(prepare["failed"], 0, "{prepare}");
}

#[test]
fn crash_without_sync_loses_connections() {
    if !integration::have_root("crash_without_sync_loses_connections") {
        return;
    }
    let (setup, daemons) = two_nodes(false, &[]);
    let mut held = held_through_lb1(&setup);
    kill_lb1(&setup, &daemons);
    let n = count(&mut held, "after lb1's crash, sync off");
    assert!(n < CONNECTIONS, "without sync the pool re-maps them: {n}");
}

/// A failover drill on lb1 while the connections carry data through lb2, then back.
fn drill_out_and_back(setup: &Setup, held: &mut HeldConnections, round: u32) -> (usize, usize) {
    let drill = thread::scope(|scope| {
        let drill = scope.spawn(|| drill_failover(setup));
        wait_until_master(setup, "lb2");
        let out = count(held, &format!("drill {round}: through lb2"));
        (out, drill.join().unwrap())
    });
    let (out, reply) = drill;
    println!("drill {round}: {reply}");
    wait_until_master(setup, "lb1");
    let back = count(held, &format!("drill {round}: back through lb1"));
    (out, back)
}

#[test]
fn drill_out_and_back_twice_keeps_every_connection() {
    if !integration::have_root("drill_out_and_back_twice_keeps_every_connection") {
        return;
    }
    let (setup, _daemons) = two_nodes(true, &[]);
    let mut held = held_through_lb1(&setup);
    wait_synced(&setup, "lb2", CONNECTIONS as u64);
    let dumps = |node| lbd_sync(&setup, node)["dumps_sent"].as_u64().unwrap_or(0);
    for round in 1..=2 {
        let before = [dumps("lb1"), dumps("lb2")];
        let (out, back) = drill_out_and_back(&setup, &mut held, round);
        println!("lb1 sync after round {round}: {}", lbd_sync(&setup, "lb1"));
        assert_eq!((out, back), (CONNECTIONS, CONNECTIONS), "round {round}");
        let hold = vrrpd_status(&setup, "lb1")["preempt_hold"].clone();
        assert_eq!(hold["expirations"], 0, "lb1 waited for lb2's dump: {hold}");
        // Each node that left MASTER got exactly one full dump from the other: the
        // new MASTER's stream takes over the subscription its commit made instead
        // of restarting with a second dump of the whole table.
        wait_synced(&setup, "lb2", CONNECTIONS as u64);
        let sent = [dumps("lb1") - before[0], dumps("lb2") - before[1]];
        println!("round {round}: full dumps sent by lb1, lb2: {sent:?}");
        assert_eq!(sent, [1, 1], "round {round}: dumps per node per drill");
    }
}

#[test]
fn drill_out_and_back_without_sync_loses_connections() {
    if !integration::have_root("drill_out_and_back_without_sync_loses_connections") {
        return;
    }
    let (setup, _daemons) = two_nodes(false, &[]);
    let mut held = held_through_lb1(&setup);
    let (out, back) = drill_out_and_back(&setup, &mut held, 1);
    assert!(back < CONNECTIONS, "without sync: {out} out, {back} back");
}

#[test]
fn maintenance_on_and_off_keeps_every_connection() {
    if !integration::have_root("maintenance_on_and_off_keeps_every_connection") {
        return;
    }
    let (setup, _daemons) = two_nodes(true, &[]);
    let mut held = held_through_lb1(&setup);
    wait_synced(&setup, "lb2", CONNECTIONS as u64);
    maintenance(&setup, "lb1", true);
    wait_until_master(&setup, "lb2");
    assert_eq!(count(&mut held, "maintenance on: through lb2"), CONNECTIONS);
    // Connections made during the maintenance window come back too.
    let mut during = HeldConnections::open(&setup, CONNECTIONS / 2);
    wait_synced(&setup, "lb1", (CONNECTIONS + CONNECTIONS / 2) as u64);
    println!("lb1 sync while BACKUP: {}", lbd_sync(&setup, "lb1"));
    assert_eq!(lbd_sync(&setup, "lb1")["writing_to_kernel"], true);
    maintenance(&setup, "lb1", false);
    wait_until_master(&setup, "lb1");
    assert_eq!(
        count(&mut held, "maintenance off: through lb1"),
        CONNECTIONS
    );
    assert_eq!(
        count(&mut during, "made during maintenance"),
        CONNECTIONS / 2
    );
}

#[test]
fn sigterm_of_vrrpd_and_its_restart_keep_every_connection() {
    if !integration::have_root("sigterm_of_vrrpd_and_its_restart_keep_every_connection") {
        return;
    }
    let (setup, mut daemons) = two_nodes(true, &[]);
    let mut held = held_through_lb1(&setup);
    wait_synced(&setup, "lb2", CONNECTIONS as u64);
    daemons.vrrpd1.signal(libc::SIGTERM).unwrap();
    let _ = daemons.vrrpd1.wait_timeout(PATIENCE);
    wait_until_master(&setup, "lb2");
    assert_eq!(count(&mut held, "vrrpd on lb1 stopped"), CONNECTIONS);
    daemons.vrrpd1 = setup.start_vrrpd("lb1");
    wait_until_master(&setup, "lb1");
    assert_eq!(count(&mut held, "vrrpd on lb1 restarted"), CONNECTIONS);
}

#[test]
fn fail_back_after_a_reboot_keeps_every_connection() {
    if !integration::have_root("fail_back_after_a_reboot_keeps_every_connection") {
        return;
    }
    let (setup, mut daemons) = two_nodes(true, &[]);
    let mut held = held_through_lb1(&setup);
    wait_synced(&setup, "lb2", CONNECTIONS as u64);
    kill_lb1(&setup, &daemons);
    assert_eq!(count(&mut held, "after lb1's crash"), CONNECTIONS);
    // Connections lb1 never saw, with pool ports lb2 chose.
    let through_lb2 = HeldConnections::open(&setup, CONNECTIONS);
    held.extend(through_lb2);
    // The reboot: lb1's namespace is made anew, its kernel state lost (connections,
    // conntrack, ruleset, addresses), its cables plugged in again.
    setup.lab.reboot("lb1").unwrap();
    assert_eq!(conntrack_count(setup.host("lb1")), 0);
    daemons.lbd1 = setup.start_lbd("lb1");
    setup.wait_applied("lb1");
    daemons.vrrpd1 = setup.start_vrrpd("lb1");
    wait_until_master(&setup, "lb1");
    println!("lb1 sync: {}", lbd_sync(&setup, "lb1"));
    assert_eq!(count(&mut held, "back through lb1"), 2 * CONNECTIONS);
}

#[test]
fn lbd_crashing_alone_on_either_node_keeps_every_connection() {
    if !integration::have_root("lbd_crashing_alone_on_either_node_keeps_every_connection") {
        return;
    }
    let (setup, mut daemons) = two_nodes(true, &[]);
    let mut held = held_through_lb1(&setup);
    wait_synced(&setup, "lb2", CONNECTIONS as u64);
    // The backup's lbd dies and comes back: it gets lb1's state again.
    daemons.lbd2.signal(libc::SIGKILL).unwrap();
    let _ = daemons.lbd2.wait_timeout(PATIENCE);
    daemons.lbd2 = setup.start_lbd("lb2");
    setup.wait_applied("lb2");
    wait_synced(&setup, "lb2", CONNECTIONS as u64);
    // The master's lbd dies and comes back: traffic never stops (the kernel keeps
    // the ruleset) and the new lbd streams its connections again.
    daemons.lbd1.signal(libc::SIGKILL).unwrap();
    let _ = daemons.lbd1.wait_timeout(PATIENCE);
    assert_eq!(count(&mut held, "lbd on lb1 dead"), CONNECTIONS);
    daemons.lbd1 = setup.start_lbd("lb1");
    setup.wait_applied("lb1");
    wait_until_master(&setup, "lb1");
    wait_synced(&setup, "lb2", CONNECTIONS as u64);
    kill_lb1(&setup, &daemons);
    assert_eq!(count(&mut held, "after lb1's crash"), CONNECTIONS);
}

#[test]
fn takeover_with_100000_other_entries_keeps_every_connection() {
    if !integration::have_root("takeover_with_100000_other_entries_keeps_every_connection") {
        return;
    }
    const BACKGROUND: usize = 100_000;
    let (setup, mut daemons) = two_nodes(true, &[]);
    let mut held = held_through_lb1(&setup);
    background_entries(setup.host("lb1"), BACKGROUND);
    let total = (BACKGROUND + CONNECTIONS) as u64;
    wait_sync_complete(&setup.lbd_socket("lb2"), total, Duration::from_secs(120));
    let in_kernel = conntrack_count(setup.host("lb2"));
    println!(
        "lb2 (BACKUP): {in_kernel} entries in its kernel; sync {}",
        lbd_sync(&setup, "lb2")
    );
    assert!(
        in_kernel >= total,
        "written before the takeover: {in_kernel}"
    );
    daemons.vrrpd1.signal(libc::SIGTERM).unwrap();
    let _ = daemons.vrrpd1.wait_timeout(PATIENCE);
    wait_until_master(&setup, "lb2");
    assert_eq!(count(&mut held, "after the takeover"), CONNECTIONS);
    let prepare = setup.status("lb2")["prepare"]["last"]["reply"]["sync"].clone();
    println!("lb2's prepare: {prepare}");
    let written = ["created", "replaced", "updated"]
        .iter()
        .map(|k| prepare[*k].as_u64().unwrap())
        .sum::<u64>();
    assert!(
        written < 1000,
        "the takeover wrote only what was not yet in the kernel, not the table: {prepare}"
    );
}

/// A UDP service beside the example's TCP one, source-NATed from a port pool of its
/// own (a fresh mapping picks another port than the first did).
const UDP_SERVICE: (&str, &str) = (
    "name = \"srv2\"\naddress = \"198.18.1.22\"\nport = 80\nweight = 1\n",
    "name = \"srv2\"\naddress = \"198.18.1.22\"\nport = 80\nweight = 1\n\n\
     [[service]]\nname = \"dgram\"\nvip = \"198.18.0.100\"\nport = 5353\nprotocol = \"udp\"\n\
     scheduler = \"rr\"\n\n[[service.server]]\nname = \"srv1\"\naddress = \"198.18.1.21\"\n\n\
     [[service.server]]\nname = \"srv2\"\naddress = \"198.18.1.22\"\n",
);
const UDP_SNAT: (&str, &str) = (
    "snat = { pool = [{ address = \"198.18.1.100\", ports = \"20000-29999\" }] }\n",
    "snat = { pool = [{ address = \"198.18.1.100\", ports = \"20000-29999\" }] }\n\n\
     [[nat]]\nname = \"dgram-snat\"\nin_interface = \"eth0\"\nout_interface = \"eth1\"\n\
     protocol = \"udp\"\ndestination = \"198.18.0.100\"\ndestination_port = 5353\n\
     snat = { pool = [{ address = \"198.18.1.100\", ports = \"30000-39999\" }] }\n",
);

/// Answers each datagram with the server's name and the source it came from.
fn udp_echo_server(setup: &Setup, host: &'static str, addr: &str) {
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let sock = setup
        .host(host)
        .run_in(move || std::net::UdpSocket::bind(addr))
        .unwrap()
        .unwrap();
    thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((_, from)) = sock.recv_from(&mut buf) {
            let _ = sock.send_to(format!("{host} {from}").as_bytes(), from);
        }
    });
}

/// What each flow's server answers now (`None`: no answer within `patience`).
fn udp_answers(flows: &[std::net::UdpSocket], patience: Duration) -> Vec<Option<String>> {
    thread::scope(|scope| {
        let asked: Vec<_> = flows
            .iter()
            .map(|s| {
                scope.spawn(move || {
                    let mut buf = [0u8; 200];
                    let started = std::time::Instant::now();
                    s.set_read_timeout(Some(Duration::from_millis(300))).ok()?;
                    // A datagram lost over the takeover is asked again, as a client would.
                    while started.elapsed() < patience {
                        s.send(b"?").ok()?;
                        if let Ok(n) = s.recv(&mut buf) {
                            return Some(String::from_utf8_lossy(&buf[..n]).into_owned());
                        }
                    }
                    None
                })
            })
            .collect();
        asked.into_iter().map(|h| h.join().ok().flatten()).collect()
    })
}

#[test]
fn long_lived_udp_flows_keep_server_and_snat_port_past_their_timeout() {
    if !integration::have_root("long_lived_udp_flows_keep_server_and_snat_port_past_their_timeout")
    {
        return;
    }
    long_lived_udp_flows(false);
}

/// The same with the sync link cut (the peer alive and forwarding) for the flows'
/// four timeouts: lb2 writes its copies again all the same, then lb1 crashes.
#[test]
fn long_lived_udp_flows_survive_a_cut_sync_link() {
    if !integration::have_root("long_lived_udp_flows_survive_a_cut_sync_link") {
        return;
    }
    long_lived_udp_flows(true);
}

/// Drops the sync stream's packets in lb2 (both ways), as a cut sync link would.
fn cut_sync_link(setup: &Setup) {
    let lb2 = setup.host("lb2");
    lb2.exec_ok(&["nft", "add", "table", "inet", "cut"])
        .unwrap();
    for (chain, hook) in [("in", "input"), ("out", "output")] {
        let spec = format!("{{ type filter hook {hook} priority 0 ; }}");
        lb2.exec_ok(&["nft", "add", "chain", "inet", "cut", chain, &spec])
            .unwrap();
        for dir in ["dport", "sport"] {
            lb2.exec_ok(&[
                "nft", "add", "rule", "inet", "cut", chain, "tcp", dir, "8848", "drop",
            ])
            .unwrap();
        }
    }
}

fn long_lived_udp_flows(cut: bool) {
    const FLOWS: usize = 20;
    // The kernel's UDP timeouts, shortened in both nodes so that the flows outlive
    // them several times over in seconds (the defaults are 30 s and 120 s).
    const STREAM_TIMEOUT_S: u64 = 6;
    let (setup, daemons) = two_nodes(true, &[UDP_SERVICE, UDP_SNAT]);
    for node in ["lb1", "lb2"] {
        let host = setup.host(node);
        host.set_sysctl("net.netfilter.nf_conntrack_udp_timeout", "3")
            .unwrap();
        host.set_sysctl(
            "net.netfilter.nf_conntrack_udp_timeout_stream",
            &STREAM_TIMEOUT_S.to_string(),
        )
        .unwrap();
    }
    udp_echo_server(&setup, "srv1", "198.18.1.21:5353");
    udp_echo_server(&setup, "srv2", "198.18.1.22:5353");
    let vip: std::net::SocketAddr = format!("{VIP}:5353").parse().unwrap();
    let flows: Vec<std::net::UdpSocket> = (0..FLOWS)
        .map(|_| {
            setup
                .host("client")
                .run_in(move || {
                    let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
                    s.connect(vip)?;
                    Ok::<_, std::io::Error>(s)
                })
                .unwrap()
                .unwrap()
        })
        .collect();
    let first = udp_answers(&flows, Duration::from_secs(5));
    assert!(first.iter().all(Option::is_some), "before: {first:?}");
    println!("before: {first:?}");
    if cut {
        // Assured (a second exchange) and synced, then the link is cut.
        assert_eq!(udp_answers(&flows, Duration::from_secs(5)), first);
        wait_synced(&setup, "lb2", FLOWS as u64);
        cut_sync_link(&setup);
    }
    // Alive through lb1 for four stream timeouts: one datagram per flow every 0.5 s.
    let until = std::time::Instant::now() + Duration::from_secs(4 * STREAM_TIMEOUT_S);
    while std::time::Instant::now() < until {
        assert_eq!(udp_answers(&flows, Duration::from_secs(5)), first);
        thread::sleep(Duration::from_millis(500));
    }
    let on_lb2 = setup
        .host("lb2")
        .exec_ok(&["conntrack", "-L", "-p", "udp", "--dport", "5353"])
        .unwrap();
    println!(
        "lb2 (BACKUP) holds {} of the flows in its kernel",
        on_lb2.lines().count()
    );
    if cut {
        let sync = lbd_sync(&setup, "lb2");
        println!("lb2's sync after the cut: {sync}");
        assert_eq!(
            sync["receiving"], false,
            "the cut stopped the peer's stream"
        );
    }
    let refreshed = sample(
        &scrape(setup.host("lb2"), "127.0.0.1:9613"),
        "lbd_sync_entries_refreshed_total",
    );
    println!("lb2 wrote {refreshed:?} held entries again (half their timeout spent)");
    kill_lb1(&setup, &daemons);
    let after = udp_answers(&flows, ANSWER);
    let kept = first
        .iter()
        .zip(&after)
        .filter(|(a, b)| a.is_some() && a == b)
        .count();
    println!(
        "after lb1's crash: {kept}/{FLOWS} flows kept their server and SNAT source; {after:?}"
    );
    assert_eq!(kept, FLOWS);
}
