//! Small safe wrappers over libnftnl objects the `nftnl` crate does not cover: maps
//! with data, interval concatenations, elements, rules built from [`Expr`], and the
//! parsing of dumps.

use std::cell::Cell;
use std::ffi::{c_int, c_void, CStr, CString};
use std::ptr::NonNull;

use nftnl::nftnl_sys as sys;
use nftnl::{MsgType, NlMsg};

use super::expr::Expr;
use super::layout::{ElemKey, SetSpec};

fn cstring(s: &str) -> CString {
    // Names come from the layout or the caller's validated table name: no NUL.
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

fn nonnull<T>(p: *mut T) -> NonNull<T> {
    match NonNull::new(p) {
        Some(p) => p,
        // libnftnl returns null only when out of memory; do as std does.
        None => std::process::abort(),
    }
}

const FAMILY: u32 = libc::NFPROTO_INET as u32;

/// A comment as nft writes it into user data: a TLV of type `ty`, the text
/// NUL-terminated, at most 127 bytes with the NUL (nft's limit is 128).
fn comment_tlv(ty: u32, comment: &str) -> Vec<u8> {
    let mut text: Vec<u8> = comment.bytes().filter(|&b| b != 0).take(126).collect();
    text.push(0);
    let mut udata = vec![ty as u8, text.len() as u8];
    udata.extend(text);
    udata
}

/// An nftnl set (map) of our table, optionally with elements.
pub struct SetObj(NonNull<sys::nftnl_set>);

impl SetObj {
    /// A set object naming `table`/`name` (enough for deletes and element messages).
    pub fn new(table: &str, name: &str) -> SetObj {
        // SAFETY: allocation; attributes are copied by libnftnl.
        unsafe {
            let s = nonnull(sys::nftnl_set_alloc());
            sys::nftnl_set_set_u32(s.as_ptr(), sys::NFTNL_SET_FAMILY as u16, FAMILY);
            sys::nftnl_set_set_str(
                s.as_ptr(),
                sys::NFTNL_SET_TABLE as u16,
                cstring(table).as_ptr(),
            );
            sys::nftnl_set_set_str(
                s.as_ptr(),
                sys::NFTNL_SET_NAME as u16,
                cstring(name).as_ptr(),
            );
            SetObj(s)
        }
    }

    /// Sets the shape for a create message; `id` is unique within the batch.
    pub fn with_spec(self, spec: &SetSpec, id: u32) -> SetObj {
        let s = self.0.as_ptr();
        // SAFETY: live set; plain attribute setters; the counter expression is handed over.
        unsafe {
            sys::nftnl_set_set_u32(s, sys::NFTNL_SET_ID as u16, id);
            sys::nftnl_set_set_u32(s, sys::NFTNL_SET_FLAGS as u16, spec.flags);
            sys::nftnl_set_set_u32(s, sys::NFTNL_SET_KEY_TYPE as u16, spec.key_type);
            sys::nftnl_set_set_u32(s, sys::NFTNL_SET_KEY_LEN as u16, spec.key_len);
            if spec.data_len > 0 {
                sys::nftnl_set_set_u32(s, sys::NFTNL_SET_DATA_TYPE as u16, spec.data_type);
                sys::nftnl_set_set_u32(s, sys::NFTNL_SET_DATA_LEN as u16, spec.data_len);
            }
            if !spec.concat.is_empty() {
                sys::nftnl_set_set_data(
                    s,
                    sys::NFTNL_SET_DESC_CONCAT as u16,
                    spec.concat.as_ptr().cast::<c_void>(),
                    spec.concat.len() as u32,
                );
            }
            if spec.size > 0 {
                sys::nftnl_set_set_u32(s, sys::NFTNL_SET_DESC_SIZE as u16, spec.size);
            }
            if spec.counter {
                let e = nonnull(sys::nftnl_expr_alloc(c"counter".as_ptr()));
                sys::nftnl_set_add_expr(s, e.as_ptr());
            }
        }
        self
    }

    /// Sets the set's comment (shown by `nft list`).
    pub fn with_comment(self, comment: &str) -> SetObj {
        let udata = comment_tlv(sys::NFTNL_UDATA_SET_COMMENT, comment);
        // SAFETY: live set; libnftnl copies the buffer.
        unsafe {
            sys::nftnl_set_set_data(
                self.0.as_ptr(),
                sys::NFTNL_SET_USERDATA as u16,
                udata.as_ptr().cast(),
                udata.len() as u32,
            );
        }
        self
    }

    /// Raw pointer for libnftnl calls.
    pub fn ptr(&self) -> *mut sys::nftnl_set {
        self.0.as_ptr()
    }
}

/// One element to write: key (and range end), map data (a verdict map's: the name
/// of the chain to jump to), comment (empty: none).
pub type ElemRef<'a> = (&'a ElemKey, Option<&'a [u8]>, &'a str);

/// nf_tables.h attribute numbers of element messages (not in libc).
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_SET_ELEM_USERDATA: u16 = 6;
const NFTA_SET_ELEM_KEY_END: u16 = 10;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
const NLA_F_NESTED: u16 = 1 << 15;
/// NFNL_SUBSYS_NFTABLES, the high byte of an nf_tables message type.
const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// Most bytes of elements per message: the elements' nest has a 16-bit length.
const ELEMS_PER_MESSAGE: usize = 60 << 10;

/// Element messages of one set, written attribute by attribute straight into the
/// batch (no libnftnl object per element: at 170,000 elements those allocations
/// were a tenth of an apply's user-space time). Each `write` takes the next
/// elements, up to ~60 KiB.
pub struct ElemWriter<'a> {
    table: &'a str,
    set: &'a str,
    jumps: bool,
    elems: Vec<ElemRef<'a>>,
    next: Cell<usize>,
}

impl<'a> ElemWriter<'a> {
    /// The elements `elems` of `table`/`set`; `jumps`: a verdict map, whose data
    /// are chain names.
    pub fn new(table: &'a str, set: &'a str, jumps: bool, elems: Vec<ElemRef<'a>>) -> Self {
        ElemWriter {
            table,
            set,
            jumps,
            elems,
            next: Cell::new(0),
        }
    }

    /// Whether elements are left to write.
    pub fn pending(&self) -> bool {
        self.next.get() < self.elems.len()
    }

    /// The message (header, attributes) with the next elements.
    fn message(&self, seq: u32, msg_type: MsgType) -> Vec<u8> {
        let (t, flags) = match msg_type {
            MsgType::Add => (
                libc::NFT_MSG_NEWSETELEM,
                libc::NLM_F_CREATE | libc::NLM_F_EXCL | libc::NLM_F_ACK,
            ),
            MsgType::Del => (libc::NFT_MSG_DELSETELEM, libc::NLM_F_ACK),
        };
        let mut m = Vec::with_capacity(ELEMS_PER_MESSAGE + 1024);
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | t as u16).to_ne_bytes());
        m.extend_from_slice(&((libc::NLM_F_REQUEST | flags) as u16).to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&[FAMILY as u8, 0, 0, 0]);
        attr_strz(&mut m, NFTA_SET_ELEM_LIST_TABLE, self.table);
        attr_strz(&mut m, NFTA_SET_ELEM_LIST_SET, self.set);
        let list = nest_start(&mut m, NFTA_SET_ELEM_LIST_ELEMENTS);
        let mut i = self.next.get();
        while let Some(&(key, data, comment)) = self.elems.get(i) {
            let before = m.len();
            let e = nest_start(&mut m, NFTA_LIST_ELEM);
            let k = nest_start(&mut m, NFTA_SET_ELEM_KEY);
            attr(&mut m, NFTA_DATA_VALUE, &key.key);
            nest_end(&mut m, k);
            if let Some(end) = &key.key_end {
                let k = nest_start(&mut m, NFTA_SET_ELEM_KEY_END);
                attr(&mut m, NFTA_DATA_VALUE, end);
                nest_end(&mut m, k);
            }
            match data {
                Some(chain) if self.jumps => {
                    let d = nest_start(&mut m, NFTA_SET_ELEM_DATA);
                    let v = nest_start(&mut m, NFTA_DATA_VERDICT);
                    attr(&mut m, NFTA_VERDICT_CODE, &NFT_JUMP.to_be_bytes());
                    let name: Vec<u8> = chain.iter().copied().filter(|&b| b != 0).collect();
                    attr_strz(&mut m, NFTA_VERDICT_CHAIN, &String::from_utf8_lossy(&name));
                    nest_end(&mut m, v);
                    nest_end(&mut m, d);
                }
                Some(d) if !d.is_empty() => {
                    let n = nest_start(&mut m, NFTA_SET_ELEM_DATA);
                    attr(&mut m, NFTA_DATA_VALUE, d);
                    nest_end(&mut m, n);
                }
                _ => {}
            }
            if !comment.is_empty() {
                let udata = comment_tlv(sys::NFTNL_UDATA_SET_ELEM_COMMENT, comment);
                attr(&mut m, NFTA_SET_ELEM_USERDATA, &udata);
            }
            nest_end(&mut m, e);
            // The first element always goes (one is far below the limit).
            if m.len() - list > ELEMS_PER_MESSAGE && i > self.next.get() {
                m.truncate(before);
                break;
            }
            i += 1;
        }
        nest_end(&mut m, list);
        self.next.set(i);
        let len = m.len() as u32;
        m[..4].copy_from_slice(&len.to_ne_bytes());
        m
    }
}

// SAFETY: a message holds at most ~61 KiB, below nft_nlmsg_maxsize (which the batch
// leaves room for).
unsafe impl NlMsg for ElemWriter<'_> {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, msg_type: MsgType) {
        let m = self.message(seq, msg_type);
        // SAFETY: buf has room for a maximal message (Batch guarantees it).
        unsafe { std::ptr::copy_nonoverlapping(m.as_ptr(), buf.cast::<u8>(), m.len()) };
    }
}

fn attr(m: &mut Vec<u8>, ty: u16, data: &[u8]) {
    m.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(data);
    m.resize((m.len() + 3) & !3, 0);
}

fn attr_strz(m: &mut Vec<u8>, ty: u16, s: &str) {
    m.extend_from_slice(&((5 + s.len()) as u16).to_ne_bytes());
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(s.as_bytes());
    m.push(0);
    m.resize((m.len() + 3) & !3, 0);
}

fn nest_start(m: &mut Vec<u8>, ty: u16) -> usize {
    let at = m.len();
    m.extend_from_slice(&0u16.to_ne_bytes());
    m.extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
    at
}

fn nest_end(m: &mut [u8], at: usize) {
    let len = (m.len() - at) as u16;
    m[at..at + 2].copy_from_slice(&len.to_ne_bytes());
}

/// NFT_JUMP (nf_tables.h): a verdict that jumps to a chain and returns.
const NFT_JUMP: u32 = -3i32 as u32;

impl Drop for SetObj {
    fn drop(&mut self) {
        // SAFETY: owned.
        unsafe { sys::nftnl_set_free(self.0.as_ptr()) }
    }
}

// SAFETY: the payload builders write at most one netlink message (< nft_nlmsg_maxsize).
unsafe impl NlMsg for SetObj {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, msg_type: MsgType) {
        let (t, flags) = match msg_type {
            MsgType::Add => (libc::NFT_MSG_NEWSET, libc::NLM_F_CREATE | libc::NLM_F_ACK),
            MsgType::Del => (libc::NFT_MSG_DELSET, libc::NLM_F_ACK),
        };
        // SAFETY: buf has room for a maximal message (Batch guarantees it).
        unsafe {
            let h =
                sys::nftnl_nlmsg_build_hdr(buf.cast(), t as u16, FAMILY as u16, flags as u16, seq);
            sys::nftnl_set_nlmsg_build_payload(h, self.0.as_ptr());
        }
    }
}

/// An nftnl rule of our table; with no expressions and Del, it flushes its chain.
pub struct RuleObj(NonNull<sys::nftnl_rule>);

impl RuleObj {
    /// A rule in `table`/`chain`.
    pub fn new(table: &str, chain: &str) -> RuleObj {
        // SAFETY: allocation and copied attributes.
        unsafe {
            let r = nonnull(sys::nftnl_rule_alloc());
            sys::nftnl_rule_set_u32(r.as_ptr(), sys::NFTNL_RULE_FAMILY as u16, FAMILY);
            sys::nftnl_rule_set_str(
                r.as_ptr(),
                sys::NFTNL_RULE_TABLE as u16,
                cstring(table).as_ptr(),
            );
            sys::nftnl_rule_set_str(
                r.as_ptr(),
                sys::NFTNL_RULE_CHAIN as u16,
                cstring(chain).as_ptr(),
            );
            RuleObj(r)
        }
    }

    /// Appends the expressions and the identifying comment.
    pub fn with(self, exprs: &[Expr], comment: &str) -> RuleObj {
        for e in exprs {
            // SAFETY: the rule takes ownership of the expression.
            unsafe { sys::nftnl_rule_add_expr(self.0.as_ptr(), e.build().into_raw()) };
        }
        let udata = comment_tlv(sys::NFTNL_UDATA_RULE_COMMENT, comment);
        // SAFETY: libnftnl copies the buffer.
        unsafe {
            sys::nftnl_rule_set_data(
                self.0.as_ptr(),
                sys::NFTNL_RULE_USERDATA as u16,
                udata.as_ptr().cast(),
                udata.len() as u32,
            );
        }
        self
    }

    /// Raw pointer for libnftnl calls.
    pub fn ptr(&self) -> *mut sys::nftnl_rule {
        self.0.as_ptr()
    }
}

impl Drop for RuleObj {
    fn drop(&mut self) {
        // SAFETY: owned.
        unsafe { sys::nftnl_rule_free(self.0.as_ptr()) }
    }
}

// SAFETY: a rule with a handful of expressions is far below the message limit.
unsafe impl NlMsg for RuleObj {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, msg_type: MsgType) {
        let (t, flags) = match msg_type {
            MsgType::Add => (
                libc::NFT_MSG_NEWRULE,
                libc::NLM_F_CREATE | libc::NLM_F_APPEND | libc::NLM_F_ACK,
            ),
            MsgType::Del => (libc::NFT_MSG_DELRULE, libc::NLM_F_ACK),
        };
        // SAFETY: as for SetObj.
        unsafe {
            let h =
                sys::nftnl_nlmsg_build_hdr(buf.cast(), t as u16, FAMILY as u16, flags as u16, seq);
            sys::nftnl_rule_nlmsg_build_payload(h, self.0.as_ptr());
        }
    }
}

/// Copies `len` bytes at `p` (null: empty).
///
/// # Safety
/// `p` must be null or point to `len` readable bytes.
unsafe fn bytes(p: *const c_void, len: u32) -> Vec<u8> {
    if p.is_null() {
        return Vec::new();
    }
    // SAFETY: per the contract.
    unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len as usize) }.to_vec()
}

/// # Safety
/// `p` must be null or a NUL-terminated string.
unsafe fn string(p: *const std::ffi::c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: per the contract.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// A set as the kernel described it in a dump message.
pub struct ParsedSet {
    /// Table.
    pub table: String,
    /// Name.
    pub name: String,
    /// Shape (types and concat as reported).
    pub spec: SetSpec,
}

/// Parses a NEWSET dump message.
///
/// # Safety
/// `nlh` must point to a complete netlink message.
pub unsafe fn parse_set(nlh: *const libc::nlmsghdr) -> Option<ParsedSet> {
    let s = SetObj(nonnull(unsafe { sys::nftnl_set_alloc() }));
    // SAFETY: nlh is complete; s is live.
    unsafe {
        if sys::nftnl_set_nlmsg_parse(nlh, s.ptr()) < 0 {
            return None;
        }
        let p = s.ptr();
        let get = |a: u32| {
            if sys::nftnl_set_is_set(p, a as u16) {
                sys::nftnl_set_get_u32(p, a as u16)
            } else {
                0
            }
        };
        let counter = sys::nftnl_set_is_set(p, sys::NFTNL_SET_EXPR as u16)
            || sys::nftnl_set_is_set(p, sys::NFTNL_SET_EXPRESSIONS as u16);
        Some(ParsedSet {
            table: string(sys::nftnl_set_get_str(p, sys::NFTNL_SET_TABLE as u16)),
            name: string(sys::nftnl_set_get_str(p, sys::NFTNL_SET_NAME as u16)),
            spec: SetSpec {
                flags: get(sys::NFTNL_SET_FLAGS),
                key_len: get(sys::NFTNL_SET_KEY_LEN),
                key_type: get(sys::NFTNL_SET_KEY_TYPE),
                data_len: get(sys::NFTNL_SET_DATA_LEN),
                data_type: get(sys::NFTNL_SET_DATA_TYPE),
                concat: Vec::new(),
                counter,
                size: get(sys::NFTNL_SET_DESC_SIZE),
            },
        })
    }
}

/// One element from a dump.
pub struct ParsedElem {
    /// Key (and range end).
    pub key: ElemKey,
    /// Data.
    pub data: Vec<u8>,
    /// Counter, if the element has one.
    pub counter: Option<(u64, u64)>,
}

unsafe extern "C" fn counter_cb(e: *mut sys::nftnl_expr, data: *mut c_void) -> c_int {
    // SAFETY: libnftnl passes a live expression; data is the Option below.
    unsafe {
        let name = string(sys::nftnl_expr_get_str(e, sys::NFTNL_EXPR_NAME as u16));
        if name == "counter" {
            let out = &mut *data.cast::<Option<(u64, u64)>>();
            *out = Some((
                sys::nftnl_expr_get_u64(e, sys::NFTNL_EXPR_CTR_PACKETS as u16),
                sys::nftnl_expr_get_u64(e, sys::NFTNL_EXPR_CTR_BYTES as u16),
            ));
        }
    }
    0
}

/// Accumulates NEWSETELEM dump messages.
pub struct ElemDump(SetObj);

impl ElemDump {
    /// An empty accumulator (also the request payload for `table`/`name`).
    pub fn new(table: &str, name: &str) -> ElemDump {
        ElemDump(SetObj::new(table, name))
    }

    /// The set object (request payload).
    pub fn set(&self) -> &SetObj {
        &self.0
    }

    /// Adds the elements of one dump message.
    ///
    /// # Safety
    /// `nlh` must point to a complete netlink message.
    pub unsafe fn parse(&mut self, nlh: *const libc::nlmsghdr) -> bool {
        // SAFETY: per the contract.
        unsafe { sys::nftnl_set_elems_nlmsg_parse(nlh, self.0.ptr()) >= 0 }
    }

    /// Every element gathered.
    pub fn elements(&self) -> Vec<ParsedElem> {
        let mut out = Vec::new();
        // SAFETY: iterator over the live set, destroyed at the end.
        unsafe {
            let iter = nonnull(sys::nftnl_set_elems_iter_create(self.0.ptr()));
            loop {
                let e = sys::nftnl_set_elems_iter_next(iter.as_ptr());
                if e.is_null() {
                    break;
                }
                let get = |a: u32| {
                    if !sys::nftnl_set_elem_is_set(e, a as u16) {
                        return None;
                    }
                    let mut len = 0u32;
                    let p = sys::nftnl_set_elem_get(e, a as u16, &mut len);
                    Some(bytes(p, len))
                };
                let mut counter: Option<(u64, u64)> = None;
                sys::nftnl_set_elem_expr_foreach(
                    e,
                    Some(counter_cb),
                    (&mut counter as *mut Option<(u64, u64)>).cast(),
                );
                out.push(ParsedElem {
                    key: ElemKey {
                        key: get(sys::NFTNL_SET_ELEM_KEY).unwrap_or_default(),
                        key_end: get(sys::NFTNL_SET_ELEM_KEY_END),
                    },
                    // A verdict map's element: the chain's name stands for its data.
                    data: get(sys::NFTNL_SET_ELEM_DATA)
                        .or_else(|| {
                            let c =
                                sys::nftnl_set_elem_get_str(e, sys::NFTNL_SET_ELEM_CHAIN as u16);
                            (!c.is_null()).then(|| CStr::from_ptr(c).to_bytes().to_vec())
                        })
                        .unwrap_or_default(),
                    counter,
                });
            }
            sys::nftnl_set_elems_iter_destroy(iter.as_ptr());
        }
        out
    }
}

/// A rule as dumped: table, chain, comment.
pub struct ParsedRule {
    /// Table.
    pub table: String,
    /// Chain.
    pub chain: String,
    /// Comment (empty if none).
    pub comment: String,
}

/// Parses a NEWRULE dump message.
///
/// # Safety
/// `nlh` must point to a complete netlink message.
pub unsafe fn parse_rule(nlh: *const libc::nlmsghdr) -> Option<ParsedRule> {
    let r = RuleObj(nonnull(unsafe { sys::nftnl_rule_alloc() }));
    // SAFETY: nlh complete; r live.
    unsafe {
        if sys::nftnl_rule_nlmsg_parse(nlh, r.ptr()) < 0 {
            return None;
        }
        let p = r.ptr();
        let mut comment = String::new();
        if sys::nftnl_rule_is_set(p, sys::NFTNL_RULE_USERDATA as u16) {
            let mut len = 0u32;
            let d = bytes(
                sys::nftnl_rule_get_data(p, sys::NFTNL_RULE_USERDATA as u16, &mut len),
                len,
            );
            // TLVs: type, length, value.
            let mut i = 0;
            while i + 2 <= d.len() {
                let (t, l) = (d[i], usize::from(d[i + 1]));
                let v = d.get(i + 2..i + 2 + l).unwrap_or_default();
                if u32::from(t) == sys::NFTNL_UDATA_RULE_COMMENT {
                    comment =
                        String::from_utf8_lossy(v.split(|&b| b == 0).next().unwrap_or_default())
                            .into_owned();
                }
                i += 2 + l;
            }
        }
        Some(ParsedRule {
            table: string(sys::nftnl_rule_get_str(p, sys::NFTNL_RULE_TABLE as u16)),
            chain: string(sys::nftnl_rule_get_str(p, sys::NFTNL_RULE_CHAIN as u16)),
            comment,
        })
    }
}

/// Parses a NEWCHAIN dump message into (table, chain).
///
/// # Safety
/// `nlh` must point to a complete netlink message.
pub unsafe fn parse_chain(nlh: *const libc::nlmsghdr) -> Option<(String, String)> {
    // SAFETY: allocation, parse of a complete message, freed below.
    unsafe {
        let c = nonnull(sys::nftnl_chain_alloc());
        let ok = sys::nftnl_chain_nlmsg_parse(nlh, c.as_ptr()) >= 0;
        let out = ok.then(|| {
            (
                string(sys::nftnl_chain_get_str(
                    c.as_ptr(),
                    sys::NFTNL_CHAIN_TABLE as u16,
                )),
                string(sys::nftnl_chain_get_str(
                    c.as_ptr(),
                    sys::NFTNL_CHAIN_NAME as u16,
                )),
            )
        });
        sys::nftnl_chain_free(c.as_ptr());
        out
    }
}

/// Parses a NEWTABLE dump message into its name.
///
/// # Safety
/// `nlh` must point to a complete netlink message.
pub unsafe fn parse_table(nlh: *const libc::nlmsghdr) -> Option<String> {
    // SAFETY: as for parse_chain.
    unsafe {
        let t = nonnull(sys::nftnl_table_alloc());
        let ok = sys::nftnl_table_nlmsg_parse(nlh, t.as_ptr()) >= 0;
        let out = ok.then(|| {
            string(sys::nftnl_table_get_str(
                t.as_ptr(),
                sys::NFTNL_TABLE_NAME as u16,
            ))
        });
        sys::nftnl_table_free(t.as_ptr());
        out
    }
}
