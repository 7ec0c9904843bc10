//! lbd: Layer-4 balancer daemon: services, SNAT rules, health checks.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use lbd::daemon::{self, Options};

/// Layer-4 balancer daemon: services, SNAT rules, health checks.
///
/// On SIGTERM lbd stops and leaves its ruleset in place, so that established and new
/// connections keep flowing until the next start adopts it; `--teardown` removes it.
#[derive(Debug, Parser)]
#[command(name = "lbd", version, about)]
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
    /// Remove the dataplane lbd owns (its nftables table) and exit.
    #[arg(long)]
    teardown: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let options = Options {
        config_path: cli.config,
        node: cli.node,
    };
    // The lock is taken for `--teardown` too, so that it never removes the dataplane
    // of a running lbd.
    let (loaded, _instance) = match ctl::daemon::start(
        "lbd",
        cli.log_format,
        &options.config_path,
        || options.load(),
        |l| ctl::daemon::Loaded {
            socket: &l.view.control.lbd_socket,
            node: &l.view.name,
            fingerprint: &l.view.fingerprint,
            summary: l.view.summary(),
            warnings: l.cluster.warnings.iter().map(ToString::to_string).collect(),
        },
    ) {
        Ok(started) => started,
        Err(status) => return status,
    };
    if cli.teardown {
        return match daemon::teardown(&loaded.view) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("lbd: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    ctl::daemon::run("lbd", |shutdown| daemon::run(options, loaded, shutdown))
}
