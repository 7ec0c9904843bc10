//! The daemon: start-up (reconcile, sockets), the event loop that owns the
//! state machines (one [`Router`] per sync group), shutdown and reload.
//! Action execution is in [`crate::execute`], operator commands in
//! [`crate::operate`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use ctl::contract::vrrpd::VrrpdReloadReply;
use ctl::contract::VrrpState;
use futures::StreamExt;
use netif::{AddressSpec, IfAddrFlags, IfAddress, LinkEvent, LinkEventKind, LinkWatch, Netif};
use serde_json::Value;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use vrrp::action::Reason;
use vrrp::event::{ConfigChange, Event, Input};
use vrrp::instance::{Counters, State};
use vrrp::packet::{self, Family, IpContext};
use vrrp::router::Router;
use vrrp::timer::TimerKind;

use config::{ClusterConfig, NodeView};

use crate::control::{control_handler, ControlRequest};
use crate::error::{IoError, ReloadError};
use crate::net::{Announcer, Received, SocketError, VrrpSocket};
use crate::operate::FailoverDrill;
use crate::realtime::{Realtime, Scheduling};
use crate::telemetry::{InstanceLabels, Telemetry};
use crate::timers::{Clock, PreciseSleep, TimerKey, TimerTable};
use crate::translate::{translate, GroupPlan, Translation};

/// How the daemon was started: the file and the node.
pub type Options = config::NodeSource;

/// The configuration read and resolved for this node.
pub type Loaded = config::LoadedNode;

/// Reads and validates the configuration; the error text is the config crate's
/// diagnostics (file, line, key, fix).
pub fn load(options: &Options) -> Result<Loaded, config::ConfigError> {
    options.load()
}

/// One received VRRP packet and the interface it came in on.
#[derive(Debug)]
pub(crate) struct Packet {
    pub(crate) iface: String,
    pub(crate) at: Instant,
    pub(crate) received: Received,
}

/// A link as last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LinkState {
    pub(crate) index: u32,
    pub(crate) up: bool,
}

/// One sync group's state machine and what the daemon keeps beside it.
pub(crate) struct GroupRuntime {
    pub(crate) plan: GroupPlan,
    pub(crate) router: Router,
    /// Counters last exported to metrics, per instance.
    pub(crate) exported: HashMap<String, Counters>,
}

/// The last transition of an instance, for `status`.
#[derive(Debug, Clone)]
pub(crate) struct TransitionRecord {
    pub(crate) from: State,
    pub(crate) to: State,
    pub(crate) reason: String,
    pub(crate) unix_ms: u64,
    pub(crate) at: Instant,
}

/// The phases of one takeover, in ms from the decision (as `status` reports them).
pub(crate) use ctl::contract::vrrpd::TakeoverRecord;

/// What a VRRP socket on one (interface, family) must do.
struct SocketNeed {
    iface: String,
    family: Family,
    source: IpAddr,
    peers: Vec<IpAddr>,
    multicast: bool,
}

/// Everything the event loop owns.
pub(crate) struct Daemon {
    pub(crate) options: Options,
    pub(crate) cluster: ClusterConfig,
    pub(crate) view: NodeView,
    pub(crate) plan: Translation,
    pub(crate) groups: BTreeMap<String, GroupRuntime>,
    /// (interface, VRID, IPv6?) -> group.
    pub(crate) by_advert: HashMap<(String, u8, bool), String>,
    /// Instance -> group.
    pub(crate) by_instance: HashMap<String, String>,
    pub(crate) netif: Netif,
    pub(crate) links: HashMap<String, LinkState>,
    /// Interfaces held down by `drill.fault`, and by which groups.
    pub(crate) held: BTreeMap<String, BTreeSet<String>>,
    pub(crate) sockets: HashMap<(String, Family), Arc<VrrpSocket>>,
    pub(crate) announcers: HashMap<String, Arc<Announcer>>,
    packets: mpsc::Sender<Packet>,
    receivers: Vec<JoinHandle<()>>,
    pub(crate) clock: Clock,
    pub(crate) timers: TimerTable,
    pub(crate) telemetry: Telemetry,
    pub(crate) events: ctl::EventBus,
    pub(crate) transitions: HashMap<String, TransitionRecord>,
    pub(crate) takeovers: HashMap<String, Arc<Mutex<TakeoverRecord>>>,
    /// Takeovers per group that went on without lbd's prepare (for status).
    pub(crate) prepare_misses: HashMap<String, u64>,
    /// The last advert accepted per instance: its source and priority (status
    /// reports the master's priority from it).
    pub(crate) last_heard: HashMap<String, (IpAddr, u8)>,
    pub(crate) failover: Option<FailoverDrill>,
    /// Priority deltas per source (`track.set`).
    pub(crate) tracks: crate::tracking::Tracks,
    /// What the operator set (maintenance, `priority.set`, the base of
    /// tracking), as the state file keeps it.
    pub(crate) operator: crate::persist::OperatorState,
    /// Where that is kept, and how reading and writing it went.
    pub(crate) state_file: crate::overrides::StateFile,
    /// Preemption held back for lbd's connection-state sync.
    pub(crate) hold: vrrp::preempt_hold::PreemptHold,
    /// What `[vrrpd]` asked for at start-up and what it got.
    pub(crate) realtime: Realtime,
    /// MASTER instances dropping a peer's adverts for their VRID, by instance.
    pub(crate) dual_masters: HashMap<String, crate::dual_master::DualMaster>,
    /// The control socket's connection counters (for status).
    pub(crate) control_stats: Arc<ctl::ServerStats>,
    /// What systemd has been told (`Type=notify`).
    pub(crate) notifier: ctl::systemd::Notifier,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        for r in &self.receivers {
            r.abort();
        }
    }
}

/// Unix time in ms.
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A state as the control contract carries it (events, status).
pub fn vrrp_state(state: State) -> VrrpState {
    match state {
        State::Initialize => VrrpState::Init,
        State::Backup => VrrpState::Backup,
        State::Master => VrrpState::Master,
        State::Fault => VrrpState::Fault,
        State::Maintenance => VrrpState::Maintenance,
    }
}

/// The name of a state in logs, events and status.
pub fn state_name(state: State) -> &'static str {
    vrrp_state(state).name()
}

/// The name of a transition's reason in events and status: snake_case.
pub fn reason_name(reason: Reason) -> &'static str {
    match reason {
        Reason::Startup => "startup",
        Reason::Shutdown => "shutdown",
        Reason::MasterDown => "master_down",
        Reason::PeerReleased => "peer_released",
        Reason::HigherPriority => "higher_priority",
        Reason::LinkDown => "link_down",
        Reason::TrackedInterfaceDown => "tracked_interface_down",
        Reason::FaultCleared => "fault_cleared",
        Reason::MaintenanceOn => "maintenance_on",
        Reason::MaintenanceOff => "maintenance_off",
        Reason::SyncGroup => "sync_group",
        Reason::VipAddFailed => "vip_add_failed",
    }
}

/// The name of a timer in status: snake_case.
pub fn timer_name(timer: TimerKind) -> &'static str {
    match timer {
        TimerKind::Advertisement => "advertisement",
        TimerKind::MasterDown => "master_down",
        TimerKind::GratuitousRepeat => "gratuitous_repeat",
        TimerKind::VipRetry => "vip_retry",
    }
}

/// How long the control server stays up after the shutdown transitions are
/// published, so that subscribers receive them (a local socket needs far less).
const SHUTDOWN_EVENTS_GRACE: Duration = Duration::from_millis(100);

/// Runs vrrpd until `shutdown` completes (SIGTERM, SIGINT): then every MASTER
/// group releases (priority-0 adverts, VIPs removed) and the function returns.
/// SIGHUP reloads. Fails only at start-up (netlink, sockets, control socket).
/// `realtime` is what [`crate::realtime::apply`] got before the runtime started.
pub async fn run(
    options: Options,
    loaded: Loaded,
    realtime: Realtime,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let Loaded { cluster, view, .. } = loaded;
    let netif = Netif::connect().context("opening rtnetlink")?;
    // Watch first: its snapshot then covers anything that changes meanwhile.
    let mut link_watch = netif.watch_links().await.context("watching link state")?;
    let links = read_links(&netif).await.context("listing links")?;
    // Leftover VIPs of a crash may still be on the interfaces: they are no
    // candidates, whether they go before or after this.
    let link_locals = link_locals(&netif, &view, &links, &configured_vips(&view)).await;
    let plan = translate(&view, &|iface| link_locals.get(iface).copied())
        .context("translating the configuration")?;
    check_interfaces(&plan, &links)?;

    // Before anything can be elected: a node left in maintenance stays there.
    let (mut state_file, operator) = crate::overrides::StateFile::open(&view);
    remove_leftover_vips(&netif, &view, &links, &operator).await;

    let telemetry = Telemetry::for_cluster(&view.cluster_name);
    telemetry.realtime(
        Scheduling::current().realtime_priority(),
        realtime.memory_locked,
    );
    state_file.attach(&telemetry);
    let (packets_tx, mut packets_rx) = mpsc::channel(1024);
    let events = ctl::EventBus::new(ctl::DEFAULT_BACKLOG);
    let mut daemon = Daemon {
        options,
        cluster,
        view,
        plan: Translation { groups: Vec::new() },
        groups: BTreeMap::new(),
        by_advert: HashMap::new(),
        by_instance: HashMap::new(),
        netif,
        links,
        held: BTreeMap::new(),
        sockets: HashMap::new(),
        announcers: HashMap::new(),
        packets: packets_tx,
        receivers: Vec::new(),
        clock: Clock::start(),
        timers: TimerTable::new(),
        telemetry,
        events: events.clone(),
        transitions: HashMap::new(),
        takeovers: HashMap::new(),
        prepare_misses: HashMap::new(),
        last_heard: HashMap::new(),
        failover: None,
        tracks: Default::default(),
        operator,
        state_file,
        hold: Default::default(),
        realtime,
        dual_masters: HashMap::new(),
        control_stats: Arc::default(),
        notifier: ctl::systemd::Notifier::new(),
    };
    daemon.open_io(&plan)?;
    // Every series of every group exists from the first scrape on.
    daemon.plan = plan.clone();
    for g in &plan.groups {
        daemon.register_series(g);
    }

    let (control_tx, mut control_rx) = mpsc::channel::<ControlRequest>(16);
    let perms = ctl::SocketPerms {
        group: daemon
            .view
            .control
            .group
            .as_deref()
            .map(ctl::SocketGroup::parse),
    };
    let server = ctl::Server::bind(&daemon.view.control.vrrpd_socket, perms)
        .await
        .context("binding the control socket")?
        .with_identity("vrrpd", env!("CARGO_PKG_VERSION"))
        .with_limits(ctl_limits(&daemon.view.control, "lbd"));
    daemon.control_stats = server.stats();
    daemon
        .telemetry
        .control_socket(Arc::clone(&daemon.control_stats));
    let (stop_server, server_stopped) = watch::channel(false);
    let serving = tokio::spawn(server.serve(
        Arc::new(control_handler(control_tx.clone())),
        events,
        server_stopped,
    ));
    // Last before the groups start (nothing has changed in the kernel yet if the
    // port is taken): every series, the control socket's too, is there at the
    // first scrape.
    let _metrics = if daemon.view.metrics.enabled {
        Some(
            metrics::MetricsServer::start_with_status(
                daemon.view.metrics.vrrpd_listen,
                daemon.telemetry.registry().clone(),
                status_page(control_handler(control_tx.clone())),
            )
            .context("starting the metrics endpoint")?,
        )
    } else {
        None
    };

    daemon.reindex();
    daemon.settle_operator_state("start-up");
    daemon.hold_at_startup();
    for g in plan.groups {
        daemon.start_group(g).await;
    }
    tracing::info!(node = %daemon.view.name, groups = daemon.groups.len(), "vrrpd running");
    daemon.notify_systemd();
    let mut watchdog = daemon.notifier.watchdog();

    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut usr1 = signal(SignalKind::user_defined1()).context("installing the SIGUSR1 handler")?;
    let mut usr2 = signal(SignalKind::user_defined2()).context("installing the SIGUSR2 handler")?;
    tokio::pin!(shutdown);
    let precise = match PreciseSleep::new() {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(error = %e, "no timerfd: timers may fire up to 2 ms late");
            None
        }
    };
    let mut steal = crate::steal::StealWatch::open();
    loop {
        let deadline = daemon.timers.earliest().map(|t| daemon.clock.instant(t));
        let sleep = async {
            match (deadline, &precise) {
                (Some(at), Some(p)) => {
                    if let Err(e) = p.until(at).await {
                        tracing::debug!(error = %e, "timerfd sleep failed; tokio's timer instead");
                        tokio::time::sleep_until(at).await;
                    }
                }
                (Some(at), None) => tokio::time::sleep_until(at).await,
                (None, _) => std::future::pending().await,
            }
        };
        tokio::select! {
            () = &mut shutdown => break,
            _ = hangup.recv() => {
                match daemon.reload().await {
                    Ok(report) => tracing::info!(report = %report.summary(), "reloaded on SIGHUP"),
                    Err(why) => tracing::error!("reload refused, running configuration unchanged:\n{why}"),
                }
            }
            _ = usr1.recv() => {
                let text = serde_json::to_string_pretty(&daemon.status()).unwrap_or_default();
                ctl::daemon::write_dump("SIGUSR1", "state", &daemon.view.control.vrrpd_socket, "data", &text);
            }
            _ = usr2.recv() => {
                let text = daemon.telemetry.render();
                ctl::daemon::write_dump("SIGUSR2", "statistics", &daemon.view.control.vrrpd_socket, "stats", &text);
            }
            Some(p) = packets_rx.recv() => {
                daemon.on_packet(p).await;
                steal.mark(std::time::Instant::now());
            }
            event = link_watch.next() => match event {
                Some(e) => daemon.on_link(e).await,
                None => {
                    tracing::warn!("link watch ended (notifications lost?); restarting it");
                    link_watch = restart_watch(&daemon.netif).await;
                }
            },
            Some(request) = control_rx.recv() => daemon.on_control(request).await,
            // Pinged from this loop: a loop stuck in a handler stops the pings.
            () = watchdog.tick() => {}
            () = sleep => {
                // A loop woken late (a busy machine, a stolen CPU) finds the timer due
                // and adverts waiting alike: the adverts go first, or a master-down
                // timer fires although the master's advert arrived in time (each
                // advert restarts it from its kernel receive time). Those the
                // receivers have read, then those still on the sockets: read here,
                // because the receivers' turn may come only after this branch.
                while let Ok(p) = packets_rx.try_recv() {
                    daemon.on_packet(p).await;
                }
                daemon.read_queued_adverts().await;
                // A whole-machine stall since the last packet held up the master's
                // adverts too: the core weighs it before the timers.
                let stolen = steal.stolen_since_mark(std::time::Instant::now());
                if !stolen.is_zero() {
                    daemon.feed_all(Input::HostStalled { lost: stolen }).await;
                }
                daemon.on_timers().await;
            }
        }
        daemon.advance_failover_drill().await;
        daemon.notify_systemd();
    }

    daemon.notifier.stopping();
    tracing::info!("shutting down: releasing every group");
    daemon.fail_drill_requests("vrrpd is shutting down");
    let names: Vec<String> = daemon.groups.keys().cloned().collect();
    for name in names {
        daemon.feed(&name, Input::Shutdown, Instant::now()).await;
    }
    // The transitions just published (MASTER -> INIT) are still on their way to
    // subscribers (`vrrpctl watch`, lbd): stopping the server now would end their
    // connections before the lines are written.
    tokio::time::sleep(SHUTDOWN_EVENTS_GRACE).await;
    let _ = stop_server.send(true);
    if tokio::time::timeout(Duration::from_secs(2), serving)
        .await
        .is_err()
    {
        tracing::warn!("control server did not stop within 2 s");
    }
    tracing::info!("vrrpd stopped");
    Ok(())
}

/// The read-only status page on the metrics listener: the loop's `status` reply,
/// asked as the control socket asks it.
fn status_page(handler: crate::control::ControlHandler) -> metrics::StatusPage {
    metrics::StatusPage::new("vrrpd", move || {
        let handler = handler.clone();
        async move {
            let status = ctl::daemon::status_reply(&handler).await?;
            serde_json::to_vec(&status).map_err(|e| e.to_string())
        }
    })
}

/// The control socket's limits from `[control]`; `peer` is the other daemon, whose
/// connections (lbd's event stream and track.set) keep a reserve beyond the cap.
pub(crate) fn ctl_limits(control: &config::ControlSettings, peer: &str) -> ctl::ServerLimits {
    ctl::ServerLimits {
        max_connections: control.max_connections as usize,
        peer_daemon: Some(peer.to_owned()),
        idle_timeout: Duration::from_millis(u64::from(control.idle_timeout_ms)),
        ..ctl::ServerLimits::default()
    }
}

async fn restart_watch(netif: &Netif) -> LinkWatch {
    loop {
        match netif.watch_links().await {
            Ok(w) => return w,
            Err(e) => {
                tracing::error!(error = %e, "cannot restart the link watch; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn read_links(netif: &Netif) -> Result<HashMap<String, LinkState>, netif::NetifError> {
    let links = netif.links().await?;
    Ok(links
        .into_iter()
        .map(|l| {
            (
                l.name,
                LinkState {
                    index: l.index,
                    up: l.up && l.carrier,
                },
            )
        })
        .collect())
}

/// Every VIP of `view` (all groups, all instances): never a source address.
fn configured_vips(view: &NodeView) -> BTreeSet<IpAddr> {
    view.groups
        .iter()
        .flat_map(|g| &g.instances)
        .flat_map(|i| &i.config.vips)
        .map(|v| v.address.address)
        .collect()
}

/// The link-local address every interface an IPv6 instance runs on sends from
/// (see [`choose_link_local`]); none of `vips` is ever chosen.
async fn link_locals(
    netif: &Netif,
    view: &NodeView,
    links: &HashMap<String, LinkState>,
    vips: &BTreeSet<IpAddr>,
) -> HashMap<String, Ipv6Addr> {
    let mut out = HashMap::new();
    for inst in view.instances().filter(|i| i.config.is_ipv6()) {
        let iface = &inst.config.interface;
        let Some(link) = links.get(iface) else {
            continue;
        };
        if out.contains_key(iface) {
            continue;
        }
        match netif.addresses(link.index).await {
            Ok(addrs) => {
                let mac = crate::net::interface_mac(iface).ok();
                if let Some(ll) = choose_link_local(&addrs, mac, vips) {
                    out.insert(iface.clone(), ll);
                }
            }
            Err(e) => tracing::warn!(iface = %iface, error = %e, "cannot list addresses"),
        }
    }
    out
}

/// The node's own link-local address among `addrs` (one interface's, in the
/// kernel's order): never a VIP, which a MASTER holds on the interface (and a
/// crashed vrrpd leaves there until the next start removes it), nor an address
/// whose duplicate address detection failed. The kernel's EUI-64 address of
/// `mac` if it is there; else the oldest (the kernel lists the newest link-local
/// first), so that an address added later by hand does not take over.
fn choose_link_local(
    addrs: &[IfAddress],
    mac: Option<[u8; 6]>,
    vips: &BTreeSet<IpAddr>,
) -> Option<Ipv6Addr> {
    let candidates: Vec<Ipv6Addr> = addrs
        .iter()
        .filter(|a| !vips.contains(&a.addr) && !a.flags.contains(IfAddrFlags::DADFAILED))
        .filter_map(|a| match a.addr {
            IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80 => Some(v6),
            _ => None,
        })
        .collect();
    let eui64 = mac.map(eui64_link_local);
    candidates
        .iter()
        .copied()
        .find(|a| Some(*a) == eui64)
        .or_else(|| candidates.last().copied())
}

/// fe80::/64 with the modified EUI-64 interface identifier of `mac` (RFC 4291
/// appendix A): what the kernel gives an Ethernet interface by default.
fn eui64_link_local(mac: [u8; 6]) -> Ipv6Addr {
    Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([mac[0] ^ 0x02, mac[1]]),
        u16::from_be_bytes([mac[2], 0xff]),
        u16::from_be_bytes([0xfe, mac[3]]),
        u16::from_be_bytes([mac[4], mac[5]]),
    )
}

/// Every instance interface must exist; tracked ones may be absent (down).
fn check_interfaces(plan: &Translation, links: &HashMap<String, LinkState>) -> Result<(), IoError> {
    for inst in plan.instances() {
        if !links.contains_key(&inst.interface) {
            return Err(IoError::InstanceInterfaceMissing {
                instance: inst.name.clone(),
                interface: inst.interface.clone(),
            });
        }
    }
    Ok(())
}

/// A restarted daemon first removes configured VIPs it finds on its
/// interfaces (left by a crash): it holds none before an election says so.
/// Only VIPs of groups this node owns (priority 255) stay, unless the operator
/// holds the group in maintenance. Nothing else is touched.
async fn remove_leftover_vips(
    netif: &Netif,
    view: &NodeView,
    links: &HashMap<String, LinkState>,
    operator: &crate::persist::OperatorState,
) {
    let mut vips: HashMap<IpAddr, bool> = HashMap::new();
    for g in &view.groups {
        let keep = g.priority == 255 && !operator.maintenance.contains_key(&g.name);
        for i in &g.instances {
            for v in &i.config.vips {
                vips.insert(v.address.address, keep);
            }
        }
    }
    let mut leftovers = Vec::new();
    for (name, link) in links {
        let addrs = match netif.addresses(link.index).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(iface = %name, error = %e, "cannot list addresses for the leftover check");
                continue;
            }
        };
        for a in addrs {
            match vips.get(&a.addr) {
                Some(false) => {
                    tracing::warn!(iface = %name, vip = %a.addr, prefix_len = a.prefix_len, "removing leftover VIP (no election has given it to this node)");
                    leftovers.push(AddressSpec::new(link.index, a.addr, a.prefix_len));
                }
                Some(true) => {
                    tracing::info!(iface = %name, vip = %a.addr, "keeping VIP: this node is its owner (priority 255)")
                }
                None => {}
            }
        }
    }
    if leftovers.is_empty() {
        return;
    }
    match netif.remove_addresses(&leftovers).await {
        Ok(_) => tracing::info!(count = leftovers.len(), "leftover VIPs removed"),
        Err(e) => tracing::error!(error = %e, "removing leftover VIPs failed"),
    }
}

impl Daemon {
    /// Rebuilds the lookup maps from the current plan.
    pub(crate) fn reindex(&mut self) {
        self.by_advert.clear();
        self.by_instance.clear();
        for g in &self.plan.groups {
            for i in &g.instances {
                self.by_advert.insert(
                    (i.interface.clone(), i.vrid, i.family == Family::Ipv6),
                    g.name.clone(),
                );
                self.by_instance.insert(i.name.clone(), g.name.clone());
            }
        }
    }

    /// The metric labels of an instance.
    pub(crate) fn labels(&self, instance: &str) -> InstanceLabels {
        match self.plan.instance(instance) {
            Some(p) => InstanceLabels {
                instance: p.name.clone(),
                group: p.group.clone(),
                interface: p.interface.clone(),
                vrid: p.vrid.to_string(),
            },
            None => InstanceLabels {
                instance: instance.to_owned(),
                group: String::new(),
                interface: String::new(),
                vrid: String::new(),
            },
        }
    }

    /// Opens the sockets and announcers `plan` needs that are not open yet.
    pub(crate) fn open_io(&mut self, plan: &Translation) -> Result<(), IoError> {
        let mut wanted: Vec<SocketNeed> = Vec::new();
        for g in &plan.groups {
            for c in &g.router.instances {
                let family = Family::of(c.primary_address);
                let pos = match wanted
                    .iter()
                    .position(|w| w.iface == c.interface && w.family == family)
                {
                    Some(p) => p,
                    None => {
                        wanted.push(SocketNeed {
                            iface: c.interface.clone(),
                            family,
                            source: c.primary_address,
                            peers: Vec::new(),
                            multicast: false,
                        });
                        wanted.len() - 1
                    }
                };
                let need = &mut wanted[pos];
                if c.unicast_peers.is_empty() {
                    need.multicast = true;
                } else {
                    need.peers.extend(c.unicast_peers.iter().copied());
                }
            }
        }
        for need in wanted {
            let SocketNeed {
                iface,
                family,
                source,
                peers,
                multicast,
            } = need;
            if self.sockets.contains_key(&(iface.clone(), family)) {
                continue;
            }
            let index = self
                .links
                .get(&iface)
                .map(|l| l.index)
                .ok_or_else(|| IoError::InterfaceMissing(iface.clone()))?;
            // One multicast instance makes the socket join the group; unicast
            // adverts are still sent to each peer by address.
            let peers = if multicast { Vec::new() } else { peers };
            let socket = VrrpSocket::open(&iface, index, family, source, &peers)?;
            let socket = Arc::new(socket);
            self.telemetry.register_interface(&iface);
            self.receivers.push(spawn_receiver(
                Arc::clone(&socket),
                self.packets.clone(),
                self.telemetry.clone(),
            ));
            tracing::info!(iface = %iface, %family, %source, multicast, "VRRP socket open");
            self.sockets.insert((iface.clone(), family), socket);
        }
        for g in &plan.groups {
            for i in &g.instances {
                if self.announcers.contains_key(&i.interface) {
                    continue;
                }
                let index = self
                    .links
                    .get(&i.interface)
                    .map(|l| l.index)
                    .ok_or_else(|| IoError::InterfaceMissing(i.interface.clone()))?;
                let mac = crate::net::interface_mac(&i.interface)?;
                let forwarding = i.family == Family::Ipv6 && ipv6_forwarding(&i.interface);
                let announcer = Announcer::open(&i.interface, index, mac)?.with_router(forwarding);
                self.announcers
                    .insert(i.interface.clone(), Arc::new(announcer));
            }
        }
        Ok(())
    }

    /// Creates the series of a group and its instances (at 0; those there stay).
    fn register_series(&self, plan: &GroupPlan) {
        self.telemetry.register_group(&plan.name);
        for i in &plan.instances {
            let l = self.labels(&i.name);
            self.telemetry.register_instance(&l, plan.priority);
        }
    }

    /// Builds and starts a group's state machine.
    pub(crate) async fn start_group(&mut self, plan: GroupPlan) {
        let mut router = match Router::new(plan.router.clone()) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(group = %plan.name, error = %e, "state machine refused the group");
                return;
            }
        };
        self.register_series(&plan);
        let now = self.clock.now();
        // Links down at start-up are reported before Startup (the Router
        // then starts those instances in FAULT).
        let mut down: BTreeSet<String> = BTreeSet::new();
        for c in &plan.router.instances {
            for iface in
                std::iter::once(&c.interface).chain(c.track_interfaces.iter().map(|t| &t.interface))
            {
                let up =
                    self.links.get(iface).is_some_and(|l| l.up) && !self.held.contains_key(iface);
                if !up {
                    down.insert(iface.clone());
                }
            }
        }
        for iface in down {
            router.handle(Event::new(now, Input::InterfaceDown { interface: iface }));
        }
        let name = plan.name.clone();
        self.groups.insert(
            name.clone(),
            GroupRuntime {
                plan,
                router,
                exported: HashMap::new(),
            },
        );
        self.prime_tracking(&name);
        self.prime_maintenance(&name);
        self.prime_hold(&name);
        self.feed(&name, Input::Startup, Instant::now()).await;
    }

    /// Stops a group's state machine (a MASTER releases) and forgets it.
    pub(crate) async fn stop_group(&mut self, name: &str) {
        self.feed(name, Input::Shutdown, Instant::now()).await;
        if let Some(rt) = self.groups.remove(name) {
            for i in &rt.plan.instances {
                self.timers.cancel_instance(&i.name);
                self.dual_master_quiet(&i.name);
            }
        }
        self.timers.cancel(&TimerKey::FaultDrillEnd {
            group: name.to_owned(),
        });
    }

    /// Feeds one input to a group's state machine and carries out its actions.
    /// `started` is when the cause happened (a packet's arrival), for the
    /// takeover phase timings; it is also the state machine's `now`, so that
    /// the timers an advert re-arms (Master_Down_Interval, Skew_Time) run
    /// from its arrival rather than from when the loop got to it.
    pub(crate) async fn feed(&mut self, group: &str, input: Input, started: Instant) {
        let now = self.clock.time_of(started);
        let Some(rt) = self.groups.get_mut(group) else {
            return;
        };
        let mut actions = rt.router.handle(Event::new(now, input));
        loop {
            if !actions.is_empty() {
                tracing::trace!(group, ?actions, "actions");
            }
            // A takeover whose VIPs could not be added: the state machine hears of it
            // and releases (its reaction adds no VIPs, so this ends).
            let Some(instance) = self.execute(group, actions, started).await else {
                break;
            };
            let Some(rt) = self.groups.get_mut(group) else {
                break;
            };
            let now = self.clock.now();
            actions = rt
                .router
                .handle(Event::new(now, Input::VipAddFailed { instance }));
        }
        self.export(group);
        self.refresh_hold();
    }

    /// Feeds an input to every group.
    pub(crate) async fn feed_all(&mut self, input: Input) {
        let names: Vec<String> = self.groups.keys().cloned().collect();
        for name in names {
            self.feed(&name, input.clone(), Instant::now()).await;
        }
    }

    /// Exports the state machine's counters and priorities of a group.
    fn export(&mut self, group: &str) {
        let Some(rt) = self.groups.get(group) else {
            return;
        };
        let statuses = rt.router.instances();
        let mut updates = Vec::new();
        for s in statuses {
            let l = self.labels(&s.name);
            let before = rt.exported.get(&s.name).cloned().unwrap_or_default();
            self.telemetry.counters(&l, &before, &s.counters);
            self.telemetry
                .priorities(&l, s.priority, s.effective_priority);
            updates.push((s.name, s.counters));
        }
        if let Some(rt) = self.groups.get_mut(group) {
            rt.exported.extend(updates);
        }
    }

    async fn on_packet(&mut self, p: Packet) {
        let r = &p.received;
        let ctx = IpContext {
            src: r.src,
            dst: r.dst,
            ttl: r.ttl,
        };
        // 255 as the RFC says, unless the instance accepts less on unicast.
        let min_ttl = if r.ttl != packet::REQUIRED_TTL && !r.dst.is_multicast() {
            self.unicast_min_ttl(&p.iface, &r.payload, r.src)
        } else {
            packet::REQUIRED_TTL
        };
        let decoded = match packet::decode_with_min_ttl(&r.payload, &ctx, min_ttl) {
            Ok(d) => d,
            Err(e) => {
                self.telemetry.decode_error(&p.iface, e.kind());
                tracing::debug!(iface = %p.iface, src = %r.src, ttl = r.ttl, error = %e, kind = e.kind(), "VRRP packet dropped");
                self.decode_dropped(&p.iface, &r.payload, r.src, r.dst, r.ttl, e.kind());
                return;
            }
        };
        let Some((group, instance)) =
            self.instance_for(&p.iface, decoded.advert.vrid, r.src.is_ipv6())
        else {
            self.telemetry.unknown_vrid(&p.iface);
            tracing::debug!(iface = %p.iface, vrid = decoded.advert.vrid, src = %r.src, "advert for a VRID we do not run");
            return;
        };
        let master_counters = self.master_counters(&group, &instance);
        tracing::trace!(iface = %p.iface, src = %r.src, vrid = decoded.advert.vrid, priority = decoded.advert.priority, "advert");
        let heard = (r.src, decoded.advert.priority);
        match self.last_heard.get_mut(&instance) {
            Some(last) => *last = heard,
            None => {
                self.last_heard.insert(instance.clone(), heard);
            }
        }
        self.note_failover_advert(&group, &p.iface, r.src, &decoded.advert, p.at);
        let input = Input::AdvertReceived {
            interface: p.iface.clone(),
            src: r.src,
            advert: decoded.advert,
        };
        self.feed(&group, input, p.at).await;
        if let Some(before) = master_counters {
            self.checks_dropped(&group, &instance, &before, r.src, r.dst, r.ttl);
            let unicast = !r.dst.is_multicast();
            self.other_master_heard(&group, &instance, &before, r.src, r.ttl, unicast);
        }
    }

    async fn on_link(&mut self, e: LinkEvent) {
        let up = e.kind != LinkEventKind::Removed && e.up && e.carrier;
        let before = self
            .links
            .insert(e.name.clone(), LinkState { index: e.index, up });
        if before.map(|b| b.up) == Some(up) {
            return;
        }
        if !self.plan.watched_interfaces().contains(&e.name) {
            return;
        }
        tracing::info!(iface = %e.name, up, admin_up = e.up, carrier = e.carrier, "link state changed");
        if up && self.held.contains_key(&e.name) {
            tracing::info!(iface = %e.name, "link up, but drill.fault holds it down");
            return;
        }
        let input = if up {
            Input::InterfaceUp { interface: e.name }
        } else {
            Input::InterfaceDown { interface: e.name }
        };
        self.feed_all(input).await;
    }

    async fn on_timers(&mut self) {
        let now = self.clock.now();
        for (key, _) in self.timers.take_due(now) {
            match key {
                TimerKey::Router { instance, timer } => {
                    let Some(group) = self.by_instance.get(&instance).cloned() else {
                        continue;
                    };
                    self.feed(
                        &group,
                        Input::TimerExpired { instance, timer },
                        Instant::now(),
                    )
                    .await;
                }
                TimerKey::GarpRefresh { instance } => self.refresh_gratuitous(&instance),
                TimerKey::FaultDrillEnd { group } => self.end_fault_drill(&group).await,
                TimerKey::FailoverDrillDeadline => self.failover_deadline().await,
                TimerKey::PreemptHoldExpiry => self.preempt_hold_expired(),
                TimerKey::DualMasterQuiet { instance } => self.dual_master_quiet(&instance),
            }
        }
    }

    /// READY=1 once every instance's first state is decided (MASTER with its VIPs,
    /// BACKUP that has heard a master or whose Master_Down_Timer ran out, FAULT,
    /// MAINTENANCE), then STATUS= with the groups' states as they change.
    pub(crate) fn notify_systemd(&mut self) {
        if !self.notifier.is_ready() && !self.first_states_decided() {
            return;
        }
        let status = self.systemd_status();
        self.notifier.ready(&status);
    }

    fn first_states_decided(&self) -> bool {
        self.groups.values().all(|g| {
            g.router.instances().iter().all(|i| match i.state {
                State::Initialize => false,
                State::Backup => i.master_address.is_some() || i.ready_for_master,
                State::Master | State::Fault | State::Maintenance => true,
            })
        })
    }

    /// The groups and their states, for STATUS=.
    fn systemd_status(&self) -> String {
        let groups: Vec<String> = self
            .groups
            .values()
            .flat_map(|g| g.router.groups())
            .map(|g| format!("{} {}", g.name, state_name(g.state)))
            .collect();
        if groups.is_empty() {
            "no sync groups".to_owned()
        } else {
            groups.join(", ")
        }
    }

    /// Re-reads the configuration and applies the difference. Refused: the
    /// running configuration stays and the diagnostics come back. systemd hears
    /// RELOADING=1 before and READY=1 after, with the outcome in STATUS=.
    pub(crate) async fn reload(&mut self) -> Result<VrrpdReloadReply, ReloadError> {
        self.notifier.reloading();
        let result = self.reload_file().await;
        let status = self.systemd_status();
        self.notifier.reloaded(result.is_ok(), &status);
        result
    }

    /// [`Daemon::reload`] without the systemd notifications.
    async fn reload_file(&mut self) -> Result<VrrpdReloadReply, ReloadError> {
        let loaded = load(&self.options)?;
        self.check_maintenance_kept(&loaded.view)?;
        let links = read_links(&self.netif).await.map_err(ReloadError::Links)?;
        // The running groups' VIPs are on the interfaces too (a MASTER's), and
        // stay until the groups that hold them are stopped below.
        let mut vips = configured_vips(&loaded.view);
        vips.extend(configured_vips(&self.view));
        let lls = link_locals(&self.netif, &loaded.view, &links, &vips).await;
        let plan = translate(&loaded.view, &|iface| lls.get(iface).copied())?;
        check_interfaces(&plan, &links)?;
        self.links.extend(links);
        self.open_io(&plan)?;
        let diff = config::diff(&self.cluster, &loaded.cluster);
        if diff.control_changed {
            tracing::warn!("[control] changed: the socket path, group, connection limits and state_dir take effect at the next restart; lbd_socket and prepare_budget_ms apply now");
        }
        if diff.metrics_changed {
            tracing::warn!("[metrics] changed: takes effect at the next restart");
        }
        let (old_rt, new_rt) = (self.view.vrrpd, loaded.view.vrrpd);
        if diff.vrrpd_changed
            && (old_rt.realtime_priority, old_rt.lock_memory)
                != (new_rt.realtime_priority, new_rt.lock_memory)
        {
            let new = new_rt;
            tracing::warn!(
                realtime_priority = new.realtime_priority,
                lock_memory = new.lock_memory,
                running_priority = Scheduling::current().realtime_priority(),
                memory_locked = self.realtime.memory_locked,
                "[vrrpd] changed: realtime_priority and lock_memory take effect at the next restart"
            );
        }
        let old: BTreeMap<String, GroupPlan> = self
            .plan
            .groups
            .iter()
            .map(|g| (g.name.clone(), g.clone()))
            .collect();
        let mut report = VrrpdReloadReply::default();
        for name in old.keys() {
            if plan.group(name).is_none() {
                tracing::info!(group = %name, "reload: group removed");
                self.stop_group(name).await;
                report.removed.push(name.clone());
            }
        }
        self.cluster = loaded.cluster;
        self.view = loaded.view;
        self.plan = plan.clone();
        self.reindex();
        self.settle_operator_state("reload");
        for new in plan.groups {
            let name = new.name.clone();
            match old.get(&name) {
                None => {
                    tracing::info!(group = %name, "reload: group added");
                    self.start_group(new).await;
                    report.added.push(name.clone());
                }
                Some(o) if *o == new => report.unchanged.push(name.clone()),
                Some(o) => match run_time_changes(o, &new) {
                    Some(inputs) => {
                        tracing::info!(group = %name, changes = inputs.len(), "reload: group updated in place");
                        if let Some(rt) = self.groups.get_mut(&name) {
                            rt.plan = new;
                        }
                        for input in inputs {
                            // The file's priority changed: an override (priority.set)
                            // stays until cleared, and tracking applies on top of
                            // whichever is the base (below).
                            if let Input::SetPriority { instance, .. } = &input {
                                if let Some(o) = self.operator.override_of(instance) {
                                    tracing::info!(group = %name, instance = %instance, priority_override = o, "reload: the file's priority changed; the override stays until `vrrpctl priority clear`");
                                }
                                continue;
                            }
                            self.feed(&name, input, Instant::now()).await;
                        }
                        self.apply_tracking(&name).await;
                        report.updated.push(name.clone());
                    }
                    None => {
                        tracing::warn!(group = %name, "reload: group changed beyond run-time parameters; restarting this group");
                        self.stop_group(&name).await;
                        self.start_group(new).await;
                        report.restarted.push(name.clone());
                    }
                },
            }
        }
        self.reload_hold();
        report.config_changed = serde_json::to_value(&diff).unwrap_or(Value::Null);
        Ok(report)
    }
}

/// The inputs that turn group `old` into `new` without rebuilding it, if
/// every difference is a run-time parameter (priority, preempt, preempt
/// delay, accept mode, advert interval) or daemon-side (checksum form, GARP
/// refresh, unicast minimum TTL). `None`: the group must be rebuilt.
pub(crate) fn run_time_changes(old: &GroupPlan, new: &GroupPlan) -> Option<Vec<Input>> {
    if old.router.sync_groups != new.router.sync_groups
        || old.router.instances.len() != new.router.instances.len()
        || old.instances.len() != new.instances.len()
    {
        return None;
    }
    for (o, n) in old.instances.iter().zip(&new.instances) {
        let mut o = o.clone();
        o.checksum = n.checksum;
        o.garp_refresh = n.garp_refresh;
        o.unicast_min_ttl = n.unicast_min_ttl;
        if o != *n {
            return None;
        }
    }
    let mut inputs = Vec::new();
    for (o, n) in old.router.instances.iter().zip(&new.router.instances) {
        let mut patched = o.clone();
        patched.priority = n.priority;
        patched.preempt = n.preempt;
        patched.preempt_delay = n.preempt_delay;
        patched.accept_mode = n.accept_mode;
        patched.advert_interval_cs = n.advert_interval_cs;
        patched.late_timer_grace = n.late_timer_grace;
        if patched != *n {
            return None;
        }
        let instance = || n.name.clone();
        if o.priority != n.priority {
            inputs.push(Input::SetPriority {
                instance: instance(),
                priority: n.priority,
            });
        }
        let mut change = |change| {
            inputs.push(Input::ConfigChanged {
                instance: instance(),
                change,
            })
        };
        if o.preempt != n.preempt {
            change(ConfigChange::Preempt(n.preempt));
        }
        if o.preempt_delay != n.preempt_delay {
            change(ConfigChange::PreemptDelay(n.preempt_delay));
        }
        if o.accept_mode != n.accept_mode {
            change(ConfigChange::AcceptMode(n.accept_mode));
        }
        if o.advert_interval_cs != n.advert_interval_cs {
            change(ConfigChange::AdvertInterval(n.advert_interval_cs));
        }
        if o.late_timer_grace != n.late_timer_grace {
            change(ConfigChange::LateTimerGrace(n.late_timer_grace));
        }
    }
    Some(inputs)
}

/// When a packet arrived, on the monotonic clock: the kernel's receive timestamp
/// carried over from the real-time clock, so that a packet read late (the loop was
/// busy with another) still starts its timers at its arrival; now if the kernel gave
/// none or the clocks disagree by more than a second.
fn arrival(kernel: Option<std::time::SystemTime>) -> Instant {
    let now = Instant::now();
    let Some(at) = kernel else { return now };
    match std::time::SystemTime::now().duration_since(at) {
        Ok(ago) if ago <= Duration::from_secs(1) => now.checked_sub(ago).unwrap_or(now),
        _ => now,
    }
}

/// What a socket received, as the event loop takes it.
fn packet(iface: &str, received: Received) -> Packet {
    Packet {
        iface: iface.to_owned(),
        at: arrival(received.arrived),
        received,
    }
}

/// At most this many packets per socket in one [`Daemon::read_queued_adverts`]: a
/// flood must not hold the timers back.
const QUEUED_READ_LIMIT: usize = 64;

impl Daemon {
    /// Handles the packets already queued on the sockets, before a timer is acted on.
    async fn read_queued_adverts(&mut self) {
        let sockets: Vec<Arc<VrrpSocket>> = self.sockets.values().cloned().collect();
        for socket in sockets {
            for _ in 0..QUEUED_READ_LIMIT {
                match socket.recv_queued() {
                    None => break,
                    Some(Ok(received)) => self.on_packet(packet(socket.iface(), received)).await,
                    Some(Err(SocketError::MalformedHeader { .. })) => {
                        self.telemetry.decode_error(socket.iface(), "bad_ip_header");
                    }
                    // The receiver task meets it too, and logs it.
                    Some(Err(_)) => break,
                }
            }
        }
    }
}

/// Reads packets from one socket into the loop's channel.
fn spawn_receiver(
    socket: Arc<VrrpSocket>,
    packets: mpsc::Sender<Packet>,
    telemetry: Telemetry,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let iface = socket.iface().to_owned();
        loop {
            match socket.recv().await {
                Ok(received) => {
                    if packets.send(packet(&iface, received)).await.is_err() {
                        return;
                    }
                }
                Err(SocketError::MalformedHeader { .. }) => {
                    telemetry.decode_error(&iface, "bad_ip_header");
                }
                Err(e) => {
                    tracing::debug!(iface = %iface, error = %e, "VRRP receive failed");
                    // Do not spin on a socket that keeps failing.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    })
}

/// Whether the node forwards IPv6 on `iface` (the NA Router flag).
fn ipv6_forwarding(iface: &str) -> bool {
    std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{iface}/forwarding"))
        .map(|v| v.trim() == "1")
        .unwrap_or(false)
}

/// Replies to a pending request, ignoring a client that went away.
pub(crate) fn answer(
    reply: oneshot::Sender<Result<Value, ctl::ReplyError>>,
    result: Result<Value, ctl::ReplyError>,
) {
    let _ = reply.send(result);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::translate;

    fn plan(edits: &[(&str, &str)]) -> GroupPlan {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../cluster.toml.example");
        let mut text = std::fs::read_to_string(path).unwrap();
        for (from, to) in edits {
            assert!(text.contains(from), "{from:?}");
            text = text.replacen(from, to, 1);
        }
        let view = config::parse(&text, "t.toml")
            .unwrap()
            .node_view(Some("lb1"))
            .unwrap();
        translate(&view, &|_| None).unwrap().groups.remove(0)
    }

    fn address(text: &str, flags: u32) -> IfAddress {
        IfAddress {
            ifindex: 2,
            addr: text.parse().unwrap(),
            prefix_len: 64,
            label: None,
            flags: IfAddrFlags(flags),
        }
    }

    const MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0];

    #[test]
    fn the_eui64_link_local_is_derived_from_the_mac() {
        assert_eq!(
            eui64_link_local(MAC),
            "fe80::ff:fe00:200".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn a_link_local_vip_is_never_the_source() {
        let vips: BTreeSet<IpAddr> = ["fe80::c8".parse().unwrap()].into();
        // The kernel lists the newest first: the VIP a MASTER (or a crash) left.
        let addrs = [
            address("2001:db8:0:a::11", IfAddrFlags::PERMANENT),
            address("fe80::c8", IfAddrFlags::PERMANENT),
            address("fe80::ff:fe00:200", IfAddrFlags::PERMANENT),
        ];
        let own = Some("fe80::ff:fe00:200".parse().unwrap());
        assert_eq!(choose_link_local(&addrs, Some(MAC), &vips), own);
        // Without the MAC (or another address generation mode) the VIP still loses.
        assert_eq!(choose_link_local(&addrs, None, &vips), own);
        assert_eq!(choose_link_local(&addrs[..2], Some(MAC), &vips), None);
    }

    #[test]
    fn the_kernel_link_local_wins_over_one_added_later() {
        let none = BTreeSet::new();
        let addrs = [
            address("fe80::1", IfAddrFlags::PERMANENT),
            address("fe80::ff:fe00:200", IfAddrFlags::PERMANENT),
            address("fe80::2", IfAddrFlags::PERMANENT),
        ];
        let eui64 = Some("fe80::ff:fe00:200".parse().unwrap());
        assert_eq!(choose_link_local(&addrs, Some(MAC), &none), eui64);
        // No EUI-64 address (stable privacy): the oldest, listed last.
        let other = [0x02, 0, 0, 0, 0x09, 0];
        let oldest = Some("fe80::2".parse().unwrap());
        assert_eq!(choose_link_local(&addrs, Some(other), &none), oldest);
        // A failed duplicate address detection rules an address out.
        let addrs = [
            address("fe80::1", IfAddrFlags::PERMANENT),
            address(
                "fe80::ff:fe00:200",
                IfAddrFlags::PERMANENT | IfAddrFlags::DADFAILED,
            ),
        ];
        let first = Some("fe80::1".parse().unwrap());
        assert_eq!(choose_link_local(&addrs, Some(MAC), &none), first);
    }

    #[test]
    fn identical_groups_need_no_input() {
        assert_eq!(run_time_changes(&plan(&[]), &plan(&[])), Some(vec![]));
    }

    #[test]
    fn run_time_parameters_become_inputs() {
        let new = plan(&[
            ("priority = { edge = 150 }", "priority = { edge = 120 }"),
            ("preempt = true\n", "preempt = false\n"),
            (
                "advert_interval_ms = 1000\nvips",
                "advert_interval_ms = 500\nvips",
            ),
            ("checksum = \"pseudo-header\"", "checksum = \"rfc9568\""),
        ]);
        let inputs = run_time_changes(&plan(&[]), &new).unwrap();
        assert_eq!(
            inputs,
            vec![
                Input::SetPriority {
                    instance: "public".into(),
                    priority: 120
                },
                Input::ConfigChanged {
                    instance: "public".into(),
                    change: ConfigChange::Preempt(false)
                },
                Input::SetPriority {
                    instance: "server".into(),
                    priority: 120
                },
                Input::ConfigChanged {
                    instance: "server".into(),
                    change: ConfigChange::AdvertInterval(50)
                },
            ]
        );
    }

    #[test]
    fn the_late_timer_grace_changes_at_run_time() {
        let new = plan(&[("late_timer_grace = true", "late_timer_grace = false")]);
        let change = |instance: &str| Input::ConfigChanged {
            instance: instance.into(),
            change: ConfigChange::LateTimerGrace(false),
        };
        assert_eq!(
            run_time_changes(&plan(&[]), &new),
            Some(vec![change("public"), change("server")])
        );
    }

    #[test]
    fn vip_or_membership_changes_rebuild_the_group() {
        let old = plan(&[]);
        let vip = plan(&[(
            "vips = [\"198.18.1.100/24\"]",
            "vips = [\"198.18.1.100/24\", \"198.18.1.101/24\"]",
        )]);
        assert_eq!(run_time_changes(&old, &vip), None);
        let label = plan(&[("label = \"eth0:vip\"", "label = \"eth0:v2\"")]);
        assert_eq!(run_time_changes(&old, &label), None);
        let garp = plan(&[("count = 5,", "count = 2,")]);
        assert_eq!(run_time_changes(&old, &garp), None);
        let members = plan(&[(
            "instances = [\"public\", \"server\"]",
            "instances = [\"server\", \"public\"]",
        )]);
        assert_eq!(run_time_changes(&old, &members), None);
    }
}
