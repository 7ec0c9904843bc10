//! Time as the caller gives it: the scheduler never reads a clock.

use std::ops::Add;
use std::time::Duration;

/// A point on the caller's monotonic clock, in microseconds since an epoch the
/// caller chooses (the runner uses its own start). Only differences matter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(u64);

impl Time {
    /// The caller's epoch.
    pub const ZERO: Time = Time(0);

    /// A time `micros` microseconds after the epoch.
    pub const fn from_micros(micros: u64) -> Self {
        Time(micros)
    }

    /// A time `millis` milliseconds after the epoch.
    pub const fn from_millis(millis: u64) -> Self {
        Time(millis.saturating_mul(1000))
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// The time elapsed since `earlier`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Time) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }

    /// This time minus `d`, clamped at the epoch.
    pub fn saturating_sub(self, d: Duration) -> Time {
        Time(self.0.saturating_sub(duration_micros(d)))
    }
}

impl Add<Duration> for Time {
    type Output = Time;

    /// Saturates: a deadline at the end of time is as good as never.
    fn add(self, rhs: Duration) -> Time {
        Time(self.0.saturating_add(duration_micros(rhs)))
    }
}

/// Whole microseconds of `d`, saturating.
pub(crate) fn duration_micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
