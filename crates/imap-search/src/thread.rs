//! THREAD (RFC 5256 §3, BASE.6.4.THREAD): ORDEREDSUBJECT and REFERENCES, giving the trees of
//! the THREAD response (RFC 5256 §4).
//!
//! Sent dates are RFC 5256 §2.2's (the Date header, else the internal date), ties broken by
//! sequence number; base subjects are RFC 5256 §2.1's, compared with i;ascii-casemap.
//! Message-IDs are compared exactly (case-sensitively). Messages are taken in
//! sequence-number order, so of several messages with one Message-ID the lowest-numbered
//! keeps it; the others, and messages without a Message-ID, get a unique id of their own (RFC
//! 5256 REFERENCES step 1).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{Hash, Hasher};

// foldhash (randomly seeded per process) instead of SipHash for the id and subject tables: a
// THREAD of 100,000 messages hashes every Message-ID and reference, and SipHash was a sixth of
// its time; the random seed keeps chosen Message-IDs from making collisions on purpose.
use foldhash::fast::RandomState;
use mailfleet_imap_proto::{Thread, ThreadAlgorithm};

use crate::MessageView;

/// Deepest nesting of sub-threads in a returned [`Thread`]: at this depth the rest of a
/// sub-thread is listed as one chain (its messages depth first, siblings in date order).
pub const MAX_THREAD_DEPTH: usize = 100;

/// Threads `msgs` with `alg`; ids are UIDs when `uid`, else sequence numbers. Never panics.
pub fn thread(alg: ThreadAlgorithm, msgs: &[MessageView<'_>], uid: bool) -> Vec<Thread> {
    let mut t = Tree::new(msgs, uid);
    match alg {
        ThreadAlgorithm::OrderedSubject => t.ordered_subject(),
        ThreadAlgorithm::References => t.references(),
    }
    t.output()
}

/// A base subject compared, ordered and hashed with i;ascii-casemap (ASCII letters as upper
/// case), without an upper-cased copy.
#[derive(Clone, Copy)]
struct Casemapped<'a>(&'a [u8]);

impl Casemapped<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl PartialEq for Casemapped<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(other.0)
    }
}

impl Eq for Casemapped<'_> {}

impl Hash for Casemapped<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        // Upper-cased a chunk at a time: equal subjects have equal lengths, so they are cut
        // into the same chunks and hash alike.
        let mut buf = [0u8; 64];
        for chunk in self.0.chunks(buf.len()) {
            let b = &mut buf[..chunk.len()];
            b.copy_from_slice(chunk);
            b.make_ascii_uppercase();
            h.write(b);
        }
        h.write_usize(self.0.len());
    }
}

impl PartialOrd for Casemapped<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Casemapped<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .iter()
            .map(u8::to_ascii_uppercase)
            .cmp(other.0.iter().map(u8::to_ascii_uppercase))
    }
}

struct Node {
    /// Index into the messages; None for a dummy.
    msg: Option<usize>,
    parent: Option<usize>,
    children: Vec<usize>,
}

struct Tree<'m, 'a> {
    msgs: &'m [MessageView<'a>],
    uid: bool,
    nodes: Vec<Node>,
    roots: Vec<usize>,
}

impl<'m, 'a> Tree<'m, 'a> {
    fn new(msgs: &'m [MessageView<'a>], uid: bool) -> Self {
        Tree {
            msgs,
            uid,
            // Every message, and about as many ids only referred to.
            nodes: Vec::with_capacity(msgs.len().saturating_mul(2)),
            roots: Vec::new(),
        }
    }

    fn add(&mut self, msg: Option<usize>) -> usize {
        self.nodes.push(Node {
            msg,
            parent: None,
            children: Vec::new(),
        });
        self.nodes.len() - 1
    }

    fn msg(&self, n: usize) -> Option<&MessageView<'a>> {
        self.nodes
            .get(n)
            .and_then(|n| n.msg)
            .and_then(|i| self.msgs.get(i))
    }

    fn children(&self, n: usize) -> &[usize] {
        self.nodes.get(n).map_or(&[], |n| &n.children)
    }

    fn take_children(&mut self, n: usize) -> Vec<usize> {
        self.nodes
            .get_mut(n)
            .map(|n| std::mem::take(&mut n.children))
            .unwrap_or_default()
    }

    fn set_children(&mut self, n: usize, c: Vec<usize>) {
        if let Some(n) = self.nodes.get_mut(n) {
            n.children = c;
        }
    }

    fn push_child(&mut self, n: usize, c: usize) {
        if let Some(n) = self.nodes.get_mut(n) {
            n.children.push(c);
        }
    }

    /// A message's sort key: (sent date, sequence number).
    fn msg_key(m: &MessageView<'_>) -> (i64, u32) {
        (m.meta.search.date.unwrap_or(m.internal_date), m.seq)
    }

    /// A node's sort key: its message's, or a dummy's first child's (RFC 5256 step 4/6).
    fn key(&self, mut n: usize) -> (i64, u32) {
        for _ in 0..=self.nodes.len() {
            if let Some(m) = self.msg(n) {
                return Self::msg_key(m);
            }
            match self.children(n).first() {
                Some(&c) => n = c,
                None => break,
            }
        }
        (i64::MAX, u32::MAX)
    }

    /// The node's message index, or for a dummy its first child's.
    fn subject_msg(&self, n: usize) -> Option<usize> {
        let msg = |n: usize| self.nodes.get(n).and_then(|x| x.msg);
        msg(n).or_else(|| self.children(n).first().and_then(|&c| msg(c)))
    }

    /// Message `i`'s base subject.
    fn subject(&self, i: usize) -> Casemapped<'a> {
        let msgs: &'m [MessageView<'a>] = self.msgs;
        Casemapped(
            msgs.get(i)
                .map_or(&[][..], |m| m.meta.search.base_subject.as_bytes()),
        )
    }

    fn thread_subject(&self, n: usize) -> Casemapped<'a> {
        self.subject_msg(n)
            .map_or(Casemapped(&[]), |i| self.subject(i))
    }

    fn is_dummy(&self, n: usize) -> bool {
        self.nodes.get(n).is_none_or(|n| n.msg.is_none())
    }

    fn is_reply(&self, n: usize) -> bool {
        self.msg(n)
            .is_some_and(|m| m.meta.search.is_reply_or_forward)
    }

    fn sort_nodes(&self, list: &mut [usize]) {
        // A long list (the root set) takes each node's key once, not once per comparison.
        if list.len() > 32 {
            list.sort_by_cached_key(|&n| (self.key(n), n));
        } else {
            list.sort_by_key(|&n| (self.key(n), n));
        }
    }

    /// Messages in sequence-number order (index order for equal numbers).
    fn by_seq(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.msgs.len()).collect();
        order.sort_by_key(|&i| (self.msgs.get(i).map(|m| m.seq), i));
        order
    }

    /// ORDEREDSUBJECT: messages sorted by base subject then sent date; each run of one base
    /// subject is a thread whose first message is the parent of all the others; threads in
    /// the order of their first messages' sent dates.
    fn ordered_subject(&mut self) {
        let mut order: Vec<usize> = (0..self.msgs.len()).collect();
        let key = |i: usize| self.msgs.get(i).map(Self::msg_key);
        order.sort_by_key(|&i| (self.subject(i), key(i), i));
        let mut last: Option<(Casemapped<'a>, usize)> = None;
        for i in order {
            let n = self.add(Some(i));
            let s = self.subject(i);
            match &last {
                Some((ls, parent)) if *ls == s => {
                    let p = *parent;
                    self.push_child(p, n);
                }
                _ => {
                    self.roots.push(n);
                    last = Some((s, n));
                }
            }
        }
        let mut roots = std::mem::take(&mut self.roots);
        self.sort_nodes(&mut roots);
        self.roots = roots;
    }

    /// Whether making `parent` the parent of `child` would make a loop: `child` is `parent`
    /// or one of its ancestors.
    fn would_loop(&self, parent: usize, child: usize) -> bool {
        let mut p = Some(parent);
        for _ in 0..=self.nodes.len() {
            match p {
                Some(x) if x == child => return true,
                Some(x) => p = self.nodes.get(x).and_then(|n| n.parent),
                None => return false,
            }
        }
        true
    }

    fn unlink(&mut self, child: usize) {
        if let Some(old) = self.nodes.get(child).and_then(|n| n.parent)
            && let Some(o) = self.nodes.get_mut(old)
        {
            o.children.retain(|&c| c != child);
        }
        if let Some(c) = self.nodes.get_mut(child) {
            c.parent = None;
        }
    }

    fn link(&mut self, parent: usize, child: usize) {
        self.unlink(child);
        if let Some(c) = self.nodes.get_mut(child) {
            c.parent = Some(parent);
        }
        self.push_child(parent, child);
    }

    /// REFERENCES (RFC 5256 §3): steps 1 to 6.
    fn references(&mut self) {
        // (1) The id table and the parent links.
        let mut table: HashMap<&'a str, usize, RandomState> = HashMap::default();
        for i in self.by_seq() {
            let Some(m) = self.msgs.get(i) else { continue };
            let meta: &'a mailfleet_message::Metadata = m.meta;
            let s = &meta.search;
            let node = match s.message_id.as_deref().filter(|id| !id.is_empty()) {
                Some(id) => match table.entry(id) {
                    Entry::Occupied(e) if self.is_dummy(*e.get()) => {
                        let n = *e.get();
                        if let Some(x) = self.nodes.get_mut(n) {
                            x.msg = Some(i);
                        }
                        n
                    }
                    Entry::Occupied(_) => self.add(Some(i)),
                    Entry::Vacant(e) => *e.insert(self.add(Some(i))),
                },
                None => self.add(Some(i)),
            };
            let refs: Vec<&'a str> = if s.references.is_empty() {
                s.in_reply_to
                    .first()
                    .map(String::as_str)
                    .into_iter()
                    .collect()
            } else {
                s.references.iter().map(String::as_str).collect()
            };
            let mut ref_nodes = Vec::with_capacity(refs.len());
            for r in refs.iter().filter(|r| !r.is_empty()) {
                let n = *table.entry(*r).or_insert_with(|| self.add(None));
                ref_nodes.push(n);
            }
            // (1A) Link the references in order, never changing an existing parent.
            for w in ref_nodes.windows(2) {
                if let [p, c] = *w {
                    let has_parent = self.nodes.get(c).is_some_and(|n| n.parent.is_some());
                    if !has_parent && !self.would_loop(p, c) {
                        self.link(p, c);
                    }
                }
            }
            // (1B) The last reference is the message's parent (none without references).
            self.unlink(node);
            if let Some(&p) = ref_nodes.last()
                && !self.would_loop(p, node)
            {
                self.link(p, node);
            }
        }
        // (2) The root set.
        let roots: Vec<usize> = (0..self.nodes.len())
            .filter(|&n| self.nodes.get(n).is_some_and(|x| x.parent.is_none()))
            .collect();
        // (3) Prune dummies: children first (reverse preorder).
        let order = self.preorder(&roots);
        for &n in order.iter().rev() {
            if !self.children(n).iter().any(|&c| self.is_dummy(c)) {
                continue;
            }
            let kids = self.take_children(n);
            let mut new = Vec::with_capacity(kids.len());
            for c in kids {
                if self.is_dummy(c) {
                    new.extend(self.take_children(c));
                } else {
                    new.push(c);
                }
            }
            self.set_children(n, new);
        }
        let mut top = Vec::with_capacity(roots.len());
        for r in roots {
            if self.is_dummy(r) {
                match self.children(r) {
                    [] => {}
                    [only] => top.push(*only),
                    _ => top.push(r),
                }
            } else {
                top.push(r);
            }
        }
        // (4) Sort the root set by sent date (a dummy by its first child, children sorted).
        for &r in &top {
            if self.is_dummy(r) {
                let mut kids = self.take_children(r);
                self.sort_nodes(&mut kids);
                self.set_children(r, kids);
            }
        }
        self.sort_nodes(&mut top);
        // (5) Group the root set by base subject.
        self.group_by_subject(&mut top);
        // (6) Sort every set of siblings, youngest first.
        let order = self.preorder(&top);
        for &n in order.iter().rev() {
            let mut kids = self.take_children(n);
            self.sort_nodes(&mut kids);
            self.set_children(n, kids);
        }
        self.sort_nodes(&mut top);
        self.roots = top;
    }

    /// REFERENCES step 5.
    fn group_by_subject(&mut self, top: &mut Vec<usize>) {
        // (5B) The subject table.
        let mut table: HashMap<Casemapped<'a>, usize, RandomState> =
            HashMap::with_capacity_and_hasher(top.len(), RandomState::default());
        for &r in top.iter() {
            let s = self.thread_subject(r);
            if s.is_empty() {
                continue;
            }
            match table.entry(s) {
                Entry::Vacant(e) => {
                    e.insert(r);
                }
                Entry::Occupied(mut e) => {
                    let t = *e.get();
                    if !self.is_dummy(t)
                        && (self.is_dummy(r) || (self.is_reply(t) && !self.is_reply(r)))
                    {
                        e.insert(r);
                    }
                }
            }
        }
        // (5C) Merge threads of one subject.
        let mut slots: Vec<Option<usize>> = top.iter().map(|&r| Some(r)).collect();
        let mut slot_of: HashMap<usize, usize, RandomState> =
            top.iter().enumerate().map(|(i, &r)| (r, i)).collect();
        for i in 0..slots.len() {
            let Some(r) = slots.get(i).copied().flatten() else {
                continue;
            };
            let s = self.thread_subject(r);
            if s.is_empty() {
                continue;
            }
            let Some(t) = table.get(&s).copied() else {
                continue;
            };
            if t == r {
                continue;
            }
            if let Some(slot) = slots.get_mut(i) {
                *slot = None;
            }
            match (self.is_dummy(t), self.is_dummy(r)) {
                (true, true) => {
                    let kids = self.take_children(r);
                    for k in kids {
                        self.push_child(t, k);
                    }
                }
                (true, false) => self.push_child(t, r),
                _ if self.is_reply(r) && !self.is_reply(t) => self.push_child(t, r),
                _ => {
                    let d = self.add(None);
                    self.push_child(d, t);
                    self.push_child(d, r);
                    table.insert(s, d);
                    if let Some(ts) = slot_of.remove(&t) {
                        if let Some(slot) = slots.get_mut(ts) {
                            *slot = Some(d);
                        }
                        slot_of.insert(d, ts);
                    }
                }
            }
        }
        *top = slots.into_iter().flatten().collect();
    }

    fn preorder(&self, roots: &[usize]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut seen = vec![false; self.nodes.len()];
        let mut stack: Vec<usize> = roots.iter().rev().copied().collect();
        while let Some(n) = stack.pop() {
            match seen.get_mut(n) {
                Some(s) if !*s => *s = true,
                _ => continue,
            }
            out.push(n);
            stack.extend(self.children(n).iter().rev());
        }
        out
    }

    fn id(&self, n: usize) -> Option<u32> {
        self.msg(n).map(|m| if self.uid { m.uid } else { m.seq })
    }

    fn output(&self) -> Vec<Thread> {
        self.roots.iter().map(|&r| self.to_thread(r, 0)).collect()
    }

    /// The response tree of node `n`: the chain of single children, then the sub-threads
    /// when there are several (at [`MAX_THREAD_DEPTH`], the whole rest as one chain).
    fn to_thread(&self, mut n: usize, depth: usize) -> Thread {
        let mut t = Thread {
            ids: Vec::new(),
            children: Vec::new(),
        };
        if depth >= MAX_THREAD_DEPTH {
            t.ids = self
                .preorder(&[n])
                .into_iter()
                .filter_map(|x| self.id(x))
                .collect();
            return t;
        }
        for _ in 0..=self.nodes.len() {
            t.ids.extend(self.id(n));
            match self.children(n) {
                [] => break,
                [only] => n = *only,
                many => {
                    t.children = many.iter().map(|&c| self.to_thread(c, depth + 1)).collect();
                    break;
                }
            }
        }
        t
    }
}
