//! Named network namespaces: unique names, creation, entering, removal, the sweeper.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::command::{ip, run_ok, IP_TIMEOUT};
use crate::error::LabError;

/// Every namespace the harness creates starts with this.
pub const PREFIX: &str = "lbt-";
/// Where `ip netns` keeps its named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh lab id, `lbt-<pid>-<counter>`, unique among live processes.
pub(crate) fn next_lab_id() -> String {
    let n = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{PREFIX}{}-{n}", std::process::id())
}

/// Path of a named namespace's file.
pub fn netns_path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// The pid embedded in a harness namespace name (`lbt-<pid>-<counter>-<host>`), or
/// `None` if the name is not the harness's.
pub fn owner_pid(name: &str) -> Option<i32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, rest) = rest.split_once('-')?;
    let (counter, host) = rest.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) || !digits(counter) || host.is_empty() {
        return None;
    }
    pid.parse().ok()
}

/// Whether a process with this pid exists (zombies count: their parent is alive).
pub(crate) fn pid_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill(2) with signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Names of every named network namespace.
pub fn list_namespaces() -> Result<Vec<String>, LabError> {
    let dir = Path::new(NETNS_DIR);
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => {
            return Err(LabError::ListNamespaces {
                path: dir.to_owned(),
                error,
            })
        }
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| LabError::ListNamespaces {
            path: dir.to_owned(),
            error,
        })?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Whether a named namespace exists.
pub fn namespace_exists(name: &str) -> bool {
    netns_path(name).exists()
}

/// Creates a named namespace.
pub(crate) fn create(name: &str) -> Result<(), LabError> {
    ip(&["netns", "add", name]).map(drop)
}

/// SIGKILLs every process whose network namespace is `name`.
pub(crate) fn kill_processes(name: &str) -> Result<(), LabError> {
    let pids = run_ok(Command::new("ip").args(["netns", "pids", name]), IP_TIMEOUT)?;
    let own = i32::try_from(std::process::id()).unwrap_or(0);
    // Our own process is listed if its main thread ever entered the namespace.
    for pid in pids
        .lines()
        .filter_map(|l| l.trim().parse::<i32>().ok())
        .filter(|&p| p != own)
    {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
    Ok(())
}

/// Kills what runs in the namespace, then removes it; its interfaces go with it.
/// A namespace that is (or goes) missing counts as removed.
pub(crate) fn destroy(name: &str) -> Result<(), LabError> {
    // Another sweeper (a concurrent test process) may remove it at any point, so
    // every failure is re-checked against the namespace still being there.
    let gone = || !namespace_exists(name);
    if gone() {
        return Ok(());
    }
    let killed = match kill_processes(name) {
        Err(_) if gone() => return Ok(()),
        other => other,
    };
    match ip(&["netns", "del", name]) {
        Ok(_) => killed,
        Err(_) if gone() => killed,
        Err(e) => Err(e),
    }
}

/// Moves the calling thread into the named namespace (for sockets opened afterwards).
pub(crate) fn enter(name: &str) -> Result<(), LabError> {
    let path = netns_path(name);
    let file = File::open(&path).map_err(|error| LabError::OpenNamespace { path, error })?;
    // SAFETY: setns on a valid fd; only this thread's network namespace changes.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(LabError::EnterNamespace {
            netns: name.to_owned(),
            error: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Removes the namespaces left behind by runs that died: only names with the harness
/// prefix whose embedded pid no longer runs (processes still inside them are killed
/// first). Returns the names removed. Pids are read in this process's pid namespace,
/// so labs created from another pid namespace may be removed while in use; a reused
/// pid only delays removal.
pub fn sweep() -> Result<Vec<String>, LabError> {
    let mut removed = Vec::new();
    for name in list_namespaces()? {
        let Some(pid) = owner_pid(&name) else {
            continue;
        };
        if pid_alive(pid) {
            continue;
        }
        destroy(&name)?;
        removed.push(name);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_reads_only_harness_names() {
        assert_eq!(owner_pid("lbt-1234-0-lb1"), Some(1234));
        assert_eq!(owner_pid("lbt-1234-17-switch"), Some(1234));
        assert_eq!(owner_pid("lbt-1234-0-"), None);
        assert_eq!(owner_pid("lbt-1234-lb1"), None);
        assert_eq!(owner_pid("lbt-x-0-lb1"), None);
        assert_eq!(owner_pid("lbsweep-1234-0-lb1"), None);
        assert_eq!(owner_pid("other"), None);
    }

    #[test]
    fn lab_ids_are_unique_and_carry_our_pid() {
        let a = next_lab_id();
        let b = next_lab_id();
        assert_ne!(a, b);
        assert_eq!(
            owner_pid(&format!("{a}-h")),
            Some(std::process::id() as i32)
        );
    }
}
