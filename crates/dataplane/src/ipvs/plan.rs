//! Desired state → IPVS objects, and the operations that turn what the kernel holds
//! into them. Pure: no kernel, so every rule is unit-tested on plain data.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ::ipvs::{Destination, Forward, Service as IpvsService};

use super::error::IpvsBackendError;
use crate::model::{Backend, Forwarding, Persistence, PortSpec, Protocol, Scheduler, Service};
use crate::{ApplyReport, DataplaneError, DesiredState};

/// The largest weight IPVS takes (the kernel reads it as a signed int).
pub const MAX_WEIGHT: u32 = i32::MAX as u32;

/// What the kernel keys a (non-fwmark) IPVS service by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// VIP and port.
    pub addr: SocketAddr,
}

impl ServiceKey {
    /// The key of a kernel service; `None` for fwmark and SCTP services, which this
    /// backend never creates and so never owns.
    pub fn of(svc: &IpvsService) -> Option<ServiceKey> {
        if svc.fwmark != 0 {
            return None;
        }
        let protocol = match svc.protocol {
            ::ipvs::Protocol::Tcp => Protocol::Tcp,
            ::ipvs::Protocol::Udp => Protocol::Udp,
            ::ipvs::Protocol::Sctp => return None,
        };
        Some(ServiceKey {
            protocol,
            addr: SocketAddr::new(svc.addr, svc.port),
        })
    }

    /// Parses the `Display` form (`tcp 198.18.0.100:80`, `udp [2001:db8::1]:53`).
    pub fn parse(s: &str) -> Option<ServiceKey> {
        let (proto, addr) = s.trim().split_once(' ')?;
        let protocol = match proto {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            _ => return None,
        };
        Some(ServiceKey {
            protocol,
            addr: addr.trim().parse().ok()?,
        })
    }

    /// A bare kernel service with this key (enough to delete it).
    pub fn to_service(self) -> IpvsService {
        IpvsService::new(ipvs_protocol(self.protocol), self.addr, "rr")
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.protocol, self.addr)
    }
}

/// One service as the kernel should hold it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WantedService {
    /// Service name (for errors and counters).
    pub name: String,
    /// The kernel service, settings included.
    pub service: IpvsService,
    /// Real servers with the backend names they come from.
    pub dests: Vec<(String, Destination)>,
}

impl WantedService {
    /// The kernel key.
    pub fn key(&self) -> ServiceKey {
        ServiceKey::of(&self.service).unwrap_or(ServiceKey {
            protocol: Protocol::Tcp,
            addr: SocketAddr::new(self.service.addr, self.service.port),
        })
    }
}

/// A service as read from the kernel, with its real servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentService {
    /// The kernel service.
    pub service: IpvsService,
    /// Its real servers.
    pub dests: Vec<Destination>,
}

impl CurrentService {
    /// The service as the kernel holds it once `w` is applied.
    pub fn of_wanted(w: &WantedService) -> CurrentService {
        CurrentService {
            service: w.service.clone(),
            dests: w.dests.iter().map(|(_, d)| d.clone()).collect(),
        }
    }
}

/// One change to the kernel's IPVS table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Add a service.
    AddService(IpvsService),
    /// Change a service's scheduler, flags or persistence.
    EditService(IpvsService),
    /// Delete a service (and its real servers).
    DelService(IpvsService),
    /// Add a real server.
    AddDest(IpvsService, Destination),
    /// Change a real server's weight, forwarding or thresholds.
    EditDest(IpvsService, Destination),
    /// Delete a real server.
    DelDest(IpvsService, Destination),
}

impl Op {
    /// The service the operation is about.
    pub fn service(&self) -> &IpvsService {
        match self {
            Op::AddService(s) | Op::EditService(s) | Op::DelService(s) => s,
            Op::AddDest(s, _) | Op::EditDest(s, _) | Op::DelDest(s, _) => s,
        }
    }

    /// Whether it changes a service (rather than a real server).
    pub fn is_service_op(&self) -> bool {
        matches!(
            self,
            Op::AddService(_) | Op::EditService(_) | Op::DelService(_)
        )
    }
}

/// Counts `ops` in `report`: in the desired state's terms (an added service's real
/// servers are added with it, a deleted one's go with it) and as IPVS operations.
pub fn count(ops: &[Op], report: &mut ApplyReport) {
    for op in ops {
        let (counts, kernel) = match op {
            Op::AddService(_) | Op::EditService(_) | Op::DelService(_) => {
                (&mut report.services, &mut report.kernel.ipvs.services)
            }
            Op::AddDest(..) | Op::EditDest(..) | Op::DelDest(..) => {
                (&mut report.servers, &mut report.kernel.ipvs.destinations)
            }
        };
        *kernel += 1;
        match op {
            Op::AddService(_) | Op::AddDest(..) => counts.added += 1,
            Op::EditService(_) | Op::EditDest(..) => counts.changed += 1,
            Op::DelService(_) | Op::DelDest(..) => counts.removed += 1,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::AddService(s) => write!(f, "add service {s} {}", s.scheduler),
            Op::EditService(s) => write!(f, "edit service {s} {}", s.scheduler),
            Op::DelService(s) => write!(f, "delete service {s}"),
            Op::AddDest(s, d) => write!(f, "add {d} to {s} weight {}", d.weight),
            Op::EditDest(s, d) => write!(f, "edit {d} of {s} weight {}", d.weight),
            Op::DelDest(s, d) => write!(f, "delete {d} of {s}"),
        }
    }
}

fn ipvs_protocol(p: Protocol) -> ::ipvs::Protocol {
    match p {
        Protocol::Tcp => ::ipvs::Protocol::Tcp,
        Protocol::Udp => ::ipvs::Protocol::Udp,
    }
}

/// The IPVS scheduler name for ours (the same name); `None` for those IPVS lacks
/// (its [`Capabilities`](crate::Capabilities) say which: random).
pub fn scheduler_name(s: Scheduler) -> Option<&'static str> {
    crate::BackendKind::Ipvs
        .capabilities()
        .supports_scheduler(s)
        .then(|| s.name())
}

/// Our scheduler for an IPVS scheduler name; `None` for one we never set (fo, ovf,
/// dh, lblc, lblcr).
pub fn scheduler_of_name(name: &str) -> Option<Scheduler> {
    Scheduler::ALL
        .into_iter()
        .find(|&s| scheduler_name(s) == Some(name))
}

/// A kernel service in the desired state's terms: its name and its servers' names
/// from `named` (the last applied services), else their addresses. `None` for what
/// the desired state cannot say: a fwmark or SCTP service, a scheduler we never set,
/// local forwarding.
pub fn applied_service(c: &CurrentService, named: &[WantedService]) -> Option<Service> {
    let key = ServiceKey::of(&c.service)?;
    let scheduler = scheduler_of_name(&c.service.scheduler)?;
    let wanted = named.iter().find(|w| w.key() == key);
    let forward = match c.dests.first().map(|d| d.forward) {
        None | Some(Forward::Masq) => Forwarding::Nat,
        Some(Forward::DirectRoute) => Forwarding::DirectRoute,
        Some(Forward::Tunnel) => Forwarding::Tunnel,
        Some(Forward::Local) => return None,
    };
    let persistence = c
        .service
        .flags
        .contains(::ipvs::ServiceFlags::PERSISTENT)
        .then_some(Persistence {
            timeout_s: c.service.timeout,
            prefix_len: c.service.netmask,
        });
    let backends = c
        .dests
        .iter()
        .map(|d| {
            let name = wanted
                .and_then(|w| {
                    w.dests
                        .iter()
                        .find(|(_, x)| x.addr == d.addr && x.port == d.port)
                })
                .map_or_else(
                    || SocketAddr::new(d.addr, d.port).to_string(),
                    |(n, _)| n.clone(),
                );
            Backend {
                name,
                addr: d.addr,
                port: Some(d.port),
                weight: d.weight,
            }
        })
        .collect();
    Some(Service {
        name: wanted.map_or_else(|| key.to_string(), |w| w.name.clone()),
        vip: key.addr.ip(),
        ports: PortSpec::Single(key.addr.port()),
        protocol: key.protocol,
        scheduler,
        backends,
        forward,
        persistence,
    })
}

fn forward_of(f: Forwarding) -> Forward {
    match f {
        Forwarding::Nat => Forward::Masq,
        Forwarding::DirectRoute => Forward::DirectRoute,
        Forwarding::Tunnel => Forward::Tunnel,
    }
}

/// The kernel services `desired` asks for, validated.
pub fn wanted(desired: &DesiredState) -> Result<Vec<WantedService>, DataplaneError> {
    let mut out: Vec<WantedService> = Vec::with_capacity(desired.services.len());
    let mut keys: BTreeMap<ServiceKey, &str> = BTreeMap::new();
    for s in &desired.services {
        let w = wanted_service(s)?;
        if let Some(first) = keys.insert(w.key(), &s.name) {
            return Err(DataplaneError::DuplicateService {
                first: first.to_owned(),
                second: s.name.clone(),
                key: w.key().to_string(),
            });
        }
        out.push(w);
    }
    Ok(out)
}

fn wanted_service(s: &Service) -> Result<WantedService, DataplaneError> {
    let port = match s.ports {
        PortSpec::Single(p) => p,
        PortSpec::Range(first, last) => {
            return Err(IpvsBackendError::PortRange {
                service: s.name.clone(),
                first,
                last,
            }
            .into())
        }
    };
    let scheduler =
        scheduler_name(s.scheduler).ok_or_else(|| IpvsBackendError::RandomScheduler {
            service: s.name.clone(),
        })?;
    let mut service = IpvsService::new(
        ipvs_protocol(s.protocol),
        SocketAddr::new(s.vip, port),
        scheduler,
    );
    if let Some(p) = s.persistence {
        let max = if s.vip.is_ipv4() { 32 } else { 128 };
        if p.timeout_s == 0 {
            return Err(IpvsBackendError::BadPersistence {
                service: s.name.clone(),
                what: "timeout 0 means none: give a timeout of at least 1 s, or no persistence"
                    .into(),
            }
            .into());
        }
        if p.prefix_len == 0 || p.prefix_len > max {
            return Err(IpvsBackendError::BadPersistence {
                service: s.name.clone(),
                what: format!(
                    "prefix length /{} is outside 1..={max} for {}",
                    p.prefix_len, s.vip
                ),
            }
            .into());
        }
        service = service.with_persistence(p.timeout_s, p.prefix_len);
    }
    let forward = forward_of(s.forward);
    let mut dests: Vec<(String, Destination)> = Vec::with_capacity(s.backends.len());
    for b in &s.backends {
        // Only a tunnel carries one family inside the other.
        if b.addr.is_ipv4() != s.vip.is_ipv4() && s.forward != Forwarding::Tunnel {
            return Err(DataplaneError::FamilyMismatch {
                owner: format!("service {} backend {}", s.name, b.name),
                addr: b.addr,
                vip: s.vip,
            });
        }
        let dport = b.port.unwrap_or(port);
        if dport != port && s.forward != Forwarding::Nat {
            return Err(IpvsBackendError::PortChangeWithoutNat {
                service: s.name.clone(),
                backend: b.name.clone(),
                port: dport,
                service_port: port,
                forward: s.forward.name(),
            }
            .into());
        }
        if b.weight > MAX_WEIGHT {
            return Err(IpvsBackendError::WeightTooLarge {
                service: s.name.clone(),
                backend: b.name.clone(),
                weight: b.weight,
                max: MAX_WEIGHT,
            }
            .into());
        }
        let dest = Destination::new(SocketAddr::new(b.addr, dport), forward).with_weight(b.weight);
        if let Some((first, _)) = dests
            .iter()
            .find(|(_, d)| d.addr == dest.addr && d.port == dest.port)
        {
            return Err(IpvsBackendError::DuplicateBackend {
                service: s.name.clone(),
                first: first.clone(),
                second: b.name.clone(),
                addr: dest.to_string(),
            }
            .into());
        }
        dests.push((b.name.clone(), dest));
    }
    Ok(WantedService {
        name: s.name.clone(),
        service,
        dests,
    })
}

/// Which kernel services an apply may delete: those it recorded as created that the
/// desired state no longer has. Anything else absent from the desired state (added
/// by hand, by keepalived, by another lbd) is left alone.
pub fn deletable(
    current: &[CurrentService],
    wanted: &[WantedService],
    owned: &BTreeSet<ServiceKey>,
) -> Vec<IpvsService> {
    let wanted_keys: BTreeSet<ServiceKey> = wanted.iter().map(WantedService::key).collect();
    current
        .iter()
        .filter(|c| {
            ServiceKey::of(&c.service)
                .is_some_and(|k| owned.contains(&k) && !wanted_keys.contains(&k))
        })
        .map(|c| c.service.clone())
        .collect()
}

/// The operations that make the kernel hold `wanted`, touching only what differs:
/// owned services no longer wanted are deleted first; then each wanted service is
/// added, or edited if its settings differ, and its real servers are deleted, edited
/// and added to match. A wanted service the kernel already holds is adopted (the
/// configuration claims its VIP, port and protocol), real servers included.
pub fn plan(
    wanted: &[WantedService],
    current: &[CurrentService],
    owned: &BTreeSet<ServiceKey>,
) -> Vec<Op> {
    let mut ops: Vec<Op> = deletable(current, wanted, owned)
        .into_iter()
        .map(Op::DelService)
        .collect();
    let by_key: BTreeMap<ServiceKey, &CurrentService> = current
        .iter()
        .filter_map(|c| ServiceKey::of(&c.service).map(|k| (k, c)))
        .collect();
    for w in wanted {
        let Some(cur) = by_key.get(&w.key()) else {
            ops.push(Op::AddService(w.service.clone()));
            ops.extend(
                w.dests
                    .iter()
                    .map(|(_, d)| Op::AddDest(w.service.clone(), d.clone())),
            );
            continue;
        };
        if !same_settings(&cur.service, &w.service) {
            ops.push(Op::EditService(w.service.clone()));
        }
        let want: BTreeMap<(IpAddr, u16), &Destination> =
            w.dests.iter().map(|(_, d)| ((d.addr, d.port), d)).collect();
        let have: BTreeMap<(IpAddr, u16), &Destination> =
            cur.dests.iter().map(|d| ((d.addr, d.port), d)).collect();
        for (k, d) in &have {
            if !want.contains_key(k) {
                ops.push(Op::DelDest(w.service.clone(), (*d).clone()));
            }
        }
        for (_, d) in &w.dests {
            match have.get(&(d.addr, d.port)) {
                Some(h) if *h == d => {}
                Some(_) => ops.push(Op::EditDest(w.service.clone(), d.clone())),
                None => ops.push(Op::AddDest(w.service.clone(), d.clone())),
            }
        }
    }
    ops
}

/// Scheduler, flags and persistence equal (the key is already equal).
fn same_settings(a: &IpvsService, b: &IpvsService) -> bool {
    a.scheduler == b.scheduler
        && a.flags == b.flags
        && a.timeout == b.timeout
        && a.netmask == b.netmask
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Backend, Persistence};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn backend(name: &str, addr: &str, weight: u32) -> Backend {
        Backend {
            name: name.into(),
            addr: ip(addr),
            port: Some(80),
            weight,
        }
    }

    fn web(scheduler: Scheduler) -> Service {
        Service {
            name: "web".into(),
            vip: ip("198.18.0.100"),
            ports: PortSpec::Single(80),
            protocol: Protocol::Tcp,
            scheduler,
            backends: vec![
                backend("srv1", "198.18.1.21", 1),
                backend("srv2", "198.18.1.22", 2),
            ],
            forward: Forwarding::Nat,
            persistence: None,
        }
    }

    fn state(services: Vec<Service>) -> DesiredState {
        DesiredState {
            services,
            snat: Vec::new(),
        }
    }

    /// The kernel holding exactly `wanted`.
    fn as_current(wanted: &[WantedService]) -> Vec<CurrentService> {
        wanted.iter().map(CurrentService::of_wanted).collect()
    }

    #[test]
    fn read_back_in_desired_terms_diffs_against_the_desired_state() {
        let mut sticky = web(Scheduler::Wrr);
        sticky.persistence = Some(crate::Persistence {
            timeout_s: 300,
            prefix_len: 24,
        });
        let desired = state(vec![sticky]);
        let w = wanted(&desired).unwrap();
        // The kernel holding exactly what was applied reads back as the desired state.
        let held: Vec<Service> = as_current(&w)
            .iter()
            .filter_map(|c| applied_service(c, &w))
            .collect();
        assert_eq!(crate::diff_services(&desired.services, &held), Vec::new());
        assert_eq!(held[0].backends[1].name, "srv2");
        // Someone changes srv2's weight and the scheduler behind our back (ipvsadm -e).
        let mut changed = as_current(&w);
        changed[0].service.scheduler = "wlc".into();
        changed[0].dests[1].weight = 7;
        let held: Vec<Service> = changed
            .iter()
            .filter_map(|c| applied_service(c, &w))
            .collect();
        let drift: Vec<String> = crate::diff_services(&desired.services, &held)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            drift,
            vec![
                "service web: scheduler wlc held, wrr wanted",
                "service web: server srv2 has weight 7, 2 wanted",
            ]
        );
        // A scheduler we never set cannot be said in our terms: the service is missing.
        changed[0].service.scheduler = "fo".into();
        assert_eq!(applied_service(&changed[0], &w), None);
    }

    fn key(s: &str) -> ServiceKey {
        ServiceKey::parse(s).unwrap()
    }

    #[test]
    fn translates_scheduler_forwarding_weights_and_persistence() {
        let mut s = web(Scheduler::Wlc);
        s.forward = Forwarding::DirectRoute;
        s.backends[1].port = None;
        s.persistence = Some(Persistence {
            timeout_s: 300,
            prefix_len: 24,
        });
        let w = wanted(&state(vec![s])).unwrap();
        assert_eq!(w.len(), 1);
        let svc = &w[0].service;
        assert_eq!(svc.to_string(), "tcp 198.18.0.100:80");
        assert_eq!(svc.scheduler, "wlc");
        assert!(svc.flags.contains(::ipvs::ServiceFlags::PERSISTENT));
        assert_eq!((svc.timeout, svc.netmask), (300, 24));
        let dests: Vec<(String, String, Forward, u32)> = w[0]
            .dests
            .iter()
            .map(|(n, d)| (n.clone(), d.to_string(), d.forward, d.weight))
            .collect();
        assert_eq!(
            dests,
            vec![
                (
                    "srv1".into(),
                    "198.18.1.21:80".into(),
                    Forward::DirectRoute,
                    1
                ),
                (
                    "srv2".into(),
                    "198.18.1.22:80".into(),
                    Forward::DirectRoute,
                    2
                ),
            ]
        );
    }

    #[test]
    fn every_ipvs_scheduler_maps_to_its_kernel_name() {
        for (s, name) in [
            (Scheduler::Rr, "rr"),
            (Scheduler::Wrr, "wrr"),
            (Scheduler::Lc, "lc"),
            (Scheduler::Wlc, "wlc"),
            (Scheduler::Sh, "sh"),
            (Scheduler::Mh, "mh"),
            (Scheduler::Sed, "sed"),
            (Scheduler::Nq, "nq"),
        ] {
            let w = wanted(&state(vec![web(s)])).unwrap();
            assert_eq!(w[0].service.scheduler, name);
        }
    }

    #[test]
    fn refusals_name_the_service_and_the_fix() {
        let err = wanted(&state(vec![web(Scheduler::Random)])).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("service web") && text.contains("rr or wrr"),
            "{text}"
        );

        let mut s = web(Scheduler::Rr);
        s.ports = PortSpec::Range(8000, 8010);
        let text = wanted(&state(vec![s])).unwrap_err().to_string();
        assert!(
            text.contains("8000-8010") && text.contains("nft backend"),
            "{text}"
        );

        let mut s = web(Scheduler::Rr);
        s.forward = Forwarding::DirectRoute;
        s.backends[0].port = Some(8080);
        let text = wanted(&state(vec![s])).unwrap_err().to_string();
        assert!(
            text.contains("srv1 has port 8080") && text.contains("mode dr"),
            "{text}"
        );

        let mut s = web(Scheduler::Rr);
        s.backends[1].addr = ip("198.18.1.21");
        let text = wanted(&state(vec![s])).unwrap_err().to_string();
        assert!(
            text.contains("srv1 and srv2 are both 198.18.1.21:80"),
            "{text}"
        );

        let mut s = web(Scheduler::Rr);
        s.persistence = Some(Persistence {
            timeout_s: 60,
            prefix_len: 33,
        });
        let text = wanted(&state(vec![s])).unwrap_err().to_string();
        assert!(text.contains("/33"), "{text}");

        let mut s = web(Scheduler::Rr);
        s.backends[0].addr = ip("2001:db8::21");
        assert!(matches!(
            wanted(&state(vec![s.clone()])),
            Err(DataplaneError::FamilyMismatch { .. })
        ));
        // A tunnel may carry IPv4 in IPv6.
        s.forward = Forwarding::Tunnel;
        assert!(wanted(&state(vec![s])).is_ok());

        let text = wanted(&state(vec![web(Scheduler::Rr), web(Scheduler::Wrr)]))
            .unwrap_err()
            .to_string();
        assert!(text.contains("tcp 198.18.0.100:80"), "{text}");
    }

    #[test]
    fn the_declared_capabilities_refuse_what_the_plan_refuses() {
        let caps = crate::BackendKind::Ipvs.capabilities();
        let fine = state(vec![web(Scheduler::Wlc)]);
        assert_eq!(caps.refusal(&fine), None);
        wanted(&fine).unwrap();
        let mut range = web(Scheduler::Wrr);
        range.ports = PortSpec::Range(8000, 8010);
        for b in &mut range.backends {
            b.port = None;
        }
        for s in [state(vec![web(Scheduler::Random)]), state(vec![range])] {
            let why = caps.refusal(&s).unwrap();
            let err = wanted(&s).unwrap_err();
            assert!(why.contains("random") || why.contains("8000-8010"), "{why}");
            assert!(
                err.to_string().contains("random") || err.to_string().contains("8000-8010"),
                "{err}"
            );
        }
    }

    #[test]
    fn from_nothing_adds_services_then_their_destinations() {
        let w = wanted(&state(vec![web(Scheduler::Rr)])).unwrap();
        let ops: Vec<String> = plan(&w, &[], &BTreeSet::new())
            .iter()
            .map(Op::to_string)
            .collect();
        assert_eq!(
            ops,
            vec![
                "add service tcp 198.18.0.100:80 rr",
                "add 198.18.1.21:80 to tcp 198.18.0.100:80 weight 1",
                "add 198.18.1.22:80 to tcp 198.18.0.100:80 weight 2",
            ]
        );
    }

    #[test]
    fn the_same_state_plans_nothing() {
        let w = wanted(&state(vec![web(Scheduler::Rr)])).unwrap();
        let owned = BTreeSet::from([w[0].key()]);
        assert_eq!(plan(&w, &as_current(&w), &owned), vec![]);
    }

    #[test]
    fn a_weight_change_edits_that_destination_only() {
        let before = wanted(&state(vec![web(Scheduler::Wrr)])).unwrap();
        let mut s = web(Scheduler::Wrr);
        s.backends[1].weight = 0;
        let after = wanted(&state(vec![s])).unwrap();
        let ops = plan(&after, &as_current(&before), &BTreeSet::new());
        assert_eq!(
            ops.iter().map(Op::to_string).collect::<Vec<_>>(),
            vec!["edit 198.18.1.22:80 of tcp 198.18.0.100:80 weight 0"]
        );
    }

    #[test]
    fn a_removed_backend_deletes_that_destination_only() {
        let before = wanted(&state(vec![web(Scheduler::Rr)])).unwrap();
        let mut s = web(Scheduler::Rr);
        s.backends.remove(0);
        let after = wanted(&state(vec![s])).unwrap();
        let ops = plan(&after, &as_current(&before), &BTreeSet::new());
        assert_eq!(
            ops.iter().map(Op::to_string).collect::<Vec<_>>(),
            vec!["delete 198.18.1.21:80 of tcp 198.18.0.100:80"]
        );
    }

    /// `vrrpctl server drain` then `enable` (weight 0 and back), and `disable` with
    /// `inhibit_on_failure = false` then `enable` (deleted and back): each a
    /// change of that destination alone, the other one untouched.
    #[test]
    fn a_drained_destination_returns_by_an_edit_and_a_removed_one_by_an_add() {
        let configured = wanted(&state(vec![web(Scheduler::Wrr)])).unwrap();
        let mut s = web(Scheduler::Wrr);
        s.backends[1].weight = 0;
        let drained = wanted(&state(vec![s])).unwrap();
        let ops = plan(&configured, &as_current(&drained), &BTreeSet::new());
        assert_eq!(
            ops.iter().map(Op::to_string).collect::<Vec<_>>(),
            vec!["edit 198.18.1.22:80 of tcp 198.18.0.100:80 weight 2"]
        );
        let mut s = web(Scheduler::Wrr);
        s.backends.remove(1);
        let removed = wanted(&state(vec![s])).unwrap();
        let ops = plan(&configured, &as_current(&removed), &BTreeSet::new());
        assert_eq!(
            ops.iter().map(Op::to_string).collect::<Vec<_>>(),
            vec!["add 198.18.1.22:80 to tcp 198.18.0.100:80 weight 2"]
        );
    }

    #[test]
    fn a_scheduler_or_persistence_change_edits_the_service_only() {
        let before = wanted(&state(vec![web(Scheduler::Rr)])).unwrap();
        let mut s = web(Scheduler::Sh);
        s.persistence = Some(Persistence {
            timeout_s: 60,
            prefix_len: 32,
        });
        let after = wanted(&state(vec![s])).unwrap();
        let ops = plan(&after, &as_current(&before), &BTreeSet::new());
        assert_eq!(ops.len(), 1, "{ops:?}");
        assert!(matches!(&ops[0], Op::EditService(s) if s.scheduler == "sh" && s.timeout == 60));
    }

    #[test]
    fn a_forwarding_change_edits_every_destination() {
        let before = wanted(&state(vec![web(Scheduler::Rr)])).unwrap();
        let mut s = web(Scheduler::Rr);
        s.forward = Forwarding::Tunnel;
        let after = wanted(&state(vec![s])).unwrap();
        let ops = plan(&after, &as_current(&before), &BTreeSet::new());
        assert_eq!(ops.len(), 2);
        assert!(ops
            .iter()
            .all(|o| matches!(o, Op::EditDest(_, d) if d.forward == Forward::Tunnel)));
    }

    #[test]
    fn services_not_wanted_are_deleted_only_when_owned() {
        let mine = wanted(&state(vec![web(Scheduler::Rr)])).unwrap();
        let mut by_hand = web(Scheduler::Wlc);
        by_hand.vip = ip("198.18.0.200");
        let by_hand = wanted(&state(vec![by_hand])).unwrap();
        let mut current = as_current(&mine);
        current.extend(as_current(&by_hand));
        let nothing: Vec<WantedService> = Vec::new();

        // Owned: deleted. Not owned (added by hand): untouched.
        let owned = BTreeSet::from([key("tcp 198.18.0.100:80")]);
        let ops = plan(&nothing, &current, &owned);
        assert_eq!(
            ops.iter().map(Op::to_string).collect::<Vec<_>>(),
            vec!["delete service tcp 198.18.0.100:80"]
        );
        // An empty record owns nothing: a restart that lost it deletes nothing.
        assert_eq!(plan(&nothing, &current, &BTreeSet::new()), vec![]);
    }

    #[test]
    fn a_wanted_service_already_in_the_kernel_is_adopted_and_corrected() {
        // Someone made tcp 198.18.0.100:80 by hand with wlc and a stray real server.
        let mut theirs = wanted(&state(vec![web(Scheduler::Wlc)])).unwrap();
        theirs[0].dests.push((
            "stray".into(),
            Destination::new("198.18.1.99:80".parse().unwrap(), Forward::Masq),
        ));
        let mine = wanted(&state(vec![web(Scheduler::Rr)])).unwrap();
        let ops = plan(&mine, &as_current(&theirs), &BTreeSet::new());
        assert_eq!(
            ops.iter().map(Op::to_string).collect::<Vec<_>>(),
            vec![
                "edit service tcp 198.18.0.100:80 rr",
                "delete 198.18.1.99:80 of tcp 198.18.0.100:80",
            ]
        );
    }

    #[test]
    fn fwmark_and_sctp_services_are_never_keys_so_never_deleted() {
        let fw = ::ipvs::Service::fwmark(::ipvs::Family::V4, 7, "rr");
        let sctp = ::ipvs::Service::new(
            ::ipvs::Protocol::Sctp,
            "198.18.0.100:80".parse().unwrap(),
            "rr",
        );
        assert_eq!(ServiceKey::of(&fw), None);
        assert_eq!(ServiceKey::of(&sctp), None);
        let current = vec![
            CurrentService {
                service: fw,
                dests: vec![],
            },
            CurrentService {
                service: sctp,
                dests: vec![],
            },
        ];
        let owned = BTreeSet::from([key("tcp 198.18.0.100:80")]);
        assert_eq!(plan(&[], &current, &owned), vec![]);
    }

    #[test]
    fn keys_print_and_parse_back() {
        for s in ["tcp 198.18.0.100:80", "udp [2001:db8::1]:53"] {
            assert_eq!(key(s).to_string(), s);
        }
        assert_eq!(ServiceKey::parse("sctp 198.18.0.1:1"), None);
        assert_eq!(ServiceKey::parse("tcp 198.18.0.1"), None);
    }
}
