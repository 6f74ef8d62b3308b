//! Server responses and their encoder.

use crate::command::{SearchReturn, section_ok};
use crate::mutf7;
use crate::parse::{base64_encode, is_astring_char};
use crate::types::{DateTime, Flag, Mailbox, Section, SectionText, SequenceSet, StatusItem};

/// The status of a tagged or untagged condition response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
    PreAuth,
    Bye,
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::No => "NO",
            Status::Bad => "BAD",
            Status::PreAuth => "PREAUTH",
            Status::Bye => "BYE",
        }
    }
}

/// A response code (`[...]`): those of RFC 9051, UIDPLUS, CONDSTORE/QRESYNC, QUOTA,
/// OBJECTID, SPECIAL-USE, SEARCHRES and RFC 5530.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    Alert,
    AlreadyExists,
    AppendUid {
        uid_validity: u32,
        uids: SequenceSet,
    },
    AuthenticationFailed,
    AuthorizationFailed,
    BadCharset(Vec<String>),
    Cannot,
    Capability(Vec<String>),
    ClientBug,
    Closed,
    ContactAdmin,
    CopyUid {
        uid_validity: u32,
        source: SequenceSet,
        dest: SequenceSet,
    },
    Corruption,
    Expired,
    ExpungeIssued,
    HasChildren,
    HighestModSeq(u64),
    InUse,
    Limit,
    MailboxId(String),
    Modified(SequenceSet),
    NoModSeq,
    NonExistent,
    NoPerm,
    NotSaved,
    OverQuota,
    Parse,
    /// The flags, and whether `\*` (new keywords allowed) follows them.
    PermanentFlags(Vec<Flag>, bool),
    PrivacyRequired,
    ReadOnly,
    ReadWrite,
    ServerBug,
    TooBig,
    TryCreate,
    UidNext(u32),
    UidNotSticky,
    UidValidity(u32),
    Unavailable,
    UnknownCte,
    UseAttr,
    /// Any other code: an atom and optional text without `]`.
    Other(String, Option<String>),
}

/// A response to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Tagged {
        tag: String,
        status: Status,
        code: Option<Code>,
        text: String,
    },
    Untagged(Data),
    /// `+ text`.
    Continue(String),
    /// `+ base64`, a SASL challenge.
    Challenge(Vec<u8>),
}

/// An untagged response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// `* OK`, `* NO`, `* BAD`, `* PREAUTH`, `* BYE`.
    Condition {
        status: Status,
        code: Option<Code>,
        text: String,
    },
    Capability(Vec<String>),
    Enabled(Vec<String>),
    Flags(Vec<Flag>),
    Exists(u32),
    Recent(u32),
    Expunge(u32),
    /// `* VANISHED [(EARLIER)] uids` (QRESYNC).
    Vanished {
        earlier: bool,
        uids: SequenceSet,
    },
    Fetch {
        seq: u32,
        items: Vec<FetchData>,
    },
    List(ListData),
    Lsub(ListData),
    Status {
        mailbox: Mailbox,
        items: Vec<(StatusItem, StatusValue)>,
    },
    /// `* ESEARCH [(TAG "t")] [UID] ...` (RFC 4731).
    Esearch {
        tag: Option<String>,
        uid: bool,
        items: Vec<EsearchData>,
    },
    /// `* SEARCH ids [(MODSEQ m)]`.
    Search {
        ids: Vec<u32>,
        mod_seq: Option<u64>,
    },
    Sort {
        ids: Vec<u32>,
        mod_seq: Option<u64>,
    },
    Thread(Vec<Thread>),
    Namespace {
        personal: Vec<NamespaceDesc>,
        other: Vec<NamespaceDesc>,
        shared: Vec<NamespaceDesc>,
    },
    /// `* ID NIL` is `None`.
    Id(Option<Vec<(String, Option<String>)>>),
    Quota {
        root: String,
        /// Name (STORAGE, MESSAGE, ...), usage, limit.
        resources: Vec<(String, u64, u64)>,
    },
    QuotaRoot {
        mailbox: Mailbox,
        roots: Vec<String>,
    },
}

/// The value of a STATUS item: a number, `NIL` (`APPENDLIMIT NIL`: no limit) or an object id
/// (`MAILBOXID (F2212ea87)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusValue {
    Number(u64),
    Nil,
    ObjectId(String),
}

impl From<u64> for StatusValue {
    fn from(n: u64) -> StatusValue {
        StatusValue::Number(n)
    }
}

/// A LIST or LSUB line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListData {
    /// Attributes without the backslash (`HasNoChildren`, `Sent`, `NonExistent`).
    pub attributes: Vec<String>,
    pub delimiter: Option<char>,
    pub mailbox: Mailbox,
    /// `CHILDINFO` (RFC 5258) values, e.g. `SUBSCRIBED`.
    pub child_info: Vec<String>,
    /// `OLDNAME` (RFC 9051 §7.3.1).
    pub old_name: Option<Mailbox>,
}

/// Items of an ESEARCH response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EsearchData {
    Min(u32),
    Max(u32),
    All(SequenceSet),
    Count(u32),
    ModSeq(u64),
}

impl EsearchData {
    pub fn kind(&self) -> Option<SearchReturn> {
        Some(match self {
            EsearchData::Min(_) => SearchReturn::Min,
            EsearchData::Max(_) => SearchReturn::Max,
            EsearchData::All(_) => SearchReturn::All,
            EsearchData::Count(_) => SearchReturn::Count,
            EsearchData::ModSeq(_) => return None,
        })
    }
}

/// A THREAD response tree: a chain of messages, then none or at least two sub-threads. A
/// chain may be empty when the root is a missing message with several children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thread {
    pub ids: Vec<u32>,
    pub children: Vec<Thread>,
}

/// One namespace: prefix and hierarchy delimiter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceDesc {
    pub prefix: String,
    pub delimiter: Option<char>,
}

/// A FETCH response item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchData {
    Flags(Vec<Flag>),
    Uid(u32),
    InternalDate(DateTime),
    Rfc822Size(u64),
    ModSeq(u64),
    EmailId(String),
    /// `THREADID NIL` when the server does not thread.
    ThreadId(Option<String>),
    SaveDate(Option<DateTime>),
    Envelope(Box<Envelope>),
    /// `BODY` (non-extensible) or `BODYSTRUCTURE` (with extension data).
    BodyStructure {
        extended: bool,
        body: Box<BodyStructure>,
    },
    /// `BODY[section]<origin> data`; data always goes as a literal.
    BodySection {
        section: Section,
        origin: Option<u32>,
        data: Option<Vec<u8>>,
    },
    /// `BINARY[part]<origin> data`, as `~{N}` when the data holds NUL.
    Binary {
        part: Vec<u32>,
        origin: Option<u32>,
        data: Option<Vec<u8>>,
    },
    BinarySize {
        part: Vec<u32>,
        size: u64,
    },
    Rfc822(Option<Vec<u8>>),
    Rfc822Header(Option<Vec<u8>>),
    Rfc822Text(Option<Vec<u8>>),
    /// RFC 8970; `None` is NIL.
    Preview(Option<String>),
}

/// The ENVELOPE of a message; header values as in the message (encoded words kept).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Envelope {
    pub date: Option<Vec<u8>>,
    pub subject: Option<Vec<u8>>,
    pub from: Vec<Address>,
    pub sender: Vec<Address>,
    pub reply_to: Vec<Address>,
    pub to: Vec<Address>,
    pub cc: Vec<Address>,
    pub bcc: Vec<Address>,
    pub in_reply_to: Option<Vec<u8>>,
    pub message_id: Option<Vec<u8>>,
}

/// An address of an ENVELOPE. A group is an address with `host: None` and the group name in
/// `mailbox` before its members, and one with `mailbox` and `host` both `None` after them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Address {
    pub name: Option<Vec<u8>>,
    pub adl: Option<Vec<u8>>,
    pub mailbox: Option<Vec<u8>>,
    pub host: Option<Vec<u8>>,
}

/// A BODYSTRUCTURE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyStructure {
    Single {
        media_type: String,
        subtype: String,
        params: Vec<(String, String)>,
        id: Option<String>,
        description: Option<String>,
        encoding: String,
        size: u64,
        kind: SingleKind,
        ext: Option<SingleExt>,
    },
    Multi {
        parts: Vec<BodyStructure>,
        subtype: String,
        ext: Option<MultiExt>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SingleKind {
    Basic,
    Text {
        lines: u64,
    },
    /// `message/rfc822` (and `message/global`): the inner message.
    Message {
        envelope: Box<Envelope>,
        body: Box<BodyStructure>,
        lines: u64,
    },
}

/// Extension data of a single part.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SingleExt {
    pub md5: Option<String>,
    pub disposition: Option<(String, Vec<(String, String)>)>,
    pub language: Vec<String>,
    pub location: Option<String>,
}

/// Extension data of a multipart.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MultiExt {
    pub params: Vec<(String, String)>,
    pub disposition: Option<(String, Vec<(String, String)>)>,
    pub language: Vec<String>,
    pub location: Option<String>,
}

/// How strings are written: whether the client has enabled UTF-8 (IMAP4rev2, UTF8=ACCEPT), so
/// that 8-bit text may go in quoted strings and mailbox names are not modified UTF-7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EncodeOptions {
    pub utf8: bool,
}

struct W<'a> {
    out: &'a mut Vec<u8>,
    opts: EncodeOptions,
}

/// Longest string sent quoted; longer ones go as literals.
const MAX_QUOTED: usize = 1024;

impl W<'_> {
    fn s(&mut self, s: &str) {
        self.out.extend_from_slice(s.as_bytes());
    }

    fn num(&mut self, n: impl std::fmt::Display) {
        self.s(&n.to_string());
    }

    /// Text of a response line: CR, LF and NUL become spaces.
    fn text(&mut self, t: &str) {
        self.out.extend(t.bytes().map(|b| {
            if matches!(b, b'\r' | b'\n' | 0) {
                b' '
            } else {
                b
            }
        }));
    }

    fn quotable(&self, b: &[u8]) -> bool {
        b.len() <= MAX_QUOTED
            && b.iter()
                .all(|&c| !matches!(c, b'\r' | b'\n' | 0) && (self.opts.utf8 || c < 0x80))
            && (!self.opts.utf8 || std::str::from_utf8(b).is_ok())
    }

    fn literal(&mut self, b: &[u8]) {
        if b.contains(&0) {
            self.s("~");
        }
        self.s(&format!("{{{}}}\r\n", b.len()));
        self.out.extend_from_slice(b);
    }

    fn string(&mut self, b: &[u8]) {
        if self.quotable(b) {
            self.out.push(b'"');
            for &c in b {
                if c == b'"' || c == b'\\' {
                    self.out.push(b'\\');
                }
                self.out.push(c);
            }
            self.out.push(b'"');
        } else {
            self.literal(b);
        }
    }

    fn nstring(&mut self, b: Option<&[u8]>) {
        match b {
            Some(b) => self.string(b),
            None => self.s("NIL"),
        }
    }

    fn nstr(&mut self, b: Option<&str>) {
        self.nstring(b.map(str::as_bytes));
    }

    fn astring(&mut self, b: &[u8]) {
        if !b.is_empty() && b.iter().all(|&c| is_astring_char(c)) && !b.eq_ignore_ascii_case(b"NIL")
        {
            self.out.extend_from_slice(b);
        } else {
            self.string(b);
        }
    }

    fn mailbox(&mut self, m: &Mailbox) {
        let name = match m {
            Mailbox::Inbox => "INBOX".to_string(),
            Mailbox::Other(s) if self.opts.utf8 => s.clone(),
            Mailbox::Other(s) => mutf7::encode(s),
        };
        self.astring(name.as_bytes());
    }

    fn delimiter(&mut self, d: Option<char>) {
        match d {
            Some(c) => {
                let mut buf = [0; 4];
                self.string(c.encode_utf8(&mut buf).as_bytes());
            }
            None => self.s("NIL"),
        }
    }

    fn list<T>(&mut self, items: &[T], mut f: impl FnMut(&mut Self, &T)) {
        self.s("(");
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.s(" ");
            }
            f(self, item);
        }
        self.s(")");
    }

    fn flags(&mut self, flags: &[Flag]) {
        self.list(flags, |w, f| w.s(&f.as_wire()));
    }

    fn atoms(&mut self, atoms: &[String]) {
        for a in atoms {
            self.s(" ");
            self.s(a);
        }
    }

    fn ids(&mut self, ids: &[u32]) {
        for id in ids {
            self.s(" ");
            self.num(id);
        }
    }

    fn params(&mut self, params: &[(String, String)]) {
        if params.is_empty() {
            return self.s("NIL");
        }
        self.list(params, |w, (k, v)| {
            w.string(k.as_bytes());
            w.s(" ");
            w.string(v.as_bytes());
        });
    }

    fn code(&mut self, code: &Code) {
        self.s("[");
        match code {
            Code::Alert => self.s("ALERT"),
            Code::AlreadyExists => self.s("ALREADYEXISTS"),
            Code::AppendUid { uid_validity, uids } => {
                self.s(&format!("APPENDUID {uid_validity} {uids}"))
            }
            Code::AuthenticationFailed => self.s("AUTHENTICATIONFAILED"),
            Code::AuthorizationFailed => self.s("AUTHORIZATIONFAILED"),
            Code::BadCharset(cs) => {
                self.s("BADCHARSET");
                if !cs.is_empty() {
                    self.s(" ");
                    self.list(cs, |w, c| w.astring(c.as_bytes()));
                }
            }
            Code::Cannot => self.s("CANNOT"),
            Code::Capability(caps) => {
                self.s("CAPABILITY");
                self.atoms(caps);
            }
            Code::ClientBug => self.s("CLIENTBUG"),
            Code::Closed => self.s("CLOSED"),
            Code::ContactAdmin => self.s("CONTACTADMIN"),
            Code::CopyUid {
                uid_validity,
                source,
                dest,
            } => self.s(&format!("COPYUID {uid_validity} {source} {dest}")),
            Code::Corruption => self.s("CORRUPTION"),
            Code::Expired => self.s("EXPIRED"),
            Code::ExpungeIssued => self.s("EXPUNGEISSUED"),
            Code::HasChildren => self.s("HASCHILDREN"),
            Code::HighestModSeq(m) => self.s(&format!("HIGHESTMODSEQ {m}")),
            Code::InUse => self.s("INUSE"),
            Code::Limit => self.s("LIMIT"),
            Code::MailboxId(id) => self.s(&format!("MAILBOXID ({id})")),
            Code::Modified(set) => self.s(&format!("MODIFIED {set}")),
            Code::NoModSeq => self.s("NOMODSEQ"),
            Code::NonExistent => self.s("NONEXISTENT"),
            Code::NoPerm => self.s("NOPERM"),
            Code::NotSaved => self.s("NOTSAVED"),
            Code::OverQuota => self.s("OVERQUOTA"),
            Code::Parse => self.s("PARSE"),
            Code::PermanentFlags(flags, any) => {
                self.s("PERMANENTFLAGS (");
                for (i, f) in flags.iter().enumerate() {
                    if i > 0 {
                        self.s(" ");
                    }
                    self.s(&f.as_wire());
                }
                if *any {
                    self.s(if flags.is_empty() { "\\*" } else { " \\*" });
                }
                self.s(")");
            }
            Code::PrivacyRequired => self.s("PRIVACYREQUIRED"),
            Code::ReadOnly => self.s("READ-ONLY"),
            Code::ReadWrite => self.s("READ-WRITE"),
            Code::ServerBug => self.s("SERVERBUG"),
            Code::TooBig => self.s("TOOBIG"),
            Code::TryCreate => self.s("TRYCREATE"),
            Code::UidNext(n) => self.s(&format!("UIDNEXT {n}")),
            Code::UidNotSticky => self.s("UIDNOTSTICKY"),
            Code::UidValidity(n) => self.s(&format!("UIDVALIDITY {n}")),
            Code::Unavailable => self.s("UNAVAILABLE"),
            Code::UnknownCte => self.s("UNKNOWN-CTE"),
            Code::UseAttr => self.s("USEATTR"),
            Code::Other(atom, text) => {
                self.s(atom);
                if let Some(t) = text {
                    self.s(" ");
                    let t = t.replace(']', " ");
                    self.text(&t);
                }
            }
        }
        self.s("]");
    }

    fn condition(&mut self, status: Status, code: &Option<Code>, text: &str) {
        self.s(status.as_str());
        if let Some(c) = code {
            self.s(" ");
            self.code(c);
        }
        if !text.is_empty() {
            self.s(" ");
            self.text(text);
        }
    }

    fn section(&mut self, s: &Section) {
        self.s("[");
        let parts: Vec<String> = s.part.iter().map(u32::to_string).collect();
        self.s(&parts.join("."));
        if let Some(t) = &s.text {
            if !s.part.is_empty() {
                self.s(".");
            }
            match t {
                SectionText::Header => self.s("HEADER"),
                SectionText::Text => self.s("TEXT"),
                SectionText::Mime => self.s("MIME"),
                SectionText::HeaderFields(f) | SectionText::HeaderFieldsNot(f) => {
                    self.s(if matches!(t, SectionText::HeaderFields(_)) {
                        "HEADER.FIELDS "
                    } else {
                        "HEADER.FIELDS.NOT "
                    });
                    self.list(f, |w, f| w.astring(f.as_bytes()));
                }
            }
        }
        self.s("]");
    }

    fn addresses(&mut self, list: &[Address]) {
        if list.is_empty() {
            return self.s("NIL");
        }
        self.s("(");
        for a in list {
            self.s("(");
            self.nstring(a.name.as_deref());
            self.s(" ");
            self.nstring(a.adl.as_deref());
            self.s(" ");
            self.nstring(a.mailbox.as_deref());
            self.s(" ");
            self.nstring(a.host.as_deref());
            self.s(")");
        }
        self.s(")");
    }

    fn envelope(&mut self, e: &Envelope) {
        self.s("(");
        self.nstring(e.date.as_deref());
        self.s(" ");
        self.nstring(e.subject.as_deref());
        for list in [&e.from, &e.sender, &e.reply_to, &e.to, &e.cc, &e.bcc] {
            self.s(" ");
            self.addresses(list);
        }
        self.s(" ");
        self.nstring(e.in_reply_to.as_deref());
        self.s(" ");
        self.nstring(e.message_id.as_deref());
        self.s(")");
    }

    fn disposition(&mut self, d: &Option<(String, Vec<(String, String)>)>) {
        match d {
            None => self.s("NIL"),
            Some((kind, params)) => {
                self.s("(");
                self.string(kind.as_bytes());
                self.s(" ");
                self.params(params);
                self.s(")");
            }
        }
    }

    fn language(&mut self, l: &[String]) {
        match l {
            [] => self.s("NIL"),
            [one] => self.string(one.as_bytes()),
            many => self.list(many, |w, s| w.string(s.as_bytes())),
        }
    }

    fn body(&mut self, b: &BodyStructure, extended: bool) {
        self.s("(");
        match b {
            BodyStructure::Single {
                media_type,
                subtype,
                params,
                id,
                description,
                encoding,
                size,
                kind,
                ext,
            } => {
                self.string(media_type.as_bytes());
                self.s(" ");
                self.string(subtype.as_bytes());
                self.s(" ");
                self.params(params);
                self.s(" ");
                self.nstr(id.as_deref());
                self.s(" ");
                self.nstr(description.as_deref());
                self.s(" ");
                self.string(encoding.as_bytes());
                self.s(" ");
                self.num(size);
                match kind {
                    SingleKind::Basic => {}
                    SingleKind::Text { lines } => {
                        self.s(" ");
                        self.num(lines);
                    }
                    SingleKind::Message {
                        envelope,
                        body,
                        lines,
                    } => {
                        self.s(" ");
                        self.envelope(envelope);
                        self.s(" ");
                        self.body(body, extended);
                        self.s(" ");
                        self.num(lines);
                    }
                }
                if let (true, Some(ext)) = (extended, ext) {
                    self.s(" ");
                    self.nstr(ext.md5.as_deref());
                    self.s(" ");
                    self.disposition(&ext.disposition);
                    self.s(" ");
                    self.language(&ext.language);
                    self.s(" ");
                    self.nstr(ext.location.as_deref());
                }
            }
            BodyStructure::Multi {
                parts,
                subtype,
                ext,
            } => {
                for p in parts {
                    self.body(p, extended);
                }
                self.s(" ");
                self.string(subtype.as_bytes());
                if let (true, Some(ext)) = (extended, ext) {
                    self.s(" ");
                    self.params(&ext.params);
                    self.s(" ");
                    self.disposition(&ext.disposition);
                    self.s(" ");
                    self.language(&ext.language);
                    self.s(" ");
                    self.nstr(ext.location.as_deref());
                }
            }
        }
        self.s(")");
    }

    fn origin(&mut self, o: Option<u32>) {
        if let Some(o) = o {
            self.s(&format!("<{o}>"));
        }
    }

    fn data_literal(&mut self, d: &Option<Vec<u8>>) {
        match d {
            Some(d) => self.literal(d),
            None => self.s("NIL"),
        }
    }

    fn fetch_item(&mut self, item: &FetchData) {
        match item {
            FetchData::Flags(f) => {
                self.s("FLAGS ");
                self.flags(f);
            }
            FetchData::Uid(u) => self.s(&format!("UID {u}")),
            FetchData::InternalDate(d) => self.s(&format!("INTERNALDATE \"{d}\"")),
            FetchData::Rfc822Size(n) => self.s(&format!("RFC822.SIZE {n}")),
            FetchData::ModSeq(m) => self.s(&format!("MODSEQ ({m})")),
            FetchData::EmailId(id) => self.s(&format!("EMAILID ({id})")),
            FetchData::ThreadId(Some(id)) => self.s(&format!("THREADID ({id})")),
            FetchData::ThreadId(None) => self.s("THREADID NIL"),
            FetchData::SaveDate(Some(d)) => self.s(&format!("SAVEDATE \"{d}\"")),
            FetchData::SaveDate(None) => self.s("SAVEDATE NIL"),
            FetchData::Envelope(e) => {
                self.s("ENVELOPE ");
                self.envelope(e);
            }
            FetchData::BodyStructure { extended, body } => {
                self.s(if *extended { "BODYSTRUCTURE " } else { "BODY " });
                self.body(body, *extended);
            }
            FetchData::BodySection {
                section,
                origin,
                data,
            } => {
                debug_assert!(section_ok(section));
                self.s("BODY");
                self.section(section);
                self.origin(*origin);
                self.s(" ");
                self.data_literal(data);
            }
            FetchData::Binary { part, origin, data } => {
                self.s("BINARY");
                self.section(&Section {
                    part: part.clone(),
                    text: None,
                });
                self.origin(*origin);
                self.s(" ");
                self.data_literal(data);
            }
            FetchData::BinarySize { part, size } => {
                self.s("BINARY.SIZE");
                self.section(&Section {
                    part: part.clone(),
                    text: None,
                });
                self.s(&format!(" {size}"));
            }
            FetchData::Rfc822(d) => {
                self.s("RFC822 ");
                self.data_literal(d);
            }
            FetchData::Rfc822Header(d) => {
                self.s("RFC822.HEADER ");
                self.data_literal(d);
            }
            FetchData::Rfc822Text(d) => {
                self.s("RFC822.TEXT ");
                self.data_literal(d);
            }
            FetchData::Preview(p) => {
                self.s("PREVIEW ");
                self.nstr(p.as_deref());
            }
        }
    }

    fn list_data(&mut self, verb: &str, l: &ListData) {
        self.s(verb);
        self.s(" (");
        for (i, a) in l.attributes.iter().enumerate() {
            if i > 0 {
                self.s(" ");
            }
            self.s("\\");
            self.s(a);
        }
        self.s(") ");
        self.delimiter(l.delimiter);
        self.s(" ");
        self.mailbox(&l.mailbox);
        let mut ext = Vec::new();
        if !l.child_info.is_empty() {
            ext.push(0);
        }
        if l.old_name.is_some() {
            ext.push(1);
        }
        if !ext.is_empty() {
            self.s(" ");
            self.list(&ext, |w, which| {
                if *which == 0 {
                    w.s("\"CHILDINFO\" ");
                    w.list(&l.child_info, |w, c| w.string(c.as_bytes()));
                } else if let Some(old) = &l.old_name {
                    w.s("\"OLDNAME\" (");
                    w.mailbox(old);
                    w.s(")");
                }
            });
        }
    }

    fn namespaces(&mut self, ns: &[NamespaceDesc]) {
        if ns.is_empty() {
            return self.s("NIL");
        }
        self.s("(");
        for n in ns {
            self.s("(");
            let prefix = if self.opts.utf8 {
                n.prefix.clone()
            } else {
                mutf7::encode(&n.prefix)
            };
            self.string(prefix.as_bytes());
            self.s(" ");
            self.delimiter(n.delimiter);
            self.s(")");
        }
        self.s(")");
    }

    fn thread(&mut self, t: &Thread) {
        self.s("(");
        for (i, id) in t.ids.iter().enumerate() {
            if i > 0 {
                self.s(" ");
            }
            self.num(id);
        }
        if !t.ids.is_empty() && !t.children.is_empty() {
            self.s(" ");
        }
        for c in &t.children {
            self.thread(c);
        }
        self.s(")");
    }

    fn data(&mut self, d: &Data) {
        self.s("* ");
        match d {
            Data::Condition { status, code, text } => self.condition(*status, code, text),
            Data::Capability(caps) => {
                self.s("CAPABILITY");
                self.atoms(caps);
            }
            Data::Enabled(caps) => {
                self.s("ENABLED");
                self.atoms(caps);
            }
            Data::Flags(f) => {
                self.s("FLAGS ");
                self.flags(f);
            }
            Data::Exists(n) => self.s(&format!("{n} EXISTS")),
            Data::Recent(n) => self.s(&format!("{n} RECENT")),
            Data::Expunge(n) => self.s(&format!("{n} EXPUNGE")),
            Data::Vanished { earlier, uids } => {
                self.s("VANISHED ");
                if *earlier {
                    self.s("(EARLIER) ");
                }
                self.num(uids);
            }
            Data::Fetch { seq, items } => {
                self.s(&format!("{seq} FETCH "));
                self.list(items, |w, i| w.fetch_item(i));
            }
            Data::List(l) => self.list_data("LIST", l),
            Data::Lsub(l) => self.list_data("LSUB", l),
            Data::Status { mailbox, items } => {
                self.s("STATUS ");
                self.mailbox(mailbox);
                self.s(" ");
                self.list(items, |w, (item, value)| {
                    w.s(item.as_str());
                    match value {
                        StatusValue::Number(n) => w.s(&format!(" {n}")),
                        StatusValue::Nil => w.s(" NIL"),
                        StatusValue::ObjectId(id) => w.s(&format!(" ({id})")),
                    }
                });
            }
            Data::Esearch { tag, uid, items } => {
                self.s("ESEARCH");
                if let Some(t) = tag {
                    self.s(" (TAG ");
                    self.string(t.as_bytes());
                    self.s(")");
                }
                if *uid {
                    self.s(" UID");
                }
                for item in items {
                    match item {
                        EsearchData::Min(n) => self.s(&format!(" MIN {n}")),
                        EsearchData::Max(n) => self.s(&format!(" MAX {n}")),
                        EsearchData::All(set) => self.s(&format!(" ALL {set}")),
                        EsearchData::Count(n) => self.s(&format!(" COUNT {n}")),
                        EsearchData::ModSeq(m) => self.s(&format!(" MODSEQ {m}")),
                    }
                }
            }
            Data::Search { ids, mod_seq } | Data::Sort { ids, mod_seq } => {
                self.s(if matches!(d, Data::Search { .. }) {
                    "SEARCH"
                } else {
                    "SORT"
                });
                self.ids(ids);
                if let Some(m) = mod_seq {
                    self.s(&format!(" (MODSEQ {m})"));
                }
            }
            Data::Thread(threads) => {
                self.s("THREAD");
                if !threads.is_empty() {
                    self.s(" ");
                }
                for t in threads {
                    self.thread(t);
                }
            }
            Data::Namespace {
                personal,
                other,
                shared,
            } => {
                self.s("NAMESPACE ");
                self.namespaces(personal);
                self.s(" ");
                self.namespaces(other);
                self.s(" ");
                self.namespaces(shared);
            }
            Data::Id(None) => self.s("ID NIL"),
            Data::Id(Some(fields)) => {
                self.s("ID ");
                if fields.is_empty() {
                    return self.s("NIL");
                }
                self.list(fields, |w, (k, v)| {
                    w.string(k.as_bytes());
                    w.s(" ");
                    w.nstr(v.as_deref());
                });
            }
            Data::Quota { root, resources } => {
                self.s("QUOTA ");
                self.astring(root.as_bytes());
                self.s(" ");
                self.list(resources, |w, (name, usage, limit)| {
                    w.s(&format!("{name} {usage} {limit}"));
                });
            }
            Data::QuotaRoot { mailbox, roots } => {
                self.s("QUOTAROOT ");
                self.mailbox(mailbox);
                for r in roots {
                    self.s(" ");
                    self.astring(r.as_bytes());
                }
            }
        }
    }
}

impl Response {
    /// Appends the response, CRLF included, to `out`.
    pub fn encode(&self, out: &mut Vec<u8>, opts: EncodeOptions) {
        let mut w = W { out, opts };
        match self {
            Response::Tagged {
                tag,
                status,
                code,
                text,
            } => {
                w.s(tag);
                w.s(" ");
                w.condition(*status, code, text);
            }
            Response::Untagged(d) => w.data(d),
            Response::Continue(text) => {
                w.s("+ ");
                w.text(text);
            }
            Response::Challenge(data) => {
                w.s("+ ");
                w.s(&base64_encode(data));
            }
        }
        w.s("\r\n");
    }

    /// The response as bytes, without UTF-8 enabled.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out, EncodeOptions::default());
        out
    }

    pub fn tagged(tag: &str, status: Status, code: Option<Code>, text: &str) -> Response {
        Response::Tagged {
            tag: tag.to_string(),
            status,
            code,
            text: text.to_string(),
        }
    }
}
