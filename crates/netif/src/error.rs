//! Every way a netif operation can fail, naming the interface and address involved.
//! An error that says its inner error's text does not return it as `source()` as
//! well: an `anyhow` chain (`{:#}`) prints each text once.

use std::io;
use std::net::IpAddr;

/// A failed netif operation.
#[derive(Debug, thiserror::Error)]
pub enum NetifError {
    /// `connect` or a watch was called outside a tokio runtime.
    #[error("netif needs a tokio runtime: call it from inside one")]
    NoRuntime,

    /// The netlink socket could not be opened or bound.
    #[error("cannot open rtnetlink socket: {0}")]
    Socket(io::Error),

    /// A watch was started on a thread in another network namespace than `connect`.
    #[error("this thread is in another network namespace than the one netif connected in")]
    NamespaceChanged,

    /// The kernel refused for lack of privilege.
    #[error("{action}: permission denied (needs CAP_NET_ADMIN)")]
    PermissionDenied {
        /// What was attempted, with interface and address.
        action: String,
        /// The kernel's answer.
        #[source]
        source: rtnetlink::Error,
    },

    /// No interface has this name.
    #[error("no interface named {name:?}")]
    NoSuchLink {
        /// The name looked up.
        name: String,
    },

    /// No interface has this index (it may have vanished).
    #[error("no interface with index {index}")]
    NoSuchIndex {
        /// The index looked up.
        index: u32,
    },

    /// Reading one link failed.
    #[error("reading link {link}: {error}")]
    GetLink {
        /// The name or index asked for.
        link: String,
        /// The kernel's answer.
        error: rtnetlink::Error,
    },

    /// Listing links failed.
    #[error("listing links: {0}")]
    ListLinks(rtnetlink::Error),

    /// Listing an interface's addresses failed.
    #[error("listing addresses of {iface}: {error}")]
    ListAddresses {
        /// The interface.
        iface: String,
        /// The kernel's answer.
        error: rtnetlink::Error,
    },

    /// A prefix length beyond the address family's width.
    #[error("{addr}/{prefix_len} on {iface}: prefix length too long")]
    InvalidPrefixLength {
        /// The interface.
        iface: String,
        /// The address.
        addr: IpAddr,
        /// The bad prefix length.
        prefix_len: u8,
    },

    /// Multicast, unspecified or otherwise not an interface address.
    #[error("{addr} on {iface}: not a unicast address")]
    NotUnicast {
        /// The interface.
        iface: String,
        /// The address.
        addr: IpAddr,
    },

    /// Labels exist only for IPv4 addresses.
    #[error("{addr} on {iface}: labels apply to IPv4 addresses only (got {label:?})")]
    LabelOnIpv6 {
        /// The interface.
        iface: String,
        /// The address.
        addr: IpAddr,
        /// The label asked for.
        label: String,
    },

    /// A label longer than IFNAMSIZ - 1 bytes.
    #[error("{addr} on {iface}: label {label:?} is longer than {max} bytes", max = crate::MAX_LABEL)]
    LabelTooLong {
        /// The interface.
        iface: String,
        /// The address.
        addr: IpAddr,
        /// The label asked for.
        label: String,
    },

    /// A label that does not start with the interface name, as iproute2 and
    /// ifconfig-era tools expect.
    #[error("{addr} on {iface}: label {label:?} must start with the interface name")]
    LabelPrefix {
        /// The interface.
        iface: String,
        /// The address.
        addr: IpAddr,
        /// The label asked for.
        label: String,
    },

    /// The address is on the interface already, with another prefix length.
    #[error("{addr}/{prefix_len} on {iface}: already there as {addr}/{existing}")]
    PrefixConflict {
        /// The interface.
        iface: String,
        /// The address.
        addr: IpAddr,
        /// The prefix length asked for.
        prefix_len: u8,
        /// The prefix length on the interface.
        existing: u8,
    },

    /// The kernel refused to add an address.
    #[error("adding {addr}/{prefix_len} to {iface}: {error}")]
    AddAddress {
        /// The interface.
        iface: String,
        /// The address.
        addr: IpAddr,
        /// Its prefix length.
        prefix_len: u8,
        /// The kernel's answer.
        error: rtnetlink::Error,
    },

    /// The kernel refused to remove an address.
    #[error("removing {addr}/{prefix_len} from {iface}: {error}")]
    RemoveAddress {
        /// The interface.
        iface: String,
        /// The address.
        addr: IpAddr,
        /// Its prefix length.
        prefix_len: u8,
        /// The kernel's answer.
        error: rtnetlink::Error,
    },

    /// Setting `promote_secondaries` (so that removing a primary IPv4 address keeps
    /// its secondaries) failed.
    #[error("enabling promote_secondaries on {iface}: {error}")]
    PromoteSecondaries {
        /// The interface.
        iface: String,
        /// The kernel's answer.
        error: rtnetlink::Error,
    },

    /// A set add failed and undoing the part already applied failed too.
    #[error("{cause}; rollback left {} address(es) behind: {}", left.len(), left.join(", "))]
    RollbackIncomplete {
        /// The failure that started the rollback.
        cause: Box<NetifError>,
        /// `addr/len on iface` of each address still present.
        left: Vec<String>,
    },
}

/// The errno a netlink error carries, if it is a kernel NACK.
pub(crate) fn errno(err: &rtnetlink::Error) -> Option<i32> {
    match err {
        rtnetlink::Error::NetlinkError(msg) => msg.to_io().raw_os_error(),
        _ => None,
    }
}

/// `make` unless the kernel said EPERM, which becomes [`NetifError::PermissionDenied`].
pub(crate) fn classify(
    source: rtnetlink::Error,
    action: impl FnOnce() -> String,
    make: impl FnOnce(rtnetlink::Error) -> NetifError,
) -> NetifError {
    if errno(&source) == Some(libc::EPERM) {
        NetifError::PermissionDenied {
            action: action(),
            source,
        }
    } else {
        make(source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_prints_the_inner_text_once() {
        let kernel = || rtnetlink::Error::NamespaceError("the kernel said no".into());
        let add = || NetifError::AddAddress {
            iface: "eth0".into(),
            addr: "198.18.0.100".parse().unwrap(),
            prefix_len: 24,
            error: kernel(),
        };
        let errors: Vec<anyhow::Error> = vec![
            add().into(),
            NetifError::ListLinks(kernel()).into(),
            NetifError::RollbackIncomplete {
                cause: Box::new(add()),
                left: vec!["198.18.0.101/24 on eth0".into()],
            }
            .into(),
        ];
        for e in errors {
            let chain = format!("{e:#}");
            assert_eq!(chain.matches("the kernel said no").count(), 1, "{chain}");
        }
        // A text that does not say the inner error keeps it as the source: once too.
        let denied = NetifError::PermissionDenied {
            action: "adding 198.18.0.100/24 to eth0".into(),
            source: kernel(),
        };
        let chain = format!("{:#}", anyhow::Error::from(denied));
        assert_eq!(chain.matches("the kernel said no").count(), 1, "{chain}");
    }
}
