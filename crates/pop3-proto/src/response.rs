//! POP3 responses: `+OK` and `-ERR` lines with RFC 2449 / RFC 3206 response codes, and the
//! multi-line form (dot-stuffed lines ending in a line holding only `.`).

/// Response codes (RFC 2449 §8, RFC 3206), written `[CODE]` after `-ERR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RespCode {
    /// The maildrop is held by another session.
    InUse,
    /// Logins come too often.
    LoginDelay,
    /// A temporary failure of the server, not of the credentials.
    SysTemp,
    /// A permanent failure of the server.
    SysPerm,
    /// The credentials are wrong (or the account may not log in).
    Auth,
    /// The mailbox needs UTF-8 (RFC 6856).
    Utf8,
}

impl RespCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RespCode::InUse => "IN-USE",
            RespCode::LoginDelay => "LOGIN-DELAY",
            RespCode::SysTemp => "SYS/TEMP",
            RespCode::SysPerm => "SYS/PERM",
            RespCode::Auth => "AUTH",
            RespCode::Utf8 => "UTF8",
        }
    }
}

/// Text of a status line, with CR and LF replaced so it can never end the line early.
fn clean(text: &str) -> impl Iterator<Item = u8> + '_ {
    text.bytes()
        .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b })
}

/// `+OK text`.
pub fn ok(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"+OK");
    if !text.is_empty() {
        out.push(b' ');
        out.extend(clean(text));
    }
    out.extend_from_slice(b"\r\n");
}

/// `-ERR [CODE] text`.
pub fn err(out: &mut Vec<u8>, code: Option<RespCode>, text: &str) {
    out.extend_from_slice(b"-ERR");
    if let Some(code) = code {
        out.extend_from_slice(b" [");
        out.extend_from_slice(code.as_str().as_bytes());
        out.push(b']');
    }
    if !text.is_empty() {
        out.push(b' ');
        out.extend(clean(text));
    }
    out.extend_from_slice(b"\r\n");
}

/// The `+ ` continuation of a SASL exchange with its base64 challenge.
pub fn continuation(out: &mut Vec<u8>, challenge: &str) {
    out.extend_from_slice(b"+ ");
    out.extend(clean(challenge));
    out.extend_from_slice(b"\r\n");
}

/// Multi-line text lines (CAPA, LIST, UIDL): each line dot-stuffed, then the terminator.
pub fn lines<'a>(out: &mut Vec<u8>, lines: impl IntoIterator<Item = &'a str>) {
    for line in lines {
        let mut line = clean(line).peekable();
        if line.peek() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend(line);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

/// Writes a message as a multi-line body in pieces, whatever their boundaries: a `.` that
/// starts a line is doubled, and [`DotStuffer::finish`] ends the last line and adds the
/// terminator.
#[derive(Debug, Clone)]
pub struct DotStuffer {
    at_line_start: bool,
}

impl Default for DotStuffer {
    fn default() -> Self {
        DotStuffer {
            at_line_start: true,
        }
    }
}

impl DotStuffer {
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let mut start = 0;
        for (i, &b) in chunk.iter().enumerate() {
            if self.at_line_start && b == b'.' {
                out.extend_from_slice(&chunk[start..i]);
                out.push(b'.');
                start = i;
            }
            self.at_line_start = b == b'\n';
        }
        out.extend_from_slice(&chunk[start..]);
    }

    pub fn finish(self, out: &mut Vec<u8>) {
        if !self.at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

/// The part of `message` that `TOP n lines` sends: the header section, the empty line after
/// it, and the first `lines` lines of the body.
pub fn top(message: &[u8], lines: u32) -> &[u8] {
    let mut at = 0;
    let mut in_body = false;
    let mut body_lines = 0u32;
    for line in message.split_inclusive(|&b| b == b'\n') {
        if in_body {
            if body_lines == lines {
                break;
            }
            body_lines += 1;
        } else if line == b"\r\n" || line == b"\n" {
            in_body = true;
        }
        at += line.len();
    }
    &message[..at]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        let mut out = Vec::new();
        ok(&mut out, "2 320");
        err(
            &mut out,
            Some(RespCode::InUse),
            "maildrop locked\r\nINJECTED",
        );
        err(&mut out, None, "");
        continuation(&mut out, "");
        assert_eq!(
            out,
            b"+OK 2 320\r\n-ERR [IN-USE] maildrop locked  INJECTED\r\n-ERR\r\n+ \r\n"
        );
    }

    #[test]
    fn multi_line_text_is_dot_stuffed() {
        let mut out = Vec::new();
        lines(&mut out, ["USER", ".hidden", "SASL PLAIN"]);
        assert_eq!(out, b"USER\r\n..hidden\r\nSASL PLAIN\r\n.\r\n");
    }

    #[test]
    fn messages_are_stuffed_across_any_chunking() {
        let message = b"Subject: x\r\n\r\n.one\r\n..two\r\nthree.\r\n.";
        let expected = b"Subject: x\r\n\r\n..one\r\n...two\r\nthree.\r\n..\r\n.\r\n".to_vec();
        for size in 1..message.len() {
            let mut s = DotStuffer::default();
            let mut out = Vec::new();
            for chunk in message.chunks(size) {
                s.feed(chunk, &mut out);
            }
            s.finish(&mut out);
            assert_eq!(out, expected, "chunks of {size}");
        }
        let mut out = Vec::new();
        let mut s = DotStuffer::default();
        s.feed(b"ends well\r\n", &mut out);
        s.finish(&mut out);
        assert_eq!(out, b"ends well\r\n.\r\n");
    }

    #[test]
    fn top_sends_headers_and_n_body_lines() {
        let m = b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\nl3\r\n";
        assert_eq!(top(m, 0), b"A: 1\r\nB: 2\r\n\r\n");
        assert_eq!(top(m, 2), b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\n");
        assert_eq!(top(m, 99), &m[..]);
        assert_eq!(top(b"A: 1\r\n", 3), b"A: 1\r\n", "no body at all");
        assert_eq!(top(b"", 3), b"");
    }
}
