//! Relay threads: each a single-threaded runtime with its own poller, accepting clients on a copy
//! of every tcp listener and serving each client it accepted until the end, on that thread.
//!
//! This is HAProxy's shape (`nbthread`: a poller per thread, a connection stays on its thread).
//! On tokio's multi-threaded runtime one worker at a time polls for events; the tasks it wakes
//! go to its queue, and every batch also wakes an idle worker (a futex call and a context switch)
//! to steal from that queue; a connection's reads and writes thus hop between threads, and a
//! worker descheduled by a busy machine holds up the tasks in its queue. With a runtime per
//! thread, waking a connection is pushing it on the same thread's queue.
//!
//! A listener's copies all wait for the same socket: a new client wakes every thread, one
//! accepts it, the others find nothing (the less busy thread tends to be first, which spreads
//! the clients). Without relay threads (tests, `mailfleet up`) listeners accept on the runtime
//! that started the balancer.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio_util::task::TaskTracker;

struct RelayThread {
    runtime: Handle,
    /// Clients being served on this thread.
    clients: AtomicUsize,
}

static THREADS: OnceLock<Vec<RelayThread>> = OnceLock::new();

thread_local! {
    /// This relay thread's index in THREADS (None on any other thread).
    static HERE: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Starts `n` relay threads (at least one) for the balancers of this process; the listeners of
/// a balancer started afterwards accept on them. Only the first call starts threads. The threads
/// end with the process.
pub fn start_relay_threads(n: usize) -> std::io::Result<()> {
    // Two first calls at once (tests) must not both start threads.
    static STARTING: Mutex<()> = Mutex::new(());
    let _one = STARTING.lock().unwrap_or_else(|p| p.into_inner());
    if THREADS.get().is_some() {
        return Ok(());
    }
    let mut threads = Vec::with_capacity(n.max(1));
    for i in 0..n.max(1) {
        // Each runtime is made, run and dropped on its own thread, never in the caller's
        // (dropping a runtime inside another runtime's task panics).
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(format!("relay-{i}"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                HERE.set(Some(i));
                let _ = tx.send(Ok(rt.handle().clone()));
                rt.block_on(keep_next_wake_near())
            })?;
        let runtime = rx
            .recv()
            .map_err(|_| std::io::Error::other("a relay thread ended as it started"))??;
        threads.push(RelayThread {
            runtime,
            clients: AtomicUsize::new(0),
        });
    }
    let _ = THREADS.set(threads);
    Ok(())
}

/// How far ahead a relay thread's timer driver always has something to wake up for.
const WAKE_HORIZON: Duration = Duration::from_secs(1);

/// A relay thread's own timer: fires every [`WAKE_HORIZON`] and does nothing else.
///
/// Every connection sets a timer for its connect timeout (seconds) and one for its idle
/// timeouts (minutes). The timer driver remembers, when the thread goes to sleep, the earliest
/// deadline it has to wake up for; a timer set for earlier than that interrupts the poller
/// (a write to its eventfd, and a wake-up of the next wait for nothing), so that the new
/// deadline is kept. Without a timer of its own, a relay thread's earliest deadline is some
/// connection's idle timeout, and every connect timeout is earlier: half of all new connections
/// cost that extra system call and wake-up (measured with `strace -c` under 50 short
/// connections at once: 0.53 eventfd writes per connection without this timer, 0.24 with it,
/// the rest being wake-ups for clients moved to another thread and the runtime's batched
/// release of closed sockets). With this one, the earliest deadline is never more than a second
/// ahead, and no connection's timer is ever earlier; an idle thread wakes once a second.
async fn keep_next_wake_near() {
    let mut tick = tokio::time::interval(WAKE_HORIZON);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
    }
}

/// How many clients each relay thread serves now (empty when no relay threads run).
pub fn relay_thread_clients() -> Vec<usize> {
    THREADS.get().map_or_else(Vec::new, |t| {
        t.iter()
            .map(|t| t.clients.load(Ordering::Relaxed))
            .collect()
    })
}

/// The relay threads' runtimes, when started.
pub(crate) fn relay_threads() -> Option<impl ExactSizeIterator<Item = &'static Handle>> {
    THREADS.get().map(|t| t.iter().map(|t| &t.runtime))
}

/// The thread a client accepted on thread `here` goes to, given each thread's clients: `here`
/// unless another thread has at least two fewer, and a quarter fewer, then the one with the
/// fewest. Moving costs a wake-up of the other thread and its handling of the client's first
/// events away from the accept; with short connections coming and going the counts keep
/// swaying by a few, which is no reason to move.
fn pick(here: usize, clients: impl Iterator<Item = usize>) -> usize {
    let mut to = here;
    let mut fewest = usize::MAX;
    let mut at_here = 0;
    for (i, n) in clients.enumerate() {
        if i == here {
            at_here = n;
        }
        if n < fewest {
            (to, fewest) = (i, n);
        }
    }
    if fewest + (at_here / 4).max(2) <= at_here {
        to
    } else {
        here
    }
}

/// Counts a client on its relay thread while it is served.
struct Serving(&'static AtomicUsize);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves a client accepted on this thread (not registered with any poller yet) with `serve`,
/// as a task of `tracker`: on this thread, unless another relay thread serves at least two
/// clients fewer (the accepting thread is not always the least busy one; a client on the wrong
/// thread costs a thread less than its share for as long as it stays), then on that one. Either
/// way the client is registered once, with the poller of the thread that serves it. Off the
/// relay threads, on the current runtime.
pub(crate) fn serve<F, Fut>(tracker: &TaskTracker, sock: std::net::TcpStream, serve: F)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (Some(threads), Some(here)) = (THREADS.get(), HERE.get()) else {
        tracker.spawn(serve_registered(sock, serve));
        return;
    };
    let to = pick(
        here,
        threads.iter().map(|t| t.clients.load(Ordering::Relaxed)),
    );
    let thread = &threads[to];
    thread.clients.fetch_add(1, Ordering::Relaxed);
    let serving = Serving(&thread.clients);
    let task = async move {
        let _serving = serving;
        serve_registered(sock, serve).await
    };
    if to == here {
        tracker.spawn(task);
    } else {
        thread.runtime.spawn(tracker.track_future(task));
    }
}

/// Registers `sock` with the current thread's poller and serves it.
async fn serve_registered<F, Fut>(sock: std::net::TcpStream, serve: F)
where
    F: FnOnce(TcpStream) -> Fut,
    Fut: Future<Output = ()>,
{
    match TcpStream::from_std(sock) {
        Ok(s) => serve(s).await,
        Err(e) => tracing::debug!(error = %e, "a client lost as its thread took it"),
    }
}

#[cfg(test)]
mod tests {
    use super::pick;

    #[test]
    fn a_client_stays_on_its_thread_unless_another_has_two_fewer() {
        assert_eq!(pick(0, [0, 0].into_iter()), 0);
        assert_eq!(pick(1, [0, 0].into_iter()), 1);
        assert_eq!(pick(0, [1, 0].into_iter()), 0);
        assert_eq!(pick(0, [2, 0].into_iter()), 1);
        assert_eq!(pick(1, [5, 9, 3, 4].into_iter()), 2);
        assert_eq!(pick(3, [5, 9, 3, 4].into_iter()), 3);
        assert_eq!(pick(0, [7].into_iter()), 0);
        // 24 against 19: not yet; against 18, yes.
        assert_eq!(pick(0, [24, 19].into_iter()), 0);
        assert_eq!(pick(0, [24, 18].into_iter()), 1);
    }

    #[test]
    fn accepted_clients_end_up_even() {
        // Every client accepted on thread 0 (the fast one): they are spread over all four.
        let mut clients = [0usize; 4];
        for _ in 0..40 {
            let to = pick(0, clients.iter().copied());
            clients[to] += 1;
        }
        let (min, max) = (clients.iter().min().unwrap(), clients.iter().max().unwrap());
        assert!(max - min <= (max / 4).max(2), "{clients:?}");
        assert!(*min >= 8, "{clients:?}");
    }
}
