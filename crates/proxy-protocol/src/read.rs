//! Reading one header from a tokio stream without consuming anything after it.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::{Decoded, ProxyError, ProxyHeader, decode, min_more};

/// Reads exactly one PROXY header (v1 or v2) from `stream`, within `timeout`.
///
/// Never reads past the header: each read asks for no more bytes than the header can still need,
/// so whatever the client sends next stays in the stream for the protocol session. A v1 header is
/// at most [`V1_MAX_LEN`](crate::V1_MAX_LEN) bytes, a v2 header (TLVs included, which are skipped)
/// at most [`V2_MAX_LEN`](crate::V2_MAX_LEN).
///
/// Returns `Ok(None)` for a header without a client address (v2 LOCAL, v1 UNKNOWN, v2 UNSPEC or
/// UNIX): the caller then uses the connection's own peer address.
pub async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Result<Option<ProxyHeader>, ProxyError> {
    match tokio::time::timeout(timeout, read_until_header(stream)).await {
        Ok(result) => result,
        Err(_) => Err(ProxyError::Timeout(timeout)),
    }
}

async fn read_until_header<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<Option<ProxyHeader>, ProxyError> {
    // Enough for any v1 header and the common v2 ones; only v2 TLVs make it grow.
    let mut buf = Vec::with_capacity(crate::V1_MAX_LEN);
    loop {
        if let Decoded::Header { header, .. } = decode(&buf)? {
            return Ok(header);
        }
        let start = buf.len();
        buf.resize(start + min_more(&buf), 0);
        let n = loop {
            match stream.read(&mut buf[start..]).await {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ProxyError::Io(e)),
            }
        };
        buf.truncate(start + n);
        if n == 0 {
            return Err(ProxyError::Closed { received: start });
        }
    }
}
