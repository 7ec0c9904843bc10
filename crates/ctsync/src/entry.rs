//! A conntrack entry as ctnetlink carries it, and its attribute encoding.
//!
//! Attribute layout (linux/netfilter/nfnetlink_conntrack.h), integers big-endian:
//! ```text
//! CTA_TUPLE_ORIG / CTA_TUPLE_REPLY (nested)
//!   CTA_TUPLE_IP (nested): CTA_IP_V4_SRC/DST (4 bytes) | CTA_IP_V6_SRC/DST (16 bytes)
//!   CTA_TUPLE_PROTO (nested): CTA_PROTO_NUM (u8), CTA_PROTO_SRC_PORT/DST_PORT (be16)
//!                             | CTA_PROTO_ICMP[V6]_ID (be16), _TYPE (u8), _CODE (u8)
//! CTA_STATUS (be32)  CTA_TIMEOUT (be32, seconds)  CTA_MARK (be32)  CTA_ZONE (be16)
//! CTA_PROTOINFO (nested) / CTA_PROTOINFO_TCP (nested):
//!   _STATE (u8), _WSCALE_ORIGINAL/_REPLY (u8), _FLAGS_ORIGINAL/_REPLY ({u8 flags, u8 mask})
//! CTA_NAT_SRC / CTA_NAT_DST (nested, create only):
//!   CTA_NAT_V4_MINIP/MAXIP | CTA_NAT_V6_MINIP/MAXIP, CTA_NAT_PROTO (nested): PORT_MIN/MAX (be16)
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::attr::{attrs, AttrWriter};

pub(crate) const CTA_TUPLE_ORIG: u16 = 1;
pub(crate) const CTA_TUPLE_REPLY: u16 = 2;
pub(crate) const CTA_STATUS: u16 = 3;
pub(crate) const CTA_PROTOINFO: u16 = 4;
pub(crate) const CTA_NAT_SRC: u16 = 6;
pub(crate) const CTA_TIMEOUT: u16 = 7;
pub(crate) const CTA_MARK: u16 = 8;
pub(crate) const CTA_ID: u16 = 12;
pub(crate) const CTA_NAT_DST: u16 = 13;
pub(crate) const CTA_ZONE: u16 = 18;

const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const CTA_PROTO_ICMP_ID: u16 = 4;
const CTA_PROTO_ICMP_TYPE: u16 = 5;
const CTA_PROTO_ICMP_CODE: u16 = 6;
const CTA_PROTO_ICMPV6_ID: u16 = 7;
const CTA_PROTO_ICMPV6_TYPE: u16 = 8;
const CTA_PROTO_ICMPV6_CODE: u16 = 9;
const CTA_PROTOINFO_TCP: u16 = 1;
const CTA_PROTOINFO_TCP_STATE: u16 = 1;
const CTA_PROTOINFO_TCP_WSCALE_ORIGINAL: u16 = 2;
const CTA_PROTOINFO_TCP_WSCALE_REPLY: u16 = 3;
const CTA_PROTOINFO_TCP_FLAGS_ORIGINAL: u16 = 4;
const CTA_PROTOINFO_TCP_FLAGS_REPLY: u16 = 5;
const CTA_NAT_V4_MINIP: u16 = 1;
const CTA_NAT_V4_MAXIP: u16 = 2;
const CTA_NAT_PROTO: u16 = 3;
const CTA_NAT_V6_MINIP: u16 = 4;
const CTA_NAT_V6_MAXIP: u16 = 5;
const CTA_PROTONAT_PORT_MIN: u16 = 1;
const CTA_PROTONAT_PORT_MAX: u16 = 2;

/// The timeout of an offloaded connection read from a dump (seconds): the least the
/// kernel keeps it while it is in a flowtable (NF_CT_DAY).
pub const OFFLOADED_TIMEOUT: u32 = 86_400;

const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_ICMPV6: u8 = 58;

/// Why a ctnetlink payload could not be read as an entry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// An attribute header claims more bytes than there are.
    #[error("malformed attribute in {what}")]
    Malformed {
        /// The attribute group being read.
        what: &'static str,
    },
    /// An attribute's payload has the wrong size.
    #[error("{what}: expected {expected} bytes, got {got}")]
    BadLength {
        /// The attribute.
        what: &'static str,
        /// Its size by the kernel header.
        expected: usize,
        /// Its size on the wire.
        got: usize,
    },
    /// A required attribute is absent.
    #[error("missing {0}")]
    Missing(&'static str),
    /// Source and destination of a tuple are of different families.
    #[error("tuple mixes IPv4 and IPv6 addresses")]
    MixedFamilies,
    /// The message is shorter than its headers.
    #[error("message truncated")]
    Truncated,
}

/// Layer-4 identity of a tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum L4 {
    /// TCP, UDP, SCTP, ...: ports.
    Ports {
        /// Source port.
        src: u16,
        /// Destination port.
        dst: u16,
    },
    /// ICMP / ICMPv6 echo and friends.
    Icmp {
        /// Identifier.
        id: u16,
        /// Type.
        kind: u8,
        /// Code.
        code: u8,
    },
    /// A protocol without layer-4 identity in the tuple.
    None,
}

/// One direction of a connection: addresses, protocol, ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tuple {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol number (6 = TCP, 17 = UDP).
    pub proto: u8,
    /// Ports or ICMP identity.
    pub l4: L4,
}

impl Tuple {
    /// A TCP tuple.
    pub fn tcp(src: IpAddr, src_port: u16, dst: IpAddr, dst_port: u16) -> Self {
        Self {
            src,
            dst,
            proto: IPPROTO_TCP,
            l4: L4::Ports {
                src: src_port,
                dst: dst_port,
            },
        }
    }

    /// The same flow seen from the other end, without NAT.
    pub fn inverted(&self) -> Self {
        let l4 = match self.l4 {
            L4::Ports { src, dst } => L4::Ports { src: dst, dst: src },
            // Echo request 8 <-> reply 0, v6 128 <-> 129; others are kept.
            L4::Icmp { id, kind, code } => L4::Icmp {
                id,
                kind: match (self.proto, kind) {
                    (IPPROTO_ICMP, 8) => 0,
                    (IPPROTO_ICMP, 0) => 8,
                    (IPPROTO_ICMPV6, 128) => 129,
                    (IPPROTO_ICMPV6, 129) => 128,
                    (_, k) => k,
                },
                code,
            },
            L4::None => L4::None,
        };
        Self {
            src: self.dst,
            dst: self.src,
            proto: self.proto,
            l4,
        }
    }

    /// Source port, if the protocol has ports.
    pub fn src_port(&self) -> Option<u16> {
        match self.l4 {
            L4::Ports { src, .. } => Some(src),
            _ => None,
        }
    }

    /// Destination port, if the protocol has ports.
    pub fn dst_port(&self) -> Option<u16> {
        match self.l4 {
            L4::Ports { dst, .. } => Some(dst),
            _ => None,
        }
    }

    /// Address family (`AF_INET` or `AF_INET6`).
    pub fn family(&self) -> u8 {
        match self.src {
            IpAddr::V4(_) => libc::AF_INET as u8,
            IpAddr::V6(_) => libc::AF_INET6 as u8,
        }
    }

    /// Encodes the attributes of a request that names an entry by this original
    /// tuple (a delete).
    pub(crate) fn encode_orig(&self) -> Vec<u8> {
        let mut w = AttrWriter::default();
        self.encode(&mut w, CTA_TUPLE_ORIG);
        w.buf
    }

    pub(crate) fn encode(&self, w: &mut AttrWriter, ty: u16) {
        let t = w.begin(ty);
        let ip = w.begin(CTA_TUPLE_IP);
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                w.put(CTA_IP_V4_SRC, &s.octets());
                w.put(CTA_IP_V4_DST, &d.octets());
            }
            (s, d) => {
                w.put(CTA_IP_V6_SRC, &to_v6(s).octets());
                w.put(CTA_IP_V6_DST, &to_v6(d).octets());
            }
        }
        w.end(ip);
        let p = w.begin(CTA_TUPLE_PROTO);
        w.put_u8(CTA_PROTO_NUM, self.proto);
        match self.l4 {
            L4::Ports { src, dst } => {
                w.put_be16(CTA_PROTO_SRC_PORT, src);
                w.put_be16(CTA_PROTO_DST_PORT, dst);
            }
            L4::Icmp { id, kind, code } if self.proto == IPPROTO_ICMPV6 => {
                w.put_be16(CTA_PROTO_ICMPV6_ID, id);
                w.put_u8(CTA_PROTO_ICMPV6_TYPE, kind);
                w.put_u8(CTA_PROTO_ICMPV6_CODE, code);
            }
            L4::Icmp { id, kind, code } => {
                w.put_be16(CTA_PROTO_ICMP_ID, id);
                w.put_u8(CTA_PROTO_ICMP_TYPE, kind);
                w.put_u8(CTA_PROTO_ICMP_CODE, code);
            }
            L4::None => {}
        }
        w.end(p);
        w.end(t);
    }

    pub(crate) fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let (mut src, mut dst, mut proto) = (None, None, None);
        let (mut sport, mut dport, mut id, mut kind, mut code) = (None, None, None, None, None);
        for a in attrs(buf) {
            let (ty, payload) = a.map_err(|_| DecodeError::Malformed { what: "tuple" })?;
            match ty {
                CTA_TUPLE_IP => {
                    for a in attrs(payload) {
                        let (ty, v) = a.map_err(|_| DecodeError::Malformed { what: "tuple ip" })?;
                        match ty {
                            CTA_IP_V4_SRC => src = Some(IpAddr::V4(Ipv4Addr::from(arr4(v, "ip")?))),
                            CTA_IP_V4_DST => dst = Some(IpAddr::V4(Ipv4Addr::from(arr4(v, "ip")?))),
                            CTA_IP_V6_SRC => src = Some(IpAddr::V6(Ipv6Addr::from(arr16(v)?))),
                            CTA_IP_V6_DST => dst = Some(IpAddr::V6(Ipv6Addr::from(arr16(v)?))),
                            _ => {}
                        }
                    }
                }
                CTA_TUPLE_PROTO => {
                    for a in attrs(payload) {
                        let (ty, v) = a.map_err(|_| DecodeError::Malformed {
                            what: "tuple proto",
                        })?;
                        match ty {
                            CTA_PROTO_NUM => proto = Some(u8_of(v, "proto num")?),
                            CTA_PROTO_SRC_PORT => sport = Some(be16(v, "src port")?),
                            CTA_PROTO_DST_PORT => dport = Some(be16(v, "dst port")?),
                            CTA_PROTO_ICMP_ID | CTA_PROTO_ICMPV6_ID => {
                                id = Some(be16(v, "icmp id")?)
                            }
                            CTA_PROTO_ICMP_TYPE | CTA_PROTO_ICMPV6_TYPE => {
                                kind = Some(u8_of(v, "icmp type")?)
                            }
                            CTA_PROTO_ICMP_CODE | CTA_PROTO_ICMPV6_CODE => {
                                code = Some(u8_of(v, "icmp code")?)
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        let src = src.ok_or(DecodeError::Missing("tuple source address"))?;
        let dst = dst.ok_or(DecodeError::Missing("tuple destination address"))?;
        if src.is_ipv4() != dst.is_ipv4() {
            return Err(DecodeError::MixedFamilies);
        }
        let proto = proto.ok_or(DecodeError::Missing("tuple protocol"))?;
        let l4 = match (sport, dport, id, kind, code) {
            (Some(src), Some(dst), ..) => L4::Ports { src, dst },
            (_, _, Some(id), Some(kind), Some(code)) => L4::Icmp { id, kind, code },
            _ => L4::None,
        };
        Ok(Self {
            src,
            dst,
            proto,
            l4,
        })
    }
}

fn to_v6(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V6(a) => a,
        IpAddr::V4(a) => a.to_ipv6_mapped(),
    }
}

/// Connection status bits (`enum ip_conntrack_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Status(pub u32);

impl Status {
    /// Expected connection (of a helper).
    pub const EXPECTED: u32 = 1 << 0;
    /// Packets have been seen both ways.
    pub const SEEN_REPLY: u32 = 1 << 1;
    /// Will not be early-dropped.
    pub const ASSURED: u32 = 1 << 2;
    /// In the main table.
    pub const CONFIRMED: u32 = 1 << 3;
    /// Source NAT applies.
    pub const SRC_NAT: u32 = 1 << 4;
    /// Destination NAT applies.
    pub const DST_NAT: u32 = 1 << 5;
    /// Sequence numbers adjusted (helpers).
    pub const SEQ_ADJUST: u32 = 1 << 6;
    /// Source NAT set up.
    pub const SRC_NAT_DONE: u32 = 1 << 7;
    /// Destination NAT set up.
    pub const DST_NAT_DONE: u32 = 1 << 8;
    /// Being destroyed.
    pub const DYING: u32 = 1 << 9;
    /// Timeout fixed by user space.
    pub const FIXED_TIMEOUT: u32 = 1 << 10;
    /// In an nftables flowtable: its packets bypass conntrack (IPS_OFFLOAD).
    pub const OFFLOAD: u32 = 1 << 14;
    /// Bits the kernel ignores or refuses from user space (IPS_UNCHANGEABLE_MASK).
    pub const UNCHANGEABLE: u32 =
        0x01 | 0x08 | 0x10 | 0x20 | 0x40 | 0x80 | 0x100 | 0x200 | 0x800 | 0x1000 | 0x4000 | 0x8000;

    /// Whether every bit of `bits` is set.
    pub fn has(self, bits: u32) -> bool {
        self.0 & bits == bits
    }
}

/// TCP connection-tracking state (`enum tcp_conntrack`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TcpState(pub u8);

impl TcpState {
    /// SYN sent.
    pub const SYN_SENT: TcpState = TcpState(1);
    /// SYN received.
    pub const SYN_RECV: TcpState = TcpState(2);
    /// Established.
    pub const ESTABLISHED: TcpState = TcpState(3);
    /// FIN wait.
    pub const FIN_WAIT: TcpState = TcpState(4);
    /// Close wait.
    pub const CLOSE_WAIT: TcpState = TcpState(5);
    /// Last ACK.
    pub const LAST_ACK: TcpState = TcpState(6);
    /// Time wait.
    pub const TIME_WAIT: TcpState = TcpState(7);
    /// Closed.
    pub const CLOSE: TcpState = TcpState(8);
}

/// `struct nf_ct_tcp_flags`: per-direction TCP tracking flags and which of them to set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TcpFlags {
    /// Flag values (IP_CT_TCP_FLAG_*).
    pub flags: u8,
    /// Which flags are meaningful.
    pub mask: u8,
}

impl TcpFlags {
    /// Window scaling seen.
    pub const WINDOW_SCALE: u8 = 0x01;
    /// SACK permitted.
    pub const SACK_PERM: u8 = 0x02;
    /// Do not check sequence numbers against the window.
    pub const BE_LIBERAL: u8 = 0x08;
    /// Every flag: the mask that sets the flags to exactly the given ones.
    pub const ALL: u8 = 0xff;
}

/// TCP protocol information (CTA_PROTOINFO_TCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TcpInfo {
    /// Tracking state.
    pub state: TcpState,
    /// Window scale of the original direction.
    pub wscale_orig: Option<u8>,
    /// Window scale of the reply direction.
    pub wscale_reply: Option<u8>,
    /// Flags of the original direction.
    pub flags_orig: Option<TcpFlags>,
    /// Flags of the reply direction.
    pub flags_reply: Option<TcpFlags>,
}

impl TcpInfo {
    /// A tracking state alone (no window scales or flags).
    pub fn in_state(state: TcpState) -> Self {
        Self {
            state,
            wscale_orig: None,
            wscale_reply: None,
            flags_orig: None,
            flags_reply: None,
        }
    }

    fn encode(&self, w: &mut AttrWriter) {
        let p = w.begin(CTA_PROTOINFO);
        let t = w.begin(CTA_PROTOINFO_TCP);
        w.put_u8(CTA_PROTOINFO_TCP_STATE, self.state.0);
        if let Some(s) = self.wscale_orig {
            w.put_u8(CTA_PROTOINFO_TCP_WSCALE_ORIGINAL, s);
        }
        if let Some(s) = self.wscale_reply {
            w.put_u8(CTA_PROTOINFO_TCP_WSCALE_REPLY, s);
        }
        // The kernel reports flags with a zero mask, and applies only the bits a
        // request's mask names: without a full mask, WINDOW_SCALE stays unset, the
        // window scales above are ignored, and a created entry tracks the windows
        // unscaled (a segment past 64 KiB of unscaled window is then INVALID).
        if let Some(f) = self.flags_orig {
            w.put(CTA_PROTOINFO_TCP_FLAGS_ORIGINAL, &[f.flags, TcpFlags::ALL]);
        }
        if let Some(f) = self.flags_reply {
            w.put(CTA_PROTOINFO_TCP_FLAGS_REPLY, &[f.flags, TcpFlags::ALL]);
        }
        w.end(t);
        w.end(p);
    }

    fn decode(buf: &[u8]) -> Result<Option<Self>, DecodeError> {
        for a in attrs(buf) {
            let (ty, payload) = a.map_err(|_| DecodeError::Malformed { what: "protoinfo" })?;
            if ty != CTA_PROTOINFO_TCP {
                continue;
            }
            let mut info = TcpInfo {
                state: TcpState(0),
                wscale_orig: None,
                wscale_reply: None,
                flags_orig: None,
                flags_reply: None,
            };
            let mut state = None;
            for a in attrs(payload) {
                let (ty, v) = a.map_err(|_| DecodeError::Malformed {
                    what: "protoinfo tcp",
                })?;
                match ty {
                    CTA_PROTOINFO_TCP_STATE => state = Some(TcpState(u8_of(v, "tcp state")?)),
                    CTA_PROTOINFO_TCP_WSCALE_ORIGINAL => {
                        info.wscale_orig = Some(u8_of(v, "wscale")?)
                    }
                    CTA_PROTOINFO_TCP_WSCALE_REPLY => info.wscale_reply = Some(u8_of(v, "wscale")?),
                    CTA_PROTOINFO_TCP_FLAGS_ORIGINAL => info.flags_orig = Some(flags(v)?),
                    CTA_PROTOINFO_TCP_FLAGS_REPLY => info.flags_reply = Some(flags(v)?),
                    _ => {}
                }
            }
            info.state = state.ok_or(DecodeError::Missing("tcp state"))?;
            return Ok(Some(info));
        }
        Ok(None)
    }
}

/// One conntrack entry: both tuples (the reply tuple carries the NAT mapping), status,
/// remaining timeout, mark, zone and TCP state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The direction of the first packet, as it arrived.
    pub orig: Tuple,
    /// The expected reply: with SNAT its destination is the pool address and port, with
    /// DNAT its source is the backend.
    pub reply: Tuple,
    /// Status bits.
    pub status: Status,
    /// Seconds left before expiry.
    pub timeout: Option<u32>,
    /// Connection mark.
    pub mark: Option<u32>,
    /// Conntrack zone.
    pub zone: Option<u16>,
    /// TCP state, for TCP.
    pub tcp: Option<TcpInfo>,
    /// Kernel id of the entry (local to one node; not sent on create).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
}

impl Entry {
    /// Address family of the entry.
    pub fn family(&self) -> u8 {
        self.orig.family()
    }

    /// Whether `other` describes the connection as this does: everything but the
    /// remaining timeout and the node-local id.
    pub fn same_state(&self, other: &Entry) -> bool {
        (
            self.orig,
            self.reply,
            self.status,
            self.mark,
            self.zone,
            self.tcp,
        ) == (
            other.orig,
            other.reply,
            other.status,
            other.mark,
            other.zone,
            other.tcp,
        )
    }

    /// The source NAT mapping (address, port) this entry applies, if any.
    pub fn snat(&self) -> Option<(IpAddr, Option<u16>)> {
        self.status
            .has(Status::SRC_NAT)
            .then_some((self.reply.dst, self.reply.dst_port()))
    }

    /// The destination NAT mapping (backend address, port), if any.
    pub fn dnat(&self) -> Option<(IpAddr, Option<u16>)> {
        self.status
            .has(Status::DST_NAT)
            .then_some((self.reply.src, self.reply.src_port()))
    }

    /// Encodes the attributes as the kernel reports them (both tuples, status as is).
    pub fn encode_attrs(&self) -> Vec<u8> {
        let mut w = AttrWriter::default();
        self.orig.encode(&mut w, CTA_TUPLE_ORIG);
        self.reply.encode(&mut w, CTA_TUPLE_REPLY);
        w.put_be32(CTA_STATUS, self.status.0);
        self.encode_common(&mut w);
        w.buf
    }

    /// Encodes the attributes of an IPCTNL_MSG_CT_NEW that creates this entry with
    /// its NAT mapping.
    ///
    /// The kernel ignores NAT status bits from user space and requires both tuples; it
    /// sets up NAT only from CTA_NAT_SRC/CTA_NAT_DST (as conntrackd does). So the reply
    /// tuple sent is the reply before NAT ([`Entry::reply_before_nat`]), and the NAT attributes name
    /// the exact address and port of the mapping; the kernel then derives the same
    /// reply tuple, sets SRC_NAT/DST_NAT (+_DONE) and records the binding in its NAT
    /// table so that new connections do not reuse the port.
    pub fn encode_create(&self) -> Vec<u8> {
        let mut w = AttrWriter::default();
        self.orig.encode(&mut w, CTA_TUPLE_ORIG);
        self.reply_before_nat().encode(&mut w, CTA_TUPLE_REPLY);
        if let Some((addr, port)) = self.dnat() {
            encode_nat(&mut w, CTA_NAT_DST, addr, port);
        }
        if let Some((addr, port)) = self.snat() {
            encode_nat(&mut w, CTA_NAT_SRC, addr, port);
        }
        w.put_be32(CTA_STATUS, self.status_to_write());
        self.encode_common(&mut w);
        w.buf
    }

    /// The reply tuple as the kernel's NAT setup must find it: each side the NAT
    /// attributes will map (destination NAT: the source; source NAT: the
    /// destination) as the inverse of the original, the other side as the kernel
    /// reported it. Without NAT that is the inverse of the original; under IPVS's
    /// NAT forwarding the reply's source is the real server although no DST_NAT
    /// bit is set (IPVS alters the reply tuple itself), and it must stay, or the
    /// server's replies would match no entry.
    pub fn reply_before_nat(&self) -> Tuple {
        let inverse = self.orig.inverted();
        let src_side = !self.status.has(Status::DST_NAT);
        let dst_side = !self.status.has(Status::SRC_NAT);
        let l4 = match (inverse.l4, self.reply.l4) {
            (
                L4::Ports {
                    src: isrc,
                    dst: idst,
                },
                L4::Ports {
                    src: rsrc,
                    dst: rdst,
                },
            ) => L4::Ports {
                src: if src_side { rsrc } else { isrc },
                dst: if dst_side { rdst } else { idst },
            },
            (l4, _) => l4,
        };
        Tuple {
            src: if src_side {
                self.reply.src
            } else {
                inverse.src
            },
            dst: if dst_side {
                self.reply.dst
            } else {
                inverse.dst
            },
            proto: inverse.proto,
            l4,
        }
    }

    /// Encodes the attributes of a request that names this entry by its original
    /// tuple and zone (a delete).
    pub(crate) fn encode_orig(&self) -> Vec<u8> {
        let mut w = AttrWriter::default();
        self.orig.encode(&mut w, CTA_TUPLE_ORIG);
        if let Some(z) = self.zone {
            w.put_be16(CTA_ZONE, z);
        }
        w.buf
    }

    /// Encodes the attributes of an IPCTNL_MSG_CT_NEW that refreshes an existing entry
    /// (found by its original tuple in its zone): status, timeout, mark, TCP state;
    /// never NAT (the kernel refuses NAT changes on existing entries). The kernel
    /// answers EBUSY to a status that would clear SEEN_REPLY or ASSURED.
    pub fn encode_update(&self) -> Vec<u8> {
        let mut w = AttrWriter::default();
        self.orig.encode(&mut w, CTA_TUPLE_ORIG);
        w.put_be32(CTA_STATUS, self.status_to_write());
        self.encode_common(&mut w);
        w.buf
    }

    /// The status as written into the kernel: it marks an entry CONFIRMED before
    /// applying CTA_STATUS and answers EBUSY if CONFIRMED, EXPECTED or DYING would
    /// differ; the NAT bits are ignored (set by the NAT setup).
    fn status_to_write(&self) -> u32 {
        (self.status.0 | Status::CONFIRMED) & !(Status::EXPECTED | Status::DYING)
    }

    fn encode_common(&self, w: &mut AttrWriter) {
        if let Some(t) = self.timeout {
            w.put_be32(CTA_TIMEOUT, t);
        }
        if let Some(m) = self.mark {
            w.put_be32(CTA_MARK, m);
        }
        if let Some(tcp) = &self.tcp {
            tcp.encode(w);
        }
        if let Some(z) = self.zone {
            w.put_be16(CTA_ZONE, z);
        }
    }

    /// Decodes the attributes of a ctnetlink CT message (after the nfgenmsg header).
    pub fn decode_attrs(buf: &[u8]) -> Result<Self, DecodeError> {
        let (mut orig, mut reply, mut status) = (None, None, Status(0));
        let mut e = Entry {
            orig: Tuple::tcp(
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                0,
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                0,
            ),
            reply: Tuple::tcp(
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                0,
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                0,
            ),
            status: Status(0),
            timeout: None,
            mark: None,
            zone: None,
            tcp: None,
            id: None,
        };
        for a in attrs(buf) {
            let (ty, v) = a.map_err(|_| DecodeError::Malformed { what: "entry" })?;
            match ty {
                CTA_TUPLE_ORIG => orig = Some(Tuple::decode(v)?),
                CTA_TUPLE_REPLY => reply = Some(Tuple::decode(v)?),
                CTA_STATUS => status = Status(be32(v, "status")?),
                CTA_TIMEOUT => e.timeout = Some(be32(v, "timeout")?),
                CTA_MARK => e.mark = Some(be32(v, "mark")?),
                CTA_ZONE => e.zone = Some(be16(v, "zone")?),
                CTA_ID => e.id = Some(be32(v, "id")?),
                CTA_PROTOINFO => e.tcp = TcpInfo::decode(v)?,
                _ => {}
            }
        }
        e.orig = orig.ok_or(DecodeError::Missing("CTA_TUPLE_ORIG"))?;
        e.reply = reply.ok_or(DecodeError::Missing("CTA_TUPLE_REPLY"))?;
        e.status = status;
        if status.has(Status::OFFLOAD) {
            e.fill_offloaded();
        }
        Ok(e)
    }

    /// A connection in a flowtable is dumped without its timeout and TCP state (the
    /// flowtable tracks it; the kernel would refuse to create an entry without a
    /// timeout): it is read as what it is on the node that offloaded it. The kernel
    /// offloads a TCP connection once it is established, keeps the entry at least a
    /// day while it is offloaded (nf_ct_offload_timeout), and tracks it liberally
    /// (no window checks) from then on.
    fn fill_offloaded(&mut self) {
        if self.timeout.is_none() {
            self.timeout = Some(OFFLOADED_TIMEOUT);
        }
        if self.tcp.is_none() && self.orig.proto == IPPROTO_TCP {
            let liberal = Some(TcpFlags {
                flags: TcpFlags::BE_LIBERAL,
                mask: TcpFlags::BE_LIBERAL,
            });
            self.tcp = Some(TcpInfo {
                flags_orig: liberal,
                flags_reply: liberal,
                ..TcpInfo::in_state(TcpState::ESTABLISHED)
            });
        }
    }
}

fn encode_nat(w: &mut AttrWriter, ty: u16, addr: IpAddr, port: Option<u16>) {
    let n = w.begin(ty);
    match addr {
        IpAddr::V4(a) => {
            w.put(CTA_NAT_V4_MINIP, &a.octets());
            w.put(CTA_NAT_V4_MAXIP, &a.octets());
        }
        IpAddr::V6(a) => {
            w.put(CTA_NAT_V6_MINIP, &a.octets());
            w.put(CTA_NAT_V6_MAXIP, &a.octets());
        }
    }
    if let Some(p) = port {
        let pr = w.begin(CTA_NAT_PROTO);
        w.put_be16(CTA_PROTONAT_PORT_MIN, p);
        w.put_be16(CTA_PROTONAT_PORT_MAX, p);
        w.end(pr);
    }
    w.end(n);
}

fn len_err(what: &'static str, expected: usize, got: usize) -> DecodeError {
    DecodeError::BadLength {
        what,
        expected,
        got,
    }
}

fn u8_of(v: &[u8], what: &'static str) -> Result<u8, DecodeError> {
    match v {
        [b] => Ok(*b),
        _ => Err(len_err(what, 1, v.len())),
    }
}

fn be16(v: &[u8], what: &'static str) -> Result<u16, DecodeError> {
    let a: [u8; 2] = v.try_into().map_err(|_| len_err(what, 2, v.len()))?;
    Ok(u16::from_be_bytes(a))
}

fn be32(v: &[u8], what: &'static str) -> Result<u32, DecodeError> {
    Ok(u32::from_be_bytes(arr4(v, what)?))
}

fn arr4(v: &[u8], what: &'static str) -> Result<[u8; 4], DecodeError> {
    v.try_into().map_err(|_| len_err(what, 4, v.len()))
}

fn arr16(v: &[u8]) -> Result<[u8; 16], DecodeError> {
    v.try_into()
        .map_err(|_| len_err("ipv6 address", 16, v.len()))
}

fn flags(v: &[u8]) -> Result<TcpFlags, DecodeError> {
    match v {
        [flags, mask] => Ok(TcpFlags {
            flags: *flags,
            mask: *mask,
        }),
        _ => Err(len_err("tcp flags", 2, v.len())),
    }
}
