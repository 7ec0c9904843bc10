//! What can fail when vrrpd opens its per-interface I/O or reloads its
//! configuration. The texts are what the operator reads (the start-up error, the log
//! line and the `vrrpctl reload` reply). An error either is its inner error
//! (`transparent`) or says the inner error's text itself and does not return it as
//! `source()` as well: an `anyhow` chain (`{:#}`) prints each text once.

use std::path::PathBuf;

use crate::net::{AnnounceError, LinkError, SocketError};
use crate::translate::TranslateError;

/// Why the sockets and announcers a plan needs could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// An instance names an interface this node does not have.
    #[error("instance {instance:?}: interface {interface} does not exist on this node")]
    InstanceInterfaceMissing {
        /// The instance.
        instance: String,
        /// The interface it runs on.
        interface: String,
    },
    /// An interface a socket or announcer is for is gone.
    #[error("interface {0} does not exist")]
    InterfaceMissing(String),
    /// The raw VRRP socket could not be opened or set up (the text names the
    /// interface).
    #[error(transparent)]
    Socket(#[from] SocketError),
    /// The interface's MAC address could not be read.
    #[error(transparent)]
    Mac(#[from] LinkError),
    /// The packet socket for gratuitous ARP / NA could not be opened.
    #[error(transparent)]
    Announcer(#[from] AnnounceError),
}

/// Why a reload was refused; the running configuration stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file does not load: the config crate's diagnostics (file, line, key, fix).
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The interfaces could not be listed.
    #[error("listing links: {0}")]
    Links(netif::NetifError),
    /// The configuration cannot run on this node's addresses.
    #[error(transparent)]
    Translate(#[from] TranslateError),
    /// An interface is missing or its sockets could not be opened.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The file renames or removes groups this node keeps in maintenance: their
    /// maintenance would end with the old names.
    #[error(
        "refused: sync group{} {} {} in maintenance on this node and the new configuration has no group of that name (renamed or removed); \
         its maintenance would end with it. Run `vrrpctl maintenance off --group NAME` first, or keep the name",
        if groups.len() > 1 { "s" } else { "" },
        groups.iter().map(|g| format!("{g:?}")).collect::<Vec<_>>().join(", "),
        if groups.len() > 1 { "are" } else { "is" }
    )]
    MaintenanceWouldEnd {
        /// The groups in maintenance the new file lacks.
        groups: Vec<String>,
    },
}

/// The state file could not be written: the change holds until the next restart.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the state file {}: {error}; the change applies now but is lost at the next restart", path.display())]
pub struct StateWriteError {
    /// The state file.
    pub path: PathBuf,
    /// What the write said (in the text, so not a `source()`).
    pub error: std::io::Error,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_prints_the_inner_text_once() {
        let inner = "No space left on device";
        let e = StateWriteError {
            path: PathBuf::from("/var/lib/lbsuite/vrrpd.state"),
            error: std::io::Error::other(inner),
        };
        let chain = format!("{:#}", anyhow::Error::from(e));
        assert_eq!(chain.matches(inner).count(), 1, "{chain}");
        assert!(
            chain.starts_with("cannot write the state file /var/lib/lbsuite/vrrpd.state: No space"),
            "{chain}"
        );
    }
}
