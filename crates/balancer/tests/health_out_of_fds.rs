//! A health check that fails because the balancer itself has no file descriptor left (EMFILE)
//! says nothing about the server: the server stays up, and checks count again once descriptors
//! are free.
//!
//! Alone in its test binary: it lowers this process's open-file limit and uses up every
//! descriptor for a while, which would break any test running beside it.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Opens /dev/null until the process is out of descriptors (the soft limit lowered first, so
/// this takes a few hundred files, not the hard limit's worth).
fn use_up_descriptors() -> Vec<std::fs::File> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_cur.min(512);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    let mut files = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => files.push(f),
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => return files,
            Err(e) => panic!("opening /dev/null: {e}"),
        }
        assert!(files.len() < 4096, "no EMFILE after {} files", files.len());
    }
}

fn last_check(b: &mailfleet_balancer::Balancer) -> String {
    b.stats()
        .service("imap")
        .and_then(|s| s.server("a"))
        .and_then(|s| s.check.clone())
        .map(|c| c.last)
        .unwrap_or_default()
}

#[tokio::test]
async fn a_check_failing_with_emfile_does_not_mark_a_healthy_server_down() {
    let a = Backend::start("127.0.0.1", "a", Kind::Echo).await;
    // fall = 1: a single counted failure would take the server down.
    let text = format!(
        "[[service]]\nname = \"imap\"\nlisten = [\"127.0.0.1:0\"]\n\
         health = {{ check = \"tcp\", interval = \"100ms\", rise = 1, fall = 1, timeout = \"500ms\" }}\n{}",
        servers(&[&a], &[])
    );
    let r = Running::start(&text).await;
    let bal = &r.balancer;
    eventually(Duration::from_secs(10), || last_check(bal) == "ok")
        .await
        .expect("the first check passes");
    assert_eq!(state(bal, "imap", "a"), "up");

    let files = use_up_descriptors();
    let seen = eventually(Duration::from_secs(10), || {
        last_check(bal).contains("Too many open files")
    })
    .await;
    // Ten more checks' worth of time without descriptors.
    let mut states = Vec::new();
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        states.push(state(bal, "imap", "a"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let last = last_check(bal);
    drop(files);
    assert!(seen.is_some(), "no check ran out of descriptors: {last}");
    assert!(
        states.iter().all(|s| s == "up"),
        "the server went down while the balancer had no descriptors: {states:?}, last check {last:?}"
    );

    // Descriptors back: checks count again.
    eventually(Duration::from_secs(10), || last_check(bal) == "ok")
        .await
        .expect("checks pass again");
    assert_eq!(state(bal, "imap", "a"), "up");
}
