//! mailfleet PROXY protocol v1/v2: sans-IO encoder and decoder.
//!
//! A balancer in front of a mailfleet listener prepends one PROXY header to each connection so the
//! listener learns the client's real address. Version 1 is a text line
//! (`PROXY TCP4 192.0.2.1 198.51.100.7 51234 25\r\n`), version 2 a binary block that starts with a
//! fixed 12-byte signature.
//!
//! The core is [`decode`]: it takes the bytes received so far and says whether they hold a complete
//! header, need more bytes, or are not a valid header. It never panics and never looks at more than
//! [`V1_MAX_LEN`] bytes of a v1 header or [`V2_MAX_LEN`] bytes of a v2 header. [`encode_v1`],
//! [`encode_v2`] and [`encode_v2_local`] build headers for the balancer side. With the default
//! `tokio` feature, [`read_header`] reads exactly one header from a stream.
//!
//! ```
//! use mailfleet_proxy_protocol::{Decoded, decode, encode_v2};
//!
//! let client = "192.0.2.1:51234".parse().unwrap();
//! let service = "198.51.100.7:25".parse().unwrap();
//! let mut received = encode_v2(client, service);
//! received.extend_from_slice(b"EHLO client.example\r\n");
//!
//! assert_eq!(decode(&received[..10]).unwrap(), Decoded::Incomplete);
//! let Decoded::Header { header: Some(h), consumed } = decode(&received).unwrap() else {
//!     panic!("expected a header with addresses");
//! };
//! assert_eq!(h.source, client);
//! assert_eq!(&received[consumed..], b"EHLO client.example\r\n");
//! assert!(decode(b"EHLO client.example\r\n").is_err());
//! ```

#![forbid(unsafe_code)]

use std::net::SocketAddr;

mod v1;
mod v2;

#[cfg(feature = "tokio")]
mod read;

#[cfg(feature = "tokio")]
pub use read::read_header;

pub use v1::{V1_MAX_LEN, V1_SIGNATURE, encode_v1};
pub use v2::{V2_MAX_LEN, V2_SIGNATURE, encode_v2, encode_v2_local, encode_v2_tls};

/// The addresses a PROXY header carries: the client (`source`) and the address it connected to
/// (`destination`, usually the balancer's virtual service); for a v2 header with an SSL TLV, the
/// TLS the client spoke to the proxy (which terminated it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProxyHeader {
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub tls: Option<ClientTls>,
}

/// What a proxy that terminated the client's TLS says of it (v2's PP2_TYPE_SSL TLV): the
/// protocol version (e.g. `TLSv1.3`) and cipher, when it sent them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ClientTls {
    pub version: Option<String>,
    pub cipher: Option<String>,
}

/// The outcome of [`decode`] on the bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A complete header of `consumed` bytes. `header` is None for v2 LOCAL or v1 UNKNOWN (e.g. a
    /// balancer's health check), and for v2 families that carry no IP address (UNSPEC, UNIX, or a
    /// datagram transport): the caller then uses the connection's own addresses.
    Header {
        header: Option<ProxyHeader>,
        consumed: usize,
    },
    /// Not enough bytes yet to decide.
    Incomplete,
}

/// Why bytes are not an acceptable PROXY header, or why reading one failed.
#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum ProxyError {
    /// The bytes start with neither the v1 (`PROXY `) nor the v2 signature.
    #[error(
        "not a PROXY protocol header (the connection must start with \"PROXY \" or the v2 signature)"
    )]
    NotProxy,
    /// The header starts like a PROXY header but breaks the protocol's rules.
    #[error("malformed PROXY v{version} header: {reason}")]
    Malformed { version: u8, reason: String },
    /// The header is longer than this implementation accepts.
    #[error("PROXY v{version} header is too long: {len} bytes or more, at most {max} accepted")]
    TooLong { version: u8, len: usize, max: usize },
    /// The peer closed the connection before a complete header arrived.
    #[error("connection closed after {received} bytes, before the PROXY header was complete")]
    Closed { received: usize },
    /// No complete header arrived in time.
    #[error("no complete PROXY header within {0:?}")]
    Timeout(std::time::Duration),
    /// Reading from the connection failed.
    #[error("reading the PROXY header failed: {0}")]
    Io(#[from] std::io::Error),
}

impl ProxyError {
    pub(crate) fn malformed(version: u8, reason: impl Into<String>) -> Self {
        ProxyError::Malformed {
            version,
            reason: reason.into(),
        }
    }
}

/// Decodes a PROXY header (v1 or v2) at the start of `buf`.
///
/// Returns [`Decoded::Incomplete`] while `buf` is a valid beginning of a header (including an
/// empty `buf`), [`Decoded::Header`] once a complete header is present (bytes after it are not
/// looked at), and an error as soon as the bytes seen so far cannot start a valid header.
pub fn decode(buf: &[u8]) -> Result<Decoded, ProxyError> {
    match buf.first() {
        None => Ok(Decoded::Incomplete),
        Some(b'P') => v1::decode(buf),
        Some(b'\r') => v2::decode(buf),
        Some(_) => Err(ProxyError::NotProxy),
    }
}

/// How many more bytes `buf` needs at the least before [`decode`] can return something other than
/// [`Decoded::Incomplete`]. Only meaningful when `decode(buf)` returned `Incomplete`; used to read
/// without ever reading past the header.
#[cfg(feature = "tokio")]
pub(crate) fn min_more(buf: &[u8]) -> usize {
    match buf.first() {
        Some(b'\r') => v2::min_more(buf),
        Some(_) => v1::min_more(buf),
        // The shortest header is `PROXY UNKNOWN\r\n`.
        None => v1::MIN_LEN,
    }
}

/// Checks that `buf` agrees with `signature` over their common length; returns whether all of the
/// signature is present.
fn check_signature(buf: &[u8], signature: &[u8]) -> Result<bool, ProxyError> {
    let n = buf.len().min(signature.len());
    if buf[..n] != signature[..n] {
        return Err(ProxyError::NotProxy);
    }
    Ok(n == signature.len())
}
