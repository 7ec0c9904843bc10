//! `[vrrpd]`: real-time scheduling and locked memory, so that adverts keep their
//! timing while other work saturates the CPUs (30 ms and 10 ms adverts leave a
//! backup 100 ms or less before it declares the master dead).
//!
//! Applied once, in `main`, before the runtime starts: the event loop runs on the
//! main thread (a one-thread runtime), and that is the thread that gets SCHED_RR.
//! It is set with SCHED_RESET_ON_FORK, so every thread and process vrrpd creates
//! afterwards (the /metrics server, tokio's blocking pool if anything ever uses it)
//! starts at normal priority: nothing but the advert path can take real-time CPU.
//! Neither setting is worth refusing to start for: what the kernel refuses is
//! logged once and reported by `status` and the metrics.

use std::io;

use serde::Serialize;

/// `sched.h`: children (and threads) created later start with SCHED_OTHER. Not in
/// the `libc` crate.
const SCHED_RESET_ON_FORK: libc::c_int = 0x4000_0000;
/// `linux/capability.h`.
const CAP_IPC_LOCK: u32 = 14;
/// `linux/capability.h`.
const CAP_SYS_NICE: u32 = 23;

/// Why a `[vrrpd]` setting could not be applied. Each variant says the kernel's
/// answer itself and does not return it as `source()` as well: an `anyhow` chain
/// (`{:#}`) prints it once.
#[derive(Debug, thiserror::Error)]
pub enum RealtimeError {
    /// sched_setscheduler refused.
    #[error(
        "real-time priority {priority} refused ({error}): vrrpd needs CAP_SYS_NICE \
         ({cap}) or RLIMIT_RTPRIO >= {priority} (now {rlimit}; systemd: LimitRTPRIO=); \
         under cgroup v1 its cgroup also needs cpu.rt_runtime_us > 0"
    )]
    Scheduler {
        /// The priority asked for.
        priority: u8,
        /// Whether CAP_SYS_NICE is effective: "held" or "not held".
        cap: &'static str,
        /// RLIMIT_RTPRIO as text.
        rlimit: String,
        /// The kernel's answer.
        error: io::Error,
    },
    /// RLIMIT_MEMLOCK is finite and vrrpd lacks CAP_IPC_LOCK: locking future
    /// memory would make an allocation past the limit fail, so vrrpd does not lock.
    #[error(
        "memory not locked: vrrpd lacks CAP_IPC_LOCK and RLIMIT_MEMLOCK is {limit} \
         bytes; with a finite limit, locking all future memory would make an allocation \
         past it fail (systemd: LimitMEMLOCK=infinity, or grant CAP_IPC_LOCK)"
    )]
    MemoryLimit {
        /// RLIMIT_MEMLOCK, bytes.
        limit: u64,
    },
    /// mlockall refused.
    #[error(
        "mlockall refused ({error}): vrrpd needs CAP_IPC_LOCK or a large enough RLIMIT_MEMLOCK"
    )]
    Lock {
        /// The kernel's answer.
        error: io::Error,
    },
}

/// What vrrpd asked for and what it got, for the log, `status` and the metrics.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Realtime {
    /// `[vrrpd] realtime_priority` at start-up (0: vrrpd left its scheduling alone).
    pub requested_priority: u8,
    /// `[vrrpd] lock_memory` at start-up.
    pub lock_requested: bool,
    /// Whether mlockall (current and future mappings) succeeded.
    pub memory_locked: bool,
    /// Each setting that could not be applied, as logged.
    pub warnings: Vec<String>,
}

/// The scheduling policy and priority of the calling thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Scheduling {
    /// `SCHED_OTHER`, `SCHED_FIFO`, `SCHED_RR`, `SCHED_BATCH`, `SCHED_IDLE`, ...
    pub policy: &'static str,
    /// Real-time priority 1..=99; 0 for the normal policies.
    pub priority: u8,
}

impl Scheduling {
    /// The calling thread's, as the kernel has it now.
    pub fn current() -> Scheduling {
        // SAFETY: no pointers; 0 is the calling thread.
        let raw = unsafe { libc::sched_getscheduler(0) };
        let mut param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is a valid sched_param for the call to fill.
        let priority = if unsafe { libc::sched_getparam(0, &mut param) } == 0 {
            u8::try_from(param.sched_priority).unwrap_or(0)
        } else {
            0
        };
        Scheduling {
            policy: policy_name(raw & !SCHED_RESET_ON_FORK),
            priority,
        }
    }

    /// The real-time priority, 0 under a normal policy.
    pub fn realtime_priority(&self) -> u8 {
        match self.policy {
            "SCHED_FIFO" | "SCHED_RR" => self.priority,
            _ => 0,
        }
    }
}

fn policy_name(policy: libc::c_int) -> &'static str {
    match policy {
        libc::SCHED_OTHER => "SCHED_OTHER",
        libc::SCHED_FIFO => "SCHED_FIFO",
        libc::SCHED_RR => "SCHED_RR",
        libc::SCHED_BATCH => "SCHED_BATCH",
        libc::SCHED_IDLE => "SCHED_IDLE",
        6 => "SCHED_DEADLINE",
        _ => "unknown",
    }
}

/// Applies `settings` to the calling thread (scheduling) and the process (memory),
/// logging what it got: info when granted, a warning that names the capability and
/// the key when refused. Never fails: vrrpd runs on at normal priority.
pub fn apply(settings: &config::VrrpdSettings) -> Realtime {
    let mut got = Realtime {
        requested_priority: settings.realtime_priority,
        lock_requested: settings.lock_memory,
        ..Realtime::default()
    };
    if settings.realtime_priority > 0 {
        match set_round_robin(settings.realtime_priority) {
            Ok(()) => tracing::info!(
                policy = "SCHED_RR",
                priority = settings.realtime_priority,
                "[vrrpd] realtime_priority: the event loop runs at real-time priority; threads and processes it starts do not"
            ),
            Err(e) => {
                tracing::warn!(
                    key = "vrrpd.realtime_priority",
                    priority = settings.realtime_priority,
                    "{e}; running at normal priority, adverts may be late while the CPUs are saturated"
                );
                got.warnings.push(e.to_string());
            }
        }
    }
    if settings.lock_memory {
        match lock_memory() {
            Ok(()) => {
                got.memory_locked = true;
                tracing::info!("[vrrpd] lock_memory: memory locked (mlockall)");
            }
            Err(e) => {
                tracing::warn!(
                    key = "vrrpd.lock_memory",
                    "{e}; running with swappable memory"
                );
                got.warnings.push(e.to_string());
            }
        }
    }
    got
}

/// SCHED_RR at `priority` for the calling thread, reset in whatever it creates.
fn set_round_robin(priority: u8) -> Result<(), RealtimeError> {
    let param = libc::sched_param {
        sched_priority: libc::c_int::from(priority),
    };
    // SAFETY: `param` is a valid sched_param; 0 is the calling thread.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_RR | SCHED_RESET_ON_FORK, &param) };
    if rc == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    Err(RealtimeError::Scheduler {
        priority,
        cap: if has_capability(CAP_SYS_NICE) {
            "held"
        } else {
            "not held"
        },
        rlimit: match rlimit(libc::RLIMIT_RTPRIO) {
            Some(n) => n.to_string(),
            None => "unlimited".into(),
        },
        error,
    })
}

/// Locks everything mapped now and, as it is touched, everything mapped later;
/// only where later allocations cannot fail for it: with CAP_IPC_LOCK, or an
/// unlimited RLIMIT_MEMLOCK.
fn lock_memory() -> Result<(), RealtimeError> {
    if !has_capability(CAP_IPC_LOCK) {
        if let Some(limit) = rlimit(libc::RLIMIT_MEMLOCK) {
            return Err(RealtimeError::MemoryLimit { limit });
        }
    }
    // One malloc arena: each thread's own would reserve 64 MiB of address space,
    // all of it counted as locked. vrrpd's few threads hardly allocate.
    #[cfg(target_env = "gnu")]
    // SAFETY: a plain tuning call, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    // What is mapped now (the binary's code and data, libraries, the heap so far)
    // is read in and locked: a takeover path run for the first time needs no disk
    // read. SAFETY: no pointers.
    if unsafe { libc::mlockall(libc::MCL_CURRENT) } != 0 {
        return Err(RealtimeError::Lock {
            error: io::Error::last_os_error(),
        });
    }
    // What is mapped later (thread stacks, heap growth) is locked as it is touched
    // rather than read in at once (2 MiB per thread stack); before Linux 4.4, which
    // lacks MCL_ONFAULT, at once. SAFETY: no pointers.
    if unsafe { libc::mlockall(libc::MCL_FUTURE | libc::MCL_ONFAULT) } == 0
        || unsafe { libc::mlockall(libc::MCL_FUTURE) } == 0
    {
        Ok(())
    } else {
        Err(RealtimeError::Lock {
            error: io::Error::last_os_error(),
        })
    }
}

/// The soft limit of `resource`; `None` when unlimited (or unreadable).
fn rlimit(resource: libc::__rlimit_resource_t) -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid rlimit for the call to fill.
    if unsafe { libc::getrlimit(resource, &mut r) } != 0 || r.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    Some(r.rlim_cur)
}

/// Whether capability `cap` is in this process's effective set (`CapEff` in
/// /proc/self/status); false if that cannot be read.
fn has_capability(cap: u32) -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| cap_eff(&s))
        .is_some_and(|set| set & (1u64 << cap) != 0)
}

fn cap_eff(status: &str) -> Option<u64> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

/// Locked memory of this process in kB (`VmLck` in /proc/self/status).
pub fn locked_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_capabilities_are_read_from_proc_status() {
        let status = "Name:\tvrrpd\nCapInh:\t0000000000000000\nCapEff:\t0000000000804000\n";
        let set = cap_eff(status).unwrap();
        assert!(set & (1 << CAP_IPC_LOCK) != 0);
        assert!(set & (1 << CAP_SYS_NICE) != 0);
        assert!(set & 1 == 0);
        assert_eq!(cap_eff("Name:\tx\n"), None);
    }

    #[test]
    fn a_chain_prints_the_inner_text_once() {
        let kernel = || io::Error::other("the kernel said no");
        let errors: Vec<anyhow::Error> = vec![
            RealtimeError::Scheduler {
                priority: 20,
                cap: "held",
                rlimit: "0".into(),
                error: kernel(),
            }
            .into(),
            RealtimeError::Lock { error: kernel() }.into(),
        ];
        for e in errors {
            let chain = format!("{e:#}");
            assert_eq!(chain.matches("the kernel said no").count(), 1, "{chain}");
        }
    }

    #[test]
    fn the_refusal_names_the_capability_and_the_limit() {
        let e = RealtimeError::Scheduler {
            priority: 20,
            cap: "not held",
            rlimit: "0".into(),
            error: io::Error::from_raw_os_error(libc::EPERM),
        };
        let text = e.to_string();
        assert!(text.contains("CAP_SYS_NICE (not held)"), "{text}");
        assert!(text.contains("RLIMIT_RTPRIO >= 20 (now 0;"), "{text}");
        let text = RealtimeError::MemoryLimit { limit: 8 << 20 }.to_string();
        assert!(
            text.contains("CAP_IPC_LOCK") && text.contains("8388608"),
            "{text}"
        );
    }

    #[test]
    fn normal_policies_have_no_realtime_priority() {
        let s = Scheduling {
            policy: "SCHED_OTHER",
            priority: 0,
        };
        assert_eq!(s.realtime_priority(), 0);
        let s = Scheduling {
            policy: "SCHED_RR",
            priority: 20,
        };
        assert_eq!(s.realtime_priority(), 20);
        // This test's own thread runs at a normal policy.
        assert_eq!(Scheduling::current().realtime_priority(), 0);
    }
}
