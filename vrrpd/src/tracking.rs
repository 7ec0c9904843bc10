//! Priority tracking asked for by other daemons (`track.set`).
//!
//! lbd reports, per service with a quorum, how much the quorum's state should
//! change the priority of the sync group holding the service's VIP; the member
//! that reaches more servers then wins the election. Rules:
//! - a source (such as `lbd`) sends its complete list each time, which replaces
//!   its previous one: a restarted or reloaded source leaves nothing stale, and
//!   resending the same list changes nothing;
//! - each source's deltas for a group, summed, go to the group's state machine as
//!   `TrackPriority`: it runs every member at `base + sum of the deltas`, clamped
//!   to 1..=254 while the sum is not 0, announces a change at once when MASTER,
//!   and lets preemption decide the rest (`vrrp::event::Input::TrackPriority`);
//! - `base` is the file's priority, or the one `priority.set` gave (kept until
//!   `priority.clear`, across reloads and restarts: [`crate::overrides`]), given
//!   as `SetPriority`. Reloads and rebuilt groups get the same priority.

use std::collections::BTreeMap;

use ctl::contract::vrrpd::{GroupTracking, MemberPriority, TrackSetReply, TrackStatus};
use ctl::ReplyError;
use tokio::time::Instant;
use vrrp::event::{Event, Input};

use crate::control::{TrackEntry, TrackParams};
use crate::daemon::{vrrp_state, Daemon};

/// Sources and their entries, as vrrpd holds them.
pub(crate) type Tracks = BTreeMap<String, Vec<TrackEntry>>;

impl Daemon {
    /// Sum of every source's deltas for `group`.
    pub(crate) fn group_delta(&self, group: &str) -> i32 {
        self.tracks
            .keys()
            .map(|source| self.source_delta(source, group))
            .sum()
    }

    /// Sum of `source`'s deltas for `group` (0 for a source that sent none).
    fn source_delta(&self, source: &str, group: &str) -> i32 {
        self.tracks
            .get(source)
            .into_iter()
            .flatten()
            .filter(|t| t.group == group)
            .map(|t| i32::from(t.weight_delta))
            .sum()
    }

    /// The base priority of member `instance` of `group`: the override, else the
    /// file's. Tracking deltas apply on top, in the state machine.
    pub(crate) fn wanted_priority(&self, group: &str, instance: &str) -> Option<u8> {
        let file = self
            .groups
            .get(group)?
            .plan
            .instance_config(instance)?
            .priority;
        Some(self.operator.override_of(instance).unwrap_or(file))
    }

    /// The inputs that bring `group` to its base priorities and every source's
    /// deltas (the state machine ignores those that change nothing).
    pub(crate) fn tracking_inputs(&self, group: &str) -> Vec<Input> {
        let Some(rt) = self.groups.get(group) else {
            return Vec::new();
        };
        let mut inputs: Vec<Input> = rt
            .plan
            .router
            .instances
            .iter()
            .filter_map(|c| {
                Some(Input::SetPriority {
                    instance: c.name.clone(),
                    priority: self.wanted_priority(group, &c.name)?,
                })
            })
            .collect();
        inputs.extend(self.tracks.keys().map(|source| Input::TrackPriority {
            source: source.clone(),
            group: group.to_owned(),
            delta: self.source_delta(source, group),
        }));
        inputs
    }

    /// Before a (re)built group starts: its router begins at the wanted priority.
    pub(crate) fn prime_tracking(&mut self, group: &str) {
        let inputs = self.tracking_inputs(group);
        let now = self.clock.now();
        if let Some(rt) = self.groups.get_mut(group) {
            for input in inputs {
                // Not running yet: no actions come back.
                rt.router.handle(Event::new(now, input));
            }
        }
    }

    /// Feeds `inputs` to `group` and logs the members whose priority they changed.
    async fn feed_tracking(&mut self, group: &str, inputs: Vec<Input>) {
        let before = self.member_priorities(group);
        for input in inputs {
            self.feed(group, input, Instant::now()).await;
        }
        for (instance, priority) in self.member_priorities(group) {
            if before.get(&instance) != Some(&priority) {
                tracing::info!(group, instance = %instance, priority, delta = self.group_delta(group), "tracked priority");
            }
        }
    }

    fn member_priorities(&self, group: &str) -> BTreeMap<String, u8> {
        self.groups
            .get(group)
            .map(|rt| {
                rt.router
                    .instances()
                    .into_iter()
                    .map(|s| (s.name, s.priority))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Brings every member of `group` to its wanted priority.
    pub(crate) async fn apply_tracking(&mut self, group: &str) {
        let inputs = self.tracking_inputs(group);
        self.feed_tracking(group, inputs).await;
    }

    /// `track.set`: replaces the source's entries and applies the result.
    pub(crate) async fn set_tracks(&mut self, p: TrackParams) -> Result<TrackSetReply, ReplyError> {
        let unknown: Vec<&str> = p
            .tracks
            .iter()
            .map(|t| t.group.as_str())
            .filter(|g| !self.groups.contains_key(*g))
            .collect();
        if !unknown.is_empty() {
            return Err(ReplyError::failed(format!(
                "no sync group {:?}; groups: {}",
                unknown,
                self.groups.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        let before = self.tracks.get(&p.source).cloned().unwrap_or_default();
        if before != p.tracks {
            tracing::info!(source = %p.source, tracks = %ctl::logging::list(p.tracks.iter().map(|t| format!("{}: {} {}", t.group, t.name, t.weight_delta))), "track.set");
        }
        if p.tracks.is_empty() {
            self.tracks.remove(&p.source);
        } else {
            self.tracks.insert(p.source.clone(), p.tracks);
        }
        self.set_preempt_hold(&p.source, p.preempt_hold);
        let names: Vec<String> = self.groups.keys().cloned().collect();
        let mut out = Vec::new();
        for g in names {
            // This source's deltas only (0 withdraws them): the others stand.
            let input = Input::TrackPriority {
                source: p.source.clone(),
                group: g.clone(),
                delta: self.source_delta(&p.source, &g),
            };
            self.feed_tracking(&g, vec![input]).await;
            out.push(self.tracking_status(&g));
        }
        Ok(TrackSetReply {
            source: p.source,
            groups: out,
            preempt_hold: self.hold_status(),
        })
    }

    /// Tracking of one group for status replies.
    pub(crate) fn tracking_status(&self, group: &str) -> GroupTracking {
        let tracks: Vec<TrackStatus> = self
            .tracks
            .iter()
            .flat_map(|(source, list)| {
                list.iter()
                    .filter(|t| t.group == group)
                    .map(move |t| TrackStatus {
                        source: source.clone(),
                        name: t.name.clone(),
                        weight_delta: t.weight_delta,
                    })
            })
            .collect();
        let instances: Vec<MemberPriority> = self
            .groups
            .get(group)
            .map(|rt| {
                rt.router
                    .instances()
                    .into_iter()
                    .map(|s| MemberPriority {
                        instance: s.name,
                        priority: Some(s.priority),
                        effective_priority: Some(s.effective_priority),
                        state: Some(vrrp_state(s.state)),
                    })
                    .collect()
            })
            .unwrap_or_default();
        GroupTracking {
            group: group.to_owned(),
            delta: self.group_delta(group),
            tracks,
            instances,
        }
    }
}
