//! vrrpd: VRRP daemon: moves the public and server-side VIPs of each sync group together.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

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
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let cluster = match config::load(&cli.config) {
        Ok(cluster) => cluster,
        Err(err) => {
            eprintln!("{err}");
            eprintln!("vrrpd: {}: refused, nothing applied", cli.config.display());
            return ExitCode::from(1);
        }
    };
    let view = match cluster.node_view(cli.node.as_deref()) {
        Ok(view) => view,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(1);
        }
    };
    tracing::info!(config = %cli.config.display(), node = %view.name, "{}", view.summary());
    // Honest stub: the config is loaded and valid, but nothing is applied yet.
    eprintln!("vrrpd: the VRRP engine (sockets, VIPs, GARP, control socket) is not built yet; the configuration is valid and nothing was applied");
    ExitCode::from(3)
}
