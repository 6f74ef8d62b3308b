//! FETCH and STORE: fetch attributes, sections, partial ranges, modifiers, store modes.

use super::{Parser, R, bad};
use crate::command::*;
use crate::types::*;

impl Parser<'_> {
    pub(super) fn fetch(&mut self, uid: bool) -> R<Command> {
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

    pub(super) fn store(&mut self, uid: bool) -> R<Command> {
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
}
