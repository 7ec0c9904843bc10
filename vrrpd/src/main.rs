//! vrrpd: VRRP daemon: moves the public and server-side VIPs of each sync group together.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use vrrpd::daemon::{self, Options};

/// VRRP daemon: moves the public and server-side VIPs of each sync group together.
#[derive(Debug, Parser)]
#[command(name = "vrrpd", version, about)]
struct Cli {
    /// The cluster.toml shared by both members.
    #[arg(long, value_name = "PATH", default_value = "/etc/lbsuite/cluster.toml")]
    config: PathBuf,
    /// This member's node name (default: the hostname).
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
    /// Log line format on stderr: `text` or `json` (one object a line). Under
    /// systemd each line starts with its syslog priority for the journal.
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    log_format: ctl::logging::LogFormat,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let options = Options {
        config_path: cli.config,
        node: cli.node,
    };
    let (loaded, _instance) = match ctl::daemon::start(
        "vrrpd",
        cli.log_format,
        &options.config_path,
        || options.load(),
        |l| ctl::daemon::Loaded {
            socket: &l.view.control.vrrpd_socket,
            node: &l.view.name,
            fingerprint: &l.view.fingerprint,
            summary: l.view.summary(),
            warnings: l.cluster.warnings.iter().map(ToString::to_string).collect(),
        },
    ) {
        Ok(started) => started,
        Err(status) => return status,
    };
    // Before the runtime exists: its loop runs on this thread.
    let realtime = vrrpd::realtime::apply(&loaded.view.vrrpd);
    ctl::daemon::run("vrrpd", |shutdown| {
        daemon::run(options, loaded, realtime, shutdown)
    })
}
