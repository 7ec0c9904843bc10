//! A running lab: namespaces, bridges and veths brought up from a [`Topology`].

use std::fmt::Write as _;
use std::io::Write as _;
use std::ops::Index;
use std::path::Path;
use std::sync::Arc;

use crate::command::ip;
use crate::error::LabError;
use crate::host::{set_sysctls, Host};
use crate::logs::LogDir;
use crate::netns::{self, next_lab_id};
use crate::topology::{HostSpec, Role, Topology, MAX_IFNAME, SWITCH};

/// Hosts, each in its own namespace, plugged by veth pairs into bridges that live in
/// a switch namespace. Dropping it (also while unwinding) kills what runs inside and
/// removes every namespace, which removes the veths and bridges with them.
#[derive(Debug)]
pub struct Lab {
    id: String,
    switch: String,
    topology: Topology,
    hosts: Vec<Host>,
    // Every namespace created so far, so a half-built lab is cleaned up too.
    created: Vec<String>,
    logs: Arc<LogDir>,
}

/// Sysctls for the switch namespace: it only bridges, so it neither routes nor speaks
/// IPv6 itself (keeps captures free of the bridge's own ND/MLD).
const SWITCH_SYSCTLS: &[(&str, &str)] = &[
    ("net.ipv4.ip_forward", "0"),
    ("net.ipv6.conf.all.disable_ipv6", "1"),
    ("net.ipv6.conf.default.disable_ipv6", "1"),
];

/// Bridged frames must not go through a netfilter of the switch namespace if the host
/// has br_netfilter loaded; absent keys (module not loaded) are fine.
const SWITCH_BRIDGE_NF: &[&str] = &[
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.bridge.bridge-nf-call-arptables",
];

/// Sysctls for a host namespace. New namespaces start from the kernel defaults, not
/// the root namespace's values; they are written anyway so a lab never depends on
/// either. `default.*` is written before any interface exists so that eth0/eth1
/// inherit it.
fn host_sysctls(role: Role) -> Vec<(&'static str, &'static str)> {
    let fwd = if role.forwards() { "1" } else { "0" };
    // Balancers hold VIPs of both segments. arp_ignore=1: answer ARP only for
    // addresses on the interface the request came in on, so lb1 never claims the
    // server-side VIP on the public segment (Linux answers for any local address on
    // any interface by default). arp_announce=2: source ARP requests from the best
    // address of the outgoing interface's subnet, never from a VIP that may move to
    // the peer, which would poison neighbours' caches after a failover.
    let (arp_ignore, arp_announce) = if role == Role::Balancer {
        ("1", "2")
    } else {
        ("0", "0")
    };
    vec![
        // ip_forward first: writing it resets per-interface forwarding settings.
        ("net.ipv4.ip_forward", fwd),
        ("net.ipv6.conf.all.forwarding", fwd),
        ("net.ipv6.conf.default.forwarding", fwd),
        // Asymmetric paths are normal in failover drills; the effective value is
        // max(all, interface), so both are cleared.
        ("net.ipv4.conf.all.rp_filter", "0"),
        ("net.ipv4.conf.default.rp_filter", "0"),
        ("net.ipv4.conf.all.arp_ignore", arp_ignore),
        ("net.ipv4.conf.default.arp_ignore", arp_ignore),
        ("net.ipv4.conf.all.arp_announce", arp_announce),
        ("net.ipv4.conf.default.arp_announce", arp_announce),
        // In one-arm, a forwarding balancer would otherwise redirect clients around
        // itself; and no host should learn routes from redirects.
        ("net.ipv4.conf.all.send_redirects", "0"),
        ("net.ipv4.conf.default.send_redirects", "0"),
        ("net.ipv4.conf.all.accept_redirects", "0"),
        ("net.ipv4.conf.default.accept_redirects", "0"),
        ("net.ipv6.conf.all.accept_redirects", "0"),
        ("net.ipv6.conf.default.accept_redirects", "0"),
        // IPv6 addresses (link-local ones too, VRRPv3's source) usable at once.
        ("net.ipv6.conf.all.accept_dad", "0"),
        ("net.ipv6.conf.default.accept_dad", "0"),
        // Link down/up drills must not lose the configured IPv6 addresses.
        ("net.ipv6.conf.all.keep_addr_on_down", "1"),
        ("net.ipv6.conf.default.keep_addr_on_down", "1"),
    ]
}

/// Host-side MAC: 02:00:00:00:<host#>:<if#>.
fn host_mac(host: u8, iface: usize) -> String {
    format!("02:00:00:00:{host:02x}:{iface:02x}")
}

/// Switch-side MAC of the same veth pair: 02:00:00:01:<host#>:<if#>.
fn port_mac(host: u8, iface: usize) -> String {
    format!("02:00:00:01:{host:02x}:{iface:02x}")
}

/// Bridge MAC: 02:00:00:ff:00:<bridge#>.
fn bridge_mac(bridge: usize) -> String {
    format!("02:00:00:ff:00:{bridge:02x}")
}

/// Switch-side port name: `<host>-<iface>` when it fits in 15 characters.
fn port_name(host: &str, host_no: u8, iface: &str, iface_no: usize) -> String {
    let readable = format!("{host}-{iface}");
    if readable.len() <= MAX_IFNAME {
        readable
    } else {
        format!("p{host_no}-{iface_no}")
    }
}

impl Lab {
    /// Sweeps dead runs' namespaces, then brings `topology` up.
    pub fn up(topology: Topology) -> Result<Lab, LabError> {
        topology.validate()?;
        if let Err(e) = netns::sweep() {
            let _ = writeln!(std::io::stderr(), "sweeping stale lab namespaces: {e}");
        }
        let id = next_lab_id();
        let logs = Arc::new(LogDir::create(&id)?);
        let mut lab = Lab {
            switch: format!("{id}-{SWITCH}"),
            id,
            topology,
            hosts: Vec::new(),
            created: Vec::new(),
            logs,
        };
        // On error the partly built lab is dropped, which removes what exists.
        lab.build()?;
        Ok(lab)
    }

    /// The two-arm lab ([`Topology::two_arm`]).
    pub fn two_arm() -> Result<Lab, LabError> {
        Lab::up(Topology::two_arm())
    }

    /// The one-arm lab ([`Topology::one_arm`]).
    pub fn one_arm() -> Result<Lab, LabError> {
        Lab::up(Topology::one_arm())
    }

    fn create_netns(&mut self, name: &str) -> Result<(), LabError> {
        netns::create(name)?;
        self.created.push(name.to_owned());
        ip(&["-n", name, "link", "set", "lo", "up"]).map(drop)
    }

    fn build(&mut self) -> Result<(), LabError> {
        let switch = self.switch.clone();
        self.create_netns(&switch)?;
        set_sysctls(&switch, SWITCH_SYSCTLS)?;
        for key in SWITCH_BRIDGE_NF {
            // Best effort: only present when br_netfilter is loaded.
            let _ = set_sysctls(&switch, &[(key, "0")]);
        }
        for (n, bridge) in self.topology.bridges.iter().enumerate() {
            let mac = bridge_mac(n + 1);
            // Snooping off: VRRP adverts (224.0.0.18, ff02::12) must reach every port.
            ip(&[
                "-n",
                &switch,
                "link",
                "add",
                bridge,
                "address",
                &mac,
                "type",
                "bridge",
                "mcast_snooping",
                "0",
                "forward_delay",
                "0",
                "stp_state",
                "0",
            ])?;
            ip(&["-n", &switch, "link", "set", bridge, "up"])?;
        }

        let specs = self.topology.hosts.clone();
        for (i, spec) in specs.iter().enumerate() {
            let number = u8::try_from(i + 1).unwrap_or(u8::MAX);
            let netns = format!("{}-{}", self.id, spec.name);
            self.create_netns(&netns)?;
            let host = self.plug(spec, number, netns)?;
            self.hosts.push(host);
        }
        self.logs.write("lab.txt", &self.describe())?;
        Ok(())
    }

    /// Sets up `spec`'s freshly created namespace `netns`: sysctls, interfaces
    /// cabled to their bridges, addresses, routes.
    fn plug(&self, spec: &HostSpec, number: u8, netns: String) -> Result<Host, LabError> {
        set_sysctls(&netns, &host_sysctls(spec.role))?;
        let host = Host {
            name: spec.name.clone(),
            netns,
            role: spec.role,
            number,
            interfaces: spec.interfaces.clone(),
            logs: Arc::clone(&self.logs),
        };
        for (k, iface) in spec.interfaces.iter().enumerate() {
            let port = port_name(&spec.name, number, &iface.name, k);
            // Created in the switch namespace with its peer placed straight into
            // the host: nothing ever appears in the root namespace.
            ip(&[
                "-n",
                &self.switch,
                "link",
                "add",
                &port,
                "address",
                &port_mac(number, k),
                "type",
                "veth",
                "peer",
                "name",
                &iface.name,
                "address",
                &host_mac(number, k),
                "netns",
                &host.netns,
            ])?;
            self.attach_port(&port, &iface.bridge)?;
            host.set_link(&iface.name, true)?;
            for addr in &iface.addrs {
                host.add_address(&iface.name, *addr)?;
            }
        }
        for route in &spec.routes {
            host.add_route(route.dest, route.via)?;
        }
        Ok(host)
    }

    /// Puts a switch-side port into `bridge`, up.
    fn attach_port(&self, port: &str, bridge: &str) -> Result<(), LabError> {
        ip(&[
            "-n",
            &self.switch,
            "link",
            "set",
            port,
            "master",
            bridge,
            "up",
        ])
        .map(drop)
    }

    /// A reboot of `host`: its processes are killed and its namespace is destroyed
    /// with everything the kernel held for it (connections, conntrack, IPVS,
    /// rulesets, addresses), then made anew as the topology describes it, cables
    /// plugged in. Files on disk stay, as a disk would.
    pub fn reboot(&self, host: &str) -> Result<(), LabError> {
        let h = self.host(host)?;
        let spec = self
            .topology
            .hosts
            .iter()
            .find(|s| s.name == host)
            .ok_or_else(|| LabError::UnknownHost(host.to_owned()))?;
        netns::kill_processes(&h.netns)?;
        // The cables first: a socket still open in the old namespace (a thread of
        // the test's own) keeps that namespace, and with it its veths, alive.
        for (k, iface) in spec.interfaces.iter().enumerate() {
            let port = port_name(&spec.name, h.number, &iface.name, k);
            ip(&["-n", &self.switch, "link", "del", &port])?;
        }
        netns::destroy(&h.netns)?;
        netns::create(&h.netns)?;
        ip(&["-n", &h.netns, "link", "set", "lo", "up"])?;
        self.plug(spec, h.number, h.netns.clone()).map(drop)
    }

    /// A human-readable list of namespaces, interfaces and addresses.
    pub fn describe(&self) -> String {
        let mut s = format!("lab {} (switch namespace {})\n", self.id, self.switch);
        for h in &self.hosts {
            let _ = writeln!(s, "{:<8} {}", h.name, h.netns);
            for i in &h.interfaces {
                let addrs: Vec<String> = i.addrs.iter().map(ToString::to_string).collect();
                let _ = writeln!(s, "    {} -> {}: {}", i.name, i.bridge, addrs.join(" "));
            }
        }
        s
    }

    /// Lab id, `lbt-<pid>-<n>`; every namespace name starts with it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Namespace holding the bridges.
    pub fn switch_netns(&self) -> &str {
        &self.switch
    }

    /// Every namespace of the lab, the switch's last.
    pub fn namespaces(&self) -> Vec<String> {
        let mut names: Vec<String> = self.hosts.iter().map(|h| h.netns.clone()).collect();
        names.push(self.switch.clone());
        names
    }

    /// The topology it was built from.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// All hosts in declaration order.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// One host by name.
    pub fn host(&self, name: &str) -> Result<&Host, LabError> {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .ok_or_else(|| LabError::UnknownHost(name.to_owned()))
    }

    /// Directory of this lab's process logs.
    pub fn log_dir(&self) -> &Path {
        self.logs.path()
    }

    /// Plugs or unplugs a host interface's cable: sets its bridge port up or down, so
    /// the host sees carrier loss without anything changing inside the host.
    pub fn set_cable(&self, host: &str, iface: &str, connected: bool) -> Result<(), LabError> {
        let h = self.host(host)?;
        let k = h
            .interfaces
            .iter()
            .position(|i| i.name == iface)
            .ok_or_else(|| LabError::UnknownInterface {
                host: host.to_owned(),
                iface: iface.to_owned(),
            })?;
        let port = port_name(&h.name, h.number, iface, k);
        let state = if connected { "up" } else { "down" };
        ip(&["-n", &self.switch, "link", "set", &port, state]).map(drop)
    }

    /// Cuts or rejoins segments of a host's interfaces without the host noticing:
    /// their bridge ports leave the bridge (or join it again) and stay up, so the
    /// host keeps its carrier but hears nobody and is heard by nobody on those
    /// segments (a partition between switches, as opposed to [`Lab::set_cable`]).
    /// One `ip -batch`: a heal reaches every segment within microseconds, not one
    /// process start after another (under load those were tens of milliseconds
    /// apart, time enough for a whole election on the first segment while the next
    /// was still cut).
    pub fn set_partitioned_links(
        &self,
        host: &str,
        ifaces: &[&str],
        cut: bool,
    ) -> Result<(), LabError> {
        let h = self.host(host)?;
        let mut batch = String::new();
        for iface in ifaces {
            let (k, spec) = h
                .interfaces
                .iter()
                .enumerate()
                .find(|(_, i)| i.name == *iface)
                .ok_or_else(|| LabError::UnknownInterface {
                    host: host.to_owned(),
                    iface: (*iface).to_owned(),
                })?;
            let port = port_name(&h.name, h.number, iface, k);
            if cut {
                let _ = writeln!(batch, "link set {port} nomaster");
            } else {
                let _ = writeln!(batch, "link set {port} master {} up", spec.bridge);
            }
        }
        let file = std::env::temp_dir().join(format!("{}-partition.batch", self.switch));
        std::fs::write(&file, batch).map_err(|error| LabError::BatchFile {
            path: file.clone(),
            error,
        })?;
        let done = ip(&["-n", &self.switch, "-batch", &file.to_string_lossy()]).map(drop);
        let _ = std::fs::remove_file(&file);
        done
    }

    /// Tears down now, reporting the first failure (dropping does the same silently).
    pub fn down(mut self) -> Result<(), LabError> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<(), LabError> {
        let mut first_error = None;
        // Processes first (they keep namespaces alive), then the namespaces: hosts,
        // then the switch, whose removal takes the bridges and remaining veths.
        for name in self.created.iter().rev() {
            if let Err(e) = netns::kill_processes(name) {
                first_error.get_or_insert(e);
            }
        }
        for name in self.created.iter().rev() {
            if let Err(e) = netns::destroy(name) {
                first_error.get_or_insert(e);
            }
        }
        self.created.clear();
        first_error.map_or(Ok(()), Err)
    }
}

impl Index<&str> for Lab {
    type Output = Host;

    /// The named host; panics if the lab has none (use [`Lab::host`] to handle that).
    fn index(&self, name: &str) -> &Host {
        match self.host(name) {
            Ok(h) => h,
            Err(e) => panic!("{e}"),
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            let _ = writeln!(std::io::stderr(), "tearing down lab {}: {e}", self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_and_port_names_are_deterministic() {
        assert_eq!(host_mac(2, 1), "02:00:00:00:02:01");
        assert_eq!(port_mac(10, 0), "02:00:00:01:0a:00");
        assert_eq!(port_name("client", 1, "eth0", 0), "client-eth0");
        assert_eq!(port_name("averylonghost", 7, "eth1", 1), "p7-1");
    }
}
