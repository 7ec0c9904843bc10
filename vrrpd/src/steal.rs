//! How much CPU time the hypervisor stole from this machine between two looks:
//! the `steal` column of `/proc/stat`, per CPU. A VM whose vCPUs stand still
//! for tens of milliseconds freezes the master's sender and this node's
//! receive path alike when both run on it (namespaces, a lab, two VMs on one
//! overcommitted host); the master's advert then comes in just after the
//! Master_Down_Timer although nothing failed. The event loop marks the counters
//! at each packet it handles and, before it acts on a due timer, reports what
//! was stolen since as [`vrrp::event::Input::HostStalled`]; the core decides
//! what that means (one more advert interval, once, with `late_timer_grace`).
//!
//! The kernel counts steal in clock ticks (`USER_HZ`, 10 ms), so a stall shows
//! up whole ticks at a time; on bare metal and on hypervisors that do not
//! report steal the column stays 0 and nothing changes.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::time::{Duration, Instant};

/// Marks closer together than this reuse the previous one: each look reads
/// `/proc/stat` (about 10–20 µs on a small machine), and a stream of packets
/// must not make that a cost per packet.
const MARK_SPACING: Duration = Duration::from_millis(5);

/// The per-CPU steal counters at the last mark.
pub struct StealWatch {
    file: Option<File>,
    tick: Duration,
    buf: String,
    marked: Option<(Instant, Vec<u64>)>,
}

impl StealWatch {
    /// Opens `/proc/stat`; without it (an unusual container), every report is 0.
    pub fn open() -> Self {
        let file = match File::open("/proc/stat") {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::info!(error = %e, "/proc/stat unreadable: host stalls are not reported to the state machine");
                None
            }
        };
        Self::with_file(file, clock_tick())
    }

    fn with_file(file: Option<File>, tick: Duration) -> Self {
        StealWatch {
            file,
            tick,
            buf: String::new(),
            marked: None,
        }
    }

    /// Takes the counters as the start of the next report, unless the last mark
    /// is less than [`MARK_SPACING`] old.
    pub fn mark(&mut self, now: Instant) {
        if let Some((at, _)) = &self.marked {
            if now.saturating_duration_since(*at) < MARK_SPACING {
                return;
            }
        }
        self.marked = self.read().map(|c| (now, c));
    }

    /// The most any one CPU had stolen since the last mark (0 without one), and a
    /// new mark.
    pub fn stolen_since_mark(&mut self, now: Instant) -> Duration {
        let Some(counters) = self.read() else {
            return Duration::ZERO;
        };
        let ticks = match &self.marked {
            Some((_, before)) => most_stolen(before, &counters),
            None => 0,
        };
        self.marked = Some((now, counters));
        self.tick * u32::try_from(ticks).unwrap_or(u32::MAX)
    }

    fn read(&mut self) -> Option<Vec<u64>> {
        let file = self.file.as_mut()?;
        self.buf.clear();
        let read = file
            .seek(SeekFrom::Start(0))
            .and_then(|_| file.read_to_string(&mut self.buf));
        match read {
            Ok(_) => Some(per_cpu_steal(&self.buf)),
            Err(e) => {
                tracing::debug!(error = %e, "reading /proc/stat failed");
                None
            }
        }
    }
}

/// The largest per-CPU increase from `before` to `after` (CPUs that came or went
/// count from 0 / not at all).
fn most_stolen(before: &[u64], after: &[u64]) -> u64 {
    after
        .iter()
        .enumerate()
        .map(|(i, a)| a.saturating_sub(before.get(i).copied().unwrap_or(*a)))
        .max()
        .unwrap_or(0)
}

/// The `steal` column (the 8th number) of each `cpuN` line, in ticks; lines that
/// do not parse are skipped.
fn per_cpu_steal(stat: &str) -> Vec<u64> {
    stat.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .filter_map(|l| l.split_ascii_whitespace().nth(8)?.parse().ok())
        .collect()
}

/// The unit of `/proc/stat`: `USER_HZ`, 100 per second on Linux when sysconf
/// does not say.
fn clock_tick() -> Duration {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|h| *h > 0).unwrap_or(100);
    Duration::from_nanos(1_000_000_000 / hz)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  4700647 168607 926401 2757328 45175 0 68228 53021 0 0\n\
        cpu0 2336723 84355 450726 1419844 8172 0 33608 26419 0 0\n\
        cpu1 2363924 84251 475674 1337484 37003 0 34620 26602 0 0\n\
        intr 1 2 3\nctxt 99\n";

    #[test]
    fn reads_the_steal_column_of_each_cpu_not_the_total() {
        assert_eq!(per_cpu_steal(STAT), vec![26419, 26602]);
        assert_eq!(per_cpu_steal("cpu0 1 2 3\ngarbage\n"), Vec::<u64>::new());
    }

    #[test]
    fn the_most_stolen_cpu_counts() {
        assert_eq!(most_stolen(&[10, 20], &[13, 21]), 3);
        // A CPU that appeared counts nothing; counters never run backwards.
        assert_eq!(most_stolen(&[10], &[9, 50]), 0);
    }

    #[test]
    fn a_report_is_the_steal_since_the_mark_in_ticks_and_marks_anew() {
        let dir = std::env::temp_dir().join(format!("steal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("stat");
        let write = |s0: u64, s1: u64| {
            std::fs::write(&path, format!("cpu  0 0 0 0 0 0 0 0 0 0\ncpu0 0 0 0 0 0 0 0 {s0} 0 0\ncpu1 0 0 0 0 0 0 0 {s1} 0 0\n")).unwrap();
        };
        write(100, 200);
        let mut w =
            StealWatch::with_file(Some(File::open(&path).unwrap()), Duration::from_millis(10));
        let t0 = Instant::now();
        // No mark yet: nothing to compare with.
        assert_eq!(w.stolen_since_mark(t0), Duration::ZERO);
        write(103, 201);
        assert_eq!(w.stolen_since_mark(t0), Duration::from_millis(30));
        // A mark within MARK_SPACING of the last keeps the older one.
        write(104, 201);
        w.mark(t0 + Duration::from_millis(1));
        write(105, 201);
        assert_eq!(w.stolen_since_mark(t0), Duration::from_millis(20));
        // A later mark moves the baseline.
        w.mark(t0 + Duration::from_millis(10));
        assert_eq!(w.stolen_since_mark(t0), Duration::ZERO);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
