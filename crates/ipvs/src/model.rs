//! Typed IPVS objects: what a caller builds and what a dump returns.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::attr::{DaemonAttr, DestAttr, InetAddr, ServiceAttr, StatsAttr};
use crate::constants::*;
use crate::error::IpvsError;

const AF_INET: u16 = libc::AF_INET as u16;
const AF_INET6: u16 = libc::AF_INET6 as u16;

/// Address family of a service or real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4 (`AF_INET`).
    V4,
    /// IPv6 (`AF_INET6`).
    V6,
}

impl Family {
    /// The `AF_*` number.
    pub fn number(self) -> u16 {
        match self {
            Family::V4 => AF_INET,
            Family::V6 => AF_INET6,
        }
    }

    /// Family of an address.
    pub fn of(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    fn from_number(af: u16) -> Result<Family, IpvsError> {
        match af {
            AF_INET => Ok(Family::V4),
            AF_INET6 => Ok(Family::V6),
            other => Err(IpvsError::Malformed(format!(
                "unknown address family {other}"
            ))),
        }
    }

    fn unspecified(self) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Family::V6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        }
    }
}

/// Transport protocol of a virtual service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// SCTP (132).
    Sctp,
}

impl Protocol {
    /// The IP protocol number.
    pub fn number(self) -> u16 {
        match self {
            Protocol::Tcp => libc::IPPROTO_TCP as u16,
            Protocol::Udp => libc::IPPROTO_UDP as u16,
            Protocol::Sctp => libc::IPPROTO_SCTP as u16,
        }
    }

    fn from_number(n: u16) -> Result<Protocol, IpvsError> {
        match i32::from(n) {
            libc::IPPROTO_TCP => Ok(Protocol::Tcp),
            libc::IPPROTO_UDP => Ok(Protocol::Udp),
            libc::IPPROTO_SCTP => Ok(Protocol::Sctp),
            other => Err(IpvsError::Malformed(format!(
                "unknown IPVS protocol {other}"
            ))),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        })
    }
}

/// Virtual service flags (`IP_VS_SVC_F_*`), without the kernel-internal HASHED bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ServiceFlags(pub u32);

impl ServiceFlags {
    /// Persistent service (`-p`); set by [`Service::with_persistence`].
    pub const PERSISTENT: ServiceFlags = ServiceFlags(IP_VS_SVC_F_PERSISTENT);
    /// One-packet scheduling (`-o`, UDP).
    pub const ONE_PACKET: ServiceFlags = ServiceFlags(IP_VS_SVC_F_ONEPACKET);
    /// Source-hash scheduler: fall back to another server when one is down.
    pub const SH_FALLBACK: ServiceFlags = ServiceFlags(IP_VS_SVC_F_SCHED1);
    /// Source-hash scheduler: hash the source port too.
    pub const SH_PORT: ServiceFlags = ServiceFlags(IP_VS_SVC_F_SCHED2);

    /// Whether all bits of `other` are set.
    pub fn contains(self, other: ServiceFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for ServiceFlags {
    type Output = ServiceFlags;
    fn bitor(self, rhs: ServiceFlags) -> ServiceFlags {
        ServiceFlags(self.0 | rhs.0)
    }
}

/// A virtual service: either protocol + address + port, or a firewall mark.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Service {
    /// Address family (of `addr`, or of the packets a fwmark service takes).
    pub af: Family,
    /// Protocol; the kernel reports TCP for fwmark services.
    pub protocol: Protocol,
    /// Virtual address; unspecified for a fwmark service.
    pub addr: IpAddr,
    /// Virtual port; 0 for a fwmark service (or all ports when persistent).
    pub port: u16,
    /// Firewall mark; 0 when the service is keyed by address.
    pub fwmark: u32,
    /// Scheduler name: rr, wrr, lc, wlc, sh, mh, ...
    pub scheduler: String,
    /// Flags.
    pub flags: ServiceFlags,
    /// Persistence timeout in seconds (0 = not persistent).
    pub timeout: u32,
    /// Persistence netmask as a prefix length (32 or 128 = per client address).
    pub netmask: u8,
}

impl Service {
    /// A service on `addr` with the given protocol and scheduler.
    pub fn new(protocol: Protocol, addr: SocketAddr, scheduler: &str) -> Service {
        let af = Family::of(&addr.ip());
        Service {
            af,
            protocol,
            addr: addr.ip(),
            port: addr.port(),
            fwmark: 0,
            scheduler: scheduler.to_string(),
            flags: ServiceFlags::default(),
            timeout: 0,
            netmask: full_prefix(af),
        }
    }

    /// A service for packets carrying firewall mark `mark`.
    pub fn fwmark(af: Family, mark: u32, scheduler: &str) -> Service {
        Service {
            af,
            protocol: Protocol::Tcp,
            addr: af.unspecified(),
            port: 0,
            fwmark: mark,
            scheduler: scheduler.to_string(),
            flags: ServiceFlags::default(),
            timeout: 0,
            netmask: full_prefix(af),
        }
    }

    /// Makes the service persistent for `timeout` seconds per client network of `prefix` bits.
    pub fn with_persistence(mut self, timeout: u32, prefix: u8) -> Service {
        self.flags = self.flags | ServiceFlags::PERSISTENT;
        self.timeout = timeout;
        self.netmask = prefix;
        self
    }

    /// The identifying attributes (what DEL_SERVICE and GET_DEST need).
    ///
    /// Order as ipvsadm's libipvs sends them: AF, then FWMARK or
    /// PROTOCOL/ADDR/PORT.
    pub(crate) fn key_attrs(&self) -> Vec<ServiceAttr> {
        let mut attrs = vec![ServiceAttr::Af(self.af.number())];
        if self.fwmark != 0 {
            attrs.push(ServiceAttr::Fwmark(self.fwmark));
        } else {
            attrs.push(ServiceAttr::Protocol(self.protocol.number()));
            attrs.push(ServiceAttr::Addr(inet_addr(&self.addr)));
            attrs.push(ServiceAttr::Port(self.port));
        }
        attrs
    }

    /// The key plus every setting (NEW_SERVICE / SET_SERVICE need all four
    /// of SCHED_NAME, FLAGS, TIMEOUT and NETMASK, else EINVAL).
    pub(crate) fn full_attrs(&self) -> Result<Vec<ServiceAttr>, IpvsError> {
        if self.scheduler.is_empty() || self.scheduler.len() >= IP_VS_SCHEDNAME_MAXLEN {
            return Err(IpvsError::InvalidArgument(format!(
                "scheduler name `{}` must be 1 to {} bytes",
                self.scheduler,
                IP_VS_SCHEDNAME_MAXLEN - 1
            )));
        }
        if self.netmask > full_prefix(self.af) {
            return Err(IpvsError::InvalidArgument(format!(
                "persistence netmask /{} is too long for {:?}",
                self.netmask, self.af
            )));
        }
        if self.fwmark == 0 && Family::of(&self.addr) != self.af {
            return Err(IpvsError::InvalidArgument(format!(
                "service address {} is not of family {:?}",
                self.addr, self.af
            )));
        }
        let mut attrs = self.key_attrs();
        attrs.push(ServiceAttr::SchedName(self.scheduler.clone()));
        // mask ~0: the flags given replace all of the service's flags.
        attrs.push(ServiceAttr::Flags {
            flags: self.flags.0,
            mask: u32::MAX,
        });
        attrs.push(ServiceAttr::Timeout(self.timeout));
        attrs.push(ServiceAttr::Netmask(netmask_bytes(self.af, self.netmask)));
        Ok(attrs)
    }

    /// A service from the attributes of a GET_SERVICE reply.
    pub(crate) fn from_attrs(attrs: &[ServiceAttr]) -> Result<ServiceEntry, IpvsError> {
        let mut af = None;
        let mut protocol = None;
        let mut addr = None;
        let mut port = 0;
        let mut fwmark = 0;
        let mut scheduler = None;
        let mut flags = 0;
        let mut timeout = 0;
        let mut netmask = None;
        let mut stats32 = None;
        let mut stats64 = None;
        for attr in attrs {
            match attr {
                ServiceAttr::Af(x) => af = Some(Family::from_number(*x)?),
                ServiceAttr::Protocol(x) => protocol = Some(Protocol::from_number(*x)?),
                ServiceAttr::Addr(a) => addr = Some(*a),
                ServiceAttr::Port(x) => port = *x,
                ServiceAttr::Fwmark(x) => fwmark = *x,
                ServiceAttr::SchedName(s) => scheduler = Some(s.clone()),
                ServiceAttr::Flags { flags: f, .. } => flags = *f,
                ServiceAttr::Timeout(x) => timeout = *x,
                ServiceAttr::Netmask(raw) => netmask = Some(*raw),
                ServiceAttr::Stats(s) => stats32 = Some(Stats::from_attrs(s)),
                ServiceAttr::Stats64(s) => stats64 = Some(Stats::from_attrs(s)),
                ServiceAttr::PeName(_) | ServiceAttr::Other(_) => {}
            }
        }
        let af = af.ok_or_else(|| missing("service", "IPVS_SVC_ATTR_AF"))?;
        let addr = match (fwmark, addr) {
            (0, Some(raw)) => ip_from_inet(af, &raw),
            (0, None) => return Err(missing("service", "IPVS_SVC_ATTR_ADDR")),
            (_, _) => af.unspecified(),
        };
        let service = Service {
            af,
            protocol: protocol.unwrap_or(Protocol::Tcp),
            addr,
            port,
            fwmark,
            scheduler: scheduler.ok_or_else(|| missing("service", "IPVS_SVC_ATTR_SCHED_NAME"))?,
            flags: ServiceFlags(flags & !IP_VS_SVC_F_HASHED),
            timeout,
            netmask: netmask.map_or(full_prefix(af), |raw| prefix_of(af, raw)),
        };
        Ok(ServiceEntry {
            service,
            stats: stats64.or(stats32).unwrap_or_default(),
        })
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.fwmark != 0 {
            write!(f, "fwmark {}", self.fwmark)
        } else {
            write!(
                f,
                "{} {}",
                self.protocol,
                SocketAddr::new(self.addr, self.port)
            )
        }
    }
}

/// A service as dumped by the kernel, with its counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    /// The service's settings.
    pub service: Service,
    /// Its counters.
    pub stats: Stats,
}

/// How IPVS forwards packets to a real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Forward {
    /// NAT (`-m`): the destination address is rewritten.
    Masq,
    /// Local node: the director serves the connection itself.
    Local,
    /// IP-in-IP tunnel (`-i`).
    Tunnel,
    /// Direct routing (`-g`, "gatewaying").
    DirectRoute,
}

impl Forward {
    /// The forwarding method's IP_VS_CONN_F_* value, as a connection's flags and
    /// the sync protocol carry it.
    pub fn conn_flag(self) -> u32 {
        self.number()
    }

    fn number(self) -> u32 {
        match self {
            Forward::Masq => IP_VS_CONN_F_MASQ,
            Forward::Local => IP_VS_CONN_F_LOCALNODE,
            Forward::Tunnel => IP_VS_CONN_F_TUNNEL,
            Forward::DirectRoute => IP_VS_CONN_F_DROUTE,
        }
    }

    fn from_number(n: u32) -> Result<Forward, IpvsError> {
        match n & IP_VS_CONN_F_FWD_MASK {
            IP_VS_CONN_F_MASQ => Ok(Forward::Masq),
            IP_VS_CONN_F_LOCALNODE => Ok(Forward::Local),
            IP_VS_CONN_F_TUNNEL => Ok(Forward::Tunnel),
            IP_VS_CONN_F_DROUTE => Ok(Forward::DirectRoute),
            other => Err(IpvsError::Malformed(format!(
                "unknown forwarding method {other}"
            ))),
        }
    }
}

/// A real server of a service.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    /// Real server address.
    pub addr: IpAddr,
    /// Real server port (0 with a persistent port-0 service).
    pub port: u16,
    /// Forwarding method.
    pub forward: Forward,
    /// Weight; 0 takes the server out of new scheduling.
    pub weight: u32,
    /// Upper connection threshold (0 = none).
    pub upper_threshold: u32,
    /// Lower connection threshold (0 = none).
    pub lower_threshold: u32,
}

impl Destination {
    /// A real server at `addr` with weight 1 and no thresholds.
    pub fn new(addr: SocketAddr, forward: Forward) -> Destination {
        Destination {
            addr: addr.ip(),
            port: addr.port(),
            forward,
            weight: 1,
            upper_threshold: 0,
            lower_threshold: 0,
        }
    }

    /// Same server with another weight.
    pub fn with_weight(mut self, weight: u32) -> Destination {
        self.weight = weight;
        self
    }

    /// The identifying attributes (DEL_DEST).
    pub(crate) fn key_attrs(&self) -> Vec<DestAttr> {
        vec![
            DestAttr::AddrFamily(Family::of(&self.addr).number()),
            DestAttr::Addr(inet_addr(&self.addr)),
            DestAttr::Port(self.port),
        ]
    }

    /// The key plus every setting (NEW_DEST / SET_DEST need FWD_METHOD,
    /// WEIGHT, U_THRESH and L_THRESH, else EINVAL).
    pub(crate) fn full_attrs(&self) -> Result<Vec<DestAttr>, IpvsError> {
        // The kernel takes the weight as an int and refuses negatives.
        if self.weight > i32::MAX as u32 {
            return Err(IpvsError::InvalidArgument(format!(
                "weight {} of real server {} is above {}",
                self.weight,
                self,
                i32::MAX
            )));
        }
        let mut attrs = self.key_attrs();
        attrs.push(DestAttr::FwdMethod(self.forward.number()));
        attrs.push(DestAttr::Weight(self.weight));
        attrs.push(DestAttr::UThresh(self.upper_threshold));
        attrs.push(DestAttr::LThresh(self.lower_threshold));
        Ok(attrs)
    }

    /// A destination from a GET_DEST reply; `af` is the service's family,
    /// used when the kernel (before 4.3) sends no ADDR_FAMILY.
    pub(crate) fn from_attrs(
        af: Family,
        attrs: &[DestAttr],
    ) -> Result<DestinationEntry, IpvsError> {
        let mut addr = None;
        let mut family = af;
        let mut port = None;
        let mut forward = Forward::Masq;
        let mut weight = 0;
        let (mut upper, mut lower) = (0, 0);
        let (mut active, mut inactive, mut persist) = (0, 0, 0);
        let mut stats32 = None;
        let mut stats64 = None;
        for attr in attrs {
            match attr {
                DestAttr::Addr(a) => addr = Some(*a),
                DestAttr::AddrFamily(x) => family = Family::from_number(*x)?,
                DestAttr::Port(x) => port = Some(*x),
                DestAttr::FwdMethod(x) => forward = Forward::from_number(*x)?,
                DestAttr::Weight(x) => weight = *x,
                DestAttr::UThresh(x) => upper = *x,
                DestAttr::LThresh(x) => lower = *x,
                DestAttr::ActiveConns(x) => active = *x,
                DestAttr::InactConns(x) => inactive = *x,
                DestAttr::PersistConns(x) => persist = *x,
                DestAttr::Stats(s) => stats32 = Some(Stats::from_attrs(s)),
                DestAttr::Stats64(s) => stats64 = Some(Stats::from_attrs(s)),
                DestAttr::TunType(_)
                | DestAttr::TunPort(_)
                | DestAttr::TunFlags(_)
                | DestAttr::Other(_) => {}
            }
        }
        let raw = addr.ok_or_else(|| missing("destination", "IPVS_DEST_ATTR_ADDR"))?;
        Ok(DestinationEntry {
            destination: Destination {
                addr: ip_from_inet(family, &raw),
                port: port.ok_or_else(|| missing("destination", "IPVS_DEST_ATTR_PORT"))?,
                forward,
                weight,
                upper_threshold: upper,
                lower_threshold: lower,
            },
            active_conns: active,
            inactive_conns: inactive,
            persist_conns: persist,
            stats: stats64.or(stats32).unwrap_or_default(),
        })
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", SocketAddr::new(self.addr, self.port))
    }
}

/// A real server as dumped by the kernel, with its connection counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationEntry {
    /// The real server's settings.
    pub destination: Destination,
    /// Established connections.
    pub active_conns: u32,
    /// Other connections.
    pub inactive_conns: u32,
    /// Persistence templates pointing at it.
    pub persist_conns: u32,
    /// Its counters.
    pub stats: Stats,
}

/// Traffic counters and rates of a service or real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Connections scheduled.
    pub conns: u64,
    /// Packets in.
    pub in_packets: u64,
    /// Packets out.
    pub out_packets: u64,
    /// Bytes in.
    pub in_bytes: u64,
    /// Bytes out.
    pub out_bytes: u64,
    /// Connections per second.
    pub cps: u64,
    /// Packets per second in.
    pub in_pps: u64,
    /// Packets per second out.
    pub out_pps: u64,
    /// Bytes per second in.
    pub in_bps: u64,
    /// Bytes per second out.
    pub out_bps: u64,
}

impl Stats {
    fn from_attrs(attrs: &[StatsAttr]) -> Stats {
        let mut s = Stats::default();
        for a in attrs {
            let slot = match a.kind {
                IPVS_STATS_ATTR_CONNS => &mut s.conns,
                IPVS_STATS_ATTR_INPKTS => &mut s.in_packets,
                IPVS_STATS_ATTR_OUTPKTS => &mut s.out_packets,
                IPVS_STATS_ATTR_INBYTES => &mut s.in_bytes,
                IPVS_STATS_ATTR_OUTBYTES => &mut s.out_bytes,
                IPVS_STATS_ATTR_CPS => &mut s.cps,
                IPVS_STATS_ATTR_INPPS => &mut s.in_pps,
                IPVS_STATS_ATTR_OUTPPS => &mut s.out_pps,
                IPVS_STATS_ATTR_INBPS => &mut s.in_bps,
                IPVS_STATS_ATTR_OUTBPS => &mut s.out_bps,
                // IPVS_STATS_ATTR_PAD and newer counters.
                _ => continue,
            };
            *slot = a.value;
        }
        s
    }
}

/// Role of the kernel's connection sync daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DaemonRole {
    /// Sends connection state.
    Master,
    /// Receives connection state.
    Backup,
}

impl DaemonRole {
    pub(crate) fn number(self) -> u32 {
        match self {
            DaemonRole::Master => IP_VS_STATE_MASTER,
            DaemonRole::Backup => IP_VS_STATE_BACKUP,
        }
    }
}

impl fmt::Display for DaemonRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DaemonRole::Master => "master",
            DaemonRole::Backup => "backup",
        })
    }
}

/// A connection sync daemon (`ipvsadm --start-daemon`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SyncDaemon {
    /// Master or backup.
    pub role: DaemonRole,
    /// Interface of the sync traffic; it needs an IPv4 address.
    pub ifname: String,
    /// Sync id shared by the two nodes (0-255).
    pub sync_id: u32,
    /// Largest sync payload; kernel default when `None`.
    pub sync_maxlen: Option<u16>,
    /// Multicast group; 224.0.0.81 when `None`.
    pub mcast_group: Option<IpAddr>,
    /// Multicast port; 8848 when `None`.
    pub mcast_port: Option<u16>,
    /// Multicast TTL; 1 when `None`.
    pub mcast_ttl: Option<u8>,
}

impl SyncDaemon {
    /// A daemon with the kernel's defaults for the multicast settings.
    pub fn new(role: DaemonRole, ifname: &str, sync_id: u32) -> SyncDaemon {
        SyncDaemon {
            role,
            ifname: ifname.to_string(),
            sync_id,
            sync_maxlen: None,
            mcast_group: None,
            mcast_port: None,
            mcast_ttl: None,
        }
    }

    pub(crate) fn attrs(&self) -> Result<Vec<DaemonAttr>, IpvsError> {
        if self.ifname.is_empty() || self.ifname.len() >= IP_VS_IFNAME_MAXLEN {
            return Err(IpvsError::InvalidArgument(format!(
                "interface name `{}` must be 1 to {} bytes",
                self.ifname,
                IP_VS_IFNAME_MAXLEN - 1
            )));
        }
        let mut attrs = vec![
            DaemonAttr::State(self.role.number()),
            DaemonAttr::McastIfn(self.ifname.clone()),
            DaemonAttr::SyncId(self.sync_id),
        ];
        if let Some(x) = self.sync_maxlen {
            attrs.push(DaemonAttr::SyncMaxlen(x));
        }
        match self.mcast_group {
            Some(IpAddr::V4(a)) => attrs.push(DaemonAttr::McastGroup(a.octets())),
            Some(IpAddr::V6(a)) => attrs.push(DaemonAttr::McastGroup6(a.octets())),
            None => {}
        }
        if let Some(x) = self.mcast_port {
            attrs.push(DaemonAttr::McastPort(x));
        }
        if let Some(x) = self.mcast_ttl {
            attrs.push(DaemonAttr::McastTtl(x));
        }
        Ok(attrs)
    }

    pub(crate) fn from_attrs(attrs: &[DaemonAttr]) -> Result<SyncDaemon, IpvsError> {
        let mut role = None;
        let mut ifname = None;
        let mut sync_id = None;
        let mut d = SyncDaemon::new(DaemonRole::Master, "", 0);
        for attr in attrs {
            match attr {
                DaemonAttr::State(IP_VS_STATE_MASTER) => role = Some(DaemonRole::Master),
                DaemonAttr::State(IP_VS_STATE_BACKUP) => role = Some(DaemonRole::Backup),
                DaemonAttr::State(other) => {
                    return Err(IpvsError::Malformed(format!(
                        "unknown sync daemon state {other}"
                    )))
                }
                DaemonAttr::McastIfn(s) => ifname = Some(s.clone()),
                DaemonAttr::SyncId(x) => sync_id = Some(*x),
                DaemonAttr::SyncMaxlen(x) => d.sync_maxlen = Some(*x),
                DaemonAttr::McastGroup(a) => d.mcast_group = Some(IpAddr::from(*a)),
                DaemonAttr::McastGroup6(a) => d.mcast_group = Some(IpAddr::from(*a)),
                DaemonAttr::McastPort(x) => d.mcast_port = Some(*x),
                DaemonAttr::McastTtl(x) => d.mcast_ttl = Some(*x),
                DaemonAttr::Other(_) => {}
            }
        }
        d.role = role.ok_or_else(|| missing("daemon", "IPVS_DAEMON_ATTR_STATE"))?;
        d.ifname = ifname.ok_or_else(|| missing("daemon", "IPVS_DAEMON_ATTR_MCAST_IFN"))?;
        d.sync_id = sync_id.ok_or_else(|| missing("daemon", "IPVS_DAEMON_ATTR_SYNC_ID"))?;
        Ok(d)
    }
}

/// General IPVS information (`ipvsadm` header line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Info {
    /// IPVS version as 0x00MMmmpp (e.g. 0x010201 = 1.2.1).
    pub version: u32,
    /// Size of the connection hash table.
    pub conn_table_size: u32,
}

impl Info {
    /// The version as "major.minor.patch".
    pub fn version_string(&self) -> String {
        let v = self.version;
        format!("{}.{}.{}", (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff)
    }
}

/// Connection timeouts in seconds (`ipvsadm --set tcp tcpfin udp`); 0 in a
/// set request leaves that timeout unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timeouts {
    /// Established TCP.
    pub tcp: u32,
    /// TCP after FIN.
    pub tcp_fin: u32,
    /// UDP.
    pub udp: u32,
}

fn missing(what: &str, attr: &str) -> IpvsError {
    IpvsError::Malformed(format!("{what} reply without {attr}"))
}

fn full_prefix(af: Family) -> u8 {
    match af {
        Family::V4 => 32,
        Family::V6 => 128,
    }
}

/// IPv4: the be32 mask; IPv6: the prefix length as a host-order u32 (what
/// ipvsadm sends and the kernel checks as 1..=128).
fn netmask_bytes(af: Family, prefix: u8) -> [u8; 4] {
    match af {
        Family::V4 => {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix.min(32)))
            };
            mask.to_be_bytes()
        }
        Family::V6 => u32::from(prefix).to_ne_bytes(),
    }
}

fn prefix_of(af: Family, raw: [u8; 4]) -> u8 {
    match af {
        Family::V4 => u32::from_be_bytes(raw).leading_ones() as u8,
        Family::V6 => u32::from_ne_bytes(raw).min(128) as u8,
    }
}

fn inet_addr(addr: &IpAddr) -> InetAddr {
    let mut raw = [0u8; 16];
    match addr {
        IpAddr::V4(a) => raw[..4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => raw.copy_from_slice(&a.octets()),
    }
    raw
}

fn ip_from_inet(af: Family, raw: &InetAddr) -> IpAddr {
    match af {
        Family::V4 => IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3])),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(*raw)),
    }
}
