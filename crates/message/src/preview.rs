//! The preview (RFC 8970 PREVIEW) and the "has an attachment" flag.
//!
//! Preview: the first text/plain part, else the first text/html part (tags, comments, style
//! and script dropped, entities decoded, by mail-parser's `html_to_text`), in depth-first order,
//! skipping parts whose disposition is `attachment` and not going into message/rfc822 parts
//! (a forwarded message is not this message's text). The transfer encoding and charset are
//! decoded (leniently, as RFC 2045 suggests; the charset by mail-parser), white space
//! (including line breaks) collapsed to single spaces, control characters
//! dropped, and the result cut to [`PREVIEW_CHARS`] characters. Only the first
//! [`MAX_PREVIEW_INPUT`] bytes of the part's body are read (cut at a line end, so that base64
//! and quoted-printable decode whole lines).
//!
//! Attachment: a message has one when some part, not inside a message/rfc822 part, is
//!
//! - a part with `Content-Disposition: attachment`, or
//! - a leaf that is not text/* and whose disposition is not `inline`, unless it sits directly in
//!   a multipart/related (images of an HTML body) or is the signature of a multipart/signed
//!   (a part after the first), or
//! - a message/rfc822 part whose disposition is not `inline` (a forwarded message).

use crate::transfer::{decode_base64, decode_quoted_printable};
use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::decoders::html::html_to_text;

use crate::bodystructure::{BodyPart, PartKind};
use crate::limits::{MAX_PREVIEW_INPUT, PREVIEW_CHARS};

fn is_inline_disposition(p: &BodyPart) -> bool {
    p.fields
        .disposition
        .as_ref()
        .is_some_and(|d| d.kind.eq_ignore_ascii_case("inline"))
}

/// Leaves and message parts reachable without entering a message/rfc822, depth first, each
/// with whether it is "structural": directly inside a multipart/related (an HTML body's
/// images) or a second or later part of a multipart/signed (the signature).
fn visible_parts(root: &BodyPart) -> Vec<(&BodyPart, bool)> {
    let mut out = Vec::new();
    let mut stack = vec![(root, false)];
    while let Some((p, structural)) = stack.pop() {
        match &p.kind {
            PartKind::Multipart { parts } => {
                let related = p.media.subtype.eq_ignore_ascii_case("related");
                let signed = p.media.subtype.eq_ignore_ascii_case("signed");
                stack.extend(
                    parts
                        .iter()
                        .enumerate()
                        .rev()
                        .map(|(i, c)| (c, related || (signed && i > 0))),
                );
            }
            _ => out.push((p, structural)),
        }
    }
    out
}

pub(crate) fn has_attachment(root: &BodyPart) -> bool {
    visible_parts(root).into_iter().any(|(p, structural)| {
        if p.is_attachment_disposition() {
            return true;
        }
        match &p.kind {
            PartKind::Text { .. } => false,
            PartKind::Message { .. } => !is_inline_disposition(p),
            _ => !is_inline_disposition(p) && !structural,
        }
    })
}

pub(crate) fn preview(raw: &[u8], root: &BodyPart) -> String {
    let candidates: Vec<&BodyPart> = visible_parts(root)
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| !p.is_attachment_disposition() && matches!(p.kind, PartKind::Text { .. }))
        .collect();
    let chosen = candidates
        .iter()
        .find(|p| p.media.subtype == "PLAIN")
        .map(|p| (*p, false))
        .or_else(|| {
            candidates
                .iter()
                .find(|p| p.media.subtype == "HTML")
                .map(|p| (*p, true))
        });
    let Some((part, html)) = chosen else {
        return String::new();
    };
    let text = decode_text_body(raw, part);
    let text = if html { html_to_text(&text) } else { text };
    squeeze(&text, PREVIEW_CHARS)
}

/// The body of a text part as a string: at most [`MAX_PREVIEW_INPUT`] bytes of it, transfer
/// encoding and charset decoded (undecodable input is taken as it is, lossily).
pub(crate) fn decode_text_body(raw: &[u8], part: &BodyPart) -> String {
    decode_body(raw, part, MAX_PREVIEW_INPUT)
}

/// The body of a part as a string: at most `max` bytes of it (cut at a line end), transfer
/// encoding and charset decoded (undecodable input is taken as it is, lossily). Offsets outside
/// `raw` give an empty string.
pub(crate) fn decode_body(raw: &[u8], part: &BodyPart, max: usize) -> String {
    let body = raw.get(part.offsets.body()).unwrap_or_default();
    let body = if body.len() > max {
        let cut = &body[..max];
        match cut.iter().rposition(|&b| b == b'\n') {
            Some(p) => &cut[..=p],
            None => cut,
        }
    } else {
        body
    };
    let decoded = match part.fields.encoding.as_str() {
        "BASE64" => Some(decode_base64(body)),
        "QUOTED-PRINTABLE" => Some(decode_quoted_printable(body)),
        _ => None,
    };
    let bytes = decoded.as_deref().unwrap_or(body);
    match part
        .media
        .param("charset")
        .and_then(|c| charset_decoder(c.as_bytes()))
    {
        Some(decode) => decode(bytes),
        None => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Collapses white space, drops control characters, trims, and keeps at most `max` characters.
fn squeeze(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut n = 0;
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if c.is_control() {
            continue;
        }
        if space {
            if n + 1 >= max {
                break;
            }
            out.push(' ');
            n += 1;
            space = false;
        }
        if n >= max {
            break;
        }
        out.push(c);
        n += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bodystructure::parse;

    fn pv(raw: &[u8]) -> String {
        preview(raw, &parse(raw))
    }

    fn att(raw: &[u8]) -> bool {
        has_attachment(&parse(raw))
    }

    #[test]
    fn plain_text_collapsed_and_cut() {
        assert_eq!(
            pv(b"Subject: x\r\n\r\n  Hello,\r\n\r\n  world!\t\r\n"),
            "Hello, world!"
        );
        let long = "word ".repeat(200);
        let p = pv(format!("\r\n{long}").as_bytes());
        assert_eq!(p.chars().count(), PREVIEW_CHARS);
        assert!(!p.ends_with(' '));
        assert_eq!(pv(b"Content-Type: image/png\r\n\r\nxxxx"), "");
        assert_eq!(pv(b""), "");
        assert_eq!(squeeze("a  b", 2), "a");
        assert_eq!(squeeze("ab c", 3), "ab");
        assert_eq!(squeeze("ab c", 4), "ab c");
    }

    #[test]
    fn encodings_and_charsets() {
        assert_eq!(
            pv(b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nGr=FC=DFe, soft=\r\nbreak\r\n"),
            "Grüße, softbreak"
        );
        assert_eq!(
            pv(b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nSGVsbG8g\r\nd29ybGQ=\r\n"),
            "Hello world"
        );
        // Characters outside the base64 alphabet are skipped.
        assert_eq!(
            pv(b"Content-Transfer-Encoding: base64\r\n\r\n!SGk*\r\n=junk"),
            "Hi"
        );
        // A bare "=" in quoted-printable HTML stays.
        assert_eq!(
            pv(b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<p class=\"x\">h=C3=A4h=C3=A4 a=3Db =\r\nc</p>"),
            "h\u{e4}h\u{e4} a=b c"
        );
    }

    const ALT: &[u8] = b"Content-Type: multipart/mixed; boundary=m\r\n\r\n\
--m\r\n\
Content-Type: multipart/alternative; boundary=a\r\n\r\n\
--a\r\n\
Content-Type: text/html\r\n\r\n\
<html><head><style>p{}</style></head><body><p>Hi &amp; <b>bye</b></p></body></html>\r\n\
--a--\r\n\
--m\r\n\
Content-Type: text/plain\r\n\
Content-Disposition: attachment; filename=notes.txt\r\n\r\n\
attached text\r\n\
--m--\r\n";

    #[test]
    fn html_when_no_plain_and_attachments_skipped() {
        assert_eq!(pv(ALT), "Hi & bye");
        assert!(att(ALT));
    }

    #[test]
    fn attachment_rule() {
        // Plain message.
        assert!(!att(b"Subject: x\r\n\r\nbody"));
        // Alternative only.
        assert!(!att(
            b"Content-Type: multipart/alternative; boundary=a\r\n\r\n--a\r\n\r\nx\r\n--a\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--a--\r\n"
        ));
        // Images of an HTML body in multipart/related are not attachments.
        assert!(!att(
            b"Content-Type: multipart/related; boundary=r\r\n\r\n--r\r\nContent-Type: text/html\r\n\r\n<img src=cid:i>\r\n--r\r\nContent-Type: image/png\r\nContent-ID: <i>\r\n\r\nxx\r\n--r--\r\n"
        ));
        // An inline image is not; an image without a disposition is.
        assert!(!att(
            b"Content-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\n\r\nx\r\n--m\r\nContent-Type: image/png\r\nContent-Disposition: inline\r\n\r\nxx\r\n--m--\r\n"
        ));
        assert!(att(
            b"Content-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\n\r\nx\r\n--m\r\nContent-Type: application/pdf\r\n\r\nxx\r\n--m--\r\n"
        ));
        // A forwarded message is, and what is inside it does not count separately.
        assert!(att(
            b"Content-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\n\r\nx\r\n--m\r\nContent-Type: message/rfc822\r\n\r\nSubject: in\r\n\r\nbody\r\n--m--\r\n"
        ));
        // A signature is not; a signed message's attachment is.
        assert!(!att(
            b"Content-Type: multipart/signed; boundary=s\r\n\r\n--s\r\n\r\nsigned text\r\n--s\r\nContent-Type: application/pgp-signature\r\n\r\nsig\r\n--s--\r\n"
        ));
        assert!(att(
            b"Content-Type: multipart/signed; boundary=s\r\n\r\n--s\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\n\r\nx\r\n--m\r\nContent-Type: application/zip\r\n\r\nzz\r\n--m--\r\n--s\r\nContent-Type: application/pgp-signature\r\n\r\nsig\r\n--s--\r\n"
        ));
        // A single-part non-text message is an attachment in itself.
        assert!(att(b"Content-Type: application/pdf\r\n\r\n%PDF"));
    }

    #[test]
    fn lenient_decoders() {
        assert_eq!(decode_base64(b"SGVsbG8gd29ybGQ="), b"Hello world");
        assert_eq!(decode_base64(b"SGVs\r\nbG8=\r\n"), b"Hello");
        assert_eq!(decode_base64(b""), b"");
        assert_eq!(decode_base64(b"S"), b"");
        assert_eq!(decode_quoted_printable(b"a=3D=3db"), b"a==b");
        assert_eq!(
            decode_quoted_printable(b"soft=  \nbreak=\r\nhere="),
            b"softbreakhere"
        );
        assert_eq!(decode_quoted_printable(b"x=\"y\" =G1 ="), b"x=\"y\" =G1 ");
    }

    #[test]
    fn forwarded_text_is_not_the_preview() {
        let raw = b"Content-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\nContent-Type: message/rfc822\r\n\r\nSubject: in\r\n\r\ninner text\r\n--m--\r\n";
        assert_eq!(pv(raw), "");
    }
}
