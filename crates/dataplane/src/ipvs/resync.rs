//! A full resynchronisation of the peer's IPVS connection table, sent by the
//! master when the peer asks for its whole state (see [`::ipvs::resync`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ::ipvs::resync::{encode_messages, parse_conn_table, SyncConn};
use ::ipvs::{DaemonRole, IpvsClient, IpvsError};
use socket2::{Domain, Protocol, Socket, Type};

/// Where the kernel lists its IPVS connections.
const CONN_TABLE: &str = "/proc/net/ip_vs_conn";
/// The sync protocol's defaults (net/netfilter/ipvs/ip_vs_sync.c).
const SYNC_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 81);
const SYNC_PORT: u16 = 8848;
/// A message's largest size when the daemon names none: within any Ethernet MTU.
const MESSAGE_MAX: usize = 1400;

/// What a resync sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResyncReport {
    /// Connections sent.
    pub connections: usize,
    /// Datagrams sent.
    pub messages: usize,
    /// Table lines not sent: templates, IPv6, other protocols, or connections of a
    /// service that is gone.
    pub skipped: usize,
}

/// Why no resync went out. Each variant says the inner error's text itself and does
/// not return it as `source()` as well: an `anyhow` chain (`{:#}`) prints it once.
#[derive(Debug, thiserror::Error)]
pub enum ResyncError {
    #[error("IPVS: {0}")]
    Ipvs(IpvsError),
    #[error("reading {CONN_TABLE}: {0}")]
    Table(std::io::Error),
    #[error("sending to the sync group on {iface}: {error}")]
    Send {
        iface: String,
        error: std::io::Error,
    },
}

// By hand, not `#[from]`, which would make the IPVS error the source too.
impl From<IpvsError> for ResyncError {
    fn from(error: IpvsError) -> Self {
        ResyncError::Ipvs(error)
    }
}

/// Sends this node's IPVS connections to the backup sync daemons on the sync
/// interface, as its master sync daemon would: `Ok(None)` when IPVS is not in use
/// here or this node runs no master sync daemon (nothing to send, or not ours to).
pub fn resync_backup() -> Result<Option<ResyncReport>, ResyncError> {
    let mut client = match IpvsClient::connect() {
        Ok(c) => c,
        Err(IpvsError::NotAvailable) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let Some(daemon) = client
        .daemons()?
        .into_iter()
        .find(|d| d.role == DaemonRole::Master)
    else {
        return Ok(None);
    };
    // Each connection's forwarding method: its real server's, in the kernel now.
    let mut forward: BTreeMap<(u16, SocketAddr, SocketAddr), u32> = BTreeMap::new();
    for s in client.services()? {
        for d in client.destinations(&s.service)? {
            let vip = SocketAddr::new(s.service.addr, s.service.port);
            let dest = SocketAddr::new(d.destination.addr, d.destination.port);
            forward.insert(
                (s.service.protocol.number(), vip, dest),
                d.destination.forward.conn_flag(),
            );
        }
    }
    drop(client);
    let table = std::fs::read_to_string(CONN_TABLE).map_err(ResyncError::Table)?;
    let (conns, mut skipped) = parse_conn_table(&table);
    let flag_of = |c: &SyncConn| {
        forward
            .get(&(
                u16::from(c.protocol),
                SocketAddr::new(c.virtual_.0, c.virtual_.1),
                SocketAddr::new(c.dest.0, c.dest.1),
            ))
            .copied()
    };
    let sent = conns.iter().filter(|c| flag_of(c).is_some()).count();
    skipped += conns.len() - sent;
    let max_len = daemon
        .sync_maxlen
        .map_or(MESSAGE_MAX, |m| usize::from(m).min(MESSAGE_MAX));
    let sync_id = u8::try_from(daemon.sync_id).unwrap_or(0);
    let messages = encode_messages(&conns, sync_id, max_len, flag_of);

    let group = match daemon.mcast_group {
        Some(IpAddr::V4(g)) => g,
        // An IPv6 sync group: not sent (the kernel's default is IPv4).
        Some(IpAddr::V6(_)) => return Ok(None),
        None => SYNC_GROUP,
    };
    let to = SocketAddr::from((group, daemon.mcast_port.unwrap_or(SYNC_PORT)));
    let send_err = |error| ResyncError::Send {
        iface: daemon.ifname.clone(),
        error,
    };
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(send_err)?;
    socket
        .bind_device(Some(daemon.ifname.as_bytes()))
        .map_err(send_err)?;
    socket
        .set_multicast_ttl_v4(u32::from(daemon.mcast_ttl.unwrap_or(1)))
        .map_err(send_err)?;
    socket.set_multicast_loop_v4(false).map_err(send_err)?;
    for m in &messages {
        socket.send_to(m, &to.into()).map_err(send_err)?;
    }
    Ok(Some(ResyncReport {
        connections: sent,
        messages: messages.len(),
        skipped,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_prints_the_inner_text_once() {
        let kernel = || std::io::Error::other("the kernel said no");
        let errors: Vec<anyhow::Error> = vec![
            ResyncError::from(IpvsError::Receive(kernel())).into(),
            ResyncError::Table(kernel()).into(),
            ResyncError::Send {
                iface: "eth1".into(),
                error: kernel(),
            }
            .into(),
        ];
        for e in errors {
            let chain = format!("{e:#}");
            assert_eq!(chain.matches("the kernel said no").count(), 1, "{chain}");
        }
    }
}
