//! POP3 check: a `+OK` greeting, then `QUIT`.

use tokio::net::TcpStream;

use super::{LineReader, goodbye, show};

pub fn greeting_ok(line: &[u8]) -> Result<(), String> {
    if line.len() >= 3 && line[..3].eq_ignore_ascii_case(b"+OK") {
        Ok(())
    } else {
        Err(format!("POP3 greeting is not \"+OK\": {}", show(line)))
    }
}

pub async fn check(s: &mut TcpStream, lines: &mut LineReader) -> Result<(), String> {
    let line = lines.line(s).await?;
    greeting_ok(&line)?;
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
    fn greetings() {
        assert!(greeting_ok(b"+OK POP3 ready <1.2@x>").is_ok());
        assert!(greeting_ok(b"-ERR no").is_err());
        assert!(greeting_ok(b"+O").is_err());
    }

    #[tokio::test]
    async fn greeting_and_quit_pass() {
        let addr = serve(vec![
            Step::Send(b"+OK ready\r\n"),
            Step::Expect("QUIT\r\n"),
            Step::Send(b"+OK bye\r\n"),
        ])
        .await;
        assert_eq!(probe(&cfg(CheckKind::Pop3), addr, b"").await, Ok(()));
    }

    #[tokio::test]
    async fn err_greeting_fails() {
        let addr = serve(vec![Step::Send(b"-ERR maintenance\r\n")]).await;
        let e = probe(&cfg(CheckKind::Pop3), addr, b"").await.unwrap_err();
        assert!(e.contains("-ERR"), "{e}");
    }
}
