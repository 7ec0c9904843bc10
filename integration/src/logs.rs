//! The per-lab log directory: kept when a test fails or when asked to.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::LabError;

/// Set to 1 to keep every lab's logs, passing or not.
pub const KEEP_LOGS_ENV: &str = "LBSUITE_KEEP_LOGS";

/// A directory under the temp dir holding the stdout/stderr of processes run in a lab.
#[derive(Debug)]
pub struct LogDir {
    path: PathBuf,
    next: AtomicU32,
}

impl LogDir {
    /// Creates `<tmp>/<lab id>.logs` and says where it is on stderr.
    pub(crate) fn create(lab_id: &str) -> Result<Self, LabError> {
        let path = std::env::temp_dir().join(format!("{lab_id}.logs"));
        std::fs::create_dir_all(&path).map_err(|error| LabError::LogDir {
            path: path.clone(),
            error,
        })?;
        let _ = writeln!(
            std::io::stderr(),
            "lab {lab_id}: logs in {}",
            path.display()
        );
        Ok(LogDir {
            path,
            next: AtomicU32::new(0),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A fresh file stem for one process: `<host>.<program>.<n>`.
    pub(crate) fn stem(&self, host: &str, program: &str) -> LogStem {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let program: String = program
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        LogStem(self.path.join(format!("{host}.{program}.{n}")))
    }

    /// Writes a file in the directory.
    pub(crate) fn write(&self, name: &str, contents: &str) -> Result<(), LabError> {
        let path = self.path.join(name);
        std::fs::write(&path, contents).map_err(|error| LabError::LogDir { path, error })
    }
}

/// Common start of one process's log file names.
pub(crate) struct LogStem(PathBuf);

impl LogStem {
    /// `<stem>.<stream>`; not `with_extension`, which would eat the counter.
    pub(crate) fn join(&self, stream: &str) -> PathBuf {
        let mut name = self.0.clone().into_os_string();
        name.push(".");
        name.push(stream);
        PathBuf::from(name)
    }
}

fn keep_requested() -> bool {
    std::env::var(KEEP_LOGS_ENV).is_ok_and(|v| v == "1")
}

impl Drop for LogDir {
    fn drop(&mut self) {
        if std::thread::panicking() || keep_requested() {
            let _ = writeln!(
                std::io::stderr(),
                "lab logs kept in {}",
                self.path.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
