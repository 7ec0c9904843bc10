//! keepalived.conf to cluster.toml: `global_defs`, `vrrp_sync_group`,
//! `vrrp_instance`, `virtual_server` with its `real_server`s and their checkers.
//! Keywords are those of keepalived.conf(5); anything else is reported, never
//! dropped silently.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;

use config::InterfaceAddress;

use crate::assemble::{Draft, NodeFacts};
use crate::net;
use crate::out::{
    CheckOut, GarpOut, GroupOut, InstanceOut, PersistenceOut, ServerOut, ServiceOut, SorryOut,
    SyncOut, TrackOut, VipOut, VrrpdOut,
};
use crate::report::{Loc, Report};
use crate::syntax::{self, Stmt};
use crate::{ip_at, ImportError};

/// What the suite offers instead of keepalived's scripts and notifications.
const NOTIFY_INSTEAD: &str = "the suite runs no notify scripts: `vrrpctl watch` prints one line per state change, the control socket streams group.state events, and the metrics vrrp_state / vrrp_transitions_total feed alerting";
const TRACK_SCRIPT_INSTEAD: &str = "the suite runs no track scripts: a service `quorum` makes lbd lower the group's priority when too few servers pass their checks, and `vrrpctl priority set` / `vrrpctl maintenance` let your own monitor move the group";
const CHECKER_NOTIFY_INSTEAD: &str = "the suite runs no notify scripts: lbd logs each server state change, `vrrpctl services` shows it and the metric lbd_server_up carries it";
const EMAIL_INSTEAD: &str =
    "the suite sends no e-mail: alert on its metrics (vrrp_state, lbd_server_up) instead";

/// keepalived's defaults the file may change in `global_defs`.
#[derive(Debug, Clone)]
struct Globals {
    version: u8,
    garp: GarpOut,
}

impl Default for Globals {
    fn default() -> Self {
        Self {
            // keepalived speaks VRRPv2 unless told otherwise.
            version: 2,
            garp: GarpOut::default(),
        }
    }
}

/// One file mapped: the shared part, this node's facts, and where things are.
#[derive(Debug, Default)]
struct KaFile {
    draft: Draft,
    node: NodeFacts,
    /// `state` per instance.
    states: BTreeMap<String, String>,
    /// `unicast_peer` per instance (this node's peers: the other node's addresses).
    peers: BTreeMap<String, Vec<IpAddr>>,
    /// `unicast_src_ip` / `mcast_src_ip` per instance.
    src: BTreeMap<String, IpAddr>,
    /// Where each instance, group and service starts.
    locs: BTreeMap<String, Loc>,
}

/// Imports one or two keepalived.conf files.
pub(crate) fn import(
    inputs: &[(PathBuf, String)],
    report: &mut Report,
) -> Result<(Draft, [NodeFacts; 2]), ImportError> {
    let mut mapped = Vec::new();
    for (k, (path, text)) in inputs.iter().enumerate() {
        let stmts = syntax::parse(text, path, 0)?;
        let mut own = Report::default();
        let file = map_file(&stmts, &mut own)?;
        if k == 0 {
            report.items.extend(own.items);
        } else {
            // The second node's file mostly repeats the first: report only what is new.
            let seen: BTreeSet<(String, String)> = report
                .items
                .iter()
                .map(|i| (i.what.clone(), i.detail.clone()))
                .collect();
            report.items.extend(
                own.items
                    .into_iter()
                    .filter(|i| !seen.contains(&(i.what.clone(), i.detail.clone()))),
            );
        }
        mapped.push(file);
    }
    let mut mapped = mapped.into_iter();
    let Some(first) = mapped.next() else {
        return Err(ImportError::FileCount(0));
    };
    match mapped.next() {
        Some(second) => Ok(merge(first, second, report)),
        None => Ok(derive_peer(first, report)),
    }
}

/// Both nodes' files: the first's shared part, each one's node facts; every
/// difference in the shared part reported.
fn merge(a: KaFile, b: KaFile, report: &mut Report) -> (Draft, [NodeFacts; 2]) {
    let loc_b = |key: &str| b.locs.get(key).cloned();
    for inst in &b.draft.instances {
        let key = format!("instance {}", inst.name);
        let Some(at) = loc_b(&key) else { continue };
        match a.draft.instances.iter().find(|x| x.name == inst.name) {
            None => report.differs(
                &at,
                format!("vrrp_instance {}", inst.name),
                "only in the second node's file: left out (the first file decides what the cluster has)",
            ),
            Some(x) => {
                for field in instance_differences(x, inst) {
                    report.differs(
                        &at,
                        format!("vrrp_instance {}", inst.name),
                        format!("{field}: not as in the first node's file, whose value is kept"),
                    );
                }
            }
        }
    }
    for inst in &a.draft.instances {
        if !b.draft.instances.iter().any(|x| x.name == inst.name) {
            if let Some(at) = a.locs.get(&format!("instance {}", inst.name)) {
                report.differs(
                    at,
                    format!("vrrp_instance {}", inst.name),
                    "not in the second node's file: kept for both nodes",
                );
            }
        }
    }
    for s in &b.draft.services {
        let Some(at) = loc_b(&format!("service {}", s.name)) else {
            continue;
        };
        match a.draft.services.iter().find(|x| x.name == s.name) {
            None => report.differs(
                &at,
                format!("virtual_server {}", s.name),
                "only in the second node's file: left out",
            ),
            Some(x) if x != s => report.differs(
                &at,
                format!("virtual_server {}", s.name),
                "differs from the first node's file (servers, weights, checks or settings), whose version is kept",
            ),
            Some(_) => {}
        }
    }
    // Services compare by their checks' names; the checks themselves here.
    for c in &b.draft.checks {
        if a.draft.checks.contains(c) {
            continue;
        }
        let user = b
            .draft
            .services
            .iter()
            .find(|s| s.server.iter().any(|v| v.check.as_ref() == Some(&c.name)));
        if let Some(at) = user.and_then(|s| loc_b(&format!("service {}", s.name))) {
            report.differs(
                &at,
                format!("checker of {}", c.name),
                "its checker settings are not as in the first node's file, whose are kept",
            );
        }
    }
    for g in &b.draft.groups {
        let Some(at) = loc_b(&format!("group {}", g.name)) else {
            continue;
        };
        if !a.draft.groups.contains(g) {
            report.differs(
                &at,
                format!("vrrp_sync_group {}", g.name),
                "differs from the first node's file, whose version is kept",
            );
        }
    }
    if a.draft.sync != b.draft.sync || a.draft.vrrpd != b.draft.vrrpd {
        if let Some(at) = b.locs.get("global_defs") {
            report.differs(
                at,
                "global_defs",
                "lvs_sync_daemon / vrrp_rt_priority / vrrp_no_swap differ from the first node's file, whose values are kept",
            );
        }
    }
    let mut facts = [a.node, b.node];
    // Each file's own source address is the node's address; its peers complete the
    // other node's when that file says nothing.
    let peers = [a.peers, b.peers];
    for k in 0..2 {
        for (inst, list) in &peers[1 - k] {
            let Some(iface) = a
                .draft
                .instances
                .iter()
                .find(|i| &i.name == inst)
                .map(|i| i.interface.clone())
            else {
                continue;
            };
            let known = facts[k].addresses.entry(iface).or_default();
            if known.is_empty() {
                known.extend(list.first().copied());
            }
        }
        for (inst, list) in &peers[k] {
            facts[k].unicast_peers.insert(inst.clone(), list.clone());
        }
    }
    (a.draft, facts)
}

/// The fields in which two versions of an instance differ (names for the report).
fn instance_differences(a: &InstanceOut, b: &InstanceOut) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut check = |same: bool, name: &'static str| {
        if !same {
            out.push(name);
        }
    };
    check(a.interface == b.interface, "interface");
    check(a.vrid == b.vrid, "virtual_router_id");
    check(a.version == b.version, "version");
    check(a.advert_interval_ms == b.advert_interval_ms, "advert_int");
    check(a.vips == b.vips, "virtual_ipaddress");
    check(a.preempt == b.preempt, "nopreempt");
    check(a.preempt_delay_ms == b.preempt_delay_ms, "preempt_delay");
    check(a.accept_mode == b.accept_mode, "accept");
    check(a.track_interfaces == b.track_interfaces, "track_interface");
    check(a.garp == b.garp, "garp_master_* / garp_interval");
    check(a.auth_pass == b.auth_pass, "authentication");
    check(
        a.unicast == b.unicast,
        "unicast (unicast_peer present in one file only)",
    );
    out
}

/// One file: the peer's facts derived from it (its priority from `state` and
/// `priority`, its address from `unicast_peer`).
fn derive_peer(a: KaFile, report: &mut Report) -> (Draft, [NodeFacts; 2]) {
    let mut peer = NodeFacts::default();
    for g in &a.draft.groups {
        let Some(&own) = a.node.priority.get(&g.name) else {
            continue;
        };
        let master = g
            .instances
            .iter()
            .any(|i| a.states.get(i).is_some_and(|s| s == "MASTER"));
        let p = if master {
            own.saturating_sub(50).max(1)
        } else {
            own.saturating_add(50).min(254)
        };
        peer.priority.insert(g.name.clone(), p);
        report.assumed(
            a.locs.get(&format!("group {}", g.name)),
            format!("peer priority for sync group {}", g.name),
            format!(
                "{p}: one file only, whose instance is {} with priority {own}; import both nodes' files to take the peer's own",
                if master { "MASTER" } else { "BACKUP" }
            ),
        );
    }
    for inst in &a.draft.instances {
        if let Some(list) = a.peers.get(&inst.name) {
            if let Some(first) = list.first() {
                peer.addresses
                    .entry(inst.interface.clone())
                    .or_default()
                    .push(*first);
            }
            if list.len() > 1 {
                if let Some(at) = a.locs.get(&format!("instance {}", inst.name)) {
                    report.unmapped(
                        at,
                        format!("vrrp_instance {} unicast_peer", inst.name),
                        format!(
                            "{} peers: a cluster has two nodes; the first, {first}, is the peer",
                            list.len(),
                            first = list[0]
                        ),
                    );
                }
            }
        }
        if let Some(src) = a.src.get(&inst.name) {
            if inst.unicast {
                peer.unicast_peers.insert(inst.name.clone(), vec![*src]);
            }
        }
    }
    let mut own = a.node;
    for (inst, list) in &a.peers {
        own.unicast_peers.insert(inst.clone(), list.clone());
    }
    (a.draft, [own, peer])
}

/// Maps one file's statements.
fn map_file(stmts: &[Stmt], report: &mut Report) -> Result<KaFile, ImportError> {
    let mut file = KaFile::default();
    let mut globals = Globals::default();
    // global_defs first: its defaults apply to instances written before it too.
    for s in stmts.iter().filter(|s| s.keyword() == "global_defs") {
        file.locs.insert("global_defs".into(), s.at.clone());
        map_globals(s, &mut globals, &mut file, report)?;
    }
    let mut group_stmts = Vec::new();
    let mut service_stmts = Vec::new();
    for s in stmts {
        match s.keyword() {
            "global_defs" => {}
            "vrrp_instance" => map_instance(s, &globals, &mut file, report)?,
            "vrrp_sync_group" => group_stmts.push(s),
            "virtual_server" => service_stmts.push(s),
            "vrrp_script" => report.unmapped(
                &s.at,
                format!("vrrp_script {}", s.args().join(" ")),
                TRACK_SCRIPT_INSTEAD,
            ),
            "virtual_server_group" => report.unmapped(
                &s.at,
                format!("virtual_server_group {}", s.args().join(" ")),
                "the suite has no server groups: write one service per address and port",
            ),
            "static_ipaddress" | "static_routes" | "static_rules" => report.unmapped(
                &s.at,
                s.keyword(),
                "the suite leaves static addresses and routes to the system's network configuration",
            ),
            "garp_group" | "linkbeat_interfaces" | "bfd_instance" => report.unmapped(
                &s.at,
                s.keyword(),
                "no equivalent in the suite",
            ),
            other => unknown(report, s, other),
        }
    }
    for s in group_stmts {
        map_group(s, &mut file, report)?;
    }
    // Instances in no group form a group of their own.
    for inst in &file.draft.instances {
        if !file
            .draft
            .groups
            .iter()
            .any(|g| g.instances.contains(&inst.name))
        {
            file.draft.groups.push(GroupOut {
                name: inst.name.clone(),
                instances: vec![inst.name.clone()],
            });
            if let Some(at) = file.locs.get(&format!("instance {}", inst.name)).cloned() {
                file.locs.insert(format!("group {}", inst.name), at);
            }
        }
    }
    // A group's priority is its first instance's.
    let prios = std::mem::take(&mut file.node.priority);
    for g in &file.draft.groups {
        let mut first: Option<(String, u8)> = None;
        for i in &g.instances {
            let Some(&p) = prios.get(i) else { continue };
            match &first {
                None => first = Some((i.clone(), p)),
                Some((fi, fp)) if *fp != p => {
                    if let Some(at) = file.locs.get(&format!("instance {i}")) {
                        report.unmapped(
                            at,
                            format!("vrrp_instance {i} priority {p}"),
                            format!(
                                "cluster.toml gives a node one priority per sync group: group {} takes {fp} from {fi}",
                                g.name
                            ),
                        );
                    }
                }
                Some(_) => {}
            }
        }
        if let Some((_, p)) = first {
            file.node.priority.insert(g.name.clone(), p);
        }
    }
    file.draft.backend = "ipvs".into();
    report.assumed(
        None,
        "[dataplane] backend",
        "\"ipvs\": keepalived's virtual servers are IPVS services; \"auto\" or \"nft\" run them on nftables where the schedulers and modes allow",
    );
    for s in service_stmts {
        map_service(s, &mut file, report)?;
    }
    Ok(file)
}

fn unknown(report: &mut Report, s: &Stmt, keyword: &str) {
    report.unmapped(
        &s.at,
        keyword,
        "not a keepalived keyword this importer maps; nothing in the output stands for it",
    );
}

/// The one argument of a statement, or an error that names the keyword.
fn arg<'a>(s: &'a Stmt, what: &str) -> Result<&'a str, ImportError> {
    s.args()
        .first()
        .map(String::as_str)
        .ok_or_else(|| ImportError::Syntax {
            at: s.at.clone(),
            message: format!("`{}` needs {what}", s.keyword()),
        })
}

/// A number argument in a range.
fn int_arg(s: &Stmt, lo: i64, hi: i64) -> Result<i64, ImportError> {
    let word = arg(s, &format!("a number ({lo}..={hi})"))?;
    match word.parse::<i64>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(ImportError::Syntax {
            at: s.at.clone(),
            message: format!(
                "`{}` {word:?}: use a whole number in {lo}..={hi}",
                s.keyword()
            ),
        }),
    }
}

/// A time in seconds (keepalived's <TIMER>: decimals allowed), as milliseconds.
fn seconds_arg(s: &Stmt) -> Result<u64, ImportError> {
    let word = arg(s, "a time in seconds")?;
    seconds_ms(word).ok_or_else(|| ImportError::Syntax {
        at: s.at.clone(),
        message: format!(
            "`{}` {word:?}: use a time in seconds, such as 1 or 0.5",
            s.keyword()
        ),
    })
}

fn seconds_ms(word: &str) -> Option<u64> {
    let v: f64 = word.parse().ok()?;
    (v.is_finite() && (0.0..=4_000_000.0).contains(&v)).then(|| (v * 1000.0).round() as u64)
}

fn clamp_u32(ms: u64) -> u32 {
    u32::try_from(ms).unwrap_or(u32::MAX)
}

fn map_globals(
    s: &Stmt,
    g: &mut Globals,
    file: &mut KaFile,
    report: &mut Report,
) -> Result<(), ImportError> {
    for c in s.children() {
        match c.keyword() {
            "router_id" => {
                file.node.name = Some(arg(c, "a name")?.to_string());
                file.node.at = Some(c.at.clone());
            }
            "vrrp_version" => g.version = int_arg(c, 2, 3)? as u8,
            "vrrp_garp_master_delay" => g.garp.repeat_after_s = int_arg(c, 0, 3600)? as u32,
            "vrrp_garp_master_repeat" => g.garp.count = int_arg(c, 1, 100)? as u32,
            "vrrp_garp_master_refresh" => g.garp.refresh_s = int_arg(c, 0, 86_400)? as u32,
            "vrrp_garp_interval" | "vrrp_gna_interval" => {
                g.garp.spacing_ms = clamp_u32(seconds_arg(c)?).min(10_000)
            }
            "vrrp_garp_master_refresh_repeat" | "vrrp_garp_lower_prio_repeat"
            | "vrrp_garp_lower_prio_delay" => report.unmapped(
                &c.at,
                c.keyword(),
                "vrrpd's refresh bursts are garp.count packets, and it sends no extra burst on a lower-priority advert",
            ),
            "vrrp_rt_priority" => {
                let p = int_arg(c, 1, 99)? as u8;
                let v = file.draft.vrrpd.get_or_insert(VrrpdOut {
                    realtime_priority: None,
                    lock_memory: None,
                });
                v.realtime_priority = Some(p);
            }
            "vrrp_no_swap" => {
                let v = file.draft.vrrpd.get_or_insert(VrrpdOut {
                    realtime_priority: None,
                    lock_memory: None,
                });
                v.lock_memory = Some(true);
            }
            "lvs_sync_daemon" => map_sync_daemon(c, file, report)?,
            "notification_email" | "notification_email_from" | "smtp_server"
            | "smtp_connect_timeout" | "smtp_helo_name" | "smtp_alert" | "smtp_alert_vrrp"
            | "smtp_alert_checker" => report.unmapped(&c.at, c.keyword(), EMAIL_INSTEAD),
            "script_user" | "enable_script_security" | "notify_fifo" | "notify_fifo_script"
            | "vrrp_notify_fifo" | "vrrp_notify_fifo_script" | "lvs_notify_fifo"
            | "lvs_notify_fifo_script" => report.unmapped(&c.at, c.keyword(), NOTIFY_INSTEAD),
            "vrrp_strict" => report.unmapped(
                &c.at,
                c.keyword(),
                "vrrpd follows RFC 9568 (no v2 authentication on v3, adverts with TTL 255) without a strict switch, and filters no traffic to the VIPs",
            ),
            "vrrp_skip_check_adv_addr" | "vrrp_check_unicast_src" | "vrrp_iptables"
            | "vrrp_ipsets" | "vrrp_mcast_group4" | "vrrp_mcast_group6" | "vrrp_priority"
            | "checker_priority" | "dynamic_interfaces" | "vrrp_startup_delay"
            | "max_auto_priority" | "enable_traps" | "vrrp_lower_prio_no_advert"
            | "vrrp_higher_prio_send_advert" => {
                report.unmapped(&c.at, c.keyword(), "no equivalent in the suite")
            }
            other => unknown(report, c, other),
        }
    }
    Ok(())
}

/// `lvs_sync_daemon IFACE INSTANCE [id N] [maxlen N] [port N] [ttl N] [group ADDR]`.
fn map_sync_daemon(c: &Stmt, file: &mut KaFile, report: &mut Report) -> Result<(), ImportError> {
    let args = c.args();
    let (Some(iface), Some(_instance)) = (args.first(), args.get(1)) else {
        return Err(ImportError::Syntax {
            at: c.at.clone(),
            message: "`lvs_sync_daemon` needs an interface and a vrrp_instance name".into(),
        });
    };
    let mut id = 0u8;
    let mut rest = args[2..].iter();
    while let Some(k) = rest.next() {
        let v = rest.next();
        match (k.as_str(), v) {
            ("id", Some(v)) => {
                id = v.parse().map_err(|_| ImportError::Syntax {
                    at: c.at.clone(),
                    message: format!("lvs_sync_daemon id {v:?}: use 0..=255"),
                })?
            }
            (k, _) => report.unmapped(
                &c.at,
                format!("lvs_sync_daemon {k}"),
                "lbd runs the IPVS sync daemon with the kernel's defaults beside its own conntrack sync",
            ),
        }
    }
    file.draft.sync = Some(SyncOut {
        enabled: true,
        interface: iface.clone(),
        ipvs_sync_id: id,
    });
    Ok(())
}

fn map_group(s: &Stmt, file: &mut KaFile, report: &mut Report) -> Result<(), ImportError> {
    let name = arg(s, "a name")?.to_string();
    let mut members = Vec::new();
    for c in s.children() {
        match c.keyword() {
            "group" => {
                for line in c.children() {
                    for word in &line.words {
                        if !file.draft.instances.iter().any(|i| &i.name == word) {
                            report.unmapped(
                                &line.at,
                                format!("vrrp_sync_group {name} member {word}"),
                                "no vrrp_instance of that name: left out of the group",
                            );
                        } else if let Some(g) = file
                            .draft
                            .groups
                            .iter()
                            .find(|g| g.instances.contains(word))
                        {
                            report.unmapped(
                                &line.at,
                                format!("vrrp_sync_group {name} member {word}"),
                                format!("already in sync group {}: an instance is in one group", g.name),
                            );
                        } else if !members.contains(word) {
                            members.push(word.clone());
                        }
                    }
                }
            }
            k if k.starts_with("notify") || k == "smtp_alert" => {
                report.unmapped(&c.at, format!("vrrp_sync_group {name} {k}"), NOTIFY_INSTEAD)
            }
            "track_script" => report.unmapped(
                &c.at,
                format!("vrrp_sync_group {name} track_script"),
                TRACK_SCRIPT_INSTEAD,
            ),
            "track_interface" | "track_file" | "track_process" | "track_bfd" => report.unmapped(
                &c.at,
                format!("vrrp_sync_group {name} {}", c.keyword()),
                "track per instance (track_interface in a vrrp_instance): a group leaves MASTER when any member must",
            ),
            "global_tracking" | "sync_group_tracking_weight" => report.unmapped(
                &c.at,
                c.keyword(),
                "vrrpd always moves a sync group as one",
            ),
            other => unknown(report, c, other),
        }
    }
    if members.is_empty() {
        report.unmapped(
            &s.at,
            format!("vrrp_sync_group {name}"),
            "no member instance: left out",
        );
        return Ok(());
    }
    file.locs.insert(format!("group {name}"), s.at.clone());
    file.draft.groups.push(GroupOut {
        name,
        instances: members,
    });
    Ok(())
}

fn map_instance(
    s: &Stmt,
    globals: &Globals,
    file: &mut KaFile,
    report: &mut Report,
) -> Result<(), ImportError> {
    let name = arg(s, "a name")?.to_string();
    let here = |k: &str| format!("vrrp_instance {name} {k}");
    let mut interface: Option<String> = None;
    let mut vrid: Option<u8> = None;
    let mut version: Option<(u8, Loc)> = None;
    let mut advert_ms: u64 = 1000;
    let mut advert_at: Option<Loc> = None;
    let mut vips: Vec<VipLine> = Vec::new();
    let mut preempt = true;
    let mut preempt_delay_ms = 0u32;
    let mut accept_mode = false;
    let mut tracks = Vec::new();
    let mut garp = globals.garp;
    let mut auth: Option<(String, Loc)> = None;
    let mut priority: u8 = 100;
    let mut peers: Vec<IpAddr> = Vec::new();
    for c in s.children() {
        match c.keyword() {
            "state" => {
                let st = arg(c, "MASTER or BACKUP")?.to_ascii_uppercase();
                if st != "MASTER" && st != "BACKUP" {
                    return Err(ImportError::Syntax {
                        at: c.at.clone(),
                        message: format!("`state` {st:?}: use MASTER or BACKUP"),
                    });
                }
                report.unmapped(
                    &c.at,
                    here("state"),
                    "vrrpd starts every instance as BACKUP and lets the priorities elect the master (from one file, the peer's priority is derived from the state)",
                );
                file.states.insert(name.clone(), st);
            }
            "interface" => interface = Some(arg(c, "an interface name")?.to_string()),
            "virtual_router_id" => vrid = Some(int_arg(c, 1, 255)? as u8),
            "priority" => {
                let p = int_arg(c, 1, 255)? as u8;
                priority = if p == 255 {
                    report.unmapped(
                        &c.at,
                        here("priority 255"),
                        "255 is for the owner of the VIPs (a VIP that is the node's own address); 254 is used",
                    );
                    254
                } else {
                    p
                };
            }
            "advert_int" => {
                advert_ms = seconds_arg(c)?;
                advert_at = Some(c.at.clone());
            }
            "version" => version = Some((int_arg(c, 2, 3)? as u8, c.at.clone())),
            "authentication" => {
                let mut kind = "PASS".to_string();
                let mut pass = None;
                for a in c.children() {
                    match a.keyword() {
                        "auth_type" => kind = arg(a, "PASS or AH")?.to_ascii_uppercase(),
                        "auth_pass" => pass = Some(arg(a, "a password")?.to_string()),
                        other => unknown(report, a, other),
                    }
                }
                if kind == "PASS" {
                    if let Some(p) = pass {
                        auth = Some((p, c.at.clone()));
                    }
                } else {
                    report.unmapped(
                        &c.at,
                        here("authentication auth_type AH"),
                        "vrrpd has no IPsec AH authentication (RFC 5798 removed it): left out",
                    );
                }
            }
            "virtual_ipaddress" | "virtual_ipaddress_excluded" => {
                if c.keyword() == "virtual_ipaddress_excluded" {
                    report.assumed(
                        Some(&c.at),
                        here("virtual_ipaddress_excluded"),
                        "its addresses are ordinary VIPs of the instance (vrrpd lists every VIP in its adverts)",
                    );
                }
                for line in c.children() {
                    vips.push(parse_vip(line, &name, report)?);
                }
            }
            "unicast_src_ip" | "mcast_src_ip" => {
                let ip = ip_at(arg(c, "an address")?, &c.at, c.keyword())?;
                file.src.insert(name.clone(), ip);
            }
            "unicast_peer" => {
                for line in c.children() {
                    let ip = ip_at(line.keyword(), &line.at, "unicast_peer")?;
                    if !line.args().is_empty() {
                        report.unmapped(
                            &line.at,
                            here("unicast_peer options"),
                            "min_ttl / max_ttl: vrrpd checks the TTL per instance (unicast_min_ttl)",
                        );
                    }
                    peers.push(ip);
                }
            }
            "unicast_ttl" => report.unmapped(
                &c.at,
                here("unicast_ttl"),
                "vrrpd always sends adverts with TTL 255",
            ),
            "track_interface" => {
                for line in c.children() {
                    let weight = match line.args() {
                        [] => 0,
                        [w, n] if w == "weight" => match n.parse::<i16>() {
                            Ok(n) if (-254..=254).contains(&n) => n,
                            _ => {
                                return Err(ImportError::Syntax {
                                    at: line.at.clone(),
                                    message: format!("track_interface weight {n:?}: use -254..=254"),
                                })
                            }
                        },
                        other => {
                            return Err(ImportError::Syntax {
                                at: line.at.clone(),
                                message: format!(
                                    "track_interface {}: write IFACE [weight N], not {:?}",
                                    line.keyword(),
                                    other.join(" ")
                                ),
                            })
                        }
                    };
                    tracks.push(TrackOut {
                        name: line.keyword().to_string(),
                        weight,
                    });
                }
            }
            "track_script" | "track_file" | "track_process" | "track_bfd" => {
                report.unmapped(&c.at, here(c.keyword()), TRACK_SCRIPT_INSTEAD)
            }
            "nopreempt" => preempt = false,
            "preempt" => preempt = true,
            "preempt_delay" => preempt_delay_ms = clamp_u32(seconds_arg(c)?).min(3_600_000),
            "accept" => accept_mode = true,
            "no_accept" => accept_mode = false,
            "garp_master_delay" => garp.repeat_after_s = int_arg(c, 0, 3600)? as u32,
            "garp_master_repeat" => garp.count = int_arg(c, 1, 100)? as u32,
            "garp_master_refresh" => garp.refresh_s = int_arg(c, 0, 86_400)? as u32,
            "garp_interval" | "gna_interval" => {
                garp.spacing_ms = clamp_u32(seconds_arg(c)?).min(10_000)
            }
            "garp_master_refresh_repeat" | "garp_lower_prio_delay" | "garp_lower_prio_repeat" => {
                report.unmapped(
                    &c.at,
                    here(c.keyword()),
                    "vrrpd's refresh bursts are garp.count packets, and it sends no extra burst on a lower-priority advert",
                )
            }
            k if k.starts_with("notify") || k == "smtp_alert" => {
                report.unmapped(&c.at, here(k), NOTIFY_INSTEAD)
            }
            "dont_track_primary" => report.unmapped(
                &c.at,
                here("dont_track_primary"),
                "vrrpd always watches the instance's own interface",
            ),
            "native_ipv6" => {}
            "virtual_routes" | "virtual_rules" => report.unmapped(
                &c.at,
                here(c.keyword()),
                "vrrpd moves addresses only; routes and rules that follow the master need the system's own configuration",
            ),
            "use_vmac" | "vmac_xmit_base" | "strict_mode" | "check_unicast_src"
            | "skip_check_adv_addr" | "lower_prio_no_advert" | "higher_prio_send_advert"
            | "kernel_rx_buf_size" | "debug" => {
                report.unmapped(&c.at, here(c.keyword()), "no equivalent in the suite")
            }
            other => unknown(report, c, other),
        }
    }
    let Some(interface) = interface else {
        return Err(ImportError::Syntax {
            at: s.at.clone(),
            message: format!("vrrp_instance {name} has no `interface`"),
        });
    };
    let Some(vrid) = vrid else {
        return Err(ImportError::Syntax {
            at: s.at.clone(),
            message: format!("vrrp_instance {name} has no `virtual_router_id`"),
        });
    };
    let Some(family_v6) = vips.first().map(|v| v.addr.address.is_ipv6()) else {
        report.unmapped(
            &s.at,
            format!("vrrp_instance {name}"),
            "no virtual_ipaddress: an instance without VIPs moves nothing; left out",
        );
        return Ok(());
    };
    let mut out_vips = Vec::new();
    for VipLine {
        addr,
        dev,
        label,
        at,
    } in vips
    {
        if addr.address.is_ipv6() != family_v6 {
            report.unmapped(
                &at,
                here(&format!("virtual_ipaddress {addr}")),
                "an instance's VIPs are all of one family: put this address in an instance of its own",
            );
            continue;
        }
        if let Some(d) = dev {
            if d != interface {
                report.unmapped(
                    &at,
                    here(&format!("virtual_ipaddress {addr} dev {d}")),
                    format!("VIPs go on the instance's interface ({interface}): make an instance on {d} for it, in the same sync group"),
                );
            }
        }
        let vip = match label {
            Some(l) if !family_v6 && l.starts_with(&format!("{interface}:")) && l.len() <= 15 => {
                VipOut::Labelled {
                    address: addr.to_string(),
                    label: l,
                }
            }
            Some(l) => {
                report.unmapped(
                    &at,
                    here(&format!("virtual_ipaddress {addr} label {l}")),
                    format!("a label is IPv4 only, at most 15 bytes and starts with \"{interface}:\": left out"),
                );
                VipOut::Plain(addr.to_string())
            }
            None => VipOut::Plain(addr.to_string()),
        };
        out_vips.push(vip);
    }
    let mut version = version.map_or(globals.version, |(v, _)| v);
    if family_v6 && version == 2 {
        version = 3;
    }
    let advert_interval_ms = if version == 2 {
        let whole = advert_ms.div_ceil(1000).clamp(1, 255) * 1000;
        if whole != advert_ms {
            if let Some(at) = &advert_at {
                report.assumed(
                    Some(at),
                    here("advert_int"),
                    format!("{whole} ms: VRRPv2 carries whole seconds (1..=255)"),
                );
            }
        }
        whole
    } else {
        let steps = (advert_ms.div_ceil(10) * 10).clamp(10, 40_950);
        if steps != advert_ms {
            if let Some(at) = &advert_at {
                report.assumed(
                    Some(at),
                    here("advert_int"),
                    format!("{steps} ms: VRRPv3 carries 10 ms steps up to 40.95 s"),
                );
            }
        }
        steps
    };
    let auth_pass = match auth {
        Some((p, at)) if version == 2 => {
            let p8: String = p.chars().take(8).collect();
            if p8 != p || p8.is_empty() || !p8.chars().all(|c| c.is_ascii_graphic()) {
                report.unmapped(
                    &at,
                    here("auth_pass"),
                    "a v2 password is 1 to 8 printable ASCII characters (keepalived cuts longer ones to 8); left out, set auth_pass by hand",
                );
                None
            } else {
                Some(p8)
            }
        }
        Some((_, at)) => {
            report.unmapped(
                &at,
                here("authentication"),
                "VRRPv3 has no authentication (keepalived ignores it too)",
            );
            None
        }
        None => None,
    };
    let unicast = !peers.is_empty();
    file.node.priority.insert(name.clone(), priority);
    if let Some(src) = file.src.get(&name) {
        file.node
            .addresses
            .entry(interface.clone())
            .or_default()
            .push(*src);
    }
    if unicast {
        file.peers.insert(name.clone(), peers);
    }
    file.locs.insert(format!("instance {name}"), s.at.clone());
    file.draft.instances.push(InstanceOut {
        name,
        interface,
        vrid,
        version,
        advert_interval_ms: clamp_u32(advert_interval_ms),
        vips: out_vips,
        preempt,
        preempt_delay_ms,
        accept_mode,
        track_interfaces: tracks,
        garp,
        auth_pass,
        unicast,
    });
    Ok(())
}

/// One `virtual_ipaddress` line as read.
struct VipLine {
    addr: InterfaceAddress,
    dev: Option<String>,
    label: Option<String>,
    at: Loc,
}

/// `ADDR[/LEN] [brd X] [dev X] [scope X] [label X] ...`.
fn parse_vip(line: &Stmt, instance: &str, report: &mut Report) -> Result<VipLine, ImportError> {
    let word = line.keyword();
    let addr = InterfaceAddress::parse(word, true).map_err(|e| ImportError::Syntax {
        at: line.at.clone(),
        message: format!("virtual_ipaddress {word:?}: {e}"),
    })?;
    let mut dev = None;
    let mut label = None;
    let mut rest = line.args().iter();
    while let Some(k) = rest.next() {
        match k.as_str() {
            "dev" | "label" | "brd" | "scope" | "preferred_lft" | "track_group" => {
                let Some(v) = rest.next() else {
                    return Err(ImportError::Syntax {
                        at: line.at.clone(),
                        message: format!("virtual_ipaddress {word}: `{k}` needs a value"),
                    });
                };
                match k.as_str() {
                    "dev" => dev = Some(v.clone()),
                    "label" => label = Some(v.clone()),
                    _ => report.unmapped(
                        &line.at,
                        format!("vrrp_instance {instance} virtual_ipaddress {word} {k} {v}"),
                        "vrrpd adds VIPs with the kernel's defaults for broadcast, scope and lifetime",
                    ),
                }
            }
            other => report.unmapped(
                &line.at,
                format!("vrrp_instance {instance} virtual_ipaddress {word} {other}"),
                "no equivalent in the suite",
            ),
        }
    }
    Ok(VipLine {
        addr,
        dev,
        label,
        at: line.at.clone(),
    })
}

/// keepalived's scheduler names to the suite's; others have none.
fn scheduler(word: &str) -> Option<&'static str> {
    Some(match word {
        "rr" => "rr",
        "wrr" => "wrr",
        "lc" => "lc",
        "wlc" => "wlc",
        "sh" => "sh",
        "mh" => "mh",
        "sed" => "sed",
        "nq" => "nq",
        _ => return None,
    })
}

/// A checker as read, before its name is settled.
struct Checker {
    check: CheckOut,
    at: Loc,
}

fn map_service(s: &Stmt, file: &mut KaFile, report: &mut Report) -> Result<(), ImportError> {
    let args = s.args();
    if matches!(args.first().map(String::as_str), Some("fwmark" | "group")) {
        report.unmapped(
            &s.at,
            format!("virtual_server {}", args.join(" ")),
            "the suite's services are an address and a port (or port range): write one service per address and port; left out with its real servers",
        );
        return Ok(());
    }
    let (Some(ip_word), Some(port_word)) = (args.first(), args.get(1)) else {
        return Err(ImportError::Syntax {
            at: s.at.clone(),
            message: "virtual_server needs an address and a port".into(),
        });
    };
    let vip = ip_at(ip_word, &s.at, "virtual_server")?;
    let port: u16 = port_word.parse().map_err(|_| ImportError::Syntax {
        at: s.at.clone(),
        message: format!("virtual_server port {port_word:?}: use 0..=65535"),
    })?;
    let mut delay_loop_ms: u64 = 60_000;
    let mut sched = "wlc".to_string();
    let mut mode = "nat".to_string();
    let mut persistence: Option<PersistenceOut> = None;
    let mut granularity: Option<u8> = None;
    let mut protocol = "tcp".to_string();
    let mut sorry: Option<SorryOut> = None;
    let mut quorum: Option<u32> = None;
    let mut vhost: Option<String> = None;
    let mut reals: Vec<&Stmt> = Vec::new();
    let mut service_inhibit = false;
    let here = |k: &str| format!("virtual_server {ip_word} {port_word} {k}");
    for c in s.children() {
        match c.keyword() {
            "delay_loop" => delay_loop_ms = seconds_arg(c)?,
            "lb_algo" | "lvs_sched" => {
                let w = arg(c, "a scheduler")?;
                match scheduler(w) {
                    Some(x) => sched = x.to_string(),
                    None => report.unmapped(
                        &c.at,
                        here(&format!("{} {w}", c.keyword())),
                        "the suite's schedulers are rr, wrr, lc, wlc, sh, mh, sed, nq, random: wlc is used",
                    ),
                }
            }
            "lb_kind" | "lvs_method" => {
                mode = match arg(c, "NAT, DR or TUN")?.to_ascii_uppercase().as_str() {
                    "NAT" => "nat",
                    "DR" => "dr",
                    "TUN" => "tunnel",
                    other => {
                        return Err(ImportError::Syntax {
                            at: c.at.clone(),
                            message: format!("{} {other:?}: use NAT, DR or TUN", c.keyword()),
                        })
                    }
                }
                .to_string();
                if c.args().len() > 1 {
                    report.unmapped(
                        &c.at,
                        here("tunnel options"),
                        "IPVS tunnel options (type, port, checksum) are not in cluster.toml",
                    );
                }
            }
            "persistence_timeout" => {
                persistence = Some(PersistenceOut {
                    timeout_s: int_arg(c, 1, 2_678_400)? as u32,
                    prefix_len: None,
                })
            }
            "persistence_granularity" => {
                let w = arg(c, "a netmask")?;
                granularity = Some(
                    net::netmask_len(w)
                        .or_else(|| w.trim_start_matches('/').parse().ok())
                        .ok_or_else(|| ImportError::Syntax {
                            at: c.at.clone(),
                            message: format!("persistence_granularity {w:?}: use a netmask such as 255.255.255.0"),
                        })?,
                )
            }
            "protocol" => {
                protocol = match arg(c, "TCP or UDP")?.to_ascii_uppercase().as_str() {
                    "TCP" => "tcp".into(),
                    "UDP" => "udp".into(),
                    other => {
                        report.unmapped(
                            &c.at,
                            here(&format!("protocol {other}")),
                            "the suite balances TCP and UDP: the service is left out",
                        );
                        return Ok(());
                    }
                }
            }
            "sorry_server" => {
                let ip = ip_at(arg(c, "an address")?, &c.at, "sorry_server")?;
                let port = c.args().get(1).and_then(|p| p.parse::<u16>().ok()).filter(|p| *p != 0);
                sorry = Some(SorryOut {
                    address: ip.to_string(),
                    port,
                });
            }
            "quorum" => quorum = Some(int_arg(c, 1, 65_535)? as u32),
            "virtualhost" => vhost = Some(arg(c, "a host name")?.to_string()),
            "real_server" => reals.push(c),
            "quorum_up" | "quorum_down" => report.unmapped(
                &c.at,
                here(c.keyword()),
                "the suite runs no quorum scripts: below `quorum`, lbd itself lowers the priority of the VIP's sync group by quorum_priority_delta",
            ),
            "hysteresis" => report.unmapped(
                &c.at,
                here("hysteresis"),
                "the quorum has no hysteresis: it is lost below `quorum` and regained at it",
            ),
            "sorry_server_inhibit" | "sorry_server_lvs_method" | "ha_suspend" | "alpha"
            | "omega" | "ops" | "one_packet_scheduling" | "retry" | "delay_before_retry"
            | "warmup" | "connect_timeout" | "smtp_alert" | "ip_family" => {
                report.unmapped(&c.at, here(c.keyword()), "no equivalent in the suite")
            }
            // keepalived 2.x: the default of every real_server of the service.
            "inhibit_on_failure" => service_inhibit = true,
            other => unknown(report, c, other),
        }
    }
    if let (Some(g), Some(p)) = (granularity, persistence.as_mut()) {
        p.prefix_len = Some(g);
    }
    let name = format!(
        "vs-{vip}-{port}{}",
        if protocol == "udp" { "-udp" } else { "" }
    );
    // The VIP must be an instance's, or no node would hold it.
    let held = file.draft.instances.iter().any(|i| {
        i.vips.iter().any(|v| {
            let text = match v {
                VipOut::Plain(t) => t,
                VipOut::Labelled { address, .. } => address,
            };
            InterfaceAddress::parse(text, true).is_ok_and(|a| a.address == vip)
        })
    });
    if !held {
        report.unmapped(
            &s.at,
            format!("virtual_server {ip_word} {port_word}"),
            "its address is no vrrp_instance's VIP, so no node would hold it; add the address to an instance's virtual_ipaddress and import again",
        );
        return Ok(());
    }
    if file.draft.services.iter().any(|x| x.name == name) {
        report.unmapped(
            &s.at,
            format!("virtual_server {ip_word} {port_word}"),
            "a second virtual_server on the same address, port and protocol: left out",
        );
        return Ok(());
    }
    let mut servers = Vec::new();
    let mut inhibit = Vec::new();
    for r in reals {
        if let Some((server, inh)) = map_real(
            r,
            vip,
            port,
            &mode,
            &name,
            delay_loop_ms,
            vhost.as_deref(),
            file,
            report,
        )? {
            if servers
                .iter()
                .any(|x: &ServerOut| x.address == server.address && x.port == server.port)
            {
                report.unmapped(
                    &r.at,
                    format!(
                        "real_server {} {}",
                        server.address,
                        server.port.map(|p| p.to_string()).unwrap_or_default()
                    ),
                    "listed twice in the virtual_server: left out",
                );
                continue;
            }
            servers.push(server);
            inhibit.push((inh || service_inhibit, r.at.clone()));
        }
    }
    // cluster.toml decides per service what a failed server does.
    let inhibit_on_failure = inhibit.first().is_some_and(|(i, _)| *i);
    for (i, at) in &inhibit {
        if *i != inhibit_on_failure {
            report.unmapped(
                at,
                "real_server inhibit_on_failure",
                format!(
                    "decided per service in cluster.toml: the service's first real server says {inhibit_on_failure}"
                ),
            );
        }
    }
    let (port_out, range) = if port == 0 {
        for sv in &mut servers {
            sv.port = None;
        }
        report.assumed(
            Some(&s.at),
            format!("virtual_server {ip_word} 0"),
            "port 0 (every port) is port_range \"1-65535\"; servers keep the destination port",
        );
        (None, Some("1-65535".to_string()))
    } else {
        (Some(port), None)
    };
    file.locs.insert(format!("service {name}"), s.at.clone());
    file.draft.services.push(ServiceOut {
        name,
        vip: vip.to_string(),
        port: port_out,
        port_range: range,
        protocol,
        scheduler: sched,
        mode,
        persistence,
        sorry_server: sorry,
        inhibit_on_failure,
        quorum,
        server: servers,
    });
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn map_real(
    r: &Stmt,
    vip: IpAddr,
    vport: u16,
    mode: &str,
    service: &str,
    delay_loop_ms: u64,
    vhost: Option<&str>,
    file: &mut KaFile,
    report: &mut Report,
) -> Result<Option<(ServerOut, bool)>, ImportError> {
    let args = r.args();
    let ip = ip_at(arg(r, "an address and a port")?, &r.at, "real_server")?;
    let mut port: Option<u16> = match args.get(1) {
        Some(p) => Some(p.parse().map_err(|_| ImportError::Syntax {
            at: r.at.clone(),
            message: format!("real_server port {p:?}: use 1..=65535"),
        })?),
        None => None,
    };
    let shown_port = port.map(|p| format!(" {p}")).unwrap_or_default();
    let here = move |k: &str| format!("real_server {ip}{shown_port} {k}");
    if ip.is_ipv6() != vip.is_ipv6() && mode != "tunnel" {
        report.unmapped(
            &r.at,
            here(""),
            format!("not of the VIP's address family, which {mode} mode cannot forward: left out"),
        );
        return Ok(None);
    }
    if mode != "nat" && port.is_some_and(|p| p != vport) && vport != 0 {
        report.unmapped(
            &r.at,
            here("port"),
            format!(
                "{mode} mode keeps the destination port ({vport}): the server's port is left out"
            ),
        );
        port = None;
    }
    let mut weight = 1u32;
    let mut inhibit = false;
    let mut checkers: Vec<Checker> = Vec::new();
    let mut delay = delay_loop_ms;
    for c in r.children() {
        match c.keyword() {
            "weight" => weight = int_arg(c, 0, 65_535)? as u32,
            "inhibit_on_failure" => inhibit = true,
            "delay_loop" => delay = seconds_arg(c)?,
            "TCP_CHECK" | "HTTP_GET" | "SSL_GET" | "DNS_CHECK" | "MISC_CHECK" => {
                if let Some(ch) = map_checker(c, delay, vhost, &here, report)? {
                    checkers.push(ch);
                }
            }
            "SMTP_CHECK" | "UDP_CHECK" | "PING_CHECK" | "FILE_CHECK" | "BFD_CHECK" => report.unmapped(
                &c.at,
                here(c.keyword()),
                "the suite's checks are tcp, tcp_syn, http, https, udp_dns and exec: an exec check running your own probe replaces it",
            ),
            "notify_up" | "notify_down" | "smtp_alert" => {
                report.unmapped(&c.at, here(c.keyword()), CHECKER_NOTIFY_INSTEAD)
            }
            "uthreshold" | "lthreshold" | "alpha" | "omega" | "retry" | "delay_before_retry"
            | "warmup" | "connect_timeout" | "virtualhost" => {
                report.unmapped(&c.at, here(c.keyword()), "no equivalent in the suite")
            }
            other => unknown(report, c, other),
        }
    }
    let mut checkers = checkers.into_iter();
    let check = match checkers.next() {
        Some(first) => {
            for extra in checkers {
                report.unmapped(
                    &extra.at,
                    here(&extra.check.kind),
                    "a server has one check in cluster.toml: the first checker of the real_server is kept",
                );
            }
            Some(intern_check(first.check, service, &mut file.draft.checks))
        }
        None => None,
    };
    let name = match port {
        Some(p) => format!("rs-{ip}-{p}"),
        None => format!("rs-{ip}"),
    };
    Ok(Some((
        ServerOut {
            name,
            address: ip.to_string(),
            port,
            weight,
            check,
        },
        inhibit,
    )))
}

/// The name of a check equal to `check` (its name aside), adding it if new.
fn intern_check(mut check: CheckOut, service: &str, checks: &mut Vec<CheckOut>) -> String {
    for c in checks.iter() {
        let mut same = check.clone();
        same.name.clone_from(&c.name);
        if &same == c {
            return c.name.clone();
        }
    }
    let base = format!("{service}-{}", check.kind);
    let mut name = base.clone();
    let mut n = 2;
    while checks.iter().any(|c| c.name == name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    check.name.clone_from(&name);
    checks.push(check);
    name
}

/// The 2xx codes an HTTP_GET accepts when its url names no status_code.
const DEFAULT_2XX: [u16; 10] = [200, 201, 202, 203, 204, 205, 206, 207, 208, 226];

fn map_checker(
    c: &Stmt,
    delay_loop_ms: u64,
    vhost: Option<&str>,
    here: &dyn Fn(&str) -> String,
    report: &mut Report,
) -> Result<Option<Checker>, ImportError> {
    let kind = c.keyword();
    let kind_word = match kind {
        "TCP_CHECK" => "tcp",
        "HTTP_GET" => "http",
        "SSL_GET" => "https",
        "DNS_CHECK" => "udp_dns",
        _ => "exec",
    };
    // keepalived's defaults: connect_timeout 5 s, retry 1; a server is up after
    // one passed check.
    let mut check = CheckOut::new(
        kind_word,
        clamp_u32(delay_loop_ms.clamp(100, 3_600_000)),
        5000,
        1,
        2,
    );
    check.host = vhost.map(str::to_string);
    let mut urls = 0;
    let mut dns_type = "A".to_string();
    for k in c.children() {
        let key = k.keyword();
        match key {
            "connect_port" => check.port = Some(int_arg(k, 1, 65_535)? as u16),
            "connect_timeout" | "misc_timeout" => {
                check.timeout_ms = clamp_u32(seconds_arg(k)?.max(1))
            }
            "retry" | "nb_get_retry" => check.fall = int_arg(k, 0, 99)? as u32 + 1,
            "delay_loop" => check.interval_ms = clamp_u32(seconds_arg(k)?.clamp(100, 3_600_000)),
            "virtualhost" => check.host = Some(arg(k, "a host name")?.to_string()),
            "url" if kind == "HTTP_GET" || kind == "SSL_GET" => {
                urls += 1;
                if urls > 1 {
                    report.unmapped(
                        &k.at,
                        here(&format!("{kind} url")),
                        "an http(s) check asks one path: the first url is kept",
                    );
                    continue;
                }
                for u in k.children() {
                    match u.keyword() {
                        "path" => {
                            let p = arg(u, "a path")?;
                            if p.starts_with('/') {
                                check.path = Some(p.to_string());
                            } else {
                                report.unmapped(
                                    &u.at,
                                    here(&format!("url path {p}")),
                                    "a path starts with '/': \"/\" is used",
                                );
                            }
                        }
                        "status_code" => {
                            let mut codes = check.expect_status.take().unwrap_or_default();
                            for w in u.args() {
                                codes.extend(status_codes(w).ok_or_else(|| ImportError::Syntax {
                                    at: u.at.clone(),
                                    message: format!("status_code {w:?}: use a code such as 200 or a range such as 200-299"),
                                })?);
                            }
                            check.expect_status = Some(codes);
                        }
                        "regex" => {
                            let r = arg(u, "a pattern")?;
                            if r.chars().any(|ch| "\\^$.|?*+()[]{}".contains(ch)) {
                                report.unmapped(
                                    &u.at,
                                    here("url regex"),
                                    "body_match is a plain substring, and this pattern is a regular expression: left out",
                                );
                            } else {
                                check.body_match = Some(r.to_string());
                            }
                        }
                        "digest" => report.unmapped(
                            &u.at,
                            here("url digest"),
                            "checks do not hash the body: body_match (a substring) is the closest",
                        ),
                        "virtualhost" => check.host = Some(arg(u, "a host name")?.to_string()),
                        other => report.unmapped(
                            &u.at,
                            here(&format!("url {other}")),
                            "no equivalent in the suite",
                        ),
                    }
                }
            }
            "type" if kind == "DNS_CHECK" => {
                dns_type = arg(k, "a record type")?.to_ascii_uppercase()
            }
            "name" if kind == "DNS_CHECK" => check.query_name = Some(arg(k, "a name")?.to_string()),
            "misc_path" if kind == "MISC_CHECK" => {
                let argv = split_command(arg(k, "a command")?);
                if argv.first().is_some_and(|a| a.starts_with('/')) {
                    check.argv = Some(argv);
                } else {
                    report.unmapped(
                        &k.at,
                        here("MISC_CHECK misc_path"),
                        "an exec check runs a program by absolute path (no shell, no PATH search): write the full path; the check is left out",
                    );
                    return Ok(None);
                }
            }
            "misc_dynamic" => report.unmapped(
                &k.at,
                here("misc_dynamic"),
                "an exec check's exit status means up (0) or down; it sets no weight",
            ),
            "user" => report.unmapped(&k.at, here("user"), "lbd runs exec checks as its own user"),
            "delay_before_retry" => report.unmapped(
                &k.at,
                here(&format!("{kind} delay_before_retry")),
                "a retry waits the check's interval: `fall` failures in a row mark the server down",
            ),
            "connect_ip" | "bindto" | "bind_port" | "bind_if" | "fwmark" | "warmup"
            | "enable_sni" | "tls_compliant" | "protocol" | "fail_retry" => report.unmapped(
                &k.at,
                here(&format!("{kind} {key}")),
                "no equivalent in the suite",
            ),
            "alpha" | "omega" => report.unmapped(
                &k.at,
                here(key),
                "a server starts down and needs `rise` passed checks",
            ),
            other => unknown(report, k, other),
        }
    }
    check.timeout_ms = check.timeout_ms.min(check.interval_ms);
    match kind {
        "HTTP_GET" | "SSL_GET" => {
            check.path.get_or_insert_with(|| "/".to_string());
            check
                .expect_status
                .get_or_insert_with(|| DEFAULT_2XX.to_vec());
            if kind == "SSL_GET" {
                check.verify_cert = Some(false);
                report.assumed(
                    Some(&c.at),
                    here("SSL_GET"),
                    "verify_cert = false: keepalived does not verify the server's certificate either",
                );
            }
        }
        "DNS_CHECK" => {
            if dns_type != "A" {
                report.unmapped(
                    &c.at,
                    here(&format!("DNS_CHECK type {dns_type}")),
                    "udp_dns asks for an A record",
                );
            }
            check.query_name.get_or_insert_with(|| ".".to_string());
            if check.query_name.as_deref() == Some(".") {
                check.query_name = Some("localhost".into());
                report.assumed(
                    Some(&c.at),
                    here("DNS_CHECK name"),
                    "\"localhost\": keepalived asks for the root by default, which udp_dns cannot; set query_name",
                );
            }
        }
        "MISC_CHECK" if check.argv.is_none() => {
            report.unmapped(&c.at, here("MISC_CHECK"), "no misc_path: left out");
            return Ok(None);
        }
        _ => {}
    }
    Ok(Some(Checker {
        check,
        at: c.at.clone(),
    }))
}

/// `200` or `200-299`.
fn status_codes(w: &str) -> Option<Vec<u16>> {
    let (a, b) = match w.split_once('-') {
        Some((a, b)) => (a.parse::<u16>().ok()?, b.parse::<u16>().ok()?),
        None => {
            let a = w.parse::<u16>().ok()?;
            (a, a)
        }
    };
    ((100..=599).contains(&a) && (a..=599).contains(&b)).then(|| (a..=b).collect())
}

/// keepalived's script words: whitespace separates, single quotes group.
fn split_command(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in s.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any || !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
                any = false;
            }
            c => word.push(c),
        }
    }
    if any || !word.is_empty() {
        out.push(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn map(text: &str) -> (KaFile, Report) {
        let stmts = syntax::parse(text, Path::new("k.conf"), 0).unwrap();
        let mut report = Report::default();
        let file = map_file(&stmts, &mut report).unwrap();
        (file, report)
    }

    fn map_err(text: &str) -> String {
        let stmts = syntax::parse(text, Path::new("k.conf"), 0).unwrap();
        map_file(&stmts, &mut Report::default())
            .unwrap_err()
            .to_string()
    }

    const BASE: &str = "vrrp_instance VI_1 {\n state MASTER\n interface eth0\n virtual_router_id 51\n priority 150\n advert_int 1\n virtual_ipaddress {\n  198.18.0.100/24 dev eth0 label eth0:web\n }\n}\n";

    #[test]
    fn an_instance_maps_with_its_state_reported() {
        let (f, r) = map(BASE);
        let i = &f.draft.instances[0];
        assert_eq!((i.vrid, i.version, i.advert_interval_ms), (51, 2, 1000));
        assert_eq!(
            i.vips,
            [VipOut::Labelled {
                address: "198.18.0.100/24".into(),
                label: "eth0:web".into()
            }]
        );
        assert_eq!(f.node.priority.get("VI_1"), Some(&150));
        assert_eq!(f.draft.groups[0].instances, ["VI_1"]);
        let state = r.items.iter().find(|i| i.what.ends_with("state")).unwrap();
        assert_eq!(state.at.as_ref().unwrap().line, 2);
    }

    #[test]
    fn scripts_and_notify_are_reported_with_the_suite_equivalent() {
        let text = format!(
            "vrrp_script chk {{\n script \"/bin/true\"\n}}\n{}",
            BASE.replace(
                " advert_int 1\n",
                " advert_int 1\n notify_master /bin/x\n track_script {\n  chk\n }\n"
            )
        );
        let (_, r) = map(&text);
        let script = r
            .items
            .iter()
            .find(|i| i.what.starts_with("vrrp_script"))
            .unwrap();
        assert_eq!(script.at.as_ref().unwrap().line, 1);
        assert!(script.detail.contains("quorum"));
        let notify = r
            .items
            .iter()
            .find(|i| i.what.ends_with("notify_master"))
            .unwrap();
        assert!(notify.detail.contains("vrrpctl watch"), "{}", notify.detail);
        assert!(r.items.iter().any(|i| i.what.ends_with("track_script")));
    }

    #[test]
    fn fractional_intervals_follow_the_version() {
        let (f, r) = map(&BASE.replace("advert_int 1", "advert_int 0.5"));
        assert_eq!(f.draft.instances[0].advert_interval_ms, 1000);
        assert!(r.items.iter().any(|i| i.what.ends_with("advert_int")));
        let (f, _) = map(&BASE.replace("advert_int 1", "advert_int 0.5\n version 3"));
        assert_eq!(f.draft.instances[0].advert_interval_ms, 500);
    }

    #[test]
    fn bad_values_are_errors_with_the_line() {
        let e = map_err(&BASE.replace("198.18.0.100/24", "198.18.0.300/24"));
        assert!(e.starts_with("k.conf:8:"), "{e}");
        let e = map_err(&BASE.replace("virtual_router_id 51", "virtual_router_id 300"));
        assert!(e.starts_with("k.conf:4:") && e.contains("1..=255"), "{e}");
        let e = map_err(&BASE.replace(" interface eth0\n", ""));
        assert!(e.contains("no `interface`"), "{e}");
    }

    #[test]
    fn unknown_keywords_are_reported_not_fatal() {
        let (_, r) = map(&BASE.replace("priority 150", "priority 150\n frobnicate 3"));
        let item = r.items.iter().find(|i| i.what == "frobnicate").unwrap();
        assert_eq!(item.at.as_ref().unwrap().line, 6);
    }

    #[test]
    fn status_codes_and_commands() {
        assert_eq!(status_codes("200-202"), Some(vec![200, 201, 202]));
        assert_eq!(status_codes("99"), None);
        assert_eq!(status_codes("300-200"), None);
        assert_eq!(
            split_command("/usr/bin/check -x 'a b'"),
            ["/usr/bin/check", "-x", "a b"]
        );
    }

    #[test]
    fn equal_checks_share_a_name() {
        let mut checks = Vec::new();
        let c = CheckOut::new("tcp", 1000, 500, 1, 2);
        let a = intern_check(c.clone(), "web", &mut checks);
        let b = intern_check(c.clone(), "web", &mut checks);
        let mut other = c;
        other.fall = 3;
        let d = intern_check(other, "web", &mut checks);
        assert_eq!(a, b);
        assert_ne!(a, d);
        assert_eq!(checks.len(), 2);
    }
}
