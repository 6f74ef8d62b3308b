//! BODYSTRUCTURE (RFC 9051 §7.5.2): the MIME tree of a message with every part's fields and
//! its byte offsets in the raw message.
//!
//! The tree is found by mailfleet's own boundary scan over the raw bytes (so that every offset
//! is exact and absolute, also inside message/rfc822 parts); each part's MIME header fields are
//! parsed by mail-parser. Rules:
//!
//! - A part's header runs from its first byte to the end of the blank line that ends it (a part
//!   that starts with a blank line has that line as its header); its body from there to the
//!   line break before the next boundary delimiter (the line break belongs to the delimiter, RFC
//!   2046 §5.1.1). A multipart whose close delimiter is missing ends at the end of its parent.
//! - A delimiter is a line that starts with `--` and the boundary, followed by anything but a
//!   boundary character (so the delimiters of an inner boundary that has the outer one as a
//!   prefix are the inner multipart's, and white space or junk after the boundary is
//!   tolerated); a close delimiter has `--` after the boundary. Preamble and epilogue belong to
//!   no part.
//! - With no Content-Type (or one without a subtype), a part is `TEXT/PLAIN; CHARSET=US-ASCII`,
//!   or `MESSAGE/RFC822` directly inside a multipart/digest. A text part with no charset gets
//!   `CHARSET=US-ASCII` (RFC 2046's default). A multipart with no boundary parameter is taken as
//!   `TEXT/PLAIN`. A multipart in which no delimiter is found gets one empty text/plain part
//!   (the grammar needs at least one).
//! - message/rfc822 and message/global parts whose encoding is 7bit, 8bit or binary (or none)
//!   are parsed as messages: envelope, nested body structure. With another encoding they are
//!   basic parts.
//! - Type, subtype, parameter names, encoding and disposition type are upper-cased, as in RFC
//!   9051's examples; parameter values, ids, descriptions and so on are kept as written (values
//!   decoded from RFC 2231 / RFC 2047 by mail-parser).
//! - Lines (text and message parts) are the line feeds in the body, plus one when the body does
//!   not end in one.
//! - Limits ([`crate::limits`]): past [`MAX_DEPTH`](crate::limits::MAX_DEPTH) levels of nesting
//!   or once [`MAX_PARTS`](crate::limits::MAX_PARTS) parts are listed, a multipart or message
//!   part is given as `APPLICATION/OCTET-STREAM` (its bytes are still served, just not split),
//!   and further parts of a multipart are left out of its list.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::envelope::Envelope;
use crate::header::{Headers, content_type, header_len};
use crate::limits::{MAX_DEPTH, MAX_PARTS};

/// Where a part is in the raw message. For the top-level part these are the message's header
/// and body. `BODY[n.MIME]` is `header_start..body_start` of part n; for a message/rfc822 part,
/// `BODY[n.HEADER]` and `BODY[n.TEXT]` are the header and body of its nested body part.
/// The header range includes the blank line that ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PartOffsets {
    #[serde(rename = "h")]
    pub header_start: u64,
    #[serde(rename = "b")]
    pub body_start: u64,
    #[serde(rename = "e")]
    pub body_end: u64,
}

impl PartOffsets {
    /// The part's header (its MIME header; the message header for the top level).
    pub fn header(&self) -> Range<usize> {
        self.header_start as usize..self.body_start as usize
    }

    /// The part's body.
    pub fn body(&self) -> Range<usize> {
        self.body_start as usize..self.body_end as usize
    }

    /// Header and body.
    pub fn whole(&self) -> Range<usize> {
        self.header_start as usize..self.body_end as usize
    }
}

/// A media type: type and subtype upper-cased, parameters as (upper-cased name, value).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MediaType {
    #[serde(rename = "t")]
    pub type_: String,
    #[serde(rename = "s")]
    pub subtype: String,
    #[serde(
        rename = "p",
        default,
        deserialize_with = "crate::stored::exact_vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub params: Vec<(String, String)>,
}

impl MediaType {
    fn new(type_: &str, subtype: &str, params: Vec<(String, String)>) -> MediaType {
        MediaType {
            type_: type_.to_string(),
            subtype: subtype.to_string(),
            params,
        }
    }

    /// A parameter's value, the name compared without regard to case.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// True when this is `type/subtype` (case-insensitive).
    pub fn is(&self, type_: &str, subtype: &str) -> bool {
        self.type_.eq_ignore_ascii_case(type_) && self.subtype.eq_ignore_ascii_case(subtype)
    }
}

/// Content-Disposition (RFC 2183): type upper-cased and parameters as in [`MediaType`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Disposition {
    #[serde(rename = "t")]
    pub kind: String,
    #[serde(
        rename = "p",
        default,
        deserialize_with = "crate::stored::exact_vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub params: Vec<(String, String)>,
}

/// The body fields every part has (for a multipart, only disposition, language and location
/// are sent; its other fields are kept for completeness).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PartFields {
    /// Content-ID, raw.
    #[serde(rename = "i", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Content-Description, raw (RFC 2047 words not decoded).
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Content-Transfer-Encoding, upper-cased; `7BIT` when absent.
    #[serde(rename = "c")]
    pub encoding: String,
    /// Content-MD5, raw.
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    #[serde(rename = "x", default, skip_serializing_if = "Option::is_none")]
    pub disposition: Option<Disposition>,
    /// Content-Language tags.
    #[serde(
        rename = "l",
        default,
        deserialize_with = "crate::stored::exact_vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub language: Vec<String>,
    /// Content-Location, raw.
    #[serde(rename = "o", default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// What a part is, with what only that kind carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartKind {
    /// Any non-text leaf (body-type-basic).
    Basic,
    /// A text/* leaf (body-type-text).
    Text { lines: u64 },
    /// A message/rfc822 or message/global part (body-type-msg).
    Message {
        envelope: Box<Envelope>,
        body: Box<BodyPart>,
        lines: u64,
    },
    /// A multipart/* part (body-type-mpart).
    Multipart { parts: Vec<BodyPart> },
}

/// One MIME part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyPart {
    pub offsets: PartOffsets,
    pub media: MediaType,
    pub fields: PartFields,
    pub kind: PartKind,
}

impl BodyPart {
    /// Size of the body in octets (body-fld-octets).
    pub fn size(&self) -> u64 {
        self.offsets.body_end - self.offsets.body_start
    }

    /// Lines of a text or message part.
    pub fn lines(&self) -> Option<u64> {
        match &self.kind {
            PartKind::Text { lines } | PartKind::Message { lines, .. } => Some(*lines),
            _ => None,
        }
    }

    /// Sub-parts of a multipart (empty for anything else).
    pub fn children(&self) -> &[BodyPart] {
        match &self.kind {
            PartKind::Multipart { parts } => parts,
            _ => &[],
        }
    }

    /// True when the part has `Content-Disposition: attachment`.
    pub fn is_attachment_disposition(&self) -> bool {
        self.fields
            .disposition
            .as_ref()
            .is_some_and(|d| d.kind.eq_ignore_ascii_case("attachment"))
    }

    /// The IMAP BODY s-expression (no extension data).
    pub fn to_imap_body(&self) -> String {
        let mut out = String::new();
        crate::imap::write_body(&mut out, self, false);
        out
    }

    /// The IMAP BODYSTRUCTURE s-expression (with extension data).
    pub fn to_imap_bodystructure(&self) -> String {
        let mut out = String::new();
        crate::imap::write_body(&mut out, self, true);
        out
    }

    /// The part a section number names (`[1, 2]` for `1.2`), this part being a message's top
    /// level: part 1 of a single-part message is its body; the numbers go through multiparts
    /// and into message/rfc822 parts as RFC 9051 §6.4.5 describes. The empty path is this part.
    pub fn section(&self, path: &[u32]) -> Option<&BodyPart> {
        let Some((&first, rest)) = path.split_first() else {
            return Some(self);
        };
        let mut cur = match &self.kind {
            PartKind::Multipart { parts } => parts.get(index(first)?)?,
            _ if first == 1 => self,
            _ => return None,
        };
        for &n in rest {
            cur = match &cur.kind {
                PartKind::Multipart { parts } => parts.get(index(n)?)?,
                PartKind::Message { body, .. } => match &body.kind {
                    PartKind::Multipart { parts } => parts.get(index(n)?)?,
                    _ if n == 1 => body,
                    _ => return None,
                },
                _ => return None,
            };
        }
        Some(cur)
    }

    /// This part and every part inside it, depth first (message/rfc822 bodies included).
    pub fn walk(&self) -> Vec<&BodyPart> {
        let mut out = Vec::new();
        let mut stack = vec![self];
        while let Some(p) = stack.pop() {
            out.push(p);
            match &p.kind {
                PartKind::Multipart { parts } => stack.extend(parts.iter().rev()),
                PartKind::Message { body, .. } => stack.push(body),
                _ => {}
            }
        }
        out
    }
}

fn index(n: u32) -> Option<usize> {
    (n as usize).checked_sub(1)
}

fn upper(s: &str) -> String {
    s.to_ascii_uppercase()
}

fn params(ct: &mail_parser::ContentType<'_>) -> Vec<(String, String)> {
    ct.attributes()
        .unwrap_or_default()
        .iter()
        .map(|a| {
            (
                upper(&a.name),
                crate::header::clean_string(a.value.to_string()),
            )
        })
        .collect()
}

/// Counts lines: line feeds, plus one for a last line without one.
pub(crate) fn count_lines(body: &[u8]) -> u64 {
    let lf = body.iter().filter(|&&b| b == b'\n').count() as u64;
    lf + u64::from(!body.is_empty() && !body.ends_with(b"\n"))
}

struct Walker<'a> {
    raw: &'a [u8],
    parts: usize,
}

/// Parses the body structure of a whole message.
pub(crate) fn parse(raw: &[u8]) -> BodyPart {
    let mut w = Walker { raw, parts: 0 };
    w.part(0, raw.len(), 0, false)
}

/// What a line that starts with `--` and the boundary is, from the rest of the line: a close
/// delimiter (`Some(true)`), a delimiter (`Some(false)`), or neither, when a boundary character
/// (RFC 2046 `bchars`, space aside) follows: then the line is the delimiter of a longer boundary
/// that has this one as a prefix (an inner multipart's, typically), not this one's.
fn delimiter_kind(rest: &[u8]) -> Option<bool> {
    let bchar = |c: &u8| c.is_ascii_alphanumeric() || b"'()+_,-./:=?".contains(c);
    if let Some(after) = rest.strip_prefix(b"--")
        && !after.first().is_some_and(bchar)
    {
        return Some(true);
    }
    if rest.first().is_some_and(bchar) {
        None
    } else {
        Some(false)
    }
}

/// The ranges `[start, end)` of the parts of a multipart body between `start` and `end`.
fn split(raw: &[u8], start: usize, end: usize, boundary: &[u8]) -> Vec<(usize, usize)> {
    let mut delim = Vec::with_capacity(boundary.len() + 2);
    delim.extend_from_slice(b"--");
    delim.extend_from_slice(boundary);
    let mut out = Vec::new();
    let mut open: Option<usize> = None;
    let mut line = start;
    while line < end {
        let line_end = raw[line..end]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(end, |p| line + p + 1);
        let kind = if raw[line..end].starts_with(&delim) {
            delimiter_kind(&raw[(line + delim.len()).min(line_end)..line_end])
        } else {
            None
        };
        if let Some(close) = kind {
            if let Some(ps) = open.take() {
                let pe = if line >= 2 && &raw[line - 2..line] == b"\r\n" {
                    line - 2
                } else if line >= 1 && raw[line - 1] == b'\n' {
                    line - 1
                } else {
                    line
                };
                out.push((ps, pe.max(ps)));
            }
            if close {
                return out;
            }
            open = Some(line_end);
        }
        line = line_end;
    }
    if let Some(ps) = open {
        out.push((ps, end));
    }
    out
}

impl Walker<'_> {
    fn part(&mut self, start: usize, end: usize, depth: usize, in_digest: bool) -> BodyPart {
        self.parts += 1;
        let raw = self.raw;
        let region = &raw[start..end];
        let body_start = start + header_len(region);
        let headers = Headers::parse(&raw[start..body_start]);

        let ct = headers
            .first("content-type")
            .and_then(|f| content_type(f.value))
            .filter(|ct| !ct.c_type.is_empty() && ct.c_subtype.is_some());
        let mut media = match &ct {
            Some(ct) => MediaType::new(
                &upper(&ct.c_type),
                &upper(ct.c_subtype.as_deref().unwrap_or_default()),
                params(ct),
            ),
            None if in_digest => MediaType::new("MESSAGE", "RFC822", Vec::new()),
            None => default_text(),
        };

        let encoding = headers
            .text("content-transfer-encoding")
            .map(|e| upper(&e))
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| "7BIT".to_string());
        let disposition = headers
            .first("content-disposition")
            .and_then(|f| content_type(f.value))
            .filter(|d| !d.c_type.is_empty())
            .map(|d| Disposition {
                kind: upper(&d.c_type),
                params: params(&d),
            });
        let language = headers
            .text("content-language")
            .map(|l| {
                l.split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let fields = PartFields {
            id: headers.text("content-id"),
            description: headers.text("content-description"),
            encoding,
            md5: headers.text("content-md5"),
            disposition,
            language,
            location: headers.text("content-location"),
        };
        let offsets = PartOffsets {
            header_start: start as u64,
            body_start: body_start as u64,
            body_end: end as u64,
        };
        let room = depth < MAX_DEPTH && self.parts < MAX_PARTS;

        let kind = if media.type_ == "MULTIPART" {
            let boundary = media
                .param("boundary")
                .unwrap_or_default()
                .as_bytes()
                .to_vec();
            if boundary.is_empty() {
                media = default_text();
                PartKind::Text {
                    lines: count_lines(&raw[body_start..end]),
                }
            } else if !room {
                media = octet_stream();
                PartKind::Basic
            } else {
                let digest = media.subtype == "DIGEST";
                let mut parts = Vec::new();
                for (ps, pe) in split(raw, body_start, end, &boundary) {
                    if self.parts >= MAX_PARTS {
                        break;
                    }
                    parts.push(self.part(ps, pe, depth + 1, digest));
                }
                if parts.is_empty() {
                    parts.push(self.part(end, end, depth + 1, false));
                }
                PartKind::Multipart { parts }
            }
        } else if media.type_ == "MESSAGE"
            && (media.subtype == "RFC822" || media.subtype == "GLOBAL")
            && matches!(fields.encoding.as_str(), "7BIT" | "8BIT" | "BINARY")
        {
            if room {
                let nested_header = header_len(&raw[body_start..end]);
                let envelope = Envelope::from_headers(&Headers::parse(
                    &raw[body_start..body_start + nested_header],
                ));
                let body = self.part(body_start, end, depth + 1, false);
                PartKind::Message {
                    envelope: Box::new(envelope),
                    body: Box::new(body),
                    lines: count_lines(&raw[body_start..end]),
                }
            } else {
                media = octet_stream();
                PartKind::Basic
            }
        } else if media.type_ == "TEXT" {
            if media.param("charset").is_none() {
                media
                    .params
                    .insert(0, ("CHARSET".to_string(), "US-ASCII".to_string()));
            }
            PartKind::Text {
                lines: count_lines(&raw[body_start..end]),
            }
        } else {
            PartKind::Basic
        };

        BodyPart {
            offsets,
            media,
            fields,
            kind,
        }
    }
}

fn default_text() -> MediaType {
    MediaType::new(
        "TEXT",
        "PLAIN",
        vec![("CHARSET".to_string(), "US-ASCII".to_string())],
    )
}

fn octet_stream() -> MediaType {
    MediaType::new("APPLICATION", "OCTET-STREAM", Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(raw: &[u8], part: &BodyPart) -> String {
        String::from_utf8_lossy(&raw[part.offsets.body()]).into_owned()
    }

    fn header(raw: &[u8], part: &BodyPart) -> String {
        String::from_utf8_lossy(&raw[part.offsets.header()]).into_owned()
    }

    #[test]
    fn simple_text() {
        let raw = b"Subject: x\r\n\r\nline one\r\nline two\r\n";
        let p = parse(raw);
        assert_eq!(p.media, default_text());
        assert_eq!(p.fields.encoding, "7BIT");
        assert_eq!(p.size(), 20);
        assert_eq!(p.lines(), Some(2));
        assert_eq!(header(raw, &p), "Subject: x\r\n\r\n");
        assert_eq!(
            p.to_imap_bodystructure(),
            r#"("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 20 2 NIL NIL NIL NIL)"#
        );
        assert_eq!(
            p.to_imap_body(),
            r#"("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 20 2)"#
        );
        assert_eq!(p.section(&[1]), Some(&p));
        assert_eq!(p.section(&[2]), None);
        assert_eq!(p.section(&[1, 1]), None);
    }

    const ALTERNATIVE: &[u8] = b"From: a@b.test\r\n\
Content-Type: multipart/alternative; boundary=\"b1\"\r\n\
\r\n\
preamble\r\n\
--b1\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
plain body\r\n\
--b1\r\n\
Content-Type: text/html; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
<p>html</p>\r\n\
--b1--\r\n\
epilogue\r\n";

    #[test]
    fn multipart_alternative_offsets_and_rendering() {
        let p = parse(ALTERNATIVE);
        let parts = p.children();
        assert_eq!(parts.len(), 2);
        assert_eq!(body(ALTERNATIVE, &parts[0]), "plain body");
        assert_eq!(
            header(ALTERNATIVE, &parts[0]),
            "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        );
        assert_eq!(body(ALTERNATIVE, &parts[1]), "<p>html</p>");
        assert_eq!(parts[1].fields.encoding, "QUOTED-PRINTABLE");
        assert_eq!(p.section(&[2]), Some(&parts[1]));
        assert_eq!(
            p.to_imap_bodystructure(),
            concat!(
                r#"(("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 10 1 NIL NIL NIL NIL)"#,
                r#"("TEXT" "HTML" ("CHARSET" "utf-8") NIL NIL "QUOTED-PRINTABLE" 11 1 NIL NIL NIL NIL)"#,
                r#" "ALTERNATIVE" ("BOUNDARY" "b1") NIL NIL NIL)"#
            )
        );
        assert_eq!(
            p.to_imap_body(),
            concat!(
                r#"(("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 10 1)"#,
                r#"("TEXT" "HTML" ("CHARSET" "utf-8") NIL NIL "QUOTED-PRINTABLE" 11 1)"#,
                r#" "ALTERNATIVE")"#
            )
        );
    }

    /// RFC 9051 §7.5.2's BODYSTRUCTURE example, from a message written to match it.
    #[test]
    fn rfc_bodystructure_example() {
        // 1152 octets in 23 lines: 22 lines of "abc" and a last one without a line break (the
        // CRLF before the delimiter is the delimiter's).
        let first = "abc\r\n".repeat(22) + &"y".repeat(1152 - 110);
        assert_eq!(first.len(), 1152);
        // 4554 octets in 73 lines of base64.
        let second = format!("{}\r\n", "QUJD".repeat(15)).repeat(72) + &"QUJD".repeat(22) + "QU";
        assert_eq!(second.len(), 4554);
        let raw = format!(
            "MIME-Version: 1.0\r\n\
Content-Type: MULTIPART/MIXED; BOUNDARY=\"cc.diff\"\r\n\
\r\n\
--cc.diff\r\n\
Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\
\r\n\
{first}\r\n\
--cc.diff\r\n\
Content-Type: TEXT/PLAIN; CHARSET=US-ASCII; NAME=cc.diff\r\n\
Content-ID: <960723163407.20117h@cac.washington.edu>\r\n\
Content-Description: Compiler diff\r\n\
Content-Transfer-Encoding: BASE64\r\n\
\r\n\
{second}\r\n\
--cc.diff--\r\n"
        );
        let p = parse(raw.as_bytes());
        assert_eq!(
            p.to_imap_body(),
            concat!(
                r#"(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1152 23)"#,
                r#"("TEXT" "PLAIN" ("CHARSET" "US-ASCII" "NAME" "cc.diff") "#,
                r#""<960723163407.20117h@cac.washington.edu>" "Compiler diff" "#,
                r#""BASE64" 4554 73) "MIXED")"#
            )
        );
    }

    #[test]
    fn nested_message_and_attachment() {
        let raw: &[u8] = b"Content-Type: multipart/mixed; boundary=outer\n\
\n\
--outer\n\
\n\
intro\n\
--outer\n\
Content-Type: message/rfc822\n\
Content-Disposition: attachment; filename=\"fwd.eml\"\n\
\n\
From: Inner <inner@x.test>\n\
Subject: inner\n\
Content-Type: multipart/mixed; boundary=inner\n\
\n\
--inner\n\
Content-Type: text/plain\n\
\n\
hello\n\
--inner\n\
Content-Type: image/png; name=a.png\n\
Content-Transfer-Encoding: base64\n\
Content-Language: en, de\n\
Content-Location: http://x.test/a.png\n\
Content-MD5: abc=\n\
\n\
iVBORw0KGgo=\n\
--inner--\n\
--outer--\n";
        let p = parse(raw);
        let parts = p.children();
        assert_eq!(parts.len(), 2);
        assert_eq!(header(raw, &parts[0]), "\n");
        assert_eq!(body(raw, &parts[0]), "intro");
        let msg = &parts[1];
        let PartKind::Message {
            envelope,
            body: inner,
            lines,
        } = &msg.kind
        else {
            panic!("not a message: {msg:?}");
        };
        assert_eq!(envelope.subject.as_deref(), Some("inner"));
        assert_eq!(*lines, 17);
        assert!(msg.is_attachment_disposition());
        // BODY[2.HEADER], BODY[2.TEXT], BODY[2.1], BODY[2.2], BODY[2.2.MIME]
        assert!(header(raw, inner).starts_with("From: Inner"));
        assert!(body(raw, inner).starts_with("--inner\n"));
        assert_eq!(body(raw, p.section(&[2, 1]).unwrap()), "hello");
        let png = p.section(&[2, 2]).unwrap();
        assert_eq!(body(raw, png), "iVBORw0KGgo=");
        assert!(header(raw, png).starts_with("Content-Type: image/png"));
        assert!(header(raw, png).ends_with("abc=\n\n"));
        assert_eq!(p.section(&[2, 3]), None);
        assert_eq!(
            png.to_imap_bodystructure(),
            r#"("IMAGE" "PNG" ("NAME" "a.png") NIL NIL "BASE64" 12 "abc=" NIL ("en" "de") "http://x.test/a.png")"#
        );
        let bs = p.to_imap_bodystructure();
        assert!(
            bs.contains(r#"("MESSAGE" "RFC822" NIL NIL NIL "7BIT" "#),
            "{bs}"
        );
        assert!(
            bs.contains(r#"("ATTACHMENT" ("FILENAME" "fwd.eml"))"#),
            "{bs}"
        );
        assert!(bs.contains(r#"(("Inner" NIL "inner" "x.test"))"#), "{bs}");
    }

    #[test]
    fn digest_default_and_missing_boundaries() {
        let raw = b"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: s\r\n\r\nb\r\n--d--\r\n";
        let p = parse(raw);
        assert!(p.children()[0].media.is("message", "rfc822"));
        // No boundary parameter: text/plain.
        let p = parse(b"Content-Type: multipart/mixed\r\n\r\nbody\r\n");
        assert_eq!(p.media, default_text());
        // Boundary never found: one empty part.
        let raw = b"Content-Type: multipart/mixed; boundary=zz\r\n\r\nbody\r\n";
        let p = parse(raw);
        let parts = p.children();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].size(), 0);
        assert_eq!(parts[0].offsets.header_start as usize, raw.len());
        // No close delimiter: the last part runs to the end.
        let raw = b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n\r\nabc\r\n";
        let p = parse(raw);
        assert_eq!(body(raw, &p.children()[0]), "abc\r\n");
        // Base64 message/rfc822 is a basic part.
        let p = parse(
            b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n",
        );
        assert_eq!(p.kind, PartKind::Basic);
    }

    #[test]
    fn boundaries_that_are_prefixes_of_others() {
        let raw: &[u8] = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\n\
Content-Type: multipart/alternative; boundary=b1\r\n\r\n\
--b1\r\n\r\none\r\n\
--b1\r\n\r\ntwo\r\n\
--b1--\r\n\
--b \t\r\n\r\nthree\r\n\
--b--  \r\n";
        let p = parse(raw);
        let parts = p.children();
        assert_eq!(parts.len(), 2, "{p:#?}");
        assert_eq!(parts[0].children().len(), 2);
        assert_eq!(body(raw, p.section(&[1, 2]).unwrap()), "two");
        assert_eq!(body(raw, &parts[1]), "three");
        assert_eq!(delimiter_kind(b""), Some(false));
        assert_eq!(delimiter_kind(b"\r\n"), Some(false));
        assert_eq!(delimiter_kind(b" junk\r\n"), Some(false));
        assert_eq!(delimiter_kind(b"--"), Some(true));
        assert_eq!(delimiter_kind(b"--\r\n"), Some(true));
        assert_eq!(delimiter_kind(b"1\r\n"), None);
        assert_eq!(delimiter_kind(b"--x\r\n"), None);
        assert_eq!(delimiter_kind(b"_2--\r\n"), None);
    }

    #[test]
    fn depth_limit() {
        let mut raw = Vec::new();
        for i in 0..(MAX_DEPTH + 10) {
            raw.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=b{i}x\r\n\r\n--b{i}x\r\n")
                    .as_bytes(),
            );
        }
        raw.extend_from_slice(b"\r\nleaf\r\n");
        let p = parse(&raw);
        let mut depth = 0;
        let mut cur = &p;
        while let Some(c) = cur.children().first() {
            cur = c;
            depth += 1;
        }
        assert_eq!(depth, MAX_DEPTH);
        assert!(cur.media.is("application", "octet-stream"));
    }

    #[test]
    fn parts_limit() {
        let mut raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec();
        for _ in 0..(MAX_PARTS + 50) {
            raw.extend_from_slice(b"--b\r\n\r\nx\r\n");
        }
        let p = parse(&raw);
        assert_eq!(p.walk().len(), MAX_PARTS);
    }
}
