//! Subscriptions: ordering, topic filters, resuming after a reconnect, gap markers.

mod common;

use std::time::Duration;

use common::{socket_path, within, TestDaemon};
use ctl::{
    methods, Client, EventBus, Gap, GapReason, Notice, ResumingSubscription, SubscribeParams,
};
use serde_json::{json, Value};

fn event_seq(notice: Notice) -> u64 {
    match notice {
        Notice::Event(event) => event.seq,
        Notice::Gap(gap) => panic!("expected an event, got {gap:?}"),
    }
}

#[tokio::test]
async fn subscriber_receives_events_in_order_with_increasing_seq() {
    let (_dir, path) = socket_path();
    let daemon = TestDaemon::start(path.clone(), EventBus::new(64)).await;
    let client = within(Client::connect(&path)).await.unwrap();
    let mut sub = within(client.subscribe(vec![], None)).await.unwrap();
    assert_eq!(sub.last_seq(), 0);

    for i in 0..10 {
        daemon.bus.publish("group.state", json!({"n": i}));
    }
    for i in 0..10u64 {
        match within(sub.next()).await.unwrap() {
            Notice::Event(event) => {
                assert_eq!(event.seq, i + 1);
                assert_eq!(event.topic, "group.state");
                assert_eq!(event.data, json!({"n": i}));
                assert!(event.time > 0);
            }
            Notice::Gap(gap) => panic!("unexpected {gap:?}"),
        }
    }
    assert_eq!(sub.last_seq(), 10);
    // The subscribed connection still answers requests.
    assert_eq!(
        within(sub.request(methods::PING, Value::Null))
            .await
            .unwrap(),
        json!("pong")
    );
    daemon.stop().await;
}

#[tokio::test]
async fn topic_filter_selects_the_topic_and_its_children() {
    let (_dir, path) = socket_path();
    let daemon = TestDaemon::start(path.clone(), EventBus::new(64)).await;
    let client = within(Client::connect(&path)).await.unwrap();
    let mut sub = within(client.subscribe(vec!["group".into()], None))
        .await
        .unwrap();

    daemon.bus.publish("group.state", json!(1));
    daemon.bus.publish("service.health", json!(2));
    daemon.bus.publish("group", json!(3));
    daemon.bus.publish("groups", json!(4));
    daemon.bus.publish("group.state", json!(5));
    let seqs: Vec<u64> = [
        within(sub.next()).await.unwrap(),
        within(sub.next()).await.unwrap(),
        within(sub.next()).await.unwrap(),
    ]
    .into_iter()
    .map(event_seq)
    .collect();
    assert_eq!(seqs, vec![1, 3, 5]);
    daemon.stop().await;
}

#[tokio::test]
async fn reconnecting_client_resumes_exactly_after_its_last_seq() {
    let (_dir, path) = socket_path();
    let daemon = TestDaemon::start(path.clone(), EventBus::new(64)).await;
    let client = within(Client::connect(&path)).await.unwrap();
    let mut sub = within(client.subscribe(vec![], None)).await.unwrap();
    for i in 1..=5 {
        daemon.bus.publish("t", json!(i));
    }
    for i in 1..=5 {
        assert_eq!(event_seq(within(sub.next()).await.unwrap()), i);
    }
    let (since, epoch) = (sub.last_seq(), sub.epoch());
    assert_eq!(since, 5);
    drop(sub);

    for i in 6..=8 {
        daemon.bus.publish("t", json!(i));
    }
    let client = within(Client::connect(&path)).await.unwrap();
    let params = SubscribeParams {
        topics: vec![],
        since: Some(since),
        epoch: Some(epoch),
    };
    let mut sub = within(client.subscribe_with(params)).await.unwrap();
    // A marker published after resuming proves nothing else came between 8 and it.
    daemon.bus.publish("t", json!("marker"));
    let seqs: Vec<u64> = [
        within(sub.next()).await.unwrap(),
        within(sub.next()).await.unwrap(),
        within(sub.next()).await.unwrap(),
        within(sub.next()).await.unwrap(),
    ]
    .into_iter()
    .map(event_seq)
    .collect();
    assert_eq!(seqs, vec![6, 7, 8, 9]);
    daemon.stop().await;
}

#[tokio::test]
async fn since_older_than_the_backlog_gets_an_explicit_gap_marker() {
    let (_dir, path) = socket_path();
    let daemon = TestDaemon::start(path.clone(), EventBus::new(3)).await;
    for i in 1..=8 {
        daemon.bus.publish("t", json!(i));
    }
    let client = within(Client::connect(&path)).await.unwrap();
    let mut sub = within(client.subscribe(vec![], Some(2))).await.unwrap();
    assert_eq!(
        within(sub.next()).await.unwrap(),
        Notice::Gap(Gap {
            reason: GapReason::Expired,
            first_seq: 6
        })
    );
    assert_eq!(sub.last_seq(), 5);
    for i in 6..=8 {
        assert_eq!(event_seq(within(sub.next()).await.unwrap()), i);
    }
    daemon.stop().await;
}

#[tokio::test]
async fn since_from_another_epoch_gets_a_restarted_gap() {
    let (_dir, path) = socket_path();
    let daemon = TestDaemon::start(path.clone(), EventBus::new(8)).await;
    daemon.bus.publish("t", json!(1));
    daemon.bus.publish("t", json!(2));
    let client = within(Client::connect(&path)).await.unwrap();
    let params = SubscribeParams {
        topics: vec![],
        since: Some(1),
        epoch: Some(daemon.bus.epoch().wrapping_add(1)),
    };
    let mut sub = within(client.subscribe_with(params)).await.unwrap();
    assert_eq!(
        within(sub.next()).await.unwrap(),
        Notice::Gap(Gap {
            reason: GapReason::Restarted,
            first_seq: 1
        })
    );
    assert_eq!(event_seq(within(sub.next()).await.unwrap()), 1);
    daemon.stop().await;
}

#[tokio::test]
async fn a_subscriber_that_does_not_read_gets_a_lag_gap_and_the_publisher_never_waits() {
    let (_dir, path) = socket_path();
    let daemon = TestDaemon::start(path.clone(), EventBus::new(4)).await;
    let client = within(Client::connect(&path)).await.unwrap();
    let mut sub = within(client.subscribe(vec![], None)).await.unwrap();

    // On this single-threaded runtime nothing else runs during the loop, so the
    // subscriber's stream falls behind the 4-event backlog by construction.
    for i in 1..=10_000 {
        daemon.bus.publish("t", json!(i));
    }
    assert_eq!(
        within(sub.next()).await.unwrap(),
        Notice::Gap(Gap {
            reason: GapReason::Lagged,
            first_seq: 9_997
        })
    );
    for i in 9_997..=10_000 {
        assert_eq!(event_seq(within(sub.next()).await.unwrap()), i);
    }
    daemon.stop().await;
}

#[tokio::test]
async fn resuming_subscription_survives_a_daemon_restart_with_the_same_bus() {
    let (_dir, path) = socket_path();
    let bus = EventBus::new(64);
    let daemon = TestDaemon::start(path.clone(), bus.clone()).await;
    for i in 1..=3 {
        bus.publish("t", json!(i));
    }
    let mut sub = ResumingSubscription::new(&path, vec![], Some(0))
        .with_retry(Duration::from_millis(5), Duration::from_millis(50));
    for i in 1..=3 {
        assert_eq!(event_seq(within(sub.next()).await.unwrap()), i);
    }
    assert_eq!(sub.last_seq(), Some(3));

    // The connection drops and the socket disappears; events go on meanwhile.
    daemon.stop().await;
    assert!(!path.exists());
    bus.publish("t", json!(4));
    bus.publish("t", json!(5));

    // The client is already waiting (and retrying) before the daemon is back.
    let reader = tokio::spawn(async move {
        let mut seqs = Vec::new();
        for _ in 0..3 {
            seqs.push(event_seq(sub.next().await.unwrap()));
        }
        seqs
    });
    let daemon = TestDaemon::start(path.clone(), bus.clone()).await;
    bus.publish("t", json!(6));
    assert_eq!(within(reader).await.unwrap(), vec![4, 5, 6]);
    daemon.stop().await;
}

#[tokio::test]
async fn resuming_subscription_reports_a_restart_with_a_new_bus() {
    let (_dir, path) = socket_path();
    let old = TestDaemon::start(path.clone(), EventBus::new(64)).await;
    old.bus.publish("t", json!("old"));
    let mut sub = ResumingSubscription::new(&path, vec![], Some(0))
        .with_retry(Duration::from_millis(5), Duration::from_millis(50));
    assert_eq!(event_seq(within(sub.next()).await.unwrap()), 1);
    old.stop().await;

    // A restarted daemon: a new stream whose numbers start again at 1.
    let new = TestDaemon::start(path.clone(), EventBus::new(64)).await;
    new.bus.publish("t", json!("new 1"));
    new.bus.publish("t", json!("new 2"));
    assert_eq!(
        within(sub.next()).await.unwrap(),
        Notice::Gap(Gap {
            reason: GapReason::Restarted,
            first_seq: 1
        })
    );
    match within(sub.next()).await.unwrap() {
        Notice::Event(event) => assert_eq!((event.seq, event.data), (1, json!("new 1"))),
        other => panic!("unexpected {other:?}"),
    }
    new.stop().await;
}

#[tokio::test]
async fn a_subscription_ends_with_connection_closed_when_the_daemon_stops() {
    let (_dir, path) = socket_path();
    let daemon = TestDaemon::start(path.clone(), EventBus::new(8)).await;
    let client = within(Client::connect(&path)).await.unwrap();
    let mut sub = within(client.subscribe(vec![], None)).await.unwrap();
    daemon.stop().await;
    let err = within(sub.next()).await.unwrap_err();
    assert!(
        matches!(err, ctl::CtlError::ConnectionClosed { .. }),
        "{err:?}"
    );
}
