//! Malformed input: each bad line gets an error reply; the connection and the server go on.

mod common;

use common::{socket_path, within, RawConn, TestDaemon};
use ctl::wire::{codes, MAX_REQUEST_LINE};
use ctl::{methods, Client, EventBus};
use serde_json::{json, Value};

#[tokio::test]
async fn each_malformed_line_gets_an_error_reply_and_the_connection_serves_the_next() {
    let (_dir, path) = socket_path();
    let daemon = TestDaemon::start(path.clone(), EventBus::default()).await;
    let mut raw = RawConn::connect(&path).await;

    let huge = {
        let mut line = vec![b'x'; 2 * MAX_REQUEST_LINE];
        line.push(b'\n');
        line
    };
    let cases: Vec<(&str, Vec<u8>, u64, i64)> = vec![
        ("garbage", b"hello daemon\n".to_vec(), 0, codes::PARSE_ERROR),
        (
            "truncated JSON",
            b"{\"v\":1,\"id\":\n".to_vec(),
            0,
            codes::PARSE_ERROR,
        ),
        (
            "not UTF-8",
            b"\xff\xfe\x00\x01\n".to_vec(),
            0,
            codes::PARSE_ERROR,
        ),
        ("array", b"[1,2,3]\n".to_vec(), 0, codes::INVALID_REQUEST),
        ("number", b"42\n".to_vec(), 0, codes::INVALID_REQUEST),
        (
            "no version",
            b"{\"id\":3,\"method\":\"ping\"}\n".to_vec(),
            3,
            codes::INVALID_REQUEST,
        ),
        (
            "method not a string",
            b"{\"v\":1,\"id\":7,\"method\":5}\n".to_vec(),
            7,
            codes::INVALID_REQUEST,
        ),
        (
            "unknown field",
            b"{\"v\":1,\"id\":8,\"method\":\"ping\",\"x\":1}\n".to_vec(),
            8,
            codes::INVALID_REQUEST,
        ),
        ("huge line", huge, 0, codes::LINE_TOO_LONG),
    ];
    for (what, line, id, code) in cases {
        raw.send(&line).await;
        let reply = raw.recv().await;
        assert_eq!(reply["id"], id, "{what}: {reply}");
        assert_eq!(reply["error"]["code"], code, "{what}: {reply}");
        assert!(
            reply["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}"
        );
    }

    // Blank lines are skipped silently; the next valid request is served.
    raw.send(b"\n  \n{\"v\":1,\"id\":9,\"method\":\"echo\",\"params\":[\"ok\"]}\n")
        .await;
    assert_eq!(raw.recv().await, json!({"id": 9, "result": ["ok"]}));
    daemon.stop().await;
}

#[tokio::test]
async fn a_client_midway_through_a_huge_line_does_not_stop_others_from_being_served() {
    let (_dir, path) = socket_path();
    let daemon = TestDaemon::start(path.clone(), EventBus::default()).await;
    let mut slow = RawConn::connect(&path).await;
    // Half a huge line, no newline yet: the server is busy discarding it.
    slow.send(&vec![b'{'; MAX_REQUEST_LINE + 10]).await;

    let other = within(Client::connect(&path)).await.unwrap();
    assert_eq!(
        within(other.request(methods::PING, Value::Null))
            .await
            .unwrap(),
        json!("pong")
    );

    slow.send(b"}\n{\"v\":1,\"id\":2,\"method\":\"ping\"}\n")
        .await;
    assert_eq!(raw_code(&slow.recv().await), codes::LINE_TOO_LONG);
    assert_eq!(slow.recv().await, json!({"id": 2, "result": "pong"}));
    // And the other client is still fine afterwards.
    assert_eq!(
        within(other.request("echo", json!(5))).await.unwrap(),
        json!(5)
    );
    daemon.stop().await;
}

#[tokio::test]
async fn a_client_that_disconnects_mid_line_leaves_the_server_serving() {
    let (_dir, path) = socket_path();
    let daemon = TestDaemon::start(path.clone(), EventBus::default()).await;
    let mut rude = RawConn::connect(&path).await;
    rude.send(b"{\"v\":1,\"id\":1,\"meth").await;
    drop(rude);

    let client = within(Client::connect(&path)).await.unwrap();
    assert_eq!(
        within(client.request(methods::PING, Value::Null))
            .await
            .unwrap(),
        json!("pong")
    );
    daemon.stop().await;
}

#[tokio::test]
async fn bad_subscribe_params_are_an_error_reply() {
    let (_dir, path) = socket_path();
    let daemon = TestDaemon::start(path.clone(), EventBus::default()).await;
    let mut raw = RawConn::connect(&path).await;
    raw.send(b"{\"v\":1,\"id\":4,\"method\":\"subscribe\",\"params\":{\"since\":\"yesterday\"}}\n")
        .await;
    let reply = raw.recv().await;
    assert_eq!(
        (reply["id"].clone(), raw_code(&reply)),
        (json!(4), codes::INVALID_PARAMS)
    );
    raw.send(b"{\"v\":1,\"id\":5,\"method\":\"ping\"}\n").await;
    assert_eq!(raw.recv().await, json!({"id": 5, "result": "pong"}));
    daemon.stop().await;
}

fn raw_code(reply: &Value) -> i64 {
    reply["error"]["code"].as_i64().unwrap()
}
