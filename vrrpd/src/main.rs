//! vrrpd: VRRP daemon: moves the public and server-side VIPs of each sync group together.

use std::process::ExitCode;

use clap::Parser;

use vrrpd::cli::Cli;
use vrrpd::daemon::{self, Options};

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
                "vrrpd: {}: refused, nothing applied",
                options.config_path.display()
            );
            return ExitCode::from(1);
        }
    };
    // Before anything touches the kernel: a second vrrpd on a running master would
    // remove the live VIPs as leftovers of a crash.
    let _instance =
        match ctl::daemon::InstanceLock::acquire("vrrpd", &loaded.view.control.vrrpd_socket) {
            Ok(lock) => lock,
            Err(e) => {
                tracing::error!("{e}");
                eprintln!("vrrpd: {e}");
                return ExitCode::from(1);
            }
        };
    tracing::info!(config = %options.config_path.display(), node = %loaded.view.name, fingerprint = %loaded.view.fingerprint, "{}", loaded.view.summary());
    for w in &loaded.cluster.warnings {
        tracing::warn!("configuration: {w}");
    }
    ctl::daemon::raise_descriptor_limit();
    // Before the runtime exists: its loop runs on this thread.
    let realtime = vrrpd::realtime::apply(&loaded.view.vrrpd);
    ctl::daemon::run("vrrpd", |shutdown| {
        daemon::run(options, loaded, realtime, shutdown)
    })
}
