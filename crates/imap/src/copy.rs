//! COPY and MOVE, by sequence number or UID, with UIDPLUS's COPYUID (RFC 4315, RFC 6851).

use mailfleet_imap_proto::{Code, Data, Mailbox, SequenceSet, Status};
use mailfleet_store::StoreError;

use crate::session::{Reply, Session};

impl Session {
    pub async fn copy(&mut self, uid: bool, set: SequenceSet, to: Mailbox, remove: bool) -> Reply {
        let saved = self.saved.clone();
        let Some(sel) = self.selected.as_ref() else {
            return Reply::bad("no mailbox selected");
        };
        if remove && sel.read_only {
            return Reply::no(Some(Code::ReadOnly), "mailbox is read-only");
        }
        let indexes = match sel.resolve(&set, uid, saved.as_deref()) {
            Ok(i) => i,
            Err(e) => return Reply::bad(e),
        };
        let uids: Vec<u32> = indexes.iter().map(|&i| sel.msgs[i].uid).collect();
        let from_id = sel.mailbox.id;
        let account = self.account.as_ref().map(|a| a.id).unwrap_or(0);
        let store = self.shared.ctx.store.clone();
        let dest = match store.get_mailbox(account, to.as_str()).await {
            Ok(Some(m)) => m,
            Ok(None) => return Reply::no(Some(Code::TryCreate), "no such mailbox"),
            Err(e) => return Reply::unavailable(&self.id, "mailbox not read", &e),
        };
        let verb = if remove { "MOVE" } else { "COPY" };
        if uids.is_empty() {
            return Reply::ok(&format!("{verb} completed: nothing to do"));
        }
        let pairs = match store.copy_messages(from_id, &uids, dest.id, remove).await {
            Ok(p) => p,
            Err(StoreError::OverQuota(_)) => {
                return Reply::no(Some(Code::OverQuota), "the mailbox is over its quota");
            }
            Err(e) => return Reply::unavailable(&self.id, "messages not copied", &e),
        };
        self.shared.watcher.bump(dest.id);
        if pairs.is_empty() {
            return Reply::no(
                Some(Code::ExpungeIssued),
                "the messages were expunged meanwhile",
            );
        }
        let code = Code::CopyUid {
            uid_validity: dest.uidvalidity,
            source: SequenceSet::from_sorted(&pairs.iter().map(|p| p.0).collect::<Vec<_>>()),
            dest: SequenceSet::from_sorted(&pairs.iter().map(|p| p.1).collect::<Vec<_>>()),
        };
        if remove {
            self.shared.watcher.bump(from_id);
            // COPYUID goes in an untagged OK before the expunges (RFC 6851 §4.3).
            self.untagged(Data::Condition {
                status: Status::Ok,
                code: Some(code),
                text: "moved".into(),
            });
            self.sync(true, true).await;
            Reply::ok("MOVE completed")
        } else {
            Reply::ok_code(code, "COPY completed")
        }
    }
}
