//! The runtime API over HTTP/1.1 (hyper): statistics, metrics, server state and weight, reload.
//!
//! GET  /stats                                  JSON statistics
//! GET  /metrics                                Prometheus text
//! POST /service/{svc}/server/{name}/drain      only persistent clients
//! POST /service/{svc}/server/{name}/maint      nothing new
//! POST /service/{svc}/server/{name}/ready      back in service
//! PUT  /service/{svc}/server/{name}/weight     body: a number (0 to 65535)
//! POST /reload                                 read the file again
//! POST /shutdown                               soft stop, as SIGTERM (open connections go on)
//!
//! Answers are JSON (`{"ok":true}` or `{"error":"..."}`), except `/metrics`. With
//! `[admin] token` set, every request needs `Authorization: Bearer TOKEN` (else 401).
//!
//! Every request that may change something (any method but GET) is logged with who sent it
//! (address and port, and whether a token vouched for it), what it asked and the status it got;
//! a request refused for want of a valid token is logged as a warning.

use std::convert::Infallible;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::balancer::{Balancer, Inner};
use crate::server::AdminState;

/// The largest request body the API reads.
const MAX_BODY: usize = 4096;

pub(crate) fn spawn(inner: Arc<Inner>, listener: TcpListener, token: CancellationToken) {
    let addr = listener.local_addr().ok();
    tracing::info!(listen = ?addr, "runtime API listening");
    let weak = Arc::downgrade(&inner);
    drop(inner);
    tokio::spawn(async move {
        let listen = addr
            .map(|a| a.to_string())
            .unwrap_or_else(|| "runtime API".into());
        crate::accept::accept_loop(&listener, &listen, &token, |sock, peer| {
            let Some(inner) = weak.upgrade() else {
                return ControlFlow::Break(());
            };
            let permitted = {
                let snap_cfg = inner_admin_access(&inner);
                snap_cfg.is_none_or(|a| a.permits(crate::proxy::client_ip(peer).ip()))
            };
            if !permitted {
                return ControlFlow::Continue(());
            }
            let conn_token = token.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let b = Balancer {
                        inner: inner.clone(),
                    };
                    async move { Ok::<_, Infallible>(handle_logged(b, req, peer).await) }
                });
                let conn = http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(sock), svc);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    _ = conn_token.cancelled() => {
                        // A request being answered (POST /shutdown itself) still gets its answer.
                        conn.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(Duration::from_secs(5), conn.as_mut()).await;
                    }
                }
            });
            ControlFlow::Continue(())
        })
        .await;
    });
}

fn inner_admin_access(inner: &Inner) -> Option<crate::access::Access> {
    let (config, _) = inner.view();
    config.admin.map(|a| a.access)
}

fn json(status: StatusCode, v: serde_json::Value) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec_pretty(&v).unwrap_or_default();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response<Full<Bytes>> {
    json(status, serde_json::json!({ "error": msg.into() }))
}

/// What a change set, when the path alone does not say (a weight's value): the runtime API's
/// log line for the change carries it.
#[derive(Clone)]
struct Change(String);

fn ok() -> Response<Full<Bytes>> {
    json(StatusCode::OK, serde_json::json!({ "ok": true }))
}

/// Whether `req` carries the token the configuration asks for (or none is asked for).
fn authorized(inner: &Inner, req: &Request<Incoming>) -> bool {
    let (config, _) = inner.view();
    let Some(token) = config.admin.as_ref().and_then(|a| a.token.as_deref()) else {
        return true;
    };
    let given = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    constant_time_eq(given.as_bytes(), token.as_bytes())
}

/// Compares without stopping at the first difference, so the time taken does not tell how much
/// of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// [`handle`], with a log line for every request that may change something: who, what, and
/// how it went.
async fn handle_logged(
    b: Balancer,
    req: Request<Incoming>,
    peer: std::net::SocketAddr,
) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let with_token = {
        let (config, _) = b.inner.view();
        config.admin.as_ref().is_some_and(|a| a.token.is_some())
    };
    let res = handle(b, req).await;
    let status = res.status();
    let who = crate::proxy::client_ip(peer);
    let auth = if with_token { "token" } else { "address" };
    if status == StatusCode::UNAUTHORIZED {
        tracing::warn!(client = %who, %method, %path, "runtime API: refused, no valid token");
    } else if method != Method::GET {
        if status.is_success() {
            match res.extensions().get::<Change>() {
                Some(Change(set)) => tracing::info!(client = %who, auth, %method, %path, ?set,
                    status = status.as_u16(), "runtime API: change made"),
                None => tracing::info!(client = %who, auth, %method, %path,
                    status = status.as_u16(), "runtime API: change made"),
            }
        } else {
            tracing::info!(client = %who, auth, %method, %path, status = status.as_u16(),
                "runtime API: request refused");
        }
    }
    res
}

async fn handle(b: Balancer, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if !authorized(&b.inner, &req) {
        let mut res = error(StatusCode::UNAUTHORIZED, "a valid bearer token is needed");
        res.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Bearer"),
        );
        return res;
    }
    let path = req.uri().path().to_string();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method().clone();
    match (method.clone(), parts.as_slice()) {
        (Method::GET, ["stats"]) => match serde_json::to_value(b.stats()) {
            Ok(v) => json(StatusCode::OK, v),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
        (Method::GET, ["metrics"]) => Response::builder()
            .header("content-type", "text/plain; version=0.0.4")
            .body(Full::new(Bytes::from(crate::stats::prometheus(&b.stats()))))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))),
        (Method::POST, ["reload"]) => match b.reload() {
            Ok(()) => ok(),
            Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
        },
        (Method::POST, ["shutdown"]) => {
            let open = b.open_connections();
            let timeout = b.stop_timeout();
            tracing::info!(
                open_connections = open,
                "soft stop asked through the runtime API"
            );
            b.stop();
            json(
                StatusCode::OK,
                serde_json::json!({
                    "ok": true,
                    "open_connections": open,
                    "stop_timeout_ms": timeout.as_millis() as u64,
                }),
            )
        }
        (Method::POST, ["service", svc, "server", name, action]) => {
            let state = match *action {
                "drain" => AdminState::Drain,
                "maint" => AdminState::Maint,
                "ready" => AdminState::Ready,
                "weight" => return error(StatusCode::METHOD_NOT_ALLOWED, "use PUT for weight"),
                _ => return error(StatusCode::NOT_FOUND, format!("no action {action:?}")),
            };
            match b.set_admin(svc, name, state) {
                Ok(()) => ok(),
                Err(e) => error(StatusCode::NOT_FOUND, e.to_string()),
            }
        }
        (Method::PUT, ["service", svc, "server", name, "weight"]) => {
            let (svc, name) = (svc.to_string(), name.to_string());
            let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(c) => c.to_bytes(),
                Err(e) => return error(StatusCode::BAD_REQUEST, format!("reading the body: {e}")),
            };
            let text = String::from_utf8_lossy(&body);
            let Ok(weight) = text.trim().parse::<u32>() else {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "the body must be a weight from 0 to 65535, not {:?}",
                        text.trim()
                    ),
                );
            };
            match b.set_weight(&svc, &name, weight) {
                Ok(()) => {
                    let mut r = ok();
                    r.extensions_mut()
                        .insert(Change(format!("weight {weight}")));
                    r
                }
                Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
            }
        }
        (
            _,
            ["stats"] | ["metrics"] | ["reload"] | ["shutdown"] | ["service", _, "server", _, _],
        ) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed on {path}"),
        ),
        _ => error(StatusCode::NOT_FOUND, format!("no such resource {path}")),
    }
}
