//! What the backend committed last, service by service, so that one changed service
//! costs what that service costs and not what the whole table costs.
//!
//! Each committed service keeps a 128-bit fingerprint of its [`Service`] value. An
//! apply fingerprints the desired services (one pass, no allocation), plans only the
//! services whose fingerprint differs, and turns the difference of their old and new
//! elements into one batch; maps that appear or empty out are created or deleted with
//! their rule. The full plan-and-diff remains for SNAT changes, for a table someone
//! else changed, and for anything this step does not cover.
//!
//! The record does not copy the table's elements (at 10,000 services they were
//! ~45 MB): the committed services say what they are. It keeps what a step checks
//! and changes ([`Held`]): each set's shape and element count, the chains, and the
//! rules' comments. A full comparison against the record plans the committed
//! services again ([`Committed::planned`]).
//!
//! An adopted record ([`Committed::adopted`]) starts without the table: a thread of
//! its own plans it from the committed services while nothing waits for it, and the
//! first change takes it ([`Committed::ensure_table`]), so that change costs what
//! any later one costs.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use super::layout::{
    self, claim, Changes, Claim, Counting, ElemData, ElemKey, Layout, PlannedRule, ServicePlan,
    SetSpec, TableState, CHAINS,
};
use crate::model::{Service, SnatRule};
use crate::{ApplyReport, ChangeHint, DataplaneError, DesiredState};

/// A 128-bit fingerprint of a value's `Hash` feed: two independent lanes over 8-byte
/// words (each word multiplied by an odd constant, so a change of one word always
/// changes both lanes), each finished with splitmix64. Not for adversarial input
/// (the desired state is lbd's own); two different services collide with odds of
/// about 2^-128.
#[derive(Clone, Copy, Debug)]
pub struct Fingerprint {
    a: u64,
    b: u64,
}

impl Fingerprint {
    /// The fingerprint of `value`.
    pub fn of<T: Hash + ?Sized>(value: &T) -> u128 {
        let mut f = Fingerprint {
            a: 0x243f_6a88_85a3_08d3,
            b: 0x1319_8a2e_0370_7344,
        };
        value.hash(&mut f);
        (u128::from(splitmix(f.a)) << 64) | u128::from(splitmix(f.b))
    }

    /// Mixes one word into both lanes. The multiplies depend on the word only, so the
    /// serial chain per word is an add (or xor) and a rotate: the pass over 10,000
    /// services is bound by memory, not by multiply latency.
    #[inline]
    fn word(&mut self, w: u64) {
        let x = (w ^ 0x243f_6a88_85a3_08d3).wrapping_mul(0x517c_c1b7_2722_0a95);
        let y = (w ^ 0x1319_8a2e_0370_7344).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.a = self.a.wrapping_add(x).rotate_left(23);
        self.b = (self.b ^ y).rotate_left(41);
    }
}

fn splitmix(mut h: u64) -> u64 {
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

impl Hasher for Fingerprint {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.word(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            // The length goes in the free top byte: "ab" and "ab\0" differ.
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            w[7] = rest.len() as u8;
            self.word(u64::from_le_bytes(w));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.word(u64::from(i));
    }

    fn write_u16(&mut self, i: u16) {
        self.word(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.word(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.word(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.word(i as u64);
    }

    fn finish(&self) -> u64 {
        splitmix(self.a)
    }
}

/// The table as committed, without its elements: what an incremental step needs.
#[derive(Debug, Default, PartialEq)]
pub struct Held {
    /// Chains.
    chains: BTreeSet<String>,
    /// Sets: shape (with the room the kernel gave them) and element count.
    sets: BTreeMap<String, HeldSet>,
    /// Rule comments per chain, in order.
    rules: BTreeMap<String, Vec<String>>,
}

/// A committed set: its shape and how many elements it holds.
#[derive(Debug, PartialEq)]
struct HeldSet {
    spec: SetSpec,
    count: usize,
}

impl Held {
    /// What `state` leaves of the committed table (its elements counted, not kept).
    pub(super) fn of(state: TableState) -> Held {
        Held {
            chains: state.chains,
            sets: state
                .sets
                .into_iter()
                .map(|(name, s)| {
                    let count = s.elements.len();
                    (
                        name,
                        HeldSet {
                            spec: s.spec,
                            count,
                        },
                    )
                })
                .collect(),
            rules: state.rules,
        }
    }

    /// The lines that [`Held::decode`] reads back (for the adoption record): `chain`,
    /// `set` (shape and count) and `rule` lines (chain, then the comment to the end
    /// of the line), in order. `None` if a name holds white space or a comment a line
    /// break (lbd's never do: the record then goes without the table).
    pub fn encode(&self) -> Option<Vec<String>> {
        let word = |n: &str| !n.is_empty() && !n.contains(char::is_whitespace);
        let names = self
            .chains
            .iter()
            .chain(self.sets.keys())
            .chain(self.rules.keys());
        if !names.into_iter().all(|n| word(n))
            || self
                .rules
                .values()
                .flatten()
                .any(|c| c.contains(['\n', '\r']))
        {
            return None;
        }
        let mut lines = Vec::with_capacity(
            self.chains.len() + self.sets.len() + self.rules.values().map(Vec::len).sum::<usize>(),
        );
        for c in &self.chains {
            lines.push(format!("chain {c}"));
        }
        for (name, h) in &self.sets {
            let s = &h.spec;
            let concat: String = s.concat.iter().map(|b| format!("{b:02x}")).collect();
            lines.push(format!(
                "set {} {} {} {} {} {} {} {} {} {}",
                name,
                s.flags,
                s.key_len,
                s.key_type,
                s.data_len,
                s.data_type,
                if concat.is_empty() { "-" } else { &concat },
                u8::from(s.counter),
                s.size,
                h.count
            ));
        }
        for (chain, rules) in &self.rules {
            for r in rules {
                lines.push(format!("rule {chain} {r}"));
            }
        }
        Some(lines)
    }

    /// The table [`Held::encode`] wrote; `None` if a line does not parse.
    pub fn decode<'a>(lines: impl IntoIterator<Item = &'a str>) -> Option<Held> {
        let mut held = Held::default();
        for line in lines {
            let (kind, rest) = line.split_once(' ')?;
            if kind == "rule" {
                let (chain, comment) = rest.split_once(' ')?;
                match held.rules.get_mut(chain) {
                    Some(rules) => rules.push(comment.to_owned()),
                    None => {
                        held.rules
                            .insert(chain.to_owned(), vec![comment.to_owned()]);
                    }
                }
                continue;
            }
            let mut f = rest.split(' ');
            match kind {
                "chain" => {
                    held.chains.insert(f.next()?.to_owned());
                }
                "set" => {
                    let name = f.next()?.to_owned();
                    let mut num = || f.next()?.parse::<u32>().ok();
                    let (flags, key_len, key_type, data_len, data_type) =
                        (num()?, num()?, num()?, num()?, num()?);
                    let concat = match f.next()? {
                        "-" => Vec::new(),
                        c => unhex_bytes(c)?,
                    };
                    let counter = match f.next()? {
                        "0" => false,
                        "1" => true,
                        _ => return None,
                    };
                    let size = f.next()?.parse().ok()?;
                    let count = f.next()?.parse().ok()?;
                    let spec = SetSpec {
                        flags,
                        key_len,
                        key_type,
                        data_len,
                        data_type,
                        concat,
                        counter,
                        size,
                    };
                    held.sets.insert(name, HeldSet { spec, count });
                }
                _ => return None,
            }
            if f.next().is_some() {
                return None;
            }
        }
        Some(held)
    }

    /// Whether `state` (planned from the committed services) is the committed table:
    /// the same chains, sets of the same shapes and element counts, the same rules.
    fn matches(&self, state: &TableState) -> bool {
        self.chains == state.chains
            && self.sets.len() == state.sets.len()
            && self.sets.iter().all(|(name, h)| {
                state
                    .sets
                    .get(name)
                    .is_some_and(|s| s.elements.len() == h.count && s.spec.same_shape(&h.spec))
            })
            && self.rules.len() == state.rules.len()
            && self.rules.iter().all(|(chain, rules)| {
                state.rules.get(chain).is_some_and(|r| {
                    let (mut a, mut b) = (rules.clone(), r.clone());
                    a.sort();
                    b.sort();
                    a == b
                })
            })
    }
}

/// One committed service (shared with the background plan of an adopted record).
#[derive(Debug)]
struct Entry {
    fingerprint: u128,
    service: Arc<Service>,
}

/// What the last successful apply committed.
#[derive(Debug)]
pub struct Committed {
    /// The table as committed (what the kernel held right after); `None` after an
    /// adoption until the background plan is taken ([`Committed::ensure_table`]).
    table: Option<Held>,
    /// The background plan of an adopted record's table, while not taken.
    pending: Option<JoinHandle<Result<Held, DataplaneError>>>,
    /// SNAT rules committed.
    pub snat: Vec<SnatRule>,
    /// Services in the desired order.
    entries: Vec<Entry>,
    /// Name to position; `None` when names repeat (every apply then plans in full).
    index: Option<HashMap<String, usize>>,
    /// Claim to position.
    claims: HashMap<Claim, usize>,
    /// What the table counts.
    counting: Counting,
}

/// Where a desired service stands against the committed ones.
#[derive(Clone, Copy)]
enum Match {
    /// Unchanged; committed at this position.
    Same(usize),
    /// Changed; committed at this position.
    Changed(usize, u128),
    /// Not committed before.
    New(u128),
}

/// An incremental step, ready to send.
pub struct Step {
    /// The batch contents.
    pub changes: Changes,
    /// Shapes of the sets it creates and the rules it (re-)adds, per chain.
    pub extra: Layout,
    record: RecordUpdate,
}

/// How the record follows a step.
enum RecordUpdate {
    /// Every desired service matched against the record.
    Dense { matches: Vec<Match>, in_place: bool },
    /// Only these positions changed, in place: (position, new fingerprint).
    Sparse(Vec<(usize, u128)>),
}

/// A service the step touches: its committed position (None: new) and desired
/// position (None: removed).
type Touched = (Option<usize>, Option<usize>);

/// What an apply against the committed state needs.
pub enum Plan {
    /// The kernel already holds the desired state.
    Unchanged,
    /// Only these changes.
    Step(Box<Step>),
    /// A full plan and diff.
    Full,
}

impl Committed {
    /// The record of `desired` committed as `state`.
    pub fn new(desired: &DesiredState, state: TableState, counting: Counting) -> Committed {
        Committed::with_table(desired, Some(Held::of(state)), counting)
    }

    /// The record of `desired`, adopted as a previous lbd committed it, with the
    /// table that lbd recorded (`held`, from the adoption record) or, without one,
    /// the table planned on a thread of its own, for the first change to take.
    pub fn adopted(desired: &DesiredState, counting: Counting, held: Option<Held>) -> Committed {
        let recorded = held.is_some();
        let mut c = Committed::with_table(desired, held, counting);
        if !recorded {
            c.pending = c.plan_in_background();
        }
        c
    }

    /// The committed table for the adoption record, if it is ready (the background
    /// plan taken if it finished; never waits).
    pub fn table_for_record(&mut self) -> Option<&Held> {
        self.table_ready();
        self.table.as_ref()
    }

    /// Starts planning the committed table on another thread, from the committed
    /// services (shared, not copied here) and SNAT rules. `None` if no thread could be
    /// started: the first change plans it then.
    fn plan_in_background(&self) -> Option<JoinHandle<Result<Held, DataplaneError>>> {
        let services: Vec<Arc<Service>> = self.entries.iter().map(|e| e.service.clone()).collect();
        let snat = self.snat.clone();
        let counting = self.counting;
        let spawned = std::thread::Builder::new()
            .name("nft-plan".into())
            .spawn(move || {
                let start = Instant::now();
                let desired = DesiredState {
                    services: services.iter().map(|s| Service::clone(s)).collect(),
                    snat,
                };
                drop(services);
                let planned = layout::plan(&desired, counting);
                drop(desired);
                let held = planned.map(|p| Held::of(p.state));
                // The plan's elements (~45 MB at 10,000 services x 8 servers) are
                // freed now; glibc keeps freed pages resident unless asked.
                release_freed_memory();
                tracing::debug!(elapsed = ?start.elapsed(), "adopted nft table planned in the background");
                held
            });
        match spawned {
            Ok(handle) => Some(handle),
            Err(e) => {
                tracing::debug!(error = %e, "no thread for the background plan; the first change plans the table");
                None
            }
        }
    }

    fn with_table(desired: &DesiredState, state: Option<Held>, counting: Counting) -> Committed {
        let entries: Vec<Entry> = desired
            .services
            .iter()
            .map(|s| Entry {
                fingerprint: Fingerprint::of(s),
                service: Arc::new(s.clone()),
            })
            .collect();
        let mut c = Committed {
            table: state,
            pending: None,
            snat: desired.snat.clone(),
            entries,
            index: None,
            claims: HashMap::new(),
            counting,
        };
        c.reindex();
        c
    }

    fn reindex(&mut self) {
        let mut index = HashMap::with_capacity(self.entries.len());
        let mut unique = true;
        for (i, e) in self.entries.iter().enumerate() {
            unique &= index.insert(e.service.name.clone(), i).is_none();
        }
        self.index = unique.then_some(index);
        self.claims = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (claim(&e.service), i))
            .collect();
    }

    /// What the committed table counts.
    pub fn counting(&self) -> Counting {
        self.counting
    }

    /// The committed desired state (services and SNAT rules).
    fn committed_state(&self) -> DesiredState {
        DesiredState {
            services: self.services().cloned().collect(),
            snat: self.snat.clone(),
        }
    }

    /// The committed table with its elements, planned again from the committed
    /// services, the sets' room as recorded: what a full comparison starts from.
    /// `None` when the record was not planned yet or does not match the plan (the
    /// caller then reads the kernel).
    pub fn planned(&self) -> Result<Option<TableState>, DataplaneError> {
        let Some(held) = &self.table else {
            return Ok(None);
        };
        let mut state = layout::plan(&self.committed_state(), self.counting)?.state;
        if !held.matches(&state) {
            return Ok(None);
        }
        for (name, set) in state.sets.iter_mut() {
            if let Some(h) = held.sets.get(name) {
                set.spec.size = h.spec.size;
            }
        }
        Ok(Some(state))
    }

    /// Makes the committed table ready if it was not yet (an adopted record): what a
    /// change is computed against. Takes the background plan (waiting for it if it
    /// still runs); plans here if there was none or it failed or panicked (the same
    /// plan fails the same way here, with its error).
    pub fn ensure_table(&mut self) -> Result<(), DataplaneError> {
        if self.table.is_some() {
            return Ok(());
        }
        if let Some(pending) = self.pending.take() {
            match pending.join() {
                Ok(Ok(held)) => {
                    self.table = Some(held);
                    return Ok(());
                }
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "background plan of the adopted nft table failed; planning it again");
                }
                Err(_) => {
                    tracing::warn!(
                        "background plan of the adopted nft table panicked; planning it again"
                    );
                }
            }
        }
        let state = layout::plan(&self.committed_state(), self.counting)?.state;
        self.table = Some(Held::of(state));
        Ok(())
    }

    /// Whether the committed table is ready for a change without planning it (the
    /// background plan of an adopted record is taken if it finished). Does not wait.
    pub fn table_ready(&mut self) -> bool {
        if self.table.is_none() && self.pending.as_ref().is_some_and(JoinHandle::is_finished) {
            // A failed plan leaves the table to the first change (which plans again
            // and fails with the plan's error).
            if let Some(Ok(Ok(held))) = self.pending.take().map(JoinHandle::join) {
                self.table = Some(held);
            }
        }
        self.table.is_some()
    }

    /// The fingerprint of what was committed, as the adoption record holds it: the
    /// services (in order), the SNAT rules, what the table counts, and the layout
    /// this build plans ([`adopt::layout_fingerprint`](super::adopt::layout_fingerprint)).
    /// A start that wants the same fingerprint wants the same table.
    pub fn content(&self) -> u128 {
        let services: Vec<u128> = self.entries.iter().map(|e| e.fingerprint).collect();
        content_fingerprint(&services, &self.snat, self.counting)
    }

    /// The committed table, or an empty one when it was not planned (plans and steps
    /// are computed only after [`Committed::ensure_table`]).
    fn st(&self) -> &Held {
        static EMPTY: Held = Held {
            chains: BTreeSet::new(),
            sets: BTreeMap::new(),
            rules: BTreeMap::new(),
        };
        self.table.as_ref().unwrap_or(&EMPTY)
    }

    /// The committed services, in order.
    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.entries.iter().map(|e| &*e.service)
    }

    /// Counts in `report`, in the desired state's terms, how `desired` differs from
    /// what was committed: only the services `hint` names (the others are the same,
    /// and so are the SNAT rules) when each sits where it was committed, else all.
    pub fn count_changes(
        &self,
        desired: &DesiredState,
        hint: Option<&ChangeHint>,
        report: &mut ApplyReport,
    ) {
        if let (Some(hint), Some(index)) = (hint, &self.index) {
            let in_place: Option<Vec<_>> = hint
                .services
                .iter()
                .map(|name| match index.get(name) {
                    Some(&j) => desired
                        .services
                        .get(j)
                        .filter(|s| s.name == *name)
                        .map(|s| (Some(&*self.entries[j].service), Some(s))),
                    // Not committed: in place only if not desired either.
                    None => desired
                        .services
                        .iter()
                        .all(|s| s.name != *name)
                        .then_some((None, None)),
                })
                .collect();
            if let Some(pairs) = in_place {
                for (old, new) in pairs {
                    report.count_service(old, new);
                }
                return;
            }
        }
        report.count_services(self.services(), &desired.services);
        report.count_snat(&self.snat, &desired.snat);
    }

    /// What it takes to go from the committed state to `desired`.
    pub fn plan(&self, desired: &DesiredState) -> Result<Plan, DataplaneError> {
        if self.table.is_none() || desired.snat != self.snat {
            return Ok(Plan::Full);
        }
        let Some(index) = &self.index else {
            return Ok(Plan::Full);
        };
        // 0: removed, 1: unchanged, 2: changed (per committed position).
        let mut fate = vec![0u8; self.entries.len()];
        let mut matches = Vec::with_capacity(desired.services.len());
        let mut new_names: HashSet<&str> = HashSet::new();
        let mut in_place = desired.services.len() == self.entries.len();
        let mut changed = 0usize;
        for (i, s) in desired.services.iter().enumerate() {
            let fp = Fingerprint::of(s);
            // The common case: same position, same value (the name is in the print).
            let m = match self.entries.get(i) {
                Some(e) if e.fingerprint == fp => Match::Same(i),
                _ => match index.get(s.name.as_str()) {
                    Some(&j) if self.entries[j].fingerprint == fp => Match::Same(j),
                    Some(&j) => Match::Changed(j, fp),
                    None => {
                        if !new_names.insert(s.name.as_str()) {
                            return Ok(Plan::Full);
                        }
                        Match::New(fp)
                    }
                },
            };
            match m {
                Match::Same(j) | Match::Changed(j, _) => {
                    if fate[j] != 0 {
                        // A name twice: the full plan decides what that means.
                        return Ok(Plan::Full);
                    }
                    fate[j] = if matches!(m, Match::Same(_)) { 1 } else { 2 };
                    in_place &= j == i;
                }
                Match::New(_) => in_place = false,
            }
            if !matches!(m, Match::Same(_)) {
                changed += 1;
            }
            matches.push(m);
        }
        let removed = fate.iter().filter(|&&f| f == 0).count();
        if changed == 0 && removed == 0 {
            return Ok(if in_place {
                Plan::Unchanged
            } else {
                // Only the order moved: nothing in the kernel depends on it.
                Plan::Step(Box::new(Step {
                    changes: Changes::default(),
                    extra: Layout::default(),
                    record: RecordUpdate::Dense { matches, in_place },
                }))
            });
        }
        // A large change is cheaper as one full plan than as many small ones.
        if changed + removed > self.entries.len().max(64) / 2 {
            return Ok(Plan::Full);
        }
        let mut touched: Vec<Touched> = Vec::with_capacity(changed + removed);
        for (i, m) in matches.iter().enumerate() {
            match *m {
                Match::Same(_) => {}
                Match::Changed(j, _) => touched.push((Some(j), Some(i))),
                Match::New(_) => touched.push((None, Some(i))),
            }
        }
        touched.extend(
            fate.iter()
                .enumerate()
                .filter(|(_, &f)| f == 0)
                .map(|(j, _)| (Some(j), None)),
        );
        self.element_step(desired, &touched, RecordUpdate::Dense { matches, in_place })
    }

    /// What it takes to go from the committed state to `desired` when only the
    /// services `hint` names may differ: O(named services) when they changed in place,
    /// one pass over the names when services were added or removed. `None` when the
    /// hint does not fit the record (a name neither committed nor desired, counts that
    /// do not add up, SNAT changes): the caller then compares everything.
    pub fn plan_hinted(
        &self,
        desired: &DesiredState,
        hint: &ChangeHint,
    ) -> Result<Option<Plan>, DataplaneError> {
        if self.table.is_none() || hint.snat || desired.snat != self.snat {
            return Ok(None);
        }
        let Some(index) = &self.index else {
            return Ok(None);
        };
        let names: Vec<&str> = hint.services.iter().map(String::as_str).collect();
        // (committed position, desired position) of each named service.
        let mut located: Vec<Touched> = names
            .iter()
            .map(|name| (index.get(*name).copied(), None))
            .collect();
        let mut in_place = desired.services.len() == self.entries.len();
        for (name, l) in names.iter().zip(located.iter_mut()) {
            match l.0 {
                Some(j) if in_place && desired.services.get(j).is_some_and(|s| s.name == *name) => {
                    l.1 = Some(j)
                }
                _ => in_place = false,
            }
        }
        if in_place {
            let mut touched = Vec::new();
            let mut update = Vec::new();
            for &(j, _) in &located {
                let Some(j) = j else { continue };
                let fp = Fingerprint::of(&desired.services[j]);
                if fp != self.entries[j].fingerprint {
                    touched.push((Some(j), Some(j)));
                    update.push((j, fp));
                }
            }
            if touched.is_empty() {
                return Ok(Some(Plan::Unchanged));
            }
            return self
                .element_step(desired, &touched, RecordUpdate::Sparse(update))
                .map(Some);
        }
        // Services came or went: find the named ones among the desired by name, and
        // match every other one to its committed position.
        for l in &mut located {
            l.1 = None;
        }
        let mut matches = Vec::with_capacity(desired.services.len());
        let mut fate = vec![0u8; self.entries.len()];
        for (i, s) in desired.services.iter().enumerate() {
            let m = match names.binary_search(&s.name.as_str()) {
                Ok(k) => {
                    if located[k].1.replace(i).is_some() {
                        return Ok(None);
                    }
                    let fp = Fingerprint::of(s);
                    match located[k].0 {
                        Some(j) if self.entries[j].fingerprint == fp => Match::Same(j),
                        Some(j) => Match::Changed(j, fp),
                        None => Match::New(fp),
                    }
                }
                // Not named: the caller promises it is committed as it is.
                Err(_) => match index.get(s.name.as_str()) {
                    Some(&j) => Match::Same(j),
                    None => return Ok(None),
                },
            };
            if let Match::Same(j) | Match::Changed(j, _) = m {
                if fate[j] != 0 {
                    return Ok(None);
                }
                fate[j] = 1;
            }
            matches.push(m);
        }
        if located.contains(&(None, None)) {
            return Ok(None);
        }
        let in_place = matches
            .iter()
            .enumerate()
            .all(|(i, m)| matches!(m, Match::Same(j) | Match::Changed(j, _) if *j == i))
            && matches.len() == self.entries.len();
        let mut touched: Vec<Touched> = Vec::new();
        for (i, m) in matches.iter().enumerate() {
            match *m {
                Match::Same(_) => {}
                Match::Changed(j, _) => touched.push((Some(j), Some(i))),
                Match::New(_) => touched.push((None, Some(i))),
            }
        }
        // Named services that are gone.
        touched.extend(
            located
                .iter()
                .filter(|l| l.1.is_none())
                .map(|l| (l.0, None)),
        );
        // Unnamed committed services that are gone: the hint was wrong.
        if fate.iter().enumerate().any(|(j, &f)| {
            f == 0
                && names
                    .binary_search(&self.entries[j].service.name.as_str())
                    .is_err()
        }) {
            return Ok(None);
        }
        if touched.is_empty() {
            return Ok(Some(if in_place {
                Plan::Unchanged
            } else {
                Plan::Step(Box::new(Step {
                    changes: Changes::default(),
                    extra: Layout::default(),
                    record: RecordUpdate::Dense { matches, in_place },
                }))
            }));
        }
        self.element_step(desired, &touched, RecordUpdate::Dense { matches, in_place })
            .map(Some)
    }

    /// Checks `hint` against a full comparison: every service it does not name must be
    /// committed as it is desired, and the SNAT rules unchanged unless it says so.
    pub fn verify_hint(
        &self,
        desired: &DesiredState,
        hint: &ChangeHint,
    ) -> Result<(), DataplaneError> {
        let wrong = |what: String| Err(DataplaneError::WrongHint { what });
        if !hint.snat && desired.snat != self.snat {
            return wrong("the SNAT rules changed, but the hint says they did not".into());
        }
        let committed: HashMap<&str, u128> = self
            .entries
            .iter()
            .map(|e| (e.service.name.as_str(), e.fingerprint))
            .collect();
        let mut seen: HashSet<&str> = HashSet::with_capacity(desired.services.len());
        for s in &desired.services {
            seen.insert(s.name.as_str());
            if hint.services.contains(&s.name) {
                continue;
            }
            match committed.get(s.name.as_str()) {
                None => return wrong(format!("service {} was added but is not named", s.name)),
                Some(&fp) if fp != Fingerprint::of(s) => {
                    return wrong(format!("service {} changed but is not named", s.name))
                }
                Some(_) => {}
            }
        }
        for e in &self.entries {
            let name = &e.service.name;
            if !seen.contains(name.as_str()) && !hint.services.contains(name) {
                return wrong(format!("service {name} was removed but is not named"));
            }
        }
        Ok(())
    }

    /// The step for the services in `touched`: their claims checked against the
    /// services that stay, their old elements deleted and new ones added.
    fn element_step(
        &self,
        desired: &DesiredState,
        touched: &[Touched],
        record: RecordUpdate,
    ) -> Result<Plan, DataplaneError> {
        // Committed positions that change or go: their claims are free.
        let freed: HashSet<usize> = touched.iter().filter_map(|t| t.0).collect();
        // Claims of changed and new services: unique among themselves, and not held by
        // a committed service that stays unchanged.
        let mut new_claims: HashSet<Claim> = HashSet::new();
        for &(_, i) in touched {
            let Some(i) = i else { continue };
            let c = claim(&desired.services[i]);
            if !new_claims.insert(c) {
                return Ok(Plan::Full);
            }
            if let Some(&j) = self.claims.get(&c) {
                if !freed.contains(&j) {
                    return Ok(Plan::Full);
                }
            }
        }
        let mut dels: BTreeMap<String, BTreeMap<ElemKey, ElemData>> = BTreeMap::new();
        let mut adds: BTreeMap<String, BTreeMap<ElemKey, ElemData>> = BTreeMap::new();
        // The services' own chains, old and new, with their rules.
        let mut chains: [BTreeMap<String, Vec<PlannedRule>>; 2] = Default::default();
        let counting = self.counting;
        let collect = |s: &Service,
                       into: &mut BTreeMap<String, BTreeMap<ElemKey, ElemData>>,
                       chains: &mut BTreeMap<String, Vec<PlannedRule>>| {
            let p: ServicePlan = layout::plan_service(s, counting)?;
            for (set, k, d, bi) in p.elements() {
                into.entry(set.to_owned()).or_default().insert(
                    k.clone(),
                    ElemData::new(d.to_vec(), layout::elem_comment(s, set, bi)),
                );
            }
            chains.extend(p.chains);
            Ok::<(), DataplaneError>(())
        };
        for &(j, i) in touched {
            if let Some(j) = j {
                collect(&self.entries[j].service, &mut dels, &mut chains[0])?;
            }
            if let Some(i) = i {
                collect(&desired.services[i], &mut adds, &mut chains[1])?;
            }
        }
        // An element deleted and added with the same data stays as it is.
        for (set, a) in adds.iter_mut() {
            if let Some(d) = dels.get_mut(set) {
                a.retain(|k, data| {
                    if d.get(k) == Some(data) {
                        d.remove(k);
                        false
                    } else {
                        true
                    }
                });
            }
        }
        adds.retain(|_, a| !a.is_empty());
        dels.retain(|_, d| !d.is_empty());
        let [old_chains, new_chains] = chains;
        match self
            .changes(dels, adds)
            .and_then(|(c, extra)| self.chain_changes(c, extra, old_chains, new_chains))
        {
            Some((changes, extra)) => Ok(Plan::Step(Box::new(Step {
                changes,
                extra,
                record,
            }))),
            None => Ok(Plan::Full),
        }
    }

    /// The batch for element deletions and additions: sets that appear are created
    /// with their rule, sets that empty out are deleted and their chain's rules
    /// rebuilt. `None` if the record does not fit (the full path then decides).
    fn changes(
        &self,
        dels: BTreeMap<String, BTreeMap<ElemKey, ElemData>>,
        adds: BTreeMap<String, BTreeMap<ElemKey, ElemData>>,
    ) -> Option<(Changes, Layout)> {
        let mut c = Changes::default();
        let mut extra = Layout::default();
        let names: BTreeSet<&String> = dels.keys().chain(adds.keys()).collect();
        let empty = BTreeMap::new();
        let mut created: BTreeSet<&'static str> = BTreeSet::new();
        let mut emptied: BTreeSet<&'static str> = BTreeSet::new();
        let mut final_sets: BTreeSet<String> = self.st().sets.keys().cloned().collect();
        for name in names {
            let d = dels.get(name).unwrap_or(&empty);
            let a = adds.get(name).unwrap_or(&empty);
            // A set of the services' layout; chain: the base chain whose rule uses it.
            layout::empty_set(name, self.counting)?;
            let chain = layout::chain_of_set(name);
            let cur = self.st().sets.get(name);
            // The elements themselves are not recorded: the claims checked above keep
            // the touched services' keys apart from the others'. A count that does not
            // add up means the record is wrong.
            let after = cur
                .map_or(0, |s| s.count)
                .checked_sub(d.len())?
                .checked_add(a.len())?;
            if cur.is_some_and(|s| !s.spec.holds(after)) {
                // Outgrown: the full apply creates the set anew, with more room.
                return None;
            }
            match (cur.is_some(), after > 0) {
                (false, true) => {
                    c.add_sets.push(name.clone());
                    let mut set = layout::empty_set(name, self.counting)?;
                    set.spec.size = layout::set_capacity(&set.spec, after);
                    extra.state.sets.insert(name.clone(), set);
                    created.extend(chain);
                    final_sets.insert(name.clone());
                }
                (true, false) => {
                    c.del_sets.push(name.clone());
                    emptied.extend(chain);
                    final_sets.remove(name);
                    // The set goes with its elements.
                    continue;
                }
                (false, false) => continue,
                (true, true) => {}
            }
            if !d.is_empty() {
                c.del_elems
                    .push((name.clone(), d.keys().cloned().collect()));
            }
            if !a.is_empty() {
                c.add_elems.push((
                    name.clone(),
                    a.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                ));
            }
        }
        // A persist set exists while its remember map does.
        for rec in ["rec4", "recr4", "rec6", "recr6"] {
            let needed = final_sets.contains(rec);
            for persist in layout::persist_sets_of(rec).into_iter().flatten() {
                let held = self.st().sets.contains_key(persist);
                if needed && !held {
                    c.add_sets.push(persist.to_owned());
                    extra.state.sets.insert(
                        persist.to_owned(),
                        layout::empty_set(persist, self.counting)?,
                    );
                    final_sets.insert(persist.to_owned());
                } else if !needed && held {
                    c.del_sets.push(persist.to_owned());
                    final_sets.remove(persist);
                }
            }
        }
        for def in CHAINS {
            let chain = def.name;
            if emptied.contains(chain) {
                // Rules are known by comment only: rebuild the chain in this batch.
                let held = self.st().rules.get(chain).map_or(0, Vec::len);
                if held > 0 {
                    c.flush_chains.push(chain.to_owned());
                    c.rules_removed += held;
                }
                let rules: Vec<PlannedRule> = final_sets
                    .iter()
                    .filter_map(|s| layout::rule_of_set(s))
                    .filter(|(ch, _)| *ch == chain)
                    .map(|(_, r)| r)
                    .collect();
                if !rules.is_empty() {
                    c.add_rules.push(chain.to_owned());
                    c.rules_added += rules.len();
                    extra.rules.insert(chain.to_owned(), rules);
                }
            } else if created.contains(chain) {
                // Order-free chains: the new sets' rules are appended.
                let rules: Vec<PlannedRule> = c
                    .add_sets
                    .iter()
                    .filter_map(|s| layout::rule_of_set(s))
                    .filter(|(ch, _)| *ch == chain)
                    .map(|(_, r)| r)
                    .collect();
                c.add_rules.push(chain.to_owned());
                c.rules_added += rules.len();
                extra.rules.insert(chain.to_owned(), rules);
            }
            // Base chains exist while they have rules (SNAT rules do not change here).
            let needed = final_sets
                .iter()
                .filter_map(|s| layout::rule_of_set(s))
                .any(|(ch, _)| ch == chain)
                || self.st().rules.get(chain).is_some_and(|r| !r.is_empty())
                    && !emptied.contains(chain);
            let held = self.st().chains.contains(chain);
            if needed && !held {
                c.add_chains.push(def);
                extra.state.chains.insert(chain.to_owned());
            } else if !needed && held {
                c.del_chains.push(chain.to_owned());
            }
        }
        Some((c, extra))
    }

    /// Adds to a step the services' chains that come, go or change their rules
    /// (`old`: the touched services' chains as committed, `new`: as desired). `None`
    /// if the record does not fit.
    fn chain_changes(
        &self,
        mut c: Changes,
        mut extra: Layout,
        old: BTreeMap<String, Vec<PlannedRule>>,
        new: BTreeMap<String, Vec<PlannedRule>>,
    ) -> Option<(Changes, Layout)> {
        let comments = |rules: &[PlannedRule]| -> Vec<String> {
            rules.iter().map(|r| r.comment.clone()).collect()
        };
        for (name, rules) in &old {
            if !self.st().chains.contains(name) {
                return None;
            }
            if !new.contains_key(name) {
                c.del_svc_chains.push(name.clone());
                c.rules_removed += rules.len();
            }
        }
        for (name, rules) in new {
            match old.get(&name) {
                Some(held) if comments(held) == comments(&rules) => continue,
                Some(held) => {
                    c.flush_chains.push(name.clone());
                    c.rules_removed += held.len();
                }
                None => {
                    if self.st().chains.contains(&name) {
                        return None;
                    }
                    c.add_svc_chains.push(name.clone());
                    extra.state.chains.insert(name.clone());
                }
            }
            c.add_rules.push(name.clone());
            c.rules_added += rules.len();
            extra.rules.insert(name, rules);
        }
        Some((c, extra))
    }

    /// Records a step the kernel accepted.
    pub fn commit(&mut self, step: Step, desired: &DesiredState) {
        let Step {
            changes: c,
            extra,
            record,
        } = step;
        if let Some(state) = &mut self.table {
            for name in &c.del_sets {
                state.sets.remove(name);
            }
            for chain in &c.del_chains {
                state.chains.remove(chain);
            }
            for chain in &c.del_svc_chains {
                state.chains.remove(chain);
                state.rules.remove(chain);
            }
            state.chains.extend(extra.state.chains);
            for chain in &c.flush_chains {
                state.rules.insert(chain.clone(), Vec::new());
            }
            for (name, set) in extra.state.sets {
                state.sets.insert(
                    name,
                    HeldSet {
                        spec: set.spec,
                        count: 0,
                    },
                );
            }
            for (name, dels) in &c.del_elems {
                if let Some(s) = state.sets.get_mut(name) {
                    s.count = s.count.saturating_sub(dels.len());
                }
            }
            for (name, adds) in &c.add_elems {
                if let Some(s) = state.sets.get_mut(name) {
                    s.count += adds.len();
                }
            }
            for (chain, rules) in &extra.rules {
                state
                    .rules
                    .entry(chain.clone())
                    .or_default()
                    .extend(rules.iter().map(|r| r.comment.clone()));
            }
            state.rules.retain(|_, r| !r.is_empty());
        }
        let changed: Vec<(usize, u128)> = match record {
            RecordUpdate::Sparse(changed) => changed,
            RecordUpdate::Dense {
                matches,
                in_place: true,
            } => matches
                .iter()
                .enumerate()
                .filter_map(|(i, m)| match *m {
                    Match::Changed(_, fp) => Some((i, fp)),
                    _ => None,
                })
                .collect(),
            RecordUpdate::Dense {
                matches,
                in_place: false,
            } => {
                self.reorder(&matches, desired);
                return;
            }
        };
        for (i, fp) in changed {
            let s = &desired.services[i];
            let old = std::mem::replace(
                &mut self.entries[i],
                Entry {
                    fingerprint: fp,
                    service: Arc::new(s.clone()),
                },
            );
            let (was, now) = (claim(&old.service), claim(s));
            if was != now {
                self.claims.remove(&was);
                self.claims.insert(now, i);
            }
        }
    }

    /// Rebuilds the record in the desired order from `matches`. The maps are updated
    /// in place (no name is cloned but the new ones).
    fn reorder(&mut self, matches: &[Match], desired: &DesiredState) {
        let mut old: Vec<Option<Entry>> = std::mem::take(&mut self.entries)
            .into_iter()
            .map(Some)
            .collect();
        let mut replaced: Vec<Entry> = Vec::new();
        self.entries = matches
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let fresh = |fingerprint| Entry {
                    fingerprint,
                    service: Arc::new(desired.services[i].clone()),
                };
                match *m {
                    // Each committed position is matched at most once.
                    Match::Same(j) => old[j]
                        .take()
                        .unwrap_or_else(|| fresh(Fingerprint::of(&desired.services[i]))),
                    Match::Changed(j, fp) => {
                        replaced.extend(old[j].take());
                        fresh(fp)
                    }
                    Match::New(fp) => fresh(fp),
                }
            })
            .collect();
        let Some(index) = &mut self.index else {
            self.reindex();
            return;
        };
        // What is left in `old` was removed.
        for gone in old.iter().flatten() {
            index.remove(gone.service.name.as_str());
        }
        for e in old.iter().flatten().chain(&replaced) {
            self.claims.remove(&claim(&e.service));
        }
        for (i, e) in self.entries.iter().enumerate() {
            match index.get_mut(e.service.name.as_str()) {
                Some(at) => *at = i,
                None => {
                    index.insert(e.service.name.clone(), i);
                }
            }
            self.claims.insert(claim(&e.service), i);
        }
    }
}

/// The bytes of a hex word.
fn unhex_bytes(h: &str) -> Option<Vec<u8>> {
    if h.len() % 2 != 0 {
        return None;
    }
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(h.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Gives freed heap pages back to the kernel.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The adoption fingerprint of services (their fingerprints, in any order: the
/// table does not depend on the services' order, and a reload that only moved them
/// leaves the record in the old one), SNAT rules (in order: their order is theirs)
/// and counting, with this build's layout.
pub fn content_fingerprint(services: &[u128], snat: &[SnatRule], counting: Counting) -> u128 {
    let mut services = services.to_vec();
    services.sort_unstable();
    // SnatRule has no Hash: its Debug text says all of it.
    let snat = format!("{snat:?}");
    Fingerprint::of(&(super::adopt::layout_fingerprint(), counting, services, snat))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_content_fingerprint_ignores_the_services_order_not_the_snat_rules() {
        let c = Counting::Connections;
        assert_eq!(
            content_fingerprint(&[1, 2, 3], &[], c),
            content_fingerprint(&[3, 1, 2], &[], c)
        );
        assert_ne!(
            content_fingerprint(&[1, 2, 3], &[], c),
            content_fingerprint(&[1, 2, 4], &[], c)
        );
        assert_ne!(
            content_fingerprint(&[1, 2], &[], c),
            content_fingerprint(&[1, 2], &[], Counting::Traffic)
        );
    }

    #[test]
    fn fingerprint_separates_strings_and_fields() {
        assert_ne!(Fingerprint::of("ab"), Fingerprint::of("ab\0"));
        assert_ne!(Fingerprint::of(&("a", "bc")), Fingerprint::of(&("ab", "c")));
        assert_ne!(Fingerprint::of(&[1u32, 2]), Fingerprint::of(&[2u32, 1]));
        assert_eq!(Fingerprint::of("svc1"), Fingerprint::of("svc1"));
    }

    use std::net::IpAddr;
    use std::time::Duration;

    use crate::model::{Backend, Forwarding, PortSpec, Protocol, Scheduler};

    fn services(n: usize, servers: usize) -> DesiredState {
        DesiredState {
            services: (0..n)
                .map(|i| Service {
                    name: format!("svc{i}"),
                    vip: IpAddr::from([198, 19, (i / 200) as u8, (i % 200 + 1) as u8]),
                    ports: PortSpec::Single(80),
                    protocol: Protocol::Tcp,
                    scheduler: Scheduler::Wrr,
                    backends: (0..servers)
                        .map(|k| Backend {
                            name: format!("b{k}"),
                            addr: IpAddr::from([198, 18, 1, 10 + k as u8]),
                            port: Some(8080),
                            weight: 1 + k as u32,
                        })
                        .collect(),
                    forward: Forwarding::Nat,
                    persistence: None,
                })
                .collect(),
            snat: Vec::new(),
        }
    }

    /// Waits (generously) for the background plan of `c` to be taken.
    fn ready(c: &mut Committed) -> bool {
        for _ in 0..3000 {
            if c.table_ready() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    #[test]
    fn an_adopted_record_is_planned_without_a_change() {
        let desired = services(500, 4);
        let mut adopted = Committed::adopted(&desired, Counting::Traffic, None);
        assert!(ready(&mut adopted), "the background plan never came in");
        assert!(adopted.pending.is_none());
        // The table it holds is the one a fresh apply of the same state records.
        let planned = layout::plan(&desired, Counting::Traffic).unwrap().state;
        assert!(adopted.st().matches(&planned));
        assert_eq!(adopted.st().sets.len(), planned.sets.len());
        // And a full comparison starts from that very table.
        let again = adopted.planned().unwrap().expect("record matches its plan");
        assert_eq!(
            again.sets.keys().collect::<Vec<_>>(),
            planned.sets.keys().collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_record_adopted_with_its_table_plans_nothing() {
        let desired = services(50, 3);
        let planned = layout::plan(&desired, Counting::Off).unwrap().state;
        let lines = Held::of(planned.clone()).encode().unwrap();
        let held = Held::decode(lines.iter().map(String::as_str)).unwrap();
        let mut c = Committed::adopted(&desired, Counting::Off, Some(held));
        assert!(c.pending.is_none());
        assert!(c.table_ready());
        assert!(c.st().matches(&planned));
        assert_eq!(c.table_for_record().and_then(Held::encode), Some(lines));
    }

    #[test]
    fn a_table_whose_lines_would_not_read_back_is_not_encoded() {
        let mut held = Held::default();
        held.chains.insert("lb_dnat".into());
        held.rules
            .insert("lb_dnat".into(), vec!["dnat @map with spaces".into()]);
        let lines = held.encode().unwrap();
        assert_eq!(
            Held::decode(lines.iter().map(String::as_str)).as_ref(),
            Some(&held)
        );
        held.rules
            .insert("lb_snat".into(), vec!["two\nlines".into()]);
        assert_eq!(held.encode(), None);
        let mut spaced = Held::default();
        spaced.chains.insert("a chain".into());
        assert_eq!(spaced.encode(), None);
    }

    #[test]
    fn a_fresh_record_starts_no_background_plan() {
        let desired = services(10, 2);
        let state = layout::plan(&desired, Counting::Off).unwrap().state;
        let c = Committed::new(&desired, state, Counting::Off);
        assert!(c.pending.is_none());
        assert!(c.table.is_some());
    }

    #[test]
    fn a_change_right_after_adoption_takes_the_background_plan() {
        let desired = services(2000, 8);
        let mut adopted = Committed::adopted(&desired, Counting::Connections, None);
        // At once, whether the plan finished or not: ensure_table waits for it.
        adopted.ensure_table().unwrap();
        assert!(adopted.pending.is_none());
        let mut next = desired.clone();
        next.services[7].backends[3].weight = 9;
        let fresh = Committed::new(
            &desired,
            layout::plan(&desired, Counting::Connections).unwrap().state,
            Counting::Connections,
        );
        // The step from the adopted record is the step from a fresh one.
        let (Plan::Step(a), Plan::Step(f)) =
            (adopted.plan(&next).unwrap(), fresh.plan(&next).unwrap())
        else {
            panic!("a one-server change is a step");
        };
        assert!(!a.changes.is_empty());
        assert_eq!(format!("{:?}", a.changes), format!("{:?}", f.changes));
    }

    #[test]
    fn a_failed_background_plan_fails_the_first_change_with_its_error() {
        // Two services on one VIP and port: the plan refuses them.
        let mut desired = services(3, 2);
        desired.services[1].vip = desired.services[0].vip;
        let mut adopted = Committed::adopted(&desired, Counting::Off, None);
        let e = adopted.ensure_table().unwrap_err();
        assert!(e.to_string().contains("both claim"), "{e}");
        assert!(adopted.table.is_none());
        // Not planned behind the caller's back either.
        assert!(!adopted.table_ready());
    }
}
