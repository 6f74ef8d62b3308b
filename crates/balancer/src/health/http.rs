//! HTTP check: `GET path` answered with the expected status.

use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{LineReader, show};
use crate::config::HealthConfig;

/// The status code of an HTTP/1.x status line.
pub fn status(line: &[u8]) -> Result<u16, String> {
    let bad = || format!("not an HTTP status line: {}", show(line));
    if !line.starts_with(b"HTTP/1.") || line.len() < 12 || line[8] != b' ' {
        return Err(bad());
    }
    let code = &line[9..12];
    if !code.iter().all(u8::is_ascii_digit) || line.get(12).is_some_and(|&b| b != b' ') {
        return Err(bad());
    }
    Ok((code[0] - b'0') as u16 * 100 + (code[1] - b'0') as u16 * 10 + (code[2] - b'0') as u16)
}

pub async fn check(
    s: &mut TcpStream,
    lines: &mut LineReader,
    cfg: &HealthConfig,
    addr: SocketAddr,
) -> Result<(), String> {
    let host = cfg.host.clone().unwrap_or_else(|| addr.to_string());
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: mailfleet-balancer-check\r\nConnection: close\r\n\r\n",
        cfg.path
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("sending request: {e}"))?;
    let line = lines.line(s).await?;
    let code = status(&line)?;
    if code != cfg.expect {
        return Err(format!("status {code}, expected {}", cfg.expect));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::probe;
    use super::super::script::{Step, cfg, serve};
    use super::*;
    use crate::config::CheckKind;

    #[test]
    fn status_lines() {
        assert_eq!(status(b"HTTP/1.1 200 OK"), Ok(200));
        assert_eq!(status(b"HTTP/1.0 503"), Ok(503));
        assert!(status(b"HTTP/2 200").is_err());
        assert!(status(b"HTTP/1.1 20x OK").is_err());
        assert!(status(b"HTTP/1.1 2000 OK").is_err());
        assert!(status(b"* OK").is_err());
    }

    #[tokio::test]
    async fn expected_status_passes() {
        let addr = serve(vec![
            Step::Expect("GET /health HTTP/1.1\r\n"),
            Step::Send(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ])
        .await;
        assert_eq!(probe(&cfg(CheckKind::Http), addr, b"").await, Ok(()));
    }

    #[tokio::test]
    async fn other_status_fails() {
        let addr = serve(vec![
            Step::Expect("\r\n\r\n"),
            Step::Send(b"HTTP/1.1 500 Oops\r\n\r\n"),
        ])
        .await;
        let e = probe(&cfg(CheckKind::Http), addr, b"").await.unwrap_err();
        assert!(e.contains("500"), "{e}");
    }
}
