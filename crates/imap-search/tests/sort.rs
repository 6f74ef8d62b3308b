//! SORT (RFC 5256 §3, RFC 5957): every key, with and without REVERSE, and ties.

mod common;

use common::{FEB_1_2024, Msg};
use mailfleet_imap_proto::{SortCriterion, SortKey};
use mailfleet_imap_search::{MessageView, sort};

fn c(key: SortKey) -> SortCriterion {
    SortCriterion {
        reverse: false,
        key,
    }
}

fn r(key: SortKey) -> SortCriterion {
    SortCriterion { reverse: true, key }
}

/// The sequence numbers in the order the criteria give.
fn seqs(criteria: &[SortCriterion], msgs: &[Msg]) -> Vec<u32> {
    let views: Vec<MessageView<'_>> = msgs.iter().map(Msg::view_meta).collect();
    sort(criteria, &views)
        .into_iter()
        .map(|i| msgs[i].seq)
        .collect()
}

fn hdr(seq: u32, headers: &str) -> Msg {
    Msg::new(seq, format!("{headers}\r\n\r\nbody\r\n"))
}

#[test]
fn arrival() {
    let msgs = vec![
        hdr(1, "Subject: a").date(300),
        hdr(2, "Subject: b").date(100),
        hdr(3, "Subject: c").date(200),
        hdr(4, "Subject: d").date(100),
    ];
    assert_eq!(seqs(&[c(SortKey::Arrival)], &msgs), [2, 4, 3, 1]);
    // Ties stay in sequence order under REVERSE.
    assert_eq!(seqs(&[r(SortKey::Arrival)], &msgs), [1, 3, 2, 4]);
}

#[test]
fn date_falls_back_to_internal_date() {
    let msgs = vec![
        hdr(1, "Date: Wed, 1 Feb 2024 10:00:00 +0000").date(0),
        // 09:00 UTC, written as 10:00 +0100.
        hdr(2, "Date: Wed, 1 Feb 2024 10:00:00 +0100").date(0),
        // No Date header: internal date 2024-02-01 09:30 UTC.
        hdr(3, "Subject: none").date(FEB_1_2024 + 9 * 3600 + 1800),
        hdr(4, "Date: garbage").date(FEB_1_2024 + 11 * 3600),
        hdr(5, "Date: Wed, 1 Feb 2024 10:00:00 +0000").date(0),
    ];
    assert_eq!(seqs(&[c(SortKey::Date)], &msgs), [2, 3, 1, 5, 4]);
    assert_eq!(seqs(&[r(SortKey::Date)], &msgs), [4, 1, 5, 3, 2]);
}

#[test]
fn size() {
    let msgs = vec![
        Msg::new(1, "a: bbbbbbb\r\n\r\n"),
        Msg::new(2, "a: b\r\n\r\n"),
        Msg::new(3, "a: bbbbbbb\r\n\r\n"),
        Msg::new(4, "a: bb\r\n\r\n"),
    ];
    assert_eq!(seqs(&[c(SortKey::Size)], &msgs), [2, 4, 1, 3]);
    assert_eq!(seqs(&[r(SortKey::Size)], &msgs), [1, 3, 4, 2]);
}

#[test]
fn subject_is_the_base_subject_casemapped() {
    let msgs = vec![
        hdr(1, "Subject: Re: beta"),
        hdr(2, "Subject: [list] Alpha"),
        hdr(3, "Subject: Fwd: BETA (fwd)"),
        hdr(4, "From: x@y"),
        hdr(5, "Subject: alpha"),
    ];
    // No subject is the empty string and sorts first.
    assert_eq!(seqs(&[c(SortKey::Subject)], &msgs), [4, 2, 5, 1, 3]);
    assert_eq!(seqs(&[r(SortKey::Subject)], &msgs), [1, 3, 2, 5, 4]);
}

#[test]
fn address_keys_use_the_first_mailbox() {
    let msgs = vec![
        hdr(
            1,
            "From: Zed <bob@a.test>\r\nTo: carl@x.test\r\nCc: Amy <Zoe@x.test>, amy@x.test",
        ),
        hdr(
            2,
            "From: \"Bob\" <ALICE@z.test>, zed@z.test\r\nTo: Xavier <Bert@x.test>\r\nCc: yan@x",
        ),
        hdr(3, "Subject: nobody"),
        hdr(
            4,
            "From: bob@b.test\r\nTo: \"alf\"@x.test\r\nCc: Zoe@q.test",
        ),
    ];
    assert_eq!(seqs(&[c(SortKey::From)], &msgs), [3, 2, 1, 4]);
    assert_eq!(seqs(&[r(SortKey::From)], &msgs), [1, 4, 2, 3]);
    assert_eq!(seqs(&[c(SortKey::To)], &msgs), [3, 4, 2, 1]);
    assert_eq!(seqs(&[r(SortKey::To)], &msgs), [1, 2, 4, 3]);
    assert_eq!(seqs(&[c(SortKey::Cc)], &msgs), [3, 2, 1, 4]);
    assert_eq!(seqs(&[r(SortKey::Cc)], &msgs), [1, 4, 2, 3]);
}

#[test]
fn display_keys_use_the_name_else_the_address() {
    let msgs = vec![
        hdr(1, "From: Zed <bob@a.test>\r\nTo: amy@x.test"),
        hdr(
            2,
            "From: =?UTF-8?Q?Bj=C3=B6rn?= <zz@z.test>\r\nTo: \"Carl\" <a@x.test>",
        ),
        hdr(3, "Subject: nobody"),
        hdr(4, "From: carol@b.test\r\nTo: (Bea) zz@x.test"),
        hdr(5, "From: ZED <other@a.test>"),
    ];
    assert_eq!(seqs(&[c(SortKey::DisplayFrom)], &msgs), [3, 2, 4, 1, 5]);
    assert_eq!(seqs(&[r(SortKey::DisplayFrom)], &msgs), [1, 5, 4, 2, 3]);
    assert_eq!(seqs(&[c(SortKey::DisplayTo)], &msgs), [3, 5, 1, 4, 2]);
    assert_eq!(seqs(&[r(SortKey::DisplayTo)], &msgs), [2, 4, 1, 3, 5]);
}

#[test]
fn several_criteria_and_ties() {
    let msgs = vec![
        hdr(1, "Subject: b").date(10),
        hdr(2, "Subject: a").date(20),
        hdr(3, "Subject: b").date(5),
        hdr(4, "Subject: a").date(20),
        hdr(5, "Subject: A").date(1),
    ];
    assert_eq!(
        seqs(&[c(SortKey::Subject), r(SortKey::Arrival)], &msgs),
        [2, 4, 5, 1, 3]
    );
    assert_eq!(
        seqs(&[r(SortKey::Subject), c(SortKey::Arrival)], &msgs),
        [3, 1, 5, 2, 4]
    );
    // No criteria: sequence order; messages given out of order are sorted by sequence number.
    let shuffled = vec![hdr(3, "a: b"), hdr(1, "a: b"), hdr(2, "a: b")];
    assert_eq!(seqs(&[], &shuffled), [1, 2, 3]);
    assert_eq!(seqs(&[r(SortKey::Size)], &shuffled), [1, 2, 3]);
    assert_eq!(seqs(&[c(SortKey::Subject)], &[]), Vec::<u32>::new());
}

/// imaptest `sort-addresses`: a Cc that starts with a group sorts by the group's name
/// (`user2`), not by its first member (`blah`). Arrival as in the mbox's From_ lines.
#[test]
fn imaptest_sort_addresses() {
    let msgs = vec![
        hdr(
            1,
            "From: user2@domain2.org\r\n\
To: foo bar <user2@domain2.org>\r\n\
Cc: user2@domain2.org (foo bar)",
        )
        .date(1_203_638_783),
        hdr(
            2,
            "From: user2@domain1.org\r\n\
To: user2@domain1.org\r\n\
Cc: user2: blah@domain1.org;",
        )
        .date(1_203_642_383),
        hdr(
            3,
            "From: user1@domain1.org\r\n\
To: user1@domain1.org\r\n\
Cc: user1@domain1.org",
        )
        .date(1_203_645_983),
    ];
    for key in [SortKey::From, SortKey::To, SortKey::Cc] {
        assert_eq!(seqs(&[c(key)], &msgs), [3, 1, 2], "{key:?}");
        assert_eq!(seqs(&[r(key)], &msgs), [1, 2, 3], "reverse {key:?}");
        assert_eq!(
            seqs(&[c(key), r(SortKey::Arrival)], &msgs),
            [3, 2, 1],
            "{key:?} reverse arrival"
        );
    }
}

/// imaptest `sort-display-to`: a To that starts with a group (even an empty one) sorts by the
/// group's name; encoded display names are decoded; `d` has no domain.
#[test]
fn imaptest_sort_display_to() {
    let msgs = vec![
        hdr(1, "To: foo bar <a@b.c>"),
        hdr(2, "To: b@c.d"),
        hdr(3, "To: d"),
        hdr(4, "To: =?iso-8859-1?q?foo_aar?= <e@f.g>"),
        hdr(5, "To: =?iso-8859-1?q?foo_car?= <f@g.h>"),
        hdr(6, "To: a: xx@xx.org, yy@yy.org;"),
        hdr(7, "To: z: aa@aa.org, bb@bb.org;"),
        hdr(8, "To: empty:;"),
    ];
    assert_eq!(
        seqs(&[c(SortKey::DisplayTo)], &msgs),
        [6, 2, 3, 8, 4, 1, 5, 7]
    );
    assert_eq!(
        seqs(&[r(SortKey::DisplayTo)], &msgs),
        [7, 5, 1, 4, 8, 3, 2, 6]
    );
    // The same headers as From: DISPLAYFROM is computed alike.
    let from: Vec<Msg> = msgs
        .iter()
        .map(|m| {
            let raw = String::from_utf8_lossy(&m.raw).replacen("To:", "From:", 1);
            Msg::new(m.seq, raw)
        })
        .collect();
    assert_eq!(
        seqs(&[c(SortKey::DisplayFrom)], &from),
        [6, 2, 3, 8, 4, 1, 5, 7]
    );
}
