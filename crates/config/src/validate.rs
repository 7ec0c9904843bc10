//! Phase 2: checks across elements (duplicates, references, reachability).
//!
//! Only elements that read cleanly take part. A check that needs a whole collection
//! (say, "is this address a VIP of some instance?") is skipped while that collection
//! has a broken element, so one mistake does not cause a cascade of false errors.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::Hash;
use std::net::IpAddr;

use crate::diagnostic::did_you_mean;
use crate::model::*;
use crate::owner::{owner_priority_problem, OwnerPriorityProblem};
use crate::read::Draft;
use crate::tree::{index, join, Reader};

/// Clean elements of a list with their key paths.
fn clean<'a, T>(list: &'a [Option<T>], key: &str) -> Vec<(String, &'a T)> {
    list.iter()
        .enumerate()
        .filter_map(|(i, e)| e.as_ref().map(|e| (index(key, i), e)))
        .collect()
}

fn complete<T>(list: &[Option<T>]) -> bool {
    list.iter().all(Option::is_some)
}

/// Reports the second and later uses of a key. `path(i)` is where the `i`th key is
/// written, made only for a report (a file has 10,000s of servers); the first user
/// is named by that path's parent.
fn unique<K: Eq + Hash + fmt::Display>(
    r: &mut Reader,
    keys: impl IntoIterator<Item = K>,
    path: impl Fn(usize) -> String,
    what: &str,
    fix: &str,
) {
    let report = |r: &mut Reader, i: usize, first: usize, key: &K| {
        let first = path(first);
        let first = first.rsplit_once('.').map_or(first.as_str(), |(p, _)| p);
        r.error_value(
            &path(i),
            format!("{what} `{key}` is already used by {first}"),
            fix,
        );
    };
    let keys: Vec<K> = keys.into_iter().collect();
    // A few keys (a service's servers) are compared pair by pair: no table to build.
    if keys.len() <= UNIQUE_BY_PAIRS {
        for (i, key) in keys.iter().enumerate() {
            if let Some(first) = keys[..i].iter().position(|k| k == key) {
                report(r, i, first, key);
            }
        }
        return;
    }
    let mut seen: HashMap<&K, usize> = HashMap::with_capacity(keys.len());
    for (i, key) in keys.iter().enumerate() {
        match seen.get(key) {
            Some(&first) => report(r, i, first, key),
            None => {
                seen.insert(key, i);
            }
        }
    }
}

/// Up to this many keys, [`unique`] compares them pair by pair.
const UNIQUE_BY_PAIRS: usize = 16;

/// A server's address as it must be unique in its service: `address` or
/// `address:port`.
#[derive(PartialEq, Eq, Hash)]
struct ServerAddress(IpAddr, Option<u16>);

impl fmt::Display for ServerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Some(port) => write!(f, "{}:{port}", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

fn hint(word: &str, known: &[String]) -> String {
    match did_you_mean(word, known.iter().map(String::as_str)) {
        Some(s) => format!("did you mean `{s}`? "),
        None => String::new(),
    }
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "none are defined".to_string()
    } else {
        format!("known: {}", known.join(", "))
    }
}

/// Runs every cross-element check.
pub(crate) fn cross_check(r: &mut Reader, d: &Draft) {
    let nodes = clean(&d.nodes, "node");
    let groups = clean(&d.groups, "sync_group");
    let instances = clean(&d.instances, "instance");
    let services = clean(&d.services, "service");
    let checks = clean(&d.checks, "check");
    let nat = clean(&d.nat, "nat");
    let nodes_ok = complete(&d.nodes);
    let instances_ok = complete(&d.instances);
    let groups_ok = complete(&d.groups);

    check_node_count(r, d);
    unique(
        r,
        nodes.iter().map(|(_, n)| n.name.as_str()),
        |i| join(&nodes[i].0, "name"),
        "node name",
        "give each node its own name",
    );
    // Hostnames matter only between differently named nodes (a duplicate name is
    // already reported, and its defaulted hostname would repeat the same error).
    for (j, (pj, nj)) in nodes.iter().enumerate() {
        if let Some((_, ni)) = nodes[..j]
            .iter()
            .find(|(_, ni)| ni.name != nj.name && ni.hostname == nj.hostname)
        {
            let at = path_or(r, &join(pj, "hostname"), &join(pj, "name"));
            r.error_value(
                &at,
                format!(
                    "hostname `{}` is also node `{}`'s hostname",
                    nj.hostname, ni.name
                ),
                "give each node its own hostname (it selects the node at start-up)",
            );
        }
    }
    unique(
        r,
        groups.iter().map(|(_, g)| g.name.as_str()),
        |i| join(&groups[i].0, "name"),
        "sync group name",
        "give each sync group its own name",
    );
    unique(
        r,
        instances.iter().map(|(_, i)| i.name.as_str()),
        |i| join(&instances[i].0, "name"),
        "instance name",
        "give each instance its own name",
    );
    unique(
        r,
        services.iter().map(|(_, s)| s.name.as_str()),
        |i| join(&services[i].0, "name"),
        "service name",
        "give each service its own name",
    );
    unique(
        r,
        checks.iter().map(|(_, c)| c.name.as_str()),
        |i| join(&checks[i].0, "name"),
        "check name",
        "give each check its own name",
    );
    unique(
        r,
        nat.iter().map(|(_, n)| n.name.as_str()),
        |i| join(&nat[i].0, "name"),
        "nat rule name",
        "give each nat rule its own name",
    );
    unique(
        r,
        instances.iter().map(|(_, i)| {
            let fam = if i.is_ipv6() { "IPv6" } else { "IPv4" };
            format!("{} on {} ({fam})", i.vrid, i.interface)
        }),
        |i| join(&instances[i].0, "vrid"),
        "VRID",
        "use a different vrid: VRIDs are unique per interface and address family",
    );
    let vips: Vec<(&str, usize, IpAddr)> = instances
        .iter()
        .flat_map(|(p, i)| {
            i.vips
                .iter()
                .enumerate()
                .map(move |(k, v)| (p.as_str(), k, v.address.address))
        })
        .collect();
    unique(
        r,
        vips.iter().map(|&(_, _, a)| a),
        |i| format!("{}.vips[{}]", vips[i].0, vips[i].1),
        "VIP",
        "each VIP belongs to exactly one instance",
    );

    // Sync groups and instances.
    let raw_instances = &d.raw_names.instances;
    let mut member_of: HashMap<&str, &str> = HashMap::new();
    for (gp, g) in &groups {
        for (k, name) in g.instances.iter().enumerate() {
            let ip = format!("{gp}.instances[{k}]");
            if !raw_instances.contains(name) {
                r.error_value(
                    &ip,
                    format!("sync group `{}` names unknown instance `{name}`", g.name),
                    format!(
                        "{}define it as an [[instance]] ({})",
                        hint(name, raw_instances),
                        known_list(raw_instances)
                    ),
                );
            } else if let Some(other) = member_of.get(name.as_str()) {
                if *other != g.name {
                    r.error_value(
                        &ip,
                        format!("instance `{name}` is already in sync group `{other}`"),
                        "keep each instance in exactly one sync group",
                    );
                }
            } else {
                member_of.insert(name, &g.name);
            }
        }
    }
    if groups_ok && mode(d) == ClusterMode::ActiveBackup {
        for (ip, i) in &instances {
            if !member_of.contains_key(i.name.as_str()) {
                r.error_value(
                    &join(ip, "name"),
                    format!("instance `{}` is in no sync group", i.name),
                    "add it to a [[sync_group]]'s instances (a group of one is fine)",
                );
            }
        }
    }

    // Nodes: priorities, addresses, unicast peers.
    let raw_groups = &d.raw_names.groups;
    for (np, n) in &nodes {
        let prio_path = join(np, "priority");
        for g in n.priority.keys() {
            if !raw_groups.contains(g) {
                r.error_key(
                    &join(&prio_path, g),
                    format!(
                        "node `{}` gives a priority for unknown sync group `{g}`",
                        n.name
                    ),
                    format!(
                        "{}use a [[sync_group]] name ({})",
                        hint(g, raw_groups),
                        known_list(raw_groups)
                    ),
                );
            }
        }
        for (_, g) in &groups {
            if !n.priority.contains_key(&g.name) {
                r.error_value(
                    &prio_path,
                    format!(
                        "node `{}` has no priority for sync group `{}`",
                        n.name, g.name
                    ),
                    format!("add `{} = 100` to node {}'s priority table", g.name, n.name),
                );
            }
        }
        for (_, i) in &instances {
            let addr_path = join(np, "addresses");
            match n.addresses.get(&i.interface) {
                None => r.error_value(
                    &addr_path,
                    format!(
                        "node `{}` has no addresses for interface `{}` of instance `{}`",
                        n.name, i.interface, i.name
                    ),
                    format!(
                        "add `{} = [\"<address>/<prefix>\"]` to node {}'s addresses: both nodes need every instance's interface",
                        i.interface, n.name
                    ),
                ),
                Some(list) if !i.is_ipv6() && !list.iter().any(InterfaceAddress::is_ipv4) => r
                    .error_value(
                        &join(&addr_path, &i.interface),
                        format!(
                            "node `{}` has no IPv4 address on `{}`, which IPv4 instance `{}` sends adverts from",
                            n.name, i.interface, i.name
                        ),
                        "add the node's IPv4 address with its prefix, such as \"198.18.0.11/24\"",
                    ),
                _ => {}
            }
        }
        for (inst, peers) in &n.unicast_peers {
            let up = format!("{np}.unicast_peers.{inst}");
            if !raw_instances.contains(inst) {
                r.error_key(
                    &up,
                    format!("unicast_peers names unknown instance `{inst}`"),
                    format!(
                        "{}use an [[instance]] name ({})",
                        hint(inst, raw_instances),
                        known_list(raw_instances)
                    ),
                );
                continue;
            }
            let Some((_, i)) = instances.iter().find(|(_, i)| &i.name == inst) else {
                continue;
            };
            if !i.unicast {
                r.error_key(
                    &up,
                    format!("instance `{inst}` is not unicast, so these peers would be ignored"),
                    format!("set unicast = true on instance {inst}, or remove this entry"),
                );
            }
            for (k, p) in peers.iter().enumerate() {
                if p.is_ipv6() != i.is_ipv6() {
                    r.error_value(
                        &index(&up, k),
                        format!("peer {p} is not of instance `{inst}`'s address family"),
                        "use the peer's address of the same family as the instance's VIPs",
                    );
                }
            }
        }
        if let Some(a) = n.sync_address {
            if !n.addresses.values().flatten().any(|x| x.address == a) {
                r.error_value(
                    &join(np, "sync_address"),
                    format!(
                        "sync_address {a} is not one of node `{}`'s addresses",
                        n.name
                    ),
                    "use an address listed in this node's addresses",
                );
            }
        }
    }

    // Priority 255 means "owns the VIPs" (RFC 5798 §5.2.4): crate::owner.
    for (_, g) in &groups {
        let vips: Vec<IpAddr> = instances
            .iter()
            .filter(|(_, i)| g.instances.contains(&i.name))
            .flat_map(|(_, i)| i.vips.iter().map(|v| v.address.address))
            .collect();
        for (np, n) in &nodes {
            if n.priority.get(&g.name) != Some(&255) {
                continue;
            }
            if let Some(p) = owner_priority_problem(n, &g.name, &vips, 255) {
                r.error_value(&format!("{np}.priority.{}", g.name), p.message(), p.fix());
            }
        }
    }
    for (ip, i) in &instances {
        let group = member_of.get(i.name.as_str()).copied();
        for (k, v) in i.vips.iter().enumerate() {
            for (_, n) in &nodes {
                let Some(g) = group else { continue };
                let Some(&prio) = n.priority.get(g) else {
                    continue;
                };
                if let Some(p @ OwnerPriorityProblem::OwnAddress { .. }) =
                    owner_priority_problem(n, g, &[v.address.address], prio)
                {
                    r.error_value(&format!("{ip}.vips[{k}]"), p.message(), p.fix());
                }
            }
        }
    }

    // Unicast: every node needs someone to send to.
    if nodes_ok && nodes.len() == 2 {
        for (ip, i) in &instances {
            if !i.unicast {
                continue;
            }
            for (k, (_, n)) in nodes.iter().enumerate() {
                let peer = nodes[1 - k].1;
                if effective_unicast_peers(n, peer, i).is_empty() {
                    r.error_value(
                        &join(ip, "unicast"),
                        format!(
                            "instance `{}` is unicast but node `{}` has no peer address for it",
                            i.name, n.name
                        ),
                        format!(
                            "give node {} an address of the instance's family on {}, or set unicast_peers.{} on node {}",
                            peer.name, i.interface, i.name, n.name
                        ),
                    );
                }
            }
        }
    }

    // Interfaces named by track_interfaces and nat rules must exist somewhere.
    let mut known_ifaces: Vec<String> = nodes
        .iter()
        .flat_map(|(_, n)| n.addresses.keys().cloned())
        .chain(instances.iter().map(|(_, i)| i.interface.clone()))
        .collect();
    known_ifaces.sort();
    known_ifaces.dedup();
    let iface_check_ok = nodes_ok && instances_ok;
    let check_iface = |r: &mut Reader, path: &str, name: &str, what: &str| {
        if iface_check_ok && !known_ifaces.iter().any(|k| k == name) {
            r.error_value(
                path,
                format!("{what} `{name}` is not an interface of any node or instance"),
                format!(
                    "{}declare it in each [[node]]'s addresses (an empty list is fine: {name} = [])",
                    hint(name, &known_ifaces)
                ),
            );
        }
    };
    for (ip, i) in &instances {
        for (k, t) in i.track_interfaces.iter().enumerate() {
            check_iface(
                r,
                &format!("{ip}.track_interfaces[{k}].name"),
                &t.name,
                "tracked interface",
            );
        }
    }
    for (np, rule) in &nat {
        if let Some(x) = &rule.in_interface {
            check_iface(r, &join(np, "in_interface"), x, "in_interface");
        }
        if let Some(x) = &rule.out_interface {
            check_iface(r, &join(np, "out_interface"), x, "out_interface");
        }
    }

    check_services(r, d, &services, &instances, &nodes);
    check_schedulers(r, d, &services);
    check_flowtable(r, d, &services, &instances, &nat);
    if mode(d) == ClusterMode::ActiveActive {
        check_active_active(r, d, &services, &nodes, &nat);
    } else if d.cluster.is_some() {
        check_nat(r, &nat, &instances, &member_of, instances_ok);
        check_active_backup(r, d, &nat);
    }
    check_subnets(r, &nodes, &instances);

    // Connection sync.
    if let Some(s) = &d.sync {
        if let (true, Some(iface)) = (s.enabled, &s.interface) {
            for (_, n) in &nodes {
                if n.sync_address.is_none() && local_sync_address(n, iface).is_none() {
                    r.error_value(
                        "sync.interface",
                        format!(
                            "node `{}` has no IPv4 address on sync interface `{iface}`",
                            n.name
                        ),
                        format!(
                            "add an address on {iface} to node {}, or set its sync_address",
                            n.name
                        ),
                    );
                }
            }
        }
    }
}

/// The members of a (multicast) instance share its link: their addresses on its
/// interface must be in one subnet, and a VIP outside every subnet there gets no
/// neighbour on that link to answer for it (a warning: a routed VIP can be meant).
fn check_subnets(r: &mut Reader, nodes: &[(String, &Node)], instances: &[(String, &Instance)]) {
    for (ip, inst) in instances {
        let on_link = |n: &Node| -> Vec<InterfaceAddress> {
            n.addresses
                .get(&inst.interface)
                .map(|l| {
                    l.iter()
                        .filter(|a| a.address.is_ipv6() == inst.is_ipv6())
                        .filter(|a| !is_link_local(a.address))
                        .copied()
                        .collect()
                })
                .unwrap_or_default()
        };
        if !inst.unicast {
            for (j, (pj, nj)) in nodes.iter().enumerate() {
                for (_, ni) in &nodes[..j] {
                    let (a, b) = (on_link(ni), on_link(nj));
                    if a.is_empty() || b.is_empty() {
                        continue;
                    }
                    let shared = a.iter().any(|x| {
                        b.iter()
                            .any(|y| x.contains(y.address) || y.contains(x.address))
                    });
                    if !shared {
                        let show = |l: &[InterfaceAddress]| {
                            l.iter()
                                .map(|a| a.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        };
                        r.error_value(
                            &format!("{pj}.addresses.{}", inst.interface),
                            format!(
                                "nodes `{}` ({}) and `{}` ({}) have no subnet in common on {}, the link of instance `{}`",
                                ni.name,
                                show(&a),
                                nj.name,
                                show(&b),
                                inst.interface,
                                inst.name
                            ),
                            "give both members an address in the same subnet on this interface (VRRP and the VIP's ARP/NA live on one link), or set unicast = true for a routed peer",
                        );
                    }
                }
            }
        }
        for (k, vip) in inst.vips.iter().enumerate() {
            if is_link_local(vip.address.address) {
                continue;
            }
            for (_, n) in nodes {
                let here = on_link(n);
                if !here.is_empty() && !here.iter().any(|a| a.contains(vip.address.address)) {
                    r.warn_value(
                        &format!("{ip}.vips[{k}]"),
                        format!(
                            "VIP {} is outside node `{}`'s subnets on {} ({})",
                            vip.address.address,
                            n.name,
                            inst.interface,
                            here.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
                        ),
                        "a VIP is normally in the link's subnet, so that neighbours on it resolve it; if it is routed to the nodes on purpose, ignore this",
                    );
                    break;
                }
            }
        }
    }
}

fn is_link_local(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// Where a key is if it was written, else where its fallback is.
fn path_or(r: &Reader, path: &str, fallback: &str) -> String {
    if r.was_present(path) {
        path.to_string()
    } else {
        fallback.to_string()
    }
}

/// The cluster's mode (the default while `[cluster]` did not read).
fn mode(d: &Draft) -> ClusterMode {
    d.cluster.as_ref().map(|c| c.mode).unwrap_or_default()
}

/// What only active-active mode may use: `[announce]`, SNAT to each node's address.
fn check_active_backup(r: &mut Reader, d: &Draft, nat: &[(String, &NatRule)]) {
    if d.announce_written {
        r.error_key(
            "announce",
            "[announce] is for mode = \"active-active\"; this cluster is active-backup (VRRP moves the VIPs)",
            "set `mode = \"active-active\"` in [cluster], or remove [announce]",
        );
    }
    for (np, rule) in nat {
        if let SnatTarget::NodeAddress(_) = rule.snat {
            r.error_key(
                &format!("{np}.snat.node_address"),
                "snat = { node_address = ... } is for mode = \"active-active\": in active-backup a node's own address does not move with the VIPs",
                "use a VIP of the server-side instance: snat = { address = \"198.18.1.100\" }",
            );
        }
    }
}

/// Active-active: N nodes, no VRRP, the VIPs announced through `[announce]`, every
/// node picking the same server for a flow (Maglev), SNAT to each node's address.
fn check_active_active(
    r: &mut Reader,
    d: &Draft,
    services: &[(String, &Service)],
    nodes: &[(String, &Node)],
    nat: &[(String, &NatRule)],
) {
    if !d.announce_written {
        r.error_at(
            0,
            "announce",
            "mode = \"active-active\" needs an [announce] section: each node announces its VIPs to the routers through a routing daemon",
            "add [announce] with daemon = \"frr\" and asn = <the AS number of `router bgp` in frr.conf> (or daemon = \"bird\")",
        );
    }
    for (gp, _) in clean(&d.groups, "sync_group") {
        r.error_key(
            &gp,
            "[[sync_group]] is for active-backup clusters; in active-active mode no VRRP runs",
            "remove the [[sync_group]] and [[instance]] tables: the VIPs are announced through [announce]",
        );
    }
    for (ip, _) in clean(&d.instances, "instance") {
        r.error_key(
            &ip,
            "[[instance]] is for active-backup clusters; in active-active mode no VRRP runs",
            "remove it: the VIPs are announced through [announce], and servers see each node's own SNAT address",
        );
    }
    if d.sync.as_ref().is_some_and(|s| s.enabled) {
        r.error_value(
            "sync.enabled",
            "connection sync links two members; in active-active mode a flow that moves re-lands on the same server by Maglev instead",
            "set `enabled = false` in [sync], or remove [sync]",
        );
    }
    for (sp, s) in services {
        if s.scheduler != Scheduler::Mh {
            let at = path_or(r, &join(sp, "scheduler"), &join(sp, "name"));
            r.error_value(
                &at,
                format!(
                    "service `{}` uses scheduler {}; in active-active mode a flow the router moves to another node must reach the same server",
                    s.name,
                    s.scheduler.name()
                ),
                "use scheduler = \"mh\": every node computes the same Maglev table from the same file and server health",
            );
        }
    }
    let vips: HashSet<IpAddr> = services.iter().map(|(_, s)| s.vip).collect();
    for (np, rule) in nat {
        if complete(&d.services) && !vips.contains(&rule.destination) {
            r.error_value(
                &join(np, "destination"),
                format!(
                    "NAT destination {} is not the VIP of any service",
                    rule.destination
                ),
                "use the VIP of the service the rule is for",
            );
        }
        let iface = match &rule.snat {
            SnatTarget::NodeAddress(iface) => iface,
            SnatTarget::Address(_) | SnatTarget::Pool(_) => {
                let key = if matches!(rule.snat, SnatTarget::Pool(_)) {
                    "pool"
                } else {
                    "address"
                };
                r.error_key(
                    &format!("{np}.snat.{key}"),
                    "in active-active mode every node translates at once, so one SNAT address cannot serve them all",
                    "use each node's own address on the server side: snat = { node_address = \"eth1\" }",
                );
                continue;
            }
        };
        for (_, n) in nodes {
            let has = n.addresses.get(iface).is_some_and(|l| {
                l.iter()
                    .any(|a| a.address.is_ipv6() == rule.destination.is_ipv6())
            });
            if !has {
                r.error_value(
                    &format!("{np}.snat.node_address"),
                    format!(
                        "node `{}` has no {} address on {iface} to translate to",
                        n.name,
                        if rule.destination.is_ipv6() {
                            "IPv6"
                        } else {
                            "IPv4"
                        }
                    ),
                    format!("add one to node {}'s addresses.{iface}", n.name),
                );
            }
        }
    }
}

/// The most nodes an active-active cluster may list.
pub const MAX_ACTIVE_NODES: usize = 64;

fn check_node_count(r: &mut Reader, d: &Draft) {
    // Which count is right depends on the mode, unknown while [cluster] is broken.
    if d.cluster.is_none() && d.nodes.len() >= 2 {
        return;
    }
    if mode(d) == ClusterMode::ActiveActive {
        match d.nodes.len() {
            0 => r.error_at(
                0,
                "node",
                "no [[node]] is defined; an active-active cluster needs at least 2",
                "add a [[node]] table for each balancer behind the router",
            ),
            1 => r.error_value(
                "node[0]",
                "only 1 [[node]] is defined; an active-active cluster needs at least 2",
                "add a [[node]] for each balancer behind the router",
            ),
            n if n > MAX_ACTIVE_NODES => r.error_value(
                &format!("node[{MAX_ACTIVE_NODES}]"),
                format!(
                    "{n} [[node]] tables are defined; at most {MAX_ACTIVE_NODES} are supported"
                ),
                "split the balancers into several clusters",
            ),
            _ => {}
        }
        return;
    }
    match d.nodes.len() {
        2 => {}
        0 => r.error_at(
            0,
            "node",
            "no [[node]] is defined; the cluster needs exactly 2",
            "add a [[node]] table for each of the two members",
        ),
        1 => r.error_value(
            "node[0]",
            "only 1 [[node]] is defined; the cluster needs exactly 2 (one file describes both members)",
            "add the peer's [[node]] with its own priorities and addresses",
        ),
        n => r.error_value(
            "node[2]",
            format!("{n} [[node]] tables are defined; the cluster needs exactly 2"),
            "remove the extra [[node]] tables (one active, one backup), or set mode = \"active-active\" in [cluster] to run them all at once behind a router",
        ),
    }
}

fn check_services(
    r: &mut Reader,
    d: &Draft,
    services: &[(String, &Service)],
    instances: &[(String, &Instance)],
    nodes: &[(String, &Node)],
) {
    let known = KnownForServices::new(
        instances,
        nodes,
        complete(&d.instances),
        complete(&d.nodes),
        &d.raw_names.checks,
        d.cluster.as_ref().map(|c| c.mode) == Some(ClusterMode::ActiveBackup),
    );
    check_service_ports(r, services);
    for (sp, s) in services {
        check_service(r, sp, s, &known);
    }
}

/// What the per-service checks compare a service with: the VIPs the instances hold,
/// the nodes' subnets, the check names.
struct KnownForServices<'a> {
    instances: &'a [(String, &'a Instance)],
    nodes: &'a [(String, &'a Node)],
    instances_ok: bool,
    nodes_ok: bool,
    raw_checks: &'a [String],
    check_names: HashSet<&'a str>,
    held: HashSet<IpAddr>,
    /// Active-backup mode (read): a service's VIP must then be an instance's.
    active_backup: bool,
}

impl<'a> KnownForServices<'a> {
    fn new(
        instances: &'a [(String, &'a Instance)],
        nodes: &'a [(String, &'a Node)],
        instances_ok: bool,
        nodes_ok: bool,
        raw_checks: &'a [String],
        active_backup: bool,
    ) -> Self {
        KnownForServices {
            instances,
            nodes,
            instances_ok,
            nodes_ok,
            raw_checks,
            check_names: raw_checks.iter().map(String::as_str).collect(),
            held: instances
                .iter()
                .flat_map(|(_, i)| i.vips.iter().map(|v| v.address.address))
                .collect(),
            active_backup,
        }
    }
}

/// Services on one VIP and protocol must not share a port: earlier services in file
/// order, compared pair by pair only where some two of them overlap.
fn check_service_ports(r: &mut Reader, services: &[(String, &Service)]) {
    let mut on_vip: HashMap<(IpAddr, Protocol), Vec<usize>> = HashMap::new();
    for (k, (_, s)) in services.iter().enumerate() {
        on_vip.entry((s.vip, s.protocol)).or_default().push(k);
    }
    for ks in on_vip.values() {
        if !any_overlap(ks.iter().map(|&k| services[k].1.ports)) {
            continue;
        }
        for (n, &k) in ks.iter().enumerate() {
            let (sp, s) = &services[k];
            for &j in &ks[..n] {
                let (op, o) = &services[j];
                if !o.ports.overlaps(&s.ports) {
                    continue;
                }
                let key = path_or(r, &join(sp, "port"), &join(sp, "port_range"));
                r.error_value(
                    &key,
                    format!(
                        "service `{}` (port {}) overlaps service `{}` (port {}, {op}) on {} {}",
                        s.name,
                        s.ports,
                        o.name,
                        o.ports,
                        s.vip,
                        if s.protocol == Protocol::Tcp {
                            "tcp"
                        } else {
                            "udp"
                        }
                    ),
                    "give the services disjoint ports, or merge them",
                );
            }
        }
    }
}

/// What can be judged of one service against the rest of the file (not its ports).
fn check_service(r: &mut Reader, sp: &str, s: &Service, known: &KnownForServices) {
    if known.instances_ok && known.active_backup && !known.held.contains(&s.vip) {
        let near = known
            .instances
            .iter()
            .find(|(_, i)| i.vips.iter().any(|v| v.address.contains(s.vip)))
            .map(|(_, i)| format!(" such as instance `{}`", i.name))
            .unwrap_or_default();
        r.error_value(
            &join(sp, "vip"),
            format!(
                "service VIP {} is not a VIP of any instance, so no node would hold it",
                s.vip
            ),
            format!("add \"{}\" to the vips of an [[instance]]{near}", s.vip),
        );
    }
    unique(
        r,
        s.servers.iter().map(|v| v.name.as_str()),
        |j| format!("{sp}.server[{j}].name"),
        "server name",
        "give each server of a service its own name",
    );
    unique(
        r,
        s.servers.iter().map(|v| ServerAddress(v.address, v.port)),
        |j| format!("{sp}.server[{j}].address"),
        "server address",
        "list each real server once per service",
    );
    for (j, v) in s.servers.iter().enumerate() {
        let vp = || format!("{sp}.server[{j}]");
        if let Some(c) = &v.check {
            if !known.check_names.contains(c.as_str()) {
                r.error_value(
                    &join(&vp(), "check"),
                    format!("server `{}` uses check `{c}`, which is not defined", v.name),
                    format!(
                        "{}define it as a [[check]] or remove `check` ({})",
                        hint(c, known.raw_checks),
                        known_list(known.raw_checks)
                    ),
                );
            }
        }
        if known.nodes_ok && matches!(s.mode, Forwarding::Nat | Forwarding::DirectRoute) {
            let unreachable: Vec<&str> = known
                .nodes
                .iter()
                .filter(|(_, n)| {
                    !n.addresses
                        .values()
                        .flatten()
                        .any(|a| a.contains(v.address))
                })
                .map(|(_, n)| n.name.as_str())
                .collect();
            if !unreachable.is_empty() {
                r.error_value(
                    &join(&vp(), "address"),
                    format!(
                        "server {} is in no subnet of node {}'s interfaces",
                        v.address,
                        unreachable.join(" and ")
                    ),
                    "nat and dr servers must be on a link of both nodes: fix the address, add the subnet to the nodes' addresses, or use mode = \"tunnel\"",
                );
            }
        }
    }
}

/// The checks that involve services, for a file of which only the services
/// `changed` (indexes into `config.services`) were read again: the rest of the file
/// is as it was when `config` was accepted. Whether it passes (a refusal is then
/// explained by reading the whole file).
pub(crate) fn services_pass(config: &ClusterConfig, changed: std::ops::Range<usize>) -> bool {
    let root = crate::tree::Sv {
        span: 0..0,
        kind: crate::tree::Kind::Table(Vec::new()),
    };
    let mut r = Reader::new(&root);
    let mut names: HashSet<&str> = HashSet::with_capacity(config.services.len());
    if !config
        .services
        .iter()
        .all(|s| names.insert(s.name.as_str()))
    {
        return false;
    }
    let services: Vec<(String, &Service)> =
        config.services.iter().map(|s| (String::new(), s)).collect();
    check_service_ports(&mut r, &services);
    if !r.diags.is_empty() {
        return false;
    }
    let instances: Vec<(String, &Instance)> = config
        .instances
        .iter()
        .map(|i| (String::new(), i))
        .collect();
    let nodes: Vec<(String, &Node)> = config.nodes.iter().map(|n| (String::new(), n)).collect();
    let raw_checks: Vec<String> = config.checks.iter().map(|c| c.name.clone()).collect();
    let known = KnownForServices::new(
        &instances,
        &nodes,
        true,
        true,
        &raw_checks,
        config.cluster.mode == ClusterMode::ActiveBackup,
    );
    for s in &config.services[changed] {
        // A scheduler one backend lacks is judged against every service
        // (`check_schedulers`): the whole file is read for it.
        if s.scheduler.backends().len() < 2 {
            return false;
        }
        check_service(&mut r, "", s, &known);
    }
    r.diags.is_empty()
}

/// `[dataplane] flowtable = true` offloads the connections the nft backend DNATs:
/// refused with another backend (IPVS's connections must keep passing through IPVS,
/// and `auto` picks IPVS on kernels that have it, Debian's among them), with
/// `counters = true` on a service (offloaded packets skip the forward hook where
/// those counters count), and without an interface to hook.
fn check_flowtable(
    r: &mut Reader,
    d: &Draft,
    services: &[(String, &Service)],
    instances: &[(String, &Instance)],
    nat: &[(String, &NatRule)],
) {
    let Some(dp) = d.dataplane.as_ref().filter(|dp| dp.flowtable) else {
        return;
    };
    let at = path_or(r, "dataplane.flowtable", "dataplane");
    if dp.backend != BackendChoice::Nft {
        r.error_value(
            &at,
            format!(
                "flowtable = true offloads the connections of the nft backend, and the backend is \"{}\"",
                dp.backend
            ),
            "set backend = \"nft\" with it (auto picks IPVS where the kernel has it), or flowtable = false",
        );
    }
    if let Some((sp, s)) = services.iter().find(|(_, s)| s.counters) {
        r.error_value(
            &path_or(r, &join(sp, "counters"), sp),
            format!(
                "service `{}`: counters = true counts packets in the forward hook, which [dataplane] flowtable = true makes established connections skip",
                s.name
            ),
            "turn one of them off: the counters would stop at each connection's first packets",
        );
    }
    let rules: Vec<NatRule> = nat.iter().map(|(_, n)| (*n).clone()).collect();
    if dp
        .flowtable_devices_of(instances.iter().map(|(_, i)| *i), &rules)
        .is_empty()
    {
        r.error_value(
            &at,
            "flowtable = true, and no interface to hook: no instance and no SNAT rule names one",
            "list the interfaces lbd forwards between in flowtable_devices, such as [\"eth0\", \"eth1\"]",
        );
    }
}

/// A scheduler the configured backend does not implement is refused, naming the
/// backend that does (never replaced by another at run time). With `auto`, the
/// services must leave one backend that implements all of their schedulers (and
/// IPVS cannot serve port ranges).
fn check_schedulers(r: &mut Reader, d: &Draft, services: &[(String, &Service)]) {
    let backend = d
        .dataplane
        .as_ref()
        .map_or(BackendChoice::Auto, |p| p.backend);
    let only = |s: &Service| match s.scheduler.backends() {
        [one] => Some(*one),
        _ => None,
    };
    if backend != BackendChoice::Auto {
        for (sp, s) in services {
            if let Some(other) = only(s).filter(|b| *b != backend) {
                r.error_value(
                    &path_or(r, &join(sp, "scheduler"), sp),
                    format!(
                        "service `{}`: scheduler {} is not available with the {backend} backend ([dataplane] backend = \"{backend}\"); the {other} backend has it",
                        s.name, s.scheduler
                    ),
                    format!(
                        "use backend = \"{other}\" (or \"auto\"), or a scheduler every backend has: rr, wrr (the default), lc, wlc, sh, mh"
                    ),
                );
            }
        }
        return;
    }
    // auto: the first service that needs IPVS, and the first that needs nft.
    let needs_ipvs = services
        .iter()
        .find(|(_, s)| only(s) == Some(BackendChoice::Ipvs));
    let needs_nft = services
        .iter()
        .find(|(_, s)| only(s) == Some(BackendChoice::Nft) || s.ports.start != s.ports.end);
    if let (Some((ip, i)), None) = (needs_ipvs, needs_nft) {
        r.warn_value(
            &path_or(r, &join(ip, "scheduler"), ip),
            format!(
                "service `{}`: scheduler {} is only on the ipvs backend: `auto` picks IPVS, and lbd refuses to start on a host whose kernel has none",
                i.name, i.scheduler
            ),
            "set backend = \"ipvs\" to say so, or use a scheduler every backend has (rr, wrr, lc, wlc, sh, mh)",
        );
    }
    if let (Some((ip, i)), Some((_, n))) = (needs_ipvs, needs_nft) {
        let why = if n.scheduler == Scheduler::Random {
            "the random scheduler".to_owned()
        } else {
            format!("the port range {}", n.ports)
        };
        r.error_value(
            &path_or(r, &join(ip, "scheduler"), ip),
            format!(
                "service `{}`: scheduler {} is only on the ipvs backend, but service `{}` uses {why}, which only the nft backend has: `auto` cannot choose one backend for both",
                i.name, i.scheduler, n.name
            ),
            "use a scheduler every backend has for one of them (rr, wrr, lc, wlc, sh, mh), or split the services",
        );
    }
}

/// Whether any two of `ranges` share a port (sorted by start, in n log n).
fn any_overlap(ranges: impl Iterator<Item = PortRange>) -> bool {
    let mut ranges: Vec<PortRange> = ranges.collect();
    ranges.sort_unstable();
    // Ports start at 1: no range starts at or below 0.
    let mut end = 0;
    for p in ranges {
        if p.start <= end {
            return true;
        }
        end = end.max(p.end);
    }
    false
}

fn check_nat(
    r: &mut Reader,
    nat: &[(String, &NatRule)],
    instances: &[(String, &Instance)],
    member_of: &HashMap<&str, &str>,
    instances_ok: bool,
) {
    if !instances_ok {
        return;
    }
    // The first instance holding each VIP (a VIP in two is reported elsewhere).
    let mut holder: HashMap<IpAddr, &Instance> = HashMap::new();
    for (_, i) in instances {
        for v in &i.vips {
            holder.entry(v.address.address).or_insert(i);
        }
    }
    for (np, rule) in nat {
        let addr_paths: Vec<(String, IpAddr)> = match &rule.snat {
            SnatTarget::Address(a) => vec![(format!("{np}.snat.address"), *a)],
            SnatTarget::Pool(p) => p
                .iter()
                .enumerate()
                .map(|(k, e)| (format!("{np}.snat.pool[{k}].address"), e.address))
                .collect(),
            // Refused in active-backup (`check_active_backup`).
            SnatTarget::NodeAddress(_) => Vec::new(),
        };
        let dest_inst = holder.get(&rule.destination).copied();
        if dest_inst.is_none() {
            let vips: Vec<String> = instances
                .iter()
                .filter(|(_, i)| i.is_ipv6() == rule.destination.is_ipv6())
                .flat_map(|(_, i)| i.vips.iter().map(|v| v.address.address.to_string()))
                .collect();
            r.error_value(
                &join(np, "destination"),
                format!(
                    "NAT destination {} is not a VIP of any instance: its traffic does not follow the active node",
                    rule.destination
                ),
                format!(
                    "use the VIP of the service the rule is for{}",
                    if vips.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", vips.join(", "))
                    }
                ),
            );
        }
        for (path, a) in addr_paths {
            let Some(inst) = holder.get(&a).copied() else {
                let suggestion = instances
                    .iter()
                    .find(|(_, i)| {
                        rule.out_interface
                            .as_ref()
                            .is_some_and(|o| &i.interface == o)
                            && i.is_ipv6() == a.is_ipv6()
                    })
                    .and_then(|(_, i)| i.vips.first())
                    .map(|v| format!("use {} or ", v.address.address))
                    .unwrap_or_default();
                r.error_value(
                    &path,
                    format!("SNAT source {a} is not a VIP of any instance"),
                    format!(
                        "the file is the same on both members, so SNAT must use a VIP that moves with the active node: {suggestion}add {a} to an instance's vips"
                    ),
                );
                continue;
            };
            if let Some(out) = &rule.out_interface {
                if &inst.interface != out {
                    r.error_value(
                        &path,
                        format!(
                            "SNAT source {a} lives on {} (instance `{}`), but the rule's out_interface is {out}",
                            inst.interface, inst.name
                        ),
                        format!("use a VIP of an instance on {out}, so servers can reach it"),
                    );
                }
            }
            if let Some(d) = dest_inst {
                let g1 = member_of.get(d.name.as_str());
                let g2 = member_of.get(inst.name.as_str());
                if let (Some(g1), Some(g2)) = (g1, g2) {
                    if g1 != g2 {
                        r.error_value(
                            &path,
                            format!(
                                "SNAT VIP {a} (group `{g2}`) and destination {} (group `{g1}`) are in different sync groups, so they could be active on different nodes",
                                rule.destination
                            ),
                            format!("put instances `{}` and `{}` in one sync group", d.name, inst.name),
                        );
                    }
                }
            }
            if a.is_ipv6() != rule.destination.is_ipv6() {
                r.error_value(
                    &path,
                    format!(
                        "SNAT source {a} and destination {} are of different address families",
                        rule.destination
                    ),
                    "use a SNAT VIP of the destination's family",
                );
            }
        }
    }
}

/// The address this node uses for connection sync on `iface`.
pub(crate) fn local_sync_address(n: &Node, iface: &str) -> Option<IpAddr> {
    n.sync_address.or_else(|| {
        n.addresses
            .get(iface)?
            .iter()
            .find(|a| a.is_ipv4())
            .map(|a| a.address)
    })
}

/// Unicast peers of `node` for `instance`: explicit, or the peer node's addresses on the
/// instance's interface of the instance's family.
pub(crate) fn effective_unicast_peers(
    node: &Node,
    peer: &Node,
    instance: &Instance,
) -> Vec<IpAddr> {
    if let Some(p) = node.unicast_peers.get(&instance.name) {
        return p.clone();
    }
    peer.addresses
        .get(&instance.interface)
        .map(|l| {
            l.iter()
                .filter(|a| a.address.is_ipv6() == instance.is_ipv6())
                .map(|a| a.address)
                .collect()
        })
        .unwrap_or_default()
}

/// Builds the final configuration from a draft that produced no errors.
pub(crate) fn assemble(d: Draft, file: &str) -> Option<ClusterConfig> {
    fn all<T>(v: Vec<Option<T>>) -> Option<Vec<T>> {
        v.into_iter().collect()
    }
    Some(ClusterConfig {
        source_file: file.to_string(),
        fingerprint: String::new(),
        warnings: Vec::new(),
        cluster: d.cluster?,
        nodes: all(d.nodes)?,
        sync_groups: all(d.groups)?,
        instances: all(d.instances)?,
        services: all(d.services)?,
        checks: all(d.checks)?,
        nat: all(d.nat)?,
        sync: d.sync?,
        control: d.control?,
        metrics: d.metrics?,
        dataplane: d.dataplane?,
        vrrpd: d.vrrpd?,
        announce: d.announce,
    })
}
