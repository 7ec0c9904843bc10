//! Preemption held back while lbd lacks the peer's connection state.
//!
//! A node that comes back (start-up, a fault or maintenance cleared) with the higher
//! priority takes its groups over from the peer within a Master_Down_Interval. With
//! connection-state sync the peer's connections survive that only if this node's
//! lbd has received them first; so preemption waits for it:
//! - lbd says with every `track.set` whether it holds (`preempt_hold`: the reason,
//!   or null); it holds until its stream from the peer has delivered a complete dump;
//! - at start-up, with `[sync]` enabled and lbd's socket present, vrrpd holds on its
//!   own until lbd's first word (lbd may start later, or be slower to connect);
//! - a hold lasts at most `[sync] preempt_wait_ms`; then the node preempts anyway,
//!   says so and counts it (`vrrp_preempt_hold_expired_total`), until the reasons
//!   clear and a new hold may begin.
//!
//! Only preemption waits ([`vrrp::event::Input::PreemptHold`]): a backup whose master
//! goes silent or releases takes over at once, held or not.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use vrrp::event::{Event, Input};

use crate::daemon::{unix_ms, Daemon};
use crate::timers::TimerKey;

/// The source name of vrrpd's own start-up hold.
pub(crate) const STARTUP: &str = "vrrpd";

/// The hold's state.
#[derive(Debug, Default)]
pub(crate) struct PreemptHold {
    /// Reason per source.
    reasons: BTreeMap<String, String>,
    /// When the current hold began (Unix ms), while there are reasons.
    since_unix_ms: Option<u64>,
    /// The current hold ran out: preemption goes ahead until the reasons clear.
    expired: bool,
    /// What the state machines were last told.
    applied: bool,
    /// Holds that ran out since start-up.
    expirations: u64,
}

impl Daemon {
    /// `[sync] preempt_wait_ms`, when sync is enabled and it is not 0.
    fn preempt_wait(&self) -> Option<Duration> {
        let ms = self.view.sync.preempt_wait_ms;
        (self.view.sync.enabled && ms > 0).then(|| Duration::from_millis(u64::from(ms)))
    }

    /// Before the groups start: holds until lbd reports, if lbd is there to report.
    pub(crate) async fn hold_at_startup(&mut self) {
        if self.preempt_wait().is_none() {
            return;
        }
        let socket = self.view.control.lbd_socket.clone();
        if std::fs::symlink_metadata(&socket).is_err() {
            tracing::info!(socket = %socket.display(), "no lbd socket: preemption is not held back for connection-state sync");
            return;
        }
        self.hold.reasons.insert(
            STARTUP.to_owned(),
            "waiting for lbd to report its connection-state sync".to_owned(),
        );
        self.apply_hold().await;
    }

    /// Sets `source`'s reason to hold (None: it does not hold) and tells the state
    /// machines if that changes whether preemption is held.
    pub(crate) async fn set_preempt_hold(&mut self, source: &str, reason: Option<String>) {
        // Any word from a source replaces vrrpd's own start-up hold.
        self.hold.reasons.remove(STARTUP);
        match reason {
            Some(r) if self.preempt_wait().is_some() => {
                if self.hold.reasons.get(source) != Some(&r) {
                    tracing::info!(source, reason = %r, "preemption hold asked for");
                }
                self.hold.reasons.insert(source.to_owned(), r);
            }
            _ => {
                if self.hold.reasons.remove(source).is_some() {
                    tracing::info!(source, "preemption hold withdrawn");
                }
            }
        }
        self.apply_hold().await;
    }

    /// After a reload: a hold that the new `[sync]` no longer allows ends.
    pub(crate) async fn reload_hold(&mut self) {
        if self.preempt_wait().is_none() {
            self.hold.reasons.clear();
        }
        self.apply_hold().await;
    }

    /// Starts or stops the hold's clock and tells every group when the hold changes.
    async fn apply_hold(&mut self) {
        if self.hold.reasons.is_empty() {
            self.hold.since_unix_ms = None;
            self.hold.expired = false;
            self.timers.cancel(&TimerKey::PreemptHoldExpiry);
        } else if self.hold.since_unix_ms.is_none() {
            self.hold.since_unix_ms = Some(unix_ms());
            if let Some(wait) = self.preempt_wait() {
                let at = self.clock.now() + wait;
                self.timers.arm(TimerKey::PreemptHoldExpiry, at);
            }
        }
        let wanted = !self.hold.reasons.is_empty() && !self.hold.expired;
        if wanted == self.hold.applied {
            return;
        }
        self.hold.applied = wanted;
        self.telemetry.preempt_hold(wanted);
        if wanted {
            tracing::info!(reasons = ?self.hold.reasons, wait_ms = self.view.sync.preempt_wait_ms, "preemption held back until lbd has the peer's connection state");
        } else if !self.hold.expired {
            tracing::info!("preemption no longer held back");
        }
        self.feed_all(Input::PreemptHold { hold: wanted }).await;
    }

    /// `[sync] preempt_wait_ms` ran out with the hold still wanted.
    pub(crate) async fn preempt_hold_expired(&mut self) {
        if self.hold.reasons.is_empty() {
            return;
        }
        self.hold.expired = true;
        self.hold.expirations += 1;
        self.telemetry.preempt_hold_expired();
        tracing::warn!(reasons = ?self.hold.reasons, waited_ms = self.view.sync.preempt_wait_ms, "preemption hold ran out: this node may preempt without the peer's complete connection state, and connections the peer carries may be reset");
        self.apply_hold().await;
    }

    /// A group about to start gets the hold as it stands (not running yet: no actions).
    pub(crate) fn prime_hold(&mut self, group: &str) {
        if !self.hold.applied {
            return;
        }
        let now = self.clock.now();
        if let Some(rt) = self.groups.get_mut(group) {
            rt.router
                .handle(Event::new(now, Input::PreemptHold { hold: true }));
        }
    }

    /// The hold for `status`.
    pub(crate) fn hold_status(&self) -> Value {
        json!({
            "held": self.hold.applied,
            "reasons": self.hold.reasons,
            "since_unix_ms": self.hold.since_unix_ms,
            "expired": self.hold.expired,
            "expirations": self.hold.expirations,
            "wait_ms": self.preempt_wait().map_or(0, |d| d.as_millis() as u64),
        })
    }
}
