//! Preemption held back while the node lacks the peer's connection state: the
//! node-wide policy above the routers, without I/O.
//!
//! A node that comes back (start-up, a fault or maintenance cleared) with the higher
//! priority takes its groups over from the peer within a Master_Down_Interval. With
//! connection-state sync the peer's connections survive that only if this node has
//! received them first; so preemption waits, within limits:
//! - sources (lbd) give a reason to hold, or withdraw it ([`HoldInput::Reason`]);
//!   the node may hold on its own at start-up until the first source speaks
//!   ([`HoldInput::Startup`]);
//! - a hold lasts at most `wait` of time in which it keeps this node from
//!   preempting: while some BACKUP instance hears adverts of a lower priority than
//!   its own ([`HoldInput::Preempting`], from [`crate::router::Router::outranks_master`]
//!   of every router). A MASTER whose peer died, a node in FAULT, or a backup whose
//!   master outranks it do not use it up. Then the node preempts anyway
//!   ([`HoldAction::Expired`], counted) until the reasons clear or nothing would
//!   preempt any more, and a new hold may begin.
//!
//! Only preemption waits ([`crate::event::Input::PreemptHold`], which
//! [`HoldAction::Apply`] asks the caller to feed every router): a backup whose
//! master goes silent or releases takes over at once, held or not. Time comes in
//! with every input; the one timer goes out as [`HoldAction::ArmTimer`].

use std::collections::BTreeMap;
use std::time::Duration;

use crate::timer::{micros_opt, Time};

/// The source name of the node's own start-up hold.
pub const STARTUP_SOURCE: &str = "vrrpd";

/// One input to the hold, with the caller's current time.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum HoldInput {
    /// Hold on the node's own account ([`STARTUP_SOURCE`]) until a source speaks.
    Startup {
        /// Why.
        reason: String,
    },
    /// `source` holds for `reason`, or (None) does not. Any word from a source
    /// ends the start-up hold. Ignored while no wait is configured.
    Reason {
        /// Who asks (such as `lbd`).
        source: String,
        /// Why, or None.
        reason: Option<String>,
    },
    /// Whether some BACKUP instance of the node hears a lower-priority master and
    /// so would preempt now but for a hold. Given after every input a router handled.
    Preempting(bool),
    /// The timer of the last `ArmTimer` is due.
    TimerExpired,
    /// The longest hold, in microseconds; None (or 0): never hold, and every
    /// reason is dropped.
    Wait(#[serde(with = "micros_opt")] Option<Duration>),
}

/// One thing for the caller to do, in order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum HoldAction {
    /// Schedule `HoldInput::TimerExpired` at `at`.
    ArmTimer {
        /// When the hold runs out.
        at: Time,
    },
    /// Forget the timer.
    CancelTimer,
    /// Feed every router `Input::PreemptHold { hold }` (and start new ones so).
    Apply {
        /// Whether preemption is held back.
        hold: bool,
    },
    /// The hold now keeps a preempting BACKUP out of MASTER.
    Holding,
    /// The hold keeps nothing back any more. `withdrawn`: its reasons cleared while
    /// an instance would preempt (else nothing would preempt, or it ran out).
    Released {
        /// The reasons cleared.
        withdrawn: bool,
    },
    /// The wait ran out with the hold still wanted: preemption goes ahead without
    /// the peer's state, until the reasons clear or nothing would preempt.
    Expired,
}

/// A snapshot for status displays and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HoldStatus {
    /// The hold keeps a preempting BACKUP out of MASTER.
    pub held: bool,
    /// Reasons per source, as they last said (they may stand while nothing would
    /// preempt).
    pub reasons: BTreeMap<String, String>,
    /// When the current hold began.
    pub since: Option<Time>,
    /// The current hold ran out.
    pub expired: bool,
    /// Holds that ran out.
    pub expirations: u64,
    /// The longest hold, in microseconds.
    #[serde(with = "micros_opt")]
    pub wait: Option<Duration>,
    /// Routers are told to hold (the reasons stand and the hold has not run out).
    pub applied: bool,
}

/// The hold's state.
#[derive(Debug, Clone, Default)]
pub struct PreemptHold {
    wait: Option<Duration>,
    reasons: BTreeMap<String, String>,
    /// When the current hold began, while there are reasons and a member would preempt.
    since: Option<Time>,
    deadline: Option<Time>,
    expired: bool,
    /// What the routers were last told.
    applied: bool,
    /// Held, while an instance would preempt.
    effective: bool,
    preempting: bool,
    expirations: u64,
}

impl PreemptHold {
    /// A hold that holds nothing until given a wait and a reason.
    pub fn new(wait: Option<Duration>) -> Self {
        PreemptHold {
            wait: wait.filter(|w| !w.is_zero()),
            ..PreemptHold::default()
        }
    }

    /// Feeds one input at `now`; returns what to do, in order.
    pub fn handle(&mut self, now: Time, input: HoldInput) -> Vec<HoldAction> {
        let mut out = Vec::new();
        match input {
            HoldInput::Startup { reason } => {
                if self.wait.is_some() {
                    self.reasons.insert(STARTUP_SOURCE.to_owned(), reason);
                }
            }
            HoldInput::Reason { source, reason } => {
                self.reasons.remove(STARTUP_SOURCE);
                match reason {
                    Some(r) if self.wait.is_some() => {
                        self.reasons.insert(source, r);
                    }
                    _ => {
                        self.reasons.remove(&source);
                    }
                }
            }
            HoldInput::Preempting(p) => self.preempting = p,
            HoldInput::TimerExpired => {
                if self.deadline.is_none_or(|at| at > now) {
                    // Cancelled, re-armed or early: not this hold's end.
                    return out;
                }
                self.deadline = None;
                if self.reasons.is_empty() || !self.preempting {
                    return out;
                }
                self.expired = true;
                self.expirations += 1;
                out.push(HoldAction::Expired);
            }
            HoldInput::Wait(wait) => {
                self.wait = wait.filter(|w| !w.is_zero());
                if self.wait.is_none() {
                    self.reasons.clear();
                }
            }
        }
        self.refresh(now, &mut out);
        out
    }

    /// Starts or stops the hold's clock and says when the hold changes.
    fn refresh(&mut self, now: Time, out: &mut Vec<HoldAction>) {
        if self.reasons.is_empty() || !self.preempting {
            self.since = None;
            self.expired = false;
            if self.deadline.take().is_some() {
                out.push(HoldAction::CancelTimer);
            }
        } else if self.since.is_none() {
            self.since = Some(now);
            if let Some(wait) = self.wait {
                let at = now + wait;
                self.deadline = Some(at);
                out.push(HoldAction::ArmTimer { at });
            }
        }
        let wanted = !self.reasons.is_empty() && !self.expired;
        let effective = wanted && self.preempting;
        if effective != self.effective {
            self.effective = effective;
            out.push(if effective {
                HoldAction::Holding
            } else {
                HoldAction::Released {
                    withdrawn: self.preempting && !self.expired,
                }
            });
        }
        if wanted != self.applied {
            self.applied = wanted;
            out.push(HoldAction::Apply { hold: wanted });
        }
    }

    /// Whether routers are to hold preemption back (a router built later starts so).
    pub fn applied(&self) -> bool {
        self.applied
    }

    /// `source`'s reason, if it holds.
    pub fn reason(&self, source: &str) -> Option<&str> {
        self.reasons.get(source).map(String::as_str)
    }

    /// A snapshot.
    pub fn status(&self) -> HoldStatus {
        HoldStatus {
            held: self.effective,
            reasons: self.reasons.clone(),
            since: self.since,
            expired: self.expired,
            expirations: self.expirations,
            wait: self.wait,
            applied: self.applied,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(5);

    fn t(s: u64) -> Time {
        Time::from_micros(s * 1_000_000)
    }

    fn reason(r: Option<&str>) -> HoldInput {
        HoldInput::Reason {
            source: "lbd".into(),
            reason: r.map(str::to_owned),
        }
    }

    #[test]
    fn the_clock_runs_only_while_something_would_preempt() {
        let mut h = PreemptHold::new(Some(WAIT));
        assert_eq!(
            h.handle(t(0), reason(Some("no dump"))),
            vec![HoldAction::Apply { hold: true }]
        );
        assert_eq!(h.status().since, None);
        assert_eq!(
            h.handle(t(2), HoldInput::Preempting(true)),
            vec![HoldAction::ArmTimer { at: t(7) }, HoldAction::Holding]
        );
        assert_eq!(
            h.handle(t(3), HoldInput::Preempting(false)),
            vec![
                HoldAction::CancelTimer,
                HoldAction::Released { withdrawn: false }
            ]
        );
        // The timer that was cancelled is stale.
        assert_eq!(h.handle(t(7), HoldInput::TimerExpired), vec![]);
        assert!(h.applied());
    }

    #[test]
    fn a_hold_runs_out_then_a_new_one_begins_after_it_clears() {
        let mut h = PreemptHold::new(Some(WAIT));
        h.handle(t(0), HoldInput::Preempting(true));
        h.handle(t(0), reason(Some("no dump")));
        assert_eq!(
            h.handle(t(5), HoldInput::TimerExpired),
            vec![
                HoldAction::Expired,
                HoldAction::Released { withdrawn: false },
                HoldAction::Apply { hold: false }
            ]
        );
        assert_eq!(h.status().expirations, 1);
        // Nothing would preempt: the reason holds again, and the next preemption
        // gets a hold of its own.
        assert_eq!(
            h.handle(t(6), HoldInput::Preempting(false)),
            vec![HoldAction::Apply { hold: true }]
        );
        assert_eq!(
            h.handle(t(8), HoldInput::Preempting(true)),
            vec![HoldAction::ArmTimer { at: t(13) }, HoldAction::Holding]
        );
    }

    #[test]
    fn without_a_wait_nothing_holds() {
        let mut h = PreemptHold::new(None);
        h.handle(t(0), HoldInput::Preempting(true));
        assert_eq!(h.handle(t(0), reason(Some("no dump"))), vec![]);
        assert_eq!(
            h.handle(
                t(0),
                HoldInput::Startup {
                    reason: "waiting".into()
                }
            ),
            vec![]
        );
        let mut h = PreemptHold::new(Some(WAIT));
        h.handle(t(0), reason(Some("no dump")));
        assert_eq!(
            h.handle(t(1), HoldInput::Wait(None)),
            vec![HoldAction::Apply { hold: false }]
        );
        assert!(h.status().reasons.is_empty());
    }

    #[test]
    fn any_source_ends_the_startup_hold() {
        let mut h = PreemptHold::new(Some(WAIT));
        h.handle(t(0), HoldInput::Preempting(true));
        h.handle(
            t(0),
            HoldInput::Startup {
                reason: "waiting for lbd".into(),
            },
        );
        assert_eq!(h.reason(STARTUP_SOURCE), Some("waiting for lbd"));
        assert_eq!(
            h.handle(t(1), reason(None)),
            vec![
                HoldAction::CancelTimer,
                HoldAction::Released { withdrawn: true },
                HoldAction::Apply { hold: false }
            ]
        );
    }
}
