//! Events read together, sent as one line per connection.

use std::collections::HashMap;

use crate::entry::Tuple;
use crate::netlink::{Event, EventKind};

/// The events of one read from the kernel, a connection's merged into its latest
/// state: a new flow's `new` and the `update` its first reply brings, read together,
/// go to the peer as one line, written there with one kernel operation.
///
/// What the peer makes of the merged line is what it makes of the lines one after
/// the other: the latest status, timeout and tuples; TCP state and mark from the
/// latest event that carries them (update events carry them only when they changed);
/// `new` if the first was. A `destroy` replaces what came before it, and what comes
/// after a `destroy` (the same tuple used again) follows it as a line of its own.
#[derive(Debug, Default)]
pub struct Coalescer {
    order: Vec<Event>,
    latest: HashMap<Tuple, usize, foldhash::fast::RandomState>,
}

impl Coalescer {
    /// Nothing held.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an event, merged into the connection's last one if that is not a destroy.
    pub fn push(&mut self, mut event: Event) {
        let orig = event.entry.orig;
        if let Some(&i) = self.latest.get(&orig) {
            let last = &mut self.order[i];
            if last.kind != EventKind::Destroy {
                if event.kind != EventKind::Destroy {
                    event.entry.tcp = event.entry.tcp.or(last.entry.tcp);
                    event.entry.mark = event.entry.mark.or(last.entry.mark);
                    if last.kind == EventKind::New {
                        event.kind = EventKind::New;
                    }
                }
                *last = event;
                return;
            }
        }
        self.latest.insert(orig, self.order.len());
        self.order.push(event);
    }

    /// Events held (after merging).
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The events in the order their connections first came, and nothing held after.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Event> {
        self.latest.clear();
        self.order.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Entry, Status, TcpInfo, TcpState};

    fn event(kind: EventKind, port: u16, state: Option<TcpState>, timeout: u32) -> Event {
        let orig = Tuple::tcp(
            "198.18.0.10".parse().unwrap(),
            port,
            "198.18.0.100".parse().unwrap(),
            80,
        );
        Event {
            kind,
            entry: Entry {
                orig,
                reply: orig.inverted(),
                status: Status(0),
                timeout: Some(timeout),
                mark: None,
                zone: None,
                tcp: state.map(TcpInfo::in_state),
                id: None,
            },
        }
    }

    fn summary(c: &mut Coalescer) -> Vec<(EventKind, u16, Option<TcpState>, Option<u32>)> {
        c.drain()
            .map(|e| {
                (
                    e.kind,
                    e.entry.orig.src_port().unwrap_or(0),
                    e.entry.tcp.map(|t| t.state),
                    e.entry.timeout,
                )
            })
            .collect()
    }

    #[test]
    fn a_connections_events_read_together_become_its_latest_state() {
        use EventKind::{Destroy, New, Update};
        let mut c = Coalescer::new();
        c.push(event(New, 1000, Some(TcpState::SYN_SENT), 120));
        c.push(event(New, 1001, Some(TcpState::SYN_SENT), 120));
        // No TCP info: the state stays the last one reported.
        c.push(event(Update, 1000, None, 60));
        c.push(event(Update, 1000, Some(TcpState::ESTABLISHED), 300));
        c.push(event(Update, 1002, Some(TcpState::ESTABLISHED), 300));
        c.push(event(Update, 1002, None, 200));
        assert_eq!(c.len(), 3);
        assert_eq!(
            summary(&mut c),
            vec![
                (New, 1000, Some(TcpState::ESTABLISHED), Some(300)),
                (New, 1001, Some(TcpState::SYN_SENT), Some(120)),
                (Update, 1002, Some(TcpState::ESTABLISHED), Some(200)),
            ]
        );
        assert!(c.is_empty());
        // A destroy ends what came before; the tuple used again follows it.
        c.push(event(New, 1000, Some(TcpState::SYN_SENT), 120));
        c.push(event(Destroy, 1000, None, 0));
        c.push(event(New, 1000, Some(TcpState::SYN_SENT), 120));
        c.push(event(Update, 1000, Some(TcpState::SYN_RECV), 60));
        assert_eq!(
            summary(&mut c),
            vec![
                (Destroy, 1000, None, Some(0)),
                (New, 1000, Some(TcpState::SYN_RECV), Some(60)),
            ]
        );
    }
}
