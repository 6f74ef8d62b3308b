//! Untagged data (`* ...`) other than FETCH's items: their values and how they are written.

use super::codes::{Code, Status};
use super::fetch::FetchData;
use super::write::W;
use crate::command::SearchReturn;
use crate::mutf7;
use crate::types::{Flag, Mailbox, SequenceSet, StatusItem};

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
    /// `* THREAD` with its trees (shared: a node keeps the answers for large mailboxes).
    Thread(std::sync::Arc<[Thread]>),
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

impl W<'_> {
    fn list_data(&mut self, verb: &str, l: &ListData) {
        self.s(verb);
        self.s(" (");
        self.spaced(&l.attributes, |w, a| {
            w.s("\\");
            w.s(a);
        });
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
        self.nil_or_groups(ns, |w, n| {
            let prefix = if w.opts.utf8 {
                n.prefix.clone()
            } else {
                mutf7::encode(&n.prefix)
            };
            w.string(prefix.as_bytes());
            w.s(" ");
            w.delimiter(n.delimiter);
        });
    }

    fn thread(&mut self, t: &Thread) {
        self.s("(");
        self.spaced(&t.ids, |w, id| w.num(id));
        if !t.ids.is_empty() && !t.children.is_empty() {
            self.s(" ");
        }
        for c in &t.children {
            self.thread(c);
        }
        self.s(")");
    }

    pub(super) fn data(&mut self, d: &Data) {
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
                for t in threads.iter() {
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
