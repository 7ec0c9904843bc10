//! The nftables backend: one table of its own (family inet), changed by one netlink
//! batch per apply. See [`layout`] for what the table holds.

mod adopt;
mod expr;
pub mod flowtable;
pub mod layout;
mod netlink;
mod objects;
mod record;

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::mem::size_of;
use std::time::Instant;

use nftnl::nftnl_sys as sys;
use nftnl::{MsgType, ProtoFamily};

pub use layout::Counting;
use layout::{Changes, ElemData, ElemKey, Layout, SetState, TableState, CHAINS};
use netlink::NfSocket;
use objects::{ElemDump, RuleObj, SetObj};
use record::{Committed, Fingerprint, Plan};

use crate::{
    AppliedState, ApplyReport, BackendCounters, BackendKind, ChangeHint, Dataplane, DataplaneError,
    DesiredState, Drift,
};

/// The table name lbd uses unless told otherwise.
pub const DEFAULT_TABLE: &str = "lbsuite";

/// The nftables backend.
#[derive(Debug)]
pub struct NftBackend {
    table: String,
    sock: NfSocket,
    /// What the last successful apply committed.
    committed: Option<Box<Committed>>,
    /// The ruleset generation right after our last commit: while the kernel reports
    /// it unchanged, nobody else touched nf_tables and the record is the truth.
    generation: Option<u32>,
    /// The last apply succeeded, so a change hint is relative to the record.
    hints_usable: bool,
    /// Check every change hint against a full comparison (tests, debug builds).
    verify_hints: bool,
    /// What the table counts.
    counting: Counting,
    /// Where a stopping lbd leaves its adoption record, and the next one reads it.
    adoption: Option<std::path::PathBuf>,
}

/// Batch page size: one sendmsg takes at most 1024 pages (UIO_MAXIOV); 1 MiB pages
/// carry batches up to 1 GiB.
const BATCH_PAGE: u32 = 1 << 20;

/// NFTA_GEN_ID (nf_tables.h; not in libc).
const NFTA_GEN_ID: u16 = 1;

const FAMILY: u16 = libc::NFPROTO_INET as u16;

impl NftBackend {
    /// A backend owning table `inet <table>`, talking to the netfilter of the calling
    /// thread's network namespace. Touches nothing until the first apply.
    pub fn new(table: &str) -> Result<NftBackend, DataplaneError> {
        if table.is_empty() || table.len() > 255 || table.contains('\0') {
            return Err(DataplaneError::BadTableName(table.to_owned()));
        }
        Ok(NftBackend {
            table: table.to_owned(),
            sock: NfSocket::open()?,
            committed: None,
            generation: None,
            hints_usable: false,
            verify_hints: cfg!(debug_assertions),
            counting: Counting::default(),
            adoption: None,
        })
    }

    /// A backend as [`NftBackend::new`] makes, counting `counting`.
    pub fn with_counting(table: &str, counting: Counting) -> Result<NftBackend, DataplaneError> {
        let mut b = NftBackend::new(table)?;
        b.counting = counting;
        Ok(b)
    }

    /// Changes what the table counts from the next apply on (which then re-reads the
    /// table and changes what differs: maps with or without counters, the count sets).
    pub fn set_counting(&mut self, counting: Counting) {
        if counting != self.counting {
            self.counting = counting;
            self.committed = None;
            self.generation = None;
            self.hints_usable = false;
        }
    }

    /// What the table counts.
    pub fn counting(&self) -> Counting {
        self.counting
    }

    /// The owned table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Where the adoption record is ([`adopt`]): the first apply reads (and removes)
    /// it, [`NftBackend::write_adoption_record`] writes it.
    pub fn set_adoption_record(&mut self, path: std::path::PathBuf) {
        self.adoption = Some(path);
    }

    /// Writes the adoption record, for the next lbd to take the table as it is without
    /// reading it back (nor planning it, when the record holds it): only when the
    /// table is what the last apply committed and nobody committed since. Whether it
    /// was written.
    pub fn write_adoption_record(&mut self) -> Result<bool, DataplaneError> {
        if self.adoption.is_none() || self.committed.is_none() {
            return Ok(false);
        }
        let generation = self.generation()?;
        if self.generation != Some(generation) {
            return Ok(false);
        }
        let (Some(path), Some(c)) = (&self.adoption, &mut self.committed) else {
            return Ok(false);
        };
        let Some(record) =
            adopt::AdoptionRecord::now(&self.table, c.counting(), c.content(), generation)
        else {
            return Ok(false);
        };
        record
            .write(path, c.table_for_record())
            .map_err(|e| DataplaneError::Malformed(format!("{}: {e}", path.display())))?;
        Ok(true)
    }

    /// Whether the adoption record says that the kernel holds the table of `desired`
    /// at `generation` (read once: the record is removed): `Some` with the committed
    /// table if the record holds it.
    fn adoption_matches(
        &self,
        desired: &DesiredState,
        generation: u32,
    ) -> Option<Option<record::Held>> {
        let path = self.adoption.as_deref()?;
        let (found, held) = adopt::AdoptionRecord::take(path)?;
        let services: Vec<u128> = desired.services.iter().map(Fingerprint::of).collect();
        let content = record::content_fingerprint(&services, &desired.snat, self.counting);
        adopt::AdoptionRecord::now(&self.table, self.counting, content, generation)
            .is_some_and(|now| now == found)
            .then_some(held)
    }

    /// Whether the record of the last apply holds the committed table, so that a
    /// change is computed without planning it first: after an adopting apply, once
    /// the background plan finished (taken here; never waits). For tests.
    #[doc(hidden)]
    pub fn committed_table_ready(&mut self) -> bool {
        self.committed.as_mut().is_some_and(|c| c.table_ready())
    }

    /// Whether [`Dataplane::apply_changed`] checks each hint against a full comparison
    /// and fails with [`DataplaneError::WrongHint`] on one that leaves out a change
    /// (on in debug builds; costs what a plain `apply` costs).
    pub fn set_verify_hints(&mut self, on: bool) {
        self.verify_hints = on;
    }

    /// The ruleset generation (bumped by every nf_tables commit, anyone's).
    fn generation(&self) -> Result<u32, DataplaneError> {
        let mut id = None;
        let refused = self.sock.request(
            |buf, seq| {
                // SAFETY: buf has room for a maximal message.
                unsafe {
                    let h = sys::nftnl_nlmsg_build_hdr(
                        buf.as_mut_ptr().cast(),
                        libc::NFT_MSG_GETGEN as u16,
                        0,
                        libc::NLM_F_ACK as u16,
                        seq,
                    );
                    (*h).nlmsg_len as usize
                }
            },
            |hdr, p| {
                if hdr.nlmsg_type & 0xff == libc::NFT_MSG_NEWGEN as u16 {
                    // SAFETY: p is a complete message of hdr.nlmsg_len bytes.
                    let msg = unsafe {
                        std::slice::from_raw_parts(p.cast::<u8>(), hdr.nlmsg_len as usize)
                    };
                    id = gen_id(msg);
                }
            },
        )?;
        if let Some(errno) = refused {
            return Err(kernel_error(
                "ruleset generation request".into(),
                errno,
                String::new(),
            ));
        }
        id.ok_or_else(|| DataplaneError::Malformed("NEWGEN without NFTA_GEN_ID".into()))
    }

    fn dump(
        &self,
        msg: i32,
        flags: i32,
        payload: impl FnOnce(*mut libc::nlmsghdr),
        mut each: impl FnMut(*const libc::nlmsghdr),
    ) -> Result<Option<i32>, DataplaneError> {
        self.sock.request(
            |buf, seq| {
                // SAFETY: buf has room for a maximal message; payload writes into it.
                unsafe {
                    let h = sys::nftnl_nlmsg_build_hdr(
                        buf.as_mut_ptr().cast(),
                        msg as u16,
                        FAMILY,
                        (libc::NLM_F_ACK | flags) as u16,
                        seq,
                    );
                    payload(h);
                    (*h).nlmsg_len as usize
                }
            },
            |_, p| each(p),
        )
    }

    /// Reads our table from the kernel (elements and counters included; not the
    /// elements of the persist sets, which the kernel writes: clients remembered).
    fn kernel_state(&self) -> Result<TableState, DataplaneError> {
        self.kernel_read(&|name| !layout::is_dynamic(name))
    }

    /// Reads our table, the elements only of the sets `elements_of` names.
    fn kernel_read(
        &self,
        elements_of: &dyn Fn(&str) -> bool,
    ) -> Result<TableState, DataplaneError> {
        let mut st = TableState::default();
        let mut tables = Vec::new();
        let r = self.dump(
            libc::NFT_MSG_GETTABLE,
            libc::NLM_F_DUMP,
            |_| {},
            |p| {
                // SAFETY: p is a complete message from the kernel.
                if let Some(t) = unsafe { objects::parse_table(p) } {
                    tables.push(t);
                }
            },
        )?;
        if let Some(errno) = r {
            return Err(kernel_error("table list".into(), errno, String::new()));
        }
        if !tables.contains(&self.table) {
            return Ok(st);
        }
        st.exists = true;
        let r = self.dump(
            libc::NFT_MSG_GETCHAIN,
            libc::NLM_F_DUMP,
            |_| {},
            |p| {
                // SAFETY: as above.
                if let Some((t, c)) = unsafe { objects::parse_chain(p) } {
                    if t == self.table {
                        st.chains.insert(c);
                    }
                }
            },
        )?;
        if let Some(errno) = r {
            return Err(kernel_error(
                format!("chain list of {}", self.table),
                errno,
                String::new(),
            ));
        }
        let probe = SetObj::new(&self.table, "");
        // SAFETY: the name attribute is dropped so the dump covers the whole table.
        unsafe { sys::nftnl_set_unset(probe.ptr(), sys::NFTNL_SET_NAME as u16) };
        let mut sets = Vec::new();
        let r = self.dump(
            libc::NFT_MSG_GETSET,
            libc::NLM_F_DUMP,
            // SAFETY: building the payload of a live set into the request.
            |h| unsafe { sys::nftnl_set_nlmsg_build_payload(h, probe.ptr()) },
            |p| {
                // SAFETY: complete message.
                if let Some(s) = unsafe { objects::parse_set(p) } {
                    if s.table == self.table {
                        sets.push(s);
                    }
                }
            },
        )?;
        if let Some(errno) = r {
            return Err(kernel_error(
                format!("set list of {}", self.table),
                errno,
                String::new(),
            ));
        }
        for s in sets {
            if !elements_of(&s.name) {
                st.sets.insert(
                    s.name,
                    SetState {
                        spec: s.spec,
                        elements: BTreeMap::new(),
                        counters: HashMap::new(),
                    },
                );
                continue;
            }
            let mut dump = ElemDump::new(&self.table, &s.name);
            let mut ok = true;
            let req = ElemDump::new(&self.table, &s.name);
            let r = self.dump(
                libc::NFT_MSG_GETSETELEM,
                libc::NLM_F_DUMP,
                // SAFETY: payload of a live set without elements.
                |h| unsafe { sys::nftnl_set_elems_nlmsg_build_payload(h, req.set().ptr()) },
                // SAFETY: complete message.
                |p| ok &= unsafe { dump.parse(p) },
            )?;
            if let Some(errno) = r {
                return Err(kernel_error(
                    format!("elements of {}", s.name),
                    errno,
                    String::new(),
                ));
            }
            if !ok {
                return Err(DataplaneError::Malformed(format!("elements of {}", s.name)));
            }
            let mut set = SetState {
                spec: s.spec,
                elements: BTreeMap::new(),
                counters: HashMap::new(),
            };
            for e in dump.elements() {
                if let Some(c) = e.counter {
                    set.counters.insert(e.key.clone(), c);
                }
                set.elements
                    .insert(e.key, ElemData::new(e.data, String::new()));
            }
            st.sets.insert(s.name, set);
        }
        let probe = RuleObj::new(&self.table, "");
        // SAFETY: drop the chain attribute: all chains of the table.
        unsafe { sys::nftnl_rule_unset(probe.ptr(), sys::NFTNL_RULE_CHAIN as u16) };
        let mut rules = Vec::new();
        let r = self.dump(
            libc::NFT_MSG_GETRULE,
            libc::NLM_F_DUMP,
            // SAFETY: payload of a live rule.
            |h| unsafe { sys::nftnl_rule_nlmsg_build_payload(h, probe.ptr()) },
            |p| {
                // SAFETY: complete message.
                if let Some(r) = unsafe { objects::parse_rule(p) } {
                    if r.table == self.table {
                        rules.push(r);
                    }
                }
            },
        )?;
        if let Some(errno) = r {
            return Err(kernel_error(
                format!("rule list of {}", self.table),
                errno,
                String::new(),
            ));
        }
        // Dumps come in chain order, by handle within a chain.
        for r in rules {
            st.rules.entry(r.chain).or_default().push(r.comment);
        }
        Ok(st)
    }

    /// Builds and sends the batch for `c`; Ok(report) or the first refusal as error.
    fn send(&self, c: &Changes, want: &Layout) -> Result<ApplyReport, DataplaneError> {
        let ctable = CString::new(self.table.as_str())
            .map_err(|_| DataplaneError::BadTableName(self.table.clone()))?;
        let table = nftnl::Table::new(&ctable, ProtoFamily::Inet);
        let mut batch = nftnl::Batch::with_page_size(BATCH_PAGE);
        let mut what: Vec<String> = Vec::new();
        if c.create_table {
            batch.add(&table, MsgType::Add);
            what.push(format!("table inet {}", self.table));
        }
        for def in &c.add_chains {
            let name = CString::new(def.name).unwrap_or_default();
            let mut chain = nftnl::Chain::new(&name, &table);
            chain.set_hook(def.hook, def.priority);
            chain.set_type(if def.nat {
                nftnl::ChainType::Nat
            } else {
                nftnl::ChainType::Filter
            });
            batch.add(&chain, MsgType::Add);
            what.push(format!(
                "chain {} (base chain, hook {:?} priority {})",
                def.name, def.hook, def.priority
            ));
        }
        for chain in &c.flush_chains {
            batch.add(&RuleObj::new(&self.table, chain), MsgType::Del);
            what.push(format!("flush of chain {chain}"));
        }
        // Elements go first: a verdict map's elements hold the services' chains.
        for (name, elems) in &c.del_elems {
            self.write_elems(&mut batch, &mut what, MsgType::Del, name, elems);
        }
        // Verdict maps, then the chains they led to, then the maps those chains use.
        let (jump_maps, other_sets): (Vec<&String>, Vec<&String>) =
            c.del_sets.iter().partition(|n| layout::is_jump_map(n));
        for name in jump_maps {
            batch.add(&SetObj::new(&self.table, name), MsgType::Del);
            what.push(format!("deletion of map {name}"));
        }
        for name in &c.del_svc_chains {
            let name = CString::new(name.as_str()).unwrap_or_default();
            batch.add(&nftnl::Chain::new(&name, &table), MsgType::Del);
            what.push(format!("deletion of chain {}", name.to_string_lossy()));
        }
        for name in other_sets {
            batch.add(&SetObj::new(&self.table, name), MsgType::Del);
            what.push(format!("deletion of map {name}"));
        }
        for name in &c.del_chains {
            let name = CString::new(name.as_str()).unwrap_or_default();
            batch.add(&nftnl::Chain::new(&name, &table), MsgType::Del);
            what.push(format!("deletion of chain {}", name.to_string_lossy()));
        }
        for (id, name) in c.add_sets.iter().enumerate() {
            let Some(spec) = want.state.sets.get(name).map(|s| &s.spec) else {
                continue;
            };
            batch.add(
                &SetObj::new(&self.table, name)
                    .with_spec(spec, id as u32 + 1)
                    .with_comment(&layout::set_comment(name)),
                MsgType::Add,
            );
            what.push(format!("creation of map {name}"));
        }
        for name in &c.add_svc_chains {
            let cname = CString::new(name.as_str()).unwrap_or_default();
            batch.add(&nftnl::Chain::new(&cname, &table), MsgType::Add);
            what.push(format!("chain {name}"));
        }
        // Rules before elements: a rule that reads a map walks the map's elements
        // when it binds it, so an empty map costs it nothing.
        for chain in &c.add_rules {
            for r in want.rules.get(chain).into_iter().flatten() {
                batch.add(
                    &RuleObj::new(&self.table, chain).with(&r.exprs, &r.comment),
                    MsgType::Add,
                );
                what.push(format!("rule \"{}\" in chain {chain}", r.comment));
            }
        }
        for (name, elems) in &c.add_elems {
            self.write_elems(&mut batch, &mut what, MsgType::Add, name, elems);
        }
        for (name, _) in &c.fill_sets {
            if let Some(set) = want.state.sets.get(name) {
                self.write_elems(&mut batch, &mut what, MsgType::Add, name, &set.elements);
            }
        }
        let batch = batch.finalize();
        let seqs = batch.sequence_numbers();
        let pages: Vec<&[u8]> = batch.iter().collect();
        let bytes: usize = pages.iter().map(|p| p.len()).sum();
        let refusals = self.sock.send_batch(&pages, seqs.clone())?;
        // Batch begin/end carry a sequence number only where the kernel acks them.
        let span = (seqs.end - seqs.start) as usize;
        let first = seqs.start + u32::from(span > what.len());
        if let Some(r) = refusals.first() {
            let idx = r.seq.checked_sub(first).map(|i| i as usize);
            let desc = match idx.and_then(|i| what.get(i)) {
                Some(d) => d.clone(),
                None => format!("the batch ({} messages)", what.len()),
            };
            return Err(kernel_error(desc, r.errno, r.extack.clone()));
        }
        let mut report = ApplyReport::default();
        report.kernel.nft = c.counts();
        report.messages = what.len();
        report.batch_bytes = bytes;
        Ok(report)
    }
}

impl NftBackend {
    fn write_elems<'a, E: ElemPair<'a>>(
        &self,
        batch: &mut nftnl::Batch,
        what: &mut Vec<String>,
        kind: MsgType,
        name: &str,
        elems: impl IntoIterator<Item = E, IntoIter: ExactSizeIterator>,
    ) {
        let elems = elems.into_iter();
        let count = elems.len();
        let list: Vec<objects::ElemRef<'a>> = elems.map(ElemPair::pair).collect();
        let w = objects::ElemWriter::new(&self.table, name, layout::is_jump_map(name), list);
        let mut n = 0;
        while w.pending() {
            batch.add(&w, kind);
            n += 1;
        }
        let verb = if kind == MsgType::Add {
            "adding"
        } else {
            "deleting"
        };
        for i in 0..n {
            what.push(format!(
                "{verb} elements of map {name} (message {} of {n}, {count} elements in all)",
                i + 1,
            ));
        }
    }
}

/// An element to write: key, data (maps) and comment.
trait ElemPair<'a> {
    fn pair(self) -> objects::ElemRef<'a>;
}

impl<'a> ElemPair<'a> for &'a ElemKey {
    fn pair(self) -> objects::ElemRef<'a> {
        (self, None, "")
    }
}

impl<'a> ElemPair<'a> for &'a (ElemKey, ElemData) {
    fn pair(self) -> objects::ElemRef<'a> {
        (&self.0, Some(&self.1.data), &self.1.comment)
    }
}

impl<'a> ElemPair<'a> for (&'a ElemKey, &'a ElemData) {
    fn pair(self) -> objects::ElemRef<'a> {
        (self.0, Some(&self.1.data), &self.1.comment)
    }
}

fn kernel_error(what: String, errno: i32, extack: String) -> DataplaneError {
    DataplaneError::Kernel {
        what,
        reason: std::io::Error::from_raw_os_error(errno).to_string(),
        extack: if extack.is_empty() {
            extack
        } else {
            format!(": {extack}")
        },
        hint: DataplaneError::hint_for(errno),
        errno,
    }
}

/// NFTA_GEN_ID from a NEWGEN message.
fn gen_id(msg: &[u8]) -> Option<u32> {
    // nlmsghdr, nfgenmsg (4 bytes), then attributes.
    let mut attrs = msg.get(size_of::<libc::nlmsghdr>() + 4..)?;
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let ty = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if ty == NFTA_GEN_ID && len >= 8 {
            return Some(u32::from_be_bytes(attrs[4..8].try_into().ok()?));
        }
        attrs = &attrs[((len + 3) & !3).min(attrs.len())..];
    }
    None
}

/// A table committed and not recorded yet, and what it counts.
type Unrecorded = (TableState, Counting);

impl NftBackend {
    /// Sends an incremental plan and records it; `Ok(None)` when the full path must run.
    fn run_plan(
        &mut self,
        plan: Plan,
        desired: &DesiredState,
        hint: Option<&ChangeHint>,
        start: Instant,
    ) -> Result<Option<ApplyReport>, DataplaneError> {
        let step = match plan {
            Plan::Unchanged => {
                return Ok(Some(ApplyReport {
                    duration: start.elapsed(),
                    ..ApplyReport::default()
                }))
            }
            Plan::Full => return Ok(None),
            Plan::Step(step) => step,
        };
        let mut report = if step.changes.is_empty() {
            ApplyReport::default()
        } else {
            match self.send(&step.changes, &step.extra) {
                Ok(r) => r,
                Err(e) => {
                    // Refused: read the kernel and diff in full.
                    tracing::debug!(table = %self.table, error = %e, "incremental nft batch refused");
                    self.generation = None;
                    return Ok(None);
                }
            }
        };
        if report.messages > 0 {
            self.generation = Some(self.generation()?);
        }
        if let Some(c) = &mut self.committed {
            c.count_changes(desired, hint, &mut report);
            c.commit(*step, desired);
        }
        report.duration = start.elapsed();
        tracing::debug!(table = %self.table, changes = report.changes(), ?report.duration, "nft apply (incremental)");
        Ok(Some(report))
    }

    /// Whether the record may be trusted: ours, and nobody committed since.
    fn record_trusted(&self) -> Result<bool, DataplaneError> {
        // A record that counts otherwise (the start's first batch left the counting
        // to a second one) is compared in full.
        let counts_as_wanted = self
            .committed
            .as_ref()
            .is_some_and(|c| c.counting() == self.counting);
        if !counts_as_wanted || self.generation.is_none() {
            return Ok(false);
        }
        Ok(self.generation == Some(self.generation()?))
    }

    fn apply_hinted(
        &mut self,
        desired: &DesiredState,
        hint: &ChangeHint,
    ) -> Result<ApplyReport, DataplaneError> {
        let start = Instant::now();
        if self.verify_hints {
            if let Some(c) = &self.committed {
                c.verify_hint(desired, hint)?;
            }
        }
        if self.hints_usable && self.record_trusted()? {
            let plan = match &mut self.committed {
                Some(c) => {
                    c.ensure_table()?;
                    c.plan_hinted(desired, hint)?
                }
                None => None,
            };
            if let Some(plan) = plan {
                if let Some(mut report) = self.run_plan(plan, desired, Some(hint), start)? {
                    report.hint_used = true;
                    return Ok(report);
                }
            }
        }
        self.apply_full(desired, start)
    }

    fn apply_full(
        &mut self,
        desired: &DesiredState,
        start: Instant,
    ) -> Result<ApplyReport, DataplaneError> {
        let Some((report, planned)) = self.apply_full_parts(desired, start, &mut || true, false)?
        else {
            return Ok(ApplyReport::default());
        };
        if let Some((state, counting)) = planned {
            self.record(desired, state, counting);
        }
        Ok(report)
    }

    /// The record of `desired`, committed as `state` counting `counting`.
    fn record(&mut self, desired: &DesiredState, state: TableState, counting: Counting) {
        self.committed = Some(Box::new(Committed::new(desired, state, counting)));
    }

    /// The first apply of a start: as [`Dataplane::apply`], with two calls on the way.
    /// `checked` is called once `desired` has passed what a dry run checks (its layout
    /// planned without error, or the table adopted from the previous lbd's record) and
    /// before anything is sent to the kernel; when it returns false the apply stops
    /// there, nothing sent (`applied` hears `Ok(None)`). An apply that fails before
    /// its check never calls `checked`. `applied` hears the outcome as soon as the
    /// kernel has answered, before the record of the commit is made (at 10,000
    /// services tens of milliseconds), so that the caller goes on meanwhile.
    ///
    /// On a kernel without the table, what the table counts (a counter per server of
    /// every service: at 10,000 services x 8 servers a third of the batch's cost in
    /// the kernel) comes in a second batch, sent after `applied` was called: the
    /// services forward that much sooner, and the connections they take in between
    /// (a few hundred milliseconds at 10,000 services) are not counted per server.
    pub fn apply_first(
        &mut self,
        desired: &DesiredState,
        checked: impl FnOnce() -> bool,
        applied: impl FnOnce(Result<Option<ApplyReport>, DataplaneError>),
    ) {
        // Asked once: a path that falls back to another asks again.
        let mut checked = Some(checked);
        let mut verdict = None;
        let mut check = || *verdict.get_or_insert_with(|| checked.take().is_some_and(|f| f()));
        let outcome = self.apply_full_parts(desired, Instant::now(), &mut check, true);
        self.hints_usable = outcome.is_ok();
        let (state, counting) = match outcome {
            Ok(Some((report, planned))) => {
                applied(Ok(Some(report)));
                match planned {
                    Some(p) => p,
                    None => return,
                }
            }
            Ok(None) => return applied(Ok(None)),
            Err(e) => return applied(Err(e)),
        };
        if counting == self.counting {
            return self.record(desired, state, counting);
        }
        // The counting's batch, against the table just committed.
        let start = Instant::now();
        let added = (|| {
            let want = layout::plan(desired, self.counting)?;
            let report = self.send(&layout::diff(&state, &want), &want)?;
            self.generation = Some(self.generation()?);
            Ok::<_, DataplaneError>((report, want.state))
        })();
        match added {
            Ok((report, counted)) => {
                self.record(desired, counted, self.counting);
                tracing::info!(table = %self.table, changes = report.changes(), duration_ms = (start.elapsed().as_secs_f64() * 10_000.0).round() / 10.0, "nft counters added after the first apply");
            }
            Err(e) => {
                // The record says what the table counts: the next apply compares in
                // full and adds the rest.
                self.record(desired, state, counting);
                self.generation = None;
                self.hints_usable = false;
                tracing::warn!(table = %self.table, error = %e, "nft counters not added after the first apply; the next apply adds them");
            }
        }
    }

    /// A full apply up to the record: the report, and the planned table still to be
    /// recorded (`None`: the record is made). `checked` as [`NftBackend::apply_first`]
    /// says; `Ok(None)` when it stopped the apply.
    fn apply_full_parts(
        &mut self,
        desired: &DesiredState,
        start: Instant,
        checked: &mut dyn FnMut() -> bool,
        defer_counting: bool,
    ) -> Result<Option<(ApplyReport, Option<Unrecorded>)>, DataplaneError> {
        // Trust our record only if nobody committed anything since our last batch.
        let generation = self.generation()?;
        let trusted = self.generation == Some(generation) && self.committed.is_some();
        // A start after a clean stop: the table is what the last lbd committed, and
        // that is what is wanted (as recorded, or planned in the background for the
        // first change).
        let adopted = match self.committed {
            None => self.adoption_matches(desired, generation),
            Some(_) => None,
        };
        if let Some(held) = adopted {
            tracing::info!(table = %self.table, recorded_table = held.is_some(), "nft table adopted as the previous lbd left it (adoption record; not read back)");
            self.generation = Some(generation);
            self.committed = Some(Box::new(Committed::adopted(desired, self.counting, held)));
            // What the previous lbd committed from this very state passed the checks.
            if !checked() {
                return Ok(None);
            }
            let report = ApplyReport {
                duration: start.elapsed(),
                ..ApplyReport::default()
            };
            return Ok(Some((report, None)));
        }
        let counts_as_wanted = self
            .committed
            .as_ref()
            .is_some_and(|c| c.counting() == self.counting);
        if trusted && counts_as_wanted {
            let plan = match &mut self.committed {
                Some(c) => {
                    c.ensure_table()?;
                    c.plan(desired)?
                }
                None => Plan::Full,
            };
            // The services the record holds passed the checks; a step plans the
            // changed ones (its checks) before it sends anything.
            if !checked() {
                return Ok(None);
            }
            if let Some(report) = self.run_plan(plan, desired, None, start)? {
                return Ok(Some((report, None)));
            }
        }
        let trusted = trusted && self.generation.is_some();
        // A first apply may leave the counting to a second batch when the kernel has
        // no table yet ([`NftBackend::apply_first`]); one with a table keeps its counts.
        let early = match &self.committed {
            None if defer_counting && self.counting != Counting::Off => Some(self.kernel_state()?),
            _ => None,
        };
        let counting = match &early {
            Some(kernel) if !kernel.exists => Counting::Off,
            _ => self.counting,
        };
        let want = layout::plan(desired, counting)?;
        // The layout is what a dry run checks: nothing was sent yet.
        if !checked() {
            return Ok(None);
        }
        // The record keeps no elements: the committed services planned again say
        // what the table holds (cheaper than reading it back).
        let recorded = match &self.committed {
            Some(c) if trusted => c.planned()?,
            _ => None,
        };
        let (current, mut reread) = match (recorded, early) {
            (Some(t), _) => (t, false),
            (None, Some(kernel)) => (kernel, true),
            (None, None) => (self.kernel_state()?, true),
        };
        let changes = layout::diff(&current, &want);
        drop(current);
        let mut report = if changes.is_empty() {
            ApplyReport::default()
        } else {
            match self.send(&changes, &want) {
                Ok(r) => r,
                // A stale record: read the kernel and try once more.
                Err(DataplaneError::Kernel { .. }) if !reread => {
                    self.generation = None;
                    reread = true;
                    let fresh = self.kernel_state()?;
                    let changes = layout::diff(&fresh, &want);
                    self.send(&changes, &want)?
                }
                Err(e) => {
                    self.generation = None;
                    return Err(e);
                }
            }
        };
        match &self.committed {
            Some(c) => c.count_changes(desired, None, &mut report),
            // The first apply of this backend: what it had to write is new.
            None if report.messages > 0 => {
                report.count_services([], &desired.services);
                report.count_snat(&[], &desired.snat);
            }
            None => {}
        }
        let generation = if report.messages > 0 {
            self.generation()?
        } else {
            generation
        };
        self.generation = Some(generation);
        report.reread = reread;
        report.duration = start.elapsed();
        tracing::debug!(table = %self.table, changes = report.changes(), ?report.duration, "nft apply");
        Ok(Some((report, Some((want.state, counting)))))
    }
}

impl Dataplane for NftBackend {
    fn apply(&mut self, desired: &DesiredState) -> Result<ApplyReport, DataplaneError> {
        let r = self.apply_full(desired, Instant::now());
        self.hints_usable = r.is_ok();
        r
    }

    fn apply_changed(
        &mut self,
        desired: &DesiredState,
        hint: &ChangeHint,
    ) -> Result<ApplyReport, DataplaneError> {
        let r = self.apply_hinted(desired, hint);
        self.hints_usable = r.is_ok();
        r
    }

    fn read_back(&self) -> Result<AppliedState, DataplaneError> {
        let kernel = self.kernel_state()?;
        let mut services = Vec::new();
        if let Some(c) = &self.committed {
            let last = DesiredState {
                services: c.services().cloned().collect(),
                snat: c.snat.clone(),
            };
            if layout::diff(&kernel, &layout::plan(&last, c.counting())?).is_empty() {
                services = last.services;
            }
        }
        Ok(AppliedState {
            services,
            nft: kernel.to_table(),
        })
    }

    /// The table against `desired`'s layout: every object that differs (what an
    /// apply would change).
    fn verify(&self, desired: &DesiredState) -> Result<Vec<Drift>, DataplaneError> {
        let want = layout::plan(desired, self.counting)?;
        Ok(layout::diff(&self.kernel_state()?, &want).drifts(&self.table))
    }

    fn counters(&self) -> Result<Vec<BackendCounters>, DataplaneError> {
        let Some(committed) = &self.committed else {
            return Ok(Vec::new());
        };
        // Only the sets that count: the DNAT maps of single-port services do not.
        let st = self.kernel_read(&|name| {
            ["count", "conn", "dnatr"]
                .iter()
                .any(|p| name.starts_with(p))
        })?;
        let mut out = Vec::new();
        for s in committed.services() {
            let plan = layout::plan_service(s, committed.counting())?;
            let single = plan.count.is_some();
            let base = out.len();
            out.extend(
                s.backends
                    .iter()
                    .map(|b| BackendCounters::zero(s, b, single)),
            );
            for (set, k, _, bi) in plan.elements() {
                let Some(&(packets, bytes)) = st.sets.get(set).and_then(|c| c.counters.get(k))
                else {
                    continue;
                };
                let Some(c) = out.get_mut(base + bi) else {
                    continue;
                };
                if set.starts_with("count") {
                    c.packets = Some(c.packets.unwrap_or(0) + packets);
                    c.bytes = Some(c.bytes.unwrap_or(0) + bytes);
                } else {
                    // conn sets and range DNAT slots: nat chains see only a
                    // connection's first packet.
                    c.connections += packets;
                }
            }
        }
        Ok(out)
    }

    fn teardown(&mut self) -> Result<(), DataplaneError> {
        self.committed = None;
        self.generation = None;
        self.hints_usable = false;
        let ctable = CString::new(self.table.as_str())
            .map_err(|_| DataplaneError::BadTableName(self.table.clone()))?;
        let table = nftnl::Table::new(&ctable, ProtoFamily::Inet);
        let mut batch = nftnl::Batch::new();
        batch.add(&table, MsgType::Del);
        let batch = batch.finalize();
        let pages: Vec<&[u8]> = batch.iter().collect();
        let refusals = self.sock.send_batch(&pages, batch.sequence_numbers())?;
        match refusals.first() {
            None => Ok(()),
            // Already gone.
            Some(r) if r.errno == libc::ENOENT => Ok(()),
            Some(r) => Err(kernel_error(
                format!("deletion of table inet {}", self.table),
                r.errno,
                r.extack.clone(),
            )),
        }
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Nft
    }
}

/// Chains the backend creates (for documentation and tests).
pub fn chain_names() -> Vec<&'static str> {
    CHAINS.iter().map(|c| c.name).collect()
}
