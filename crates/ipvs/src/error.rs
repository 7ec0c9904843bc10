//! Errors of the IPVS client, each saying what to fix. An error that wraps another
//! says the inner error's text itself and does not return it as `source()` as well:
//! an `anyhow` chain (`{:#}`) prints each text once.

use std::io;

use netlink_packet_core::DecodeError;

/// What can go wrong talking to IPVS.
#[derive(Debug, thiserror::Error)]
pub enum IpvsError {
    /// The generic netlink family "IPVS" is not registered.
    #[error(
        "the kernel has no IPVS (generic netlink family \"IPVS\" not found; if ip_vs is a module, `modprobe ip_vs`); use the nft backend"
    )]
    NotAvailable,

    /// The netlink socket could not be opened or bound.
    #[error("cannot open a generic netlink socket: {0}")]
    Socket(io::Error),

    /// Sending a request failed.
    #[error("cannot send a netlink request: {0}")]
    Send(io::Error),

    /// Receiving a reply failed.
    #[error("cannot receive a netlink reply: {0}")]
    Receive(io::Error),

    /// The kernel did not answer in time.
    #[error("no reply from the kernel to {op} within {secs} s")]
    Timeout {
        /// The request.
        op: String,
        /// The receive timeout.
        secs: u64,
    },

    /// A reply could not be decoded.
    #[error("cannot decode a netlink reply: {0}")]
    Decode(DecodeError),

    /// A reply decoded but lacked something it must carry.
    #[error("malformed IPVS reply: {0}")]
    Malformed(String),

    /// A value that the kernel would refuse, caught before sending.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// EPERM.
    #[error("{op}: permission denied: IPVS changes need CAP_NET_ADMIN (run as root)")]
    PermissionDenied {
        /// The request.
        op: String,
    },

    /// EEXIST on adding a service.
    #[error("service {service} already exists (edit it instead)")]
    ServiceExists {
        /// The service.
        service: String,
    },

    /// ESRCH: the service named by a request does not exist.
    #[error("{op}: no such service {service} in this network namespace")]
    NoSuchService {
        /// The request.
        op: String,
        /// The service.
        service: String,
    },

    /// ENOENT on adding or editing a service: the scheduler is not loaded.
    #[error("scheduler `{scheduler}` is not available: `modprobe ip_vs_{scheduler}` (or pick one of rr, wrr, lc, wlc, sh, mh...)")]
    SchedulerMissing {
        /// The scheduler name.
        scheduler: String,
    },

    /// EEXIST on adding a real server.
    #[error("real server {destination} of {service} already exists (edit it instead)")]
    DestinationExists {
        /// The service.
        service: String,
        /// The real server.
        destination: String,
    },

    /// ENOENT on editing or deleting a real server.
    #[error("{op}: no real server {destination} in service {service}")]
    NoSuchDestination {
        /// The request.
        op: String,
        /// The service.
        service: String,
        /// The real server.
        destination: String,
    },

    /// EINVAL on adding or editing a real server.
    ///
    /// The kernel wants the address to be unicast per this namespace's local
    /// routing table (measured on 6.1: an address off every subnet passes
    /// once the namespace has any address, but a namespace with nothing
    /// configured has no table and refuses every real server).
    #[error(
        "IPVS refused real server {destination} of {service} (EINVAL): the address is not unicast for this network namespace: configure its links first (a namespace with no address at all, not even lo up, refuses every real server), and do not use a broadcast, multicast or network address; otherwise the real server's address family differs from the service's, which only tunnel forwarding allows"
    )]
    DestinationRejected {
        /// The service.
        service: String,
        /// The real server.
        destination: String,
    },

    /// ERANGE on a real server.
    #[error("{op}: weight or thresholds out of range for real server {destination} (weight >= 0, lower threshold <= upper threshold)")]
    OutOfRange {
        /// The request.
        op: String,
        /// The real server.
        destination: String,
    },

    /// EEXIST on starting a sync daemon.
    #[error("an IPVS sync daemon in {role} role is already running (stop it first)")]
    DaemonRunning {
        /// The role asked for.
        role: String,
    },

    /// ESRCH on stopping a sync daemon.
    #[error("no IPVS sync daemon in {role} role is running")]
    DaemonNotRunning {
        /// The role asked for.
        role: String,
    },

    /// ENODEV on starting a sync daemon.
    #[error("sync daemon interface `{ifname}` does not exist in this network namespace")]
    NoSuchInterface {
        /// The interface.
        ifname: String,
    },

    /// Any other kernel refusal.
    #[error("{op}: the kernel refused: {error}")]
    Kernel {
        /// The request.
        op: String,
        /// errno as an io::Error.
        error: io::Error,
    },
}

// By hand, not `#[from]`, which would make the decode error the source too.
impl From<DecodeError> for IpvsError {
    fn from(error: DecodeError) -> Self {
        IpvsError::Decode(error)
    }
}

impl IpvsError {
    /// The errno of a kernel refusal, when the error is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            IpvsError::PermissionDenied { .. } => Some(libc::EPERM),
            IpvsError::ServiceExists { .. }
            | IpvsError::DestinationExists { .. }
            | IpvsError::DaemonRunning { .. } => Some(libc::EEXIST),
            IpvsError::NoSuchService { .. } | IpvsError::DaemonNotRunning { .. } => {
                Some(libc::ESRCH)
            }
            IpvsError::SchedulerMissing { .. } | IpvsError::NoSuchDestination { .. } => {
                Some(libc::ENOENT)
            }
            IpvsError::DestinationRejected { .. } => Some(libc::EINVAL),
            IpvsError::OutOfRange { .. } => Some(libc::ERANGE),
            IpvsError::NoSuchInterface { .. } => Some(libc::ENODEV),
            IpvsError::Kernel { error, .. } => error.raw_os_error(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_prints_the_inner_text_once() {
        let kernel = || io::Error::other("the kernel said no");
        let errors: Vec<anyhow::Error> = vec![
            IpvsError::Socket(kernel()).into(),
            IpvsError::Send(kernel()).into(),
            IpvsError::Receive(kernel()).into(),
            IpvsError::Kernel {
                op: "add service".into(),
                error: kernel(),
            }
            .into(),
        ];
        for e in errors {
            let chain = format!("{e:#}");
            assert_eq!(chain.matches("the kernel said no").count(), 1, "{chain}");
        }
        let refused = IpvsError::Kernel {
            op: "add service".into(),
            error: io::Error::from_raw_os_error(libc::EBUSY),
        };
        assert_eq!(refused.errno(), Some(libc::EBUSY));
    }
}
