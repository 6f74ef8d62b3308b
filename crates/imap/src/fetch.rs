//! FETCH and UID FETCH (with CHANGEDSINCE and VANISHED): UID, FLAGS and MODSEQ from the
//! session's view; ENVELOPE, BODY, BODYSTRUCTURE and PREVIEW from the metadata stored at
//! delivery; sections and BINARY from the blob. Messages are read from the store in runs of
//! at most [`CHUNK`], never the whole mailbox at once, and answers are written out as they
//! grow.

use chrono::{Datelike, Timelike};
use mailfleet_imap_proto::{
    Code, Data, Date, DateTime, FetchAttr, FetchData, FetchItems, Section, SectionText, SequenceSet,
};
use mailfleet_message::Metadata;
use mailfleet_store::{FlagOp, Message};

use std::sync::Arc;

use crate::convert;
use crate::metacache::Facts;
use crate::sections::{BinaryError, binary_bytes, section_bytes};
use crate::selected::has_flag;
use crate::session::{End, FLUSH_AT, Reply, Session};

/// Messages read from the store per query.
const CHUNK: usize = 256;

pub(crate) fn datetime(ts: i64) -> DateTime {
    let t = chrono::DateTime::from_timestamp(ts, 0).unwrap_or_default();
    DateTime {
        date: Date {
            year: t.year().clamp(0, 9999) as u16,
            month: t.month() as u8,
            day: t.day() as u8,
        },
        hour: t.hour() as u8,
        minute: t.minute() as u8,
        second: t.second() as u8,
        zone: 0,
    }
}

fn expand(items: FetchItems) -> Vec<FetchAttr> {
    use FetchAttr::*;
    match items {
        FetchItems::All => vec![Flags, InternalDate, Rfc822Size, Envelope],
        FetchItems::Fast => vec![Flags, InternalDate, Rfc822Size],
        FetchItems::Full => vec![Flags, InternalDate, Rfc822Size, Envelope, Body],
        FetchItems::Attrs(a) => a,
    }
}

fn needs_row(a: &FetchAttr) -> bool {
    !matches!(a, FetchAttr::Uid | FetchAttr::Flags | FetchAttr::ModSeq)
}

fn needs_meta(a: &FetchAttr) -> bool {
    use FetchAttr::*;
    match a {
        Envelope
        | Body
        | BodyStructure
        | Preview { .. }
        | BinarySize(_)
        | Rfc822Header
        | Rfc822Text => true,
        BodySection { section, .. } => !section.part.is_empty() || section.text.is_some(),
        Binary { part, .. } => !part.is_empty(),
        _ => false,
    }
}

fn needs_raw(a: &FetchAttr) -> bool {
    use FetchAttr::*;
    matches!(
        a,
        BodySection { .. } | Binary { .. } | BinarySize(_) | Rfc822 | Rfc822Header | Rfc822Text
    )
}

fn sets_seen(a: &FetchAttr) -> bool {
    use FetchAttr::*;
    match a {
        BodySection { peek, .. } | Binary { peek, .. } => !peek,
        Rfc822 | Rfc822Text => true,
        _ => false,
    }
}

fn partial(data: Vec<u8>, p: Option<(u32, u32)>) -> (Vec<u8>, Option<u32>) {
    match p {
        None => (data, None),
        Some((origin, len)) => {
            let start = (origin as usize).min(data.len());
            let end = start.saturating_add(len as usize).min(data.len());
            (data[start..end].to_vec(), Some(origin))
        }
    }
}

/// Splits sorted indexes into runs of neighbours, at most `CHUNK` long.
pub(crate) fn runs(indexes: &[usize]) -> Vec<&[usize]> {
    runs_of(indexes, CHUNK)
}

/// Splits sorted indexes into runs of neighbours, at most `max` long.
pub(crate) fn runs_of(indexes: &[usize], max: usize) -> Vec<&[usize]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=indexes.len() {
        if i == indexes.len() || indexes[i] != indexes[i - 1] + 1 || i - start >= max {
            if start < i {
                out.push(&indexes[start..i]);
            }
            start = i;
        }
    }
    out
}

impl Session {
    pub async fn fetch(
        &mut self,
        uid: bool,
        set: SequenceSet,
        items: FetchItems,
        changed_since: Option<u64>,
        vanished: bool,
    ) -> Result<Reply, End> {
        let mut attrs = expand(items);
        if uid && !attrs.contains(&FetchAttr::Uid) {
            attrs.insert(0, FetchAttr::Uid);
        }
        if changed_since.is_some() || attrs.contains(&FetchAttr::ModSeq) {
            self.enable_condstore();
        }
        if changed_since.is_some() && !attrs.contains(&FetchAttr::ModSeq) {
            attrs.push(FetchAttr::ModSeq);
        }
        if vanished && (!uid || changed_since.is_none() || !self.qresync) {
            return Ok(Reply::bad(
                "VANISHED needs UID FETCH with CHANGEDSINCE and QRESYNC",
            ));
        }
        let saved = self.saved.clone();
        let Some(sel) = self.selected.as_ref() else {
            return Ok(Reply::bad("no mailbox selected"));
        };
        let mut indexes = match sel.resolve(&set, uid, saved.as_deref()) {
            Ok(i) => i,
            Err(e) => return Ok(Reply::bad(e)),
        };
        let mailbox_id = sel.mailbox.id;
        let read_only = sel.read_only;
        if let Some(since) = changed_since {
            indexes.retain(|&i| sel.msgs[i].modseq > since as i64);
        }
        if vanished && let Some(since) = changed_since {
            let max = sel.max_uid();
            match self
                .shared
                .ctx
                .store
                .changes_since(mailbox_id, since as i64)
                .await
            {
                Ok(c) if (since as i64) < c.purged_up_to => {
                    // Tombstones after `since` may be purged: the UIDs asked for that the
                    // mailbox no longer has.
                    let existing: Vec<u32> = match self
                        .shared
                        .ctx
                        .store
                        .list_messages(mailbox_id, 1, u32::MAX)
                        .await
                    {
                        Ok(list) => list.into_iter().map(|m| m.uid).collect(),
                        Err(e) => {
                            return Ok(Reply::unavailable(&self.id, "mailbox not read", &e));
                        }
                    };
                    let gone = crate::selected::uids_missing(&existing, max, Some(&set));
                    if !gone.is_empty() {
                        self.untagged(Data::Vanished {
                            earlier: true,
                            uids: crate::selected::ranges_to_set(&gone),
                        });
                    }
                }
                Ok(c) => {
                    let gone: Vec<u32> = c
                        .expunged
                        .into_iter()
                        .filter(|u| set.contains(*u, max))
                        .collect();
                    if !gone.is_empty() {
                        self.untagged(Data::Vanished {
                            earlier: true,
                            uids: SequenceSet::from_sorted(&gone),
                        });
                    }
                }
                Err(e) => return Ok(Reply::unavailable(&self.id, "changes not read", &e)),
            }
        }
        let row = attrs.iter().any(needs_row);
        let meta_needed = attrs.iter().any(needs_meta);
        // `BODY[]<offset.length>` alone (a client paging through a large message): only that
        // range of the blob is read.
        let whole_partials: Vec<(u32, u32)> = attrs
            .iter()
            .filter_map(|a| match a {
                FetchAttr::BodySection {
                    section,
                    partial: Some(p),
                    ..
                } if section.part.is_empty() && section.text.is_none() => Some(*p),
                _ => None,
            })
            .collect();
        let range_only = match whole_partials.as_slice() {
            [one] if attrs.iter().filter(|a| needs_raw(a)).count() == 1 => Some(*one),
            _ => None,
        };
        let raw_needed = range_only.is_none() && attrs.iter().any(needs_raw);
        let seen = !read_only && attrs.iter().any(sets_seen);
        let mut missing = false;
        let mut failure: Option<Reply> = None;
        let mut newly_seen: Vec<u32> = Vec::new();
        // Answers that need no message bytes can come from the node's cache of what earlier
        // commands read: RFC822.SIZE, INTERNALDATE, EMAILID and ENVELOPE from any entry,
        // BODY, BODYSTRUCTURE and PREVIEW from one kept whole.
        let cacheable = row && !raw_needed && range_only.is_none();
        let want_whole = attrs.iter().any(|a| {
            matches!(
                a,
                FetchAttr::Body | FetchAttr::BodyStructure | FetchAttr::Preview { .. }
            )
        });
        let uidvalidity = self
            .selected
            .as_ref()
            .map(|s| s.mailbox.uidvalidity)
            .unwrap_or(0);
        let cache = self.shared.meta_cache.clone();
        for run in runs(&indexes) {
            if seen {
                newly_seen = self.mark_seen(mailbox_id, run).await;
            }
            let cached: Option<Vec<Arc<Facts>>> = if cacheable {
                let sel = self.selected.as_ref().ok_or(End::Close)?;
                let uids: Vec<u32> = run.iter().map(|&i| sel.msgs[i].uid).collect();
                let got = cache.get(mailbox_id, uidvalidity, &uids);
                got.iter()
                    .all(|f| f.as_ref().is_some_and(|f| f.whole || !want_whole))
                    .then(|| got.into_iter().flatten().collect())
            } else {
                None
            };
            let mut learned = Vec::new();
            let rows: Vec<(Message, Option<String>)> = if row && cached.is_none() {
                let sel = self.selected.as_ref().ok_or(End::Close)?;
                let (first, last) = (sel.msgs[run[0]].uid, sel.msgs[run[run.len() - 1]].uid);
                match self.rows_between(mailbox_id, first, last, run.len()).await {
                    Ok(r) => r,
                    Err(e) => {
                        failure = Some(Reply::unavailable(&self.id, "messages not read", &e));
                        break;
                    }
                }
            } else {
                Vec::new()
            };
            let mut rows = rows.into_iter().peekable();
            for (k, &i) in run.iter().enumerate() {
                let Some(sel) = self.selected.as_ref() else {
                    break;
                };
                let m = &sel.msgs[i];
                let (muid, flags, modseq) = (m.uid, self.flags_of(m, sel), m.modseq);
                let mut found = None;
                let mut facts: Option<Arc<Facts>> = None;
                if let Some(c) = &cached {
                    let f = c.get(k).ok_or(End::Close)?;
                    found = Some((
                        Message {
                            mailbox_id,
                            uid: muid,
                            modseq,
                            flags: Vec::new(),
                            internal_date: f.internal_date,
                            size: f.size as i64,
                            blob_id: f.blob_id.to_string(),
                            expunged: false,
                        },
                        None,
                    ));
                    facts = Some(f.clone());
                } else if row {
                    while let Some((r, _)) = rows.peek() {
                        if r.uid < muid {
                            rows.next();
                        } else {
                            break;
                        }
                    }
                    if rows.peek().is_some_and(|(r, _)| r.uid == muid) {
                        found = rows.next();
                    }
                    if found.is_none() {
                        missing = true;
                        continue;
                    }
                }
                let raw = match (&found, &facts) {
                    (Some((msg, stored)), None) => {
                        match self
                            .message_parts(msg, stored.as_deref(), meta_needed, raw_needed)
                            .await
                        {
                            Some((meta, raw)) => {
                                if let Some(meta) = meta {
                                    let f = Arc::new(Facts::whole(
                                        msg.internal_date,
                                        msg.size.max(0) as u64,
                                        &msg.blob_id,
                                        meta,
                                    ));
                                    learned.push((msg.uid, f.clone()));
                                    facts = Some(f);
                                }
                                raw
                            }
                            None => {
                                missing = true;
                                continue;
                            }
                        }
                    }
                    _ => None,
                };
                let meta: Option<&Metadata> = if meta_needed {
                    facts.as_deref().map(|f| &f.meta)
                } else {
                    None
                };
                let range_bytes = match (range_only, &found) {
                    (Some((origin, len)), Some((msg, _))) => match self
                        .shared
                        .ctx
                        .blobs
                        .get_range(&msg.blob_id, u64::from(origin), u64::from(len))
                        .await
                    {
                        Ok(b) => Some(b),
                        Err(e) => {
                            tracing::warn!(session = %self.id, blob = %msg.blob_id, "message not read: {e}");
                            missing = true;
                            continue;
                        }
                    },
                    _ => None,
                };
                let mut out = Vec::with_capacity(attrs.len());
                let mut cte_error = false;
                for a in &attrs {
                    let item = match a {
                        FetchAttr::Uid => FetchData::Uid(muid),
                        FetchAttr::Flags => FetchData::Flags(flags.clone()),
                        FetchAttr::ModSeq => FetchData::ModSeq(modseq.max(0) as u64),
                        FetchAttr::InternalDate => FetchData::InternalDate(datetime(
                            found.as_ref().map(|(m, _)| m.internal_date).unwrap_or(0),
                        )),
                        FetchAttr::SaveDate => FetchData::SaveDate(Some(datetime(
                            found.as_ref().map(|(m, _)| m.internal_date).unwrap_or(0),
                        ))),
                        FetchAttr::Rfc822Size => FetchData::Rfc822Size(
                            found
                                .as_ref()
                                .map(|(m, _)| m.size.max(0) as u64)
                                .unwrap_or(0),
                        ),
                        FetchAttr::EmailId => FetchData::EmailId(format!(
                            "E{}",
                            found
                                .as_ref()
                                .map(|(m, _)| m.blob_id.get(..24).unwrap_or(&m.blob_id))
                                .unwrap_or("")
                        )),
                        FetchAttr::ThreadId => FetchData::ThreadId(None),
                        FetchAttr::Envelope => match &meta {
                            Some(m) => {
                                FetchData::Envelope(Box::new(convert::envelope(&m.envelope)))
                            }
                            None => continue,
                        },
                        FetchAttr::Body | FetchAttr::BodyStructure => match &meta {
                            Some(m) => {
                                let extended = matches!(a, FetchAttr::BodyStructure);
                                FetchData::BodyStructure {
                                    extended,
                                    body: Box::new(convert::body(&m.body, extended)),
                                }
                            }
                            None => continue,
                        },
                        FetchAttr::Preview { .. } => {
                            FetchData::Preview(meta.as_ref().map(|m| m.preview.clone()))
                        }
                        FetchAttr::Rfc822 => FetchData::Rfc822(raw.clone()),
                        FetchAttr::Rfc822Header | FetchAttr::Rfc822Text => {
                            let text = if matches!(a, FetchAttr::Rfc822Header) {
                                SectionText::Header
                            } else {
                                SectionText::Text
                            };
                            let bytes = match (&raw, &meta) {
                                (Some(r), Some(m)) => section_bytes(
                                    r,
                                    m,
                                    &Section {
                                        part: Vec::new(),
                                        text: Some(text),
                                    },
                                ),
                                _ => None,
                            };
                            if matches!(a, FetchAttr::Rfc822Header) {
                                FetchData::Rfc822Header(bytes)
                            } else {
                                FetchData::Rfc822Text(bytes)
                            }
                        }
                        FetchAttr::BodySection {
                            section,
                            partial: Some((origin, _)),
                            ..
                        } if range_bytes.is_some()
                            && section.part.is_empty()
                            && section.text.is_none() =>
                        {
                            FetchData::BodySection {
                                section: section.clone(),
                                origin: Some(*origin),
                                data: range_bytes.clone(),
                            }
                        }
                        FetchAttr::BodySection {
                            section,
                            partial: p,
                            ..
                        } => {
                            let bytes = match (&raw, &meta) {
                                (Some(r), Some(m)) => section_bytes(r, m, section),
                                (Some(r), None)
                                    if section.part.is_empty() && section.text.is_none() =>
                                {
                                    Some(r.clone())
                                }
                                _ => None,
                            };
                            let bytes = bytes.map(|b| {
                                if section.part.is_empty() || !b.contains(&0) {
                                    b
                                } else {
                                    // A part holding NUL cannot go in a literal (RFC 3516
                                    // §4): BODY gives it base64-encoded, BINARY as is.
                                    base64_lines(&b)
                                }
                            });
                            let (data, origin) = match bytes {
                                Some(b) => {
                                    let (d, o) = partial(b, *p);
                                    (Some(d), o)
                                }
                                None => (None, p.map(|(o, _)| o)),
                            };
                            FetchData::BodySection {
                                section: section.clone(),
                                origin,
                                data,
                            }
                        }
                        FetchAttr::Binary {
                            part, partial: p, ..
                        } => {
                            let bytes = match (&raw, &meta) {
                                (Some(r), Some(m)) => binary_bytes(r, m, part),
                                (Some(r), None) if part.is_empty() => Ok(r.clone()),
                                _ => Err(BinaryError::NoPart),
                            };
                            match bytes {
                                Ok(b) => {
                                    let (d, o) = partial(b, *p);
                                    FetchData::Binary {
                                        part: part.clone(),
                                        origin: o,
                                        data: Some(d),
                                    }
                                }
                                Err(BinaryError::UnknownEncoding) => {
                                    cte_error = true;
                                    break;
                                }
                                Err(BinaryError::NoPart) => FetchData::Binary {
                                    part: part.clone(),
                                    origin: p.map(|(o, _)| o),
                                    data: None,
                                },
                            }
                        }
                        FetchAttr::BinarySize(part) => {
                            let size = match (&raw, &meta) {
                                (Some(r), Some(m)) => binary_bytes(r, m, part)
                                    .map(|b| b.len() as u64)
                                    .unwrap_or(0),
                                _ => 0,
                            };
                            FetchData::BinarySize {
                                part: part.clone(),
                                size,
                            }
                        }
                    };
                    out.push(item);
                }
                if newly_seen.binary_search(&muid).is_ok()
                    && !out.iter().any(|d| matches!(d, FetchData::Flags(_)))
                {
                    // \Seen set by this FETCH is reported with it (RFC 9051 §6.4.5).
                    out.push(FetchData::Flags(flags.clone()));
                }
                if cte_error {
                    failure = Some(Reply::no(
                        Some(Code::UnknownCte),
                        "a part has a content transfer encoding that cannot be decoded",
                    ));
                    continue;
                }
                self.untagged(Data::Fetch {
                    seq: i as u32 + 1,
                    items: out,
                });
                if self.out.len() >= FLUSH_AT {
                    self.flush().await?;
                }
            }
            cache.put(mailbox_id, uidvalidity, learned);
        }
        if let Some(f) = failure {
            return Ok(f);
        }
        if missing {
            return Ok(Reply::no(
                Some(Code::ExpungeIssued),
                "some messages were expunged meanwhile",
            ));
        }
        Ok(Reply::ok("FETCH completed"))
    }

    /// The metadata and raw bytes of a message, as needed. Metadata missing from the store (a
    /// message delivered without it) is computed from the blob and kept. `None` if the blob
    /// is gone.
    async fn message_parts(
        &mut self,
        msg: &Message,
        stored: Option<&str>,
        meta_needed: bool,
        raw_needed: bool,
    ) -> Option<(Option<Metadata>, Option<Vec<u8>>)> {
        let mut meta = if meta_needed {
            stored.and_then(|s| Metadata::from_stored(s).ok())
        } else {
            None
        };
        let raw = if raw_needed || (meta_needed && meta.is_none()) {
            match self.shared.ctx.blobs.get(&msg.blob_id).await {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(session = %self.id, blob = %msg.blob_id, "message not read: {e}");
                    return None;
                }
            }
        } else {
            None
        };
        if meta_needed
            && meta.is_none()
            && let Some(r) = &raw
        {
            let m = Metadata::parse(r);
            if let Err(e) = self
                .shared
                .ctx
                .store
                .put_message_meta(&msg.blob_id, &m.to_stored())
                .await
            {
                tracing::debug!(session = %self.id, "metadata not kept: {e}");
            }
            meta = Some(m);
        }
        Some((meta, raw))
    }

    /// Sets `\Seen` on the messages of a run that lack it (a FETCH of a body without PEEK),
    /// so that their FLAGS in the answer show it.
    async fn mark_seen(&mut self, mailbox_id: i64, run: &[usize]) -> Vec<u32> {
        let Some(sel) = self.selected.as_ref() else {
            return Vec::new();
        };
        let uids: Vec<u32> = run
            .iter()
            .filter_map(|&i| sel.msgs.get(i))
            .filter(|m| !has_flag(sel.msgs.flags(m), "\\Seen"))
            .map(|m| m.uid)
            .collect();
        if uids.is_empty() {
            return uids;
        }
        let flags = ["\\Seen".to_string()];
        match self
            .shared
            .ctx
            .store
            .set_flags(mailbox_id, &uids, FlagOp::Add, &flags, None)
            .await
        {
            Ok(outcome) => {
                let all: Vec<String> = outcome
                    .changed
                    .iter()
                    .flat_map(|c| c.flags.iter().cloned())
                    .collect();
                self.announce_keywords(&all);
                if let Some(sel) = self.selected.as_mut() {
                    for ch in outcome.changed {
                        if let Some(i) = sel.index_of(ch.uid) {
                            sel.msgs_mut().set(i, ch.modseq, &ch.flags);
                        }
                    }
                }
                self.shared.watcher.bump(mailbox_id);
                uids
            }
            Err(e) => {
                tracing::warn!(session = %self.id, "\\Seen not set: {e}");
                Vec::new()
            }
        }
    }
}

/// Base64 in lines of 76 characters, CRLF after each.
fn base64_lines(data: &[u8]) -> Vec<u8> {
    let encoded = mailfleet_imap_proto::base64_encode(data);
    let mut out = Vec::with_capacity(encoded.len() + encoded.len() / 38 + 2);
    for chunk in encoded.as_bytes().chunks(76) {
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_split_at_gaps_and_size() {
        let idx: Vec<usize> = (0..600).chain([700, 701, 900]).collect();
        let r = runs(&idx);
        assert_eq!(
            r.iter().map(|r| r.len()).collect::<Vec<_>>(),
            vec![256, 256, 88, 2, 1]
        );
        assert!(runs(&[]).is_empty());
    }

    #[test]
    fn binary_parts_in_body_are_base64() {
        assert_eq!(base64_lines(b"\0\xed\r\n"), b"AO0NCg==\r\n");
        assert_eq!(
            base64_lines(&[0u8; 60])
                .iter()
                .filter(|&&c| c == b'\n')
                .count(),
            2
        );
    }

    #[test]
    fn internal_dates() {
        let d = datetime(0);
        assert_eq!(d.to_string(), "01-Jan-1970 00:00:00 +0000");
        assert_eq!(
            partial(b"hello".to_vec(), Some((1, 3))),
            (b"ell".to_vec(), Some(1))
        );
        assert_eq!(
            partial(b"hello".to_vec(), Some((9, 3))),
            (Vec::new(), Some(9))
        );
    }
}
