//! The sans-IO scheduler with synthetic time.

use std::time::Duration;

use health::{
    Action, CheckResult, CheckSpec, Dampening, FailReason, HealthState, Probe, Scheduler,
    SchedulerSettings, Target, TargetName, Time, Transition, TransitionReason,
};

fn target(server: &str, interval_ms: u64, rise: u32, fall: u32) -> Target {
    Target {
        name: TargetName::new("web", server),
        address: "127.0.0.1:80".parse().unwrap(),
        source: None,
        check: CheckSpec::new(
            Probe::Tcp,
            Duration::from_millis(interval_ms),
            Duration::from_millis(interval_ms / 2),
            rise,
            fall,
        )
        .into(),
    }
}

#[test]
fn a_result_for_a_removed_target_is_ignored_by_the_target_in_its_place() {
    let mut s = Scheduler::new(no_dampening()).unwrap();
    s.set_targets(Time::ZERO, vec![target("a", 1000, 1, 1)], HealthState::Up)
        .unwrap();
    let t = s.next_deadline().unwrap();
    let actions = s.poll(t);
    let Some(Action::RunCheck(req)) = actions.first() else {
        panic!("expected a check");
    };
    // "a" goes; "b" comes (in the place "a" left).
    s.set_targets(t, vec![target("b", 1000, 1, 1)], HealthState::Up)
        .unwrap();
    assert!(s.on_result(t, req.ticket, fail()).is_empty());
    assert_eq!(s.counters().stale_results, 1);
    assert_eq!(s.len(), 1);
    let b = s.status(&TargetName::new("web", "b")).unwrap();
    assert_eq!((b.state, b.checks), (HealthState::Up, 0));
    assert!(s.status(&TargetName::new("web", "a")).is_none());
    // "b" is checked on its own schedule, and its results count.
    let (transitions, _) = drive(&mut s, t + Duration::from_secs(3), |_, _| fail());
    assert_eq!(transitions.len(), 1);
    assert_eq!(transitions[0].target, TargetName::new("web", "b"));
    assert!(s.status(&TargetName::new("web", "b")).unwrap().checks >= 2);
}

fn no_dampening() -> SchedulerSettings {
    SchedulerSettings {
        dampening: None,
        ..SchedulerSettings::default()
    }
}

fn ok() -> CheckResult {
    CheckResult::ok(Duration::from_millis(1))
}

fn fail() -> CheckResult {
    CheckResult::fail(FailReason::Refused, Duration::from_millis(1))
}

/// Run every due check up to `until`, each answered at once by `result(server, t)`.
/// Returns the transitions and the number of Dampened notices.
fn drive(
    s: &mut Scheduler,
    until: Time,
    mut result: impl FnMut(&str, Time) -> CheckResult,
) -> (Vec<Transition>, usize) {
    let mut transitions = Vec::new();
    let mut dampened = 0;
    while let Some(t) = s.next_deadline() {
        if t > until {
            break;
        }
        for action in s.poll(t) {
            if let Action::RunCheck(req) = action {
                let r = result(&req.target.name.server, t);
                for out in s.on_result(t, req.ticket, r) {
                    match out {
                        Action::StateChanged(tr) => transitions.push(tr),
                        Action::Dampened(_) => dampened += 1,
                        Action::RunCheck(_) => panic!("on_result asked for a check"),
                    }
                }
            }
        }
    }
    (transitions, dampened)
}

/// Hand out the next check of the only target and answer it with `r`.
fn step(s: &mut Scheduler, r: CheckResult) -> Vec<Action> {
    let t = s.next_deadline().unwrap();
    let actions = s.poll(t);
    assert_eq!(actions.len(), 1);
    let Action::RunCheck(req) = &actions[0] else {
        panic!("expected a check");
    };
    s.on_result(t, req.ticket, r)
}

fn changed(actions: &[Action]) -> Option<&Transition> {
    actions.iter().find_map(|a| match a {
        Action::StateChanged(t) => Some(t),
        _ => None,
    })
}

#[test]
fn fall_then_rise_exactly_at_the_counts() {
    let mut s = Scheduler::new(no_dampening()).unwrap();
    s.set_targets(Time::ZERO, vec![target("a", 1000, 2, 3)], HealthState::Up)
        .unwrap();
    let name = TargetName::new("web", "a");

    // A success in between resets the failure count.
    for r in [fail(), fail(), ok(), fail(), fail()] {
        assert!(changed(&step(&mut s, r)).is_none());
    }
    let down = step(&mut s, fail());
    let tr = changed(&down).expect("third consecutive failure brings it down");
    assert_eq!((tr.from, tr.to), (HealthState::Up, HealthState::Down));
    assert_eq!(tr.reason, TransitionReason::Fall { failures: 3 });
    assert_eq!(tr.last.outcome.reason(), Some(&FailReason::Refused));
    assert_eq!(s.status(&name).unwrap().state, HealthState::Down);

    assert!(changed(&step(&mut s, fail())).is_none());
    assert!(changed(&step(&mut s, ok())).is_none());
    let up = step(&mut s, ok());
    let tr = changed(&up).expect("second consecutive success brings it up");
    assert_eq!((tr.from, tr.to), (HealthState::Down, HealthState::Up));
    assert_eq!(tr.reason, TransitionReason::Rise { successes: 2 });

    let st = s.status(&name).unwrap();
    assert_eq!(st.state, HealthState::Up);
    assert_eq!(st.transitions, 2);
    assert_eq!(st.checks, 9);
    assert_eq!(s.counters().transitions_down, 1);
    assert_eq!(s.counters().transitions_up, 1);
}

#[test]
fn a_target_starting_down_needs_rise_successes() {
    let mut s = Scheduler::new(no_dampening()).unwrap();
    s.set_targets(Time::ZERO, vec![target("a", 1000, 3, 1)], HealthState::Down)
        .unwrap();
    assert!(changed(&step(&mut s, ok())).is_none());
    assert!(changed(&step(&mut s, ok())).is_none());
    assert_eq!(
        changed(&step(&mut s, ok())).map(|t| t.to),
        Some(HealthState::Up)
    );
}

#[test]
fn jitter_stays_within_bounds_and_is_reproducible() {
    let settings = SchedulerSettings {
        seed: 42,
        jitter_permille: 100,
        dampening: None,
    };
    let targets: Vec<Target> = (0..50)
        .map(|i| target(&format!("s{i}"), 1000, 1, 1))
        .collect();
    let dues = |settings: SchedulerSettings| {
        let mut s = Scheduler::new(settings).unwrap();
        s.set_targets(Time::ZERO, targets.clone(), HealthState::Up)
            .unwrap();
        let mut dues: Vec<(String, Time)> = Vec::new();
        drive(&mut s, Time::from_millis(20_000), |server, t| {
            dues.push((server.to_string(), t));
            ok()
        });
        dues
    };
    let a = dues(settings);
    assert_eq!(a, dues(settings), "same names and seed, same times");
    assert_ne!(
        a,
        dues(SchedulerSettings {
            seed: 43,
            ..settings
        }),
        "another seed, other times"
    );

    let mut first_phases = std::collections::BTreeSet::new();
    for i in 0..50 {
        let server = format!("s{i}");
        let times: Vec<u64> = a
            .iter()
            .filter(|(s, _)| *s == server)
            .map(|(_, t)| t.as_micros())
            .collect();
        assert!(times[0] < 1_000_000, "first check within one interval");
        first_phases.insert(times[0] / 10_000);
        for w in times.windows(2) {
            let gap = w[1] - w[0];
            assert!(
                (900_000..=1_100_000).contains(&gap),
                "gap {gap} µs outside ±10 %"
            );
        }
        assert!(times.len() >= 18);
    }
    // 50 targets over 100 buckets of 10 ms: in step they would share one.
    assert!(first_phases.len() > 30, "phases bunched: {first_phases:?}");
}

#[test]
fn a_check_still_running_is_not_started_again() {
    let mut s = Scheduler::new(no_dampening()).unwrap();
    s.set_targets(Time::ZERO, vec![target("a", 1000, 1, 1)], HealthState::Up)
        .unwrap();
    let t1 = s.next_deadline().unwrap();
    let first = s.poll(t1);
    let Some(Action::RunCheck(req)) = first.first() else {
        panic!("expected a check");
    };
    let t2 = s.next_deadline().unwrap();
    assert!(t2 > t1);
    assert!(s.poll(t2).is_empty());
    assert_eq!(s.counters().overruns, 1);
    // The late result still counts; the next due check runs again.
    assert!(s.on_result(t2, req.ticket, fail()).len() == 1);
    let t3 = s.next_deadline().unwrap();
    assert_eq!(s.poll(t3).len(), 1);
}

#[test]
fn reload_keeps_unchanged_targets_and_starts_new_ones_as_asked() {
    let mut s = Scheduler::new(no_dampening()).unwrap();
    s.set_targets(
        Time::ZERO,
        vec![target("a", 1000, 1, 1), target("gone", 1000, 1, 1)],
        HealthState::Up,
    )
    .unwrap();
    let (tr, _) = drive(&mut s, Time::from_millis(1500), |_, _| fail());
    assert_eq!(tr.len(), 2, "both went down");

    let mut slower = target("a", 2000, 1, 1);
    std::sync::Arc::make_mut(&mut slower.check).rise = 5;
    let now = Time::from_millis(1500);
    s.set_targets(
        now,
        vec![slower, target("b", 1000, 1, 1)],
        HealthState::Down,
    )
    .unwrap();
    assert_eq!(s.len(), 2);
    assert!(s.status(&TargetName::new("web", "gone")).is_none());
    let a = s.status(&TargetName::new("web", "a")).unwrap();
    assert_eq!(a.state, HealthState::Down);
    assert_eq!(a.transitions, 1, "state and history kept");
    assert_eq!(a.target.check.rise, 5, "new timing taken");
    let b = s.status(&TargetName::new("web", "b")).unwrap();
    assert_eq!(
        (b.state, b.transitions, b.checks),
        (HealthState::Down, 0, 0)
    );

    // A new address is a new server.
    let mut moved = target("a", 2000, 1, 1);
    moved.address = "127.0.0.2:80".parse().unwrap();
    s.set_targets(now, vec![moved], HealthState::Up).unwrap();
    let a = s.status(&TargetName::new("web", "a")).unwrap();
    assert_eq!((a.state, a.transitions), (HealthState::Up, 0));
}

#[test]
fn replacing_one_services_targets_leaves_the_others_alone() {
    let of = |service: &str, server: &str| {
        let mut t = target(server, 1000, 1, 1);
        t.name = TargetName::new(service, server);
        t
    };
    let mut s = Scheduler::new(no_dampening()).unwrap();
    s.set_targets(
        Time::ZERO,
        vec![of("web", "a"), of("web", "gone"), of("db", "a")],
        HealthState::Up,
    )
    .unwrap();
    let (tr, _) = drive(&mut s, Time::from_millis(1500), |_, _| fail());
    assert_eq!(tr.len(), 3, "all went down");

    let web: std::collections::BTreeSet<String> = ["web".to_owned()].into();
    let mut slower = of("web", "a");
    std::sync::Arc::make_mut(&mut slower.check).rise = 5;
    let now = Time::from_millis(1500);
    s.set_service_targets(now, &web, vec![slower, of("web", "b")], HealthState::Up)
        .unwrap();
    assert_eq!(s.len(), 3);
    assert!(s.status(&TargetName::new("web", "gone")).is_none());
    let a = s.status(&TargetName::new("web", "a")).unwrap();
    assert_eq!((a.state, a.target.check.rise), (HealthState::Down, 5));
    let b = s.status(&TargetName::new("web", "b")).unwrap();
    assert_eq!(b.state, HealthState::Up);
    let db = s.status(&TargetName::new("db", "a")).unwrap();
    assert_eq!(
        (db.state, db.transitions),
        (HealthState::Down, 1),
        "untouched"
    );
    assert_eq!(
        s.down_targets().len(),
        2,
        "web/a and db/a: {:?}",
        s.down_targets()
    );

    // A target of another service is refused, and nothing changes.
    assert!(s
        .set_service_targets(now, &web, vec![of("db", "c")], HealthState::Up)
        .is_err());
    assert_eq!(s.len(), 3);
    // No targets for the service: its targets go, the others stay.
    s.set_service_targets(now, &web, Vec::new(), HealthState::Up)
        .unwrap();
    assert_eq!(s.len(), 1);
    assert!(s.status(&TargetName::new("db", "a")).is_some());
}

#[test]
fn a_service_of_many_servers_keeps_its_targets_apart_across_reloads() {
    // Past a few dozen servers a service's targets are found by a map: reloads that
    // grow, shrink and change such a service find each target as with a few.
    let of = |service: &str, i: usize| {
        let mut t = target(&format!("srv{i}"), 1000, 1, 1);
        t.name = TargetName::new(service, format!("srv{i}"));
        t
    };
    let mut s = Scheduler::new(no_dampening()).unwrap();
    let mut all: Vec<Target> = (0..100).map(|i| of("big", i)).collect();
    all.push(of("small", 0));
    s.set_targets(Time::ZERO, all, HealthState::Up).unwrap();
    assert_eq!(s.len(), 101);
    let (tr, _) = drive(&mut s, Time::from_millis(1500), |server, _| {
        if server.ends_with('7') {
            fail()
        } else {
            ok()
        }
    });
    assert_eq!(tr.len(), 10, "srv7, srv17, ... srv97 went down");

    // Every other server goes, srv1 moves, srv200..srv209 come.
    let big: std::collections::BTreeSet<String> = ["big".to_owned()].into();
    let now = Time::from_millis(1500);
    let mut next: Vec<Target> = (0..100)
        .filter(|i| i % 2 == 1)
        .chain(200..210)
        .map(|i| of("big", i))
        .collect();
    next[0].address = "127.0.0.2:80".parse().unwrap();
    s.set_service_targets(now, &big, next, HealthState::Down)
        .unwrap();
    assert_eq!(s.len(), 50 + 10 + 1);
    let state = |s: &Scheduler, i: usize| s.status(&TargetName::new("big", format!("srv{i}")));
    assert!(state(&s, 2).is_none());
    assert_eq!(state(&s, 17).unwrap().state, HealthState::Down, "kept");
    assert_eq!(state(&s, 3).unwrap().state, HealthState::Up, "kept");
    assert_eq!(state(&s, 1).unwrap().state, HealthState::Down, "moved: new");
    assert_eq!(state(&s, 1).unwrap().checks, 0);
    assert_eq!(state(&s, 205).unwrap().state, HealthState::Down, "new");
    assert!(s.status(&TargetName::new("small", "srv0")).is_some());
    // Down to a few again, then none.
    s.set_service_targets(now, &big, vec![of("big", 17)], HealthState::Up)
        .unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!(state(&s, 17).unwrap().transitions, 1, "kept");
    s.set_service_targets(now, &big, Vec::new(), HealthState::Up)
        .unwrap();
    assert_eq!(s.len(), 1);
}

#[test]
fn a_result_for_a_changed_probe_is_ignored() {
    let mut s = Scheduler::new(no_dampening()).unwrap();
    s.set_targets(Time::ZERO, vec![target("a", 1000, 1, 1)], HealthState::Up)
        .unwrap();
    let t = s.next_deadline().unwrap();
    let actions = s.poll(t);
    let Some(Action::RunCheck(req)) = actions.first() else {
        panic!("expected a check");
    };
    let mut exec = target("a", 1000, 1, 1);
    std::sync::Arc::make_mut(&mut exec.check).probe = Probe::Exec {
        argv: vec!["/bin/true".into()],
    };
    s.set_targets(t, vec![exec], HealthState::Up).unwrap();
    assert!(s.on_result(t, req.ticket, fail()).is_empty());
    assert_eq!(s.counters().stale_results, 1);
    assert_eq!(
        s.status(&TargetName::new("web", "a")).unwrap().state,
        HealthState::Up
    );
}

#[test]
fn bad_settings_and_targets_are_refused() {
    let d = |max_transitions| SchedulerSettings {
        dampening: Some(Dampening {
            max_transitions,
            ..Dampening::default()
        }),
        ..SchedulerSettings::default()
    };
    assert!(Scheduler::new(d(1)).is_err());
    assert!(Scheduler::new(d(2)).is_ok());
    assert!(Scheduler::new(SchedulerSettings {
        jitter_permille: 501,
        ..SchedulerSettings::default()
    })
    .is_err());
    let mut s = Scheduler::new(no_dampening()).unwrap();
    let dup = vec![target("a", 1000, 1, 1), target("a", 500, 1, 1)];
    assert!(s.set_targets(Time::ZERO, dup, HealthState::Up).is_err());
    assert!(s
        .set_targets(Time::ZERO, vec![target("z", 1000, 0, 1)], HealthState::Up)
        .is_err());
    assert!(s.is_empty(), "a refused set changes nothing");
}

/// Flapping every 300 ms (rise = fall = 1, checks every 100 ms).
fn flapping(t: Time) -> CheckResult {
    if (t.as_micros() / 300_000) % 2 == 0 {
        ok()
    } else {
        fail()
    }
}

/// Every transition has at most `max` transitions in the window ending at it.
fn assert_window_cap(transitions: &[Transition], window: Duration, max: usize) {
    for (i, tr) in transitions.iter().enumerate() {
        let in_window = transitions[..=i]
            .iter()
            .filter(|o| tr.at.saturating_since(o.at) < window)
            .count();
        assert!(
            in_window <= max,
            "{in_window} transitions in the {window:?} before {:?}",
            tr.at
        );
    }
}

#[test]
fn flapping_without_dampening_flaps() {
    let mut s = Scheduler::new(no_dampening()).unwrap();
    s.set_targets(Time::ZERO, vec![target("a", 100, 1, 1)], HealthState::Up)
        .unwrap();
    let (tr, _) = drive(&mut s, Time::from_millis(60_000), |_, t| flapping(t));
    assert!(
        tr.len() > 150,
        "scenario must flap: {} transitions",
        tr.len()
    );
}

#[test]
fn dampening_caps_transitions_per_window_then_holds_until_stable() {
    let damp = Dampening {
        max_transitions: 4,
        window: Duration::from_secs(60),
        hold: Duration::from_secs(30),
    };
    let mut s = Scheduler::new(SchedulerSettings {
        dampening: Some(damp),
        ..SchedulerSettings::default()
    })
    .unwrap();
    s.set_targets(Time::ZERO, vec![target("a", 100, 1, 1)], HealthState::Up)
        .unwrap();
    let name = TargetName::new("web", "a");

    // Five minutes of flapping.
    let stop = Time::from_millis(300_000);
    let (mut tr, dampened) = drive(&mut s, stop, |_, t| flapping(t));
    assert_window_cap(&tr, damp.window, 4);
    assert!(tr.len() <= 4);
    assert_eq!(dampened, 1, "one notice when the hold starts");
    let st = s.status(&name).unwrap();
    assert_eq!((st.state, st.held), (HealthState::Down, true));

    // Then steady successes: Up once stable for the hold time, not before.
    let (after, _) = drive(&mut s, Time::from_millis(400_000), |_, _| ok());
    assert_eq!(after.len(), 1);
    let release = &after[0];
    assert_eq!(release.to, HealthState::Up);
    let TransitionReason::HoldReleased { stable_for } = release.reason else {
        panic!("expected a hold release, got {:?}", release.reason);
    };
    assert!(stable_for >= damp.hold);
    assert!(release.at.saturating_since(stop) >= damp.hold - Duration::from_millis(300));
    assert!(!s.status(&name).unwrap().held);
    tr.extend(after);
    assert_window_cap(&tr, damp.window, 4);
}

#[test]
fn dampening_cap_holds_over_bursts_of_flapping() {
    // Bursts of flapping separated by calm spells shorter and longer than the
    // hold, with the hold shorter than the window: the window alone must cap.
    for max in [2u32, 3, 4, 6] {
        let damp = Dampening {
            max_transitions: max,
            window: Duration::from_secs(60),
            hold: Duration::from_secs(10),
        };
        let mut s = Scheduler::new(SchedulerSettings {
            dampening: Some(damp),
            ..SchedulerSettings::default()
        })
        .unwrap();
        s.set_targets(Time::ZERO, vec![target("a", 100, 1, 1)], HealthState::Up)
            .unwrap();
        // 20 s of flapping, then calm spells of 5, 15, 25, ... s, repeating.
        let pattern = |t: Time| {
            let secs = t.as_micros() / 1_000_000;
            let cycle = secs % 100;
            let calm = cycle >= 20 && cycle < 20 + 5 + 10 * ((secs / 100) % 4);
            if calm {
                ok()
            } else {
                flapping(t)
            }
        };
        let (tr, _) = drive(&mut s, Time::from_millis(1_800_000), |_, t| pattern(t));
        assert_window_cap(&tr, damp.window, max as usize);
        let releases = tr
            .iter()
            .filter(|t| matches!(t.reason, TransitionReason::HoldReleased { .. }))
            .count();
        assert!(
            releases > 0,
            "max {max}: calm spells longer than the hold release it"
        );
    }
}

#[test]
fn a_target_may_set_its_own_dampening_and_jitter() {
    // The scheduler dampens; one target opts out, another sets a tighter limit.
    let mut s = Scheduler::new(SchedulerSettings::default()).unwrap();
    let mut free = target("free", 100, 1, 1);
    std::sync::Arc::make_mut(&mut free.check).dampening = health::TargetDampening::Off;
    let tight = Dampening {
        max_transitions: 2,
        window: Duration::from_secs(60),
        hold: Duration::from_secs(30),
    };
    let mut capped = target("capped", 100, 1, 1);
    std::sync::Arc::make_mut(&mut capped.check).dampening = health::TargetDampening::Limit(tight);
    s.set_targets(
        Time::ZERO,
        vec![free, capped, target("default", 100, 1, 1)],
        HealthState::Up,
    )
    .unwrap();
    let (tr, _) = drive(&mut s, Time::from_millis(30_000), |_, t| flapping(t));
    let count = |server: &str| tr.iter().filter(|t| *t.target.server == *server).count();
    assert!(count("free") > 50, "free flaps: {}", count("free"));
    assert!(count("capped") <= 2, "capped: {}", count("capped"));
    assert!(count("default") <= 4, "default: {}", count("default"));

    // Without jitter, checks come exactly one interval apart.
    let mut s = Scheduler::new(SchedulerSettings::default()).unwrap();
    let mut exact = target("exact", 100, 1, 1);
    std::sync::Arc::make_mut(&mut exact.check).jitter_permille = Some(0);
    s.set_targets(Time::ZERO, vec![exact], HealthState::Up)
        .unwrap();
    let mut starts = Vec::new();
    while let Some(t) = s.next_deadline() {
        if t > Time::from_millis(2_000) {
            break;
        }
        for action in s.poll(t) {
            if let Action::RunCheck(req) = action {
                starts.push(t);
                s.on_result(t, req.ticket, ok());
            }
        }
    }
    for pair in starts.windows(2) {
        assert_eq!(
            pair[1].saturating_since(pair[0]),
            Duration::from_millis(100)
        );
    }

    // Bad per-target settings are refused.
    let mut s = Scheduler::new(SchedulerSettings::default()).unwrap();
    let mut bad = target("bad", 100, 1, 1);
    std::sync::Arc::make_mut(&mut bad.check).jitter_permille = Some(501);
    assert!(s
        .set_targets(Time::ZERO, vec![bad], HealthState::Up)
        .is_err());
    let mut bad = target("bad", 100, 1, 1);
    std::sync::Arc::make_mut(&mut bad.check).dampening =
        health::TargetDampening::Limit(Dampening {
            max_transitions: 1,
            ..tight
        });
    assert!(s
        .set_targets(Time::ZERO, vec![bad], HealthState::Up)
        .is_err());
}

#[test]
fn checks_beyond_the_limit_stay_due_and_run_at_the_next_poll() {
    let mut s = Scheduler::new(no_dampening()).unwrap();
    let targets = (0..5)
        .map(|i| target(&format!("t{i}"), 1000, 1, 1))
        .collect();
    s.set_targets(Time::ZERO, targets, HealthState::Up).unwrap();
    // Long after every first check was due: all five are due at once.
    let late = Time::ZERO + Duration::from_millis(1500);
    let first = s.poll_at_most(late, 2);
    assert_eq!(first.len(), 2);
    // The rest are still due, not counted as started or overrun.
    assert_eq!(s.counters().checks_started, 2);
    assert!(s.next_deadline().unwrap() <= late);
    let rest = s.poll(late);
    assert_eq!(rest.len(), 3);
    assert_eq!(s.counters().overruns, 0);
    assert!(s.poll_at_most(late, 0).is_empty());
}
