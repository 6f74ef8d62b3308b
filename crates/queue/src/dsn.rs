//! Delivery status notifications (RFC 3464): a `multipart/report` with a human-readable part,
//! a `message/delivery-status` part with one block per recipient, and the original message
//! (full, or its header only, as RET asks).

use mailfleet_store::Timestamp;

use crate::client::xtext_decode;

/// Largest original included in full when the sender did not say RET; larger ones are returned
/// as headers only.
pub const MAX_RETURNED: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Failed,
    Delayed,
    Delivered,
    Relayed,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed",
        }
    }
}

/// One recipient's block.
#[derive(Debug, Clone)]
pub struct RecipientReport {
    pub address: String,
    /// As given with ORCPT: `type;address`.
    pub orcpt: Option<String>,
    pub action: Action,
    pub status: String,
    pub remote: Option<String>,
    /// The remote reply (`smtp; ...`) when there was one, else our own explanation.
    pub diagnostic: Option<String>,
    pub diagnostic_is_smtp: bool,
}

/// Everything a notification says.
#[derive(Debug, Clone)]
pub struct Report<'a> {
    /// Our host name.
    pub reporting_mta: &'a str,
    /// Whom the notification goes to: the original sender.
    pub to: &'a str,
    pub envid: Option<&'a str>,
    pub ret: Option<&'a str>,
    pub arrival: Timestamp,
    pub last_attempt: Timestamp,
    /// For delay notices: when we give up.
    pub will_retry_until: Option<Timestamp>,
    pub recipients: Vec<RecipientReport>,
    pub original: &'a [u8],
}

fn date(ts: Timestamp) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .map(|d| d.to_rfc2822())
        .unwrap_or_else(|| "Thu, 1 Jan 1970 00:00:00 +0000".to_string())
}

/// One line, no controls: safe to put in a header field.
fn clean(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    s.trim().to_string()
}

/// The header part of a message (up to and including the blank line, or all of it).
pub fn header_of(message: &[u8]) -> &[u8] {
    let mut i = 0;
    while i < message.len() {
        if message[i..].starts_with(b"\r\n\r\n") {
            return &message[..i + 4];
        }
        if message[i..].starts_with(b"\n\n") {
            return &message[..i + 2];
        }
        i += 1;
    }
    message
}

fn random_token() -> String {
    format!(
        "{:016x}{:08x}",
        rand::random::<u64>(),
        rand::random::<u32>()
    )
}

/// Builds the notification as CRLF-terminated bytes.
pub fn build(r: &Report<'_>, now: Timestamp) -> Vec<u8> {
    let failed = r.recipients.iter().any(|x| x.action == Action::Failed);
    let delayed = r.recipients.iter().any(|x| x.action == Action::Delayed);
    let subject = if failed {
        "Undelivered Mail Returned to Sender"
    } else if delayed {
        "Delayed Mail (still being retried)"
    } else {
        "Successful Mail Delivery Report"
    };
    let boundary = format!("=_mailfleet_{}", random_token());
    let mta = clean(r.reporting_mta);
    let eight_bit = |b: &[u8]| b.iter().any(|c| *c >= 0x80);

    let mut out = String::new();
    let mut h = |name: &str, value: &str| {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    };
    h(
        "From",
        &format!("Mail Delivery System <MAILER-DAEMON@{mta}>"),
    );
    h("To", &format!("<{}>", clean(r.to)));
    h("Subject", subject);
    h("Date", &date(now));
    h("Message-ID", &format!("<{}@{mta}>", random_token()));
    h("Auto-Submitted", "auto-replied");
    h("MIME-Version", "1.0");
    h(
        "Content-Type",
        &format!("multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\""),
    );
    out.push_str("\r\nThis is a MIME-encapsulated delivery status notification.\r\n");

    // Part 1: for people.
    let mut text = String::new();
    text.push_str(&format!("This is the mail system at {mta}.\r\n\r\n"));
    if failed {
        text.push_str(
            "Your message could not be delivered to one or more recipients.\r\n\
             It is attached below.\r\n\r\n",
        );
    } else if delayed {
        text.push_str("Your message has not been delivered yet to the recipients below.\r\n");
        if let Some(until) = r.will_retry_until {
            text.push_str(&format!(
                "Delivery will be retried until {}.\r\nYou do not need to send it again.\r\n",
                date(until)
            ));
        }
        text.push_str("\r\n");
    } else {
        text.push_str("Your message was delivered to the recipients below.\r\n\r\n");
    }
    for x in &r.recipients {
        text.push_str(&format!("<{}>: {}", clean(&x.address), x.action.as_str()));
        if let Some(d) = &x.diagnostic {
            text.push_str(&format!(
                "\r\n    {}{}",
                x.remote
                    .as_deref()
                    .map(|h| format!("{} said: ", clean(h)))
                    .unwrap_or_default(),
                clean(d)
            ));
        }
        text.push_str("\r\n");
    }
    let text_cte = if text.is_ascii() { "7bit" } else { "8bit" };
    out.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: {text_cte}\r\n\r\n{text}"
    ));

    // Part 2: for machines.
    let mut status = String::new();
    status.push_str(&format!("Reporting-MTA: dns; {mta}\r\n"));
    if let Some(envid) = r.envid.filter(|e| !e.is_empty()) {
        status.push_str(&format!(
            "Original-Envelope-Id: {}\r\n",
            clean(&xtext_decode(envid))
        ));
    }
    status.push_str(&format!("Arrival-Date: {}\r\n", date(r.arrival)));
    for x in &r.recipients {
        status.push_str("\r\n");
        if let Some(o) = x.orcpt.as_deref().filter(|o| !o.is_empty()) {
            let (kind, addr) = o.split_once(';').unwrap_or(("rfc822", o));
            status.push_str(&format!(
                "Original-Recipient: {}; {}\r\n",
                clean(kind),
                clean(&xtext_decode(addr))
            ));
        }
        let kind = if x.address.is_ascii() {
            "rfc822"
        } else {
            "utf-8"
        };
        status.push_str(&format!(
            "Final-Recipient: {kind}; {}\r\n",
            clean(&x.address)
        ));
        status.push_str(&format!("Action: {}\r\n", x.action.as_str()));
        status.push_str(&format!("Status: {}\r\n", clean(&x.status)));
        if let Some(remote) = &x.remote {
            status.push_str(&format!("Remote-MTA: dns; {}\r\n", clean(remote)));
        }
        if let Some(d) = &x.diagnostic
            && x.diagnostic_is_smtp
        {
            status.push_str(&format!("Diagnostic-Code: smtp; {}\r\n", clean(d)));
        }
        status.push_str(&format!("Last-Attempt-Date: {}\r\n", date(r.last_attempt)));
        if x.action == Action::Delayed
            && let Some(until) = r.will_retry_until
        {
            status.push_str(&format!("Will-Retry-Until: {}\r\n", date(until)));
        }
    }
    out.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n{status}"
    ));

    // Part 3: the original, whole or its header.
    let full = failed
        && match r.ret {
            Some(ret) => ret.eq_ignore_ascii_case("FULL"),
            None => r.original.len() <= MAX_RETURNED,
        };
    let mut bytes = out.into_bytes();
    let (ctype, body) = if full {
        ("message/rfc822", r.original)
    } else {
        ("text/rfc822-headers", header_of(r.original))
    };
    let cte = if eight_bit(body) { "8bit" } else { "7bit" };
    bytes.extend_from_slice(
        format!(
            "\r\n--{boundary}\r\nContent-Type: {ctype}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n"
        )
        .as_bytes(),
    );
    bytes.extend_from_slice(body);
    if !body.ends_with(b"\n") {
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report<'a>(action: Action, ret: Option<&'a str>, original: &'a [u8]) -> Report<'a> {
        Report {
            reporting_mta: "mx1.local.test",
            to: "alice@local.test",
            envid: Some("env-1"),
            ret,
            arrival: 1_700_000_000,
            last_attempt: 1_700_000_100,
            will_retry_until: Some(1_700_432_000),
            recipients: vec![RecipientReport {
                address: "bob@remote.test".into(),
                orcpt: Some("rfc822;Bob+40Remote.test".into()),
                action,
                status: "5.1.1".into(),
                remote: Some("mx.remote.test".into()),
                diagnostic: Some("550 5.1.1 no such user\r\nX-Injected: 1".into()),
                diagnostic_is_smtp: true,
            }],
            original,
        }
    }

    const ORIGINAL: &[u8] = b"Subject: hi\r\nFrom: alice@local.test\r\n\r\nsecret body\r\n";

    #[test]
    fn failure_report_shape() {
        let out = String::from_utf8(build(
            &report(Action::Failed, None, ORIGINAL),
            1_700_000_200,
        ))
        .unwrap();
        let boundary = out
            .split("boundary=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap()
            .to_string();
        assert!(out.contains("Content-Type: multipart/report; report-type=delivery-status;"));
        assert!(out.contains("To: <alice@local.test>\r\n"));
        assert!(out.contains("Auto-Submitted: auto-replied\r\n"));
        assert!(out.contains("Content-Type: message/delivery-status\r\n"));
        assert!(out.contains("Reporting-MTA: dns; mx1.local.test\r\n"));
        assert!(out.contains("Original-Envelope-Id: env-1\r\n"));
        assert!(out.contains("Original-Recipient: rfc822; Bob@Remote.test\r\n"));
        assert!(out.contains("Final-Recipient: rfc822; bob@remote.test\r\n"));
        assert!(out.contains("Action: failed\r\nStatus: 5.1.1\r\n"));
        assert!(out.contains("Diagnostic-Code: smtp; 550 5.1.1 no such user  X-Injected: 1\r\n"));
        assert!(!out.contains("\nX-Injected"));
        assert!(out.contains("Content-Type: message/rfc822\r\n"));
        assert!(out.contains("secret body"));
        assert!(out.ends_with(&format!("\r\n--{boundary}--\r\n")));
        assert_eq!(out.matches(&format!("--{boundary}\r\n")).count(), 3);
        assert!(!out.replace("\r\n", "").contains('\n'), "bare LF");
    }

    #[test]
    fn headers_only_when_asked_and_for_delays() {
        let out =
            String::from_utf8(build(&report(Action::Failed, Some("HDRS"), ORIGINAL), 0)).unwrap();
        assert!(out.contains("Content-Type: text/rfc822-headers\r\n"));
        assert!(out.contains("Subject: hi\r\n") && !out.contains("secret body"));
        let out =
            String::from_utf8(build(&report(Action::Delayed, Some("FULL"), ORIGINAL), 0)).unwrap();
        assert!(out.contains("Subject: Delayed Mail"));
        assert!(out.contains("Action: delayed\r\n") && out.contains("Will-Retry-Until: "));
        assert!(!out.contains("secret body"));
    }

    #[test]
    fn header_split() {
        assert_eq!(header_of(b"A: b\r\n\r\nbody"), b"A: b\r\n\r\n");
        assert_eq!(header_of(b"A: b\n\nbody"), b"A: b\n\n");
        assert_eq!(header_of(b"A: b"), b"A: b");
    }
}
