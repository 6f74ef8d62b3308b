//! Load generator, test backend and balancer runner for `bench/balancer/run.sh`.
//!
//! ```text
//! loadgen backend ADDR                 serve the bench protocol on ADDR
//! loadgen balancer FILE                run `mailfleet balancer` from FILE (2 worker threads)
//! loadgen bench --direct ADDR NAME=ADDR...
//!                                      measure each target, print the table and the ratios
//! ```
//!
//! The bench protocol, one command byte from the client:
//! `p` → the server answers `P` and the client closes (a short connection);
//! `d` → the server sends 1 MiB and closes (a transfer);
//! `e` → the server echoes every byte until the client closes (request/response latency).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MIB: usize = 1 << 20;
const PHASE: Duration = Duration::from_secs(3);
/// Rounds of every measurement on every target, interleaved, each round in a rotated order
/// (`ROUNDS` in the environment overrides); medians are reported, so a burst of load from
/// elsewhere on the machine hits all targets alike.
const DEFAULT_ROUNDS: usize = 3;
const CONN_CLIENTS: usize = 32;
const XFER_CLIENTS: usize = 8;
const LAT_CONNS: usize = 32;
const LAT_RATE: u64 = 4000; // requests per second, all connections together
const LAT_SIZE: usize = 64;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let threads = std::env::var("THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("runtime");
    let code = rt.block_on(async move {
        match args.first().map(String::as_str) {
            Some("backend") if args.len() == 2 => backend(&args[1]).await,
            Some("balancer") if args.len() == 2 => balancer(&args[1]).await,
            Some("bench") => bench(&args[1..]).await,
            _ => {
                eprintln!(
                    "usage: loadgen backend ADDR | balancer FILE | bench --direct ADDR NAME=ADDR..."
                );
                2
            }
        }
    });
    std::process::exit(code);
}

async fn backend(addr: &str) -> i32 {
    let l = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("backend {addr}: {e}");
            return 1;
        }
    };
    let payload: Arc<Vec<u8>> = Arc::new(vec![b'x'; MIB]);
    loop {
        let Ok((mut s, _)) = l.accept().await else {
            continue;
        };
        let payload = payload.clone();
        tokio::spawn(async move {
            let _ = s.set_nodelay(true);
            let mut cmd = [0u8; 1];
            if s.read_exact(&mut cmd).await.is_err() {
                return;
            }
            match cmd[0] {
                b'p' => {
                    let _ = s.write_all(b"P").await;
                    let mut sink = [0u8; 16];
                    let _ = s.read(&mut sink).await;
                }
                b'd' => {
                    let _ = s.write_all(&payload).await;
                    let _ = s.shutdown().await;
                    let mut sink = [0u8; 16];
                    let _ = s.read(&mut sink).await;
                }
                b'e' => {
                    let mut buf = vec![0u8; 4096];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if s.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
        });
    }
}

async fn balancer(file: &str) -> i32 {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let s2 = shutdown.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("signal");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        s2.cancel();
    });
    match mailfleet_balancer::run_from_file(file.into(), shutdown).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("balancer: {e}");
            1
        }
    }
}

struct Figures {
    conns_per_s: f64,
    mib_per_s: f64,
    /// Added latency: through the target minus direct to the backend.
    p50_us: f64,
    p99_us: f64,
    p50_abs: f64,
    p99_abs: f64,
}

async fn bench(args: &[String]) -> i32 {
    let mut direct: Option<SocketAddr> = None;
    let mut targets: Vec<(String, SocketAddr)> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        if args[i] == "--direct" && i + 1 < args.len() {
            direct = args[i + 1].parse().ok();
            i += 2;
            continue;
        }
        match args[i].split_once('=') {
            Some((n, a)) => match a.parse() {
                Ok(a) => targets.push((n.to_string(), a)),
                Err(_) => {
                    eprintln!("bad target {}", args[i]);
                    return 2;
                }
            },
            None => {
                eprintln!("bad argument {}", args[i]);
                return 2;
            }
        }
        i += 1;
    }
    let Some(direct) = direct else {
        eprintln!("--direct ADDR is needed (the backend itself, for the latency baseline)");
        return 2;
    };
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&r| r > 0)
        .unwrap_or(DEFAULT_ROUNDS);
    println!(
        "{rounds} interleaved rounds of {}s phases, medians; conn/s: {CONN_CLIENTS} clients, short connections; throughput: {XFER_CLIENTS} clients, 1 MiB each; latency: {LAT_CONNS} connections, {LAT_RATE} req/s, {LAT_SIZE} B echo",
        PHASE.as_secs()
    );
    let mut base = Vec::new();
    let mut raw: Vec<Vec<[f64; 4]>> = vec![Vec::new(); targets.len()];
    for round in 0..rounds {
        base.push(latency(direct).await);
        // Each round starts with the next target, so no target always runs right after the
        // same other one (closing connections and TIME_WAIT sockets linger into the next phase).
        for k in 0..targets.len() {
            let t = (round + k) % targets.len();
            let addr = &targets[t].1;
            let c = conn_rate(*addr).await;
            let x = throughput(*addr).await;
            let (p50, p99) = latency(*addr).await;
            raw[t].push([c, x, p50, p99]);
        }
        eprintln!("round {} of {rounds} done", round + 1);
    }
    let b50 = median(base.iter().map(|b| b.0).collect());
    let b99 = median(base.iter().map(|b| b.1).collect());
    println!("direct to the backend: latency p50 {b50:.0} µs, p99 {b99:.0} µs");
    let mut all = Vec::new();
    for (t, (name, _)) in targets.iter().enumerate() {
        let col = |k: usize| median(raw[t].iter().map(|r| r[k]).collect());
        let (p50, p99) = (col(2), col(3));
        let f = Figures {
            conns_per_s: col(0),
            mib_per_s: col(1),
            p50_us: p50 - b50,
            p99_us: p99 - b99,
            p50_abs: p50,
            p99_abs: p99,
        };
        println!(
            "{name:>18}: {:>8.0} conn/s  {:>7.1} MiB/s  latency p50 {p50:>6.0} µs (added {:>5.0})  p99 {p99:>6.0} µs (added {:>5.0})",
            f.conns_per_s, f.mib_per_s, f.p50_us, f.p99_us
        );
        all.push((name.clone(), f));
    }
    if let Some((_, base)) = all.iter().find(|(n, _)| n.starts_with("haproxy")) {
        println!(
            "ratios against haproxy (conn/s, throughput: higher is better; added latency: lower is better)"
        );
        for (name, f) in &all {
            if name.starts_with("haproxy") {
                continue;
            }
            let added = |a: f64, b: f64| {
                if a > 0.0 && b > 0.0 {
                    format!("{:.2}x", a / b)
                } else {
                    "n/a (within noise)".to_string()
                }
            };
            println!(
                "{name:>18}: conn/s {:.2}x  throughput {:.2}x  latency p50 {:.2}x  p99 {:.2}x  added p50 {}  added p99 {}",
                f.conns_per_s / base.conns_per_s,
                f.mib_per_s / base.mib_per_s,
                f.p50_abs / base.p50_abs,
                f.p99_abs / base.p99_abs,
                added(f.p50_us, base.p50_us),
                added(f.p99_us, base.p99_us)
            );
        }
    }
    0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Short connections per second, `CONN_CLIENTS` at a time.
async fn conn_rate(addr: SocketAddr) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..CONN_CLIENTS {
        let (done, stop) = (done.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut s) = TcpStream::connect(addr).await else {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                };
                let _ = s.set_nodelay(true);
                let mut b = [0u8; 1];
                if s.write_all(b"p").await.is_ok() && s.read_exact(&mut b).await.is_ok() {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = (Instant::now(), done.load(Ordering::Relaxed));
    tokio::time::sleep(PHASE).await;
    let n = done.load(Ordering::Relaxed) - start.1;
    let secs = start.0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    // Let closing sockets settle before the next phase.
    tokio::time::sleep(Duration::from_millis(500)).await;
    n as f64 / secs
}

/// MiB per second of 1 MiB transfers, `XFER_CLIENTS` at a time.
async fn throughput(addr: SocketAddr) -> f64 {
    let bytes = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..XFER_CLIENTS {
        let (bytes, stop) = (bytes.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut s) = TcpStream::connect(addr).await else {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                };
                if s.write_all(b"d").await.is_err() {
                    continue;
                }
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            bytes.fetch_add(n as u64, Ordering::Relaxed);
                        }
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = (Instant::now(), bytes.load(Ordering::Relaxed));
    tokio::time::sleep(PHASE).await;
    let n = bytes.load(Ordering::Relaxed) - start.1;
    let secs = start.0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    n as f64 / secs / MIB as f64
}

/// p50 and p99 of request/response time (µs) at a fixed rate (timer ticks have millisecond
/// resolution, so each time is taken from the moment the request is written).
async fn latency(addr: SocketAddr) -> (f64, f64) {
    let per_conn = Duration::from_nanos(1_000_000_000 * LAT_CONNS as u64 / LAT_RATE);
    let mut tasks = Vec::new();
    for k in 0..LAT_CONNS {
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            let Ok(mut s) = TcpStream::connect(addr).await else {
                return out;
            };
            let _ = s.set_nodelay(true);
            if s.write_all(b"e").await.is_err() {
                return out;
            }
            let msg = [b'm'; LAT_SIZE];
            let mut back = [0u8; LAT_SIZE];
            // Spread the connections' send times evenly over one period.
            let first = tokio::time::Instant::now() + per_conn * k as u32 / LAT_CONNS as u32;
            let mut tick = tokio::time::interval_at(first, per_conn);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let warm = Instant::now() + Duration::from_millis(500);
            let end = Instant::now() + PHASE + Duration::from_millis(500);
            while Instant::now() < end {
                tick.tick().await;
                let sent = Instant::now();
                if s.write_all(&msg).await.is_err() || s.read_exact(&mut back).await.is_err() {
                    return out;
                }
                if Instant::now() > warm {
                    out.push(sent.elapsed().as_secs_f64() * 1e6);
                }
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        if let Ok(v) = t.await {
            all.extend(v);
        }
    }
    if all.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    all.sort_by(f64::total_cmp);
    let p = |q: f64| all[((all.len() - 1) as f64 * q) as usize];
    (p(0.50), p(0.99))
}
