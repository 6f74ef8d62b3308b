//! One IMAP session: the read/decode/answer loop over the sans-IO `mailfleet-imap-proto`, the
//! connection states (not authenticated, authenticated, selected), literals and the updates
//! that go before each tagged answer.
//!
//! Answers are gathered in `out` and written before every read (and whenever a large FETCH
//! has gathered [`FLUSH_AT`] bytes), so pipelined commands are answered in one write.

use std::net::IpAddr;
use std::sync::Arc;

use mailfleet_imap_proto::{
    Code, Command, Data, DecodeError, Decoded, Decoder, EncodeOptions, Limits, Options, Response,
    Status, TaggedCommand, skip_line,
};
use mailfleet_listener::{Conn, ConnectionSlot};
use mailfleet_store::Account;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Shared;
use crate::append::PendingAppend;
use crate::selected::Selected;
use crate::settings::Policy;

const READ_CHUNK: usize = 16 * 1024;
/// Written out whenever this much is waiting, so memory stays bounded by it and one message.
pub(crate) const FLUSH_AT: usize = 256 * 1024;
/// Protocol errors (BAD) before the connection is closed.
const MAX_ERRORS: u32 = 50;
/// Largest non-synchronizing literal a client may send without being asked, when it is not an
/// APPEND message: anything bigger must wait for `+`.
const MAX_DISCARD: u64 = 1024 * 1024;

/// Why a session stopped early.
pub(crate) enum End {
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

/// The tagged answer of a command.
pub(crate) struct Reply {
    pub status: Status,
    pub code: Option<Code>,
    pub text: String,
}

impl Reply {
    pub fn ok(text: &str) -> Reply {
        Reply {
            status: Status::Ok,
            code: None,
            text: text.into(),
        }
    }
    pub fn ok_code(code: Code, text: &str) -> Reply {
        Reply {
            status: Status::Ok,
            code: Some(code),
            text: text.into(),
        }
    }
    pub fn no(code: Option<Code>, text: &str) -> Reply {
        Reply {
            status: Status::No,
            code,
            text: text.into(),
        }
    }
    pub fn bad(text: &str) -> Reply {
        Reply {
            status: Status::Bad,
            code: None,
            text: text.into(),
        }
    }
    /// A store that cannot be reached or failed.
    pub fn unavailable(session: &str, what: &str, e: &dyn std::fmt::Display) -> Reply {
        tracing::warn!(session, "{what}: {e}");
        Reply::no(
            Some(Code::Unavailable),
            "temporary failure, try again later",
        )
    }
}

/// Which untagged EXPUNGE updates may go before a command's tagged answer (RFC 9051 §7.5.1).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Updates {
    /// None: the command left the selected state or never had one.
    None,
    /// New messages and flag changes only: FETCH, STORE, SEARCH (and SORT, THREAD, COPY) by
    /// sequence number, where an EXPUNGE would shift the numbers the client is using.
    NoExpunge,
    /// Everything.
    All,
}

pub(crate) struct Session {
    pub shared: Arc<Shared>,
    pub conn: Conn,
    pub client_ip: IpAddr,
    pub id: String,
    pub inbuf: Vec<u8>,
    pub out: Vec<u8>,
    pub decoder: Decoder,
    pub policy: Policy,
    pub account: Option<Account>,
    pub selected: Option<Selected>,
    /// ENABLE IMAP4rev2.
    pub rev2: bool,
    /// UTF-8 enabled (IMAP4rev2 or UTF8=ACCEPT).
    pub utf8: bool,
    /// CONDSTORE enabled (by ENABLE, or by a command using it).
    pub condstore: bool,
    pub qresync: bool,
    /// `SEARCH RETURN (SAVE)`'s result, as UIDs (RFC 5182).
    pub saved: Option<Vec<u32>>,
    /// The APPEND being received.
    pub append: Option<PendingAppend>,
    errors: u32,
    /// Where the literal we last sent `+` for starts, so that it is sent once.
    continued_at: Option<usize>,
}

impl Session {
    pub(crate) fn new(shared: Arc<Shared>, conn: Conn, client_ip: IpAddr) -> Session {
        let policy = shared.policy();
        let id = shared.next_id();
        let decoder = Decoder::new(decoder_options(&policy, false));
        Session {
            shared,
            conn,
            client_ip,
            id,
            inbuf: Vec::with_capacity(1024),
            out: Vec::with_capacity(1024),
            decoder,
            policy,
            account: None,
            selected: None,
            rev2: false,
            utf8: false,
            condstore: false,
            qresync: false,
            saved: None,
            append: None,
            errors: 0,
            continued_at: None,
        }
    }

    pub(crate) async fn run(mut self, slot: ConnectionSlot) {
        let caps = self.capabilities();
        self.untagged(Data::Condition {
            status: Status::Ok,
            code: Some(Code::Capability(caps)),
            text: format!("{} IMAP mailfleet ready", self.shared.hostname),
        });
        let _ = self.serve().await;
        // The slot under the connection limits goes back before the last words are written,
        // so a client that reads them and connects again finds it free.
        drop(slot);
        let _ = self.flush().await;
        let _ = self.conn.shutdown().await;
        if let Some(a) = self.append.take() {
            a.discard();
        }
    }

    pub fn encode_options(&self) -> EncodeOptions {
        EncodeOptions { utf8: self.utf8 }
    }

    pub fn send(&mut self, r: Response) {
        let opts = self.encode_options();
        r.encode(&mut self.out, opts);
    }

    pub fn untagged(&mut self, d: Data) {
        self.send(Response::Untagged(d));
    }

    pub fn untagged_ok(&mut self, code: Code, text: &str) {
        self.untagged(Data::Condition {
            status: Status::Ok,
            code: Some(code),
            text: text.into(),
        });
    }

    pub async fn flush(&mut self) -> Result<(), End> {
        if !self.out.is_empty() {
            self.conn.write_all(&self.out).await?;
            self.conn.flush().await?;
            self.out.clear();
            if self.out.capacity() > 4 * FLUSH_AT {
                self.out.shrink_to(16 * 1024);
            }
        }
        Ok(())
    }

    /// Reads more input after flushing; `false` at EOF. Idle past the timeout, or shutdown:
    /// the connection closes with BYE.
    pub async fn fill(&mut self) -> Result<bool, End> {
        self.flush().await?;
        if !self.inbuf.is_empty() || self.append.is_some() {
            // Mid-command (a partial line, an APPEND literal or what follows one): acknowledge
            // the bytes read so far at once, so a client's Nagle-held rest is not kept waiting
            // for the delayed ACK.
            self.conn.ack_now();
        }
        let start = self.inbuf.len();
        self.inbuf.resize(start + READ_CHUNK, 0);
        let shutdown = self.shared.shutdown.clone();
        let read = tokio::select! {
            _ = shutdown.cancelled() => {
                self.inbuf.truncate(start);
                self.bye("server shutting down");
                return Err(End::Close);
            }
            r = tokio::time::timeout(self.policy.timeout, self.conn.read(&mut self.inbuf[start..])) => r,
        };
        match read {
            Ok(Ok(n)) => {
                self.inbuf.truncate(start + n);
                if self.inbuf.capacity() > 4 * 1024 * 1024 && self.inbuf.len() < 64 * 1024 {
                    self.inbuf.shrink_to(64 * 1024);
                }
                Ok(n > 0)
            }
            Ok(Err(_)) => Err(End::Io),
            Err(_) => {
                self.inbuf.truncate(start);
                self.bye("autologout: idle too long");
                Err(End::Close)
            }
        }
    }

    pub fn bye(&mut self, text: &str) {
        self.untagged(Data::Condition {
            status: Status::Bye,
            code: None,
            text: text.into(),
        });
    }

    fn error_counted(&mut self) -> Result<(), End> {
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            self.bye("too many errors, closing connection");
            return Err(End::Close);
        }
        Ok(())
    }

    async fn serve(&mut self) -> Result<(), End> {
        loop {
            loop {
                match self.decoder.decode(&self.inbuf) {
                    Ok(Decoded::Command(cmd, n)) => {
                        self.inbuf.drain(..n);
                        self.continued_at = None;
                        if !self.handle(cmd).await? {
                            return Ok(());
                        }
                    }
                    Ok(Decoded::Incomplete) => break,
                    Ok(Decoded::LiteralAnnounced { offset, .. }) => {
                        if self.continued_at != Some(offset) {
                            self.continued_at = Some(offset);
                            self.send(Response::Continue("ready for literal data".into()));
                        }
                        break;
                    }
                    Ok(Decoded::AppendMessage(head, n)) => {
                        self.inbuf.drain(..n);
                        self.continued_at = None;
                        self.append_message(head).await?;
                    }
                    Ok(Decoded::AppendEnd { tag, consumed }) => {
                        self.inbuf.drain(..consumed);
                        self.continued_at = None;
                        let reply = self.append_end().await;
                        self.finish(&tag, reply, Updates::All).await?;
                    }
                    Err(e) => self.refused(e).await?,
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

    /// A command the decoder refused: answer, drop its bytes, go on.
    async fn refused(&mut self, e: DecodeError) -> Result<(), End> {
        self.continued_at = None;
        if let Some(a) = self.append.take() {
            a.discard();
        }
        let n = e.consumed.min(self.inbuf.len());
        self.inbuf.drain(..n);
        if !e.line_complete {
            self.discard_line().await?;
        }
        if e.discard > 0 {
            if e.discard > MAX_DISCARD {
                self.bye("literal too large");
                return Err(End::Close);
            }
            self.discard_bytes(e.discard).await?;
        }
        let (status, code) = e.kind.response();
        let text = e.kind.to_string();
        match &e.tag {
            Some(tag) => self.send(Response::Tagged {
                tag: tag.clone(),
                status,
                code,
                text,
            }),
            None => self.untagged(Data::Condition { status, code, text }),
        }
        if status == Status::Bad {
            self.error_counted()?;
        }
        Ok(())
    }

    /// Drops the rest of an over-long line as it arrives.
    pub async fn discard_line(&mut self) -> Result<(), End> {
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

    /// Drops `n` bytes of input (a literal the client sends anyway).
    pub async fn discard_bytes(&mut self, mut n: u64) -> Result<(), End> {
        loop {
            let take = (self.inbuf.len() as u64).min(n) as usize;
            self.inbuf.drain(..take);
            n -= take as u64;
            if n == 0 {
                return Ok(());
            }
            if !self.fill().await? {
                return Err(End::Io);
            }
        }
    }

    /// Sends the updates the command allows, then its tagged answer.
    pub async fn finish(&mut self, tag: &str, reply: Reply, updates: Updates) -> Result<(), End> {
        if updates != Updates::None && self.selected.is_some() {
            self.sync(updates == Updates::All, false).await;
        }
        self.send(Response::Tagged {
            tag: tag.to_string(),
            status: reply.status,
            code: reply.code,
            text: reply.text,
        });
        if reply.status == Status::Bad {
            self.error_counted()?;
        }
        Ok(())
    }

    /// The capabilities for the current state.
    pub fn capabilities(&self) -> Vec<String> {
        let mut caps: Vec<String> = [
            "IMAP4rev1",
            "IMAP4rev2",
            "LITERAL+",
            "SASL-IR",
            "ID",
            "ENABLE",
            "IDLE",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if self.account.is_none() {
            if !self.conn.is_tls() {
                caps.push("STARTTLS".into());
            }
            if self.login_allowed() {
                caps.push("AUTH=PLAIN".into());
                caps.push("AUTH=LOGIN".into());
            } else {
                caps.push("LOGINDISABLED".into());
            }
            return caps;
        }
        for c in [
            "NAMESPACE",
            "UIDPLUS",
            "MOVE",
            "UNSELECT",
            "UNAUTHENTICATE",
            "CHILDREN",
            "SPECIAL-USE",
            "CREATE-SPECIAL-USE",
            "LIST-EXTENDED",
            "LIST-STATUS",
            "STATUS=SIZE",
            "CONDSTORE",
            "QRESYNC",
            "ESEARCH",
            "SEARCHRES",
            "WITHIN",
            "SORT",
            "SORT=DISPLAY",
            "ESORT",
            "THREAD=REFERENCES",
            "THREAD=ORDEREDSUBJECT",
            "QUOTA",
            "QUOTA=RES-STORAGE",
            "QUOTA=RES-MESSAGE",
            "MULTIAPPEND",
            "BINARY",
            "UTF8=ACCEPT",
            "PREVIEW",
            "OBJECTID",
        ] {
            caps.push(c.into());
        }
        caps.push(format!("APPENDLIMIT={}", self.policy.max_append));
        if !self.conn.is_compressed() {
            caps.push("COMPRESS=DEFLATE".into());
        }
        caps
    }

    pub fn login_allowed(&self) -> bool {
        self.conn.is_tls() || self.policy.allow_cleartext
    }

    /// Applies a change of UTF-8 mode or limits to the decoder (after ENABLE, or a settings
    /// change).
    pub fn update_decoder(&mut self) {
        self.decoder
            .set_options(decoder_options(&self.policy, self.utf8));
    }

    /// One command; `false` when the session is over.
    async fn handle(&mut self, tc: TaggedCommand) -> Result<bool, End> {
        let TaggedCommand { tag, command } = tc;
        tracing::trace!(session = %self.id, command = command.name(), "command");
        let policy = self.shared.policy();
        if policy.max_append != self.policy.max_append {
            self.policy = policy;
            self.update_decoder();
        } else {
            self.policy = policy;
        }
        let authenticated = self.account.is_some();
        let selected = self.selected.is_some();
        // Commands valid in any state, then by state.
        let (reply, updates) = match command {
            Command::Capability => {
                let caps = self.capabilities();
                self.untagged(Data::Capability(caps));
                (Reply::ok("CAPABILITY completed"), Updates::All)
            }
            Command::Noop => {
                if selected {
                    self.sync(true, true).await;
                }
                (Reply::ok("NOOP completed"), Updates::All)
            }
            Command::Logout => {
                self.bye("logging out");
                self.finish(&tag, Reply::ok("LOGOUT completed"), Updates::None)
                    .await?;
                return Ok(false);
            }
            Command::Id(params) => (self.id_command(params), Updates::All),
            Command::StartTls if !authenticated => {
                return self.starttls(&tag).await.map(|_| true);
            }
            Command::Authenticate { mechanism, initial } if !authenticated => {
                (self.authenticate(&mechanism, initial).await?, Updates::None)
            }
            Command::Login { username, password } if !authenticated => (
                self.login_command(&username, &password.0).await,
                Updates::None,
            ),
            Command::StartTls | Command::Authenticate { .. } | Command::Login { .. } => {
                (Reply::bad("already authenticated"), Updates::All)
            }
            _ if !authenticated => (Reply::bad("log in first"), Updates::None),
            Command::Enable(caps) => (self.enable(caps), Updates::All),
            Command::Unauthenticate => {
                self.unselect_quietly();
                self.account = None;
                self.saved = None;
                (Reply::ok("UNAUTHENTICATE completed"), Updates::None)
            }
            Command::Select { mailbox, params } => {
                (self.select(mailbox, params, false).await, Updates::None)
            }
            Command::Examine { mailbox, params } => {
                (self.select(mailbox, params, true).await, Updates::None)
            }
            Command::Create {
                mailbox,
                special_use,
            } => (self.create(mailbox, special_use).await, Updates::All),
            Command::Delete(mailbox) => (self.delete(mailbox).await, Updates::All),
            Command::Rename { from, to } => (self.rename(from, to).await, Updates::All),
            Command::Subscribe(mailbox) => (self.subscribe(mailbox, true).await, Updates::All),
            Command::Unsubscribe(mailbox) => (self.subscribe(mailbox, false).await, Updates::All),
            Command::List(list) => (self.list(list).await, Updates::All),
            Command::Lsub { reference, pattern } => {
                (self.lsub(&reference, &pattern).await, Updates::All)
            }
            Command::Namespace => (self.namespace(), Updates::All),
            Command::Status { mailbox, items } => (self.status(mailbox, items).await, Updates::All),
            Command::GetQuota(root) => (self.get_quota(&root).await, Updates::All),
            Command::GetQuotaRoot(mailbox) => (self.get_quota_root(mailbox).await, Updates::All),
            Command::SetQuota { .. } => (
                Reply::no(Some(Code::NoPerm), "quotas are set by the administrator"),
                Updates::All,
            ),
            Command::Append { .. } => (Reply::bad("APPEND was not streamed"), Updates::All),
            Command::Compress(algorithm) => {
                return self.compress(&tag, &algorithm).await.map(|_| true);
            }
            _ if !selected => (Reply::bad("no mailbox selected"), Updates::None),
            Command::Idle => {
                return self.idle(&tag).await.map(|_| true);
            }
            Command::Check => (Reply::ok("CHECK completed"), Updates::All),
            Command::Close => (self.close(true).await, Updates::None),
            Command::Unselect => (self.close(false).await, Updates::None),
            Command::Expunge => (self.expunge(None).await, Updates::All),
            Command::UidExpunge(set) => (self.expunge(Some(set)).await, Updates::All),
            Command::Search {
                uid,
                ret,
                charset,
                criteria,
            } => (
                self.search(&tag, uid, ret, charset, criteria).await,
                if uid {
                    Updates::All
                } else {
                    Updates::NoExpunge
                },
            ),
            Command::Sort {
                uid,
                ret,
                criteria,
                charset,
                search,
            } => (
                self.sort(&tag, uid, ret, criteria, charset, search).await,
                if uid {
                    Updates::All
                } else {
                    Updates::NoExpunge
                },
            ),
            Command::Thread {
                uid,
                algorithm,
                charset,
                search,
            } => (
                self.thread(uid, algorithm, charset, search).await,
                if uid {
                    Updates::All
                } else {
                    Updates::NoExpunge
                },
            ),
            Command::Fetch {
                uid,
                set,
                items,
                changed_since,
                vanished,
            } => (
                self.fetch(uid, set, items, changed_since, vanished).await?,
                if uid {
                    Updates::All
                } else {
                    Updates::NoExpunge
                },
            ),
            Command::Store {
                uid,
                set,
                unchanged_since,
                mode,
                silent,
                flags,
            } => (
                self.store_flags(uid, set, unchanged_since, mode, silent, flags)
                    .await,
                if uid {
                    Updates::All
                } else {
                    Updates::NoExpunge
                },
            ),
            Command::Copy { uid, set, mailbox } => (
                self.copy(uid, set, mailbox, false).await,
                if uid {
                    Updates::All
                } else {
                    Updates::NoExpunge
                },
            ),
            Command::Move { uid, set, mailbox } => {
                (self.copy(uid, set, mailbox, true).await, Updates::All)
            }
        };
        self.finish(&tag, reply, updates).await?;
        Ok(true)
    }
}

pub(crate) fn decoder_options(policy: &Policy, utf8: bool) -> Options {
    let limits = Limits {
        max_append: policy.max_append,
        // LITERAL+ is offered: a non-synchronizing APPEND message may be as large as APPEND
        // allows; other literals stay bounded by `max_literal`.
        max_non_sync: policy.max_append,
        ..Limits::default()
    };
    Options {
        limits,
        utf8,
        stream_append: true,
    }
}
