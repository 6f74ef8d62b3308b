//! SEARCH (with ESEARCH's RETURN and SEARCHRES's SAVE and `$`), SORT (and ESORT) and THREAD,
//! evaluated by `mailfleet-imap-search` over the session's view and the stored metadata.
//!
//! Keys that need only flags, UIDs, sequence numbers or MODSEQ are answered from the
//! session's view without the store. Others read the mailbox's rows and metadata in runs of
//! at most 256 messages; BODY and TEXT are first narrowed by the store's full-text index, then
//! (with HEADER of a field the metadata does not keep) read each remaining message's blob.

use mailfleet_imap_proto::{
    Code, Data, EsearchData, SearchKey, SearchReturn, SequenceSet, SortCriterion, ThreadAlgorithm,
};
use mailfleet_imap_search::{MessageView, SearchContext};
use mailfleet_message::Metadata;
use std::sync::Arc;

use crate::metacache::Facts;
use crate::threadcache;

use crate::session::{Reply, Session};

/// One message that matched, with what SORT and THREAD need of it.
struct Hit {
    index: usize,
    uid: u32,
    facts: Option<Arc<Facts>>,
}

/// Whether the key can be answered from the session's view alone.
fn local_only(key: &SearchKey) -> bool {
    use SearchKey::*;
    match key {
        All
        | Answered
        | Deleted
        | Draft
        | Flagged
        | Keyword(_)
        | New
        | Old
        | Recent
        | Seen
        | Unanswered
        | Undeleted
        | Undraft
        | Unflagged
        | Unkeyword(_)
        | Unseen
        | Uid(_)
        | SequenceSet(_)
        | ModSeq { .. } => true,
        Not(k) => local_only(k),
        Or(a, b) => local_only(a) && local_only(b),
        And(keys) => keys.iter().all(local_only),
        _ => false,
    }
}

/// The BODY and TEXT strings every match must contain (those not under NOT or OR).
fn required_text(key: &SearchKey, out: &mut Vec<String>) {
    match key {
        SearchKey::Body(s) | SearchKey::Text(s) => {
            if let Ok(s) = std::str::from_utf8(s) {
                out.push(s.to_string());
            }
        }
        SearchKey::And(keys) => keys.iter().for_each(|k| required_text(k, out)),
        _ => {}
    }
}

fn has_modseq(key: &SearchKey) -> bool {
    match key {
        SearchKey::ModSeq { .. } => true,
        SearchKey::Not(k) => has_modseq(k),
        SearchKey::Or(a, b) => has_modseq(a) || has_modseq(b),
        SearchKey::And(keys) => keys.iter().any(has_modseq),
        _ => false,
    }
}

fn charset_ok(charset: Option<&str>) -> bool {
    charset.is_none_or(|c| c.eq_ignore_ascii_case("UTF-8") || c.eq_ignore_ascii_case("US-ASCII"))
}

fn bad_charset() -> Reply {
    Reply::no(
        Some(Code::BadCharset(vec!["UTF-8".into(), "US-ASCII".into()])),
        "unsupported charset",
    )
}

impl Session {
    /// The messages matching `key`, ascending; with `keep` their rows and metadata.
    async fn evaluate(&mut self, key: &SearchKey, keep: bool) -> Result<Vec<Hit>, Reply> {
        let saved = self.saved.clone();
        let store = self.shared.ctx.store.clone();
        let blobs = self.shared.ctx.blobs.clone();
        let Some(sel) = self.selected.as_ref() else {
            return Err(Reply::bad("no mailbox selected"));
        };
        let ctx = SearchContext {
            max_seq: sel.exists(),
            max_uid: sel.max_uid(),
            saved: saved.as_deref(),
            now: mailfleet_store::now(),
        };
        let mut hits = Vec::new();
        if local_only(key) && !keep {
            let empty = Metadata::parse(b"");
            for (i, m) in sel.msgs.iter().enumerate() {
                let mut v = MessageView::new(i as u32 + 1, m.uid, sel.msgs.flags(m), &empty);
                v.modseq = m.modseq.max(0) as u64;
                v.recent = sel.is_recent(m.uid);
                if mailfleet_imap_search::matches(key, &v, &ctx) {
                    hits.push(Hit {
                        index: i,
                        uid: m.uid,
                        facts: None,
                    });
                }
            }
            return Ok(hits);
        }
        let text = mailfleet_imap_search::needs_text(key);
        let header = mailfleet_imap_search::needs_header(key);
        let mailbox_id = sel.mailbox.id;
        // The store's full-text index narrows BODY and TEXT searches to the messages that may
        // match; the matcher then decides on each.
        let mut needles = Vec::new();
        required_text(key, &mut needles);
        let mut allowed: Option<std::collections::HashSet<u32>> = None;
        for needle in needles {
            match store.text_candidates(mailbox_id, &needle).await {
                Ok(Some(uids)) => {
                    let set: std::collections::HashSet<u32> = uids.into_iter().collect();
                    allowed = Some(match allowed {
                        Some(a) => a.intersection(&set).copied().collect(),
                        None => set,
                    });
                }
                Ok(None) => {}
                Err(e) => tracing::debug!(session = %self.id, "text index not read: {e}"),
            }
        }
        let indexes: Vec<usize> = (0..sel.msgs.len())
            .filter(|&i| {
                allowed
                    .as_ref()
                    .is_none_or(|a| a.contains(&sel.msgs[i].uid))
            })
            .collect();
        let uidvalidity = sel.mailbox.uidvalidity;
        let cache = self.shared.meta_cache.clone();
        // Without BODY, TEXT or unusual HEADER keys, the node's cache answers for what it has
        // read before; only the rest is read from the store (and kept).
        let raw_needed = text || header;
        let mut facts: Vec<Option<Arc<Facts>>> = if raw_needed {
            vec![None; indexes.len()]
        } else {
            let uids: Vec<u32> = indexes.iter().map(|&i| sel.msgs[i].uid).collect();
            cache.get(mailbox_id, uidvalidity, &uids)
        };
        let missing: Vec<usize> = indexes
            .iter()
            .zip(&facts)
            .filter(|(_, f)| f.is_none())
            .map(|(&i, _)| i)
            .collect();
        let position: std::collections::HashMap<usize, usize> =
            indexes.iter().enumerate().map(|(p, &i)| (i, p)).collect();
        let mut learned = Vec::new();
        // Pages as large as the store gives (4,096): a first SORT of 100,000 messages is then
        // 25 queries, not 400. Each page is read and its stored metadata parsed in a task of
        // its own, up to READ_AHEAD pages at a time, so a node with a free core reads and parses
        // the next pages while this task takes the current one.
        const READ_AHEAD: usize = 3;
        let runs: Vec<(u32, u32, usize)> = crate::fetch::runs_of(&missing, 4096)
            .into_iter()
            .map(|run| {
                (
                    sel.msgs[run[0]].uid,
                    sel.msgs[run[run.len() - 1]].uid,
                    run.len(),
                )
            })
            .collect();
        let read = |&(first, last, expect): &(u32, u32, usize)| {
            let store = store.clone();
            AbortOnDrop(tokio::spawn(async move {
                let rows =
                    crate::selected::rows_between(&*store, mailbox_id, first, last, expect).await?;
                // Light facts need neither the MIME tree nor the preview.
                Ok::<_, mailfleet_store::StoreError>(
                    rows.into_iter()
                        .map(|(row, stored)| {
                            let meta = stored.as_deref().and_then(|s| {
                                if raw_needed {
                                    Metadata::from_stored(s).ok()
                                } else {
                                    Metadata::from_stored_light(s).ok()
                                }
                            });
                            (row, meta)
                        })
                        .collect::<Vec<_>>(),
                )
            }))
        };
        let mut pending: std::collections::VecDeque<_> =
            runs.iter().take(READ_AHEAD).map(read).collect();
        let mut queued = pending.len();
        while let Some(mut current) = pending.pop_front() {
            if let Some(run) = runs.get(queued) {
                pending.push_back(read(run));
                queued += 1;
            }
            let rows = match (&mut current.0).await {
                Ok(read) => read,
                Err(e) => Err(mailfleet_store::StoreError::Invalid(format!(
                    "read failed: {e}"
                ))),
            }
            .map_err(|e| Reply::unavailable(&self.id, "messages not read", &e))?;
            for (row, parsed) in rows {
                let Some(i) = sel.index_of(row.uid) else {
                    continue;
                };
                let Some(&p) = position.get(&i) else {
                    continue;
                };
                let mut raw = None;
                let meta = match parsed {
                    Some(meta) => meta,
                    None => {
                        let bytes = blobs.get(&row.blob_id).await.ok();
                        let meta = Metadata::parse(bytes.as_deref().unwrap_or(b""));
                        if bytes.is_some() {
                            let _ = store
                                .put_message_meta(&row.blob_id, &meta.to_stored())
                                .await;
                        }
                        raw = bytes;
                        meta
                    }
                };
                let size = row.size.max(0) as u64;
                if !raw_needed {
                    let f = Arc::new(Facts::light(row.internal_date, size, &row.blob_id, meta));
                    learned.push((row.uid, f.clone()));
                    facts[p] = Some(f);
                    continue;
                }
                if raw.is_none() {
                    raw = blobs.get(&row.blob_id).await.ok();
                }
                let m = &sel.msgs[i];
                let view = MessageView {
                    seq: i as u32 + 1,
                    uid: m.uid,
                    modseq: m.modseq.max(0) as u64,
                    flags: sel.msgs.flags(m),
                    internal_date: row.internal_date,
                    size,
                    meta: &meta,
                    raw_header: raw.as_deref(),
                    text: raw.as_deref(),
                    recent: sel.is_recent(m.uid),
                };
                if mailfleet_imap_search::matches(key, &view, &ctx) {
                    hits.push(Hit {
                        index: i,
                        uid: m.uid,
                        facts: keep.then(|| {
                            Arc::new(Facts::light(row.internal_date, size, &row.blob_id, meta))
                        }),
                    });
                }
            }
        }
        cache.put(mailbox_id, uidvalidity, learned);
        if !raw_needed {
            for (&i, f) in indexes.iter().zip(facts) {
                let Some(f) = f else {
                    continue;
                };
                let m = &sel.msgs[i];
                let view = MessageView {
                    seq: i as u32 + 1,
                    uid: m.uid,
                    modseq: m.modseq.max(0) as u64,
                    flags: sel.msgs.flags(m),
                    internal_date: f.internal_date,
                    size: f.size,
                    meta: &f.meta,
                    raw_header: None,
                    text: None,
                    recent: sel.is_recent(m.uid),
                };
                if mailfleet_imap_search::matches(key, &view, &ctx) {
                    hits.push(Hit {
                        index: i,
                        uid: m.uid,
                        facts: keep.then_some(f.clone()),
                    });
                }
            }
        } else {
            hits.sort_by_key(|h| h.index);
        }
        Ok(hits)
    }

    /// Writes a result as SEARCH/SORT or ESEARCH, saving it for `$` if asked.
    fn search_result(
        &mut self,
        tag: &str,
        uid: bool,
        sort: bool,
        ret: Option<Vec<SearchReturn>>,
        ordered: Vec<(u32, u32, u64)>,
        with_modseq: bool,
    ) {
        // (sequence number, uid, modseq) in the order to show.
        let ids: Vec<u32> = ordered
            .iter()
            .map(|(s, u, _)| if uid { *u } else { *s })
            .collect();
        let highest = |list: &mut dyn Iterator<Item = u64>| list.max();
        let mod_seq = if with_modseq {
            highest(&mut ordered.iter().map(|o| o.2))
        } else {
            None
        };
        let Some(mut ret) = ret else {
            let d = if sort {
                Data::Sort { ids, mod_seq }
            } else {
                Data::Search { ids, mod_seq }
            };
            self.untagged(d);
            return;
        };
        if ret.is_empty() {
            ret.push(SearchReturn::All);
        }
        let save = ret.contains(&SearchReturn::Save);
        let min = ordered.iter().min_by_key(|o| o.0).copied();
        let max = ordered.iter().max_by_key(|o| o.0).copied();
        // With only MIN and MAX asked, MODSEQ is theirs (RFC 7162 §3.1.5).
        let only_minmax = ret
            .iter()
            .any(|r| matches!(r, SearchReturn::Min | SearchReturn::Max))
            && !ret
                .iter()
                .any(|r| matches!(r, SearchReturn::All | SearchReturn::Count));
        let mod_seq = if with_modseq && only_minmax {
            let mut v = Vec::new();
            if ret.contains(&SearchReturn::Min) {
                v.extend(min.map(|m| m.2));
            }
            if ret.contains(&SearchReturn::Max) {
                v.extend(max.map(|m| m.2));
            }
            v.into_iter().max()
        } else {
            mod_seq
        };
        if save {
            let only_minmax = ret
                .iter()
                .any(|r| matches!(r, SearchReturn::Min | SearchReturn::Max))
                && !ret
                    .iter()
                    .any(|r| matches!(r, SearchReturn::All | SearchReturn::Count));
            let mut uids: Vec<u32> = if only_minmax {
                let mut v = Vec::new();
                if ret.contains(&SearchReturn::Min) {
                    v.extend(min.map(|m| m.1));
                }
                if ret.contains(&SearchReturn::Max) {
                    v.extend(max.map(|m| m.1));
                }
                v
            } else {
                ordered.iter().map(|o| o.1).collect()
            };
            uids.sort_unstable();
            uids.dedup();
            self.saved = Some(uids);
            if ret.iter().all(|r| *r == SearchReturn::Save) {
                return;
            }
        }
        let pick = |v: Option<(u32, u32, u64)>| v.map(|(s, u, _)| if uid { u } else { s });
        let mut items = Vec::new();
        for r in &ret {
            match r {
                SearchReturn::Min => {
                    if let Some(v) = pick(min) {
                        items.push(EsearchData::Min(v));
                    }
                }
                SearchReturn::Max => {
                    if let Some(v) = pick(max) {
                        items.push(EsearchData::Max(v));
                    }
                }
                SearchReturn::Count => items.push(EsearchData::Count(ids.len() as u32)),
                SearchReturn::All => {
                    if !ids.is_empty() {
                        let mut sorted = ids.clone();
                        if !sort {
                            sorted.sort_unstable();
                            items.push(EsearchData::All(SequenceSet::from_sorted(&sorted)));
                        } else {
                            // ESORT keeps the order: runs of consecutive numbers as ranges.
                            use mailfleet_imap_proto::SeqNum::Value;
                            let mut ranges: Vec<(u32, u32)> = Vec::new();
                            for &v in &sorted {
                                match ranges.last_mut() {
                                    Some((_, hi)) if hi.checked_add(1) == Some(v) => *hi = v,
                                    _ => ranges.push((v, v)),
                                }
                            }
                            items.push(EsearchData::All(SequenceSet::Ranges(
                                ranges
                                    .into_iter()
                                    .map(|(a, b)| (Value(a), Value(b)))
                                    .collect(),
                            )));
                        }
                    }
                }
                SearchReturn::Save => {}
            }
        }
        if let Some(m) = mod_seq
            && !ids.is_empty()
        {
            items.push(EsearchData::ModSeq(m));
        }
        self.untagged(Data::Esearch {
            tag: Some(tag.to_string()),
            uid,
            items,
        });
    }

    /// (sequence number, UID, MODSEQ) of hits, in their order.
    fn ordered<'a>(&self, hits: impl Iterator<Item = &'a Hit>) -> Vec<(u32, u32, u64)> {
        let sel = self.selected.as_ref();
        hits.map(|h| {
            let modseq = sel
                .and_then(|s| s.msgs.get(h.index))
                .map(|m| m.modseq.max(0) as u64)
                .unwrap_or(0);
            (h.index as u32 + 1, h.uid, modseq)
        })
        .collect()
    }

    pub async fn search(
        &mut self,
        tag: &str,
        uid: bool,
        ret: Option<Vec<SearchReturn>>,
        charset: Option<String>,
        key: SearchKey,
    ) -> Reply {
        if !charset_ok(charset.as_deref()) {
            return bad_charset();
        }
        let modseq = has_modseq(&key);
        if modseq {
            self.enable_condstore();
        }
        let hits = match self.evaluate(&key, false).await {
            Ok(h) => h,
            Err(r) => return r,
        };
        let ordered = self.ordered(hits.iter());
        self.search_result(tag, uid, false, ret, ordered, modseq);
        Reply::ok("SEARCH completed")
    }

    pub async fn sort(
        &mut self,
        tag: &str,
        uid: bool,
        ret: Option<Vec<SearchReturn>>,
        criteria: Vec<SortCriterion>,
        charset: String,
        key: SearchKey,
    ) -> Reply {
        if !charset_ok(Some(&charset)) {
            return bad_charset();
        }
        let modseq = has_modseq(&key);
        let hits = match self.evaluate(&key, true).await {
            Ok(h) => h,
            Err(r) => return r,
        };
        let order = {
            let Some(sel) = self.selected.as_ref() else {
                return Reply::bad("no mailbox selected");
            };
            let views: Vec<MessageView> = hits.iter().filter_map(|h| view(sel, h)).collect();
            mailfleet_imap_search::sort(&criteria, &views)
        };
        let ordered = self.ordered(order.into_iter().filter_map(|i| hits.get(i)));
        self.search_result(tag, uid, true, ret, ordered, modseq);
        Reply::ok("SORT completed")
    }

    pub async fn thread(
        &mut self,
        uid: bool,
        algorithm: ThreadAlgorithm,
        charset: String,
        key: SearchKey,
    ) -> Reply {
        if !charset_ok(Some(&charset)) {
            return bad_charset();
        }
        // Which messages match decides whether the node has the answer already: for keys the
        // session answers alone (ALL, flags) that takes no metadata.
        let with_facts = !local_only(&key);
        let mut hits = match self.evaluate(&key, with_facts).await {
            Ok(h) => h,
            Err(r) => return r,
        };
        let Some((mailbox_id, uidvalidity)) = self
            .selected
            .as_ref()
            .map(|s| (s.mailbox.id, s.mailbox.uidvalidity))
        else {
            return Reply::bad("no mailbox selected");
        };
        let messages = |hits: &[Hit]| -> Vec<(u32, u32)> {
            hits.iter().map(|h| (h.index as u32 + 1, h.uid)).collect()
        };
        let mut listed = messages(&hits);
        let query = threadcache::Query {
            mailbox_id,
            uidvalidity,
            algorithm,
            uid,
        };
        let cache = self.shared.clone();
        if let Some(threads) = cache.thread_cache.get(query, &listed) {
            self.untagged(Data::Thread(threads));
            return Reply::ok("THREAD completed");
        }
        if !with_facts {
            hits = match self.evaluate(&key, true).await {
                Ok(h) => h,
                Err(r) => return r,
            };
            listed = messages(&hits);
        }
        let (threads, complete) = {
            let Some(sel) = self.selected.as_ref() else {
                return Reply::bad("no mailbox selected");
            };
            let views: Vec<MessageView> = hits.iter().filter_map(|h| view(sel, h)).collect();
            let threads: Arc<[_]> = mailfleet_imap_search::thread(algorithm, &views, uid).into();
            (threads, views.len() == hits.len())
        };
        // Kept only when every matching message was threaded (none missed its metadata).
        if complete {
            cache.thread_cache.put(query, listed, threads.clone());
        }
        self.untagged(Data::Thread(threads));
        Reply::ok("THREAD completed")
    }
}

/// A spawned page read that is stopped when the command no longer waits for it (the client
/// went away mid-SORT), so a session that ends leaves no reads running behind it.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn view<'a>(sel: &'a crate::selected::Selected, h: &'a Hit) -> Option<MessageView<'a>> {
    let m = sel.msgs.get(h.index)?;
    let f = h.facts.as_ref()?;
    Some(MessageView {
        seq: h.index as u32 + 1,
        uid: m.uid,
        modseq: m.modseq.max(0) as u64,
        flags: sel.msgs.flags(m),
        internal_date: f.internal_date,
        size: f.size,
        meta: &f.meta,
        raw_header: None,
        text: None,
        recent: sel.is_recent(m.uid),
    })
}

#[cfg(test)]
mod tests {
    use super::AbortOnDrop;

    /// A page read still running when its command is dropped (the client went away) stops:
    /// the task's sender is dropped with it, so the receiver sees the channel close.
    #[tokio::test]
    async fn a_dropped_page_read_stops() {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
        let read = AbortOnDrop(tokio::spawn(async move {
            let _held = tx;
            let _ = started_tx.send(());
            std::future::pending::<()>().await;
        }));
        started.await.expect("the read started");
        drop(read);
        let closed = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv()).await;
        assert!(
            matches!(closed, Ok(None)),
            "the read is still running after its command was dropped"
        );
    }
}
