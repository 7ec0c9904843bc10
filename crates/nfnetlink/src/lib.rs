//! NETLINK_NETFILTER sockets, written once for every netfilter subsystem the suite
//! talks to: nf_tables (batches, dumps) and ctnetlink (dumps, requests, batches of
//! creates and deletes, events).
//!
//! The socket is [`netlink_sys::Socket`] and messages are framed with
//! [`netlink_packet_core::NetlinkBuffer`]; what is here is the part those crates leave
//! to the caller: buffer sizing, a batch sent in one `sendmsg`, the acknowledgement and
//! extended-ack reading, dump iteration, many datagrams per read (`recvmmsg`) and the
//! drain that follows an ENOBUFS.
//!
//! ```text
//! struct nlmsghdr { u32 len; u16 type; u16 flags; u32 seq; u32 pid; }   host order
//! struct nfgenmsg { u8 family; u8 version (0); be16 res_id; }
//! type = subsystem << 8 | message
//! ```
//!
//! A socket belongs to the network namespace of the thread that opened it.

use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use netlink_packet_core::NetlinkBuffer;
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};
use nix::sys::socket::{self as sock, sockopt, MsgFlags, NetlinkAddr};

/// Length of `struct nlmsghdr`.
pub const NLMSG_HDRLEN: usize = 16;
/// Length of `struct nfgenmsg`.
pub const NFGEN_HDRLEN: usize = 4;
/// `NLMSG_NOOP`.
pub const NLMSG_NOOP: u16 = 1;
/// `NLMSG_ERROR`: an error or (errno 0) an acknowledgement.
pub const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`: the end of a dump.
pub const NLMSG_DONE: u16 = 3;
/// `NLM_F_REQUEST`.
pub const NLM_F_REQUEST: u16 = 0x1;
/// `NLM_F_ACK`.
pub const NLM_F_ACK: u16 = 0x4;
/// `NLM_F_DUMP` (`NLM_F_ROOT | NLM_F_MATCH`).
pub const NLM_F_DUMP: u16 = 0x300;
/// `NLM_F_EXCL`.
pub const NLM_F_EXCL: u16 = 0x200;
/// `NLM_F_CREATE`.
pub const NLM_F_CREATE: u16 = 0x400;
/// On an NLMSG_ERROR: extended-ack attributes follow the echoed header.
const NLM_F_ACK_TLVS: u16 = 0x200;
/// `NLMSGERR_ATTR_MSG`: the kernel's text.
const NLMSGERR_ATTR_MSG: u16 = 1;

/// Rounds up to the 4-byte netlink alignment.
pub const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A socket failure, by the step that failed. Each variant says the OS error's text
/// itself and does not return it as `source()` as well: an `anyhow` chain (`{:#}`)
/// prints it once.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Opening, binding or configuring the socket.
    #[error("opening the netfilter netlink socket ({op}): {error}")]
    Open {
        /// The step.
        op: &'static str,
        /// The OS error.
        error: io::Error,
    },
    /// Sending.
    #[error("sending to netfilter netlink: {0}")]
    Send(io::Error),
    /// Receiving (EAGAIN/EWOULDBLOCK: the read timeout passed; ENOBUFS: the kernel
    /// dropped messages for this socket).
    #[error("receiving from netfilter netlink: {0}")]
    Recv(io::Error),
}

impl Error {
    /// Whether this is a receive that the read timeout ended.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Recv(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
    }

    /// Whether this is a receive that found the kernel had dropped messages (ENOBUFS).
    pub fn is_overflow(&self) -> bool {
        matches!(self, Error::Recv(e) if e.raw_os_error() == Some(libc::ENOBUFS))
    }
}

/// How to open a socket.
#[derive(Debug, Clone)]
pub struct Options {
    /// Multicast groups (legacy bit mask) to bind to; 0 for a request socket.
    pub groups: u32,
    /// Receive buffer in bytes (SO_RCVBUFFORCE, else SO_RCVBUF up to rmem_max).
    pub recv_buffer: usize,
    /// Longest a receive waits (None: forever).
    pub read_timeout: Option<Duration>,
    /// Room for one read of [`NfSocket::recv`] by [`NfSocket::request`] and
    /// [`NfSocket::recv_acks`].
    pub read_size: usize,
}

/// One refused (or, errno 0, acknowledged) message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Sequence number of the message answered.
    pub seq: u32,
    /// Positive errno (0: an acknowledgement).
    pub errno: i32,
    /// Extended-ack text.
    pub extack: String,
}

/// One netlink message in a received buffer.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// `nlmsg_type`.
    pub ty: u16,
    /// `nlmsg_flags`.
    pub flags: u16,
    /// `nlmsg_seq`.
    pub seq: u32,
    /// `nlmsg_pid`: for an event, the port id of the socket whose request caused it
    /// (0: the kernel's own, a packet or a timeout).
    pub pid: u32,
    /// What follows the header.
    pub payload: &'a [u8],
    /// The whole message, header included.
    pub bytes: &'a [u8],
}

impl Message<'_> {
    /// For an NLMSG_ERROR: the errno, the sequence number of the message answered and
    /// the extended-ack text; None when it is too short to read.
    pub fn refusal(&self) -> Option<Refusal> {
        let code = i32::from_ne_bytes(self.payload.get(..4)?.try_into().ok()?);
        let orig = self.payload.get(4..4 + NLMSG_HDRLEN)?;
        let seq = u32::from_ne_bytes(orig.get(8..12)?.try_into().ok()?);
        let mut extack = String::new();
        if self.flags & NLM_F_ACK_TLVS != 0 {
            // With NETLINK_CAP_ACK only the header is echoed; the TLVs follow it.
            let mut tlvs = &self.payload[4 + NLMSG_HDRLEN..];
            while tlvs.len() >= 4 {
                let len = usize::from(u16::from_ne_bytes([tlvs[0], tlvs[1]]));
                let ty = u16::from_ne_bytes([tlvs[2], tlvs[3]]);
                if len < 4 || len > tlvs.len() {
                    break;
                }
                if ty == NLMSGERR_ATTR_MSG {
                    extack = String::from_utf8_lossy(&tlvs[4..len])
                        .trim_end_matches('\0')
                        .to_owned();
                }
                tlvs = &tlvs[align4(len).min(tlvs.len())..];
            }
        }
        Some(Refusal {
            seq,
            errno: code.saturating_neg(),
            extack,
        })
    }
}

/// The netlink messages of a received datagram, up to the first malformed one.
pub fn messages(buf: &[u8]) -> impl Iterator<Item = Message<'_>> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        let nl = NetlinkBuffer::new_checked(rest).ok()?;
        let len = nl.length() as usize;
        let m = Message {
            ty: nl.message_type(),
            flags: nl.flags(),
            seq: nl.sequence_number(),
            pid: nl.port_number(),
            payload: &rest[NLMSG_HDRLEN..len],
            bytes: &rest[..len],
        };
        rest = &rest[align4(len).min(rest.len())..];
        Some(m)
    })
}

/// Appends one netfilter message (nlmsghdr + nfgenmsg + `attrs`) to `out`.
pub fn push_message(out: &mut Vec<u8>, ty: u16, flags: u16, seq: u32, family: u8, attrs: &[u8]) {
    let len = NLMSG_HDRLEN + NFGEN_HDRLEN + attrs.len();
    out.extend_from_slice(&(len as u32).to_ne_bytes());
    out.extend_from_slice(&ty.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&[family, 0, 0, 0]);
    out.extend_from_slice(attrs);
    out.resize(align4(out.len()), 0);
}

/// Appends an NLMSG_NOOP that asks for an acknowledgement: a barrier at the end of a
/// datagram of requests that ask for none (the kernel handles a datagram's messages
/// in order, so its ack comes after every error).
pub fn push_noop(out: &mut Vec<u8>, seq: u32) {
    out.extend_from_slice(&(NLMSG_HDRLEN as u32).to_ne_bytes());
    out.extend_from_slice(&NLMSG_NOOP.to_ne_bytes());
    out.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
}

/// An open NETLINK_NETFILTER socket.
#[derive(Debug)]
pub struct NfSocket {
    sock: Socket,
    read_size: usize,
}

impl NfSocket {
    /// Opens and binds a socket in the calling thread's network namespace.
    pub fn open(options: &Options) -> Result<NfSocket, Error> {
        let open = |op| move |error| Error::Open { op, error };
        let mut sock = Socket::new(NETLINK_NETFILTER).map_err(open("socket"))?;
        sock.bind(&SocketAddr::new(0, options.groups))
            .map_err(open("bind"))?;
        let s = NfSocket {
            sock,
            read_size: options.read_size,
        };
        s.set_recv_buffer(options.recv_buffer)
            .map_err(open("SO_RCVBUF"))?;
        // Acks and errors echo only the header (not the request: a batch of elements
        // would come back whole), plus the kernel's text; older kernels lack either.
        let _ = s.sock.set_cap_ack(true);
        let _ = s.sock.set_ext_ack(true);
        s.set_read_timeout(options.read_timeout)
            .map_err(open("SO_RCVTIMEO"))?;
        Ok(s)
    }

    fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the descriptor is open as long as self.sock is.
        unsafe { BorrowedFd::borrow_raw(self.sock.as_raw_fd()) }
    }

    /// Sets the receive buffer: SO_RCVBUFFORCE (CAP_NET_ADMIN, needed here anyway),
    /// else SO_RCVBUF within rmem_max.
    pub fn set_recv_buffer(&self, bytes: usize) -> io::Result<()> {
        sock::setsockopt(&self.fd(), sockopt::RcvBufForce, &bytes)
            .or_else(|_| sock::setsockopt(&self.fd(), sockopt::RcvBuf, &bytes))
            .map_err(io::Error::from)
    }

    /// Sets the send buffer the same way.
    pub fn set_send_buffer(&self, bytes: usize) -> io::Result<()> {
        sock::setsockopt(&self.fd(), sockopt::SndBufForce, &bytes)
            .or_else(|_| sock::setsockopt(&self.fd(), sockopt::SndBuf, &bytes))
            .map_err(io::Error::from)
    }

    /// Sets how long a receive waits (None or zero: forever).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        let d = timeout.unwrap_or(Duration::ZERO);
        let tv = nix::sys::time::TimeVal::new(
            d.as_secs() as libc::time_t,
            libc::suseconds_t::from(d.subsec_micros() as i32),
        );
        sock::setsockopt(&self.fd(), sockopt::ReceiveTimeout, &tv).map_err(io::Error::from)
    }

    /// This socket's netlink port id: the kernel stamps it on the events that this
    /// socket's requests cause.
    pub fn portid(&self) -> io::Result<u32> {
        let mut addr = SocketAddr::new(0, 0);
        self.sock.get_address(&mut addr)?;
        Ok(addr.port_number())
    }

    /// Sends one datagram to the kernel.
    pub fn send(&self, buf: &[u8]) -> Result<(), Error> {
        self.sock
            .send_to(buf, &SocketAddr::new(0, 0), 0)
            .map_err(Error::Send)?;
        Ok(())
    }

    /// Sends `pages` as one datagram in one `sendmsg` (nf_tables wants a batch in one
    /// skb), with the send buffer sized to hold it.
    pub fn send_pages(&self, pages: &[&[u8]]) -> Result<(), Error> {
        let total: usize = pages.iter().map(|p| p.len()).sum();
        let want = (total + (1 << 16)).min(i32::MAX as usize);
        self.set_send_buffer(want).map_err(Error::Send)?;
        let iov: Vec<IoSlice<'_>> = pages.iter().map(|p| IoSlice::new(p)).collect();
        sock::sendmsg(
            self.sock.as_raw_fd(),
            &iov,
            &[],
            MsgFlags::empty(),
            Some(&NetlinkAddr::new(0, 0)),
        )
        .map_err(|e| Error::Send(e.into()))?;
        Ok(())
    }

    /// Receives one datagram into `buf` (its length back); EINTR is retried.
    pub fn recv(&self, buf: &mut [u8], flags: libc::c_int) -> Result<usize, Error> {
        loop {
            match self.sock.recv(&mut &mut buf[..], flags) {
                Ok(n) => return Ok(n.min(buf.len())),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Recv(e)),
            }
        }
    }

    /// Reads and discards whatever is queued, without waiting: after an overflow
    /// (ENOBUFS) the kernel drops every further multicast message for this socket,
    /// without reporting it again, until its queue has been read empty.
    pub fn drain(&self) {
        let mut scratch = [0u8; 4096];
        loop {
            match self
                .sock
                .recv(&mut &mut scratch[..], libc::MSG_DONTWAIT | libc::MSG_TRUNC)
            {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // EAGAIN: empty (any other error: nothing more to read either).
                Err(_) => return,
            }
        }
    }

    /// Sends one request (`msg`, numbered `seq`) and hands every answer of that number
    /// to `each` until the dump ends (NLMSG_DONE) or the kernel acknowledges or refuses
    /// it (NLMSG_ERROR). Returns the refusal, if any; answers that cannot be read
    /// count as refused with EIO.
    pub fn request<E: From<Error>>(
        &self,
        msg: &[u8],
        seq: u32,
        mut each: impl FnMut(&Message<'_>) -> Result<(), E>,
    ) -> Result<Option<Refusal>, E> {
        self.send(msg)?;
        let mut buf = vec![0u8; self.read_size];
        loop {
            let n = self.recv(&mut buf, 0)?;
            for m in messages(&buf[..n]) {
                if m.seq != seq {
                    continue;
                }
                match m.ty {
                    NLMSG_DONE => return Ok(None),
                    NLMSG_ERROR => {
                        let r = m.refusal().unwrap_or(Refusal {
                            seq,
                            errno: libc::EIO,
                            extack: String::new(),
                        });
                        return Ok((r.errno != 0).then_some(r));
                    }
                    _ => each(&m)?,
                }
            }
        }
    }

    /// Sends a batch (`pages`, one datagram) and waits for an answer to each sequence
    /// number in `seqs`; returns the refusals.
    ///
    /// The kernel processes a batch inside `sendmsg` and queues every answer before it
    /// returns; an aborted batch gets no ack for its end message, so once a refusal is
    /// seen only what is queued is read. A refusal of the first message (the batch
    /// header) or of an unnumbered one ends the batch.
    pub fn send_batch(
        &self,
        pages: &[&[u8]],
        seqs: std::ops::Range<u32>,
    ) -> Result<Vec<Refusal>, Error> {
        self.send_pages(pages)?;
        let mut pending: std::collections::BTreeSet<u32> = seqs.clone().collect();
        let mut refusals = Vec::new();
        let mut buf = vec![0u8; self.read_size];
        while !pending.is_empty() {
            let n = if refusals.is_empty() {
                self.recv(&mut buf, 0)?
            } else {
                match self.recv(&mut buf, libc::MSG_DONTWAIT) {
                    Ok(n) => n,
                    Err(e) if e.is_timeout() => break,
                    Err(e) => return Err(e),
                }
            };
            for m in messages(&buf[..n]) {
                if m.ty != NLMSG_ERROR {
                    continue;
                }
                let Some(r) = m.refusal() else { continue };
                if !seqs.contains(&r.seq) && r.seq != 0 {
                    continue;
                }
                pending.remove(&r.seq);
                if r.errno != 0 {
                    if r.seq == seqs.start || r.seq == 0 {
                        pending.clear();
                    }
                    refusals.push(r);
                }
            }
        }
        Ok(refusals)
    }
}

impl AsRawFd for NfSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

/// Datagrams read per system call by [`Datagrams::recv`].
const SLOTS: usize = 64;
/// Room for one datagram: events and acks are far smaller; a dump's are up to 16 KiB.
const SLOT: usize = 32 << 10;

/// Buffers for reading many netlink datagrams in one `recvmmsg`: each event and each
/// ack is a datagram of its own (one `recv` per entry otherwise).
pub struct Datagrams {
    buf: Vec<u8>,
    lens: [usize; SLOTS],
    count: usize,
}

impl std::fmt::Debug for Datagrams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Datagrams")
            .field("count", &self.count)
            .finish()
    }
}

impl Default for Datagrams {
    fn default() -> Self {
        Self::new()
    }
}

impl Datagrams {
    /// Empty buffers (2 MiB).
    pub fn new() -> Self {
        Self {
            buf: vec![0u8; SLOTS * SLOT],
            lens: [0; SLOTS],
            count: 0,
        }
    }

    /// Waits for one datagram (as the socket's timeout allows), then takes whatever
    /// else is queued, up to 64; EINTR is retried.
    pub fn recv(&mut self, sock: &NfSocket) -> Result<(), Error> {
        loop {
            let mut headers = sock::MultiHeaders::<NetlinkAddr>::preallocate(SLOTS, None);
            let mut slices: Vec<[IoSliceMut<'_>; 1]> = self
                .buf
                .chunks_mut(SLOT)
                .map(|c| [IoSliceMut::new(c)])
                .collect();
            match sock::recvmmsg(
                sock.as_raw_fd(),
                &mut headers,
                slices.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) {
                Ok(results) => {
                    let mut count = 0;
                    for (len, r) in self.lens.iter_mut().zip(results) {
                        *len = r.bytes.min(SLOT);
                        count += 1;
                    }
                    self.count = count;
                    return Ok(());
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::Recv(e.into())),
            }
        }
    }

    /// The datagrams of the last [`Datagrams::recv`].
    pub fn each(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.count).map(|i| &self.buf[i * SLOT..i * SLOT + self.lens[i]])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_prints_the_inner_text_once() {
        let kernel = || io::Error::other("the kernel said no");
        let errors: Vec<anyhow::Error> = vec![
            Error::Open {
                op: "bind",
                error: kernel(),
            }
            .into(),
            Error::Send(kernel()).into(),
            Error::Recv(kernel()).into(),
        ];
        for e in errors {
            let chain = format!("{e:#}");
            assert_eq!(chain.matches("the kernel said no").count(), 1, "{chain}");
        }
    }

    #[test]
    fn messages_stop_at_a_truncated_one() {
        let mut buf = Vec::new();
        push_message(&mut buf, 0x0101, NLM_F_REQUEST, 7, 2, &[1, 2, 3]);
        push_noop(&mut buf, 8);
        let whole = buf.len();
        push_message(&mut buf, 0x0101, 0, 9, 2, &[0; 8]);
        buf.truncate(whole + 10);
        let got: Vec<_> = messages(&buf)
            .map(|m| (m.ty, m.seq, m.bytes.len()))
            .collect();
        assert_eq!(got, vec![(0x0101, 7, 23), (NLMSG_NOOP, 8, 16)]);
    }

    #[test]
    fn refusal_reads_errno_seq_and_extack() {
        // NLMSG_ERROR: -EINVAL, the echoed header of message 42, then NLMSGERR_ATTR_MSG.
        let mut payload = (-libc::EINVAL).to_ne_bytes().to_vec();
        let mut orig = Vec::new();
        push_noop(&mut orig, 42);
        payload.extend_from_slice(&orig);
        let text = b"bad set\0";
        payload.extend_from_slice(&((4 + text.len()) as u16).to_ne_bytes());
        payload.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        payload.extend_from_slice(text);
        let mut buf = Vec::new();
        buf.extend_from_slice(&((NLMSG_HDRLEN + payload.len()) as u32).to_ne_bytes());
        buf.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        buf.extend_from_slice(&NLM_F_ACK_TLVS.to_ne_bytes());
        buf.extend_from_slice(&42u32.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&payload);
        let m = messages(&buf).next().expect("one message");
        assert_eq!(
            m.refusal(),
            Some(Refusal {
                seq: 42,
                errno: libc::EINVAL,
                extack: "bad set".into()
            })
        );
        let short = Message {
            payload: &payload[..10],
            ..m
        };
        assert_eq!(short.refusal(), None);
    }
}
