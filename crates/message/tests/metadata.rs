//! Whole messages through `Metadata::parse`: what IMAP would print, what range reads would
//! return, and the stored form.

use mailfleet_message::{Metadata, PartKind, STORED_VERSION, StoredError};

fn slice(raw: &[u8], r: std::ops::Range<usize>) -> &str {
    std::str::from_utf8(&raw[r]).unwrap()
}

/// RFC 9051 §7.5.2 (and RFC 3501 §6.4.5): `FETCH 12 (ENVELOPE BODY)` of a message written to
/// match it: 92 lines, 3028 octets of US-ASCII text.
#[test]
fn rfc_fetch_example() {
    let body = "x".repeat(30).to_string() + "\r\n";
    let mut text = body.repeat(91);
    text.push_str(&"z".repeat(3028 - text.len() - 2));
    text.push_str("\r\n");
    assert_eq!(text.len(), 3028);
    let raw = format!(
        "Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\n\
From: Terry Gray <gray@cac.washington.edu>\r\n\
Subject: IMAP4rev2 WG mtg summary and minutes\r\n\
To: imap@cac.washington.edu\r\n\
cc: minutes@CNRI.Reston.VA.US,\r\n  John Klensin <KLENSIN@MIT.EDU>\r\n\
Message-Id: <B27397-0100000@cac.washington.edu>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\
\r\n{text}"
    );
    let m = Metadata::parse(raw.as_bytes());
    let fetch = format!(
        "ENVELOPE {} BODY {}",
        m.envelope.to_imap(),
        m.body.to_imap_body()
    );
    assert_eq!(
        fetch,
        concat!(
            r#"ENVELOPE ("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev2 WG mtg summary and minutes" "#,
            r#"(("Terry Gray" NIL "gray" "cac.washington.edu")) "#,
            r#"(("Terry Gray" NIL "gray" "cac.washington.edu")) "#,
            r#"(("Terry Gray" NIL "gray" "cac.washington.edu")) "#,
            r#"((NIL NIL "imap" "cac.washington.edu")) "#,
            r#"((NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) "#,
            r#"NIL NIL "<B27397-0100000@cac.washington.edu>") "#,
            r#"BODY ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92)"#
        )
    );
    assert_eq!(m.search.date, Some(837_595_405));
    assert_eq!(m.search.display_from().as_deref(), Some("Terry Gray"));
    assert_eq!(m.search.cc[1].display(), "John Klensin");
}

const MIXED: &str = "From: =?UTF-8?Q?Zo=C3=AB?= <zoe@example.test>\r\n\
To: friends: ann@example.test, \"Bob B.\" <bob@example.test>;, carl@example.test\r\n\
Subject: Fwd: [team] =?UTF-8?B?UmU6IHBsYW4=?=\r\n\
Date: Sat, 5 Dec 2026 10:00:00 +0000\r\n\
Message-ID: <root@example.test>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"==mix==\"\r\n\
\r\n\
This is a multi-part message in MIME format.\r\n\
--==mix==\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
See the plan attached.\r\n\
Zoë\r\n\
--==mix==\r\n\
Content-Type: application/pdf; name=\"plan.pdf\"\r\n\
Content-Disposition: attachment; filename=\"plan.pdf\"; size=6\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
JVBERi0=\r\n\
--==mix==--\r\n";

#[test]
fn multipart_mixed_with_attachment() {
    let raw = MIXED.as_bytes();
    let m = Metadata::parse(raw);

    // ENVELOPE keeps encoded words and prints the group.
    let env = m.envelope.to_imap();
    assert!(
        env.contains(r#" "Fwd: [team] =?UTF-8?B?UmU6IHBsYW4=?=" "#),
        "{env}"
    );
    assert!(
        env.contains(r#"(("=?UTF-8?Q?Zo=C3=AB?=" NIL "zoe" "example.test"))"#),
        "{env}"
    );
    assert!(
        env.contains(concat!(
            r#"((NIL NIL "friends" NIL)(NIL NIL "ann" "example.test")"#,
            r#"("Bob B." NIL "bob" "example.test")(NIL NIL NIL NIL)"#,
            r#"(NIL NIL "carl" "example.test"))"#
        )),
        "{env}"
    );

    // Search fields are decoded.
    assert_eq!(m.search.from[0].name.as_deref(), Some("Zoë"));
    assert_eq!(m.search.subject.as_deref(), Some("Fwd: [team] Re: plan"));
    assert_eq!(m.search.base_subject, "plan");
    assert!(m.search.is_reply_or_forward);
    assert_eq!(m.search.to.len(), 3);
    assert_eq!(m.search.message_id.as_deref(), Some("root@example.test"));

    assert_eq!(m.preview, "See the plan attached. Zoë");
    assert!(m.has_attachment);

    // BODYSTRUCTURE, with the 8-bit text part's size in octets.
    assert_eq!(
        m.body.to_imap_bodystructure(),
        concat!(
            r#"(("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "8BIT" 28 2 NIL NIL NIL NIL)"#,
            r#"("APPLICATION" "PDF" ("NAME" "plan.pdf") NIL NIL "BASE64" 8 NIL "#,
            r#"("ATTACHMENT" ("FILENAME" "plan.pdf" "SIZE" "6")) NIL NIL)"#,
            r#" "MIXED" ("BOUNDARY" "==mix==") NIL NIL NIL)"#
        )
    );

    // Range reads: BODY[HEADER], BODY[TEXT], BODY[1], BODY[2.MIME], BODY[2].
    assert!(slice(raw, m.body.offsets.header()).ends_with("boundary=\"==mix==\"\r\n\r\n"));
    assert!(slice(raw, m.body.offsets.body()).starts_with("This is a multi-part"));
    let one = m.section(&[1]).unwrap();
    assert_eq!(
        slice(raw, one.offsets.body()),
        "See the plan attached.\r\nZoë"
    );
    let two = m.section(&[2]).unwrap();
    assert_eq!(
        slice(raw, two.offsets.header()),
        "Content-Type: application/pdf; name=\"plan.pdf\"\r\n\
Content-Disposition: attachment; filename=\"plan.pdf\"; size=6\r\n\
Content-Transfer-Encoding: base64\r\n\r\n"
    );
    assert_eq!(slice(raw, two.offsets.body()), "JVBERi0=");
    assert!(m.section(&[3]).is_none());
    assert!(m.section(&[0]).is_none());
}

#[test]
fn bare_lf_is_read_like_crlf() {
    let crlf = Metadata::parse(MIXED.as_bytes());
    let lf_text = MIXED.replace("\r\n", "\n");
    let lf = Metadata::parse(lf_text.as_bytes());
    assert_eq!(lf.envelope, crlf.envelope);
    assert_eq!(lf.search, crlf.search);
    assert_eq!(lf.preview, crlf.preview);
    let (a, b) = (crlf.body.walk(), lf.body.walk());
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.media, y.media);
        assert_eq!(x.fields, y.fields);
    }
    // Offsets count the bytes as they are.
    let one = lf.section(&[1]).unwrap();
    assert_eq!(
        slice(lf_text.as_bytes(), one.offsets.body()),
        "See the plan attached.\nZoë"
    );
    assert_eq!(one.lines(), Some(2));
}

#[test]
fn nested_message_sections() {
    let raw = "Subject: outer\r\n\
Content-Type: multipart/mixed; boundary=o\r\n\
\r\n\
--o\r\n\
Content-Type: text/plain\r\n\
\r\n\
see below\r\n\
--o\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
From: Inner Sender <in@example.test>\r\n\
Subject: inner\r\n\
\r\n\
inner body\r\n\
--o--\r\n";
    let m = Metadata::parse(raw.as_bytes());
    let msg = m.section(&[2]).unwrap();
    let PartKind::Message {
        envelope,
        body,
        lines,
    } = &msg.kind
    else {
        panic!("{msg:?}");
    };
    assert_eq!(*lines, 4);
    assert_eq!(envelope.subject.as_deref(), Some("inner"));
    // BODY[2.HEADER], BODY[2.TEXT], BODY[2.1] (the nested message is single-part).
    assert_eq!(
        slice(raw.as_bytes(), body.offsets.header()),
        "From: Inner Sender <in@example.test>\r\nSubject: inner\r\n\r\n"
    );
    assert_eq!(slice(raw.as_bytes(), body.offsets.body()), "inner body");
    assert_eq!(m.section(&[2, 1]), Some(&**body));
    assert_eq!(
        msg.to_imap_body(),
        concat!(
            r#"("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 66 "#,
            r#"(NIL "inner" (("Inner Sender" NIL "in" "example.test")) "#,
            r#"(("Inner Sender" NIL "in" "example.test")) (("Inner Sender" NIL "in" "example.test")) "#,
            r#"NIL NIL NIL NIL NIL) "#,
            r#"("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 10 1) 4)"#
        )
    );
    assert_eq!(m.preview, "see below");
    assert!(m.has_attachment);
}

#[test]
fn missing_headers_and_empty_input() {
    let m = Metadata::parse(b"");
    assert_eq!(
        m.envelope.to_imap(),
        "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"
    );
    assert_eq!(
        m.body.to_imap_bodystructure(),
        r#"("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0 NIL NIL NIL NIL)"#
    );
    assert_eq!(m.preview, "");
    assert!(!m.has_attachment);
    // Only a body (no header at all).
    let m = Metadata::parse(b"\r\njust text\r\n");
    assert_eq!(m.body.offsets.body_start, 2);
    assert_eq!(m.preview, "just text");
}

#[test]
fn stored_form_round_trips_and_is_versioned() {
    let m = Metadata::parse(MIXED.as_bytes());
    let stored = m.to_stored();
    assert!(
        stored.starts_with(&format!("{{\"v\":{STORED_VERSION},")),
        "{stored}"
    );
    assert_eq!(Metadata::from_stored(&stored).unwrap(), m);
    // Light: all but the MIME tree (an empty message's) and the preview.
    let light = Metadata::from_stored_light(&stored).unwrap();
    assert_eq!(light.envelope, m.envelope);
    assert_eq!(light.search, m.search);
    assert_eq!(
        (light.size, light.has_attachment),
        (m.size, m.has_attachment)
    );
    assert_eq!(light.body, Metadata::parse(b"").body);
    assert!(light.preview.is_empty() && !m.preview.is_empty());
    assert!(matches!(
        Metadata::from_stored_light(&stored.replacen(
            &format!("\"v\":{STORED_VERSION}"),
            "\"v\":999",
            1
        )),
        Err(StoredError::Version { found: 999, .. })
    ));
    // Compact: well under the message's own size for a message this small.
    assert!(stored.len() < 2 * MIXED.len(), "{} bytes", stored.len());

    let other = stored.replacen(&format!("\"v\":{STORED_VERSION}"), "\"v\":999", 1);
    assert!(matches!(
        Metadata::from_stored(&other),
        Err(StoredError::Version { found: 999, .. })
    ));
    let future = r#"{"v":2,"something":"else"}"#;
    assert!(matches!(
        Metadata::from_stored(future),
        Err(StoredError::Version { found: 2, .. })
    ));
    assert!(matches!(
        Metadata::from_stored("nonsense"),
        Err(StoredError::Json(_))
    ));
    // A part list that does not add up.
    let broken = stored.replacen("\"n\":2", "\"n\":3", 1);
    assert!(matches!(
        Metadata::from_stored(&broken),
        Err(StoredError::Parts(_))
    ));
}

#[test]
fn header_fields_past_the_cap_are_ignored_but_offsets_stay_exact() {
    let filler = format!(
        "X-Filler: {}\r\n",
        "f".repeat(mailfleet_message::limits::MAX_HEADER_BYTES)
    );
    let raw = format!("Subject: early\r\n{filler}From: late@example.test\r\n\r\nthe body");
    let m = Metadata::parse(raw.as_bytes());
    assert_eq!(m.envelope.subject.as_deref(), Some("early"));
    assert!(m.envelope.from.is_empty());
    assert_eq!(slice(raw.as_bytes(), m.body.offsets.body()), "the body");
    assert_eq!(m.preview, "the body");
}
