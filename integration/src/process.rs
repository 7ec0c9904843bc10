//! A process running inside a host's namespace, killed with its group on drop.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::command::{exited, kill_group};
use crate::error::LabError;
use crate::logs::LogDir;

/// How long a process gets between SIGTERM and SIGKILL when stopped.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// A running process; dropping it sends SIGTERM to its process group, then SIGKILL
/// after [`STOP_GRACE`], and reaps it.
#[derive(Debug)]
pub struct Process {
    child: Child,
    status: Option<ExitStatus>,
    command: String,
    stdout: PathBuf,
    stderr: PathBuf,
    // Keeps the log directory alive as long as someone may read the logs.
    _logs: Arc<LogDir>,
}

impl Process {
    pub(crate) fn new(
        child: Child,
        command: String,
        stdout: PathBuf,
        stderr: PathBuf,
        logs: Arc<LogDir>,
    ) -> Self {
        Process {
            child,
            status: None,
            command,
            stdout,
            stderr,
            _logs: logs,
        }
    }

    /// Process id (also its process-group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The command line it was started with.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// File receiving its stdout.
    pub fn stdout_path(&self) -> &Path {
        &self.stdout
    }

    /// File receiving its stderr.
    pub fn stderr_path(&self) -> &Path {
        &self.stderr
    }

    /// What it has written to stdout so far (lossy UTF-8; empty if unreadable).
    pub fn stdout(&self) -> String {
        read_lossy(&self.stdout)
    }

    /// What it has written to stderr so far (lossy UTF-8; empty if unreadable).
    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr)
    }

    /// Sends a signal to its whole process group.
    pub fn signal(&self, signal: libc::c_int) -> Result<(), LabError> {
        if self.status.is_some() {
            return Ok(());
        }
        let pid = i32::try_from(self.child.id()).map_err(|_| LabError::Signal {
            pid: -1,
            error: std::io::Error::from(std::io::ErrorKind::InvalidInput),
        })?;
        // SAFETY: kill(2) has no memory-safety preconditions.
        if unsafe { libc::kill(-pid, signal) } != 0 {
            return Err(LabError::Signal {
                pid: -pid,
                error: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    /// Its exit status if it has exited; whatever it left in its group is killed then.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, LabError> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        let done = exited(&self.child).map_err(|error| LabError::Wait {
            command: self.command.clone(),
            error,
        })?;
        if !done {
            return Ok(None);
        }
        // Not reaped yet, so the group id is still ours.
        kill_group(&self.child, libc::SIGKILL);
        let status = self.child.wait().map_err(|error| LabError::Wait {
            command: self.command.clone(),
            error,
        })?;
        self.status = Some(status);
        Ok(Some(status))
    }

    /// Waits up to `timeout` for it to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, LabError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGTERM, then SIGKILL after [`STOP_GRACE`]; returns how it ended.
    pub fn stop(mut self) -> Result<ExitStatus, LabError> {
        self.terminate()
    }

    fn terminate(&mut self) -> Result<ExitStatus, LabError> {
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        kill_group(&self.child, libc::SIGTERM);
        if let Some(status) = self.wait_timeout(STOP_GRACE)? {
            return Ok(status);
        }
        kill_group(&self.child, libc::SIGKILL);
        let status = self.child.wait().map_err(|error| LabError::Wait {
            command: self.command.clone(),
            error,
        })?;
        self.status = Some(status);
        Ok(status)
    }
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Err(e) = self.terminate() {
            let _ = writeln!(std::io::stderr(), "stopping {}: {e}", self.command);
        }
    }
}
