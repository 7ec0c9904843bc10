//! What to check: a server of a service, its address and the check spec.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::schedule::Dampening;

/// Identity of a target: the service and the server within it. The names are
/// shared (a service's targets share its name; the scheduler's index shares both).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetName {
    /// Service name.
    pub service: Arc<str>,
    /// Server name, unique within the service.
    pub server: Arc<str>,
}

impl TargetName {
    /// A name from its parts.
    pub fn new(service: impl AsRef<str>, server: impl AsRef<str>) -> Self {
        Self {
            service: Arc::from(service.as_ref()),
            server: Arc::from(server.as_ref()),
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
    /// How and how often to probe; shared by the targets of one `[[check]]` (a
    /// spec is a few hundred bytes, 80,000 targets have a handful).
    pub check: Arc<CheckSpec>,
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

/// The kind of probe with its settings: the configuration's `[[check]]` type, one
/// vocabulary for the file and the checker (`crates/config`, `CheckKind`).
pub type Probe = config::CheckKind;

/// HTTP(S) probe settings (`crates/config`, `HttpCheck`).
pub type HttpProbe = config::HttpCheck;
