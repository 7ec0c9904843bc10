//! A topology declared as data: hosts, their interfaces, the bridges they plug into.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::error::LabError;

/// Longest Linux interface name (IFNAMSIZ - 1).
pub const MAX_IFNAME: usize = 15;
/// Longest host name; keeps namespace names short and readable.
pub const MAX_HOSTNAME: usize = 16;

/// An address with its prefix length, as `ip addr add` takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Prefix {
    /// The address.
    pub addr: IpAddr,
    /// The prefix length.
    pub len: u8,
}

impl Prefix {
    /// An address with a prefix length.
    pub const fn new(addr: IpAddr, len: u8) -> Self {
        Prefix { addr, len }
    }

    /// An IPv4 address with a prefix length.
    pub const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> Self {
        Prefix::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), len)
    }

    /// An IPv6 address with a prefix length.
    pub const fn v6(addr: Ipv6Addr, len: u8) -> Self {
        Prefix::new(IpAddr::V6(addr), len)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Prefix {
    type Err = LabError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || LabError::InvalidPrefix(s.to_owned());
        let (addr, len) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let len: u8 = len.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(bad());
        }
        Ok(Prefix { addr, len })
    }
}

/// What a host does; decides its forwarding and ARP sysctls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A load-balancer node: forwards, hosts VIPs.
    Balancer,
    /// A client on the public segment.
    Client,
    /// A real server behind the balancers.
    Server,
}

impl Role {
    /// Whether hosts of this role forward IPv4 and IPv6.
    pub fn forwards(self) -> bool {
        matches!(self, Role::Balancer)
    }
}

/// A static route added at bring-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// Destination prefix.
    pub dest: Prefix,
    /// Next hop.
    pub via: IpAddr,
}

/// One interface of a host: the host end of a veth pair whose other end is a bridge port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceSpec {
    /// Interface name inside the host (eth0, eth1, ...).
    pub name: String,
    /// Bridge the interface is plugged into.
    pub bridge: String,
    /// Addresses configured at bring-up.
    pub addrs: Vec<Prefix>,
}

/// One host: a network namespace of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostSpec {
    /// Host name (part of the namespace name).
    pub name: String,
    /// What the host does.
    pub role: Role,
    /// Interfaces in declaration order; the order gives the MAC's last byte.
    pub interfaces: Vec<InterfaceSpec>,
    /// Routes added after the addresses.
    pub routes: Vec<Route>,
}

impl HostSpec {
    /// A host with no interfaces yet.
    pub fn new(name: &str, role: Role) -> Self {
        HostSpec {
            name: name.to_owned(),
            role,
            interfaces: Vec::new(),
            routes: Vec::new(),
        }
    }

    /// Adds an interface plugged into `bridge` with the given addresses.
    pub fn interface(mut self, name: &str, bridge: &str, addrs: &[Prefix]) -> Self {
        self.interfaces.push(InterfaceSpec {
            name: name.to_owned(),
            bridge: bridge.to_owned(),
            addrs: addrs.to_vec(),
        });
        self
    }

    /// Adds a static route.
    pub fn route(mut self, dest: Prefix, via: IpAddr) -> Self {
        self.routes.push(Route { dest, via });
        self
    }
}

/// A whole lab: bridges (in the switch namespace) and hosts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Topology {
    /// Bridge names, each a Linux bridge in the switch namespace.
    pub bridges: Vec<String>,
    /// Hosts in declaration order; the order gives the MAC's fifth byte.
    pub hosts: Vec<HostSpec>,
}

/// Public segment of the address plan (eth0 side).
pub const PUBLIC_V4: [u8; 3] = [198, 18, 0];
/// Server segment of the address plan (eth1 side in two-arm).
pub const SERVER_V4: [u8; 3] = [198, 18, 1];

/// `2001:db8:0:<segment>::<host>` where `host` is written in hex digits that read like
/// the decimal IPv4 host part (::10 for .10), as in cluster.toml.example.
fn v6(segment: u16, host: u8) -> Prefix {
    // ::10 means the hex group 0x10: reuse the decimal digits as hex digits.
    let group = u16::from_str_radix(&host.to_string(), 16).unwrap_or(u16::from(host));
    Prefix::v6(Ipv6Addr::new(0x2001, 0xdb8, 0, segment, 0, 0, 0, group), 64)
}

fn v4(net: [u8; 3], host: u8) -> Prefix {
    Prefix::v4(net[0], net[1], net[2], host, 24)
}

impl Topology {
    /// An empty topology.
    pub fn new() -> Self {
        Topology::default()
    }

    /// Declares a bridge.
    pub fn bridge(mut self, name: &str) -> Self {
        self.bridges.push(name.to_owned());
        self
    }

    /// Declares a host.
    pub fn host(mut self, host: HostSpec) -> Self {
        self.hosts.push(host);
        self
    }

    /// The two-arm plan: bridge `public` (198.18.0.0/24, 2001:db8:0:a::/64) joins
    /// client, lb1 and lb2 on their eth0; bridge `server` (198.18.1.0/24,
    /// 2001:db8:0:b::/64) joins lb1 and lb2 on eth1 and the servers on their only
    /// NIC, which is called eth0 on the servers. No default routes.
    pub fn two_arm() -> Self {
        let public = |h: u8| [v4(PUBLIC_V4, h), v6(0xa, h)];
        let server = |h: u8| [v4(SERVER_V4, h), v6(0xb, h)];
        Topology::new()
            .bridge("public")
            .bridge("server")
            .host(HostSpec::new("client", Role::Client).interface("eth0", "public", &public(10)))
            .host(
                HostSpec::new("lb1", Role::Balancer)
                    .interface("eth0", "public", &public(11))
                    .interface("eth1", "server", &server(11)),
            )
            .host(
                HostSpec::new("lb2", Role::Balancer)
                    .interface("eth0", "public", &public(12))
                    .interface("eth1", "server", &server(12)),
            )
            .host(HostSpec::new("srv1", Role::Server).interface("eth0", "server", &server(21)))
            .host(HostSpec::new("srv2", Role::Server).interface("eth0", "server", &server(22)))
    }

    /// The one-arm plan: one bridge `public` (198.18.0.0/24, 2001:db8:0:a::/64) with
    /// client .10, lb1 .11, lb2 .12, srv1 .21, srv2 .22, every host on eth0.
    pub fn one_arm() -> Self {
        let public = |h: u8| [v4(PUBLIC_V4, h), v6(0xa, h)];
        let mut topo = Topology::new().bridge("public");
        for (name, role, h) in [
            ("client", Role::Client, 10),
            ("lb1", Role::Balancer, 11),
            ("lb2", Role::Balancer, 12),
            ("srv1", Role::Server, 21),
            ("srv2", Role::Server, 22),
        ] {
            topo = topo.host(HostSpec::new(name, role).interface("eth0", "public", &public(h)));
        }
        topo
    }

    /// Checks names and references before anything is created.
    pub fn validate(&self) -> Result<(), LabError> {
        let mut bridges = HashSet::new();
        for b in &self.bridges {
            check_ifname("bridge", b)?;
            if !bridges.insert(b.as_str()) {
                return Err(LabError::DuplicateBridge(b.clone()));
            }
        }
        let mut hosts = HashSet::new();
        for h in &self.hosts {
            check_hostname(&h.name)?;
            if !hosts.insert(h.name.as_str()) {
                return Err(LabError::DuplicateHost(h.name.clone()));
            }
            let mut ifaces = HashSet::new();
            for i in &h.interfaces {
                check_ifname("interface", &i.name)?;
                if !ifaces.insert(i.name.as_str()) {
                    return Err(LabError::DuplicateInterface {
                        host: h.name.clone(),
                        iface: i.name.clone(),
                    });
                }
                if !bridges.contains(i.bridge.as_str()) {
                    return Err(LabError::UnknownBridge {
                        host: h.name.clone(),
                        iface: i.name.clone(),
                        bridge: i.bridge.clone(),
                    });
                }
            }
        }
        if self.hosts.len() > 250 {
            return Err(LabError::InvalidName {
                kind: "host",
                name: format!("#{}", self.hosts.len()),
                why: "at most 250 hosts (one MAC byte each)",
            });
        }
        Ok(())
    }
}

/// Name of the switch namespace's suffix; no host may take it.
pub(crate) const SWITCH: &str = "switch";

fn check_hostname(name: &str) -> Result<(), LabError> {
    let bad = |why| {
        Err(LabError::InvalidName {
            kind: "host",
            name: name.to_owned(),
            why,
        })
    };
    if name.is_empty() || name.len() > MAX_HOSTNAME {
        return bad("must be 1 to 16 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return bad("only a-z, 0-9 and _");
    }
    if name == SWITCH {
        return bad("reserved for the bridges' namespace");
    }
    Ok(())
}

fn check_ifname(kind: &'static str, name: &str) -> Result<(), LabError> {
    let bad = |why| {
        Err(LabError::InvalidName {
            kind,
            name: name.to_owned(),
            why,
        })
    };
    if name.is_empty() || name.len() > MAX_IFNAME {
        return bad("must be 1 to 15 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return bad("only A-Z, a-z, 0-9, _, . and -");
    }
    if name == "lo" {
        return bad("lo is the loopback interface");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_round_trips() {
        let p: Prefix = "2001:db8:0:a::10/64".parse().unwrap();
        assert_eq!(p.to_string(), "2001:db8:0:a::10/64");
        assert!("198.18.0.1/33".parse::<Prefix>().is_err());
        assert!("198.18.0.1".parse::<Prefix>().is_err());
    }

    #[test]
    fn two_arm_matches_the_address_plan() {
        let t = Topology::two_arm();
        t.validate().unwrap();
        let lb1 = t.hosts.iter().find(|h| h.name == "lb1").unwrap();
        let addrs: Vec<String> = lb1
            .interfaces
            .iter()
            .flat_map(|i| i.addrs.iter().map(move |a| format!("{} {a}", i.name)))
            .collect();
        assert_eq!(
            addrs,
            [
                "eth0 198.18.0.11/24",
                "eth0 2001:db8:0:a::11/64",
                "eth1 198.18.1.11/24",
                "eth1 2001:db8:0:b::11/64"
            ]
        );
        let srv2 = t.hosts.iter().find(|h| h.name == "srv2").unwrap();
        assert_eq!(srv2.interfaces.len(), 1);
        assert_eq!(srv2.interfaces[0].name, "eth0");
        assert_eq!(srv2.interfaces[0].bridge, "server");
        assert_eq!(
            srv2.interfaces[0].addrs[1].to_string(),
            "2001:db8:0:b::22/64"
        );
        assert!(t.hosts.iter().all(|h| h.routes.is_empty()));
    }

    #[test]
    fn validation_refuses_bad_topologies() {
        let dup = Topology::one_arm().host(HostSpec::new("lb1", Role::Server));
        assert!(matches!(dup.validate(), Err(LabError::DuplicateHost(h)) if h == "lb1"));
        let unknown = Topology::new().host(HostSpec::new("a", Role::Client).interface(
            "eth0",
            "nowhere",
            &[],
        ));
        assert!(matches!(
            unknown.validate(),
            Err(LabError::UnknownBridge { .. })
        ));
        let long = Topology::new().bridge("a_very_long_bridge_name");
        assert!(matches!(long.validate(), Err(LabError::InvalidName { .. })));
        let reserved = Topology::new().host(HostSpec::new(SWITCH, Role::Client));
        assert!(matches!(
            reserved.validate(),
            Err(LabError::InvalidName { .. })
        ));
    }
}
