//! Accepting clients and relaying them to a real server (tcp mode).
//!
//! The path of a connection: access rules → connection limit → a server (the persistent one if
//! it may still take the client, else the scheduler's pick; up to three servers are tried when a
//! connect fails) → PROXY header → relay with idle timeouts. A client the balancer cannot serve
//! is closed at once, after the service's `reject` line if one is configured.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::accept::{AcceptBackoff, UnregisteredAccept};
use crate::balancer::Inner;
use crate::clock::now_ms;
use crate::config::{Mode, ProxyProtocol, RejectStyle};
use crate::relay::{Activity, relay};
use crate::server::{ActiveGuard, ServerRt};
use crate::snapshot::ServiceSnap;

/// How many servers a client is tried on before it is refused.
const MAX_TRIES: usize = 3;

/// Accepts the clients of `listener` until `token` is cancelled: on every relay thread when
/// they run (each on its own copy of the listener, serving on that thread what it accepted,
/// or on a less busy one; `workers`), else on the current runtime. Accepted clients are
/// registered with the poller of the thread that serves them only (`UnregisteredAccept`).
pub(crate) fn spawn_accept_loop(
    inner: Arc<Inner>,
    listener: TcpListener,
    configured: SocketAddr,
    token: CancellationToken,
) {
    // Shared by the listener's copies.
    let backoff = Arc::new(Mutex::new(AcceptBackoff::new()));
    // Out of this runtime's poller, into the accepting threads'.
    let listener = match listener.into_std() {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(listen = %configured, error = %e, "listener lost");
            return;
        }
    };
    let Some(threads) = crate::workers::relay_threads() else {
        match UnregisteredAccept::new(listener) {
            Ok(l) => {
                tokio::spawn(accept_clients(inner, l, configured, token, backoff));
            }
            Err(e) => tracing::error!(listen = %configured, error = %e, "listener lost"),
        }
        return;
    };
    let mut copies: Vec<_> = (1..threads.len()).map(|_| listener.try_clone()).collect();
    copies.push(Ok(listener));
    for (thread, copy) in threads.zip(copies) {
        let copy = match copy {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(listen = %configured, error = %e, "a relay thread does not accept on this listener");
                continue;
            }
        };
        let (inner, token, backoff) = (inner.clone(), token.clone(), backoff.clone());
        thread.spawn(async move {
            match UnregisteredAccept::new(copy) {
                Ok(l) => accept_clients(inner, l, configured, token, backoff).await,
                Err(e) => tracing::warn!(listen = %configured, error = %e, "a relay thread does not accept on this listener"),
            }
        });
    }
}

async fn accept_clients(
    inner: Arc<Inner>,
    listener: UnregisteredAccept,
    configured: SocketAddr,
    token: CancellationToken,
    backoff: Arc<Mutex<AcceptBackoff>>,
) {
    let serve = |sock, peer| {
        let inner2 = inner.clone();
        crate::workers::serve(&inner.tracker, sock, move |sock| {
            handle(inner2, sock, peer, configured)
        });
        std::ops::ControlFlow::Continue(())
    };
    crate::accept::accept_loop_shared(&listener, &configured, &token, &backoff, serve).await;
}

/// Tells a refused client why, in its protocol, and closes.
pub(crate) async fn reject(mut sock: TcpStream, style: RejectStyle) {
    let line: &[u8] = match style {
        RejectStyle::None => b"",
        RejectStyle::Smtp => b"421 4.3.2 Service not available, closing transmission channel\r\n",
        RejectStyle::Imap => b"* BYE Service not available\r\n",
        RejectStyle::Pop3 => b"-ERR Service not available\r\n",
        RejectStyle::Http => {
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        }
    };
    if !line.is_empty() {
        let _ = tokio::time::timeout(Duration::from_secs(1), sock.write_all(line)).await;
    }
    let _ = sock.shutdown().await;
}

/// Normalises a v4-mapped IPv6 client to IPv4 (persistence, PROXY headers, logs).
pub(crate) fn client_ip(peer: SocketAddr) -> SocketAddr {
    match peer.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), peer.port()),
            None => peer,
        },
        _ => peer,
    }
}

/// Holds a service connection slot.
pub(crate) struct SlotGuard<'a>(&'a std::sync::atomic::AtomicU64);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Takes a connection slot of the service, or None when `max_connections` are open.
pub(crate) fn take_slot(svc: &ServiceSnap) -> Option<SlotGuard<'_>> {
    let active = &svc.shared.active;
    if active.fetch_add(1, Ordering::Relaxed) >= svc.cfg.max_connections {
        active.fetch_sub(1, Ordering::Relaxed);
        svc.shared.rejected_full.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    svc.shared.total.fetch_add(1, Ordering::Relaxed);
    Some(SlotGuard(active))
}

/// The persistent server of `client`, if it may still take the client.
pub(crate) fn persistent_server(svc: &ServiceSnap, client: IpAddr) -> Option<usize> {
    if !svc.source_persistent() {
        return None;
    }
    let name = svc.shared.persist.lookup(
        client,
        now_ms(),
        svc.cfg.persistence_timeout.as_millis() as u64,
    )?;
    let i = *svc.server_index.get(&name)?;
    svc.keeps_persistent[i].then_some(i)
}

/// Connects to the server `server` for a client that came in on `local`.
async fn connect(
    svc: &ServiceSnap,
    server: &ServerRt,
    local: SocketAddr,
) -> std::io::Result<TcpStream> {
    let Some(addr) = server.addr(local.port()) else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} has not resolved yet", server.host),
        ));
    };
    let keepalive = svc.cfg.tcp_keepalive;
    match tokio::time::timeout(svc.cfg.connect_timeout, connect_nodelay(addr, keepalive)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "no connection to {addr} within {:?}",
                svc.cfg.connect_timeout
            ),
        )),
    }
}

/// Opens a TCP connection to `addr` with TCP_NODELAY set before the handshake (a relay forwards
/// what it reads at once; it has nothing to coalesce), and TCP keepalive after `keepalive` idle
/// (the service's `tcp_keepalive`).
///
/// The handshake has finished when the socket turns writable: a socket still connecting is
/// never writable, and a failed one reports an error or hang-up condition, whose cause is then
/// read from the socket. So a successful connection costs no extra query of the socket's error.
async fn connect_nodelay(
    addr: SocketAddr,
    keepalive: Option<Duration>,
) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    use tokio::io::Interest;
    #[cfg(target_os = "linux")]
    let ty = Type::STREAM.nonblocking();
    #[cfg(not(target_os = "linux"))]
    let ty = Type::STREAM;
    let s = Socket::new(Domain::for_address(addr), ty, Some(Protocol::TCP))?;
    #[cfg(not(target_os = "linux"))]
    s.set_nonblocking(true)?;
    s.set_nodelay(true)?;
    if keepalive.is_some() {
        crate::keepalive::set(&s, keepalive)?;
    }
    match s.connect(&addr.into()) {
        Ok(()) => {}
        Err(e)
            if e.raw_os_error() == Some(libc::EINPROGRESS)
                || e.kind() == std::io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    let stream = TcpStream::from_std(std::net::TcpStream::from(s))?;
    let ready = stream.ready(Interest::WRITABLE | Interest::ERROR).await?;
    if ready.is_error() || ready.is_write_closed() {
        return Err(stream.take_error()?.unwrap_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                format!("the connection to {addr} closed during the handshake"),
            )
        }));
    }
    Ok(stream)
}

/// Picks and connects a server: the persistent one first, then the scheduler's choices.
/// Returns the index into `svc.servers` and the stream.
pub(crate) async fn choose_and_connect(
    svc: &ServiceSnap,
    client: SocketAddr,
    local: SocketAddr,
    preferred: Option<usize>,
) -> Option<(usize, TcpStream)> {
    let ip = client.ip();
    // At most MAX_TRIES of each: kept on the stack.
    let mut tried_cands = Tried::default();
    let mut tried_servers = Tried::default();
    let mut first = preferred;
    for _ in 0..MAX_TRIES {
        let idx = match first.take() {
            Some(i) => i,
            None => {
                let c = svc
                    .scheduler
                    .pick_excluding(ip, &svc.cands, tried_cands.as_slice())?;
                tried_cands.push(c);
                let i = svc.cand_server[c];
                if tried_servers.as_slice().contains(&i) {
                    continue;
                }
                i
            }
        };
        tried_servers.push(idx);
        let server = &svc.servers[idx];
        // Counted until the caller counts the connection as open (or the connect fails).
        let _connecting = crate::server::ActiveGuard::new(&server.connecting);
        match connect(svc, server, local).await {
            Ok(s) => return Some((idx, s)),
            Err(e) => {
                server.connect_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(service = %svc.cfg.name, server = %server.name, error = %e, "connect failed");
            }
        }
    }
    None
}

/// The indexes already tried for one client (at most one per try).
#[derive(Default)]
struct Tried {
    items: [usize; MAX_TRIES],
    len: usize,
}

impl Tried {
    fn push(&mut self, i: usize) {
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = i;
            self.len += 1;
        }
    }

    fn as_slice(&self) -> &[usize] {
        &self.items[..self.len]
    }
}

/// The PROXY header for a client connection.
pub(crate) fn proxy_header(pp: ProxyProtocol, client: SocketAddr, local: SocketAddr) -> Vec<u8> {
    proxy_header_tls(pp, client, local, None)
}

/// The PROXY header for a client connection whose TLS the balancer terminated (`tls`): v2
/// carries it in an SSL TLV, so a node that trusts the balancer treats the session as TLS; v1
/// has no way to say it.
pub(crate) fn proxy_header_tls(
    pp: ProxyProtocol,
    client: SocketAddr,
    local: SocketAddr,
    tls: Option<&mailfleet_proxy_protocol::ClientTls>,
) -> Vec<u8> {
    let local = client_ip(local);
    match (pp, tls) {
        (ProxyProtocol::None, _) => Vec::new(),
        (ProxyProtocol::V1, _) => mailfleet_proxy_protocol::encode_v1(client, local),
        (ProxyProtocol::V2, None) => mailfleet_proxy_protocol::encode_v2(client, local),
        (ProxyProtocol::V2, Some(tls)) => {
            mailfleet_proxy_protocol::encode_v2_tls(client, local, tls)
        }
    }
}

async fn handle(inner: Arc<Inner>, sock: TcpStream, peer: SocketAddr, configured: SocketAddr) {
    let snap = inner.snap.load_full();
    let Some(&si) = snap.by_listen.get(&configured) else {
        return;
    };
    let svc = &snap.services[si];
    let client = client_ip(peer);
    if !svc.cfg.access.permits(client.ip()) {
        svc.shared.denied.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(service = %svc.cfg.name, client = %client, "denied by the access rules");
        drop(sock);
        return;
    }
    let Some(_slot) = take_slot(svc) else {
        // A TLS port is not told in plain text.
        let style = match svc.cfg.tls {
            Some(_) => RejectStyle::None,
            None => svc.cfg.reject,
        };
        reject(sock, style).await;
        return;
    };
    // The http and TLS paths' futures are boxed: inline, their state (several KiB) would make
    // every connection's task that large, and it is copied as the task is made.
    if svc.cfg.mode == Mode::Http {
        Box::pin(crate::http::serve(
            inner.clone(),
            snap.clone(),
            si,
            sock,
            client,
            configured,
        ))
        .await;
        return;
    }
    if let Some(tls) = &svc.cfg.tls {
        Box::pin(crate::tls::serve_tcp(svc, tls, sock, client, configured)).await;
        return;
    }
    let local = if svc.needs_local {
        sock.local_addr().unwrap_or(configured)
    } else {
        configured
    };
    // The server side gets TCP_NODELAY before connecting; on Linux the client side inherited it
    // from the listener (`balancer::bind`).
    #[cfg(not(target_os = "linux"))]
    let _ = sock.set_nodelay(true);
    let header = proxy_header(svc.cfg.proxy_protocol, client, local);
    connect_and_relay(svc, Client::Plain(sock), client, local, header).await;
}

/// A tcp-mode client that the balancer serves: as accepted, or behind the TLS the balancer
/// terminated (`tls.rs`).
pub(crate) enum Client {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Client {
    /// Tells the client why it is refused, in its protocol, and closes.
    async fn reject(self, style: RejectStyle) {
        match self {
            Client::Plain(sock) => reject(sock, style).await,
            Client::Tls(mut stream) => crate::tls::reject(&mut stream, style).await,
        }
    }

    /// Relays between the client and its server `up` with the service's idle timeouts.
    async fn relay(
        self,
        svc: &ServiceSnap,
        up: TcpStream,
        server: &ServerRt,
    ) -> std::io::Result<()> {
        match self {
            Client::Plain(sock) => run_relay(svc, &sock, &up, server, &Activity::new()).await,
            // Boxed, as `handle`'s other paths are: plain clients' tasks stay small.
            Client::Tls(stream) => {
                let ack_client = svc
                    .cfg
                    .quick_ack
                    .then(|| std::os::fd::AsRawFd::as_raw_fd(stream.get_ref().0));
                Box::pin(crate::tls::relay(
                    *stream,
                    up,
                    &server.bytes_in,
                    &server.bytes_out,
                    svc.cfg.client_timeout,
                    svc.cfg.server_timeout,
                    ack_client,
                ))
                .await
            }
        }
    }
}

/// The tcp path once a client is admitted (access rules, connection slot, TLS handshake):
/// a server (the persistent one if it may still take the client, else the scheduler's pick,
/// up to three tried), the PROXY `header` if any, then the relay until the connection ends.
/// A client no server takes is refused with the service's `reject` line.
pub(crate) async fn connect_and_relay(
    svc: &ServiceSnap,
    conn: Client,
    client: SocketAddr,
    local: SocketAddr,
    header: Vec<u8>,
) {
    let preferred = persistent_server(svc, client.ip());
    let Some((idx, mut up)) = choose_and_connect(svc, client, local, preferred).await else {
        svc.shared.no_server.fetch_add(1, Ordering::Relaxed);
        if preferred.is_some() {
            svc.shared.persist.forget(client.ip());
        }
        tracing::debug!(service = %svc.cfg.name, client = %client, "no server can take the client");
        conn.reject(svc.cfg.reject).await;
        return;
    };
    let server = svc.servers[idx].clone();
    if !header.is_empty() && up.write_all(&header).await.is_err() {
        server.connect_errors.fetch_add(1, Ordering::Relaxed);
        conn.reject(svc.cfg.reject).await;
        return;
    }
    server.total.fetch_add(1, Ordering::Relaxed);
    let _active = ActiveGuard::new(&server.active);
    let persist = svc.source_persistent();
    if persist {
        svc.shared
            .persist
            .open(client.ip(), &svc.names[idx], now_ms());
    }
    if let Err(e) = conn.relay(svc, up, &server).await {
        tracing::debug!(service = %svc.cfg.name, server = %server.name, client = %client, error = %e, "connection ended");
    }
    if persist {
        svc.shared.persist.close(client.ip(), now_ms());
    }
}

/// Relays with the service's idle timeouts. Shutdown does not cut open connections: the
/// listeners close and the connections drain (`Balancer::wait`), or end with the process.
async fn run_relay(
    svc: &ServiceSnap,
    client: &TcpStream,
    server_sock: &TcpStream,
    server: &ServerRt,
    act: &Activity,
) -> std::io::Result<()> {
    let client_to = svc.cfg.client_timeout.as_millis() as u64;
    let server_to = svc.cfg.server_timeout.as_millis() as u64;
    let r = relay(
        svc.cfg.relay,
        client,
        server_sock,
        &server.bytes_in,
        &server.bytes_out,
        act,
        svc.cfg.quick_ack,
    );
    tokio::pin!(r);
    loop {
        let c = act.client_ms.load(Ordering::Relaxed) + client_to;
        let s = act.server_ms.load(Ordering::Relaxed) + server_to;
        let deadline = c.min(s);
        let now = now_ms();
        if now >= deadline {
            let which = if c <= s { "client" } else { "server" };
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{which} idle timeout"),
            ));
        }
        tokio::select! {
            r = &mut r => return r,
            _ = tokio::time::sleep(Duration::from_millis(deadline - now)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn both_sides_of_a_relay_have_nodelay() {
        let l = crate::balancer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        crate::keepalive::set(&l, Some(Duration::from_secs(600))).unwrap();
        let keepalive = Some(Duration::from_secs(300));
        let (up, accepted) = tokio::join!(connect_nodelay(addr, keepalive), l.accept());
        let up = up.unwrap();
        assert!(up.nodelay().unwrap(), "server side");
        let ka = socket2::SockRef::from(&up);
        assert!(ka.keepalive().unwrap(), "server side keepalive");
        #[cfg(target_os = "linux")]
        assert_eq!(ka.keepalive_time().unwrap(), Duration::from_secs(300));
        let (client_side, _) = accepted.unwrap();
        #[cfg(target_os = "linux")]
        assert!(
            client_side.nodelay().unwrap(),
            "inherited from the listener"
        );
        #[cfg(target_os = "linux")]
        assert_eq!(
            socket2::SockRef::from(&client_side)
                .keepalive_time()
                .unwrap(),
            Duration::from_secs(600),
            "keepalive inherited from the listener"
        );
        #[cfg(not(target_os = "linux"))]
        let _ = client_side;
    }

    #[tokio::test]
    async fn a_refused_connect_is_an_error() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let e = connect_nodelay(addr, None).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    }
}
