//! One VRRP instance (a virtual router on one interface): its state, its
//! parameters and what it learned from the master, and the per-instance
//! part of the RFC state machine. Decisions that move a whole sync group
//! are in [`crate::sync_group`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use crate::action::{Action, Destination, Reason, VipSet};
use crate::config::InstanceConfig;
use crate::packet::{Advertisement, Auth, Version};
use crate::timer::{self, Time, TimerKind};

/// The priority of the address owner (RFC 9568 §5.2.4).
pub const OWNER_PRIORITY: u8 = 255;

/// The state of an instance (or, derived, of a sync group).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum State {
    /// Not running (before Startup, after Shutdown).
    Initialize,
    /// Listening for the master; takes over when it goes quiet.
    Backup,
    /// Owns the VIPs and advertises. RFC 9568 calls this state "Active";
    /// the RFC 3768 name is kept because operators and keepalived use it.
    Master,
    /// Cannot serve: its own link or a weight-0 tracked interface is down, or
    /// its VIPs could not be added. Not an RFC state.
    Fault,
    /// Administratively held out of MASTER. Not an RFC state.
    Maintenance,
}

/// Per-instance counters (monotonic).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    /// Adverts delivered to this instance while running.
    pub adverts_received: u64,
    /// Adverts sent (including priority 0).
    pub adverts_sent: u64,
    /// Priority-0 adverts received.
    pub priority_zero_received: u64,
    /// Priority-0 adverts sent.
    pub priority_zero_sent: u64,
    /// Master_Down_Timers that fired late and waited one more advert interval
    /// ([`crate::config::InstanceConfig::late_timer_grace`]).
    #[serde(default)]
    pub late_master_down_graces: u64,
    /// Transitions to MASTER.
    pub became_master: u64,
    /// Transitions out of MASTER.
    pub left_master: u64,
    /// Adverts of the other VRRP version, discarded.
    pub version_errors: u64,
    /// v2: interval differs from ours; v3: interval 0. Discarded.
    pub interval_errors: u64,
    /// Address list differs from ours (discarded unless priority 255).
    pub address_list_errors: u64,
    /// v2: authentication type or data differ. Discarded.
    pub auth_errors: u64,
    /// Our own adverts looped back. Ignored.
    pub own_adverts_ignored: u64,
    /// Lower-priority adverts discarded by a preempting backup.
    pub lower_priority_discarded: u64,
    /// Adverts of another master heard while MASTER that this instance
    /// outlasts (a lower priority, or priority 0: the other one released): each
    /// re-announces the VIPs of the whole sync group.
    #[serde(default)]
    pub other_master_adverts: u64,
    /// Split brains healed with this instance staying MASTER: periods in which
    /// it heard another master of its VRID after being MASTER for at least a
    /// Master_Down_Interval (sooner is its own preemption of a master it heard,
    /// not a split brain). Adverts less than a Master_Down_Interval apart are
    /// one period.
    #[serde(default)]
    pub split_brains: u64,
    /// Takeovers given up because the instance's VIPs could not be added
    /// ([`crate::event::Input::VipAddFailed`]).
    #[serde(default)]
    pub vip_add_failures: u64,
}

/// A snapshot of one instance for status displays and tests.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InstanceStatus {
    /// Instance name.
    pub name: String,
    /// Its sync group, if any.
    pub group: Option<String>,
    /// Current state.
    pub state: State,
    /// Priority as last set, plus the deltas of `priority_tracks` (clamped to
    /// 1..=254 while they sum to non-zero): what tracked-interface weights then
    /// apply to.
    pub priority: u8,
    /// Priority after tracked-interface weights; what adverts carry.
    pub effective_priority: u8,
    /// Deltas per tracking source ([`crate::event::Input::TrackPriority`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub priority_tracks: BTreeMap<String, i32>,
    /// Own link state as last reported.
    pub link_up: bool,
    /// Tracked interfaces reported down.
    pub tracked_down: Vec<String>,
    /// Held in maintenance.
    pub maintenance: bool,
    /// The current master's address: ours when MASTER, the last accepted
    /// advert's source when BACKUP.
    pub master_address: Option<IpAddr>,
    /// Master_Adver_Interval in centiseconds (v3: learned from adverts).
    pub master_adver_interval_cs: u16,
    /// Skew_Time in microseconds at the effective priority.
    pub skew_time_us: u64,
    /// Master_Down_Interval in microseconds.
    pub master_down_interval_us: u64,
    /// BACKUP only: Master_Down_Timer expired and no advert reset it since;
    /// the instance would be MASTER if its sync group let it.
    pub ready_for_master: bool,
    /// Timers currently armed, by kind.
    pub timers: Vec<ArmedTimer>,
    /// Counters.
    pub counters: Counters,
}

/// A timer and its deadline.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArmedTimer {
    /// Which timer.
    pub timer: TimerKind,
    /// Its deadline.
    pub at: Time,
}

/// The runtime of one instance.
#[derive(Debug, Clone)]
pub(crate) struct Instance {
    pub(crate) config: InstanceConfig,
    pub(crate) group: Option<String>,
    pub(crate) state: State,
    pub(crate) link_up: bool,
    pub(crate) tracked_down: BTreeSet<String>,
    /// Priority deltas per tracking source ([`crate::event::Input::TrackPriority`]).
    pub(crate) priority_tracks: BTreeMap<String, i32>,
    pub(crate) maintenance: bool,
    pub(crate) master_adver_interval_cs: u16,
    pub(crate) master_address: Option<IpAddr>,
    /// BACKUP: Master_Down_Timer fired (or owner at startup): the reason the
    /// instance wants MASTER.
    pub(crate) wants_master: Option<Reason>,
    /// MASTER: an advert beat us; the group must release.
    pub(crate) lost_election: bool,
    /// BACKUP: the running Master_Down_Timer was set to Skew_Time by a
    /// priority-0 advert.
    pub(crate) peer_released: bool,
    /// No preemption before this time.
    pub(crate) preempt_until: Time,
    /// No preemption while set ([`crate::event::Input::PreemptHold`]).
    pub(crate) preempt_hold: bool,
    /// BACKUP: the last advert heard came from a master of lower priority.
    pub(crate) outranks_master: bool,
    pub(crate) advert_deadline: Option<Time>,
    pub(crate) master_down_deadline: Option<Time>,
    /// BACKUP: the running Master_Down_Timer is the one grace a late timer
    /// gets ([`Instance::grace_for_late_master_down`]).
    pub(crate) master_down_grace: bool,
    pub(crate) gratuitous_deadline: Option<Time>,
    /// Its VIPs could not be added: FAULT until `vip_retry_deadline`.
    pub(crate) vip_add_failed: bool,
    pub(crate) vip_retry_deadline: Option<Time>,
    /// MASTER: since when.
    pub(crate) master_since: Option<Time>,
    /// MASTER: when another master was last heard (see
    /// [`Counters::split_brains`]).
    pub(crate) other_master_at: Option<Time>,
    pub(crate) counters: Counters,
}

/// What the per-instance advert processing concluded.
pub(crate) enum AdvertVerdict {
    /// Dropped before the state machine (counted).
    Discarded,
    /// Priority 0 heard in BACKUP: the group shortens its timers to skew.
    BackupReleased,
    /// MASTER heard another master and stays MASTER: the group re-announces
    /// its VIPs on every member link.
    OtherMasterOutlasted,
    /// Everything else: handled here (actions pushed).
    Handled,
}

impl Instance {
    pub(crate) fn new(config: InstanceConfig, group: Option<String>) -> Self {
        let interval = config.advert_interval_cs;
        Instance {
            config,
            group,
            state: State::Initialize,
            link_up: true,
            tracked_down: BTreeSet::new(),
            priority_tracks: BTreeMap::new(),
            maintenance: false,
            master_adver_interval_cs: interval,
            master_address: None,
            wants_master: None,
            lost_election: false,
            peer_released: false,
            preempt_until: Time::ZERO,
            preempt_hold: false,
            outranks_master: false,
            advert_deadline: None,
            master_down_deadline: None,
            master_down_grace: false,
            gratuitous_deadline: None,
            vip_add_failed: false,
            vip_retry_deadline: None,
            master_since: None,
            other_master_at: None,
            counters: Counters::default(),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.config.name
    }

    pub(crate) fn version(&self) -> Version {
        self.config.version
    }

    /// The set priority plus every tracking source's delta, clamped to 1..=254
    /// while they sum to non-zero (a tracked router is never the owner).
    pub(crate) fn tracked_priority(&self) -> u8 {
        let delta: i32 = self.priority_tracks.values().sum();
        if delta == 0 {
            return self.config.priority;
        }
        let p = (i32::from(self.config.priority) + delta).clamp(1, 254);
        u8::try_from(p).unwrap_or(254)
    }

    /// Sets (or, with 0, withdraws) `source`'s priority delta.
    pub(crate) fn set_priority_track(&mut self, source: &str, delta: i32) {
        if delta == 0 {
            self.priority_tracks.remove(source);
        } else {
            self.priority_tracks.insert(source.to_owned(), delta);
        }
    }

    /// The tracked priority plus the weights of the tracked interfaces that
    /// are down, clamped to 1..=254 once any weight applies (a router whose
    /// tracked link is down is no longer fit to be the owner).
    pub(crate) fn effective_priority(&self) -> u8 {
        let base = self.tracked_priority();
        let mut sum: i32 = 0;
        let mut applied = false;
        for t in &self.config.track_interfaces {
            if t.weight != 0 && self.tracked_down.contains(&t.interface) {
                sum += i32::from(t.weight);
                applied = true;
            }
        }
        if !applied {
            return base;
        }
        let p = (i32::from(base) + sum).clamp(1, 254);
        u8::try_from(p).unwrap_or(254)
    }

    pub(crate) fn is_owner(&self) -> bool {
        self.effective_priority() == OWNER_PRIORITY
    }

    /// Why the instance cannot serve, if it cannot.
    pub(crate) fn fault_cause(&self) -> Option<Reason> {
        if !self.link_up {
            return Some(Reason::LinkDown);
        }
        let tracked_fault = self
            .config
            .track_interfaces
            .iter()
            .any(|t| t.weight == 0 && self.tracked_down.contains(&t.interface));
        if tracked_fault {
            return Some(Reason::TrackedInterfaceDown);
        }
        self.vip_add_failed.then_some(Reason::VipAddFailed)
    }

    pub(crate) fn skew_time(&self) -> Duration {
        timer::skew_time(
            self.version(),
            self.effective_priority(),
            self.master_adver_interval_cs,
        )
    }

    pub(crate) fn master_down_interval(&self) -> Duration {
        timer::master_down_interval(
            self.version(),
            self.effective_priority(),
            self.master_adver_interval_cs,
        )
    }

    fn preempts(&self, now: Time) -> bool {
        // RFC 9568 §6.1: the owner always preempts.
        self.is_owner() || (self.config.preempt && !self.preempt_hold && now >= self.preempt_until)
    }

    /// The advert this instance sends now.
    pub(crate) fn advert(&self, priority: u8) -> Advertisement {
        Advertisement {
            version: self.version(),
            vrid: self.config.vrid,
            priority,
            interval_cs: self.config.advert_interval_cs,
            addresses: self.config.virtual_addresses.clone(),
            auth: match self.version() {
                Version::V2 => self.config.auth.clone(),
                Version::V3 => Auth::None,
            },
        }
    }

    pub(crate) fn send_advert(&mut self, priority: u8, out: &mut Vec<Action>) {
        self.counters.adverts_sent += 1;
        if priority == 0 {
            self.counters.priority_zero_sent += 1;
        }
        let destination = if self.config.unicast_peers.is_empty() {
            Destination::Multicast
        } else {
            Destination::Unicast(self.config.unicast_peers.clone())
        };
        out.push(Action::SendAdvert {
            instance: self.name().to_owned(),
            interface: self.config.interface.clone(),
            source: self.config.primary_address,
            destination,
            advert: self.advert(priority),
        });
    }

    pub(crate) fn send_gratuitous(&self, out: &mut Vec<Action>) {
        out.push(Action::SendGratuitous {
            instance: self.name().to_owned(),
            interface: self.config.interface.clone(),
            addresses: self.config.virtual_addresses.clone(),
            count: self.config.gratuitous.count,
            spacing: self.config.gratuitous.spacing,
        });
    }

    pub(crate) fn vip_set(&self) -> VipSet {
        VipSet {
            instance: self.name().to_owned(),
            interface: self.config.interface.clone(),
            addresses: self.config.virtual_addresses.clone(),
            // RFC 9568 §6.4.3: accept if owner or Accept_Mode.
            accept: self.is_owner() || self.config.accept_mode,
        }
    }

    pub(crate) fn arm(&mut self, timer: TimerKind, at: Time, out: &mut Vec<Action>) {
        *self.deadline_mut(timer) = Some(at);
        out.push(Action::ArmTimer {
            instance: self.name().to_owned(),
            timer,
            at,
        });
    }

    /// Cancels the timer if it is armed (no action otherwise).
    pub(crate) fn cancel(&mut self, timer: TimerKind, out: &mut Vec<Action>) {
        if self.deadline_mut(timer).take().is_some() {
            out.push(Action::CancelTimer {
                instance: self.name().to_owned(),
                timer,
            });
        }
    }

    pub(crate) fn deadline_mut(&mut self, timer: TimerKind) -> &mut Option<Time> {
        match timer {
            TimerKind::Advertisement => &mut self.advert_deadline,
            TimerKind::MasterDown => &mut self.master_down_deadline,
            TimerKind::GratuitousRepeat => &mut self.gratuitous_deadline,
            TimerKind::VipRetry => &mut self.vip_retry_deadline,
        }
    }

    /// Arms Master_Down_Timer at Master_Down_Interval with the current
    /// Master_Adver_Interval.
    pub(crate) fn arm_master_down(&mut self, now: Time, out: &mut Vec<Action>) {
        let at = now + self.master_down_interval();
        self.master_down_grace = false;
        self.arm(TimerKind::MasterDown, at, out);
    }

    /// The Master_Down_Timer due at `due` fired at `now`. A router that runs
    /// that late was held up itself (a stalled machine or VM), and the master's
    /// adverts that would have reset the timer may be held up by the same stall:
    /// more than half an advert interval late, the timer waits one more
    /// Master_Adver_Interval, once per silence. So does a timer that fired on time
    /// but whose interval saw the host stand still (`stall`, the latest
    /// [`crate::event::Input::HostStalled`]) for at least half an advert interval:
    /// the master's advert may be on its way in still, held up by the stall. Returns
    /// whether it waited. Not after a priority-0 advert: the master said it is
    /// leaving. At most one interval later than the RFC's takeover, and only when
    /// the router (or its host) was held up.
    pub(crate) fn grace_for_late_master_down(
        &mut self,
        due: Time,
        now: Time,
        stall: Option<(Time, Duration)>,
        out: &mut Vec<Action>,
    ) -> bool {
        let interval = timer::interval(self.master_adver_interval_cs);
        let late = now.saturating_since(due) > interval / 2;
        // Reported after the timer was armed (its deadline minus its interval).
        let stalled = stall.is_some_and(|(at, lost)| {
            due.saturating_since(at) < self.master_down_interval() && lost >= interval / 2
        });
        if !self.config.late_timer_grace
            || self.peer_released
            || self.master_down_grace
            || !(late || stalled)
        {
            return false;
        }
        self.master_down_grace = true;
        self.counters.late_master_down_graces += 1;
        self.arm(TimerKind::MasterDown, now + interval, out);
        true
    }

    /// RFC 3768 / RFC 9568 §7.1 receive checks that need the configuration
    /// (the codec has done the rest). Returns false when the advert is to be
    /// discarded.
    fn passes_receive_checks(&mut self, src: IpAddr, advert: &Advertisement) -> bool {
        if src == self.config.primary_address {
            self.counters.own_adverts_ignored += 1;
            return false;
        }
        if advert.version != self.version() {
            self.counters.version_errors += 1;
            return false;
        }
        // RFC 3768 §7.1: the auth type and data MUST match, the Adver
        // Interval MUST equal ours (both no-ops for v3).
        if advert.verify_auth(&self.config.auth).is_err() {
            self.counters.auth_errors += 1;
            return false;
        }
        if advert
            .verify_interval(self.config.advert_interval_cs)
            .is_err()
        {
            self.counters.interval_errors += 1;
            return false;
        }
        // RFC 9568 §7.1 (erratum 8301): the interval MUST be non-zero; the
        // codec refuses it too, this guards inputs built by hand.
        if advert.interval_cs == 0 {
            self.counters.interval_errors += 1;
            return false;
        }
        // §7.1 (both RFCs): the address list MAY be checked; on mismatch,
        // drop unless the sender is the owner (priority 255). Compared as
        // sets: the order of the list carries no meaning for the election.
        let ours: BTreeSet<&IpAddr> = self.config.virtual_addresses.iter().collect();
        let theirs: BTreeSet<&IpAddr> = advert.addresses.iter().collect();
        if ours != theirs || advert.addresses.len() != self.config.virtual_addresses.len() {
            self.counters.address_list_errors += 1;
            if advert.priority != OWNER_PRIORITY {
                return false;
            }
        }
        true
    }

    /// Processes a received advert in BACKUP or MASTER (RFC 9568 §6.4.2,
    /// §6.4.3; RFC 3768 §6.4.2, §6.4.3). A master that loses only marks it:
    /// the sync group decides the transition.
    pub(crate) fn receive_advert(
        &mut self,
        now: Time,
        src: IpAddr,
        advert: &Advertisement,
        out: &mut Vec<Action>,
    ) -> AdvertVerdict {
        self.counters.adverts_received += 1;
        if !self.passes_receive_checks(src, advert) {
            return AdvertVerdict::Discarded;
        }
        if advert.priority == 0 {
            self.counters.priority_zero_received += 1;
        }
        let local = self.effective_priority();
        match self.state {
            State::Backup => {
                self.outranks_master = advert.priority != 0 && advert.priority < local;
                if advert.priority == 0 {
                    return AdvertVerdict::BackupReleased;
                }
                if !self.preempts(now) || advert.priority >= local {
                    if self.version() == Version::V3 {
                        self.master_adver_interval_cs = advert.interval_cs;
                    }
                    self.master_address = Some(src);
                    self.wants_master = None;
                    self.peer_released = false;
                    self.arm_master_down(now, out);
                } else {
                    // Preempting: discard; Master_Down_Timer runs out.
                    self.counters.lower_priority_discarded += 1;
                }
                AdvertVerdict::Handled
            }
            State::Master => {
                if advert.priority == 0 {
                    // RFC 9568 §6.4.3: another master released: send an advert
                    // and reset Adver_Timer.
                    self.send_advert(local, out);
                    let at = now + timer::interval(self.config.advert_interval_cs);
                    self.arm(TimerKind::Advertisement, at, out);
                    self.other_master_heard(now);
                    AdvertVerdict::OtherMasterOutlasted
                } else if advert.priority > local
                    || (advert.priority == local && src > self.config.primary_address)
                {
                    if self.version() == Version::V3 {
                        self.master_adver_interval_cs = advert.interval_cs;
                    }
                    self.master_address = Some(src);
                    self.lost_election = true;
                    AdvertVerdict::Handled
                } else {
                    // RFC 9568 §6.4.3: discard, and send an advert at once to
                    // assert MASTER to the sender and to learning bridges.
                    // RFC 3768 only discards; doing the same for v2 ends a
                    // split brain sooner. The group then re-announces its VIPs
                    // (as keepalived does on a lower-priority advert).
                    self.send_advert(local, out);
                    self.other_master_heard(now);
                    AdvertVerdict::OtherMasterOutlasted
                }
            }
            State::Initialize | State::Fault | State::Maintenance => AdvertVerdict::Handled,
        }
    }

    /// Counts another master heard while MASTER (see [`Counters::split_brains`]).
    fn other_master_heard(&mut self, now: Time) {
        self.counters.other_master_adverts += 1;
        let window = self.master_down_interval();
        let same_period = self
            .other_master_at
            .is_some_and(|at| now.saturating_since(at) < window);
        let settled = self
            .master_since
            .is_some_and(|since| now.saturating_since(since) >= window);
        if settled && !same_period {
            self.counters.split_brains += 1;
        }
        self.other_master_at = Some(now);
    }

    /// Applies a run-time change; returns false if the value is refused.
    pub(crate) fn set_interval(&mut self, interval_cs: u16) -> bool {
        let ok = self.version().carries_interval_cs(interval_cs);
        if ok {
            self.config.advert_interval_cs = interval_cs;
        }
        ok
    }

    pub(crate) fn status(&self) -> InstanceStatus {
        let mut timers = Vec::new();
        for (timer, at) in [
            (TimerKind::Advertisement, self.advert_deadline),
            (TimerKind::MasterDown, self.master_down_deadline),
            (TimerKind::GratuitousRepeat, self.gratuitous_deadline),
            (TimerKind::VipRetry, self.vip_retry_deadline),
        ] {
            if let Some(at) = at {
                timers.push(ArmedTimer { timer, at });
            }
        }
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        InstanceStatus {
            name: self.name().to_owned(),
            group: self.group.clone(),
            state: self.state,
            priority: self.tracked_priority(),
            effective_priority: self.effective_priority(),
            priority_tracks: self.priority_tracks.clone(),
            link_up: self.link_up,
            tracked_down: self.tracked_down.iter().cloned().collect(),
            maintenance: self.maintenance,
            master_address: self.master_address,
            master_adver_interval_cs: self.master_adver_interval_cs,
            skew_time_us: micros(self.skew_time()),
            master_down_interval_us: micros(self.master_down_interval()),
            ready_for_master: self.state == State::Backup && self.wants_master.is_some(),
            timers,
            counters: self.counters.clone(),
        }
    }
}
