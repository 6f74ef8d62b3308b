//! Versioned schema migrations, one list per backend. A migration is never edited once released:
//! changes are new entries. A store whose schema is newer than [`SCHEMA_VERSION`] is refused.

/// The schema version this binary knows.
pub const SCHEMA_VERSION: i64 = 8;

/// SQLite migrations: (version, statements).
pub const SQLITE: &[(i64, &str)] = &[
    (
        1,
        r#"
CREATE TABLE domains (
    name TEXT PRIMARY KEY,
    created INTEGER NOT NULL
);
CREATE TABLE shards (
    name TEXT PRIMARY KEY,
    weight INTEGER NOT NULL DEFAULT 100
);
CREATE TABLE accounts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    address TEXT NOT NULL UNIQUE,
    domain TEXT NOT NULL REFERENCES domains(name) ON DELETE CASCADE,
    password_hash TEXT NOT NULL,
    quota_bytes INTEGER NOT NULL DEFAULT 0,
    used_bytes INTEGER NOT NULL DEFAULT 0,
    shard TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    created INTEGER NOT NULL
);
CREATE INDEX accounts_domain ON accounts(domain);
CREATE INDEX accounts_shard ON accounts(shard);
CREATE TABLE aliases (
    address TEXT NOT NULL,
    target TEXT NOT NULL,
    domain TEXT NOT NULL REFERENCES domains(name) ON DELETE CASCADE,
    PRIMARY KEY (address, target)
);
CREATE INDEX aliases_domain ON aliases(domain);
CREATE TABLE mailboxes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    special_use TEXT,
    subscribed INTEGER NOT NULL DEFAULT 1,
    uidvalidity INTEGER NOT NULL,
    uidnext INTEGER NOT NULL DEFAULT 1,
    highestmodseq INTEGER NOT NULL DEFAULT 1,
    UNIQUE (account_id, name)
);
CREATE TABLE messages (
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    flags TEXT NOT NULL DEFAULT '',
    internal_date INTEGER NOT NULL,
    size INTEGER NOT NULL,
    blob_id TEXT NOT NULL,
    expunged INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (mailbox_id, uid)
);
CREATE INDEX messages_blob ON messages(blob_id);
CREATE INDEX messages_modseq ON messages(mailbox_id, modseq);
CREATE TABLE queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    blob_id TEXT NOT NULL,
    size INTEGER NOT NULL,
    sender TEXT NOT NULL,
    recipients TEXT NOT NULL,
    envid TEXT,
    ret TEXT,
    created INTEGER NOT NULL,
    next_attempt INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    warned INTEGER NOT NULL DEFAULT 0,
    lease_holder TEXT,
    lease_until INTEGER
);
CREATE INDEX queue_due ON queue(next_attempt);
CREATE INDEX queue_blob ON queue(blob_id);
CREATE TABLE nodes (
    server_id TEXT PRIMARY KEY,
    hostname TEXT NOT NULL,
    info TEXT NOT NULL,
    started INTEGER NOT NULL,
    last_seen INTEGER NOT NULL
);
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    token INTEGER NOT NULL,
    expires INTEGER NOT NULL
);
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    version INTEGER NOT NULL
);
CREATE TABLE blobs (
    id TEXT PRIMARY KEY,
    data BLOB NOT NULL,
    created INTEGER NOT NULL
);
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO counters (name, value) VALUES ('settings', 0);
"#,
    ),
    (
        2,
        r#"
CREATE TABLE rate_events (
    key TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (key, bucket)
);
CREATE INDEX rate_events_bucket ON rate_events (bucket);
CREATE TABLE auth_failures (
    ip TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    last_at INTEGER NOT NULL
);
"#,
    ),
    (
        3,
        r#"
ALTER TABLE messages ADD COLUMN system_flags INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN keywords TEXT NOT NULL DEFAULT '';
ALTER TABLE mailboxes ADD COLUMN messages INTEGER NOT NULL DEFAULT 0;
ALTER TABLE mailboxes ADD COLUMN unseen INTEGER NOT NULL DEFAULT 0;
ALTER TABLE mailboxes ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
ALTER TABLE mailboxes ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
CREATE TABLE mailbox_keywords (
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    keyword TEXT NOT NULL,
    PRIMARY KEY (mailbox_id, keyword)
);
CREATE TABLE message_meta (
    blob_id TEXT PRIMARY KEY,
    meta TEXT NOT NULL
);
INSERT INTO counters (name, value) SELECT 'uidvalidity',
    MAX(CAST(strftime('%s', 'now') AS INTEGER), COALESCE((SELECT MAX(uidvalidity) FROM mailboxes), 0));
"#,
    ),
    (
        4,
        r#"
CREATE TABLE subscriptions (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    PRIMARY KEY (account_id, name)
);
INSERT INTO subscriptions (account_id, name) SELECT account_id, name FROM mailboxes WHERE subscribed;
ALTER TABLE mailboxes ADD COLUMN recent_from INTEGER NOT NULL DEFAULT 1;
"#,
    ),
    (
        5,
        r#"
CREATE TABLE message_text (
    id INTEGER PRIMARY KEY,
    blob_id TEXT NOT NULL UNIQUE
);
CREATE VIRTUAL TABLE message_text_fts USING fts5(
    text, content='', contentless_delete=1, tokenize='trigram'
);
CREATE TRIGGER message_text_forget AFTER DELETE ON message_text BEGIN
    DELETE FROM message_text_fts WHERE rowid = old.id;
END;
"#,
    ),
    (
        6,
        r#"
ALTER TABLE leases ADD COLUMN acquired INTEGER NOT NULL DEFAULT 0;
"#,
    ),
    (
        7,
        r#"
CREATE TABLE node_drains (
    server_id TEXT PRIMARY KEY,
    requested INTEGER NOT NULL,
    deadline INTEGER NOT NULL
);
CREATE TABLE balancer_servers (
    balancer TEXT NOT NULL,
    service TEXT NOT NULL,
    server TEXT NOT NULL,
    address TEXT NOT NULL,
    state TEXT NOT NULL,
    active INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    PRIMARY KEY (balancer, service, server)
);
"#,
    ),
    (
        8,
        r#"
ALTER TABLE messages ADD COLUMN expunged_at INTEGER;
UPDATE messages SET expunged_at = CAST(strftime('%s', 'now') AS INTEGER) WHERE expunged;
CREATE INDEX messages_tombstones ON messages(expunged_at) WHERE expunged;
ALTER TABLE mailboxes ADD COLUMN purged_modseq INTEGER NOT NULL DEFAULT 0;
"#,
    ),
];

/// PostgreSQL migrations: (version, statements).
pub const POSTGRES: &[(i64, &str)] = &[
    (
        1,
        r#"
CREATE TABLE domains (
    name TEXT PRIMARY KEY,
    created BIGINT NOT NULL
);
CREATE TABLE shards (
    name TEXT PRIMARY KEY,
    weight BIGINT NOT NULL DEFAULT 100
);
CREATE TABLE accounts (
    id BIGSERIAL PRIMARY KEY,
    address TEXT NOT NULL UNIQUE,
    domain TEXT NOT NULL REFERENCES domains(name) ON DELETE CASCADE,
    password_hash TEXT NOT NULL,
    quota_bytes BIGINT NOT NULL DEFAULT 0,
    used_bytes BIGINT NOT NULL DEFAULT 0,
    shard TEXT NOT NULL,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    created BIGINT NOT NULL
);
CREATE INDEX accounts_domain ON accounts(domain);
CREATE INDEX accounts_shard ON accounts(shard);
CREATE TABLE aliases (
    address TEXT NOT NULL,
    target TEXT NOT NULL,
    domain TEXT NOT NULL REFERENCES domains(name) ON DELETE CASCADE,
    PRIMARY KEY (address, target)
);
CREATE INDEX aliases_domain ON aliases(domain);
CREATE TABLE mailboxes (
    id BIGSERIAL PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    special_use TEXT,
    subscribed BOOLEAN NOT NULL DEFAULT TRUE,
    uidvalidity BIGINT NOT NULL,
    uidnext BIGINT NOT NULL DEFAULT 1,
    highestmodseq BIGINT NOT NULL DEFAULT 1,
    UNIQUE (account_id, name)
);
CREATE TABLE messages (
    mailbox_id BIGINT NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid BIGINT NOT NULL,
    modseq BIGINT NOT NULL,
    flags TEXT NOT NULL DEFAULT '',
    internal_date BIGINT NOT NULL,
    size BIGINT NOT NULL,
    blob_id TEXT NOT NULL,
    expunged BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (mailbox_id, uid)
);
CREATE INDEX messages_blob ON messages(blob_id);
CREATE INDEX messages_modseq ON messages(mailbox_id, modseq);
CREATE TABLE queue (
    id BIGSERIAL PRIMARY KEY,
    blob_id TEXT NOT NULL,
    size BIGINT NOT NULL,
    sender TEXT NOT NULL,
    recipients TEXT NOT NULL,
    envid TEXT,
    ret TEXT,
    created BIGINT NOT NULL,
    next_attempt BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    warned BOOLEAN NOT NULL DEFAULT FALSE,
    lease_holder TEXT,
    lease_until BIGINT
);
CREATE INDEX queue_due ON queue(next_attempt);
CREATE INDEX queue_blob ON queue(blob_id);
CREATE TABLE nodes (
    server_id TEXT PRIMARY KEY,
    hostname TEXT NOT NULL,
    info TEXT NOT NULL,
    started BIGINT NOT NULL,
    last_seen BIGINT NOT NULL
);
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    token BIGINT NOT NULL,
    expires BIGINT NOT NULL
);
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    version BIGINT NOT NULL
);
CREATE TABLE blobs (
    id TEXT PRIMARY KEY,
    data BYTEA NOT NULL,
    created BIGINT NOT NULL
);
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('settings', 0);
"#,
    ),
    (
        2,
        r#"
CREATE TABLE rate_events (
    key TEXT NOT NULL,
    bucket BIGINT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (key, bucket)
);
CREATE INDEX rate_events_bucket ON rate_events (bucket);
CREATE TABLE auth_failures (
    ip TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    last_at BIGINT NOT NULL
);
"#,
    ),
    (
        3,
        r#"
ALTER TABLE messages ADD COLUMN system_flags BIGINT NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN keywords TEXT NOT NULL DEFAULT '';
ALTER TABLE mailboxes ADD COLUMN messages BIGINT NOT NULL DEFAULT 0;
ALTER TABLE mailboxes ADD COLUMN unseen BIGINT NOT NULL DEFAULT 0;
ALTER TABLE mailboxes ADD COLUMN deleted BIGINT NOT NULL DEFAULT 0;
ALTER TABLE mailboxes ADD COLUMN bytes BIGINT NOT NULL DEFAULT 0;
CREATE TABLE mailbox_keywords (
    mailbox_id BIGINT NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    keyword TEXT NOT NULL,
    PRIMARY KEY (mailbox_id, keyword)
);
CREATE TABLE message_meta (
    blob_id TEXT PRIMARY KEY,
    meta TEXT NOT NULL
);
INSERT INTO counters (name, value) SELECT 'uidvalidity',
    GREATEST(CAST(extract(epoch FROM now()) AS BIGINT), COALESCE((SELECT MAX(uidvalidity) FROM mailboxes), 0));
"#,
    ),
    (
        4,
        r#"
CREATE TABLE subscriptions (
    account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    PRIMARY KEY (account_id, name)
);
INSERT INTO subscriptions (account_id, name) SELECT account_id, name FROM mailboxes WHERE subscribed;
ALTER TABLE mailboxes ADD COLUMN recent_from BIGINT NOT NULL DEFAULT 1;
"#,
    ),
    (
        5,
        r#"
CREATE TABLE message_text (
    blob_id TEXT PRIMARY KEY,
    tsv TSVECTOR NOT NULL
);
CREATE INDEX message_text_tsv ON message_text USING GIN (tsv);
"#,
    ),
    (
        6,
        r#"
ALTER TABLE leases ADD COLUMN acquired BIGINT NOT NULL DEFAULT 0;
"#,
    ),
    (
        7,
        r#"
CREATE TABLE node_drains (
    server_id TEXT PRIMARY KEY,
    requested BIGINT NOT NULL,
    deadline BIGINT NOT NULL
);
CREATE TABLE balancer_servers (
    balancer TEXT NOT NULL,
    service TEXT NOT NULL,
    server TEXT NOT NULL,
    address TEXT NOT NULL,
    state TEXT NOT NULL,
    active BIGINT NOT NULL,
    updated BIGINT NOT NULL,
    PRIMARY KEY (balancer, service, server)
);
"#,
    ),
    (
        8,
        r#"
ALTER TABLE messages ADD COLUMN expunged_at BIGINT;
UPDATE messages SET expunged_at = CAST(extract(epoch FROM now()) AS BIGINT) WHERE expunged;
CREATE INDEX messages_tombstones ON messages(expunged_at) WHERE expunged;
ALTER TABLE mailboxes ADD COLUMN purged_modseq BIGINT NOT NULL DEFAULT 0;
"#,
    ),
];

/// Version 3, after each backend has moved every message's v2 `flags` text into
/// `system_flags` and `keywords` (and the keywords into `mailbox_keywords`) with
/// [`split_flags`]: the mailboxes' counters from their messages, and the old column goes.
/// One text for both backends.
pub const V3_AFTER_FLAGS: &str = r#"
UPDATE mailboxes SET
    messages = (SELECT COUNT(*) FROM messages x WHERE x.mailbox_id = mailboxes.id AND NOT x.expunged),
    unseen = (SELECT COUNT(*) FROM messages x WHERE x.mailbox_id = mailboxes.id AND NOT x.expunged
        AND (x.system_flags & 1) = 0),
    deleted = (SELECT COUNT(*) FROM messages x WHERE x.mailbox_id = mailboxes.id AND NOT x.expunged
        AND (x.system_flags & 8) <> 0),
    bytes = (SELECT COALESCE(SUM(x.size), 0) FROM messages x
        WHERE x.mailbox_id = mailboxes.id AND NOT x.expunged);
ALTER TABLE messages DROP COLUMN flags;
"#;

/// The v2 messages whose flags [`split_flags`] moves (version 3).
pub const V3_FLAGGED: &str = "SELECT mailbox_id, uid, flags FROM messages WHERE flags <> ''";
pub const V3_SET_FLAGS: &str =
    "UPDATE messages SET system_flags = $3, keywords = $4 WHERE mailbox_id = $1 AND uid = $2";

/// The system flags and their bits in `messages.system_flags`, in the order they are listed.
pub const SYSTEM_FLAGS: [(&str, i64); 5] = [
    ("\\Seen", 1),
    ("\\Answered", 2),
    ("\\Flagged", 4),
    ("\\Deleted", 8),
    ("\\Draft", 16),
];
pub const SEEN: i64 = 1;
pub const DELETED: i64 = 8;

/// Version 3's step in Rust, the same on both backends inside the migration's transaction
/// `$tx`: each message's old `flags` text split into the bitmask and keywords, the keywords
/// listed per mailbox, then the rest of the migration ([`V3_AFTER_FLAGS`]).
macro_rules! migrate_v3_flags {
    ($tx:ident) => {
        let rows = sqlx::query($crate::schema::V3_FLAGGED)
            .fetch_all(&mut *$tx)
            .await?;
        for row in rows {
            let mailbox_id: i64 = row.try_get("mailbox_id")?;
            let (bits, keywords) =
                $crate::schema::split_flags(&[row.try_get::<String, _>("flags")?]);
            sqlx::query($crate::schema::V3_SET_FLAGS)
                .bind(mailbox_id)
                .bind(row.try_get::<i64, _>("uid")?)
                .bind(bits)
                .bind(&keywords)
                .execute(&mut *$tx)
                .await?;
            for k in keywords.split_whitespace() {
                sqlx::query($crate::sql::mailbox::INSERT_MAILBOX_KEYWORD)
                    .bind(mailbox_id)
                    .bind(k)
                    .execute(&mut *$tx)
                    .await?;
            }
        }
        sqlx::raw_sql($crate::schema::V3_AFTER_FLAGS)
            .execute(&mut *$tx)
            .await?;
    };
}
pub(crate) use migrate_v3_flags;

/// Flags as stored: the system flags' bits, and the keywords space-separated (each once,
/// compared without case, as IMAP compares them). Other `\` words (`\Recent`, unknown ones)
/// are not stored.
pub fn split_flags<S: AsRef<str>>(flags: &[S]) -> (i64, String) {
    let mut bits = 0;
    let mut keywords: Vec<&str> = Vec::new();
    for f in flags {
        for f in f.as_ref().split_whitespace() {
            if f.starts_with('\\') {
                if let Some((_, bit)) = SYSTEM_FLAGS.iter().find(|(n, _)| n.eq_ignore_ascii_case(f))
                {
                    bits |= bit;
                }
            } else if !keywords.iter().any(|k| k.eq_ignore_ascii_case(f)) {
                keywords.push(f);
            }
        }
    }
    (bits, keywords.join(" "))
}

/// A message's stored flags after `op` with `flags` (split by [`split_flags`]); keywords
/// compare without case.
pub fn apply_flags(
    old: (i64, &str),
    op: crate::model::FlagOp,
    flags: (i64, &str),
) -> (i64, String) {
    use crate::model::FlagOp;
    let (old_bits, old_kw) = old;
    let (bits, kw) = flags;
    let has = |list: &str, k: &str| list.split_whitespace().any(|x| x.eq_ignore_ascii_case(k));
    match op {
        FlagOp::Replace => (bits, kw.to_string()),
        FlagOp::Add => {
            let mut out: Vec<&str> = old_kw.split_whitespace().collect();
            out.extend(kw.split_whitespace().filter(|k| !has(old_kw, k)));
            (old_bits | bits, out.join(" "))
        }
        FlagOp::Remove => {
            let out: Vec<&str> = old_kw.split_whitespace().filter(|k| !has(kw, k)).collect();
            (old_bits & !bits, out.join(" "))
        }
    }
}

/// The flags of a message from its stored form: system flags first, then keywords.
pub fn join_flags(bits: i64, keywords: &str) -> Vec<String> {
    SYSTEM_FLAGS
        .iter()
        .filter(|(_, b)| bits & b != 0)
        .map(|(n, _)| n.to_string())
        .chain(keywords.split_whitespace().map(str::to_string))
        .collect()
}

/// `INBOX` is case-insensitive (RFC 3501 §5.1); every other name is kept as given.
pub fn mailbox_name(name: &str) -> &str {
    if name.eq_ignore_ascii_case("INBOX") {
        "INBOX"
    } else {
        name
    }
}

/// A UIDVALIDITY for a new mailbox: the next value of a counter that only grows (it started
/// at the time of the v3 migration, or above every UIDVALIDITY then in use), so a name
/// re-created later never gets a UIDVALIDITY it had, even when the clock steps back or two
/// mailboxes are made in the same second.
pub const NEXT_UIDVALIDITY: &str =
    "UPDATE counters SET value = value + 1 WHERE name = 'uidvalidity' RETURNING value";

/// The mailboxes every new account starts with, in the account's transaction, all subscribed
/// (RFC 6154 special-use attributes).
pub const DEFAULT_MAILBOXES: [(&str, Option<&str>); 6] = [
    ("INBOX", None),
    ("Drafts", Some("\\Drafts")),
    ("Sent", Some("\\Sent")),
    ("Trash", Some("\\Trash")),
    ("Junk", Some("\\Junk")),
    ("Archive", Some("\\Archive")),
];

/// The domain an alias key (`a@d` or `@d`) belongs to.
pub fn alias_domain(address: &str) -> &str {
    match address.strip_prefix('@') {
        Some(d) => d,
        None => crate::address::domain_of(address),
    }
}
