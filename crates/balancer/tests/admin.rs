//! The runtime API over HTTP: stats and metrics, drain, maint, ready and weight.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A minimal HTTP/1.1 request; returns (status, body).
async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    http_with(addr, method, path, body, "").await
}

/// As [`http`], with extra header lines (each ending in CRLF).
async fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    headers: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    (status, body)
}

async fn setup(persist: bool) -> (Running, Backend, Backend, SocketAddr) {
    let a = Backend::start("127.0.0.1", "a", Kind::Echo).await;
    let b = Backend::start("127.0.0.1", "b", Kind::Echo).await;
    let p = if persist {
        "persistence = { kind = \"source-ip\", timeout = \"1h\" }\n"
    } else {
        ""
    };
    let text = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[service]]\nname = \"imap\"\nlisten = [\"127.0.0.1:0\"]\n{p}{}",
        servers(&[&a, &b], &[])
    );
    let r = Running::start(&text).await;
    let admin = r.balancer.admin_addr().unwrap();
    (r, a, b, admin)
}

#[tokio::test]
async fn stats_and_metrics() {
    let (r, _a, _b, admin) = setup(false).await;
    let mut c = Client::open(r.addr("imap")).await.unwrap();
    assert_eq!(c.roundtrip("hello").await.unwrap(), "hello");
    let (code, body) = http(admin, "GET", "/stats", "").await;
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let svc = &v["services"][0];
    assert_eq!(svc["name"], "imap");
    assert_eq!(svc["active"], 1);
    let server = svc["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == c.server.as_str())
        .unwrap();
    assert_eq!(server["state"], "up");
    assert_eq!(server["active"], 1);
    assert_eq!(server["total"], 1);
    assert_eq!(server["bytes_in"], 7);
    assert!(server["bytes_out"].as_u64().unwrap() >= 7 + 6);
    assert_eq!(server["weight"], 100);
    let (code, m) = http(admin, "GET", "/metrics", "").await;
    assert_eq!(code, 200);
    assert!(
        m.contains("mailfleet_balancer_service_active_connections{service=\"imap\"} 1"),
        "{m}"
    );
    assert!(m.contains(&format!(
        "mailfleet_balancer_server_connections_total{{service=\"imap\",server=\"{}\"}} 1",
        c.server
    )));
    assert_eq!(http(admin, "GET", "/nothing", "").await.0, 404);
    assert_eq!(http(admin, "DELETE", "/stats", "").await.0, 405);
}

#[tokio::test]
async fn drain_keeps_persistent_clients_only_and_maint_takes_none() {
    let (r, _a, _b, admin) = setup(true).await;
    let addr = r.addr("imap");
    let five = Client::open_from("127.0.0.5", addr).await.unwrap();
    let server = five.server.clone();
    let other = if server == "a" { "b" } else { "a" };
    let (code, _) = http(
        admin,
        "POST",
        &format!("/service/imap/server/{server}/drain"),
        "",
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(state(&r.balancer, "imap", &server), "drain");
    // The persistent client still reaches its server; new clients do not.
    assert_eq!(
        Client::open_from("127.0.0.5", addr).await.unwrap().server,
        server
    );
    for i in 10..16 {
        let from = format!("127.0.0.{i}");
        assert_eq!(Client::open_from(&from, addr).await.unwrap().server, other);
    }
    // The open connection goes on.
    let mut five = five;
    assert_eq!(five.roundtrip("still here").await.unwrap(), "still here");

    let (code, _) = http(
        admin,
        "POST",
        &format!("/service/imap/server/{server}/maint"),
        "",
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(state(&r.balancer, "imap", &server), "maint");
    assert_eq!(
        Client::open_from("127.0.0.5", addr).await.unwrap().server,
        other
    );
    assert_eq!(five.roundtrip("and now").await.unwrap(), "and now");

    let (code, _) = http(
        admin,
        "POST",
        &format!("/service/imap/server/{server}/ready"),
        "",
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(state(&r.balancer, "imap", &server), "up");
    let mut got = std::collections::HashSet::new();
    for i in 20..24 {
        got.insert(
            Client::open_from(&format!("127.0.0.{i}"), addr)
                .await
                .unwrap()
                .server,
        );
    }
    assert_eq!(got.len(), 2);
}

#[tokio::test]
async fn weight_changes_the_share() {
    let (r, _a, _b, admin) = setup(false).await;
    let (code, body) = http(admin, "PUT", "/service/imap/server/a/weight", "0").await;
    assert_eq!(code, 200, "{body}");
    for _ in 0..4 {
        assert_eq!(which(r.addr("imap")).await, "b");
    }
    let (code, _) = http(admin, "PUT", "/service/imap/server/a/weight", "250").await;
    assert_eq!(code, 200);
    let st = r.balancer.stats();
    assert_eq!(st.service("imap").unwrap().server("a").unwrap().weight, 250);
    let (code, body) = http(admin, "PUT", "/service/imap/server/a/weight", "heavy").await;
    assert_eq!(code, 400);
    assert!(body.contains("weight"), "{body}");
    let (code, body) = http(admin, "POST", "/service/imap/server/zz/drain", "").await;
    assert_eq!(code, 404);
    assert!(body.contains("zz"), "{body}");
}

/// With `[admin] token`, a request without the right bearer token gets 401 and changes nothing.
#[tokio::test]
async fn a_token_guards_the_api() {
    let a = Backend::start("127.0.0.1", "a", Kind::Echo).await;
    let token = "s3cret-token-0123456789";
    let text = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{token}\"\n\n[[service]]\nname = \"imap\"\nlisten = [\"127.0.0.1:0\"]\n{}",
        servers(&[&a], &[])
    );
    let r = Running::start(&text).await;
    let admin = r.balancer.admin_addr().unwrap();
    for header in [
        "",
        "Authorization: Bearer wrong-token-0123456789\r\n",
        "Authorization: Basic czNjcmV0\r\n",
    ] {
        let (code, body) =
            http_with(admin, "POST", "/service/imap/server/a/maint", "", header).await;
        assert_eq!(code, 401, "{header:?}: {body}");
        let (code, _) = http_with(admin, "GET", "/stats", "", header).await;
        assert_eq!(code, 401, "{header:?}");
    }
    let good = format!("Authorization: Bearer {token}\r\n");
    let (code, body) = http_with(admin, "GET", "/stats", "", &good).await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["services"][0]["servers"][0]["state"], "up",
        "the refused maint changed nothing: {v}"
    );
    let (code, body) = http_with(admin, "POST", "/service/imap/server/a/maint", "", &good).await;
    assert_eq!(code, 200, "{body}");
}
