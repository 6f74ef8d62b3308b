//! SMTP check: a `220` greeting, `EHLO` answered by `250`, then `QUIT`.

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{LineReader, MAX_LINES, goodbye, show};

/// One line of an SMTP reply: its code and whether it is the last line (`250 ` vs `250-`).
pub fn reply_line(line: &[u8]) -> Result<(u16, bool), String> {
    if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
        return Err(format!("not an SMTP reply: {}", show(line)));
    }
    let code =
        (line[0] - b'0') as u16 * 100 + (line[1] - b'0') as u16 * 10 + (line[2] - b'0') as u16;
    match line.get(3) {
        None | Some(b' ') => Ok((code, true)),
        Some(b'-') => Ok((code, false)),
        Some(_) => Err(format!("not an SMTP reply: {}", show(line))),
    }
}

/// Reads a whole (possibly multi-line) reply; returns its code.
async fn reply(s: &mut TcpStream, lines: &mut LineReader) -> Result<u16, String> {
    let mut first = None;
    for _ in 0..MAX_LINES {
        let line = lines.line(s).await?;
        let (code, last) = reply_line(&line)?;
        match first {
            None => first = Some(code),
            Some(c) if c != code => {
                return Err(format!("reply changes code from {c} to {code}"));
            }
            Some(_) => {}
        }
        if last {
            return Ok(code);
        }
    }
    Err(format!("reply longer than {MAX_LINES} lines"))
}

pub async fn check(s: &mut TcpStream, lines: &mut LineReader) -> Result<(), String> {
    let greeting = reply(s, lines).await?;
    if greeting != 220 {
        return Err(format!("greeting {greeting}, expected 220"));
    }
    let local = s.local_addr().map_err(|e| e.to_string())?;
    let literal = match local.ip() {
        std::net::IpAddr::V4(v4) => format!("[{v4}]"),
        std::net::IpAddr::V6(v6) => format!("[IPv6:{v6}]"),
    };
    s.write_all(format!("EHLO {literal}\r\n").as_bytes())
        .await
        .map_err(|e| format!("sending EHLO: {e}"))?;
    let ehlo = reply(s, lines).await?;
    if ehlo != 250 {
        return Err(format!("EHLO answered {ehlo}, expected 250"));
    }
    goodbye(s, b"QUIT\r\n").await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::probe;
    use super::super::script::{Step, cfg, serve};
    use super::*;
    use crate::config::CheckKind;

    #[test]
    fn reply_lines() {
        assert_eq!(reply_line(b"220 mx ESMTP"), Ok((220, true)));
        assert_eq!(reply_line(b"250-PIPELINING"), Ok((250, false)));
        assert_eq!(reply_line(b"250"), Ok((250, true)));
        assert!(reply_line(b"* OK").is_err());
        assert!(reply_line(b"25").is_err());
        assert!(reply_line(b"250+x").is_err());
    }

    #[tokio::test]
    async fn a_real_conversation_passes() {
        let addr = serve(vec![
            Step::Send(b"220-mx.example ESMTP\r\n220 ready\r\n"),
            Step::Expect("EHLO [127.0.0.1]\r\n"),
            Step::Send(b"250-mx.example\r\n250-PIPELINING\r\n250 SIZE 1000\r\n"),
            Step::Expect("QUIT\r\n"),
            Step::Send(b"221 bye\r\n"),
        ])
        .await;
        assert_eq!(probe(&cfg(CheckKind::Smtp), addr, b"").await, Ok(()));
    }

    #[tokio::test]
    async fn a_busy_greeting_fails() {
        let addr = serve(vec![Step::Send(b"421 too busy\r\n")]).await;
        let e = probe(&cfg(CheckKind::Smtp), addr, b"").await.unwrap_err();
        assert!(e.contains("421"), "{e}");
    }

    #[tokio::test]
    async fn refused_ehlo_fails() {
        let addr = serve(vec![
            Step::Send(b"220 ok\r\n"),
            Step::Expect("\r\n"),
            Step::Send(b"554 go away\r\n"),
        ])
        .await;
        let e = probe(&cfg(CheckKind::Smtp), addr, b"").await.unwrap_err();
        assert!(e.contains("554"), "{e}");
    }

    #[tokio::test]
    async fn silence_after_accept_fails() {
        let addr = serve(vec![Step::Hang]).await;
        let e = probe(&cfg(CheckKind::Smtp), addr, b"").await.unwrap_err();
        assert!(e.contains("no answer"), "{e}");
    }
}
