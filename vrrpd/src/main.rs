//! vrrpd: VRRP daemon: moves the public and server-side VIPs of each sync group together.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};

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
                "vrrpd: {}: refused, nothing applied",
                options.config_path.display()
            );
            return ExitCode::from(1);
        }
    };
    tracing::info!(config = %options.config_path.display(), node = %loaded.view.name, "{}", loaded.view.summary());
    // One thread: the daemon loop, the netlink connection task and the control
    // server hand work to each other on a takeover's path, and on one thread that
    // is a task switch instead of a cross-thread wake-up (the metrics server has a
    // thread of its own).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vrrpd: cannot start the async runtime: {e}");
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
            eprintln!("vrrpd: {e:#}");
            ExitCode::from(1)
        }
    }
}
