//! `vrrpctl decode`: decode VRRP packets from a pcap capture, or hex lines
//! on stdin, with the same codec and checks as vrrpd.

use std::collections::{BTreeMap, HashMap};
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
use vrrp::pcap::{Capture, Record};

/// Arguments of `vrrpctl decode`.
#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// Classic pcap capture to read (Ethernet, raw IP, Linux cooked v1 or v2 as
    /// `tcpdump -i any` writes). Each VRRP packet is shown with its time, the time
    /// since the first frame, and the gap since the previous VRRP packet of the
    /// same VRID; other frames are skipped and counted. Without it, hex packets
    /// are read from stdin, one per line: a bare VRRP message, an IPv4/IPv6
    /// packet or an Ethernet frame (told apart by the first byte).
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
    /// Not VRRP (or not telling): skipped, counted by reason.
    Skipped(Skip),
    /// A VRRP packet (decoded, refused by a check, or cut by the capture).
    Vrrp(PacketReport),
}

/// Why a frame is not shown: none of these is a VRRP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Skip {
    /// Not IP (ARP, ...), or another IP protocol (NDP, UDP, ...).
    Other,
    /// A fragment of another protocol's packet.
    Fragment,
    /// Another protocol's IPv4 packet whose header checksum does not verify.
    BadIpChecksum,
    /// Cut by the capture's snapshot length before its protocol or its IP
    /// header could be read whole.
    Snapped,
    /// Too short or damaged to tell its protocol.
    Malformed,
}

impl Skip {
    fn label(self) -> &'static str {
        match self {
            Skip::Other => "other protocols",
            Skip::Fragment => "fragments",
            Skip::BadIpChecksum => "bad IPv4 header checksum",
            Skip::Snapped => "cut by the snapshot length",
            Skip::Malformed => "malformed",
        }
    }
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
    /// The capture kept only part of it (snapshot length): not checkable.
    Incomplete(Snapped),
}

/// A frame the capture kept only part of: its bytes kept and on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Snapped {
    captured: usize,
    on_wire: u32,
}

/// When a frame was captured: seconds since the Unix epoch and nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Timestamp {
    secs: i64,
    nanos: u32,
}

impl Timestamp {
    fn of(record: &Record<'_>) -> Timestamp {
        Timestamp {
            secs: i64::from(record.ts_sec),
            nanos: record.ts_nanos,
        }
    }

    fn total_nanos(self) -> i128 {
        i128::from(self.secs) * 1_000_000_000 + i128::from(self.nanos)
    }

    /// Seconds from `earlier` to this one (negative if it is later).
    fn since(self, earlier: Timestamp) -> f64 {
        (self.total_nanos() - earlier.total_nanos()) as f64 / 1e9
    }

    fn epoch_seconds(self) -> f64 {
        self.total_nanos() as f64 / 1e9
    }

    /// ISO 8601 in UTC, with microseconds or nanoseconds as the capture has.
    fn iso(self, nanos: bool) -> String {
        let days = self.secs.div_euclid(86_400);
        let of_day = self.secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let (h, min, s) = (of_day / 3600, of_day / 60 % 60, of_day % 60);
        let fraction = if nanos {
            format!("{:09}", self.nanos)
        } else {
            format!("{:06}", self.nanos / 1000)
        };
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{fraction}Z")
    }
}

/// The proleptic Gregorian date of a day number (days since 1970-01-01), after
/// Howard Hinnant's `civil_from_days`.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

/// A packet's time, relative to the first frame and to the previous VRRP
/// packet of its VRID.
#[derive(Debug, Clone, Copy)]
struct Timing {
    at: Timestamp,
    relative: f64,
    vrid_gap: Option<f64>,
}

/// Prints packets as they come and counts them.
struct Printer<W: Write> {
    out: W,
    json: bool,
    nanos: bool,
    first: Option<Timestamp>,
    /// The last VRRP packet of each (IPv6?, VRID).
    last_of_vrid: HashMap<(Option<bool>, u8), Timestamp>,
    frames: usize,
    vrrp: usize,
    refused: usize,
    incomplete: usize,
    skipped: BTreeMap<Skip, usize>,
}

impl<W: Write> Printer<W> {
    fn new(out: W, json: bool, nanos: bool) -> Self {
        Printer {
            out,
            json,
            nanos,
            first: None,
            last_of_vrid: HashMap::new(),
            frames: 0,
            vrrp: 0,
            refused: 0,
            incomplete: 0,
            skipped: BTreeMap::new(),
        }
    }

    /// Counts and prints one frame or line (`time`: a capture's).
    fn frame(&mut self, time: Option<Timestamp>, outcome: Outcome) -> std::io::Result<()> {
        self.frames += 1;
        if self.first.is_none() {
            self.first = time;
        }
        let report = match outcome {
            Outcome::Skipped(why) => {
                *self.skipped.entry(why).or_default() += 1;
                return Ok(());
            }
            Outcome::Vrrp(report) => report,
        };
        self.vrrp += 1;
        match report.verdict {
            Verdict::Refused { .. } => self.refused += 1,
            Verdict::Incomplete(_) => self.incomplete += 1,
            Verdict::Ok(_) | Verdict::Unverified(_) => {}
        }
        let timing = time.zip(self.first).map(|(at, first)| {
            let vrid_gap = raw_header(&report.message).and_then(|h| {
                let key = (report.ip.map(|ip| ip.src.is_ipv6()), h.vrid);
                self.last_of_vrid.insert(key, at).map(|last| at.since(last))
            });
            Timing {
                at,
                relative: at.since(first),
                vrid_gap,
            }
        });
        let line = if self.json {
            to_json(&report, timing.as_ref(), self.nanos).to_string()
        } else {
            to_text(&report, timing.as_ref(), self.nanos)
        };
        writeln!(self.out, "{line}")
    }

    /// The closing line, for stderr.
    fn summary(&self) -> String {
        let mut vrrp = format!("{} refused", self.refused);
        if self.incomplete > 0 {
            vrrp.push_str(&format!(", {} cut by the snapshot length", self.incomplete));
        }
        let skipped: usize = self.skipped.values().sum();
        let mut line = format!(
            "{} frames: {} VRRP ({vrrp}), {skipped} non-VRRP skipped",
            self.frames, self.vrrp
        );
        let unusual: Vec<String> = self
            .skipped
            .iter()
            .filter(|(why, _)| **why != Skip::Other)
            .map(|(why, n)| format!("{n} {}", why.label()))
            .collect();
        if !unusual.is_empty() {
            line.push_str(&format!(" (of which {})", unusual.join(", ")));
        }
        line
    }
}

/// Decodes every packet; prints one line each on stdout and a summary on
/// stderr. Exits 0 when every VRRP packet passed (or was cut by the capture),
/// 1 when any was refused. A capture that ends inside a record is an error,
/// after the complete frames before it are printed.
pub fn run(args: DecodeArgs) -> anyhow::Result<i32> {
    match &args.file {
        Some(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let capture =
                Capture::parse(&bytes).with_context(|| format!("reading {}", path.display()))?;
            let stdout = std::io::stdout().lock();
            let mut printer = Printer::new(stdout, args.json, capture.nanosecond_timestamps());
            let mut damaged = None;
            for record in capture.records() {
                let record = match record {
                    Ok(r) => r,
                    Err(err) => {
                        damaged = Some(err);
                        break;
                    }
                };
                let on_wire = usize::try_from(record.orig_len).unwrap_or(usize::MAX);
                let snapped = (record.data.len() < on_wire).then_some(Snapped {
                    captured: record.data.len(),
                    on_wire: record.orig_len,
                });
                let outcome = decode_link(record.index, capture.link_type, record.data, snapped);
                if !printed(printer.frame(Some(Timestamp::of(&record)), outcome))? {
                    return Ok(0);
                }
            }
            eprintln!("{}", printer.summary());
            if let Some(err) = damaged {
                let shown = printer.frames;
                return Err(anyhow::Error::new(err)).with_context(|| {
                    format!(
                        "reading {} (the {shown} complete frame(s) before it are shown)",
                        path.display()
                    )
                });
            }
            Ok(i32::from(printer.refused > 0))
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
            let stdout = std::io::stdout().lock();
            let mut printer = Printer::new(stdout, args.json, false);
            for (i, line) in lines.iter().enumerate() {
                if let Some(outcome) = decode_hex_line(i + 1, line, bare_ip.as_ref()) {
                    if !printed(printer.frame(None, outcome))? {
                        return Ok(0);
                    }
                }
            }
            eprintln!("{}", printer.summary());
            Ok(i32::from(printer.refused > 0))
        }
    }
}

/// Whether to go on after writing a line: not when the reader left (`| head`).
fn printed(result: std::io::Result<()>) -> anyhow::Result<bool> {
    match result {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(err) => Err(err).context("writing to stdout"),
    }
}

/// Decodes one link-layer frame; `snapped`: its length on the wire, when the
/// capture kept less.
fn decode_link(number: usize, link: LinkType, data: &[u8], snapped: Option<Snapped>) -> Outcome {
    match frame::ip_from_link(link, data) {
        Ok(ip_packet) => decode_ip_packet(number, ip_packet, snapped),
        Err(err) if err.is_not_vrrp() => Outcome::Skipped(Skip::Other),
        Err(_) if snapped.is_some() => Outcome::Skipped(Skip::Snapped),
        Err(_) => Outcome::Skipped(Skip::Malformed),
    }
}

/// Decodes one IP packet. Only a packet whose protocol is VRRP is one, damaged
/// or not; anything else is skipped with the reason it would have been refused.
fn decode_ip_packet(number: usize, bytes: &[u8], snapped: Option<Snapped>) -> Outcome {
    let protocol = frame::ip_protocol(bytes);
    if protocol != Some(IPPROTO_VRRP) {
        return Outcome::Skipped(skip_reason(bytes, protocol.is_some(), snapped.is_some()));
    }
    let ip_packet = match frame::parse_ip(bytes) {
        Ok(p) => p,
        Err(err) => {
            let verdict = match snapped {
                Some(cut) => Verdict::Incomplete(cut),
                None => verdict_of(&err),
            };
            return Outcome::Vrrp(PacketReport {
                number,
                ip: peek_ip(bytes),
                message: raw_message(bytes),
                verdict,
            });
        }
    };
    let message = ip_packet.payload.to_vec();
    let verdict = match packet::decode(&message, &ip_packet.ip) {
        Ok(received) => Verdict::Ok(received),
        Err(err) => match snapped {
            Some(cut) => Verdict::Incomplete(cut),
            None => verdict_of(&err),
        },
    };
    Outcome::Vrrp(PacketReport {
        number,
        ip: Some(ip_packet.ip),
        message,
        verdict,
    })
}

/// Why a packet that is not (or cannot be told to be) VRRP is skipped.
fn skip_reason(bytes: &[u8], protocol_known: bool, snapped: bool) -> Skip {
    if !protocol_known {
        return if snapped {
            Skip::Snapped
        } else {
            Skip::Malformed
        };
    }
    match frame::parse_ip(bytes) {
        Ok(_) => Skip::Other,
        Err(DecodeError::Fragmented) => Skip::Fragment,
        Err(DecodeError::BadIpChecksum) => Skip::BadIpChecksum,
        Err(_) if snapped => Skip::Snapped,
        Err(_) => Skip::Malformed,
    }
}

/// Addresses and TTL from an IP header that did not parse whole.
fn peek_ip(bytes: &[u8]) -> Option<IpContext> {
    match bytes.first()? >> 4 {
        4 => {
            let h = bytes.get(..20)?;
            let mut ip = IpContext::new(
                IpAddr::from([h[12], h[13], h[14], h[15]]),
                IpAddr::from([h[16], h[17], h[18], h[19]]),
            );
            ip.ttl = h[8];
            Some(ip)
        }
        6 => {
            let h = bytes.get(..40)?;
            let mut src = [0u8; 16];
            src.copy_from_slice(&h[8..24]);
            let mut dst = [0u8; 16];
            dst.copy_from_slice(&h[24..40]);
            let mut ip = IpContext::new(IpAddr::from(src), IpAddr::from(dst));
            ip.ttl = h[7];
            Some(ip)
        }
        _ => None,
    }
}

/// What follows the fixed IP header (IPv4 options skipped), bounded by the
/// IP length when the bytes reach it: the VRRP message as far as it is there.
fn raw_message(bytes: &[u8]) -> Vec<u8> {
    let (start, end) = match bytes.first().map(|b| b >> 4) {
        Some(4) => {
            let ihl = usize::from(bytes[0] & 0x0f) * 4;
            let total = bytes
                .get(2..4)
                .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
            (ihl, total)
        }
        Some(6) => {
            let payload = bytes
                .get(4..6)
                .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
            (40, 40 + payload)
        }
        _ => return Vec::new(),
    };
    let end = end.min(bytes.len());
    bytes
        .get(start..end)
        .map(<[u8]>::to_vec)
        .unwrap_or_default()
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
        Some(b) if b >> 4 == 4 || b >> 4 == 6 => decode_ip_packet(number, &bytes, None),
        _ => decode_link(number, LinkType::Ethernet, &bytes, None),
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

fn to_json(report: &PacketReport, timing: Option<&Timing>, nanos: bool) -> Value {
    let mut out = json!({ "frame": report.number });
    let fields = out.as_object_mut();
    let Some(fields) = fields else { return out };
    // Times as tshark has them: frame.time (UTC here), frame.time_epoch,
    // frame.time_relative; and the gap since the VRID's previous packet.
    fields.insert("time".into(), json!(timing.map(|t| t.at.iso(nanos))));
    fields.insert(
        "time_epoch_s".into(),
        json!(timing.map(|t| t.at.epoch_seconds())),
    );
    fields.insert("time_relative_s".into(), json!(timing.map(|t| t.relative)));
    fields.insert("vrid_gap_s".into(), json!(timing.and_then(|t| t.vrid_gap)));
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
    let status = match report.verdict {
        Verdict::Ok(_) => "ok",
        Verdict::Unverified(_) => "unverified",
        Verdict::Refused { .. } => "refused",
        Verdict::Incomplete(_) => "incomplete",
    };
    fields.insert("status".into(), json!(status));
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
        Verdict::Incomplete(Snapped { captured, on_wire }) => {
            fields.insert("checksum_ok".into(), Value::Null);
            fields.insert("checksum_form".into(), Value::Null);
            fields.insert("addresses".into(), Value::Null);
            fields.insert("error".into(), Value::Null);
            fields.insert(
                "incomplete".into(),
                json!({ "captured": captured, "on_wire": on_wire }),
            );
        }
    }
    out
}

fn addresses_json(addresses: &[IpAddr]) -> Value {
    Value::from(addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>())
}

/// Seconds with the capture's resolution.
fn seconds(value: f64, nanos: bool) -> String {
    if nanos {
        format!("{value:.9}s")
    } else {
        format!("{value:.6}s")
    }
}

fn to_text(report: &PacketReport, timing: Option<&Timing>, nanos: bool) -> String {
    let mut line = format!("#{}", report.number);
    if let Some(t) = timing {
        line.push_str(&format!(
            " {} +{}",
            t.at.iso(nanos),
            seconds(t.relative, nanos)
        ));
    }
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
    if let Some(gap) = timing.and_then(|t| t.vrid_gap) {
        line.push_str(&format!(" gap {}", seconds(gap, nanos)));
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
        Verdict::Incomplete(Snapped { captured, on_wire }) => line.push_str(&format!(
            " INCOMPLETE: cut by the snapshot length ({captured} of {on_wire} bytes of the \
             frame captured), not checked"
        )),
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

    fn decode_capture(bytes: &[u8]) -> Result<Vec<Outcome>, vrrp::pcap::PcapError> {
        let capture = Capture::parse(bytes)?;
        capture
            .records()
            .map(|r| r.map(|r| decode_link(r.index, capture.link_type, r.data, None)))
            .collect()
    }

    fn reports(outcomes: &[Outcome]) -> Vec<&PacketReport> {
        outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Vrrp(r) => Some(r),
                Outcome::Skipped(_) => None,
            })
            .collect()
    }

    #[test]
    fn timestamps_in_utc() {
        let t = |secs, nanos| Timestamp { secs, nanos };
        assert_eq!(t(0, 0).iso(false), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            t(1_700_000_000, 123_456_789).iso(false),
            "2023-11-14T22:13:20.123456Z"
        );
        assert_eq!(
            t(1_700_000_000, 123_456_789).iso(true),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(t(951_782_400, 0).iso(false), "2000-02-29T00:00:00.000000Z");
        assert_eq!(
            t(4_107_542_399, 0).iso(false),
            "2100-02-28T23:59:59.000000Z"
        );
        assert!((t(2, 250_000_000).since(t(1, 500_000_000)) - 0.75).abs() < 1e-12);
    }

    #[test]
    fn capture_to_json() {
        let outcomes = decode_capture(&vector("s5.pcap")).unwrap();
        assert_eq!(outcomes.len(), 11);
        let vrrp = reports(&outcomes);
        assert_eq!(vrrp.len(), 6, "5 GARPs skipped");
        let third = to_json(vrrp[2], None, false);
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
        let first = to_json(reports(&s3c)[0], None, false);
        assert_eq!(first["checksum_form"], "old_unicast");
        assert_eq!(first["interval"], 10);
        assert_eq!(first["interval_unit"], "cs");
        let s4 = decode_capture(&vector("s4.pcap")).unwrap();
        let first = to_json(reports(&s4)[0], None, false);
        assert_eq!(first["checksum_form"], "pseudo_header");
        assert_eq!(first["addresses"], json!(["fe80::16", "2001:db8:0:a::100"]));
        let text = to_text(reports(&s4)[0], None, false);
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
            let j = to_json(&r, None, false);
            assert_eq!(j["vrid"], 11, "{line}");
            assert_eq!(j["checksum_ok"], true, "{line}");
        }
        assert!(decode_hex_line(1, "  # comment", None).is_none());
        let Some(Outcome::Vrrp(bad)) = decode_hex_line(2, "21 0b 9", None) else {
            panic!()
        };
        assert_eq!(to_json(&bad, None, false)["error"]["kind"], "bad_hex");
    }

    #[test]
    fn bare_v3_needs_the_ip_layer_for_its_checksum() {
        let s3a = "310d9602000a0513c6120083c6120084";
        let Some(Outcome::Vrrp(r)) = decode_hex_line(1, s3a, None) else {
            panic!()
        };
        let j = to_json(&r, None, false);
        assert_eq!(j["checksum_ok"], Value::Null);
        assert_eq!(j["checksum_form"], "unverified");
        assert_eq!(j["addresses"], json!(["198.18.0.131", "198.18.0.132"]));
        let ip = IpContext::new("198.18.0.1".parse().unwrap(), "224.0.0.18".parse().unwrap());
        let Some(Outcome::Vrrp(r)) = decode_hex_line(1, s3a, Some(&ip)) else {
            panic!()
        };
        assert_eq!(to_json(&r, None, false)["checksum_form"], "pseudo_header");
        let wrong = IpContext::new("198.18.0.9".parse().unwrap(), "224.0.0.18".parse().unwrap());
        let Some(Outcome::Vrrp(r)) = decode_hex_line(1, s3a, Some(&wrong)) else {
            panic!()
        };
        let j = to_json(&r, None, false);
        assert_eq!(j["error"]["kind"], "bad_checksum");
        assert_eq!(j["checksum_ok"], false);
        assert_eq!(j["vrid"], 13, "header fields shown for refused packets too");
    }
}
