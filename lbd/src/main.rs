//! lbd: Layer-4 balancer daemon: services, SNAT rules, health checks.

use std::process::ExitCode;

use clap::Parser;

use lbd::cli::Cli;
use lbd::daemon::{self, Options};

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
