//! The validated shape of `cluster.toml`.
//!
//! Every struct here is produced by the reader in `read.rs` only after the whole file
//! validated, so consumers can trust the invariants documented on each field.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use vrrp::checksum::ChecksumForm;
use vrrp::packet::Version;

/// The whole cluster configuration, identical on both members.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The file the configuration was read from (for messages; not part of the schema).
    #[serde(skip)]
    pub source_file: String,
    /// The file's fingerprint: the first 16 hex digits of the SHA-256 of its bytes
    /// (both daemons show it, so that a difference between what each runs shows).
    #[serde(skip)]
    pub fingerprint: String,
    /// What the file says that is accepted but probably not meant.
    #[serde(skip)]
    pub warnings: Vec<crate::Diagnostic>,
    /// `[cluster]`.
    pub cluster: ClusterSection,
    /// `[[node]]`: exactly two members.
    #[serde(rename = "node")]
    pub nodes: Vec<Node>,
    /// `[[sync_group]]`: instances that change state together.
    #[serde(rename = "sync_group")]
    pub sync_groups: Vec<SyncGroup>,
    /// `[[instance]]`: VRRP instances.
    #[serde(rename = "instance")]
    pub instances: Vec<Instance>,
    /// `[[service]]`: balanced virtual services.
    #[serde(rename = "service")]
    pub services: Vec<Service>,
    /// `[[check]]`: health-check definitions referenced by servers.
    #[serde(rename = "check")]
    pub checks: Vec<Check>,
    /// `[[nat]]`: source-NAT rules.
    #[serde(rename = "nat")]
    pub nat: Vec<NatRule>,
    /// `[sync]`: connection-state sync between the members.
    pub sync: SyncSettings,
    /// `[control]`: control sockets.
    pub control: ControlSettings,
    /// `[metrics]`: Prometheus listeners.
    pub metrics: MetricsSettings,
    /// `[dataplane]`: backend selection.
    pub dataplane: DataplaneSettings,
    /// `[vrrpd]`: how vrrpd itself runs (scheduling class, locked memory).
    #[serde(default)]
    pub vrrpd: VrrpdSettings,
    /// `[announce]`: how each node announces its VIPs to the routers (active-active
    /// mode only, where it is required).
    #[serde(default)]
    pub announce: Option<AnnounceSettings>,
}

/// `[cluster]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// Cluster name, used in logs and metrics labels.
    pub name: String,
    /// How the nodes share the services.
    #[serde(default)]
    pub mode: ClusterMode,
}

/// `[cluster] mode`: how the nodes share the services.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClusterMode {
    /// Two nodes; VRRP gives the VIPs to one of them at a time.
    #[default]
    ActiveBackup,
    /// Two or more nodes serve every service at once behind a router's ECMP: each
    /// announces the VIPs of its healthy services as host routes through a routing
    /// daemon (`[announce]`), and every node computes the same Maglev table.
    ActiveActive,
}

impl ClusterMode {
    /// Every mode.
    pub const ALL: [ClusterMode; 2] = [ClusterMode::ActiveBackup, ClusterMode::ActiveActive];

    /// "active-backup" or "active-active".
    pub fn name(self) -> &'static str {
        match self {
            ClusterMode::ActiveBackup => "active-backup",
            ClusterMode::ActiveActive => "active-active",
        }
    }
}

impl fmt::Display for ClusterMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `[announce] daemon`: the routing daemon that carries the announcements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoutingDaemon {
    /// FRR: lbd adds and removes `network <vip>/32` under `router bgp <asn>` with
    /// `vtysh`.
    Frr,
    /// BIRD 2: lbd writes the VIPs as static routes into an include file and runs
    /// `birdc configure`.
    Bird,
}

impl RoutingDaemon {
    /// Every daemon.
    pub const ALL: [RoutingDaemon; 2] = [RoutingDaemon::Frr, RoutingDaemon::Bird];

    /// "frr" or "bird".
    pub fn name(self) -> &'static str {
        match self {
            RoutingDaemon::Frr => "frr",
            RoutingDaemon::Bird => "bird",
        }
    }
}

impl fmt::Display for RoutingDaemon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The word in `[announce]` paths that stands for the node's name.
pub const NODE_PLACEHOLDER: &str = "{node}";

/// `[announce]`: how lbd announces the VIPs of this node's healthy services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnounceSettings {
    /// The routing daemon.
    pub daemon: RoutingDaemon,
    /// FRR: the AS number of the `router bgp` the `network` lines go under.
    pub asn: Option<u32>,
    /// FRR: the vtysh program.
    pub vtysh: PathBuf,
    /// FRR: the pathspace (`vtysh -N`) of the FRR instance, `{node}` replaced by the
    /// node's name; `None`: the default instance.
    pub pathspace: Option<String>,
    /// BIRD: the birdc program.
    pub birdc: PathBuf,
    /// BIRD: the control socket (`birdc -s`), `{node}` replaced; `None`: birdc's default.
    pub bird_socket: Option<PathBuf>,
    /// BIRD: the file lbd owns and rewrites; bird.conf includes it.
    pub bird_include: PathBuf,
    /// BIRD: the name of the static protocol in that file (IPv4; IPv6 gets `_v6`).
    pub bird_protocol: String,
    /// How often lbd reads back what the daemon announces and repairs it, in ms.
    pub refresh_ms: u32,
}

impl AnnounceSettings {
    /// The defaults for `daemon`.
    pub fn new(daemon: RoutingDaemon) -> Self {
        Self {
            daemon,
            asn: None,
            vtysh: PathBuf::from("/usr/bin/vtysh"),
            pathspace: None,
            birdc: PathBuf::from("/usr/sbin/birdc"),
            bird_socket: None,
            bird_include: PathBuf::from("/etc/bird/lbsuite/vips.conf"),
            bird_protocol: "lbsuite_vips".to_string(),
            refresh_ms: 5000,
        }
    }

    /// These settings with `{node}` replaced by `node` in the per-node paths.
    pub fn for_node(&self, node: &str) -> Self {
        let mut out = self.clone();
        out.pathspace = out.pathspace.map(|p| p.replace(NODE_PLACEHOLDER, node));
        out.bird_socket = out
            .bird_socket
            .map(|p| PathBuf::from(p.to_string_lossy().replace(NODE_PLACEHOLDER, node)));
        out.bird_include = PathBuf::from(
            out.bird_include
                .to_string_lossy()
                .replace(NODE_PLACEHOLDER, node),
        );
        out
    }
}

/// One member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Node name, unique.
    pub name: String,
    /// Hostname that selects this node when no `--node` is given (defaults to `name`).
    pub hostname: String,
    /// Priority per sync group name, 1..=255 (255 = address owner).
    pub priority: BTreeMap<String, u8>,
    /// Primary addresses (with prefix) per interface name.
    pub addresses: BTreeMap<String, Vec<InterfaceAddress>>,
    /// Explicit unicast peers per instance name (otherwise derived from the peer node).
    pub unicast_peers: BTreeMap<String, Vec<IpAddr>>,
    /// Local address for connection sync (otherwise the first IPv4 address on the sync interface).
    pub sync_address: Option<IpAddr>,
}

/// An address with its prefix length, such as `198.18.0.11/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InterfaceAddress {
    /// The address.
    pub address: IpAddr,
    /// The prefix length (0..=32 for IPv4, 0..=128 for IPv6).
    pub prefix_len: u8,
}

impl InterfaceAddress {
    /// Whether `other` lies inside this address's subnet.
    pub fn contains(&self, other: IpAddr) -> bool {
        match (self.address, other) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let bits = u32::from(self.prefix_len.min(32));
                let mask = if bits == 0 {
                    0
                } else {
                    u32::MAX << (32 - bits)
                };
                (u32::from(net) & mask) == (u32::from(a) & mask)
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let bits = u32::from(self.prefix_len.min(128));
                let mask = if bits == 0 {
                    0
                } else {
                    u128::MAX << (128 - bits)
                };
                (u128::from(net) & mask) == (u128::from(a) & mask)
            }
            _ => false,
        }
    }

    /// Whether this is an IPv4 address.
    pub fn is_ipv4(&self) -> bool {
        self.address.is_ipv4()
    }
}

impl fmt::Display for InterfaceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

/// Why an `address/prefix` string did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressParseError {
    /// No `/prefix` part although one is required.
    MissingPrefix,
    /// The address part is not an IP address.
    BadAddress,
    /// The prefix is not a number or too long for the family.
    BadPrefix,
}

impl fmt::Display for AddressParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MissingPrefix => "the prefix length is missing",
            Self::BadAddress => "not an IP address",
            Self::BadPrefix => "the prefix length is out of range for the address family",
        })
    }
}

impl std::error::Error for AddressParseError {}

impl InterfaceAddress {
    /// Parses `addr/len`; without `/len` a host prefix is used if `host_default`, else it is an error.
    pub fn parse(text: &str, host_default: bool) -> Result<Self, AddressParseError> {
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let address = IpAddr::from_str(addr).map_err(|_| AddressParseError::BadAddress)?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix_len = match len {
            Some(l) => match l.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(AddressParseError::BadPrefix),
            },
            None if host_default => max,
            None => return Err(AddressParseError::MissingPrefix),
        };
        Ok(Self {
            address,
            prefix_len,
        })
    }
}

impl FromStr for InterfaceAddress {
    type Err = AddressParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s, false)
    }
}

impl TryFrom<String> for InterfaceAddress {
    type Error = AddressParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s, true)
    }
}

impl From<InterfaceAddress> for String {
    fn from(a: InterfaceAddress) -> Self {
        a.to_string()
    }
}

/// Instances that change state together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncGroup {
    /// Group name, unique; node priorities are given per group.
    pub name: String,
    /// Member instance names; each instance is in exactly one group.
    pub instances: Vec<String>,
}

/// The configuration's words for the VRRPv3 IPv4 checksum forms it offers
/// (`checksum = "..."`); the forms themselves are the protocol core's.
pub const CHECKSUM_WORDS: [(&str, ChecksumForm); 2] = [
    ("pseudo-header", ChecksumForm::PseudoHeader),
    ("rfc9568", ChecksumForm::MessageOnly),
];

/// `version` as the file writes it: the number 2 or 3.
mod version_number {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};
    use vrrp::packet::Version;

    pub fn serialize<S: Serializer>(v: &Version, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(v.number())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Version, D::Error> {
        let n = u8::deserialize(d)?;
        Version::from_number(n)
            .ok_or_else(|| D::Error::custom(format!("VRRP version {n} is not 2 or 3")))
    }
}

/// `checksum` as the file writes it: one of [`CHECKSUM_WORDS`].
mod checksum_word {
    use serde::{de::Error as _, ser::Error as _, Deserialize, Deserializer, Serializer};
    use vrrp::checksum::ChecksumForm;

    use super::CHECKSUM_WORDS;

    pub fn serialize<S: Serializer>(form: &ChecksumForm, s: S) -> Result<S::Ok, S::Error> {
        match CHECKSUM_WORDS.iter().find(|(_, f)| f == form) {
            Some((word, _)) => s.serialize_str(word),
            None => Err(S::Error::custom(format!(
                "checksum form {form} has no configuration word"
            ))),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ChecksumForm, D::Error> {
        let word = String::deserialize(d)?;
        CHECKSUM_WORDS
            .iter()
            .find(|(w, _)| *w == word)
            .map(|(_, form)| *form)
            .ok_or_else(|| D::Error::custom(format!("unknown checksum {word:?}")))
    }
}

/// One virtual address of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vip {
    /// The address; the prefix defaults to a host prefix.
    pub address: InterfaceAddress,
    /// IPv4 label such as `eth0:vip` (`ip addr ... label`), at most 15 bytes.
    pub label: Option<String>,
}

/// An interface whose state lowers the priority (or faults the instance).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackInterface {
    /// Interface name.
    pub name: String,
    /// Added to the priority while the interface is down (-254..=254); 0 means go to FAULT.
    pub weight: i16,
}

/// Gratuitous ARP / unsolicited neighbour advertisement timing on becoming MASTER.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GarpSettings {
    /// Packets per burst per VIP (1..=100).
    pub count: u32,
    /// Gap between the packets of a burst in ms (0 = back to back).
    pub spacing_ms: u32,
    /// Send a periodic burst every this many seconds while MASTER (0 = never).
    pub refresh_s: u32,
    /// Send one more burst this many seconds after becoming MASTER (0 = never).
    pub repeat_after_s: u32,
}

impl Default for GarpSettings {
    fn default() -> Self {
        // keepalived's defaults: 5 back to back, a second burst 5 s later.
        Self {
            count: 5,
            spacing_ms: 0,
            refresh_s: 0,
            repeat_after_s: 5,
        }
    }
}

/// One VRRP instance (one VRID on one interface).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instance {
    /// Instance name, unique.
    pub name: String,
    /// Interface the adverts go out on and the VIPs are added to.
    pub interface: String,
    /// Virtual router id, 1..=255, unique per interface and address family.
    pub vrid: u8,
    /// Protocol version.
    #[serde(with = "version_number")]
    pub version: Version,
    /// Advertisement interval in ms (v2: whole seconds; v3: 10 ms steps up to 40950).
    pub advert_interval_ms: u32,
    /// Virtual addresses, all of one family.
    pub vips: Vec<Vip>,
    /// Whether a higher-priority backup takes over from a lower-priority master.
    pub preempt: bool,
    /// Delay before preempting, in ms.
    pub preempt_delay_ms: u32,
    /// Whether the master accepts packets addressed to the VIPs it does not own.
    pub accept_mode: bool,
    /// Tracked interfaces.
    pub track_interfaces: Vec<TrackInterface>,
    /// GARP / NA timing.
    pub garp: GarpSettings,
    /// v2 simple password (1..=8 bytes); never on v3.
    pub auth_pass: Option<String>,
    /// v3 IPv4 checksum form: one of [`CHECKSUM_WORDS`]' forms.
    #[serde(with = "checksum_word")]
    pub checksum: ChecksumForm,
    /// Send adverts unicast to the peer instead of multicast.
    pub unicast: bool,
    /// Lowest TTL / hop limit accepted on unicast adverts (255: RFC 9568 §7.1;
    /// lower only to hear a peer that sends less, such as keepalived without
    /// `unicast_ttl 255`). Multicast adverts always need 255.
    #[serde(default = "strict_ttl")]
    pub unicast_min_ttl: u8,
}

fn strict_ttl() -> u8 {
    255
}

impl Instance {
    /// Whether this instance carries IPv6 VIPs (all VIPs share one family).
    pub fn is_ipv6(&self) -> bool {
        self.vips
            .first()
            .is_some_and(|v| v.address.address.is_ipv6())
    }

    /// Whether `addr` is one of this instance's VIPs.
    pub fn holds(&self, addr: IpAddr) -> bool {
        self.vips.iter().any(|v| v.address.address == addr)
    }
}

/// A TCP/UDP port or inclusive port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PortRange {
    /// First port, 1..=65535.
    pub start: u16,
    /// Last port, `start..=65535`.
    pub end: u16,
}

impl PortRange {
    /// A single port.
    pub fn single(port: u16) -> Self {
        Self {
            start: port,
            end: port,
        }
    }

    /// Whether the ranges share a port.
    pub fn overlaps(&self, other: &PortRange) -> bool {
        self.start <= other.end && other.start <= self.end
    }

    /// Whether it is one port.
    pub fn is_single(&self) -> bool {
        self.start == self.end
    }

    /// Number of ports.
    pub fn len(&self) -> u32 {
        u32::from(self.end) - u32::from(self.start) + 1
    }

    /// Never true: a range holds at least one port.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_single() {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// Why a port range string did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortRangeError {
    /// Not `A-B` with two numbers.
    Syntax,
    /// A port is 0 or above 65535.
    OutOfRange,
    /// `A` is greater than `B`.
    Reversed {
        /// First port written.
        start: u16,
        /// Last port written.
        end: u16,
    },
}

impl fmt::Display for PortRangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax => f.write_str("not a port range of the form START-END"),
            Self::OutOfRange => f.write_str("ports must be 1..=65535"),
            Self::Reversed { start, end } => {
                write!(f, "port range start {start} is above its end {end}")
            }
        }
    }
}

impl std::error::Error for PortRangeError {}

impl FromStr for PortRange {
    type Err = PortRangeError;
    /// Parses `START-END` or a single port.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let one = |t: &str| -> Result<u16, PortRangeError> {
            let n: u32 = t.trim().parse().map_err(|_| PortRangeError::Syntax)?;
            match u16::try_from(n) {
                Ok(p) if p != 0 => Ok(p),
                _ => Err(PortRangeError::OutOfRange),
            }
        };
        let (start, end) = match s.split_once('-') {
            Some((a, b)) => (one(a)?, one(b)?),
            None => {
                let p = one(s)?;
                (p, p)
            }
        };
        if start > end {
            return Err(PortRangeError::Reversed { start, end });
        }
        Ok(Self { start, end })
    }
}

impl TryFrom<String> for PortRange {
    type Error = PortRangeError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<PortRange> for String {
    fn from(p: PortRange) -> Self {
        p.to_string()
    }
}

// The dataplane concepts below (protocol, scheduler, forwarding, backend choice) are
// one vocabulary: the configuration reads them, lbd plans with them and the dataplane
// crate applies them, all with these enums. Each spells its names in `name()` (the
// configuration's, the status output's and, for schedulers, IPVS's), and lists its
// values in `ALL` (what the configuration accepts).

/// Transport protocol of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// Every protocol.
    pub const ALL: [Protocol; 2] = [Protocol::Tcp, Protocol::Udp];

    /// "tcp" or "udp".
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    /// IANA protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }

    /// The protocol for an IANA number, if it is one of ours.
    pub fn from_number(n: u8) -> Option<Protocol> {
        Protocol::ALL.into_iter().find(|p| p.number() == n)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The scheduler of a service that names none: one every backend implements.
pub const DEFAULT_SCHEDULER: Scheduler = Scheduler::Wrr;

/// Scheduler of a service, by its IPVS name. What each backend implements is
/// declared by the backend (the dataplane crate's `Capabilities`): the nft backend
/// lacks sed and nq (it has lc and wlc through lbd's least-connection feeder), IPVS
/// lacks random.
///
/// Adding a scheduler: a variant here (with its name and its place in `ALL`), then
/// in the dataplane crate the backends that implement it (the nft layout's slot
/// selection, IPVS takes the name as is) and `Capabilities` if a backend lacks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheduler {
    /// Round robin (weights only decide in or out).
    Rr,
    /// Weighted round robin.
    Wrr,
    /// Least connections.
    Lc,
    /// Weighted least connections.
    Wlc,
    /// Source hash (nft: over weighted slots).
    Sh,
    /// Maglev consistent hash of the source address.
    Mh,
    /// Shortest expected delay.
    Sed,
    /// Never queue.
    Nq,
    /// Weighted random.
    Random,
}

impl Scheduler {
    /// Every scheduler.
    pub const ALL: [Scheduler; 9] = [
        Scheduler::Rr,
        Scheduler::Wrr,
        Scheduler::Lc,
        Scheduler::Wlc,
        Scheduler::Sh,
        Scheduler::Mh,
        Scheduler::Sed,
        Scheduler::Nq,
        Scheduler::Random,
    ];

    /// The name (the configuration's, and IPVS's for those IPVS has).
    pub fn name(self) -> &'static str {
        match self {
            Scheduler::Rr => "rr",
            Scheduler::Wrr => "wrr",
            Scheduler::Lc => "lc",
            Scheduler::Wlc => "wlc",
            Scheduler::Sh => "sh",
            Scheduler::Mh => "mh",
            Scheduler::Sed => "sed",
            Scheduler::Nq => "nq",
            Scheduler::Random => "random",
        }
    }

    /// The backends that implement it: a configuration that names another backend
    /// is refused (the dataplane crate's `Capabilities` say the same; a test there
    /// holds the two together). `wrr`, the default, is on every backend.
    pub fn backends(self) -> &'static [BackendChoice] {
        if self.needs_queue_counts() {
            &[BackendChoice::Ipvs]
        } else if self == Scheduler::Random {
            &[BackendChoice::Nft]
        } else {
            &[BackendChoice::Ipvs, BackendChoice::Nft]
        }
    }

    /// Whether it picks by per-server connection counts (lc, wlc, sed, nq): IPVS
    /// keeps them in the kernel; on nft lbd feeds them from conntrack into the
    /// service's slots (lc, wlc).
    pub fn needs_connection_counts(self) -> bool {
        matches!(
            self,
            Scheduler::Lc | Scheduler::Wlc | Scheduler::Sed | Scheduler::Nq
        )
    }

    /// Whether it needs the expected delay or idle servers of the moment (sed, nq),
    /// which only IPVS computes per connection.
    pub fn needs_queue_counts(self) -> bool {
        matches!(self, Scheduler::Sed | Scheduler::Nq)
    }
}

impl fmt::Display for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How packets reach a service's servers (IPVS's forwarding methods; the nft
/// backend does NAT only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forwarding {
    /// Destination NAT (IPVS masquerading), with SNAT rules for the return path.
    #[default]
    Nat,
    /// Direct routing: servers on the same link hold the VIP, port unchanged.
    #[serde(rename = "dr")]
    DirectRoute,
    /// IP-in-IP tunnelling.
    Tunnel,
}

impl Forwarding {
    /// Every forwarding method.
    pub const ALL: [Forwarding; 3] = [Forwarding::Nat, Forwarding::DirectRoute, Forwarding::Tunnel];

    /// "nat", "dr" or "tunnel" (the configuration's `mode`).
    pub fn name(self) -> &'static str {
        match self {
            Forwarding::Nat => "nat",
            Forwarding::DirectRoute => "dr",
            Forwarding::Tunnel => "tunnel",
        }
    }
}

impl fmt::Display for Forwarding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Client persistence of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Persistence {
    /// Seconds a client stays with its server after its last connection.
    pub timeout_s: u32,
    /// Clients in the same subnet of this length share the server (defaults to a host prefix).
    pub prefix_len: u8,
}

/// The server used when no real server is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SorryServer {
    /// Address.
    pub address: IpAddr,
    /// Port (for a port-range service: `None`, the destination port is kept).
    pub port: Option<u16>,
}

/// A real server behind a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealServer {
    /// Server name, unique within the service.
    pub name: String,
    /// Address.
    pub address: IpAddr,
    /// Port (`None` for a port-range service: the destination port is kept).
    pub port: Option<u16>,
    /// Weight 0..=[`MAX_WEIGHT`]; 0 drains the server.
    pub weight: u32,
    /// Name of a `[[check]]`; no check means always up.
    pub check: Option<String>,
}

/// The highest weight a server may have (in the file and set at run time).
pub const MAX_WEIGHT: u32 = 65_535;

/// A balanced virtual service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Service name, unique.
    pub name: String,
    /// Virtual address; must be a VIP of some instance.
    pub vip: IpAddr,
    /// Port or port range.
    pub ports: PortRange,
    /// Protocol.
    pub protocol: Protocol,
    /// Scheduler.
    pub scheduler: Scheduler,
    /// Forwarding method.
    pub mode: Forwarding,
    /// Client persistence, if any.
    pub persistence: Option<Persistence>,
    /// Fallback server, if any.
    pub sorry_server: Option<SorryServer>,
    /// Real servers.
    #[serde(rename = "server")]
    pub servers: Vec<RealServer>,
    /// A server whose check fails keeps its place with weight 0 (established
    /// connections continue); `false` removes it from the dataplane's service.
    #[serde(default = "default_true")]
    pub inhibit_on_failure: bool,
    /// Count packets and bytes per server (`vrrpctl services`, metrics). The nft
    /// backend then looks each forwarded packet up in a counter set (for every
    /// single-port service: the lookup is per table); off by default.
    #[serde(default)]
    pub counters: bool,
    /// Healthy servers this node needs for the service; below it, lbd asks vrrpd
    /// to add `quorum_priority_delta` to the priority of the VIP's sync group.
    #[serde(default)]
    pub quorum: Option<u32>,
    /// Priority change while the quorum is lost (-254..=-1).
    #[serde(default = "default_quorum_delta")]
    pub quorum_priority_delta: i16,
}

fn default_true() -> bool {
    true
}

/// Priority change while a service's quorum is lost, when not configured.
pub const DEFAULT_QUORUM_PRIORITY_DELTA: i16 = -60;

fn default_quorum_delta() -> i16 {
    DEFAULT_QUORUM_PRIORITY_DELTA
}

/// A health-check definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// No deny_unknown_fields: serde cannot combine it with the flattened kind. The TOML
// reader enforces the allowed keys itself.
pub struct Check {
    /// Check name, unique.
    pub name: String,
    /// What to probe.
    #[serde(flatten)]
    pub kind: CheckKind,
    /// Port to probe instead of the server's port.
    pub port: Option<u16>,
    /// Time between probes in ms.
    pub interval_ms: u32,
    /// Probe timeout in ms (at most the interval).
    pub timeout_ms: u32,
    /// Consecutive successes to mark a server up.
    pub rise: u32,
    /// Consecutive failures to mark a server down.
    pub fall: u32,
    /// Jitter of each interval, in percent of it (0..=50).
    #[serde(default = "default_jitter")]
    pub jitter_percent: u8,
    /// Flap dampening; `None` turns it off.
    #[serde(default = "default_dampening")]
    pub dampening: Option<FlapDampening>,
}

fn default_jitter() -> u8 {
    10
}

fn default_dampening() -> Option<FlapDampening> {
    Some(FlapDampening::default())
}

/// Flap dampening of a check: at most `max_transitions` state changes per
/// `window_ms`; a server over the limit is held down until it has passed every
/// check for `hold_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlapDampening {
    /// State changes allowed per window (2..=1000).
    pub max_transitions: u32,
    /// The sliding window in ms.
    pub window_ms: u32,
    /// Time without a failed check before a held server may come back, in ms.
    pub hold_ms: u32,
}

impl Default for FlapDampening {
    /// 4 changes per 60 s, then held until 30 s without a failure.
    fn default() -> Self {
        Self {
            max_transitions: 4,
            window_ms: 60_000,
            hold_ms: 30_000,
        }
    }
}

/// The kind of probe and its type-specific settings; the health checker runs
/// it as it is (`health::Probe`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CheckKind {
    /// TCP connect; the connection is then reset (no TIME_WAIT on the checker's side).
    Tcp,
    /// Half-open TCP: SYN, then SYN-ACK (up) or RST (down); the server never sees a
    /// connection. Needs CAP_NET_RAW.
    TcpSyn,
    /// HTTP/1.0 GET over TCP.
    Http(HttpCheck),
    /// HTTP/1.0 GET over TLS.
    Https(HttpCheck),
    /// DNS query over UDP for the A record of `query_name`.
    UdpDns {
        /// Name to ask for, such as `example.org`.
        query_name: String,
    },
    /// Run a program (no shell); exit status 0 means up.
    Exec {
        /// Program and arguments; argv[0] is an absolute path.
        argv: Vec<String>,
    },
}

/// HTTP(S) probe settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpCheck {
    /// Request path, starting with `/`.
    pub path: String,
    /// Status codes that mean up.
    pub expect_status: Vec<u16>,
    /// `Host` header (and TLS server name); defaults to the server address.
    pub host: Option<String>,
    /// Substring the body must contain (searched in its first 64 KiB).
    pub body_match: Option<String>,
    /// Verify the server certificate (HTTPS only; always false for HTTP).
    pub verify_cert: bool,
}

impl HttpCheck {
    /// `GET path` expecting 200, no `Host` override, no body match, certificate
    /// verified (for HTTPS).
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

/// Protocol matched by a SNAT rule (the dataplane's too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NatProtocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// Any protocol (no port match).
    Any,
}

impl NatProtocol {
    /// Every value.
    pub const ALL: [NatProtocol; 3] = [NatProtocol::Tcp, NatProtocol::Udp, NatProtocol::Any];

    /// "tcp", "udp" or "any".
    pub fn name(self) -> &'static str {
        match self {
            NatProtocol::Tcp => "tcp",
            NatProtocol::Udp => "udp",
            NatProtocol::Any => "any",
        }
    }
}

/// One entry of a SNAT pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnatPoolEntry {
    /// Source address (a VIP).
    pub address: IpAddr,
    /// Source ports to use (`None` = the kernel's choice).
    pub ports: Option<PortRange>,
}

/// The source a SNAT rule rewrites to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnatTarget {
    /// One address (a VIP).
    Address(IpAddr),
    /// Several addresses / port ranges, to avoid the ~64k concurrent-connection cap.
    Pool(Vec<SnatPoolEntry>),
    /// Each node's own first address (of the rule's family) on this interface
    /// (active-active mode: no address moves between nodes). A node's view holds
    /// the resolved [`SnatTarget::Address`] instead.
    NodeAddress(String),
}

impl SnatTarget {
    /// All source addresses of the target (none for a node address not yet resolved).
    pub fn addresses(&self) -> Vec<IpAddr> {
        match self {
            Self::Address(a) => vec![*a],
            Self::Pool(p) => p.iter().map(|e| e.address).collect(),
            Self::NodeAddress(_) => Vec::new(),
        }
    }
}

/// A source-NAT rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatRule {
    /// Rule name, unique.
    pub name: String,
    /// Interface the traffic arrived on.
    pub in_interface: Option<String>,
    /// Interface the traffic leaves by (where the SNAT VIP lives).
    pub out_interface: Option<String>,
    /// Protocol.
    pub protocol: NatProtocol,
    /// Original destination address (typically a service VIP).
    pub destination: IpAddr,
    /// Original destination port(s); `None` matches every port.
    pub destination_ports: Option<PortRange>,
    /// New source.
    pub snat: SnatTarget,
}

/// `[sync]`: connection-state sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncSettings {
    /// Whether connection state is synced.
    pub enabled: bool,
    /// Interface carrying the sync traffic (required when enabled).
    pub interface: Option<String>,
    /// UDP port for the sync stream.
    pub port: u16,
    /// IPVS sync daemon id, 0..=255.
    pub ipvs_sync_id: u8,
    /// How long vrrpd holds back a preemption while lbd lacks the peer's connection
    /// state, in ms (0: does not hold).
    pub preempt_wait_ms: u32,
}

/// Default `[sync] preempt_wait_ms`.
pub const DEFAULT_PREEMPT_WAIT_MS: u32 = 30_000;
/// Largest `[sync] preempt_wait_ms`.
pub const MAX_PREEMPT_WAIT_MS: u32 = 600_000;

impl Default for SyncSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            interface: None,
            port: 8848,
            ipvs_sync_id: 0,
            preempt_wait_ms: DEFAULT_PREEMPT_WAIT_MS,
        }
    }
}

/// Default vrrpd control socket.
pub const DEFAULT_VRRPD_SOCKET: &str = "/run/lbsuite/vrrpd.sock";
/// Default lbd control socket.
pub const DEFAULT_LBD_SOCKET: &str = "/run/lbsuite/lbd.sock";

/// `[control]`: control sockets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlSettings {
    /// vrrpd's socket path.
    pub vrrpd_socket: PathBuf,
    /// lbd's socket path.
    pub lbd_socket: PathBuf,
    /// Group allowed to use the sockets (`None` = owner only).
    pub group: Option<String>,
    /// How long vrrpd waits for lbd's prepare acknowledgement on takeover, in ms.
    pub prepare_budget_ms: u32,
    /// Connections each socket serves at once; more are refused (the peer
    /// daemon's connections have a reserve of their own beyond this).
    pub max_connections: u32,
    /// How long a connection may send nothing (no request under way, not
    /// subscribed) before the daemon closes it, in ms.
    pub idle_timeout_ms: u32,
    /// Where vrrpd keeps the run-time state an operator set (maintenance,
    /// priority overrides); `None`: `$STATE_DIRECTORY` (systemd's
    /// `StateDirectory=`), else beside the control socket.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
}

/// Default `control.max_connections`.
pub const DEFAULT_CONTROL_MAX_CONNECTIONS: u32 = 64;
/// Default `control.idle_timeout_ms`.
pub const DEFAULT_CONTROL_IDLE_TIMEOUT_MS: u32 = 30_000;

impl Default for ControlSettings {
    fn default() -> Self {
        Self {
            vrrpd_socket: PathBuf::from(DEFAULT_VRRPD_SOCKET),
            lbd_socket: PathBuf::from(DEFAULT_LBD_SOCKET),
            group: None,
            prepare_budget_ms: 50,
            max_connections: DEFAULT_CONTROL_MAX_CONNECTIONS,
            idle_timeout_ms: DEFAULT_CONTROL_IDLE_TIMEOUT_MS,
            state_dir: None,
        }
    }
}

/// `[metrics]`: Prometheus listeners.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// Whether the daemons serve `/metrics`.
    pub enabled: bool,
    /// vrrpd's listen address.
    pub vrrpd_listen: SocketAddr,
    /// lbd's listen address.
    pub lbd_listen: SocketAddr,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            vrrpd_listen: SocketAddr::from(([127, 0, 0, 1], 9612)),
            lbd_listen: SocketAddr::from(([127, 0, 0, 1], 9613)),
        }
    }
}

/// Dataplane backend choice (`[dataplane] backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// IPVS when the kernel has it (and the services need nothing only nft does),
    /// else nftables.
    Auto,
    /// IPVS, or fail.
    Ipvs,
    /// nftables.
    Nft,
}

impl BackendChoice {
    /// Every choice.
    pub const ALL: [BackendChoice; 3] =
        [BackendChoice::Auto, BackendChoice::Ipvs, BackendChoice::Nft];

    /// "auto", "ipvs" or "nft".
    pub fn name(self) -> &'static str {
        match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Ipvs => "ipvs",
            BackendChoice::Nft => "nft",
        }
    }
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `[dataplane]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataplaneSettings {
    /// Backend.
    pub backend: BackendChoice,
    /// Name of the nftables table the suite owns (SNAT rules, and the nft balancer).
    pub nft_table: String,
    /// nftables' software flowtable for the nft backend's established balanced
    /// connections (table `inet <nft_table>_flow`); off by default.
    #[serde(default)]
    pub flowtable: bool,
    /// The flowtable's interfaces; empty: those of this node's VRRP instances and
    /// SNAT rules ([`DataplaneSettings::flowtable_devices_of`]).
    #[serde(default)]
    pub flowtable_devices: Vec<String>,
}

impl DataplaneSettings {
    /// The interfaces the flowtable spans: `flowtable_devices` when given, else
    /// every interface of `instances` and of the SNAT rules' `in_interface` and
    /// `out_interface` (the interfaces lbd forwards between), sorted, each once.
    pub fn flowtable_devices_of<'a>(
        &self,
        instances: impl IntoIterator<Item = &'a Instance>,
        nat: &[NatRule],
    ) -> Vec<String> {
        if !self.flowtable_devices.is_empty() {
            return self.flowtable_devices.clone();
        }
        let mut d: Vec<String> = instances
            .into_iter()
            .map(|i| i.interface.clone())
            .chain(
                nat.iter()
                    .flat_map(|n| n.in_interface.iter().chain(&n.out_interface).cloned()),
            )
            .collect();
        d.sort();
        d.dedup();
        d
    }
}

impl Default for DataplaneSettings {
    fn default() -> Self {
        Self {
            backend: BackendChoice::Auto,
            nft_table: "lbsuite".to_string(),
            flowtable: false,
            flowtable_devices: Vec::new(),
        }
    }
}

/// Default `[vrrpd] realtime_priority`: real-time, but below the kernel's own
/// real-time threads (migration, watchdog at 99, threaded IRQs at 50).
pub const DEFAULT_REALTIME_PRIORITY: u8 = 20;
/// Largest `[vrrpd] realtime_priority` (the kernel's highest real-time priority).
pub const MAX_REALTIME_PRIORITY: u8 = 99;

/// `[vrrpd]`: how vrrpd itself runs, so that its adverts keep their timing while
/// other work saturates the CPUs. Read at start-up only (a reload reports a change).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VrrpdSettings {
    /// Real-time priority (SCHED_RR) of vrrpd's event-loop thread, 1..=99; 0 keeps
    /// normal scheduling (vrrpd leaves the scheduling it was started with alone).
    /// keepalived's `vrrp_rt_priority`.
    pub realtime_priority: u8,
    /// Lock vrrpd's memory into RAM (`mlockall(MCL_CURRENT | MCL_FUTURE)`), so that
    /// an advert never waits for a page to come back from swap. keepalived's
    /// `vrrp_no_swap`.
    pub lock_memory: bool,
    /// A Master_Down_Timer that fires more than half an advert interval late (vrrpd
    /// itself was held up: a stalled or throttled machine) waits one more advert
    /// interval, once, for the master's adverts the same stall held up. Applies at
    /// a reload too.
    pub late_timer_grace: bool,
}

impl Default for VrrpdSettings {
    fn default() -> Self {
        Self {
            realtime_priority: DEFAULT_REALTIME_PRIORITY,
            lock_memory: true,
            late_timer_grace: true,
        }
    }
}

impl ClusterConfig {
    /// The instance with this name.
    pub fn instance(&self, name: &str) -> Option<&Instance> {
        self.instances.iter().find(|i| i.name == name)
    }

    /// The sync group containing this instance.
    pub fn group_of(&self, instance: &str) -> Option<&SyncGroup> {
        self.sync_groups
            .iter()
            .find(|g| g.instances.iter().any(|i| i == instance))
    }

    /// The check definition with this name.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// The node with this name.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The instance whose VIPs include `addr`.
    pub fn instance_holding(&self, addr: IpAddr) -> Option<&Instance> {
        self.instances.iter().find(|i| i.holds(addr))
    }
}

#[cfg(test)]
mod vocabulary_tests {
    use super::*;

    /// Each value's name is its serialised form, and the names are distinct (the
    /// configuration reads by name, the dataplane's desired state serialises by serde).
    fn check<T: Copy + Serialize>(all: &[T], name: fn(T) -> &'static str) {
        let mut seen = std::collections::BTreeSet::new();
        for &v in all {
            assert_eq!(serde_json::to_value(v).unwrap(), name(v));
            assert!(seen.insert(name(v)), "{} twice", name(v));
        }
    }

    #[test]
    fn names_are_the_serialised_forms() {
        check(&Protocol::ALL, Protocol::name);
        check(&Scheduler::ALL, Scheduler::name);
        check(&Forwarding::ALL, Forwarding::name);
        check(&BackendChoice::ALL, BackendChoice::name);
        check(&NatProtocol::ALL, NatProtocol::name);
        assert_eq!(Protocol::from_number(17), Some(Protocol::Udp));
        assert_eq!(Protocol::from_number(1), None);
    }
}
