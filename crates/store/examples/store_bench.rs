//! Store append benchmark (run by bench/store/run.sh, not a test).
//!
//! Appends per second with 1, 8 and 64 concurrent writers on SQLite and on PostgreSQL, each
//! writer appending to its own mailbox, printed beside the fsync/s of the same disk measured in
//! the same run: one writer that commits each append durably cannot beat that figure, so the
//! ratio shows how much the backend batches (group commit) at higher concurrency.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailfleet_store::{NewAccount, Store};
use mailfleet_test_support::PgServer;

const SECONDS: u64 = 5;

fn fsyncs_per_second(dir: &std::path::Path) -> f64 {
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path).expect("create probe file");
    let block = [7u8; 4096];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(SECONDS) {
        f.write_all(&block).expect("write");
        f.sync_data().expect("fdatasync");
        n += 1;
    }
    let _ = std::fs::remove_file(&path);
    n as f64 / start.elapsed().as_secs_f64()
}

async fn appends_per_second(store: Arc<dyn Store>, writers: usize, round: usize) -> f64 {
    let mut mailboxes = Vec::new();
    for w in 0..writers {
        let a = store
            .create_account(&NewAccount {
                address: format!("w{round}-{w}@bench.test"),
                password_hash: "x".into(),
                quota_bytes: 0,
                shard: "default".into(),
            })
            .await
            .expect("create account");
        mailboxes.push(
            store
                .get_mailbox(a.id, "INBOX")
                .await
                .expect("mailbox")
                .expect("inbox")
                .id,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(SECONDS);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for mailbox in mailboxes {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                store
                    .append(
                        mailbox,
                        "0000000000000000000000000000000000000000000000000000000000000000",
                        4096,
                        0,
                        &[],
                        None,
                    )
                    .await
                    .expect("append");
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("writer");
    }
    total as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into()))
        .expect("temp dir");
    println!(
        "store append benchmark: {SECONDS} s per figure, 4 KiB messages, each writer its own mailbox"
    );
    let fsync = fsyncs_per_second(dir.path());
    println!(
        "disk: {fsync:.0} fsync/s (4 KiB write + fdatasync, one writer, {})",
        dir.path().display()
    );
    let pg = PgServer::start();
    let backends: Vec<(&str, String)> = vec![
        (
            "sqlite",
            format!("sqlite:{}", dir.path().join("bench.db").display()),
        ),
        ("postgres", pg.url()),
    ];
    println!(
        "{:<9} {:>8} {:>12} {:>16}",
        "backend", "writers", "appends/s", "ratio to fsync/s"
    );
    for (name, url) in backends {
        let store = mailfleet_store::open(&url).await.expect("open store");
        store.add_domain("bench.test").await.expect("domain");
        for (round, writers) in [1usize, 8, 64].into_iter().enumerate() {
            let rate = appends_per_second(store.clone(), writers, round).await;
            println!("{name:<9} {writers:>8} {rate:>12.0} {:>16.2}", rate / fsync);
        }
    }
}
