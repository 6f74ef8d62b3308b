//! Text helpers for the string search keys: case-insensitive substring search, header field
//! splitting, RFC 2047 and transfer/charset decoding, and calendar days.

use std::borrow::Cow;

use mail_parser::HeaderValue;
use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::parsers::MessageStream;
use mailfleet_message::{BodyPart, Metadata, PartKind};

/// A search string folded once, then looked for in any number of texts.
///
/// Matching is a substring match without regard to case (RFC 9051 §6.4.4: "In all search keys
/// that use strings ... a message matches the key if the string is a substring of the
/// associated text. The matching SHOULD ignore the case of characters"):
///
/// - an ASCII needle is compared byte by byte with ASCII case folding, so it also matches inside
///   text that is not UTF-8 (non-ASCII bytes are left as they are);
/// - a UTF-8 needle with non-ASCII characters is compared with both sides lower-cased
///   (Unicode `to_lowercase`, per character), the text read as UTF-8 with invalid bytes
///   replaced;
/// - a needle that is not UTF-8 (a CHARSET the session did not convert) is compared as bytes
///   with ASCII case folding only.
///
/// The empty string matches every text.
pub(crate) struct Needle {
    kind: NeedleKind,
}

enum NeedleKind {
    Empty,
    Bytes(Vec<u8>),
    Unicode(String),
}

impl Needle {
    pub(crate) fn new(needle: &[u8]) -> Needle {
        let kind = if needle.is_empty() {
            NeedleKind::Empty
        } else if needle.is_ascii() {
            NeedleKind::Bytes(needle.to_ascii_lowercase())
        } else {
            match std::str::from_utf8(needle) {
                Ok(s) => NeedleKind::Unicode(fold(s)),
                Err(_) => NeedleKind::Bytes(needle.to_ascii_lowercase()),
            }
        };
        Needle { kind }
    }

    pub(crate) fn is_empty(&self) -> bool {
        matches!(self.kind, NeedleKind::Empty)
    }

    /// Whether the needle occurs in `hay`.
    pub(crate) fn found_in(&self, hay: &[u8]) -> bool {
        match &self.kind {
            NeedleKind::Empty => true,
            NeedleKind::Bytes(n) => {
                if n.len() > hay.len() {
                    return false;
                }
                memchr::memmem::find(&hay.to_ascii_lowercase(), n).is_some()
            }
            NeedleKind::Unicode(n) => fold(&String::from_utf8_lossy(hay)).contains(n.as_str()),
        }
    }

    pub(crate) fn found_in_str(&self, hay: &str) -> bool {
        self.found_in(hay.as_bytes())
    }
}

/// Lower-cases text for comparison: ASCII directly, other characters by Unicode `to_lowercase`.
pub(crate) fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// The fields of a header block: (name, value unfolded). The value starts after the colon and
/// its leading white space; line breaks of folded lines are removed, the white space after them
/// kept. Reading stops at the first empty line; lines that are neither a field nor a
/// continuation are skipped.
pub(crate) fn header_fields(raw: &[u8]) -> Vec<(&[u8], Vec<u8>)> {
    let mut out: Vec<(&[u8], Vec<u8>)> = Vec::new();
    let mut continuing = false;
    for line in raw.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if matches!(line.first(), Some(b' ' | b'\t')) {
            if continuing && let Some((_, v)) = out.last_mut() {
                v.extend_from_slice(line);
            }
            continue;
        }
        match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let name = line.get(..colon).unwrap_or_default().trim_ascii();
                let value = line.get(colon + 1..).unwrap_or_default().trim_ascii_start();
                out.push((name, value.to_vec()));
                continuing = true;
            }
            None => continuing = false,
        }
    }
    for (_, v) in &mut out {
        let end = v.trim_ascii_end().len();
        v.truncate(end);
    }
    out
}

/// An unstructured header value with its RFC 2047 encoded words decoded (mail-parser).
pub(crate) fn decode_words(raw: &[u8]) -> String {
    let mut data = raw.to_vec();
    data.extend_from_slice(b"\r\n");
    match MessageStream::new(&data).parse_unstructured() {
        HeaderValue::Text(t) => t.into_owned(),
        HeaderValue::TextList(l) => l.join(" "),
        _ => String::new(),
    }
}

/// The calendar day of a `Date:` value as written (its own zone: RFC 9051's SENT* keys
/// disregard time and timezone), as days since 1970-01-01; None when it does not parse.
pub(crate) fn sent_day(value: &str) -> Option<i64> {
    let mut data = value.as_bytes().to_vec();
    data.extend_from_slice(b"\r\n");
    match MessageStream::new(&data).parse_date() {
        HeaderValue::DateTime(dt) if dt.is_valid() => Some(days_from_civil(
            i64::from(dt.year),
            i64::from(dt.month),
            i64::from(dt.day),
        )),
        _ => None,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). Any input
/// gives some number without overflow or panic; out-of-range months and days just give a day
/// that no real date has.
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let m = m.clamp(0, 13);
    let d = d.clamp(0, 32);
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The UTC day of a Unix timestamp.
pub(crate) fn unix_day(secs: i64) -> i64 {
    secs.div_euclid(86_400)
}

/// The text parts of a message decoded for search: every text/* leaf (inside multiparts and
/// message/rfc822 parts too) whose transfer encoding is base64 or quoted-printable, or whose
/// charset is neither UTF-8 nor US-ASCII, decoded to UTF-8. Parts with 7bit/8bit UTF-8 text
/// are left out: the raw bytes already hold them. `raw` is the whole message the offsets in
/// `meta` refer to; parts whose offsets fall outside it are skipped.
pub(crate) fn decoded_text_parts(meta: &Metadata, raw: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for part in meta.body.walk() {
        if let Some(t) = decoded_part(part, raw) {
            out.push(t);
        }
    }
    out
}

fn decoded_part(part: &BodyPart, raw: &[u8]) -> Option<String> {
    if !matches!(part.kind, PartKind::Text { .. }) {
        return None;
    }
    let body = raw.get(part.offsets.body())?;
    let enc = part.fields.encoding.as_str();
    let bytes: Cow<'_, [u8]> = if enc.eq_ignore_ascii_case("BASE64") {
        Cow::Owned(base64_lenient(body))
    } else if enc.eq_ignore_ascii_case("QUOTED-PRINTABLE") {
        Cow::Owned(qp_lenient(body))
    } else {
        Cow::Borrowed(body)
    };
    let charset = part.media.param("charset").unwrap_or("us-ascii");
    let utf8 = charset.eq_ignore_ascii_case("utf-8")
        || charset.eq_ignore_ascii_case("utf8")
        || charset.eq_ignore_ascii_case("us-ascii");
    if utf8 || bytes.is_ascii() {
        if matches!(bytes, Cow::Borrowed(_)) {
            return None;
        }
        return Some(String::from_utf8_lossy(&bytes).into_owned());
    }
    match charset_decoder(charset.as_bytes()) {
        Some(decode) => Some(decode(&bytes)),
        None => Some(String::from_utf8_lossy(&bytes).into_owned()),
    }
}

/// Base64 as found in mail (mailfleet-message's decoder).
pub(crate) fn base64_lenient(input: &[u8]) -> Vec<u8> {
    mailfleet_message::decode_base64(input)
}

/// Quoted-printable as found in mail (mailfleet-message's decoder).
pub(crate) fn qp_lenient(input: &[u8]) -> Vec<u8> {
    mailfleet_message::decode_quoted_printable(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needle_ascii_unicode_and_bytes() {
        let n = Needle::new(b"HeLLo");
        assert!(n.found_in(b"say hello there"));
        assert!(n.found_in(b"\xff\xfeHELLO"));
        assert!(!n.found_in(b"hell"));
        let n = Needle::new("GRÜSSE".as_bytes());
        assert!(n.found_in("viele grüsse".as_bytes()));
        let n = Needle::new("ÄÖ".as_bytes());
        assert!(n.found_in("xäöx".as_bytes()));
        assert!(!n.found_in(b"ao"));
        let n = Needle::new(b"caf\xe9");
        assert!(n.found_in(b"CAF\xe9 au lait"));
        assert!(Needle::new(b"").found_in(b""));
        assert!(Needle::new(b"").is_empty());
    }

    #[test]
    fn header_fields_unfold() {
        let f = header_fields(b"Subject: a\r\n  b\r\nX-A:1\r\nbad line\r\n c\r\n\r\nTo: no");
        assert_eq!(f.len(), 2);
        assert_eq!(f[0], (&b"Subject"[..], b"a  b".to_vec()));
        assert_eq!(f[1], (&b"X-A"[..], b"1".to_vec()));
    }

    #[test]
    fn decoders() {
        assert_eq!(base64_lenient(b"aGVs\r\nbG8=\r\n"), b"hello");
        assert_eq!(base64_lenient(b"!!"), b"");
        assert_eq!(
            qp_lenient(b"caf=C3=A9 =\r\nx=3d=\ny =zz="),
            "café x=y =zz".as_bytes(),
            "a final `=` is a soft break"
        );
        assert_eq!(decode_words(b"=?ISO-8859-1?Q?Caf=E9?= x"), "Café x");
    }

    #[test]
    fn days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(unix_day(-1), -1);
        assert_eq!(
            sent_day("Tue, 1 Jul 2003 23:52:37 -0700"),
            Some(days_from_civil(2003, 7, 1))
        );
        assert_eq!(sent_day("yesterday"), None);
        // Nonsense gives some number, no panic.
        let _ = days_from_civil(i64::from(u16::MAX), 255, 255);
    }
}
