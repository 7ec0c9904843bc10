//! vrrpd: VRRP daemon: moves the public and server-side VIPs of each sync group together.

use std::process::ExitCode;

use clap::Parser;

use vrrpd::cli::Cli;
use vrrpd::daemon;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (options, loaded, _instance) =
        match ctl::daemon::start_node("vrrpd", &cli.daemon, |v| &v.control.vrrpd_socket) {
            Ok(started) => started,
            Err(status) => return status,
        };
    // Before the runtime exists: its loop runs on this thread.
    let realtime = vrrpd::realtime::apply(&loaded.view.vrrpd);
    ctl::daemon::run("vrrpd", |shutdown| {
        daemon::run(options, loaded, realtime, shutdown)
    })
}
