//! Rendering the registry, one render at a time, shared by every scrape that
//! waits for it.
//!
//! A scrape is answered by the first render that starts after it arrived, so it
//! never sees values older than its request; all scrapes that arrive during one
//! render share the next. However many clients ask, the registry is gathered at
//! most back to back, and a scrape waits for at most two renders.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::sync::{oneshot, Notify};

/// How long after the last render the freed texts are given back to the system.
const TRIM_AFTER: Duration = Duration::from_secs(1);

/// The text format of the registry, or why it could not be built.
pub(crate) type Rendered = Result<Bytes, Arc<str>>;

/// Asks for renders of one registry.
#[derive(Clone)]
pub(crate) struct Renderer {
    shared: Arc<Shared>,
}

struct Shared {
    registry: Registry,
    queue: Mutex<Queue>,
    wake: Notify,
}

#[derive(Default)]
struct Queue {
    /// Renders started so far; the one under way (if any) has this number.
    started: u64,
    /// Scrapes waiting, each with the number of the render that answers it.
    waiting: Vec<(u64, oneshot::Sender<Rendered>)>,
}

impl Renderer {
    /// The renderer, and the loop that renders (to be spawned on the runtime
    /// whose blocking pool runs the renders).
    pub(crate) fn new(registry: Registry) -> (Self, impl Future<Output = ()>) {
        let shared = Arc::new(Shared {
            registry,
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
        });
        (
            Renderer {
                shared: Arc::clone(&shared),
            },
            render_loop(shared),
        )
    }

    /// The registry rendered by a render that starts after this call.
    pub(crate) async fn scrape(&self) -> Rendered {
        let (tx, rx) = oneshot::channel();
        {
            let mut queue = self.lock();
            let next = queue.started + 1;
            queue.waiting.push((next, tx));
        }
        self.shared.wake.notify_one();
        rx.await
            .unwrap_or_else(|_| Err(Arc::from("the metrics server is stopping")))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.shared
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

async fn render_loop(shared: Arc<Shared>) {
    let renderer = Renderer { shared };
    // The texts sent since the last trim are freed once their connections have
    // written them; trim again when no scrape came for a while.
    let mut trim_due = false;
    loop {
        let number = {
            let mut queue = renderer.lock();
            if queue.waiting.is_empty() {
                None
            } else {
                queue.started += 1;
                Some(queue.started)
            }
        };
        let Some(number) = number else {
            if trim_due {
                tokio::select! {
                    () = renderer.shared.wake.notified() => {}
                    () = tokio::time::sleep(TRIM_AFTER) => {
                        trim_due = false;
                        let _ = tokio::task::spawn_blocking(release_freed_memory).await;
                    }
                }
            } else {
                renderer.shared.wake.notified().await;
            }
            continue;
        };
        trim_due = true;
        let registry = renderer.shared.registry.clone();
        let rendered = tokio::task::spawn_blocking(move || render(&registry))
            .await
            .unwrap_or_else(|err| Err(Arc::from(format!("rendering failed: {err}"))));
        let answered: Vec<_> = {
            let mut queue = renderer.lock();
            let (now, later) = std::mem::take(&mut queue.waiting)
                .into_iter()
                .partition(|(wants, _)| *wants <= number);
            queue.waiting = later;
            now
        };
        for (_, tx) in answered {
            // A client that went away meanwhile needs no answer.
            let _ = tx.send(rendered.clone());
        }
    }
}

/// Gathers and encodes the registry (blocking: collectors may ask the kernel).
fn render(registry: &Registry) -> Rendered {
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    let result = encoder.encode(&registry.gather(), &mut body);
    // The gathered families are freed by now; the text goes out and is freed by
    // the connections that send it.
    release_freed_memory();
    match result {
        Ok(()) => Ok(Bytes::from(body)),
        Err(err) => Err(Arc::from(format!("encoding metrics failed: {err}"))),
    }
}

/// A scrape of a large registry builds every metric family and the whole text at
/// once (tens of MB at 10,000 backends) and frees it all after the response; glibc
/// keeps freed pages resident unless asked to give them back.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}
