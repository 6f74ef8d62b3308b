//! APPEND and MULTIAPPEND (RFC 3502), with LITERAL+ and BINARY literals.
//!
//! The decoder hands over each message as it is announced; its bytes go through the node's
//! spool (memory up to 256 KiB, a file past that, hashed as they arrive), so a 50 MB APPEND
//! is never held whole in memory while it arrives. At the end of the command every message
//! is written as a blob, then all rows go in one store transaction: all or nothing, the quota
//! checked inside it. OK (with APPENDUID) only after that commit.

use mailfleet_imap_proto::{AppendHeader, Code, DateTime, Flag, Response, SequenceSet, read_line};
use mailfleet_message::Metadata;
use mailfleet_store::{Mailbox, NewMessage, Spooled, StoreError};

use crate::session::{End, Reply, Session, Updates};

struct Part {
    message: Spooled,
    flags: Vec<String>,
    date: i64,
}

/// An APPEND being received.
pub(crate) struct PendingAppend {
    tag: String,
    mailbox: Mailbox,
    parts: Vec<Part>,
}

impl PendingAppend {
    /// Drops what was received (a refused or abandoned APPEND); spool files go with it.
    pub fn discard(self) {}
}

/// Blob writes of one MULTIAPPEND under way at once.
const PARALLEL_WRITES: usize = 16;

/// A message's stored metadata and its text for the full-text index (none when the text
/// would have to be cut: such a message is always a search candidate).
fn describe(raw: &[u8]) -> (String, Option<String>) {
    let meta = Metadata::parse(raw);
    let text = mailfleet_message::index_text_whole(raw, &meta);
    (meta.to_stored(), text)
}

pub(crate) fn timestamp(d: &DateTime) -> i64 {
    let date = chrono::NaiveDate::from_ymd_opt(
        i32::from(d.date.year),
        u32::from(d.date.month),
        u32::from(d.date.day),
    );
    let Some(t) = date.and_then(|date| {
        date.and_hms_opt(u32::from(d.hour), u32::from(d.minute), u32::from(d.second))
    }) else {
        return mailfleet_store::now();
    };
    t.and_utc().timestamp() - i64::from(d.zone) * 60
}

impl Session {
    /// Refuses an APPEND message before its bytes came: the client sends them anyway if the
    /// literal was non-synchronizing.
    async fn refuse_append(&mut self, head: &AppendHeader, reply: Reply) -> Result<(), End> {
        self.append = None;
        self.decoder.reset();
        if !head.sync {
            self.discard_bytes(head.size).await?;
            self.discard_rest_of_append().await?;
        }
        self.finish(&head.tag, reply, Updates::All).await
    }

    /// Drops what follows a refused non-synchronizing APPEND message up to the end of the
    /// command: the line end, or further MULTIAPPEND messages sent as `{N+}` literals.
    async fn discard_rest_of_append(&mut self) -> Result<(), End> {
        loop {
            let line = loop {
                match read_line(&self.inbuf, 64 * 1024) {
                    Ok(Some((line, n))) => {
                        let line = line.to_vec();
                        self.inbuf.drain(..n);
                        break Some(line);
                    }
                    Ok(None) => {
                        if !self.fill().await? {
                            return Err(End::Io);
                        }
                    }
                    Err(_) => break None,
                }
            };
            let Some(line) = line else {
                self.discard_line().await?;
                return Ok(());
            };
            let more = line.strip_suffix(b"+}").and_then(|l| {
                let open = l.iter().rposition(|&c| c == b'{')?;
                std::str::from_utf8(&l[open + 1..])
                    .ok()?
                    .parse::<u64>()
                    .ok()
            });
            match more {
                Some(n) if n <= self.policy.max_append => self.discard_bytes(n).await?,
                Some(_) => return Err(End::Close),
                None => return Ok(()),
            }
        }
    }

    pub async fn append_message(&mut self, head: AppendHeader) -> Result<(), End> {
        if head.index == 0 {
            self.append = None;
            let Some(account) = self.account.as_ref() else {
                return self.refuse_append(&head, Reply::bad("log in first")).await;
            };
            let store = self.shared.ctx.store.clone();
            let mailbox = match store.get_mailbox(account.id, head.mailbox.as_str()).await {
                Ok(Some(m)) => m,
                Ok(None) => {
                    let r = Reply::no(Some(Code::TryCreate), "no such mailbox");
                    return self.refuse_append(&head, r).await;
                }
                Err(e) => {
                    let r = Reply::unavailable(&self.id, "mailbox not read", &e);
                    return self.refuse_append(&head, r).await;
                }
            };
            if account.quota_bytes > 0 && head.size as i64 > account.quota_bytes {
                let r = Reply::no(
                    Some(Code::OverQuota),
                    "the message is larger than the quota",
                );
                return self.refuse_append(&head, r).await;
            }
            self.append = Some(PendingAppend {
                tag: head.tag.clone(),
                mailbox,
                parts: Vec::new(),
            });
        }
        if head.sync {
            self.send(Response::Continue("ready for literal data".into()));
        }
        let mut writer = self.shared.spool.writer(Box::new(|_, _| Vec::new()));
        let mut left = head.size;
        loop {
            let take = (self.inbuf.len() as u64).min(left) as usize;
            if take > 0 {
                writer.write(&self.inbuf[..take]).await.map_err(|e| {
                    tracing::warn!(session = %self.id, "APPEND spool write failed: {e}");
                    End::Io
                })?;
                self.inbuf.drain(..take);
                left -= take as u64;
            }
            if left == 0 {
                break;
            }
            if !self.fill().await? {
                return Err(End::Io);
            }
        }
        let message = writer.finish().await.map_err(|e| {
            tracing::warn!(session = %self.id, "APPEND spool write failed: {e}");
            End::Io
        })?;
        let flags = head
            .flags
            .iter()
            .filter(|f| !matches!(f, Flag::Recent))
            .map(Flag::as_wire)
            .collect();
        let date = head
            .date
            .as_ref()
            .map(timestamp)
            .unwrap_or_else(mailfleet_store::now);
        if let Some(a) = self.append.as_mut() {
            a.parts.push(Part {
                message,
                flags,
                date,
            });
        }
        Ok(())
    }

    /// The end of an APPEND: blobs, then one transaction for every message.
    pub async fn append_end(&mut self) -> Reply {
        let Some(pending) = self.append.take() else {
            return Reply::bad("APPEND without a message");
        };
        debug_assert!(!pending.tag.is_empty());
        let blobs = self.shared.ctx.blobs.clone();
        let count = pending.parts.len();
        // The blobs of a MULTIAPPEND are written (each fsynced) several at a time, so their
        // syncs overlap; the rows then go in one transaction, in the client's order.
        let mut writes = tokio::task::JoinSet::new();
        let mut stored: Vec<Option<(String, String, Option<String>)>> = vec![None; count];
        let mut failure = None;
        let mut parts = pending.parts.into_iter().enumerate();
        let mut meta_of = Vec::with_capacity(count);
        loop {
            while writes.len() < PARALLEL_WRITES
                && let Some((i, part)) = parts.next()
            {
                meta_of.push((part.message.len() as i64, part.date, part.flags));
                let blobs = blobs.clone();
                writes.spawn(async move {
                    let r = match part.message {
                        Spooled::Memory(bytes) => {
                            let (meta, text) = describe(&bytes);
                            blobs.put(&bytes).await.map(|id| (id, meta, text))
                        }
                        Spooled::File(file) => match file.read().await {
                            Ok(bytes) => {
                                let (meta, text) = describe(&bytes);
                                drop(bytes);
                                blobs.put_spooled(file).await.map(|id| (id, meta, text))
                            }
                            Err(e) => Err(StoreError::Invalid(format!("spool file not read: {e}"))),
                        },
                    };
                    (i, r)
                });
            }
            match writes.join_next().await {
                Some(Ok((i, Ok(s)))) => stored[i] = Some(s),
                Some(Ok((_, Err(e)))) => failure = Some(e.to_string()),
                Some(Err(e)) => failure = Some(format!("blob write task failed: {e}")),
                None => break,
            }
        }
        if let Some(e) = failure {
            return Reply::unavailable(&self.id, "message not stored", &e);
        }
        let mut rows = Vec::with_capacity(count);
        let mut texts = Vec::with_capacity(count);
        for (s, (size, date, flags)) in stored.into_iter().zip(meta_of) {
            let Some((blob_id, meta, text)) = s else {
                return Reply::no(Some(Code::ServerBug), "a message was not stored");
            };
            rows.push(NewMessage {
                blob_id,
                size,
                internal_date: date,
                flags,
                meta: Some(meta),
            });
            texts.push(text);
        }
        let mailbox = pending.mailbox;
        match self
            .shared
            .ctx
            .store
            .append_many_with_text(mailbox.id, &rows, &texts)
            .await
        {
            Ok(uids) => {
                self.shared.watcher.bump(mailbox.id);
                let all_flags: Vec<String> = rows.iter().flat_map(|r| r.flags.clone()).collect();
                if self
                    .selected
                    .as_ref()
                    .is_some_and(|s| s.mailbox.id == mailbox.id)
                {
                    self.announce_keywords(&all_flags);
                }
                Reply::ok_code(
                    Code::AppendUid {
                        uid_validity: mailbox.uidvalidity,
                        uids: SequenceSet::from_sorted(&uids),
                    },
                    "APPEND completed",
                )
            }
            Err(StoreError::OverQuota(_)) => {
                Reply::no(Some(Code::OverQuota), "the mailbox is over its quota")
            }
            Err(e) => Reply::unavailable(&self.id, "message not stored", &e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailfleet_imap_proto::Date;

    #[test]
    fn dates_with_zones() {
        let d = DateTime {
            date: Date {
                year: 1970,
                month: 1,
                day: 1,
            },
            hour: 1,
            minute: 0,
            second: 0,
            zone: 60,
        };
        assert_eq!(timestamp(&d), 0);
    }
}
