//! Golden vectors: every VRRP frame keepalived 2.2.7 sent in the captures
//! decodes to the fields tshark and the reduction script saw, its checksum
//! verifies in the form the capture README names, and it re-encodes to the
//! identical bytes.
//!
//! The captures are read from `tests/vectors/` (a copy of
//! `shared/vectors/`), or from the directory named by `LBSUITE_VECTORS`.

use std::net::IpAddr;
use std::path::PathBuf;

use serde_json::Value;
use vrrp::checksum::{self, ChecksumForm};
use vrrp::frame::{self, LinkType};
use vrrp::packet::{self, Auth, Version};
use vrrp::pcap::Capture;

/// Every capture the vectors README lists.
const CAPTURES: &[&str] = &[
    "s1", "s2", "s3a", "s3b", "s3c", "s4", "s5", "s6", "s7-linkA", "s7-linkB", "s8",
];

fn vectors_dir() -> PathBuf {
    let dir = match std::env::var_os("LBSUITE_VECTORS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors")),
    };
    assert!(
        dir.is_dir(),
        "VRRP golden vectors not found at {} (set LBSUITE_VECTORS to the shared/vectors directory)",
        dir.display()
    );
    dir
}

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex length: {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex_u16(v: &Value) -> u16 {
    let s = v.as_str().unwrap();
    u16::from_str_radix(s.trim_start_matches("0x"), 16).unwrap()
}

/// The JSON's name of a checksum form, in our terms.
fn form_of(name: &str) -> ChecksumForm {
    if name.starts_with("no_pseudo_header") {
        ChecksumForm::MessageOnly
    } else if name.starts_with("pseudo_header src,dst=224.0.0.18") {
        ChecksumForm::OldUnicast
    } else if name.starts_with("pseudo_header") {
        ChecksumForm::PseudoHeader
    } else {
        panic!("unknown checksum form name in JSON: {name}")
    }
}

struct Tally {
    vrrp: usize,
    other: usize,
    forms: Vec<ChecksumForm>,
}

fn check_capture(name: &str) -> Tally {
    let dir = vectors_dir();
    let pcap_path = dir.join(format!("{name}.pcap"));
    let json_path = dir.join(format!("{name}.json"));
    let pcap = std::fs::read(&pcap_path).unwrap_or_else(|e| panic!("{}: {e}", pcap_path.display()));
    let json: Value = serde_json::from_slice(
        &std::fs::read(&json_path).unwrap_or_else(|e| panic!("{}: {e}", json_path.display())),
    )
    .unwrap();
    let capture = Capture::parse(&pcap).unwrap();
    assert_eq!(capture.link_type, LinkType::Ethernet);
    let records: Vec<_> = capture.records().collect::<Result<_, _>>().unwrap();
    let packets = json["packets"].as_array().unwrap();
    assert_eq!(records.len(), packets.len(), "{name}: frame count");
    assert_eq!(
        json["packet_count"].as_u64().unwrap() as usize,
        records.len()
    );

    let mut tally = Tally {
        vrrp: 0,
        other: 0,
        forms: Vec::new(),
    };
    for (record, expected) in records.iter().zip(packets) {
        let at = format!("{name} frame {}", record.index);
        assert_eq!(
            expected["frame"].as_u64().unwrap() as usize,
            record.index,
            "{at}"
        );
        assert_eq!(
            record.data,
            hex(expected["frame_hex"].as_str().unwrap()),
            "{at}: JSON frame_hex"
        );

        let Some(v) = expected.get("vrrp") else {
            let err = frame::decode_frame(capture.link_type, record.data).unwrap_err();
            assert!(err.is_not_vrrp(), "{at}: non-VRRP frame gave {err}");
            tally.other += 1;
            continue;
        };
        tally.vrrp += 1;
        let got = frame::decode_frame(capture.link_type, record.data)
            .unwrap_or_else(|e| panic!("{at}: {e} ({})", e.kind()));
        let advert = &got.advert;

        // Header fields.
        let version = v["version"].as_u64().unwrap();
        assert_eq!(advert.version.number() as u64, version, "{at}: version");
        assert_eq!(v["type"].as_u64().unwrap(), 1, "{at}: type");
        assert_eq!(
            advert.vrid as u64,
            v["vrid"].as_u64().unwrap(),
            "{at}: vrid"
        );
        assert_eq!(
            advert.priority as u64,
            v["priority"].as_u64().unwrap(),
            "{at}: priority"
        );
        assert_eq!(
            advert.addresses.len() as u64,
            v["count_addrs"].as_u64().unwrap(),
            "{at}: count"
        );
        let addresses: Vec<IpAddr> = v["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().parse().unwrap())
            .collect();
        assert_eq!(advert.addresses, addresses, "{at}: addresses");
        assert_eq!(got.checksum, hex_u16(&v["checksum"]), "{at}: checksum");
        match advert.version {
            Version::V2 => {
                assert_eq!(
                    advert.interval_cs as u64,
                    v["adver_int_s"].as_u64().unwrap() * 100,
                    "{at}"
                );
                assert_eq!(
                    advert.auth.type_code() as u64,
                    v["auth_type"].as_u64().unwrap(),
                    "{at}"
                );
                let auth_data = hex(v["auth_data_hex"].as_str().unwrap());
                match &advert.auth {
                    Auth::None => assert_eq!(auth_data, [0; 8], "{at}: type 0 auth data"),
                    Auth::SimplePassword(p) => {
                        assert_eq!(p[..], auth_data[..], "{at}: password");
                        assert_eq!(p, b"secret12", "{at}: password");
                    }
                }
            }
            Version::V3 => {
                assert_eq!(
                    advert.interval_cs as u64,
                    v["max_adver_int_cs"].as_u64().unwrap(),
                    "{at}"
                );
                assert_eq!(advert.auth, Auth::None);
            }
        }

        // IP layer.
        let ip_json = expected.get("ip").or_else(|| expected.get("ipv6")).unwrap();
        assert_eq!(
            got.ip.src,
            ip_json["src"].as_str().unwrap().parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            got.ip.dst,
            ip_json["dst"].as_str().unwrap().parse::<IpAddr>().unwrap()
        );
        assert_eq!(got.ip.ttl, 255);

        // Checksum: the form we report is one the capture's own analysis
        // found matching, and every computed form agrees with ours.
        let matching: Vec<ChecksumForm> = v["checksum_forms_matching_wire"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| form_of(n.as_str().unwrap()))
            .collect();
        assert!(
            matching.contains(&got.checksum_form),
            "{at}: reported {} not among {matching:?}",
            got.checksum_form
        );
        let payload = hex(expected["vrrp_payload_hex"].as_str().unwrap());
        assert_eq!(payload.len() as u64, v["length"].as_u64().unwrap());
        for (form_name, value) in v["checksum_forms_computed"].as_object().unwrap() {
            // IPv6 has a "no_pseudo_header" entry too: the message-only sum.
            let form = form_of(form_name);
            assert_eq!(
                checksum::vrrp_checksum(&payload, form, got.ip.src, got.ip.dst),
                hex_u16(value),
                "{at}: computed {form_name}"
            );
        }
        tally.forms.push(got.checksum_form);

        // A physical NIC pads to 60 bytes (+ FCS): the IP length bounds the message.
        let mut padded = record.data.to_vec();
        padded.resize(padded.len().max(60), 0);
        padded.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(
            frame::decode_frame(capture.link_type, &padded).as_ref(),
            Ok(&got),
            "{at}: padded"
        );

        // Re-encode to the very bytes on the wire, bare and inside IP.
        let wire = packet::encode(advert, &got.ip, got.checksum_form).unwrap();
        assert_eq!(wire, payload, "{at}: re-encoded payload");
        let ip_packet = frame::ip_from_ethernet(record.data).unwrap();
        let rebuilt = frame::encode_ip(advert, &got.ip, got.checksum_form).unwrap();
        assert_eq!(rebuilt.len(), ip_packet.len(), "{at}: IP packet length");
        assert_eq!(&rebuilt[rebuilt.len() - payload.len()..], &payload[..]);
    }
    assert!(tally.vrrp > 0, "{name}: no VRRP packet found");
    eprintln!(
        "{name}: {} VRRP packets ({:?}), {} other frames",
        tally.vrrp,
        tally.forms.first(),
        tally.other
    );
    tally
}

#[test]
fn every_capture_decodes_and_reencodes() {
    let mut vrrp = 0;
    for name in CAPTURES {
        vrrp += check_capture(name).vrrp;
    }
    assert_eq!(vrrp, 66, "VRRP packets across all captures");
}

#[test]
fn checksum_forms_per_capture() {
    let only = |name: &str| {
        let forms = check_capture(name).forms;
        let first = forms[0];
        assert!(
            forms.iter().all(|f| *f == first),
            "{name}: mixed forms {forms:?}"
        );
        first
    };
    for v2 in ["s1", "s2", "s5", "s7-linkA", "s7-linkB"] {
        assert_eq!(only(v2), ChecksumForm::MessageOnly, "{v2}");
    }
    // keepalived 2.2.7 uses the RFC 5798 pseudo-header for v3 over IPv4,
    // multicast and unicast alike.
    for v3 in ["s3a", "s3b", "s4", "s8"] {
        assert_eq!(only(v3), ChecksumForm::PseudoHeader, "{v3}");
    }
    assert_eq!(only("s3c"), ChecksumForm::OldUnicast);
}

#[test]
fn s3c_verifies_only_as_old_unicast() {
    let dir = vectors_dir();
    let json: Value =
        serde_json::from_slice(&std::fs::read(dir.join("s3c.json")).unwrap()).unwrap();
    for p in json["packets"].as_array().unwrap() {
        let payload = hex(p["vrrp_payload_hex"].as_str().unwrap());
        let src: IpAddr = p["ip"]["src"].as_str().unwrap().parse().unwrap();
        let dst: IpAddr = p["ip"]["dst"].as_str().unwrap().parse().unwrap();
        assert!(checksum::verify(
            &payload,
            ChecksumForm::OldUnicast,
            src,
            dst
        ));
        assert!(!checksum::verify(
            &payload,
            ChecksumForm::PseudoHeader,
            src,
            dst
        ));
        assert!(!checksum::verify(
            &payload,
            ChecksumForm::MessageOnly,
            src,
            dst
        ));
    }
}

#[test]
fn corrupted_golden_frames_are_refused() {
    let dir = vectors_dir();
    let pcap = std::fs::read(dir.join("s4.pcap")).unwrap();
    let capture = Capture::parse(&pcap).unwrap();
    let record = capture.records().next().unwrap().unwrap();
    let mut frame = record.data.to_vec();
    // IPv6 hop limit (Ethernet 14 + 7) lowered: the RFC's TTL check.
    frame[21] = 254;
    let err = frame::decode_frame(LinkType::Ethernet, &frame).unwrap_err();
    assert_eq!(err.kind(), "bad_ttl");
    // Flow label changed: must not matter (the kernel picks it at random).
    let mut frame = record.data.to_vec();
    frame[15] ^= 0x0f;
    frame[16] ^= 0xff;
    assert!(frame::decode_frame(LinkType::Ethernet, &frame).is_ok());
    // Source address changed: the IPv6 pseudo-header no longer matches.
    let mut frame = record.data.to_vec();
    frame[14 + 8 + 15] ^= 1;
    let err = frame::decode_frame(LinkType::Ethernet, &frame).unwrap_err();
    assert_eq!(err.kind(), "bad_checksum");
}
