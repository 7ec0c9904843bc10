//! Operator commands from the control socket: status, reload, maintenance,
//! priority, and the failover / fault drills.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use ctl::contract::ms;
use ctl::contract::vrrpd::{
    DrillLink, FailoverDrillReply, FaultDrillReply, GroupState, GroupStatus, InstanceStatus,
    RealtimeStatus, TimerStatus, TransitionStatus, VrrpdStatus,
};
use ctl::ReplyError;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::time::Instant;
use vrrp::event::Input;
use vrrp::instance::State;
use vrrp::packet::Advertisement;

use crate::control::{Command, ControlRequest, FailoverParams, FaultParams};
use crate::daemon::{answer, state_name, timer_name, vrrp_state, Daemon};
use crate::timers::TimerKey;
use crate::translate::{GroupPlan, InstancePlan};

type Reply = oneshot::Sender<Result<Value, ReplyError>>;

/// The first advert heard from the new master on one member link.
#[derive(Debug, Clone)]
pub(crate) struct Heard {
    iface: String,
    from: IpAddr,
    priority: u8,
    after_ms: f64,
}

/// A contract struct as a reply's result.
fn reply_value<T: serde::Serialize>(reply: &T) -> Result<Value, ReplyError> {
    serde_json::to_value(reply).map_err(ReplyError::internal)
}

/// An instance's VIPs as `address/prefix`.
fn vip_names(plan: &InstancePlan) -> Vec<String> {
    plan.vips
        .iter()
        .map(|v| format!("{}/{}", v.address, v.prefix_len))
        .collect()
}

/// An instance's counters by name.
fn counter_map(counters: &vrrp::instance::Counters) -> BTreeMap<String, u64> {
    serde_json::to_value(counters)
        .and_then(serde_json::from_value)
        .unwrap_or_default()
}

#[derive(Debug)]
enum DrillStage {
    /// Released; waiting for the peer's adverts on every member link.
    AwaitPeer,
    /// Maintenance off again; waiting for this node to preempt back.
    AwaitReturn {
        since: Instant,
        /// The deadline was moved once to the end of a preemption hold.
        hold_waited: bool,
    },
}

/// A running `drill.failover`.
#[derive(Debug)]
pub(crate) struct FailoverDrill {
    group: String,
    released: Instant,
    members: Vec<String>,
    heard: BTreeMap<String, Heard>,
    stage: DrillStage,
    reply: Option<Reply>,
    result: FailoverDrillReply,
}

impl Daemon {
    pub(crate) async fn on_control(&mut self, request: ControlRequest) {
        let ControlRequest { command, reply } = request;
        match command {
            Command::Status => answer(reply, reply_value(&self.status())),
            Command::Reload => {
                let result = self.reload().await.map_err(|why| {
                    tracing::error!("reload refused, running configuration unchanged:\n{why}");
                    ReplyError::failed(format!(
                        "reload refused, running configuration unchanged:\n{why}"
                    ))
                });
                match result {
                    Ok(report) => {
                        tracing::info!(report = %report.summary(), "reloaded on request");
                        answer(reply, reply_value(&report));
                    }
                    Err(e) => answer(reply, Err(e)),
                }
            }
            Command::Maintenance(p) => {
                let result = self.maintenance(p).await;
                answer(reply, result.and_then(|r| reply_value(&r)));
            }
            Command::PrioritySet(p) => {
                let result = self.set_priority(p).await;
                answer(reply, result.and_then(|r| reply_value(&r)));
            }
            Command::PriorityList => answer(reply, reply_value(&self.list_overrides())),
            Command::PriorityClear(p) => {
                let result = self.clear_priority(p).await;
                answer(reply, result.and_then(|r| reply_value(&r)));
            }
            Command::TrackSet(p) => {
                let result = self.set_tracks(p).await;
                answer(reply, result.and_then(|r| reply_value(&r)));
            }
            Command::DrillFault(p) => {
                let result = self.start_fault_drill(p).await;
                answer(reply, result.and_then(|r| reply_value(&r)));
            }
            Command::DrillFailover(p) => self.start_failover_drill(p, reply).await,
        }
    }

    /// Names of the groups a command applies to.
    pub(crate) fn target_groups(&self, group: Option<&str>) -> Result<Vec<String>, ReplyError> {
        match group {
            Some(g) if self.groups.contains_key(g) => Ok(vec![g.to_owned()]),
            Some(g) => Err(ReplyError::failed(format!(
                "no sync group {g:?}; groups: {}",
                self.groups.keys().cloned().collect::<Vec<_>>().join(", ")
            ))),
            None => Ok(self.groups.keys().cloned().collect()),
        }
    }

    pub(crate) fn members(&self, group: &str) -> Vec<String> {
        self.groups
            .get(group)
            .map(|rt| rt.plan.instances.iter().map(|i| i.name.clone()).collect())
            .unwrap_or_default()
    }

    fn group_state(&self, group: &str) -> Option<State> {
        self.groups
            .get(group)
            .and_then(|rt| rt.router.group(group))
            .map(|g| g.state)
    }

    pub(crate) fn group_states(&self, groups: &[String]) -> Vec<GroupState> {
        groups
            .iter()
            .map(|g| GroupState {
                group: g.clone(),
                state: self.group_state(g).map(vrrp_state),
            })
            .collect()
    }

    /// `status`: the node, every group and instance. The one place vrrpd's status
    /// is built; its shape is `ctl::contract::vrrpd::VrrpdStatus`.
    pub(crate) fn status(&self) -> VrrpdStatus {
        let mut groups = Vec::new();
        let mut instances = Vec::new();
        for g in &self.plan.groups {
            let Some(rt) = self.groups.get(&g.name) else {
                continue;
            };
            groups.push(self.group_status(g));
            for s in rt.router.instances() {
                instances.push(self.instance_status(g, s));
            }
        }
        VrrpdStatus {
            node: self.view.name.clone(),
            cluster: self.view.cluster_name.clone(),
            config_fingerprint: Some(self.view.fingerprint.clone()),
            groups,
            instances,
            held_interfaces: self.held.keys().cloned().collect(),
            failover_drill: self.failover.as_ref().map(|d| d.group.clone()),
            preempt_hold: self.hold_status(),
            realtime: self.realtime_status(),
            control: self.control_stats.snapshot(),
            state_file: self.state_file_status(),
        }
    }

    /// One sync group in `status`.
    fn group_status(&self, g: &GroupPlan) -> GroupStatus {
        let now = self.clock.now();
        GroupStatus {
            name: g.name.clone(),
            state: self.group_state(&g.name).map(vrrp_state),
            priority: Some(g.priority),
            members: g.instances.iter().map(|i| i.name.clone()).collect(),
            vips: g.instances.iter().flat_map(vip_names).collect(),
            last_takeover: self
                .takeovers
                .get(&g.name)
                .and_then(|r| r.lock().ok().map(|r| r.clone())),
            prepare_misses: self.prepare_misses.get(&g.name).copied().unwrap_or(0),
            fault_drill_ends_in_ms: self
                .timers
                .deadline(&TimerKey::FaultDrillEnd {
                    group: g.name.clone(),
                })
                .map(|at| at.saturating_since(now).as_millis() as u64),
            tracking: self.tracking_status(&g.name),
            maintenance: self.maintenance_status(&g.name),
        }
    }

    /// One instance in `status`.
    fn instance_status(&self, g: &GroupPlan, s: vrrp::instance::InstanceStatus) -> InstanceStatus {
        let now = self.clock.now();
        let plan = g.instances.iter().find(|i| i.name == s.name);
        let config = g.instance_config(&s.name);
        let master_priority = if s.state == State::Master {
            Some(s.effective_priority)
        } else {
            self.last_heard
                .get(&s.name)
                .filter(|(from, _)| Some(*from) == s.master_address)
                .map(|&(_, priority)| priority)
        };
        InstanceStatus {
            group: g.name.clone(),
            interface: plan.map(|p| p.interface.clone()),
            vrid: plan.map(|p| p.vrid),
            family: plan.map(|p| p.family.to_string()),
            version: config.map(|c| c.version.number()),
            state: vrrp_state(s.state),
            priority: s.priority,
            effective_priority: s.effective_priority,
            configured_priority: config.map(|c| c.priority),
            priority_override: self.override_status(&s.name),
            master_address: s.master_address,
            master_priority,
            primary_address: config.map(|c| c.primary_address),
            advert_interval_ms: config.map(|c| u32::from(c.advert_interval_cs) * 10),
            master_advert_interval_ms: u32::from(s.master_adver_interval_cs) * 10,
            master_down_interval_ms: ms(Duration::from_micros(s.master_down_interval_us)),
            skew_time_ms: ms(Duration::from_micros(s.skew_time_us)),
            preempt: config.map(|c| c.preempt),
            maintenance: s.maintenance,
            link_up: s.link_up,
            tracked_down: s.tracked_down.clone(),
            ready_for_master: s.ready_for_master,
            vips: plan.map(vip_names).unwrap_or_default(),
            timers: s
                .timers
                .iter()
                .map(|t| TimerStatus {
                    timer: timer_name(t.timer).to_owned(),
                    in_ms: t.at.saturating_since(now).as_millis() as u64,
                })
                .collect(),
            counters: counter_map(&s.counters),
            last_transition: self.transitions.get(&s.name).map(|t| TransitionStatus {
                from: vrrp_state(t.from),
                to: vrrp_state(t.to),
                reason: t.reason.clone(),
                unix_ms: t.unix_ms,
                ago_ms: t.at.elapsed().as_millis() as u64,
            }),
            dual_master: self.dual_master_status(&s.name),
            name: s.name,
        }
    }

    /// `[vrrpd]`: what was asked for at start-up and what the event loop (this
    /// thread) and the process have now.
    fn realtime_status(&self) -> RealtimeStatus {
        let now = crate::realtime::Scheduling::current();
        RealtimeStatus {
            requested_priority: self.realtime.requested_priority,
            policy: now.policy.to_owned(),
            priority: now.realtime_priority(),
            lock_memory: self.realtime.lock_requested,
            memory_locked: self.realtime.memory_locked,
            locked_kib: crate::realtime::locked_kib(),
            warnings: self.realtime.warnings.clone(),
        }
    }

    async fn start_fault_drill(&mut self, p: FaultParams) -> Result<FaultDrillReply, ReplyError> {
        let groups = self.target_groups(p.group.as_deref())?;
        let until = self.clock.now() + Duration::from_secs(u64::from(p.seconds));
        let mut interfaces = Vec::new();
        for g in &groups {
            let ifaces: Vec<String> = self
                .groups
                .get(g)
                .map(|rt| {
                    rt.plan
                        .instances
                        .iter()
                        .map(|i| i.interface.clone())
                        .collect()
                })
                .unwrap_or_default();
            for iface in ifaces {
                let newly = !self.held.contains_key(&iface);
                self.held
                    .entry(iface.clone())
                    .or_default()
                    .insert(g.clone());
                if newly {
                    interfaces.push(iface.clone());
                    tracing::warn!(group = %g, iface = %iface, seconds = p.seconds, "drill.fault: holding the link down");
                    self.feed_all(Input::InterfaceDown { interface: iface })
                        .await;
                }
            }
            self.timers
                .arm(TimerKey::FaultDrillEnd { group: g.clone() }, until);
        }
        Ok(FaultDrillReply {
            seconds: p.seconds,
            interfaces,
            groups: self.group_states(&groups),
        })
    }

    pub(crate) async fn end_fault_drill(&mut self, group: &str) {
        let mut released = Vec::new();
        self.held.retain(|iface, groups| {
            groups.remove(group);
            if groups.is_empty() {
                released.push(iface.clone());
                false
            } else {
                true
            }
        });
        for iface in released {
            let up = self.links.get(&iface).is_some_and(|l| l.up);
            tracing::warn!(group, iface = %iface, link_up = up, "drill.fault over");
            if up {
                self.feed_all(Input::InterfaceUp { interface: iface }).await;
            }
        }
    }

    async fn start_failover_drill(&mut self, p: FailoverParams, reply: Reply) {
        if self.failover.is_some() {
            return answer(
                reply,
                Err(ReplyError::failed("a failover drill is already running")),
            );
        }
        let group =
            match p.group {
                Some(g) => match self.target_groups(Some(&g)) {
                    Ok(_) => g,
                    Err(e) => return answer(reply, Err(e)),
                },
                None => {
                    let masters: Vec<String> = self
                        .groups
                        .keys()
                        .filter(|g| self.group_state(g) == Some(State::Master))
                        .cloned()
                        .collect();
                    match masters.as_slice() {
                        [one] => one.clone(),
                        [] => return answer(
                            reply,
                            Err(ReplyError::failed(
                                "this node is MASTER of no group: run drill.failover on the master",
                            )),
                        ),
                        _ => {
                            return answer(
                                reply,
                                Err(ReplyError::failed(format!(
                            "this node is MASTER of several groups ({}): name one with --group",
                            masters.join(", ")
                        ))),
                            )
                        }
                    }
                }
            };
        let state = self.group_state(&group);
        if state != Some(State::Master) {
            return answer(
                reply,
                Err(ReplyError::failed(format!(
                    "group {group:?} is {} here: run drill.failover on the master",
                    state.map(state_name).unwrap_or("unknown")
                ))),
            );
        }
        let members = self.members(&group);
        // Generous: the peer takes over after Skew_Time, or at worst after
        // Master_Down_Interval if it missed the priority-0 adverts.
        let mdi = self.max_master_down(&group);
        tracing::warn!(group = %group, "drill.failover: releasing the group");
        let released = Instant::now();
        for instance in &members {
            self.feed(
                &group,
                Input::MaintenanceOn {
                    instance: instance.clone(),
                },
                released,
            )
            .await;
        }
        let deadline = self.clock.now() + mdi * 3 + Duration::from_secs(2);
        self.timers.arm(TimerKey::FailoverDrillDeadline, deadline);
        self.failover = Some(FailoverDrill {
            group,
            released,
            members,
            heard: BTreeMap::new(),
            stage: DrillStage::AwaitPeer,
            reply: Some(reply),
            result: FailoverDrillReply::default(),
        });
    }

    fn max_master_down(&self, group: &str) -> Duration {
        self.groups
            .get(group)
            .map(|rt| {
                rt.router
                    .instances()
                    .iter()
                    .map(|s| Duration::from_micros(s.master_down_interval_us))
                    .max()
                    .unwrap_or(Duration::from_secs(4))
            })
            .unwrap_or(Duration::from_secs(4))
    }

    /// Records the peer's first advert per member link during a drill.
    pub(crate) fn note_failover_advert(
        &mut self,
        group: &str,
        iface: &str,
        src: IpAddr,
        advert: &Advertisement,
        at: Instant,
    ) {
        let Some(drill) = self.failover.as_mut() else {
            return;
        };
        if drill.group != group
            || advert.priority == 0
            || !matches!(drill.stage, DrillStage::AwaitPeer)
        {
            return;
        }
        let Some(instance) = self
            .plan
            .groups
            .iter()
            .flat_map(|g| &g.instances)
            .find(|i| i.group == group && i.interface == iface && i.vrid == advert.vrid)
        else {
            return;
        };
        drill
            .heard
            .entry(instance.name.clone())
            .or_insert_with(|| Heard {
                iface: iface.to_owned(),
                from: src,
                priority: advert.priority,
                after_ms: ms(at.saturating_duration_since(drill.released)),
            });
    }

    /// Moves a running failover drill on; called after every loop event.
    pub(crate) async fn advance_failover_drill(&mut self) {
        let Some(drill) = self.failover.as_ref() else {
            return;
        };
        match drill.stage {
            DrillStage::AwaitPeer => {
                if drill.members.iter().any(|m| !drill.heard.contains_key(m)) {
                    return;
                }
                let group = drill.group.clone();
                let members = drill.members.clone();
                let heard = drill.heard.clone();
                let links: Vec<DrillLink> = members
                    .iter()
                    .filter_map(|m| heard.get(m).map(|h| (m, h)))
                    .map(|(m, h)| DrillLink {
                        instance: m.clone(),
                        interface: h.iface.clone(),
                        peer: h.from,
                        peer_priority: h.priority,
                        takeover_ms: h.after_ms,
                    })
                    .collect();
                tracing::warn!(group = %group, links = %ctl::logging::list(links.iter().map(|l| format!("{} on {}: peer {} after {:.1} ms", l.instance, l.interface, l.peer, l.takeover_ms))), "drill.failover: peer took over; maintenance off");
                // The operator's `maintenance on` during the drill outlasts it.
                let back = !self.operator_maintenance(&group);
                for instance in members.iter().filter(|_| back) {
                    self.feed(
                        &group,
                        Input::MaintenanceOff {
                            instance: instance.clone(),
                        },
                        Instant::now(),
                    )
                    .await;
                }
                let expect_preempt = self.groups.get(&group).is_some_and(|rt| {
                    members.iter().all(|m| {
                        let status = rt.router.instance(m);
                        let config = rt.plan.instance_config(m);
                        match (status, config, heard.get(m)) {
                            (Some(s), Some(c), Some(h)) => {
                                s.effective_priority == 255
                                    || (c.preempt && s.effective_priority > h.priority)
                            }
                            _ => false,
                        }
                    })
                });
                let return_by = self.return_deadline(&group, self.clock.now());
                let Some(drill) = self.failover.as_mut() else {
                    return;
                };
                drill.result = FailoverDrillReply {
                    group: group.clone(),
                    links,
                    expect_preempt_back: expect_preempt,
                    ..FailoverDrillReply::default()
                };
                if expect_preempt {
                    drill.stage = DrillStage::AwaitReturn {
                        since: Instant::now(),
                        hold_waited: false,
                    };
                    self.timers.arm(TimerKey::FailoverDrillDeadline, return_by);
                } else {
                    self.finish_failover_drill(None);
                }
            }
            DrillStage::AwaitReturn { since, .. } => {
                if self.group_state(&drill.group) == Some(State::Master) {
                    let after = ms(since.elapsed());
                    tracing::warn!(group = %drill.group, after_ms = after, "drill.failover: preempted back to MASTER");
                    self.finish_failover_drill(Some(after));
                }
            }
        }
    }

    /// By when a node that preempts is back from `now`: two Master_Down_Intervals,
    /// the preempt delay and 2 s to spare.
    fn return_deadline(&self, group: &str, now: vrrp::timer::Time) -> vrrp::timer::Time {
        let preempt_delay = self
            .groups
            .get(group)
            .and_then(|rt| {
                rt.plan
                    .router
                    .instances
                    .iter()
                    .map(|c| c.preempt_delay)
                    .max()
            })
            .unwrap_or_default();
        now + self.max_master_down(group) * 2 + preempt_delay + Duration::from_secs(2)
    }

    /// The preemption hold ended (lifted or ran out): a drill waiting for this node
    /// to come back counts its time to preempt from now.
    pub(crate) fn drill_hold_ended(&mut self) {
        let Some(drill) = self.failover.as_ref() else {
            return;
        };
        if matches!(drill.stage, DrillStage::AwaitReturn { .. }) {
            let group = drill.group.clone();
            let at = self.return_deadline(&group, self.clock.now());
            self.timers.arm(TimerKey::FailoverDrillDeadline, at);
        }
    }

    fn finish_failover_drill(&mut self, preempted_back_ms: Option<f64>) {
        self.timers.cancel(&TimerKey::FailoverDrillDeadline);
        let Some(mut drill) = self.failover.take() else {
            return;
        };
        drill.result.preempted_back_ms = preempted_back_ms;
        drill.result.state = self.group_state(&drill.group).map(vrrp_state);
        if let Some(reply) = drill.reply.take() {
            answer(reply, reply_value(&drill.result));
        }
    }

    pub(crate) async fn failover_deadline(&mut self) {
        let Some(drill) = self.failover.as_ref() else {
            return;
        };
        match drill.stage {
            DrillStage::AwaitPeer => {
                let Some(mut drill) = self.failover.take() else {
                    return;
                };
                let missing: Vec<&String> = drill
                    .members
                    .iter()
                    .filter(|m| !drill.heard.contains_key(*m))
                    .collect();
                let why = format!(
                    "the peer did not take over group {:?} in time: no advert from it on {} (heard: {:?}); maintenance off again",
                    drill.group,
                    missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                    drill.heard.keys().collect::<Vec<_>>(),
                );
                tracing::error!("drill.failover: {why}");
                let group = drill.group.clone();
                let back = !self.operator_maintenance(&group);
                for instance in drill.members.clone().into_iter().filter(|_| back) {
                    self.feed(&group, Input::MaintenanceOff { instance }, Instant::now())
                        .await;
                }
                if let Some(reply) = drill.reply.take() {
                    answer(reply, Err(ReplyError::failed(why)));
                }
            }
            DrillStage::AwaitReturn { since, hold_waited } => {
                // Preemption held back for lbd (the peer's full dump of a large table
                // under load can take longer than the deadline): the node comes back
                // when the hold lifts or at the latest when it runs out, so the drill
                // waits that long, once.
                let hold = self.hold.status();
                if let (false, true, Some(began), Some(wait)) =
                    (hold_waited, hold.applied, hold.since, hold.wait)
                {
                    let group = drill.group.clone();
                    let at =
                        began + wait + self.max_master_down(&group) * 2 + Duration::from_secs(2);
                    if at > self.clock.now() {
                        tracing::info!(group = %group, reasons = ?hold.reasons, "drill.failover: preemption is held back; waiting for the hold before concluding");
                        if let Some(d) = self.failover.as_mut() {
                            d.stage = DrillStage::AwaitReturn {
                                since,
                                hold_waited: true,
                            };
                        }
                        self.timers.arm(TimerKey::FailoverDrillDeadline, at);
                        return;
                    }
                }
                tracing::warn!(group = %drill.group, "drill.failover: expected to preempt back, but did not in time");
                self.finish_failover_drill(None);
            }
        }
    }

    /// Answers a pending drill request with an error (shutdown).
    pub(crate) fn fail_drill_requests(&mut self, why: &str) {
        if let Some(mut drill) = self.failover.take() {
            if let Some(reply) = drill.reply.take() {
                answer(reply, Err(ReplyError::failed(why)));
            }
        }
    }
}
