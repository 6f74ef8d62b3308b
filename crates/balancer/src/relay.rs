//! Moving bytes between a client and its server, both ways, until both sides have finished.
//!
//! Two ways to move them: `copy` reads into a user-space buffer (one per thread; a connection
//! holds memory only for bytes its destination cannot take yet) and `splice` (Linux) moves a
//! stream of data through a pipe without copying it into user space; small exchanges
//! (greetings, commands, answers) are copied even then, and a direction turns to splicing once
//! a read fills the whole buffer. Pipes are reused across connections. When one side ends its
//! stream the other side's writing half is shut down (unless that side has ended its stream
//! too, see `Ended::finish`), and the opposite direction goes on until it ends too; the caller
//! closes both sockets when the relay returns. Every transfer records the time and adds to the
//! server's byte counters; the caller enforces idle timeouts from those times.

use std::cell::RefCell;
use std::io::{self, Read};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

use tokio::io::{Interest, Ready};
use tokio::net::TcpStream;

use crate::clock::now_ms;
use crate::config::RelayKind;

/// The buffer every copying relay direction of a thread reads into and writes out of.
///
/// 32 KiB: what one read takes from a socket and the next write hands on stays in the core's
/// nearest caches. Measured under wrk's 8 connections fetching 1 MiB through the balancer
/// (bench/balancer/wrk.sh, big8; the balancer's own CPU per MiB, three interleaved runs each):
/// 64 KiB 0.40 ms/MiB, 32 KiB 0.31, 16 KiB 0.36 (HAProxy, whose buffers are 16 KiB, 0.38), and
/// wrk and nginx spent no more per MiB with 32 KiB than with 64 KiB. Small exchanges never
/// fill it.
const BUF: usize = 32 * 1024;

/// Last activity on each side, in milliseconds on the crate's clock.
#[derive(Debug)]
pub struct Activity {
    pub client_ms: AtomicU64,
    pub server_ms: AtomicU64,
}

impl Activity {
    pub fn new() -> Activity {
        let now = now_ms();
        Activity {
            client_ms: AtomicU64::new(now),
            server_ms: AtomicU64::new(now),
        }
    }

    /// Bytes moved between the two sides: both sides showed activity.
    fn touch(&self) {
        let now = now_ms();
        self.client_ms.store(now, Ordering::Relaxed);
        self.server_ms.store(now, Ordering::Relaxed);
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

/// Relays until both directions have ended or one fails. The caller closes both streams when
/// it returns.
pub async fn relay(
    kind: RelayKind,
    client: &TcpStream,
    server: &TcpStream,
    bytes_in: &AtomicU64,
    bytes_out: &AtomicU64,
    act: &Activity,
    ack_client: bool,
) -> io::Result<()> {
    let ended = Ended::default();
    #[cfg(target_os = "linux")]
    if kind == RelayKind::Splice {
        let up = splice::one_way(client, server, bytes_in, act, &ended, ack_client);
        let down = splice::one_way(server, client, bytes_out, act, &ended, false);
        return tokio::try_join!(up, down).map(|_| ());
    }
    let _ = kind;
    let up = copy_one_way(client, server, bytes_in, act, &ended, ack_client);
    let down = copy_one_way(server, client, bytes_out, act, &ended, false);
    // A failed direction ends both (the other may be waiting on an idle peer).
    tokio::try_join!(up, down).map(|_| ())
}

/// Acknowledges what `s` has received at once, instead of when the kernel's delayed-ACK timer
/// fires (TCP_QUICKACK): a service's `quick_ack`, after each read from the client.
pub(crate) fn ack_now(s: &impl std::os::fd::AsFd) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // Only a hint: a socket that refuses it loses the shortcut, nothing else.
        let _ = socket2::SockRef::from(s).set_quickack(true);
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = s;
}

/// Whether one direction of a relay has already ended.
#[derive(Default)]
struct Ended(AtomicBool);

impl Ended {
    /// `src` ended its stream: tells `dst`. The first direction to end shuts down the writing
    /// half of its destination (the peer sees the end of the stream while the other direction
    /// goes on), unless `dst`'s peer has ended its own stream too: then the other direction has
    /// only what is already in `dst`'s receive queue left to move and ends right after it, and
    /// closing both sockets then sends the same end of stream. The last direction to end need
    /// not either, for the same reason.
    ///
    /// A short exchange (a request, its answer, both sides close) ends both streams within
    /// microseconds, usually the server's first: the end of its answer often comes in the same
    /// read as the answer, before the client has even seen it. So before shutting down, the
    /// first direction lets the runtime poll once more (`yield_now` waits until the poller has
    /// been asked for new events), and a client that closed meanwhile costs no `shutdown`. It
    /// delays the end of stream by one turn of the thread's loop at most; measured with
    /// `strace -c` under 50 short connections at once, one `shutdown` per connection before,
    /// 0.03 after, and no more `epoll_wait` calls than before.
    async fn finish(&self, dst: &TcpStream) {
        if self.0.swap(true, Ordering::Relaxed) || peer_ended(dst) {
            return;
        }
        tokio::task::yield_now().await;
        if !peer_ended(dst) {
            shutdown_write(dst);
        }
    }

    /// `src` ended its stream right after the last bytes written to `dst`, which are held back
    /// (`write_now`'s `more`): the end of stream goes with them now, in one segment, without
    /// waiting for `dst`'s peer to end first as [`Ended::finish`] does. Unless the other
    /// direction has ended too: then both sockets are closed at once, which sends the same.
    fn finish_now(&self, dst: &TcpStream) {
        if !self.0.swap(true, Ordering::Relaxed) {
            shutdown_write(dst);
        }
    }
}

/// Whether the poller has already reported that `s`'s peer ended its stream (or the
/// connection failed), without a system call: the readiness the runtime holds for `s`.
fn peer_ended(s: &TcpStream) -> bool {
    let ready = std::pin::pin!(s.ready(Interest::READABLE));
    let mut cx = Context::from_waker(Waker::noop());
    matches!(ready.poll(&mut cx), Poll::Ready(Ok(r)) if r.is_read_closed())
}

/// Whether the poller has reported, in `ready` (`s`'s readiness for reading), that `s`'s peer
/// ended its stream, and the connection is not also closed for writing: a reset, or the peer's
/// end of stream after `s`'s writing half was shut down, is left to the next read to tell
/// (the first an error, the second an end of stream that comes with nothing to move, so that
/// read is needed anyway).
fn ended_cleanly(s: &TcpStream, ready: Ready) -> bool {
    if !ready.is_read_closed() {
        return false;
    }
    let writable = std::pin::pin!(s.ready(Interest::WRITABLE));
    let mut cx = Context::from_waker(Waker::noop());
    !matches!(writable.poll(&mut cx), Poll::Ready(Ok(r)) if r.is_write_closed())
}

/// Shuts the writing half of `s` (the peer sees the end of the stream).
fn shutdown_write(s: &TcpStream) {
    let _ = socket2::SockRef::from(s).shutdown(Shutdown::Write);
}

/// Reads from `src` into `buf`. A read that does not fill `buf` took everything the socket
/// held, so the socket is marked not readable as well: the next read waits for the poller's next
/// report instead of asking the kernel once more only to hear "would block". (Data arriving
/// after the read raises a new report, which the runtime keeps.)
fn read_some(src: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    let r = src.try_io(Interest::READABLE, || {
        let n = (&*socket2::SockRef::from(src)).read(buf)?;
        got = n;
        if n > 0 && n < buf.len() {
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(n)
        }
    });
    match r {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => Ok(got),
        r => r,
    }
}

/// Writes as much of `data` as `dst` takes now; returns how much that was. With `more`, the
/// end of `dst`'s stream follows at once (Linux: the data is held back, `MSG_MORE`, and leaves
/// with the end of stream in one segment when the writing half is shut down or the socket
/// closed).
fn write_now(dst: &TcpStream, data: &[u8], more: bool) -> io::Result<usize> {
    let mut done = 0;
    while done < data.len() {
        #[cfg(target_os = "linux")]
        let r = if more {
            dst.try_io(Interest::WRITABLE, || {
                socket2::SockRef::from(dst)
                    .send_with_flags(&data[done..], libc::MSG_MORE | libc::MSG_NOSIGNAL)
            })
        } else {
            dst.try_write(&data[done..])
        };
        #[cfg(not(target_os = "linux"))]
        let r = {
            let _ = more;
            dst.try_write(&data[done..])
        };
        match r {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

async fn write_all(dst: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match dst.try_write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => dst.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

thread_local! {
    /// The buffer every copying relay direction on this thread reads into and writes out of
    /// straight away, so moving data allocates nothing and touches memory that stays in cache.
    /// Bytes the destination cannot take yet are kept by their connection until it can.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; BUF].into_boxed_slice());
}

/// One read from the source and as much of a write as the destination takes at once.
enum Step {
    /// Nothing to read after all.
    Nothing,
    /// The source ended its stream.
    End,
    /// `n` bytes were read (the whole buffer when `full`); those not written yet are in the
    /// connection's pending buffer. `last`: they were the last of the source's stream (see
    /// [`step`]).
    Moved {
        n: usize,
        full: bool,
        last: bool,
    },
    ReadFailed(io::Error),
    WriteFailed(io::Error),
}

/// One step of a direction. `ended_before`: the poller had reported, before this read, that the
/// source ended its stream (`ended_cleanly`). The kernel reports that only once the end of the
/// stream is in order in the receive queue, after every byte before it; so a read that does not
/// fill the buffer then took the last bytes, and the stream's end is known without another
/// read, which would only return 0. (A server answering and closing at once, as for every
/// `Connection: close` request, saves a system call per connection.)
fn step(src: &TcpStream, dst: &TcpStream, pending: &mut Vec<u8>, ended_before: bool) -> Step {
    SCRATCH.with_borrow_mut(|buf| {
        let n = match read_some(src, buf) {
            Ok(0) => return Step::End,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Nothing,
            Err(e) => return Step::ReadFailed(e),
        };
        let full = n == buf.len();
        let last = ended_before && !full;
        match write_now(dst, &buf[..n], last) {
            Ok(w) => {
                if w < n {
                    pending.extend_from_slice(&buf[w..n]);
                }
                Step::Moved { n, full, last }
            }
            Err(e) => Step::WriteFailed(e),
        }
    })
}

/// How a copying stretch of a relay direction ended.
#[derive(Debug, PartialEq, Eq)]
enum Copied {
    /// The source ended its stream.
    End,
    /// A read filled the whole buffer (only when asked to stop there).
    Bulk,
}

async fn copy_one_way(
    src: &TcpStream,
    dst: &TcpStream,
    counter: &AtomicU64,
    act: &Activity,
    ended: &Ended,
    ack_src: bool,
) -> io::Result<()> {
    copy(src, dst, counter, act, ended, false, ack_src)
        .await
        .map(|_| ())
}

/// Copies from `src` to `dst` until `src` ends its stream or fails, or, with `stop_at_bulk`,
/// until a read has filled the whole buffer (that data is written first). `ack_src`: every
/// read from `src` is acknowledged at once ([`ack_now`]).
async fn copy(
    src: &TcpStream,
    dst: &TcpStream,
    counter: &AtomicU64,
    act: &Activity,
    ended: &Ended,
    stop_at_bulk: bool,
    ack_src: bool,
) -> io::Result<Copied> {
    // What the destination could not take at once: empty, and holding no memory, whenever the
    // destination keeps up (an idle connection holds no buffer).
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let ready = src.ready(Interest::READABLE).await?;
        match step(src, dst, &mut pending, ended_cleanly(src, ready)) {
            Step::Nothing => {}
            Step::End => {
                ended.finish(dst).await;
                return Ok(Copied::End);
            }
            Step::Moved { n, full, last } => {
                if ack_src {
                    ack_now(src);
                }
                // The last bytes, held back for the end of stream, went out whole.
                let last_held = last && pending.is_empty();
                if !pending.is_empty() {
                    write_all(dst, &pending).await?;
                    pending.clear();
                }
                // Kept while the data comes in bulk; given back once the source ran dry.
                if !full && pending.capacity() > 0 {
                    pending = Vec::new();
                }
                counter.fetch_add(n as u64, Ordering::Relaxed);
                act.touch();
                if last_held {
                    ended.finish_now(dst);
                    return Ok(Copied::End);
                }
                if last {
                    ended.finish(dst).await;
                    return Ok(Copied::End);
                }
                if full && stop_at_bulk {
                    return Ok(Copied::Bulk);
                }
            }
            Step::ReadFailed(e) => {
                shutdown_write(dst);
                return Err(e);
            }
            Step::WriteFailed(e) => return Err(e),
        }
    }
}

#[cfg(target_os = "linux")]
mod splice {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};

    use tokio::io::Interest;
    use tokio::net::TcpStream;

    use super::{Activity, Copied, Ended, ack_now, copy, shutdown_write};

    /// The most bytes moved by one splice call (the default pipe holds 64 KiB).
    const CHUNK: usize = 64 * 1024;

    /// Empty pipes kept for the next connections (two descriptors each).
    const POOL_MAX: usize = 64;

    static POOL: Mutex<Vec<Pipe>> = Mutex::new(Vec::new());

    struct Pipe {
        read: OwnedFd,
        write: OwnedFd,
    }

    impl Pipe {
        /// A pipe from the pool, or a new one.
        fn take() -> io::Result<Pipe> {
            let pooled = POOL.lock().unwrap_or_else(|p| p.into_inner()).pop();
            match pooled {
                Some(p) => Ok(p),
                None => Pipe::new(),
            }
        }

        /// Gives an empty pipe back to the pool (a full pool closes it).
        fn give_back(self) {
            let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
            if pool.len() < POOL_MAX {
                pool.push(self);
            }
        }

        fn new() -> io::Result<Pipe> {
            let mut fds = [0 as libc::c_int; 2];
            // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
            let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
            Ok(unsafe {
                Pipe {
                    read: OwnedFd::from_raw_fd(fds[0]),
                    write: OwnedFd::from_raw_fd(fds[1]),
                }
            })
        }
    }

    fn splice(from: libc::c_int, to: libc::c_int, len: usize) -> io::Result<usize> {
        // SAFETY: both descriptors are open for the duration of the call; null offsets are
        // allowed for pipes and sockets.
        let n = unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Copies until the data comes in bulk, then splices through a pipe.
    pub async fn one_way(
        src: &TcpStream,
        dst: &TcpStream,
        counter: &AtomicU64,
        act: &Activity,
        ended: &Ended,
        ack_src: bool,
    ) -> io::Result<()> {
        if copy(src, dst, counter, act, ended, true, ack_src).await? == Copied::End {
            return Ok(());
        }
        let pipe = Pipe::take()?;
        let r = through(src, dst, counter, act, ended, &pipe, ack_src).await;
        // A pipe that may still hold data is closed, never reused.
        if r.is_ok() {
            pipe.give_back();
        }
        r
    }

    /// Splices until `src` ends its stream; the pipe is empty when this returns Ok.
    async fn through(
        src: &TcpStream,
        dst: &TcpStream,
        counter: &AtomicU64,
        act: &Activity,
        ended: &Ended,
        p: &Pipe,
        ack_src: bool,
    ) -> io::Result<()> {
        loop {
            src.readable().await?;
            let filled = src.try_io(Interest::READABLE, || {
                splice(src.as_raw_fd(), p.write.as_raw_fd(), CHUNK)
            });
            let mut in_pipe = match filled {
                Ok(0) => {
                    ended.finish(dst).await;
                    return Ok(());
                }
                Ok(n) => {
                    if ack_src {
                        ack_now(src);
                    }
                    n
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => {
                    shutdown_write(dst);
                    return Err(e);
                }
            };
            while in_pipe > 0 {
                match dst.try_io(Interest::WRITABLE, || {
                    splice(p.read.as_raw_fd(), dst.as_raw_fd(), in_pipe)
                }) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        in_pipe -= n;
                        counter.fetch_add(n as u64, Ordering::Relaxed);
                        act.touch();
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => dst.writable().await?,
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// Two connected streams: (ours, the peer's).
    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (a, b) = tokio::join!(TcpStream::connect(l.local_addr().unwrap()), l.accept());
        (a.unwrap(), b.unwrap().0)
    }

    /// Waits (bounded) until the poller has reported the end of `s`'s stream.
    async fn until_read_closed(s: &TcpStream) -> Ready {
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let r = s.ready(Interest::READABLE).await.unwrap();
                if r.is_read_closed() {
                    return r;
                }
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the end of stream reported in time")
    }

    #[tokio::test]
    async fn the_last_bytes_before_a_reported_end_end_the_direction_without_another_read() {
        // The source's peer sends more than a buffer and ends its stream at once.
        let (src, mut src_peer) = pair().await;
        let (dst, mut dst_peer) = pair().await;
        let sent: Vec<u8> = (0..BUF + 1000).map(|i| (i % 251) as u8).collect();
        src_peer.write_all(&sent).await.unwrap();
        src_peer.shutdown().await.unwrap();
        let ready = until_read_closed(&src).await;
        assert!(ended_cleanly(&src, ready));
        let mut pending = Vec::new();
        // A full read is not the last one, even with the end reported.
        match step(&src, &dst, &mut pending, true) {
            Step::Moved { n, full, last } => {
                assert_eq!((n, full, last), (BUF, true, false));
            }
            _ => panic!("the first read moves a full buffer"),
        }
        // The rest does not fill the buffer: the last bytes, known without a read of 0.
        match step(&src, &dst, &mut pending, true) {
            Step::Moved { n, full, last } => assert_eq!((n, full, last), (1000, false, true)),
            _ => panic!("the second read moves the rest"),
        }
        assert!(pending.is_empty());
        drop(dst);
        let mut got = Vec::new();
        dst_peer.read_to_end(&mut got).await.unwrap();
        assert!(got == sent, "{} bytes of {}", got.len(), sent.len());
    }

    #[tokio::test]
    async fn a_short_read_without_a_reported_end_is_not_the_last() {
        let (src, mut src_peer) = pair().await;
        let (dst, _dst_peer) = pair().await;
        src_peer.write_all(b"hello").await.unwrap();
        src.readable().await.unwrap();
        let mut pending = Vec::new();
        match step(&src, &dst, &mut pending, false) {
            Step::Moved { n, full, last } => assert_eq!((n, full, last), (5, false, false)),
            _ => panic!("five bytes moved"),
        }
        // The stream ends later: a read hears it.
        src_peer.shutdown().await.unwrap();
        let ready = until_read_closed(&src).await;
        assert!(ended_cleanly(&src, ready));
        assert!(matches!(step(&src, &dst, &mut pending, true), Step::End));
    }

    #[tokio::test]
    async fn a_reset_is_left_to_the_next_read() {
        let (src, src_peer) = pair().await;
        src_peer.set_zero_linger().unwrap();
        drop(src_peer);
        let ready = until_read_closed(&src).await;
        assert!(!ended_cleanly(&src, ready));
    }

    #[tokio::test]
    async fn an_end_after_our_own_is_left_to_the_next_read() {
        let (src, mut src_peer) = pair().await;
        shutdown_write(&src);
        let mut rest = Vec::new();
        src_peer.read_to_end(&mut rest).await.unwrap();
        src_peer.shutdown().await.unwrap();
        let ready = until_read_closed(&src).await;
        assert!(!ended_cleanly(&src, ready));
    }
}
