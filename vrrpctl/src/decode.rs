//! `vrrpctl decode`: decode VRRP packets from a pcap capture, or hex lines
//! on stdin, with the same codec and checks as vrrpd.

use std::io::{BufRead, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde_json::{json, Value};
use vrrp::checksum::IPPROTO_VRRP;
use vrrp::error::DecodeError;
use vrrp::frame::{self, LinkType};
use vrrp::packet::{self, Family, IpContext, Received};
use vrrp::pcap::Capture;

/// Arguments of `vrrpctl decode`.
#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// Classic pcap capture to read (Ethernet, raw IP or Linux cooked). Without
    /// it, hex packets are read from stdin, one per line: a bare VRRP message,
    /// an IPv4/IPv6 packet or an Ethernet frame (told apart by the first byte).
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Print one JSON object per packet and line instead of text.
    #[arg(long)]
    pub json: bool,
    /// IP source of bare VRRP messages on stdin (VRRPv3 checksums need it).
    #[arg(long, value_name = "ADDR", requires = "dst")]
    pub src: Option<IpAddr>,
    /// IP destination of bare VRRP messages on stdin.
    #[arg(long, value_name = "ADDR", requires = "src")]
    pub dst: Option<IpAddr>,
}

/// The fate of one input frame or line.
#[derive(Debug)]
enum Outcome {
    /// Not VRRP at all (ARP, NDP, another protocol): skipped.
    NotVrrp,
    /// A VRRP packet (decoded, or refused by a check).
    Vrrp(PacketReport),
}

/// One VRRP packet: what the IP layer and the header said, and the verdict.
#[derive(Debug)]
struct PacketReport {
    /// Frame number in the capture, or line number on stdin (from 1).
    number: usize,
    /// The IP layer, when there was one (or given with --src/--dst).
    ip: Option<IpContext>,
    /// The VRRP message bytes (may be empty when the IP layer failed).
    message: Vec<u8>,
    verdict: Verdict,
}

#[derive(Debug)]
enum Verdict {
    /// All checks passed.
    Ok(Received),
    /// Structure valid; TTL and checksum not checkable (bare v3 message, no --src).
    Unverified(packet::Advertisement),
    /// A check failed.
    Refused { kind: &'static str, message: String },
}

/// Decodes every packet; prints one line each on stdout and a summary on
/// stderr. Exits 0 when every VRRP packet passed, 1 when any was refused.
pub fn run(args: DecodeArgs) -> anyhow::Result<i32> {
    let outcomes = match &args.file {
        Some(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            decode_capture(&bytes).with_context(|| format!("reading {}", path.display()))?
        }
        None => {
            let stdin = std::io::stdin();
            let mut lines = Vec::new();
            for line in stdin.lock().lines() {
                lines.push(line.context("reading stdin")?);
            }
            let bare_ip = args
                .src
                .zip(args.dst)
                .map(|(src, dst)| IpContext::new(src, dst));
            lines
                .iter()
                .enumerate()
                .filter_map(|(i, line)| decode_hex_line(i + 1, line, bare_ip.as_ref()))
                .collect()
        }
    };
    let (mut vrrp, mut refused, mut skipped) = (0, 0, 0);
    let mut out = std::io::stdout().lock();
    for outcome in &outcomes {
        match outcome {
            Outcome::NotVrrp => skipped += 1,
            Outcome::Vrrp(report) => {
                vrrp += 1;
                if matches!(report.verdict, Verdict::Refused { .. }) {
                    refused += 1;
                }
                let line = if args.json {
                    to_json(report).to_string()
                } else {
                    to_text(report)
                };
                match writeln!(out, "{line}") {
                    Ok(()) => {}
                    // The reader left (`| head`): nothing more to say.
                    Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => return Ok(0),
                    Err(err) => return Err(err).context("writing to stdout"),
                }
            }
        }
    }
    eprintln!(
        "{} frames: {vrrp} VRRP ({refused} refused), {skipped} non-VRRP skipped",
        outcomes.len()
    );
    Ok(if refused > 0 { 1 } else { 0 })
}

/// Decodes every frame of a pcap capture.
fn decode_capture(bytes: &[u8]) -> anyhow::Result<Vec<Outcome>> {
    let capture = Capture::parse(bytes)?;
    let mut outcomes = Vec::new();
    for record in capture.records() {
        let record = record?;
        outcomes.push(decode_link(record.index, capture.link_type, record.data));
    }
    Ok(outcomes)
}

/// Decodes one link-layer frame.
fn decode_link(number: usize, link: LinkType, data: &[u8]) -> Outcome {
    match frame::ip_from_link(link, data) {
        Ok(ip_packet) => decode_ip_packet(number, ip_packet),
        Err(err) if err.is_not_vrrp() => Outcome::NotVrrp,
        Err(err) => refused(number, None, Vec::new(), &err),
    }
}

/// Decodes one IP packet: non-VRRP protocols are skipped.
fn decode_ip_packet(number: usize, bytes: &[u8]) -> Outcome {
    let ip_packet = match frame::parse_ip(bytes) {
        Ok(p) => p,
        Err(err) => return refused(number, None, Vec::new(), &err),
    };
    if ip_packet.protocol != IPPROTO_VRRP {
        return Outcome::NotVrrp;
    }
    let message = ip_packet.payload.to_vec();
    let verdict = match packet::decode(&message, &ip_packet.ip) {
        Ok(received) => Verdict::Ok(received),
        Err(err) => verdict_of(&err),
    };
    Outcome::Vrrp(PacketReport {
        number,
        ip: Some(ip_packet.ip),
        message,
        verdict,
    })
}

/// Decodes one stdin line of hex; blank lines and `#` comments give nothing.
fn decode_hex_line(number: usize, line: &str, bare_ip: Option<&IpContext>) -> Option<Outcome> {
    let text = line.split('#').next().unwrap_or("").trim();
    if text.is_empty() {
        return None;
    }
    let bytes = match parse_hex(text) {
        Ok(bytes) => bytes,
        Err(message) => {
            return Some(Outcome::Vrrp(PacketReport {
                number,
                ip: None,
                message: Vec::new(),
                verdict: Verdict::Refused {
                    kind: "bad_hex",
                    message,
                },
            }))
        }
    };
    Some(match bytes.first().copied() {
        // Version 2 or 3, type 1: a bare VRRP message.
        Some(0x21 | 0x31) => decode_bare(number, bytes, bare_ip),
        Some(b) if b >> 4 == 4 || b >> 4 == 6 => decode_ip_packet(number, &bytes),
        _ => decode_link(number, LinkType::Ethernet, &bytes),
    })
}

/// A VRRP message without its IP header: fully checked when the IP layer is
/// known (from --src/--dst, or needless for a v2 checksum), else structure only.
fn decode_bare(number: usize, message: Vec<u8>, given: Option<&IpContext>) -> Outcome {
    let is_v2 = message.first().map(|b| b >> 4) == Some(2);
    let family = Family::infer_from_message(&message);
    let ip = match (given, family) {
        (Some(ip), _) => Some(*ip),
        // The v2 checksum covers the message alone: any addresses will do.
        (None, Some(Family::Ipv4)) if is_v2 => Some(IpContext::new(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Family::Ipv4.vrrp_group(),
        )),
        _ => None,
    };
    let verdict = match ip {
        Some(ip) => match packet::decode(&message, &ip) {
            Ok(received) => Verdict::Ok(received),
            Err(err) => verdict_of(&err),
        },
        None => match packet::decode_unverified(&message, family.unwrap_or(Family::Ipv4)) {
            Ok((advert, _)) => Verdict::Unverified(advert),
            Err(err) => verdict_of(&err),
        },
    };
    // Unknown addresses are not shown as if they had been on the wire.
    let shown_ip = given.copied();
    Outcome::Vrrp(PacketReport {
        number,
        ip: shown_ip,
        message,
        verdict,
    })
}

fn verdict_of(err: &DecodeError) -> Verdict {
    Verdict::Refused {
        kind: err.kind(),
        message: err.to_string(),
    }
}

fn refused(number: usize, ip: Option<IpContext>, message: Vec<u8>, err: &DecodeError) -> Outcome {
    Outcome::Vrrp(PacketReport {
        number,
        ip,
        message,
        verdict: verdict_of(err),
    })
}

/// Hex digits, with optional spaces, colons and a leading 0x.
fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: String = text
        .trim_start_matches("0x")
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ':')
        .collect();
    if digits.len() % 2 != 0 {
        return Err(format!("odd number of hex digits ({})", digits.len()));
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            digits
                .get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| format!("not hex at digit {}", i + 1))
        })
        .collect()
}

/// Header fields read straight from the bytes, for refused packets too.
struct RawHeader {
    version: u8,
    kind: u8,
    vrid: u8,
    priority: u8,
    count: u8,
    /// v2: seconds; v3: centiseconds.
    interval: u16,
    auth_type: Option<u8>,
    checksum: u16,
}

fn raw_header(message: &[u8]) -> Option<RawHeader> {
    let h = message.get(..8)?;
    let version = h[0] >> 4;
    Some(RawHeader {
        version,
        kind: h[0] & 0x0f,
        vrid: h[1],
        priority: h[2],
        count: h[3],
        interval: if version == 2 {
            u16::from(h[5])
        } else {
            u16::from_be_bytes([h[4], h[5]]) & 0x0fff
        },
        auth_type: (version == 2).then_some(h[4]),
        checksum: u16::from_be_bytes([h[6], h[7]]),
    })
}

fn to_json(report: &PacketReport) -> Value {
    let mut out = json!({ "frame": report.number });
    let fields = out.as_object_mut();
    let Some(fields) = fields else { return out };
    if let Some(ip) = &report.ip {
        fields.insert("src".into(), json!(ip.src.to_string()));
        fields.insert("dst".into(), json!(ip.dst.to_string()));
        fields.insert("ttl".into(), json!(ip.ttl));
    }
    if let Some(h) = raw_header(&report.message) {
        fields.insert("version".into(), json!(h.version));
        fields.insert("type".into(), json!(h.kind));
        fields.insert("vrid".into(), json!(h.vrid));
        fields.insert("priority".into(), json!(h.priority));
        fields.insert("count".into(), json!(h.count));
        fields.insert("interval".into(), json!(h.interval));
        fields.insert(
            "interval_unit".into(),
            json!(if h.version == 2 { "s" } else { "cs" }),
        );
        fields.insert("auth_type".into(), json!(h.auth_type));
        fields.insert("checksum".into(), json!(format!("{:#06x}", h.checksum)));
        fields.insert("length".into(), json!(report.message.len()));
    }
    match &report.verdict {
        Verdict::Ok(received) => {
            fields.insert("checksum_ok".into(), json!(true));
            fields.insert("checksum_form".into(), json!(received.checksum_form.name()));
            fields.insert(
                "addresses".into(),
                addresses_json(&received.advert.addresses),
            );
            fields.insert("error".into(), Value::Null);
        }
        Verdict::Unverified(advert) => {
            fields.insert("checksum_ok".into(), Value::Null);
            fields.insert("checksum_form".into(), json!("unverified"));
            fields.insert("addresses".into(), addresses_json(&advert.addresses));
            fields.insert("error".into(), Value::Null);
        }
        Verdict::Refused { kind, message } => {
            let checksum_ok = (*kind == "bad_checksum").then_some(false);
            fields.insert("checksum_ok".into(), json!(checksum_ok));
            fields.insert("checksum_form".into(), Value::Null);
            fields.insert("addresses".into(), Value::Null);
            fields.insert("error".into(), json!({ "kind": kind, "message": message }));
        }
    }
    out
}

fn addresses_json(addresses: &[IpAddr]) -> Value {
    Value::from(addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>())
}

fn to_text(report: &PacketReport) -> String {
    let mut line = format!("#{}", report.number);
    if let Some(ip) = &report.ip {
        line.push_str(&format!(" {} > {} ttl {}", ip.src, ip.dst, ip.ttl));
    }
    if let Some(h) = raw_header(&report.message) {
        let interval = if h.version == 2 {
            format!("{}s", h.interval)
        } else {
            format!("{}cs", h.interval)
        };
        line.push_str(&format!(
            " VRRPv{} vrid {} prio {} count {} int {interval}",
            h.version, h.vrid, h.priority, h.count
        ));
        if let Some(auth) = h.auth_type {
            line.push_str(&format!(" auth {auth}"));
        }
        line.push_str(&format!(" cksum {:#06x}", h.checksum));
    }
    match &report.verdict {
        Verdict::Ok(received) => {
            line.push_str(&format!(" ok ({})", received.checksum_form));
            push_addresses(&mut line, &received.advert.addresses);
            if received.advert.priority == 0 {
                line.push_str(" (releasing)");
            }
        }
        Verdict::Unverified(advert) => {
            line.push_str(" unverified (no IP header: pass --src/--dst)");
            push_addresses(&mut line, &advert.addresses);
        }
        Verdict::Refused { kind, message } => line.push_str(&format!(" ERROR {kind}: {message}")),
    }
    line
}

fn push_addresses(line: &mut String, addresses: &[IpAddr]) {
    let list: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
    line.push_str(&format!(" addrs {}", list.join(",")));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/../crates/vrrp/tests/vectors/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn reports(outcomes: &[Outcome]) -> Vec<&PacketReport> {
        outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Vrrp(r) => Some(r),
                Outcome::NotVrrp => None,
            })
            .collect()
    }

    #[test]
    fn capture_to_json() {
        let outcomes = decode_capture(&vector("s5.pcap")).unwrap();
        assert_eq!(outcomes.len(), 11);
        let vrrp = reports(&outcomes);
        assert_eq!(vrrp.len(), 6, "5 GARPs skipped");
        let third = to_json(vrrp[2]);
        assert_eq!(third["frame"], 3);
        assert_eq!(third["version"], 2);
        assert_eq!(third["type"], 1);
        assert_eq!(third["vrid"], 11);
        assert_eq!(
            third["priority"], 0,
            "the releasing master's priority-0 advert"
        );
        assert_eq!(third["count"], 1);
        assert_eq!(third["interval"], 1);
        assert_eq!(third["auth_type"], 0);
        assert_eq!(third["checksum_ok"], true);
        assert_eq!(third["checksum_form"], "message_only");
        assert_eq!(third["addresses"], json!(["198.18.0.100"]));
        assert_eq!(third["src"], "198.18.0.1");
        assert_eq!(third["dst"], "224.0.0.18");
        assert_eq!(third["ttl"], 255);
        assert_eq!(third["error"], Value::Null);
    }

    #[test]
    fn old_unicast_and_ipv6_forms() {
        let s3c = decode_capture(&vector("s3c.pcap")).unwrap();
        let first = to_json(reports(&s3c)[0]);
        assert_eq!(first["checksum_form"], "old_unicast");
        assert_eq!(first["interval"], 10);
        assert_eq!(first["interval_unit"], "cs");
        let s4 = decode_capture(&vector("s4.pcap")).unwrap();
        let first = to_json(reports(&s4)[0]);
        assert_eq!(first["checksum_form"], "pseudo_header");
        assert_eq!(first["addresses"], json!(["fe80::16", "2001:db8:0:a::100"]));
        let text = to_text(reports(&s4)[0]);
        assert!(
            text.starts_with("#1 fe80::ff:fe00:100 > ff02::12 ttl 255 VRRPv3 vrid 16 prio 150"),
            "{text}"
        );
    }

    #[test]
    fn hex_lines_detect_their_layer() {
        // s1 frame 1: the VRRP message, its IP packet, its Ethernet frame.
        let vrrp_v2 = "210b96010001827bc61200640000000000000000";
        let ip_v4 =
            "45c00028000300 00ff70147dc6120001e0000012210b96010001827bc61200640000000000000000"
                .replace(' ', "");
        let eth = format!("01005e0000120200000001000800{ip_v4}");
        for line in [
            vrrp_v2.to_string(),
            ip_v4.clone(),
            eth,
            format!("0x{vrrp_v2}"),
        ] {
            let Some(Outcome::Vrrp(r)) = decode_hex_line(1, &line, None) else {
                panic!("{line}: not VRRP");
            };
            let j = to_json(&r);
            assert_eq!(j["vrid"], 11, "{line}");
            assert_eq!(j["checksum_ok"], true, "{line}");
        }
        assert!(decode_hex_line(1, "  # comment", None).is_none());
        let Some(Outcome::Vrrp(bad)) = decode_hex_line(2, "21 0b 9", None) else {
            panic!()
        };
        assert_eq!(to_json(&bad)["error"]["kind"], "bad_hex");
    }

    #[test]
    fn bare_v3_needs_the_ip_layer_for_its_checksum() {
        let s3a = "310d9602000a0513c6120083c6120084";
        let Some(Outcome::Vrrp(r)) = decode_hex_line(1, s3a, None) else {
            panic!()
        };
        let j = to_json(&r);
        assert_eq!(j["checksum_ok"], Value::Null);
        assert_eq!(j["checksum_form"], "unverified");
        assert_eq!(j["addresses"], json!(["198.18.0.131", "198.18.0.132"]));
        let ip = IpContext::new("198.18.0.1".parse().unwrap(), "224.0.0.18".parse().unwrap());
        let Some(Outcome::Vrrp(r)) = decode_hex_line(1, s3a, Some(&ip)) else {
            panic!()
        };
        assert_eq!(to_json(&r)["checksum_form"], "pseudo_header");
        let wrong = IpContext::new("198.18.0.9".parse().unwrap(), "224.0.0.18".parse().unwrap());
        let Some(Outcome::Vrrp(r)) = decode_hex_line(1, s3a, Some(&wrong)) else {
            panic!()
        };
        let j = to_json(&r);
        assert_eq!(j["error"]["kind"], "bad_checksum");
        assert_eq!(j["checksum_ok"], false);
        assert_eq!(j["vrid"], 13, "header fields shown for refused packets too");
    }
}
