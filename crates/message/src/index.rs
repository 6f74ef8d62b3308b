//! The searchable text of a message, for the store's full-text index (IMAP SEARCH BODY and
//! TEXT narrow their candidates with it).
//!
//! What it holds, lower-cased (ASCII directly, other characters by Unicode `to_lowercase`, as
//! the IMAP search folds them), one piece per line:
//!
//! - every header block as written (the message's, each MIME part's, each nested message's),
//!   field names and folding included, bytes that are not UTF-8 replaced by U+FFFD;
//! - the RFC 2047 decoding of every header field value that has an encoded word, and the
//!   decoded subject and display names of the message's From, To and Cc;
//! - the body of each text/* part with its transfer encoding (base64, quoted-printable) undone
//!   and its charset converted to UTF-8 (mail-parser's decoders); the body of each other leaf
//!   as written unless it is base64 (quoted-printable decoded). Multipart preambles, epilogues
//!   and boundary lines are left out.
//!
//! What it does not hold: the transfer-encoded form of a base64 or quoted-printable body (a
//! string found only in the encoded bytes, such as `=3D` or a piece of base64, is not in it)
//! and the bytes of a text part in a charset that is not ASCII-compatible as written. A NUL
//! becomes a space.
//!
//! The text is at most [`MAX_INDEX_TEXT`] bytes; [`index_text_whole`] says when a message's
//! text would be longer (the index should then have no row for it, so that searches scan it).

use crate::Metadata;
use crate::bodystructure::PartKind;
use crate::header::{Headers, decode_text};
use crate::preview::decode_body;

/// The most bytes of text [`index_text`] gives.
pub const MAX_INDEX_TEXT: usize = 1 << 20;

/// The searchable text of a message (see the module documentation), cut to
/// [`MAX_INDEX_TEXT`] bytes. `meta` should be `Metadata::parse(raw)`; with any other value the
/// result is meaningless but this still does not panic.
pub fn index_text(raw: &[u8], meta: &Metadata) -> String {
    build(raw, meta).out
}

/// [`index_text`] when it is whole, `None` when the message's text is longer than
/// [`MAX_INDEX_TEXT`] (a cut text could miss what a search looks for).
pub fn index_text_whole(raw: &[u8], meta: &Metadata) -> Option<String> {
    let t = build(raw, meta);
    (!t.full).then_some(t.out)
}

struct Text {
    out: String,
    /// Something did not fit.
    full: bool,
}

impl Text {
    fn push(&mut self, s: &str) {
        for c in s.chars() {
            if c.is_ascii() {
                self.put(if c == '\0' {
                    ' '
                } else {
                    c.to_ascii_lowercase()
                });
            } else {
                for l in c.to_lowercase() {
                    self.put(l);
                }
            }
            if self.full {
                return;
            }
        }
        self.put('\n');
    }

    fn push_bytes(&mut self, b: &[u8]) {
        self.push(&String::from_utf8_lossy(b));
    }

    fn put(&mut self, c: char) {
        if self.full || self.out.len() + c.len_utf8() > MAX_INDEX_TEXT {
            self.full = true;
        } else {
            self.out.push(c);
        }
    }
}

fn build(raw: &[u8], meta: &Metadata) -> Text {
    let mut t = Text {
        out: String::new(),
        full: false,
    };
    let s = &meta.search;
    if let Some(subject) = &s.subject {
        t.push(subject);
    }
    for name in s
        .from
        .iter()
        .chain(&s.to)
        .chain(&s.cc)
        .filter_map(|a| a.name.as_deref())
    {
        t.push(name);
    }
    for part in meta.body.walk() {
        if t.full {
            break;
        }
        let header = raw.get(part.offsets.header()).unwrap_or_default();
        t.push_bytes(header);
        for f in Headers::parse(header).fields() {
            if f.value.windows(2).any(|w| w == b"=?") {
                t.push(&decode_text(f.value));
            }
        }
        match &part.kind {
            PartKind::Text { .. } => t.push(&decode_body(raw, part, usize::MAX)),
            PartKind::Basic => match part.fields.encoding.as_str() {
                "BASE64" => {}
                "QUOTED-PRINTABLE" => t.push_bytes(&crate::transfer::decode_quoted_printable(
                    raw.get(part.offsets.body()).unwrap_or_default(),
                )),
                _ => t.push_bytes(raw.get(part.offsets.body()).unwrap_or_default()),
            },
            PartKind::Message { .. } | PartKind::Multipart { .. } => {}
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(raw: &[u8]) -> String {
        index_text(raw, &Metadata::parse(raw))
    }

    #[test]
    fn headers_bodies_and_decodings() {
        let raw = b"From: =?UTF-8?Q?J=C3=BCrgen?= <j@x.test>\r\nSubject: =?ISO-8859-1?Q?Gr=FC=DFe?= Hello\r\n\
Content-Type: multipart/mixed; boundary=m\r\n\r\npreamble\r\n--m\r\n\
Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nSch=F6ne Welt\r\n\
--m\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nPHA+SGk8L3A+\r\n\
--m\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n\
--m\r\nContent-Type: application/json\r\n\r\n{\"Key\": 1}\r\n--m--\r\nepilogue\r\n";
        let t = text(raw);
        assert!(
            t.contains("from: =?utf-8?q?j=c3=bcrgen?= <j@x.test>"),
            "{t}"
        );
        assert!(t.contains("jürgen"));
        assert!(t.contains("grüße hello"));
        assert!(t.contains("schöne welt"));
        assert!(t.contains("<p>hi</p>"));
        assert!(t.contains("{\"key\": 1}"));
        assert!(t.contains("content-type: image/png"));
        assert!(!t.contains("ivborw0kggo"));
        assert!(!t.contains("preamble") && !t.contains("epilogue"));
        assert!(!t.contains("sch=f6ne"));
        assert_eq!(t, t.to_lowercase());
    }

    #[test]
    fn nested_messages_and_nul() {
        let raw = b"Content-Type: message/rfc822\r\n\r\nSubject: Inner\r\n\r\nInner BODY\0x\r\n";
        let t = text(raw);
        assert!(t.contains("subject: inner"));
        assert!(t.contains("inner body x"));
    }

    #[test]
    fn bounded() {
        let body = "Ab ".repeat(MAX_INDEX_TEXT);
        let raw = format!("Subject: big\r\n\r\n{body}");
        let m = Metadata::parse(raw.as_bytes());
        let t = index_text(raw.as_bytes(), &m);
        assert!(t.len() <= MAX_INDEX_TEXT && t.len() > MAX_INDEX_TEXT - 8);
        assert!(index_text_whole(raw.as_bytes(), &m).is_none());
        let small = b"Subject: x\r\n\r\ny";
        assert_eq!(
            index_text_whole(small, &Metadata::parse(small)),
            Some(text(small))
        );
        // Multi-byte characters are never split.
        let raw = format!("\r\n{}", "é".repeat(MAX_INDEX_TEXT));
        let t = text(raw.as_bytes());
        assert!(t.len() <= MAX_INDEX_TEXT);
    }

    #[test]
    fn meta_of_another_message_does_not_panic() {
        let big = b"Content-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\n\r\nxxxxxxxxxxxx\r\n--m--\r\n";
        let m = Metadata::parse(big);
        let _ = index_text(b"short", &m);
    }
}
