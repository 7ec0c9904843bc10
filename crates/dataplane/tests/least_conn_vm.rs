//! IPVS lc and wlc (and wrr, the reference) under the skewed load lc_bench runs
//! against the nft backend (`integration::skewed_load`): run inside the VM by
//! integration/vm/ipvs-tests.sh (`--ignored`). The figures go to the VM log
//! (`LBSUITE_VM_NOTES`); `lc_bench --ipvs-vm` prints them beside nft's.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use dataplane::{
    Backend, Dataplane, DesiredState, Forwarding, IpvsBackend, IpvsSettings, NatProtocol, PortSpec,
    Protocol, Scheduler, Service, SnatRule, SnatSource,
};
use integration::skewed_load::{self, SkewServer, SkewedLoad};
use integration::Lab;

const VIP: &str = "198.18.0.100";
const SNAT_VIP: &str = "198.18.1.100";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Writes a finding for the VM log.
fn note(text: &str) {
    println!("{text}");
    if let Some(path) = std::env::var_os("LBSUITE_VM_NOTES") {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        writeln!(f, "{text}").unwrap();
    }
}

fn state(scheduler: Scheduler, srv1_weight: u32) -> DesiredState {
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
                backend("srv1", "198.18.1.21", srv1_weight),
                backend("srv2", "198.18.1.22", 1),
            ],
            forward: Forwarding::Nat,
            persistence: None,
        }],
        snat: vec![SnatRule {
            name: "web".into(),
            in_iface: Some("eth0".into()),
            out_iface: Some("eth1".into()),
            protocol: NatProtocol::Tcp,
            orig_daddr: ip(VIP),
            orig_dports: Some(PortSpec::Single(80)),
            source: SnatSource::Address(ip(SNAT_VIP)),
        }],
    }
}

#[test]
#[ignore = "needs IPVS: run in the VM"]
fn ipvs_least_connection_imbalance_under_skewed_load() {
    let lab = Lab::two_arm().unwrap();
    let lb1 = &lab["lb1"];
    lb1.add_address("eth0", format!("{VIP}/32").parse().unwrap())
        .unwrap();
    lb1.add_address("eth1", format!("{SNAT_VIP}/32").parse().unwrap())
        .unwrap();
    let srv1 = SkewServer::start(
        &lab["srv1"],
        "198.18.1.21:80".parse().unwrap(),
        Duration::ZERO,
    )
    .unwrap();
    let srv2 = SkewServer::start(
        &lab["srv2"],
        "198.18.1.22:80".parse().unwrap(),
        skewed_load::SLOW_DELAY,
    )
    .unwrap();
    let settings = IpvsSettings {
        nft_table: "lbsuite".into(),
        ownership_record: std::env::temp_dir()
            .join(format!("lbsuite-ipvs-{}-least-conn", std::process::id())),
        sloppy: false,
    };
    let mut ipvs = lb1
        .run_in(move || IpvsBackend::new(&settings))
        .unwrap()
        .unwrap();
    let vip: SocketAddr = format!("{VIP}:80").parse().unwrap();
    // Short: the VM emulates its CPU (TCG).
    let load = SkewedLoad {
        duration: Duration::from_secs(6),
        ..SkewedLoad::default()
    };
    let runs = 2;
    let cases = [
        (Scheduler::Wrr, 1, [1.0, 1.0]),
        (Scheduler::Lc, 1, [1.0, 1.0]),
        (Scheduler::Wlc, 2, [2.0, 1.0]),
    ];
    let mut figures = vec![Vec::new(); cases.len()];
    let mut opens = vec![Vec::new(); cases.len()];
    for _ in 0..runs {
        for (k, (sched, w1, weights)) in cases.iter().enumerate() {
            ipvs.apply(&state(*sched, *w1)).unwrap();
            std::thread::sleep(Duration::from_secs(2));
            let r = skewed_load::run(
                &lab["client"],
                vip,
                &[(&srv1, weights[0]), (&srv2, weights[1])],
                &load,
            )
            .unwrap();
            assert!(r.connections > 0, "no connection went through: {r:?}");
            figures[k].push(r.mean_imbalance());
            opens[k].push(r.mean_open.clone());
        }
    }
    for (k, (sched, w1, _)) in cases.iter().enumerate() {
        let o1: Vec<f64> = opens[k].iter().map(|o: &Vec<f64>| o[0]).collect();
        let o2: Vec<f64> = opens[k].iter().map(|o: &Vec<f64>| o[1]).collect();
        let each: Vec<String> = figures[k].iter().map(|f| format!("{f:.2}")).collect();
        note(&format!(
            "ipvs {:<3} imbalance {:.2} (runs {}), mean open srv1 {:.1} srv2 {:.1}{}",
            sched.name(),
            skewed_load::median(&figures[k]),
            each.join(" "),
            skewed_load::median(&o1),
            skewed_load::median(&o2),
            if *w1 != 1 { " (weights 2:1)" } else { "" }
        ));
    }
    ipvs.teardown().unwrap();
}
