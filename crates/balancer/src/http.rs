//! http mode (webmail): HTTP/1.1 requests relayed to real servers, with cookie persistence and
//! `X-Forwarded-For`.
//!
//! Each client connection is served by hyper; each request picks its server (the cookie's server
//! if it may still take the client, else source-IP persistence if configured, else the
//! scheduler), reuses this client connection's open connection to that server or opens one (with
//! the PROXY header if configured), and streams request and response bodies through. Responses to
//! a client without a valid persistence cookie get one naming the server.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderName, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::balancer::Inner;
use crate::clock::now_ms;
use crate::config::PersistenceKind;
use crate::proxy::{choose_and_connect, persistent_server, proxy_header};
use crate::server::OwnedActive;
use crate::snapshot::{ServiceSnap, Snapshot};

type Body = BoxBody<Bytes, hyper::Error>;

/// Headers that belong to one hop and are not passed on.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
];

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("text/plain"));
    r
}

/// The server named by the persistence cookie, if it may still take the client.
pub fn cookie_server(svc: &ServiceSnap, req: &Request<Incoming>) -> Option<usize> {
    let name = &svc.cfg.cookie_name;
    for h in req.headers().get_all(hyper::header::COOKIE) {
        let Ok(v) = h.to_str() else { continue };
        for pair in v.split(';') {
            let Some((k, val)) = pair.trim().split_once('=') else {
                continue;
            };
            if k == name {
                let i = *svc.server_index.get(val)?;
                return svc.keeps_persistent[i].then_some(i);
            }
        }
    }
    None
}

struct Upstream {
    send: SendRequest<Incoming>,
    _active: OwnedActive,
}

/// One client connection's open connections to servers, by server index.
type Pool = Arc<Mutex<HashMap<usize, Upstream>>>;

pub(crate) async fn serve(
    inner: Arc<Inner>,
    snap: Arc<Snapshot>,
    si: usize,
    sock: TcpStream,
    client: SocketAddr,
) {
    let local = sock.local_addr().unwrap_or(client);
    let pool: Pool = Arc::default();
    let timeout = snap.services[si].cfg.client_timeout;
    let svc = service_fn(move |req| {
        let snap = snap.clone();
        let pool = pool.clone();
        async move { Ok::<_, Infallible>(forward(&snap.services[si], pool, req, client, local).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(timeout)
        .serve_connection(TokioIo::new(sock), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(client = %client, error = %e, "http connection ended");
            }
        }
        _ = inner.shutdown.cancelled() => {}
    }
}

async fn forward(
    svc: &ServiceSnap,
    pool: Pool,
    mut req: Request<Incoming>,
    client: SocketAddr,
    local: SocketAddr,
) -> Response<Body> {
    let by_cookie = if svc.cfg.persistence == PersistenceKind::Cookie {
        cookie_server(svc, &req)
    } else {
        None
    };
    let preferred = by_cookie.or_else(|| persistent_server(svc, client.ip()));

    // Reuse this client's connection to the preferred server, or to any server when the client
    // has no preference (keeps a keep-alive client on one server, as a browser expects).
    let reuse = {
        let mut p = pool.lock().unwrap_or_else(|e| e.into_inner());
        p.retain(|_, u| !u.send.is_closed());
        let key = match preferred {
            Some(i) => p.contains_key(&i).then_some(i),
            None => p.keys().copied().find(|&i| svc.cand_server.contains(&i)),
        };
        key.and_then(|k| p.remove(&k).map(|u| (k, u)))
    };
    let (idx, mut up) = match reuse {
        Some(x) => x,
        None => match open(svc, client, local, preferred).await {
            Some(x) => x,
            None => {
                svc.shared.no_server.fetch_add(1, Ordering::Relaxed);
                return plain(StatusCode::SERVICE_UNAVAILABLE, "no server is available\n");
            }
        },
    };

    // Request headers.
    let h = req.headers_mut();
    for name in HOP_BY_HOP {
        h.remove(name);
    }
    let ip = client.ip().to_string();
    let xff = match h.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {ip}"),
        None => ip,
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        h.insert(HeaderName::from_static("x-forwarded-for"), v);
    }
    h.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("http"),
    );

    if up.send.ready().await.is_err() {
        return plain(
            StatusCode::BAD_GATEWAY,
            "the server closed the connection\n",
        );
    }
    let sent = tokio::time::timeout(svc.cfg.server_timeout, up.send.send_request(req)).await;
    let mut resp = match sent {
        Ok(Ok(r)) => r.map(|b| b.boxed()),
        Ok(Err(e)) => {
            tracing::debug!(server = %svc.servers[idx].name, error = %e, "http request failed");
            return plain(StatusCode::BAD_GATEWAY, "the server failed to answer\n");
        }
        Err(_) => {
            return plain(
                StatusCode::GATEWAY_TIMEOUT,
                "the server did not answer in time\n",
            );
        }
    };
    for name in HOP_BY_HOP {
        resp.headers_mut().remove(name);
    }
    if svc.cfg.persistence == PersistenceKind::Cookie && by_cookie != Some(idx) {
        let c = format!(
            "{}={}; Path=/; HttpOnly",
            svc.cfg.cookie_name, svc.names[idx]
        );
        if let Ok(v) = HeaderValue::from_str(&c) {
            resp.headers_mut().append(hyper::header::SET_COOKIE, v);
        }
    }
    if svc.source_persistent() {
        svc.shared
            .persist
            .open(client.ip(), &svc.names[idx], now_ms());
        svc.shared.persist.close(client.ip(), now_ms());
    }
    pool.lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(idx, up);
    resp
}

/// Opens a connection to a server for this client and starts its HTTP/1.1 client side.
async fn open(
    svc: &ServiceSnap,
    client: SocketAddr,
    local: SocketAddr,
    preferred: Option<usize>,
) -> Option<(usize, Upstream)> {
    let (idx, mut stream) = choose_and_connect(svc, client, local, preferred).await?;
    let server = svc.servers[idx].clone();
    let header = proxy_header(svc.cfg.proxy_protocol, client, local);
    if !header.is_empty() && stream.write_all(&header).await.is_err() {
        server.connect_errors.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    let (send, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
        Ok(x) => x,
        Err(e) => {
            tracing::debug!(server = %server.name, error = %e, "http handshake failed");
            return None;
        }
    };
    tokio::spawn(async move {
        let _ = conn.await;
    });
    server.total.fetch_add(1, Ordering::Relaxed);
    Some((
        idx,
        Upstream {
            send,
            _active: OwnedActive::new(server),
        },
    ))
}
