//! ENVELOPE (RFC 9051 §7.5.2, RFC 3501 §7.4.2): the fields of a message's header as the IMAP
//! server sends them, kept as written so the IMAP layer prints them exactly.

use serde::{Deserialize, Serialize};

use crate::address::{Address, parse_address_list};
use crate::header::Headers;

/// The envelope of a message (or of a message/rfc822 part).
///
/// Strings are the raw header values unfolded (CR and LF removed) and trimmed; RFC 2047
/// encoded words are left for the client to decode, as IMAP intends. An absent header is
/// `None` (NIL); an address header that is absent or has no address is empty (NIL). When
/// Sender or Reply-To is absent or empty it is the From list, as RFC 9051 requires. When a
/// header appears more than once, the first is used.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(
        rename = "f",
        default,
        deserialize_with = "crate::stored::exact_vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub from: Vec<Address>,
    #[serde(
        rename = "se",
        default,
        deserialize_with = "crate::stored::exact_vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub sender: Vec<Address>,
    #[serde(
        rename = "rt",
        default,
        deserialize_with = "crate::stored::exact_vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub reply_to: Vec<Address>,
    #[serde(
        rename = "t",
        default,
        deserialize_with = "crate::stored::exact_vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub to: Vec<Address>,
    #[serde(
        rename = "c",
        default,
        deserialize_with = "crate::stored::exact_vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub cc: Vec<Address>,
    #[serde(
        rename = "b",
        default,
        deserialize_with = "crate::stored::exact_vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub bcc: Vec<Address>,
    #[serde(rename = "ir", default, skip_serializing_if = "Option::is_none")]
    pub in_reply_to: Option<String>,
    #[serde(rename = "id", default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}

impl Envelope {
    pub(crate) fn from_headers(h: &Headers<'_>) -> Envelope {
        let list = |name: &str| {
            h.first(name)
                .map(|f| parse_address_list(f.value))
                .unwrap_or_default()
        };
        let from = list("from");
        let mut sender = list("sender");
        if sender.is_empty() {
            sender = from.clone();
        }
        let mut reply_to = list("reply-to");
        if reply_to.is_empty() {
            reply_to = from.clone();
        }
        Envelope {
            date: h.text("date"),
            subject: h.text("subject"),
            from,
            sender,
            reply_to,
            to: list("to"),
            cc: list("cc"),
            bcc: list("bcc"),
            in_reply_to: h.text("in-reply-to"),
            message_id: h.text("message-id"),
        }
    }

    /// The envelope of a raw message (its header only is read).
    pub fn parse(raw: &[u8]) -> Envelope {
        let len = crate::header::header_len(raw);
        Envelope::from_headers(&Headers::parse(&raw[..len]))
    }

    /// The IMAP ENVELOPE s-expression, e.g. `("date" "subject" (("name" NIL "box" "host")) ...)`.
    pub fn to_imap(&self) -> String {
        let mut out = String::new();
        crate::imap::write_envelope(&mut out, self);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_missing_headers() {
        let env = Envelope::parse(b"From: a@b.test\r\nSender:\r\n\r\nbody");
        assert_eq!(env.sender, env.from);
        assert_eq!(env.reply_to, env.from);
        assert_eq!(env.subject, None);
        assert_eq!(env.date, None);
        assert!(env.to.is_empty());
        assert_eq!(
            env.to_imap(),
            "(NIL NIL ((NIL NIL \"a\" \"b.test\")) ((NIL NIL \"a\" \"b.test\")) \
             ((NIL NIL \"a\" \"b.test\")) NIL NIL NIL NIL NIL)"
        );
        let empty = Envelope::parse(b"");
        assert_eq!(empty.to_imap(), "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
    }

    #[test]
    fn first_of_repeated_and_raw_encoded_words() {
        let env = Envelope::parse(
            b"Subject: =?ISO-8859-1?Q?Caf=E9?=\n\tfolded\nSubject: second\nIn-Reply-To: <x@y>\nMessage-ID:\n <id@host>\n\n",
        );
        assert_eq!(
            env.subject.as_deref(),
            Some("=?ISO-8859-1?Q?Caf=E9?=\tfolded")
        );
        assert_eq!(env.in_reply_to.as_deref(), Some("<x@y>"));
        assert_eq!(env.message_id.as_deref(), Some("<id@host>"));
    }

    #[test]
    fn eight_bit_headers_are_literals() {
        let env = Envelope::parse("Subject: Grüße\r\nFrom: Jürgen <j@x.test>\r\n\r\n".as_bytes());
        let imap = env.to_imap();
        assert!(
            imap.starts_with("(NIL {7}\r\nGrüße (({7}\r\nJürgen NIL \"j\" \"x.test\"))"),
            "{imap}"
        );
        // Bytes that are not UTF-8 are replaced, as is NUL.
        let env = Envelope::parse(b"Subject: caf\xe9\x00\r\n\r\n");
        assert_eq!(env.subject.as_deref(), Some("caf\u{FFFD}\u{FFFD}"));
    }

    /// RFC 9051 §7.5.2's FETCH example (and RFC 3501 §6.4.5's), with the header it describes.
    /// The RFC prints a space between the two addresses of the Cc list; the grammar
    /// (`"(" 1*address ")"`) has none, and neither does this.
    #[test]
    fn rfc_example() {
        let raw = b"Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\n\
From: Terry Gray <gray@cac.washington.edu>\r\n\
Subject: IMAP4rev2 WG mtg summary and minutes\r\n\
To: imap@cac.washington.edu\r\n\
cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>\r\n\
Message-Id: <B27397-0100000@cac.washington.edu>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\nbody\r\n";
        let env = Envelope::parse(raw);
        assert_eq!(
            env.to_imap(),
            concat!(
                r#"("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev2 WG mtg summary and minutes" "#,
                r#"(("Terry Gray" NIL "gray" "cac.washington.edu")) "#,
                r#"(("Terry Gray" NIL "gray" "cac.washington.edu")) "#,
                r#"(("Terry Gray" NIL "gray" "cac.washington.edu")) "#,
                r#"((NIL NIL "imap" "cac.washington.edu")) "#,
                r#"((NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) "#,
                r#"NIL NIL "<B27397-0100000@cac.washington.edu>")"#
            )
        );
    }
}
