//! Sync groups: instances that are MASTER together or not at all.
//!
//! Every instance belongs to exactly one group: a named one from the
//! configuration, or an implicit group of its own. The rules:
//! - the group becomes MASTER only when every member would (each member's
//!   Master_Down_Timer has expired, or it is the owner starting up);
//! - a fault, maintenance or a lost election in any member takes the whole
//!   group out of MASTER in one step;
//! - a priority-0 advert on any member link shortens every backup member's
//!   Master_Down_Timer to its Skew_Time (the peer is releasing the group);
//! - a MASTER member that hears another master and stays MASTER (a lower
//!   priority, or a priority-0 release) has every member re-announce its VIPs;
//!   a group that yields to another master removes its VIPs, then sends
//!   priority 0 on every member link so that the winner hears of it.

use crate::action::{Action, Reason};
use crate::instance::{Instance, State};
use crate::timer::{self, Time, TimerKind};

/// A sync group: the indexes of its member instances, in configured order.
#[derive(Debug, Clone)]
pub struct SyncGroup {
    pub(crate) name: Option<String>,
    pub(crate) members: Vec<usize>,
}

/// A snapshot of a named sync group.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupStatus {
    /// Group name.
    pub name: String,
    /// Derived state: MASTER if every member is; FAULT if any member is;
    /// else MAINTENANCE if any member is; INITIALIZE if all are; else BACKUP.
    pub state: State,
    /// Member instance names.
    pub members: Vec<String>,
}

/// What a member is heading for, before the group decides.
#[derive(Clone, Copy)]
struct Plan {
    to: State,
    reason: Reason,
}

impl SyncGroup {
    /// The group's name; `None` for the implicit group of a lone instance.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub(crate) fn state(&self, instances: &[Instance]) -> State {
        let states: Vec<State> = self.members.iter().map(|&m| instances[m].state).collect();
        derive_state(&states)
    }

    pub(crate) fn status(&self, instances: &[Instance]) -> Option<GroupStatus> {
        Some(GroupStatus {
            name: self.name.clone()?,
            state: self.state(instances),
            members: self
                .members
                .iter()
                .map(|&m| instances[m].name().to_owned())
                .collect(),
        })
    }

    /// A priority-0 advert reached a BACKUP member: every BACKUP member that
    /// is still waiting sets Master_Down_Timer to its own Skew_Time (the
    /// member that heard it as RFC 9568 §6.4.2 says; the others no later
    /// than that).
    pub(crate) fn peer_released(
        &self,
        heard_by: usize,
        now: Time,
        instances: &mut [Instance],
        out: &mut Vec<Action>,
    ) {
        for &m in &self.members {
            let inst = &mut instances[m];
            if inst.state != State::Backup || inst.wants_master.is_some() {
                continue;
            }
            let at = now + inst.skew_time();
            let sooner = inst.master_down_deadline.is_none_or(|d| at < d);
            if m == heard_by || sooner {
                inst.peer_released = true;
                inst.arm(TimerKind::MasterDown, at, out);
            }
        }
    }

    /// Brings members in line with their conditions and the group rules,
    /// emitting the transitions. Idempotent: with nothing new, no action.
    pub(crate) fn reconcile(&self, now: Time, instances: &mut [Instance], out: &mut Vec<Action>) {
        let all_master = self
            .members
            .iter()
            .all(|&m| instances[m].state == State::Master);
        if all_master {
            self.reconcile_master(now, instances, out);
        } else {
            self.reconcile_not_master(now, instances, out);
        }
    }

    fn own_plan(inst: &Instance, otherwise: Plan) -> Plan {
        if let Some(reason) = inst.fault_cause() {
            Plan {
                to: State::Fault,
                reason,
            }
        } else if inst.maintenance {
            Plan {
                to: State::Maintenance,
                reason: Reason::MaintenanceOn,
            }
        } else {
            otherwise
        }
    }

    fn reconcile_master(&self, now: Time, instances: &mut [Instance], out: &mut Vec<Action>) {
        let plans: Vec<Plan> = self
            .members
            .iter()
            .map(|&m| {
                let inst = &instances[m];
                let stay = if inst.lost_election {
                    Plan {
                        to: State::Backup,
                        reason: Reason::HigherPriority,
                    }
                } else {
                    Plan {
                        to: State::Master,
                        reason: Reason::SyncGroup,
                    }
                };
                Self::own_plan(inst, stay)
            })
            .collect();
        if plans.iter().all(|p| p.to == State::Master) {
            return;
        }
        // Release: the whole group leaves MASTER.
        let plans: Vec<Plan> = plans
            .into_iter()
            .map(|p| match p.to {
                State::Master => Plan {
                    to: State::Backup,
                    reason: Reason::SyncGroup,
                },
                _ => p,
            })
            .collect();
        let remove = Action::RemoveVips {
            group: self.name.clone(),
            sets: self
                .members
                .iter()
                .map(|&m| instances[m].vip_set())
                .collect(),
        };
        if plans.iter().any(|p| p.reason == Reason::HigherPriority) {
            // Another master won (two masters: a split brain healing, or a
            // preemption). The VIPs go first, then priority 0 from every member
            // that can send, the one that lost included: the winner may not
            // have heard any advert of ours (we heard its advert first), and a
            // priority 0 is what makes it re-announce the VIPs on every member
            // link (RFC 9568 §6.4.3 has a master answer it with an advert at
            // once, which also keeps any other backup waiting). By then no
            // address here answers for a VIP any more.
            out.push(remove);
            for &m in &self.members {
                let inst = &mut instances[m];
                if inst.link_up {
                    inst.send_advert(0, out);
                }
            }
        } else {
            // Priority 0 from every member that gives MASTER up and can still
            // send on its link, so that the peer takes over after Skew_Time
            // instead of Master_Down_Interval, on every link. Before the VIPs
            // go: a source address must never depend on them (an IPv6 send
            // from an address just removed fails), and the peer waits
            // Skew_Time anyway.
            for &m in &self.members {
                let inst = &mut instances[m];
                if inst.link_up {
                    inst.send_advert(0, out);
                }
            }
            out.push(remove);
        }
        self.emit_state_changes(instances, &plans, out);
        for &m in &self.members {
            let inst = &mut instances[m];
            inst.cancel(TimerKind::Advertisement, out);
            inst.cancel(TimerKind::GratuitousRepeat, out);
        }
        for (&m, plan) in self.members.iter().zip(&plans) {
            let inst = &mut instances[m];
            inst.counters.left_master += 1;
            let lost = inst.lost_election;
            inst.lost_election = false;
            inst.wants_master = None;
            inst.peer_released = false;
            inst.master_since = None;
            inst.other_master_at = None;
            inst.state = plan.to;
            if plan.to == State::Backup {
                if !lost {
                    // A member dragged out knows no other master yet.
                    inst.master_adver_interval_cs = inst.config.advert_interval_cs;
                    inst.master_address = None;
                }
                inst.arm_master_down(now, out);
            } else {
                inst.master_address = None;
            }
        }
    }

    fn reconcile_not_master(&self, now: Time, instances: &mut [Instance], out: &mut Vec<Action>) {
        let mut plans = Vec::with_capacity(self.members.len());
        for &m in &self.members {
            let inst = &mut instances[m];
            let from = inst.state;
            let enter_reason = match from {
                State::Initialize => Reason::Startup,
                State::Fault => Reason::FaultCleared,
                State::Maintenance => Reason::MaintenanceOff,
                // A member can be MASTER here only if the group is mixed,
                // which the rules never produce; treat it as BACKUP.
                State::Backup | State::Master => Reason::SyncGroup,
            };
            let plan = Self::own_plan(
                inst,
                Plan {
                    to: State::Backup,
                    reason: enter_reason,
                },
            );
            let entering = matches!(from, State::Initialize | State::Fault | State::Maintenance);
            if plan.to == State::Backup && entering {
                // Entering BACKUP (RFC: Startup in Initialize). The owner
                // wants MASTER at once; the others wait for the master.
                inst.preempt_until = now + inst.config.preempt_delay;
                inst.master_adver_interval_cs = inst.config.advert_interval_cs;
                inst.master_address = None;
                inst.peer_released = false;
                inst.outranks_master = false;
                inst.wants_master = inst.is_owner().then_some(enter_reason);
            }
            plans.push(plan);
        }
        let takeover = self
            .members
            .iter()
            .zip(&plans)
            .all(|(&m, p)| p.to == State::Backup && instances[m].wants_master.is_some());
        if takeover {
            self.take_over(now, instances, &mut plans, out);
            return;
        }
        let changed: Vec<bool> = self
            .members
            .iter()
            .zip(&plans)
            .map(|(&m, p)| instances[m].state != p.to)
            .collect();
        if !changed.iter().any(|&c| c) {
            return;
        }
        self.emit_state_changes(instances, &plans, out);
        for (i, &m) in self.members.iter().enumerate() {
            let inst = &mut instances[m];
            if changed[i] && plans[i].to != State::Backup {
                inst.wants_master = None;
                inst.peer_released = false;
                inst.cancel(TimerKind::MasterDown, out);
            }
        }
        for (i, &m) in self.members.iter().enumerate() {
            if !changed[i] {
                continue;
            }
            let inst = &mut instances[m];
            inst.state = plans[i].to;
            if plans[i].to != State::Backup {
                inst.master_address = None;
            } else if inst.wants_master.is_none() {
                inst.arm_master_down(now, out);
            }
        }
    }

    fn take_over(
        &self,
        now: Time,
        instances: &mut [Instance],
        plans: &mut [Plan],
        out: &mut Vec<Action>,
    ) {
        for (&m, plan) in self.members.iter().zip(plans.iter_mut()) {
            let inst = &instances[m];
            plan.to = State::Master;
            plan.reason = inst.wants_master.unwrap_or(Reason::MasterDown);
        }
        self.emit_state_changes(instances, plans, out);
        out.push(Action::PrepareTakeover {
            group: self.name.clone(),
            instances: self
                .members
                .iter()
                .map(|&m| instances[m].name().to_owned())
                .collect(),
        });
        // Member by member: its VIPs, its advert, its burst (see `crate::action`).
        let mut rollback = Vec::new();
        for &m in &self.members {
            let inst = &mut instances[m];
            let set = inst.vip_set();
            out.push(Action::AddVips {
                group: self.name.clone(),
                sets: vec![set.clone()],
                rollback: rollback.clone(),
            });
            rollback.push(set);
            let p = inst.effective_priority();
            inst.send_advert(p, out);
            inst.send_gratuitous(out);
        }
        for &m in &self.members {
            // Owners never armed it; members whose timer fired hold none.
            instances[m].cancel(TimerKind::MasterDown, out);
        }
        for &m in &self.members {
            let inst = &mut instances[m];
            inst.state = State::Master;
            inst.counters.became_master += 1;
            inst.wants_master = None;
            inst.peer_released = false;
            inst.lost_election = false;
            inst.master_since = Some(now);
            inst.other_master_at = None;
            inst.master_adver_interval_cs = inst.config.advert_interval_cs;
            inst.master_address = Some(inst.config.primary_address);
            let at = now + timer::interval(inst.config.advert_interval_cs);
            inst.arm(TimerKind::Advertisement, at, out);
        }
        for &m in &self.members {
            let inst = &mut instances[m];
            if let Some(after) = inst.config.gratuitous.repeat_after {
                inst.arm(TimerKind::GratuitousRepeat, now + after, out);
            }
        }
    }

    /// `GroupStateChanged` (named groups, if the derived state changes) and
    /// one `StateChanged` per member that changes. Does not change state.
    fn emit_state_changes(&self, instances: &[Instance], plans: &[Plan], out: &mut Vec<Action>) {
        if let Some(group) = &self.name {
            let before = self.state(instances);
            let after_states: Vec<State> = plans.iter().map(|p| p.to).collect();
            let after = derive_state(&after_states);
            if before != after {
                out.push(Action::GroupStateChanged {
                    group: group.clone(),
                    from: before,
                    to: after,
                    reason: group_reason(instances, &self.members, plans, after),
                });
            }
        }
        for (&m, plan) in self.members.iter().zip(plans) {
            let inst = &instances[m];
            if inst.state != plan.to {
                out.push(Action::StateChanged {
                    instance: inst.name().to_owned(),
                    group: self.name.clone(),
                    from: inst.state,
                    to: plan.to,
                    reason: plan.reason,
                });
            }
        }
    }

    /// Shutdown: every member to INITIALIZE; a MASTER group releases with
    /// priority 0 (RFC §6.4.3), then removes its VIPs.
    pub(crate) fn shut_down(&self, instances: &mut [Instance], out: &mut Vec<Action>) {
        let was_master = self.state(instances) == State::Master;
        let plans: Vec<Plan> = self
            .members
            .iter()
            .map(|_| Plan {
                to: State::Initialize,
                reason: Reason::Shutdown,
            })
            .collect();
        if was_master {
            // The adverts first, as in a release (see `reconcile_master`).
            for &m in &self.members {
                let inst = &mut instances[m];
                if inst.link_up {
                    inst.send_advert(0, out);
                }
                inst.counters.left_master += 1;
            }
            out.push(Action::RemoveVips {
                group: self.name.clone(),
                sets: self
                    .members
                    .iter()
                    .map(|&m| instances[m].vip_set())
                    .collect(),
            });
        }
        self.emit_state_changes(instances, &plans, out);
        for &m in &self.members {
            let inst = &mut instances[m];
            for t in [
                TimerKind::Advertisement,
                TimerKind::MasterDown,
                TimerKind::GratuitousRepeat,
                TimerKind::VipRetry,
            ] {
                inst.cancel(t, out);
            }
        }
        for &m in &self.members {
            let inst = &mut instances[m];
            inst.state = State::Initialize;
            inst.vip_add_failed = false;
            inst.wants_master = None;
            inst.lost_election = false;
            inst.peer_released = false;
            inst.master_since = None;
            inst.other_master_at = None;
            inst.master_address = None;
            inst.master_adver_interval_cs = inst.config.advert_interval_cs;
        }
    }

    /// A MASTER member heard another master of its VRID and stays MASTER (it
    /// outranks it, or it released): neighbours may have followed the other
    /// one, on any member link, whether or not an advert of it reached us on
    /// that link. Every member sends its gratuitous ARP / NA burst again (and
    /// its repeat, if configured), as at a takeover.
    pub(crate) fn reannounce(&self, now: Time, instances: &mut [Instance], out: &mut Vec<Action>) {
        if self.state(instances) != State::Master {
            return;
        }
        for &m in &self.members {
            instances[m].send_gratuitous(out);
        }
        for &m in &self.members {
            let inst = &mut instances[m];
            if let Some(after) = inst.config.gratuitous.repeat_after {
                inst.arm(TimerKind::GratuitousRepeat, now + after, out);
            }
        }
    }
}

fn derive_state(states: &[State]) -> State {
    if states.iter().all(|&s| s == State::Master) {
        State::Master
    } else if states.iter().all(|&s| s == State::Initialize) {
        State::Initialize
    } else if states.contains(&State::Fault) {
        State::Fault
    } else if states.contains(&State::Maintenance) {
        State::Maintenance
    } else {
        State::Backup
    }
}

/// The group's reason: taken from the members that move to the group's new
/// state. A released peer wins (fast takeover is worth telling apart), then
/// an expired Master_Down_Timer when taking over, then the first member's
/// own cause.
fn group_reason(instances: &[Instance], members: &[usize], plans: &[Plan], after: State) -> Reason {
    let movers: Vec<Reason> = members
        .iter()
        .zip(plans)
        .filter(|(&m, p)| p.to == after && instances[m].state != p.to)
        .map(|(_, p)| p.reason)
        .collect();
    if movers.contains(&Reason::PeerReleased) {
        return Reason::PeerReleased;
    }
    if after == State::Master && movers.contains(&Reason::MasterDown) {
        return Reason::MasterDown;
    }
    movers
        .iter()
        .chain(plans.iter().map(|p| &p.reason))
        .copied()
        .find(|&r| r != Reason::SyncGroup)
        .unwrap_or(Reason::SyncGroup)
}
