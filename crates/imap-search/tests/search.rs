//! SEARCH keys (RFC 9051 §6.4.4 and extensions), one test per kind of key.

mod common;

use common::{DAY, FEB_1_2024, Msg};
use mailfleet_imap_proto::{Date, EntryType, SearchKey as K, SeqNum, SequenceSet};
use mailfleet_imap_search::{SearchContext, matches, needs_header, needs_text};

fn ctx() -> SearchContext<'static> {
    SearchContext {
        max_seq: 5,
        max_uid: 50,
        saved: None,
        now: FEB_1_2024 + DAY,
    }
}

fn hit(key: &K, m: &Msg) -> bool {
    matches(key, &m.view(), &ctx())
}

fn date(year: u16, month: u8, day: u8) -> Date {
    Date { year, month, day }
}

fn set(ranges: &[(SeqNum, SeqNum)]) -> SequenceSet {
    SequenceSet::Ranges(ranges.to_vec())
}

fn s(v: &str) -> Vec<u8> {
    v.as_bytes().to_vec()
}

const PLAIN: &str = "Date: Tue, 1 Jul 2003 23:30:00 -0700\r\n\
From: =?ISO-8859-1?Q?J=FCrgen?= Smith <jurgen@example.test>\r\n\
To: Team: \"Ann Lee\" <ann@x.test>, bob@y.test;\r\n\
Cc: Carol <carol@z.test>\r\n\
Bcc: secret@hidden.test\r\n\
Subject: Re: =?UTF-8?B?R3LDvMOfZQ==?= from the lake\r\n\
Message-ID: <m1@example.test>\r\n\
References: <r0@example.test> <r1@example.test>\r\n\
X-Mailer: Fancy\r\n  Mailer 2\r\n\
X-Empty:\r\n\
\r\n\
Hello world, this is the body.\r\n";

#[test]
fn flag_keys() {
    let m = Msg::new(1, PLAIN).flags(&["\\seen", "\\FLAGGED", "$Forwarded", "Junk"]);
    assert!(hit(&K::Seen, &m));
    assert!(!hit(&K::Unseen, &m));
    assert!(hit(&K::Flagged, &m));
    assert!(!hit(&K::Unflagged, &m));
    assert!(!hit(&K::Answered, &m));
    assert!(hit(&K::Unanswered, &m));
    assert!(!hit(&K::Deleted, &m));
    assert!(hit(&K::Undeleted, &m));
    assert!(!hit(&K::Draft, &m));
    assert!(hit(&K::Undraft, &m));
    assert!(hit(&K::Keyword("$forwarded".into()), &m));
    assert!(hit(&K::Keyword("JUNK".into()), &m));
    assert!(!hit(&K::Keyword("NonJunk".into()), &m));
    assert!(hit(&K::Unkeyword("NonJunk".into()), &m));
    assert!(!hit(&K::Unkeyword("junk".into()), &m));
    let d = Msg::new(1, PLAIN).flags(&["\\Answered", "\\Deleted", "\\Draft"]);
    assert!(hit(&K::Answered, &d) && hit(&K::Deleted, &d) && hit(&K::Draft, &d));
}

#[test]
fn recent_new_old() {
    let mut m = Msg::new(1, PLAIN);
    m.recent = true;
    assert!(hit(&K::Recent, &m));
    assert!(hit(&K::New, &m), "recent and unseen");
    assert!(!hit(&K::Old, &m));
    let mut seen = Msg::new(1, PLAIN).flags(&["\\Seen"]);
    seen.recent = true;
    assert!(!hit(&K::New, &seen));
    let old = Msg::new(1, PLAIN);
    assert!(!hit(&K::Recent, &old) && !hit(&K::New, &old) && hit(&K::Old, &old));
}

#[test]
fn size_keys() {
    let m = Msg::new(1, "Subject: x\r\n\r\n12345");
    let size = m.raw.len() as u64;
    assert!(hit(&K::Larger(size - 1), &m));
    assert!(!hit(&K::Larger(size), &m));
    assert!(hit(&K::Smaller(size + 1), &m));
    assert!(!hit(&K::Smaller(size), &m));
    assert!(!hit(&K::Larger(u64::MAX), &m));
}

#[test]
fn internal_and_save_dates() {
    // 2024-02-01 23:59:59 UTC.
    let m = Msg::new(1, PLAIN).date(FEB_1_2024 + DAY - 1);
    for (on, before, since) in [
        (
            K::On(date(2024, 2, 1)),
            K::Before(date(2024, 2, 1)),
            K::Since(date(2024, 2, 1)),
        ),
        (
            K::SavedOn(date(2024, 2, 1)),
            K::SavedBefore(date(2024, 2, 1)),
            K::SavedSince(date(2024, 2, 1)),
        ),
    ] {
        assert!(hit(&on, &m));
        assert!(!hit(&before, &m));
        assert!(hit(&since, &m));
    }
    assert!(hit(&K::Before(date(2024, 2, 2)), &m));
    assert!(!hit(&K::Since(date(2024, 2, 2)), &m));
    assert!(hit(&K::Since(date(2024, 1, 31)), &m));
    assert!(!hit(&K::On(date(2024, 1, 31)), &m));
    assert!(hit(&K::SaveDateSupported, &m));
    // Before the epoch.
    let old = Msg::new(1, PLAIN).date(-1);
    assert!(hit(&K::On(date(1969, 12, 31)), &old));
}

#[test]
fn sent_dates_use_the_header_day_as_written() {
    // 23:30 -0700 on 1 Jul is 2 Jul in UTC: the header's own day counts.
    let m = Msg::new(1, PLAIN);
    assert!(hit(&K::SentOn(date(2003, 7, 1)), &m));
    assert!(!hit(&K::SentOn(date(2003, 7, 2)), &m));
    assert!(hit(&K::SentBefore(date(2003, 7, 2)), &m));
    assert!(!hit(&K::SentBefore(date(2003, 7, 1)), &m));
    assert!(hit(&K::SentSince(date(2003, 7, 1)), &m));
    assert!(!hit(&K::SentSince(date(2003, 7, 2)), &m));
    // No (or no parsable) Date header: the internal date.
    for raw in ["Subject: x\r\n\r\nbody", "Date: someday\r\n\r\nbody"] {
        let m = Msg::new(1, raw);
        assert!(hit(&K::SentOn(date(2024, 2, 1)), &m), "{raw}");
        assert!(!hit(&K::SentBefore(date(2024, 2, 1)), &m));
    }
}

#[test]
fn older_and_younger() {
    // ctx().now is a day after 2024-02-01 00:00; the message is 12 h old.
    let m = Msg::new(1, PLAIN);
    let half = (DAY / 2) as u32;
    assert!(hit(&K::Older(half - 1), &m));
    assert!(!hit(&K::Older(half), &m));
    assert!(hit(&K::Younger(half), &m));
    assert!(!hit(&K::Younger(half - 1), &m));
    // A message from the future is young.
    let future = Msg::new(1, PLAIN).date(FEB_1_2024 + 10 * DAY);
    assert!(hit(&K::Younger(0), &future) && !hit(&K::Older(0), &future));
}

#[test]
fn sequence_sets_uid_sets_and_saved() {
    let m = Msg::new(5, PLAIN); // UID 50
    use SeqNum::{Star, Value};
    assert!(hit(&K::SequenceSet(set(&[(Value(5), Value(5))])), &m));
    assert!(
        hit(&K::SequenceSet(set(&[(Star, Star)])), &m),
        "* is max_seq"
    );
    assert!(hit(&K::SequenceSet(set(&[(Value(7), Value(3))])), &m));
    assert!(!hit(&K::SequenceSet(set(&[(Value(1), Value(4))])), &m));
    assert!(hit(&K::Uid(set(&[(Value(50), Value(50))])), &m));
    assert!(hit(&K::Uid(set(&[(Value(40), Star)])), &m), "* is max_uid");
    assert!(!hit(&K::Uid(set(&[(Star, Star)])), &Msg::new(4, PLAIN)));
    assert!(
        !hit(&K::Uid(set(&[(Value(5), Value(5))])), &m),
        "not the seq"
    );
    // `$`: the saved UIDs, for both sequence and UID sets.
    assert!(
        !hit(&K::SequenceSet(SequenceSet::Saved), &m),
        "nothing saved"
    );
    let saved = [10, 50, 70];
    let c = SearchContext {
        saved: Some(&saved),
        ..ctx()
    };
    assert!(matches(&K::SequenceSet(SequenceSet::Saved), &m.view(), &c));
    assert!(matches(&K::Uid(SequenceSet::Saved), &m.view(), &c));
    assert!(!matches(
        &K::Uid(SequenceSet::Saved),
        &Msg::new(3, PLAIN).view(),
        &c
    ));
    // An empty mailbox's `*`.
    let empty = SearchContext::default();
    assert!(!matches(
        &K::SequenceSet(set(&[(Star, Star)])),
        &m.view(),
        &empty
    ));
}

#[test]
fn modseq_and_object_ids() {
    let mut m = Msg::new(1, PLAIN);
    m.modseq = 620;
    let key = |mod_seq| K::ModSeq {
        entry: None,
        mod_seq,
    };
    assert!(hit(&key(620), &m));
    assert!(hit(&key(1), &m));
    assert!(!hit(&key(621), &m));
    let with_entry = K::ModSeq {
        entry: Some(("/flags/\\seen".into(), EntryType::All)),
        mod_seq: 600,
    };
    assert!(hit(&with_entry, &m), "the entry is ignored");
    assert!(!hit(&K::EmailId("M1".into()), &m));
    assert!(!hit(&K::ThreadId("T1".into()), &m));
}

#[test]
fn address_keys() {
    for view_raw in [true, false] {
        let m = Msg::new(1, PLAIN);
        let v = if view_raw { m.view() } else { m.view_meta() };
        let h = |k: &K| matches(k, &v, &ctx());
        assert!(h(&K::From(s("jurgen@EXAMPLE"))));
        assert!(h(&K::From(s("jürgen smith"))), "decoded display name");
        assert!(h(&K::From(s("JÜRGEN"))), "Unicode case folding");
        assert!(
            h(&K::From(s("smith <jurgen@"))),
            "name and address together"
        );
        assert!(!h(&K::From(s("ann"))));
        assert!(h(&K::To(s("ann lee"))));
        assert!(h(&K::To(s("BOB@y.test"))), "group members");
        assert!(h(&K::To(s("team"))), "group name");
        assert!(h(&K::To(s("team: ann lee <ann@"))), "group rendered");
        assert!(h(&K::Cc(s("carol <carol@z"))));
        assert!(!h(&K::Cc(s("ann"))));
        assert!(h(&K::Bcc(s("SECRET@"))));
        assert!(!h(&K::Bcc(s("carol"))));
        assert!(h(&K::From(s(""))), "empty string: has the field");
    }
    // As written, when the raw header is given.
    let m = Msg::new(1, PLAIN);
    assert!(hit(&K::From(s("=?ISO-8859-1?Q?J=FCrgen?=")), &m));
    assert!(hit(&K::To(s("Team: \"Ann")), &m));
    let none = Msg::new(1, "Subject: x\r\n\r\n");
    assert!(!hit(&K::From(s("")), &none));
    assert!(!hit(&K::Cc(s("a")), &none));
}

#[test]
fn subject_key() {
    let m = Msg::new(1, PLAIN);
    assert!(hit(&K::Subject(s("grüße FROM")), &m), "decoded");
    assert!(hit(&K::Subject(s("re: ")), &m));
    assert!(hit(&K::Subject(s("")), &m));
    assert!(!hit(&K::Subject(s("sea")), &m));
    assert!(!hit(&K::Subject(s("")), &Msg::new(1, "From: a@b\r\n\r\n")));
}

#[test]
fn header_key() {
    let m = Msg::new(1, PLAIN);
    let hdr = |f: &str, v: &str| K::Header(f.into(), s(v));
    assert!(hit(&hdr("x-mailer", "fancy  mailer"), &m), "unfolded");
    assert!(hit(&hdr("X-MAILER", ""), &m));
    assert!(hit(&hdr("x-empty", ""), &m), "an empty field is there");
    assert!(!hit(&hdr("x-empty", "a"), &m));
    assert!(!hit(&hdr("x-missing", ""), &m));
    assert!(hit(&hdr("subject", "Grüße"), &m), "decoded");
    assert!(hit(&hdr("subject", "=?utf-8?b?"), &m), "as written");
    assert!(hit(&hdr("message-id", "<M1@"), &m));
    // Without the raw header: fields the metadata has still answer, others match nothing.
    let meta = |k: &K| matches(k, &m.view_meta(), &ctx());
    assert!(meta(&hdr("Subject", "lake")));
    assert!(meta(&hdr("date", "-0700")));
    assert!(meta(&hdr("references", "<r0@example.test> <r1")));
    assert!(meta(&hdr("message-id", "m1@")));
    assert!(meta(&hdr("cc", "")));
    assert!(meta(&hdr("from", "jürgen")));
    assert!(!meta(&hdr("in-reply-to", "")));
    assert!(!meta(&hdr("x-mailer", "")));
    // needs_header: only for fields the metadata does not answer.
    assert!(!needs_header(&hdr("Subject", "x")));
    assert!(!needs_header(&hdr("REFERENCES", "x")));
    assert!(needs_header(&hdr("X-Mailer", "x")));
    assert!(
        needs_header(&hdr("sender", "x")),
        "the envelope's Sender defaults to From"
    );
    assert!(needs_header(&K::Not(Box::new(K::Or(
        Box::new(K::All),
        Box::new(K::And(vec![K::Seen, hdr("list-id", "")]))
    )))));
    assert!(!needs_header(&K::Text(s("x"))));
}

const MULTIPART: &str = "From: a@b.test\r\n\
Subject: parts\r\n\
Content-Type: multipart/mixed; boundary=XX\r\n\
\r\n\
--XX\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
U2Now7ZuZSBHcsO8w59lIGF1cyBCZXJsaW4=\r\n\
--XX\r\n\
Content-Type: text/html; charset=iso-8859-1\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
<p>Caf=E9 cr=E8me, soft=\r\n\
break</p>\r\n\
--XX\r\n\
Content-Type: text/plain; charset=iso-8859-1\r\n\
\r\n\
Na\u{ef}ve 8-bit\r\n\
--XX--\r\n";

#[test]
fn body_and_text_keys() {
    let m = Msg::new(1, PLAIN);
    assert!(hit(&K::Body(s("THE BODY")), &m));
    assert!(
        !hit(&K::Body(s("X-Mailer")), &m),
        "BODY is after the header"
    );
    assert!(
        hit(&K::Text(s("x-mailer: fancy")), &m),
        "TEXT has the header"
    );
    assert!(hit(&K::Text(s("the body")), &m));
    assert!(hit(&K::Text(s("grüße")), &m), "decoded subject");
    assert!(!hit(&K::Text(s("nowhere")), &m));
    assert!(hit(&K::Body(s("")), &m));
    // Without the text, nothing matches.
    assert!(!matches(&K::Body(s("body")), &m.view_meta(), &ctx()));
    assert!(!matches(&K::Text(s("")), &m.view_meta(), &ctx()));

    let raw: Vec<u8> = MULTIPART
        .chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
        .collect();
    let mp = Msg::new(1, raw);
    assert!(hit(&K::Body(s("grüße aus")), &mp), "base64 UTF-8 part");
    assert!(
        hit(&K::Body(s("CAFÉ CRÈME")), &mp),
        "quoted-printable Latin-1 part"
    );
    assert!(hit(&K::Body(s("softbreak")), &mp), "soft line break");
    assert!(hit(&K::Body(s("naïve")), &mp), "8-bit Latin-1 part");
    assert!(hit(&K::Body(s("u2Now7Zu")), &mp), "raw bytes too");
    assert!(hit(&K::Text(s("schöne")), &mp));
    assert!(!hit(&K::Body(s("Subject: parts")), &mp));
}

#[test]
fn needs_text_anywhere() {
    assert!(needs_text(&K::Body(s("x"))));
    assert!(needs_text(&K::Or(
        Box::new(K::Seen),
        Box::new(K::Not(Box::new(K::Text(s("x")))))
    )));
    assert!(!needs_text(&K::And(vec![
        K::Subject(s("x")),
        K::Header("x".into(), s(""))
    ])));
}

#[test]
fn and_or_not() {
    let m = Msg::new(1, PLAIN).flags(&["\\Seen"]);
    assert!(hit(&K::All, &m));
    assert!(hit(&K::And(vec![]), &m));
    assert!(hit(&K::And(vec![K::Seen, K::Subject(s("lake"))]), &m));
    assert!(!hit(&K::And(vec![K::Seen, K::Flagged]), &m));
    assert!(hit(&K::Or(Box::new(K::Flagged), Box::new(K::Seen)), &m));
    assert!(!hit(&K::Or(Box::new(K::Flagged), Box::new(K::Draft)), &m));
    assert!(hit(&K::Not(Box::new(K::Flagged)), &m));
    assert!(!hit(&K::Not(Box::new(K::All)), &m));
}

/// imaptest `search-addresses` (its mbox's messages 6 and 7): a group's name is part of the
/// To field, with or without members.
#[test]
fn imaptest_search_addresses_groups() {
    let msgs = [
        Msg::new(
            6,
            "From: RealFrom <user-from@domain.org>\r\n\
To: groupname: groupuser1@domain.org, groupuser2@domain.org;,\r\n\x20 groupname2: groupuser3@domain.org;\r\n\r\nbody6\r\n",
        ),
        Msg::new(
            7,
            "From: RealFrom <user-from@domain.org>\r\n\
To: groupname:;\r\n\r\nbody7\r\n",
        ),
    ];
    for view_raw in [true, false] {
        let found = |k: K| -> Vec<u32> {
            msgs.iter()
                .filter(|m| {
                    let v = if view_raw { m.view() } else { m.view_meta() };
                    matches(&k, &v, &ctx())
                })
                .map(|m| m.seq)
                .collect()
        };
        assert_eq!(found(K::To(s("groupname"))), [6, 7], "raw {view_raw}");
        assert_eq!(found(K::To(s("groupname2"))), [6], "raw {view_raw}");
        for u in ["groupuser1", "groupuser2", "groupuser3"] {
            assert_eq!(found(K::To(s(u))), [6], "{u} raw {view_raw}");
        }
        assert_eq!(found(K::To(s("groupuser4"))), [0u32; 0]);
        assert_eq!(found(K::Header("to".into(), s(""))), [6, 7]);
        assert_eq!(found(K::From(s("ealfro"))), [6, 7]);
    }
}
