//! Data-driven scenarios with several nodes on shared segments (after holo's
//! topology tests): each node is a set of [`Router`]s (vrrpd runs one per sync
//! group) and a [`PreemptHold`] over them, driven as vrrpd drives them; the
//! harness plays the network and the clock.
//!
//! A folder under `tests/topology/` is one case: `case.json` has the nodes, the
//! scripted inputs and when to stop; `expected.json` the trace (state changes,
//! VIP changes, adverts whose priority changed, the hold's actions) and every
//! node's final state. `VRRP_CONFORMANCE_BLESS=1` rewrites the expected files.
//!
//! The network: an interface name is a segment (every node's `eth0` is on one);
//! an advert reaches, 100 µs later, every other powered node with an instance on
//! that segment whose link is up (unicast: the peers named). Timers fire at their
//! deadline unless re-armed or cancelled. A node powered off hears and sends
//! nothing and loses its timers; powered on, it is new (state and hold rebuilt).

mod replay;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use serde_json::{json, Value};
use vrrp::action::{Action, Destination};
use vrrp::config::RouterConfig;
use vrrp::event::{Event, Input};
use vrrp::preempt_hold::{HoldAction, HoldInput, PreemptHold};
use vrrp::router::Router;
use vrrp::timer::{Time, TimerKind};

const LATENCY: Duration = Duration::from_micros(100);

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// What the case shows.
    #[allow(dead_code)]
    description: String,
    nodes: BTreeMap<String, NodeSpec>,
    events: Vec<Scripted>,
    /// The end of the run (µs).
    until: Time,
}

#[derive(serde::Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct NodeSpec {
    /// One router per sync group, as vrrpd runs them.
    routers: Vec<RouterConfig>,
    /// The preemption hold's longest wait (µs); absent: no hold.
    #[serde(default)]
    preempt_wait_us: Option<u64>,
}

/// One scripted input to one node: a router input, a hold input, or power.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Scripted {
    now: Time,
    node: String,
    #[serde(default)]
    input: Option<Input>,
    #[serde(default)]
    hold: Option<HoldInput>,
    /// false: the node stops dead (no release); true: it is rebuilt, not started.
    #[serde(default)]
    power: Option<bool>,
}

enum Due {
    Script(usize),
    Advert {
        node: String,
        interface: String,
        src: IpAddr,
        advert: vrrp::packet::Advertisement,
    },
    Timer {
        node: String,
        instance: String,
        timer: TimerKind,
    },
    HoldTimer {
        node: String,
    },
}

struct Node {
    spec: NodeSpec,
    on: bool,
    routers: Vec<Router>,
    hold: PreemptHold,
    down: BTreeSet<String>,
    timers: BTreeMap<(String, TimerKind), Time>,
    hold_timer: Option<Time>,
    last_priority: BTreeMap<String, u8>,
}

impl Node {
    fn new(spec: NodeSpec) -> Self {
        let routers = spec
            .routers
            .iter()
            .map(|c| Router::new(c.clone()).expect("case config is valid"))
            .collect();
        let hold = PreemptHold::new(spec.preempt_wait_us.map(Duration::from_micros));
        Node {
            spec,
            on: true,
            routers,
            hold,
            down: BTreeSet::new(),
            timers: BTreeMap::new(),
            hold_timer: None,
            last_priority: BTreeMap::new(),
        }
    }

    /// The routers an input concerns.
    fn targets(&self, input: &Input) -> Vec<usize> {
        let all = (0..self.routers.len()).collect();
        let has_instance = |name: &str| {
            self.spec
                .routers
                .iter()
                .position(|c| c.instances.iter().any(|i| i.name == name))
                .into_iter()
                .collect()
        };
        match input {
            Input::TimerExpired { instance, .. }
            | Input::SetPriority { instance, .. }
            | Input::ConfigChanged { instance, .. }
            | Input::MaintenanceOn { instance }
            | Input::MaintenanceOff { instance } => has_instance(instance),
            Input::TrackPriority { group, .. } => self
                .spec
                .routers
                .iter()
                .position(|c| c.sync_groups.iter().any(|g| &g.name == group))
                .into_iter()
                .collect(),
            Input::AdvertReceived {
                interface,
                src,
                advert,
            } => self
                .spec
                .routers
                .iter()
                .position(|c| {
                    c.instances.iter().any(|i| {
                        &i.interface == interface
                            && i.vrid == advert.vrid
                            && i.primary_address.is_ipv6() == src.is_ipv6()
                    })
                })
                .into_iter()
                .collect(),
            _ => all,
        }
    }

    fn primary_on(&self, interface: &str) -> Vec<IpAddr> {
        self.spec
            .routers
            .iter()
            .flat_map(|c| &c.instances)
            .filter(|i| i.interface == interface)
            .map(|i| i.primary_address)
            .collect()
    }
}

struct Sim {
    nodes: BTreeMap<String, Node>,
    queue: BTreeMap<(Time, u64), Due>,
    seq: u64,
    trace: Vec<Value>,
}

impl Sim {
    fn push(&mut self, at: Time, due: Due) {
        self.seq += 1;
        self.queue.insert((at, self.seq), due);
    }

    /// Feeds a router input to the node's routers it concerns, then the hold.
    fn feed(&mut self, now: Time, name: &str, input: Input) {
        let node = self.nodes.get_mut(name).unwrap();
        match &input {
            Input::InterfaceDown { interface } => {
                node.down.insert(interface.clone());
            }
            Input::InterfaceUp { interface } => {
                node.down.remove(interface);
            }
            _ => {}
        }
        for r in node.targets(&input) {
            let actions =
                self.nodes.get_mut(name).unwrap().routers[r].handle(Event::new(now, input.clone()));
            self.execute(now, name, actions);
        }
        let node = self.nodes.get_mut(name).unwrap();
        let preempting = node.routers.iter().any(Router::outranks_master);
        self.feed_hold(now, name, HoldInput::Preempting(preempting));
    }

    fn feed_hold(&mut self, now: Time, name: &str, input: HoldInput) {
        let node = self.nodes.get_mut(name).unwrap();
        let actions = node.hold.handle(now, input);
        for a in actions {
            match a {
                HoldAction::ArmTimer { at } => {
                    self.nodes.get_mut(name).unwrap().hold_timer = Some(at);
                    self.push(
                        at,
                        Due::HoldTimer {
                            node: name.to_owned(),
                        },
                    );
                }
                HoldAction::CancelTimer => self.nodes.get_mut(name).unwrap().hold_timer = None,
                HoldAction::Apply { hold } => {
                    self.trace_hold(now, name, &a);
                    let n = self.nodes.get(name).unwrap().routers.len();
                    for r in 0..n {
                        let actions = self.nodes.get_mut(name).unwrap().routers[r]
                            .handle(Event::new(now, Input::PreemptHold { hold }));
                        self.execute(now, name, actions);
                    }
                }
                other => self.trace_hold(now, name, &other),
            }
        }
    }

    fn trace_hold(&mut self, now: Time, name: &str, a: &HoldAction) {
        self.trace.push(json!({"at": now, "node": name, "hold": a}));
    }

    fn execute(&mut self, now: Time, name: &str, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::ArmTimer {
                    instance,
                    timer,
                    at,
                } => {
                    let node = self.nodes.get_mut(name).unwrap();
                    node.timers.insert((instance.clone(), timer), at);
                    self.push(
                        at,
                        Due::Timer {
                            node: name.to_owned(),
                            instance,
                            timer,
                        },
                    );
                }
                Action::CancelTimer { instance, timer } => {
                    let node = self.nodes.get_mut(name).unwrap();
                    node.timers.remove(&(instance, timer));
                }
                Action::SendAdvert {
                    instance,
                    interface,
                    source,
                    destination,
                    advert,
                } => {
                    let node = self.nodes.get_mut(name).unwrap();
                    let last = node.last_priority.insert(instance.clone(), advert.priority);
                    if last != Some(advert.priority) {
                        self.trace.push(json!({"at": now, "node": name, "advert": {
                            "instance": instance, "priority": advert.priority}}));
                    }
                    if node.down.contains(&interface) {
                        continue;
                    }
                    let peers: Vec<String> = self
                        .nodes
                        .iter()
                        .filter(|(n, other)| {
                            n.as_str() != name && other.on && !other.down.contains(&interface)
                        })
                        .filter(|(_, other)| {
                            let theirs = other.primary_on(&interface);
                            match &destination {
                                Destination::Multicast => !theirs.is_empty(),
                                Destination::Unicast(to) => theirs.iter().any(|a| to.contains(a)),
                            }
                        })
                        .map(|(n, _)| n.clone())
                        .collect();
                    for peer in peers {
                        self.push(
                            now + LATENCY,
                            Due::Advert {
                                node: peer,
                                interface: interface.clone(),
                                src: source,
                                advert: advert.clone(),
                            },
                        );
                    }
                }
                a @ (Action::StateChanged { .. }
                | Action::GroupStateChanged { .. }
                | Action::AddVips { .. }
                | Action::RemoveVips { .. }
                | Action::PrepareTakeover { .. }) => {
                    self.trace
                        .push(json!({"at": now, "node": name, "action": a}));
                }
                Action::SendGratuitous { .. } => {}
            }
        }
    }

    fn run(mut self, events: Vec<Scripted>, until: Time) -> Value {
        for (i, e) in events.iter().enumerate() {
            self.push(e.now, Due::Script(i));
        }
        while let Some((&(at, seq), _)) = self.queue.iter().next() {
            if at > until {
                break;
            }
            let due = self.queue.remove(&(at, seq)).unwrap();
            match due {
                Due::Script(i) => {
                    let e = &events[i];
                    let name = e.node.clone();
                    assert!(self.nodes.contains_key(&name), "no node {name}");
                    if let Some(on) = e.power {
                        let node = self.nodes.get_mut(&name).unwrap();
                        if on {
                            *node = Node::new(node.spec.clone());
                        } else {
                            node.on = false;
                            node.timers.clear();
                            node.hold_timer = None;
                        }
                        self.trace
                            .push(json!({"at": at, "node": name, "power": on}));
                    }
                    if !self.nodes[&name].on {
                        continue;
                    }
                    if let Some(input) = e.hold.clone() {
                        self.feed_hold(at, &name, input);
                    }
                    if let Some(input) = e.input.clone() {
                        self.feed(at, &name, input);
                    }
                }
                Due::Advert {
                    node,
                    interface,
                    src,
                    advert,
                } => {
                    let n = &self.nodes[&node];
                    if n.on && !n.down.contains(&interface) {
                        let input = Input::AdvertReceived {
                            interface,
                            src,
                            advert,
                        };
                        self.feed(at, &node, input);
                    }
                }
                Due::Timer {
                    node,
                    instance,
                    timer,
                } => {
                    let n = &self.nodes[&node];
                    if n.on && n.timers.get(&(instance.clone(), timer)) == Some(&at) {
                        self.nodes
                            .get_mut(&node)
                            .unwrap()
                            .timers
                            .remove(&(instance.clone(), timer));
                        self.feed(at, &node, Input::TimerExpired { instance, timer });
                    }
                }
                Due::HoldTimer { node } => {
                    let n = &self.nodes[&node];
                    if n.on && n.hold_timer == Some(at) {
                        self.nodes.get_mut(&node).unwrap().hold_timer = None;
                        self.feed_hold(at, &node, HoldInput::TimerExpired);
                    }
                }
            }
        }
        let finals: BTreeMap<&String, Value> = self
            .nodes
            .iter()
            .map(|(name, n)| {
                let instances: BTreeMap<String, Value> = n
                    .routers
                    .iter()
                    .flat_map(Router::instances)
                    .map(|s| {
                        (
                            s.name.clone(),
                            json!({
                                "state": s.state,
                                "priority": s.priority,
                                "effective_priority": s.effective_priority,
                                "priority_tracks": s.priority_tracks,
                                "master_address": s.master_address,
                                "became_master": s.counters.became_master,
                            }),
                        )
                    })
                    .collect();
                let hold = n.hold.status();
                (
                    name,
                    json!({
                        "on": n.on,
                        "instances": instances,
                        "hold": {
                            "held": hold.held,
                            "reasons": hold.reasons,
                            "expirations": hold.expirations,
                        },
                    }),
                )
            })
            .collect();
        json!({ "trace": self.trace, "final": finals })
    }
}

/// Runs one case.
fn run(case: Case) -> Value {
    let sim = Sim {
        nodes: case
            .nodes
            .into_iter()
            .map(|(n, spec)| (n, Node::new(spec)))
            .collect(),
        queue: BTreeMap::new(),
        seq: 0,
        trace: Vec::new(),
    };
    sim.run(case.events, case.until)
}

#[test]
fn topology_cases() {
    replay::replay("topology", 4, run, |expected, actual| {
        format!(
            "differs\n--- expected\n{}\n--- actual\n{}",
            serde_json::to_string_pretty(expected).unwrap(),
            serde_json::to_string_pretty(actual).unwrap()
        )
    });
}
