//! Least-connection scheduling (lc, wlc) on the nft backend: the servers' connection
//! counts, kept from conntrack's events, fed into the service's slots.
//!
//! The nft layout gives an lc/wlc service a fixed number of slots (32, or one per
//! server beyond 32) walked by a counter of its own, shared by the weights the
//! desired state holds (`dataplane::slots::least_conn_slots`). This module makes
//! those weights follow the load:
//!
//! - a thread ([`Feeder`]) subscribes to conntrack's events (new, update, destroy)
//!   and keeps, per server of each lc/wlc service, the load `a = active +
//!   inactive / 256` (IPVS's connection overhead, in connections: TCP ESTABLISHED is
//!   active, every other TCP state inactive, other protocols active) exact, event by
//!   event, and the connections that arrived ([`counts`]). A dump of the table sets
//!   the counts at start, when the plans name a new VIP, when events were lost
//!   (the socket's buffer overflowed: [`events_lost`] counts it, a warning says it)
//!   and every [`RESYNC`] (stretched to [`RESYNC_SHARE`] times the dump's duration),
//!   for the entries made before the subscription, which send no events;
//! - when a count changes, at most once per [`GAP`] (a burst of events makes one
//!   update), it fills the servers' gaps up to a common level ([`fill`]): with `A`
//!   the arrivals expected before the next update is in place (the next one, and
//!   those the arrival rate brings within [`HORIZON`]), the level `L` with
//!   `sum max(0, L * w - a) = A`, and each server's share `max(0, L * w - a)` (w: 1
//!   for lc, the weight for wlc; 0 while down or drained); only the services whose
//!   slots change are sent;
//! - lbd puts the shares in place of the weights of the service it hands the
//!   backend ([`LeastConn::planned`], [`LeastConn::feed`]), which applies the
//!   services sent only: some of their 32 slot elements change, nothing else.
//!
//! Where it differs from IPVS, which picks for each connection the server with the
//! least overhead at that moment: the picks between two updates follow the shares
//! of the last one (through the slots' resolution of 1/32), and an update takes
//! effect a few ms after the events that caused it. With events off
//! (`nf_conntrack_events = 0`) or no subscription, the counts come from a dump
//! every [`PERIOD`] (stretched to 10 times the dump's duration), as before events.

mod counts;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use dataplane::{DesiredState, Scheduler, Service};
use tokio::sync::{mpsc, watch};

use counts::{Counts, Vip};

/// How often the counts are taken from dumps without events (at least), and how
/// often the feeder looks at the plans while idle.
pub const PERIOD: Duration = Duration::from_millis(200);

/// Without events, the period is at least this many times the last dump's duration.
const DUMP_SHARE: u32 = 10;

/// With events, between two dumps that set the counts again (at least).
pub const RESYNC: Duration = Duration::from_secs(5);

/// With events, the time between dumps is at least this many times the last dump's
/// duration.
const RESYNC_SHARE: u32 = 50;

/// The least time between two updates of the weights.
pub const GAP: Duration = Duration::from_millis(10);

/// How long the weights of an update stay in place besides the next arrival (the
/// gap and the time to apply).
pub const HORIZON: Duration = Duration::from_millis(20);

/// The arrival rate's moving average: its time constant.
const RATE_TAU: Duration = Duration::from_secs(1);

/// An events read waits at most this long (the feeder polls first).
const READ_TIMEOUT: Duration = Duration::from_millis(100);

/// Events read at most before a flush is looked at.
const MAX_EVENTS: usize = 1 << 16;

/// The resolution of the shares handed to the backend (each server's share of this
/// total; the backend spreads them over its slots).
const SHARE_SCALE: f64 = 1_000_000.0;

/// New weights for some services: (the service as planned when its weights were
/// computed, a weight per backend of that plan).
pub type Update = Vec<(Service, Vec<u32>)>;

/// Whether the backend needs its `scheduler`'s weights fed (lc and wlc).
pub fn fed(scheduler: Scheduler) -> bool {
    matches!(scheduler, Scheduler::Lc | Scheduler::Wlc)
}

/// The level that fills the servers' gaps with `arrivals` connections, and each
/// server's share of them: `max(0, L * weights[i] - load[i])`, summing to
/// `arrivals` (all 0 when no weight is positive).
pub fn fill(weights: &[f64], load: &[f64], arrivals: f64) -> Vec<f64> {
    let mut order: Vec<usize> = (0..weights.len()).filter(|&i| weights[i] > 0.0).collect();
    if order.is_empty() {
        return vec![0.0; weights.len()];
    }
    // By the level at which each server starts to take connections.
    order.sort_by(|&a, &b| (load[a] / weights[a]).total_cmp(&(load[b] / weights[b])));
    let (mut w_sum, mut a_sum) = (0.0, 0.0);
    let mut level = 0.0;
    for (k, &i) in order.iter().enumerate() {
        w_sum += weights[i];
        a_sum += load[i];
        // The level if the servers so far take everything.
        level = (arrivals + a_sum) / w_sum;
        let next = order.get(k + 1).map(|&j| load[j] / weights[j]);
        if next.is_none_or(|n| level <= n) {
            break;
        }
    }
    (0..weights.len())
        .map(|i| (level * weights[i] - load[i]).max(0.0) * f64::from(u8::from(weights[i] > 0.0)))
        .collect()
}

/// One lc/wlc service's weights from its servers' loads and the arrivals expected:
/// the [`fill`] shares scaled to integers (a server with weight 0 stays at 0).
pub fn shares(s: &Service, load: &[f64], arrivals: f64) -> Vec<u32> {
    let weights: Vec<f64> = s
        .backends
        .iter()
        .map(|b| match (b.weight, s.scheduler) {
            (0, _) => 0.0,
            (_, Scheduler::Lc) => 1.0,
            (w, _) => f64::from(w),
        })
        .collect();
    let arrivals = arrivals.max(1.0);
    fill(&weights, load, arrivals)
        .iter()
        .map(|g| (g / arrivals * SHARE_SCALE).round() as u32)
        .collect()
}

/// The fed services as planned and the weights fed to them; owned by the daemon.
#[derive(Debug)]
pub struct LeastConn {
    /// The lc/wlc services as planned (health and overrides applied), by name.
    planned: BTreeMap<String, Service>,
    /// The weights last fed, by service (for the backends of its plan).
    fed: HashMap<String, Vec<u32>>,
    /// The planned services, to the feeder.
    services: watch::Sender<Arc<Vec<Service>>>,
}

impl LeastConn {
    /// Starts the [`Feeder`] thread, which sends its weights to `updates` and ends
    /// when this is dropped or nobody receives.
    pub fn start(updates: mpsc::UnboundedSender<Update>) -> std::io::Result<LeastConn> {
        let (services, watched) = watch::channel(Arc::new(Vec::new()));
        let feeder = Feeder {
            services: watched,
            updates,
        };
        thread::Builder::new()
            .name("least-conn".into())
            .spawn(move || feeder.run())?;
        Ok(LeastConn {
            planned: BTreeMap::new(),
            fed: HashMap::new(),
            services,
        })
    }

    /// After planning `names` (`None`: every service) into `state`: remembers their
    /// plans, drops the weights fed for a plan that changed, and puts the others
    /// into `state`.
    pub fn planned(&mut self, state: &mut Arc<DesiredState>, names: Option<&BTreeSet<String>>) {
        let mut changed = false;
        let now: Vec<&Service> = state
            .services
            .iter()
            .filter(|s| fed(s.scheduler) && names.is_none_or(|n| n.contains(&s.name)))
            .collect();
        match names {
            None => {
                let keep: HashSet<&str> = now.iter().map(|s| s.name.as_str()).collect();
                let before = self.planned.len();
                self.planned.retain(|n, _| keep.contains(n.as_str()));
                self.fed.retain(|n, _| keep.contains(n.as_str()));
                changed |= before != self.planned.len();
            }
            Some(names) => {
                for n in names {
                    if !now.iter().any(|s| &s.name == n) && self.planned.remove(n).is_some() {
                        self.fed.remove(n);
                        changed = true;
                    }
                }
            }
        }
        for s in now {
            if self.planned.get(&s.name) != Some(s) {
                self.fed.remove(&s.name);
                self.planned.insert(s.name.clone(), s.clone());
                changed = true;
            }
        }
        if changed {
            let list = self.planned.values().cloned().collect();
            self.services.send_replace(Arc::new(list));
        }
        let fed: Vec<String> = self.fed.keys().cloned().collect();
        self.put(state, &fed);
    }

    /// Weights from the feeder: keeps those for services still planned as they were
    /// counted, puts them into `state`, and names the services whose weights changed.
    /// Weights computed against a plan that changed since (a server drained or
    /// down while they were on their way) are dropped: the feeder has the new plan
    /// and sends its weights next.
    pub fn feed(&mut self, state: &mut Arc<DesiredState>, update: Update) -> BTreeSet<String> {
        let mut changed = BTreeSet::new();
        for (counted, weights) in update {
            if self.planned.get(&counted.name) != Some(&counted)
                || counted.backends.len() != weights.len()
                || self.fed.get(&counted.name) == Some(&weights)
            {
                continue;
            }
            self.fed.insert(counted.name.clone(), weights);
            changed.insert(counted.name);
        }
        let names: Vec<String> = changed.iter().cloned().collect();
        self.put(state, &names);
        changed
    }

    /// The fed weights of `names` into `state` (changed in place when they differ).
    fn put(&self, state: &mut Arc<DesiredState>, names: &[String]) {
        if names.is_empty() {
            return;
        }
        let differs = |s: &Service| {
            self.fed.get(&s.name).is_some_and(|w| {
                w.len() == s.backends.len() && s.backends.iter().zip(w).any(|(b, w)| b.weight != *w)
            })
        };
        let wanted: HashSet<&str> = names.iter().map(String::as_str).collect();
        if !state
            .services
            .iter()
            .any(|s| wanted.contains(s.name.as_str()) && differs(s))
        {
            return;
        }
        for s in &mut Arc::make_mut(state).services {
            if !wanted.contains(s.name.as_str()) || !differs(s) {
                continue;
            }
            if let Some(w) = self.fed.get(&s.name) {
                for (b, w) in s.backends.iter_mut().zip(w) {
                    b.weight = *w;
                }
            }
        }
    }
}

/// What the feeder keeps of a service between two updates.
#[derive(Debug)]
struct Fed {
    /// The slots per backend of the weights last sent (what the backend makes of
    /// them): weights that give the same slots are not sent.
    slots: Vec<u32>,
    /// Arrivals per second (moving average over [`RATE_TAU`]).
    rate: f64,
    /// The arrivals counted at `at`.
    arrived: u64,
    at: Instant,
}

/// How the feeder counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// From conntrack's events, with a dump now and then.
    Events,
    /// From dumps every [`PERIOD`] (events off: `nf_conntrack_events = 0`, or the
    /// subscription failed).
    Dumps,
}

/// The thread that counts and computes the weights.
struct Feeder {
    services: watch::Receiver<Arc<Vec<Service>>>,
    updates: mpsc::UnboundedSender<Update>,
}

/// What the feeder works with.
struct Run {
    services: Arc<Vec<Service>>,
    /// Services by (VIP, protocol): their indexes.
    by_vip: HashMap<Vip, Vec<usize>>,
    counts: Counts,
    fed: HashMap<String, Fed>,
    /// Services to compute at the next flush whatever their counts (new plans).
    all_dirty: bool,
    ct: Option<ctsync::Conntrack>,
    events: Option<ctsync::Events>,
    mode: Mode,
    /// When to dump next.
    resync_at: Instant,
    /// Between two dumps.
    resync_every: Duration,
    last_flush: Instant,
}

/// Whether conntrack makes events in this namespace (`nf_conntrack_events` is not 0;
/// unreadable: assumed on).
fn events_enabled() -> bool {
    std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_events")
        .map_or(true, |v| v.trim() != "0")
}

/// Waits up to `timeout` for `fd` to be readable.
fn readable(fd: std::os::fd::RawFd, timeout: Duration) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd, its count given.
    let rc = unsafe { libc::poll(&mut p, 1, ms) };
    rc > 0 && p.revents & (libc::POLLIN | libc::POLLERR) != 0
}

impl Feeder {
    fn run(mut self) {
        let now = Instant::now();
        let mut r = Run {
            services: Arc::new(Vec::new()),
            by_vip: HashMap::new(),
            counts: Counts::default(),
            fed: HashMap::new(),
            all_dirty: false,
            ct: None,
            events: None,
            mode: Mode::Events,
            resync_at: now,
            resync_every: RESYNC,
            last_flush: now,
        };
        loop {
            if self.updates.is_closed() {
                return;
            }
            match self.services.has_changed() {
                Err(_) => return,
                Ok(true) => {
                    let services = Arc::clone(&self.services.borrow_and_update());
                    r.planned(services);
                }
                Ok(false) => {}
            }
            if r.services.is_empty() {
                // Nothing to count: no socket, no subscription (the kernel makes no
                // events for nobody).
                r.events = None;
                r.ct = None;
                r.counts = Counts::default();
                r.fed.clear();
                thread::sleep(PERIOD);
                continue;
            }
            r.subscribe();
            if Instant::now() >= r.resync_at {
                r.resync();
            }
            r.wait_and_read();
            let now = Instant::now();
            if (r.counts.is_dirty() || r.all_dirty) && now >= r.last_flush + r.gap() {
                r.last_flush = now;
                let update = r.flush(now);
                if !update.is_empty() && self.updates.send(update).is_err() {
                    return;
                }
            }
        }
    }
}

impl Run {
    /// The least time between two updates.
    fn gap(&self) -> Duration {
        match self.mode {
            Mode::Events => GAP,
            Mode::Dumps => Duration::ZERO,
        }
    }

    /// New plans: index them; a new set of VIPs needs a dump.
    fn planned(&mut self, services: Arc<Vec<Service>>) {
        self.by_vip.clear();
        for (i, s) in services.iter().enumerate() {
            self.by_vip
                .entry((s.vip, s.protocol.number()))
                .or_default()
                .push(i);
        }
        let vips: HashSet<Vip> = self.by_vip.keys().copied().collect();
        if &vips != self.counts.vips() {
            self.resync_at = Instant::now();
        }
        self.fed
            .retain(|name, _| services.iter().any(|s| &s.name == name));
        // A plan that changed may have other backends: every service is computed
        // and sent again (the daemon drops what it already has).
        for f in self.fed.values_mut() {
            f.slots.clear();
        }
        self.all_dirty = true;
        self.services = services;
    }

    /// Subscribes to the events if not yet (and events are on): the counts then
    /// need a dump.
    fn subscribe(&mut self) {
        if self.events.is_some() || (self.mode == Mode::Dumps && Instant::now() < self.resync_at) {
            return;
        }
        if !events_enabled() {
            if self.mode == Mode::Events {
                tracing::info!(
                    "least-connection count: conntrack events are off (nf_conntrack_events = 0): counting by dumps every {} ms",
                    PERIOD.as_millis()
                );
            }
            self.mode = Mode::Dumps;
            return;
        }
        match ctsync::subscribe(ctsync::FlowFilter::all()).and_then(|mut e| {
            e.set_read_timeout(Some(READ_TIMEOUT))?;
            Ok(e)
        }) {
            Ok(e) => {
                self.events = Some(e);
                if self.mode == Mode::Dumps {
                    tracing::info!("least-connection count: from conntrack events again");
                }
                self.mode = Mode::Events;
                self.resync_at = Instant::now();
            }
            Err(e) => {
                if self.mode == Mode::Events {
                    tracing::warn!(error = %e, "least-connection count: no conntrack events, counting by dumps");
                }
                self.mode = Mode::Dumps;
            }
        }
    }

    /// Dumps the table and sets the counts from it.
    fn resync(&mut self) {
        let started = Instant::now();
        if self.ct.is_none() {
            self.ct = ctsync::Conntrack::open()
                .map_err(
                    |e| tracing::debug!(error = %e, "least-connection count: no conntrack socket"),
                )
                .ok();
        }
        let Some(ct) = self.ct.as_mut() else {
            self.resync_at = started + PERIOD;
            return;
        };
        let vips: HashSet<Vip> = self.by_vip.keys().copied().collect();
        let mut entries = Vec::new();
        let dumped = ct.dump_each(|e| {
            if vips.contains(&(e.orig.dst, e.orig.proto)) {
                entries.push(e);
            }
        });
        if let Err(e) = dumped {
            tracing::debug!(error = %e, "least-connection count: conntrack dump failed");
            self.ct = None;
            self.resync_at = started + PERIOD;
            return;
        }
        self.counts.resync(vips, &entries, self.mode == Mode::Dumps);
        let took = started.elapsed();
        tracing::debug!(
            connections = self.counts.connections(),
            took_ms = ctl::logging::ms(took),
            "least-connection count: set from a conntrack dump"
        );
        self.resync_every = match self.mode {
            Mode::Events => RESYNC.max(took * RESYNC_SHARE),
            Mode::Dumps => PERIOD.max(took * DUMP_SHARE),
        };
        self.resync_at = Instant::now() + self.resync_every;
    }

    /// Reads the events until a flush is due (or the next dump, or [`PERIOD`] to
    /// look at the plans); without events, sleeps until the next dump.
    fn wait_and_read(&mut self) {
        let now = Instant::now();
        let pending = self.counts.is_dirty() || self.all_dirty;
        let until = if pending {
            self.last_flush + self.gap()
        } else {
            (now + PERIOD).min(self.resync_at)
        };
        let Some(events) = self.events.as_mut() else {
            thread::sleep(until.saturating_duration_since(now));
            return;
        };
        if pending {
            // Coalesce: what arrives until the flush is due is read at once.
            thread::sleep(until.saturating_duration_since(now));
        } else if !readable(events.as_raw_fd(), until.saturating_duration_since(now)) {
            return;
        }
        // Everything queued now (one read takes up to 64 datagrams, an event each),
        // within a bound.
        for _ in 0..MAX_EVENTS {
            if events.queued() == 0 && !readable(events.as_raw_fd(), Duration::ZERO) {
                return;
            }
            match events.next() {
                Some(Ok(ev)) => self.counts.apply(ev.kind, &ev.entry),
                Some(Err(ctsync::Error::TimedOut)) | None => return,
                Some(Err(ctsync::Error::EventsLost)) => {
                    let n = EVENTS_LOST.fetch_add(1, Ordering::Relaxed) + 1;
                    tracing::warn!(
                        times = n,
                        "least-connection count: conntrack events lost (receive buffer overflow): counting again from a dump"
                    );
                    self.resync_at = Instant::now();
                    return;
                }
                Some(Err(e @ ctsync::Error::Decode(_))) => {
                    // The rest of that read is lost: counted again from a dump soon
                    // (not at once: a kernel that sends what cannot be read must not
                    // make a dump of every read).
                    tracing::debug!(error = %e, "least-connection count: an unreadable conntrack event");
                    self.resync_at = self.resync_at.min(Instant::now() + PERIOD);
                    return;
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "least-connection count: reading conntrack events failed: subscribing again");
                    self.events = None;
                    self.resync_at = Instant::now();
                    return;
                }
            }
        }
    }

    /// The weights of the services whose counts changed, for those whose slots
    /// change.
    fn flush(&mut self, now: Instant) -> Update {
        let dirty = self.counts.take_dirty();
        let mut todo: Vec<usize> = if std::mem::take(&mut self.all_dirty) {
            (0..self.services.len()).collect()
        } else {
            let mut v = Vec::new();
            for (vip, port) in dirty {
                let Some(candidates) = self.by_vip.get(&vip) else {
                    continue;
                };
                if let Some(&i) = candidates.iter().find(|&&i| {
                    let (lo, hi) = counts::ports(&self.services[i]);
                    (lo..=hi).contains(&port)
                }) {
                    v.push(i);
                }
            }
            v.sort_unstable();
            v.dedup();
            v
        };
        let horizon = match self.mode {
            Mode::Events => HORIZON,
            Mode::Dumps => self.resync_every,
        };
        let mut update = Vec::new();
        for i in todo.drain(..) {
            let s = &self.services[i];
            let (load, arrived) = self.counts.load(s);
            let f = self.fed.entry(s.name.clone()).or_insert_with(|| Fed {
                slots: Vec::new(),
                rate: 0.0,
                arrived,
                at: now,
            });
            let dt = now.saturating_duration_since(f.at).as_secs_f64();
            if dt > 0.0 {
                let n = arrived.saturating_sub(f.arrived) as f64;
                let a = 1.0 - (-dt / RATE_TAU.as_secs_f64()).exp();
                f.rate += a * (n / dt - f.rate);
            }
            f.arrived = arrived;
            f.at = now;
            // The connections expected before the next update is in place: the
            // next arrival (which brings the next update) and those of the horizon.
            let expected = 1.0 + f.rate * horizon.as_secs_f64();
            let weights = shares(s, &load, expected);
            let slots = dataplane::slots::exact_counts(
                &weights,
                dataplane::slots::least_conn_slot_count(weights.len()),
            );
            if slots != f.slots {
                f.slots = slots;
                update.push((s.clone(), weights));
            }
        }
        update
    }
}

/// Times conntrack events were lost (each followed by a dump).
pub fn events_lost() -> u64 {
    EVENTS_LOST.load(Ordering::Relaxed)
}

static EVENTS_LOST: AtomicU64 = AtomicU64::new(0);

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::{Backend, Forwarding, PortSpec, Protocol};

    fn service(scheduler: Scheduler, weights: &[u32]) -> Service {
        Service {
            name: "web".into(),
            vip: "198.18.0.100".parse().unwrap(),
            ports: PortSpec::Single(80),
            protocol: Protocol::Tcp,
            scheduler,
            backends: weights
                .iter()
                .enumerate()
                .map(|(i, &w)| Backend {
                    name: format!("srv{i}"),
                    addr: format!("198.18.1.{}", 10 + i).parse().unwrap(),
                    port: Some(80),
                    weight: w,
                })
                .collect(),
            forward: Forwarding::Nat,
            persistence: None,
        }
    }

    #[test]
    fn the_gaps_fill_up_to_one_level() {
        // 10 and 2 open, 4 arriving: all to the second (level 6 < 10).
        let g = fill(&[1.0, 1.0], &[10.0, 2.0], 4.0);
        assert_eq!(g, vec![0.0, 4.0]);
        // 10 arriving: the second reaches 10 after 8, the last 2 split.
        let g = fill(&[1.0, 1.0], &[10.0, 2.0], 10.0);
        assert_eq!(g, vec![1.0, 9.0]);
        // Weighted: 3:1 with nothing open splits 3:1.
        let g = fill(&[3.0, 1.0], &[0.0, 0.0], 8.0);
        assert_eq!(g, vec![6.0, 2.0]);
        // Weight 0 takes nothing, however idle.
        let g = fill(&[0.0, 1.0], &[0.0, 50.0], 2.0);
        assert_eq!(g, vec![0.0, 2.0]);
        assert_eq!(fill(&[0.0, 0.0], &[0.0, 0.0], 2.0), vec![0.0, 0.0]);
    }

    #[test]
    fn lc_ignores_weights_and_wlc_follows_them() {
        let lc = shares(&service(Scheduler::Lc, &[3, 1]), &[0.0, 0.0], 4.0);
        assert_eq!(lc[0], lc[1]);
        let wlc = shares(&service(Scheduler::Wlc, &[3, 1]), &[0.0, 0.0], 4.0);
        assert_eq!(wlc[0], 3 * wlc[1]);
        // A drained server stays out.
        let lc = shares(&service(Scheduler::Lc, &[0, 1]), &[0.0, 9.0], 4.0);
        assert_eq!(lc[0], 0);
    }

    #[test]
    fn fed_weights_replace_the_planned_ones_until_the_plan_changes() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let mut lc = LeastConn::start(tx).unwrap();
        let mut state = Arc::new(DesiredState {
            services: vec![service(Scheduler::Lc, &[1, 1])],
            snat: Vec::new(),
        });
        lc.planned(&mut state, None);
        assert_eq!(lc.services.borrow().len(), 1);
        let plan = service(Scheduler::Lc, &[1, 1]);
        let changed = lc.feed(&mut state, vec![(plan.clone(), vec![0, 7])]);
        assert_eq!(changed.len(), 1);
        assert_eq!(state.services[0].backends[1].weight, 7);
        // The same weights again change nothing.
        assert!(lc
            .feed(&mut state, vec![(plan.clone(), vec![0, 7])])
            .is_empty());
        // A replan of the same service keeps them in place.
        let names: BTreeSet<String> = ["web".to_owned()].into();
        Arc::make_mut(&mut state).services[0] = service(Scheduler::Lc, &[1, 1]);
        lc.planned(&mut state, Some(&names));
        assert_eq!(state.services[0].backends[1].weight, 7);
        // A server going down changes the plan: its old weights go.
        Arc::make_mut(&mut state).services[0] = service(Scheduler::Lc, &[1, 0]);
        lc.planned(&mut state, Some(&names));
        assert_eq!(state.services[0].backends[0].weight, 1);
        // Weights computed against the plan before (on their way while the server
        // went down) do not bring it back.
        assert!(lc
            .feed(&mut state, vec![(plan.clone(), vec![3, 5])])
            .is_empty());
        assert_eq!(state.services[0].backends[1].weight, 0);
        // Those of the plan now do.
        let now = service(Scheduler::Lc, &[1, 0]);
        assert_eq!(lc.feed(&mut state, vec![(now, vec![6, 0])]).len(), 1);
        assert_eq!(state.services[0].backends[0].weight, 6);
        // Weights for a service not planned are ignored.
        let mut api = service(Scheduler::Lc, &[1]);
        api.name = "api".into();
        assert!(lc.feed(&mut state, vec![(api, vec![1])]).is_empty());
    }
}
