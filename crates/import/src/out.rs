//! cluster.toml as the file writes it (`port` or `port_range`, `snat = { address }`,
//! checks with a `type`), serialised by serde. The configuration crate's model
//! serialises its validated form, which is not the file's; these structs are the
//! file's, and the output is read back through `config::parse` before it is written.

use std::collections::BTreeMap;

use serde::Serialize;

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_true(b: &bool) -> bool {
    *b
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterFile {
    /// `[cluster]`.
    pub cluster: ClusterOut,
    /// `[[node]]`, two.
    pub node: Vec<NodeOut>,
    /// `[[sync_group]]`.
    pub sync_group: Vec<GroupOut>,
    /// `[[instance]]`.
    pub instance: Vec<InstanceOut>,
    /// `[[service]]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub service: Vec<ServiceOut>,
    /// `[[check]]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub check: Vec<CheckOut>,
    /// `[[nat]]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nat: Vec<NatOut>,
    /// `[sync]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncOut>,
    /// `[dataplane]`.
    pub dataplane: DataplaneOut,
    /// `[vrrpd]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vrrpd: Option<VrrpdOut>,
}

/// `[cluster]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterOut {
    /// Cluster name.
    pub name: String,
}

/// One `[[node]]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeOut {
    /// Node name.
    pub name: String,
    /// Hostname that selects it.
    pub hostname: String,
    /// Priority per sync group.
    pub priority: BTreeMap<String, u8>,
    /// `address/prefix` per interface.
    pub addresses: BTreeMap<String, Vec<String>>,
    /// Unicast peers per instance.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub unicast_peers: BTreeMap<String, Vec<String>>,
}

/// One `[[sync_group]]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupOut {
    /// Group name.
    pub name: String,
    /// Member instances.
    pub instances: Vec<String>,
}

/// One VIP: a string, or a table with a label.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum VipOut {
    /// `"198.18.0.100/24"`.
    Plain(String),
    /// `{ address = "...", label = "eth0:vip" }`.
    Labelled {
        /// Address with prefix.
        address: String,
        /// IPv4 label.
        label: String,
    },
}

/// A tracked interface.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrackOut {
    /// Interface.
    pub name: String,
    /// Priority change while it is down; 0 = FAULT.
    pub weight: i16,
}

/// GARP / NA timing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GarpOut {
    /// Packets per burst.
    pub count: u32,
    /// Gap inside a burst.
    pub spacing_ms: u32,
    /// One more burst this long after becoming MASTER.
    pub repeat_after_s: u32,
    /// A burst every this many seconds while MASTER.
    pub refresh_s: u32,
}

impl Default for GarpOut {
    /// cluster.toml's defaults, which are keepalived's.
    fn default() -> Self {
        Self {
            count: 5,
            spacing_ms: 0,
            repeat_after_s: 5,
            refresh_s: 0,
        }
    }
}

/// One `[[instance]]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceOut {
    /// Instance name.
    pub name: String,
    /// Interface.
    pub interface: String,
    /// VRID.
    pub vrid: u8,
    /// 2 or 3.
    pub version: u8,
    /// Advert interval.
    pub advert_interval_ms: u32,
    /// VIPs.
    pub vips: Vec<VipOut>,
    /// Preemption.
    pub preempt: bool,
    /// Delay before preempting.
    #[serde(skip_serializing_if = "is_zero")]
    pub preempt_delay_ms: u32,
    /// Accept_Mode.
    #[serde(skip_serializing_if = "is_false")]
    pub accept_mode: bool,
    /// Tracked interfaces.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub track_interfaces: Vec<TrackOut>,
    /// GARP / NA timing.
    pub garp: GarpOut,
    /// v2 password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_pass: Option<String>,
    /// Unicast adverts.
    #[serde(skip_serializing_if = "is_false")]
    pub unicast: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// `persistence = { ... }`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PersistenceOut {
    /// Timeout.
    pub timeout_s: u32,
    /// Client subnet length.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix_len: Option<u8>,
}

/// `sorry_server = { ... }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SorryOut {
    /// Address.
    pub address: String,
    /// Port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// One `[[service.server]]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerOut {
    /// Name.
    pub name: String,
    /// Address.
    pub address: String,
    /// Port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Weight.
    pub weight: u32,
    /// Check name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
}

/// One `[[service]]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceOut {
    /// Name.
    pub name: String,
    /// VIP.
    pub vip: String,
    /// Single port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Port range.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_range: Option<String>,
    /// "tcp" / "udp".
    pub protocol: String,
    /// Scheduler name.
    pub scheduler: String,
    /// "nat" / "dr" / "tunnel".
    pub mode: String,
    /// Persistence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persistence: Option<PersistenceOut>,
    /// Sorry server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sorry_server: Option<SorryOut>,
    /// Keep a failed server with weight 0 (true) or remove it.
    #[serde(skip_serializing_if = "is_true")]
    pub inhibit_on_failure: bool,
    /// Healthy servers needed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quorum: Option<u32>,
    /// Servers.
    pub server: Vec<ServerOut>,
}

/// One `[[check]]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct CheckOut {
    /// Name.
    pub name: String,
    /// tcp, http, https, udp_dns, exec.
    #[serde(rename = "type")]
    pub kind: String,
    /// Port to probe instead of the server's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Interval.
    pub interval_ms: u32,
    /// Timeout.
    pub timeout_ms: u32,
    /// Successes to go up.
    pub rise: u32,
    /// Failures to go down.
    pub fall: u32,
    /// HTTP path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// HTTP statuses meaning up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect_status: Option<Vec<u16>>,
    /// HTTP Host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Body substring.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_match: Option<String>,
    /// HTTPS certificate verification.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify_cert: Option<bool>,
    /// DNS query name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_name: Option<String>,
    /// exec argv.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
}

impl CheckOut {
    /// A check of `kind` with its timing and counts, nothing type-specific yet
    /// (the name is given when it is settled).
    pub fn new(kind: &str, interval_ms: u32, timeout_ms: u32, rise: u32, fall: u32) -> Self {
        Self {
            name: String::new(),
            kind: kind.to_string(),
            port: None,
            interval_ms,
            timeout_ms,
            rise,
            fall,
            path: None,
            expect_status: None,
            host: None,
            body_match: None,
            verify_cert: None,
            query_name: None,
            argv: None,
        }
    }
}

/// A SNAT pool entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolEntryOut {
    /// Address.
    pub address: String,
    /// Source ports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports: Option<String>,
}

/// `snat = { address }` or `snat = { pool = [...] }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SnatOut {
    /// One address.
    Address(String),
    /// A pool.
    Pool(Vec<PoolEntryOut>),
}

/// One `[[nat]]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NatOut {
    /// Name.
    pub name: String,
    /// Arrival interface.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_interface: Option<String>,
    /// Leaving interface.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_interface: Option<String>,
    /// tcp, udp, any.
    pub protocol: String,
    /// Original destination.
    pub destination: String,
    /// Original destination port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination_port: Option<u16>,
    /// Original destination ports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination_port_range: Option<String>,
    /// New source.
    pub snat: SnatOut,
}

/// `[sync]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyncOut {
    /// Enabled.
    pub enabled: bool,
    /// Interface.
    pub interface: String,
    /// IPVS sync id.
    pub ipvs_sync_id: u8,
}

/// `[dataplane]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DataplaneOut {
    /// Backend.
    pub backend: String,
}

/// `[vrrpd]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct VrrpdOut {
    /// SCHED_RR priority.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub realtime_priority: Option<u8>,
    /// mlockall.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_memory: Option<bool>,
}
