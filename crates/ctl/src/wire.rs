//! Wire types: one JSON object per line, in both directions.
//!
//! Client to server, every line is a [`Request`]:
//! `{"v":1,"id":7,"method":"status","params":{}}`.
//!
//! Server to client, a line is one of:
//! - a [`Reply`]: `{"id":7,"result":{...}}` or `{"id":7,"error":{"code":-32601,"message":"..."}}`;
//! - an [`Event`] on a subscribed connection: `{"seq":42,"topic":"group.state","time":1700000000000,"data":{...}}`;
//! - a [`Gap`] marker: `{"gap":{"reason":"expired","first_seq":40}}`, meaning events
//!   before `first_seq` that the client asked for are lost and it must re-read full status.
//!
//! A line the server cannot read gets a reply with `id` 0 (request ids start at 1).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Protocol version this crate speaks; every request carries it in `v`.
pub const PROTOCOL_VERSION: u32 = 1;
/// Oldest protocol version a server of this crate accepts.
pub const MIN_PROTOCOL_VERSION: u32 = 1;
/// Longest line (bytes, without the newline) a server accepts from a client.
pub const MAX_REQUEST_LINE: usize = 1 << 20;
/// Longest line (bytes) a client accepts from a server; status replies can be large.
pub const MAX_SERVER_LINE: usize = 16 << 20;

/// Standard method names.
pub mod methods {
    /// Full status of the daemon (answered by the daemon's handler).
    pub const STATUS: &str = "status";
    /// Start streaming events on this connection (answered by the server itself).
    pub const SUBSCRIBE: &str = "subscribe";
    /// Re-read the configuration and apply the difference (daemon's handler).
    pub const RELOAD: &str = "reload";
    /// vrrpd asks lbd to get ready to become master (lbd's handler).
    pub const PREPARE: &str = "prepare";
    /// Liveness check (answered by the server itself with `"pong"`).
    pub const PING: &str = "ping";
    /// Protocol and daemon versions (answered by the server itself).
    pub const VERSION: &str = "version";
}

/// Standard event topics shared between the daemons.
pub mod topics {
    /// vrrpd: a sync group changed state (MASTER, BACKUP, FAULT...).
    pub const GROUP_STATE: &str = "group.state";
}

/// Error codes carried in [`ReplyError::code`] (JSON-RPC numbering where one exists).
pub mod codes {
    /// The line is not valid JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// The line is JSON but not a request object.
    pub const INVALID_REQUEST: i64 = -32600;
    /// No such method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// The method exists but its params are wrong.
    pub const INVALID_PARAMS: i64 = -32602;
    /// The daemon failed while handling the request.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// The request's protocol version is not supported by this server.
    pub const UNSUPPORTED_VERSION: i64 = -32000;
    /// The line is longer than the server accepts.
    pub const LINE_TOO_LONG: i64 = -32001;
    /// The daemon understood the request but refuses or fails it (a domain error).
    pub const FAILED: i64 = -32002;
    /// The socket serves as many connections as it may: this one is closed at once.
    pub const TOO_MANY_CONNECTIONS: i64 = -32003;
    /// The connection sent nothing for too long and is closed.
    pub const IDLE_TIMEOUT: i64 = -32004;
}

/// A request from a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Protocol version the client speaks.
    pub v: u32,
    /// Client-chosen id (>= 1), echoed in the reply.
    pub id: u64,
    /// Method name, e.g. [`methods::STATUS`].
    pub method: String,
    /// Method parameters; `null` when absent.
    #[serde(default)]
    pub params: Value,
}

impl Request {
    /// A request at this crate's protocol version.
    pub fn new(id: u64, method: impl Into<String>, params: Value) -> Self {
        Request {
            v: PROTOCOL_VERSION,
            id,
            method: method.into(),
            params,
        }
    }
}

/// The error object of a failed request; also what a handler returns to fail one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} (code {code})")]
pub struct ReplyError {
    /// One of [`codes`], or a daemon-specific code.
    pub code: i64,
    /// Human-readable explanation, meant for the operator.
    pub message: String,
}

impl ReplyError {
    /// An error with the given code and message.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        ReplyError {
            code,
            message: message.into(),
        }
    }

    /// The method is not known to this daemon.
    pub fn method_not_found(method: &str) -> Self {
        Self::new(
            codes::METHOD_NOT_FOUND,
            format!("unknown method {method:?}"),
        )
    }

    /// The params do not fit the method.
    pub fn invalid_params(why: impl std::fmt::Display) -> Self {
        Self::new(codes::INVALID_PARAMS, format!("invalid params: {why}"))
    }

    /// The daemon refuses or fails the request for a domain reason.
    pub fn failed(why: impl Into<String>) -> Self {
        Self::new(codes::FAILED, why)
    }

    /// The daemon hit an internal error.
    pub fn internal(why: impl std::fmt::Display) -> Self {
        Self::new(codes::INTERNAL_ERROR, format!("internal error: {why}"))
    }
}

/// Parses JSON like `serde_json::from_slice::<Value>`, but refuses an object that
/// names a key twice, at any depth (a data error naming the key): serde_json keeps
/// the last one, so `{"method":"status","method":"reload"}` would run a reload that
/// a reader of the line, or a filter in front of the socket, took for a status.
pub fn parse_unique_keys(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    serde_json::from_slice::<UniqueKeys>(bytes).map(|u| u.0)
}

/// A JSON value whose objects have no duplicate keys.
struct UniqueKeys(Value);

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueKeysVisitor).map(UniqueKeys)
    }
}

struct UniqueKeysVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueKeysVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(UniqueKeys(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format_args!(
                    "duplicate key {key:?}"
                )));
            }
            let UniqueKeys(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// Decodes a request's params into `T`, or an `invalid params` error for the reply.
pub fn decode_params<T: DeserializeOwned>(params: Value) -> Result<T, ReplyError> {
    serde_json::from_value(params).map_err(ReplyError::invalid_params)
}

/// Success value or error of a [`Reply`]; on the wire a `result` or an `error` key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// The method's result.
    #[serde(rename = "result")]
    Result(Value),
    /// Why the method failed.
    #[serde(rename = "error")]
    Error(ReplyError),
}

/// A reply to one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The request's id, or 0 when the request line could not be read.
    pub id: u64,
    /// Result or error.
    #[serde(flatten)]
    pub outcome: Outcome,
}

impl Reply {
    /// A successful reply.
    pub fn result(id: u64, result: Value) -> Self {
        Reply {
            id,
            outcome: Outcome::Result(result),
        }
    }

    /// A failed reply.
    pub fn error(id: u64, error: ReplyError) -> Self {
        Reply {
            id,
            outcome: Outcome::Error(error),
        }
    }
}

/// One published event, as streamed to subscribers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Sequence number: 1 for the first event of an [`crate::EventBus`], +1 for each next one
    /// (across all topics, so a topic-filtered stream may skip numbers).
    pub seq: u64,
    /// Topic, e.g. [`topics::GROUP_STATE`].
    pub topic: String,
    /// Publication time, milliseconds since the Unix epoch.
    pub time: u64,
    /// Topic-specific payload.
    pub data: Value,
}

/// Why a subscriber missed events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GapReason {
    /// The requested `since` is older than the server's backlog.
    Expired,
    /// The subscriber read too slowly and the backlog moved past it.
    Lagged,
    /// The event stream was restarted (new daemon process): old sequence numbers mean nothing.
    Restarted,
}

/// Marker telling a subscriber that it missed events and must re-read full status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// Why events were missed.
    pub reason: GapReason,
    /// Sequence number of the first event that follows the marker (the oldest one still kept).
    pub first_seq: u64,
}

/// Params of a [`methods::SUBSCRIBE`] request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribeParams {
    /// Topics wanted; empty means all. `"group"` also matches `"group.state"`.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Resume after this sequence number; `None` means only events published from now on.
    #[serde(default)]
    pub since: Option<u64>,
    /// The stream epoch `since` belongs to (from an earlier subscribe reply);
    /// a different epoch on the server gives a [`GapReason::Restarted`] gap.
    #[serde(default)]
    pub epoch: Option<u64>,
}

/// Result of a [`methods::SUBSCRIBE`] request; events follow on the same connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscribeResult {
    /// Identity of the server's event stream; changes when the daemon restarts.
    pub epoch: u64,
    /// Sequence number of the newest event published so far (0 if none).
    pub latest_seq: u64,
}

/// Result of a [`methods::VERSION`] request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// Protocol version the server prefers.
    pub protocol: u32,
    /// Oldest protocol version the server accepts.
    pub min_protocol: u32,
    /// Daemon name, e.g. `vrrpd`.
    pub daemon: String,
    /// Daemon version, e.g. `0.1.0`.
    pub daemon_version: String,
}

/// Whether `topic` is selected by the subscription filter `wanted` (empty = everything).
pub fn topic_matches(wanted: &[String], topic: &str) -> bool {
    wanted.is_empty()
        || wanted.iter().any(|w| {
            topic == w
                || (topic.len() > w.len() && topic.starts_with(w.as_str()) && {
                    topic.as_bytes()[w.len()] == b'.'
                })
        })
}

/// A line sent by the server, classified.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerLine {
    /// A reply to a request.
    Reply(Reply),
    /// A streamed event.
    Event(Event),
    /// A gap marker.
    Gap(Gap),
}

impl ServerLine {
    /// Parses one line from the server; the key present (`gap`, `seq`, `id`) decides the kind.
    pub fn parse(line: &[u8]) -> Result<ServerLine, serde_json::Error> {
        let value: Value = serde_json::from_slice(line)?;
        if let Some(gap) = value.get("gap") {
            Ok(ServerLine::Gap(Gap::deserialize(gap)?))
        } else if value.get("seq").is_some() {
            Ok(ServerLine::Event(Event::deserialize(value)?))
        } else {
            Ok(ServerLine::Reply(Reply::deserialize(value)?))
        }
    }
}

#[derive(Serialize)]
struct GapLine<'a> {
    gap: &'a Gap,
}

impl Gap {
    /// The marker as a server line (without the newline).
    pub fn to_line(&self) -> String {
        // A struct of plain fields cannot fail to serialise.
        serde_json::to_string(&GapLine { gap: self }).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        let e = parse_unique_keys(br#"{"v":1,"id":1,"method":"status","method":"reload"}"#)
            .unwrap_err();
        assert!(e.is_data(), "{e}");
        assert!(e.to_string().contains("duplicate key \"method\""), "{e}");
        let e = parse_unique_keys(br#"{"params":[{"a":1,"a":2}]}"#).unwrap_err();
        assert!(e.to_string().contains("duplicate key \"a\""), "{e}");
        let ok = parse_unique_keys(br#"{"a":{"b":1},"b":[1,2.5,null,true,"s",-3]}"#).unwrap();
        assert_eq!(ok, json!({"a":{"b":1},"b":[1,2.5,null,true,"s",-3]}));
        assert!(parse_unique_keys(b"{").unwrap_err().is_eof());
    }

    #[test]
    fn reply_has_result_or_error_key() {
        let ok = serde_json::to_value(Reply::result(3, json!({"a": 1}))).unwrap();
        assert_eq!(ok, json!({"id": 3, "result": {"a": 1}}));
        let err = serde_json::to_value(Reply::error(0, ReplyError::new(-1, "x"))).unwrap();
        assert_eq!(err, json!({"id": 0, "error": {"code": -1, "message": "x"}}));
    }

    #[test]
    fn server_lines_are_classified_by_key() {
        let r = ServerLine::parse(br#"{"id":3,"result":null}"#).unwrap();
        assert_eq!(r, ServerLine::Reply(Reply::result(3, Value::Null)));
        let e = ServerLine::parse(br#"{"seq":9,"topic":"t","time":5,"data":[1]}"#).unwrap();
        assert!(matches!(e, ServerLine::Event(Event { seq: 9, .. })));
        let g = Gap {
            reason: GapReason::Expired,
            first_seq: 4,
        };
        assert_eq!(
            ServerLine::parse(g.to_line().as_bytes()).unwrap(),
            ServerLine::Gap(g)
        );
        assert!(ServerLine::parse(br#"{"id":3}"#).is_err());
    }

    #[test]
    fn topic_filter_matches_exact_and_dotted_children() {
        let w = vec!["group".to_string()];
        assert!(topic_matches(&w, "group"));
        assert!(topic_matches(&w, "group.state"));
        assert!(!topic_matches(&w, "groups"));
        assert!(!topic_matches(&w, "service.health"));
        assert!(topic_matches(&[], "anything"));
    }
}
