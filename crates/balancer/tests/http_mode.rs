//! http mode (webmail): requests relayed over HTTP/1.1, X-Forwarded-For added, cookie
//! persistence keeps a browser on its server, and a server gone from service loses its clients.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A tiny HTTP/1.1 server answering every request with its name and the X-Forwarded-For it saw.
async fn web(name: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            tokio::spawn(async move {
                let (r, mut w) = s.into_split();
                let mut r = BufReader::new(r);
                loop {
                    let mut xff = String::from("-");
                    let mut len = 0usize;
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        let (k, v) = h.split_once(": ").unwrap_or((h, ""));
                        match k.to_ascii_lowercase().as_str() {
                            "x-forwarded-for" => xff = v.to_string(),
                            "content-length" => len = v.parse().unwrap_or(0),
                            _ => {}
                        }
                    }
                    let mut body = vec![0u8; len];
                    r.read_exact(&mut body).await.unwrap();
                    let out = format!("{name} {xff} {}", String::from_utf8_lossy(&body));
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{out}",
                        out.len()
                    );
                    if w.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// One request on a fresh connection from `from`; returns (body, set-cookie).
async fn get(
    from: &str,
    to: SocketAddr,
    cookie: Option<&str>,
    extra: &str,
) -> (String, Option<String>) {
    let s = common::connect_from(from, to).await.unwrap();
    let mut s = BufReader::new(s);
    let c = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    s.get_mut()
        .write_all(
            format!("POST /mail HTTP/1.1\r\nHost: webmail\r\n{c}{extra}Content-Length: 2\r\nConnection: close\r\n\r\nhi")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(3), s.read_to_string(&mut text))
        .await
        .unwrap()
        .unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let set = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .map(|v| v.split(';').next().unwrap().to_string());
    (body.to_string(), set)
}

#[tokio::test]
async fn cookie_persistence_and_forwarded_for() {
    let a = web("a").await;
    let b = web("b").await;
    let text = format!(
        "[[service]]\nname = \"webmail\"\nlisten = [\"127.0.0.1:0\"]\nmode = \"http\"\n\
         persistence = {{ kind = \"cookie\", cookie = \"WM\" }}\n\
         [[service.server]]\nname = \"a\"\naddress = \"{a}\"\n\
         [[service.server]]\nname = \"b\"\naddress = \"{b}\"\n"
    );
    let r = common::Running::start(&text).await;
    let vip = r.addr("webmail");

    let (body, cookie) = get("127.0.0.5", vip, None, "").await;
    let cookie = cookie.expect("a persistence cookie");
    let server = body.split(' ').next().unwrap().to_string();
    assert_eq!(cookie, format!("WM={server}"));
    assert_eq!(body, format!("{server} 127.0.0.5 hi"));

    // The same browser (any address: NAT) stays on its server; no new cookie is set.
    for from in ["127.0.0.6", "127.0.0.7", "127.0.0.8"] {
        let (body, set) = get(from, vip, Some(&format!("other=1; {cookie}")), "").await;
        assert!(body.starts_with(&server), "{body}");
        assert_eq!(set, None);
    }
    // An existing X-Forwarded-For is extended.
    let (body, _) = get(
        "127.0.0.5",
        vip,
        Some(&cookie),
        "X-Forwarded-For: 192.0.2.9\r\n",
    )
    .await;
    assert_eq!(body, format!("{server} 192.0.2.9, 127.0.0.5 hi"));

    // Its server in maintenance: moved, with a new cookie.
    r.balancer
        .set_admin("webmail", &server, mailfleet_balancer::AdminState::Maint)
        .unwrap();
    let (body, set) = get("127.0.0.5", vip, Some(&cookie), "").await;
    let other = if server == "a" { "b" } else { "a" };
    assert!(body.starts_with(other), "{body}");
    assert_eq!(set, Some(format!("WM={other}")));
}

#[tokio::test]
async fn keep_alive_requests_and_no_server() {
    let a = web("a").await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let text = format!(
        "[[service]]\nname = \"webmail\"\nlisten = [\"127.0.0.1:0\"]\nmode = \"http\"\n\
         [[service.server]]\nname = \"a\"\naddress = \"{a}\"\n"
    );
    let r = common::Running::start(&text).await;
    let vip = r.addr("webmail");
    // Three requests on one keep-alive connection.
    let mut s = BufReader::new(TcpStream::connect(vip).await.unwrap());
    for i in 0..3 {
        let body = format!("r{i}");
        s.get_mut()
            .write_all(
                format!("POST / HTTP/1.1\r\nHost: w\r\nContent-Length: 2\r\n\r\n{body}").as_bytes(),
            )
            .await
            .unwrap();
        let mut status = String::new();
        s.read_line(&mut status).await.unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        let mut len = 0;
        loop {
            let mut h = String::new();
            s.read_line(&mut h).await.unwrap();
            if h.trim_end().is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length: ") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut b = vec![0u8; len];
        s.read_exact(&mut b).await.unwrap();
        assert_eq!(String::from_utf8(b).unwrap(), format!("a 127.0.0.1 {body}"));
    }
    assert_eq!(
        r.balancer
            .stats()
            .service("webmail")
            .unwrap()
            .server("a")
            .unwrap()
            .total,
        1
    );

    // Only a dead server: 503 at once.
    r.write(&text.replace(&a.to_string(), &dead.to_string()));
    r.balancer.reload().unwrap();
    let mut s = TcpStream::connect(vip).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(3), s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert!(out.starts_with("HTTP/1.1 503"), "{out}");
}

/// Whether the balancer closed `s` within `within`, while `trickle` (if any) is sent one byte
/// every 200 ms; returns how long it took.
async fn closed_within(
    s: &mut TcpStream,
    within: Duration,
    trickle: Option<u8>,
) -> Option<Duration> {
    let start = std::time::Instant::now();
    while start.elapsed() < within {
        if let Some(b) = trickle
            && s.write_all(&[b]).await.is_err()
        {
            return Some(start.elapsed());
        }
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            // Closed (possibly after an error response such as 408).
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) | Err(_) => {}
        }
    }
    None
}

fn webmail(server: SocketAddr, timeouts: &str) -> String {
    format!(
        "[[service]]\nname = \"webmail\"\nlisten = [\"127.0.0.1:0\"]\nmode = \"http\"\n{timeouts}\n\
         [[service.server]]\nname = \"a\"\naddress = \"{server}\"\n"
    )
}

#[tokio::test]
async fn a_client_trickling_its_header_is_closed_after_the_header_timeout() {
    let a = web("a").await;
    // The idle timeout is left at its default (60 s): the trickle keeps the connection busy.
    let r = common::Running::start(&webmail(a, "timeouts = { header = \"1s\" }")).await;
    let mut s = TcpStream::connect(r.addr("webmail")).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: w\r\nX-Slow: ")
        .await
        .unwrap();
    let took = closed_within(&mut s, Duration::from_secs(10), Some(b'a'))
        .await
        .expect("a trickling client is closed within 10 s when timeouts.header is 1 s");
    assert!(took >= Duration::from_millis(800), "closed after {took:?}");
    // The server never saw a request.
    let stats = r.balancer.stats();
    assert_eq!(
        stats.service("webmail").unwrap().server("a").unwrap().total,
        0
    );
}

#[tokio::test]
async fn a_silent_client_is_closed_after_the_header_timeout() {
    let a = web("a").await;
    let r = common::Running::start(&webmail(a, "timeouts = { header = \"1s\" }")).await;
    let mut s = TcpStream::connect(r.addr("webmail")).await.unwrap();
    assert!(
        closed_within(&mut s, Duration::from_secs(10), None)
            .await
            .is_some()
    );
}

#[tokio::test]
async fn a_stalled_request_body_is_closed_after_the_idle_timeout() {
    let a = web("a").await;
    let r = common::Running::start(&webmail(
        a,
        "timeouts = { client = \"1s\", server = \"1h\" }",
    ))
    .await;
    let mut s = TcpStream::connect(r.addr("webmail")).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: w\r\nContent-Length: 10\r\n\r\nab")
        .await
        .unwrap();
    let took = closed_within(&mut s, Duration::from_secs(10), None)
        .await
        .expect("a client whose body stalls is closed within 10 s when timeouts.client is 1 s");
    assert!(took >= Duration::from_millis(800), "closed after {took:?}");
}

#[tokio::test]
async fn a_slow_server_does_not_count_as_an_idle_client() {
    // A server that answers 2.5 s after the request, longer than the client idle timeout.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slow = l.local_addr().unwrap();
    tokio::spawn(async move {
        let Ok((s, _)) = l.accept().await else { return };
        let (rd, mut w) = s.into_split();
        let mut rd = BufReader::new(rd);
        loop {
            let mut h = String::new();
            if rd.read_line(&mut h).await.unwrap_or(0) == 0 || h.trim_end().is_empty() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let _ = w
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow")
            .await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    // No health check: the server takes one connection, the client's.
    let r = common::Running::start(&webmail(
        slow,
        "timeouts = { client = \"1s\", server = \"10s\" }\nhealth = \"none\"",
    ))
    .await;
    let mut s = TcpStream::connect(r.addr("webmail")).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.starts_with("HTTP/1.1 200") && out.ends_with("slow"),
        "{out:?}"
    );
}
