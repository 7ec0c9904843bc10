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

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

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

/// How long a scrape waits for the dataplane's counters before using the last ones.
const COUNTERS_WAIT: Duration = Duration::from_secs(2);

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
    /// Last counters read (used when the dataplane is busy).
    counters: Vec<BackendCounters>,
    /// The plan's services (the daemon's own, shared): every planned backend has
    /// its series, those the kernel has no counters for yet count 0.
    planned: Arc<Vec<ServicePlan>>,
    /// Health transitions by (service, backend, to); only backends that had one.
    transitions: HashMap<(String, String, String), u64>,
    /// Dampened rises by (service, backend); only backends that had one.
    dampened: HashMap<(String, String), u64>,
    /// Latest check duration (s) by service, then backend.
    last_duration: HashMap<String, HashMap<String, f64>>,
    /// Checked backends that left the plan (a reload removed them or their check):
    /// their transition and dampening counters stay exported, as counters do.
    retired: BTreeSet<(String, String)>,
}

/// Every metric of lbd.
#[derive(Clone)]
pub struct Telemetry {
    registry: Registry,
    apply_duration: Histogram,
    apply_errors: IntCounter,
    check_duration: HistogramVec,
    vrrpd_connected: IntGauge,
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
    sources: Arc<Mutex<KernelSources>>,
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
    /// process metrics; `dataplane` serves counters at scrape time.
    pub fn new(cluster: &str, dataplane: Option<DataplaneThread>) -> Telemetry {
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
        let sources = Arc::new(Mutex::new(KernelSources::default()));
        reg(Box::new(KernelCollector::new(
            dataplane,
            Arc::clone(&sources),
        )));
        reg(Box::new(BackendCollector {
            sources: Arc::clone(&sources),
            templates: BackendMetrics::new(),
        }));
        Telemetry {
            registry,
            apply_duration,
            apply_errors,
            check_duration,
            vrrpd_connected,
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
            sources,
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
                    sources.last_duration.remove(name);
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
    pub fn plan(&self, services: &Arc<Vec<ServicePlan>>) {
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
        let checks: HashSet<&str> = services
            .iter()
            .flat_map(|s| s.servers.iter().filter_map(|b| b.check.as_deref()))
            .collect();
        for check in checks {
            self.check_duration.with_label_values(&[check]);
        }
        let mut sources = self.lock();
        if !Arc::ptr_eq(&sources.planned, services) {
            let left = checked_backends_gone(&sources.planned, services);
            sources.retired.extend(left);
            sources.planned = Arc::clone(services);
        }
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

    /// Counters read by the daemon (status), also used by the next scrape if the
    /// dataplane is busy then.
    pub fn counters(&self, counters: Vec<BackendCounters>) {
        self.lock().counters = counters;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, KernelSources> {
        self.sources.lock().unwrap_or_else(PoisonError::into_inner)
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
    pub fn check_done(&self, service: &str, server: &str, check: &str, duration: Duration) {
        let seconds = duration.as_secs_f64();
        {
            // Each second for every checked backend: no key built once it has one.
            let mut sources = self.lock();
            let known = sources.last_duration.get_mut(service);
            match known.and_then(|m| m.get_mut(server)) {
                Some(v) => *v = seconds,
                None => {
                    sources
                        .last_duration
                        .entry(service.to_owned())
                        .or_default()
                        .insert(server.to_owned(), seconds);
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
    dataplane: Option<DataplaneThread>,
    sources: Arc<Mutex<KernelSources>>,
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
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

impl KernelCollector {
    fn new(dataplane: Option<DataplaneThread>, sources: Arc<Mutex<KernelSources>>) -> Self {
        KernelCollector {
            dataplane,
            sources,
            templates: KernelMetrics::new(),
        }
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
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let fresh = self
            .dataplane
            .as_ref()
            .and_then(|d| d.run_blocking(COUNTERS_WAIT, |dp| dp.counters().ok()))
            .flatten();
        let (counters, capacity, planned) = {
            let mut s = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(c) = fresh {
                s.counters = c;
            }
            (
                s.counters.clone(),
                s.snat_capacity.clone(),
                Arc::clone(&s.planned),
            )
        };
        let m = KernelMetrics::new();
        for s in planned.iter() {
            for b in &s.servers {
                let addr = address_label(b.address, b.port);
                let labels = [s.name.as_str(), b.name.as_str(), addr.as_str()];
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
fn checked_backends_gone(old: &[ServicePlan], new: &[ServicePlan]) -> Vec<(String, String)> {
    let now: HashMap<&str, &ServicePlan> = new.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut gone = Vec::new();
    for o in old {
        let kept = now.get(o.name.as_str());
        for b in o.servers.iter().filter(|b| b.check.is_some()) {
            let checked = kept.is_some_and(|n| {
                n.servers
                    .iter()
                    .any(|x| x.name == b.name && x.check.is_some())
            });
            if !checked {
                gone.push((o.name.clone(), b.name.clone()));
            }
        }
    }
    gone
}

/// The per-backend series, built when scraped from the plan and the values health
/// events left ([`KernelSources`]).
struct BackendCollector {
    sources: Arc<Mutex<KernelSources>>,
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
            let s = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
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
                let labels = [s.name.as_str(), b.name.as_str(), addr.as_str()];
                m.weight
                    .with_label_values(&labels)
                    .set(f64::from(b.effective_weight));
                m.up.with_label_values(&labels)
                    .set(if b.health.is_up() { 1.0 } else { 0.0 });
                if b.check.is_some() {
                    let backend = [s.name.as_str(), b.name.as_str()];
                    for to in ["up", "down"] {
                        m.transitions
                            .with_label_values(&[s.name.as_str(), b.name.as_str(), to]);
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
        t.check_done("web", "srv1", "web-http", Duration::from_millis(2));
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
        let mut body = Vec::new();
        TextEncoder::new()
            .encode(&t.registry().gather(), &mut body)
            .unwrap();
        let text = String::from_utf8(body).unwrap();
        for line in [
            r#"lbd_backend_connections_total{address="198.18.1.21:80",backend="srv1",service="web"} 7"#,
            r#"lbd_backend_packets_total{address="198.18.1.21:80",backend="srv1",service="web"} 30"#,
            "lbd_apply_errors_total 1",
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
        t.check_done("web", "srv2", "web-http", Duration::from_millis(2));
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
