//! The selected mailbox as a session knows it, and how it catches up with the store.
//!
//! The session keeps, per message, its UID, flags and MODSEQ, by sequence number, in a list it
//! shares with the node's snapshot of the mailbox (`snapshots`) until it changes something:
//! SELECT then costs what changed since the node last read the mailbox, not its size. After each
//! command (and in IDLE) it asks the node's watcher whether the mailbox moved; only then does
//! it read the changes since the MODSEQ it knows (`changes_since`), and tells the client:
//! EXPUNGE (or VANISHED with QRESYNC) for messages gone when the command allows it, FETCH
//! FLAGS for flags changed elsewhere, EXISTS for new messages, FLAGS for new keywords.
//!
//! Expunges are learned from their tombstones, which the master purges after
//! `imap.tombstone_days`, raising the mailbox's floor (`Changes::purged_up_to`). A session (or
//! a QRESYNC or CHANGEDSINCE client) whose MODSEQ is below the floor cannot trust the
//! tombstones to be complete: it compares the UIDs it knows with those the store has now
//! ([`uids_missing`]), and counts as expunged every one that is gone.

use std::sync::Arc;

use mailfleet_imap_proto::{Code, Data, FetchData, Flag, SeqNum, SequenceSet};
use mailfleet_store::Mailbox;

use crate::msglist::{List, Msg};
use crate::notify::Watch;
use crate::session::Session;

pub(crate) struct Selected {
    pub mailbox: Mailbox,
    pub read_only: bool,
    /// By sequence number; shared with the node's snapshot until this session changes it
    /// ([`Selected::msgs_mut`]).
    pub msgs: Arc<List>,
    /// The UIDs `\Recent` in this session (IMAP4rev1), as half-open ranges: those it claimed
    /// at SELECT and as they arrived.
    pub recent: Vec<(u32, u32)>,
    /// Every change up to this MODSEQ is reflected in `msgs` (or waits in `pending_expunge`).
    pub known_modseq: i64,
    pub watch: Watch,
    /// UIDs expunged in the store and not yet announced (a FETCH, STORE or SEARCH was
    /// running).
    pub pending_expunge: Vec<u32>,
    /// Keywords announced in FLAGS.
    pub keywords: Vec<String>,
}

/// The UIDs from 1 to `largest` that are not in `existing` (ascending), as ranges, kept to
/// those in `within` (`*` standing for `largest`) when given: what VANISHED (EARLIER) reports
/// when tombstones below the floor are gone (RFC 7162 §3.2.5.2 lets a server list UIDs the
/// client may never have seen). Empty when none.
pub(crate) fn uids_missing(
    existing: &[u32],
    largest: u32,
    within: Option<&SequenceSet>,
) -> Vec<(u32, u32)> {
    let mut gaps: Vec<(u32, u32)> = Vec::new();
    let mut next: u64 = 1;
    for &uid in existing {
        if uid > largest {
            break;
        }
        if u64::from(uid) > next {
            gaps.push((next as u32, uid - 1));
        }
        next = next.max(u64::from(uid) + 1);
    }
    if next <= u64::from(largest) {
        gaps.push((next as u32, largest));
    }
    let Some(set) = within else {
        return gaps;
    };
    let SequenceSet::Ranges(ranges) = set else {
        return Vec::new();
    };
    let val = |s: &SeqNum| match s {
        SeqNum::Value(v) => *v,
        SeqNum::Star => largest,
    };
    let mut out: Vec<(u32, u32)> = Vec::new();
    for (a, b) in ranges {
        let (lo, hi) = (val(a).min(val(b)), val(a).max(val(b)));
        for &(g1, g2) in &gaps {
            let (x, y) = (g1.max(lo), g2.min(hi));
            if x <= y {
                out.push((x, y));
            }
        }
    }
    out.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(out.len());
    for (x, y) in out {
        match merged.last_mut() {
            Some(last) if u64::from(x) <= u64::from(last.1) + 1 => last.1 = last.1.max(y),
            _ => merged.push((x, y)),
        }
    }
    merged
}

/// Ranges of UIDs as a sequence set.
pub(crate) fn ranges_to_set(ranges: &[(u32, u32)]) -> SequenceSet {
    SequenceSet::Ranges(
        ranges
            .iter()
            .map(|&(a, b)| (SeqNum::Value(a), SeqNum::Value(b)))
            .collect(),
    )
}

pub(crate) const SYSTEM_FLAGS: [&str; 5] =
    ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"];

/// A stored flag string as a protocol flag.
pub(crate) fn to_flag(s: &str) -> Flag {
    let Some(name) = s.strip_prefix('\\') else {
        return Flag::Keyword(s.to_string());
    };
    const SYSTEM: [(&str, Flag); 6] = [
        ("answered", Flag::Answered),
        ("flagged", Flag::Flagged),
        ("deleted", Flag::Deleted),
        ("seen", Flag::Seen),
        ("draft", Flag::Draft),
        ("recent", Flag::Recent),
    ];
    SYSTEM
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, f)| f.clone())
        .unwrap_or_else(|| Flag::Extension(name.to_string()))
}

pub(crate) fn to_flags(list: &[String]) -> Vec<Flag> {
    list.iter().map(|s| to_flag(s)).collect()
}

pub(crate) fn has_flag(list: &[String], flag: &str) -> bool {
    list.iter().any(|f| f.eq_ignore_ascii_case(flag))
}

impl Selected {
    pub fn exists(&self) -> u32 {
        self.msgs.len() as u32
    }

    /// How many messages are `\Recent` in this session.
    pub fn recent(&self) -> u32 {
        self.recent
            .iter()
            .map(|&(a, b)| {
                let from = self.msgs.partition_point(|m| m.uid < a);
                let to = self.msgs.partition_point(|m| m.uid < b);
                to.saturating_sub(from)
            })
            .sum::<usize>() as u32
    }

    pub fn is_recent(&self, uid: u32) -> bool {
        // Ascending: each claim starts where the mailbox's last one ended.
        let i = self.recent.partition_point(|&(_, b)| b <= uid);
        self.recent
            .get(i)
            .is_some_and(|&(a, b)| (a..b).contains(&uid))
    }

    /// Adds UIDs `from..to` claimed as recent, after those claimed before.
    pub fn add_recent(&mut self, (from, to): (u32, u32)) {
        if from >= to {
            return;
        }
        match self.recent.last_mut() {
            Some(last) if last.1 == from => last.1 = to,
            Some(last) if last.1 > from => {
                // Not after the last claim (not expected): keep the list sorted and disjoint.
                self.recent.push((from, to));
                self.recent.sort_unstable();
                let mut merged: Vec<(u32, u32)> = Vec::with_capacity(self.recent.len());
                for (a, b) in self.recent.drain(..) {
                    match merged.last_mut() {
                        Some(m) if a <= m.1 => m.1 = m.1.max(b),
                        _ => merged.push((a, b)),
                    }
                }
                self.recent = merged;
            }
            _ => self.recent.push((from, to)),
        }
    }

    /// The messages to change: the session's own copy from now on (the node's snapshot and
    /// other sessions keep theirs).
    pub fn msgs_mut(&mut self) -> &mut List {
        Arc::make_mut(&mut self.msgs)
    }

    pub fn max_uid(&self) -> u32 {
        self.msgs.last().map(|m| m.uid).unwrap_or(0)
    }

    /// The index of a UID.
    pub fn index_of(&self, uid: u32) -> Option<usize> {
        self.msgs.binary_search_by_key(&uid, |m| m.uid).ok()
    }

    /// The indexes a set names, ascending, without repeats. By sequence number a number past
    /// the last message is an error (RFC 9051 §6.4.8 wants BAD); by UID, UIDs not there are
    /// skipped. `$` is the saved search result.
    pub fn resolve(
        &self,
        set: &SequenceSet,
        uid: bool,
        saved: Option<&[u32]>,
    ) -> Result<Vec<usize>, &'static str> {
        let ranges = match set {
            SequenceSet::Saved => {
                let mut out: Vec<usize> = saved
                    .unwrap_or(&[])
                    .iter()
                    .filter_map(|u| self.index_of(*u))
                    .collect();
                out.sort_unstable();
                out.dedup();
                return Ok(out);
            }
            SequenceSet::Ranges(r) => r,
        };
        let n = self.msgs.len();
        let mut out = Vec::new();
        if uid {
            let max = self.max_uid();
            for (a, b) in ranges {
                let v = |s: &SeqNum| match s {
                    SeqNum::Value(v) => *v,
                    SeqNum::Star => max,
                };
                let (lo, hi) = (v(a).min(v(b)), v(a).max(v(b)));
                let start = self.msgs.partition_point(|m| m.uid < lo);
                let end = self.msgs.partition_point(|m| m.uid <= hi);
                out.extend(start..end);
            }
        } else {
            for (a, b) in ranges {
                let v = |s: &SeqNum| match s {
                    SeqNum::Value(v) => *v,
                    SeqNum::Star => n as u32,
                };
                if n == 0 && (*a == SeqNum::Star || *b == SeqNum::Star) {
                    // `1:*` of an empty mailbox names nothing.
                    continue;
                }
                let (lo, hi) = (v(a).min(v(b)), v(a).max(v(b)));
                if lo == 0 || hi as usize > n {
                    return Err("invalid message sequence number");
                }
                out.extend((lo as usize - 1)..(hi as usize));
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// The flags list for FLAGS and PERMANENTFLAGS.
    pub fn flag_list(&self) -> Vec<Flag> {
        let mut out: Vec<Flag> = SYSTEM_FLAGS.iter().map(|f| to_flag(f)).collect();
        out.extend(self.keywords.iter().map(|k| Flag::Keyword(k.clone())));
        out
    }

    /// Adds keywords not yet announced; true if there were any.
    pub fn learn_keywords(&mut self, flags: &[String]) -> bool {
        let mut new = false;
        for f in flags {
            if !f.starts_with('\\') && !self.keywords.iter().any(|k| k.eq_ignore_ascii_case(f)) {
                self.keywords.push(f.clone());
                new = true;
            }
        }
        new
    }
}

/// The store's rows (tombstones included) with UIDs in `first..=last`, by UID, with their
/// metadata: `expect` live messages are there, plus any tombstones between them, read in
/// pages.
pub async fn rows_between(
    store: &dyn mailfleet_store::Store,
    mailbox_id: i64,
    first: u32,
    last: u32,
    expect: usize,
) -> Result<Vec<(mailfleet_store::Message, Option<String>)>, mailfleet_store::StoreError> {
    let page = (expect + 64).min(4096) as u32;
    let mut out = Vec::with_capacity(expect);
    let mut from = first;
    loop {
        let rows = store.fetch_messages(mailbox_id, from, last, page).await?;
        let full = rows.len() as u32 == page;
        let next = rows.last().map(|(m, _)| m.uid);
        out.extend(rows);
        match next {
            Some(uid) if full && uid < last => from = uid + 1,
            _ => return Ok(out),
        }
    }
}

impl Session {
    /// [`rows_between`] from this session's store.
    pub async fn rows_between(
        &self,
        mailbox_id: i64,
        first: u32,
        last: u32,
        expect: usize,
    ) -> Result<Vec<(mailfleet_store::Message, Option<String>)>, mailfleet_store::StoreError> {
        rows_between(&*self.shared.ctx.store, mailbox_id, first, last, expect).await
    }

    /// A message's flags as this session shows them: `\Recent` added for IMAP4rev1.
    pub fn flags_of(&self, m: &Msg, sel: &Selected) -> Vec<Flag> {
        let mut f = to_flags(sel.msgs.flags(m));
        if !self.rev2 && sel.is_recent(m.uid) {
            f.push(Flag::Recent);
        }
        f
    }

    /// A command that uses CONDSTORE turns it on; the first time, with a mailbox selected,
    /// the client learns its HIGHESTMODSEQ (RFC 7162 §3.1).
    pub fn enable_condstore(&mut self) {
        if self.condstore {
            return;
        }
        self.condstore = true;
        if let Some(sel) = self.selected.as_ref() {
            let highest = sel.known_modseq.max(0) as u64;
            self.untagged_ok(Code::HighestModSeq(highest), "CONDSTORE enabled");
        }
    }

    /// Announces new keywords (FLAGS and PERMANENTFLAGS) if `flags` holds any.
    pub fn announce_keywords(&mut self, flags: &[String]) {
        let Some(sel) = self.selected.as_mut() else {
            return;
        };
        if !sel.learn_keywords(flags) {
            return;
        }
        let list = sel.flag_list();
        let read_only = sel.read_only;
        self.untagged(Data::Flags(list.clone()));
        if !read_only {
            self.untagged_ok(Code::PermanentFlags(list, true), "flags permitted");
        }
    }

    /// Untagged FETCH of one message's flags (with UID and MODSEQ as the enabled extensions
    /// want them).
    pub fn flags_update(&mut self, index: usize, with_uid: bool) {
        let Some(sel) = self.selected.as_ref() else {
            return;
        };
        let Some(m) = sel.msgs.get(index) else {
            return;
        };
        let mut items = Vec::with_capacity(3);
        if with_uid || self.qresync {
            items.push(FetchData::Uid(m.uid));
        }
        items.push(FetchData::Flags(self.flags_of(m, sel)));
        if self.condstore {
            items.push(FetchData::ModSeq(m.modseq.max(0) as u64));
        }
        self.untagged(Data::Fetch {
            seq: index as u32 + 1,
            items,
        });
    }

    /// Catches up with the store: see the module's notes. `force` reads the store even when
    /// the watcher saw no change (NOOP, IDLE's start).
    pub async fn sync(&mut self, allow_expunge: bool, force: bool) {
        let store = self.shared.ctx.store.clone();
        let Some(sel) = self.selected.as_mut() else {
            return;
        };
        let changed = sel.watch.changed();
        if !force && !changed && (sel.pending_expunge.is_empty() || !allow_expunge) {
            return;
        }
        let mut new_keywords: Vec<String> = Vec::new();
        if force || changed {
            sel.watch.mark_seen();
            let id = sel.mailbox.id;
            // One read: the changes carry the MODSEQ the mailbox is known up to after them.
            let changes = match store.changes_since(id, sel.known_modseq).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(session = %self.id, "mailbox changes not read: {e}");
                    return;
                }
            };
            let changes_highest = changes.highest.max(changes.purged_up_to);
            let before = sel.pending_expunge.len();
            let mut expunged = changes.expunged;
            if sel.known_modseq < changes.purged_up_to {
                // Tombstones this session has not seen may be purged: every UID it knows that
                // the store no longer has is gone.
                let existing = match store.list_messages(id, 1, u32::MAX).await {
                    Ok(list) => list
                        .into_iter()
                        .map(|m| m.uid)
                        .collect::<std::collections::HashSet<u32>>(),
                    Err(e) => {
                        tracing::warn!(session = %self.id, "mailbox not read: {e}");
                        return;
                    }
                };
                expunged.extend(
                    sel.msgs
                        .iter()
                        .map(|m| m.uid)
                        .filter(|u| !existing.contains(u)),
                );
            }
            for uid in expunged {
                if sel.index_of(uid).is_some() {
                    sel.pending_expunge.push(uid);
                }
            }
            if sel.pending_expunge.len() > before {
                sel.pending_expunge.sort_unstable();
                sel.pending_expunge.dedup();
            }
            let mut updated = Vec::new();
            let mut arrived = Vec::new();
            let max_uid = sel.max_uid();
            for ch in changes.changed {
                match sel.index_of(ch.uid) {
                    Some(i) => {
                        let same_flags = sel.msgs.flags(&sel.msgs[i]) == ch.flags.as_slice();
                        if !same_flags {
                            new_keywords.extend(ch.flags.iter().cloned());
                            updated.push(ch.uid);
                        }
                        // A change the list already holds (SELECT may read it past the MODSEQ
                        // the session knows, so it comes again) leaves a shared list shared.
                        if !same_flags || sel.msgs[i].modseq != ch.modseq {
                            sel.msgs_mut().set(i, ch.modseq, &ch.flags);
                        }
                    }
                    None if ch.uid > max_uid => arrived.push(ch),
                    None => {}
                }
            }
            sel.known_modseq = sel.known_modseq.max(changes_highest);
            let read_only = sel.read_only;
            // Expunges first, so that EXISTS counts what is left.
            if allow_expunge {
                self.announce_expunges();
            }
            self.announce_keywords(&new_keywords);
            for uid in updated {
                let index = self.selected.as_ref().and_then(|s| s.index_of(uid));
                if let Some(i) = index {
                    self.flags_update(i, false);
                }
            }
            if !arrived.is_empty() {
                // The first session to see new messages has them as recent.
                let recent = match store.recent_from(id, !read_only).await {
                    Ok(r) if !read_only => r,
                    _ => (0, 0),
                };
                let flags: Vec<String> = arrived
                    .iter()
                    .flat_map(|c| c.flags.iter().cloned())
                    .collect();
                let Some(sel) = self.selected.as_mut() else {
                    return;
                };
                sel.add_recent(recent);
                let msgs = sel.msgs_mut();
                for ch in arrived {
                    msgs.push(ch.uid, ch.modseq, &ch.flags);
                }
                let (exists, recent) = (sel.exists(), sel.recent());
                self.announce_keywords(&flags);
                self.untagged(Data::Exists(exists));
                if !self.rev2 {
                    self.untagged(Data::Recent(recent));
                }
            }
            return;
        }
        if allow_expunge {
            self.announce_expunges();
        }
    }

    /// Sends the expunges waiting (EXPUNGE by descending sequence number, or VANISHED).
    pub fn announce_expunges(&mut self) {
        let Some(sel) = self.selected.as_mut() else {
            return;
        };
        if sel.pending_expunge.is_empty() {
            return;
        }
        let mut uids = std::mem::take(&mut sel.pending_expunge);
        uids.sort_unstable();
        let mut seqs = Vec::with_capacity(uids.len());
        for &uid in &uids {
            if let Some(i) = sel.index_of(uid) {
                seqs.push(i as u32 + 1);
            }
        }
        sel.msgs_mut()
            .retain(|m| uids.binary_search(&m.uid).is_err());
        if self.qresync {
            self.untagged(Data::Vanished {
                earlier: false,
                uids: SequenceSet::from_sorted(&uids),
            });
        } else {
            // Highest first, so that the numbers still to send are not shifted.
            for seq in seqs.into_iter().rev() {
                self.untagged(Data::Expunge(seq));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_flags_become_protocol_flags() {
        assert_eq!(to_flag("\\SEEN"), Flag::Seen);
        assert_eq!(to_flag("\\recent"), Flag::Recent);
        assert_eq!(to_flag("\\Answered"), Flag::Answered);
        assert_eq!(to_flag("\\Junk"), Flag::Extension("Junk".into()));
        assert_eq!(to_flag("$Label1"), Flag::Keyword("$Label1".into()));
        assert_eq!(to_flag("\\"), Flag::Extension(String::new()));
    }

    #[test]
    fn missing_uids_are_the_gaps_within_the_range_asked() {
        assert_eq!(uids_missing(&[2, 3, 7], 9, None), [(1, 1), (4, 6), (8, 9)]);
        assert_eq!(uids_missing(&[], 3, None), [(1, 3)]);
        assert_eq!(uids_missing(&[1, 2, 3], 3, None), []);
        assert_eq!(uids_missing(&[1, 2, 3], 0, None), []);
        assert_eq!(uids_missing(&[5, 10], 4, None), [(1, 4)]);
        let within = SequenceSet::Ranges(vec![
            (SeqNum::Value(5), SeqNum::Value(2)),
            (SeqNum::Value(8), SeqNum::Star),
            (SeqNum::Value(3), SeqNum::Value(4)),
        ]);
        assert_eq!(uids_missing(&[2, 3, 7], 9, Some(&within)), [(4, 5), (8, 9)]);
        assert_eq!(
            uids_missing(&[u32::MAX - 1], u32::MAX, Some(&within)),
            [(2, 5), (8, u32::MAX - 2), (u32::MAX, u32::MAX)]
        );
        assert_eq!(uids_missing(&[1], 5, Some(&SequenceSet::Saved)), []);
        assert_eq!(ranges_to_set(&[(1, 1), (4, 6)]).to_string(), "1,4:6");
    }
}
