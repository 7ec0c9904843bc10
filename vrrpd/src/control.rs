//! The control socket's daemon-specific methods: parsed here, answered by the
//! event loop (which owns the state machines) through a channel.

use serde::Deserialize;
use serde_json::Value;
use tokio::sync::mpsc;

use ctl::wire::{decode_params, ReplyError};

/// Method names vrrpd answers besides the built-in ones.
pub mod methods {
    /// Per group and instance status.
    pub const STATUS: &str = ctl::methods::STATUS;
    /// Re-read cluster.toml and apply the difference.
    pub const RELOAD: &str = ctl::methods::RELOAD;
    /// Release a MASTER group and time the peer's takeover.
    pub const DRILL_FAILOVER: &str = "drill.failover";
    /// Hold a group in FAULT for some seconds.
    pub const DRILL_FAULT: &str = "drill.fault";
    /// Hold groups out of MASTER (or let them back).
    pub const MAINTENANCE: &str = "maintenance";
    /// Override the file's priority of an instance or a group (kept until
    /// `priority.clear`, across reloads and restarts).
    pub const PRIORITY_SET: &str = "priority.set";
    /// The priority overrides and maintenance in effect, and the state file.
    pub const PRIORITY_LIST: &str = "priority.list";
    /// Remove priority overrides: the file's priority applies again.
    pub const PRIORITY_CLEAR: &str = "priority.clear";
    /// Replace one source's priority deltas (lbd's service quorums).
    pub const TRACK_SET: &str = "track.set";
}

/// Parameters of `drill.failover`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailoverParams {
    /// The group (default: the only one, or the one this node is MASTER of).
    #[serde(default)]
    pub group: Option<String>,
}

/// Parameters of `drill.fault`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultParams {
    /// The group (default: every group).
    #[serde(default)]
    pub group: Option<String>,
    /// How long to hold FAULT.
    #[serde(default = "default_fault_seconds")]
    pub seconds: u32,
}

fn default_fault_seconds() -> u32 {
    10
}

/// Parameters of `maintenance`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceParams {
    /// On or off.
    pub on: bool,
    /// The group (default: every group).
    #[serde(default)]
    pub group: Option<String>,
}

/// Parameters of `priority.set`: exactly one of `instance` and `group`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorityParams {
    /// One instance.
    #[serde(default)]
    pub instance: Option<String>,
    /// Every member of a group.
    #[serde(default)]
    pub group: Option<String>,
    /// The new configured priority, 1..=255.
    pub priority: u8,
}

/// Parameters of `priority.clear`: exactly one of `instance`, `group`, `all`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorityClearParams {
    /// One instance.
    #[serde(default)]
    pub instance: Option<String>,
    /// Every member of a group.
    #[serde(default)]
    pub group: Option<String>,
    /// Every override.
    #[serde(default)]
    pub all: bool,
}

/// Parameters of `track.set`: the complete list of one source.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackParams {
    /// Who sends it (such as `lbd`); its previous list is replaced.
    pub source: String,
    /// Every entry of the source (empty: it has none).
    pub tracks: Vec<TrackEntry>,
    /// Hold back preemption, for this reason (lbd: it lacks the peer's connection
    /// state); absent or null: the source does not hold it.
    #[serde(default)]
    pub preempt_hold: Option<String>,
}

/// One tracked object's effect on a sync group's priority.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrackEntry {
    /// The sync group.
    pub group: String,
    /// What is tracked (such as `service web`), unique within the source.
    pub name: String,
    /// Added to the group's priority now (-254..=254; 0 while all is well).
    pub weight_delta: i16,
}

/// A parsed control request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `status`.
    Status,
    /// `reload`.
    Reload,
    /// `drill.failover`.
    DrillFailover(FailoverParams),
    /// `drill.fault`.
    DrillFault(FaultParams),
    /// `maintenance`.
    Maintenance(MaintenanceParams),
    /// `priority.set`.
    PrioritySet(PriorityParams),
    /// `priority.list`.
    PriorityList,
    /// `priority.clear`.
    PriorityClear(PriorityClearParams),
    /// `track.set`.
    TrackSet(TrackParams),
}

impl Command {
    /// Parses a request; unknown methods and bad parameters are reply errors.
    pub fn parse(method: &str, params: Value) -> Result<Command, ReplyError> {
        // Methods without parameters accept null or {}.
        let empty = |p: &Value| p.is_null() || p.as_object().is_some_and(|o| o.is_empty());
        match method {
            methods::STATUS | methods::PRIORITY_LIST if !empty(&params) => Err(
                ReplyError::invalid_params(format!("{method} takes no parameters")),
            ),
            // `force` is lbd's (a file that drops most services); vrrpd has nothing
            // to guard that way, and takes it so that one command line serves both.
            methods::RELOAD
                if !empty(&params)
                    && !params.as_object().is_some_and(|o| {
                        o.len() == 1 && o.get("force").is_some_and(Value::is_boolean)
                    }) =>
            {
                Err(ReplyError::invalid_params(
                    "reload takes no parameters but {\"force\": bool}",
                ))
            }
            methods::STATUS => Ok(Command::Status),
            methods::RELOAD => Ok(Command::Reload),
            methods::DRILL_FAILOVER => {
                let p = if params.is_null() {
                    FailoverParams::default()
                } else {
                    decode_params(params)?
                };
                Ok(Command::DrillFailover(p))
            }
            methods::DRILL_FAULT => {
                let p: FaultParams = decode_params(params)?;
                if p.seconds == 0 || p.seconds > 3600 {
                    return Err(ReplyError::invalid_params("seconds must be 1..=3600"));
                }
                Ok(Command::DrillFault(p))
            }
            methods::MAINTENANCE => Ok(Command::Maintenance(decode_params(params)?)),
            methods::PRIORITY_SET => {
                let p: PriorityParams = decode_params(params)?;
                if p.instance.is_some() == p.group.is_some() {
                    return Err(ReplyError::invalid_params(
                        "give exactly one of `instance` and `group`",
                    ));
                }
                if p.priority == 0 {
                    return Err(ReplyError::invalid_params(
                        "priority must be 1..=255 (0 is the release advert)",
                    ));
                }
                Ok(Command::PrioritySet(p))
            }
            methods::PRIORITY_LIST => Ok(Command::PriorityList),
            methods::PRIORITY_CLEAR => {
                let p: PriorityClearParams = decode_params(params)?;
                let given = [p.instance.is_some(), p.group.is_some(), p.all];
                if given.iter().filter(|g| **g).count() != 1 {
                    return Err(ReplyError::invalid_params(
                        "give exactly one of `instance`, `group` and `all`",
                    ));
                }
                Ok(Command::PriorityClear(p))
            }
            methods::TRACK_SET => {
                let p: TrackParams = decode_params(params)?;
                if p.source.is_empty() {
                    return Err(ReplyError::invalid_params("source must not be empty"));
                }
                if let Some(t) = p
                    .tracks
                    .iter()
                    .find(|t| !(-254..=254).contains(&t.weight_delta))
                {
                    return Err(ReplyError::invalid_params(format!(
                        "weight_delta {} of {:?} is outside -254..=254",
                        t.weight_delta, t.name
                    )));
                }
                Ok(Command::TrackSet(p))
            }
            other => Err(ReplyError::method_not_found(other)),
        }
    }
}

/// A request on its way to the daemon loop, with where to send the answer.
pub type ControlRequest = ctl::Forwarded<Command>;

/// vrrpd's [`ctl::RequestHandler`]: parses, forwards to the loop, waits.
pub type ControlHandler = ctl::Forwarder<Command>;

/// The handler of vrrpd's control socket, forwarding to `requests`.
pub fn control_handler(requests: mpsc::Sender<ControlRequest>) -> ControlHandler {
    ctl::Forwarder::new("vrrpd", Command::parse, requests)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_each_method_and_refuses_bad_parameters() {
        assert_eq!(Command::parse("status", Value::Null), Ok(Command::Status));
        assert_eq!(Command::parse("reload", json!({})), Ok(Command::Reload));
        assert!(Command::parse("status", json!({"x": 1})).is_err());
        assert_eq!(
            Command::parse("drill.failover", Value::Null),
            Ok(Command::DrillFailover(FailoverParams { group: None }))
        );
        assert_eq!(
            Command::parse("drill.fault", json!({"group": "edge"})),
            Ok(Command::DrillFault(FaultParams {
                group: Some("edge".into()),
                seconds: 10
            }))
        );
        assert!(Command::parse("drill.fault", json!({"seconds": 0})).is_err());
        assert_eq!(
            Command::parse("maintenance", json!({"on": true})),
            Ok(Command::Maintenance(MaintenanceParams {
                on: true,
                group: None
            }))
        );
        assert!(Command::parse("maintenance", json!({})).is_err());
        assert!(Command::parse("priority.set", json!({"priority": 10})).is_err());
        assert!(Command::parse(
            "priority.set",
            json!({"instance": "a", "group": "g", "priority": 10})
        )
        .is_err());
        assert!(Command::parse("priority.set", json!({"group": "g", "priority": 0})).is_err());
        assert!(Command::parse("priority.set", json!({"group": "g", "priority": 256})).is_err());
        assert_eq!(
            Command::parse("priority.set", json!({"group": "g", "priority": 200})),
            Ok(Command::PrioritySet(PriorityParams {
                instance: None,
                group: Some("g".into()),
                priority: 200
            }))
        );
        assert_eq!(
            Command::parse("priority.list", Value::Null),
            Ok(Command::PriorityList)
        );
        assert!(Command::parse("priority.list", json!({"all": true})).is_err());
        assert_eq!(
            Command::parse("priority.clear", json!({"all": true})),
            Ok(Command::PriorityClear(PriorityClearParams {
                all: true,
                ..Default::default()
            }))
        );
        assert!(Command::parse("priority.clear", json!({})).is_err());
        assert!(Command::parse("priority.clear", json!({"all": false})).is_err());
        assert!(Command::parse("priority.clear", json!({"all": true, "group": "g"})).is_err());
        let err = Command::parse("nope", Value::Null).unwrap_err();
        assert_eq!(err.code, ctl::wire::codes::METHOD_NOT_FOUND);
    }

    #[test]
    fn parses_track_set() {
        let p = Command::parse(
            "track.set",
            json!({"source": "lbd", "tracks": [{"group": "edge", "name": "service web", "weight_delta": -60}]}),
        );
        assert_eq!(
            p,
            Ok(Command::TrackSet(TrackParams {
                source: "lbd".into(),
                tracks: vec![TrackEntry {
                    group: "edge".into(),
                    name: "service web".into(),
                    weight_delta: -60
                }],
                preempt_hold: None,
            }))
        );
        assert!(matches!(
            Command::parse(
                "track.set",
                json!({"source": "lbd", "tracks": [], "preempt_hold": "no dump yet"})
            ),
            Ok(Command::TrackSet(TrackParams { preempt_hold: Some(ref r), .. })) if r == "no dump yet"
        ));
        assert!(Command::parse("track.set", json!({"source": "", "tracks": []})).is_err());
        assert!(Command::parse("track.set", json!({"source": "lbd"})).is_err());
        assert!(Command::parse(
            "track.set",
            json!({"source": "lbd", "tracks": [{"group": "g", "name": "n", "weight_delta": 300}]})
        )
        .is_err());
    }
}
