//! Moving bytes between a client and its server, both ways, until both sides have finished.
//!
//! Two ways to move them: `copy` reads into a user-space buffer (allocated only while data
//! flows, so an idle connection holds none) and `splice` (Linux) moves them through a pipe
//! without copying into user space. When one side ends its stream the other side's writing half
//! is shut down, and the opposite direction goes on until it ends too. Every transfer records
//! the time and adds to the server's byte counters; the caller enforces idle timeouts from those
//! times.

use std::io;
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::TcpStream;

use crate::clock::now_ms;
use crate::config::RelayKind;

/// The buffer of one direction of a copying relay.
const BUF: usize = 64 * 1024;

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

/// Relays until both directions have ended or one fails.
pub async fn relay(
    kind: RelayKind,
    client: &TcpStream,
    server: &TcpStream,
    bytes_in: &AtomicU64,
    bytes_out: &AtomicU64,
    act: &Activity,
) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    if kind == RelayKind::Splice {
        let up = splice::one_way(client, server, bytes_in, act);
        let down = splice::one_way(server, client, bytes_out, act);
        return tokio::try_join!(up, down).map(|_| ());
    }
    let _ = kind;
    let up = copy_one_way(client, server, bytes_in, act);
    let down = copy_one_way(server, client, bytes_out, act);
    // A failed direction ends both (the other may be waiting on an idle peer).
    tokio::try_join!(up, down).map(|_| ())
}

/// Shuts the writing half of `s` (the peer sees the end of the stream).
fn shutdown_write(s: &TcpStream) {
    let _ = socket2::SockRef::from(s).shutdown(Shutdown::Write);
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

async fn copy_one_way(
    src: &TcpStream,
    dst: &TcpStream,
    counter: &AtomicU64,
    act: &Activity,
) -> io::Result<()> {
    // Allocated when data arrives, never zeroed (reads fill spare capacity), and dropped after
    // a short read: an idle connection holds no buffer.
    let mut buf: Vec<u8> = Vec::new();
    loop {
        src.readable().await?;
        if buf.capacity() == 0 {
            buf = Vec::with_capacity(BUF);
        }
        buf.clear();
        match src.try_read_buf(&mut buf) {
            Ok(0) => {
                shutdown_write(dst);
                return Ok(());
            }
            Ok(n) => {
                write_all(dst, &buf[..n]).await?;
                counter.fetch_add(n as u64, Ordering::Relaxed);
                act.touch();
                if n < BUF {
                    buf = Vec::new();
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                shutdown_write(dst);
                return Err(e);
            }
        }
    }
}

#[cfg(target_os = "linux")]
mod splice {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::sync::atomic::{AtomicU64, Ordering};

    use tokio::io::Interest;
    use tokio::net::TcpStream;

    use super::{Activity, shutdown_write};

    /// The most bytes moved by one splice call (the default pipe holds 64 KiB).
    const CHUNK: usize = 64 * 1024;

    struct Pipe {
        read: OwnedFd,
        write: OwnedFd,
    }

    impl Pipe {
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

    pub async fn one_way(
        src: &TcpStream,
        dst: &TcpStream,
        counter: &AtomicU64,
        act: &Activity,
    ) -> io::Result<()> {
        let mut pipe: Option<Pipe> = None;
        loop {
            src.readable().await?;
            if pipe.is_none() {
                pipe = Some(Pipe::new()?);
            }
            let Some(p) = pipe.as_ref() else { continue };
            let filled = src.try_io(Interest::READABLE, || {
                splice(src.as_raw_fd(), p.write.as_raw_fd(), CHUNK)
            });
            let mut in_pipe = match filled {
                Ok(0) => {
                    shutdown_write(dst);
                    return Ok(());
                }
                Ok(n) => n,
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
