//! Limits: max_connections, idle timeouts, and a client closed at once when every server is down.
//! The tests that measure time run on tokio's paused clock, which the balancer's clock follows:
//! their bounds are virtual time, untouched by a busy machine.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

#[tokio::test]
async fn max_connections_refuses_the_next_client_with_a_protocol_answer() {
    let a = Backend::start("127.0.0.1", "a", Kind::Echo).await;
    let text = format!(
        "[[service]]\nname = \"imap\"\nlisten = [\"127.0.0.1:0\"]\nmax_connections = 3\nreject = \"imap\"\n{}",
        servers(&[&a], &[])
    );
    let r = Running::start(&text).await;
    let addr = r.addr("imap");
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(Client::open(addr).await.unwrap());
    }
    let mut s = connect_from("127.0.0.1", addr).await.unwrap();
    let got = read_to_close(&mut s, Duration::from_secs(2))
        .await
        .expect("closed");
    assert_eq!(got, b"* BYE Service not available\r\n");
    assert_eq!(r.balancer.stats().service("imap").unwrap().rejected_full, 1);
    held.pop();
    eventually(Duration::from_secs(2), || {
        r.balancer.stats().service("imap").unwrap().active == 2
    })
    .await
    .unwrap();
    assert_eq!(which(addr).await, "a");
}

#[tokio::test(start_paused = true)]
async fn idle_connections_are_closed_after_the_timeout() {
    fine_clock();
    let a = Backend::start("127.0.0.1", "a", Kind::Echo).await;
    let text = format!(
        "[[service]]\nname = \"imap\"\nlisten = [\"127.0.0.1:0\"]\n\
         timeouts = {{ connect = \"1s\", client = \"300ms\", server = \"2s\" }}\n{}",
        servers(&[&a], &[])
    );
    let r = Running::start(&text).await;
    let mut c = Client::open(r.addr("imap")).await.unwrap();
    // Activity every 250 ms keeps it open well past the 300 ms timeout.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(c.roundtrip("ping").await.unwrap(), "ping");
    }
    let start = Instant::now();
    let got = read_to_close(c.stream.get_mut(), Duration::from_secs(2)).await;
    assert!(got.is_some(), "closed by the balancer");
    // Virtual time: the timeout after the last activity, to the millisecond.
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(320),
        "{took:?}"
    );
    eventually(Duration::from_secs(1), || {
        r.balancer.stats().service("imap").unwrap().active == 0
    })
    .await
    .unwrap();
}

#[tokio::test(start_paused = true)]
async fn with_every_server_down_a_client_is_closed_at_once() {
    fine_clock();
    // Nobody listens there: a port from test-support is never handed out again in this
    // process and lies outside the range the kernel gives to other sockets.
    let dead = std::net::SocketAddr::from(([127, 0, 0, 1], mailfleet_test_support::free_port()));
    let hang = Backend::start("127.0.0.1", "hang", Kind::Hang).await;
    let text = format!(
        "[[service]]\nname = \"smtp\"\nlisten = [\"127.0.0.1:0\"]\nreject = \"smtp\"\n\
         health = {{ check = \"smtp\", interval = \"100ms\", timeout = \"200ms\", rise = 1, fall = 1 }}\n\
         [[service.server]]\nname = \"dead\"\naddress = \"{dead}\"\n\
         [[service.server]]\nname = \"hang\"\naddress = \"{}\"\n",
        hang.addr
    );
    let r = Running::start(&text).await;
    eventually(Duration::from_secs(2), || {
        state(&r.balancer, "smtp", "dead") == "down" && state(&r.balancer, "smtp", "hang") == "down"
    })
    .await
    .unwrap();
    let start = Instant::now();
    let mut s = connect_from("127.0.0.1", r.addr("smtp")).await.unwrap();
    let got = read_to_close(&mut s, Duration::from_secs(2))
        .await
        .expect("closed");
    // Virtual time: at once, not after a connect attempt, a check or a timeout.
    assert!(
        start.elapsed() < Duration::from_millis(10),
        "{:?}",
        start.elapsed()
    );
    assert!(
        got.starts_with(b"421 "),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    assert_eq!(r.balancer.stats().service("smtp").unwrap().no_server, 1);
}

#[tokio::test]
async fn half_close_passes_through() {
    let a = Backend::start("127.0.0.1", "a", Kind::Echo).await;
    let r = Running::start(&format!(
        "[[service]]\nname = \"imap\"\nlisten = [\"127.0.0.1:0\"]\nrelay = \"splice\"\n{}",
        servers(&[&a], &[])
    ))
    .await;
    let mut c = Client::open(r.addr("imap")).await.unwrap();
    c.stream
        .get_mut()
        .write_all(b"last line\r\n")
        .await
        .unwrap();
    c.stream.get_mut().shutdown().await.unwrap();
    let got = read_to_close(c.stream.get_mut(), Duration::from_secs(2))
        .await
        .unwrap();
    // The echo of the line written before the client's end of stream still arrives.
    assert_eq!(got, b"last line\r\n");
}

#[tokio::test]
async fn a_client_reset_ends_the_server_side_too() {
    // The server never reads nor writes: only the client's reset can end the relay.
    let silent = Backend::start("127.0.0.1", "silent", Kind::Hang).await;
    // No health check: the server's only connection is the client's.
    let r = Running::start(&format!(
        "[[service]]\nname = \"imap\"\nlisten = [\"127.0.0.1:0\"]\nhealth = \"none\"\n{}",
        servers(&[&silent], &[])
    ))
    .await;
    let s = connect_from("127.0.0.1", r.addr("imap")).await.unwrap();
    eventually(Duration::from_secs(2), || silent.count() == 1)
        .await
        .unwrap();
    let active = || {
        r.balancer
            .stats()
            .service("imap")
            .unwrap()
            .server("silent")
            .unwrap()
            .active
    };
    assert_eq!(active(), 1);
    // Close with a reset (linger 0).
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
    eventually(Duration::from_secs(2), || active() == 0)
        .await
        .expect("the relay ended on the client's reset");
}
