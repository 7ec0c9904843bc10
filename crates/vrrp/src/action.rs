//! Outputs of the state machine: what the daemon must do, in order.
//!
//! Order within one `handle` call is fixed:
//! - taking over (BACKUP -> MASTER): `GroupStateChanged`, `StateChanged` per
//!   member, `PrepareTakeover`, then member by member its `AddVips`, its
//!   `SendAdvert` and its `SendGratuitous` (the neighbours of the first member
//!   hear of the move without waiting on the other members' address changes),
//!   then the timers. Each `AddVips` names as `rollback` the members' VIPs added
//!   before it: if it fails, they go again, so that the group never serves
//!   half-moved;
//! - a takeover whose `AddVips` failed ([`crate::event::Input::VipAddFailed`]):
//!   the release below, with the failed member in FAULT, then its `VipRetry`
//!   timer;
//! - leaving MASTER: priority-0 `SendAdvert` per member that releases first
//!   (while its addresses are all still there), then one `RemoveVips` for every
//!   member, then `GroupStateChanged`, `StateChanged` per member, then the
//!   timers; when another master won, `RemoveVips` comes first and then the
//!   priority-0 `SendAdvert` of every member, the one that lost included;
//! - MASTER hearing another master it outlasts: `SendAdvert` on that member,
//!   then `SendGratuitous` per member of the group, then the timers;
//! - other transitions: state changes, then cancelled timers, then armed
//!   timers. Members are listed in sync-group order.

use std::net::IpAddr;
use std::time::Duration;

use crate::instance::State;
use crate::packet::Advertisement;
use crate::timer::{micros, Time, TimerKind};

/// One thing for the daemon to do.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Action {
    /// Encode and send `advert` from `source` on `interface`.
    SendAdvert {
        /// Instance name.
        instance: String,
        /// Interface to send on.
        interface: String,
        /// IP source: the instance's primary address.
        source: IpAddr,
        /// Multicast group or unicast peers.
        destination: Destination,
        /// The advert (priority 0 when releasing).
        advert: Advertisement,
    },
    /// Schedule `TimerExpired { instance, timer }` at `at`, replacing any
    /// earlier deadline of that timer.
    ArmTimer {
        /// Instance name.
        instance: String,
        /// Which timer.
        timer: TimerKind,
        /// When it is due.
        at: Time,
    },
    /// Forget the timer.
    CancelTimer {
        /// Instance name.
        instance: String,
        /// Which timer.
        timer: TimerKind,
    },
    /// About to take over: ask lbd to prepare (commit synced connection
    /// state, go live), waiting at most the configured budget, then carry on
    /// with the actions that follow.
    PrepareTakeover {
        /// The sync group, if the instances form one.
        group: Option<String>,
        /// Instances taking over.
        instances: Vec<String>,
    },
    /// Add these VIPs, all in one step.
    AddVips {
        /// The sync group, if any.
        group: Option<String>,
        /// Per member: where and which addresses.
        sets: Vec<VipSet>,
        /// If the add fails: the VIPs of this takeover's earlier members, to
        /// remove again (those that were added) — all members' VIPs or none.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        rollback: Vec<VipSet>,
    },
    /// Remove these VIPs, all in one step.
    RemoveVips {
        /// The sync group, if any.
        group: Option<String>,
        /// Per member: where and which addresses.
        sets: Vec<VipSet>,
    },
    /// Announce the VIPs: gratuitous ARP (IPv4) or unsolicited NA (IPv6).
    SendGratuitous {
        /// Instance name.
        instance: String,
        /// Interface to send on.
        interface: String,
        /// The VIPs; each round announces every one.
        addresses: Vec<IpAddr>,
        /// Rounds.
        count: u8,
        /// Pause between rounds.
        #[serde(with = "micros", rename = "spacing_us")]
        spacing: Duration,
    },
    /// An instance changed state.
    StateChanged {
        /// Instance name.
        instance: String,
        /// Its sync group, if any.
        group: Option<String>,
        /// Old state.
        from: State,
        /// New state.
        to: State,
        /// Why.
        reason: Reason,
    },
    /// A sync group's overall state changed (see `GroupStatus::state`).
    GroupStateChanged {
        /// Group name.
        group: String,
        /// Old state.
        from: State,
        /// New state.
        to: State,
        /// Why (the cause of the member that started it).
        reason: Reason,
    },
}

/// Where an advert goes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Destination {
    /// 224.0.0.18 or ff02::12.
    Multicast,
    /// Each of these peers.
    Unicast(Vec<IpAddr>),
}

/// The VIPs of one instance in an `AddVips` / `RemoveVips`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VipSet {
    /// Instance name.
    pub instance: String,
    /// Interface the addresses go on.
    pub interface: String,
    /// The addresses.
    pub addresses: Vec<IpAddr>,
    /// Accept packets addressed to them (owner or Accept_Mode), per RFC 9568
    /// §6.4.3. vrrpd does not act on it (it filters nothing, as keepalived without
    /// vrrp_strict); it is reported for a daemon that would.
    pub accept: bool,
}

/// Why a state changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Reason {
    /// Startup event.
    Startup,
    /// Shutdown event.
    Shutdown,
    /// Master_Down_Timer expired: no advert for Master_Down_Interval, or a
    /// lower-priority master was preempted.
    MasterDown,
    /// The master released with a priority-0 advert and Skew_Time passed.
    PeerReleased,
    /// A higher-priority advert (or equal priority from a higher address).
    HigherPriority,
    /// The instance's own interface went down.
    LinkDown,
    /// A tracked interface with weight 0 went down.
    TrackedInterfaceDown,
    /// Every fault cleared.
    FaultCleared,
    /// Put in maintenance.
    MaintenanceOn,
    /// Maintenance ended.
    MaintenanceOff,
    /// Moved with its sync group because of another member.
    SyncGroup,
    /// The daemon could not add the instance's VIPs when taking over
    /// ([`crate::event::Input::VipAddFailed`]).
    VipAddFailed,
}
