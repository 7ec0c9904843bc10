//! A ctnetlink socket (NETLINK_NETFILTER): dump, insert, events.
//!
//! ```text
//! struct nlmsghdr { u32 len; u16 type; u16 flags; u32 seq; u32 pid; }   host order
//! struct nfgenmsg { u8 family; u8 version (0); be16 res_id (0); }
//! type = NFNL_SUBSYS_CTNETLINK (1) << 8 | IPCTNL_MSG_CT_{NEW 0, GET 1, DELETE 2}
//! ```

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use nfnetlink::{
    Datagrams, NfSocket, Options, NLMSG_ERROR, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};

use crate::entry::{DecodeError, Entry, Tuple};
use crate::filter::FlowFilter;

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
/// Legacy group bits of NFNLGRP_CONNTRACK_NEW, _UPDATE, _DESTROY.
const GROUPS_CONNTRACK: u32 = 0x1 | 0x2 | 0x4;
/// Messages per send when inserting: the answers to those that fail must fit the
/// receive buffer.
const BATCH: usize = 64;
/// How often [`Conntrack::replace_batch`] deletes and creates again an entry that
/// traffic re-created in between.
const REPLACE_RETRIES: usize = 2;
/// Receive buffer of a request socket (dumps, answers).
const RCVBUF: usize = 4 << 20;
/// Receive buffer of an event subscription: about 1 s of events at 20,000 new flows a
/// second (two events a flow, ~800 bytes of kernel memory each), so a sender thread
/// kept off both cores by other work for a while loses none (a loss costs the peer a
/// full dump). Memory is charged only for the events waiting.
const EVENTS_RCVBUF: usize = 32 << 20;
/// Room for one datagram of a dump or an answer.
const READ_SIZE: usize = 1 << 16;

/// A ctnetlink failure. Each variant says its inner error's text itself and does not
/// return it as `source()` as well: an `anyhow` chain (`{:#}`) prints it once.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The netlink socket could not be opened or bound.
    #[error("opening the ctnetlink socket: {0}")]
    Open(io::Error),
    /// Sending a request failed.
    #[error("sending to ctnetlink: {0}")]
    Send(io::Error),
    /// Receiving failed.
    #[error("receiving from ctnetlink: {0}")]
    Recv(io::Error),
    /// The kernel refused a request.
    #[error("ctnetlink {op}: {errno}")]
    Kernel {
        /// The request.
        op: &'static str,
        /// The errno the kernel returned.
        errno: io::Error,
    },
    /// The event socket overflowed: events were lost, a full dump is needed.
    #[error("conntrack events lost (receive buffer overflow): resynchronise with a dump")]
    EventsLost,
    /// No event arrived within the read timeout.
    #[error("no conntrack event within the read timeout")]
    TimedOut,
    /// A message from the kernel could not be read.
    #[error("decoding a ctnetlink message: {0}")]
    Decode(DecodeError),
}

// By hand, not `#[from]`, which would make the decode error the source too.
impl From<DecodeError> for Error {
    fn from(error: DecodeError) -> Self {
        Error::Decode(error)
    }
}

/// What happened to a connection, as ctnetlink events report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A new connection was confirmed.
    New,
    /// Status, TCP state, mark or timeout changed.
    Update,
    /// The connection is gone.
    Destroy,
}

/// One conntrack event: its kind and the entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The entry as the kernel reported it.
    pub entry: Entry,
}

/// Counts of a [`Conntrack::replace_batch`] or [`Conntrack::delete_batch`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplaceReport {
    /// Entries created where none existed.
    pub created: usize,
    /// Entries that existed and were deleted and created anew (or deleted, for a
    /// delete batch).
    pub replaced: usize,
    /// Entries that existed as this node wrote them and were changed in place
    /// ([`Conntrack::update_batch`]).
    pub updated: usize,
    /// Deletes of entries that were not there (already gone: nothing to do).
    pub missing: usize,
    /// Entries the kernel refused, with the errno.
    pub failed: Vec<(Tuple, i32)>,
}

impl ReplaceReport {
    /// Entries written: created, replaced or changed in place.
    pub fn written(&self) -> usize {
        self.created + self.replaced + self.updated
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: ReplaceReport) {
        self.created += other.created;
        self.replaced += other.replaced;
        self.updated += other.updated;
        self.missing += other.missing;
        self.failed.extend(other.failed);
    }
}

/// Result of inserting one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    /// The entry was created with its NAT mapping.
    Created,
    /// An entry with this original tuple existed; timeout, mark and TCP state refreshed.
    Updated,
    /// The kernel refused it (errno).
    Failed(i32),
}

/// Counts of an [`Conntrack::insert_batch`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Entries created.
    pub created: usize,
    /// Entries that existed and were refreshed.
    pub updated: usize,
    /// Entries the kernel refused, with the errno.
    pub failed: Vec<(Tuple, i32)>,
}

/// What a batched request is about: something with an address family.
trait Keyed {
    fn family(&self) -> u8;
}

impl Keyed for Entry {
    fn family(&self) -> u8 {
        Entry::family(self)
    }
}

impl Keyed for Tuple {
    fn family(&self) -> u8 {
        Tuple::family(self)
    }
}

/// A ctnetlink request socket of the current network namespace.
#[derive(Debug)]
pub struct Conntrack {
    sock: NfSocket,
    seq: u32,
    /// Buffers for batch acks, made on first use.
    acks: Option<Box<Datagrams>>,
}

impl From<nfnetlink::Error> for Error {
    fn from(e: nfnetlink::Error) -> Self {
        match e {
            nfnetlink::Error::Open { error, .. } => Error::Open(error),
            nfnetlink::Error::Send(e) => Error::Send(e),
            nfnetlink::Error::Recv(e) => Error::Recv(e),
        }
    }
}

fn open_socket(groups: u32) -> Result<NfSocket, Error> {
    Ok(NfSocket::open(&Options {
        groups,
        recv_buffer: if groups == 0 { RCVBUF } else { EVENTS_RCVBUF },
        read_timeout: None,
        read_size: READ_SIZE,
    })?)
}

/// Appends one ctnetlink message to `out`.
pub(crate) fn push_message(
    out: &mut Vec<u8>,
    msg: u16,
    flags: u16,
    seq: u32,
    family: u8,
    attrs: &[u8],
) {
    let ty = (NFNL_SUBSYS_CTNETLINK << 8) | msg;
    nfnetlink::push_message(out, ty, flags, seq, family, attrs);
}

/// The errno of an NLMSG_ERROR (0 = ack).
fn error_code(m: &nfnetlink::Message<'_>) -> Result<i32, DecodeError> {
    m.refusal().map(|r| r.errno).ok_or(DecodeError::Truncated)
}

/// Decodes a CT message payload (nfgenmsg + attributes).
fn decode_ct(payload: &[u8]) -> Result<Entry, DecodeError> {
    let attrs = payload
        .get(nfnetlink::NFGEN_HDRLEN..)
        .ok_or(DecodeError::Truncated)?;
    Entry::decode_attrs(attrs)
}

impl Conntrack {
    /// Opens a ctnetlink socket in the calling thread's network namespace.
    pub fn open() -> Result<Self, Error> {
        Ok(Self {
            sock: open_socket(0)?,
            seq: 1,
            acks: None,
        })
    }

    /// This socket's netlink port id: the kernel stamps it on the conntrack events
    /// that this socket's requests cause (see [`Events::ignore_portid`]).
    pub fn portid(&self) -> Result<u32, Error> {
        self.sock.portid().map_err(Error::Open)
    }

    fn next_seq(&mut self, n: usize) -> u32 {
        let s = self.seq;
        self.seq = self.seq.wrapping_add(n as u32);
        s
    }

    /// Sends one request and reads its answers (each message of a dump to `each`);
    /// a refusal is `Error::Kernel` for `op`.
    fn request(
        &mut self,
        op: &'static str,
        msg: u16,
        flags: u16,
        family: u8,
        attrs: &[u8],
        each: impl FnMut(&nfnetlink::Message<'_>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let seq = self.next_seq(1);
        let mut req = Vec::new();
        push_message(&mut req, msg, flags, seq, family, attrs);
        match self.sock.request(&req, seq, each)? {
            None => Ok(()),
            Some(r) => Err(Error::Kernel {
                op,
                errno: io::Error::from_raw_os_error(r.errno),
            }),
        }
    }

    /// Dumps the entries of this namespace that `filter` selects.
    pub fn dump(&mut self, filter: &FlowFilter) -> Result<Vec<Entry>, Error> {
        let mut out = Vec::new();
        self.dump_each(|e| {
            if filter.matches(&e) {
                out.push(e);
            }
        })?;
        Ok(out)
    }

    /// Dumps every entry of this namespace to `each`, keeping none: for a caller
    /// that selects by an index of its own (a [`FlowFilter`] compares addresses
    /// one by one).
    pub fn dump_each(&mut self, mut each: impl FnMut(Entry)) -> Result<(), Error> {
        self.request(
            "dump",
            IPCTNL_MSG_CT_GET,
            NLM_F_REQUEST | NLM_F_DUMP,
            libc::AF_UNSPEC as u8,
            &[],
            |m| {
                each(decode_ct(m.payload)?);
                Ok(())
            },
        )
    }

    /// Inserts one entry with its NAT mapping; refreshes it if it exists.
    pub fn insert(&mut self, entry: &Entry) -> Result<InsertOutcome, Error> {
        let r = self.insert_batch(std::slice::from_ref(entry))?;
        Ok(if r.created == 1 {
            InsertOutcome::Created
        } else if r.updated == 1 {
            InsertOutcome::Updated
        } else {
            InsertOutcome::Failed(r.failed.first().map_or(0, |f| f.1))
        })
    }

    /// Inserts entries: IPCTNL_MSG_CT_NEW with NLM_F_CREATE|NLM_F_EXCL each; on EEXIST
    /// the existing entry is refreshed instead (timeout, mark, TCP state).
    pub fn insert_batch(&mut self, entries: &[Entry]) -> Result<BatchReport, Error> {
        let mut report = BatchReport::default();
        for chunk in entries.chunks(BATCH) {
            let existing = self.create_batch(chunk, &mut report.created, &mut report.failed)?;
            if existing.is_empty() {
                continue;
            }
            let codes =
                self.request_batch(&existing, IPCTNL_MSG_CT_NEW, 0, Entry::encode_update)?;
            for (e, code) in existing.iter().zip(codes) {
                match code {
                    0 => report.updated += 1,
                    errno => report.failed.push((e.orig, errno)),
                }
            }
        }
        Ok(report)
    }

    /// Puts entries in as this node's own, replacing what the kernel holds for their
    /// original tuples: an existing entry is deleted and the entry created anew.
    /// Unlike an update, this drops the TCP window the kernel tracked for the old
    /// entry (a node that carried the connection before holds a stale one, and the
    /// peer's next segment would be INVALID); a created entry picks up the window
    /// from the first segment it sees. Only for entries that see no packets meanwhile
    /// (a node that is not MASTER, or before its VIPs are added).
    pub fn replace_batch(&mut self, entries: &[Entry]) -> Result<ReplaceReport, Error> {
        self.replace_chunks(entries, false)
    }

    /// As [`Conntrack::replace_batch`] for entries the kernel most likely holds (this
    /// node carried the connections): each is deleted first, then created, two
    /// messages instead of three. One that was not there costs a refused delete.
    pub fn renew_batch(&mut self, entries: &[Entry]) -> Result<ReplaceReport, Error> {
        self.replace_chunks(entries, true)
    }

    fn replace_chunks(
        &mut self,
        entries: &[Entry],
        delete_first: bool,
    ) -> Result<ReplaceReport, Error> {
        let mut report = ReplaceReport::default();
        for chunk in entries.chunks(BATCH) {
            let mut still = if delete_first {
                self.delete_and_create(chunk.to_vec(), &mut report)?
            } else {
                let existing = self.create_batch(chunk, &mut report.created, &mut report.failed)?;
                if existing.is_empty() {
                    continue;
                }
                self.delete_and_create(existing, &mut report)?
            };
            // Created again between the delete and the create: a packet of the
            // connection passed (a node still forwards a moment after it left MASTER,
            // until the peer's gratuitous ARP). The few are tried again at once, and
            // those still re-created are reported EEXIST for the caller to retry.
            for _ in 0..REPLACE_RETRIES {
                if still.is_empty() {
                    break;
                }
                still = self.delete_and_create(still, &mut report)?;
            }
            report
                .failed
                .extend(still.iter().map(|e| (e.orig, libc::EEXIST)));
        }
        Ok(report)
    }

    /// Changes entries in place (status, timeout, mark, TCP state, never the NAT
    /// mapping), one message each where a replacement takes three: only for entries the
    /// kernel holds as this node wrote them, unchanged by traffic since. Returns how
    /// many changed and those it did not change (gone meanwhile, or a change the
    /// kernel refuses), to be replaced.
    pub fn update_batch(&mut self, entries: &[Entry]) -> Result<(usize, Vec<Entry>), Error> {
        let mut updated = 0;
        let mut rest = Vec::new();
        for chunk in entries.chunks(BATCH) {
            let codes = self.request_batch(chunk, IPCTNL_MSG_CT_NEW, 0, Entry::encode_update)?;
            for (e, code) in chunk.iter().zip(codes) {
                if code == 0 {
                    updated += 1;
                } else {
                    rest.push(e.clone());
                }
            }
        }
        Ok((updated, rest))
    }

    /// Deletes `existing` and creates them anew, counted in `report` (replaced or
    /// failed); those re-created by the kernel in between come back.
    fn delete_and_create(
        &mut self,
        existing: Vec<Entry>,
        report: &mut ReplaceReport,
    ) -> Result<Vec<Entry>, Error> {
        let codes = self.request_batch(&existing, IPCTNL_MSG_CT_DELETE, 0, Entry::encode_orig)?;
        let mut gone = Vec::with_capacity(existing.len());
        for (e, code) in existing.into_iter().zip(codes) {
            match code {
                0 | libc::ENOENT => gone.push(e),
                errno => report.failed.push((e.orig, errno)),
            }
        }
        self.create_batch(&gone, &mut report.replaced, &mut report.failed)
    }

    /// Creates entries (with their NAT mappings) that do not exist yet: `created` and
    /// `failed` count them; those that exist come back.
    fn create_batch(
        &mut self,
        entries: &[Entry],
        created: &mut usize,
        failed: &mut Vec<(Tuple, i32)>,
    ) -> Result<Vec<Entry>, Error> {
        let create = NLM_F_CREATE | NLM_F_EXCL;
        let codes = self.request_batch(entries, IPCTNL_MSG_CT_NEW, create, Entry::encode_create)?;
        let mut existing = Vec::new();
        for (e, code) in entries.iter().zip(codes) {
            match code {
                0 => *created += 1,
                libc::EEXIST => existing.push(e.clone()),
                errno => failed.push((e.orig, errno)),
            }
        }
        Ok(existing)
    }

    /// Deletes the entries with these original tuples; those already gone count as
    /// `missing`, the deleted ones as `replaced`.
    pub fn delete_batch(&mut self, origs: &[Tuple]) -> Result<ReplaceReport, Error> {
        let mut report = ReplaceReport::default();
        for chunk in origs.chunks(BATCH) {
            let codes = self.request_batch(chunk, IPCTNL_MSG_CT_DELETE, 0, Tuple::encode_orig)?;
            for (t, code) in chunk.iter().zip(codes) {
                match code {
                    0 => report.replaced += 1,
                    libc::ENOENT => report.missing += 1,
                    errno => report.failed.push((*t, errno)),
                }
            }
        }
        Ok(report)
    }

    /// Sends one `msg` request per item in one datagram and returns each one's errno.
    ///
    /// The requests ask for no acknowledgement: the kernel answers only those that
    /// fail, and a NLMSG_NOOP that does ask for one closes the datagram (the kernel
    /// handles a datagram's messages in order, so its ack comes after every error).
    /// An ack per success would cost the kernel a message and this side a read for
    /// each entry written.
    fn request_batch<T: Keyed>(
        &mut self,
        entries: &[T],
        msg: u16,
        flags: u16,
        encode: fn(&T) -> Vec<u8>,
    ) -> Result<Vec<i32>, Error> {
        let base = self.next_seq(entries.len() + 1);
        let barrier = base.wrapping_add(entries.len() as u32);
        let mut req = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let seq = base.wrapping_add(i as u32);
            push_message(
                &mut req,
                msg,
                NLM_F_REQUEST | flags,
                seq,
                e.family(),
                &encode(e),
            );
        }
        nfnetlink::push_noop(&mut req, barrier);
        self.sock.send(&req)?;
        let mut codes = vec![0; entries.len()];
        let acks = self.acks.get_or_insert_with(|| Box::new(Datagrams::new()));
        loop {
            acks.recv(&self.sock)?;
            let mut done = false;
            for m in acks.each().flat_map(nfnetlink::messages) {
                if m.ty != NLMSG_ERROR {
                    continue;
                }
                if m.seq == barrier {
                    done = true;
                    continue;
                }
                let i = m.seq.wrapping_sub(base) as usize;
                if i < entries.len() {
                    codes[i] = error_code(&m)?;
                }
            }
            if done {
                return Ok(codes);
            }
        }
    }

    /// Deletes the entry with this original tuple.
    pub fn delete(&mut self, orig: &Tuple) -> Result<(), Error> {
        let mut w = crate::attr::AttrWriter::default();
        orig.encode(&mut w, crate::entry::CTA_TUPLE_ORIG);
        self.request(
            "delete",
            IPCTNL_MSG_CT_DELETE,
            NLM_F_REQUEST | NLM_F_ACK,
            orig.family(),
            &w.buf,
            |_| Ok(()),
        )
    }
}

/// A subscription to conntrack events (new, update, destroy) of this namespace.
///
/// Iterating blocks for the next event; with a read timeout set an idle period yields
/// `Err(Error::TimedOut)`. `Err(Error::EventsLost)` means the kernel dropped events:
/// the stream is still usable but the peer needs a fresh dump.
#[derive(Debug)]
pub struct Events {
    sock: NfSocket,
    filter: FlowFilter,
    datagrams: Box<Datagrams>,
    queue: std::collections::VecDeque<Event>,
    /// The read timeout, also the longest `next` waits for an event the filter
    /// keeps: busy traffic the filter drops must not starve the caller's idle work.
    timeout: Option<Duration>,
    /// Events caused by requests of the socket with this port id are dropped.
    ignored_portid: Option<u32>,
}

/// Subscribes to NFNLGRP_CONNTRACK_NEW | UPDATE | DESTROY in the calling thread's
/// namespace, keeping the events whose entry `filter` selects.
pub fn subscribe(filter: FlowFilter) -> Result<Events, Error> {
    Ok(Events {
        sock: open_socket(GROUPS_CONNTRACK)?,
        filter,
        datagrams: Box::new(Datagrams::new()),
        queue: std::collections::VecDeque::new(),
        timeout: None,
        ignored_portid: None,
    })
}

impl Events {
    /// Sets how long `next` waits for an event the filter keeps (None: forever).
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<(), Error> {
        self.timeout = timeout.filter(|d| !d.is_zero());
        self.sock.set_read_timeout(timeout).map_err(Error::Open)
    }

    /// Sets the subscription's receive buffer (32 MiB by default): the events the
    /// kernel holds for a reader that falls behind before it drops them.
    pub fn set_receive_buffer(&mut self, bytes: usize) -> Result<(), Error> {
        self.sock.set_recv_buffer(bytes).map_err(Error::Open)
    }

    /// Drops the events caused by requests of the [`Conntrack`] socket with this port
    /// id: a node that writes the peer's entries into its kernel must not send them
    /// back as its own.
    ///
    /// A socket filter drops them in the kernel already (no copy, no wake-up); should
    /// the kernel refuse the filter (the error returned), they are dropped here after
    /// reading, all the same.
    pub fn ignore_portid(&mut self, portid: u32) -> io::Result<()> {
        self.ignored_portid = Some(portid);
        self.attach_portid_filter(portid)
    }

    /// Classic BPF on the datagram (one event each): drop when nlmsg_pid (bytes 12..16,
    /// host order; BPF loads big-endian) is `portid`.
    fn attach_portid_filter(&self, portid: u32) -> io::Result<()> {
        // BPF_LD | BPF_W | BPF_ABS, BPF_JMP | BPF_JEQ | BPF_K, BPF_RET | BPF_K.
        const BPF_LD_W_ABS: u16 = 0x20;
        const BPF_JEQ_K: u16 = 0x15;
        const BPF_RET_K: u16 = 0x06;
        let as_loaded = u32::from_be_bytes(portid.to_ne_bytes());
        let mut program = [
            libc::sock_filter {
                code: BPF_LD_W_ABS,
                jt: 0,
                jf: 0,
                k: 12,
            },
            libc::sock_filter {
                code: BPF_JEQ_K,
                jt: 0,
                jf: 1,
                k: as_loaded,
            },
            libc::sock_filter {
                code: BPF_RET_K,
                jt: 0,
                jf: 0,
                k: 0,
            },
            libc::sock_filter {
                code: BPF_RET_K,
                jt: 0,
                jf: 0,
                k: u32::MAX,
            },
        ];
        let fprog = libc::sock_fprog {
            len: program.len() as u16,
            filter: program.as_mut_ptr(),
        };
        // SAFETY: fprog and the program it points to outlive the call; the size matches.
        let rc = unsafe {
            libc::setsockopt(
                self.sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                std::ptr::addr_of!(fprog).cast(),
                std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Reads what is queued (at least one datagram) and queues its events.
    fn fill(&mut self) -> Result<(), Error> {
        match self.datagrams.recv(&self.sock) {
            Ok(()) => {}
            Err(e) if e.is_overflow() => {
                // The kernel drops all further events for this socket, without
                // reporting it again, until its queue has been read empty. The caller
                // dumps next, so what is discarded is not needed.
                self.queue.clear();
                self.sock.drain();
                return Err(Error::EventsLost);
            }
            Err(e) if e.is_timeout() => return Err(Error::TimedOut),
            Err(e) => return Err(e.into()),
        }
        for m in self.datagrams.each().flat_map(nfnetlink::messages) {
            let kind = match m.ty & 0xff {
                IPCTNL_MSG_CT_NEW if m.flags & (NLM_F_CREATE | NLM_F_EXCL) != 0 => EventKind::New,
                IPCTNL_MSG_CT_NEW => EventKind::Update,
                IPCTNL_MSG_CT_DELETE => EventKind::Destroy,
                _ => continue,
            };
            if m.ty >> 8 != NFNL_SUBSYS_CTNETLINK
                || (m.pid != 0 && self.ignored_portid == Some(m.pid))
            {
                continue;
            }
            let entry = decode_ct(m.payload)?;
            if self.filter.matches(&entry) {
                self.queue.push_back(Event { kind, entry });
            }
        }
        Ok(())
    }

    /// Events read and not yet returned by `next` (a caller that batches its output
    /// writes it out when none are left).
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
}

impl Iterator for Events {
    type Item = Result<Event, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let started = std::time::Instant::now();
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Some(Ok(e));
            }
            // Events arrive but the filter keeps none: as idle as a silent socket.
            if self.timeout.is_some_and(|t| started.elapsed() >= t) {
                return Some(Err(Error::TimedOut));
            }
            if let Err(e) = self.fill() {
                return Some(Err(e));
            }
        }
    }
}

impl AsRawFd for Events {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}
