//! The backends there are and what each can do: the one place that says so (the
//! configuration's `Scheduler::backends`, which check-config refuses by, is held to
//! it by a test). lbd plans with [`Capabilities`] (turning a mode or persistence a
//! backend lacks into the closest thing it has, with a note; a scheduler it lacks is
//! refused), `auto` selection refuses IPVS with [`Capabilities::refusal`], and the
//! backends' own validation agrees with all of them.

use std::fmt;

use serde::Serialize;

use crate::model::{Forwarding, PortSpec, Scheduler};
use crate::DesiredState;

/// A dataplane backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// The nftables balancer ([`NftBackend`](crate::NftBackend)).
    Nft,
    /// IPVS, with SNAT rules through nftables ([`IpvsBackend`](crate::IpvsBackend)).
    Ipvs,
}

impl BackendKind {
    /// What the backend can do.
    pub fn capabilities(self) -> Capabilities {
        match self {
            BackendKind::Nft => Capabilities {
                least_connection: true,
                queue_schedulers: false,
                non_nat_modes: false,
                persistence: true,
                port_ranges: true,
                random_scheduler: true,
            },
            BackendKind::Ipvs => Capabilities {
                least_connection: true,
                queue_schedulers: true,
                non_nat_modes: true,
                persistence: true,
                port_ranges: false,
                random_scheduler: false,
            },
        }
    }

    /// "nft" or "ipvs" (logs, metrics, status).
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Nft => "nft",
            BackendKind::Ipvs => "ipvs",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a backend can do, declared by the backend ([`Dataplane::capabilities`]).
///
/// [`Dataplane::capabilities`]: crate::Dataplane::capabilities
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// lc and wlc (IPVS: the kernel counts connections per server; nft: lbd feeds
    /// conntrack's counts into the service's slots, `least_conn_slots`).
    pub least_connection: bool,
    /// sed and nq (the expected delay and idle servers of each new connection).
    pub queue_schedulers: bool,
    /// Direct-route and tunnel forwarding.
    pub non_nat_modes: bool,
    /// Persistence with a timeout and a client prefix.
    pub persistence: bool,
    /// A service on a port range.
    pub port_ranges: bool,
    /// The random scheduler.
    pub random_scheduler: bool,
}

impl Capabilities {
    /// Whether the backend implements `s`.
    pub fn supports_scheduler(self, s: Scheduler) -> bool {
        if s.needs_queue_counts() {
            self.queue_schedulers
        } else if s.needs_connection_counts() {
            self.least_connection
        } else if s == Scheduler::Random {
            self.random_scheduler
        } else {
            true
        }
    }

    /// Whether the backend forwards by `f`.
    pub fn supports_forwarding(self, f: Forwarding) -> bool {
        f == Forwarding::Nat || self.non_nat_modes
    }

    /// The first thing in `desired` this backend cannot do, in words ("service web
    /// uses the random scheduler"); `None` when it can hold all of it.
    pub fn refusal(self, desired: &DesiredState) -> Option<String> {
        desired.services.iter().find_map(|s| {
            if !self.supports_scheduler(s.scheduler) {
                Some(format!(
                    "service {} uses the {} scheduler",
                    s.name, s.scheduler
                ))
            } else if let (PortSpec::Range(a, b), false) = (s.ports, self.port_ranges) {
                Some(format!("service {} uses the port range {a}-{b}", s.name))
            } else if !self.supports_forwarding(s.forward) {
                Some(format!("service {} forwards by mode {}", s.name, s.forward))
            } else if s.persistence.is_some() && !self.persistence {
                Some(format!("service {} asks for persistence", s.name))
            } else {
                None
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Protocol, Service};

    fn state(scheduler: Scheduler, ports: PortSpec) -> DesiredState {
        DesiredState {
            services: vec![Service {
                name: "web".into(),
                vip: "198.18.0.100".parse().unwrap(),
                ports,
                protocol: Protocol::Tcp,
                scheduler,
                backends: Vec::new(),
                forward: Forwarding::Nat,
                persistence: None,
            }],
            snat: Vec::new(),
        }
    }

    #[test]
    fn each_backend_refuses_what_only_the_other_does() {
        let ipvs = BackendKind::Ipvs.capabilities();
        let nft = BackendKind::Nft.capabilities();
        let random = state(Scheduler::Random, PortSpec::Single(80));
        let range = state(Scheduler::Wrr, PortSpec::Range(8000, 8010));
        let sed = state(Scheduler::Sed, PortSpec::Single(80));
        let wlc = state(Scheduler::Wlc, PortSpec::Single(80));
        assert_eq!(
            ipvs.refusal(&random).as_deref(),
            Some("service web uses the random scheduler")
        );
        assert_eq!(
            ipvs.refusal(&range).as_deref(),
            Some("service web uses the port range 8000-8010")
        );
        assert_eq!(ipvs.refusal(&sed), None);
        assert_eq!(ipvs.refusal(&wlc), None);
        assert_eq!(nft.refusal(&random), None);
        assert_eq!(nft.refusal(&range), None);
        assert_eq!(nft.refusal(&wlc), None);
        assert_eq!(
            nft.refusal(&sed).as_deref(),
            Some("service web uses the sed scheduler")
        );
    }

    #[test]
    fn the_configuration_knows_which_backend_has_each_scheduler() {
        for scheduler in Scheduler::ALL {
            for (kind, choice) in [
                (BackendKind::Nft, config::BackendChoice::Nft),
                (BackendKind::Ipvs, config::BackendChoice::Ipvs),
            ] {
                assert_eq!(
                    kind.capabilities().supports_scheduler(scheduler),
                    scheduler.backends().contains(&choice),
                    "{kind}, {scheduler}"
                );
            }
        }
        assert_eq!(config::DEFAULT_SCHEDULER.backends().len(), 2);
    }

    #[test]
    fn each_backend_implements_exactly_the_schedulers_it_declares() {
        for scheduler in Scheduler::ALL {
            let desired = state(scheduler, PortSpec::Single(80));
            let nft = crate::nft::layout::plan(&desired, crate::Counting::default());
            assert_eq!(
                nft.is_ok(),
                BackendKind::Nft
                    .capabilities()
                    .supports_scheduler(scheduler),
                "nft, {scheduler}"
            );
            let ipvs = crate::ipvs::plan::wanted(&desired);
            assert_eq!(
                ipvs.is_ok(),
                BackendKind::Ipvs
                    .capabilities()
                    .supports_scheduler(scheduler),
                "ipvs, {scheduler}"
            );
        }
    }
}
