//! lbd's control-socket methods: parsed here, answered by the daemon loop (which
//! owns the state) through a channel.

use serde_json::Value;
use tokio::sync::mpsc;

use ctl::wire::{decode_params, ReplyError};

pub use ctl::contract::lbd::PrepareParams;
use ctl::contract::lbd::{
    methods, ServerClearParams, ServerOverride, ServerParams, ServerWeightParams,
};

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
    /// `server.drain`, `server.disable`, `server.weight` (`Some`) and
    /// `server.enable` (`None`): one server's run-time override.
    ServerSet {
        /// The service.
        service: String,
        /// The server.
        server: String,
        /// The override, or none (back to the configuration).
        value: Option<ServerOverride>,
    },
    /// `server.list`: the overrides in force.
    ServerList,
    /// `server.clear` with `{"all": true}`: every override.
    ServerClear,
    /// `announce.drain` (true) and `announce.resume` (false): active-active mode,
    /// withdraw every VIP of this node, or announce them again.
    AnnounceDrain(bool),
    /// A `server.*` request with bad parameters: refused by the daemon, which
    /// counts it.
    ServerRefused(ReplyError),
}

impl Command {
    /// Parses a request; unknown methods and bad parameters are reply errors.
    pub fn parse(method: &str, params: Value) -> Result<Command, ReplyError> {
        let empty = |p: &Value| p.is_null() || p.as_object().is_some_and(|o| o.is_empty());
        let no_params = empty(&params);
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
            methods::SERVER_DRAIN
            | methods::SERVER_DISABLE
            | methods::SERVER_ENABLE
            | methods::SERVER_WEIGHT
            | methods::SERVER_LIST
            | methods::SERVER_CLEAR => {
                Ok(parse_server(method, params, no_params).unwrap_or_else(Command::ServerRefused))
            }
            methods::ANNOUNCE_DRAIN | methods::ANNOUNCE_RESUME if !no_params => Err(
                ReplyError::invalid_params(format!("{method} takes no parameters")),
            ),
            methods::ANNOUNCE_DRAIN => Ok(Command::AnnounceDrain(true)),
            methods::ANNOUNCE_RESUME => Ok(Command::AnnounceDrain(false)),
            other => Err(ReplyError::method_not_found(other)),
        }
    }
}

/// A `server.*` request; refused ones reach the daemon as
/// [`Command::ServerRefused`] (it counts them).
fn parse_server(method: &str, params: Value, no_params: bool) -> Result<Command, ReplyError> {
    match method {
        methods::SERVER_DRAIN | methods::SERVER_DISABLE | methods::SERVER_ENABLE => {
            let p: ServerParams = decode_params(params)?;
            let value = match method {
                methods::SERVER_DRAIN => Some(ServerOverride::Drain),
                methods::SERVER_DISABLE => Some(ServerOverride::Disable),
                _ => None,
            };
            Ok(Command::ServerSet {
                service: p.service,
                server: p.server,
                value,
            })
        }
        methods::SERVER_WEIGHT => {
            let p: ServerWeightParams = decode_params(params)?;
            crate::servers::check_weight(p.weight).map_err(ReplyError::invalid_params)?;
            Ok(Command::ServerSet {
                service: p.service,
                server: p.server,
                value: Some(ServerOverride::Weight { weight: p.weight }),
            })
        }
        methods::SERVER_LIST if !no_params => Err(ReplyError::invalid_params(format!(
            "{method} takes no parameters"
        ))),
        methods::SERVER_LIST => Ok(Command::ServerList),
        methods::SERVER_CLEAR => {
            let p: ServerClearParams = decode_params(params)?;
            if !p.all {
                return Err(ReplyError::invalid_params(
                    "server.clear takes {\"all\": true}; one server: server.enable",
                ));
            }
            Ok(Command::ServerClear)
        }
        other => Err(ReplyError::method_not_found(other)),
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
        assert_eq!(
            Command::parse("server.drain", json!({"service": "web", "server": "srv2"})),
            Ok(Command::ServerSet {
                service: "web".into(),
                server: "srv2".into(),
                value: Some(ServerOverride::Drain)
            })
        );
        assert_eq!(
            Command::parse("server.enable", json!({"service": "web", "server": "srv2"})),
            Ok(Command::ServerSet {
                service: "web".into(),
                server: "srv2".into(),
                value: None
            })
        );
        assert_eq!(
            Command::parse(
                "server.weight",
                json!({"service": "web", "server": "srv2", "weight": 3})
            ),
            Ok(Command::ServerSet {
                service: "web".into(),
                server: "srv2".into(),
                value: Some(ServerOverride::Weight { weight: 3 })
            })
        );
        // Unknown fields, a weight the file would refuse, a missing name.
        for (m, p) in [
            (
                "server.drain",
                json!({"service": "web", "server": "srv2", "now": true}),
            ),
            (
                "server.weight",
                json!({"service": "web", "server": "srv2", "weight": 65536}),
            ),
            (
                "server.weight",
                json!({"service": "web", "server": "srv2", "weight": -1}),
            ),
            ("server.disable", json!({"service": "web"})),
            ("server.clear", json!({})),
            ("server.clear", json!({"all": false})),
            ("server.list", json!({"x": 1})),
        ] {
            match Command::parse(m, p.clone()) {
                Ok(Command::ServerRefused(e)) => {
                    assert_eq!(e.code, ctl::wire::codes::INVALID_PARAMS, "{m} {p}")
                }
                other => panic!("{m} {p}: {other:?}"),
            }
        }
        assert_eq!(
            Command::parse("server.clear", json!({"all": true})),
            Ok(Command::ServerClear)
        );
        assert_eq!(
            Command::parse("server.list", Value::Null),
            Ok(Command::ServerList)
        );
        let err = Command::parse("nope", Value::Null).unwrap_err();
        assert_eq!(err.code, ctl::wire::codes::METHOD_NOT_FOUND);
    }
}
