//! The checkers: async probes over tokio, one per [`Probe`] kind.

mod dns;
mod exec;
mod http;
mod syn;

pub use syn::ready as tcp_syn_ready;
mod tcp;
mod tls;

use std::sync::Arc;

pub use dns::{encode_query, judge_reply, ReplyVerdict};
use rustls::RootCertStore;
use tokio::time::Instant;

use crate::error::HealthError;
use crate::outcome::{CheckResult, FailReason};
use crate::target::{Probe, Target};

/// Runs probes; cheap to clone (the TLS configurations are shared).
#[derive(Clone)]
pub struct Checker {
    tls: Arc<tls::TlsClients>,
}

impl std::fmt::Debug for Checker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checker").finish_non_exhaustive()
    }
}

impl Checker {
    /// HTTPS checks with `verify_cert` trust the system store.
    pub fn new() -> Result<Self, HealthError> {
        Self::with_roots(tls::system_roots())
    }

    /// HTTPS checks with `verify_cert` trust `roots` only.
    pub fn with_roots(roots: RootCertStore) -> Result<Self, HealthError> {
        Ok(Self {
            tls: Arc::new(tls::TlsClients::new(roots)?),
        })
    }

    /// Probe `target` once, within its timeout.
    ///
    /// The probes other than TCP's are boxed: a running check is as large as its
    /// largest probe, and up to `max_in_flight` run at once (512 TCP checks were
    /// 3.5 MB while an HTTPS probe's state sat in each).
    pub async fn check(&self, target: &Target) -> CheckResult {
        let start = Instant::now();
        let timeout = target.check.timeout;
        let outcome = match &target.check.probe {
            // Exec enforces its own timeout: it must kill the process group.
            Probe::Exec { argv } => Box::pin(exec::probe(target, argv, timeout)).await,
            _ => tokio::time::timeout(timeout, self.network_probe(target))
                .await
                .unwrap_or(Err(FailReason::Timeout)),
        };
        let duration = start.elapsed();
        match outcome {
            Ok(()) => CheckResult::ok(duration),
            Err(reason) => CheckResult::fail(reason, duration),
        }
    }

    async fn network_probe(&self, target: &Target) -> Result<(), FailReason> {
        let addr = target.address;
        match &target.check.probe {
            Probe::Tcp => tcp::probe(addr, target.source).await,
            Probe::TcpSyn => syn::probe(addr, target.source).await,
            Probe::Http(p) => {
                Box::pin(async {
                    let request = http::request(p, &http::host_header(p, addr, 80))?;
                    let stream = tcp::connect(addr, target.source).await?;
                    http::exchange(stream, p, &request).await
                })
                .await
            }
            Probe::Https(p) => {
                Box::pin(async {
                    let request = http::request(p, &http::host_header(p, addr, 443))?;
                    let tcp = tcp::connect(addr, target.source).await?;
                    let stream = self
                        .tls
                        .connect(tcp, p.host.as_deref(), addr, p.verify_cert)
                        .await?;
                    http::exchange(stream, p, &request).await
                })
                .await
            }
            Probe::UdpDns { query_name } => {
                Box::pin(dns::probe(addr, target.source, query_name)).await
            }
            Probe::Exec { .. } => Err(FailReason::Config("exec is not a network probe".into())),
        }
    }
}
