//! `run_from_file` reloads on SIGHUP (alone in its test binary: the signal goes to the process).

mod common;

use std::time::Duration;

use common::*;
use mailfleet_test_support::free_port;

#[tokio::test]
async fn sighup_reloads_the_file() {
    let a = Backend::start("127.0.0.1", "a", Kind::Echo).await;
    let b = Backend::start("127.0.0.1", "b", Kind::Echo).await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.toml");
    let text = |backend: &Backend| {
        format!(
            "[[service]]\nname = \"imap\"\nlisten = [\"127.0.0.1:{port}\"]\n\
             [[service.server]]\nname = \"n\"\naddress = \"{}\"\n",
            backend.addr
        )
    };
    std::fs::write(&path, text(&a)).unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let run = tokio::spawn(mailfleet_balancer::run_from_file(
        path.clone(),
        shutdown.clone(),
    ));
    let vip: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // Generous deadlines: only a broken balancer takes them.
    let mut first = None;
    let start = std::time::Instant::now();
    while first.is_none() && start.elapsed() < Duration::from_secs(30) {
        if let Ok(c) = Client::open(vip).await {
            first = Some(c);
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut first = first.expect("balancer up");
    assert_eq!(first.server, "a");

    std::fs::write(&path, text(&b)).unwrap();
    // SAFETY: sending a signal to our own process; the balancer installed its handler.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGHUP);
    }
    let mut moved = false;
    let start = std::time::Instant::now();
    while !moved && start.elapsed() < Duration::from_secs(30) {
        moved = which(vip).await == "b";
        if !moved {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(moved, "reloaded on SIGHUP");
    assert_eq!(first.roundtrip("kept").await.unwrap(), "kept");

    // A broken file on SIGHUP: logged, old configuration stays.
    std::fs::write(&path, "[[service]]\nname = \"imap\"\nbogus = 1\n").unwrap();
    unsafe {
        libc::kill(libc::getpid(), libc::SIGHUP);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(which(vip).await, "b");

    // A soft stop waits for open connections: close ours first.
    drop(first);
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(2), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
