//! The commands that talk to a running vrrpd over its control socket:
//! status, watch, drills, maintenance, priority (reload: `reload.rs`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use ctl::contract::vrrpd::{
    FailoverDrillReply, FailoverParams, FaultDrillReply, FaultParams, MaintenanceParams,
    MaintenanceReply, Persisted, PriorityClearParams, PriorityClearReply, PriorityListReply,
    PriorityParams, PriorityReply, VrrpdStatus,
};
use ctl::contract::VrrpState;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::status_table;

/// Default vrrpd control socket.
pub const DEFAULT_SOCKET: &str = "/run/lbsuite/vrrpd.sock";

/// Where to reach vrrpd: `--socket`, else `--config`'s `control.vrrpd_socket`,
/// else the default.
pub fn socket_path(socket: Option<&Path>, config: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(s) = socket {
        return Ok(s.to_path_buf());
    }
    if let Some(c) = config {
        // Only the socket is needed: a file being edited (invalid) still names it.
        return config::control_sockets(c)
            .map(|(vrrpd, _)| vrrpd)
            .map_err(|e| anyhow::anyhow!(e));
    }
    Ok(PathBuf::from(DEFAULT_SOCKET))
}

/// `vrrpctl status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the daemon's reply as JSON.
    #[arg(long)]
    json: bool,
}

/// `vrrpctl drill ...`.
#[derive(Debug, Subcommand)]
pub enum DrillCommand {
    /// On the MASTER: release the group, time the peer's takeover per link, then come back.
    Failover {
        /// The sync group (default: the one this node is MASTER of).
        #[arg(long)]
        group: Option<String>,
    },
    /// Hold the group(s) in FAULT for some seconds.
    Fault {
        /// The sync group (default: every group).
        #[arg(long)]
        group: Option<String>,
        /// How long.
        #[arg(long, default_value_t = 10)]
        seconds: u32,
    },
}

/// On or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    /// Leave MASTER and stay out.
    On,
    /// Take part in elections again.
    Off,
}

/// `vrrpctl maintenance on|off`.
#[derive(Debug, Args)]
pub struct MaintenanceArgs {
    /// on or off.
    switch: Switch,
    /// The sync group (default: every group).
    #[arg(long)]
    group: Option<String>,
}

/// `vrrpctl priority ...`.
#[derive(Debug, Subcommand)]
pub enum PriorityCommand {
    /// Override the file's priority; kept across reloads and restarts (in vrrpd's
    /// state file) until `priority clear`.
    Set(PrioritySetArgs),
    /// The priority overrides and maintenance in effect, and the state file.
    List(PriorityListArgs),
    /// Remove overrides: the file's priority applies again.
    Clear(PriorityClearArgs),
}

/// `vrrpctl priority list`.
#[derive(Debug, Args)]
pub struct PriorityListArgs {
    /// Print the daemon's reply as JSON.
    #[arg(long)]
    json: bool,
}

/// `vrrpctl priority clear`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["instance", "group", "all"])))]
pub struct PriorityClearArgs {
    /// One instance.
    #[arg(long)]
    instance: Option<String>,
    /// Every member of a sync group.
    #[arg(long)]
    group: Option<String>,
    /// Every override.
    #[arg(long)]
    all: bool,
}

/// `vrrpctl priority set`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["instance", "group"])))]
pub struct PrioritySetArgs {
    /// One instance.
    #[arg(long)]
    instance: Option<String>,
    /// Every member of a sync group.
    #[arg(long)]
    group: Option<String>,
    /// The new priority, 1..=255 (255 only where this node owns the group's VIPs,
    /// as check-config says).
    #[arg(value_parser = clap::value_parser!(u8).range(1..=255))]
    priority: u8,
}

/// Sends one request and returns its result.
pub(crate) async fn request(
    socket: &Path,
    method: &str,
    params: Value,
    timeout: Duration,
) -> anyhow::Result<Value> {
    let client = ctl::Client::connect(socket).await?;
    Ok(client.request_with_timeout(method, params, timeout).await?)
}

/// Sends typed params and reads the typed reply (`ctl::contract`).
pub(crate) async fn call<P: Serialize, R: DeserializeOwned>(
    socket: &Path,
    method: &str,
    params: &P,
    timeout: Duration,
) -> anyhow::Result<R> {
    let client = ctl::Client::connect(socket).await?;
    Ok(client.call_with_timeout(method, params, timeout).await?)
}

pub(crate) fn block_on<F: std::future::Future>(f: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    Ok(rt.block_on(f))
}

/// The daemon's reply as it came (fields this version does not know included).
pub(crate) fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

/// `vrrpctl status`.
pub fn status(socket: &Path, args: &StatusArgs) -> anyhow::Result<i32> {
    let reply = block_on(request(socket, "status", Value::Null, ctl::DEFAULT_TIMEOUT))??;
    if args.json {
        print_json(&reply);
    } else {
        print!("{}", status_table::render(&parse_status(socket, reply)?));
    }
    Ok(0)
}

/// vrrpd's status reply as the contract has it.
fn parse_status(socket: &Path, reply: Value) -> anyhow::Result<VrrpdStatus> {
    serde_json::from_value(reply).with_context(|| {
        format!(
            "{}: the status reply does not fit vrrpd's (lbd's socket? use `vrrpctl services`)",
            socket.display()
        )
    })
}

/// `vrrpctl drill ...`.
pub fn drill(socket: &Path, command: &DrillCommand) -> anyhow::Result<i32> {
    match command {
        DrillCommand::Failover { group } => {
            let reply: FailoverDrillReply = block_on(call(
                socket,
                "drill.failover",
                &FailoverParams {
                    group: group.clone(),
                },
                Duration::from_secs(120),
            ))??;
            let group = &reply.group;
            for link in &reply.links {
                println!(
                    "{group}: {} on {}: peer {} (priority {}) advertised {:.1} ms after the release",
                    link.instance, link.interface, link.peer, link.peer_priority, link.takeover_ms,
                );
            }
            let state = reply.state.map_or("?", VrrpState::name);
            match reply.preempted_back_ms {
                Some(ms) => {
                    println!("{group}: preempted back to MASTER {ms:.1} ms after maintenance off")
                }
                None if reply.expect_preempt_back => {
                    println!("{group}: expected to preempt back but has not (state {state})")
                }
                None => println!("{group}: stays {state} (no preemption back)"),
            }
            Ok(0)
        }
        DrillCommand::Fault { group, seconds } => {
            let reply: FaultDrillReply = block_on(call(
                socket,
                "drill.fault",
                &FaultParams {
                    group: group.clone(),
                    seconds: *seconds,
                },
                ctl::DEFAULT_TIMEOUT,
            ))??;
            for g in &reply.groups {
                println!(
                    "{}: {} for {seconds} s",
                    g.group,
                    g.state.map_or("?", VrrpState::name)
                );
            }
            Ok(0)
        }
    }
}

/// `vrrpctl maintenance on|off`.
pub fn maintenance(socket: &Path, args: &MaintenanceArgs) -> anyhow::Result<i32> {
    let on = args.switch == Switch::On;
    let reply: MaintenanceReply = block_on(call(
        socket,
        "maintenance",
        &MaintenanceParams {
            on,
            group: args.group.clone(),
        },
        ctl::DEFAULT_TIMEOUT,
    ))??;
    warn_unsaved(&reply.persisted);
    for g in &reply.groups {
        println!(
            "{}: maintenance {}, now {}",
            g.group,
            if on { "on" } else { "off" },
            g.state.map_or("?", VrrpState::name)
        );
    }
    Ok(0)
}

/// A change vrrpd applied but could not write to its state file: said on
/// stderr, since it is lost at vrrpd's next restart.
fn warn_unsaved(p: &Persisted) {
    if let Some(w) = &p.warning {
        eprintln!("vrrpctl: warning: {w}");
    }
}

/// `vrrpctl priority set|list|clear`.
pub fn priority(socket: &Path, command: &PriorityCommand) -> anyhow::Result<i32> {
    match command {
        PriorityCommand::Set(args) => {
            let reply: PriorityReply = block_on(call(
                socket,
                "priority.set",
                &PriorityParams {
                    instance: args.instance.clone(),
                    group: args.group.clone(),
                    priority: args.priority,
                },
                ctl::DEFAULT_TIMEOUT,
            ))??;
            warn_unsaved(&reply.persisted);
            for i in &reply.instances {
                println!("{}", status_table::priority_line(i));
            }
        }
        PriorityCommand::Clear(args) => {
            let params = if args.all {
                PriorityClearParams {
                    all: true,
                    ..Default::default()
                }
            } else {
                PriorityClearParams {
                    instance: args.instance.clone(),
                    group: args.group.clone(),
                    all: false,
                }
            };
            let reply: PriorityClearReply = block_on(call(
                socket,
                "priority.clear",
                &params,
                ctl::DEFAULT_TIMEOUT,
            ))??;
            warn_unsaved(&reply.persisted);
            if reply.cleared.is_empty() {
                println!("no override to clear");
            }
            for i in &reply.cleared {
                println!("{}", status_table::priority_line(i));
            }
        }
        PriorityCommand::List(args) => {
            let reply = block_on(request(
                socket,
                "priority.list",
                Value::Null,
                ctl::DEFAULT_TIMEOUT,
            ))??;
            if args.json {
                print_json(&reply);
            } else {
                let list: PriorityListReply = serde_json::from_value(reply)
                    .context("the priority.list reply does not fit vrrpd's")?;
                print!("{}", status_table::render_overrides(&list));
            }
        }
    }
    Ok(0)
}

/// `vrrpctl watch`: one line per transition; survives daemon restarts.
pub fn watch(socket: &Path) -> anyhow::Result<i32> {
    block_on(async {
        let status = request(socket, "status", Value::Null, ctl::DEFAULT_TIMEOUT).await?;
        print!("{}", status_table::render(&parse_status(socket, status)?));
        let mut sub =
            ctl::ResumingSubscription::new(socket, vec![ctl::topics::GROUP_STATE.to_owned()], None)
                .with_retry(Duration::from_millis(200), Duration::from_secs(2));
        loop {
            match sub.next().await? {
                ctl::Notice::Event(e) => println!("{}", status_table::transition_line(&e)),
                ctl::Notice::Gap(_) => {
                    println!("missed events: re-reading status");
                    let status = request(socket, "status", Value::Null, ctl::DEFAULT_TIMEOUT)
                        .await
                        .and_then(|s| parse_status(socket, s));
                    match status {
                        Ok(s) => print!("{}", status_table::render(&s)),
                        Err(e) => println!("status unavailable: {e:#}"),
                    }
                }
            }
            use std::io::Write;
            let _ = std::io::stdout().flush();
        }
    })?
}
