//! A cluster.toml brought to life in a lab: each node's copy of the config, the real
//! servers answering HTTP, vrrpd and lbd started on the nodes, and vrrpctl run on them.
//! The demo and the scenario tests that run both daemons share these.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::{Lab, Process};

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
    let config = files.config.to_string_lossy().into_owned();
    let mut running = Vec::new();
    for daemon in ["vrrpd", "lbd"] {
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
        running.push(process);
    }
    Ok(running)
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
