//! Condition statuses (OK, NO, BAD, PREAUTH, BYE) and response codes, and how they are written.

use super::write::W;
use crate::types::{Flag, SequenceSet};

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

impl W<'_> {
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
                self.spaced(flags, |w, f| w.s(&f.as_wire()));
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

    pub(super) fn condition(&mut self, status: Status, code: &Option<Code>, text: &str) {
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
}
