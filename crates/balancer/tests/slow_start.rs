//! Slow start: a server that comes back (health, maintenance) or is added by a reload ramps its
//! weight over `slow_start` instead of taking a full share at once. On tokio's paused clock,
//! which the balancer's clock follows: the ramp advances by virtual time only.

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

#[tokio::test(start_paused = true)]
async fn leaving_maintenance_ramps_the_weight() {
    fine_clock();
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
    let back = tokio::time::Instant::now();
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
    // Half way through the 1 s ramp, in virtual time (the 20 connections above took a few ms).
    let elapsed = back.elapsed().as_millis() as u32;
    let st = r.balancer.stats();
    let srv = st.service("imap").unwrap().server("b").unwrap();
    // The ramp itself, read now: linear.
    assert!(
        srv.slow_start_permille.abs_diff(elapsed) <= 5,
        "ramp at {}‰ after {elapsed} ms",
        srv.slow_start_permille
    );
    // The weight the scheduler uses comes from the snapshot, rebuilt every 200 ms while a
    // server ramps: the ramp as it was at most 200 ms ago.
    let mid = srv.weight;
    assert!(
        (elapsed.saturating_sub(205) / 10..=elapsed / 10 + 1).contains(&mid) && mid < 100,
        "half way: weight {mid} after {elapsed} ms"
    );
    eventually(Duration::from_secs(2), || weight(&r, "b") == 100)
        .await
        .expect("full weight after slow_start");
}

#[tokio::test(start_paused = true)]
async fn a_server_added_by_reload_ramps_under_leastconn() {
    fine_clock();
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
