//! Helpers for the balancer's scenario tests: small backends that announce their name, clients
//! bound to chosen loopback addresses, and balancers started from a file in a temp directory.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailfleet_balancer::Balancer;
use mailfleet_proxy_protocol::ProxyHeader;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

/// How a test backend behaves.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// Greets `* OK <name>`, answers `LOGOUT`, echoes every other line.
    Echo,
    /// Reads a PROXY header first (recorded), then behaves as `Echo`.
    Proxied,
    /// Accepts and never says anything.
    Hang,
}

pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
    /// The PROXY headers received (None for LOCAL: a health check).
    pub headers: Arc<Mutex<Vec<Option<ProxyHeader>>>>,
    stop: CancellationToken,
}

impl Backend {
    /// Starts a backend on `ip` (a port of its own).
    pub async fn start(ip: &str, name: &str, kind: Kind) -> Backend {
        let l = TcpListener::bind((ip.parse::<std::net::IpAddr>().unwrap(), 0))
            .await
            .unwrap();
        Self::serve(l, name, kind)
    }

    /// Starts a backend on an exact address.
    pub async fn start_at(addr: SocketAddr, name: &str, kind: Kind) -> Backend {
        let l = TcpListener::bind(addr).await.unwrap();
        Self::serve(l, name, kind)
    }

    fn serve(l: TcpListener, name: &str, kind: Kind) -> Backend {
        let addr = l.local_addr().unwrap();
        let stop = CancellationToken::new();
        let accepted = Arc::new(AtomicUsize::new(0));
        let headers = Arc::new(Mutex::new(Vec::new()));
        let (st, acc, hd, nm) = (
            stop.clone(),
            accepted.clone(),
            headers.clone(),
            name.to_string(),
        );
        tokio::spawn(async move {
            loop {
                let (mut s, _) = tokio::select! {
                    _ = st.cancelled() => return,
                    r = l.accept() => r.unwrap(),
                };
                let (st2, acc2, hd2, nm2) = (st.clone(), acc.clone(), hd.clone(), nm.clone());
                tokio::spawn(async move {
                    if kind == Kind::Proxied {
                        let h =
                            mailfleet_proxy_protocol::read_header(&mut s, Duration::from_secs(2))
                                .await;
                        match h {
                            Ok(h) => hd2.lock().unwrap().push(h),
                            Err(_) => return,
                        }
                    }
                    acc2.fetch_add(1, Ordering::SeqCst);
                    if kind == Kind::Hang {
                        st2.cancelled().await;
                        return;
                    }
                    tokio::select! {
                        _ = st2.cancelled() => {}
                        _ = echo(s, &nm2) => {}
                    }
                });
            }
        });
        Backend {
            name: name.to_string(),
            addr,
            accepted,
            headers,
            stop,
        }
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Client connections only (health checks say LOGOUT and are counted too; see `headers`).
    pub fn count(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn echo(s: TcpStream, name: &str) {
    let (r, mut w) = s.into_split();
    if w.write_all(format!("* OK {name}\r\n").as_bytes())
        .await
        .is_err()
    {
        return;
    }
    let mut r = BufReader::new(r);
    let mut line = String::new();
    loop {
        line.clear();
        match r.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.ends_with("LOGOUT\r\n") {
            let _ = w.write_all(b"* BYE\r\nhc1 OK LOGOUT\r\n").await;
            return;
        }
        if w.write_all(line.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// A client connected from `from` (a loopback address) to `to`.
pub async fn connect_from(from: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(from.parse().unwrap(), 0))?;
    sock.connect(to).await
}

/// A connected client that has read its server's greeting.
pub struct Client {
    pub stream: BufReader<TcpStream>,
    pub server: String,
}

impl Client {
    pub async fn open(to: SocketAddr) -> std::io::Result<Client> {
        Self::open_from("127.0.0.1", to).await
    }

    pub async fn open_from(from: &str, to: SocketAddr) -> std::io::Result<Client> {
        let s = connect_from(from, to).await?;
        let mut stream = BufReader::new(s);
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(3), stream.read_line(&mut line))
            .await
            .map_err(|_| std::io::Error::other("no greeting"))??;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "closed",
            ));
        }
        let server = line
            .trim_end()
            .strip_prefix("* OK ")
            .ok_or_else(|| std::io::Error::other(format!("odd greeting {line:?}")))?
            .to_string();
        Ok(Client { stream, server })
    }

    /// Sends a line and reads the echo.
    pub async fn roundtrip(&mut self, text: &str) -> std::io::Result<String> {
        self.stream
            .get_mut()
            .write_all(format!("{text}\r\n").as_bytes())
            .await?;
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(3), self.stream.read_line(&mut line))
            .await
            .map_err(|_| std::io::Error::other("no echo"))??;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "closed",
            ));
        }
        Ok(line.trim_end().to_string())
    }
}

/// Which server a fresh short connection lands on.
pub async fn which(to: SocketAddr) -> String {
    Client::open(to).await.unwrap().server
}

/// Reads until the peer closes; returns what arrived, or None if nothing closed within `wait`.
pub async fn read_to_close(s: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    match tokio::time::timeout(wait, s.read_to_end(&mut buf)).await {
        Ok(_) => Some(buf),
        Err(_) => None,
    }
}

/// A balancer started from `text` written to a file in its own temp directory.
pub struct Running {
    pub balancer: Balancer,
    pub path: PathBuf,
    pub shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Running {
    pub async fn start(text: &str) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("balancer.toml");
        std::fs::write(&path, text).unwrap();
        let shutdown = CancellationToken::new();
        let balancer = Balancer::start_file(path.clone(), shutdown.clone())
            .await
            .unwrap();
        Running {
            balancer,
            path,
            shutdown,
            _dir: dir,
        }
    }

    /// The first bound address of `service`.
    pub fn addr(&self, service: &str) -> SocketAddr {
        self.balancer.listen_addrs(service)[0]
    }

    /// Writes a new file (not yet reloaded).
    pub fn write(&self, text: &str) {
        std::fs::write(&self.path, text).unwrap();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// `[[service.server]]` blocks for `backends` with the given weights.
pub fn servers(backends: &[&Backend], weights: &[u32]) -> String {
    let mut s = String::new();
    for (i, b) in backends.iter().enumerate() {
        let w = weights.get(i).copied().unwrap_or(100);
        s.push_str(&format!(
            "\n[[service.server]]\nname = \"{}\"\naddress = \"{}\"\nweight = {w}\n",
            b.name, b.addr
        ));
    }
    s
}

/// Polls `cond` every 20 ms for up to `within`; returns how long it took, or None. On tokio's
/// clock: virtual time in a test that paused it.
pub async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = tokio::time::Instant::now();
    while start.elapsed() < within {
        if cond() {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// The state of a server in the balancer's statistics.
pub fn state(b: &Balancer, service: &str, server: &str) -> String {
    b.stats()
        .service(service)
        .and_then(|s| s.server(server))
        .map(|s| s.state.to_string())
        .unwrap_or_default()
}

/// For tests on tokio's paused clock (`#[tokio::test(start_paused = true)]`), where time moves
/// only while every task is idle and then jumps to the next timer: keeps a timer due every
/// millisecond for the rest of the test, so that a connection or bytes waiting in a socket are
/// handled within a millisecond of virtual time, not at the next health check or timeout.
/// Loopback delivers within the sending call, so nothing else can be pending.
pub fn fine_clock() {
    tokio::spawn(async {
        loop {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
}

/// A server that speaks like IMAP APPEND: a line announcing `{N}` gets `+ go`, the N bytes and
/// the line end that follow get `OK`.
pub async fn literal_backend(stop: CancellationToken) -> SocketAddr {
    serve_each(stop, |s| async move {
        let _ = s.set_nodelay(true);
        let mut s = tokio::io::BufStream::new(s);
        let mut line = String::new();
        loop {
            line.clear();
            if s.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let Some(n) = line
                .trim_end()
                .strip_suffix('}')
                .and_then(|l| l.rsplit_once('{'))
                .and_then(|(_, n)| n.parse::<usize>().ok())
            else {
                return;
            };
            let _ = s.write_all(b"+ go\r\n").await;
            let _ = s.flush().await;
            let mut body = vec![0u8; n + 2];
            if s.read_exact(&mut body).await.is_err() {
                return;
            }
            let _ = s.write_all(b"OK\r\n").await;
            let _ = s.flush().await;
        }
    })
    .await
}

/// A raw test server on a free port of 127.0.0.1: each connection is handed to `handle` in a
/// task of its own, until `stop` is cancelled.
pub async fn serve_each<F, Fut>(stop: CancellationToken, handle: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = tokio::select! {
                _ = stop.cancelled() => return,
                r = l.accept() => r.unwrap(),
            };
            tokio::spawn(handle(s));
        }
    });
    addr
}

/// The next line from `s`, within 5 s (`what` names it in the failure).
async fn next_line<S>(s: &mut S, what: &str) -> String
where
    S: tokio::io::AsyncBufRead + Unpin,
{
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_line(&mut line))
        .await
        .unwrap_or_else(|_| panic!("{what} in time"))
        .unwrap();
    line
}

/// Nine APPEND-like exchanges with a [`literal_backend`] over `s`, each literal (7,000 bytes)
/// and its line end written apart: the median time from the literal to the answer, so one
/// stall on a busy machine does not decide.
pub async fn literal_exchanges<S>(s: S) -> Duration
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut s = tokio::io::BufStream::new(s);
    let literal = vec![b'x'; 7000];
    let mut secs = Vec::new();
    for _ in 0..9 {
        s.write_all(format!("a APPEND INBOX {{{}}}\r\n", literal.len()).as_bytes())
            .await
            .unwrap();
        s.flush().await.unwrap();
        assert_eq!(next_line(&mut s, "continuation").await, "+ go\r\n");
        let t = std::time::Instant::now();
        s.write_all(&literal).await.unwrap();
        s.flush().await.unwrap();
        s.write_all(b"\r\n").await.unwrap();
        s.flush().await.unwrap();
        assert_eq!(next_line(&mut s, "answer").await, "OK\r\n");
        secs.push(t.elapsed());
    }
    secs.sort();
    secs[secs.len() / 2]
}
