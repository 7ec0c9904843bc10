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
//! - a hold lasts at most `[sync] preempt_wait_ms` of time in which it keeps this
//!   node from preempting: a BACKUP instance hearing adverts of a lower priority
//!   than its own (a MASTER whose peer died, a node in FAULT, or a backup whose
//!   master outranks it do not use it up); then the node preempts anyway, says so
//!   and counts it (`vrrp_preempt_hold_expired_total`), until the reasons clear or
//!   no instance would preempt any more, and a new hold may begin.
//!
//! Only preemption waits ([`vrrp::event::Input::PreemptHold`]): a backup whose master
//! goes silent or releases takes over at once, held or not.

use std::collections::BTreeMap;
use std::time::Duration;

use ctl::contract::vrrpd::PreemptHoldStatus;
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
    /// When the current hold began (Unix ms), while there are reasons and a member
    /// would preempt.
    since_unix_ms: Option<u64>,
    /// The current hold ran out: preemption goes ahead until the reasons clear.
    expired: bool,
    /// What the state machines were last told.
    applied: bool,
    /// Held, while an instance would preempt: the hold is what keeps it BACKUP.
    effective: bool,
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
    pub(crate) fn hold_at_startup(&mut self) {
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
        self.refresh_hold();
    }

    /// Sets `source`'s reason to hold (None: it does not hold) and tells the state
    /// machines if that changes whether preemption is held.
    pub(crate) fn set_preempt_hold(&mut self, source: &str, reason: Option<String>) {
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
        self.refresh_hold();
    }

    /// After a reload: a hold that the new `[sync]` no longer allows ends.
    pub(crate) fn reload_hold(&mut self) {
        if self.preempt_wait().is_none() {
            self.hold.reasons.clear();
        }
        self.refresh_hold();
    }

    /// Whether a BACKUP member hears a lower-priority master, so would preempt now
    /// but for a hold.
    fn would_preempt(&self) -> bool {
        self.groups.values().any(|rt| rt.router.outranks_master())
    }

    /// Starts or stops the hold's clock and tells every group's state machine when
    /// the hold changes. Cheap; called after every input a group handles.
    pub(crate) fn refresh_hold(&mut self) {
        let preempting = self.would_preempt();
        if self.hold.reasons.is_empty() || !preempting {
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
        let effective = wanted && preempting;
        if effective != self.hold.effective {
            self.hold.effective = effective;
            self.telemetry.preempt_hold(effective);
            if effective {
                tracing::info!(reasons = %ctl::logging::pairs(&self.hold.reasons), wait_ms = self.view.sync.preempt_wait_ms, "preemption held back until lbd has the peer's connection state");
            } else if preempting && !self.hold.expired {
                tracing::info!("preemption no longer held back");
            }
        }
        if wanted == self.hold.applied {
            return;
        }
        self.hold.applied = wanted;
        // The hold only flips a flag in each instance: no actions come back.
        let now = self.clock.now();
        for rt in self.groups.values_mut() {
            rt.router
                .handle(Event::new(now, Input::PreemptHold { hold: wanted }));
        }
    }

    /// `[sync] preempt_wait_ms` ran out with the hold still wanted.
    pub(crate) fn preempt_hold_expired(&mut self) {
        if self.hold.reasons.is_empty() || !self.would_preempt() {
            return;
        }
        self.hold.expired = true;
        self.hold.expirations += 1;
        self.telemetry.preempt_hold_expired();
        tracing::warn!(reasons = %ctl::logging::pairs(&self.hold.reasons), waited_ms = self.view.sync.preempt_wait_ms, "preemption hold ran out: this node may preempt without the peer's complete connection state, and connections the peer carries may be reset");
        self.refresh_hold();
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

    /// The hold for `status`: `held` while it keeps a BACKUP group from preempting;
    /// `reasons` as the sources last said (they may stand while no group is BACKUP).
    pub(crate) fn hold_status(&self) -> PreemptHoldStatus {
        PreemptHoldStatus {
            held: self.hold.effective,
            reasons: self.hold.reasons.clone(),
            since_unix_ms: self.hold.since_unix_ms,
            expired: self.hold.expired,
            expirations: self.hold.expirations,
            wait_ms: self.preempt_wait().map_or(0, |d| d.as_millis() as u64),
        }
    }
}
