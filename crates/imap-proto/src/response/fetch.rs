//! FETCH response items, ENVELOPE and BODYSTRUCTURE, and how they are written.

use super::write::W;
use crate::command::section_ok;
use crate::types::{DateTime, Flag, Section, SectionText};

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

impl W<'_> {
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
        self.nil_or_groups(list, |w, a| {
            w.nstring(a.name.as_deref());
            w.s(" ");
            w.nstring(a.adl.as_deref());
            w.s(" ");
            w.nstring(a.mailbox.as_deref());
            w.s(" ");
            w.nstring(a.host.as_deref());
        });
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

    /// What the extension data of either kind of part ends with: ` disposition language
    /// location`.
    fn ext_tail(
        &mut self,
        disposition: &Option<(String, Vec<(String, String)>)>,
        language: &[String],
        location: Option<&str>,
    ) {
        self.s(" ");
        self.disposition(disposition);
        self.s(" ");
        self.language(language);
        self.s(" ");
        self.nstr(location);
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
                    self.ext_tail(&ext.disposition, &ext.language, ext.location.as_deref());
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
                    self.ext_tail(&ext.disposition, &ext.language, ext.location.as_deref());
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

    pub(super) fn fetch_item(&mut self, item: &FetchData) {
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
}
