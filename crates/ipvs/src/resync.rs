//! A full resynchronisation of a backup's IPVS connection table.
//!
//! The kernel's master sync daemon sends a connection when its state changes and
//! then every `sync_period` packets: a backup that starts (a rebooted peer, a
//! restarted kernel) learns of an established connection only once that connection
//! has carried enough packets, and an idle one never. A fail-back to that peer
//! then finds no IPVS connection for the clients' packets and resets them.
//!
//! This module reads the master's table (`/proc/net/ip_vs_conn`, the only place the
//! kernel lists it) and encodes it in the sync protocol's version 1 messages, the
//! format the backup daemon already receives (`net/netfilter/ipvs/ip_vs_sync.c`):
//! sending them to the sync group makes the backup's kernel create every
//! connection, as if the master's daemon had sent it.

use std::net::{IpAddr, Ipv4Addr};

use crate::constants::IP_VS_CONN_F_FWD_MASK;

/// One connection of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncConn {
    /// IPPROTO_TCP or IPPROTO_UDP.
    pub protocol: u8,
    pub client: (IpAddr, u16),
    pub virtual_: (IpAddr, u16),
    pub dest: (IpAddr, u16),
    /// The protocol's state number (IP_VS_TCP_S_*; 0 for UDP).
    pub state: u16,
    /// Seconds until it expires.
    pub expires: u32,
}

/// IP_VS_CONN_F_INACTIVE: counted as an inactive connection of its destination.
const CONN_F_INACTIVE: u32 = 0x0100;
/// IP_VS_TCP_S_ESTABLISHED.
const TCP_ESTABLISHED: u16 = 1;
/// The sync protocol's version in a message header.
const SYNC_PROTO_VER: u8 = 1;
/// Header of a version 1 message.
const HEADER: usize = 8;
/// An IPv4 connection in a version 1 message (type 0, no options).
const CONN_V4: usize = 36;

/// TCP's states as `/proc/net/ip_vs_conn` names them, in IP_VS_TCP_S_* order.
const TCP_STATES: [&str; 11] = [
    "NONE",
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "SYNACK",
];

/// Why a line of the table was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnLineError {
    #[error("{0} fields, 9 expected")]
    Fields(usize),
    #[error("protocol {0:?} is not synced (TCP and UDP are)")]
    Protocol(String),
    #[error("bad {what} {value:?}")]
    Value { what: &'static str, value: String },
}

/// The connections of a `/proc/net/ip_vs_conn` text: IPv4 TCP and UDP ones that
/// are not persistence templates (client port 0). Lines of another kind are
/// counted in the second value, not returned.
pub fn parse_conn_table(text: &str) -> (Vec<SyncConn>, usize) {
    let mut conns = Vec::new();
    let mut skipped = 0;
    for line in text.lines().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        match parse_conn_line(line) {
            Ok(Some(c)) => conns.push(c),
            Ok(None) | Err(_) => skipped += 1,
        }
    }
    (conns, skipped)
}

/// One line: `Pro FromIP FPrt ToIP TPrt DestIP DPrt State Expires [PEName PEData]`,
/// addresses and ports in hexadecimal. `None` for a template or an IPv6 line.
pub fn parse_conn_line(line: &str) -> Result<Option<SyncConn>, ConnLineError> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 9 {
        return Err(ConnLineError::Fields(f.len()));
    }
    let protocol = match f[0] {
        "TCP" => libc::IPPROTO_TCP as u8,
        "UDP" => libc::IPPROTO_UDP as u8,
        other => return Err(ConnLineError::Protocol(other.to_owned())),
    };
    // IPv6 lines print addresses with colons; the resync sends IPv4 only.
    if f[1].contains(':') {
        return Ok(None);
    }
    let addr = |what, s: &str| {
        u32::from_str_radix(s, 16)
            .map(|a| IpAddr::V4(Ipv4Addr::from(a)))
            .map_err(|_| ConnLineError::Value {
                what,
                value: s.to_owned(),
            })
    };
    let port = |what, s: &str| {
        u16::from_str_radix(s, 16).map_err(|_| ConnLineError::Value {
            what,
            value: s.to_owned(),
        })
    };
    let client = (addr("client address", f[1])?, port("client port", f[2])?);
    if client.1 == 0 {
        return Ok(None); // a persistence template
    }
    let state = if protocol == libc::IPPROTO_TCP as u8 {
        TCP_STATES
            .iter()
            .position(|s| *s == f[7])
            .and_then(|i| u16::try_from(i).ok())
            .ok_or_else(|| ConnLineError::Value {
                what: "state",
                value: f[7].to_owned(),
            })?
    } else {
        0
    };
    Ok(Some(SyncConn {
        protocol,
        client,
        virtual_: (addr("virtual address", f[3])?, port("virtual port", f[4])?),
        dest: (
            addr("destination address", f[5])?,
            port("destination port", f[6])?,
        ),
        state,
        expires: f[8].parse().map_err(|_| ConnLineError::Value {
            what: "expiry",
            value: f[8].to_owned(),
        })?,
    }))
}

/// Version 1 sync messages for `conns`, each at most `max_len` bytes (the
/// daemon's sync_maxlen: the interface's MTU less the IP and UDP headers) and 255
/// connections. `forward` gives a connection's forwarding method
/// (IP_VS_CONN_F_MASQ, ...), or `None` to leave it out (its service is gone).
pub fn encode_messages(
    conns: &[SyncConn],
    sync_id: u8,
    max_len: usize,
    forward: impl Fn(&SyncConn) -> Option<u32>,
) -> Vec<Vec<u8>> {
    let per_message = ((max_len.saturating_sub(HEADER)) / CONN_V4).clamp(1, 255);
    let mut messages = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    let mut count = 0usize;
    let finish = |buf: &mut Vec<u8>, count: usize, out: &mut Vec<Vec<u8>>| {
        if count == 0 {
            return;
        }
        let len = u16::try_from(buf.len()).unwrap_or(u16::MAX);
        buf[2..4].copy_from_slice(&len.to_be_bytes());
        buf[4] = u8::try_from(count).unwrap_or(u8::MAX);
        out.push(std::mem::take(buf));
    };
    for c in conns {
        let (IpAddr::V4(caddr), IpAddr::V4(vaddr), IpAddr::V4(daddr)) =
            (c.client.0, c.virtual_.0, c.dest.0)
        else {
            continue;
        };
        let Some(fwd) = forward(c) else { continue };
        if count == 0 {
            current = vec![0, sync_id, 0, 0, 0, SYNC_PROTO_VER, 0, 0];
        }
        let mut flags = fwd & IP_VS_CONN_F_FWD_MASK;
        let tcp = c.protocol == libc::IPPROTO_TCP as u8;
        if tcp && c.state != TCP_ESTABLISHED {
            flags |= CONN_F_INACTIVE;
        }
        current.push(0); // type: IPv4
        current.push(c.protocol);
        current.extend_from_slice(&(CONN_V4 as u16).to_be_bytes()); // version 0, size
        current.extend_from_slice(&flags.to_be_bytes());
        current.extend_from_slice(&c.state.to_be_bytes());
        current.extend_from_slice(&c.client.1.to_be_bytes());
        current.extend_from_slice(&c.virtual_.1.to_be_bytes());
        current.extend_from_slice(&c.dest.1.to_be_bytes());
        current.extend_from_slice(&0u32.to_be_bytes()); // fwmark
        current.extend_from_slice(&c.expires.max(1).to_be_bytes()); // timeout, s
        current.extend_from_slice(&caddr.octets());
        current.extend_from_slice(&vaddr.octets());
        current.extend_from_slice(&daddr.octets());
        count += 1;
        if count == per_message {
            finish(&mut current, count, &mut messages);
            count = 0;
        }
    }
    finish(&mut current, count, &mut messages);
    messages
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData
TCP C612000A 9C40 C6120064 0050 C6120115 0050 ESTABLISHED     899
TCP C612000A 9C41 C6120064 0051 C6120116 0051 FIN_WAIT         12
UDP C612000A 1F90 C6120064 0035 C6120115 0035 UDP             288
TCP C612000A 0000 C6120064 0050 C6120115 0050 NONE            300
TCP 2001:0db8:0000:000a:0000:0000:0000:0010 9C40 2001:0db8:0000:000a:0000:0000:0000:0100 0050 2001:0db8:0000:000b:0000:0000:0000:0021 0050 ESTABLISHED     899
SCTP C612000A 9C40 C6120064 0050 C6120115 0050 ESTABLISHED     899
";

    #[test]
    fn the_table_gives_ipv4_tcp_and_udp_connections_without_templates() {
        let (conns, skipped) = parse_conn_table(TABLE);
        assert_eq!(skipped, 3, "template, IPv6, SCTP");
        assert_eq!(conns.len(), 3);
        assert_eq!(
            conns[0],
            SyncConn {
                protocol: 6,
                client: ("198.18.0.10".parse().unwrap(), 40000),
                virtual_: ("198.18.0.100".parse().unwrap(), 80),
                dest: ("198.18.1.21".parse().unwrap(), 80),
                state: 1,
                expires: 899,
            }
        );
        assert_eq!(conns[1].state, 4, "FIN_WAIT");
        assert_eq!((conns[2].protocol, conns[2].state), (17, 0));
        assert!(parse_conn_line("TCP C612000A 9C40 C6120064 0050 C6120115 0050 BOGUS 1").is_err());
        assert!(parse_conn_line("TCP C612000A").is_err());
    }

    #[test]
    fn messages_carry_the_kernel_layout_and_split_at_the_length() {
        let (conns, _) = parse_conn_table(TABLE);
        let msgs = encode_messages(&conns, 7, 1472, |c| (c.virtual_.1 != 0x35).then_some(0));
        assert_eq!(msgs.len(), 1);
        let m = &msgs[0];
        // Header: reserved 0, sync id, size, count, version 1, spare.
        assert_eq!(&m[..2], &[0, 7]);
        assert_eq!(usize::from(u16::from_be_bytes([m[2], m[3]])), m.len());
        assert_eq!((m[4], m[5]), (2, 1), "the UDP one has no service: left out");
        assert_eq!(m.len(), HEADER + 2 * CONN_V4);
        let c = &m[HEADER..HEADER + CONN_V4];
        assert_eq!((c[0], c[1]), (0, 6));
        assert_eq!(u16::from_be_bytes([c[2], c[3]]), CONN_V4 as u16);
        assert_eq!(
            u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
            0,
            "MASQ, active"
        );
        assert_eq!(u16::from_be_bytes([c[8], c[9]]), 1, "ESTABLISHED");
        assert_eq!(u16::from_be_bytes([c[10], c[11]]), 40000);
        assert_eq!(u32::from_be_bytes([c[20], c[21], c[22], c[23]]), 899);
        assert_eq!(&c[24..28], &[198, 18, 0, 10]);
        assert_eq!(&c[32..36], &[198, 18, 1, 21]);
        let fin = &m[HEADER + CONN_V4..];
        assert_eq!(
            u32::from_be_bytes([fin[4], fin[5], fin[6], fin[7]]),
            CONN_F_INACTIVE
        );

        // 100 connections in messages of at most 200 bytes: 5 per message.
        let many: Vec<SyncConn> = (0..100).map(|_| conns[0].clone()).collect();
        let msgs = encode_messages(&many, 0, 200, |_| Some(3));
        assert_eq!(msgs.len(), 20);
        assert!(msgs.iter().all(|m| m.len() <= 200 && m[4] == 5));
        assert_eq!(msgs[0][HEADER + 7], 3, "direct routing");
    }
}
