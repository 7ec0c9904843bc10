//! vrrpd: the VRRP daemon, a thin I/O shell around the sans-IO `vrrp::Router`.
//!
//! - [`translate`]: cluster.toml (one node's view) to the state machine's config;
//! - [`daemon`]: start-up, the event loop, shutdown, reload;
//! - [`execute`]: the state machine's actions turned into syscalls;
//! - [`operate`]: the control socket's commands (status, drills, maintenance);
//! - [`overrides`], [`persist`]: maintenance and priority overrides, kept in the
//!   state file across reloads and restarts;
//! - [`tracking`]: priority deltas other daemons ask for (lbd's service quorums);
//! - [`hold`]: preemption held back while lbd lacks the peer's connection state;
//! - [`realtime`]: `[vrrpd]` real-time scheduling and locked memory;
//! - [`dual_master`]: a MASTER that drops a peer's adverts for its VRID says so;
//! - [`timers`], [`telemetry`], [`control`], [`net`] (packet I/O).

pub mod cli;
pub mod control;
pub mod daemon;
pub mod dual_master;
pub mod error;
pub mod execute;
pub mod hold;
pub mod net;
pub mod operate;
pub mod overrides;
pub mod persist;
pub mod realtime;
pub mod steal;
pub mod telemetry;
pub mod timers;
pub mod tracking;
pub mod translate;
