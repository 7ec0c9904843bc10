//! `demo [CONFIG]`: the suite's main job. Brings up a two-node cluster lab in network
//! namespaces from a cluster.toml (default: cluster.toml.example), starts vrrpd and
//! lbd on both nodes, sends traffic through the service VIP, runs a crash failover
//! drill and a graceful one, and prints what happened.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use integration::cluster_run::{
    node_files, start_daemons, start_servers, vrrpctl as ctl, NodeFiles,
};
use integration::{topology_from_cluster, Host, Lab, Process};

/// How long the demo waits for any one thing to happen before it gives up.
const PATIENCE: Duration = Duration::from_secs(20);

/// One line of the closing summary.
struct Step {
    name: &'static str,
    what: String,
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
