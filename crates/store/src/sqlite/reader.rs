//! The SQLite store's reads on IMAP's hot paths, run on the caller's thread through rusqlite.
//!
//! A read through sqlx's SQLite driver is a message to the connection's own worker thread and
//! rows sent back one by one: two thread switches or more per query, which under IMAP load cost
//! more than the query itself (most of these reads take microseconds: one row by primary key).
//! These reads instead take a connection of their own from [`Readers`] and run the statement
//! synchronously, without leaving the task's thread. rusqlite links the same `libsqlite3-sys`
//! as sqlx (one bundled SQLite in the process, so its file locks are shared correctly), on the
//! same database file in WAL mode: a reader never waits for the writer, and sees every
//! transaction committed before it started, as sqlx's read pool does.
//!
//! The SQL texts are the shared ones of [`crate::sql::mailbox`]; both backends bind `$N` (here
//! by name, so a text may use its parameters in any order), except for the message lists,
//! which PostgreSQL and sqlx read as one aggregated text per page and this module reads as
//! rows. Reads that answer in a few rows run on the caller's thread; scans of thousands of
//! rows (a SELECT's list, a SORT's pages) on the blocking pool ([`Readers::read_off_thread`]),
//! so they do not hold up the other sessions on the caller's runtime thread.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, ToSql};

use crate::error::StoreError;
use crate::model::{Account, Changes, FlagChange, Mailbox, MailboxStatus, Message};
use crate::schema::{join_flags, mailbox_name};
use crate::sql::directory::ACCOUNT_COLS;
use crate::sql::mailbox::*;
use crate::store::Result;

/// Connections kept open between reads; a burst past it opens more, closed after use.
const IDLE_MAX: usize = 8;

/// Reads a page of more rows than this off the caller's thread ([`Readers::read_off_thread`]).
pub(crate) const LONG_READ_ROWS: u32 = 1024;

/// Read connections to one SQLite file, opened on first need and kept for the next read.
pub(crate) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::SqliteRead(e.to_string())
    }
}

impl Readers {
    pub(crate) fn new(path: PathBuf) -> Self {
        Readers {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(60))?;
        // As the sqlx pools' connections (see `SqliteStore::open`); `query_only` makes sure
        // nothing here ever writes.
        conn.execute_batch(
            "PRAGMA query_only = ON; PRAGMA mmap_size = 268435456; PRAGMA cache_size = -8192;",
        )?;
        conn.set_prepared_statement_cache_capacity(32);
        Ok(conn)
    }

    /// Runs `read` on an idle connection (or a new one), then keeps the connection for the
    /// next read.
    pub(crate) fn read<T>(&self, read: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.open()?,
        };
        let out = read(&conn);
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.len() < IDLE_MAX {
            idle.push(conn);
        }
        out
    }

    /// Runs `read` as [`Readers::read`] does, on a thread of the blocking pool: for scans whose
    /// rows run into the thousands (a SELECT's message list, a SORT's pages), which would
    /// otherwise hold up every session sharing the caller's runtime thread for milliseconds.
    pub(crate) async fn read_off_thread<T: Send + 'static>(
        self: &std::sync::Arc<Self>,
        read: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let readers = self.clone();
        tokio::task::spawn_blocking(move || readers.read(read))
            .await
            .map_err(|e| StoreError::SqliteRead(format!("read task failed: {e}")))?
    }
}

/// The connection's cached statement for `sql`; each read is a `trace` event of the target
/// `mailfleet_store::sql` (for counting a workload's reads).
fn stmt<'c>(c: &'c Connection, sql: &str) -> rusqlite::Result<rusqlite::CachedStatement<'c>> {
    tracing::trace!(target: "mailfleet_store::sql", sql, "sqlite read");
    c.prepare_cached(sql)
}

fn mailbox_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<Mailbox> {
    Ok(Mailbox {
        id: r.get("id")?,
        account_id: r.get("account_id")?,
        name: r.get("name")?,
        special_use: r.get("special_use")?,
        subscribed: r.get("subscribed")?,
        uidvalidity: r.get::<_, i64>("uidvalidity")? as u32,
        uidnext: r.get::<_, i64>("uidnext")? as u32,
        highestmodseq: r.get("highestmodseq")?,
    })
}

fn status_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<MailboxStatus> {
    Ok(MailboxStatus {
        name: r.get("name")?,
        messages: r.get("messages")?,
        unseen: r.get("unseen")?,
        deleted: r.get("deleted")?,
        uidnext: r.get::<_, i64>("uidnext")? as u32,
        uidvalidity: r.get::<_, i64>("uidvalidity")? as u32,
        bytes: r.get("bytes")?,
        highestmodseq: r.get("highestmodseq")?,
        recent: r.get("recent")?,
    })
}

pub(crate) fn get_mailbox(c: &Connection, account_id: i64, name: &str) -> Result<Option<Mailbox>> {
    let sql = format!("SELECT {MAILBOX_COLS} FROM mailboxes WHERE account_id = $1 AND name = $2");
    let name = mailbox_name(name);
    let params: [(&str, &dyn ToSql); 2] = [("$1", &account_id), ("$2", &name)];
    Ok(stmt(c, &sql)?
        .query_row(&params[..], mailbox_from)
        .optional()?)
}

pub(crate) fn mailbox_by_id(c: &Connection, mailbox_id: i64) -> Result<Option<Mailbox>> {
    let sql = format!("SELECT {MAILBOX_COLS} FROM mailboxes WHERE id = $1");
    let params: [(&str, &dyn ToSql); 1] = [("$1", &mailbox_id)];
    Ok(stmt(c, &sql)?
        .query_row(&params[..], mailbox_from)
        .optional()?)
}

pub(crate) fn list_mailboxes(c: &Connection, account_id: i64) -> Result<Vec<Mailbox>> {
    let sql = format!("SELECT {MAILBOX_COLS} FROM mailboxes WHERE account_id = $1 ORDER BY name");
    let params: [(&str, &dyn ToSql); 1] = [("$1", &account_id)];
    let mut statement = stmt(c, &sql)?;
    let rows = statement.query_map(&params[..], mailbox_from)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub(crate) fn status_of(c: &Connection, mailbox_id: i64) -> Result<MailboxStatus> {
    let sql = format!("{STATUS_COLS} {STATUS_OF}");
    let params: [(&str, &dyn ToSql); 1] = [("$1", &mailbox_id)];
    stmt(c, &sql)?
        .query_row(&params[..], status_from)
        .optional()?
        .ok_or_else(|| StoreError::MailboxNotFound(format!("id {mailbox_id}")))
}

pub(crate) fn mailbox_status(c: &Connection, account_id: i64) -> Result<Vec<MailboxStatus>> {
    let sql = format!("{STATUS_COLS} {MAILBOX_STATUS}");
    let params: [(&str, &dyn ToSql); 1] = [("$1", &account_id)];
    let mut statement = stmt(c, &sql)?;
    let rows = statement.query_map(&params[..], status_from)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// `(recent_from, uidnext)` of a mailbox ([`RECENT_FROM`]).
pub(crate) fn recent_from(c: &Connection, mailbox_id: i64) -> Result<(i64, i64)> {
    let params: [(&str, &dyn ToSql); 1] = [("$1", &mailbox_id)];
    stmt(c, RECENT_FROM)?
        .query_row(&params[..], |r| {
            Ok((r.get("recent_from")?, r.get("uidnext")?))
        })
        .optional()?
        .ok_or_else(|| StoreError::MailboxNotFound(format!("id {mailbox_id}")))
}

pub(crate) fn mailbox_versions(c: &Connection, mailbox_ids: &[i64]) -> Result<Vec<(i64, i64)>> {
    let mut out = Vec::with_capacity(mailbox_ids.len());
    for chunk in mailbox_ids.chunks(VERSIONS_CHUNK) {
        let sql = format!(
            "{MAILBOX_VERSIONS} IN ({})",
            crate::sql::placeholders(1, chunk.len())
        );
        let names: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let params: Vec<(&str, &dyn ToSql)> = names
            .iter()
            .zip(chunk)
            .map(|(n, id)| (n.as_str(), id as &dyn ToSql))
            .collect();
        let mut statement = stmt(c, &sql)?;
        let rows =
            statement.query_map(&params[..], |r| Ok((r.get("id")?, r.get("highestmodseq")?)))?;
        for row in rows {
            out.push(row?);
        }
    }
    Ok(out)
}

pub(crate) fn changes_since(c: &Connection, mailbox_id: i64, modseq: i64) -> Result<Changes> {
    // One read transaction for both statements, so the floor is read from the same snapshot
    // as the rows (sqlx's two reads, one after the other, only ever see it newer).
    let tx = c.unchecked_transaction()?;
    let mut out = Changes::default();
    {
        let params: [(&str, &dyn ToSql); 2] = [("$1", &mailbox_id), ("$2", &modseq)];
        let mut statement = stmt(&tx, CHANGES_SINCE)?;
        let mut rows = statement.query(&params[..])?;
        while let Some(r) = rows.next()? {
            let uid = r.get::<_, i64>("uid")? as u32;
            let row_modseq: i64 = r.get("modseq")?;
            out.highest = out.highest.max(row_modseq);
            if r.get::<_, bool>("expunged")? {
                out.expunged.push(uid);
            } else {
                let keywords: String = r.get("keywords")?;
                out.changed.push(FlagChange {
                    uid,
                    flags: join_flags(r.get("system_flags")?, &keywords),
                    modseq: row_modseq,
                });
            }
        }
        let params: [(&str, &dyn ToSql); 1] = [("$1", &mailbox_id)];
        out.purged_up_to = tx
            .prepare_cached(PURGED_MODSEQ)?
            .query_row(&params[..], |r| r.get(0))
            .optional()?
            .unwrap_or(0);
    }
    tx.finish()?;
    Ok(out)
}

pub(crate) fn mailbox_keywords(c: &Connection, mailbox_id: i64) -> Result<Vec<String>> {
    let params: [(&str, &dyn ToSql); 1] = [("$1", &mailbox_id)];
    let mut statement = stmt(c, MAILBOX_KEYWORDS)?;
    let rows = statement.query_map(&params[..], |r| r.get(0))?;
    let keywords = rows.collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(normalize_keywords(keywords))
}

pub(crate) fn message_meta(c: &Connection, blob_id: &str) -> Result<Option<String>> {
    let params: [(&str, &dyn ToSql); 1] = [("$1", &blob_id)];
    Ok(stmt(c, GET_META)?
        .query_row(&params[..], |r| r.get(0))
        .optional()?)
}

pub(crate) fn blob_get(c: &Connection, id: &str) -> Result<Option<Vec<u8>>> {
    let params: [(&str, &dyn ToSql); 1] = [("$1", &id)];
    Ok(stmt(c, BLOB_GET)?
        .query_row(&params[..], |r| r.get(0))
        .optional()?)
}

/// A page of messages with their metadata, by UID: [`FETCH_MESSAGES_TEXT`]'s rows, read as rows.
/// Here rows cost no thread switch, and the aggregate's one long text (megabytes for a page of
/// 4,096, grown by copying) would cost more than it saves.
const FETCH_MESSAGES_ROWS: &str = "SELECT m.uid, m.modseq, m.system_flags, m.internal_date, \
     m.size, m.blob_id, m.keywords, m.expunged, mm.meta \
     FROM messages m LEFT JOIN message_meta mm ON mm.blob_id = m.blob_id \
     WHERE m.mailbox_id = $1 AND m.uid >= $2 AND m.uid <= $3 ORDER BY m.uid LIMIT $4";

/// The messages of a mailbox with `$2 <= uid <= $3`, not expunged, by UID:
/// [`LIST_MESSAGES_TEXT`]'s rows, read as rows and without pages.
const LIST_MESSAGES_ROWS: &str = "SELECT uid, modseq, system_flags, internal_date, size, \
     blob_id, keywords, expunged FROM messages \
     WHERE mailbox_id = $1 AND uid >= $2 AND uid <= $3 AND NOT expunged ORDER BY uid";

/// A message from the first eight columns of [`FETCH_MESSAGES_ROWS`] or [`LIST_MESSAGES_ROWS`].
fn message_from(mailbox_id: i64, r: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    let keywords = r.get_ref(6)?.as_str_or_null()?.unwrap_or("");
    Ok(Message {
        mailbox_id,
        uid: r.get(0)?,
        modseq: r.get(1)?,
        flags: join_flags(r.get(2)?, keywords),
        internal_date: r.get(3)?,
        size: r.get(4)?,
        blob_id: r.get(5)?,
        expunged: r.get(7)?,
    })
}

pub(crate) fn fetch_messages(
    c: &Connection,
    mailbox_id: i64,
    first_uid: u32,
    last_uid: u32,
    limit: u32,
) -> Result<Vec<(Message, Option<String>)>> {
    let (first, last, limit) = (i64::from(first_uid), i64::from(last_uid), i64::from(limit));
    let params: [(&str, &dyn ToSql); 4] = [
        ("$1", &mailbox_id),
        ("$2", &first),
        ("$3", &last),
        ("$4", &limit),
    ];
    let mut statement = stmt(c, FETCH_MESSAGES_ROWS)?;
    let rows = statement.query_map(&params[..], |r| {
        Ok((message_from(mailbox_id, r)?, r.get(8)?))
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub(crate) fn list_messages(
    c: &Connection,
    mailbox_id: i64,
    first_uid: u32,
    last_uid: u32,
) -> Result<Vec<Message>> {
    let (first, last) = (i64::from(first_uid), i64::from(last_uid));
    let params: [(&str, &dyn ToSql); 3] = [("$1", &mailbox_id), ("$2", &first), ("$3", &last)];
    let mut statement = stmt(c, LIST_MESSAGES_ROWS)?;
    let rows = statement.query_map(&params[..], |r| message_from(mailbox_id, r))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub(crate) fn subscriptions(c: &Connection, account_id: i64) -> Result<Vec<String>> {
    let params: [(&str, &dyn ToSql); 1] = [("$1", &account_id)];
    let mut statement = stmt(c, SUBSCRIPTIONS)?;
    let rows = statement.query_map(&params[..], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
}

pub(crate) fn get_account(c: &Connection, address: &str) -> Result<Option<Account>> {
    let sql = format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE address = $1");
    let params: [(&str, &dyn ToSql); 1] = [("$1", &address)];
    Ok(stmt(c, &sql)?
        .query_row(&params[..], |r| {
            Ok(Account {
                id: r.get("id")?,
                address: r.get("address")?,
                password_hash: r.get("password_hash")?,
                quota_bytes: r.get("quota_bytes")?,
                used_bytes: r.get("used_bytes")?,
                shard: r.get("shard")?,
                enabled: r.get("enabled")?,
                created: r.get("created")?,
            })
        })
        .optional()?)
}
