//! Shared by the daemon_* tests: a two-arm lab, per-node cluster.toml files
//! derived from cluster.toml.example, the real vrrpd binary, and polling.
#![allow(dead_code)]

pub mod capture;
pub mod inject;
pub mod keepalived;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use integration::{Host, Lab, Process};
use serde_json::Value;

/// Service VIP on eth0 (instance `public`).
pub const PUBLIC_VIP: &str = "198.18.0.100";
/// SNAT VIP on eth1 (instance `server`).
pub const SERVER_VIP: &str = "198.18.1.100";
/// Generous bound for anything VRRP does with 1 s adverts.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A lab with the two balancers and their config files.
pub struct Cluster {
    pub lab: Lab,
    pub dir: tempfile::TempDir,
}

/// cluster.toml.example with `edits` applied (each `from` must occur).
pub fn example_with(edits: &[(&str, &str)]) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../cluster.toml.example");
    let mut text = std::fs::read_to_string(path).unwrap();
    for (from, to) in edits {
        assert!(text.contains(from), "example lacks {from:?}");
        text = text.replacen(from, to, 1);
    }
    text
}

impl Cluster {
    /// Brings up the two-arm lab; `edits` change the example for both nodes.
    pub fn up(edits: &[(&str, &str)]) -> Cluster {
        Cluster::up_with(edits, |_| {})
    }

    /// Like [`Cluster::up`], with `edit` applied to both nodes' file text
    /// after `edits` (for changes the plain replacements cannot express).
    pub fn up_with(edits: &[(&str, &str)], edit: impl Fn(&mut String)) -> Cluster {
        let lab = Lab::two_arm().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cluster = Cluster { lab, dir };
        cluster.write_config_with(edits, edit);
        cluster
    }

    /// (Re)writes both nodes' files: the same cluster, but each node's control
    /// sockets in the test's directory (the lab's hosts share one filesystem).
    pub fn write_config(&self, edits: &[(&str, &str)]) {
        self.write_config_with(edits, |_| {});
    }

    /// [`Cluster::write_config`] with a final edit of the text.
    pub fn write_config_with(&self, edits: &[(&str, &str)], edit: impl Fn(&mut String)) {
        let mut text = example_with(edits);
        edit(&mut text);
        for node in ["lb1", "lb2"] {
            let node_text = text
                .replacen(
                    "vrrpd_socket = \"/run/lbsuite/vrrpd.sock\"",
                    &format!("vrrpd_socket = {:?}", self.socket(node)),
                    1,
                )
                .replacen(
                    "lbd_socket = \"/run/lbsuite/lbd.sock\"",
                    &format!(
                        "lbd_socket = {:?}",
                        self.dir.path().join(format!("{node}-lbd.sock"))
                    ),
                    1,
                );
            std::fs::write(self.config(node), node_text).unwrap();
        }
    }

    pub fn config(&self, node: &str) -> PathBuf {
        self.dir.path().join(format!("{node}.toml"))
    }

    pub fn socket(&self, node: &str) -> PathBuf {
        self.dir.path().join(format!("{node}-vrrpd.sock"))
    }

    pub fn host(&self, node: &str) -> &Host {
        &self.lab[node]
    }

    /// Starts the real vrrpd in `node`.
    pub fn start(&self, node: &str) -> Process {
        self.start_with_env(node, &[])
    }

    /// Starts the real vrrpd in `node` with `env` added to its environment.
    pub fn start_with_env(&self, node: &str, env: &[(&str, &str)]) -> Process {
        let config = self.config(node);
        let mut cmd = self.lab[node].command(env!("CARGO_BIN_EXE_vrrpd"));
        cmd.args(["--config", config.to_str().unwrap(), "--node", node])
            .env("RUST_LOG", "info,vrrpd=debug")
            .envs(env.iter().copied());
        self.lab[node].spawn_command(cmd, "vrrpd").unwrap()
    }

    /// `vrrpctl --socket S args...` run inside `node`, if vrrpctl is built
    /// next to vrrpd (`cargo build -p vrrpctl`); else the same request
    /// through the control client.
    pub fn status(&self, node: &str) -> Value {
        let socket = self.socket(node);
        match vrrpctl() {
            Some(bin) => {
                let out = self.lab[node]
                    .exec_ok(&[
                        bin.to_str().unwrap(),
                        "--socket",
                        socket.to_str().unwrap(),
                        "status",
                        "--json",
                    ])
                    .unwrap();
                serde_json::from_str(&out).unwrap()
            }
            None => request(&socket, "status", Value::Null),
        }
    }
}

impl Cluster {
    /// The state of `node`'s first group, or "" while its vrrpd is not
    /// answering yet (just started, or gone).
    pub fn state_of(&self, node: &str) -> String {
        let socket = self.socket(node);
        if !socket.exists() {
            return String::new();
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let Ok(client) = ctl::Client::connect(&socket).await else {
                return String::new();
            };
            match client
                .request_with_timeout("status", Value::Null, Duration::from_secs(10))
                .await
            {
                Ok(status) => group_state(&status),
                Err(_) => String::new(),
            }
        })
    }
}

/// The vrrpctl binary next to vrrpd, if built.
pub fn vrrpctl() -> Option<PathBuf> {
    let bin = Path::new(env!("CARGO_BIN_EXE_vrrpd")).with_file_name("vrrpctl");
    if bin.exists() {
        Some(bin)
    } else {
        println!("NOTE: vrrpctl not built next to vrrpd; using the control client directly");
        None
    }
}

/// One control request to a vrrpd socket.
pub fn request(socket: &Path, method: &str, params: Value) -> Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = ctl::Client::connect(socket).await.unwrap();
        client
            .request_with_timeout(method, params, Duration::from_secs(60))
            .await
            .unwrap()
    })
}

/// Adds the IPv6 instance `public6` (on eth0, VRID `vrid`, these VIPs) to the
/// example's text as the last member of sync group `edge`.
pub fn with_public6(text: &mut String, vrid: u8, vips: &[&str]) {
    let from_group = "instances = [\"public\", \"server\"]\n";
    assert!(text.contains(from_group));
    *text = text.replacen(
        from_group,
        "instances = [\"public\", \"server\", \"public6\"]\n",
        1,
    );
    let vips: Vec<String> = vips.iter().map(|v| format!("{v:?}")).collect();
    text.push_str(&format!(
        "\n[[instance]]\nname = \"public6\"\ninterface = \"eth0\"\nvrid = {vrid}\nvips = [{}]\n",
        vips.join(", ")
    ));
}

/// The addresses on `iface` of `host`.
pub fn addrs(host: &Host, iface: &str) -> Vec<IpAddr> {
    host.addresses(iface)
        .unwrap()
        .into_iter()
        .map(|p| p.addr)
        .collect()
}

/// Whether `host` has `vip` on `iface`.
pub fn has(host: &Host, iface: &str, vip: &str) -> bool {
    addrs(host, iface).contains(&vip.parse().unwrap())
}

/// Whether `host` holds both VIPs.
pub fn has_both(host: &Host) -> bool {
    has(host, "eth0", PUBLIC_VIP) && has(host, "eth1", SERVER_VIP)
}

/// Whether `host` holds neither VIP.
pub fn has_neither(host: &Host) -> bool {
    !has(host, "eth0", PUBLIC_VIP) && !has(host, "eth1", SERVER_VIP)
}

/// Polls `cond` every 20 ms until true; panics naming `what` after `timeout`.
/// Returns how long it took.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if cond() {
            return start.elapsed();
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Holds `cond` true for `span` (checked every 50 ms); panics naming `what`
/// at the first failure.
pub fn holds_for(what: &str, span: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < span {
        assert!(cond(), "no longer true: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The state of group `edge` in a status reply.
pub fn group_state(status: &Value) -> String {
    status["groups"][0]["state"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// A metrics scrape inside `host` (plain HTTP/1.0 GET), without the `cluster`
/// label every series carries.
pub fn scrape(host: &Host) -> String {
    integration::exposition::without_cluster(&scrape_raw(host))
}

/// A metrics scrape inside `host` as served.
pub fn scrape_raw(host: &Host) -> String {
    use std::io::{Read, Write};
    let addr = "127.0.0.1:9612".parse().unwrap();
    let mut stream = host.tcp_connect(addr, Duration::from_secs(5)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    body
}

/// The value of the first sample whose line starts with `prefix`.
pub fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (n, rest) = series.split_once('{').unwrap_or((series, ""));
        if n != name {
            return None;
        }
        let all = labels
            .iter()
            .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
        all.then(|| value.parse().ok()).flatten()
    })
}

/// Every sample of metric `name` (any labels), as (label text, value).
pub fn samples(metrics: &str, name: &str) -> Vec<(String, f64)> {
    metrics
        .lines()
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            (n == name).then(|| (rest.to_owned(), value.parse().unwrap_or(f64::NAN)))
        })
        .collect()
}

/// Asserts that every series of each error metric of vrrpd is 0 (and exists).
pub fn assert_no_receive_errors(metrics: &str) {
    for name in [
        "vrrp_decode_errors_total",
        "vrrp_advert_check_errors_total",
        "vrrp_unknown_vrid_total",
        "vrrp_ttl_errors_total",
    ] {
        let all = samples(metrics, name);
        assert!(!all.is_empty(), "{name} missing:\n{metrics}");
        let bad: Vec<_> = all.iter().filter(|(_, v)| *v != 0.0).collect();
        assert!(bad.is_empty(), "{name} not 0: {bad:?}");
    }
}
