//! http mode behind TLS: the certificate is chosen by SNI, cookie persistence works over https,
//! servers see X-Forwarded-For and X-Forwarded-Proto, a client connection carries several
//! requests, and a plain listener redirects to https.

mod common;
mod tls_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tls_support::{cert, connect, exchange};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// An HTTP/1.1 server answering `NAME XFF XFP` to every request; counts the connections that
/// carried a request (a TCP health check's carry none).
async fn web(name: &'static str) -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let c = conns.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let c = c.clone();
            tokio::spawn(async move {
                let mut first = true;
                let (r, mut w) = s.into_split();
                let mut r = BufReader::new(r);
                loop {
                    let (mut xff, mut xfp, mut len) = ("-".to_string(), "-".to_string(), 0usize);
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if std::mem::take(&mut first) {
                        c.fetch_add(1, Ordering::SeqCst);
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
                            "x-forwarded-proto" => xfp = v.to_string(),
                            "content-length" => len = v.parse().unwrap_or(0),
                            _ => {}
                        }
                    }
                    let mut body = vec![0u8; len];
                    if r.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let out = format!("{name} {xff} {xfp}");
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
    (addr, conns)
}

fn service(
    certs: &[(std::path::PathBuf, std::path::PathBuf)],
    extra: &str,
    servers: &[(&str, SocketAddr)],
) -> String {
    let list: Vec<String> = certs
        .iter()
        .map(|(c, k)| {
            format!(
                "{{ cert = {:?}, key = {:?} }}",
                c.display().to_string(),
                k.display().to_string()
            )
        })
        .collect();
    let mut text = format!(
        "[[service]]\nname = \"webmail\"\nlisten = [\"127.0.0.1:0\"]\nmode = \"http\"\n\
         tls = {{ certificates = [{}] }}\n{extra}\n",
        list.join(", ")
    );
    for (name, addr) in servers {
        text.push_str(&format!(
            "[[service.server]]\nname = \"{name}\"\naddress = \"{addr}\"\n"
        ));
    }
    text
}

#[tokio::test]
async fn sni_chooses_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, ka, der_a) = cert(dir.path(), &["mail.one.test"]);
    let (cb, kb, der_b) = cert(dir.path(), &["*.two.test"]);
    let (web_a, _) = web("a").await;
    let r = common::Running::start(&service(&[(ca, ka), (cb, kb)], "", &[("a", web_a)])).await;
    let vip = r.addr("webmail");

    for (sni, want, which) in [
        (Some("webmail.two.test"), &der_b, "the wildcard certificate"),
        (Some("mail.one.test"), &der_a, "the exact name"),
        (
            Some("other.test"),
            &der_a,
            "the first certificate for an unknown name",
        ),
        (None, &der_a, "the first certificate without SNI"),
    ] {
        let (s, got) = connect("127.0.0.1", vip, sni).await;
        assert_eq!(&got, want, "{sni:?}: expected {which}");
        // The connection works: one request through.
        let mut s = BufReader::new(s);
        let resp = exchange(&mut s, "GET / HTTP/1.1\r\nHost: webmail").await;
        assert_eq!(resp.status, 200, "{resp:?}");
    }
}

#[tokio::test]
async fn cookie_persistence_forwarded_headers_and_keep_alive_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let (c, k, _) = cert(dir.path(), &["webmail.test"]);
    let (web_a, conns_a) = web("a").await;
    let (web_b, conns_b) = web("b").await;
    let text = service(
        &[(c, k)],
        "persistence = { kind = \"cookie\", cookie = \"WM\" }",
        &[("a", web_a), ("b", web_b)],
    );
    let r = common::Running::start(&text).await;
    let vip = r.addr("webmail");

    // Two requests on one TLS connection; the client's own X-Forwarded-Proto is replaced.
    let (s, _) = connect("127.0.0.5", vip, Some("webmail.test")).await;
    let mut s = BufReader::new(s);
    let first = exchange(&mut s, "GET /owa/ HTTP/1.1\r\nHost: webmail.test").await;
    assert_eq!(first.status, 200, "{first:?}");
    let set = first
        .header("set-cookie")
        .expect("a persistence cookie")
        .to_string();
    let server = first.body.split(' ').next().unwrap().to_string();
    assert_eq!(set, format!("WM={server}; Path=/; HttpOnly; Secure"));
    assert_eq!(first.body, format!("{server} 127.0.0.5 https"));
    let cookie = format!("WM={server}");
    let second = exchange(
        &mut s,
        &format!("GET /owa/ HTTP/1.1\r\nHost: webmail.test\r\nCookie: {cookie}\r\nX-Forwarded-Proto: http"),
    )
    .await;
    assert_eq!(second.body, format!("{server} 127.0.0.5 https"));
    assert_eq!(second.header("set-cookie"), None);
    let (conns, other_conns) = if server == "a" {
        (&conns_a, &conns_b)
    } else {
        (&conns_b, &conns_a)
    };
    // Both requests went over one connection to the server.
    assert_eq!(conns.load(Ordering::SeqCst), 1, "keep-alive to the server");
    assert_eq!(other_conns.load(Ordering::SeqCst), 0);
    drop(s);

    // Other browsers' connections (NAT: any address) with the cookie stay on the server.
    for from in ["127.0.0.6", "127.0.0.7", "127.0.0.8", "127.0.0.9"] {
        let (s, _) = connect(from, vip, Some("webmail.test")).await;
        let mut s = BufReader::new(s);
        let resp = exchange(
            &mut s,
            &format!(
                "GET / HTTP/1.1\r\nHost: webmail.test\r\nCookie: x=1; {cookie}\r\nConnection: close"
            ),
        )
        .await;
        assert_eq!(resp.body, format!("{server} {from} https"));
        assert_eq!(resp.header("set-cookie"), None);
    }
    // Without a cookie the scheduler spreads clients: the other server is used too.
    let mut others = 0;
    for _ in 0..4 {
        let (s, _) = connect("127.0.0.10", vip, Some("webmail.test")).await;
        let mut s = BufReader::new(s);
        let resp = exchange(
            &mut s,
            "GET / HTTP/1.1\r\nHost: webmail.test\r\nConnection: close",
        )
        .await;
        others += usize::from(!resp.body.starts_with(&server));
    }
    assert!(others > 0, "the scheduler never chose the other server");
}

#[tokio::test]
async fn plain_http_is_redirected_to_https() {
    let dir = tempfile::tempdir().unwrap();
    let (c, k, _) = cert(dir.path(), &["webmail.test"]);
    let (web_a, conns_a) = web("a").await;
    let text = service(
        &[(c, k)],
        "redirect_http = [\"127.0.0.3:0\"]",
        &[("a", web_a)],
    );
    let r = common::Running::start(&text).await;
    let addrs = r.balancer.listen_addrs("webmail");
    assert_eq!(addrs.len(), 2, "{addrs:?}");
    let (https, plain) = (addrs[0], addrs[1]);
    assert_eq!(plain.ip().to_string(), "127.0.0.3");

    let mut s = BufReader::new(TcpStream::connect(plain).await.unwrap());
    let resp = exchange(&mut s, "GET /owa/?a=1 HTTP/1.1\r\nHost: Webmail.test:80").await;
    assert_eq!(resp.status, 301, "{resp:?}");
    assert_eq!(
        resp.header("location"),
        Some(format!("https://webmail.test:{}/owa/?a=1", https.port()).as_str())
    );
    // The same connection goes on (keep-alive); a bad Host is refused.
    let resp = exchange(&mut s, "GET / HTTP/1.1\r\nHost: evil.test/x").await;
    assert_eq!(resp.status, 400, "{resp:?}");
    assert_eq!(
        conns_a.load(Ordering::SeqCst),
        0,
        "a redirect never reaches a server"
    );

    // The https listener serves requests.
    let (s, _) = connect("127.0.0.1", https, Some("webmail.test")).await;
    let mut s = BufReader::new(s);
    let resp = exchange(&mut s, "GET / HTTP/1.1\r\nHost: webmail.test").await;
    assert_eq!(resp.body, "a 127.0.0.1 https");
}

#[test]
fn configuration_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (c, k, _) = cert(dir.path(), &["webmail.test"]);
    let servers = &[("a", "127.0.0.1:8080".parse().unwrap())];
    let check = |text: &str| {
        mailfleet_balancer::Config::parse(text, "b.toml")
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let e = check(&service(
        &[(c.clone(), dir.path().join("none.key"))],
        "",
        servers,
    ));
    assert!(
        e.contains("service[0].tls.certificates[0].key") && e.contains("none.key"),
        "{e}"
    );
    let e = check(&service(
        &[(c.clone(), k.clone())],
        "redirect_http = [\"nowhere\"]",
        servers,
    ));
    assert!(e.contains("service[0].redirect_http[0]"), "{e}");
    let tcp = service(
        &[(c.clone(), k.clone())],
        "redirect_http = [\"127.0.0.3:80\"]",
        servers,
    )
    .replace("mode = \"http\"", "mode = \"tcp\"");
    // The table form of examples/balancer.toml, after the servers.
    let table_form = format!(
        "{}\n[service.tls]\nhandshake_timeout = \"5s\"\n[[service.tls.certificates]]\n\
         cert = {:?}\nkey = {:?}\n",
        service(&[], "", servers).replace("tls = { certificates = [] }\n", ""),
        c.display().to_string(),
        k.display().to_string()
    );
    let parsed = mailfleet_balancer::Config::parse(&table_form, "b.toml").unwrap();
    let tls = parsed.services[0].tls.as_ref().expect("the tls table");
    assert_eq!(tls.handshake_timeout, std::time::Duration::from_secs(5));
    assert_eq!(tls.certificates[0].names, vec!["webmail.test"]);
    let e = check(&tcp);
    assert!(
        e.contains("service[0].redirect_http[0]") && e.contains("needs mode"),
        "{e}"
    );
}
