//! What can fail in lbd's loop: a configuration refused (at start-up or reload), an
//! apply, a server command, the server state file. The texts are what the operator
//! reads (the log, the `vrrpctl` reply, status). An error either is its inner error
//! (`transparent`) or says the inner error's text itself and does not return it as
//! `source()` as well: an `anyhow` chain (`{:#}`) prints each text once.

use std::path::PathBuf;

use dataplane::DataplaneError;

use crate::backend::ThreadGone;

/// Half-open (`tcp_syn`) checks are configured but cannot run here.
#[derive(Debug, thiserror::Error)]
#[error("the configuration has tcp_syn checks, but {0}")]
pub struct TcpSynUnavailable(pub String);

/// Why a configuration cannot run (checked before anything changes).
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// Its health checks need what this host does not give.
    #[error(transparent)]
    HealthNeeds(#[from] TcpSynUnavailable),
    /// The backend would refuse its desired state.
    #[error("the dataplane would refuse it: {0}")]
    DataplaneRefuses(DataplaneError),
}

/// A reload that drops most of the running services, refused unless forced.
#[derive(Debug, thiserror::Error)]
#[error("the new file removes {} of the {running} running services ({}); if that is meant, reload with force: `vrrpctl --socket <lbd socket> reload --force`", removed.len(), removed.join(", "))]
pub struct MassRemoval {
    /// The services the new file drops.
    pub removed: Vec<String>,
    /// How many services run now.
    pub running: usize,
}

/// Why a reload was refused; the running configuration stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file does not load: the config crate's diagnostics (file, line, key, fix).
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// It loads but cannot run here.
    #[error(transparent)]
    View(#[from] ViewError),
    /// It drops most of the running services.
    #[error(transparent)]
    MassRemoval(#[from] MassRemoval),
    /// The health checker refused the new targets.
    #[error("health targets: {0}")]
    HealthTargets(health::HealthError),
}

/// Why an apply failed; the kernel keeps the previous state.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The backend refused or the kernel failed the change.
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    /// The dataplane thread did not answer.
    #[error(transparent)]
    ThreadGone(#[from] ThreadGone),
}

/// A `server.*` command names what the configuration does not have; the text
/// names what exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerCommandError {
    /// No such service.
    #[error("no service `{service}`; services: {}", list_or_none(services))]
    NoService {
        /// The name asked for.
        service: String,
        /// The services there are.
        services: Vec<String>,
    },
    /// The service has no such server.
    #[error(
        "service `{service}` has no server `{server}`; its servers: {}",
        list_or_none(servers)
    )]
    NoServer {
        /// The service.
        service: String,
        /// The name asked for.
        server: String,
        /// The servers it has.
        servers: Vec<String>,
    },
    /// A run-time weight outside the configuration's range.
    #[error("weight {0}: use 0..={max} as in the file (0 drains the server)", max = config::MAX_WEIGHT)]
    Weight(u32),
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// Why the server state file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ServerFileError {
    /// It exists but cannot be read.
    #[error("{}: cannot be read: {error}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What reading said.
        error: std::io::Error,
    },
    /// It is not a state file of this format.
    #[error("{}: not a valid lbd state file: {error}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What decoding said.
        error: serde_json::Error,
    },
    /// Another format version.
    #[error("{}: format version {found}, this lbd reads version {}", path.display(), crate::servers::VERSION)]
    Version {
        /// The file.
        path: PathBuf,
        /// The version it has.
        found: u32,
    },
    /// Written by the other node (a copied file).
    #[error("{}: written by node `{written_by}`, this is node `{this}`", path.display())]
    OtherNode {
        /// The file.
        path: PathBuf,
        /// The node that wrote it.
        written_by: String,
        /// This node.
        this: String,
    },
}

impl ServerFileError {
    /// Whether its bytes were read (then it is kept aside before being replaced).
    pub fn was_read(&self) -> bool {
        !matches!(self, ServerFileError::Unreadable { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_prints_the_inner_text_once() {
        let inner = DataplaneError::FamilyMismatch {
            owner: "service web, backend srv1".to_owned(),
            addr: "2001:db8::21".parse().unwrap(),
            vip: "198.18.0.100".parse().unwrap(),
        };
        let inner_text = inner.to_string();
        let e = ReloadError::View(ViewError::DataplaneRefuses(inner));
        let chain = format!("{:#}", anyhow::Error::from(e));
        assert_eq!(chain.matches(&inner_text).count(), 1, "{chain}");
        assert_eq!(
            chain,
            format!("the dataplane would refuse it: {inner_text}")
        );

        let file = ServerFileError::Unreadable {
            path: PathBuf::from("/var/lib/lbsuite/lbd.servers"),
            error: std::io::Error::other("Permission denied"),
        };
        let chain = format!("{:#}", anyhow::Error::from(file));
        assert_eq!(chain.matches("Permission denied").count(), 1, "{chain}");
    }
}
