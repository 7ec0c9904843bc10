//! The command line, reachable from the man page and completion generator
//! (`crates/docgen`) as [`command`].

use clap::{CommandFactory, Parser};

/// Layer-4 balancer daemon: services, SNAT rules, health checks.
///
/// On SIGTERM lbd stops and leaves its ruleset in place, so that established and new
/// connections keep flowing until the next start adopts it; `--teardown` removes it.
#[derive(Debug, Parser)]
#[command(name = "lbd", version, about)]
pub struct Cli {
    /// `--config`, `--node`, `--log-format`: the options both daemons take.
    #[command(flatten)]
    pub daemon: ctl::daemon::DaemonArgs,
    /// Remove the dataplane lbd owns (its nftables table) and exit.
    #[arg(long)]
    pub teardown: bool,
}

/// The command line's definition: what `--help`, the man page and the shell
/// completions describe.
pub fn command() -> clap::Command {
    Cli::command()
}
