//! SEARCH key evaluation (RFC 9051 §6.4.4, RFC 3501 §6.4.4, RFC 7162 §3.1.5, RFC 5032,
//! RFC 5182, RFC 8514); the crate documentation gives the rules.

use mailfleet_imap_proto::{Date, SearchKey, SequenceSet};
use mailfleet_message::{Address, SearchAddress};

use crate::text::{
    Needle, days_from_civil, decode_words, decoded_text_parts, header_fields, sent_day, unix_day,
};
use crate::{MessageView, SearchContext};

/// Header fields answered from the metadata (RFC 9051 §6.4.4 `HEADER`). Sender and Reply-To
/// are not: the envelope gives From for them when they are absent.
const KNOWN_HEADERS: [&str; 9] = [
    "date",
    "subject",
    "from",
    "to",
    "cc",
    "bcc",
    "in-reply-to",
    "message-id",
    "references",
];

/// Whether message `m` matches `key` (RFC 9051 §6.4.4). Never panics.
pub fn matches(key: &SearchKey, m: &MessageView<'_>, ctx: &SearchContext<'_>) -> bool {
    let seen = || has_flag(m, "\\Seen");
    match key {
        SearchKey::All => true,
        SearchKey::And(keys) => keys.iter().all(|k| matches(k, m, ctx)),
        SearchKey::Or(a, b) => matches(a, m, ctx) || matches(b, m, ctx),
        SearchKey::Not(k) => !matches(k, m, ctx),

        SearchKey::Answered => has_flag(m, "\\Answered"),
        SearchKey::Deleted => has_flag(m, "\\Deleted"),
        SearchKey::Draft => has_flag(m, "\\Draft"),
        SearchKey::Flagged => has_flag(m, "\\Flagged"),
        SearchKey::Seen => seen(),
        SearchKey::Unanswered => !has_flag(m, "\\Answered"),
        SearchKey::Undeleted => !has_flag(m, "\\Deleted"),
        SearchKey::Undraft => !has_flag(m, "\\Draft"),
        SearchKey::Unflagged => !has_flag(m, "\\Flagged"),
        SearchKey::Unseen => !seen(),
        SearchKey::Keyword(k) => has_flag(m, k),
        SearchKey::Unkeyword(k) => !has_flag(m, k),
        SearchKey::Recent => m.recent,
        SearchKey::New => m.recent && !seen(),
        SearchKey::Old => !m.recent,

        SearchKey::Larger(n) => m.size > *n,
        SearchKey::Smaller(n) => m.size < *n,

        SearchKey::Before(d) | SearchKey::SavedBefore(d) => internal_day(m) < day(d),
        SearchKey::On(d) | SearchKey::SavedOn(d) => internal_day(m) == day(d),
        SearchKey::Since(d) | SearchKey::SavedSince(d) => internal_day(m) >= day(d),
        SearchKey::SentBefore(d) => sent(m) < day(d),
        SearchKey::SentOn(d) => sent(m) == day(d),
        SearchKey::SentSince(d) => sent(m) >= day(d),
        SearchKey::SaveDateSupported => true,
        SearchKey::Older(n) => age(m, ctx) > i64::from(*n),
        SearchKey::Younger(n) => age(m, ctx) <= i64::from(*n),

        SearchKey::SequenceSet(set) => in_set(set, m.seq, ctx.max_seq, m, ctx),
        SearchKey::Uid(set) => in_set(set, m.uid, ctx.max_uid, m, ctx),
        SearchKey::ModSeq { mod_seq, .. } => m.modseq >= *mod_seq,
        SearchKey::EmailId(_) | SearchKey::ThreadId(_) => false,

        SearchKey::From(s) => address_key(m, "from", &m.meta.search.from, &m.meta.envelope.from, s),
        SearchKey::To(s) => address_key(m, "to", &m.meta.search.to, &m.meta.envelope.to, s),
        SearchKey::Cc(s) => address_key(m, "cc", &m.meta.search.cc, &m.meta.envelope.cc, s),
        SearchKey::Bcc(s) => address_key(m, "bcc", &[], &m.meta.envelope.bcc, s),
        SearchKey::Subject(s) => {
            let n = Needle::new(s);
            let env = &m.meta.envelope;
            m.meta
                .search
                .subject
                .as_deref()
                .is_some_and(|t| n.found_in_str(t))
                || env.subject.as_deref().is_some_and(|t| n.found_in_str(t))
        }
        SearchKey::Header(name, s) => header_key(m, name, s),
        SearchKey::Body(s) => text_key(m, s, false),
        SearchKey::Text(s) => text_key(m, s, true),
    }
}

/// Whether `key` has BODY or TEXT anywhere: the caller must then give
/// [`MessageView::text`].
pub fn needs_text(key: &SearchKey) -> bool {
    any_key(key, &|k| {
        matches!(k, SearchKey::Body(_) | SearchKey::Text(_))
    })
}

/// Whether `key` has `HEADER` of a field the metadata does not answer (anything but Date,
/// Subject, From, To, Cc, Bcc, In-Reply-To, Message-ID, References): the caller must then
/// give [`MessageView::raw_header`].
pub fn needs_header(key: &SearchKey) -> bool {
    any_key(key, &|k| match k {
        SearchKey::Header(name, _) => !is_known_header(name),
        _ => false,
    })
}

fn any_key(key: &SearchKey, f: &dyn Fn(&SearchKey) -> bool) -> bool {
    match key {
        SearchKey::And(keys) => keys.iter().any(|k| any_key(k, f)),
        SearchKey::Or(a, b) => any_key(a, f) || any_key(b, f),
        SearchKey::Not(k) => any_key(k, f),
        k => f(k),
    }
}

fn is_known_header(name: &str) -> bool {
    KNOWN_HEADERS
        .iter()
        .any(|h| h.eq_ignore_ascii_case(name.trim()))
}

fn has_flag(m: &MessageView<'_>, name: &str) -> bool {
    m.flags.iter().any(|f| f.eq_ignore_ascii_case(name))
}

fn day(d: &Date) -> i64 {
    days_from_civil(i64::from(d.year), i64::from(d.month), i64::from(d.day))
}

fn internal_day(m: &MessageView<'_>) -> i64 {
    unix_day(m.internal_date)
}

/// The sent day: the Date header's day as written, else the internal date's.
fn sent(m: &MessageView<'_>) -> i64 {
    m.meta
        .envelope
        .date
        .as_deref()
        .and_then(sent_day)
        .unwrap_or_else(|| internal_day(m))
}

fn age(m: &MessageView<'_>, ctx: &SearchContext<'_>) -> i64 {
    ctx.now.saturating_sub(m.internal_date)
}

fn in_set(
    set: &SequenceSet,
    n: u32,
    largest: u32,
    m: &MessageView<'_>,
    ctx: &SearchContext<'_>,
) -> bool {
    match set {
        SequenceSet::Saved => ctx.saved.is_some_and(|s| s.binary_search(&m.uid).is_ok()),
        SequenceSet::Ranges(_) => set.contains(n, largest),
    }
}

/// The address list rendered as Dovecot writes it for searching: `Name <mailbox@host>, ...`,
/// with a group as `name: member, member;` (so that the group's name is found too).
///
/// With `decoded` (the same list's addresses without group markers, display names RFC
/// 2047-decoded, as [`SearchAddress`] holds them) the decoded names are written, and group
/// names are decoded too; without it everything is as written.
fn render(list: &[Address], decoded: Option<&[SearchAddress]>) -> String {
    let mut out = String::new();
    // Whether the next entry follows a group's `name:` (no ", " before it).
    let mut after_group_start = false;
    let mut in_group = false;
    let mut members = 0usize;
    for a in list {
        if a.is_group_marker() {
            match &a.mailbox {
                Some(name) => {
                    if !out.is_empty() {
                        out.push_str(", ");
                    }
                    match decoded {
                        Some(_) => out.push_str(&decode_words(name.as_bytes())),
                        None => out.push_str(name),
                    }
                    out.push(':');
                    after_group_start = true;
                    in_group = true;
                }
                None => {
                    if in_group {
                        out.push(';');
                    }
                    after_group_start = false;
                    in_group = false;
                }
            }
            continue;
        }
        if after_group_start {
            out.push(' ');
        } else if !out.is_empty() {
            out.push_str(", ");
        }
        after_group_start = false;
        let spec = a.addr_spec().unwrap_or_default();
        let name = match decoded {
            Some(d) => match d.get(members) {
                Some(d) => d.name.clone(),
                None => a.name.as_deref().map(|n| decode_words(n.as_bytes())),
            },
            None => a.name.clone(),
        };
        members += 1;
        push_address(&mut out, name.as_deref(), &spec);
    }
    out
}

fn push_address(out: &mut String, name: Option<&str>, spec: &str) {
    match name {
        Some(n) if !n.is_empty() => {
            out.push_str(n);
            out.push_str(" <");
            out.push_str(spec);
            out.push('>');
        }
        _ => out.push_str(spec),
    }
}

fn address_key(
    m: &MessageView<'_>,
    field: &str,
    decoded: &[SearchAddress],
    raw: &[Address],
    s: &[u8],
) -> bool {
    let n = Needle::new(s);
    if !raw.is_empty()
        && (n.found_in_str(&render(raw, None)) || n.found_in_str(&render(raw, Some(decoded))))
    {
        return true;
    }
    m.raw_header.is_some_and(|h| {
        header_fields(h)
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(field.as_bytes()))
            .any(|(_, v)| n.found_in(v) || n.found_in_str(&decode_words(v)))
    })
}

fn header_key(m: &MessageView<'_>, name: &str, s: &[u8]) -> bool {
    let n = Needle::new(s);
    if let Some(h) = m.raw_header {
        let name = name.trim();
        return header_fields(h)
            .iter()
            .filter(|(f, _)| f.eq_ignore_ascii_case(name.as_bytes()))
            .any(|(_, v)| n.is_empty() || n.found_in(v) || n.found_in_str(&decode_words(v)));
    }
    let meta = m.meta;
    let env = &meta.envelope;
    let text = |v: Option<&str>| v.is_some_and(|v| n.found_in_str(v));
    let list = |raw: &[Address], decoded: &[SearchAddress]| {
        !raw.is_empty()
            && (n.is_empty()
                || n.found_in_str(&render(raw, None))
                || n.found_in_str(&render(raw, Some(decoded))))
    };
    match name.trim().to_ascii_lowercase().as_str() {
        "date" => text(env.date.as_deref()),
        "subject" => text(env.subject.as_deref()) || text(meta.search.subject.as_deref()),
        "from" => list(&env.from, &meta.search.from),
        "to" => list(&env.to, &meta.search.to),
        "cc" => list(&env.cc, &meta.search.cc),
        "bcc" => list(&env.bcc, &[]),
        "in-reply-to" => text(env.in_reply_to.as_deref()),
        "message-id" => text(env.message_id.as_deref()),
        "references" => {
            let refs = &meta.search.references;
            !refs.is_empty() && {
                let joined: Vec<String> = refs.iter().map(|r| format!("<{r}>")).collect();
                n.found_in_str(&joined.join(" "))
            }
        }
        _ => false,
    }
}

fn text_key(m: &MessageView<'_>, s: &[u8], with_header: bool) -> bool {
    let Some(raw) = m.text else {
        return false;
    };
    let n = Needle::new(s);
    if n.is_empty() {
        return true;
    }
    let hit = if with_header {
        n.found_in(raw)
    } else {
        raw.get(m.meta.body.offsets.body())
            .is_some_and(|b| n.found_in(b))
    };
    if hit {
        return true;
    }
    if with_header {
        let search = &m.meta.search;
        let names = search.from.iter().chain(&search.to).chain(&search.cc);
        if search.subject.as_deref().is_some_and(|t| n.found_in_str(t))
            || names
                .filter_map(|a| a.name.as_deref())
                .any(|t| n.found_in_str(t))
        {
            return true;
        }
    }
    decoded_text_parts(m.meta, raw)
        .iter()
        .any(|t| n.found_in_str(t))
}
