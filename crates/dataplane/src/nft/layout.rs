//! The nft layout as data: which chains, maps, elements and rules a desired state
//! needs (pure; no kernel), and the difference between two such tables.
//!
//! Layout (nft CLI equivalents; `<T>` is the table, family inet):
//! ```text
//! # chain names avoid nft keywords so that `nft list chain inet lbsuite lb_snat` works
//! chain lb_dnat       { type nat hook prerouting priority dstnat; }      # single-port services
//! chain lb_dnat_range { type nat hook prerouting priority dstnat + 1; }  # port ranges
//! chain lb_snat       { type nat hook postrouting priority srcnat; }
//! chain lb_count      { type filter hook forward priority filter; }
//! chain lb_conn       { type nat hook postrouting priority srcnat - 1; }
//!
//! # random and source hash: one map per (family, selector, slot count M), one rule per map:
//! map dnat4_rand_4 { type inet_proto . ipv4_addr . inet_service . mark : ipv4_addr . inet_service; }
//! meta nfproto ipv4 dnat ip to meta l4proto . ip daddr . th dport . numgen random mod 4 map @dnat4_rand_4
//! #   selectors: rand = numgen random (random);
//! #   hash = jhash ip saddr mod M seed 0x4c425355 (sh, and mh with M = Maglev size)
//! # round robin (rr, wrr; lc and wlc over 32 slots lbd refills): a counter per service. A verdict map leads a service's
//! # new connections to a chain of its own, whose one rule advances its own counter
//! # (numgen inc) and looks the slot up in a map its service shares with the others
//! # of its bucket (a hash of protocol, VIP and port, 1 of 256: see RR_BUCKETS):
//! map svc4 { type inet_proto . ipv4_addr . inet_service : verdict; }   # tcp . 198.18.0.100 . 80 : jump svc_tcp_198.18.0.100_80
//! meta nfproto ipv4 meta l4proto . ip daddr . th dport vmap @svc4
//! chain svc_tcp_198.18.0.100_80 {
//!     meta nfproto ipv4 dnat ip to meta l4proto . ip daddr . th dport . numgen inc mod 4 map @dnat4_bucket_17
//! }
//! # ranges keep the port: key with an interval on the port, data the address only
//! map dnatr4_rand_2 { type ... : ipv4_addr; flags interval; counter; }
//! meta nfproto ipv4 dnat ip to meta l4proto . ip daddr . th dport . numgen random mod 2 map @dnatr4_rand_2
//! # (round robin on ranges: svcr4, dnatr4_bucket_<bucket>, chains as above)
//!
//! # persistence (any scheduler): the service's chain first sends a remembered
//! # client to its server, one rule per server with a weight above 0, then schedules:
//! chain svc_tcp_198.18.0.100_80 {
//!     meta nfproto ipv4 ip saddr & 255.255.255.0 . 198.18.0.100 . 80 . 198.18.1.21 . 80 @persist4_tcp dnat ip to 198.18.1.21:80
//!     ... (the scheduling rule, as for round robin, over the bucket's map)
//! }
//! # and a connection's first packet after NAT remembers where it went:
//! map rec4 { type inet_proto . ipv4_addr . inet_service : verdict; }
//! meta nfproto ipv4 meta l4proto . ct original ip daddr . ct original proto-dst vmap @rec4   # in lb_conn
//! chain rec_tcp_198.18.0.100_80 {
//!     update @persist4_tcp { ct original ip saddr & 255.255.255.0 . 198.18.0.100 . 80 . ct reply ip saddr . ct reply proto-src timeout 300s }
//! }
//! set persist4_tcp { type ipv4_addr . ipv4_addr . inet_service . ipv4_addr . inet_service; flags dynamic, timeout; size 1048576; }
//!
//! # per-backend new connections (Counting::Connections, the default, and Traffic):
//! # a nat chain sees only a connection's first packet, so no per-packet work
//! set conn4 { type inet_proto . ipv4_addr . inet_service . ipv4_addr . inet_service; counter; }
//! meta nfproto ipv4 meta l4proto . ct original ip daddr . ct original proto-dst . ct reply ip saddr . ct reply proto-src @conn4
//! # (port-range services count connections on their DNAT slots instead: `counter` on dnatr maps)
//!
//! # per-backend packets/bytes (Counting::Traffic only), both directions, one lookup per
//! # forwarded packet:
//! set count4 { (as conn4) }
//! meta nfproto ipv4 meta l4proto . ct original ip daddr . ct original proto-dst . ct reply ip saddr . ct reply proto-src @count4
//!
//! # A base chain exists only while it has rules: an empty one still costs its hook.
//!
//! # SNAT, in the rules' order. Consecutive address-only rules that match the same
//! # fields share a map keyed by those fields (one lookup per new connection, however
//! # many rules); the key has l4proto if the rules name a protocol, iifname/oifname
//! # if they name interfaces, the port if they name one (an interval map for ranges):
//! map snat4_1 { type inet_proto . ifname . ifname . ipv4_addr . inet_service : ipv4_addr; }
//! meta nfproto ipv4 snat ip to meta l4proto . iifname . oifname . ct original ip daddr . ct original proto-dst map @snat4_1
//! # a rule whose port range overlaps one of the map's starts the next map (snat4_2),
//! # so that the first rule that matches still wins; a rule with a pool has its own:
//! map snat_<rule> { type mark : ipv4_addr . inet_service . ipv4_addr . inet_service; }   # 0 : 198.18.1.100 . 20000 . 198.18.1.100 . 29999
//! meta nfproto ipv4 meta l4proto tcp ... ct original ip daddr 198.18.0.100 snat ip to numgen inc mod 2 map @snat_<rule>
//! ```
//! Each rule carries a comment that names it completely (map name, or SNAT rule name
//! and a digest of its match), so rules are compared by comment.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::expr::{reg, Expr, NFT_DYNSET_OP_UPDATE};
use crate::model::{NatProtocol, PortSpec, Scheduler, Service, SnatRule, SnatSource};
use crate::slots;
use crate::{
    DataplaneError, DesiredState, DnatSlot, Drift, NftChanges, NftElement, NftSet, NftTable,
    Protocol,
};

/// jhash seed: fixed so both nodes hash a client to the same slot.
pub const HASH_SEED: u32 = 0x4c42_5355;

/// A base chain of the layout.
#[derive(Clone, Copy, Debug)]
pub struct ChainDef {
    /// Chain name.
    pub name: &'static str,
    /// true: nat chain; false: filter.
    pub nat: bool,
    /// Hook.
    pub hook: nftnl::Hook,
    /// Priority.
    pub priority: i32,
}

/// The chains, in creation order.
pub const CHAINS: [ChainDef; 5] = [
    ChainDef {
        name: "lb_dnat",
        nat: true,
        hook: nftnl::Hook::PreRouting,
        priority: -100,
    },
    ChainDef {
        name: "lb_dnat_range",
        nat: true,
        hook: nftnl::Hook::PreRouting,
        priority: -99,
    },
    ChainDef {
        name: "lb_snat",
        nat: true,
        hook: nftnl::Hook::PostRouting,
        priority: 100,
    },
    ChainDef {
        name: "lb_count",
        nat: false,
        hook: nftnl::Hook::Forward,
        priority: 0,
    },
    // A nat chain sees a connection's first packet only; before lb_snat so that the
    // SNAT statement (which ends the nat hook) comes after the count.
    ChainDef {
        name: "lb_conn",
        nat: true,
        hook: nftnl::Hook::PostRouting,
        priority: 99,
    },
];

/// The base chain called `name`.
pub fn chain_def(name: &str) -> Option<ChainDef> {
    CHAINS.iter().find(|c| c.name == name).copied()
}

/// What the nft backend counts per backend of a service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Counting {
    /// Nothing: DNAT maps without element counters, no per-packet lookup.
    Off,
    /// New connections per backend: a counter on each DNAT slot, touched by a
    /// connection's first packet only (no per-packet work).
    #[default]
    Connections,
    /// Connections, plus packets and bytes per backend (both directions, single-port
    /// services): one set lookup in the forward hook per forwarded packet, which costs
    /// new-connection throughput (see the lb_bench figures).
    Traffic,
}

impl Counting {
    /// Whether the slots of a DNAT map count (port ranges only: single-port services
    /// count per backend in the conn sets, a counter per backend instead of per slot).
    fn dnat_counters(self, range: bool) -> bool {
        range && self != Counting::Off
    }
}

/// NFT_SET_CONCAT (nf_tables.h; not in libc): a concatenation with intervals.
const NFT_SET_CONCAT: u32 = 0x80;

/// NFT_DATA_VERDICT (nf_tables.h): a map whose data are verdicts.
const NFT_DATA_VERDICT: u32 = 0xffff_ff00;

// nft's datatype numbers, for `nft list` to print keys readably.
const T_MARK: u32 = 19;
const T_IPV4: u32 = 7;
const T_IPV6: u32 = 8;
const T_PROTO: u32 = 12;
const T_SERVICE: u32 = 13;
const T_IFNAME: u32 = 41;

fn concat_type(types: &[u32]) -> u32 {
    types.iter().fold(0, |t, &x| (t << 6) | x)
}

/// Shape of a map or set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetSpec {
    /// NFT_SET_* flags.
    pub flags: u32,
    /// Key length in bytes (register-aligned).
    pub key_len: u32,
    /// nft datatype of the key (display only).
    pub key_type: u32,
    /// Data length (0: a set, not a map).
    pub data_len: u32,
    /// nft datatype of the data (display only).
    pub data_type: u32,
    /// Field lengths of a concatenated interval key (empty otherwise).
    pub concat: Vec<u8>,
    /// Elements carry a counter.
    pub counter: bool,
    /// Most elements the kernel lets the set hold (0: no limit): the persist sets'
    /// bound, and the room the sets lbd fills are created with ([`set_capacity`]).
    pub size: u32,
}

/// Fewest elements a set lbd fills is created with room for.
pub const MIN_CAPACITY: u32 = 256;

/// The room a set that holds `n` elements is created with: half as much again as
/// `n`, rounded up to a power of two, at least [`MIN_CAPACITY`]. Given a size, the
/// kernel picks its fixed-size hash and sizes the table for it once: a batch that
/// fills 80,000 elements no longer grows (rehashes) the table step by step, which was
/// an eighth of a 10,000-service apply. Not more room than that: a rule that binds a
/// map walks all of the map's hash buckets. The size is also a bound (more elements
/// are refused with ENFILE): a set that outgrows it is created anew, larger, by a
/// full apply. Interval sets (rbtree, pipapo) and the persist sets keep their own
/// sizing.
pub fn set_capacity(spec: &SetSpec, n: usize) -> u32 {
    let dynamic = (libc::NFT_SET_EVAL | libc::NFT_SET_TIMEOUT) as u32;
    if spec.flags & (libc::NFT_SET_INTERVAL as u32 | dynamic) != 0 {
        return spec.size;
    }
    let want = u32::try_from(n.saturating_add(n / 2)).unwrap_or(u32::MAX);
    want.checked_next_power_of_two()
        .unwrap_or(u32::MAX)
        .max(MIN_CAPACITY)
}

impl SetSpec {
    /// Whether a set of shape `other` (as read back) holds our elements the same way:
    /// the kernel may report flags it added and no concat description.
    pub fn same_shape(&self, other: &SetSpec) -> bool {
        let relevant = (libc::NFT_SET_MAP | libc::NFT_SET_INTERVAL | libc::NFT_SET_TIMEOUT) as u32;
        self.flags & relevant == other.flags & relevant
            && self.key_len == other.key_len
            && self.data_len == other.data_len
            && self.counter == other.counter
    }

    /// Whether a set of this shape, as held, has room for `n` elements.
    pub fn holds(&self, n: usize) -> bool {
        self.size == 0 || n <= self.size as usize
    }
}

/// Key of an element: start and, for interval maps, end.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ElemKey {
    /// Key bytes.
    pub key: Vec<u8>,
    /// Range end.
    pub key_end: Option<Vec<u8>>,
}

/// An element's data and the comment it is written with. The comment names what
/// the element belongs to (`web srv1`, a SNAT rule's name) for `nft list`; it is no
/// part of the element's identity: elements with the same data are equal.
#[derive(Clone, Debug, Default)]
pub struct ElemData {
    /// Data bytes (empty for sets).
    pub data: Vec<u8>,
    /// Comment (empty: none, or not read back).
    pub comment: String,
}

impl ElemData {
    /// Data with a comment.
    pub fn new(data: Vec<u8>, comment: String) -> ElemData {
        ElemData { data, comment }
    }
}

impl PartialEq for ElemData {
    fn eq(&self, other: &ElemData) -> bool {
        self.data == other.data
    }
}

impl Eq for ElemData {}

/// A map or set with elements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetState {
    /// Shape.
    pub spec: SetSpec,
    /// Element key to data (empty data for sets).
    pub elements: BTreeMap<ElemKey, ElemData>,
    /// Counters per element, when read from the kernel.
    pub counters: HashMap<ElemKey, (u64, u64)>,
}

/// The table as held (read back or recorded) or wanted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableState {
    /// The table exists.
    pub exists: bool,
    /// Its chains.
    pub chains: BTreeSet<String>,
    /// Its sets.
    pub sets: BTreeMap<String, SetState>,
    /// Rule comments per chain, in order.
    pub rules: BTreeMap<String, Vec<String>>,
}

impl TableState {
    /// As the public read-back type.
    pub fn to_table(&self) -> NftTable {
        NftTable {
            exists: self.exists,
            chains: self.chains.iter().cloned().collect(),
            sets: self
                .sets
                .iter()
                .map(|(name, s)| NftSet {
                    name: name.clone(),
                    elements: s
                        .elements
                        .iter()
                        .map(|(k, d)| NftElement {
                            key: k.key.clone(),
                            key_end: k.key_end.clone(),
                            data: d.data.clone(),
                            counter: s.counters.get(k).copied(),
                            slot: decode_slot(name, k, &d.data),
                        })
                        .collect(),
                })
                .collect(),
            rules: self
                .rules
                .iter()
                .flat_map(|(c, rs)| rs.iter().map(move |r| (c.clone(), r.clone())))
                .collect(),
        }
    }
}

/// A rule to add: its comment (identity) and expressions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedRule {
    /// Comment naming the rule.
    pub comment: String,
    /// Expressions.
    pub exprs: Vec<Expr>,
}

/// The full wanted table.
#[derive(Clone, Debug, Default)]
pub struct Layout {
    /// Table contents.
    pub state: TableState,
    /// Rules per chain, in order.
    pub rules: BTreeMap<String, Vec<PlannedRule>>,
}

/// What picks a DNAT map: (IPv4?, port range?, selector, number). The number is
/// the slot count M for `rand` and `hash`, the bucket for `rr` (whose services
/// each have a counter of their own: the map holds only their slots).
pub type MapKind = (bool, bool, &'static str, u32);

/// Round-robin services spread over this many slot maps (by a hash of their claim).
/// Each service's rule costs the kernel a walk of the table's maps by name (about
/// half the buckets), and each slot added to a map a check per rule bound to it
/// (the map's services): one map for all or one per service is quadratic; 256 was
/// cheapest at 10,000 services (kernel CPU time measured at 64, 128, 256 and 1,024).
pub const RR_BUCKETS: u32 = 256;

/// The DNAT map of a kind: `dnat[r]{4|6}_{selector}_{M or bucket}`.
pub fn dnat_map_name(kind: MapKind) -> String {
    let (v4, range, selector, m) = kind;
    format!(
        "dnat{}{}_{}_{}",
        if range { "r" } else { "" },
        if v4 { 4 } else { 6 },
        selector,
        m
    )
}

/// The verdict map that leads the new connections of the services with a chain of
/// their own (round robin) to that chain: `svc[r]{4|6}`.
pub fn jump_map_name(v4: bool, range: bool) -> &'static str {
    map_name(&JUMP_MAPS, v4, range)
}

/// (IPv4?, port range?) of a verdict map (inverse of [`jump_map_name`]).
fn jump_map_kind(name: &str) -> Option<(bool, bool)> {
    map_kind(&JUMP_MAPS, name)
}

/// A family of four verdict maps, by (IPv4?, port range?): single port v4, range
/// v4, single port v6, range v6.
type MapFamily = [(&'static str, (bool, bool)); 4];

const JUMP_MAPS: MapFamily = [
    ("svc4", (true, false)),
    ("svcr4", (true, true)),
    ("svc6", (false, false)),
    ("svcr6", (false, true)),
];

const REMEMBER_MAPS: MapFamily = [
    ("rec4", (true, false)),
    ("recr4", (true, true)),
    ("rec6", (false, false)),
    ("recr6", (false, true)),
];

fn map_name(family: &MapFamily, v4: bool, range: bool) -> &'static str {
    // Every (v4, range) pair is in each family.
    family
        .iter()
        .find(|(_, kind)| *kind == (v4, range))
        .map_or("", |(name, _)| name)
}

fn map_kind(family: &MapFamily, name: &str) -> Option<(bool, bool)> {
    family
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, kind)| *kind)
}

/// Whether `name` is one of the verdict maps (elements jump to a chain).
pub fn is_jump_map(name: &str) -> bool {
    jump_map_kind(name).is_some() || remember_map_kind(name).is_some()
}

/// The chain of a service that has one: `svc_<protocol>_<vip>_<port or range>`
/// (the claim: unique, and stable while the service keeps its address).
pub fn service_chain_name(c: &Claim) -> String {
    format!("svc_{}_{}_{}", c.0, c.1, c.2)
}

/// The round-robin bucket of a claim (FNV-1a of its text, the same on both nodes).
fn rr_bucket(c: &Claim) -> u32 {
    (digest(&format!("{} {} {}", c.0, c.1, c.2)) % u64::from(RR_BUCKETS)) as u32
}

/// The kind of a DNAT map from its name (inverse of [`dnat_map_name`]).
fn dnat_map_kind(name: &str) -> Option<MapKind> {
    let rest = name.strip_prefix("dnat")?;
    let (range, rest) = match rest.strip_prefix('r') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let (fam, rest) = rest.split_once('_')?;
    let (sel, m) = rest.split_once('_')?;
    let v4 = match fam {
        "4" => true,
        "6" => false,
        _ => return None,
    };
    let selector = ["bucket", "rand", "hash"].into_iter().find(|k| *k == sel)?;
    Some((v4, range, selector, m.parse().ok()?))
}

/// The base chain whose rule uses a set of the services' layout (DNAT maps of
/// `rand` and `hash`, verdict maps, counter sets); None for other sets (round-robin
/// slot maps belong to the services' chains, SNAT maps to SNAT rules).
pub fn chain_of_set(name: &str) -> Option<&'static str> {
    rule_of_set(name).map(|(chain, _)| chain)
}

/// The one rule that uses a DNAT map, verdict map or counter set of the layout: its
/// base chain and the rule (None for other sets: round-robin slot maps are used by
/// the services' own chains, SNAT maps by SNAT rules).
pub fn rule_of_set(name: &str) -> Option<(&'static str, PlannedRule)> {
    if let Some((v4, range, selector, m)) = dnat_map_kind(name) {
        if selector == "bucket" {
            return None;
        }
        let chain = if range { "lb_dnat_range" } else { "lb_dnat" };
        return Some((
            chain,
            PlannedRule {
                comment: format!("dnat @{name}"),
                exprs: dnat_rule(v4, range, selector, m, name),
            },
        ));
    }
    if let Some((v4, range)) = jump_map_kind(name) {
        let chain = if range { "lb_dnat_range" } else { "lb_dnat" };
        return Some((
            chain,
            PlannedRule {
                comment: format!("jump @{name}"),
                exprs: jump_rule(v4, name),
            },
        ));
    }
    if let Some((v4, _)) = remember_map_kind(name) {
        return Some((
            "lb_conn",
            PlannedRule {
                comment: format!("jump @{name}"),
                exprs: remember_jump_rule(v4, name),
            },
        ));
    }
    let (chain, verb, v4) = match name {
        "count4" => ("lb_count", "count", true),
        "count6" => ("lb_count", "count", false),
        "conn4" => ("lb_conn", "conn", true),
        "conn6" => ("lb_conn", "conn", false),
        _ => return None,
    };
    Some((
        chain,
        PlannedRule {
            comment: format!("{verb} @{name}"),
            exprs: count_rule(v4, name),
        },
    ))
}

/// An empty map or set of the layout with its shape, by name (None for SNAT pools).
pub fn empty_set(name: &str, counting: Counting) -> Option<SetState> {
    if let Some((v4, range, _, _)) = dnat_map_kind(name) {
        return Some(dnat_map(v4, range, counting.dnat_counters(range)));
    }
    if let Some((v4, range)) = jump_map_kind(name) {
        return Some(jump_map(v4, range));
    }
    if let Some((v4, range)) = remember_map_kind(name) {
        return Some(remember_map(v4, range));
    }
    if let Some((v4, range)) = persist_set_kind(name) {
        return Some(persist_set(v4, range));
    }
    match name {
        "count4" | "conn4" => Some(count_set(true)),
        "count6" | "conn6" => Some(count_set(false)),
        _ => None,
    }
}

/// One DNAT slot of a service: key, data, backend index.
pub type PlannedSlot = (ElemKey, Vec<u8>, usize);

/// What one service puts into the table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServicePlan {
    /// DNAT map and its slots; None without a positive weight.
    pub dnat: Option<(MapKind, String, Vec<PlannedSlot>)>,
    /// Packet/byte counter set and its keys (key, backend index); None for port ranges.
    pub count: Option<(&'static str, Vec<(ElemKey, usize)>)>,
    /// Connection counter set and its keys; None for port ranges (their DNAT slots count).
    pub conn: Option<(&'static str, Vec<(ElemKey, usize)>)>,
    /// The service's own chains and their rules (round robin: the rule holds the
    /// service's counter; persistence: its clients' servers, and the chain that
    /// remembers them); empty for the others.
    pub chains: Vec<(String, Vec<PlannedRule>)>,
    /// The verdict maps that jump to those chains, the service's key in each and the
    /// chain (the element's data is the chain's name).
    pub jumps: Vec<(&'static str, ElemKey, String)>,
}

impl ServicePlan {
    /// Every element as (set, key, data, backend index); a verdict map's element,
    /// which belongs to no backend, comes with index 0 and the chain's name as data.
    pub fn elements(&self) -> impl Iterator<Item = (&str, &ElemKey, &[u8], usize)> {
        let dnat = self.dnat.iter().flat_map(|(_, name, elems)| {
            elems
                .iter()
                .map(move |(k, d, b)| (name.as_str(), k, d.as_slice(), *b))
        });
        let count = self
            .count
            .iter()
            .chain(&self.conn)
            .flat_map(|(name, elems)| elems.iter().map(move |(k, b)| (*name, k, &[][..], *b)));
        let jump = self
            .jumps
            .iter()
            .map(|(name, k, chain)| (*name, k, chain.as_bytes(), 0));
        dnat.chain(count).chain(jump)
    }
}

/// The claim a service makes: no two services may share it.
pub type Claim = (Protocol, IpAddr, PortSpec);

/// The claim of `s`.
pub fn claim(s: &Service) -> Claim {
    (s.protocol, s.vip, s.ports)
}

/// The elements `s` needs (validated), independent of every other service.
pub fn plan_service(s: &Service, counting: Counting) -> Result<ServicePlan, DataplaneError> {
    validate_service(s)?;
    let kind = selector(s)?;
    let v4 = s.vip.is_ipv4();
    let range = matches!(s.ports, PortSpec::Range(..));
    let mut plan = ServicePlan::default();
    // Per-backend counters (every backend, draining ones included): connections in
    // a nat chain (first packets only), packets and bytes in the forward hook.
    if let (PortSpec::Single(port), true) = (s.ports, counting != Counting::Off) {
        let mut elems: Vec<(ElemKey, usize)> = Vec::with_capacity(s.backends.len());
        for (i, b) in s.backends.iter().enumerate() {
            let mut key = Vec::with_capacity(4 + 2 * family_len(&s.vip) + 8);
            key.extend(proto_reg(s.protocol.number()));
            key.extend(addr_bytes(&s.vip));
            key.extend(port_reg(port));
            key.extend(addr_bytes(&b.addr));
            key.extend(port_reg(b.port.unwrap_or(port)));
            let k = ElemKey { key, key_end: None };
            // Two backends with one address and port share a key: the last one owns it.
            match elems.iter_mut().find(|(e, _)| *e == k) {
                Some(e) => e.1 = i,
                None => elems.push((k, i)),
            }
        }
        if counting == Counting::Traffic {
            plan.count = Some((if v4 { "count4" } else { "count6" }, elems.clone()));
        }
        plan.conn = Some((if v4 { "conn4" } else { "conn6" }, elems));
    }
    let table = service_slots(s);
    if table.is_empty() {
        return Ok(plan);
    }
    let m = table.len() as u32;
    // Round robin (a counter per service) and persistence need chains per service;
    // the slots then sit in the bucket's map, which no base-chain rule reads.
    let own_chain = kind == "inc" || s.persistence.is_some();
    let mk: MapKind = if own_chain {
        (v4, range, "bucket", rr_bucket(&claim(s)))
    } else {
        (v4, range, kind, m)
    };
    let map = dnat_map_name(mk);
    let (lo, hi) = s.ports.bounds();
    let key_of = |port: u16, slot: usize| {
        let mut key = Vec::with_capacity(12 + family_len(&s.vip));
        key.extend(proto_reg(s.protocol.number()));
        key.extend(addr_bytes(&s.vip));
        key.extend(port_reg(port));
        key.extend((slot as u32).to_ne_bytes());
        key
    };
    let elems = table
        .iter()
        .enumerate()
        .map(|(slot, &bi)| {
            let b = &s.backends[bi];
            let k = ElemKey {
                key: key_of(lo, slot),
                key_end: range.then(|| key_of(hi, slot)),
            };
            let mut data = addr_bytes(&b.addr);
            if !range {
                data.extend(port_reg(b.port.unwrap_or(lo)));
            }
            (k, data, bi)
        })
        .collect();
    if own_chain {
        let key_of = |port: u16| {
            let mut key = Vec::with_capacity(8 + family_len(&s.vip));
            key.extend(proto_reg(s.protocol.number()));
            key.extend(addr_bytes(&s.vip));
            key.extend(port_reg(port));
            key
        };
        let k = ElemKey {
            key: key_of(lo),
            key_end: range.then(|| key_of(hi)),
        };
        let c = claim(s);
        let chain = service_chain_name(&c);
        // The service's counter (or its random or hash pick): a rule of its own.
        let schedule = PlannedRule {
            comment: format!("dnat @{map} {}", how(kind, m)),
            exprs: dnat_rule(v4, range, kind, m, &map),
        };
        let rules = match s.persistence {
            None => vec![schedule],
            Some(p) => {
                let remember = format!("rec_{}_{}_{}", c.0, c.1, c.2);
                plan.jumps
                    .push((remember_map_name(v4, range), k.clone(), remember.clone()));
                plan.chains.push((remember, vec![remember_rule(s, p)]));
                let mut rules = known_client_rules(s, p);
                rules.push(schedule);
                rules
            }
        };
        plan.jumps
            .push((jump_map_name(v4, range), k, chain.clone()));
        plan.chains.insert(0, (chain, rules));
    }
    plan.dnat = Some((mk, map, elems));
    Ok(plan)
}

/// How a selector picks a slot, in a rule's comment.
fn how(sel: &str, m: u32) -> String {
    match sel {
        "inc" => format!("numgen inc mod {m}"),
        "rand" => format!("numgen random mod {m}"),
        _ => format!("jhash ip saddr mod {m}"),
    }
}

/// The verdict map that leads a persistent service's connections, once NATed, to
/// the chain that remembers the client's server: `rec[r]{4|6}` in lb_conn, keyed by
/// the connection's original protocol . destination . port.
pub fn remember_map_name(v4: bool, range: bool) -> &'static str {
    map_name(&REMEMBER_MAPS, v4, range)
}

/// (IPv4?, port range?) of a remember map.
fn remember_map_kind(name: &str) -> Option<(bool, bool)> {
    map_kind(&REMEMBER_MAPS, name)
}

/// The dynamic sets of the persistent services' clients and their servers, one per
/// protocol: `persist[r]{4|6}_{tcp|udp}`, keyed by client network . VIP . first
/// port . server address (. server port), each element until its timeout. Written
/// by the packet path (lb_conn, after NAT), read by the services' chains. They
/// exist while their remember map does.
pub fn persist_sets_of(remember_map: &str) -> Option<[&'static str; 2]> {
    match remember_map {
        "rec4" => Some(["persist4_tcp", "persist4_udp"]),
        "recr4" => Some(["persistr4_tcp", "persistr4_udp"]),
        "rec6" => Some(["persist6_tcp", "persist6_udp"]),
        "recr6" => Some(["persistr6_tcp", "persistr6_udp"]),
        _ => None,
    }
}

/// The persist set of a service.
fn persist_set_name(s: &Service) -> &'static str {
    let range = matches!(s.ports, PortSpec::Range(..));
    let sets = persist_sets_of(remember_map_name(s.vip.is_ipv4(), range)).unwrap_or_default();
    sets[usize::from(s.protocol == Protocol::Udp)]
}

/// (IPv4?, port range?) of a persist set.
fn persist_set_kind(name: &str) -> Option<(bool, bool)> {
    ["rec4", "recr4", "rec6", "recr6"]
        .into_iter()
        .find(|r| persist_sets_of(r).is_some_and(|s| s.contains(&name)))
        .and_then(remember_map_kind)
}

/// Whether the kernel writes the elements of `name` (persist sets): an apply never
/// compares or deletes them.
pub fn is_dynamic(name: &str) -> bool {
    persist_set_kind(name).is_some()
}

/// Most clients a persist set remembers (per family and port kind); beyond it, new
/// clients are balanced without being remembered.
pub const PERSIST_MAX: u32 = 1 << 20;

/// The client's network, then the service (immediates: VIP . first port, the same
/// for every port of a range; the protocol is the set's) from register 0 on; the
/// server follows at register 2a + 1. `client` loads the client's address into
/// register 0. (Immediates as long as their field: `nft list` reads them so.)
fn persist_key(s: &Service, p: crate::model::Persistence, client: Expr) -> Vec<Expr> {
    let v4 = s.vip.is_ipv4();
    let a = if v4 { 1 } else { 4 };
    let bits = 32 * a;
    let mut key = vec![client];
    let prefix = u32::from(p.prefix_len).min(bits);
    if prefix < bits {
        let mut mask = vec![0u8; 4 * a as usize];
        for (i, byte) in mask.iter_mut().enumerate() {
            let have = prefix.saturating_sub(8 * i as u32).min(8);
            *byte = (0xffu16 << (8 - have)) as u8;
        }
        key.push(Expr::Bitwise {
            sreg: reg(0),
            dreg: reg(0),
            xor: vec![0; mask.len()],
            mask,
        });
    }
    let (lo, _) = s.ports.bounds();
    key.push(Expr::Immediate {
        dreg: reg(a),
        data: addr_bytes(&s.vip),
    });
    key.push(Expr::Immediate {
        dreg: reg(2 * a),
        data: lo.to_be_bytes().to_vec(),
    });
    key
}

/// A persistent service's first rules, one per server that takes new connections
/// (weight above 0): a client remembered with that server goes to it. (A server
/// that leaves takes its rule along: its clients are scheduled anew.)
fn known_client_rules(s: &Service, p: crate::model::Persistence) -> Vec<PlannedRule> {
    let v4 = s.vip.is_ipv4();
    let range = matches!(s.ports, PortSpec::Range(..));
    let a = if v4 { 1 } else { 4 };
    let persist = persist_set_name(s);
    let (lo, _) = s.ports.bounds();
    let client = Expr::Payload {
        base: libc::NFT_PAYLOAD_NETWORK_HEADER as u32,
        offset: if v4 { 12 } else { 8 },
        len: 4 * a,
        dreg: reg(0),
    };
    let mut seen = BTreeSet::new();
    s.backends
        .iter()
        .filter(|b| b.weight > 0)
        .filter(|b| seen.insert((b.addr, b.port)))
        .map(|b| {
            // (nfproto first: `nft list` then reads the payload as the client's address)
            let mut e: Vec<Expr> = nfproto(v4).into();
            e.extend(persist_key(s, p, client.clone()));
            e.push(Expr::Immediate {
                dreg: reg(2 * a + 1),
                data: addr_bytes(&b.addr),
            });
            if !range {
                e.push(Expr::Immediate {
                    dreg: reg(3 * a + 1),
                    data: b.port.unwrap_or(lo).to_be_bytes().to_vec(),
                });
            }
            e.push(Expr::Lookup {
                set: persist.to_owned(),
                sreg: reg(0),
                dreg: None,
            });
            e.push(Expr::Nat {
                snat: false,
                v4,
                addr_min: Some(reg(2 * a + 1)),
                addr_max: None,
                proto_min: (!range).then(|| reg(3 * a + 1)),
                proto_max: None,
            });
            PlannedRule {
                comment: format!(
                    "persist /{}: a remembered client of {} keeps it",
                    p.prefix_len, b.name
                ),
                exprs: e,
            }
        })
        .collect()
}

/// The rule of a persistent service's remember chain (lb_conn: a connection's first
/// packet after NAT): (client network, service, the server it went to) is added to
/// the persist set, or its timeout restarts.
fn remember_rule(s: &Service, p: crate::model::Persistence) -> PlannedRule {
    let v4 = s.vip.is_ipv4();
    let range = matches!(s.ports, PortSpec::Range(..));
    let a = if v4 { 1 } else { 4 };
    let (src, addr) = if v4 {
        (libc::NFT_CT_SRC_IP, libc::NFT_CT_SRC_IP)
    } else {
        (libc::NFT_CT_SRC_IP6, libc::NFT_CT_SRC_IP6)
    };
    let persist = persist_set_name(s);
    let mut e = persist_key(
        s,
        p,
        Expr::Ct {
            key: src as u32,
            dir: 0,
            dreg: reg(0),
        },
    );
    // The server: the reply's source.
    e.push(Expr::Ct {
        key: addr as u32,
        dir: 1,
        dreg: reg(2 * a + 1),
    });
    if !range {
        e.push(Expr::Ct {
            key: libc::NFT_CT_PROTO_SRC as u32,
            dir: 1,
            dreg: reg(3 * a + 1),
        });
    }
    e.push(Expr::Dynset {
        op: NFT_DYNSET_OP_UPDATE,
        set: persist.to_owned(),
        sreg_key: reg(0),
        sreg_data: None,
        timeout_ms: u64::from(p.timeout_s) * 1000,
    });
    PlannedRule {
        comment: format!(
            "persist /{}: remember the client's server for {}s after its last connection",
            p.prefix_len, p.timeout_s
        ),
        exprs: e,
    }
}

fn family_len(addr: &IpAddr) -> usize {
    if addr.is_ipv4() {
        4
    } else {
        16
    }
}

fn addr_bytes(addr: &IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn port_reg(p: u16) -> [u8; 4] {
    let b = p.to_be_bytes();
    [b[0], b[1], 0, 0]
}

fn proto_reg(p: u8) -> [u8; 4] {
    [p, 0, 0, 0]
}

/// Selector kind of a scheduler, or an error for those the nft backend's
/// [`Capabilities`](crate::Capabilities) leave out (a test holds the two together;
/// no catch-all, so a new scheduler is a decision here).
fn selector(s: &Service) -> Result<&'static str, DataplaneError> {
    match s.scheduler {
        // lc, wlc: round robin over slots whose shares lbd feeds from the servers'
        // connection counts (`slots::least_conn_slots`).
        Scheduler::Rr | Scheduler::Wrr | Scheduler::Lc | Scheduler::Wlc => Ok("inc"),
        Scheduler::Random => Ok("rand"),
        Scheduler::Sh | Scheduler::Mh => Ok("hash"),
        Scheduler::Sed | Scheduler::Nq => Err(DataplaneError::UnsupportedScheduler {
            service: s.name.clone(),
            scheduler: s.scheduler,
        }),
    }
}

/// Backend index per slot of a service.
fn service_slots(s: &Service) -> Vec<usize> {
    let weights: Vec<u32> = s.backends.iter().map(|b| b.weight).collect();
    match s.scheduler {
        Scheduler::Rr => slots::rr_slots(&weights),
        Scheduler::Mh => {
            let names: Vec<&str> = s.backends.iter().map(|b| b.name.as_str()).collect();
            // Sized by the servers listed, not those up: a server going down (weight
            // 0) must not resize, and so reshuffle, the whole table.
            slots::maglev_table(&names, &weights, slots::maglev_size(names.len()))
        }
        // A fixed slot count: a change of shares changes elements only.
        Scheduler::Lc | Scheduler::Wlc => {
            slots::least_conn_slots(&weights, slots::least_conn_slot_count(weights.len()))
        }
        _ => slots::weighted_slots(&weights),
    }
}

fn validate_service(s: &Service) -> Result<(), DataplaneError> {
    selector(s)?;
    if let PortSpec::Range(a, b) = s.ports {
        if a == 0 || a > b {
            return Err(DataplaneError::BadPortRange {
                owner: format!("service {}", s.name),
                first: a,
                last: b,
            });
        }
    }
    for b in &s.backends {
        if b.addr.is_ipv4() != s.vip.is_ipv4() {
            return Err(DataplaneError::FamilyMismatch {
                owner: format!("service {} backend {}", s.name, b.name),
                addr: b.addr,
                vip: s.vip,
            });
        }
        if matches!(s.ports, PortSpec::Range(..)) && b.port.is_some() {
            return Err(DataplaneError::BackendPortOnRange {
                service: s.name.clone(),
                backend: b.name.clone(),
            });
        }
    }
    Ok(())
}

/// The layout for `desired`, or why it cannot be built.
pub fn plan(desired: &DesiredState, counting: Counting) -> Result<Layout, DataplaneError> {
    let mut layout = Layout::default();
    layout.state.exists = true;
    let mut claimed: HashMap<Claim, &str> = HashMap::with_capacity(desired.services.len());
    let mut maps: BTreeSet<MapKind> = BTreeSet::new();
    for s in &desired.services {
        if let Some(first) = claimed.insert(claim(s), &s.name) {
            return Err(DataplaneError::DuplicateService {
                first: first.to_owned(),
                second: s.name.clone(),
                key: format!("{} {}:{}", s.protocol, s.vip, s.ports),
            });
        }
        let ServicePlan {
            dnat,
            count,
            conn,
            chains,
            jumps,
        } = plan_service(s, counting)?;
        // The elements move into the layout; a backend's comment is made once.
        let names: Vec<String> = s
            .backends
            .iter()
            .map(|b| format!("{} {}", s.name, b.name))
            .collect();
        let comment = |bi: usize| names.get(bi).cloned().unwrap_or_default();
        let mut put = |set: &str, k: ElemKey, d: ElemData| {
            let st = match layout.state.sets.get_mut(set) {
                Some(st) => st,
                None => {
                    let Some(empty) = empty_set(set, counting) else {
                        return;
                    };
                    layout.state.sets.entry(set.to_owned()).or_insert(empty)
                }
            };
            st.elements.insert(k, d);
        };
        if let Some((mk, map, elems)) = dnat {
            maps.insert(mk);
            for (k, d, bi) in elems {
                put(&map, k, ElemData::new(d, comment(bi)));
            }
        }
        for (set, elems) in count.into_iter().chain(conn) {
            for (k, bi) in elems {
                put(set, k, ElemData::new(Vec::new(), comment(bi)));
            }
        }
        for (set, k, chain) in jumps {
            put(set, k, ElemData::new(chain.into_bytes(), s.name.clone()));
        }
        for (chain, rules) in chains {
            layout.rules.insert(chain, rules);
        }
    }
    for mk in &maps {
        if let Some((chain, rule)) = rule_of_set(&dnat_map_name(*mk)) {
            layout.rules.entry(chain.to_owned()).or_default().push(rule);
        }
    }
    // A persist set exists while its remember map does.
    for rec in ["rec4", "recr4", "rec6", "recr6"] {
        if let (true, Some(sets)) = (layout.state.sets.contains_key(rec), persist_sets_of(rec)) {
            for p in sets {
                if let Some(empty) = empty_set(p, counting) {
                    layout.state.sets.insert(p.to_owned(), empty);
                }
            }
        }
    }
    for set in [
        "svc4", "svcr4", "svc6", "svcr6", "rec4", "recr4", "rec6", "recr6", "count4", "count6",
        "conn4", "conn6",
    ] {
        if layout.state.sets.contains_key(set) {
            if let Some((chain, rule)) = rule_of_set(set) {
                layout.rules.entry(chain.to_owned()).or_default().push(rule);
            }
        }
    }
    plan_snat(&desired.snat, &mut layout)?;
    for set in layout.state.sets.values_mut() {
        set.spec.size = set_capacity(&set.spec, set.elements.len());
    }
    layout.state.rules = layout
        .rules
        .iter()
        .map(|(c, rs)| (c.clone(), rs.iter().map(|r| r.comment.clone()).collect()))
        .collect();
    // Only chains with rules: an empty base chain still costs each packet its hook.
    layout.state.chains = layout.rules.keys().cloned().collect();
    Ok(layout)
}

fn dnat_map(v4: bool, range: bool, counter: bool) -> SetState {
    let alen = if v4 { 4 } else { 16 };
    let ta = if v4 { T_IPV4 } else { T_IPV6 };
    let mut flags = libc::NFT_SET_MAP as u32;
    let mut concat = Vec::new();
    if range {
        flags |= libc::NFT_SET_INTERVAL as u32 | NFT_SET_CONCAT;
        concat = vec![1, alen as u8, 2, 4];
    }
    SetState {
        spec: SetSpec {
            flags,
            key_len: 4 + alen + 4 + 4,
            key_type: concat_type(&[T_PROTO, ta, T_SERVICE, T_MARK]),
            data_len: if range { alen } else { alen + 4 },
            data_type: if range {
                ta
            } else {
                concat_type(&[ta, T_SERVICE])
            },
            concat,
            counter,
            size: 0,
        },
        elements: BTreeMap::new(),
        counters: HashMap::new(),
    }
}

/// A verdict map: (protocol, VIP, port or port range) to a jump to the service's chain.
fn jump_map(v4: bool, range: bool) -> SetState {
    let alen = if v4 { 4 } else { 16 };
    let ta = if v4 { T_IPV4 } else { T_IPV6 };
    let mut flags = libc::NFT_SET_MAP as u32;
    let mut concat = Vec::new();
    if range {
        flags |= libc::NFT_SET_INTERVAL as u32 | NFT_SET_CONCAT;
        concat = vec![1, alen as u8, 2];
    }
    SetSpec {
        flags,
        key_len: 4 + alen + 4,
        key_type: concat_type(&[T_PROTO, ta, T_SERVICE]),
        // struct nft_verdict, as the kernel reports it.
        data_len: 16,
        data_type: NFT_DATA_VERDICT,
        concat,
        counter: false,
        size: 0,
    }
    .into_empty()
}

/// A remember map: like a jump map, keyed by what the connection first asked for.
fn remember_map(v4: bool, range: bool) -> SetState {
    jump_map(v4, range)
}

/// A persist set: client network . VIP . first port . server address (.
/// server port), elements with a timeout, written by the packet path.
fn persist_set(v4: bool, range: bool) -> SetState {
    let alen = if v4 { 4 } else { 16 };
    let ta = if v4 { T_IPV4 } else { T_IPV6 };
    let mut types = vec![ta, ta, T_SERVICE, ta];
    if !range {
        types.push(T_SERVICE);
    }
    SetSpec {
        flags: (libc::NFT_SET_TIMEOUT | libc::NFT_SET_EVAL) as u32,
        key_len: alen + alen + 4 + alen + if range { 0 } else { 4 },
        key_type: concat_type(&types),
        data_len: 0,
        data_type: 0,
        concat: Vec::new(),
        counter: false,
        size: PERSIST_MAX,
    }
    .into_empty()
}

impl SetSpec {
    fn into_empty(self) -> SetState {
        SetState {
            spec: self,
            elements: BTreeMap::new(),
            counters: HashMap::new(),
        }
    }
}

fn count_set(v4: bool) -> SetState {
    let alen = if v4 { 4 } else { 16 };
    let ta = if v4 { T_IPV4 } else { T_IPV6 };
    SetState {
        spec: SetSpec {
            flags: 0,
            key_len: 4 + alen + 4 + alen + 4,
            key_type: concat_type(&[T_PROTO, ta, T_SERVICE, ta, T_SERVICE]),
            data_len: 0,
            data_type: 0,
            concat: Vec::new(),
            counter: true,
            size: 0,
        },
        elements: BTreeMap::new(),
        counters: HashMap::new(),
    }
}

fn nfproto(v4: bool) -> [Expr; 2] {
    let p = if v4 {
        libc::NFPROTO_IPV4
    } else {
        libc::NFPROTO_IPV6
    } as u8;
    [
        Expr::Meta {
            key: libc::NFT_META_NFPROTO as u32,
            dreg: reg(0),
        },
        Expr::Cmp {
            sreg: reg(0),
            op: libc::NFT_CMP_EQ as u32,
            data: vec![p],
        },
    ]
}

fn dnat_rule(v4: bool, range: bool, kind: &str, m: u32, map: &str) -> Vec<Expr> {
    let a = if v4 { 1 } else { 4 }; // registers per address
    let (saddr_off, daddr_off) = if v4 { (12, 16) } else { (8, 24) };
    let mut e: Vec<Expr> = nfproto(v4).into();
    e.push(Expr::Meta {
        key: libc::NFT_META_L4PROTO as u32,
        dreg: reg(0),
    });
    e.push(Expr::Payload {
        base: libc::NFT_PAYLOAD_NETWORK_HEADER as u32,
        offset: daddr_off,
        len: 4 * a,
        dreg: reg(1),
    });
    e.push(Expr::Payload {
        base: libc::NFT_PAYLOAD_TRANSPORT_HEADER as u32,
        offset: 2,
        len: 2,
        dreg: reg(1 + a),
    });
    let sel = reg(2 + a);
    match kind {
        "inc" => e.push(Expr::Numgen {
            kind: libc::NFT_NG_INCREMENTAL as u32,
            modulus: m,
            dreg: sel,
        }),
        "rand" => e.push(Expr::Numgen {
            kind: libc::NFT_NG_RANDOM as u32,
            modulus: m,
            dreg: sel,
        }),
        _ => {
            e.push(Expr::Payload {
                base: libc::NFT_PAYLOAD_NETWORK_HEADER as u32,
                offset: saddr_off,
                len: 4 * a,
                dreg: sel,
            });
            e.push(Expr::Jhash {
                sreg: sel,
                len: 4 * a,
                modulus: m,
                seed: HASH_SEED,
                dreg: sel,
            });
        }
    }
    e.push(Expr::Lookup {
        set: map.to_owned(),
        sreg: reg(0),
        dreg: Some(reg(0)),
    });
    e.push(Expr::Nat {
        snat: false,
        v4,
        addr_min: Some(reg(0)),
        addr_max: None,
        proto_min: (!range).then(|| reg(a)),
        proto_max: None,
    });
    e
}

/// `meta nfproto <family> meta l4proto . <ip> daddr . th dport vmap @<map>`.
fn jump_rule(v4: bool, map: &str) -> Vec<Expr> {
    let a = if v4 { 1 } else { 4 };
    let daddr_off = if v4 { 16 } else { 24 };
    let mut e: Vec<Expr> = nfproto(v4).into();
    e.push(Expr::Meta {
        key: libc::NFT_META_L4PROTO as u32,
        dreg: reg(0),
    });
    e.push(Expr::Payload {
        base: libc::NFT_PAYLOAD_NETWORK_HEADER as u32,
        offset: daddr_off,
        len: 4 * a,
        dreg: reg(1),
    });
    e.push(Expr::Payload {
        base: libc::NFT_PAYLOAD_TRANSPORT_HEADER as u32,
        offset: 2,
        len: 2,
        dreg: reg(1 + a),
    });
    e.push(Expr::Lookup {
        set: map.to_owned(),
        sreg: reg(0),
        dreg: Some(libc::NFT_REG_VERDICT as u32),
    });
    e
}

/// `meta nfproto <family> meta l4proto . ct original <ip> daddr . ct original
/// proto-dst vmap @<map>`: a NATed connection's first packet, by what it asked for.
fn remember_jump_rule(v4: bool, map: &str) -> Vec<Expr> {
    let a = if v4 { 1 } else { 4 };
    let dst = if v4 {
        libc::NFT_CT_DST_IP
    } else {
        libc::NFT_CT_DST_IP6
    };
    let mut e: Vec<Expr> = nfproto(v4).into();
    e.push(Expr::Meta {
        key: libc::NFT_META_L4PROTO as u32,
        dreg: reg(0),
    });
    e.push(Expr::Ct {
        key: dst as u32,
        dir: 0,
        dreg: reg(1),
    });
    e.push(Expr::Ct {
        key: libc::NFT_CT_PROTO_DST as u32,
        dir: 0,
        dreg: reg(1 + a),
    });
    e.push(Expr::Lookup {
        set: map.to_owned(),
        sreg: reg(0),
        dreg: Some(libc::NFT_REG_VERDICT as u32),
    });
    e
}

fn count_rule(v4: bool, set: &str) -> Vec<Expr> {
    let a = if v4 { 1 } else { 4 };
    let (src, dst) = if v4 {
        (libc::NFT_CT_SRC_IP, libc::NFT_CT_DST_IP)
    } else {
        (libc::NFT_CT_SRC_IP6, libc::NFT_CT_DST_IP6)
    };
    let mut e: Vec<Expr> = nfproto(v4).into();
    e.push(Expr::Meta {
        key: libc::NFT_META_L4PROTO as u32,
        dreg: reg(0),
    });
    e.push(Expr::Ct {
        key: dst as u32,
        dir: 0,
        dreg: reg(1),
    });
    e.push(Expr::Ct {
        key: libc::NFT_CT_PROTO_DST as u32,
        dir: 0,
        dreg: reg(1 + a),
    });
    e.push(Expr::Ct {
        key: src as u32,
        dir: 1,
        dreg: reg(2 + a),
    });
    e.push(Expr::Ct {
        key: libc::NFT_CT_PROTO_SRC as u32,
        dir: 1,
        dreg: reg(2 + 2 * a),
    });
    e.push(Expr::Lookup {
        set: set.to_owned(),
        sreg: reg(0),
        dreg: None,
    });
    e
}

fn iface_bytes(rule: &str, name: &str) -> Result<Vec<u8>, DataplaneError> {
    if name.is_empty() || name.len() > 15 || name.contains('\0') {
        return Err(DataplaneError::BadInterfaceName {
            rule: rule.to_owned(),
            iface: name.to_owned(),
        });
    }
    let mut b = name.as_bytes().to_vec();
    b.resize(16, 0);
    Ok(b)
}

/// FNV-1a 64 of a string: a stable digest for rule comments.
fn digest(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The rule of a SNAT rule with a pool: its own match (a linear rule: a pool picks
/// its entries with a counter of its own) and its pool map.
fn snat_pool_rule(
    r: &SnatRule,
    entries: &[(IpAddr, Option<(u16, u16)>)],
    pool_names: &mut BTreeSet<String>,
) -> Result<(PlannedRule, (String, SetState)), DataplaneError> {
    let v4 = r.orig_daddr.is_ipv4();
    let a = if v4 { 1 } else { 4 };
    let owner = format!("snat rule {}", r.name);
    let mut e: Vec<Expr> = nfproto(v4).into();
    if r.protocol != NatProtocol::Any {
        let p = if r.protocol == NatProtocol::Tcp {
            6
        } else {
            17
        };
        e.push(Expr::Meta {
            key: libc::NFT_META_L4PROTO as u32,
            dreg: reg(0),
        });
        e.push(Expr::Cmp {
            sreg: reg(0),
            op: libc::NFT_CMP_EQ as u32,
            data: vec![p],
        });
    }
    for (iface, key) in [
        (&r.in_iface, libc::NFT_META_IIFNAME),
        (&r.out_iface, libc::NFT_META_OIFNAME),
    ] {
        if let Some(name) = iface {
            e.push(Expr::Meta {
                key: key as u32,
                dreg: reg(0),
            });
            e.push(Expr::Cmp {
                sreg: reg(0),
                op: libc::NFT_CMP_EQ as u32,
                data: iface_bytes(&r.name, name)?,
            });
        }
    }
    let dst = if v4 {
        libc::NFT_CT_DST_IP
    } else {
        libc::NFT_CT_DST_IP6
    };
    e.push(Expr::Ct {
        key: dst as u32,
        dir: 0,
        dreg: reg(0),
    });
    e.push(Expr::Cmp {
        sreg: reg(0),
        op: libc::NFT_CMP_EQ as u32,
        data: addr_bytes(&r.orig_daddr),
    });
    if let Some(ports) = r.orig_dports {
        let (lo, hi) = ports.bounds();
        if lo == 0 || lo > hi {
            return Err(DataplaneError::BadPortRange {
                owner,
                first: lo,
                last: hi,
            });
        }
        e.push(Expr::Ct {
            key: libc::NFT_CT_PROTO_DST as u32,
            dir: 0,
            dreg: reg(0),
        });
        if lo == hi {
            e.push(Expr::Cmp {
                sreg: reg(0),
                op: libc::NFT_CMP_EQ as u32,
                data: lo.to_be_bytes().to_vec(),
            });
        } else {
            e.push(Expr::Cmp {
                sreg: reg(0),
                op: libc::NFT_CMP_GTE as u32,
                data: lo.to_be_bytes().to_vec(),
            });
            e.push(Expr::Cmp {
                sreg: reg(0),
                op: libc::NFT_CMP_LTE as u32,
                data: hi.to_be_bytes().to_vec(),
            });
        }
    }
    let check = |addr: &IpAddr| {
        if addr.is_ipv4() == v4 {
            Ok(())
        } else {
            Err(DataplaneError::FamilyMismatch {
                owner: owner.clone(),
                addr: *addr,
                vip: r.orig_daddr,
            })
        }
    };
    {
        {
            if entries.is_empty() {
                return Err(DataplaneError::EmptyPool {
                    rule: r.name.clone(),
                });
            }
            let with_ports = entries.iter().any(|(_, p)| p.is_some());
            let mut elements = BTreeMap::new();
            for (i, (addr, ports)) in entries.iter().enumerate() {
                check(addr)?;
                let mut data = addr_bytes(addr);
                if with_ports {
                    // Entries without a range get the unprivileged ports.
                    let (lo, hi) = ports.unwrap_or((1024, 65535));
                    if lo == 0 || lo > hi {
                        return Err(DataplaneError::BadPortRange {
                            owner: owner.clone(),
                            first: lo,
                            last: hi,
                        });
                    }
                    data.extend(port_reg(lo));
                    data.extend(addr_bytes(addr));
                    data.extend(port_reg(hi));
                }
                elements.insert(
                    ElemKey {
                        key: (i as u32).to_ne_bytes().to_vec(),
                        key_end: None,
                    },
                    ElemData::new(data, format!("{} {addr}", r.name)),
                );
            }
            let base: String = r
                .name
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .take(40)
                .collect();
            let mut name = format!("snat_{base}");
            let mut n = 2;
            while !pool_names.insert(name.clone()) {
                name = format!("snat_{base}_{n}");
                n += 1;
            }
            let alen = family_len(&r.orig_daddr) as u32;
            let ta = if v4 { T_IPV4 } else { T_IPV6 };
            let spec = SetSpec {
                flags: libc::NFT_SET_MAP as u32,
                key_len: 4,
                key_type: T_MARK,
                data_len: if with_ports { 2 * alen + 8 } else { alen },
                data_type: if with_ports {
                    concat_type(&[ta, T_SERVICE, ta, T_SERVICE])
                } else {
                    ta
                },
                concat: Vec::new(),
                counter: false,
                size: 0,
            };
            e.push(Expr::Numgen {
                kind: libc::NFT_NG_INCREMENTAL as u32,
                modulus: entries.len() as u32,
                dreg: reg(0),
            });
            e.push(Expr::Lookup {
                set: name.clone(),
                sreg: reg(0),
                dreg: Some(reg(0)),
            });
            e.push(if with_ports {
                Expr::Nat {
                    snat: true,
                    v4,
                    addr_min: Some(reg(0)),
                    proto_min: Some(reg(a)),
                    addr_max: Some(reg(a + 1)),
                    proto_max: Some(reg(2 * a + 1)),
                }
            } else {
                Expr::Nat {
                    snat: true,
                    v4,
                    addr_min: Some(reg(0)),
                    addr_max: Some(reg(0)),
                    proto_min: None,
                    proto_max: None,
                }
            });
            let short: String = r.name.chars().take(64).collect();
            let comment = format!("snat {short} #{:016x}", digest(&format!("{r:?}")));
            Ok((
                PlannedRule { comment, exprs: e },
                (
                    name,
                    SetState {
                        spec,
                        elements,
                        counters: HashMap::new(),
                    },
                ),
            ))
        }
    }
}

/// What a set of the layout holds, in words, for its comment in `nft list` (its
/// elements name their services, backends or SNAT rules).
pub fn set_comment(name: &str) -> String {
    if let Some((_, range, selector, m)) = dnat_map_kind(name) {
        let ports = if range { ", port ranges" } else { "" };
        return match selector {
            "bucket" => format!(
                "DNAT: slots of the services of bucket {m} with a chain of their own (round robin, persistence){ports}"
            ),
            "rand" => format!("DNAT: {m} slots per service, picked by random{ports}"),
            _ => format!("DNAT: {m} slots per service, picked by source hash{ports}"),
        };
    }
    if let Some((_, range)) = jump_map_kind(name) {
        let ports = if range { " (port ranges)" } else { "" };
        return format!("round robin: each service's chain, with its counter{ports}");
    }
    if remember_map_kind(name).is_some() {
        return "persistence: each service's chain that remembers its clients' servers".into();
    }
    if persist_set_kind(name).is_some() {
        return "persistence: client network, service and server, each until its timeout".into();
    }
    match name {
        "conn4" | "conn6" => "new connections per service and backend".into(),
        "count4" | "count6" => "packets and bytes per service and backend".into(),
        _ if name.starts_with("snat_") => "SNAT pool of one rule: entries in turn".into(),
        _ if name.starts_with("snat") => {
            "SNAT: new source by what the rules match (elements name their rule)".into()
        }
        _ => String::new(),
    }
}

/// The comment of a service's element in `set`: the service's name, and the
/// backend's for per-backend elements (verdict maps hold services, not backends).
pub fn elem_comment(s: &Service, set: &str, backend: usize) -> String {
    match s.backends.get(backend) {
        Some(b) if !is_jump_map(set) => format!("{} {}", s.name, b.name),
        _ => s.name.clone(),
    }
}

/// Decodes a DNAT map element back into a slot (None for other sets).
fn decode_slot(map: &str, k: &ElemKey, data: &[u8]) -> Option<DnatSlot> {
    let rest = map.strip_prefix("dnat")?;
    let (range, rest) = match rest.strip_prefix('r') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let alen = if rest.starts_with('4') { 4 } else { 16 };
    let key = &k.key;
    if key.len() != 12 + alen || data.len() < alen {
        return None;
    }
    let protocol = Protocol::from_number(key[0])?;
    let vip = ip_from(&key[4..4 + alen])?;
    let port = u16::from_be_bytes([key[4 + alen], key[5 + alen]]);
    let slot = u32::from_ne_bytes(key[8 + alen..12 + alen].try_into().ok()?);
    let ports = match (&k.key_end, range) {
        (Some(end), true) if end.len() == key.len() => {
            PortSpec::Range(port, u16::from_be_bytes([end[4 + alen], end[5 + alen]]))
        }
        _ => PortSpec::Single(port),
    };
    let backend = ip_from(&data[..alen])?;
    let backend_port = (!range && data.len() >= alen + 2)
        .then(|| u16::from_be_bytes([data[alen], data[alen + 1]]));
    Some(DnatSlot {
        map: map.to_owned(),
        protocol,
        vip,
        ports,
        slot,
        backend,
        backend_port,
    })
}

fn ip_from(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

/// An element to add: key and data.
pub type ElemEntry = (ElemKey, ElemData);

/// What to send to go from one table to another.
#[derive(Debug, Default)]
pub struct Changes {
    /// Create the table.
    pub create_table: bool,
    /// Chains to create.
    pub add_chains: Vec<ChainDef>,
    /// Chains whose rules are all deleted (then re-added from the layout).
    pub flush_chains: Vec<String>,
    /// Chains deleted (after their flush).
    pub del_chains: Vec<String>,
    /// Services' chains to create (regular chains, reached by a verdict map).
    pub add_svc_chains: Vec<String>,
    /// Services' chains to delete (with their rules; after the verdict map's
    /// elements that lead to them, before the maps their rules use).
    pub del_svc_chains: Vec<String>,
    /// Rules deleted by the flushes.
    pub rules_removed: usize,
    /// Sets to delete.
    pub del_sets: Vec<String>,
    /// Sets to create.
    pub add_sets: Vec<String>,
    /// Elements to delete, per set.
    pub del_elems: Vec<(String, Vec<ElemKey>)>,
    /// Elements to add, per set.
    pub add_elems: Vec<(String, Vec<ElemEntry>)>,
    /// Sets created whose every wanted element is added (taken from the wanted
    /// layout when sent, not copied), with their element count.
    pub fill_sets: Vec<(String, usize)>,
    /// Chains whose layout rules are (re-)added.
    pub add_rules: Vec<String>,
    /// Rules added.
    pub rules_added: usize,
}

impl Changes {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.counts().total() == 0
    }

    /// What differs, one [`Drift`] per object kind and set or chain, for `table`.
    pub fn drifts(&self, table: &str) -> Vec<Drift> {
        let subject = format!("table inet {table}");
        let mut out = Vec::new();
        let mut say = |what: String| out.push(Drift::new(&subject, what));
        if self.create_table {
            say("does not exist".into());
        }
        for c in &self.add_chains {
            say(format!("chain {} is missing", c.name));
        }
        for c in &self.add_svc_chains {
            say(format!("chain {c} is missing"));
        }
        for c in self.del_chains.iter().chain(&self.del_svc_chains) {
            say(format!("chain {c} is not wanted"));
        }
        for name in &self.add_sets {
            say(format!("set {name} is missing or of another shape"));
        }
        for name in self.del_sets.iter().filter(|n| !self.add_sets.contains(n)) {
            say(format!("set {name} is not wanted"));
        }
        for (name, keys) in &self.del_elems {
            say(format!("set {name}: {} elements not wanted", keys.len()));
        }
        for (name, elems) in self
            .add_elems
            .iter()
            .filter(|(n, _)| !self.add_sets.contains(n))
        {
            say(format!(
                "set {name}: {} elements missing or different",
                elems.len()
            ));
        }
        let flushed: HashSet<&String> = self.flush_chains.iter().collect();
        let created: HashSet<&String> = self.add_svc_chains.iter().collect();
        for chain in self.flush_chains.iter().chain(
            self.add_rules
                .iter()
                .filter(|c| !flushed.contains(c) && !created.contains(c)),
        ) {
            say(format!("chain {chain}: the rules differ"));
        }
        out
    }

    /// What the batch adds and removes, counted.
    pub fn counts(&self) -> NftChanges {
        NftChanges {
            table_created: self.create_table,
            chains_added: self.add_chains.len() + self.add_svc_chains.len(),
            chains_removed: self.del_chains.len() + self.del_svc_chains.len(),
            sets_added: self.add_sets.len(),
            sets_removed: self.del_sets.len(),
            elements_added: self.add_elems.iter().map(|(_, e)| e.len()).sum::<usize>()
                + self.fill_sets.iter().map(|(_, n)| n).sum::<usize>(),
            elements_removed: self.del_elems.iter().map(|(_, e)| e.len()).sum(),
            rules_added: self.rules_added,
            rules_removed: self.rules_removed,
        }
    }
}

/// The changes that turn `current` into `want.state`.
pub fn diff(current: &TableState, want: &Layout) -> Changes {
    let mut c = Changes {
        create_table: !current.exists,
        ..Changes::default()
    };
    for def in CHAINS {
        let wanted = want.state.chains.contains(def.name);
        let held = current.exists && current.chains.contains(def.name);
        if wanted && !held {
            c.add_chains.push(def);
        }
    }
    let mut replaced_any = false;
    for (name, cur) in &current.sets {
        match want.state.sets.get(name) {
            // The kernel's own elements (clients remembered): not ours to compare.
            Some(w) if w.spec.same_shape(&cur.spec) && is_dynamic(name) => {}
            Some(w) if w.spec.same_shape(&cur.spec) && cur.spec.holds(w.elements.len()) => {
                let dels: Vec<ElemKey> = cur
                    .elements
                    .iter()
                    .filter(|(k, d)| w.elements.get(*k) != Some(*d))
                    .map(|(k, _)| k.clone())
                    .collect();
                let adds: Vec<ElemEntry> = w
                    .elements
                    .iter()
                    .filter(|(k, d)| cur.elements.get(*k) != Some(*d))
                    .map(|(k, d)| (k.clone(), d.clone()))
                    .collect();
                if !dels.is_empty() {
                    c.del_elems.push((name.clone(), dels));
                }
                if !adds.is_empty() {
                    c.add_elems.push((name.clone(), adds));
                }
            }
            Some(_) => {
                replaced_any = true;
                c.del_sets.push(name.clone());
            }
            None => c.del_sets.push(name.clone()),
        }
    }
    for (name, w) in &want.state.sets {
        let keep = current.sets.get(name).is_some_and(|cur| {
            w.spec.same_shape(&cur.spec) && (is_dynamic(name) || cur.spec.holds(w.elements.len()))
        });
        if !keep {
            c.add_sets.push(name.clone());
            if !w.elements.is_empty() {
                c.fill_sets.push((name.clone(), w.elements.len()));
            }
        }
    }
    // Services' chains (regular chains: every chain that is not a base chain).
    if current.exists {
        for name in current.chains.iter().filter(|n| chain_def(n).is_none()) {
            if !want.state.chains.contains(name) {
                c.del_svc_chains.push(name.clone());
            }
        }
    }
    for name in want.state.chains.iter().filter(|n| chain_def(n).is_none()) {
        if !(current.exists && current.chains.contains(name)) {
            c.add_svc_chains.push(name.clone());
        }
    }
    let going: HashSet<&String> = c.del_svc_chains.iter().collect();
    let mut flush = Vec::new();
    let empty = Vec::new();
    let names: BTreeSet<&String> = current
        .rules
        .keys()
        .chain(want.state.rules.keys())
        .collect();
    for name in names {
        let cur = current.rules.get(name).unwrap_or(&empty);
        let wanted = want.state.rules.get(name).unwrap_or(&empty);
        // dnat and count rules are independent of order; snat rules are not.
        // (A service's chain has one rule: no sort.)
        let same = if name == "lb_snat" || (cur.len() <= 1 && wanted.len() <= 1) {
            cur == wanted
        } else {
            let (mut a, mut b) = (cur.clone(), wanted.clone());
            a.sort();
            b.sort();
            a == b
        };
        if !same || (replaced_any && !cur.is_empty()) {
            if !cur.is_empty() {
                c.rules_removed += cur.len();
                // A chain that goes takes its rules with it.
                if !going.contains(name) {
                    flush.push(name.clone());
                }
            }
            if !wanted.is_empty() {
                c.add_rules.push(name.clone());
                c.rules_added += wanted.len();
            }
        }
    }
    c.flush_chains = flush;
    for def in CHAINS {
        // A chain with nothing to do goes (its rules, if any, were flushed above).
        if current.exists
            && current.chains.contains(def.name)
            && !want.state.chains.contains(def.name)
        {
            c.del_chains.push(def.name.to_owned());
        }
    }
    c
}

/// The fields an address-only SNAT rule matches, in key order: what its map is keyed
/// by. Consecutive rules of one shape share a map and its one rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SnatShape {
    v4: bool,
    proto: bool,
    iif: bool,
    oif: bool,
    /// None: any port; Some(false): one port; Some(true): a range (an interval map).
    ports: Option<bool>,
}

impl SnatShape {
    fn of(r: &SnatRule) -> SnatShape {
        SnatShape {
            v4: r.orig_daddr.is_ipv4(),
            proto: r.protocol != NatProtocol::Any,
            iif: r.in_iface.is_some(),
            oif: r.out_iface.is_some(),
            ports: r.orig_dports.map(|p| matches!(p, PortSpec::Range(..))),
        }
    }

    /// (length in bytes, nft type, name) of each key field.
    fn fields(self) -> Vec<(u8, u32, &'static str)> {
        let mut f = Vec::with_capacity(5);
        if self.proto {
            f.push((1, T_PROTO, "l4proto"));
        }
        if self.iif {
            f.push((16, T_IFNAME, "iifname"));
        }
        if self.oif {
            f.push((16, T_IFNAME, "oifname"));
        }
        if self.v4 {
            f.push((4, T_IPV4, "ct original ip daddr"));
        } else {
            f.push((16, T_IPV6, "ct original ip6 daddr"));
        }
        if self.ports.is_some() {
            f.push((2, T_SERVICE, "ct original proto-dst"));
        }
        f
    }

    fn spec(self) -> SetSpec {
        let fields = self.fields();
        let interval = self.ports == Some(true);
        let (alen, ta) = if self.v4 { (4, T_IPV4) } else { (16, T_IPV6) };
        let mut flags = libc::NFT_SET_MAP as u32;
        if interval {
            flags |= libc::NFT_SET_INTERVAL as u32 | NFT_SET_CONCAT;
        }
        SetSpec {
            flags,
            key_len: fields.iter().map(|f| u32::from(f.0).div_ceil(4) * 4).sum(),
            key_type: concat_type(&fields.iter().map(|f| f.1).collect::<Vec<_>>()),
            data_len: alen,
            data_type: ta,
            concat: if interval {
                fields.iter().map(|f| f.0).collect()
            } else {
                Vec::new()
            },
            counter: false,
            size: 0,
        }
    }

    /// The map's one rule: load the key fields, look the new source up, SNAT to it.
    fn rule(self, map: &str) -> PlannedRule {
        let mut e: Vec<Expr> = nfproto(self.v4).into();
        // Fields go into consecutive 32-bit registers (a concatenation).
        let mut next = 0;
        let mut load = |e: &mut Vec<Expr>, make: &dyn Fn(u32) -> Expr, regs: u32| {
            e.push(make(reg(next)));
            next += regs;
        };
        if self.proto {
            let key = libc::NFT_META_L4PROTO as u32;
            load(&mut e, &|dreg| Expr::Meta { key, dreg }, 1);
        }
        for (on, key) in [
            (self.iif, libc::NFT_META_IIFNAME),
            (self.oif, libc::NFT_META_OIFNAME),
        ] {
            if on {
                let key = key as u32;
                load(&mut e, &|dreg| Expr::Meta { key, dreg }, 4);
            }
        }
        let (dst, a) = if self.v4 {
            (libc::NFT_CT_DST_IP, 1)
        } else {
            (libc::NFT_CT_DST_IP6, 4)
        };
        let key = dst as u32;
        load(&mut e, &|dreg| Expr::Ct { key, dir: 0, dreg }, a);
        if self.ports.is_some() {
            let key = libc::NFT_CT_PROTO_DST as u32;
            load(&mut e, &|dreg| Expr::Ct { key, dir: 0, dreg }, 1);
        }
        e.push(Expr::Lookup {
            set: map.to_owned(),
            sreg: reg(0),
            dreg: Some(reg(0)),
        });
        e.push(Expr::Nat {
            snat: true,
            v4: self.v4,
            addr_min: Some(reg(0)),
            addr_max: None,
            proto_min: None,
            proto_max: None,
        });
        let by: Vec<&str> = self.fields().iter().map(|f| f.2).collect();
        let range = if self.ports == Some(true) {
            " (port ranges)"
        } else {
            ""
        };
        PlannedRule {
            comment: format!("snat @{map} by {}{range}", by.join(" . ")),
            exprs: e,
        }
    }
}

/// First and last port of a match.
type PortBounds = (u16, u16);

/// The key of an address-only SNAT rule in its shape's map, without the port field
/// (the prefix) and the port bounds; checks names, ports and families.
fn snat_key(
    r: &SnatRule,
    shape: SnatShape,
    to: &IpAddr,
) -> Result<(Vec<u8>, Option<PortBounds>), DataplaneError> {
    let owner = format!("snat rule {}", r.name);
    if to.is_ipv4() != shape.v4 {
        return Err(DataplaneError::FamilyMismatch {
            owner,
            addr: *to,
            vip: r.orig_daddr,
        });
    }
    let mut key = Vec::with_capacity(48);
    if shape.proto {
        key.extend(proto_reg(if r.protocol == NatProtocol::Tcp {
            6
        } else {
            17
        }));
    }
    for name in r.in_iface.iter().chain(&r.out_iface) {
        key.extend(iface_bytes(&r.name, name)?);
    }
    key.extend(addr_bytes(&r.orig_daddr));
    let ports = match r.orig_dports {
        None => None,
        Some(p) => {
            let (lo, hi) = p.bounds();
            if lo == 0 || lo > hi {
                return Err(DataplaneError::BadPortRange {
                    owner,
                    first: lo,
                    last: hi,
                });
            }
            Some((lo, hi))
        }
    };
    Ok((key, ports))
}

/// A map of consecutive address-only SNAT rules of one shape.
struct SnatRun {
    shape: SnatShape,
    name: String,
    elements: BTreeMap<ElemKey, ElemData>,
    /// Port ranges taken, per key prefix (interval maps refuse overlaps).
    ranges: HashMap<Vec<u8>, Vec<(u16, u16)>>,
}

impl SnatRun {
    fn flush(self, layout: &mut Layout) {
        let rule = self.shape.rule(&self.name);
        layout.state.sets.insert(
            self.name,
            SetState {
                spec: self.shape.spec(),
                elements: self.elements,
                counters: HashMap::new(),
            },
        );
        layout
            .rules
            .entry("lb_snat".to_owned())
            .or_default()
            .push(rule);
    }
}

/// The SNAT part of the layout, in the rules' order: consecutive address-only rules
/// of one shape become one map and one rule (`snat to <key> map @snat4_N`: a lookup
/// per new connection whatever the number of rules); a rule with a pool keeps a
/// rule of its own. A rule an earlier one of its map covers completely is left out
/// (it could never match); one that overlaps an earlier port range starts a new
/// map, so the first rule that matches still wins.
fn plan_snat(rules: &[SnatRule], layout: &mut Layout) -> Result<(), DataplaneError> {
    let mut pool_names = BTreeSet::new();
    let mut run: Option<SnatRun> = None;
    let mut maps = 0;
    for r in rules {
        let to = match &r.source {
            SnatSource::Pool(entries) => {
                if let Some(done) = run.take() {
                    done.flush(layout);
                }
                let (rule, (name, st)) = snat_pool_rule(r, entries, &mut pool_names)?;
                layout.state.sets.insert(name, st);
                layout
                    .rules
                    .entry("lb_snat".to_owned())
                    .or_default()
                    .push(rule);
                continue;
            }
            SnatSource::Address(to) => to,
        };
        let shape = SnatShape::of(r);
        let (prefix, ports) = snat_key(r, shape, to)?;
        let with_port = |p: u16| {
            let mut k = prefix.clone();
            if shape.ports.is_some() {
                k.extend(port_reg(p));
            }
            k
        };
        let (lo, hi) = ports.unwrap_or((0, 0));
        let key = ElemKey {
            key: with_port(lo),
            key_end: (shape.ports == Some(true)).then(|| with_port(hi)),
        };
        let (covered, overlaps) = match &run {
            Some(cur) if cur.shape == shape => {
                let taken = cur.ranges.get(&prefix).map_or(&[][..], Vec::as_slice);
                (
                    taken.iter().any(|&(a, b)| a <= lo && hi <= b),
                    taken.iter().any(|&(a, b)| a <= hi && lo <= b),
                )
            }
            _ => (false, true),
        };
        if covered {
            continue;
        }
        if overlaps || run.as_ref().is_none_or(|cur| cur.shape != shape) {
            if let Some(done) = run.take() {
                done.flush(layout);
            }
            maps += 1;
            run = Some(SnatRun {
                shape,
                name: format!("snat{}_{maps}", if shape.v4 { 4 } else { 6 }),
                elements: BTreeMap::new(),
                ranges: HashMap::new(),
            });
        }
        if let Some(cur) = &mut run {
            cur.ranges.entry(prefix).or_default().push((lo, hi));
            cur.elements
                .insert(key, ElemData::new(addr_bytes(to), r.name.clone()));
        }
    }
    if let Some(done) = run.take() {
        done.flush(layout);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_map_names_and_kinds_are_inverses() {
        let mut names = std::collections::HashSet::new();
        for family in [&JUMP_MAPS, &REMEMBER_MAPS] {
            for v4 in [true, false] {
                for range in [true, false] {
                    let name = map_name(family, v4, range);
                    assert_eq!(map_kind(family, name), Some((v4, range)), "{name}");
                    assert!(is_jump_map(name), "{name}");
                    names.insert(name);
                }
            }
        }
        assert_eq!(names.len(), 8);
    }

    fn rule(name: &str, daddr: &str, ports: Option<PortSpec>, to: &str) -> SnatRule {
        SnatRule {
            name: name.into(),
            in_iface: Some("eth0".into()),
            out_iface: None,
            protocol: NatProtocol::Tcp,
            orig_daddr: daddr.parse().unwrap(),
            orig_dports: ports,
            source: SnatSource::Address(to.parse().unwrap()),
        }
    }

    fn snat_layout(rules: Vec<SnatRule>) -> Layout {
        plan(
            &DesiredState {
                services: Vec::new(),
                snat: rules,
            },
            Counting::Off,
        )
        .unwrap()
    }

    #[test]
    fn address_rules_of_one_shape_share_one_map_and_rule() {
        let mut rules: Vec<SnatRule> = (0..1000)
            .map(|i| {
                let d = format!("198.19.{}.{}", i / 250, i % 250 + 1);
                rule(
                    &format!("r{i}"),
                    &d,
                    Some(PortSpec::Single(80)),
                    "198.18.1.100",
                )
            })
            .collect();
        rules.push(SnatRule {
            source: SnatSource::Pool(vec![("198.18.1.101".parse().unwrap(), None)]),
            ..rule("pool", "198.18.0.100", None, "198.18.1.101")
        });
        rules.push(rule("v6", "2001:db8::100", None, "2001:db8:1::100"));
        let l = snat_layout(rules);
        let comments = &l.state.rules["lb_snat"];
        assert_eq!(comments.len(), 3, "{comments:?}");
        assert!(comments[0].starts_with(
            "snat @snat4_1 by l4proto . iifname . ct original ip daddr . ct original proto-dst"
        ));
        assert!(comments[1].starts_with("snat pool "));
        assert!(
            comments[2].starts_with("snat @snat6_2 by l4proto . iifname . ct original ip6 daddr")
        );
        let m4 = &l.state.sets["snat4_1"];
        assert_eq!(m4.elements.len(), 1000);
        assert_eq!(m4.spec.key_len, 4 + 16 + 4 + 4);
        assert_eq!(m4.spec.data_len, 4);
        let m6 = &l.state.sets["snat6_2"];
        assert_eq!(m6.spec.key_len, 4 + 16 + 16);
        let (k, d) = m6.elements.iter().next().unwrap();
        assert_eq!(k.key.len(), 36);
        assert_eq!(d.data, addr_bytes(&"2001:db8:1::100".parse().unwrap()));
        assert_eq!(d.comment, "v6");
    }

    #[test]
    fn the_first_matching_rule_still_wins() {
        let range = |a, b| Some(PortSpec::Range(a, b));
        let l = snat_layout(vec![
            rule("wide", "198.18.0.100", range(1000, 2000), "198.18.1.100"),
            // Covered by `wide`: it can never match, and is left out.
            rule("inside", "198.18.0.100", range(1200, 1300), "198.18.1.101"),
            // Another address: same map.
            rule("other", "198.18.0.101", range(1000, 2000), "198.18.1.101"),
            // Overlaps `wide`: a map of its own, after wide's.
            rule("overlap", "198.18.0.100", range(1500, 2500), "198.18.1.102"),
            // The same key as `other`, whose map comes first: it never matches
            // (it joins the second map, which has no such key yet).
            rule("again", "198.18.0.101", range(1000, 2000), "198.18.1.103"),
        ]);
        let comments = &l.state.rules["lb_snat"];
        assert_eq!(comments.len(), 2, "{comments:?}");
        assert!(
            comments[0].starts_with("snat @snat4_1 ") && comments[0].ends_with("(port ranges)")
        );
        assert!(comments[1].starts_with("snat @snat4_2 "));
        let first = &l.state.sets["snat4_1"];
        assert_eq!(first.elements.len(), 2);
        assert!(first.spec.flags & libc::NFT_SET_INTERVAL as u32 != 0);
        assert_eq!(first.spec.concat, vec![1, 16, 4, 2]);
        let second = &l.state.sets["snat4_2"];
        assert_eq!(second.elements.len(), 2);
        let overlap = second
            .elements
            .iter()
            .find(|(_, d)| d.comment == "overlap")
            .map(|(k, _)| k)
            .unwrap();
        assert_eq!(
            overlap.key_end.as_ref().map(|e| e[24..26].to_vec()),
            Some(2500u16.to_be_bytes().to_vec())
        );
    }

    #[test]
    fn a_snat_rule_of_the_wrong_family_or_interface_is_refused() {
        let mut bad = rule("mixed", "198.18.0.100", None, "2001:db8::1");
        let err = plan(
            &DesiredState {
                services: Vec::new(),
                snat: vec![bad.clone()],
            },
            Counting::Off,
        );
        assert!(matches!(err, Err(DataplaneError::FamilyMismatch { .. })));
        bad.source = SnatSource::Address("198.18.1.1".parse().unwrap());
        bad.in_iface = Some("a-name-longer-than-15".into());
        let err = plan(
            &DesiredState {
                services: Vec::new(),
                snat: vec![bad],
            },
            Counting::Off,
        );
        assert!(matches!(err, Err(DataplaneError::BadInterfaceName { .. })));
    }
}
