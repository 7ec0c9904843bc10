//! Shared by the dataplane's VM tests (ipvs_vm, least_conn_vm, persistence_vm,
//! flowtable_vm): the two-arm lab's addresses, the web service as lbd's example has
//! it, and the VM log's notes.
#![allow(dead_code)]

use std::io::Write;
use std::net::IpAddr;

use dataplane::{
    Backend, DesiredState, Forwarding, NatProtocol, PortSpec, Protocol, Scheduler, Service,
    SnatRule, SnatSource,
};

/// The public VIP on lb1's eth0.
pub const VIP: &str = "198.18.0.100";
/// The server-side SNAT VIP on lb1's eth1.
pub const SNAT_VIP: &str = "198.18.1.100";

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A line for the VM log (`$LBSUITE_VM_NOTES`, printed by the guest after the
/// binary's results: libtest swallows a passing test's output).
pub fn note(text: &str) {
    println!("{text}");
    if let Some(path) = std::env::var_os("LBSUITE_VM_NOTES") {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path);
        if let Ok(mut f) = file {
            let _ = writeln!(f, "{text}");
        }
    }
}

/// Service `web` on VIP:80 with `scheduler` over srv1 and srv2 (port 80, NAT, the
/// given weights), and its SNAT rule (eth0 → eth1, to the SNAT VIP).
pub fn web_state(scheduler: Scheduler, weights: [u32; 2]) -> DesiredState {
    let backend = |name: &str, addr: &str, weight| Backend {
        name: name.into(),
        addr: ip(addr),
        port: Some(80),
        weight,
    };
    DesiredState {
        services: vec![Service {
            name: "web".into(),
            vip: ip(VIP),
            ports: PortSpec::Single(80),
            protocol: Protocol::Tcp,
            scheduler,
            backends: vec![
                backend("srv1", "198.18.1.21", weights[0]),
                backend("srv2", "198.18.1.22", weights[1]),
            ],
            forward: Forwarding::Nat,
            persistence: None,
        }],
        snat: vec![web_snat()],
    }
}

/// The web service's SNAT rule: TCP to VIP:80 from eth0 out of eth1, to the SNAT VIP.
pub fn web_snat() -> SnatRule {
    SnatRule {
        name: "web".into(),
        in_iface: Some("eth0".into()),
        out_iface: Some("eth1".into()),
        protocol: NatProtocol::Tcp,
        orig_daddr: ip(VIP),
        orig_dports: Some(PortSpec::Single(80)),
        source: SnatSource::Address(ip(SNAT_VIP)),
    }
}
