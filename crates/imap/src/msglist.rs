//! The messages of a mailbox by UID, as a session and the node's snapshot hold them: UID,
//! MODSEQ and flags. Flags are interned per list (each distinct flag list is kept once and a
//! message holds its number), so a message is 16 plain bytes: copying a list of 100,000
//! messages is one copy of 1.6 MB, with no allocation or reference count per message. That is
//! what lets a session share the node's list at SELECT and copy it only when it changes it.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Arc;

/// One message: its flags are `List::flags(m)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Msg {
    pub uid: u32,
    set: u32,
    pub modseq: i64,
}

/// Messages ascending by UID; derefs to the slice of them.
#[derive(Clone, Debug, Default)]
pub(crate) struct List {
    msgs: Vec<Msg>,
    sets: Vec<Arc<[String]>>,
    index: HashMap<Arc<[String]>, u32>,
}

impl Deref for List {
    type Target = [Msg];

    fn deref(&self) -> &[Msg] {
        &self.msgs
    }
}

impl List {
    /// A list of (UID, MODSEQ, flags), ascending by UID.
    pub fn from_rows(rows: impl IntoIterator<Item = (u32, i64, Vec<String>)>) -> List {
        let mut list = List::default();
        for (uid, modseq, flags) in rows {
            list.push(uid, modseq, &flags);
        }
        list
    }

    pub fn flags(&self, m: &Msg) -> &[String] {
        self.sets.get(m.set as usize).map(|s| &s[..]).unwrap_or(&[])
    }

    /// Adds a message after the last one.
    pub fn push(&mut self, uid: u32, modseq: i64, flags: &[String]) {
        let set = self.intern(flags);
        self.msgs.push(Msg { uid, set, modseq });
    }

    /// Sets the flags and MODSEQ of the message at `index`; false if there is none.
    pub fn set(&mut self, index: usize, modseq: i64, flags: &[String]) -> bool {
        if index >= self.msgs.len() {
            return false;
        }
        let set = self.intern(flags);
        if let Some(m) = self.msgs.get_mut(index) {
            m.set = set;
            m.modseq = modseq;
        }
        true
    }

    pub fn retain(&mut self, keep: impl FnMut(&Msg) -> bool) {
        self.msgs.retain(keep);
    }

    /// Every distinct flag list the list holds (and possibly some no message has any longer):
    /// what SELECT learns keywords from, without looking at each message.
    pub fn flag_lists(&self) -> impl Iterator<Item = &[String]> {
        self.sets.iter().map(|s| &s[..])
    }

    /// A test of whether a message of this list has `flag` (ASCII case ignored), which looks
    /// at each distinct flag list once, not at each message's strings.
    pub fn has_flag(&self, flag: &str) -> impl Fn(&Msg) -> bool + use<> {
        let has: Vec<bool> = self
            .sets
            .iter()
            .map(|s| s.iter().any(|f| f.eq_ignore_ascii_case(flag)))
            .collect();
        move |m| has.get(m.set as usize).copied().unwrap_or(false)
    }

    /// The index of the first message without `flag` (ASCII case ignored).
    pub fn first_without(&self, flag: &str) -> Option<usize> {
        let has = self.has_flag(flag);
        self.msgs.iter().position(|m| !has(m))
    }

    /// The number of a flag list, added if new. Lists no message uses any longer are dropped
    /// when they come to outnumber the messages.
    fn intern(&mut self, flags: &[String]) -> u32 {
        if let Some(&n) = self.index.get(flags) {
            return n;
        }
        if self.sets.len() >= 2 * self.msgs.len() + 64 {
            self.compact();
        }
        let shared: Arc<[String]> = Arc::from(flags);
        let n = self.sets.len() as u32;
        self.sets.push(shared.clone());
        self.index.insert(shared, n);
        n
    }

    fn compact(&mut self) {
        let mut renumber: HashMap<u32, u32> = HashMap::new();
        let mut sets: Vec<Arc<[String]>> = Vec::new();
        for m in &mut self.msgs {
            let n = *renumber.entry(m.set).or_insert_with(|| {
                sets.push(self.sets[m.set as usize].clone());
                sets.len() as u32 - 1
            });
            m.set = n;
        }
        self.index = sets
            .iter()
            .enumerate()
            .map(|(n, s)| (s.clone(), n as u32))
            .collect();
        self.sets = sets;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_are_interned_and_compacted() {
        let mut l = List::from_rows([
            (1, 1, strings(&["\\Seen"])),
            (2, 1, strings(&[])),
            (3, 1, strings(&["\\Seen"])),
        ]);
        assert_eq!(l.len(), 3);
        assert_eq!(l[0].set, l[2].set);
        assert_ne!(l[0].set, l[1].set);
        assert_eq!(l.first_without("\\SEEN"), Some(1));
        let seen = l.has_flag("\\seen");
        assert_eq!(l.iter().map(seen).collect::<Vec<_>>(), [true, false, true]);
        assert_eq!(l.flags(&l[0]), ["\\Seen"]);
        assert!(l.flags(&l[1]).is_empty());
        // Many flag changes on one message: unused lists do not pile up.
        for i in 0..1000 {
            assert!(l.set(1, 2 + i, &[format!("k{i}")]));
        }
        assert!(
            l.sets.len() <= 2 * l.len() + 64,
            "{} lists kept",
            l.sets.len()
        );
        assert_eq!(l.flags(&l[1]), ["k999"]);
        assert_eq!(l.flags(&l[0]), ["\\Seen"]);
        assert_eq!(l[1].modseq, 1001);
        assert!(!l.set(3, 1, &[]));
        l.retain(|m| m.uid != 2);
        l.push(9, 5, &strings(&["\\Seen"]));
        assert_eq!(l.iter().map(|m| m.uid).collect::<Vec<_>>(), [1, 3, 9]);
        assert_eq!(l[0].set, l[2].set);
        assert_eq!(l.first_without("\\Seen"), None);
        let keywords: Vec<&[String]> = l
            .flag_lists()
            .filter(|f| f.contains(&"k999".into()))
            .collect();
        assert_eq!(keywords.len(), 1);
    }
}
