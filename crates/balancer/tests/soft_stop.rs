//! A soft stop in-process: listeners close at once, an open tcp session goes on, and in http mode
//! the request under way is answered before its connection closes. (SIGTERM, POST /shutdown and
//! stop_timeout with the real binary: crates/mailfleet/tests/balancer_soft_stop.rs.)

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// Waits (bounded) until a new connection to `addr` is refused.
async fn until_refused(addr: std::net::SocketAddr) {
    let refused = eventually(Duration::from_secs(10), || {
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))
            .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
    })
    .await;
    assert!(refused.is_some(), "still accepting after the stop");
}

#[tokio::test]
async fn a_tcp_session_outlives_the_listener() {
    let a = Backend::start("127.0.0.1", "a", Kind::Echo).await;
    let lb = Running::start(&format!(
        "[[service]]\nname = \"imap\"\nlisten = [\"127.0.0.1:0\"]\n{}",
        servers(&[&a], &[])
    ))
    .await;
    let addr = lb.addr("imap");
    let mut c = Client::open(addr).await.unwrap();
    lb.balancer.stop();
    until_refused(addr).await;
    assert_eq!(c.roundtrip("still here").await.unwrap(), "still here");
    assert_eq!(lb.balancer.open_connections(), 1);
    let wait = tokio::spawn({
        let b = lb.balancer.clone();
        async move { b.wait().await }
    });
    drop(c);
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("the balancer waits only for open connections")
        .unwrap();
}

#[tokio::test]
async fn an_http_request_under_way_is_answered_then_the_connection_closes() {
    // A web server that answers only once the test says so.
    let web = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let web_addr = web.local_addr().unwrap();
    let (got, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let (got2, release2) = (got.clone(), release.clone());
    tokio::spawn(async move {
        let Ok((s, _)) = web.accept().await else {
            return;
        };
        let mut r = BufReader::new(s);
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
        }
        got2.notify_one();
        release2.notified().await;
        let _ = r
            .get_mut()
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone")
            .await;
        // Keep the server side open: only the balancer may close the client.
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let lb = Running::start(&format!(
        "[[service]]\nname = \"web\"\nlisten = [\"127.0.0.1:0\"]\nmode = \"http\"\nhealth = \"none\"\n\n\
         [[service.server]]\nname = \"w\"\naddress = \"{web_addr}\"\n"
    ))
    .await;
    let addr = lb.addr("web");
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), got.notified())
        .await
        .expect("the request reached the server");

    lb.balancer.stop();
    until_refused(addr).await;
    release.notify_one();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut out))
        .await
        .expect("the balancer closes the connection after the answer")
        .unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.starts_with("HTTP/1.1 200") && out.ends_with("done"),
        "{out:?}"
    );
}
