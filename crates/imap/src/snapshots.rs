//! The node's last view of each mailbox a session selected: per message UID, MODSEQ and
//! flags, with the HIGHESTMODSEQ it was read at. The next SELECT of the mailbox on the node
//! reads only what changed since (`changes_since`: flag changes, arrivals, and the expunges
//! whose tombstones remain) instead of every message. Bounded: at most [`MAX_MESSAGES`]
//! messages on a node, the mailbox used least recently goes first.
//!
//! Correct only while expunge tombstones newer than a snapshot remain in the store: a view
//! read at a MODSEQ below the mailbox's tombstone floor (`Changes::purged_up_to`, raised by the
//! master's purge) is not used; SELECT then reads the whole list again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mailfleet_store::Changes;

pub const MAX_MESSAGES: usize = 1_000_000;

/// (UID, MODSEQ, flags) by UID.
pub type List = Vec<(u32, i64, Vec<String>)>;

struct Entry {
    uidvalidity: u32,
    modseq: i64,
    list: Arc<List>,
    used: u64,
}

#[derive(Default)]
pub struct Snapshots {
    inner: Mutex<(HashMap<i64, Entry>, u64)>,
}

impl Snapshots {
    pub fn get(&self, mailbox_id: i64, uidvalidity: u32) -> Option<(i64, Arc<List>)> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.1 += 1;
        let tick = g.1;
        let e = g.0.get_mut(&mailbox_id)?;
        if e.uidvalidity != uidvalidity {
            return None;
        }
        e.used = tick;
        Some((e.modseq, e.list.clone()))
    }

    /// Keeps a view read at `modseq` (all changes up to it are in it), unless a newer one is
    /// kept already.
    pub fn put(&self, mailbox_id: i64, uidvalidity: u32, modseq: i64, list: Arc<List>) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.1 += 1;
        let tick = g.1;
        let map = &mut g.0;
        if let Some(e) = map.get(&mailbox_id)
            && e.uidvalidity == uidvalidity
            && e.modseq > modseq
        {
            return;
        }
        map.insert(
            mailbox_id,
            Entry {
                uidvalidity,
                modseq,
                list,
                used: tick,
            },
        );
        let mut total: usize = map.values().map(|e| e.list.len()).sum();
        while total > MAX_MESSAGES {
            let Some(victim) = map
                .iter()
                .filter(|(id, _)| **id != mailbox_id)
                .min_by_key(|(_, e)| e.used)
                .map(|(id, _)| *id)
            else {
                break;
            };
            if let Some(e) = map.remove(&victim) {
                total -= e.list.len();
            }
        }
    }
}

/// A view brought up to date with what changed since it was read.
pub fn apply(base: &List, changes: Changes) -> List {
    let mut expunged = changes.expunged;
    expunged.sort_unstable();
    let changed: HashMap<u32, (i64, Vec<String>)> = changes
        .changed
        .iter()
        .map(|c| (c.uid, (c.modseq, c.flags.clone())))
        .collect();
    let max = base.last().map(|m| m.0).unwrap_or(0);
    let mut out: List = base
        .iter()
        .filter(|m| expunged.binary_search(&m.0).is_err())
        .map(|(uid, modseq, flags)| match changed.get(uid) {
            Some((m, f)) => (*uid, *m, f.clone()),
            None => (*uid, *modseq, flags.clone()),
        })
        .collect();
    let mut arrived: Vec<_> = changes
        .changed
        .into_iter()
        .filter(|c| c.uid > max && expunged.binary_search(&c.uid).is_err())
        .map(|c| (c.uid, c.modseq, c.flags))
        .collect();
    arrived.sort_by_key(|m| m.0);
    out.extend(arrived);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailfleet_store::FlagChange;

    #[test]
    fn applies_changes() {
        let base: List = vec![
            (1, 1, vec![]),
            (2, 1, vec![]),
            (3, 2, vec!["\\Seen".into()]),
        ];
        let out = apply(
            &base,
            Changes {
                changed: vec![
                    FlagChange {
                        uid: 1,
                        flags: vec!["\\Flagged".into()],
                        modseq: 5,
                    },
                    FlagChange {
                        uid: 5,
                        flags: vec![],
                        modseq: 6,
                    },
                    FlagChange {
                        uid: 4,
                        flags: vec![],
                        modseq: 6,
                    },
                ],
                expunged: vec![2],
                highest: 6,
                purged_up_to: 0,
            },
        );
        let uids: Vec<u32> = out.iter().map(|m| m.0).collect();
        assert_eq!(uids, [1, 3, 4, 5]);
        assert_eq!(out[0], (1, 5, vec!["\\Flagged".to_string()]));
        let s = Snapshots::default();
        s.put(9, 1, 7, Arc::new(out));
        s.put(9, 1, 3, Arc::new(Vec::new()));
        assert_eq!(
            s.get(9, 1).map(|(m, l)| (m, l.len())),
            Some((7, 4)),
            "the newer stays"
        );
        assert!(s.get(9, 2).is_none());
    }
}
