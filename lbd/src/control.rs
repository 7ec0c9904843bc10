//! lbd's control-socket methods: parsed here, answered by the daemon loop (which
//! owns the state) through a channel.

use serde_json::Value;
use tokio::sync::mpsc;

use ctl::wire::{decode_params, ReplyError};

pub use ctl::contract::lbd::PrepareParams;

/// A parsed control request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `status`: backend, vrrpd roles, services and servers, last apply.
    Status,
    /// `reload`: re-read cluster.toml; refused files change nothing. `force`
    /// accepts a file that drops most of the running services.
    Reload {
        /// `{"force": true}`.
        force: bool,
    },
    /// `prepare`: make sure the dataplane is applied and current, fast.
    Prepare(PrepareParams),
}

impl Command {
    /// Parses a request; unknown methods and bad parameters are reply errors.
    pub fn parse(method: &str, params: Value) -> Result<Command, ReplyError> {
        let empty = |p: &Value| p.is_null() || p.as_object().is_some_and(|o| o.is_empty());
        match method {
            ctl::methods::STATUS if !empty(&params) => Err(ReplyError::invalid_params(format!(
                "{method} takes no parameters"
            ))),
            ctl::methods::STATUS => Ok(Command::Status),
            ctl::methods::RELOAD => Ok(Command::Reload {
                force: reload_force(&params)?,
            }),
            ctl::methods::PREPARE => Ok(Command::Prepare(if params.is_null() {
                PrepareParams::default()
            } else {
                decode_params(params)?
            })),
            other => Err(ReplyError::method_not_found(other)),
        }
    }
}

/// A request on its way to the daemon loop, with where to send the answer.
pub type ControlRequest = ctl::Forwarded<Command>;

/// lbd's [`ctl::RequestHandler`]: parses, forwards to the loop, waits.
pub type ControlHandler = ctl::Forwarder<Command>;

/// The handler of lbd's control socket, forwarding to `requests`.
pub fn control_handler(requests: mpsc::Sender<ControlRequest>) -> ControlHandler {
    ctl::Forwarder::new("lbd", Command::parse, requests)
}

/// `reload`'s parameters: none, or `{"force": bool}`.
pub fn reload_force(params: &Value) -> Result<bool, ReplyError> {
    if params.is_null() {
        return Ok(false);
    }
    let Some(o) = params.as_object() else {
        return Err(ReplyError::invalid_params("reload takes {\"force\": bool}"));
    };
    let mut force = false;
    for (k, v) in o {
        match (k.as_str(), v.as_bool()) {
            ("force", Some(b)) => force = b,
            _ => {
                return Err(ReplyError::invalid_params(format!(
                    "reload takes {{\"force\": bool}}, not {k:?}: {v}"
                )))
            }
        }
    }
    Ok(force)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_methods() {
        assert_eq!(Command::parse("status", Value::Null), Ok(Command::Status));
        assert_eq!(
            Command::parse("reload", json!({})),
            Ok(Command::Reload { force: false })
        );
        assert_eq!(
            Command::parse("reload", json!({"force": true})),
            Ok(Command::Reload { force: true })
        );
        assert!(Command::parse("reload", json!({"x": 1})).is_err());
        assert!(Command::parse("reload", json!({"force": "yes"})).is_err());
        assert_eq!(
            Command::parse(
                "prepare",
                json!({"group": "edge", "instances": ["public", "server"]})
            ),
            Ok(Command::Prepare(PrepareParams {
                group: Some("edge".into()),
                instances: vec!["public".into(), "server".into()]
            }))
        );
        assert_eq!(
            Command::parse("prepare", json!({"group": null, "instances": []})),
            Ok(Command::Prepare(PrepareParams::default()))
        );
        assert!(Command::parse("prepare", json!({"group": 3})).is_err());
        let err = Command::parse("nope", Value::Null).unwrap_err();
        assert_eq!(err.code, ctl::wire::codes::METHOD_NOT_FOUND);
    }
}
