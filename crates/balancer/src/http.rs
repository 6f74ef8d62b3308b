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
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Incoming};
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
pub fn cookie_server<B>(svc: &ServiceSnap, req: &Request<B>) -> Option<usize> {
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
    send: SendRequest<TrackedBody>,
    _active: OwnedActive,
}

/// One client connection's open connections to servers, by server index.
type Pool = Arc<Mutex<HashMap<usize, Upstream>>>;

/// A client connection's last activity and its requests waiting on a server, for the idle
/// timeout.
#[derive(Debug)]
struct Watch {
    last_ms: AtomicU64,
    waiting: AtomicUsize,
}

/// Counts a request as waiting on its server while it lives (from the end of its body to its
/// response).
struct Waiting(Arc<Watch>);

impl Waiting {
    fn new(w: &Arc<Watch>) -> Waiting {
        w.waiting.fetch_add(1, Ordering::Relaxed);
        Waiting(w.clone())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.last_ms.store(now_ms(), Ordering::Relaxed);
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where a request stands, for the idle timeout.
enum Phase {
    /// Its body is still arriving from the client.
    Receiving,
    /// Its body has arrived whole; it waits on its server.
    Waiting { _guard: Waiting },
    /// Its response is back (or it never went to a server).
    Answered,
}

/// A request body that tells when it has arrived whole: from then until its response is back
/// the request waits on its server, and the client's idle timeout pauses (a slow server is
/// `timeouts.server`'s business). A body that stalls on its way from the client does not pause
/// it.
pub(crate) struct TrackedBody {
    inner: Incoming,
    phase: Arc<Mutex<Phase>>,
    watch: Arc<Watch>,
}

impl TrackedBody {
    fn new(inner: Incoming, watch: &Arc<Watch>) -> TrackedBody {
        let b = TrackedBody {
            inner,
            phase: Arc::new(Mutex::new(Phase::Receiving)),
            watch: watch.clone(),
        };
        if b.inner.is_end_stream() {
            b.arrived();
        }
        b
    }

    fn arrived(&self) {
        let mut p = self.phase.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(*p, Phase::Receiving) {
            *p = Phase::Waiting {
                _guard: Waiting::new(&self.watch),
            };
        }
    }
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        match &r {
            Poll::Ready(None) => self.arrived(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.arrived(),
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        let end = self.inner.is_end_stream();
        if end {
            self.arrived();
        }
        end
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The client's socket, recording the time of every read or write that moved bytes.
struct Watched {
    sock: TcpStream,
    watch: Arc<Watch>,
}

impl tokio::io::AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.sock).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.watch.last_ms.store(now_ms(), Ordering::Relaxed);
        }
        r
    }
}

impl tokio::io::AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.sock).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.watch.last_ms.store(now_ms(), Ordering::Relaxed);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.sock).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.watch.last_ms.store(now_ms(), Ordering::Relaxed);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.sock.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.sock).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.sock).poll_shutdown(cx)
    }
}

/// Serves one client connection until it ends, the balancer stops, or a timeout: a request's
/// header not whole within `timeouts.header` (hyper's header read timeout, which also runs
/// while a kept-alive connection waits for its next request), or no byte moved for
/// `timeouts.client` while no request waits on a server (a stalled body, a client that stopped
/// reading).
pub(crate) async fn serve(
    inner: Arc<Inner>,
    snap: Arc<Snapshot>,
    si: usize,
    sock: TcpStream,
    client: SocketAddr,
) {
    let local = sock.local_addr().unwrap_or(client);
    let pool: Pool = Arc::default();
    let cfg = snap.services[si].cfg.clone();
    let watch = Arc::new(Watch {
        last_ms: AtomicU64::new(now_ms()),
        waiting: AtomicUsize::new(0),
    });
    let w = watch.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        let snap = snap.clone();
        let pool = pool.clone();
        let req = req.map(|b| TrackedBody::new(b, &w));
        let phase = req.body().phase.clone();
        async move {
            let resp = forward(&snap.services[si], pool, req, client, local).await;
            *phase.lock().unwrap_or_else(|e| e.into_inner()) = Phase::Answered;
            Ok::<_, Infallible>(resp)
        }
    });
    let io = Watched {
        sock,
        watch: watch.clone(),
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(cfg.header_timeout)
        .serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let idle = cfg.client_timeout.as_millis() as u64;
    // Soft stop: the request under way is answered, then the connection closes.
    let mut stopping = false;
    loop {
        let deadline = watch.last_ms.load(Ordering::Relaxed).saturating_add(idle);
        let now = now_ms();
        if now >= deadline {
            if watch.waiting.load(Ordering::Relaxed) == 0 {
                tracing::debug!(service = %cfg.name, client = %client, "http client idle timeout");
                return;
            }
            // A request waits on its server (bounded by timeouts.server); look again later.
            watch.last_ms.store(now, Ordering::Relaxed);
            continue;
        }
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(service = %cfg.name, client = %client, error = %e, "http connection ended");
                }
                return;
            }
            _ = inner.shutdown.cancelled(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep(Duration::from_millis(deadline - now)) => {}
        }
    }
}

async fn forward(
    svc: &ServiceSnap,
    pool: Pool,
    mut req: Request<TrackedBody>,
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
