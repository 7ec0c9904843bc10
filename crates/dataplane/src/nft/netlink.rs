//! nf_tables over the suite's one NETLINK_NETFILTER socket ([`nfnetlink`]): batches
//! out, acknowledgements and dumps in, as libnftnl builds and parses the messages.
//!
//! The socket belongs to the network namespace of the thread that opened it.

use std::cell::Cell;
use std::ops::Range;
use std::time::Duration;

pub use nfnetlink::Refusal;

use crate::DataplaneError;

/// How long to wait for the kernel's answers.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// An open NETLINK_NETFILTER socket for nf_tables.
#[derive(Debug)]
pub struct NfSocket {
    sock: nfnetlink::NfSocket,
    seq: Cell<u32>,
}

impl From<nfnetlink::Error> for DataplaneError {
    fn from(e: nfnetlink::Error) -> Self {
        match e {
            e if e.is_timeout() => DataplaneError::Timeout(ANSWER_TIMEOUT),
            nfnetlink::Error::Open { op, error } => DataplaneError::Socket { op, error },
            nfnetlink::Error::Send(error) => DataplaneError::Socket { op: "send", error },
            nfnetlink::Error::Recv(error) => DataplaneError::Socket { op: "recv", error },
        }
    }
}

impl NfSocket {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> Result<NfSocket, DataplaneError> {
        let sock = nfnetlink::NfSocket::open(&nfnetlink::Options {
            groups: 0,
            // Room for many acks and dump pages: the kernel queues an ack per
            // message of a batch before the first is read, and a round-robin
            // service brings two (its chain and its rule): 10,000 services are
            // ~21,000 acks, each charged ~1 KiB (8 MiB overflowed with ENOBUFS).
            recv_buffer: 64 << 20,
            read_timeout: Some(ANSWER_TIMEOUT),
            read_size: 1 << 20,
        })?;
        Ok(NfSocket {
            sock,
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
        Ok(self.sock.send_batch(pages, seqs)?)
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
        let refused = self.sock.request(&out[..len], seq, |m| {
            let hdr = libc::nlmsghdr {
                nlmsg_len: m.bytes.len() as u32,
                nlmsg_type: m.ty,
                nlmsg_flags: m.flags,
                nlmsg_seq: m.seq,
                nlmsg_pid: m.pid,
            };
            each(&hdr, m.bytes.as_ptr().cast());
            Ok::<(), DataplaneError>(())
        })?;
        Ok(refused.map(|r| r.errno))
    }
}
