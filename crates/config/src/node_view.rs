//! The effective configuration of one member.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::diagnostic::{ConfigError, Diagnostic};
use crate::model::*;
use crate::validate::{effective_unicast_peers, local_sync_address};

/// Where the kernel publishes this machine's hostname.
const HOSTNAME_FILE: &str = "/proc/sys/kernel/hostname";

/// Everything one node needs: its own priorities and addresses, resolved peers, and the
/// shared sections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    /// This node's name.
    pub name: String,
    /// Cluster name.
    pub cluster_name: String,
    /// This node.
    pub node: Node,
    /// The other member.
    pub peer: Node,
    /// Sync groups with this node's priority and resolved instances.
    pub groups: Vec<GroupView>,
    /// Services (identical on both nodes).
    pub services: Vec<Service>,
    /// SNAT rules (identical on both nodes).
    pub nat: Vec<NatRule>,
    /// Health-check definitions.
    pub checks: Vec<Check>,
    /// Connection sync with this node's and the peer's addresses.
    pub sync: SyncView,
    /// Control sockets.
    pub control: ControlSettings,
    /// Metrics listeners.
    pub metrics: MetricsSettings,
    /// Dataplane settings.
    pub dataplane: DataplaneSettings,
    /// How vrrpd runs (scheduling, locked memory).
    pub vrrpd: VrrpdSettings,
    /// The file's fingerprint ([`crate::fingerprint`]), shown by both daemons.
    #[serde(default)]
    pub fingerprint: String,
    /// How the nodes share the services.
    #[serde(default)]
    pub mode: ClusterMode,
    /// How this node announces its VIPs (active-active), `{node}` resolved.
    #[serde(default)]
    pub announce: Option<AnnounceSettings>,
    /// Every node's name, in the file's order (active-active: the cluster's members).
    #[serde(default)]
    pub members: Vec<String>,
}

/// A sync group as seen by one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupView {
    /// Group name.
    pub name: String,
    /// This node's priority for the group.
    pub priority: u8,
    /// The peer's priority for the group.
    pub peer_priority: u8,
    /// Member instances, in the group's order.
    pub instances: Vec<InstanceView>,
}

/// A VRRP instance as seen by one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceView {
    /// The shared instance settings.
    pub config: Instance,
    /// Name of its sync group.
    pub group: String,
    /// This node's priority (the group's).
    pub priority: u8,
    /// This node's addresses on the instance's interface.
    pub local_addresses: Vec<InterfaceAddress>,
    /// The peer's addresses on the instance's interface.
    pub peer_addresses: Vec<InterfaceAddress>,
    /// Source address for IPv4 adverts (IPv6 adverts use the link-local address).
    pub source_address: Option<IpAddr>,
    /// Where to send adverts when `config.unicast`; empty for multicast.
    pub unicast_peers: Vec<IpAddr>,
}

/// Connection sync for one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncView {
    /// Whether sync is on.
    pub enabled: bool,
    /// Sync interface.
    pub interface: Option<String>,
    /// UDP port.
    pub port: u16,
    /// IPVS sync id.
    pub ipvs_sync_id: u8,
    /// How long vrrpd holds back a preemption for lbd's sync, in ms (0: never).
    pub preempt_wait_ms: u32,
    /// This node's sync address.
    pub local_address: Option<IpAddr>,
    /// The peer's sync address.
    pub peer_address: Option<IpAddr>,
}

impl NodeView {
    /// One line for logs: groups with priorities and instances, and counts of the rest.
    pub fn summary(&self) -> String {
        let groups: Vec<String> = self
            .groups
            .iter()
            .map(|g| {
                let names: Vec<&str> = g.instances.iter().map(|i| i.config.name.as_str()).collect();
                format!("{} priority {} [{}]", g.name, g.priority, names.join(", "))
            })
            .collect();
        let backend = self.dataplane.backend;
        if let (ClusterMode::ActiveActive, Some(a)) = (self.mode, &self.announce) {
            let others: Vec<&str> = self
                .members
                .iter()
                .map(String::as_str)
                .filter(|m| *m != self.name)
                .collect();
            let asn = a.asn.map(|n| format!(" AS {n}")).unwrap_or_default();
            return format!(
                "cluster {}, active-active with {}, announcing through {}{asn}; {} services, {} nat rules, {} checks, backend {backend}",
                self.cluster_name,
                others.join(", "),
                a.daemon,
                self.services.len(),
                self.nat.len(),
                self.checks.len(),
            );
        }
        format!(
            "cluster {}, peer {}, groups: {}; {} services, {} nat rules, {} checks, backend {backend}",
            self.cluster_name,
            self.peer.name,
            groups.join("; "),
            self.services.len(),
            self.nat.len(),
            self.checks.len(),
        )
    }

    /// All instances of all groups.
    pub fn instances(&self) -> impl Iterator<Item = &InstanceView> {
        self.groups.iter().flat_map(|g| g.instances.iter())
    }

    /// The instance with this name.
    pub fn instance(&self, name: &str) -> Option<&InstanceView> {
        self.instances().find(|i| i.config.name == name)
    }

    /// The group with this name.
    pub fn group(&self, name: &str) -> Option<&GroupView> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// The check with this name.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

impl ClusterConfig {
    /// Names of the nodes, in file order.
    pub fn node_names(&self) -> Vec<&str> {
        self.nodes.iter().map(|n| n.name.as_str()).collect()
    }

    /// The view for `node` (a node name or hostname), or for this machine's hostname.
    pub fn node_view(&self, node: Option<&str>) -> Result<NodeView, ConfigError> {
        match node {
            Some(wanted) => {
                let idx = self
                    .nodes
                    .iter()
                    .position(|n| n.name == wanted)
                    .or_else(|| self.nodes.iter().position(|n| n.hostname == wanted));
                match idx {
                    Some(i) => Ok(self.view_of(i)),
                    None => Err(self.no_node(
                        format!("no node is named `{wanted}`"),
                        format!("use one of: {}", self.node_names().join(", ")),
                    )),
                }
            }
            None => {
                let text = std::fs::read_to_string(HOSTNAME_FILE).map_err(|e| {
                    let mut err = ConfigError::unreadable(std::path::Path::new(HOSTNAME_FILE), e);
                    if let Some(d) = err.diagnostics.first_mut() {
                        d.message = format!("cannot read this machine's hostname: {}", d.message);
                        d.fix = "pass --node with the node's name".to_string();
                    }
                    err
                })?;
                self.node_view_for_hostname(text.trim())
            }
        }
    }

    /// The view for the node whose `hostname` is `hostname` (or its first label).
    pub fn node_view_for_hostname(&self, hostname: &str) -> Result<NodeView, ConfigError> {
        let short = hostname.split('.').next().unwrap_or(hostname);
        let idx = self
            .nodes
            .iter()
            .position(|n| n.hostname == hostname)
            .or_else(|| self.nodes.iter().position(|n| n.hostname == short));
        match idx {
            Some(i) => Ok(self.view_of(i)),
            None => {
                let known: Vec<String> = self
                    .nodes
                    .iter()
                    .map(|n| format!("{} (hostname {})", n.name, n.hostname))
                    .collect();
                Err(self.no_node(
                    format!(
                        "this machine's hostname `{hostname}` matches no [[node]]; known nodes: {}",
                        known.join(", ")
                    ),
                    "pass --node with the node's name, or set `hostname` in its [[node]]"
                        .to_string(),
                ))
            }
        }
    }

    fn no_node(&self, message: String, fix: String) -> ConfigError {
        ConfigError::invalid(vec![Diagnostic {
            file: self.source_file.clone(),
            line: 0,
            column: 0,
            key: "node".to_string(),
            message,
            fix,
        }])
    }

    /// Builds the view of node `i`; the configuration is validated, so lookups succeed.
    fn view_of(&self, i: usize) -> NodeView {
        let node = &self.nodes[i];
        // Validation guarantees exactly two nodes; a lone node would be its own peer.
        let peer = self
            .nodes
            .iter()
            .enumerate()
            .find(|(j, _)| *j != i)
            .map_or(node, |(_, n)| n);
        let groups = self
            .sync_groups
            .iter()
            .map(|g| {
                let priority = node.priority.get(&g.name).copied().unwrap_or(100);
                GroupView {
                    name: g.name.clone(),
                    priority,
                    peer_priority: peer.priority.get(&g.name).copied().unwrap_or(100),
                    instances: g
                        .instances
                        .iter()
                        .filter_map(|n| self.instance(n))
                        .map(|inst| {
                            let local: Vec<InterfaceAddress> = node
                                .addresses
                                .get(&inst.interface)
                                .cloned()
                                .unwrap_or_default();
                            let source_address = if inst.is_ipv6() {
                                None
                            } else {
                                local.iter().find(|a| a.is_ipv4()).map(|a| a.address)
                            };
                            InstanceView {
                                config: inst.clone(),
                                group: g.name.clone(),
                                priority,
                                peer_addresses: peer
                                    .addresses
                                    .get(&inst.interface)
                                    .cloned()
                                    .unwrap_or_default(),
                                local_addresses: local,
                                source_address,
                                unicast_peers: if inst.unicast {
                                    effective_unicast_peers(node, peer, inst)
                                } else {
                                    Vec::new()
                                },
                            }
                        })
                        .collect(),
                }
            })
            .collect();
        let iface = self.sync.interface.as_deref();
        NodeView {
            name: node.name.clone(),
            cluster_name: self.cluster.name.clone(),
            node: node.clone(),
            peer: peer.clone(),
            groups,
            services: self.services.clone(),
            nat: self.nat.iter().map(|n| resolve_snat(n, node)).collect(),
            checks: self.checks.clone(),
            sync: SyncView {
                enabled: self.sync.enabled,
                interface: self.sync.interface.clone(),
                port: self.sync.port,
                ipvs_sync_id: self.sync.ipvs_sync_id,
                preempt_wait_ms: self.sync.preempt_wait_ms,
                local_address: iface.and_then(|f| local_sync_address(node, f)),
                peer_address: iface.and_then(|f| local_sync_address(peer, f)),
            },
            control: self.control.clone(),
            metrics: self.metrics.clone(),
            dataplane: self.dataplane.clone(),
            vrrpd: self.vrrpd,
            fingerprint: self.fingerprint.clone(),
            mode: self.cluster.mode,
            announce: self.announce.as_ref().map(|a| a.for_node(&node.name)),
            members: self.nodes.iter().map(|n| n.name.clone()).collect(),
        }
    }
}

/// A NAT rule as `node` applies it: `node_address` becomes the node's first address
/// of the rule's family on that interface (validation guarantees there is one).
fn resolve_snat(rule: &NatRule, node: &Node) -> NatRule {
    let SnatTarget::NodeAddress(iface) = &rule.snat else {
        return rule.clone();
    };
    let v6 = rule.destination.is_ipv6();
    let own = node
        .addresses
        .get(iface)
        .and_then(|l| l.iter().find(|a| a.address.is_ipv6() == v6))
        .map(|a| a.address);
    match own {
        Some(a) => NatRule {
            snat: SnatTarget::Address(a),
            ..rule.clone()
        },
        None => rule.clone(),
    }
}
