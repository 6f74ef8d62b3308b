//! The bytes of `BODY[section]` and `BINARY[part]` from a raw message and its stored metadata
//! (RFC 9051 §6.4.5, RFC 3516). The part offsets computed at delivery say where each part is,
//! so no MIME parsing happens here.

use mailfleet_imap_proto::{Section, SectionText};
use mailfleet_message::{BodyPart, Metadata, PartKind, decode_base64, decode_quoted_printable};

fn slice(raw: &[u8], range: std::ops::Range<usize>) -> Vec<u8> {
    let end = range.end.min(raw.len());
    let start = range.start.min(end);
    raw[start..end].to_vec()
}

/// The header fields of a header block whose names are (`keep`) or are not in `names`, with
/// the blank line that ends a header.
pub(crate) fn header_fields(header: &[u8], names: &[String], keep: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < header.len() {
        // One field: its first line and the continuation lines.
        let mut end = i;
        loop {
            match header[end..].iter().position(|&c| c == b'\n') {
                Some(p) => end += p + 1,
                None => {
                    end = header.len();
                    break;
                }
            }
            if !matches!(header.get(end), Some(b' ') | Some(b'\t')) {
                break;
            }
        }
        let field = &header[i..end];
        i = end;
        if field == b"\r\n" || field == b"\n" {
            break;
        }
        let name_end = field.iter().position(|&c| c == b':').unwrap_or(0);
        let name = field[..name_end].trim_ascii();
        if name.is_empty() {
            continue;
        }
        let listed = names
            .iter()
            .any(|n| n.as_bytes().eq_ignore_ascii_case(name));
        if listed == keep {
            out.extend_from_slice(field);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The message a HEADER or TEXT section of `part` reads: the part itself at the top, the
/// encapsulated message of a message/rfc822 part.
fn message_of<'a>(meta: &'a Metadata, part: &[u32]) -> Option<&'a BodyPart> {
    if part.is_empty() {
        return Some(&meta.body);
    }
    match &meta.section(part)?.kind {
        PartKind::Message { body, .. } => Some(body),
        _ => None,
    }
}

/// The bytes a section names; `None` when the part does not exist.
pub(crate) fn section_bytes(raw: &[u8], meta: &Metadata, section: &Section) -> Option<Vec<u8>> {
    let part = &section.part;
    Some(match &section.text {
        None if part.is_empty() => raw.to_vec(),
        None => slice(raw, meta.section(part)?.offsets.body()),
        Some(SectionText::Mime) => slice(raw, meta.section(part)?.offsets.header()),
        Some(text) => {
            let Some(msg) = message_of(meta, part) else {
                // HEADER or TEXT of a part that is not a message: nothing there.
                meta.section(part)?;
                return Some(Vec::new());
            };
            match text {
                SectionText::Header => slice(raw, msg.offsets.header()),
                SectionText::Text => slice(raw, msg.offsets.body()),
                SectionText::HeaderFields(names) => {
                    header_fields(&slice(raw, msg.offsets.header()), names, true)
                }
                SectionText::HeaderFieldsNot(names) => {
                    header_fields(&slice(raw, msg.offsets.header()), names, false)
                }
                SectionText::Mime => return None,
            }
        }
    })
}

/// Why a BINARY part cannot be given.
pub(crate) enum BinaryError {
    NoPart,
    UnknownEncoding,
}

/// `BINARY[part]`: the part's body with its transfer encoding undone; the whole message for
/// the empty part.
pub(crate) fn binary_bytes(
    raw: &[u8],
    meta: &Metadata,
    part: &[u32],
) -> Result<Vec<u8>, BinaryError> {
    if part.is_empty() {
        return Ok(raw.to_vec());
    }
    let p = meta.section(part).ok_or(BinaryError::NoPart)?;
    let body = slice(raw, p.offsets.body());
    match p.fields.encoding.to_ascii_uppercase().as_str() {
        "7BIT" | "8BIT" | "BINARY" | "" => Ok(body),
        "BASE64" => Ok(decode_base64(&body)),
        "QUOTED-PRINTABLE" => Ok(decode_quoted_printable(&body)),
        _ => Err(BinaryError::UnknownEncoding),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAW: &[u8] = b"From: a@b\r\nSubject: hi\r\n there\r\nTo: c@d\r\n\
        Content-Type: multipart/mixed; boundary=x\r\n\r\npreamble\r\n--x\r\n\
        Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
        caf=C3=A9=\r\n!\r\n--x\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\n\
        inner body\r\n--x\r\nContent-Type: application/octet-stream\r\n\
        Content-Transfer-Encoding: base64\r\n\r\naGVs\r\nbG8=\r\n--x--\r\n";

    fn sec(part: &[u32], text: Option<SectionText>) -> Section {
        Section {
            part: part.to_vec(),
            text,
        }
    }

    #[test]
    fn sections() {
        let m = Metadata::parse(RAW);
        let get = |s: Section| String::from_utf8(section_bytes(RAW, &m, &s).unwrap()).unwrap();
        assert_eq!(get(sec(&[], None)).len(), RAW.len());
        assert!(get(sec(&[], Some(SectionText::Header))).ends_with("boundary=x\r\n\r\n"));
        assert_eq!(
            get(sec(
                &[],
                Some(SectionText::HeaderFields(vec!["SUBJECT".into()]))
            )),
            "Subject: hi\r\n there\r\n\r\n"
        );
        assert_eq!(
            get(sec(
                &[],
                Some(SectionText::HeaderFieldsNot(vec![
                    "subject".into(),
                    "content-type".into()
                ]))
            )),
            "From: a@b\r\nTo: c@d\r\n\r\n"
        );
        assert_eq!(get(sec(&[1], None)), "caf=C3=A9=\r\n!");
        assert!(get(sec(&[1], Some(SectionText::Mime))).starts_with("Content-Type: text/plain"));
        assert_eq!(
            get(sec(&[2], Some(SectionText::Header))),
            "Subject: inner\r\n\r\n"
        );
        assert_eq!(get(sec(&[2], Some(SectionText::Text))), "inner body");
        assert_eq!(get(sec(&[1], Some(SectionText::Header))), "");
        assert!(section_bytes(RAW, &m, &sec(&[9], None)).is_none());
        let Ok(b) = binary_bytes(RAW, &m, &[1]) else {
            panic!()
        };
        assert_eq!(b, "café!".as_bytes());
        let Ok(b) = binary_bytes(RAW, &m, &[3]) else {
            panic!()
        };
        assert_eq!(b, b"hello");
    }
}
