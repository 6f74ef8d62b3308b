//! Properties: `matches`, `sort` and `thread` never panic on arbitrary keys and messages; sort
//! gives a permutation; every message is in exactly one place of the THREAD trees.

mod common;

use common::Msg;
use mailfleet_imap_proto::{
    Date, EntryType, SearchKey as K, SeqNum, SequenceSet, SortCriterion, SortKey, Thread,
    ThreadAlgorithm,
};
use mailfleet_imap_search::{MessageView, SearchContext, matches, needs_header, needs_text};
use mailfleet_imap_search::{sort, thread};
use proptest::prelude::*;

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..8),
        "[a-zA-Z<>@ =?ÄéßİK\u{212A}]{0,8}".prop_map(String::into_bytes),
    ]
}

fn date() -> impl Strategy<Value = Date> {
    (any::<u16>(), any::<u8>(), any::<u8>()).prop_map(|(year, month, day)| Date {
        year,
        month,
        day,
    })
}

fn seqset() -> impl Strategy<Value = SequenceSet> {
    let num = prop_oneof![any::<u32>().prop_map(SeqNum::Value), Just(SeqNum::Star)];
    prop_oneof![
        Just(SequenceSet::Saved),
        prop::collection::vec((num.clone(), num), 0..4).prop_map(SequenceSet::Ranges),
    ]
}

fn leaf() -> impl Strategy<Value = K> {
    let name = "[a-zA-Z\\\\$-]{0,10}";
    prop_oneof![
        Just(K::All),
        Just(K::Answered),
        Just(K::Deleted),
        Just(K::Draft),
        Just(K::Flagged),
        Just(K::New),
        Just(K::Old),
        Just(K::Recent),
        Just(K::Seen),
        Just(K::Unanswered),
        Just(K::Undeleted),
        Just(K::Undraft),
        Just(K::Unflagged),
        Just(K::Unseen),
        Just(K::SaveDateSupported),
        bytes().prop_map(K::Bcc),
        bytes().prop_map(K::Body),
        bytes().prop_map(K::Cc),
        bytes().prop_map(K::From),
        bytes().prop_map(K::Subject),
        bytes().prop_map(K::Text),
        bytes().prop_map(K::To),
        (
            prop_oneof![
                Just("X-A".to_string()),
                Just("subject".to_string()),
                name.prop_map(String::from)
            ],
            bytes()
        )
            .prop_map(|(n, v)| K::Header(n, v)),
        name.prop_map(K::Keyword),
        name.prop_map(K::Unkeyword),
        any::<u64>().prop_map(K::Larger),
        any::<u64>().prop_map(K::Smaller),
        date().prop_map(K::Before),
        date().prop_map(K::On),
        date().prop_map(K::Since),
        date().prop_map(K::SentBefore),
        date().prop_map(K::SentOn),
        date().prop_map(K::SentSince),
        date().prop_map(K::SavedBefore),
        date().prop_map(K::SavedOn),
        date().prop_map(K::SavedSince),
        any::<u32>().prop_map(K::Older),
        any::<u32>().prop_map(K::Younger),
        seqset().prop_map(K::Uid),
        seqset().prop_map(K::SequenceSet),
        any::<u64>().prop_map(|mod_seq| K::ModSeq {
            entry: Some(("/flags/\\Seen".into(), EntryType::Private)),
            mod_seq
        }),
        name.prop_map(K::EmailId),
        name.prop_map(K::ThreadId),
    ]
}

fn key() -> impl Strategy<Value = K> {
    leaf().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(|k| K::Not(Box::new(k))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| K::Or(Box::new(a), Box::new(b))),
            prop::collection::vec(inner, 0..4).prop_map(K::And),
        ]
    })
}

const LINES: &[&str] = &[
    "Subject: Re: [x] hello (fwd)\r\n",
    "Subject: =?UTF-8?B?w6TDtg==?=\r\n",
    "Subject: \r\n",
    "From: Ann <ann@a.test>, \"B\" <b@b>\r\n",
    "To: group: x@y, ;\r\n",
    "Cc: <@route:c@c>\r\n",
    "Bcc: bad <<<\r\n",
    "Date: Mon, 1 Jan 2024 10:00:00 +1400\r\n",
    "Date: nonsense\r\n",
    "Message-ID: <a@x>\r\n",
    "Message-ID: <b@x>\r\n",
    "Message-ID: <>\r\n",
    "In-Reply-To: <a@x>\r\n",
    "References: <b@x> <a@x> <c@x>\r\n",
    "References: <c@x>\r\n",
    "Content-Type: multipart/mixed; boundary=b\r\n",
    "Content-Transfer-Encoding: base64\r\n",
    "Content-Type: text/plain; charset=iso-8859-2\r\n",
    "X-A:\r\n folded\r\n",
    "\r\n",
    "--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=C3=A4=\r\n=zz\r\n",
    "--b--\r\n",
    "aGVsbG8=\r\n",
];

fn message() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(prop::sample::select(LINES), 0..10)
            .prop_map(|l| l.concat().into_bytes()),
        prop::collection::vec(any::<u8>(), 0..200),
    ]
}

struct Setup {
    msgs: Vec<Msg>,
}

impl std::fmt::Debug for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list: Vec<_> = self
            .msgs
            .iter()
            .map(|m| {
                let raw = String::from_utf8_lossy(&m.raw);
                (
                    m.seq,
                    m.uid,
                    m.internal_date,
                    m.recent,
                    m.flags.clone(),
                    raw,
                )
            })
            .collect();
        f.debug_list().entries(list).finish()
    }
}

fn setup() -> impl Strategy<Value = Setup> {
    let flag = prop::sample::select(vec![
        "\\Seen",
        "\\SEEN",
        "\\Answered",
        "\\deleted",
        "$x",
        "Junk",
    ]);
    let one = (
        message(),
        prop::collection::vec(flag, 0..3),
        any::<i64>(),
        any::<u64>(),
        any::<bool>(),
        any::<u32>(),
    );
    prop::collection::vec(one, 0..12).prop_map(|ms| Setup {
        msgs: ms
            .into_iter()
            .enumerate()
            .map(|(i, (raw, flags, date, modseq, recent, uid))| {
                let mut m = Msg::new(i as u32 + 1, raw).flags(&flags).date(date);
                m.modseq = modseq;
                m.recent = recent;
                m.uid = uid;
                m
            })
            .collect(),
    })
}

fn sort_key() -> impl Strategy<Value = SortCriterion> {
    (
        any::<bool>(),
        prop::sample::select(vec![
            SortKey::Arrival,
            SortKey::Cc,
            SortKey::Date,
            SortKey::From,
            SortKey::Size,
            SortKey::Subject,
            SortKey::To,
            SortKey::DisplayFrom,
            SortKey::DisplayTo,
        ]),
    )
        .prop_map(|(reverse, key)| SortCriterion { reverse, key })
}

fn collect(t: &Thread, out: &mut Vec<u32>) {
    out.extend(&t.ids);
    for c in &t.children {
        collect(c, out);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn matches_never_panics(
        key in key(),
        s in setup(),
        now in any::<i64>(),
        saved in prop::collection::vec(any::<u32>(), 0..4),
        raw in any::<bool>(),
    ) {
        let mut saved = saved;
        saved.sort_unstable();
        let ctx = SearchContext { max_seq: s.msgs.len() as u32, max_uid: u32::MAX, saved: Some(&saved), now };
        let _ = (needs_text(&key), needs_header(&key));
        for m in &s.msgs {
            let v = if raw { m.view() } else { m.view_meta() };
            let yes = matches(&key, &v, &ctx);
            prop_assert_eq!(matches(&K::Not(Box::new(key.clone())), &v, &ctx), !yes);
        }
    }

    #[test]
    fn sort_is_a_permutation(criteria in prop::collection::vec(sort_key(), 0..4), s in setup()) {
        let views: Vec<MessageView<'_>> = s.msgs.iter().map(Msg::view_meta).collect();
        let mut order = sort(&criteria, &views);
        prop_assert_eq!(order.len(), views.len());
        order.sort_unstable();
        prop_assert_eq!(order, (0..views.len()).collect::<Vec<_>>());
    }

    #[test]
    fn thread_places_every_message_once(s in setup(), uid in any::<bool>()) {
        let views: Vec<MessageView<'_>> = s.msgs.iter().map(Msg::view_meta).collect();
        for alg in [ThreadAlgorithm::References, ThreadAlgorithm::OrderedSubject] {
            let mut got = Vec::new();
            for t in thread(alg, &views, uid) {
                prop_assert!(!(t.ids.is_empty() && t.children.len() < 2), "{:?}", t);
                collect(&t, &mut got);
            }
            got.sort_unstable();
            let mut want: Vec<u32> = views.iter().map(|v| if uid { v.uid } else { v.seq }).collect();
            want.sort_unstable();
            prop_assert_eq!(got, want);
        }
    }
}
