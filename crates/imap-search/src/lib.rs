//! mailfleet IMAP SEARCH, SORT and THREAD: which messages a parsed search key selects, in
//! which order SORT criteria put them, and how a THREAD algorithm groups them. Sans-IO: pure
//! functions over what the session already holds of each message ([`MessageView`]: flags,
//! dates, size and the [`mailfleet_message::Metadata`] computed at delivery), no store, no
//! async.
//!
//! ```
//! use mailfleet_imap_proto::SearchKey;
//! use mailfleet_imap_search::{MessageView, SearchContext, matches};
//!
//! let meta = mailfleet_message::Metadata::parse(b"From: Ann <ann@example.test>\r\nSubject: Hi\r\n\r\nx\r\n");
//! let flags = vec!["\\Seen".to_string()];
//! let m = MessageView::new(1, 10, &flags, &meta);
//! let ctx = SearchContext { max_seq: 1, max_uid: 10, saved: None, now: 0 };
//! assert!(matches(&SearchKey::From(b"ANN".to_vec()), &m, &ctx));
//! assert!(!matches(&SearchKey::Unseen, &m, &ctx));
//! ```
//!
//! # SEARCH ([`matches()`], `search.rs`)
//!
//! RFC 9051 §6.4.4 and RFC 3501 §6.4.4, with CONDSTORE's MODSEQ (RFC 7162 §3.1.5), WITHIN's
//! OLDER/YOUNGER (RFC 5032), SEARCHRES's `$` (RFC 5182) and SAVEDATE (RFC 8514):
//!
//! - String keys are substring matches without regard to case: ASCII case folding always,
//!   Unicode lower-casing when the search string is non-ASCII UTF-8 (the session converts the
//!   CHARSET to UTF-8 first). The empty string matches everything.
//! - FROM, TO, CC, BCC match the address list rendered as `Name <mailbox@host>, ...`, a
//!   group as `name: member, member;` (so the group's name matches, as in Dovecot), once
//!   with the display names as written and once with them RFC 2047-decoded; when the caller
//!   gives the raw header, the field's value exactly as written is tried too.
//! - SUBJECT matches the decoded subject (and the raw one).
//! - `HEADER field string` matches messages having the field whose value (unfolded, as
//!   written, or with RFC 2047 words decoded) contains the string; with an empty string, any
//!   message having the field. Date, Subject, From, To, Cc, Bcc, In-Reply-To, Message-ID and
//!   References are answered from the metadata; any other field needs
//!   [`MessageView::raw_header`] (see [`needs_header`]); without it such a key matches
//!   nothing. When the raw header is given it is used for every field.
//! - BODY matches the body (after the header), TEXT the header and body: the raw bytes, and
//!   the text/* parts decoded from base64 or quoted-printable and from their charset into
//!   UTF-8 (and for TEXT also the decoded subject and display names). Both need
//!   [`MessageView::text`] (see [`needs_text`]); without it they match nothing.
//! - BEFORE/ON/SINCE compare the internal date's UTC day; SENTBEFORE/SENTON/SENTSINCE the
//!   Date: header's day as written (its own zone, time disregarded), or the internal date's
//!   UTC day when the message has no parsable Date header. SAVEDBEFORE/SAVEDON/SAVEDSINCE use
//!   the internal date as the save date, so SAVEDATESUPPORTED matches every message.
//! - NEW is RECENT and UNSEEN; OLD is not RECENT. KEYWORD and the flag keys compare flag
//!   names without regard to ASCII case.
//! - Sequence sets take `*` as [`SearchContext::max_seq`] (UID sets: `max_uid`); `$` is the
//!   saved result, [`SearchContext::saved`] (UIDs), and matches nothing when none is saved.
//! - MODSEQ matches messages whose mod-sequence is at least the value; the entry name and type
//!   are ignored (mod-sequences are kept per message, not per flag: RFC 7162 allows this).
//! - OLDER n matches messages whose internal date is more than n seconds before
//!   [`SearchContext::now`], YOUNGER n those at most n seconds before it (or later).
//! - EMAILID and THREADID (RFC 8474) match nothing: the metadata defines no object ids.
//!
//! # SORT ([`sort`], `sort.rs`)
//!
//! RFC 5256 §3 (BASE.6.4.SORT) and RFC 5957 (SORT=DISPLAY); strings compared with
//! i;ascii-casemap. Ties, after all criteria, go by sequence number ascending (REVERSE does
//! not reverse that tie-break).
//!
//! # THREAD ([`thread`], `thread.rs`)
//!
//! RFC 5256 §3 (BASE.6.4.THREAD) ORDEREDSUBJECT and REFERENCES, base subjects (§2.1) and sent
//! dates (§2.2) as RFC 5256 defines them; the result is the THREAD response's tree (§4).
//!
//! # Choices where the RFCs leave room
//!
//! - Dates are days in UTC for the internal date (BEFORE/ON/SINCE); the Date header's own
//!   day for SENT* (RFC 9051: "disregarding time and timezone").
//! - MODSEQ ignores its entry name and type (per-message mod-sequences only).
//! - `$` with nothing saved matches nothing (RFC 5182 §2.1 makes it an empty set).
//! - SORT address keys strip the quotes of a quoted local part; missing fields sort as the
//!   empty string, so first (last under REVERSE). A field starting with a group sorts by the
//!   group's name for CC/FROM/TO and DISPLAYFROM/DISPLAYTO alike (Dovecot: the group start
//!   is the first address, its mailbox the name).
//! - THREAD compares base subjects with i;ascii-casemap and Message-IDs exactly; REFERENCES
//!   uses In-Reply-To's first id only when there is no References id.
//! - EMAILID/THREADID match nothing (no object ids are defined for messages yet).
//!
//! # Bounds
//!
//! Nothing here panics, whatever the key, the metadata or the bytes. The work is bounded by
//! the caller's input: a string key scans at most the bytes given in [`MessageView::text`] /
//! [`MessageView::raw_header`] (plus their decoded text parts), so the caller bounds the text
//! scanned by what it passes; key evaluation recurses as deep as the key is nested (the IMAP
//! decoder bounds that, `Limits::max_depth`); SORT is O(n log n) comparisons of precomputed
//! keys; REFERENCES threading is O(r · d) for r message ids referenced and d the depth of the
//! reply tree; the THREAD tree handed back nests at most [`MAX_THREAD_DEPTH`] sub-thread levels
//! (deeper replies are listed in the chain of the deepest level), so that encoding and dropping
//! it never recurse without bound.

mod search;
mod sort;
mod text;
mod thread;

pub use mailfleet_imap_proto::Thread;
pub use search::{matches, needs_header, needs_text};
pub use sort::sort;
pub use thread::{MAX_THREAD_DEPTH, thread};

use mailfleet_message::Metadata;

/// One message as the session sees it.
#[derive(Debug, Clone, Copy)]
pub struct MessageView<'a> {
    /// Message sequence number.
    pub seq: u32,
    pub uid: u32,
    /// CONDSTORE mod-sequence.
    pub modseq: u64,
    /// System flags (`\Seen`, any case) and keywords.
    pub flags: &'a [String],
    /// INTERNALDATE, Unix seconds.
    pub internal_date: i64,
    /// RFC822.SIZE.
    pub size: u64,
    pub meta: &'a Metadata,
    /// The message's header bytes (or the whole message), needed for `HEADER` of a field
    /// [`needs_header`] names.
    pub raw_header: Option<&'a [u8]>,
    /// The whole raw message (the bytes `meta` was computed from), needed for BODY and TEXT.
    pub text: Option<&'a [u8]>,
    /// `\Recent` in this session.
    pub recent: bool,
}

impl<'a> MessageView<'a> {
    /// A view with internal date 0, modseq 0, size from the metadata, no raw bytes, not recent.
    pub fn new(seq: u32, uid: u32, flags: &'a [String], meta: &'a Metadata) -> MessageView<'a> {
        MessageView {
            seq,
            uid,
            modseq: 0,
            flags,
            internal_date: 0,
            size: meta.size,
            meta,
            raw_header: None,
            text: None,
            recent: false,
        }
    }
}

/// What a search key is evaluated against besides the message.
#[derive(Debug, Clone, Copy, Default)]
pub struct SearchContext<'a> {
    /// Number of messages in the mailbox: `*` of a sequence set.
    pub max_seq: u32,
    /// Largest UID in the mailbox: `*` of a UID set.
    pub max_uid: u32,
    /// The result saved by `SEARCH RETURN (SAVE)` as UIDs, ascending (`$`); None when nothing
    /// is saved.
    pub saved: Option<&'a [u32]>,
    /// The current time, Unix seconds (OLDER/YOUNGER).
    pub now: i64,
}
