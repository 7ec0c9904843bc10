//! External command checks: argv run directly (never through a shell), in a
//! process group of its own so that a timeout kills everything it started.
//!
//! The environment is cleared and then holds `PATH` and:
//! `LBSUITE_SERVICE`, `LBSUITE_SERVER`, `LBSUITE_ADDRESS`, `LBSUITE_PORT`,
//! `LBSUITE_TIMEOUT_MS` and, when checks are pinned to one, `LBSUITE_SOURCE`.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::Command;

use crate::outcome::FailReason;
use crate::target::Target;

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Run `argv` for `target`; exit status 0 within `timeout` is up.
pub(crate) async fn probe(
    target: &Target,
    argv: &[String],
    timeout: Duration,
) -> Result<(), FailReason> {
    let Some((program, args)) = argv.split_first() else {
        return Err(FailReason::Config("exec check with an empty argv".into()));
    };
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .env("PATH", PATH)
        .env("LBSUITE_SERVICE", &*target.name.service)
        .env("LBSUITE_SERVER", &*target.name.server)
        .env("LBSUITE_ADDRESS", target.address.ip().to_string())
        .env("LBSUITE_PORT", target.address.port().to_string())
        .env("LBSUITE_TIMEOUT_MS", timeout.as_millis().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        // If this future is dropped (shutdown), the child still dies.
        .kill_on_drop(true);
    if let Some(src) = target.source {
        command.env("LBSUITE_SOURCE", src.to_string());
    }
    let mut child = command
        .spawn()
        .map_err(|e| FailReason::Io(format!("{program}: {e}")))?;
    let pid = child.id();
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => match (status.code(), status.signal()) {
            (Some(0), _) => Ok(()),
            (Some(code), _) => Err(FailReason::ExitCode(code)),
            (None, Some(sig)) => Err(FailReason::Signal(sig)),
            (None, None) => Err(FailReason::Io(format!("{program}: unknown exit status"))),
        },
        Ok(Err(e)) => Err(FailReason::Io(format!("{program}: {e}"))),
        Err(_) => {
            // The group id is the child's pid (process_group(0)).
            if let Some(pgid) = pid.and_then(|p| i32::try_from(p).ok()) {
                if let Err(e) = killpg(Pid::from_raw(pgid), Signal::SIGKILL) {
                    tracing::debug!(error = %e, pgid, "killing the check's process group");
                }
            }
            // Reap it, so no zombie is left behind.
            if let Err(e) = child.kill().await {
                tracing::debug!(error = %e, "reaping a timed-out check");
            }
            Err(FailReason::Timeout)
        }
    }
}
