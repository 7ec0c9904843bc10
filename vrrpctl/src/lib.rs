//! vrrpctl: the operator's command line for vrrpd and lbd. A library so that the
//! man page and completion generator (`crates/docgen`) reaches [`command`].

pub mod announce;
pub mod check_config;
pub mod daemon;
pub mod decode;
pub mod import;
pub mod reload;
pub mod server;
pub mod services;
pub mod status_table;

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

/// Operate a vrrpd/lbd cluster node: status, drills, maintenance, config checks.
#[derive(Debug, Parser)]
#[command(name = "vrrpctl", version, about)]
pub struct Cli {
    /// Control socket of vrrpd (default: from --config, else /run/lbsuite/vrrpd.sock).
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Read vrrpd's control socket path from this cluster.toml.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a cluster.toml for every node (or one): exit 0 valid, 1 refused.
    CheckConfig(check_config::CheckConfigArgs),
    /// Write a cluster.toml from keepalived's or HAProxy ALOHA's configuration, and
    /// report what could not be mapped (with file and line) and what was assumed.
    #[command(subcommand)]
    Import(import::ImportCommand),
    /// Decode VRRP packets from a pcap file, or hex lines on stdin.
    Decode(decode::DecodeArgs),
    /// Groups and instances: state, priorities, master, interval.
    Status(daemon::StatusArgs),
    /// Print one line per state transition; resumes across daemon restarts.
    Watch,
    /// Failover and fault drills.
    #[command(subcommand)]
    Drill(daemon::DrillCommand),
    /// Hold groups out of MASTER (on) or let them back (off); kept across vrrpd restarts.
    Maintenance(daemon::MaintenanceArgs),
    /// Priority overrides: set, list, clear (kept until cleared, across reloads and restarts).
    #[command(subcommand)]
    Priority(daemon::PriorityCommand),
    /// Check the file (--config, default /etc/lbsuite/cluster.toml) as check-config
    /// does, then make vrrpd and lbd re-read it; each daemon's result on its own
    /// line; exit 1 if the file or a daemon refused. With --socket: that daemon only.
    Reload(reload::ReloadArgs),
    /// lbd's services and servers (--socket is lbd's socket here; default: --config's
    /// control.lbd_socket, else /run/lbsuite/lbd.sock).
    Services(services::ServicesArgs),
    /// Run-time control of one server on this node's lbd: drain, disable, enable,
    /// weight (kept until cleared, across reloads and lbd restarts; this node only).
    /// --socket is lbd's socket here.
    #[command(subcommand)]
    Server(server::ServerCommand),
    /// Active-active mode: drain this node's VIP announcements, resume them, or
    /// show them with the routing daemon's sessions. --socket is lbd's socket here.
    #[command(subcommand)]
    Announce(announce::AnnounceCommand),
}

/// The command line's definition: what `--help`, the man page and the shell
/// completions describe.
pub fn command() -> clap::Command {
    Cli::command()
}
