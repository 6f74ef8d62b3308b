//! PROXY headers towards the real servers: the exact v2 bytes the server receives carry the
//! client's address; health checks send a v2 LOCAL header first; v1 is a text line.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[tokio::test]
async fn v2_header_bytes_carry_the_client_address() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = l.local_addr().unwrap();
    let text = format!(
        "[[service]]\nname = \"smtp\"\nlisten = [\"127.0.0.1:0\"]\nproxy_protocol = \"v2\"\n\
         health = \"none\"\n[[service.server]]\nname = \"n1\"\naddress = \"{backend}\"\n"
    );
    let r = Running::start(&text).await;
    let vip = r.addr("smtp");
    let mut client = connect_from("127.0.0.5", vip).await.unwrap();
    let client_port = client.local_addr().unwrap().port();
    let (mut s, _) = tokio::time::timeout(Duration::from_secs(2), l.accept())
        .await
        .unwrap()
        .unwrap();
    let mut h = [0u8; 28];
    s.read_exact(&mut h).await.unwrap();
    assert_eq!(&h[..12], b"\r\n\r\n\x00\r\nQUIT\n", "signature");
    assert_eq!(h[12], 0x21, "version 2, PROXY command");
    assert_eq!(h[13], 0x11, "TCP over IPv4");
    assert_eq!(
        u16::from_be_bytes([h[14], h[15]]),
        12,
        "address block length"
    );
    assert_eq!(&h[16..20], &[127, 0, 0, 5], "client address");
    assert_eq!(&h[20..24], &[127, 0, 0, 1], "balancer address");
    assert_eq!(u16::from_be_bytes([h[24], h[25]]), client_port);
    assert_eq!(u16::from_be_bytes([h[26], h[27]]), vip.port());
    // Then the stream itself, untouched, both ways.
    s.write_all(b"220 n1\r\n").await.unwrap();
    let mut g = [0u8; 8];
    client.read_exact(&mut g).await.unwrap();
    assert_eq!(&g, b"220 n1\r\n");
    client.write_all(b"QUIT\r\n").await.unwrap();
    let mut q = [0u8; 6];
    s.read_exact(&mut q).await.unwrap();
    assert_eq!(&q, b"QUIT\r\n");
}

#[tokio::test]
async fn health_checks_send_a_local_header_first() {
    let n1 = Backend::start("127.0.0.1", "n1", Kind::Proxied).await;
    let text = format!(
        "[[service]]\nname = \"imap\"\nlisten = [\"127.0.0.1:0\"]\nproxy_protocol = \"v2\"\n\
         health = {{ check = \"imap\", interval = \"100ms\", rise = 1, fall = 1, timeout = \"300ms\" }}\n{}",
        servers(&[&n1], &[])
    );
    let r = Running::start(&text).await;
    eventually(Duration::from_secs(2), || {
        n1.headers.lock().unwrap().len() >= 2
    })
    .await
    .expect("checks arrive");
    assert!(
        n1.headers.lock().unwrap().iter().all(Option::is_none),
        "LOCAL headers"
    );
    assert_eq!(state(&r.balancer, "imap", "n1"), "up");
    // A client's connection carries its address.
    let c = Client::open_from("127.0.0.6", r.addr("imap"))
        .await
        .unwrap();
    assert_eq!(c.server, "n1");
    let hs = n1.headers.lock().unwrap().clone();
    let client = hs.iter().flatten().next().expect("a client header");
    assert_eq!(client.source.ip().to_string(), "127.0.0.6");
    assert_eq!(client.destination, r.addr("imap"));
}

#[tokio::test]
async fn v1_is_a_text_line() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = l.local_addr().unwrap();
    let text = format!(
        "[[service]]\nname = \"pop3\"\nlisten = [\"127.0.0.1:0\"]\nproxy_protocol = \"v1\"\n\
         health = \"none\"\n[[service.server]]\nname = \"n1\"\naddress = \"{backend}\"\n"
    );
    let r = Running::start(&text).await;
    let vip = r.addr("pop3");
    let client = connect_from("127.0.0.7", vip).await.unwrap();
    let port = client.local_addr().unwrap().port();
    let (mut s, _) = l.accept().await.unwrap();
    let want = format!("PROXY TCP4 127.0.0.7 127.0.0.1 {port} {}\r\n", vip.port());
    let mut got = vec![0u8; want.len()];
    s.read_exact(&mut got).await.unwrap();
    assert_eq!(String::from_utf8(got).unwrap(), want);
}
