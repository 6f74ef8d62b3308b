//! mailfleet IMAP protocol, sans-IO: a decoder for client commands and an encoder for server
//! responses. No sockets, no async, no store, no allocation without a bound.
//!
//! # What it parses
//!
//! Client commands of IMAP4rev2 ([RFC 9051]) and IMAP4rev1 ([RFC 3501]), tag and all:
//! CAPABILITY, NOOP, LOGOUT, STARTTLS, AUTHENTICATE (SASL-IR initial response, RFC 4959),
//! LOGIN, ENABLE, SELECT/EXAMINE (CONDSTORE, QRESYNC parameters, RFC 7162), CREATE (USE,
//! RFC 6154), DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST (LIST-EXTENDED selection and
//! return options, RFC 5258; RETURN (STATUS ...), RFC 5819; SPECIAL-USE), LSUB, NAMESPACE,
//! STATUS (SIZE, HIGHESTMODSEQ, APPENDLIMIT, MAILBOXID, RECENT), APPEND (MULTIAPPEND, flags,
//! date, `~{N}` BINARY literals), IDLE, CHECK, CLOSE, UNSELECT, EXPUNGE, UID EXPUNGE,
//! (UID) SEARCH (every search key of both RFCs, MODSEQ, OLDER/YOUNGER, EMAILID/THREADID,
//! SAVEDBEFORE/ON/SINCE, CHARSET, `RETURN (MIN MAX ALL COUNT SAVE)`, `$`), (UID) FETCH (every
//! attribute: `BODY[section]<partial>`, BODY.PEEK, `BINARY[.PEEK]`, BINARY.SIZE,
//! HEADER.FIELDS[.NOT], MIME, PREVIEW [(LAZY)], EMAILID, THREADID, SAVEDATE, MODSEQ; the
//! CHANGEDSINCE and VANISHED modifiers), (UID) STORE (UNCHANGEDSINCE), (UID) COPY,
//! (UID) MOVE, (UID) SORT (SORT=DISPLAY keys, ESORT `RETURN`), (UID) THREAD (REFERENCES,
//! ORDEREDSUBJECT), GETQUOTA, GETQUOTAROOT, SETQUOTA, ID, COMPRESS, UNAUTHENTICATE.
//!
//! Sequence sets take `*`, ranges in either order and `$`. Mailbox names are modified UTF-7
//! (decoded to UTF-8) unless [`Options::utf8`] says the client enabled IMAP4rev2 or
//! UTF8=ACCEPT; `INBOX` in any case is [`Mailbox::Inbox`]. Strings are atoms, quoted strings
//! (`\"` and `\\` escapes) or literals: `{N}` (synchronizing), `{N+}` (LITERAL+/LITERAL-,
//! RFC 7888) and, for APPEND, `~{N}`. Lines end in CRLF; a bare LF is tolerated.
//!
//! # The decoder
//!
//! [`Decoder::decode`] takes the bytes received so far and returns a [`Decoded`]:
//! a command and the bytes it took; [`Decoded::Incomplete`]; [`Decoded::LiteralAnnounced`] when
//! a synchronizing literal is announced and none of it has arrived (the command up to there has
//! been checked, so the session may send `+` or refuse before the client sends anything);
//! [`Decoded::AppendMessage`] when an APPEND message literal is announced, so that the session
//! reads the message as a stream (to the spool) and then resumes decoding the rest of the
//! command ([`Decoded::AppendEnd`] or the next message of a MULTIAPPEND). A refused command is a
//! [`DecodeError`]: its tag when one could be read, an [`ErrorKind`] with the tagged status and
//! code to answer ([`ErrorKind::response`]), and how many bytes to drop (to the end of the
//! line; plus a non-synchronizing literal's bytes in `discard`). Every outcome is the same
//! whether the bytes arrive at once or one by one. Outside commands, [`decode_idle_done`] reads
//! IDLE's `DONE` and [`decode_auth_line`] an AUTHENTICATE response (base64, or `*` to cancel).
//!
//! Not parsed (an unknown command, `BAD`): CATENATE, ACL, METADATA, NOTIFY, SEARCH's
//! PARTIAL/FUZZY, MULTISEARCH, LIST's MYRIGHTS return option.
//!
//! # Bounds
//!
//! [`Limits`], given by the caller, with their defaults: a line outside literals at most 64 KiB;
//! a literal at most 64 KiB (an APPEND message: `max_append`, 50 MiB, RFC 7889 APPENDLIMIT);
//! a whole buffered command at most 1 MiB; 64 literals; nesting of parentheses and of
//! NOT/OR at most 32 deep; 10,000 sequence ranges in a command; non-synchronizing literals at
//! most 4096 bytes (LITERAL-). A size is checked when the literal is announced, before any of
//! it is buffered: `{4294967296}` is refused at once. A line is searched for its end only once
//! however it trickles in.
//!
//! # Responses
//!
//! [`Response::encode`] writes tagged and untagged responses and continuation requests into a
//! `Vec<u8>`: every response code of RFC 9051 and those of UIDPLUS (APPENDUID, COPYUID,
//! UIDNOTSTICKY), CONDSTORE/QRESYNC (HIGHESTMODSEQ, NOMODSEQ, MODIFIED, CLOSED), QUOTA
//! (OVERQUOTA), RFC 5530 and OBJECTID; untagged CAPABILITY, ENABLED, FLAGS, EXISTS, RECENT,
//! EXPUNGE, VANISHED [(EARLIER)], FETCH (envelope, body structure, sections, binary), LIST/LSUB
//! (attributes, CHILDINFO, OLDNAME), STATUS, ESEARCH, SEARCH, SORT, THREAD, NAMESPACE, ID,
//! QUOTA and QUOTAROOT. Strings go as atoms, quoted strings or literals as their bytes require
//! (CR, LF, NUL, 8-bit without UTF-8 enabled); message data always as a literal, `~{N}` when it
//! holds NUL.
//!
//! [`TaggedCommand::encode`] writes a command back (atoms, quoted strings or synchronizing
//! literals); what the decoder produced, it reads back equal, which the tests and the fuzz
//! target check.
//!
//! [RFC 9051]: https://www.rfc-editor.org/rfc/rfc9051
//! [RFC 3501]: https://www.rfc-editor.org/rfc/rfc3501

mod command;
mod decoder;
mod encode_command;
mod limits;
pub mod mutf7;
mod parse;
mod response;
mod types;

pub use command::{
    AppendMessage, Command, EntryType, FetchAttr, FetchItems, List, ListReturn, ListSelect,
    QResync, SearchKey, SearchReturn, SelectParams, SortCriterion, SortKey, StoreMode,
    TaggedCommand, ThreadAlgorithm,
};
pub use decoder::{
    AppendHeader, AuthLine, DecodeError, Decoded, Decoder, ErrorKind, decode_auth_line,
    decode_command, decode_idle_done, read_line, skip_line,
};
pub use limits::{LITERAL_MINUS_MAX, Limits, Options};
pub use parse::{base64_decode, base64_encode};
pub use response::{
    Address, BodyStructure, Code, Data, EncodeOptions, Envelope, EsearchData, FetchData, ListData,
    MultiExt, NamespaceDesc, Response, SingleExt, SingleKind, Status, StatusValue, Thread,
};
pub use types::{
    Date, DateTime, Flag, Mailbox, Secret, Section, SectionText, SeqNum, SequenceSet, StatusItem,
};
