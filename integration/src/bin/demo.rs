//! `demo [CONFIG]`: the suite's main job. Brings up a two-node cluster lab in network
//! namespaces from a cluster.toml (default: cluster.toml.example), starts the daemons
//! on both nodes, sends traffic through the service VIP, runs a failover drill and
//! prints what happened. Steps whose daemon is not built yet say so and are skipped.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use integration::{topology_from_cluster, Lab, Prefix, Process, ReplyServer};

/// The exit code with which a daemon says it is not built yet.
const NOT_BUILT: i32 = 3;

/// Outcome of one demo step.
enum Step {
    Passed(String),
    Skipped(String),
}

fn main() -> Result<()> {
    let path = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "cluster.toml.example".into()),
    );
    let mut steps: Vec<(&str, Step)> = Vec::new();

    let cluster = config::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
    for node in cluster.node_names() {
        let view = cluster
            .node_view(Some(node))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        println!("config: node {node}: {}", view.summary());
    }
    steps.push((
        "config",
        Step::Passed(format!("{} valid for both nodes", path.display())),
    ));

    let topology = topology_from_cluster(&cluster).context("deriving the lab from the config")?;
    let lab = Lab::up(topology).context("bringing up the lab")?;
    print!("{}", lab.describe());
    steps.push((
        "lab",
        Step::Passed(format!("{} hosts up", lab.hosts().len())),
    ));

    let _servers = start_servers(&lab, &cluster)?;
    let bin_dir = std::env::current_exe()?
        .parent()
        .map(Path::to_path_buf)
        .context("locating the daemon binaries")?;

    let mut daemons = Vec::new();
    for daemon in ["vrrpd", "lbd"] {
        let step = start_daemon(&lab, &cluster, &path, &bin_dir, daemon, &mut daemons)?;
        steps.push((daemon, step));
    }

    steps.push(("forwarding", forwarding_check(&lab, &cluster)?));
    steps.push(("traffic via VIP", vip_traffic(&lab, &cluster)));
    steps.push((
        "failover drill",
        Step::Skipped("needs vrrpd (issue 4): not built yet".into()),
    ));

    println!("\n== demo summary");
    for (name, step) in &steps {
        match step {
            Step::Passed(what) => println!("  ok    {name:<16} {what}"),
            Step::Skipped(why) => println!("  skip  {name:<16} {why}"),
        }
    }
    drop(daemons);
    lab.down().context("tearing the lab down")?;
    Ok(())
}

/// Each real server replies with its own name on its service port.
fn start_servers(lab: &Lab, cluster: &config::ClusterConfig) -> Result<Vec<ReplyServer>> {
    let mut servers = Vec::new();
    for service in &cluster.services {
        for server in &service.servers {
            let port = server.port.unwrap_or(service.ports.start);
            let addr = SocketAddr::new(server.address, port);
            let host = lab.host(&server.name)?;
            servers.push(host.serve_reply(addr, &server.name)?);
            println!("server: {} listening on {addr}", server.name);
        }
    }
    Ok(servers)
}

/// Starts a daemon on every node and keeps it running; one that exits at once with
/// [`NOT_BUILT`] is a skip, any other early exit an error.
fn start_daemon(
    lab: &Lab,
    cluster: &config::ClusterConfig,
    config: &Path,
    bin_dir: &Path,
    daemon: &str,
    running: &mut Vec<Process>,
) -> Result<Step> {
    let exe = bin_dir.join(daemon);
    let config = std::fs::canonicalize(config)?;
    for node in cluster.node_names() {
        let config = config.to_string_lossy();
        let mut process = lab
            .host(node)?
            .spawn(&exe, ["--config", config.as_ref(), "--node", node])?;
        if let Some(status) = process.wait_timeout(Duration::from_millis(500))? {
            let said = process.stderr();
            let last = said.lines().last().unwrap_or("").trim().to_string();
            if status.code() == Some(NOT_BUILT) {
                return Ok(Step::Skipped(last));
            }
            bail!("{daemon} on {node} exited with {status}: {said}");
        }
        running.push(process);
    }
    Ok(Step::Passed(format!(
        "running on {}",
        cluster.node_names().join(", ")
    )))
}

/// The lab's plumbing: the client reaches each server through lb1 routing, no NAT.
fn forwarding_check(lab: &Lab, cluster: &config::ClusterConfig) -> Result<Step> {
    let lb1 = cluster.node_names()[0].to_string();
    let client = lab.host("client")?;
    let mut seen = Vec::new();
    let mut routed: Vec<Prefix> = Vec::new();
    for service in &cluster.services {
        for server in &service.servers {
            let net = subnet_of(lab, &server.name)?;
            if !routed.contains(&net) {
                client.add_route(net, gateway_towards(lab, &lb1, "client")?)?;
                routed.push(net);
            }
            let back = gateway_towards(lab, &lb1, &server.name)?;
            lab.host(&server.name)?
                .add_route(subnet_of(lab, "client")?, back)?;
            let port = server.port.unwrap_or(service.ports.start);
            let addr = SocketAddr::new(server.address, port);
            let reply = client.tcp_fetch(addr, Duration::from_secs(5))?;
            println!("forwarding: client -> {lb1} -> {addr} answered {reply:?}");
            if reply != server.name {
                bail!("{addr} answered {reply:?}, expected {:?}", server.name);
            }
            seen.push(reply);
        }
    }
    Ok(Step::Passed(format!(
        "client reached {} through {lb1}",
        seen.join(", ")
    )))
}

/// The address of `router` on the segment `host` sits on.
fn gateway_towards(lab: &Lab, router: &str, host: &str) -> Result<IpAddr> {
    let net = subnet_of(lab, host)?;
    let router = lab.host(router)?;
    for iface in router.interfaces() {
        for p in &iface.addrs {
            if p.addr.is_ipv4() && same_subnet(&net, p.addr) {
                return Ok(p.addr);
            }
        }
    }
    bail!("{} has no address on {host}'s segment {net}", router.name())
}

/// The IPv4 subnet of `host`'s first interface.
fn subnet_of(lab: &Lab, host: &str) -> Result<Prefix> {
    let h = lab.host(host)?;
    let p = h
        .interfaces()
        .iter()
        .flat_map(|i| i.addrs.iter())
        .find(|p| p.addr.is_ipv4())
        .with_context(|| format!("{host} has no IPv4 address"))?;
    let IpAddr::V4(a) = p.addr else {
        unreachable!()
    };
    let mask = u32::MAX.checked_shl(32 - u32::from(p.len)).unwrap_or(0);
    Ok(Prefix::new(IpAddr::V4((u32::from(a) & mask).into()), p.len))
}

fn same_subnet(net: &Prefix, addr: IpAddr) -> bool {
    match (net.addr, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(net.len)).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        _ => false,
    }
}

/// Connections from the client to each service VIP.
fn vip_traffic(lab: &Lab, cluster: &config::ClusterConfig) -> Step {
    let Ok(client) = lab.host("client") else {
        return Step::Skipped("no client host".into());
    };
    let Some(service) = cluster.services.first() else {
        return Step::Skipped("the config has no service".into());
    };
    let vip = SocketAddr::new(service.vip, service.ports.start);
    match client.tcp_fetch(vip, Duration::from_secs(2)) {
        Ok(reply) => Step::Passed(format!("{vip} answered {reply:?}")),
        Err(err) => Step::Skipped(format!(
            "{vip} does not answer ({err}): the VIP needs vrrpd and the balancing needs lbd"
        )),
    }
}
