//! The caller's bounds on what the decoder accepts.

/// RFC 7888 LITERAL-: the largest non-synchronizing literal a server must accept.
pub const LITERAL_MINUS_MAX: u64 = 4096;

/// Bounds on one command. Every one is checked before anything it bounds is buffered or
/// allocated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest line outside literals, CRLF included.
    pub max_line: usize,
    /// Largest literal other than an APPEND message (a mailbox name, a search string, a
    /// password).
    pub max_literal: u64,
    /// Largest APPEND message (APPENDLIMIT, RFC 7889), when APPEND is streamed.
    pub max_append: u64,
    /// Largest whole command the decoder buffers: lines and literals together (a streamed APPEND
    /// message does not count).
    pub max_command: usize,
    /// Deepest nesting of parentheses and of `NOT`/`OR` search keys.
    pub max_depth: u32,
    /// Most ranges in all the sequence sets of one command.
    pub max_ranges: usize,
    /// Most literals in one command. Each synchronizing literal costs a parse of the command
    /// so far (to check that a literal may stand there), so this also bounds the work per
    /// command.
    pub max_literals: usize,
    /// Largest non-synchronizing literal (`{N+}`): [`LITERAL_MINUS_MAX`] for LITERAL-,
    /// larger for LITERAL+.
    pub max_non_sync: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_line: 64 * 1024,
            max_literal: 64 * 1024,
            max_append: 50 * 1024 * 1024,
            max_command: 1024 * 1024,
            max_depth: 32,
            max_ranges: 10_000,
            max_literals: 64,
            max_non_sync: LITERAL_MINUS_MAX,
        }
    }
}

/// What the session has negotiated, and how APPEND is delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub limits: Limits,
    /// Mailbox names are UTF-8 (IMAP4rev2 or UTF8=ACCEPT enabled); otherwise they are modified
    /// UTF-7 and decoded.
    pub utf8: bool,
    /// APPEND messages are handed to the session as [`crate::Decoded::AppendMessage`] events and
    /// read by it, instead of being buffered into [`crate::Command::Append`].
    pub stream_append: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            limits: Limits::default(),
            utf8: false,
            stream_append: true,
        }
    }
}
