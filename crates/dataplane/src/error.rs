//! Dataplane errors.

use std::io;
use std::time::Duration;

use crate::model::Scheduler;

/// Why a desired state could not be applied or the kernel could not be read. A variant
/// that wraps an OS error says its text itself and does not return it as `source()`
/// as well: an `anyhow` chain (`{:#}`) prints it once.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// The backend cannot implement this scheduler.
    #[error("service {service}: scheduler {scheduler} is not available with the nft backend (it needs per-server connection counts): the ipvs backend has it; on nft use rr, wrr, random, sh or mh")]
    UnsupportedScheduler {
        /// Service name.
        service: String,
        /// The refused scheduler.
        scheduler: Scheduler,
    },
    /// A backend or SNAT address is not of the VIP's family.
    #[error("{owner}: address {addr} is not of the same family as {vip}")]
    FamilyMismatch {
        /// Service or SNAT rule (with the backend) that is wrong.
        owner: String,
        /// The offending address.
        addr: std::net::IpAddr,
        /// The VIP (or original destination) it must match.
        vip: std::net::IpAddr,
    },
    /// A port-range service names a backend port; ranges keep the client's port.
    #[error("service {service}: backend {backend} has a port, but a port-range service keeps the client's destination port; remove the backend port")]
    BackendPortOnRange {
        /// Service name.
        service: String,
        /// Backend name.
        backend: String,
    },
    /// Two services claim the same protocol, VIP and port.
    #[error("services {first} and {second} both claim {key}; give them different VIPs, ports or protocols")]
    DuplicateService {
        /// First service.
        first: String,
        /// Second service.
        second: String,
        /// What they share.
        key: String,
    },
    /// A port range whose first port is 0 or after its last.
    #[error("{owner}: port range {first}-{last} is empty or starts at 0")]
    BadPortRange {
        /// Service or SNAT rule.
        owner: String,
        /// First port.
        first: u16,
        /// Last port.
        last: u16,
    },
    /// A SNAT pool without addresses.
    #[error("snat rule {rule}: the pool is empty; give it at least one address")]
    EmptyPool {
        /// Rule name.
        rule: String,
    },
    /// An interface name the kernel cannot hold.
    #[error(
        "snat rule {rule}: interface name {iface:?} is empty, longer than 15 bytes or contains NUL"
    )]
    BadInterfaceName {
        /// Rule name.
        rule: String,
        /// The name.
        iface: String,
    },
    /// A table name the kernel cannot hold.
    #[error("table name {0:?} is empty, longer than 255 bytes or contains NUL")]
    BadTableName(String),
    /// A netlink socket operation failed.
    #[error("netlink {op}: {error}")]
    Socket {
        /// What was attempted.
        op: &'static str,
        /// The OS error.
        error: io::Error,
    },
    /// The kernel refused a message of a batch; the whole batch was rolled back.
    #[error("kernel refused {what}: {reason}{extack}; {hint}")]
    Kernel {
        /// The message (table, set, elements, rule) refused.
        what: String,
        /// errno as text.
        reason: String,
        /// The kernel's extended-ack message, if any (with a leading ": ").
        extack: String,
        /// What to check or fix.
        hint: &'static str,
        /// Positive errno.
        errno: i32,
    },
    /// The kernel did not answer in time.
    #[error("no answer from nf_tables within {0:?}")]
    Timeout(Duration),
    /// The kernel answered something this crate cannot read.
    #[error("unreadable netlink answer: {0}")]
    Malformed(String),
    /// A change hint left out something that changed (found when hints are verified).
    #[error("the change hint is wrong: {what}; name every added, removed or changed service in the hint, or call apply")]
    WrongHint {
        /// What changed without being named.
        what: String,
    },
    /// The IPVS backend failed (the error says what to fix).
    #[error(transparent)]
    Ipvs(#[from] Box<crate::ipvs::IpvsBackendError>),
}

impl DataplaneError {
    /// What to check for a kernel errno.
    pub(crate) fn hint_for(errno: i32) -> &'static str {
        match errno {
            libc::EPERM => "run with CAP_NET_ADMIN (root) in the right network namespace",
            libc::ENOENT => "an object the change refers to is missing: the table was changed behind lbd's back; the next apply re-reads it",
            libc::EEXIST => "an object already exists: the table was changed behind lbd's back; the next apply re-reads it",
            libc::EBUSY => "an object is still in use (a set referenced by a rule)",
            libc::EOPNOTSUPP => "the kernel lacks a needed nf_tables feature (nft_nat, nft_numgen, nft_hash, nft_ct, concatenated intervals): load the modules or use a newer kernel",
            libc::EAFNOSUPPORT => "the kernel lacks nf_nat for this address family: load nf_nat / nft_chain_nat",
            libc::EINVAL => "the kernel rejected an expression or attribute: the kernel may be too old for this layout",
            libc::ENOMEM => "out of kernel memory: the change is too large",
            libc::EMSGSIZE | libc::ENOBUFS => "the batch is too large for the socket buffer",
            libc::ENFILE | libc::E2BIG => "a set is full or a limit was reached",
            _ => "see the kernel log (dmesg) and nft list table",
        }
    }
}
