//! Desired state: what the balancer should do, as plain data (lbd builds it from config,
//! health and role).

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The configuration's enums: one vocabulary from `cluster.toml` to the kernel.
pub use config::{Forwarding, NatProtocol, Protocol, Scheduler};

/// Everything the dataplane should hold: balanced services and source-NAT rules.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredState {
    /// Balanced services (DNAT).
    pub services: Vec<Service>,
    /// Source-NAT rules, evaluated in this order.
    pub snat: Vec<SnatRule>,
}

/// One balanced service: a VIP, ports, a protocol, a scheduler and its backends.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Service {
    /// Service name (for counters and errors).
    pub name: String,
    /// The virtual address clients connect to.
    pub vip: IpAddr,
    /// Destination port or port range.
    pub ports: PortSpec,
    /// Transport protocol.
    pub protocol: Protocol,
    /// How a new connection picks a backend.
    pub scheduler: Scheduler,
    /// Backends; weight 0 drains one (no new connections, existing ones continue).
    pub backends: Vec<Backend>,
    /// How packets reach the backends (IPVS); the nft backend NATs only.
    #[serde(default)]
    pub forward: Forwarding,
    /// Client persistence (IPVS); `None`: every connection is scheduled afresh.
    #[serde(default)]
    pub persistence: Option<Persistence>,
}

/// Client persistence: a client (network) keeps its backend between connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Persistence {
    /// Seconds a client stays with its backend after its last connection.
    pub timeout_s: u32,
    /// Clients in one network of this prefix length share a backend (32/128: per address).
    pub prefix_len: u8,
}

/// One real server of a service.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Backend {
    /// Backend name (stable identity: Maglev hashes it).
    pub name: String,
    /// Backend address (same family as the VIP).
    pub addr: IpAddr,
    /// Backend port; `None` keeps the client's destination port (required for ranges).
    pub port: Option<u16>,
    /// Relative weight; 0 takes the backend out of new-connection scheduling.
    pub weight: u32,
}

/// A single port or an inclusive port range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PortSpec {
    /// One port.
    Single(u16),
    /// Inclusive range `first..=last`.
    Range(u16, u16),
}

impl PortSpec {
    /// First and last port.
    pub fn bounds(self) -> (u16, u16) {
        match self {
            PortSpec::Single(p) => (p, p),
            PortSpec::Range(a, b) => (a, b),
        }
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortSpec::Single(p) => write!(f, "{p}"),
            PortSpec::Range(a, b) => write!(f, "{a}-{b}"),
        }
    }
}

/// One source-NAT rule: traffic as it arrived (original destination) gets a new source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnatRule {
    /// Rule name.
    pub name: String,
    /// Interface the traffic came in on.
    pub in_iface: Option<String>,
    /// Interface the traffic leaves by.
    pub out_iface: Option<String>,
    /// Protocol to match.
    pub protocol: NatProtocol,
    /// Original destination address (the service VIP).
    pub orig_daddr: IpAddr,
    /// Original destination port(s); `None` matches any.
    pub orig_dports: Option<PortSpec>,
    /// The new source.
    pub source: SnatSource,
}

/// New source of a SNAT rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnatSource {
    /// One address; the kernel picks source ports.
    Address(IpAddr),
    /// Addresses, each with an optional inclusive source-port range, used in turn.
    Pool(Vec<(IpAddr, Option<(u16, u16)>)>),
}
