//! From (configuration, health) to the dataplane's desired state. Pure: no I/O, no
//! clock; the daemon calls [`plan`] after every change and hands the result to the
//! backend, which applies the difference.
//!
//! Rules:
//! - a server whose check says Down leaves balancing. With `inhibit_on_failure =
//!   true` (the default) it stays in the service with weight 0: no new
//!   connections, established ones continue, counters kept (nft: no slots; IPVS: a
//!   quiescent destination). With `false` it is removed from the dataplane's
//!   service until it is up again (nft: its slots and counter element go,
//!   established connections still continue through conntrack; IPVS: the
//!   destination is deleted, so its established connections stop);
//! - a server without a check, or whose check has not run yet, counts as up;
//! - a run-time override (`vrrpctl server`, [`Overrides`]) lies over the
//!   configuration: `drain` gives weight 0 and keeps the server in the dataplane
//!   whatever `inhibit_on_failure` says (established connections continue);
//!   `disable` treats it as a failed check would; `weight` replaces the configured
//!   weight while the server is up;
//! - when no server can take traffic (each is down or has weight 0) and the service
//!   has a sorry server, the sorry server gets it;
//! - what the backend cannot do is translated to the closest thing it can, with a
//!   note (shown in `status` and logged).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;

use config::{NatRule, NodeView, PortRange, SnatTarget};
use dataplane::{
    Backend, Capabilities, DesiredState, Persistence, PortSpec, Scheduler, Service, SnatRule,
    SnatSource,
};

/// Backend name of a service's sorry server (parentheses: no configured server name
/// can be mistaken for it in status output).
pub const SORRY_BACKEND: &str = "(sorry)";

pub use ctl::contract::lbd::ServerOverride;

/// Run-time overrides by (service, server).
pub type Overrides = BTreeMap<(String, String), ServerOverride>;

/// What a server does now, health and override together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerState {
    /// Takes new connections.
    Up,
    /// Its check failed.
    Down,
    /// Weight 0 (drained at run time, or weighted 0): no new connections,
    /// established ones continue.
    Drain,
    /// Disabled at run time: out of service as if its check failed.
    Disabled,
}

/// A server's health as lbd uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerHealth {
    /// Its check passes (or has not run yet: servers start up).
    Up,
    /// Its check failed `fall` times.
    Down,
    /// No check configured: always up.
    Unchecked,
}

impl ServerHealth {
    /// Whether the server may take traffic.
    pub fn is_up(self) -> bool {
        self != ServerHealth::Down
    }
}

/// Who serves a service now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Serving {
    /// Its real servers (at least one up with a positive weight).
    Servers,
    /// The sorry server: no real server can take traffic.
    Sorry,
    /// Nobody: no server can take traffic and there is no sorry server.
    Nobody,
    /// The backend cannot forward this service at all (see the notes).
    NotBalanced,
}

/// One server of a planned service, for status and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerPlan {
    /// Server name (one copy per name in a planning: a server is often in many
    /// services).
    #[serde(serialize_with = "shared_str")]
    pub name: Arc<str>,
    /// Address.
    pub address: IpAddr,
    /// Port (`None`: the client's destination port).
    pub port: Option<u16>,
    /// Weight from the configuration.
    pub weight: u32,
    /// Weight given to the dataplane (0 while down).
    pub effective_weight: u32,
    /// Health as used.
    pub health: ServerHealth,
    /// The check's name, if any (one copy of each name, shared by the servers a
    /// planning names it for: 80,000 servers, a handful of checks).
    #[serde(serialize_with = "shared_name")]
    pub check: Option<Arc<str>>,
    /// Whether the dataplane's service holds it (false: down and removed, as
    /// `inhibit_on_failure = false` asks).
    pub in_dataplane: bool,
    /// The run-time override in force.
    pub server_override: Option<ServerOverride>,
    /// What it does now.
    pub state: ServerState,
}

/// A service's quorum as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuorumPlan {
    /// Servers needed.
    pub min: u32,
    /// Servers up with a weight above 0.
    pub up: u32,
    /// `up >= min`.
    pub met: bool,
    /// Priority change asked of vrrpd while lost.
    pub priority_delta: i16,
    /// The sync group holding the VIP (`None`: no group holds it).
    pub group: Option<String>,
}

/// One planned service, for status and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServicePlan {
    /// Service name.
    pub name: String,
    /// VIP.
    pub vip: IpAddr,
    /// Port or range.
    pub ports: String,
    /// "tcp" or "udp".
    pub protocol: &'static str,
    /// Scheduler as configured.
    pub scheduler: &'static str,
    /// Scheduler the dataplane uses (differs when the backend lacks the configured one).
    pub effective_scheduler: &'static str,
    /// Who gets new connections.
    pub serving: Serving,
    /// Real servers.
    pub servers: Vec<ServerPlan>,
    /// The sorry server (address, port), if configured.
    pub sorry_server: Option<(IpAddr, Option<u16>)>,
    /// Quorum, if configured.
    pub quorum: Option<QuorumPlan>,
}

/// The result of planning: the desired state, plus what status needs to explain it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// What the dataplane should hold (shared with the dataplane thread, not copied
    /// for each apply).
    pub state: Arc<DesiredState>,
    /// Per service, in configuration order (shared with the metrics, which render
    /// the per-backend series from it when scraped; each service shared with the
    /// plans before it that did not change it).
    pub services: Arc<Vec<Arc<ServicePlan>>>,
    /// What could not be done as configured, one sentence each.
    pub notes: Vec<String>,
}

/// Plans the desired state of `view`'s services and SNAT rules. `health(service,
/// server)` is consulted only for servers that name a check.
pub fn plan(
    view: &NodeView,
    health: impl Fn(&str, &str) -> ServerHealth,
    caps: Capabilities,
) -> Plan {
    plan_with(view, health, &Overrides::new(), caps)
}

/// [`plan`] with run-time `overrides` over the configuration (entries for
/// servers the configuration lacks are ignored).
pub fn plan_with(
    view: &NodeView,
    health: impl Fn(&str, &str) -> ServerHealth,
    overrides: &Overrides,
    caps: Capabilities,
) -> Plan {
    plan_some(view, |_| true, health, overrides, caps)
}

/// [`plan_with`] of the services `wanted` selects (all the SNAT rules).
pub fn plan_some(
    view: &NodeView,
    wanted: impl Fn(&config::Service) -> bool,
    health: impl Fn(&str, &str) -> ServerHealth,
    overrides: &Overrides,
    caps: Capabilities,
) -> Plan {
    let mut out = Plan::default();
    let mut state = DesiredState::default();
    let mut services = Vec::with_capacity(view.services.len());
    let mut names = Names::new(view);
    for s in view.services.iter().filter(|s| wanted(s)) {
        let (plan, service) = plan_service(
            view,
            s,
            &mut names,
            &health,
            overrides,
            caps,
            &mut out.notes,
        );
        if let Some(service) = service {
            state.services.push(service);
        }
        services.push(Arc::new(plan));
    }
    out.services = Arc::new(services);
    state.snat = view.nat.iter().filter_map(snat_rule).collect();
    out.state = Arc::new(state);
    out
}

/// What [`replan`] changed.
#[derive(Debug, Default)]
pub struct Replanned {
    /// The services planned again: their place and their plan before.
    pub services: Vec<(usize, Arc<ServicePlan>)>,
    /// Whether the desired state changed.
    pub state_changed: bool,
    /// Notes of the services planned again that they did not have before.
    pub notes_added: Vec<String>,
}

/// Plans again, in `plan` (made by [`plan_with`] from a view with the same services
/// in the same order), the services named in `names` and the SNAT rules, so that
/// `plan` is what [`plan_with`] of `view` gives (but for the order of the notes).
/// `None` (and `plan` untouched) when
/// that cannot be done in place (services added, removed or moved, a service the
/// backend cannot balance): plan everything then.
pub fn replan(
    plan: &mut Plan,
    view: &NodeView,
    names: &BTreeSet<String>,
    health: impl Fn(&str, &str) -> ServerHealth,
    overrides: &Overrides,
    caps: Capabilities,
) -> Option<Replanned> {
    let n = view.services.len();
    if plan.services.len() != n
        || plan.state.services.len() != n
        || view
            .services
            .iter()
            .zip(plan.services.iter())
            .any(|(s, p)| s.name != p.name)
    {
        return None;
    }
    let mut notes = Vec::new();
    let mut fresh = Vec::with_capacity(names.len());
    let mut shared = Names::new(view);
    for (i, s) in view.services.iter().enumerate() {
        if !names.contains(&s.name) {
            continue;
        }
        let (p, service) = plan_service(view, s, &mut shared, &health, overrides, caps, &mut notes);
        fresh.push((i, p, service?));
    }
    let snat: Vec<SnatRule> = view.nat.iter().filter_map(snat_rule).collect();
    // The services' list is copied (a pointer each); the desired state, which only
    // the daemon holds between applies, is changed in place.
    let mut services: Vec<Arc<ServicePlan>> = plan.services.as_ref().clone();
    let state = Arc::make_mut(&mut plan.state);
    let mut out = Replanned::default();
    for (i, p, service) in fresh {
        if state.services[i] != service {
            out.state_changed = true;
            state.services[i] = service;
        }
        out.services
            .push((i, std::mem::replace(&mut services[i], Arc::new(p))));
    }
    if state.snat != snat {
        out.state_changed = true;
        state.snat = snat;
    }
    plan.services = Arc::new(services);
    // The notes of the services planned again are replaced (after the others').
    let prefixes: Vec<String> = out
        .services
        .iter()
        .map(|(_, p)| format!("service {}: ", p.name))
        .collect();
    let (before, kept): (Vec<String>, Vec<String>) = std::mem::take(&mut plan.notes)
        .into_iter()
        .partition(|note| prefixes.iter().any(|p| note.starts_with(p.as_str())));
    plan.notes = kept;
    out.notes_added = notes
        .iter()
        .filter(|n| !before.contains(n))
        .cloned()
        .collect();
    plan.notes.extend(notes);
    Some(out)
}

/// Serializes a shared name as its text.
fn shared_name<S: serde::Serializer>(name: &Option<Arc<str>>, s: S) -> Result<S::Ok, S::Error> {
    name.as_deref().serialize(s)
}

/// Serializes a shared name as its text.
fn shared_str<S: serde::Serializer>(name: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(name)
}

/// The names a planning gives its servers and their checks, one shared copy of each.
struct Names<'a> {
    checks: Vec<Arc<str>>,
    servers: HashMap<&'a str, Arc<str>>,
}

impl<'a> Names<'a> {
    fn new(view: &NodeView) -> Names<'a> {
        Names {
            checks: view
                .checks
                .iter()
                .map(|c| Arc::from(c.name.as_str()))
                .collect(),
            servers: HashMap::new(),
        }
    }

    /// The shared copy of check `name` (a name the view lacks: a copy of its own).
    fn check(&self, name: &str) -> Arc<str> {
        match self.checks.iter().find(|c| &***c == name) {
            Some(c) => Arc::clone(c),
            None => Arc::from(name),
        }
    }

    /// The shared copy of server name `name`.
    fn server(&mut self, name: &'a str) -> Arc<str> {
        Arc::clone(self.servers.entry(name).or_insert_with(|| Arc::from(name)))
    }
}

/// One service's plan, and what the dataplane holds of it (`None`: not balanced);
/// what cannot be done as configured goes to `notes`.
fn plan_service<'a>(
    view: &NodeView,
    s: &'a config::Service,
    names: &mut Names<'a>,
    health: &impl Fn(&str, &str) -> ServerHealth,
    overrides: &Overrides,
    caps: Capabilities,
    notes: &mut Vec<String>,
) -> (ServicePlan, Option<Service>) {
    let servers: Vec<ServerPlan> = s
        .servers
        .iter()
        .map(|r| {
            let h = match &r.check {
                Some(_) => health(&s.name, &r.name),
                None => ServerHealth::Unchecked,
            };
            // No key built while there is no override (10,000s of servers).
            let o = if overrides.is_empty() {
                None
            } else {
                overrides.get(&(s.name.clone(), r.name.clone())).copied()
            };
            let (effective_weight, in_dataplane) = match o {
                Some(ServerOverride::Drain) => (0, true),
                Some(ServerOverride::Disable) => (0, s.inhibit_on_failure),
                Some(ServerOverride::Weight { weight }) if h.is_up() => (weight, true),
                None if h.is_up() => (r.weight, true),
                _ => (0, s.inhibit_on_failure),
            };
            let state = match o {
                Some(ServerOverride::Disable) => ServerState::Disabled,
                _ if !h.is_up() => ServerState::Down,
                _ if effective_weight == 0 => ServerState::Drain,
                _ => ServerState::Up,
            };
            ServerPlan {
                name: names.server(&r.name),
                address: r.address,
                port: r.port,
                weight: r.weight,
                effective_weight,
                health: h,
                check: r.check.as_deref().map(|c| names.check(c)),
                in_dataplane,
                server_override: o,
                state,
            }
        })
        .collect();
    let quorum = s.quorum.map(|min| {
        let up = servers.iter().filter(|p| p.effective_weight > 0).count();
        let up = u32::try_from(up).unwrap_or(u32::MAX);
        QuorumPlan {
            min,
            up,
            met: up >= min,
            priority_delta: s.quorum_priority_delta,
            group: view
                .groups
                .iter()
                .find(|g| g.instances.iter().any(|i| i.config.holds(s.vip)))
                .map(|g| g.name.clone()),
        }
    });
    // A scheduler the backend lacks is not replaced: the backend refuses it
    // (check_view, at start and reload), naming the backend that has it.
    let scheduler = s.scheduler;
    let mut effective = scheduler;
    if s.persistence.is_some() && !caps.persistence {
        notes.push(format!(
            "service {}: persistence has no timeout in this backend; using source hashing (sh), which keeps a client on one server while the server set is unchanged",
            s.name
        ));
        effective = Scheduler::Sh;
    }
    let sorry = s.sorry_server.map(|z| (z.address, z.port));
    let mut plan = ServicePlan {
        name: s.name.clone(),
        vip: s.vip,
        ports: s.ports.to_string(),
        protocol: s.protocol.name(),
        scheduler: scheduler.name(),
        effective_scheduler: effective.name(),
        serving: Serving::Servers,
        servers,
        sorry_server: sorry,
        quorum,
    };
    if !caps.supports_forwarding(s.mode) {
        notes.push(format!(
            "service {}: mode {} is not available in this backend (NAT only); the service is not balanced",
            s.name, s.mode
        ));
        plan.serving = Serving::NotBalanced;
        return (plan, None);
    }
    let mut backends: Vec<Backend> = plan
        .servers
        .iter()
        .filter(|p| p.in_dataplane)
        .map(|p| Backend {
            name: p.name.to_string(),
            addr: p.address,
            port: p.port,
            weight: p.effective_weight,
        })
        .collect();
    if backends.iter().all(|b| b.weight == 0) {
        plan.serving = match sorry {
            Some((addr, port)) => {
                backends.push(Backend {
                    name: SORRY_BACKEND.to_owned(),
                    addr,
                    port,
                    weight: 1,
                });
                Serving::Sorry
            }
            None => Serving::Nobody,
        };
    }
    let service = Service {
        name: s.name.clone(),
        vip: s.vip,
        ports: port_spec(s.ports),
        protocol: s.protocol,
        scheduler: effective,
        backends,
        forward: s.mode,
        persistence: s
            .persistence
            .filter(|_| caps.persistence)
            .map(|p| Persistence {
                timeout_s: p.timeout_s,
                prefix_len: p.prefix_len,
            }),
    };
    (plan, Some(service))
}

/// One service quorum as vrrpd's `track.set` carries it: group, `service <name>`,
/// `quorum_priority_delta` while the quorum is lost (else 0).
pub use ctl::contract::vrrpd::TrackEntry as PriorityTrack;

/// The priority tracks of every service with a quorum (met ones with delta 0).
pub fn priority_tracks(plan: &Plan) -> Vec<PriorityTrack> {
    plan.services
        .iter()
        .filter_map(|s| {
            let q = s.quorum.as_ref()?;
            Some(PriorityTrack {
                group: q.group.clone()?,
                name: format!("service {}", s.name),
                weight_delta: if q.met { 0 } else { q.priority_delta },
            })
        })
        .collect()
}

/// The rule as the dataplane takes it; `None` for a `node_address` the view did
/// not resolve (it always does: `NodeView` holds the node's own address).
fn snat_rule(n: &NatRule) -> Option<SnatRule> {
    Some(SnatRule {
        name: n.name.clone(),
        in_iface: n.in_interface.clone(),
        out_iface: n.out_interface.clone(),
        protocol: n.protocol,
        orig_daddr: n.destination,
        orig_dports: n.destination_ports.map(port_spec),
        source: match &n.snat {
            SnatTarget::Address(a) => SnatSource::Address(*a),
            SnatTarget::Pool(p) => SnatSource::Pool(
                p.iter()
                    .map(|e| (e.address, e.ports.map(|r| (r.start, r.end))))
                    .collect(),
            ),
            SnatTarget::NodeAddress(_) => return None,
        },
    })
}

/// Ports one SNAT address may use, over every rule that names it: the union of its
/// port ranges, or 64512 (1024-65535, where the kernel picks for clients' ephemeral
/// ports) when any rule leaves the choice to the kernel.
pub fn snat_capacity(nat: &[NatRule]) -> Vec<(IpAddr, u32)> {
    const KERNEL_CHOICE: u32 = 65535 - 1024 + 1;
    let mut ranges: Vec<(IpAddr, Option<PortRange>)> = Vec::new();
    for n in nat {
        match &n.snat {
            SnatTarget::Address(a) => ranges.push((*a, None)),
            SnatTarget::Pool(p) => ranges.extend(p.iter().map(|e| (e.address, e.ports))),
            SnatTarget::NodeAddress(_) => {}
        }
    }
    let mut addrs: Vec<IpAddr> = ranges.iter().map(|(a, _)| *a).collect();
    addrs.sort();
    addrs.dedup();
    addrs
        .into_iter()
        .map(|a| {
            let mine: Vec<Option<PortRange>> = ranges
                .iter()
                .filter(|(x, _)| *x == a)
                .map(|(_, r)| *r)
                .collect();
            if mine.iter().any(Option::is_none) {
                return (a, KERNEL_CHOICE);
            }
            let mut spans: Vec<(u32, u32)> = mine
                .into_iter()
                .flatten()
                .map(|r| (u32::from(r.start), u32::from(r.end)))
                .collect();
            spans.sort();
            let mut total = 0;
            let mut cur: Option<(u32, u32)> = None;
            for (s, e) in spans {
                cur = match cur {
                    Some((cs, ce)) if s <= ce + 1 => Some((cs, ce.max(e))),
                    Some((cs, ce)) => {
                        total += ce - cs + 1;
                        Some((s, e))
                    }
                    None => Some((s, e)),
                };
            }
            if let Some((cs, ce)) = cur {
                total += ce - cs + 1;
            }
            (a, total)
        })
        .collect()
}

fn port_spec(r: PortRange) -> PortSpec {
    if r.is_single() {
        PortSpec::Single(r.start)
    } else {
        PortSpec::Range(r.start, r.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::{BackendKind, Forwarding, Protocol};

    const EXAMPLE: &str = include_str!("../../cluster.toml.example");

    fn view(edits: &[(&str, &str)]) -> NodeView {
        let mut text = EXAMPLE.to_owned();
        for (from, to) in edits {
            assert!(text.contains(from), "example lacks {from:?}");
            text = text.replacen(from, to, 1);
        }
        config::parse(&text, "test.toml")
            .unwrap()
            .node_view(Some("lb1"))
            .unwrap()
    }

    fn all_up(_: &str, _: &str) -> ServerHealth {
        ServerHealth::Up
    }

    fn weights(p: &Plan) -> Vec<(String, u32)> {
        p.state.services[0]
            .backends
            .iter()
            .map(|b| (b.name.clone(), b.weight))
            .collect()
    }

    #[test]
    fn example_becomes_one_service_and_one_snat_rule() {
        let p = plan(&view(&[]), all_up, BackendKind::Nft.capabilities());
        assert_eq!(p.state.services.len(), 1);
        let s = &p.state.services[0];
        assert_eq!(s.vip, "198.18.0.100".parse::<IpAddr>().unwrap());
        assert_eq!(s.ports, PortSpec::Single(80));
        assert_eq!(s.protocol, Protocol::Tcp);
        assert_eq!(s.scheduler, Scheduler::Rr);
        assert_eq!(s.backends[0].port, Some(80));
        assert_eq!(
            weights(&p),
            vec![("srv1".to_owned(), 1), ("srv2".to_owned(), 1)]
        );
        assert_eq!(p.state.snat.len(), 1);
        let n = &p.state.snat[0];
        assert_eq!(n.in_iface.as_deref(), Some("eth0"));
        assert_eq!(n.out_iface.as_deref(), Some("eth1"));
        assert_eq!(n.orig_dports, Some(PortSpec::Single(80)));
        assert_eq!(
            n.source,
            SnatSource::Address("198.18.1.100".parse().unwrap())
        );
        assert!(p.notes.is_empty(), "{:?}", p.notes);
        assert_eq!(p.services[0].serving, Serving::Servers);
    }

    #[test]
    fn replanning_named_services_in_place_gives_what_planning_all_gives() {
        let caps = BackendKind::Nft.capabilities();
        let mut p = plan(&view(&[]), all_up, caps);
        let before = Arc::clone(&p.services);
        let after = view(&[("weight = 1", "weight = 7")]);
        let down = |_: &str, server: &str| {
            if server == "srv2" {
                ServerHealth::Down
            } else {
                ServerHealth::Up
            }
        };
        let none = Overrides::new();
        let web: BTreeSet<String> = ["web".to_owned()].into();
        let r = replan(&mut p, &after, &web, down, &none, caps).unwrap();
        let whole = plan_with(&after, down, &none, caps);
        assert_eq!(p.state, whole.state);
        assert_eq!(p.services, whole.services);
        assert!(r.state_changed);
        assert_eq!(r.services.len(), 1);
        assert_eq!(r.services[0].0, 0);
        assert_eq!(*r.services[0].1, *before[0]);
        // Nothing named: nothing planned, the services' plans shared.
        let shared = Arc::clone(&p.services[0]);
        let r = replan(&mut p, &after, &BTreeSet::new(), down, &none, caps).unwrap();
        assert!(!r.state_changed && r.services.is_empty());
        assert!(Arc::ptr_eq(&shared, &p.services[0]));
        // A service added: not in place.
        let mut more = after.clone();
        let mut second = more.services[0].clone();
        second.name = "web2".to_owned();
        more.services.push(second);
        let kept = p.clone();
        assert!(replan(&mut p, &more, &web, down, &none, caps).is_none());
        assert_eq!(p, kept);
    }

    #[test]
    fn a_down_server_gets_weight_zero_and_keeps_its_place() {
        let p = plan(
            // srv2's weight is followed directly by its check in the example.
            &view(&[("weight = 1\ncheck", "weight = 3\ncheck")]),
            |_, server| {
                if server == "srv2" {
                    ServerHealth::Down
                } else {
                    ServerHealth::Up
                }
            },
            BackendKind::Nft.capabilities(),
        );
        assert_eq!(
            weights(&p),
            vec![("srv1".to_owned(), 1), ("srv2".to_owned(), 0)]
        );
        let srv2 = &p.services[0].servers[1];
        assert_eq!((srv2.weight, srv2.effective_weight), (3, 0));
        assert_eq!(srv2.health, ServerHealth::Down);
    }

    #[test]
    fn without_inhibit_a_down_server_leaves_the_service() {
        let v = view(&[("inhibit_on_failure = true", "inhibit_on_failure = false")]);
        let srv2_down = |_: &str, server: &str| {
            if server == "srv2" {
                ServerHealth::Down
            } else {
                ServerHealth::Up
            }
        };
        let p = plan(&v, srv2_down, BackendKind::Nft.capabilities());
        assert_eq!(weights(&p), vec![("srv1".to_owned(), 1)]);
        let srv2 = &p.services[0].servers[1];
        assert!(!srv2.in_dataplane);
        assert_eq!(srv2.effective_weight, 0);
        // Everyone down and removed: no backend at all, or the sorry server alone.
        let p = plan(
            &v,
            |_, _| ServerHealth::Down,
            BackendKind::Nft.capabilities(),
        );
        assert!(p.state.services[0].backends.is_empty());
        assert_eq!(p.services[0].serving, Serving::Nobody);
    }

    #[test]
    fn quorum_becomes_a_priority_track_of_the_vips_group() {
        let v = view(&[("# quorum = 1\n", "quorum = 2\n")]);
        let up = plan(&v, all_up, BackendKind::Nft.capabilities());
        let q = up.services[0].quorum.clone().unwrap();
        assert_eq!((q.min, q.up, q.met), (2, 2, true));
        assert_eq!(q.group.as_deref(), Some("edge"));
        assert_eq!(
            priority_tracks(&up),
            vec![PriorityTrack {
                group: "edge".into(),
                name: "service web".into(),
                weight_delta: 0
            }]
        );
        let one_down = plan(
            &v,
            |_, server| {
                if server == "srv1" {
                    ServerHealth::Down
                } else {
                    ServerHealth::Up
                }
            },
            BackendKind::Nft.capabilities(),
        );
        assert_eq!(priority_tracks(&one_down)[0].weight_delta, -60);
        // A drained server does not count either.
        let drained = view(&[
            ("# quorum = 1\n", "quorum = 2\n"),
            ("weight = 1\ncheck", "weight = 0\ncheck"),
        ]);
        let p = plan(&drained, all_up, BackendKind::Nft.capabilities());
        assert!(!p.services[0].quorum.as_ref().unwrap().met);
        // No quorum configured: no track.
        assert!(
            priority_tracks(&plan(&view(&[]), all_up, BackendKind::Nft.capabilities())).is_empty()
        );
    }

    fn overrides(list: &[(&str, ServerOverride)]) -> Overrides {
        list.iter()
            .map(|(server, o)| (("web".to_owned(), (*server).to_owned()), *o))
            .collect()
    }

    #[test]
    fn overrides_lie_over_the_configuration() {
        let srv2_down = |_: &str, server: &str| {
            if server == "srv2" {
                ServerHealth::Down
            } else {
                ServerHealth::Up
            }
        };
        // Drain: weight 0, kept in the dataplane even where a failure would remove it.
        let removing = view(&[("inhibit_on_failure = true", "inhibit_on_failure = false")]);
        let drained = overrides(&[("srv1", ServerOverride::Drain)]);
        let p = plan_with(&removing, all_up, &drained, BackendKind::Nft.capabilities());
        assert_eq!(
            weights(&p),
            vec![("srv1".to_owned(), 0), ("srv2".to_owned(), 1)]
        );
        let srv1 = &p.services[0].servers[0];
        assert_eq!(
            (srv1.state, srv1.in_dataplane, srv1.weight),
            (ServerState::Drain, true, 1)
        );
        assert_eq!(srv1.server_override, Some(ServerOverride::Drain));
        assert_eq!(p.services[0].servers[1].state, ServerState::Up);

        // Disable: as a failed check (removed here, since inhibit_on_failure = false).
        let disabled = overrides(&[("srv1", ServerOverride::Disable)]);
        let p = plan_with(
            &removing,
            all_up,
            &disabled,
            BackendKind::Nft.capabilities(),
        );
        assert_eq!(weights(&p), vec![("srv2".to_owned(), 1)]);
        assert_eq!(p.services[0].servers[0].state, ServerState::Disabled);
        let p = plan_with(
            &view(&[]),
            all_up,
            &disabled,
            BackendKind::Nft.capabilities(),
        );
        assert_eq!(
            weights(&p),
            vec![("srv1".to_owned(), 0), ("srv2".to_owned(), 1)]
        );

        // Weight: replaces the configured one while up; a down server stays at 0.
        let weighted = overrides(&[
            ("srv1", ServerOverride::Weight { weight: 3 }),
            ("srv2", ServerOverride::Weight { weight: 5 }),
        ]);
        let p = plan_with(
            &view(&[]),
            srv2_down,
            &weighted,
            BackendKind::Nft.capabilities(),
        );
        assert_eq!(
            weights(&p),
            vec![("srv1".to_owned(), 3), ("srv2".to_owned(), 0)]
        );
        assert_eq!(p.services[0].servers[1].state, ServerState::Down);
        let zero = overrides(&[("srv1", ServerOverride::Weight { weight: 0 })]);
        let p = plan_with(&view(&[]), all_up, &zero, BackendKind::Nft.capabilities());
        assert_eq!(p.services[0].servers[0].state, ServerState::Drain);

        // Every server drained: the sorry server takes new connections.
        let sorry = view(&[(
            "# sorry_server = { address = \"198.18.1.30\", port = 80 }",
            "sorry_server = { address = \"198.18.1.30\" }",
        )]);
        let both = overrides(&[
            ("srv1", ServerOverride::Drain),
            ("srv2", ServerOverride::Disable),
        ]);
        let p = plan_with(&sorry, all_up, &both, BackendKind::Nft.capabilities());
        assert_eq!(p.services[0].serving, Serving::Sorry);

        // An override of a server the file lacks changes nothing.
        let stale: Overrides =
            [(("web".to_owned(), "gone".to_owned()), ServerOverride::Drain)].into();
        assert_eq!(
            plan_with(&view(&[]), all_up, &stale, BackendKind::Nft.capabilities()),
            plan(&view(&[]), all_up, BackendKind::Nft.capabilities())
        );
    }

    #[test]
    fn a_server_without_check_is_always_up() {
        let v = view(&[(
            "check = \"web-http\"\n\n[[service.server]]",
            "\n[[service.server]]",
        )]);
        let p = plan(
            &v,
            |_, _| ServerHealth::Down,
            BackendKind::Nft.capabilities(),
        );
        assert_eq!(p.services[0].servers[0].health, ServerHealth::Unchecked);
        assert_eq!(
            weights(&p),
            vec![("srv1".to_owned(), 1), ("srv2".to_owned(), 0)]
        );
    }

    #[test]
    fn sorry_server_takes_over_when_every_server_is_down() {
        let v = view(&[(
            "# sorry_server = { address = \"198.18.1.30\", port = 80 }",
            "sorry_server = { address = \"198.18.1.30\" }",
        )]);
        let up = plan(&v, all_up, BackendKind::Nft.capabilities());
        assert_eq!(up.services[0].serving, Serving::Servers);
        assert_eq!(up.state.services[0].backends.len(), 2);

        let down = plan(
            &v,
            |_, _| ServerHealth::Down,
            BackendKind::Nft.capabilities(),
        );
        assert_eq!(down.services[0].serving, Serving::Sorry);
        let b = &down.state.services[0].backends;
        assert_eq!(b.len(), 3);
        assert_eq!(b[2].name, SORRY_BACKEND);
        assert_eq!(b[2].addr, "198.18.1.30".parse::<IpAddr>().unwrap());
        assert_eq!(
            b[2].port,
            Some(80),
            "the sorry port defaults to the service's"
        );
        assert_eq!((b[0].weight, b[1].weight, b[2].weight), (0, 0, 1));

        let nobody = plan(
            &view(&[]),
            |_, _| ServerHealth::Down,
            BackendKind::Nft.capabilities(),
        );
        assert_eq!(nobody.services[0].serving, Serving::Nobody);
        assert!(nobody.state.services[0]
            .backends
            .iter()
            .all(|b| b.weight == 0));
    }

    #[test]
    fn backend_limits_become_notes() {
        // A scheduler the backend lacks stays as configured (the backend's
        // validation refuses it: backend::tests::validation_follows_the_backend).
        let v = view(&[("scheduler = \"rr\"", "scheduler = \"wlc\"")]);
        let p = plan(&v, all_up, BackendKind::Nft.capabilities());
        assert_eq!(p.state.services[0].scheduler, Scheduler::Wlc);
        assert_eq!(p.services[0].effective_scheduler, "wlc");
        assert!(p.notes.is_empty(), "{:?}", p.notes);

        let ipvs = plan(&v, all_up, BackendKind::Ipvs.capabilities());
        assert_eq!(ipvs.state.services[0].scheduler, Scheduler::Wlc);
        assert!(ipvs.notes.is_empty());

        let sticky = view(&[(
            "# persistence = { timeout_s = 300, prefix_len = 24 }",
            "persistence = { timeout_s = 300, prefix_len = 24 }",
        )]);
        // Both backends keep a client on its server for the timeout.
        for kind in [BackendKind::Nft, BackendKind::Ipvs] {
            let p = plan(&sticky, all_up, kind.capabilities());
            assert_eq!(p.state.services[0].scheduler, Scheduler::Rr);
            assert_eq!(
                p.state.services[0].persistence,
                Some(Persistence {
                    timeout_s: 300,
                    prefix_len: 24
                })
            );
            assert!(p.notes.is_empty(), "{:?}", p.notes);
        }

        let dr = view(&[("mode = \"nat\"", "mode = \"dr\"")]);
        let p = plan(&dr, all_up, BackendKind::Ipvs.capabilities());
        assert_eq!(p.state.services[0].forward, Forwarding::DirectRoute);
        let p = plan(&dr, all_up, BackendKind::Nft.capabilities());
        assert!(p.state.services.is_empty());
        assert_eq!(p.services[0].serving, Serving::NotBalanced);
        assert!(p.notes[0].contains("mode dr"), "{:?}", p.notes);
    }

    #[test]
    fn snat_pool_and_capacity() {
        let v = view(&[(
            "snat = { address = \"198.18.1.100\" }",
            "snat = { pool = [{ address = \"198.18.1.100\", ports = \"20000-20003\" }, { address = \"198.18.1.100\", ports = \"20002-20009\" }] }",
        )]);
        let p = plan(&v, all_up, BackendKind::Nft.capabilities());
        assert_eq!(
            p.state.snat[0].source,
            SnatSource::Pool(vec![
                ("198.18.1.100".parse().unwrap(), Some((20000, 20003))),
                ("198.18.1.100".parse().unwrap(), Some((20002, 20009))),
            ])
        );
        assert_eq!(
            snat_capacity(&v.nat),
            vec![("198.18.1.100".parse().unwrap(), 10)]
        );
        assert_eq!(
            snat_capacity(&view(&[]).nat),
            vec![("198.18.1.100".parse().unwrap(), 64512)]
        );
    }
}
