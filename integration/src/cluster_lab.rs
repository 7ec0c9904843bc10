//! A lab built from a cluster.toml: the two nodes with the addresses the file gives
//! them, one bridge per node interface, the real servers of its services, and a client
//! on the segment of the first service VIP.

use std::collections::BTreeMap;
use std::net::IpAddr;

use config::ClusterConfig;

use crate::error::LabError;
use crate::topology::{HostSpec, Prefix, Role, Topology};

/// First host number tried for the client on the public segment.
const CLIENT_HOST_NUMBER: u8 = 10;

/// Whether `addr` lies in `net`.
fn contains(net: &Prefix, addr: IpAddr) -> bool {
    match (net.addr, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(net.len)).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(net.len)).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// Builds the lab of `cluster`: a host per node (its interfaces as the file names them,
/// each on a bridge named after the interface), a host per distinct real server (its
/// one NIC `eth0` on the bridge whose subnet holds it) and a host `client` on the
/// bridge of the first service's VIP. Only IPv4 server and client addresses are placed.
pub fn topology_from_cluster(cluster: &ClusterConfig) -> Result<Topology, LabError> {
    let mut topo = Topology::new();
    // Interface name -> the subnets nodes have on it (first node's view wins).
    let mut segments: BTreeMap<String, Vec<Prefix>> = BTreeMap::new();
    let mut taken: Vec<IpAddr> = Vec::new();
    for node in &cluster.nodes {
        let mut host = HostSpec::new(&node.name, Role::Balancer);
        for (iface, addrs) in &node.addresses {
            let prefixes: Vec<Prefix> = addrs
                .iter()
                .map(|a| Prefix::new(a.address, a.prefix_len))
                .collect();
            taken.extend(prefixes.iter().map(|p| p.addr));
            segments
                .entry(iface.clone())
                .or_insert_with(|| prefixes.clone());
            host = host.interface(iface, iface, &prefixes);
        }
        topo = topo.host(host);
    }
    topo.bridges = segments.keys().cloned().collect();
    for instance in &cluster.instances {
        taken.extend(instance.vips.iter().map(|v| v.address.address));
    }

    let segment_of = |addr: IpAddr| {
        segments.iter().find_map(|(iface, nets)| {
            nets.iter()
                .find(|n| contains(n, addr))
                .map(|n| (iface.clone(), n.len))
        })
    };

    let mut servers_seen: Vec<IpAddr> = Vec::new();
    for service in &cluster.services {
        for server in &service.servers {
            if servers_seen.contains(&server.address) {
                continue;
            }
            servers_seen.push(server.address);
            let (bridge, len) = segment_of(server.address).ok_or_else(|| {
                LabError::InvalidPrefix(format!(
                    "server {} ({}) is in no node subnet",
                    server.name, server.address
                ))
            })?;
            topo = topo.host(HostSpec::new(&server.name, Role::Server).interface(
                "eth0",
                &bridge,
                &[Prefix::new(server.address, len)],
            ));
            taken.push(server.address);
        }
    }

    if let Some(service) = cluster.services.first() {
        let (bridge, len) = segment_of(service.vip).ok_or_else(|| {
            LabError::InvalidPrefix(format!("service VIP {} is in no node subnet", service.vip))
        })?;
        let client = free_address(service.vip, len, &taken).ok_or_else(|| {
            LabError::InvalidPrefix(format!("no free client address beside {}", service.vip))
        })?;
        topo = topo.host(HostSpec::new("client", Role::Client).interface(
            "eth0",
            &bridge,
            &[Prefix::new(client, len)],
        ));
    }
    topo.validate()?;
    Ok(topo)
}

/// The first address from host number 10 up in `near`'s IPv4 subnet not in `taken`.
fn free_address(near: IpAddr, len: u8, taken: &[IpAddr]) -> Option<IpAddr> {
    let IpAddr::V4(v4) = near else { return None };
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    let net = u32::from(v4) & mask;
    (u32::from(CLIENT_HOST_NUMBER)..(!mask))
        .map(|h| IpAddr::V4((net | h).into()))
        .find(|a| !taken.contains(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> ClusterConfig {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../cluster.toml.example");
        config::load(std::path::Path::new(path)).expect("example loads")
    }

    #[test]
    fn example_gives_the_two_arm_plan() {
        let topo = topology_from_cluster(&example()).unwrap();
        assert_eq!(topo.bridges, vec!["eth0".to_string(), "eth1".to_string()]);
        let names: Vec<&str> = topo.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["lb1", "lb2", "srv1", "srv2", "client"]);
        let client = &topo.hosts[4].interfaces[0];
        assert_eq!(client.bridge, "eth0");
        assert_eq!(client.addrs, vec!["198.18.0.10/24".parse().unwrap()]);
        let srv2 = &topo.hosts[3].interfaces[0];
        assert_eq!(srv2.bridge, "eth1");
        assert_eq!(srv2.addrs, vec!["198.18.1.22/24".parse().unwrap()]);
        let lb1 = &topo.hosts[0];
        assert_eq!(
            lb1.interfaces[1].addrs,
            vec!["198.18.1.11/24".parse().unwrap()]
        );
    }

    #[test]
    fn contains_respects_prefix() {
        let net: Prefix = "198.18.1.0/24".parse().unwrap();
        assert!(contains(&net, "198.18.1.200".parse().unwrap()));
        assert!(!contains(&net, "198.18.0.1".parse().unwrap()));
        assert!(!contains(&net, "2001:db8::1".parse().unwrap()));
    }
}
