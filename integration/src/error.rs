//! Errors of the topology harness.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Everything that can go wrong while building, using or tearing down a lab. Each
/// variant says the inner error's text itself and does not return it as `source()`
/// as well: an `anyhow` chain (`{:#}`) prints it once.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// Two hosts in one topology share a name.
    #[error("topology: host {0:?} is declared twice")]
    DuplicateHost(String),
    /// Two bridges in one topology share a name.
    #[error("topology: bridge {0:?} is declared twice")]
    DuplicateBridge(String),
    /// A host declares the same interface twice.
    #[error("topology: host {host:?} declares interface {iface:?} twice")]
    DuplicateInterface {
        /// Host name.
        host: String,
        /// Interface name.
        iface: String,
    },
    /// An interface is attached to a bridge that the topology does not declare.
    #[error(
        "topology: host {host:?} interface {iface:?} is attached to unknown bridge {bridge:?}"
    )]
    UnknownBridge {
        /// Host name.
        host: String,
        /// Interface name.
        iface: String,
        /// Bridge name that was not declared.
        bridge: String,
    },
    /// A host, bridge or interface name is empty, too long or uses characters outside `[a-z0-9_]` (hosts) or `[A-Za-z0-9_.-]` (interfaces).
    #[error("topology: invalid {kind} name {name:?}: {why}")]
    InvalidName {
        /// What was being named (host, bridge, interface).
        kind: &'static str,
        /// The offending name.
        name: String,
        /// Why it was refused.
        why: &'static str,
    },
    /// A string is not an address with a prefix length such as `198.18.0.10/24`.
    #[error("invalid prefix {0:?}: expected ADDRESS/LENGTH")]
    InvalidPrefix(String),
    /// A host name was looked up that the lab does not have.
    #[error("lab has no host {0:?}")]
    UnknownHost(String),
    /// A host has no interface of that name.
    #[error("host {host:?} has no interface {iface:?}")]
    UnknownInterface {
        /// Host name.
        host: String,
        /// Interface name.
        iface: String,
    },
    /// An empty argument vector was given where a command was expected.
    #[error("empty command line")]
    EmptyCommand,
    /// A command could not be started at all.
    #[error("cannot start {command}: {error}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why it could not start.
        error: io::Error,
    },
    /// A command ran and exited unsuccessfully.
    #[error("{command} failed ({status}): {stderr}")]
    CommandFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// What it wrote to stderr.
        stderr: String,
    },
    /// A command did not finish within its timeout and was killed.
    #[error("{command} did not finish within {timeout:?}")]
    Timeout {
        /// The command line.
        command: String,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// Waiting for a command or process failed.
    #[error("waiting for {command}: {error}")]
    Wait {
        /// The command line.
        command: String,
        /// The error from wait.
        error: io::Error,
    },
    /// The JSON printed by `ip -j` could not be understood.
    #[error("cannot parse the output of {command}: {error}")]
    IpJson {
        /// The command line.
        command: String,
        /// The parse error.
        error: serde_json::Error,
    },
    /// The named namespace file could not be opened.
    #[error("cannot open network namespace {path}: {error}")]
    OpenNamespace {
        /// Path under /run/netns.
        path: PathBuf,
        /// The error from open.
        error: io::Error,
    },
    /// `setns(CLONE_NEWNET)` failed on a helper thread.
    #[error("cannot enter network namespace {netns}: {error}")]
    EnterNamespace {
        /// Namespace name.
        netns: String,
        /// The error from setns.
        error: io::Error,
    },
    /// A helper thread could not be started.
    #[error("cannot start a thread: {0}")]
    Thread(io::Error),
    /// A helper thread ended without giving back a result.
    #[error("thread in namespace {0} ended without a result")]
    ThreadLost(String),
    /// Reading or writing a sysctl inside a namespace failed.
    #[error("sysctl {key} in namespace {netns}: {error}")]
    Sysctl {
        /// Namespace name.
        netns: String,
        /// Dotted sysctl key.
        key: String,
        /// The I/O error.
        error: io::Error,
    },
    /// The lab's log directory could not be created or written.
    #[error("log directory {path}: {error}")]
    LogDir {
        /// The directory or file.
        path: PathBuf,
        /// The I/O error.
        error: io::Error,
    },
    /// A batch file for `ip -batch` could not be written.
    #[error("ip batch file {path}: {error}")]
    BatchFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: io::Error,
    },
    /// The list of network namespaces could not be read.
    #[error("cannot list network namespaces in {path}: {error}")]
    ListNamespaces {
        /// The directory read (normally /run/netns).
        path: PathBuf,
        /// The I/O error.
        error: io::Error,
    },
    /// Sending a signal to a process failed.
    #[error("cannot signal process {pid}: {error}")]
    Signal {
        /// Process (group) id.
        pid: i32,
        /// The error from kill.
        error: io::Error,
    },
    /// A socket operation of a traffic helper failed.
    #[error("{what} {addr}: {error}")]
    Socket {
        /// What was attempted (bind, connect, read, write).
        what: &'static str,
        /// The address involved.
        addr: std::net::SocketAddr,
        /// The I/O error.
        error: io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_prints_the_inner_text_once() {
        let os = || io::Error::other("the kernel said no");
        let errors: Vec<anyhow::Error> = vec![
            LabError::Spawn {
                command: "ip link".into(),
                error: os(),
            }
            .into(),
            LabError::Thread(os()).into(),
            LabError::Sysctl {
                netns: "lb1".into(),
                key: "net.ipv4.ip_forward".into(),
                error: os(),
            }
            .into(),
            LabError::Socket {
                what: "bind",
                addr: "198.18.0.1:80".parse().expect("an address"),
                error: os(),
            }
            .into(),
        ];
        for e in errors {
            let chain = format!("{e:#}");
            assert_eq!(chain.matches("the kernel said no").count(), 1, "{chain}");
        }
    }
}
