//! Verification: where the kernel differs from a desired state, in the desired
//! state's terms ("service web: server srv1 has weight 3, 5 wanted"), whichever
//! backend holds it. [`diff_services`] compares desired services with services read
//! back ([`AppliedState::services`](crate::AppliedState)); a backend whose read-back
//! cannot say everything (nft's slot maps keep neither weights nor the scheduler's
//! name) compares its own layout too.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::model::{PortSpec, Protocol, Service};

/// One way the kernel differs from the desired state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    /// What it is about: "service web", "snat rules", "table inet lbsuite".
    pub subject: String,
    /// How it differs, one phrase.
    pub what: String,
}

impl Drift {
    /// A drift of `subject`.
    pub fn new(subject: impl Into<String>, what: impl Into<String>) -> Drift {
        Drift {
            subject: subject.into(),
            what: what.into(),
        }
    }
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.subject, self.what)
    }
}

type Key = (Protocol, IpAddr, PortSpec);

fn key(s: &Service) -> Key {
    (s.protocol, s.vip, s.ports)
}

/// A backend's destination port as a kernel holds it: a single-port service's
/// backend without a port gets the service's.
fn backend_port(s: &Service, port: Option<u16>) -> Option<u16> {
    match (port, s.ports) {
        (Some(p), _) => Some(p),
        (None, PortSpec::Single(p)) => Some(p),
        (None, PortSpec::Range(..)) => None,
    }
}

/// Where the services `applied` (as read back) differ from `desired`: services
/// missing or extra, scheduler, forwarding, persistence, and per server: missing,
/// extra, weight. Services are matched by protocol, VIP and ports; servers by
/// address and port. Order does not matter.
pub fn diff_services(desired: &[Service], applied: &[Service]) -> Vec<Drift> {
    let held: BTreeMap<Key, &Service> = applied.iter().map(|s| (key(s), s)).collect();
    let mut out = Vec::new();
    for want in desired {
        let subject = format!("service {}", want.name);
        let Some(have) = held.get(&key(want)) else {
            out.push(Drift::new(
                subject,
                format!("{} {}:{} is not held", want.protocol, want.vip, want.ports),
            ));
            continue;
        };
        let settings = [
            (
                "scheduler",
                have.scheduler.to_string(),
                want.scheduler.to_string(),
            ),
            (
                "forwarding",
                have.forward.to_string(),
                want.forward.to_string(),
            ),
            (
                "persistence",
                format!("{:?}", have.persistence),
                format!("{:?}", want.persistence),
            ),
        ];
        for (what, held, wanted) in settings {
            if held != wanted {
                out.push(Drift::new(
                    &subject,
                    format!("{what} {held} held, {wanted} wanted"),
                ));
            }
        }
        let servers: BTreeMap<(IpAddr, Option<u16>), u32> = have
            .backends
            .iter()
            .map(|b| ((b.addr, backend_port(have, b.port)), b.weight))
            .collect();
        let mut seen = Vec::with_capacity(want.backends.len());
        for b in &want.backends {
            let at = (b.addr, backend_port(want, b.port));
            seen.push(at);
            match servers.get(&at) {
                None => out.push(Drift::new(
                    &subject,
                    format!("server {} ({}) is not held", b.name, b.addr),
                )),
                Some(&w) if w != b.weight => out.push(Drift::new(
                    &subject,
                    format!("server {} has weight {w}, {} wanted", b.name, b.weight),
                )),
                Some(_) => {}
            }
        }
        for b in &have.backends {
            if !seen.contains(&(b.addr, backend_port(have, b.port))) {
                let port = b.port.map(|p| format!(":{p}")).unwrap_or_default();
                out.push(Drift::new(
                    &subject,
                    format!("server {}{port} is held but not wanted", b.addr),
                ));
            }
        }
    }
    let wanted: BTreeMap<Key, ()> = desired.iter().map(|s| (key(s), ())).collect();
    for have in applied {
        if !wanted.contains_key(&key(have)) {
            out.push(Drift::new(
                format!("service {}", have.name),
                format!(
                    "{} {}:{} is held but not wanted",
                    have.protocol, have.vip, have.ports
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Backend, Forwarding, Scheduler};

    fn web(scheduler: Scheduler, weights: &[u32]) -> Service {
        Service {
            name: "web".into(),
            vip: "198.18.0.100".parse().unwrap(),
            ports: PortSpec::Single(80),
            protocol: Protocol::Tcp,
            scheduler,
            backends: weights
                .iter()
                .enumerate()
                .map(|(i, &weight)| Backend {
                    name: format!("srv{}", i + 1),
                    addr: format!("198.18.1.{}", 21 + i).parse().unwrap(),
                    port: None,
                    weight,
                })
                .collect(),
            forward: Forwarding::Nat,
            persistence: None,
        }
    }

    #[test]
    fn the_same_services_in_any_order_and_port_spelling_do_not_differ() {
        let want = web(Scheduler::Wrr, &[1, 2]);
        let mut held = want.clone();
        held.backends.reverse();
        for b in &mut held.backends {
            b.port = Some(80);
        }
        assert_eq!(diff_services(&[want], &[held]), Vec::new());
    }

    /// The drifts of `applied` against `desired`, as sentences.
    fn said(desired: &[Service], applied: &[Service]) -> Vec<String> {
        diff_services(desired, applied)
            .iter()
            .map(Drift::to_string)
            .collect()
    }

    #[test]
    fn weight_scheduler_and_server_set_differences_are_named() {
        let want = web(Scheduler::Wrr, &[1, 2]);
        let mut held = web(Scheduler::Wlc, &[1, 5, 1]);
        held.backends.remove(0);
        assert_eq!(
            said(&[want], &[held]),
            vec![
                "service web: scheduler wlc held, wrr wanted",
                "service web: server srv1 (198.18.1.21) is not held",
                "service web: server srv2 has weight 5, 2 wanted",
                "service web: server 198.18.1.23 is held but not wanted",
            ]
        );
    }

    #[test]
    fn missing_and_extra_services_are_named() {
        let want = web(Scheduler::Rr, &[1]);
        let mut other = web(Scheduler::Rr, &[1]);
        other.name = "dns".into();
        other.protocol = Protocol::Udp;
        assert_eq!(
            said(&[want], &[other]),
            vec![
                "service web: tcp 198.18.0.100:80 is not held",
                "service dns: udp 198.18.0.100:80 is held but not wanted",
            ]
        );
    }
}
