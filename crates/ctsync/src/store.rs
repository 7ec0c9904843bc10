//! The backup's copy of the active node's connections, and its way into the kernel.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::entry::{Entry, Tuple};
use crate::filter::FlowFilter;
use crate::netlink::{Conntrack, Error, Event, EventKind, ReplaceReport};

/// The store's maps, hashed with foldhash: the default SipHash took about 4 % of the
/// receiver's time at 20,000 new flows a second. Its seed is still random per process.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type Set<K> = HashSet<K, foldhash::fast::RandomState>;

/// Entries received from the active node, keyed by original tuple.
///
/// A full resynchronisation (a new stream, or events lost) does not empty the store
/// first: the entries held stay until the new dump has ended ([`SyncStore::end_resync`]),
/// and only then are those the dump did not bring again dropped. A takeover in the
/// middle of a resync so commits everything known, not half a dump.
///
/// While the store *tracks the kernel* ([`SyncStore::set_tracking`], a node that is
/// not MASTER), it remembers which entries are not yet in this node's kernel and which
/// the kernel may hold although the peer no longer has them; [`SyncStore::flush`]
/// writes just that difference. A backup flushes as entries arrive, so a takeover
/// finds the state already in its kernel and commits only the tail.
#[derive(Debug, Default)]
pub struct SyncStore {
    entries: Map<Tuple, Kept>,
    /// During a resync: the entries the new dump (and events since) brought.
    refreshed: Option<Set<Tuple>>,
    /// Whether `unapplied` and `removed` are kept.
    tracking: bool,
    /// Entries received (new or changed) that are not yet in this node's kernel.
    unapplied: Set<Tuple>,
    /// Entries the peer no longer has that this node's kernel may still hold.
    removed: Set<Tuple>,
    /// While someone reads the kernel without holding the store: what the store's
    /// writes did to the kernel meanwhile ([`SyncStore::start_journal`]).
    journal: Option<Journal>,
    /// The kernel writes of this stretch of tracking: [`Kept::written`] counts only
    /// when equal. Bumped whenever this node's kernel may have carried traffic of the
    /// connections since (tracking stops or starts), which makes every entry's next
    /// write a replacement.
    epoch: u32,
    /// From when this stretch's writes are trusted to stay as written: a node that has
    /// just left MASTER still forwards a moment, and a packet of a connection after
    /// its write would leave a window in it that an in-place change keeps.
    trusted_from: Option<Instant>,
    /// From leaving MASTER until the peer's dump has ended: entries that arrive are
    /// presumed carried by this node meanwhile (see [`CARRIED`]).
    presume_carried: bool,
}

/// [`Kept::written`] of an entry held when this node left MASTER: its kernel most
/// likely holds the node's own version of the connection, which the next write
/// deletes before it creates the peer's (two kernel messages, not three).
const CARRIED: u32 = u32::MAX;

/// How long after this node leaves MASTER its kernel may still see traffic of the
/// VIPs (until every client and server has the peer's gratuitous ARP): writes made
/// meanwhile are not taken as the kernel's last word on a connection.
const STRAGGLERS: Duration = Duration::from_secs(5);

/// One entry held: the peer's latest version, when it arrived (its timeout counts
/// from then), and the write epoch ([`SyncStore::epoch`]) in which this node's kernel
/// got this connection from the store.
///
/// An entry the kernel holds as this node wrote it has seen no packet since (the node
/// is not MASTER), so its TCP window is still unset, picked up by the first segment
/// after a takeover: a change of it goes in place, one message instead of a
/// replacement's three. Any other (traffic made it, or it has another NAT mapping) is
/// replaced, which drops a stale window.
#[derive(Debug)]
struct Kept {
    entry: Entry,
    at: Instant,
    written: u32,
}

/// The kernel writes of a [`SyncStore`] during a dump of the kernel taken beside
/// them, by original tuple, the last one kept: the entry written, or None for a
/// delete. A replacement deletes an entry before it creates it anew, so a dump taken
/// meanwhile may miss the connection; [`Journal::patch`] puts it back.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Journal(HashMap<Tuple, Option<Entry>>);

impl Journal {
    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Makes a dump taken beside the writes hold what the kernel holds after them:
    /// entries written and missing from it are added (if `filter` selects them),
    /// entries deleted are dropped. An entry the dump has is kept as the kernel
    /// reported it.
    pub fn patch(mut self, dump: &mut Vec<Entry>, filter: &FlowFilter) {
        if self.0.is_empty() {
            return;
        }
        dump.retain(|e| match self.0.remove(&e.orig) {
            // Deleted: gone, whatever the dump saw before.
            Some(None) => false,
            Some(Some(_)) | None => true,
        });
        dump.extend(self.0.into_values().flatten().filter(|e| filter.matches(e)));
    }
}

/// What a [`SyncStore::commit`] or [`SyncStore::flush`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitReport {
    /// Entries created or replaced, and the kernel's refusals.
    pub batch: ReplaceReport,
    /// Entries deleted from the kernel because the peer no longer has them.
    pub removed: usize,
    /// Entries dropped because their timeout ran out while stored.
    pub expired: usize,
    /// Time spent writing into the kernel.
    pub elapsed: Duration,
}

impl CommitReport {
    /// Whether the kernel was not touched.
    pub fn is_empty(&self) -> bool {
        self.batch == ReplaceReport::default() && self.removed == 0 && self.expired == 0
    }
}

impl SyncStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one event: new/update replace the entry, destroy removes it.
    pub fn apply(&mut self, event: Event) {
        self.apply_at(event, Instant::now());
    }

    fn apply_at(&mut self, event: Event, now: Instant) {
        match event.kind {
            EventKind::New | EventKind::Update => {
                let mut entry = event.entry;
                let mut unchanged = false;
                let mut written = if self.presume_carried { CARRIED } else { 0 };
                // Update events carry TCP info and mark only when those changed.
                if let Some(old) = self.entries.get(&entry.orig) {
                    entry.tcp = entry.tcp.or(old.entry.tcp);
                    entry.mark = entry.mark.or(old.entry.mark);
                    unchanged = old.entry.same_state(&entry);
                    // Another NAT mapping is another connection (the peer's entry was
                    // made anew): the kernel's copy is not it, whoever wrote it.
                    if old.written == CARRIED
                        || (old.entry.reply == entry.reply && old.entry.zone == entry.zone)
                    {
                        written = old.written;
                    }
                }
                if let Some(refreshed) = &mut self.refreshed {
                    refreshed.insert(entry.orig);
                }
                // Events: what the kernel already holds as it is is not written twice.
                // A dump is written whole: it comes when the peer's stream (re)starts,
                // at the latest when the peer has become MASTER, and replaces what this
                // node's kernel made of the connections meanwhile (a node that has left
                // MASTER forwards a moment longer, until the peer's gratuitous ARP:
                // its entries then learn windows, or are re-created by the traffic,
                // that a later takeover back would carry).
                if self.tracking && (!unchanged || self.refreshed.is_some()) {
                    self.removed.remove(&entry.orig);
                    self.unapplied.insert(entry.orig);
                } else if self.tracking && unchanged {
                    // Not written again: the kernel's copy, and the moment its
                    // timeout counts from (see `refresh_due`), stay as they were.
                    return;
                }
                self.entries.insert(
                    entry.orig,
                    Kept {
                        entry,
                        at: now,
                        written,
                    },
                );
            }
            EventKind::Destroy => {
                let orig = event.entry.orig;
                self.entries.remove(&orig);
                if self.tracking {
                    self.unapplied.remove(&orig);
                    self.removed.insert(orig);
                }
            }
        }
    }

    /// A full dump follows: what it brings replaces what is held, once it has ended.
    pub fn begin_resync(&mut self) {
        self.refreshed = Some(Set::default());
    }

    /// Whether a dump is under way.
    pub fn resyncing(&self) -> bool {
        self.refreshed.is_some()
    }

    /// The dump has ended: drops the entries it did not bring (connections the
    /// active node no longer has); returns how many.
    pub fn end_resync(&mut self) -> usize {
        let Some(refreshed) = self.refreshed.take() else {
            return 0;
        };
        self.presume_carried = false;
        let before = self.entries.len();
        let tracking = self.tracking;
        let (unapplied, removed) = (&mut self.unapplied, &mut self.removed);
        self.entries.retain(|orig, _| {
            let keep = refreshed.contains(orig);
            if !keep && tracking {
                unapplied.remove(orig);
                removed.insert(*orig);
            }
            keep
        });
        before - self.entries.len()
    }

    /// Starts (every entry held counts as not yet in the kernel) or stops keeping
    /// track of what this node's kernel lacks.
    pub fn set_tracking(&mut self, on: bool) {
        self.tracking = on;
        self.presume_carried = false;
        self.new_epoch(Instant::now());
        self.removed.clear();
        self.unapplied.clear();
        if on {
            self.unapplied.extend(self.entries.keys().copied());
        }
    }

    /// Entries whose copy in this node's kernel has spent half its timeout come due
    /// for the next [`SyncStore::flush`] (tracking only); returns how many.
    ///
    /// The peer's kernel refreshes a connection's timeout with every packet and
    /// sends no event for it: a UDP flow sends its last event when it is assured
    /// (timeout 120 s), a TCP connection when it is established (5 days). Without
    /// this the copy here would run out while the peer still carries the flow, and
    /// a takeover would meet its packets with a new mapping (another server, another
    /// SNAT port). The peer's destroy event, or the end of a resync that no longer
    /// brings the entry, is what ends a held entry, as in conntrackd's cache.
    pub fn refresh_due(&mut self, now: Instant) -> usize {
        if !self.tracking {
            return 0;
        }
        let mut due = 0;
        for (orig, Kept { entry, at, .. }) in &mut self.entries {
            let Some(timeout) = entry.timeout else {
                continue;
            };
            let half = Duration::from_secs(u64::from(timeout)) / 2;
            if now.saturating_duration_since(*at) >= half {
                *at = now;
                self.unapplied.insert(*orig);
                due += 1;
            }
        }
        due
    }

    /// Starts keeping track of what this node's kernel lacks, taking it as holding
    /// what the store holds: nothing is pending. For a node that leaves MASTER: it
    /// committed the store at its takeover and has carried the connections since, so
    /// its kernel holds a newer version of each than the store (what the store holds
    /// beyond that closed meanwhile); the peer's full dump, asked for at the same
    /// time, replaces them all. Writing the store first would only put older
    /// versions in, and cost as much as the dump's writes.
    pub fn track_from_kernel(&mut self) {
        self.tracking = true;
        self.presume_carried = true;
        let now = Instant::now();
        self.new_epoch(now + STRAGGLERS);
        self.removed.clear();
        self.unapplied.clear();
        // The kernel's copies are as fresh as its own traffic made them: their
        // timeouts count from now for `refresh_due`, which would otherwise write
        // the store's older versions over them (a stale TCP window) while this node
        // still forwards, before the peer's dump arrives.
        for kept in self.entries.values_mut() {
            kept.at = now;
            kept.written = CARRIED;
        }
    }

    /// Starts a new write epoch (see [`SyncStore::epoch`]) whose writes count from
    /// `trusted_from`.
    fn new_epoch(&mut self, trusted_from: Instant) {
        // 0 stays "never written" and CARRIED is no epoch; wrapping past u32::MAX
        // epochs is not a concern.
        self.epoch = (self.epoch % (CARRIED - 1)) + 1;
        self.trusted_from = Some(trusted_from);
    }

    /// Whether this node's kernel holds `orig` as this store wrote it, untouched since.
    fn kernel_has_ours(&self, orig: &Tuple) -> bool {
        self.entries
            .get(orig)
            .is_some_and(|k| k.written != 0 && k.written == self.epoch)
    }

    /// Marks `written` as this epoch's writes (the kernel's refusals as not written),
    /// if the epoch's writes are trusted at `now`.
    fn mark_written(&mut self, written: &[Entry], refused: &[(Tuple, i32)], now: Instant) {
        if !self.tracking || self.trusted_from.is_none_or(|t| now < t) {
            return;
        }
        let refused: HashSet<&Tuple> = refused.iter().map(|(t, _)| t).collect();
        for e in written {
            if let Some(k) = self.entries.get_mut(&e.orig) {
                k.written = if refused.contains(&e.orig) {
                    0
                } else {
                    self.epoch
                };
            }
        }
    }

    /// Starts recording what this store writes into the kernel, for a dump of the
    /// kernel taken without holding the store (see [`Journal`]).
    pub fn start_journal(&mut self) {
        self.journal = Some(Journal::default());
    }

    /// Stops recording; what was written since [`SyncStore::start_journal`].
    pub fn take_journal(&mut self) -> Journal {
        self.journal.take().unwrap_or_default()
    }

    fn record(&mut self, written: &[Entry], deleted: &[Tuple]) {
        if let Some(Journal(j)) = &mut self.journal {
            j.extend(written.iter().map(|e| (e.orig, Some(e.clone()))));
            j.extend(deleted.iter().map(|t| (*t, None)));
        }
    }

    /// Whether the store keeps track of what the kernel lacks.
    pub fn tracking(&self) -> bool {
        self.tracking
    }

    /// Entries (and removals) not yet written into the kernel.
    pub fn pending(&self) -> usize {
        self.unapplied.len() + self.removed.len()
    }

    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry with this original tuple.
    pub fn get(&self, orig: &Tuple) -> Option<&Entry> {
        self.entries.get(orig).map(|k| &k.entry)
    }

    /// The entry as it goes into the kernel at `now`: its timeout reduced by the time
    /// spent stored; None if that ran out.
    fn live(entry: &Entry, at: Instant, now: Instant) -> Option<Entry> {
        let age = now.saturating_duration_since(at).as_secs();
        let mut e = entry.clone();
        match e.timeout {
            Some(t) if u64::from(t) <= age => return None,
            Some(t) => e.timeout = Some(t - age as u32),
            None => {}
        }
        e.id = None;
        Some(e)
    }

    /// Entries still alive at `now`, their timeout reduced by the time spent stored;
    /// also the number that expired.
    fn live_at<'a>(
        &self,
        origs: impl Iterator<Item = &'a Tuple>,
        now: Instant,
    ) -> (Vec<Entry>, usize) {
        let mut live = Vec::new();
        let mut expired = 0;
        for k in origs.filter_map(|o| self.entries.get(o)) {
            match Self::live(&k.entry, k.at, now) {
                Some(e) => live.push(e),
                None => expired += 1,
            }
        }
        (live, expired)
    }

    /// Writes every live entry into the kernel, replacing what it holds for the same
    /// connections (at a takeover when the store did not track the kernel).
    pub fn commit(&mut self, conntrack: &mut Conntrack) -> Result<CommitReport, Error> {
        let start = Instant::now();
        let (live, expired) = self.live_at(self.entries.keys(), start);
        let batch = conntrack.replace_batch(&live);
        self.record(&live, &[]);
        let batch = batch?;
        self.unapplied.clear();
        self.keep_recreated(&batch);
        Ok(CommitReport {
            batch,
            removed: 0,
            expired,
            elapsed: start.elapsed(),
        })
    }

    /// Entries that traffic re-created between their delete and their create stay
    /// unwritten, for the next flush: the kernel holds the node's own version of the
    /// connection (its stale TCP window, maybe another SNAT port), which a takeover
    /// would carry. The next flush comes with the peer's next lines, when the node
    /// no longer forwards; at the latest the takeover's prepare writes them, before
    /// the VIPs come.
    fn keep_recreated(&mut self, batch: &ReplaceReport) {
        if !self.tracking {
            return;
        }
        let entries = &self.entries;
        self.unapplied.extend(
            batch
                .failed
                .iter()
                .filter(|(orig, errno)| *errno == libc::EEXIST && entries.contains_key(orig))
                .map(|(orig, _)| *orig),
        );
    }

    /// Deletes from the kernel the entries of `kernel` (a dump of it) that the store
    /// does not hold: connections this node carried that the peer no longer has.
    pub fn purge_unknown(
        &mut self,
        conntrack: &mut Conntrack,
        kernel: Vec<Entry>,
    ) -> Result<ReplaceReport, Error> {
        let stale: Vec<Tuple> = kernel
            .into_iter()
            .map(|e| e.orig)
            .filter(|o| !self.entries.contains_key(o))
            .collect();
        let deleted = conntrack.delete_batch(&stale);
        self.record(&[], &stale);
        deleted
    }

    /// Writes what the kernel lacks (tracking only): entries the kernel holds as this
    /// store wrote them change in place, the others replace what it holds for their
    /// connections, and entries the peer no longer has are deleted.
    pub fn flush(&mut self, conntrack: &mut Conntrack) -> Result<CommitReport, Error> {
        let start = Instant::now();
        let (live, expired) = self.live_at(self.unapplied.iter(), start);
        let removed: Vec<Tuple> = self.removed.iter().copied().collect();
        let (in_place, rest): (Vec<Entry>, Vec<Entry>) = live
            .into_iter()
            .partition(|e| self.kernel_has_ours(&e.orig));
        let (carried, mut replace): (Vec<Entry>, Vec<Entry>) = rest.into_iter().partition(|e| {
            self.entries
                .get(&e.orig)
                .is_some_and(|k| k.written == CARRIED)
        });
        let updates = conntrack.update_batch(&in_place);
        self.record(&in_place, &[]);
        let (updated, not_updated) = updates?;
        replace.extend(not_updated);
        let renewed = conntrack.renew_batch(&carried);
        self.record(&carried, &[]);
        let mut batch = renewed?;
        let replaced = conntrack.replace_batch(&replace);
        self.record(&replace, &[]);
        batch.add(replaced?);
        batch.updated = updated;
        let deleted = conntrack.delete_batch(&removed);
        self.record(&[], &removed);
        let deleted = deleted?;
        // Those not changed in place were replaced: the replacement's outcome counts.
        self.mark_written(&in_place, &[], start);
        self.mark_written(&carried, &batch.failed, start);
        self.mark_written(&replace, &batch.failed, start);
        batch.failed.extend(deleted.failed);
        self.unapplied.clear();
        self.removed.clear();
        self.keep_recreated(&batch);
        Ok(CommitReport {
            batch,
            removed: deleted.replaced,
            expired,
            elapsed: start.elapsed(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Status;

    fn entry(port: u16, timeout: u32) -> Entry {
        let orig = Tuple::tcp(
            "198.18.0.10".parse().unwrap(),
            port,
            "198.18.0.100".parse().unwrap(),
            80,
        );
        Entry {
            orig,
            reply: orig.inverted(),
            status: Status(Status::ASSURED),
            timeout: Some(timeout),
            mark: None,
            zone: None,
            tcp: None,
            id: Some(7),
        }
    }

    #[test]
    fn a_dump_is_written_whole_and_events_only_when_they_change_something() {
        let mut s = SyncStore::new();
        s.set_tracking(true);
        let new = |e: Entry| Event {
            kind: EventKind::New,
            entry: e,
        };
        s.apply(new(entry(1000, 60)));
        assert_eq!(s.pending(), 1);
        // As if flushed into the kernel.
        s.unapplied.clear();
        s.apply(new(entry(1000, 60)));
        assert_eq!(s.pending(), 0, "an unchanged event is not written again");
        s.begin_resync();
        s.apply(new(entry(1000, 60)));
        assert_eq!(s.pending(), 1, "a dump replaces what the kernel made of it");
        assert_eq!(s.end_resync(), 0);
    }

    #[test]
    fn new_update_destroy() {
        let mut s = SyncStore::new();
        let t0 = Instant::now();
        s.apply_at(
            Event {
                kind: EventKind::New,
                entry: entry(1000, 100),
            },
            t0,
        );
        s.apply_at(
            Event {
                kind: EventKind::New,
                entry: entry(1001, 100),
            },
            t0,
        );
        let mut first = entry(1001, 100);
        first.tcp = Some(crate::entry::TcpInfo::in_state(
            crate::entry::TcpState::ESTABLISHED,
        ));
        s.apply_at(
            Event {
                kind: EventKind::Update,
                entry: first,
            },
            t0,
        );
        s.apply_at(
            Event {
                kind: EventKind::Update,
                entry: entry(1001, 200),
            },
            t0,
        );
        let kept = s.get(&entry(1001, 0).orig).unwrap();
        assert_eq!(kept.timeout, Some(200));
        assert!(
            kept.tcp.is_some(),
            "an update without protoinfo keeps the known TCP state"
        );
        s.apply_at(
            Event {
                kind: EventKind::Update,
                entry: entry(1000, 300),
            },
            t0,
        );
        assert_eq!(s.len(), 2);
        assert_eq!(s.get(&entry(1000, 0).orig).unwrap().timeout, Some(300));
        s.apply_at(
            Event {
                kind: EventKind::Destroy,
                entry: entry(1001, 0),
            },
            t0,
        );
        assert_eq!(s.len(), 1);
        assert!(s.get(&entry(1001, 0).orig).is_none());
    }

    #[test]
    fn tracking_the_kernel_writes_only_what_changed() {
        let mut s = SyncStore::new();
        let t0 = Instant::now();
        let ev = |kind, port, timeout| Event {
            kind,
            entry: entry(port, timeout),
        };
        s.apply_at(ev(EventKind::New, 1000, 100), t0);
        assert_eq!(s.pending(), 0, "not tracking: nothing pending");
        s.set_tracking(true);
        assert_eq!(s.pending(), 1, "tracking starts with everything held");
        s.unapplied.clear();
        // The same entry again (a dump), with another timeout: already in the kernel.
        s.apply_at(ev(EventKind::New, 1000, 90), t0);
        assert_eq!(s.pending(), 0);
        let mut changed = entry(1000, 90);
        changed.status = Status(Status::ASSURED | Status::SEEN_REPLY);
        s.apply_at(
            Event {
                kind: EventKind::Update,
                entry: changed,
            },
            t0,
        );
        s.apply_at(ev(EventKind::New, 1001, 100), t0);
        assert_eq!(s.unapplied.len(), 2);
        s.apply_at(ev(EventKind::Destroy, 1001, 0), t0);
        assert_eq!((s.unapplied.len(), s.removed.len()), (1, 1));
        s.begin_resync();
        s.apply_at(ev(EventKind::New, 1002, 100), t0);
        assert_eq!(s.end_resync(), 1, "1000 was not in the dump");
        assert_eq!((s.unapplied.len(), s.removed.len()), (1, 2));
        s.set_tracking(false);
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn entries_come_due_again_when_half_their_timeout_is_spent() {
        let mut s = SyncStore::new();
        let t0 = Instant::now();
        let new = |port, timeout| Event {
            kind: EventKind::New,
            entry: entry(port, timeout),
        };
        s.apply_at(new(1000, 120), t0);
        s.apply_at(new(1001, 30), t0);
        assert_eq!(
            s.refresh_due(t0 + Duration::from_secs(60)),
            0,
            "not tracking"
        );
        s.set_tracking(true);
        s.unapplied.clear();
        assert_eq!(s.refresh_due(t0 + Duration::from_secs(14)), 0);
        assert_eq!(s.refresh_due(t0 + Duration::from_secs(15)), 1);
        assert!(s.unapplied.contains(&entry(1001, 0).orig));
        s.unapplied.clear();
        // An unchanged event is not written: its timeout keeps counting from the
        // last write, so it still comes due on time.
        s.apply_at(new(1000, 120), t0 + Duration::from_secs(50));
        assert_eq!(s.pending(), 0);
        let due = s.refresh_due(t0 + Duration::from_secs(30));
        assert_eq!(due, 1, "1001, refreshed at 15 s; 1000 is at 30 s of 120");
        s.unapplied.clear();
        let due = s.refresh_due(t0 + Duration::from_secs(60));
        assert_eq!(due, 2, "1000 at 60 s of 120, 1001 again");
        // Long past the peer's timeout the entry is still held and written alive.
        s.unapplied.clear();
        let later = t0 + Duration::from_secs(600);
        assert_eq!(s.refresh_due(later), 2);
        let (live, expired) = s.live_at(s.unapplied.iter(), later);
        assert_eq!((live.len(), expired), (2, 0));
        assert!(live
            .iter()
            .all(|e| e.timeout == Some(120) || e.timeout == Some(30)));
    }

    #[test]
    fn a_resync_keeps_what_is_held_until_the_dump_ends() {
        let mut s = SyncStore::new();
        let t0 = Instant::now();
        let new = |port| Event {
            kind: EventKind::New,
            entry: entry(port, 100),
        };
        for port in [1000, 1001, 1002] {
            s.apply_at(new(port), t0);
        }
        s.begin_resync();
        s.apply_at(new(1000), t0);
        s.apply_at(new(1003), t0);
        // Mid-dump: everything known is still there for a takeover.
        assert_eq!(s.len(), 4);
        assert_eq!(s.end_resync(), 2, "1001 and 1002 were not in the dump");
        let mut left: Vec<u16> = s.entries.keys().filter_map(|t| t.src_port()).collect();
        left.sort_unstable();
        assert_eq!(left, vec![1000, 1003]);
        // Without a resync under way, the end of a dump changes nothing.
        assert_eq!(s.end_resync(), 0);
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn a_journal_puts_back_what_a_dump_beside_the_writes_missed() {
        let mut s = SyncStore::new();
        let filter = FlowFilter::default();
        let (a, b, c) = (entry(1000, 60), entry(1001, 60), entry(1002, 60));
        // Not journaling: nothing recorded.
        s.record(std::slice::from_ref(&a), &[]);
        assert!(s.take_journal().is_empty());
        s.start_journal();
        // b replaced (the dump ran between its delete and its create), c deleted.
        s.record(std::slice::from_ref(&a), &[]);
        s.record(std::slice::from_ref(&b), &[c.orig]);
        let mut kernel_b = b.clone();
        kernel_b.timeout = Some(59);
        let journal = s.take_journal();
        assert!(s.take_journal().is_empty(), "taking it ends the journal");
        let mut dump = vec![a.clone(), c.clone()];
        journal.clone().patch(&mut dump, &filter);
        let ports: Vec<_> = dump.iter().filter_map(|e| e.orig.src_port()).collect();
        assert_eq!(ports, vec![1000, 1001], "c deleted, b put back: {dump:?}");
        // What the dump saw of a written entry is kept as the kernel reported it.
        let mut dump = vec![kernel_b.clone()];
        journal.clone().patch(&mut dump, &filter);
        assert!(dump.contains(&kernel_b) && !dump.contains(&b));
        // Written entries the filter does not select stay out.
        let other = FlowFilter {
            orig_dst: vec!["198.18.9.9".parse().unwrap()],
            ..FlowFilter::default()
        };
        let mut dump = Vec::new();
        journal.patch(&mut dump, &other);
        assert!(dump.is_empty());
    }

    #[test]
    fn leaving_master_tracks_the_kernel_with_nothing_pending() {
        let mut s = SyncStore::new();
        s.apply(Event {
            kind: EventKind::New,
            entry: entry(1000, 60),
        });
        s.track_from_kernel();
        assert!(s.tracking());
        assert_eq!(s.pending(), 0);
        s.begin_resync();
        s.apply(Event {
            kind: EventKind::New,
            entry: entry(1000, 60),
        });
        assert_eq!(
            s.pending(),
            1,
            "the peer's dump replaces the kernel's version"
        );
    }

    #[test]
    fn in_place_only_for_what_this_store_wrote_since_the_kernel_last_carried_traffic() {
        let mut s = SyncStore::new();
        let event = |e: Entry| Event {
            kind: EventKind::Update,
            entry: e,
        };
        let e = entry(1000, 60);
        s.set_tracking(true);
        let t0 = Instant::now();
        s.apply_at(event(e.clone()), t0);
        assert!(!s.kernel_has_ours(&e.orig), "never written");
        s.mark_written(std::slice::from_ref(&e), &[], t0);
        assert!(s.kernel_has_ours(&e.orig));
        // A refusal un-marks it.
        s.mark_written(std::slice::from_ref(&e), &[(e.orig, libc::EBUSY)], t0);
        assert!(!s.kernel_has_ours(&e.orig));
        s.mark_written(std::slice::from_ref(&e), &[], t0);
        // A change of state keeps it; another NAT mapping is another connection.
        let mut later = e.clone();
        later.timeout = Some(50);
        s.apply_at(event(later.clone()), t0);
        assert!(s.kernel_has_ours(&e.orig));
        let mut remapped = later.clone();
        remapped.reply = Tuple::tcp(
            "198.18.1.22".parse().unwrap(),
            80,
            "198.18.1.100".parse().unwrap(),
            20001,
        );
        s.apply_at(event(remapped.clone()), t0);
        assert!(!s.kernel_has_ours(&e.orig));
        s.mark_written(std::slice::from_ref(&remapped), &[], t0);
        assert!(s.kernel_has_ours(&e.orig));
        // MASTER and back: the kernel carried the connection meanwhile.
        s.set_tracking(false);
        assert!(!s.kernel_has_ours(&e.orig));
        s.track_from_kernel();
        assert!(!s.kernel_has_ours(&e.orig));
        // Writes right after leaving MASTER may still meet stragglers: not trusted.
        s.mark_written(std::slice::from_ref(&remapped), &[], Instant::now());
        assert!(!s.kernel_has_ours(&e.orig));
        s.mark_written(
            std::slice::from_ref(&remapped),
            &[],
            Instant::now() + STRAGGLERS,
        );
        assert!(s.kernel_has_ours(&e.orig));
        // Not tracking (MASTER): nothing is marked.
        s.set_tracking(false);
        s.mark_written(
            std::slice::from_ref(&remapped),
            &[],
            Instant::now() + STRAGGLERS,
        );
        assert!(!s.kernel_has_ours(&e.orig));
    }

    #[test]
    fn after_leaving_master_what_the_peer_sends_is_presumed_carried_until_its_dump_ends() {
        let mut s = SyncStore::new();
        let new = |port| Event {
            kind: EventKind::New,
            entry: entry(port, 60),
        };
        let written = |s: &SyncStore, port| s.entries[&entry(port, 60).orig].written;
        s.apply(new(1000));
        s.track_from_kernel();
        assert_eq!(written(&s, 1000), CARRIED, "held while MASTER");
        s.begin_resync();
        s.apply(new(1000));
        s.apply(new(1001));
        assert_eq!(written(&s, 1000), CARRIED);
        assert_eq!(
            written(&s, 1001),
            CARRIED,
            "new in the dump: carried as MASTER"
        );
        s.end_resync();
        s.apply(new(1002));
        assert_eq!(written(&s, 1002), 0, "after the dump: a new connection");
        s.set_tracking(false);
        s.apply(new(1003));
        assert_eq!(written(&s, 1003), 0);
    }

    #[test]
    fn live_entries_age_and_expire() {
        let mut s = SyncStore::new();
        let t0 = Instant::now();
        s.apply_at(
            Event {
                kind: EventKind::New,
                entry: entry(1000, 100),
            },
            t0,
        );
        s.apply_at(
            Event {
                kind: EventKind::New,
                entry: entry(1001, 10),
            },
            t0,
        );
        let (live, expired) = s.live_at(s.entries.keys(), t0 + Duration::from_secs(30));
        assert_eq!(expired, 1);
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].timeout, Some(70));
        assert_eq!(live[0].id, None, "kernel ids are local to a node");
    }
}
