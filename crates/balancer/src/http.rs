//! http mode (webmail): HTTP/1.1 requests relayed to real servers, with cookie persistence,
//! `X-Forwarded-For` and `X-Forwarded-Proto`, over plain TCP or TLS (`tls.rs` makes the
//! handshake), and plain listeners that redirect to https (`redirect_http`).
//!
//! Each client connection is served by hyper and kept alive across requests (HTTP/1.1); each
//! request picks its server (the cookie's server if it may still take the client, else
//! source-IP persistence if configured, else the scheduler), reuses this client connection's
//! open connection to that server or opens one (with the PROXY header if configured), and
//! streams request and response bodies through. Responses to a client without a valid
//! persistence cookie get one naming the server (`Secure` over TLS).
//!
//! `X-Forwarded-For` gets the client's address appended (a client's own value stays in front
//! of it: a server should trust only the last entry); `X-Forwarded-Proto` is replaced by `http`
//! or `https`, as the client connected.

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
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
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

/// The client's socket (or TLS stream), recording the time of every read or write that moved
/// bytes.
struct Watched<S> {
    sock: S,
    watch: Arc<Watch>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
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

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
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

/// Serves one client connection that came in on the listener `configured`: a redirect to https
/// on a `redirect_http` listener, else requests relayed (after the TLS handshake if the service
/// has `tls`).
pub(crate) async fn serve(
    inner: Arc<Inner>,
    snap: Arc<Snapshot>,
    si: usize,
    sock: TcpStream,
    client: SocketAddr,
    configured: SocketAddr,
) {
    let local = sock.local_addr().unwrap_or(client);
    let svc = &snap.services[si];
    if svc.cfg.redirect_http.contains(&configured) {
        redirect(inner, snap.clone(), si, sock, client, local).await;
        return;
    }
    match svc.cfg.tls.clone() {
        None => relay_requests(inner, snap, si, sock, client, local, false).await,
        Some(tls) => {
            let Some(stream) = crate::tls::handshake(svc, &tls, sock, client).await else {
                return;
            };
            relay_requests(inner, snap, si, stream, client, local, true).await;
        }
    }
}

/// Serves one client connection until it ends, the balancer stops, or a timeout: a request's
/// header not whole within `timeouts.header` (hyper's header read timeout, which also runs
/// while a kept-alive connection waits for its next request), or no byte moved for
/// `timeouts.client` while no request waits on a server (a stalled body, a client that stopped
/// reading).
async fn relay_requests<S>(
    inner: Arc<Inner>,
    snap: Arc<Snapshot>,
    si: usize,
    sock: S,
    client: SocketAddr,
    local: SocketAddr,
    https: bool,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
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
            let resp = forward(&snap.services[si], pool, req, client, local, https).await;
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
    https: bool,
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
        HeaderValue::from_static(if https { "https" } else { "http" }),
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
            "{}={}; Path=/; HttpOnly{}",
            svc.cfg.cookie_name,
            svc.names[idx],
            if https { "; Secure" } else { "" }
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

/// A `redirect_http` listener's connection: every request (kept alive as the client wishes) is
/// answered `301 Moved Permanently` to the same host and path over https, on the port of the
/// service's first listener (left out when it is 443). A request's header must arrive within
/// `timeouts.header`, and the connection lasts at most `timeouts.client`.
async fn redirect(
    inner: Arc<Inner>,
    snap: Arc<Snapshot>,
    si: usize,
    sock: TcpStream,
    client: SocketAddr,
    local: SocketAddr,
) {
    let svc = &snap.services[si];
    let cfg = svc.cfg.clone();
    // The first listener as bound (a configured port 0 is a real one now).
    let port = crate::balancer::Balancer {
        inner: inner.clone(),
    }
    .listen_addrs(&cfg.name)
    .first()
    .or(cfg.listen.first())
    .map(|a| a.port())
    .unwrap_or(443);
    let svc_fn = service_fn(move |req: Request<Incoming>| async move {
        Ok::<_, Infallible>(redirect_response(&req, port, local))
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(cfg.header_timeout)
        .serve_connection(TokioIo::new(sock), svc_fn);
    tokio::pin!(conn);
    // Bounded: a client may not keep a redirect connection longer than `timeouts.client`.
    let limit = tokio::time::sleep(cfg.client_timeout);
    tokio::pin!(limit);
    let mut stopping = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(service = %cfg.name, client = %client, error = %e, "http redirect connection ended");
                }
                return;
            }
            // Soft stop: the request under way is answered, then the connection closes.
            _ = inner.shutdown.cancelled(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = &mut limit => return,
        }
    }
}

/// `301` to `https://HOST[:PORT]/PATH?QUERY`; HOST from the request (its absolute URI, else its
/// `Host` header, without the port), or the address the client connected to when it sent
/// none. A host that is not a plain name or address gets `400`.
fn redirect_response<B>(req: &Request<B>, port: u16, local: SocketAddr) -> Response<Body> {
    let given = req.uri().host().map(str::to_string).or_else(|| {
        req.headers()
            .get(hyper::header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    });
    let host = match given {
        Some(h) => match host_without_port(&h) {
            Some(h) => h.to_ascii_lowercase(),
            None => return plain(StatusCode::BAD_REQUEST, "bad Host header\n"),
        },
        None => match crate::proxy::client_ip(local).ip() {
            std::net::IpAddr::V4(ip) => ip.to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        },
    };
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| p.starts_with('/'))
        .unwrap_or("/");
    let location = if port == 443 {
        format!("https://{host}{path}")
    } else {
        format!("https://{host}:{port}{path}")
    };
    let Ok(value) = HeaderValue::from_str(&location) else {
        return plain(StatusCode::BAD_REQUEST, "bad request target\n");
    };
    let mut r = plain(StatusCode::MOVED_PERMANENTLY, "moved to https\n");
    r.headers_mut().insert(hyper::header::LOCATION, value);
    r
}

/// `name`, `name:port`, `[v6]` or `[v6]:port` → the host part (brackets kept); None for
/// anything else (a user part, a path, odd characters).
fn host_without_port(h: &str) -> Option<&str> {
    let h = h.trim();
    let (host, port) = if let Some(rest) = h.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        inside.parse::<std::net::Ipv6Addr>().ok()?;
        (&h[..inside.len() + 2], after.strip_prefix(':'))
    } else {
        match h.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (h, None),
        }
    };
    if let Some(p) = port
        && p.parse::<u16>().is_err()
    {
        return None;
    }
    if host.is_empty() || host.len() > 253 {
        return None;
    }
    let ok = host.starts_with('[')
        || host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    ok.then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_for_the_redirect() {
        assert_eq!(
            host_without_port("Mail.Example.com"),
            Some("Mail.Example.com")
        );
        assert_eq!(
            host_without_port("mail.example.com:80"),
            Some("mail.example.com")
        );
        assert_eq!(host_without_port("[::1]:8080"), Some("[::1]"));
        assert_eq!(host_without_port("[::1]"), Some("[::1]"));
        assert_eq!(host_without_port("192.0.2.1:80"), Some("192.0.2.1"));
        assert_eq!(host_without_port("a@b"), None);
        assert_eq!(host_without_port("a/b"), None);
        assert_eq!(host_without_port("a:b"), None);
        assert_eq!(host_without_port("[nope]:1"), None);
        assert_eq!(host_without_port(""), None);
    }

    #[test]
    fn redirect_keeps_host_and_path() {
        let local: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let req = Request::builder()
            .uri("/owa/?a=1")
            .header("host", "Mail.example.com:80")
            .body(())
            .unwrap();
        let r = redirect_response(&req, 443, local);
        assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
        assert_eq!(r.headers()["location"], "https://mail.example.com/owa/?a=1");
        let r = redirect_response(&req, 8443, local);
        assert_eq!(
            r.headers()["location"],
            "https://mail.example.com:8443/owa/?a=1"
        );
        let bare = Request::builder().uri("/").body(()).unwrap();
        let r = redirect_response(&bare, 443, local);
        assert_eq!(r.headers()["location"], "https://127.0.0.1/");
        let bad = Request::builder()
            .uri("/")
            .header("host", "evil.test/x")
            .body(())
            .unwrap();
        assert_eq!(
            redirect_response(&bad, 443, local).status(),
            StatusCode::BAD_REQUEST
        );
    }
}
