//! The state file: the run-time state an operator set (maintenance per group,
//! priority overrides per instance), kept on disk so that a restarted vrrpd (a
//! crash under `Restart=on-failure`, an upgrade, a reboot) comes back as it was
//! left. Read before the first election; written atomically and owner-only
//! ([`ctl::daemon::write_atomically`]).
//!
//! Where: `<dir>/<control socket file stem>.state`, `dir` being `[control]
//! state_dir`, else systemd's `$STATE_DIRECTORY` (`StateDirectory=lbsuite`:
//! /var/lib/lbsuite), else the socket's directory. The socket's stem keeps two
//! nodes sharing one machine (test labs) apart.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The format version this vrrpd writes and reads.
pub const VERSION: u32 = 1;

/// One group held in maintenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Maintenance {
    /// Since when (Unix ms).
    pub since_unix_ms: u64,
    /// Who or what put it there (`vrrpctl maintenance on`, or why vrrpd did).
    pub reason: String,
}

/// One instance's priority set by `priority.set`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorityOverride {
    /// The priority that replaces the file's (tracking deltas still apply on top).
    pub priority: u8,
    /// Since when (Unix ms).
    pub since_unix_ms: u64,
}

/// What an operator set at run time, as the file holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperatorState {
    /// Groups in maintenance, by name.
    pub maintenance: BTreeMap<String, Maintenance>,
    /// Priority overrides, by instance name.
    pub priority_overrides: BTreeMap<String, PriorityOverride>,
}

impl OperatorState {
    /// The override of `instance`, if any.
    pub fn override_of(&self, instance: &str) -> Option<u8> {
        self.priority_overrides.get(instance).map(|o| o.priority)
    }
}

/// The file: a version, the node that wrote it, the state.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileContents {
    version: u32,
    node: String,
    written_unix_ms: u64,
    #[serde(default)]
    maintenance: BTreeMap<String, Maintenance>,
    #[serde(default)]
    priority_overrides: BTreeMap<String, PriorityOverride>,
}

/// Why the file could not be used. Each says its inner error's text itself and does
/// not return it as `source()` as well: an `anyhow` chain (`{:#}`) prints it once.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// It exists but cannot be read (permissions, I/O error, a directory).
    #[error("{path}: cannot be read: {error}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
    /// It was read but is not a state file of this format.
    #[error("{path}: not a valid state file: {error}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The error.
        error: serde_json::Error,
    },
    /// Written by a newer vrrpd.
    #[error("{path}: format version {found}, this vrrpd reads version {VERSION}")]
    Version {
        /// The file.
        path: PathBuf,
        /// The version it says.
        found: u32,
    },
    /// Written for another node (a copied file, or two nodes sharing one path).
    #[error("{path}: written by node `{found}`, this is node `{node}`")]
    OtherNode {
        /// The file.
        path: PathBuf,
        /// This node.
        node: String,
        /// The node the file names.
        found: String,
    },
}

impl LoadError {
    /// Whether the file's bytes were read (and may be kept aside for a look).
    pub fn was_read(&self) -> bool {
        !matches!(self, LoadError::Unreadable { .. })
    }
}

/// Where the state file of a vrrpd with control socket `socket` lives.
/// `state_dir` is `[control] state_dir`, `env_dir` systemd's `$STATE_DIRECTORY`
/// (a colon-separated list: the first).
pub fn state_path(socket: &Path, state_dir: Option<&Path>, env_dir: Option<&OsStr>) -> PathBuf {
    ctl::daemon::state_path(socket, state_dir, env_dir, "vrrpd")
}

/// Reads the state file of node `node`: `Ok(None)` when there is none.
pub fn load(path: &Path, node: &str) -> Result<Option<OperatorState>, LoadError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(LoadError::Unreadable {
                path: path.to_owned(),
                error: source,
            })
        }
    };
    // The version first: a newer format may not parse as this one.
    #[derive(Deserialize)]
    struct Version {
        version: u32,
    }
    let corrupt = |source| LoadError::Corrupt {
        path: path.to_owned(),
        error: source,
    };
    let version: Version = serde_json::from_slice(&bytes).map_err(corrupt)?;
    if version.version != VERSION {
        return Err(LoadError::Version {
            path: path.to_owned(),
            found: version.version,
        });
    }
    let file: FileContents = serde_json::from_slice(&bytes).map_err(corrupt)?;
    if file.node != node {
        return Err(LoadError::OtherNode {
            path: path.to_owned(),
            node: node.to_owned(),
            found: file.node,
        });
    }
    Ok(Some(OperatorState {
        maintenance: file.maintenance,
        priority_overrides: file.priority_overrides,
    }))
}

/// Writes `state` for node `node` atomically: a reader (or a crash) sees the old
/// file or the new one, never a part. Owner-only (0600).
pub fn store(
    path: &Path,
    node: &str,
    state: &OperatorState,
    now_unix_ms: u64,
) -> std::io::Result<()> {
    let contents = FileContents {
        version: VERSION,
        node: node.to_owned(),
        written_unix_ms: now_unix_ms,
        maintenance: state.maintenance.clone(),
        priority_overrides: state.priority_overrides.clone(),
    };
    ctl::daemon::store_json(path, &contents)
}

/// Keeps a copy of a file that could not be used, `<path>.bad`, before it is
/// replaced; returns the copy's path.
pub fn keep_aside(path: &Path) -> std::io::Result<PathBuf> {
    ctl::daemon::keep_aside(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_chain_prints_the_inner_text_once() {
        let error = serde_json::from_slice::<serde_json::Value>(b"{").unwrap_err();
        let inner = error.to_string();
        let e = LoadError::Corrupt {
            path: PathBuf::from("/var/lib/lbsuite/vrrpd.state"),
            error,
        };
        let chain = format!("{:#}", anyhow::Error::from(e));
        assert_eq!(chain.matches(&inner).count(), 1, "{chain}");
        assert!(
            chain.starts_with("/var/lib/lbsuite/vrrpd.state: not a valid state file: "),
            "{chain}"
        );

        let e = LoadError::Unreadable {
            path: PathBuf::from("/var/lib/lbsuite/vrrpd.state"),
            error: std::io::Error::other("Permission denied"),
        };
        let chain = format!("{:#}", anyhow::Error::from(e));
        assert_eq!(chain.matches("Permission denied").count(), 1, "{chain}");
    }

    fn sample() -> OperatorState {
        let mut s = OperatorState::default();
        s.maintenance.insert(
            "edge".into(),
            Maintenance {
                since_unix_ms: 1_700_000_000_000,
                reason: "vrrpctl maintenance on".into(),
            },
        );
        s.priority_overrides.insert(
            "public".into(),
            PriorityOverride {
                priority: 200,
                since_unix_ms: 1_700_000_000_001,
            },
        );
        s
    }

    #[test]
    fn the_path_follows_config_then_systemd_then_the_socket() {
        let socket = Path::new("/run/lbsuite/vrrpd.sock");
        assert_eq!(
            state_path(
                socket,
                Some(Path::new("/srv/state")),
                Some(OsStr::new("/var/lib/lbsuite"))
            ),
            Path::new("/srv/state/vrrpd.state")
        );
        assert_eq!(
            state_path(
                socket,
                None,
                Some(OsStr::new("/var/lib/lbsuite:/var/lib/other"))
            ),
            Path::new("/var/lib/lbsuite/vrrpd.state")
        );
        assert_eq!(
            state_path(socket, None, None),
            Path::new("/run/lbsuite/vrrpd.state")
        );
        // Relative or empty $STATE_DIRECTORY: ignored.
        assert_eq!(
            state_path(socket, None, Some(OsStr::new("state"))),
            Path::new("/run/lbsuite/vrrpd.state")
        );
        let lab = Path::new("/tmp/x/lb1-vrrpd.sock");
        assert_eq!(
            state_path(lab, None, None),
            Path::new("/tmp/x/lb1-vrrpd.state")
        );
    }

    #[test]
    fn a_stored_state_reads_back_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/vrrpd.state");
        assert!(load(&path, "lb1").unwrap().is_none(), "no file: no state");
        store(&path, "lb1", &sample(), 5).unwrap();
        assert_eq!(load(&path, "lb1").unwrap(), Some(sample()));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Replaced, not appended; no temporary file left.
        store(&path, "lb1", &OperatorState::default(), 6).unwrap();
        assert_eq!(load(&path, "lb1").unwrap(), Some(OperatorState::default()));
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsStr::new("vrrpd.state").to_os_string()]);
    }

    #[test]
    fn a_bad_file_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vrrpd.state");
        for (text, want) in [
            ("{\"version\":1,\"node\":\"lb1\",", "not a valid state file"),
            ("", "not a valid state file"),
            ("{\"version\":1,\"node\":\"lb1\",\"written_unix_ms\":1,\"maintenance\":{\"edge\":{}}}", "not a valid state file"),
            ("{\"version\":1,\"node\":\"lb1\",\"written_unix_ms\":1,\"priority_overrides\":{\"public\":{\"priority\":256,\"since_unix_ms\":1}}}", "not a valid state file"),
            ("{\"version\":2,\"node\":\"lb1\"}", "format version 2"),
            ("{\"version\":1,\"node\":\"lb2\",\"written_unix_ms\":1}", "written by node `lb2`"),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = load(&path, "lb1").unwrap_err();
            assert!(err.was_read());
            let msg = err.to_string();
            assert!(msg.contains(want) && msg.contains("vrrpd.state"), "{text}: {msg}");
        }
        // A directory where the file should be: unreadable.
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let err = load(&path, "lb1").unwrap_err();
        assert!(!err.was_read(), "{err}");
    }

    #[test]
    fn a_bad_file_is_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vrrpd.state");
        std::fs::write(&path, "garbage").unwrap();
        let bad = keep_aside(&path).unwrap();
        assert_eq!(bad, dir.path().join("vrrpd.state.bad"));
        assert_eq!(std::fs::read_to_string(bad).unwrap(), "garbage");
    }

    #[test]
    fn a_failed_write_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vrrpd.state");
        store(&path, "lb1", &sample(), 1).unwrap();
        // The temporary file's name is taken by a directory: the write fails.
        std::fs::create_dir(dir.path().join("vrrpd.state.tmp")).unwrap();
        assert!(store(&path, "lb1", &OperatorState::default(), 2).is_err());
        assert_eq!(load(&path, "lb1").unwrap(), Some(sample()));
    }
}
