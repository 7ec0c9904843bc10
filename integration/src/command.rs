//! Running the `ip` binary and other one-shot commands with a timeout.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::LabError;

/// Timeout for iproute2 calls made by the harness itself.
pub(crate) const IP_TIMEOUT: Duration = Duration::from_secs(10);

/// Renders a command line for error messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            // A read error only truncates the captured output; the exit status still tells.
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

/// Kills a child's whole process group (it was started as a group leader).
pub(crate) fn kill_group(child: &Child, signal: libc::c_int) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(-pid, signal);
        }
    }
}

/// Whether the child has exited, without reaping it.
pub(crate) fn exited(child: &Child) -> std::io::Result<bool> {
    let pid = libc::id_t::from(child.id());
    // SAFETY: siginfo_t is plain data; waitid fills it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a siginfo_t; WNOWAIT leaves the child waitable.
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            pid,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: reading si_pid of a siginfo_t filled by waitid.
    Ok(unsafe { info.si_pid() } != 0)
}

/// Runs `cmd` to completion, capturing its output; kills its process group after `timeout`.
pub(crate) fn run(cmd: &mut Command, timeout: Duration) -> Result<Output, LabError> {
    let command = describe(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|error| LabError::Spawn {
            command: command.clone(),
            error,
        })?;
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    loop {
        match exited(&child) {
            Ok(true) => break,
            Ok(false) if Instant::now() >= deadline => {
                kill_group(&child, libc::SIGKILL);
                let _ = child.wait();
                return Err(LabError::Timeout { command, timeout });
            }
            Ok(false) => thread::sleep(Duration::from_millis(2)),
            Err(error) => {
                kill_group(&child, libc::SIGKILL);
                let _ = child.wait();
                return Err(LabError::Wait { command, error });
            }
        }
    }
    // The leader is a zombie, so its pid (the group id) cannot be reused yet: kill
    // whatever it left behind in its group (which would also hold the pipes open),
    // then reap it.
    kill_group(&child, libc::SIGKILL);
    let status = child.wait().map_err(|error| LabError::Wait {
        command: command.clone(),
        error,
    })?;
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Runs `cmd` and fails unless it exits successfully; returns its stdout.
pub(crate) fn run_ok(cmd: &mut Command, timeout: Duration) -> Result<String, LabError> {
    let output = run(cmd, timeout)?;
    if !output.status.success() {
        return Err(LabError::CommandFailed {
            command: describe(cmd),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `ip <args>` and returns its stdout.
pub(crate) fn ip(args: &[&str]) -> Result<String, LabError> {
    run_ok(Command::new("ip").args(args), IP_TIMEOUT)
}
