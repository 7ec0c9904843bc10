//! The runner: drives the [`Scheduler`] with tokio's clock and the
//! [`Checker`], bounding how many checks run at once.

use std::collections::{BTreeSet, HashMap};
use std::future::pending;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::{Notify, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::check::Checker;
use crate::error::HealthError;
use crate::outcome::{CheckResult, FailReason};
use crate::schedule::{
    Action, CheckTicket, DampenedNotice, HealthState, Scheduler, SchedulerCounters,
    SchedulerSettings, TargetStatus, Transition,
};
use crate::target::{Target, TargetName};
use crate::time::{duration_micros, Time};

/// Runner settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunnerSettings {
    /// Scheduling, jitter and dampening.
    pub scheduler: SchedulerSettings,
    /// State of the targets given to [`HealthRunner::new`] (daemon start: `Up`).
    pub initial_state: HealthState,
    /// Checks running at once; the rest wait their turn. Each running check
    /// holds a socket or a process, so keep this well under RLIMIT_NOFILE.
    pub max_in_flight: usize,
    /// Run the checks on a thread of their own (with a runtime of its own) rather
    /// than as tasks of the caller's runtime. A daemon whose loop runs on a
    /// single-threaded runtime answers its requests without waiting behind the
    /// checks that came due meanwhile (80,000 checked servers: hundreds per
    /// 100 ms). Off by default: tests drive the runner with their paused clock.
    pub own_thread: bool,
}

impl Default for RunnerSettings {
    /// Default scheduler, targets start Up, 512 checks at once, in the caller's
    /// runtime.
    fn default() -> Self {
        Self {
            scheduler: SchedulerSettings::default(),
            initial_state: HealthState::Up,
            max_in_flight: 512,
            own_thread: false,
        }
    }
}

/// What the runner tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthEvent {
    /// A target went Up or Down.
    StateChanged(Transition),
    /// A target passed its rise count but is held Down by flap dampening.
    Dampened(DampenedNotice),
}

/// Runner-wide counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunnerCounters {
    /// The scheduler's counters.
    pub scheduler: SchedulerCounters,
    /// Checks started and not finished (running or waiting for a slot).
    pub pending: usize,
    /// Checks holding one of the `max_in_flight` slots.
    pub running: usize,
}

struct Shared {
    scheduler: Mutex<Scheduler>,
    wake: Notify,
    epoch: Instant,
    slots: Arc<Semaphore>,
    max_in_flight: usize,
    pending: AtomicUsize,
}

impl Shared {
    fn scheduler(&self) -> MutexGuard<'_, Scheduler> {
        // Nothing panics while holding the lock; if it did, the data is still consistent.
        self.scheduler
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> Time {
        Time::from_micros(duration_micros(self.epoch.elapsed()))
    }

    fn instant(&self, t: Time) -> Instant {
        self.epoch + Duration::from_micros(t.as_micros())
    }
}

/// Health checking for a set of targets, in a task of its own. Dropping it
/// stops the checks (running ones are aborted, exec'd programs killed).
pub struct HealthRunner {
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
    /// With [`RunnerSettings::own_thread`]: the checks' thread, which runs until
    /// this is dropped (its runtime then stops, the checks with it).
    thread: Option<CheckThread>,
}

/// The thread the checks run on, with [`RunnerSettings::own_thread`].
struct CheckThread {
    /// Dropped: the thread's runtime stops.
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl CheckThread {
    /// A thread running a runtime of its own until stopped; its handle.
    fn start() -> std::io::Result<(CheckThread, tokio::runtime::Handle)> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("health-checks".into())
            .spawn(move || {
                let _ = runtime.block_on(stopped);
            })?;
        Ok((CheckThread { stop, thread }, handle))
    }

    /// Stops the thread and waits until it ended (its checks dropped).
    fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

impl std::fmt::Debug for HealthRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthRunner").finish_non_exhaustive()
    }
}

impl HealthRunner {
    /// Start checking `targets` (inside a tokio runtime), HTTPS verified
    /// against the system trust store; events arrive on the receiver.
    pub fn new(
        targets: Vec<Target>,
        settings: RunnerSettings,
    ) -> Result<(Self, UnboundedReceiver<HealthEvent>), HealthError> {
        Self::with_checker(targets, settings, Checker::new()?)
    }

    /// As [`HealthRunner::new`], with a given checker (own trust roots).
    pub fn with_checker(
        targets: Vec<Target>,
        settings: RunnerSettings,
        checker: Checker,
    ) -> Result<(Self, UnboundedReceiver<HealthEvent>), HealthError> {
        if settings.max_in_flight == 0 {
            return Err(HealthError::Concurrency);
        }
        let mut scheduler = Scheduler::new(settings.scheduler)?;
        scheduler.set_targets(Time::ZERO, targets, settings.initial_state)?;
        let shared = Arc::new(Shared {
            scheduler: Mutex::new(scheduler),
            wake: Notify::new(),
            epoch: Instant::now(),
            slots: Arc::new(Semaphore::new(settings.max_in_flight)),
            max_in_flight: settings.max_in_flight,
            pending: AtomicUsize::new(0),
        });
        let (events, receiver) = unbounded_channel();
        let driver = drive(Arc::clone(&shared), checker, events);
        let (task, thread) = if settings.own_thread {
            let (thread, runtime) = CheckThread::start().map_err(HealthError::Thread)?;
            (runtime.spawn(driver), Some(thread))
        } else {
            (tokio::spawn(driver), None)
        };
        Ok((
            Self {
                shared,
                task: Some(task),
                thread,
            },
            receiver,
        ))
    }

    /// Replace the targets (reload). Unchanged targets keep their state; new
    /// ones start in `new_state` (normally `Down`: no traffic before `rise`
    /// passing checks). Refuses the whole set if a name repeats.
    pub fn update_targets(
        &self,
        targets: Vec<Target>,
        new_state: HealthState,
    ) -> Result<(), HealthError> {
        self.change_targets(|s, now| s.set_targets(now, targets, new_state))
    }

    /// [`HealthRunner::update_targets`] for the targets of `services` only (a
    /// reload that changed those): the others keep running untouched.
    pub fn update_service_targets(
        &self,
        services: &BTreeSet<String>,
        targets: Vec<Target>,
        new_state: HealthState,
    ) -> Result<(), HealthError> {
        self.change_targets(|s, now| s.set_service_targets(now, services, targets, new_state))
    }

    /// Changes the scheduler's targets now, then wakes the driver.
    fn change_targets(
        &self,
        change: impl FnOnce(&mut Scheduler, Time) -> Result<(), HealthError>,
    ) -> Result<(), HealthError> {
        let now = self.shared.now();
        change(&mut self.shared.scheduler(), now)?;
        self.shared.wake.notify_one();
        Ok(())
    }

    /// One target's status.
    pub fn status(&self, name: &TargetName) -> Option<TargetStatus> {
        self.shared.scheduler().status(name)
    }

    /// Every target's status, sorted by name.
    pub fn statuses(&self) -> Vec<TargetStatus> {
        self.shared.scheduler().statuses()
    }

    /// [`Scheduler::visit_latest`], under the scheduler's lock (keep `f` short).
    pub fn visit_latest(&self, f: impl FnMut(&Target, u64, Option<Duration>)) -> usize {
        self.shared.scheduler().visit_latest(f)
    }

    /// [`Scheduler::take_fresh`]: the targets with a result not handed out yet.
    pub fn take_fresh(&self, f: impl FnMut(&Target, Option<Duration>)) -> usize {
        self.shared.scheduler().take_fresh(f)
    }

    /// [`Scheduler::mark_fresh`].
    pub fn mark_fresh(&self, services: Option<&BTreeSet<String>>) {
        self.shared.scheduler().mark_fresh(services);
    }

    /// Number of targets.
    pub fn len(&self) -> usize {
        self.shared.scheduler().len()
    }

    /// Whether there are no targets.
    pub fn is_empty(&self) -> bool {
        self.shared.scheduler().is_empty()
    }

    /// Names of the targets that are down now.
    pub fn down_targets(&self) -> Vec<TargetName> {
        self.shared.scheduler().down_targets()
    }

    /// Counters.
    pub fn counters(&self) -> RunnerCounters {
        RunnerCounters {
            scheduler: self.shared.scheduler().counters(),
            pending: self.shared.pending.load(Ordering::Relaxed),
            running: self.shared.max_in_flight - self.shared.slots.available_permits(),
        }
    }

    /// The runner's clock, to read the [`Time`] fields of statuses and events.
    pub fn now(&self) -> Time {
        self.shared.now()
    }

    /// The instant a [`Time`] of this runner stands for.
    pub fn instant(&self, t: Time) -> Instant {
        self.shared.instant(t)
    }

    /// Stop checking and wait until every running check is gone.
    pub async fn shutdown(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            // The task's end drops its JoinSet, which aborts the checks.
            let _ = task.await;
        }
        if let Some(thread) = self.thread.take() {
            // The driver has ended: the thread's runtime has nothing left to wait for.
            let _ = tokio::task::spawn_blocking(move || thread.stop()).await;
        }
    }
}

impl Drop for HealthRunner {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
        // Not joined here (a drop inside a runtime must not block): the thread's
        // runtime stops and drops the checks on its own.
        if let Some(thread) = self.thread.take() {
            drop(thread.stop);
        }
    }
}

async fn drive(shared: Arc<Shared>, checker: Checker, events: UnboundedSender<HealthEvent>) {
    let mut checks: JoinSet<CheckResult> = JoinSet::new();
    let mut tickets: HashMap<tokio::task::Id, CheckTicket> = HashMap::new();
    loop {
        // Only as many checks as may run: the others wait in the scheduler, due,
        // rather than as tasks (80,000 checked servers on a busy machine queued
        // that many tasks, hundreds of MB). At the limit, the next wake-up is a
        // check that ends.
        let room = shared.max_in_flight.saturating_sub(checks.len());
        let (actions, deadline) = {
            let mut scheduler = shared.scheduler();
            let actions = scheduler.poll_at_most(shared.now(), room);
            let full = actions.len() >= room;
            (actions, scheduler.next_deadline().filter(|_| !full))
        };
        for action in actions {
            if let Action::RunCheck(request) = action {
                let checker = checker.clone();
                let slots = Arc::clone(&shared.slots);
                let handle = checks.spawn(async move {
                    // Err only if the semaphore is closed, which never happens.
                    let _slot = slots.acquire_owned().await.ok();
                    checker.check(&request.target).await
                });
                tickets.insert(handle.id(), request.ticket);
            }
        }
        shared.pending.store(checks.len(), Ordering::Relaxed);

        let sleep = async {
            match deadline {
                Some(t) => tokio::time::sleep_until(shared.instant(t)).await,
                None => pending().await,
            }
        };
        tokio::select! {
            () = sleep => {}
            () = shared.wake.notified() => {}
            Some(first) = checks.join_next_with_id(), if !checks.is_empty() => {
                let mut done = vec![first];
                while let Some(more) = checks.try_join_next_with_id() {
                    done.push(more);
                }
                shared.pending.store(checks.len(), Ordering::Relaxed);
                let now = shared.now();
                let mut scheduler = shared.scheduler();
                for joined in done {
                    let (id, result) = match joined {
                        Ok((id, result)) => (id, result),
                        Err(e) => {
                            let reason = FailReason::Io(format!("check task failed: {e}"));
                            (e.id(), CheckResult::fail(reason, Duration::ZERO))
                        }
                    };
                    let Some(ticket) = tickets.remove(&id) else { continue };
                    for action in scheduler.on_result(now, ticket, result) {
                        emit(&events, action);
                    }
                }
            }
        }
    }
}

fn emit(events: &UnboundedSender<HealthEvent>, action: Action) {
    let event = match action {
        Action::StateChanged(t) => {
            macro_rules! changed {
                ($level:ident, $message:literal) => {
                    tracing::$level!(
                        service = %t.target.service,
                        server = %t.target.server,
                        state = %t.to,
                        reason = %t.reason,
                        last = %t.last,
                        $message
                    )
                };
            }
            // A server going down is what an operator filters for
            // (`journalctl -p warning`); its recovery is routine.
            if t.to == HealthState::Down {
                changed!(warn, "server health changed: down");
            } else {
                changed!(info, "server health changed: up");
            }
            HealthEvent::StateChanged(t)
        }
        Action::Dampened(d) => {
            tracing::warn!(
                service = %d.target.service,
                server = %d.target.server,
                transitions = d.transitions_in_window,
                "server flapping: held down"
            );
            HealthEvent::Dampened(d)
        }
        Action::RunCheck(_) => return,
    };
    // A receiver that went away just means nobody listens any more.
    let _ = events.send(event);
}
