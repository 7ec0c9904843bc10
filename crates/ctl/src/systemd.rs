//! The systemd notify protocol as both daemons speak it under `Type=notify`:
//! `READY=1` once the daemon does its job (vrrpd: every group's first state decided;
//! lbd: the first dataplane apply done), `STATUS=` lines an operator sees in
//! `systemctl status`, `RELOADING=1` / `READY=1` around a reload, `STOPPING=1`, and
//! `WATCHDOG=1` from the daemon's event loop when the unit sets `WatchdogSec=`.
//!
//! Without `NOTIFY_SOCKET` (started by hand, in a test lab) every call does nothing.
//! A failed send is logged once and never stops the daemon: the service matters more
//! than its supervisor's view of it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sd_notify::NotifyState;

/// What the daemon has told the service manager, so that repeated states are not
/// sent again.
#[derive(Debug, Default)]
pub struct Notifier {
    ready: bool,
    status: String,
    send_failed: AtomicBool,
}

impl Notifier {
    /// A notifier for this process (sends only if `NOTIFY_SOCKET` is set).
    pub fn new() -> Notifier {
        Notifier::default()
    }

    /// Whether `READY=1` was sent.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// `READY=1` with `status`, once; later calls only update the status.
    pub fn ready(&mut self, status: &str) {
        if self.ready {
            self.status(status);
            return;
        }
        self.ready = true;
        self.status = status.to_owned();
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
        tracing::debug!(status, "systemd: READY=1");
    }

    /// `STATUS=` when it changed.
    pub fn status(&mut self, status: &str) {
        if self.status == status {
            return;
        }
        self.status = status.to_owned();
        self.send(&[NotifyState::Status(status)]);
    }

    /// `RELOADING=1` (with the monotonic time systemd's `Type=notify-reload` wants)
    /// before a reload starts; nothing before the daemon is ready.
    pub fn reloading(&mut self) {
        if !self.ready {
            return;
        }
        let status = "reloading the configuration";
        let mut states = vec![NotifyState::Reloading, NotifyState::Status(status)];
        if let Ok(now) = NotifyState::monotonic_usec_now() {
            states.push(now);
        }
        self.send(&states);
        self.status = status.to_owned();
    }

    /// `READY=1` after a reload, whatever its outcome (a refused file leaves the
    /// daemon running its previous configuration): `STATUS=` is `status`, after
    /// `reload refused, running the previous configuration; ` unless `accepted`.
    /// Before the daemon is ready, only the status.
    pub fn reloaded(&mut self, accepted: bool, status: &str) {
        let status = if accepted {
            status.to_owned()
        } else {
            format!("reload refused, running the previous configuration; {status}")
        };
        if !self.ready {
            self.status(&status);
            return;
        }
        self.send(&[NotifyState::Ready, NotifyState::Status(&status)]);
        self.status = status;
    }

    /// `STOPPING=1` when shutdown starts.
    pub fn stopping(&mut self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    /// The watchdog for this process: pings at half of `WATCHDOG_USEC`, or never
    /// when the unit sets no `WatchdogSec=`.
    pub fn watchdog(&self) -> Watchdog {
        let interval = watchdog_usec(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        )
        .map(|usec| Duration::from_micros(usec / 2).max(Duration::from_millis(10)));
        if let Some(every) = interval {
            tracing::info!(
                every_ms = u64::try_from(every.as_millis()).unwrap_or(u64::MAX),
                "systemd watchdog enabled: the event loop pings it"
            );
        }
        Watchdog {
            timer: interval.map(|every| {
                let mut timer = tokio::time::interval(every);
                timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                timer
            }),
        }
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        if let Err(error) = sd_notify::notify(false, states) {
            if !self.send_failed.swap(true, Ordering::Relaxed) {
                tracing::warn!(%error, "cannot notify systemd (NOTIFY_SOCKET); the service runs on (logged once)");
            }
        }
    }
}

/// `WATCHDOG_USEC` if the watchdog is meant for process `pid`: `WATCHDOG_PID`
/// unset or naming it (as sd_watchdog_enabled(3) reads them).
fn watchdog_usec(usec: Option<&str>, for_pid: Option<&str>, pid: u32) -> Option<u64> {
    let usec = usec?.trim().parse::<u64>().ok().filter(|u| *u > 0)?;
    match for_pid.map(|p| p.trim().parse::<u32>()) {
        None => Some(usec),
        Some(Ok(p)) if p == pid => Some(usec),
        Some(_) => None,
    }
}

/// The systemd watchdog, pinged by the daemon's event loop: `tick` is one branch of
/// the loop's `select!`, so a loop stuck in a handler stops the pings and systemd
/// restarts the daemon after `WatchdogSec=`.
#[derive(Debug)]
pub struct Watchdog {
    timer: Option<tokio::time::Interval>,
}

impl Watchdog {
    /// Waits for the next ping time and sends `WATCHDOG=1`; never completes when
    /// the watchdog is off.
    pub async fn tick(&mut self) {
        match &mut self.timer {
            Some(timer) => {
                timer.tick().await;
                if let Err(error) = sd_notify::notify(false, &[NotifyState::Watchdog]) {
                    tracing::debug!(%error, "systemd watchdog ping failed");
                }
            }
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_is_for_this_process_only() {
        assert_eq!(watchdog_usec(Some("10000000"), None, 7), Some(10_000_000));
        assert_eq!(
            watchdog_usec(Some("10000000"), Some("7"), 7),
            Some(10_000_000)
        );
        assert_eq!(watchdog_usec(Some("10000000"), Some("8"), 7), None);
        assert_eq!(watchdog_usec(Some("0"), None, 7), None);
        assert_eq!(watchdog_usec(Some("x"), None, 7), None);
        assert_eq!(watchdog_usec(None, Some("7"), 7), None);
    }
}
