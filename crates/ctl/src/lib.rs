//! Control protocol of the suite: newline-delimited JSON over a Unix socket per daemon.
//!
//! - [`wire`]: the messages (versioned [`Request`], [`Reply`], [`Event`], [`Gap`]).
//! - [`Server`]: binds the socket safely (0600, or 0660 for a group), answers `ping`,
//!   `version` and `subscribe` itself and hands other methods to a [`RequestHandler`].
//! - [`EventBus`]: what a daemon publishes to; sequence numbers and a bounded backlog
//!   so that subscribers resume after a reconnect, or learn explicitly what they lost.
//! - [`contract`]: the typed messages between vrrpd, lbd and vrrpctl (status, prepare,
//!   reload, events, operator commands).
//! - [`Client`], [`Subscription`], [`ResumingSubscription`]: the client side.
//! - [`daemon`] (and, with the `daemon` feature, `logging` and `systemd`): the process
//!   plumbing both daemons share.

mod client;
pub mod contract;
pub mod daemon;
mod error;
mod events;
mod forward;
mod limits;
mod line;
#[cfg(feature = "daemon")]
pub mod logging;
mod server;
#[cfg(feature = "daemon")]
pub mod systemd;
pub mod wire;

pub use client::{Client, Notice, ResumingSubscription, Subscription, DEFAULT_TIMEOUT};
pub use error::CtlError;
pub use events::{EventBus, DEFAULT_BACKLOG};
pub use forward::{Forwarded, Forwarder, ParseCommand};
#[cfg(feature = "prometheus")]
pub use limits::StatsCollector;
pub use limits::{
    ServerCounters, ServerLimits, ServerStats, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_PEER_RESERVE, DEFAULT_WRITE_STALL_TIMEOUT,
};
pub use server::{parse_request, RequestHandler, Server, SocketGroup, SocketPerms};
pub use wire::{
    methods, topics, Event, Gap, GapReason, Reply, ReplyError, Request, SubscribeParams,
    PROTOCOL_VERSION,
};
