//! Requests and replies: handler round trips, built-in methods, errors, versions.

mod common;

use std::time::Duration;

use common::{socket_path, within, RawConn, TestDaemon};
use ctl::wire::{codes, VersionInfo};
use ctl::{methods, Client, CtlError, EventBus, PROTOCOL_VERSION};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

#[tokio::test]
async fn request_reply_round_trip_through_the_handler() {
    let (_dir, path) = socket_path();
    let daemon = TestDaemon::start(path.clone(), EventBus::default()).await;
    let client = within(Client::connect(&path)).await.unwrap();

    let params = json!({"group": "g1", "list": [1, 2, 3]});
    assert_eq!(
        within(client.request("echo", params.clone()))
            .await
            .unwrap(),
        params
    );
    assert_eq!(
        within(client.request(methods::STATUS, Value::Null))
            .await
            .unwrap(),
        json!({"state": "BACKUP"})
    );
    assert_eq!(
        within(client.request("echo", Value::Null)).await.unwrap(),
        Value::Null
    );
    daemon.stop().await;
}

#[tokio::test]
async fn pipelined_requests_each_get_their_own_reply() {
    let (_dir, path) = socket_path();
    let daemon = TestDaemon::start(path.clone(), EventBus::default()).await;
    let client = within(Client::connect(&path)).await.unwrap();

    let (a, b, c) = within(async {
        tokio::join!(
            client.request("echo", json!("a")),
            client.request("echo", json!("b")),
            client.request("echo", json!("c")),
        )
    })
    .await;
    assert_eq!(
        (a.unwrap(), b.unwrap(), c.unwrap()),
        (json!("a"), json!("b"), json!("c"))
    );
    daemon.stop().await;
}

#[tokio::test]
async fn unknown_method_is_an_error_reply_and_the_connection_goes_on() {
    let (_dir, path) = socket_path();
    let daemon = TestDaemon::start(path.clone(), EventBus::default()).await;
    let client = within(Client::connect(&path)).await.unwrap();

    let err = within(client.request("frobnicate", json!({})))
        .await
        .unwrap_err();
    match &err {
        CtlError::Remote { method, error, .. } => {
            assert_eq!(method, "frobnicate");
            assert_eq!(error.code, codes::METHOD_NOT_FOUND);
            assert!(error.message.contains("frobnicate"), "{}", error.message);
        }
        other => panic!("expected a remote error, got {other:?}"),
    }
    assert!(err.to_string().contains(&*path.to_string_lossy()));
    assert_eq!(
        within(client.request("echo", json!(1))).await.unwrap(),
        json!(1)
    );
    daemon.stop().await;
}

#[tokio::test]
async fn handler_errors_reach_the_client_with_code_and_message() {
    let (_dir, path) = socket_path();
    let daemon = TestDaemon::start(path.clone(), EventBus::default()).await;
    let client = within(Client::connect(&path)).await.unwrap();

    match within(client.request("fail", Value::Null)).await {
        Err(CtlError::Remote { error, .. }) => {
            assert_eq!(error.code, codes::FAILED);
            assert_eq!(error.message, "no peer to prepare");
        }
        other => panic!("expected a remote error, got {other:?}"),
    }
    daemon.stop().await;
}

#[tokio::test]
async fn ping_and_version_are_answered_by_the_server() {
    let (_dir, path) = socket_path();
    let daemon = TestDaemon::start(path.clone(), EventBus::default()).await;
    let client = within(Client::connect(&path)).await.unwrap();

    assert_eq!(
        within(client.request(methods::PING, Value::Null))
            .await
            .unwrap(),
        json!("pong")
    );
    let version: VersionInfo = serde_json::from_value(
        within(client.request(methods::VERSION, Value::Null))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(version.protocol, PROTOCOL_VERSION);
    assert_eq!(version.daemon, "testd");
    assert_eq!(version.daemon_version, "9.9.9");
    daemon.stop().await;
}

#[tokio::test]
async fn request_without_reply_times_out() {
    let (_dir, path) = socket_path();
    let daemon = TestDaemon::start(path.clone(), EventBus::default()).await;
    let client = within(Client::connect(&path)).await.unwrap();

    let err = within(client.request_with_timeout("hang", Value::Null, Duration::from_millis(50)))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CtlError::Timeout { method, .. } if method == "hang"),
        "{err:?}"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn unsupported_version_is_refused_clearly_by_the_server() {
    let (_dir, path) = socket_path();
    let daemon = TestDaemon::start(path.clone(), EventBus::default()).await;
    let mut raw = RawConn::connect(&path).await;

    raw.send(b"{\"v\":99,\"id\":4,\"method\":\"ping\",\"params\":null,\"future\":true}\n")
        .await;
    let reply = raw.recv().await;
    assert_eq!(reply["id"], 4);
    assert_eq!(reply["error"]["code"], codes::UNSUPPORTED_VERSION);
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("99") && message.contains(&PROTOCOL_VERSION.to_string()),
        "{message}"
    );

    // The same connection still serves a request at the right version.
    raw.send(b"{\"v\":1,\"id\":5,\"method\":\"ping\"}\n").await;
    assert_eq!(raw.recv().await, json!({"id": 5, "result": "pong"}));
    daemon.stop().await;
}

#[tokio::test]
async fn client_reports_a_version_mismatch_from_a_newer_daemon() {
    let (_dir, path) = socket_path();
    // A daemon from the future that speaks only protocol 2.
    let listener = UnixListener::bind(&path).unwrap();
    let fake = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        while let Some(line) = lines.next_line().await.unwrap() {
            let req: Value = serde_json::from_str(&line).unwrap();
            let reply = json!({"id": req["id"], "error": {"code": codes::UNSUPPORTED_VERSION,
                "message": "unsupported protocol version 1; this server speaks versions 2 to 2"}});
            write
                .write_all(format!("{reply}\n").as_bytes())
                .await
                .unwrap();
        }
    });
    let client = within(Client::connect(&path)).await.unwrap();
    let err = within(client.request(methods::STATUS, Value::Null))
        .await
        .unwrap_err();
    match &err {
        CtlError::VersionMismatch { ours, message, .. } => {
            assert_eq!(*ours, PROTOCOL_VERSION);
            assert!(message.contains("versions 2 to 2"), "{message}");
        }
        other => panic!("expected a version mismatch, got {other:?}"),
    }
    assert!(err.to_string().contains("protocol version mismatch"));
    drop(client);
    within(fake).await.unwrap();
}

#[tokio::test]
async fn connecting_to_a_missing_socket_names_the_path_and_asks_if_the_daemon_runs() {
    let (_dir, path) = socket_path();
    let err = within(Client::connect(&path)).await.unwrap_err();
    assert!(matches!(err, CtlError::NotRunning { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&*path.to_string_lossy()), "{text}");
    assert!(text.contains("is the daemon running?"), "{text}");
}

#[tokio::test]
async fn requests_after_the_daemon_stops_fail_with_connection_closed() {
    let (_dir, path) = socket_path();
    let daemon = TestDaemon::start(path.clone(), EventBus::default()).await;
    let client = within(Client::connect(&path)).await.unwrap();
    assert_eq!(
        within(client.request(methods::PING, Value::Null))
            .await
            .unwrap(),
        json!("pong")
    );
    daemon.stop().await;

    let err = within(client.request(methods::PING, Value::Null))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(
        matches!(err, CtlError::ConnectionClosed { .. } | CtlError::Io { .. }),
        "{err:?}"
    );
}
