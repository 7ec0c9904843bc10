//! Following vrrpd: the VRRP role of each sync group on this node.
//!
//! Two paths, both to the daemon loop as [`RoleUpdate`]s: `group.state` events from
//! a [`ctl::ResumingSubscription`] (prompt), and vrrpd's `status` every
//! [`POLL`] (whether vrrpd is there at all, and the truth after missed events).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use ctl::contract::vrrpd::{GroupStateEvent, VrrpdStatus};
use ctl::contract::VrrpState;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::mpsc;

/// How often vrrpd's status is read.
pub const POLL: Duration = Duration::from_secs(2);
/// How long one status request may take.
const STATUS_TIMEOUT: Duration = Duration::from_secs(1);

/// What the vrrpd watcher tells the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleUpdate {
    /// vrrpd answered: every group's state now.
    Snapshot(BTreeMap<String, VrrpState>),
    /// A group (instance `None`) or instance changed state.
    Changed {
        /// Sync group.
        group: String,
        /// Instance, `None` for the group as a whole.
        instance: Option<String>,
        /// State before.
        from: VrrpState,
        /// State now.
        to: VrrpState,
        /// vrrpd's reason.
        reason: String,
    },
    /// vrrpd cannot be reached.
    Unreachable(String),
    /// The fingerprint of the configuration vrrpd runs (from its status).
    Fingerprint(String),
}

/// Roles as lbd knows them, and whether vrrpd is reachable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roles {
    /// Group -> state; kept while vrrpd is away.
    pub groups: BTreeMap<String, VrrpState>,
    /// Whether the last contact succeeded.
    pub connected: bool,
    /// Why the last contact failed.
    pub error: Option<String>,
    /// Whether the absence was already logged (once per outage).
    warned: bool,
    /// The fingerprint of the configuration vrrpd runs, once known.
    pub vrrpd_fingerprint: Option<String>,
}

impl Roles {
    /// Applies an update; returns group role changes `(group, from, to)` to log.
    pub fn update(&mut self, u: RoleUpdate) -> Vec<(String, Option<VrrpState>, VrrpState)> {
        let mut changes = Vec::new();
        match u {
            RoleUpdate::Snapshot(groups) => {
                if !self.connected {
                    tracing::info!(groups = %ctl::logging::pairs(&groups), "vrrpd reachable");
                }
                self.connected = true;
                self.error = None;
                self.warned = false;
                for (g, s) in groups {
                    let old = self.groups.insert(g.clone(), s);
                    if old != Some(s) {
                        changes.push((g, old, s));
                    }
                }
            }
            RoleUpdate::Changed {
                group,
                instance: None,
                to,
                ..
            } => {
                self.connected = true;
                let old = self.groups.insert(group.clone(), to);
                if old != Some(to) {
                    changes.push((group, old, to));
                }
            }
            RoleUpdate::Changed { .. } => self.connected = true,
            RoleUpdate::Fingerprint(f) => self.vrrpd_fingerprint = Some(f),
            RoleUpdate::Unreachable(why) => {
                if !self.warned {
                    tracing::warn!(error = %why, last_roles = %ctl::logging::pairs(&self.groups), "vrrpd unreachable: keeping the dataplane and the last known roles");
                    self.warned = true;
                }
                self.connected = false;
                self.error = Some(why);
            }
        }
        changes
    }
}

/// Group states from a vrrpd `status` reply (a group not started yet: `UNKNOWN`).
pub fn groups_of_status(status: &VrrpdStatus) -> BTreeMap<String, VrrpState> {
    status
        .groups
        .iter()
        .map(|g| (g.name.clone(), g.state.unwrap_or(VrrpState::Unknown)))
        .collect()
}

/// A `group.state` event's data as an update (`None`: not an event of the contract).
pub fn update_of_event(data: &Value) -> Option<RoleUpdate> {
    let e = GroupStateEvent::deserialize(data).ok()?;
    Some(RoleUpdate::Changed {
        group: e.group,
        instance: e.instance,
        from: e.from,
        to: e.to,
        reason: e.reason,
    })
}

/// vrrpd's group states and the fingerprint of the configuration it runs.
async fn status(socket: &PathBuf) -> Result<(BTreeMap<String, VrrpState>, Option<String>), String> {
    let exchange = async {
        let client = ctl::Client::connect(socket).await?;
        client
            .call_with_timeout::<_, VrrpdStatus>(ctl::methods::STATUS, &(), STATUS_TIMEOUT)
            .await
    };
    match tokio::time::timeout(STATUS_TIMEOUT, exchange).await {
        Ok(Ok(v)) => Ok((groups_of_status(&v), v.config_fingerprint)),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "{}: no status within {} ms",
            socket.display(),
            STATUS_TIMEOUT.as_millis()
        )),
    }
}

/// Follows vrrpd at `socket` until `updates` is closed.
pub async fn follow(socket: PathBuf, updates: mpsc::UnboundedSender<RoleUpdate>) {
    let new_sub = || {
        ctl::ResumingSubscription::new(&socket, vec![ctl::topics::GROUP_STATE.to_owned()], None)
            .with_retry(Duration::from_millis(200), POLL)
            .with_timeout(STATUS_TIMEOUT)
    };
    let mut sub = new_sub();
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let notice = tokio::select! {
            notice = sub.next() => Some(notice),
            _ = poll.tick() => None,
        };
        let update = match notice {
            Some(Ok(ctl::Notice::Event(e))) => match update_of_event(&e.data) {
                Some(u) => u,
                None => continue,
            },
            // Missed events: the status is the truth.
            Some(Ok(ctl::Notice::Gap(_))) | None => match status(&socket).await {
                Ok((groups, fingerprint)) => {
                    if let Some(f) = fingerprint {
                        if updates.send(RoleUpdate::Fingerprint(f)).is_err() {
                            return;
                        }
                    }
                    RoleUpdate::Snapshot(groups)
                }
                Err(e) => RoleUpdate::Unreachable(e),
            },
            Some(Err(e)) => {
                // Permanent (refused subscription, protocol): start over later.
                tracing::debug!(error = %e, "vrrpd subscription failed");
                tokio::time::sleep(POLL).await;
                sub = new_sub();
                RoleUpdate::Unreachable(e.to_string())
            }
        };
        if updates.send(update).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_and_snapshots_track_group_roles() {
        let mut r = Roles::default();
        let ch = r.update(RoleUpdate::Snapshot(
            [("edge".to_owned(), VrrpState::Backup)].into(),
        ));
        assert_eq!(ch, vec![("edge".to_owned(), None, VrrpState::Backup)]);
        assert!(r.connected);
        let ev = update_of_event(&json!({"group": "edge", "instance": "public", "from": "BACKUP", "to": "MASTER", "reason": "x", "time": 1})).unwrap();
        assert!(
            r.update(ev).is_empty(),
            "instance changes are not group roles"
        );
        let ev = update_of_event(&json!({"group": "edge", "instance": null, "from": "BACKUP", "to": "MASTER", "reason": "x", "time": 1, "newer_field": 3})).unwrap();
        assert_eq!(
            r.update(ev),
            vec![(
                "edge".to_owned(),
                Some(VrrpState::Backup),
                VrrpState::Master
            )]
        );
        r.update(RoleUpdate::Unreachable("gone".into()));
        assert!(!r.connected);
        assert_eq!(
            r.groups["edge"],
            VrrpState::Master,
            "the last roles are kept"
        );
        assert_eq!(r.error.as_deref(), Some("gone"));
    }

    #[test]
    fn status_reply_groups() {
        let v: VrrpdStatus = serde_json::from_value(json!({
            "node": "lb1",
            "groups": [{"name": "edge", "state": "MASTER"}, {"name": "b", "state": null}],
        }))
        .unwrap();
        let g = groups_of_status(&v);
        assert_eq!(g["edge"], VrrpState::Master);
        assert_eq!(g["b"], VrrpState::Unknown);
    }
}
