//! What vrrpd answers and publishes, and the params of its operator commands.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::VrrpState;
use crate::ServerCounters;

/// Data of a `group.state` event: a sync group (`instance` null) or one of its
/// instances changed state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStateEvent {
    /// The sync group.
    pub group: String,
    /// The instance; `None` for the group as a whole.
    pub instance: Option<String>,
    /// State before.
    pub from: VrrpState,
    /// State now.
    pub to: VrrpState,
    /// Why, snake_case (`master_down`, `peer_released`, `higher_priority`, ...).
    #[serde(default)]
    pub reason: String,
    /// When, Unix ms.
    #[serde(default)]
    pub time: u64,
}

/// Reply to `status`: the node, every sync group and every instance.
///
/// Built in one place in vrrpd (`operate.rs`, `Daemon::status`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VrrpdStatus {
    /// This node's `[[node]]` name.
    pub node: String,
    /// `[cluster] name`.
    pub cluster: String,
    /// Fingerprint of the configuration vrrpd runs (lbd compares it with its own).
    pub config_fingerprint: Option<String>,
    /// One entry per sync group, in configuration order.
    pub groups: Vec<GroupStatus>,
    /// One entry per instance, group by group.
    pub instances: Vec<InstanceStatus>,
    /// Interfaces held down by `drill.fault`.
    pub held_interfaces: Vec<String>,
    /// The group of a running `drill.failover`.
    pub failover_drill: Option<String>,
    /// Preemption held back for lbd's connection-state sync.
    pub preempt_hold: PreemptHoldStatus,
    /// `[vrrpd]` scheduling: asked for and got.
    pub realtime: RealtimeStatus,
    /// The control socket's connection counters.
    pub control: ServerCounters,
    /// The state file that keeps maintenance and priority overrides.
    pub state_file: StateFileStatus,
}

/// One sync group in [`VrrpdStatus`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupStatus {
    /// Group name.
    pub name: String,
    /// The group's state (`None` before it started).
    pub state: Option<VrrpState>,
    /// The group's configured priority on this node.
    pub priority: Option<u8>,
    /// Member instances.
    pub members: Vec<String>,
    /// Every VIP of the group (all members), `address/prefix`.
    pub vips: Vec<String>,
    /// The last BACKUP → MASTER takeover on this node.
    pub last_takeover: Option<TakeoverRecord>,
    /// Takeovers that went on without lbd's prepare.
    pub prepare_misses: u64,
    /// A running `drill.fault`: ms until it ends.
    pub fault_drill_ends_in_ms: Option<u64>,
    /// Priority deltas applied to the group (`track.set`).
    pub tracking: GroupTracking,
    /// The operator holds the group in maintenance (kept across restarts).
    pub maintenance: Option<MaintenanceStatus>,
}

/// The phases of one takeover (ms from the decision) and lbd's prepare.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TakeoverRecord {
    /// When the decision was taken, Unix ms.
    pub started_unix_ms: u64,
    /// Each phase's end, ms from the decision, in pipeline order.
    pub phases_ms: TakeoverPhases,
    /// `acknowledged`, or `missed: absent|timeout|error`.
    pub prepare: String,
}

/// The takeover pipeline's phases, in the order they run (and serialise).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TakeoverPhases {
    /// lbd acknowledged (or the budget ran out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepare: Option<f64>,
    /// Every VIP of the group is on its interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vips_added: Option<f64>,
    /// The first advert as MASTER went out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_advert: Option<f64>,
    /// The last gratuitous ARP / NA burst went out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub garp_sent: Option<f64>,
}

impl TakeoverPhases {
    /// The phase names, in pipeline order.
    pub const ORDER: [&'static str; 4] = ["prepare", "vips_added", "first_advert", "garp_sent"];

    /// Records phase `name` at `ms` (rounded); an unknown name is ignored.
    pub fn set(&mut self, name: &str, ms: f64) {
        let ms = Some(super::round_ms(ms));
        match name {
            "prepare" => self.prepare = ms,
            "vips_added" => self.vips_added = ms,
            "first_advert" => self.first_advert = ms,
            "garp_sent" => self.garp_sent = ms,
            _ => {}
        }
    }

    /// The phases reached, in pipeline order.
    pub fn in_order(&self) -> Vec<(&'static str, f64)> {
        let values = [
            self.prepare,
            self.vips_added,
            self.first_advert,
            self.garp_sent,
        ];
        Self::ORDER
            .into_iter()
            .zip(values)
            .filter_map(|(name, v)| v.map(|v| (name, v)))
            .collect()
    }
}

/// One instance in [`VrrpdStatus`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceStatus {
    /// Instance name.
    pub name: String,
    /// Its sync group.
    #[serde(default)]
    pub group: String,
    /// Its interface.
    #[serde(default)]
    pub interface: Option<String>,
    /// VRID.
    #[serde(default)]
    pub vrid: Option<u8>,
    /// `ipv4` or `ipv6`.
    #[serde(default)]
    pub family: Option<String>,
    /// VRRP version, 2 or 3.
    #[serde(default)]
    pub version: Option<u8>,
    /// State.
    pub state: VrrpState,
    /// The base priority: the override, else the file's.
    pub priority: u8,
    /// Priority after tracking; what adverts carry.
    pub effective_priority: u8,
    /// The file's priority.
    #[serde(default)]
    pub configured_priority: Option<u8>,
    /// The operator's override of the file's priority (`priority.set`).
    #[serde(default)]
    pub priority_override: Option<PriorityOverrideStatus>,
    /// The master's address: ours when MASTER.
    #[serde(default)]
    pub master_address: Option<IpAddr>,
    /// The master's priority: ours when MASTER, else that of the master's last
    /// advert heard (`None`: none heard yet).
    #[serde(default)]
    pub master_priority: Option<u8>,
    /// The address adverts leave from.
    #[serde(default)]
    pub primary_address: Option<IpAddr>,
    /// Configured advert interval.
    #[serde(default)]
    pub advert_interval_ms: Option<u32>,
    /// The master's advert interval (v3: learned from its adverts).
    #[serde(default)]
    pub master_advert_interval_ms: u32,
    /// Master_Down_Interval.
    #[serde(default)]
    pub master_down_interval_ms: f64,
    /// Skew_Time at the effective priority.
    #[serde(default)]
    pub skew_time_ms: f64,
    /// Whether a higher priority takes over from a lower-priority master.
    #[serde(default)]
    pub preempt: Option<bool>,
    /// Held in maintenance.
    #[serde(default)]
    pub maintenance: bool,
    /// The instance's link is up.
    #[serde(default)]
    pub link_up: bool,
    /// Tracked interfaces that are down.
    #[serde(default)]
    pub tracked_down: Vec<String>,
    /// BACKUP whose Master_Down_Timer ran out, held by its group.
    #[serde(default)]
    pub ready_for_master: bool,
    /// The instance's VIPs, `address/prefix`.
    #[serde(default)]
    pub vips: Vec<String>,
    /// Armed timers.
    #[serde(default)]
    pub timers: Vec<TimerStatus>,
    /// Packet and transition counters, by name.
    #[serde(default)]
    pub counters: BTreeMap<String, u64>,
    /// The last transition.
    #[serde(default)]
    pub last_transition: Option<TransitionStatus>,
    /// Another master claims this VRID (see `TWO MASTERS` / `SPLIT BRAIN`).
    #[serde(default)]
    pub dual_master: Option<DualMasterStatus>,
}

/// An armed timer of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerStatus {
    /// `advertisement`, `master_down`, `gratuitous_repeat` or `vip_retry`.
    pub timer: String,
    /// Fires in.
    pub in_ms: u64,
}

/// An instance's last transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitionStatus {
    /// State before.
    pub from: VrrpState,
    /// State after.
    pub to: VrrpState,
    /// Why, snake_case.
    #[serde(default)]
    pub reason: String,
    /// When, Unix ms.
    #[serde(default)]
    pub unix_ms: u64,
    /// How long ago.
    #[serde(default)]
    pub ago_ms: u64,
}

/// A MASTER instance that hears another master for its VRID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DualMasterStatus {
    /// `peer_master` (a split brain, healed), or why the adverts are dropped
    /// (`bad_ttl`, `checksum`, `auth`, `interval`, `version`, ...).
    pub reason: String,
    /// The other master.
    pub peer: IpAddr,
    /// TTL / hop limit of its last advert.
    #[serde(default)]
    pub ttl: u8,
    /// It sends unicast.
    #[serde(default)]
    pub unicast: bool,
    /// Its adverts seen.
    #[serde(default)]
    pub adverts: u64,
    /// First seen, Unix ms.
    #[serde(default)]
    pub since_unix_ms: u64,
    /// Last seen, Unix ms.
    #[serde(default)]
    pub last_unix_ms: u64,
    /// What the operator should do.
    #[serde(default)]
    pub fix: String,
}

/// A group's priority tracking.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupTracking {
    /// Group name.
    pub group: String,
    /// Sum of the deltas now applied.
    pub delta: i32,
    /// Each tracked object, by source.
    pub tracks: Vec<TrackStatus>,
    /// Each member's priorities.
    pub instances: Vec<MemberPriority>,
}

/// One tracked object of a source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackStatus {
    /// Who set it (`lbd`).
    pub source: String,
    /// What is tracked.
    pub name: String,
    /// Its delta now.
    pub weight_delta: i16,
}

/// One instance's priorities and state (tracking, `priority.set`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberPriority {
    /// Instance name.
    pub instance: String,
    /// Configured priority.
    #[serde(default)]
    pub priority: Option<u8>,
    /// What adverts carry.
    #[serde(default)]
    pub effective_priority: Option<u8>,
    /// State.
    #[serde(default)]
    pub state: Option<VrrpState>,
}

/// An instance's priority set by `priority.set`, kept until `priority.clear`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriorityOverrideStatus {
    /// The priority that replaces the file's (tracking deltas apply on top).
    pub priority: u8,
    /// Since when, Unix ms.
    #[serde(default)]
    pub since_unix_ms: u64,
}

/// A group held in maintenance (kept across restarts until `maintenance off`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceStatus {
    /// Since when, Unix ms.
    #[serde(default)]
    pub since_unix_ms: u64,
    /// How long ago, whole seconds.
    #[serde(default)]
    pub ago_s: u64,
    /// Who or what put it there (`vrrpctl maintenance on`, or why vrrpd did).
    #[serde(default)]
    pub reason: String,
}

/// vrrpd's state file (maintenance, priority overrides): where, and how reading
/// and writing it went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StateFileStatus {
    /// Where it is.
    pub path: String,
    /// Why it could not be used at start-up (every group then started in
    /// maintenance).
    pub load_error: Option<String>,
    /// Entries dropped because the configuration has no place for them.
    pub ignored: Vec<String>,
    /// Writes since start-up.
    pub writes: u64,
    /// Writes that failed since start-up.
    pub write_errors: u64,
    /// The last write's error, until a write succeeds.
    pub last_write_error: Option<String>,
}

/// Preemption held back for lbd's connection-state sync.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PreemptHoldStatus {
    /// Held now.
    pub held: bool,
    /// Why, by source.
    pub reasons: BTreeMap<String, String>,
    /// Since when, Unix ms.
    pub since_unix_ms: Option<u64>,
    /// The hold ran out: this node preempts without the peer's state.
    pub expired: bool,
    /// Holds that ran out since start-up.
    pub expirations: u64,
    /// `[sync] preempt_wait_ms` (0: no hold).
    pub wait_ms: u64,
}

/// `[vrrpd]` scheduling: what was asked for at start-up and what the loop has.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RealtimeStatus {
    /// `realtime_priority` asked for (0: none).
    pub requested_priority: u8,
    /// The event loop's policy now (`SCHED_FIFO`, `SCHED_OTHER`, ...).
    pub policy: String,
    /// Its real-time priority now (0: none).
    pub priority: u8,
    /// `lock_memory` asked for.
    pub lock_memory: bool,
    /// Memory is locked.
    pub memory_locked: bool,
    /// Locked memory, KiB.
    pub locked_kib: Option<u64>,
    /// Each setting not applied.
    pub warnings: Vec<String>,
}

/// Params of `reload` (both daemons): `force` is lbd's guard against a file that
/// drops most services; vrrpd takes it so that one request serves both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadParams {
    /// Accept a file that drops most of the running services.
    #[serde(default)]
    pub force: bool,
}

/// Reply to vrrpd's `reload`: each group by what happened to it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VrrpdReloadReply {
    /// Groups the file left as they were.
    pub unchanged: Vec<String>,
    /// Groups changed in place (priority, preempt, interval, ...).
    pub updated: Vec<String>,
    /// Groups rebuilt (changes beyond run-time parameters).
    pub restarted: Vec<String>,
    /// New groups.
    pub added: Vec<String>,
    /// Groups gone.
    pub removed: Vec<String>,
    /// The configuration diff (the config crate's `Diff`).
    pub config_changed: serde_json::Value,
}

impl VrrpdReloadReply {
    /// One line for logs and vrrpctl: `updated: edge; unchanged: core` (the lists
    /// that are not empty), or `nothing changed`.
    pub fn summary(&self) -> String {
        let lists = [
            ("added", &self.added),
            ("removed", &self.removed),
            ("updated", &self.updated),
            ("restarted", &self.restarted),
            ("unchanged", &self.unchanged),
        ];
        let parts: Vec<String> = lists
            .iter()
            .filter(|(_, names)| !names.is_empty())
            .map(|(what, names)| format!("{what}: {}", names.join(", ")))
            .collect();
        if parts.is_empty() {
            "no groups".to_owned()
        } else {
            parts.join("; ")
        }
    }
}

/// Params of `drill.failover`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailoverParams {
    /// The group (default: the one this node is MASTER of).
    #[serde(default)]
    pub group: Option<String>,
}

/// Params of `drill.fault`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultParams {
    /// The group (default: every group).
    #[serde(default)]
    pub group: Option<String>,
    /// How long to hold FAULT, 1..=3600 s.
    #[serde(default = "default_fault_seconds")]
    pub seconds: u32,
}

fn default_fault_seconds() -> u32 {
    10
}

/// Params of `maintenance`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceParams {
    /// On or off.
    pub on: bool,
    /// The group (default: every group).
    #[serde(default)]
    pub group: Option<String>,
}

/// Params of `priority.set`: exactly one of `instance` and `group`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorityParams {
    /// One instance.
    #[serde(default)]
    pub instance: Option<String>,
    /// Every member of a group.
    #[serde(default)]
    pub group: Option<String>,
    /// The override of the file's priority, 1..=255 (255 only where this node
    /// owns the group's VIPs).
    pub priority: u8,
}

/// Params of `priority.clear`: exactly one of `instance`, `group` and `all`
/// (the others absent).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorityClearParams {
    /// One instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Every member of a group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Every override.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
}

/// Params of `track.set` (sent by lbd): the complete list of one source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackParams {
    /// Who sends it (such as `lbd`); its previous list is replaced.
    pub source: String,
    /// Every entry of the source (empty: it has none).
    pub tracks: Vec<TrackEntry>,
    /// Hold back preemption, for this reason; absent or null: the source does not.
    #[serde(default)]
    pub preempt_hold: Option<String>,
}

/// One tracked object's effect on a sync group's priority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackEntry {
    /// The sync group.
    pub group: String,
    /// What is tracked (such as `service web`), unique within the source.
    pub name: String,
    /// Added to the group's priority now (-254..=254; 0 while all is well).
    pub weight_delta: i16,
}

/// Reply to `track.set`: every group's tracking after the change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrackSetReply {
    /// The source, as sent.
    pub source: String,
    /// Each group's tracking now.
    pub groups: Vec<GroupTracking>,
    /// The preemption hold now.
    pub preempt_hold: PreemptHoldStatus,
}

/// A group and its state, in operator replies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupState {
    /// Group name.
    pub group: String,
    /// Its state now.
    #[serde(default)]
    pub state: Option<VrrpState>,
}

/// Whether an operator's change (`maintenance`, `priority.set`,
/// `priority.clear`) reached the state file; part of those replies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Persisted {
    /// Written: the change outlasts a restart of vrrpd.
    pub persisted: bool,
    /// Why it was not written (the change applies now but is lost at the next
    /// restart); absent when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// Reply to `maintenance`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceReply {
    /// On or off, as asked.
    pub maintenance: bool,
    /// Each group concerned, with its state now.
    #[serde(default)]
    pub groups: Vec<GroupState>,
    /// Whether the state file has it.
    #[serde(flatten)]
    pub persisted: Persisted,
}

/// One instance's priorities after a priority command, and its override.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstancePriority {
    /// Instance name.
    pub instance: String,
    /// Its sync group.
    #[serde(default)]
    pub group: String,
    /// The base priority: the override, else the file's.
    #[serde(default)]
    pub priority: Option<u8>,
    /// What adverts carry.
    #[serde(default)]
    pub effective_priority: Option<u8>,
    /// The file's priority.
    #[serde(default)]
    pub configured_priority: Option<u8>,
    /// State.
    #[serde(default)]
    pub state: Option<VrrpState>,
    /// The override now (`None`: the file's priority applies).
    #[serde(default, rename = "override")]
    pub priority_override: Option<PriorityOverrideStatus>,
}

/// Reply to `priority.set`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriorityReply {
    /// Each instance changed.
    #[serde(default)]
    pub instances: Vec<InstancePriority>,
    /// Whether the state file has it.
    #[serde(flatten)]
    pub persisted: Persisted,
}

/// Reply to `priority.clear`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriorityClearReply {
    /// Each instance whose override was removed (none: there was none).
    #[serde(default)]
    pub cleared: Vec<InstancePriority>,
    /// Whether the state file has it.
    #[serde(flatten)]
    pub persisted: Persisted,
}

/// A group in maintenance, in `priority.list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMaintenance {
    /// Group name.
    pub group: String,
    /// Since when and why.
    pub maintenance: MaintenanceStatus,
}

/// Reply to `priority.list`: what the operator set and vrrpd keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PriorityListReply {
    /// Each priority override.
    pub overrides: Vec<InstancePriority>,
    /// Each group in maintenance.
    pub maintenance: Vec<GroupMaintenance>,
    /// The state file.
    pub state_file: StateFileStatus,
}

/// Reply to `drill.fault`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultDrillReply {
    /// How long.
    pub seconds: u32,
    /// Interfaces newly held down.
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// Each group concerned, with its state now.
    #[serde(default)]
    pub groups: Vec<GroupState>,
}

/// Reply to `drill.failover`, once the peer took over (and this node came back).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FailoverDrillReply {
    /// The group drilled.
    pub group: String,
    /// The peer's first advert on each member link.
    pub links: Vec<DrillLink>,
    /// This node should preempt back (priority and `preempt`).
    pub expect_preempt_back: bool,
    /// It did, after this long (from maintenance off).
    pub preempted_back_ms: Option<f64>,
    /// The group's state at the end.
    pub state: Option<VrrpState>,
}

/// The peer's takeover on one member link, in a failover drill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillLink {
    /// Instance.
    pub instance: String,
    /// Its interface.
    pub interface: String,
    /// The peer's address.
    pub peer: IpAddr,
    /// The priority it advertised.
    pub peer_priority: u8,
    /// Its first advert, ms after the release.
    pub takeover_ms: f64,
}
