//! Source-IP persistence: clients bound to 127.0.0.5 and 127.0.0.6 keep their server; entries
//! expire after `timeout` without a connection; a persistent client whose server went down moves.
//! On tokio's paused clock, which the balancer's clock follows: the waits are virtual time.

mod common;

use std::time::Duration;

use common::*;

fn service(timeout: &str, backends: &[&Backend], health: bool) -> String {
    let h = if health {
        "health = { check = \"imap\", interval = \"100ms\", rise = 1, fall = 1, timeout = \"200ms\" }\n"
    } else {
        ""
    };
    format!(
        "[[service]]\nname = \"web\"\nlisten = [\"127.0.0.1:0\"]\nscheduler = \"roundrobin\"\n\
         persistence = {{ kind = \"source-ip\", timeout = \"{timeout}\" }}\n{h}{}",
        servers(backends, &[])
    )
}

#[tokio::test(start_paused = true)]
async fn each_client_address_keeps_its_server() {
    fine_clock();
    let a = Backend::start("127.0.0.1", "a", Kind::Echo).await;
    let b = Backend::start("127.0.0.1", "b", Kind::Echo).await;
    let r = Running::start(&service("1h", &[&a, &b], false)).await;
    let addr = r.addr("web");
    let five = Client::open_from("127.0.0.5", addr).await.unwrap().server;
    let six = Client::open_from("127.0.0.6", addr).await.unwrap().server;
    // Round robin alone would alternate; persistence keeps each on its first server.
    assert_ne!(five, six);
    for _ in 0..5 {
        assert_eq!(
            Client::open_from("127.0.0.5", addr).await.unwrap().server,
            five
        );
        assert_eq!(
            Client::open_from("127.0.0.6", addr).await.unwrap().server,
            six
        );
    }
    assert_eq!(
        r.balancer
            .stats()
            .service("web")
            .unwrap()
            .persistence_entries,
        2
    );
}

#[tokio::test(start_paused = true)]
async fn entries_expire_after_the_timeout_without_connections() {
    fine_clock();
    let a = Backend::start("127.0.0.1", "a", Kind::Echo).await;
    let b = Backend::start("127.0.0.1", "b", Kind::Echo).await;
    let r = Running::start(&service("300ms", &[&a, &b], false)).await;
    let addr = r.addr("web");
    let first = Client::open_from("127.0.0.5", addr).await.unwrap();
    assert_eq!(first.server, "a");
    // While a connection is open the entry never expires.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        Client::open_from("127.0.0.5", addr).await.unwrap().server,
        first.server
    );
    drop(first);
    // Within the timeout after the last connection ended: still kept (virtual time: the
    // balancer sees the close within a millisecond).
    tokio::time::sleep(Duration::from_millis(250)).await;
    let kept = Client::open_from("127.0.0.5", addr).await.unwrap();
    assert_eq!(kept.server, "a");
    drop(kept);
    tokio::time::sleep(Duration::from_millis(350)).await;
    // Expired: the round robin makes its second pick, which is b.
    assert_eq!(
        Client::open_from("127.0.0.5", addr).await.unwrap().server,
        "b"
    );
    // And the new entry holds.
    assert_eq!(
        Client::open_from("127.0.0.5", addr).await.unwrap().server,
        "b"
    );
}

#[tokio::test(start_paused = true)]
async fn a_persistent_client_moves_when_its_server_goes_down() {
    fine_clock();
    let a = Backend::start("127.0.0.1", "a", Kind::Echo).await;
    let b = Backend::start("127.0.0.1", "b", Kind::Echo).await;
    let r = Running::start(&service("1h", &[&a, &b], true)).await;
    let addr = r.addr("web");
    let mine = Client::open_from("127.0.0.5", addr).await.unwrap().server;
    let (gone, other) = if mine == "a" { (a, b) } else { (b, a) };
    drop(gone);
    eventually(Duration::from_secs(2), || {
        state(&r.balancer, "web", &mine) == "down"
    })
    .await
    .unwrap();
    assert_eq!(
        Client::open_from("127.0.0.5", addr).await.unwrap().server,
        other.name
    );
}
