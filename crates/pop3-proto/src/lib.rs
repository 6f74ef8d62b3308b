//! mailfleet POP3, sans-IO: the command parser, status lines, multi-line responses and
//! dot-stuffing of messages. No sockets, no async, no allocation without a bound.
//!
//! # Commands
//!
//! [`parse_command`] takes the bytes received so far and returns [`Parsed::Complete`] with the
//! command and the bytes it used, [`Parsed::Incomplete`] when no whole line is there yet, or a
//! [`CommandError`] saying why (`-ERR` for the client) and how many bytes to drop. A line with
//! no end within [`MAX_COMMAND_LINE`] bytes is refused as soon as that many are buffered; the
//! caller drops the rest of it as it arrives ([`skip_line`]) and answers once, when it ends.
//! Keywords are case-insensitive; message numbers start at 1 and fit in 32 bits; `PASS` takes
//! the rest of its line (passwords may hold spaces). APOP is not offered: it needs the
//! plaintext password on the server, and mailfleet keeps only argon2id hashes.
//!
//! # Responses
//!
//! [`ok`], [`err`] (with an optional [`RespCode`]: `[IN-USE]`, `[AUTH]`, `[SYS/TEMP]`, ...),
//! [`continuation`] for SASL, [`lines`] for CAPA/LIST/UIDL listings, and [`DotStuffer`], which
//! writes a message of any size in pieces as a multi-line body. [`top`] picks what `TOP` sends.
//! Status text never carries a CR or LF, so no client-supplied text can end a line early.

mod command;
mod response;

pub use command::{
    Command, CommandError, CommandErrorKind, MAX_COMMAND_LINE, MessageNumber, Parsed,
    parse_command, parse_line, skip_line,
};
pub use response::{DotStuffer, RespCode, continuation, err, lines, ok, top};
