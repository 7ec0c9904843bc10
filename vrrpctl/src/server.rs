//! `vrrpctl server drain|disable|enable|weight|list|clear`: run-time control of
//! one server on lbd (this node's lbd; --socket is lbd's socket here).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use ctl::contract::lbd::{
    methods, ApplyOutcome, ServerClearParams, ServerClearReply, ServerListReply,
    ServerOverrideEntry, ServerParams, ServerReply, ServerWeightParams,
};
use serde_json::Value;

use crate::daemon::{block_on, call, print_json, request};

/// An apply of a large table may take a while.
const TIMEOUT: Duration = Duration::from_secs(30);

/// What every change says: the override is this node's.
const THIS_NODE_ONLY: &str = "note: this applies to this node's lbd only: run the same command on the peer node too, or a failover serves the server as the peer's configuration says";

/// `vrrpctl server ...`.
#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// Weight 0 (as `ipvsadm -e -w 0`): no new connections, established ones
    /// continue; watch ACTIVE in `vrrpctl services` fall to 0.
    Drain(Target),
    /// Out of service as if its health check failed (established connections
    /// as for a failed check: see inhibit_on_failure).
    Disable(Target),
    /// Clear the server's override: back to the configuration.
    Enable(Target),
    /// A run-time weight (0..=65535, as in the file; 0 drains).
    Weight(WeightArgs),
    /// The overrides in force on this node.
    List(ListArgs),
    /// Clear every override on this node (--all).
    Clear(ClearArgs),
}

/// SERVICE/SERVER.
#[derive(Debug, Args)]
pub struct Target {
    /// The server, as SERVICE/SERVER (names from cluster.toml).
    #[arg(value_name = "SERVICE/SERVER")]
    target: String,
}

/// `vrrpctl server weight SERVICE/SERVER N`.
#[derive(Debug, Args)]
pub struct WeightArgs {
    /// The server, as SERVICE/SERVER.
    #[arg(value_name = "SERVICE/SERVER")]
    target: String,
    /// The weight.
    weight: u32,
}

/// `vrrpctl server list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print lbd's reply as JSON.
    #[arg(long)]
    json: bool,
}

/// `vrrpctl server clear --all`.
#[derive(Debug, Args)]
pub struct ClearArgs {
    /// Every override (one server: `vrrpctl server enable SERVICE/SERVER`).
    #[arg(long, required = true)]
    all: bool,
}

/// SERVICE/SERVER split.
fn split(target: &str) -> anyhow::Result<(String, String)> {
    match target.split_once('/') {
        Some((service, server)) if !service.is_empty() && !server.is_empty() => {
            Ok((service.to_owned(), server.to_owned()))
        }
        _ => anyhow::bail!("`{target}`: name the server as SERVICE/SERVER, e.g. web/srv2"),
    }
}

/// The apply's outcome, and whether the command failed because of it.
fn apply_line(apply: &ApplyOutcome) -> (String, bool) {
    match (&apply.error, apply.changes) {
        (Some(e), _) => (
            format!("dataplane apply FAILED: {e} (the override is kept; lbd retries the apply)"),
            true,
        ),
        (None, Some(n)) => (format!("applied ({n} dataplane changes)"), false),
        (None, None) => ("applied".to_owned(), false),
    }
}

/// One override, as `list` and `clear` print it.
pub fn entry_line(e: &ServerOverrideEntry) -> String {
    format!(
        "{}/{}: {} (since unix ms {})",
        e.service, e.server, e.server_override, e.since_unix_ms
    )
}

/// One change, as the set commands print it.
pub fn reply_text(r: &ServerReply) -> (String, bool) {
    let now = r.server_override.map_or_else(
        || "no override (the configuration rules)".to_owned(),
        |o| o.to_string(),
    );
    let was = r
        .previous
        .map_or_else(|| "none".to_owned(), |o| o.to_string());
    let (apply, failed) = apply_line(&r.apply);
    let mut out = format!(
        "{}/{} on {}: {now} (was {was}); state {}, weight {} (configured {}); {apply}\n",
        r.service, r.server, r.node, r.state, r.effective_weight, r.weight
    );
    if !r.persisted {
        out.push_str("warning: lbd could not write its state file: this override is lost if lbd restarts (see `vrrpctl services --json`, server_overrides)\n");
    }
    out.push_str(THIS_NODE_ONLY);
    out.push('\n');
    (out, failed)
}

/// Runs `vrrpctl server ...` against lbd at `socket`.
pub fn run(socket: &Path, command: &ServerCommand) -> anyhow::Result<i32> {
    let set = |method: &str, target: &str, weight: Option<u32>| -> anyhow::Result<i32> {
        let (service, server) = split(target)?;
        let reply: ServerReply = match weight {
            Some(weight) => block_on(call(
                socket,
                method,
                &ServerWeightParams {
                    service,
                    server,
                    weight,
                },
                TIMEOUT,
            ))??,
            None => block_on(call(
                socket,
                method,
                &ServerParams { service, server },
                TIMEOUT,
            ))??,
        };
        let (text, failed) = reply_text(&reply);
        print!("{text}");
        Ok(i32::from(failed))
    };
    match command {
        ServerCommand::Drain(t) => set(methods::SERVER_DRAIN, &t.target, None),
        ServerCommand::Disable(t) => set(methods::SERVER_DISABLE, &t.target, None),
        ServerCommand::Enable(t) => set(methods::SERVER_ENABLE, &t.target, None),
        ServerCommand::Weight(a) => set(methods::SERVER_WEIGHT, &a.target, Some(a.weight)),
        ServerCommand::List(a) => {
            let reply = block_on(request(socket, methods::SERVER_LIST, Value::Null, TIMEOUT))??;
            if a.json {
                print_json(&reply);
                return Ok(0);
            }
            let list: ServerListReply = serde_json::from_value(reply)
                .context("the server.list reply does not fit lbd's")?;
            if list.overrides.is_empty() {
                println!("no server override on {}", list.node);
            } else {
                println!("server overrides on {} (this node only):", list.node);
            }
            for e in &list.overrides {
                println!("{}", entry_line(e));
            }
            Ok(0)
        }
        ServerCommand::Clear(a) => {
            let reply: ServerClearReply = block_on(call(
                socket,
                methods::SERVER_CLEAR,
                &ServerClearParams { all: a.all },
                TIMEOUT,
            ))??;
            if reply.cleared.is_empty() {
                println!("no server override to clear on {}", reply.node);
            }
            for e in &reply.cleared {
                println!("cleared {}", entry_line(e));
            }
            if !reply.persisted {
                println!("warning: lbd could not write its state file: the cleared overrides come back if lbd restarts");
            }
            let (apply, failed) = apply_line(&reply.apply);
            println!("{apply}");
            Ok(i32::from(failed))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ctl::contract::lbd::ServerOverride;

    #[test]
    fn targets_are_service_slash_server() {
        assert_eq!(split("web/srv2").unwrap(), ("web".into(), "srv2".into()));
        for bad in ["web", "/srv2", "web/", ""] {
            assert!(split(bad)
                .unwrap_err()
                .to_string()
                .contains("SERVICE/SERVER"));
        }
    }

    #[test]
    fn a_change_says_what_it_did_and_that_it_is_this_nodes() {
        let r = ServerReply {
            node: "lb1".into(),
            service: "web".into(),
            server: "srv2".into(),
            server_override: Some(ServerOverride::Drain),
            previous: None,
            state: "drain".into(),
            weight: 3,
            effective_weight: 0,
            persisted: true,
            apply: ApplyOutcome {
                ok: true,
                changes: Some(2),
                ..ApplyOutcome::default()
            },
        };
        let (text, failed) = reply_text(&r);
        assert!(!failed);
        assert!(
            text.starts_with("web/srv2 on lb1: drain (was none); state drain, weight 0 (configured 3); applied (2 dataplane changes)\n"),
            "{text}"
        );
        assert!(text.contains("this node's lbd only"), "{text}");
        let failed_apply = ServerReply {
            persisted: false,
            apply: ApplyOutcome {
                error: Some("EBUSY".into()),
                ..ApplyOutcome::default()
            },
            ..r
        };
        let (text, failed) = reply_text(&failed_apply);
        assert!(failed);
        assert!(text.contains("apply FAILED: EBUSY"), "{text}");
        assert!(text.contains("lost if lbd restarts"), "{text}");
    }
}
