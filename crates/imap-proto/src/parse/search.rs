//! SEARCH, SORT and THREAD: search keys, charsets, RETURN options, sort keys.

use super::{Parser, R, bad};
use crate::command::*;

impl Parser<'_> {
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

    pub(super) fn search(&mut self, uid: bool) -> R<Command> {
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
    pub(super) fn sort(&mut self, uid: bool) -> R<Command> {
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

    pub(super) fn thread(&mut self, uid: bool) -> R<Command> {
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
