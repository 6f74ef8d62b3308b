//! tcp mode behind TLS (an IMAPS front): the balancer makes the TLS handshake with the client,
//! relays plain TCP to the server, and the server's PROXY v2 header carries the client's
//! address.

mod common;
mod tls_support;

use std::time::Duration;

use common::{Backend, Kind, Running};
use tls_support::{cert, connect};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

#[tokio::test]
async fn imaps_front_with_proxy_v2_to_a_plain_server() {
    let dir = tempfile::tempdir().unwrap();
    let (c, k, der) = cert(dir.path(), &["imap.example.test"]);
    let backend = Backend::start("127.0.0.1", "n1", Kind::Proxied).await;
    let text = format!(
        "[[service]]\nname = \"imaps\"\nlisten = [\"127.0.0.1:0\"]\nproxy_protocol = \"v2\"\n\
         reject = \"imap\"\n\
         tls = {{ certificates = [{{ cert = {:?}, key = {:?} }}], handshake_timeout = \"2s\" }}\n\
         [[service.server]]\nname = \"n1\"\naddress = \"{}\"\n",
        c.display().to_string(),
        k.display().to_string(),
        backend.addr
    );
    let r = Running::start(&text).await;
    let vip = r.addr("imaps");

    let (s, got) = connect("127.0.0.5", vip, Some("imap.example.test")).await;
    assert_eq!(got, der);
    let client_port = s.get_ref().0.local_addr().unwrap().port();
    let mut s = BufReader::new(s);
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(line, "* OK n1\r\n");
    s.get_mut().write_all(b"a1 NOOP\r\n").await.unwrap();
    line.clear();
    tokio::time::timeout(Duration::from_secs(5), s.read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(line, "a1 NOOP\r\n", "echoed through the relay");

    let headers: Vec<_> = backend
        .headers
        .lock()
        .unwrap()
        .iter()
        .flatten()
        .cloned()
        .collect();
    assert_eq!(headers.len(), 1, "{headers:?}");
    assert_eq!(
        headers[0].source,
        format!("127.0.0.5:{client_port}").parse().unwrap()
    );
    assert_eq!(headers[0].destination, vip);
    // The SSL TLV says the client spoke TLS to the balancer.
    let tls = headers[0].tls.as_ref().expect("an SSL TLV");
    assert!(
        tls.version.as_deref().is_some_and(|v| v.starts_with("TLS")),
        "{tls:?}"
    );

    // LOGOUT: the server closes, the client sees the end of the TLS stream.
    s.get_mut().write_all(b"a2 LOGOUT\r\n").await.unwrap();
    let mut rest = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut rest))
        .await
        .expect("the stream ends after LOGOUT")
        .unwrap();
    assert!(rest.contains("OK LOGOUT"), "{rest:?}");
    let stats = r.balancer.stats();
    let n1 = stats.service("imaps").unwrap().server("n1").unwrap();
    assert_eq!(n1.total, 1);
    assert!(
        n1.bytes_in >= 20 && n1.bytes_out >= 20,
        "{} {}",
        n1.bytes_in,
        n1.bytes_out
    );
}

#[tokio::test]
async fn a_client_that_never_finishes_its_handshake_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (c, k, _) = cert(dir.path(), &["imap.example.test"]);
    let backend = Backend::start("127.0.0.1", "n1", Kind::Proxied).await;
    let text = format!(
        "[[service]]\nname = \"imaps\"\nlisten = [\"127.0.0.1:0\"]\nproxy_protocol = \"v2\"\n\
         tls = {{ certificates = [{{ cert = {:?}, key = {:?} }}], handshake_timeout = \"1s\" }}\n\
         [[service.server]]\nname = \"n1\"\naddress = \"{}\"\n",
        c.display().to_string(),
        k.display().to_string(),
        backend.addr
    );
    let r = Running::start(&text).await;
    let mut s = common::connect_from("127.0.0.5", r.addr("imaps"))
        .await
        .unwrap();
    s.write_all(b"\x16\x03\x01").await.unwrap();
    let start = std::time::Instant::now();
    assert!(
        common::read_to_close(&mut s, Duration::from_secs(10))
            .await
            .is_some(),
        "closed within 10 s when tls.handshake_timeout is 1 s"
    );
    assert!(
        start.elapsed() >= Duration::from_millis(800),
        "{:?}",
        start.elapsed()
    );
    let sessions = backend.headers.lock().unwrap().iter().flatten().count();
    assert_eq!(
        sessions, 0,
        "no server connection for a client without a handshake"
    );
}

/// An IMAPS front with `quick_ack`: a TLS client that writes a literal and its line end in two
/// records with Nagle's algorithm on gets its answer without waiting for the delayed ACK.
#[tokio::test]
async fn quick_ack_on_a_tls_front_releases_a_held_line_end() {
    let dir = tempfile::tempdir().unwrap();
    let (c, k, _) = cert(dir.path(), &["imap.example.test"]);
    let stop = tokio_util::sync::CancellationToken::new();
    let backend = common::literal_backend(stop.clone()).await;
    let text = format!(
        "[[service]]\nname = \"imaps\"\nlisten = [\"127.0.0.1:0\"]\nquick_ack = true\n\
         tls = {{ certificates = [{{ cert = {:?}, key = {:?} }}] }}\n\
         [[service.server]]\nname = \"n1\"\naddress = \"{backend}\"\n",
        c.display().to_string(),
        k.display().to_string(),
    );
    let r = Running::start(&text).await;
    let (s, _) = connect("127.0.0.1", r.addr("imaps"), Some("imap.example.test")).await;
    assert!(!s.get_ref().0.nodelay().unwrap());
    let median = common::literal_exchanges(s).await;
    assert!(
        median < Duration::from_millis(20),
        "literal to answer took {median:?} (median of 9)"
    );
    stop.cancel();
}
