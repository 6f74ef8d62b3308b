//! Interoperability with HAProxy, on 127.0.0.1 only: HAProxy's PROXY headers (v1, v2 with TLVs,
//! v2 LOCAL health checks) decode with `read_header`, and HAProxy accepts headers made by
//! `encode_v1`/`encode_v2`/`encode_v2_local`.
//!
//! Needs the `haproxy` binary (Debian package `haproxy`, listed in .ci/packages-netlib.txt).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mailfleet_proxy_protocol::{ProxyHeader, encode_v1, encode_v2, encode_v2_local, read_header};
use mailfleet_test_support::{ChildGuard, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const T: Duration = Duration::from_secs(5);

/// A HAProxy process started for one test; killed when dropped (its guard), whatever the
/// test's outcome.
struct Haproxy {
    child: ChildGuard,
    _dir: TempDir,
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn haproxy_binary() -> PathBuf {
    for dir in ["/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"] {
        let p = PathBuf::from(dir).join("haproxy");
        if p.exists() {
            return p;
        }
    }
    panic!(
        "haproxy not found: install it with `apt-get install -y haproxy` (see .ci/packages-netlib.txt)"
    );
}

/// Starts HAProxy with `body` after a tcp-mode `defaults` section and waits until `wait_for`
/// accepts connections.
async fn start(body: &str, wait_for: SocketAddr) -> Haproxy {
    let dir = std::env::temp_dir().join(format!(
        "mailfleet-proxy-protocol-haproxy-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let dir = TempDir(dir);
    let cfg = dir.0.join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n  maxconn 100\n\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n\n{body}\n"
        ),
    )
    .unwrap();
    let child = ChildGuard::spawn(
        Command::new(haproxy_binary())
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    )
    .unwrap();
    let mut h = Haproxy { child, _dir: dir };
    let started = Instant::now();
    loop {
        if let Some(status) = h.child.try_wait().unwrap() {
            panic!("haproxy exited early with {status}");
        }
        if TcpStream::connect(wait_for).await.is_ok() {
            return h;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "haproxy did not listen on {wait_for} within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Counts the bytes `read_header` takes from a stream.
struct Counting<S> {
    inner: S,
    taken: usize,
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Counting<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        self.taken += buf.filled().len() - before;
        poll
    }
}

async fn rest(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(T, stream.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

/// HAProxy in front, sending `server_options` towards our listener; a client connects through it.
/// Returns what `read_header` made of the client's connection, the client's own addresses, and
/// the bytes that followed the header.
/// Also returns the header's length in bytes.
async fn through_haproxy(
    server_options: &str,
) -> (Option<ProxyHeader>, ProxyHeader, Vec<u8>, usize) {
    let backend = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_addr = backend.local_addr().unwrap();
    let front: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _h = start(
        &format!(
            "frontend f\n  bind {front}\n  default_backend b\n\nbackend b\n  server s1 {backend_addr} {server_options}\n"
        ),
        front,
    )
    .await;
    // The readiness probe above went through to the backend too: skip connections that end
    // without payload.
    let mut client = TcpStream::connect(front).await.unwrap();
    let expected = ProxyHeader {
        source: client.local_addr().unwrap(),
        destination: front,
        tls: None,
    };
    client.write_all(b"EHLO interop\r\n").await.unwrap();
    client.shutdown().await.unwrap();
    let deadline = Instant::now() + T;
    loop {
        assert!(
            Instant::now() < deadline,
            "the client's connection never arrived"
        );
        let (conn, _) = tokio::time::timeout(T, backend.accept())
            .await
            .unwrap()
            .unwrap();
        let mut counting = Counting {
            inner: conn,
            taken: 0,
        };
        // The probe's connection may be reset by HAProxy (its client vanished at once): such a
        // connection is skipped like an empty one; the client's own must arrive whole.
        let Ok(header) = read_header(&mut counting, T).await else {
            continue;
        };
        let mut payload = Vec::new();
        let read = tokio::time::timeout(T, counting.inner.read_to_end(&mut payload))
            .await
            .expect("the backend connection did not end in time");
        if read.is_err() || payload.is_empty() {
            continue;
        }
        return (header, expected, payload, counting.taken);
    }
}

#[tokio::test]
async fn decodes_haproxy_v1() {
    let (header, expected, payload, len) = through_haproxy("send-proxy").await;
    assert_eq!(header, Some(expected.clone()));
    assert_eq!(
        len,
        format!(
            "PROXY TCP4 127.0.0.1 127.0.0.1 {} {}\r\n",
            expected.source.port(),
            expected.destination.port()
        )
        .len()
    );
    assert_eq!(payload, b"EHLO interop\r\n");
}

#[tokio::test]
async fn decodes_haproxy_v2() {
    let (header, expected, payload, len) = through_haproxy("send-proxy-v2").await;
    assert_eq!(header, Some(expected.clone()));
    assert_eq!(len, 28);
    assert_eq!(payload, b"EHLO interop\r\n");
}

#[tokio::test]
async fn decodes_haproxy_v2_with_tlvs() {
    // crc32c and unique-id add TLVs after the addresses; the decoder checks HAProxy's CRC32C.
    let (header, expected, payload, len) =
        through_haproxy("send-proxy-v2 proxy-v2-options crc32c,unique-id,authority").await;
    assert_eq!(header, Some(expected.clone()));
    assert!(len > 28 + 7, "only {len} bytes: no TLVs were sent");
    assert_eq!(payload, b"EHLO interop\r\n");
}

#[tokio::test]
async fn decodes_haproxy_v2_health_check_as_local() {
    let backend = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_addr = backend.local_addr().unwrap();
    let front: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _h = start(
        &format!(
            "frontend f\n  bind {front}\n  default_backend b\n\nbackend b\n  server s1 {backend_addr} send-proxy-v2 check inter 100ms check-send-proxy\n"
        ),
        front,
    )
    .await;
    // Connections arrive from the readiness probe and from health checks; a health check is a
    // LOCAL header (no addresses) followed by nothing.
    let deadline = Instant::now() + T;
    loop {
        assert!(Instant::now() < deadline, "no LOCAL health check arrived");
        let (mut conn, _) = tokio::time::timeout(T, backend.accept())
            .await
            .unwrap()
            .unwrap();
        // A probe's connection that HAProxy reset before its header is skipped.
        if let Ok(None) = read_header(&mut conn, T).await {
            break;
        }
    }
}

/// HAProxy accepts our header on `accept-proxy` and passes the address on to our listener as v1.
async fn haproxy_accepts(header: Vec<u8>) -> (Option<ProxyHeader>, SocketAddr, Vec<u8>) {
    let backend = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_addr = backend.local_addr().unwrap();
    let front: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    // The readiness probe sends no header; HAProxy drops it after its own timeout.
    let _h = start(
        &format!(
            "frontend f\n  bind {front} accept-proxy\n  default_backend b\n\nbackend b\n  server s1 {backend_addr} send-proxy-v2\n"
        ),
        front,
    )
    .await;
    let mut client = TcpStream::connect(front).await.unwrap();
    let client_addr = client.local_addr().unwrap();
    client.write_all(&header).await.unwrap();
    client.write_all(b"after\r\n").await.unwrap();
    client.shutdown().await.unwrap();
    let (mut conn, _) = tokio::time::timeout(T, backend.accept())
        .await
        .unwrap()
        .unwrap();
    let got = read_header(&mut conn, T).await.unwrap();
    (got, client_addr, rest(&mut conn).await)
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn haproxy_accepts_our_v1() {
    let src = sa("203.0.113.7:4242");
    let dst = sa("198.51.100.1:25");
    let (got, _, payload) = haproxy_accepts(encode_v1(src, dst)).await;
    assert_eq!(
        got,
        Some(ProxyHeader {
            source: src,
            destination: dst,
            tls: None,
        })
    );
    assert_eq!(payload, b"after\r\n");
}

#[tokio::test]
async fn haproxy_accepts_our_v2() {
    let src = sa("[2001:db8::7]:4242");
    let dst = sa("[2001:db8::1]:993");
    let (got, _, payload) = haproxy_accepts(encode_v2(src, dst)).await;
    assert_eq!(
        got,
        Some(ProxyHeader {
            source: src,
            destination: dst,
            tls: None,
        })
    );
    assert_eq!(payload, b"after\r\n");
}

#[tokio::test]
async fn haproxy_accepts_our_v2_mixed_families() {
    let src = sa("203.0.113.7:4242");
    let dst = sa("[2001:db8::1]:993");
    let (got, _, payload) = haproxy_accepts(encode_v2(src, dst)).await;
    assert_eq!(
        got,
        Some(ProxyHeader {
            source: sa("[::ffff:203.0.113.7]:4242"),
            destination: dst,
            tls: None,
        })
    );
    assert_eq!(payload, b"after\r\n");
}

#[tokio::test]
async fn haproxy_accepts_our_v2_local() {
    // LOCAL: HAProxy keeps the real connection's addresses.
    let (got, client_addr, payload) = haproxy_accepts(encode_v2_local()).await;
    assert_eq!(got.map(|h| h.source), Some(client_addr));
    assert_eq!(payload, b"after\r\n");
}
