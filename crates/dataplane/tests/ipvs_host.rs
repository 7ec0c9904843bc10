//! The IPVS backend on a kernel without IPVS (the development machines): `auto`
//! chooses nft and says why; `ipvs` fails with the error that says what to do.
//! The VM tests (ipvs_vm.rs) cover a kernel with IPVS.

use std::path::Path;

use dataplane::ipvs::IpvsBackendError;
use dataplane::{
    select_backend, BackendChoice, ChosenBackend, DataplaneError, DesiredState, IpvsBackend,
    IpvsSettings, PortSpec, Protocol, Scheduler, Service,
};
use integration::Lab;

fn kernel_has_ipvs() -> bool {
    Path::new("/proc/net/ip_vs").exists() || Path::new("/sys/module/ip_vs").exists()
}

fn settings() -> IpvsSettings {
    IpvsSettings {
        nft_table: "lbsuite_ipvs_host".into(),
        ownership_record: std::env::temp_dir().join("lbsuite-ipvs-host-never-written"),
        sloppy: false,
    }
}

#[test]
fn auto_chooses_nft_without_ipvs_and_says_why() {
    if !integration::have_root("auto_chooses_nft_without_ipvs_and_says_why") {
        return;
    }
    if kernel_has_ipvs() {
        println!("SKIP (this kernel has IPVS; the VM tests cover it)");
        return;
    }
    let lab = Lab::one_arm().unwrap();
    let (auto, ipvs, nft) = lab["lb1"]
        .run_in(|| {
            (
                select_backend(BackendChoice::Auto, &settings(), None),
                IpvsBackend::new(&settings()).map(drop),
                select_backend(BackendChoice::Nft, &settings(), None),
            )
        })
        .unwrap();
    let (backend, auto) = auto.unwrap();
    assert!(matches!(backend, ChosenBackend::Nft(_)));
    assert!(
        auto.reason.contains("nft") && auto.reason.contains("no IPVS"),
        "{}",
        auto.reason
    );
    assert_eq!(nft.unwrap().1.reason, "configured: nft");

    let err = ipvs.unwrap_err();
    assert!(
        matches!(&err, DataplaneError::Ipvs(e) if matches!(**e, IpvsBackendError::Connect(_))),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("modprobe ip_vs") && text.contains("nft backend"),
        "{text}"
    );
}

#[test]
fn auto_chooses_nft_when_the_services_need_it() {
    if !integration::have_root("auto_chooses_nft_when_the_services_need_it") {
        return;
    }
    let lab = Lab::one_arm().unwrap();
    let desired = DesiredState {
        services: vec![Service {
            name: "passive".into(),
            vip: "198.18.0.100".parse().unwrap(),
            ports: PortSpec::Range(10000, 10010),
            protocol: Protocol::Tcp,
            scheduler: Scheduler::Sh,
            backends: Vec::new(),
            forward: Default::default(),
            persistence: None,
        }],
        snat: Vec::new(),
    };
    let (backend, chosen) = lab["lb1"]
        .run_in(|| select_backend(BackendChoice::Auto, &settings(), Some(&desired)))
        .unwrap()
        .unwrap();
    assert!(matches!(backend, ChosenBackend::Nft(_)));
    assert!(
        chosen.reason.contains("port range 10000-10010"),
        "{}",
        chosen.reason
    );
}
