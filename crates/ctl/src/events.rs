//! The event bus a daemon publishes to: sequence numbers, a bounded backlog for
//! subscribers that reconnect, and fan-out that never blocks the publisher.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::wire::{Gap, GapReason};

/// Default number of events kept for subscribers that resume.
pub const DEFAULT_BACKLOG: usize = 1024;

/// An event as published: its line is encoded once, whatever the number of subscribers.
#[derive(Debug)]
pub(crate) struct Published {
    pub(crate) seq: u64,
    pub(crate) topic: String,
    /// The event encoded as one protocol line, without the newline.
    pub(crate) line: String,
}

struct Backlog {
    /// Sequence number the next event gets.
    next_seq: u64,
    events: VecDeque<Arc<Published>>,
}

struct Shared {
    epoch: u64,
    capacity: usize,
    backlog: Mutex<Backlog>,
    live: broadcast::Sender<Arc<Published>>,
}

/// Handle to a daemon's event stream; cheap to clone, all clones share one stream.
#[derive(Clone)]
pub struct EventBus {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("epoch", &self.shared.epoch)
            .field("capacity", &self.shared.capacity)
            .field("latest_seq", &self.latest_seq())
            .finish()
    }
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new(DEFAULT_BACKLOG)
    }
}

/// What a new subscriber starts from: a consistent cut between backlog and live events.
pub(crate) struct Start {
    pub(crate) gap: Option<Gap>,
    /// Events to replay, oldest first.
    pub(crate) replay: Vec<Arc<Published>>,
    /// Live events; those with seq <= the last replayed (or `latest_seq`) are duplicates.
    pub(crate) live: broadcast::Receiver<Arc<Published>>,
    pub(crate) latest_seq: u64,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A stream identity distinct across restarts (time) and across buses of one process (counter).
fn new_epoch() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos.wrapping_add(COUNTER.fetch_add(1, Ordering::Relaxed))
}

impl EventBus {
    /// A bus keeping the last `capacity` events (at least 1) for resuming subscribers.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let (live, _) = broadcast::channel(capacity);
        EventBus {
            shared: Arc::new(Shared {
                epoch: new_epoch(),
                capacity,
                backlog: Mutex::new(Backlog {
                    next_seq: 1,
                    events: VecDeque::with_capacity(capacity),
                }),
                live,
            }),
        }
    }

    /// Publishes an event to every subscriber of `topic`; returns its sequence number.
    /// Never waits on subscribers: a slow one gets a gap marker instead.
    pub fn publish(&self, topic: impl Into<String>, data: Value) -> u64 {
        let topic = topic.into();
        let mut backlog = self.lock();
        let seq = backlog.next_seq;
        backlog.next_seq += 1;
        let line = json!({"seq": seq, "topic": topic, "time": unix_ms(), "data": data}).to_string();
        let event = Arc::new(Published { seq, topic, line });
        if backlog.events.len() == self.shared.capacity {
            backlog.events.pop_front();
        }
        backlog.events.push_back(Arc::clone(&event));
        // Sent under the lock so live order equals seq order; an error only means
        // nobody is subscribed right now.
        let _ = self.shared.live.send(event);
        seq
    }

    /// Sequence number of the newest event (0 if none yet).
    pub fn latest_seq(&self) -> u64 {
        self.lock().next_seq - 1
    }

    /// Identity of this stream; a restarted daemon has a new one.
    pub fn epoch(&self) -> u64 {
        self.shared.epoch
    }

    /// Number of events kept for resuming subscribers.
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    fn lock(&self) -> MutexGuard<'_, Backlog> {
        // A panic while holding this lock leaves the backlog consistent (each step is
        // a single push/pop), so a poisoned lock is safe to keep using.
        self.shared
            .backlog
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts a subscription after `since` (None = from now on). `epoch` is the epoch
    /// `since` was taken from, when the client knows it.
    pub(crate) fn start(&self, since: Option<u64>, epoch: Option<u64>, lagged: bool) -> Start {
        let backlog = self.lock();
        let live = self.shared.live.subscribe();
        let latest_seq = backlog.next_seq - 1;
        let first_kept = backlog.events.front().map_or(backlog.next_seq, |e| e.seq);
        let all = || backlog.events.iter().cloned().collect::<Vec<_>>();
        let (gap, replay) = match since {
            None => (None, Vec::new()),
            Some(_) if epoch.is_some_and(|e| e != self.shared.epoch) => {
                (Some(GapReason::Restarted), all())
            }
            Some(n) if n > latest_seq => (Some(GapReason::Restarted), all()),
            Some(n) if n.saturating_add(1) < first_kept => (
                Some(if lagged {
                    GapReason::Lagged
                } else {
                    GapReason::Expired
                }),
                all(),
            ),
            Some(n) => (
                None,
                backlog
                    .events
                    .iter()
                    .filter(|e| e.seq > n)
                    .cloned()
                    .collect(),
            ),
        };
        Start {
            gap: gap.map(|reason| Gap {
                reason,
                first_seq: first_kept,
            }),
            replay,
            live,
            latest_seq,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(start: &Start) -> Vec<u64> {
        start.replay.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn backlog_is_bounded_and_resume_points_are_classified() {
        let bus = EventBus::new(3);
        for i in 0..5 {
            assert_eq!(bus.publish("t", json!(i)), i + 1);
        }
        assert_eq!(bus.latest_seq(), 5);
        // Kept: 3, 4, 5.
        let s = bus.start(Some(3), Some(bus.epoch()), false);
        assert_eq!((s.gap, seqs(&s)), (None, vec![4, 5]));
        let s = bus.start(Some(2), None, false);
        assert_eq!((s.gap, seqs(&s)), (None, vec![3, 4, 5]));
        let s = bus.start(Some(1), None, false);
        assert_eq!(
            s.gap,
            Some(Gap {
                reason: GapReason::Expired,
                first_seq: 3
            })
        );
        assert_eq!(seqs(&s), vec![3, 4, 5]);
        let s = bus.start(Some(4), Some(bus.epoch() ^ 1), false);
        assert_eq!(s.gap.map(|g| g.reason), Some(GapReason::Restarted));
        let s = bus.start(Some(9), None, false);
        assert_eq!(s.gap.map(|g| g.reason), Some(GapReason::Restarted));
        let s = bus.start(None, None, false);
        assert_eq!((s.gap, seqs(&s), s.latest_seq), (None, vec![], 5));
    }

    #[test]
    fn publish_line_carries_the_event_fields() {
        let bus = EventBus::new(2);
        bus.publish("group.state", json!({"state": "MASTER"}));
        let s = bus.start(Some(0), None, false);
        let v: Value = serde_json::from_str(&s.replay[0].line).unwrap();
        assert_eq!(v["seq"], 1);
        assert_eq!(v["topic"], "group.state");
        assert_eq!(v["data"]["state"], "MASTER");
        assert!(v["time"].as_u64().unwrap() > 0);
    }
}
