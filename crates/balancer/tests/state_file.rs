//! The state file: read at start and on reload (an entry for a server the configuration lacks is
//! ignored), written on every runtime change, and a file that is not a state file refuses the
//! start naming it. (A restart of the real binary keeping maint is in
//! crates/mailfleet/tests/balancer_soft_stop.rs.)

mod common;

use common::*;
use mailfleet_balancer::{AdminState, Balancer};
use tokio_util::sync::CancellationToken;

fn text(backends: &[&Backend]) -> String {
    format!(
        "[[service]]\nname = \"imap\"\nlisten = [\"127.0.0.1:0\"]\nscheduler = \"roundrobin\"\n{}",
        servers(backends, &[])
    )
}

#[tokio::test]
async fn read_at_start_and_on_reload_written_on_change() {
    let a = Backend::start("127.0.0.1", "a", Kind::Echo).await;
    let b = Backend::start("127.0.0.1", "b", Kind::Echo).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lb.toml");
    std::fs::write(&path, text(&[&a, &b])).unwrap();
    let state = dir.path().join("lb.state");
    std::fs::write(
        &state,
        r#"{"version":1,"servers":[
            {"service":"imap","server":"a","admin":"maint"},
            {"service":"imap","server":"gone","admin":"drain"},
            {"service":"imap","server":"b","admin":"ready","weight":3,"file_weight":100}]}"#,
    )
    .unwrap();
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let lb = Balancer::start_file(path.clone(), shutdown.clone())
        .await
        .unwrap();
    assert_eq!(lb.state_file().as_deref(), Some(state.as_path()));
    assert_eq!(state_of(&lb, "a"), "maint");
    assert_eq!(weight(&lb, "b"), 3);
    let addr = lb.listen_addrs("imap")[0];
    for _ in 0..3 {
        assert_eq!(which(addr).await, "b");
    }

    // A change through the API rewrites the file (the entry for "gone" is not kept).
    lb.set_admin("imap", "b", AdminState::Drain).unwrap();
    let saved = std::fs::read_to_string(&state).unwrap();
    assert!(
        saved.contains("\"drain\"") && !saved.contains("gone"),
        "{saved}"
    );

    // Edited by hand and reloaded: read again.
    std::fs::write(
        &state,
        r#"{"version":1,"servers":[{"service":"imap","server":"b","admin":"maint"}]}"#,
    )
    .unwrap();
    lb.reload().unwrap();
    assert_eq!(state_of(&lb, "b"), "maint");

    // A file weight that changed drops the runtime weight saved over the old one.
    lb.set_weight("imap", "a", 9).unwrap();
    let saved = std::fs::read_to_string(&state).unwrap();
    assert!(saved.contains("\"file_weight\": 100"), "{saved}");
    std::fs::write(
        &path,
        text(&[&a, &b]).replacen("weight = 100", "weight = 50", 1),
    )
    .unwrap();
    lb.reload().unwrap();
    assert_eq!(weight(&lb, "a"), 50);
}

#[tokio::test]
async fn a_broken_state_file_refuses_the_start_and_an_empty_key_keeps_none() {
    let a = Backend::start("127.0.0.1", "a", Kind::Echo).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lb.toml");
    std::fs::write(&path, text(&[&a])).unwrap();
    std::fs::write(dir.path().join("lb.state"), "{ half a file").unwrap();
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let e = Balancer::start_file(path.clone(), shutdown.clone())
        .await
        .err()
        .expect("a broken state file is refused")
        .to_string();
    assert!(e.contains("lb.state"), "{e}");

    std::fs::write(&path, format!("state_file = \"\"\n{}", text(&[&a]))).unwrap();
    let lb = Balancer::start_file(path.clone(), shutdown.clone())
        .await
        .unwrap();
    assert_eq!(lb.state_file(), None);
    lb.set_admin("imap", "a", AdminState::Maint).unwrap();
    assert_eq!(state_of(&lb, "a"), "maint");
}

fn state_of(lb: &Balancer, server: &str) -> String {
    state(lb, "imap", server)
}

fn weight(lb: &Balancer, server: &str) -> u32 {
    lb.stats()
        .service("imap")
        .unwrap()
        .server(server)
        .unwrap()
        .base_weight
}
