//! lbd: Layer-4 balancer daemon: services, SNAT rules, health checks.

use std::process::ExitCode;

use clap::Parser;

use lbd::cli::Cli;
use lbd::daemon::{self, Options};

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
