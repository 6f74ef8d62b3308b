//! Mail paths (RFC 5321 §4.1.2, with RFC 6531 UTF-8).

use std::fmt;

/// Longest path accepted between the angle brackets (RFC 5321 §4.5.3.1.3 allows 256 with them).
pub const MAX_PATH: usize = 256;
const MAX_LOCAL: usize = 64;
const MAX_DOMAIN: usize = 255;

/// The domain of a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Domain {
    /// A host name as written (its case kept; no trailing dot).
    Name(String),
    /// An address literal, with its brackets: `[192.0.2.1]`, `[IPv6:2001:db8::1]`.
    Literal(String),
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Domain::Name(s) | Domain::Literal(s) => f.write_str(s),
        }
    }
}

/// `local@domain` as the client wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// A dot-string, or a quoted string with its quotes and escapes kept.
    pub local: String,
    pub domain: Domain,
}

impl Mailbox {
    /// Whether the local part is a quoted string.
    pub fn is_quoted(&self) -> bool {
        self.local.starts_with('"')
    }

    /// Whether the local part or domain holds non-ASCII characters (needs SMTPUTF8).
    pub fn is_utf8(&self) -> bool {
        !self.local.is_ascii() || !self.domain.to_string().is_ascii()
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// A forward path (`RCPT TO`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Path {
    /// `<Postmaster>` without a domain (any case).
    Postmaster,
    /// A mailbox; `had_route` is true when a source route was given and dropped.
    Mailbox { mailbox: Mailbox, had_route: bool },
}

impl Path {
    pub fn had_route(&self) -> bool {
        matches!(
            self,
            Path::Mailbox {
                had_route: true,
                ..
            }
        )
    }
}

/// A reverse path (`MAIL FROM`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReversePath {
    /// `<>`: a bounce or other notification.
    Null,
    Mailbox {
        mailbox: Mailbox,
        had_route: bool,
    },
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

fn is_qtext(c: char) -> bool {
    // qtextSMTP: %d32-33 / %d35-91 / %d93-126, plus UTF-8.
    matches!(c, ' ' | '!' | '#'..='[' | ']'..='~') || !c.is_ascii()
}

/// A domain name: labels of letters, digits, hyphens (and UTF-8 U-labels), no empty label, no
/// trailing dot.
pub(crate) fn valid_domain_name(d: &str) -> bool {
    if d.is_empty() || d.len() > MAX_DOMAIN {
        return false;
    }
    d.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii())
    })
}

fn valid_literal(lit: &str) -> bool {
    let Some(inner) = lit.strip_prefix('[').and_then(|s| s.strip_suffix(']')) else {
        return false;
    };
    if let Some(v6) = inner
        .strip_prefix("IPv6:")
        .or_else(|| inner.strip_prefix("ipv6:"))
    {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    inner.parse::<std::net::Ipv4Addr>().is_ok()
}

fn valid_dot_string(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

/// Parses `local@domain` (no brackets, no route).
fn parse_mailbox(s: &str) -> Result<Mailbox, &'static str> {
    let (local, rest) = if s.starts_with('"') {
        // Quoted string: find the closing quote, honouring backslash escapes.
        let mut escaped = false;
        let mut end = None;
        for (i, c) in s.char_indices().skip(1) {
            if escaped {
                if !(' '..='~').contains(&c) {
                    return Err("bad escape in quoted local part");
                }
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                end = Some(i);
                break;
            } else if !is_qtext(c) {
                return Err("bad character in quoted local part");
            }
        }
        let end = end.ok_or("unterminated quoted local part")?;
        (&s[..=end], &s[end + 1..])
    } else {
        let at = s.rfind('@').ok_or("no @ in address")?;
        let local = &s[..at];
        if !valid_dot_string(local) {
            return Err("bad local part");
        }
        (local, &s[at..])
    };
    if local.len() > MAX_LOCAL + 2 {
        return Err("local part too long");
    }
    let domain = rest.strip_prefix('@').ok_or("no @ after local part")?;
    let domain = if domain.starts_with('[') {
        if !valid_literal(domain) {
            return Err("bad address literal");
        }
        Domain::Literal(domain.to_string())
    } else {
        if !valid_domain_name(domain) {
            return Err("bad domain");
        }
        Domain::Name(domain.to_string())
    };
    Ok(Mailbox {
        local: local.to_string(),
        domain,
    })
}

/// Strips `<`, `>` and an optional source route; returns the inner mailbox text.
fn strip_path(s: &str) -> Result<(&str, bool), &'static str> {
    let inner = s
        .strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .ok_or("path must be in angle brackets")?;
    if inner.len() > MAX_PATH {
        return Err("path too long");
    }
    if let Some(route_and_rest) = inner.strip_prefix('@') {
        let colon = route_and_rest.find(':').ok_or("source route without ':'")?;
        let route = &route_and_rest[..colon];
        for hop in route.split(',') {
            let hop = hop.strip_prefix('@').unwrap_or(hop);
            if !(valid_domain_name(hop) || valid_literal(hop)) {
                return Err("bad domain in source route");
            }
        }
        return Ok((&route_and_rest[colon + 1..], true));
    }
    Ok((inner, false))
}

/// Parses a forward path with its angle brackets: `<user@example.com>`, `<Postmaster>`.
pub fn parse_forward_path(s: &str) -> Result<Path, &'static str> {
    let (inner, had_route) = strip_path(s)?;
    if !had_route && inner.eq_ignore_ascii_case("postmaster") {
        return Ok(Path::Postmaster);
    }
    Ok(Path::Mailbox {
        mailbox: parse_mailbox(inner)?,
        had_route,
    })
}

/// Parses a reverse path with its angle brackets: `<>` or `<user@example.com>`.
pub fn parse_reverse_path(s: &str) -> Result<ReversePath, &'static str> {
    if s == "<>" {
        return Ok(ReversePath::Null);
    }
    let (inner, had_route) = strip_path(s)?;
    Ok(ReversePath::Mailbox {
        mailbox: parse_mailbox(inner)?,
        had_route,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fwd(s: &str) -> Result<Path, &'static str> {
        parse_forward_path(s)
    }

    #[test]
    fn plain_and_postmaster() {
        let Path::Mailbox { mailbox, had_route } = fwd("<Alice.B+x@Example.test>").unwrap() else {
            panic!()
        };
        assert_eq!(mailbox.local, "Alice.B+x");
        assert_eq!(mailbox.domain, Domain::Name("Example.test".into()));
        assert!(!had_route);
        assert_eq!(fwd("<POSTMASTER>").unwrap(), Path::Postmaster);
        assert_eq!(parse_reverse_path("<>").unwrap(), ReversePath::Null);
    }

    #[test]
    fn routes_quotes_literals_utf8() {
        let p = fwd("<@relay.test,@[192.0.2.1]:bob@remote.test>").unwrap();
        assert!(p.had_route());
        let Path::Mailbox { mailbox, .. } = p else {
            panic!()
        };
        assert_eq!(mailbox.to_string(), "bob@remote.test");
        let Path::Mailbox { mailbox, .. } = fwd("<\"bob@remote\"@local.test>").unwrap() else {
            panic!()
        };
        assert!(mailbox.is_quoted());
        assert_eq!(mailbox.domain.to_string(), "local.test");
        let Path::Mailbox { mailbox, .. } = fwd("<bob@[IPv6:::1]>").unwrap() else {
            panic!()
        };
        assert!(matches!(mailbox.domain, Domain::Literal(_)));
        let Path::Mailbox { mailbox, .. } = fwd("<jörg@bücher.test>").unwrap() else {
            panic!()
        };
        assert!(mailbox.is_utf8());
    }

    #[test]
    fn refuses_malformed() {
        for bad in [
            "bob@x.test",
            "<bob@x.test.>",
            "<bob@x..test>",
            "<bob@remote@local>",
            "<bob>",
            "<@x.test>",
            "<.bob@x.test>",
            "<bob.@x.test>",
            "<bob@-x.test>",
            "<bob@x_y.test>",
            "<\"bob@x.test>",
            "<bob@[300.1.1.1]>",
            "<@relay.test.:bob@x.test>",
            "<>",
            "<bob @x.test>",
        ] {
            assert!(fwd(bad).is_err(), "{bad} accepted");
        }
    }
}
