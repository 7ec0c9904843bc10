//! Raw IP sockets for VRRP (IP protocol 112), one per interface and family.
//!
//! The kernel builds the IP header on send (TTL / hop limit 255, TOS / traffic
//! class 0xc0, as keepalived sends); the caller hands over the VRRP message only,
//! checksum included. On receive the IP header (IPv4) or the ancillary data
//! (IPv6) give source, destination and TTL / hop limit.
//!
//! Packets whose TTL / hop limit is not 255 are returned like any other: the
//! caller checks [`Received::ttl`], counts and drops them (RFC 9568 §7.1).
//! A socket hears only the group it joined itself (IPv4 `IP_MULTICAST_ALL`
//! off), so a unicast-mode socket hears unicast only; telling VRIDs and peers
//! apart is the caller's job. Its own multicast is not looped back.
//!
//! Sources are chosen per packet with `IP_PKTINFO` / `IPV6_PKTINFO` rather than
//! bind(2): a raw IPv4 socket bound to an address hears nothing sent to the group.
//!
//! IPv6: the socket does not set `IPV6_CHECKSUM`, so the kernel neither fills in
//! nor verifies the VRRP checksum of protocol 112; the message goes out and comes
//! in byte for byte, and verifying it (pseudo-header included) is the codec's job.

use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Mutex, PoisonError};

use nix::sys::socket::{
    self as sock, ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn, SockaddrIn6,
    SockaddrStorage,
};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use vrrp::checksum::{IPPROTO_VRRP, VRRP_GROUP_V4, VRRP_GROUP_V6};
use vrrp::packet::Family;

/// The only TTL / hop limit a VRRP router accepts, and the one it sends.
pub const VRRP_TTL: u8 = 255;
/// DSCP CS6 (network control): keepalived's TOS / traffic class for adverts.
pub const TOS_NETWORK_CONTROL: u8 = 0xc0;

/// Largest packet read: an IP packet can be no longer.
const RECV_CAPACITY: usize = 65_535;
const IPV4_MIN_HEADER: usize = 20;

/// A failure of a VRRP socket; each names the interface.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// The process lacks the privilege for raw sockets.
    #[error("{iface}: a raw VRRP socket needs CAP_NET_RAW (run vrrpd as root or grant it the capability)")]
    NeedsCapNetRaw {
        /// The interface.
        iface: String,
    },
    /// socket(2) failed for another reason.
    #[error("{iface}: cannot open a raw {family} socket for IP protocol 112: {error}")]
    Open {
        /// The interface.
        iface: String,
        /// The family asked for.
        family: Family,
        /// The kernel's error.
        error: io::Error,
    },
    /// A socket option was refused.
    #[error("{iface}: cannot set {option} on the VRRP socket: {error}")]
    SetOption {
        /// The interface.
        iface: String,
        /// The option, as the kernel names it.
        option: &'static str,
        /// The kernel's error.
        error: io::Error,
    },
    /// Joining the VRRP multicast group failed.
    #[error("{iface}: cannot join {group} on interface index {ifindex}: {error}")]
    JoinGroup {
        /// The interface.
        iface: String,
        /// The group.
        group: IpAddr,
        /// The interface index used.
        ifindex: u32,
        /// The kernel's error.
        error: io::Error,
    },
    /// An address (source or peer) is not of the socket's family.
    #[error("{iface}: {addr} is not an {family} address")]
    WrongFamily {
        /// The interface.
        iface: String,
        /// The offending address.
        addr: IpAddr,
        /// The socket's family.
        family: Family,
    },
    /// A multicast IPv6 VRRP socket must send from a link-local address (RFC 9568 §5.1.2.1).
    #[error("{iface}: the IPv6 VRRP source {addr} is not a link-local address")]
    SourceNotLinkLocal {
        /// The interface.
        iface: String,
        /// The configured source.
        addr: Ipv6Addr,
    },
    /// The socket could not be registered with the tokio reactor.
    #[error("{iface}: cannot register the VRRP socket with the async runtime: {error}")]
    Register {
        /// The interface.
        iface: String,
        /// The error.
        error: io::Error,
    },
    /// The message is too long to send in one IP packet.
    #[error("{iface}: a VRRP message of {len} bytes is too long to send")]
    TooLong {
        /// The interface.
        iface: String,
        /// Its length.
        len: usize,
    },
    /// sendmsg(2) failed.
    #[error("{iface}: sending a VRRP message to {dst} failed: {error}")]
    Send {
        /// The interface.
        iface: String,
        /// The destination.
        dst: IpAddr,
        /// The kernel's error.
        error: io::Error,
    },
    /// The kernel took fewer bytes than given.
    #[error("{iface}: sent {sent} of {len} bytes to {dst}")]
    ShortSend {
        /// The interface.
        iface: String,
        /// The destination.
        dst: IpAddr,
        /// Bytes taken.
        sent: usize,
        /// Bytes given.
        len: usize,
    },
    /// recvmsg(2) failed.
    #[error("{iface}: receiving a VRRP packet failed: {error}")]
    Receive {
        /// The interface.
        iface: String,
        /// The kernel's error.
        error: io::Error,
    },
    /// A received IPv4 packet's header does not hold together.
    #[error("{iface}: received an IPv4 packet with a malformed header ({len} bytes read)")]
    MalformedHeader {
        /// The interface.
        iface: String,
        /// Bytes read.
        len: usize,
    },
    /// A received IPv6 packet came without the ancillary data asked for.
    #[error("{iface}: received an IPv6 packet without its {what}")]
    MissingAncillary {
        /// The interface.
        iface: String,
        /// What was missing: "hop limit" or "packet info".
        what: &'static str,
    },
}

/// One received VRRP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The VRRP message (the IP payload, bounded by the IP length).
    pub payload: Vec<u8>,
    /// The IP source.
    pub src: IpAddr,
    /// The IP destination (the group, or our address for unicast).
    pub dst: IpAddr,
    /// IPv4 TTL or IPv6 hop limit as received; anything but 255 must be dropped.
    pub ttl: u8,
    /// The interface the packet arrived on.
    pub ifindex: u32,
    /// When the kernel received it (SO_TIMESTAMPNS, the real-time clock), if it said.
    pub arrived: Option<std::time::SystemTime>,
}

/// A raw VRRP socket bound to one interface and one family.
#[derive(Debug)]
pub struct VrrpSocket {
    fd: AsyncFd<Socket>,
    iface: String,
    ifindex: u32,
    family: Family,
    source: IpAddr,
    unicast_peers: Vec<IpAddr>,
    /// Reused receive buffer: a fresh zeroed 64 KiB per packet cost more CPU
    /// than the rest of the receive path together (one receiver per socket,
    /// so the lock is never contended).
    recv_buf: Mutex<Vec<u8>>,
}

impl VrrpSocket {
    /// Opens the socket on `iface` (index `ifindex`); adverts go out from `source`
    /// (the interface's primary IPv4 address, or its IPv6 link-local) to the VRRP
    /// group, or to each of `unicast_peers` when there are any (then no group is
    /// joined). Must be called inside a tokio runtime with I/O enabled.
    pub fn open(
        iface: &str,
        ifindex: u32,
        family: Family,
        source: IpAddr,
        unicast_peers: &[IpAddr],
    ) -> Result<VrrpSocket, SocketError> {
        for &addr in std::iter::once(&source).chain(unicast_peers) {
            if Family::of(addr) != family {
                return Err(SocketError::WrongFamily {
                    iface: iface.to_owned(),
                    addr,
                    family,
                });
            }
        }
        if let IpAddr::V6(addr) = source {
            if unicast_peers.is_empty() && !is_link_local(&addr) {
                return Err(SocketError::SourceNotLinkLocal {
                    iface: iface.to_owned(),
                    addr,
                });
            }
        }
        let domain = match family {
            Family::Ipv4 => Domain::IPV4,
            Family::Ipv6 => Domain::IPV6,
        };
        let socket = Socket::new(
            domain,
            Type::RAW,
            Some(Protocol::from(i32::from(IPPROTO_VRRP))),
        )
        .map_err(|source| match source.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => SocketError::NeedsCapNetRaw {
                iface: iface.to_owned(),
            },
            _ => SocketError::Open {
                iface: iface.to_owned(),
                family,
                error: source,
            },
        })?;
        let opt = |option: &'static str, result: io::Result<()>| {
            result.map_err(|source| match source.raw_os_error() {
                Some(libc::EPERM) => SocketError::NeedsCapNetRaw {
                    iface: iface.to_owned(),
                },
                _ => SocketError::SetOption {
                    iface: iface.to_owned(),
                    option,
                    error: source,
                },
            })
        };
        opt(
            "SO_BINDTODEVICE",
            socket.bind_device(Some(iface.as_bytes())),
        )?;
        opt("O_NONBLOCK", socket.set_nonblocking(true))?;
        let multicast = unicast_peers.is_empty();
        match family {
            Family::Ipv4 => {
                opt("IP_TTL", socket.set_ttl_v4(u32::from(VRRP_TTL)))?;
                opt(
                    "IP_MULTICAST_TTL",
                    socket.set_multicast_ttl_v4(u32::from(VRRP_TTL)),
                )?;
                opt("IP_MULTICAST_LOOP", socket.set_multicast_loop_v4(false))?;
                opt("IP_TOS", socket.set_tos_v4(u32::from(TOS_NETWORK_CONTROL)))?;
                // DF clear, as keepalived sends: an advert is far below any MTU.
                opt(
                    "IP_MTU_DISCOVER",
                    set_int(
                        &socket,
                        libc::IPPROTO_IP,
                        libc::IP_MTU_DISCOVER,
                        libc::IP_PMTUDISC_DONT,
                    ),
                )?;
                opt(
                    "IP_MULTICAST_IF",
                    set_multicast_if_index_v4(&socket, ifindex),
                )?;
                // Only the groups this socket joined: a unicast-mode socket ignores multicast.
                opt("IP_MULTICAST_ALL", socket.set_multicast_all_v4(false))?;
                opt(
                    "IP_PKTINFO",
                    set_int(&socket, libc::IPPROTO_IP, libc::IP_PKTINFO, 1),
                )?;
                opt(
                    "SO_TIMESTAMPNS",
                    set_int(&socket, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1),
                )?;
                if multicast {
                    socket
                        .join_multicast_v4_n(
                            &VRRP_GROUP_V4,
                            &InterfaceIndexOrAddress::Index(ifindex),
                        )
                        .map_err(|source| SocketError::JoinGroup {
                            iface: iface.to_owned(),
                            group: IpAddr::V4(VRRP_GROUP_V4),
                            ifindex,
                            error: source,
                        })?;
                }
            }
            Family::Ipv6 => {
                opt(
                    "IPV6_UNICAST_HOPS",
                    socket.set_unicast_hops_v6(u32::from(VRRP_TTL)),
                )?;
                opt(
                    "IPV6_MULTICAST_HOPS",
                    socket.set_multicast_hops_v6(u32::from(VRRP_TTL)),
                )?;
                opt("IPV6_MULTICAST_LOOP", socket.set_multicast_loop_v6(false))?;
                opt("IPV6_MULTICAST_IF", socket.set_multicast_if_v6(ifindex))?;
                opt(
                    "IPV6_TCLASS",
                    socket.set_tclass_v6(u32::from(TOS_NETWORK_CONTROL)),
                )?;
                opt("IPV6_MULTICAST_ALL", socket.set_multicast_all_v6(false))?;
                opt("IPV6_RECVHOPLIMIT", socket.set_recv_hoplimit_v6(true))?;
                opt(
                    "IPV6_RECVPKTINFO",
                    set_int(&socket, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1),
                )?;
                opt(
                    "SO_TIMESTAMPNS",
                    set_int(&socket, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1),
                )?;
                if multicast {
                    socket
                        .join_multicast_v6(&VRRP_GROUP_V6, ifindex)
                        .map_err(|source| SocketError::JoinGroup {
                            iface: iface.to_owned(),
                            group: IpAddr::V6(VRRP_GROUP_V6),
                            ifindex,
                            error: source,
                        })?;
                }
            }
        }
        // SAFETY: a socket2::Socket owns its fd, keeps it open until dropped and
        // always reports the same one; the AsyncFd owns the Socket.
        let fd = unsafe { AsyncFd::register(socket) }.map_err(|err| SocketError::Register {
            iface: iface.to_owned(),
            error: err.into(),
        })?;
        Ok(VrrpSocket {
            fd,
            iface: iface.to_owned(),
            ifindex,
            family,
            source,
            unicast_peers: unicast_peers.to_vec(),
            recv_buf: Mutex::new(vec![0u8; RECV_CAPACITY]),
        })
    }

    /// The interface name.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// The interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The address family.
    pub fn family(&self) -> Family {
        self.family
    }

    /// The source address of sent packets.
    pub fn source(&self) -> IpAddr {
        self.source
    }

    /// The unicast peers (empty: multicast).
    pub fn unicast_peers(&self) -> &[IpAddr] {
        &self.unicast_peers
    }

    /// Where an advert goes: the VRRP group, or every unicast peer.
    pub fn advert_destinations(&self) -> Vec<IpAddr> {
        if self.unicast_peers.is_empty() {
            vec![self.family.vrrp_group()]
        } else {
            self.unicast_peers.clone()
        }
    }

    /// Sends one VRRP message to each of [`Self::advert_destinations`]; returns
    /// how many packets went out. Stops at the first failure.
    pub async fn send_advert(&self, payload: &[u8]) -> Result<usize, SocketError> {
        let destinations = self.advert_destinations();
        for &dst in &destinations {
            self.send(payload, dst).await?;
        }
        Ok(destinations.len())
    }

    /// Sends one VRRP message (checksum already filled in) to `dst`; the kernel
    /// adds the IP header with our source address.
    pub async fn send(&self, payload: &[u8], dst: IpAddr) -> Result<(), SocketError> {
        self.send_from(payload, self.source, dst).await
    }

    /// [`Self::send`] from `source`: the address the message's checksum was
    /// computed with (IPv6 and v3 checksums cover it), so that the two never
    /// disagree when the source chosen for the instance changed since the open.
    pub async fn send_from(
        &self,
        payload: &[u8],
        source: IpAddr,
        dst: IpAddr,
    ) -> Result<(), SocketError> {
        for addr in [source, dst] {
            if Family::of(addr) != self.family {
                return Err(SocketError::WrongFamily {
                    iface: self.iface.clone(),
                    addr,
                    family: self.family,
                });
            }
        }
        if payload.len() > RECV_CAPACITY - 40 {
            return Err(SocketError::TooLong {
                iface: self.iface.clone(),
                len: payload.len(),
            });
        }
        let sent = self
            .fd
            .async_io(Interest::WRITABLE, |socket| {
                send_with_pktinfo(socket.as_raw_fd(), payload, source, dst, self.ifindex)
            })
            .await
            .map_err(|source| SocketError::Send {
                iface: self.iface.clone(),
                dst,
                error: source,
            })?;
        if sent != payload.len() {
            return Err(SocketError::ShortSend {
                iface: self.iface.clone(),
                dst,
                sent,
                len: payload.len(),
            });
        }
        Ok(())
    }

    /// The next VRRP packet already queued on the socket, without waiting and
    /// whatever the runtime believes of the socket's readiness; `None` if there is
    /// none. For the event loop to read adverts before it acts on a timer.
    pub fn recv_queued(&self) -> Option<Result<Received, SocketError>> {
        let raw = {
            let mut buf = self.recv_buf.lock().unwrap_or_else(PoisonError::into_inner);
            match recv_with_ancillary(self.fd.get_ref().as_raw_fd(), &mut buf) {
                Ok(raw) => Ok((buf.get(..raw.len).unwrap_or(&buf[..]).to_vec(), raw)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(source) => Err(SocketError::Receive {
                    iface: self.iface.clone(),
                    error: source,
                }),
            }
        };
        Some(raw.and_then(|(buf, raw)| match self.family {
            Family::Ipv4 => self.received_v4(buf, &raw),
            Family::Ipv6 => self.received_v6(buf, &raw),
        }))
    }

    /// Waits for the next VRRP packet on this interface. Packets with a TTL / hop
    /// limit other than 255 are returned too; see [`Received::ttl`].
    pub async fn recv(&self) -> Result<Received, SocketError> {
        let (buf, raw) = self
            .fd
            .async_io(Interest::READABLE, |socket| {
                let mut buf = self.recv_buf.lock().unwrap_or_else(PoisonError::into_inner);
                let raw = recv_with_ancillary(socket.as_raw_fd(), &mut buf)?;
                let packet = buf.get(..raw.len).unwrap_or(&buf[..]).to_vec();
                Ok((packet, raw))
            })
            .await
            .map_err(|source| SocketError::Receive {
                iface: self.iface.clone(),
                error: source,
            })?;
        match self.family {
            Family::Ipv4 => self.received_v4(buf, &raw),
            Family::Ipv6 => self.received_v6(buf, &raw),
        }
    }

    fn received_v4(&self, mut buf: Vec<u8>, raw: &RawReceive) -> Result<Received, SocketError> {
        let malformed = || SocketError::MalformedHeader {
            iface: self.iface.clone(),
            len: buf.len(),
        };
        if buf.len() < IPV4_MIN_HEADER || buf[0] >> 4 != 4 {
            return Err(malformed());
        }
        let header_len = usize::from(buf[0] & 0x0f) * 4;
        let total_len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        if header_len < IPV4_MIN_HEADER || total_len < header_len || total_len > buf.len() {
            return Err(malformed());
        }
        let ttl = buf[8];
        let src = Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]);
        let dst = Ipv4Addr::new(buf[16], buf[17], buf[18], buf[19]);
        buf.truncate(total_len);
        buf.drain(..header_len);
        Ok(Received {
            payload: buf,
            src: IpAddr::V4(src),
            dst: IpAddr::V4(dst),
            ttl,
            ifindex: raw.ifindex.unwrap_or(self.ifindex),
            arrived: raw.arrived,
        })
    }

    fn received_v6(&self, buf: Vec<u8>, raw: &RawReceive) -> Result<Received, SocketError> {
        let missing = |what| SocketError::MissingAncillary {
            iface: self.iface.clone(),
            what,
        };
        let ttl = raw.hop_limit.ok_or_else(|| missing("hop limit"))?;
        let dst = raw.dst.ok_or_else(|| missing("packet info"))?;
        let src = raw.src.ok_or_else(|| missing("source address"))?;
        Ok(Received {
            payload: buf,
            src,
            dst,
            ttl,
            ifindex: raw.ifindex.unwrap_or(self.ifindex),
            arrived: raw.arrived,
        })
    }
}

/// fe80::/10 (Ipv6Addr::is_unicast_link_local is newer than our MSRV).
fn is_link_local(addr: &Ipv6Addr) -> bool {
    addr.segments()[0] & 0xffc0 == 0xfe80
}

fn set_int(
    socket: &Socket,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the fd is open and the option value is a c_int of the size given.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// IP_MULTICAST_IF by index (ip_mreqn): socket2 only takes an address.
fn set_multicast_if_index_v4(socket: &Socket, ifindex: u32) -> io::Result<()> {
    let mreqn = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr { s_addr: 0 },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: libc::c_int::try_from(ifindex)
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
    };
    // SAFETY: the fd is open and the option value is an ip_mreqn of the size given.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            (&mreqn as *const libc::ip_mreqn).cast(),
            size_of::<libc::ip_mreqn>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Room for the control messages of a receive (packet info, timestamp, hop limit);
/// aligned like a cmsghdr, which the parser reads in place.
#[repr(C, align(8))]
struct ControlBuffer([u8; 128]);

/// sendmsg with IP_PKTINFO / IPV6_PKTINFO choosing the source address and the
/// interface: binding the socket to the source would, for IPv4 raw sockets, also
/// filter out everything not sent to that address (the group included).
fn send_with_pktinfo(
    fd: RawFd,
    payload: &[u8],
    src: IpAddr,
    dst: IpAddr,
    ifindex: u32,
) -> io::Result<usize> {
    let iov = [IoSlice::new(payload)];
    let flags = MsgFlags::empty();
    let sent = match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let info = libc::in_pktinfo {
                ipi_ifindex: libc::c_int::try_from(ifindex)
                    .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
                // The source address of the packet.
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from(src).to_be(),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            let to = SockaddrIn::from(SocketAddrV4::new(dst, 0));
            let cmsg = [ControlMessage::Ipv4PacketInfo(&info)];
            sock::sendmsg(fd, &iov, &cmsg, flags, Some(&to))
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let info = libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: src.octets(),
                },
                ipi6_ifindex: ifindex,
            };
            // The scope matters for link-scope destinations (ff02::12, fe80::/10).
            let scoped = is_link_local(&dst) || dst.segments()[0] & 0xff0f == 0xff02;
            // Raw IPv6 sockets take 0 or their own protocol as the port.
            let to = SockaddrIn6::from(SocketAddrV6::new(
                dst,
                0,
                0,
                if scoped { ifindex } else { 0 },
            ));
            let cmsg = [ControlMessage::Ipv6PacketInfo(&info)];
            sock::sendmsg(fd, &iov, &cmsg, flags, Some(&to))
        }
        _ => return Err(io::Error::from_raw_os_error(libc::EAFNOSUPPORT)),
    };
    Ok(sent?)
}

/// What recvmsg returned besides the bytes.
#[derive(Debug, Default)]
struct RawReceive {
    len: usize,
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    hop_limit: Option<u8>,
    ifindex: Option<u32>,
    arrived: Option<std::time::SystemTime>,
}

fn recv_with_ancillary(fd: RawFd, buf: &mut [u8]) -> io::Result<RawReceive> {
    let capacity = buf.len();
    let mut iov = [IoSliceMut::new(buf)];
    let mut control = ControlBuffer([0; 128]);
    let msg = sock::recvmsg::<SockaddrStorage>(
        fd,
        &mut iov,
        Some(&mut control.0[..]),
        MsgFlags::MSG_TRUNC,
    )?;
    if msg.bytes > capacity || msg.flags.contains(MsgFlags::MSG_TRUNC) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "packet longer than 65535 bytes",
        ));
    }
    let mut raw = RawReceive {
        len: msg.bytes,
        src: msg
            .address
            .as_ref()
            .and_then(|a| a.as_sockaddr_in6())
            .map(|a| IpAddr::V6(a.ip())),
        ..RawReceive::default()
    };
    for cmsg in msg.cmsgs()? {
        match cmsg {
            ControlMessageOwned::Ipv4PacketInfo(info) => {
                raw.ifindex = u32::try_from(info.ipi_ifindex).ok();
            }
            ControlMessageOwned::Ipv6PacketInfo(info) => {
                raw.dst = Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
                raw.ifindex = Some(info.ipi6_ifindex);
            }
            ControlMessageOwned::ScmTimestampns(ts) => {
                raw.arrived = u64::try_from(ts.tv_sec()).ok().map(|secs| {
                    std::time::UNIX_EPOCH
                        + std::time::Duration::new(secs, ts.tv_nsec().clamp(0, 999_999_999) as u32)
                });
            }
            ControlMessageOwned::Ipv6HopLimit(hops) => raw.hop_limit = u8::try_from(hops).ok(),
            _ => {}
        }
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_group_follows_the_family() {
        assert_eq!(
            Family::Ipv4.vrrp_group(),
            "224.0.0.18".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            Family::Ipv6.vrrp_group(),
            "ff02::12".parse::<IpAddr>().unwrap()
        );
        assert_eq!(Family::of("fe80::1".parse().unwrap()), Family::Ipv6);
    }

    #[tokio::test]
    async fn addresses_of_the_other_family_are_refused_before_any_syscall() {
        let err = VrrpSocket::open(
            "eth0",
            2,
            Family::Ipv4,
            "198.18.0.11".parse().unwrap(),
            &["2001:db8::2".parse().unwrap()],
        )
        .unwrap_err();
        assert!(matches!(err, SocketError::WrongFamily { .. }), "{err}");
        assert!(err.to_string().starts_with("eth0: 2001:db8::2"), "{err}");
    }

    #[tokio::test]
    async fn a_multicast_ipv6_source_must_be_link_local() {
        let err = VrrpSocket::open("eth0", 2, Family::Ipv6, "2001:db8::1".parse().unwrap(), &[])
            .unwrap_err();
        assert!(
            matches!(err, SocketError::SourceNotLinkLocal { .. }),
            "{err}"
        );
    }

    #[test]
    fn permission_errors_name_the_capability() {
        let err = SocketError::NeedsCapNetRaw {
            iface: "eth1".into(),
        };
        assert!(err.to_string().contains("eth1") && err.to_string().contains("CAP_NET_RAW"));
    }
}
