//! DNS over UDP: ask for the A record of a name, expect a reply with our id
//! and RCODE 0. A tiny encoder, not a resolver: only the header is judged.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::UdpSocket;

use crate::check::tcp::{check_family, io_reason};
use crate::jitter::SplitMix64;
use crate::outcome::FailReason;

const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
/// Recursion desired; every other flag zero (a standard query).
const FLAGS_RD: u16 = 0x0100;

/// Header and question of a query for the A record of `name`.
///
/// ```text
///  0  1  2  3  4  5  6  7  8  9 10 11 12 13 14 15
/// +--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+
/// |                      ID                       |
/// |QR|   Opcode  |AA|TC|RD|RA|   Z    |   RCODE   |
/// |                    QDCOUNT                    |
/// |            ANCOUNT, NSCOUNT, ARCOUNT          |
/// +--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+
/// QNAME (length-prefixed labels, then 0), QTYPE, QCLASS   (RFC 1035 §4.1)
/// ```
pub fn encode_query(id: u16, name: &str) -> Result<Vec<u8>, FailReason> {
    let mut out = Vec::with_capacity(18 + name.len());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&FLAGS_RD.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&[0; 6]);
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    let qname_start = out.len();
    if !trimmed.is_empty() {
        for label in trimmed.split('.') {
            let len = u8::try_from(label.len())
                .ok()
                .filter(|l| (1..=63).contains(l))
                .ok_or_else(|| {
                    FailReason::Config(format!("DNS name {name:?}: labels must be 1..=63 bytes"))
                })?;
            out.push(len);
            out.extend_from_slice(label.as_bytes());
        }
    }
    out.push(0);
    if out.len() - qname_start > 255 {
        return Err(FailReason::Config(format!(
            "DNS name {name:?} is longer than 255 bytes"
        )));
    }
    out.extend_from_slice(&TYPE_A.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(out)
}

/// What a datagram says about our query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyVerdict {
    /// Not a reply to our query (other id, not a response, too short): ignored.
    NotOurs,
    /// Our reply, with this RCODE.
    Rcode(u8),
}

/// Judge a datagram against the query id.
pub fn judge_reply(id: u16, datagram: &[u8]) -> ReplyVerdict {
    match datagram {
        [a, b, flags_hi, flags_lo, ..] if datagram.len() >= 12 => {
            let is_response = flags_hi & 0x80 != 0;
            if u16::from_be_bytes([*a, *b]) != id || !is_response {
                ReplyVerdict::NotOurs
            } else {
                ReplyVerdict::Rcode(flags_lo & 0x0f)
            }
        }
        _ => ReplyVerdict::NotOurs,
    }
}

/// A fresh query id: unpredictable enough that a stray reply does not match.
fn next_id() -> u16 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let v = SplitMix64::new(n ^ (u64::from(t) << 20)).next_u64();
    // Keep the low 16 bits: truncation is the point.
    (v & 0xffff) as u16
}

/// Query `addr` for `name`; wait (the caller bounds the time) for our reply.
pub(crate) async fn probe(
    addr: SocketAddr,
    source: Option<IpAddr>,
    name: &str,
) -> Result<(), FailReason> {
    let id = next_id();
    let query = encode_query(id, name)?;
    let local = match (source, addr) {
        (Some(src), _) => {
            check_family(src, addr)?;
            src
        }
        (None, SocketAddr::V4(_)) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        (None, SocketAddr::V6(_)) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let socket = UdpSocket::bind(SocketAddr::new(local, 0))
        .await
        .map_err(io_reason)?;
    // Connected: the kernel drops datagrams from other peers, and an ICMP port
    // unreachable comes back as ECONNREFUSED.
    socket.connect(addr).await.map_err(io_reason)?;
    socket.send(&query).await.map_err(io_reason)?;
    let mut buf = [0u8; 512];
    loop {
        let n = socket.recv(&mut buf).await.map_err(io_reason)?;
        match judge_reply(id, &buf[..n]) {
            ReplyVerdict::NotOurs => continue,
            ReplyVerdict::Rcode(0) => return Ok(()),
            ReplyVerdict::Rcode(r) => return Err(FailReason::DnsRcode(r)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_bytes() {
        let q = encode_query(0x1234, "example.org.").unwrap();
        let mut want = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        want.extend_from_slice(b"\x07example\x03org\x00\x00\x01\x00\x01");
        assert_eq!(q, want);
        assert_eq!(encode_query(1, "example.org").unwrap(), {
            let mut w = want.clone();
            w[0] = 0;
            w[1] = 1;
            w
        });
    }

    #[test]
    fn root_and_bad_names() {
        assert_eq!(
            &encode_query(0, ".").unwrap()[12..],
            b"\x00\x00\x01\x00\x01"
        );
        assert!(encode_query(0, "a..b").is_err());
        assert!(encode_query(0, &"x".repeat(64)).is_err());
        let long = vec!["a".repeat(63); 4].join(".");
        assert!(encode_query(0, &long).is_err());
    }

    #[test]
    fn replies_are_judged_by_id_qr_and_rcode() {
        let mut r = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
        assert_eq!(judge_reply(0x1234, &r), ReplyVerdict::Rcode(0));
        assert_eq!(judge_reply(0x1235, &r), ReplyVerdict::NotOurs);
        r[3] = 0x83;
        assert_eq!(judge_reply(0x1234, &r), ReplyVerdict::Rcode(3));
        r[2] = 0x01;
        assert_eq!(judge_reply(0x1234, &r), ReplyVerdict::NotOurs);
        assert_eq!(judge_reply(0x1234, &r[..11]), ReplyVerdict::NotOurs);
    }
}
