//! lbd's Prometheus metrics (documented in docs/metrics.md, section "lbd").
//!
//! Two kinds: metrics the daemon loop sets as things happen (weights, health,
//! applies, prepares, the vrrpd connection), and metrics built when `/metrics` is
//! scraped: read from the kernel ([`KernelCollector`]: per-backend counters from the
//! dataplane, SNAT port usage from conntrack) and the per-backend series
//! ([`BackendCollector`]: weights and health from the plan, with the few values
//! health events leave). Per-backend series are not kept as Prometheus children:
//! at 10,000 services x 8 servers that was ~480,000 of them, hundreds of MB, and
//! rebuilding them on every plan was most of a reload's time.
//!
//! A scrape never waits long for the dataplane: the dataplane thread runs one job at
//! a time, and an apply of thousands of services can hold it for seconds, longer
//! than Prometheus waits for a scrape. So a scrape queues a read of the counters
//! (unless one is queued already), waits for it at most [`SCRAPE_COUNTERS_WAIT`],
//! and otherwise serves the last counters read, with their age in
//! `lbd_dataplane_counters_age_seconds`; the queued read refreshes them for the next
//! scrape when the dataplane gets to it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

use dataplane::{BackendCounters, Dataplane};
use health::RunnerCounters;

use crate::backend::DataplaneThread;
use crate::conntrack;
use crate::desired::ServicePlan;

/// How long a scrape waits for a read of the dataplane's counters before serving
/// the last ones read: well within Prometheus' shorter scrape timeouts (1 s and
/// less), beside the conntrack dump of the SNAT metrics.
pub const SCRAPE_COUNTERS_WAIT: Duration = Duration::from_millis(250);

/// The `address` label of a backend: `addr:port`, or the address alone when the
/// client's port is kept.
pub fn address_label(addr: IpAddr, port: Option<u16>) -> String {
    match port {
        Some(p) => std::net::SocketAddr::new(addr, p).to_string(),
        None => addr.to_string(),
    }
}

/// Shared between the daemon loop and the scrape: what to read at scrape time.
#[derive(Debug, Default)]
struct KernelSources {
    /// SNAT addresses and their available port counts.
    snat_capacity: Vec<(IpAddr, u32)>,
    /// The last counters read from the dataplane (by a scrape or a status)...
    counters: Vec<BackendCounters>,
    /// ...and when (`None`: never).
    counters_read_at: Option<Instant>,
    /// Reads of the counters that ended, with counters or without: what a scrape
    /// waits on.
    reads_ended: u64,
    /// A scrape's read is queued on the dataplane and has not ended.
    read_queued: bool,
    /// The plan's services (the daemon's own, shared): every planned backend has
    /// its series, those the kernel has no counters for yet count 0.
    planned: Arc<Vec<Arc<ServicePlan>>>,
    /// Health transitions by (service, backend, to); only backends that had one.
    transitions: HashMap<(String, String, String), u64>,
    /// Dampened rises by (service, backend); only backends that had one.
    dampened: HashMap<(String, String), u64>,
    /// Latest check duration (s) by service, then backend.
    last_duration: HashMap<Arc<str>, HashMap<Arc<str>, f64>>,
    /// Checked backends that left the plan (a reload removed them or their check):
    /// their transition and dampening counters stay exported, as counters do.
    retired: BTreeSet<(String, String)>,
}

impl KernelSources {
    /// A read of the counters ended; `None`: it failed, the last ones stay.
    fn read_ended(&mut self, counters: Option<Vec<BackendCounters>>) {
        if let Some(c) = counters {
            self.counters = c;
            self.counters_read_at = Some(Instant::now());
        }
        self.reads_ended += 1;
    }
}

/// The scrape-time sources, and the signal that a read of the counters ended.
#[derive(Debug, Default)]
struct Shared {
    sources: Mutex<KernelSources>,
    read_ended: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, KernelSources> {
        self.sources.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Where a scrape's backend counters come from (the dataplane thread; a stand-in
/// in tests).
pub trait CountersSource: Send + Sync {
    /// Queues a read of the counters, to be ended on another thread by
    /// [`CountersRead::done`] whenever the dataplane gets to it.
    fn request(&self, read: CountersRead);
}

/// A queued read of the backend counters. It ends when done, or when dropped
/// unfinished (the dataplane thread went away): then without counters.
#[derive(Debug)]
pub struct CountersRead {
    shared: Arc<Shared>,
    counters: Option<Vec<BackendCounters>>,
}

impl CountersRead {
    /// The counters read (`None`: the read failed).
    pub fn done(mut self, counters: Option<Vec<BackendCounters>>) {
        self.counters = counters;
    }
}

impl Drop for CountersRead {
    fn drop(&mut self) {
        let mut s = self.shared.lock();
        s.read_queued = false;
        s.read_ended(self.counters.take());
        drop(s);
        self.shared.read_ended.notify_all();
    }
}

impl CountersSource for DataplaneThread {
    fn request(&self, read: CountersRead) {
        // If the thread is gone, the job is dropped with `read` in it: the read ends.
        let _ = self.post(move |dp| match dp.counters() {
            Ok(c) => read.done(Some(c)),
            Err(err) => {
                tracing::debug!(%err, "backend counters unavailable");
                read.done(None);
            }
        });
    }
}

/// Every metric of lbd.
#[derive(Clone)]
pub struct Telemetry {
    registry: Registry,
    apply_duration: Histogram,
    apply_errors: IntCounter,
    least_conn_lost: IntCounter,
    check_duration: HistogramVec,
    vrrpd_connected: IntGauge,
    announce: [IntGauge; 5],
    config_differs: IntGauge,
    ip_forwarding: IntGaugeVec,
    ip_forwarding_needed: IntGaugeVec,
    prepares: IntCounterVec,
    prepare_duration: Histogram,
    last_apply: Gauge,
    checks: IntCounterVec,
    overruns: IntCounter,
    in_flight: IntGauge,
    targets: IntGauge,
    quorum_met: IntGaugeVec,
    priority_delta: IntGaugeVec,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

const BACKEND_LABELS: [&str; 3] = ["service", "backend", "address"];

fn must<T>(r: prometheus::Result<T>) -> T {
    // Names and labels are constants of this file: a failure is a bug found by the
    // unit test, never a run-time condition.
    match r {
        Ok(v) => v,
        Err(e) => panic!("lbd metric definition: {e}"),
    }
}

impl Telemetry {
    /// Creates and registers every metric, each series labelled
    /// `cluster="<cluster>"` (none if empty), beside `lbd_build_info` and the
    /// process metrics; `counters` (the dataplane thread) serves the backend
    /// counters at scrape time.
    pub fn new(cluster: &str, counters: Option<Box<dyn CountersSource>>) -> Telemetry {
        let registry = metrics::daemon_registry(metrics::DaemonInfo {
            prefix: "lbd",
            version: env!("CARGO_PKG_VERSION"),
            cluster,
        });
        let reg = |c: Box<dyn Collector>| must(registry.register(c));
        let apply_duration = must(Histogram::with_opts(
            HistogramOpts::new(
                "lbd_apply_duration_seconds",
                "Wall time of successful dataplane applies (one batch each).",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        ));
        reg(Box::new(apply_duration.clone()));
        let apply_errors = must(IntCounter::new(
            "lbd_apply_errors_total",
            "Dataplane applies the kernel refused or that failed (the previous state stays).",
        ));
        reg(Box::new(apply_errors.clone()));
        let least_conn_lost = must(IntCounter::new(
            "lbd_least_conn_events_lost_total",
            "Times the kernel dropped conntrack events the lc/wlc counting reads (each followed by a dump that counts again).",
        ));
        reg(Box::new(least_conn_lost.clone()));
        let last_apply = must(Gauge::new(
            "lbd_last_apply_timestamp_seconds",
            "Unix time of the last successful apply.",
        ));
        reg(Box::new(last_apply.clone()));
        let check_duration = must(HistogramVec::new(
            HistogramOpts::new(
                "lbd_health_check_duration_seconds",
                "Duration of health checks by check name (sampled: each server's latest result each second).",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            // By check, not by backend: a histogram per backend is 16 series each,
            // 160,000 at 10,000 backends, and a scrape then costs ~100 MB.
            &["check"],
        ));
        reg(Box::new(check_duration.clone()));
        let vrrpd_connected = must(IntGauge::new(
            "lbd_vrrpd_connected",
            "1 while lbd reaches vrrpd's control socket, else 0.",
        ));
        reg(Box::new(vrrpd_connected.clone()));
        // Active-active announcements (docs/active-active.md); 0 in active-backup.
        let announce = [
            ("lbd_announce_vips_wanted", "VIPs this node wants announced (services that can take traffic; 0 while drained)."),
            ("lbd_announce_vips_announced", "VIPs the routing daemon announced at lbd's last read-back."),
            ("lbd_announce_peers_established", "BGP sessions of the routing daemon in state Established at lbd's last read-back."),
            ("lbd_announce_drained", "1 while the operator drained this node's announcements (announce.drain), else 0."),
            ("lbd_announce_daemon_up", "1 while lbd's last exchange with the routing daemon succeeded, 0 when it failed or in active-backup mode."),
        ]
        .map(|(name, help)| {
            let g = must(IntGauge::new(name, help));
            reg(Box::new(g.clone()));
            g
        });
        let config_differs = must(IntGauge::new(
            "lbd_config_differs_from_vrrpd",
            "1 while vrrpd runs a configuration file other than lbd's (their fingerprints differ), else 0.",
        ));
        reg(Box::new(config_differs.clone()));
        let ip_forwarding = must(IntGaugeVec::new(
            Opts::new(
                "lbd_ip_forwarding",
                "1 while the node forwards the family's packets (net.ipv4.ip_forward, net.ipv6.conf.all.forwarding), 0 when off or unreadable; read every second.",
            ),
            &["family"],
        ));
        reg(Box::new(ip_forwarding.clone()));
        let ip_forwarding_needed = must(IntGaugeVec::new(
            Opts::new(
                "lbd_ip_forwarding_needed",
                "Services with NAT forwarding and SNAT rules of the family: while above 0 with lbd_ip_forwarding 0, they get no answers.",
            ),
            &["family"],
        ));
        reg(Box::new(ip_forwarding_needed.clone()));
        for family in ["ipv4", "ipv6"] {
            ip_forwarding.with_label_values(&[family]);
            ip_forwarding_needed.with_label_values(&[family]);
        }
        let prepares = must(IntCounterVec::new(
            Opts::new(
                "lbd_prepare_total",
                "Takeover prepare requests from vrrpd, by result (ok, error).",
            ),
            &["result"],
        ));
        reg(Box::new(prepares.clone()));
        for r in ["ok", "error"] {
            prepares.with_label_values(&[r]);
        }
        let prepare_duration = must(Histogram::with_opts(
            HistogramOpts::new(
                "lbd_prepare_duration_seconds",
                "Time lbd took to answer a prepare request.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ]),
        ));
        reg(Box::new(prepare_duration.clone()));
        let checks = must(IntCounterVec::new(
            Opts::new(
                "lbd_health_checks_total",
                "Health checks finished, by result (ok, failed).",
            ),
            &["result"],
        ));
        reg(Box::new(checks.clone()));
        for r in ["ok", "failed"] {
            checks.with_label_values(&[r]);
        }
        let overruns = must(IntCounter::new(
            "lbd_health_check_overruns_total",
            "Checks not started because the previous one of the same server was still running.",
        ));
        reg(Box::new(overruns.clone()));
        let in_flight = must(IntGauge::new(
            "lbd_health_checks_in_flight",
            "Checks started and not finished.",
        ));
        reg(Box::new(in_flight.clone()));
        let targets = must(IntGauge::new(
            "lbd_health_targets",
            "Servers with a health check.",
        ));
        reg(Box::new(targets.clone()));
        let quorum_met = must(IntGaugeVec::new(
            Opts::new(
                "lbd_service_quorum_met",
                "1 while a service with a quorum has at least that many servers up (weight above 0), else 0.",
            ),
            &["service"],
        ));
        reg(Box::new(quorum_met.clone()));
        let priority_delta = must(IntGaugeVec::new(
            Opts::new(
                "lbd_priority_track_delta",
                "Sum of the priority deltas lbd asks vrrpd to apply to a sync group (lost quorums).",
            ),
            &["group"],
        ));
        reg(Box::new(priority_delta.clone()));
        let shared = Arc::new(Shared::default());
        reg(Box::new(KernelCollector::new(
            counters,
            Arc::clone(&shared),
        )));
        reg(Box::new(BackendCollector {
            shared: Arc::clone(&shared),
            templates: BackendMetrics::new(),
        }));
        Telemetry {
            registry,
            apply_duration,
            apply_errors,
            least_conn_lost,
            check_duration,
            vrrpd_connected,
            announce,
            config_differs,
            ip_forwarding,
            ip_forwarding_needed,
            prepares,
            prepare_duration,
            last_apply,
            checks,
            overruns,
            in_flight,
            targets,
            quorum_met,
            priority_delta,
            shared,
        }
    }

    /// The health runner's counters now, and as last exported (`before`).
    pub fn health_runner(&self, now: &RunnerCounters, before: &RunnerCounters, targets: usize) {
        let (n, b) = (&now.scheduler, &before.scheduler);
        self.checks
            .with_label_values(&["ok"])
            .inc_by(n.checks_ok.saturating_sub(b.checks_ok));
        self.checks
            .with_label_values(&["failed"])
            .inc_by(n.checks_failed.saturating_sub(b.checks_failed));
        self.overruns.inc_by(n.overruns.saturating_sub(b.overruns));
        self.in_flight
            .set(i64::try_from(now.pending).unwrap_or(i64::MAX));
        self.targets.set(i64::try_from(targets).unwrap_or(i64::MAX));
    }

    /// After a reload: the servers of `services` (all: `None`) lose their
    /// latest-duration series; those still checked reappear at the next sample,
    /// within a second.
    pub fn checks_reconfigured(&self, services: Option<&BTreeSet<String>>) {
        let mut sources = self.lock();
        match services {
            None => sources.last_duration.clear(),
            Some(names) => {
                for name in names {
                    sources.last_duration.remove(name.as_str());
                }
            }
        }
    }

    /// A flapping backend held down by dampening.
    pub fn dampened(&self, service: &str, server: &str) {
        *self
            .lock()
            .dampened
            .entry((service.to_owned(), server.to_owned()))
            .or_default() += 1;
    }

    /// Serves the control socket's connection counters (`lbd_control_*`).
    pub fn control_socket(&self, stats: std::sync::Arc<ctl::ServerStats>) {
        match ctl::StatsCollector::new("lbd", stats) {
            // Registered once per process; a second registration is a harmless no-op.
            Ok(c) => drop(self.registry.register(Box::new(c))),
            Err(e) => tracing::warn!(error = %e, "control socket metrics unavailable"),
        }
    }

    /// The registry to serve.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Weights and health of every planned backend (replacing the previous set,
    /// shared, not copied); the health series of every checked backend and check
    /// exist from then on, at 0 until something happens (values already there are
    /// kept).
    pub fn plan(&self, services: &Arc<Vec<Arc<ServicePlan>>>) {
        self.quorum_met.reset();
        self.priority_delta.reset();
        for s in services.iter() {
            let Some(q) = &s.quorum else { continue };
            self.quorum_met
                .with_label_values(&[&s.name])
                .set(i64::from(q.met));
            if let Some(g) = &q.group {
                let delta = if q.met {
                    0
                } else {
                    i64::from(q.priority_delta)
                };
                self.priority_delta.with_label_values(&[g]).add(delta);
            }
        }
        let mut sources = self.lock();
        if Arc::ptr_eq(&sources.planned, services) {
            return;
        }
        // Services the last plan did not have as they are now (a plan changes few).
        let fresh: Vec<&Arc<ServicePlan>> = services
            .iter()
            .enumerate()
            .filter(|(i, s)| !sources.planned.get(*i).is_some_and(|o| Arc::ptr_eq(o, s)))
            .map(|(_, s)| s)
            .collect();
        let checks: HashSet<&str> = fresh
            .iter()
            .flat_map(|s| s.servers.iter().filter_map(|b| b.check.as_deref()))
            .collect();
        for check in checks {
            self.check_duration.with_label_values(&[check]);
        }
        let left = checked_backends_gone(&sources.planned, services);
        sources.retired.extend(left);
        sources.planned = Arc::clone(services);
    }

    /// SNAT addresses and their capacities, for the scrape.
    pub fn snat_capacity(&self, capacity: Vec<(IpAddr, u32)>) {
        self.lock().snat_capacity = capacity;
    }

    /// The SNAT addresses' port use now, from the conntrack table (blocking: a dump
    /// of the table; call it off the daemon's loop).
    pub fn snat_usage(&self) -> Result<Vec<conntrack::SnatUsage>, ctsync::Error> {
        let capacity = self.lock().snat_capacity.clone();
        conntrack::read_usage(&capacity)
    }

    /// Counters just read by the daemon (status): a scrape waiting for a read
    /// serves them, and later scrapes while the dataplane is busy.
    pub fn counters(&self, counters: Vec<BackendCounters>) {
        self.lock().read_ended(Some(counters));
        self.shared.read_ended.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, KernelSources> {
        self.shared.lock()
    }

    /// A successful apply.
    pub fn applied(&self, duration: Duration, unix_s: f64) {
        self.apply_duration.observe(duration.as_secs_f64());
        self.last_apply.set(unix_s);
    }

    /// A failed apply.
    pub fn apply_failed(&self) {
        self.apply_errors.inc();
    }

    /// A health check result of `service`/`server` (checked by `check`) that took `duration`.
    /// The names are kept shared (those of the health targets: 80,000 checked
    /// servers' names are not copied once more).
    pub fn check_done(
        &self,
        service: &Arc<str>,
        server: &Arc<str>,
        check: &str,
        duration: Duration,
    ) {
        let seconds = duration.as_secs_f64();
        {
            // Each second for every checked backend: no key built once it has one.
            let mut sources = self.lock();
            let known = sources.last_duration.get_mut(&**service);
            match known.and_then(|m| m.get_mut(&**server)) {
                Some(v) => *v = seconds,
                None => {
                    sources
                        .last_duration
                        .entry(Arc::clone(service))
                        .or_default()
                        .insert(Arc::clone(server), seconds);
                }
            }
        }
        self.check_duration
            .with_label_values(&[check])
            .observe(duration.as_secs_f64());
    }

    /// A health transition to `to` ("up" or "down").
    pub fn transition(&self, service: &str, server: &str, to: &str) {
        *self
            .lock()
            .transitions
            .entry((service.to_owned(), server.to_owned(), to.to_owned()))
            .or_default() += 1;
    }

    /// Active-active: the announcer's last state (wanted, announced, established
    /// peers, drained, daemon reachable).
    pub fn announce(
        &self,
        wanted: usize,
        announced: usize,
        established: usize,
        drained: bool,
        up: bool,
    ) {
        let values = [
            wanted as i64,
            announced as i64,
            established as i64,
            i64::from(drained),
            i64::from(up),
        ];
        for (g, v) in self.announce.iter().zip(values) {
            g.set(v);
        }
    }

    /// Whether vrrpd is reachable.
    pub fn vrrpd_connected(&self, connected: bool) {
        self.vrrpd_connected.set(i64::from(connected));
    }

    /// Whether vrrpd runs another configuration than lbd.
    pub fn config_differs(&self, differs: bool) {
        self.config_differs.set(i64::from(differs));
    }

    /// IP forwarding of `family` (`ipv4`, `ipv6`) and how many services and SNAT
    /// rules need it.
    pub fn forwarding(&self, family: &str, enabled: bool, needed: usize) {
        self.ip_forwarding
            .with_label_values(&[family])
            .set(i64::from(enabled));
        self.ip_forwarding_needed
            .with_label_values(&[family])
            .set(needed as i64);
    }

    /// The lc/wlc counting's lost conntrack events: `total` since lbd started.
    pub fn least_conn_events_lost(&self, total: u64) {
        self.least_conn_lost
            .inc_by(total.saturating_sub(self.least_conn_lost.get()));
    }

    /// A prepare answered.
    pub fn prepared(&self, ok: bool, duration: Duration) {
        self.prepares
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
        self.prepare_duration.observe(duration.as_secs_f64());
    }
}

/// Reads the kernel when scraped: per-backend counters and SNAT port usage.
struct KernelCollector {
    source: Option<Box<dyn CountersSource>>,
    shared: Arc<Shared>,
    templates: KernelMetrics,
}

/// The scrape-time metrics; built fresh on every scrape so that they hold exactly
/// what the kernel holds then.
struct KernelMetrics {
    connections: IntCounterVec,
    packets: IntCounterVec,
    bytes: IntCounterVec,
    ports_in_use: IntGaugeVec,
    ports_available: IntGaugeVec,
    utilization: GaugeVec,
    counters_age: Gauge,
}

impl KernelMetrics {
    fn new() -> KernelMetrics {
        KernelMetrics {
            connections: must(IntCounterVec::new(
                Opts::new(
                    "lbd_backend_connections_total",
                    "New connections sent to the backend (DNAT-map hits of its slots since they were added).",
                ),
                &BACKEND_LABELS,
            )),
            packets: must(IntCounterVec::new(
                Opts::new(
                    "lbd_backend_packets_total",
                    "Packets of the backend's connections, both directions (single-port services).",
                ),
                &BACKEND_LABELS,
            )),
            bytes: must(IntCounterVec::new(
                Opts::new(
                    "lbd_backend_bytes_total",
                    "Bytes of the backend's connections, both directions (single-port services).",
                ),
                &BACKEND_LABELS,
            )),
            ports_in_use: must(IntGaugeVec::new(
                Opts::new(
                    "lbd_snat_ports_in_use",
                    "Distinct (protocol, port) pairs of tracked connections source-NATed to the address.",
                ),
                &["address"],
            )),
            ports_available: must(IntGaugeVec::new(
                Opts::new(
                    "lbd_snat_ports_available",
                    "Source ports the SNAT rules let the address use.",
                ),
                &["address"],
            )),
            utilization: must(GaugeVec::new(
                Opts::new(
                    "lbd_snat_port_utilization_ratio",
                    "lbd_snat_ports_in_use / lbd_snat_ports_available.",
                ),
                &["address"],
            )),
            counters_age: must(Gauge::new(
                "lbd_dataplane_counters_age_seconds",
                "Age of the backend counters this scrape shows (+Inf before the first read): a scrape waits at most 0.25 s for the dataplane, then shows the last counters read.",
            )),
        }
    }

    fn families(&self) -> Vec<MetricFamily> {
        [
            self.connections.collect(),
            self.packets.collect(),
            self.bytes.collect(),
            self.ports_in_use.collect(),
            self.ports_available.collect(),
            self.utilization.collect(),
            self.counters_age.collect(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

impl KernelCollector {
    fn new(source: Option<Box<dyn CountersSource>>, shared: Arc<Shared>) -> Self {
        KernelCollector {
            source,
            shared,
            templates: KernelMetrics::new(),
        }
    }

    /// Queues a read of the counters unless one is queued already (a busy
    /// dataplane gets one read, however many scrapes come), and waits at most
    /// [`SCRAPE_COUNTERS_WAIT`] for a read to end.
    fn refresh_counters(&self) {
        let Some(source) = &self.source else {
            return;
        };
        let mut s = self.shared.lock();
        let seen = s.reads_ended;
        if !s.read_queued {
            s.read_queued = true;
            drop(s);
            // Unlocked: the read may end at once, on this thread.
            source.request(CountersRead {
                shared: Arc::clone(&self.shared),
                counters: None,
            });
            s = self.shared.lock();
        }
        let _ = self
            .shared
            .read_ended
            .wait_timeout_while(s, SCRAPE_COUNTERS_WAIT, |s| s.reads_ended == seen)
            .unwrap_or_else(PoisonError::into_inner);
    }
}

impl Collector for KernelCollector {
    fn desc(&self) -> Vec<&Desc> {
        let t = &self.templates;
        [
            t.connections.desc(),
            t.packets.desc(),
            t.bytes.desc(),
            t.ports_in_use.desc(),
            t.ports_available.desc(),
            t.utilization.desc(),
            t.counters_age.desc(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.refresh_counters();
        let (counters, read_at, capacity, planned) = {
            let s = self.shared.lock();
            (
                s.counters.clone(),
                s.counters_read_at,
                s.snat_capacity.clone(),
                Arc::clone(&s.planned),
            )
        };
        let m = KernelMetrics::new();
        m.counters_age
            .set(read_at.map_or(f64::INFINITY, |at| at.elapsed().as_secs_f64()));
        for s in planned.iter() {
            for b in &s.servers {
                let addr = address_label(b.address, b.port);
                let labels = [s.name.as_str(), &*b.name, addr.as_str()];
                m.connections.with_label_values(&labels);
                if b.port.is_some() {
                    m.packets.with_label_values(&labels);
                    m.bytes.with_label_values(&labels);
                }
            }
        }
        for c in &counters {
            let addr = address_label(c.addr, c.port);
            let labels = [c.service.as_str(), c.backend.as_str(), addr.as_str()];
            m.connections
                .with_label_values(&labels)
                .inc_by(c.connections);
            if let Some(p) = c.packets {
                m.packets.with_label_values(&labels).inc_by(p);
            }
            if let Some(b) = c.bytes {
                m.bytes.with_label_values(&labels).inc_by(b);
            }
        }
        match conntrack::read_usage(&capacity) {
            Ok(usage) => {
                for u in usage {
                    let a = u.address.to_string();
                    m.ports_in_use
                        .with_label_values(&[&a])
                        .set(i64::try_from(u.ports_in_use).unwrap_or(i64::MAX));
                    m.ports_available
                        .with_label_values(&[&a])
                        .set(i64::from(u.ports_available));
                    m.utilization.with_label_values(&[&a]).set(u.utilization());
                }
            }
            Err(err) => {
                tracing::debug!(%err, "SNAT port usage unavailable (conntrack dump)");
            }
        }
        m.families()
    }
}

/// The checked backends of `old` that `new` does not check (by service and
/// server name; a map, not a search per service).
fn checked_backends_gone(
    old: &[Arc<ServicePlan>],
    new: &[Arc<ServicePlan>],
) -> Vec<(String, String)> {
    // Services at the same place and unchanged (shared) keep their backends.
    let changed: Vec<&ServicePlan> = old
        .iter()
        .enumerate()
        .filter(|(i, o)| !new.get(*i).is_some_and(|n| Arc::ptr_eq(o, n)))
        .map(|(_, o)| o.as_ref())
        .collect();
    if changed.is_empty() {
        return Vec::new();
    }
    let now: HashMap<&str, &ServicePlan> =
        new.iter().map(|s| (s.name.as_str(), s.as_ref())).collect();
    let mut gone = Vec::new();
    for o in changed {
        let kept = now.get(o.name.as_str());
        for b in o.servers.iter().filter(|b| b.check.is_some()) {
            let checked = kept.is_some_and(|n| {
                n.servers
                    .iter()
                    .any(|x| x.name == b.name && x.check.is_some())
            });
            if !checked {
                gone.push((o.name.clone(), b.name.to_string()));
            }
        }
    }
    gone
}

/// The per-backend series, built when scraped from the plan and the values health
/// events left ([`KernelSources`]).
struct BackendCollector {
    shared: Arc<Shared>,
    templates: BackendMetrics,
}

/// The per-backend families; built fresh on every scrape.
struct BackendMetrics {
    weight: GaugeVec,
    up: GaugeVec,
    check_last_duration: GaugeVec,
    transitions: IntCounterVec,
    dampened: IntCounterVec,
}

impl BackendMetrics {
    fn new() -> BackendMetrics {
        BackendMetrics {
            weight: must(GaugeVec::new(
                Opts::new(
                    "lbd_backend_weight",
                    "Weight given to the dataplane for a backend (0 while its health check says down).",
                ),
                &BACKEND_LABELS,
            )),
            up: must(GaugeVec::new(
                Opts::new(
                    "lbd_backend_up",
                    "1 if the backend's health check says up (or it has none), 0 if down.",
                ),
                &BACKEND_LABELS,
            )),
            check_last_duration: must(GaugeVec::new(
                Opts::new(
                    "lbd_health_check_last_duration_seconds",
                    "Duration of the backend's latest health check.",
                ),
                &["service", "backend"],
            )),
            transitions: must(IntCounterVec::new(
                Opts::new(
                    "lbd_health_transitions_total",
                    "Health state changes of a backend.",
                ),
                &["service", "backend", "to"],
            )),
            dampened: must(IntCounterVec::new(
                Opts::new(
                    "lbd_health_dampened_total",
                    "Times a flapping backend passed its rise count but was held down by flap dampening.",
                ),
                &["service", "backend"],
            )),
        }
    }

    fn families(&self) -> Vec<MetricFamily> {
        [
            self.weight.collect(),
            self.up.collect(),
            self.check_last_duration.collect(),
            self.transitions.collect(),
            self.dampened.collect(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

impl Collector for BackendCollector {
    fn desc(&self) -> Vec<&Desc> {
        let t = &self.templates;
        [
            t.weight.desc(),
            t.up.desc(),
            t.check_last_duration.desc(),
            t.transitions.desc(),
            t.dampened.desc(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let m = BackendMetrics::new();
        let planned = {
            let s = self.shared.lock();
            // Values first; then the plan adds the series still at 0.
            for ((service, backend, to), n) in &s.transitions {
                m.transitions
                    .with_label_values(&[service, backend, to])
                    .inc_by(*n);
            }
            for ((service, backend), n) in &s.dampened {
                m.dampened.with_label_values(&[service, backend]).inc_by(*n);
            }
            for (service, backend) in &s.retired {
                for to in ["up", "down"] {
                    m.transitions.with_label_values(&[service, backend, to]);
                }
                m.dampened.with_label_values(&[service, backend]);
            }
            for (service, backends) in &s.last_duration {
                for (backend, v) in backends {
                    m.check_last_duration
                        .with_label_values(&[service, backend])
                        .set(*v);
                }
            }
            Arc::clone(&s.planned)
        };
        for s in planned.iter() {
            for b in &s.servers {
                let addr = address_label(b.address, b.port);
                let labels = [s.name.as_str(), &*b.name, addr.as_str()];
                m.weight
                    .with_label_values(&labels)
                    .set(f64::from(b.effective_weight));
                m.up.with_label_values(&labels)
                    .set(if b.health.is_up() { 1.0 } else { 0.0 });
                if b.check.is_some() {
                    let backend = [s.name.as_str(), &*b.name];
                    for to in ["up", "down"] {
                        m.transitions
                            .with_label_values(&[s.name.as_str(), &*b.name, to]);
                    }
                    m.dampened.with_label_values(&backend);
                    m.check_last_duration.with_label_values(&backend);
                }
            }
        }
        m.families()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Encoder, TextEncoder};

    fn scrape(t: &Telemetry) -> String {
        let mut body = Vec::new();
        TextEncoder::new()
            .encode(&t.registry().gather(), &mut body)
            .unwrap();
        String::from_utf8(body).unwrap()
    }

    /// The value of the series `series` (name and labels) in a scrape.
    fn sample(text: &str, series: &str) -> f64 {
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"));
        match line {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap(),
        }
    }

    const SRV1_CONNECTIONS: &str =
        r#"lbd_backend_connections_total{address="198.18.1.21:80",backend="srv1",service="web"}"#;
    const AGE: &str = "lbd_dataplane_counters_age_seconds";

    fn srv1(connections: u64) -> Vec<BackendCounters> {
        vec![BackendCounters {
            service: "web".into(),
            backend: "srv1".into(),
            addr: "198.18.1.21".parse().unwrap(),
            port: Some(80),
            connections,
            packets: None,
            bytes: None,
        }]
    }

    /// A dataplane busy with something else: it keeps every read queued until the
    /// test ends it.
    #[derive(Clone, Default)]
    struct Busy {
        queued: Arc<Mutex<Vec<CountersRead>>>,
        requests: Arc<Mutex<usize>>,
    }

    impl CountersSource for Busy {
        fn request(&self, read: CountersRead) {
            *self.requests.lock().unwrap() += 1;
            self.queued.lock().unwrap().push(read);
        }
    }

    impl Busy {
        fn requests(&self) -> usize {
            *self.requests.lock().unwrap()
        }
        fn answer(&self, counters: Vec<BackendCounters>) {
            let read = self.queued.lock().unwrap().pop().expect("a queued read");
            read.done(Some(counters));
        }
    }

    /// A dataplane with nothing else to do: it reads at once.
    struct Idle(u64);

    impl CountersSource for Idle {
        fn request(&self, read: CountersRead) {
            read.done(Some(srv1(self.0)));
        }
    }

    #[test]
    fn a_scrape_while_the_dataplane_is_busy_serves_the_last_counters_with_their_age() {
        let busy = Busy::default();
        let t = Telemetry::new("", Some(Box::new(busy.clone())));
        // Nothing read yet: no counters, and an age that says so.
        let text = scrape(&t);
        assert_eq!(sample(&text, AGE), f64::INFINITY, "{text}");
        assert!(!text.contains(SRV1_CONNECTIONS), "{text}");
        assert_eq!(busy.requests(), 1);

        // A status read the counters; the scrape's read is still queued.
        t.counters(srv1(7));
        let started = Instant::now();
        let text = scrape(&t);
        let took = started.elapsed();
        assert_eq!(sample(&text, SRV1_CONNECTIONS), 7.0, "{text}");
        // It waited for the dataplane, at most the bound, then showed how old the
        // counters are: at least the time it waited.
        let age = sample(&text, AGE);
        assert!(age >= SCRAPE_COUNTERS_WAIT.as_secs_f64(), "age {age}");
        assert!(took < 4 * SCRAPE_COUNTERS_WAIT, "the scrape took {took:?}");
        // However many scrapes come, the busy dataplane has one read queued.
        scrape(&t);
        assert_eq!(busy.requests(), 1);

        // The dataplane gets to the read: the next scrape shows its counters.
        busy.answer(srv1(9));
        let text = scrape(&t);
        assert_eq!(sample(&text, SRV1_CONNECTIONS), 9.0, "{text}");
        assert_eq!(busy.requests(), 2);
    }

    #[test]
    fn a_scrape_of_an_idle_dataplane_serves_counters_read_for_it() {
        let t = Telemetry::new("", Some(Box::new(Idle(11))));
        t.counters(srv1(3));
        let text = scrape(&t);
        assert_eq!(sample(&text, SRV1_CONNECTIONS), 11.0, "{text}");
        // Read for this scrape, not after a wait.
        let age = sample(&text, AGE);
        assert!(age < SCRAPE_COUNTERS_WAIT.as_secs_f64(), "age {age}");
    }

    #[test]
    fn a_read_dropped_unfinished_ends_the_wait_without_counters() {
        // The dataplane thread is gone: the job and the read in it are dropped.
        #[derive(Clone, Default)]
        struct Gone(Arc<Mutex<usize>>);
        impl CountersSource for Gone {
            fn request(&self, read: CountersRead) {
                *self.0.lock().unwrap() += 1;
                drop(read);
            }
        }
        let gone = Gone::default();
        let t = Telemetry::new("", Some(Box::new(gone.clone())));
        t.counters(srv1(5));
        let text = scrape(&t);
        assert_eq!(sample(&text, SRV1_CONNECTIONS), 5.0, "{text}");
        // The scrape did not wait out the bound for a read that had ended.
        let age = sample(&text, AGE);
        assert!(age < SCRAPE_COUNTERS_WAIT.as_secs_f64(), "age {age}");
        // The next scrape asks again: the dropped read is not left queued.
        scrape(&t);
        assert_eq!(*gone.0.lock().unwrap(), 2);
    }

    #[test]
    fn every_metric_registers_and_renders() {
        let t = Telemetry::new("", None);
        t.counters(vec![BackendCounters {
            service: "web".into(),
            backend: "srv1".into(),
            addr: "198.18.1.21".parse().unwrap(),
            port: Some(80),
            connections: 7,
            packets: Some(30),
            bytes: None,
        }]);
        t.applied(Duration::from_millis(3), 1.0);
        t.apply_failed();
        t.transition("web", "srv1", "down");
        t.check_done(
            &"web".into(),
            &"srv1".into(),
            "web-http",
            Duration::from_millis(2),
        );
        t.vrrpd_connected(true);
        t.prepared(true, Duration::from_millis(1));
        let mut counters = RunnerCounters::default();
        counters.scheduler.checks_ok = 5;
        counters.scheduler.checks_failed = 2;
        counters.pending = 3;
        t.health_runner(&counters, &RunnerCounters::default(), 4);
        let mut later = counters;
        later.scheduler.checks_ok = 9;
        t.health_runner(&later, &counters, 4);
        t.dampened("web", "srv2");
        t.forwarding("ipv4", true, 2);
        t.least_conn_events_lost(2);
        t.least_conn_events_lost(3);
        t.least_conn_events_lost(3);
        let view = config::parse(include_str!("../../cluster.toml.example"), "t.toml")
            .unwrap()
            .node_view(Some("lb1"))
            .unwrap();
        let plan = crate::desired::plan(
            &view,
            |_, server| {
                if server == "srv2" {
                    crate::desired::ServerHealth::Down
                } else {
                    crate::desired::ServerHealth::Up
                }
            },
            dataplane::BackendKind::Nft.capabilities(),
        );
        t.plan(&plan.services);
        let text = scrape(&t);
        for line in [
            r#"lbd_backend_connections_total{address="198.18.1.21:80",backend="srv1",service="web"} 7"#,
            r#"lbd_backend_packets_total{address="198.18.1.21:80",backend="srv1",service="web"} 30"#,
            "lbd_apply_errors_total 1",
            "lbd_least_conn_events_lost_total 3",
            "lbd_apply_duration_seconds_count 1",
            r#"lbd_health_transitions_total{backend="srv1",service="web",to="down"} 1"#,
            "lbd_vrrpd_connected 1",
            r#"lbd_prepare_total{result="ok"} 1"#,
            r#"lbd_health_checks_total{result="ok"} 9"#,
            r#"lbd_health_checks_total{result="failed"} 2"#,
            "lbd_health_checks_in_flight 3",
            "lbd_health_targets 4",
            r#"lbd_health_check_duration_seconds_count{check="web-http"} 1"#,
            r#"lbd_health_check_last_duration_seconds{backend="srv1",service="web"} 0.002"#,
            r#"lbd_health_dampened_total{backend="srv2",service="web"} 1"#,
            r#"lbd_ip_forwarding{family="ipv4"} 1"#,
            r#"lbd_ip_forwarding_needed{family="ipv4"} 2"#,
            r#"lbd_ip_forwarding{family="ipv6"} 0"#,
            // From the plan, at scrape time.
            r#"lbd_backend_weight{address="198.18.1.21:80",backend="srv1",service="web"} 1"#,
            r#"lbd_backend_up{address="198.18.1.21:80",backend="srv1",service="web"} 1"#,
            r#"lbd_backend_weight{address="198.18.1.22:80",backend="srv2",service="web"} 0"#,
            r#"lbd_backend_up{address="198.18.1.22:80",backend="srv2",service="web"} 0"#,
            r#"lbd_health_transitions_total{backend="srv2",service="web",to="up"} 0"#,
            r#"lbd_health_dampened_total{backend="srv1",service="web"} 0"#,
            r#"lbd_health_check_last_duration_seconds{backend="srv2",service="web"} 0"#,
            r#"lbd_backend_connections_total{address="198.18.1.22:80",backend="srv2",service="web"} 0"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }

    fn render(t: &Telemetry) -> String {
        let mut body = Vec::new();
        TextEncoder::new()
            .encode(&t.registry().gather(), &mut body)
            .unwrap();
        String::from_utf8(body).unwrap()
    }

    #[test]
    fn a_removed_servers_counters_stay_and_its_gauges_go() {
        let view = config::parse(include_str!("../../cluster.toml.example"), "t.toml")
            .unwrap()
            .node_view(Some("lb1"))
            .unwrap();
        let up = |_: &str, _: &str| crate::desired::ServerHealth::Up;
        let caps = dataplane::BackendKind::Nft.capabilities();
        let t = Telemetry::new("", None);
        t.plan(&crate::desired::plan(&view, up, caps).services);
        t.transition("web", "srv1", "down");
        t.check_done(
            &"web".into(),
            &"srv2".into(),
            "web-http",
            Duration::from_millis(2),
        );
        let mut fewer = view.clone();
        fewer.services[0].servers.retain(|s| s.name == "srv1");
        t.plan(&crate::desired::plan(&fewer, up, caps).services);
        t.checks_reconfigured(Some(&["web".to_owned()].into()));
        let text = render(&t);
        // Counters stay, as Prometheus counters do, at their value or at 0.
        for line in [
            r#"lbd_health_transitions_total{backend="srv1",service="web",to="down"} 1"#,
            r#"lbd_health_transitions_total{backend="srv2",service="web",to="up"} 0"#,
            r#"lbd_health_transitions_total{backend="srv2",service="web",to="down"} 0"#,
            r#"lbd_health_dampened_total{backend="srv2",service="web"} 0"#,
            r#"lbd_backend_weight{address="198.18.1.21:80",backend="srv1",service="web"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        // What describes the server now goes with it.
        for gone in [
            r#"lbd_backend_weight{address="198.18.1.22:80",backend="srv2""#,
            r#"lbd_backend_up{address="198.18.1.22:80",backend="srv2""#,
            r#"lbd_health_check_last_duration_seconds{backend="srv2""#,
        ] {
            assert!(!text.contains(gone), "{gone} still in\n{text}");
        }
    }
}
