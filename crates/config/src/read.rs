//! Phase 1: reads each section into the model, checking types, unknown keys, missing
//! keys and everything that can be judged inside one element.
//!
//! An element with any problem is kept as `None`, so that phase 2 (cross references)
//! neither trusts it nor reports follow-on errors about it.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use vrrp::checksum::ChecksumForm;
use vrrp::packet::Version;

use crate::model::*;
use crate::tree::{index, join, peek_name, Kind, Reader, Sv, Table};

/// What phase 1 produced: each list keeps the position of its elements in the file.
#[derive(Debug, Default)]
pub(crate) struct Draft {
    pub(crate) cluster: Option<ClusterSection>,
    pub(crate) nodes: Vec<Option<Node>>,
    pub(crate) groups: Vec<Option<SyncGroup>>,
    pub(crate) instances: Vec<Option<Instance>>,
    pub(crate) services: Vec<Option<Service>>,
    pub(crate) checks: Vec<Option<Check>>,
    pub(crate) nat: Vec<Option<NatRule>>,
    pub(crate) sync: Option<SyncSettings>,
    pub(crate) control: Option<ControlSettings>,
    pub(crate) metrics: Option<MetricsSettings>,
    pub(crate) dataplane: Option<DataplaneSettings>,
    pub(crate) vrrpd: Option<VrrpdSettings>,
    /// `[announce]` if written and read cleanly.
    pub(crate) announce: Option<AnnounceSettings>,
    /// Whether `[announce]` is written at all (read cleanly or not).
    pub(crate) announce_written: bool,
    /// Names of every element, valid or not (for "unknown reference" checks).
    pub(crate) raw_names: RawNames,
}

/// Names as written, even in elements that failed to read.
#[derive(Debug, Default)]
pub(crate) struct RawNames {
    pub(crate) groups: Vec<String>,
    pub(crate) instances: Vec<String>,
    pub(crate) checks: Vec<String>,
}

const TOP_KEYS: &[&str] = &[
    "cluster",
    "node",
    "sync_group",
    "instance",
    "service",
    "check",
    "nat",
    "sync",
    "control",
    "metrics",
    "dataplane",
    "vrrpd",
    "announce",
];

/// Reads the whole document.
pub(crate) fn read_document(r: &mut Reader, root: &Sv) -> Draft {
    let mut d = Draft::default();
    let Some(mut top) = Table::new(r, root, "", "the top level") else {
        return d;
    };
    match top.get("cluster") {
        Some((v, p)) => d.cluster = read_cluster(r, v, &p),
        None => r.error_at(
            0,
            "cluster",
            "the [cluster] section is missing",
            "add `[cluster]` with `name = \"edge\"`",
        ),
    }
    d.nodes = read_list(r, &mut top, "node", read_node);
    d.groups = read_list(r, &mut top, "sync_group", read_group);
    d.instances = read_list(r, &mut top, "instance", read_instance);
    d.services = read_list(r, &mut top, "service", read_service);
    d.checks = read_list(r, &mut top, "check", read_check);
    d.nat = read_list(r, &mut top, "nat", read_nat);
    d.raw_names = RawNames {
        groups: raw_names(root, "sync_group"),
        instances: raw_names(root, "instance"),
        checks: raw_names(root, "check"),
    };
    d.sync = read_section(r, &mut top, "sync", read_sync);
    d.control = read_section(r, &mut top, "control", read_control);
    d.metrics = read_section(r, &mut top, "metrics", read_metrics);
    d.dataplane = read_section(r, &mut top, "dataplane", read_dataplane);
    d.vrrpd = read_section(r, &mut top, "vrrpd", read_vrrpd);
    if let Some((v, p)) = top.get("announce") {
        d.announce_written = true;
        d.announce = read_announce(r, v, &p);
    }
    top.finish(r, TOP_KEYS);
    d
}

fn raw_names(root: &Sv, key: &str) -> Vec<String> {
    let Kind::Table(entries) = &root.kind else {
        return Vec::new();
    };
    let Some(e) = entries.iter().find(|e| e.key == key) else {
        return Vec::new();
    };
    match &e.value.kind {
        Kind::Array(a) => a.iter().filter_map(peek_name).map(str::to_string).collect(),
        // `[check]` written instead of `[[check]]` is reported; still learn its name.
        Kind::Table(_) => peek_name(&e.value)
            .map(str::to_string)
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}

/// Lists at least this long are read in two halves at once, on machines of several
/// cores (10,000s of `[[service]]` blocks).
const HALVES_FROM: usize = 2_048;

/// Reads an array of tables such as `[[service]]`. A long one is read in two halves
/// at once, the second half's problems and warnings appended after the first's:
/// what is reported, and in which order, does not depend on it.
fn read_list<T: Send>(
    r: &mut Reader,
    top: &mut Table<'_, '_>,
    key: &str,
    read: fn(&mut Reader, &Sv, &str) -> Option<T>,
) -> Vec<Option<T>> {
    let Some((v, path)) = top.get(key) else {
        return Vec::new();
    };
    match &v.kind {
        Kind::Array(items) => {
            let read_items = |r: &mut Reader, from: usize, to: usize| -> Vec<Option<T>> {
                items[from..to]
                    .iter()
                    .zip(from..)
                    .map(|(item, i)| read(r, item, &index(&path, i)))
                    .collect()
            };
            let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
            if items.len() < HALVES_FROM || cores < 2 {
                return read_items(r, 0, items.len());
            }
            let half = items.len() / 2;
            let mut second_reader = r.fork();
            let (mut first, second) = std::thread::scope(|scope| {
                let second = scope.spawn(|| read_items(&mut second_reader, half, items.len()));
                let first = read_items(r, 0, half);
                (first, second.join())
            });
            first.extend(second.unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
            r.absorb(second_reader);
            first
        }
        _ => {
            r.error_at(
                v.span.start,
                &path,
                format!("`{key}` must be a list of tables"),
                format!("write each entry as `[[{key}]]`, not `[{key}]`"),
            );
            Vec::new()
        }
    }
}

/// Reads an optional single section such as `[control]`, defaulting when absent.
fn read_section<T: Default>(
    r: &mut Reader,
    top: &mut Table<'_, '_>,
    key: &str,
    read: fn(&mut Reader, &Sv, &str) -> Option<T>,
) -> Option<T> {
    match top.get(key) {
        Some((v, p)) => read(r, v, &p),
        None => Some(T::default()),
    }
}

/// Runs `read` and returns its value only if it reported nothing.
fn clean<T>(r: &mut Reader, read: impl FnOnce(&mut Reader) -> Option<T>) -> Option<T> {
    let before = r.error_count();
    let out = read(r);
    if r.error_count() > before {
        None
    } else {
        out
    }
}

fn read_cluster(r: &mut Reader, v: &Sv, path: &str) -> Option<ClusterSection> {
    clean(r, |r| {
        let mut t = Table::new(r, v, path, "[cluster]")?;
        let name = t.req_name(r, "name", "name = \"edge\"");
        let mode = t
            .opt_choice(r, "mode", &choices(&ClusterMode::ALL, ClusterMode::name))
            .unwrap_or_default();
        t.finish(r, &["name", "mode"]);
        Some(ClusterSection { name: name?, mode })
    })
}

fn read_node(r: &mut Reader, v: &Sv, path: &str) -> Option<Node> {
    clean(r, |r| {
        let mut t = Table::new(r, v, path, "[[node]]")?;
        let name = t.req_name(r, "name", "name = \"lb1\"");
        let hostname = match t.get("hostname") {
            Some((v, p)) => r.name(v, &p),
            None => name.clone(),
        };
        let mut priority = BTreeMap::new();
        // Optional here: active-backup's cross-check asks for every sync group's
        // priority; active-active runs no VRRP.
        if let Some((v, p)) = t.get("priority") {
            if let Some(mut pt) = Table::new(r, v, &p, "the priority table") {
                for (e, ep) in pt.entries() {
                    match &e.value.kind {
                        Kind::Int(n) if (1..=255).contains(n) => {
                            priority.insert(e.key.to_string(), *n as u8);
                        }
                        Kind::Int(n) => r.error_value(
                            &ep,
                            format!("priority {n} for sync group `{}` is out of range 1..=255", e.key),
                            "use 1..=254 (255 only for the address owner); 0 is reserved for a master that is leaving",
                        ),
                        _ => {
                            let _ = r.int_in(&e.value, &ep, 1, 255, "");
                        }
                    }
                }
            }
        }
        let mut addresses = BTreeMap::new();
        if let Some((v, p)) = t.require(
            r,
            "addresses",
            "addresses = { eth0 = [\"198.18.0.11/24\"] }",
        ) {
            if let Some(mut at) = Table::new(r, v, &p, "the addresses table") {
                for (e, ep) in at.entries() {
                    if !crate::tree::valid_interface_name(&e.key) {
                        r.error_key(
                            &ep,
                            format!("`{}` is not a valid interface name", e.key),
                            "use 1 to 15 bytes without '/', ':' or whitespace, such as eth0",
                        );
                    }
                    let Some(list) = r.array(&e.value, &ep) else {
                        continue;
                    };
                    let mut addrs = Vec::new();
                    for (i, a) in list.iter().enumerate() {
                        let ap = index(&ep, i);
                        if let Some(a) = interface_address(r, a, &ap, false) {
                            addrs.push(a);
                        }
                    }
                    addresses.insert(e.key.to_string(), addrs);
                }
            }
        }
        let mut unicast_peers = BTreeMap::new();
        if let Some((v, p)) = t.get("unicast_peers") {
            if let Some(mut ut) = Table::new(r, v, &p, "the unicast_peers table") {
                for (e, ep) in ut.entries() {
                    let Some(list) = r.array(&e.value, &ep) else {
                        continue;
                    };
                    let peers: Vec<IpAddr> = list
                        .iter()
                        .enumerate()
                        .filter_map(|(i, a)| r.ip(a, &index(&ep, i)))
                        .collect();
                    if list.is_empty() {
                        r.error_value(
                            &ep,
                            "the unicast peer list is empty",
                            "list the peer's address, or remove the entry to use the other node's address",
                        );
                    }
                    unicast_peers.insert(e.key.to_string(), peers);
                }
            }
        }
        let sync_address = match t.get("sync_address") {
            Some((v, p)) => r.ip(v, &p),
            None => None,
        };
        t.finish(
            r,
            &[
                "name",
                "hostname",
                "priority",
                "addresses",
                "unicast_peers",
                "sync_address",
            ],
        );
        Some(Node {
            name: name?,
            hostname: hostname?,
            priority,
            addresses,
            unicast_peers,
            sync_address,
        })
    })
}

/// `addr/len` from a string; `host_default` allows a missing prefix.
fn interface_address(
    r: &mut Reader,
    v: &Sv,
    path: &str,
    host_default: bool,
) -> Option<InterfaceAddress> {
    let s = r.string(v, path)?;
    match InterfaceAddress::parse(&s, host_default) {
        Ok(a) if a.prefix_len == 0 => {
            r.error_at(
                v.span.start,
                path,
                format!("`{s}`: a /0 prefix makes every address this link's"),
                "write the subnet's real prefix length, such as /24 (IPv4) or /64 (IPv6)",
            );
            None
        }
        Ok(a) => Some(a),
        Err(AddressParseError::MissingPrefix) => {
            r.error_at(
                v.span.start,
                path,
                format!("`{s}` has no prefix length"),
                format!("write the interface's address with its subnet, such as \"{s}/24\""),
            );
            None
        }
        Err(e) => {
            r.error_at(
                v.span.start,
                path,
                format!("`{s}`: {e}"),
                "write an address with its prefix length, such as \"198.18.0.11/24\" or \"2001:db8:0:a::11/64\"",
            );
            None
        }
    }
}

fn read_group(r: &mut Reader, v: &Sv, path: &str) -> Option<SyncGroup> {
    clean(r, |r| {
        let mut t = Table::new(r, v, path, "[[sync_group]]")?;
        let name = t.req_name(r, "name", "name = \"edge\"");
        let mut instances = Vec::new();
        if let Some((v, p)) = t.require(r, "instances", "instances = [\"public\", \"server\"]") {
            if let Some(list) = r.array(v, &p) {
                if list.is_empty() {
                    r.error_value(
                        &p,
                        "a sync group needs at least one instance",
                        "list its instances, such as [\"public\", \"server\"]",
                    );
                }
                for (i, e) in list.iter().enumerate() {
                    let ep = index(&p, i);
                    if let Some(n) = r.name(e, &ep) {
                        if instances.contains(&n) {
                            r.error_value(
                                &ep,
                                format!("instance `{n}` is listed twice in this group"),
                                "list each instance once",
                            );
                        }
                        instances.push(n);
                    }
                }
            }
        }
        t.finish(r, &["name", "instances"]);
        Some(SyncGroup {
            name: name?,
            instances,
        })
    })
}

const INSTANCE_KEYS: &[&str] = &[
    "name",
    "interface",
    "vrid",
    "version",
    "advert_interval_ms",
    "vips",
    "preempt",
    "preempt_delay_ms",
    "accept_mode",
    "track_interfaces",
    "garp",
    "auth_pass",
    "checksum",
    "unicast",
    "unicast_min_ttl",
];

fn read_instance(r: &mut Reader, v: &Sv, path: &str) -> Option<Instance> {
    clean(r, |r| {
        let mut t = Table::new(r, v, path, "[[instance]]")?;
        let name = t.req_name(r, "name", "name = \"public\"");
        let interface = t
            .require(r, "interface", "interface = \"eth0\"")
            .and_then(|(v, p)| r.interface(v, &p));
        let vrid = t.require(r, "vrid", "vrid = 51").and_then(|(v, p)| {
            r.int_in(
                v,
                &p,
                1,
                255,
                "pick a VRID in 1..=255 not used by another instance on this link",
            )
        });
        let version = match t.get("version") {
            Some((v, p)) => match r.int_in(
                v,
                &p,
                2,
                3,
                "use version = 3 (or 2 for IPv4-only legacy peers)",
            ) {
                Some(2) => Some(Version::V2),
                Some(_) => Some(Version::V3),
                None => None,
            },
            None => Some(Version::V3),
        };
        let interval = t.opt_int(r, "advert_interval_ms", 1, i64::from(u32::MAX), "");
        let vips = t
            .require(r, "vips", "vips = [\"198.18.0.100/24\"]")
            .and_then(|(v, p)| read_vips(r, v, &p, interface.as_deref()));
        let preempt = t.opt_bool(r, "preempt").unwrap_or(true);
        let preempt_delay_ms = t
            .opt_int(
                r,
                "preempt_delay_ms",
                0,
                3_600_000,
                "use 0..=3600000 ms (one hour)",
            )
            .unwrap_or(0);
        let accept_mode = t.opt_bool(r, "accept_mode").unwrap_or(false);
        let track_interfaces = match t.get("track_interfaces") {
            Some((v, p)) => read_tracks(r, v, &p),
            None => Vec::new(),
        };
        let garp = match t.get("garp") {
            Some((v, p)) => read_garp(r, v, &p),
            None => GarpSettings::default(),
        };
        let auth_pass = t.opt_string(r, "auth_pass");
        let checksum = t.opt_choice(r, "checksum", &CHECKSUM_WORDS);
        let unicast = t.opt_bool(r, "unicast").unwrap_or(false);
        let unicast_min_ttl = t.opt_int(
            r,
            "unicast_min_ttl",
            1,
            255,
            "use 1..=255: 255 (the default) as the RFC says, or the TTL / hop limit the peer sends (keepalived: 64 unless its unicast_ttl is set)",
        );
        t.finish(r, INSTANCE_KEYS);
        if unicast_min_ttl.is_some() && !unicast {
            r.error_key(
                &t.key_path("unicast_min_ttl"),
                "unicast_min_ttl applies to unicast adverts only, and this instance sends multicast (multicast adverts always need TTL / hop limit 255)",
                "set unicast = true on this instance, or remove unicast_min_ttl",
            );
        }

        let version = version?;
        let vips = vips?;
        let is_v6 = vips
            .first()
            .is_some_and(|v: &Vip| v.address.address.is_ipv6());

        let advert_interval_ms = match interval {
            None => 1000,
            Some(ms) => {
                // Which intervals a version carries is the protocol core's rule; the
                // file counts in ms, the wire in centiseconds.
                let carried = ms % 10 == 0
                    && u16::try_from(ms / 10).is_ok_and(|cs| version.carries_interval_cs(cs));
                if !carried {
                    let (message, help) = match version {
                        Version::V2 => (
                            format!("advert interval {ms} ms is not representable in VRRPv2 (whole seconds, 1..=255 s)"),
                            "use a multiple of 1000 between 1000 and 255000, or version = 3",
                        ),
                        Version::V3 => (
                            format!("advert interval {ms} ms is not representable in VRRPv3 (10 ms steps, 10..=40950 ms)"),
                            "use a multiple of 10 between 10 and 40950",
                        ),
                    };
                    r.error_value(&t.key_path("advert_interval_ms"), message, help);
                }
                ms as u32
            }
        };
        if version == Version::V2 && is_v6 {
            r.error_value(
                &t.key_path("version"),
                "VRRPv2 carries IPv4 only, but this instance has IPv6 VIPs",
                "use version = 3 for IPv6",
            );
        }
        if let Some(pass) = &auth_pass {
            if version == Version::V3 {
                r.error_key(
                    &t.key_path("auth_pass"),
                    "auth_pass is a VRRPv2 feature; VRRPv3 has no authentication (RFC 5798)",
                    "remove auth_pass, or set version = 2 to talk to a legacy v2 peer",
                );
            } else if pass.is_empty()
                || pass.len() > 8
                || !pass.bytes().all(|b| b.is_ascii_graphic())
            {
                r.error_value(
                    &t.key_path("auth_pass"),
                    "auth_pass must be 1 to 8 printable ASCII characters",
                    "shorten it to at most 8 characters (only 8 bytes go on the wire)",
                );
            }
        }
        if checksum.is_some() && (version == Version::V2 || is_v6) {
            r.error_value(
                &t.key_path("checksum"),
                "checksum applies only to VRRPv3 over IPv4",
                "remove checksum: v2 checksums the message only and IPv6 always uses the pseudo-header",
            );
        }
        Some(Instance {
            name: name?,
            interface: interface?,
            vrid: vrid? as u8,
            version,
            advert_interval_ms,
            vips,
            preempt,
            preempt_delay_ms: preempt_delay_ms as u32,
            accept_mode,
            track_interfaces,
            garp,
            auth_pass,
            checksum: checksum.unwrap_or(ChecksumForm::PseudoHeader),
            unicast,
            unicast_min_ttl: unicast_min_ttl.map_or(255, |t| t as u8),
        })
    })
}

fn read_vips(r: &mut Reader, v: &Sv, path: &str, interface: Option<&str>) -> Option<Vec<Vip>> {
    let list = r.array(v, path)?;
    if list.is_empty() {
        r.error_value(
            path,
            "an instance needs at least one VIP",
            "add its virtual address, such as vips = [\"198.18.0.100/24\"]",
        );
        return None;
    }
    let mut vips: Vec<Vip> = Vec::new();
    let mut seen = HashSet::new();
    for (i, e) in list.iter().enumerate() {
        let ep = index(path, i);
        let vip = match &e.kind {
            Kind::Str(_) => interface_address(r, e, &ep, true).map(|address| Vip {
                address,
                label: None,
            }),
            Kind::Table(_) => {
                let Some(mut t) = Table::new(r, e, &ep, "a VIP") else {
                    continue;
                };
                let address = t
                    .require(r, "address", "address = \"198.18.0.100/24\"")
                    .and_then(|(v, p)| interface_address(r, v, &p, true));
                let label = t.opt_string(r, "label");
                t.finish(r, &["address", "label"]);
                let Some(address) = address else { continue };
                if let Some(l) = &label {
                    let lp = join(&ep, "label");
                    if address.address.is_ipv6() {
                        r.error_value(
                            &lp,
                            "IPv6 addresses have no labels",
                            "remove the label from this VIP",
                        );
                    } else if l.len() > 15 {
                        r.error_value(
                            &lp,
                            format!("label `{l}` is longer than 15 bytes"),
                            "shorten it, such as \"eth0:vip\"",
                        );
                    } else if let Some(ifname) = interface {
                        if !l.starts_with(&format!("{ifname}:")) {
                            r.error_value(
                                &lp,
                                format!("label `{l}` does not start with the instance's interface `{ifname}:`"),
                                format!("write it as \"{ifname}:{}\"", l.rsplit(':').next().unwrap_or("vip")),
                            );
                        }
                    }
                }
                Some(Vip { address, label })
            }
            _ => {
                r.error_at(
                    e.span.start,
                    &ep,
                    "a VIP is a string or a table",
                    "write \"198.18.0.100/24\" or { address = \"198.18.0.100/24\", label = \"eth0:vip\" }",
                );
                None
            }
        };
        let Some(vip) = vip else { continue };
        if let Some(first) = vips.first() {
            if first.address.is_ipv4() != vip.address.is_ipv4() {
                r.error_value(
                    &ep,
                    "this instance mixes IPv4 and IPv6 VIPs",
                    "put the other family's VIPs in their own instance (same sync group, own vrid)",
                );
            }
        }
        if !seen.insert(vip.address.address) {
            r.error_value(
                &ep,
                format!("VIP {} is listed twice", vip.address.address),
                "list each VIP once",
            );
        }
        vips.push(vip);
    }
    Some(vips)
}

fn read_tracks(r: &mut Reader, v: &Sv, path: &str) -> Vec<TrackInterface> {
    let Some(list) = r.array(v, path) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, e) in list.iter().enumerate() {
        let ep = index(path, i);
        let Some(mut t) = Table::new(r, e, &ep, "a tracked interface") else {
            continue;
        };
        let name = t
            .require(r, "name", "name = \"eth2\"")
            .and_then(|(v, p)| r.interface(v, &p));
        let weight = t
            .opt_int(
                r,
                "weight",
                -254,
                254,
                "use -254..=254 (0 = go to FAULT while the interface is down)",
            )
            .unwrap_or(0);
        t.finish(r, &["name", "weight"]);
        if let Some(name) = name {
            out.push(TrackInterface {
                name,
                weight: weight as i16,
            });
        }
    }
    out
}

fn read_garp(r: &mut Reader, v: &Sv, path: &str) -> GarpSettings {
    let d = GarpSettings::default();
    let Some(mut t) = Table::new(r, v, path, "the garp table") else {
        return d;
    };
    let g = GarpSettings {
        count: t
            .opt_int(r, "count", 1, 100, "")
            .map_or(d.count, |n| n as u32),
        spacing_ms: t
            .opt_int(r, "spacing_ms", 0, 10_000, "")
            .map_or(d.spacing_ms, |n| n as u32),
        refresh_s: t
            .opt_int(r, "refresh_s", 0, 86_400, "use 0 (never) up to 86400")
            .map_or(d.refresh_s, |n| n as u32),
        repeat_after_s: t
            .opt_int(r, "repeat_after_s", 0, 3_600, "use 0 (never) up to 3600")
            .map_or(d.repeat_after_s, |n| n as u32),
    };
    t.finish(r, &["count", "spacing_ms", "refresh_s", "repeat_after_s"]);
    g
}

/// The configuration's spelling of each of `all` (for `opt_choice`).
fn choices<T: Copy>(all: &[T], name: fn(T) -> &'static str) -> Vec<(&'static str, T)> {
    all.iter().map(|&v| (name(v), v)).collect()
}

/// Reads `key` (one port) or `key_range` ("A-B"): at most one of them.
fn port_or_range(
    r: &mut Reader,
    t: &mut Table<'_, '_>,
    key: &str,
    range_key: &str,
) -> Option<Option<PortRange>> {
    let before = r.error_count();
    let port = t.opt_int(r, key, 1, 65_535, "use a port in 1..=65535");
    let range = match t.get(range_key) {
        Some((v, p)) => port_range(r, v, &p),
        None => None,
    };
    if t.has(key) && t.has(range_key) {
        r.error_key(
            &t.key_path(range_key),
            format!("both `{key}` and `{range_key}` are given"),
            format!("keep only one of `{key}` and `{range_key}`"),
        );
    }
    if r.error_count() > before {
        return None;
    }
    Some(range.or(port.map(|p| PortRange::single(p as u16))))
}

fn port_range(r: &mut Reader, v: &Sv, path: &str) -> Option<PortRange> {
    let s = r.string(v, path)?;
    if !s.contains('-') {
        r.error_at(
            v.span.start,
            path,
            format!("`{s}` is not a port range"),
            "write START-END, such as \"8000-8010\" (or use the single-port key)",
        );
        return None;
    }
    match s.parse::<PortRange>() {
        Ok(p) => Some(p),
        Err(PortRangeError::Reversed { start, end }) => {
            r.error_at(
                v.span.start,
                path,
                format!("port range start {start} is above its end {end}"),
                format!("write it as \"{end}-{start}\""),
            );
            None
        }
        Err(e) => {
            r.error_at(
                v.span.start,
                path,
                format!("`{s}`: {e}"),
                "write START-END with ports in 1..=65535, such as \"8000-8010\"",
            );
            None
        }
    }
}

const SERVICE_KEYS: &[&str] = &[
    "name",
    "vip",
    "port",
    "port_range",
    "protocol",
    "scheduler",
    "mode",
    "persistence",
    "sorry_server",
    "server",
    "inhibit_on_failure",
    "quorum",
    "quorum_priority_delta",
    "counters",
];

pub(crate) fn read_service(r: &mut Reader, v: &Sv, path: &str) -> Option<Service> {
    clean(r, |r| {
        let mut t = Table::new(r, v, path, "[[service]]")?;
        let name = t.req_name(r, "name", "name = \"web\"");
        let vip = t.req_ip(r, "vip", "vip = \"198.18.0.100\"");
        let ports = port_or_range(r, &mut t, "port", "port_range");
        if matches!(ports, Some(None)) {
            r.error_at(
                t.start,
                &t.key_path("port"),
                "[[service]] is missing the required key `port` (or `port_range`)",
                "add `port = 80` or `port_range = \"8000-8010\"`",
            );
        }
        let protocol = t
            .opt_choice(r, "protocol", &choices(&Protocol::ALL, Protocol::name))
            .unwrap_or(Protocol::Tcp);
        let scheduler = t
            .opt_choice(r, "scheduler", &choices(&Scheduler::ALL, Scheduler::name))
            .unwrap_or(DEFAULT_SCHEDULER);
        let mode = t
            .opt_choice(r, "mode", &choices(&Forwarding::ALL, Forwarding::name))
            .unwrap_or(Forwarding::Nat);
        let persistence = match t.get("persistence") {
            Some((v, p)) => read_persistence(r, v, &p, vip),
            None => None,
        };
        let sorry_server = match t.get("sorry_server") {
            Some((v, p)) => {
                let mut st = Table::new(r, v, &p, "the sorry_server table")?;
                let address = st
                    .require(r, "address", "address = \"198.18.1.30\"")
                    .and_then(|(v, p)| r.ip(v, &p));
                let port = st.opt_int(r, "port", 1, 65_535, "").map(|n| n as u16);
                st.finish(r, &["address", "port"]);
                address.map(|address| SorryServer { address, port })
            }
            None => None,
        };
        let servers = match t.get("server") {
            Some((v, p)) => match &v.kind {
                Kind::Array(items) => items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, item)| read_server(r, item, &index(&p, i)))
                    .collect(),
                _ => {
                    r.error_value(
                        &p,
                        "`server` must be a list of tables",
                        "write each server as `[[service.server]]` after its `[[service]]`",
                    );
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        let inhibit_on_failure = t.opt_bool(r, "inhibit_on_failure").unwrap_or(true);
        let counters = t.opt_bool(r, "counters").unwrap_or(false);
        let quorum = t
            .opt_int(
                r,
                "quorum",
                1,
                65_535,
                "use the number of healthy servers the service needs, 1 or more",
            )
            .map(|n| n as u32);
        let quorum_priority_delta = t.opt_int(
            r,
            "quorum_priority_delta",
            -254,
            -1,
            "use -254..=-1: the priority is lowered while the quorum is lost",
        );
        if let Some(q) = quorum {
            if q as usize > servers.len() {
                r.error_value(
                    &t.key_path("quorum"),
                    format!(
                        "quorum {q} is more than the number of servers ({}): it could never be met",
                        servers.len()
                    ),
                    format!("use at most {}", servers.len().max(1)),
                );
            }
        } else if quorum_priority_delta.is_some() {
            r.error_key(
                &t.key_path("quorum_priority_delta"),
                "quorum_priority_delta has no effect without quorum",
                "add `quorum = 1` (the healthy servers the service needs), or remove it",
            );
        }
        t.finish(r, SERVICE_KEYS);

        let ports = ports.flatten()?;
        let vip = vip?;
        for (i, s) in servers.iter().enumerate() {
            let sp = format!("{path}.server[{i}]");
            if !ports.is_single() && s.port.is_some() {
                r.error_value(
                    &join(&sp, "port"),
                    "a server of a port-range service cannot set a port: the destination port is kept",
                    "remove the server's port",
                );
            }
            if matches!(mode, Forwarding::Nat | Forwarding::DirectRoute)
                && s.address.is_ipv4() != vip.is_ipv4()
            {
                r.error_value(
                    &join(&sp, "address"),
                    format!(
                        "server {} and VIP {vip} are of different address families, which {} mode cannot forward",
                        s.address,
                        if mode == Forwarding::Nat { "nat" } else { "dr" }
                    ),
                    "use a server of the VIP's family, or mode = \"tunnel\"",
                );
            }
            if mode != Forwarding::Nat {
                if let Some(port) = s.port {
                    if ports.is_single() && port != ports.start {
                        r.error_value(
                            &join(&sp, "port"),
                            format!(
                                "{} mode cannot change the port ({} to {port})",
                                mode.name(),
                                ports.start
                            ),
                            format!("use port {} or mode = \"nat\"", ports.start),
                        );
                    }
                }
            }
        }
        let servers = servers
            .into_iter()
            .map(|mut s| {
                if ports.is_single() && s.port.is_none() {
                    s.port = Some(ports.start);
                }
                s
            })
            .collect();
        let sorry_server = sorry_server.map(|mut s| {
            if ports.is_single() && s.port.is_none() {
                s.port = Some(ports.start);
            }
            s
        });
        Some(Service {
            name: name?,
            vip,
            ports,
            protocol,
            scheduler,
            mode,
            persistence,
            sorry_server,
            servers,
            inhibit_on_failure,
            counters,
            quorum,
            quorum_priority_delta: quorum_priority_delta
                .map_or(DEFAULT_QUORUM_PRIORITY_DELTA, |d| d as i16),
        })
    })
}

fn read_persistence(
    r: &mut Reader,
    v: &Sv,
    path: &str,
    vip: Option<IpAddr>,
) -> Option<Persistence> {
    let mut t = Table::new(r, v, path, "the persistence table")?;
    let timeout_s = t
        .require(r, "timeout_s", "timeout_s = 300")
        .and_then(|(v, p)| r.int_in(v, &p, 1, 2_678_400, "use 1..=2678400 s (31 days)"));
    let max = if vip.is_some_and(|a| a.is_ipv6()) {
        128
    } else {
        32
    };
    let prefix_len = t.opt_int(r, "prefix_len", 0, max, "").unwrap_or(max);
    t.finish(r, &["timeout_s", "prefix_len"]);
    Some(Persistence {
        timeout_s: timeout_s? as u32,
        prefix_len: prefix_len as u8,
    })
}

fn read_server(r: &mut Reader, v: &Sv, path: &str) -> Option<RealServer> {
    clean(r, |r| {
        let mut t = Table::new(r, v, path, "[[service.server]]")?;
        let name = t.req_name(r, "name", "name = \"srv1\"");
        let address = t.req_ip(r, "address", "address = \"198.18.1.21\"");
        let port = t.opt_int(r, "port", 1, 65_535, "use a port in 1..=65535");
        let weight = t
            .opt_int(
                r,
                "weight",
                0,
                i64::from(MAX_WEIGHT),
                "use 0..=65535 (0 drains the server)",
            )
            .unwrap_or(1);
        let check = t.opt_name(r, "check");
        t.finish(r, &["name", "address", "port", "weight", "check"]);
        Some(RealServer {
            name: name?,
            address: address?,
            port: port.map(|p| p as u16),
            weight: weight as u32,
            check,
        })
    })
}

/// Type-specific check keys, and the types that take them.
const CHECK_TYPE_KEYS: &[(&str, &[&str])] = &[
    ("path", &["http", "https"]),
    ("expect_status", &["http", "https"]),
    ("host", &["http", "https"]),
    ("body_match", &["http", "https"]),
    ("verify_cert", &["https"]),
    ("query_name", &["udp_dns"]),
    ("argv", &["exec"]),
];

fn read_check(r: &mut Reader, v: &Sv, path: &str) -> Option<Check> {
    clean(r, |r| {
        let mut t = Table::new(r, v, path, "[[check]]")?;
        let name = t.req_name(r, "name", "name = \"web-http\"");
        let kind_word = t.require(r, "type", "type = \"tcp\"").and_then(|(v, p)| {
            r.choice(
                v,
                &p,
                &[
                    ("tcp", "tcp"),
                    ("tcp_syn", "tcp_syn"),
                    ("http", "http"),
                    ("https", "https"),
                    ("udp_dns", "udp_dns"),
                    ("exec", "exec"),
                ],
            )
        });
        let port = t.opt_int(r, "port", 1, 65_535, "").map(|n| n as u16);
        let interval = t
            .opt_int(r, "interval_ms", 100, 3_600_000, "use 100..=3600000 ms")
            .unwrap_or(2000);
        let timeout = t
            .opt_int(
                r,
                "timeout_ms",
                10,
                3_600_000,
                "use 10 ms or more, at most interval_ms",
            )
            .unwrap_or(1000.min(interval));
        let rise = t.opt_int(r, "rise", 1, 100, "").unwrap_or(2);
        let fall = t.opt_int(r, "fall", 1, 100, "").unwrap_or(3);
        let jitter_percent = t
            .opt_int(
                r,
                "jitter_percent",
                0,
                50,
                "use 0..=50 (percent of interval_ms)",
            )
            .unwrap_or(10);
        let dampening = match t.get("dampening") {
            Some((v, p)) => read_dampening(r, v, &p),
            None => Some(FlapDampening::default()),
        };
        if timeout > interval {
            r.error_value(
                &t.key_path("timeout_ms"),
                format!("timeout_ms {timeout} is longer than interval_ms {interval}"),
                "make timeout_ms at most interval_ms",
            );
        }
        let mut allowed: Vec<&str> = vec![
            "name",
            "type",
            "port",
            "interval_ms",
            "timeout_ms",
            "rise",
            "fall",
            "jitter_percent",
            "dampening",
        ];
        let Some(kind_word) = kind_word else {
            // Unknown type: its keys cannot be judged, so leave them alone.
            for (key, _) in CHECK_TYPE_KEYS {
                let _ = t.get(key);
            }
            t.finish(r, &allowed);
            return None;
        };
        for (key, types) in CHECK_TYPE_KEYS {
            if types.contains(&kind_word) {
                allowed.push(key);
            } else if t.has(key) {
                let (_, p) = t.get(key)?;
                r.error_key(
                    &p,
                    format!("`{key}` is not used by {kind_word} checks"),
                    format!("remove it, or use type = \"{}\"", types.join("\" or \"")),
                );
            }
        }
        let kind = match kind_word {
            "tcp" => Some(CheckKind::Tcp),
            "tcp_syn" => Some(CheckKind::TcpSyn),
            "http" | "https" => read_http(r, &mut t, kind_word == "https").map(|h| {
                if kind_word == "https" {
                    CheckKind::Https(h)
                } else {
                    CheckKind::Http(h)
                }
            }),
            "udp_dns" => t
                .require(r, "query_name", "query_name = \"example.org\"")
                .and_then(|(v, p)| {
                    let q = r.string(v, &p)?;
                    if !valid_dns_name(&q) {
                        r.error_value(
                            &p,
                            format!("`{q}` is not a valid DNS name"),
                            "use labels of 1..=63 letters, digits or '-', at most 253 characters",
                        );
                        return None;
                    }
                    Some(CheckKind::UdpDns { query_name: q })
                }),
            _ => read_exec(r, &mut t),
        };
        t.finish(r, &allowed);
        Some(Check {
            name: name?,
            kind: kind?,
            port,
            interval_ms: interval as u32,
            timeout_ms: timeout as u32,
            rise: rise as u32,
            fall: fall as u32,
            jitter_percent: jitter_percent as u8,
            dampening,
        })
    })
}

/// `dampening = { max_transitions = 4, window_ms = 60000, hold_ms = 30000 }`;
/// `max_transitions = 0` turns dampening off (`None`).
fn read_dampening(r: &mut Reader, v: &Sv, path: &str) -> Option<FlapDampening> {
    let d = FlapDampening::default();
    let mut t = Table::new(r, v, path, "the dampening table")?;
    let max_transitions = t
        .opt_int(
            r,
            "max_transitions",
            0,
            1000,
            "use 2..=1000, or 0 to turn dampening off",
        )
        .unwrap_or(i64::from(d.max_transitions));
    let window_ms = t
        .opt_int(
            r,
            "window_ms",
            100,
            86_400_000,
            "use 100..=86400000 ms (one day)",
        )
        .unwrap_or(i64::from(d.window_ms));
    let hold_ms = t
        .opt_int(r, "hold_ms", 0, 86_400_000, "use 0..=86400000 ms (one day)")
        .unwrap_or(i64::from(d.hold_ms));
    t.finish(r, &["max_transitions", "window_ms", "hold_ms"]);
    if max_transitions == 1 {
        r.error_value(
            &join(path, "max_transitions"),
            "max_transitions 1 would keep a server that went down from ever coming back",
            "use 2 or more (a down and an up), or 0 to turn dampening off",
        );
        return None;
    }
    (max_transitions != 0).then_some(FlapDampening {
        max_transitions: max_transitions as u32,
        window_ms: window_ms as u32,
        hold_ms: hold_ms as u32,
    })
}

fn read_http(r: &mut Reader, t: &mut Table<'_, '_>, https: bool) -> Option<HttpCheck> {
    let path = match t.get("path") {
        Some((v, p)) => {
            let s = r.string(v, &p)?;
            if !s.starts_with('/') || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
                r.error_value(
                    &p,
                    format!("request path `{s}` must start with '/' and contain no spaces"),
                    "write a path such as \"/health\"",
                );
            }
            s
        }
        None => "/".to_string(),
    };
    let mut expect_status = Vec::new();
    match t.get("expect_status") {
        Some((v, p)) => {
            let list = r.array(v, &p)?;
            if list.is_empty() {
                r.error_value(
                    &p,
                    "expect_status is empty",
                    "list the codes that mean up, such as [200]",
                );
            }
            for (i, e) in list.iter().enumerate() {
                if let Some(c) = r.int_in(
                    e,
                    &index(&p, i),
                    100,
                    599,
                    "use HTTP status codes 100..=599",
                ) {
                    expect_status.push(c as u16);
                }
            }
        }
        None => expect_status.push(200),
    }
    let host = t.opt_string(r, "host");
    let body_match = t.opt_string(r, "body_match");
    let verify_cert = if https {
        t.opt_bool(r, "verify_cert").unwrap_or(true)
    } else {
        false
    };
    Some(HttpCheck {
        path,
        expect_status,
        host,
        body_match,
        verify_cert,
    })
}

fn read_exec(r: &mut Reader, t: &mut Table<'_, '_>) -> Option<CheckKind> {
    let (v, p) = t.require(r, "argv", "argv = [\"/usr/local/bin/check\", \"--quiet\"]")?;
    if let Kind::Str(s) = &v.kind {
        r.error_value(
            &p,
            "exec checks take an argv list, never a shell string",
            format!(
                "split it into a list: argv = [\"{}\", ...]",
                s.split_whitespace().next().unwrap_or("/path/to/program")
            ),
        );
        return None;
    }
    let list = r.array(v, &p)?;
    let argv: Vec<String> = list
        .iter()
        .enumerate()
        .filter_map(|(i, e)| r.string(e, &index(&p, i)))
        .collect();
    match argv.first() {
        None => {
            r.error_value(
                &p,
                "argv is empty",
                "give the program's absolute path and its arguments",
            );
            None
        }
        Some(prog) if !prog.starts_with('/') => {
            r.error_value(
                &format!("{p}[0]"),
                format!("program `{prog}` is not an absolute path (no PATH lookup is done)"),
                "write the full path, such as \"/usr/local/bin/check\"",
            );
            None
        }
        Some(_) => Some(CheckKind::Exec { argv }),
    }
}

fn valid_dns_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

const NAT_KEYS: &[&str] = &[
    "name",
    "in_interface",
    "out_interface",
    "protocol",
    "destination",
    "destination_port",
    "destination_port_range",
    "snat",
];

fn read_nat(r: &mut Reader, v: &Sv, path: &str) -> Option<NatRule> {
    clean(r, |r| {
        let mut t = Table::new(r, v, path, "[[nat]]")?;
        let name = t.req_name(r, "name", "name = \"web-snat\"");
        let in_interface = match t.get("in_interface") {
            Some((v, p)) => r.interface(v, &p),
            None => None,
        };
        let out_interface = match t.get("out_interface") {
            Some((v, p)) => r.interface(v, &p),
            None => None,
        };
        let protocol = t
            .opt_choice(
                r,
                "protocol",
                &choices(&NatProtocol::ALL, NatProtocol::name),
            )
            .unwrap_or(NatProtocol::Any);
        let destination = t
            .require(r, "destination", "destination = \"198.18.0.100\"")
            .and_then(|(v, p)| r.ip(v, &p));
        let ports = port_or_range(r, &mut t, "destination_port", "destination_port_range");
        if protocol == NatProtocol::Any {
            if let Some(Some(_)) = ports {
                let key = if t.has("destination_port") {
                    "destination_port"
                } else {
                    "destination_port_range"
                };
                r.error_key(
                    &t.key_path(key),
                    "a destination port needs protocol tcp or udp",
                    "set protocol = \"tcp\" or \"udp\", or remove the port",
                );
            }
        }
        let snat = t
            .require(r, "snat", "snat = { address = \"198.18.1.100\" }")
            .and_then(|(v, p)| read_snat(r, v, &p, protocol));
        t.finish(r, NAT_KEYS);
        Some(NatRule {
            name: name?,
            in_interface,
            out_interface,
            protocol,
            destination: destination?,
            destination_ports: ports?,
            snat: snat?,
        })
    })
}

fn read_snat(r: &mut Reader, v: &Sv, path: &str, protocol: NatProtocol) -> Option<SnatTarget> {
    let mut t = Table::new(r, v, path, "the snat table")?;
    let address = match t.get("address") {
        Some((v, p)) => r.ip(v, &p),
        None => None,
    };
    let mut pool = Vec::new();
    if let Some((v, p)) = t.get("pool") {
        if let Some(list) = r.array(v, &p) {
            if list.is_empty() {
                r.error_value(
                    &p,
                    "the SNAT pool is empty",
                    "list at least one { address = ..., ports = ... }",
                );
            }
            for (i, e) in list.iter().enumerate() {
                let ep = index(&p, i);
                let Some(mut et) = Table::new(r, e, &ep, "a SNAT pool entry") else {
                    continue;
                };
                let address = et
                    .require(r, "address", "address = \"198.18.1.100\"")
                    .and_then(|(v, p)| r.ip(v, &p));
                let ports = match et.get("ports") {
                    Some((v, pp)) => {
                        if protocol == NatProtocol::Any {
                            r.error_key(
                                &pp,
                                "SNAT ports need protocol tcp or udp",
                                "set the rule's protocol, or remove ports",
                            );
                        }
                        port_range(r, v, &pp)
                    }
                    None => None,
                };
                et.finish(r, &["address", "ports"]);
                if let Some(address) = address {
                    pool.push(SnatPoolEntry { address, ports });
                }
            }
        }
    }
    let node_address = match t.get("node_address") {
        Some((v, p)) => r.interface(v, &p),
        None => None,
    };
    let written: Vec<&str> = ["address", "pool", "node_address"]
        .into_iter()
        .filter(|k| t.has(k))
        .collect();
    t.finish(r, &["address", "pool", "node_address"]);
    if written.len() > 1 {
        r.error_key(
            &join(path, written[1]),
            format!("snat has both `{}` and `{}`", written[0], written[1]),
            "keep one: a single address, a pool of addresses and port ranges, or each node's own address on an interface",
        );
        return None;
    }
    if written.is_empty() {
        r.error_value(
            path,
            "snat needs `address`, `pool` or `node_address`",
            "write snat = { address = \"198.18.1.100\" }",
        );
        return None;
    }
    match (address, node_address) {
        (Some(a), _) => Some(SnatTarget::Address(a)),
        (None, Some(iface)) => Some(SnatTarget::NodeAddress(iface)),
        (None, None) => Some(SnatTarget::Pool(pool)),
    }
}

fn read_sync(r: &mut Reader, v: &Sv, path: &str) -> Option<SyncSettings> {
    clean(r, |r| {
        let d = SyncSettings::default();
        let mut t = Table::new(r, v, path, "[sync]")?;
        let s = SyncSettings {
            enabled: t.opt_bool(r, "enabled").unwrap_or(d.enabled),
            interface: match t.get("interface") {
                Some((v, p)) => r.interface(v, &p),
                None => None,
            },
            port: t
                .opt_int(r, "port", 1, 65_535, "")
                .map_or(d.port, |n| n as u16),
            ipvs_sync_id: t
                .opt_int(r, "ipvs_sync_id", 0, 255, "")
                .map_or(d.ipvs_sync_id, |n| n as u8),
            preempt_wait_ms: t
                .opt_int(
                    r,
                    "preempt_wait_ms",
                    0,
                    i64::from(crate::model::MAX_PREEMPT_WAIT_MS),
                    "",
                )
                .map_or(d.preempt_wait_ms, |n| n as u32),
        };
        t.finish(
            r,
            &[
                "enabled",
                "interface",
                "port",
                "ipvs_sync_id",
                "preempt_wait_ms",
            ],
        );
        if s.enabled && s.interface.is_none() {
            r.error_at(
                t.start,
                &join(path, "interface"),
                "connection sync is enabled but no interface is given",
                "add `interface = \"eth1\"` (the server-side or a dedicated link)",
            );
        }
        Some(s)
    })
}

fn socket_path(r: &mut Reader, t: &mut Table<'_, '_>, key: &str, default: &str) -> PathBuf {
    match t.get(key) {
        Some((v, p)) => match r.string(v, &p) {
            Some(s) if s.starts_with('/') && s.len() < 108 => PathBuf::from(s),
            Some(s) => {
                r.error_value(
                    &p,
                    format!("socket path `{s}` must be absolute and shorter than 108 bytes"),
                    format!("use a path such as \"{default}\""),
                );
                PathBuf::from(default)
            }
            None => PathBuf::from(default),
        },
        None => PathBuf::from(default),
    }
}

/// `control.state_dir`: an absolute directory, if given.
fn state_dir(r: &mut Reader, t: &mut Table<'_, '_>) -> Option<PathBuf> {
    let (v, p) = t.get("state_dir")?;
    match r.string(v, &p) {
        Some(s) if s.starts_with('/') => Some(PathBuf::from(s)),
        Some(s) => {
            r.error_value(
                &p,
                format!("state_dir `{s}` must be an absolute path"),
                "use a directory such as \"/var/lib/lbsuite\" (systemd: StateDirectory=lbsuite)",
            );
            None
        }
        None => None,
    }
}

fn read_control(r: &mut Reader, v: &Sv, path: &str) -> Option<ControlSettings> {
    clean(r, |r| {
        let d = ControlSettings::default();
        let mut t = Table::new(r, v, path, "[control]")?;
        let c = ControlSettings {
            vrrpd_socket: socket_path(r, &mut t, "vrrpd_socket", DEFAULT_VRRPD_SOCKET),
            lbd_socket: socket_path(r, &mut t, "lbd_socket", DEFAULT_LBD_SOCKET),
            group: match t.get("group") {
                Some((v, p)) => r.name(v, &p),
                None => None,
            },
            prepare_budget_ms: t
                .opt_int(
                    r,
                    "prepare_budget_ms",
                    0,
                    10_000,
                    "use 0..=10000 ms (tens of ms is typical)",
                )
                .map_or(d.prepare_budget_ms, |n| n as u32),
            max_connections: t
                .opt_int(
                    r,
                    "max_connections",
                    1,
                    4096,
                    "use 1..=4096 connections (the default 64 is plenty for operators and tools)",
                )
                .map_or(d.max_connections, |n| n as u32),
            idle_timeout_ms: t
                .opt_int(
                    r,
                    "idle_timeout_ms",
                    100,
                    3_600_000,
                    "use 100..=3600000 ms (default 30000)",
                )
                .map_or(d.idle_timeout_ms, |n| n as u32),
            state_dir: state_dir(r, &mut t),
        };
        t.finish(
            r,
            &[
                "vrrpd_socket",
                "lbd_socket",
                "group",
                "prepare_budget_ms",
                "max_connections",
                "idle_timeout_ms",
                "state_dir",
            ],
        );
        if c.vrrpd_socket == c.lbd_socket {
            r.error_value(
                &join(path, "lbd_socket"),
                "vrrpd and lbd cannot share one socket path",
                format!("use different paths, such as \"{DEFAULT_LBD_SOCKET}\""),
            );
        }
        Some(c)
    })
}

fn listen(r: &mut Reader, t: &mut Table<'_, '_>, key: &str, default: SocketAddr) -> SocketAddr {
    let Some((v, p)) = t.get(key) else {
        return default;
    };
    let Some(s) = r.string(v, &p) else {
        return default;
    };
    match s.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            r.error_value(
                &p,
                format!("`{s}` is not an address:port"),
                format!(
                    "write it as \"{default}\" (IPv6 as \"[::1]:{}\")",
                    default.port()
                ),
            );
            default
        }
    }
}

fn read_metrics(r: &mut Reader, v: &Sv, path: &str) -> Option<MetricsSettings> {
    clean(r, |r| {
        let d = MetricsSettings::default();
        let mut t = Table::new(r, v, path, "[metrics]")?;
        let m = MetricsSettings {
            enabled: t.opt_bool(r, "enabled").unwrap_or(d.enabled),
            vrrpd_listen: listen(r, &mut t, "vrrpd_listen", d.vrrpd_listen),
            lbd_listen: listen(r, &mut t, "lbd_listen", d.lbd_listen),
        };
        t.finish(r, &["enabled", "vrrpd_listen", "lbd_listen"]);
        if m.enabled && m.vrrpd_listen == m.lbd_listen {
            r.error_value(
                &join(path, "lbd_listen"),
                format!("vrrpd and lbd cannot both listen on {}", m.lbd_listen),
                "give each daemon its own port, such as 9612 and 9613",
            );
        }
        Some(m)
    })
}

fn read_dataplane(r: &mut Reader, v: &Sv, path: &str) -> Option<DataplaneSettings> {
    clean(r, |r| {
        let d = DataplaneSettings::default();
        let mut t = Table::new(r, v, path, "[dataplane]")?;
        let backend = t
            .opt_choice(
                r,
                "backend",
                &choices(&BackendChoice::ALL, BackendChoice::name),
            )
            .unwrap_or(d.backend);
        let nft_table = match t.get("nft_table") {
            Some((v, p)) => {
                let s = r.string(v, &p)?;
                if s.is_empty()
                    || s.len() > 64
                    || !s
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    r.error_value(
                        &p,
                        format!("`{s}` is not a usable nftables table name"),
                        "use 1..=64 letters, digits, '_' or '-', such as \"lbsuite\"",
                    );
                }
                s
            }
            None => d.nft_table,
        };
        let flowtable = t.opt_bool(r, "flowtable").unwrap_or(d.flowtable);
        let mut flowtable_devices = Vec::new();
        if let Some((v, p)) = t.get("flowtable_devices") {
            for (i, e) in r.array(v, &p).unwrap_or_default().iter().enumerate() {
                let ep = index(&p, i);
                if let Some(n) = r.interface(e, &ep) {
                    if flowtable_devices.contains(&n) {
                        r.error_value(
                            &ep,
                            format!("interface `{n}` is listed twice"),
                            "list each interface once",
                        );
                    }
                    flowtable_devices.push(n);
                }
            }
        }
        t.finish(
            r,
            &["backend", "nft_table", "flowtable", "flowtable_devices"],
        );
        Some(DataplaneSettings {
            backend,
            nft_table,
            flowtable,
            flowtable_devices,
        })
    })
}

/// A path (absolute, no control characters), or the default when absent.
fn abs_path(r: &mut Reader, t: &mut Table<'_, '_>, key: &str, default: PathBuf) -> PathBuf {
    let Some((v, p)) = t.get(key) else {
        return default;
    };
    let Some(s) = r.string(v, &p) else {
        return default;
    };
    if !s.starts_with('/') || s.chars().any(char::is_control) {
        r.error_value(
            &p,
            format!("`{s}` is not an absolute path"),
            format!("write the full path, such as \"{}\"", default.display()),
        );
    }
    PathBuf::from(s)
}

fn read_announce(r: &mut Reader, v: &Sv, path: &str) -> Option<AnnounceSettings> {
    clean(r, |r| {
        let mut t = Table::new(r, v, path, "[announce]")?;
        let daemon = match t.get("daemon") {
            Some((v, p)) => r.choice(v, &p, &choices(&RoutingDaemon::ALL, RoutingDaemon::name)),
            None => {
                r.error_value(
                    path,
                    "[announce] needs `daemon`",
                    "add daemon = \"frr\" (or \"bird\"): the routing daemon on each node that announces the VIPs",
                );
                None
            }
        };
        let mut a = AnnounceSettings::new(daemon.unwrap_or(RoutingDaemon::Frr));
        a.asn = t
            .opt_int(
                r,
                "asn",
                1,
                i64::from(u32::MAX),
                "use the AS number of the `router bgp` in the node's FRR configuration (1..=4294967295)",
            )
            .map(|n| n as u32);
        if daemon == Some(RoutingDaemon::Frr) && a.asn.is_none() && !t.has("asn") {
            r.error_value(
                path,
                "daemon = \"frr\" needs `asn`",
                "add asn = <the AS number of `router bgp` in frr.conf>: lbd adds its `network` lines under it",
            );
        }
        a.vtysh = abs_path(r, &mut t, "vtysh", a.vtysh);
        a.birdc = abs_path(r, &mut t, "birdc", a.birdc);
        a.bird_include = abs_path(r, &mut t, "bird_include", a.bird_include);
        if t.has("bird_socket") {
            a.bird_socket = Some(abs_path(
                r,
                &mut t,
                "bird_socket",
                PathBuf::from("/run/bird/bird.ctl"),
            ));
        }
        if let Some((v, p)) = t.get("pathspace") {
            if let Some(s) = r.string(v, &p) {
                let bare = s.replace(NODE_PLACEHOLDER, "n");
                if bare.is_empty()
                    || !bare
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
                {
                    r.error_value(
                        &p,
                        format!("`{s}` is not a usable FRR pathspace"),
                        "use letters, digits, '_', '-' or '.', and {node} for the node's name, such as \"{node}\"",
                    );
                }
                a.pathspace = Some(s);
            }
        }
        if let Some((v, p)) = t.get("bird_protocol") {
            if let Some(s) = r.string(v, &p) {
                if s.is_empty()
                    || !s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
                    || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    r.error_value(
                        &p,
                        format!("`{s}` is not a BIRD protocol name"),
                        "use a letter, then letters, digits or '_', such as \"lbsuite_vips\"",
                    );
                }
                a.bird_protocol = s;
            }
        }
        if let Some(n) = t.opt_int(
            r,
            "refresh_ms",
            100,
            3_600_000,
            "use 100..=3600000 ms (5000 is the default)",
        ) {
            a.refresh_ms = n as u32;
        }
        t.finish(r, ANNOUNCE_KEYS);
        Some(AnnounceSettings {
            daemon: daemon?,
            ..a
        })
    })
}

/// The keys of `[announce]`.
const ANNOUNCE_KEYS: &[&str] = &[
    "daemon",
    "asn",
    "vtysh",
    "pathspace",
    "birdc",
    "bird_socket",
    "bird_include",
    "bird_protocol",
    "refresh_ms",
];

fn read_vrrpd(r: &mut Reader, v: &Sv, path: &str) -> Option<VrrpdSettings> {
    clean(r, |r| {
        let d = VrrpdSettings::default();
        let mut t = Table::new(r, v, path, "[vrrpd]")?;
        let realtime_priority = t
            .opt_int(
                r,
                "realtime_priority",
                0,
                i64::from(MAX_REALTIME_PRIORITY),
                "use 1..=99 for real-time scheduling (20 is the default), or 0 for normal scheduling",
            )
            .map_or(d.realtime_priority, |n| n as u8);
        let lock_memory = t.opt_bool(r, "lock_memory").unwrap_or(d.lock_memory);
        let late_timer_grace = t
            .opt_bool(r, "late_timer_grace")
            .unwrap_or(d.late_timer_grace);
        t.finish(r, &["realtime_priority", "lock_memory", "late_timer_grace"]);
        Some(VrrpdSettings {
            realtime_priority,
            lock_memory,
            late_timer_grace,
        })
    })
}
