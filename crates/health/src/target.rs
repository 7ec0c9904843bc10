//! What to check: a server of a service, its address and the check spec.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::schedule::Dampening;

/// Identity of a target: the service and the server within it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetName {
    /// Service name.
    pub service: String,
    /// Server name, unique within the service.
    pub server: String,
}

impl TargetName {
    /// A name from its parts.
    pub fn new(service: impl Into<String>, server: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            server: server.into(),
        }
    }
}

impl fmt::Display for TargetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.service, self.server)
    }
}

/// One server to check: where, from where, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Identity (service, server).
    pub name: TargetName,
    /// Address and port the probe goes to (the check's port, else the server's).
    pub address: SocketAddr,
    /// Local address to bind before connecting, so checks leave from the
    /// server-side interface; `None` lets the kernel choose.
    pub source: Option<IpAddr>,
    /// How and how often to probe.
    pub check: CheckSpec,
}

/// How and how often a target is probed, and how results become a state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSpec {
    /// The probe.
    pub probe: Probe,
    /// Time between probes.
    pub interval: Duration,
    /// Time a probe may take before it counts as failed.
    pub timeout: Duration,
    /// Consecutive successes that bring a Down target Up.
    pub rise: u32,
    /// Consecutive failures that bring an Up target Down.
    pub fall: u32,
    /// Jitter in thousandths of the interval; `None`: the scheduler's.
    pub jitter_permille: Option<u16>,
    /// Flap dampening of this target.
    pub dampening: TargetDampening,
}

impl CheckSpec {
    /// A spec with the scheduler's jitter and flap dampening.
    pub fn new(
        probe: Probe,
        interval: Duration,
        timeout: Duration,
        rise: u32,
        fall: u32,
    ) -> CheckSpec {
        CheckSpec {
            probe,
            interval,
            timeout,
            rise,
            fall,
            jitter_permille: None,
            dampening: TargetDampening::Scheduler,
        }
    }
}

/// Flap dampening of one target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TargetDampening {
    /// The scheduler's setting.
    #[default]
    Scheduler,
    /// None for this target.
    Off,
    /// This limit.
    Limit(Dampening),
}

/// The kind of probe with its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// TCP connect; the connection is then reset (no TIME_WAIT on our side).
    Tcp,
    /// Half-open TCP: a SYN from a raw socket, up on SYN-ACK, down on RST (the
    /// server never sees a connection; needs CAP_NET_RAW).
    TcpSyn,
    /// HTTP/1.0 GET over TCP.
    Http(HttpProbe),
    /// HTTP/1.0 GET over TLS.
    Https(HttpProbe),
    /// DNS query over UDP for the A record of `query_name`.
    UdpDns {
        /// Name to ask for, such as `example.org`.
        query_name: String,
    },
    /// A program run without a shell; exit status 0 means up.
    Exec {
        /// Program (absolute path) and its arguments.
        argv: Vec<String>,
    },
}

/// HTTP(S) probe settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpProbe {
    /// Request path, starting with `/`.
    pub path: String,
    /// Status codes that mean up.
    pub expect_status: Vec<u16>,
    /// `Host` header (and TLS server name); defaults to the target address.
    pub host: Option<String>,
    /// Substring the body must contain (searched in its first 64 KiB).
    pub body_match: Option<String>,
    /// Verify the certificate against the system trust store (HTTPS only).
    pub verify_cert: bool,
}

impl HttpProbe {
    /// `GET /` expecting 200, no body match, certificate verified.
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            expect_status: vec![200],
            host: None,
            body_match: None,
            verify_cert: true,
        }
    }
}
