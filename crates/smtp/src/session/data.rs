//! DATA and BDAT: receiving the message, refusing bare CR/LF and oversize, adding the trace
//! headers and committing the delivery before answering 250.

use mailfleet_smtp_proto::{BareLineEndings, DataDecoder};
use tokio::io::AsyncReadExt;

use super::{AcceptedRcpt, End, Session, Transaction};
use crate::delivery::{RemoteRecipient, deliver};

/// A message arriving in BDAT chunks.
#[derive(Default)]
pub(crate) struct Chunks {
    buf: Vec<u8>,
    check: BareLineEndings,
    too_big: bool,
}

impl Session {
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
        let hint = tx.params.size.unwrap_or(0).min(max as u64) as usize;
        self.say(354, "", "end data with <CR><LF>.<CR><LF>");
        let mut decoder = DataDecoder::new(max);
        let mut body = Vec::with_capacity(hint.clamp(4096, 1 << 20));
        loop {
            let p = decoder.feed(&self.inbuf, &mut body);
            self.inbuf.drain(..p.consumed);
            if p.done {
                break;
            }
            if !self.fill().await? {
                return Err(End::Io);
            }
        }
        if decoder.too_big() {
            self.tx = None;
            self.say(
                552,
                "5.3.4",
                "message size exceeds fixed maximum message size",
            );
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
        self.finish(body).await;
        Ok(())
    }

    /// Reads exactly `n` bytes of a BDAT chunk, keeping them in `chunks` unless over the limit.
    async fn read_chunk(&mut self, mut n: u64, chunks: &mut Chunks) -> Result<(), End> {
        let max = self.policy.max_message_size as u64;
        loop {
            let take = (self.inbuf.len() as u64).min(n) as usize;
            if take > 0 {
                let part = &self.inbuf[..take];
                if !chunks.too_big && chunks.buf.len() as u64 + take as u64 <= max {
                    chunks.check.feed(part);
                    chunks.buf.extend_from_slice(part);
                } else {
                    chunks.too_big = true;
                }
                self.inbuf.drain(..take);
                n -= take as u64;
            }
            if n == 0 {
                return Ok(());
            }
            self.flush().await?;
            self.inbuf.reserve(64 * 1024);
            let timeout = self.policy.timeout;
            let spare = self.inbuf.capacity() - self.inbuf.len();
            let want = spare.min(n as usize).max(1);
            let start = self.inbuf.len();
            self.inbuf.resize(start + want, 0);
            let read =
                tokio::time::timeout(timeout, self.conn.read(&mut self.inbuf[start..])).await;
            match read {
                Ok(Ok(k)) if k > 0 => self.inbuf.truncate(start + k),
                Ok(_) => return Err(End::Io),
                Err(_) => {
                    self.inbuf.truncate(start);
                    self.say(
                        421,
                        "4.4.2",
                        "timeout waiting for BDAT data, closing connection",
                    );
                    return Err(End::Closed);
                }
            }
        }
    }

    pub(crate) async fn bdat(&mut self, size: u64, last: bool) -> Result<(), End> {
        let usable = self.tx.as_ref().is_some_and(|t| !t.rcpts.is_empty());
        let mut chunks = self
            .tx
            .as_mut()
            .and_then(|t| t.chunks.take())
            .unwrap_or_default();
        self.read_chunk(size, &mut chunks).await?;
        if !usable {
            let no_tx = self.tx.is_none();
            self.tx = None;
            if no_tx {
                self.say(503, "5.5.1", "need MAIL before BDAT");
            } else {
                self.say(554, "5.5.1", "no valid recipients");
            }
            return self.error_counted();
        }
        if chunks.too_big {
            self.tx = None;
            self.say(
                552,
                "5.3.4",
                "message size exceeds fixed maximum message size",
            );
            return Ok(());
        }
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
        self.finish(chunks.buf).await;
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

    /// Commits the message and answers: 250 only once the blob is fsynced and the rows are in.
    async fn finish(&mut self, body: Vec<u8>) {
        let Some(mut tx) = self.tx.take() else {
            self.say(503, "5.5.1", "no mail transaction");
            return;
        };
        let id = self.shared.next_id();
        let mut headers = self.trace_headers(&tx, &id);
        if self.auth.is_some() {
            // A submission server completes what the author's client left out (RFC 6409 §8).
            let present = origin_headers_present(&body);
            if !present.date {
                headers.push_str(&format!("Date: {}\r\n", chrono::Utc::now().to_rfc2822()));
            }
            if !present.message_id {
                headers.push_str(&format!("Message-ID: <{id}@{}>\r\n", self.shared.hostname));
            }
        }
        let mut message = Vec::with_capacity(headers.len() + body.len());
        message.extend_from_slice(headers.as_bytes());
        message.extend_from_slice(&body);
        drop(body);
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
                    Ok(Some(now)) if now.over_quota_with(message.len() as i64) => {
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
        match deliver(store.as_ref(), blobs.as_ref(), &message, &plan).await {
            Ok(_) => {
                tracing::info!(
                    session = %self.id, id = %id, from = %tx.sender, rcpts = tx.rcpts.len(),
                    local = plan.local.len(), queued = plan.remote.len(),
                    size = message.len(), ip = %self.client_ip, "message accepted"
                );
                self.shared
                    .rates
                    .record(&tx.rate_key, self.policy.rate_per_minute);
                self.say(250, "2.0.0", &format!("OK id={id}"));
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

#[cfg(test)]
mod tests {
    use super::*;

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
