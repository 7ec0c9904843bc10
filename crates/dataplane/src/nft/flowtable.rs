//! nftables' software flowtable for the nft backend's balanced connections
//! (`[dataplane] flowtable = true`): once a connection the backend DNATs is
//! established, its packets take a shortcut from the ingress hook of the interfaces
//! lbd forwards between straight to the output device, NAT included, past routing
//! and the prerouting, forward and postrouting hooks.
//!
//! The flowtable lives in a table of its own, `inet <nft_table>_flow`, beside the
//! backend's table and never diffed with it:
//!
//! ```text
//! table inet lbsuite_flow {
//!     flowtable ft { hook ingress priority 0; devices = { eth0, eth1 }; }
//!     chain lb_flow {
//!         type filter hook forward priority filter;
//!         ct state established ct status dnat flow add @ft
//!     }
//! }
//! ```
//!
//! `ct status dnat`: only connections that were destination-NATed (the nft
//! backend's services; IPVS sets no DST_NAT bit and its connections must keep
//! passing through IPVS) are offloaded. The kernel offloads TCP and UDP only, and
//! hands a TCP connection back to conntrack at its first FIN or RST, so conntrack
//! still sees every state change that matters to the connection-state sync.
//! Measured in the VM (integration/vm/flowtable-bench.sh): see docs/operations.md.

use std::ffi::{c_char, c_void, CString};
use std::ptr::NonNull;

use nftnl::nftnl_sys as sys;
use nftnl::{MsgType, NlMsg, ProtoFamily};

use super::expr::Expr;
use super::netlink::NfSocket;
use super::objects::{parse_rule, RuleObj};
use crate::DataplaneError;

/// NFT_MSG_NEWFLOWTABLE (nf_tables.h; not in libc).
const NFT_MSG_NEWFLOWTABLE: u16 = 22;
/// NFT_MSG_GETFLOWTABLE.
const NFT_MSG_GETFLOWTABLE: u16 = 23;
/// The flowtable's name in its table.
pub const FLOWTABLE: &str = "ft";
/// The base chain that adds connections to the flowtable.
pub const CHAIN: &str = "lb_flow";
/// The comment of its one rule.
const RULE_COMMENT: &str = "established DNAT connections into flowtable ft";
/// NF_CT_STATE_BIT(IP_CT_ESTABLISHED).
const CT_STATE_ESTABLISHED: u32 = 1 << 1;
/// IPS_DST_NAT.
const IPS_DST_NAT: u32 = 1 << 5;
const FAMILY: u16 = libc::NFPROTO_INET as u16;

/// The table that holds the flowtable of the backend table `nft_table`.
pub fn table_name(nft_table: &str) -> String {
    format!("{nft_table}_flow")
}

/// Why the flowtable could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum FlowtableError {
    /// The kernel has no software flowtable (nf_flow_table, nf_flow_table_inet,
    /// nft_flow_offload), or it is not loadable.
    #[error("the kernel has no nftables flowtable ({what} refused: {reason}); load nf_flow_table, nf_flow_table_inet and nft_flow_offload (Debian's kernels have them), or set [dataplane] flowtable = false")]
    Unsupported {
        /// The object the kernel refused.
        what: String,
        /// The kernel's reason.
        reason: String,
    },
    /// A device of the flowtable does not exist in lbd's network namespace.
    #[error("flowtable device {0} does not exist in this network namespace; name the interfaces lbd forwards between in [dataplane] flowtable_devices")]
    NoDevice(String),
    /// A device name nftables cannot take.
    #[error("flowtable device name {0:?} is not an interface name")]
    BadDevice(String),
    /// Any other refusal, or the socket.
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
}

/// The flowtable of one backend table, through its own nf_tables socket (opened in
/// the calling thread's network namespace).
#[derive(Debug)]
pub struct Flowtable {
    table: String,
    sock: NfSocket,
}

impl Flowtable {
    /// The flowtable table that belongs to the backend table `nft_table`. Touches
    /// nothing.
    pub fn new(nft_table: &str) -> Result<Flowtable, DataplaneError> {
        if nft_table.is_empty() || nft_table.len() > 250 || nft_table.contains('\0') {
            return Err(DataplaneError::BadTableName(nft_table.to_owned()));
        }
        Ok(Flowtable {
            table: table_name(nft_table),
            sock: NfSocket::open()?,
        })
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The devices of the flowtable when the table holds it and its rule as
    /// [`Flowtable::apply`] writes them; None otherwise (no table, or a kernel
    /// without flowtables). Reads only: no nf_tables commit, so the nft backend's
    /// adoption record stays valid.
    pub fn current(&self) -> Result<Option<Vec<String>>, DataplaneError> {
        let mut devices: Option<Vec<String>> = None;
        let refused = self.sock.request(
            |buf, seq| {
                // SAFETY: buf has room for a maximal message.
                unsafe {
                    let h = sys::nftnl_nlmsg_build_hdr(
                        buf.as_mut_ptr().cast(),
                        NFT_MSG_GETFLOWTABLE,
                        FAMILY,
                        (libc::NLM_F_DUMP | libc::NLM_F_ACK) as u16,
                        seq,
                    );
                    (*h).nlmsg_len as usize
                }
            },
            |hdr, p| {
                if hdr.nlmsg_type & 0xff != NFT_MSG_NEWFLOWTABLE {
                    return;
                }
                // SAFETY: p is a complete message from the kernel.
                if let Some((table, name, devs)) = unsafe { parse_flowtable(p) } {
                    if table == self.table && name == FLOWTABLE {
                        devices = Some(devs);
                    }
                }
            },
        )?;
        if refused.is_some() || devices.is_none() {
            return Ok(None);
        }
        let probe = RuleObj::new(&self.table, CHAIN);
        let mut rules = Vec::new();
        let refused = self.sock.request(
            |buf, seq| {
                // SAFETY: buf has room for a maximal message; the probe is live.
                unsafe {
                    let h = sys::nftnl_nlmsg_build_hdr(
                        buf.as_mut_ptr().cast(),
                        libc::NFT_MSG_GETRULE as u16,
                        FAMILY,
                        (libc::NLM_F_DUMP | libc::NLM_F_ACK) as u16,
                        seq,
                    );
                    sys::nftnl_rule_nlmsg_build_payload(h, probe.ptr());
                    (*h).nlmsg_len as usize
                }
            },
            |hdr, p| {
                if hdr.nlmsg_type & 0xff != libc::NFT_MSG_NEWRULE as u16 {
                    return;
                }
                // SAFETY: complete message.
                if let Some(r) = unsafe { parse_rule(p) } {
                    if r.table == self.table && r.chain == CHAIN {
                        rules.push(r.comment);
                    }
                }
            },
        )?;
        if refused.is_some() || rules != [RULE_COMMENT] {
            return Ok(None);
        }
        Ok(devices)
    }

    /// Replaces the table with one whose flowtable spans `devices`, in one batch:
    /// the old table (if any) and the new one never both hold, and a refusal leaves
    /// the old one as it was. Connections offloaded by the old flowtable go back to
    /// conntrack and are offloaded again at their next packet.
    pub fn apply(&self, devices: &[String]) -> Result<(), FlowtableError> {
        for d in devices {
            if d.is_empty() || d.len() >= libc::IFNAMSIZ || d.contains(['\0', '/', ' ']) {
                return Err(FlowtableError::BadDevice(d.clone()));
            }
        }
        let ctable = self.ctable()?;
        let table = nftnl::Table::new(&ctable, ProtoFamily::Inet);
        let mut batch = deleting(&table);
        batch.add(&table, MsgType::Add);
        let ft = FlowtableObj::new(&self.table, FLOWTABLE, devices);
        batch.add(&ft, MsgType::Add);
        let cname = CString::new(CHAIN).unwrap_or_default();
        let mut chain = nftnl::Chain::new(&cname, &table);
        chain.set_hook(nftnl::Hook::Forward, 0);
        chain.set_type(nftnl::ChainType::Filter);
        batch.add(&chain, MsgType::Add);
        let rule = offload_rule(&self.table);
        batch.add(&rule, MsgType::Add);
        let what = [
            format!("table inet {}", self.table),
            format!("deletion of table inet {}", self.table),
            format!("table inet {}", self.table),
            format!("flowtable {FLOWTABLE} (devices {})", devices.join(", ")),
            format!("chain {CHAIN}"),
            format!("rule \"{RULE_COMMENT}\""),
        ];
        let batch = batch.finalize();
        let seqs = batch.sequence_numbers();
        let pages: Vec<&[u8]> = batch.iter().collect();
        let refusals = self.sock.send_batch(&pages, seqs.clone())?;
        let Some(r) = refusals.first() else {
            return Ok(());
        };
        let span = (seqs.end - seqs.start) as usize;
        let first = seqs.start + u32::from(span > what.len());
        let idx = r.seq.checked_sub(first).map(|i| i as usize);
        let desc = idx
            .and_then(|i| what.get(i))
            .cloned()
            .unwrap_or_else(|| format!("the flowtable batch ({} messages)", what.len()));
        let reason = std::io::Error::from_raw_os_error(r.errno).to_string();
        // The flowtable (nf_flow_table_inet) or the rule's `flow add`
        // (nft_flow_offload) unknown to the kernel: ENOENT or EOPNOTSUPP. A missing
        // device is ENOENT too: tell them apart by the devices.
        if matches!(idx, Some(3) | Some(5))
            && (r.errno == libc::ENOENT || r.errno == libc::EOPNOTSUPP)
        {
            if let Some(d) = devices.iter().find(|d| !device_exists(d)) {
                return Err(FlowtableError::NoDevice(d.clone()));
            }
            return Err(FlowtableError::Unsupported { what: desc, reason });
        }
        Err(DataplaneError::Kernel {
            what: desc,
            reason,
            extack: if r.extack.is_empty() {
                String::new()
            } else {
                format!(": {}", r.extack)
            },
            hint: DataplaneError::hint_for(r.errno),
            errno: r.errno,
        }
        .into())
    }

    /// [`Flowtable::apply`] unless the kernel holds that already (same devices, in
    /// any order); whether it wrote. A start that finds the table as the last lbd
    /// left it commits nothing, so the nft backend adopts its own table by record.
    pub fn ensure(&self, devices: &[String]) -> Result<bool, FlowtableError> {
        if let Some(mut have) = self.current()? {
            let mut want = devices.to_vec();
            have.sort();
            want.sort();
            if have == want {
                return Ok(false);
            }
        }
        self.apply(devices).map(|()| true)
    }

    /// Removes the table when it is there (a read first: nothing is committed when
    /// there is none, which keeps the nft backend's adoption record valid).
    pub fn remove(&self) -> Result<(), DataplaneError> {
        if !self.table_exists()? {
            return Ok(());
        }
        let ctable = self.ctable()?;
        let table = nftnl::Table::new(&ctable, ProtoFamily::Inet);
        let batch = deleting(&table).finalize();
        let pages: Vec<&[u8]> = batch.iter().collect();
        let refusals = self.sock.send_batch(&pages, batch.sequence_numbers())?;
        match refusals.first() {
            None => Ok(()),
            Some(r) => Err(DataplaneError::Kernel {
                what: format!("deletion of table inet {}", self.table),
                reason: std::io::Error::from_raw_os_error(r.errno).to_string(),
                extack: String::new(),
                hint: DataplaneError::hint_for(r.errno),
                errno: r.errno,
            }),
        }
    }
}

/// A batch that deletes `table` whether or not it exists: added first (a no-op when
/// it exists), then deleted, so what follows starts from nothing.
fn deleting(table: &nftnl::Table) -> nftnl::Batch {
    let mut batch = nftnl::Batch::new();
    batch.add(table, MsgType::Add);
    batch.add(table, MsgType::Del);
    batch
}

impl Flowtable {
    /// The table's name for libnftnl.
    fn ctable(&self) -> Result<CString, DataplaneError> {
        CString::new(self.table.as_str())
            .map_err(|_| DataplaneError::BadTableName(self.table.clone()))
    }

    /// Whether the table exists (a GETTABLE of its name).
    fn table_exists(&self) -> Result<bool, DataplaneError> {
        let ctable = self.ctable()?;
        let refused = self.sock.request(
            |buf, seq| {
                // SAFETY: buf has room for a maximal message; the name is NUL-terminated.
                unsafe {
                    let t = sys::nftnl_table_alloc();
                    if t.is_null() {
                        std::process::abort();
                    }
                    sys::nftnl_table_set_str(t, sys::NFTNL_TABLE_NAME as u16, ctable.as_ptr());
                    let h = sys::nftnl_nlmsg_build_hdr(
                        buf.as_mut_ptr().cast(),
                        libc::NFT_MSG_GETTABLE as u16,
                        FAMILY,
                        libc::NLM_F_ACK as u16,
                        seq,
                    );
                    sys::nftnl_table_nlmsg_build_payload(h, t);
                    sys::nftnl_table_free(t);
                    (*h).nlmsg_len as usize
                }
            },
            |_, _| {},
        )?;
        match refused {
            None => Ok(true),
            Some(libc::ENOENT) => Ok(false),
            Some(errno) => Err(DataplaneError::Kernel {
                what: format!("table inet {}", self.table),
                reason: std::io::Error::from_raw_os_error(errno).to_string(),
                extack: String::new(),
                hint: DataplaneError::hint_for(errno),
                errno,
            }),
        }
    }
}

/// Table, name and devices of a NEWFLOWTABLE message.
///
/// # Safety
/// `nlh` must point to a complete netlink message.
unsafe fn parse_flowtable(nlh: *const libc::nlmsghdr) -> Option<(String, String, Vec<String>)> {
    let str_of = |p: *const c_char| {
        if p.is_null() {
            String::new()
        } else {
            // SAFETY: libnftnl's NUL-terminated copy, alive with the object.
            unsafe { std::ffi::CStr::from_ptr(p) }
                .to_string_lossy()
                .into_owned()
        }
    };
    // SAFETY: allocation; parse of a complete message; reads of its attributes
    // while it lives; freed at the end.
    unsafe {
        let ft = sys::nftnl_flowtable_alloc();
        if ft.is_null() {
            std::process::abort();
        }
        let parsed = if sys::nftnl_flowtable_nlmsg_parse(nlh.cast(), ft) < 0 {
            None
        } else {
            let table = str_of(sys::nftnl_flowtable_get_str(
                ft,
                sys::NFTNL_FLOWTABLE_TABLE as u16,
            ));
            let name = str_of(sys::nftnl_flowtable_get_str(
                ft,
                sys::NFTNL_FLOWTABLE_NAME as u16,
            ));
            let mut devices = Vec::new();
            let arr = sys::nftnl_flowtable_get_array(ft, sys::NFTNL_FLOWTABLE_DEVICES as u16);
            if !arr.is_null() {
                let mut i = 0;
                while !(*arr.add(i)).is_null() {
                    devices.push(str_of(*arr.add(i)));
                    i += 1;
                }
            }
            Some((table, name, devices))
        };
        sys::nftnl_flowtable_free(ft);
        parsed
    }
}

fn device_exists(name: &str) -> bool {
    let Ok(c) = CString::new(name) else {
        return false;
    };
    // SAFETY: a NUL-terminated name.
    unsafe { libc::if_nametoindex(c.as_ptr()) != 0 }
}

/// `ct state established ct status dnat flow add @ft`.
fn offload_rule(table: &str) -> RuleObj {
    let reg = libc::NFT_REG_1 as u32;
    let rule = RuleObj::new(table, CHAIN).with(&[], RULE_COMMENT);
    let bit_set = |bit: u32| {
        [
            Expr::Bitwise {
                sreg: reg,
                dreg: reg,
                mask: bit.to_ne_bytes().to_vec(),
                xor: vec![0; 4],
            },
            Expr::Cmp {
                sreg: reg,
                op: libc::NFT_CMP_NEQ as u32,
                data: vec![0; 4],
            },
        ]
    };
    let mut raw = vec![ct_load(libc::NFT_CT_STATE as u32, reg)];
    raw.extend(
        bit_set(CT_STATE_ESTABLISHED)
            .iter()
            .map(|e| e.build().into_raw()),
    );
    raw.push(ct_load(libc::NFT_CT_STATUS as u32, reg));
    raw.extend(bit_set(IPS_DST_NAT).iter().map(|e| e.build().into_raw()));
    raw.push(flow_offload(FLOWTABLE));
    for e in raw {
        // SAFETY: the rule takes ownership of each expression.
        unsafe { sys::nftnl_rule_add_expr(rule.ptr(), e) };
    }
    rule
}

fn new_expr(name: &std::ffi::CStr) -> *mut sys::nftnl_expr {
    // SAFETY: a valid NUL-terminated name.
    let p = unsafe { sys::nftnl_expr_alloc(name.as_ptr()) };
    if p.is_null() {
        // Out of memory: as std does.
        std::process::abort();
    }
    p
}

/// `ct <key>` without a direction (state, status): the kernel refuses one.
fn ct_load(key: u32, dreg: u32) -> *mut sys::nftnl_expr {
    let e = new_expr(c"ct");
    // SAFETY: a live expression and its own attributes.
    unsafe {
        sys::nftnl_expr_set_u32(e, sys::NFTNL_EXPR_CT_KEY as u16, key);
        sys::nftnl_expr_set_u32(e, sys::NFTNL_EXPR_CT_DREG as u16, dreg);
    }
    e
}

/// `flow add @<flowtable>`.
fn flow_offload(flowtable: &str) -> *mut sys::nftnl_expr {
    let e = new_expr(c"flow_offload");
    let name = CString::new(flowtable).unwrap_or_default();
    // SAFETY: libnftnl copies the string.
    unsafe { sys::nftnl_expr_set_str(e, sys::NFTNL_EXPR_FLOW_TABLE_NAME as u16, name.as_ptr()) };
    e
}

/// A libnftnl flowtable of the inet family, hooked at ingress priority 0.
struct FlowtableObj(NonNull<sys::nftnl_flowtable>);

impl FlowtableObj {
    fn new(table: &str, name: &str, devices: &[String]) -> FlowtableObj {
        let cstr = |s: &str| CString::new(s.replace('\0', "")).unwrap_or_default();
        // SAFETY: allocation, then attributes that libnftnl copies.
        unsafe {
            let p = sys::nftnl_flowtable_alloc();
            let Some(ft) = NonNull::new(p) else {
                std::process::abort();
            };
            let p = ft.as_ptr();
            sys::nftnl_flowtable_set_str(
                p,
                sys::NFTNL_FLOWTABLE_TABLE as u16,
                cstr(table).as_ptr(),
            );
            sys::nftnl_flowtable_set_str(p, sys::NFTNL_FLOWTABLE_NAME as u16, cstr(name).as_ptr());
            sys::nftnl_flowtable_set_u32(p, sys::NFTNL_FLOWTABLE_FAMILY as u16, u32::from(FAMILY));
            sys::nftnl_flowtable_set_u32(
                p,
                sys::NFTNL_FLOWTABLE_HOOKNUM as u16,
                libc::NF_NETDEV_INGRESS as u32,
            );
            sys::nftnl_flowtable_set_s32(p, sys::NFTNL_FLOWTABLE_PRIO as u16, 0);
            let names: Vec<CString> = devices.iter().map(|d| cstr(d)).collect();
            let mut ptrs: Vec<*const c_char> = names.iter().map(|c| c.as_ptr()).collect();
            ptrs.push(std::ptr::null());
            sys::nftnl_flowtable_set_array(
                p,
                sys::NFTNL_FLOWTABLE_DEVICES as u16,
                ptrs.as_mut_ptr(),
            );
            FlowtableObj(ft)
        }
    }
}

impl Drop for FlowtableObj {
    fn drop(&mut self) {
        // SAFETY: owned.
        unsafe { sys::nftnl_flowtable_free(self.0.as_ptr()) }
    }
}

// SAFETY: a flowtable with a few device names is far below the message limit.
unsafe impl NlMsg for FlowtableObj {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, msg_type: MsgType) {
        let (t, flags) = match msg_type {
            MsgType::Add => (NFT_MSG_NEWFLOWTABLE, libc::NLM_F_CREATE | libc::NLM_F_ACK),
            // Never sent: the table's deletion takes the flowtable with it.
            MsgType::Del => (NFT_MSG_NEWFLOWTABLE + 2, libc::NLM_F_ACK),
        };
        // SAFETY: buf has room for a maximal message (nftnl's batch page).
        unsafe {
            let h = sys::nftnl_nlmsg_build_hdr(buf.cast(), t, FAMILY, flags as u16, seq);
            sys::nftnl_flowtable_nlmsg_build_payload(h, self.0.as_ptr());
        }
    }
}
