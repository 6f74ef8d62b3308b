//! IMAP check: a `* OK` (or `* PREAUTH`) greeting, then `LOGOUT`.

use tokio::net::TcpStream;

use super::{LineReader, goodbye, show};

/// Whether an IMAP greeting line says the server is ready.
pub fn greeting_ok(line: &[u8]) -> Result<(), String> {
    let upper: Vec<u8> = line.iter().take(12).map(u8::to_ascii_uppercase).collect();
    if upper.starts_with(b"* OK") || upper.starts_with(b"* PREAUTH") {
        Ok(())
    } else {
        Err(format!("IMAP greeting is not \"* OK\": {}", show(line)))
    }
}

pub async fn check(s: &mut TcpStream, lines: &mut LineReader) -> Result<(), String> {
    let line = lines.line(s).await?;
    greeting_ok(&line)?;
    goodbye(s, b"hc1 LOGOUT\r\n").await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::probe;
    use super::super::script::{Step, cfg, serve};
    use super::*;
    use crate::config::CheckKind;

    #[test]
    fn greetings() {
        assert!(greeting_ok(b"* OK [CAPABILITY IMAP4rev1] ready").is_ok());
        assert!(greeting_ok(b"* ok ready").is_ok());
        assert!(greeting_ok(b"* PREAUTH hi").is_ok());
        assert!(greeting_ok(b"* BYE overloaded").is_err());
        assert!(greeting_ok(b"+OK pop3").is_err());
    }

    #[tokio::test]
    async fn greeting_and_logout_pass() {
        let addr = serve(vec![
            Step::Send(b"* OK mailfleet ready\r\n"),
            Step::Expect("hc1 LOGOUT\r\n"),
            Step::Send(b"* BYE\r\nhc1 OK LOGOUT completed\r\n"),
        ])
        .await;
        assert_eq!(probe(&cfg(CheckKind::Imap), addr, b"").await, Ok(()));
    }

    #[tokio::test]
    async fn bye_greeting_fails() {
        let addr = serve(vec![Step::Send(b"* BYE too many connections\r\n")]).await;
        assert!(probe(&cfg(CheckKind::Imap), addr, b"").await.is_err());
    }

    #[tokio::test]
    async fn silence_fails() {
        let addr = serve(vec![Step::Hang]).await;
        assert!(probe(&cfg(CheckKind::Imap), addr, b"").await.is_err());
    }

    #[tokio::test]
    async fn the_proxy_preamble_comes_first() {
        let pre = crate::health::preamble(crate::config::ProxyProtocol::V2);
        let addr = serve(vec![
            // The LOCAL header's last bytes: family 0, length 0.
            Step::Expect("QUIT\n"),
            Step::Send(b"* OK ready\r\n"),
        ])
        .await;
        assert_eq!(probe(&cfg(CheckKind::Imap), addr, &pre).await, Ok(()));
    }
}
