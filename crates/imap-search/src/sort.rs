//! SORT (RFC 5256 §3, BASE.6.4.SORT) with SORT=DISPLAY (RFC 5957 §3).
//!
//! Each message's keys are computed once, then the messages are ordered by them:
//!
//! - ARRIVAL: the internal date.
//! - CC, FROM, TO: the mailbox (local part) of the first address of the field, surrounding
//!   quotes removed, compared with i;ascii-casemap; no address is the empty string (sorts
//!   first). A field that starts with a group (`Cc: team: a@b;`) gives the group's name, as
//!   Dovecot does (its first address is the group start, whose mailbox is the name).
//! - DATE: the sent date (RFC 5256 §2.2: the Date header as a UTC instant, or the internal
//!   date when it is missing or does not parse).
//! - SIZE: RFC822.SIZE.
//! - SUBJECT: the base subject (RFC 5256 §2.1), i;ascii-casemap.
//! - DISPLAYFROM, DISPLAYTO (RFC 5957): the first address's decoded display name, or its
//!   addr-spec when it has none, i;ascii-casemap; no address is the empty string. A field
//!   that starts with a group gives the group's name (even an empty group's), as Dovecot does.
//! - REVERSE reverses the criterion it precedes.
//!
//! Messages equal on every criterion are in sequence-number order (RFC 5256: "sorted
//! according to the order in which they appear in the mailbox"), whatever REVERSE says.

use std::cmp::Ordering;

use mailfleet_imap_proto::{SortCriterion, SortKey};
use mailfleet_message::{Address, SearchAddress};

use crate::MessageView;
use crate::text::decode_words;

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Int(i64),
    Uint(u64),
    Str(Vec<u8>),
}

/// The order `criteria` put `msgs` in, as indexes into `msgs` (a permutation of
/// `0..msgs.len()`). Never panics.
pub fn sort(criteria: &[SortCriterion], msgs: &[MessageView<'_>]) -> Vec<usize> {
    // Message i's keys are keys[i * n .. (i + 1) * n], in one allocation for all messages.
    let n = criteria.len();
    let mut keys: Vec<Key> = Vec::with_capacity(msgs.len().saturating_mul(n));
    keys.extend(
        msgs.iter()
            .flat_map(|m| criteria.iter().map(|c| key(c.key, m))),
    );
    let mut order: Vec<usize> = (0..msgs.len()).collect();
    order.sort_by(|&a, &b| {
        for (i, c) in criteria.iter().enumerate() {
            let ka = keys.get(a * n + i);
            let kb = keys.get(b * n + i);
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
    let env = &m.meta.envelope;
    match k {
        SortKey::Arrival => Key::Int(m.internal_date),
        SortKey::Date => Key::Int(s.date.unwrap_or(m.internal_date)),
        SortKey::Size => Key::Uint(m.size),
        SortKey::Cc => mailbox(env.cc.first()),
        SortKey::From => mailbox(env.from.first()),
        SortKey::To => mailbox(env.to.first()),
        SortKey::Subject => casemap(&s.base_subject),
        SortKey::DisplayFrom => display(&env.from, &s.from),
        SortKey::DisplayTo => display(&env.to, &s.to),
    }
}

/// The mailbox of the field's first address, as Dovecot takes it: when the field starts with
/// a group, the group start's mailbox, which is the group's name (`Cc: team: a@b;` sorts as
/// `team`, not `a`).
fn mailbox(a: Option<&Address>) -> Key {
    let m = a.and_then(|a| a.mailbox.as_deref()).unwrap_or("");
    let m = m
        .strip_prefix('"')
        .and_then(|m| m.strip_suffix('"'))
        .unwrap_or(m);
    casemap(m)
}

/// RFC 5957's display form of the field's first address: its decoded display name, else its
/// addr-spec; when the field starts with a group, the group's name (as Dovecot does: `To: a:
/// x@y;` sorts as `a`, and so does the empty group `To: a:;`).
fn display(env: &[Address], decoded: &[SearchAddress]) -> Key {
    match env.first() {
        None => casemap(""),
        Some(a) if a.is_group_marker() => {
            casemap(&decode_words(a.mailbox.as_deref().unwrap_or("").as_bytes()))
        }
        // The first address is no group marker, so it is the first of `decoded` too.
        Some(a) => match decoded.first() {
            Some(d) => casemap(&d.display()),
            None => casemap(&a.addr_spec().unwrap_or_default()),
        },
    }
}

/// i;ascii-casemap (RFC 4790 §9.2): ASCII letters upper-cased, then octet order.
fn casemap(s: &str) -> Key {
    Key::Str(s.as_bytes().to_ascii_uppercase())
}
