//! TCP connect probes, and the connect that every TCP-based probe shares.

use std::io;
use std::net::{IpAddr, SocketAddr};

use nix::sys::socket::{setsockopt, sockopt::IpBindAddressNoPort};
use tokio::net::{TcpSocket, TcpStream};

use crate::outcome::FailReason;

/// Connect to `addr`, from `source` when given.
pub(crate) async fn connect(
    addr: SocketAddr,
    source: Option<IpAddr>,
) -> Result<TcpStream, FailReason> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(io_reason)?;
    if let Some(src) = source {
        check_family(src, addr)?;
        // Without this, bind() reserves a local port for every destination at
        // once and thousands of checks per second exhaust the ephemeral range;
        // with it the port is picked at connect() per destination. Best effort:
        // an old kernel just behaves as before.
        if let Err(e) = setsockopt(&socket, IpBindAddressNoPort, &true) {
            tracing::debug!(error = %e, "IP_BIND_ADDRESS_NO_PORT not set");
        }
        socket.bind(SocketAddr::new(src, 0)).map_err(io_reason)?;
    }
    socket.connect(addr).await.map_err(io_reason)
}

/// A TCP connect check: connect, then reset.
pub(crate) async fn probe(addr: SocketAddr, source: Option<IpAddr>) -> Result<(), FailReason> {
    let stream = connect(addr, source).await?;
    // Close with RST: the checker would otherwise hold a TIME_WAIT socket for
    // every check (60 s each on Linux), hundreds of thousands at 10k checks/s.
    if let Err(e) = stream.set_zero_linger() {
        tracing::debug!(error = %e, "SO_LINGER 0 not set");
    }
    Ok(())
}

/// Refuse a source of the other address family before the kernel does, with a clearer reason.
pub(crate) fn check_family(source: IpAddr, addr: SocketAddr) -> Result<(), FailReason> {
    if source.is_ipv4() == addr.is_ipv4() {
        Ok(())
    } else {
        Err(FailReason::Config(format!(
            "source address {source} and target {addr} are of different families"
        )))
    }
}

/// The reason for an I/O error.
pub(crate) fn io_reason(e: io::Error) -> FailReason {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => FailReason::Refused,
        io::ErrorKind::TimedOut => FailReason::Timeout,
        _ => FailReason::Io(e.to_string()),
    }
}
