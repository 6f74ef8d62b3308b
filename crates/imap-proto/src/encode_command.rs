//! Writes commands back to the wire, for clients, tests and the decode-encode-decode round
//! trip of the fuzz target. Strings go as atoms, quoted strings or synchronizing literals;
//! what the decoder produced, it reads back equal.

use crate::command::*;
use crate::mutf7;
use crate::parse::{base64_encode, is_astring_char, is_atom_char};
use crate::types::{Flag, Mailbox, Section, SectionText};

struct W<'a> {
    out: &'a mut Vec<u8>,
    utf8: bool,
}

impl W<'_> {
    fn s(&mut self, s: &str) {
        self.out.extend_from_slice(s.as_bytes());
    }

    fn quoted(&mut self, b: &[u8]) {
        self.out.push(b'"');
        for &c in b {
            if c == b'"' || c == b'\\' {
                self.out.push(b'\\');
            }
            self.out.push(c);
        }
        self.out.push(b'"');
    }

    fn string(&mut self, b: &[u8]) {
        if b.len() <= 1024 && !b.iter().any(|&c| matches!(c, b'\r' | b'\n' | 0)) {
            self.quoted(b);
        } else {
            self.s(&format!("{{{}}}\r\n", b.len()));
            self.out.extend_from_slice(b);
        }
    }

    fn astring(&mut self, b: &[u8]) {
        if !b.is_empty() && b.iter().all(|&c| is_astring_char(c)) {
            self.out.extend_from_slice(b);
        } else {
            self.string(b);
        }
    }

    fn name(&mut self, name: &str, list_chars: bool) {
        let wire = if self.utf8 {
            name.to_string()
        } else {
            mutf7::encode(name)
        };
        let b = wire.as_bytes();
        if list_chars
            && !b.is_empty()
            && b.iter()
                .all(|&c| is_astring_char(c) || c == b'%' || c == b'*')
        {
            self.out.extend_from_slice(b);
        } else {
            self.astring(b);
        }
    }

    fn mailbox(&mut self, m: &Mailbox) {
        self.name(m.as_str(), false);
    }

    fn atom_or_quoted(&mut self, s: &str) {
        if !s.is_empty() && s.bytes().all(is_atom_char) {
            self.s(s);
        } else {
            self.string(s.as_bytes());
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
                SectionText::HeaderFields(f) => {
                    self.s("HEADER.FIELDS ");
                    self.list(f, |w, f| w.astring(f.as_bytes()));
                }
                SectionText::HeaderFieldsNot(f) => {
                    self.s("HEADER.FIELDS.NOT ");
                    self.list(f, |w, f| w.astring(f.as_bytes()));
                }
            }
        }
        self.s("]");
    }

    fn partial(&mut self, p: &Option<(u32, u32)>) {
        if let Some((o, l)) = p {
            self.s(&format!("<{o}.{l}>"));
        }
    }

    fn fetch_attr(&mut self, a: &FetchAttr) {
        match a {
            FetchAttr::Envelope => self.s("ENVELOPE"),
            FetchAttr::Flags => self.s("FLAGS"),
            FetchAttr::InternalDate => self.s("INTERNALDATE"),
            FetchAttr::Rfc822 => self.s("RFC822"),
            FetchAttr::Rfc822Header => self.s("RFC822.HEADER"),
            FetchAttr::Rfc822Size => self.s("RFC822.SIZE"),
            FetchAttr::Rfc822Text => self.s("RFC822.TEXT"),
            FetchAttr::Body => self.s("BODY"),
            FetchAttr::BodyStructure => self.s("BODYSTRUCTURE"),
            FetchAttr::Uid => self.s("UID"),
            FetchAttr::ModSeq => self.s("MODSEQ"),
            FetchAttr::EmailId => self.s("EMAILID"),
            FetchAttr::ThreadId => self.s("THREADID"),
            FetchAttr::SaveDate => self.s("SAVEDATE"),
            FetchAttr::Preview { lazy } => self.s(if *lazy { "PREVIEW (LAZY)" } else { "PREVIEW" }),
            FetchAttr::BodySection {
                peek,
                section,
                partial,
            } => {
                self.s(if *peek { "BODY.PEEK" } else { "BODY" });
                self.section(section);
                self.partial(partial);
            }
            FetchAttr::Binary {
                peek,
                part,
                partial,
            } => {
                self.s(if *peek { "BINARY.PEEK" } else { "BINARY" });
                self.section(&Section {
                    part: part.clone(),
                    text: None,
                });
                self.partial(partial);
            }
            FetchAttr::BinarySize(part) => {
                self.s("BINARY.SIZE");
                self.section(&Section {
                    part: part.clone(),
                    text: None,
                });
            }
        }
    }

    fn search_return(&mut self, ret: &Option<Vec<SearchReturn>>) {
        if let Some(ret) = ret {
            self.s(" RETURN ");
            self.list(ret, |w, r| {
                w.s(match r {
                    SearchReturn::Min => "MIN",
                    SearchReturn::Max => "MAX",
                    SearchReturn::All => "ALL",
                    SearchReturn::Count => "COUNT",
                    SearchReturn::Save => "SAVE",
                })
            });
        }
    }

    /// The top level of a search: several keys separated by spaces.
    fn search_keys(&mut self, k: &SearchKey) {
        match k {
            SearchKey::And(keys) if keys.len() > 1 => {
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        self.s(" ");
                    }
                    self.search_key(k);
                }
            }
            k => self.search_key(k),
        }
    }

    fn search_key(&mut self, k: &SearchKey) {
        use SearchKey as K;
        let (word, arg): (&str, Option<&[u8]>) = match k {
            K::All => ("ALL", None),
            K::Answered => ("ANSWERED", None),
            K::Deleted => ("DELETED", None),
            K::Draft => ("DRAFT", None),
            K::Flagged => ("FLAGGED", None),
            K::New => ("NEW", None),
            K::Old => ("OLD", None),
            K::Recent => ("RECENT", None),
            K::Seen => ("SEEN", None),
            K::Unanswered => ("UNANSWERED", None),
            K::Undeleted => ("UNDELETED", None),
            K::Undraft => ("UNDRAFT", None),
            K::Unflagged => ("UNFLAGGED", None),
            K::Unseen => ("UNSEEN", None),
            K::SaveDateSupported => ("SAVEDATESUPPORTED", None),
            K::Bcc(s) => ("BCC", Some(s)),
            K::Body(s) => ("BODY", Some(s)),
            K::Cc(s) => ("CC", Some(s)),
            K::From(s) => ("FROM", Some(s)),
            K::Subject(s) => ("SUBJECT", Some(s)),
            K::Text(s) => ("TEXT", Some(s)),
            K::To(s) => ("TO", Some(s)),
            K::Before(d)
            | K::On(d)
            | K::Since(d)
            | K::SentBefore(d)
            | K::SentOn(d)
            | K::SentSince(d)
            | K::SavedBefore(d)
            | K::SavedOn(d)
            | K::SavedSince(d) => {
                let w = match k {
                    K::Before(_) => "BEFORE",
                    K::On(_) => "ON",
                    K::Since(_) => "SINCE",
                    K::SentBefore(_) => "SENTBEFORE",
                    K::SentOn(_) => "SENTON",
                    K::SentSince(_) => "SENTSINCE",
                    K::SavedBefore(_) => "SAVEDBEFORE",
                    K::SavedOn(_) => "SAVEDON",
                    _ => "SAVEDSINCE",
                };
                return self.s(&format!("{w} {d}"));
            }
            K::Keyword(s) => return self.s(&format!("KEYWORD {s}")),
            K::Unkeyword(s) => return self.s(&format!("UNKEYWORD {s}")),
            K::Header(name, value) => {
                self.s("HEADER ");
                self.astring(name.as_bytes());
                self.s(" ");
                return self.astring(value);
            }
            K::Larger(n) => return self.s(&format!("LARGER {n}")),
            K::Smaller(n) => return self.s(&format!("SMALLER {n}")),
            K::Not(k) => {
                self.s("NOT ");
                return self.search_key(k);
            }
            K::Or(a, b) => {
                self.s("OR ");
                self.search_key(a);
                self.s(" ");
                return self.search_key(b);
            }
            K::Uid(set) => return self.s(&format!("UID {set}")),
            K::SequenceSet(set) => return self.s(&set.to_string()),
            K::And(keys) => return self.list(keys, |w, k| w.search_key(k)),
            K::ModSeq { entry, mod_seq } => {
                self.s("MODSEQ ");
                if let Some((name, t)) = entry {
                    self.quoted(name.as_bytes());
                    self.s(match t {
                        EntryType::Private => " priv ",
                        EntryType::Shared => " shared ",
                        EntryType::All => " all ",
                    });
                }
                return self.s(&mod_seq.to_string());
            }
            K::Older(n) => return self.s(&format!("OLDER {n}")),
            K::Younger(n) => return self.s(&format!("YOUNGER {n}")),
            K::EmailId(id) => return self.s(&format!("EMAILID {id}")),
            K::ThreadId(id) => return self.s(&format!("THREADID {id}")),
        };
        self.s(word);
        if let Some(a) = arg {
            self.s(" ");
            self.astring(a);
        }
    }

    fn command(&mut self, c: &Command) {
        let uid = |u: &bool| if *u { "UID " } else { "" };
        match c {
            Command::Capability
            | Command::Noop
            | Command::Logout
            | Command::StartTls
            | Command::Namespace
            | Command::Idle
            | Command::Check
            | Command::Close
            | Command::Unselect
            | Command::Expunge
            | Command::Unauthenticate => self.s(c.name()),
            Command::Authenticate { mechanism, initial } => {
                self.s("AUTHENTICATE ");
                self.s(mechanism);
                match initial {
                    Some(s) if s.0.is_empty() => self.s(" ="),
                    Some(s) => self.s(&format!(" {}", base64_encode(&s.0))),
                    None => {}
                }
            }
            Command::Login { username, password } => {
                self.s("LOGIN ");
                self.astring(username.as_bytes());
                self.s(" ");
                self.astring(&password.0);
            }
            Command::Enable(caps) => {
                self.s("ENABLE");
                for c in caps {
                    self.s(" ");
                    self.s(c);
                }
            }
            Command::Select { mailbox, params } | Command::Examine { mailbox, params } => {
                self.s(c.name());
                self.s(" ");
                self.mailbox(mailbox);
                let mut items: Vec<String> = Vec::new();
                if params.condstore {
                    items.push("CONDSTORE".into());
                }
                if let Some(q) = &params.qresync {
                    let mut s = format!("QRESYNC ({} {}", q.uid_validity, q.mod_seq);
                    if let Some(k) = &q.known_uids {
                        s += &format!(" {k}");
                    }
                    if let Some((a, b)) = &q.seq_match {
                        s += &format!(" ({a} {b})");
                    }
                    s += ")";
                    items.push(s);
                }
                if !items.is_empty() {
                    self.s(" ");
                    self.list(&items, |w, i| w.s(i));
                }
            }
            Command::Create {
                mailbox,
                special_use,
            } => {
                self.s("CREATE ");
                self.mailbox(mailbox);
                if !special_use.is_empty() {
                    self.s(" (USE ");
                    self.list(special_use, |w, u| w.s(&format!("\\{u}")));
                    self.s(")");
                }
            }
            Command::Delete(m)
            | Command::Subscribe(m)
            | Command::Unsubscribe(m)
            | Command::GetQuotaRoot(m) => {
                self.s(c.name());
                self.s(" ");
                self.mailbox(m);
            }
            Command::Rename { from, to } => {
                self.s("RENAME ");
                self.mailbox(from);
                self.s(" ");
                self.mailbox(to);
            }
            Command::List(l) => {
                self.s("LIST ");
                if !l.select.is_empty() {
                    self.list(&l.select, |w, s| {
                        w.s(match s {
                            ListSelect::Subscribed => "SUBSCRIBED",
                            ListSelect::Remote => "REMOTE",
                            ListSelect::RecursiveMatch => "RECURSIVEMATCH",
                            ListSelect::SpecialUse => "SPECIAL-USE",
                        })
                    });
                    self.s(" ");
                }
                self.name(&l.reference, false);
                self.s(" ");
                if l.patterns.len() == 1 {
                    self.name(&l.patterns[0], true);
                } else {
                    self.list(&l.patterns, |w, p| w.name(p, true));
                }
                if !l.returns.is_empty() {
                    self.s(" RETURN ");
                    self.list(&l.returns, |w, r| match r {
                        ListReturn::Subscribed => w.s("SUBSCRIBED"),
                        ListReturn::Children => w.s("CHILDREN"),
                        ListReturn::SpecialUse => w.s("SPECIAL-USE"),
                        ListReturn::Status(items) => {
                            w.s("STATUS ");
                            w.list(items, |w, i| w.s(i.as_str()));
                        }
                    });
                }
            }
            Command::Lsub { reference, pattern } => {
                self.s("LSUB ");
                self.name(reference, false);
                self.s(" ");
                self.name(pattern, true);
            }
            Command::Status { mailbox, items } => {
                self.s("STATUS ");
                self.mailbox(mailbox);
                self.s(" ");
                self.list(items, |w, i| w.s(i.as_str()));
            }
            Command::Append { mailbox, messages } => {
                self.s("APPEND ");
                self.mailbox(mailbox);
                for m in messages {
                    self.s(" ");
                    if !m.flags.is_empty() {
                        self.flags(&m.flags);
                        self.s(" ");
                    }
                    if let Some(d) = &m.date {
                        self.s(&format!("\"{d}\" "));
                    }
                    let tilde = if m.binary { "~" } else { "" };
                    self.s(&format!("{tilde}{{{}}}\r\n", m.data.len()));
                    self.out.extend_from_slice(&m.data);
                }
            }
            Command::UidExpunge(set) => self.s(&format!("UID EXPUNGE {set}")),
            Command::Search {
                uid: u,
                ret,
                charset,
                criteria,
            } => {
                self.s(uid(u));
                self.s("SEARCH");
                self.search_return(ret);
                if let Some(cs) = charset {
                    self.s(" CHARSET ");
                    self.atom_or_quoted(cs);
                }
                self.s(" ");
                self.search_keys(criteria);
            }
            Command::Fetch {
                uid: u,
                set,
                items,
                changed_since,
                vanished,
            } => {
                self.s(&format!("{}FETCH {set} ", uid(u)));
                match items {
                    FetchItems::All => self.s("ALL"),
                    FetchItems::Fast => self.s("FAST"),
                    FetchItems::Full => self.s("FULL"),
                    FetchItems::Attrs(a) => self.list(a, |w, a| w.fetch_attr(a)),
                }
                if let Some(m) = changed_since {
                    self.s(&format!(" (CHANGEDSINCE {m}"));
                    if *vanished {
                        self.s(" VANISHED");
                    }
                    self.s(")");
                }
            }
            Command::Store {
                uid: u,
                set,
                unchanged_since,
                mode,
                silent,
                flags,
            } => {
                self.s(&format!("{}STORE {set} ", uid(u)));
                if let Some(m) = unchanged_since {
                    self.s(&format!("(UNCHANGEDSINCE {m}) "));
                }
                self.s(match mode {
                    StoreMode::Replace => "",
                    StoreMode::Add => "+",
                    StoreMode::Remove => "-",
                });
                self.s(if *silent { "FLAGS.SILENT " } else { "FLAGS " });
                self.flags(flags);
            }
            Command::Copy {
                uid: u,
                set,
                mailbox,
            }
            | Command::Move {
                uid: u,
                set,
                mailbox,
            } => {
                self.s(&format!("{}{} {set} ", uid(u), c.name()));
                self.mailbox(mailbox);
            }
            Command::Sort {
                uid: u,
                ret,
                criteria,
                charset,
                search,
            } => {
                self.s(uid(u));
                self.s("SORT");
                self.search_return(ret);
                self.s(" ");
                self.list(criteria, |w, c| {
                    if c.reverse {
                        w.s("REVERSE ");
                    }
                    w.s(c.key.as_str());
                });
                self.s(" ");
                self.atom_or_quoted(charset);
                self.s(" ");
                self.search_keys(search);
            }
            Command::Thread {
                uid: u,
                algorithm,
                charset,
                search,
            } => {
                self.s(uid(u));
                self.s(match algorithm {
                    ThreadAlgorithm::OrderedSubject => "THREAD ORDEREDSUBJECT ",
                    ThreadAlgorithm::References => "THREAD REFERENCES ",
                });
                self.atom_or_quoted(charset);
                self.s(" ");
                self.search_keys(search);
            }
            Command::GetQuota(root) => {
                self.s("GETQUOTA ");
                self.astring(root.as_bytes());
            }
            Command::SetQuota { root, limits } => {
                self.s("SETQUOTA ");
                self.astring(root.as_bytes());
                self.s(" ");
                self.list(limits, |w, (n, v)| w.s(&format!("{n} {v}")));
            }
            Command::Id(None) => self.s("ID NIL"),
            Command::Id(Some(fields)) => {
                self.s("ID ");
                self.list(fields, |w, (k, v)| {
                    w.string(k.as_bytes());
                    w.s(" ");
                    match v {
                        Some(v) => w.string(v.as_bytes()),
                        None => w.s("NIL"),
                    }
                });
            }
            Command::Compress(alg) => {
                self.s("COMPRESS ");
                self.s(alg);
            }
        }
    }
}

impl TaggedCommand {
    /// Appends the command, CRLF included, to `out`; mailbox names in modified UTF-7 unless
    /// `utf8`.
    pub fn encode(&self, out: &mut Vec<u8>, utf8: bool) {
        let mut w = W { out, utf8 };
        w.s(&self.tag);
        w.s(" ");
        w.command(&self.command);
        w.s("\r\n");
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out, false);
        out
    }
}
