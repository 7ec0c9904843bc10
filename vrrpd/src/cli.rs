//! The command line, reachable from the man page and completion generator
//! (`crates/docgen`) as [`command`].

use std::path::PathBuf;

use clap::{CommandFactory, Parser};

/// VRRP daemon: moves the public and server-side VIPs of each sync group together.
#[derive(Debug, Parser)]
#[command(name = "vrrpd", version, about)]
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
}

/// The command line's definition: what `--help`, the man page and the shell
/// completions describe.
pub fn command() -> clap::Command {
    Cli::command()
}
