//! The top-level state machine of one node: every instance and sync group,
//! driven by [`Router::handle`].
//!
//! ```
//! use vrrp::config::{InstanceConfig, RouterConfig};
//! use vrrp::event::{Event, Input};
//! use vrrp::router::Router;
//! use vrrp::timer::Time;
//!
//! let config: RouterConfig = serde_json::from_str(r#"{"instances": [{
//!     "name": "vi1", "interface": "eth0", "vrid": 1, "priority": 255,
//!     "primary_address": "198.18.0.1", "virtual_addresses": ["198.18.0.1"]
//! }]}"#).unwrap();
//! let mut router = Router::new(config).unwrap();
//! let actions = router.handle(Event::new(Time::ZERO, Input::Startup));
//! assert!(!actions.is_empty()); // the owner takes over at once
//! ```

use std::net::IpAddr;
use std::time::Duration;

use crate::action::Action;
use crate::config::{ConfigError, RouterConfig};
use crate::event::{ConfigChange, Event, Input};
use crate::instance::{AdvertVerdict, Instance, InstanceStatus, State};
use crate::sync_group::{GroupStatus, SyncGroup};
use crate::timer::{self, Time, TimerKind};

/// Node-wide counters (monotonic).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RouterCounters {
    /// Adverts for no configured (interface, VRID, family): discarded
    /// (RFC 9568 §7.1: the VRID MUST be configured on the interface).
    pub unknown_vrid: u64,
    /// Inputs naming an instance (or sync group) that does not exist.
    pub unknown_instance: u64,
    /// Adverts and timers that arrived while not running.
    pub ignored_not_running: u64,
    /// Timer expiries for a timer since re-armed or cancelled.
    pub stale_timers: u64,
    /// Run-time changes refused (priority 0, invalid interval).
    pub refused_changes: u64,
}

/// Every VRRP instance and sync group of one node.
#[derive(Debug, Clone)]
pub struct Router {
    instances: Vec<Instance>,
    groups: Vec<SyncGroup>,
    /// Index into `groups` for each instance.
    group_of: Vec<usize>,
    running: bool,
    counters: RouterCounters,
    /// The latest [`Input::HostStalled`]: when it was reported and how much the
    /// host lost.
    last_stall: Option<(Time, Duration)>,
}

impl Router {
    /// Builds the node from its configuration; nothing runs before
    /// `Input::Startup`.
    pub fn new(config: RouterConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let index = |name: &str| config.instances.iter().position(|i| i.name == name);
        let mut groups = Vec::new();
        let mut group_of = vec![usize::MAX; config.instances.len()];
        let mut group_name = vec![None; config.instances.len()];
        for g in &config.sync_groups {
            let members: Vec<usize> = g.members.iter().filter_map(|m| index(m)).collect();
            for &m in &members {
                group_of[m] = groups.len();
                group_name[m] = Some(g.name.clone());
            }
            groups.push(SyncGroup {
                name: Some(g.name.clone()),
                members,
            });
        }
        for (i, slot) in group_of.iter_mut().enumerate() {
            if *slot == usize::MAX {
                *slot = groups.len();
                groups.push(SyncGroup {
                    name: None,
                    members: vec![i],
                });
            }
        }
        let instances = config
            .instances
            .into_iter()
            .zip(group_name)
            .map(|(c, g)| Instance::new(c, g))
            .collect();
        Ok(Router {
            instances,
            groups,
            group_of,
            running: false,
            counters: RouterCounters::default(),
            last_stall: None,
        })
    }

    /// Whether a BACKUP instance hears a master of lower priority than its own: it
    /// preempts after Master_Down_Interval, unless preemption is held back
    /// ([`Input::PreemptHold`]).
    pub fn outranks_master(&self) -> bool {
        self.instances
            .iter()
            .any(|i| i.state == State::Backup && i.outranks_master)
    }

    /// Feeds one input; returns what to do, in order.
    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        let Event { now, input } = event;
        let mut out = Vec::new();
        let before: Vec<(State, u8)> = self
            .instances
            .iter()
            .map(|i| (i.state, i.effective_priority()))
            .collect();
        match input {
            Input::Startup => {
                if !self.running {
                    self.running = true;
                    self.reconcile_all(now, &mut out);
                }
            }
            Input::Shutdown => {
                if self.running {
                    self.running = false;
                    for g in &self.groups {
                        g.shut_down(&mut self.instances, &mut out);
                    }
                }
                return out;
            }
            Input::AdvertReceived {
                interface,
                src,
                advert,
            } => {
                if !self.running {
                    self.counters.ignored_not_running += 1;
                    return out;
                }
                let Some(idx) = self.find_by_advert(&interface, advert.vrid, src) else {
                    self.counters.unknown_vrid += 1;
                    return out;
                };
                let verdict = self.instances[idx].receive_advert(now, src, &advert, &mut out);
                let g = self.group_of[idx];
                match verdict {
                    AdvertVerdict::BackupReleased => {
                        self.groups[g].peer_released(idx, now, &mut self.instances, &mut out)
                    }
                    AdvertVerdict::OtherMasterOutlasted => {
                        self.groups[g].reannounce(now, &mut self.instances, &mut out)
                    }
                    AdvertVerdict::Discarded | AdvertVerdict::Handled => {}
                }
                self.groups[g].reconcile(now, &mut self.instances, &mut out);
            }
            Input::TimerExpired { instance, timer } => {
                if !self.running {
                    self.counters.ignored_not_running += 1;
                    return out;
                }
                let Some(idx) = self.find_by_name(&instance) else {
                    return out;
                };
                self.timer_expired(idx, timer, now, &mut out);
            }
            Input::InterfaceUp { interface } => self.set_interface(&interface, true, now, &mut out),
            Input::InterfaceDown { interface } => {
                self.set_interface(&interface, false, now, &mut out)
            }
            Input::SetPriority { instance, priority } => {
                let Some(idx) = self.find_by_name(&instance) else {
                    return out;
                };
                if priority == 0 {
                    self.counters.refused_changes += 1;
                } else {
                    self.instances[idx].config.priority = priority;
                }
            }
            Input::TrackPriority {
                source,
                group,
                delta,
            } => {
                let Some(g) = self
                    .groups
                    .iter()
                    .position(|g| g.name() == Some(group.as_str()))
                else {
                    self.counters.unknown_instance += 1;
                    return out;
                };
                for &m in &self.groups[g].members {
                    self.instances[m].set_priority_track(&source, delta);
                }
            }
            Input::ConfigChanged { instance, change } => {
                let Some(idx) = self.find_by_name(&instance) else {
                    return out;
                };
                let inst = &mut self.instances[idx];
                match change {
                    ConfigChange::Preempt(p) => inst.config.preempt = p,
                    ConfigChange::PreemptDelay(d) => inst.config.preempt_delay = d,
                    ConfigChange::AcceptMode(a) => inst.config.accept_mode = a,
                    ConfigChange::LateTimerGrace(g) => inst.config.late_timer_grace = g,
                    ConfigChange::AdvertInterval(cs) => {
                        if !inst.set_interval(cs) {
                            self.counters.refused_changes += 1;
                        }
                    }
                }
            }
            Input::MaintenanceOn { instance } => {
                self.set_maintenance(&instance, true, now, &mut out)
            }
            Input::MaintenanceOff { instance } => {
                self.set_maintenance(&instance, false, now, &mut out)
            }
            Input::HostStalled { lost } => self.last_stall = Some((now, lost)),
            Input::VipAddFailed { instance } => {
                if !self.running {
                    self.counters.ignored_not_running += 1;
                    return out;
                }
                let Some(idx) = self.find_by_name(&instance) else {
                    return out;
                };
                let inst = &mut self.instances[idx];
                inst.vip_add_failed = true;
                inst.counters.vip_add_failures += 1;
                let g = self.group_of[idx];
                self.groups[g].reconcile(now, &mut self.instances, &mut out);
                // After the release: the peer hears priority 0 first.
                let inst = &mut self.instances[idx];
                let at = now + inst.master_down_interval();
                inst.arm(TimerKind::VipRetry, at, &mut out);
            }
            Input::PreemptHold { hold } => {
                for inst in &mut self.instances {
                    inst.preempt_hold = hold;
                }
            }
        }
        if self.running {
            self.announce_priority_changes(&before, &mut out);
        }
        out
    }

    fn reconcile_all(&mut self, now: Time, out: &mut Vec<Action>) {
        for g in &self.groups {
            g.reconcile(now, &mut self.instances, out);
        }
    }

    fn find_by_name(&mut self, name: &str) -> Option<usize> {
        let found = self.instances.iter().position(|i| i.name() == name);
        if found.is_none() {
            self.counters.unknown_instance += 1;
        }
        found
    }

    fn find_by_advert(&self, interface: &str, vrid: u8, src: IpAddr) -> Option<usize> {
        self.instances.iter().position(|i| {
            i.config.interface == interface
                && i.config.vrid == vrid
                && i.config.primary_address.is_ipv6() == src.is_ipv6()
        })
    }

    fn timer_expired(&mut self, idx: usize, timer: TimerKind, now: Time, out: &mut Vec<Action>) {
        let inst = &mut self.instances[idx];
        let slot = inst.deadline_mut(timer);
        let due = match *slot {
            Some(at) if at <= now => {
                *slot = None;
                at
            }
            // Re-armed, cancelled, or delivered early: not this timer.
            _ => {
                self.counters.stale_timers += 1;
                return;
            }
        };
        match (timer, inst.state) {
            (TimerKind::Advertisement, State::Master) => {
                let p = inst.effective_priority();
                inst.send_advert(p, out);
                let at = now + timer::interval(inst.config.advert_interval_cs);
                inst.arm(TimerKind::Advertisement, at, out);
            }
            (TimerKind::MasterDown, State::Backup) => {
                if inst.grace_for_late_master_down(due, now, self.last_stall, out) {
                    return;
                }
                inst.wants_master = Some(if inst.peer_released {
                    crate::action::Reason::PeerReleased
                } else {
                    crate::action::Reason::MasterDown
                });
                let g = self.group_of[idx];
                self.groups[g].reconcile(now, &mut self.instances, out);
            }
            (TimerKind::GratuitousRepeat, State::Master) => inst.send_gratuitous(out),
            (TimerKind::VipRetry, _) => {
                inst.vip_add_failed = false;
                let g = self.group_of[idx];
                self.groups[g].reconcile(now, &mut self.instances, out);
            }
            _ => {}
        }
    }

    fn set_interface(&mut self, interface: &str, up: bool, now: Time, out: &mut Vec<Action>) {
        for inst in &mut self.instances {
            if inst.config.interface == interface {
                inst.link_up = up;
            }
            if inst
                .config
                .track_interfaces
                .iter()
                .any(|t| t.interface == interface)
            {
                if up {
                    inst.tracked_down.remove(interface);
                } else {
                    inst.tracked_down.insert(interface.to_owned());
                }
            }
        }
        if self.running {
            self.reconcile_all(now, out);
        }
    }

    fn set_maintenance(&mut self, name: &str, on: bool, now: Time, out: &mut Vec<Action>) {
        let Some(idx) = self.find_by_name(name) else {
            return;
        };
        self.instances[idx].maintenance = on;
        if self.running {
            let g = self.group_of[idx];
            self.groups[g].reconcile(now, &mut self.instances, out);
        }
    }

    /// A master whose effective priority changed tells the peer at once
    /// rather than at the next Adver_Timer.
    fn announce_priority_changes(&mut self, before: &[(State, u8)], out: &mut Vec<Action>) {
        for (inst, &(state, prio)) in self.instances.iter_mut().zip(before) {
            let now_prio = inst.effective_priority();
            if state == State::Master && inst.state == State::Master && now_prio != prio {
                inst.send_advert(now_prio, out);
            }
        }
    }

    /// Whether Startup has been handled (and no Shutdown since).
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// One instance's status, by name.
    pub fn instance(&self, name: &str) -> Option<InstanceStatus> {
        self.instances
            .iter()
            .find(|i| i.name() == name)
            .map(Instance::status)
    }

    /// Every instance's status, in configured order.
    pub fn instances(&self) -> Vec<InstanceStatus> {
        self.instances.iter().map(Instance::status).collect()
    }

    /// One named sync group's status.
    pub fn group(&self, name: &str) -> Option<GroupStatus> {
        self.groups
            .iter()
            .find(|g| g.name() == Some(name))
            .and_then(|g| g.status(&self.instances))
    }

    /// Every named sync group's status, in configured order.
    pub fn groups(&self) -> Vec<GroupStatus> {
        self.groups
            .iter()
            .filter_map(|g| g.status(&self.instances))
            .collect()
    }

    /// Node-wide counters.
    pub fn counters(&self) -> &RouterCounters {
        &self.counters
    }

    /// The earliest armed deadline of any timer, for a caller that runs a
    /// single sleep.
    pub fn next_deadline(&self) -> Option<Time> {
        self.instances
            .iter()
            .flat_map(|i| {
                [
                    i.advert_deadline,
                    i.master_down_deadline,
                    i.gratuitous_deadline,
                    i.vip_retry_deadline,
                ]
            })
            .flatten()
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{Advertisement, Auth, Version};

    fn router(json: serde_json::Value) -> Router {
        Router::new(serde_json::from_value(json).unwrap()).unwrap()
    }

    fn one(priority: u8) -> Router {
        router(serde_json::json!({"instances": [{
            "name": "vi1", "interface": "eth0", "vrid": 1, "priority": priority,
            "primary_address": "198.18.0.1", "virtual_addresses": ["198.18.0.100"]
        }]}))
    }

    fn advert(priority: u8, interval_cs: u16) -> Input {
        Input::AdvertReceived {
            interface: "eth0".into(),
            src: "198.18.0.2".parse().unwrap(),
            advert: Advertisement {
                version: Version::V3,
                vrid: 1,
                priority,
                interval_cs,
                addresses: vec!["198.18.0.100".parse().unwrap()],
                auth: Auth::None,
            },
        }
    }

    #[test]
    fn refuses_an_invalid_config() {
        let config: RouterConfig = serde_json::from_value(serde_json::json!({"instances": [{
            "name": "vi1", "interface": "eth0", "vrid": 1, "priority": 0,
            "primary_address": "198.18.0.1", "virtual_addresses": ["198.18.0.100"]
        }]}))
        .unwrap();
        assert_eq!(
            Router::new(config).unwrap_err(),
            ConfigError::PriorityZero("vi1".into())
        );
    }

    #[test]
    fn backup_status_shows_the_learned_interval_and_master() {
        let mut r = one(100);
        r.handle(Event::new(Time::ZERO, Input::Startup));
        assert_eq!(r.next_deadline(), Some(Time::from_micros(3_609_375)));
        r.handle(Event::new(Time::from_micros(1_000_000), advert(150, 250)));
        let s = r.instance("vi1").unwrap();
        assert_eq!(s.state, State::Backup);
        assert_eq!(s.master_adver_interval_cs, 250);
        assert_eq!(s.master_address, Some("198.18.0.2".parse().unwrap()));
        // 156 * 250 / 256 = 152.34375 cs; MDI = 750 cs + 1,523,437 µs.
        assert_eq!(s.skew_time_us, 1_523_437);
        assert_eq!(s.master_down_interval_us, 9_023_437);
        assert_eq!(r.next_deadline(), Some(Time::from_micros(10_023_437)));
    }

    #[test]
    fn a_backup_outranks_a_lower_priority_master_only() {
        let mut r = one(150);
        r.handle(Event::new(Time::ZERO, Input::Startup));
        assert!(!r.outranks_master(), "no master heard yet");
        r.handle(Event::new(Time::from_micros(1_000_000), advert(200, 100)));
        assert!(!r.outranks_master());
        r.handle(Event::new(Time::from_micros(2_000_000), advert(100, 100)));
        assert!(r.outranks_master());
        // Held back, it still outranks (it follows the master but would preempt).
        r.handle(Event::new(
            Time::from_micros(2_500_000),
            Input::PreemptHold { hold: true },
        ));
        r.handle(Event::new(Time::from_micros(3_000_000), advert(100, 100)));
        assert!(r.outranks_master());
        assert_eq!(r.instance("vi1").unwrap().state, State::Backup);
        // A release is no master to outrank.
        r.handle(Event::new(Time::from_micros(3_500_000), advert(0, 100)));
        assert!(!r.outranks_master());
    }

    #[test]
    fn nothing_runs_before_startup() {
        let mut r = one(255);
        assert!(!r.is_running());
        let out = r.handle(Event::new(Time::ZERO, advert(150, 100)));
        assert!(out.is_empty());
        let out = r.handle(Event::new(Time::ZERO, Input::Shutdown));
        assert!(out.is_empty());
        assert_eq!(r.instance("vi1").unwrap().state, State::Initialize);
        assert_eq!(r.counters().ignored_not_running, 1);
        let out = r.handle(Event::new(Time::ZERO, Input::Startup));
        assert!(r.is_running());
        assert!(matches!(
            out.first(),
            Some(Action::StateChanged {
                to: State::Master,
                ..
            })
        ));
        // A second Startup is a no-op.
        assert!(r.handle(Event::new(Time::ZERO, Input::Startup)).is_empty());
    }

    #[test]
    fn refused_interval_change_is_counted() {
        let mut r = one(100);
        let change = |cs| Input::ConfigChanged {
            instance: "vi1".into(),
            change: ConfigChange::AdvertInterval(cs),
        };
        r.handle(Event::new(Time::ZERO, change(0)));
        r.handle(Event::new(Time::ZERO, change(5000)));
        assert_eq!(r.counters().refused_changes, 2);
        r.handle(Event::new(Time::ZERO, change(50)));
        r.handle(Event::new(Time::ZERO, Input::Startup));
        // Master_Down_Interval with the new 50 cs: 150 + 156*50/256 = 30.46875 cs.
        assert_eq!(
            r.instance("vi1").unwrap().master_down_interval_us,
            1_804_687
        );
    }

    #[test]
    fn events_and_actions_round_trip_through_json() {
        let mut r = one(255);
        let event = Event::new(Time::from_micros(7), Input::Startup);
        let text = serde_json::to_string(&event).unwrap();
        assert_eq!(text, r#"{"now":7,"input":"Startup"}"#);
        let actions = r.handle(serde_json::from_str(&text).unwrap());
        let json = serde_json::to_string(&actions).unwrap();
        let back: Vec<Action> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, actions);
    }
}
