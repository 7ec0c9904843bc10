//! The real daemons on a real IPVS: run inside the VM by integration/vm/ipvs-tests.sh
//! (`--ignored`; this machine's kernel has no IPVS). lbd, vrrpd and vrrpctl come
//! from `$LBSUITE_DAEMON_DIR` (the guest's /opt/lbsuite/daemons), else from beside
//! this test's lbd. Each test builds its own two-arm lab (client, lb1, lb2, srv1,
//! srv2); `ipvsadm` is the independent reader of what lbd did.
//!
//! Findings worth a line in the VM log go to `$LBSUITE_VM_NOTES` (printed by the
//! guest script), else to stdout.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use integration::{Host, Lab, Process};
use serde_json::Value;
use support::{
    background_entries, conntrack_count, request, wait_for, wait_sync_complete, NO_CHECKS,
    SNAT_VIP, VIP,
};

/// Bound for anything the daemons do: software emulation is slow.
const PATIENCE: Duration = Duration::from_secs(90);

/// A daemon program: from `$LBSUITE_DAEMON_DIR` in the VM, else built beside lbd.
fn program(name: &str) -> PathBuf {
    let path = match std::env::var_os("LBSUITE_DAEMON_DIR") {
        Some(dir) => Path::new(&dir).join(name),
        None => Path::new(env!("CARGO_BIN_EXE_lbd")).with_file_name(name),
    };
    assert!(path.exists(), "{} is missing", path.display());
    path
}

/// cluster.toml.example, compiled in (the source tree is not in the VM), with
/// `edits` applied in order (each `from` must occur; every occurrence is replaced).
fn example_with(edits: &[(&str, &str)]) -> String {
    let mut text = include_str!("../../cluster.toml.example").to_owned();
    for (from, to) in edits {
        assert!(text.contains(from), "example lacks {from:?}");
        text = text.replace(from, to);
    }
    text
}

/// The tail of a daemon's log, for failure messages.
fn log_tail(process: &Process) -> String {
    let log = process.stdout() + &process.stderr();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Writes a finding for the VM log.
fn note(text: &str) {
    println!("{text}");
    if let Some(path) = std::env::var_os("LBSUITE_VM_NOTES") {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        writeln!(f, "{text}").unwrap();
    }
}

/// The lab, and a directory per node for its config, sockets and IPVS ownership
/// record (lbd keeps the record beside its socket).
struct Cluster {
    lab: Lab,
    dir: tempfile::TempDir,
}

impl Cluster {
    fn new() -> Cluster {
        let cluster = Cluster {
            lab: Lab::two_arm().unwrap(),
            dir: tempfile::tempdir().unwrap(),
        };
        for node in ["lb1", "lb2"] {
            std::fs::create_dir(cluster.dir.path().join(node)).unwrap();
        }
        cluster
    }

    fn host(&self, name: &str) -> &Host {
        &self.lab[name]
    }

    fn path(&self, node: &str, file: &str) -> PathBuf {
        self.dir.path().join(node).join(file)
    }

    fn lbd_socket(&self, node: &str) -> PathBuf {
        self.path(node, "lbd.sock")
    }

    /// Writes `node`'s cluster.toml: the example with `edits`, `extra` inserted
    /// before the health checks, its sockets in its directory, no metrics listeners.
    fn write_config(&self, node: &str, edits: &[(&str, &str)], extra: &str) {
        let text = example_with(edits)
            .replacen(
                "\"/run/lbsuite/vrrpd.sock\"",
                &format!("{:?}", self.path(node, "vrrpd.sock")),
                1,
            )
            .replacen(
                "\"/run/lbsuite/lbd.sock\"",
                &format!("{:?}", self.lbd_socket(node)),
                1,
            )
            .replacen(
                "serve /metrics (default true).\nenabled = true",
                "serve /metrics (default true).\nenabled = false",
                1,
            )
            .replacen(
                "# ---------------------------------------------------------------------------\n# Health checks",
                &format!("{extra}\n# ---------------------------------------------------------------------------\n# Health checks"),
                1,
            );
        std::fs::write(self.path(node, "cluster.toml"), text).unwrap();
    }

    fn start(&self, node: &str, program_name: &str) -> Process {
        let config = self.path(node, "cluster.toml");
        let mut cmd = self.host(node).command(program(program_name));
        cmd.args(["--config", config.to_str().unwrap(), "--node", node])
            .env("RUST_LOG", "info");
        self.host(node).spawn_command(cmd, program_name).unwrap()
    }

    fn status(&self, node: &str) -> Value {
        request(&self.lbd_socket(node), "status", Value::Null).unwrap()
    }

    /// Waits until lbd in `node` answers and its last apply succeeded.
    fn wait_applied(&self, node: &str) -> Value {
        let socket = self.lbd_socket(node);
        let mut last = Value::Null;
        wait_for("lbd applied its dataplane", PATIENCE, || {
            match request(&socket, "status", Value::Null) {
                Ok(s) if s["dataplane"]["last_apply"]["ok"] == true => {
                    last = s;
                    true
                }
                _ => false,
            }
        });
        last
    }

    /// Waits until lbd in `node` knows its group `edge` is MASTER and the other
    /// node's lbd no longer does (it is BACKUP, or its vrrpd or lbd is gone).
    fn wait_master(&self, node: &str) {
        let other = if node == "lb1" { "lb2" } else { "lb1" };
        wait_for(
            &format!("{node} MASTER in its lbd's status, {other} not"),
            PATIENCE,
            || {
                let other_master = request(&self.lbd_socket(other), "status", Value::Null)
                    .is_ok_and(|s| {
                        s["vrrpd"]["connected"] == true && s["vrrpd"]["groups"]["edge"] == "MASTER"
                    });
                self.role(node).as_deref() == Some("MASTER") && !other_master
            },
        );
    }

    /// Writes both nodes' files (the example with `edits`, and [`POOLED`]), starts
    /// lbd on both and waits until each has applied on `backend`, then vrrpd on lb1
    /// until it is MASTER, then vrrpd on lb2 until it is BACKUP. lbd first, so that
    /// vrrpd's first prepare finds it; lb1 first: started together, lb2's vrrpd may
    /// run out its Master_Down_Interval first under emulation and be MASTER for a
    /// moment, and connections opened then would move back. Returns each lbd's
    /// status after its apply and the daemons: lbd1, lbd2, vrrpd1, vrrpd2.
    fn start_pair(&self, edits: &[(&str, &str)], backend: &str) -> (Vec<Value>, [Process; 4]) {
        for node in ["lb1", "lb2"] {
            self.write_config(node, edits, POOLED);
        }
        let lbd1 = self.start("lb1", "lbd");
        let lbd2 = self.start("lb2", "lbd");
        let statuses: Vec<Value> = ["lb1", "lb2"]
            .iter()
            .map(|node| {
                let status = self.wait_applied(node);
                assert_eq!(status["backend"]["name"], backend, "{node}");
                status
            })
            .collect();
        let vrrpd1 = self.start("lb1", "vrrpd");
        self.wait_master("lb1");
        let vrrpd2 = self.start("lb2", "vrrpd");
        wait_for("lb2 BACKUP in lbd's status", PATIENCE, || {
            self.role("lb2").as_deref() == Some("BACKUP")
        });
        (statuses, [lbd1, lbd2, vrrpd1, vrrpd2])
    }

    /// A control request to vrrpd in `node`.
    fn vrrpd(&self, node: &str, method: &str, params: Value) -> Value {
        request(&self.path(node, "vrrpd.sock"), method, params)
            .unwrap_or_else(|e| panic!("{method} on {node}'s vrrpd: {e}"))
    }

    /// The role of sync group `edge` in lbd's status (what lbd learnt from vrrpd).
    fn role(&self, node: &str) -> Option<String> {
        request(&self.lbd_socket(node), "status", Value::Null)
            .ok()
            .and_then(|s| s["vrrpd"]["groups"]["edge"].as_str().map(str::to_owned))
    }
}

impl Drop for Cluster {
    /// On a failure, the daemons' last log lines go to the notes (the lab's log
    /// directory dies with the VM).
    fn drop(&mut self) {
        if !thread::panicking() {
            return;
        }
        let Ok(entries) = std::fs::read_dir(self.lab.log_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if !(name.contains(".lbd.") || name.contains(".vrrpd.")) {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            for line in &lines[lines.len().saturating_sub(15)..] {
                note(&format!("{name}: {line}"));
            }
        }
    }
}

/// `ipvsadm -Ln` in a host as service line → its real-server lines, whitespace
/// collapsed, connection counters dropped: `TCP 198.18.0.100:80 rr` →
/// {`198.18.1.21:80 Masq 1`, ...}.
fn ipvsadm(host: &Host) -> BTreeMap<String, BTreeSet<String>> {
    let out = host.exec_ok(&["ipvsadm", "-Ln"]).unwrap();
    let mut map: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut current = String::new();
    // Three header lines: version, column names for services and real servers.
    for line in out.lines().skip(3) {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["->", addr, fwd, weight, ..] => {
                map.entry(current.clone())
                    .or_default()
                    .insert(format!("{addr} {fwd} {weight}"));
            }
            [] => {}
            _ => {
                current = f.join(" ");
                map.entry(current.clone()).or_default();
            }
        }
    }
    map
}

/// `ipvsadm -Sn`: the rules alone, in ipvsadm's own save format (no counters).
fn ipvsadm_rules(host: &Host) -> String {
    host.exec_ok(&["ipvsadm", "-Sn"]).unwrap()
}

fn table(entries: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
    entries
        .iter()
        .map(|(s, d)| (s.to_string(), d.iter().map(|x| x.to_string()).collect()))
        .collect()
}

/// Serves on `addr` in `host`: each connection gets `<name> <peer ip>:<peer port>\n`,
/// then every line it sends is echoed back until it closes.
fn responder(host: &Host, addr: &str, name: &'static str) -> TcpListener {
    let listener = host.tcp_listen(addr.parse().unwrap()).unwrap();
    let accepting = listener.try_clone().unwrap();
    thread::spawn(move || {
        for stream in accepting.incoming() {
            let Ok(mut stream) = stream else { return };
            thread::spawn(move || {
                let peer = stream.peer_addr().map(|p| p.to_string());
                let hello = format!("{name} {}\n", peer.unwrap_or_default());
                if stream.write_all(hello.as_bytes()).is_err() {
                    return;
                }
                let Ok(read) = stream.try_clone() else { return };
                for line in BufReader::new(read).lines() {
                    let Ok(line) = line else { return };
                    if stream.write_all(format!("{line}\n").as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    listener
}

/// [`responder`]s on srv1 (198.18.1.21) and srv2 (198.18.1.22) at each of `ports`.
fn responders(cluster: &Cluster, ports: &[u16]) -> Vec<TcpListener> {
    let mut servers = Vec::new();
    for port in ports {
        servers.push(responder(
            cluster.host("srv1"),
            &format!("198.18.1.21:{port}"),
            "srv1",
        ));
        servers.push(responder(
            cluster.host("srv2"),
            &format!("198.18.1.22:{port}"),
            "srv2",
        ));
    }
    servers
}

/// How long an echo may take under emulation; a count of many connections waits
/// this long in all, not per connection.
const ECHO_WAIT: Duration = Duration::from_secs(30);

/// A connection from the client through a VIP.
struct Conn {
    reader: BufReader<TcpStream>,
    stream: TcpStream,
    /// The server's name.
    server: String,
    /// The source the server saw, `ip:port`.
    seen_from: SocketAddr,
}

impl Conn {
    fn open(client: &Host, addr: &str) -> Conn {
        let stream = client
            .tcp_connect(addr.parse().unwrap(), Duration::from_secs(20))
            .unwrap();
        stream.set_read_timeout(Some(ECHO_WAIT)).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut hello = String::new();
        reader.read_line(&mut hello).unwrap();
        let mut words = hello.split_whitespace();
        let server = words.next().unwrap().to_owned();
        let seen_from = words.next().unwrap().parse().unwrap();
        Conn {
            reader,
            stream,
            server,
            seen_from,
        }
    }

    /// Sends a line and reads the echo: the line, or what went wrong.
    fn echo(&mut self, text: &str) -> Result<String, String> {
        self.send(text)?;
        self.receive(Instant::now() + ECHO_WAIT)
    }

    /// Sends a line.
    fn send(&mut self, text: &str) -> Result<(), String> {
        self.stream
            .write_all(format!("{text}\n").as_bytes())
            .map_err(|e| e.to_string())
    }

    /// Reads a line by `deadline`: the line, or what went wrong.
    fn receive(&mut self, deadline: Instant) -> Result<String, String> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .map_err(|e| e.to_string())?;
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err("closed by the peer".into()),
            Ok(_) => Ok(line.trim().to_owned()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The client's `ip:port`.
    fn local(&self) -> String {
        self.stream.local_addr().unwrap().to_string()
    }
}

/// `ipvsadm -Lnc` line of the connection from `client` to `vip`, if listed.
fn ipvs_conn(host: &Host, client: &str, vip: &str) -> Option<String> {
    let out = host.exec_ok(&["ipvsadm", "-Lnc"]).unwrap();
    out.lines()
        .find(|l| l.contains(client) && l.contains(vip))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Conntrack lines of `host` that mention `client` (`ip:port`), from
/// /proc/net/nf_conntrack; `None` when the kernel does not list it there.
fn conntrack(host: &Host, client: &str) -> Option<Vec<String>> {
    let (ip, port) = client.rsplit_once(':').unwrap();
    let (src, sport) = (format!("src={ip} "), format!("sport={port} "));
    // /proc/net is the process's (main thread's) namespace; thread-self is ours.
    let text = host
        .run_in(|| std::fs::read_to_string("/proc/thread-self/net/nf_conntrack").ok())
        .unwrap()?;
    Some(
        text.lines()
            .filter(|l| l.contains(&src) && l.contains(&sport))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect(),
    )
}

/// TCP resets `host` has sent (`OutRsts` of /proc/net/snmp).
fn out_resets(host: &Host) -> u64 {
    let text = host
        .run_in(|| std::fs::read_to_string("/proc/thread-self/net/snmp").unwrap())
        .unwrap();
    let mut tcp = text.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next().unwrap(), tcp.next().unwrap());
    let column = names
        .split_whitespace()
        .position(|n| n == "OutRsts")
        .unwrap();
    values
        .split_whitespace()
        .nth(column)
        .unwrap()
        .parse()
        .unwrap()
}

/// The SNAT port of a conntrack line: the reply direction's destination port.
fn snat_port(line: &str) -> Option<u16> {
    line.split_whitespace()
        .filter_map(|w| w.strip_prefix("dport="))
        .nth(1)
        .and_then(|p| p.parse().ok())
}

/// Drops the destination-port limit of the example's SNAT rule: it covers every
/// TCP port of the VIP then.
const ALL_PORTS_SNAT: (&str, &str) = ("\ndestination_port = 80\n", "\n");

/// Services beside the example's `web` (rr over srv1, srv2, NAT, port 80): weighted
/// round robin with weights 3 and `api_srv2_weight`; direct routing with wlc (srv2
/// only when `direct_srv2`); UDP over IP-in-IP with source hashing and persistence.
fn extra_services(api_srv2_weight: u32, direct_srv2: bool) -> String {
    let server = |name: &str, addr: &str, weight: u32| {
        format!(
            "[[service.server]]\nname = \"{name}\"\naddress = \"{addr}\"\nweight = {weight}\n\n"
        )
    };
    let mut s = String::new();
    s +=
        "[[service]]\nname = \"api\"\nvip = \"198.18.0.100\"\nport = 8080\nscheduler = \"wrr\"\n\n";
    s += &server("srv1", "198.18.1.21", 3);
    s += &server("srv2", "198.18.1.22", api_srv2_weight);
    s += "[[service]]\nname = \"direct\"\nvip = \"198.18.0.100\"\nport = 443\nscheduler = \"wlc\"\nmode = \"dr\"\n\n";
    s += &server("srv1", "198.18.1.21", 1);
    if direct_srv2 {
        s += &server("srv2", "198.18.1.22", 1);
    }
    s += "[[service]]\nname = \"dns\"\nvip = \"198.18.0.100\"\nport = 53\nprotocol = \"udp\"\nscheduler = \"sh\"\nmode = \"tunnel\"\npersistence = { timeout_s = 300, prefix_len = 24 }\n\n";
    s += &server("srv1", "198.18.1.21", 1);
    s += &server("srv2", "198.18.1.22", 1);
    s
}

#[test]
#[ignore = "needs IPVS: run in the VM"]
fn vm_lbd_applies_cluster_services_to_ipvs_reloads_alone_and_restarts_without_change() {
    let cluster = Cluster::new();
    let (lb1, client) = (cluster.host("lb1"), cluster.host("client"));
    // No vrrpd here: the VIPs are placed by hand.
    lb1.add_address("eth0", format!("{VIP}/32").parse().unwrap())
        .unwrap();
    lb1.add_address("eth1", format!("{SNAT_VIP}/32").parse().unwrap())
        .unwrap();
    let _servers = responders(&cluster, &[80, 8080]);
    let edits = [NO_CHECKS, ALL_PORTS_SNAT];
    cluster.write_config("lb1", &edits, &extra_services(1, true));
    let mut lbd = cluster.start("lb1", "lbd");
    let status = cluster.wait_applied("lb1");

    // backend = "auto" (the example's) picks IPVS in this kernel, and says so.
    assert_eq!(status["backend"]["name"], "ipvs", "{}", status["backend"]);
    let reason = status["backend"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("auto: ipvs"), "{reason}");
    wait_for("the backend choice in lbd's log", PATIENCE, || {
        let log = lbd.stdout() + &lbd.stderr();
        log.contains("dataplane backend chosen") && log.contains("auto: ipvs")
    });
    note(&format!("lbd status backend: ipvs ({reason})"));

    let pair = |port: &str, fwd: &str, w1: u32, w2: u32| {
        [
            format!("198.18.1.21{port} {fwd} {w1}"),
            format!("198.18.1.22{port} {fwd} {w2}"),
        ]
    };
    let mut want: BTreeMap<String, BTreeSet<String>> = [
        ("TCP 198.18.0.100:80 rr", pair(":80", "Masq", 1, 1)),
        ("TCP 198.18.0.100:8080 wrr", pair(":8080", "Masq", 3, 1)),
        ("TCP 198.18.0.100:443 wlc", pair(":443", "Route", 1, 1)),
        (
            "UDP 198.18.0.100:53 sh persistent 300 mask 255.255.255.0",
            pair(":53", "Tunnel", 1, 1),
        ),
    ]
    .into_iter()
    .map(|(s, d)| (s.to_owned(), d.into_iter().collect()))
    .collect();
    assert_eq!(
        ipvsadm(lb1),
        want,
        "ipvsadm -Ln:\n{}",
        lb1.exec_ok(&["ipvsadm", "-Ln"]).unwrap()
    );
    assert_eq!(lb1.sysctl("net.ipv4.vs.conntrack").unwrap(), "1");

    // rr alternates; wrr 3:1 gives srv1 three of every four; every server sees
    // the server-side VIP (it has no route to the client at all).
    let web: Vec<Conn> = (0..4)
        .map(|_| Conn::open(client, &format!("{VIP}:80")))
        .collect();
    let names: Vec<&str> = web.iter().map(|c| c.server.as_str()).collect();
    assert!(names.windows(2).all(|w| w[0] != w[1]), "rr: {names:?}");
    let api: Vec<Conn> = (0..8)
        .map(|_| Conn::open(client, &format!("{VIP}:8080")))
        .collect();
    let srv1 = api.iter().filter(|c| c.server == "srv1").count();
    assert_eq!(srv1, 6, "wrr 3:1 over 8 connections: {srv1} to srv1");
    for c in web.iter().chain(&api) {
        assert_eq!(c.seen_from.ip().to_string(), SNAT_VIP);
    }
    drop((web, api));

    // A weight change by SIGHUP: that one real server changes, nothing else.
    let before = ipvsadm(lb1);
    cluster.write_config("lb1", &edits, &extra_services(2, true));
    lbd.signal(libc::SIGHUP).unwrap();
    let api_key = "TCP 198.18.0.100:8080 wrr".to_owned();
    let api_set = want.get_mut(&api_key).unwrap();
    api_set.remove("198.18.1.22:8080 Masq 1");
    api_set.insert("198.18.1.22:8080 Masq 2".into());
    let deadline = std::time::Instant::now() + PATIENCE;
    while ipvsadm(lb1) != want {
        assert!(
            std::time::Instant::now() < deadline,
            "no new weight after SIGHUP; ipvsadm -Ln:\n{}\nlbd:\n{}",
            lb1.exec_ok(&["ipvsadm", "-Ln"]).unwrap(),
            log_tail(&lbd)
        );
        thread::sleep(Duration::from_millis(200));
    }
    let last = &cluster.status("lb1")["dataplane"]["last_apply"];
    assert_eq!(last["why"], "reload", "{last}");
    assert_eq!(last["changes"], 1, "{last}");
    note(&format!(
        "SIGHUP weight 1->2: one change; ipvsadm line before {:?}",
        before[&api_key]
    ));

    // A removed server by `vrrpctl --socket <lbd's socket> reload`: one delete.
    cluster.write_config("lb1", &edits, &extra_services(2, false));
    let socket = cluster.lbd_socket("lb1");
    let out = lb1
        .exec_ok(&[
            program("vrrpctl").to_str().unwrap(),
            "--socket",
            socket.to_str().unwrap(),
            "reload",
        ])
        .unwrap();
    assert!(out.contains(": applied ("), "{out}");
    want.get_mut("TCP 198.18.0.100:443 wlc")
        .unwrap()
        .remove("198.18.1.22:443 Route 1");
    assert_eq!(ipvsadm(lb1), want);
    let last = &cluster.status("lb1")["dataplane"]["last_apply"];
    assert_eq!(last["changes"], 1, "{last}");

    // A service made by hand survives lbd's reconciles.
    lb1.exec_ok(&["ipvsadm", "-A", "-t", "198.18.0.200:80", "-s", "wlc"])
        .unwrap();
    lb1.exec_ok(&[
        "ipvsadm",
        "-a",
        "-t",
        "198.18.0.200:80",
        "-r",
        "198.18.1.30:80",
        "-m",
    ])
    .unwrap();
    want.extend(table(&[(
        "TCP 198.18.0.200:80 wlc",
        &["198.18.1.30:80 Masq 1"],
    )]));
    let reply = request(&socket, "reload", Value::Null).unwrap();
    assert_eq!(reply["apply"]["ok"], true, "{reply}");
    assert_eq!(reply["apply"]["changes"], 0, "{reply}");
    assert_eq!(ipvsadm(lb1), want);

    // A restart leaves IPVS exactly as it was (and applies nothing).
    let rules = ipvsadm_rules(lb1);
    lbd.signal(libc::SIGTERM).unwrap();
    assert!(lbd.wait_timeout(PATIENCE).unwrap().is_some(), "lbd stopped");
    assert_eq!(ipvsadm_rules(lb1), rules, "lbd stopped");
    let lbd = cluster.start("lb1", "lbd");
    let status = cluster.wait_applied("lb1");
    assert_eq!(status["dataplane"]["last_apply"]["why"], "start");
    assert_eq!(
        status["dataplane"]["last_apply"]["changes"], 0,
        "{}",
        status["dataplane"]["last_apply"]
    );
    assert_eq!(ipvsadm_rules(lb1), rules, "after the restart");
    assert_eq!(ipvsadm(lb1), want);
    let again = Conn::open(client, &format!("{VIP}:80"));
    assert_eq!(again.seen_from.ip().to_string(), SNAT_VIP);
    note(&format!(
        "restart: ipvsadm -Sn identical ({} lines), hand-made 198.18.0.200:80 kept",
        rules.lines().count()
    ));
    drop(lbd);
}

/// A second SNAT rule for port 81 with a port pool (the example's rule keeps port 80
/// and the client's source port when it is free).
const POOLED: &str = "[[service]]\nname = \"pooled\"\nvip = \"198.18.0.100\"\nport = 81\nscheduler = \"rr\"\n\n[[service.server]]\nname = \"srv1\"\naddress = \"198.18.1.21\"\n\n[[service.server]]\nname = \"srv2\"\naddress = \"198.18.1.22\"\n\n[[nat]]\nname = \"pooled-snat\"\nin_interface = \"eth0\"\nout_interface = \"eth1\"\nprotocol = \"tcp\"\ndestination = \"198.18.0.100\"\ndestination_port = 81\nsnat = { pool = [{ address = \"198.18.1.100\", ports = \"20000-29999\" }] }\n";

/// Connections per service in the failover scenarios: the example's `web` (SNAT to
/// an address) and `pooled` (SNAT to a port range) each.
const HELD: usize = 10;

/// What a failover left of the connections held through lb1.
#[derive(Debug, PartialEq)]
struct Kept {
    plain: usize,
    pooled: usize,
}

impl Kept {
    /// Every one of the [`HELD`] connections per service.
    const ALL: Kept = Kept {
        plain: HELD,
        pooled: HELD,
    };
}

/// Long-lived connections from the client through the VIP, per kind of SNAT.
struct Held {
    /// To port 80, under the example's SNAT (address only).
    plain: Vec<Conn>,
    /// To port 81, under the SNAT pool (198.18.1.100 ports 20000-29999).
    pooled: Vec<Conn>,
}

impl Held {
    /// `n` connections per kind through whichever node is MASTER; each has echoed once.
    fn open(client: &Host, n: usize) -> Held {
        let mut held = Held {
            plain: (0..n)
                .map(|_| Conn::open(client, &format!("{VIP}:80")))
                .collect(),
            pooled: (0..n)
                .map(|_| Conn::open(client, &format!("{VIP}:81")))
                .collect(),
        };
        for c in held.iter() {
            assert_eq!(c.seen_from.ip().to_string(), SNAT_VIP);
        }
        for c in &held.pooled {
            assert!((20000..=29999).contains(&c.seen_from.port()));
        }
        for c in held.plain.iter_mut().chain(held.pooled.iter_mut()) {
            assert_eq!(c.echo("before"), Ok("before".into()));
        }
        held
    }

    fn iter(&self) -> impl Iterator<Item = &Conn> {
        self.plain.iter().chain(&self.pooled)
    }

    /// Every connection held.
    fn all(&self) -> Kept {
        Kept {
            plain: self.plain.len(),
            pooled: self.pooled.len(),
        }
    }

    /// Sends a line on every connection; counts those that echo it, and notes the
    /// count (`label` names the moment) with the resets the servers sent.
    fn count(&mut self, cluster: &Cluster, label: &str) -> Kept {
        let servers: BTreeSet<String> = self.iter().map(|c| c.server.clone()).collect();
        let resets_of = |cluster: &Cluster| -> u64 {
            servers.iter().map(|s| out_resets(cluster.host(s))).sum()
        };
        let before = resets_of(cluster);
        // Every line sent first, then every echo awaited by one deadline: a lost
        // connection costs the wait once, not once per connection.
        let mut sent: Vec<Vec<Result<(), String>>> = Vec::new();
        for conns in [&mut self.plain, &mut self.pooled] {
            sent.push(conns.iter_mut().map(|c| c.send(label)).collect());
        }
        let deadline = Instant::now() + ECHO_WAIT;
        let mut kept = [0, 0];
        for (kind, conns) in [&mut self.plain, &mut self.pooled].into_iter().enumerate() {
            for (i, c) in conns.iter_mut().enumerate() {
                let after = match &sent[kind][i] {
                    Ok(()) => c.receive(deadline),
                    Err(e) => Err(e.clone()),
                };
                if after.as_deref() == Ok(label) {
                    kept[kind] += 1;
                } else if i == 0 {
                    note(&format!("{label}: {} {after:?}", c.local()));
                }
            }
        }
        let resets = resets_of(cluster) - before;
        note(&format!(
            "{label}: {}/{} address-only SNAT, {}/{} pooled SNAT kept; the servers sent {resets} resets",
            kept[0],
            self.plain.len(),
            kept[1],
            self.pooled.len()
        ));
        Kept {
            plain: kept[0],
            pooled: kept[1],
        }
    }
}

/// Two nodes running vrrpd and lbd (`backend = "ipvs"`), `[sync]` on eth1 when
/// `sync`, lb1 MASTER, and [`HELD`] long-lived connections per service through lb1
/// (on the backup already, when synced).
struct Scenario {
    cluster: Cluster,
    sync: bool,
    lbd1: Process,
    vrrpd1: Process,
    lbd2: Process,
    _vrrpd2: Process,
    held: Held,
    _servers: Vec<TcpListener>,
}

impl Scenario {
    fn start(sync: bool) -> Scenario {
        let cluster = Cluster::new();
        let servers = responders(&cluster, &[80, 81]);
        let mut edits = vec![
            NO_CHECKS,
            ("backend = \"auto\"", "backend = \"ipvs\""),
            // 50 ms is a real machine's budget; under emulation a prepare takes ~200 ms.
            ("prepare_budget_ms = 50", "prepare_budget_ms = 5000"),
        ];
        if !sync {
            edits.push((
                "synced (default false).\nenabled = true",
                "synced (default false).\nenabled = false",
            ));
        }
        let (statuses, [lbd1, lbd2, vrrpd1, vrrpd2]) = cluster.start_pair(&edits, "ipvs");
        for status in statuses {
            let mode = if sync { "ipvs+conntrack" } else { "off" };
            assert_eq!(status["sync"]["mode"], mode, "{}", status["sync"]);
        }
        if sync {
            sync_daemon(cluster.host("lb1"), "master");
            sync_daemon(cluster.host("lb2"), "backup");
        }

        // Long-lived connections through lb1: the example's SNAT (address only)
        // and the pooled one.
        let held = Held::open(cluster.host("client"), HELD);
        let (plain, pooled) = (&held.plain[0], &held.pooled[0]);
        note(&format!(
            "sync {sync}: through lb1: client {} -> {} sees {} (SNAT address only); client {} -> {} sees {} (pool 20000-29999)",
            plain.local(),
            plain.server,
            plain.seen_from,
            pooled.local(),
            pooled.server,
            pooled.seen_from
        ));
        let scenario = Scenario {
            cluster,
            sync,
            lbd1,
            vrrpd1,
            lbd2,
            _vrrpd2: vrrpd2,
            held,
            _servers: servers,
        };
        if sync {
            scenario.wait_synced("lb2", &scenario.held);
            let pooled = scenario.held.pooled[0].local();
            let lb2 = scenario.cluster.host("lb2");
            note(&format!(
                "lb2 before failover: ipvsadm -Lnc {:?}; conntrack {:?}",
                ipvs_conn(lb2, &pooled, &format!("{VIP}:81")),
                conntrack(lb2, &pooled)
            ));
        }
        scenario
    }

    /// Waits until `node` has every connection of `held`: in IPVS's table (from
    /// the kernel's sync daemon) and in conntrack with the SNAT port the clients'
    /// server saw (from lbd's sync link).
    fn wait_synced(&self, node: &str, held: &Held) {
        let host = self.cluster.host(node);
        for c in held.iter() {
            let vip = format!("{VIP}:{}", c.stream.peer_addr().unwrap().port());
            let mut line = None;
            wait_for(
                &format!("the connection in {node}'s ipvsadm -Lnc"),
                PATIENCE,
                || {
                    line = ipvs_conn(host, &c.local(), &vip);
                    line.is_some()
                },
            );
            let line = line.unwrap();
            assert!(line.contains("ESTABLISHED"), "{line}");
            let mut lines = None;
            wait_for(
                &format!("the connection in {node}'s conntrack"),
                PATIENCE,
                || {
                    lines = conntrack(host, &c.local());
                    lines.as_ref().is_some_and(|l| {
                        l.iter().find_map(|l| snat_port(l)) == Some(c.seen_from.port())
                    })
                },
            );
        }
    }

    /// Sends a line on every held connection; counts those that echo it.
    fn count(&mut self, what: &str) -> Kept {
        let label = format!("sync {}: {what}", self.sync);
        self.held.count(&self.cluster, &label)
    }

    /// lb1 dies (its daemons SIGKILLed, its cables cut) and lb2 takes over, with
    /// lbd's prepare.
    fn crash_lb1(&mut self) {
        let cluster = &self.cluster;
        let prepares = cluster.status("lb2")["prepare"]["count"].as_u64().unwrap();
        self.vrrpd1.signal(libc::SIGKILL).unwrap();
        self.lbd1.signal(libc::SIGKILL).unwrap();
        assert!(self.lbd1.wait_timeout(PATIENCE).unwrap().is_some());
        cluster.lab.set_cable("lb1", "eth0", false).unwrap();
        cluster.lab.set_cable("lb1", "eth1", false).unwrap();
        cluster.wait_master("lb2");
        let status = cluster.status("lb2");
        assert!(status["prepare"]["count"].as_u64().unwrap() > prepares);
        assert_eq!(status["prepare"]["last"]["reply"]["prepared"], true);
        if self.sync {
            sync_daemon(cluster.host("lb2"), "master");
            let daemons = cluster
                .host("lb2")
                .exec_ok(&["ipvsadm", "-L", "--daemon"])
                .unwrap();
            assert!(!daemons.contains("backup sync daemon"), "{daemons}");
        }
    }

    /// New connections go through lb2, with the SNAT VIP.
    fn fresh_through_lb2(&self) {
        let fresh = Conn::open(self.cluster.host("client"), &format!("{VIP}:80"));
        assert_eq!(fresh.seen_from.ip().to_string(), SNAT_VIP);
        let lb2 = self.cluster.host("lb2");
        assert!(ipvs_conn(lb2, &fresh.local(), &format!("{VIP}:80")).is_some());
    }
}

/// Waits until `host` runs the IPVS sync daemon in `role` ([sync]: eth1, id 0).
fn sync_daemon(host: &Host, role: &str) {
    let want = format!("{role} sync daemon (mcast=eth1, syncid=0");
    wait_for(&format!("{role} sync daemon"), PATIENCE, || {
        host.exec_ok(&["ipvsadm", "-L", "--daemon"])
            .unwrap()
            .contains(&want)
    });
}

/// With `[sync]`, every connection survives lb1's death, the pooled ones too: lb2
/// has IPVS's connections from the kernel's sync daemon and their conntrack entries
/// (with the SNAT port lb1 chose) from lbd's sync link, written as they arrived.
#[test]
#[ignore = "needs IPVS: run in the VM"]
fn vm_failover_with_vrrpd_and_lbd_keeps_every_synced_connection() {
    let mut s = Scenario::start(true);
    s.crash_lb1();
    let kept = s.count("after lb1's crash");
    // lb2 kept lb1's mappings: the servers see the same 4-tuples.
    for c in s.held.iter() {
        if let Some(lines) = conntrack(s.cluster.host("lb2"), &c.local()) {
            let port = lines.iter().find_map(|l| snat_port(l));
            assert_eq!(port, Some(c.seen_from.port()), "{lines:?}");
        }
    }
    s.fresh_through_lb2();
    assert_eq!(kept, Kept::ALL);
}

/// The control: without `[sync]`, lb2's IPVS knows none of the connections, and
/// none survives.
#[test]
#[ignore = "needs IPVS: run in the VM"]
fn vm_failover_without_sync_loses_the_connections() {
    let mut s = Scenario::start(false);
    s.crash_lb1();
    let kept = s.count("after lb1's crash");
    s.fresh_through_lb2();
    assert_eq!(
        kept,
        Kept {
            plain: 0,
            pooled: 0
        }
    );
}

/// A failover drill out and back: lb1 releases, the connections carry data through
/// lb2, lb1 preempts back once its lbd has lb2's state (which replaces the
/// entries lb1 kept); every connection survives both moves.
#[test]
#[ignore = "needs IPVS: run in the VM"]
fn vm_drill_out_and_back_keeps_every_synced_connection() {
    let mut s = Scenario::start(true);
    let vrrpd1 = s.cluster.path("lb1", "vrrpd.sock");
    let drill = thread::spawn(move || request(&vrrpd1, "drill.failover", serde_json::json!({})));
    s.cluster.wait_master("lb2");
    let out = s.count("drill: through lb2");
    let reply = drill.join().unwrap();
    note(&format!("drill reply: {reply:?}"));
    s.cluster.wait_master("lb1");
    sync_daemon(s.cluster.host("lb1"), "master");
    let back = s.count("drill: back through lb1");
    let lbd1 = s.cluster.status("lb1");
    note(&format!(
        "lb1's last prepare: {}",
        lbd1["prepare"]["last"]["reply"]
    ));
    assert_eq!((out, back), (Kept::ALL, Kept::ALL));
}

/// Maintenance on lb1 and off again: lb1 releases its group, every connection
/// carries data through lb2; connections made meanwhile go through lb2 and reach
/// lb1 (IPVS's table by lb2's sync daemon, conntrack by lbd's link); lb1 takes
/// the group back once its lbd has lb2's state. Every connection survives, those
/// made during the window too.
#[test]
#[ignore = "needs IPVS: run in the VM"]
fn vm_maintenance_on_and_off_keeps_every_synced_connection() {
    let mut s = Scenario::start(true);
    s.cluster
        .vrrpd("lb1", "maintenance", serde_json::json!({ "on": true }));
    s.cluster.wait_master("lb2");
    sync_daemon(s.cluster.host("lb2"), "master");
    let on = s.count("maintenance on: through lb2");
    let mut during = Held::open(s.cluster.host("client"), HELD / 2);
    s.wait_synced("lb1", &during);
    s.cluster
        .vrrpd("lb1", "maintenance", serde_json::json!({ "on": false }));
    s.cluster.wait_master("lb1");
    sync_daemon(s.cluster.host("lb1"), "master");
    let off = s.count("maintenance off: back through lb1");
    let back = during.count(
        &s.cluster,
        "sync true: made during maintenance: through lb1",
    );
    assert_eq!((on, off, back), (Kept::ALL, Kept::ALL, during.all()));
}

/// vrrpd on lb1 stopped (SIGTERM: priority 0, VIPs removed) and started again;
/// then lb1's lbd killed alone while lb1 is MASTER (the kernel keeps IPVS, its sync
/// daemon and the SNAT rules, so traffic flows on) and started again, which streams
/// lb1's connections to lb2 anew; then lb1 crashes. Every connection survives each
/// step.
#[test]
#[ignore = "needs IPVS: run in the VM"]
fn vm_sigterm_of_vrrpd_and_lbd_dying_alone_keep_every_synced_connection() {
    let mut s = Scenario::start(true);
    s.vrrpd1.signal(libc::SIGTERM).unwrap();
    assert!(s.vrrpd1.wait_timeout(PATIENCE).unwrap().is_some());
    s.cluster.wait_master("lb2");
    sync_daemon(s.cluster.host("lb2"), "master");
    let stopped = s.count("vrrpd on lb1 stopped: through lb2");
    s.vrrpd1 = s.cluster.start("lb1", "vrrpd");
    s.cluster.wait_master("lb1");
    sync_daemon(s.cluster.host("lb1"), "master");
    let restarted = s.count("vrrpd on lb1 restarted: back through lb1");

    s.lbd1.signal(libc::SIGKILL).unwrap();
    assert!(s.lbd1.wait_timeout(PATIENCE).unwrap().is_some());
    let lbd_dead = s.count("lbd on lb1 dead: through lb1");
    s.lbd1 = s.cluster.start("lb1", "lbd");
    s.cluster.wait_applied("lb1");
    s.cluster.wait_master("lb1");
    wait_for("lb1's new lbd sent lb2 a dump", PATIENCE, || {
        s.cluster.status("lb1")["sync"]["dumps_sent"]
            .as_u64()
            .is_some_and(|n| n > 0)
    });
    wait_sync_complete(&s.cluster.lbd_socket("lb2"), 2 * HELD as u64, PATIENCE);
    s.crash_lb1();
    let crashed = s.count("lbd on lb1 restarted, then lb1's crash: through lb2");
    assert_eq!(
        [stopped, restarted, lbd_dead, crashed],
        [Kept::ALL, Kept::ALL, Kept::ALL, Kept::ALL]
    );
}

/// lb1 crashes, connections are opened through lb2, and lb1 reboots: its namespace
/// is made anew, so its kernel has no IPVS connection, no conntrack entry and no
/// ruleset. Its lbd and vrrpd start, get lb2's state, and lb1 preempts back: the
/// connections lb1 held before its crash and those it never saw survive.
#[test]
#[ignore = "needs IPVS: run in the VM"]
fn vm_fail_back_after_a_reboot_keeps_every_synced_connection() {
    let mut s = Scenario::start(true);
    s.crash_lb1();
    let crashed = s.count("after lb1's crash: through lb2");
    let mut through_lb2 = Held::open(s.cluster.host("client"), HELD);
    s.cluster.lab.reboot("lb1").unwrap();
    let lb1 = s.cluster.host("lb1");
    assert_eq!(
        conntrack_count(lb1),
        0,
        "the rebooted kernel holds no entry"
    );
    s.lbd1 = s.cluster.start("lb1", "lbd");
    s.cluster.wait_applied("lb1");
    s.vrrpd1 = s.cluster.start("lb1", "vrrpd");
    s.cluster.wait_master("lb1");
    sync_daemon(s.cluster.host("lb1"), "master");
    note(&format!(
        "lb1 after its reboot: sync {}; ipvsadm -Lnc lists {} connections",
        s.cluster.status("lb1")["sync"],
        s.cluster
            .host("lb1")
            .exec_ok(&["ipvsadm", "-Lnc"])
            .unwrap()
            .lines()
            .filter(|l| l.contains("ESTABLISHED"))
            .count()
    ));
    let back = s.count("after lb1's reboot: back through lb1");
    let new = through_lb2.count(
        &s.cluster,
        "sync true: opened through lb2: back through lb1",
    );
    assert_eq!(
        (crashed, back, new),
        (Kept::ALL, Kept::ALL, through_lb2.all())
    );
}

/// lb2's lbd (the backup's) is killed and started again: it gets lb1's state anew
/// (its kernel kept IPVS's synced connections; lbd's link sends a dump), and lb1's
/// crash then keeps every connection.
#[test]
#[ignore = "needs IPVS: run in the VM"]
fn vm_lbd_dying_alone_on_the_backup_keeps_every_synced_connection() {
    let mut s = Scenario::start(true);
    s.lbd2.signal(libc::SIGKILL).unwrap();
    assert!(s.lbd2.wait_timeout(PATIENCE).unwrap().is_some());
    s.lbd2 = s.cluster.start("lb2", "lbd");
    s.cluster.wait_applied("lb2");
    sync_daemon(s.cluster.host("lb2"), "backup");
    wait_sync_complete(&s.cluster.lbd_socket("lb2"), 2 * HELD as u64, PATIENCE);
    let still = s.count("lbd on lb2 restarted: through lb1");
    s.crash_lb1();
    let crashed = s.count("lbd on lb2 restarted, then lb1's crash: through lb2");
    assert_eq!((still, crashed), (Kept::ALL, Kept::ALL));
}

/// Other synced entries lb2 holds at the takeover. The namespace scenario holds
/// 100,000; under emulation (2 CPUs, TCG) writing 10,000 into lb1's kernel took
/// 12 s and lb1's lbd streamed them to lb2's kernel at 350-500 a second (in lb2's
/// after 29 s; 20,000: 96-154 s), so 100,000 would add 4-6 minutes to the VM stage.
const BACKGROUND: usize = 10_000;

/// A takeover while lb1 syncs [`BACKGROUND`] other entries besides the held
/// connections: they are in lb2's kernel before the takeover, so lb2's prepare
/// writes only what is not there yet (not the table); every connection survives.
#[test]
#[ignore = "needs IPVS: run in the VM"]
fn vm_takeover_with_background_entries_keeps_every_synced_connection() {
    let mut s = Scenario::start(true);
    let started = Instant::now();
    background_entries(s.cluster.host("lb1"), BACKGROUND);
    let written = started.elapsed();
    let total = (BACKGROUND + 2 * HELD) as u64;
    wait_sync_complete(&s.cluster.lbd_socket("lb2"), total, 4 * PATIENCE);
    let synced = started.elapsed();
    let in_kernel = conntrack_count(s.cluster.host("lb2"));
    note(&format!(
        "{BACKGROUND} other entries: written into lb1's kernel in {:.1} s, in lb2's (BACKUP) after {:.1} s: {in_kernel} entries there",
        written.as_secs_f64(),
        synced.as_secs_f64()
    ));
    let sync = |node: &str| s.cluster.status(node)["sync"].clone();
    let (lb1, lb2) = (sync("lb1"), sync("lb2"));
    note(&format!(
        "lb1 sent {} events, {} dumps, lost events {} times; lb2 received {} lines, wrote {} entries",
        lb1["events_sent"], lb1["dumps_sent"], lb1["events_lost"], lb2["lines_received"], lb2["entries_written"]
    ));
    assert!(
        in_kernel >= total,
        "written before the takeover: {in_kernel}"
    );
    s.vrrpd1.signal(libc::SIGTERM).unwrap();
    assert!(s.vrrpd1.wait_timeout(PATIENCE).unwrap().is_some());
    s.cluster.wait_master("lb2");
    sync_daemon(s.cluster.host("lb2"), "master");
    let kept = s.count(&format!(
        "takeover with {BACKGROUND} other entries: through lb2"
    ));
    let prepare = s.cluster.status("lb2")["prepare"]["last"]["reply"].clone();
    note(&format!("lb2's prepare: {prepare}"));
    let sync = &prepare["sync"];
    let wrote = ["created", "replaced", "updated"]
        .iter()
        .map(|k| sync[*k].as_u64().unwrap())
        .sum::<u64>();
    assert!(
        wrote < 1000,
        "the takeover wrote only what was not yet in the kernel, not the table: {prepare}"
    );
    assert_eq!(kept, Kept::ALL);
}

/// `[dataplane] flowtable = true` with the nft backend on Debian's kernel: lbd sets
/// up `inet lbsuite_flow` over the example's two interfaces (those of its instances
/// and SNAT rule), a balanced connection is offloaded (conntrack status OFFLOAD) and
/// echoes on, a restart adopts both tables without a commit, and `lbd --teardown`
/// removes the flowtable's table with lbd's own.
#[test]
#[ignore = "needs nf_flow_table: run in the VM"]
fn vm_lbd_sets_up_the_flowtable_and_teardown_removes_it() {
    let cluster = Cluster::new();
    let _servers = responders(&cluster, &[80]);
    let edits = [
        NO_CHECKS,
        ("backend = \"auto\"", "backend = \"nft\""),
        ("flowtable = false", "flowtable = true"),
    ];
    cluster.write_config("lb1", &edits, "");
    let mut lbd = cluster.start("lb1", "lbd");
    let status = cluster.wait_applied("lb1");
    assert_eq!(status["backend"]["name"], "nft");
    let lb1 = cluster.host("lb1");
    let listed = lb1
        .exec_ok(&["nft", "list", "table", "inet", "lbsuite_flow"])
        .unwrap();
    assert!(listed.contains("devices = { eth0, eth1 }"), "{listed}");
    assert!(
        listed.contains("ct state established ct status dnat flow add @ft"),
        "{listed}"
    );
    // The VIPs by hand: no vrrpd here.
    for (iface, addr) in [("eth0", VIP), ("eth1", SNAT_VIP)] {
        lb1.add_address(iface, integration::Prefix::new(addr.parse().unwrap(), 24))
            .unwrap();
    }
    let mut conn = Conn::open(cluster.host("client"), &format!("{VIP}:80"));
    assert_eq!(conn.seen_from.ip().to_string(), SNAT_VIP);
    for i in 0..5 {
        assert_eq!(
            conn.echo(&format!("line {i}")).unwrap(),
            format!("line {i}")
        );
    }
    let filter = ctsync::FlowFilter {
        orig_dst: vec![VIP.parse().unwrap()],
        ..ctsync::FlowFilter::default()
    };
    let entries = lb1
        .run_in(|| ctsync::Conntrack::open().and_then(|mut ct| ct.dump(&filter)))
        .unwrap()
        .unwrap();
    let port = conn.stream.local_addr().unwrap().port();
    let entry = entries
        .iter()
        .find(|e| e.orig.src_port() == Some(port))
        .unwrap();
    assert!(
        entry.status.has(ctsync::Status::OFFLOAD),
        "status {:#x}",
        entry.status.0
    );
    let log = lbd.stdout() + &lbd.stderr();
    let line = log
        .lines()
        .find(|l| l.contains("flowtable on"))
        .unwrap_or("");
    note(&format!("lbd with flowtable = true: {line}"));
    assert!(line.contains("devices=eth0,eth1"), "{}", log_tail(&lbd));
    lbd.signal(libc::SIGTERM).unwrap();
    assert!(lbd.wait_timeout(PATIENCE).unwrap().is_some());
    // A restart finds the flowtable as it left it and commits nothing: the nft
    // table is adopted by record, not read back.
    let mut again = cluster.start("lb1", "lbd");
    cluster.wait_applied("lb1");
    let log = again.stdout() + &again.stderr();
    assert!(
        log.contains("adopted as the previous lbd left it"),
        "{}",
        log_tail(&again)
    );
    assert_eq!(conn.echo("after the restart").unwrap(), "after the restart");
    again.signal(libc::SIGTERM).unwrap();
    assert!(again.wait_timeout(PATIENCE).unwrap().is_some());
    let config = cluster.path("lb1", "cluster.toml");
    let lbd_path = program("lbd");
    let out = lb1
        .exec(&[
            lbd_path.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--node",
            "lb1",
            "--teardown",
        ])
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let tables = lb1.exec_ok(&["nft", "list", "tables"]).unwrap();
    assert!(!tables.contains("lbsuite"), "{tables}");
}

/// `host`'s conntrack entries to the VIP (through ctsync: the guest's kernel may not
/// list /proc/net/nf_conntrack).
fn vip_entries(host: &Host) -> Vec<ctsync::Entry> {
    let filter = ctsync::FlowFilter {
        orig_dst: vec![VIP.parse().unwrap()],
        ..ctsync::FlowFilter::default()
    };
    host.run_in(|| ctsync::Conntrack::open().and_then(|mut ct| ct.dump(&filter)))
        .unwrap()
        .unwrap()
}

/// How many of `held` have an entry in `entries` with the SNAT port their server
/// saw, and how many of those are offloaded.
fn synced_and_offloaded(entries: &[ctsync::Entry], held: &Held) -> (usize, usize) {
    let mut found = (0, 0);
    for c in held.iter() {
        let port = c.stream.local_addr().unwrap().port();
        if let Some(e) = entries.iter().find(|e| {
            e.orig.src_port() == Some(port) && e.reply.dst_port() == Some(c.seen_from.port())
        }) {
            found.0 += 1;
            found.1 += usize::from(e.status.has(ctsync::Status::OFFLOAD));
        }
    }
    found
}

/// Both nodes on the nft backend with `flowtable = true` and lbd's sync link, lb1
/// MASTER, lb2 BACKUP, `HELD` plain and pooled connections held through lb1,
/// offloaded there and streamed to lb2 (with lb1's SNAT ports).
struct Offloaded {
    cluster: Cluster,
    _servers: Vec<TcpListener>,
    lbd1: Process,
    _lbd2: Process,
    vrrpd1: Process,
    _vrrpd2: Process,
    held: Held,
}

impl Offloaded {
    fn start() -> Offloaded {
        let cluster = Cluster::new();
        let servers = responders(&cluster, &[80, 81]);
        let edits = [
            NO_CHECKS,
            ("backend = \"auto\"", "backend = \"nft\""),
            ("flowtable = false", "flowtable = true"),
            ("prepare_budget_ms = 50", "prepare_budget_ms = 5000"),
        ];
        let (_, [lbd1, lbd2, vrrpd1, vrrpd2]) = cluster.start_pair(&edits, "nft");
        let held = Held::open(cluster.host("client"), HELD);
        let s = Offloaded {
            cluster,
            _servers: servers,
            lbd1,
            _lbd2: lbd2,
            vrrpd1,
            _vrrpd2: vrrpd2,
            held,
        };
        let on_lb1 = s.on("lb1");
        assert_eq!(on_lb1, (s.all(), s.all()), "(entries, offloaded) on lb1");
        let mut on_lb2 = (0, 0);
        wait_for(
            "lb2 holds every connection with lb1's SNAT port",
            PATIENCE,
            || {
                on_lb2 = s.on("lb2");
                on_lb2.0 == s.all()
            },
        );
        note(&format!(
            "flowtable: (entries, offloaded) of the {} held connections: lb1 {on_lb1:?}, lb2 before the takeover {on_lb2:?}",
            s.all()
        ));
        s
    }

    /// How many connections are held (plain and pooled).
    fn all(&self) -> usize {
        2 * HELD
    }

    /// (entries, offloaded) of the held connections in `node`'s conntrack.
    fn on(&self, node: &str) -> (usize, usize) {
        synced_and_offloaded(&vip_entries(self.cluster.host(node)), &self.held)
    }
}

/// The nft backend with `flowtable = true` on both nodes and lbd's sync link: the
/// connections held through lb1 are offloaded there, lbd streams them to lb2 all
/// the same (with lb1's SNAT ports), and after lb1's crash every one echoes on
/// through lb2, which offloads them in turn.
#[test]
#[ignore = "needs nf_flow_table: run in the VM"]
fn vm_failover_with_the_flowtable_keeps_every_synced_connection() {
    let mut s = Offloaded::start();
    s.vrrpd1.signal(libc::SIGKILL).unwrap();
    s.lbd1.signal(libc::SIGKILL).unwrap();
    assert!(s.lbd1.wait_timeout(PATIENCE).unwrap().is_some());
    s.cluster.lab.set_cable("lb1", "eth0", false).unwrap();
    s.cluster.lab.set_cable("lb1", "eth1", false).unwrap();
    s.cluster.wait_master("lb2");
    let kept = s.held.count(&s.cluster, "flowtable: after lb1's crash");
    let after = s.on("lb2");
    note(&format!(
        "flowtable: lb2 after the takeover (entries, offloaded): {after:?}"
    ));
    assert_eq!(kept, Kept::ALL);
    assert_eq!(after, (s.all(), s.all()), "lb2 offloads them in turn");
}

/// A drill out and back with offloaded connections: lb1 releases, the connections
/// (offloaded on lb1, whose kernel reports nothing while they are) carry data
/// through lb2 and are offloaded there; lb1 preempts back once its lbd has lb2's
/// state, read from entries lb2 offloads too. Every connection survives both moves
/// and ends offloaded on lb1 again.
#[test]
#[ignore = "needs nf_flow_table: run in the VM"]
fn vm_drill_out_and_back_with_the_flowtable_keeps_every_connection() {
    let mut s = Offloaded::start();
    let vrrpd1 = s.cluster.path("lb1", "vrrpd.sock");
    let drill = thread::spawn(move || request(&vrrpd1, "drill.failover", serde_json::json!({})));
    s.cluster.wait_master("lb2");
    let out = s.held.count(&s.cluster, "flowtable drill: through lb2");
    let on_lb2 = s.on("lb2");
    let reply = drill.join().unwrap();
    note(&format!(
        "flowtable drill: lb2 while it carries (entries, offloaded) {on_lb2:?}; drill reply: {reply:?}"
    ));
    s.cluster.wait_master("lb1");
    let back = s
        .held
        .count(&s.cluster, "flowtable drill: back through lb1");
    let on_lb1 = s.on("lb1");
    note(&format!(
        "flowtable drill: lb1 after the return (entries, offloaded) {on_lb1:?}; lb1's last prepare: {}",
        s.cluster.status("lb1")["prepare"]["last"]["reply"]
    ));
    assert_eq!((out, back), (Kept::ALL, Kept::ALL));
    assert_eq!(
        on_lb2,
        (s.all(), s.all()),
        "lb2 offloads them while it carries"
    );
    assert_eq!(on_lb1.0, s.all(), "lb1 holds every connection again");
}
