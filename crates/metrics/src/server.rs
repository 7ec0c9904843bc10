//! The accept loop and the table of connections it holds.
//!
//! Every connection is a task on the server's one thread; the table caps how many
//! there are, and a descriptor shortage sheds them before anything else of the
//! daemon runs out.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::{IntCounterVec, Opts};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{AbortHandle, Id, JoinSet};
use tokio::time::Instant;

use crate::http::{Activity, Endpoint};
use crate::progress::ProgressStream;
use crate::render::Renderer;
use crate::status::StatusPage;
use crate::{Limits, MetricsError};

/// Pending connections the kernel queues while the loop is busy (1000 clients
/// connecting at once are not refused at the SYN).
const BACKLOG: u32 = 1024;
/// How long the loop stops accepting when the process is out of descriptors.
const SHORTAGE_PAUSE: Duration = Duration::from_millis(100);
/// At most one warning per this interval about a descriptor shortage.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// `reason` of a connection closed because the cap was reached.
const SHED_LIMIT: &str = "limit";
/// `reason` of a connection closed because descriptors or memory ran out.
const SHED_SHORTAGE: &str = "shortage";
/// How long the runtime waits for a render under way when the server stops.
const STOP_WAIT: Duration = Duration::from_secs(3);

/// The body of the server thread: builds the runtime, binds, reports the bound
/// address (or the failure) on `bound`, and serves until `stop` fires or its
/// sender is dropped.
pub(crate) fn run(
    addr: SocketAddr,
    registry: prometheus::Registry,
    status: Option<StatusPage>,
    limits: Limits,
    bound: std_mpsc::Sender<Result<SocketAddr, MetricsError>>,
    stop: oneshot::Receiver<()>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("metrics-render")
        // Renders run one at a time (render.rs); one thread is all they need.
        .max_blocking_threads(1)
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            let _ = bound.send(Err(MetricsError::Thread(err)));
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match listen(addr) {
            Ok(listener) => listener,
            Err(error) => {
                let _ = bound.send(Err(MetricsError::Bind { addr, error }));
                return;
            }
        };
        let local = listener.local_addr().unwrap_or(addr);
        if bound.send(Ok(local)).is_err() {
            return;
        }
        let shed = ShedCounter::register(&registry);
        let (renderer, rendering) = Renderer::new(registry);
        tokio::spawn(rendering);
        tokio::select! {
            () = accept_loop(listener, renderer, status, limits, shed) => {}
            _ = stop => {}
        }
    });
    // Connection tasks are dropped (their sockets closed); a render under way on
    // the blocking thread is waited for, briefly.
    runtime.shutdown_timeout(STOP_WAIT);
}

/// Counts the connections the endpoint closes to make room, by reason.
#[derive(Clone, Default)]
struct ShedCounter(Option<IntCounterVec>);

impl ShedCounter {
    /// `metrics_connections_shed_total{reason}`, registered in `registry` with both
    /// reasons at 0 (uncounted if the registry refuses it: a second server on one
    /// registry).
    fn register(registry: &prometheus::Registry) -> ShedCounter {
        let counter = IntCounterVec::new(
            Opts::new(
                "metrics_connections_shed_total",
                "Connections of metrics clients the endpoint closed to make room: reason limit (a new one past the connection cap closed the oldest quiet one), shortage (out of descriptors or memory).",
            ),
            &["reason"],
        );
        let counter = match counter {
            Ok(c) => c,
            Err(err) => {
                tracing::warn!(%err, "metrics: no shed counter");
                return ShedCounter(None);
            }
        };
        for reason in [SHED_LIMIT, SHED_SHORTAGE] {
            counter.with_label_values(&[reason]);
        }
        if let Err(err) = registry.register(Box::new(counter.clone())) {
            tracing::debug!(%err, "metrics: the shed counter is not served");
            return ShedCounter(None);
        }
        ShedCounter(Some(counter))
    }

    fn add(&self, reason: &str, n: usize) {
        if let Some(c) = &self.0 {
            c.with_label_values(&[reason]).inc_by(n as u64);
        }
    }
}

fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// One connection in the table.
struct Held {
    /// Order of acceptance: lower is older.
    seq: u64,
    activity: Arc<Activity>,
    abort: AbortHandle,
}

/// The connections being served, by task.
#[derive(Default)]
struct ConnectionTable {
    held: HashMap<Id, Held>,
    next_seq: u64,
}

impl ConnectionTable {
    /// The connection to close to make room: the oldest that has not asked for
    /// anything yet (an idle or slow client), or else the oldest.
    fn victim(&self) -> Option<Id> {
        let oldest = |quiet_only: bool| {
            self.held
                .iter()
                .filter(|(_, h)| !quiet_only || !h.activity.asked())
                .min_by_key(|(_, h)| h.seq)
                .map(|(id, _)| *id)
        };
        oldest(true).or_else(|| oldest(false))
    }

    /// Closes one connection now (its task is dropped with its socket).
    fn close(&mut self, id: Id) {
        if let Some(held) = self.held.remove(&id) {
            held.abort.abort();
        }
    }

    /// Closes every connection that has not asked for anything; if there is none,
    /// the oldest. Returns how many were closed.
    fn shed(&mut self) -> usize {
        let quiet: Vec<Id> = self
            .held
            .iter()
            .filter(|(_, h)| !h.activity.asked())
            .map(|(id, _)| *id)
            .collect();
        let victims = if quiet.is_empty() {
            self.victim().into_iter().collect()
        } else {
            quiet
        };
        let count = victims.len();
        for id in victims {
            self.close(id);
        }
        count
    }
}

async fn accept_loop(
    listener: TcpListener,
    renderer: Renderer,
    status: Option<StatusPage>,
    limits: Limits,
    shed: ShedCounter,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_header_size(limits.max_header_bytes)
        .max_headers(32)
        .keep_alive(true)
        .half_close(false);
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut table = ConnectionTable::default();
    let mut last_warning: Option<Instant> = None;
    loop {
        tokio::select! {
            Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(err) => err.id(),
                };
                table.held.remove(&id);
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    while table.held.len() >= limits.max_connections.max(1) {
                        match table.victim() {
                            Some(id) => {
                                table.close(id);
                                shed.add(SHED_LIMIT, 1);
                            }
                            None => break,
                        }
                    }
                    let activity = Arc::new(Activity::default());
                    let endpoint =
                        Endpoint::new(
                        renderer.clone(),
                        status.clone(),
                        &limits,
                        Arc::clone(&activity),
                    );
                    let abort = tasks.spawn(serve_connection(
                        http.clone(),
                        stream,
                        endpoint,
                        Arc::clone(&activity),
                        limits.idle_timeout,
                    ));
                    let seq = table.next_seq;
                    table.next_seq += 1;
                    table.held.insert(abort.id(), Held {
                        seq,
                        activity,
                        abort,
                    });
                }
                Err(err) if is_shortage(&err) => {
                    let closed = table.shed();
                    shed.add(SHED_SHORTAGE, closed);
                    let now = Instant::now();
                    if last_warning.is_none_or(|t| now.duration_since(t) >= WARN_EVERY) {
                        last_warning = Some(now);
                        tracing::warn!(
                            error = %err,
                            closed,
                            "metrics: out of descriptors or memory accepting a client; \
                             closed metrics clients and pausing (raise LimitNOFILE=)"
                        );
                    }
                    tokio::time::sleep(SHORTAGE_PAUSE).await;
                }
                // The client went away before it was accepted, and the like.
                Err(err) => tracing::debug!(error = %err, "metrics: accept failed"),
            },
        }
    }
}

/// Out of descriptors or kernel memory: accepting again at once would fail again.
fn is_shortage(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Serves one connection until it ends, fails, or makes no progress (reads or
/// writes no byte) for `idle` while it waits for no render.
async fn serve_connection(
    http: http1::Builder,
    stream: TcpStream,
    endpoint: Endpoint,
    activity: Arc<Activity>,
    idle: Duration,
) {
    let (stream, progress) = ProgressStream::new(stream);
    let connection = http.serve_connection(TokioIo::new(stream), endpoint);
    tokio::pin!(connection);
    loop {
        let deadline = progress.last() + idle;
        tokio::select! {
            result = &mut connection => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, "metrics: connection ended");
                }
                return;
            }
            () = tokio::time::sleep_until(deadline) => {
                if activity.waiting() {
                    // A slow render (lbd walks the conntrack table) is not the
                    // client's stall.
                    progress.touch();
                } else if progress.last() + idle <= Instant::now() {
                    tracing::debug!("metrics: connection made no progress; closed");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shed_counter_registers_with_both_reasons_at_zero_and_counts() {
        let registry = prometheus::Registry::new();
        let shed = ShedCounter::register(&registry);
        shed.add(SHED_SHORTAGE, 3);
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(
            text.contains("metrics_connections_shed_total{reason=\"limit\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("metrics_connections_shed_total{reason=\"shortage\"} 3"),
            "{text}"
        );
        // A second server on the same registry counts nothing and breaks nothing.
        let second = ShedCounter::register(&registry);
        assert!(second.0.is_none());
        second.add(SHED_LIMIT, 1);
    }
}
