//! STARTTLS, LOGIN, AUTHENTICATE (PLAIN and LOGIN, with SASL-IR), ENABLE and ID.
//!
//! Logins go through the node's authenticator: the same address lockout, account pacing and
//! login cache as SMTP and POP3. Before TLS they are refused (`LOGINDISABLED` in the
//! capabilities) unless `imap.auth.allow_cleartext`. Wrong credentials get
//! `NO [AUTHENTICATIONFAILED]` after a short delay; a locked-out address `NO [UNAVAILABLE]`.

use std::time::Duration;

use mailfleet_auth::{LoginOutcome, LoginPolicy};
use mailfleet_imap_proto::{AuthLine, Code, Data, Response, Secret, Status, decode_auth_line};
use mailfleet_listener::Conn;
use mailfleet_store::Account;

use crate::session::{End, Reply, Session};

/// How long a failed login waits before its answer.
const FAILURE_DELAY: Duration = Duration::from_millis(500);
/// Longest SASL response line.
const MAX_AUTH_LINE: usize = 16 * 1024;

impl Session {
    pub async fn starttls(&mut self, tag: &str) -> Result<(), End> {
        if self.conn.is_tls() {
            self.finish(
                tag,
                Reply::bad("TLS is already active"),
                crate::session::Updates::None,
            )
            .await?;
            return Ok(());
        }
        self.send(Response::Tagged {
            tag: tag.to_string(),
            status: Status::Ok,
            code: None,
            text: "begin TLS negotiation now".into(),
        });
        self.flush().await?;
        // What the client sent after STARTTLS in the clear must not count as sent over TLS.
        self.inbuf.clear();
        self.decoder.reset();
        let Conn::Plain(tcp) = std::mem::replace(&mut self.conn, Conn::Empty) else {
            return Err(End::Io);
        };
        let acceptor = self.shared.tls.clone();
        match tokio::time::timeout(Duration::from_secs(30), acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => {
                self.conn = Conn::Tls(Box::new(tls));
                Ok(())
            }
            _ => Err(End::Io),
        }
    }

    fn tls_first(&self) -> Reply {
        Reply::no(
            Some(Code::PrivacyRequired),
            "login needs TLS: use STARTTLS or port 993 first",
        )
    }

    pub async fn login_command(&mut self, user: &str, pass: &[u8]) -> Reply {
        if !self.login_allowed() {
            return self.tls_first();
        }
        let Ok(pass) = std::str::from_utf8(pass) else {
            return self.failed_login(user).await;
        };
        self.login(user, pass).await
    }

    pub async fn authenticate(
        &mut self,
        mechanism: &str,
        initial: Option<Secret>,
    ) -> Result<Reply, End> {
        if !self.login_allowed() {
            return Ok(self.tls_first());
        }
        let mech = mechanism.to_ascii_uppercase();
        match mech.as_str() {
            "PLAIN" => {
                let response = match initial {
                    Some(s) => s.0,
                    None => match self.sasl_step(b"").await? {
                        Some(r) => r,
                        None => return Ok(Reply::bad("authentication cancelled")),
                    },
                };
                let fields: Vec<&[u8]> = response.split(|&c| c == 0).collect();
                let [authz, user, pass] = fields.as_slice() else {
                    return Ok(Reply::bad("cannot decode the credentials"));
                };
                let (Ok(authz), Ok(user), Ok(pass)) = (
                    std::str::from_utf8(authz),
                    std::str::from_utf8(user),
                    std::str::from_utf8(pass),
                ) else {
                    return Ok(self.failed_login("").await);
                };
                // Acting for someone else is not offered.
                if !authz.is_empty() && !authz.eq_ignore_ascii_case(user) {
                    return Ok(Reply::no(
                        Some(Code::AuthorizationFailed),
                        "acting for another user is not allowed",
                    ));
                }
                let (user, pass) = (user.to_string(), pass.to_string());
                Ok(self.login(&user, &pass).await)
            }
            "LOGIN" => {
                let user = match initial {
                    Some(s) => s.0,
                    None => match self.sasl_step(b"Username:").await? {
                        Some(r) => r,
                        None => return Ok(Reply::bad("authentication cancelled")),
                    },
                };
                let pass = match self.sasl_step(b"Password:").await? {
                    Some(r) => r,
                    None => return Ok(Reply::bad("authentication cancelled")),
                };
                let user = String::from_utf8_lossy(&user).into_owned();
                match String::from_utf8(pass) {
                    Ok(pass) => Ok(self.login(&user, &pass).await),
                    Err(_) => Ok(self.failed_login(&user).await),
                }
            }
            _ => Ok(Reply::no(Some(Code::Cannot), "unsupported mechanism")),
        }
    }

    /// Sends a challenge and reads the response; `None` when the client cancels or the line
    /// is not base64.
    async fn sasl_step(&mut self, challenge: &[u8]) -> Result<Option<Vec<u8>>, End> {
        self.send(Response::Challenge(challenge.to_vec()));
        loop {
            match decode_auth_line(&self.inbuf, MAX_AUTH_LINE) {
                Ok(Some((line, n))) => {
                    self.inbuf.drain(..n);
                    return Ok(match line {
                        AuthLine::Response(s) => Some(s.0),
                        AuthLine::Cancel => None,
                    });
                }
                Ok(None) => {
                    if !self.fill().await? {
                        return Err(End::Io);
                    }
                }
                Err(e) => {
                    let n = e.consumed.min(self.inbuf.len());
                    self.inbuf.drain(..n);
                    if !e.line_complete {
                        self.discard_line().await?;
                    }
                    return Ok(None);
                }
            }
        }
    }

    async fn failed_login(&mut self, user: &str) -> Reply {
        tracing::info!(session = %self.id, user = %user, ip = %self.client_ip, "imap login failed");
        tokio::time::sleep(FAILURE_DELAY).await;
        Reply::no(Some(Code::AuthenticationFailed), "authentication failed")
    }

    async fn login(&mut self, user: &str, pass: &str) -> Reply {
        let policy = LoginPolicy {
            lockout_failures: self.policy.lockout_failures,
            lockout_window: self.policy.lockout_window,
            cache_ttl: self.policy.login_cache,
            timeout: Duration::from_secs(30),
        };
        let auth = self.shared.ctx.auth.clone();
        match auth.login(self.client_ip, user, pass, &policy).await {
            LoginOutcome::Success(account) => self.logged_in(account),
            LoginOutcome::Invalid => self.failed_login(user).await,
            LoginOutcome::LockedOut => Reply::no(
                Some(Code::Unavailable),
                "too many failed logins from your address, try again later",
            ),
            LoginOutcome::Unavailable(why) => {
                tracing::warn!(session = %self.id, "cannot check credentials: {why}");
                Reply::no(
                    Some(Code::Unavailable),
                    "temporary failure, try again later",
                )
            }
        }
    }

    fn logged_in(&mut self, account: Account) -> Reply {
        tracing::info!(session = %self.id, user = %account.address, ip = %self.client_ip, "imap login");
        self.account = Some(account);
        let caps = self.capabilities();
        Reply::ok_code(Code::Capability(caps), "logged in")
    }

    pub fn enable(&mut self, caps: Vec<String>) -> Reply {
        let mut enabled = Vec::new();
        for c in caps {
            let up = c.to_ascii_uppercase();
            let newly = match up.as_str() {
                "CONDSTORE" => !std::mem::replace(&mut self.condstore, true),
                "QRESYNC" => {
                    self.condstore = true;
                    !std::mem::replace(&mut self.qresync, true)
                }
                "IMAP4REV2" => {
                    let was = self.rev2;
                    self.rev2 = true;
                    self.utf8 = true;
                    !was
                }
                "UTF8=ACCEPT" => !std::mem::replace(&mut self.utf8, true),
                _ => false,
            };
            if newly {
                enabled.push(up);
            }
        }
        self.update_decoder();
        self.untagged(Data::Enabled(enabled));
        Reply::ok("ENABLE completed")
    }

    pub fn id_command(&mut self, _params: Option<Vec<(String, Option<String>)>>) -> Reply {
        self.untagged(Data::Id(Some(vec![
            ("name".into(), Some("mailfleet".into())),
            ("version".into(), Some(env!("CARGO_PKG_VERSION").into())),
        ])));
        Reply::ok("ID completed")
    }
}
