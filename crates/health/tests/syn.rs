//! The half-open (`tcp_syn`) probe in a lab: from lb1's server-side address to srv1,
//! through veth and a bridge, as lbd sends it (needs root).

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use health::{
    CheckOutcome, CheckResult, CheckSpec, Checker, FailReason, Probe, Target, TargetName,
};
use integration::Lab;

fn target(address: &str, source: &str, timeout_ms: u64) -> Target {
    Target {
        name: TargetName::new("web", "srv1"),
        address: address.parse().unwrap(),
        source: Some(source.parse().unwrap()),
        check: CheckSpec::new(
            Probe::TcpSyn,
            Duration::from_secs(1),
            Duration::from_millis(timeout_ms),
            1,
            1,
        )
        .into(),
    }
}

/// Runs the checks concurrently in lb1, on a runtime of that thread; results in order.
fn check_from_lb1(lab: &Lab, targets: Vec<Target>) -> Vec<CheckResult> {
    lab["lb1"]
        .run_in(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let checker = Checker::new().unwrap();
                let mut set = tokio::task::JoinSet::new();
                for (i, t) in targets.into_iter().enumerate() {
                    let checker = checker.clone();
                    set.spawn(async move { (i, checker.check(&t).await) });
                }
                let mut out = Vec::new();
                while let Some(r) = set.join_next().await {
                    out.push(r.unwrap());
                }
                out.sort_by_key(|(i, _)| *i);
                out.into_iter().map(|(_, r)| r).collect()
            })
        })
        .unwrap()
}

#[test]
fn syn_probe_finds_listeners_refusals_and_silence_without_a_connection() {
    if !integration::have_root(
        "syn_probe_finds_listeners_refusals_and_silence_without_a_connection",
    ) {
        return;
    }
    let lab = Lab::two_arm().unwrap();
    let srv = &lab["srv1"];
    // Listeners on srv1 that must never see a connection from a half-open probe.
    let listeners: Vec<TcpListener> = (0..20)
        .map(|i| {
            srv.tcp_listen(format!("198.18.1.21:{}", 9000 + i).parse().unwrap())
                .unwrap()
        })
        .collect();
    let v6 = srv
        .tcp_listen("[2001:db8:0:b::21]:9100".parse().unwrap())
        .unwrap();

    let mut targets = vec![
        target("198.18.1.21:9000", "198.18.1.11", 1000),
        // Nothing listens: srv1's kernel answers RST.
        target("198.18.1.21:9999", "198.18.1.11", 1000),
        // Nobody has this address: no answer at all.
        target("198.18.1.99:80", "198.18.1.11", 300),
        target("[2001:db8:0:b::21]:9100", "2001:db8:0:b::11", 1000),
        target("[2001:db8:0:b::21]:9101", "2001:db8:0:b::11", 1000),
        // A source of the other family is a configuration error, not a probe.
        target("198.18.1.21:9000", "2001:db8:0:b::11", 1000),
    ];
    // And 200 at once over 20 listeners (probe ports, replies matched per probe).
    for k in 0..200 {
        targets.push(target(
            &format!("198.18.1.21:{}", 9000 + k % 20),
            "198.18.1.11",
            2000,
        ));
    }
    let results = check_from_lb1(&lab, targets);
    println!("{:?}", &results[..6]);
    assert_eq!(results[0].outcome, CheckOutcome::Ok, "{}", results[0]);
    assert_eq!(
        results[1].outcome.reason(),
        Some(&FailReason::Refused),
        "{}",
        results[1]
    );
    assert_eq!(
        results[2].outcome.reason(),
        Some(&FailReason::Timeout),
        "{}",
        results[2]
    );
    assert!(results[2].duration >= Duration::from_millis(300));
    assert_eq!(results[3].outcome, CheckOutcome::Ok, "{}", results[3]);
    assert_eq!(
        results[4].outcome.reason(),
        Some(&FailReason::Refused),
        "{}",
        results[4]
    );
    assert!(
        matches!(results[5].outcome.reason(), Some(FailReason::Config(_))),
        "{}",
        results[5]
    );
    let ok = results[6..]
        .iter()
        .filter(|r| r.outcome == CheckOutcome::Ok)
        .count();
    assert_eq!(
        ok,
        200,
        "{:?}",
        results[6..].iter().find(|r| r.outcome != CheckOutcome::Ok)
    );

    // Half-open: no listener ever had a connection to accept.
    for l in listeners.iter().chain([&v6]) {
        l.set_nonblocking(true).unwrap();
        let e = l.accept().map(|(_, peer): (_, SocketAddr)| peer);
        assert!(
            matches!(&e, Err(err) if err.kind() == std::io::ErrorKind::WouldBlock),
            "{:?} accepted {e:?}",
            l.local_addr()
        );
    }
}
