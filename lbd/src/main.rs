//! lbd: Layer-4 balancer daemon: services, SNAT rules, health checks.

use std::process::ExitCode;

use clap::Parser;

use lbd::cli::Cli;
use lbd::daemon;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The lock is taken for `--teardown` too, so that it never removes the dataplane
    // of a running lbd.
    let (options, loaded, _instance) =
        match ctl::daemon::start_node("lbd", &cli.daemon, |v| &v.control.lbd_socket) {
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
