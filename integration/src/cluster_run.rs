//! A cluster.toml brought to life in a lab: each node's copy of the config, the real
//! servers answering HTTP, vrrpd and lbd started on the nodes, and vrrpctl run on them.
//! The demo and the scenario tests that run both daemons share these.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::Value;

use crate::{topology_from_cluster, Lab, Process};

/// How long [`Cluster::wait_until`] waits.
const CLUSTER_PATIENCE: Duration = Duration::from_secs(30);

/// Where a node's daemons keep their sockets in the lab: the lab's hosts share one
/// filesystem, so each node gets its own copy of the config with its own socket paths.
pub struct NodeFiles {
    /// The node's cluster.toml.
    pub config: PathBuf,
    /// vrrpd's control socket.
    pub vrrpd_socket: PathBuf,
    /// lbd's control socket.
    pub lbd_socket: PathBuf,
}

/// Each real server answers HTTP with its own name and the source address it saw, so
/// the config's HTTP health check passes and the client sees who served it and how.
pub fn start_servers(lab: &Lab, cluster: &config::ClusterConfig) -> Result<Vec<HttpServer>> {
    let mut servers = Vec::new();
    for service in &cluster.services {
        for server in &service.servers {
            let port = server.port.unwrap_or(service.ports.start);
            let addr = SocketAddr::new(server.address, port);
            let listener = lab.host(&server.name)?.tcp_listen(addr)?;
            servers.push(HttpServer::start(listener, server.name.clone())?);
            println!("   server {} listening on {addr}", server.name);
        }
    }
    Ok(servers)
}

/// A tiny HTTP/1.0 server on its own thread; stops when dropped.
pub struct HttpServer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpServer {
    fn start(listener: TcpListener, name: String) -> Result<Self> {
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, peer)) => answer(stream, &name, peer),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(HttpServer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads the request head, then answers 200 with "NAME saw PEER".
fn answer(mut stream: TcpStream, name: &str, peer: SocketAddr) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let body = format!("{name} saw {}\n", peer.ip());
    let reply = format!(
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes());
}

/// The node's copy of the config: identical but for the control socket paths.
pub fn node_files(config: &Path, work: &Path, node: &str) -> Result<NodeFiles> {
    let dir = work.join(node);
    std::fs::create_dir_all(&dir)?;
    let (vrrpd_socket, lbd_socket) = (dir.join("vrrpd.sock"), dir.join("lbd.sock"));
    let text = std::fs::read_to_string(config)?
        .replace(
            "vrrpd_socket = \"/run/lbsuite/vrrpd.sock\"",
            &format!("vrrpd_socket = {:?}", vrrpd_socket),
        )
        .replace(
            "lbd_socket = \"/run/lbsuite/lbd.sock\"",
            &format!("lbd_socket = {:?}", lbd_socket),
        );
    if !text.contains(&*vrrpd_socket.to_string_lossy()) {
        bail!(
            "{}: the demo needs the default [control] socket keys to relocate them",
            config.display()
        );
    }
    let config = dir.join("cluster.toml");
    std::fs::write(&config, text)?;
    Ok(NodeFiles {
        config,
        vrrpd_socket,
        lbd_socket,
    })
}

/// Starts vrrpd and lbd on `node` from `bin_dir` with the node's config; fails if
/// either exits within 300 ms.
pub fn start_daemons(
    lab: &Lab,
    bin_dir: &Path,
    node: &str,
    files: &NodeFiles,
) -> Result<Vec<Process>> {
    ["vrrpd", "lbd"]
        .into_iter()
        .map(|daemon| start_daemon(lab, bin_dir, node, files, daemon))
        .collect()
}

/// Starts `daemon` (`vrrpd` or `lbd`) on `node`; fails if it exits within 300 ms.
pub fn start_daemon(
    lab: &Lab,
    bin_dir: &Path,
    node: &str,
    files: &NodeFiles,
    daemon: &str,
) -> Result<Process> {
    let config = files.config.to_string_lossy().into_owned();
    let mut process = lab.host(node)?.spawn(
        bin_dir.join(daemon),
        ["--config", config.as_str(), "--node", node],
    )?;
    if let Some(status) = process.wait_timeout(Duration::from_millis(300))? {
        bail!(
            "{daemon} on {node} exited with {status}: {}",
            process.stderr()
        );
    }
    println!("   {daemon} running on {node} (pid {})", process.pid());
    Ok(process)
}

/// `vrrpctl --socket S ARGS...` run inside `node`; its output.
pub fn vrrpctl(
    lab: &Lab,
    vrrpctl: &Path,
    node: &str,
    socket: &Path,
    args: &[&str],
) -> Result<String> {
    let mut argv = vec![
        vrrpctl.to_string_lossy().into_owned(),
        "--socket".into(),
        socket.to_string_lossy().into_owned(),
    ];
    argv.extend(args.iter().map(|a| a.to_string()));
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    Ok(lab.host(node)?.exec_ok(&argv)?)
}

/// The two nodes of a cluster.toml (lb1 and lb2, the example's) running both daemons
/// in a lab, with the real servers answering; torn down on drop.
pub struct Cluster {
    // Dropped first: the daemons stop before the lab goes.
    daemons: Mutex<Vec<(String, &'static str, Process)>>,
    _servers: Vec<HttpServer>,
    /// The lab.
    pub lab: Lab,
    files: Vec<(String, NodeFiles)>,
    bin_dir: PathBuf,
    work: PathBuf,
}

impl Cluster {
    /// Starts the cluster of `config` with the daemons of `bin_dir`, each node's copy
    /// of the config passed through `edit` (with the node's name); returns once lb1 is MASTER and lb2
    /// BACKUP. Panics (it is for tests) when something does not come up.
    pub fn start(config: &Path, bin_dir: &Path, edit: impl Fn(&str, String) -> String) -> Cluster {
        let example = config.to_path_buf();
        let bin_dir = bin_dir.to_path_buf();
        for daemon in ["vrrpd", "lbd", "vrrpctl"] {
            assert!(
                bin_dir.join(daemon).exists(),
                "{daemon} is not built: run `cargo build -p vrrpd -p lbd -p vrrpctl --bins` first"
            );
        }
        let cluster = config::load(&example).expect("the example config loads");
        let lab = Lab::up(topology_from_cluster(&cluster).unwrap()).unwrap();
        let servers = start_servers(&lab, &cluster).unwrap();
        let work = std::env::temp_dir().join(format!("lbsuite-cluster-{}", lab.id()));
        std::fs::create_dir_all(&work).unwrap();
        let mut files = Vec::new();
        let mut daemons = Vec::new();
        for node in ["lb1", "lb2"] {
            let f = node_files(&example, &work, node).unwrap();
            let text = std::fs::read_to_string(&f.config).unwrap();
            std::fs::write(&f.config, edit(node, text)).unwrap();
            for daemon in ["vrrpd", "lbd"] {
                let process = start_daemon(&lab, &bin_dir, node, &f, daemon).unwrap();
                daemons.push((node.to_owned(), daemon, process));
            }
            files.push((node.to_owned(), f));
        }
        let cluster = Cluster {
            daemons: Mutex::new(daemons),
            _servers: servers,
            lab,
            files,
            bin_dir,
            work,
        };
        cluster.wait_until("lb1 MASTER and lb2 BACKUP", |c| {
            c.group_state("lb1") == "MASTER" && c.group_state("lb2") == "BACKUP"
        });
        cluster
    }

    /// `node`'s files.
    pub fn files(&self, node: &str) -> &NodeFiles {
        &self.files.iter().find(|(n, _)| n == node).unwrap().1
    }

    /// `vrrpctl --socket <daemon's socket> ARGS --json` on `node`, parsed.
    pub fn ctl_json(&self, node: &str, daemon: &str, args: &[&str]) -> Value {
        let files = self.files(node);
        let socket = if daemon == "lbd" {
            &files.lbd_socket
        } else {
            &files.vrrpd_socket
        };
        let mut argv = args.to_vec();
        argv.push("--json");
        let out = vrrpctl(
            &self.lab,
            &self.bin_dir.join("vrrpctl"),
            node,
            socket,
            &argv,
        )
        .unwrap_or_else(|e| panic!("vrrpctl {argv:?} on {node}: {e}"));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("vrrpctl {argv:?}: {e}: {out}"))
    }

    /// The first sync group's state on `node` (`MASTER`, ...), or "" if vrrpd does
    /// not answer.
    pub fn group_state(&self, node: &str) -> String {
        let files = self.files(node);
        vrrpctl(
            &self.lab,
            &self.bin_dir.join("vrrpctl"),
            node,
            &files.vrrpd_socket,
            &["status", "--json"],
        )
        .ok()
        .and_then(|out| serde_json::from_str::<Value>(&out).ok())
        .and_then(|s| s["groups"][0]["state"].as_str().map(str::to_owned))
        .unwrap_or_default()
    }

    /// Waits up to 30 s for `cond`; panics naming `what` after that.
    pub fn wait_until(&self, what: &str, cond: impl Fn(&Cluster) -> bool) {
        let start = Instant::now();
        while !cond(self) {
            assert!(
                start.elapsed() < CLUSTER_PATIENCE,
                "gave up waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops `daemon` on `node` (SIGTERM, then SIGKILL after the grace time).
    pub fn stop(&self, node: &str, daemon: &str) {
        let mut daemons = self.daemons.lock().unwrap_or_else(PoisonError::into_inner);
        let at = daemons
            .iter()
            .position(|(n, d, _)| n == node && *d == daemon)
            .unwrap_or_else(|| panic!("{daemon} does not run on {node}"));
        let (_, _, process) = daemons.remove(at);
        process
            .stop()
            .unwrap_or_else(|e| panic!("stopping {daemon} on {node}: {e}"));
    }

    /// Starts `daemon` on `node` again (after [`Cluster::stop`]).
    pub fn restart(&self, node: &str, daemon: &'static str) {
        let process = start_daemon(&self.lab, &self.bin_dir, node, self.files(node), daemon)
            .unwrap_or_else(|e| panic!("{e:#}"));
        self.daemons
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((node.to_owned(), daemon, process));
    }

    /// A scratch directory of this cluster (removed on drop).
    pub fn work(&self) -> &Path {
        &self.work
    }

    /// The directory of the daemons' binaries.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.work);
    }
}
