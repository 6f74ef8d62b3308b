//! Client commands (RFC 9051, RFC 3501 and the extensions listed in the crate documentation).

use crate::types::{
    Date, DateTime, Flag, Mailbox, Secret, Section, SectionText, SequenceSet, StatusItem,
};

/// A whole command: its tag and what it asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaggedCommand {
    pub tag: String,
    pub command: Command,
}

/// One client command. `uid: true` is the `UID` form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Capability,
    Noop,
    Logout,
    StartTls,
    /// `AUTHENTICATE mech [initial]` (RFC 4959 SASL-IR): the initial response decoded from
    /// base64; `=` is an empty response.
    Authenticate {
        mechanism: String,
        initial: Option<Secret>,
    },
    Login {
        username: String,
        password: Secret,
    },
    /// Capability names, as given.
    Enable(Vec<String>),
    Select {
        mailbox: Mailbox,
        params: SelectParams,
    },
    Examine {
        mailbox: Mailbox,
        params: SelectParams,
    },
    /// `CREATE name [(USE (\Sent ...))]` (RFC 6154); special-use names without backslash.
    Create {
        mailbox: Mailbox,
        special_use: Vec<String>,
    },
    Delete(Mailbox),
    Rename {
        from: Mailbox,
        to: Mailbox,
    },
    Subscribe(Mailbox),
    Unsubscribe(Mailbox),
    List(List),
    Lsub {
        reference: String,
        pattern: String,
    },
    Namespace,
    Status {
        mailbox: Mailbox,
        items: Vec<StatusItem>,
    },
    /// APPEND with its messages, when the decoder buffers them (see
    /// [`crate::Options::stream_append`]).
    Append {
        mailbox: Mailbox,
        messages: Vec<AppendMessage>,
    },
    Idle,
    Check,
    Close,
    Unselect,
    Expunge,
    /// `UID EXPUNGE set` (UIDPLUS).
    UidExpunge(SequenceSet),
    Search {
        uid: bool,
        /// `RETURN (...)` (ESEARCH); `Some(vec![])` is `RETURN ()`.
        ret: Option<Vec<SearchReturn>>,
        charset: Option<String>,
        /// The keys, as one `And` when there are several.
        criteria: SearchKey,
    },
    Fetch {
        uid: bool,
        set: SequenceSet,
        items: FetchItems,
        /// `CHANGEDSINCE` (CONDSTORE).
        changed_since: Option<u64>,
        /// `VANISHED` (QRESYNC, UID FETCH only).
        vanished: bool,
    },
    Store {
        uid: bool,
        set: SequenceSet,
        unchanged_since: Option<u64>,
        mode: StoreMode,
        silent: bool,
        flags: Vec<Flag>,
    },
    Copy {
        uid: bool,
        set: SequenceSet,
        mailbox: Mailbox,
    },
    Move {
        uid: bool,
        set: SequenceSet,
        mailbox: Mailbox,
    },
    Sort {
        uid: bool,
        ret: Option<Vec<SearchReturn>>,
        criteria: Vec<SortCriterion>,
        charset: String,
        search: SearchKey,
    },
    Thread {
        uid: bool,
        algorithm: ThreadAlgorithm,
        charset: String,
        search: SearchKey,
    },
    GetQuota(String),
    GetQuotaRoot(Mailbox),
    SetQuota {
        root: String,
        limits: Vec<(String, u64)>,
    },
    /// `ID NIL` is `None`.
    Id(Option<Vec<(String, Option<String>)>>),
    /// `COMPRESS DEFLATE` (RFC 4978): the algorithm, upper-cased.
    Compress(String),
    Unauthenticate,
}

impl Command {
    /// The command's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Capability => "CAPABILITY",
            Command::Noop => "NOOP",
            Command::Logout => "LOGOUT",
            Command::StartTls => "STARTTLS",
            Command::Authenticate { .. } => "AUTHENTICATE",
            Command::Login { .. } => "LOGIN",
            Command::Enable(_) => "ENABLE",
            Command::Select { .. } => "SELECT",
            Command::Examine { .. } => "EXAMINE",
            Command::Create { .. } => "CREATE",
            Command::Delete(_) => "DELETE",
            Command::Rename { .. } => "RENAME",
            Command::Subscribe(_) => "SUBSCRIBE",
            Command::Unsubscribe(_) => "UNSUBSCRIBE",
            Command::List(_) => "LIST",
            Command::Lsub { .. } => "LSUB",
            Command::Namespace => "NAMESPACE",
            Command::Status { .. } => "STATUS",
            Command::Append { .. } => "APPEND",
            Command::Idle => "IDLE",
            Command::Check => "CHECK",
            Command::Close => "CLOSE",
            Command::Unselect => "UNSELECT",
            Command::Expunge => "EXPUNGE",
            Command::UidExpunge(_) => "UID EXPUNGE",
            Command::Search { .. } => "SEARCH",
            Command::Fetch { .. } => "FETCH",
            Command::Store { .. } => "STORE",
            Command::Copy { .. } => "COPY",
            Command::Move { .. } => "MOVE",
            Command::Sort { .. } => "SORT",
            Command::Thread { .. } => "THREAD",
            Command::GetQuota(_) => "GETQUOTA",
            Command::GetQuotaRoot(_) => "GETQUOTAROOT",
            Command::SetQuota { .. } => "SETQUOTA",
            Command::Id(_) => "ID",
            Command::Compress(_) => "COMPRESS",
            Command::Unauthenticate => "UNAUTHENTICATE",
        }
    }
}

/// `SELECT`/`EXAMINE` parameters (RFC 7162).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SelectParams {
    pub condstore: bool,
    pub qresync: Option<QResync>,
}

/// `QRESYNC (uidvalidity modseq [known-uids] [(seqs uids)])`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QResync {
    pub uid_validity: u32,
    pub mod_seq: u64,
    pub known_uids: Option<SequenceSet>,
    /// Known sequence numbers and the UIDs they map to.
    pub seq_match: Option<(SequenceSet, SequenceSet)>,
}

/// `LIST` with the LIST-EXTENDED options (RFC 5258, RFC 5819, RFC 6154).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct List {
    pub select: Vec<ListSelect>,
    pub reference: String,
    /// One or more patterns (`%`, `*` wildcards).
    pub patterns: Vec<String>,
    /// `RETURN (...)`; empty when absent.
    pub returns: Vec<ListReturn>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListSelect {
    Subscribed,
    Remote,
    RecursiveMatch,
    SpecialUse,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListReturn {
    Subscribed,
    Children,
    SpecialUse,
    Status(Vec<StatusItem>),
}

/// One message of an APPEND (several with MULTIAPPEND).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendMessage {
    pub flags: Vec<Flag>,
    pub date: Option<DateTime>,
    /// Whether it came as a `~{N}` BINARY literal.
    pub binary: bool,
    pub data: Vec<u8>,
}

/// `RETURN` options of ESEARCH (RFC 4731) and SEARCHRES (RFC 5182).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchReturn {
    Min,
    Max,
    All,
    Count,
    Save,
}

/// The `entry-type-req` of a `MODSEQ` search key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryType {
    Private,
    Shared,
    All,
}

/// A search key. Strings are bytes in the command's CHARSET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchKey {
    All,
    Answered,
    Bcc(Vec<u8>),
    Before(Date),
    Body(Vec<u8>),
    Cc(Vec<u8>),
    Deleted,
    Draft,
    Flagged,
    From(Vec<u8>),
    Header(String, Vec<u8>),
    Keyword(String),
    Larger(u64),
    New,
    Not(Box<SearchKey>),
    Old,
    On(Date),
    Or(Box<SearchKey>, Box<SearchKey>),
    Recent,
    Seen,
    SentBefore(Date),
    SentOn(Date),
    SentSince(Date),
    Since(Date),
    Smaller(u64),
    Subject(Vec<u8>),
    Text(Vec<u8>),
    To(Vec<u8>),
    Uid(SequenceSet),
    Unanswered,
    Undeleted,
    Undraft,
    Unflagged,
    Unkeyword(String),
    Unseen,
    SequenceSet(SequenceSet),
    /// A parenthesised list, or the top-level keys when there are several.
    And(Vec<SearchKey>),
    /// `MODSEQ ["/flags/\Seen" all] 620162338` (CONDSTORE).
    ModSeq {
        entry: Option<(String, EntryType)>,
        mod_seq: u64,
    },
    /// `OLDER n` / `YOUNGER n` (RFC 5032 WITHIN), in seconds.
    Older(u32),
    Younger(u32),
    /// RFC 8474.
    EmailId(String),
    ThreadId(String),
    /// RFC 8514 SAVEDATE.
    SavedBefore(Date),
    SavedOn(Date),
    SavedSince(Date),
    SaveDateSupported,
}

/// The items a FETCH asks for; the macros are kept as such.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchItems {
    All,
    Fast,
    Full,
    Attrs(Vec<FetchAttr>),
}

/// One fetch attribute. `partial` is `<offset.length>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchAttr {
    Envelope,
    Flags,
    InternalDate,
    Rfc822,
    Rfc822Header,
    Rfc822Size,
    Rfc822Text,
    /// `BODY` without a section: the non-extensible BODYSTRUCTURE.
    Body,
    BodyStructure,
    Uid,
    BodySection {
        peek: bool,
        section: Section,
        partial: Option<(u32, u32)>,
    },
    /// `BINARY[1.2]` / `BINARY.PEEK[...]` (RFC 3516).
    Binary {
        peek: bool,
        part: Vec<u32>,
        partial: Option<(u32, u32)>,
    },
    BinarySize(Vec<u32>),
    ModSeq,
    /// `PREVIEW` / `PREVIEW (LAZY)` (RFC 8970).
    Preview {
        lazy: bool,
    },
    EmailId,
    ThreadId,
    SaveDate,
}

/// How `STORE` changes the flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    Replace,
    Add,
    Remove,
}

/// `SORT` criteria (RFC 5256, RFC 5957 DISPLAY).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortCriterion {
    pub reverse: bool,
    pub key: SortKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Arrival,
    Cc,
    Date,
    From,
    Size,
    Subject,
    To,
    DisplayFrom,
    DisplayTo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadAlgorithm {
    OrderedSubject,
    References,
}

impl SortKey {
    pub fn as_str(&self) -> &'static str {
        match self {
            SortKey::Arrival => "ARRIVAL",
            SortKey::Cc => "CC",
            SortKey::Date => "DATE",
            SortKey::From => "FROM",
            SortKey::Size => "SIZE",
            SortKey::Subject => "SUBJECT",
            SortKey::To => "TO",
            SortKey::DisplayFrom => "DISPLAYFROM",
            SortKey::DisplayTo => "DISPLAYTO",
        }
    }
}

impl SectionText {
    pub(crate) fn is_mime(&self) -> bool {
        matches!(self, SectionText::Mime)
    }
}

/// Whether a section is allowed in `BODY[...]`: `MIME` needs a part number.
pub(crate) fn section_ok(s: &Section) -> bool {
    !(s.part.is_empty() && s.text.as_ref().is_some_and(SectionText::is_mime))
}
