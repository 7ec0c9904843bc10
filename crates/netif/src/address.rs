//! Interface addresses: what is on an interface, what to put there, and a stream of
//! address notifications.

use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::channel::mpsc::UnboundedReceiver;
use futures::{Stream, StreamExt};
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::TaskGuard;

/// IFA_F_* flags of an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct IfAddrFlags(pub u32);

impl IfAddrFlags {
    /// IFA_F_SECONDARY: an IPv4 address behind a primary of the same subnet.
    pub const SECONDARY: u32 = 0x01;
    /// IFA_F_NODAD: added without duplicate address detection.
    pub const NODAD: u32 = 0x02;
    /// IFA_F_DADFAILED: duplicate address detection found a conflict.
    pub const DADFAILED: u32 = 0x08;
    /// IFA_F_DEPRECATED: preferred lifetime over.
    pub const DEPRECATED: u32 = 0x20;
    /// IFA_F_TENTATIVE: duplicate address detection still running; not usable yet.
    pub const TENTATIVE: u32 = 0x40;
    /// IFA_F_PERMANENT: configured, not autoconfigured.
    pub const PERMANENT: u32 = 0x80;

    /// Whether every bit of `flag` is set.
    pub fn contains(self, flag: u32) -> bool {
        self.0 & flag == flag
    }

    /// IPv4 secondary address.
    pub fn is_secondary(self) -> bool {
        self.contains(Self::SECONDARY)
    }

    /// Not usable yet: duplicate address detection running.
    pub fn is_tentative(self) -> bool {
        self.contains(Self::TENTATIVE)
    }

    /// Added without duplicate address detection.
    pub fn is_nodad(self) -> bool {
        self.contains(Self::NODAD)
    }
}

/// One address on an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfAddress {
    /// Index of the interface holding it.
    pub ifindex: u32,
    /// The interface's own address (IFA_LOCAL, or IFA_ADDRESS where there is none).
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix_len: u8,
    /// IPv4 label (IFA_LABEL), the interface name when none was given.
    pub label: Option<String>,
    /// IFA_F_* flags.
    pub flags: IfAddrFlags,
}

impl IfAddress {
    /// Reads an address out of an RTM_NEWADDR/RTM_DELADDR message; `None` without one.
    pub(crate) fn from_message(msg: &AddressMessage) -> Option<IfAddress> {
        let mut local = None;
        let mut address = None;
        let mut label = None;
        let mut flags = None;
        for attr in &msg.attributes {
            match attr {
                AddressAttribute::Local(a) => local = Some(*a),
                AddressAttribute::Address(a) => address = Some(*a),
                AddressAttribute::Label(l) => label = Some(l.clone()),
                AddressAttribute::Flags(f) => flags = Some(f.bits()),
                _ => {}
            }
        }
        Some(IfAddress {
            ifindex: msg.header.index,
            // IFA_ADDRESS is the peer on point-to-point links; IFA_LOCAL is ours.
            addr: local.or(address)?,
            prefix_len: msg.header.prefix_len,
            label,
            // IFA_FLAGS holds all 32 bits; the header only the low 8.
            flags: IfAddrFlags(flags.unwrap_or(u32::from(msg.header.flags.bits()))),
        })
    }

    /// Whether this is `addr/prefix_len`.
    pub fn is(&self, addr: IpAddr, prefix_len: u8) -> bool {
        self.addr == addr && self.prefix_len == prefix_len
    }
}

/// An address to add or remove: interface, address, prefix length, optional label.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AddressSpec {
    /// Interface index.
    pub ifindex: u32,
    /// The address.
    pub addr: IpAddr,
    /// Its prefix length.
    pub prefix_len: u8,
    /// IPv4 label; must start with the interface name, at most 15 bytes. Ignored on remove.
    pub label: Option<String>,
}

impl AddressSpec {
    /// An address without label.
    pub fn new(ifindex: u32, addr: IpAddr, prefix_len: u8) -> Self {
        AddressSpec {
            ifindex,
            addr,
            prefix_len,
            label: None,
        }
    }

    /// The same address with an IPv4 label.
    pub fn with_label(mut self, label: &str) -> Self {
        self.label = Some(label.to_owned());
        self
    }
}

/// What an add did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddOutcome {
    /// The address was not there and now is.
    Added,
    /// The address was there already with this prefix length; nothing changed.
    AlreadyPresent,
}

/// What a remove did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoveOutcome {
    /// The address was there and now is not.
    Removed,
    /// The address was not there; nothing changed.
    Absent,
}

/// The RTM_NEWADDR request for `spec`: IPv6 without DAD, IPv4 with broadcast and label.
pub(crate) fn add_message(spec: &AddressSpec) -> AddressMessage {
    let mut msg = base_message(spec.ifindex, spec.addr, spec.prefix_len);
    match spec.addr {
        IpAddr::V4(v4) => {
            if spec.prefix_len < 31 {
                let host_bits = u32::MAX
                    .checked_shr(u32::from(spec.prefix_len))
                    .unwrap_or(0);
                let brd = u32::from(v4) | host_bits;
                msg.attributes.push(AddressAttribute::Broadcast(brd.into()));
            }
            if let Some(label) = &spec.label {
                msg.attributes.push(AddressAttribute::Label(label.clone()));
            }
        }
        IpAddr::V6(_) => {
            // A VIP must answer at once after a failover; DAD would hold it
            // tentative (unusable) for a second or more.
            msg.header.flags = AddressHeaderFlags::Nodad;
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
    }
    msg
}

/// The RTM_DELADDR request matching exactly `addr/prefix_len` on `ifindex`.
pub(crate) fn del_message(ifindex: u32, addr: IpAddr, prefix_len: u8) -> AddressMessage {
    base_message(ifindex, addr, prefix_len)
}

fn base_message(ifindex: u32, addr: IpAddr, prefix_len: u8) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.index = ifindex;
    msg.header.prefix_len = prefix_len;
    match addr {
        IpAddr::V4(_) => {
            msg.header.family = AddressFamily::Inet;
            // IFA_LOCAL is the address; IFA_ADDRESS equal to it means "no peer".
            msg.attributes.push(AddressAttribute::Local(addr));
            msg.attributes.push(AddressAttribute::Address(addr));
        }
        IpAddr::V6(_) => {
            msg.header.family = AddressFamily::Inet6;
            msg.attributes.push(AddressAttribute::Address(addr));
        }
    }
    msg
}

/// Whether `a` and `b` share the first `prefix_len` bits.
pub(crate) fn same_subnet(a: IpAddr, b: IpAddr, prefix_len: u8) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix_len.min(32)))
                .unwrap_or(0);
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix_len.min(128)))
                .unwrap_or(0);
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// Whether an address notification reports an address appearing or going.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressEventKind {
    /// RTM_NEWADDR: added, or its flags changed (e.g. DAD finished).
    New,
    /// RTM_DELADDR: removed.
    Deleted,
}

/// An address notification from the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressEvent {
    /// Added/changed or removed.
    pub kind: AddressEventKind,
    /// The address as the notification describes it.
    pub address: IfAddress,
}

type Unsolicited = UnboundedReceiver<(
    NetlinkMessage<RouteNetlinkMessage>,
    rtnetlink::sys::SocketAddr,
)>;

/// Stream of IPv4 and IPv6 address notifications on every interface. No snapshot:
/// read [`crate::Netif::addresses`] after starting the watch.
///
/// Ends if the kernel drops notifications (socket buffer overrun) or the
/// connection fails.
pub struct AddressWatch {
    messages: Unsolicited,
    _handle: rtnetlink::Handle,
    _task: TaskGuard,
}

impl std::fmt::Debug for AddressWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddressWatch").finish_non_exhaustive()
    }
}

impl AddressWatch {
    pub(crate) fn new(messages: Unsolicited, handle: rtnetlink::Handle, task: TaskGuard) -> Self {
        AddressWatch {
            messages,
            _handle: handle,
            _task: task,
        }
    }
}

impl Stream for AddressWatch {
    type Item = AddressEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<AddressEvent>> {
        loop {
            let msg = match self.messages.poll_next_unpin(cx) {
                Poll::Ready(Some((msg, _))) => msg,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            };
            let (kind, m) = match msg.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(m)) => {
                    (AddressEventKind::New, m)
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelAddress(m)) => {
                    (AddressEventKind::Deleted, m)
                }
                _ => continue,
            };
            if let Some(address) = IfAddress::from_message(&m) {
                return Poll::Ready(Some(AddressEvent { kind, address }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn same_subnet_masks_host_bits() {
        assert!(same_subnet(ip("198.18.5.1"), ip("198.18.5.200"), 24));
        assert!(!same_subnet(ip("198.18.5.1"), ip("198.18.6.1"), 24));
        assert!(same_subnet(ip("198.18.5.1"), ip("198.19.0.0"), 15));
        assert!(same_subnet(ip("198.18.5.1"), ip("1.2.3.4"), 0));
        assert!(!same_subnet(ip("198.18.5.1"), ip("198.18.5.2"), 32));
        assert!(same_subnet(ip("2001:db8::1"), ip("2001:db8::ffff"), 64));
        assert!(!same_subnet(ip("2001:db8::1"), ip("2001:db8:1::1"), 64));
        assert!(!same_subnet(ip("2001:db8::1"), ip("198.18.0.1"), 0));
    }

    #[test]
    fn ipv4_add_carries_label_and_broadcast() {
        let spec = AddressSpec::new(3, ip("198.18.0.100"), 24).with_label("eth0:vip");
        let msg = add_message(&spec);
        assert_eq!(msg.header.family, AddressFamily::Inet);
        assert_eq!(msg.header.index, 3);
        assert!(msg
            .attributes
            .contains(&AddressAttribute::Label("eth0:vip".into())));
        assert!(msg.attributes.contains(&AddressAttribute::Broadcast(
            "198.18.0.255".parse().unwrap()
        )));
        assert!(msg
            .attributes
            .contains(&AddressAttribute::Local(ip("198.18.0.100"))));
    }

    #[test]
    fn ipv4_host_route_has_no_broadcast() {
        let msg = add_message(&AddressSpec::new(3, ip("198.18.0.100"), 32));
        assert!(!msg
            .attributes
            .iter()
            .any(|a| matches!(a, AddressAttribute::Broadcast(_))));
    }

    #[test]
    fn ipv6_add_is_nodad() {
        let msg = add_message(&AddressSpec::new(3, ip("2001:db8::100"), 64));
        assert_eq!(msg.header.family, AddressFamily::Inet6);
        assert!(msg
            .attributes
            .contains(&AddressAttribute::Flags(AddressFlags::Nodad)));
        assert!(!msg
            .attributes
            .iter()
            .any(|a| matches!(a, AddressAttribute::Local(_))));
    }

    #[test]
    fn parsed_address_prefers_local_and_full_flags() {
        let mut msg = del_message(7, ip("198.18.0.1"), 30);
        // A point-to-point peer in IFA_ADDRESS must not be taken for ours.
        msg.attributes = vec![
            AddressAttribute::Address(ip("198.18.0.2")),
            AddressAttribute::Local(ip("198.18.0.1")),
            AddressAttribute::Flags(AddressFlags::from_bits_retain(0x280)),
        ];
        let a = IfAddress::from_message(&msg).unwrap();
        assert_eq!(a.addr, ip("198.18.0.1"));
        assert_eq!(a.prefix_len, 30);
        assert_eq!(a.ifindex, 7);
        assert_eq!(a.flags, IfAddrFlags(0x280));
        assert!(!a.flags.is_tentative());
    }
}
