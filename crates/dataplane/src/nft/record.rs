//! What the backend committed last, service by service, so that one changed service
//! costs what that service costs and not what the whole table costs.
//!
//! Each committed service keeps a 128-bit fingerprint of its [`Service`] value. An
//! apply fingerprints the desired services (one pass, no allocation), plans only the
//! services whose fingerprint differs, and turns the difference of their old and new
//! elements into one batch; maps that appear or empty out are created or deleted with
//! their rule. The full plan-and-diff remains for SNAT changes, for a table someone
//! else changed, and for anything this step does not cover.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};

use super::layout::{
    self, claim, Changes, Claim, ElemKey, Layout, PlannedRule, ServicePlan, TableState, CHAINS,
};
use crate::model::{Service, SnatRule};
use crate::{DataplaneError, DesiredState};

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

/// One committed service.
#[derive(Debug)]
struct Entry {
    fingerprint: u128,
    service: Service,
}

/// What the last successful apply committed.
#[derive(Debug)]
pub struct Committed {
    /// The table as committed (what the kernel held right after).
    pub state: TableState,
    /// SNAT rules committed.
    pub snat: Vec<SnatRule>,
    /// Services in the desired order.
    entries: Vec<Entry>,
    /// Name to position; `None` when names repeat (every apply then plans in full).
    index: Option<HashMap<String, usize>>,
    /// Claim to position.
    claims: HashMap<Claim, usize>,
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
    matches: Vec<Match>,
    in_place: bool,
}

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
    pub fn new(desired: &DesiredState, state: TableState) -> Committed {
        let entries: Vec<Entry> = desired
            .services
            .iter()
            .map(|s| Entry {
                fingerprint: Fingerprint::of(s),
                service: s.clone(),
            })
            .collect();
        let mut c = Committed {
            state,
            snat: desired.snat.clone(),
            entries,
            index: None,
            claims: HashMap::new(),
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

    /// The committed services, in order.
    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.entries.iter().map(|e| &e.service)
    }

    /// What it takes to go from the committed state to `desired`.
    pub fn plan(&self, desired: &DesiredState) -> Result<Plan, DataplaneError> {
        if desired.snat != self.snat {
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
                    matches,
                    in_place,
                }))
            });
        }
        // A large change is cheaper as one full plan than as many small ones.
        if changed + removed > self.entries.len().max(64) / 2 {
            return Ok(Plan::Full);
        }
        // Claims of changed and new services: unique among themselves, and not held by
        // a committed service that stays unchanged.
        let mut new_claims: HashMap<Claim, usize> = HashMap::new();
        for (i, m) in matches.iter().enumerate() {
            if matches!(m, Match::Same(_)) {
                continue;
            }
            let c = claim(&desired.services[i]);
            if new_claims.insert(c, i).is_some() {
                return Ok(Plan::Full);
            }
            if let Some(&j) = self.claims.get(&c) {
                if fate[j] == 1 {
                    return Ok(Plan::Full);
                }
            }
        }
        let mut dels: BTreeMap<String, BTreeMap<ElemKey, Vec<u8>>> = BTreeMap::new();
        let mut adds: BTreeMap<String, BTreeMap<ElemKey, Vec<u8>>> = BTreeMap::new();
        let collect = |p: &ServicePlan, into: &mut BTreeMap<String, BTreeMap<ElemKey, Vec<u8>>>| {
            for (set, k, d, _) in p.elements() {
                into.entry(set.to_owned())
                    .or_default()
                    .insert(k.clone(), d.to_vec());
            }
        };
        for (i, m) in matches.iter().enumerate() {
            match *m {
                Match::Same(_) => {}
                Match::Changed(j, _) => {
                    let old = layout::plan_service(&self.entries[j].service)?;
                    let new = layout::plan_service(&desired.services[i])?;
                    collect(&old, &mut dels);
                    collect(&new, &mut adds);
                }
                Match::New(_) => collect(&layout::plan_service(&desired.services[i])?, &mut adds),
            }
        }
        for (j, _) in fate.iter().enumerate().filter(|(_, &f)| f == 0) {
            collect(&layout::plan_service(&self.entries[j].service)?, &mut dels);
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
        match self.changes(dels, adds) {
            Some((changes, extra)) => Ok(Plan::Step(Box::new(Step {
                changes,
                extra,
                matches,
                in_place,
            }))),
            None => Ok(Plan::Full),
        }
    }

    /// The batch for element deletions and additions: sets that appear are created
    /// with their rule, sets that empty out are deleted and their chain's rules
    /// rebuilt. `None` if the record does not fit (the full path then decides).
    fn changes(
        &self,
        dels: BTreeMap<String, BTreeMap<ElemKey, Vec<u8>>>,
        adds: BTreeMap<String, BTreeMap<ElemKey, Vec<u8>>>,
    ) -> Option<(Changes, Layout)> {
        let mut c = Changes::default();
        let mut extra = Layout::default();
        let names: BTreeSet<&String> = dels.keys().chain(adds.keys()).collect();
        let empty = BTreeMap::new();
        let mut created: BTreeSet<&'static str> = BTreeSet::new();
        let mut emptied: BTreeSet<&'static str> = BTreeSet::new();
        let mut final_sets: BTreeSet<String> = self.state.sets.keys().cloned().collect();
        for name in names {
            let d = dels.get(name).unwrap_or(&empty);
            let a = adds.get(name).unwrap_or(&empty);
            let (chain, _) = layout::rule_of_set(name)?;
            let cur = self.state.sets.get(name);
            let held = cur.map_or(&empty, |s| &s.elements);
            // Every deletion must be held; every addition must be new or replace a deletion.
            if d.keys().any(|k| !held.contains_key(k))
                || a.keys().any(|k| held.contains_key(k) && !d.contains_key(k))
            {
                return None;
            }
            let after = held.len() - d.len() + a.len();
            match (cur.is_some(), after > 0) {
                (false, true) => {
                    c.add_sets.push(name.clone());
                    extra
                        .state
                        .sets
                        .insert(name.clone(), layout::empty_set(name)?);
                    created.insert(chain);
                    final_sets.insert(name.clone());
                }
                (true, false) => {
                    c.del_sets.push(name.clone());
                    emptied.insert(chain);
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
        for def in CHAINS {
            let chain = def.name;
            if emptied.contains(chain) {
                // Rules are known by comment only: rebuild the chain in this batch.
                let held = self.state.rules.get(chain).map_or(0, Vec::len);
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
        }
        Some((c, extra))
    }

    /// Records a step the kernel accepted.
    pub fn commit(&mut self, step: Step, desired: &DesiredState) {
        let Step {
            changes: c,
            extra,
            matches,
            in_place,
        } = step;
        for name in &c.del_sets {
            self.state.sets.remove(name);
        }
        for chain in &c.flush_chains {
            self.state.rules.insert(chain.clone(), Vec::new());
        }
        for (name, set) in extra.state.sets {
            self.state.sets.insert(name, set);
        }
        self.state.apply_elements(&c);
        for (chain, rules) in &extra.rules {
            self.state
                .rules
                .entry(chain.clone())
                .or_default()
                .extend(rules.iter().map(|r| r.comment.clone()));
        }
        self.state.rules.retain(|_, r| !r.is_empty());
        if in_place {
            for (i, m) in matches.iter().enumerate() {
                if let Match::Changed(_, fp) = *m {
                    let s = &desired.services[i];
                    let old = std::mem::replace(
                        &mut self.entries[i],
                        Entry {
                            fingerprint: fp,
                            service: s.clone(),
                        },
                    );
                    let (was, now) = (claim(&old.service), claim(s));
                    if was != now {
                        self.claims.remove(&was);
                        self.claims.insert(now, i);
                    }
                }
            }
            return;
        }
        let mut old: Vec<Option<Entry>> = std::mem::take(&mut self.entries)
            .into_iter()
            .map(Some)
            .collect();
        self.entries = matches
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let fresh = |fingerprint| Entry {
                    fingerprint,
                    service: desired.services[i].clone(),
                };
                match *m {
                    // Each committed position is matched at most once.
                    Match::Same(j) => old[j]
                        .take()
                        .unwrap_or_else(|| fresh(Fingerprint::of(&desired.services[i]))),
                    Match::Changed(_, fp) | Match::New(fp) => fresh(fp),
                }
            })
            .collect();
        self.reindex();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_separates_strings_and_fields() {
        assert_ne!(Fingerprint::of("ab"), Fingerprint::of("ab\0"));
        assert_ne!(Fingerprint::of(&("a", "bc")), Fingerprint::of(&("ab", "c")));
        assert_ne!(Fingerprint::of(&[1u32, 2]), Fingerprint::of(&[2u32, 1]));
        assert_eq!(Fingerprint::of("svc1"), Fingerprint::of("svc1"));
    }
}
