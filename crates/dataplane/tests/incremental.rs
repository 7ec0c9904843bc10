//! Incremental applies must end where a fresh full apply of the same state ends: random
//! sequences of service changes, applied one by one (through `apply` and through
//! `apply_changed` with a correct hint), compared with the kernel table a new backend
//! builds from scratch (needs root).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use dataplane::{
    AppliedState, Backend, BackendKind, ChangeHint, Counting, Dataplane, DataplaneError,
    DesiredState, DryRun, Forwarding, NatProtocol, NftBackend, Persistence, PortSpec, Protocol,
    Scheduler, Service, SnatRule, SnatSource,
};
use integration::{Host, Lab};

/// xorshift64*: a fixed seed gives a reproducible sequence without a crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const SCHEDULERS: [Scheduler; 5] = [
    Scheduler::Rr,
    Scheduler::Wrr,
    Scheduler::Random,
    Scheduler::Sh,
    Scheduler::Mh,
];

fn backend(rng: &mut Rng, v4: bool, range: bool, n: usize) -> Backend {
    let host = 10 + rng.below(40) as u8;
    Backend {
        name: format!("b{n}"),
        addr: if v4 {
            IpAddr::V4(Ipv4Addr::new(198, 18, 1, host))
        } else {
            IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                0,
                0xb,
                0,
                0,
                0,
                u16::from(host),
            ))
        },
        port: (!range).then(|| [80, 8080, 8443][rng.below(3)]),
        weight: [0, 1, 1, 2, 3, 5, 100][rng.below(7)],
    }
}

fn service(rng: &mut Rng, id: usize) -> Service {
    let v4 = rng.below(5) != 0;
    let range = rng.below(6) == 0;
    let vip = if v4 {
        IpAddr::V4(Ipv4Addr::new(
            198,
            19,
            (id / 200) as u8,
            (id % 200 + 1) as u8,
        ))
    } else {
        IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            0x19,
            0,
            0,
            0,
            0,
            id as u16 + 1,
        ))
    };
    let n = 1 + rng.below(6);
    Service {
        name: format!("svc{id}"),
        vip,
        ports: if range {
            PortSpec::Range(10000, 10000 + rng.below(100) as u16)
        } else {
            PortSpec::Single(80)
        },
        protocol: if rng.below(4) == 0 {
            Protocol::Udp
        } else {
            Protocol::Tcp
        },
        scheduler: SCHEDULERS[rng.below(SCHEDULERS.len())],
        backends: (0..n).map(|i| backend(rng, v4, range, i)).collect(),
        forward: Forwarding::Nat,
        persistence: persistence(rng, v4),
    }
}

/// Persistence for one service in four, with a client prefix shorter than a host's
/// for half of those.
fn persistence(rng: &mut Rng, v4: bool) -> Option<Persistence> {
    (rng.below(4) == 0).then(|| Persistence {
        timeout_s: [1, 300][rng.below(2)],
        prefix_len: match (v4, rng.below(2)) {
            (true, 0) => 24,
            (true, _) => 32,
            (false, 0) => 64,
            (false, _) => 128,
        },
    })
}

fn snat(to: &str) -> Vec<SnatRule> {
    vec![SnatRule {
        name: "out".into(),
        in_iface: None,
        out_iface: Some("eth0".into()),
        protocol: NatProtocol::Any,
        orig_daddr: "198.19.0.1".parse().unwrap(),
        orig_dports: None,
        source: SnatSource::Address(to.parse().unwrap()),
    }]
}

/// One random change to `s` (returns what it did, for the log).
fn mutate(rng: &mut Rng, s: &mut DesiredState, next_id: &mut usize) -> String {
    let n = s.services.len();
    let i = rng.below(n.max(1));
    match rng.below(12) {
        0..=3 if n > 0 => {
            let svc = &mut s.services[i];
            let b = rng.below(svc.backends.len().max(1));
            if let Some(b) = svc.backends.get_mut(b) {
                b.weight = [0, 1, 2, 3, 7, 100][rng.below(6)];
            }
            format!("weight of a backend of {}", svc.name)
        }
        4 if n > 0 => {
            let svc = &mut s.services[i];
            let v4 = svc.vip.is_ipv4();
            let range = matches!(svc.ports, PortSpec::Range(..));
            let k = svc.backends.len() + rng.below(100);
            svc.backends.push(backend(rng, v4, range, k));
            format!("backend added to {}", svc.name)
        }
        5 if n > 0 => {
            let svc = &mut s.services[i];
            if !svc.backends.is_empty() {
                let b = rng.below(svc.backends.len());
                svc.backends.remove(b);
            }
            format!("backend removed from {}", svc.name)
        }
        6 if n > 0 => {
            let svc = &mut s.services[i];
            svc.scheduler = SCHEDULERS[rng.below(SCHEDULERS.len())];
            let v4 = svc.vip.is_ipv4();
            svc.persistence = persistence(rng, v4);
            format!(
                "scheduler of {} is {}, persistence {:?}",
                svc.name, svc.scheduler, svc.persistence
            )
        }
        7 => {
            let svc = service(rng, *next_id);
            *next_id += 1;
            let at = rng.below(n + 1);
            let name = svc.name.clone();
            s.services.insert(at, svc);
            format!("service {name} added at {at}")
        }
        8 if n > 1 => {
            let svc = s.services.remove(i);
            format!("service {} removed", svc.name)
        }
        9 if n > 1 => {
            let j = rng.below(n);
            s.services.swap(i, j);
            format!("services {i} and {j} swapped")
        }
        10 if n > 0 => {
            // The service moves to a fresh VIP or to another service's VIP (refused if
            // the protocol and port match too).
            let other = s.services[rng.below(n)].vip;
            let fresh = service(rng, *next_id).vip;
            *next_id += 1;
            let svc = &mut s.services[i];
            let to = if rng.below(2) == 0 { other } else { fresh };
            if to.is_ipv4() == svc.vip.is_ipv4() {
                svc.vip = to;
            }
            format!("{} moved to {}", svc.name, svc.vip)
        }
        11 => {
            // Several services at once.
            let mut what = Vec::new();
            for _ in 0..3 {
                what.push(mutate(rng, s, next_id));
            }
            what.join("; ")
        }
        _ => "nothing".into(),
    }
}

/// The correct hint from `old` to `new`: every service added, removed or changed, plus
/// sometimes an unchanged one (naming too much is allowed).
fn hint_between(rng: &mut Rng, old: &DesiredState, new: &DesiredState) -> ChangeHint {
    let before: HashMap<&str, &Service> =
        old.services.iter().map(|s| (s.name.as_str(), s)).collect();
    let after: HashMap<&str, &Service> =
        new.services.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut names: Vec<&str> = before
        .iter()
        .filter(|(n, s)| after.get(*n) != Some(*s))
        .map(|(n, _)| *n)
        .chain(after.keys().filter(|n| !before.contains_key(*n)).copied())
        .collect();
    if rng.below(3) == 0 && !new.services.is_empty() {
        names.push(&new.services[rng.below(new.services.len())].name);
    }
    let hint = ChangeHint::for_services(names);
    if old.snat == new.snat {
        hint
    } else {
        hint.with_snat()
    }
}

/// The read-back with order-free parts (services, non-SNAT rules) sorted and
/// counters dropped.
fn normalized(mut a: AppliedState) -> AppliedState {
    a.services.sort_by(|x, y| x.name.cmp(&y.name));
    for set in &mut a.nft.sets {
        for e in &mut set.elements {
            e.counter = None;
        }
    }
    let (mut snat, mut other): (Vec<_>, Vec<_>) =
        a.nft.rules.into_iter().partition(|(c, _)| c == "lb_snat");
    other.sort();
    snat.append(&mut other);
    a.nft.rules = snat;
    a
}

fn fresh_table(lb: &Host, state: &DesiredState, counting: Counting) -> AppliedState {
    let mut fresh = lb
        .run_in(move || NftBackend::with_counting("lbfresh", counting))
        .unwrap()
        .unwrap();
    fresh.teardown().unwrap();
    fresh.apply(state).unwrap();
    let back = normalized(fresh.read_back().unwrap());
    fresh.teardown().unwrap();
    back
}

#[test]
fn random_changes_end_like_a_fresh_apply() {
    if !integration::have_root("random_changes_end_like_a_fresh_apply") {
        return;
    }
    let lab = Lab::one_arm().unwrap();
    let lb = &lab["lb1"];
    // The fresh tables are built in another namespace: a commit there does not bump
    // lb1's ruleset generation, so lb1's backend keeps trusting its record.
    let other = &lab["lb2"];
    for (seed, counting) in [
        (1u64, Counting::Traffic),
        (0x5eed, Counting::Connections),
        (0xdead_beef, Counting::Off),
    ] {
        let mut rng = Rng(seed);
        let mut next_id = 0;
        let mut state = DesiredState {
            services: (0..30)
                .map(|_| {
                    next_id += 1;
                    service(&mut rng, next_id - 1)
                })
                .collect(),
            snat: snat("198.18.1.100"),
        };
        let mut nft = lb
            .run_in(move || NftBackend::with_counting("lbinc", counting))
            .unwrap()
            .unwrap();
        // Every hint is checked against a full comparison: a wrong one fails the step.
        nft.set_verify_hints(true);
        nft.apply(&state).unwrap();
        // Counts the same changes in the desired state's terms, without a kernel.
        let mut dry = DryRun::new(BackendKind::Nft);
        dry.apply(&state).unwrap();
        let mut refused = 0;
        let mut last_ok = true;
        for step in 0..150 {
            let mut next = state.clone();
            let what = if step % 50 == 49 {
                // A SNAT change goes through the full path; the next steps continue
                // incrementally from its record.
                next.snat = snat(if step % 100 == 49 {
                    "198.18.1.101"
                } else {
                    "198.18.1.100"
                });
                "snat changed".to_owned()
            } else {
                mutate(&mut rng, &mut next, &mut next_id)
            };
            // Three steps in four go through apply_changed with the hint lbd would give.
            let hint = (step % 4 != 3).then(|| hint_between(&mut rng, &state, &next));
            let result = match &hint {
                Some(h) => nft.apply_changed(&next, h),
                None => nft.apply(&next),
            };
            let ok = result.is_ok();
            match result {
                Ok(report) => {
                    assert!(!report.reread, "seed {seed} step {step} ({what}): re-read");
                    // The hint is used unless SNAT changed or the step before failed.
                    let usable = hint.as_ref().is_some_and(|h| !h.snat) && last_ok;
                    assert_eq!(
                        report.hint_used, usable,
                        "seed {seed} step {step} ({what}): {report:?}"
                    );
                    let counted = dry.apply(&next).unwrap();
                    assert_eq!(
                        (report.services, report.servers, report.nat_rules),
                        (counted.services, counted.servers, counted.nat_rules),
                        "seed {seed} step {step} ({what}): {report:?}"
                    );
                    state = next;
                }
                Err(e) => {
                    // A refused state (two services on one VIP and port) changes nothing.
                    println!("seed {seed} step {step} ({what}): refused: {e}");
                    assert!(
                        e.to_string().contains("both claim"),
                        "seed {seed} step {step}: {e}"
                    );
                    refused += 1;
                }
            }
            last_ok = ok;
            if step % 25 == 24 {
                assert_eq!(
                    normalized(nft.read_back().unwrap()),
                    fresh_table(other, &state, counting),
                    "seed {seed} after step {step} ({what})"
                );
            }
        }
        let incremental = normalized(nft.read_back().unwrap());
        let fresh = fresh_table(other, &state, counting);
        let elements: usize = fresh.nft.sets.iter().map(|s| s.elements.len()).sum();
        println!(
            "seed {seed}: {} services, {} sets, {elements} elements, {} rules; {refused} refused steps",
            state.services.len(),
            fresh.nft.sets.len(),
            fresh.nft.rules.len()
        );
        assert_eq!(incremental, fresh, "seed {seed}");
        // The record matches the kernel too: applying the same state changes nothing,
        // and a new backend adopting the table finds nothing to change.
        assert_eq!(nft.apply(&state).unwrap().changes(), 0);
        let mut adopter = lb
            .run_in(move || NftBackend::with_counting("lbinc", counting))
            .unwrap()
            .unwrap();
        let adopt = adopter.apply(&state).unwrap();
        assert!(adopt.reread);
        assert_eq!(adopt.changes(), 0, "seed {seed}: {adopt:?}");
        nft.teardown().unwrap();
    }
}

#[test]
fn draining_the_last_service_of_a_map_deletes_the_map_and_its_rule() {
    if !integration::have_root("draining_the_last_service_of_a_map_deletes_the_map_and_its_rule") {
        return;
    }
    let lab = Lab::one_arm().unwrap();
    let lb = &lab["lb1"];
    let mut rng = Rng(7);
    let mut state = DesiredState {
        services: (0..20)
            .map(|i| {
                let mut s = service(&mut rng, i);
                s.vip = IpAddr::V4(Ipv4Addr::new(198, 19, 0, i as u8 + 1));
                s.ports = PortSpec::Single(80);
                // One map per slot count (round robin has a map per bucket: below).
                s.scheduler = Scheduler::Random;
                s.persistence = None;
                s.backends = (0..4).map(|k| backend(&mut rng, true, false, k)).collect();
                for b in &mut s.backends {
                    b.weight = 1;
                }
                s
            })
            .collect(),
        snat: Vec::new(),
    };
    let mut nft = lb.run_in(|| NftBackend::new("lbdrain")).unwrap().unwrap();
    nft.apply(&state).unwrap();
    let maps = |nft: &NftBackend| -> Vec<String> {
        nft.read_back()
            .unwrap()
            .nft
            .sets
            .into_iter()
            .map(|s| s.name)
            .filter(|n| n.starts_with("dnat"))
            .collect()
    };
    assert_eq!(maps(&nft), vec!["dnat4_rand_4"]);
    // One service to 3 slots: a new map and its rule appear (the service's 4
    // slots leave the 4-slot map).
    state.services[5].backends[0].weight = 0;
    let r = nft.apply(&state).unwrap();
    println!("drain one backend: {r:?}");
    assert_eq!(
        (
            r.kernel.nft.sets_added,
            r.kernel.nft.rules_added,
            r.kernel.nft.elements_removed
        ),
        (1, 1, 4)
    );
    assert_eq!(maps(&nft), vec!["dnat4_rand_3", "dnat4_rand_4"]);
    // Back to 4 slots: the 3-slot map empties and goes, with its rule.
    state.services[5].backends[0].weight = 1;
    let r = nft.apply(&state).unwrap();
    println!("restore it: {r:?}");
    assert_eq!(
        (r.kernel.nft.sets_removed, r.kernel.nft.elements_added),
        (1, 4)
    );
    assert_eq!(maps(&nft), vec!["dnat4_rand_4"]);
    let rules = nft.read_back().unwrap().nft.rules;
    assert_eq!(
        rules
            .iter()
            .filter(|(c, _)| c == "lb_dnat")
            .map(|(_, r)| r.as_str())
            .collect::<Vec<_>>(),
        vec!["dnat @dnat4_rand_4"]
    );
    // Every backend drained everywhere: no DNAT map left, counters stay.
    for s in &mut state.services {
        for b in &mut s.backends {
            b.weight = 0;
        }
    }
    nft.apply(&state).unwrap();
    assert!(maps(&nft).is_empty());
    assert_eq!(nft.apply(&state).unwrap().changes(), 0);
    nft.teardown().unwrap();
}

#[test]
fn a_round_robin_service_chain_follows_its_service() {
    if !integration::have_root("a_round_robin_service_chain_follows_its_service") {
        return;
    }
    let lab = Lab::one_arm().unwrap();
    let lb = &lab["lb1"];
    let mut rng = Rng(11);
    let mut state = DesiredState {
        services: (0..2)
            .map(|i| {
                let mut s = service(&mut rng, i);
                s.vip = IpAddr::V4(Ipv4Addr::new(198, 19, 0, i as u8 + 1));
                s.ports = PortSpec::Single(80);
                s.scheduler = Scheduler::Rr;
                s.persistence = None;
                s.backends = (0..4).map(|k| backend(&mut rng, true, false, k)).collect();
                for b in &mut s.backends {
                    b.weight = 1;
                }
                s
            })
            .collect(),
        snat: Vec::new(),
    };
    let mut nft = lb.run_in(|| NftBackend::new("lbrrchain")).unwrap().unwrap();
    nft.apply(&state).unwrap();
    let chains = |nft: &NftBackend| -> Vec<(String, String)> {
        nft.read_back()
            .unwrap()
            .nft
            .rules
            .into_iter()
            .filter(|(c, _)| c.starts_with("svc_"))
            .collect()
    };
    let mut first = chains(&nft);
    first.sort();
    assert_eq!(first.len(), 2, "{first:?}");
    assert_eq!(first[0].0, "svc_tcp_198.19.0.1_80");
    assert!(first[0].1.ends_with("numgen inc mod 4"), "{first:?}");
    // Three slots: the chain's rule is replaced, nothing else of the other service.
    state.services[0].backends[0].weight = 0;
    let hint = ChangeHint::for_service(&state.services[0].name);
    let r = nft.apply_changed(&state, &hint).unwrap();
    println!("one backend drained: {r:?}");
    assert_eq!(
        (r.kernel.nft.rules_removed, r.kernel.nft.rules_added),
        (1, 1)
    );
    assert!(chains(&nft)
        .iter()
        .any(|(c, r)| c == "svc_tcp_198.19.0.1_80" && r.ends_with("numgen inc mod 3")));
    // No slot left: the chain goes with its verdict map element.
    for b in &mut state.services[0].backends {
        b.weight = 0;
    }
    let r = nft.apply_changed(&state, &hint).unwrap();
    println!("all drained: {r:?}");
    assert_eq!(r.kernel.nft.chains_removed, 1);
    assert_eq!(chains(&nft).len(), 1);
    // The last round-robin service goes: its chain, the verdict map and its rule too.
    state.services.truncate(0);
    nft.apply(&state).unwrap();
    let objs = nft.read_back().unwrap().nft;
    assert!(
        objs.chains.iter().all(|c| !c.starts_with("svc_")),
        "{objs:?}"
    );
    assert!(objs.sets.iter().all(|s| s.name != "svc4"), "{objs:?}");
    assert_eq!(nft.apply(&state).unwrap().changes(), 0);
    nft.teardown().unwrap();
}

#[test]
fn a_hint_that_leaves_out_a_change_is_refused() {
    if !integration::have_root("a_hint_that_leaves_out_a_change_is_refused") {
        return;
    }
    let lab = Lab::one_arm().unwrap();
    let lb = &lab["lb1"];
    let mut rng = Rng(11);
    let state = DesiredState {
        services: (0..10).map(|i| service(&mut rng, i)).collect(),
        snat: snat("198.18.1.100"),
    };
    let mut nft = lb.run_in(|| NftBackend::new("lbhint")).unwrap().unwrap();
    nft.set_verify_hints(true);
    nft.apply(&state).unwrap();
    let before = nft.read_back().unwrap();
    let wrong = |nft: &mut NftBackend, next: &DesiredState, hint: ChangeHint, what: &str| match nft
        .apply_changed(next, &hint)
    {
        Err(DataplaneError::WrongHint { what: w }) => {
            assert!(w.contains(what), "{w}");
        }
        other => panic!("a wrong hint ({what}) was accepted: {other:?}"),
    };
    // A weight change in svc3, the hint names svc5.
    let mut changed = state.clone();
    changed.services[3].backends[0].weight += 1;
    wrong(
        &mut nft,
        &changed,
        ChangeHint::for_service("svc5"),
        "svc3 changed",
    );
    // A service removed, or added, without being named.
    let mut removed = state.clone();
    removed.services.remove(7);
    wrong(
        &mut nft,
        &removed,
        ChangeHint::default(),
        "svc7 was removed",
    );
    let mut added = state.clone();
    added.services.push(service(&mut rng, 10));
    wrong(
        &mut nft,
        &added,
        ChangeHint::for_service("svc2"),
        "svc10 was added",
    );
    // SNAT changed, the hint says it did not.
    let mut resnat = state.clone();
    resnat.snat = snat("198.18.1.101");
    wrong(&mut nft, &resnat, ChangeHint::default(), "SNAT");
    // None of them touched the kernel.
    assert_eq!(nft.read_back().unwrap(), before);
    // The table is the layout of `state`: it reads back as its services, verifies
    // clean against it, and verifying the removal names the elements it would delete.
    assert_eq!(before.services, state.services);
    assert_eq!(nft.verify(&state).unwrap(), Vec::new());
    let drift = nft.verify(&removed).unwrap();
    assert!(
        drift.iter().any(|d| d.what.contains("elements not wanted")),
        "{drift:?}"
    );
    // The right hint for the weight change is used, and changes only svc3's slots.
    let r = nft
        .apply_changed(&changed, &ChangeHint::for_service("svc3"))
        .unwrap();
    // After the refusals the backend compares everything once...
    assert!(!r.hint_used, "{r:?}");
    let mut again = changed.clone();
    again.services[3].backends[0].weight += 1;
    let r = nft
        .apply_changed(&again, &ChangeHint::for_service("svc3"))
        .unwrap();
    // ...then trusts hints again.
    assert!(r.hint_used, "{r:?}");
    assert_eq!(
        normalized(nft.read_back().unwrap()),
        fresh_table(&lab["lb2"], &again, Counting::default())
    );
    nft.teardown().unwrap();
}

#[test]
fn a_set_that_outgrows_its_room_is_created_anew() {
    if !integration::have_root("a_set_that_outgrows_its_room_is_created_anew") {
        return;
    }
    let lab = Lab::one_arm().unwrap();
    let lb = &lab["lb1"];
    let other = &lab["lb2"];
    let mut rng = Rng(11);
    let rr = |rng: &mut Rng, i: usize| {
        let mut s = service(rng, i);
        s.vip = IpAddr::V4(Ipv4Addr::new(198, 19, 0, i as u8 + 1));
        s.ports = PortSpec::Single(80);
        s.scheduler = Scheduler::Rr;
        s.persistence = None;
        s.backends = (0..8).map(|k| backend(rng, true, false, k)).collect();
        for (k, b) in s.backends.iter_mut().enumerate() {
            b.addr = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 10 + k as u8));
            b.port = Some(80);
            b.weight = 1;
        }
        s
    };
    // 10 services: 80 connection counters, in a set made with room for 256.
    let mut state = DesiredState {
        services: (0..10).map(|i| rr(&mut rng, i)).collect(),
        snat: Vec::new(),
    };
    let mut nft = lb.run_in(|| NftBackend::new("lbroom")).unwrap().unwrap();
    nft.set_verify_hints(true);
    nft.apply(&state).unwrap();
    // One service at a time, past 256 (the 33rd): the incremental step cannot add
    // to a full set, the full path creates it anew with more room.
    let mut used = 0;
    for i in 10..40 {
        state.services.push(rr(&mut rng, i));
        let hint = ChangeHint {
            services: [state.services[i].name.clone()].into(),
            snat: false,
        };
        let r = nft.apply_changed(&state, &hint).unwrap();
        assert!(!r.reread, "service {i}: {r:?}");
        used += usize::from(r.hint_used);
        if i == 32 {
            assert!(!r.hint_used, "the 33rd service outgrows conn4: {r:?}");
            // conn4 goes and comes back larger (the service may bring a map too).
            assert_eq!(r.kernel.nft.sets_removed, 1, "{r:?}");
            assert!(r.kernel.nft.sets_added >= 1, "{r:?}");
        }
    }
    assert!(used >= 28, "most steps incremental: {used}");
    let conn4 = |a: &AppliedState| {
        a.nft
            .sets
            .iter()
            .find(|s| s.name == "conn4")
            .map_or(0, |s| s.elements.len())
    };
    let back = normalized(nft.read_back().unwrap());
    assert_eq!(conn4(&back), 320);
    assert_eq!(back, fresh_table(other, &state, Counting::Connections));
    assert_eq!(nft.apply(&state).unwrap().changes(), 0);
    nft.teardown().unwrap();
}

/// Waits (generously) until `nft`'s record holds the committed table without a
/// change having asked for it.
fn planned_without_a_change(nft: &mut NftBackend) -> bool {
    for _ in 0..3000 {
        if nft.committed_table_ready() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    false
}

/// Removes the committed table from an adoption record (its `held` lines), as a
/// stopping lbd that had not planned its table yet leaves it.
fn without_table(record: &std::path::Path) {
    let text = std::fs::read_to_string(record).unwrap();
    assert!(
        text.contains("\nheld "),
        "the record holds no table: {text}"
    );
    let kept: String = text
        .lines()
        .filter(|l| !l.starts_with("held"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(record, kept).unwrap();
}

/// A backend that takes a table by its adoption record has the committed table at
/// once (the record holds it) or plans it in the background (a record without it):
/// either way it is ready before any change, and the first change is a step that
/// ends where a fresh apply ends. So does a change that comes at once (it waits for
/// the plan), one after somebody else committed (the table is read back), and one
/// after what the table counts changed.
#[test]
fn an_adopted_table_is_planned_before_the_first_change() {
    if !integration::have_root("an_adopted_table_is_planned_before_the_first_change") {
        return;
    }
    let lab = Lab::one_arm().unwrap();
    let lb = &lab["lb1"];
    let other = &lab["lb2"];
    // Written and read from this thread: the record names this thread's namespace,
    // and the generation of lb1's, where the backends' sockets are.
    let record = std::env::temp_dir().join(format!("lbadopt-{}.adopt", std::process::id()));
    let counting = Counting::Traffic;
    let open = || {
        let mut nft = lb
            .run_in(move || NftBackend::with_counting("lbadopt", counting))
            .unwrap()
            .unwrap();
        nft.set_adoption_record(record.clone());
        nft.set_verify_hints(true);
        nft
    };
    let mut rng = Rng(0xad0b7);
    let mut next_id = 0;
    let mut state = DesiredState {
        services: (0..400)
            .map(|_| {
                next_id += 1;
                service(&mut rng, next_id - 1)
            })
            .collect(),
        snat: snat("198.18.1.100"),
    };
    let mut first = open();
    first.teardown().unwrap();
    first.apply(&state).unwrap();
    assert!(first.write_adoption_record().unwrap());
    drop(first);
    let adopted = |nft: &mut NftBackend, state: &DesiredState| {
        let r = nft.apply(state).unwrap();
        // Taken as it is: nothing read back, nothing sent.
        assert!(!r.reread && r.messages == 0, "not adopted: {r:?}");
    };
    // The table is what a fresh apply of `state` makes; the record is written for
    // the next start.
    let as_fresh_and_recorded = |mut nft: NftBackend, state: &DesiredState| {
        assert_eq!(
            normalized(nft.read_back().unwrap()),
            fresh_table(other, state, counting)
        );
        assert!(nft.write_adoption_record().unwrap());
    };
    // The first change after an adoption (one server's weight, by its hint) is a
    // step, nothing read back.
    let first_change = |mut nft: NftBackend, state: &DesiredState, i: usize, what: &str| {
        let mut next = state.clone();
        let svc = &mut next.services[i];
        svc.backends[0].weight = if svc.backends[0].weight == 5 { 6 } else { 5 };
        let hint = ChangeHint::for_services([svc.name.clone()]);
        let r = nft.apply_changed(&next, &hint).unwrap();
        println!("first change after adoption {what}: {r:?}");
        assert!(r.hint_used && !r.reread && r.messages > 0, "{r:?}");
        as_fresh_and_recorded(nft, &next);
        next
    };

    // 0. The record holds the table: ready as soon as adopted.
    let text = std::fs::read_to_string(&record).unwrap();
    assert!(
        text.lines().any(|l| l.starts_with("held chain "))
            && text.lines().any(|l| l.starts_with("held set "))
            && text.lines().any(|l| l.starts_with("held_sum ")),
        "{text}"
    );
    let mut nft = open();
    adopted(&mut nft, &state);
    assert!(
        nft.committed_table_ready(),
        "the recorded table was not taken"
    );
    state = first_change(nft, &state, 1, "with the table recorded");

    // 1. Without the table in the record, the plan comes in without a change; the
    // first change is a step from it.
    without_table(&record);
    let mut nft = open();
    adopted(&mut nft, &state);
    assert!(
        planned_without_a_change(&mut nft),
        "the adopted table was not planned in the background"
    );
    state = first_change(nft, &state, 3, "planned in the background");

    // 2. Changes at once after the adopting apply, whether the plan is in or not.
    without_table(&record);
    let mut nft = open();
    adopted(&mut nft, &state);
    let mut last_ok = true;
    for step in 0..6 {
        let mut next = state.clone();
        let what = mutate(&mut rng, &mut next, &mut next_id);
        let hint = hint_between(&mut rng, &state, &next);
        let result = nft.apply_changed(&next, &hint);
        let ok = result.is_ok();
        match result {
            Ok(r) => {
                // The hint is used unless the step before was refused.
                assert_eq!(r.hint_used, last_ok, "step {step} ({what}): {r:?}");
                assert!(!r.reread, "step {step} ({what}): {r:?}");
                state = next;
            }
            Err(e) => assert!(e.to_string().contains("both claim"), "step {step}: {e}"),
        }
        last_ok = ok;
    }
    // A swap of two services is no change to a hint that names neither, so the
    // record may keep the old order: the adoption record's fingerprint does not
    // depend on it, and the next start (in the new order) adopts.
    as_fresh_and_recorded(nft, &state);

    // 3. Somebody else commits after the adoption: the change reads the table back.
    let mut nft = open();
    adopted(&mut nft, &state);
    lb.exec_ok(&["nft", "add", "table", "inet", "lbadopt_other"])
        .unwrap();
    lb.exec_ok(&["nft", "delete", "table", "inet", "lbadopt_other"])
        .unwrap();
    let mut next = state.clone();
    let svc = next
        .services
        .iter_mut()
        .find(|s| !s.backends.is_empty())
        .unwrap();
    svc.backends[0].weight += 1;
    let hint = ChangeHint::for_services([svc.name.clone()]);
    let r = nft.apply_changed(&next, &hint).unwrap();
    assert!(r.reread && !r.hint_used, "{r:?}");
    state = next;
    as_fresh_and_recorded(nft, &state);

    // 4. What the table counts changes after the adoption: the table is read back and
    // changed to the other counting.
    let mut nft = open();
    adopted(&mut nft, &state);
    nft.set_counting(Counting::Off);
    let r = nft.apply(&state).unwrap();
    assert!(r.reread && r.messages > 0, "{r:?}");
    assert_eq!(
        normalized(nft.read_back().unwrap()),
        fresh_table(other, &state, Counting::Off)
    );
    nft.teardown().unwrap();
    let _ = std::fs::remove_file(&record);
}
