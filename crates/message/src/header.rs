//! Header blocks: where a header ends, its fields as raw bytes, unfolding, and the bridge to
//! mail-parser's field parsers.

use std::borrow::Cow;

use mail_parser::parsers::MessageStream;
use mail_parser::{ContentType, HeaderValue};

use crate::limits::MAX_HEADER_BYTES;

/// Length of the header at the start of `region`, including the blank line that ends it (so
/// `region[len..]` is the body). A region that starts with a blank line has an empty header
/// (the blank line alone); a region with no blank line is all header.
pub(crate) fn header_len(region: &[u8]) -> usize {
    if region.starts_with(b"\r\n") {
        return 2;
    }
    if region.starts_with(b"\n") {
        return 1;
    }
    let mut i = 0;
    while let Some(p) = region[i..].iter().position(|&b| b == b'\n') {
        let next = i + p + 1;
        let rest = &region[next..];
        if rest.starts_with(b"\r\n") {
            return next + 2;
        }
        if rest.starts_with(b"\n") {
            return next + 1;
        }
        i = next;
    }
    region.len()
}

/// One header field: its name and its raw value (the bytes after the colon, folded lines
/// included, up to and including the line end that closes the field).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
}

/// The fields of one header block, in order. Only the first [`MAX_HEADER_BYTES`] of the block
/// are looked at; a line that is neither a field nor a continuation is skipped.
#[derive(Debug, Default)]
pub(crate) struct Headers<'a> {
    fields: Vec<Field<'a>>,
}

impl<'a> Headers<'a> {
    pub(crate) fn parse(block: &'a [u8]) -> Headers<'a> {
        let block = &block[..block.len().min(MAX_HEADER_BYTES)];
        let mut fields: Vec<Field<'a>> = Vec::new();
        // (name, value start) of the field being read.
        let mut current: Option<(&'a [u8], usize)> = None;
        let mut pos = 0;
        while pos < block.len() {
            let line_end = block[pos..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(block.len(), |p| pos + p + 1);
            let line = &block[pos..line_end];
            let is_blank = line == b"\n" || line == b"\r\n";
            if matches!(line[0], b' ' | b'\t') {
                // A continuation; before any field, a stray line to skip.
                pos = line_end;
                continue;
            }
            if let Some((name, start)) = current.take() {
                fields.push(Field {
                    name,
                    value: &block[start..pos],
                });
            }
            if is_blank {
                break;
            }
            if let Some(colon) = line.iter().position(|&b| b == b':') {
                let name = trim_wsp(&line[..colon]);
                if !name.is_empty() && !name.iter().any(|b| b.is_ascii_whitespace()) {
                    current = Some((name, pos + colon + 1));
                }
            }
            pos = line_end;
        }
        if let Some((name, start)) = current {
            fields.push(Field {
                name,
                value: &block[start..pos],
            });
        }
        Headers { fields }
    }

    /// Every field, in order.
    pub(crate) fn fields(&self) -> &[Field<'a>] {
        &self.fields
    }

    /// The first field of that name (ASCII case-insensitive).
    pub(crate) fn first(&self, name: &str) -> Option<&Field<'a>> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name.as_bytes()))
    }

    /// The raw value of the first field of that name, unfolded and trimmed.
    pub(crate) fn text(&self, name: &str) -> Option<String> {
        self.first(name).map(|f| unfold(f.value))
    }
}

/// Trims spaces and tabs (and line ends) at both ends.
pub(crate) fn trim_wsp(mut b: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = b {
        if matches!(first, b' ' | b'\t' | b'\r' | b'\n') {
            b = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = b {
        if matches!(last, b' ' | b'\t' | b'\r' | b'\n') {
            b = rest;
        } else {
            break;
        }
    }
    b
}

/// A raw header value as a string: CR and LF removed (RFC 5322 unfolding keeps the white space
/// that follows the line break), white space trimmed at both ends, bytes that are not UTF-8
/// replaced by U+FFFD and NUL (which no IMAP string may carry) as well.
pub(crate) fn unfold(raw: &[u8]) -> String {
    let bytes: Vec<u8> = trim_wsp(raw)
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect();
    clean_string(String::from_utf8_lossy(&bytes).into_owned())
}

/// Replaces NUL with U+FFFD.
pub(crate) fn clean_string(s: String) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s
    }
}

/// `raw` ending in a line feed, as mail-parser's field parsers expect.
fn terminated(raw: &[u8]) -> Cow<'_, [u8]> {
    if raw.ends_with(b"\n") {
        Cow::Borrowed(raw)
    } else {
        let mut v = raw.to_vec();
        v.extend_from_slice(b"\r\n");
        Cow::Owned(v)
    }
}

/// Unstructured text with RFC 2047 encoded words decoded (mail-parser).
pub(crate) fn decode_text(raw: &[u8]) -> String {
    let data = terminated(raw);
    match MessageStream::new(&data).parse_unstructured() {
        HeaderValue::Text(t) => clean_string(t.into_owned()),
        HeaderValue::TextList(l) => clean_string(l.join(" ")),
        _ => String::new(),
    }
}

/// A Content-Type or Content-Disposition value (RFC 2045, RFC 2231 parameters; mail-parser).
/// Names come back lower-cased.
pub(crate) fn content_type(raw: &[u8]) -> Option<ContentType<'static>> {
    let data = terminated(raw);
    match MessageStream::new(&data).parse_content_type() {
        HeaderValue::ContentType(ct) => Some(ContentType {
            c_type: Cow::Owned(ct.c_type.into_owned()),
            c_subtype: ct.c_subtype.map(|s| Cow::Owned(s.into_owned())),
            attributes: ct.attributes.map(|a| {
                a.into_iter()
                    .map(|at| mail_parser::Attribute {
                        name: Cow::Owned(at.name.into_owned()),
                        value: Cow::Owned(at.value.into_owned()),
                    })
                    .collect()
            }),
        }),
        _ => None,
    }
}

/// The message ids of a Message-ID, In-Reply-To or References value, without their angle
/// brackets (mail-parser).
pub(crate) fn message_ids(raw: &[u8]) -> Vec<String> {
    let data = terminated(raw);
    match MessageStream::new(&data).parse_id() {
        HeaderValue::Text(t) => vec![clean_string(t.into_owned())],
        HeaderValue::TextList(l) => l
            .into_iter()
            .map(|t| clean_string(t.into_owned()))
            .collect(),
        _ => Vec::new(),
    }
}

/// A Date value as seconds since the Unix epoch, UTC; None when it does not parse to a valid
/// date (mail-parser).
pub(crate) fn date(raw: &[u8]) -> Option<i64> {
    let data = terminated(raw);
    match MessageStream::new(&data).parse_date() {
        HeaderValue::DateTime(dt) if dt.is_valid() => Some(dt.to_timestamp()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_end_crlf_lf_and_none() {
        assert_eq!(header_len(b"A: b\r\n\r\nbody"), 8);
        assert_eq!(header_len(b"A: b\n\nbody"), 6);
        assert_eq!(header_len(b"\r\nbody"), 2);
        assert_eq!(header_len(b"\nbody"), 1);
        assert_eq!(header_len(b"A: b\r\n"), 6);
        assert_eq!(header_len(b"A: b"), 4);
        assert_eq!(header_len(b""), 0);
    }

    #[test]
    fn fields_folding_and_junk() {
        let block =
            b"Subject: hello\r\n  world\r\nnot a field\r\nFrom:a@b\r\n\tx\r\nX:\r\n\r\nbody";
        let h = Headers::parse(block);
        assert_eq!(h.fields.len(), 3);
        assert_eq!(h.first("subject").unwrap().value, b" hello\r\n  world\r\n");
        assert_eq!(h.text("SUBJECT").unwrap(), "hello  world");
        assert_eq!(h.text("from").unwrap(), "a@b\tx");
        assert_eq!(h.text("x").unwrap(), "");
        assert!(h.first("body").is_none());
    }

    #[test]
    fn continuation_before_any_field_is_ignored() {
        let h = Headers::parse(b" x: y\nA: 1\n");
        assert_eq!(h.fields.len(), 1);
        assert_eq!(h.text("a").unwrap(), "1");
    }

    #[test]
    fn decoders() {
        assert_eq!(
            decode_text(b" =?UTF-8?Q?caf=C3=A9?= au lait\r\n"),
            "café au lait"
        );
        assert_eq!(
            message_ids(b" <a@b> <c@d>\r\n"),
            vec!["a@b".to_string(), "c@d".to_string()]
        );
        assert_eq!(date(b" Thu, 1 Jan 1970 01:00:00 +0100\r\n"), Some(0));
        assert_eq!(date(b" not a date\r\n"), None);
        let ct = content_type(b" Text/Plain; Charset=\"us-ascii\"\r\n").unwrap();
        assert_eq!(ct.c_type, "text");
        assert_eq!(ct.attribute("charset"), Some("us-ascii"));
    }
}
