//! Inputs to the state machine: what happened, and when.

use std::net::IpAddr;
use std::time::Duration;

use crate::packet::Advertisement;
use crate::timer::{micros, Time, TimerKind};

/// One input with the caller's current time.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    /// The caller's monotonic clock when the input happened.
    pub now: Time,
    /// What happened.
    pub input: Input,
}

impl Event {
    /// An input at `now`.
    pub fn new(now: Time, input: Input) -> Self {
        Event { now, input }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Input {
    /// Start every instance (RFC Startup event). Link states reported before
    /// this are taken into account.
    Startup,
    /// Stop every instance (RFC Shutdown event): masters release with
    /// priority 0 and remove their VIPs.
    Shutdown,
    /// A decoded advert arrived on `interface` from `src`. The instance is
    /// found by (interface, VRID, address family of `src`).
    AdvertReceived {
        /// The interface it arrived on.
        interface: String,
        /// The IP source address (the sender's primary address).
        src: IpAddr,
        /// The decoded advert.
        advert: Advertisement,
    },
    /// A timer armed by an earlier `ArmTimer` action is due. A timer that was
    /// re-armed or cancelled since is ignored.
    TimerExpired {
        /// Instance name.
        instance: String,
        /// Which of its timers.
        timer: TimerKind,
    },
    /// An interface came up (an instance's own link or a tracked one).
    InterfaceUp {
        /// Interface name.
        interface: String,
    },
    /// An interface went down (an instance's own link or a tracked one).
    InterfaceDown {
        /// Interface name.
        interface: String,
    },
    /// Set an instance's configured priority at run time (1..=255).
    SetPriority {
        /// Instance name.
        instance: String,
        /// New configured priority.
        priority: u8,
    },
    /// A tracked object's say in a named sync group's priority: `source`'s delta
    /// (what it tracks, summed) replaces its previous one for `group`; 0 withdraws
    /// it. Every member runs at its set priority plus the deltas of every source,
    /// clamped to 1..=254 while they sum to non-zero (a tracked router is never the
    /// address owner); a MASTER announces the change at once, and preemption (or
    /// its absence) decides the rest, as for any priority change. vrrpd feeds what
    /// other daemons (lbd's service quorums) report with `track.set`.
    TrackPriority {
        /// Who tracks (such as `lbd`).
        source: String,
        /// The sync group whose members it moves.
        group: String,
        /// Added to the priority (negative lowers it).
        delta: i32,
    },
    /// Change a run-time parameter of an instance.
    ConfigChanged {
        /// Instance name.
        instance: String,
        /// The change.
        change: ConfigChange,
    },
    /// Hold an instance (and so its sync group) out of MASTER.
    MaintenanceOn {
        /// Instance name.
        instance: String,
    },
    /// Let an instance take part in elections again.
    MaintenanceOff {
        /// Instance name.
        instance: String,
    },
    /// The daemon could not add `instance`'s VIPs (an `AddVips` of a takeover
    /// failed). It has taken back what the action named as `rollback`, and
    /// carries out no more adverts, address changes or gratuitous bursts of
    /// that batch. The instance goes to FAULT (reason `VipAddFailed`, counted in
    /// `vip_add_failures`) and its sync group leaves MASTER as for any fault: a
    /// priority-0 advert from every member, so that the peer takes over after
    /// Skew_Time (or keeps MASTER), then every member's VIPs removed, so that no
    /// member keeps an address it does not advertise for. After one
    /// Master_Down_Interval (the `VipRetry` timer) the fault clears and the
    /// instance enters BACKUP, where it takes over again only if no master
    /// speaks. Ignored while not running.
    VipAddFailed {
        /// Instance name.
        instance: String,
    },
    /// Hold back (or allow again) preemption on every instance, the address owner
    /// excepted: while held, a preempting backup follows a lower-priority master as
    /// if Preempt_Mode were false. vrrpd holds it while lbd lacks the peer's
    /// connection state, so that a node that comes back does not take over before
    /// it could carry the connections.
    PreemptHold {
        /// Whether preemption is held back.
        hold: bool,
    },
    /// The host lost `lost` of CPU time (stolen by the hypervisor: the whole
    /// machine stood still) since the caller's previous look, which it took no
    /// earlier than the last advert it handled. Fed before the timers that are due
    /// now: a Master_Down_Timer whose interval saw such a stall of at least half an
    /// advert interval waits one more advert interval, once, as a late one does
    /// ([`crate::config::InstanceConfig::late_timer_grace`]), because the same
    /// stall held up the master's adverts on their way in.
    HostStalled {
        /// CPU time stolen from the host, on its most stolen CPU, in microseconds
        /// on the wire of the case files.
        #[serde(with = "micros")]
        lost: Duration,
    },
}

/// A run-time parameter change; anything else (VIPs, VRID, version) means
/// building a new instance.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ConfigChange {
    /// Preempt_Mode.
    Preempt(bool),
    /// Preempt delay, in microseconds on the wire of the case files.
    PreemptDelay(#[serde(with = "micros")] Duration),
    /// Accept_Mode; takes effect at the next takeover.
    AcceptMode(bool),
    /// Advertisement_Interval in centiseconds; takes effect when the timer
    /// is next armed (must be valid for the version, else ignored).
    AdvertInterval(u16),
    /// [`crate::config::InstanceConfig::late_timer_grace`]; applies from the
    /// next Master_Down_Timer.
    LateTimerGrace(bool),
}
