//! What a control socket allows its clients: how many connections at once, how long
//! one may stay silent or leave its replies unread, and the reserve kept for the
//! other daemon; and the counters of what was refused or closed.
//!
//! Why: every connection holds a descriptor and a task. 20,000 idle connections (a
//! local user in `control.group`, or a script) once exhausted lbd's descriptors: its
//! health checks failed, every server was marked down and the VIP answered nothing.
//! Done to vrrpd, a takeover went on without lbd's prepare (vrrpd could not open the
//! connection that asks for it).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default [`ServerLimits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;
/// Default [`ServerLimits::peer_reserve`].
pub const DEFAULT_PEER_RESERVE: usize = 16;
/// Default [`ServerLimits::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`ServerLimits::write_stall_timeout`].
pub const DEFAULT_WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Limits a [`crate::Server`] puts on its clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// Connections served at once; one more is answered with a
    /// [`crate::wire::codes::TOO_MANY_CONNECTIONS`] error line and closed.
    pub max_connections: usize,
    /// The other daemon of the suite, by command name (`lbd` at vrrpd's socket,
    /// `vrrpd` at lbd's): when the socket is full, a connection from a process with
    /// this name running as this daemon's own user gets one of [`Self::peer_reserve`]
    /// slots beyond the cap, so that lbd's prepare and event stream can never be
    /// locked out. Anyone who can run a process as the daemon's user (root) can
    /// already stop the daemon, so the reserve gives them nothing more.
    pub peer_daemon: Option<String>,
    /// Slots kept for [`Self::peer_daemon`] beyond [`Self::max_connections`].
    pub peer_reserve: usize,
    /// A connection that sends nothing this long, with no request under way and no
    /// subscription, is told so and closed. Subscribers only read: they are exempt.
    pub idle_timeout: Duration,
    /// A client that leaves the lines sent to it unread this long (its socket
    /// buffer full) is closed: a subscriber that stopped reading frees its slot.
    /// What waits for it meanwhile is bounded (a queue of lines per connection).
    pub write_stall_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            peer_daemon: None,
            peer_reserve: DEFAULT_PEER_RESERVE,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            write_stall_timeout: DEFAULT_WRITE_STALL_TIMEOUT,
        }
    }
}

/// Live counters of one control socket, shared with the daemon (status, metrics).
#[derive(Debug, Default)]
pub struct ServerStats {
    pub(crate) open: AtomicUsize,
    pub(crate) open_reserved: AtomicUsize,
    pub(crate) accepted: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) reserved: AtomicU64,
    pub(crate) idle_closed: AtomicU64,
    pub(crate) stalled_closed: AtomicU64,
    pub(crate) bad_requests: AtomicU64,
}

/// A snapshot of [`ServerStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerCounters {
    /// Connections open now (the peer daemon's reserved ones included).
    pub open: usize,
    /// Of those, connections in the peer daemon's reserve.
    pub open_reserved: usize,
    /// Connections accepted and served since start.
    pub accepted: u64,
    /// Connections refused because the socket was full.
    pub refused: u64,
    /// Connections of the peer daemon served from its reserve (the socket was full).
    pub reserved: u64,
    /// Connections closed for sending nothing.
    pub idle_closed: u64,
    /// Connections closed for leaving their replies or events unread.
    pub stalled_closed: u64,
    /// Request lines refused: not JSON, not a request, duplicate keys, too long.
    pub bad_requests: u64,
}

impl ServerStats {
    /// The counters now.
    pub fn snapshot(&self) -> ServerCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ServerCounters {
            open: self.open.load(Ordering::Relaxed),
            open_reserved: self.open_reserved.load(Ordering::Relaxed),
            accepted: get(&self.accepted),
            refused: get(&self.refused),
            reserved: get(&self.reserved),
            idle_closed: get(&self.idle_closed),
            stalled_closed: get(&self.stalled_closed),
            bad_requests: get(&self.bad_requests),
        }
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// One open connection's place; given back on drop.
pub(crate) struct Slot {
    stats: Arc<ServerStats>,
    reserved: bool,
}

impl Slot {
    /// Takes a slot if one is free: an ordinary one, else (for the peer daemon, as
    /// `is_peer` tells, asked only then) one of the reserve.
    pub(crate) fn take(
        stats: &Arc<ServerStats>,
        limits: &ServerLimits,
        is_peer: impl FnOnce() -> bool,
    ) -> Option<Slot> {
        // One task accepts, so load-then-store cannot race with another taker.
        let open = stats.open.load(Ordering::Relaxed);
        let reserved_open = stats.open_reserved.load(Ordering::Relaxed);
        let ordinary_open = open - reserved_open.min(open);
        let reserved = if ordinary_open < limits.max_connections {
            false
        } else if reserved_open < limits.peer_reserve && limits.peer_daemon.is_some() && is_peer() {
            ServerStats::bump(&stats.reserved);
            true
        } else {
            return None;
        };
        stats.open.fetch_add(1, Ordering::Relaxed);
        if reserved {
            stats.open_reserved.fetch_add(1, Ordering::Relaxed);
        }
        ServerStats::bump(&stats.accepted);
        Some(Slot {
            stats: Arc::clone(stats),
            reserved,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
        if self.reserved {
            self.stats.open_reserved.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Whether the process at the other end of `stream` is `name` running as our user.
pub(crate) fn is_peer_daemon(stream: &tokio::net::UnixStream, name: &str) -> bool {
    let Ok(cred) = stream.peer_cred() else {
        return false;
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let Some(pid) = cred.pid().filter(|p| *p > 0) else {
        return false;
    };
    if cred.uid() != euid {
        return false;
    }
    // The kernel's name of the process (its executable's, up to 15 bytes).
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|comm| comm.trim_end() == name)
        .unwrap_or(false)
}

#[cfg(feature = "prometheus")]
mod metrics {
    use prometheus::core::{Collector, Desc};
    use prometheus::proto::MetricFamily;
    use prometheus::{IntCounter, IntGauge, Opts};

    use super::*;

    /// An exported counter and the snapshot field it shows.
    type Exported = (IntCounter, fn(&ServerCounters) -> u64);

    /// Serves a socket's [`ServerStats`] as Prometheus metrics, read at scrape time.
    pub struct StatsCollector {
        stats: Arc<ServerStats>,
        open: IntGauge,
        counters: [Exported; 5],
    }

    impl StatsCollector {
        /// Metrics named `<prefix>_control_*`.
        pub fn new(prefix: &str, stats: Arc<ServerStats>) -> prometheus::Result<Self> {
            let counter = |name: &str, help: &str| {
                IntCounter::with_opts(Opts::new(format!("{prefix}_control_{name}"), help))
            };
            Ok(StatsCollector {
                stats,
                open: IntGauge::with_opts(Opts::new(
                    format!("{prefix}_control_connections"),
                    "Control connections open now (the peer daemon's reserved ones included)",
                ))?,
                counters: [
                    (
                        counter(
                            "connections_refused_total",
                            "Control connections refused because the socket served control.max_connections already",
                        )?,
                        |c| c.refused,
                    ),
                    (
                        counter(
                            "connections_reserved_total",
                            "Connections of the peer daemon served from its reserve while the socket was full",
                        )?,
                        |c| c.reserved,
                    ),
                    (
                        counter(
                            "connections_idle_closed_total",
                            "Control connections closed after control.idle_timeout_ms without a request",
                        )?,
                        |c| c.idle_closed,
                    ),
                    (
                        counter(
                            "connections_stalled_closed_total",
                            "Control connections closed because the client left its replies or events unread",
                        )?,
                        |c| c.stalled_closed,
                    ),
                    (
                        counter(
                            "bad_requests_total",
                            "Control request lines refused: not JSON, not a request, a duplicate key, too long",
                        )?,
                        |c| c.bad_requests,
                    ),
                ],
            })
        }
    }

    impl Collector for StatsCollector {
        fn desc(&self) -> Vec<&Desc> {
            let mut d = self.open.desc();
            for (c, _) in &self.counters {
                d.extend(c.desc());
            }
            d
        }

        fn collect(&self) -> Vec<MetricFamily> {
            let now = self.stats.snapshot();
            self.open.set(i64::try_from(now.open).unwrap_or(i64::MAX));
            let mut out = self.open.collect();
            for (c, get) in &self.counters {
                // Counters only grow: bring the exported one up to the live value.
                let (live, shown) = (get(&now), c.get());
                if live > shown {
                    c.inc_by(live - shown);
                }
                out.extend(c.collect());
            }
            out
        }
    }
}

#[cfg(feature = "prometheus")]
pub use metrics::StatsCollector;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_and_the_reserve_is_for_the_peer_only() {
        let stats = Arc::new(ServerStats::default());
        let limits = ServerLimits {
            max_connections: 2,
            peer_daemon: Some("lbd".into()),
            peer_reserve: 1,
            ..ServerLimits::default()
        };
        let a = Slot::take(&stats, &limits, || panic!("not asked below the cap")).unwrap();
        let _b = Slot::take(&stats, &limits, || false).unwrap();
        assert!(Slot::take(&stats, &limits, || false).is_none());
        let p = Slot::take(&stats, &limits, || true).unwrap();
        assert!(
            Slot::take(&stats, &limits, || true).is_none(),
            "reserve used up"
        );
        assert_eq!(stats.snapshot().open, 3);
        assert_eq!(stats.snapshot().open_reserved, 1);
        drop(a);
        let _c = Slot::take(&stats, &limits, || false).unwrap();
        drop(p);
        assert_eq!(stats.snapshot().open_reserved, 0);
        assert_eq!(stats.snapshot().reserved, 1);
        assert_eq!(stats.snapshot().accepted, 4);
    }
}
