//! The writer under every response: atoms, numbers, quoted strings, literals, lists.

use super::EncodeOptions;
use crate::mutf7;
use crate::parse::is_astring_char;
use crate::types::{Flag, Mailbox};

pub(super) struct W<'a> {
    pub(super) out: &'a mut Vec<u8>,
    pub(super) opts: EncodeOptions,
}

/// Longest string sent quoted; longer ones go as literals.
const MAX_QUOTED: usize = 1024;

impl W<'_> {
    pub(super) fn s(&mut self, s: &str) {
        self.out.extend_from_slice(s.as_bytes());
    }

    pub(super) fn num(&mut self, n: impl std::fmt::Display) {
        self.s(&n.to_string());
    }

    /// Text of a response line: CR, LF and NUL become spaces.
    pub(super) fn text(&mut self, t: &str) {
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

    pub(super) fn literal(&mut self, b: &[u8]) {
        if b.contains(&0) {
            self.s("~");
        }
        self.s(&format!("{{{}}}\r\n", b.len()));
        self.out.extend_from_slice(b);
    }

    pub(super) fn string(&mut self, b: &[u8]) {
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

    pub(super) fn nstring(&mut self, b: Option<&[u8]>) {
        match b {
            Some(b) => self.string(b),
            None => self.s("NIL"),
        }
    }

    pub(super) fn nstr(&mut self, b: Option<&str>) {
        self.nstring(b.map(str::as_bytes));
    }

    pub(super) fn astring(&mut self, b: &[u8]) {
        if !b.is_empty() && b.iter().all(|&c| is_astring_char(c)) && !b.eq_ignore_ascii_case(b"NIL")
        {
            self.out.extend_from_slice(b);
        } else {
            self.string(b);
        }
    }

    pub(super) fn mailbox(&mut self, m: &Mailbox) {
        let name = match m {
            Mailbox::Inbox => "INBOX".to_string(),
            Mailbox::Other(s) if self.opts.utf8 => s.clone(),
            Mailbox::Other(s) => mutf7::encode(s),
        };
        self.astring(name.as_bytes());
    }

    pub(super) fn delimiter(&mut self, d: Option<char>) {
        match d {
            Some(c) => {
                let mut buf = [0; 4];
                self.string(c.encode_utf8(&mut buf).as_bytes());
            }
            None => self.s("NIL"),
        }
    }

    /// The items separated by spaces.
    pub(super) fn spaced<T>(&mut self, items: &[T], mut f: impl FnMut(&mut Self, &T)) {
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.s(" ");
            }
            f(self, item);
        }
    }

    pub(super) fn list<T>(&mut self, items: &[T], f: impl FnMut(&mut Self, &T)) {
        self.s("(");
        self.spaced(items, f);
        self.s(")");
    }

    /// `NIL` when there are no items, else each item in parentheses, all of them in
    /// parentheses without spaces: `((...)(...))`, as ENVELOPE's addresses and NAMESPACE's
    /// namespaces.
    pub(super) fn nil_or_groups<T>(&mut self, items: &[T], mut f: impl FnMut(&mut Self, &T)) {
        if items.is_empty() {
            return self.s("NIL");
        }
        self.s("(");
        for item in items {
            self.s("(");
            f(self, item);
            self.s(")");
        }
        self.s(")");
    }

    pub(super) fn flags(&mut self, flags: &[Flag]) {
        self.list(flags, |w, f| w.s(&f.as_wire()));
    }

    pub(super) fn atoms(&mut self, atoms: &[String]) {
        for a in atoms {
            self.s(" ");
            self.s(a);
        }
    }

    pub(super) fn ids(&mut self, ids: &[u32]) {
        for id in ids {
            self.s(" ");
            self.num(id);
        }
    }

    pub(super) fn params(&mut self, params: &[(String, String)]) {
        if params.is_empty() {
            return self.s("NIL");
        }
        self.list(params, |w, (k, v)| {
            w.string(k.as_bytes());
            w.s(" ");
            w.string(v.as_bytes());
        });
    }
}
