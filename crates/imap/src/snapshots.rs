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

pub(crate) use crate::msglist::List;

pub const MAX_MESSAGES: usize = 1_000_000;

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

/// A list read from the store.
pub fn from_store(messages: Vec<mailfleet_store::Message>) -> List {
    List::from_rows(messages.into_iter().map(|m| (m.uid, m.modseq, m.flags)))
}

/// A view brought up to date with what changed since it was read.
pub fn apply(base: &List, changes: Changes) -> List {
    let mut expunged = changes.expunged;
    expunged.sort_unstable();
    let mut changed = changes.changed;
    changed.sort_by_key(|c| c.uid);
    let mut out = base.clone();
    if !expunged.is_empty() {
        out.retain(|m| expunged.binary_search(&m.uid).is_err());
    }
    let max = base.last().map(|m| m.uid).unwrap_or(0);
    for c in changed {
        if expunged.binary_search(&c.uid).is_ok() {
            continue;
        }
        if c.uid > max {
            if out.last().is_none_or(|m| m.uid < c.uid) {
                out.push(c.uid, c.modseq, &c.flags);
            }
        } else if let Ok(i) = out.binary_search_by_key(&c.uid, |m| m.uid) {
            out.set(i, c.modseq, &c.flags);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailfleet_store::FlagChange;

    fn strings(flags: &[&str]) -> Vec<String> {
        flags.iter().map(|f| f.to_string()).collect()
    }

    fn view(l: &List) -> Vec<(u32, i64, Vec<String>)> {
        l.iter()
            .map(|m| (m.uid, m.modseq, l.flags(m).to_vec()))
            .collect()
    }

    #[test]
    fn applies_changes() {
        let base = List::from_rows([
            (1, 1, strings(&[])),
            (2, 1, strings(&[])),
            (3, 2, strings(&["\\Seen"])),
        ]);
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
        assert_eq!(
            view(&out),
            [
                (1, 5, strings(&["\\Flagged"])),
                (3, 2, strings(&["\\Seen"])),
                (4, 6, strings(&[])),
                (5, 6, strings(&[])),
            ]
        );
        assert_eq!(view(&base).len(), 3, "the base is unchanged");
        let s = Snapshots::default();
        s.put(9, 1, 7, Arc::new(out));
        s.put(9, 1, 3, Arc::new(List::default()));
        assert_eq!(
            s.get(9, 1).map(|(m, l)| (m, l.len())),
            Some((7, 4)),
            "the newer stays"
        );
        assert!(s.get(9, 2).is_none());
    }
}
