//! Values shared by commands and responses: sequence sets, flags, mailboxes, dates, sections.

use std::fmt;

/// A sequence number or UID in a set; `*` is the largest in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeqNum {
    Value(u32),
    Star,
}

/// A sequence set (`1:3,7,9:*`), or `$`, the result saved by `SEARCH RETURN (SAVE)`
/// (RFC 5182). Ranges keep the order and direction the client gave (`5:2` is `2:5`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SequenceSet {
    Saved,
    Ranges(Vec<(SeqNum, SeqNum)>),
}

impl SequenceSet {
    /// A set holding exactly these numbers, one range per run.
    pub fn from_sorted(numbers: &[u32]) -> SequenceSet {
        let mut ranges: Vec<(SeqNum, SeqNum)> = Vec::new();
        for &n in numbers {
            if let Some((_, SeqNum::Value(hi))) = ranges.last_mut()
                && hi.checked_add(1) == Some(n)
            {
                *hi = n;
                continue;
            }
            ranges.push((SeqNum::Value(n), SeqNum::Value(n)));
        }
        SequenceSet::Ranges(ranges)
    }

    /// Whether `n` is in the set, `*` standing for `largest`. `$` contains nothing here: the
    /// session substitutes the saved result first.
    pub fn contains(&self, n: u32, largest: u32) -> bool {
        let SequenceSet::Ranges(ranges) = self else {
            return false;
        };
        let val = |s: &SeqNum| match s {
            SeqNum::Value(v) => *v,
            SeqNum::Star => largest,
        };
        ranges.iter().any(|(a, b)| {
            let (a, b) = (val(a), val(b));
            (a.min(b)..=a.max(b)).contains(&n)
        })
    }
}

impl fmt::Display for SeqNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SeqNum::Value(v) => write!(f, "{v}"),
            SeqNum::Star => f.write_str("*"),
        }
    }
}

impl fmt::Display for SequenceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SequenceSet::Saved => f.write_str("$"),
            SequenceSet::Ranges(ranges) => {
                for (i, (a, b)) in ranges.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    if a == b {
                        write!(f, "{a}")?;
                    } else {
                        write!(f, "{a}:{b}")?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// A message flag. Keywords keep the client's spelling; system flags are matched
/// case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Flag {
    Answered,
    Flagged,
    Deleted,
    Seen,
    Draft,
    /// `\Recent` (IMAP4rev1 only; never settable).
    Recent,
    /// A keyword (`$Forwarded`, `Junk`).
    Keyword(String),
    /// Another `\Name`, without its backslash.
    Extension(String),
}

impl Flag {
    /// The flag as written on the wire.
    pub fn as_wire(&self) -> String {
        match self {
            Flag::Answered => "\\Answered".into(),
            Flag::Flagged => "\\Flagged".into(),
            Flag::Deleted => "\\Deleted".into(),
            Flag::Seen => "\\Seen".into(),
            Flag::Draft => "\\Draft".into(),
            Flag::Recent => "\\Recent".into(),
            Flag::Keyword(k) => k.clone(),
            Flag::Extension(e) => format!("\\{e}"),
        }
    }

    pub(crate) fn from_system(name: &str) -> Flag {
        match name.to_ascii_uppercase().as_str() {
            "ANSWERED" => Flag::Answered,
            "FLAGGED" => Flag::Flagged,
            "DELETED" => Flag::Deleted,
            "SEEN" => Flag::Seen,
            "DRAFT" => Flag::Draft,
            "RECENT" => Flag::Recent,
            _ => Flag::Extension(name.to_string()),
        }
    }
}

/// A mailbox name, decoded to UTF-8 (from modified UTF-7 when UTF-8 was not enabled).
/// `INBOX` in any case is [`Mailbox::Inbox`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Mailbox {
    Inbox,
    Other(String),
}

impl Mailbox {
    pub fn new(name: impl Into<String>) -> Mailbox {
        let name = name.into();
        if name.eq_ignore_ascii_case("INBOX") {
            Mailbox::Inbox
        } else {
            Mailbox::Other(name)
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Mailbox::Inbox => "INBOX",
            Mailbox::Other(s) => s,
        }
    }
}

/// A calendar date (`SEARCH SINCE 1-Feb-2024`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

/// A date, time and zone (`"17-Jul-1996 02:44:25 -0700"`); `zone` in minutes east of UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DateTime {
    pub date: Date,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub zone: i16,
}

pub(crate) const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = MONTHS[usize::from(self.month.clamp(1, 12)) - 1];
        write!(f, "{}-{m}-{:04}", self.day, self.year)
    }
}

impl fmt::Display for DateTime {
    /// The quoted-less `date-time` of RFC 9051 (`02-Jul-1996 02:44:25 -0700`); the encoder adds
    /// the quotes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.date;
        let m = MONTHS[usize::from(d.month.clamp(1, 12)) - 1];
        let sign = if self.zone < 0 { '-' } else { '+' };
        let z = self.zone.unsigned_abs();
        write!(
            f,
            "{:02}-{m}-{:04} {:02}:{:02}:{:02} {sign}{:02}{:02}",
            d.day,
            d.year,
            self.hour,
            self.minute,
            self.second,
            z / 60,
            z % 60
        )
    }
}

/// The text part of a `BODY[...]` section.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SectionText {
    Header,
    HeaderFields(Vec<String>),
    HeaderFieldsNot(Vec<String>),
    Text,
    /// Only after a part number.
    Mime,
}

/// `BODY[1.2.HEADER]`: the part path (empty: the whole message) and an optional text part.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Section {
    pub part: Vec<u32>,
    pub text: Option<SectionText>,
}

/// Items of `STATUS` and `LIST ... RETURN (STATUS (...))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusItem {
    Messages,
    UidNext,
    UidValidity,
    Unseen,
    Deleted,
    /// RFC 8438 / RFC 9051.
    Size,
    /// IMAP4rev1 only.
    Recent,
    /// RFC 7162.
    HighestModSeq,
    /// RFC 7889.
    AppendLimit,
    /// RFC 8474.
    MailboxId,
}

impl StatusItem {
    pub fn as_str(&self) -> &'static str {
        match self {
            StatusItem::Messages => "MESSAGES",
            StatusItem::UidNext => "UIDNEXT",
            StatusItem::UidValidity => "UIDVALIDITY",
            StatusItem::Unseen => "UNSEEN",
            StatusItem::Deleted => "DELETED",
            StatusItem::Size => "SIZE",
            StatusItem::Recent => "RECENT",
            StatusItem::HighestModSeq => "HIGHESTMODSEQ",
            StatusItem::AppendLimit => "APPENDLIMIT",
            StatusItem::MailboxId => "MAILBOXID",
        }
    }

    pub(crate) fn parse(word: &str) -> Option<StatusItem> {
        Some(match word.to_ascii_uppercase().as_str() {
            "MESSAGES" => StatusItem::Messages,
            "UIDNEXT" => StatusItem::UidNext,
            "UIDVALIDITY" => StatusItem::UidValidity,
            "UNSEEN" => StatusItem::Unseen,
            "DELETED" => StatusItem::Deleted,
            "SIZE" => StatusItem::Size,
            "RECENT" => StatusItem::Recent,
            "HIGHESTMODSEQ" => StatusItem::HighestModSeq,
            "APPENDLIMIT" => StatusItem::AppendLimit,
            "MAILBOXID" => StatusItem::MailboxId,
            _ => return None,
        })
    }
}

/// A password or SASL response: its `Debug` shows only the length.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}
