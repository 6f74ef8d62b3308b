//! Recursive-descent parser over the bytes of one command. Running out of bytes is
//! [`PErr::Incomplete`], never a syntax error, so the decoder can parse a prefix to check that a
//! literal is announced where one may stand.

use crate::command::*;
use crate::limits::Options;
use crate::mutf7;
use crate::types::*;

/// Why parsing stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PErr {
    Incomplete,
    Bad(String),
    Unknown(String),
    TooDeep,
    TooManyRanges,
    /// Stream mode: the header of an APPEND message literal ends at `end`.
    StreamAppend(Box<AppendHead>),
}

/// The part of an APPEND before a message's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AppendHead {
    /// `None` for the second and later messages of a MULTIAPPEND.
    pub mailbox: Option<Mailbox>,
    pub flags: Vec<Flag>,
    pub date: Option<DateTime>,
    pub size: u64,
    pub binary: bool,
    pub sync: bool,
    pub end: usize,
}

type R<T> = Result<T, PErr>;

fn bad<T>(msg: impl Into<String>) -> R<T> {
    Err(PErr::Bad(msg.into()))
}

pub(crate) fn is_atom_char(b: u8) -> bool {
    b > 0x20 && b < 0x7f && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
}

pub(crate) fn is_astring_char(b: u8) -> bool {
    is_atom_char(b) || b == b']'
}

pub(crate) fn is_tag_char(b: u8) -> bool {
    is_astring_char(b) && b != b'+'
}

fn is_list_char(b: u8) -> bool {
    is_astring_char(b) || b == b'%' || b == b'*'
}

pub(crate) struct Parser<'a> {
    b: &'a [u8],
    pub pos: usize,
    depth: u32,
    ranges: usize,
    opts: &'a Options,
}

impl<'a> Parser<'a> {
    pub fn new(b: &'a [u8], opts: &'a Options) -> Parser<'a> {
        Parser {
            b,
            pos: 0,
            depth: 0,
            ranges: 0,
            opts,
        }
    }

    fn peek(&self) -> R<u8> {
        self.b.get(self.pos).copied().ok_or(PErr::Incomplete)
    }

    fn peek_at(&self, k: usize) -> R<u8> {
        self.b.get(self.pos + k).copied().ok_or(PErr::Incomplete)
    }

    fn byte(&mut self, want: u8, what: &str) -> R<()> {
        if self.peek()? == want {
            self.pos += 1;
            Ok(())
        } else {
            bad(format!("expected {what}"))
        }
    }

    fn sp(&mut self) -> R<()> {
        self.byte(b' ', "a space")
    }

    fn crlf(&mut self) -> R<()> {
        match self.peek()? {
            b'\r' => {
                self.pos += 1;
                self.byte(b'\n', "CRLF")
            }
            b'\n' => {
                self.pos += 1;
                Ok(())
            }
            _ => bad("expected end of command"),
        }
    }

    fn at_sp(&self) -> R<bool> {
        Ok(self.peek()? == b' ')
    }

    fn enter(&mut self) -> R<()> {
        self.depth += 1;
        if self.depth > self.opts.limits.max_depth {
            return Err(PErr::TooDeep);
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn open(&mut self) -> R<()> {
        self.byte(b'(', "(")?;
        self.enter()
    }

    fn close(&mut self) -> R<()> {
        self.byte(b')', ")")?;
        self.leave();
        Ok(())
    }

    /// Bytes while `pred` holds; at least one. Incomplete if the input ends inside the run.
    fn take_while(&mut self, pred: impl Fn(u8) -> bool, what: &str) -> R<&'a [u8]> {
        let start = self.pos;
        loop {
            match self.b.get(self.pos) {
                Some(&c) if pred(c) => self.pos += 1,
                Some(_) => break,
                None => return Err(PErr::Incomplete),
            }
        }
        if self.pos == start {
            return bad(format!("expected {what}"));
        }
        Ok(&self.b[start..self.pos])
    }

    fn atom(&mut self) -> R<&'a str> {
        let a = self.take_while(is_atom_char, "an atom")?;
        Ok(std::str::from_utf8(a).expect("atom chars are ASCII"))
    }

    /// A keyword made of letters, digits, `.`, `-` and `=`, upper-cased.
    fn word(&mut self) -> R<String> {
        let w = self.take_while(
            |c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'=' | b'_'),
            "a keyword",
        )?;
        Ok(String::from_utf8_lossy(w).to_ascii_uppercase())
    }

    fn keyword(&mut self, kw: &str) -> R<()> {
        let w = self.word()?;
        if w == kw {
            Ok(())
        } else {
            bad(format!("expected {kw}"))
        }
    }

    fn number64(&mut self) -> R<u64> {
        let d = self.take_while(|c| c.is_ascii_digit(), "a number")?;
        let mut n: u64 = 0;
        for &c in d {
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(c - b'0')))
                .filter(|&n| n <= i64::MAX as u64)
                .ok_or_else(|| PErr::Bad("number too large".into()))?;
        }
        Ok(n)
    }

    fn number(&mut self) -> R<u32> {
        let n = self.number64()?;
        u32::try_from(n).or_else(|_| bad("number too large"))
    }

    fn nz_number(&mut self) -> R<u32> {
        match self.number()? {
            0 => bad("zero is not allowed here"),
            n => Ok(n),
        }
    }

    fn quoted(&mut self) -> R<Vec<u8>> {
        self.byte(b'"', "a quoted string")?;
        let mut out = Vec::new();
        loop {
            let c = self.peek()?;
            self.pos += 1;
            match c {
                b'"' => return Ok(out),
                b'\\' => {
                    let e = self.peek()?;
                    if e != b'"' && e != b'\\' {
                        return bad("bad escape in quoted string");
                    }
                    self.pos += 1;
                    out.push(e);
                }
                b'\r' | b'\n' | 0 => return bad("CR, LF or NUL in quoted string"),
                _ => {
                    if out.len() >= self.opts.limits.max_line {
                        return bad("quoted string too long");
                    }
                    out.push(c)
                }
            }
        }
    }

    /// `{N}` / `{N+}` / `~{N}` and its CRLF; returns (size, binary, sync).
    fn literal_header(&mut self, binary_ok: bool) -> R<(u64, bool, bool)> {
        let binary = self.peek()? == b'~';
        if binary {
            if !binary_ok {
                return bad("literal8 not allowed here");
            }
            self.pos += 1;
        }
        self.byte(b'{', "a literal")?;
        let size = self.number64()?;
        let sync = if self.peek()? == b'+' {
            self.pos += 1;
            false
        } else {
            true
        };
        self.byte(b'}', "}")?;
        match self.peek()? {
            b'\r' if self.peek_at(1)? == b'\n' => self.pos += 2,
            b'\n' => self.pos += 1,
            _ => return bad("expected CRLF after literal"),
        }
        Ok((size, binary, sync))
    }

    fn literal_bytes(&mut self, size: u64) -> R<&'a [u8]> {
        let left = (self.b.len() - self.pos) as u64;
        if left < size {
            return Err(PErr::Incomplete);
        }
        let start = self.pos;
        self.pos += size as usize;
        Ok(&self.b[start..self.pos])
    }

    fn literal(&mut self) -> R<Vec<u8>> {
        let (size, _, _) = self.literal_header(false)?;
        let data = self.literal_bytes(size)?;
        if data.contains(&0) {
            return bad("NUL in literal");
        }
        Ok(data.to_vec())
    }

    fn string(&mut self) -> R<Vec<u8>> {
        match self.peek()? {
            b'"' => self.quoted(),
            b'{' => self.literal(),
            _ => bad("expected a string"),
        }
    }

    fn astring(&mut self) -> R<Vec<u8>> {
        match self.peek()? {
            b'"' | b'{' => self.string(),
            _ => Ok(self.take_while(is_astring_char, "a string")?.to_vec()),
        }
    }

    fn astring_utf8(&mut self) -> R<String> {
        String::from_utf8(self.astring()?).or_else(|_| bad("string is not UTF-8"))
    }

    fn is_nil(&self) -> bool {
        self.b.len() >= self.pos + 3
            && self.b[self.pos..self.pos + 3].eq_ignore_ascii_case(b"NIL")
            && self.b.get(self.pos + 3).is_some_and(|&c| !is_atom_char(c))
    }

    fn nstring_utf8(&mut self) -> R<Option<String>> {
        if self.is_nil() {
            self.pos += 3;
            return Ok(None);
        }
        let s = self.string()?;
        Ok(Some(
            String::from_utf8(s).or_else(|_| bad("string is not UTF-8"))?,
        ))
    }

    fn name(&self, raw: Vec<u8>) -> R<String> {
        if self.opts.utf8 {
            match String::from_utf8(raw) {
                Ok(s) if !s.contains(|c: char| c.is_control()) => Ok(s),
                _ => bad("mailbox name is not valid UTF-8"),
            }
        } else {
            mutf7::decode(&raw)
                .ok_or_else(|| PErr::Bad("mailbox name is not modified UTF-7".into()))
        }
    }

    fn mailbox(&mut self) -> R<Mailbox> {
        let raw = self.astring()?;
        Ok(Mailbox::new(self.name(raw)?))
    }

    fn list_mailbox(&mut self) -> R<String> {
        let raw = match self.peek()? {
            b'"' | b'{' => self.string()?,
            _ => self.take_while(is_list_char, "a mailbox pattern")?.to_vec(),
        };
        self.name(raw)
    }

    fn seq_number(&mut self) -> R<SeqNum> {
        if self.peek()? == b'*' {
            self.pos += 1;
            return Ok(SeqNum::Star);
        }
        Ok(SeqNum::Value(self.nz_number()?))
    }

    fn sequence_set(&mut self) -> R<SequenceSet> {
        if self.peek()? == b'$' {
            self.pos += 1;
            return Ok(SequenceSet::Saved);
        }
        let mut ranges = Vec::new();
        loop {
            self.ranges += 1;
            if self.ranges > self.opts.limits.max_ranges {
                return Err(PErr::TooManyRanges);
            }
            let a = self.seq_number()?;
            let b = if self.peek()? == b':' {
                self.pos += 1;
                self.seq_number()?
            } else {
                a
            };
            ranges.push((a, b));
            if self.peek()? != b',' {
                return Ok(SequenceSet::Ranges(ranges));
            }
            self.pos += 1;
        }
    }

    fn month(&mut self) -> R<u8> {
        let m = self.take_while(|c| c.is_ascii_alphabetic(), "a month")?;
        MONTHS
            .iter()
            .position(|n| n.as_bytes().eq_ignore_ascii_case(m))
            .map(|i| i as u8 + 1)
            .ok_or_else(|| PErr::Bad("bad month".into()))
    }

    fn digits(&mut self, min: usize, max: usize) -> R<u32> {
        let start = self.pos;
        let d = self.take_while(|c| c.is_ascii_digit(), "digits")?;
        if d.len() < min || d.len() > max {
            self.pos = start;
            return bad("bad number of digits");
        }
        Ok(d.iter().fold(0, |n, &c| n * 10 + u32::from(c - b'0')))
    }

    fn date_text(&mut self) -> R<Date> {
        let day = self.digits(1, 2)?;
        self.byte(b'-', "-")?;
        let month = self.month()?;
        self.byte(b'-', "-")?;
        let year = self.digits(4, 4)?;
        if !(1..=31).contains(&day) {
            return bad("bad day");
        }
        Ok(Date {
            year: year as u16,
            month,
            day: day as u8,
        })
    }

    fn date(&mut self) -> R<Date> {
        if self.peek()? == b'"' {
            self.pos += 1;
            let d = self.date_text()?;
            self.byte(b'"', "\"")?;
            Ok(d)
        } else {
            self.date_text()
        }
    }

    fn date_time(&mut self) -> R<DateTime> {
        self.byte(b'"', "a date-time")?;
        if self.peek()? == b' ' {
            self.pos += 1;
        }
        let date = self.date_text()?;
        self.sp()?;
        let hour = self.digits(2, 2)?;
        self.byte(b':', ":")?;
        let minute = self.digits(2, 2)?;
        self.byte(b':', ":")?;
        let second = self.digits(2, 2)?;
        self.sp()?;
        let sign = match self.peek()? {
            b'+' => 1,
            b'-' => -1,
            _ => return bad("expected a zone"),
        };
        self.pos += 1;
        let zone = self.digits(4, 4)?;
        self.byte(b'"', "\"")?;
        if hour > 23 || minute > 59 || second > 60 || zone / 100 > 23 || zone % 100 > 59 {
            return bad("bad time");
        }
        Ok(DateTime {
            date,
            hour: hour as u8,
            minute: minute as u8,
            second: second as u8,
            zone: sign * (zone / 100 * 60 + zone % 100) as i16,
        })
    }

    fn flag(&mut self) -> R<Flag> {
        if self.peek()? == b'\\' {
            self.pos += 1;
            let name = self.atom()?;
            Ok(Flag::from_system(name))
        } else {
            Ok(Flag::Keyword(self.atom()?.to_string()))
        }
    }

    fn flag_list(&mut self) -> R<Vec<Flag>> {
        self.open()?;
        let mut flags = Vec::new();
        if self.peek()? != b')' {
            loop {
                flags.push(self.flag()?);
                if self.peek()? != b' ' {
                    break;
                }
                self.pos += 1;
            }
        }
        self.close()?;
        Ok(flags)
    }

    /// A parenthesised, space-separated list of at least one item.
    fn paren_list<T>(&mut self, mut item: impl FnMut(&mut Self) -> R<T>) -> R<Vec<T>> {
        self.open()?;
        let mut out = vec![item(self)?];
        while self.peek()? == b' ' {
            self.pos += 1;
            out.push(item(self)?);
        }
        self.close()?;
        Ok(out)
    }

    /// Like [`Self::paren_list`] but `()` is allowed.
    fn paren_list0<T>(&mut self, item: impl FnMut(&mut Self) -> R<T>) -> R<Vec<T>> {
        if self.peek()? == b'(' && self.peek_at(1)? == b')' {
            self.enter()?;
            self.leave();
            self.pos += 2;
            return Ok(Vec::new());
        }
        self.paren_list(item)
    }

    fn tag(&mut self) -> R<String> {
        let t = self.take_while(is_tag_char, "a tag")?;
        Ok(String::from_utf8_lossy(t).into_owned())
    }

    /// The whole command, through its CRLF.
    pub fn command(&mut self) -> R<TaggedCommand> {
        let tag = self.tag()?;
        self.sp()?;
        let verb = self.take_while(|c| c.is_ascii_alphanumeric() || c == b'-', "a command")?;
        let verb = String::from_utf8_lossy(verb).to_ascii_uppercase();
        let command = match verb.as_str() {
            "UID" => {
                self.sp()?;
                let v = self.word()?;
                self.uid_command(&v, true)?
            }
            _ => self.plain_command(&verb)?,
        };
        self.crlf()?;
        Ok(TaggedCommand { tag, command })
    }

    fn uid_command(&mut self, verb: &str, uid: bool) -> R<Command> {
        Ok(match verb {
            "FETCH" => self.fetch(uid)?,
            "SEARCH" => self.search(uid)?,
            "STORE" => self.store(uid)?,
            "COPY" | "MOVE" => {
                self.sp()?;
                let set = self.sequence_set()?;
                self.sp()?;
                let mailbox = self.mailbox()?;
                if verb == "COPY" {
                    Command::Copy { uid, set, mailbox }
                } else {
                    Command::Move { uid, set, mailbox }
                }
            }
            "SORT" => self.sort(uid)?,
            "THREAD" => self.thread(uid)?,
            "EXPUNGE" if uid => {
                self.sp()?;
                Command::UidExpunge(self.sequence_set()?)
            }
            _ if uid => return Err(PErr::Unknown(format!("UID {verb}"))),
            _ => return Err(PErr::Unknown(verb.to_string())),
        })
    }

    fn plain_command(&mut self, verb: &str) -> R<Command> {
        Ok(match verb {
            "CAPABILITY" => Command::Capability,
            "NOOP" => Command::Noop,
            "LOGOUT" => Command::Logout,
            "STARTTLS" => Command::StartTls,
            "NAMESPACE" => Command::Namespace,
            "IDLE" => Command::Idle,
            "CHECK" => Command::Check,
            "CLOSE" => Command::Close,
            "UNSELECT" => Command::Unselect,
            "EXPUNGE" => Command::Expunge,
            "UNAUTHENTICATE" => Command::Unauthenticate,
            "AUTHENTICATE" => {
                self.sp()?;
                let mechanism = self.atom()?.to_ascii_uppercase();
                let initial = if self.at_sp()? {
                    self.sp()?;
                    if self.peek()? == b'=' {
                        self.pos += 1;
                        Some(Secret(Vec::new()))
                    } else {
                        let text = self.take_while(is_base64_char, "base64")?;
                        Some(Secret(
                            base64_decode(text).ok_or_else(|| PErr::Bad("bad base64".into()))?,
                        ))
                    }
                } else {
                    None
                };
                Command::Authenticate { mechanism, initial }
            }
            "LOGIN" => {
                self.sp()?;
                let username = self.astring_utf8()?;
                self.sp()?;
                let password = Secret(self.astring()?);
                Command::Login { username, password }
            }
            "ENABLE" => {
                let mut caps = Vec::new();
                while self.at_sp()? || caps.is_empty() {
                    self.sp()?;
                    caps.push(self.atom()?.to_string());
                }
                Command::Enable(caps)
            }
            "SELECT" | "EXAMINE" => {
                self.sp()?;
                let mailbox = self.mailbox()?;
                let params = self.select_params()?;
                if verb == "SELECT" {
                    Command::Select { mailbox, params }
                } else {
                    Command::Examine { mailbox, params }
                }
            }
            "CREATE" => {
                self.sp()?;
                let mailbox = self.mailbox()?;
                let mut special_use = Vec::new();
                if self.at_sp()? {
                    self.sp()?;
                    self.open()?;
                    self.keyword("USE")?;
                    self.sp()?;
                    special_use = self.paren_list(|p| {
                        p.byte(b'\\', "a special-use attribute")?;
                        Ok(p.atom()?.to_string())
                    })?;
                    self.close()?;
                }
                Command::Create {
                    mailbox,
                    special_use,
                }
            }
            "DELETE" | "SUBSCRIBE" | "UNSUBSCRIBE" | "GETQUOTAROOT" => {
                self.sp()?;
                let m = self.mailbox()?;
                match verb {
                    "DELETE" => Command::Delete(m),
                    "SUBSCRIBE" => Command::Subscribe(m),
                    "UNSUBSCRIBE" => Command::Unsubscribe(m),
                    _ => Command::GetQuotaRoot(m),
                }
            }
            "RENAME" => {
                self.sp()?;
                let from = self.mailbox()?;
                self.sp()?;
                let to = self.mailbox()?;
                Command::Rename { from, to }
            }
            "LIST" => self.list()?,
            "LSUB" => {
                self.sp()?;
                let raw = self.astring()?;
                let reference = self.name(raw)?;
                self.sp()?;
                let pattern = self.list_mailbox()?;
                Command::Lsub { reference, pattern }
            }
            "STATUS" => {
                self.sp()?;
                let mailbox = self.mailbox()?;
                self.sp()?;
                let items = self.status_items()?;
                Command::Status { mailbox, items }
            }
            "APPEND" => self.append()?,
            "GETQUOTA" => {
                self.sp()?;
                Command::GetQuota(self.astring_utf8()?)
            }
            "SETQUOTA" => {
                self.sp()?;
                let root = self.astring_utf8()?;
                self.sp()?;
                let limits = self.paren_list0(|p| {
                    let name = p.atom()?.to_ascii_uppercase();
                    p.sp()?;
                    Ok((name, p.number64()?))
                })?;
                Command::SetQuota { root, limits }
            }
            "ID" => {
                self.sp()?;
                if self.is_nil() {
                    self.pos += 3;
                    Command::Id(None)
                } else {
                    let pairs = self.paren_list0(|p| {
                        let k = String::from_utf8(p.string()?).or_else(|_| bad("not UTF-8"))?;
                        p.sp()?;
                        Ok((k, p.nstring_utf8()?))
                    })?;
                    if pairs.len() > 30 {
                        return bad("ID takes at most 30 fields");
                    }
                    Command::Id(Some(pairs))
                }
            }
            "COMPRESS" => {
                self.sp()?;
                Command::Compress(self.atom()?.to_ascii_uppercase())
            }
            v => self.uid_command(v, false)?,
        })
    }

    fn select_params(&mut self) -> R<SelectParams> {
        let mut params = SelectParams::default();
        if !self.at_sp()? {
            return Ok(params);
        }
        self.sp()?;
        let mut seen = false;
        self.paren_list(|p| {
            match p.word()?.as_str() {
                "CONDSTORE" => p_set(&mut params.condstore)?,
                "QRESYNC" if !seen => {
                    seen = true;
                    p.sp()?;
                    p.open()?;
                    let uid_validity = p.nz_number()?;
                    p.sp()?;
                    let mod_seq = p.number64()?;
                    let mut q = QResync {
                        uid_validity,
                        mod_seq,
                        known_uids: None,
                        seq_match: None,
                    };
                    if p.at_sp()? {
                        p.sp()?;
                        if p.peek()? != b'(' {
                            q.known_uids = Some(p.sequence_set()?);
                            if p.at_sp()? {
                                p.sp()?;
                            }
                        }
                        if p.peek()? == b'(' {
                            p.open()?;
                            let seqs = p.sequence_set()?;
                            p.sp()?;
                            let uids = p.sequence_set()?;
                            p.close()?;
                            q.seq_match = Some((seqs, uids));
                        }
                    }
                    p.close()?;
                    params.qresync = Some(q);
                }
                w => return bad(format!("unknown SELECT parameter {w}")),
            }
            Ok(())
        })?;
        Ok(params)
    }

    fn status_items(&mut self) -> R<Vec<StatusItem>> {
        self.paren_list(|p| {
            let w = p.word()?;
            StatusItem::parse(&w).ok_or_else(|| PErr::Bad(format!("unknown status item {w}")))
        })
    }

    fn list(&mut self) -> R<Command> {
        let mut list = List::default();
        self.sp()?;
        if self.peek()? == b'(' {
            list.select = self.paren_list0(|p| {
                Ok(match p.word()?.as_str() {
                    "SUBSCRIBED" => ListSelect::Subscribed,
                    "REMOTE" => ListSelect::Remote,
                    "RECURSIVEMATCH" => ListSelect::RecursiveMatch,
                    "SPECIAL-USE" => ListSelect::SpecialUse,
                    w => return bad(format!("unknown LIST selection option {w}")),
                })
            })?;
            if list.select == [ListSelect::RecursiveMatch] {
                return bad("RECURSIVEMATCH needs another selection option");
            }
            self.sp()?;
        }
        let raw = self.astring()?;
        list.reference = self.name(raw)?;
        self.sp()?;
        if self.peek()? == b'(' {
            list.patterns = self.paren_list(Self::list_mailbox)?;
        } else {
            list.patterns = vec![self.list_mailbox()?];
        }
        if self.at_sp()? {
            self.sp()?;
            self.keyword("RETURN")?;
            self.sp()?;
            list.returns = self.paren_list0(|p| {
                Ok(match p.word()?.as_str() {
                    "SUBSCRIBED" => ListReturn::Subscribed,
                    "CHILDREN" => ListReturn::Children,
                    "SPECIAL-USE" => ListReturn::SpecialUse,
                    "STATUS" => {
                        p.sp()?;
                        ListReturn::Status(p.status_items()?)
                    }
                    w => return bad(format!("unknown LIST return option {w}")),
                })
            })?;
        }
        Ok(Command::List(list))
    }

    /// `[SP flag-list] [SP date-time] SP literal`, the part of an APPEND before each message.
    fn append_head(&mut self, mailbox: Option<Mailbox>) -> R<AppendHead> {
        self.sp()?;
        let mut flags = Vec::new();
        let mut date = None;
        if self.peek()? == b'(' {
            flags = self.flag_list()?;
            self.sp()?;
        }
        if self.peek()? == b'"' {
            date = Some(self.date_time()?);
            self.sp()?;
        }
        let (size, binary, sync) = self.literal_header(true)?;
        Ok(AppendHead {
            mailbox,
            flags,
            date,
            size,
            binary,
            sync,
            end: self.pos,
        })
    }

    fn append(&mut self) -> R<Command> {
        self.sp()?;
        let mailbox = self.mailbox()?;
        let mut messages = Vec::new();
        loop {
            let head = self.append_head(Some(mailbox.clone()))?;
            if self.opts.stream_append {
                return Err(PErr::StreamAppend(Box::new(head)));
            }
            let data = self.literal_bytes(head.size)?;
            if !head.binary && data.contains(&0) {
                return bad("NUL in a message literal (use ~{N})");
            }
            messages.push(AppendMessage {
                flags: head.flags,
                date: head.date,
                binary: head.binary,
                data: data.to_vec(),
            });
            if !self.at_sp()? {
                break;
            }
        }
        Ok(Command::Append { mailbox, messages })
    }

    /// After a streamed APPEND message: either the command's CRLF (`Ok(None)`) or the next
    /// message's head.
    pub fn append_more(&mut self) -> R<Option<AppendHead>> {
        if self.peek()? != b' ' {
            self.crlf()?;
            return Ok(None);
        }
        self.append_head(None).map(Some)
    }

    fn search_return(&mut self) -> R<Option<Vec<SearchReturn>>> {
        if !(self.peek()? == b' ' && self.rest_starts_with(1, b"RETURN ")) {
            return Ok(None);
        }
        self.sp()?;
        self.keyword("RETURN")?;
        self.sp()?;
        let opts = self.paren_list0(|p| {
            Ok(match p.word()?.as_str() {
                "MIN" => SearchReturn::Min,
                "MAX" => SearchReturn::Max,
                "ALL" => SearchReturn::All,
                "COUNT" => SearchReturn::Count,
                "SAVE" => SearchReturn::Save,
                w => return bad(format!("unknown RETURN option {w}")),
            })
        })?;
        Ok(Some(opts))
    }

    /// Whether the bytes `k` past the position start with `s`, case-insensitively. False (not
    /// incomplete) when fewer bytes are there: callers then parse and meet the end themselves.
    fn rest_starts_with(&self, k: usize, s: &[u8]) -> bool {
        self.b
            .get(self.pos + k..self.pos + k + s.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(s))
    }

    fn charset(&mut self) -> R<String> {
        let raw = match self.peek()? {
            b'"' => self.quoted()?,
            _ => self.atom()?.as_bytes().to_vec(),
        };
        String::from_utf8(raw).or_else(|_| bad("bad charset"))
    }

    /// `1*(SP search-key)`, one key or an `And` of several.
    fn search_keys(&mut self) -> R<SearchKey> {
        let mut keys = Vec::new();
        while keys.is_empty() || self.at_sp()? {
            self.sp()?;
            keys.push(self.search_key()?);
        }
        Ok(if keys.len() == 1 {
            keys.pop().expect("one key")
        } else {
            SearchKey::And(keys)
        })
    }

    fn search(&mut self, uid: bool) -> R<Command> {
        let ret = self.search_return()?;
        let mut charset = None;
        if self.peek()? == b' ' && self.rest_starts_with(1, b"CHARSET ") {
            self.sp()?;
            self.keyword("CHARSET")?;
            self.sp()?;
            charset = Some(self.charset()?);
        }
        let criteria = self.search_keys()?;
        Ok(Command::Search {
            uid,
            ret,
            charset,
            criteria,
        })
    }

    fn search_key(&mut self) -> R<SearchKey> {
        let c = self.peek()?;
        if c == b'(' {
            self.open()?;
            let mut keys = vec![self.search_key()?];
            while self.at_sp()? {
                self.sp()?;
                keys.push(self.search_key()?);
            }
            self.close()?;
            return Ok(SearchKey::And(keys));
        }
        if c.is_ascii_digit() || c == b'*' || c == b'$' {
            return Ok(SearchKey::SequenceSet(self.sequence_set()?));
        }
        let w = self.word()?;
        use SearchKey as K;
        Ok(match w.as_str() {
            "ALL" => K::All,
            "ANSWERED" => K::Answered,
            "DELETED" => K::Deleted,
            "DRAFT" => K::Draft,
            "FLAGGED" => K::Flagged,
            "NEW" => K::New,
            "OLD" => K::Old,
            "RECENT" => K::Recent,
            "SEEN" => K::Seen,
            "UNANSWERED" => K::Unanswered,
            "UNDELETED" => K::Undeleted,
            "UNDRAFT" => K::Undraft,
            "UNFLAGGED" => K::Unflagged,
            "UNSEEN" => K::Unseen,
            "SAVEDATESUPPORTED" => K::SaveDateSupported,
            "BCC" | "BODY" | "CC" | "FROM" | "SUBJECT" | "TEXT" | "TO" => {
                self.sp()?;
                let s = self.astring()?;
                match w.as_str() {
                    "BCC" => K::Bcc(s),
                    "BODY" => K::Body(s),
                    "CC" => K::Cc(s),
                    "FROM" => K::From(s),
                    "SUBJECT" => K::Subject(s),
                    "TEXT" => K::Text(s),
                    _ => K::To(s),
                }
            }
            "BEFORE" | "ON" | "SINCE" | "SENTBEFORE" | "SENTON" | "SENTSINCE" | "SAVEDBEFORE"
            | "SAVEDON" | "SAVEDSINCE" => {
                self.sp()?;
                let d = self.date()?;
                match w.as_str() {
                    "BEFORE" => K::Before(d),
                    "ON" => K::On(d),
                    "SINCE" => K::Since(d),
                    "SENTBEFORE" => K::SentBefore(d),
                    "SENTON" => K::SentOn(d),
                    "SENTSINCE" => K::SentSince(d),
                    "SAVEDBEFORE" => K::SavedBefore(d),
                    "SAVEDON" => K::SavedOn(d),
                    _ => K::SavedSince(d),
                }
            }
            "KEYWORD" | "UNKEYWORD" => {
                self.sp()?;
                let k = self.atom()?.to_string();
                if w == "KEYWORD" {
                    K::Keyword(k)
                } else {
                    K::Unkeyword(k)
                }
            }
            "HEADER" => {
                self.sp()?;
                let name = self.astring_utf8()?;
                self.sp()?;
                K::Header(name, self.astring()?)
            }
            "LARGER" | "SMALLER" => {
                self.sp()?;
                let n = self.number64()?;
                if w == "LARGER" {
                    K::Larger(n)
                } else {
                    K::Smaller(n)
                }
            }
            "NOT" => {
                self.sp()?;
                self.enter()?;
                let k = self.search_key()?;
                self.leave();
                K::Not(Box::new(k))
            }
            "OR" => {
                self.sp()?;
                self.enter()?;
                let a = self.search_key()?;
                self.sp()?;
                let b = self.search_key()?;
                self.leave();
                K::Or(Box::new(a), Box::new(b))
            }
            "UID" => {
                self.sp()?;
                K::Uid(self.sequence_set()?)
            }
            "MODSEQ" => {
                self.sp()?;
                let mut entry = None;
                if self.peek()? == b'"' {
                    let name =
                        String::from_utf8(self.quoted()?).or_else(|_| bad("bad entry name"))?;
                    self.sp()?;
                    let t = match self.word()?.as_str() {
                        "PRIV" => EntryType::Private,
                        "SHARED" => EntryType::Shared,
                        "ALL" => EntryType::All,
                        _ => return bad("expected priv, shared or all"),
                    };
                    self.sp()?;
                    entry = Some((name, t));
                }
                K::ModSeq {
                    entry,
                    mod_seq: self.number64()?,
                }
            }
            "OLDER" | "YOUNGER" => {
                self.sp()?;
                let n = self.nz_number()?;
                if w == "OLDER" {
                    K::Older(n)
                } else {
                    K::Younger(n)
                }
            }
            "EMAILID" | "THREADID" => {
                self.sp()?;
                let id = self.object_id()?;
                if w == "EMAILID" {
                    K::EmailId(id)
                } else {
                    K::ThreadId(id)
                }
            }
            _ => return bad(format!("unknown search key {w}")),
        })
    }

    fn object_id(&mut self) -> R<String> {
        let id = self.take_while(
            |c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_',
            "an object id",
        )?;
        if id.len() > 255 {
            return bad("object id too long");
        }
        Ok(String::from_utf8_lossy(id).into_owned())
    }

    fn fetch(&mut self, uid: bool) -> R<Command> {
        self.sp()?;
        let set = self.sequence_set()?;
        self.sp()?;
        let items = if self.peek()? == b'(' {
            FetchItems::Attrs(self.paren_list(Self::fetch_attr)?)
        } else {
            let start = self.pos;
            match self.word()?.as_str() {
                "ALL" => FetchItems::All,
                "FAST" => FetchItems::Fast,
                "FULL" => FetchItems::Full,
                _ => {
                    self.pos = start;
                    FetchItems::Attrs(vec![self.fetch_attr()?])
                }
            }
        };
        let mut changed_since = None;
        let mut vanished = false;
        if self.at_sp()? {
            self.sp()?;
            self.paren_list(|p| {
                match p.word()?.as_str() {
                    "CHANGEDSINCE" if changed_since.is_none() => {
                        p.sp()?;
                        changed_since = Some(p.number64()?);
                    }
                    "VANISHED" if uid && !vanished => vanished = true,
                    w => return bad(format!("unexpected FETCH modifier {w}")),
                }
                Ok(())
            })?;
            if vanished && changed_since.is_none() {
                return bad("VANISHED needs CHANGEDSINCE");
            }
        }
        Ok(Command::Fetch {
            uid,
            set,
            items,
            changed_since,
            vanished,
        })
    }

    fn part(&mut self) -> R<Vec<u32>> {
        let mut part = vec![self.nz_number()?];
        while self.peek()? == b'.' && self.peek_at(1)?.is_ascii_digit() {
            self.pos += 1;
            part.push(self.nz_number()?);
            if part.len() > 64 {
                return bad("section part too deep");
            }
        }
        Ok(part)
    }

    fn section(&mut self) -> R<Section> {
        self.byte(b'[', "[")?;
        let mut s = Section::default();
        if self.peek()? == b']' {
            self.pos += 1;
            return Ok(s);
        }
        if self.peek()?.is_ascii_digit() {
            s.part = self.part()?;
            if self.peek()? == b'.' {
                self.pos += 1;
            } else {
                self.byte(b']', "]")?;
                return Ok(s);
            }
        }
        let w = self.take_while(|c| c.is_ascii_alphabetic() || c == b'.', "a section")?;
        let text = match w.to_ascii_uppercase().as_slice() {
            b"HEADER" => SectionText::Header,
            b"TEXT" => SectionText::Text,
            b"MIME" if !s.part.is_empty() => SectionText::Mime,
            b"HEADER.FIELDS" | b"HEADER.FIELDS.NOT" => {
                let not = w.len() > 13;
                self.sp()?;
                let fields = self.paren_list(|p| {
                    let f = p.astring()?;
                    String::from_utf8(f).or_else(|_| bad("bad header field name"))
                })?;
                if not {
                    SectionText::HeaderFieldsNot(fields)
                } else {
                    SectionText::HeaderFields(fields)
                }
            }
            _ => return bad("bad section"),
        };
        s.text = Some(text);
        self.byte(b']', "]")?;
        Ok(s)
    }

    fn partial(&mut self) -> R<Option<(u32, u32)>> {
        if self.peek()? != b'<' {
            return Ok(None);
        }
        self.pos += 1;
        let offset = self.number()?;
        self.byte(b'.', ".")?;
        let len = self.nz_number()?;
        self.byte(b'>', ">")?;
        Ok(Some((offset, len)))
    }

    fn binary_part(&mut self) -> R<Vec<u32>> {
        self.byte(b'[', "[")?;
        let part = if self.peek()? == b']' {
            Vec::new()
        } else {
            self.part()?
        };
        self.byte(b']', "]")?;
        Ok(part)
    }

    fn fetch_attr(&mut self) -> R<FetchAttr> {
        let w = self.take_while(|c| c.is_ascii_alphanumeric() || c == b'.', "a fetch item")?;
        let w = w.to_ascii_uppercase();
        let bracket = self.peek()? == b'[';
        use FetchAttr as A;
        Ok(match (w.as_slice(), bracket) {
            (b"ENVELOPE", false) => A::Envelope,
            (b"FLAGS", false) => A::Flags,
            (b"INTERNALDATE", false) => A::InternalDate,
            (b"RFC822", false) => A::Rfc822,
            (b"RFC822.HEADER", false) => A::Rfc822Header,
            (b"RFC822.SIZE", false) => A::Rfc822Size,
            (b"RFC822.TEXT", false) => A::Rfc822Text,
            (b"BODY", false) => A::Body,
            (b"BODYSTRUCTURE", false) => A::BodyStructure,
            (b"UID", false) => A::Uid,
            (b"MODSEQ", false) => A::ModSeq,
            (b"EMAILID", false) => A::EmailId,
            (b"THREADID", false) => A::ThreadId,
            (b"SAVEDATE", false) => A::SaveDate,
            (b"PREVIEW", false) => {
                let lazy = self.peek()? == b' ' && self.rest_starts_with(1, b"(LAZY");
                if lazy {
                    self.sp()?;
                    self.paren_list(|p| p.keyword("LAZY"))?;
                }
                A::Preview { lazy }
            }
            (b"BODY" | b"BODY.PEEK", true) => {
                let section = self.section()?;
                A::BodySection {
                    peek: w.len() > 4,
                    section,
                    partial: self.partial()?,
                }
            }
            (b"BINARY" | b"BINARY.PEEK", true) => {
                let part = self.binary_part()?;
                A::Binary {
                    peek: w.len() > 6,
                    part,
                    partial: self.partial()?,
                }
            }
            (b"BINARY.SIZE", true) => A::BinarySize(self.binary_part()?),
            _ => {
                return bad(format!(
                    "unknown fetch item {}",
                    String::from_utf8_lossy(&w)
                ));
            }
        })
    }

    fn store(&mut self, uid: bool) -> R<Command> {
        self.sp()?;
        let set = self.sequence_set()?;
        self.sp()?;
        let mut unchanged_since = None;
        if self.peek()? == b'(' {
            self.open()?;
            self.keyword("UNCHANGEDSINCE")?;
            self.sp()?;
            unchanged_since = Some(self.number64()?);
            self.close()?;
            self.sp()?;
        }
        let mode = match self.peek()? {
            b'+' => {
                self.pos += 1;
                StoreMode::Add
            }
            b'-' => {
                self.pos += 1;
                StoreMode::Remove
            }
            _ => StoreMode::Replace,
        };
        let silent = match self.word()?.as_str() {
            "FLAGS" => false,
            "FLAGS.SILENT" => true,
            _ => return bad("expected FLAGS or FLAGS.SILENT"),
        };
        self.sp()?;
        let flags = if self.peek()? == b'(' {
            self.flag_list()?
        } else {
            let mut flags = vec![self.flag()?];
            while self.at_sp()? {
                self.sp()?;
                flags.push(self.flag()?);
            }
            flags
        };
        Ok(Command::Store {
            uid,
            set,
            unchanged_since,
            mode,
            silent,
            flags,
        })
    }

    fn sort(&mut self, uid: bool) -> R<Command> {
        let ret = self.search_return()?;
        self.sp()?;
        let mut reverse = false;
        let mut criteria = Vec::new();
        self.open()?;
        loop {
            let w = self.word()?;
            let key = match w.as_str() {
                "REVERSE" if !reverse => {
                    reverse = true;
                    self.sp()?;
                    continue;
                }
                "ARRIVAL" => SortKey::Arrival,
                "CC" => SortKey::Cc,
                "DATE" => SortKey::Date,
                "FROM" => SortKey::From,
                "SIZE" => SortKey::Size,
                "SUBJECT" => SortKey::Subject,
                "TO" => SortKey::To,
                "DISPLAYFROM" => SortKey::DisplayFrom,
                "DISPLAYTO" => SortKey::DisplayTo,
                _ => return bad(format!("unknown sort key {w}")),
            };
            criteria.push(SortCriterion { reverse, key });
            reverse = false;
            if !self.at_sp()? {
                break;
            }
            self.sp()?;
        }
        self.close()?;
        self.sp()?;
        let charset = self.charset()?;
        let search = self.search_keys()?;
        Ok(Command::Sort {
            uid,
            ret,
            criteria,
            charset,
            search,
        })
    }

    fn thread(&mut self, uid: bool) -> R<Command> {
        self.sp()?;
        let algorithm = match self.word()?.as_str() {
            "ORDEREDSUBJECT" => ThreadAlgorithm::OrderedSubject,
            "REFERENCES" => ThreadAlgorithm::References,
            w => return bad(format!("unknown thread algorithm {w}")),
        };
        self.sp()?;
        let charset = self.charset()?;
        let search = self.search_keys()?;
        Ok(Command::Thread {
            uid,
            algorithm,
            charset,
            search,
        })
    }
}

fn p_set(b: &mut bool) -> R<()> {
    if *b {
        return bad("parameter given twice");
    }
    *b = true;
    Ok(())
}

pub(crate) fn is_base64_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'+' || c == b'/' || c == b'='
}

/// Standard base64 with padding; `None` if malformed.
pub fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let chunks = text.len() / 4;
    for (i, chunk) in text.chunks(4).enumerate() {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && i + 1 != chunks) {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = (n << 6) | val(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

/// Standard base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let mut n = 0u32;
        for (i, &b) in chunk.iter().enumerate() {
            n |= u32::from(b) << (16 - 8 * i);
        }
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
