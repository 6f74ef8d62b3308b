//! CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST (LIST-EXTENDED, LIST-STATUS,
//! SPECIAL-USE), LSUB, NAMESPACE, STATUS and the QUOTA commands. The hierarchy delimiter is `/`.

use std::collections::{BTreeMap, BTreeSet};

use mailfleet_imap_proto::{
    Code, Data, List, ListData, ListReturn, ListSelect, Mailbox, NamespaceDesc, StatusItem,
    StatusValue,
};
use mailfleet_store::{MailboxStatus, StoreError};

use crate::session::{Reply, Session};

pub(crate) const DELIMITER: char = '/';

/// Special-use attributes a client may ask for at CREATE (RFC 6154).
const SPECIAL_USES: [&str; 7] = [
    "All", "Archive", "Drafts", "Flagged", "Junk", "Sent", "Trash",
];

/// Whether `name` matches a LIST pattern (`*` anything, `%` anything but the delimiter).
/// Dynamic programming over pattern × name: at most 4096 × 4096 steps, patterns longer than
/// that match nothing.
pub(crate) fn matches(pattern: &[u8], name: &[u8]) -> bool {
    if pattern.len() > 4096 || name.len() > 4096 {
        return false;
    }
    // row[j]: the pattern so far matches name[..j].
    let mut row = vec![false; name.len() + 1];
    row[0] = true;
    for &p in pattern {
        let mut next = vec![false; name.len() + 1];
        match p {
            b'*' | b'%' => {
                next[0] = row[0];
                for j in 1..=name.len() {
                    let extend = next[j - 1] && (p == b'*' || name[j - 1] != DELIMITER as u8);
                    next[j] = row[j] || extend;
                }
            }
            c => {
                for j in 1..=name.len() {
                    next[j] = row[j - 1] && name[j - 1] == c;
                }
            }
        }
        row = next;
    }
    row[name.len()]
}

/// Reference and pattern as one pattern, `INBOX` at its start in upper case.
fn full_pattern(reference: &str, pattern: &str) -> String {
    let joined = if reference.is_empty() || pattern.starts_with(DELIMITER) {
        pattern.to_string()
    } else {
        format!("{reference}{pattern}")
    };
    let head = joined.get(..5).unwrap_or("");
    if head.eq_ignore_ascii_case("INBOX")
        && matches!(
            joined.as_bytes().get(5),
            None | Some(b'/') | Some(b'*') | Some(b'%')
        )
    {
        format!("INBOX{}", &joined[5..])
    } else {
        joined
    }
}

/// A mailbox name as the store keeps it: `INBOX` in upper case, no trailing delimiter.
fn store_name(m: &Mailbox) -> String {
    match m {
        Mailbox::Inbox => "INBOX".into(),
        Mailbox::Other(s) => {
            let s = s.trim_end_matches(DELIMITER);
            if s.eq_ignore_ascii_case("INBOX") {
                "INBOX".into()
            } else if s.len() > 6 && s[..6].eq_ignore_ascii_case("INBOX/") {
                format!("INBOX/{}", &s[6..])
            } else {
                s.to_string()
            }
        }
    }
}

/// What LIST knows of one name.
#[derive(Default, Clone)]
struct Entry {
    exists: bool,
    special_use: Option<String>,
    children: bool,
    subscribed: bool,
    subscribed_child: bool,
    id: i64,
}

impl Session {
    fn account_id(&self) -> i64 {
        self.account.as_ref().map(|a| a.id).unwrap_or(0)
    }

    pub async fn create(&mut self, mailbox: Mailbox, special_use: Vec<String>) -> Reply {
        let name = store_name(&mailbox);
        if name.is_empty() || name.split(DELIMITER).any(|p| p.is_empty()) {
            return Reply::no(Some(Code::Cannot), "invalid mailbox name");
        }
        if name == "INBOX" {
            return Reply::no(Some(Code::AlreadyExists), "INBOX exists");
        }
        let special = match special_use.as_slice() {
            [] => None,
            [one] => match SPECIAL_USES.iter().find(|s| s.eq_ignore_ascii_case(one)) {
                Some(s) => Some(format!("\\{s}")),
                None => return Reply::no(Some(Code::UseAttr), "unknown special-use attribute"),
            },
            _ => return Reply::no(Some(Code::UseAttr), "one special-use attribute at most"),
        };
        let store = self.shared.ctx.store.clone();
        let account = self.account_id();
        // Superior names are created as needed (RFC 9051 §6.3.4).
        let parts: Vec<&str> = name.split(DELIMITER).collect();
        for i in 1..parts.len() {
            let parent = parts[..i].join("/");
            match store.create_mailbox(account, &parent, None).await {
                Ok(_) | Err(StoreError::MailboxExists(_)) => {}
                Err(e) => return Reply::unavailable(&self.id, "mailbox not created", &e),
            }
        }
        match store
            .create_mailbox(account, &name, special.as_deref())
            .await
        {
            Ok(_) => Reply::ok("CREATE completed"),
            Err(StoreError::MailboxExists(_)) => {
                Reply::no(Some(Code::AlreadyExists), "mailbox already exists")
            }
            Err(e) => Reply::unavailable(&self.id, "mailbox not created", &e),
        }
    }

    pub async fn delete(&mut self, mailbox: Mailbox) -> Reply {
        let name = store_name(&mailbox);
        if name == "INBOX" {
            return Reply::no(Some(Code::Cannot), "INBOX cannot be deleted");
        }
        let deleting_selected = self
            .selected
            .as_ref()
            .is_some_and(|s| s.mailbox.name == name);
        match self
            .shared
            .ctx
            .store
            .delete_mailbox(self.account_id(), &name)
            .await
        {
            Ok(()) => {
                if deleting_selected {
                    self.selected = None;
                }
                Reply::ok("DELETE completed")
            }
            Err(StoreError::MailboxNotFound(_)) => {
                Reply::no(Some(Code::NonExistent), "no such mailbox")
            }
            Err(StoreError::Invalid(why)) => Reply::no(Some(Code::Cannot), &why),
            Err(e) => Reply::unavailable(&self.id, "mailbox not deleted", &e),
        }
    }

    pub async fn rename(&mut self, from: Mailbox, to: Mailbox) -> Reply {
        let (from, to) = (store_name(&from), store_name(&to));
        if to.is_empty() || to.split(DELIMITER).any(|p| p.is_empty()) {
            return Reply::no(Some(Code::Cannot), "invalid mailbox name");
        }
        if to == "INBOX" {
            return Reply::no(Some(Code::AlreadyExists), "INBOX exists");
        }
        if to.starts_with(&format!("{from}/")) {
            return Reply::no(Some(Code::Cannot), "cannot rename a mailbox into itself");
        }
        let store = self.shared.ctx.store.clone();
        let account = self.account_id();
        let parts: Vec<&str> = to.split(DELIMITER).collect();
        for i in 1..parts.len() {
            let parent = parts[..i].join("/");
            if parent == from {
                continue;
            }
            match store.create_mailbox(account, &parent, None).await {
                Ok(_) | Err(StoreError::MailboxExists(_)) => {}
                Err(e) => return Reply::unavailable(&self.id, "mailbox not created", &e),
            }
        }
        match store.rename_mailbox(account, &from, &to).await {
            Ok(()) => {
                if let Some(sel) = self.selected.as_mut()
                    && (sel.mailbox.name == from
                        || sel.mailbox.name.starts_with(&format!("{from}/")))
                    && from != "INBOX"
                {
                    sel.mailbox.name = format!("{to}{}", &sel.mailbox.name[from.len()..]);
                }
                Reply::ok("RENAME completed")
            }
            Err(StoreError::MailboxNotFound(_)) => {
                Reply::no(Some(Code::NonExistent), "no such mailbox")
            }
            Err(StoreError::MailboxExists(_)) => {
                Reply::no(Some(Code::AlreadyExists), "target mailbox exists")
            }
            Err(StoreError::Invalid(why)) => Reply::no(Some(Code::Cannot), &why),
            Err(e) => Reply::unavailable(&self.id, "mailbox not renamed", &e),
        }
    }

    pub async fn subscribe(&mut self, mailbox: Mailbox, on: bool) -> Reply {
        let name = store_name(&mailbox);
        let store = &self.shared.ctx.store;
        let account = self.account_id();
        let r = if on {
            store.subscribe(account, &name).await
        } else {
            store.unsubscribe(account, &name).await
        };
        match r {
            Ok(()) if on => Reply::ok("SUBSCRIBE completed"),
            Ok(()) => Reply::ok("UNSUBSCRIBE completed"),
            Err(e) => Reply::unavailable(&self.id, "subscription not changed", &e),
        }
    }

    /// Every name LIST may show: mailboxes, their missing parents, subscriptions.
    async fn entries(&self) -> Result<BTreeMap<String, Entry>, StoreError> {
        let store = &self.shared.ctx.store;
        let account = self.account_id();
        let mut out: BTreeMap<String, Entry> = BTreeMap::new();
        for m in store.list_mailboxes(account).await? {
            let e = out.entry(m.name.clone()).or_default();
            e.exists = true;
            e.special_use = m.special_use.clone();
            e.id = m.id;
        }
        for s in store.subscriptions(account).await? {
            out.entry(s).or_default().subscribed = true;
        }
        let names: Vec<(String, bool)> =
            out.iter().map(|(k, v)| (k.clone(), v.subscribed)).collect();
        for (name, subscribed) in names {
            let mut parent = name.as_str();
            while let Some(i) = parent.rfind(DELIMITER) {
                parent = &parent[..i];
                let e = out.entry(parent.to_string()).or_default();
                e.children = true;
                if subscribed {
                    e.subscribed_child = true;
                }
            }
        }
        Ok(out)
    }

    pub async fn list(&mut self, list: List) -> Reply {
        if list.patterns.len() == 1 && list.patterns[0].is_empty() && list.select.is_empty() {
            // The delimiter and root (RFC 9051 §6.3.9).
            self.untagged(Data::List(ListData {
                attributes: vec!["Noselect".into()],
                delimiter: Some(DELIMITER),
                mailbox: Mailbox::Other(String::new()),
                child_info: Vec::new(),
                old_name: None,
            }));
            return Reply::ok("LIST completed");
        }
        let entries = match self.entries().await {
            Ok(e) => e,
            Err(e) => return Reply::unavailable(&self.id, "mailboxes not read", &e),
        };
        if list.select.contains(&ListSelect::RecursiveMatch)
            && !list
                .select
                .iter()
                .any(|s| matches!(s, ListSelect::Subscribed | ListSelect::SpecialUse))
        {
            // RFC 5258 §3: RECURSIVEMATCH needs a selection option it can apply to.
            return Reply::bad("RECURSIVEMATCH needs another selection option");
        }
        let subscribed_only = list.select.contains(&ListSelect::Subscribed);
        let special_only = list.select.contains(&ListSelect::SpecialUse);
        let recursive = list.select.contains(&ListSelect::RecursiveMatch);
        let ret_subscribed = subscribed_only || list.returns.contains(&ListReturn::Subscribed);
        let status_items: Option<Vec<StatusItem>> = list.returns.iter().find_map(|r| match r {
            ListReturn::Status(items) => Some(items.clone()),
            _ => None,
        });
        let patterns: Vec<String> = list
            .patterns
            .iter()
            .map(|p| full_pattern(&list.reference, p))
            .collect();
        let mut shown = BTreeSet::new();
        let mut lines = Vec::new();
        for (name, e) in &entries {
            if !patterns
                .iter()
                .any(|p| matches(p.as_bytes(), name.as_bytes()))
            {
                continue;
            }
            let mut child_info = Vec::new();
            if subscribed_only && !e.subscribed {
                // CHILDINFO only for a subscribed descendant the patterns do not list
                // themselves (RFC 5258 §4).
                let prefix = format!("{name}{DELIMITER}");
                let hidden_child = entries.iter().any(|(n, c)| {
                    c.subscribed
                        && n.starts_with(&prefix)
                        && !patterns.iter().any(|p| matches(p.as_bytes(), n.as_bytes()))
                });
                if recursive && e.subscribed_child && hidden_child {
                    child_info.push("SUBSCRIBED".to_string());
                } else {
                    continue;
                }
            }
            if special_only && e.special_use.is_none() {
                continue;
            }
            if !e.exists && !e.children && !e.subscribed {
                continue;
            }
            let mut attributes = Vec::new();
            if !e.exists {
                if self.rev2 || subscribed_only || !list.returns.is_empty() {
                    attributes.push("NonExistent".to_string());
                } else {
                    attributes.push("Noselect".to_string());
                }
            }
            attributes.push(
                if e.children {
                    "HasChildren"
                } else {
                    "HasNoChildren"
                }
                .into(),
            );
            if ret_subscribed && e.subscribed {
                attributes.push("Subscribed".into());
            }
            if let Some(su) = &e.special_use {
                attributes.push(su.trim_start_matches('\\').to_string());
            }
            if !shown.insert(name.clone()) {
                continue;
            }
            lines.push((name.clone(), attributes, child_info, e.exists));
        }
        for (name, attributes, child_info, exists) in lines {
            self.untagged(Data::List(ListData {
                attributes,
                delimiter: Some(DELIMITER),
                mailbox: Mailbox::new(name.clone()),
                child_info,
                old_name: None,
            }));
            if let Some(items) = &status_items
                && exists
            {
                let _ = self.status_lines(Mailbox::new(name), items).await;
            }
        }
        Reply::ok("LIST completed")
    }

    pub async fn lsub(&mut self, reference: &str, pattern: &str) -> Reply {
        let entries = match self.entries().await {
            Ok(e) => e,
            Err(e) => return Reply::unavailable(&self.id, "mailboxes not read", &e),
        };
        let pattern = full_pattern(reference, pattern);
        for (name, e) in &entries {
            if !matches(pattern.as_bytes(), name.as_bytes()) {
                continue;
            }
            let attributes = if e.subscribed {
                Vec::new()
            } else if e.subscribed_child && pattern.ends_with('%') {
                // A parent of a subscribed name that `%` stops at (RFC 3501 §6.3.9).
                vec!["Noselect".to_string()]
            } else {
                continue;
            };
            self.untagged(Data::Lsub(ListData {
                attributes,
                delimiter: Some(DELIMITER),
                mailbox: Mailbox::new(name.clone()),
                child_info: Vec::new(),
                old_name: None,
            }));
        }
        Reply::ok("LSUB completed")
    }

    pub fn namespace(&mut self) -> Reply {
        self.untagged(Data::Namespace {
            personal: vec![NamespaceDesc {
                prefix: String::new(),
                delimiter: Some(DELIMITER),
            }],
            other: Vec::new(),
            shared: Vec::new(),
        });
        Reply::ok("NAMESPACE completed")
    }

    /// One STATUS line; `Err` with the answer when the mailbox cannot be read.
    async fn status_lines(&mut self, mailbox: Mailbox, items: &[StatusItem]) -> Result<(), Reply> {
        let store = self.shared.ctx.store.clone();
        let name = store_name(&mailbox);
        let m = match store.get_mailbox(self.account_id(), &name).await {
            Ok(Some(m)) => m,
            Ok(None) => return Err(Reply::no(Some(Code::NonExistent), "no such mailbox")),
            Err(e) => return Err(Reply::unavailable(&self.id, "mailbox not read", &e)),
        };
        let st: MailboxStatus = match store.status_of(m.id).await {
            Ok(s) => s,
            Err(e) => return Err(Reply::unavailable(&self.id, "mailbox not read", &e)),
        };
        let n = |v: i64| StatusValue::Number(v.max(0) as u64);
        let values = items
            .iter()
            .map(|item| {
                let v = match item {
                    StatusItem::Messages => n(st.messages),
                    StatusItem::UidNext => n(i64::from(st.uidnext)),
                    StatusItem::UidValidity => n(i64::from(st.uidvalidity)),
                    StatusItem::Unseen => n(st.unseen),
                    StatusItem::Deleted => n(st.deleted),
                    StatusItem::Size => n(st.bytes),
                    StatusItem::Recent => n(st.recent),
                    StatusItem::HighestModSeq => n(st.highestmodseq),
                    StatusItem::AppendLimit => StatusValue::Number(self.policy.max_append),
                    StatusItem::MailboxId => StatusValue::ObjectId(format!("M{}", m.id)),
                };
                (*item, v)
            })
            .collect();
        if items.contains(&StatusItem::HighestModSeq) {
            self.enable_condstore();
        }
        self.untagged(Data::Status {
            mailbox,
            items: values,
        });
        Ok(())
    }

    pub async fn status(&mut self, mailbox: Mailbox, items: Vec<StatusItem>) -> Reply {
        match self.status_lines(mailbox, &items).await {
            Ok(()) => Reply::ok("STATUS completed"),
            Err(r) => r,
        }
    }

    async fn quota_line(&mut self) -> Result<bool, Reply> {
        let store = self.shared.ctx.store.clone();
        let account = match store.get_account_by_id(self.account_id()).await {
            Ok(Some(a)) => a,
            Ok(None) => return Err(Reply::no(None, "account gone")),
            Err(e) => return Err(Reply::unavailable(&self.id, "account not read", &e)),
        };
        if account.quota_bytes <= 0 {
            return Ok(false);
        }
        let kib = |b: i64| (b.max(0) as u64).div_ceil(1024);
        self.untagged(Data::Quota {
            root: String::new(),
            resources: vec![(
                "STORAGE".into(),
                kib(account.used_bytes),
                kib(account.quota_bytes),
            )],
        });
        Ok(true)
    }

    pub async fn get_quota(&mut self, root: &str) -> Reply {
        if !root.is_empty() {
            return Reply::no(Some(Code::NonExistent), "no such quota root");
        }
        match self.quota_line().await {
            Ok(true) => Reply::ok("GETQUOTA completed"),
            Ok(false) => {
                self.untagged(Data::Quota {
                    root: String::new(),
                    resources: Vec::new(),
                });
                Reply::ok("GETQUOTA completed: no limit")
            }
            Err(r) => r,
        }
    }

    pub async fn get_quota_root(&mut self, mailbox: Mailbox) -> Reply {
        let name = store_name(&mailbox);
        match self
            .shared
            .ctx
            .store
            .get_mailbox(self.account_id(), &name)
            .await
        {
            Ok(Some(_)) => {}
            Ok(None) => return Reply::no(Some(Code::NonExistent), "no such mailbox"),
            Err(e) => return Reply::unavailable(&self.id, "mailbox not read", &e),
        }
        let account = self.account.as_ref().map(|a| a.quota_bytes).unwrap_or(0);
        self.untagged(Data::QuotaRoot {
            mailbox,
            roots: if account > 0 {
                vec![String::new()]
            } else {
                Vec::new()
            },
        });
        if let Err(r) = self.quota_line().await {
            return r;
        }
        Reply::ok("GETQUOTAROOT completed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(matches(b"*", b"a/b/c"));
        assert!(matches(b"%", b"a"));
        assert!(!matches(b"%", b"a/b"));
        assert!(matches(b"a/%", b"a/b"));
        assert!(!matches(b"a/%", b"a/b/c"));
        assert!(matches(b"a*c", b"a/b/c"));
        assert!(matches(b"INBOX", b"INBOX"));
        assert!(!matches(b"", b"x"));
        assert_eq!(full_pattern("", "inbox"), "INBOX");
        assert_eq!(full_pattern("inbox/", "%"), "INBOX/%");
        assert_eq!(full_pattern("", "inboxes"), "inboxes");
        assert_eq!(store_name(&Mailbox::Other("Inbox/x".into())), "INBOX/x");
        assert_eq!(store_name(&Mailbox::Other("a/".into())), "a");
        // A long pattern of wildcards stays cheap and right.
        let p = "%*".repeat(400) + "x";
        assert!(!matches(p.as_bytes(), &[b'/'; 600]));
        assert!(matches(p.as_bytes(), b"a/b/x"));
    }
}
