//! The commands that talk to a running vrrpd over its control socket:
//! status, watch, drills, maintenance, priority, reload.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};

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

/// Arguments of `vrrpctl reload`.
#[derive(Debug, clap::Args)]
pub struct ReloadArgs {
    /// Accept a file that removes most of the running services (lbd refuses one
    /// otherwise: it looks like a file cut short).
    #[arg(long)]
    pub force: bool,
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
async fn request(
    socket: &Path,
    method: &str,
    params: Value,
    timeout: Duration,
) -> anyhow::Result<Value> {
    let client = ctl::Client::connect(socket).await?;
    Ok(client.request_with_timeout(method, params, timeout).await?)
}

fn block_on<F: std::future::Future>(f: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    Ok(rt.block_on(f))
}

fn print_json(v: &Value) {
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
        print!("{}", status_table::render(&reply));
    }
    Ok(0)
}

/// `vrrpctl reload`.
pub fn reload(socket: &Path, args: &ReloadArgs) -> anyhow::Result<i32> {
    let params = if args.force {
        serde_json::json!({"force": true})
    } else {
        Value::Null
    };
    let reply = block_on(request(socket, "reload", params, Duration::from_secs(30)))??;
    for key in ["unchanged", "updated", "restarted", "added", "removed"] {
        let names: Vec<&str> = reply[key]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !names.is_empty() {
            println!("{key}: {}", names.join(", "));
        }
    }
    println!("reloaded");
    Ok(0)
}

/// `vrrpctl drill ...`.
pub fn drill(socket: &Path, command: &DrillCommand) -> anyhow::Result<i32> {
    match command {
        DrillCommand::Failover { group } => {
            let reply = block_on(request(
                socket,
                "drill.failover",
                json!({ "group": group }),
                Duration::from_secs(120),
            ))??;
            let group = reply["group"].as_str().unwrap_or("?");
            for link in reply["links"].as_array().into_iter().flatten() {
                println!(
                    "{group}: {} on {}: peer {} (priority {}) advertised {:.1} ms after the release",
                    link["instance"].as_str().unwrap_or("?"),
                    link["interface"].as_str().unwrap_or("?"),
                    link["peer"].as_str().unwrap_or("?"),
                    link["peer_priority"],
                    link["takeover_ms"].as_f64().unwrap_or(f64::NAN),
                );
            }
            match reply["preempted_back_ms"].as_f64() {
                Some(ms) => {
                    println!("{group}: preempted back to MASTER {ms:.1} ms after maintenance off")
                }
                None if reply["expect_preempt_back"] == json!(true) => {
                    println!(
                        "{group}: expected to preempt back but has not (state {})",
                        reply["state"]
                    )
                }
                None => println!(
                    "{group}: stays {} (no preemption back)",
                    reply["state"].as_str().unwrap_or("?")
                ),
            }
            Ok(0)
        }
        DrillCommand::Fault { group, seconds } => {
            let reply = block_on(request(
                socket,
                "drill.fault",
                json!({ "group": group, "seconds": seconds }),
                ctl::DEFAULT_TIMEOUT,
            ))??;
            for g in reply["groups"].as_array().into_iter().flatten() {
                println!(
                    "{}: {} for {seconds} s",
                    g["group"].as_str().unwrap_or("?"),
                    g["state"].as_str().unwrap_or("?")
                );
            }
            Ok(0)
        }
    }
}

/// `vrrpctl maintenance on|off`.
pub fn maintenance(socket: &Path, args: &MaintenanceArgs) -> anyhow::Result<i32> {
    let on = args.switch == Switch::On;
    let reply = block_on(request(
        socket,
        "maintenance",
        json!({ "on": on, "group": args.group }),
        ctl::DEFAULT_TIMEOUT,
    ))??;
    warn_unsaved(&reply);
    for g in reply["groups"].as_array().into_iter().flatten() {
        println!(
            "{}: maintenance {}, now {}",
            g["group"].as_str().unwrap_or("?"),
            if on { "on" } else { "off" },
            g["state"].as_str().unwrap_or("?")
        );
    }
    Ok(0)
}

/// A change vrrpd applied but could not write to its state file: said on
/// stderr, since it is lost at vrrpd's next restart.
fn warn_unsaved(reply: &Value) {
    if let Some(w) = reply["warning"].as_str() {
        eprintln!("vrrpctl: warning: {w}");
    }
}

/// One instance after a priority command.
fn priority_line(i: &Value) -> String {
    let over = match i["override"]["priority"].as_u64() {
        Some(p) => format!("override {p}"),
        None => "no override".to_owned(),
    };
    format!(
        "{}: priority {} (effective {}), {over}, {}",
        i["instance"].as_str().unwrap_or("?"),
        i["priority"],
        i["effective_priority"],
        i["state"].as_str().unwrap_or("?")
    )
}

/// `vrrpctl priority set|list|clear`.
pub fn priority(socket: &Path, command: &PriorityCommand) -> anyhow::Result<i32> {
    match command {
        PriorityCommand::Set(args) => {
            let reply = block_on(request(
                socket,
                "priority.set",
                json!({ "instance": args.instance, "group": args.group, "priority": args.priority }),
                ctl::DEFAULT_TIMEOUT,
            ))??;
            warn_unsaved(&reply);
            for i in reply["instances"].as_array().into_iter().flatten() {
                println!("{}", priority_line(i));
            }
        }
        PriorityCommand::Clear(args) => {
            let params = if args.all {
                json!({ "all": true })
            } else {
                json!({ "instance": args.instance, "group": args.group })
            };
            let reply = block_on(request(
                socket,
                "priority.clear",
                params,
                ctl::DEFAULT_TIMEOUT,
            ))??;
            warn_unsaved(&reply);
            let cleared = reply["cleared"].as_array().map_or(&[][..], Vec::as_slice);
            if cleared.is_empty() {
                println!("no override to clear");
            }
            for i in cleared {
                println!("{}", priority_line(i));
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
                print!("{}", status_table::render_overrides(&reply));
            }
        }
    }
    Ok(0)
}

/// `vrrpctl watch`: one line per transition; survives daemon restarts.
pub fn watch(socket: &Path) -> anyhow::Result<i32> {
    block_on(async {
        let status = request(socket, "status", Value::Null, ctl::DEFAULT_TIMEOUT).await?;
        print!("{}", status_table::render(&status));
        let mut sub =
            ctl::ResumingSubscription::new(socket, vec![ctl::topics::GROUP_STATE.to_owned()], None)
                .with_retry(Duration::from_millis(200), Duration::from_secs(2));
        loop {
            match sub.next().await? {
                ctl::Notice::Event(e) => println!("{}", status_table::transition_line(&e)),
                ctl::Notice::Gap(_) => {
                    println!("missed events: re-reading status");
                    match request(socket, "status", Value::Null, ctl::DEFAULT_TIMEOUT).await {
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
