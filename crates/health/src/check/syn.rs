//! Half-open TCP probes (`tcp_syn`): one SYN from a raw socket; a SYN-ACK means a
//! listener answered, a RST means none did. The kernel answers the SYN-ACK with a RST
//! itself (no socket of ours holds the port), so the server never sees a connection
//! and this host keeps no socket per check: one `sendto` and a share of one `recv`,
//! where a connect check costs a socket, a connect, a close and their epoll traffic.
//! Needs CAP_NET_RAW.
//!
//! Probes go out from ports 61000..=65535, above Linux's default ephemeral range, so
//! that the kernel's own connections do not reuse them meanwhile; each server's probes
//! take those ports in turn; a reply counts only if it acknowledges the probe's random
//! initial sequence number.

use std::collections::HashMap;
use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::sync::oneshot;

use crate::outcome::FailReason;

const FIRST_PORT: u16 = 61_000;
const PORTS: u32 = 4_536;

const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// (server address, server port, our port).
type Key = (IpAddr, u16, u16);

/// What a probe waits for.
struct Waiter {
    /// The acknowledgement number a genuine answer carries (our ISN + 1).
    ack: u32,
    reply: oneshot::Sender<bool>,
}

/// One raw TCP socket of a family, and the probes waiting on it.
struct Family {
    socket: Socket,
    waiters: Mutex<HashMap<Key, Waiter>>,
    /// The next probe port per server: each server's probes walk the range one port
    /// at a time, so a server sees a connection tuple again only after 4,536 of its
    /// own probes (with one counter for all probes the same tuple came back for a
    /// server about once in 4,536 probes, while connection tracking on either side
    /// may still remember the last one).
    ports: Mutex<HashMap<(IpAddr, u16), u16>>,
}

/// The prober of a process: its sockets open on first use, and a thread per family
/// reads the replies (no tie to any one tokio runtime).
pub(crate) struct SynProber {
    v4: Result<Arc<Family>, String>,
    v6: Result<Arc<Family>, String>,
    next: AtomicU32,
    seed: u64,
}

static PROBER: OnceLock<SynProber> = OnceLock::new();

/// Whether half-open probes can run here for the families asked: opens the prober's
/// raw sockets now (in the calling thread's network namespace) and says why not, so a
/// daemon can refuse a configuration instead of marking every such server down.
pub fn ready(v4: bool, v6: bool) -> Result<(), String> {
    let prober = PROBER.get_or_init(SynProber::open);
    if v4 {
        prober.v4.as_ref().map(drop).map_err(Clone::clone)?;
    }
    if v6 {
        prober.v6.as_ref().map(drop).map_err(Clone::clone)?;
    }
    Ok(())
}

/// A half-open probe of `addr` from `source` (the kernel's choice of source if none).
pub(crate) async fn probe(addr: SocketAddr, source: Option<IpAddr>) -> Result<(), FailReason> {
    let prober = PROBER.get_or_init(SynProber::open);
    prober.probe(addr, source).await
}

impl SynProber {
    fn open() -> SynProber {
        let family = |domain: Domain| -> Result<Arc<Family>, String> {
            let socket =
                Socket::new(domain, Type::RAW, Some(Protocol::TCP)).map_err(|e| {
                    match e.raw_os_error() {
                        Some(libc::EPERM) | Some(libc::EACCES) => {
                            "tcp_syn checks need CAP_NET_RAW (a raw TCP socket)".to_owned()
                        }
                        _ => format!("raw TCP socket: {e}"),
                    }
                })?;
            // Every TCP segment delivered to this host is queued here until the reader
            // takes it (at most a millisecond later); room for bursts of thousands.
            // SO_RCVBUFFORCE needs CAP_NET_ADMIN (lbd has it); else the usual cap.
            let want: libc::c_int = 4 << 20;
            // SAFETY: a valid socket and a pointer to an int of the size given.
            let forced = unsafe {
                libc::setsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&socket),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUFFORCE,
                    (&want as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if forced != 0 {
                let _ = socket.set_recv_buffer_size(want as usize);
            }
            let family = Arc::new(Family {
                socket,
                waiters: Mutex::new(HashMap::new()),
                ports: Mutex::new(HashMap::new()),
            });
            let reader = Arc::clone(&family);
            let v6 = domain == Domain::IPV6;
            std::thread::Builder::new()
                .name(if v6 { "tcp-syn-6" } else { "tcp-syn-4" }.into())
                .spawn(move || reader.read_replies(v6))
                .map_err(|e| format!("reply reader thread: {e}"))?;
            Ok(family)
        };
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()) << 32;
        SynProber {
            v4: family(Domain::IPV4),
            v6: family(Domain::IPV6),
            next: AtomicU32::new(0),
            seed,
        }
    }

    async fn probe(&self, addr: SocketAddr, source: Option<IpAddr>) -> Result<(), FailReason> {
        let family = if addr.is_ipv4() { &self.v4 } else { &self.v6 };
        let family = family.as_ref().map_err(|e| FailReason::Config(e.clone()))?;
        let source = match source {
            Some(s) => {
                super::tcp::check_family(s, addr)?;
                s
            }
            None => route_source(addr).map_err(|e| FailReason::Io(e.to_string()))?,
        };
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let first = {
            let mut ports = family.ports.lock().unwrap_or_else(PoisonError::into_inner);
            let next = ports
                .entry((addr.ip(), addr.port()))
                .or_insert((n % PORTS) as u16);
            let port = *next;
            *next = ((u32::from(port) + 1) % PORTS) as u16;
            port
        };
        // A probe still waiting on the same server and port (a slow one) keeps its
        // port: take the next.
        let (key, isn, rx) = {
            let mut waiters = family.lock();
            let mut free = None;
            for k in 0..8u32 {
                let port = FIRST_PORT + ((u32::from(first) + k) % PORTS) as u16;
                let key = (addr.ip(), addr.port(), port);
                if !waiters.contains_key(&key) {
                    free = Some((key, mix(self.seed ^ u64::from(n)) as u32));
                    break;
                }
            }
            let (key, isn) = free.ok_or_else(|| FailReason::Io("no free probe port".into()))?;
            let (tx, rx) = oneshot::channel();
            waiters.insert(
                key,
                Waiter {
                    ack: isn.wrapping_add(1),
                    reply: tx,
                },
            );
            (key, isn, rx)
        };
        let port = key.2;
        // Removes the waiter however the probe ends (answered, failed, timed out).
        let _guard = Unregister { family, key };
        let segment = syn_segment(source, addr, port, isn);
        let to = SockAddr::from(SocketAddr::new(addr.ip(), 0));
        family
            .socket
            .send_to_from(&segment, &to, source)
            .map_err(io_reason)?;
        match rx.await {
            Ok(true) => Ok(()),
            Ok(false) => Err(FailReason::Refused),
            Err(_) => Err(FailReason::Io("the reply reader stopped".into())),
        }
    }
}

impl Family {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Waiter>> {
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads every TCP segment delivered to this host and answers the probe it is for.
    ///
    /// Waits for one segment, takes whatever else is queued, then pauses for a
    /// millisecond before waiting again: at thousands of replies a second this thread
    /// and the checks' runtime wake about a thousand times a second instead of once
    /// per reply, for at most a millisecond of added check time.
    fn read_replies(&self, v6: bool) {
        let mut buf = [MaybeUninit::<u8>::uninit(); 2048];
        let mut drained = 0u32;
        loop {
            let flags = if drained == 0 { 0 } else { libc::MSG_DONTWAIT };
            let (n, from) = match self.socket.recv_from_with_flags(&mut buf, flags) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    drained = 0;
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "tcp_syn: reading replies failed; probes will time out");
                    return;
                }
            };
            drained = drained.wrapping_add(1).max(1);
            // SAFETY: recv_from initialised the first n bytes.
            let data: &[u8] = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) };
            let Some(from) = from.as_socket().map(|a| a.ip()) else {
                continue;
            };
            // IPv4 raw sockets see the IP header, IPv6 ones the TCP header only.
            let tcp = if v6 {
                Some(data)
            } else {
                data.first()
                    .map(|b| usize::from(b & 0x0f) * 4)
                    .and_then(|ihl| data.get(ihl..))
            };
            if let Some(reply) = tcp.and_then(parse_reply) {
                self.answer(from, reply);
            }
        }
    }

    fn answer(&self, from: IpAddr, r: Reply) {
        let key = (from, r.src_port, r.dst_port);
        let mut waiters = self.lock();
        let Some(w) = waiters.get(&key) else { return };
        let up = r.flags & (SYN | ACK) == SYN | ACK;
        let down = r.flags & RST != 0;
        if r.flags & ACK == 0 || r.ack != w.ack || !(up || down) {
            return;
        }
        if let Some(w) = waiters.remove(&key) {
            let _ = w.reply.send(up);
        }
    }
}

struct Unregister<'a> {
    family: &'a Family,
    key: Key,
}

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        self.family.lock().remove(&self.key);
    }
}

/// The fields of a reply segment that matter.
#[derive(Debug, PartialEq, Eq)]
struct Reply {
    src_port: u16,
    dst_port: u16,
    ack: u32,
    flags: u8,
}

fn parse_reply(tcp: &[u8]) -> Option<Reply> {
    let b = tcp.get(..20)?;
    let dst_port = u16::from_be_bytes([b[2], b[3]]);
    if !(FIRST_PORT..=FIRST_PORT + (PORTS - 1) as u16).contains(&dst_port) {
        return None;
    }
    Some(Reply {
        src_port: u16::from_be_bytes([b[0], b[1]]),
        dst_port,
        ack: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        flags: b[13],
    })
}

/// A 20-byte SYN from `source`:`port` to `dst`, checksum included.
fn syn_segment(source: IpAddr, dst: SocketAddr, port: u16, isn: u32) -> [u8; 20] {
    let mut s = [0u8; 20];
    s[0..2].copy_from_slice(&port.to_be_bytes());
    s[2..4].copy_from_slice(&dst.port().to_be_bytes());
    s[4..8].copy_from_slice(&isn.to_be_bytes());
    s[12] = 5 << 4; // data offset: 5 words, no options
    s[13] = SYN;
    s[14..16].copy_from_slice(&64_240u16.to_be_bytes()); // window
    let sum = checksum(source, dst.ip(), &s);
    s[16..18].copy_from_slice(&sum.to_be_bytes());
    s
}

/// The TCP checksum over the pseudo-header (RFC 9293 §3.1; RFC 8200 §8.1 for IPv6).
fn checksum(src: IpAddr, dst: IpAddr, segment: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let hi = u32::from(pair[0]) << 8;
            sum += hi | pair.get(1).map_or(0, |&lo| u32::from(lo));
        }
    };
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            add(&s.octets());
            add(&d.octets());
        }
        (s, d) => {
            add(&v6_octets(s));
            add(&v6_octets(d));
        }
    }
    let len = segment.len() as u32;
    add(&[0, 6]);
    add(&len.to_be_bytes());
    add(segment);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn v6_octets(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
    }
}

/// The source the kernel would pick for `dst` (a connected UDP socket sends nothing).
fn route_source(dst: SocketAddr) -> io::Result<IpAddr> {
    let any: SocketAddr = if dst.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let udp = UdpSocket::bind(any)?;
    udp.connect(dst)?;
    Ok(udp.local_addr()?.ip())
}

/// splitmix64: spreads a counter into unpredictable-looking sequence numbers.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn io_reason(e: io::Error) -> FailReason {
    super::tcp::io_reason(e)
}

/// Sending from a chosen source address on a raw socket: IP_PKTINFO / IPV6_PKTINFO.
trait SendFrom {
    fn send_to_from(&self, buf: &[u8], to: &SockAddr, source: IpAddr) -> io::Result<usize>;
}

impl SendFrom for Socket {
    fn send_to_from(&self, buf: &[u8], to: &SockAddr, source: IpAddr) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        // Room for one in_pktinfo or in6_pktinfo control message.
        let mut control = [0u64; 8];
        let mut iov = libc::iovec {
            iov_base: buf.as_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: msghdr is plain data; every pointer set below outlives sendmsg.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = to.as_ptr() as *mut libc::c_void;
        msg.msg_namelen = to.len();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        // The control message's payload, built in place: this runs once per probe.
        let mut payload = [0u8; std::mem::size_of::<libc::in6_pktinfo>()];
        let (level, kind, len) = match source {
            IpAddr::V4(s) => {
                let info = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from_ne_bytes(s.octets()),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                (
                    libc::IPPROTO_IP,
                    libc::IP_PKTINFO,
                    copy_into(&mut payload, &info),
                )
            }
            IpAddr::V6(s) => {
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: s.octets(),
                    },
                    ipi6_ifindex: 0,
                };
                (
                    libc::IPPROTO_IPV6,
                    libc::IPV6_PKTINFO,
                    copy_into(&mut payload, &info),
                )
            }
        };
        let data = &payload[..len];
        // SAFETY: CMSG_SPACE/CMSG_LEN are pure computations.
        let space = unsafe { libc::CMSG_SPACE(data.len() as u32) } as usize;
        if space > std::mem::size_of_val(&control) {
            return Err(io::Error::other("control buffer too small"));
        }
        msg.msg_controllen = space;
        // SAFETY: msg_control points at `control`, which holds `space` bytes, so the
        // first header and its data are inside it.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = level;
            (*cmsg).cmsg_type = kind;
            (*cmsg).cmsg_len = libc::CMSG_LEN(data.len() as u32) as usize;
            std::ptr::copy_nonoverlapping(data.as_ptr(), libc::CMSG_DATA(cmsg), data.len());
        }
        // SAFETY: msg is fully initialised above and its buffers are alive.
        let n = unsafe { libc::sendmsg(self.as_raw_fd(), &msg, libc::MSG_DONTWAIT) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

/// Copies the bytes of the plain C struct `v` to the start of `out`; their length.
fn copy_into<T: Copy>(out: &mut [u8], v: &T) -> usize {
    let n = std::mem::size_of::<T>().min(out.len());
    // SAFETY: T is a plain C struct (no pointers, no invariants); its first n bytes are
    // readable and `out` has room for them.
    unsafe { std::ptr::copy_nonoverlapping((v as *const T).cast::<u8>(), out.as_mut_ptr(), n) };
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syn_checksum_verifies_to_zero() {
        let src: IpAddr = "198.18.1.11".parse().unwrap();
        let dst: SocketAddr = "198.18.1.21:80".parse().unwrap();
        let s = syn_segment(src, dst, 61_001, 0x0102_0304);
        assert_eq!(checksum(src, dst.ip(), &s), 0);
        assert_eq!(s[13], SYN);
        let src6: IpAddr = "2001:db8:0:b::11".parse().unwrap();
        let dst6: SocketAddr = "[2001:db8:0:b::21]:443".parse().unwrap();
        let s6 = syn_segment(src6, dst6, 65_535, 7);
        assert_eq!(checksum(src6, dst6.ip(), &s6), 0);
    }

    #[test]
    fn replies_outside_the_probe_ports_are_ignored() {
        let mut seg = [0u8; 20];
        seg[0..2].copy_from_slice(&80u16.to_be_bytes());
        seg[2..4].copy_from_slice(&22u16.to_be_bytes());
        assert_eq!(parse_reply(&seg), None);
        seg[2..4].copy_from_slice(&61_000u16.to_be_bytes());
        seg[8..12].copy_from_slice(&5u32.to_be_bytes());
        seg[13] = SYN | ACK;
        assert_eq!(
            parse_reply(&seg),
            Some(Reply {
                src_port: 80,
                dst_port: 61_000,
                ack: 5,
                flags: SYN | ACK
            })
        );
        assert_eq!(parse_reply(&seg[..19]), None);
    }
}
