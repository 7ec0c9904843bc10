//! The command line, reachable from the man page and completion generator
//! (`crates/docgen`) as [`command`].

use clap::{CommandFactory, Parser};

/// VRRP daemon: moves the public and server-side VIPs of each sync group together.
#[derive(Debug, Parser)]
#[command(name = "vrrpd", version, about)]
pub struct Cli {
    /// `--config`, `--node`, `--log-format`: the options both daemons take.
    #[command(flatten)]
    pub daemon: ctl::daemon::DaemonArgs,
}

/// The command line's definition: what `--help`, the man page and the shell
/// completions describe.
pub fn command() -> clap::Command {
    Cli::command()
}
