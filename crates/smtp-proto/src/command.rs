//! SMTP commands (RFC 5321 §4.1 and the extensions mailfleet offers).

use crate::path::{Path, ReversePath, parse_forward_path, parse_reverse_path, valid_domain_name};

/// Longest command line accepted, CRLF included. RFC 5321 asks for 512; extensions (SMTPUTF8
/// addresses, DSN parameters, AUTH initial responses) make longer lines legitimate.
pub const MAX_COMMAND_LINE: usize = 4096;

/// `BODY=` of `MAIL FROM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyType {
    #[default]
    SevenBit,
    EightBitMime,
}

/// `RET=` of `MAIL FROM` (RFC 3461).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    Full,
    Hdrs,
}

/// Parameters of `MAIL FROM`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MailParams {
    pub size: Option<u64>,
    pub body: BodyType,
    pub smtputf8: bool,
    pub ret: Option<Ret>,
    /// `ENVID=`, still xtext-encoded as on the wire.
    pub envid: Option<String>,
    /// `AUTH=` (RFC 4954), still xtext-encoded.
    pub auth: Option<String>,
}

/// Parameters of `RCPT TO` (RFC 3461).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RcptParams {
    /// `NOTIFY=`, upper-cased: `NEVER` or some of `SUCCESS`, `FAILURE`, `DELAY`.
    pub notify: Vec<String>,
    /// `ORCPT=` as on the wire (`rfc822;` + xtext).
    pub orcpt: Option<String>,
}

/// One client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    Mail(ReversePath, MailParams),
    Rcpt(Path, RcptParams),
    Data,
    Bdat {
        size: u64,
        last: bool,
    },
    Rset,
    Noop,
    Quit,
    Vrfy(String),
    Expn(String),
    Help,
    StartTls,
    /// Mechanism (upper-cased) and optional initial response (`=` means empty).
    Auth {
        mechanism: String,
        initial: Option<String>,
    },
}

impl Command {
    /// The verb, for logs.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Ehlo(_) => "EHLO",
            Command::Helo(_) => "HELO",
            Command::Mail(..) => "MAIL",
            Command::Rcpt(..) => "RCPT",
            Command::Data => "DATA",
            Command::Bdat { .. } => "BDAT",
            Command::Rset => "RSET",
            Command::Noop => "NOOP",
            Command::Quit => "QUIT",
            Command::Vrfy(_) => "VRFY",
            Command::Expn(_) => "EXPN",
            Command::Help => "HELP",
            Command::StartTls => "STARTTLS",
            Command::Auth { .. } => "AUTH",
        }
    }
}

/// What went wrong with a command line; the server answers with [`CommandErrorKind::code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandErrorKind {
    #[error("line too long")]
    LineTooLong,
    #[error("command unrecognized")]
    Unknown,
    #[error("syntax error: {0}")]
    Syntax(&'static str),
    #[error("bad address syntax: {0}")]
    BadAddress(&'static str),
    #[error("parameter not recognized or not implemented: {0}")]
    BadParameter(String),
}

impl CommandErrorKind {
    /// Reply code and enhanced status for this error.
    pub fn code(&self) -> (u16, &'static str) {
        match self {
            CommandErrorKind::LineTooLong => (500, "5.5.6"),
            CommandErrorKind::Unknown => (500, "5.5.1"),
            CommandErrorKind::Syntax(_) => (501, "5.5.4"),
            CommandErrorKind::BadAddress(_) => (501, "5.1.3"),
            CommandErrorKind::BadParameter(_) => (555, "5.5.4"),
        }
    }
}

/// A command line that could not be used, and how many bytes it took. For
/// [`CommandErrorKind::LineTooLong`] `consumed` is everything buffered and `line_complete` is
/// false: the caller must also discard up to the next LF ([`skip_line`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct CommandError {
    pub kind: CommandErrorKind,
    pub consumed: usize,
    pub line_complete: bool,
}

/// Outcome of parsing the bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<T> {
    Complete(T, usize),
    Incomplete,
}

/// Finds one line ending in LF within `max` bytes; returns the line without CRLF/LF and the
/// bytes used. `Err(consumed)` if `max` bytes hold no LF.
pub fn parse_line(buf: &[u8], max: usize) -> Result<Parsed<&[u8]>, usize> {
    let window = &buf[..buf.len().min(max)];
    match window.iter().position(|&b| b == b'\n') {
        Some(i) => {
            let line = &buf[..i];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            Ok(Parsed::Complete(line, i + 1))
        }
        None if buf.len() >= max => Err(window.len()),
        None => Ok(Parsed::Incomplete),
    }
}

/// While discarding an over-long line: the bytes to drop from `buf`, and whether the line's
/// end (LF) was among them.
pub fn skip_line(buf: &[u8]) -> (usize, bool) {
    match buf.iter().position(|&b| b == b'\n') {
        Some(i) => (i + 1, true),
        None => (buf.len(), false),
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
        .map_err(|_| err(CommandErrorKind::Syntax("command is not valid UTF-8")))?;
    if line.contains(['\r', '\0']) {
        return Err(err(CommandErrorKind::Syntax("CR or NUL inside a command")));
    }
    parse_text(line)
        .map(|c| Parsed::Complete(c, consumed))
        .map_err(err)
}

fn no_args(rest: &str, cmd: Command) -> Result<Command, CommandErrorKind> {
    if rest.trim().is_empty() {
        Ok(cmd)
    } else {
        Err(CommandErrorKind::Syntax("this command takes no argument"))
    }
}

fn parse_text(line: &str) -> Result<Command, CommandErrorKind> {
    let (verb, rest) = match line.find(' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, ""),
    };
    let verb = verb.to_ascii_uppercase();
    match verb.as_str() {
        "EHLO" | "HELO" => {
            let host = rest.trim();
            if host.is_empty() || host.contains(' ') || host.len() > 255 {
                return Err(CommandErrorKind::Syntax("expected EHLO domain"));
            }
            let host = host.to_string();
            Ok(if verb == "EHLO" {
                Command::Ehlo(host)
            } else {
                Command::Helo(host)
            })
        }
        "MAIL" => {
            let args = strip_keyword(rest, "FROM:")
                .ok_or(CommandErrorKind::Syntax("expected MAIL FROM:<address>"))?;
            let (path, params) = split_path(args)?;
            let path = parse_reverse_path(path).map_err(CommandErrorKind::BadAddress)?;
            Ok(Command::Mail(path, parse_mail_params(params)?))
        }
        "RCPT" => {
            let args = strip_keyword(rest, "TO:")
                .ok_or(CommandErrorKind::Syntax("expected RCPT TO:<address>"))?;
            let (path, params) = split_path(args)?;
            let path = parse_forward_path(path).map_err(CommandErrorKind::BadAddress)?;
            Ok(Command::Rcpt(path, parse_rcpt_params(params)?))
        }
        "DATA" => no_args(rest, Command::Data),
        "BDAT" => {
            let mut words = rest.split(' ').filter(|w| !w.is_empty());
            let size = words
                .next()
                .filter(|w| w.len() <= 19 && w.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|w| w.parse::<u64>().ok())
                .ok_or(CommandErrorKind::Syntax("expected BDAT size [LAST]"))?;
            let last = match words.next() {
                None => false,
                Some(w) if w.eq_ignore_ascii_case("LAST") => true,
                Some(_) => return Err(CommandErrorKind::Syntax("expected BDAT size [LAST]")),
            };
            if words.next().is_some() {
                return Err(CommandErrorKind::Syntax("expected BDAT size [LAST]"));
            }
            Ok(Command::Bdat { size, last })
        }
        "RSET" => no_args(rest, Command::Rset),
        "NOOP" => Ok(Command::Noop),
        "QUIT" => no_args(rest, Command::Quit),
        "VRFY" | "EXPN" => {
            let arg = rest.trim();
            if arg.is_empty() {
                return Err(CommandErrorKind::Syntax("argument required"));
            }
            Ok(if verb == "VRFY" {
                Command::Vrfy(arg.to_string())
            } else {
                Command::Expn(arg.to_string())
            })
        }
        "HELP" => Ok(Command::Help),
        "STARTTLS" => no_args(rest, Command::StartTls),
        "AUTH" => {
            let mut words = rest.split(' ').filter(|w| !w.is_empty());
            let mechanism = words
                .next()
                .filter(|m| {
                    m.len() <= 20
                        && m.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                })
                .ok_or(CommandErrorKind::Syntax(
                    "expected AUTH mechanism [initial-response]",
                ))?
                .to_ascii_uppercase();
            let initial = words.next().map(str::to_string);
            if words.next().is_some() {
                return Err(CommandErrorKind::Syntax(
                    "expected AUTH mechanism [initial-response]",
                ));
            }
            Ok(Command::Auth { mechanism, initial })
        }
        _ => Err(CommandErrorKind::Unknown),
    }
}

/// Strips `FROM:` / `TO:` case-insensitively, allowing spaces around the colon (a common client
/// quirk).
fn strip_keyword<'a>(rest: &'a str, keyword: &str) -> Option<&'a str> {
    let rest = rest.trim_start();
    let kw = &keyword[..keyword.len() - 1];
    if rest.len() < kw.len() || !rest.is_char_boundary(kw.len()) {
        return None;
    }
    let (head, tail) = rest.split_at(kw.len());
    if !head.eq_ignore_ascii_case(kw) {
        return None;
    }
    tail.trim_start().strip_prefix(':').map(str::trim_start)
}

/// Splits `<path> params...` (the path may contain spaces only inside a quoted local part).
fn split_path(args: &str) -> Result<(&str, &str), CommandErrorKind> {
    if !args.starts_with('<') {
        return Err(CommandErrorKind::BadAddress(
            "path must be in angle brackets",
        ));
    }
    let mut in_quote = false;
    let mut escaped = false;
    for (i, c) in args.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quote => escaped = true,
            '"' => in_quote = !in_quote,
            '>' if !in_quote => {
                let rest = &args[i + 1..];
                if !rest.is_empty() && !rest.starts_with(' ') {
                    return Err(CommandErrorKind::Syntax("space expected after the path"));
                }
                return Ok((&args[..=i], rest.trim()));
            }
            _ => {}
        }
    }
    Err(CommandErrorKind::BadAddress("path without '>'"))
}

fn params(s: &str) -> impl Iterator<Item = (String, Option<&str>)> {
    s.split(' ')
        .filter(|w| !w.is_empty())
        .map(|w| match w.split_once('=') {
            Some((k, v)) => (k.to_ascii_uppercase(), Some(v)),
            None => (w.to_ascii_uppercase(), None),
        })
}

fn valid_xtext(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                let hex = |c: u8| c.is_ascii_digit() || (b'A'..=b'F').contains(&c);
                if i + 2 >= b.len() || !hex(b[i + 1]) || !hex(b[i + 2]) {
                    return false;
                }
                i += 3;
            }
            b'!'..=b'~' if b[i] != b'=' => i += 1,
            _ => return false,
        }
    }
    !s.is_empty() && s.len() <= 500
}

fn bad(k: &str) -> CommandErrorKind {
    CommandErrorKind::BadParameter(k.to_string())
}

fn parse_mail_params(s: &str) -> Result<MailParams, CommandErrorKind> {
    let mut p = MailParams::default();
    for (key, value) in params(s) {
        match (key.as_str(), value) {
            ("SIZE", Some(v)) if v.len() <= 19 && v.bytes().all(|b| b.is_ascii_digit()) => {
                p.size = Some(v.parse().map_err(|_| bad(&key))?);
            }
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("7BIT") => p.body = BodyType::SevenBit,
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("8BITMIME") => {
                p.body = BodyType::EightBitMime
            }
            ("SMTPUTF8", None) => p.smtputf8 = true,
            ("RET", Some(v)) if v.eq_ignore_ascii_case("FULL") => p.ret = Some(Ret::Full),
            ("RET", Some(v)) if v.eq_ignore_ascii_case("HDRS") => p.ret = Some(Ret::Hdrs),
            ("ENVID", Some(v)) if valid_xtext(v) && v.len() <= 100 => p.envid = Some(v.to_string()),
            ("AUTH", Some(v)) if v == "<>" || valid_xtext(v) => p.auth = Some(v.to_string()),
            _ => return Err(bad(&key)),
        }
    }
    Ok(p)
}

fn parse_rcpt_params(s: &str) -> Result<RcptParams, CommandErrorKind> {
    let mut p = RcptParams::default();
    for (key, value) in params(s) {
        match (key.as_str(), value) {
            ("NOTIFY", Some(v)) => {
                let list: Vec<String> = v.split(',').map(|x| x.to_ascii_uppercase()).collect();
                let ok = if list.iter().any(|x| x == "NEVER") {
                    list.len() == 1
                } else {
                    list.iter()
                        .all(|x| matches!(x.as_str(), "SUCCESS" | "FAILURE" | "DELAY"))
                };
                if !ok {
                    return Err(bad(&key));
                }
                p.notify = list;
            }
            ("ORCPT", Some(v)) => {
                let (kind, addr) = v.split_once(';').ok_or_else(|| bad(&key))?;
                if !valid_domain_name(kind) || !valid_xtext(addr) {
                    return Err(bad(&key));
                }
                p.orcpt = Some(v.to_string());
            }
            _ => return Err(bad(&key)),
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::{Domain, Mailbox};

    fn ok(s: &str) -> Command {
        match parse_command(s.as_bytes()) {
            Ok(Parsed::Complete(c, n)) => {
                assert_eq!(n, s.len());
                c
            }
            other => panic!("{s:?}: {other:?}"),
        }
    }

    fn kind(s: &str) -> CommandErrorKind {
        parse_command(s.as_bytes()).unwrap_err().kind
    }

    #[test]
    fn simple_commands() {
        assert_eq!(
            ok("EHLO client.test\r\n"),
            Command::Ehlo("client.test".into())
        );
        assert_eq!(
            ok("helo [127.0.0.1]\r\n"),
            Command::Helo("[127.0.0.1]".into())
        );
        assert_eq!(ok("DATA\r\n"), Command::Data);
        assert_eq!(ok("rset\n"), Command::Rset);
        assert_eq!(ok("NOOP whatever\r\n"), Command::Noop);
        assert_eq!(ok("QUIT\r\n"), Command::Quit);
        assert_eq!(ok("STARTTLS\r\n"), Command::StartTls);
        assert_eq!(
            ok("BDAT 100 LAST\r\n"),
            Command::Bdat {
                size: 100,
                last: true
            }
        );
        assert_eq!(
            ok("BDAT 0\r\n"),
            Command::Bdat {
                size: 0,
                last: false
            }
        );
        assert_eq!(
            ok("AUTH plain AGZvbwBiYXI=\r\n"),
            Command::Auth {
                mechanism: "PLAIN".into(),
                initial: Some("AGZvbwBiYXI=".into())
            }
        );
        assert_eq!(
            ok("AUTH LOGIN\r\n"),
            Command::Auth {
                mechanism: "LOGIN".into(),
                initial: None
            }
        );
    }

    #[test]
    fn mail_and_rcpt() {
        let c =
            ok("MAIL FROM:<a@b.test> SIZE=1000 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=x+2By\r\n");
        let Command::Mail(ReversePath::Mailbox { mailbox, .. }, p) = c else {
            panic!()
        };
        assert_eq!(
            mailbox,
            Mailbox {
                local: "a".into(),
                domain: Domain::Name("b.test".into())
            }
        );
        assert_eq!(p.size, Some(1000));
        assert_eq!(p.body, BodyType::EightBitMime);
        assert!(p.smtputf8);
        assert_eq!(p.ret, Some(Ret::Hdrs));
        assert_eq!(p.envid.as_deref(), Some("x+2By"));
        assert!(matches!(
            ok("mail from: <>\r\n"),
            Command::Mail(ReversePath::Null, _)
        ));
        let c = ok("RCPT TO:<c@d.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;c+40d.test\r\n");
        let Command::Rcpt(Path::Mailbox { .. }, p) = c else {
            panic!()
        };
        assert_eq!(p.notify, vec!["SUCCESS", "FAILURE"]);
        assert_eq!(p.orcpt.as_deref(), Some("rfc822;c+40d.test"));
        assert_eq!(
            ok("RCPT TO:<postmaster>\r\n"),
            Command::Rcpt(Path::Postmaster, RcptParams::default())
        );
    }

    #[test]
    fn errors() {
        assert_eq!(kind("FOO\r\n"), CommandErrorKind::Unknown);
        assert!(matches!(
            kind("MAIL TO:<a@b>\r\n"),
            CommandErrorKind::Syntax(_)
        ));
        assert!(matches!(
            kind("MAIL FROM:a@b.test\r\n"),
            CommandErrorKind::BadAddress(_)
        ));
        assert!(matches!(
            kind("RCPT TO:<a@b.test.>\r\n"),
            CommandErrorKind::BadAddress(_)
        ));
        assert!(matches!(
            kind("MAIL FROM:<a@b.test> FOO=1\r\n"),
            CommandErrorKind::BadParameter(_)
        ));
        assert!(matches!(
            kind("RCPT TO:<a@b.test> NOTIFY=NEVER,DELAY\r\n"),
            CommandErrorKind::BadParameter(_)
        ));
        assert!(matches!(kind("BDAT x\r\n"), CommandErrorKind::Syntax(_)));
        assert!(matches!(kind("DATA now\r\n"), CommandErrorKind::Syntax(_)));
        assert!(matches!(kind("EHLO a\rb\r\n"), CommandErrorKind::Syntax(_)));
        assert_eq!(parse_command(b"EHLO x"), Ok(Parsed::Incomplete));
        let long = vec![b'a'; MAX_COMMAND_LINE + 10];
        let e = parse_command(&long).unwrap_err();
        assert_eq!(e.kind, CommandErrorKind::LineTooLong);
        assert!(!e.line_complete);
        assert_eq!(skip_line(b"aaa\r\nNOOP"), (5, true));
    }

    #[test]
    fn pipelined() {
        let buf = b"MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n";
        let mut at = 0;
        let mut verbs = vec![];
        while let Ok(Parsed::Complete(c, n)) = parse_command(&buf[at..]) {
            verbs.push(c.verb());
            at += n;
        }
        assert_eq!(verbs, ["MAIL", "RCPT", "DATA"]);
        assert_eq!(at, buf.len());
    }
}
