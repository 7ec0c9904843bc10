//! Root tests of the topology harness: bring-up, forwarding, teardown on panic, sweeper.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use integration::{
    have_root, list_namespaces, namespace_exists, sweep, Lab, LabError, Prefix, PREFIX,
};

const TIMEOUT: Duration = Duration::from_secs(5);
/// Env switch that turns the hidden child tests on.
const CHILD_ENV: &str = "LBSUITE_LAB_CHILD";

/// Labs sweep dead runs' namespaces when they start; the kill/sweep test needs to see
/// its namespaces survive until it sweeps, so the tests of this file run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn sock(addr: &str, port: u16) -> SocketAddr {
    SocketAddr::new(addr.parse::<IpAddr>().unwrap(), port)
}

fn global(addrs: Vec<Prefix>) -> BTreeSet<String> {
    addrs
        .into_iter()
        .filter(|p| !matches!(p.addr, IpAddr::V6(a) if a.segments()[0] == 0xfe80))
        .map(|p| p.to_string())
        .collect()
}

fn assert_all_gone(names: &[String]) {
    assert!(!names.is_empty(), "no namespace names to check");
    let present = list_namespaces().unwrap();
    for n in names {
        assert!(!present.contains(n), "namespace {n} survived: {present:?}");
    }
}

/// `sysctl -n` through `ip netns exec`: a different path from the harness's writes.
fn sysctl(lab: &Lab, host: &str, key: &str) -> String {
    lab[host]
        .exec_ok(&["sysctl", "-n", key])
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn two_arm_lab_has_the_address_plan_and_leaves_nothing() {
    if !have_root("two_arm_lab_has_the_address_plan_and_leaves_nothing") {
        return;
    }
    let _serial = serial();
    let lab = Lab::two_arm().unwrap();
    let names = lab.namespaces();
    assert_eq!(names.len(), 6);
    let present = list_namespaces().unwrap();
    for n in &names {
        assert!(present.contains(n), "{n} missing from {present:?}");
        assert!(n.starts_with(&format!("{}-", lab.id())));
    }

    let expect = [
        ("client", "eth0", ["198.18.0.10/24", "2001:db8:0:a::10/64"]),
        ("lb1", "eth0", ["198.18.0.11/24", "2001:db8:0:a::11/64"]),
        ("lb1", "eth1", ["198.18.1.11/24", "2001:db8:0:b::11/64"]),
        ("lb2", "eth0", ["198.18.0.12/24", "2001:db8:0:a::12/64"]),
        ("lb2", "eth1", ["198.18.1.12/24", "2001:db8:0:b::12/64"]),
        ("srv1", "eth0", ["198.18.1.21/24", "2001:db8:0:b::21/64"]),
        ("srv2", "eth0", ["198.18.1.22/24", "2001:db8:0:b::22/64"]),
    ];
    for (host, iface, addrs) in expect {
        let got = global(lab[host].addresses(iface).unwrap());
        let want: BTreeSet<String> = addrs.iter().map(|s| s.to_string()).collect();
        assert_eq!(got, want, "{host} {iface}");
        let link = lab[host].link(iface).unwrap();
        assert!(link.up && link.carrier, "{host} {iface}: {link:?}");
    }
    // Servers and the client have one NIC only.
    assert!(lab["srv1"].link("eth1").is_err());
    assert!(lab["client"].link("eth1").is_err());
    assert_eq!(lab["lb2"].link("eth1").unwrap().mac, "02:00:00:00:03:01");
    assert_eq!(lab["client"].link("lo").unwrap().operstate, "UNKNOWN");

    assert_eq!(sysctl(&lab, "lb1", "net.ipv4.ip_forward"), "1");
    assert_eq!(sysctl(&lab, "lb1", "net.ipv6.conf.all.forwarding"), "1");
    assert_eq!(sysctl(&lab, "lb1", "net.ipv4.conf.eth0.arp_ignore"), "1");
    assert_eq!(sysctl(&lab, "lb1", "net.ipv4.conf.eth1.arp_announce"), "2");
    assert_eq!(sysctl(&lab, "lb1", "net.ipv4.conf.eth0.rp_filter"), "0");
    assert_eq!(sysctl(&lab, "lb1", "net.ipv6.conf.eth0.accept_dad"), "0");
    assert_eq!(sysctl(&lab, "srv1", "net.ipv4.ip_forward"), "0");
    assert_eq!(sysctl(&lab, "client", "net.ipv6.conf.all.forwarding"), "0");
    assert_eq!(lab["srv1"].sysctl("net.ipv4.ip_forward").unwrap(), "0");
    assert_eq!(lab["lb2"].sysctl("net.ipv4.ip_forward").unwrap(), "1");
    // No default route: nothing beyond the connected subnets.
    assert!(!lab["srv1"]
        .ip(&["route", "show"])
        .unwrap()
        .contains("default"));

    // Bridges live in the switch namespace with multicast snooping off.
    let bridges = Command::new("ip")
        .args([
            "-n",
            lab.switch_netns(),
            "-j",
            "-d",
            "link",
            "show",
            "type",
            "bridge",
        ])
        .output()
        .unwrap();
    let bridges: serde_json::Value = serde_json::from_slice(&bridges.stdout).unwrap();
    let mut seen = Vec::new();
    for b in bridges.as_array().unwrap() {
        seen.push(b["ifname"].as_str().unwrap().to_owned());
        assert_eq!(b["linkinfo"]["info_data"]["mcast_snooping"], 0, "{b}");
    }
    seen.sort();
    assert_eq!(seen, ["public", "server"]);
    // Nothing of the lab in the root namespace.
    let root = Command::new("ip").args(["-j", "link"]).output().unwrap();
    let root = String::from_utf8_lossy(&root.stdout);
    assert!(!root.contains("\"client-eth0\"") && !root.contains("\"public\""));

    drop(lab);
    assert_all_gone(&names);
}

#[test]
fn lb_forwards_between_arms_when_routes_are_added() {
    if !have_root("lb_forwards_between_arms_when_routes_are_added") {
        return;
    }
    let _serial = serial();
    let lab = Lab::two_arm().unwrap();
    let (client, srv1) = (&lab["client"], &lab["srv1"]);
    let server_v4 = srv1
        .serve_reply(sock("198.18.1.21", 8080), srv1.name())
        .unwrap();
    let server_v6 = srv1
        .serve_reply(sock("2001:db8:0:b::21", 8080), srv1.name())
        .unwrap();

    // The lab has no routes between the segments of its own.
    let err = client.tcp_fetch(server_v4.addr(), TIMEOUT).unwrap_err();
    assert!(
        matches!(
            err,
            LabError::Socket {
                what: "connect",
                ..
            }
        ),
        "{err}"
    );

    client
        .add_route(
            "198.18.1.0/24".parse().unwrap(),
            "198.18.0.11".parse().unwrap(),
        )
        .unwrap();
    srv1.add_route(
        "198.18.0.0/24".parse().unwrap(),
        "198.18.1.11".parse().unwrap(),
    )
    .unwrap();
    client
        .add_route(
            "2001:db8:0:b::/64".parse().unwrap(),
            "2001:db8:0:a::11".parse().unwrap(),
        )
        .unwrap();
    srv1.add_route(
        "2001:db8:0:a::/64".parse().unwrap(),
        "2001:db8:0:b::11".parse().unwrap(),
    )
    .unwrap();

    assert_eq!(client.tcp_fetch(server_v4.addr(), TIMEOUT).unwrap(), "srv1");
    assert_eq!(client.tcp_fetch(server_v6.addr(), TIMEOUT).unwrap(), "srv1");
    assert_eq!((server_v4.served(), server_v6.served()), (1, 1));

    // The server saw the client's own address: routed, not translated.
    let listener = srv1.tcp_listen(sock("198.18.1.21", 8081)).unwrap();
    let _conn = client
        .tcp_connect(sock("198.18.1.21", 8081), TIMEOUT)
        .unwrap();
    let (_, peer) = listener.accept().unwrap();
    assert_eq!(peer.ip(), "198.18.0.10".parse::<IpAddr>().unwrap());
}

#[test]
fn one_arm_client_reaches_a_server_on_the_same_subnet() {
    if !have_root("one_arm_client_reaches_a_server_on_the_same_subnet") {
        return;
    }
    let _serial = serial();
    let lab = Lab::one_arm().unwrap();
    let names = lab.namespaces();
    for (host, last) in [
        ("client", 10),
        ("lb1", 11),
        ("lb2", 12),
        ("srv1", 21),
        ("srv2", 22),
    ] {
        let got = global(lab[host].addresses("eth0").unwrap());
        assert!(
            got.contains(&format!("198.18.0.{last}/24")),
            "{host}: {got:?}"
        );
        assert!(
            got.contains(&format!("2001:db8:0:a::{last}/64")),
            "{host}: {got:?}"
        );
    }
    let srv1 = &lab["srv1"];
    let v4 = srv1.serve_reply(sock("198.18.0.21", 80), "srv1").unwrap();
    let v6 = srv1
        .serve_reply(sock("2001:db8:0:a::21", 80), "srv1")
        .unwrap();
    assert_eq!(lab["client"].tcp_fetch(v4.addr(), TIMEOUT).unwrap(), "srv1");
    assert_eq!(lab["client"].tcp_fetch(v6.addr(), TIMEOUT).unwrap(), "srv1");
    drop((v4, v6));
    drop(lab);
    assert_all_gone(&names);
}

#[test]
fn processes_logs_and_links() {
    if !have_root("processes_logs_and_links") {
        return;
    }
    let _serial = serial();
    let lab = Lab::two_arm().unwrap();
    let lb1 = &lab["lb1"];
    // A process sees its host's interfaces, and its output lands in the log dir.
    let mut proc = lb1
        .spawn(
            "sh",
            [
                "-c",
                "ip -br addr show dev eth1; echo started >&2; exec sleep 60",
            ],
        )
        .unwrap();
    assert!(proc.stdout_path().starts_with(lab.log_dir()));
    assert!(proc
        .stdout_path()
        .to_string_lossy()
        .ends_with(".sh.0.stdout"));
    let mut out = String::new();
    for _ in 0..500 {
        out = proc.stdout();
        if !proc.stderr().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(out.contains("198.18.1.11/24"), "{out:?}");
    assert_eq!(proc.stderr(), "started\n");
    assert_eq!(proc.try_wait().unwrap(), None);
    let pid = proc.pid();
    drop(proc);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());

    let out = lb1.exec(&["sh", "-c", "exit 3"]).unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = lb1
        .exec_timeout(&["sleep", "10"], Duration::from_millis(200))
        .unwrap_err();
    assert!(matches!(err, LabError::Timeout { .. }), "{err}");

    // Down/up inside the host keeps the IPv6 address (keep_addr_on_down).
    lb1.set_link("eth0", false).unwrap();
    assert!(!lb1.link("eth0").unwrap().up);
    lb1.set_link("eth0", true).unwrap();
    assert!(lb1.link("eth0").unwrap().up);
    assert!(global(lb1.addresses("eth0").unwrap()).contains("2001:db8:0:a::11/64"));

    // Pulling the cable at the bridge: the host keeps UP but loses carrier.
    lab.set_cable("lb1", "eth0", false).unwrap();
    let link = lb1.link("eth0").unwrap();
    assert!(link.up && !link.carrier, "{link:?}");
    lab.set_cable("lb1", "eth0", true).unwrap();
    assert!(lb1.link("eth0").unwrap().carrier);

    // run_in really runs in the namespace: it sees eth1, the test thread does not.
    let seen = lb1
        .run_in(|| std::fs::read_to_string("/proc/sys/net/ipv4/conf/eth1/arp_ignore"))
        .unwrap()
        .unwrap();
    assert_eq!(seen.trim(), "1");
    let t = lab["srv2"]
        .thread_in(|| std::fs::read_to_string("/proc/net/dev"))
        .unwrap();
    let dev = t.join().unwrap().unwrap();
    assert!(dev.contains("eth0") && !dev.contains("eth1"), "{dev}");
}

#[test]
fn a_panicking_test_leaves_no_namespace() {
    if !have_root("a_panicking_test_leaves_no_namespace") {
        return;
    }
    let _serial = serial();
    let names = Mutex::new(Vec::new());
    let result = std::panic::catch_unwind(|| {
        let lab = Lab::two_arm().unwrap();
        let _sleeper = lab["lb1"].spawn("sleep", ["60"]).unwrap();
        *names.lock().unwrap() = lab.namespaces();
        panic!("deliberate panic after bring-up");
    });
    assert!(result.is_err());
    let names = names.into_inner().unwrap();
    remove_logs_of(&names);
    assert_all_gone(&names);
}

/// Child side of the two tests below; does nothing unless the parent asked for it.
#[test]
#[ignore = "run by the panic and kill tests as a child process"]
fn child_lab() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    let lab = Lab::two_arm().unwrap();
    let sleeper = lab["srv1"].spawn("sleep", ["600"]).unwrap();
    for n in lab.namespaces() {
        println!("NETNS {n}");
    }
    println!("PID {}", sleeper.pid());
    println!("READY");
    if mode == "panic" {
        panic!("deliberate panic in the child");
    }
    std::thread::sleep(Duration::from_secs(600));
}

/// The child test process; killed on drop so a failing parent leaves no child behind.
struct ChildTest(std::process::Child);

impl Drop for ChildTest {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the hidden child test in a new process, stdout piped.
fn start_child(mode: &str) -> ChildTest {
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_lab",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    ChildTest(child)
}

/// Log directory of the lab whose switch namespace is among `names` (kept because
/// its test panicked on purpose).
fn remove_logs_of(names: &[String]) {
    for n in names {
        if let Some(id) = n.strip_suffix("-switch") {
            let _ = std::fs::remove_dir_all(std::env::temp_dir().join(format!("{id}.logs")));
        }
    }
}

/// Reads the child's NETNS and PID lines up to READY.
fn read_child(child: &mut ChildTest) -> (Vec<String>, u32) {
    let mut names = Vec::new();
    let mut pid = 0;
    let stdout = child.0.stdout.take().unwrap();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        // The harness may print "test child_lab ... " on the same line.
        if let Some((_, n)) = line.split_once("NETNS ") {
            names.push(n.to_owned());
        } else if let Some((_, p)) = line.split_once("PID ") {
            pid = p.parse().unwrap();
        } else if line.ends_with("READY") {
            break;
        }
    }
    assert_eq!(names.len(), 6, "child did not report its lab");
    (names, pid)
}

#[test]
fn a_panicking_test_process_leaves_no_namespace() {
    if !have_root("a_panicking_test_process_leaves_no_namespace") {
        return;
    }
    let _serial = serial();
    let mut child = start_child("panic");
    let (names, pid) = read_child(&mut child);
    let status = child.0.wait().unwrap();
    remove_logs_of(&names);
    assert!(!status.success(), "the child test was meant to fail");
    assert_all_gone(&names);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "sleeper {pid} survived"
    );
}

#[test]
fn sweep_removes_what_a_killed_run_left() {
    if !have_root("sweep_removes_what_a_killed_run_left") {
        return;
    }
    let _serial = serial();
    let mut child = start_child("sleep");
    let (names, sleeper) = read_child(&mut child);
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    remove_logs_of(&names);
    // SIGKILL runs no destructor: the lab and its process are still there.
    for n in &names {
        assert!(namespace_exists(n), "{n} vanished before the sweep");
    }
    assert!(std::path::Path::new(&format!("/proc/{sleeper}")).exists());
    // A concurrent test process may sweep them first: what counts is that they go.
    sweep().unwrap();
    assert_all_gone(&names);
    // The sleeper was killed by the sweep; reaped by init shortly after.
    let mut alive = true;
    for _ in 0..500 {
        let stat = std::fs::read_to_string(format!("/proc/{sleeper}/stat")).unwrap_or_default();
        // Gone, or a zombie waiting for its new parent.
        if stat.is_empty() || stat.split(' ').nth(2) == Some("Z") {
            alive = false;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!alive, "sleeper {sleeper} survived the sweep");
}

/// Removes the named namespaces on drop, whatever the test's outcome.
struct NetnsGuard(Vec<String>);

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

#[test]
fn sweep_touches_only_prefixed_namespaces_of_dead_pids() {
    if !have_root("sweep_touches_only_prefixed_namespaces_of_dead_pids") {
        return;
    }
    let _serial = serial();
    let mut gone = Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    let stale = format!("{PREFIX}{dead_pid}-0-sweeptest");
    let ours = format!("lbsweepkeep-{}-{dead_pid}", std::process::id());
    let live = format!("{PREFIX}{}-999999-sweeptest", std::process::id());
    let _guard = NetnsGuard(vec![stale.clone(), ours.clone(), live.clone()]);
    for n in [&stale, &ours, &live] {
        let st = Command::new("ip")
            .args(["netns", "add", n])
            .status()
            .unwrap();
        assert!(st.success(), "ip netns add {n}");
    }
    let removed = sweep().unwrap();
    assert!(removed.contains(&stale), "{removed:?}");
    assert!(
        !removed.contains(&ours) && !removed.contains(&live),
        "{removed:?}"
    );
    assert!(!namespace_exists(&stale));
    assert!(namespace_exists(&ours), "a foreign namespace was touched");
    assert!(
        namespace_exists(&live),
        "a live run's namespace was touched"
    );
}

#[test]
fn a_rebooted_host_comes_back_empty_with_its_addresses_and_cables() {
    if !have_root("a_rebooted_host_comes_back_empty_with_its_addresses_and_cables") {
        return;
    }
    let _serial = serial();
    let lab = Lab::two_arm().unwrap();
    let (client, lb1) = (&lab["client"], &lab["lb1"]);
    let server = lb1.serve_reply(sock("198.18.0.11", 8080), "lb1").unwrap();
    assert_eq!(client.tcp_fetch(server.addr(), TIMEOUT).unwrap(), "lb1");
    lb1.exec_ok(&["nft", "add", "table", "inet", "before_reboot"])
        .unwrap();
    lb1.exec_ok(&["ip", "addr", "add", "198.18.0.99/32", "dev", "eth0"])
        .unwrap();
    let mut sleeper = lb1.spawn("sleep", ["600"]).unwrap();
    let addrs_before = global(lb1.addresses("eth0").unwrap());
    let forwarding = sysctl(&lab, "lb1", "net.ipv4.ip_forward");

    lab.reboot("lb1").unwrap();

    // The kernel's state is gone: the process, the ruleset, the extra address.
    assert!(sleeper.wait_timeout(TIMEOUT).unwrap().is_some());
    assert_eq!(lb1.exec_ok(&["nft", "list", "tables"]).unwrap().trim(), "");
    let addrs_after = global(lb1.addresses("eth0").unwrap());
    assert!(!addrs_after.contains("198.18.0.99/32"), "{addrs_after:?}");
    assert_eq!(
        addrs_after,
        addrs_before
            .into_iter()
            .filter(|a| a != "198.18.0.99/32")
            .collect()
    );
    // The topology is: the same sysctls, cables plugged, reachable again.
    assert_eq!(sysctl(&lab, "lb1", "net.ipv4.ip_forward"), forwarding);
    let server = lb1
        .serve_reply(sock("198.18.0.11", 8080), "lb1 again")
        .unwrap();
    assert_eq!(
        client.tcp_fetch(server.addr(), TIMEOUT).unwrap(),
        "lb1 again"
    );
    drop(lab);
}
