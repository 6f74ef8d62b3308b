//! The relay moves every byte, in order, both ways, with both relay kinds: small exchanges,
//! bulk streams (where `splice` turns to its pipes) and a mix of the two on one connection, and
//! pipes reused from one connection to the next carry nothing over.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// A raw echo server: every byte back, then the end of stream after the client's.
async fn echo_backend(stop: CancellationToken) -> SocketAddr {
    serve_each(stop, |s| async move {
        let (mut r, mut w) = s.into_split();
        if tokio::io::copy(&mut r, &mut w).await.is_ok() {
            let _ = w.shutdown().await;
        }
    })
    .await
}

/// `len` bytes that differ from connection to connection (`seed`) and along the stream.
fn pattern(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Writes `chunks` one after the other (waiting for each echo when `lockstep`), ends the
/// stream, and returns everything read back until the server's end of stream.
async fn exchange(to: SocketAddr, chunks: Vec<Vec<u8>>, lockstep: bool) -> Vec<u8> {
    let s = TcpStream::connect(to).await.unwrap();
    let (mut r, mut w) = s.into_split();
    if lockstep {
        let mut back = Vec::new();
        for c in &chunks {
            w.write_all(c).await.unwrap();
            let mut got = vec![0u8; c.len()];
            tokio::time::timeout(Duration::from_secs(5), r.read_exact(&mut got))
                .await
                .expect("echo in time")
                .unwrap();
            back.extend_from_slice(&got);
        }
        w.shutdown().await.unwrap();
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), r.read_to_end(&mut rest))
            .await
            .expect("end of stream in time")
            .unwrap();
        back.extend_from_slice(&rest);
        return back;
    }
    let writer = tokio::spawn(async move {
        for c in &chunks {
            w.write_all(c).await.unwrap();
        }
        w.shutdown().await.unwrap();
    });
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), r.read_to_end(&mut back))
        .await
        .expect("end of stream in time")
        .unwrap();
    writer.await.unwrap();
    back
}

async fn start(relay: &str, backend: SocketAddr) -> Running {
    Running::start(&format!(
        "[[service]]\nname = \"echo\"\nlisten = [\"127.0.0.1:0\"]\nrelay = \"{relay}\"\n\n\
         [[service.server]]\nname = \"e\"\naddress = \"{backend}\"\n"
    ))
    .await
}

fn bytes(r: &Running) -> (u64, u64) {
    let st = r.balancer.stats();
    let s = st.service("echo").unwrap().server("e").unwrap();
    (s.bytes_in, s.bytes_out)
}

async fn bulk_both_ways(relay: &str) {
    let stop = CancellationToken::new();
    let backend = echo_backend(stop.clone()).await;
    let r = start(relay, backend).await;
    let data = pattern(1, 3 << 20);
    let chunks = data.chunks(100_000).map(<[u8]>::to_vec).collect();
    let back = exchange(r.addr("echo"), chunks, false).await;
    assert!(
        back == data,
        "{relay}: {} bytes back of {}",
        back.len(),
        data.len()
    );
    eventually(Duration::from_secs(2), || bytes(&r) == (3 << 20, 3 << 20))
        .await
        .unwrap_or_else(|| panic!("{relay}: counters {:?}", bytes(&r)));
    stop.cancel();
}

#[tokio::test]
async fn copy_moves_a_bulk_stream_both_ways() {
    bulk_both_ways("copy").await;
}

#[tokio::test]
async fn splice_moves_a_bulk_stream_both_ways() {
    bulk_both_ways("splice").await;
}

/// Lines, then a bulk stretch, then lines again on one connection; then, over and over, bulk
/// streams of other contents (pipes from the pool must come back empty).
async fn small_bulk_small_and_reuse(relay: &str) {
    let stop = CancellationToken::new();
    let backend = echo_backend(stop.clone()).await;
    let r = start(relay, backend).await;
    let mut chunks: Vec<Vec<u8>> = (0..5)
        .map(|i| format!("line {i}\r\n").into_bytes())
        .collect();
    chunks.push(pattern(2, 600_000));
    chunks.extend((5..10).map(|i| format!("line {i}\r\n").into_bytes()));
    let want: Vec<u8> = chunks.concat();
    let back = exchange(r.addr("echo"), chunks, true).await;
    assert!(back == want, "{relay}: mixed exchange differs");
    for seed in 10..22u32 {
        let data = pattern(seed, 300_000);
        let back = exchange(r.addr("echo"), vec![data.clone()], false).await;
        assert!(back == data, "{relay}: connection {seed} differs");
    }
    stop.cancel();
}

#[tokio::test]
async fn copy_mixes_small_and_bulk() {
    small_bulk_small_and_reuse("copy").await;
}

#[tokio::test]
async fn splice_mixes_small_and_bulk_and_reuses_pipes() {
    small_bulk_small_and_reuse("splice").await;
}

/// A server that reads a 4-byte seed, answers `pattern(seed, size)` with the size the seed
/// picks, and closes at once without waiting for the client's end of stream.
async fn answer_and_close_backend(stop: CancellationToken) -> SocketAddr {
    serve_each(stop, |mut s| async move {
        let mut seed = [0u8; 4];
        if s.read_exact(&mut seed).await.is_ok() {
            let seed = u32::from_be_bytes(seed);
            let _ = s.write_all(&pattern(seed, answer_size(seed))).await;
        }
    })
    .await
}

fn answer_size(seed: u32) -> usize {
    [100, 3_000, 70_000, 300_000][seed as usize % 4]
}

/// Short connections whose two sides end their streams at about the same time (the relay then
/// closes without a half-close when it sees both ends) and ones whose client waits for the
/// server's end of stream before it ends its own (the relay must pass the end on): every
/// answer arrives whole, followed by the end of stream, on every connection.
async fn both_ends_at_once(relay: &str) {
    let stop = CancellationToken::new();
    let backend = answer_and_close_backend(stop.clone()).await;
    let r = start(relay, backend).await;
    let to = r.addr("echo");
    let clients = (0..64u32).map(|seed| {
        tokio::spawn(async move {
            let mut s = TcpStream::connect(to).await.unwrap();
            s.write_all(&seed.to_be_bytes()).await.unwrap();
            // Half of the clients end their stream at once, the others only after the answer.
            let closes_first = seed % 8 < 4;
            if closes_first {
                s.shutdown().await.unwrap();
            }
            let mut back = Vec::new();
            tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut back))
                .await
                .unwrap_or_else(|_| panic!("connection {seed}: no end of stream in time"))
                .unwrap();
            (seed, back)
        })
    });
    for c in clients.collect::<Vec<_>>() {
        let (seed, back) = c.await.unwrap();
        assert!(
            back == pattern(seed, answer_size(seed)),
            "{relay}: connection {seed}: {} bytes of {}",
            back.len(),
            answer_size(seed)
        );
    }
    eventually(Duration::from_secs(5), || {
        r.balancer
            .stats()
            .service("echo")
            .unwrap()
            .server("e")
            .unwrap()
            .active
            == 0
    })
    .await
    .unwrap_or_else(|| panic!("{relay}: connections still open"));
    stop.cancel();
}

#[tokio::test]
async fn copy_passes_on_ends_that_come_together() {
    both_ends_at_once("copy").await;
}

#[tokio::test]
async fn splice_passes_on_ends_that_come_together() {
    both_ends_at_once("splice").await;
}

/// With `quick_ack`, a client that writes a literal and its line end apart with Nagle's
/// algorithm on (as Python's imaplib does) gets its answer in well under the kernel's delayed
/// ACK (at least 40 ms on Linux): the balancer acknowledges the literal at once, so the line end
/// is not held back. (Without `quick_ack` each exchange took 44 ms here, as through HAProxy.)
async fn quick_ack_releases_a_held_line_end(relay: &str) {
    let stop = CancellationToken::new();
    let backend = literal_backend(stop.clone()).await;
    let r = Running::start(&format!(
        "[[service]]\nname = \"echo\"\nlisten = [\"127.0.0.1:0\"]\nrelay = \"{relay}\"\n\
         quick_ack = true\n\n[[service.server]]\nname = \"e\"\naddress = \"{backend}\"\n"
    ))
    .await;
    let s = TcpStream::connect(r.addr("echo")).await.unwrap();
    assert!(
        !s.nodelay().unwrap(),
        "the client keeps Nagle's algorithm on"
    );
    let median = literal_exchanges(s).await;
    assert!(
        median < Duration::from_millis(20),
        "{relay}: literal to answer took {median:?} (median of 9)"
    );
    stop.cancel();
}

#[tokio::test]
async fn copy_quick_ack_releases_a_held_line_end() {
    quick_ack_releases_a_held_line_end("copy").await;
}

#[tokio::test]
async fn splice_quick_ack_releases_a_held_line_end() {
    quick_ack_releases_a_held_line_end("splice").await;
}
