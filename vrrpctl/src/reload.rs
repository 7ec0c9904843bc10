//! `vrrpctl reload`: one verdict on the file (the check `check-config` makes), then
//! both daemons re-read it, each one's result said on its own line. A refused file
//! reloads nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use ctl::contract::lbd::{LbdReloadReply, LbdStatus};
use ctl::contract::vrrpd::{ReloadParams, VrrpdReloadReply, VrrpdStatus};
use ctl::CtlError;
use serde_json::Value;

use crate::check_config;
use crate::daemon::{block_on, call};

/// The file the daemons read unless started with another `--config`.
pub const DEFAULT_CONFIG: &str = "/etc/lbsuite/cluster.toml";
/// How long one daemon may take to reload (lbd applies the dataplane).
const TIMEOUT: Duration = Duration::from_secs(30);

/// Arguments of `vrrpctl reload`.
#[derive(Debug, Args)]
pub struct ReloadArgs {
    /// Accept a file that removes most of the running services (lbd refuses one
    /// otherwise: it looks like a file cut short).
    #[arg(long)]
    pub force: bool,
    /// Reload this daemon only.
    #[arg(long, value_enum)]
    pub only: Option<DaemonName>,
}

/// One of the two daemons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DaemonName {
    /// The VRRP daemon.
    Vrrpd,
    /// The balancer daemon.
    Lbd,
}

impl DaemonName {
    fn name(self) -> &'static str {
        match self {
            DaemonName::Vrrpd => "vrrpd",
            DaemonName::Lbd => "lbd",
        }
    }
}

/// What one daemon made of the reload.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// It runs the file now: what changed.
    Applied(String),
    /// It refused the file (its running configuration is unchanged): why.
    Refused(String),
    /// Nothing answers on its socket.
    NotRunning(String),
    /// It could not be asked (permission, timeout, protocol).
    Failed(String),
}

/// Runs `vrrpctl reload`. `socket` (`--socket`): that daemon only, without the
/// file check (the file is the daemon's); else the file of `--config` (default
/// [`DEFAULT_CONFIG`]) is checked, then its `[control]` sockets are reloaded.
pub fn run(socket: Option<&Path>, config: Option<&Path>, args: &ReloadArgs) -> anyhow::Result<i32> {
    if let Some(socket) = socket {
        let outcome = block_on(reload_one(socket, args.force))?;
        return Ok(report(&socket.display().to_string(), &outcome));
    }
    let path = config.map_or_else(|| PathBuf::from(DEFAULT_CONFIG), Path::to_path_buf);
    let valid = match check_config::validate(&path, None) {
        Ok(valid) => valid,
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            eprintln!("{}: refused: nothing reloaded", path.display());
            return Ok(1);
        }
    };
    for w in &valid.warnings {
        eprintln!("warning: {w}");
    }
    println!(
        "{}: valid (fingerprint {})",
        path.display(),
        valid.fingerprint
    );
    let (vrrpd, lbd) = config::control_sockets(&path).map_err(|e| anyhow::anyhow!(e))?;
    let mut code = 0;
    let mut applied = 0;
    for (daemon, socket) in [(DaemonName::Vrrpd, vrrpd), (DaemonName::Lbd, lbd)] {
        if args.only.is_some_and(|only| only != daemon) {
            continue;
        }
        let outcome = block_on(reload_one(&socket, args.force))?;
        code = code.max(report(daemon.name(), &outcome));
        if matches!(outcome, Outcome::Applied(_)) {
            applied += 1;
            if let Some(runs) = block_on(running_fingerprint(daemon, &socket))? {
                if runs != valid.fingerprint {
                    println!(
                        "{}: warning: it runs configuration {runs}, not {}'s {}: does it read another file (--config)?",
                        daemon.name(),
                        path.display(),
                        valid.fingerprint
                    );
                }
            }
        }
    }
    // Nobody reached: nothing was reloaded, which is not a success.
    if applied == 0 {
        code = 1;
    }
    Ok(code)
}

/// Prints one daemon's outcome; its exit code (0 applied or not running).
fn report(who: &str, outcome: &Outcome) -> i32 {
    match outcome {
        Outcome::Applied(what) => {
            println!("{who}: applied ({what})");
            0
        }
        Outcome::Refused(why) => {
            println!("{who}: REFUSED, running configuration unchanged:");
            for line in why.lines() {
                println!("  {line}");
            }
            1
        }
        Outcome::NotRunning(why) => {
            println!("{who}: not running ({why})");
            0
        }
        Outcome::Failed(why) => {
            println!("{who}: FAILED: {why}");
            1
        }
    }
}

/// Asks the daemon at `socket` to reload; its reply says which daemon it is.
async fn reload_one(socket: &Path, force: bool) -> Outcome {
    let params = if force {
        serde_json::to_value(ReloadParams { force }).unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    match crate::daemon::request(socket, ctl::methods::RELOAD, params, TIMEOUT).await {
        Ok(reply) => Outcome::Applied(summary(reply)),
        Err(e) => match e.downcast::<CtlError>() {
            Ok(e @ CtlError::NotRunning { .. }) => Outcome::NotRunning(e.to_string()),
            Ok(CtlError::Remote { error, .. }) => Outcome::Refused(
                error
                    .message
                    .trim_start_matches("reload refused, running configuration unchanged:")
                    .trim()
                    .to_owned(),
            ),
            Ok(e) => Outcome::Failed(e.to_string()),
            Err(e) => Outcome::Failed(format!("{e:#}")),
        },
    }
}

/// A reload reply in a few words: lbd's names services, vrrpd's groups.
fn summary(reply: Value) -> String {
    if reply.get("reloaded").is_some() {
        match serde_json::from_value::<LbdReloadReply>(reply) {
            Ok(r) => r.summary(),
            Err(e) => format!("reply not understood: {e}"),
        }
    } else {
        match serde_json::from_value::<VrrpdReloadReply>(reply) {
            Ok(r) => r.summary(),
            Err(e) => format!("reply not understood: {e}"),
        }
    }
}

/// The fingerprint of the configuration the daemon runs, if it says.
async fn running_fingerprint(daemon: DaemonName, socket: &Path) -> Option<String> {
    let timeout = ctl::DEFAULT_TIMEOUT;
    match daemon {
        DaemonName::Vrrpd => {
            call::<_, VrrpdStatus>(socket, ctl::methods::STATUS, &(), timeout)
                .await
                .ok()?
                .config_fingerprint
        }
        DaemonName::Lbd => call::<_, LbdStatus>(socket, ctl::methods::STATUS, &(), timeout)
            .await
            .ok()
            .map(|s| s.config.fingerprint),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replies_are_summed_up_by_daemon() {
        let vrrpd = json!({"unchanged": ["core"], "updated": ["edge"], "restarted": [],
                           "added": [], "removed": [], "config_changed": {}});
        assert_eq!(summary(vrrpd), "updated: edge; unchanged: core");
        let lbd = json!({"reloaded": true, "services_added": [], "services_removed": [],
                         "services_changed": ["web"], "nat_changed": false, "restart_needed": [],
                         "apply": {"ok": true, "changes": 2, "duration_ms": 1.5}});
        assert_eq!(summary(lbd), "services changed: web; 2 dataplane changes");
    }
}
