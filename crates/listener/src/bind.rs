//! Opening a listening socket for a service on one of a node's bind addresses.
//!
//! The IPv6 wildcard `[::]` (what `bind = "*"` becomes) is opened with `IPV6_V6ONLY` off, so one
//! socket takes IPv4 clients too, whatever the system's `net.ipv6.bindv6only`; on a machine
//! without IPv6 it falls back to `0.0.0.0`.

use std::io;
use std::net::{IpAddr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};
use thiserror::Error;
use tokio::net::TcpListener;

/// Pending connections the kernel keeps per listening socket.
const BACKLOG: i32 = 1024;

/// A socket that could not be opened, with the address it was for.
#[derive(Debug, Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    #[source]
    pub source: io::Error,
}

fn open(addr: SocketAddr) -> io::Result<TcpListener> {
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        socket.set_only_v6(false)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// Opens a listening socket on `addr` (see the module's notes for `[::]`). Must be called
/// within a tokio runtime.
pub fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, BindError> {
    match open(addr) {
        Ok(l) => Ok(l),
        Err(e)
            if addr.ip() == IpAddr::from([0u16; 8])
                && e.raw_os_error() == Some(libc::EAFNOSUPPORT) =>
        {
            let v4 = SocketAddr::new(IpAddr::from([0u8; 4]), addr.port());
            tracing::warn!("IPv6 is not available ({e}); listening on {v4} only");
            open(v4).map_err(|source| BindError { addr: v4, source })
        }
        Err(source) => Err(BindError { addr, source }),
    }
}

/// One port of a service as a node opens it: the addresses it listens on (none: the port is
/// off), the protocol that serves it, and whether TLS starts at the first byte.
pub struct Port<P> {
    pub addrs: Vec<SocketAddr>,
    pub protocol: std::sync::Arc<P>,
    pub implicit_tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Opens every address of every port first, so that a port that cannot be opened fails the
/// start before anything is served, then serves each on its own [`crate::Listener`] task, all
/// counted in `connections` and taken in through `intake`. Returns (service name, bound
/// address) for each socket, in order.
pub fn bind_and_serve<P: crate::Protocol>(
    ports: Vec<Port<P>>,
    connections: &std::sync::Arc<crate::Connections>,
    trusted_proxies: &mailfleet_ip_rules::IpRules,
    intake: &crate::Intake,
) -> Result<Vec<(&'static str, SocketAddr)>, BindError> {
    let mut sockets = Vec::new();
    for port in &ports {
        for addr in &port.addrs {
            sockets.push((bind_tcp(*addr)?, *addr));
        }
    }
    let mut bound = Vec::new();
    let mut sockets = sockets.into_iter();
    for port in ports {
        let name = port.protocol.name();
        for (socket, addr) in sockets.by_ref().take(port.addrs.len()) {
            let local = socket.local_addr().unwrap_or(addr);
            tracing::info!("{name} listening on {local}");
            bound.push((name, local));
            let listener = crate::Listener {
                protocol: port.protocol.clone(),
                connections: connections.clone(),
                trusted_proxies: trusted_proxies.clone(),
                implicit_tls: port.implicit_tls.clone(),
                sessions: intake.sessions.clone(),
            };
            tokio::spawn(listener.run(socket, intake.accepting.clone()));
        }
    }
    Ok(bound)
}
