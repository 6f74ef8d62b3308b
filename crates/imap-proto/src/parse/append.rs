//! APPEND: each message's flags, date and literal, buffered or streamed.

use super::{PErr, Parser, R, bad};
use crate::command::*;
use crate::types::*;

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

impl Parser<'_> {
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

    pub(super) fn append(&mut self) -> R<Command> {
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
}
