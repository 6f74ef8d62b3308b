//! One outbound SMTP connection: greeting, EHLO, STARTTLS, AUTH, commands and DATA, each read
//! bounded by a timeout. The transaction logic (which commands, what a reply means for each
//! recipient) is in [`crate::deliver`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::either::Either;

use mailfleet_smtp_proto::{Reply, ReplyError, parse_reply};

type Stream = Either<TcpStream, TlsStream<TcpStream>>;

/// Largest reply buffered before it is refused.
const MAX_BUFFER: usize = 64 * 1024;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("connect to {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    #[error("connection closed by the server")]
    Closed,
    #[error("bad reply: {0}")]
    Reply(#[from] ReplyError),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("server sent data after STARTTLS before the handshake")]
    StartTlsInjection,
}

/// What the server announced in its EHLO reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// False after a HELO fallback.
    pub esmtp: bool,
    pub starttls: bool,
    pub pipelining: bool,
    pub dsn: bool,
    pub eightbitmime: bool,
    pub smtputf8: bool,
    /// `SIZE` with its limit (0 = none announced).
    pub size: Option<u64>,
    /// SASL mechanisms, upper-case.
    pub auth: Vec<String>,
}

impl Capabilities {
    fn from_ehlo(reply: &Reply) -> Self {
        let mut caps = Capabilities {
            esmtp: true,
            ..Default::default()
        };
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "STARTTLS" => caps.starttls = true,
                "PIPELINING" => caps.pipelining = true,
                "DSN" => caps.dsn = true,
                "8BITMIME" => caps.eightbitmime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "SIZE" => caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                "AUTH" => caps.auth = words.map(|m| m.to_ascii_uppercase()).collect(),
                _ => {}
            }
        }
        caps
    }
}

/// An open SMTP client connection.
pub struct Connection {
    stream: Option<Stream>,
    buf: Vec<u8>,
    timeout: Duration,
    /// The EHLO answer of the current (plain or TLS) session.
    pub caps: Capabilities,
    pub tls: bool,
}

impl Connection {
    /// Connects and reads the greeting.
    pub async fn connect(
        addr: SocketAddr,
        connect_timeout: Duration,
        command_timeout: Duration,
    ) -> Result<(Self, Reply), ClientError> {
        let tcp = tokio::time::timeout(connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout("the TCP connection"))?
            .map_err(|e| ClientError::Connect(addr, e))?;
        let _ = tcp.set_nodelay(true);
        let mut conn = Connection {
            stream: Some(Either::Left(tcp)),
            buf: Vec::new(),
            timeout: command_timeout,
            caps: Capabilities::default(),
            tls: false,
        };
        let greeting = conn.read_reply("the greeting").await?;
        Ok((conn, greeting))
    }

    fn stream(&mut self) -> Result<&mut Stream, ClientError> {
        self.stream.as_mut().ok_or(ClientError::Closed)
    }

    /// Reads one reply.
    pub async fn read_reply(&mut self, waiting_for: &'static str) -> Result<Reply, ClientError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            if let Some((reply, used)) = parse_reply(&self.buf)? {
                self.buf.drain(..used);
                return Ok(reply);
            }
            if self.buf.len() > MAX_BUFFER {
                return Err(ReplyError::LineTooLong.into());
            }
            let mut chunk = [0u8; 4096];
            let stream = self.stream()?;
            let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
                .await
                .map_err(|_| ClientError::Timeout(waiting_for))??;
            if n == 0 {
                return Err(ClientError::Closed);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn write_all(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let timeout = self.timeout;
        let stream = self.stream()?;
        tokio::time::timeout(timeout, async {
            stream.write_all(bytes).await?;
            stream.flush().await
        })
        .await
        .map_err(|_| ClientError::Timeout("the server to take our data"))??;
        Ok(())
    }

    /// Sends one command line (without CRLF) and reads the reply.
    pub async fn command(
        &mut self,
        line: &str,
        waiting_for: &'static str,
    ) -> Result<Reply, ClientError> {
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.write_all(&bytes).await?;
        self.read_reply(waiting_for).await
    }

    /// EHLO, falling back to HELO when EHLO is refused. Records the capabilities.
    pub async fn hello(&mut self, name: &str) -> Result<Reply, ClientError> {
        let reply = self
            .command(&format!("EHLO {name}"), "the EHLO reply")
            .await?;
        if reply.is_positive() {
            self.caps = Capabilities::from_ehlo(&reply);
            return Ok(reply);
        }
        if reply.is_permanent() {
            let helo = self
                .command(&format!("HELO {name}"), "the HELO reply")
                .await?;
            self.caps = Capabilities::default();
            return Ok(helo);
        }
        Ok(reply)
    }

    /// STARTTLS and the handshake. On `Ok(reply)` with a non-220 reply the session stays plain.
    pub async fn starttls(
        &mut self,
        config: Arc<rustls::ClientConfig>,
        server_name: &str,
    ) -> Result<Reply, ClientError> {
        let reply = self.command("STARTTLS", "the STARTTLS reply").await?;
        if reply.code != 220 {
            return Ok(reply);
        }
        if !self.buf.is_empty() {
            return Err(ClientError::StartTlsInjection);
        }
        let Some(Either::Left(tcp)) = self.stream.take() else {
            return Err(ClientError::Tls(
                "STARTTLS on a session that is not plain".into(),
            ));
        };
        let name = rustls::pki_types::ServerName::try_from(server_name.to_string())
            .map_err(|e| ClientError::Tls(format!("server name {server_name:?}: {e}")))?;
        let tls = tokio::time::timeout(self.timeout, TlsConnector::from(config).connect(name, tcp))
            .await
            .map_err(|_| ClientError::Timeout("the TLS handshake"))?
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        self.stream = Some(Either::Right(tls));
        self.tls = true;
        self.caps = Capabilities::default();
        Ok(reply)
    }

    /// AUTH PLAIN (or LOGIN when PLAIN is not offered). Returns the final reply.
    pub async fn auth(&mut self, user: &str, password: &str) -> Result<Reply, ClientError> {
        if self.caps.auth.iter().any(|m| m == "PLAIN")
            || !self.caps.auth.iter().any(|m| m == "LOGIN")
        {
            let token = B64.encode(format!("\0{user}\0{password}"));
            return self
                .command(&format!("AUTH PLAIN {token}"), "the AUTH reply")
                .await;
        }
        let r = self.command("AUTH LOGIN", "the AUTH reply").await?;
        if r.code != 334 {
            return Ok(r);
        }
        let r = self.command(&B64.encode(user), "the AUTH reply").await?;
        if r.code != 334 {
            return Ok(r);
        }
        self.command(&B64.encode(password), "the AUTH reply").await
    }

    /// Sends the message after a 354: CRLF line ends, dot-stuffed, then `.`; reads the reply.
    pub async fn data(&mut self, message: &[u8]) -> Result<Reply, ClientError> {
        let body = dot_stuff(message);
        self.write_all(&body).await?;
        self.read_reply("the reply to the message data").await
    }

    /// QUIT, without waiting long for the answer; then closes.
    pub async fn quit(mut self) {
        self.timeout = self.timeout.min(Duration::from_secs(5));
        let _ = self.command("QUIT", "the QUIT reply").await;
        if let Some(mut s) = self.stream.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), s.shutdown()).await;
        }
    }
}

/// The message as sent in DATA: every line ends in CRLF (bare LF and CR become CRLF), lines
/// starting with `.` get another `.`, and `.` CRLF ends it.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 50 + 5);
    let mut at_line_start = true;
    let mut i = 0;
    while i < message.len() {
        let b = message[i];
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        match b {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if message.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                at_line_start = true;
            }
            b'\n' => {
                out.extend_from_slice(b"\r\n");
                at_line_start = true;
            }
            _ => {
                out.push(b);
                at_line_start = false;
            }
        }
        i += 1;
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// A value as xtext for the wire: kept as it is when it already is valid xtext (the SMTP
/// server stores ENVID and ORCPT in their wire form), else encoded.
pub fn as_xtext(value: &str) -> String {
    if is_xtext(value) {
        value.to_string()
    } else {
        xtext(value)
    }
}

/// Is `value` valid RFC 3461 xtext (printable ASCII but `=`, `+` only as `+HH`)?
pub fn is_xtext(value: &str) -> bool {
    let b = value.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                let hex =
                    |c: Option<&u8>| c.is_some_and(|c| matches!(c, b'0'..=b'9' | b'A'..=b'F'));
                if !(hex(b.get(i + 1)) && hex(b.get(i + 2))) {
                    return false;
                }
                i += 3;
            }
            33..=126 if b[i] != b'=' => i += 1,
            _ => return false,
        }
    }
    true
}

/// Decodes xtext (`+HH` → the byte); anything malformed is kept as it is.
pub fn xtext_decode(value: &str) -> String {
    let b = value.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'+'
            && let Some(h) = b.get(i + 1..i + 3)
            && let Ok(h) = std::str::from_utf8(h)
            && let Ok(v) = u8::from_str_radix(h, 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// RFC 3461 xtext: `+`, `=`, controls, space and non-ASCII bytes as `+HH`.
pub fn xtext(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if (33..=126).contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuffing() {
        assert_eq!(dot_stuff(b"a\r\n.b\r\n"), b"a\r\n..b\r\n.\r\n");
        assert_eq!(dot_stuff(b".\nx"), b"..\r\nx\r\n.\r\n");
        assert_eq!(dot_stuff(b"a\rb"), b"a\r\nb\r\n.\r\n");
        assert_eq!(dot_stuff(b""), b".\r\n");
    }

    #[test]
    fn xtext_encoding() {
        assert_eq!(xtext("rfc822;a+b=c@x.y"), "rfc822;a+2Bb+3Dc@x.y");
        assert_eq!(xtext("a b"), "a+20b");
        assert!(is_xtext("rfc822;c+40d.test") && !is_xtext("a+4") && !is_xtext("a=b"));
        assert_eq!(as_xtext("c+40d"), "c+40d");
        assert_eq!(as_xtext("a b"), "a+20b");
        assert_eq!(xtext_decode("c+40d.test+2"), "c@d.test+2");
    }

    #[test]
    fn ehlo_keywords() {
        let (r, _) = parse_reply(
            b"250-mx.test\r\n250-SIZE 1000\r\n250-starttls\r\n250-AUTH plain LOGIN\r\n250-DSN\r\n250 8BITMIME\r\n",
        )
        .unwrap()
        .unwrap();
        let c = Capabilities::from_ehlo(&r);
        assert!(c.esmtp && c.starttls && c.dsn && c.eightbitmime && !c.smtputf8);
        assert_eq!(c.size, Some(1000));
        assert_eq!(c.auth, vec!["PLAIN", "LOGIN"]);
    }
}
