//! Time as the caller gives it, the instance timers, and the RFC timer
//! arithmetic (Skew_Time, Master_Down_Interval) for both versions.
//!
//! The state machine never reads a clock: every input carries `now`, and
//! timers go out as `ArmTimer { at }` actions for the caller to schedule.

use std::ops::Add;
use std::time::Duration;

use crate::packet::Version;

/// A point on the caller's monotonic clock, in microseconds since an epoch
/// the caller chooses (its start-up, say). Only differences matter.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Time(u64);

impl Time {
    /// The caller's epoch.
    pub const ZERO: Time = Time(0);

    /// A time `micros` microseconds after the epoch.
    pub const fn from_micros(micros: u64) -> Self {
        Time(micros)
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// The time elapsed since `earlier`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Time) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Time {
    type Output = Time;

    /// Saturates instead of overflowing: a deadline at the end of time is
    /// as good as never.
    fn add(self, rhs: Duration) -> Time {
        let micros = u64::try_from(rhs.as_micros()).unwrap_or(u64::MAX);
        Time(self.0.saturating_add(micros))
    }
}

/// The timers an instance runs; the caller keeps at most one per kind per
/// instance (a new `ArmTimer` replaces the previous deadline).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum TimerKind {
    /// Adver_Timer: a master sends its next advertisement.
    Advertisement,
    /// Master_Down_Timer (RFC 9568: Active_Down_Timer): a backup that hears
    /// nothing for Master_Down_Interval takes over.
    MasterDown,
    /// A master repeats its gratuitous ARP / unsolicited NA burst once, some
    /// time after taking over (keepalived's `garp_master_delay`).
    GratuitousRepeat,
    /// FAULT after a failed VIP add ([`crate::event::Input::VipAddFailed`]):
    /// when it is due the fault clears and the instance enters BACKUP again.
    VipRetry,
}

const MICROS_PER_CS: u64 = 10_000;
const MICROS_PER_SEC: u64 = 1_000_000;

/// Skew_Time for a router of `priority` given the master's advertisement
/// interval in centiseconds.
///
/// - v2 (RFC 3768 §6.1): `(256 - Priority) / 256` seconds, independent of
///   the interval; computed in microseconds, truncated (exact whenever
///   `256 - Priority` is a multiple of 4, e.g. priority 100: 0.609375 s).
/// - v3 (RFC 9568 §6.1): `((256 - Priority) * Master_Adver_Interval) / 256`
///   with the interval in centiseconds, computed in microseconds and
///   truncated, as keepalived does (priority 100, 100 cs: 609,375 µs).
///   Whole centiseconds would make the skew 0 for every priority at a 1 cs
///   interval: backups of different priorities would then time out together
///   instead of in priority order, and a 10 ms Master_Down_Interval would be
///   30 ms where keepalived waits 36.09 ms.
pub fn skew_time(version: Version, priority: u8, master_adver_interval_cs: u16) -> Duration {
    let weight = 256 - u64::from(priority);
    match version {
        Version::V2 => Duration::from_micros(weight * MICROS_PER_SEC / 256),
        Version::V3 => Duration::from_micros(
            weight * u64::from(master_adver_interval_cs) * MICROS_PER_CS / 256,
        ),
    }
}

/// Master_Down_Interval: `3 * Master_Adver_Interval + Skew_Time`
/// (RFC 3768 §6.1 with the configured interval; RFC 9568 §6.1 with the
/// interval learned from the master's adverts).
pub fn master_down_interval(
    version: Version,
    priority: u8,
    master_adver_interval_cs: u16,
) -> Duration {
    let three = Duration::from_micros(3 * u64::from(master_adver_interval_cs) * MICROS_PER_CS);
    three + skew_time(version, priority, master_adver_interval_cs)
}

/// An advertisement interval in centiseconds as a duration.
pub fn interval(interval_cs: u16) -> Duration {
    Duration::from_micros(u64::from(interval_cs) * MICROS_PER_CS)
}

/// Serde for `Duration` as whole microseconds, the unit of [`Time`].
pub(crate) mod micros {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_micros)
    }
}

/// Serde for `Option<Duration>` as whole microseconds or null.
pub(crate) mod micros_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<u64>::deserialize(d).map(|o| o.map(Duration::from_micros))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(d: Duration) -> u128 {
        d.as_micros()
    }

    #[test]
    fn v2_skew_and_master_down_priority_100_one_second() {
        assert_eq!(us(skew_time(Version::V2, 100, 100)), 609_375);
        assert_eq!(us(master_down_interval(Version::V2, 100, 100)), 3_609_375);
    }

    #[test]
    fn v2_skew_does_not_depend_on_interval() {
        // RFC 3768: Skew_Time = (256 - Priority) / 256 seconds.
        assert_eq!(us(skew_time(Version::V2, 100, 300)), 609_375);
        assert_eq!(us(master_down_interval(Version::V2, 100, 300)), 9_609_375);
    }

    #[test]
    fn v2_skew_edges() {
        assert_eq!(us(skew_time(Version::V2, 255, 100)), 3_906); // 3906.25 truncated
        assert_eq!(us(skew_time(Version::V2, 254, 100)), 7_812); // 7812.5 truncated
        assert_eq!(us(skew_time(Version::V2, 150, 100)), 414_062); // 414062.5
        assert_eq!(us(skew_time(Version::V2, 1, 100)), 996_093); // 996093.75
        assert_eq!(us(skew_time(Version::V2, 192, 100)), 250_000);
    }

    #[test]
    fn v3_skew_in_microseconds() {
        // 156 * 100 cs / 256 = 60.9375 cs.
        assert_eq!(us(skew_time(Version::V3, 100, 100)), 609_375);
        assert_eq!(us(master_down_interval(Version::V3, 100, 100)), 3_609_375);
        // 156 * 1 cs / 256 = 0.609375 cs = 6093.75 µs, truncated; MDI 36.093 ms
        // (keepalived's figure for a 10 ms advert_int).
        assert_eq!(us(skew_time(Version::V3, 100, 1)), 6_093);
        assert_eq!(us(master_down_interval(Version::V3, 100, 1)), 36_093);
        // 106 * 100 / 256 = 41.40625 cs.
        assert_eq!(us(skew_time(Version::V3, 150, 100)), 414_062);
        // Owner: 1 * 100 / 256 = 0.390625 cs.
        assert_eq!(us(skew_time(Version::V3, 255, 100)), 3_906);
        // Largest interval: 4095 cs, priority 1: 255 * 4095 / 256 = 4079.00390625 cs.
        assert_eq!(us(skew_time(Version::V3, 1, 4095)), 40_790_039);
        assert_eq!(
            us(master_down_interval(Version::V3, 1, 4095)),
            3 * 4095 * 10_000 + 40_790_039
        );
    }

    #[test]
    fn v3_skew_keeps_priorities_apart_at_one_centisecond() {
        // At the shortest interval every priority still gets its own
        // Master_Down_Interval, the higher priority the shorter.
        let mut last = Duration::MAX;
        for p in [1u8, 50, 100, 150, 200, 254] {
            let mdi = master_down_interval(Version::V3, p, 1);
            assert!(mdi < last, "priority {p}: {mdi:?} not below {last:?}");
            last = mdi;
        }
    }

    #[test]
    fn v3_learned_interval_changes_skew() {
        // 156 * 200 / 256 = 121.875 cs; MDI = 600 cs + 1.21875 s.
        assert_eq!(us(skew_time(Version::V3, 100, 200)), 1_218_750);
        assert_eq!(us(master_down_interval(Version::V3, 100, 200)), 7_218_750);
    }

    #[test]
    fn time_addition_saturates() {
        let t = Time::from_micros(u64::MAX - 1) + Duration::from_secs(1);
        assert_eq!(t.as_micros(), u64::MAX);
        assert_eq!(
            (Time::from_micros(5) + Duration::from_micros(7)).as_micros(),
            12
        );
        assert_eq!(
            Time::from_micros(3).saturating_since(Time::from_micros(10)),
            Duration::ZERO
        );
    }
}
