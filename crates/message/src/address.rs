//! RFC 5322 address lists as IMAP's ENVELOPE wants them: (name, adl, mailbox, host), group
//! syntax as start and end markers, strings kept as written (RFC 2047 words are not decoded:
//! the client decodes them).
//!
//! The parser is lenient, as a server's must be: it never fails, and a malformed entry still
//! gives an address. Choices:
//!
//! - the name is the display name with quoted strings unquoted and runs of white space made
//!   one space; with no display name, the text of the last comment (`user@host (Name)`);
//! - a source route (`<@a,@b:user@host>`) is the adl `@a,@b`;
//! - a quoted local part keeps its quotes, so `mailbox@host` is the address as written;
//! - an address with no domain gets the host `MISSING_DOMAIN`, one with no local part the
//!   mailbox `MISSING_MAILBOX`, so that neither looks like a group marker (whose host is NIL);
//! - a group `name: a, b;` is `(NIL NIL "name" NIL)`, its members, then `(NIL NIL NIL NIL)`; a
//!   group that is not closed is closed at the end of the field.

use serde::{Deserialize, Serialize};

use crate::header::clean_string;

/// The host given to an address that has none.
pub const MISSING_DOMAIN: &str = "MISSING_DOMAIN";
/// The mailbox given to an address that has no local part.
pub const MISSING_MAILBOX: &str = "MISSING_MAILBOX";

/// One element of an ENVELOPE address list (RFC 9051 §7.5.2 "address").
///
/// A group start has only `mailbox` (the group's name); a group end has nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Address {
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub adl: Option<String>,
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    pub mailbox: Option<String>,
    #[serde(rename = "h", default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

impl Address {
    /// True for a group's start or end marker.
    pub fn is_group_marker(&self) -> bool {
        self.host.is_none()
    }

    /// `mailbox@host` of a real address (not a group marker).
    pub fn addr_spec(&self) -> Option<String> {
        match (&self.mailbox, &self.host) {
            (Some(m), Some(h)) => Some(format!("{m}@{h}")),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// An atom, or a run of atom-like bytes (raw text).
    Atom(String),
    /// A quoted string: its content unescaped, and its raw text with the quotes.
    Quoted(String, String),
    /// A comment's content.
    Comment(String),
    /// A domain literal, raw (`[1.2.3.4]`).
    Literal(String),
    /// One of `< > @ , ; : .`
    Special(u8),
}

/// A token and whether white space (or a comment) came before it.
#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    space_before: bool,
}

fn lossy(b: &[u8]) -> String {
    clean_string(String::from_utf8_lossy(b).into_owned())
}

fn tokenize(raw: &[u8]) -> Vec<Token> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut space = false;
    while i < raw.len() {
        let c = raw[i];
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                space = true;
                i += 1;
            }
            b'"' => {
                let start = i;
                let mut content = Vec::new();
                i += 1;
                while i < raw.len() && raw[i] != b'"' {
                    if raw[i] == b'\\' && i + 1 < raw.len() {
                        i += 1;
                    }
                    if raw[i] != b'\r' && raw[i] != b'\n' {
                        content.push(raw[i]);
                    }
                    i += 1;
                }
                i = (i + 1).min(raw.len());
                let raw_text: Vec<u8> = raw[start..i]
                    .iter()
                    .copied()
                    .filter(|&b| b != b'\r' && b != b'\n')
                    .collect();
                out.push(Token {
                    tok: Tok::Quoted(lossy(&content), lossy(&raw_text)),
                    space_before: space,
                });
                space = false;
            }
            b'(' => {
                let mut depth = 0usize;
                let mut content = Vec::new();
                while i < raw.len() {
                    let b = raw[i];
                    match b {
                        b'\\' if i + 1 < raw.len() => {
                            i += 1;
                            content.push(raw[i]);
                        }
                        b'(' => {
                            if depth > 0 {
                                content.push(b);
                            }
                            depth += 1;
                        }
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                i += 1;
                                break;
                            }
                            content.push(b);
                        }
                        b'\r' | b'\n' => {}
                        _ => content.push(b),
                    }
                    i += 1;
                }
                out.push(Token {
                    tok: Tok::Comment(lossy(&content)),
                    space_before: space,
                });
                space = true;
            }
            b'[' => {
                let start = i;
                while i < raw.len() && raw[i] != b']' {
                    i += 1;
                }
                i = (i + 1).min(raw.len());
                let text: Vec<u8> = raw[start..i]
                    .iter()
                    .copied()
                    .filter(|b| !b.is_ascii_whitespace())
                    .collect();
                out.push(Token {
                    tok: Tok::Literal(lossy(&text)),
                    space_before: space,
                });
                space = false;
            }
            b'<' | b'>' | b'@' | b',' | b';' | b':' | b'.' => {
                out.push(Token {
                    tok: Tok::Special(c),
                    space_before: space,
                });
                space = false;
                i += 1;
            }
            _ => {
                let start = i;
                while i < raw.len()
                    && !matches!(
                        raw[i],
                        b' ' | b'\t'
                            | b'\r'
                            | b'\n'
                            | b'"'
                            | b'('
                            | b')'
                            | b'['
                            | b'<'
                            | b'>'
                            | b'@'
                            | b','
                            | b';'
                            | b':'
                            | b'.'
                    )
                {
                    i += 1;
                }
                // A lone ')' is skipped rather than looping forever.
                let end = if i == start { i + 1 } else { i };
                if raw[start..end] != *b")" {
                    out.push(Token {
                        tok: Tok::Atom(lossy(&raw[start..end])),
                        space_before: space,
                    });
                }
                space = false;
                i = end;
            }
        }
    }
    out
}

/// The raw text of tokens making up an addr-spec part (local part or domain), white space and
/// comments dropped.
fn spec_text(toks: &[Token]) -> String {
    let mut s = String::new();
    for t in toks {
        match &t.tok {
            Tok::Atom(a) | Tok::Literal(a) => s.push_str(a),
            Tok::Quoted(_, raw) => s.push_str(raw),
            Tok::Special(c) => s.push(*c as char),
            Tok::Comment(_) => {}
        }
    }
    s
}

/// A display name from phrase tokens: words joined by one space where the source had white
/// space, quoted strings unquoted.
fn phrase_text(toks: &[Token]) -> Option<String> {
    let mut s = String::new();
    for t in toks {
        let word = match &t.tok {
            Tok::Atom(a) | Tok::Literal(a) => a.as_str(),
            Tok::Quoted(q, _) => q.as_str(),
            Tok::Special(c) => {
                // '.' in an obsolete phrase ("John Q. Public"), or stray specials.
                let c = *c as char;
                if t.space_before && !s.is_empty() {
                    s.push(' ');
                }
                s.push(c);
                continue;
            }
            Tok::Comment(_) => continue,
        };
        if t.space_before && !s.is_empty() {
            s.push(' ');
        }
        s.push_str(word);
    }
    let s = s.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn last_comment(toks: &[Token]) -> Option<String> {
    toks.iter().rev().find_map(|t| match &t.tok {
        Tok::Comment(c) => {
            let c = c.split_whitespace().collect::<Vec<_>>().join(" ");
            (!c.is_empty()).then_some(c)
        }
        _ => None,
    })
}

/// Splits addr-spec tokens at the last '@' into (mailbox, host).
fn split_spec(toks: &[Token]) -> (String, String) {
    let at = toks.iter().rposition(|t| t.tok == Tok::Special(b'@'));
    let (local, domain) = match at {
        Some(p) => (&toks[..p], &toks[p + 1..]),
        None => (toks, &toks[toks.len()..]),
    };
    let mut mailbox = spec_text(local);
    let mut host = spec_text(domain);
    if mailbox.is_empty() {
        mailbox = MISSING_MAILBOX.to_string();
    }
    if host.is_empty() {
        host = MISSING_DOMAIN.to_string();
    }
    (mailbox, host)
}

/// Builds one mailbox from the tokens between separators. None when there is nothing in it.
fn mailbox(toks: &[Token]) -> Option<Address> {
    if toks.iter().all(|t| matches!(t.tok, Tok::Comment(_))) {
        return None;
    }
    if let Some(lt) = toks.iter().position(|t| t.tok == Tok::Special(b'<')) {
        let gt = toks[lt + 1..]
            .iter()
            .position(|t| t.tok == Tok::Special(b'>'))
            .map_or(toks.len(), |p| lt + 1 + p);
        let inner: Vec<Token> = toks[lt + 1..gt]
            .iter()
            .filter(|t| !matches!(t.tok, Tok::Comment(_)))
            .cloned()
            .collect();
        // A source route: "@a,@b:" before the addr-spec.
        let (adl, spec) = match inner.iter().position(|t| t.tok == Tok::Special(b':')) {
            Some(colon) if inner.first().is_some_and(|t| t.tok == Tok::Special(b'@')) => {
                (Some(spec_text(&inner[..colon])), &inner[colon + 1..])
            }
            _ => (None, &inner[..]),
        };
        let (mailbox, host) = split_spec(spec);
        let name = phrase_text(&toks[..lt]).or_else(|| last_comment(toks));
        return Some(Address {
            name,
            adl,
            mailbox: Some(mailbox),
            host: Some(host),
        });
    }
    let spec: Vec<Token> = toks
        .iter()
        .filter(|t| !matches!(t.tok, Tok::Comment(_)))
        .cloned()
        .collect();
    let (mailbox, host) = split_spec(&spec);
    Some(Address {
        name: last_comment(toks),
        adl: None,
        mailbox: Some(mailbox),
        host: Some(host),
    })
}

/// Parses an address list's raw value (as found after the colon, folding included).
pub fn parse_address_list(raw: &[u8]) -> Vec<Address> {
    let toks = tokenize(raw);
    let mut out = Vec::new();
    let mut in_group = false;
    let mut in_angle = false;
    let mut start = 0;
    // Whether the entry being read has had an '@' outside angle brackets (then a colon is part
    // of it, not a group's start). Kept as a flag so that no token is looked at twice.
    let mut entry_has_at = false;
    for (i, t) in toks.iter().enumerate() {
        match t.tok {
            Tok::Special(b'<') => in_angle = true,
            Tok::Special(b'>') => in_angle = false,
            Tok::Special(b'@') if !in_angle => entry_has_at = true,
            Tok::Special(b',') if !in_angle => {
                out.extend(mailbox(&toks[start..i]));
                start = i + 1;
                entry_has_at = false;
            }
            Tok::Special(b':') if !in_angle && !in_group && !entry_has_at => {
                // "name:" opens a group.
                out.push(Address {
                    mailbox: Some(phrase_text(&toks[start..i]).unwrap_or_default()),
                    ..Address::default()
                });
                in_group = true;
                start = i + 1;
            }
            Tok::Special(b';') if !in_angle => {
                out.extend(mailbox(&toks[start..i]));
                start = i + 1;
                entry_has_at = false;
                if in_group {
                    out.push(Address::default());
                    in_group = false;
                }
            }
            _ => {}
        }
    }
    out.extend(mailbox(&toks[start..]));
    if in_group {
        out.push(Address::default());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(name: Option<&str>, mailbox: &str, host: &str) -> Address {
        Address {
            name: name.map(str::to_string),
            adl: None,
            mailbox: Some(mailbox.to_string()),
            host: Some(host.to_string()),
        }
    }

    fn group_start(name: &str) -> Address {
        Address {
            mailbox: Some(name.to_string()),
            ..Address::default()
        }
    }

    #[test]
    fn plain_forms() {
        assert_eq!(
            parse_address_list(b" \"Terry Gray\" <gray@cac.washington.edu>\r\n"),
            vec![a(Some("Terry Gray"), "gray", "cac.washington.edu")]
        );
        assert_eq!(
            parse_address_list(b" imap@cac.washington.edu"),
            vec![a(None, "imap", "cac.washington.edu")]
        );
        assert_eq!(
            parse_address_list(
                b" minutes@CNRI.Reston.VA.US,\r\n        John Klensin <KLENSIN@MIT.EDU>"
            ),
            vec![
                a(None, "minutes", "CNRI.Reston.VA.US"),
                a(Some("John Klensin"), "KLENSIN", "MIT.EDU")
            ]
        );
    }

    #[test]
    fn comments_quotes_and_routes() {
        assert_eq!(
            parse_address_list(b" user@example.com (Some (nested) Name)"),
            vec![a(Some("Some (nested) Name"), "user", "example.com")]
        );
        assert_eq!(
            parse_address_list(b" \"a \\\"q\\\" b\" <\"x y\"@ex.org>"),
            vec![a(Some("a \"q\" b"), "\"x y\"", "ex.org")]
        );
        assert_eq!(
            parse_address_list(b" John Q. Public <jqp@ex.org>"),
            vec![a(Some("John Q. Public"), "jqp", "ex.org")]
        );
        assert_eq!(
            parse_address_list(b" <@relay1.org,@relay2.org:joe@ex.org>"),
            vec![Address {
                name: None,
                adl: Some("@relay1.org,@relay2.org".into()),
                mailbox: Some("joe".into()),
                host: Some("ex.org".into()),
            }]
        );
        assert_eq!(
            parse_address_list(b" =?UTF-8?Q?Andr=C3=A9?= <andre@ex.org>"),
            vec![a(Some("=?UTF-8?Q?Andr=C3=A9?="), "andre", "ex.org")]
        );
        assert_eq!(
            parse_address_list(b" x@[127.0.0.1]"),
            vec![a(None, "x", "[127.0.0.1]")]
        );
    }

    #[test]
    fn groups() {
        assert_eq!(
            parse_address_list(b" undisclosed-recipients:;"),
            vec![group_start("undisclosed-recipients"), Address::default()]
        );
        assert_eq!(
            parse_address_list(
                b" A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>; x@y.test"
            ),
            vec![
                group_start("A Group"),
                a(Some("Ed Jones"), "c", "a.test"),
                a(None, "joe", "where.test"),
                a(Some("John"), "jdoe", "one.test"),
                Address::default(),
                a(None, "x", "y.test"),
            ]
        );
        // Not closed: closed at the end.
        assert_eq!(
            parse_address_list(b" team: a@b"),
            vec![group_start("team"), a(None, "a", "b"), Address::default()]
        );
    }

    #[test]
    fn broken_entries() {
        assert_eq!(parse_address_list(b""), vec![]);
        assert_eq!(parse_address_list(b" , ,"), vec![]);
        assert_eq!(
            parse_address_list(b" user"),
            vec![a(None, "user", MISSING_DOMAIN)]
        );
        assert_eq!(
            parse_address_list(b" <>"),
            vec![a(None, MISSING_MAILBOX, MISSING_DOMAIN)]
        );
        assert_eq!(
            parse_address_list(b" Name <a@b"),
            vec![a(Some("Name"), "a", "b")]
        );
        assert_eq!(
            parse_address_list(b" \"unterminated <a@b>"),
            vec![a(None, "\"unterminated <a@b>", MISSING_DOMAIN)]
        );
        // Stray closing parenthesis and brackets do not loop or panic.
        let _ = parse_address_list(b") ] [ (( >> << @@ ::;;");
    }
}
