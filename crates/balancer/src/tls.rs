//! TLS termination: a service's `tls` table (certificates as PEM files, chosen by SNI, loaded by
//! `mailfleet-tls` as the node's `[tls]` is), the handshake with a client, and tcp mode behind
//! it: an IMAPS/POP3S/SMTPS front relayed as plain TCP to the server, with the PROXY header
//! carrying the client's address (seed 002's SSL tunnel). http mode over TLS is `http.rs`'s.
//!
//! The certificate files are read when the configuration is checked (start, `--check`, reload,
//! SIGHUP): a renewed certificate is taken by a reload, and a file that cannot be read or a key
//! that does not fit its certificate refuses the configuration, naming the key.

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::clock::now_ms;
use crate::config::{Mode, RejectStyle, parse_duration};
use crate::proxy::{Client, connect_and_relay, proxy_header_tls};
use crate::relay::Activity;
use crate::snapshot::ServiceSnap;

/// `tls.handshake_timeout` when the file gives none.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A service's `tls` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileTls {
    certificates: Vec<FileCert>,
    #[serde(default)]
    handshake_timeout: Option<String>,
}

/// One `{ cert = "...", key = "..." }`, as the node's `[[tls.certificates]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCert {
    cert: PathBuf,
    key: PathBuf,
}

/// A service's checked `tls` table: its certificates loaded into a server configuration.
#[derive(Debug, Clone)]
pub struct ServiceTls {
    pub config: Arc<rustls::ServerConfig>,
    pub certificates: Vec<mailfleet_tls::CertInfo>,
    /// How long a client may take to finish its handshake.
    pub handshake_timeout: Duration,
}

/// Checks a `tls` table and loads its certificates. Errors are (key under `tls`, problem).
pub(crate) fn check(t: &FileTls, mode: Mode) -> Result<ServiceTls, (String, String)> {
    if t.certificates.is_empty() {
        return Err((
            "tls.certificates".into(),
            "needs at least one { cert = \"...\", key = \"...\" }".into(),
        ));
    }
    let mut loaded = Vec::with_capacity(t.certificates.len());
    for (j, c) in t.certificates.iter().enumerate() {
        let key = |rest: &str| format!("tls.certificates[{j}]{rest}");
        let pair = mailfleet_tls::load_pair(&c.cert, &c.key).map_err(|e| {
            let which = match &e {
                mailfleet_tls::TlsError::Read { path, .. }
                | mailfleet_tls::TlsError::Pem { path, .. } => {
                    if *path == c.key.display().to_string() && c.key != c.cert {
                        ".key"
                    } else {
                        ".cert"
                    }
                }
                _ => "",
            };
            (key(which), e.to_string())
        })?;
        loaded.push(pair);
    }
    let setup = mailfleet_tls::from_loaded(loaded)
        .map_err(|e| ("tls.certificates".to_string(), e.to_string()))?;
    let mut config = (*setup.config).clone();
    if mode == Mode::Http {
        // The balancer speaks HTTP/1.1 only: a client offering h2 must not pick it.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
    }
    let handshake_timeout = match &t.handshake_timeout {
        None => DEFAULT_HANDSHAKE_TIMEOUT,
        Some(v) => match parse_duration(v) {
            Ok(d) if d.is_zero() => {
                return Err((
                    "tls.handshake_timeout".into(),
                    "must be more than zero".into(),
                ));
            }
            Ok(d) => d,
            Err(p) => return Err(("tls.handshake_timeout".into(), p)),
        },
    };
    Ok(ServiceTls {
        config: Arc::new(config),
        certificates: setup.certificates,
        handshake_timeout,
    })
}

/// The TLS handshake with a client, within `tls.handshake_timeout`; None (logged) if it fails.
pub(crate) async fn handshake(
    svc: &ServiceSnap,
    tls: &ServiceTls,
    sock: TcpStream,
    client: SocketAddr,
) -> Option<TlsStream<TcpStream>> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.clone());
    match tokio::time::timeout(tls.handshake_timeout, acceptor.accept(sock)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::debug!(service = %svc.cfg.name, client = %client, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(service = %svc.cfg.name, client = %client, "TLS handshake timed out");
            None
        }
    }
}

/// tcp mode behind TLS: handshake, then the tcp path of `proxy.rs` (`connect_and_relay`:
/// persistent server or the scheduler's, PROXY header with the client's TLS, idle timeouts)
/// with the decrypted stream.
pub(crate) async fn serve_tcp(
    svc: &ServiceSnap,
    tls: &ServiceTls,
    sock: TcpStream,
    client: SocketAddr,
    configured: SocketAddr,
) {
    let local = if svc.needs_local {
        sock.local_addr().unwrap_or(configured)
    } else {
        configured
    };
    let Some(stream) = handshake(svc, tls, sock, client).await else {
        return;
    };
    let (_, session) = stream.get_ref();
    let client_tls = mailfleet_proxy_protocol::ClientTls {
        version: session
            .protocol_version()
            .and_then(|v| v.as_str())
            .map(str::to_string),
        cipher: session
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str())
            .map(str::to_string),
    };
    let header = proxy_header_tls(svc.cfg.proxy_protocol, client, local, Some(&client_tls));
    connect_and_relay(svc, Client::Tls(Box::new(stream)), client, local, header).await;
}

/// Tells a refused client why (inside TLS), and closes.
pub(crate) async fn reject(s: &mut TlsStream<TcpStream>, style: RejectStyle) {
    let line: &[u8] = match style {
        RejectStyle::None => b"",
        RejectStyle::Smtp => b"421 4.3.2 Service not available, closing transmission channel\r\n",
        RejectStyle::Imap => b"* BYE Service not available\r\n",
        RejectStyle::Pop3 => b"-ERR Service not available\r\n",
        RejectStyle::Http => {
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        if !line.is_empty() {
            s.write_all(line).await?;
        }
        s.shutdown().await
    })
    .await;
}

/// Relays between a client's TLS stream and its server until both directions have ended, one
/// fails, or a side stays idle past its timeout.
pub(crate) async fn relay<C, S>(
    client: C,
    server: S,
    bytes_in: &AtomicU64,
    bytes_out: &AtomicU64,
    client_timeout: Duration,
    server_timeout: Duration,
    ack_client: Option<RawFd>,
) -> io::Result<()>
where
    C: AsyncRead + AsyncWrite,
    S: AsyncRead + AsyncWrite,
{
    let act = Activity::new();
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut sr, mut sw) = tokio::io::split(server);
    let both = async {
        tokio::try_join!(
            one_way(&mut cr, &mut sw, bytes_in, &act, ack_client),
            one_way(&mut sr, &mut cw, bytes_out, &act, None)
        )
    };
    tokio::pin!(both);
    let client_to = client_timeout.as_millis() as u64;
    let server_to = server_timeout.as_millis() as u64;
    loop {
        let c = act
            .client_ms
            .load(Ordering::Relaxed)
            .saturating_add(client_to);
        let s = act
            .server_ms
            .load(Ordering::Relaxed)
            .saturating_add(server_to);
        let deadline = c.min(s);
        let now = now_ms();
        if now >= deadline {
            let which = if c <= s { "client" } else { "server" };
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{which} idle timeout"),
            ));
        }
        tokio::select! {
            r = &mut both => return r.map(|_| ()),
            _ = tokio::time::sleep(Duration::from_millis(deadline - now)) => {}
        }
    }
}

/// One direction: copies until `src` ends, then ends `dst`'s stream (a TLS close_notify towards
/// the client, a FIN towards the server). A TLS client that closes without close_notify has
/// ended its stream too (many mail clients do). `ack`: the client's socket, whose every read
/// is acknowledged at once (a service's `quick_ack`).
async fn one_way<R, W>(
    src: &mut R,
    dst: &mut W,
    counter: &AtomicU64,
    act: &Activity,
    ack: Option<RawFd>,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match src.read(&mut buf).await {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(e),
        };
        if n == 0 {
            let _ = dst.shutdown().await;
            return Ok(());
        }
        if let Some(fd) = ack {
            // SAFETY: `fd` is the client stream's socket, which the relay owns (split into
            // `src` and its writing half) for as long as this runs.
            crate::relay::ack_now(&unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) });
        }
        let now = now_ms();
        act.client_ms.store(now, Ordering::Relaxed);
        act.server_ms.store(now, Ordering::Relaxed);
        dst.write_all(&buf[..n]).await?;
        dst.flush().await?;
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &std::path::Path, name: &str) -> (PathBuf, PathBuf) {
        let g = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, g.cert.pem()).unwrap();
        std::fs::write(&key, g.key_pair.serialize_pem()).unwrap();
        (cert, key)
    }

    fn file(certs: &[(PathBuf, PathBuf)], timeout: Option<&str>) -> FileTls {
        FileTls {
            certificates: certs
                .iter()
                .map(|(c, k)| FileCert {
                    cert: c.clone(),
                    key: k.clone(),
                })
                .collect(),
            handshake_timeout: timeout.map(str::to_string),
        }
    }

    #[test]
    fn loads_and_names_the_bad_key() {
        let dir = tempfile::tempdir().unwrap();
        let a = write_pair(dir.path(), "a.test");
        let b = write_pair(dir.path(), "b.test");
        let ok = check(&file(&[a.clone(), b.clone()], None), Mode::Http).unwrap();
        assert_eq!(ok.certificates.len(), 2);
        assert_eq!(ok.certificates[1].names, vec!["b.test"]);
        assert_eq!(ok.config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert_eq!(ok.handshake_timeout, DEFAULT_HANDSHAKE_TIMEOUT);
        let tcp = check(&file(std::slice::from_ref(&a), Some("3s")), Mode::Tcp).unwrap();
        assert!(tcp.config.alpn_protocols.is_empty());
        assert_eq!(tcp.handshake_timeout, Duration::from_secs(3));

        let (k, p) = check(&file(&[], None), Mode::Tcp).unwrap_err();
        assert_eq!(k, "tls.certificates");
        assert!(p.contains("at least one"), "{p}");

        let missing = dir.path().join("missing.key");
        let (k, p) =
            check(&file(&[a.clone(), (b.0.clone(), missing)], None), Mode::Tcp).unwrap_err();
        assert_eq!(k, "tls.certificates[1].key");
        assert!(p.contains("missing.key"), "{p}");

        let (k, _) = check(
            &file(&[(dir.path().join("nope.pem"), a.1.clone())], None),
            Mode::Tcp,
        )
        .unwrap_err();
        assert_eq!(k, "tls.certificates[0].cert");

        let (k, p) = check(&file(&[(a.0.clone(), b.1.clone())], None), Mode::Tcp).unwrap_err();
        assert_eq!(k, "tls.certificates[0]");
        assert!(p.contains("do not fit"), "{p}");

        let (k, _) = check(&file(std::slice::from_ref(&a), Some("0s")), Mode::Tcp).unwrap_err();
        assert_eq!(k, "tls.handshake_timeout");
        let (k, _) = check(&file(&[a], Some("soon")), Mode::Tcp).unwrap_err();
        assert_eq!(k, "tls.handshake_timeout");
    }
}
