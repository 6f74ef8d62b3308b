//! SORT (RFC 5256 §3, BASE.6.4.SORT) with SORT=DISPLAY (RFC 5957 §3).
//!
//! Each message's keys are computed once, then the messages are ordered by them:
//!
//! - ARRIVAL: the internal date.
//! - CC, FROM, TO: the mailbox (local part) of the first address of the field, surrounding
//!   quotes removed, compared with i;ascii-casemap; no address is the empty string (sorts
//!   first).
//! - DATE: the sent date (RFC 5256 §2.2: the Date header as a UTC instant, or the internal
//!   date when it is missing or does not parse).
//! - SIZE: RFC822.SIZE.
//! - SUBJECT: the base subject (RFC 5256 §2.1), i;ascii-casemap.
//! - DISPLAYFROM, DISPLAYTO (RFC 5957): the first address's decoded display name, or its
//!   addr-spec when it has none, i;ascii-casemap; no address is the empty string.
//! - REVERSE reverses the criterion it precedes.
//!
//! Messages equal on every criterion are in sequence-number order (RFC 5256: "sorted
//! according to the order in which they appear in the mailbox"), whatever REVERSE says.

use std::cmp::Ordering;

use mailfleet_imap_proto::{SortCriterion, SortKey};
use mailfleet_message::SearchAddress;

use crate::MessageView;

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Int(i64),
    Uint(u64),
    Str(Vec<u8>),
}

/// The order `criteria` put `msgs` in, as indexes into `msgs` (a permutation of
/// `0..msgs.len()`). Never panics.
pub fn sort(criteria: &[SortCriterion], msgs: &[MessageView<'_>]) -> Vec<usize> {
    let keys: Vec<Vec<Key>> = msgs
        .iter()
        .map(|m| criteria.iter().map(|c| key(c.key, m)).collect())
        .collect();
    let mut order: Vec<usize> = (0..msgs.len()).collect();
    order.sort_by(|&a, &b| {
        for (i, c) in criteria.iter().enumerate() {
            let ka = keys.get(a).and_then(|k| k.get(i));
            let kb = keys.get(b).and_then(|k| k.get(i));
            let o = ka.cmp(&kb);
            let o = if c.reverse { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        let seq = |i: usize| msgs.get(i).map(|m| m.seq);
        seq(a).cmp(&seq(b)).then(a.cmp(&b))
    });
    order
}

fn key(k: SortKey, m: &MessageView<'_>) -> Key {
    let s = &m.meta.search;
    match k {
        SortKey::Arrival => Key::Int(m.internal_date),
        SortKey::Date => Key::Int(s.date.unwrap_or(m.internal_date)),
        SortKey::Size => Key::Uint(m.size),
        SortKey::Cc => mailbox(s.cc.first()),
        SortKey::From => mailbox(s.from.first()),
        SortKey::To => mailbox(s.to.first()),
        SortKey::Subject => casemap(&s.base_subject),
        SortKey::DisplayFrom => casemap(&s.display_from().unwrap_or_default()),
        SortKey::DisplayTo => casemap(&s.display_to().unwrap_or_default()),
    }
}

fn mailbox(a: Option<&SearchAddress>) -> Key {
    let m = a.map(|a| a.mailbox.as_str()).unwrap_or("");
    let m = m
        .strip_prefix('"')
        .and_then(|m| m.strip_suffix('"'))
        .unwrap_or(m);
    casemap(m)
}

/// i;ascii-casemap (RFC 4790 §9.2): ASCII letters upper-cased, then octet order.
fn casemap(s: &str) -> Key {
    Key::Str(s.as_bytes().to_ascii_uppercase())
}
