//! Active-active behind ECMP, in network namespaces (needs root and FRR): a router
//! running FRR (zebra + bgpd, multipath) in front of three balancers, each running
//! lbd and its own FRR instance, which lbd drives with vtysh to announce the VIP.
//!
//! ```text
//!  client 198.18.20.10 (+ .30-.53) ── clients ── router .1 (AS 65000, maximum-paths 8)
//!                                                   │ 198.18.0.1
//!                      ┌──────────── transit 198.18.0.0/24 ────────────┐
//!                    lb1 .11            lb2 .12            lb3 .13      (AS 65010 each)
//!                      └──────────── server 198.18.1.0/24 ─────────────┘
//!                    srv1 .21           srv2 .22           srv3 .23
//! ```
//!
//! The VIP 198.18.5.100 is on no link: the router reaches it by the three balancers'
//! BGP routes, spread over them by an L4 hash. Each balancer DNATs by Maglev (every
//! node the same table) and SNATs to its own server-side address, which the servers
//! name in their replies: a reply says which server and which balancer carried it.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use integration::{Host, HostSpec, Lab, Prefix, Process, Role, Topology};
use serde_json::Value;
use support::{request, sample, scrape, wait_for, Responder, PATIENCE};

/// The tests here run one at a time: two FRR labs at once on two CPUs make BFD at
/// 100 ms flap.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

const ECMP_VIP: &str = "198.18.5.100";
/// A second VIP whose one service has a health check.
const CHECKED_VIP: &str = "198.18.5.101";
const NODES: [(&str, u8); 3] = [("lb1", 11), ("lb2", 12), ("lb3", 13)];
const SERVERS: [(&str, u8); 3] = [("srv1", 21), ("srv2", 22), ("srv3", 23)];
/// Client source addresses for new connections (198.18.20.30 ..).
const SOURCES: u8 = 24;
/// Long-lived connections held across the node's death.
const HELD: usize = 30;
/// The router's hold time for its balancer peers (keepalive 1 s).
const HOLD_S: u32 = 3;

fn v4(c: u8, d: u8, len: u8) -> Prefix {
    Prefix::v4(198, 18, c, d, len)
}

fn v6(text: &str) -> Prefix {
    text.parse().unwrap()
}

/// The lab of both tests: IPv4 as drawn above, and IPv6 beside it (clients
/// 2001:db8:0:20::/64, transit 2001:db8::/64, servers 2001:db8:0:1::/64, the IPv6
/// VIP in 2001:db8:0:5::/64).
fn topology() -> Topology {
    let mut t = Topology::new()
        .bridge("clients")
        .bridge("transit")
        .bridge("server")
        .host(
            HostSpec::new("client", Role::Client)
                .interface(
                    "eth0",
                    "clients",
                    &[v4(20, 10, 24), v6("2001:db8:0:20::10/64")],
                )
                .route(v4(5, 0, 24), "198.18.20.1".parse().unwrap())
                .route(v6("2001:db8:0:5::/64"), "2001:db8:0:20::1".parse().unwrap()),
        )
        .host(
            HostSpec::new("router", Role::Balancer)
                .interface(
                    "eth0",
                    "clients",
                    &[v4(20, 1, 24), v6("2001:db8:0:20::1/64")],
                )
                .interface("eth1", "transit", &[v4(0, 1, 24), v6("2001:db8::1/64")]),
        );
    for (name, h) in NODES {
        t = t.host(
            HostSpec::new(name, Role::Balancer)
                .interface(
                    "eth0",
                    "transit",
                    &[v4(0, h, 24), v6(&format!("2001:db8::{h}/64"))],
                )
                .interface(
                    "eth1",
                    "server",
                    &[v4(1, h, 24), v6(&format!("2001:db8:0:1::{h}/64"))],
                )
                .route(v4(20, 0, 24), "198.18.0.1".parse().unwrap())
                .route(v6("2001:db8:0:20::/64"), "2001:db8::1".parse().unwrap()),
        );
    }
    for (name, h) in SERVERS {
        t = t.host(HostSpec::new(name, Role::Server).interface(
            "eth0",
            "server",
            &[v4(1, h, 24), v6(&format!("2001:db8:0:1::{h}/64"))],
        ));
    }
    t
}

/// The cluster's file as `node` has it: the same on every node but for the control
/// sockets, which here share one directory.
fn cluster_toml(dir: &Path, pathspace: &str, node: &str) -> String {
    cluster_toml_with(dir, &frr_announce(pathspace), node)
}

/// The `[announce]` keys of nodes announcing through FRR pathspaces `<pathspace>-<node>`.
fn frr_announce(pathspace: &str) -> String {
    format!("daemon = \"frr\"\nasn = 65010\npathspace = \"{pathspace}-{{node}}\"\n")
}

/// The file's sections before the nodes: cluster `name` in active-active mode,
/// `announce`'s keys, the nft backend, `node`'s control sockets in `dir`.
fn cluster_head(name: &str, dir: &Path, announce: &str, node: &str) -> String {
    format!(
        r#"[cluster]
name = "{name}"
mode = "active-active"

[announce]
{announce}refresh_ms = 1000

[dataplane]
backend = "nft"

[control]
lbd_socket = "{dir}/{node}-lbd.sock"
vrrpd_socket = "{dir}/{node}-vrrpd.sock"
"#,
        dir = dir.display()
    )
}

/// As [`cluster_toml`] with `announce` as the `[announce]` section's keys.
fn cluster_toml_with(dir: &Path, announce: &str, node: &str) -> String {
    let mut text = cluster_head("ecmp", dir, announce, node);
    for (name, h) in NODES {
        text.push_str(&format!(
            "\n[[node]]\nname = \"{name}\"\naddresses = {{ eth0 = [\"198.18.0.{h}/24\"], eth1 = [\"198.18.1.{h}/24\"] }}\n"
        ));
    }
    for (service, port) in [("web", 80), ("echo", 9000)] {
        text.push_str(&format!(
            "\n[[service]]\nname = \"{service}\"\nvip = \"{ECMP_VIP}\"\nport = {port}\nscheduler = \"mh\"\n"
        ));
        for (name, h) in SERVERS {
            text.push_str(&format!(
                "\n[[service.server]]\nname = \"{name}\"\naddress = \"198.18.1.{h}\"\n"
            ));
        }
    }
    text.push_str(&format!(
        "\n[[service]]\nname = \"api\"\nvip = \"{CHECKED_VIP}\"\nport = 80\nscheduler = \"mh\"\n"
    ));
    for (name, h) in SERVERS {
        text.push_str(&format!(
            "\n[[service.server]]\nname = \"{name}\"\naddress = \"198.18.1.{h}\"\nport = 8080\ncheck = \"api-tcp\"\n"
        ));
    }
    text.push_str(
        "\n[[check]]\nname = \"api-tcp\"\ntype = \"tcp\"\ninterval_ms = 200\ntimeout_ms = 100\nrise = 1\nfall = 2\n",
    );
    text.push_str(&format!(
        "\n[[nat]]\nname = \"to-api\"\nout_interface = \"eth1\"\nprotocol = \"tcp\"\ndestination = \"{CHECKED_VIP}\"\nsnat = {{ node_address = \"eth1\" }}\n"
    ));
    text.push_str(&format!(
        "\n[[nat]]\nname = \"to-servers\"\nout_interface = \"eth1\"\nprotocol = \"tcp\"\ndestination = \"{ECMP_VIP}\"\nsnat = {{ node_address = \"eth1\" }}\n"
    ));
    text
}

/// The pathspaces' run directories under /var/run/frr, removed on drop (after the
/// daemons, which are declared later and so dropped first).
struct FrrDirs(Vec<PathBuf>);

impl Drop for FrrDirs {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Starts zebra and bgpd of pathspace `ps` in `host` with `conf`, in the foreground
/// (the guards stop them); waits for bgpd's vty socket.
fn start_frr(host: &Host, ps: &str, conf: &Path, dirs: &mut FrrDirs) -> Vec<Process> {
    let run = PathBuf::from(format!("/var/run/frr/{ps}"));
    std::fs::create_dir_all(&run).unwrap();
    dirs.0.push(run.clone());
    let status = std::process::Command::new("chown")
        .args(["frr:frr", "/var/run/frr"])
        .arg(&run)
        .status()
        .unwrap();
    assert!(status.success(), "chown frr:frr {}", run.display());
    let mut out = Vec::new();
    // bfdd gets only the bfd block: an `exit` at the top of a daemon's file ends
    // its configuration mode, and the other daemons do not know `bfd`.
    let bfd_conf = conf.with_extension("bfd.conf");
    std::fs::write(&bfd_conf, BFD_PROFILE).unwrap();
    for daemon in ["zebra", "bfdd", "bgpd"] {
        let file = if daemon == "bfdd" { &bfd_conf } else { conf };
        let mut cmd = host.command(format!("/usr/lib/frr/{daemon}"));
        cmd.args(["-N", ps, "-f"])
            .arg(file)
            .args(["--log", "stdout"]);
        out.push(host.spawn_command(cmd, &format!("{ps}-{daemon}")).unwrap());
        let socket = run.join(format!("{daemon}.vty"));
        wait_for(&format!("{ps} {daemon} up"), PATIENCE, || socket.exists());
    }
    out
}

/// BFD every 100 ms, down after 3 missed: for lb1 and lb2, not lb3 (whose death the
/// hold timer detects).
const BFD_PROFILE: &str = "bfd\n profile fast\n  receive-interval 100\n  transmit-interval 100\n  detect-multiplier 3\n exit\nexit\n";

fn with_bfd(h: u8) -> bool {
    h != 13
}

fn router_conf() -> String {
    let mut c = String::from(
        "hostname router\nrouter bgp 65000\n bgp router-id 198.18.0.1\n no bgp ebgp-requires-policy\n",
    );
    for (_, h) in NODES {
        c.push_str(&format!(
            " neighbor 198.18.0.{h} remote-as 65010\n neighbor 198.18.0.{h} timers 1 {HOLD_S}\n neighbor 198.18.0.{h} timers connect 1\n"
        ));
        if with_bfd(h) {
            c.push_str(&format!(" neighbor 198.18.0.{h} bfd profile fast\n"));
        }
    }
    c.push_str(" address-family ipv4 unicast\n  maximum-paths 8\n exit-address-family\nexit\n");
    c
}

fn balancer_conf(name: &str, h: u8) -> String {
    let bfd = if with_bfd(h) {
        " neighbor 198.18.0.1 bfd profile fast\n"
    } else {
        ""
    };
    format!(
        "hostname {name}\nrouter bgp 65010\n bgp router-id 198.18.0.{h}\n no bgp ebgp-requires-policy\n no bgp network import-check\n neighbor 198.18.0.1 remote-as 65000\n neighbor 198.18.0.1 timers 1 {HOLD_S}\n neighbor 198.18.0.1 timers connect 1\n neighbor 198.18.0.1 advertisement-interval 0\n{bfd}exit\n"
    )
}

/// The router's next hops for the VIP, as the kernel holds them.
fn router_paths(router: &Host) -> BTreeSet<String> {
    paths_to(router, ECMP_VIP)
}

/// The router's next hops for `vip`.
fn paths_to(router: &Host, vip: &str) -> BTreeSet<String> {
    let Ok(text) = router.ip(&["route", "show", vip]) else {
        return BTreeSet::new();
    };
    text.split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "via")
        .map(|w| w[1].to_owned())
        .collect()
}

/// The balancer (by its server-side address) the router sends the client's held
/// connection from source port `port` to now.
fn router_choice(router: &Host, port: &str) -> String {
    let text = router
        .ip(&[
            "route",
            "get",
            ECMP_VIP,
            "from",
            "198.18.20.10",
            "iif",
            "eth0",
            "ipproto",
            "tcp",
            "sport",
            port,
            "dport",
            "9000",
        ])
        .unwrap_or_default();
    let via = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .find(|w| w[0] == "via")
        .map(|w| w[1].to_owned())
        .unwrap_or_default();
    via.replacen("198.18.0.", "198.18.1.", 1)
}

fn paths_of(nodes: &[u8]) -> BTreeSet<String> {
    nodes.iter().map(|h| format!("198.18.0.{h}")).collect()
}

/// Answers each line with "<server> <peer address>\n" (the peer is the balancer's
/// SNAT address) until the connection closes.
struct Echo {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Echo {
    fn start(host: &Host, addr: &str, name: &str) -> Echo {
        let listener = host.tcp_listen(addr.parse().unwrap()).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, name) = (Arc::clone(&stop), name.to_owned());
        let thread = thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, peer)) => {
                        let name = name.clone();
                        thread::spawn(move || {
                            let _ = s.set_nonblocking(false);
                            let Ok(mut w) = s.try_clone() else { return };
                            for line in BufReader::new(s).lines() {
                                if line.is_err() || writeln!(w, "{name} {}", peer.ip()).is_err() {
                                    return;
                                }
                            }
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Echo {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One round trip on a held connection: (server, balancer's SNAT address), or `None`
/// if the connection is broken.
fn ping(conn: &mut TcpStream) -> Option<(String, String)> {
    conn.write_all(b"ping\n").ok()?;
    let mut line = String::new();
    let mut reader = BufReader::new(conn.try_clone().ok()?);
    reader.read_line(&mut line).ok()?;
    let mut it = line.split_whitespace();
    Some((it.next()?.to_owned(), it.next()?.to_owned()))
}

/// One GET from source address `src`: (server, balancer's SNAT address).
fn fetch_from(client: &Host, src: &str) -> Option<(String, String)> {
    let out = client
        .exec(&[
            "curl",
            "-s",
            "--max-time",
            "3",
            "--interface",
            src,
            &format!("http://{ECMP_VIP}/"),
        ])
        .ok()?;
    let body = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut it = body.split_whitespace();
    Some((it.next()?.to_owned(), it.next()?.to_owned()))
}

fn source(i: u8) -> String {
    format!("198.18.20.{}", 30 + i)
}

/// Which server each source reaches, over `rounds` connections each (new source
/// ports, so the router spreads them over the balancers); also which balancers
/// carried each source's connections.
fn survey(
    client: &Host,
    rounds: usize,
) -> (
    BTreeMap<String, BTreeSet<String>>,
    BTreeMap<String, BTreeSet<String>>,
) {
    let mut servers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut balancers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for i in 0..SOURCES {
        let src = source(i);
        for _ in 0..rounds {
            let (srv, lb) = fetch_from(client, &src)
                .unwrap_or_else(|| panic!("no answer through the VIP from {src}"));
            servers.entry(src.clone()).or_default().insert(srv);
            balancers.entry(src.clone()).or_default().insert(lb);
        }
    }
    (servers, balancers)
}

/// `node` dies without a word: its transit link goes dark and its lbd is killed, so
/// nothing withdraws its route but the router's own detection.
fn die(lab: &Lab, lbds: &BTreeMap<&str, Process>, node: &str) {
    lab[node].ip(&["link", "set", "eth0", "down"]).unwrap();
    if let Some(p) = lbds.get(node) {
        p.signal(libc::SIGKILL).unwrap();
    }
}

/// Whether this test can run: root (else it is skipped with a word) and the routing
/// daemons (else it fails: scripts/deps.sh installs them).
fn can_run(test: &str, daemons: &[&str]) -> bool {
    if !integration::have_root(test) {
        return false;
    }
    for d in daemons {
        assert!(
            Path::new(d).exists(),
            "{d} is not installed: run scripts/deps.sh"
        );
    }
    true
}

/// The lab of [`topology`] with the router's FRR running `router_conf` and hashing
/// flows by their 5-tuple; the directory of the files and sockets; FRR's run
/// directories and its daemons (a tuple binding drops them first, the lab last).
fn ecmp_lab(router_conf: &str) -> (Lab, tempfile::TempDir, FrrDirs, Vec<Process>) {
    let lab = Lab::up(topology()).unwrap();
    // The router spreads flows by their 5-tuple. Policy 3 (custom fields) hashes the
    // packet's own headers; policy 1 would reuse the hash a local client socket
    // gave the skb (random per socket, and changed by TCP at a retransmission
    // timeout), which only a lab of namespaces has.
    let router = &lab["router"];
    for family in ["ipv4", "ipv6"] {
        router
            .set_sysctl(&format!("net.{family}.fib_multipath_hash_fields"), "0x0037")
            .unwrap();
        router
            .set_sysctl(&format!("net.{family}.fib_multipath_hash_policy"), "3")
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut dirs = FrrDirs(Vec::new());
    let conf = dir.path().join("router-frr.conf");
    std::fs::write(&conf, router_conf).unwrap();
    let daemons = start_frr(router, &format!("{}-router", lab.id()), &conf, &mut dirs);
    (lab, dir, dirs, daemons)
}

/// [`ecmp_lab`] with every balancer's own FRR (`balancer_conf`) running and its
/// lbd file (`cluster`, pathspaces `<lab id>-<node>`) written, lbd not started.
fn frr_cluster(
    router_conf: &str,
    balancer_conf: fn(&str, u8) -> String,
    cluster: fn(&Path, &str, &str) -> String,
) -> (Lab, tempfile::TempDir, FrrDirs, Vec<Process>) {
    let (lab, dir, mut dirs, mut daemons) = ecmp_lab(router_conf);
    let ps = lab.id().to_owned();
    for (name, h) in NODES {
        let config = dir.path().join(format!("{name}.toml"));
        std::fs::write(&config, cluster(dir.path(), &ps, name)).unwrap();
        daemons.extend(balancer_frr(
            &lab,
            dir.path(),
            name,
            &balancer_conf(name, h),
            &mut dirs,
        ));
    }
    (lab, dir, dirs, daemons)
}

/// Starts `node`'s own FRR with `conf_text` (pathspace `<lab id>-<node>`).
fn balancer_frr(
    lab: &Lab,
    dir: &Path,
    node: &str,
    conf_text: &str,
    dirs: &mut FrrDirs,
) -> Vec<Process> {
    let conf = dir.join(format!("{node}-frr.conf"));
    std::fs::write(&conf, conf_text).unwrap();
    start_frr(&lab[node], &format!("{}-{node}", lab.id()), &conf, dirs)
}

/// Starts lbd on `node` with `<dir>/<node>.toml`.
fn lbd(lab: &Lab, dir: &Path, node: &str) -> Process {
    let config = dir.join(format!("{node}.toml"));
    let mut cmd = lab[node].command(env!("CARGO_BIN_EXE_lbd"));
    cmd.args(["--config", config.to_str().unwrap(), "--node", node])
        .env("RUST_LOG", "info");
    lab[node].spawn_command(cmd, "lbd").unwrap()
}

/// An HTTP responder on every server, at the address `addr` gives for its host
/// number.
fn responders(lab: &Lab, addr: impl Fn(u8) -> String) -> Vec<Responder> {
    SERVERS
        .iter()
        .map(|(name, h)| Responder::start(&lab[name], &addr(*h), name))
        .collect()
}

#[test]
fn three_balancers_behind_ecmp_announce_through_frr_and_lose_one() {
    if !can_run(
        "three_balancers_behind_ecmp_announce_through_frr_and_lose_one",
        &["/usr/lib/frr/bgpd"],
    ) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (lab, dir, _dirs, daemons) = frr_cluster(&router_conf(), balancer_conf, cluster_toml);
    let router = &lab["router"];
    let _web = responders(&lab, |h| format!("198.18.1.{h}:80"));
    let _echo: Vec<Echo> = SERVERS
        .iter()
        .map(|(name, h)| Echo::start(&lab[name], &format!("198.18.1.{h}:9000"), name))
        .collect();
    let api = responders(&lab, |h| format!("198.18.1.{h}:8080"));

    let started = Instant::now();
    let mut lbds: BTreeMap<&str, Process> = NODES
        .iter()
        .map(|(name, _)| (*name, lbd(&lab, dir.path(), name)))
        .collect();
    wait_for(
        "the router has a path through every balancer",
        PATIENCE,
        || router_paths(router) == paths_of(&[11, 12, 13]),
    );
    println!(
        "ECMP: 3 paths to {ECMP_VIP} at the router {} ms after the three lbd started",
        started.elapsed().as_millis()
    );

    // The checked service's servers stop answering: every node withdraws its VIP.
    wait_for(
        "the router has every path to the checked VIP",
        PATIENCE,
        || paths_to(router, CHECKED_VIP) == paths_of(&[11, 12, 13]),
    );
    drop(api);
    let lost = Instant::now();
    wait_for("the router drops the checked VIP", PATIENCE, || {
        paths_to(router, CHECKED_VIP).is_empty()
    });
    println!(
        "the checked service's servers stopped: the router lost {CHECKED_VIP} after {} ms (check every 200 ms, fall 2)",
        lost.elapsed().as_millis()
    );
    assert_eq!(
        router_paths(router),
        paths_of(&[11, 12, 13]),
        "the other VIP stays"
    );
    let back = Instant::now();
    let _api = Responder::start(&lab["srv1"], "198.18.1.21:8080", "srv1");
    wait_for(
        "the router has every path to the checked VIP again",
        PATIENCE,
        || paths_to(router, CHECKED_VIP) == paths_of(&[11, 12, 13]),
    );
    println!(
        "one of its servers answers again: the router has 3 paths to {CHECKED_VIP} after {} ms (rise 1)",
        back.elapsed().as_millis()
    );

    // Status: what each node announces, and that its router session took it.
    for (name, _) in NODES {
        let socket = dir.path().join(format!("{name}-lbd.sock"));
        let mut last = Value::Null;
        wait_for(&format!("{name} shows its announcements"), PATIENCE, || {
            last = request(&socket, "status", Value::Null).unwrap_or(Value::Null);
            let a = &last["announce"];
            a["announced"] == serde_json::json!([ECMP_VIP, CHECKED_VIP])
                && a["peers"][0]["state"] == "Established"
                && a["peers"][0]["prefixes_sent"] == 2
        });
        println!("{name} announce status: {}", last["announce"]);
        assert_eq!(
            last["announce"]["members"],
            serde_json::json!(["lb1", "lb2", "lb3"])
        );
        assert_eq!(last["announce"]["daemon"], "frr");
    }

    // The same in lb1's metrics.
    wait_for("lb1's metrics show its announcements", PATIENCE, || {
        let m = scrape(&lab["lb1"], "127.0.0.1:9613");
        sample(&m, "lbd_announce_vips_announced") == Some(2.0)
            && sample(&m, "lbd_announce_vips_wanted") == Some(2.0)
            && sample(&m, "lbd_announce_peers_established") == Some(1.0)
            && sample(&m, "lbd_announce_daemon_up") == Some(1.0)
            && sample(&m, "lbd_announce_drained") == Some(0.0)
    });

    // The operator drains lb1: the router stops sending it flows; resumed, it has
    // them again.
    let lb1_socket = dir.path().join("lb1-lbd.sock");
    let drain = Instant::now();
    let reply = request(&lb1_socket, "announce.drain", Value::Null).unwrap();
    assert_eq!(reply["drained"], true);
    wait_for("the router drops lb1's paths", PATIENCE, || {
        router_paths(router) == paths_of(&[12, 13])
            && paths_to(router, CHECKED_VIP) == paths_of(&[12, 13])
    });
    println!(
        "lb1 drained (announce.drain): the router dropped its paths after {} ms",
        drain.elapsed().as_millis()
    );
    // The drain outlives a restart of lbd: it announces nothing when it comes back.
    if let Some(p) = lbds.remove("lb1") {
        p.stop().unwrap();
    }
    lbds.insert("lb1", lbd(&lab, dir.path(), "lb1"));
    let mut again = Value::Null;
    wait_for("lb1's lbd answers again", PATIENCE, || {
        again = request(&lb1_socket, "status", Value::Null).unwrap_or(Value::Null);
        again["dataplane"]["last_apply"]["ok"] == Value::Bool(true)
    });
    assert_eq!(again["announce"]["drained"], true, "{}", again["announce"]);
    thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        router_paths(router),
        paths_of(&[12, 13]),
        "a drained lbd announced after its restart"
    );
    println!("lb1's lbd restarted while drained: still drained, nothing announced");
    let resume = Instant::now();
    request(&lb1_socket, "announce.resume", Value::Null).unwrap();
    wait_for("the router has lb1's paths again", PATIENCE, || {
        router_paths(router) == paths_of(&[11, 12, 13])
            && paths_to(router, CHECKED_VIP) == paths_of(&[11, 12, 13])
    });
    println!(
        "lb1 resumed (announce.resume): the router had its paths again after {} ms",
        resume.elapsed().as_millis()
    );

    // Every balancer sends a client to the same server: new connections from one
    // source take different balancers (the router hashes ports too) and one server.
    let client = &lab["client"];
    for i in 0..SOURCES {
        client
            .ip(&["addr", "add", &format!("{}/24", source(i)), "dev", "eth0"])
            .unwrap();
    }
    let (before, carried) = survey(client, 6);
    let crossed = carried.values().filter(|b| b.len() > 1).count();
    let per_lb: BTreeMap<&String, usize> =
        carried
            .values()
            .flatten()
            .fold(BTreeMap::new(), |mut m, lb| {
                *m.entry(lb).or_default() += 1;
                m
            });
    println!("{SOURCES} sources x 6 connections: {crossed} sources crossed 2+ balancers; sources seen per balancer {per_lb:?}");
    for (src, servers) in &before {
        assert_eq!(
            servers.len(),
            1,
            "{src} reached {servers:?} through {:?}",
            carried[src]
        );
    }
    assert!(
        crossed > 0,
        "no source's connections took two balancers: {carried:?}"
    );
    let spread: BTreeSet<&String> = before.values().flatten().collect();
    println!("servers reached: {spread:?}");

    // Long-lived connections, spread over the balancers by the router.
    let mut held = hold_connections(client);
    let through = |lb: &str| held.iter().filter(|(_, _, l)| l == lb).count();
    println!(
        "{HELD} held connections: lb1 {}, lb2 {}, lb3 {}",
        through("198.18.1.11"),
        through("198.18.1.12"),
        through("198.18.1.13")
    );

    let predicted = held
        .iter()
        .filter(|(c, _, lb)| {
            router_choice(router, &c.local_addr().unwrap().port().to_string()) == *lb
        })
        .count();
    println!(
        "the router's `ip route get` names the balancer of {predicted} of {HELD} held connections"
    );
    assert_eq!(
        predicted, HELD,
        "the router's choice must be readable to tell kept from moved flows"
    );

    // lb3 dies without a word: its transit link goes dark and its lbd is killed, so
    // nothing withdraws the route; the router's hold timer does.
    let death = Instant::now();
    die(&lab, &lbds, "lb3");
    wait_for("the router drops lb3's path", PATIENCE, || {
        router_paths(router) == paths_of(&[11, 12])
    });
    let withdrawn = death.elapsed();
    println!(
        "lb3 died: the router withdrew its path after {} ms (BGP hold time {HOLD_S} s, keepalive 1 s)",
        withdrawn.as_millis()
    );

    // The router's ECMP is hash-threshold: going from 3 paths to 2 moves some flows
    // of the surviving balancers too. Ask it where each held connection goes now.
    let mut kept = 0;
    let mut kept_idx = Vec::new();
    let mut rehashed = (0, 0);
    let mut lb3_flows = (0, 0);
    for (i, (conn, srv, lb)) in held.iter_mut().enumerate() {
        let port = conn.local_addr().unwrap().port().to_string();
        let now_via = router_choice(router, &port);
        let after = ping(conn);
        if lb.as_str() == "198.18.1.13" {
            match after {
                Some(_) => lb3_flows.0 += 1,
                None => lb3_flows.1 += 1,
            }
            continue;
        }
        if now_via != *lb {
            // Moved by the router to the other survivor: with a per-node SNAT
            // address the server sees another source, so it cannot survive.
            match after {
                Some(_) => rehashed.0 += 1,
                None => rehashed.1 += 1,
            }
            continue;
        }
        let (srv2, lb2) = after
            .unwrap_or_else(|| panic!("a connection the router kept on {lb} broke when lb3 died"));
        assert_eq!(
            (&srv2, &lb2),
            (&*srv, &*lb),
            "a connection the router kept moved"
        );
        kept += 1;
        kept_idx.push(i);
    }
    println!(
        "after lb3's death: {kept} connections the router kept on lb1/lb2 untouched; {} it moved between lb1 and lb2 (ECMP rehash from 3 to 2 paths): {} survived, {} broke; of lb3's {}: {} survived, {} broke (NAT with per-node SNAT: the server sees another source)",
        rehashed.0 + rehashed.1,
        rehashed.0,
        rehashed.1,
        lb3_flows.0 + lb3_flows.1,
        lb3_flows.0,
        lb3_flows.1
    );
    assert!(kept > 0, "no held connection stayed on its balancer");

    // New connections of every source reach the same server as before.
    let (after, carried) = survey(client, 3);
    for (src, servers) in &after {
        assert_eq!(servers, &before[src], "{src} moved to another server");
        assert!(
            !carried[src].contains("198.18.1.13"),
            "{src} still reached lb3"
        );
    }
    println!("after lb3's death every source reaches the server it reached before");

    // lb3 comes back: its link up, lbd started again. The router spreads over three
    // paths again and moves some flows of lb1 and lb2 to lb3 (hash-threshold).
    // Connections opened while lb3 was away, on lb1 and lb2 only.
    let mut during = hold_connections(client);
    let join = Instant::now();
    lab["lb3"].ip(&["link", "set", "eth0", "up"]).unwrap();
    // The link's going down took lb3's route back to the clients with it.
    lab["lb3"]
        .ip(&["route", "replace", "198.18.20.0/24", "via", "198.18.0.1"])
        .unwrap();
    lbds.insert("lb3", lbd(&lab, dir.path(), "lb3"));
    wait_for("the router has lb3's path again", PATIENCE, || {
        router_paths(router) == paths_of(&[11, 12, 13])
    });
    println!(
        "lb3 rejoined (link up, lbd restarted): the router had 3 paths again after {} ms",
        join.elapsed().as_millis()
    );
    let (mut stayed, mut to_lb3) = (0, (0, 0));
    let total = kept_idx.len() + during.len();
    let live = held
        .iter_mut()
        .enumerate()
        .filter(|(i, _)| kept_idx.contains(i))
        .map(|(_, c)| c);
    for (conn, srv, lb) in live.chain(during.iter_mut()) {
        let port = conn.local_addr().unwrap().port().to_string();
        let now_via = router_choice(router, &port);
        let after = ping(conn);
        if now_via == *lb {
            let (srv2, lb2) = after.unwrap_or_else(|| {
                panic!("a connection the router kept on {lb} broke when lb3 joined")
            });
            assert_eq!((&srv2, &lb2), (&*srv, &*lb), "a kept connection moved");
            stayed += 1;
        } else {
            match after {
                Some(_) => to_lb3.0 += 1,
                None => to_lb3.1 += 1,
            }
        }
    }
    println!(
        "after lb3 joined: {stayed} of {total} live connections stayed on their balancer, untouched; {} the router moved to lb3: {} survived, {} broke",
        to_lb3.0 + to_lb3.1,
        to_lb3.0,
        to_lb3.1
    );
    let (joined, carried) = survey(client, 3);
    for (src, servers) in &joined {
        assert_eq!(servers, &before[src], "{src} moved to another server");
    }
    let via_lb3 = carried
        .values()
        .filter(|b| b.contains("198.18.1.13"))
        .count();
    println!("after lb3 joined every source reaches the server it reached before ({via_lb3} of {SOURCES} sources through lb3)");

    // lb2 dies the same way, but the router runs BFD with it.
    let death = Instant::now();
    die(&lab, &lbds, "lb2");
    wait_for("the router drops lb2's path", PATIENCE, || {
        router_paths(router) == paths_of(&[11, 13])
    });
    println!(
        "lb2 died: the router withdrew its path after {} ms (BFD 100 ms x 3)",
        death.elapsed().as_millis()
    );
    let (last, _) = survey(client, 1);
    for (src, servers) in &last {
        assert_eq!(servers, &before[src], "{src} moved to another server");
    }

    // lb1 stops cleanly: lbd withdraws the VIP itself before it exits.
    let stop = Instant::now();
    if let Some(p) = lbds.get("lb1") {
        p.signal(libc::SIGTERM).unwrap();
    }
    wait_for("the router drops lb1's path", PATIENCE, || {
        router_paths(router) == paths_of(&[13])
    });
    println!(
        "lb1's lbd stopped (SIGTERM): the router withdrew its path after {} ms",
        stop.elapsed().as_millis()
    );
    // lb3's status page draws the cluster's nodes and its BGP session (Chromium,
    // when installed: scripts/deps.sh installs it). Last: Chromium loads the CPUs,
    // and BFD at 100 ms with lb1 and lb2 would not survive that on this machine.
    if Path::new("/usr/bin/chromium").exists() {
        let home = format!("HOME={}", dir.path().display());
        let profile = format!("--user-data-dir={}", dir.path().join("chromium").display());
        let dom = lab["lb3"]
            .exec_timeout(
                &[
                    "env",
                    &home,
                    "/usr/bin/chromium",
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                    "--disable-extensions",
                    &profile,
                    "--virtual-time-budget=5000",
                    "--dump-dom",
                    "http://127.0.0.1:9613/status",
                ],
                Duration::from_secs(60),
            )
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        if dom.contains("data-field=\"members\"") {
            assert!(
                dom.contains("lb1, lb2, lb3") || dom.contains("lb1,lb2,lb3"),
                "status page: {dom}"
            );
            assert!(dom.contains("Established"), "status page: {dom}");
            println!("the status page shows the cluster's nodes and the BGP session");
        } else {
            println!("the status page's script did not draw in time (Chromium); not checked");
        }
    }

    drop(lbds);
    drop(daemons);
}

/// BIRD 2 of `node` (AS 65010) peering with the router, exporting the routes of the
/// static protocols in lbd's include file.
fn bird_conf(h: u8, include: &Path) -> String {
    format!(
        "router id 198.18.0.{h};\nprotocol device {{}}\ninclude \"{}\";\nprotocol bgp uplink {{\n  local 198.18.0.{h} as 65010;\n  neighbor 198.18.0.1 as 65000;\n  hold time {HOLD_S};\n  keepalive time 1;\n  connect retry time 1;\n  ipv4 {{ import none; export where proto = \"lbsuite_vips\"; }};\n}}\n",
        include.display()
    )
}

#[test]
fn balancers_announce_through_bird() {
    if !can_run(
        "balancers_announce_through_bird",
        &["/usr/sbin/bird", "/usr/lib/frr/bgpd"],
    ) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (lab, dir, _dirs, mut daemons) = ecmp_lab(&router_conf());
    let router = &lab["router"];
    let announce = format!(
        "daemon = \"bird\"\nbird_socket = \"{d}/{{node}}-bird.ctl\"\nbird_include = \"{d}/{{node}}-vips.conf\"\n",
        d = dir.path().display()
    );
    let _web = responders(&lab, |h| format!("198.18.1.{h}:80"));
    let _echo: Vec<Echo> = SERVERS
        .iter()
        .map(|(name, h)| Echo::start(&lab[name], &format!("198.18.1.{h}:9000"), name))
        .collect();
    let api = responders(&lab, |h| format!("198.18.1.{h}:8080"));
    // lb1 and lb2 with BIRD; lb3 stays off.
    let mut lbds: BTreeMap<&str, Process> = BTreeMap::new();
    for (name, h) in &NODES[..2] {
        let include = dir.path().join(format!("{name}-vips.conf"));
        // BIRD parses its include at start: an empty one until lbd writes it.
        std::fs::write(&include, "protocol static lbsuite_vips { ipv4; }\n").unwrap();
        let conf = dir.path().join(format!("{name}-bird.conf"));
        std::fs::write(&conf, bird_conf(*h, &include)).unwrap();
        let socket = dir.path().join(format!("{name}-bird.ctl"));
        let mut cmd = lab[*name].command("/usr/sbin/bird");
        cmd.arg("-f")
            .arg("-c")
            .arg(&conf)
            .arg("-s")
            .arg(&socket)
            .arg("-P")
            .arg(dir.path().join(format!("{name}-bird.pid")));
        daemons.push(lab[*name].spawn_command(cmd, "bird").unwrap());
        wait_for(&format!("{name}'s BIRD up"), PATIENCE, || socket.exists());
        let config = dir.path().join(format!("{name}.toml"));
        std::fs::write(&config, cluster_toml_with(dir.path(), &announce, name)).unwrap();
        lbds.insert(name, lbd(&lab, dir.path(), name));
    }
    let started = Instant::now();
    wait_for(
        "the router has a path through lb1 and lb2",
        PATIENCE,
        || {
            router_paths(router) == paths_of(&[11, 12])
                && paths_to(router, CHECKED_VIP) == paths_of(&[11, 12])
        },
    );
    println!(
        "BIRD: 2 paths to each VIP at the router {} ms after the lbd started",
        started.elapsed().as_millis()
    );
    let include = std::fs::read_to_string(dir.path().join("lb1-vips.conf")).unwrap();
    assert!(
        include.contains("route 198.18.5.100/32 blackhole;"),
        "{include}"
    );
    let status = request(&dir.path().join("lb1-lbd.sock"), "status", Value::Null).unwrap();
    println!("lb1 announce status: {}", status["announce"]);
    assert_eq!(status["announce"]["daemon"], "bird");
    assert_eq!(
        status["announce"]["announced"],
        serde_json::json!([ECMP_VIP, CHECKED_VIP])
    );

    drop(api);
    let lost = Instant::now();
    wait_for("the router drops the checked VIP", PATIENCE, || {
        paths_to(router, CHECKED_VIP).is_empty()
    });
    println!(
        "BIRD: the checked service's servers stopped: the router lost {CHECKED_VIP} after {} ms",
        lost.elapsed().as_millis()
    );
    assert_eq!(
        router_paths(router),
        paths_of(&[11, 12]),
        "the other VIP stays"
    );

    let stop = Instant::now();
    if let Some(p) = lbds.get("lb2") {
        p.signal(libc::SIGTERM).unwrap();
    }
    wait_for("the router drops lb2's path", PATIENCE, || {
        router_paths(router) == paths_of(&[11])
    });
    println!(
        "BIRD: lb2's lbd stopped (SIGTERM): the router withdrew its path after {} ms",
        stop.elapsed().as_millis()
    );
    let include = std::fs::read_to_string(dir.path().join("lb2-vips.conf")).unwrap();
    assert!(!include.contains("route "), "{include}");
    drop(lbds);
    drop(daemons);
}

/// [`HELD`] connections to the VIP, each with the server and balancer that answered
/// its first ping.
fn hold_connections(client: &Host) -> Vec<(TcpStream, String, String)> {
    (0..HELD)
        .map(|_| {
            let mut c = client
                .tcp_connect(
                    format!("{ECMP_VIP}:9000").parse::<SocketAddr>().unwrap(),
                    Duration::from_secs(5),
                )
                .unwrap();
            c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let (srv, lb) = ping(&mut c).expect("a fresh connection answers");
            (c, srv, lb)
        })
        .collect()
}

/// The IPv6 VIP of [`ipv6_vips_are_announced_through_frr_and_balanced`].
const VIP6: &str = "2001:db8:0:5::100";

/// The cluster's file for the IPv6 test: one IPv6 service on every node.
fn cluster_toml_v6(dir: &Path, pathspace: &str, node: &str) -> String {
    let mut text = cluster_head("ecmp6", dir, &frr_announce(pathspace), node);
    for (name, h) in NODES {
        text.push_str(&format!(
            "\n[[node]]\nname = \"{name}\"\naddresses = {{ eth0 = [\"2001:db8::{h}/64\"], eth1 = [\"2001:db8:0:1::{h}/64\"] }}\n"
        ));
    }
    text.push_str(&format!(
        "\n[[service]]\nname = \"web6\"\nvip = \"{VIP6}\"\nport = 80\nscheduler = \"mh\"\n"
    ));
    for (name, h) in SERVERS {
        text.push_str(&format!(
            "\n[[service.server]]\nname = \"{name}\"\naddress = \"2001:db8:0:1::{h}\"\n"
        ));
    }
    text.push_str(&format!(
        "\n[[nat]]\nname = \"to-servers6\"\nout_interface = \"eth1\"\nprotocol = \"tcp\"\ndestination = \"{VIP6}\"\nsnat = {{ node_address = \"eth1\" }}\n"
    ));
    text
}

/// The router's FRR for the IPv6 test: one IPv6 session per balancer, multipath.
fn router_conf_v6() -> String {
    let mut c = String::from(
        "hostname router\nrouter bgp 65000\n bgp router-id 198.18.0.1\n no bgp ebgp-requires-policy\n no bgp default ipv4-unicast\n",
    );
    for (_, h) in NODES {
        c.push_str(&format!(
            " neighbor 2001:db8::{h} remote-as 65010\n neighbor 2001:db8::{h} timers 1 {HOLD_S}\n neighbor 2001:db8::{h} timers connect 1\n"
        ));
    }
    c.push_str(" address-family ipv6 unicast\n  maximum-paths 8\n");
    for (_, h) in NODES {
        c.push_str(&format!("  neighbor 2001:db8::{h} activate\n"));
    }
    c.push_str(" exit-address-family\nexit\n");
    c
}

/// A balancer's FRR for the IPv6 test: one IPv6 session to the router; lbd adds the
/// `network` lines under `address-family ipv6 unicast`.
fn balancer_conf_v6(name: &str, h: u8) -> String {
    format!(
        "hostname {name}\nrouter bgp 65010\n bgp router-id 198.18.0.{h}\n no bgp ebgp-requires-policy\n no bgp default ipv4-unicast\n no bgp network import-check\n neighbor 2001:db8::1 remote-as 65000\n neighbor 2001:db8::1 timers 1 {HOLD_S}\n neighbor 2001:db8::1 timers connect 1\n neighbor 2001:db8::1 advertisement-interval 0\n address-family ipv6 unicast\n  neighbor 2001:db8::1 activate\n exit-address-family\nexit\n"
    )
}

/// The router's next hops for the IPv6 VIP (link-local addresses: FRR installs
/// eBGP IPv6 routes through the peer's link-local next hop), one per balancer.
fn router_paths_v6(router: &Host) -> BTreeSet<String> {
    let Ok(text) = router.ip(&["-6", "route", "show", VIP6]) else {
        return BTreeSet::new();
    };
    text.split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "via")
        .map(|w| w[1].to_owned())
        .collect()
}

/// One GET to the IPv6 VIP from `src`: (server, balancer's SNAT address).
fn fetch_v6(client: &Host, src: &str) -> Option<(String, String)> {
    let out = client
        .exec(&[
            "curl",
            "-s",
            "-g",
            "--max-time",
            "3",
            "--interface",
            src,
            &format!("http://[{VIP6}]/"),
        ])
        .ok()?;
    let body = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut it = body.split_whitespace();
    Some((it.next()?.to_owned(), it.next()?.to_owned()))
}

/// Which server and which balancers each IPv6 source reached over `rounds` GETs.
fn survey_v6(
    client: &Host,
    sources: &[String],
    rounds: usize,
) -> BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> {
    let mut seen: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
    for src in sources {
        for _ in 0..rounds {
            let (srv, lb) = fetch_v6(client, src)
                .unwrap_or_else(|| panic!("no answer through [{VIP6}] from {src}"));
            let entry = seen.entry(src.clone()).or_default();
            entry.0.insert(srv);
            entry.1.insert(lb);
        }
    }
    seen
}

/// An IPv6 VIP in active-active mode: every node announces it through its FRR
/// (`network .../128` under `address-family ipv6 unicast`), the router spreads
/// clients over the three, each client address keeps its server whichever node
/// carries it, and a node whose lbd stops is withdrawn.
#[test]
fn ipv6_vips_are_announced_through_frr_and_balanced() {
    if !can_run(
        "ipv6_vips_are_announced_through_frr_and_balanced",
        &["/usr/lib/frr/bgpd"],
    ) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (lab, dir, _dirs, daemons) =
        frr_cluster(&router_conf_v6(), balancer_conf_v6, cluster_toml_v6);
    let router = &lab["router"];
    let _web = responders(&lab, |h| format!("[2001:db8:0:1::{h}]:80"));
    let client = &lab["client"];
    let sources: Vec<String> = (0..12)
        .map(|i| format!("2001:db8:0:20::{}", 30 + i))
        .collect();
    for src in &sources {
        client
            .ip(&["-6", "addr", "add", &format!("{src}/64"), "dev", "eth0"])
            .unwrap();
    }

    let started = Instant::now();
    let mut lbds: BTreeMap<&str, Process> = NODES
        .iter()
        .map(|(name, _)| (*name, lbd(&lab, dir.path(), name)))
        .collect();
    wait_for(
        "the router has an IPv6 path through every balancer",
        PATIENCE,
        || router_paths_v6(router).len() == 3,
    );
    println!(
        "IPv6 ECMP: 3 paths to {VIP6} at the router {} ms after the three lbd started",
        started.elapsed().as_millis()
    );

    // Every source always reaches one server, through two balancers or more; the
    // server sees the carrying balancer's own IPv6 address (node_address SNAT).
    let before = survey_v6(client, &sources, 4);
    let snat: BTreeSet<String> = NODES
        .iter()
        .map(|(_, h)| format!("2001:db8:0:1::{h}"))
        .collect();
    let mut carried = BTreeSet::new();
    for (src, (servers, balancers)) in &before {
        assert_eq!(servers.len(), 1, "{src} reached {servers:?}");
        assert!(balancers.is_subset(&snat), "{src}: {balancers:?}");
        carried.extend(balancers.iter().cloned());
    }
    assert!(carried.len() >= 2, "the router used only {carried:?}");
    let used: BTreeSet<&String> = before.values().flat_map(|(s, _)| s).collect();
    assert!(used.len() >= 2, "Maglev used only {used:?}");

    // lb3's lbd stops: its announcement is withdrawn, the router keeps two paths, and
    // every source still reaches its server.
    let stop = Instant::now();
    if let Some(p) = lbds.remove("lb3") {
        p.signal(libc::SIGTERM).unwrap();
    }
    wait_for("the router drops lb3's IPv6 path", PATIENCE, || {
        router_paths_v6(router).len() == 2
    });
    println!(
        "IPv6: lb3's lbd stopped (SIGTERM): the router withdrew its path after {} ms",
        stop.elapsed().as_millis()
    );
    let after = survey_v6(client, &sources, 2);
    for (src, (servers, balancers)) in &after {
        assert_eq!(servers, &before[src].0, "{src} moved to another server");
        assert!(
            !balancers.contains("2001:db8:0:1::13"),
            "{src}: {balancers:?}"
        );
    }
    drop(lbds);
    drop(daemons);
}
