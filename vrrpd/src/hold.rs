//! Preemption held back while lbd lacks the peer's connection state: vrrpd feeds
//! [`vrrp::preempt_hold::PreemptHold`] (which decides: reasons, the wait, when it
//! runs out) and carries out what it says.
//!
//! - lbd says with every `track.set` whether it holds (`preempt_hold`: the reason,
//!   or null); it holds until its stream from the peer has delivered a complete dump;
//! - at start-up, with `[sync]` enabled and lbd's socket present, vrrpd holds on its
//!   own until lbd's first word (lbd may start later, or be slower to connect);
//! - a hold lasts at most `[sync] preempt_wait_ms` of time in which it keeps this
//!   node from preempting (see the core's module); then the node preempts anyway,
//!   says so and counts it (`vrrp_preempt_hold_expired_total`).
//!
//! The hold is the node's: one over every group's router.

use std::time::Duration;

use ctl::contract::vrrpd::PreemptHoldStatus;
use vrrp::event::{Event, Input};
use vrrp::preempt_hold::{HoldAction, HoldInput};

use crate::daemon::{unix_ms, Daemon};
use crate::timers::TimerKey;

impl Daemon {
    /// `[sync] preempt_wait_ms`, when sync is enabled and it is not 0.
    fn preempt_wait(&self) -> Option<Duration> {
        let ms = self.view.sync.preempt_wait_ms;
        (self.view.sync.enabled && ms > 0).then(|| Duration::from_millis(u64::from(ms)))
    }

    /// Feeds the hold and carries out what it says.
    fn hold_input(&mut self, input: HoldInput) {
        let now = self.clock.now();
        for action in self.hold.handle(now, input) {
            match action {
                HoldAction::ArmTimer { at } => self.timers.arm(TimerKey::PreemptHoldExpiry, at),
                HoldAction::CancelTimer => self.timers.cancel(&TimerKey::PreemptHoldExpiry),
                HoldAction::Apply { hold } => {
                    // The hold only flips a flag in each instance: no actions come back.
                    for rt in self.groups.values_mut() {
                        rt.router
                            .handle(Event::new(now, Input::PreemptHold { hold }));
                    }
                }
                HoldAction::Holding => {
                    self.telemetry.preempt_hold(true);
                    tracing::info!(reasons = %ctl::logging::pairs(&self.hold.status().reasons), wait_ms = self.view.sync.preempt_wait_ms, "preemption held back until lbd has the peer's connection state");
                }
                HoldAction::Released { withdrawn } => {
                    self.telemetry.preempt_hold(false);
                    if withdrawn {
                        tracing::info!("preemption no longer held back");
                    }
                    self.drill_hold_ended();
                }
                HoldAction::Expired => {
                    self.telemetry.preempt_hold_expired();
                    self.drill_hold_ended();
                    tracing::warn!(reasons = %ctl::logging::pairs(&self.hold.status().reasons), waited_ms = self.view.sync.preempt_wait_ms, "preemption hold ran out: this node may preempt without the peer's complete connection state, and connections the peer carries may be reset");
                }
            }
        }
    }

    /// Before the groups start: holds until lbd reports, if lbd is there to report.
    pub(crate) fn hold_at_startup(&mut self) {
        let wait = self.preempt_wait();
        self.hold_input(HoldInput::Wait(wait));
        if wait.is_none() {
            return;
        }
        let socket = self.view.control.lbd_socket.clone();
        if std::fs::symlink_metadata(&socket).is_err() {
            tracing::info!(socket = %socket.display(), "no lbd socket: preemption is not held back for connection-state sync");
            return;
        }
        self.hold_input(HoldInput::Startup {
            reason: "waiting for lbd to report its connection-state sync".to_owned(),
        });
    }

    /// Sets `source`'s reason to hold (None: it does not hold).
    pub(crate) fn set_preempt_hold(&mut self, source: &str, reason: Option<String>) {
        let before = self.hold.reason(source).map(str::to_owned);
        self.hold_input(HoldInput::Reason {
            source: source.to_owned(),
            reason,
        });
        match (before, self.hold.reason(source)) {
            (before, Some(now)) if before.as_deref() != Some(now) => {
                tracing::info!(source, reason = %now, "preemption hold asked for")
            }
            (Some(_), None) => tracing::info!(source, "preemption hold withdrawn"),
            _ => {}
        }
    }

    /// After a reload: a hold that the new `[sync]` no longer allows ends.
    pub(crate) fn reload_hold(&mut self) {
        self.hold_input(HoldInput::Wait(self.preempt_wait()));
        self.refresh_hold();
    }

    /// Whether a BACKUP member hears a lower-priority master, so would preempt now
    /// but for a hold.
    fn would_preempt(&self) -> bool {
        self.groups.values().any(|rt| rt.router.outranks_master())
    }

    /// Tells the hold whether a member would preempt. Cheap; called after every
    /// input a group handles.
    pub(crate) fn refresh_hold(&mut self) {
        self.hold_input(HoldInput::Preempting(self.would_preempt()));
    }

    /// `[sync] preempt_wait_ms` ran out.
    pub(crate) fn preempt_hold_expired(&mut self) {
        self.hold_input(HoldInput::TimerExpired);
    }

    /// A group about to start gets the hold as it stands (not running yet: no actions).
    pub(crate) fn prime_hold(&mut self, group: &str) {
        if !self.hold.applied() {
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
        let s = self.hold.status();
        let now = self.clock.now();
        let since_unix_ms = s.since.map(|since| {
            let ago = now.saturating_since(since).as_millis();
            unix_ms().saturating_sub(u64::try_from(ago).unwrap_or(u64::MAX))
        });
        PreemptHoldStatus {
            held: s.held,
            reasons: s.reasons,
            since_unix_ms,
            expired: s.expired,
            expirations: s.expirations,
            wait_ms: self.preempt_wait().map_or(0, |d| d.as_millis() as u64),
        }
    }
}
