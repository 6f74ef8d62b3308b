//! RCPT TO: local recipients, aliases, quota, and never relaying for strangers.

use mailfleet_smtp_proto::{Domain, Path, RcptParams};
use mailfleet_store::address::{domain_of, normalize_address, normalize_domain};

use super::{AcceptedRcpt, End, Session};
use mailfleet_delivery::{DeliveryError, RemoteRecipient, Resolved, resolve, resolve_local};

/// What a recipient turned out to be.
enum Target {
    Local(String),
    /// `<Postmaster>` with no local postmaster domain: the `smtp.postmaster` address.
    Postmaster,
    Remote(String),
    Refused(u16, &'static str, String),
}

impl Session {
    /// The address `<Postmaster>` stands for: postmaster at the node's host name, or at its
    /// parent domain.
    async fn postmaster(&self) -> Result<Option<String>, mailfleet_store::StoreError> {
        let host = self.shared.hostname.to_ascii_lowercase();
        let mut candidates = vec![host.clone()];
        if let Some((_, parent)) = host.split_once('.') {
            candidates.push(parent.to_string());
        }
        for d in candidates {
            if self.shared.ctx.store.domain_exists(&d).await? {
                return Ok(Some(format!("postmaster@{d}")));
            }
        }
        Ok(None)
    }

    async fn classify(
        &self,
        path: &Path,
        smtputf8: bool,
    ) -> Result<Target, mailfleet_store::StoreError> {
        let store = self.shared.ctx.store.clone();
        let mailbox = match path {
            Path::Postmaster => {
                return Ok(match self.postmaster().await? {
                    Some(a) => Target::Local(a),
                    None if !self.policy.postmaster.is_empty() => Target::Postmaster,
                    None => Target::Refused(
                        550,
                        "5.1.1",
                        "no postmaster address is configured here".into(),
                    ),
                });
            }
            Path::Mailbox { mailbox, .. } => mailbox,
        };
        if mailbox.is_utf8() && !smtputf8 {
            return Ok(Target::Refused(
                553,
                "5.6.7",
                "non-ASCII address requires SMTPUTF8".into(),
            ));
        }
        let local_domain = match &mailbox.domain {
            Domain::Literal(_) => None,
            Domain::Name(d) => match normalize_domain(d) {
                Ok(d) if store.domain_exists(&d).await? => Some(d),
                _ => None,
            },
        };
        match local_domain {
            Some(d) => match normalize_address(&format!("{}@{d}", mailbox.local)) {
                Ok(a) => Ok(Target::Local(a)),
                Err(_) => Ok(Target::Refused(
                    550,
                    "5.1.1",
                    format!("no such user here: {mailbox}"),
                )),
            },
            // Logged-in users, and clients of the site's own relay networks (port 25 only:
            // submission takes no MAIL before AUTH).
            None if self.auth.is_some() || self.policy.relay_networks.matches(self.client_ip) => {
                let remote = format!(
                    "{}@{}",
                    mailbox.local,
                    mailbox.domain.to_string().to_lowercase()
                );
                Ok(Target::Remote(remote))
            }
            None => Ok(Target::Refused(
                554,
                "5.7.1",
                format!("relay access denied: {mailbox}"),
            )),
        }
    }

    /// The accounts and remote addresses a local recipient reaches. Postmaster of a local
    /// domain (RFC 5321 §4.5.1), when no account or alias of that name exists, reaches the
    /// `smtp.postmaster` address.
    async fn resolve_recipient(&self, target: Target) -> Result<Resolved, DeliveryError> {
        let store = self.shared.ctx.store.clone();
        let postmaster = &self.policy.postmaster;
        match target {
            Target::Local(address) => {
                let found = resolve_local(store.as_ref(), &address).await?;
                let local_part = address.rsplit_once('@').map_or("", |(l, _)| l);
                if found.is_empty()
                    && local_part.eq_ignore_ascii_case("postmaster")
                    && !postmaster.is_empty()
                {
                    return resolve(store.as_ref(), postmaster).await;
                }
                Ok(found)
            }
            Target::Postmaster => resolve(store.as_ref(), postmaster).await,
            Target::Remote(_) | Target::Refused(..) => Ok(Resolved::default()),
        }
    }

    pub(crate) async fn rcpt(&mut self, path: Path, params: RcptParams) -> Result<(), End> {
        let Some(tx) = &self.tx else {
            self.say(503, "5.5.1", "need MAIL before RCPT");
            return self.error_counted();
        };
        if tx.chunks.is_some() {
            self.say(503, "5.5.1", "RCPT not allowed during BDAT");
            return self.error_counted();
        }
        if tx.rcpts.len() >= self.policy.max_recipients {
            self.say(452, "4.5.3", "too many recipients");
            return Ok(());
        }
        if !self.esmtp && params != RcptParams::default() {
            self.say(555, "5.5.4", "parameters need EHLO");
            return self.error_counted();
        }
        let smtputf8 = tx.params.smtputf8;
        let size_hint = tx.params.size.unwrap_or(0).max(1) as i64;
        let written = match &path {
            Path::Postmaster => "Postmaster".to_string(),
            Path::Mailbox { mailbox, .. } => mailbox.to_string(),
        };
        let target = match self.classify(&path, smtputf8).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(session = %self.id, "cannot look up recipient: {e}");
                self.say(451, "4.3.0", "temporary failure, try again later");
                return Ok(());
            }
        };
        let remote = |address: String| RemoteRecipient {
            address,
            notify: params.notify.clone(),
            orcpt: params.orcpt.clone(),
        };
        let accepted = match target {
            Target::Refused(code, status, text) => {
                self.say(code, status, &text);
                return self.error_counted();
            }
            Target::Remote(address) => {
                if let Some(tx) = self.tx.as_mut() {
                    tx.plan.add_remote(remote(address));
                }
                AcceptedRcpt {
                    written,
                    accounts: Vec::new(),
                    notify: params.notify.clone(),
                    orcpt: params.orcpt.clone(),
                }
            }
            target @ (Target::Local(_) | Target::Postmaster) => {
                let resolved = match self.resolve_recipient(target).await {
                    Ok(r) => r,
                    Err(DeliveryError::TooDeep(_)) => {
                        self.say(550, "5.4.6", "alias loop or nesting too deep");
                        return self.error_counted();
                    }
                    Err(DeliveryError::Store(e)) => {
                        tracing::warn!(session = %self.id, "cannot resolve {written}: {e}");
                        self.say(451, "4.3.0", "temporary failure, try again later");
                        return Ok(());
                    }
                };
                if resolved.is_empty() {
                    self.say(550, "5.1.1", &format!("no such user here: {written}"));
                    return self.error_counted();
                }
                let enabled: Vec<_> = resolved
                    .local
                    .iter()
                    .filter(|a| a.enabled)
                    .cloned()
                    .collect();
                if enabled.is_empty() && resolved.remote.is_empty() {
                    self.say(550, "5.2.1", "mailbox disabled");
                    return self.error_counted();
                }
                if let Some(full) = enabled.iter().find(|a| a.over_quota_with(size_hint)) {
                    tracing::info!(session = %self.id, account = %full.address, "over quota at RCPT");
                    self.say(452, "4.2.2", "mailbox full");
                    return Ok(());
                }
                if let Some(tx) = self.tx.as_mut() {
                    for a in &enabled {
                        tx.plan.add_local(a.id);
                    }
                    for r in resolved.remote {
                        // Forwarding by an alias of ours: allowed whoever the client is.
                        debug_assert!(!domain_of(&r).is_empty());
                        tx.plan.add_remote(remote(r));
                    }
                }
                AcceptedRcpt {
                    written,
                    accounts: enabled,
                    notify: params.notify.clone(),
                    orcpt: params.orcpt.clone(),
                }
            }
        };
        if let Some(tx) = self.tx.as_mut() {
            tx.rcpts.push(accepted);
        }
        self.say(250, "2.1.5", "recipient OK");
        Ok(())
    }
}
