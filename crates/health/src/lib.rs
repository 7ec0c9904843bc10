//! Server health checking for lbd.
//!
//! Three layers:
//! - [`schedule`]: the sans-IO [`Scheduler`]: when to run which check (interval,
//!   deterministic jitter), and how results become Up/Down (rise, fall, flap
//!   dampening). Time comes in as input; outputs are data. No tokio.
//! - [`check`]: the async [`Checker`]: TCP connect, HTTP and HTTPS GET, DNS over
//!   UDP, and external programs, each optionally from a given source address.
//! - [`runner`]: the [`HealthRunner`], a tokio task that drives the scheduler
//!   with real time and the checker, with bounded concurrency, and reports
//!   [`HealthEvent`]s.
//!
//! [`from_config`] turns `cluster.toml` services and checks into [`Target`]s.

pub mod check;
pub mod error;
pub mod from_config;
mod jitter;
pub mod outcome;
pub mod runner;
pub mod schedule;
pub mod target;
pub mod time;

pub use check::Checker;
pub use error::HealthError;
pub use from_config::{target_from_config, targets_from_config};
pub use outcome::{CheckOutcome, CheckResult, FailReason};
pub use runner::{HealthEvent, HealthRunner, RunnerCounters, RunnerSettings};
pub use schedule::{
    Action, CheckRequest, CheckTicket, DampenedNotice, Dampening, HealthState, Scheduler,
    SchedulerCounters, SchedulerSettings, TargetStatus, Transition, TransitionReason,
};
pub use target::{CheckSpec, HttpProbe, Probe, Target, TargetDampening, TargetName};
pub use time::Time;
