//! Recursive-descent parser over the bytes of one command. Running out of bytes is
//! [`PErr::Incomplete`], never a syntax error, so the decoder can parse a prefix to check that a
//! literal is announced where one may stand.
//!
//! This file holds the parser's state and the shared primitives (bytes, atoms, numbers,
//! strings and literals, mailbox names, sequence sets, flags, lists); each group of commands
//! is parsed in the file named for it.

mod append;
mod base64;
mod command;
mod date;
mod fetch;
mod mailbox;
mod search;

pub use self::base64::{base64_decode, base64_encode};
pub(crate) use append::AppendHead;

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
        // Atom characters are ASCII, so this always holds.
        std::str::from_utf8(a).or_else(|_| bad("an atom that is not ASCII"))
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
            // A name that is not valid modified UTF-7 (a stray `&`) is taken as written when
            // it is printable ASCII: no such mailbox can exist, so SELECT finds none (NO) and
            // a LIST pattern matches nothing, as clients expect; anything else is BAD.
            match mutf7::decode(&raw) {
                Some(s) => Ok(s),
                None if raw.iter().all(|c| (0x20..0x7f).contains(c)) => {
                    Ok(String::from_utf8_lossy(&raw).into_owned())
                }
                None => bad("mailbox name is not modified UTF-7"),
            }
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

    /// Whether the bytes `k` past the position start with `s`, case-insensitively. False (not
    /// incomplete) when fewer bytes are there: callers then parse and meet the end themselves.
    fn rest_starts_with(&self, k: usize, s: &[u8]) -> bool {
        self.b
            .get(self.pos + k..self.pos + k + s.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(s))
    }
}
