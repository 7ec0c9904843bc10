//! The runner with real time and real listeners on 127.0.0.1.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use health::{
    CheckSpec, FailReason, HealthEvent, HealthRunner, HealthState, HttpProbe, Probe,
    RunnerSettings, SchedulerSettings, Target, TargetName, TransitionReason,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc::UnboundedReceiver;

/// Generous: the machine is shared, and this bounds a failure, not a speed.
const WAIT: Duration = Duration::from_secs(20);

fn target(server: &str, probe: Probe, address: SocketAddr, rise: u32, fall: u32) -> Target {
    Target {
        name: TargetName::new("web", server),
        address,
        source: None,
        check: CheckSpec::new(
            probe,
            Duration::from_millis(100),
            Duration::from_millis(1000),
            rise,
            fall,
        )
        .into(),
    }
}

async fn accepting_listener() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { while listener.accept().await.is_ok() {} });
    addr
}

async fn closed_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn next_change(events: &mut UnboundedReceiver<HealthEvent>) -> health::Transition {
    loop {
        match tokio::time::timeout(WAIT, events.recv()).await {
            Ok(Some(HealthEvent::StateChanged(t))) => return t,
            Ok(Some(HealthEvent::Dampened(_))) => continue,
            other => panic!("no state change: {other:?}"),
        }
    }
}

fn settings() -> RunnerSettings {
    RunnerSettings {
        scheduler: SchedulerSettings {
            dampening: None,
            ..SchedulerSettings::default()
        },
        ..RunnerSettings::default()
    }
}

#[tokio::test]
async fn events_status_and_reload() {
    events_status_and_reload_with(settings()).await;
}

/// The same with the checks on a thread of their own, as lbd runs them.
#[tokio::test]
async fn events_status_and_reload_on_the_checks_own_thread() {
    events_status_and_reload_with(RunnerSettings {
        own_thread: true,
        ..settings()
    })
    .await;
}

async fn events_status_and_reload_with(settings: RunnerSettings) {
    let up_addr = accepting_listener().await;
    let down_addr = closed_port().await;
    let (runner, mut events) = HealthRunner::new(
        vec![
            target("up", Probe::Tcp, up_addr, 2, 2),
            target("down", Probe::Tcp, down_addr, 2, 2),
        ],
        settings,
    )
    .unwrap();

    let t = next_change(&mut events).await;
    assert_eq!(t.target, TargetName::new("web", "down"));
    assert_eq!((t.from, t.to), (HealthState::Up, HealthState::Down));
    assert_eq!(t.reason, TransitionReason::Fall { failures: 2 });
    assert_eq!(t.last.outcome.reason(), Some(&FailReason::Refused));

    let down = runner.status(&TargetName::new("web", "down")).unwrap();
    assert_eq!((down.state, down.transitions), (HealthState::Down, 1));
    let up = runner.status(&TargetName::new("web", "up")).unwrap();
    assert_eq!(up.state, HealthState::Up);
    assert_eq!(up.transitions, 0);
    let checks_before = up.checks;

    // Reload: "down" removed, "new" added (starts Down, rises after 2 checks).
    runner
        .update_targets(
            vec![
                target("up", Probe::Tcp, up_addr, 2, 2),
                target("new", Probe::Tcp, accepting_listener().await, 2, 2),
            ],
            HealthState::Down,
        )
        .unwrap();
    let t = next_change(&mut events).await;
    assert_eq!(t.target, TargetName::new("web", "new"));
    assert_eq!((t.from, t.to), (HealthState::Down, HealthState::Up));
    assert_eq!(t.reason, TransitionReason::Rise { successes: 2 });

    let names: Vec<String> = runner
        .statuses()
        .iter()
        .map(|s| s.target.name.to_string())
        .collect();
    assert_eq!(names, ["web/new", "web/up"]);
    let up = runner.status(&TargetName::new("web", "up")).unwrap();
    assert!(up.checks >= checks_before, "kept its history");
    let (last, _) = up.last.unwrap();
    assert!(last.outcome.is_ok());
    let c = runner.counters();
    assert_eq!(c.scheduler.transitions_down, 1);
    assert_eq!(c.scheduler.transitions_up, 1);

    runner.shutdown().await;
    assert_eq!(events.recv().await, None, "events end with the runner");
}

#[tokio::test]
async fn concurrency_is_bounded() {
    // An HTTP server that answers after 500 ms and records how many
    // requests it holds at once. Eight first checks fall within one 1 s
    // interval, so at least two would overlap without the bound.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let open = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    {
        let (open, most) = (Arc::clone(&open), Arc::clone(&most));
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (open, most) = (Arc::clone(&open), Arc::clone(&most));
                tokio::spawn(async move {
                    let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    let mut buf = [0u8; 1024];
                    let _ = conn.read(&mut buf).await;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    // Before the reply: until it is sent, the checker holds its slot.
                    open.fetch_sub(1, Ordering::SeqCst);
                    let _ = conn.write_all(b"HTTP/1.0 200 OK\r\n\r\n").await;
                });
            }
        });
    }
    let targets = (0..8)
        .map(|i| {
            target(
                &format!("s{i}"),
                Probe::Http(HttpProbe::new("/")),
                addr,
                1,
                1,
            )
        })
        .map(|mut t| {
            std::sync::Arc::make_mut(&mut t.check).interval = Duration::from_secs(1);
            std::sync::Arc::make_mut(&mut t.check).timeout = Duration::from_secs(10);
            t
        })
        .collect();
    let (runner, _events) = HealthRunner::new(
        targets,
        RunnerSettings {
            max_in_flight: 2,
            ..settings()
        },
    )
    .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while runner.statuses().iter().any(|s| s.checks == 0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every target was checked"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(runner
        .statuses()
        .iter()
        .all(|s| s.last.as_ref().unwrap().0.outcome.is_ok()));
    assert_eq!(
        most.load(Ordering::SeqCst),
        2,
        "at most 2 at once, and 2 were used"
    );
    runner.shutdown().await;
}

#[tokio::test]
async fn duplicate_targets_are_refused() {
    let addr = closed_port().await;
    let t = target("a", Probe::Tcp, addr, 1, 1);
    assert!(HealthRunner::new(vec![t.clone(), t.clone()], settings()).is_err());
    let (runner, _events) = HealthRunner::new(vec![t.clone()], settings()).unwrap();
    assert!(runner
        .update_targets(vec![t.clone(), t], HealthState::Down)
        .is_err());
    assert_eq!(runner.statuses().len(), 1);
    assert!(HealthRunner::new(
        vec![],
        RunnerSettings {
            max_in_flight: 0,
            ..settings()
        }
    )
    .is_err());
}
