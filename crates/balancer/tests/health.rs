//! Health checks through the balancer: a dead server leaves within interval × fall + timeout and
//! comes back after `rise` good checks; a server that accepts and then hangs is caught by the
//! protocol check; the check port may differ from the service port. On tokio's paused clock,
//! which the balancer's clock follows: intervals, timeouts and the bounds are virtual time.

mod common;

use std::time::Duration;

use common::*;

fn service(check: &str, backends: &[&Backend], extra: &str) -> String {
    format!(
        "[[service]]\nname = \"imap\"\nlisten = [\"127.0.0.1:0\"]\nscheduler = \"roundrobin\"\n\
         health = {{ check = \"{check}\", interval = \"100ms\", rise = 2, fall = 3, timeout = \"200ms\"{extra} }}\n{}",
        servers(backends, &[])
    )
}

#[tokio::test(start_paused = true)]
async fn down_within_interval_times_fall_plus_timeout_and_up_after_rise() {
    fine_clock();
    let a = Backend::start("127.0.0.1", "a", Kind::Echo).await;
    let b = Backend::start("127.0.0.1", "b", Kind::Echo).await;
    let b_addr = b.addr;
    let r = Running::start(&service("imap", &[&a, &b], "")).await;
    let bal = &r.balancer;
    // Both confirmed up first (a check has passed).
    eventually(Duration::from_secs(2), || {
        bal.stats()
            .service("imap")
            .unwrap()
            .servers
            .iter()
            .all(|s| s.check.as_ref().is_some_and(|c| c.successes >= 1))
    })
    .await
    .expect("first checks pass");

    drop(b);
    // Three failed checks (fall = 3), 100 ms apart: the first within an interval of the drop
    // (refused at once, no timeout), the third 200 ms later; `eventually` looks every 20 ms.
    let took = eventually(Duration::from_secs(3), || state(bal, "imap", "b") == "down")
        .await
        .expect("b marked down");
    assert!(
        took >= Duration::from_millis(200) && took <= Duration::from_millis(320),
        "took {took:?}"
    );
    for _ in 0..6 {
        assert_eq!(which(r.addr("imap")).await, "a");
    }

    let _b = Backend::start_at(b_addr, "b", Kind::Echo).await;
    let took = eventually(Duration::from_secs(3), || state(bal, "imap", "b") == "up")
        .await
        .expect("b back up");
    // rise = 2 checks, 100 ms apart.
    assert!(
        took >= Duration::from_millis(100) && took <= Duration::from_millis(220),
        "took {took:?}"
    );
    let mut seen_b = false;
    for _ in 0..4 {
        seen_b |= which(r.addr("imap")).await == "b";
    }
    assert!(seen_b);
}

#[tokio::test(start_paused = true)]
async fn accepting_but_silent_server_is_marked_down_by_the_protocol_check() {
    fine_clock();
    let a = Backend::start("127.0.0.1", "a", Kind::Echo).await;
    let hang = Backend::start("127.0.0.1", "hang", Kind::Hang).await;
    let r = Running::start(&service("imap", &[&a, &hang], "")).await;
    let bal = &r.balancer;
    eventually(Duration::from_secs(2), || {
        state(bal, "imap", "hang") == "down"
    })
    .await
    .expect("hang marked down");
    let st = bal.stats();
    let check = st
        .service("imap")
        .unwrap()
        .server("hang")
        .unwrap()
        .check
        .clone()
        .unwrap();
    assert!(check.last.contains("no answer"), "{}", check.last);
    // A TCP check alone would have kept it up.
    assert_eq!(state(bal, "imap", "a"), "up");
    for _ in 0..4 {
        assert_eq!(which(r.addr("imap")).await, "a");
    }
}

#[tokio::test(start_paused = true)]
async fn tcp_check_keeps_a_silent_server_up() {
    fine_clock();
    let hang = Backend::start("127.0.0.1", "hang", Kind::Hang).await;
    let r = Running::start(&service("tcp", &[&hang], "")).await;
    eventually(Duration::from_secs(1), || {
        r.balancer.stats().service("imap").unwrap().servers[0]
            .check
            .as_ref()
            .is_some_and(|c| c.successes >= 2)
    })
    .await
    .expect("tcp checks pass");
    assert_eq!(state(&r.balancer, "imap", "hang"), "up");
}

#[tokio::test(start_paused = true)]
async fn check_port_may_differ_from_the_service_port() {
    fine_clock();
    // The service port is a silent one; the check port answers IMAP.
    let svc_side = Backend::start("127.0.0.1", "svc", Kind::Hang).await;
    let check_side = Backend::start("127.0.0.1", "chk", Kind::Echo).await;
    let text = format!(
        "[[service]]\nname = \"imap\"\nlisten = [\"127.0.0.1:0\"]\n\
         health = {{ check = \"imap\", interval = \"100ms\", rise = 1, fall = 1, timeout = \"200ms\", port = {} }}\n\
         [[service.server]]\nname = \"n1\"\naddress = \"{}\"\n",
        check_side.addr.port(),
        svc_side.addr
    );
    let r = Running::start(&text).await;
    eventually(Duration::from_secs(1), || check_side.count() >= 2)
        .await
        .expect("checks go to the check port");
    assert_eq!(state(&r.balancer, "imap", "n1"), "up");
    assert_eq!(svc_side.count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_server_dead_at_start_never_takes_a_client() {
    fine_clock();
    let a = Backend::start("127.0.0.1", "a", Kind::Echo).await;
    // Nobody listens there: a port from test-support is never handed out again in this
    // process and lies outside the range the kernel gives to other sockets.
    let dead = std::net::SocketAddr::from(([127, 0, 0, 1], mailfleet_test_support::free_port()));
    let text = format!(
        "{}\n[[service.server]]\nname = \"dead\"\naddress = \"{dead}\"\n",
        service("imap", &[&a], "")
    );
    let r = Running::start(&text).await;
    eventually(Duration::from_secs(1), || {
        state(&r.balancer, "imap", "dead") == "down"
    })
    .await
    .expect("dead marked down after its first check");
    // Even before that, a failed connect is retried on another server.
    for _ in 0..4 {
        assert_eq!(which(r.addr("imap")).await, "a");
    }
}
