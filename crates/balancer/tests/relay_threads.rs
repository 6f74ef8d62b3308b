//! Clients served on relay threads (`start_relay_threads`, as `mailfleet balancer` runs), not on
//! the runtime that started the balancer: every byte both ways and the byte counters with many
//! clients at once, both relay kinds; a half-closed connection; idle timeouts; draining.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

fn relay_threads() {
    mailfleet_balancer::start_relay_threads(2).unwrap();
}

/// A server that echoes every byte, or, with `count`, reads to the end of the stream and then
/// answers how many bytes it read and closes.
async fn backend(stop: CancellationToken, count: bool) -> SocketAddr {
    serve_each(stop, move |s| async move {
        let (mut r, mut w) = s.into_split();
        if count {
            let mut all = Vec::new();
            if r.read_to_end(&mut all).await.is_ok() {
                let _ = w
                    .write_all(format!("read {}\n", all.len()).as_bytes())
                    .await;
                let _ = w.shutdown().await;
            }
        } else if tokio::io::copy(&mut r, &mut w).await.is_ok() {
            let _ = w.shutdown().await;
        }
    })
    .await
}

async fn start(relay: &str, backend: SocketAddr, timeouts: &str) -> Running {
    Running::start(&format!(
        "[[service]]\nname = \"s\"\nlisten = [\"127.0.0.1:0\"]\nrelay = \"{relay}\"\n{timeouts}\n\
         [[service.server]]\nname = \"b\"\naddress = \"{backend}\"\n"
    ))
    .await
}

fn bytes(r: &Running) -> (u64, u64) {
    let st = r.balancer.stats();
    let s = st.service("s").unwrap().server("b").unwrap();
    (s.bytes_in, s.bytes_out)
}

/// One client: lines in lockstep, a bulk stretch, the end of its stream; returns what came back.
async fn client(to: SocketAddr, seed: u8) -> (Vec<u8>, Vec<u8>) {
    let s = TcpStream::connect(to).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let mut sent = Vec::new();
    let mut back = Vec::new();
    for i in 0..20 {
        let line = format!("client {seed} line {i}\r\n").into_bytes();
        w.write_all(&line).await.unwrap();
        let mut got = vec![0u8; line.len()];
        tokio::time::timeout(Duration::from_secs(5), r.read_exact(&mut got))
            .await
            .expect("echo in time")
            .unwrap();
        sent.extend_from_slice(&line);
        back.extend_from_slice(&got);
    }
    let bulk: Vec<u8> = (0..300_000u32)
        .map(|i| (i as u8) ^ seed.wrapping_mul(31))
        .collect();
    sent.extend_from_slice(&bulk);
    let writer = tokio::spawn(async move {
        w.write_all(&bulk).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), r.read_to_end(&mut rest))
        .await
        .expect("end of stream in time")
        .unwrap();
    writer.await.unwrap();
    back.extend_from_slice(&rest);
    (sent, back)
}

async fn many_clients(relay: &str) {
    relay_threads();
    let stop = CancellationToken::new();
    let r = start(relay, backend(stop.clone(), false).await, "").await;
    let to = r.addr("s");
    let clients: Vec<_> = (0..12u8).map(|i| tokio::spawn(client(to, i))).collect();
    let mut total = 0u64;
    for c in clients {
        let (sent, back) = c.await.unwrap();
        assert!(
            sent == back,
            "{relay}: {} bytes back of {}",
            back.len(),
            sent.len()
        );
        total += sent.len() as u64;
    }
    eventually(Duration::from_secs(2), || bytes(&r) == (total, total))
        .await
        .unwrap_or_else(|| panic!("{relay}: counters {:?}, want {total}", bytes(&r)));
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_on_relay_threads_moves_every_byte_and_counts_it() {
    many_clients("copy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splice_on_relay_threads_moves_every_byte_and_counts_it() {
    many_clients("splice").await;
}

#[tokio::test]
async fn clients_are_spread_over_the_relay_threads() {
    relay_threads();
    let stop = CancellationToken::new();
    let r = start("copy", backend(stop.clone(), false).await, "").await;
    let mut open = Vec::new();
    for i in 0..8u8 {
        let mut s = TcpStream::connect(r.addr("s")).await.unwrap();
        s.write_all(&[i]).await.unwrap();
        let mut got = [0u8; 1];
        s.read_exact(&mut got).await.unwrap();
        open.push(s);
    }
    // Other tests of this file may hold clients too, never fewer.
    let clients = mailfleet_balancer::relay_thread_clients();
    assert_eq!(clients.len(), 2, "{clients:?}");
    assert!(clients.iter().all(|&n| n >= 3), "{clients:?}");
    drop(open);
    stop.cancel();
}

#[tokio::test]
async fn a_half_closed_client_still_gets_the_answer() {
    relay_threads();
    let stop = CancellationToken::new();
    let r = start("copy", backend(stop.clone(), true).await, "").await;
    let mut s = TcpStream::connect(r.addr("s")).await.unwrap();
    s.write_all(&[7u8; 70_000]).await.unwrap();
    s.shutdown().await.unwrap();
    let answer = read_to_close(&mut s, Duration::from_secs(5))
        .await
        .expect("the answer and the end of stream in time");
    assert_eq!(answer, b"read 70000\n");
    stop.cancel();
}

#[tokio::test]
async fn an_idle_client_is_closed_after_its_timeout() {
    relay_threads();
    let stop = CancellationToken::new();
    let r = start(
        "copy",
        backend(stop.clone(), false).await,
        "timeouts = { connect = \"1s\", client = \"300ms\", server = \"5s\" }",
    )
    .await;
    let mut s = TcpStream::connect(r.addr("s")).await.unwrap();
    // Activity every 100 ms keeps it open past the timeout.
    for _ in 0..6 {
        s.write_all(b"ping\n").await.unwrap();
        let mut got = [0u8; 5];
        tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut got))
            .await
            .expect("echo in time")
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let idle = Instant::now();
    let rest = read_to_close(&mut s, Duration::from_secs(5)).await;
    let waited = idle.elapsed();
    assert_eq!(rest.as_deref(), Some(&b""[..]), "closed without data");
    assert!(
        waited >= Duration::from_millis(150) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    stop.cancel();
}

#[tokio::test]
async fn shutdown_waits_for_clients_on_relay_threads() {
    relay_threads();
    let stop = CancellationToken::new();
    let r = start("copy", backend(stop.clone(), false).await, "").await;
    let mut s = TcpStream::connect(r.addr("s")).await.unwrap();
    s.write_all(b"hello\n").await.unwrap();
    let mut got = [0u8; 6];
    s.read_exact(&mut got).await.unwrap();
    r.shutdown.cancel();
    let b = r.balancer.clone();
    let mut drained = tokio::spawn(async move { b.wait().await });
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut drained)
            .await
            .is_err(),
        "wait returned with a client still connected"
    );
    // The open connection still relays.
    s.write_all(b"again\n").await.unwrap();
    s.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"again\n");
    drop(s);
    tokio::time::timeout(Duration::from_secs(5), drained)
        .await
        .expect("drained once the client left")
        .unwrap();
    stop.cancel();
}
