//! SELECT, EXAMINE (with CONDSTORE and QRESYNC), CLOSE, UNSELECT, EXPUNGE, UID EXPUNGE and
//! IDLE.

use mailfleet_imap_proto::{
    Code, Data, Mailbox, Response, SelectParams, SequenceSet, decode_idle_done,
};

use crate::selected::{Selected, has_flag};
use crate::session::{End, Reply, Session, Updates};

/// Bytes read at a time in IDLE (DONE is six).
const IDLE_READ: usize = 512;

impl Session {
    /// Leaves the selected state without telling the client.
    pub fn unselect_quietly(&mut self) {
        self.selected = None;
    }

    pub async fn select(&mut self, name: Mailbox, params: SelectParams, read_only: bool) -> Reply {
        let had = self.selected.take().is_some();
        if had && (self.qresync || self.rev2) {
            self.untagged_ok(Code::Closed, "previous mailbox closed");
        }
        if params.condstore || params.qresync.is_some() {
            self.condstore = true;
        }
        if params.qresync.is_some() && !self.qresync {
            return Reply::bad("QRESYNC is not enabled");
        }
        let Some(account) = self.account.as_ref() else {
            return Reply::bad("log in first");
        };
        let store = self.shared.ctx.store.clone();
        let mailbox = match store.get_mailbox(account.id, name.as_str()).await {
            Ok(Some(m)) => m,
            Ok(None) => return Reply::no(Some(Code::NonExistent), "no such mailbox"),
            Err(e) => return Reply::unavailable(&self.id, "mailbox not read", &e),
        };
        // Watch before reading, so that nothing that happens meanwhile is missed.
        let watch = self.shared.watcher.watch(mailbox.id);
        let snapshots = self.shared.snapshots.clone();
        let read = async {
            // A read-write SELECT takes the recent messages for itself (IMAP4rev1).
            let recent_from = store.recent_from(mailbox.id, !read_only).await?;
            let version = store.mailbox_versions(&[mailbox.id]).await?;
            let highest = version
                .first()
                .map(|(_, m)| *m)
                .unwrap_or(mailbox.highestmodseq);
            // The node's last view of the mailbox and what changed since, else the whole list.
            let cached = match snapshots.get(mailbox.id, mailbox.uidvalidity) {
                Some((since, base)) => {
                    let changes = store.changes_since(mailbox.id, since).await?;
                    if since < changes.purged_up_to {
                        // Tombstones newer than the view were purged: it cannot be brought
                        // up to date from them.
                        None
                    } else if changes.changed.is_empty() && changes.expunged.is_empty() {
                        // Nothing changed: the node's view is taken as it is.
                        Some(base)
                    } else {
                        Some(std::sync::Arc::new(crate::snapshots::apply(&base, changes)))
                    }
                }
                None => None,
            };
            let list = match cached {
                Some(list) => list,
                None => std::sync::Arc::new(crate::snapshots::from_store(
                    store.list_messages(mailbox.id, 1, u32::MAX).await?,
                )),
            };
            snapshots.put(mailbox.id, mailbox.uidvalidity, highest, list.clone());
            let keywords = store.mailbox_keywords(mailbox.id).await?;
            Ok::<_, mailfleet_store::StoreError>((recent_from, highest, list, keywords))
        };
        let (recent_from, highest, list, keywords) = match read.await {
            Ok(r) => r,
            Err(e) => return Reply::unavailable(&self.id, "mailbox not read", &e),
        };
        let uidnext = mailbox
            .uidnext
            .max(list.last().map(|m| m.uid + 1).unwrap_or(1));
        let first_unseen = list.first_without("\\Seen").map(|i| i as u32 + 1);
        let mut sel = Selected {
            mailbox,
            read_only,
            msgs: list,
            recent: Vec::new(),
            known_modseq: highest,
            watch,
            pending_expunge: Vec::new(),
            keywords: Vec::new(),
        };
        // EXAMINE shows the unclaimed messages there now as recent, none that arrive later.
        sel.add_recent((recent_from.0, recent_from.1.min(uidnext)));
        // Keywords of messages count even if the mailbox's list missed them.
        sel.learn_keywords(&keywords);
        let msgs = sel.msgs.clone();
        for flags in msgs.flag_lists() {
            sel.learn_keywords(flags);
        }
        let flags = sel.flag_list();
        let exists = sel.exists();
        let recent = sel.recent();
        let uidvalidity = sel.mailbox.uidvalidity;
        let mailbox_id = sel.mailbox.id;
        self.selected = Some(sel);
        self.untagged(Data::Flags(flags.clone()));
        if read_only {
            self.untagged_ok(Code::PermanentFlags(Vec::new(), false), "read-only mailbox");
        } else {
            self.untagged_ok(Code::PermanentFlags(flags, true), "flags permitted");
        }
        self.untagged(Data::Exists(exists));
        if !self.rev2 {
            self.untagged(Data::Recent(recent));
            if let Some(seq) = first_unseen {
                self.untagged_ok(
                    Code::Other("UNSEEN".into(), Some(seq.to_string())),
                    "first unseen",
                );
            }
        }
        self.untagged_ok(Code::UidValidity(uidvalidity), "UIDs valid");
        self.untagged_ok(Code::UidNext(uidnext), "predicted next UID");
        self.untagged_ok(Code::HighestModSeq(highest.max(0) as u64), "highest");
        self.untagged_ok(Code::MailboxId(format!("M{mailbox_id}")), "mailbox id");
        if let Some(q) = params.qresync
            && q.uid_validity == uidvalidity
        {
            self.qresync_catch_up(q.mod_seq as i64, q.known_uids.as_ref())
                .await;
        }
        if read_only {
            Reply::ok_code(Code::ReadOnly, "EXAMINE completed")
        } else {
            Reply::ok_code(Code::ReadWrite, "SELECT completed")
        }
    }

    /// QRESYNC's part of SELECT (RFC 7162 §3.2.5): what the client missed since `modseq`.
    async fn qresync_catch_up(&mut self, modseq: i64, known: Option<&SequenceSet>) {
        let Some(sel) = self.selected.as_ref() else {
            return;
        };
        let changes = match self
            .shared
            .ctx
            .store
            .changes_since(sel.mailbox.id, modseq)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(session = %self.id, "changes not read: {e}");
                return;
            }
        };
        let max = sel
            .max_uid()
            .max(changes.expunged.last().copied().unwrap_or(0));
        let vanished = if modseq < changes.purged_up_to {
            // Tombstones after the client's MODSEQ may be purged: every UID up to the last
            // one the mailbox gave that it no longer has (within the client's known UIDs).
            let existing: Vec<u32> = sel.msgs.iter().map(|m| m.uid).collect();
            let largest = sel.mailbox.uidnext.saturating_sub(1).max(max);
            let gone = crate::selected::uids_missing(&existing, largest, known);
            (!gone.is_empty()).then(|| crate::selected::ranges_to_set(&gone))
        } else {
            let gone: Vec<u32> = changes
                .expunged
                .iter()
                .copied()
                .filter(|u| known.is_none_or(|k| k.contains(*u, max)))
                .collect();
            (!gone.is_empty()).then(|| SequenceSet::from_sorted(&gone))
        };
        let indexes: Vec<usize> = changes
            .changed
            .iter()
            .filter_map(|c| sel.index_of(c.uid))
            .collect();
        if let Some(uids) = vanished {
            self.untagged(Data::Vanished {
                earlier: true,
                uids,
            });
        }
        for i in indexes {
            self.flags_update(i, true);
        }
    }

    /// CLOSE (`expunge`) or UNSELECT.
    pub async fn close(&mut self, expunge: bool) -> Reply {
        let Some(sel) = self.selected.take() else {
            return Reply::bad("no mailbox selected");
        };
        if expunge && !sel.read_only {
            // The flags as the store has them now, not as this session last saw them.
            let store = &self.shared.ctx.store;
            // The mailbox's counter says whether anything is flagged \Deleted; only then are
            // its messages listed (a CLOSE of a large mailbox is usually a no-op).
            match store.status_of(sel.mailbox.id).await {
                Ok(s) if s.deleted == 0 => return Reply::ok("CLOSE completed"),
                Ok(_) => {}
                Err(e) => return Reply::unavailable(&self.id, "mailbox not read", &e),
            }
            let deleted = match store.list_messages(sel.mailbox.id, 1, u32::MAX).await {
                Ok(list) => list
                    .into_iter()
                    .filter(|m| has_flag(&m.flags, "\\Deleted"))
                    .map(|m| m.uid)
                    .collect::<Vec<_>>(),
                Err(e) => return Reply::unavailable(&self.id, "mailbox not read", &e),
            };
            if !deleted.is_empty() {
                if let Err(e) = store.expunge(sel.mailbox.id, &deleted).await {
                    return Reply::unavailable(&self.id, "expunge failed", &e);
                }
                self.shared.watcher.bump(sel.mailbox.id);
            }
        }
        Reply::ok(if expunge {
            "CLOSE completed"
        } else {
            "UNSELECT completed"
        })
    }

    /// EXPUNGE, or UID EXPUNGE of a set (UIDPLUS): the EXPUNGE responses come from the update
    /// that follows, as for an expunge made elsewhere.
    pub async fn expunge(&mut self, set: Option<SequenceSet>) -> Reply {
        self.sync(true, true).await;
        let saved = self.saved.clone();
        let Some(sel) = self.selected.as_ref() else {
            return Reply::bad("no mailbox selected");
        };
        if sel.read_only {
            return Reply::no(Some(Code::ReadOnly), "mailbox is read-only");
        }
        let wanted = match &set {
            Some(s) => match sel.resolve(s, true, saved.as_deref()) {
                Ok(i) => Some(i),
                Err(e) => return Reply::bad(e),
            },
            None => None,
        };
        let deleted = sel.msgs.has_flag("\\Deleted");
        let uids: Vec<u32> = match wanted {
            Some(indexes) => indexes
                .into_iter()
                .filter_map(|i| sel.msgs.get(i))
                .filter(|m| deleted(m))
                .map(|m| m.uid)
                .collect(),
            None => sel
                .msgs
                .iter()
                .filter(|m| deleted(m))
                .map(|m| m.uid)
                .collect(),
        };
        let id = sel.mailbox.id;
        if !uids.is_empty() {
            if let Err(e) = self.shared.ctx.store.expunge(id, &uids).await {
                return Reply::unavailable(&self.id, "expunge failed", &e);
            }
            self.shared.watcher.bump(id);
            self.sync(true, true).await;
        }
        let highest = self.selected.as_ref().map(|s| s.known_modseq).unwrap_or(0);
        if self.condstore {
            Reply::ok_code(
                Code::HighestModSeq(highest.max(0) as u64),
                "EXPUNGE completed",
            )
        } else {
            Reply::ok("EXPUNGE completed")
        }
    }

    /// IDLE (RFC 2177): updates as they happen, until DONE.
    pub async fn idle(&mut self, tag: &str) -> Result<(), End> {
        self.sync(true, true).await;
        self.send(Response::Continue("idling".into()));
        loop {
            self.flush().await?;
            // An idling session may wait for hours: it keeps small buffers meanwhile (10,000
            // of them on a node).
            self.out.shrink_to(256);
            self.inbuf.shrink_to(self.inbuf.len() + IDLE_READ);
            // DONE may already be here.
            match decode_idle_done(&self.inbuf) {
                Ok(Some(n)) => {
                    self.inbuf.drain(..n);
                    return self
                        .finish(tag, Reply::ok("IDLE terminated"), Updates::All)
                        .await;
                }
                Ok(None) => {}
                Err(e) => {
                    let n = e.consumed.min(self.inbuf.len());
                    self.inbuf.drain(..n);
                    if !e.line_complete {
                        self.discard_line().await?;
                    }
                    return self
                        .finish(tag, Reply::bad("expected DONE"), Updates::All)
                        .await;
                }
            }
            let timeout = self.policy.timeout;
            let shutdown = self.shared.shutdown.clone();
            let start = self.inbuf.len();
            self.inbuf.resize(start + IDLE_READ, 0);
            let Some(sel) = self.selected.as_mut() else {
                self.inbuf.truncate(start);
                return Ok(());
            };
            enum Woke {
                Read(std::io::Result<usize>),
                Changed,
                Timeout,
                Shutdown,
            }
            let woke = {
                let (conn, buf, watch) = (&mut self.conn, &mut self.inbuf[start..], &mut sel.watch);
                use tokio::io::AsyncReadExt;
                tokio::select! {
                    r = conn.read(buf) => Woke::Read(r),
                    _ = watch.wait() => Woke::Changed,
                    _ = tokio::time::sleep(timeout) => Woke::Timeout,
                    _ = shutdown.cancelled() => Woke::Shutdown,
                }
            };
            match woke {
                Woke::Read(Ok(0)) | Woke::Read(Err(_)) => {
                    self.inbuf.truncate(start);
                    return Err(End::Io);
                }
                Woke::Read(Ok(n)) => self.inbuf.truncate(start + n),
                Woke::Changed => {
                    self.inbuf.truncate(start);
                    self.sync(true, false).await;
                }
                Woke::Timeout => {
                    self.inbuf.truncate(start);
                    self.bye("autologout: idle too long");
                    return Err(End::Close);
                }
                Woke::Shutdown => {
                    self.inbuf.truncate(start);
                    self.bye("server shutting down");
                    return Err(End::Close);
                }
            }
        }
    }
}
