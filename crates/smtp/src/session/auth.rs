//! AUTH PLAIN and LOGIN (RFC 4954, RFC 4616), with the lockout of an address after repeated
//! failures (seed 002's login policy).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use mailfleet_store::address::normalize_address;
use mailfleet_store::password::verify_password;

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
        let window = Duration::from_secs(self.policy.lockout_seconds);
        let max_failures = self.policy.lockout_failures;
        // Read once here: a login that succeeds clears the count only if there was one,
        // so a good login costs no store write.
        let failures = if max_failures == 0 {
            0
        } else {
            self.shared
                .login_failures
                .count(self.client_ip, window)
                .await
        };
        if max_failures > 0 && failures >= max_failures {
            self.say(
                454,
                "4.7.0",
                "too many failed logins from your address, try again later",
            );
            return self.error_counted();
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
        match self.verify(&user, pass).await {
            Ok(Some(account)) => {
                if failures > 0 {
                    self.shared.login_failures.succeeded(self.client_ip).await;
                }
                tracing::info!(session = %self.id, user = %account.address, ip = %self.client_ip, "authenticated");
                self.auth = Some(account);
                self.say(235, "2.7.0", "authentication successful");
                Ok(())
            }
            Ok(None) => {
                // No lockout, no memory.
                let n = if max_failures == 0 {
                    0
                } else {
                    self.shared
                        .login_failures
                        .failed(self.client_ip, window)
                        .await
                };
                tracing::info!(session = %self.id, user = %user, ip = %self.client_ip, failures = n, "authentication failed");
                self.say(535, "5.7.8", "authentication credentials invalid");
                self.error_counted()
            }
            Err(e) => {
                tracing::warn!(session = %self.id, "cannot check credentials: {e}");
                self.say(454, "4.7.0", "temporary authentication failure");
                Ok(())
            }
        }
    }

    async fn verify(
        &self,
        user: &str,
        pass: String,
    ) -> Result<Option<mailfleet_store::Account>, mailfleet_store::StoreError> {
        let Ok(address) = normalize_address(user) else {
            return Ok(None);
        };
        let Some(account) = self.shared.ctx.store.get_account(&address).await? else {
            return Ok(None);
        };
        if !account.enabled {
            return Ok(None);
        }
        let hash = account.password_hash.clone();
        let ok = tokio::task::spawn_blocking(move || verify_password(&hash, &pass))
            .await
            .unwrap_or(false);
        Ok(ok.then_some(account))
    }
}
