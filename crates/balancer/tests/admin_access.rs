//! The runtime API is guarded by its `[admin]` address list (README: "guarded by an address
//! list and an optional bearer token"): clients bound to different loopback addresses, real
//! HTTP over TCP.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 request from the loopback address `from`. `None` when the balancer closed the
/// connection without a reply (a refused client); else (status, body).
async fn ask_from(
    from: &str,
    admin: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
) -> Option<(u16, String)> {
    let mut s = connect_from(from, admin).await.expect("connect to the API");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}Content-Length: 0\r\n\r\n"
    );
    // A refused client may find the connection gone before or while it writes.
    if s.write_all(req.as_bytes()).await.is_err() {
        return None;
    }
    let mut out = Vec::new();
    match tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await {
        Ok(Ok(_)) => {}
        Ok(Err(_)) => return None,
        Err(_) => panic!("{from}: {method} {path} neither answered nor closed within 5 s"),
    }
    if out.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    Some((status, body))
}

fn config(admin: &str, backend: &Backend) -> String {
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n{admin}\n\n[[service]]\nname = \"imap\"\n\
         listen = [\"127.0.0.1:0\"]\n{}",
        servers(&[backend], &[])
    )
}

#[tokio::test]
async fn only_listed_addresses_reach_the_runtime_api_and_deny_wins() {
    let a = Backend::start("127.0.0.1", "a", Kind::Echo).await;
    let r = Running::start(&config(
        "allow = [\"127.0.0.1\", \"127.0.0.20-127.0.0.30\"]\ndeny = [\"127.0.0.25\"]",
        &a,
    ))
    .await;
    let admin = r.balancer.admin_addr().unwrap();

    for from in ["127.0.0.1", "127.0.0.20", "127.0.0.22", "127.0.0.30"] {
        let got = ask_from(from, admin, "GET", "/stats", "").await;
        assert!(
            matches!(&got, Some((200, body)) if body.contains("\"imap\"")),
            "{from} is allowed: {got:?}"
        );
    }
    for from in ["127.0.0.2", "127.0.0.19", "127.0.0.31", "127.0.0.25"] {
        for (method, path) in [("GET", "/stats"), ("GET", "/metrics"), ("POST", "/reload")] {
            let got = ask_from(from, admin, method, path, "").await;
            assert_eq!(got, None, "{from}: {method} {path} must get no answer");
        }
        // Nor can it change a server's state.
        let got = ask_from(from, admin, "POST", "/service/imap/server/a/maint", "").await;
        assert_eq!(got, None, "{from}: maint");
        assert_eq!(state(&r.balancer, "imap", "a"), "up");
    }
    // The same request from an allowed address does change it.
    let got = ask_from(
        "127.0.0.22",
        admin,
        "POST",
        "/service/imap/server/a/maint",
        "",
    )
    .await;
    assert_eq!(got.map(|g| g.0), Some(200));
    assert_eq!(state(&r.balancer, "imap", "a"), "maint");
}

/// The list is read for every connection: a reload that changes it applies to the next one.
#[tokio::test]
async fn a_reloaded_address_list_applies_to_the_next_connection() {
    let a = Backend::start("127.0.0.1", "a", Kind::Echo).await;
    let r = Running::start(&config("allow = [\"127.0.0.1\"]", &a)).await;
    let admin = r.balancer.admin_addr().unwrap();
    assert_eq!(
        ask_from("127.0.0.7", admin, "GET", "/stats", "").await,
        None
    );

    r.write(&config("allow = [\"127.0.0.7\"]", &a));
    let got = ask_from("127.0.0.1", admin, "POST", "/reload", "").await;
    assert_eq!(
        got.map(|g| g.0),
        Some(200),
        "reload from the allowed address"
    );
    assert_eq!(r.balancer.admin_addr(), Some(admin), "same API listener");
    let got = ask_from("127.0.0.7", admin, "GET", "/stats", "").await;
    assert_eq!(got.map(|g| g.0), Some(200));
    assert_eq!(
        ask_from("127.0.0.1", admin, "GET", "/stats", "").await,
        None
    );

    // Without allow or deny, everyone may.
    r.write(&config("", &a));
    r.balancer.reload().unwrap();
    for from in ["127.0.0.1", "127.0.0.7", "127.0.0.99"] {
        let got = ask_from(from, admin, "GET", "/stats", "").await;
        assert_eq!(got.map(|g| g.0), Some(200), "{from}");
    }
}

/// With a token too, both apply: a listed address without the token gets 401, the token from an
/// unlisted address gets nothing.
#[tokio::test]
async fn the_token_does_not_replace_the_address_list() {
    let a = Backend::start("127.0.0.1", "a", Kind::Echo).await;
    let token = "0123456789abcdef0123456789abcdef";
    let r = Running::start(&config(
        &format!("allow = [\"127.0.0.1\"]\ntoken = \"{token}\""),
        &a,
    ))
    .await;
    let admin = r.balancer.admin_addr().unwrap();
    let bearer = format!("Authorization: Bearer {token}\r\n");
    let got = ask_from("127.0.0.1", admin, "GET", "/stats", "").await;
    assert_eq!(got.map(|g| g.0), Some(401));
    let got = ask_from("127.0.0.1", admin, "GET", "/stats", &bearer).await;
    assert_eq!(got.map(|g| g.0), Some(200));
    let got = ask_from("127.0.0.8", admin, "GET", "/stats", &bearer).await;
    assert_eq!(got, None, "the token from an unlisted address");
}
