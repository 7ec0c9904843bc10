//! A NETLINK_NETFILTER socket: batches out, acknowledgements and dumps in.
//!
//! The socket belongs to the network namespace of the thread that opened it.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::io;
use std::mem::size_of;
use std::ops::Range;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use crate::DataplaneError;

/// How long to wait for the kernel's answers.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
const RECV_BUF: usize = 1 << 20;
const NLMSGERR_ATTR_MSG: u16 = 1;
const NLM_F_ACK_TLVS: u16 = 0x200;

/// One refused message of a batch.
#[derive(Debug)]
pub struct Refusal {
    /// Sequence number of the refused message.
    pub seq: u32,
    /// Positive errno.
    pub errno: i32,
    /// Extended-ack text.
    pub extack: String,
}

/// An open NETLINK_NETFILTER socket.
#[derive(Debug)]
pub struct NfSocket {
    fd: OwnedFd,
    seq: Cell<u32>,
}

fn os_err(op: &'static str) -> DataplaneError {
    DataplaneError::Socket {
        op,
        source: io::Error::last_os_error(),
    }
}

fn setopt(
    fd: i32,
    level: i32,
    name: i32,
    value: i32,
    op: &'static str,
) -> Result<(), DataplaneError> {
    // SAFETY: a valid fd and a pointer to an int of the stated size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const i32).cast(),
            size_of::<i32>() as u32,
        )
    };
    if r < 0 {
        Err(os_err(op))
    } else {
        Ok(())
    }
}

impl NfSocket {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> Result<NfSocket, DataplaneError> {
        // SAFETY: plain socket call.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_NETFILTER,
            )
        };
        if fd < 0 {
            return Err(os_err("socket"));
        }
        // SAFETY: fd is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let raw = fd.as_raw_fd();
        // SAFETY: zeroed sockaddr_nl is valid; kernel assigns the port id.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: pointer and size of a sockaddr_nl.
        let r = unsafe {
            libc::bind(
                raw,
                (&sa as *const libc::sockaddr_nl).cast(),
                size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if r < 0 {
            return Err(os_err("bind"));
        }
        // Errors echo only the header (not 64 KiB of elements), plus the kernel's text.
        setopt(
            raw,
            libc::SOL_NETLINK,
            libc::NETLINK_CAP_ACK,
            1,
            "setsockopt NETLINK_CAP_ACK",
        )?;
        let _ = setopt(
            raw,
            libc::SOL_NETLINK,
            libc::NETLINK_EXT_ACK,
            1,
            "setsockopt NETLINK_EXT_ACK",
        );
        // Room for many acks and dump pages; FORCE needs CAP_NET_ADMIN, which we need anyway.
        if setopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            8 << 20,
            "rcvbuf",
        )
        .is_err()
        {
            let _ = setopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, 8 << 20, "rcvbuf");
        }
        let tv = libc::timeval {
            tv_sec: ANSWER_TIMEOUT.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        // SAFETY: pointer and size of a timeval.
        let r = unsafe {
            libc::setsockopt(
                raw,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as u32,
            )
        };
        if r < 0 {
            return Err(os_err("setsockopt SO_RCVTIMEO"));
        }
        Ok(NfSocket {
            fd,
            seq: Cell::new(0x4000_0000),
        })
    }

    /// A fresh sequence number for a request (batches number their own from 1).
    pub fn next_seq(&self) -> u32 {
        let s = self.seq.get().wrapping_add(1).max(0x4000_0000);
        self.seq.set(s);
        s
    }

    /// Sends a whole batch in one sendmsg (the kernel wants a batch in one skb) and
    /// waits for an answer to each sequence number in `seqs`.
    pub fn send_batch(
        &self,
        pages: &[&[u8]],
        seqs: Range<u32>,
    ) -> Result<Vec<Refusal>, DataplaneError> {
        let raw = self.fd.as_raw_fd();
        let total: usize = pages.iter().map(|p| p.len()).sum();
        let want = i32::try_from(total + (1 << 16)).unwrap_or(i32::MAX);
        if setopt(raw, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, want, "sndbuf").is_err() {
            setopt(
                raw,
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                want,
                "setsockopt SO_SNDBUF",
            )?;
        }
        let mut iov: Vec<libc::iovec> = pages
            .iter()
            .map(|p| libc::iovec {
                iov_base: p.as_ptr() as *mut libc::c_void,
                iov_len: p.len(),
            })
            .collect();
        // SAFETY: zeroed sockaddr_nl/msghdr are valid; destination is the kernel (pid 0).
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&mut sa as *mut libc::sockaddr_nl).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_nl>() as u32;
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = iov.len();
        // SAFETY: msg points at live iovecs over the batch pages.
        let sent = unsafe { libc::sendmsg(raw, &msg, 0) };
        if sent < 0 {
            return Err(os_err("sendmsg batch"));
        }
        let mut pending: BTreeSet<u32> = seqs.clone().collect();
        let mut refusals = Vec::new();
        let mut buf = vec![0u8; RECV_BUF];
        // The kernel processes the batch inside sendmsg and queues every answer before
        // it returns; an aborted batch gets no ack for its end message, so once a
        // refusal is seen, read only what is queued.
        while !pending.is_empty() {
            let n = if refusals.is_empty() {
                self.recv(&mut buf, 0)?
            } else {
                match self.recv(&mut buf, libc::MSG_DONTWAIT) {
                    Ok(n) => n,
                    Err(DataplaneError::Timeout(_)) => break,
                    Err(e) => return Err(e),
                }
            };
            for (hdr, payload) in messages(&buf[..n]) {
                if hdr.nlmsg_type != libc::NLMSG_ERROR as u16 {
                    continue;
                }
                let Some((errno, seq, extack)) = parse_error(&hdr, payload) else {
                    continue;
                };
                if !seqs.contains(&seq) && seq != 0 {
                    continue;
                }
                pending.remove(&seq);
                if errno != 0 {
                    refusals.push(Refusal { seq, errno, extack });
                    // An error on the batch header (or unnumbered) ends the batch.
                    if seq == seqs.start || seq == 0 {
                        pending.clear();
                    }
                }
            }
        }
        Ok(refusals)
    }

    fn recv(&self, buf: &mut [u8], flags: i32) -> Result<usize, DataplaneError> {
        loop {
            // SAFETY: buf is writable for its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    flags,
                )
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => return Err(DataplaneError::Timeout(ANSWER_TIMEOUT)),
                _ => {
                    return Err(DataplaneError::Socket {
                        op: "recv",
                        source: e,
                    })
                }
            }
        }
    }

    /// Sends one request built by `build` (given the buffer, returns the message length)
    /// and hands every answer message of type NFT_MSG_* to `each` until the dump (or
    /// the ack) ends. Returns the errno if the kernel refused the request.
    pub fn request(
        &self,
        build: impl FnOnce(&mut [u8], u32) -> usize,
        mut each: impl FnMut(&libc::nlmsghdr, *const libc::nlmsghdr),
    ) -> Result<Option<i32>, DataplaneError> {
        let seq = self.next_seq();
        let mut out = vec![0u8; nftnl::nft_nlmsg_maxsize() as usize];
        let len = build(&mut out, seq).min(out.len());
        // SAFETY: out is readable for len bytes; the kernel is the destination.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        let r = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                out.as_ptr().cast(),
                len,
                0,
                (&sa as *const libc::sockaddr_nl).cast(),
                size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if r < 0 {
            return Err(os_err("sendto"));
        }
        let mut buf = vec![0u8; RECV_BUF];
        loop {
            let n = self.recv(&mut buf, 0)?;
            let mut done = None;
            for (hdr, payload) in messages(&buf[..n]) {
                if hdr.nlmsg_seq != seq {
                    continue;
                }
                if hdr.nlmsg_type == libc::NLMSG_DONE as u16 {
                    done = Some(None);
                } else if hdr.nlmsg_type == libc::NLMSG_ERROR as u16 {
                    let errno = parse_error(&hdr, payload).map_or(libc::EIO, |(e, _, _)| e);
                    done = Some((errno != 0).then_some(errno));
                } else {
                    let p = payload.as_ptr().wrapping_sub(size_of::<libc::nlmsghdr>());
                    each(&hdr, p.cast());
                }
            }
            if let Some(d) = done {
                return Ok(d);
            }
        }
    }
}

/// Netlink messages in a buffer: (header copy, payload).
fn messages(mut buf: &[u8]) -> impl Iterator<Item = (libc::nlmsghdr, &[u8])> {
    std::iter::from_fn(move || {
        let hl = size_of::<libc::nlmsghdr>();
        if buf.len() < hl {
            return None;
        }
        // SAFETY: at least hl bytes; read_unaligned copes with any alignment.
        let hdr: libc::nlmsghdr = unsafe { std::ptr::read_unaligned(buf.as_ptr().cast()) };
        let len = hdr.nlmsg_len as usize;
        if len < hl || len > buf.len() {
            return None;
        }
        let payload = &buf[hl..len];
        buf = &buf[((len + 3) & !3).min(buf.len())..];
        Some((hdr, payload))
    })
}

/// (positive errno, sequence number of the refused message, extack text).
fn parse_error(hdr: &libc::nlmsghdr, payload: &[u8]) -> Option<(i32, u32, String)> {
    let hl = size_of::<libc::nlmsghdr>();
    if payload.len() < 4 + hl {
        return None;
    }
    let err = i32::from_ne_bytes(payload[..4].try_into().ok()?);
    // SAFETY: hl bytes are present after the error code.
    let orig: libc::nlmsghdr = unsafe { std::ptr::read_unaligned(payload[4..].as_ptr().cast()) };
    let mut extack = String::new();
    if hdr.nlmsg_flags & NLM_F_ACK_TLVS != 0 {
        // With CAP_ACK only the header is echoed on errors; TLVs follow it.
        let mut tlvs = &payload[(4 + hl).min(payload.len())..];
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
            tlvs = &tlvs[((len + 3) & !3).min(tlvs.len())..];
        }
    }
    Some((-err, orig.nlmsg_seq, extack))
}
