//! Reload: new and changed services and servers take effect, open connections go on, counters
//! and runtime state of unchanged servers survive, a broken file changes nothing.

mod common;

use std::time::Duration;

use common::*;

fn one_service(
    name: &str,
    listen: &str,
    sched: &str,
    backends: &[&Backend],
    weights: &[u32],
) -> String {
    format!(
        "[[service]]\nname = \"{name}\"\nlisten = [\"{listen}\"]\nscheduler = \"{sched}\"\n{}",
        servers(backends, weights)
    )
}

#[tokio::test]
async fn reload_keeps_open_connections_and_applies_changes() {
    let a = Backend::start("127.0.0.1", "a", Kind::Echo).await;
    let b = Backend::start("127.0.0.1", "b", Kind::Echo).await;
    let c = Backend::start("127.0.0.1", "c", Kind::Echo).await;
    let v1 = one_service("imap", "127.0.0.1:0", "roundrobin", &[&a, &b], &[]);
    let r = Running::start(&v1).await;
    let addr = r.addr("imap");
    let mut open = Vec::new();
    for _ in 0..10 {
        open.push(Client::open(addr).await.unwrap());
    }
    r.balancer
        .set_admin("imap", "a", mailfleet_balancer::AdminState::Drain)
        .unwrap();

    // Version 2: b removed, c added, a second service.
    let v2 = format!(
        "{}\n{}",
        one_service("imap", "127.0.0.1:0", "roundrobin", &[&a, &c], &[]),
        one_service("pop3", "127.0.0.2:0", "roundrobin", &[&c], &[])
    );
    r.write(&v2);
    r.balancer.reload().unwrap();
    // Same listener (same configured address): same bound port.
    assert_eq!(r.addr("imap"), addr);
    // Every open connection, including those on the removed server b, goes on.
    for (i, cl) in open.iter_mut().enumerate() {
        let msg = format!("after reload {i}");
        assert_eq!(cl.roundtrip(&msg).await.unwrap(), msg);
    }
    // a stays drained (runtime state survives), so new clients go to c.
    assert_eq!(state(&r.balancer, "imap", "a"), "drain");
    for _ in 0..4 {
        assert_eq!(which(addr).await, "c");
    }
    // a's counters survived: 5 connections, all still open.
    let st = r.balancer.stats();
    let sa = st.service("imap").unwrap().server("a").unwrap();
    assert_eq!((sa.total, sa.active), (5, 5));
    assert!(st.service("imap").unwrap().server("b").is_none());
    // The new service works.
    assert_eq!(which(r.addr("pop3")).await, "c");
}

#[tokio::test]
async fn a_broken_file_is_refused_and_the_old_config_stays() {
    let a = Backend::start("127.0.0.1", "a", Kind::Echo).await;
    let v1 = one_service("imap", "127.0.0.1:0", "roundrobin", &[&a], &[]);
    let r = Running::start(&v1).await;
    let addr = r.addr("imap");
    let mut held = Client::open(addr).await.unwrap();

    r.write(&v1.replace("\"roundrobin\"", "\"random\""));
    let e = r.balancer.reload().unwrap_err().to_string();
    assert!(e.contains("service[0].scheduler"), "{e}");
    assert!(e.contains("balancer.toml"), "{e}");

    r.write(&format!("{v1}\nmax_conections = 5\n"));
    let e = r.balancer.reload().unwrap_err().to_string();
    assert!(e.contains("max_conections"), "{e}");

    // A listener that cannot be bound: refused before anything changes.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let v_bad = format!(
        "{v1}\n{}",
        one_service(
            "pop3",
            &taken.local_addr().unwrap().to_string(),
            "roundrobin",
            &[&a],
            &[]
        )
    );
    r.write(&v_bad);
    let e = r.balancer.reload().unwrap_err().to_string();
    assert!(e.contains("service[1].listen[0]"), "{e}");
    assert!(r.balancer.listen_addrs("pop3").is_empty());

    assert_eq!(held.roundtrip("still").await.unwrap(), "still");
    assert_eq!(which(addr).await, "a");
    assert_eq!(r.balancer.config_text(), v1);
}

#[tokio::test]
async fn reload_over_the_api() {
    let a = Backend::start("127.0.0.1", "a", Kind::Echo).await;
    let b = Backend::start("127.0.0.1", "b", Kind::Echo).await;
    let v1 = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n{}",
        one_service("imap", "127.0.0.1:0", "roundrobin", &[&a], &[])
    );
    let r = Running::start(&v1).await;
    let admin = r.balancer.admin_addr().unwrap();
    r.write(&v1.replace(&a.addr.to_string(), &b.addr.to_string()));
    let resp = post(admin, "/reload").await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    // The server named a now has b's address: a changed server, new connections go there.
    assert_eq!(which(r.addr("imap")).await, "b");
    r.write("[[service]]\nname = 1\n");
    let resp = post(admin, "/reload").await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(resp.contains("service[0].name"), "{resp}");
    assert_eq!(which(r.addr("imap")).await, "b");
}

async fn post(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(3), s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}
