//! Server replies: the encoder (server side) and the parser (client side).

use std::fmt;

/// Longest reply line the parser accepts, CRLF included (RFC 5321 asks for 512).
pub const MAX_REPLY_LINE: usize = 4096;
/// Most lines one reply may have (an EHLO answer has a few dozen at most).
pub const MAX_REPLY_LINES: usize = 256;

/// An enhanced status code `class.subject.detail` (RFC 3463).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnhancedStatus {
    pub class: u8,
    pub subject: u16,
    pub detail: u16,
}

impl EnhancedStatus {
    /// Parses `2.1.0`; `None` unless it is well formed with class 2, 4 or 5.
    pub fn parse(s: &str) -> Option<Self> {
        let mut it = s.split('.');
        let class: u8 = num(it.next()?, 1)?.try_into().ok()?;
        let subject = num(it.next()?, 3)?;
        let detail = num(it.next()?, 3)?;
        if it.next().is_some() || !matches!(class, 2 | 4 | 5) {
            return None;
        }
        Some(Self {
            class,
            subject,
            detail,
        })
    }
}

fn num(s: &str, max_digits: usize) -> Option<u16> {
    if s.is_empty() || s.len() > max_digits || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl fmt::Display for EnhancedStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// One reply: code, optional enhanced status, text lines (at least one, possibly empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub status: Option<EnhancedStatus>,
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply; `status` is an enhanced code such as `"2.1.0"` (ignored if malformed).
    pub fn new(code: u16, status: &str, text: impl Into<String>) -> Self {
        Self {
            code,
            status: EnhancedStatus::parse(status),
            lines: vec![text.into()],
        }
    }

    /// A reply without enhanced status (the greeting, EHLO).
    pub fn plain(code: u16, lines: Vec<String>) -> Self {
        Self {
            code,
            status: None,
            lines,
        }
    }

    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 4xx.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// All lines joined by spaces, with the enhanced code in front: for logs and DSNs.
    pub fn text(&self) -> String {
        let body = self.lines.join(" ");
        match self.status {
            Some(s) => format!("{} {s} {body}", self.code),
            None => format!("{} {body}", self.code),
        }
    }

    /// Appends the wire form to `out`. Text is cleaned of CR, LF and other control characters.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let code = self.code.clamp(200, 599);
        let empty = [String::new()];
        let lines: &[String] = if self.lines.is_empty() {
            &empty
        } else {
            &self.lines
        };
        for (i, line) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            out.extend_from_slice(format!("{code}{sep}").as_bytes());
            if let Some(s) = self.status {
                out.extend_from_slice(format!("{s} ").as_bytes());
            }
            for c in line.chars() {
                if c.is_control() {
                    out.push(b' ');
                } else {
                    let mut b = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                }
            }
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The wire form as a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

/// Why bytes are not an acceptable reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("reply line is not `NNN text` or `NNN-text`")]
    Malformed,
    #[error("reply line longer than {MAX_REPLY_LINE} bytes")]
    LineTooLong,
    #[error("reply with more than {MAX_REPLY_LINES} lines")]
    TooManyLines,
    #[error("lines of one reply carry different codes")]
    CodeMismatch,
}

/// Parses one complete reply at the start of `buf` (client side).
///
/// Returns `Ok(None)` until the final line (`NNN ` or bare `NNN`) has arrived, then the reply
/// and the bytes it used. The enhanced status code is taken from the first line if it carries
/// one whose class matches the reply code, and then stripped from every line that repeats it.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, ReplyError> {
    let mut at = 0;
    let mut code = None;
    let mut raw_lines: Vec<String> = Vec::new();
    loop {
        let rest = &buf[at..];
        let window = &rest[..rest.len().min(MAX_REPLY_LINE)];
        let Some(lf) = window.iter().position(|&b| b == b'\n') else {
            if rest.len() >= MAX_REPLY_LINE {
                return Err(ReplyError::LineTooLong);
            }
            return Ok(None);
        };
        let line = &rest[..lf];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        at += lf + 1;
        if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
            return Err(ReplyError::Malformed);
        }
        let this_code: u16 =
            (line[0] - b'0') as u16 * 100 + (line[1] - b'0') as u16 * 10 + (line[2] - b'0') as u16;
        if !(200..600).contains(&this_code) {
            return Err(ReplyError::Malformed);
        }
        if *code.get_or_insert(this_code) != this_code {
            return Err(ReplyError::CodeMismatch);
        }
        let (last, text) = match line.get(3) {
            None => (true, &b""[..]),
            Some(b' ') => (true, &line[4..]),
            Some(b'-') => (false, &line[4..]),
            Some(_) => return Err(ReplyError::Malformed),
        };
        if raw_lines.len() == MAX_REPLY_LINES {
            return Err(ReplyError::TooManyLines);
        }
        raw_lines.push(String::from_utf8_lossy(text).into_owned());
        if last {
            break;
        }
    }
    let code = code.unwrap_or(500);
    let status = raw_lines
        .first()
        .and_then(|l| l.split(' ').next())
        .and_then(EnhancedStatus::parse)
        .filter(|s| u16::from(s.class) == code / 100);
    let lines = match status {
        Some(s) => {
            let prefix = s.to_string();
            raw_lines
                .into_iter()
                .map(|l| match l.strip_prefix(&prefix) {
                    Some(rest) if rest.is_empty() || rest.starts_with(' ') => {
                        rest.trim_start_matches(' ').to_string()
                    }
                    _ => l,
                })
                .collect()
        }
        None => raw_lines,
    };
    Ok(Some((
        Reply {
            code,
            status,
            lines,
        },
        at,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_one_and_many() {
        assert_eq!(
            Reply::new(250, "2.1.0", "OK").to_bytes(),
            b"250 2.1.0 OK\r\n"
        );
        let r = Reply::plain(
            250,
            vec!["mx.test".into(), "PIPELINING".into(), "SIZE 10".into()],
        );
        assert_eq!(
            r.to_bytes(),
            b"250-mx.test\r\n250-PIPELINING\r\n250 SIZE 10\r\n"
        );
        assert_eq!(
            Reply::new(550, "5.1.1", "a\r\nb").to_bytes(),
            b"550 5.1.1 a  b\r\n"
        );
    }

    #[test]
    fn parse_round_trip() {
        let r = Reply {
            code: 451,
            status: EnhancedStatus::parse("4.3.0"),
            lines: vec!["try".into(), "again later".into()],
        };
        let bytes = r.to_bytes();
        let (back, n) = parse_reply(&bytes).unwrap().unwrap();
        assert_eq!(back, r);
        assert_eq!(n, bytes.len());
        assert!(back.is_transient());
    }

    #[test]
    fn parse_variants() {
        assert_eq!(parse_reply(b"250-a\r\n250 b"), Ok(None));
        let (r, n) = parse_reply(b"220 mx ESMTP\r\nextra").unwrap().unwrap();
        assert_eq!((r.code, r.status, n), (220, None, 14));
        let (r, _) = parse_reply(b"250\r\n").unwrap().unwrap();
        assert_eq!(r.lines, vec![String::new()]);
        // A status whose class disagrees with the code is text.
        let (r, _) = parse_reply(b"550 2.0.0 odd\r\n").unwrap().unwrap();
        assert_eq!((r.status, r.lines[0].as_str()), (None, "2.0.0 odd"));
        assert_eq!(
            parse_reply(b"250-a\r\n251 b\r\n"),
            Err(ReplyError::CodeMismatch)
        );
        assert_eq!(parse_reply(b"hello\r\n"), Err(ReplyError::Malformed));
        assert_eq!(parse_reply(b"250x\r\n"), Err(ReplyError::Malformed));
        assert_eq!(
            parse_reply(&vec![b'2'; MAX_REPLY_LINE]),
            Err(ReplyError::LineTooLong)
        );
        let many: Vec<u8> = b"250-x\r\n".repeat(MAX_REPLY_LINES + 1);
        assert_eq!(parse_reply(&many), Err(ReplyError::TooManyLines));
    }
}
