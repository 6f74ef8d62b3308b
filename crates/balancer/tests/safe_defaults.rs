//! Safe defaults (issue 15 §3): a service without `health` is checked by TCP connect,
//! `health = "none"` turns that off; an explicit `max_connections` the open-file limit cannot
//! hold is refused at start; servers may be given by host name.

mod common;

use std::time::Duration;

use common::*;
use mailfleet_balancer::{Balancer, Config};
use tokio_util::sync::CancellationToken;

/// A port nobody listens on (test-support never hands it out twice, and it lies outside the
/// kernel's ephemeral range).
fn dead() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], mailfleet_test_support::free_port()))
}

#[tokio::test]
async fn a_service_without_health_gets_a_tcp_check() {
    let live = Backend::start("127.0.0.1", "live", Kind::Echo).await;
    let dead = dead();
    let text = |health: &str| {
        format!(
            "[[service]]\nname = \"imap\"\nlisten = [\"127.0.0.1:0\"]\n{health}\n\
             [[service.server]]\nname = \"dead\"\naddress = \"{dead}\"\n{}",
            servers(&[&live], &[])
        )
    };
    let r = Running::start(&text("")).await;
    // Without a single client, the check finds the dead server down (never seen up: the
    // first failure is enough) and keeps the live one up.
    eventually(Duration::from_secs(5), || {
        state(&r.balancer, "imap", "dead") == "down"
    })
    .await
    .expect("the dead server is found down by the default check");
    assert_eq!(state(&r.balancer, "imap", "live"), "up");
    let st = r.balancer.stats();
    let live_stats = st.service("imap").unwrap().server("live").unwrap();
    assert!(live_stats.check.is_some(), "the live server is checked");
    // Every client now goes to the live server at once, without a failed connect first.
    for _ in 0..4 {
        assert_eq!(which(r.addr("imap")).await, "live");
    }
    let st = r.balancer.stats();
    assert_eq!(
        st.service("imap")
            .unwrap()
            .server("dead")
            .unwrap()
            .connect_errors,
        0
    );

    // health = "none": nothing checks, both servers count as up.
    let r2 = Running::start(&text("health = \"none\"")).await;
    let st = r2.balancer.stats();
    let svc = st.service("imap").unwrap();
    assert!(svc.server("dead").unwrap().check.is_none());
    assert_eq!(state(&r2.balancer, "imap", "dead"), "up");
}

#[tokio::test]
async fn an_explicit_max_connections_beyond_the_open_file_limit_is_refused() {
    let text = |max: u64| {
        format!(
            "[[service]]\nname = \"imap\"\nlisten = [\"127.0.0.1:0\"]\nmax_connections = {max}\n\
             health = \"none\"\n[[service.server]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n"
        )
    };
    // No system allows 2^40 descriptors per process.
    let c = Config::parse(&text(1 << 40), "b.toml").unwrap();
    let e = match Balancer::start(c, CancellationToken::new()).await {
        Ok(_) => panic!("started with 2^40 connections"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("key `service[0].max_connections`") && e.contains("open-file limit"),
        "{e}"
    );
    // A small one starts.
    let c = Config::parse(&text(100), "b.toml").unwrap();
    let token = CancellationToken::new();
    let b = Balancer::start(c, token.clone()).await.unwrap();
    assert_eq!(b.stats().service("imap").unwrap().max_connections, 100);
    token.cancel();
}

#[tokio::test]
async fn a_server_given_by_host_name_is_resolved_at_start() {
    // Listen where "localhost" resolves first, whatever this machine's hosts file says.
    let ip = tokio::net::lookup_host(("localhost", 0))
        .await
        .unwrap()
        .next()
        .unwrap()
        .ip();
    let b = Backend::start(&ip.to_string(), "byname", Kind::Echo).await;
    let port = b.addr.port();
    let r = Running::start(&format!(
        "[[service]]\nname = \"imap\"\nlisten = [\"127.0.0.1:0\"]\n\
         [[service.server]]\nname = \"n1\"\naddress = \"localhost:{port}\"\n"
    ))
    .await;
    let mut c = Client::open(r.addr("imap")).await.unwrap();
    assert_eq!(c.server, "byname");
    assert_eq!(c.roundtrip("hello").await.unwrap(), "hello");
    let st = r.balancer.stats();
    let addr = st
        .service("imap")
        .unwrap()
        .server("n1")
        .unwrap()
        .address
        .clone();
    assert_eq!(addr, format!("localhost:{port} ({ip})"));
}

#[tokio::test]
async fn a_host_name_added_by_reload_is_resolved_in_the_background() {
    let ip = tokio::net::lookup_host(("localhost", 0))
        .await
        .unwrap()
        .next()
        .unwrap()
        .ip();
    let first = Backend::start("127.0.0.1", "first", Kind::Echo).await;
    let byname = Backend::start(&ip.to_string(), "byname", Kind::Echo).await;
    let service = "[[service]]\nname = \"imap\"\nlisten = [\"127.0.0.1:0\"]\nhealth = \"none\"\n";
    let r = Running::start(&format!("{service}{}", servers(&[&first], &[]))).await;
    assert_eq!(which(r.addr("imap")).await, "first");
    // The reload does not wait for the lookup: the new server is "unresolved" until the
    // resolver task has its address, then it takes clients.
    r.write(&format!(
        "{service}[[service.server]]\nname = \"n2\"\naddress = \"localhost:{}\"\nweight = 65535\n{}",
        byname.addr.port(),
        servers(&[&first], &[1])
    ));
    r.balancer.reload().unwrap();
    // (This test's runtime has one thread: the resolver task has not run yet.)
    assert_eq!(state(&r.balancer, "imap", "n2"), "unresolved");
    eventually(Duration::from_secs(10), || {
        state(&r.balancer, "imap", "n2") == "up"
    })
    .await
    .expect("resolved within seconds of the reload");
    let st = r.balancer.stats();
    assert_eq!(
        st.service("imap").unwrap().server("n2").unwrap().address,
        format!("localhost:{} ({ip})", byname.addr.port())
    );
    let mut seen_byname = false;
    for _ in 0..10 {
        seen_byname |= which(r.addr("imap")).await == "byname";
    }
    assert!(seen_byname, "the resolved server takes clients");
}
