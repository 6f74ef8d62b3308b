//! What became of a recipient in one attempt.

use mailfleet_smtp_proto::Reply;

/// A failure, temporary or permanent, with what a DSN needs to describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub permanent: bool,
    /// RFC 3463 status, e.g. `5.1.1`.
    pub status: String,
    /// One line: an SMTP reply (`550 5.1.1 ...`) or what went wrong.
    pub diagnostic: String,
    /// True when `diagnostic` is the remote server's reply.
    pub from_smtp: bool,
    /// The host that answered, if any.
    pub remote: Option<String>,
}

impl Failure {
    pub fn permanent(status: &str, diagnostic: impl Into<String>) -> Self {
        Self {
            permanent: true,
            status: status.to_string(),
            diagnostic: diagnostic.into(),
            from_smtp: false,
            remote: None,
        }
    }

    pub fn temporary(status: &str, diagnostic: impl Into<String>) -> Self {
        Self {
            permanent: false,
            ..Self::permanent(status, diagnostic)
        }
    }

    /// From a 4xx or 5xx reply of `remote`.
    pub fn from_reply(reply: &Reply, remote: &str) -> Self {
        Self {
            permanent: reply.is_permanent(),
            status: status_of(reply),
            diagnostic: one_line(reply),
            from_smtp: true,
            remote: Some(remote.to_string()),
        }
    }

    /// The same failure made temporary (a 5xx to a whole session is not the recipient's fault).
    pub fn into_temporary(mut self) -> Self {
        if self.permanent {
            self.permanent = false;
            if let Some(rest) = self.status.strip_prefix('5') {
                self.status = format!("4{rest}");
            }
        }
        self
    }

    /// The text stored as the recipient's `last_error`.
    pub fn summary(&self) -> String {
        match &self.remote {
            Some(r) if self.from_smtp => format!("{r} said: {}", self.diagnostic),
            _ => self.diagnostic.clone(),
        }
    }
}

/// One recipient after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptResult {
    /// Accepted by the next hop (or a local mailbox).
    Delivered {
        remote: Option<String>,
        reply: String,
        /// The next hop does not do DSN: a `NOTIFY=SUCCESS` is answered with `relayed`.
        relayed: bool,
    },
    /// Will not be delivered.
    Failed(Failure),
    /// Try again later.
    Deferred(Failure),
}

impl RcptResult {
    /// A failure goes in the bucket its kind says.
    pub fn from_failure(f: Failure) -> Self {
        if f.permanent {
            Self::Failed(f)
        } else {
            Self::Deferred(f)
        }
    }
}

/// The RFC 3463 status of a reply: its enhanced code, else one derived from the basic code.
pub fn status_of(reply: &Reply) -> String {
    match reply.status {
        Some(s) => s.to_string(),
        None => format!("{}.0.0", (reply.code / 100).clamp(2, 5)),
    }
}

/// A reply on one line without control characters: `550 5.1.1 text`.
pub fn one_line(reply: &Reply) -> String {
    let text: String = reply
        .text()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    text.trim().to_string()
}
