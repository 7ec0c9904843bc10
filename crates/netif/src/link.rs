//! Links (network interfaces): their state, and a stream of changes to it.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::channel::mpsc::UnboundedReceiver;
use futures::{Stream, StreamExt};
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage, State};
use rtnetlink::packet_route::RouteNetlinkMessage;

use crate::TaskGuard;

/// An Ethernet hardware address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// RFC 2863 operational state, as the kernel reports it (IFLA_OPERSTATE).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OperState {
    /// The driver does not report a state (loopback, some virtual links).
    Unknown,
    /// A component is missing.
    NotPresent,
    /// Down.
    Down,
    /// Down because a lower layer is down.
    LowerLayerDown,
    /// In a test mode.
    Testing,
    /// Waiting for an external event.
    Dormant,
    /// Up, can pass packets.
    Up,
    /// A value this crate does not know.
    Other(u8),
}

impl From<State> for OperState {
    fn from(s: State) -> Self {
        match s {
            State::Unknown => OperState::Unknown,
            State::NotPresent => OperState::NotPresent,
            State::Down => OperState::Down,
            State::LowerLayerDown => OperState::LowerLayerDown,
            State::Testing => OperState::Testing,
            State::Dormant => OperState::Dormant,
            State::Up => OperState::Up,
            State::Other(v) => OperState::Other(v),
            _ => OperState::Unknown,
        }
    }
}

/// One network interface as the kernel sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Hardware address, when the link has a 6-byte one.
    pub mac: Option<MacAddr>,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// Carrier present (IFF_LOWER_UP; the kernel clears it while the link is down).
    pub carrier: bool,
    /// Operational state (IFLA_OPERSTATE).
    pub oper_state: OperState,
    /// MTU in bytes.
    pub mtu: u32,
}

impl Link {
    /// Reads a link out of an RTM_NEWLINK message; `None` if it carries no name.
    pub(crate) fn from_message(msg: &LinkMessage) -> Option<Link> {
        let mut name = None;
        let mut mac = None;
        let mut oper_state = OperState::Unknown;
        let mut mtu = 0;
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => name = Some(n.clone()),
                LinkAttribute::Address(a) => mac = <[u8; 6]>::try_from(a.as_slice()).ok(),
                LinkAttribute::OperState(s) => oper_state = (*s).into(),
                LinkAttribute::Mtu(m) => mtu = *m,
                _ => {}
            }
        }
        let flags = msg.header.flags;
        Some(Link {
            index: msg.header.index,
            name: name?,
            mac: mac.map(MacAddr),
            up: flags.contains(LinkFlags::Up),
            carrier: flags.contains(LinkFlags::LowerUp),
            oper_state,
            mtu,
        })
    }
}

/// Why a [`LinkEvent`] was produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkEventKind {
    /// Part of the snapshot taken when the watch started.
    Snapshot,
    /// The link's name, admin state or carrier changed (or it appeared).
    Changed,
    /// The link was deleted.
    Removed,
}

/// A link's state at a point in time, from the snapshot or a change notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkEvent {
    /// Why this event was produced.
    pub kind: LinkEventKind,
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Administratively up (IFF_UP); false once removed.
    pub up: bool,
    /// Carrier present (IFF_LOWER_UP); false once removed.
    pub carrier: bool,
}

impl LinkEvent {
    fn new(kind: LinkEventKind, link: &Link) -> Self {
        LinkEvent {
            kind,
            index: link.index,
            name: link.name.clone(),
            up: link.up,
            carrier: link.carrier,
        }
    }

    fn same_state(&self, other: &LinkEvent) -> bool {
        self.name == other.name && self.up == other.up && self.carrier == other.carrier
    }
}

type Unsolicited = UnboundedReceiver<(
    NetlinkMessage<RouteNetlinkMessage>,
    rtnetlink::sys::SocketAddr,
)>;

/// Stream of link state: first the snapshot taken at start, then every change of
/// name, admin state or carrier. RTM_NEWLINK notifications that change none of
/// these (statistics, MTU, ...) are not reported.
///
/// Ends if the kernel drops notifications (socket buffer overrun) or the
/// connection fails: start a new watch then, whose snapshot restores the truth.
pub struct LinkWatch {
    pending: VecDeque<LinkEvent>,
    last: HashMap<u32, LinkEvent>,
    messages: Unsolicited,
    // Keeps the connection's request side open so it does not shut down.
    _handle: rtnetlink::Handle,
    _task: TaskGuard,
}

impl fmt::Debug for LinkWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkWatch")
            .field("pending", &self.pending.len())
            .field("links", &self.last.len())
            .finish()
    }
}

impl LinkWatch {
    pub(crate) fn new(
        snapshot: Vec<Link>,
        messages: Unsolicited,
        handle: rtnetlink::Handle,
        task: TaskGuard,
    ) -> Self {
        let pending: VecDeque<LinkEvent> = snapshot
            .iter()
            .map(|l| LinkEvent::new(LinkEventKind::Snapshot, l))
            .collect();
        let last = pending.iter().map(|e| (e.index, e.clone())).collect();
        LinkWatch {
            pending,
            last,
            messages,
            _handle: handle,
            _task: task,
        }
    }

    /// Turns a notification into an event if it changes what callers track.
    fn event_from(&mut self, msg: NetlinkMessage<RouteNetlinkMessage>) -> Option<LinkEvent> {
        match msg.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(m)) => {
                let link = Link::from_message(&m)?;
                let event = LinkEvent::new(LinkEventKind::Changed, &link);
                if self
                    .last
                    .get(&link.index)
                    .is_some_and(|l| l.same_state(&event))
                {
                    return None;
                }
                self.last.insert(link.index, event.clone());
                Some(event)
            }
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(m)) => {
                let index = m.header.index;
                let known = self.last.remove(&index);
                let name = Link::from_message(&m)
                    .map(|l| l.name)
                    .or(known.map(|k| k.name))
                    .unwrap_or_default();
                Some(LinkEvent {
                    kind: LinkEventKind::Removed,
                    index,
                    name,
                    up: false,
                    carrier: false,
                })
            }
            _ => None,
        }
    }
}

impl Stream for LinkWatch {
    type Item = LinkEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<LinkEvent>> {
        if let Some(e) = self.pending.pop_front() {
            return Poll::Ready(Some(e));
        }
        loop {
            match self.messages.poll_next_unpin(cx) {
                Poll::Ready(Some((msg, _))) => {
                    if let Some(e) = self.event_from(msg) {
                        return Poll::Ready(Some(e));
                    }
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
