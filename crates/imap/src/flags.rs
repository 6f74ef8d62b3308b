//! STORE and UID STORE (`FLAGS`, `+FLAGS`, `-FLAGS`, `.SILENT`, CONDSTORE's UNCHANGEDSINCE).

use mailfleet_imap_proto::{Code, Flag, SequenceSet, StoreMode};
use mailfleet_store::FlagOp;

use crate::session::{Reply, Session};

impl Session {
    pub async fn store_flags(
        &mut self,
        uid: bool,
        set: SequenceSet,
        unchanged_since: Option<u64>,
        mode: StoreMode,
        silent: bool,
        flags: Vec<Flag>,
    ) -> Reply {
        if unchanged_since.is_some() {
            self.enable_condstore();
        }
        let saved = self.saved.clone();
        let Some(sel) = self.selected.as_ref() else {
            return Reply::bad("no mailbox selected");
        };
        if sel.read_only {
            return Reply::no(Some(Code::ReadOnly), "mailbox is read-only");
        }
        let indexes = match sel.resolve(&set, uid, saved.as_deref()) {
            Ok(i) => i,
            Err(e) => return Reply::bad(e),
        };
        let uids: Vec<u32> = indexes.iter().map(|&i| sel.msgs[i].uid).collect();
        let mailbox_id = sel.mailbox.id;
        // \Recent cannot be set or cleared (RFC 3501 §2.3.2).
        let wanted: Vec<String> = flags
            .iter()
            .filter(|f| !matches!(f, Flag::Recent))
            .map(Flag::as_wire)
            .collect();
        let op = match mode {
            StoreMode::Replace => FlagOp::Replace,
            StoreMode::Add => FlagOp::Add,
            StoreMode::Remove => FlagOp::Remove,
        };
        if uids.is_empty() {
            return Reply::ok("STORE completed");
        }
        let outcome = match self
            .shared
            .ctx
            .store
            .set_flags(
                mailbox_id,
                &uids,
                op,
                &wanted,
                unchanged_since.map(|m| m as i64),
            )
            .await
        {
            Ok(o) => o,
            Err(e) => return Reply::unavailable(&self.id, "flags not stored", &e),
        };
        let mut changed_idx = Vec::new();
        if let Some(sel) = self.selected.as_mut() {
            for ch in &outcome.changed {
                if let Some(i) = sel.index_of(ch.uid) {
                    sel.msgs_mut().set(i, ch.modseq, &ch.flags);
                    changed_idx.push(i);
                }
            }
        }
        if !outcome.changed.is_empty() {
            self.shared.watcher.bump(mailbox_id);
            // The flags now may hold keywords other sessions set: announce them all first.
            let all: Vec<String> = outcome
                .changed
                .iter()
                .flat_map(|c| c.flags.iter().cloned())
                .collect();
            self.announce_keywords(&all);
        }
        if !silent {
            // Every message of the set, with its flags now (RFC 9051 §6.4.6), except those
            // refused by UNCHANGEDSINCE.
            for &i in &indexes {
                let refused = self
                    .selected
                    .as_ref()
                    .is_some_and(|s| outcome.modified.contains(&s.msgs[i].uid));
                if !refused {
                    self.flags_update(i, uid);
                }
            }
        } else if self.condstore {
            // .SILENT still reports the new MODSEQ of changed messages (RFC 7162 §3.1.3).
            for i in changed_idx {
                self.flags_update(i, uid);
            }
        }
        if outcome.modified.is_empty() {
            return Reply::ok("STORE completed");
        }
        let modified: Vec<u32> = if uid {
            let mut m = outcome.modified.clone();
            m.sort_unstable();
            m
        } else {
            let sel = self.selected.as_ref();
            let mut m: Vec<u32> = outcome
                .modified
                .iter()
                .filter_map(|u| sel.and_then(|s| s.index_of(*u)).map(|i| i as u32 + 1))
                .collect();
            m.sort_unstable();
            m
        };
        Reply::ok_code(
            Code::Modified(SequenceSet::from_sorted(&modified)),
            "conditional STORE failed for some messages",
        )
    }
}
