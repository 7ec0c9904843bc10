//! Run-time control of one server (`vrrpctl server drain|disable|enable|weight`):
//! the overrides lbd keeps until they are cleared, across reloads and restarts,
//! and the active/inactive connection counts that show when a drain is done.
//!
//! Rules:
//! - an override lies over the configuration in the planner
//!   ([`crate::desired::plan_with`]) and goes through the normal apply: one batch;
//! - it applies to this node only: the peer's lbd serves the server as its own
//!   configuration and overrides say, so an operator drains on both nodes (the
//!   command's output and `vrrpctl services` say so);
//! - it is kept in a state file, `<dir>/<lbd socket stem>.state` (the directory
//!   as vrrpd's: `[control] state_dir`, `$STATE_DIRECTORY`, the socket's),
//!   written atomically and owner-only before the reply;
//! - a state file that cannot be used is logged, counted
//!   (`lbd_server_state_file_errors_total{operation="read"}`), kept aside as
//!   `<file>.bad`, and lbd starts without overrides, saying so in `status`;
//! - an override of a server the configuration no longer has is dropped (at
//!   start-up or reload), logged and reported.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};
use serde::{Deserialize, Serialize};

use config::NodeView;
use ctl::contract::lbd::{
    ConnectionCount, ServerOverride, ServerOverrideEntry, ServerOverridesStatus,
};
use ctl::wire::ReplyError;

use crate::desired::{Overrides, ServicePlan};
use crate::error::{ServerCommandError, ServerFileError};

/// The state file's format version.
pub const VERSION: u32 = 1;

/// The state file as written.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileContents {
    version: u32,
    node: String,
    written_unix_ms: u64,
    #[serde(default)]
    servers: Vec<ServerOverrideEntry>,
}

/// Reads the state file of node `node`: `Ok(None)` when there is none; the error
/// says why it cannot be used ([`ServerFileError::was_read`]: whether its bytes were).
pub fn load(path: &Path, node: &str) -> Result<Option<Vec<ServerOverrideEntry>>, ServerFileError> {
    let path_buf = || path.to_path_buf();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(ServerFileError::Unreadable {
                path: path_buf(),
                error,
            })
        }
    };
    let file: FileContents =
        serde_json::from_slice(&bytes).map_err(|error| ServerFileError::Corrupt {
            path: path_buf(),
            error,
        })?;
    if file.version != VERSION {
        return Err(ServerFileError::Version {
            path: path_buf(),
            found: file.version,
        });
    }
    if file.node != node {
        return Err(ServerFileError::OtherNode {
            path: path_buf(),
            written_by: file.node,
            this: node.to_owned(),
        });
    }
    Ok(Some(file.servers))
}

/// Writes `entries` for node `node` atomically, owner-only (0600).
pub fn store(
    path: &Path,
    node: &str,
    entries: &[ServerOverrideEntry],
    now_unix_ms: u64,
) -> std::io::Result<()> {
    let contents = FileContents {
        version: VERSION,
        node: node.to_owned(),
        written_unix_ms: now_unix_ms,
        servers: entries.to_vec(),
    };
    ctl::daemon::store_json(path, &contents)
}

/// Checks that `service` has a server `server`; the error names what exists.
pub fn resolve(view: &NodeView, service: &str, server: &str) -> Result<(), ServerCommandError> {
    let Some(s) = view.services.iter().find(|s| s.name == service) else {
        return Err(ServerCommandError::NoService {
            service: service.to_owned(),
            services: view.services.iter().map(|s| s.name.clone()).collect(),
        });
    };
    if s.servers.iter().any(|r| r.name == server) {
        return Ok(());
    }
    Err(ServerCommandError::NoServer {
        service: service.to_owned(),
        server: server.to_owned(),
        servers: s.servers.iter().map(|r| r.name.clone()).collect(),
    })
}

/// Checks a run-time weight against the configuration's rule.
pub fn check_weight(weight: u32) -> Result<(), ServerCommandError> {
    if weight > config::MAX_WEIGHT {
        return Err(ServerCommandError::Weight(weight));
    }
    Ok(())
}

/// The overrides this lbd holds, and their state file.
#[derive(Debug)]
pub struct ServerControl {
    path: PathBuf,
    node: String,
    entries: BTreeMap<(String, String), ServerOverrideEntry>,
    load_error: Option<String>,
    dropped: Vec<String>,
    write_errors: u64,
    last_write_error: Option<String>,
    metrics: Option<Metrics>,
}

#[derive(Debug, Clone)]
struct Metrics {
    rejected: IntCounter,
    file_errors: IntCounterVec,
}

impl ServerControl {
    /// Reads this node's state file (see the module's rules); `env_dir` is
    /// `$STATE_DIRECTORY`.
    pub fn open(view: &NodeView, env_dir: Option<&std::ffi::OsStr>) -> ServerControl {
        let path = ctl::daemon::state_path(
            &view.control.lbd_socket,
            view.control.state_dir.as_deref(),
            env_dir,
            "lbd",
        );
        let mut control = ServerControl {
            path,
            node: view.name.clone(),
            entries: BTreeMap::new(),
            load_error: None,
            dropped: Vec::new(),
            write_errors: 0,
            last_write_error: None,
            metrics: None,
        };
        match load(&control.path, &view.name) {
            Ok(Some(entries)) => {
                control.entries = entries
                    .into_iter()
                    .map(|e| ((e.service.clone(), e.server.clone()), e))
                    .collect();
                tracing::info!(path = %control.path.display(), overrides = control.entries.len(), "server overrides read");
            }
            Ok(None) => {
                tracing::debug!(path = %control.path.display(), "no server state file: no overrides");
            }
            Err(why) => {
                tracing::error!("server state file unusable: {why}; lbd starts without server overrides (drains and disables set before are NOT in force): check the file, then set them again with `vrrpctl server`");
                if why.was_read() {
                    match ctl::daemon::keep_aside(&control.path) {
                        Ok(bad) => {
                            tracing::warn!(copy = %bad.display(), "the unusable server state file is kept aside");
                            let _ = control.store();
                        }
                        Err(e) => {
                            tracing::error!(path = %control.path.display(), error = %e, "cannot keep the unusable server state file aside; leaving it as it is")
                        }
                    }
                }
                control.load_error = Some(why.to_string());
            }
        }
        control.retain(view);
        control
    }

    /// Registers the command and state file counters with `registry`.
    pub fn attach(&mut self, registry: &Registry) {
        let rejected = IntCounter::new(
            "lbd_server_commands_rejected_total",
            "Run-time server commands (vrrpctl server) refused: an unknown service or server, a bad weight or parameters.",
        );
        let file_errors = IntCounterVec::new(
            Opts::new(
                "lbd_server_state_file_errors_total",
                "Server state file (run-time overrides) reads and writes that failed.",
            ),
            &["operation"],
        );
        let (Ok(rejected), Ok(file_errors)) = (rejected, file_errors) else {
            return;
        };
        if registry.register(Box::new(rejected.clone())).is_err()
            || registry.register(Box::new(file_errors.clone())).is_err()
        {
            return;
        }
        file_errors
            .with_label_values(&["read"])
            .inc_by(u64::from(self.load_error.is_some()));
        file_errors
            .with_label_values(&["write"])
            .inc_by(self.write_errors);
        self.metrics = Some(Metrics {
            rejected,
            file_errors,
        });
    }

    /// Counts a refused command.
    pub fn rejected(&self) {
        if let Some(m) = &self.metrics {
            m.rejected.inc();
        }
    }

    /// The overrides for the planner.
    pub fn overrides(&self) -> Overrides {
        self.entries
            .iter()
            .map(|(k, e)| (k.clone(), e.server_override))
            .collect()
    }

    /// The override of one server.
    pub fn get(&self, service: &str, server: &str) -> Option<ServerOverride> {
        self.entries
            .get(&(service.to_owned(), server.to_owned()))
            .map(|e| e.server_override)
    }

    /// Every override, by service and server.
    pub fn entries(&self) -> Vec<ServerOverrideEntry> {
        self.entries.values().cloned().collect()
    }

    /// Sets (`Some`) or clears (`None`) one server's override; the previous one.
    /// The caller has resolved the names.
    pub fn set(
        &mut self,
        service: &str,
        server: &str,
        value: Option<ServerOverride>,
        now_unix_ms: u64,
    ) -> Option<ServerOverride> {
        let key = (service.to_owned(), server.to_owned());
        let previous = match value {
            Some(o) => {
                let since = match self.entries.get(&key) {
                    Some(e) if e.server_override == o => e.since_unix_ms,
                    _ => now_unix_ms,
                };
                self.entries.insert(
                    key,
                    ServerOverrideEntry {
                        service: service.to_owned(),
                        server: server.to_owned(),
                        server_override: o,
                        since_unix_ms: since,
                    },
                )
            }
            None => self.entries.remove(&key),
        };
        previous.map(|e| e.server_override)
    }

    /// Clears every override; the ones cleared.
    pub fn clear_all(&mut self) -> Vec<ServerOverrideEntry> {
        std::mem::take(&mut self.entries).into_values().collect()
    }

    /// Drops the overrides of servers `view` does not have; what was dropped, as
    /// `service/server: override` (also kept for status).
    pub fn retain(&mut self, view: &NodeView) -> Vec<String> {
        let gone: Vec<(String, String)> = self
            .entries
            .keys()
            .filter(|(service, server)| resolve(view, service, server).is_err())
            .cloned()
            .collect();
        let mut dropped = Vec::new();
        for key in gone {
            if let Some(e) = self.entries.remove(&key) {
                let text = format!("{}/{}: {}", e.service, e.server, e.server_override);
                tracing::warn!(service = %e.service, server = %e.server, what = %e.server_override, "server override dropped: the configuration has no such server now");
                dropped.push(text);
            }
        }
        if !dropped.is_empty() {
            self.dropped.extend(dropped.iter().cloned());
            let _ = self.store();
        }
        dropped
    }

    /// Writes the state file; false (logged, counted, in status) if it failed.
    pub fn store(&mut self) -> bool {
        let now = crate::servers::unix_ms();
        match store(&self.path, &self.node, &self.entries(), now) {
            Ok(()) => true,
            Err(e) => {
                self.write_errors += 1;
                let why = format!("{}: {e}", self.path.display());
                tracing::error!(error = %why, "cannot write the server state file: the overrides hold until lbd restarts, not after");
                self.last_write_error = Some(why);
                if let Some(m) = &self.metrics {
                    m.file_errors.with_label_values(&["write"]).inc();
                }
                false
            }
        }
    }

    /// For `status`.
    pub fn status(&self) -> ServerOverridesStatus {
        ServerOverridesStatus {
            entries: self.entries(),
            state_file: self.path.display().to_string(),
            load_error: self.load_error.clone(),
            dropped: self.dropped.clone(),
            write_errors: self.write_errors,
            last_write_error: self.last_write_error.clone(),
        }
    }
}

/// A refused server command, counted.
pub fn refuse(control: &ServerControl, why: ServerCommandError) -> ReplyError {
    control.rejected();
    tracing::warn!(error = %why, "server command refused");
    ReplyError::failed(why.to_string())
}

/// Unix time in ms.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Active (TCP established) and inactive (every other state; UDP) connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnCounts {
    /// TCP ESTABLISHED.
    pub active: u64,
    /// The others.
    pub inactive: u64,
}

/// What identifies a service's connections in conntrack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountedService {
    /// The service.
    pub name: String,
    /// Its VIP.
    pub vip: IpAddr,
    /// IP protocol number.
    pub proto: u8,
    /// First and last port.
    pub ports: (u16, u16),
    /// Its servers: name, address, port (`None`: the client's destination port).
    pub servers: Vec<(String, IpAddr, Option<u16>)>,
}

impl CountedService {
    /// From a planned service (`None` for a port spec that does not parse).
    pub fn of(s: &ServicePlan) -> Option<CountedService> {
        let ports = match s.ports.split_once('-') {
            Some((lo, hi)) => (lo.parse().ok()?, hi.parse().ok()?),
            None => {
                let p = s.ports.parse().ok()?;
                (p, p)
            }
        };
        Some(CountedService {
            name: s.name.clone(),
            vip: s.vip,
            proto: if s.protocol == "udp" { 17 } else { 6 },
            ports,
            servers: s
                .servers
                .iter()
                .map(|b| (b.name.to_string(), b.address, b.port))
                .collect(),
        })
    }
}

/// Counts `entries` per (service, server): an entry belongs to a server when its
/// original destination is the service's VIP, protocol and port, and its reply
/// comes from the server's address and port (the DNAT mapping). When several
/// services hold a destination, the first in `services` counts it.
pub fn tally(
    services: &[CountedService],
    entries: &[ctsync::Entry],
) -> HashMap<(String, String), ConnCounts> {
    let index = ServiceIndex::new(services);
    let mut out: HashMap<(String, String), ConnCounts> = HashMap::new();
    for e in entries {
        let Some(dport) = e.orig.dst_port() else {
            continue;
        };
        let Some(s) = index
            .find(e.orig.dst, e.orig.proto, dport)
            .map(|i| &services[i])
        else {
            continue;
        };
        let from = (e.reply.src, e.reply.src_port());
        let Some((server, _, _)) = s
            .servers
            .iter()
            .find(|(_, addr, port)| (*addr, Some(port.unwrap_or(dport))) == from)
        else {
            continue;
        };
        let c = out.entry((s.name.clone(), server.clone())).or_default();
        if e.tcp
            .is_some_and(|t| t.state == ctsync::TcpState::ESTABLISHED)
        {
            c.active += 1;
        } else {
            c.inactive += 1;
        }
    }
    out
}

/// The services by destination, for [`tally`]: a lookup per conntrack entry rather
/// than a walk of every service (10,000 services × 100,000 entries was 10⁹ compares).
struct ServiceIndex {
    /// Single-port services by (VIP, protocol, port): the first one's index.
    ports: HashMap<(IpAddr, u8, u16), usize>,
    /// Port ranges by (VIP, protocol), in `services` order.
    ranges: HashMap<(IpAddr, u8), Vec<PortRangeOf>>,
}

/// A service's port range: first, last, and the service's index.
type PortRangeOf = (u16, u16, usize);

impl ServiceIndex {
    fn new(services: &[CountedService]) -> ServiceIndex {
        let mut index = ServiceIndex {
            ports: HashMap::with_capacity(services.len()),
            ranges: HashMap::new(),
        };
        for (i, s) in services.iter().enumerate() {
            let (lo, hi) = s.ports;
            if lo == hi {
                index.ports.entry((s.vip, s.proto, lo)).or_insert(i);
            } else {
                index
                    .ranges
                    .entry((s.vip, s.proto))
                    .or_default()
                    .push((lo, hi, i));
            }
        }
        index
    }

    /// The index of the first service holding the destination.
    fn find(&self, vip: IpAddr, proto: u8, port: u16) -> Option<usize> {
        let single = self.ports.get(&(vip, proto, port)).copied();
        let range = self.ranges.get(&(vip, proto)).and_then(|r| {
            r.iter()
                .find(|(lo, hi, _)| (*lo..=*hi).contains(&port))
                .map(|(_, _, i)| *i)
        });
        match (single, range) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// How long one dump's counts answer every status request and scrape. A dump costs
/// the kernel a walk of the whole table (tens of ms per 100,000 entries, under the
/// table's locks), and `vrrpctl watch`, the status page, Prometheus and scripts may
/// each ask every second: within this age they share one.
pub const COUNTS_FRESH_FOR: Duration = Duration::from_secs(1);

/// Active and inactive connections per (service, server).
pub type Counts = Arc<HashMap<(String, String), ConnCounts>>;

/// The last dump's counts, for the services they were counted for.
struct LastCount {
    at: Instant,
    services: Vec<CountedService>,
    counts: Counts,
    result: ConnectionCount,
}

/// One per process: the status requests' tasks and the scrapes' threads share it.
/// Held during a dump, so requests that arrive meanwhile wait for its counts rather
/// than start dumps of their own.
static LAST_COUNT: Mutex<Option<LastCount>> = Mutex::new(None);

/// The services' connections counted per server (blocking): from the last dump if it
/// counted the same services less than [`COUNTS_FRESH_FOR`] ago (`age_ms` says how
/// old), else from a new one.
pub fn count_connections(services: &[CountedService]) -> (Counts, ConnectionCount) {
    let mut last = LAST_COUNT.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(l) = last
        .as_ref()
        .filter(|l| l.at.elapsed() < COUNTS_FRESH_FOR && l.services == services)
    {
        let result = ConnectionCount {
            age_ms: ctl::contract::ms(l.at.elapsed()),
            ..l.result.clone()
        };
        return (Arc::clone(&l.counts), result);
    }
    let (counts, result) = dump_and_count(services);
    let counts = Arc::new(counts);
    *last = result.error.is_none().then(|| LastCount {
        at: Instant::now(),
        services: services.to_vec(),
        counts: Arc::clone(&counts),
        result: result.clone(),
    });
    (counts, result)
}

/// One conntrack dump of the services' VIPs, counted per server (blocking).
fn dump_and_count(
    services: &[CountedService],
) -> (HashMap<(String, String), ConnCounts>, ConnectionCount) {
    let started = Instant::now();
    let mut vips: Vec<IpAddr> = services.iter().map(|s| s.vip).collect();
    vips.sort();
    vips.dedup();
    if vips.is_empty() {
        return (HashMap::new(), ConnectionCount::default());
    }
    let filter = ctsync::FlowFilter {
        orig_dst: vips,
        ..ctsync::FlowFilter::default()
    };
    let dumped = ctsync::Conntrack::open().and_then(|mut ct| ct.dump(&filter));
    match dumped {
        Ok(entries) => {
            let counts = tally(services, &entries);
            (
                counts,
                ConnectionCount {
                    entries: entries.len() as u64,
                    duration_ms: ctl::contract::ms(started.elapsed()),
                    ..ConnectionCount::default()
                },
            )
        }
        Err(e) => (
            HashMap::new(),
            ConnectionCount {
                duration_ms: ctl::contract::ms(started.elapsed()),
                error: Some(format!("conntrack dump: {e}")),
                ..ConnectionCount::default()
            },
        ),
    }
}

/// `status` with each server's active and inactive connections filled in, from
/// [`count_connections`] (on the blocking pool, at most 5 s).
pub async fn with_connection_counts(
    mut status: ctl::contract::lbd::LbdStatus,
    services: Vec<CountedService>,
) -> ctl::contract::lbd::LbdStatus {
    let dump = tokio::task::spawn_blocking(move || count_connections(&services));
    let (counts, result) = match tokio::time::timeout(std::time::Duration::from_secs(5), dump).await
    {
        Ok(Ok(counted)) => counted,
        Ok(Err(e)) => (
            Arc::default(),
            ConnectionCount {
                error: Some(format!("conntrack dump: {e}")),
                ..ConnectionCount::default()
            },
        ),
        Err(_) => (
            Arc::default(),
            ConnectionCount {
                error: Some("conntrack dump: no answer within 5 s".to_owned()),
                ..ConnectionCount::default()
            },
        ),
    };
    if result.error.is_none() {
        for s in &mut status.services {
            for b in &mut s.servers {
                let c = counts
                    .get(&(s.name.clone(), b.name.clone()))
                    .copied()
                    .unwrap_or_default();
                b.active_connections = Some(c.active);
                b.inactive_connections = Some(c.inactive);
            }
        }
    }
    status.connection_count = result;
    status
}

/// `lbd_backend_connections_active` and `_inactive`, counted from one conntrack
/// dump per scrape (in the scrape's thread, not the daemon loop's).
#[derive(Debug, Clone)]
pub struct ConnectionGauges {
    /// The plan's services (the daemon's own, shared: no copy per plan).
    services: Arc<Mutex<Arc<Vec<Arc<ServicePlan>>>>>,
    templates: (IntGaugeVec, IntGaugeVec),
}

impl ConnectionGauges {
    /// Registers the gauges with `registry`; `None` if that failed (logged).
    pub fn register(registry: &Registry) -> Option<ConnectionGauges> {
        let gauges = ConnectionGauges {
            services: Arc::default(),
            templates: Self::gauges()?,
        };
        match registry.register(Box::new(gauges.clone())) {
            Ok(()) => Some(gauges),
            Err(e) => {
                tracing::warn!(error = %e, "active/inactive connection gauges not registered");
                None
            }
        }
    }

    fn gauges() -> Option<(IntGaugeVec, IntGaugeVec)> {
        let labels = ["service", "backend", "address"];
        let active = IntGaugeVec::new(
            Opts::new(
                "lbd_backend_connections_active",
                "Established TCP connections to the backend in conntrack (IPVS's ActConn), counted at scrape time.",
            ),
            &labels,
        );
        let inactive = IntGaugeVec::new(
            Opts::new(
                "lbd_backend_connections_inactive",
                "The backend's other conntrack entries: TCP opening or closing, UDP (IPVS's InActConn), counted at scrape time.",
            ),
            &labels,
        );
        Some((active.ok()?, inactive.ok()?))
    }

    /// The services to count from now on (after each plan).
    pub fn set_services(&self, services: &Arc<Vec<Arc<ServicePlan>>>) {
        *self.services.lock().unwrap_or_else(PoisonError::into_inner) = Arc::clone(services);
    }
}

impl Collector for ConnectionGauges {
    fn desc(&self) -> Vec<&Desc> {
        let mut d = self.templates.0.desc();
        d.extend(self.templates.1.desc());
        d
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let planned = Arc::clone(&self.services.lock().unwrap_or_else(PoisonError::into_inner));
        let services: Vec<CountedService> = planned
            .iter()
            .filter_map(|s| CountedService::of(s))
            .collect();
        let Some((active, inactive)) = Self::gauges() else {
            return Vec::new();
        };
        let (counts, result) = count_connections(&services);
        if let Some(e) = result.error {
            tracing::debug!(error = %e, "active/inactive connections unavailable");
            return Vec::new();
        }
        for s in &services {
            for (server, addr, port) in &s.servers {
                let c = counts
                    .get(&(s.name.clone(), server.clone()))
                    .copied()
                    .unwrap_or_default();
                let address = crate::telemetry::address_label(*addr, *port);
                let labels = [s.name.as_str(), server.as_str(), address.as_str()];
                active
                    .with_label_values(&labels)
                    .set(i64::try_from(c.active).unwrap_or(i64::MAX));
                inactive
                    .with_label_values(&labels)
                    .set(i64::try_from(c.inactive).unwrap_or(i64::MAX));
            }
        }
        let mut out = active.collect();
        out.extend(inactive.collect());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn view() -> NodeView {
        config::parse(include_str!("../../cluster.toml.example"), "t.toml")
            .unwrap()
            .node_view(Some("lb1"))
            .unwrap()
    }

    fn entry(service: &str, server: &str, o: ServerOverride) -> ServerOverrideEntry {
        ServerOverrideEntry {
            service: service.into(),
            server: server.into(),
            server_override: o,
            since_unix_ms: 1,
        }
    }

    #[test]
    fn names_are_resolved_and_errors_name_what_exists() {
        let v = view();
        assert_eq!(resolve(&v, "web", "srv2"), Ok(()));
        let e = resolve(&v, "webb", "srv2").unwrap_err().to_string();
        assert!(e.contains("no service `webb`; services: web"), "{e}");
        let e = resolve(&v, "web", "srv9").unwrap_err().to_string();
        assert!(e.contains("its servers: srv1, srv2"), "{e}");
        assert!(check_weight(65_535).is_ok());
        assert!(check_weight(65_536)
            .unwrap_err()
            .to_string()
            .contains("0..=65535"));
    }

    #[test]
    fn the_state_file_round_trips_owner_only_and_refuses_garbage() {
        let dir = std::env::temp_dir().join(format!("lbd-servers-{}", std::process::id()));
        let path = dir.join("lbd.state");
        let entries = vec![
            entry("web", "srv1", ServerOverride::Drain),
            entry("web", "srv2", ServerOverride::Weight { weight: 7 }),
        ];
        store(&path, "lb1", &entries, 5).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load(&path, "lb1").unwrap(), Some(entries));
        assert!(load(&path, "lb2")
            .unwrap_err()
            .to_string()
            .contains("node `lb1`"));
        std::fs::write(&path, b"{\"version\": 1, \"node\": ").unwrap();
        let why = load(&path, "lb1").unwrap_err();
        assert!(
            why.to_string().contains("not a valid lbd state file") && why.was_read(),
            "{why}"
        );
        assert_eq!(load(&dir.join("absent.state"), "lb1").unwrap(), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_corrupt_file_is_kept_aside_and_lbd_starts_without_overrides() {
        let dir = std::env::temp_dir().join(format!("lbd-servers-bad-{}", std::process::id()));
        let mut v = view();
        v.control.state_dir = Some(dir.clone());
        let path = dir.join("lbd.state");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&path, b"not json").unwrap();
        let c = ServerControl::open(&v, None);
        assert!(c.overrides().is_empty());
        assert!(c.status().load_error.unwrap().contains("not a valid"));
        assert_eq!(
            std::fs::read(dir.join("lbd.state.bad")).unwrap(),
            b"not json"
        );
        assert_eq!(load(&path, "lb1").unwrap(), Some(Vec::new()));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn overrides_of_servers_gone_are_dropped() {
        let dir = std::env::temp_dir().join(format!("lbd-servers-gone-{}", std::process::id()));
        let mut v = view();
        v.control.state_dir = Some(dir.clone());
        let mut c = ServerControl::open(&v, None);
        assert_eq!(c.set("web", "srv2", Some(ServerOverride::Drain), 3), None);
        assert_eq!(
            c.set("web", "srv2", Some(ServerOverride::Disable), 4),
            Some(ServerOverride::Drain)
        );
        assert!(c.store());
        v.services[0].servers.retain(|s| s.name != "srv2");
        assert_eq!(c.retain(&v), vec!["web/srv2: disable".to_owned()]);
        assert!(c.overrides().is_empty());
        assert_eq!(
            load(&dir.join("lbd.state"), "lb1").unwrap(),
            Some(Vec::new())
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn connections_are_counted_per_server_by_state() {
        use ctsync::{Entry, Status, TcpInfo, TcpState, Tuple};
        let vip: IpAddr = "198.18.0.100".parse().unwrap();
        let snat: IpAddr = "198.18.1.100".parse().unwrap();
        let client: IpAddr = "198.18.0.50".parse().unwrap();
        let conn = |port: u16, server: &str, state: TcpState| {
            let server: IpAddr = server.parse().unwrap();
            Entry {
                orig: Tuple::tcp(client, port, vip, 80),
                reply: Tuple::tcp(server, 80, snat, port),
                status: Status(0),
                timeout: Some(100),
                mark: None,
                zone: None,
                tcp: Some(TcpInfo::in_state(state)),
                id: None,
            }
        };
        let services = vec![CountedService {
            name: "web".into(),
            vip,
            proto: 6,
            ports: (80, 80),
            servers: vec![
                ("srv1".into(), "198.18.1.21".parse().unwrap(), Some(80)),
                ("srv2".into(), "198.18.1.22".parse().unwrap(), None),
            ],
        }];
        let entries = vec![
            conn(1000, "198.18.1.21", TcpState::ESTABLISHED),
            conn(1001, "198.18.1.21", TcpState::TIME_WAIT),
            conn(1002, "198.18.1.22", TcpState::ESTABLISHED),
            conn(1003, "198.18.1.22", TcpState::ESTABLISHED),
            conn(1004, "198.18.1.22", TcpState::SYN_SENT),
            // Not NATed to a server of the service: not counted.
            conn(1005, "198.18.1.99", TcpState::ESTABLISHED),
        ];
        let c = tally(&services, &entries);
        let of = |s: &str| c.get(&("web".to_owned(), s.to_owned())).copied();
        assert_eq!(
            of("srv1"),
            Some(ConnCounts {
                active: 1,
                inactive: 1
            })
        );
        assert_eq!(
            of("srv2"),
            Some(ConnCounts {
                active: 2,
                inactive: 1
            })
        );
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn connections_find_their_service_by_vip_protocol_and_port() {
        use ctsync::{Entry, Status, TcpInfo, TcpState, Tuple};
        let vip: IpAddr = "198.18.0.100".parse().unwrap();
        let other_vip: IpAddr = "198.18.0.101".parse().unwrap();
        let snat: IpAddr = "198.18.1.100".parse().unwrap();
        let client: IpAddr = "198.18.0.50".parse().unwrap();
        let server: IpAddr = "198.18.1.21".parse().unwrap();
        let conn = |vip: IpAddr, port: u16, udp: bool| {
            let proto = if udp { 17 } else { 6 };
            let orig = Tuple {
                proto,
                ..Tuple::tcp(client, 40000, vip, port)
            };
            let reply = Tuple {
                proto,
                ..Tuple::tcp(server, port, snat, 40000)
            };
            Entry {
                orig,
                reply,
                status: Status(0),
                timeout: Some(100),
                mark: None,
                zone: None,
                tcp: (!udp).then(|| TcpInfo::in_state(TcpState::ESTABLISHED)),
                id: None,
            }
        };
        let service = |name: &str, vip: IpAddr, proto: u8, ports: (u16, u16)| CountedService {
            name: name.into(),
            vip,
            proto,
            ports,
            servers: vec![("srv1".into(), server, None)],
        };
        // 1,000 single-port services, a range that overlaps one of them (listed
        // after it: the single port keeps its connections), one listed before a port
        // it holds, the same port by UDP and on another VIP.
        let mut services: Vec<CountedService> = vec![service("early", vip, 6, (5000, 5010))];
        services
            .extend((0..1000u16).map(|i| service(&format!("s{i}"), vip, 6, (1000 + i, 1000 + i))));
        services.push(service("range", vip, 6, (1500, 1600)));
        services.push(service("dns", vip, 17, (1000, 1000)));
        services.push(service("other", other_vip, 6, (1000, 1000)));
        services.push(service("late", vip, 6, (5005, 5005)));
        let entries = vec![
            conn(vip, 1000, false),
            conn(vip, 1999, false),
            conn(vip, 1550, false),
            conn(vip, 1000, true),
            conn(other_vip, 1000, false),
            conn(vip, 5005, false),
            conn(vip, 2000, false),
            conn(other_vip, 1001, false),
        ];
        let c = tally(&services, &entries);
        let mut counted: Vec<&str> = c.keys().map(|(s, _)| s.as_str()).collect();
        counted.sort_unstable();
        assert_eq!(counted, ["dns", "early", "other", "s0", "s550", "s999"]);
        assert!(c.values().all(|n| n.active + n.inactive == 1));
    }
}
