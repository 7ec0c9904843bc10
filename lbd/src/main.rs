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
    raise_descriptor_limit();
    ctl::daemon::run("lbd", |shutdown| daemon::run(options, loaded, shutdown))
}

/// Raises the soft descriptor limit to the hard one (systemd's default soft limit
/// is 1024). Whatever else runs short, the /metrics server sheds its own clients
/// first; this leaves room for the dataplane, health checks, connection sync and
/// control clients.
fn raise_descriptor_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        let error = std::io::Error::last_os_error();
        tracing::warn!(%error, "cannot read the descriptor limit (RLIMIT_NOFILE)");
        return;
    }
    let hard = if limit.rlim_max == libc::RLIM_INFINITY {
        // The kernel refuses more than fs.nr_open descriptors, whatever the limit.
        std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(1 << 20)
    } else {
        limit.rlim_max
    };
    if limit.rlim_cur >= hard {
        tracing::debug!(
            soft = limit.rlim_cur,
            "descriptor limit already at the hard limit"
        );
        return;
    }
    let from = limit.rlim_cur;
    limit.rlim_cur = hard;
    // SAFETY: setrlimit reads only the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } == 0 {
        tracing::info!(
            from,
            to = hard,
            "descriptor limit (RLIMIT_NOFILE) raised to the hard limit"
        );
    } else {
        let error = std::io::Error::last_os_error();
        tracing::warn!(%error, soft = from, hard, "cannot raise the descriptor limit (RLIMIT_NOFILE)");
    }
}
