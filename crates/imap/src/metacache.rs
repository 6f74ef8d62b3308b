//! What FETCH, SEARCH, SORT and THREAD need of each message, kept per node between commands.
//!
//! A message's metadata never changes once stored (a UID names one message for as long as the
//! mailbox's UIDVALIDITY holds), so a node can keep what it read: the internal date, the size,
//! the blob, and the metadata. SEARCH, SORT and THREAD keep it without its MIME tree and
//! preview (ENVELOPE and the search, sort and thread fields: about 1.3 KB for a message with
//! one sender and one recipient, most of it the addresses and subject);
//! a FETCH that read the metadata keeps it whole, so a second FETCH of ENVELOPE, BODYSTRUCTURE,
//! RFC822.SIZE or INTERNALDATE, or a second SORT or THREAD of a 100,000-message mailbox, reads
//! nothing from the store. Bounded: at most [`MAX_WEIGHT`] on a node, a light entry weighing
//! 1 and a whole one 2 (its MIME tree and preview are about as large again); the mailbox used
//! least recently goes first.
//!
//! It says nothing of which messages a mailbox has (that is the session's view and
//! `snapshots.rs`), only what a UID is, so the tombstone purge does not concern it: it is
//! asked only for UIDs a session's view holds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mailfleet_message::Metadata;

/// The weight of the messages kept on a node, all mailboxes together.
pub const MAX_WEIGHT: usize = 300_000;

/// One message's facts.
pub struct Facts {
    pub internal_date: i64,
    pub size: u64,
    pub blob_id: Box<str>,
    /// `meta` has its MIME tree and preview (BODY, BODYSTRUCTURE, PREVIEW can be answered).
    pub whole: bool,
    pub meta: Metadata,
}

impl Facts {
    /// Keeps what SEARCH (without BODY, TEXT or unusual HEADER keys), SORT and THREAD read,
    /// and FETCH of ENVELOPE, RFC822.SIZE, INTERNALDATE and EMAILID.
    pub fn light(internal_date: i64, size: u64, blob_id: &str, mut meta: Metadata) -> Facts {
        meta.body = Metadata::empty_body();
        meta.preview = String::new();
        Facts {
            internal_date,
            size,
            blob_id: blob_id.into(),
            whole: false,
            meta,
        }
    }

    /// Keeps the metadata whole.
    pub fn whole(internal_date: i64, size: u64, blob_id: &str, meta: Metadata) -> Facts {
        Facts {
            internal_date,
            size,
            blob_id: blob_id.into(),
            whole: true,
            meta,
        }
    }

    fn weight(&self) -> usize {
        if self.whole { 2 } else { 1 }
    }
}

struct Mailbox {
    uidvalidity: u32,
    messages: HashMap<u32, Arc<Facts>>,
    /// The weight of `messages`.
    weight: usize,
    used: u64,
}

#[derive(Default)]
pub struct MetaCache {
    inner: Mutex<(HashMap<i64, Mailbox>, u64, usize)>,
}

impl MetaCache {
    /// The facts kept for these UIDs of a mailbox (`None` where none are kept).
    pub fn get(&self, mailbox_id: i64, uidvalidity: u32, uids: &[u32]) -> Vec<Option<Arc<Facts>>> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.1 += 1;
        let tick = g.1;
        match g.0.get_mut(&mailbox_id) {
            Some(m) if m.uidvalidity == uidvalidity => {
                m.used = tick;
                uids.iter().map(|u| m.messages.get(u).cloned()).collect()
            }
            _ => vec![None; uids.len()],
        }
    }

    /// Keeps facts read from the store (a whole entry is not replaced by a light one).
    pub fn put(&self, mailbox_id: i64, uidvalidity: u32, facts: Vec<(u32, Arc<Facts>)>) {
        if facts.is_empty() {
            return;
        }
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.1 += 1;
        let tick = g.1;
        let (mailboxes, _, total) = &mut *g;
        let m = mailboxes.entry(mailbox_id).or_insert_with(|| Mailbox {
            uidvalidity,
            messages: HashMap::new(),
            weight: 0,
            used: tick,
        });
        if m.uidvalidity != uidvalidity {
            *total -= m.weight;
            m.weight = 0;
            m.messages.clear();
            m.uidvalidity = uidvalidity;
        }
        m.used = tick;
        for (uid, f) in facts {
            let w = f.weight();
            match m.messages.get(&uid) {
                Some(old) if old.whole && !f.whole => continue,
                Some(old) => {
                    let ow = old.weight();
                    m.weight -= ow;
                    *total -= ow;
                }
                None => {}
            }
            m.messages.insert(uid, f);
            m.weight += w;
            *total += w;
        }
        // Over the bound: drop whole mailboxes, least recently used first (never the one just
        // filled, unless it alone is over).
        while *total > MAX_WEIGHT {
            let victim = mailboxes
                .iter()
                .filter(|(id, _)| **id != mailbox_id)
                .min_by_key(|(_, m)| m.used)
                .map(|(id, _)| *id)
                .unwrap_or(mailbox_id);
            if let Some(m) = mailboxes.remove(&victim) {
                *total -= m.weight;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(n: i64) -> Arc<Facts> {
        Arc::new(Facts::light(
            n,
            1,
            "b",
            Metadata::parse(b"Subject: x\r\n\r\nbody"),
        ))
    }

    #[test]
    fn keeps_and_bounds() {
        let c = MetaCache::default();
        c.put(1, 7, vec![(1, facts(1)), (2, facts(2))]);
        let got = c.get(1, 7, &[1, 2, 3]);
        assert_eq!(got.iter().filter(|f| f.is_some()).count(), 2);
        assert!(got[0].as_ref().is_some_and(|f| f.meta.preview.is_empty()));
        assert!(c.get(1, 8, &[1])[0].is_none(), "another UIDVALIDITY");
        c.put(1, 8, vec![(5, facts(5))]);
        assert!(c.get(1, 8, &[1])[0].is_none() && c.get(1, 8, &[5])[0].is_some());
        // Filling past the bound drops the mailbox used least recently.
        let f = facts(0);
        c.put(
            2,
            1,
            (0..MAX_WEIGHT as u32).map(|u| (u, f.clone())).collect(),
        );
        assert!(c.get(1, 8, &[5])[0].is_none());
        assert!(c.get(2, 1, &[0])[0].is_some());
    }

    #[test]
    fn whole_entries_stay_and_weigh_more() {
        let c = MetaCache::default();
        let meta = Metadata::parse(b"Subject: x\r\n\r\nbody");
        c.put(1, 1, vec![(1, Arc::new(Facts::whole(0, 1, "b", meta)))]);
        c.put(1, 1, vec![(1, facts(9))]);
        let got = c.get(1, 1, &[1]);
        assert!(
            got[0]
                .as_ref()
                .is_some_and(|f| f.whole && f.internal_date == 0)
        );
        // Half the bound in whole entries fills it: one more light entry elsewhere evicts.
        let meta = Metadata::parse(b"Subject: y\r\n\r\nbody");
        let w = Arc::new(Facts::whole(0, 1, "b", meta));
        c.put(
            2,
            1,
            (0..(MAX_WEIGHT / 2) as u32)
                .map(|u| (u, w.clone()))
                .collect(),
        );
        assert!(c.get(1, 1, &[1])[0].is_none(), "mailbox 1 evicted");
        assert!(c.get(2, 1, &[0])[0].is_some());
    }
}
