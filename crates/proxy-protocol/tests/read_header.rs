//! `read_header` over in-memory pipes and real loopback sockets.

use std::net::SocketAddr;
use std::time::Duration;

use mailfleet_proxy_protocol::{
    ProxyError, ProxyHeader, V2_SIGNATURE, encode_v1, encode_v2, encode_v2_local, read_header,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const T: Duration = Duration::from_secs(5);

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn client() -> ProxyHeader {
    ProxyHeader {
        source: sa("192.0.2.1:51234"),
        destination: sa("198.51.100.7:25"),
        tls: None,
    }
}

/// Writes `bytes` into one end of a duplex pipe and closes it; returns the other end.
async fn pipe_with(bytes: &[u8]) -> tokio::io::DuplexStream {
    let (mut tx, rx) = tokio::io::duplex(8192);
    tx.write_all(bytes).await.unwrap();
    drop(tx);
    rx
}

async fn rest(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> Vec<u8> {
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn v1_leaves_the_following_bytes_unread() {
    let h = client();
    let mut bytes = encode_v1(h.source, h.destination);
    bytes.extend_from_slice(b"EHLO client.example\r\n");
    let mut rx = pipe_with(&bytes).await;
    assert_eq!(read_header(&mut rx, T).await.unwrap(), Some(h));
    assert_eq!(rest(&mut rx).await, b"EHLO client.example\r\n");
}

#[tokio::test]
async fn v1_unknown_gives_none_and_leaves_the_rest() {
    let mut rx = pipe_with(b"PROXY UNKNOWN\r\nPROXY TCP4 1.2.3.4 1.2.3.4 1 2\r\n").await;
    assert_eq!(read_header(&mut rx, T).await.unwrap(), None);
    assert_eq!(rest(&mut rx).await, b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\r\n");
}

#[tokio::test]
async fn v2_with_tlvs_leaves_the_following_bytes_unread() {
    let h = ProxyHeader {
        source: sa("[2001:db8::1]:40000"),
        destination: sa("[2001:db8::2]:993"),
        tls: None,
    };
    let mut bytes = encode_v2(h.source, h.destination);
    // Append two TLVs and fix the length field.
    bytes.extend_from_slice(&[0x01, 0x00, 0x08]);
    bytes.extend_from_slice(b"imap/4r1");
    bytes.extend_from_slice(&[0x04, 0x00, 0x02, 0, 0]);
    let len = (bytes.len() - 16) as u16;
    bytes[14..16].copy_from_slice(&len.to_be_bytes());
    bytes.extend_from_slice(b"a1 CAPABILITY\r\n");
    let mut rx = pipe_with(&bytes).await;
    assert_eq!(read_header(&mut rx, T).await.unwrap(), Some(h));
    assert_eq!(rest(&mut rx).await, b"a1 CAPABILITY\r\n");
}

#[tokio::test]
async fn v2_local_gives_none_and_leaves_the_rest() {
    let mut bytes = encode_v2_local();
    bytes.extend_from_slice(b"QUIT\r\n");
    let mut rx = pipe_with(&bytes).await;
    assert_eq!(read_header(&mut rx, T).await.unwrap(), None);
    assert_eq!(rest(&mut rx).await, b"QUIT\r\n");
}

#[tokio::test]
async fn real_socket_byte_by_byte_then_payload() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let h = client();
    let sender = tokio::spawn(async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        for b in encode_v1(h.source, h.destination) {
            s.write_all(&[b]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        s.write_all(b"MAIL FROM:<a@b>\r\n").await.unwrap();
        s.shutdown().await.unwrap();
    });
    let (mut conn, _) = listener.accept().await.unwrap();
    assert_eq!(read_header(&mut conn, T).await.unwrap(), Some(h));
    assert_eq!(rest(&mut conn).await, b"MAIL FROM:<a@b>\r\n");
    sender.await.unwrap();
}

#[tokio::test]
async fn real_socket_v2_in_one_write_with_payload() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let h = client();
    let sender = tokio::spawn(async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut bytes = encode_v2(h.source, h.destination);
        bytes.extend_from_slice(b"EHLO x\r\n");
        s.write_all(&bytes).await.unwrap();
        s.shutdown().await.unwrap();
    });
    let (mut conn, _) = listener.accept().await.unwrap();
    assert_eq!(read_header(&mut conn, T).await.unwrap(), Some(h));
    assert_eq!(rest(&mut conn).await, b"EHLO x\r\n");
    sender.await.unwrap();
}

#[tokio::test]
async fn times_out_when_the_header_never_completes() {
    let (mut tx, mut rx) = tokio::io::duplex(64);
    tx.write_all(b"PROXY TCP4 1.2").await.unwrap();
    let started = std::time::Instant::now();
    let err = read_header(&mut rx, Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(matches!(err, ProxyError::Timeout(d) if d == Duration::from_millis(100)));
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert!(started.elapsed() < Duration::from_secs(3));
    drop(tx);
}

#[tokio::test]
async fn closed_before_complete() {
    let mut rx = pipe_with(&V2_SIGNATURE[..]).await;
    let err = read_header(&mut rx, T).await.unwrap_err();
    assert!(
        matches!(err, ProxyError::Closed { received: 12 }),
        "{err:?}"
    );
    let mut rx = pipe_with(b"").await;
    let err = read_header(&mut rx, T).await.unwrap_err();
    assert!(matches!(err, ProxyError::Closed { received: 0 }), "{err:?}");
}

#[tokio::test]
async fn not_proxy_is_refused_quickly() {
    let (mut tx, mut rx) = tokio::io::duplex(64);
    // The stream stays open: the error must come from the bytes, not from EOF or the timeout.
    tx.write_all(b"EHLO example.com\r\n").await.unwrap();
    let err = read_header(&mut rx, T).await.unwrap_err();
    assert!(matches!(err, ProxyError::NotProxy), "{err:?}");
    drop(tx);
}

#[tokio::test]
async fn v2_too_long_is_refused_without_reading_the_body() {
    let (mut tx, mut rx) = tokio::io::duplex(64);
    let mut bytes = V2_SIGNATURE.to_vec();
    bytes.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
    tx.write_all(&bytes).await.unwrap();
    let err = read_header(&mut rx, T).await.unwrap_err();
    assert!(
        matches!(err, ProxyError::TooLong { version: 2, .. }),
        "{err:?}"
    );
    drop(tx);
}

#[tokio::test]
async fn v1_without_crlf_is_refused_at_107_bytes() {
    let (mut tx, mut rx) = tokio::io::duplex(512);
    let mut bytes = b"PROXY UNKNOWN ".to_vec();
    bytes.resize(300, b'x');
    tx.write_all(&bytes).await.unwrap();
    let err = read_header(&mut rx, T).await.unwrap_err();
    assert!(
        matches!(
            err,
            ProxyError::TooLong {
                version: 1,
                len: 107,
                max: 107
            }
        ),
        "{err:?}"
    );
    // Exactly 107 bytes were taken from the stream.
    drop(tx);
    assert_eq!(rest(&mut rx).await.len(), 300 - 107);
}
