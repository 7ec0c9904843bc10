//! VRRP v2 (RFC 3768) and v3 (RFC 9568) without I/O: the wire codec and the
//! state machine with sync groups. Time and packets come in as inputs;
//! actions go out as data. No sockets, no clock, no async runtime here.

pub mod action;
pub mod checksum;
pub mod config;
pub mod error;
pub mod event;
pub mod frame;
pub mod instance;
pub mod packet;
pub mod pcap;
pub mod preempt_hold;
pub mod router;
pub mod sync_group;
pub mod timer;
