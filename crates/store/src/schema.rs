//! Versioned schema migrations, one list per backend. A migration is never edited once released:
//! changes are new entries. A store whose schema is newer than [`SCHEMA_VERSION`] is refused.

/// The schema version this binary knows.
pub const SCHEMA_VERSION: i64 = 2;

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
];

/// Flags as stored: space-separated.
pub fn flags_to_text(flags: &[String]) -> String {
    let mut out: Vec<&str> = Vec::with_capacity(flags.len());
    for f in flags {
        let f = f.trim();
        if !f.is_empty() && !out.iter().any(|o| o.eq_ignore_ascii_case(f)) {
            out.push(f);
        }
    }
    out.join(" ")
}

pub fn flags_from_text(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_string).collect()
}

/// A UIDVALIDITY for a new mailbox: seconds since the epoch, which never repeats for a name
/// re-created later.
/// `INBOX` is case-insensitive (RFC 3501 §5.1); every other name is kept as given.
pub fn mailbox_name(name: &str) -> &str {
    if name.eq_ignore_ascii_case("INBOX") {
        "INBOX"
    } else {
        name
    }
}

pub fn new_uidvalidity() -> i64 {
    crate::model::now().clamp(1, u32::MAX as i64)
}

/// The domain an alias key (`a@d` or `@d`) belongs to.
pub fn alias_domain(address: &str) -> &str {
    match address.strip_prefix('@') {
        Some(d) => d,
        None => crate::address::domain_of(address),
    }
}
