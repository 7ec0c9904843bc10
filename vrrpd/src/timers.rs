//! The daemon's clock and its table of armed timers: the state machine's
//! (from `ArmTimer` / `CancelTimer`) and the daemon's own (GARP refresh,
//! drills). The event loop sleeps until the earliest deadline.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::Duration;

use nix::sys::time::TimeSpec;
use nix::sys::timerfd;
use nix::time::ClockId;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::time::Instant;
use vrrp::timer::{Time, TimerKind};

/// Monotonic time since the daemon started, as the state machine counts it.
/// Built on tokio's clock so that tests can pause and advance it.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    /// A clock whose epoch is now.
    pub fn start() -> Self {
        Clock {
            start: Instant::now(),
        }
    }

    /// The current time.
    pub fn now(&self) -> Time {
        self.time_of(Instant::now())
    }

    /// The time of `instant` (zero before the epoch).
    pub fn time_of(&self, instant: Instant) -> Time {
        let micros = instant.saturating_duration_since(self.start).as_micros();
        Time::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    /// The instant of `time`, for `sleep_until`.
    pub fn instant(&self, time: Time) -> Instant {
        // Far-future deadlines saturate rather than overflow Instant.
        let offset = Duration::from_micros(time.as_micros());
        self.start
            .checked_add(offset)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365))
    }
}

/// A sleep on a timerfd (CLOCK_MONOTONIC, absolute deadline). The event
/// loop waits on it rather than on tokio's timer, whose wheel rounds every
/// deadline up to its next 1 ms tick and then waits in whole milliseconds:
/// the Master_Down_Timer fired 1-2 ms late, which a takeover after a
/// priority-0 advert (Skew_Time) showed as extra failover time.
#[derive(Debug)]
pub struct PreciseSleep {
    fd: AsyncFd<Timerfd>,
}

/// nix's timerfd, for tokio's AsyncFd (which wants `AsRawFd`).
#[derive(Debug)]
struct Timerfd(timerfd::TimerFd);

impl AsRawFd for Timerfd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

impl PreciseSleep {
    /// A disarmed timerfd registered with the runtime.
    pub fn new() -> io::Result<Self> {
        let timer = timerfd::TimerFd::new(
            timerfd::ClockId::CLOCK_MONOTONIC,
            timerfd::TimerFlags::TFD_NONBLOCK | timerfd::TimerFlags::TFD_CLOEXEC,
        )?;
        // SAFETY: a TimerFd owns its descriptor, keeps it open until dropped and
        // always reports the same one; the AsyncFd owns the TimerFd.
        let fd = unsafe { AsyncFd::register_with_interest(Timerfd(timer), Interest::READABLE) }?;
        Ok(PreciseSleep { fd })
    }

    /// Returns at `at` (at once if it has passed).
    pub async fn until(&self, at: Instant) -> io::Result<()> {
        // std's Instant is CLOCK_MONOTONIC on Linux: the deadline is now's
        // reading plus what is left.
        let left = at
            .into_std()
            .saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        let now = nix::time::clock_gettime(ClockId::CLOCK_MONOTONIC)?;
        let deadline = now + TimeSpec::from_duration(left);
        // Re-arming also clears an expiry left by a sleep that was dropped before
        // it was read.
        self.fd.get_ref().0.set(
            timerfd::Expiration::OneShot(deadline),
            timerfd::TimerSetTimeFlags::TFD_TIMER_ABSTIME,
        )?;
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| fd.get_ref().0.wait().map_err(io::Error::from)) {
                Ok(result) => return result,
                // Readiness from an earlier, dropped sleep: wait again.
                Err(_would_block) => continue,
            }
        }
    }
}

/// A timer the daemon keeps.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimerKey {
    /// A state-machine timer of an instance.
    Router {
        /// Instance name.
        instance: String,
        /// Which timer.
        timer: TimerKind,
    },
    /// The periodic GARP / NA burst of a MASTER instance (`garp.refresh_s`).
    GarpRefresh {
        /// Instance name.
        instance: String,
    },
    /// The end of a `drill.fault` on a group.
    FaultDrillEnd {
        /// Group name.
        group: String,
    },
    /// The give-up time of the running `drill.failover`.
    FailoverDrillDeadline,
    /// The end of the longest a preemption may be held back (`[sync] preempt_wait_ms`).
    PreemptHoldExpiry,
    /// A MASTER instance has dropped no peer advert for a while: no longer two
    /// masters as far as it can see.
    DualMasterQuiet {
        /// Instance name.
        instance: String,
    },
}

/// Armed timers and their deadlines; at most one deadline per key.
#[derive(Debug, Default, Clone)]
pub struct TimerTable {
    deadlines: BTreeMap<TimerKey, Time>,
}

impl TimerTable {
    /// An empty table.
    pub fn new() -> Self {
        TimerTable::default()
    }

    /// Arms `key` at `at`, replacing an earlier deadline of the same key.
    pub fn arm(&mut self, key: TimerKey, at: Time) {
        self.deadlines.insert(key, at);
    }

    /// Forgets `key`.
    pub fn cancel(&mut self, key: &TimerKey) {
        self.deadlines.remove(key);
    }

    /// Forgets every timer of `instance`.
    pub fn cancel_instance(&mut self, instance: &str) {
        self.deadlines.retain(|k, _| match k {
            TimerKey::Router { instance: i, .. }
            | TimerKey::GarpRefresh { instance: i }
            | TimerKey::DualMasterQuiet { instance: i } => i != instance,
            _ => true,
        });
    }

    /// The deadline of `key`, if armed.
    pub fn deadline(&self, key: &TimerKey) -> Option<Time> {
        self.deadlines.get(key).copied()
    }

    /// The earliest deadline.
    pub fn earliest(&self) -> Option<Time> {
        self.deadlines.values().min().copied()
    }

    /// Removes and returns the timers due at `now`, earliest first.
    pub fn take_due(&mut self, now: Time) -> Vec<(TimerKey, Time)> {
        let mut due: Vec<(TimerKey, Time)> = self
            .deadlines
            .iter()
            .filter(|(_, &at)| at <= now)
            .map(|(k, &at)| (k.clone(), at))
            .collect();
        due.sort_by_key(|(_, at)| *at);
        for (k, _) in &due {
            self.deadlines.remove(k);
        }
        due
    }

    /// Number of armed timers.
    pub fn len(&self) -> usize {
        self.deadlines.len()
    }

    /// Whether no timer is armed.
    pub fn is_empty(&self) -> bool {
        self.deadlines.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(instance: &str, timer: TimerKind) -> TimerKey {
        TimerKey::Router {
            instance: instance.into(),
            timer,
        }
    }

    #[test]
    fn rearming_replaces_and_cancel_forgets() {
        let mut t = TimerTable::new();
        t.arm(router("a", TimerKind::MasterDown), Time::from_micros(500));
        t.arm(router("a", TimerKind::MasterDown), Time::from_micros(900));
        t.arm(
            router("b", TimerKind::Advertisement),
            Time::from_micros(700),
        );
        assert_eq!(t.len(), 2);
        assert_eq!(t.earliest(), Some(Time::from_micros(700)));
        t.cancel(&router("b", TimerKind::Advertisement));
        assert_eq!(t.earliest(), Some(Time::from_micros(900)));
        assert!(t.take_due(Time::from_micros(899)).is_empty());
        let due = t.take_due(Time::from_micros(900));
        assert_eq!(
            due,
            vec![(router("a", TimerKind::MasterDown), Time::from_micros(900))]
        );
        assert!(t.is_empty());
    }

    #[test]
    fn due_timers_come_earliest_first_and_instances_cancel_whole() {
        let mut t = TimerTable::new();
        t.arm(router("b", TimerKind::Advertisement), Time::from_micros(30));
        t.arm(router("a", TimerKind::Advertisement), Time::from_micros(20));
        t.arm(
            TimerKey::GarpRefresh {
                instance: "a".into(),
            },
            Time::from_micros(10),
        );
        t.arm(TimerKey::FailoverDrillDeadline, Time::from_micros(40));
        let order: Vec<TimerKey> = t
            .take_due(Time::from_micros(30))
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            order,
            vec![
                TimerKey::GarpRefresh {
                    instance: "a".into()
                },
                router("a", TimerKind::Advertisement),
                router("b", TimerKind::Advertisement),
            ]
        );
        t.arm(router("a", TimerKind::MasterDown), Time::from_micros(50));
        t.cancel_instance("a");
        assert_eq!(t.len(), 1);
        assert_eq!(
            t.deadline(&TimerKey::FailoverDrillDeadline),
            Some(Time::from_micros(40))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn sleeping_until_the_earliest_deadline_wakes_exactly_then() {
        let clock = Clock::start();
        let mut t = TimerTable::new();
        // A deadline on a whole millisecond (tokio's timer resolution).
        t.arm(
            router("a", TimerKind::MasterDown),
            clock.now() + Duration::from_micros(3_600_000),
        );
        t.arm(
            router("b", TimerKind::Advertisement),
            clock.now() + Duration::from_secs(1),
        );
        let mut fired = Vec::new();
        while let Some(at) = t.earliest() {
            tokio::time::sleep_until(clock.instant(at)).await;
            for (key, deadline) in t.take_due(clock.now()) {
                fired.push((key, deadline, clock.now()));
            }
        }
        assert_eq!(fired.len(), 2);
        assert_eq!(fired[0].0, router("b", TimerKind::Advertisement));
        assert_eq!(fired[0].2, Time::from_micros(1_000_000));
        assert_eq!(fired[1].0, router("a", TimerKind::MasterDown));
        assert_eq!(fired[1].2, Time::from_micros(3_600_000));
    }

    #[tokio::test]
    async fn a_precise_sleep_ends_at_its_deadline_and_survives_a_dropped_one() {
        let sleep = PreciseSleep::new().unwrap();
        // A sleep dropped before its deadline must not end the next one early.
        let dropped = Instant::now() + Duration::from_millis(1);
        let _ = tokio::time::timeout(Duration::from_micros(100), sleep.until(dropped)).await;
        tokio::time::sleep(Duration::from_millis(3)).await;
        let at = Instant::now() + Duration::from_millis(20);
        sleep.until(at).await.unwrap();
        assert!(Instant::now() >= at);
        // A deadline that has passed returns.
        sleep.until(at).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn clock_maps_both_ways() {
        let clock = Clock::start();
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(clock.now(), Time::from_micros(1_500_000));
        let at = Time::from_micros(2_000_000);
        assert_eq!(clock.time_of(clock.instant(at)), at);
        assert_eq!(
            clock.instant(at) - Instant::now(),
            Duration::from_millis(500)
        );
    }
}
