//! A synchronous netlink socket for the one request on a takeover's path: adding the
//! VIPs. The kernel adds each address while `send` runs and queues its ACK before
//! `send` returns, so one send and one non-blocking read do the whole set without
//! the hand-offs to and from the rtnetlink connection's task.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use rtnetlink::packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST,
};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::address::add_message;
use crate::AddressSpec;

/// What [`QuickSocket::add`] could not tell: no ACK was read for the request.
pub(crate) const UNKNOWN: i32 = -1;

pub(crate) struct QuickSocket {
    socket: Mutex<Option<Socket>>,
    seq: AtomicU32,
}

impl QuickSocket {
    /// A socket in the calling thread's network namespace; without one (refused by the
    /// kernel) every add takes the checked path.
    pub(crate) fn open() -> QuickSocket {
        let socket = Socket::new(NETLINK_ROUTE).and_then(|mut s| {
            s.bind_auto()?;
            s.connect(&SocketAddr::new(0, 0))?;
            Ok(s)
        });
        let socket = match socket {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::debug!(error = %e, "no synchronous netlink socket; adds take the checked path");
                None
            }
        };
        QuickSocket {
            socket: Mutex::new(socket),
            seq: AtomicU32::new(1),
        }
    }

    /// Sends an RTM_NEWADDR (create, exclusive) for every spec in one write and reads
    /// the ACKs: per spec 0 (added), the kernel's errno, or [`UNKNOWN`]. `None` if
    /// nothing was sent.
    pub(crate) fn add(&self, set: &[AddressSpec]) -> Option<Vec<i32>> {
        if set.is_empty() {
            return Some(Vec::new());
        }
        let guard = self.socket.lock().ok()?;
        let socket = guard.as_ref()?;
        let count = u32::try_from(set.len()).ok()?;
        let first = self.seq.fetch_add(count, Ordering::Relaxed);
        let mut buf = Vec::new();
        for (seq, spec) in (first..).zip(set) {
            let mut msg = NetlinkMessage::from(RouteNetlinkMessage::NewAddress(add_message(spec)));
            msg.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE;
            msg.header.sequence_number = seq;
            msg.finalize();
            let at = buf.len();
            buf.resize(at + msg.buffer_len(), 0);
            msg.serialize(&mut buf[at..]);
        }
        match socket.send(&buf, 0) {
            Ok(n) if n == buf.len() => {}
            Ok(_) | Err(_) => return None,
        }
        let mut result = vec![UNKNOWN; set.len()];
        let mut pending = set.len();
        let mut rx = vec![0u8; 16 * 1024];
        while pending > 0 {
            // SAFETY: rx is a valid, writable buffer of rx.len() bytes for the call.
            let n = unsafe {
                libc::recv(
                    socket.as_raw_fd(),
                    rx.as_mut_ptr().cast(),
                    rx.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            let Ok(n) = usize::try_from(n) else {
                break; // nothing more queued (or an error): the rest stays UNKNOWN
            };
            if n == 0 {
                break;
            }
            let mut data = &rx[..n];
            while let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(data) {
                let len = (msg.header.length as usize).max(16);
                let seq = msg.header.sequence_number;
                if let NetlinkPayload::Error(e) = msg.payload {
                    if let Some(i) = seq
                        .checked_sub(first)
                        .map(|i| i as usize)
                        .filter(|&i| i < set.len())
                    {
                        if result[i] == UNKNOWN {
                            pending -= 1;
                        }
                        result[i] = e.code.map_or(0, |c| -c.get());
                    }
                }
                data = data.get(len.next_multiple_of(4)..).unwrap_or_default();
                if data.is_empty() {
                    break;
                }
            }
        }
        Some(result)
    }
}
