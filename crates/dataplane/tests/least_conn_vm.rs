//! IPVS lc and wlc (and wrr, the reference) under the skewed load lc_bench runs
//! against the nft backend (`integration::skewed_load`): run inside the VM by
//! integration/vm/ipvs-tests.sh (`--ignored`). The figures go to the VM log
//! (`LBSUITE_VM_NOTES`); `lc_bench --ipvs-vm` prints them beside nft's.

use std::net::SocketAddr;
use std::time::Duration;

use dataplane::{Dataplane, DesiredState, IpvsBackend, IpvsSettings, Scheduler};
use integration::skewed_load::{self, SkewServer, SkewedLoad};
use integration::Lab;
use vm_common::{note, web_state, SNAT_VIP, VIP};

mod vm_common;

fn state(scheduler: Scheduler, srv1_weight: u32) -> DesiredState {
    web_state(scheduler, [srv1_weight, 1])
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
