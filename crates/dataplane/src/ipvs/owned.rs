//! Which IPVS services this backend created: a small text file, so that after a
//! restart lbd deletes the services it made and no longer wants, and nothing else.
//!
//! IPVS objects carry no comment or owner tag, so ownership cannot be read from the
//! kernel. The record lives in `/run` by default: the kernel's IPVS table and the
//! record both vanish on reboot. Format, one item a line:
//!
//! ```text
//! # lbsuite: IPVS services created by lbd (deleted when no longer configured)
//! netns 4026532296
//! tcp 198.18.0.100:80
//! udp [2001:db8::100]:53
//! ```
//!
//! The `netns` line is the inode of the network namespace the services were made
//! in; a record from another namespace owns nothing here.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::error::IpvsBackendError;
use super::plan::ServiceKey;

/// Where lbd records its IPVS services unless told otherwise.
pub const DEFAULT_RECORD: &str = "/run/lbsuite/ipvs-owned";

const HEADER: &str = "# lbsuite: IPVS services created by lbd (deleted when no longer configured)";

/// The ownership record of one backend.
#[derive(Debug, Clone)]
pub struct OwnershipRecord {
    path: PathBuf,
    netns: Option<u64>,
}

/// A parsed record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordContents {
    /// Network namespace inode it was written in.
    pub netns: Option<u64>,
    /// Services created.
    pub keys: BTreeSet<ServiceKey>,
}

impl OwnershipRecord {
    /// The record at `path` for the calling thread's network namespace.
    pub fn new(path: &Path) -> OwnershipRecord {
        OwnershipRecord {
            path: path.to_owned(),
            netns: current_netns(),
        }
    }

    /// The record's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The services this backend owns: none when there is no record yet, or when it
    /// was written in another network namespace.
    pub fn load(&self) -> Result<BTreeSet<ServiceKey>, IpvsBackendError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
            Err(error) => {
                return Err(IpvsBackendError::Record {
                    path: self.path.clone(),
                    error,
                })
            }
        };
        let contents = parse(&text, &self.path)?;
        if !same_namespace(contents.netns, self.netns) {
            tracing::warn!(
                record = %self.path.display(),
                "IPVS ownership record was written in another network namespace; owning nothing from it"
            );
            return Ok(BTreeSet::new());
        }
        Ok(contents.keys)
    }

    /// Replaces the record (write to a temporary file, then rename: never half a record).
    pub fn store(&self, keys: &BTreeSet<ServiceKey>) -> Result<(), IpvsBackendError> {
        let err = |error| IpvsBackendError::Record {
            path: self.path.clone(),
            error,
        };
        if let Some(dir) = self.path.parent() {
            if !dir.as_os_str().is_empty() {
                fs::create_dir_all(dir).map_err(err)?;
            }
        }
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        fs::write(&tmp, render(self.netns, keys)).map_err(err)?;
        fs::rename(&tmp, &self.path).map_err(err)
    }

    /// Removes the record (nothing owned any more).
    pub fn remove(&self) -> Result<(), IpvsBackendError> {
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(IpvsBackendError::Record {
                path: self.path.clone(),
                error: e,
            }),
            _ => Ok(()),
        }
    }
}

/// The inode of the calling thread's network namespace.
pub fn current_netns() -> Option<u64> {
    fs::metadata("/proc/thread-self/ns/net")
        .ok()
        .map(|m| m.ino())
}

/// Whether a record's namespace is ours (an unknown one on either side counts as ours:
/// nothing better to go by).
pub fn same_namespace(recorded: Option<u64>, ours: Option<u64>) -> bool {
    match (recorded, ours) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

/// The record's text.
pub fn render(netns: Option<u64>, keys: &BTreeSet<ServiceKey>) -> String {
    let mut out = String::from(HEADER);
    out.push('\n');
    if let Some(n) = netns {
        out.push_str(&format!("netns {n}\n"));
    }
    for k in keys {
        out.push_str(&format!("{k}\n"));
    }
    out
}

/// Parses a record's text; `path` names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<RecordContents, IpvsBackendError> {
    let mut out = RecordContents::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || IpvsBackendError::RecordSyntax {
            path: path.to_owned(),
            line: i + 1,
            text: line.to_owned(),
        };
        if let Some(n) = line.strip_prefix("netns ") {
            out.netns = Some(n.trim().parse().map_err(|_| bad())?);
        } else {
            out.keys.insert(ServiceKey::parse(line).ok_or_else(bad)?);
        }
    }
    Ok(out)
}

/// What to record before changing the kernel: everything owned so far plus what is
/// about to be created, so that a crash half-way still knows every service it made.
pub fn before_apply(
    owned: &BTreeSet<ServiceKey>,
    wanted: &BTreeSet<ServiceKey>,
) -> BTreeSet<ServiceKey> {
    owned.union(wanted).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> ServiceKey {
        ServiceKey::parse(s).unwrap()
    }

    #[test]
    fn render_and_parse_round_trip() {
        let keys = BTreeSet::from([key("tcp 198.18.0.100:80"), key("udp [2001:db8::1]:53")]);
        let text = render(Some(4026532296), &keys);
        assert_eq!(
            text,
            format!("{HEADER}\nnetns 4026532296\ntcp 198.18.0.100:80\nudp [2001:db8::1]:53\n")
        );
        let back = parse(&text, Path::new("r")).unwrap();
        assert_eq!(back.netns, Some(4026532296));
        assert_eq!(back.keys, keys);
    }

    #[test]
    fn a_bad_line_is_named_with_its_number() {
        let err = parse("# x\ntcp 198.18.0.1:80\nfwmark 7\n", Path::new("/run/x")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("/run/x line 3") && text.contains("fwmark 7"),
            "{text}"
        );
        assert!(text.contains("delete the file"), "{text}");
    }

    #[test]
    fn a_record_of_another_namespace_owns_nothing() {
        assert!(same_namespace(Some(5), Some(5)));
        assert!(!same_namespace(Some(5), Some(6)));
        assert!(same_namespace(None, Some(6)));

        let dir = std::env::temp_dir().join(format!("lbsuite-owned-{}", std::process::id()));
        let path = dir.join("ipvs-owned");
        let rec = OwnershipRecord::new(&path);
        assert_eq!(
            rec.load().unwrap(),
            BTreeSet::new(),
            "no file: nothing owned"
        );
        let keys = BTreeSet::from([key("tcp 198.18.0.100:80")]);
        rec.store(&keys).unwrap();
        assert_eq!(rec.load().unwrap(), keys);
        // The same file read as if from another namespace.
        let other = OwnershipRecord {
            path: path.clone(),
            netns: rec.netns.map(|n| n + 1),
        };
        if rec.netns.is_some() {
            assert_eq!(other.load().unwrap(), BTreeSet::new());
        }
        rec.remove().unwrap();
        assert!(!path.exists());
        rec.remove().unwrap();
        let _ = fs::remove_dir(&dir);
    }

    #[test]
    fn before_apply_keeps_what_was_owned_and_adds_what_comes() {
        let owned = BTreeSet::from([key("tcp 198.18.0.100:80")]);
        let wanted = BTreeSet::from([key("tcp 198.18.0.101:80")]);
        assert_eq!(
            before_apply(&owned, &wanted),
            BTreeSet::from([key("tcp 198.18.0.100:80"), key("tcp 198.18.0.101:80")])
        );
    }
}
