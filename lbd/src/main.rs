//! lbd: Layer-4 balancer daemon: services, SNAT rules, health checks.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};

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
    /// Remove the dataplane lbd owns (its nftables table) and exit.
    #[arg(long)]
    teardown: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        // Plain text for journald and log files; colours on a terminal only.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
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
    tracing::info!(config = %options.config_path.display(), node = %loaded.view.name, "{}", loaded.view.summary());
    if cli.teardown {
        return match daemon::teardown(&loaded.view) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("lbd: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    // One thread for the async side (control, vrrpd link, health checks): at 10,000
    // checks/s the cross-thread wake-ups of a work-stealing runtime cost a third of
    // lbd's CPU (health_bench: 34 % of a core with two workers, 26 % with one).
    // Blocking work has threads of its own: the dataplane, conntrack sync, metrics.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lbd: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM"),
                _ = int.recv() => tracing::info!("SIGINT"),
            }
        };
        daemon::run(options, loaded, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("lbd: {e:#}");
            ExitCode::from(1)
        }
    }
}
