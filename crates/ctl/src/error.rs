//! Errors of the control protocol's client and server helpers.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::wire::{codes, ReplyError};

/// Everything that can go wrong talking or serving the control protocol. A variant
/// whose text says the inner error's does not return it as `source()` as well: an
/// `anyhow` chain (`{:#}`) prints it once. The others keep it as the source.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// No socket at the path, or nobody listening on it.
    #[error("{}: no control socket answering; is the daemon running?", path.display())]
    NotRunning {
        /// Socket path.
        path: PathBuf,
        /// Underlying connect error.
        #[source]
        source: io::Error,
    },
    /// The socket exists but this user may not connect to it.
    #[error("{}: permission denied; run as root or as a member of the socket's group", path.display())]
    PermissionDenied {
        /// Socket path.
        path: PathBuf,
        /// Underlying connect error.
        #[source]
        source: io::Error,
    },
    /// Connecting failed for another reason.
    #[error("{}: cannot connect: {error}", path.display())]
    Connect {
        /// Socket path.
        path: PathBuf,
        /// Underlying connect error.
        error: io::Error,
    },
    /// Reading from or writing to an established connection failed.
    #[error("{}: connection error: {error}", path.display())]
    Io {
        /// Socket path.
        path: PathBuf,
        /// Underlying I/O error.
        error: io::Error,
    },
    /// The peer closed the connection.
    #[error("{}: connection closed by the daemon", path.display())]
    ConnectionClosed {
        /// Socket path.
        path: PathBuf,
    },
    /// No reply within the request timeout.
    #[error("{}: no reply to {method:?} within {timeout:?}", path.display())]
    Timeout {
        /// Socket path.
        path: PathBuf,
        /// Method that timed out.
        method: String,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// The daemon does not speak our protocol version.
    #[error("{}: protocol version mismatch: we speak {ours}, the daemon says: {message}", path.display())]
    VersionMismatch {
        /// Socket path.
        path: PathBuf,
        /// Our protocol version.
        ours: u32,
        /// The daemon's explanation (names the versions it accepts).
        message: String,
    },
    /// The daemon answered the request with an error.
    #[error("{}: {method} failed: {}", path.display(), error)]
    Remote {
        /// Socket path.
        path: PathBuf,
        /// Method that failed.
        method: String,
        /// Code and message from the daemon.
        error: ReplyError,
    },
    /// The daemon closed the connection and said why (too many connections, idle).
    #[error("{}: the daemon closed the connection: {}", path.display(), error)]
    Dropped {
        /// Socket path.
        path: PathBuf,
        /// Code and message from the daemon.
        error: ReplyError,
    },
    /// The daemon sent something that is not a valid protocol line.
    #[error("{}: invalid message from the daemon: {reason}", path.display())]
    Protocol {
        /// Socket path.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The daemon's result does not fit the contract (`crate::contract`): a
    /// daemon of another version that changed a field it should not have.
    #[error("{}: the reply to {method} does not fit the control contract: {error}", path.display())]
    Decode {
        /// Socket path.
        path: PathBuf,
        /// Method answered.
        method: String,
        /// What did not fit.
        error: serde_json::Error,
    },
    /// A request could not be encoded.
    #[error("cannot encode request {method:?}: {error}")]
    Encode {
        /// Method being encoded.
        method: String,
        /// Underlying error.
        error: serde_json::Error,
    },
    /// A live daemon is already serving on the socket path.
    #[error("{}: a daemon is already serving on this socket; refusing to replace it", path.display())]
    SocketInUse {
        /// Socket path.
        path: PathBuf,
    },
    /// The socket path exists and is not a socket.
    #[error("{}: exists and is not a socket; refusing to replace it", path.display())]
    NotASocket {
        /// Socket path.
        path: PathBuf,
    },
    /// Inspecting or removing a stale socket file failed.
    #[error("{}: cannot replace stale socket: {error}", path.display())]
    StaleSocket {
        /// Socket path.
        path: PathBuf,
        /// Underlying error.
        error: io::Error,
    },
    /// Creating the socket's directory failed.
    #[error("{}: cannot create socket directory: {error}", path.display())]
    CreateDir {
        /// Directory path.
        path: PathBuf,
        /// Underlying error.
        error: io::Error,
    },
    /// Binding the socket failed.
    #[error("{}: cannot bind control socket: {error}", path.display())]
    Bind {
        /// Socket path.
        path: PathBuf,
        /// Underlying error.
        error: io::Error,
    },
    /// Setting the socket's mode or group failed.
    #[error("{}: cannot set socket permissions: {error}", path.display())]
    Permissions {
        /// Socket path.
        path: PathBuf,
        /// Underlying error.
        error: io::Error,
    },
    /// The configured socket group does not exist.
    #[error("control socket group {name:?} does not exist")]
    UnknownGroup {
        /// Group name.
        name: String,
    },
    /// Looking up the configured socket group failed.
    #[error("cannot look up control socket group {name:?}: {error}")]
    GroupLookup {
        /// Group name.
        name: String,
        /// Underlying error.
        error: io::Error,
    },
    /// Accepting a connection failed.
    #[error("{}: cannot accept connections: {error}", path.display())]
    Accept {
        /// Socket path.
        path: PathBuf,
        /// Underlying error.
        error: io::Error,
    },
}

impl CtlError {
    /// Whether reconnecting may help (the daemon went away), as opposed to a permanent refusal.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            CtlError::NotRunning { .. }
                | CtlError::Connect { .. }
                | CtlError::Io { .. }
                | CtlError::ConnectionClosed { .. }
                | CtlError::Dropped { .. }
                | CtlError::Timeout { .. }
        )
    }
}

/// Lets a request handler use `?` on a `CtlError` (e.g. vrrpd calling lbd inside a handler).
impl From<CtlError> for ReplyError {
    fn from(err: CtlError) -> Self {
        match err {
            CtlError::Remote { error, .. } => error,
            CtlError::Timeout { .. } => ReplyError::new(codes::FAILED, err.to_string()),
            other => ReplyError::internal(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_prints_the_inner_text_once() {
        let path = || PathBuf::from("/run/lbsuite/lbd.sock");
        let os = || io::Error::other("the kernel said no");
        let json = || serde_json::from_str::<u32>("\"the parser said no\"").unwrap_err();
        let reply = || ReplyError::new(codes::FAILED, "the daemon said no");
        let errors: Vec<(anyhow::Error, &str)> = vec![
            (
                CtlError::NotRunning {
                    path: path(),
                    source: os(),
                }
                .into(),
                "the kernel said no",
            ),
            (
                CtlError::Connect {
                    path: path(),
                    error: os(),
                }
                .into(),
                "the kernel said no",
            ),
            (
                CtlError::Io {
                    path: path(),
                    error: os(),
                }
                .into(),
                "the kernel said no",
            ),
            (
                CtlError::Remote {
                    path: path(),
                    method: "status".into(),
                    error: reply(),
                }
                .into(),
                "the daemon said no",
            ),
            (
                CtlError::Dropped {
                    path: path(),
                    error: reply(),
                }
                .into(),
                "the daemon said no",
            ),
            (
                CtlError::Decode {
                    path: path(),
                    method: "status".into(),
                    error: json(),
                }
                .into(),
                "the parser said no",
            ),
            (
                CtlError::Encode {
                    method: "status".into(),
                    error: json(),
                }
                .into(),
                "the parser said no",
            ),
            (
                CtlError::Bind {
                    path: path(),
                    error: os(),
                }
                .into(),
                "the kernel said no",
            ),
            (
                CtlError::GroupLookup {
                    name: "lbsuite".into(),
                    error: os(),
                }
                .into(),
                "the kernel said no",
            ),
            (
                CtlError::Accept {
                    path: path(),
                    error: os(),
                }
                .into(),
                "the kernel said no",
            ),
        ];
        for (e, inner) in errors {
            let chain = format!("{e:#}");
            assert_eq!(chain.matches(inner).count(), 1, "{chain}");
        }
    }
}
