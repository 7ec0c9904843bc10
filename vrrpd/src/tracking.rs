//! Priority tracking asked for by other daemons (`track.set`).
//!
//! lbd reports, per service with a quorum, how much the quorum's state should
//! change the priority of the sync group holding the service's VIP; the member
//! that reaches more servers then wins the election. Rules:
//! - a source (such as `lbd`) sends its complete list each time, which replaces
//!   its previous one: a restarted or reloaded source leaves nothing stale, and
//!   resending the same list changes nothing;
//! - a member's priority is `base + sum of its group's deltas`, clamped to
//!   1..=254 while the sum is not 0 (a tracked node is never the address owner);
//!   `base` is the file's priority, or the one `priority.set` gave (kept until
//!   `priority.clear`, across reloads and restarts: [`crate::overrides`]);
//! - the result goes to the state machine as `SetPriority`: a MASTER announces it
//!   in an advert at once, and preemption (or its absence) decides the rest, as
//!   for any priority change. Reloads and rebuilt groups get the same priority.

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
            .values()
            .flatten()
            .filter(|t| t.group == group)
            .map(|t| i32::from(t.weight_delta))
            .sum()
    }

    /// The priority member `instance` of `group` should run with now.
    pub(crate) fn wanted_priority(&self, group: &str, instance: &str) -> Option<u8> {
        let file = self
            .groups
            .get(group)?
            .plan
            .instance_config(instance)?
            .priority;
        let base = self.operator.override_of(instance).unwrap_or(file);
        let delta = self.group_delta(group);
        if delta == 0 {
            return Some(base);
        }
        let p = (i32::from(base) + delta).clamp(1, 254);
        Some(u8::try_from(p).unwrap_or(254))
    }

    /// `SetPriority` inputs for the members of `group` whose priority differs
    /// from the wanted one.
    pub(crate) fn tracking_inputs(&self, group: &str) -> Vec<Input> {
        let Some(rt) = self.groups.get(group) else {
            return Vec::new();
        };
        rt.router
            .instances()
            .into_iter()
            .filter_map(|s| {
                let want = self.wanted_priority(group, &s.name)?;
                (want != s.priority).then_some(Input::SetPriority {
                    instance: s.name,
                    priority: want,
                })
            })
            .collect()
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

    /// Brings every member of `group` to its wanted priority.
    pub(crate) async fn apply_tracking(&mut self, group: &str) {
        for input in self.tracking_inputs(group) {
            if let Input::SetPriority { instance, priority } = &input {
                tracing::info!(group, instance = %instance, priority, delta = self.group_delta(group), "tracked priority");
            }
            self.feed(group, input, Instant::now()).await;
        }
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
            self.apply_tracking(&g).await;
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
