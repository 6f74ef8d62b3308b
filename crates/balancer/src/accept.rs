//! What a listener does when `accept` fails (out of file descriptors, mostly).
//!
//! It waits before the next try, longer after each failure in a row (10 ms doubling up to 1 s;
//! back to 10 ms once an accept succeeds), and logs a burst of failures in a few lines rather
//! than one per try: the first error of a burst at once, then at most one line every 5 s — how
//! many more errors there were and whether accepts still fail — and a last line once they
//! succeed again. A listener hovering at the descriptor limit (an accept succeeding whenever a
//! connection closes, failing in between) thus logs one line per 5 s, not two per connection.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

/// The wait after the first error in a row.
pub(crate) const FIRST_DELAY: Duration = Duration::from_millis(10);
/// The longest wait between two tries.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(1);
/// At most one line this often for a burst after its first.
pub(crate) const REPORT_EVERY: Duration = Duration::from_secs(5);

/// A line to log about a listener's accept errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Report {
    /// The first error of a burst.
    First,
    /// `errors` more errors over `over` since the previous line, and accepts still fail.
    StillFailing { errors: u64, over: Duration },
    /// Accepts succeed again; the burst had `errors` errors over `over`.
    Recovered { errors: u64, over: Duration },
}

/// One listener's accept errors.
#[derive(Debug)]
pub(crate) struct AcceptBackoff {
    delay: Duration,
    /// Whether the latest accept failed.
    failing: bool,
    /// The burst being reported: when it started, its errors in all, and when its latest line
    /// was logged. None when no burst is open.
    burst: Option<Burst>,
    /// Errors since the latest line.
    unreported: u64,
}

#[derive(Debug, Clone, Copy)]
struct Burst {
    start: Instant,
    errors: u64,
    last_line: Instant,
}

impl AcceptBackoff {
    pub(crate) fn new() -> AcceptBackoff {
        AcceptBackoff {
            delay: FIRST_DELAY,
            failing: false,
            burst: None,
            unreported: 0,
        }
    }

    /// An accept failed at `now`: how long to wait before the next try, and the line to log,
    /// if any (the first error of a burst).
    pub(crate) fn failed(&mut self, now: Instant) -> (Duration, Option<Report>) {
        self.delay = if self.failing {
            (self.delay * 2).min(MAX_DELAY)
        } else {
            FIRST_DELAY
        };
        self.failing = true;
        match &mut self.burst {
            Some(b) => {
                b.errors += 1;
                self.unreported += 1;
                (self.delay, None)
            }
            None => {
                self.burst = Some(Burst {
                    start: now,
                    errors: 1,
                    last_line: now,
                });
                (self.delay, Some(Report::First))
            }
        }
    }

    /// An accept succeeded: the next failure waits the shortest time again. The burst, if one
    /// is open, is reported as over at [`AcceptBackoff::due`].
    pub(crate) fn succeeded(&mut self) {
        self.failing = false;
        self.delay = FIRST_DELAY;
    }

    /// When [`AcceptBackoff::report`] has a line to log, if it will have one.
    pub(crate) fn due(&self) -> Option<Instant> {
        self.burst.map(|b| b.last_line + REPORT_EVERY)
    }

    /// The line due at `now`, if any: errors since the previous line while accepts still fail,
    /// or the end of the burst once they succeed.
    pub(crate) fn report(&mut self, now: Instant) -> Option<Report> {
        let b = self.burst.as_mut()?;
        if now < b.last_line + REPORT_EVERY {
            return None;
        }
        if !self.failing {
            let r = Report::Recovered {
                errors: b.errors,
                over: now.duration_since(b.start),
            };
            self.burst = None;
            self.unreported = 0;
            return Some(r);
        }
        let over = now.duration_since(b.last_line);
        b.last_line = now;
        let errors = std::mem::take(&mut self.unreported);
        Some(Report::StillFailing { errors, over })
    }
}

/// Logs a [`Report`] for the listener `listen`; `error` is the latest accept error.
pub(crate) fn log(listen: &(dyn std::fmt::Display + Sync), error: &str, report: &Report) {
    match report {
        Report::First => tracing::warn!(
            listen = %listen, error = %error,
            "accept failed; retrying with a growing delay (up to 1 s), summarised every 5 s while it lasts"
        ),
        Report::StillFailing { errors, over } => tracing::warn!(
            listen = %listen, error = %error,
            "{errors} more accept errors in the last {:.0} s; still failing", over.as_secs_f64()
        ),
        Report::Recovered { errors, over } => tracing::info!(
            listen = %listen,
            "accepting again: {errors} accept errors in the last burst ({:.0} s)",
            over.as_secs_f64()
        ),
    }
}

/// A listening socket an accept loop takes connections from.
pub(crate) trait Listening {
    /// What an accepted connection is handed on as.
    type Conn;
    fn accept_one(&self) -> impl Future<Output = io::Result<(Self::Conn, SocketAddr)>> + Send;
}

impl Listening for tokio::net::TcpListener {
    type Conn = tokio::net::TcpStream;

    fn accept_one(&self) -> impl Future<Output = io::Result<(Self::Conn, SocketAddr)>> + Send {
        self.accept()
    }
}

/// A listening socket whose accepted connections are not registered with any poller yet: the
/// one that will serve a connection registers it, once. (A tokio `TcpListener` registers each
/// connection with the accepting thread's poller, and a client served on another relay thread
/// then costs a deregistration there and a registration on its own thread.)
pub(crate) struct UnregisteredAccept(AsyncFd<std::net::TcpListener>);

impl UnregisteredAccept {
    /// Waits for connections on `listener` (non-blocking) with the current runtime's poller.
    pub(crate) fn new(listener: std::net::TcpListener) -> io::Result<UnregisteredAccept> {
        // SAFETY: the listener owns its descriptor, and the AsyncFd owns the listener: the
        // descriptor stays open, and the same, for as long as it is registered.
        unsafe { AsyncFd::register_with_interest(listener, Interest::READABLE) }
            .map(UnregisteredAccept)
            .map_err(|e| e.into_parts().1)
    }
}

impl Listening for UnregisteredAccept {
    type Conn = std::net::TcpStream;

    async fn accept_one(&self) -> io::Result<(Self::Conn, SocketAddr)> {
        loop {
            let mut ready = self.0.readable().await?;
            if let Ok(accepted) = ready.try_io(|l| accept_nonblocking(l.get_ref())) {
                return accepted;
            }
        }
    }
}

/// Accepts a connection as a non-blocking socket (one system call on Linux).
fn accept_nonblocking(
    listener: &std::net::TcpListener,
) -> io::Result<(std::net::TcpStream, SocketAddr)> {
    let l = socket2::SockRef::from(listener);
    #[cfg(target_os = "linux")]
    let (sock, peer) = l.accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)?;
    #[cfg(not(target_os = "linux"))]
    let (sock, peer) = {
        let (sock, peer) = l.accept()?;
        sock.set_nonblocking(true)?;
        (sock, peer)
    };
    let peer = peer
        .as_socket()
        .ok_or_else(|| io::Error::other("a connection from outside IP"))?;
    Ok((sock.into(), peer))
}

/// A listener's accept loop: `accept` until `token` is cancelled or `serve` breaks, handing each
/// connection to `serve`, backing off and logging failures as the module describes.
pub(crate) async fn accept_loop<F>(
    listener: &tokio::net::TcpListener,
    listen: &(dyn std::fmt::Display + Sync),
    token: &tokio_util::sync::CancellationToken,
    serve: F,
) where
    F: FnMut(tokio::net::TcpStream, std::net::SocketAddr) -> std::ops::ControlFlow<()>,
{
    let backoff = Mutex::new(AcceptBackoff::new());
    accept_loop_shared(listener, listen, token, &backoff, serve).await
}

/// [`accept_loop`] on one of several copies of a listener (one per relay thread), all sharing
/// the listener's `backoff`: out of descriptors, every copy fails at once, and the burst is still
/// logged in a few lines, not in a few per copy.
pub(crate) async fn accept_loop_shared<L, F>(
    listener: &L,
    listen: &(dyn std::fmt::Display + Sync),
    token: &tokio_util::sync::CancellationToken,
    backoff: &Mutex<AcceptBackoff>,
    mut serve: F,
) where
    L: Listening,
    F: FnMut(L::Conn, std::net::SocketAddr) -> std::ops::ControlFlow<()>,
{
    // Never held across an await.
    let backoff = || backoff.lock().unwrap_or_else(|p| p.into_inner());
    // One cancellation future for the loop's life: re-creating it per client would register
    // and unregister a waiter on the token at every accept.
    let cancelled = token.cancelled();
    tokio::pin!(cancelled);
    let mut last_error = String::new();
    loop {
        let due = backoff().due();
        let report_due = async {
            match due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let accepted = tokio::select! {
            biased;
            _ = cancelled.as_mut() => return,
            _ = report_due => {
                let report = backoff().report(Instant::now());
                if let Some(r) = report {
                    log(listen, &last_error, &r);
                }
                continue;
            }
            r = listener.accept_one() => r,
        };
        match accepted {
            Ok((sock, peer)) => {
                backoff().succeeded();
                if serve(sock, peer).is_break() {
                    return;
                }
            }
            Err(e) => {
                // Out of descriptors or similar: back off instead of spinning.
                last_error = e.to_string();
                let (wait, report) = backoff().failed(Instant::now());
                if let Some(r) = report {
                    log(listen, &last_error, &r);
                }
                tokio::select! {
                    biased;
                    _ = cancelled.as_mut() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plays `pattern` (true: an accept succeeds, false: it fails) against a backoff, each try
    /// after the wait it was given (a success: 1 ms later), flushing due reports on the way;
    /// returns the reports and the waits after failures.
    fn play(
        b: &mut AcceptBackoff,
        now: &mut Instant,
        tries: impl IntoIterator<Item = bool>,
    ) -> (Vec<Report>, Vec<Duration>) {
        let mut reports = Vec::new();
        let mut waits = Vec::new();
        for ok in tries {
            let step = if ok {
                b.succeeded();
                Duration::from_millis(1)
            } else {
                let (wait, r) = b.failed(*now);
                reports.extend(r);
                waits.push(wait);
                wait
            };
            // Reports due before the next try.
            if let Some(due) = b.due()
                && due <= *now + step
            {
                reports.extend(b.report(due));
            }
            *now += step;
        }
        (reports, waits)
    }

    #[test]
    fn a_burst_backs_off_and_is_logged_in_few_lines() {
        let mut b = AcceptBackoff::new();
        let t0 = Instant::now();
        let mut now = t0;
        // About 30 s of failures: 10, 20, 40 ... 640 ms, then 1 s apart.
        let (reports, waits) = play(&mut b, &mut now, std::iter::repeat_n(false, 37));
        assert_eq!(waits[..4], [10, 20, 40, 80].map(Duration::from_millis));
        assert!(waits.iter().all(|w| *w <= MAX_DELAY));
        assert_eq!(*waits.last().unwrap(), MAX_DELAY);
        let elapsed = now.duration_since(t0);
        assert!(elapsed > Duration::from_secs(30), "{elapsed:?}");
        // The first error, then one line per 5 s: 7 lines for 37 errors in 31 s (one per 50 ms
        // was 620 lines).
        assert_eq!(reports[0], Report::First);
        assert_eq!(reports.len(), 7, "{reports:?}");
        let summed: u64 = reports
            .iter()
            .map(|r| match r {
                Report::StillFailing { errors, .. } => *errors,
                _ => 0,
            })
            .sum();
        assert!(summed <= 36);

        // Accepts work again: a last line once it is due, then nothing.
        b.succeeded();
        let due = b.due().unwrap();
        assert_eq!(b.report(due - Duration::from_millis(1)), None);
        match b.report(due) {
            Some(Report::Recovered { errors, over }) => {
                assert_eq!(errors, 37);
                assert!(over >= Duration::from_secs(30), "{over:?}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(b.due(), None);
        // The next error opens a new burst, with the shortest wait.
        assert_eq!(b.failed(due), (FIRST_DELAY, Some(Report::First)));
    }

    #[test]
    fn a_listener_at_the_limit_logs_one_line_per_period_not_per_connection() {
        // An accept succeeds whenever a connection closes and fails in between: 400 times in
        // about 12 s.
        let mut b = AcceptBackoff::new();
        let t0 = Instant::now();
        let mut now = t0;
        let pattern = (0..400).flat_map(|_| [false, false, true]);
        let (reports, waits) = play(&mut b, &mut now, pattern);
        // Every success resets the wait.
        assert!(waits.iter().all(|w| *w <= 2 * FIRST_DELAY), "{waits:?}");
        // The first error, then at most one line per 5 s.
        let secs = now.duration_since(t0).as_secs();
        assert!(secs >= 10, "{secs}");
        assert!(reports.len() as u64 <= 1 + secs / 5, "{reports:?}");
        assert_eq!(reports[0], Report::First);
    }
}
