//! The daemon: start-up (backend, health, sockets), the reconcile loop, reload,
//! prepare, status, shutdown.
//!
//! One task owns the state. Whatever changes an input of the desired state (a health
//! transition, a reload, a failed apply's retry, vrrpd's prepare) makes it plan again
//! from (configuration, health) and hand the result to the backend, which diffs it
//! against the kernel and sends one batch. The plan does not depend on the VRRP role:
//! the backup holds the same rules (no VIP traffic reaches it), so a takeover only
//! has to check that they are current. Roles are followed for status and logs.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde_json::Value;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use config::NodeView;
use ctl::contract::lbd::{
    ApplyOutcome, BackendStatus, ConfigStatus, DataplaneStatus, HealthStatus, HealthTransition,
    LastApply, LastCheck, LastCommit, LastPrepare, LbdReloadReply, LbdStatus, PrepareReply,
    PrepareStatus, PriorityTracksStatus, QuorumStatus, ServerClearReply, ServerListReply,
    ServerOverride, ServerReply, ServerStatus, ServiceStatus, SnatAddress, SnatStatus,
    SorryServerStatus, SyncCommit, SyncStatus, Traffic, VrrpdLink,
};
use ctl::contract::{ms, VrrpState};
use ctl::wire::ReplyError;
use dataplane::{
    ApplyReport, BackendCounters, BackendKind, ChangeHint, ChosenBackend, Counting, Dataplane,
    Selection, SnatSource, SyncRole,
};
use health::{
    HealthEvent, HealthRunner, HealthState, RunnerCounters, RunnerSettings, Target, TargetName,
};

use crate::backend::{self, backend_settings, DataplaneThread};
use crate::control::{control_handler, Command, ControlRequest, PrepareParams};
use crate::desired::{self, Plan, ServerHealth};
use crate::error::{ApplyError, MassRemoval, ReloadError, TcpSynUnavailable, ViewError};
use crate::forwarding::ForwardingWatch;
use crate::roles::{self, RoleUpdate, Roles};
use crate::servers::{self, CountedService, ServerControl};
use crate::sync::{self, SyncLink};
use crate::telemetry::Telemetry;
use crate::tracking::TrackSender;

/// How the daemon was started: the file and the node.
pub type Options = config::NodeSource;

/// The configuration read and resolved for this node.
pub type Loaded = config::LoadedNode;

/// Reads and validates the configuration; the error text is the config crate's
/// diagnostics (file, line, key, fix).
pub fn load(options: &Options) -> Result<Loaded, config::ConfigError> {
    options.load()
}

/// First retry delay after a failed apply; doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(500);
/// Longest retry delay.
const RETRY_MAX: Duration = Duration::from_secs(30);
/// Recent errors kept for status.
const ERRORS_KEPT: usize = 10;

/// Refuses a reload that drops more than half of the running services (two at
/// least), or every one: what a file cut short at a section boundary or a lost
/// `[[service]]` block looks like. The error lists them and says how to force it.
pub fn mass_removal(running: &NodeView, new: &NodeView) -> Result<(), MassRemoval> {
    mass_removal_in(&ServiceDiff::of(running, new), running, new)
}

/// [`mass_removal`] with the services' difference already known.
fn mass_removal_in(
    diff: &ServiceDiff,
    running: &NodeView,
    new: &NodeView,
) -> Result<(), MassRemoval> {
    let removed = &diff.removed;
    let all = !running.services.is_empty() && new.services.is_empty();
    if all || (removed.len() >= 2 && removed.len() * 2 > running.services.len()) {
        return Err(MassRemoval {
            removed: removed.clone(),
            running: running.services.len(),
        });
    }
    Ok(())
}

/// The services a reload adds, removes and changes, by name, in file order.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ServiceDiff {
    /// In the new file only.
    pub added: Vec<String>,
    /// In the running configuration only.
    pub removed: Vec<String>,
    /// In both, with other settings or servers.
    pub changed: Vec<String>,
}

impl ServiceDiff {
    /// Compares by name (maps, not a search per service: 10,000s of services).
    pub fn of(running: &NodeView, new: &NodeView) -> ServiceDiff {
        let old: HashMap<&str, &config::Service> = running
            .services
            .iter()
            .map(|s| (s.name.as_str(), s))
            .collect();
        let kept: HashSet<&str> = new.services.iter().map(|s| s.name.as_str()).collect();
        let mut diff = ServiceDiff::default();
        for s in &new.services {
            match old.get(s.name.as_str()) {
                None => diff.added.push(s.name.clone()),
                Some(o) if *o != s => diff.changed.push(s.name.clone()),
                Some(_) => {}
            }
        }
        diff.removed = running
            .services
            .iter()
            .filter(|s| !kept.contains(s.name.as_str()))
            .map(|s| s.name.clone())
            .collect();
        diff
    }

    /// [`ServiceDiff::of`] when only the running services at `old` were replaced, by
    /// the new ones at `new` (the others are the same, in the same order; see
    /// [`config::FileMemo::services_replaced`]).
    pub fn of_replaced(
        running: &NodeView,
        new_view: &NodeView,
        old: std::ops::Range<usize>,
        new: std::ops::Range<usize>,
    ) -> Option<ServiceDiff> {
        let was = running.services.get(old)?;
        let now = new_view.services.get(new)?;
        let old: HashMap<&str, &config::Service> =
            was.iter().map(|s| (s.name.as_str(), s)).collect();
        let kept: HashSet<&str> = now.iter().map(|s| s.name.as_str()).collect();
        let mut diff = ServiceDiff::default();
        for s in now {
            match old.get(s.name.as_str()) {
                None => diff.added.push(s.name.clone()),
                Some(o) if *o != s => diff.changed.push(s.name.clone()),
                Some(_) => {}
            }
        }
        diff.removed = was
            .iter()
            .filter(|s| !kept.contains(s.name.as_str()))
            .map(|s| s.name.clone())
            .collect();
        Some(diff)
    }

    /// Every service named: what the dataplane and the health checks must look at.
    pub fn touched(&self) -> BTreeSet<String> {
        self.added
            .iter()
            .chain(&self.removed)
            .chain(&self.changed)
            .cloned()
            .collect()
    }
}

/// This node's own address whose subnet holds `server`: health checks leave from
/// it, on the interface that reaches the server.
pub fn check_source(view: &NodeView, server: IpAddr) -> Option<IpAddr> {
    view.node
        .addresses
        .values()
        .flatten()
        .find(|a| a.contains(server))
        .map(|a| a.address)
}

/// Health-check targets of `view`.
pub fn health_targets(view: &NodeView) -> Vec<Target> {
    health::targets_from_config(&view.services, &view.checks, |_, server| {
        check_source(view, server.address)
    })
}

/// Half-open (`tcp_syn`) checks need a raw socket: without one every server they check
/// would go down, so a configuration that uses them is refused where they cannot run.
pub fn check_health_needs(view: &NodeView) -> Result<(), TcpSynUnavailable> {
    // The servers that name a half-open check (none in most files: no target is
    // built for the 10,000s of others).
    let syn: HashSet<&str> = view
        .checks
        .iter()
        .filter(|c| matches!(c.kind, config::CheckKind::TcpSyn))
        .map(|c| c.name.as_str())
        .collect();
    if syn.is_empty() {
        return Ok(());
    }
    let checked = view
        .services
        .iter()
        .flat_map(|s| &s.servers)
        .filter(|r| r.check.as_deref().is_some_and(|c| syn.contains(c)));
    let (v4, v6) = checked.fold((false, false), |(v4, v6), r| {
        (v4 || r.address.is_ipv4(), v6 || r.address.is_ipv6())
    });
    if !(v4 || v6) {
        return Ok(());
    }
    health::check::tcp_syn_ready(v4, v6).map_err(TcpSynUnavailable)
}

/// Gives the heap pages freed after a start or a reload back to the kernel. Reading
/// a large file peaks at several times what lbd keeps; without this the allocator
/// keeps those pages, and the resident size stays at the peak.
pub(crate) fn release_free_memory() {
    // SAFETY: malloc_trim only walks and releases the allocator's free memory.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0);
    }
}

pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The last apply, for status.
#[derive(Debug, Clone)]
struct ApplyRecord {
    why: String,
    unix_ms: u64,
    result: Result<ApplyReport, String>,
}

impl ApplyRecord {
    fn to_status(&self) -> LastApply {
        let mut status = LastApply {
            ok: self.result.is_ok(),
            why: self.why.clone(),
            unix_ms: self.unix_ms,
            ..LastApply::default()
        };
        match &self.result {
            Ok(r) => {
                status.duration_ms = Some(ms(r.duration));
                status.changes = Some(r.changes());
                status.messages = Some(r.messages);
                status.batch_bytes = Some(r.batch_bytes);
                status.reread = Some(r.reread);
                // The counts by kind; the duration is `duration_ms` above.
                status.report = serde_json::to_value(r)
                    .and_then(serde_json::from_value::<BTreeMap<String, Value>>)
                    .unwrap_or_default();
                status.report.remove("duration");
            }
            Err(e) => status.error = Some(e.clone()),
        }
        status
    }
}

/// Everything the loop owns, in the parts a change touches one at a time.
struct Daemon {
    /// What runs: the configuration and the operator's server overrides.
    config: Running,
    /// The desired state and the backend that holds it in the kernel.
    kernel: Kernel,
    /// The health checks and what the loop last saw of them.
    health: Health,
    /// The link to vrrpd: roles, priority tracks, prepares.
    vrrpd: Vrrpd,
    /// Connection-state sync with the peer.
    sync: PeerSync,
    /// What the daemon tells: metrics, systemd, the control socket's counters,
    /// recent errors.
    report: Report,
    /// Active-active mode: the VIPs announced through the routing daemon.
    announcer: Option<crate::announce::Announcer>,
    /// The operator drained this node's announcements (`announce.drain`); kept
    /// across restarts by the existence of `drain_file`.
    drained: bool,
    drain_file: std::path::PathBuf,
}

/// The running configuration and what the operator changed at run time.
struct Running {
    options: Options,
    view: NodeView,
    /// What the next reload needs to parse only the services the file changes.
    memo: config::FileMemo,
    loaded_unix_ms: u64,
    /// Run-time server overrides (`vrrpctl server`) and their state file.
    servers: ServerControl,
}

/// The plan and the dataplane backend that applies it.
struct Kernel {
    selection: Selection,
    thread: DataplaneThread,
    plan: Plan,
    /// The desired state differs from what was last applied successfully.
    dirty: bool,
    /// Services whose health changed since the last successful apply, so the backend
    /// plans only those; `None` when that is not known (start, failure, reload).
    changed: Option<ChangeHint>,
    /// When the next retry of a failed apply is due, and its delay.
    retry: Option<(Instant, Duration)>,
    last_apply: Option<ApplyRecord>,
    applies: u64,
    apply_errors: u64,
    /// lc/wlc on the nft backend: the weights fed from the servers' connection
    /// counts (`None` on IPVS, which counts by itself).
    least_conn: Option<crate::least_conn::LeastConn>,
}

/// The health checker and what the loop has seen of it.
struct Health {
    runner: HealthRunner,
    /// The runner's counters as last exported to metrics.
    runner_seen: RunnerCounters,
    /// The last health transition of each server, for status.
    last_transitions: HashMap<TargetName, (HealthTransition, health::Time)>,
}

/// What lbd knows of vrrpd and sends it.
struct Vrrpd {
    roles: Roles,
    /// Service quorums on their way to vrrpd.
    tracks: TrackSender,
    /// Whether vrrpd was last seen running another configuration.
    config_differs: bool,
    prepares: u64,
    last_prepare: Option<LastPrepare>,
}

/// Connection-state sync with the peer.
struct PeerSync {
    /// The link (`[sync]` enabled, either backend).
    link: Option<SyncLink>,
    /// The last commit of the peer's entries (at prepare), for status.
    last_commit: Option<LastCommit>,
}

/// Metrics, systemd, the control socket's counters and recent errors.
struct Report {
    telemetry: Telemetry,
    /// What systemd has been told (`Type=notify`).
    notifier: ctl::systemd::Notifier,
    /// The control socket's connection counters (for status).
    control_stats: Arc<ctl::ServerStats>,
    errors: VecDeque<String>,
    /// Active/inactive connections per server, counted at scrape time.
    connection_gauges: Option<servers::ConnectionGauges>,
    /// IP forwarding on the node, read every second against what needs it.
    forwarding: ForwardingWatch,
    /// A reload dropped a view: free pages go back to the kernel at the next tick.
    trim_due: bool,
}

/// What the nft table counts: `[[service]] counters = true` anywhere, packets and
/// bytes too (a change re-reads the table and applies what differs).
fn counting_of(view: &NodeView) -> Counting {
    if view.services.iter().any(|s| s.counters) {
        Counting::Traffic
    } else {
        Counting::default()
    }
}

/// Runs lbd until `shutdown` resolves. SIGHUP reloads. Fails only at start-up
/// (backend, control socket, metrics listener); the ruleset is left in place on exit.
pub async fn run(
    options: Options,
    loaded: Loaded,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let config::LoadedNode {
        cluster,
        view: parsed,
        memo,
    } = loaded;
    check_health_needs(&parsed)?;
    // `auto` needs to know whether the services ask for what only nft does.
    let wanted = (parsed.dataplane.backend == config::BackendChoice::Auto).then(|| {
        Arc::unwrap_or_clone(
            desired::plan(
                &parsed,
                |_, _| ServerHealth::Up,
                BackendKind::Ipvs.capabilities(),
            )
            .state,
        )
    });
    let (dataplane, selection) =
        DataplaneThread::start(parsed.dataplane.backend, backend_settings(&parsed), wanted)?;
    tracing::info!(backend = selection.kind.name(), reason = %selection.reason, table = %parsed.dataplane.nft_table, "dataplane backend chosen");
    // Read before the first apply: a drained server gets no new connection from
    // a restarted lbd, not even briefly.
    let mut servers = ServerControl::open(&parsed, std::env::var_os("STATE_DIRECTORY").as_deref());
    // lc/wlc on nft: a thread counts the servers' connections and sends weights.
    let (least_conn_tx, mut least_conn_rx) = mpsc::unbounded_channel();
    let mut least_conn = if selection.kind == BackendKind::Nft {
        Some(
            crate::least_conn::LeastConn::start(least_conn_tx)
                .context("starting the least-connection feeder")?,
        )
    } else {
        drop(least_conn_tx);
        None
    };
    // Servers count as up until their checks say otherwise.
    let mut first_plan = desired::plan_with(
        &parsed,
        |_, _| ServerHealth::Up,
        &servers.overrides(),
        selection.kind.capabilities(),
    );
    if let Some(lc) = &mut least_conn {
        lc.planned(&mut first_plan.state, None);
    }
    // The first apply starts now, on the dataplane thread, beside what the start
    // prepares without touching the kernel or answering anyone (the metrics, the
    // health targets and runner, the forwarding check). What the backend cannot do
    // (a scheduler only the other one has) is refused before anything is sent, as
    // a reload of it would be, and nothing else starts before that check passed.
    let first = backend::first_apply(
        &dataplane,
        &parsed,
        Arc::clone(&first_plan.state),
        counting_of(&parsed),
    )?;
    // The whole file's model is not needed once this node's view is taken; the
    // view is copied so that what stays is packed, not scattered over the pages
    // the parser used (which then go back to the kernel: `release_free_memory`).
    let view = parsed.clone();
    drop((cluster, parsed));
    let targets = health_targets(&view);
    let telemetry = Telemetry::new(&view.cluster_name, Some(Box::new(dataplane.clone())));
    // Every documented series exists from the first scrape on, before the first
    // apply's outcome is known.
    telemetry.plan(&first_plan.services);
    telemetry.snat_capacity(desired::snat_capacity(&view.nat));
    // Read before the metrics endpoint serves: the first scrape has the real value.
    let mut forwarding = ForwardingWatch::default();
    forwarding.check(&view, &telemetry, unix_ms());
    servers.attach(telemetry.registry());
    let connection_gauges = servers::ConnectionGauges::register(telemetry.registry());
    if let Some(g) = &connection_gauges {
        g.set_services(&first_plan.services);
    }
    // Each node its own seed: the two members' checks of one server do not
    // arrive at the same moments.
    let seed = view.name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let mut settings = RunnerSettings::default();
    settings.scheduler.seed = seed;
    // The checks (thousands a second at 10,000s of servers) on a thread of their
    // own: the loop's requests (a reload's reply) do not queue behind them.
    settings.own_thread = true;
    let (health, mut health_rx) =
        HealthRunner::new(targets, settings).context("starting health checks")?;
    let refused = |e| {
        anyhow::Error::new(ViewError::DataplaneRefuses(e)).context(format!(
            "the configuration asks for what the {} backend cannot do",
            selection.kind.name()
        ))
    };
    let flowtable = match first.checked.await {
        Ok(set_up) => set_up?,
        // The apply stopped before its check: either the backend refuses the
        // configuration (the start ends here, nothing was sent), or the kernel did
        // not answer (the apply is retried as any failed one).
        Err(_) => {
            backend::validate(selection.kind, &first_plan.state).map_err(refused)?;
            backend::set_up_flowtable(&dataplane, &view).await?
        }
    };
    match flowtable {
        Some(devices) => {
            tracing::info!(table = %dataplane::nft::flowtable::table_name(&view.dataplane.nft_table), devices = %devices.join(","), "flowtable on: established balanced connections offloaded")
        }
        None => tracing::debug!("flowtable off"),
    }
    // Conntrack entries (with their NAT mappings) travel over the sync link on
    // either backend; with IPVS the kernel's sync daemon carries IPVS's own
    // connection table beside it (set_sync_role): a pooled SNAT port survives a
    // takeover only if the backup has both.
    let sync = if view.sync.enabled {
        Some(SyncLink::start(&view, telemetry.registry()).context("starting connection sync")?)
    } else {
        None
    };

    // Installed before the control socket answers: a SIGHUP from a tool that saw the
    // socket must reload, not kill the daemon (the signal's default action).
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut usr1 = signal(SignalKind::user_defined1()).context("installing the SIGUSR1 handler")?;
    let mut usr2 = signal(SignalKind::user_defined2()).context("installing the SIGUSR2 handler")?;
    let (control_tx, mut control_rx) = mpsc::channel::<ControlRequest>(64);
    let perms = ctl::SocketPerms {
        group: view.control.group.as_deref().map(ctl::SocketGroup::parse),
    };
    let server = ctl::Server::bind(&view.control.lbd_socket, perms)
        .await
        .context("binding the control socket")?
        .with_identity("lbd", env!("CARGO_PKG_VERSION"))
        .with_limits(ctl::ServerLimits {
            max_connections: view.control.max_connections as usize,
            // vrrpd's prepare at a takeover, and its track.set answers, never wait
            // behind other clients.
            peer_daemon: Some("vrrpd".to_owned()),
            idle_timeout: Duration::from_millis(u64::from(view.control.idle_timeout_ms)),
            ..ctl::ServerLimits::default()
        });
    let control_stats = server.stats();
    telemetry.control_socket(Arc::clone(&control_stats));
    // After every collector is registered: all series are there at the first scrape.
    let _metrics = if view.metrics.enabled {
        Some(
            metrics::MetricsServer::start_with_status(
                view.metrics.lbd_listen,
                telemetry.registry().clone(),
                crate::status_page::status_page(
                    control_handler(control_tx.clone()),
                    telemetry.clone(),
                ),
            )
            .context("starting the metrics endpoint")?,
        )
    } else {
        None
    };
    let (stop_server, server_stopped) = watch::channel(false);
    let serving = tokio::spawn(server.serve(
        Arc::new(control_handler(control_tx.clone())),
        ctl::EventBus::new(ctl::DEFAULT_BACKLOG),
        server_stopped,
    ));

    let (roles_tx, mut roles_rx) = mpsc::unbounded_channel();
    // Active-active runs no VRRP: nobody to follow (and no warning that vrrpd is away).
    let follower = if view.mode == config::ClusterMode::ActiveActive {
        tokio::spawn(async move {
            let _keep = roles_tx;
            std::future::pending::<()>().await
        })
    } else {
        tokio::spawn(roles::follow(view.control.vrrpd_socket.clone(), roles_tx))
    };
    let tracks = TrackSender::start(
        view.control.vrrpd_socket.clone(),
        sync.as_ref().map(SyncLink::incomplete),
    );
    telemetry.vrrpd_connected(false);
    let mut daemon = Daemon {
        config: Running {
            options,
            view,
            memo,
            loaded_unix_ms: unix_ms(),
            servers,
        },
        kernel: Kernel {
            selection,
            thread: dataplane,
            plan: Plan::default(),
            dirty: true,
            changed: None,
            retry: None,
            last_apply: None,
            applies: 0,
            apply_errors: 0,
            least_conn,
        },
        health: Health {
            runner: health,
            runner_seen: RunnerCounters::default(),
            last_transitions: HashMap::new(),
        },
        vrrpd: Vrrpd {
            roles: Roles::default(),
            tracks,
            config_differs: false,
            prepares: 0,
            last_prepare: None,
        },
        sync: PeerSync {
            link: sync,
            last_commit: None,
        },
        report: Report {
            telemetry,
            notifier: ctl::systemd::Notifier::new(),
            control_stats,
            errors: VecDeque::new(),
            connection_gauges,
            forwarding,
            trim_due: false,
        },
        announcer: None,
        drained: false,
        drain_file: PathBuf::new(),
    };
    daemon.drain_file = ctl::daemon::state_path(
        &daemon.config.view.control.lbd_socket,
        daemon.config.view.control.state_dir.as_deref(),
        std::env::var_os("STATE_DIRECTORY").as_deref(),
        "lbd",
    )
    .with_extension("announce-drained");
    daemon.drained = daemon.drain_file.exists();
    if daemon.drained {
        tracing::warn!(file = %daemon.drain_file.display(), "this node's announcements are drained (`vrrpctl announce resume` ends it)");
    }
    if let (config::ClusterMode::ActiveActive, Some(settings)) =
        (daemon.config.view.mode, daemon.config.view.announce.clone())
    {
        tracing::info!(
            daemon = settings.daemon.name(),
            "active-active: announcing the VIPs of healthy services"
        );
        let owned = crate::announce::owned(&daemon.config.view);
        daemon.announcer = Some(crate::announce::Announcer::start(settings, owned));
    }

    // The first apply's plan becomes the running one (its notes logged); its
    // outcome is what the start waits for. It adopted the table a previous lbd left,
    // or read the kernel back and sent what differs; systemd hears READY=1 once an
    // apply has succeeded (see `record_apply`).
    daemon.replanned_all(first_plan);
    let outcome = match first.applied.await {
        Ok(Ok(Some(report))) => Ok(report),
        Ok(Err(e)) => Err(e.into()),
        // Stopped after its check only when the flowtable failed (returned above).
        Ok(Ok(None)) | Err(_) => Err(backend::ThreadGone.into()),
    };
    let _ = daemon.applied("start", outcome);
    tracing::info!(node = %daemon.config.view.name, services = daemon.config.view.services.len(), snat_rules = daemon.config.view.nat.len(), "lbd running");
    let mut watchdog = daemon.report.notifier.watchdog();

    let mut sample = tokio::time::interval(Duration::from_secs(1));
    sample.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        let retry_at = daemon.kernel.retry.map(|(at, _)| at);
        let retry = async {
            match retry_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = &mut shutdown => break,
            _ = hangup.recv() => match daemon.reload(false).await {
                Ok(report) => tracing::info!(changed = %report.summary(), "reloaded on SIGHUP"),
                Err(why) => tracing::error!("reload refused, running configuration unchanged:\n{why}"),
            },
            _ = usr1.recv() => {
                let status = servers::with_connection_counts(daemon.status().await, daemon.counted_services()).await;
                let text = serde_json::to_string_pretty(&status).unwrap_or_default();
                ctl::daemon::write_dump("SIGUSR1", "state", &daemon.config.view.control.lbd_socket, "data", &text);
            }
            _ = usr2.recv() => {
                // Rendering may read kernel counters (seconds at worst): off the loop.
                let registry = daemon.report.telemetry.registry().clone();
                let socket = daemon.config.view.control.lbd_socket.clone();
                tokio::task::spawn_blocking(move || {
                    use prometheus::Encoder;
                    let mut out = Vec::new();
                    let _ = prometheus::TextEncoder::new().encode(&registry.gather(), &mut out);
                    ctl::daemon::write_dump("SIGUSR2", "statistics", &socket, "stats", &String::from_utf8_lossy(&out));
                });
            }
            Some(request) = control_rx.recv() => daemon.on_control(request).await,
            Some(event) = health_rx.recv() => {
                daemon.on_health(event);
                // A burst of transitions becomes one apply.
                while let Ok(more) = health_rx.try_recv() {
                    daemon.on_health(more);
                }
                let _ = daemon.reconcile("health").await;
            }
            Some(update) = roles_rx.recv() => daemon.on_role(update).await,
            Some(mut update) = least_conn_rx.recv() => {
                // Only the latest weights matter.
                while let Ok(more) = least_conn_rx.try_recv() {
                    update.extend(more);
                }
                daemon.on_least_conn(update).await;
            }
            () = retry => {
                daemon.retry_due();
                let _ = daemon.reconcile("retry").await;
            }
            _ = sample.tick() => {
                if std::mem::take(&mut daemon.report.trim_due) {
                    tokio::task::spawn_blocking(release_free_memory);
                }
                daemon.sample_checks();
                daemon.report.telemetry.least_conn_events_lost(crate::least_conn::events_lost());
                daemon.check_forwarding();
                daemon.sample_announce();
            }
            // Pinged from this loop: a loop stuck in a handler stops the pings.
            () = watchdog.tick() => {}
        }
    }

    daemon.report.notifier.stopping();
    // Routers stop sending this node new flows before its rules could go away.
    if let Some(announcer) = daemon.announcer.take() {
        match tokio::time::timeout(Duration::from_secs(15), announcer.withdraw_all()).await {
            Ok(Ok(vips)) => tracing::info!(withdrawn = vips.len(), "VIPs withdrawn"),
            Ok(Err(e)) => tracing::error!(error = %e, "withdrawing the VIPs"),
            Err(_) => tracing::error!("withdrawing the VIPs took more than 15 s"),
        }
    }

    tracing::info!("stopping; the dataplane stays in place so that connections continue (the next start adopts it; `lbd --teardown` removes it)");
    follower.abort();
    let _ = stop_server.send(true);
    if tokio::time::timeout(Duration::from_secs(2), serving)
        .await
        .is_err()
    {
        tracing::warn!("control server did not stop within 2 s");
    }
    daemon.health.runner.shutdown().await;
    // For the next start: the table as this lbd committed it, if nobody changed it.
    if !daemon.kernel.dirty {
        let written = daemon
            .kernel
            .thread
            .run(|dp| match dp {
                ChosenBackend::Nft(nft) => nft.write_adoption_record().map_err(|e| e.to_string()),
                _ => Ok(false),
            })
            .await;
        match written {
            Ok(Ok(true)) => tracing::debug!("nft adoption record written"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "nft adoption record not written: the next start reads the table back")
            }
            _ => {}
        }
    }
    tracing::info!("lbd stopped");
    Ok(())
}

/// `lbd --teardown`: removes the table lbd owns (and nothing else).
pub fn teardown(view: &NodeView) -> anyhow::Result<()> {
    let (dataplane, selection) =
        DataplaneThread::start(view.dataplane.backend, backend_settings(view), None)?;
    let table = view.dataplane.nft_table.clone();
    dataplane
        .run_blocking(Duration::from_secs(30), move |dp| {
            dp.teardown().map_err(|e| e.to_string())?;
            // The flowtable's table too (nothing when there is none).
            dataplane::nft::flowtable::Flowtable::new(&table)
                .and_then(|ft| ft.remove())
                .map_err(|e| e.to_string())
        })
        .ok_or_else(|| anyhow::anyhow!("the dataplane did not answer within 30 s"))?
        .map_err(|e| anyhow::anyhow!("teardown: {e}"))?;
    tracing::info!(table = %view.dataplane.nft_table, backend = selection.kind.name(), "dataplane removed");
    Ok(())
}

/// Plans `view` with every server up and validates the result as the backend would
/// (without touching the kernel): a reload that fails here is refused. With
/// `services`, only those services (a reload's added and changed ones) and the SNAT
/// rules are validated: the others were when they were loaded, and building the
/// whole table's layout again was a quarter of a reload at 10,000 services.
pub fn check_view(
    view: &NodeView,
    selection: &Selection,
    services: Option<&BTreeSet<String>>,
) -> Result<(), ViewError> {
    check_health_needs(view)?;
    let up = |_: &str, _: &str| ServerHealth::Up;
    let caps = selection.kind.capabilities();
    let plan = match services {
        Some(names) => desired::plan_some(
            view,
            |s| names.contains(&s.name),
            up,
            &desired::Overrides::new(),
            caps,
        ),
        None => desired::plan(view, up, caps),
    };
    let state = Arc::unwrap_or_clone(plan.state);
    backend::validate(selection.kind, &state).map_err(ViewError::DataplaneRefuses)
}

/// The IPVS sync role for the known VRRP roles: master while any group is MASTER,
/// else backup (receiving the peer's connections, ready for a takeover).
pub fn sync_role(roles: &Roles) -> SyncRole {
    if roles.groups.values().any(|s| *s == VrrpState::Master) {
        SyncRole::Master
    } else {
        SyncRole::Backup
    }
}

/// Logs a service's quorum met or lost when `old` (whether it was met; `None`: the
/// service had no quorum) says it was otherwise.
fn log_quorum(old: Option<bool>, s: &desired::ServicePlan) {
    let Some(q) = &s.quorum else {
        return;
    };
    if old == Some(q.met) {
        return;
    }
    if q.met {
        tracing::info!(service = %s.name, up = q.up, quorum = q.min, "quorum met");
    } else {
        tracing::warn!(service = %s.name, up = q.up, quorum = q.min, group = q.group.as_deref().unwrap_or("-"), delta = q.priority_delta, "quorum lost: asking vrrpd to lower the group's priority");
    }
}

impl Daemon {
    /// The servers whose checks say down, by service (usually few: no copy of
    /// every target's status, no key built per server).
    fn down_servers(&self) -> HashMap<String, HashSet<String>> {
        let mut down: HashMap<String, HashSet<String>> = HashMap::new();
        for name in self.health.runner.down_targets() {
            down.entry(name.service.to_string())
                .or_default()
                .insert(name.server.to_string());
        }
        down
    }

    fn replan(&mut self) {
        let down = self.down_servers();
        let health = |service: &str, server: &str| match down.get(service) {
            Some(servers) if servers.contains(server) => ServerHealth::Down,
            _ => ServerHealth::Up,
        };
        let overrides = self.config.servers.overrides();
        let caps = self.kernel.selection.kind.capabilities();
        // Since the last plan only the services of the hint can have changed (a
        // reload's, a health change's, a server override's): those are planned again,
        // in place. Without a hint (start, a failed apply, a reload that changed the
        // checks, the node or the groups), everything.
        let replanned = match &self.kernel.changed {
            Some(hint) => desired::replan(
                &mut self.kernel.plan,
                &self.config.view,
                &hint.services,
                health,
                &overrides,
                caps,
            ),
            None => None,
        };
        let Some(replanned) = replanned else {
            let mut plan = desired::plan_with(&self.config.view, health, &overrides, caps);
            if let Some(lc) = &mut self.kernel.least_conn {
                lc.planned(&mut plan.state, None);
            }
            self.replanned_all(plan);
            return;
        };
        if let (Some(lc), Some(hint)) = (&mut self.kernel.least_conn, &self.kernel.changed) {
            lc.planned(&mut self.kernel.plan.state, Some(&hint.services));
        }
        for note in &replanned.notes_added {
            tracing::warn!("{note}");
        }
        if replanned.state_changed {
            self.kernel.dirty = true;
        }
        self.publish_plan();
        for (i, old) in &replanned.services {
            if let Some(s) = self.kernel.plan.services.get(*i) {
                log_quorum(old.quorum.as_ref().map(|q| q.met), s);
            }
        }
    }

    /// A plan of every service replaces the running one.
    fn replanned_all(&mut self, plan: Plan) {
        let known: HashSet<&String> = self.kernel.plan.notes.iter().collect();
        for note in &plan.notes {
            if !known.contains(note) {
                tracing::warn!("{note}");
            }
        }
        if plan.state != self.kernel.plan.state {
            self.kernel.dirty = true;
        }
        // By name, and only when some service has a quorum.
        let old_met: HashMap<String, Option<bool>> =
            if plan.services.iter().any(|s| s.quorum.is_some()) {
                self.kernel
                    .plan
                    .services
                    .iter()
                    .map(|o| (o.name.clone(), o.quorum.as_ref().map(|q| q.met)))
                    .collect()
            } else {
                HashMap::new()
            };
        self.kernel.plan = plan;
        self.publish_plan();
        for s in self.kernel.plan.services.iter() {
            if let Some(old) = old_met.get(&s.name) {
                log_quorum(*old, s);
            }
        }
    }

    /// The plan to the metrics, the connection gauges and vrrpd's priority tracks.
    fn publish_plan(&mut self) {
        let plan = &self.kernel.plan;
        self.report.telemetry.plan(&plan.services);
        if let Some(g) = &self.report.connection_gauges {
            g.set_services(&plan.services);
        }
        self.report
            .telemetry
            .snat_capacity(desired::snat_capacity(&self.config.view.nat));
        self.vrrpd.tracks.set(desired::priority_tracks(plan));
    }

    /// Weights from the least-connection feeder: the services whose weights changed
    /// are applied alone (no replan, no log line at info: they change every few
    /// hundred ms). While an apply is pending (failed, or no hint), they wait for it.
    async fn on_least_conn(&mut self, update: crate::least_conn::Update) {
        let Some(lc) = &mut self.kernel.least_conn else {
            return;
        };
        let names = lc.feed(&mut self.kernel.plan.state, update);
        if names.is_empty() || self.kernel.dirty || self.kernel.changed.is_none() {
            return;
        }
        let state = Arc::clone(&self.kernel.plan.state);
        let hint = ChangeHint::for_services(names);
        let result = match self
            .kernel
            .thread
            .run(move |dp| dp.apply_changed(&state, &hint))
            .await
        {
            Ok(r) => r.map_err(ApplyError::from),
            Err(gone) => Err(gone.into()),
        };
        match &result {
            Ok(report) => tracing::debug!(
                changes = report.changes(),
                duration_ms = ctl::logging::ms(report.duration),
                "least-connection weights applied"
            ),
            Err(_) => {
                self.kernel.changed = None;
                self.record_apply("least-connection weights", &result);
            }
        }
    }

    /// Plans and applies; the backend sends only the difference (nothing if none).
    async fn reconcile(&mut self, why: &str) -> Result<ApplyReport, ApplyError> {
        self.replan();
        let state = Arc::clone(&self.kernel.plan.state);
        let hint = self.kernel.changed.take();
        let counting = counting_of(&self.config.view);
        let result = match self
            .kernel
            .thread
            .run(move |dp| {
                if let ChosenBackend::Nft(nft) = dp {
                    nft.set_counting(counting);
                }
                match &hint {
                    Some(hint) => dp.apply_changed(&state, hint),
                    None => dp.apply(&state),
                }
            })
            .await
        {
            Ok(r) => r.map_err(ApplyError::from),
            Err(gone) => Err(gone.into()),
        };
        self.applied(why, result)
    }

    /// What an apply's outcome changes: the hint for the next one, the record, the
    /// announcements.
    fn applied(
        &mut self,
        why: &str,
        result: Result<ApplyReport, ApplyError>,
    ) -> Result<ApplyReport, ApplyError> {
        // After a success only later health changes need planning; after a failure
        // nobody knows what the kernel holds, so the next apply compares everything.
        self.kernel.changed = result.as_ref().ok().map(|_| ChangeHint::default());
        self.record_apply(why, &result);
        self.announce(result.is_ok());
        result
    }

    fn record_apply(&mut self, why: &str, result: &Result<ApplyReport, ApplyError>) {
        match result {
            Ok(report) => {
                self.kernel.applies += 1;
                self.kernel.dirty = false;
                self.kernel.retry = None;
                self.report
                    .telemetry
                    .applied(report.duration, unix_ms() as f64 / 1000.0);
                if report.changes() > 0 || report.reread {
                    tracing::info!(
                        why,
                        changes = report.changes(),
                        services = %report.services,
                        servers = %report.servers,
                        nat_rules = %report.nat_rules,
                        kernel = %report.kernel,
                        messages = report.messages,
                        reread = report.reread,
                        duration_ms = ctl::logging::ms(report.duration),
                        "dataplane applied"
                    );
                } else {
                    tracing::debug!(
                        why,
                        duration_ms = ctl::logging::ms(report.duration),
                        "dataplane current"
                    );
                }
            }
            Err(e) => {
                self.kernel.apply_errors += 1;
                self.kernel.dirty = true;
                self.report.telemetry.apply_failed();
                let delay = self
                    .kernel
                    .retry
                    .map_or(RETRY_FIRST, |(_, d)| (d * 2).min(RETRY_MAX));
                self.kernel.retry = Some((Instant::now() + delay, delay));
                tracing::error!(why, error = %e, retry_in_ms = delay.as_millis() as u64, "dataplane apply failed; the previous state stays");
                self.report
                    .errors
                    .push_back(format!("{}: apply ({why}): {e}", unix_ms()));
                while self.report.errors.len() > ERRORS_KEPT {
                    self.report.errors.pop_front();
                }
            }
        }
        self.kernel.last_apply = Some(ApplyRecord {
            why: why.to_owned(),
            unix_ms: unix_ms(),
            result: match result {
                Ok(report) => Ok(report.clone()),
                Err(e) => Err(e.to_string()),
            },
        });
        if result.is_ok() {
            let status = self.systemd_status();
            self.report.notifier.ready(&status);
        } else if self.report.notifier.is_ready() {
            let status = self.systemd_status();
            self.report.notifier.status(&status);
        }
    }

    /// Active-active: the announcer's state into the metrics.
    fn sample_announce(&self) {
        if let Some(a) = &self.announcer {
            let s = a.state();
            let established = s.peers.iter().filter(|p| p.state == "Established").count();
            self.report.telemetry.announce(
                s.wanted.len(),
                s.announced.len(),
                established,
                self.drained,
                s.error.is_none(),
            );
        }
    }

    /// `announce.drain` / `announce.resume`.
    fn announce_drain(&mut self, drain: bool) -> Result<Value, ReplyError> {
        if self.announcer.is_none() {
            return Err(ReplyError::failed(
                "this cluster is active-backup: nothing is announced (take the node out with `vrrpctl maintenance`)",
            ));
        }
        let written = if drain {
            std::fs::write(&self.drain_file, b"drained\n")
        } else {
            match std::fs::remove_file(&self.drain_file) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other,
            }
        };
        if let Err(e) = written {
            return Err(ReplyError::failed(format!(
                "{}: {e}; nothing changed",
                self.drain_file.display()
            )));
        }
        self.drained = drain;
        tracing::info!(
            drained = drain,
            "announcements {}",
            if drain {
                "drained: every VIP withdrawn"
            } else {
                "resumed"
            }
        );
        let applied = self
            .kernel
            .last_apply
            .as_ref()
            .is_some_and(|a| a.result.is_ok());
        self.announce(applied);
        reply_value(&self.announce_status())
    }

    /// Active-active: what this node announces, for status.
    fn announce_status(&self) -> Option<ctl::contract::lbd::AnnounceStatus> {
        let a = self.announcer.as_ref()?;
        Some(a.state().to_status(&self.config.view.members, self.drained))
    }

    /// Active-active: hands the VIPs this node should announce to the announcer.
    fn announce(&self, applied: bool) {
        if let Some(a) = &self.announcer {
            a.set(
                crate::announce::wanted(&self.kernel.plan, applied, self.drained),
                crate::announce::owned(&self.config.view),
            );
        }
    }

    /// STATUS= for systemd: what is served, or that the dataplane apply failed.
    fn systemd_status(&self) -> String {
        let servers = self.kernel.plan.services.iter().flat_map(|s| &s.servers);
        let (up, total) = servers.fold((0, 0), |(up, total), b| {
            (up + usize::from(b.health.is_up()), total + 1)
        });
        let serving = format!(
            "{} services, {up} of {total} servers up, backend {}",
            self.kernel.plan.services.len(),
            self.kernel.selection.kind.name()
        );
        match self.kernel.last_apply.as_ref().map(|a| &a.result) {
            Some(Err(e)) => format!("dataplane apply failed, retrying: {e}; {serving}"),
            _ => serving,
        }
    }

    /// Keeps the backoff delay for the next failure while the retry runs.
    fn retry_due(&mut self) {
        if let Some((_, d)) = self.kernel.retry {
            self.kernel.retry = Some((Instant::now() + RETRY_MAX, d));
        }
    }

    fn on_health(&mut self, event: HealthEvent) {
        match event {
            HealthEvent::StateChanged(t) => {
                if let Some(hint) = &mut self.kernel.changed {
                    hint.services.insert(t.target.service.to_string());
                }
                self.report.telemetry.transition(
                    &t.target.service,
                    &t.target.server,
                    &t.to.to_string(),
                );
                let record = HealthTransition {
                    from: t.from.to_string(),
                    to: t.to.to_string(),
                    reason: t.reason.to_string(),
                    last: t.last.to_string(),
                    unix_ms: unix_ms(),
                    ago_ms: 0,
                };
                self.health
                    .last_transitions
                    .insert(t.target, (record, t.at));
            }
            HealthEvent::Dampened(d) => {
                self.report
                    .telemetry
                    .dampened(&d.target.service, &d.target.server);
            }
        }
    }

    fn sample_checks(&mut self) {
        let counters = self.health.runner.counters();
        // Only the targets checked since the last sample (the scheduler lists them);
        // no pass over every target, no copy of every status.
        let mut fresh = Vec::new();
        self.health.runner.take_fresh(|target, last| {
            if let Some(d) = last {
                fresh.push((target.name.clone(), d));
            }
        });
        let targets = self.health.runner.len();
        self.report
            .telemetry
            .health_runner(&counters, &self.health.runner_seen, targets);
        self.health.runner_seen = counters;
        if fresh.is_empty() {
            return;
        }
        let services: HashMap<&str, &desired::ServicePlan> = self
            .kernel
            .plan
            .services
            .iter()
            .map(|s| (s.name.as_str(), s.as_ref()))
            .collect();
        for (name, duration) in fresh {
            let check = services
                .get(&*name.service)
                .and_then(|s| s.servers.iter().find(|b| *b.name == *name.server))
                .and_then(|b| b.check.as_deref())
                .unwrap_or("-");
            self.report
                .telemetry
                .check_done(&name.service, &name.server, check, duration);
        }
    }

    /// Reads the forwarding sysctls against what the running configuration needs.
    fn check_forwarding(&mut self) {
        self.report
            .forwarding
            .check(&self.config.view, &self.report.telemetry, unix_ms());
    }

    /// Whether vrrpd runs a configuration file other than lbd's (None: not known).
    fn config_differs_from_vrrpd(&self) -> Option<bool> {
        self.vrrpd
            .roles
            .vrrpd_fingerprint
            .as_ref()
            .map(|f| *f != self.config.view.fingerprint)
    }

    /// Says once (log, metric) when vrrpd and lbd start or stop running different
    /// configurations: a reload of one and not the other, or different files.
    fn note_config_difference(&mut self) {
        let differs = self.config_differs_from_vrrpd().unwrap_or(false);
        if differs == self.vrrpd.config_differs {
            return;
        }
        self.vrrpd.config_differs = differs;
        self.report.telemetry.config_differs(differs);
        if differs {
            tracing::warn!(
                lbd = %self.config.view.fingerprint,
                vrrpd = self.vrrpd.roles.vrrpd_fingerprint.as_deref().unwrap_or("unknown"),
                "lbd and vrrpd run different configurations: reload both (vrrpctl reload) or check that they read the same file"
            );
        } else {
            tracing::info!(fingerprint = %self.config.view.fingerprint, "lbd and vrrpd run the same configuration again");
        }
    }

    async fn on_role(&mut self, update: RoleUpdate) {
        let changes = self.vrrpd.roles.update(update);
        self.note_config_difference();
        for (group, from, to) in &changes {
            tracing::info!(group = %group, from = from.map_or("unknown", VrrpState::name), to = %to, "sync group role");
        }
        self.report
            .telemetry
            .vrrpd_connected(self.vrrpd.roles.connected);
        if !changes.is_empty() {
            let role = sync_role(&self.vrrpd.roles);
            self.set_sync_role(role).await;
            if let Some(link) = self.sync.link.clone() {
                let master = role == SyncRole::Master;
                // Blocking (becoming BACKUP writes everything held into the kernel), so
                // on the blocking pool; awaited, so that role changes and prepares reach
                // the link in the order they happened.
                let _ = tokio::task::spawn_blocking(move || link.follow_role(master)).await;
            }
        }
    }

    /// The IPVS connection-sync daemon follows the role (IPVS backend with [sync]
    /// enabled only; the nft backend has no kernel sync daemon).
    async fn set_sync_role(&mut self, role: SyncRole) {
        let (Some(iface), true) = (
            self.config.view.sync.interface.clone(),
            self.config.view.sync.enabled,
        ) else {
            return;
        };
        let id = self.config.view.sync.ipvs_sync_id;
        let result = self
            .kernel
            .thread
            .run(move |b| {
                b.ipvs()
                    .map(|i| i.set_sync_role(role, &iface, id).map_err(|e| e.to_string()))
            })
            .await;
        if let (Ok(Some(Ok(true))), SyncRole::Backup, Some(link)) = (&result, role, &self.sync.link)
        {
            link.want_full_dump(crate::sync::IPVS_BACKUP_STARTED);
        }
        if let Ok(Some(Err(e))) = result {
            tracing::error!(error = %e, ?role, "IPVS sync daemon");
            self.report
                .errors
                .push_back(format!("{}: IPVS sync daemon ({role:?}): {e}", unix_ms()));
            while self.report.errors.len() > ERRORS_KEPT {
                self.report.errors.pop_front();
            }
        }
    }

    async fn on_control(&mut self, request: ControlRequest) {
        let answer = match request.command {
            Command::Status => {
                // The conntrack dump (a large table takes a while) runs beside the
                // loop: a prepare arriving meanwhile is not held up by it.
                let status = self.status().await;
                let counted = self.counted_services();
                tokio::spawn(async move {
                    let status = servers::with_connection_counts(status, counted).await;
                    let _ = request.reply.send(reply_value(&status));
                });
                return;
            }
            Command::Reload { force } => match self.reload(force).await {
                Ok(report) => {
                    tracing::info!(changed = %report.summary(), force, "reloaded on request");
                    reply_value(&report)
                }
                Err(why) => {
                    tracing::error!("reload refused, running configuration unchanged:\n{why}");
                    Err(ReplyError::failed(format!(
                        "reload refused, running configuration unchanged:\n{why}"
                    )))
                }
            },
            Command::Prepare(p) => self.prepare(p).await.and_then(|r| reply_value(&r)),
            Command::ServerSet {
                service,
                server,
                value,
            } => self
                .server_set(&service, &server, value)
                .await
                .and_then(|r| reply_value(&r)),
            Command::ServerList => reply_value(&ServerListReply {
                node: self.config.view.name.clone(),
                overrides: self.config.servers.entries(),
            }),
            Command::ServerClear => reply_value(&self.server_clear().await),
            Command::AnnounceDrain(drain) => self.announce_drain(drain),
            Command::ServerRefused(e) => {
                self.config.servers.rejected();
                tracing::warn!(error = %e.message, "server command refused");
                Err(e)
            }
        };
        // The requester may have given up (vrrpd's budget): nothing to do then.
        let _ = request.reply.send(answer);
    }

    /// What the connection counts look for: each planned service and its servers.
    fn counted_services(&self) -> Vec<CountedService> {
        self.kernel
            .plan
            .services
            .iter()
            .filter_map(|s| CountedService::of(s))
            .collect()
    }

    /// `server.drain|disable|weight|enable`: one server's override, kept in the
    /// state file, applied through the normal apply (one batch).
    async fn server_set(
        &mut self,
        service: &str,
        server: &str,
        value: Option<ServerOverride>,
    ) -> Result<ServerReply, ReplyError> {
        if let Err(why) = servers::resolve(&self.config.view, service, server) {
            return Err(servers::refuse(&self.config.servers, why));
        }
        let previous = self.config.servers.set(service, server, value, unix_ms());
        let persisted = self.config.servers.store();
        if let Some(hint) = &mut self.kernel.changed {
            hint.services.insert(service.to_owned());
        }
        let apply = self.reconcile("server").await;
        let planned = self
            .kernel
            .plan
            .services
            .iter()
            .find(|s| s.name == service)
            .and_then(|s| s.servers.iter().find(|b| *b.name == *server));
        let reply = ServerReply {
            node: self.config.view.name.clone(),
            service: service.to_owned(),
            server: server.to_owned(),
            server_override: value,
            previous,
            state: planned.map(|b| name_of(&b.state)).unwrap_or_default(),
            weight: planned.map_or(0, |b| b.weight),
            effective_weight: planned.map_or(0, |b| b.effective_weight),
            persisted,
            apply: apply_outcome(&apply),
        };
        tracing::info!(service, server, what = value.map_or_else(|| "enable (configuration)".to_owned(), |o| o.to_string()), state = %reply.state, effective_weight = reply.effective_weight, persisted, "server override set on this node");
        Ok(reply)
    }

    /// `server.clear`: every override goes; the configuration rules again.
    async fn server_clear(&mut self) -> ServerClearReply {
        let cleared = self.config.servers.clear_all();
        let persisted = self.config.servers.store();
        if let Some(hint) = &mut self.kernel.changed {
            hint.services
                .extend(cleared.iter().map(|e| e.service.clone()));
        }
        let apply = self.reconcile("server").await;
        tracing::info!(
            cleared = cleared.len(),
            persisted,
            "server overrides cleared on this node"
        );
        ServerClearReply {
            node: self.config.view.name.clone(),
            cleared,
            persisted,
            apply: apply_outcome(&apply),
        }
    }

    /// Takeover: make sure the dataplane holds the current desired state. The apply
    /// checks the kernel's ruleset generation and sends nothing if all is current.
    async fn prepare(&mut self, p: PrepareParams) -> Result<PrepareReply, ReplyError> {
        let started = std::time::Instant::now();
        let was_dirty = self.kernel.dirty;
        let result = self.reconcile("prepare").await;
        // This node is taking over: it sends connection state from now on.
        self.set_sync_role(SyncRole::Master).await;
        // The peer's connections go in only once the rules that match them are there.
        let committed = if result.is_ok() {
            self.commit_synced().await
        } else {
            None
        };
        let took = started.elapsed();
        self.vrrpd.prepares += 1;
        self.report.telemetry.prepared(result.is_ok(), took);
        let group = p.group.clone();
        match result {
            Ok(report) => {
                let done = if report.changes() > 0 {
                    format!("dataplane applied: {} changes", report.changes())
                } else if report.reread {
                    "dataplane read back and found current".to_owned()
                } else {
                    "dataplane verified current".to_owned()
                };
                let reply = PrepareReply {
                    prepared: true,
                    group: group.clone(),
                    instances: p.instances,
                    was_dirty,
                    done,
                    changes: report.changes(),
                    duration_ms: ms(took),
                    backend: self.kernel.selection.kind.name().to_owned(),
                    sync: committed,
                };
                tracing::info!(group = group.as_deref().unwrap_or("-"), done = %reply.done, duration_ms = reply.duration_ms, "prepared for takeover");
                self.vrrpd.last_prepare = Some(LastPrepare {
                    unix_ms: unix_ms(),
                    group,
                    reply: Some(reply.clone()),
                    error: None,
                });
                Ok(reply)
            }
            Err(e) => {
                self.vrrpd.last_prepare = Some(LastPrepare {
                    unix_ms: unix_ms(),
                    group,
                    reply: None,
                    error: Some(e.to_string()),
                });
                Err(ReplyError::failed(format!(
                    "the dataplane could not be applied: {e}"
                )))
            }
        }
    }

    /// Commits the connection entries received from the peer into the kernel; the
    /// report (or error) for the prepare reply. `None` without a sync link.
    async fn commit_synced(&mut self) -> Option<SyncCommit> {
        let link = self.sync.link.clone()?;
        let result = tokio::task::spawn_blocking(move || link.commit())
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        let value = match result {
            Ok(report) => {
                let failed: Vec<String> = report
                    .batch
                    .failed
                    .iter()
                    .take(3)
                    .map(|(t, errno)| format!("{t:?}: errno {errno}"))
                    .collect();
                tracing::info!(created = report.batch.created, replaced = report.batch.replaced, updated = report.batch.updated, removed = report.removed, failed = report.batch.failed.len(), expired = report.expired, elapsed_ms = ctl::logging::ms(report.elapsed), first_failures = %failed.join("; "), "committed the peer's connections");
                sync::commit_status(&report)
            }
            Err(e) => {
                tracing::error!(error = %e, "committing the peer's connections failed");
                self.report
                    .errors
                    .push_back(format!("{}: sync commit: {e}", unix_ms()));
                while self.report.errors.len() > ERRORS_KEPT {
                    self.report.errors.pop_front();
                }
                SyncCommit {
                    error: Some(e),
                    ..SyncCommit::default()
                }
            }
        };
        self.sync.last_commit = Some(LastCommit {
            unix_ms: unix_ms(),
            report: value.clone(),
        });
        Some(value)
    }

    /// Re-reads the configuration; refused files change nothing (neither here nor in
    /// the kernel). Accepted ones update health targets (unchanged targets keep
    /// their state) and apply the difference.
    ///
    /// A file that drops most of the running services (a file cut short, a section
    /// lost in an edit) is refused unless `force`: [`mass_removal`].
    async fn reload(&mut self, force: bool) -> Result<LbdReloadReply, ReloadError> {
        self.report.notifier.reloading();
        let result = self.reload_file(force).await;
        // A file read whole peaks at several times what lbd keeps: those pages go
        // back (a read of the changed services only leaves nothing worth a trim).
        if result.is_err() || self.config.memo.blocks_parsed().is_none() {
            release_free_memory();
        }
        let status = self.systemd_status();
        self.report.notifier.reloaded(result.is_ok(), &status);
        result
    }

    /// [`Daemon::reload`] without the systemd notifications.
    async fn reload_file(&mut self, force: bool) -> Result<LbdReloadReply, ReloadError> {
        let read_at = std::time::Instant::now();
        let (new, memo) = self
            .config
            .options
            .reload(&self.config.memo, &self.config.view)?;
        tracing::debug!(
            service_blocks_parsed = memo
                .blocks_parsed()
                .map_or_else(|| "all".to_owned(), |n| n.to_string()),
            read_ms = ctl::logging::ms(read_at.elapsed()),
            "configuration read"
        );
        // Only the services the file's changed blocks hold are compared when that is
        // all that was read.
        let diff = memo
            .services_replaced()
            .and_then(|(old, now)| ServiceDiff::of_replaced(&self.config.view, &new, old, now))
            .unwrap_or_else(|| ServiceDiff::of(&self.config.view, &new));
        let touched = diff.touched();
        check_view(&new, &self.kernel.selection, Some(&touched))?;
        if !force {
            mass_removal_in(&diff, &self.config.view, &new)?;
        }
        // Checks and this node's addresses (the checks' sources) unchanged: only the
        // services that changed have other targets, and only theirs are replaced.
        // Otherwise every target is compared, and a server whose target restarts
        // counts as up again, whatever service it is in.
        let every_target =
            new.checks != self.config.view.checks || new.node != self.config.view.node;
        if every_target {
            self.health
                .runner
                .update_targets(health_targets(&new), HealthState::Up)
        } else {
            let changed: Vec<&config::Service> = new
                .services
                .iter()
                .filter(|s| touched.contains(&s.name))
                .collect();
            let targets = changed
                .iter()
                .flat_map(|s| {
                    health::targets_from_config(
                        std::slice::from_ref(*s),
                        &new.checks,
                        |_, server| check_source(&new, server.address),
                    )
                })
                .collect();
            self.health
                .runner
                .update_service_targets(&touched, targets, HealthState::Up)
        }
        .map_err(ReloadError::HealthTargets)?;
        let mut restart_needed = Vec::new();
        if new.control != self.config.view.control {
            restart_needed.push("[control] socket paths, group and connection limits");
        }
        if new.metrics != self.config.view.metrics {
            restart_needed.push("[metrics]");
        }
        if new.dataplane != self.config.view.dataplane {
            restart_needed.push("[dataplane] backend, table and flowtable");
        }
        let link = |v: &NodeView| {
            (
                v.sync.enabled,
                v.sync.local_address,
                v.sync.peer_address,
                v.sync.port,
            )
        };
        if link(&new) != link(&self.config.view) {
            restart_needed.push("[sync] enabled, addresses and port of the sync link");
        }
        if (new.mode, &new.announce) != (self.config.view.mode, &self.config.view.announce) {
            restart_needed.push("[cluster] mode and [announce]");
        }
        for what in &restart_needed {
            tracing::warn!("{what} changed: takes effect at the next restart");
        }
        let nat_changed = new.nat != self.config.view.nat;
        // The dataplane compares only what the file changed (and what health changed
        // meanwhile); after a failed apply nothing is known, and it compares all, as
        // it does when every health target was replaced.
        // The groups say which group a service's quorum lowers: every service is
        // planned again.
        if every_target || new.groups != self.config.view.groups {
            self.kernel.changed = None;
        }
        if let Some(hint) = &mut self.kernel.changed {
            hint.services.extend(touched.iter().cloned());
            hint.snat |= nat_changed;
        }
        let mut reply = LbdReloadReply {
            reloaded: true,
            services_added: diff.added,
            services_removed: diff.removed,
            services_changed: diff.changed,
            nat_changed,
            restart_needed: restart_needed.iter().map(|s| (*s).to_owned()).collect(),
            overrides_dropped: Vec::new(),
            apply: ApplyOutcome::default(),
        };
        // Keep the running settings that only a restart changes.
        let mut new = new;
        new.control = self.config.view.control.clone();
        new.metrics = self.config.view.metrics.clone();
        new.dataplane = self.config.view.dataplane.clone();
        if let Some(link) = &self.sync.link {
            link.set_filter(&new);
        }
        // The old view is dropped off the loop (10,000s of services' strings); the
        // pages it held go back at the next second's tick (else each reload leaves a
        // little more behind), not now: the trim holds the allocator's locks while
        // this reload's apply allocates.
        let old = std::mem::replace(&mut self.config.view, new);
        let old_memo = std::mem::replace(&mut self.config.memo, memo);
        tokio::task::spawn_blocking(move || drop((old, old_memo)));
        self.report.trim_due = true;
        reply.overrides_dropped = self.config.servers.retain(&self.config.view);
        self.config.loaded_unix_ms = unix_ms();
        self.note_config_difference();
        // The latest check durations of the services that changed are exported
        // again from their next sample (those of servers that are gone, never).
        if every_target {
            self.report.telemetry.checks_reconfigured(None);
            self.health.runner.mark_fresh(None);
        } else if !touched.is_empty() {
            self.report.telemetry.checks_reconfigured(Some(&touched));
            self.health.runner.mark_fresh(Some(&touched));
        }
        self.check_forwarding();
        let apply = self.reconcile("reload").await;
        reply.apply = apply_outcome(&apply);
        if let Some(e) = &mut reply.apply.error {
            e.push_str(" (configuration accepted; the apply is retried)");
        }
        Ok(reply)
    }

    fn sync_status(&self) -> SyncStatus {
        // "conntrack": the sync link carries conntrack entries; with IPVS the
        // kernel's sync daemon carries IPVS's table beside it.
        let mode = match (&self.sync.link, self.kernel.selection.kind) {
            (Some(_), BackendKind::Nft) => "conntrack",
            (Some(_), BackendKind::Ipvs) => "ipvs+conntrack",
            (None, _) => "off",
        };
        SyncStatus {
            enabled: self.config.view.sync.enabled,
            mode: mode.to_owned(),
            link: self.sync.link.as_ref().map(SyncLink::status),
            last_commit: self.sync.last_commit.clone(),
        }
    }

    /// `status`: the one place lbd's status is built; its shape is
    /// `ctl::contract::lbd::LbdStatus`.
    async fn status(&mut self) -> LbdStatus {
        let counters: Vec<BackendCounters> = match self
            .kernel
            .thread
            .run(|dp| dp.counters().map_err(|e| e.to_string()))
            .await
        {
            Ok(Ok(c)) => {
                self.report.telemetry.counters(c.clone());
                c
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "counters unavailable");
                Vec::new()
            }
            Err(_) => Vec::new(),
        };
        let runner = self.health.runner.counters();
        let statuses: HashMap<TargetName, health::TargetStatus> = self
            .health
            .runner
            .statuses()
            .into_iter()
            .map(|s| (s.target.name.clone(), s))
            .collect();
        let services = self
            .kernel
            .plan
            .services
            .iter()
            .map(|s| self.service_status(s, &counters, &statuses))
            .collect();
        let snat = self
            .kernel
            .plan
            .state
            .snat
            .iter()
            .map(|r| SnatStatus {
                name: r.name.clone(),
                destination: r.orig_daddr,
                source: snat_addresses(&r.source),
            })
            .collect();
        let health_counters = [
            ("checks_started", runner.scheduler.checks_started),
            ("checks_ok", runner.scheduler.checks_ok),
            ("checks_failed", runner.scheduler.checks_failed),
            ("overruns", runner.scheduler.overruns),
            ("transitions_up", runner.scheduler.transitions_up),
            ("transitions_down", runner.scheduler.transitions_down),
            ("dampened", runner.scheduler.dampened),
            ("in_flight", runner.pending as u64),
        ];
        LbdStatus {
            node: self.config.view.name.clone(),
            config: ConfigStatus {
                file: self.config.options.config_path.display().to_string(),
                loaded_unix_ms: self.config.loaded_unix_ms,
                fingerprint: self.config.view.fingerprint.clone(),
                vrrpd_fingerprint: self.vrrpd.roles.vrrpd_fingerprint.clone(),
                differs_from_vrrpd: self.config_differs_from_vrrpd(),
            },
            backend: BackendStatus {
                name: self.kernel.selection.kind.name().to_owned(),
                reason: self.kernel.selection.reason.to_string(),
                table: self.config.view.dataplane.nft_table.clone(),
            },
            vrrpd: VrrpdLink {
                socket: self.config.view.control.vrrpd_socket.display().to_string(),
                connected: self.vrrpd.roles.connected,
                error: self.vrrpd.roles.error.clone(),
                groups: self.vrrpd.roles.groups.clone(),
            },
            services,
            snat,
            dataplane: DataplaneStatus {
                dirty: self.kernel.dirty,
                applies: self.kernel.applies,
                apply_errors: self.kernel.apply_errors,
                last_apply: self.kernel.last_apply.as_ref().map(ApplyRecord::to_status),
                retry_in_ms: self
                    .kernel
                    .retry
                    .map(|(at, _)| at.saturating_duration_since(Instant::now()).as_millis() as u64),
            },
            prepare: PrepareStatus {
                count: self.vrrpd.prepares,
                last: self.vrrpd.last_prepare.clone(),
            },
            sync: self.sync_status(),
            forwarding: self.report.forwarding.statuses(),
            health: HealthStatus {
                targets: statuses.len(),
                counters: health_counters
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect(),
            },
            priority_tracks: PriorityTracksStatus {
                wanted: desired::priority_tracks(&self.kernel.plan),
                vrrpd: self.vrrpd.tracks.report(),
            },
            server_overrides: self.config.servers.status(),
            // Filled in off the loop: `servers::with_connection_counts`.
            connection_count: ctl::contract::lbd::ConnectionCount::default(),
            notes: self.kernel.plan.notes.clone(),
            errors: self.report.errors.iter().cloned().collect(),
            control: self.report.control_stats.snapshot(),
            announce: self.announce_status(),
        }
    }

    /// One service in `status`: its servers with health and counters.
    fn service_status(
        &self,
        s: &desired::ServicePlan,
        counters: &[BackendCounters],
        statuses: &HashMap<TargetName, health::TargetStatus>,
    ) -> ServiceStatus {
        let counter = |backend: &str| {
            counters
                .iter()
                .find(|c| c.service == s.name && c.backend == backend)
        };
        let since = |at: health::Time| self.health.runner.instant(at).elapsed().as_millis() as u64;
        let servers = s
            .servers
            .iter()
            .map(|b| {
                let c = counter(&b.name);
                let name = TargetName::new(&s.name, &b.name);
                let st = statuses.get(&name);
                let last_check = st.and_then(|st| st.last.as_ref()).map(|(r, at)| LastCheck {
                    ok: r.outcome.is_ok(),
                    result: r.outcome.to_string(),
                    reason: r.outcome.reason().map(|x| x.to_string()),
                    duration_ms: ms(r.duration),
                    ago_ms: since(*at),
                });
                let last_transition = self.health.last_transitions.get(&name).map(|(t, at)| {
                    let mut t = t.clone();
                    t.ago_ms = since(*at);
                    t
                });
                ServerStatus {
                    name: b.name.to_string(),
                    address: b.address,
                    port: b.port,
                    weight: b.weight,
                    effective_weight: b.effective_weight,
                    health: name_of(&b.health),
                    state: Some(name_of(&b.state)),
                    server_override: b.server_override,
                    active_connections: None,
                    inactive_connections: None,
                    check: b.check.as_deref().map(str::to_owned),
                    last_check,
                    in_dataplane: b.in_dataplane,
                    held: st.map(|s| s.held),
                    consecutive_ok: st.map(|s| s.consecutive_ok),
                    consecutive_fail: st.map(|s| s.consecutive_fail),
                    state_for_ms: st.map(|s| since(s.since)),
                    check_source: st.and_then(|s| s.target.source),
                    last_transition,
                    checks: st.map(|s| s.checks),
                    transitions: st.map(|s| s.transitions),
                    traffic: traffic(c),
                }
            })
            .collect();
        let sorry_server = s.sorry_server.map(|(address, port)| {
            let c = counter(desired::SORRY_BACKEND);
            SorryServerStatus {
                address,
                port,
                traffic: traffic(c),
            }
        });
        ServiceStatus {
            name: s.name.clone(),
            vip: s.vip,
            ports: s.ports.clone(),
            protocol: s.protocol.to_owned(),
            scheduler: s.scheduler.to_owned(),
            effective_scheduler: Some(s.effective_scheduler.to_owned()),
            serving: name_of(&s.serving),
            servers,
            sorry_server,
            inhibit_on_failure: self
                .config
                .view
                .services
                .iter()
                .find(|c| c.name == s.name)
                .map(|c| c.inhibit_on_failure),
            quorum: s.quorum.as_ref().map(|q| QuorumStatus {
                min: q.min,
                up: q.up,
                met: q.met,
                priority_delta: q.priority_delta,
                group: q.group.clone(),
            }),
        }
    }
}

/// An apply's outcome as replies carry it.
fn apply_outcome(apply: &Result<ApplyReport, ApplyError>) -> ApplyOutcome {
    match apply {
        Ok(r) => ApplyOutcome {
            ok: true,
            changes: Some(r.changes()),
            duration_ms: Some(ms(r.duration)),
            error: None,
        },
        Err(e) => ApplyOutcome {
            ok: false,
            error: Some(e.to_string()),
            ..ApplyOutcome::default()
        },
    }
}

/// A dataplane counter as status carries it.
fn traffic(c: Option<&BackendCounters>) -> Traffic {
    Traffic {
        connections: c.map(|c| c.connections),
        packets: c.and_then(|c| c.packets),
        bytes: c.and_then(|c| c.bytes),
    }
}

/// A contract struct as a reply's result.
fn reply_value<T: serde::Serialize>(reply: &T) -> Result<Value, ReplyError> {
    serde_json::to_value(reply).map_err(ReplyError::internal)
}

/// The snake_case name a unit enum serialises to (`up`, `not_balanced`).
fn name_of<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        _ => String::new(),
    }
}

/// A SNAT rule's new source as plain addresses (and port ranges).
fn snat_addresses(source: &SnatSource) -> Vec<SnatAddress> {
    match source {
        SnatSource::Address(address) => vec![SnatAddress {
            address: *address,
            ports: None,
            ports_in_use: None,
            ports_available: None,
        }],
        SnatSource::Pool(pool) => pool
            .iter()
            .map(|(address, ports)| SnatAddress {
                address: *address,
                ports: ports.map(|(lo, hi)| [lo, hi]),
                ports_in_use: None,
                ports_available: None,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_role_follows_vrrp_roles() {
        let mut roles = Roles::default();
        assert_eq!(sync_role(&roles), SyncRole::Backup);
        roles.update(RoleUpdate::Snapshot(
            [
                ("a".to_owned(), VrrpState::Backup),
                ("b".to_owned(), VrrpState::Master),
            ]
            .into(),
        ));
        assert_eq!(sync_role(&roles), SyncRole::Master);
        roles.update(RoleUpdate::Snapshot(
            [("b".to_owned(), VrrpState::Fault)].into(),
        ));
        assert_eq!(sync_role(&roles), SyncRole::Backup);
    }

    #[test]
    fn a_reload_diff_names_what_was_added_removed_and_changed_in_file_order() {
        let text = include_str!("../../cluster.toml.example");
        let view = config::parse(text, "t.toml")
            .unwrap()
            .node_view(Some("lb1"))
            .unwrap();
        let mut old = view.clone();
        let web = old.services[0].clone();
        old.services.clear();
        for name in ["a", "b", "c", "d"] {
            let mut s = web.clone();
            s.name = name.to_owned();
            old.services.push(s);
        }
        assert_eq!(ServiceDiff::of(&old, &old), ServiceDiff::default());
        let mut new = old.clone();
        new.services.remove(1);
        new.services[2].servers[0].weight += 1;
        let mut e = web.clone();
        e.name = "e".to_owned();
        new.services.insert(0, e);
        new.services.swap(1, 2);
        let diff = ServiceDiff::of(&old, &new);
        assert_eq!(
            diff,
            ServiceDiff {
                added: vec!["e".to_owned()],
                removed: vec!["b".to_owned()],
                changed: vec!["d".to_owned()],
            }
        );
        assert_eq!(
            diff.touched(),
            ["b", "d", "e"].map(str::to_owned).into_iter().collect()
        );
        assert!(mass_removal(&old, &new).is_ok());
    }

    #[test]
    fn checks_leave_from_the_address_that_reaches_the_server() {
        let text = include_str!("../../cluster.toml.example");
        let view = config::parse(text, "t.toml")
            .unwrap()
            .node_view(Some("lb2"))
            .unwrap();
        assert_eq!(
            check_source(&view, "198.18.1.21".parse().unwrap()),
            Some("198.18.1.12".parse().unwrap())
        );
        assert_eq!(check_source(&view, "198.18.9.1".parse().unwrap()), None);
        let targets = health_targets(&view);
        assert_eq!(targets.len(), 2);
        assert_eq!(targets[0].source, Some("198.18.1.12".parse().unwrap()));
    }
}
