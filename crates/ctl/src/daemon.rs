//! The process shell both daemons share: a one-thread tokio runtime, SIGTERM / SIGINT
//! as the shutdown signal, and the exit status.

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;

use tokio::signal::unix::{signal, SignalKind};

/// Resolves on SIGTERM or SIGINT.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs `body` on a one-thread tokio runtime until it returns, handing it a future that
/// resolves on SIGTERM or SIGINT. One thread: the daemons' loops, their netlink tasks
/// and control servers hand work to each other on their hot paths (a takeover, 10,000
/// health checks/s), and on one thread that is a task switch, not a cross-thread
/// wake-up; blocking work has threads of its own. An error is logged and printed as
/// `name: error` and the exit status is 1.
pub fn run<E, Fut>(name: &str, body: impl FnOnce(Shutdown) -> Fut) -> ExitCode
where
    E: std::fmt::Display,
    Fut: Future<Output = Result<(), E>>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        let (mut term, mut int) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(t), Ok(i)) => (t, i),
            (Err(e), _) | (_, Err(e)) => return Err(format!("installing signal handlers: {e}")),
        };
        let shutdown: Shutdown = Box::pin(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM"),
                _ = int.recv() => tracing::info!("SIGINT"),
            }
        });
        body(shutdown).await.map_err(|e| format!("{e:#}"))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("{name}: {e}");
            ExitCode::from(1)
        }
    }
}
