//! The Prometheus `/metrics` endpoint of vrrpd and lbd: a small HTTP/1.1 server
//! (hyper on a one-thread tokio runtime of its own) that renders a
//! [`prometheus::Registry`] in the text format.
//!
//! Loopback by default (the daemons' config says where); anything but `GET /metrics`,
//! `/` for a pointer and, when the daemon has one, its read-only status page
//! (`/status`, polling `/status.json`; see the `status` module) gets 404, so the port
//! exposes nothing else.
//!
//! Any local user can connect, so every resource a client can make the server hold
//! is bounded by [`Limits`]: connections (a new one past the cap closes the oldest,
//! idle ones first), the request head's size, the time a connection may make no
//! progress, and requests per connection. Whatever clients do, the server keeps two
//! threads (one serves, one renders) and at most `max_connections` sockets. Renders are shared: a scrape waits
//! for at most the render under way and the next one, however many clients ask.
//!
//! Why its own thread and not the daemon's runtime: the daemons run one-thread
//! runtimes whose loop sends vrrpd's adverts (at real-time priority) and runs lbd's
//! health checks, and a scrape may block (lbd reads the kernel's counters through
//! its dataplane thread, up to 2 s). Nothing a metrics client does runs there.

mod http;
mod progress;
mod render;
mod server;
mod status;

pub use status::{StatusFuture, StatusPage};

use std::net::SocketAddr;
use std::sync::mpsc as std_mpsc;
use std::thread;
use std::time::Duration;

use tokio::sync::oneshot;

pub use prometheus;

/// The commit the daemons were built from, if known (`git rev-parse` at build time,
/// or `LBSUITE_COMMIT`).
pub const COMMIT: Option<&str> = option_env!("LBSUITE_COMMIT");

/// Who serves a registry: what [`daemon_registry`] labels every series with and
/// says in `<prefix>_build_info`.
#[derive(Debug, Clone, Copy)]
pub struct DaemonInfo<'a> {
    /// The daemon's metric prefix without the underscore (`vrrp`, `lbd`).
    pub prefix: &'a str,
    /// Its version (`CARGO_PKG_VERSION`).
    pub version: &'a str,
    /// `[cluster] name`: the `cluster` label of every series (none when empty).
    pub cluster: &'a str,
}

/// A registry for a daemon: every series carries `cluster="<name>"`; it holds
/// `<prefix>_build_info{version,commit}` = 1 and the process metrics
/// (`process_start_time_seconds`, CPU, resident memory, descriptors, threads), so
/// that a restart and an upgrade are visible.
pub fn daemon_registry(info: DaemonInfo<'_>) -> prometheus::Registry {
    let labels = (!info.cluster.is_empty()).then(|| {
        std::collections::HashMap::from([("cluster".to_owned(), info.cluster.to_owned())])
    });
    let registry = match prometheus::Registry::new_custom(None, labels) {
        Ok(r) => r,
        Err(e) => {
            // A label value cannot be invalid, so this is unreachable in practice;
            // the series then go without the label rather than the daemon without metrics.
            tracing::warn!(error = %e, "metrics: no cluster label");
            prometheus::Registry::new()
        }
    };
    let build = prometheus::IntGaugeVec::new(
        prometheus::Opts::new(
            format!("{}_build_info", info.prefix),
            "Always 1; the labels say which build runs (version, git commit).",
        ),
        &["version", "commit"],
    );
    match build {
        Ok(build) => {
            build
                .with_label_values(&[info.version, COMMIT.unwrap_or("")])
                .set(1);
            if let Err(e) = registry.register(Box::new(build)) {
                tracing::warn!(error = %e, "metrics: no build_info");
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics: no build_info"),
    }
    let process = prometheus::process_collector::ProcessCollector::for_self();
    if let Err(e) = registry.register(Box::new(process)) {
        tracing::warn!(error = %e, "metrics: no process metrics");
    }
    registry
}

/// Failures of the metrics endpoint. Each variant says the inner error's text itself
/// and does not return it as `source()` as well: an `anyhow` chain (`{:#}`) prints
/// it once.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The listen address could not be bound.
    #[error("metrics: cannot listen on {addr}: {error}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// What the kernel said.
        error: std::io::Error,
    },
    /// The serving thread or its runtime could not be started.
    #[error("metrics: cannot start the server thread: {0}")]
    Thread(std::io::Error),
}

/// What one client, or all of them together, can make the endpoint hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Connections held at once. A new connection past this closes the oldest one
    /// that has not sent a request yet, or else the oldest one: the newest client,
    /// which is the scraper more often than not, is served.
    pub max_connections: usize,
    /// Largest request head (request line and headers), bytes; larger gets 431 and
    /// the connection is closed. Never less than 8192 in effect (hyper's floor for
    /// its read buffer), which is also what one connection buffers at most.
    pub max_header_bytes: usize,
    /// A request head must be complete this long after the server starts waiting
    /// for it (keep-alive idle time included), and a connection that neither reads
    /// nor writes a byte for this long (a client that does not read its
    /// responses) is closed; waiting for a render does not count.
    pub idle_timeout: Duration,
    /// Requests one connection may send at once ...
    pub request_burst: u32,
    /// ... and per second after that; past it a request gets 429 and the connection
    /// is closed.
    pub requests_per_second: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 64,
            max_header_bytes: 8192,
            idle_timeout: Duration::from_secs(10),
            request_burst: 8,
            requests_per_second: 2,
        }
    }
}

/// A running `/metrics` endpoint; stops when dropped.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl MetricsServer {
    /// Serves `registry` at `http://addr/metrics` (port 0 picks a free port) with
    /// the default [`Limits`].
    pub fn start(addr: SocketAddr, registry: prometheus::Registry) -> Result<Self, MetricsError> {
        Self::start_with(addr, registry, Limits::default())
    }

    /// Serves `registry` at `http://addr/metrics` within `limits`. Returns once
    /// the address is bound (or could not be). Callable from inside or outside a
    /// tokio runtime: the server runs on a thread and runtime of its own.
    pub fn start_with(
        addr: SocketAddr,
        registry: prometheus::Registry,
        limits: Limits,
    ) -> Result<Self, MetricsError> {
        Self::serve(addr, registry, None, limits)
    }

    /// Serves `registry` at `http://addr/metrics` and the daemon's read-only
    /// status page at `http://addr/status`, with the default [`Limits`].
    pub fn start_with_status(
        addr: SocketAddr,
        registry: prometheus::Registry,
        status: StatusPage,
    ) -> Result<Self, MetricsError> {
        Self::serve(addr, registry, Some(status), Limits::default())
    }

    fn serve(
        addr: SocketAddr,
        registry: prometheus::Registry,
        status: Option<StatusPage>,
        limits: Limits,
    ) -> Result<Self, MetricsError> {
        let (bound_tx, bound_rx) = std_mpsc::channel();
        let (stop, stopped) = oneshot::channel();
        let thread = thread::Builder::new()
            .name("metrics".into())
            .spawn(move || server::run(addr, registry, status, limits, bound_tx, stopped))
            .map_err(MetricsError::Thread)?;
        let bound = bound_rx.recv().unwrap_or_else(|_| {
            Err(MetricsError::Thread(std::io::Error::other(
                "the server thread ended before binding",
            )))
        });
        let addr = match bound {
            Ok(addr) => addr,
            Err(err) => {
                let _ = thread.join();
                return Err(err);
            }
        };
        tracing::info!(%addr, "metrics: serving /metrics");
        Ok(MetricsServer {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_prints_the_inner_text_once() {
        let kernel = || std::io::Error::other("the kernel said no");
        let errors: Vec<anyhow::Error> = vec![
            MetricsError::Bind {
                addr: SocketAddr::from(([127, 0, 0, 1], 9100)),
                error: kernel(),
            }
            .into(),
            MetricsError::Thread(kernel()).into(),
        ];
        for e in errors {
            let chain = format!("{e:#}");
            assert_eq!(chain.matches("the kernel said no").count(), 1, "{chain}");
        }
    }
}
