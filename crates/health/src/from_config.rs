//! Targets from the cluster configuration (`config` crate).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use config::{Check, RealServer, Service};

use crate::schedule::Dampening;
use crate::target::{CheckSpec, Target, TargetDampening, TargetName};

/// The target for `server` of `service` checked by `check`, leaving from
/// `source`. The port is the check's, else the server's, else (port-range
/// services) the first port of the service's range.
pub fn target_from_config(
    service: &Service,
    server: &RealServer,
    check: &Check,
    source: Option<IpAddr>,
) -> Target {
    let name = TargetName::new(&service.name, &server.name);
    target_with_spec(
        name,
        service,
        server,
        check,
        Arc::new(check_spec(check)),
        source,
    )
}

fn target_with_spec(
    name: TargetName,
    service: &Service,
    server: &RealServer,
    check: &Check,
    spec: Arc<CheckSpec>,
    source: Option<IpAddr>,
) -> Target {
    let port = check.port.or(server.port).unwrap_or(service.ports.start);
    Target {
        name,
        address: SocketAddr::new(server.address, port),
        source,
        check: spec,
    }
}

/// How `check` probes, and how often.
pub fn check_spec(check: &Check) -> CheckSpec {
    CheckSpec {
        probe: check.kind.clone(),
        interval: Duration::from_millis(u64::from(check.interval_ms)),
        timeout: Duration::from_millis(u64::from(check.timeout_ms)),
        rise: check.rise,
        fall: check.fall,
        jitter_permille: Some(u16::from(check.jitter_percent) * 10),
        dampening: match check.dampening {
            None => TargetDampening::Off,
            Some(d) => TargetDampening::Limit(Dampening {
                max_transitions: d.max_transitions,
                window: Duration::from_millis(u64::from(d.window_ms)),
                hold: Duration::from_millis(u64::from(d.hold_ms)),
            }),
        },
    }
}

/// Targets for every server that names a check (servers without one are
/// always up and need no target). `source` picks each server's source
/// address, such as this node's own address on the server-side interface.
/// The targets of one check share its spec, and the targets of servers of the same
/// name share one copy of it (a server is often in many services).
pub fn targets_from_config(
    services: &[Service],
    checks: &[Check],
    source: impl Fn(&Service, &RealServer) -> Option<IpAddr>,
) -> Vec<Target> {
    let specs: Vec<Arc<CheckSpec>> = checks.iter().map(|c| Arc::new(check_spec(c))).collect();
    let mut targets = Vec::new();
    let mut server_names: HashMap<&str, Arc<str>> = HashMap::new();
    for service in services {
        let service_name: Arc<str> = Arc::from(service.name.as_str());
        for server in &service.servers {
            let Some(i) = server
                .check
                .as_deref()
                .and_then(|name| checks.iter().position(|c| c.name == name))
            else {
                continue;
            };
            let name = TargetName {
                service: Arc::clone(&service_name),
                server: Arc::clone(
                    server_names
                        .entry(server.name.as_str())
                        .or_insert_with(|| Arc::from(server.name.as_str())),
                ),
            };
            targets.push(target_with_spec(
                name,
                service,
                server,
                &checks[i],
                Arc::clone(&specs[i]),
                source(service, server),
            ));
        }
    }
    targets
}
