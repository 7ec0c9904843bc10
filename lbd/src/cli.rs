//! The command line, reachable from the man page and completion generator
//! (`crates/docgen`) as [`command`].

use std::path::PathBuf;

use clap::{CommandFactory, Parser};

/// Layer-4 balancer daemon: services, SNAT rules, health checks.
///
/// On SIGTERM lbd stops and leaves its ruleset in place, so that established and new
/// connections keep flowing until the next start adopts it; `--teardown` removes it.
#[derive(Debug, Parser)]
#[command(name = "lbd", version, about)]
pub struct Cli {
    /// The cluster.toml shared by both members.
    #[arg(long, value_name = "PATH", default_value = "/etc/lbsuite/cluster.toml")]
    pub config: PathBuf,
    /// This member's node name (default: the hostname).
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Log line format on stderr: `text` or `json` (one object a line). Under
    /// systemd each line starts with its syslog priority for the journal.
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    pub log_format: ctl::logging::LogFormat,
    /// Remove the dataplane lbd owns (its nftables table) and exit.
    #[arg(long)]
    pub teardown: bool,
}

/// The command line's definition: what `--help`, the man page and the shell
/// completions describe.
pub fn command() -> clap::Command {
    Cli::command()
}
