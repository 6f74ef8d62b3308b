//! AUTH PLAIN and LOGIN (RFC 4954, RFC 4616), with the lockout of an address after repeated
//! failures (seed 002's login policy).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use mailfleet_auth::{LoginOutcome, LoginPolicy};

use super::{End, Session};

/// One answer to a `334` challenge.
enum Answer {
    Bytes(Vec<u8>),
    Cancelled,
    Malformed,
}

impl Answer {
    fn from_initial(s: &str) -> Answer {
        decode(s).map_or(Answer::Malformed, Answer::Bytes)
    }
}

/// What the client gave, or why the exchange stopped.
enum Credentials {
    Given(String, String),
    Cancelled,
    Malformed,
}

fn decode(s: &str) -> Option<Vec<u8>> {
    if s == "=" {
        return Some(Vec::new());
    }
    B64.decode(s.trim()).ok()
}

fn plain_credentials(bytes: &[u8]) -> Credentials {
    // authzid NUL authcid NUL passwd
    let parts: Vec<&[u8]> = bytes.split(|&b| b == 0).collect();
    if parts.len() != 3 {
        return Credentials::Malformed;
    }
    let (Ok(authz), Ok(user), Ok(pass)) = (
        std::str::from_utf8(parts[0]),
        std::str::from_utf8(parts[1]),
        std::str::from_utf8(parts[2]),
    ) else {
        return Credentials::Malformed;
    };
    if !authz.is_empty() && !authz.eq_ignore_ascii_case(user) {
        // Acting for someone else is not offered.
        return Credentials::Malformed;
    }
    Credentials::Given(user.to_string(), pass.to_string())
}

impl Session {
    /// Sends a `334` challenge and reads the client's base64 answer.
    async fn challenge(&mut self, text: &str) -> Result<Answer, End> {
        self.outbuf
            .extend_from_slice(format!("334 {text}\r\n").as_bytes());
        let Some(line) = self.read_line().await? else {
            return Ok(Answer::Malformed);
        };
        if line.trim() == "*" {
            return Ok(Answer::Cancelled);
        }
        Ok(decode(&line).map_or(Answer::Malformed, Answer::Bytes))
    }

    pub(crate) async fn auth(
        &mut self,
        mechanism: String,
        initial: Option<String>,
    ) -> Result<(), End> {
        if self.auth.is_some() {
            self.say(503, "5.5.1", "already authenticated");
            return Ok(());
        }
        if !self.esmtp {
            self.say(503, "5.5.1", "send EHLO first");
            return Ok(());
        }
        if self.tx.is_some() {
            self.say(503, "5.5.1", "AUTH not allowed during a mail transaction");
            return Ok(());
        }
        if !self.auth_allowed() {
            self.say(
                538,
                "5.7.11",
                "encryption required for requested authentication mechanism",
            );
            return self.error_counted();
        }
        // Refused before any exchange while the address is locked out (the authenticator
        // decides again, atomically, once the credentials are in).
        if self.policy.lockout_failures > 0 {
            let window = self.policy.lockout_seconds as i64;
            let failures = self
                .shared
                .ctx
                .store
                .auth_failures(&self.client_ip.to_string(), mailfleet_store::now(), window)
                .await
                .unwrap_or(0);
            if failures >= i64::from(self.policy.lockout_failures) {
                return self.locked_out();
            }
        }
        let creds = match mechanism.as_str() {
            "PLAIN" => {
                let answer = match initial {
                    Some(i) => Answer::from_initial(&i),
                    None => self.challenge("").await?,
                };
                match answer {
                    Answer::Bytes(b) => plain_credentials(&b),
                    Answer::Cancelled => Credentials::Cancelled,
                    Answer::Malformed => Credentials::Malformed,
                }
            }
            "LOGIN" => {
                let user = match initial {
                    Some(i) => Answer::from_initial(&i),
                    None => self.challenge("VXNlcm5hbWU6").await?,
                };
                match user {
                    Answer::Cancelled => Credentials::Cancelled,
                    Answer::Malformed => Credentials::Malformed,
                    Answer::Bytes(user) => match self.challenge("UGFzc3dvcmQ6").await? {
                        Answer::Cancelled => Credentials::Cancelled,
                        Answer::Malformed => Credentials::Malformed,
                        Answer::Bytes(pass) => {
                            match (String::from_utf8(user), String::from_utf8(pass)) {
                                (Ok(u), Ok(p)) => Credentials::Given(u, p),
                                _ => Credentials::Malformed,
                            }
                        }
                    },
                }
            }
            _ => {
                self.say(504, "5.5.4", "unrecognized authentication mechanism");
                return self.error_counted();
            }
        };
        let (user, pass) = match creds {
            Credentials::Given(u, p) => (u, p),
            Credentials::Cancelled => {
                self.say(501, "5.7.0", "authentication cancelled");
                return Ok(());
            }
            Credentials::Malformed => {
                self.say(501, "5.5.2", "cannot decode the credentials");
                return self.error_counted();
            }
        };
        let policy = LoginPolicy {
            lockout_failures: self.policy.lockout_failures,
            lockout_window: Duration::from_secs(self.policy.lockout_seconds),
            cache_ttl: self.policy.auth_cache,
            timeout: self.policy.timeout,
        };
        let auth = self.shared.ctx.auth.clone();
        match auth.login(self.client_ip, &user, &pass, &policy).await {
            LoginOutcome::Success(account) => {
                tracing::info!(session = %self.id, user = %account.address, ip = %self.client_ip, "authenticated");
                self.auth = Some(account);
                self.say(235, "2.7.0", "authentication successful");
                Ok(())
            }
            LoginOutcome::Invalid => {
                tracing::info!(session = %self.id, user = %user, ip = %self.client_ip, "authentication failed");
                self.say(535, "5.7.8", "authentication credentials invalid");
                self.error_counted()
            }
            LoginOutcome::LockedOut => {
                tracing::info!(session = %self.id, user = %user, ip = %self.client_ip, "authentication refused: address locked out");
                self.locked_out()
            }
            LoginOutcome::Unavailable(why) => {
                tracing::warn!(session = %self.id, ip = %self.client_ip, "cannot check credentials: {why}");
                self.say(454, "4.7.0", "temporary authentication failure");
                Ok(())
            }
        }
    }

    fn locked_out(&mut self) -> Result<(), End> {
        self.say(
            454,
            "4.7.0",
            "too many failed logins from your address, try again later",
        );
        self.error_counted()
    }
}
