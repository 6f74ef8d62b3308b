//! What SEARCH, SORT and THREAD need of each message, kept per node between commands.
//!
//! A message's metadata never changes once stored (a UID names one message for as long as the
//! mailbox's UIDVALIDITY holds), so a node can keep what it read: the internal date, the size,
//! and the metadata without its MIME tree and preview (ENVELOPE and the search, sort and thread
//! fields, a few hundred bytes a message). A second SORT or THREAD of a 100,000-message mailbox
//! then reads nothing from the store. Bounded: at most [`MAX_ENTRIES`] messages on a node;
//! the mailbox used least recently goes first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use mailfleet_message::{BodyPart, Metadata};

/// Messages kept on a node, all mailboxes together.
pub const MAX_ENTRIES: usize = 300_000;

/// One message's facts for SEARCH, SORT and THREAD.
pub struct Facts {
    pub internal_date: i64,
    pub size: u64,
    pub meta: Metadata,
}

impl Facts {
    /// Keeps what SEARCH (without BODY, TEXT or unusual HEADER keys), SORT and THREAD read.
    pub fn light(internal_date: i64, size: u64, mut meta: Metadata) -> Facts {
        static EMPTY: OnceLock<BodyPart> = OnceLock::new();
        meta.body = EMPTY.get_or_init(|| Metadata::parse(b"").body).clone();
        meta.preview = String::new();
        Facts {
            internal_date,
            size,
            meta,
        }
    }
}

struct Mailbox {
    uidvalidity: u32,
    messages: HashMap<u32, Arc<Facts>>,
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

    /// Keeps facts read from the store.
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
            used: tick,
        });
        if m.uidvalidity != uidvalidity {
            *total -= m.messages.len();
            m.messages.clear();
            m.uidvalidity = uidvalidity;
        }
        m.used = tick;
        for (uid, f) in facts {
            if m.messages.insert(uid, f).is_none() {
                *total += 1;
            }
        }
        // Over the bound: drop whole mailboxes, least recently used first (never the one just
        // filled, unless it alone is over).
        while *total > MAX_ENTRIES {
            let victim = mailboxes
                .iter()
                .filter(|(id, _)| **id != mailbox_id)
                .min_by_key(|(_, m)| m.used)
                .map(|(id, _)| *id)
                .unwrap_or(mailbox_id);
            if let Some(m) = mailboxes.remove(&victim) {
                *total -= m.messages.len();
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
            (0..MAX_ENTRIES as u32).map(|u| (u, f.clone())).collect(),
        );
        assert!(c.get(1, 8, &[5])[0].is_none());
        assert!(c.get(2, 1, &[0])[0].is_some());
    }
}
