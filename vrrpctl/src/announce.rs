//! `vrrpctl announce drain|resume|show`: active-active mode, the VIPs this node's
//! lbd announces through its routing daemon (--socket is lbd's socket here).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use ctl::contract::lbd::{methods, AnnounceStatus, LbdStatus};
use serde_json::Value;

use crate::daemon::{block_on, request};

const TIMEOUT: Duration = Duration::from_secs(10);

/// `vrrpctl announce ...`.
#[derive(Debug, Subcommand)]
pub enum AnnounceCommand {
    /// Withdraw every VIP of this node (the router sends its flows to the other
    /// nodes), until resumed; kept across lbd restarts.
    Drain,
    /// Announce the VIPs of this node's healthy services again.
    Resume,
    /// What this node announces, and its routing daemon's BGP sessions.
    Show,
}

/// The announcement state as lines of text.
pub fn render(a: &AnnounceStatus) -> String {
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.join(", ")
        }
    };
    let mut out = format!(
        "announce via {}: {}; wanted {}; announced {}; {} changes\n",
        a.daemon,
        if a.drained { "DRAINED" } else { "active" },
        list(&a.wanted),
        list(&a.announced),
        a.changes
    );
    out.push_str(&format!("cluster nodes: {}\n", list(&a.members)));
    for p in &a.peers {
        out.push_str(&format!(
            "peer {}: {}, {} prefixes sent\n",
            p.address, p.state, p.prefixes_sent
        ));
    }
    if let Some(e) = &a.error {
        out.push_str(&format!("error: {e}\n"));
    }
    out
}

/// Runs `vrrpctl announce ...` against lbd at `socket`.
pub fn run(socket: &Path, command: &AnnounceCommand) -> anyhow::Result<i32> {
    let reply = match command {
        AnnounceCommand::Drain => block_on(request(
            socket,
            methods::ANNOUNCE_DRAIN,
            Value::Null,
            TIMEOUT,
        ))??,
        AnnounceCommand::Resume => block_on(request(
            socket,
            methods::ANNOUNCE_RESUME,
            Value::Null,
            TIMEOUT,
        ))??,
        AnnounceCommand::Show => {
            let status = block_on(request(socket, ctl::methods::STATUS, Value::Null, TIMEOUT))??;
            let status: LbdStatus =
                serde_json::from_value(status).context("the status reply does not fit lbd's")?;
            match status.announce {
                Some(a) => print!("{}", render(&a)),
                None => println!("{}: active-backup, nothing announced", status.node),
            }
            return Ok(0);
        }
    };
    let a: AnnounceStatus =
        serde_json::from_value(reply).context("the announce reply does not fit lbd's")?;
    print!("{}", render(&a));
    Ok(0)
}
