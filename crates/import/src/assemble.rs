//! From what an input says to a whole cluster.toml: the two nodes (names,
//! priorities, addresses, unicast peers), with a placeholder wherever the input
//! does not say what the schema requires, then serialised and validated.

use std::collections::BTreeMap;
use std::net::IpAddr;

use config::InterfaceAddress;

use crate::net;
use crate::out::{
    CheckOut, ClusterFile, ClusterOut, DataplaneOut, GroupOut, InstanceOut, NatOut, NodeOut,
    ServiceOut, SyncOut, VipOut, VrrpdOut,
};
use crate::report::{Loc, Report};
use crate::{Format, ImportError, Imported, Options};

/// What an input maps to, apart from the nodes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Draft {
    /// The cluster's name, if the input has one.
    pub cluster_name: Option<String>,
    /// Sync groups.
    pub groups: Vec<GroupOut>,
    /// Instances.
    pub instances: Vec<InstanceOut>,
    /// Services.
    pub services: Vec<ServiceOut>,
    /// Checks.
    pub checks: Vec<CheckOut>,
    /// SNAT rules.
    pub nat: Vec<NatOut>,
    /// Connection sync.
    pub sync: Option<SyncOut>,
    /// vrrpd's own settings.
    pub vrrpd: Option<VrrpdOut>,
    /// Dataplane backend.
    pub backend: String,
}

/// What an input says about one node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeFacts {
    /// Its name (keepalived's `router_id`).
    pub name: Option<String>,
    /// Where the input names it.
    pub at: Option<Loc>,
    /// Priority per sync group.
    pub priority: BTreeMap<String, u8>,
    /// Its own addresses per interface (keepalived's `unicast_src_ip`).
    pub addresses: BTreeMap<String, Vec<IpAddr>>,
    /// Unicast peers per instance.
    pub unicast_peers: BTreeMap<String, Vec<IpAddr>>,
}

/// Default priorities of the first and second node when the input has none.
const DEFAULT_PRIORITIES: [u8; 2] = [150, 100];

pub(crate) fn finish(
    format: Format,
    sources: &[String],
    draft: Draft,
    facts: [NodeFacts; 2],
    options: &Options,
    mut report: Report,
) -> Result<Imported, ImportError> {
    let names = node_names(&facts, options, &mut report)?;
    let mut placeholders: Vec<String> = Vec::new();
    let addresses = node_addresses(
        &draft,
        &facts,
        &names,
        options,
        &mut report,
        &mut placeholders,
    )?;
    let mut draft = draft;
    if let Some(sync) = &draft.sync {
        let missing = addresses.iter().any(|a| {
            !a.get(&sync.interface)
                .is_some_and(|l| l.iter().any(|x| x.is_ipv4()))
        });
        if missing {
            report.assumed(
                None,
                "[sync]",
                format!(
                    "left out: no IPv4 address of the nodes on {} is known; set [sync] enabled = true, interface = \"{}\" once the nodes' addresses there are in the file",
                    sync.interface, sync.interface
                ),
            );
            draft.sync = None;
        }
    }
    let mut nodes = Vec::new();
    for (k, f) in facts.iter().enumerate() {
        let mut priority = BTreeMap::new();
        for g in &draft.groups {
            let p = match f.priority.get(&g.name) {
                Some(p) => *p,
                None => {
                    report.assumed(
                        None,
                        format!("node {} priority for sync group {}", names[k], g.name),
                        format!("{} (the input gives none)", DEFAULT_PRIORITIES[k]),
                    );
                    DEFAULT_PRIORITIES[k]
                }
            };
            priority.insert(g.name.clone(), p);
        }
        let unicast: Vec<&str> = draft
            .instances
            .iter()
            .filter(|i| i.unicast)
            .map(|i| i.name.as_str())
            .collect();
        let unicast_peers = f
            .unicast_peers
            .iter()
            .filter(|(i, p)| unicast.contains(&i.as_str()) && !p.is_empty())
            .map(|(i, p)| (i.clone(), p.iter().map(ToString::to_string).collect()))
            .collect();
        nodes.push(NodeOut {
            name: names[k].clone(),
            hostname: names[k].clone(),
            priority,
            addresses: addresses[k]
                .iter()
                .map(|(i, l)| (i.clone(), l.iter().map(ToString::to_string).collect()))
                .collect(),
            unicast_peers,
        });
    }
    let file = ClusterFile {
        cluster: ClusterOut {
            name: options
                .cluster_name
                .clone()
                .or(draft.cluster_name.clone())
                .unwrap_or_else(|| "imported".to_string()),
        },
        node: nodes,
        sync_group: draft.groups,
        instance: draft.instances,
        service: draft.services,
        check: draft.checks,
        nat: draft.nat,
        sync: draft.sync,
        dataplane: DataplaneOut {
            backend: draft.backend,
        },
        vrrpd: draft.vrrpd,
    };
    let body = toml::to_string(&file).map_err(|e| ImportError::Invalid {
        diagnostics: format!("cannot serialise the configuration: {e}"),
        text: String::new(),
    })?;
    let text = format!("{}{body}", header(format, sources, &report, &placeholders));
    let shown_as = options
        .output_name
        .as_deref()
        .unwrap_or("imported cluster.toml");
    if let Err(err) = config::parse(&text, shown_as) {
        return Err(ImportError::Invalid {
            diagnostics: err.to_string(),
            text,
        });
    }
    Ok(Imported { text, file, report })
}

fn header(format: Format, sources: &[String], report: &Report, placeholders: &[String]) -> String {
    use crate::ItemKind;
    let mut h = format!(
        "# cluster.toml imported by `vrrpctl import {format}` from {}.\n\
         # Read the import report before using it: {} item(s) of the input could not be\n\
         # mapped, {} differ between the nodes' files, {} value(s) were assumed.\n",
        sources.join(" and "),
        report.count(ItemKind::Unmapped),
        report.count(ItemKind::Differs),
        report.count(ItemKind::Assumed),
    );
    if !placeholders.is_empty() {
        h.push_str("# PLACEHOLDERS, not addresses of your nodes: replace them (or import again\n");
        h.push_str("# with --address NODE:IFACE=ADDRESS/PREFIX):\n");
        for p in placeholders {
            h.push_str(&format!("#   {p}\n"));
        }
    }
    h.push('\n');
    h
}

fn node_names(
    facts: &[NodeFacts; 2],
    options: &Options,
    report: &mut Report,
) -> Result<[String; 2], ImportError> {
    if options.node_names.len() > 2 {
        return Err(ImportError::Options("give at most two node names".into()));
    }
    let mut names: [String; 2] = ["lb1".into(), "lb2".into()];
    for (k, name) in names.iter_mut().enumerate() {
        if let Some(n) = options.node_names.get(k) {
            *name = n.clone();
        } else if let Some(n) = &facts[k].name {
            *name = n.clone();
        } else {
            report.assumed(
                None,
                format!("node {} name", k + 1),
                format!("{name} (the input does not name it; --node-name sets it)"),
            );
        }
    }
    if names[0] == names[1] {
        let at = facts[1].at.clone();
        names[1] = format!("{}-peer", names[1]);
        report.assumed(
            at.as_ref(),
            "node 2 name",
            format!(
                "{} (both files name the same node; --node-name sets them)",
                names[1]
            ),
        );
    }
    Ok(names)
}

/// Which node an override names: its name, or 1 / 2.
fn override_node(node: &str, names: &[String; 2]) -> Option<usize> {
    match node {
        "1" => Some(0),
        "2" => Some(1),
        n => names.iter().position(|x| x == n),
    }
}

type Addresses = BTreeMap<String, Vec<InterfaceAddress>>;

fn node_addresses(
    draft: &Draft,
    facts: &[NodeFacts; 2],
    names: &[String; 2],
    options: &Options,
    report: &mut Report,
    placeholders: &mut Vec<String>,
) -> Result<[Addresses; 2], ImportError> {
    let mut addrs: [Addresses; 2] = [BTreeMap::new(), BTreeMap::new()];
    for o in &options.addresses {
        let k = override_node(&o.node, names).ok_or_else(|| {
            ImportError::Options(format!(
                "--address {}:{}: no node {:?} (the nodes are {} and {}, or 1 and 2)",
                o.node, o.interface, o.node, names[0], names[1]
            ))
        })?;
        addrs[k]
            .entry(o.interface.clone())
            .or_default()
            .push(o.address);
    }
    let has_family = |a: &Addresses, iface: &str, v6: bool| {
        a.get(iface)
            .is_some_and(|l| l.iter().any(|x| x.address.is_ipv6() == v6))
    };
    // The addresses the input names, with a prefix from what else is known.
    for inst in &draft.instances {
        let v6 = vip_addrs(inst).first().is_some_and(|(a, _)| a.is_ipv6());
        for k in 0..2 {
            if has_family(&addrs[k], &inst.interface, v6) {
                continue;
            }
            let known: Vec<IpAddr> = facts[k]
                .addresses
                .get(&inst.interface)
                .map(|l| l.iter().copied().filter(|a| a.is_ipv6() == v6).collect())
                .unwrap_or_default();
            for ip in known {
                let from_peer = addrs[1 - k]
                    .get(&inst.interface)
                    .and_then(|l| l.iter().find(|x| x.contains(ip)))
                    .map(|x| x.prefix_len);
                let from_vip = vip_addrs(inst)
                    .into_iter()
                    .find(|(a, p)| {
                        *p < net::host_prefix(*a) && net::with_prefix(*a, *p).contains(ip)
                    })
                    .map(|(_, p)| p);
                let prefix = match from_peer.or(from_vip) {
                    Some(p) => p,
                    None => {
                        let p = net::default_prefix(ip);
                        report.assumed(
                            None,
                            format!("node {} address on {}", names[k], inst.interface),
                            format!(
                                "{ip}/{p}: the prefix length is a guess (no VIP with a prefix contains {ip}); --address {}:{}={ip}/LEN sets it",
                                names[k], inst.interface
                            ),
                        );
                        p
                    }
                };
                addrs[k]
                    .entry(inst.interface.clone())
                    .or_default()
                    .push(net::with_prefix(ip, prefix));
            }
        }
    }
    // Placeholders where nothing is known.
    for inst in &draft.instances {
        let vips = vip_addrs(inst);
        let Some(&(vip, _)) = vips.first() else {
            continue;
        };
        let v6 = vip.is_ipv6();
        for k in 0..2 {
            if has_family(&addrs[k], &inst.interface, v6) {
                continue;
            }
            let anchor = addrs[1 - k]
                .get(&inst.interface)
                .and_then(|l| l.iter().find(|x| x.address.is_ipv6() == v6))
                .map(|x| (x.address, x.prefix_len))
                .or_else(|| {
                    vips.iter()
                        .find(|(a, p)| *p < net::host_prefix(*a))
                        .copied()
                })
                .unwrap_or((vip, net::default_prefix(vip)));
            let a = placeholder(anchor, k);
            let line = format!("node {} {} = {a}", names[k], inst.interface);
            report.assumed(
                None,
                format!("node {} address on {}", names[k], inst.interface),
                format!(
                    "PLACEHOLDER {a}: the input does not say this node's address for instance {}; --address {}:{}=ADDRESS/PREFIX gives it",
                    inst.name, names[k], inst.interface
                ),
            );
            placeholders.push(line);
            addrs[k].entry(inst.interface.clone()).or_default().push(a);
        }
    }
    // Interfaces named only by tracking or NAT rules: declared, without addresses.
    let mut named: Vec<&str> = draft
        .instances
        .iter()
        .flat_map(|i| i.track_interfaces.iter().map(|t| t.name.as_str()))
        .collect();
    for n in &draft.nat {
        named.extend(n.in_interface.as_deref());
        named.extend(n.out_interface.as_deref());
    }
    for iface in named {
        for a in addrs.iter_mut() {
            a.entry(iface.to_string()).or_default();
        }
    }
    // nat and dr servers must be in a subnet of both nodes.
    for s in &draft.services {
        if s.mode == "tunnel" {
            continue;
        }
        let Some(inst) = draft
            .instances
            .iter()
            .find(|i| vip_addrs(i).iter().any(|(a, _)| a.to_string() == s.vip))
        else {
            continue;
        };
        for srv in &s.server {
            let Ok(ip) = srv.address.parse::<IpAddr>() else {
                continue;
            };
            for k in 0..2 {
                if addrs[k].values().flatten().any(|x| x.contains(ip)) {
                    continue;
                }
                let a = placeholder((ip, net::default_prefix(ip)), k);
                report.assumed(
                    None,
                    format!("node {} address on {}", names[k], inst.interface),
                    format!(
                        "PLACEHOLDER {a}: server {ip} of service {} must be in a subnet of the node (mode {}), and no address of it is known there; --address {}:IFACE=ADDRESS/PREFIX gives the node's address on the servers' link",
                        s.name, s.mode, names[k]
                    ),
                );
                placeholders.push(format!("node {} {} = {a}", names[k], inst.interface));
                addrs[k].entry(inst.interface.clone()).or_default().push(a);
            }
        }
    }
    Ok(addrs)
}

/// A placeholder in `anchor`'s subnet that no host uses: the subnet's first address
/// for the first node, its last for the second.
fn placeholder(anchor: (IpAddr, u8), k: usize) -> InterfaceAddress {
    let (addr, mut prefix) = anchor;
    if prefix >= net::host_prefix(addr) - 1 {
        prefix = net::default_prefix(addr);
    }
    let ip = if k == 0 {
        net::first(addr, prefix)
    } else {
        net::last(addr, prefix)
    };
    net::with_prefix(ip, prefix)
}

/// An instance's VIPs as (address, prefix).
fn vip_addrs(inst: &InstanceOut) -> Vec<(IpAddr, u8)> {
    inst.vips
        .iter()
        .filter_map(|v| {
            let text = match v {
                VipOut::Plain(s) => s,
                VipOut::Labelled { address, .. } => address,
            };
            InterfaceAddress::parse(text, true)
                .ok()
                .map(|a| (a.address, a.prefix_len))
        })
        .collect()
}
