//! Connection-state sync, either backend: each node streams its own balanced flows'
//! conntrack entries (with their NAT mappings) to the peer's lbd over TCP and keeps
//! what the peer sends in a [`SyncStore`]. With IPVS the kernel's sync daemon carries
//! IPVS's own connection table beside it; a source-NATed connection survives a
//! takeover only with both (IPVS's entry names the real server, conntrack's the
//! SNAT address and port).
//!
//! A node that is not MASTER writes the peer's entries into its kernel as they arrive
//! (they see no packets there until it takes over), so a takeover commits only the
//! few not yet written: its cost does not grow with the table. Entries it writes
//! replace what its kernel holds for the same connections (an entry this node kept
//! from when it carried the connection has a stale TCP window, and the client's
//! next segment would be INVALID), and the events its own writes cause are not sent
//! back to the peer. A node that leaves MASTER asks the peer for a full dump
//! (`{"want_dump":true}` on its own stream): the dump replaces every entry it kept
//! from its time as MASTER, and what the dump does not bring is deleted from its
//! kernel. Until that dump is complete it holds back preemption, as after a restart.
//!
//! Every node connects to the peer (`peer_address:port`) and sends, and accepts the
//! peer's connection on `local_address:port` and receives: from the peer's address
//! only, at most `MAX_RECEIVERS` (4) streams at once, lines of at most [`MAX_LINE`]
//! bytes (a longer one drops its connection); each refusal is counted. A sending connection
//! starts with a resync line, a full dump and a line that ends the dump (the receiver
//! then drops what the dump did not bring; until then it keeps everything, for a
//! takeover mid-dump). A MASTER (or a node whose role is not known yet) then follows
//! its conntrack events; a node that is not MASTER has no connections of its own and
//! does not subscribe (conntrack builds no events while nobody listens), so writing
//! the peer's entries costs it no events. It streams its events once it becomes
//! MASTER: the takeover's commit subscribes to them before the VIPs arrive and the
//! stream takes that subscription over, so the peer (which asked for a dump when it
//! left MASTER) gets one dump per takeover, not two; a MASTER role learnt without a
//! commit restarts the stream with a new dump. When the kernel drops events, the
//! sender sends a resync and a dump again. Until a dump has ended on a live stream from the peer, the receiver asks
//! vrrpd (through lbd's `track.set`) to hold back preemption: a node that comes back
//! takes over only once it can carry the peer's connections. An idle sender sends a
//! heartbeat every second, so each side notices a dead peer within seconds (the
//! receiver keeps the entries it holds: that is when they are needed).
//!
//! ```text
//! {"resync":true}
//! {"dumped":true}                            the dump is complete
//! {"heartbeat":true}
//! {"want_dump":true}                         the sender wants the receiver's full state
//! {"v":1,"kind":"new","entry":{...}}        ctsync's wire format, one per line
//! ```

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use ctl::contract::lbd::{RefusedConnections, SyncCommit, SyncLinkStatus};
use ctsync::{
    decode_line, encode_line, subscribe, CommitReport, Conntrack, Event, EventKind, FlowFilter,
    SyncStore,
};
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use tokio::sync::watch;

use config::NodeView;

/// The line that starts a full dump (the receiver replaces what it holds with it).
pub const RESYNC_LINE: &str = "{\"resync\":true}\n";
/// The line that ends a dump: the receiver now holds the peer's complete state.
pub const DUMPED_LINE: &str = "{\"dumped\":true}\n";
/// The line an idle sender sends every [`HEARTBEAT`].
pub const HEARTBEAT_LINE: &str = "{\"heartbeat\":true}\n";
/// The line that asks the receiver for a full dump of its own state.
pub const WANT_DUMP_LINE: &str = "{\"want_dump\":true}\n";
/// Idle interval between heartbeats; also how often an unanswered dump request is
/// repeated.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long the sender waits for an event before it looks at requests and heartbeats.
const SENDER_TICK: Duration = Duration::from_millis(50);
/// Entries written into the kernel in one go while the stream is busy.
const FLUSH_AT: usize = 1024;
/// How long entries received may wait for the kernel while the peer streams: the
/// events of a connection that arrive meanwhile cost one write, and a takeover's
/// prepare writes what waits.
const FLUSH_EVERY: Duration = Duration::from_millis(10);
/// How often a receiver looks for held entries whose copy in this node's kernel has
/// spent half its timeout ([`SyncStore::refresh_due`]).
const REFRESH_EVERY: Duration = Duration::from_secs(1);
/// Bytes of lines the sender gathers before it writes them out.
const FLUSH_BYTES: usize = 32 << 10;
/// At most this many connections' events are merged before they are written.
const COALESCE_AT: usize = 4096;
/// What the node that asked for a dump knows of it.
const DUMP_NOT_WANTED: u8 = 0;
const DUMP_REQUESTED: u8 = 1;
const DUMP_COMING: u8 = 2;
/// Why the peer's state is not complete here: no stream yet, a dump under way, the
/// stream down.
const NO_STREAM_YET: &str = "no connection-state stream from the peer yet";
const DUMP_UNDER_WAY: &str = "the peer's connection-state dump is under way";
const STREAM_DOWN: &str = "the connection-state stream from the peer is down";
/// Why a node whose IPVS backup sync daemon just started waits for the peer's dump.
pub const IPVS_BACKUP_STARTED: &str =
    "waiting for the peer's full dump: this node's IPVS backup sync daemon started with an empty connection table";
const LEFT_MASTER: &str =
    "waiting for the peer's full dump to replace the entries this node's kernel holds (it became BACKUP)";
/// Silence after which the receiver drops the peer's stream (its entries stay).
const SILENCE: Duration = Duration::from_secs(5);
/// First reconnect delay; doubles up to [`BACKOFF_MAX`].
const BACKOFF_FIRST: Duration = Duration::from_millis(200);
/// Longest reconnect delay.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long a connect, a write or unacknowledged data may take before the link
/// counts as down.
const IO_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest line accepted from the peer, newline included. An entry's line is well
/// under 4 KiB; a longer one is a broken or hostile sender, whose connection is
/// dropped before it costs more memory than this.
pub const MAX_LINE: usize = 64 << 10;
/// Streams received at once. The peer sends one; a reconnect may overlap the old
/// one until its silence is noticed. More is not the peer behaving.
const MAX_RECEIVERS: u64 = 4;
/// Least time between two log lines about refused sync connections.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Why the link cannot start. The inner error's text is in the message, not also a
/// `source()`, so an `anyhow` chain prints it once.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// `[sync]` gives no address for this node or the peer on the sync interface.
    #[error("[sync] has no {0} address on the sync interface")]
    NoAddress(&'static str),
    /// A sync thread could not be started.
    #[error("starting a sync thread: {0}")]
    Thread(std::io::Error),
    /// The ctnetlink socket that writes the peer's entries could not be opened.
    #[error("opening conntrack: {0}")]
    Conntrack(ctsync::Error),
}

/// One line received from the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A full dump follows; what it does not bring is dropped when it ends.
    Resync,
    /// The dump is complete.
    Dumped,
    /// The sender is alive and idle.
    Heartbeat,
    /// The peer wants this node's full state (it left MASTER).
    WantDump,
    /// A connection event.
    Event(Event),
}

/// Parses one received line.
pub fn parse_line(line: &str) -> Result<Line, ctsync::WireError> {
    let control = [
        (RESYNC_LINE, Line::Resync),
        (DUMPED_LINE, Line::Dumped),
        (HEARTBEAT_LINE, Line::Heartbeat),
        (WANT_DUMP_LINE, Line::WantDump),
    ];
    match control
        .into_iter()
        .find(|(text, _)| line.trim_end() == text.trim_end())
    {
        Some((_, parsed)) => Ok(parsed),
        None => decode_line(line).map(Line::Event),
    }
}

/// The suite's flows: to a service VIP, or source-NATed to a SNAT address.
pub fn flow_filter(view: &NodeView) -> FlowFilter {
    let mut orig_dst: Vec<IpAddr> = view.services.iter().map(|s| s.vip).collect();
    let mut reply_dst: Vec<IpAddr> = view.nat.iter().flat_map(|n| n.snat.addresses()).collect();
    orig_dst.sort();
    orig_dst.dedup();
    reply_dst.sort();
    reply_dst.dedup();
    FlowFilter {
        mark: None,
        orig_dst,
        reply_dst,
    }
}

/// The peer's entries and the socket that writes them into this node's kernel.
#[derive(Debug)]
struct Held {
    store: SyncStore,
    kernel: Conntrack,
}

impl Held {
    /// Writes what the kernel lacks, while the store tracks it; logs what failed.
    fn flush(&mut self) -> Option<CommitReport> {
        if !self.store.tracking() || self.store.pending() == 0 {
            return None;
        }
        match self.store.flush(&mut self.kernel) {
            Ok(r) => {
                if !r.batch.failed.is_empty() {
                    tracing::warn!(failed = r.batch.failed.len(), first = %r.batch.failed.first().map(|(t, errno)| format!("{t:?}: errno {errno}")).unwrap_or_default(), "the kernel refused some of the peer's connection entries");
                }
                Some(r)
            }
            Err(e) => {
                tracing::warn!(error = %e, "writing the peer's connection entries into the kernel failed; retried with the next ones");
                None
            }
        }
    }
}

/// State shared by the link's threads and the daemon.
#[derive(Debug)]
struct Shared {
    held: Mutex<Held>,
    /// The port id of `held.kernel`: events its writes cause are not sent.
    writer_portid: u32,
    /// Whether this node asked the peer for a dump: `DUMP_*`.
    dump_wanted: AtomicU8,
    /// The peer asked for this node's full state.
    peer_wants_dump: AtomicBool,
    /// Whether this node is MASTER (or its role is not known yet): it streams its
    /// conntrack events then.
    master: AtomicBool,
    /// The flows to send, and a generation bumped when they change (reload).
    filter: Mutex<(FlowFilter, u64)>,
    /// A subscription to this node's events made by the takeover's commit, before
    /// the VIPs arrive, with the filter generation it selects by: the stream takes
    /// it over in place, so no connection of the new MASTER can fall between a dump
    /// and a subscription, and the peer gets no second full dump at each takeover.
    early_events: Mutex<Option<(ctsync::Events, u64)>>,
    sending: AtomicBool,
    /// Set when the peer's stream arrives: the peer is back, so the sender stops
    /// waiting out its reconnect backoff.
    peer_back: AtomicBool,
    receiving: AtomicU64,
    events_sent: AtomicU64,
    dumps_sent: AtomicU64,
    /// Times the kernel dropped events for this node's stream (each cost a dump).
    events_lost: AtomicU64,
    /// Whether the stream to the peer carries this node's events (MASTER).
    streaming_events: AtomicBool,
    lines_received: AtomicU64,
    /// Lines longer than [`MAX_LINE`] (each dropped its connection).
    lines_too_long: AtomicU64,
    /// Connections refused: not from the peer's address, or too many at once.
    refused_not_peer: AtomicU64,
    refused_too_many: AtomicU64,
    /// Entries written into the kernel as they arrived.
    written: AtomicU64,
    stored_gauge: IntGauge,
    pending_gauge: IntGauge,
    lost_counter: IntCounter,
    too_long_counter: IntCounter,
    /// Held entries written again because their copy's timeout was half spent.
    refreshed_counter: IntCounter,
    /// IPVS connections sent to the peer's backup sync daemon in full resyncs.
    ipvs_resynced: IntCounter,
    /// Full IPVS resyncs that failed.
    ipvs_resync_errors: IntCounter,
    refused_counter: IntCounterVec,
    connected_gauge: IntGauge,
    complete_gauge: IntGauge,
    commit_duration: Histogram,
    /// Why this node lacks the peer's complete state (None: it has it); what lbd
    /// tells vrrpd as `preempt_hold`.
    incomplete: watch::Sender<Option<String>>,
}

impl Shared {
    fn held(&self) -> MutexGuard<'_, Held> {
        // A panicked receiver leaves a usable map; keep going with it.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gauges after a change of the store.
    fn observe(&self, held: &Held, flushed: Option<&CommitReport>) {
        self.stored_gauge.set(held.store.len() as i64);
        self.pending_gauge.set(held.store.pending() as i64);
        if let Some(r) = flushed {
            let n = r.batch.written() + r.removed;
            self.written.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    fn filter(&self) -> (FlowFilter, u64) {
        self.filter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn filter_generation(&self) -> u64 {
        self.filter.lock().unwrap_or_else(|p| p.into_inner()).1
    }

    /// The subscription the last commit made (taken away), if it selects by
    /// `generation`'s filter; any other is dropped.
    fn take_early_events(&self, generation: Option<u64>) -> Option<ctsync::Events> {
        let early = self
            .early_events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        early.and_then(|(ev, g)| (Some(g) == generation).then_some(ev))
    }

    /// Subscribes to this node's events now (a takeover's commit, before the VIPs
    /// arrive), for the stream to take over when it sees the node is MASTER.
    fn subscribe_early(&self) {
        if self.master.load(Ordering::Relaxed) && self.streaming_events.load(Ordering::Relaxed) {
            // Already streaming its events (a prepare while MASTER, or before the
            // role was known): nothing would take this subscription.
            return;
        }
        let (filter, generation) = self.filter();
        let early = match subscribe_events(self, &filter) {
            Ok(ev) => Some((ev, generation)),
            Err(e) => {
                tracing::warn!(error = %e, "no early subscription to conntrack events: the stream restarts with a full dump");
                None
            }
        };
        *self.early_events.lock().unwrap_or_else(|p| p.into_inner()) = early;
    }

    fn set_sending(&self, up: bool) {
        self.sending.store(up, Ordering::Relaxed);
        self.connected_gauge.set(i64::from(up));
    }

    /// Records whether the peer's state is complete here (None) or why not.
    fn set_incomplete(&self, why: Option<&str>) {
        self.complete_gauge.set(i64::from(why.is_none()));
        let why = why.map(str::to_owned);
        self.incomplete.send_if_modified(|old| {
            let changed = *old != why;
            *old = why;
            changed
        });
    }
}

/// The running sync link: a sender to the peer, a listener for the peer's stream.
#[derive(Debug, Clone)]
pub struct SyncLink {
    shared: Arc<Shared>,
    listen: SocketAddr,
    peer: SocketAddr,
}

impl SyncLink {
    /// Starts the sender and the listener threads (in the calling process's network
    /// namespace) and registers the `lbd_sync_*` metrics in `registry`.
    pub fn start(view: &NodeView, registry: &Registry) -> Result<SyncLink, SyncError> {
        let local = view
            .sync
            .local_address
            .ok_or(SyncError::NoAddress("local"))?;
        let peer = view.sync.peer_address.ok_or(SyncError::NoAddress("peer"))?;
        let stored_gauge = metric(IntGauge::new(
            "lbd_sync_entries_stored",
            "Connection entries received from the peer and held for a takeover",
        ));
        let connected_gauge = metric(IntGauge::new(
            "lbd_sync_connected",
            "1 while this node's connection-state stream to the peer is up",
        ));
        let lost_counter = metric(IntCounter::new(
            "lbd_sync_events_lost_total",
            "Times the kernel dropped conntrack events for this node's stream (each is answered with a full dump)",
        ));
        let pending_gauge = metric(IntGauge::new(
            "lbd_sync_entries_pending",
            "Entries received from the peer and not yet written into this node's kernel (a takeover writes them)",
        ));
        let too_long_counter = metric(IntCounter::new(
            "lbd_sync_lines_too_long_total",
            "Lines from the peer's address longer than the sync line bound (64 KiB); each dropped its connection",
        ));
        let refreshed_counter = metric(IntCounter::new(
            "lbd_sync_entries_refreshed_total",
            "Entries held from the peer written into this node's kernel again because half their timeout was spent (the peer's packets refresh it without events)",
        ));
        let ipvs_resynced = metric(IntCounter::new(
            "lbd_sync_ipvs_resync_connections_total",
            "IPVS connections this node (MASTER, IPVS backend) sent to the peer's backup sync daemon in full resyncs, one per dump the peer asked for",
        ));
        let ipvs_resync_errors = metric(IntCounter::new(
            "lbd_sync_ipvs_resync_errors_total",
            "Full IPVS resyncs to the peer that failed (reading the table or sending to the sync group)",
        ));
        let refused_counter = metric(IntCounterVec::new(
            Opts::new(
                "lbd_sync_connections_refused_total",
                "Connections to the sync port refused: reason=not_peer (another source address), too_many (more streams at once than a peer opens)",
            ),
            &["reason"],
        ));
        for reason in ["not_peer", "too_many"] {
            refused_counter.with_label_values(&[reason]).inc_by(0);
        }
        let complete_gauge = metric(IntGauge::new(
            "lbd_sync_peer_complete",
            "1 while a live stream from the peer has delivered a complete dump (vrrpd holds back preemption until then)",
        ));
        let commit_duration = metric(Histogram::with_opts(
            HistogramOpts::new(
                "lbd_sync_commit_duration_seconds",
                "Time to commit the peer's connection entries not yet in the kernel at prepare",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
        ));
        for m in [
            Box::new(stored_gauge.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(connected_gauge.clone()),
            Box::new(pending_gauge.clone()),
            Box::new(lost_counter.clone()),
            Box::new(too_long_counter.clone()),
            Box::new(refreshed_counter.clone()),
            Box::new(ipvs_resynced.clone()),
            Box::new(ipvs_resync_errors.clone()),
            Box::new(refused_counter.clone()),
            Box::new(complete_gauge.clone()),
            Box::new(commit_duration.clone()),
        ] {
            // Registered once per process; a second registration is a harmless no-op.
            let _ = registry.register(m);
        }
        let kernel = Conntrack::open().map_err(SyncError::Conntrack)?;
        let writer_portid = kernel.portid().map_err(SyncError::Conntrack)?;
        let link = SyncLink {
            shared: Arc::new(Shared {
                held: Mutex::new(Held {
                    store: SyncStore::new(),
                    kernel,
                }),
                writer_portid,
                dump_wanted: AtomicU8::new(DUMP_NOT_WANTED),
                peer_wants_dump: AtomicBool::new(false),
                master: AtomicBool::new(true),
                filter: Mutex::new((flow_filter(view), 0)),
                early_events: Mutex::new(None),
                sending: AtomicBool::new(false),
                peer_back: AtomicBool::new(false),
                receiving: AtomicU64::new(0),
                events_sent: AtomicU64::new(0),
                dumps_sent: AtomicU64::new(0),
                events_lost: AtomicU64::new(0),
                streaming_events: AtomicBool::new(false),
                lines_received: AtomicU64::new(0),
                lines_too_long: AtomicU64::new(0),
                refused_not_peer: AtomicU64::new(0),
                refused_too_many: AtomicU64::new(0),
                written: AtomicU64::new(0),
                stored_gauge,
                pending_gauge,
                lost_counter,
                too_long_counter,
                refreshed_counter,
                ipvs_resynced,
                ipvs_resync_errors,
                refused_counter,
                connected_gauge,
                complete_gauge,
                commit_duration,
                incomplete: watch::channel(Some(NO_STREAM_YET.to_owned())).0,
            }),
            listen: SocketAddr::new(local, view.sync.port),
            peer: SocketAddr::new(peer, view.sync.port),
        };
        let (shared, to) = (Arc::clone(&link.shared), link.peer);
        thread::Builder::new()
            .name("sync-send".into())
            .spawn(move || send_loop(&shared, to))
            .map_err(SyncError::Thread)?;
        let (shared, listen) = (Arc::clone(&link.shared), link.listen);
        thread::Builder::new()
            .name("sync-listen".into())
            .spawn(move || listen_loop(&shared, listen, peer))
            .map_err(SyncError::Thread)?;
        let shared = Arc::clone(&link.shared);
        thread::Builder::new()
            .name("sync-refresh".into())
            .spawn(move || refresh_loop(&shared))
            .map_err(SyncError::Thread)?;
        tracing::info!(listen = %link.listen, peer = %link.peer, "connection-state sync started");
        Ok(link)
    }

    /// Follows a reloaded configuration's VIPs and SNAT addresses: when they changed,
    /// the stream restarts with a resync and a dump of the new selection.
    pub fn set_filter(&self, view: &NodeView) {
        let new = flow_filter(view);
        let mut f = self.shared.filter.lock().unwrap_or_else(|p| p.into_inner());
        if f.0 != new {
            *f = (new, f.1 + 1);
        }
    }

    /// Why this node lacks the peer's complete connection state (None: it has it),
    /// as it changes.
    pub fn incomplete(&self) -> watch::Receiver<Option<String>> {
        self.shared.incomplete.subscribe()
    }

    /// Entries held from the peer.
    pub fn stored(&self) -> usize {
        self.shared.held().store.len()
    }

    /// Takeover (prepare): writes the peer's entries that are not yet in this
    /// namespace's kernel (all of them if this node was not writing them as they
    /// arrived), and stops writing them as they arrive. Blocking; the store is
    /// locked meanwhile so no event interleaves.
    pub fn commit(&self) -> Result<CommitReport, ctsync::Error> {
        let mut held = self.shared.held();
        let Held { store, kernel } = &mut *held;
        let result = if store.tracking() {
            store.flush(kernel)
        } else {
            store.commit(kernel)
        };
        // Whatever the kernel said: from now on nothing is written behind the
        // connections this node carries.
        store.set_tracking(false);
        self.shared
            .dump_wanted
            .store(DUMP_NOT_WANTED, Ordering::Relaxed);
        drop(held);
        // Subscribed before the stream sees MASTER, so it finds the subscription.
        self.shared.subscribe_early();
        self.shared.master.store(true, Ordering::Relaxed);
        let held = self.shared.held();
        let report = result?;
        self.shared.observe(&held, Some(&report));
        self.shared
            .commit_duration
            .observe(report.elapsed.as_secs_f64());
        Ok(report)
    }

    /// Follows this node's VRRP role (blocking). MASTER: the peer's entries are only
    /// held (they would replace live connections), and those not yet written go in
    /// now. Not MASTER: they are written into the kernel as they arrive; a node that
    /// was MASTER asks the peer for a full dump, which replaces what it kept of its
    /// own, and holds back preemption until it has it.
    pub fn follow_role(&self, master: bool) -> Option<CommitReport> {
        self.shared.master.store(master, Ordering::Relaxed);
        let mut held = self.shared.held();
        if held.store.tracking() != master {
            return None;
        }
        let report = if master {
            let r = held.flush();
            held.store.set_tracking(false);
            self.shared
                .dump_wanted
                .store(DUMP_NOT_WANTED, Ordering::Relaxed);
            r
        } else {
            // The peer's dump, asked for here, replaces what the kernel holds.
            self.shared.take_early_events(None);
            held.store.track_from_kernel();
            self.shared
                .dump_wanted
                .store(DUMP_REQUESTED, Ordering::Relaxed);
            self.shared.set_incomplete(Some(LEFT_MASTER));
            None
        };
        self.shared.observe(&held, report.as_ref());
        tracing::info!(
            writing = !master,
            written = report.as_ref().map_or(0, |r| r.batch.written()),
            "the peer's connection entries: {}",
            if master {
                "held only (MASTER)"
            } else {
                "written into the kernel as they arrive; full dump asked of the peer"
            }
        );
        report
    }

    /// Asks the peer for its full state (blocking nothing): this node's kernel lost
    /// what it held of the peer's connections, `why`. Preemption waits for the dump.
    pub fn want_full_dump(&self, why: &'static str) {
        let asked = self
            .shared
            .dump_wanted
            .compare_exchange(
                DUMP_NOT_WANTED,
                DUMP_REQUESTED,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok();
        if asked {
            self.shared.set_incomplete(Some(why));
            tracing::info!(why, "full dump asked of the peer");
        }
    }

    /// For status: link state and counts.
    pub fn status(&self) -> SyncLinkStatus {
        let s = &self.shared;
        // One lock at a time: a guard held in the literal below would deadlock the
        // next `held()`.
        let (entries_pending, writing_to_kernel) = {
            let held = s.held();
            (held.store.pending() as u64, held.store.tracking())
        };
        let incomplete_because = s.incomplete.borrow().clone();
        SyncLinkStatus {
            listen: self.listen,
            peer: self.peer,
            connected: s.sending.load(Ordering::Relaxed),
            receiving: s.receiving.load(Ordering::Relaxed) > 0,
            peer_complete: incomplete_because.is_none(),
            incomplete_because,
            entries_stored: self.stored() as u64,
            entries_pending,
            writing_to_kernel,
            entries_written: s.written.load(Ordering::Relaxed),
            events_sent: s.events_sent.load(Ordering::Relaxed),
            dumps_sent: s.dumps_sent.load(Ordering::Relaxed),
            events_lost: s.events_lost.load(Ordering::Relaxed),
            streaming_events: s.streaming_events.load(Ordering::Relaxed),
            lines_received: s.lines_received.load(Ordering::Relaxed),
            lines_too_long: s.lines_too_long.load(Ordering::Relaxed),
            connections_refused: RefusedConnections {
                not_peer: s.refused_not_peer.load(Ordering::Relaxed),
                too_many: s.refused_too_many.load(Ordering::Relaxed),
            },
        }
    }
}

/// A commit report as the contract carries it (prepare reply, status).
pub fn commit_status(r: &CommitReport) -> SyncCommit {
    SyncCommit {
        created: r.batch.created as u64,
        replaced: r.batch.replaced as u64,
        updated: r.batch.updated as u64,
        removed: r.removed as u64,
        failed: r.batch.failed.len() as u64,
        expired: r.expired as u64,
        elapsed_ms: ctl::contract::ms(r.elapsed),
        error: None,
    }
}

fn metric<T>(r: prometheus::Result<T>) -> T {
    // Names are constants of this file: a failure is a bug the tests find.
    match r {
        Ok(v) => v,
        Err(e) => panic!("lbd sync metric definition: {e}"),
    }
}

/// Connects to the peer and streams, forever; reconnects with backoff.
fn send_loop(shared: &Shared, peer: SocketAddr) {
    let mut backoff = BACKOFF_FIRST;
    loop {
        match TcpStream::connect_timeout(&peer, IO_TIMEOUT) {
            Ok(stream) => {
                backoff = BACKOFF_FIRST;
                shared.set_sending(true);
                tracing::info!(%peer, "sync stream to the peer connected");
                let why = stream_to(shared, stream);
                shared.set_sending(false);
                tracing::warn!(%peer, error = %why, "sync stream to the peer down; reconnecting");
            }
            Err(e) => tracing::debug!(%peer, error = %e, "sync connect failed"),
        }
        if wait_for_peer(shared, backoff) {
            backoff = BACKOFF_FIRST;
        } else {
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}

/// Sleeps `backoff`, or less if the peer's stream arrives meanwhile (true then): a
/// peer that comes back gets this node's state without waiting out the backoff.
fn wait_for_peer(shared: &Shared, backoff: Duration) -> bool {
    const SLICE: Duration = Duration::from_millis(50);
    let end = std::time::Instant::now() + backoff;
    loop {
        if shared.peer_back.swap(false, Ordering::Relaxed) {
            return true;
        }
        let left = end.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        thread::sleep(left.min(SLICE));
    }
}

/// Streams dump and events into `stream` until something fails; returns why.
fn stream_to(shared: &Shared, stream: TcpStream) -> String {
    let _ = stream.set_nodelay(true);
    if let Err(e) = stream.set_write_timeout(Some(IO_TIMEOUT)) {
        return e.to_string();
    }
    // Data the peer does not acknowledge in time fails the next write: a dead peer
    // is noticed within seconds, not after the kernel's retransmissions (minutes).
    if let Err(e) = set_user_timeout(&stream, IO_TIMEOUT) {
        return e.to_string();
    }
    let mut out = BufWriter::with_capacity(64 << 10, stream);
    let (filter, generation) = shared.filter();
    // Only a MASTER has connections of its own to stream: a node that is not writes
    // the peer's into its kernel, and conntrack builds no events at all while nobody
    // listens. Subscribe before dumping: an event between the two is then sent.
    let mut streaming_events = shared.master.load(Ordering::Relaxed);
    // A subscription the commit made is older than this stream's dump: use it.
    let early = shared.take_early_events(Some(generation));
    let mut events = if streaming_events {
        match early.map_or_else(|| subscribe_events(shared, &filter), Ok) {
            Ok(ev) => Some(ev),
            Err(e) => return e,
        }
    } else {
        None
    };
    shared
        .streaming_events
        .store(events.is_some(), Ordering::Relaxed);
    // A new stream starts with a full dump: whatever the peer asked before is answered.
    if let Err(e) = send_dump(shared, &mut out, &filter) {
        return e;
    }
    let mut last_write = Instant::now();
    let mut last_want: Option<Instant> = None;
    let mut batch = ctsync::Coalescer::new();
    loop {
        let event = match events.as_mut() {
            Some(ev) => match ev.next() {
                Some(e) => e,
                None => break,
            },
            None => {
                thread::sleep(SENDER_TICK);
                Err(ctsync::Error::TimedOut)
            }
        };
        if shared.filter_generation() != generation {
            return "the selection of flows changed (reload): resynchronising".to_owned();
        }
        if shared.master.load(Ordering::Relaxed) != streaming_events {
            if streaming_events {
                // Not MASTER any more: nothing of its own to send.
                events = None;
                streaming_events = false;
                shared.streaming_events.store(false, Ordering::Relaxed);
            } else if let Some(ev) = shared.take_early_events(Some(generation)) {
                // Subscribed by the takeover's commit, before this node had a VIP:
                // every connection of its own is in these events, and the peer's
                // request for a dump (if any) is answered below. No restart, no
                // second dump of the whole table.
                events = Some(ev);
                streaming_events = true;
                shared.streaming_events.store(true, Ordering::Relaxed);
                tracing::info!("this node became MASTER: streaming its connections");
                resync_ipvs(shared);
            } else {
                return "this node became MASTER: streaming its connections".to_owned();
            }
        }
        let mut sent = match event {
            Ok(ev) => {
                batch.push(ev);
                Ok(())
            }
            Err(ctsync::Error::TimedOut) => Ok(()),
            Err(ctsync::Error::EventsLost) => {
                shared.events_lost.fetch_add(1, Ordering::Relaxed);
                shared.lost_counter.inc();
                tracing::warn!("conntrack events lost: sending a full dump again");
                send_events(shared, &mut out, &mut batch)
                    .and_then(|()| send_dump(shared, &mut out, &filter))
            }
            Err(e) => Err(e.to_string()),
        };
        if sent.is_ok() && shared.peer_wants_dump.swap(false, Ordering::Relaxed) {
            tracing::info!("the peer asked for this node's full connection state: dumping");
            sent = send_events(shared, &mut out, &mut batch)
                .and_then(|()| send_dump(shared, &mut out, &filter));
        }
        // Asked for the peer's dump and it has not started: ask (again) once a second.
        if sent.is_ok()
            && shared.dump_wanted.load(Ordering::Relaxed) == DUMP_REQUESTED
            && last_want.is_none_or(|t| t.elapsed() >= HEARTBEAT)
        {
            last_want = Some(Instant::now());
            sent = out
                .write_all(WANT_DUMP_LINE.as_bytes())
                .map_err(|e| e.to_string());
        }
        // More events already read: they go out in the same write, a connection's
        // merged into one line.
        let queued = events.as_ref().map_or(0, ctsync::Events::queued);
        if sent.is_ok()
            && queued > 0
            && batch.len() < COALESCE_AT
            && out.buffer().len() < FLUSH_BYTES
        {
            continue;
        }
        if sent.is_ok() {
            sent = send_events(shared, &mut out, &mut batch);
        }
        if sent.is_ok() && !out.buffer().is_empty() {
            last_write = Instant::now();
        } else if sent.is_ok() && last_write.elapsed() >= HEARTBEAT {
            last_write = Instant::now();
            sent = out
                .write_all(HEARTBEAT_LINE.as_bytes())
                .map_err(|e| e.to_string());
        }
        if let Err(e) = sent.and_then(|()| out.flush().map_err(|e| e.to_string())) {
            return e;
        }
    }
    "the conntrack event stream ended".to_owned()
}

/// Writes the events read so far, one line per connection.
fn send_events(
    shared: &Shared,
    out: &mut impl Write,
    batch: &mut ctsync::Coalescer,
) -> Result<(), String> {
    for ev in batch.drain() {
        out.write_all(encode_line(&ev).as_bytes())
            .map_err(|e| e.to_string())?;
        shared.events_sent.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// This node's conntrack events of the flows `filter` selects, without those its own
/// writes of the peer's entries cause.
fn subscribe_events(shared: &Shared, filter: &FlowFilter) -> Result<ctsync::Events, String> {
    let mut events = subscribe(filter.clone()).map_err(|e| e.to_string())?;
    if let Err(e) = events.ignore_portid(shared.writer_portid) {
        tracing::debug!(error = %e, "no socket filter for the events of this node's own writes: dropped after reading");
    }
    events
        .set_read_timeout(Some(SENDER_TICK))
        .map_err(|e| e.to_string())?;
    Ok(events)
}

/// TCP_USER_TIMEOUT: how long sent data may stay unacknowledged.
fn set_user_timeout(stream: &TcpStream, timeout: Duration) -> std::io::Result<()> {
    let ms = libc::c_uint::try_from(timeout.as_millis()).unwrap_or(libc::c_uint::MAX);
    // SAFETY: ms outlives the call; the size matches; the descriptor is the stream's.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_USER_TIMEOUT,
            std::ptr::addr_of!(ms).cast(),
            std::mem::size_of::<libc::c_uint>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Sends a resync line and every matching entry as a `new` event.
fn send_dump(shared: &Shared, out: &mut impl Write, filter: &FlowFilter) -> Result<(), String> {
    // Taken beside this node's writes of the peer's entries, not under their lock:
    // a takeover's prepare must not wait for a dump of the whole table (36 ms at
    // 100,000 entries when the peer's request came with the takeover). A replacement
    // deletes an entry before it creates it anew, so a dump taken in between misses
    // the connection, and the peer deletes what a dump does not bring (a drill
    // straight after a preemption back lost 13 of 200 that way): the writes made
    // meanwhile are journaled and patched into the dump. What the store has not
    // written yet goes in first: the peer's events before its request for this
    // dump are in the store by now, and the dump must bring them back (the peer
    // deletes what a dump does not bring, and this node's writes send no events).
    {
        let mut held = shared.held();
        let flushed = held.flush();
        shared.observe(&held, flushed.as_ref());
        held.store.start_journal();
    }
    // The resync line goes out before the table is read (seconds at 100,000
    // entries under load), so the peer knows its request is being answered and
    // stops repeating it; a request that arrived before this point is answered by
    // this dump. (The peer repeated it every second meanwhile, and each repeat cost
    // a second dump of the whole table, which held its preemption back again.)
    shared.peer_wants_dump.store(false, Ordering::Relaxed);
    out.write_all(RESYNC_LINE.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| e.to_string())?;
    let dumped = dump_with_heartbeats(out, filter);
    let journal = shared.held().store.take_journal();
    let mut entries = dumped?;
    journal.patch(&mut entries, filter);
    for entry in entries {
        let line = encode_line(&Event {
            kind: EventKind::New,
            entry,
        });
        out.write_all(line.as_bytes()).map_err(|e| e.to_string())?;
    }
    out.write_all(DUMPED_LINE.as_bytes())
        .map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    shared.dumps_sent.fetch_add(1, Ordering::Relaxed);
    if shared.master.load(Ordering::Relaxed) {
        resync_ipvs(shared);
    }
    Ok(())
}

/// This node's kernel table, dumped on a thread of its own while `out` carries a
/// heartbeat every [`HEARTBEAT`]: the peer drops a stream silent for [`SILENCE`],
/// and a dump of 100,000 entries on a loaded machine took longer, so the peer
/// dropped the stream, the dump began again, and the peer never got it whole.
fn dump_with_heartbeats(
    out: &mut impl Write,
    filter: &FlowFilter,
) -> Result<Vec<ctsync::Entry>, String> {
    thread::scope(|scope| {
        let dumping = scope.spawn(|| Conntrack::open().and_then(|mut c| c.dump(filter)));
        let mut last = Instant::now();
        while !dumping.is_finished() {
            thread::sleep(Duration::from_millis(20));
            if last.elapsed() >= HEARTBEAT {
                last = Instant::now();
                out.write_all(HEARTBEAT_LINE.as_bytes())
                    .and_then(|()| out.flush())
                    .map_err(|e| e.to_string())?;
            }
        }
        match dumping.join() {
            Ok(dumped) => dumped.map_err(|e| e.to_string()),
            Err(_) => Err("the conntrack dump's thread panicked".to_owned()),
        }
    })
}

/// With the IPVS backend, a MASTER's dump comes with its IPVS connection table,
/// sent to the peer's backup sync daemon: the kernel's own daemon sends a
/// connection only when it changes state or carries more packets, so a peer that
/// starts (a reboot) would otherwise lack every idle established connection.
fn resync_ipvs(shared: &Shared) {
    match dataplane::ipvs::resync::resync_backup() {
        Ok(None) => {}
        Ok(Some(r)) => {
            shared.ipvs_resynced.inc_by(r.connections as u64);
            tracing::info!(
                connections = r.connections,
                messages = r.messages,
                skipped = r.skipped,
                "IPVS connection table sent to the peer's backup sync daemon"
            );
        }
        Err(e) => {
            shared.ipvs_resync_errors.inc();
            tracing::warn!(error = %e, "IPVS connection table not sent to the peer");
        }
    }
}

/// Accepts the peer's stream, forever; binding is retried with backoff.
fn listen_loop(shared: &Arc<Shared>, listen: SocketAddr, peer: IpAddr) {
    let mut backoff = BACKOFF_FIRST;
    let listener = loop {
        match TcpListener::bind(listen) {
            Ok(l) => break l,
            Err(e) => {
                tracing::warn!(%listen, error = %e, "cannot listen for the peer's sync stream; retrying");
                thread::sleep(backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    };
    let mut last_refusal_log: Option<Instant> = None;
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "sync accept failed");
                // EMFILE and the like: do not spin on a listener that stays readable.
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let from = stream.peer_addr().map(|a| a.ip()).ok();
        let refused = if from != Some(peer) {
            shared.refused_not_peer.fetch_add(1, Ordering::Relaxed);
            Some(("not_peer", "not from the peer's address"))
        } else if shared.receiving.load(Ordering::Relaxed) >= MAX_RECEIVERS {
            shared.refused_too_many.fetch_add(1, Ordering::Relaxed);
            Some((
                "too_many",
                "more streams from the peer at once than it opens",
            ))
        } else {
            None
        };
        if let Some((reason, why)) = refused {
            shared.refused_counter.with_label_values(&[reason]).inc();
            // Dropping the stream closes it. Logged at most every 10 s: a flood of
            // connections must not become a flood of log lines.
            if last_refusal_log.is_none_or(|at| at.elapsed() >= REFUSAL_LOG_EVERY) {
                last_refusal_log = Some(Instant::now());
                tracing::warn!(from = %from.map_or_else(|| "unknown".to_owned(), |a| a.to_string()), %peer, reason, "sync connection refused: {why} (logged at most every 10 s)");
            }
            continue;
        }
        shared.peer_back.store(true, Ordering::Relaxed);
        // Counted here, not in the thread: the next accept must see it.
        shared.receiving.fetch_add(1, Ordering::Relaxed);
        let receiver = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name("sync-recv".into())
            .spawn(move || {
                let shared = receiver;
                tracing::info!(%peer, "receiving the peer's sync stream");
                let why = receive(&shared, stream);
                // A stream that ends while a newer one runs leaves that one's word.
                if shared.receiving.fetch_sub(1, Ordering::Relaxed) == 1 {
                    // A dump asked for and cut off: the request stands.
                    let _ = shared.dump_wanted.compare_exchange(
                        DUMP_COMING,
                        DUMP_REQUESTED,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                    shared.set_incomplete(Some(STREAM_DOWN));
                }
                tracing::warn!(%peer, why = %why, "the peer's sync stream ended; its entries are kept");
            });
        if let Err(e) = spawned {
            shared.receiving.fetch_sub(1, Ordering::Relaxed);
            tracing::error!(error = %e, "cannot start a sync receiver");
        }
    }
}

/// Every [`REFRESH_EVERY`]: held entries whose copy in this node's kernel has spent
/// half its timeout are written again (the peer's packets refresh its own copy and
/// send no event). On a thread of its own, not the receiver's: while the peer's
/// stream is down (the sync link cut, the peer alive and forwarding) the copies
/// must outlive their timeout all the same, for the takeover that may follow.
fn refresh_loop(shared: &Shared) {
    loop {
        thread::sleep(REFRESH_EVERY);
        let mut held = shared.held();
        let due = held.store.refresh_due(Instant::now());
        if due == 0 {
            continue;
        }
        shared.refreshed_counter.inc_by(due as u64);
        let flushed = held.flush();
        shared.observe(&held, flushed.as_ref());
    }
}

/// Applies the peer's lines to the store until the stream ends; returns why. While
/// this node is not MASTER, what arrives is written into the kernel in batches: when
/// [`FLUSH_AT`] entries have gathered, or the first of them has waited
/// [`FLUSH_EVERY`], whichever comes first (a connection's events that arrive
/// meanwhile cost one write).
fn receive(shared: &Shared, stream: TcpStream) -> String {
    if let Err(e) = stream.set_read_timeout(Some(SILENCE)) {
        return e.to_string();
    }
    let mut reader = BufReader::with_capacity(64 << 10, stream);
    let mut line = Vec::new();
    // Since when entries wait for the kernel, and whether the read waits only as long
    // as they may.
    let mut pending_since: Option<Instant> = None;
    let mut waiting_short = false;
    loop {
        // At most one byte past the bound, so a line without end costs no more. A
        // line cut by a short wait's timeout goes on where it stopped.
        let room = (MAX_LINE + 1).saturating_sub(line.len()) as u64;
        let mut bounded = (&mut reader).take(room);
        match bounded.read_until(b'\n', &mut line) {
            Ok(0) => return "closed by the peer".to_owned(),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if !waiting_short {
                    return format!("no heartbeat for {} s", SILENCE.as_secs());
                }
                // The peer paused: what has arrived goes into the kernel now.
                flush_held(shared);
                pending_since = None;
                waiting_short = false;
                if let Err(e) = reader.get_ref().set_read_timeout(Some(SILENCE)) {
                    return e.to_string();
                }
                continue;
            }
            Err(e) => return e.to_string(),
        }
        if line.len() > MAX_LINE {
            shared.lines_too_long.fetch_add(1, Ordering::Relaxed);
            shared.too_long_counter.inc();
            return format!(
                "a line longer than {} KiB (no entry is): connection dropped",
                MAX_LINE >> 10
            );
        }
        let parsed = match std::str::from_utf8(&line)
            .map_err(|e| e.to_string())
            .and_then(|text| parse_line(text).map_err(|e| e.to_string()))
        {
            Ok(p) => p,
            Err(e) => return e,
        };
        line.clear();
        shared.lines_received.fetch_add(1, Ordering::Relaxed);
        if parsed == Line::Dumped {
            // Writes what is pending too.
            dump_ended(shared);
            pending_since = None;
        } else {
            let mut held = shared.held();
            match parsed {
                Line::Resync => {
                    held.store.begin_resync();
                    let _ = shared.dump_wanted.compare_exchange(
                        DUMP_REQUESTED,
                        DUMP_COMING,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                    if shared.dump_wanted.load(Ordering::Relaxed) == DUMP_NOT_WANTED {
                        shared.set_incomplete(Some(DUMP_UNDER_WAY));
                    }
                }
                Line::WantDump => shared.peer_wants_dump.store(true, Ordering::Relaxed),
                Line::Event(ev) => held.store.apply(ev),
                Line::Heartbeat | Line::Dumped => {}
            }
            let pending = held.store.pending();
            let due =
                pending >= FLUSH_AT || pending_since.is_some_and(|t| t.elapsed() >= FLUSH_EVERY);
            let flushed = if due || pending == 0 {
                pending_since = None;
                held.flush()
            } else {
                pending_since.get_or_insert_with(Instant::now);
                None
            };
            shared.observe(&held, flushed.as_ref());
        }
        // Nothing more read yet: wait for the peer only as long as the pending
        // entries may wait.
        if reader.buffer().is_empty() {
            let wait = match pending_since {
                Some(t) => Some(
                    FLUSH_EVERY
                        .saturating_sub(t.elapsed())
                        .max(Duration::from_millis(1)),
                ),
                None if waiting_short => Some(SILENCE),
                None => None,
            };
            if let Some(wait) = wait {
                if let Err(e) = reader.get_ref().set_read_timeout(Some(wait)) {
                    return e.to_string();
                }
                waiting_short = pending_since.is_some();
            }
        }
    }
}

/// Writes the store's pending entries into the kernel (if it tracks it).
fn flush_held(shared: &Shared) {
    let mut held = shared.held();
    let flushed = held.flush();
    shared.observe(&held, flushed.as_ref());
}

/// The peer's dump has ended: what it did not bring is dropped from the store and,
/// while this node writes the peer's entries, from the kernel (the connections this
/// node carried that the peer no longer has); the peer's state is complete here.
fn dump_ended(shared: &Shared) {
    let (filter, _) = shared.filter();
    // This node's own view of the kernel, read without holding the store: a
    // takeover meanwhile must not wait for a dump of the whole table.
    let kernel_now = Conntrack::open().and_then(|mut c| c.dump(&filter));
    let mut held = shared.held();
    let dropped = held.store.end_resync();
    let flushed = held.flush();
    let mut purged = 0;
    if held.store.tracking() {
        match kernel_now {
            Ok(entries) => {
                let Held { store, kernel } = &mut *held;
                match store.purge_unknown(kernel, entries) {
                    Ok(r) => purged = r.replaced,
                    Err(e) => tracing::warn!(error = %e, "deleting entries the peer no longer has"),
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading this node's connection entries"),
        }
        // The dump answers this node's request only if it began after it (the
        // resync line came while the request stood): one that began before brought
        // entries this node took while it was MASTER, not writing them, and its
        // kernel still holds its own versions of those. The request then stands and
        // is repeated; the peer's next dump answers it.
        let _ = shared.dump_wanted.compare_exchange(
            DUMP_COMING,
            DUMP_NOT_WANTED,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
    shared.observe(&held, flushed.as_ref());
    let store_len = held.store.len();
    drop(held);
    if shared.dump_wanted.load(Ordering::Relaxed) == DUMP_NOT_WANTED {
        shared.set_incomplete(None);
    }
    tracing::info!(
        entries = store_len,
        dropped,
        purged,
        written = flushed.map_or(0, |r| r.batch.written()),
        "the peer's connection state is complete here"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_prints_each_inner_text_once() {
        let errno = std::io::Error::from_raw_os_error(libc::EPERM).to_string();
        let errors = [
            SyncError::Conntrack(ctsync::Error::Open(std::io::Error::from_raw_os_error(
                libc::EPERM,
            ))),
            SyncError::Conntrack(ctsync::Error::Kernel {
                op: "create",
                errno: std::io::Error::from_raw_os_error(libc::EPERM),
            }),
            SyncError::Thread(std::io::Error::from_raw_os_error(libc::EPERM)),
        ];
        for e in errors {
            let chain = format!("{:#}", anyhow::Error::from(e));
            assert_eq!(chain.matches(&errno).count(), 1, "{chain}");
        }
    }

    #[test]
    fn resync_and_event_lines() {
        assert_eq!(parse_line(RESYNC_LINE).unwrap(), Line::Resync);
        assert_eq!(parse_line("{\"resync\":true}").unwrap(), Line::Resync);
        assert_eq!(parse_line(HEARTBEAT_LINE).unwrap(), Line::Heartbeat);
        assert_eq!(parse_line(DUMPED_LINE).unwrap(), Line::Dumped);
        assert_eq!(parse_line(WANT_DUMP_LINE).unwrap(), Line::WantDump);
        assert!(parse_line("{\"resync\":false}").is_err());
        assert!(parse_line("not json").is_err());
        let orig = ctsync::Tuple::tcp(
            "198.18.0.10".parse().unwrap(),
            40000,
            "198.18.0.100".parse().unwrap(),
            80,
        );
        let event = Event {
            kind: EventKind::Update,
            entry: ctsync::Entry {
                orig,
                reply: orig.inverted(),
                status: ctsync::Status(ctsync::Status::ASSURED),
                timeout: Some(120),
                mark: None,
                zone: None,
                tcp: None,
                id: None,
            },
        };
        assert_eq!(
            parse_line(&encode_line(&event)).unwrap(),
            Line::Event(event)
        );
    }

    #[test]
    fn filter_holds_vips_and_snat_addresses() {
        let text = include_str!("../../cluster.toml.example");
        let view = config::parse(text, "t.toml")
            .unwrap()
            .node_view(Some("lb1"))
            .unwrap();
        let f = flow_filter(&view);
        assert_eq!(f.orig_dst, vec!["198.18.0.100".parse::<IpAddr>().unwrap()]);
        assert_eq!(f.reply_dst, vec!["198.18.1.100".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            view.sync.local_address,
            Some("198.18.1.11".parse().unwrap())
        );
        assert_eq!(view.sync.peer_address, Some("198.18.1.12".parse().unwrap()));
    }
}
