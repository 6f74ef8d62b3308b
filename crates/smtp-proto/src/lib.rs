//! mailfleet SMTP protocol, sans-IO: command parser, replies (encoder and client-side parser)
//! and message body decoding. No sockets, no async, no allocation without a bound.
//!
//! # Commands (server side)
//!
//! [`parse_command`] takes the bytes received so far and returns
//! [`Parsed::Complete`] with the command and how many bytes it used, [`Parsed::Incomplete`] when
//! no full line is there yet, or a [`CommandError`] that carries both the reply class the server
//! should give (`500`, `501`, `555`) and how many bytes to drop. A line longer than
//! [`MAX_COMMAND_LINE`] is an error as soon as that many bytes are buffered without a line end;
//! the caller then discards up to the next LF ([`skip_line`]). Commands end in CRLF; a bare LF
//! is tolerated as a line end, a bare CR inside a command is a syntax error.
//!
//! `MAIL FROM` and `RCPT TO` paths are parsed to the RFC 5321 grammar (with RFC 6531 UTF-8):
//! a source route (`<@a,@b:user@c>`) is accepted and dropped, but [`Path::had_route`] says it was
//! there; a quoted local part keeps its quotes so that policy can see it; a domain with a trailing
//! dot, an empty label or a bad character is a syntax error (`501 5.1.3`), so relay tricks never
//! reach policy in a disguised form. `<Postmaster>` without a domain is its own value.
//! The DSN ([RFC 3461]), SIZE, BODY and SMTPUTF8 parameters are parsed; an unknown parameter is
//! an error with code 555.
//!
//! # Replies
//!
//! [`Reply`] is a code, an optional enhanced status code ([RFC 3463]) and one or more text lines;
//! [`Reply::encode`] writes the multi-line form. [`parse_reply`] is the client's side (used by
//! the outbound queue): it reads one complete reply, multi-line or not, splits off the enhanced
//! code when the first line carries one, and bounds the number and length of lines.
//!
//! # Message bodies
//!
//! [`DataDecoder`] consumes the bytes after `DATA`: it removes dot-stuffing, stops at the
//! `CRLF.CRLF` terminator (and only there), counts the size against a limit without buffering
//! past it, and notes any bare CR or LF — a message that has one is refused by the server, which
//! closes the "SMTP smuggling" hole where a different end-of-data reading between two servers
//! lets a client hide a second message inside the first. [`BareLineEndings`] does the same check
//! over `BDAT` chunks, which carry the message unchanged.
//!
//! [RFC 3461]: https://www.rfc-editor.org/rfc/rfc3461
//! [RFC 3463]: https://www.rfc-editor.org/rfc/rfc3463

mod body;
mod command;
mod path;
mod reply;

pub use body::{BareLineEndings, DataDecoder, DataProgress, dot_stuff};
pub use command::{
    BodyType, Command, CommandError, CommandErrorKind, MAX_COMMAND_LINE, MailParams, Parsed,
    RcptParams, Ret, parse_command, parse_line, skip_line,
};
pub use path::{Domain, Mailbox, Path, ReversePath, parse_forward_path, parse_reverse_path};
pub use reply::{EnhancedStatus, MAX_REPLY_LINE, MAX_REPLY_LINES, Reply, ReplyError, parse_reply};
