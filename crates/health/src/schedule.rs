//! The sans-IO scheduler: when to run which check, and how results become an
//! Up/Down state with rise/fall counts and flap dampening.
//!
//! No clock, no sockets, no tokio: every input carries `now`, and outputs are
//! [`Action`]s for the caller (the runner, or a test) to carry out.
//!
//! # Rules
//!
//! - **Schedule.** A target's first check is at `added + phase`, the phase
//!   drawn uniformly from `[0, interval)`; each later one is `interval ±
//!   jitter` after the previous due time (fixed rate, not fixed delay), the
//!   jitter drawn from `[-j, +j]` with `j = interval * jitter_permille / 1000`.
//!   The draws come from a generator seeded by a stable hash of the target's
//!   name and the scheduler's seed: targets don't march in step, and the same
//!   names and seed give the same times on every run. A check whose previous
//!   run has not reported yet is skipped (counted as an overrun), never
//!   stacked. A scheduler that fell behind (a suspended process) does not
//!   burst to catch up: it resumes one interval from now.
//! - **Rise/fall.** A Down target goes Up after `rise` consecutive successes;
//!   an Up target goes Down after `fall` consecutive failures.
//! - **Starting state.** Chosen by the caller per [`Scheduler::set_targets`]
//!   call: at daemon start `Up` (the peer may have been serving these servers,
//!   and pulling them all for `rise` intervals would drop traffic), and on
//!   reload `Down` for servers that are new (they get traffic only once they
//!   have passed `rise` checks). A starting state is an assumption: it changes
//!   by the ordinary rise/fall rule (an assumed-Up server that is dead goes
//!   Down after `fall` failures).
//! - **Reload.** A target whose name and address are unchanged keeps its state
//!   and counts; if its probe or source address changed, its consecutive
//!   counts restart and an in-flight result is ignored; if only the timing
//!   changed it is re-phased when the interval changed. A name whose address
//!   changed is a new server and starts in the given state.
//! - **Dampening.** A target may change state at most `max_transitions` times
//!   within any `window`. Going Down is never refused (a failing server must
//!   leave), so an Up is refused whenever it would leave no room in the
//!   window for the Down that may follow it. A refused Up holds the target
//!   Down ("held") until it has had no failed check for `hold` and the window
//!   has room again; then it goes Up with reason [`TransitionReason::HoldReleased`].
//!   The limit is the scheduler's unless a target's [`crate::TargetDampening`]
//!   sets its own (or none); likewise a target may set its own jitter.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::HealthError;
use crate::jitter::{target_seed, SplitMix64};
use crate::outcome::{CheckOutcome, CheckResult, FailReason};
use crate::target::{Target, TargetDampening, TargetName};
use crate::time::{duration_micros, Time};

/// Up or Down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HealthState {
    /// Receives traffic.
    Up,
    /// Receives none.
    Down,
}

impl fmt::Display for HealthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HealthState::Up => "up",
            HealthState::Down => "down",
        })
    }
}

/// Flap dampening: at most `max_transitions` state changes per `window`;
/// beyond that the target is held Down until stable for `hold`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dampening {
    /// State changes allowed per window, at least 2 (a Down and an Up).
    pub max_transitions: u32,
    /// The sliding window.
    pub window: Duration,
    /// Time without a failed check before a held target may go Up.
    pub hold: Duration,
}

impl Default for Dampening {
    /// 4 changes per 60 s, then held until 30 s without a failure.
    fn default() -> Self {
        Self {
            max_transitions: 4,
            window: Duration::from_secs(60),
            hold: Duration::from_secs(30),
        }
    }
}

/// Scheduler-wide settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerSettings {
    /// Mixed into every target's hash: two nodes with different seeds check
    /// the same server at different moments.
    pub seed: u64,
    /// Jitter of each interval in thousandths of it (100 = ±10 %), at most 500.
    pub jitter_permille: u16,
    /// Flap dampening; `None` disables it.
    pub dampening: Option<Dampening>,
}

impl Default for SchedulerSettings {
    /// Seed 0, ±10 % jitter, default dampening.
    fn default() -> Self {
        Self {
            seed: 0,
            jitter_permille: 100,
            dampening: Some(Dampening::default()),
        }
    }
}

/// Names one run of one check; the result must come back with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CheckTicket {
    slot: u64,
    seq: u32,
}

/// "Run this check now".
#[derive(Debug, Clone)]
pub struct CheckRequest {
    /// Hand back with the result.
    pub ticket: CheckTicket,
    /// What to probe (a copy: its names and spec are shared).
    pub target: Target,
}

/// Why a target changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionReason {
    /// `successes` consecutive successful checks (the rise count).
    Rise {
        /// Consecutive successes seen.
        successes: u32,
    },
    /// `failures` consecutive failed checks (the fall count).
    Fall {
        /// Consecutive failures seen.
        failures: u32,
    },
    /// A dampened target was stable long enough.
    HoldReleased {
        /// Time since its last failed check.
        stable_for: Duration,
    },
}

impl fmt::Display for TransitionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransitionReason::Rise { successes } => {
                write!(f, "{successes} consecutive successful checks")
            }
            TransitionReason::Fall { failures } => {
                write!(f, "{failures} consecutive failed checks")
            }
            TransitionReason::HoldReleased { stable_for } => {
                write!(
                    f,
                    "flap hold released after {:.1} s stable",
                    stable_for.as_secs_f64()
                )
            }
        }
    }
}

/// A target changed state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// Which target.
    pub target: TargetName,
    /// State before.
    pub from: HealthState,
    /// State now.
    pub to: HealthState,
    /// Why.
    pub reason: TransitionReason,
    /// The result that completed the change.
    pub last: CheckResult,
    /// When.
    pub at: Time,
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} went {} ({}; last check {})",
            self.target, self.to, self.reason, self.last
        )
    }
}

/// A target that passed its rise count is held Down by flap dampening.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DampenedNotice {
    /// Which target.
    pub target: TargetName,
    /// State changes it made within the window.
    pub transitions_in_window: u32,
    /// When.
    pub at: Time,
}

/// What the caller must do, or should know.
#[derive(Debug, Clone)]
pub enum Action {
    /// Run a check and report with [`Scheduler::on_result`].
    RunCheck(CheckRequest),
    /// A target went Up or Down.
    StateChanged(Transition),
    /// A target is held Down by flap dampening.
    Dampened(DampenedNotice),
}

/// One target's state, for status displays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetStatus {
    /// The target as configured.
    pub target: Target,
    /// Current state.
    pub state: HealthState,
    /// Held Down by flap dampening.
    pub held: bool,
    /// When the state last changed (or the target was added).
    pub since: Time,
    /// The last result and when it arrived.
    pub last: Option<(CheckResult, Time)>,
    /// Consecutive successes so far.
    pub consecutive_ok: u32,
    /// Consecutive failures so far.
    pub consecutive_fail: u32,
    /// Results received.
    pub checks: u64,
    /// State changes since the target was added.
    pub transitions: u64,
}

/// Scheduler-wide counters (monotonic).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedulerCounters {
    /// Checks handed out.
    pub checks_started: u64,
    /// Results that were successes.
    pub checks_ok: u64,
    /// Results that were failures.
    pub checks_failed: u64,
    /// Due checks skipped because the previous run had not reported.
    pub overruns: u64,
    /// Results ignored: unknown ticket (target removed or changed).
    pub stale_results: u64,
    /// Transitions to Up.
    pub transitions_up: u64,
    /// Transitions to Down.
    pub transitions_down: u64,
    /// Ups refused by flap dampening.
    pub dampened: u64,
}

/// One target's schedule and state. Kept small (one per checked server, 80,000 of
/// them): counters that cannot overflow in practice are 32-bit, the last result is
/// kept as its time, duration and, only when it failed, its reason.
#[derive(Debug)]
struct Slot {
    /// Held here, not behind a pointer of its own: 80,000 allocations fewer.
    target: Target,
    rng: SplitMix64,
    next_due: Time,
    since: Time,
    /// When the last result arrived (meaningful when `checks > 0`).
    last_at: Time,
    /// Its duration in nanoseconds (saturating: 584 years).
    last_nanos: u64,
    /// Why it failed; `None`: it passed.
    last_fail: Option<Box<FailReason>>,
    last_failure: Option<Time>,
    checks: u64,
    /// The times of its state changes within the dampening window.
    recent: Vec<Time>,
    /// Which queue entry is current (older entries of a rescheduled slot are skipped).
    sched_seq: u32,
    /// The sequence number of the next ticket; the one in flight is the one before.
    next_ticket: u32,
    consecutive_ok: u32,
    consecutive_fail: u32,
    transitions: u32,
    state: HealthState,
    /// A check's ticket is out (number `next_ticket - 1`).
    in_flight: bool,
    held: bool,
    /// Listed in [`Scheduler::fresh`].
    fresh: bool,
}

impl Slot {
    /// The ticket in flight, if any.
    fn in_flight(&self, slot: u64) -> Option<CheckTicket> {
        self.in_flight.then(|| CheckTicket {
            slot,
            seq: self.next_ticket.wrapping_sub(1),
        })
    }

    /// The last result and when it arrived.
    fn last(&self) -> Option<(CheckResult, Time)> {
        if self.checks == 0 {
            return None;
        }
        let duration = self.last_duration().unwrap_or_default();
        let outcome = match &self.last_fail {
            None => CheckOutcome::Ok,
            Some(reason) => CheckOutcome::Fail(FailReason::clone(reason)),
        };
        Some((CheckResult { outcome, duration }, self.last_at))
    }

    /// The duration of the last check, if any.
    fn last_duration(&self) -> Option<Duration> {
        (self.checks > 0).then(|| Duration::from_nanos(self.last_nanos))
    }
}

/// A service's slot ids. Few servers (most services): the ids alone, a server found
/// through its slot's name (10,000 services of 8 servers each in a map of their own
/// were 4 MB); many: by server name in a map.
#[derive(Debug)]
enum ServerSlots {
    Few(Vec<u64>),
    Many(HashMap<Arc<str>, u64>),
}

impl ServerSlots {
    /// Servers beyond which a service's slots are found by a map.
    const FEW: usize = 32;

    /// The slot of `server`.
    fn get(&self, slots: &SlotTable, server: &str) -> Option<u64> {
        match self {
            ServerSlots::Few(ids) => ids.iter().copied().find(|id| {
                slots
                    .get(id)
                    .is_some_and(|s| *s.target.name.server == *server)
            }),
            ServerSlots::Many(map) => map.get(server).copied(),
        }
    }

    /// Adds `server`'s slot `id` (already in `slots`; `server` not yet here).
    fn insert(&mut self, slots: &SlotTable, server: &Arc<str>, id: u64) {
        match self {
            ServerSlots::Few(ids) if ids.len() < Self::FEW => ids.push(id),
            ServerSlots::Few(ids) => {
                let mut map: HashMap<Arc<str>, u64> = ids
                    .iter()
                    .filter_map(|id| Some((Arc::clone(&slots.get(id)?.target.name.server), *id)))
                    .collect();
                map.insert(Arc::clone(server), id);
                *self = ServerSlots::Many(map);
            }
            ServerSlots::Many(map) => {
                map.insert(Arc::clone(server), id);
            }
        }
    }

    /// Forgets `server` (its slot still in `slots`); its slot id.
    fn remove(&mut self, slots: &SlotTable, server: &str) -> Option<u64> {
        match self {
            ServerSlots::Few(ids) => {
                let i = ids.iter().position(|id| {
                    slots
                        .get(id)
                        .is_some_and(|s| *s.target.name.server == *server)
                })?;
                Some(ids.remove(i))
            }
            ServerSlots::Many(map) => map.remove(server),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            ServerSlots::Few(ids) => ids.is_empty(),
            ServerSlots::Many(map) => map.is_empty(),
        }
    }

    /// The slot ids, in no order.
    fn ids(&self) -> Box<dyn Iterator<Item = u64> + '_> {
        match self {
            ServerSlots::Few(ids) => Box::new(ids.iter().copied()),
            ServerSlots::Many(map) => Box::new(map.values().copied()),
        }
    }
}

/// The slots by id, in a vector rather than a hash map: 80,000 targets' slots in a
/// map kept ~40 % of its buckets empty, each the size of a slot. An id is the index
/// in its low 32 bits and the index's generation above them: the index of a removed
/// slot is used again under another id, so that what still names the old id (a
/// queued deadline, a running check's ticket) finds nothing.
#[derive(Debug, Default)]
struct SlotTable {
    /// Per index: its generation, and its slot if in use.
    entries: Vec<(u32, Option<Slot>)>,
    /// Indexes not in use.
    free: Vec<u32>,
    len: usize,
}

impl SlotTable {
    fn split(id: u64) -> (usize, u32) {
        ((id & 0xffff_ffff) as usize, (id >> 32) as u32)
    }

    /// The id the next [`SlotTable::insert`] is to use.
    fn next_id(&self) -> u64 {
        match self.free.last() {
            Some(&i) => (u64::from(self.entries[i as usize].0) << 32) | u64::from(i),
            None => self.entries.len() as u64,
        }
    }

    /// Stores `slot` under `id`, which must be [`SlotTable::next_id`].
    fn insert(&mut self, id: u64, slot: Slot) {
        let (i, generation) = Self::split(id);
        if self.free.last() == Some(&(i as u32)) {
            self.free.pop();
        } else {
            debug_assert_eq!(i, self.entries.len());
            self.entries.push((generation, None));
        }
        debug_assert_eq!(self.entries[i].0, generation);
        self.entries[i].1 = Some(slot);
        self.len += 1;
    }

    fn get(&self, id: &u64) -> Option<&Slot> {
        let (i, generation) = Self::split(*id);
        match self.entries.get(i)? {
            (g, Some(slot)) if *g == generation => Some(slot),
            _ => None,
        }
    }

    fn get_mut(&mut self, id: &u64) -> Option<&mut Slot> {
        let (i, generation) = Self::split(*id);
        match self.entries.get_mut(i)? {
            (g, Some(slot)) if *g == generation => Some(slot),
            _ => None,
        }
    }

    fn remove(&mut self, id: &u64) -> Option<Slot> {
        let (i, generation) = Self::split(*id);
        let entry = self.entries.get_mut(i)?;
        if entry.0 != generation || entry.1.is_none() {
            return None;
        }
        let slot = entry.1.take();
        entry.0 = entry.0.wrapping_add(1);
        self.free.push(i as u32);
        self.len -= 1;
        slot
    }

    fn values(&self) -> impl Iterator<Item = &Slot> {
        self.entries.iter().filter_map(|(_, s)| s.as_ref())
    }

    fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, (_, s))| s.is_some())
            .map(|(i, (g, _))| (u64::from(*g) << 32) | i as u64)
    }

    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The health-check scheduler and rise/fall state machine for all targets.
#[derive(Debug)]
pub struct Scheduler {
    settings: SchedulerSettings,
    /// Slot ids by service, then server: a service's targets are found without a
    /// pass over every target (a reload changes one service of thousands).
    by_name: HashMap<Arc<str>, ServerSlots>,
    slots: SlotTable,
    queue: BinaryHeap<Reverse<(Time, u64, u32)>>,
    counters: SchedulerCounters,
    /// Targets with a result since the last [`Scheduler::take_fresh`], once each.
    fresh: Vec<u64>,
}

impl Scheduler {
    /// An empty scheduler; refuses dampening with fewer than 2 changes per
    /// window, a zero window, or jitter above 50 %.
    pub fn new(settings: SchedulerSettings) -> Result<Self, HealthError> {
        if settings.jitter_permille > 500 {
            return Err(HealthError::Jitter(settings.jitter_permille));
        }
        if let Some(d) = settings.dampening {
            validate_dampening(d)?;
        }
        Ok(Self {
            settings,
            by_name: HashMap::new(),
            slots: SlotTable::default(),
            queue: BinaryHeap::new(),
            counters: SchedulerCounters::default(),
            fresh: Vec::new(),
        })
    }

    /// Replace the set of targets (start-up and reload; see the module rules).
    /// New targets start in `initial`. Refuses the whole set, changing
    /// nothing, if a name repeats or a timing is zero.
    pub fn set_targets(
        &mut self,
        now: Time,
        targets: Vec<Target>,
        initial: HealthState,
    ) -> Result<(), HealthError> {
        self.replace_targets(now, targets, initial, None)
    }

    /// [`Scheduler::set_targets`] for the targets of `services` only: those of
    /// other services are neither compared nor touched, so a reload that changes
    /// one service of thousands costs what that service has. `targets` must all
    /// belong to `services`.
    pub fn set_service_targets(
        &mut self,
        now: Time,
        services: &BTreeSet<String>,
        targets: Vec<Target>,
        initial: HealthState,
    ) -> Result<(), HealthError> {
        if let Some(t) = targets
            .iter()
            .find(|t| !services.contains(&*t.name.service))
        {
            return Err(HealthError::OutsideServices(t.name.clone()));
        }
        self.replace_targets(now, targets, initial, Some(services))
    }

    /// The slot of target `name`.
    fn slot_id(&self, name: &TargetName) -> Option<u64> {
        self.by_name
            .get(&name.service)?
            .get(&self.slots, &name.server)
    }

    /// Forgets target `name`'s slot id; the id.
    fn remove_name(&mut self, name: &TargetName) -> Option<u64> {
        let servers = self.by_name.get_mut(&name.service)?;
        let id = servers.remove(&self.slots, &name.server);
        if servers.is_empty() {
            self.by_name.remove(&name.service);
        }
        id
    }

    /// Makes the targets of `services` (all: `None`) exactly `targets`.
    fn replace_targets(
        &mut self,
        now: Time,
        targets: Vec<Target>,
        initial: HealthState,
        services: Option<&BTreeSet<String>>,
    ) -> Result<(), HealthError> {
        let mut seen: HashSet<(&str, &str)> = HashSet::with_capacity(targets.len());
        for t in &targets {
            if !seen.insert((&*t.name.service, &*t.name.server)) {
                return Err(HealthError::DuplicateTarget(t.name.clone()));
            }
            let c = &t.check;
            if c.interval.is_zero() || c.timeout.is_zero() || c.rise == 0 || c.fall == 0 {
                return Err(HealthError::Timing(t.name.clone()));
            }
            if let Some(j) = c.jitter_permille.filter(|j| *j > 500) {
                return Err(HealthError::Jitter(j));
            }
            if let TargetDampening::Limit(d) = c.dampening {
                validate_dampening(d)?;
            }
        }
        let replaced: Vec<&ServerSlots> = match services {
            None => self.by_name.values().collect(),
            Some(names) => names
                .iter()
                .filter_map(|n| self.by_name.get(n.as_str()))
                .collect(),
        };
        let gone: Vec<TargetName> = replaced
            .into_iter()
            .flat_map(|servers| servers.ids())
            .filter_map(|id| self.slots.get(&id))
            .map(|slot| &slot.target.name)
            .filter(|name| !seen.contains(&(&*name.service, &*name.server)))
            .cloned()
            .collect();
        for name in gone {
            if let Some(id) = self.remove_name(&name) {
                self.slots.remove(&id);
            }
        }
        if services.is_none() {
            let more = targets.len().saturating_sub(self.slots.len());
            self.slots.entries.reserve(more);
        }
        for target in targets {
            let existing = self.slot_id(&target.name).filter(|id| {
                self.slots
                    .get(id)
                    .is_some_and(|s| s.target.address == target.address)
            });
            match existing {
                Some(id) => self.update_slot(now, id, target),
                None => self.add_slot(now, target, initial),
            }
        }
        // The queue keeps an entry per target (and a few stale ones): room for an
        // eighth more, not the doubling's up to twice as much.
        let room = self.queue.len() + self.queue.len() / 8 + 16;
        if self.queue.capacity() > room + room / 4 {
            self.queue.shrink_to(room);
        }
        Ok(())
    }

    fn add_slot(&mut self, now: Time, target: Target, initial: HealthState) {
        if let Some(old) = self.remove_name(&target.name) {
            self.slots.remove(&old);
        }
        let id = self.slots.next_id();
        let mut rng = SplitMix64::new(target_seed(&target.name, self.settings.seed));
        let phase = rng.below(duration_micros(target.check.interval));
        let next_due = now + Duration::from_micros(phase);
        let service = Arc::clone(&target.name.service);
        let server = Arc::clone(&target.name.server);
        self.slots.insert(
            id,
            Slot {
                target,
                rng,
                next_due,
                sched_seq: 0,
                in_flight: false,
                next_ticket: 0,
                state: initial,
                held: false,
                since: now,
                last_at: Time::ZERO,
                last_nanos: 0,
                last_fail: None,
                last_failure: None,
                consecutive_ok: 0,
                consecutive_fail: 0,
                checks: 0,
                transitions: 0,
                recent: Vec::new(),
                fresh: false,
            },
        );
        self.by_name
            .entry(service)
            .or_insert_with(|| ServerSlots::Few(Vec::new()))
            .insert(&self.slots, &server, id);
        self.queue.push(Reverse((next_due, id, 0)));
    }

    fn update_slot(&mut self, now: Time, id: u64, target: Target) {
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        if slot.target == target {
            return;
        }
        let old = &slot.target;
        let reschedule = old.check.interval != target.check.interval;
        if old.check.probe != target.check.probe || old.source != target.source {
            slot.consecutive_ok = 0;
            slot.consecutive_fail = 0;
            slot.in_flight = false;
        }
        slot.target = target;
        if reschedule {
            let phase = slot.rng.below(duration_micros(slot.target.check.interval));
            slot.next_due = now + Duration::from_micros(phase);
            slot.sched_seq = slot.sched_seq.wrapping_add(1);
            self.queue
                .push(Reverse((slot.next_due, id, slot.sched_seq)));
        }
    }

    /// Hand out the checks due at `now`.
    pub fn poll(&mut self, now: Time) -> Vec<Action> {
        self.poll_at_most(now, usize::MAX)
    }

    /// [`Scheduler::poll`], handing out at most `limit` checks, the longest due
    /// first; the others stay due (they are not started, so they hold no memory of
    /// a running check) until a later poll.
    pub fn poll_at_most(&mut self, now: Time, limit: usize) -> Vec<Action> {
        let mut actions = Vec::new();
        while let Some(Reverse((due, id, seq))) = self.queue.peek().copied() {
            if due > now || actions.len() >= limit {
                break;
            }
            self.queue.pop();
            let Some(slot) = self.slots.get_mut(&id) else {
                continue;
            };
            let jitter = slot
                .target
                .check
                .jitter_permille
                .unwrap_or(self.settings.jitter_permille);
            if slot.sched_seq != seq {
                continue;
            }
            if slot.in_flight {
                self.counters.overruns += 1;
            } else {
                let ticket = CheckTicket {
                    slot: id,
                    seq: slot.next_ticket,
                };
                slot.next_ticket = slot.next_ticket.wrapping_add(1);
                slot.in_flight = true;
                self.counters.checks_started += 1;
                actions.push(Action::RunCheck(CheckRequest {
                    ticket,
                    target: slot.target.clone(),
                }));
            }
            let step = jittered(slot.target.check.interval, jitter, &mut slot.rng);
            let mut next = due + step;
            if next <= now {
                next = now + step;
            }
            slot.next_due = next;
            slot.sched_seq = slot.sched_seq.wrapping_add(1);
            self.queue.push(Reverse((next, id, slot.sched_seq)));
        }
        actions
    }

    /// The earliest time [`Scheduler::poll`] may have work (may be early,
    /// never late); `None` without targets.
    pub fn next_deadline(&self) -> Option<Time> {
        self.queue.peek().map(|Reverse((t, _, _))| *t)
    }

    /// Feed the result of a check handed out by [`Scheduler::poll`].
    pub fn on_result(
        &mut self,
        now: Time,
        ticket: CheckTicket,
        result: CheckResult,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        let Some(slot) = self
            .slots
            .get_mut(&ticket.slot)
            .filter(|s| s.in_flight(ticket.slot) == Some(ticket))
        else {
            self.counters.stale_results += 1;
            return actions;
        };
        slot.in_flight = false;
        slot.checks += 1;
        if !slot.fresh {
            slot.fresh = true;
            self.fresh.push(ticket.slot);
        }
        if result.outcome.is_ok() {
            self.counters.checks_ok += 1;
            slot.consecutive_ok = slot.consecutive_ok.saturating_add(1);
            slot.consecutive_fail = 0;
        } else {
            self.counters.checks_failed += 1;
            slot.consecutive_fail = slot.consecutive_fail.saturating_add(1);
            slot.consecutive_ok = 0;
            slot.last_failure = Some(now);
        }
        slot.last_at = now;
        slot.last_nanos = u64::try_from(result.duration.as_nanos()).unwrap_or(u64::MAX);
        slot.last_fail = result.outcome.reason().map(|r| Box::new(r.clone()));
        let dampening = match slot.target.check.dampening {
            TargetDampening::Scheduler => self.settings.dampening,
            TargetDampening::Off => None,
            TargetDampening::Limit(d) => Some(d),
        };
        if let Some(d) = dampening {
            let old = slot
                .recent
                .iter()
                .take_while(|t| now.saturating_since(**t) >= d.window)
                .count();
            slot.recent.drain(..old);
        }
        let check = &slot.target.check;
        match slot.state {
            HealthState::Up if slot.consecutive_fail >= check.fall => {
                let reason = TransitionReason::Fall {
                    failures: slot.consecutive_fail,
                };
                actions.push(Action::StateChanged(transition(
                    slot,
                    &mut self.counters,
                    now,
                    HealthState::Down,
                    reason,
                    result,
                )));
            }
            HealthState::Down if slot.consecutive_ok >= check.rise => {
                if let Some(action) = rise(slot, &mut self.counters, dampening, now, result) {
                    actions.push(action);
                }
            }
            _ => {}
        }
        actions
    }

    /// One target's status.
    pub fn status(&self, name: &TargetName) -> Option<TargetStatus> {
        let id = self.slot_id(name)?;
        self.slots.get(&id).map(slot_status)
    }

    /// Every target's status, sorted by name.
    pub fn statuses(&self) -> Vec<TargetStatus> {
        let mut all: Vec<TargetStatus> = self.slots.values().map(slot_status).collect();
        all.sort_by(|a, b| a.target.name.cmp(&b.target.name));
        all
    }

    /// Calls `f` with every target, its number of finished checks and the duration
    /// of its latest one, in no order, copying nothing (a sample each second of
    /// 10,000s of targets); returns the number of targets.
    pub fn visit_latest(&self, mut f: impl FnMut(&Target, u64, Option<Duration>)) -> usize {
        for slot in self.slots.values() {
            f(&slot.target, slot.checks, slot.last_duration());
        }
        self.slots.len()
    }

    /// Calls `f` with each target that has a check result it was not called with
    /// yet (since the last call, or since [`Scheduler::mark_fresh`]) and the
    /// duration of its latest check: a sample each second of what changed, not of
    /// every one of 10,000s of targets. Returns how many.
    pub fn take_fresh(&mut self, mut f: impl FnMut(&Target, Option<Duration>)) -> usize {
        let fresh = std::mem::take(&mut self.fresh);
        let mut n = 0;
        for id in &fresh {
            let Some(slot) = self.slots.get_mut(id) else {
                continue;
            };
            slot.fresh = false;
            n += 1;
            f(&slot.target, slot.last_duration());
        }
        // The list's room is kept for the next results.
        self.fresh = fresh;
        self.fresh.clear();
        n
    }

    /// Makes the targets of `services` (all: `None`) that have a check result fresh
    /// again ([`Scheduler::take_fresh`] hands them out once more).
    pub fn mark_fresh(&mut self, services: Option<&BTreeSet<String>>) {
        let ids: Vec<u64> = match services {
            None => self.slots.keys().collect(),
            Some(names) => names
                .iter()
                .filter_map(|n| self.by_name.get(n.as_str()))
                .flat_map(|servers| servers.ids())
                .collect(),
        };
        for id in ids {
            if let Some(slot) = self.slots.get_mut(&id) {
                if !slot.fresh && slot.checks > 0 {
                    slot.fresh = true;
                    self.fresh.push(id);
                }
            }
        }
    }

    /// Names of the targets that are down now (usually few: what a plan needs,
    /// without copying every target's status).
    pub fn down_targets(&self) -> Vec<TargetName> {
        self.slots
            .values()
            .filter(|s| s.state == HealthState::Down)
            .map(|s| s.target.name.clone())
            .collect()
    }

    /// Number of targets.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there are no targets.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Counters since creation.
    pub fn counters(&self) -> SchedulerCounters {
        self.counters
    }
}

fn validate_dampening(d: Dampening) -> Result<(), HealthError> {
    if d.max_transitions < 2 || d.window.is_zero() {
        return Err(HealthError::Dampening {
            max_transitions: d.max_transitions,
            window: d.window,
        });
    }
    Ok(())
}

/// A Down target passed its rise count: go Up unless dampening holds it.
fn rise(
    slot: &mut Slot,
    counters: &mut SchedulerCounters,
    dampening: Option<Dampening>,
    now: Time,
    result: CheckResult,
) -> Option<Action> {
    let mut reason = TransitionReason::Rise {
        successes: slot.consecutive_ok,
    };
    if let Some(d) = dampening {
        let room = slot.recent.len() + 2 <= d.max_transitions as usize;
        if slot.held {
            let stable_for = now.saturating_since(slot.last_failure.unwrap_or(slot.since));
            if stable_for < d.hold || !room {
                return None;
            }
            reason = TransitionReason::HoldReleased { stable_for };
        } else if !room {
            slot.held = true;
            counters.dampened += 1;
            return Some(Action::Dampened(DampenedNotice {
                target: slot.target.name.clone(),
                transitions_in_window: u32::try_from(slot.recent.len()).unwrap_or(u32::MAX),
                at: now,
            }));
        }
    }
    slot.held = false;
    Some(Action::StateChanged(transition(
        slot,
        counters,
        now,
        HealthState::Up,
        reason,
        result,
    )))
}

fn transition(
    slot: &mut Slot,
    counters: &mut SchedulerCounters,
    now: Time,
    to: HealthState,
    reason: TransitionReason,
    last: CheckResult,
) -> Transition {
    let from = slot.state;
    slot.state = to;
    slot.since = now;
    slot.transitions = slot.transitions.saturating_add(1);
    slot.recent.push(now);
    match to {
        HealthState::Up => counters.transitions_up += 1,
        HealthState::Down => counters.transitions_down += 1,
    }
    Transition {
        target: slot.target.name.clone(),
        from,
        to,
        reason,
        last,
        at: now,
    }
}

fn slot_status(slot: &Slot) -> TargetStatus {
    TargetStatus {
        target: slot.target.clone(),
        state: slot.state,
        held: slot.held,
        since: slot.since,
        last: slot.last(),
        consecutive_ok: slot.consecutive_ok,
        consecutive_fail: slot.consecutive_fail,
        checks: slot.checks,
        transitions: u64::from(slot.transitions),
    }
}

/// `interval ± interval * permille / 1000`, drawn from `rng`.
fn jittered(interval: Duration, permille: u16, rng: &mut SplitMix64) -> Duration {
    let base = duration_micros(interval);
    let j = base / 1000 * u64::from(permille) + base % 1000 * u64::from(permille) / 1000;
    if j == 0 {
        return interval;
    }
    let offset = rng.below(2 * j + 1);
    Duration::from_micros(base - j + offset)
}
