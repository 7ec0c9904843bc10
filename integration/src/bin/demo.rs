//! `demo [CONFIG]`: the suite's main job. Brings up a two-node cluster lab in network
//! namespaces from a cluster.toml (default: cluster.toml.example), starts vrrpd and
//! lbd on both nodes, sends traffic through the service VIP, runs a crash failover
//! drill and a graceful one, and prints what happened.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use integration::{topology_from_cluster, Host, Lab, Process};

/// How long the demo waits for any one thing to happen before it gives up.
const PATIENCE: Duration = Duration::from_secs(20);

/// One line of the closing summary.
struct Step {
    name: &'static str,
    what: String,
}

/// Where a node's daemons keep their sockets in the lab: the lab's hosts share one
/// filesystem, so each node gets its own copy of the config with its own socket paths.
struct NodeFiles {
    config: PathBuf,
    vrrpd_socket: PathBuf,
    lbd_socket: PathBuf,
}

fn main() -> Result<()> {
    let path = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "cluster.toml.example".into()),
    );
    let mut steps: Vec<Step> = Vec::new();
    let bin_dir = std::env::current_exe()?
        .parent()
        .map(Path::to_path_buf)
        .context("locating the daemon binaries")?;

    println!("== 1. configuration: {}", path.display());
    let cluster = config::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let nodes: Vec<String> = cluster.node_names().iter().map(|n| n.to_string()).collect();
    for node in &nodes {
        let view = cluster
            .node_view(Some(node))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        println!("   node {node}: {}", view.summary());
    }
    let (first, second) = (nodes[0].clone(), nodes[1].clone());
    let service = cluster
        .services
        .first()
        .context("the config has no service to send traffic to")?
        .clone();
    let vip = SocketAddr::new(service.vip, service.ports.start);
    steps.push(Step {
        name: "config",
        what: format!("{} valid for {}", path.display(), nodes.join(" and ")),
    });

    println!("\n== 2. the lab, derived from the config");
    let lab = Lab::up(topology_from_cluster(&cluster)?).context("bringing up the lab")?;
    print!("{}", lab.describe());
    let _servers = start_servers(&lab, &cluster)?;
    steps.push(Step {
        name: "lab",
        what: format!("{} hosts in network namespaces", lab.hosts().len()),
    });

    let work = tempdir()?;
    let mut files = BTreeMap::new();
    for node in &nodes {
        files.insert(node.clone(), node_files(&path, &work, node)?);
    }

    println!("\n== 3. vrrpd and lbd on {first} and {second}");
    let mut daemons: BTreeMap<String, Vec<Process>> = BTreeMap::new();
    for node in &nodes {
        daemons.insert(
            node.clone(),
            start_daemons(&lab, &bin_dir, node, &files[node])?,
        );
    }
    let vrrpctl = bin_dir.join("vrrpctl");
    wait_until(&format!("{first} MASTER, {second} BACKUP"), || {
        state(&lab, &vrrpctl, &first, &files[&first]) == "MASTER"
            && state(&lab, &vrrpctl, &second, &files[&second]) == "BACKUP"
    })?;
    println!(
        "{}",
        ctl(
            &lab,
            &vrrpctl,
            &first,
            &files[&first].vrrpd_socket,
            &["status"]
        )?
    );
    steps.push(Step {
        name: "election",
        what: format!("{first} MASTER with every VIP of the group, {second} BACKUP"),
    });

    println!("\n== 4. traffic through {vip}");
    let client = lab.host("client")?;
    let replies = fetch_many(client, vip, 12)?;
    print_replies(&replies);
    println!(
        "{}",
        ctl(
            &lab,
            &vrrpctl,
            &first,
            &files[&first].lbd_socket,
            &["services"]
        )?
    );
    steps.push(Step {
        name: "traffic",
        what: summarize(&replies),
    });

    println!("\n== 5. crash drill: {first} dies (daemons SIGKILLed, cables pulled)");
    let crashed = Instant::now();
    for process in daemons.remove(&first).unwrap_or_default() {
        process.signal(libc::SIGKILL)?;
    }
    for iface in lab
        .host(&first)?
        .interfaces()
        .iter()
        .map(|i| i.name.clone())
    {
        lab.set_cable(&first, &iface, false)?;
    }
    let answered = poll_until_answer(client, vip)?;
    let took = crashed.elapsed();
    println!("   the client got {answered:?} through {vip} again after {took:.2?}");
    println!(
        "{}",
        ctl(
            &lab,
            &vrrpctl,
            &second,
            &files[&second].vrrpd_socket,
            &["status"]
        )?
    );
    let replies = fetch_many(client, vip, 6)?;
    print_replies(&replies);
    steps.push(Step {
        name: "crash failover",
        what: format!("{second} took over; VIP answering again after {took:.2?}"),
    });

    println!("\n== 6. {first} comes back (cables in, daemons restarted): it preempts");
    for iface in lab
        .host(&first)?
        .interfaces()
        .iter()
        .map(|i| i.name.clone())
    {
        lab.set_cable(&first, &iface, true)?;
    }
    daemons.insert(
        first.clone(),
        start_daemons(&lab, &bin_dir, &first, &files[&first])?,
    );
    let back = Instant::now();
    wait_until(&format!("{first} MASTER again"), || {
        state(&lab, &vrrpctl, &first, &files[&first]) == "MASTER"
            && state(&lab, &vrrpctl, &second, &files[&second]) == "BACKUP"
    })?;
    println!("   {first} MASTER again after {:.2?}", back.elapsed());
    steps.push(Step {
        name: "recovery",
        what: format!("{first} rejoined and preempted (preempt = true)"),
    });

    println!("\n== 7. graceful drill: vrrpctl drill failover on {first}");
    let drill = ctl(
        &lab,
        &vrrpctl,
        &first,
        &files[&first].vrrpd_socket,
        &["drill", "failover"],
    )?;
    println!("{drill}");
    let replies = fetch_many(client, vip, 4)?;
    print_replies(&replies);
    steps.push(Step {
        name: "drill failover",
        what: drill
            .lines()
            .find(|l| l.contains("ms"))
            .unwrap_or("done")
            .trim()
            .to_string(),
    });

    println!("\n== demo summary");
    for step in &steps {
        println!("  ok  {:<15} {}", step.name, step.what);
    }
    drop(daemons);
    lab.down().context("tearing the lab down")?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// Each real server answers HTTP with its own name and the source address it saw, so
/// the config's HTTP health check passes and the client sees who served it and how.
fn start_servers(lab: &Lab, cluster: &config::ClusterConfig) -> Result<Vec<HttpServer>> {
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
struct HttpServer {
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

/// One HTTP GET through `addr` from `client`; the body, trimmed.
fn http_get(client: &Host, addr: SocketAddr, timeout: Duration) -> Result<String> {
    let mut stream = client.tcp_connect(addr, timeout)?;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: demo\r\n\r\n")?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    let body = reply
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .with_context(|| format!("{addr} answered without an HTTP head: {reply:?}"))?;
    Ok(body.trim().to_string())
}

fn tempdir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("lbsuite-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The node's copy of the config: identical but for the control socket paths.
fn node_files(config: &Path, work: &Path, node: &str) -> Result<NodeFiles> {
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

fn start_daemons(lab: &Lab, bin_dir: &Path, node: &str, files: &NodeFiles) -> Result<Vec<Process>> {
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
fn ctl(lab: &Lab, vrrpctl: &Path, node: &str, socket: &Path, args: &[&str]) -> Result<String> {
    let mut argv = vec![
        vrrpctl.to_string_lossy().into_owned(),
        "--socket".into(),
        socket.to_string_lossy().into_owned(),
    ];
    argv.extend(args.iter().map(|a| a.to_string()));
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    Ok(lab.host(node)?.exec_ok(&argv)?)
}

/// The sync group's state on `node` as vrrpctl reports it, or "" when unknown.
fn state(lab: &Lab, vrrpctl: &Path, node: &str, files: &NodeFiles) -> String {
    let Ok(out) = ctl(
        lab,
        vrrpctl,
        node,
        &files.vrrpd_socket,
        &["status", "--json"],
    ) else {
        return String::new();
    };
    let Ok(status) = serde_json::from_str::<serde_json::Value>(&out) else {
        return String::new();
    };
    status["groups"][0]["state"]
        .as_str()
        .unwrap_or_default()
        .to_uppercase()
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < PATIENCE {
        if cond() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("gave up after {PATIENCE:?} waiting for {what}")
}

fn fetch_many(client: &Host, vip: SocketAddr, n: usize) -> Result<Vec<String>> {
    (0..n)
        .map(|_| http_get(client, vip, Duration::from_secs(3)))
        .collect()
}

/// Polls the VIP every 10 ms until a server answers through it.
fn poll_until_answer(client: &Host, vip: SocketAddr) -> Result<String> {
    let start = Instant::now();
    while start.elapsed() < PATIENCE {
        if let Ok(reply) = http_get(client, vip, Duration::from_millis(200)) {
            return Ok(reply);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    bail!("{vip} did not answer within {PATIENCE:?}")
}

fn print_replies(replies: &[String]) {
    for (i, reply) in replies.iter().enumerate() {
        println!("   connection {:>2}: {reply}", i + 1);
    }
}

fn summarize(replies: &[String]) -> String {
    let mut by_server: BTreeMap<&str, usize> = BTreeMap::new();
    for reply in replies {
        *by_server
            .entry(reply.split_whitespace().next().unwrap_or("?"))
            .or_default() += 1;
    }
    let spread: Vec<String> = by_server.iter().map(|(s, n)| format!("{s} {n}")).collect();
    let source = replies
        .first()
        .and_then(|r| r.split_whitespace().last())
        .unwrap_or("?");
    format!(
        "{} connections: {}; servers saw source {source}",
        replies.len(),
        spread.join(", ")
    )
}
