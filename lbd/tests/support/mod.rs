//! Shared by lbd's namespace tests: configs derived from cluster.toml.example, the
//! real lbd binary, HTTP responders that name themselves and the peer they saw,
//! control requests, metrics scrapes, nft listings.
#![allow(dead_code)]

pub mod held;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use integration::{Host, Lab, Prefix, Process};
use serde_json::Value;

/// Service VIP (instance `public`, eth0).
pub const VIP: &str = "198.18.0.100";
/// SNAT VIP of the two-arm layout (instance `server`, eth1).
pub const SNAT_VIP: &str = "198.18.1.100";
/// Generous bound for anything the daemons do.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Drops every `check = "web-http"` line: servers without checks are always up.
pub const NO_CHECKS: (&str, &str) = ("check = \"web-http\"", "");

/// The edits that turn the two-arm example into the one-arm layout: one interface
/// and subnet; the SNAT VIP 198.18.0.101 on eth0 (instance `server` moves to eth0).
pub const ONE_ARM: &[(&str, &str)] = &[
    (
        "eth0 = [\"198.18.0.11/24\", \"2001:db8:0:a::11/64\"], eth1 = [\"198.18.1.11/24\"]",
        "eth0 = [\"198.18.0.11/24\"]",
    ),
    (
        "eth0 = [\"198.18.0.12/24\", \"2001:db8:0:a::12/64\"], eth1 = [\"198.18.1.12/24\"]",
        "eth0 = [\"198.18.0.12/24\"]",
    ),
    (
        "interface = \"eth1\"\nvrid = 52",
        "interface = \"eth0\"\nvrid = 52",
    ),
    (
        "vips = [\"198.18.1.100/24\"]",
        "vips = [\"198.18.0.101/24\"]",
    ),
    ("address = \"198.18.1.21\"", "address = \"198.18.0.21\""),
    ("address = \"198.18.1.22\"", "address = \"198.18.0.22\""),
    ("out_interface = \"eth1\"", "out_interface = \"eth0\""),
    (
        "interface = \"eth1\"\n# TCP port of the sync stream",
        "interface = \"eth0\"\n# TCP port of the sync stream",
    ),
    (
        "snat = { address = \"198.18.1.100\" }",
        "snat = { address = \"198.18.0.101\" }",
    ),
];

/// cluster.toml.example with `edits` applied in order (each `from` must occur;
/// every occurrence is replaced).
pub fn example_with(edits: &[(&str, &str)]) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../cluster.toml.example");
    let mut text = std::fs::read_to_string(path).unwrap();
    for (from, to) in edits {
        assert!(text.contains(from), "example lacks {from:?}");
        text = text.replace(from, to);
    }
    text
}

/// A lab plus a directory for configs and sockets.
pub struct Setup {
    pub lab: Lab,
    pub dir: tempfile::TempDir,
}

impl Setup {
    /// The two-arm lab.
    pub fn two_arm() -> Setup {
        Setup {
            lab: Lab::two_arm().unwrap(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The one-arm lab.
    pub fn one_arm() -> Setup {
        Setup {
            lab: Lab::one_arm().unwrap(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn host(&self, name: &str) -> &Host {
        &self.lab[name]
    }

    pub fn config(&self, node: &str) -> PathBuf {
        self.dir.path().join(format!("{node}.toml"))
    }

    pub fn lbd_socket(&self, node: &str) -> PathBuf {
        self.dir.path().join(format!("{node}-lbd.sock"))
    }

    pub fn vrrpd_socket(&self, node: &str) -> PathBuf {
        self.dir.path().join(format!("{node}-vrrpd.sock"))
    }

    /// Writes `node`'s config: the example with `edits`, its sockets in our directory.
    pub fn write_config(&self, node: &str, edits: &[(&str, &str)]) {
        let text = example_with(edits)
            .replacen(
                "vrrpd_socket = \"/run/lbsuite/vrrpd.sock\"",
                &format!("vrrpd_socket = {:?}", self.vrrpd_socket(node)),
                1,
            )
            .replacen(
                "lbd_socket = \"/run/lbsuite/lbd.sock\"",
                &format!("lbd_socket = {:?}", self.lbd_socket(node)),
                1,
            );
        std::fs::write(self.config(node), text).unwrap();
    }

    /// Adds an address to an interface of a host.
    pub fn add_vip(&self, host: &str, iface: &str, addr: &str) {
        self.lab[host]
            .add_address(iface, Prefix::new(addr.parse().unwrap(), 24))
            .unwrap();
    }

    /// Starts the real lbd in `node`.
    pub fn start_lbd(&self, node: &str) -> Process {
        self.start_lbd_with_env(node, &[])
    }

    /// Starts the real lbd in `node` with `env` added to its environment.
    pub fn start_lbd_with_env(&self, node: &str, env: &[(&str, &str)]) -> Process {
        let config = self.config(node);
        let mut cmd = self.lab[node].command(env!("CARGO_BIN_EXE_lbd"));
        cmd.args(["--config", config.to_str().unwrap(), "--node", node])
            .env("RUST_LOG", "info,lbd=debug")
            .envs(env.iter().copied());
        self.lab[node].spawn_command(cmd, "lbd").unwrap()
    }

    /// Starts the real vrrpd (built next to lbd) in `node`.
    pub fn start_vrrpd(&self, node: &str) -> Process {
        let config = self.config(node);
        let mut cmd = self.lab[node].command(sibling_binary("vrrpd"));
        cmd.args(["--config", config.to_str().unwrap(), "--node", node])
            .env("RUST_LOG", "info");
        self.lab[node].spawn_command(cmd, "vrrpd").unwrap()
    }

    /// The role lbd in `node` has from vrrpd for sync group `edge`, if any yet.
    pub fn role(&self, node: &str) -> Option<String> {
        request(&self.lbd_socket(node), "status", Value::Null)
            .ok()
            .and_then(|s| s["vrrpd"]["groups"]["edge"].as_str().map(str::to_owned))
    }

    /// lbd's status in `node` (waits for the socket to answer).
    pub fn status(&self, node: &str) -> Value {
        request(&self.lbd_socket(node), "status", Value::Null).unwrap()
    }

    /// Waits until lbd in `node` answers and its last apply succeeded.
    pub fn wait_applied(&self, node: &str) -> Value {
        let socket = self.lbd_socket(node);
        let mut last = Value::Null;
        wait_for("lbd applied its dataplane", PATIENCE, || {
            match request(&socket, "status", Value::Null) {
                Ok(s) if s["dataplane"]["last_apply"]["ok"] == Value::Bool(true) => {
                    last = s;
                    true
                }
                _ => false,
            }
        });
        last
    }

    /// `reload` on lbd in `node`: the reply, or the error text.
    pub fn reload(&self, node: &str) -> Result<Value, String> {
        request(&self.lbd_socket(node), "reload", Value::Null)
    }
}

/// One control request; `Err` carries the error's text.
pub fn request(socket: &Path, method: &str, params: Value) -> Result<Value, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = ctl::Client::connect(socket)
            .await
            .map_err(|e| e.to_string())?;
        client
            .request_with_timeout(method, params, Duration::from_secs(30))
            .await
            .map_err(|e| e.to_string())
    })
}

/// Waits until lbd at `socket` holds a complete copy of its peer's entries (at least
/// `n`), all of them written into its kernel.
pub fn wait_sync_complete(socket: &Path, n: u64, patience: Duration) {
    wait_for(
        &format!(
            "lbd at {} holds {n} entries, none pending",
            socket.display()
        ),
        patience,
        || {
            request(socket, "status", Value::Null).is_ok_and(|s| {
                let s = &s["sync"];
                s["entries_stored"].as_u64().is_some_and(|k| k >= n)
                    && s["entries_pending"] == 0
                    && s["peer_complete"] == true
            })
        },
    );
}

/// `n` established connections of other clients to the VIP (DNAT to srv1, no SNAT),
/// written straight into `host`'s kernel: its lbd syncs them as its own.
pub fn background_entries(host: &Host, n: usize) {
    let srv: std::net::IpAddr = "198.18.1.21".parse().unwrap();
    let vip: std::net::IpAddr = VIP.parse().unwrap();
    let entries: Vec<ctsync::Entry> = (0..n)
        .map(|i| ctsync::synthetic::background_entry(i, vip, srv))
        .collect();
    let report = host
        .run_in(|| ctsync::Conntrack::open().and_then(|mut c| c.replace_batch(&entries)))
        .unwrap()
        .unwrap();
    assert_eq!(report.created, n, "{:?}", report.failed.first());
}

/// Entries in `host`'s conntrack table (its network namespace's count).
pub fn conntrack_count(host: &Host) -> u64 {
    // /proc/sys/net is the calling thread's namespace: run_in's.
    host.run_in(|| std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_count"))
        .unwrap()
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Polls `cond` every 50 ms until true; panics naming `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// An HTTP/1.0 responder: each request gets `<name> <peer address>` as its body.
pub struct Responder {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Responder {
    pub fn start(host: &Host, addr: &str, name: &str) -> Responder {
        let listener = host.tcp_listen(addr.parse().unwrap()).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, name) = (Arc::clone(&stop), name.to_owned());
        let thread = thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, peer)) => {
                        let name = name.clone();
                        thread::spawn(move || answer(s, peer, &name));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Responder {
            stop,
            thread: Some(thread),
        }
    }
}

fn answer(mut s: TcpStream, peer: SocketAddr, name: &str) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    // Read the request head first: closing with unread data would reset the connection.
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let body = format!("{name} {}", peer.ip());
    let _ = write!(
        s,
        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

impl Drop for Responder {
    /// Stops accepting and closes the listener: new connections are refused.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One GET through `addr` from `client`: (server name, peer address it saw).
pub fn fetch(client: &Host, addr: &str) -> (String, String) {
    let mut s = client
        .tcp_connect(addr.parse().unwrap(), Duration::from_secs(5))
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("");
    let mut it = body.split_whitespace();
    (
        it.next().unwrap_or("").to_owned(),
        it.next().unwrap_or("").to_owned(),
    )
}

/// GET /metrics from `addr` inside `host`, without the `cluster` label every series
/// carries.
pub fn scrape(host: &Host, addr: &str) -> String {
    integration::exposition::without_cluster(&scrape_raw(host, addr))
}

/// GET /metrics from `addr` inside `host` as served.
pub fn scrape_raw(host: &Host, addr: &str) -> String {
    let mut s = host
        .tcp_connect(addr.parse().unwrap(), Duration::from_secs(5))
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The value of the sample whose line starts with `prefix` (name and labels).
pub fn sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `nft -j list ruleset` in `host`.
pub fn ruleset(host: &Host) -> String {
    host.exec_ok(&["nft", "-j", "list", "ruleset"]).unwrap()
}

/// DNAT map slots of table `lbsuite` as the kernel holds them (from `nft -j`):
/// (map, slot) -> backend address, for every `dnat*` map.
pub fn dnat_slots(host: &Host) -> std::collections::BTreeMap<(String, u64), String> {
    let out = host
        .exec_ok(&["nft", "-j", "list", "table", "inet", "lbsuite"])
        .unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    let mut slots = std::collections::BTreeMap::new();
    for o in v["nftables"].as_array().unwrap() {
        let Some(map) = o.get("map") else { continue };
        let name = map["name"].as_str().unwrap_or("");
        if !name.starts_with("dnat") {
            continue;
        }
        for e in map["elem"].as_array().into_iter().flatten() {
            // [key, data], the key possibly wrapped with its counter.
            let pair = e.as_array().unwrap();
            let key = pair[0].get("elem").map_or(&pair[0], |w| &w["val"]);
            let key = key["concat"].as_array().unwrap();
            let slot = key.last().and_then(Value::as_u64).unwrap();
            let data = &pair[1];
            let backend = data
                .get("concat")
                .and_then(|c| c[0].as_str())
                .or_else(|| data.as_str())
                .unwrap()
                .to_owned();
            slots.insert((name.to_owned(), slot), backend);
        }
    }
    slots
}

/// Whether `host` has a route to `dest`.
pub fn has_route(host: &Host, dest: &str) -> bool {
    host.exec(&["ip", "route", "get", dest])
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// The binary `name` built next to lbd (`cargo build -p <name>`).
pub fn sibling_binary(name: &str) -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_lbd")).with_file_name(name);
    assert!(
        bin.exists(),
        "{} is not built next to lbd: run `cargo build -p {name}` first",
        bin.display()
    );
    bin
}

/// As [`fetch`], `None` on any failure (for polling through a failover).
pub fn try_fetch(client: &Host, addr: &str) -> Option<(String, String)> {
    let mut s = client
        .tcp_connect(addr.parse().ok()?, Duration::from_secs(1))
        .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let body = out.split("\r\n\r\n").nth(1)?;
    let mut it = body.split_whitespace();
    Some((it.next()?.to_owned(), it.next()?.to_owned()))
}

/// Says its name on every accepted connection, then echoes until the client closes.
pub fn named_echo_server(host: &Host, addr: &str, name: &str) {
    let listener = host.tcp_listen(addr.parse().unwrap()).unwrap();
    let name = name.to_owned();
    thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let name = name.clone();
            thread::spawn(move || {
                if s.write_all(format!("{name}\n").as_bytes()).is_err() {
                    return;
                }
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
}

/// A connection through the VIP and the server that took it.
pub fn connect_named(client: &Host) -> (BufReader<TcpStream>, String) {
    let s = client
        .tcp_connect(format!("{VIP}:80").parse().unwrap(), Duration::from_secs(5))
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut r = BufReader::new(s);
    let mut name = String::new();
    r.read_line(&mut name).unwrap();
    (r, name.trim().to_owned())
}
