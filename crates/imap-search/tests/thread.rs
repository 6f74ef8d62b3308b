//! THREAD (RFC 5256 §3): ORDEREDSUBJECT and REFERENCES, with RFC 5256 §4's example responses.

mod common;

use common::{FEB_1_2024, Msg};
use mailfleet_imap_proto::ThreadAlgorithm::{OrderedSubject, References};
use mailfleet_imap_proto::{Thread, ThreadAlgorithm};
use mailfleet_imap_search::{MAX_THREAD_DEPTH, MessageView, thread};

/// A message with these optional headers; its Date is `minute` minutes after 2024-02-01.
fn m(seq: u32, id: &str, refs: &str, subject: &str, minute: u32) -> Msg {
    let mut h = format!(
        "Date: Thu, 1 Feb 2024 {:02}:{:02}:00 +0000\r\n",
        minute / 60,
        minute % 60
    );
    if !id.is_empty() {
        h.push_str(&format!("Message-ID: <{id}>\r\n"));
    }
    if !refs.is_empty() {
        let r: Vec<String> = refs.split(' ').map(|r| format!("<{r}>")).collect();
        h.push_str(&format!("References: {}\r\n", r.join(" ")));
    }
    if !subject.is_empty() {
        h.push_str(&format!("Subject: {subject}\r\n"));
    }
    Msg::new(seq, format!("{h}\r\nbody\r\n"))
}

/// The THREAD response's text for the trees (RFC 5256 §4 syntax, as the encoder prints it).
fn render(threads: &[Thread]) -> String {
    fn one(t: &Thread, out: &mut String) {
        out.push('(');
        let ids: Vec<String> = t.ids.iter().map(u32::to_string).collect();
        out.push_str(&ids.join(" "));
        if !t.ids.is_empty() && !t.children.is_empty() {
            out.push(' ');
        }
        for c in &t.children {
            one(c, out);
        }
        out.push(')');
    }
    let mut out = String::new();
    for t in threads {
        one(t, &mut out);
    }
    out
}

fn run(alg: ThreadAlgorithm, msgs: &[Msg], uid: bool) -> String {
    let views: Vec<MessageView<'_>> = msgs.iter().map(Msg::view_meta).collect();
    render(&thread(alg, &views, uid))
}

/// RFC 5256 §4: `* THREAD (2)(3 6 (4 23)(44 7 96))`.
#[test]
fn rfc_example_references() {
    let msgs = vec![
        m(2, "t2", "", "Other topic", 2),
        m(3, "t3", "", "Topic", 3),
        m(4, "t4", "t3 t6", "Re: Topic", 4),
        m(6, "t6", "t3", "Re: Topic", 6),
        m(7, "t7", "t3 t6 t44", "Re: Topic", 7),
        m(23, "t23", "t3 t6 t4", "Re: Topic", 23),
        m(44, "t44", "t3 t6", "Re: Topic", 44),
        m(96, "t96", "t3 t6 t44 t7", "Re: Topic", 96),
    ];
    assert_eq!(run(References, &msgs, false), "(2)(3 6 (4 23)(44 7 96))");
    assert_eq!(
        run(References, &msgs, true),
        "(20)(30 60 (40 230)(440 70 960))"
    );
    // The order of the slice does not matter.
    let mut rev = msgs;
    rev.reverse();
    assert_eq!(run(References, &rev, false), "(2)(3 6 (4 23)(44 7 96))");
}

/// RFC 5256 §4: `* THREAD ((3)(5))`: a missing parent with two children.
#[test]
fn rfc_example_missing_parent() {
    let msgs = [
        m(3, "a", "gone", "Re: lost", 10),
        m(5, "b", "gone", "Re: lost", 20),
    ];
    let views: Vec<MessageView<'_>> = msgs.iter().map(Msg::view_meta).collect();
    let t = thread(References, &views, false);
    assert_eq!(
        t,
        vec![Thread {
            ids: vec![],
            children: vec![
                Thread {
                    ids: vec![3],
                    children: vec![]
                },
                Thread {
                    ids: vec![5],
                    children: vec![]
                },
            ],
        }]
    );
    assert_eq!(render(&t), "((3)(5))");
}

#[test]
fn ordered_subject() {
    let msgs = vec![
        m(1, "", "", "b", 5),
        m(2, "", "", "Re: a", 3),
        m(3, "", "", "a", 4),
        m(4, "", "", "B", 1),
        m(5, "", "", "c", 2),
        m(6, "", "", "[list] a", 9),
    ];
    assert_eq!(run(OrderedSubject, &msgs, false), "(4 1)(5)(2 (3)(6))");
    assert_eq!(run(OrderedSubject, &msgs, true), "(40 10)(50)(20 (30)(60))");
    // Equal dates: sequence order. No subject: one thread of its own.
    let same = vec![
        m(3, "", "", "x", 1),
        m(1, "", "", "x", 1),
        m(2, "", "", "", 0),
    ];
    assert_eq!(run(OrderedSubject, &same, false), "(2)(1 3)");
    assert_eq!(run(OrderedSubject, &[], false), "");
}

#[test]
fn subject_grouping_of_roots() {
    // A reply without references joins the non-reply of its subject.
    let msgs = vec![m(1, "a", "", "Meeting", 1), m(2, "b", "", "Re: Meeting", 2)];
    assert_eq!(run(References, &msgs, false), "(1 2)");
    // Two non-replies: a dummy holds both.
    let msgs = vec![m(1, "a", "", "Meeting", 1), m(2, "b", "", "meeting", 2)];
    assert_eq!(run(References, &msgs, false), "((1)(2))");
    // A dummy root takes the subject's other roots as children.
    let msgs = vec![
        m(1, "a", "", "Lunch", 1),
        m(3, "c", "p", "Re: Lunch", 3),
        m(4, "d", "p", "Re: Lunch", 4),
    ];
    assert_eq!(run(References, &msgs, false), "((1)(3)(4))");
    // Two dummies of one subject merge their children.
    let msgs = vec![
        m(1, "a", "p", "Re: Lunch", 1),
        m(2, "b", "p", "Re: Lunch", 5),
        m(3, "c", "q", "Re: Lunch", 3),
        m(4, "d", "q", "Re: Lunch", 4),
    ];
    assert_eq!(run(References, &msgs, false), "((1)(3)(4)(2))");
    // Empty subjects are never grouped.
    let msgs = vec![m(1, "a", "", "", 1), m(2, "b", "", "Re: ", 2)];
    assert_eq!(run(References, &msgs, false), "(1)(2)");
}

#[test]
fn duplicate_and_missing_message_ids() {
    let msgs = vec![
        m(1, "x", "", "one", 1),
        m(2, "x", "", "two", 2),
        m(3, "y", "x", "three", 3),
        m(4, "", "", "four", 4),
        m(5, "", "", "five", 5),
    ];
    assert_eq!(run(References, &msgs, false), "(1 3)(2)(4)(5)");
    // A duplicate never takes the first's children, even when it comes first in the slice.
    let mut rev = msgs;
    rev.reverse();
    assert_eq!(run(References, &rev, false), "(1 3)(2)(4)(5)");
}

#[test]
fn loops_and_self_references_are_not_linked() {
    let msgs = vec![m(1, "a", "b", "one", 1), m(2, "b", "a", "two", 2)];
    assert_eq!(run(References, &msgs, false), "(2 1)");
    let msgs = vec![m(1, "a", "a", "self", 1)];
    assert_eq!(run(References, &msgs, false), "(1)");
    let msgs = vec![m(1, "a", "x y x", "loop in refs", 1)];
    assert_eq!(run(References, &msgs, false), "(1)");
}

#[test]
fn in_reply_to_when_no_references() {
    let a = m(1, "a", "", "one", 1);
    let b = Msg::new(
        2,
        "Message-ID: <b>\r\nIn-Reply-To: <a>\r\nSubject: two\r\n\r\n",
    );
    assert_eq!(run(References, &[a, b], false), "(1 2)");
    // References win over In-Reply-To.
    let a = m(1, "a", "", "one", 1);
    let c = Msg::new(
        2,
        "Message-ID: <c>\r\nIn-Reply-To: <a>\r\nReferences: <zz>\r\nSubject: two\r\n\r\n",
    );
    assert_eq!(run(References, &[a, c], false), "(1)(2)");
}

#[test]
fn dummies_inside_a_thread_are_pruned() {
    let msgs = vec![
        m(1, "a", "", "one", 1),
        m(2, "b", "a gone", "two", 2),
        m(3, "c", "a gone", "three", 3),
        m(4, "d", "a", "four", 4),
    ];
    // 2 and 3 hang under the missing "gone" under 1: they move up next to 4.
    assert_eq!(run(References, &msgs, false), "(1 (2)(3)(4))");
    // Siblings by sent date, then sequence number; no Date header: the internal date.
    let mut late = m(5, "e", "a", "", 0);
    late.meta.search.date = None;
    late.internal_date = FEB_1_2024 + 3600;
    let early = Msg::new(6, "Message-ID: <f>\r\nReferences: <a>\r\n\r\n").date(0);
    let msgs = vec![m(1, "a", "", "one", 1), late, early];
    assert_eq!(run(References, &msgs, false), "(1 (6)(5))");
}

fn depth(t: &Thread) -> usize {
    1 + t.children.iter().map(depth).max().unwrap_or(0)
}

fn ids(t: &Thread, out: &mut Vec<u32>) {
    out.extend(&t.ids);
    for c in &t.children {
        ids(c, out);
    }
}

#[test]
fn deep_threads_are_bounded() {
    // A spine of 300 messages, each with a leaf reply: 300 levels of two sub-threads.
    let mut msgs = Vec::new();
    for k in 0..300u32 {
        let parent = if k == 0 {
            String::new()
        } else {
            format!("s{}", k - 1)
        };
        msgs.push(m(2 * k + 1, &format!("s{k}"), &parent, "x", 2 * k));
        msgs.push(m(
            2 * k + 2,
            &format!("l{k}"),
            &format!("s{k}"),
            "x",
            2 * k + 1,
        ));
    }
    for alg in [References, OrderedSubject] {
        let views: Vec<MessageView<'_>> = msgs.iter().map(Msg::view_meta).collect();
        let t = thread(alg, &views, false);
        assert!(t.iter().map(depth).max().unwrap_or(0) <= MAX_THREAD_DEPTH + 1);
        let mut all = Vec::new();
        t.iter().for_each(|t| ids(t, &mut all));
        all.sort_unstable();
        assert_eq!(all, (1..=600).collect::<Vec<u32>>());
    }
    // A long chain is one thread.
    let chain: Vec<Msg> = (0..3000u32)
        .map(|k| {
            let parent = if k == 0 {
                String::new()
            } else {
                format!("c{}", k - 1)
            };
            m(k + 1, &format!("c{k}"), &parent, "chain", k % 1000)
        })
        .collect();
    let views: Vec<MessageView<'_>> = chain.iter().map(Msg::view_meta).collect();
    let t = thread(References, &views, false);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].ids, (1..=3000).collect::<Vec<u32>>());
}
