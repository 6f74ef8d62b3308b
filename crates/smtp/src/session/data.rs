//! DATA and BDAT: receiving the message (spooled to a file past the spool's threshold),
//! refusing bare CR/LF and oversize, adding the trace headers and committing the delivery
//! before answering 250.
//!
//! Slow senders: a message must arrive at `smtp.data_min_rate` bytes per second on average
//! after `smtp.command_deadline_seconds` of grace, however its bytes trickle in; too large a
//! message gets 552 as soon as its declared (BDAT) or received (DATA) size passes the limit;
//! what follows is read and dropped up to twice the limit, past which the connection is
//! closed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailfleet_smtp_proto::{BareLineEndings, DataDecoder};
use mailfleet_store::{SpoolWriter, Spooled};

use super::{AcceptedRcpt, Deadline, End, Session, Transaction};
use mailfleet_delivery::{DeliveryError, RemoteRecipient, deliver_spooled, sender_belongs_to};
use mailfleet_store::StoreError;

/// A message being received: its spool writer, what its header section says (known once
/// its first part is in), and its id (in its Received header and the 250 reply).
pub(crate) struct Incoming {
    writer: SpoolWriter,
    facts: Arc<Mutex<HeaderFacts>>,
    id: String,
}

/// A message arriving in BDAT chunks.
pub(crate) struct Chunks {
    incoming: Option<Incoming>,
    received: u64,
    check: BareLineEndings,
    /// A write to the spool failed: the message is refused at its end.
    failed: bool,
}

/// What the header section of a message says, as far as the receiver cares.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct HeaderFacts {
    /// The header section was seen to its end (not cut by the spool threshold).
    complete: bool,
    date: bool,
    message_id: bool,
    /// Every address of every `From:` header; `None` when there is no `From:` header.
    from: Option<Vec<String>>,
}

const MESSAGE_TOO_BIG: &str = "message size exceeds fixed maximum message size";

/// The most a session reads and drops of a message or chunk over the size limit `max` before
/// it closes the connection instead.
fn drain_max(max: u64) -> u64 {
    max.saturating_mul(2)
}

impl Session {
    /// The deadline for a transfer that began at `started` and has brought `bytes` so far:
    /// the command deadline as grace plus the time `bytes` take at the minimum rate.
    fn transfer_deadline(&self, started: Instant, bytes: u64) -> Option<Deadline> {
        let rate = self.policy.data_min_rate;
        if rate == 0 {
            return None;
        }
        let allowed =
            self.policy.command_deadline + Duration::from_secs_f64(bytes as f64 / rate as f64);
        Some(Deadline {
            at: started + allowed,
            why: "message data too slow, closing connection",
        })
    }

    /// A spool writer for the transaction's message, its trace headers made when the first
    /// part of the message is known, with the facts of its header section.
    fn message_writer(&self) -> Option<Incoming> {
        let tx = self.tx.as_ref()?;
        let id = self.shared.next_id();
        let trace = self.trace_headers(tx, &id);
        let submission = self.auth.is_some();
        let hostname = self.shared.hostname.clone();
        let message_id = id.clone();
        let facts = Arc::new(Mutex::new(HeaderFacts::default()));
        let slot = facts.clone();
        let head: mailfleet_store::spool::HeadFn = Box::new(move |first: &[u8], whole: bool| {
            let found = header_facts(first, whole);
            let mut head = trace.into_bytes();
            // A submission server completes what the author's client left out (RFC 6409 §8);
            // with a header section too long to see whole, nothing is added.
            if submission && found.complete {
                if !found.date {
                    head.extend_from_slice(
                        format!("Date: {}\r\n", chrono::Utc::now().to_rfc2822()).as_bytes(),
                    );
                }
                if !found.message_id {
                    head.extend_from_slice(
                        format!("Message-ID: <{message_id}@{hostname}>\r\n").as_bytes(),
                    );
                }
            }
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = found;
            head
        });
        Some(Incoming {
            writer: self.shared.spool.writer(head),
            facts,
            id,
        })
    }

    pub(crate) async fn data(&mut self) -> Result<(), End> {
        let Some(tx) = &self.tx else {
            self.say(503, "5.5.1", "need MAIL before DATA");
            return self.error_counted();
        };
        if tx.chunks.is_some() {
            self.say(503, "5.5.1", "DATA not allowed after BDAT");
            return self.error_counted();
        }
        if tx.rcpts.is_empty() {
            self.say(554, "5.5.1", "no valid recipients");
            return self.error_counted();
        }
        let max = self.policy.max_message_size;
        let Some(mut incoming) = self.message_writer() else {
            self.say(503, "5.5.1", "no mail transaction");
            return self.error_counted();
        };
        self.say(354, "", "end data with <CR><LF>.<CR><LF>");
        let mut decoder = DataDecoder::new(max);
        let mut decoded = Vec::with_capacity(super::READ_CHUNK);
        let mut failed = false;
        let started = Instant::now();
        loop {
            decoded.clear();
            let p = decoder.feed(&self.inbuf, &mut decoded);
            self.inbuf.drain(..p.consumed);
            if !failed
                && !decoded.is_empty()
                && let Err(e) = incoming.writer.write(&decoded).await
            {
                tracing::error!(session = %self.id, "cannot spool message: {e}");
                failed = true;
            }
            if p.done {
                break;
            }
            if decoder.too_big() {
                // Nothing more is kept; past twice the limit the sender is cut off.
                failed = true;
                if decoder.size() > drain_max(max as u64) {
                    self.tx = None;
                    self.say(552, "5.3.4", MESSAGE_TOO_BIG);
                    return Err(End::Closed);
                }
            }
            let deadline = self.transfer_deadline(started, decoder.size());
            if !self.fill_mid(deadline).await? {
                return Err(End::Io);
            }
        }
        if decoder.too_big() {
            self.tx = None;
            self.say(552, "5.3.4", MESSAGE_TOO_BIG);
            return Ok(());
        }
        if decoder.bare_line_ending() {
            self.tx = None;
            self.say(
                550,
                "5.6.0",
                "message contains a bare CR or LF; lines must end in CRLF",
            );
            return self.error_counted();
        }
        if failed {
            self.tx = None;
            self.say(451, "4.3.0", "temporary failure, try again later");
            return Ok(());
        }
        self.complete(incoming).await;
        Ok(())
    }

    /// Reads and drops `n` bytes of a chunk that will not be kept (bounded by the caller).
    async fn drain_chunk(&mut self, mut n: u64) -> Result<(), End> {
        let started = Instant::now();
        let total = n;
        loop {
            let take = (self.inbuf.len() as u64).min(n) as usize;
            self.inbuf.drain(..take);
            n -= take as u64;
            if n == 0 {
                return Ok(());
            }
            let deadline = self.transfer_deadline(started, total - n);
            if !self.fill_mid(deadline).await? {
                return Err(End::Io);
            }
        }
    }

    /// Reads exactly `n` bytes of a BDAT chunk into the message.
    async fn read_chunk(&mut self, mut n: u64, chunks: &mut Chunks) -> Result<(), End> {
        let started = Instant::now();
        let total = n;
        loop {
            let take = (self.inbuf.len() as u64).min(n) as usize;
            if take > 0 {
                let part = &self.inbuf[..take];
                chunks.check.feed(part);
                if !chunks.failed
                    && let Some(i) = chunks.incoming.as_mut()
                    && let Err(e) = i.writer.write(part).await
                {
                    tracing::error!(session = %self.id, "cannot spool message: {e}");
                    chunks.failed = true;
                }
                chunks.received += take as u64;
                self.inbuf.drain(..take);
                n -= take as u64;
            }
            if n == 0 {
                return Ok(());
            }
            let deadline = self.transfer_deadline(started, total - n);
            if !self.fill_mid(deadline).await? {
                return Err(End::Io);
            }
        }
    }

    pub(crate) async fn bdat(&mut self, size: u64, last: bool) -> Result<(), End> {
        let max = self.policy.max_message_size as u64;
        let usable = self.tx.as_ref().is_some_and(|t| !t.rcpts.is_empty());
        if !usable {
            let no_tx = self.tx.is_none();
            self.tx = None;
            if no_tx {
                self.say(503, "5.5.1", "need MAIL before BDAT");
            } else {
                self.say(554, "5.5.1", "no valid recipients");
            }
            // The chunk follows the command: read past it, or close when it is too large to.
            if size > drain_max(max) {
                return Err(End::Closed);
            }
            self.drain_chunk(size).await?;
            return self.error_counted();
        }
        let mut chunks = match self.tx.as_mut().and_then(|t| t.chunks.take()) {
            Some(c) => c,
            None => Chunks {
                incoming: self.message_writer(),
                received: 0,
                check: BareLineEndings::default(),
                failed: false,
            },
        };
        if chunks.received.saturating_add(size) > max {
            // Answered before the chunk is read: the limit is known from the command.
            self.tx = None;
            drop(chunks);
            self.say(552, "5.3.4", MESSAGE_TOO_BIG);
            if size > drain_max(max) {
                return Err(End::Closed);
            }
            self.flush().await?;
            return self.drain_chunk(size).await;
        }
        self.read_chunk(size, &mut chunks).await?;
        if !last {
            if let Some(tx) = self.tx.as_mut() {
                tx.chunks = Some(chunks);
            }
            self.say(250, "2.0.0", &format!("{size} octets received"));
            return Ok(());
        }
        if chunks.check.found() {
            self.tx = None;
            self.say(
                550,
                "5.6.0",
                "message contains a bare CR or LF; lines must end in CRLF",
            );
            return self.error_counted();
        }
        let (Some(incoming), false) = (chunks.incoming, chunks.failed) else {
            self.tx = None;
            self.say(451, "4.3.0", "temporary failure, try again later");
            return Ok(());
        };
        self.complete(incoming).await;
        Ok(())
    }

    fn protocol_name(&self, tx: &Transaction) -> &'static str {
        let tls = self.conn.is_tls();
        let auth = self.auth.is_some();
        match (self.esmtp, tx.params.smtputf8, tls, auth) {
            (false, _, _, _) => "SMTP",
            (true, false, false, false) => "ESMTP",
            (true, false, true, false) => "ESMTPS",
            (true, false, false, true) => "ESMTPA",
            (true, false, true, true) => "ESMTPSA",
            (true, true, false, false) => "UTF8SMTP",
            (true, true, true, false) => "UTF8SMTPS",
            (true, true, false, true) => "UTF8SMTPA",
            (true, true, true, true) => "UTF8SMTPSA",
        }
    }

    fn trace_headers(&self, tx: &Transaction, id: &str) -> String {
        let helo = self.helo.as_deref().unwrap_or("unknown");
        let mut received = format!(
            "Return-Path: <{}>\r\nReceived: from {} ([{}])\r\n\tby {} (mailfleet) with {}",
            tx.sender,
            helo,
            self.client_ip,
            self.shared.hostname,
            self.protocol_name(tx),
        );
        if let Some(tls) = self.conn.tls_info() {
            received.push_str(&format!(" ({tls})"));
        }
        received.push_str(&format!("\r\n\tid {id}"));
        if let [only] = tx.rcpts.as_slice() {
            received.push_str(&format!("\r\n\tfor <{}>", only.written));
        }
        received.push_str(&format!("; {}\r\n", chrono::Utc::now().to_rfc2822()));
        received
    }

    /// Ends the message and commits it: 250 only once the blob is fsynced and the rows are in.
    async fn complete(&mut self, incoming: Incoming) {
        let message = match incoming.writer.finish().await {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(session = %self.id, "cannot spool message: {e}");
                self.tx = None;
                self.say(451, "4.3.0", "temporary failure, try again later");
                return;
            }
        };
        let facts = incoming
            .facts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        self.finish(message, facts, incoming.id).await;
    }

    /// Checks and commits a complete message.
    async fn finish(&mut self, message: Spooled, facts: HeaderFacts, id: String) {
        let Some(mut tx) = self.tx.take() else {
            self.say(503, "5.5.1", "no mail transaction");
            return;
        };
        if let (Some(account), true) = (self.auth.clone(), self.policy.check_from_header) {
            for from in facts.from.iter().flatten() {
                match sender_belongs_to(self.shared.ctx.store.as_ref(), from, &account).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::info!(
                            session = %self.id, user = %account.address, from = %from,
                            "From: header refused"
                        );
                        self.say(
                            550,
                            "5.7.1",
                            &format!("From: header address <{from}> is not yours to send as"),
                        );
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(session = %self.id, "cannot check the From: header: {e}");
                        self.say(451, "4.3.0", "temporary failure, try again later");
                        return;
                    }
                }
            }
            if facts.from.as_ref().is_some_and(|f| f.is_empty()) {
                self.say(550, "5.7.1", "From: header names no address");
                return;
            }
        }
        let size = message.len() as i64;
        let store = self.shared.ctx.store.clone();
        // Quota, now that the size is known. A mailbox found full here does not make the
        // others wait or fail: it is handed to the queue, whose local delivery tries it once
        // more and, if it is still full, bounces to the sender (5.2.2, as NOTIFY allows). Only
        // when every mailbox is full and nothing else is to be done is the message refused.
        let mut plan = std::mem::take(&mut tx.plan);
        let mut full: Vec<(i64, String, &AcceptedRcpt)> = Vec::new();
        for rcpt in &tx.rcpts {
            for a in rcpt.accounts.iter().filter(|a| a.quota_bytes > 0) {
                match store.get_account_by_id(a.id).await {
                    Ok(Some(now)) if now.over_quota_with(size) => {
                        tracing::info!(
                            session = %self.id, account = %now.address, "over quota at end of data"
                        );
                        full.push((now.id, now.address, rcpt));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(session = %self.id, "cannot check quota: {e}");
                        self.say(451, "4.3.0", "temporary failure, try again later");
                        return;
                    }
                }
            }
        }
        if !full.is_empty() {
            plan.local
                .retain(|id| !full.iter().any(|(full_id, ..)| full_id == id));
            if plan.local.is_empty() && plan.remote.is_empty() {
                let (_, _, rcpt) = &full[0];
                self.say(552, "5.2.2", &format!("mailbox full: {}", rcpt.written));
                return;
            }
            for (_, address, rcpt) in full {
                plan.add_remote(RemoteRecipient {
                    address,
                    notify: rcpt.notify.clone(),
                    orcpt: rcpt.orcpt.clone(),
                });
            }
        }
        let blobs = self.shared.ctx.blobs.clone();
        match deliver_spooled(store.as_ref(), blobs.as_ref(), message, &plan).await {
            Ok(_) => {
                tracing::info!(
                    session = %self.id, id = %id, from = %tx.sender, rcpts = tx.rcpts.len(),
                    local = plan.local.len(), queued = plan.remote.len(),
                    size = size, ip = %self.client_ip, "message accepted"
                );
                self.shared
                    .rates
                    .record(&tx.rate_key, self.policy.rate_per_minute);
                self.say(250, "2.0.0", &format!("OK id={id}"));
            }
            // A mailbox filled by other deliveries since the check above: the store refused
            // the whole transaction. Final only when that mailbox was the message's one
            // destination; otherwise the client tries again, and the check above then hands
            // the full mailbox to the queue and delivers to the others.
            Err(DeliveryError::Store(e @ StoreError::OverQuota(_))) => {
                tracing::info!(session = %self.id, "delivery refused: {e}");
                if plan.local.len() == 1 && plan.remote.is_empty() {
                    self.say(552, "5.2.2", "mailbox full");
                } else {
                    self.say(452, "4.2.2", "mailbox full, try again later");
                }
            }
            Err(e) => {
                tracing::error!(session = %self.id, "delivery failed: {e}");
                self.say(451, "4.3.0", "temporary failure, try again later");
            }
        }
    }
}

/// Which of the headers a submission server adds when missing the message already has.
#[derive(Debug, Default, PartialEq, Eq)]
struct OriginHeaders {
    date: bool,
    message_id: bool,
}

/// Looks through the header section (up to the first empty line) for `Date:` and
/// `Message-ID:`, case-insensitively. Bounded by the message, which is already bounded.
fn origin_headers_present(message: &[u8]) -> OriginHeaders {
    let mut found = OriginHeaders::default();
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = &line[..colon];
        // Folded continuation lines start with white space and name no header.
        if name.first().is_some_and(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let name = name.trim_ascii_end();
        if name.eq_ignore_ascii_case(b"date") {
            found.date = true;
        } else if name.eq_ignore_ascii_case(b"message-id") {
            found.message_id = true;
        }
    }
    found
}

/// The header section at the start of `first`: up to and including its empty line, or all of
/// `first` when `whole` (a message of headers only) — `None` when it is cut short.
fn header_section(first: &[u8], whole: bool) -> Option<&[u8]> {
    let mut at = 0;
    for line in first.split_inclusive(|&b| b == b'\n') {
        at += line.len();
        if line == b"\r\n" || line == b"\n" {
            return Some(&first[..at]);
        }
    }
    whole.then_some(first)
}

/// What the header section says: `Date:`, `Message-ID:` and the `From:` addresses.
fn header_facts(first: &[u8], whole: bool) -> HeaderFacts {
    let Some(section) = header_section(first, whole) else {
        return HeaderFacts::default();
    };
    let origin = origin_headers_present(section);
    let mut from: Option<Vec<String>> = None;
    if let Some(parsed) = mail_parser::MessageParser::new().parse_headers(section) {
        for h in parsed.headers() {
            if h.name != mail_parser::HeaderName::From {
                continue;
            }
            let list = from.get_or_insert_with(Vec::new);
            if let Some(addresses) = h.value.as_address() {
                list.extend(
                    addresses
                        .iter()
                        .filter_map(|a| a.address())
                        .map(str::to_string),
                );
            }
        }
    }
    HeaderFacts {
        complete: true,
        date: origin.date,
        message_id: origin.message_id,
        from,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_facts_read_the_header_section() {
        let m = b"From: Alice <alice@x.test>, bob@x.test\r\nFrom: =?utf-8?q?Eve?= <eve@y.test>\r\nDate: Mon, 1 Jan 2026 00:00:00 +0000\r\n\r\nFrom: body@z.test\r\n";
        let f = header_facts(m, true);
        assert!(f.complete && f.date && !f.message_id);
        assert_eq!(
            f.from,
            Some(vec![
                "alice@x.test".to_string(),
                "bob@x.test".to_string(),
                "eve@y.test".to_string()
            ])
        );
        // Cut short before the end of the headers: nothing is known.
        assert_eq!(
            header_facts(b"From: a@x.test\r\nSubj", false),
            HeaderFacts::default()
        );
        // Headers only, the whole message.
        let f = header_facts(b"From: a@x.test\r\n", true);
        assert_eq!(f.from, Some(vec!["a@x.test".to_string()]));
        // No From: at all, and a From: with no address.
        assert_eq!(header_facts(b"Subject: x\r\n\r\n", true).from, None);
        assert_eq!(
            header_facts(b"From: undisclosed\r\n\r\n", true).from,
            Some(Vec::new())
        );
        // Never panics on junk.
        for junk in [&b"\xff\xfe:\r\n\r\n"[..], b":::\n\n", b"From:\r\n\r\n", b""] {
            let _facts = header_facts(junk, true);
        }
    }

    #[test]
    fn finds_origin_headers_in_the_header_section_only() {
        let both = b"From: a@b\r\nmessage-ID: <x@y>\r\nDATE : Mon, 1 Jan 2026\r\n\r\nbody\r\n";
        assert_eq!(
            origin_headers_present(both),
            OriginHeaders {
                date: true,
                message_id: true
            }
        );
        let in_body = b"Subject: hi\r\n\tDate: folded\r\n\r\nMessage-ID: <in@body>\r\n";
        assert_eq!(origin_headers_present(in_body), OriginHeaders::default());
        assert_eq!(origin_headers_present(b""), OriginHeaders::default());
        assert_eq!(
            origin_headers_present(b":\r\n\n\n"),
            OriginHeaders::default()
        );
    }
}
