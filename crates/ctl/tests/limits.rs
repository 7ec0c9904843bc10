//! What a control socket allows its clients: a connection cap (refused at once with
//! an error line), an idle timeout (not for subscribers), a bound on a client that
//! does not read, and no duplicate keys.

mod common;

use std::time::Duration;

use common::{socket_path, within, RawConn, TestDaemon};
use ctl::wire::codes;
use ctl::{methods, Client, CtlError, EventBus, ServerLimits};
use serde_json::{json, Value};

const PING: &[u8] = b"{\"v\":1,\"id\":1,\"method\":\"ping\"}\n";

#[tokio::test]
async fn connections_over_the_cap_are_refused_and_idle_ones_closed() {
    let (_dir, path) = socket_path();
    let limits = ServerLimits {
        max_connections: 4,
        idle_timeout: Duration::from_millis(500),
        ..ServerLimits::default()
    };
    let (daemon, stats) = TestDaemon::start_with(path.clone(), EventBus::default(), limits).await;

    let mut idle = Vec::new();
    for _ in 0..4 {
        let mut c = RawConn::connect(&path).await;
        // Served: each answers a ping (and so holds a slot), then says nothing.
        c.send(PING).await;
        assert_eq!(c.recv().await["result"], "pong");
        idle.push(c);
    }
    // Over the cap: told why, then closed, without waiting for anything.
    for _ in 0..3 {
        let mut over = RawConn::connect(&path).await;
        let refusal = over.recv().await;
        assert_eq!(refusal["id"], 0, "{refusal}");
        assert_eq!(
            refusal["error"]["code"],
            codes::TOO_MANY_CONNECTIONS,
            "{refusal}"
        );
        assert!(over.recv_or_eof().await.is_none());
    }
    // The client library says the same.
    let err = within(async {
        Client::connect(&path)
            .await
            .unwrap()
            .request(methods::PING, Value::Null)
            .await
    })
    .await
    .unwrap_err();
    assert!(matches!(err, CtlError::Dropped { .. }), "{err}");
    assert!(
        err.to_string().contains("too many control connections"),
        "{err}"
    );
    assert!(err.is_transient());
    let counters = stats.snapshot();
    assert_eq!(counters.refused, 4, "{counters:?}");
    assert_eq!(counters.open, 4, "{counters:?}");

    // The silent ones are told and closed after the idle timeout; slots come back.
    for c in &mut idle {
        let last = c.recv().await;
        assert_eq!(last["error"]["code"], codes::IDLE_TIMEOUT, "{last}");
        assert!(c.recv_or_eof().await.is_none());
    }
    let client = Client::connect(&path).await.unwrap();
    assert_eq!(
        within(client.request(methods::PING, Value::Null))
            .await
            .unwrap(),
        "pong"
    );
    let counters = stats.snapshot();
    assert!(counters.idle_closed >= 4, "{counters:?}");
    daemon.stop().await;
}

#[tokio::test]
async fn a_subscriber_is_not_idle_and_a_request_under_way_is_not_either() {
    let (_dir, path) = socket_path();
    let limits = ServerLimits {
        idle_timeout: Duration::from_millis(200),
        ..ServerLimits::default()
    };
    let (daemon, stats) = TestDaemon::start_with(path.clone(), EventBus::default(), limits).await;
    let mut sub = Client::connect(&path)
        .await
        .unwrap()
        .subscribe(Vec::new(), None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    daemon.bus.publish("group.state", json!({"n": 1}));
    let notice = within(sub.next()).await.unwrap();
    assert!(matches!(notice, ctl::Notice::Event(e) if e.data == json!({"n": 1})));
    assert_eq!(stats.snapshot().idle_closed, 0);
    daemon.stop().await;
}

#[tokio::test]
async fn a_subscriber_that_does_not_read_is_dropped_with_bounded_memory() {
    let (_dir, path) = socket_path();
    let limits = ServerLimits {
        write_stall_timeout: Duration::from_millis(300),
        ..ServerLimits::default()
    };
    let (daemon, stats) = TestDaemon::start_with(path.clone(), EventBus::new(64), limits).await;
    let mut raw = RawConn::connect(&path).await;
    raw.send(b"{\"v\":1,\"id\":1,\"method\":\"subscribe\",\"params\":{}}\n")
        .await;
    // Never read again: the socket buffer fills, then the server gives up on it.
    let big = "x".repeat(16 << 10);
    for i in 0..200 {
        daemon
            .bus
            .publish("group.state", json!({"i": i, "pad": big}));
        tokio::task::yield_now().await;
    }
    within(async {
        while stats.snapshot().stalled_closed == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    within(async {
        while stats.snapshot().open != 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    daemon.stop().await;
}

#[tokio::test]
async fn a_request_with_a_duplicate_key_is_refused_not_run() {
    let (_dir, path) = socket_path();
    let (daemon, stats) =
        TestDaemon::start_with(path.clone(), EventBus::default(), ServerLimits::default()).await;
    let mut raw = RawConn::connect(&path).await;
    raw.send(
        b"{\"v\":1,\"id\":4,\"method\":\"status\",\"method\":\"echo\",\"params\":{\"a\":1}}\n",
    )
    .await;
    let reply = raw.recv().await;
    assert_eq!(reply["error"]["code"], codes::INVALID_REQUEST, "{reply}");
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(message.contains("duplicate key \"method\""), "{message}");
    // Nested too.
    raw.send(b"{\"v\":1,\"id\":5,\"method\":\"echo\",\"params\":{\"a\":1,\"a\":2}}\n")
        .await;
    let reply = raw.recv().await;
    assert_eq!(reply["error"]["code"], codes::INVALID_REQUEST, "{reply}");
    // The connection goes on.
    raw.send(b"{\"v\":1,\"id\":6,\"method\":\"echo\",\"params\":{\"a\":1}}\n")
        .await;
    assert_eq!(raw.recv().await["result"], json!({"a": 1}));
    assert_eq!(stats.snapshot().bad_requests, 2);
    daemon.stop().await;
}

#[tokio::test]
async fn the_peer_daemon_gets_a_reserve_beyond_the_cap() {
    // The peer daemon is known by its command name and user: here, this test itself.
    let me = std::fs::read_to_string("/proc/self/comm").unwrap();
    for (peer, reserved) in [(me.trim_end().to_owned(), true), ("lbd".to_owned(), false)] {
        let (_dir, path) = socket_path();
        let limits = ServerLimits {
            max_connections: 2,
            peer_daemon: Some(peer.clone()),
            peer_reserve: 1,
            ..ServerLimits::default()
        };
        let (daemon, stats) =
            TestDaemon::start_with(path.clone(), EventBus::default(), limits).await;
        let mut held = Vec::new();
        for _ in 0..2 {
            let c = Client::connect(&path).await.unwrap();
            within(c.request(methods::PING, Value::Null)).await.unwrap();
            held.push(c);
        }
        let third = Client::connect(&path).await.unwrap();
        let answer = within(third.request(methods::PING, Value::Null)).await;
        assert_eq!(answer.is_ok(), reserved, "peer {peer:?}: {answer:?}");
        let fourth = Client::connect(&path).await.unwrap();
        let refused = within(fourth.request(methods::PING, Value::Null)).await;
        assert!(
            matches!(refused, Err(CtlError::Dropped { .. })),
            "{refused:?}"
        );
        let counters = stats.snapshot();
        assert_eq!(counters.reserved, u64::from(reserved), "{counters:?}");
        assert_eq!(
            counters.refused,
            if reserved { 1 } else { 2 },
            "{counters:?}"
        );
        daemon.stop().await;
    }
}
