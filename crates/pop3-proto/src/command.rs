//! POP3 commands (RFC 1939, RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 AUTH).

/// Longest command line accepted, CRLF included. RFC 2449 §4 allows 255 octets; an AUTH line
/// with an initial response (RFC 5034) for a long password may pass that, so a little more is
/// allowed before the line is refused.
pub const MAX_COMMAND_LINE: usize = 1024;

/// A message number as the client wrote it (1-based, never 0).
pub type MessageNumber = u32;

/// One client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Capa,
    User(String),
    /// The rest of the line after `PASS `: passwords may hold spaces.
    Pass(String),
    /// `AUTH` alone lists the mechanisms (a common extension); with a mechanism, an optional
    /// initial response (`=` for an empty one).
    Auth {
        mechanism: Option<String>,
        initial: Option<String>,
    },
    Stls,
    Stat,
    List(Option<MessageNumber>),
    Retr(MessageNumber),
    Dele(MessageNumber),
    Noop,
    Rset,
    Quit,
    Top(MessageNumber, u32),
    Uidl(Option<MessageNumber>),
    /// `UTF8` (RFC 6856).
    Utf8,
}

impl Command {
    /// The command's keyword, for logs.
    pub fn keyword(&self) -> &'static str {
        match self {
            Command::Capa => "CAPA",
            Command::User(_) => "USER",
            Command::Pass(_) => "PASS",
            Command::Auth { .. } => "AUTH",
            Command::Stls => "STLS",
            Command::Stat => "STAT",
            Command::List(_) => "LIST",
            Command::Retr(_) => "RETR",
            Command::Dele(_) => "DELE",
            Command::Noop => "NOOP",
            Command::Rset => "RSET",
            Command::Quit => "QUIT",
            Command::Top(..) => "TOP",
            Command::Uidl(_) => "UIDL",
            Command::Utf8 => "UTF8",
        }
    }
}

/// The outcome of parsing: a whole command and the bytes it used, or not enough bytes yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<T> {
    Complete(T, usize),
    Incomplete,
}

/// What was wrong with a command line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandErrorKind {
    #[error("line too long")]
    LineTooLong,
    #[error("unknown command")]
    Unknown,
    #[error("{0}")]
    Syntax(&'static str),
}

/// A refused command line: why, and how many bytes of the input to drop. When the line's end
/// was not among them (`line_complete` false: a line over [`MAX_COMMAND_LINE`]), the caller
/// drops the rest of the line as it arrives ([`skip_line`]) before answering.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct CommandError {
    pub kind: CommandErrorKind,
    pub consumed: usize,
    pub line_complete: bool,
}

/// While dropping an over-long line: the bytes to drop, and whether its end (LF) was among them.
pub fn skip_line(buf: &[u8]) -> (usize, bool) {
    match buf.iter().position(|&b| b == b'\n') {
        Some(i) => (i + 1, true),
        None => (buf.len(), false),
    }
}

/// One line ending in LF within `max` bytes, without its CRLF or LF, and the bytes it used.
/// `Err(consumed)` when `max` bytes hold no LF.
pub fn parse_line(buf: &[u8], max: usize) -> Result<Parsed<&[u8]>, usize> {
    let window = &buf[..buf.len().min(max)];
    match window.iter().position(|&b| b == b'\n') {
        Some(i) => {
            let line = &buf[..i];
            Ok(Parsed::Complete(
                line.strip_suffix(b"\r").unwrap_or(line),
                i + 1,
            ))
        }
        None if buf.len() >= max => Err(window.len()),
        None => Ok(Parsed::Incomplete),
    }
}

fn number(s: &str) -> Result<u32, CommandErrorKind> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CommandErrorKind::Syntax("expected a number"));
    }
    s.parse::<u32>()
        .map_err(|_| CommandErrorKind::Syntax("number too large"))
}

fn message_number(s: &str) -> Result<MessageNumber, CommandErrorKind> {
    match number(s)? {
        0 => Err(CommandErrorKind::Syntax("message numbers start at 1")),
        n => Ok(n),
    }
}

/// Parses one command from the start of `buf`.
pub fn parse_command(buf: &[u8]) -> Result<Parsed<Command>, CommandError> {
    let (line, consumed) = match parse_line(buf, MAX_COMMAND_LINE) {
        Ok(Parsed::Complete(line, n)) => (line, n),
        Ok(Parsed::Incomplete) => return Ok(Parsed::Incomplete),
        Err(n) => {
            return Err(CommandError {
                kind: CommandErrorKind::LineTooLong,
                consumed: n,
                line_complete: false,
            });
        }
    };
    let err = |kind| CommandError {
        kind,
        consumed,
        line_complete: true,
    };
    let line = std::str::from_utf8(line)
        .map_err(|_| err(CommandErrorKind::Syntax("command is not UTF-8")))?;
    if line.bytes().any(|b| b == b'\r' || b == 0) {
        return Err(err(CommandErrorKind::Syntax(
            "control character in command",
        )));
    }
    let (keyword, rest) = match line.split_once(' ') {
        Some((k, r)) => (k, Some(r)),
        None => (line, None),
    };
    let args: Vec<&str> = rest.map(|r| r.split(' ').collect()).unwrap_or_default();
    let none = |cmd: Command| {
        if rest.is_some() {
            Err(CommandErrorKind::Syntax("this command takes no argument"))
        } else {
            Ok(cmd)
        }
    };
    let one_text = |args: &[&str]| match args {
        [a] if !a.is_empty() => Ok(a.to_string()),
        _ => Err(CommandErrorKind::Syntax("expected one argument")),
    };
    let cmd = match keyword.to_ascii_uppercase().as_str() {
        "CAPA" => none(Command::Capa),
        "STLS" => none(Command::Stls),
        "STAT" => none(Command::Stat),
        "NOOP" => none(Command::Noop),
        "RSET" => none(Command::Rset),
        "QUIT" => none(Command::Quit),
        "UTF8" => none(Command::Utf8),
        "USER" => one_text(&args).map(Command::User),
        "PASS" => match rest {
            Some(p) if !p.is_empty() => Ok(Command::Pass(p.to_string())),
            _ => Err(CommandErrorKind::Syntax("expected a password")),
        },
        "AUTH" => match args.as_slice() {
            [] => Ok(Command::Auth {
                mechanism: None,
                initial: None,
            }),
            [m] if !m.is_empty() => Ok(Command::Auth {
                mechanism: Some(m.to_ascii_uppercase()),
                initial: None,
            }),
            [m, i] if !m.is_empty() && !i.is_empty() => Ok(Command::Auth {
                mechanism: Some(m.to_ascii_uppercase()),
                initial: Some(i.to_string()),
            }),
            _ => Err(CommandErrorKind::Syntax(
                "expected AUTH mechanism [initial-response]",
            )),
        },
        "LIST" | "UIDL" => {
            let n = match args.as_slice() {
                [] => Ok(None),
                [n] => message_number(n).map(Some),
                _ => Err(CommandErrorKind::Syntax(
                    "expected at most one message number",
                )),
            };
            n.map(|n| {
                if keyword.eq_ignore_ascii_case("LIST") {
                    Command::List(n)
                } else {
                    Command::Uidl(n)
                }
            })
        }
        "RETR" | "DELE" => match args.as_slice() {
            [n] => message_number(n).map(|n| {
                if keyword.eq_ignore_ascii_case("RETR") {
                    Command::Retr(n)
                } else {
                    Command::Dele(n)
                }
            }),
            _ => Err(CommandErrorKind::Syntax("expected a message number")),
        },
        "TOP" => match args.as_slice() {
            [n, lines] => message_number(n).and_then(|n| number(lines).map(|l| Command::Top(n, l))),
            _ => Err(CommandErrorKind::Syntax("expected TOP msg lines")),
        },
        _ => Err(CommandErrorKind::Unknown),
    };
    cmd.map(|c| Parsed::Complete(c, consumed)).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> Command {
        match parse_command(line.as_bytes()) {
            Ok(Parsed::Complete(c, n)) => {
                assert_eq!(n, line.len(), "{line:?}");
                c
            }
            other => panic!("{line:?}: {other:?}"),
        }
    }

    fn bad(line: &str) -> CommandErrorKind {
        match parse_command(line.as_bytes()) {
            Err(e) => {
                assert_eq!(e.consumed, line.len());
                assert!(e.line_complete);
                e.kind
            }
            other => panic!("{line:?}: {other:?}"),
        }
    }

    #[test]
    fn commands() {
        assert_eq!(ok("CAPA\r\n"), Command::Capa);
        assert_eq!(ok("capa\n"), Command::Capa);
        assert_eq!(
            ok("USER alice@example.test\r\n"),
            Command::User("alice@example.test".into())
        );
        assert_eq!(
            ok("PASS correct horse \r\n"),
            Command::Pass("correct horse ".into())
        );
        assert_eq!(
            ok("AUTH PLAIN AGFsaWNlAHB3\r\n"),
            Command::Auth {
                mechanism: Some("PLAIN".into()),
                initial: Some("AGFsaWNlAHB3".into())
            }
        );
        assert_eq!(
            ok("auth plain\r\n"),
            Command::Auth {
                mechanism: Some("PLAIN".into()),
                initial: None
            }
        );
        assert_eq!(
            ok("AUTH\r\n"),
            Command::Auth {
                mechanism: None,
                initial: None
            }
        );
        assert_eq!(ok("STLS\r\n"), Command::Stls);
        assert_eq!(ok("STAT\r\n"), Command::Stat);
        assert_eq!(ok("LIST\r\n"), Command::List(None));
        assert_eq!(ok("LIST 7\r\n"), Command::List(Some(7)));
        assert_eq!(ok("UIDL 4294967295\r\n"), Command::Uidl(Some(u32::MAX)));
        assert_eq!(ok("RETR 1\r\n"), Command::Retr(1));
        assert_eq!(ok("DELE 2\r\n"), Command::Dele(2));
        assert_eq!(ok("TOP 3 0\r\n"), Command::Top(3, 0));
        assert_eq!(ok("NOOP\r\n"), Command::Noop);
        assert_eq!(ok("RSET\r\n"), Command::Rset);
        assert_eq!(ok("QUIT\r\n"), Command::Quit);
        assert_eq!(ok("UTF8\r\n"), Command::Utf8);
    }

    #[test]
    fn refusals() {
        assert_eq!(bad("XYZZY\r\n"), CommandErrorKind::Unknown);
        assert_eq!(bad("APOP alice 1234\r\n"), CommandErrorKind::Unknown);
        for line in [
            "RETR 0\r\n",
            "RETR\r\n",
            "RETR -1\r\n",
            "RETR 4294967296\r\n",
            "RETR 1 2\r\n",
            "TOP 1\r\n",
            "TOP 1 x\r\n",
            "LIST 1 2\r\n",
            "STAT 1\r\n",
            "QUIT now\r\n",
            "USER\r\n",
            "USER a b\r\n",
            "PASS\r\n",
            "PASS \r\n",
            "AUTH PLAIN a b\r\n",
            "RETR +1\r\n",
            "LIST  1\r\n",
            "NOOP\r\r\n",
        ] {
            assert!(matches!(bad(line), CommandErrorKind::Syntax(_)), "{line:?}");
        }
        assert!(matches!(
            bad("USER \u{0}x\r\n"),
            CommandErrorKind::Syntax(_)
        ));
        let mut not_utf8 = b"USER ".to_vec();
        not_utf8.extend_from_slice(&[0xff, b'\r', b'\n']);
        assert!(parse_command(&not_utf8).is_err());
    }

    #[test]
    fn partial_and_over_long_lines() {
        assert_eq!(parse_command(b""), Ok(Parsed::Incomplete));
        assert_eq!(parse_command(b"RETR 1\r"), Ok(Parsed::Incomplete));
        // Two pipelined commands: the first is taken alone.
        assert_eq!(
            parse_command(b"STAT\r\nQUIT\r\n"),
            Ok(Parsed::Complete(Command::Stat, 6))
        );
        let long = vec![b'a'; MAX_COMMAND_LINE + 10];
        let e = parse_command(&long).unwrap_err();
        assert_eq!(e.kind, CommandErrorKind::LineTooLong);
        assert_eq!(e.consumed, MAX_COMMAND_LINE);
        assert!(!e.line_complete);
        assert_eq!(skip_line(b"aaa\r\nNOOP\r\n"), (5, true));
        assert_eq!(skip_line(b"aaa"), (3, false));
    }
}
