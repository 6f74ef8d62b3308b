//! Sans-IO framing of client commands: lines, literals, limits, and the events a session acts
//! on.

use crate::command::TaggedCommand;
use crate::limits::Options;
use crate::parse::{AppendHead, PErr, Parser, is_tag_char};
use crate::response::{Code, Status};
use crate::types::{DateTime, Flag, Mailbox};

/// What the bytes received so far amount to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A whole command and the bytes it took.
    Command(TaggedCommand, usize),
    /// More bytes are needed.
    Incomplete,
    /// The command so far is valid and announces a synchronizing literal of `size` bytes (its
    /// `{` or `~` at `offset`), none of which has arrived. The session answers `+ ...` and calls
    /// [`Decoder::decode`] again as bytes arrive, or refuses with a tagged `NO`/`BAD`, drops
    /// `line_end` bytes and calls [`Decoder::reset`].
    LiteralAnnounced {
        tag: String,
        offset: usize,
        line_end: usize,
        size: u64,
        binary: bool,
    },
    /// Stream mode: an APPEND message of `size` bytes follows the first `consumed` bytes (if
    /// `sync`, only once the session sends `+ ...`). The session drops `consumed` bytes, reads
    /// `size` bytes of message itself, then calls [`Decoder::decode`] on what follows, which
    /// gives either another `AppendMessage` (MULTIAPPEND) or [`Decoded::AppendEnd`].
    /// To refuse (`NO [TOOBIG]`, `NO [OVERQUOTA]`), answer, drop `consumed` bytes (and the
    /// `size` bytes too when `!sync`, as the client sends them anyway) and call
    /// [`Decoder::reset`].
    AppendMessage(AppendHeader, usize),
    /// The CRLF ending a streamed APPEND, and the bytes it took.
    AppendEnd { tag: String, consumed: usize },
}

/// One message of a streamed APPEND.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendHeader {
    pub tag: String,
    pub mailbox: Mailbox,
    pub flags: Vec<Flag>,
    pub date: Option<DateTime>,
    pub size: u64,
    /// `~{N}`: the message may hold NUL bytes (RFC 3516).
    pub binary: bool,
    /// `{N}`: the client waits for `+` before sending the message; `{N+}` it does not.
    pub sync: bool,
    /// 0 for the first message, 1 for the next of a MULTIAPPEND, ...
    pub index: usize,
}

/// Why a command is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    #[error("line too long")]
    LineTooLong,
    #[error("command too long")]
    CommandTooLarge,
    #[error("literal of {size} bytes is larger than {limit}")]
    LiteralTooLarge { size: u64, limit: u64 },
    #[error("APPEND message of {size} bytes is larger than {limit}")]
    MessageTooLarge { size: u64, limit: u64 },
    #[error("non-synchronizing literal larger than {limit} bytes")]
    NonSyncTooLarge { limit: u64 },
    #[error("too many literals")]
    TooManyLiterals,
    #[error("too deeply nested")]
    TooDeep,
    #[error("too many sequence ranges")]
    TooManyRanges,
    #[error("unknown command {0}")]
    Unknown(String),
    #[error("{0}")]
    Syntax(String),
}

impl ErrorKind {
    /// The tagged status and response code a server sends for it: `NO [TOOBIG]` for a message
    /// over APPENDLIMIT, `BAD` (with `[TOOBIG]` for size bounds, `[CLIENTBUG]` for a
    /// non-synchronizing literal over the limit) for the rest.
    pub fn response(&self) -> (Status, Option<Code>) {
        match self {
            ErrorKind::MessageTooLarge { .. } => (Status::No, Some(Code::TooBig)),
            ErrorKind::LineTooLong
            | ErrorKind::CommandTooLarge
            | ErrorKind::LiteralTooLarge { .. } => (Status::Bad, Some(Code::TooBig)),
            ErrorKind::NonSyncTooLarge { .. } => (Status::Bad, Some(Code::ClientBug)),
            _ => (Status::Bad, None),
        }
    }
}

/// A refused command. The session answers with [`ErrorKind::response`] (tagged when `tag` is
/// known, else untagged `* BAD`), drops `consumed` bytes, then — when `discard` is non-zero —
/// the next `discard` bytes too (a non-synchronizing literal the client sends anyway), or closes
/// the connection if that is too much. When `line_complete` is false the line's end has not
/// arrived yet: drop input up to and including the next LF ([`skip_line`]) before decoding again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct DecodeError {
    pub tag: Option<String>,
    pub kind: ErrorKind,
    pub consumed: usize,
    pub discard: u64,
    pub line_complete: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Command,
    /// Between the messages of a streamed APPEND.
    AppendNext {
        tag: String,
        mailbox: Mailbox,
        index: usize,
    },
}

/// Decodes client commands from a buffer the session owns. Between two outcomes that consume
/// bytes, call [`Decoder::decode`] with the same buffer grown at its end; after an outcome that
/// consumes, drop those bytes from the front. The decoder keeps only offsets into the current
/// command, so a command trickled in byte by byte is scanned once.
#[derive(Debug, Clone)]
pub struct Decoder {
    opts: Options,
    state: State,
    /// Where the line being scanned starts (past the last literal).
    line_start: usize,
    /// How far the current line has been searched for LF.
    searched: usize,
    /// Bytes of lines (outside literals) and literals so far.
    literals: usize,
}

/// The tag at the start of `buf`, if one can be read there.
fn read_tag(buf: &[u8]) -> Option<String> {
    let n = buf.iter().take_while(|&&c| is_tag_char(c)).count();
    if n == 0 || n > 256 || buf.get(n) != Some(&b' ') {
        return None;
    }
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Drops input up to and including the next LF: the bytes to drop and whether the LF was among
/// them.
pub fn skip_line(buf: &[u8]) -> (usize, bool) {
    match buf.iter().position(|&b| b == b'\n') {
        Some(i) => (i + 1, true),
        None => (buf.len(), false),
    }
}

/// A literal announced at the end of `line` (without its line end): `(offset of { or ~, size,
/// binary, sync)`. A size too large for u64 is `u64::MAX`.
fn announced(line: &[u8]) -> Option<(usize, u64, bool, bool)> {
    let body = line.strip_suffix(b"}")?;
    let (body, sync) = match body.strip_suffix(b"+") {
        Some(b) => (b, false),
        None => (body, true),
    };
    let digits = body.iter().rev().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let open = body.len().checked_sub(digits + 1)?;
    if body.get(open) != Some(&b'{') {
        return None;
    }
    let size = body[open + 1..].iter().fold(0u64, |n, &c| {
        n.saturating_mul(10).saturating_add(u64::from(c - b'0'))
    });
    let binary = open > 0 && body[open - 1] == b'~';
    Some((if binary { open - 1 } else { open }, size, binary, sync))
}

impl Decoder {
    pub fn new(opts: Options) -> Decoder {
        Decoder {
            opts,
            state: State::Command,
            line_start: 0,
            searched: 0,
            literals: 0,
        }
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Changes the options for the next command (after ENABLE UTF8=ACCEPT, say).
    pub fn set_options(&mut self, opts: Options) {
        self.opts = opts;
    }

    /// Forgets the command in progress: the session refused it and dropped its bytes.
    pub fn reset(&mut self) {
        self.state = State::Command;
        self.restart();
    }

    fn restart(&mut self) {
        self.line_start = 0;
        self.searched = 0;
        self.literals = 0;
    }

    fn fail(
        &mut self,
        buf: &[u8],
        kind: ErrorKind,
        consumed: usize,
        discard: u64,
        line_complete: bool,
    ) -> Result<Decoded, DecodeError> {
        // The tag only from the bytes the error consumes, so that it does not depend on how
        // much more has arrived.
        let tag = match &self.state {
            State::AppendNext { tag, .. } => Some(tag.clone()),
            State::Command => read_tag(&buf[..consumed.min(buf.len())]),
        };
        self.reset();
        Err(DecodeError {
            tag,
            kind,
            consumed,
            discard,
            line_complete,
        })
    }

    fn perr_kind(e: PErr) -> ErrorKind {
        match e {
            PErr::Bad(s) => ErrorKind::Syntax(s),
            PErr::Unknown(s) => ErrorKind::Unknown(s),
            PErr::TooDeep => ErrorKind::TooDeep,
            PErr::TooManyRanges => ErrorKind::TooManyRanges,
            PErr::Incomplete | PErr::StreamAppend(_) => {
                ErrorKind::Syntax("command ended early".into())
            }
        }
    }

    /// Decodes from the start of `buf`, which holds the current command (and perhaps more).
    pub fn decode(&mut self, buf: &[u8]) -> Result<Decoded, DecodeError> {
        let limits = &self.opts.limits;
        loop {
            if self.line_start > buf.len() {
                return Ok(Decoded::Incomplete);
            }
            let window_end = buf
                .len()
                .min(self.line_start.saturating_add(limits.max_line));
            let from = self.searched.max(self.line_start);
            let lf = buf[from..window_end].iter().position(|&c| c == b'\n');
            let Some(lf) = lf else {
                self.searched = window_end;
                let line_full = buf.len() - self.line_start >= limits.max_line;
                let command_full = buf.len() > limits.max_command;
                // When both bounds are passed, the one a byte-by-byte arrival passes first.
                let kind = match (line_full, command_full) {
                    (_, true) if !line_full || limits.max_command < window_end => {
                        ErrorKind::CommandTooLarge
                    }
                    (true, _) => ErrorKind::LineTooLong,
                    _ => return Ok(Decoded::Incomplete),
                };
                return self.fail(buf, kind, window_end, 0, false);
            };
            let line_end = from + lf + 1;
            if line_end > limits.max_command {
                return self.fail(buf, ErrorKind::CommandTooLarge, line_end, 0, true);
            }
            let line = &buf[self.line_start..line_end - 1];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some((offset, size, binary, sync)) = announced(line) else {
                return self.complete(buf, line_end);
            };
            let offset = self.line_start + offset;
            self.literals += 1;
            if self.literals > limits.max_literals {
                return self.fail(buf, ErrorKind::TooManyLiterals, line_end, 0, true);
            }
            let discard = if sync { 0 } else { size };
            if self.could_stream_append(buf) {
                match self.prefix(buf, line_end) {
                    Err(PErr::StreamAppend(head)) if head.end == line_end => {
                        return self.append_message(buf, *head, line_end);
                    }
                    Err(PErr::Incomplete) => {}
                    Err(e) => return self.fail(buf, Self::perr_kind(e), line_end, discard, true),
                    Ok(()) => {
                        let kind = ErrorKind::Syntax("literal after the end of a command".into());
                        return self.fail(buf, kind, line_end, discard, true);
                    }
                }
            }
            let limits = &self.opts.limits;
            if !sync && size > limits.max_non_sync {
                let limit = limits.max_non_sync;
                return self.fail(
                    buf,
                    ErrorKind::NonSyncTooLarge { limit },
                    line_end,
                    size,
                    true,
                );
            }
            if size > limits.max_literal {
                let limit = limits.max_literal;
                let kind = ErrorKind::LiteralTooLarge { size, limit };
                return self.fail(buf, kind, line_end, discard, true);
            }
            let next = line_end as u64 + size;
            if next > limits.max_command as u64 {
                return self.fail(buf, ErrorKind::CommandTooLarge, line_end, discard, true);
            }
            self.line_start = next as usize;
            self.searched = self.line_start;
            if sync {
                // Check that a literal may stand here, as the session must before it invites the
                // client to send one (also when the client sent it without waiting, so that the
                // outcome does not depend on how the bytes were split).
                match self.prefix(buf, line_end) {
                    Err(PErr::Incomplete) => {}
                    Err(e) => return self.fail(buf, Self::perr_kind(e), line_end, 0, true),
                    Ok(()) => {
                        let kind = ErrorKind::Syntax("literal after the end of a command".into());
                        return self.fail(buf, kind, line_end, 0, true);
                    }
                }
                if buf.len() == line_end {
                    return Ok(Decoded::LiteralAnnounced {
                        tag: read_tag(buf).unwrap_or_default(),
                        offset,
                        line_end,
                        size,
                        binary,
                    });
                }
            }
        }
    }

    /// Whether the literal just announced may be an APPEND message to stream.
    fn could_stream_append(&self, buf: &[u8]) -> bool {
        if !self.opts.stream_append {
            return false;
        }
        match self.state {
            State::AppendNext { .. } => true,
            State::Command => read_tag(buf).is_some_and(|t| {
                buf.get(t.len() + 1..t.len() + 8)
                    .is_some_and(|v| v.eq_ignore_ascii_case(b"APPEND "))
            }),
        }
    }

    /// Parses `buf[..end]`, which ends at a literal's announcement.
    fn prefix(&self, buf: &[u8], end: usize) -> Result<(), PErr> {
        let mut p = Parser::new(&buf[..end], &self.opts);
        match &self.state {
            State::Command => p.command().map(|_| ()),
            State::AppendNext { .. } => match p.append_more()? {
                Some(head) => Err(PErr::StreamAppend(Box::new(head))),
                None => Ok(()),
            },
        }
    }

    fn append_message(
        &mut self,
        buf: &[u8],
        head: AppendHead,
        consumed: usize,
    ) -> Result<Decoded, DecodeError> {
        let discard = if head.sync { 0 } else { head.size };
        let limit = self.opts.limits.max_append;
        if head.size > limit {
            let kind = ErrorKind::MessageTooLarge {
                size: head.size,
                limit,
            };
            return self.fail(buf, kind, consumed, discard, true);
        }
        if !head.sync && head.size > self.opts.limits.max_non_sync {
            let limit = self.opts.limits.max_non_sync;
            return self.fail(
                buf,
                ErrorKind::NonSyncTooLarge { limit },
                consumed,
                discard,
                true,
            );
        }
        let (tag, mailbox, index) = match &self.state {
            State::AppendNext {
                tag,
                mailbox,
                index,
            } => (tag.clone(), mailbox.clone(), index + 1),
            State::Command => {
                // The first message's head always names the mailbox; should it not, the
                // command is refused rather than the session brought down.
                let Some(mailbox) = head.mailbox.clone() else {
                    return self.fail(
                        buf,
                        ErrorKind::Syntax("APPEND without a mailbox".into()),
                        consumed,
                        discard,
                        true,
                    );
                };
                (read_tag(buf).unwrap_or_default(), mailbox, 0)
            }
        };
        self.state = State::AppendNext {
            tag: tag.clone(),
            mailbox: mailbox.clone(),
            index,
        };
        self.restart();
        Ok(Decoded::AppendMessage(
            AppendHeader {
                tag,
                mailbox,
                flags: head.flags,
                date: head.date,
                size: head.size,
                binary: head.binary,
                sync: head.sync,
                index,
            },
            consumed,
        ))
    }

    /// The command ends at `end` (its last line has no literal).
    fn complete(&mut self, buf: &[u8], end: usize) -> Result<Decoded, DecodeError> {
        let mut p = Parser::new(&buf[..end], &self.opts);
        let parsed = match &self.state {
            State::Command => p.command().map(Some),
            State::AppendNext { .. } => p.append_more().map(|_| None),
        };
        match parsed {
            Ok(_) if p.pos != end => self.fail(
                buf,
                ErrorKind::Syntax("junk after command".into()),
                end,
                0,
                true,
            ),
            Ok(Some(command)) => {
                self.reset();
                Ok(Decoded::Command(command, end))
            }
            Ok(None) => {
                let State::AppendNext { tag, .. } =
                    std::mem::replace(&mut self.state, State::Command)
                else {
                    unreachable!("append_more runs only between APPEND messages")
                };
                self.restart();
                Ok(Decoded::AppendEnd { tag, consumed: end })
            }
            Err(e) => self.fail(buf, Self::perr_kind(e), end, 0, true),
        }
    }
}

/// One line of an AUTHENTICATE exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthLine {
    /// The client's response, decoded from base64.
    Response(crate::types::Secret),
    /// `*`: the client cancels.
    Cancel,
}

/// A line a session reads outside commands (IDLE's `DONE`, AUTHENTICATE responses): the line
/// without its CRLF and the bytes it took, `Ok(None)` if incomplete, `Err(consumed)` if
/// `max_line` bytes hold no LF.
pub fn read_line(buf: &[u8], max_line: usize) -> Result<Option<(&[u8], usize)>, usize> {
    let window = &buf[..buf.len().min(max_line)];
    match window.iter().position(|&c| c == b'\n') {
        Some(i) => {
            let line = &buf[..i];
            Ok(Some((line.strip_suffix(b"\r").unwrap_or(line), i + 1)))
        }
        None if buf.len() >= max_line => Err(window.len()),
        None => Ok(None),
    }
}

/// During IDLE: `Ok(Some(consumed))` once `DONE` arrives, `Ok(None)` while incomplete, `Err` for
/// any other line (the session answers `BAD` and ends the IDLE).
pub fn decode_idle_done(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    let err = |consumed, line_complete| DecodeError {
        tag: None,
        kind: ErrorKind::Syntax("expected DONE".into()),
        consumed,
        discard: 0,
        line_complete,
    };
    match read_line(buf, 1024) {
        Ok(None) => Ok(None),
        Ok(Some((line, n))) if line.eq_ignore_ascii_case(b"DONE") => Ok(Some(n)),
        Ok(Some((_, n))) => Err(err(n, true)),
        Err(n) => Err(err(n, false)),
    }
}

/// During AUTHENTICATE: the client's next line, base64 or `*`.
pub fn decode_auth_line(
    buf: &[u8],
    max_line: usize,
) -> Result<Option<(AuthLine, usize)>, DecodeError> {
    let err = |text: &str, consumed, line_complete| DecodeError {
        tag: None,
        kind: ErrorKind::Syntax(text.into()),
        consumed,
        discard: 0,
        line_complete,
    };
    match read_line(buf, max_line) {
        Ok(None) => Ok(None),
        Ok(Some((b"*", n))) => Ok(Some((AuthLine::Cancel, n))),
        Ok(Some((line, n))) => match crate::parse::base64_decode(line) {
            Some(data) => Ok(Some((AuthLine::Response(crate::types::Secret(data)), n))),
            None => Err(err("bad base64", n, true)),
        },
        Err(n) => Err(err("line too long", n, false)),
    }
}

/// Decodes one whole command from `buf` with fresh state, buffering APPEND messages: for tests,
/// tools and fuzzing. A synchronizing literal whose bytes have not come is `Incomplete` here.
pub fn decode_command(buf: &[u8], opts: &Options) -> Result<Decoded, DecodeError> {
    let opts = Options {
        stream_append: false,
        ..opts.clone()
    };
    let mut d = Decoder::new(opts);
    match d.decode(buf)? {
        Decoded::LiteralAnnounced { .. } => Ok(Decoded::Incomplete),
        other => Ok(other),
    }
}
