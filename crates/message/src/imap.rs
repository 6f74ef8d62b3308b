//! IMAP s-expressions for ENVELOPE, BODY and BODYSTRUCTURE (RFC 9051 §7.5.2 and its formal
//! syntax, §9).
//!
//! A string is sent quoted when every byte is 7-bit, not NUL, CR or LF, and it is at most
//! [`MAX_QUOTED`] bytes long (`"` and `\` escaped); otherwise as a literal (`{n}\r\n` and the
//! bytes), which can carry 8-bit text for clients with or without UTF8=ACCEPT. Lists of
//! addresses and of bodies have no space between their elements, as the grammar has it.

use std::fmt::Write as _;

use crate::address::Address;
use crate::bodystructure::{BodyPart, Disposition, PartKind};
use crate::envelope::Envelope;

/// Longest string sent quoted.
pub const MAX_QUOTED: usize = 1024;

/// Appends `s` as an IMAP string (quoted or literal).
pub fn write_string(out: &mut String, s: &str) {
    let quotable = s.len() <= MAX_QUOTED
        && s.bytes()
            .all(|b| (0x01..=0x7f).contains(&b) && b != b'\r' && b != b'\n');
    if quotable {
        out.push('"');
        for c in s.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    } else {
        let _ = write!(out, "{{{}}}\r\n", s.len());
        out.push_str(s);
    }
}

/// Appends an nstring: `NIL` for `None`.
pub fn write_nstring(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => write_string(out, s),
        None => out.push_str("NIL"),
    }
}

fn write_address(out: &mut String, a: &Address) {
    out.push('(');
    write_nstring(out, a.name.as_deref());
    out.push(' ');
    write_nstring(out, a.adl.as_deref());
    out.push(' ');
    write_nstring(out, a.mailbox.as_deref());
    out.push(' ');
    write_nstring(out, a.host.as_deref());
    out.push(')');
}

fn write_addresses(out: &mut String, list: &[Address]) {
    if list.is_empty() {
        out.push_str("NIL");
        return;
    }
    out.push('(');
    for a in list {
        write_address(out, a);
    }
    out.push(')');
}

/// Appends the ENVELOPE s-expression.
pub fn write_envelope(out: &mut String, e: &Envelope) {
    out.push('(');
    write_nstring(out, e.date.as_deref());
    out.push(' ');
    write_nstring(out, e.subject.as_deref());
    for list in [&e.from, &e.sender, &e.reply_to, &e.to, &e.cc, &e.bcc] {
        out.push(' ');
        write_addresses(out, list);
    }
    out.push(' ');
    write_nstring(out, e.in_reply_to.as_deref());
    out.push(' ');
    write_nstring(out, e.message_id.as_deref());
    out.push(')');
}

fn write_params(out: &mut String, params: &[(String, String)]) {
    if params.is_empty() {
        out.push_str("NIL");
        return;
    }
    out.push('(');
    for (i, (name, value)) in params.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        write_string(out, name);
        out.push(' ');
        write_string(out, value);
    }
    out.push(')');
}

fn write_disposition(out: &mut String, d: Option<&Disposition>) {
    match d {
        None => out.push_str("NIL"),
        Some(d) => {
            out.push('(');
            write_string(out, &d.kind);
            out.push(' ');
            write_params(out, &d.params);
            out.push(')');
        }
    }
}

fn write_language(out: &mut String, langs: &[String]) {
    match langs {
        [] => out.push_str("NIL"),
        [one] => write_string(out, one),
        many => {
            out.push('(');
            for (i, l) in many.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_string(out, l);
            }
            out.push(')');
        }
    }
}

/// Appends the BODY (`extensible == false`) or BODYSTRUCTURE s-expression of `part`.
pub fn write_body(out: &mut String, part: &BodyPart, extensible: bool) {
    let f = &part.fields;
    out.push('(');
    if let PartKind::Multipart { parts } = &part.kind {
        for p in parts {
            write_body(out, p, extensible);
        }
        out.push(' ');
        write_string(out, &part.media.subtype);
        if extensible {
            out.push(' ');
            write_params(out, &part.media.params);
            out.push(' ');
            write_disposition(out, f.disposition.as_ref());
            out.push(' ');
            write_language(out, &f.language);
            out.push(' ');
            write_nstring(out, f.location.as_deref());
        }
        out.push(')');
        return;
    }
    write_string(out, &part.media.type_);
    out.push(' ');
    write_string(out, &part.media.subtype);
    out.push(' ');
    write_params(out, &part.media.params);
    out.push(' ');
    write_nstring(out, f.id.as_deref());
    out.push(' ');
    write_nstring(out, f.description.as_deref());
    out.push(' ');
    write_string(out, &f.encoding);
    let _ = write!(out, " {}", part.size());
    match &part.kind {
        PartKind::Text { lines } => {
            let _ = write!(out, " {lines}");
        }
        PartKind::Message {
            envelope,
            body,
            lines,
        } => {
            out.push(' ');
            write_envelope(out, envelope);
            out.push(' ');
            write_body(out, body, extensible);
            let _ = write!(out, " {lines}");
        }
        PartKind::Basic | PartKind::Multipart { .. } => {}
    }
    if extensible {
        out.push(' ');
        write_nstring(out, f.md5.as_deref());
        out.push(' ');
        write_disposition(out, f.disposition.as_ref());
        out.push(' ');
        write_language(out, &f.language);
        out.push(' ');
        write_nstring(out, f.location.as_deref());
    }
    out.push(')');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> String {
        let mut out = String::new();
        write_string(&mut out, v);
        out
    }

    #[test]
    fn strings() {
        assert_eq!(s("plain"), "\"plain\"");
        assert_eq!(s(""), "\"\"");
        assert_eq!(s("a \"b\" \\c"), r#""a \"b\" \\c""#);
        assert_eq!(s("tab\there"), "\"tab\there\"");
        assert_eq!(s("café"), "{5}\r\ncafé");
        assert_eq!(s("a\r\nb"), "{4}\r\na\r\nb");
        let long = "x".repeat(MAX_QUOTED + 1);
        assert_eq!(s(&long), format!("{{{}}}\r\n{long}", long.len()));
        let mut out = String::new();
        write_nstring(&mut out, None);
        assert_eq!(out, "NIL");
    }

    #[test]
    fn languages_and_dispositions() {
        let mut out = String::new();
        write_language(&mut out, &["en".into()]);
        write_language(&mut out, &[]);
        write_language(&mut out, &["en".into(), "fr".into()]);
        assert_eq!(out, r#""en"NIL("en" "fr")"#);
        let mut out = String::new();
        write_disposition(
            &mut out,
            Some(&Disposition {
                kind: "INLINE".into(),
                params: vec![],
            }),
        );
        assert_eq!(out, r#"("INLINE" NIL)"#);
    }
}
