//! vrrpd: VRRP daemon: moves the public and server-side VIPs of each sync group together.

use std::process::ExitCode;

use clap::Parser;

use vrrpd::cli::Cli;
use vrrpd::daemon::{self, Options};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let options = Options {
        config_path: cli.config,
        node: cli.node,
    };
    let (loaded, _instance) = match ctl::daemon::start(
        "vrrpd",
        cli.log_format,
        &options.config_path,
        || options.load(),
        |l| ctl::daemon::Loaded {
            socket: &l.view.control.vrrpd_socket,
            node: &l.view.name,
            fingerprint: &l.view.fingerprint,
            summary: l.view.summary(),
            warnings: l.cluster.warnings.iter().map(ToString::to_string).collect(),
        },
    ) {
        Ok(started) => started,
        Err(status) => return status,
    };
    // Before the runtime exists: its loop runs on this thread.
    let realtime = vrrpd::realtime::apply(&loaded.view.vrrpd);
    ctl::daemon::run("vrrpd", |shutdown| {
        daemon::run(options, loaded, realtime, shutdown)
    })
}
