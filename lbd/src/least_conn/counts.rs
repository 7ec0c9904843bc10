//! The servers' connection counts of the lc/wlc services, kept exact from
//! conntrack's events and set again from a dump (at start, when events were lost,
//! and now and then for the entries that never send any).
//!
//! A connection is counted under its target: the VIP and protocol of its original
//! destination, the original destination port, and the reply's source (the server's
//! address and port after DNAT). Its load is IPVS's: TCP ESTABLISHED is active,
//! every other TCP state inactive (1/256), other protocols active. Each connection
//! is remembered by a 64-bit hash of its original tuple (unique in the kernel's
//! table at any time) with whether it counts as active, so that an update or its
//! end moves exactly what it added.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;

use ctsync::{Entry, EventKind, TcpState};
use dataplane::{PortSpec, Service};

/// Where a service's connections go: its VIP and IP protocol number.
pub type Vip = (IpAddr, u8);

/// A server as a connection names it: the reply's source address and port.
type Server = (IpAddr, u16);

/// The connections of one target.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    /// TCP ESTABLISHED, and every connection of another protocol.
    active: u32,
    /// The other TCP states.
    inactive: u32,
}

/// Per VIP, per original destination port, per server.
type Targets = HashMap<Vip, BTreeMap<u16, HashMap<Server, Tally>>>;

/// The counts of the wanted VIPs' connections.
#[derive(Debug, Default)]
pub struct Counts {
    /// The VIPs counted.
    vips: HashSet<Vip>,
    /// Each connection counted, by the hash of its original tuple: active or not.
    conns: HashMap<u64, bool>,
    targets: Targets,
    /// Connections that appeared (events New, or new in a dump's count) per VIP
    /// and port, ever (while the VIP is counted).
    arrived: BTreeMap<(Vip, u16), u64>,
    /// The (VIP, port) pairs whose counts changed since [`Counts::take_dirty`].
    dirty: HashSet<(Vip, u16)>,
    /// Whether a dump has set the counts yet.
    synced: bool,
}

/// The connection's key: the hash of its original tuple.
fn key(e: &Entry) -> u64 {
    let mut h = DefaultHasher::new();
    e.orig.hash(&mut h);
    h.finish()
}

/// The connection's VIP, original destination port and server.
fn target(e: &Entry) -> Option<(Vip, u16, Server)> {
    Some((
        (e.orig.dst, e.orig.proto),
        e.orig.dst_port()?,
        (e.reply.src, e.reply.src_port()?),
    ))
}

/// Whether the connection counts as active; `None` for a TCP entry without its
/// state (an update that did not change the state carries none).
fn active(e: &Entry) -> Option<bool> {
    if e.orig.proto != libc::IPPROTO_TCP as u8 {
        return Some(true);
    }
    e.tcp.map(|t| t.state == TcpState::ESTABLISHED)
}

/// The ports a service answers on.
pub fn ports(s: &Service) -> (u16, u16) {
    match s.ports {
        PortSpec::Single(p) => (p, p),
        PortSpec::Range(a, b) => (a, b),
    }
}

impl Counts {
    /// The VIPs counted.
    pub fn vips(&self) -> &HashSet<Vip> {
        &self.vips
    }

    /// Whether a dump has set the counts.
    #[cfg(test)]
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// Connections counted.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// One event: a new connection is counted (and its arrival), an update moves it
    /// between active and inactive, a destroyed one is no longer counted. Events of
    /// other VIPs are ignored.
    pub fn apply(&mut self, kind: EventKind, e: &Entry) {
        let Some((vip, port, server)) = target(e) else {
            return;
        };
        if !self.vips.contains(&vip) {
            return;
        }
        let k = key(e);
        match kind {
            EventKind::Destroy => {
                if let Some(was) = self.conns.remove(&k) {
                    self.change(vip, port, server, Some(was), None, false);
                }
            }
            EventKind::New | EventKind::Update => {
                let before = self.conns.get(&k).copied();
                let now = active(e).or(before).unwrap_or(false);
                let arrived = kind == EventKind::New;
                if before == Some(now) && !arrived {
                    return;
                }
                self.conns.insert(k, now);
                self.change(vip, port, server, before, Some(now), arrived);
            }
        }
    }

    fn change(
        &mut self,
        vip: Vip,
        port: u16,
        server: Server,
        before: Option<bool>,
        after: Option<bool>,
        arrived: bool,
    ) {
        let t = self
            .targets
            .entry(vip)
            .or_default()
            .entry(port)
            .or_default()
            .entry(server)
            .or_default();
        match before {
            Some(true) => t.active = t.active.saturating_sub(1),
            Some(false) => t.inactive = t.inactive.saturating_sub(1),
            None => {}
        }
        match after {
            Some(true) => t.active += 1,
            Some(false) => t.inactive += 1,
            None => {}
        }
        if arrived {
            *self.arrived.entry((vip, port)).or_default() += 1;
        }
        if before != after {
            self.dirty.insert((vip, port));
        }
    }

    /// Sets the counts of `vips` from a dump's `entries` (those of other VIPs are
    /// ignored). Events read after the dump are applied on top: an event the dump
    /// already shows changes nothing, or what it changes a later event of the same
    /// connection puts right, as events come in order. With `count_arrivals`, the
    /// connections the counts did not know count as arrived (counting by dumps
    /// alone); the first dump counts none.
    pub fn resync(&mut self, vips: HashSet<Vip>, entries: &[Entry], count_arrivals: bool) {
        let count_arrivals = count_arrivals && self.synced;
        let mut conns = HashMap::with_capacity(entries.len());
        let mut targets: Targets = HashMap::new();
        for e in entries {
            let Some((vip, port, server)) = target(e) else {
                continue;
            };
            if !vips.contains(&vip) {
                continue;
            }
            let k = key(e);
            let a = active(e).unwrap_or(false);
            let t = targets
                .entry(vip)
                .or_default()
                .entry(port)
                .or_default()
                .entry(server)
                .or_default();
            if a {
                t.active += 1;
            } else {
                t.inactive += 1;
            }
            if count_arrivals && !self.conns.contains_key(&k) {
                *self.arrived.entry((vip, port)).or_default() += 1;
            }
            conns.insert(k, a);
        }
        // The targets without a connection left go; the arrivals stay (rates come
        // from their growth), but those of VIPs no longer counted.
        self.arrived.retain(|(vip, _), _| vips.contains(vip));
        // What changed is dirty: the ports with a server whose load differs (one
        // missing has none), looked up from either map.
        let load = |t: Option<&Tally>| t.map_or((0, 0), |t| (t.active, t.inactive));
        let mut dirty = Vec::new();
        for (new, old) in [(&targets, &self.targets), (&self.targets, &targets)] {
            for (vip, by_port) in new {
                for (port, by_server) in by_port {
                    let other = old.get(vip).and_then(|p| p.get(port));
                    let same = by_server
                        .iter()
                        .all(|(s, t)| load(other.and_then(|o| o.get(s))) == load(Some(t)));
                    if !same {
                        dirty.push((*vip, *port));
                    }
                }
            }
        }
        self.dirty.extend(dirty);
        self.dirty.retain(|(vip, _)| vips.contains(vip));
        self.vips = vips;
        self.conns = conns;
        self.targets = targets;
        self.synced = true;
    }

    /// The (VIP, port) pairs whose counts changed since the last call.
    pub fn take_dirty(&mut self) -> HashSet<(Vip, u16)> {
        std::mem::take(&mut self.dirty)
    }

    /// Whether some count changed since [`Counts::take_dirty`].
    pub fn is_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Service `s`'s load per backend (`active + inactive / 256`) and the
    /// connections that arrived at it so far.
    pub fn load(&self, s: &Service) -> (Vec<f64>, u64) {
        let mut load = vec![0.0; s.backends.len()];
        let vip = (s.vip, s.protocol.number());
        let (lo, hi) = ports(s);
        let arrived = self
            .arrived
            .range((vip, lo)..=(vip, hi))
            .map(|(_, n)| n)
            .sum();
        let Some(by_port) = self.targets.get(&vip) else {
            return (load, arrived);
        };
        for (&port, by_server) in by_port.range(lo..=hi) {
            for (&(addr, sport), t) in by_server {
                if let Some(i) = s
                    .backends
                    .iter()
                    .position(|b| b.addr == addr && b.port.unwrap_or(port) == sport)
                {
                    load[i] += f64::from(t.active) + f64::from(t.inactive) / 256.0;
                }
            }
        }
        (load, arrived)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ctsync::{Status, TcpInfo, Tuple};
    use dataplane::{Backend, Forwarding, Protocol, Scheduler};

    const VIP: &str = "198.18.0.100";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn service(ports: PortSpec, servers: &[(&str, Option<u16>)]) -> Service {
        Service {
            name: "web".into(),
            vip: ip(VIP),
            ports,
            protocol: Protocol::Tcp,
            scheduler: Scheduler::Lc,
            backends: servers
                .iter()
                .enumerate()
                .map(|(i, &(addr, port))| Backend {
                    name: format!("srv{i}"),
                    addr: ip(addr),
                    port,
                    weight: 1,
                })
                .collect(),
            forward: Forwarding::Nat,
            persistence: None,
        }
    }

    /// A new established TCP connection from client port `cport` to the VIP's `port`,
    /// carried to `server`.
    fn established(c: &mut Counts, cport: u16, port: u16, server: &str) {
        c.apply(
            EventKind::New,
            &conn(cport, port, server, Some(TcpState::ESTABLISHED)),
        );
    }

    /// A TCP connection from client port `cport` to the VIP's `port`, DNATed to
    /// `server`:80, in `state` (None: an update without the state).
    fn conn(cport: u16, port: u16, server: &str, state: Option<TcpState>) -> Entry {
        Entry {
            orig: Tuple::tcp(ip("198.18.0.10"), cport, ip(VIP), port),
            reply: Tuple::tcp(ip(server), 80, ip("198.18.1.100"), cport),
            status: Status(0),
            timeout: Some(100),
            mark: None,
            zone: None,
            tcp: state.map(TcpInfo::in_state),
            id: None,
        }
    }

    fn vips() -> HashSet<Vip> {
        [(ip(VIP), 6)].into()
    }

    const S1: &str = "198.18.1.21";
    const S2: &str = "198.18.1.22";

    #[test]
    fn events_keep_the_counts_exact() {
        let web = service(PortSpec::Single(80), &[(S1, Some(80)), (S2, Some(80))]);
        let mut c = Counts::default();
        c.resync(vips(), &[], false);
        assert_eq!(c.load(&web), (vec![0.0, 0.0], 0));
        // A new connection is inactive until established.
        c.apply(
            EventKind::New,
            &conn(1000, 80, S1, Some(TcpState::SYN_SENT)),
        );
        assert_eq!(c.load(&web), (vec![1.0 / 256.0, 0.0], 1));
        assert!(c.is_dirty());
        assert_eq!(c.take_dirty(), [((ip(VIP), 6), 80)].into());
        c.apply(
            EventKind::Update,
            &conn(1000, 80, S1, Some(TcpState::SYN_RECV)),
        );
        assert!(!c.is_dirty(), "inactive to inactive changes nothing");
        c.apply(
            EventKind::Update,
            &conn(1000, 80, S1, Some(TcpState::ESTABLISHED)),
        );
        assert_eq!(c.load(&web).0, vec![1.0, 0.0]);
        // An update without the state (a mark, a status bit) keeps it.
        c.apply(EventKind::Update, &conn(1000, 80, S1, None));
        assert_eq!(c.load(&web).0, vec![1.0, 0.0]);
        established(&mut c, 1001, 80, S2);
        assert_eq!(c.load(&web), (vec![1.0, 1.0], 2));
        // Closing: inactive (TIME_WAIT) until destroyed.
        c.apply(
            EventKind::Update,
            &conn(1000, 80, S1, Some(TcpState::FIN_WAIT)),
        );
        c.apply(
            EventKind::Update,
            &conn(1000, 80, S1, Some(TcpState::TIME_WAIT)),
        );
        assert_eq!(c.load(&web).0, vec![1.0 / 256.0, 1.0]);
        c.apply(
            EventKind::Destroy,
            &conn(1000, 80, S1, Some(TcpState::CLOSE)),
        );
        assert_eq!(c.load(&web).0, vec![0.0, 1.0]);
        // Destroying what was never counted changes nothing.
        c.apply(
            EventKind::Destroy,
            &conn(1000, 80, S1, Some(TcpState::CLOSE)),
        );
        assert_eq!(c.load(&web).0, vec![0.0, 1.0]);
        assert_eq!(c.connections(), 1);
    }

    #[test]
    fn other_vips_ports_and_protocols_are_apart() {
        let web = service(PortSpec::Single(80), &[(S1, Some(80))]);
        let mut c = Counts::default();
        c.resync(vips(), &[], false);
        // Another VIP: not counted at all.
        let mut other = conn(1, 80, S1, Some(TcpState::ESTABLISHED));
        other.orig.dst = ip("198.18.0.101");
        c.apply(EventKind::New, &other);
        assert_eq!(c.connections(), 0);
        // Another port of the VIP: counted, not for this service.
        established(&mut c, 2, 443, S1);
        assert_eq!(c.load(&web), (vec![0.0], 0));
        // UDP is active without a state, and apart from TCP.
        let mut udp = conn(3, 80, S1, None);
        udp.orig.proto = 17;
        udp.reply.proto = 17;
        c.apply(EventKind::New, &udp);
        assert_eq!(c.load(&web), (vec![0.0], 0));
        let mut c2 = Counts::default();
        c2.resync([(ip(VIP), 17)].into(), &[], false);
        c2.apply(EventKind::New, &udp);
        let mut dns = web.clone();
        dns.protocol = Protocol::Udp;
        assert_eq!(c2.load(&dns), (vec![1.0], 1));
    }

    #[test]
    fn a_port_range_counts_each_port_by_its_server_port() {
        // No server port: a connection keeps its port.
        let range = service(PortSpec::Range(8000, 8010), &[(S1, None), (S2, Some(80))]);
        let mut c = Counts::default();
        c.resync(vips(), &[], false);
        let mut e = conn(1, 8005, S1, Some(TcpState::ESTABLISHED));
        e.reply = Tuple::tcp(ip(S1), 8005, ip("198.18.1.100"), 1);
        c.apply(EventKind::New, &e);
        established(&mut c, 2, 8001, S2);
        established(&mut c, 3, 8011, S2);
        assert_eq!(c.load(&range), (vec![1.0, 1.0], 2));
    }

    #[test]
    fn a_dump_sets_the_counts_and_later_events_apply_on_top() {
        let web = service(PortSpec::Single(80), &[(S1, Some(80)), (S2, Some(80))]);
        let mut c = Counts::default();
        c.resync(vips(), &[], false);
        established(&mut c, 1, 80, S1);
        established(&mut c, 2, 80, S1);
        c.take_dirty();
        // Events were lost: connection 1 ended, 3 and 4 came; the dump shows it.
        let dump = [
            conn(2, 80, S1, Some(TcpState::ESTABLISHED)),
            conn(3, 80, S2, Some(TcpState::ESTABLISHED)),
            conn(4, 80, S2, Some(TcpState::SYN_RECV)),
        ];
        c.resync(vips(), &dump, false);
        assert_eq!(c.load(&web), (vec![1.0, 1.0 + 1.0 / 256.0], 2));
        assert_eq!(c.connections(), 3);
        assert!(c.is_dirty());
        // Events queued before the dump and read after it: 4's establishment (shown
        // already: nothing changes) and 2's end.
        c.take_dirty();
        c.apply(
            EventKind::Update,
            &conn(4, 80, S2, Some(TcpState::SYN_RECV)),
        );
        assert!(!c.is_dirty());
        c.apply(
            EventKind::Update,
            &conn(4, 80, S2, Some(TcpState::ESTABLISHED)),
        );
        c.apply(EventKind::Destroy, &conn(2, 80, S1, Some(TcpState::CLOSE)));
        assert_eq!(c.load(&web).0, vec![0.0, 2.0]);
        // An identical dump changes nothing.
        let same = [
            conn(3, 80, S2, Some(TcpState::ESTABLISHED)),
            conn(4, 80, S2, Some(TcpState::ESTABLISHED)),
        ];
        c.take_dirty();
        c.resync(vips(), &same, false);
        assert!(!c.is_dirty());
        // Counting by dumps alone: what the counts did not know arrived.
        c.resync(
            vips(),
            &[
                conn(3, 80, S2, Some(TcpState::ESTABLISHED)),
                conn(5, 80, S1, Some(TcpState::ESTABLISHED)),
            ],
            true,
        );
        assert_eq!(c.load(&web), (vec![1.0, 1.0], 3));
        // Arrivals at another port of the VIP are not this service's.
        c.apply(EventKind::New, &conn(6, 81, S1, Some(TcpState::SYN_SENT)));
        assert_eq!(c.load(&web).1, 3);
        // A VIP no longer wanted is forgotten.
        c.resync(HashSet::new(), &same, false);
        assert_eq!(c.load(&web), (vec![0.0, 0.0], 0));
        assert_eq!(c.connections(), 0);
    }

    #[test]
    fn the_first_dump_counts_no_arrivals() {
        let web = service(PortSpec::Single(80), &[(S1, Some(80))]);
        let mut c = Counts::default();
        assert!(!c.synced());
        c.resync(
            vips(),
            &[conn(1, 80, S1, Some(TcpState::ESTABLISHED))],
            true,
        );
        assert!(c.synced());
        assert_eq!(c.load(&web), (vec![1.0], 0));
    }
}
