//! A server that refuses the connection is skipped: the client goes to the next server and the
//! refusal is counted.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test]
async fn a_refused_connect_moves_the_client_to_another_server() {
    let live = Backend::start("127.0.0.1", "live", Kind::Echo).await;
    // A port nobody listens on (no health check, so the balancer finds out by connecting).
    // Nobody listens there: a port from test-support is never handed out again in this
    // process and lies outside the range the kernel gives to other sockets.
    let dead = std::net::SocketAddr::from(([127, 0, 0, 1], mailfleet_test_support::free_port()));
    let r = Running::start(&format!(
        "[[service]]\nname = \"imap\"\nlisten = [\"127.0.0.1:0\"]\nscheduler = \"roundrobin\"\n\
         health = \"none\"\n[[service.server]]\nname = \"dead\"\naddress = \"{dead}\"\n{}",
        servers(&[&live], &[])
    ))
    .await;
    for _ in 0..4 {
        let mut c = tokio::time::timeout(Duration::from_secs(3), Client::open(r.addr("imap")))
            .await
            .expect("served in time")
            .unwrap();
        assert_eq!(c.server, "live");
        assert_eq!(c.roundtrip("hello").await.unwrap(), "hello");
    }
    let st = r.balancer.stats();
    let svc = st.service("imap").unwrap();
    // Round robin offers the dead server every other time.
    assert!(svc.server("dead").unwrap().connect_errors >= 2, "{svc:?}");
    assert_eq!(svc.server("live").unwrap().total, 4);
    assert_eq!(svc.no_server, 0);
}
