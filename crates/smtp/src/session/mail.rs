//! MAIL FROM: who may send, as whom, how often, how large.

use mailfleet_smtp_proto::{MailParams, Ret, ReversePath};

use super::{End, Session, Transaction};
use mailfleet_delivery::{Plan, sender_belongs_to};

impl Session {
    pub(crate) async fn mail(&mut self, path: ReversePath, params: MailParams) -> Result<(), End> {
        if self.helo.is_none() {
            self.say(503, "5.5.1", "send EHLO or HELO first");
            return self.error_counted();
        }
        if self.tx.is_some() {
            self.say(503, "5.5.1", "nested MAIL command");
            return self.error_counted();
        }
        if self.service.needs_auth() && self.auth.is_none() {
            self.say(530, "5.7.0", "authentication required");
            return self.error_counted();
        }
        if !self.esmtp && (params != MailParams::default()) {
            self.say(555, "5.5.4", "parameters need EHLO");
            return self.error_counted();
        }
        let sender = match &path {
            ReversePath::Null => String::new(),
            ReversePath::Mailbox { mailbox, .. } => {
                if mailbox.is_utf8() && !params.smtputf8 {
                    self.say(553, "5.6.7", "non-ASCII address requires SMTPUTF8");
                    return self.error_counted();
                }
                mailbox.to_string()
            }
        };
        if let Some(size) = params.size
            && size > self.policy.max_message_size as u64
        {
            self.say(
                552,
                "5.3.4",
                "message size exceeds fixed maximum message size",
            );
            return Ok(());
        }
        if let Some(account) = self.auth.clone()
            && self.policy.sender_must_match
        {
            let store = self.shared.ctx.store.clone();
            let ok = !sender.is_empty()
                && match sender_belongs_to(store.as_ref(), &sender, &account).await {
                    Ok(ok) => ok,
                    Err(e) => {
                        tracing::warn!(session = %self.id, "cannot check sender: {e}");
                        self.say(451, "4.3.0", "temporary failure, try again later");
                        return Ok(());
                    }
                };
            if !ok {
                self.say(
                    553,
                    "5.7.1",
                    &format!("sender address not owned by user {}", account.address),
                );
                return self.error_counted();
            }
        }
        let rate_key = match &self.auth {
            Some(a) => a.address.clone(),
            None if sender.is_empty() => format!("<>@{}", self.client_ip),
            None => sender.to_lowercase(),
        };
        // Counted when a message is accepted; checked here, before the client sends it.
        if !self
            .shared
            .rates
            .within(&rate_key, self.policy.rate_per_minute)
            .await
        {
            self.say(
                450,
                "4.7.1",
                "too many messages from this sender, try again later",
            );
            return Ok(());
        }
        let plan = Plan {
            sender: sender.clone(),
            envid: params.envid.clone(),
            ret: params.ret.map(|r| match r {
                Ret::Full => "FULL".to_string(),
                Ret::Hdrs => "HDRS".to_string(),
            }),
            ..Plan::default()
        };
        self.tx = Some(Transaction {
            sender,
            rate_key,
            params,
            rcpts: Vec::new(),
            plan,
            chunks: None,
        });
        self.say(250, "2.1.0", "sender OK");
        Ok(())
    }
}
