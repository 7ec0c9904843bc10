//! IPVS (the kernel's Linux Virtual Server) through its generic-netlink family.
//!
//! [`IpvsClient`] is blocking: one request, one answer. lbd calls it from
//! `spawn_blocking` (the calls take microseconds; a dedicated thread works as
//! well). The client acts on the network namespace of the thread that
//! connected it.
//!
//! ```no_run
//! use ipvs::{Destination, Forward, IpvsClient, Protocol, Service};
//! let mut ipvs = IpvsClient::connect()?; // IpvsError::NotAvailable without IPVS
//! let svc = Service::new(Protocol::Tcp, "198.18.0.100:80".parse().unwrap(), "rr");
//! ipvs.add_service(&svc)?;
//! ipvs.add_dest(&svc, &Destination::new("198.18.1.10:80".parse().unwrap(), Forward::Masq))?;
//! # Ok::<(), ipvs::IpvsError>(())
//! ```

pub mod attr;
mod client;
pub mod constants;
mod error;
pub mod message;
mod model;
pub mod resync;

pub use client::{decode_dest, decode_info, decode_service, decode_timeouts, IpvsClient};
pub use error::IpvsError;
pub use message::{decode_datagram, IpvsMessage, Reply, Request};
pub use model::{
    DaemonRole, Destination, DestinationEntry, Family, Forward, Info, Protocol, Service,
    ServiceEntry, ServiceFlags, Stats, SyncDaemon, Timeouts,
};
