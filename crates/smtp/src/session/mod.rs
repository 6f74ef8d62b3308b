//! One SMTP session: the read/parse/reply loop, with one file per phase
//! (`ehlo`, `auth`, `mail`, `rcpt`, `data`).
//!
//! Replies are collected in an output buffer and written when the input holds no further
//! complete command (PIPELINING, RFC 2920), before every read, so a pipelining client gets its
//! replies in one write and a lock-step client gets each at once.

mod auth;
mod data;
mod ehlo;
mod mail;
mod rcpt;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailfleet_delivery::Plan;
use mailfleet_listener::{Conn, ConnectionSlot};
use mailfleet_smtp_proto::{
    Command, MailParams, Parsed, Reply, parse_command, parse_line, skip_line,
};
use mailfleet_store::Account;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::server::Shared;
use crate::settings::Policy;

/// Which listener a session came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Port 25: mail for local recipients, no AUTH needed.
    Mx,
    /// Port 587: STARTTLS, then AUTH before MAIL.
    Submission,
    /// Port 465: TLS from the first byte, then AUTH before MAIL.
    SubmissionTls,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Mx => "smtp",
            Service::Submission => "submission",
            Service::SubmissionTls => "submissions",
        }
    }

    fn needs_auth(self) -> bool {
        !matches!(self, Service::Mx)
    }
}

/// What the loop does after a command.
pub(crate) enum Flow {
    Continue,
    Close,
}

/// Why a session ended early.
#[derive(Debug)]
pub(crate) enum End {
    /// The client went away or the socket failed.
    Io,
    /// We said 421 and close.
    Closed,
}

impl From<std::io::Error> for End {
    fn from(_: std::io::Error) -> Self {
        End::Io
    }
}

/// One accepted recipient.
#[derive(Debug, Clone)]
pub(crate) struct AcceptedRcpt {
    /// As the client wrote it (for the Received header).
    pub written: String,
    /// Local accounts this recipient reaches (for the end-of-data quota check).
    pub accounts: Vec<Account>,
    /// The recipient's DSN parameters, for a mailbox found full at the end of data.
    pub notify: Vec<String>,
    pub orcpt: Option<String>,
}

/// The mail transaction in progress.
pub(crate) struct Transaction {
    pub sender: String,
    /// Whose `smtp.rate.messages_per_sender_per_minute` an accepted message counts against.
    pub rate_key: String,
    pub params: MailParams,
    pub rcpts: Vec<AcceptedRcpt>,
    pub plan: Plan,
    /// Message bytes received so far with BDAT.
    pub chunks: Option<data::Chunks>,
}

const READ_CHUNK: usize = 16 * 1024;

pub(crate) struct Session {
    pub shared: Arc<Shared>,
    pub service: Service,
    pub conn: Conn,
    pub client_ip: IpAddr,
    pub inbuf: Vec<u8>,
    pub outbuf: Vec<u8>,
    pub helo: Option<String>,
    pub esmtp: bool,
    pub auth: Option<Account>,
    pub tx: Option<Transaction>,
    pub errors: u32,
    pub policy: Arc<Policy>,
    pub id: String,
    /// Discarding the rest of an over-long command line.
    discarding: bool,
    /// When the command line (or AUTH answer) under way must be complete.
    line_deadline: Option<Instant>,
}

/// A time by which a read must have finished, and what the client is told when it passes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    pub at: Instant,
    pub why: &'static str,
}

impl Session {
    pub(crate) fn new(
        shared: Arc<Shared>,
        service: Service,
        conn: Conn,
        client_ip: IpAddr,
    ) -> Self {
        let policy = shared.policy.current();
        let id = shared.next_id();
        Self {
            shared,
            service,
            conn,
            client_ip,
            inbuf: Vec::with_capacity(READ_CHUNK),
            outbuf: Vec::with_capacity(1024),
            helo: None,
            esmtp: false,
            auth: None,
            tx: None,
            errors: 0,
            policy,
            id,
            discarding: false,
            line_deadline: None,
        }
    }

    pub(crate) fn reply(&mut self, r: Reply) {
        r.encode(&mut self.outbuf);
    }

    pub(crate) fn say(&mut self, code: u16, status: &str, text: &str) {
        self.reply(Reply::new(code, status, text));
    }

    pub(crate) async fn flush(&mut self) -> Result<(), End> {
        if !self.outbuf.is_empty() {
            self.conn.write_all(&self.outbuf).await?;
            self.conn.flush().await?;
            self.outbuf.clear();
        }
        Ok(())
    }

    /// Reads more bytes into `inbuf` (after flushing pending replies). `Ok(false)` at EOF.
    /// A line already begun must be complete within `smtp.command_deadline_seconds` of when
    /// it was first seen incomplete, however the bytes trickle in.
    pub(crate) async fn fill(&mut self) -> Result<bool, End> {
        let deadline = if self.inbuf.is_empty() && !self.discarding {
            self.line_deadline = None;
            None
        } else {
            let at = *self
                .line_deadline
                .get_or_insert_with(|| Instant::now() + self.policy.command_deadline);
            Some(Deadline {
                at,
                why: "command line too slow, closing connection",
            })
        };
        if deadline.is_some() {
            return self.fill_mid(deadline).await;
        }
        self.fill_by(deadline).await
    }

    /// [`Self::fill_by`] in the middle of a line or of message data: what has arrived is
    /// acknowledged at once (TCP_QUICKACK), so a client whose next small write is held by
    /// Nagle's algorithm (the body, then ".\r\n" apart) does not wait for the delayed ACK,
    /// about 40 ms on Linux, since no reply is due that would carry the ACK.
    pub(crate) async fn fill_mid(&mut self, deadline: Option<Deadline>) -> Result<bool, End> {
        self.conn.ack_now();
        self.fill_by(deadline).await
    }

    /// Reads more bytes into `inbuf`, waiting at most the idle timeout and never past
    /// `deadline`. `Ok(false)` at EOF.
    pub(crate) async fn fill_by(&mut self, deadline: Option<Deadline>) -> Result<bool, End> {
        self.flush().await?;
        let start = self.inbuf.len();
        self.inbuf.resize(start + READ_CHUNK, 0);
        let idle = self.policy.timeout;
        let now = Instant::now();
        let (wait, why) = match deadline {
            Some(d) if d.at.saturating_duration_since(now) < idle => {
                (d.at.saturating_duration_since(now), d.why)
            }
            _ => (idle, "idle too long, closing connection"),
        };
        let shutdown = self.shared.shutdown.clone();
        let read = tokio::select! {
            _ = shutdown.cancelled() => {
                self.inbuf.truncate(start);
                self.say(421, "4.3.2", "server shutting down, try again later");
                return Err(End::Closed);
            }
            r = tokio::time::timeout(wait, self.conn.read(&mut self.inbuf[start..])) => r,
        };
        match read {
            Ok(Ok(n)) => {
                self.inbuf.truncate(start + n);
                Ok(n > 0)
            }
            Ok(Err(_)) => {
                self.inbuf.truncate(start);
                Err(End::Io)
            }
            Err(_) => {
                self.inbuf.truncate(start);
                tracing::info!(session = %self.id, ip = %self.client_ip, "{why}");
                self.say(421, "4.4.2", why);
                let _ = self.flush().await;
                Err(End::Closed)
            }
        }
    }

    /// Reads one line (AUTH exchanges), bounded like a command line. `None` for a line over
    /// the limit, whose rest is read and dropped here, so it gets one reply like any line.
    pub(crate) async fn read_line(&mut self) -> Result<Option<String>, End> {
        let line = loop {
            match parse_line(&self.inbuf, mailfleet_smtp_proto::MAX_COMMAND_LINE) {
                Ok(Parsed::Complete(line, n)) => {
                    let s = String::from_utf8_lossy(line).into_owned();
                    self.inbuf.drain(..n);
                    break Some(s);
                }
                Ok(Parsed::Incomplete) => {
                    if !self.fill().await? {
                        return Err(End::Io);
                    }
                }
                Err(n) => {
                    self.inbuf.drain(..n);
                    self.discarding = true;
                    loop {
                        let (n, done) = skip_line(&self.inbuf);
                        self.inbuf.drain(..n);
                        if done {
                            break;
                        }
                        if !self.fill().await? {
                            return Err(End::Io);
                        }
                    }
                    self.discarding = false;
                    break None;
                }
            }
        };
        self.line_deadline = None;
        Ok(line)
    }

    /// Counts a protocol error; past the limit, says 421 and ends the session.
    pub(crate) fn error_counted(&mut self) -> Result<(), End> {
        self.errors += 1;
        if self.errors >= self.policy.max_errors {
            self.say(421, "4.7.0", "too many errors, closing connection");
            return Err(End::Closed);
        }
        Ok(())
    }

    /// Runs the session; `slot` (its place under the connection limits) goes back before the
    /// last reply is written, so a client that reads 221 and connects again finds it free.
    pub(crate) async fn run(mut self, slot: ConnectionSlot) {
        let greeting = format!("{} ESMTP mailfleet ready", self.shared.hostname);
        self.reply(Reply::plain(220, vec![greeting]));
        let _ = self.serve().await;
        drop(slot);
        let _ = self.flush().await;
        let _ = self.conn.shutdown().await;
    }

    async fn serve(&mut self) -> Result<(), End> {
        loop {
            while !self.inbuf.is_empty() {
                if self.discarding {
                    let (n, done) = skip_line(&self.inbuf);
                    self.inbuf.drain(..n);
                    if !done {
                        break;
                    }
                    self.discarding = false;
                    self.line_deadline = None;
                    self.say(500, "5.5.6", "line too long");
                    self.error_counted()?;
                    continue;
                }
                match parse_command(&self.inbuf) {
                    Ok(Parsed::Complete(cmd, n)) => {
                        self.inbuf.drain(..n);
                        self.line_deadline = None;
                        self.policy = self.shared.policy.current();
                        if let Flow::Close = self.handle(cmd).await? {
                            // `run` writes the last reply once the slot is given back.
                            return Ok(());
                        }
                    }
                    Ok(Parsed::Incomplete) => break,
                    Err(e) => {
                        self.inbuf.drain(..e.consumed);
                        if e.line_complete {
                            self.line_deadline = None;
                        }
                        if !e.line_complete {
                            self.discarding = true;
                            continue;
                        }
                        let (code, status) = e.kind.code();
                        self.say(code, status, &e.kind.to_string());
                        self.error_counted()?;
                    }
                }
            }
            if !self.fill().await? {
                return Ok(());
            }
        }
    }

    async fn handle(&mut self, cmd: Command) -> Result<Flow, End> {
        tracing::trace!(session = %self.id, verb = cmd.verb(), "command");
        match cmd {
            Command::Ehlo(host) => self.ehlo(host, true),
            Command::Helo(host) => self.ehlo(host, false),
            Command::StartTls => return self.starttls().await,
            Command::Auth { mechanism, initial } => self.auth(mechanism, initial).await?,
            Command::Mail(path, params) => self.mail(path, params).await?,
            Command::Rcpt(path, params) => self.rcpt(path, params).await?,
            Command::Data => self.data().await?,
            Command::Bdat { size, last } => self.bdat(size, last).await?,
            Command::Rset => {
                self.tx = None;
                self.say(250, "2.0.0", "OK");
            }
            Command::Noop => self.say(250, "2.0.0", "OK"),
            Command::Quit => {
                self.say(221, "2.0.0", "bye");
                return Ok(Flow::Close);
            }
            Command::Vrfy(_) | Command::Expn(_) => self.say(
                252,
                "2.5.2",
                "cannot verify the user, but will accept mail and attempt delivery",
            ),
            Command::Help => self.say(214, "2.0.0", "see RFC 5321"),
        }
        Ok(Flow::Continue)
    }

    async fn starttls(&mut self) -> Result<Flow, End> {
        if self.conn.is_tls() {
            self.say(503, "5.5.1", "TLS already active");
            return Ok(Flow::Continue);
        }
        let Some(acceptor) = self.shared.tls.clone() else {
            self.say(454, "4.7.0", "TLS not available");
            return Ok(Flow::Continue);
        };
        self.say(220, "2.0.0", "ready to start TLS");
        self.flush().await?;
        // Anything the client sent after STARTTLS in the clear must not be read as if it came
        // over TLS (command injection).
        self.inbuf.clear();
        let Conn::Plain(tcp) = std::mem::replace(&mut self.conn, Conn::Empty) else {
            return Err(End::Io);
        };
        let handshake = tokio::time::timeout(Duration::from_secs(30), acceptor.accept(tcp)).await;
        match handshake {
            Ok(Ok(tls)) => {
                self.conn = Conn::Tls(Box::new(tls));
                // RFC 3207 §4.2: forget everything learnt before TLS.
                self.helo = None;
                self.esmtp = false;
                self.auth = None;
                self.tx = None;
                Ok(Flow::Continue)
            }
            Ok(Err(e)) => {
                tracing::debug!(session = %self.id, "TLS handshake failed: {e}");
                Err(End::Io)
            }
            Err(_) => Err(End::Io),
        }
    }
}
