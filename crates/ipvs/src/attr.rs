//! Netlink attributes of the IPVS family, one enum per nesting level.
//!
//! Byte order follows the kernel's policy in `net/netfilter/ipvs/ip_vs_ctl.c`:
//! numbers are host order (`NLA_U16`/`NLA_U32`), except the ports and the IPv4
//! persistence netmask, which the kernel keeps as `__be16`/`__be32` and copies
//! raw; addresses are `union nf_inet_addr` (16 bytes, IPv4 in the first 4).

use netlink_packet_core::{
    parse_string, parse_u16, parse_u32, parse_u64, parse_u8, DecodeError, DefaultNla, Emitable,
    Nla, NlaBuffer, NlasIterator, Parseable,
};

use crate::constants::*;

/// Raw `union nf_inet_addr`: IPv4 in the first 4 bytes, zero padded.
pub type InetAddr = [u8; 16];

/// Attributes at the top level of an IPVS message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmdAttr {
    /// `IPVS_CMD_ATTR_SERVICE`: a nested service.
    Service(Vec<ServiceAttr>),
    /// `IPVS_CMD_ATTR_DEST`: a nested destination (real server).
    Dest(Vec<DestAttr>),
    /// `IPVS_CMD_ATTR_DAEMON`: a nested sync daemon.
    Daemon(Vec<DaemonAttr>),
    /// `IPVS_CMD_ATTR_TIMEOUT_TCP`, seconds.
    TimeoutTcp(u32),
    /// `IPVS_CMD_ATTR_TIMEOUT_TCP_FIN`, seconds.
    TimeoutTcpFin(u32),
    /// `IPVS_CMD_ATTR_TIMEOUT_UDP`, seconds.
    TimeoutUdp(u32),
    /// `IPVS_INFO_ATTR_VERSION` (only in an `IPVS_CMD_SET_INFO` reply).
    InfoVersion(u32),
    /// `IPVS_INFO_ATTR_CONN_TAB_SIZE` (only in an `IPVS_CMD_SET_INFO` reply).
    InfoConnTabSize(u32),
    /// Anything this crate does not know, kept as is.
    Other(DefaultNla),
}

/// Attributes nested in `IPVS_CMD_ATTR_SERVICE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceAttr {
    /// `AF_INET` or `AF_INET6`.
    Af(u16),
    /// IP protocol number (6 tcp, 17 udp, 132 sctp).
    Protocol(u16),
    /// Virtual address.
    Addr(InetAddr),
    /// Virtual port, host order here, network order on the wire.
    Port(u16),
    /// Firewall mark (replaces protocol/addr/port).
    Fwmark(u32),
    /// Scheduler name ("rr", "wlc", ...).
    SchedName(String),
    /// `struct ip_vs_flags { flags, mask }`.
    Flags {
        /// Flag values.
        flags: u32,
        /// Which flags to change.
        mask: u32,
    },
    /// Persistence timeout in seconds.
    Timeout(u32),
    /// Persistence netmask as the kernel holds it: the 4 raw bytes (a be32 mask
    /// for IPv4, a host-order prefix length for IPv6).
    Netmask([u8; 4]),
    /// 32-bit counters (`IPVS_SVC_ATTR_STATS`).
    Stats(Vec<StatsAttr>),
    /// Persistence engine name ("sip").
    PeName(String),
    /// 64-bit counters (`IPVS_SVC_ATTR_STATS64`).
    Stats64(Vec<StatsAttr>),
    /// Unknown attribute.
    Other(DefaultNla),
}

/// Attributes nested in `IPVS_CMD_ATTR_DEST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestAttr {
    /// Real server address.
    Addr(InetAddr),
    /// Real server port, host order here, network order on the wire.
    Port(u16),
    /// `IP_VS_CONN_F_*` forwarding method.
    FwdMethod(u32),
    /// Weight (the kernel's `int`; negative is refused).
    Weight(u32),
    /// Upper connection threshold (0 = none).
    UThresh(u32),
    /// Lower connection threshold.
    LThresh(u32),
    /// Active connections (read only).
    ActiveConns(u32),
    /// Inactive connections (read only).
    InactConns(u32),
    /// Persistence templates (read only).
    PersistConns(u32),
    /// 32-bit counters.
    Stats(Vec<StatsAttr>),
    /// Address family of `Addr` when it differs from the service's.
    AddrFamily(u16),
    /// 64-bit counters.
    Stats64(Vec<StatsAttr>),
    /// Tunnel type (ipip, gue, gre).
    TunType(u8),
    /// Tunnel port, host order here, network order on the wire.
    TunPort(u16),
    /// Tunnel flags.
    TunFlags(u16),
    /// Unknown attribute.
    Other(DefaultNla),
}

/// Attributes nested in `IPVS_CMD_ATTR_DAEMON`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonAttr {
    /// `IP_VS_STATE_MASTER` or `IP_VS_STATE_BACKUP`.
    State(u32),
    /// Interface the sync messages go out of / come in on.
    McastIfn(String),
    /// Sync id (0-255).
    SyncId(u32),
    /// Largest sync message payload.
    SyncMaxlen(u16),
    /// IPv4 multicast group, network-order bytes.
    McastGroup([u8; 4]),
    /// IPv6 multicast group.
    McastGroup6([u8; 16]),
    /// Multicast port (host order, as the kernel takes it).
    McastPort(u16),
    /// Multicast TTL.
    McastTtl(u8),
    /// Unknown attribute.
    Other(DefaultNla),
}

/// One counter of a stats nest: 32-bit in `*_STATS`, 64-bit in `*_STATS64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsAttr {
    /// `IPVS_STATS_ATTR_*`.
    pub kind: u16,
    /// The counter.
    pub value: u64,
}

impl Nla for StatsAttr {
    fn value_len(&self) -> usize {
        8
    }
    fn kind(&self) -> u16 {
        self.kind
    }
    fn emit_value(&self, buffer: &mut [u8]) {
        buffer[..8].copy_from_slice(&self.value.to_ne_bytes());
    }
}

fn emit_nested<T: Nla>(nlas: &[T], buffer: &mut [u8]) {
    nlas.emit(buffer)
}

fn nested_len<T: Nla>(nlas: &[T]) -> usize {
    nlas.buffer_len()
}

fn emit_string(s: &str, buffer: &mut [u8]) {
    buffer[..s.len()].copy_from_slice(s.as_bytes());
    buffer[s.len()] = 0;
}

impl Nla for CmdAttr {
    fn value_len(&self) -> usize {
        match self {
            CmdAttr::Service(v) => nested_len(v),
            CmdAttr::Dest(v) => nested_len(v),
            CmdAttr::Daemon(v) => nested_len(v),
            CmdAttr::TimeoutTcp(_)
            | CmdAttr::TimeoutTcpFin(_)
            | CmdAttr::TimeoutUdp(_)
            | CmdAttr::InfoVersion(_)
            | CmdAttr::InfoConnTabSize(_) => 4,
            CmdAttr::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            // The kernel does not require NLA_F_NESTED; ipvsadm (libnl's
            // nla_nest_start) does not set it either, so neither do we.
            CmdAttr::Service(_) => IPVS_CMD_ATTR_SERVICE,
            CmdAttr::Dest(_) => IPVS_CMD_ATTR_DEST,
            CmdAttr::Daemon(_) => IPVS_CMD_ATTR_DAEMON,
            CmdAttr::TimeoutTcp(_) => IPVS_CMD_ATTR_TIMEOUT_TCP,
            CmdAttr::TimeoutTcpFin(_) => IPVS_CMD_ATTR_TIMEOUT_TCP_FIN,
            CmdAttr::TimeoutUdp(_) => IPVS_CMD_ATTR_TIMEOUT_UDP,
            CmdAttr::InfoVersion(_) => IPVS_INFO_ATTR_VERSION,
            CmdAttr::InfoConnTabSize(_) => IPVS_INFO_ATTR_CONN_TAB_SIZE,
            CmdAttr::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            CmdAttr::Service(v) => emit_nested(v, buffer),
            CmdAttr::Dest(v) => emit_nested(v, buffer),
            CmdAttr::Daemon(v) => emit_nested(v, buffer),
            CmdAttr::TimeoutTcp(x)
            | CmdAttr::TimeoutTcpFin(x)
            | CmdAttr::TimeoutUdp(x)
            | CmdAttr::InfoVersion(x)
            | CmdAttr::InfoConnTabSize(x) => buffer[..4].copy_from_slice(&x.to_ne_bytes()),
            CmdAttr::Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl Nla for ServiceAttr {
    fn value_len(&self) -> usize {
        match self {
            ServiceAttr::Af(_) | ServiceAttr::Protocol(_) | ServiceAttr::Port(_) => 2,
            ServiceAttr::Addr(_) => 16,
            ServiceAttr::Fwmark(_) | ServiceAttr::Timeout(_) | ServiceAttr::Netmask(_) => 4,
            ServiceAttr::SchedName(s) | ServiceAttr::PeName(s) => s.len() + 1,
            ServiceAttr::Flags { .. } => 8,
            ServiceAttr::Stats(v) | ServiceAttr::Stats64(v) => nested_len(v),
            ServiceAttr::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            ServiceAttr::Af(_) => IPVS_SVC_ATTR_AF,
            ServiceAttr::Protocol(_) => IPVS_SVC_ATTR_PROTOCOL,
            ServiceAttr::Addr(_) => IPVS_SVC_ATTR_ADDR,
            ServiceAttr::Port(_) => IPVS_SVC_ATTR_PORT,
            ServiceAttr::Fwmark(_) => IPVS_SVC_ATTR_FWMARK,
            ServiceAttr::SchedName(_) => IPVS_SVC_ATTR_SCHED_NAME,
            ServiceAttr::Flags { .. } => IPVS_SVC_ATTR_FLAGS,
            ServiceAttr::Timeout(_) => IPVS_SVC_ATTR_TIMEOUT,
            ServiceAttr::Netmask(_) => IPVS_SVC_ATTR_NETMASK,
            ServiceAttr::Stats(_) => IPVS_SVC_ATTR_STATS,
            ServiceAttr::PeName(_) => IPVS_SVC_ATTR_PE_NAME,
            ServiceAttr::Stats64(_) => IPVS_SVC_ATTR_STATS64,
            ServiceAttr::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            ServiceAttr::Af(x) | ServiceAttr::Protocol(x) => {
                buffer[..2].copy_from_slice(&x.to_ne_bytes())
            }
            ServiceAttr::Port(x) => buffer[..2].copy_from_slice(&x.to_be_bytes()),
            ServiceAttr::Addr(a) => buffer[..16].copy_from_slice(a),
            ServiceAttr::Fwmark(x) | ServiceAttr::Timeout(x) => {
                buffer[..4].copy_from_slice(&x.to_ne_bytes())
            }
            ServiceAttr::Netmask(raw) => buffer[..4].copy_from_slice(raw),
            ServiceAttr::SchedName(s) | ServiceAttr::PeName(s) => emit_string(s, buffer),
            ServiceAttr::Flags { flags, mask } => {
                buffer[..4].copy_from_slice(&flags.to_ne_bytes());
                buffer[4..8].copy_from_slice(&mask.to_ne_bytes());
            }
            ServiceAttr::Stats(v) | ServiceAttr::Stats64(v) => emit_nested(v, buffer),
            ServiceAttr::Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl Nla for DestAttr {
    fn value_len(&self) -> usize {
        match self {
            DestAttr::Addr(_) => 16,
            DestAttr::Port(_)
            | DestAttr::AddrFamily(_)
            | DestAttr::TunPort(_)
            | DestAttr::TunFlags(_) => 2,
            DestAttr::TunType(_) => 1,
            DestAttr::FwdMethod(_)
            | DestAttr::Weight(_)
            | DestAttr::UThresh(_)
            | DestAttr::LThresh(_)
            | DestAttr::ActiveConns(_)
            | DestAttr::InactConns(_)
            | DestAttr::PersistConns(_) => 4,
            DestAttr::Stats(v) | DestAttr::Stats64(v) => nested_len(v),
            DestAttr::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            DestAttr::Addr(_) => IPVS_DEST_ATTR_ADDR,
            DestAttr::Port(_) => IPVS_DEST_ATTR_PORT,
            DestAttr::FwdMethod(_) => IPVS_DEST_ATTR_FWD_METHOD,
            DestAttr::Weight(_) => IPVS_DEST_ATTR_WEIGHT,
            DestAttr::UThresh(_) => IPVS_DEST_ATTR_U_THRESH,
            DestAttr::LThresh(_) => IPVS_DEST_ATTR_L_THRESH,
            DestAttr::ActiveConns(_) => IPVS_DEST_ATTR_ACTIVE_CONNS,
            DestAttr::InactConns(_) => IPVS_DEST_ATTR_INACT_CONNS,
            DestAttr::PersistConns(_) => IPVS_DEST_ATTR_PERSIST_CONNS,
            DestAttr::Stats(_) => IPVS_DEST_ATTR_STATS,
            DestAttr::AddrFamily(_) => IPVS_DEST_ATTR_ADDR_FAMILY,
            DestAttr::Stats64(_) => IPVS_DEST_ATTR_STATS64,
            DestAttr::TunType(_) => IPVS_DEST_ATTR_TUN_TYPE,
            DestAttr::TunPort(_) => IPVS_DEST_ATTR_TUN_PORT,
            DestAttr::TunFlags(_) => IPVS_DEST_ATTR_TUN_FLAGS,
            DestAttr::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            DestAttr::Addr(a) => buffer[..16].copy_from_slice(a),
            DestAttr::Port(x) | DestAttr::TunPort(x) => {
                buffer[..2].copy_from_slice(&x.to_be_bytes())
            }
            DestAttr::AddrFamily(x) | DestAttr::TunFlags(x) => {
                buffer[..2].copy_from_slice(&x.to_ne_bytes())
            }
            DestAttr::TunType(x) => buffer[0] = *x,
            DestAttr::FwdMethod(x)
            | DestAttr::Weight(x)
            | DestAttr::UThresh(x)
            | DestAttr::LThresh(x)
            | DestAttr::ActiveConns(x)
            | DestAttr::InactConns(x)
            | DestAttr::PersistConns(x) => buffer[..4].copy_from_slice(&x.to_ne_bytes()),
            DestAttr::Stats(v) | DestAttr::Stats64(v) => emit_nested(v, buffer),
            DestAttr::Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl Nla for DaemonAttr {
    fn value_len(&self) -> usize {
        match self {
            DaemonAttr::State(_) | DaemonAttr::SyncId(_) | DaemonAttr::McastGroup(_) => 4,
            DaemonAttr::McastIfn(s) => s.len() + 1,
            DaemonAttr::SyncMaxlen(_) | DaemonAttr::McastPort(_) => 2,
            DaemonAttr::McastGroup6(_) => 16,
            DaemonAttr::McastTtl(_) => 1,
            DaemonAttr::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            DaemonAttr::State(_) => IPVS_DAEMON_ATTR_STATE,
            DaemonAttr::McastIfn(_) => IPVS_DAEMON_ATTR_MCAST_IFN,
            DaemonAttr::SyncId(_) => IPVS_DAEMON_ATTR_SYNC_ID,
            DaemonAttr::SyncMaxlen(_) => IPVS_DAEMON_ATTR_SYNC_MAXLEN,
            DaemonAttr::McastGroup(_) => IPVS_DAEMON_ATTR_MCAST_GROUP,
            DaemonAttr::McastGroup6(_) => IPVS_DAEMON_ATTR_MCAST_GROUP6,
            DaemonAttr::McastPort(_) => IPVS_DAEMON_ATTR_MCAST_PORT,
            DaemonAttr::McastTtl(_) => IPVS_DAEMON_ATTR_MCAST_TTL,
            DaemonAttr::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            DaemonAttr::State(x) | DaemonAttr::SyncId(x) => {
                buffer[..4].copy_from_slice(&x.to_ne_bytes())
            }
            DaemonAttr::McastIfn(s) => emit_string(s, buffer),
            DaemonAttr::SyncMaxlen(x) | DaemonAttr::McastPort(x) => {
                buffer[..2].copy_from_slice(&x.to_ne_bytes())
            }
            DaemonAttr::McastGroup(a) => buffer[..4].copy_from_slice(a),
            DaemonAttr::McastGroup6(a) => buffer[..16].copy_from_slice(a),
            DaemonAttr::McastTtl(x) => buffer[0] = *x,
            DaemonAttr::Other(nla) => nla.emit_value(buffer),
        }
    }
}

fn parse_addr(payload: &[u8]) -> Result<InetAddr, DecodeError> {
    // The kernel sends the whole 16-byte union; accept a bare IPv4 too.
    match payload.len() {
        4 | 16 => {
            let mut a = [0u8; 16];
            a[..payload.len()].copy_from_slice(payload);
            Ok(a)
        }
        n => Err(DecodeError::invalid_ip_address(n)),
    }
}

fn parse_be16(payload: &[u8]) -> Result<u16, DecodeError> {
    match payload {
        [a, b, ..] => Ok(u16::from_be_bytes([*a, *b])),
        _ => Err(DecodeError::invalid_number(2, payload.len())),
    }
}

fn parse_array<const N: usize>(payload: &[u8]) -> Result<[u8; N], DecodeError> {
    payload
        .get(..N)
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .ok_or_else(|| DecodeError::invalid_number(N, payload.len()))
}

fn parse_nested<T, F>(payload: &[u8], mut one: F) -> Result<Vec<T>, DecodeError>
where
    F: FnMut(&NlaBuffer<&[u8]>) -> Result<T, DecodeError>,
{
    NlasIterator::new(payload)
        .map(|nla| nla.and_then(|buf| one(&buf)))
        .collect()
}

fn parse_stats(payload: &[u8]) -> Result<Vec<StatsAttr>, DecodeError> {
    let counters = parse_nested(payload, |buf| {
        let v = buf.value();
        let value = match v.len() {
            // IPVS_STATS_ATTR_PAD, which nla_put_u64_64bit adds for alignment.
            0 => return Ok(None),
            4 => u64::from(parse_u32(v)?),
            8 => parse_u64(v)?,
            n => return Err(DecodeError::invalid_number(8, n)),
        };
        Ok(Some(StatsAttr {
            kind: buf.kind(),
            value,
        }))
    })?;
    Ok(counters.into_iter().flatten().collect())
}

fn other(buf: &NlaBuffer<&[u8]>) -> Result<DefaultNla, DecodeError> {
    DefaultNla::parse(buf)
}

/// Parses the attributes nested in a service.
pub fn parse_service_attrs(payload: &[u8]) -> Result<Vec<ServiceAttr>, DecodeError> {
    parse_nested(payload, |buf| {
        let v = buf.value();
        Ok(match buf.kind() {
            IPVS_SVC_ATTR_AF => ServiceAttr::Af(parse_u16(v)?),
            IPVS_SVC_ATTR_PROTOCOL => ServiceAttr::Protocol(parse_u16(v)?),
            IPVS_SVC_ATTR_ADDR => ServiceAttr::Addr(parse_addr(v)?),
            IPVS_SVC_ATTR_PORT => ServiceAttr::Port(parse_be16(v)?),
            IPVS_SVC_ATTR_FWMARK => ServiceAttr::Fwmark(parse_u32(v)?),
            IPVS_SVC_ATTR_SCHED_NAME => ServiceAttr::SchedName(parse_string(v)?),
            IPVS_SVC_ATTR_FLAGS => {
                let raw: [u8; 8] = parse_array(v)?;
                ServiceAttr::Flags {
                    flags: parse_u32(&raw[..4])?,
                    mask: parse_u32(&raw[4..])?,
                }
            }
            IPVS_SVC_ATTR_TIMEOUT => ServiceAttr::Timeout(parse_u32(v)?),
            IPVS_SVC_ATTR_NETMASK => ServiceAttr::Netmask(parse_array(v)?),
            IPVS_SVC_ATTR_STATS => ServiceAttr::Stats(parse_stats(v)?),
            IPVS_SVC_ATTR_PE_NAME => ServiceAttr::PeName(parse_string(v)?),
            IPVS_SVC_ATTR_STATS64 => ServiceAttr::Stats64(parse_stats(v)?),
            _ => ServiceAttr::Other(other(buf)?),
        })
    })
}

/// Parses the attributes nested in a destination.
pub fn parse_dest_attrs(payload: &[u8]) -> Result<Vec<DestAttr>, DecodeError> {
    parse_nested(payload, |buf| {
        let v = buf.value();
        Ok(match buf.kind() {
            IPVS_DEST_ATTR_ADDR => DestAttr::Addr(parse_addr(v)?),
            IPVS_DEST_ATTR_PORT => DestAttr::Port(parse_be16(v)?),
            IPVS_DEST_ATTR_FWD_METHOD => DestAttr::FwdMethod(parse_u32(v)?),
            IPVS_DEST_ATTR_WEIGHT => DestAttr::Weight(parse_u32(v)?),
            IPVS_DEST_ATTR_U_THRESH => DestAttr::UThresh(parse_u32(v)?),
            IPVS_DEST_ATTR_L_THRESH => DestAttr::LThresh(parse_u32(v)?),
            IPVS_DEST_ATTR_ACTIVE_CONNS => DestAttr::ActiveConns(parse_u32(v)?),
            IPVS_DEST_ATTR_INACT_CONNS => DestAttr::InactConns(parse_u32(v)?),
            IPVS_DEST_ATTR_PERSIST_CONNS => DestAttr::PersistConns(parse_u32(v)?),
            IPVS_DEST_ATTR_STATS => DestAttr::Stats(parse_stats(v)?),
            IPVS_DEST_ATTR_ADDR_FAMILY => DestAttr::AddrFamily(parse_u16(v)?),
            IPVS_DEST_ATTR_STATS64 => DestAttr::Stats64(parse_stats(v)?),
            IPVS_DEST_ATTR_TUN_TYPE => DestAttr::TunType(parse_u8(v)?),
            IPVS_DEST_ATTR_TUN_PORT => DestAttr::TunPort(parse_be16(v)?),
            IPVS_DEST_ATTR_TUN_FLAGS => DestAttr::TunFlags(parse_u16(v)?),
            _ => DestAttr::Other(other(buf)?),
        })
    })
}

/// Parses the attributes nested in a sync daemon.
pub fn parse_daemon_attrs(payload: &[u8]) -> Result<Vec<DaemonAttr>, DecodeError> {
    parse_nested(payload, |buf| {
        let v = buf.value();
        Ok(match buf.kind() {
            IPVS_DAEMON_ATTR_STATE => DaemonAttr::State(parse_u32(v)?),
            IPVS_DAEMON_ATTR_MCAST_IFN => DaemonAttr::McastIfn(parse_string(v)?),
            IPVS_DAEMON_ATTR_SYNC_ID => DaemonAttr::SyncId(parse_u32(v)?),
            IPVS_DAEMON_ATTR_SYNC_MAXLEN => DaemonAttr::SyncMaxlen(parse_u16(v)?),
            IPVS_DAEMON_ATTR_MCAST_GROUP => DaemonAttr::McastGroup(parse_array(v)?),
            IPVS_DAEMON_ATTR_MCAST_GROUP6 => DaemonAttr::McastGroup6(parse_array(v)?),
            IPVS_DAEMON_ATTR_MCAST_PORT => DaemonAttr::McastPort(parse_u16(v)?),
            IPVS_DAEMON_ATTR_MCAST_TTL => DaemonAttr::McastTtl(parse_u8(v)?),
            _ => DaemonAttr::Other(other(buf)?),
        })
    })
}

/// Parses the top-level attributes of a message with command `cmd`.
pub fn parse_cmd_attrs(cmd: u8, payload: &[u8]) -> Result<Vec<CmdAttr>, DecodeError> {
    parse_nested(payload, |buf| {
        let v = buf.value();
        // kind() already strips NLA_F_NESTED, which a sender may or may not set.
        let kind = buf.kind();
        if cmd == IPVS_CMD_SET_INFO {
            return Ok(match kind {
                IPVS_INFO_ATTR_VERSION => CmdAttr::InfoVersion(parse_u32(v)?),
                IPVS_INFO_ATTR_CONN_TAB_SIZE => CmdAttr::InfoConnTabSize(parse_u32(v)?),
                _ => CmdAttr::Other(other(buf)?),
            });
        }
        Ok(match kind {
            IPVS_CMD_ATTR_SERVICE => CmdAttr::Service(parse_service_attrs(v)?),
            IPVS_CMD_ATTR_DEST => CmdAttr::Dest(parse_dest_attrs(v)?),
            IPVS_CMD_ATTR_DAEMON => CmdAttr::Daemon(parse_daemon_attrs(v)?),
            IPVS_CMD_ATTR_TIMEOUT_TCP => CmdAttr::TimeoutTcp(parse_u32(v)?),
            IPVS_CMD_ATTR_TIMEOUT_TCP_FIN => CmdAttr::TimeoutTcpFin(parse_u32(v)?),
            IPVS_CMD_ATTR_TIMEOUT_UDP => CmdAttr::TimeoutUdp(parse_u32(v)?),
            _ => CmdAttr::Other(other(buf)?),
        })
    })
}
