//! HAProxy ALOHA to cluster.toml: the `director` sections of its LB Layer4
//! configuration, and its NAT rules.
//!
//! A director section, as ALOHA's LB Layer4 reference documents it:
//!
//! ```text
//! director NAME [IP[:PORT] [TCP|UDP]]
//!   balance roundrobin | leastconn [localitybased [replication]] | source | srcdst | dest | shortestexpected | neverqueue
//!   mode gateway | nat | tunnel
//!   check [timeout S] [interval S] [source IP] [port P]
//!   option persistence [timeout S] [netmask MASK] | httpcheck [uri U] [statuscode N] [vhost H] | tcpcheck | arpcheck [iface I] | icmpcheck
//!   server NAME IP[:PORT] [weight N] [check] [sorry]
//! ```
//!
//! ALOHA's NAT tab is a form (IN, OUT, protocol, the traffic's destination and
//! ports before translation, and the source after it) with no file syntax of its
//! own; this importer reads one rule per `nat` section with one line per field:
//!
//! ```text
//! nat NAME
//!   in IFACE
//!   out IFACE
//!   protocol tcp | udp | any
//!   destination IP
//!   port P | P-Q
//!   source IP[:P-Q] [IP[:P-Q] ...]
//! ```
//!
//! ALOHA's VRRP settings live elsewhere (its services) and are not read: the
//! instances holding the directors' addresses are assumed, and reported.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use crate::assemble::{Draft, NodeFacts};
use crate::net;
use crate::out::{
    CheckOut, GarpOut, GroupOut, InstanceOut, NatOut, PersistenceOut, PoolEntryOut, ServerOut,
    ServiceOut, SnatOut, SorryOut, VipOut,
};
use crate::report::{Loc, Report};
use crate::{ip_at, ImportError};

/// One line: its words and where it is.
#[derive(Debug, Clone)]
struct Line {
    words: Vec<String>,
    at: Loc,
}

impl Line {
    fn key(&self) -> &str {
        self.words.first().map_or("", String::as_str)
    }

    fn args(&self) -> &[String] {
        self.words.get(1..).unwrap_or(&[])
    }

    fn err(&self, message: impl Into<String>) -> ImportError {
        ImportError::Syntax {
            at: self.at.clone(),
            message: message.into(),
        }
    }
}

/// A section: its header line and its lines.
#[derive(Debug, Clone)]
struct Section {
    head: Line,
    body: Vec<Line>,
}

/// Splits the text into sections; lines before the first section are returned apart.
fn sections(text: &str, file: &str) -> (Vec<Section>, Vec<Line>) {
    let mut out: Vec<Section> = Vec::new();
    let mut loose = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let content = raw.split('#').next().unwrap_or("");
        let words: Vec<String> = content.split_whitespace().map(str::to_string).collect();
        if words.is_empty() {
            continue;
        }
        let line = Line {
            words,
            at: Loc {
                file: file.to_string(),
                line: i + 1,
            },
        };
        match line.key() {
            "director" | "nat" => out.push(Section {
                head: line,
                body: Vec::new(),
            }),
            _ => match out.last_mut() {
                Some(s) => s.body.push(line),
                None => loose.push(line),
            },
        }
    }
    (out, loose)
}

/// Imports one or two ALOHA configurations.
pub(crate) fn import(
    inputs: &[(PathBuf, String)],
    report: &mut Report,
) -> Result<(Draft, [NodeFacts; 2]), ImportError> {
    let mut drafts = Vec::new();
    for (k, (f, text)) in inputs.iter().enumerate() {
        let (secs, loose) = sections(text, &crate::shown(f));
        let mut own = Report::default();
        for l in &loose {
            own.unmapped(
                &l.at,
                l.key(),
                "outside any director or nat section: not read",
            );
        }
        let draft = map(&secs, &mut own)?;
        if k == 0 {
            report.items.extend(own.items);
        } else if draft != drafts[0] {
            report.differs(
                &Loc {
                    file: crate::shown(f),
                    line: 1,
                },
                "configuration",
                "ALOHA keeps one layer-4 configuration for both nodes, and this file's differs from the first: the first is kept",
            );
        }
        drafts.push(draft);
    }
    let draft = drafts.into_iter().next().ok_or(ImportError::FileCount(0))?;
    Ok((draft, [NodeFacts::default(), NodeFacts::default()]))
}

/// The instance that holds the public VIPs, and the one for the SNAT sources.
const PUBLIC: &str = "public";
const PUBLIC6: &str = "public6";
const SERVER: &str = "server";
const GROUP: &str = "lb";

fn map(secs: &[Section], report: &mut Report) -> Result<Draft, ImportError> {
    let mut draft = Draft {
        backend: "ipvs".into(),
        ..Draft::default()
    };
    report.assumed(
        None,
        "[dataplane] backend",
        "\"ipvs\": ALOHA's layer-4 directors are IPVS services",
    );
    let mut vips4: Vec<IpAddr> = Vec::new();
    let mut vips6: Vec<IpAddr> = Vec::new();
    let mut nat_secs = Vec::new();
    for s in secs {
        if s.head.key() == "nat" {
            nat_secs.push(s);
            continue;
        }
        if let Some(svc) = map_director(s, &mut draft.checks, report)? {
            let vip: IpAddr = svc.vip.parse().map_err(|_| s.head.err("bad VIP"))?;
            if draft.services.iter().any(|x| x.name == svc.name) {
                return Err(s.head.err(format!("a second director named {}", svc.name)));
            }
            let list = if vip.is_ipv6() {
                &mut vips6
            } else {
                &mut vips4
            };
            if !list.contains(&vip) {
                list.push(vip);
            }
            draft.services.push(svc);
        }
    }
    let mut nat = Vec::new();
    for s in nat_secs {
        if let Some(rule) = map_nat(s, report)? {
            nat.push((rule, s.head.at.clone()));
        }
    }
    // The instances: ALOHA's VRRP setup is not in these sections.
    let public_iface = nat
        .iter()
        .find_map(|(r, _)| r.in_interface.clone())
        .unwrap_or_else(|| "eth0".to_string());
    let mut server_vips: Vec<IpAddr> = Vec::new();
    let mut rules = Vec::new();
    for (rule, at) in nat {
        let dest: IpAddr = rule.destination.parse().map_err(|_| ImportError::Syntax {
            at: at.clone(),
            message: "bad destination".into(),
        })?;
        if !vips4.contains(&dest) && !vips6.contains(&dest) {
            report.unmapped(
                &at,
                format!("nat {}", rule.name),
                format!("destination {dest} is no director's address, so the rule would not follow the active node: left out"),
            );
            continue;
        }
        let sources: Vec<IpAddr> = match &rule.snat {
            SnatOut::Address(a) => a.parse().into_iter().collect(),
            SnatOut::Pool(p) => p.iter().filter_map(|e| e.address.parse().ok()).collect(),
        };
        if sources.iter().any(|s| s.is_ipv6() != dest.is_ipv6()) {
            report.unmapped(
                &at,
                format!("nat {}", rule.name),
                "its source and destination are of different families: left out",
            );
            continue;
        }
        let same_link = rule
            .out_interface
            .as_deref()
            .is_none_or(|o| o == public_iface);
        for s in sources {
            let list = if same_link || s.is_ipv6() {
                if s.is_ipv6() {
                    &mut vips6
                } else {
                    &mut vips4
                }
            } else {
                &mut server_vips
            };
            if !list.contains(&s) {
                list.push(s);
            }
        }
        if !same_link && dest.is_ipv6() {
            report.unmapped(
                &at,
                format!("nat {} out", rule.name),
                "an IPv6 SNAT source is assumed on the public instance's interface",
            );
        }
        rules.push(rule);
    }
    let server_iface = rules
        .iter()
        .find_map(|r| r.out_interface.clone().filter(|o| *o != public_iface));
    let instance = |name: &str, iface: &str, vrid: u8, vips: &[IpAddr]| InstanceOut {
        name: name.to_string(),
        interface: iface.to_string(),
        vrid,
        version: 3,
        advert_interval_ms: 1000,
        vips: vips.iter().map(|a| VipOut::Plain(a.to_string())).collect(),
        preempt: true,
        preempt_delay_ms: 0,
        accept_mode: false,
        track_interfaces: Vec::new(),
        garp: GarpOut::default(),
        auth_pass: None,
        unicast: false,
    };
    let mut made = Vec::new();
    if !vips4.is_empty() {
        made.push(instance(PUBLIC, &public_iface, 51, &vips4));
    }
    if !vips6.is_empty() {
        made.push(instance(PUBLIC6, &public_iface, 51, &vips6));
    }
    if let (Some(iface), false) = (&server_iface, server_vips.is_empty()) {
        made.push(instance(SERVER, iface, 52, &server_vips));
    }
    for i in &made {
        report.assumed(
            None,
            format!("instance {}", i.name),
            format!(
                "interface {}, vrid {}, VRRPv3, 1 s adverts: ALOHA's VRRP settings are not in the layer-4 or NAT configuration; set them as on the appliance",
                i.interface, i.vrid
            ),
        );
    }
    if made.is_empty() {
        return Err(ImportError::Syntax {
            at: Loc {
                file: secs
                    .first()
                    .map(|s| s.head.at.file.clone())
                    .unwrap_or_default(),
                line: 1,
            },
            message: "no director with an address: nothing to import".into(),
        });
    }
    draft.groups.push(GroupOut {
        name: GROUP.into(),
        instances: made.iter().map(|i| i.name.clone()).collect(),
    });
    draft.instances = made;
    draft.nat = rules;
    Ok(draft)
}

/// A duration: seconds, or with a unit (`ms`, `s`, `m`), as ms.
fn duration_ms(w: &str) -> Option<u64> {
    let (num, mult) = if let Some(n) = w.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = w.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = w.strip_suffix('m') {
        (n, 60_000)
    } else {
        (w, 1000)
    };
    num.parse::<u64>().ok().map(|n| n.saturating_mul(mult))
}

/// `IP[:PORT]`; IPv6 as `[ADDR]:PORT` or a bare address.
fn ip_port(w: &str, at: &Loc, what: &str) -> Result<(IpAddr, Option<u16>), ImportError> {
    let bad = || ImportError::Syntax {
        at: at.clone(),
        message: format!("{what} {w:?}: write IP or IP:PORT"),
    };
    if let Ok(ip) = w.parse::<IpAddr>() {
        return Ok((ip, None));
    }
    let (host, port) = w.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = ip_at(host, at, what)?;
    let port = match port.parse::<u16>() {
        Ok(0) => None,
        Ok(p) => Some(p),
        Err(_) => return Err(bad()),
    };
    Ok((ip, port))
}

/// The check settings a director gives (`check` and the check options).
#[derive(Default)]
struct CheckSettings {
    interval_ms: Option<u64>,
    timeout_ms: Option<u64>,
    port: Option<u16>,
}

fn check_params(
    l: &Line,
    args: &[String],
    c: &mut CheckSettings,
    report: &mut Report,
    director: &str,
) -> Result<Vec<(String, String)>, ImportError> {
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(k) = it.next() {
        let Some(v) = it.next() else {
            return Err(l.err(format!("`{k}` needs a value")));
        };
        match k.as_str() {
            "interval" => {
                c.interval_ms = Some(duration_ms(v).ok_or_else(|| {
                    l.err(format!("interval {v:?}: use seconds such as 10 or 10s"))
                })?)
            }
            "timeout" => {
                c.timeout_ms =
                    Some(duration_ms(v).ok_or_else(|| {
                        l.err(format!("timeout {v:?}: use seconds such as 3 or 3s"))
                    })?)
            }
            "port" => {
                c.port = Some(
                    v.parse()
                        .map_err(|_| l.err(format!("port {v:?}: use 1..=65535")))?,
                )
            }
            "source" => report.unmapped(
                &l.at,
                format!("director {director} check source {v}"),
                "checks leave from the node's own address on the server's link",
            ),
            _ => rest.push((k.clone(), v.clone())),
        }
    }
    Ok(rest)
}

fn map_director(
    s: &Section,
    checks: &mut Vec<CheckOut>,
    report: &mut Report,
) -> Result<Option<ServiceOut>, ImportError> {
    let h = &s.head;
    let args = h.args();
    let Some(name) = args.first() else {
        return Err(h.err("`director` needs a name"));
    };
    let Some(addr) = args.get(1) else {
        report.unmapped(
            &h.at,
            format!("director {name}"),
            "no address (a director matched by firewall mark): the suite's services are an address and port; left out",
        );
        return Ok(None);
    };
    let (vip, port) = ip_port(addr, &h.at, "director")?;
    let protocol = match args.get(2).map(|p| p.to_ascii_uppercase()) {
        None => "tcp",
        Some(p) if p == "TCP" => "tcp",
        Some(p) if p == "UDP" => "udp",
        Some(p) => return Err(h.err(format!("director protocol {p:?}: use TCP or UDP"))),
    };
    let mut scheduler = "wlc";
    let mut mode: Option<&str> = None;
    let mut settings = CheckSettings::default();
    let mut kind: Option<(&str, Loc)> = None;
    let mut http = (None::<String>, None::<u16>, None::<String>);
    let mut persistence = None;
    let mut servers = Vec::new();
    let mut sorry = None;
    let mut wants_check = false;
    for l in &s.body {
        let a = l.args();
        match l.key() {
            "balance" => {
                let joined = a.join(" ");
                scheduler = match joined.as_str() {
                    "roundrobin" => "wrr",
                    "leastconn" => "wlc",
                    "source" => "sh",
                    "shortestexpected" => "sed",
                    "neverqueue" => "nq",
                    "leastconn localitybased" | "leastconn localitybased replication"
                    | "srcdst" | "dest" => {
                        report.unmapped(
                            &l.at,
                            format!("director {name} balance {joined}"),
                            "no such scheduler in the suite (rr, wrr, lc, wlc, sh, mh, sed, nq, random): wlc is used",
                        );
                        "wlc"
                    }
                    other => return Err(l.err(format!("balance {other:?}: use roundrobin, leastconn, source, srcdst, dest, shortestexpected or neverqueue"))),
                };
            }
            "mode" => {
                mode = Some(match a.first().map(String::as_str) {
                    Some("gateway") => "dr",
                    Some("nat") => "nat",
                    Some("tunnel") => "tunnel",
                    _ => return Err(l.err("mode: use gateway, nat or tunnel")),
                })
            }
            "check" => {
                if let Some((k, _)) = check_params(l, a, &mut settings, report, name)?.first() {
                    return Err(l.err(format!(
                        "check {k:?}: use timeout, interval, source or port"
                    )));
                }
            }
            "option" => {
                let Some(opt) = a.first() else {
                    return Err(l.err("`option` needs a name"));
                };
                if opt == "persistence" {
                    let mut timeout = None;
                    let mut prefix = None;
                    let mut it = a[1..].iter();
                    while let Some(k) = it.next() {
                        let Some(v) = it.next() else {
                            return Err(l.err(format!("`{k}` needs a value")));
                        };
                        match k.as_str() {
                            "netmask" => {
                                prefix = Some(net::netmask_len(v).ok_or_else(|| {
                                    l.err(format!(
                                        "netmask {v:?}: use a mask such as 255.255.255.0"
                                    ))
                                })?)
                            }
                            "timeout" => {
                                timeout = Some(
                                    duration_ms(v).ok_or_else(|| {
                                        l.err(format!(
                                            "timeout {v:?}: use seconds such as 300 or 300s"
                                        ))
                                    })? / 1000,
                                )
                            }
                            _ => {
                                return Err(l.err(format!(
                                    "option persistence {k:?}: use timeout or netmask"
                                )))
                            }
                        }
                    }
                    let timeout_s = match timeout {
                        Some(t) => t.clamp(1, 2_678_400) as u32,
                        None => {
                            report.assumed(
                                Some(&l.at),
                                format!("director {name} option persistence"),
                                "timeout 300 s (IPVS's default; the line gives none)",
                            );
                            300
                        }
                    };
                    persistence = Some(PersistenceOut {
                        timeout_s,
                        prefix_len: prefix,
                    });
                    continue;
                }
                let rest = check_params(l, &a[1..], &mut settings, report, name)?;
                match opt.as_str() {
                    "httpcheck" => {
                        kind = Some(("http", l.at.clone()));
                        for (k, v) in rest {
                            match k.as_str() {
                                "uri" => http.0 = Some(v),
                                "statuscode" => {
                                    http.1 = Some(v.parse().map_err(|_| l.err(format!("statuscode {v:?}: use a code such as 200")))?)
                                }
                                "vhost" => http.2 = Some(v),
                                _ => return Err(l.err(format!("option httpcheck {k:?}: use uri, statuscode or vhost"))),
                            }
                        }
                    }
                    "tcpcheck" => {
                        kind = Some(("tcp", l.at.clone()));
                        if let Some((k, _)) = rest.first() {
                            return Err(l.err(format!("option tcpcheck {k:?}: use interval, timeout, source or port")));
                        }
                    }
                    "arpcheck" | "icmpcheck" => report.unmapped(
                        &l.at,
                        format!("director {name} option {opt}"),
                        "the suite has no ARP or ICMP check: tcp_syn (a half-open TCP handshake) is the cheapest check it has; servers marked `check` get none",
                    ),
                    other => report.unmapped(
                        &l.at,
                        format!("director {name} option {other}"),
                        "not an option of ALOHA's layer-4 directors this importer knows",
                    ),
                }
            }
            "server" => {
                let (Some(sname), Some(saddr)) = (a.first(), a.get(1)) else {
                    return Err(l.err("`server` needs a name and an address"));
                };
                let (ip, sport) = ip_port(saddr, &l.at, "server")?;
                let mut weight = 1u32;
                let mut check = false;
                let mut is_sorry = false;
                let mut it = a[2..].iter();
                while let Some(w) = it.next() {
                    match w.as_str() {
                        "weight" => {
                            let v = it.next().ok_or_else(|| l.err("`weight` needs a number"))?;
                            weight = v
                                .parse::<u32>()
                                .ok()
                                .filter(|w| *w <= 65_535)
                                .ok_or_else(|| l.err(format!("weight {v:?}: use 0..=65535")))?;
                        }
                        "check" => check = true,
                        "sorry" => is_sorry = true,
                        other => report.unmapped(
                            &l.at,
                            format!("director {name} server {sname} {other}"),
                            "no equivalent in the suite",
                        ),
                    }
                }
                if is_sorry {
                    if sorry.is_some() {
                        report.unmapped(
                            &l.at,
                            format!("director {name} server {sname} sorry"),
                            "a service has one sorry server: the first is kept",
                        );
                    } else {
                        sorry = Some(SorryOut {
                            address: ip.to_string(),
                            port: sport,
                        });
                    }
                    continue;
                }
                wants_check |= check;
                servers.push((
                    ServerOut {
                        name: sname.clone(),
                        address: ip.to_string(),
                        port: sport,
                        weight,
                        check: None,
                    },
                    check,
                    l.at.clone(),
                ));
            }
            other => report.unmapped(
                &l.at,
                format!("director {name} {other}"),
                "not a keyword of ALOHA's layer-4 directors this importer knows",
            ),
        }
    }
    let mode = mode.unwrap_or_else(|| {
        report.assumed(
            Some(&h.at),
            format!("director {name} mode"),
            "nat (ALOHA's default, destination masquerading): the director names no mode",
        );
        "nat"
    });
    let check_name = match (wants_check, kind) {
        (true, Some((k, at))) => {
            let interval = settings.interval_ms.unwrap_or(10_000).clamp(100, 3_600_000);
            let timeout = settings.timeout_ms.unwrap_or(3_000).clamp(1, interval);
            report.assumed(
                Some(&at),
                format!("director {name} check"),
                "rise 2, fall 3: ALOHA's counts are not in the director",
            );
            let mut c = CheckOut::new(k, interval as u32, timeout as u32, 2, 3);
            c.name = format!("{name}-{k}");
            c.port = settings.port;
            if k == "http" {
                let path = http.0.clone().unwrap_or_else(|| "/".into());
                c.path = Some(if path.starts_with('/') {
                    path
                } else {
                    format!("/{path}")
                });
                c.expect_status = Some(vec![http.1.unwrap_or(200)]);
                c.host = http.2.clone();
            }
            checks.push(c);
            Some(format!("{name}-{k}"))
        }
        (true, None) => {
            report.unmapped(
                &h.at,
                format!("director {name} server ... check"),
                "no tcpcheck or httpcheck option says what to check: the servers get no check",
            );
            None
        }
        _ => None,
    };
    let mut out_servers = Vec::new();
    for (mut srv, check, at) in servers {
        let ip: IpAddr = srv.address.parse().map_err(|_| ImportError::Syntax {
            at: at.clone(),
            message: "bad server address".into(),
        })?;
        if ip.is_ipv6() != vip.is_ipv6() && mode != "tunnel" {
            report.unmapped(
                &at,
                format!("director {name} server {}", srv.name),
                format!("not of the VIP's family, which {mode} mode cannot forward: left out"),
            );
            continue;
        }
        if port.is_none() {
            srv.port = None;
        } else if mode != "nat" && srv.port.is_some_and(|p| Some(p) != port) {
            report.unmapped(
                &at,
                format!("director {name} server {} port", srv.name),
                format!("{mode} mode keeps the destination port: the server's port is left out"),
            );
            srv.port = None;
        }
        if check {
            srv.check.clone_from(&check_name);
        }
        out_servers.push(srv);
    }
    let (port_out, range) = match port {
        Some(p) => (Some(p), None),
        None => {
            report.assumed(
                Some(&h.at),
                format!("director {name}"),
                "no port: port_range \"1-65535\" (every port; servers keep the destination port)",
            );
            (None, Some("1-65535".to_string()))
        }
    };
    Ok(Some(ServiceOut {
        name: name.clone(),
        vip: vip.to_string(),
        port: port_out,
        port_range: range,
        protocol: protocol.to_string(),
        scheduler: scheduler.to_string(),
        mode: mode.to_string(),
        persistence,
        sorry_server: sorry,
        inhibit_on_failure: true,
        quorum: None,
        server: out_servers,
    }))
}

fn map_nat(s: &Section, report: &mut Report) -> Result<Option<NatOut>, ImportError> {
    let h = &s.head;
    let Some(name) = h.args().first() else {
        return Err(h.err("`nat` needs a name"));
    };
    let mut fields: BTreeMap<&str, &Line> = BTreeMap::new();
    for l in &s.body {
        match l.key() {
            k @ ("in" | "out" | "protocol" | "destination" | "port" | "source") => {
                if l.args().is_empty() {
                    return Err(l.err(format!("`{k}` needs a value")));
                }
                fields.insert(k, l);
            }
            "from" => report.unmapped(
                &l.at,
                format!("nat {name} from"),
                "SNAT rules match the traffic's destination, not its client source",
            ),
            other => report.unmapped(
                &l.at,
                format!("nat {name} {other}"),
                "not a field of a NAT rule this importer knows (in, out, protocol, destination, port, source)",
            ),
        }
    }
    let first = |k: &str| fields.get(k).map(|l| l.args()[0].clone());
    let Some(dest_line) = fields.get("destination") else {
        return Err(h.err(format!("nat {name} has no `destination`")));
    };
    let dest = ip_at(&dest_line.args()[0], &dest_line.at, "destination")?;
    let Some(src_line) = fields.get("source") else {
        return Err(h.err(format!(
            "nat {name} has no `source` (the new source address)"
        )));
    };
    let mut pool = Vec::new();
    for w in src_line.args() {
        let (a, ports) = match w.parse::<IpAddr>() {
            Ok(a) => (a, None),
            Err(_) => {
                let (a, p) = w.rsplit_once(':').ok_or_else(|| {
                    src_line.err(format!("source {w:?}: write IP or IP:PORT-PORT"))
                })?;
                let range: config::PortRange = p
                    .parse()
                    .map_err(|e| src_line.err(format!("source {w:?}: {e}")))?;
                (
                    ip_at(a.trim_matches(['[', ']']), &src_line.at, "source")?,
                    Some(range.to_string()),
                )
            }
        };
        pool.push(PoolEntryOut {
            address: a.to_string(),
            ports,
        });
    }
    let protocol = match first("protocol").map(|p| p.to_ascii_lowercase()) {
        None => "any".to_string(),
        Some(p) if p == "tcp" || p == "udp" || p == "any" => p,
        Some(p) => {
            let l = fields["protocol"];
            return Err(l.err(format!("protocol {p:?}: use tcp, udp or any")));
        }
    };
    let (mut port, mut range) = (None, None);
    if let Some(l) = fields.get("port") {
        let r: config::PortRange = l.args()[0]
            .parse()
            .map_err(|e| l.err(format!("port {:?}: {e}", l.args()[0])))?;
        if protocol == "any" {
            report.unmapped(
                &l.at,
                format!("nat {name} port"),
                "a port needs protocol tcp or udp: the rule matches every port",
            );
        } else if r.is_single() {
            port = Some(r.start);
        } else {
            range = Some(r.to_string());
        }
    }
    let snat = if pool.len() == 1 && pool[0].ports.is_none() {
        SnatOut::Address(pool[0].address.clone())
    } else {
        SnatOut::Pool(pool)
    };
    Ok(Some(NatOut {
        name: name.clone(),
        in_interface: first("in"),
        out_interface: first("out"),
        protocol,
        destination: dest.to_string(),
        destination_port: port,
        destination_port_range: range,
        snat,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_text(text: &str) -> Result<(Draft, Report), ImportError> {
        let (secs, _) = sections(text, "a.cfg");
        let mut r = Report::default();
        map(&secs, &mut r).map(|d| (d, r))
    }

    #[test]
    fn the_source_nat_example_maps() {
        let (d, r) = map_text(
            "director web 198.18.0.3:8000 TCP\n  balance leastconn\n  mode nat\n  option tcpcheck interval 4s timeout 1s\n  server web1 198.18.0.20:8000 weight 10 check\n\nnat web-snat\n  in eth0\n  out eth0\n  protocol tcp\n  destination 198.18.0.3\n  port 8000\n  source 198.18.0.4\n",
        )
        .unwrap();
        let s = &d.services[0];
        assert_eq!(
            (s.scheduler.as_str(), s.mode.as_str(), s.port),
            ("wlc", "nat", Some(8000))
        );
        assert_eq!(s.server[0].weight, 10);
        assert_eq!(s.server[0].check.as_deref(), Some("web-tcp"));
        assert_eq!(
            (d.checks[0].interval_ms, d.checks[0].timeout_ms),
            (4000, 1000)
        );
        assert_eq!(d.nat[0].snat, SnatOut::Address("198.18.0.4".into()));
        // One arm: the SNAT source is a VIP of the public instance.
        assert_eq!(d.instances.len(), 1);
        assert_eq!(d.instances[0].vips.len(), 2);
        assert!(r.items.iter().any(|i| i.what == "instance public"));
    }

    #[test]
    fn malformed_lines_name_their_line() {
        let e = map_text("director web 198.18.0.3:8000\n  balance fastest\n").unwrap_err();
        assert!(e.to_string().starts_with("a.cfg:2:"), "{e}");
        let e = map_text("director web 198.18.0.300:80\n").unwrap_err();
        assert!(e.to_string().starts_with("a.cfg:1:"), "{e}");
        let e =
            map_text("director web 198.18.0.3:80\n server a 198.18.0.20 weight x\n").unwrap_err();
        assert!(e.to_string().starts_with("a.cfg:2:"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(duration_ms("10"), Some(10_000));
        assert_eq!(duration_ms("4s"), Some(4000));
        assert_eq!(duration_ms("500ms"), Some(500));
        assert_eq!(duration_ms("x"), None);
    }
}
