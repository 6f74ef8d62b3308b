//! A client connection that may switch to TLS in the middle (STARTTLS), and to DEFLATE
//! compression (IMAP COMPRESS, RFC 4978).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::deflate::Deflate;

pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Plain from a trusted proxy (the balancer) that terminated the client's TLS and said so in
    /// its PROXY v2 header: the client's connection is encrypted up to the proxy, so it counts as
    /// TLS here (logins allowed, no STARTTLS offered).
    ProxiedTls(TcpStream, Box<ProxiedTls>),
    /// Raw DEFLATE both ways over a plain or TLS connection.
    Deflate(Box<Deflate<Conn>>),
    /// Only while switching to TLS.
    Empty,
}

/// What a trusted proxy said of the client's TLS, which it terminated.
#[derive(Debug, Clone)]
pub struct ProxiedTls {
    pub proxy: std::net::SocketAddr,
    pub version: Option<String>,
    pub cipher: Option<String>,
}

impl ProxiedTls {
    pub fn from_header(
        proxy: std::net::SocketAddr,
        tls: mailfleet_proxy_protocol::ClientTls,
    ) -> Self {
        Self {
            proxy,
            version: tls.version,
            cipher: tls.cipher,
        }
    }
}

impl Conn {
    /// Whether TLS is underneath (compressed or not), here or at the trusted proxy in front.
    pub fn is_tls(&self) -> bool {
        match self {
            Conn::Tls(_) | Conn::ProxiedTls(..) => true,
            Conn::Deflate(d) => d.get_ref().is_tls(),
            _ => false,
        }
    }

    /// The TCP connection underneath every layer.
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Conn::Plain(s) | Conn::ProxiedTls(s, _) => Some(s),
            Conn::Tls(s) => Some(s.get_ref().0),
            Conn::Deflate(d) => d.get_ref().tcp(),
            Conn::Empty => None,
        }
    }

    /// Acknowledges what has arrived now rather than when the kernel's delayed-ACK timer fires
    /// (Linux's TCP_QUICKACK, which also leaves its "interactive" mode of delaying ACKs).
    ///
    /// A session calls this when it waits for the rest of a command it has begun to read, such
    /// as the line end or next message after an APPEND literal. A client that writes the rest
    /// in a second small write without TCP_NODELAY (Python's imaplib writes a literal and its
    /// CRLF apart) has it held back by Nagle's algorithm until its previous bytes are
    /// acknowledged, and the server sends nothing that would carry the ACK: each such APPEND
    /// waited for the delayed ACK, about 40 ms on Linux.
    pub fn ack_now(&self) {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Some(tcp) = self.tcp() {
            // Only a hint: a socket that refuses it loses the shortcut, nothing else.
            let _ = socket2::SockRef::from(tcp).set_quickack(true);
        }
    }

    pub fn is_compressed(&self) -> bool {
        matches!(self, Conn::Deflate(_))
    }

    /// From now on everything read and written is raw DEFLATE. `pending` is what was read
    /// from the connection after the command that turned it on: compressed input, inflated
    /// first.
    pub fn start_deflate(&mut self, pending: &[u8]) {
        let inner = std::mem::replace(self, Conn::Empty);
        *self = Conn::Deflate(Box::new(Deflate::new(inner, pending)));
    }

    /// The SNI name and protocol of a TLS connection, for the Received header.
    pub fn tls_info(&self) -> Option<String> {
        match self {
            Conn::Tls(s) => {
                let (_, c) = s.get_ref();
                let version = c
                    .protocol_version()
                    .and_then(|v| v.as_str())
                    .unwrap_or("TLS");
                let suite = c
                    .negotiated_cipher_suite()
                    .and_then(|s| s.suite().as_str())
                    .unwrap_or("");
                Some(format!("{version} {suite}").trim().to_string())
            }
            Conn::ProxiedTls(_, t) => {
                let version = t.version.as_deref().unwrap_or("TLS");
                Some(match t.cipher.as_deref() {
                    Some(cipher) => format!("{version} {cipher} via {}", t.proxy.ip()),
                    None => format!("{version} via {}", t.proxy.ip()),
                })
            }
            Conn::Deflate(d) => d.get_ref().tls_info(),
            _ => None,
        }
    }
}

fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "connection is switching to TLS",
    )
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::ProxiedTls(s, _) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Conn::Deflate(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Conn::Empty => Poll::Ready(Err(gone())),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::ProxiedTls(s, _) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Conn::Deflate(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Conn::Empty => Poll::Ready(Err(gone())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::ProxiedTls(s, _) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Conn::Deflate(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Conn::Empty => Poll::Ready(Err(gone())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::ProxiedTls(s, _) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Conn::Deflate(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Conn::Empty => Poll::Ready(Ok(())),
        }
    }
}
