//! One POP3 session: the read/parse/answer loop over the sans-IO `mailfleet-pop3-proto`,
//! the AUTHORIZATION, TRANSACTION and UPDATE states of RFC 1939.
//!
//! Answers are collected and written when no further complete command is buffered
//! (PIPELINING, RFC 2449), before every read.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use mailfleet_auth::{LoginOutcome, LoginPolicy};
use mailfleet_listener::{Conn, ConnectionSlot};
use mailfleet_pop3_proto::{
    Command, CommandErrorKind, DotStuffer, MAX_COMMAND_LINE, Parsed, RespCode, err, lines, ok,
    parse_command, parse_line, skip_line, top,
};
use mailfleet_store::Account;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Shared;
use crate::settings::Policy;

const READ_CHUNK: usize = 16 * 1024;
/// Written out whenever this much is waiting (a large RETR), so memory stays bounded by it
/// and the message.
const FLUSH_AT: usize = 256 * 1024;
/// Protocol errors before the connection is closed.
const MAX_ERRORS: u32 = 20;

/// Why a session stopped early.
enum End {
    /// The socket failed or the client went away.
    Io,
    /// We close (after what is in the output buffer).
    Close,
}

impl From<std::io::Error> for End {
    fn from(_: std::io::Error) -> Self {
        End::Io
    }
}

struct Msg {
    uid: u32,
    size: i64,
    blob_id: String,
    deleted: bool,
}

/// A locked maildrop: the INBOX as it was at login.
struct Maildrop {
    account: Account,
    mailbox_id: i64,
    uidvalidity: u32,
    messages: Vec<Msg>,
    lease: String,
    renewed: Instant,
}

impl Maildrop {
    fn live(&self) -> impl Iterator<Item = (usize, &Msg)> {
        self.messages
            .iter()
            .enumerate()
            .filter(|(_, m)| !m.deleted)
            .map(|(i, m)| (i + 1, m))
    }

    /// The message a client's number names, unless it was deleted.
    fn get(&self, n: u32) -> Option<&Msg> {
        let m = self.messages.get((n as usize).checked_sub(1)?)?;
        (!m.deleted).then_some(m)
    }
}

enum State {
    Authorization { user: Option<String> },
    Transaction(Box<Maildrop>),
}

pub(crate) struct Session {
    shared: Arc<Shared>,
    conn: Conn,
    client_ip: IpAddr,
    id: String,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    policy: Policy,
    state: State,
    errors: u32,
}

impl Session {
    pub(crate) fn new(shared: Arc<Shared>, conn: Conn, client_ip: IpAddr) -> Session {
        let policy = shared.policy();
        let id = shared.next_id();
        Session {
            shared,
            conn,
            client_ip,
            id,
            inbuf: Vec::with_capacity(1024),
            out: Vec::with_capacity(1024),
            policy,
            state: State::Authorization { user: None },
            errors: 0,
        }
    }

    pub(crate) async fn run(mut self, slot: ConnectionSlot) {
        ok(
            &mut self.out,
            &format!("{} POP3 mailfleet ready", self.shared.hostname),
        );
        let _ = self.serve().await;
        // The slot under the connection limits goes back before the last words are written,
        // so a client that reads them and connects again finds it free.
        drop(slot);
        let _ = self.flush().await;
        let _ = self.conn.shutdown().await;
        self.release().await;
    }

    /// Gives up the maildrop lock, if held (QUIT released it already).
    async fn release(&mut self) {
        if let State::Transaction(m) = &self.state
            && let Err(e) = self
                .shared
                .ctx
                .store
                .release_lease(&m.lease, &self.id)
                .await
        {
            tracing::warn!(session = %self.id, "maildrop lock not released: {e}");
        }
    }

    async fn flush(&mut self) -> Result<(), End> {
        if !self.out.is_empty() {
            self.conn.write_all(&self.out).await?;
            self.conn.flush().await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Reads more input after flushing; `false` at EOF. Idle past the timeout, or shutdown:
    /// the connection closes.
    async fn fill(&mut self) -> Result<bool, End> {
        self.flush().await?;
        let start = self.inbuf.len();
        self.inbuf.resize(start + READ_CHUNK, 0);
        let shutdown = self.shared.shutdown.clone();
        let read = tokio::select! {
            _ = shutdown.cancelled() => {
                self.inbuf.truncate(start);
                err(&mut self.out, Some(RespCode::SysTemp), "server shutting down");
                return Err(End::Close);
            }
            r = tokio::time::timeout(self.policy.timeout, self.conn.read(&mut self.inbuf[start..])) => r,
        };
        match read {
            Ok(Ok(n)) => {
                self.inbuf.truncate(start + n);
                Ok(n > 0)
            }
            Ok(Err(_)) => Err(End::Io),
            Err(_) => {
                self.inbuf.truncate(start);
                err(&mut self.out, None, "autologout: idle too long");
                Err(End::Close)
            }
        }
    }

    fn error_counted(&mut self) -> Result<(), End> {
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            err(&mut self.out, None, "too many errors, closing connection");
            return Err(End::Close);
        }
        Ok(())
    }

    async fn serve(&mut self) -> Result<(), End> {
        loop {
            loop {
                match parse_command(&self.inbuf) {
                    Ok(Parsed::Complete(cmd, n)) => {
                        self.inbuf.drain(..n);
                        self.policy = self.shared.policy();
                        if !self.handle(cmd).await? {
                            return Ok(());
                        }
                    }
                    Ok(Parsed::Incomplete) => break,
                    Err(e) => {
                        self.inbuf.drain(..e.consumed);
                        if !e.line_complete {
                            self.discard_line().await?;
                        }
                        let text = match e.kind {
                            CommandErrorKind::Unknown => "unknown command".to_string(),
                            k => k.to_string(),
                        };
                        err(&mut self.out, None, &text);
                        self.error_counted()?;
                    }
                }
                if self.out.len() >= FLUSH_AT {
                    self.flush().await?;
                }
            }
            if !self.fill().await? {
                return Ok(());
            }
        }
    }

    /// Drops the rest of an over-long line as it arrives.
    async fn discard_line(&mut self) -> Result<(), End> {
        loop {
            let (n, done) = skip_line(&self.inbuf);
            self.inbuf.drain(..n);
            if done {
                return Ok(());
            }
            if !self.fill().await? {
                return Err(End::Io);
            }
        }
    }

    /// One command; `false` when the session is over.
    async fn handle(&mut self, cmd: Command) -> Result<bool, End> {
        tracing::trace!(session = %self.id, command = cmd.keyword(), "command");
        match (&self.state, cmd) {
            (_, Command::Capa) => self.capa(),
            (_, Command::Quit) => {
                self.quit().await;
                return Ok(false);
            }
            (_, Command::Noop) if matches!(self.state, State::Transaction(_)) => {
                ok(&mut self.out, "");
            }
            (State::Authorization { .. }, Command::Stls) => return self.stls().await,
            (State::Authorization { .. }, Command::User(user)) => {
                if !self.login_allowed() {
                    return self.tls_first();
                }
                self.state = State::Authorization { user: Some(user) };
                ok(&mut self.out, "send PASS");
            }
            (State::Authorization { user }, Command::Pass(pass)) => {
                let Some(user) = user.clone() else {
                    err(&mut self.out, None, "USER first");
                    return self.error_counted().map(|_| true);
                };
                self.state = State::Authorization { user: None };
                if !self.login_allowed() {
                    return self.tls_first();
                }
                self.login(&user, &pass).await;
            }
            (State::Authorization { .. }, Command::Auth { mechanism, initial }) => {
                return self.auth(mechanism, initial).await;
            }
            (State::Transaction(_), cmd) => self.transaction(cmd).await?,
            (State::Authorization { .. }, _) => {
                err(&mut self.out, None, "not allowed before login");
                self.error_counted()?;
            }
        }
        Ok(true)
    }

    fn login_allowed(&self) -> bool {
        self.conn.is_tls() || self.policy.allow_cleartext
    }

    fn tls_first(&mut self) -> Result<bool, End> {
        err(
            &mut self.out,
            Some(RespCode::Auth),
            "login needs TLS: use STLS first",
        );
        self.error_counted().map(|_| true)
    }

    fn capa(&mut self) {
        ok(&mut self.out, "capability list follows");
        let mut caps = vec![
            "TOP",
            "UIDL",
            "RESP-CODES",
            "AUTH-RESP-CODE",
            "PIPELINING",
            "IMPLEMENTATION mailfleet",
        ];
        if matches!(self.state, State::Authorization { .. }) {
            if !self.conn.is_tls() {
                caps.push("STLS");
            }
            if self.login_allowed() {
                caps.push("USER");
                caps.push("SASL PLAIN");
            }
        }
        lines(&mut self.out, caps);
    }

    async fn stls(&mut self) -> Result<bool, End> {
        if self.conn.is_tls() {
            err(&mut self.out, None, "TLS already active");
            return self.error_counted().map(|_| true);
        }
        ok(&mut self.out, "begin TLS negotiation");
        self.flush().await?;
        // What the client sent after STLS in the clear must not count as sent over TLS.
        self.inbuf.clear();
        let Conn::Plain(tcp) = std::mem::replace(&mut self.conn, Conn::Empty) else {
            return Err(End::Io);
        };
        let acceptor = self.shared.tls.clone();
        match tokio::time::timeout(Duration::from_secs(30), acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => {
                self.conn = Conn::Tls(Box::new(tls));
                self.state = State::Authorization { user: None };
                Ok(true)
            }
            _ => Err(End::Io),
        }
    }

    /// AUTH: the mechanism list, or SASL PLAIN with or without an initial response.
    async fn auth(
        &mut self,
        mechanism: Option<String>,
        initial: Option<String>,
    ) -> Result<bool, End> {
        let Some(mechanism) = mechanism else {
            ok(&mut self.out, "mechanisms follow");
            lines(&mut self.out, ["PLAIN"]);
            return Ok(true);
        };
        if !self.login_allowed() {
            return self.tls_first();
        }
        if mechanism != "PLAIN" {
            err(&mut self.out, None, "unsupported mechanism");
            return self.error_counted().map(|_| true);
        }
        let response = match initial {
            Some(i) => i,
            None => {
                mailfleet_pop3_proto::continuation(&mut self.out, "");
                match self.read_line().await? {
                    Some(line) => line,
                    None => {
                        err(&mut self.out, None, "line too long");
                        return self.error_counted().map(|_| true);
                    }
                }
            }
        };
        if response.trim() == "*" {
            err(&mut self.out, None, "authentication cancelled");
            return Ok(true);
        }
        let decoded = if response == "=" {
            Some(Vec::new())
        } else {
            B64.decode(response.trim()).ok()
        };
        let parts: Option<(String, String)> = decoded.and_then(|b| {
            let fields: Vec<&[u8]> = b.split(|&c| c == 0).collect();
            match fields.as_slice() {
                [authz, user, pass] => {
                    let user = std::str::from_utf8(user).ok()?;
                    let authz = std::str::from_utf8(authz).ok()?;
                    // Acting for someone else is not offered.
                    if !authz.is_empty() && !authz.eq_ignore_ascii_case(user) {
                        return None;
                    }
                    Some((
                        user.to_string(),
                        std::str::from_utf8(pass).ok()?.to_string(),
                    ))
                }
                _ => None,
            }
        });
        match parts {
            Some((user, pass)) => self.login(&user, &pass).await,
            None => {
                err(&mut self.out, None, "cannot decode the credentials");
                self.error_counted()?;
            }
        }
        Ok(true)
    }

    /// One line of a SASL exchange, bounded like a command; `None` if it was too long.
    async fn read_line(&mut self) -> Result<Option<String>, End> {
        loop {
            match parse_line(&self.inbuf, MAX_COMMAND_LINE) {
                Ok(Parsed::Complete(line, n)) => {
                    let s = String::from_utf8_lossy(line).into_owned();
                    self.inbuf.drain(..n);
                    return Ok(Some(s));
                }
                Ok(Parsed::Incomplete) => {
                    if !self.fill().await? {
                        return Err(End::Io);
                    }
                }
                Err(n) => {
                    self.inbuf.drain(..n);
                    self.discard_line().await?;
                    return Ok(None);
                }
            }
        }
    }

    async fn login(&mut self, user: &str, pass: &str) {
        let policy = LoginPolicy {
            lockout_failures: self.policy.lockout_failures,
            lockout_window: self.policy.lockout_window,
            cache_ttl: self.policy.login_cache,
            timeout: self.policy.timeout,
        };
        let auth = self.shared.ctx.auth.clone();
        match auth.login(self.client_ip, user, pass, &policy).await {
            LoginOutcome::Success(account) => self.open_maildrop(account).await,
            LoginOutcome::Invalid => {
                tracing::info!(session = %self.id, user = %user, ip = %self.client_ip, "pop3 login failed");
                err(&mut self.out, Some(RespCode::Auth), "authentication failed");
            }
            LoginOutcome::LockedOut => {
                err(
                    &mut self.out,
                    Some(RespCode::LoginDelay),
                    "too many failed logins from your address, try again later",
                );
            }
            LoginOutcome::Unavailable(why) => {
                tracing::warn!(session = %self.id, "cannot check credentials: {why}");
                err(
                    &mut self.out,
                    Some(RespCode::SysTemp),
                    "temporary failure, try again later",
                );
            }
        }
    }

    /// How long the maildrop lock lasts without a command: the idle timeout and a minute.
    fn lock_secs(&self) -> i64 {
        self.policy.timeout.as_secs() as i64 + 60
    }

    async fn open_maildrop(&mut self, account: Account) {
        let store = self.shared.ctx.store.clone();
        let lease = format!("pop3:{}", account.id);
        match store
            .acquire_lease(&lease, &self.id, mailfleet_store::now(), self.lock_secs())
            .await
        {
            Ok(Some(_)) => {}
            Ok(None) => {
                err(
                    &mut self.out,
                    Some(RespCode::InUse),
                    "maildrop is in use by another session",
                );
                return;
            }
            Err(e) => {
                tracing::warn!(session = %self.id, "maildrop lock not taken: {e}");
                err(&mut self.out, Some(RespCode::SysTemp), "temporary failure");
                return;
            }
        }
        let snapshot = async {
            let Some(inbox) = store.get_mailbox(account.id, "INBOX").await? else {
                return Ok((0, 0, Vec::new()));
            };
            let messages = store.list_messages(inbox.id, 1, u32::MAX).await?;
            Ok::<_, mailfleet_store::StoreError>((inbox.id, inbox.uidvalidity, messages))
        };
        match snapshot.await {
            Ok((mailbox_id, uidvalidity, messages)) => {
                let messages: Vec<Msg> = messages
                    .into_iter()
                    .map(|m| Msg {
                        uid: m.uid,
                        size: m.size,
                        blob_id: m.blob_id,
                        deleted: false,
                    })
                    .collect();
                let octets: i64 = messages.iter().map(|m| m.size).sum();
                tracing::info!(session = %self.id, user = %account.address, ip = %self.client_ip, messages = messages.len(), "pop3 login");
                ok(
                    &mut self.out,
                    &format!("maildrop has {} messages ({octets} octets)", messages.len()),
                );
                self.state = State::Transaction(Box::new(Maildrop {
                    account,
                    mailbox_id,
                    uidvalidity,
                    messages,
                    lease,
                    renewed: Instant::now(),
                }));
            }
            Err(e) => {
                tracing::warn!(session = %self.id, "maildrop not read: {e}");
                let _ = store.release_lease(&lease, &self.id).await;
                err(&mut self.out, Some(RespCode::SysTemp), "temporary failure");
            }
        }
    }

    /// Renews the maildrop lock when a third of its time has gone; `false` if it was lost.
    async fn keep_lock(&mut self) -> bool {
        let secs = self.lock_secs();
        let State::Transaction(m) = &mut self.state else {
            return false;
        };
        if m.renewed.elapsed() < Duration::from_secs((secs / 3).max(1) as u64) {
            return true;
        }
        match self
            .shared
            .ctx
            .store
            .acquire_lease(&m.lease, &self.id, mailfleet_store::now(), secs)
            .await
        {
            Ok(Some(_)) => {
                m.renewed = Instant::now();
                true
            }
            Ok(None) => false,
            // The store is away for now; the lock may still be ours.
            Err(_) => true,
        }
    }

    async fn transaction(&mut self, cmd: Command) -> Result<(), End> {
        if !self.keep_lock().await {
            err(
                &mut self.out,
                Some(RespCode::InUse),
                "maildrop lock lost, closing",
            );
            // Nothing is deleted: the lock is someone else's now.
            self.state = State::Authorization { user: None };
            return Err(End::Close);
        }
        let State::Transaction(m) = &mut self.state else {
            return Ok(());
        };
        match cmd {
            Command::Stat => {
                let (n, octets) = m
                    .live()
                    .fold((0, 0i64), |(n, o), (_, msg)| (n + 1, o + msg.size));
                ok(&mut self.out, &format!("{n} {octets}"));
            }
            Command::List(None) => {
                ok(&mut self.out, "scan listing follows");
                let listing: Vec<String> = m
                    .live()
                    .map(|(i, msg)| format!("{i} {}", msg.size))
                    .collect();
                lines(&mut self.out, listing.iter().map(String::as_str));
            }
            Command::Uidl(None) => {
                ok(&mut self.out, "unique-id listing follows");
                let v = m.uidvalidity;
                let listing: Vec<String> = m
                    .live()
                    .map(|(i, msg)| format!("{i} {v}.{}", msg.uid))
                    .collect();
                lines(&mut self.out, listing.iter().map(String::as_str));
            }
            Command::List(Some(n)) => match m.get(n) {
                Some(msg) => ok(&mut self.out, &format!("{n} {}", msg.size)),
                None => return self.no_such_message(),
            },
            Command::Uidl(Some(n)) => match m.get(n) {
                Some(msg) => ok(&mut self.out, &format!("{n} {}.{}", m.uidvalidity, msg.uid)),
                None => return self.no_such_message(),
            },
            Command::Dele(n) => match m.messages.get_mut((n as usize).wrapping_sub(1)) {
                Some(msg) if !msg.deleted => {
                    msg.deleted = true;
                    ok(&mut self.out, &format!("message {n} deleted"));
                }
                _ => return self.no_such_message(),
            },
            Command::Rset => {
                for msg in &mut m.messages {
                    msg.deleted = false;
                }
                let count = m.messages.len();
                ok(&mut self.out, &format!("maildrop has {count} messages"));
            }
            Command::Retr(n) => {
                let Some(blob) = m.get(n).map(|msg| msg.blob_id.clone()) else {
                    return self.no_such_message();
                };
                self.send_message(&blob, None).await?;
            }
            Command::Top(n, count) => {
                let Some(blob) = m.get(n).map(|msg| msg.blob_id.clone()) else {
                    return self.no_such_message();
                };
                self.send_message(&blob, Some(count)).await?;
            }
            Command::Noop => ok(&mut self.out, ""),
            _ => {
                err(&mut self.out, None, "not allowed after login");
                self.error_counted()?;
            }
        }
        Ok(())
    }

    fn no_such_message(&mut self) -> Result<(), End> {
        err(&mut self.out, None, "no such message");
        self.error_counted()
    }

    /// RETR (all of it) or TOP (`lines` body lines), dot-stuffed, written in pieces.
    async fn send_message(&mut self, blob_id: &str, lines: Option<u32>) -> Result<(), End> {
        let bytes = match self.shared.ctx.blobs.get(blob_id).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(session = %self.id, "message {blob_id} not read: {e}");
                err(
                    &mut self.out,
                    Some(RespCode::SysTemp),
                    "message cannot be read now",
                );
                return Ok(());
            }
        };
        let body = match lines {
            Some(n) => top(&bytes, n),
            None => &bytes[..],
        };
        ok(&mut self.out, &format!("{} octets", body.len()));
        let mut stuffer = DotStuffer::default();
        for chunk in body.chunks(64 * 1024) {
            stuffer.feed(chunk, &mut self.out);
            if self.out.len() >= FLUSH_AT {
                self.flush().await?;
            }
        }
        stuffer.finish(&mut self.out);
        Ok(())
    }

    /// QUIT: in TRANSACTION, the UPDATE state (the marked messages go, while the lock is
    /// still this session's).
    async fn quit(&mut self) {
        let State::Transaction(_) = &self.state else {
            ok(&mut self.out, "bye");
            return;
        };
        let still_ours = self.keep_lock().await;
        let State::Transaction(m) =
            std::mem::replace(&mut self.state, State::Authorization { user: None })
        else {
            return;
        };
        let store = self.shared.ctx.store.clone();
        let release = |store: Arc<dyn mailfleet_store::Store>, lease: String, id: String| async move {
            if let Err(e) = store.release_lease(&lease, &id).await {
                tracing::warn!(session = %id, "maildrop lock not released: {e}");
            }
        };
        if !still_ours {
            err(
                &mut self.out,
                Some(RespCode::InUse),
                "maildrop lock lost: nothing deleted",
            );
            return;
        }
        let marked: Vec<u32> = m
            .messages
            .iter()
            .filter(|msg| msg.deleted)
            .map(|msg| msg.uid)
            .collect();
        match store.expunge(m.mailbox_id, &marked).await {
            Ok(n) => {
                tracing::info!(session = %self.id, user = %m.account.address, deleted = n, "pop3 quit");
                ok(&mut self.out, &format!("bye ({n} messages deleted)"));
            }
            Err(e) => {
                tracing::error!(session = %self.id, "messages not deleted: {e}");
                err(
                    &mut self.out,
                    Some(RespCode::SysTemp),
                    "messages not deleted, try again",
                );
            }
        }
        release(store, m.lease.clone(), self.id.clone()).await;
    }
}
