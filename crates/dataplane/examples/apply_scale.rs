//! Prints apply timings of the nft backend for N services x 8 backends, inside a
//! throwaway lab namespace (needs root): `cargo run --release -p dataplane --example
//! apply_scale -- 1000 10000`.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use dataplane::{
    Backend, Dataplane, DesiredState, NftBackend, PortSpec, Protocol, Scheduler, Service,
};
use integration::Lab;

fn state(services: usize, scheduler: Scheduler) -> DesiredState {
    let services = (0..services)
        .map(|i| Service {
            name: format!("svc{i}"),
            // 198.19.0.0/16 holds 65k VIPs; ports spread the rest.
            vip: IpAddr::V4(Ipv4Addr::new(
                198,
                19,
                (i / 250 % 256) as u8,
                (i % 250 + 1) as u8,
            )),
            ports: PortSpec::Single(80 + (i / 64000) as u16),
            protocol: Protocol::Tcp,
            scheduler,
            backends: (0..8)
                .map(|j| Backend {
                    name: format!("b{j}"),
                    addr: IpAddr::V4(Ipv4Addr::new(198, 18, 1, 21 + j)),
                    port: Some(8080),
                    weight: 1,
                })
                .collect(),
            forward: Default::default(),
            persistence: None,
        })
        .collect();
    DesiredState {
        services,
        snat: Vec::new(),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if !integration::have_root("apply_scale") {
        return Ok(());
    }
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1000, 10000]
    } else {
        sizes
    };
    let lab = Lab::one_arm()?;
    let lb = &lab["lb1"];
    for n in sizes {
        for sched in std::env::var("SCHED").map_or(vec![Scheduler::Wrr, Scheduler::Mh], |v| {
            if v == "mh" {
                vec![Scheduler::Mh]
            } else {
                vec![Scheduler::Wrr]
            }
        }) {
            let mut nft = lb.run_in(|| NftBackend::new("lbsuite"))??;
            let mut s = state(n, sched);
            let t = Instant::now();
            let r = nft.apply(&s)?;
            println!(
                "{n} services x 8 backends ({sched}): first apply {:?} ({} elements, {} messages, {} KiB)",
                t.elapsed(),
                r.elements_added,
                r.messages,
                r.batch_bytes / 1024
            );
            let t = Instant::now();
            let r = nft.apply(&s)?;
            println!(
                "  same state again: {:?} ({} changes)",
                t.elapsed(),
                r.changes()
            );
            let t = Instant::now();
            nft.apply(&s)?;
            println!("  same state a third time: {:?}", t.elapsed());
            s.services[n / 2].backends[3].weight = 0;
            let t = Instant::now();
            let r = nft.apply(&s)?;
            println!(
                "  one backend drained: {:?} (+{} -{} elements, {} rules rebuilt)",
                t.elapsed(),
                r.elements_added,
                r.elements_removed,
                r.rules_added
            );
            s.services[n / 3].backends[1].weight = 0;
            let t = Instant::now();
            let r = nft.apply(&s)?;
            println!(
                "  another backend drained: {:?} ({} changes)",
                t.elapsed(),
                r.changes()
            );
            let mut fresh = lb.run_in(|| NftBackend::new("lbsuite"))??;
            let t = Instant::now();
            let r = fresh.apply(&s)?;
            println!(
                "  adopt after restart (read back + diff): {:?} ({} changes)",
                t.elapsed(),
                r.changes()
            );
            let t = Instant::now();
            let c = fresh.counters()?;
            println!("  counters of {} backends: {:?}", c.len(), t.elapsed());
            let t = Instant::now();
            nft.teardown()?;
            println!("  teardown: {:?}", t.elapsed());
        }
    }
    Ok(())
}
