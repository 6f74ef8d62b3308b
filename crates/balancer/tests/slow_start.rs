//! Slow start: a server that comes back (health, maintenance) or is added by a reload ramps its
//! weight over `slow_start` instead of taking a full share at once.

mod common;

use std::time::Duration;

use common::*;
use mailfleet_balancer::AdminState;

fn weight(r: &Running, server: &str) -> u32 {
    r.balancer
        .stats()
        .service("imap")
        .unwrap()
        .server(server)
        .unwrap()
        .weight
}

#[tokio::test]
async fn leaving_maintenance_ramps_the_weight() {
    let a = Backend::start("127.0.0.1", "a", Kind::Echo).await;
    let b = Backend::start("127.0.0.1", "b", Kind::Echo).await;
    let text = format!(
        "[[service]]\nname = \"imap\"\nlisten = [\"127.0.0.1:0\"]\nscheduler = \"wrr\"\nslow_start = \"1s\"\n{}",
        servers(&[&a, &b], &[100, 100])
    );
    let r = Running::start(&text).await;
    // At start there is no ramp.
    assert_eq!(weight(&r, "b"), 100);
    r.balancer
        .set_admin("imap", "b", AdminState::Maint)
        .unwrap();
    r.balancer
        .set_admin("imap", "b", AdminState::Ready)
        .unwrap();
    // Just back: a small share.
    assert!(weight(&r, "b") <= 20, "{}", weight(&r, "b"));
    let mut on_b = 0;
    for _ in 0..20 {
        if which(r.addr("imap")).await == "b" {
            on_b += 1;
        }
    }
    assert!(on_b <= 5, "{on_b} of 20 went to b right after it came back");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mid = weight(&r, "b");
    assert!((25..=85).contains(&mid), "half way: {mid}");
    eventually(Duration::from_secs(2), || weight(&r, "b") == 100)
        .await
        .expect("full weight after slow_start");
}

#[tokio::test]
async fn a_server_added_by_reload_ramps_under_leastconn() {
    let a = Backend::start("127.0.0.1", "a", Kind::Echo).await;
    let b = Backend::start("127.0.0.1", "b", Kind::Echo).await;
    let v1 = format!(
        "[[service]]\nname = \"imap\"\nlisten = [\"127.0.0.1:0\"]\nscheduler = \"leastconn\"\nslow_start = \"2s\"\n{}",
        servers(&[&a], &[])
    );
    let r = Running::start(&v1).await;
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(Client::open(r.addr("imap")).await.unwrap());
    }
    r.write(&format!("{v1}{}", servers(&[&b], &[])));
    r.balancer.reload().unwrap();
    // Plain least-connections would send the next 10 clients all to the empty b.
    let mut on_b = 0;
    for _ in 0..10 {
        let c = Client::open(r.addr("imap")).await.unwrap();
        if c.server == "b" {
            on_b += 1;
        }
        held.push(c);
    }
    assert!(on_b <= 2, "{on_b} of 10 new clients went to the new server");
}
