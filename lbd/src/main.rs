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
    ctl::logging::init(cli.log_format);
    let options = Options {
        config_path: cli.config,
        node: cli.node,
    };
    let loaded = match daemon::load(&options) {
        Ok(loaded) => loaded,
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            eprintln!(
                "lbd: {}: refused, nothing applied",
                options.config_path.display()
            );
            return ExitCode::from(1);
        }
    };
    // Before anything touches the kernel; `--teardown` too, so that it never removes
    // the dataplane of a running lbd.
    let _instance = match ctl::daemon::InstanceLock::acquire("lbd", &loaded.view.control.lbd_socket)
    {
        Ok(lock) => lock,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("lbd: {e}");
            return ExitCode::from(1);
        }
    };
    tracing::info!(config = %options.config_path.display(), node = %loaded.view.name, fingerprint = %loaded.view.fingerprint, "{}", loaded.view.summary());
    for w in &loaded.cluster.warnings {
        tracing::warn!("configuration: {w}");
    }
    if cli.teardown {
        return match daemon::teardown(&loaded.view) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("lbd: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    ctl::daemon::raise_descriptor_limit();
    ctl::daemon::run("lbd", |shutdown| daemon::run(options, loaded, shutdown))
}
