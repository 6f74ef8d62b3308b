//! THREAD answers kept per node, so that a client asking again for the threads of an unchanged
//! large mailbox (a webmail list view, refreshed) gets them without the threading being done
//! again.
//!
//! A THREAD answer depends only on which messages matched, with their sequence numbers and
//! UIDs, on the algorithm, on whether UIDs or sequence numbers are printed, and on the
//! messages' metadata and internal dates, which never change for a UID while the mailbox's
//! UIDVALIDITY holds. So an answer is kept with the exact list of (sequence number, UID) it
//! was computed for, and given again only for the same list in the same mailbox and
//! UIDVALIDITY: any change to the mailbox (a message added, expunged, a flag change that
//! changes which messages match) gives another list and a fresh answer.
//!
//! Only answers for at least [`MIN_MESSAGES`] messages are kept (smaller ones take no time to
//! compute), at most [`MAX_MESSAGES`] messages' worth on a node, the least recently used going
//! first.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use mailfleet_imap_proto::{Thread, ThreadAlgorithm};

/// Smallest answer kept, in messages.
pub const MIN_MESSAGES: usize = 2_000;
/// The messages of all kept answers together, at most.
pub const MAX_MESSAGES: usize = 1_000_000;

/// Which THREAD command an answer is for, besides its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    pub mailbox_id: i64,
    pub uidvalidity: u32,
    pub algorithm: ThreadAlgorithm,
    /// UIDs printed (UID THREAD), else sequence numbers.
    pub uid: bool,
}

struct Entry {
    query: Query,
    /// (sequence number, UID) of each message the answer threads, in sequence order.
    messages: Vec<(u32, u32)>,
    threads: Arc<[Thread]>,
}

/// Most recently used first.
#[derive(Default)]
pub struct ThreadCache {
    inner: Mutex<VecDeque<Entry>>,
}

impl ThreadCache {
    /// The answer kept for exactly this query, if any.
    pub fn get(&self, q: Query, messages: &[(u32, u32)]) -> Option<Arc<[Thread]>> {
        if messages.len() < MIN_MESSAGES {
            return None;
        }
        let mut entries = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let i = entries
            .iter()
            .position(|e| e.query == q && e.messages == messages)?;
        let e = entries.remove(i)?;
        let threads = e.threads.clone();
        entries.push_front(e);
        Some(threads)
    }

    /// Keeps an answer (replacing any other answer for the same mailbox, algorithm and kind
    /// of ids: only the latest state of a mailbox is worth keeping).
    pub fn put(&self, q: Query, messages: Vec<(u32, u32)>, threads: Arc<[Thread]>) {
        if !(MIN_MESSAGES..=MAX_MESSAGES).contains(&messages.len()) {
            return;
        }
        let mut entries = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|e| {
            let o = e.query;
            !(o.mailbox_id == q.mailbox_id && o.algorithm == q.algorithm && o.uid == q.uid)
        });
        entries.push_front(Entry {
            query: q,
            messages,
            threads,
        });
        let mut total = 0;
        let keep = entries
            .iter()
            .take_while(|e| {
                total += e.messages.len();
                total <= MAX_MESSAGES
            })
            .count();
        entries.truncate(keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(n: u32, first_uid: u32) -> Vec<(u32, u32)> {
        (1..=n).map(|s| (s, first_uid + s)).collect()
    }

    fn answer(id: u32) -> Arc<[Thread]> {
        vec![Thread {
            ids: vec![id],
            children: Vec::new(),
        }]
        .into()
    }

    const Q: Query = Query {
        mailbox_id: 7,
        uidvalidity: 1,
        algorithm: ThreadAlgorithm::References,
        uid: true,
    };

    #[test]
    fn an_answer_is_given_only_for_the_same_messages_mailbox_and_kind() {
        let c = ThreadCache::default();
        let m = messages(3000, 0);
        c.put(Q, m.clone(), answer(1));
        assert_eq!(c.get(Q, &m).map(|t| t[0].ids[0]), Some(1));
        // One message more, one UID different, another mailbox, UIDVALIDITY, algorithm or
        // kind of ids: no answer.
        assert!(c.get(Q, &messages(3001, 0)).is_none());
        let mut other = m.clone();
        other[1500].1 += 100_000;
        assert!(c.get(Q, &other).is_none());
        for q in [
            Query { mailbox_id: 8, ..Q },
            Query {
                uidvalidity: 2,
                ..Q
            },
            Query {
                algorithm: ThreadAlgorithm::OrderedSubject,
                ..Q
            },
            Query { uid: false, ..Q },
        ] {
            assert!(c.get(q, &m).is_none(), "{q:?}");
        }
        // A newer answer for the mailbox replaces the older one.
        let m2 = messages(3001, 0);
        c.put(Q, m2.clone(), answer(2));
        assert!(c.get(Q, &m).is_none());
        assert_eq!(c.get(Q, &m2).map(|t| t[0].ids[0]), Some(2));
    }

    #[test]
    fn small_answers_are_not_kept_and_the_total_is_bounded() {
        let c = ThreadCache::default();
        let small = messages(10, 0);
        c.put(Q, small.clone(), answer(1));
        assert!(c.get(Q, &small).is_none());
        // Mailboxes of 300,000 messages: three fit; the fourth pushes out the least recently
        // used (2, since 1 was asked for after it was kept).
        let big = messages(300_000, 0);
        let q = |mailbox_id| Query { mailbox_id, ..Q };
        for id in 1..=3 {
            c.put(q(id), big.clone(), answer(id as u32));
        }
        assert!(
            c.get(q(1), &big).is_some(),
            "1 is now the most recently used"
        );
        c.put(q(4), big.clone(), answer(4));
        let kept: Vec<i64> = (1..=4).filter(|&id| c.get(q(id), &big).is_some()).collect();
        assert_eq!(kept, vec![1, 3, 4]);
    }
}
