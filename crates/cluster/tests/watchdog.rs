//! The watchdog's service check against real listeners on loopback: a service that greets as
//! its protocol does passes; a wrong greeting, a close without one, silence past the timeout and
//! a port where nothing listens fail, each saying why.

use std::time::{Duration, Instant};

use mailfleet_cluster::watchdog::{Health, check_service};
use mailfleet_test_support::free_port;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// A listener on 127.0.0.1 that writes `greeting` to each client (nothing when `None`, and
/// then holds the connection open) and returns its address.
async fn greeter(greeting: Option<&'static str>) -> std::net::SocketAddr {
    let listener = TcpListener::bind(("127.0.0.1", free_port())).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut tcp, _)) = listener.accept().await {
            match greeting {
                Some(g) => {
                    let _ = tcp.write_all(g.as_bytes()).await;
                    let _ = tcp.shutdown().await;
                }
                None => held.push(tcp),
            }
        }
    });
    addr
}

#[tokio::test]
async fn services_pass_only_with_their_protocols_greeting() {
    let timeout = Duration::from_secs(5);
    let smtp = greeter(Some("220 mx.test ESMTP\r\n")).await;
    let imap = greeter(Some("* OK [CAPABILITY IMAP4rev1] ready\r\n")).await;
    let pop3 = greeter(Some("+OK ready\r\n")).await;
    let refusing = greeter(Some("554 5.7.1 go away\r\n")).await;
    let closing = greeter(Some("")).await;
    assert_eq!(check_service("smtp", smtp, timeout).await, Health::Ok);
    assert_eq!(check_service("submission", smtp, timeout).await, Health::Ok);
    assert_eq!(check_service("imap", imap, timeout).await, Health::Ok);
    assert_eq!(check_service("pop3", pop3, timeout).await, Health::Ok);
    // The right words from the wrong protocol fail.
    assert!(matches!(
        check_service("imap", pop3, timeout).await,
        Health::Failing(d) if d.contains("+OK ready")
    ));
    assert!(matches!(
        check_service("smtp", refusing, timeout).await,
        Health::Failing(d) if d.contains("554")
    ));
    assert!(matches!(
        check_service("pop3", closing, timeout).await,
        Health::Failing(d) if d.contains("without a greeting")
    ));
    // A TLS-only port is checked by its connect alone.
    assert_eq!(check_service("imaps", closing, timeout).await, Health::Ok);
}

#[tokio::test]
async fn silence_and_closed_ports_fail_within_the_timeout() {
    let silent = greeter(None).await;
    let start = Instant::now();
    let h = check_service("imap", silent, Duration::from_millis(300)).await;
    assert!(
        matches!(&h, Health::Failing(d) if d.contains("no greeting within")),
        "{h:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    // Nothing listens on a port handed out and never bound.
    let closed = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let h = check_service("smtp", closed, Duration::from_secs(5)).await;
    assert!(
        matches!(&h, Health::Failing(d) if d.starts_with("connect:")),
        "{h:?}"
    );
    assert_eq!(
        check_service("imaps", closed, Duration::from_secs(5)).await,
        h,
        "a TLS-only port where nothing listens fails too"
    );
}
