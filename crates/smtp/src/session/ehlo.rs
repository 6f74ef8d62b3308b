//! EHLO / HELO and the capabilities offered.

use mailfleet_smtp_proto::Reply;

use super::Session;

impl Session {
    /// Whether AUTH may be used on this connection now.
    pub(crate) fn auth_allowed(&self) -> bool {
        self.conn.is_tls() || self.policy.allow_cleartext_auth
    }

    pub(crate) fn ehlo(&mut self, host: String, extended: bool) {
        self.tx = None;
        let hello = format!(
            "{} greets {} [{}]",
            self.shared.hostname, host, self.client_ip
        );
        self.helo = Some(host);
        self.esmtp = extended;
        if !extended {
            self.reply(Reply::plain(250, vec![hello]));
            return;
        }
        let mut lines = vec![
            hello,
            "PIPELINING".to_string(),
            format!("SIZE {}", self.policy.max_message_size),
            "8BITMIME".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
        ];
        if !self.conn.is_tls() && self.shared.tls.is_some() {
            lines.push("STARTTLS".to_string());
        }
        if self.auth_allowed() && self.auth.is_none() {
            lines.push("AUTH PLAIN LOGIN".to_string());
        }
        lines.extend(["SMTPUTF8", "CHUNKING", "DSN"].map(String::from));
        self.reply(Reply::plain(250, lines));
    }
}
