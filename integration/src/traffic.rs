//! In-process traffic endpoints living in a host's namespace.

use std::io::{ErrorKind, Write};
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::error::LabError;

/// A TCP server that writes a fixed reply to each connection and closes it; stops on drop.
#[derive(Debug)]
pub struct ReplyServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
    thread: Option<thread::JoinHandle<()>>,
}

impl ReplyServer {
    /// Serves on an already bound listener (bind it in the namespace first).
    pub fn start(listener: TcpListener, reply: &str) -> Result<Self, LabError> {
        let addr = listener.local_addr().map_err(|error| LabError::Socket {
            what: "local address of",
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            error,
        })?;
        // Non-blocking accept so the loop sees the stop flag.
        listener
            .set_nonblocking(true)
            .map_err(|error| LabError::Socket {
                what: "configure",
                addr,
                error,
            })?;
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let reply = reply.as_bytes().to_vec();
        let (stop_flag, count) = (Arc::clone(&stop), Arc::clone(&served));
        let thread = thread::Builder::new()
            .name(format!("reply-{addr}"))
            .spawn(move || serve(&listener, &reply, &stop_flag, &count))
            .map_err(LabError::Thread)?;
        Ok(ReplyServer {
            addr,
            stop,
            served,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections it has answered.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

fn serve(listener: &TcpListener, reply: &[u8], stop: &AtomicBool, served: &AtomicU64) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((mut stream, peer)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
                let body = with_peer(reply, peer);
                // A client that went away early is its own problem, not the server's.
                if stream.write_all(&body).is_ok() {
                    served.fetch_add(1, Ordering::Relaxed);
                }
                let _ = stream.shutdown(Shutdown::Write);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                thread::sleep(Duration::from_millis(5));
            }
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// The reply with every `{peer}` replaced by the client's address as the server saw it
/// (so a test can tell whose source address arrived, e.g. a SNAT VIP).
fn with_peer(reply: &[u8], peer: SocketAddr) -> Vec<u8> {
    let text = String::from_utf8_lossy(reply);
    if text.contains(PEER_PLACEHOLDER) {
        text.replace(PEER_PLACEHOLDER, &peer.ip().to_string())
            .into_bytes()
    } else {
        reply.to_vec()
    }
}

/// Placeholder in a [`ReplyServer`] reply for the client address the server saw.
pub const PEER_PLACEHOLDER: &str = "{peer}";

impl Drop for ReplyServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
