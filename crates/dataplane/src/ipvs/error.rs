//! Errors of the IPVS backend, each saying what to fix.

use std::io;
use std::path::PathBuf;

use ::ipvs::IpvsError;

use crate::DataplaneError;

/// Why the IPVS backend could not apply, read or sync. A variant that wraps another
/// error says its text itself and does not return it as `source()` as well: an
/// `anyhow` chain (`{:#}`) prints it once.
#[derive(Debug, thiserror::Error)]
pub enum IpvsBackendError {
    /// The IPVS generic-netlink family could not be used.
    #[error("cannot use IPVS: {0}")]
    Connect(IpvsError),
    /// The kernel refused a change to one service (the client's error names the fix).
    #[error("service {service}: {error}")]
    Kernel {
        /// Service name from the desired state (or the kernel's key for an orphan).
        service: String,
        /// The client's error.
        error: IpvsError,
    },
    /// Reading IPVS state failed.
    #[error("reading IPVS state: {0}")]
    Read(IpvsError),
    /// IPVS has no random scheduler.
    #[error("service {service}: IPVS has no `random` scheduler; use rr or wrr (the nearest), or the nft backend")]
    RandomScheduler {
        /// Service name.
        service: String,
    },
    /// IPVS services are keyed by one port.
    #[error("service {service}: an IPVS service has one port, not the range {first}-{last}; use the nft backend for port ranges, or one service per port")]
    PortRange {
        /// Service name.
        service: String,
        /// First port.
        first: u16,
        /// Last port.
        last: u16,
    },
    /// Direct routing and tunnelling deliver the packet unchanged.
    #[error("service {service}: backend {backend} has port {port} but the service's port is {service_port}; mode {forward} cannot change the destination port: drop the backend port or use mode nat")]
    PortChangeWithoutNat {
        /// Service name.
        service: String,
        /// Backend name.
        backend: String,
        /// The backend's port.
        port: u16,
        /// The service's port.
        service_port: u16,
        /// "dr" or "tunnel" (the configuration's `mode`).
        forward: &'static str,
    },
    /// Two backends of one service at the same address and port.
    #[error("service {service}: backends {first} and {second} are both {addr}; IPVS keys real servers by address and port")]
    DuplicateBackend {
        /// Service name.
        service: String,
        /// First backend.
        first: String,
        /// Second backend.
        second: String,
        /// The shared address and port.
        addr: String,
    },
    /// A persistence the kernel would refuse.
    #[error("service {service}: persistence {what}")]
    BadPersistence {
        /// Service name.
        service: String,
        /// What is wrong, and the fix.
        what: String,
    },
    /// A backend weight above what the kernel takes.
    #[error("service {service}: backend {backend} weight {weight} is above {max}")]
    WeightTooLarge {
        /// Service name.
        service: String,
        /// Backend name.
        backend: String,
        /// The weight.
        weight: u32,
        /// The largest weight IPVS takes.
        max: u32,
    },
    /// `net.ipv4.vs.conntrack` could not be set.
    #[error("cannot set net.ipv4.vs.conntrack=1 through {path}: {error}; without it netfilter does not see IPVS connections and the SNAT rules never apply: load ip_vs (`modprobe ip_vs`) and run lbd as root in the network namespace of the services")]
    Conntrack {
        /// The sysctl file.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },
    /// A sloppy sysctl (active-active mode) could not be set.
    #[error("cannot set {path} to 1: {error}; in active-active mode IPVS must take up connections a router moves here in the middle, or they break: load ip_vs and run lbd as root in the network namespace of the services")]
    Sloppy {
        /// The sysctl file.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },
    /// The ownership record could not be read or written.
    #[error("IPVS ownership record {path}: {error}; lbd keeps there the services it created (to delete them later, and never others): make its directory writable by lbd")]
    Record {
        /// The record file.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },
    /// The ownership record holds a line this backend cannot read.
    #[error("IPVS ownership record {path} line {line}: cannot read {text:?}; delete the file (lbd then owns only the services of its configuration)")]
    RecordSyntax {
        /// The record file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
    /// The sync daemon could not be started or stopped.
    #[error("IPVS sync daemon: {0}")]
    Sync(IpvsError),
    /// A sync interface name the kernel cannot hold.
    #[error("IPVS sync daemon: interface name {0:?} is empty or longer than 15 bytes")]
    SyncInterface(String),
}

impl From<IpvsBackendError> for DataplaneError {
    fn from(e: IpvsBackendError) -> DataplaneError {
        DataplaneError::Ipvs(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_prints_the_inner_text_once() {
        let kernel = || io::Error::other("the kernel said no");
        let client = || IpvsError::Send(kernel());
        let errors: Vec<anyhow::Error> = vec![
            IpvsBackendError::Connect(client()).into(),
            IpvsBackendError::Kernel {
                service: "web".into(),
                error: client(),
            }
            .into(),
            IpvsBackendError::Read(client()).into(),
            IpvsBackendError::Conntrack {
                path: "/proc/sys/net/ipv4/vs/conntrack".into(),
                error: kernel(),
            }
            .into(),
            IpvsBackendError::Record {
                path: "/var/lib/lbd/ipvs-owned".into(),
                error: kernel(),
            }
            .into(),
            IpvsBackendError::Sloppy {
                path: "/proc/sys/net/ipv4/vs/sloppy_tcp".into(),
                error: kernel(),
            }
            .into(),
            IpvsBackendError::Sync(client()).into(),
            DataplaneError::from(IpvsBackendError::Read(client())).into(),
            DataplaneError::Socket {
                op: "send",
                error: kernel(),
            }
            .into(),
        ];
        for e in errors {
            let chain = format!("{e:#}");
            assert_eq!(chain.matches("the kernel said no").count(), 1, "{chain}");
        }
    }
}
