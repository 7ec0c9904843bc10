//! What an operator sets at run time and vrrpd keeps until it is cleared, across
//! reloads and restarts: maintenance per group (`maintenance`) and priority
//! overrides per instance (`priority.set`, `priority.list`, `priority.clear`).
//! The file itself is [`crate::persist`]'s.
//!
//! Rules:
//! - the state file is read before the first election, so a node left in
//!   maintenance never becomes MASTER after a restart, not even briefly;
//! - a file that exists but cannot be used (unreadable, corrupt, another format or
//!   node) puts every group in maintenance: vrrpd cannot tell whether the operator
//!   had taken this node out, and the peer serves meanwhile. It is logged, counted
//!   (`vrrp_state_file_errors_total{operation="read"}`), shown by `status`, kept
//!   aside as `<file>.bad`, and `vrrpctl maintenance off` ends it;
//! - a reload whose file lacks a group this node keeps in maintenance (renamed or
//!   removed) is refused: the maintenance would end with the old name;
//! - at start-up, entries for groups or instances the configuration no longer has,
//!   and overrides the configuration's priority rule now refuses, are dropped,
//!   logged and shown by `status` (`state_file.ignored`); at a reload, overrides
//!   of instances it no longer has are;
//! - an override replaces the file's priority until cleared, whatever a reload
//!   changes in the file; tracking deltas (`track.set`) apply on top of it;
//! - an override obeys check-config's rule (255 exactly for the VIPs' owner), and
//!   the members of a sync group keep one priority: the group is MASTER only where
//!   every member wins its election, so an override on one member alone either
//!   cannot take the group over or takes all of it down.

use std::collections::BTreeSet;
use std::path::PathBuf;

use ctl::contract::vrrpd::{
    GroupMaintenance, InstancePriority, MaintenanceReply, MaintenanceStatus, Persisted,
    PriorityClearReply, PriorityListReply, PriorityOverrideStatus, PriorityReply, StateFileStatus,
};
use ctl::ReplyError;
use prometheus::{IntCounterVec, Opts};
use tokio::time::Instant;
use vrrp::event::{Event, Input};

use crate::control::{MaintenanceParams, PriorityClearParams, PriorityParams};
use crate::daemon::{unix_ms, vrrp_state, Daemon};
use crate::error::StateWriteError;
use crate::persist::{self, Maintenance, OperatorState, PriorityOverride};
use crate::telemetry::Telemetry;

/// The state file as this vrrpd uses it: where, and how reading and writing went.
#[derive(Debug)]
pub(crate) struct StateFile {
    path: PathBuf,
    /// Why the file could not be used at start-up, if it could not.
    load_error: Option<String>,
    /// Entries dropped because the configuration has no place for them.
    ignored: Vec<String>,
    writes: u64,
    write_errors: u64,
    last_write_error: Option<String>,
    errors: Option<IntCounterVec>,
}

/// The reason recorded for an operator's `maintenance on`.
const BY_OPERATOR: &str = "vrrpctl maintenance on";

impl StateFile {
    /// Reads this node's state file: what it holds, or the safe state (every group
    /// in maintenance) when it exists but cannot be used.
    pub(crate) fn open(view: &config::NodeView) -> (StateFile, OperatorState) {
        let env = std::env::var_os("STATE_DIRECTORY");
        let path = persist::state_path(
            &view.control.vrrpd_socket,
            view.control.state_dir.as_deref(),
            env.as_deref(),
        );
        let mut file = StateFile {
            path,
            load_error: None,
            ignored: Vec::new(),
            writes: 0,
            write_errors: 0,
            last_write_error: None,
            errors: None,
        };
        let state = match persist::load(&file.path, &view.name) {
            Ok(Some(state)) => {
                tracing::info!(path = %file.path.display(), maintenance = %ctl::logging::list(state.maintenance.keys()), priority_overrides = state.priority_overrides.len(), "state file read");
                state
            }
            Ok(None) => {
                tracing::info!(path = %file.path.display(), "no state file: no maintenance, no priority override");
                OperatorState::default()
            }
            Err(e) => {
                let why = e.to_string();
                tracing::error!("state file unusable: {why}; every group starts in maintenance (it may have been set): check the file, then `vrrpctl maintenance off`");
                let mut state = OperatorState::default();
                let now = unix_ms();
                for g in &view.groups {
                    state.maintenance.insert(
                        g.name.clone(),
                        Maintenance {
                            since_unix_ms: now,
                            reason: format!("the state file could not be used: {why}"),
                        },
                    );
                }
                // The safe state goes on disk too, so that the next start is as
                // safe; a file that was read is kept aside first for a look.
                if e.was_read() {
                    match persist::keep_aside(&file.path) {
                        Ok(bad) => {
                            tracing::warn!(copy = %bad.display(), "the unusable state file is kept aside");
                            // A failure is logged and counted by store.
                            let _ = file.store(&view.name, &state);
                        }
                        Err(err) => {
                            tracing::error!(path = %file.path.display(), error = %err, "cannot keep the unusable state file aside; leaving it as it is")
                        }
                    }
                }
                file.load_error = Some(why);
                state
            }
        };
        (file, state)
    }

    /// Registers `vrrp_state_file_errors_total` with the daemon's metrics.
    pub(crate) fn attach(&mut self, telemetry: &Telemetry) {
        let Ok(c) = IntCounterVec::new(
            Opts::new(
                "vrrp_state_file_errors_total",
                "State file (maintenance, priority overrides) reads and writes that failed.",
            ),
            &["operation"],
        ) else {
            return;
        };
        if telemetry.registry().register(Box::new(c.clone())).is_err() {
            return;
        }
        let read = c.with_label_values(&["read"]);
        read.inc_by(u64::from(self.load_error.is_some()));
        c.with_label_values(&["write"]).inc_by(self.write_errors);
        self.errors = Some(c);
    }

    /// Writes `state`; the error is logged, counted and returned.
    fn store(&mut self, node: &str, state: &OperatorState) -> Result<(), StateWriteError> {
        match persist::store(&self.path, node, state, unix_ms()) {
            Ok(()) => {
                self.writes += 1;
                self.last_write_error = None;
                Ok(())
            }
            Err(error) => {
                let why = StateWriteError {
                    path: self.path.clone(),
                    error,
                };
                tracing::error!("{why}");
                self.write_errors += 1;
                if let Some(c) = &self.errors {
                    c.with_label_values(&["write"]).inc();
                }
                self.last_write_error = Some(why.to_string());
                Err(why)
            }
        }
    }
}

/// A reply's `persisted` (and `warning` when the write failed).
fn persisted(written: Result<(), StateWriteError>) -> Persisted {
    Persisted {
        persisted: written.is_ok(),
        warning: written.err().map(|e| e.to_string()),
    }
}

impl Daemon {
    /// Writes the operator state to the state file.
    fn save_operator_state(&mut self) -> Result<(), StateWriteError> {
        let node = self.view.name.clone();
        self.state_file.store(&node, &self.operator)
    }

    /// Drops what the running configuration has no place for (after start-up and
    /// each reload), saying so; writes the file if anything went.
    /// Refuses a configuration that lacks a group this node keeps in maintenance.
    ///
    /// Renaming or removing such a group would drop its maintenance with its old
    /// name (see [`Daemon::settle_operator_state`]), and the node could become
    /// MASTER again behind the operator's back. The reload is refused before
    /// anything changes; the operator ends maintenance first or keeps the name.
    pub(crate) fn check_maintenance_kept(
        &self,
        new: &config::NodeView,
    ) -> Result<(), crate::error::ReloadError> {
        let groups: Vec<String> = self
            .operator
            .maintenance
            .keys()
            .filter(|g| new.groups.iter().all(|n| &n.name != *g))
            .cloned()
            .collect();
        if groups.is_empty() {
            return Ok(());
        }
        Err(crate::error::ReloadError::MaintenanceWouldEnd { groups })
    }

    pub(crate) fn settle_operator_state(&mut self, when: &str) {
        let mut dropped = Vec::new();
        let groups: BTreeSet<String> = self.view.groups.iter().map(|g| g.name.clone()).collect();
        self.operator.maintenance.retain(|g, _| {
            let keep = groups.contains(g);
            if !keep {
                dropped.push(format!("maintenance of group {g:?}: no such group"));
            }
            keep
        });
        let view = &self.view;
        self.operator.priority_overrides.retain(|i, o| {
            let Some(inst) = view.instance(i) else {
                dropped.push(format!(
                    "priority override {} of instance {i:?}: no such instance",
                    o.priority
                ));
                return false;
            };
            match view.priority_problem(&inst.group, o.priority) {
                Some(p) => {
                    dropped.push(format!(
                        "priority override {} of instance {i:?}: {p}",
                        o.priority
                    ));
                    false
                }
                None => true,
            }
        });
        if dropped.is_empty() {
            return;
        }
        for d in &dropped {
            tracing::warn!(when, "state file entry ignored: {d}");
        }
        self.state_file.ignored.extend(dropped);
        // Errors are logged and counted; the state in memory is what applies.
        let _ = self.save_operator_state();
    }

    /// Before a (re)built group starts: members of a group in maintenance begin
    /// there, so that the first election already counts it.
    pub(crate) fn prime_maintenance(&mut self, group: &str) {
        if !self.operator.maintenance.contains_key(group) {
            return;
        }
        let now = self.clock.now();
        let Some(rt) = self.groups.get_mut(group) else {
            return;
        };
        let members: Vec<String> = rt.plan.instances.iter().map(|i| i.name.clone()).collect();
        for instance in members {
            // Not running yet: no actions come back.
            rt.router
                .handle(Event::new(now, Input::MaintenanceOn { instance }));
        }
        tracing::info!(group, "starting in maintenance (state file)");
    }

    /// Whether the operator holds `group` in maintenance (a drill that ends must
    /// not let it back).
    pub(crate) fn operator_maintenance(&self, group: &str) -> bool {
        self.operator.maintenance.contains_key(group)
    }

    /// `maintenance`: on or off for groups, kept in the state file.
    pub(crate) async fn maintenance(
        &mut self,
        p: MaintenanceParams,
    ) -> Result<MaintenanceReply, ReplyError> {
        let groups = self.target_groups(p.group.as_deref())?;
        let now = unix_ms();
        for g in &groups {
            if p.on {
                self.operator
                    .maintenance
                    .entry(g.clone())
                    .or_insert_with(|| Maintenance {
                        since_unix_ms: now,
                        reason: BY_OPERATOR.to_owned(),
                    });
            } else {
                self.operator.maintenance.remove(g);
            }
        }
        // Written before the state machines move: a crash in between comes back
        // as the operator asked.
        let written = self.save_operator_state();
        for g in &groups {
            for instance in self.members(g) {
                let input = if p.on {
                    Input::MaintenanceOn { instance }
                } else {
                    Input::MaintenanceOff { instance }
                };
                self.feed(g, input, Instant::now()).await;
            }
            tracing::info!(group = %g, on = p.on, "maintenance");
        }
        Ok(MaintenanceReply {
            maintenance: p.on,
            groups: self.group_states(&groups),
            persisted: persisted(written),
        })
    }

    /// The base priority (override, else the file's) of each member of `group`.
    fn member_bases(&self, group: &str) -> Vec<(String, u8)> {
        let Some(rt) = self.groups.get(group) else {
            return Vec::new();
        };
        rt.plan
            .instances
            .iter()
            .filter_map(|i| {
                let file = rt.plan.instance_config(&i.name)?.priority;
                Some((
                    i.name.clone(),
                    self.operator.override_of(&i.name).unwrap_or(file),
                ))
            })
            .collect()
    }

    /// Refuses a change that would leave the members of `group` with different
    /// priorities: `instance` would run at `priority`.
    fn check_one_member(
        &self,
        group: &str,
        instance: &str,
        priority: u8,
        command: &str,
    ) -> Result<(), ReplyError> {
        let bases = self.member_bases(group);
        if bases.len() < 2 {
            return Ok(());
        }
        let others: Vec<String> = bases
            .iter()
            .filter(|(i, b)| i != instance && *b != priority)
            .map(|(i, b)| format!("`{i}` at {b}"))
            .collect();
        if others.is_empty() {
            return Ok(());
        }
        let members: Vec<&str> = bases.iter().map(|(i, _)| i.as_str()).collect();
        Err(ReplyError::failed(format!(
            "instance `{instance}` is one member of sync group `{group}` ({}), which moves as one: it is MASTER only where every member wins its election, so `{instance}` at {priority} with {} could not take the group over if higher, and would take all of it down if lower; use the group instead: vrrpctl {command} --group {group}",
            members.join(", "),
            others.join(", "),
        )))
    }

    /// (group, instance) pairs a priority command names.
    fn priority_targets(
        &self,
        instance: Option<&str>,
        group: Option<&str>,
    ) -> Result<Vec<(String, String)>, ReplyError> {
        match (instance, group) {
            (Some(i), _) => {
                let g = self
                    .by_instance
                    .get(i)
                    .cloned()
                    .ok_or_else(|| ReplyError::failed(format!("no instance {i:?}")))?;
                Ok(vec![(g, i.to_owned())])
            }
            (None, g) => Ok(self
                .target_groups(g)?
                .into_iter()
                .flat_map(|g| self.members(&g).into_iter().map(move |i| (g.clone(), i)))
                .collect()),
        }
    }

    /// One instance's priorities after a priority command.
    fn priority_line(&self, group: &str, instance: &str) -> InstancePriority {
        let rt = self.groups.get(group);
        let s = rt.and_then(|rt| rt.router.instance(instance));
        InstancePriority {
            instance: instance.to_owned(),
            group: group.to_owned(),
            priority: s.as_ref().map(|s| s.priority),
            effective_priority: s.as_ref().map(|s| s.effective_priority),
            configured_priority: rt
                .and_then(|rt| rt.plan.instance_config(instance))
                .map(|c| c.priority),
            state: s.as_ref().map(|s| vrrp_state(s.state)),
            priority_override: self.override_status(instance),
        }
    }

    /// `priority.set`: overrides the file's priority until `priority.clear`.
    pub(crate) async fn set_priority(
        &mut self,
        p: PriorityParams,
    ) -> Result<PriorityReply, ReplyError> {
        let targets = self.priority_targets(p.instance.as_deref(), p.group.as_deref())?;
        // Refused as a whole, before anything changes.
        for g in targets.iter().map(|(g, _)| g).collect::<BTreeSet<_>>() {
            if let Some(problem) = self.view.priority_problem(g, p.priority) {
                return Err(ReplyError::failed(format!(
                    "priority {} refused for group `{g}`: {problem}",
                    p.priority
                )));
            }
        }
        if let (Some(i), Some((g, _))) = (&p.instance, targets.first()) {
            self.check_one_member(g, i, p.priority, &format!("priority set {}", p.priority))?;
        }
        let now = unix_ms();
        for (_, instance) in &targets {
            self.operator.priority_overrides.insert(
                instance.clone(),
                PriorityOverride {
                    priority: p.priority,
                    since_unix_ms: now,
                },
            );
        }
        let written = self.save_operator_state();
        let mut out = Vec::new();
        for (g, instance) in targets {
            // The new base; tracking deltas (track.set) still apply on top.
            let priority = self.wanted_priority(&g, &instance).unwrap_or(p.priority);
            self.feed(
                &g,
                Input::SetPriority {
                    instance: instance.clone(),
                    priority,
                },
                Instant::now(),
            )
            .await;
            tracing::info!(group = %g, instance = %instance, priority = p.priority, "priority override set");
            out.push(self.priority_line(&g, &instance));
        }
        Ok(PriorityReply {
            instances: out,
            persisted: persisted(written),
        })
    }

    /// `priority.clear`: the file's priority applies again.
    pub(crate) async fn clear_priority(
        &mut self,
        p: PriorityClearParams,
    ) -> Result<PriorityClearReply, ReplyError> {
        let targets = if p.all {
            self.priority_targets(None, None)?
        } else {
            self.priority_targets(p.instance.as_deref(), p.group.as_deref())?
        };
        if let (Some(i), Some((g, _))) = (&p.instance, targets.first()) {
            let file = self
                .groups
                .get(g)
                .and_then(|rt| rt.plan.instance_config(i))
                .map(|c| c.priority);
            if let Some(file) = file {
                self.check_one_member(g, i, file, "priority clear")?;
            }
        }
        let mut cleared = Vec::new();
        for (g, instance) in &targets {
            if self.operator.priority_overrides.remove(instance).is_some() {
                cleared.push((g.clone(), instance.clone()));
            }
        }
        let written = if cleared.is_empty() {
            Ok(())
        } else {
            self.save_operator_state()
        };
        let groups: BTreeSet<String> = cleared.iter().map(|(g, _)| g.clone()).collect();
        for g in &groups {
            self.apply_tracking(g).await;
        }
        let out: Vec<InstancePriority> = cleared
            .iter()
            .map(|(g, i)| {
                tracing::info!(group = %g, instance = %i, "priority override cleared");
                self.priority_line(g, i)
            })
            .collect();
        Ok(PriorityClearReply {
            cleared: out,
            persisted: persisted(written),
        })
    }

    /// `priority.list`: overrides, maintenance and the state file.
    pub(crate) fn list_overrides(&self) -> PriorityListReply {
        let overrides = self
            .operator
            .priority_overrides
            .keys()
            .filter_map(|i| Some(self.priority_line(self.by_instance.get(i)?, i)))
            .collect();
        let maintenance = self
            .operator
            .maintenance
            .keys()
            .filter_map(|g| {
                Some(GroupMaintenance {
                    group: g.clone(),
                    maintenance: self.maintenance_status(g)?,
                })
            })
            .collect();
        PriorityListReply {
            overrides,
            maintenance,
            state_file: self.state_file_status(),
        }
    }

    /// `status` of a group's maintenance: since when and why.
    pub(crate) fn maintenance_status(&self, group: &str) -> Option<MaintenanceStatus> {
        self.operator
            .maintenance
            .get(group)
            .map(|m| MaintenanceStatus {
                since_unix_ms: m.since_unix_ms,
                ago_s: unix_ms().saturating_sub(m.since_unix_ms) / 1000,
                reason: m.reason.clone(),
            })
    }

    /// `status` of an instance's priority override.
    pub(crate) fn override_status(&self, instance: &str) -> Option<PriorityOverrideStatus> {
        self.operator
            .priority_overrides
            .get(instance)
            .map(|o| PriorityOverrideStatus {
                priority: o.priority,
                since_unix_ms: o.since_unix_ms,
            })
    }

    /// `status` of the state file.
    pub(crate) fn state_file_status(&self) -> StateFileStatus {
        let f = &self.state_file;
        StateFileStatus {
            path: f.path.to_string_lossy().into_owned(),
            load_error: f.load_error.clone(),
            ignored: f.ignored.clone(),
            writes: f.writes,
            write_errors: f.write_errors,
            last_write_error: f.last_write_error.clone(),
        }
    }
}
