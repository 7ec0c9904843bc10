//! What lbd answers: `prepare` (asked by vrrpd), `status` (`vrrpctl services`),
//! `reload`, and the run-time control of one server (`server.*`, `vrrpctl server`).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::VrrpState;
use crate::ServerCounters;

/// Params of `prepare`: vrrpd is about to make `group` MASTER on this node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PrepareParams {
    /// The sync group taking over (`None`: an instance outside groups).
    pub group: Option<String>,
    /// Its member instances.
    pub instances: Vec<String>,
}

/// Reply to `prepare`: the dataplane is current and the peer's connections are in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PrepareReply {
    /// Always true in a reply (a failure is an error reply).
    pub prepared: bool,
    /// The group, as asked.
    pub group: Option<String>,
    /// Its instances, as asked.
    pub instances: Vec<String>,
    /// Changes were pending when the prepare came.
    pub was_dirty: bool,
    /// What the prepare did, one phrase.
    pub done: String,
    /// Dataplane changes applied.
    pub changes: usize,
    /// How long the prepare took.
    pub duration_ms: f64,
    /// `nft` or `ipvs`.
    pub backend: String,
    /// The peer's connections committed into the kernel (`None`: no sync link).
    pub sync: Option<SyncCommit>,
}

/// Connection entries received from the peer, committed into the kernel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncCommit {
    /// Entries created.
    pub created: u64,
    /// Entries that replaced this node's own.
    pub replaced: u64,
    /// Entries changed in place: the kernel held them as this node wrote them.
    pub updated: u64,
    /// Entries removed (gone at the peer).
    pub removed: u64,
    /// Entries the kernel refused.
    pub failed: u64,
    /// Entries expired before the commit.
    pub expired: u64,
    /// How long the commit took.
    pub elapsed_ms: f64,
    /// Why the commit failed (then the counts are 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Reply to lbd's `reload`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LbdReloadReply {
    /// Always true in a reply (a refused file is an error reply).
    pub reloaded: bool,
    /// New services.
    pub services_added: Vec<String>,
    /// Services gone.
    pub services_removed: Vec<String>,
    /// Services whose settings or servers changed (weights included).
    pub services_changed: Vec<String>,
    /// `[[nat]]` rules changed.
    pub nat_changed: bool,
    /// Sections that changed but take effect at the next restart.
    pub restart_needed: Vec<String>,
    /// Run-time server overrides dropped because the new file has no such server
    /// (`service/server: override`).
    pub overrides_dropped: Vec<String>,
    /// The dataplane apply that followed.
    pub apply: ApplyOutcome,
}

impl LbdReloadReply {
    /// One line for logs and vrrpctl: what changed, or `nothing changed`.
    pub fn summary(&self) -> String {
        let lists = [
            ("services added", &self.services_added),
            ("services removed", &self.services_removed),
            ("services changed", &self.services_changed),
            ("at the next restart", &self.restart_needed),
        ];
        let mut parts: Vec<String> = lists
            .iter()
            .filter(|(_, names)| !names.is_empty())
            .map(|(what, names)| format!("{what}: {}", names.join(", ")))
            .collect();
        if self.nat_changed {
            parts.push("NAT rules changed".to_owned());
        }
        if !self.overrides_dropped.is_empty() {
            parts.push(format!(
                "server overrides dropped (no such server now): {}",
                self.overrides_dropped.join(", ")
            ));
        }
        if parts.is_empty() {
            parts.push("nothing changed".to_owned());
        }
        match (&self.apply.error, self.apply.changes) {
            (Some(e), _) => parts.push(format!("apply failed: {e}")),
            (None, Some(n)) => parts.push(format!("{n} dataplane changes")),
            (None, None) => {}
        }
        parts.join("; ")
    }
}

/// The outcome of a dataplane apply after a reload.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ApplyOutcome {
    /// Applied.
    pub ok: bool,
    /// Changes sent.
    pub changes: Option<usize>,
    /// How long.
    pub duration_ms: Option<f64>,
    /// Why it failed (the configuration is accepted; the apply is retried).
    pub error: Option<String>,
}

/// Reply to lbd's `status` (`vrrpctl services`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LbdStatus {
    /// This node's name.
    pub node: String,
    /// The configuration lbd runs.
    pub config: ConfigStatus,
    /// The dataplane backend.
    pub backend: BackendStatus,
    /// What lbd knows of vrrpd.
    pub vrrpd: VrrpdLink,
    /// Services in configuration order.
    pub services: Vec<ServiceStatus>,
    /// SNAT rules.
    pub snat: Vec<SnatStatus>,
    /// Applies of the desired state.
    pub dataplane: DataplaneStatus,
    /// `prepare` requests answered.
    pub prepare: PrepareStatus,
    /// Connection-state sync with the peer.
    pub sync: SyncStatus,
    /// IP forwarding on the node, per address family (`ipv4`, `ipv6`), and what
    /// needs it.
    pub forwarding: Vec<ForwardingStatus>,
    /// Health checking.
    pub health: HealthStatus,
    /// Service quorums as priority tracks: wanted, and what vrrpd accepted.
    pub priority_tracks: PriorityTracksStatus,
    /// Run-time server overrides (`vrrpctl server`) and their state file.
    pub server_overrides: ServerOverridesStatus,
    /// The conntrack dump that counted active and inactive connections.
    pub connection_count: ConnectionCount,
    /// What could not be done as configured, one sentence each.
    pub notes: Vec<String>,
    /// Recent errors, `unix_ms: text`.
    pub errors: Vec<String>,
    /// The control socket's connection counters.
    pub control: ServerCounters,
    /// Active-active mode: the VIPs this node announces through its routing daemon
    /// (`None` in active-backup mode).
    #[serde(default)]
    pub announce: Option<AnnounceStatus>,
}

/// Active-active mode: what this node announces, and what its routing daemon made
/// of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AnnounceStatus {
    /// `frr` or `bird`.
    pub daemon: String,
    /// The cluster's nodes, in the file's order.
    pub members: Vec<String>,
    /// The operator drained this node (`vrrpctl announce drain`): every VIP withdrawn.
    pub drained: bool,
    /// The VIPs lbd wants announced (services that can take traffic).
    pub wanted: Vec<String>,
    /// The VIPs the daemon announced at the last read-back.
    pub announced: Vec<String>,
    /// The daemon's BGP sessions at the last read-back (FRR only).
    pub peers: Vec<AnnouncePeer>,
    /// Why the last attempt failed, if it did.
    pub error: Option<String>,
    /// Announcements and withdrawals sent since start.
    pub changes: u64,
}

/// One BGP session of the node's routing daemon.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AnnouncePeer {
    /// The neighbour's address.
    pub address: String,
    /// The session's state (`Established` when the router takes routes).
    pub state: String,
    /// Prefixes sent to it (IPv4 and IPv6 unicast).
    pub prefixes_sent: u64,
}

/// The configuration lbd runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConfigStatus {
    /// The file.
    pub file: String,
    /// Loaded (or reloaded) at, Unix ms.
    pub loaded_unix_ms: u64,
    /// Its fingerprint.
    pub fingerprint: String,
    /// vrrpd's, once known.
    pub vrrpd_fingerprint: Option<String>,
    /// vrrpd runs another configuration (`None`: not known).
    pub differs_from_vrrpd: Option<bool>,
}

/// The dataplane backend.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BackendStatus {
    /// `nft` or `ipvs`.
    pub name: String,
    /// Why this one.
    pub reason: String,
    /// The nftables table lbd owns.
    pub table: String,
}

/// What lbd knows of vrrpd.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VrrpdLink {
    /// vrrpd's control socket.
    pub socket: String,
    /// The last contact succeeded.
    pub connected: bool,
    /// Why it failed.
    pub error: Option<String>,
    /// Each group's state (kept while vrrpd is away).
    pub groups: BTreeMap<String, VrrpState>,
}

/// One service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// Name.
    pub name: String,
    /// VIP.
    pub vip: IpAddr,
    /// Port or range.
    pub ports: String,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Scheduler as configured.
    pub scheduler: String,
    /// Scheduler the dataplane uses.
    #[serde(default)]
    pub effective_scheduler: Option<String>,
    /// Who gets new connections: `servers`, `sorry`, `nobody`, `not_balanced`.
    pub serving: String,
    /// Real servers.
    #[serde(default)]
    pub servers: Vec<ServerStatus>,
    /// The sorry server.
    #[serde(default)]
    pub sorry_server: Option<SorryServerStatus>,
    /// Down servers stay in the dataplane with weight 0.
    #[serde(default)]
    pub inhibit_on_failure: Option<bool>,
    /// The quorum.
    #[serde(default)]
    pub quorum: Option<QuorumStatus>,
}

fn yes() -> bool {
    true
}

/// One real server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerStatus {
    /// Name.
    pub name: String,
    /// Address.
    pub address: IpAddr,
    /// Port (`None`: the client's destination port).
    #[serde(default)]
    pub port: Option<u16>,
    /// Configured weight.
    pub weight: u32,
    /// Weight in the dataplane (0 while down, drained or disabled; a run-time
    /// weight while one is set).
    pub effective_weight: u32,
    /// `up`, `down` or `unchecked`.
    pub health: String,
    /// What it does now: `up`, `down` (its check failed), `drain` (weight 0:
    /// no new connections, established ones continue) or `disabled` (out of
    /// service as if its check failed).
    #[serde(default)]
    pub state: Option<String>,
    /// The run-time override in force on this node (`vrrpctl server`).
    #[serde(default, rename = "override")]
    pub server_override: Option<ServerOverride>,
    /// Established TCP connections to it in conntrack now (IPVS's ActConn).
    #[serde(default)]
    pub active_connections: Option<u64>,
    /// Its other tracked connections: TCP opening or closing, and UDP (InActConn).
    #[serde(default)]
    pub inactive_connections: Option<u64>,
    /// The check's name.
    #[serde(default)]
    pub check: Option<String>,
    /// The last check.
    #[serde(default)]
    pub last_check: Option<LastCheck>,
    /// The dataplane holds it (absent: it does).
    #[serde(default = "yes")]
    pub in_dataplane: bool,
    /// Flapping: held down.
    #[serde(default)]
    pub held: Option<bool>,
    /// Checks passed in a row.
    #[serde(default)]
    pub consecutive_ok: Option<u32>,
    /// Checks failed in a row.
    #[serde(default)]
    pub consecutive_fail: Option<u32>,
    /// In its health state for.
    #[serde(default)]
    pub state_for_ms: Option<u64>,
    /// The address checks leave from.
    #[serde(default)]
    pub check_source: Option<IpAddr>,
    /// Its last health transition.
    #[serde(default)]
    pub last_transition: Option<HealthTransition>,
    /// Checks run.
    #[serde(default)]
    pub checks: Option<u64>,
    /// Health transitions.
    #[serde(default)]
    pub transitions: Option<u64>,
    /// Its dataplane counters.
    #[serde(flatten)]
    pub traffic: Traffic,
}

/// A server's last check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastCheck {
    /// Passed.
    pub ok: bool,
    /// The outcome, one phrase.
    #[serde(default)]
    pub result: String,
    /// Why it failed.
    #[serde(default)]
    pub reason: Option<String>,
    /// How long it took.
    #[serde(default)]
    pub duration_ms: f64,
    /// How long ago.
    #[serde(default)]
    pub ago_ms: u64,
}

/// A server's last health transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthTransition {
    /// Health before.
    pub from: String,
    /// Health after.
    pub to: String,
    /// Why.
    #[serde(default)]
    pub reason: String,
    /// The last check's outcome.
    #[serde(default)]
    pub last: String,
    /// When, Unix ms.
    #[serde(default)]
    pub unix_ms: u64,
    /// How long ago.
    #[serde(default)]
    pub ago_ms: u64,
}

/// A service's sorry server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SorryServerStatus {
    /// Address.
    pub address: IpAddr,
    /// Port.
    #[serde(default)]
    pub port: Option<u16>,
    /// Its dataplane counters.
    #[serde(flatten)]
    pub traffic: Traffic,
}

/// A server's dataplane counters (`None`: the backend does not count it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Traffic {
    /// Connections now.
    pub connections: Option<u64>,
    /// Packets.
    pub packets: Option<u64>,
    /// Bytes.
    pub bytes: Option<u64>,
}

/// A service's quorum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumStatus {
    /// Servers needed.
    pub min: u32,
    /// Servers up with a weight above 0.
    pub up: u32,
    /// `up >= min`.
    pub met: bool,
    /// Priority change asked of vrrpd while lost.
    pub priority_delta: i16,
    /// The sync group holding the VIP.
    #[serde(default)]
    pub group: Option<String>,
}

/// A SNAT rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnatStatus {
    /// The rule's name.
    pub name: String,
    /// The original destination it matches.
    pub destination: IpAddr,
    /// The new source: one entry per address, used in turn.
    #[serde(default)]
    pub source: Vec<SnatAddress>,
}

/// One address a SNAT rule rewrites the source to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnatAddress {
    /// The address.
    pub address: IpAddr,
    /// Its source ports, inclusive (`None`: the kernel picks).
    #[serde(default)]
    pub ports: Option<[u16; 2]>,
    /// Distinct (protocol, port) pairs of tracked connections NATed to the address.
    /// Read from the conntrack table off the daemon's loop, so only the status page
    /// (on the metrics listener) fills it; the control socket's `status` leaves it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports_in_use: Option<u64>,
    /// Ports the SNAT rules let the address use; filled with `ports_in_use`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports_available: Option<u32>,
}

/// Applies of the desired state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DataplaneStatus {
    /// Changes wait for the next apply.
    pub dirty: bool,
    /// Applies done.
    pub applies: u64,
    /// Applies failed.
    pub apply_errors: u64,
    /// The last apply.
    pub last_apply: Option<LastApply>,
    /// A failed apply is retried in.
    pub retry_in_ms: Option<u64>,
}

/// The last apply of the desired state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LastApply {
    /// Applied.
    pub ok: bool,
    /// What caused it (`start`, `health`, `reload`, `prepare`, ...).
    pub why: String,
    /// When, Unix ms.
    pub unix_ms: u64,
    /// How long.
    pub duration_ms: Option<f64>,
    /// Changes sent.
    pub changes: Option<usize>,
    /// Netlink messages of the batch.
    pub messages: Option<usize>,
    /// Bytes of the batch.
    pub batch_bytes: Option<usize>,
    /// The kernel's state had to be read back.
    pub reread: Option<bool>,
    /// Counts by kind of change (`rules_added`, `elements_removed`, ...).
    pub report: BTreeMap<String, serde_json::Value>,
    /// Why it failed.
    pub error: Option<String>,
}

/// `prepare` requests answered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PrepareStatus {
    /// How many.
    pub count: u64,
    /// The last one.
    pub last: Option<LastPrepare>,
}

/// The last `prepare`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LastPrepare {
    /// When, Unix ms.
    pub unix_ms: u64,
    /// The group.
    pub group: Option<String>,
    /// The reply sent.
    pub reply: Option<PrepareReply>,
    /// Why it failed.
    pub error: Option<String>,
}

/// Connection-state sync with the peer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncStatus {
    /// `[sync] enabled`.
    pub enabled: bool,
    /// `conntrack`, `ipvs+conntrack` or `off`.
    pub mode: String,
    /// The link, when sync runs.
    #[serde(flatten, default)]
    pub link: Option<SyncLinkStatus>,
    /// The last commit of the peer's entries (at prepare).
    pub last_commit: Option<LastCommit>,
}

impl SyncStatus {
    /// Whether this node holds the peer's complete state (what one checks before
    /// a planned failover): `None` when sync is off.
    pub fn ready(&self) -> Option<bool> {
        self.link
            .as_ref()
            .map(|l| l.peer_complete && l.entries_pending == 0)
    }
}

/// IP forwarding of one address family on the node: NAT services need the node to
/// route the servers' answers back to the clients.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ForwardingStatus {
    /// `ipv4` or `ipv6`.
    pub family: String,
    /// The sysctl that turns it on (`net.ipv4.ip_forward`,
    /// `net.ipv6.conf.all.forwarding`).
    pub sysctl: String,
    /// Its value when last read (`None`: unreadable, see `error`).
    pub enabled: Option<bool>,
    /// Why it could not be read.
    pub error: Option<String>,
    /// What of this family the node forwards (`service web`, `nat web-snat`):
    /// services with NAT forwarding and SNAT rules.
    pub needed_by: Vec<String>,
    /// When it was last read, Unix ms.
    pub checked_unix_ms: u64,
}

impl ForwardingStatus {
    /// Something needs forwarding and it is not known to be on: those services
    /// get no answers from their servers.
    pub fn missing(&self) -> bool {
        !self.needed_by.is_empty() && self.enabled != Some(true)
    }
}

/// The sync link's state and counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncLinkStatus {
    /// Where it listens for the peer.
    pub listen: SocketAddr,
    /// The peer.
    pub peer: SocketAddr,
    /// Streaming to the peer (this node sends: MASTER).
    #[serde(default)]
    pub connected: bool,
    /// Receiving from the peer.
    #[serde(default)]
    pub receiving: bool,
    /// Holds the peer's complete state (its full dump arrived).
    #[serde(default)]
    pub peer_complete: bool,
    /// Why not complete.
    #[serde(default)]
    pub incomplete_because: Option<String>,
    /// Entries held from the peer.
    #[serde(default)]
    pub entries_stored: u64,
    /// Entries not yet in the kernel.
    #[serde(default)]
    pub entries_pending: u64,
    /// Entries are written into the kernel as they arrive.
    #[serde(default)]
    pub writing_to_kernel: bool,
    /// Entries written into the kernel.
    #[serde(default)]
    pub entries_written: u64,
    /// Events sent to the peer.
    #[serde(default)]
    pub events_sent: u64,
    /// Full dumps sent.
    #[serde(default)]
    pub dumps_sent: u64,
    /// Events lost (the kernel's buffer overran).
    #[serde(default)]
    pub events_lost: u64,
    /// Streaming conntrack events.
    #[serde(default)]
    pub streaming_events: bool,
    /// Lines received.
    #[serde(default)]
    pub lines_received: u64,
    /// Lines refused as too long.
    #[serde(default)]
    pub lines_too_long: u64,
    /// Connections refused.
    #[serde(default)]
    pub connections_refused: RefusedConnections,
}

/// Sync connections refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RefusedConnections {
    /// From another address than the peer's.
    pub not_peer: u64,
    /// Beyond the limit.
    pub too_many: u64,
}

/// The last commit of the peer's entries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LastCommit {
    /// When, Unix ms.
    pub unix_ms: u64,
    /// What it did.
    pub report: SyncCommit,
}

/// Health checking.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthStatus {
    /// Servers checked.
    pub targets: usize,
    /// Check counters.
    pub counters: BTreeMap<String, u64>,
}

/// Service quorums as priority tracks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PriorityTracksStatus {
    /// The tracks lbd wants vrrpd to apply.
    pub wanted: Vec<super::vrrpd::TrackEntry>,
    /// What sending them did.
    pub vrrpd: TrackReport,
}

/// What sending the tracks to vrrpd did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrackReport {
    /// The list vrrpd last accepted.
    pub accepted: Option<Vec<super::vrrpd::TrackEntry>>,
    /// When, Unix ms.
    pub accepted_unix_ms: Option<u64>,
    /// The preemption hold vrrpd last accepted.
    pub accepted_preempt_hold: Option<String>,
    /// Why the last request failed.
    pub error: Option<String>,
    /// Requests sent.
    pub requests: u64,
}

/// lbd's method names for the run-time control of one server.
pub mod methods {
    /// Weight 0 until enabled: no new connections, established ones continue.
    pub const SERVER_DRAIN: &str = "server.drain";
    /// Out of service as if its check failed, until enabled.
    pub const SERVER_DISABLE: &str = "server.disable";
    /// Clears the server's override: back to the configuration.
    pub const SERVER_ENABLE: &str = "server.enable";
    /// A run-time weight until enabled.
    pub const SERVER_WEIGHT: &str = "server.weight";
    /// The overrides in force.
    pub const SERVER_LIST: &str = "server.list";
    /// Clears every override.
    pub const SERVER_CLEAR: &str = "server.clear";
    /// Active-active: withdraw every VIP of this node until resumed (kept across
    /// restarts); replies [`super::AnnounceStatus`].
    pub const ANNOUNCE_DRAIN: &str = "announce.drain";
    /// Active-active: announce the VIPs of healthy services again.
    pub const ANNOUNCE_RESUME: &str = "announce.resume";
}

/// What an operator set for one server at run time (kept until cleared, across
/// reloads and restarts, on this node).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ServerOverride {
    /// Weight 0: no new connections, established ones continue.
    Drain,
    /// Out of service as if its check failed.
    Disable,
    /// This weight instead of the configured one (0..=65535).
    Weight {
        /// The weight.
        weight: u32,
    },
}

impl std::fmt::Display for ServerOverride {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerOverride::Drain => f.write_str("drain"),
            ServerOverride::Disable => f.write_str("disable"),
            ServerOverride::Weight { weight } => write!(f, "weight {weight}"),
        }
    }
}

/// Params of `server.drain`, `server.disable` and `server.enable`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerParams {
    /// The service's name.
    pub service: String,
    /// The server's name within it.
    pub server: String,
}

/// Params of `server.weight`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerWeightParams {
    /// The service's name.
    pub service: String,
    /// The server's name within it.
    pub server: String,
    /// The run-time weight, 0..=65535 as in the file (0 drains).
    pub weight: u32,
}

/// Params of `server.clear`: `all` must be true (one server: `server.enable`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerClearParams {
    /// Every override.
    pub all: bool,
}

/// One override in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerOverrideEntry {
    /// The service.
    pub service: String,
    /// The server.
    pub server: String,
    /// What was set.
    #[serde(rename = "override")]
    pub server_override: ServerOverride,
    /// Since when, Unix ms.
    pub since_unix_ms: u64,
}

/// Reply to `server.drain`, `server.disable`, `server.enable`, `server.weight`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerReply {
    /// This node (an override applies to this node's lbd only).
    pub node: String,
    /// The service.
    pub service: String,
    /// The server.
    pub server: String,
    /// The override now (`None`: the configuration rules).
    #[serde(rename = "override")]
    pub server_override: Option<ServerOverride>,
    /// The override before.
    pub previous: Option<ServerOverride>,
    /// The server's state now: `up`, `down`, `drain`, `disabled`.
    pub state: String,
    /// Its configured weight.
    pub weight: u32,
    /// The weight the dataplane gives it now.
    pub effective_weight: u32,
    /// The override is in the state file (a restart keeps it).
    pub persisted: bool,
    /// The dataplane apply.
    pub apply: ApplyOutcome,
}

/// Reply to `server.list`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerListReply {
    /// This node.
    pub node: String,
    /// The overrides in force, by service and server.
    pub overrides: Vec<ServerOverrideEntry>,
}

/// Reply to `server.clear`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerClearReply {
    /// This node.
    pub node: String,
    /// The overrides cleared.
    pub cleared: Vec<ServerOverrideEntry>,
    /// The state file holds no override now.
    pub persisted: bool,
    /// The dataplane apply.
    pub apply: ApplyOutcome,
}

/// Run-time server overrides in `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerOverridesStatus {
    /// The overrides in force (they apply to this node only: set them on the
    /// peer too, or a failover serves the server as configured).
    pub entries: Vec<ServerOverrideEntry>,
    /// The state file that keeps them across restarts.
    pub state_file: String,
    /// Why the state file could not be used at start-up (lbd then started
    /// without overrides and kept the file aside as `<file>.bad`).
    pub load_error: Option<String>,
    /// Entries dropped at start-up or reload: no such server in the configuration.
    pub dropped: Vec<String>,
    /// Writes of the state file that failed.
    pub write_errors: u64,
    /// Why the last write failed.
    pub last_write_error: Option<String>,
}

/// The conntrack dump behind the active and inactive connection counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectionCount {
    /// Entries of the services' VIPs counted.
    pub entries: u64,
    /// How long the dump took.
    pub duration_ms: f64,
    /// How old the counts are: one dump answers every request for a second.
    pub age_ms: f64,
    /// Why there are no counts (then every server's are absent).
    pub error: Option<String>,
}
