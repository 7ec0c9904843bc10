//! Shared helpers for the ctl integration tests: a test daemon and a raw line client.
#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ctl::{
    CtlError, EventBus, ReplyError, RequestHandler, Server, ServerLimits, ServerStats, SocketPerms,
};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Generous bound on any awaited step, so a bug fails the test instead of hanging it.
pub async fn within<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .expect("test step did not finish within 30 s")
}

/// A handler with a few methods for tests.
pub struct TestHandler;

impl RequestHandler for TestHandler {
    async fn handle(&self, method: &str, params: Value) -> Result<Value, ReplyError> {
        match method {
            "echo" => Ok(params),
            "status" => Ok(json!({"state": "BACKUP"})),
            "fail" => Err(ReplyError::failed("no peer to prepare")),
            "hang" => std::future::pending::<Result<Value, ReplyError>>().await,
            other => Err(ReplyError::method_not_found(other)),
        }
    }
}

/// A control server running in a task, with its socket in a temporary directory.
pub struct TestDaemon {
    pub path: PathBuf,
    pub bus: EventBus,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<Result<(), CtlError>>,
}

impl TestDaemon {
    /// Serves `bus` at `path`.
    pub async fn start(path: PathBuf, bus: EventBus) -> TestDaemon {
        Self::start_with(path, bus, ServerLimits::default()).await.0
    }

    /// Serves `bus` at `path` with `limits`; also returns the socket's counters.
    pub async fn start_with(
        path: PathBuf,
        bus: EventBus,
        limits: ServerLimits,
    ) -> (TestDaemon, Arc<ServerStats>) {
        let server = Server::bind(&path, SocketPerms::default())
            .await
            .unwrap()
            .with_identity("testd", "9.9.9")
            .with_limits(limits);
        let stats = server.stats();
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(server.serve(Arc::new(TestHandler), bus.clone(), rx));
        (
            TestDaemon {
                path,
                bus,
                shutdown,
                task,
            },
            stats,
        )
    }

    /// Stops serving (as a daemon does on SIGTERM) and waits until it has.
    pub async fn stop(self) {
        self.shutdown.send(true).unwrap();
        within(self.task).await.unwrap().unwrap();
    }
}

/// A fresh temporary directory and a socket path inside it.
pub fn socket_path() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ctl.sock");
    (dir, path)
}

/// A client that writes raw bytes and reads raw JSON lines.
pub struct RawConn {
    read: BufReader<OwnedReadHalf>,
    pub write: OwnedWriteHalf,
}

impl RawConn {
    pub async fn connect(path: &std::path::Path) -> RawConn {
        let (read, write) = UnixStream::connect(path).await.unwrap().into_split();
        RawConn {
            read: BufReader::new(read),
            write,
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        within(self.write.write_all(bytes)).await.unwrap();
    }

    /// The next line, or `None` once the server has closed the connection.
    pub async fn recv_or_eof(&mut self) -> Option<Value> {
        let mut line = String::new();
        match within(self.read.read_line(&mut line)).await {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(serde_json::from_str(&line).unwrap()),
        }
    }

    pub async fn recv(&mut self) -> Value {
        let mut line = String::new();
        let n = within(self.read.read_line(&mut line)).await.unwrap();
        assert!(n > 0, "connection closed by the server");
        serde_json::from_str(&line).unwrap()
    }
}
