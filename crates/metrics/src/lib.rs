//! The Prometheus `/metrics` endpoint of vrrpd and lbd: a small HTTP server on its
//! own thread that renders a [`prometheus::Registry`] in the text format.
//!
//! Loopback by default (the daemons' config says where); anything but `GET /metrics`
//! (and `/` for a pointer) gets 404, so the port exposes nothing else.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;

use prometheus::{Encoder, Registry, TextEncoder};

pub use prometheus;

/// Failures of the metrics endpoint.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The listen address could not be bound.
    #[error("metrics: cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// What the server library said.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The serving thread could not be started.
    #[error("metrics: cannot start the server thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// A running `/metrics` endpoint; stops when dropped.
pub struct MetricsServer {
    server: Arc<tiny_http::Server>,
    addr: SocketAddr,
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
    /// Serves `registry` at `http://addr/metrics` (port 0 picks a free port).
    pub fn start(addr: SocketAddr, registry: Registry) -> Result<Self, MetricsError> {
        let server =
            tiny_http::Server::http(addr).map_err(|source| MetricsError::Bind { addr, source })?;
        let addr = server.server_addr().to_ip().unwrap_or(addr);
        let server = Arc::new(server);
        let serving = Arc::clone(&server);
        let thread = thread::Builder::new()
            .name("metrics".into())
            .spawn(move || serve(&serving, &registry))
            .map_err(MetricsError::Thread)?;
        tracing::info!(%addr, "metrics: serving /metrics");
        Ok(MetricsServer {
            server,
            addr,
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
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(server: &tiny_http::Server, registry: &Registry) {
    for request in server.incoming_requests() {
        let response = respond(request.method(), request.url(), registry);
        // A client that hung up is not the daemon's problem.
        let _ = request.respond(response);
        release_freed_memory();
    }
}

/// A scrape of a large registry builds every metric family and the whole text at
/// once (tens of MB at 10,000 backends) and frees it all after the response; glibc
/// keeps freed pages of this thread's arena resident unless asked to give them back.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn respond(
    method: &tiny_http::Method,
    url: &str,
    registry: &Registry,
) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let path = url.split('?').next().unwrap_or(url);
    match (method, path) {
        (tiny_http::Method::Get, "/metrics") => {
            let encoder = TextEncoder::new();
            let mut body = Vec::new();
            if let Err(err) = encoder.encode(&registry.gather(), &mut body) {
                return text(500, format!("encoding metrics failed: {err}\n"));
            }
            let mut response = tiny_http::Response::from_data(body);
            if let Ok(header) = tiny_http::Header::from_bytes("Content-Type", encoder.format_type())
            {
                response.add_header(header);
            }
            response
        }
        (tiny_http::Method::Get, "/") => text(200, "see /metrics\n".into()),
        _ => text(404, "not found; try GET /metrics\n".into()),
    }
}

fn text(code: u16, body: String) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    tiny_http::Response::from_string(body).with_status_code(code)
}
