//! The embedded store: one SQLite file in WAL mode, `synchronous = FULL`.
//!
//! Writes go through one connection per process and start with `BEGIN IMMEDIATE`, so a
//! transaction holds the database's write lock from its first statement: UID allocation is a
//! read-modify-write that no other writer, in this process or another, can interleave with.
//! Other processes on the same machine wait on SQLite's busy timeout. Reads use a small pool.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use tokio::sync::{mpsc, oneshot};

use crate::error::StoreError;
use crate::model::*;
use crate::schema;
use crate::store::{BlobWrite, Result, Store};

mod group_commit;
mod reader;

use group_commit::{GROUP_MAX, Job, OVERLAP_MAX_BYTES, group_committer};
use reader::Readers;

pub struct SqliteStore {
    write: SqlitePool,
    read: SqlitePool,
    /// The reads on IMAP's hot paths, synchronous on the caller's thread (`reader.rs`).
    readers: std::sync::Arc<Readers>,
    /// Deliveries and appends, committed in groups by [`group_committer`].
    jobs: mpsc::Sender<Job>,
}

crate::rows::row_decoders!(SqliteRow);
crate::sql::limits::impl_limits!(SqliteStore);
crate::sql::cluster::impl_cluster!(SqliteStore);
// Every login reads its account: on the caller's thread (`reader.rs`).
crate::sql::directory::impl_directory!(SqliteStore, sqlx::SqliteConnection, own_reads, {
    async fn get_account(&self, address: &str) -> Result<Option<Account>> {
        self.readers.read(|c| reader::get_account(c, address))
    }
});
crate::sql::queue::impl_queue!(SqliteStore, sqlx::SqliteConnection);

impl crate::sql::Dialect for SqliteStore {
    const FOR_UPDATE: &str = "";
    const SKIP_LOCKED: &str = "";
    const TEXT_MATCH: &str = "SELECT k.blob_id FROM message_text_fts f \
         JOIN message_text k ON k.id = f.rowid WHERE message_text_fts MATCH $2";
}

/// The full-text index on SQLite: an FTS5 table with the trigram tokenizer (contentless: only
/// the index is kept), its rows keyed by `message_text`'s id for a blob.
impl SqliteStore {
    /// Keeps a blob's text in the index unless it has some already.
    pub(crate) async fn insert_text(
        conn: &mut sqlx::SqliteConnection,
        blob_id: &str,
        text: &str,
    ) -> Result<()> {
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO message_text (blob_id) VALUES ($1) ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(blob_id)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(id) = id {
            sqlx::query("INSERT INTO message_text_fts (rowid, text) VALUES ($1, $2)")
                .bind(id)
                .bind(text)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    /// The FTS5 query for messages whose text may hold `needle`: the needle as one quoted
    /// string (a phrase of its trigrams, which holds exactly when the text has it as a
    /// substring, without regard to case). `None` for needles of fewer than 3 characters,
    /// which a trigram index cannot look up.
    pub(crate) fn text_query(needle: &str) -> Option<String> {
        let folded = crate::sql::mailbox::fold(needle);
        (folded.chars().count() >= 3).then(|| format!("\"{}\"", folded.replace('"', "\"\"")))
    }
}

impl SqliteStore {
    /// Opens (creating if needed) `sqlite:PATH` and applies migrations.
    pub async fn open(url: &str) -> Result<Self> {
        let path = url.strip_prefix("sqlite:").unwrap_or(url);
        let path = path.strip_prefix("//").unwrap_or(path);
        if path.is_empty() {
            return Err(StoreError::BadUrl {
                url: url.into(),
                reason: "no path".into(),
            });
        }
        let path = PathBuf::from(path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Unreachable {
                url: url.into(),
                reason: format!("cannot create {}: {e}", dir.display()),
            })?;
        }
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(|e| StoreError::BadUrl {
                url: url.into(),
                reason: e.to_string(),
            })?
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(60))
            .foreign_keys(true)
            // Reads of large mailboxes (IMAP SELECT, SORT, THREAD of 100,000 messages) go
            // through the OS page cache by memory map instead of a pread per page; each
            // connection's own page cache stays bounded at 8 MiB.
            .pragma("mmap_size", "268435456")
            .pragma("cache_size", "-8192")
            .row_buffer_size(4096);
        let unreachable = |e: sqlx::Error| StoreError::Unreachable {
            url: url.into(),
            reason: e.to_string(),
        };
        // A connection to a local file cannot go stale, so no ping before each use (that would
        // be one more round trip to sqlx's connection thread per query).
        let write = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(120))
            .connect_with(options.clone())
            .await
            .map_err(unreachable)?;
        let read = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(options.read_only(false))
            .await
            .map_err(unreachable)?;
        let (jobs, rx) = mpsc::channel(4 * GROUP_MAX);
        tokio::spawn(group_committer(write.clone(), rx));
        let store = Self {
            write,
            read,
            readers: std::sync::Arc::new(Readers::new(path)),
            jobs,
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn tx(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.write.begin_with("BEGIN IMMEDIATE").await?)
    }

    async fn migrate(&self) -> Result<()> {
        let mut tx = self.tx().await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied INTEGER NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        let current: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
                .fetch_one(&mut *tx)
                .await?;
        if current > schema::SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                found: current,
                supported: schema::SCHEMA_VERSION,
            });
        }
        for (version, sql) in schema::SQLITE.iter().filter(|(v, _)| *v > current) {
            sqlx::raw_sql(sql).execute(&mut *tx).await?;
            if *version == 3 {
                crate::schema::migrate_v3_flags!(tx);
            }
            sqlx::query("INSERT INTO schema_migrations (version, applied) VALUES (?, ?)")
                .bind(version)
                .bind(now())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn submit(&self, job: Job) -> Result<()> {
        self.jobs
            .send(job)
            .await
            .map_err(|_| StoreError::CommitFailed("the committer stopped".into()))
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn transfer_access(&self) -> crate::transfer::Access<'_> {
        crate::transfer::Access(crate::transfer::Pools::Sqlite {
            read: &self.read,
            write: &self.write,
        })
    }
}

// Message writes go to the group committer (`group_commit.rs`), which runs the shared
// `deliver_in`, `insert_messages`, `set_flags_in` and `expunge_in` for each job inside its
// transaction. The reads IMAP makes at nearly every command run on the caller's thread
// (`reader.rs`).
crate::sql::mailbox::impl_mailboxes!(SqliteStore, sqlx::SqliteConnection, own_reads, {
    async fn get_mailbox(&self, account_id: i64, name: &str) -> Result<Option<Mailbox>> {
        self.readers
            .read(|c| reader::get_mailbox(c, account_id, name))
    }

    async fn list_mailboxes(&self, account_id: i64) -> Result<Vec<Mailbox>> {
        self.readers.read(|c| reader::list_mailboxes(c, account_id))
    }

    async fn mailbox_by_id(&self, mailbox_id: i64) -> Result<Option<Mailbox>> {
        self.readers.read(|c| reader::mailbox_by_id(c, mailbox_id))
    }

    async fn mailbox_status(&self, account_id: i64) -> Result<Vec<MailboxStatus>> {
        self.readers.read(|c| reader::mailbox_status(c, account_id))
    }

    async fn status_of(&self, mailbox_id: i64) -> Result<MailboxStatus> {
        self.readers.read(|c| reader::status_of(c, mailbox_id))
    }

    /// Read here; a claim, when there is something to claim, joins the group commit (its
    /// transaction holds the write lock, so the claim reads and moves `recent_from` at once).
    async fn recent_from(&self, mailbox_id: i64, claim: bool) -> Result<(u32, u32)> {
        let uid = |v: i64| v.clamp(0, i64::from(u32::MAX)) as u32;
        let (from, next) = self.readers.read(|c| reader::recent_from(c, mailbox_id))?;
        if !claim {
            return Ok((uid(from), u32::MAX));
        }
        if next <= from {
            return Ok((uid(from), uid(from)));
        }
        let (reply, rx) = oneshot::channel();
        self.submit(Job::ClaimRecent { mailbox_id, reply }).await?;
        rx.await
            .map_err(|_| StoreError::CommitFailed("the committer stopped".into()))?
    }

    async fn mailbox_versions(&self, mailbox_ids: &[i64]) -> Result<Vec<(i64, i64)>> {
        self.readers
            .read(|c| reader::mailbox_versions(c, mailbox_ids))
    }

    async fn fetch_messages(
        &self,
        mailbox_id: i64,
        first_uid: u32,
        last_uid: u32,
        limit: u32,
    ) -> Result<Vec<(Message, Option<String>)>> {
        if limit > reader::LONG_READ_ROWS {
            return self
                .readers
                .read_off_thread(move |c| {
                    reader::fetch_messages(c, mailbox_id, first_uid, last_uid, limit)
                })
                .await;
        }
        self.readers
            .read(|c| reader::fetch_messages(c, mailbox_id, first_uid, last_uid, limit))
    }

    async fn list_messages(&self, mailbox_id: i64, first: u32, last: u32) -> Result<Vec<Message>> {
        // A whole mailbox's list (SELECT): off the runtime's thread.
        self.readers
            .read_off_thread(move |c| reader::list_messages(c, mailbox_id, first, last))
            .await
    }

    async fn changes_since(&self, mailbox_id: i64, modseq: i64) -> Result<Changes> {
        self.readers
            .read(|c| reader::changes_since(c, mailbox_id, modseq))
    }

    async fn mailbox_keywords(&self, mailbox_id: i64) -> Result<Vec<String>> {
        self.readers
            .read(|c| reader::mailbox_keywords(c, mailbox_id))
    }

    async fn message_meta(&self, blob_id: &str) -> Result<Option<String>> {
        self.readers.read(|c| reader::message_meta(c, blob_id))
    }

    async fn blob_get(&self, id: &str) -> Result<Option<Vec<u8>>> {
        self.readers.read(|c| reader::blob_get(c, id))
    }

    async fn subscriptions(&self, account_id: i64) -> Result<Vec<String>> {
        self.readers.read(|c| reader::subscriptions(c, account_id))
    }

    async fn deliver(&self, d: &Delivery) -> Result<Vec<Delivered>> {
        let (reply, rx) = oneshot::channel();
        self.submit(Job::Deliver {
            delivery: d.clone(),
            blob_ready: None,
            blob_bytes: None,
            reply,
        })
        .await?;
        rx.await
            .map_err(|_| StoreError::CommitFailed("the committer stopped".into()))?
    }

    /// The committer prepares the rows while the blob is still being written here, and
    /// commits them once it is on disk. Not for large messages: the committer's group would
    /// wait for their long write, and every other delivery of this process with it.
    async fn deliver_with_blob(
        &self,
        d: &Delivery,
        blob_write: BlobWrite<'_>,
    ) -> Result<Vec<Delivered>> {
        if d.size > OVERLAP_MAX_BYTES {
            blob_write.await?;
            return self.deliver(d).await;
        }
        let (ready_tx, ready) = oneshot::channel();
        let (reply, rx) = oneshot::channel();
        self.submit(Job::Deliver {
            delivery: d.clone(),
            blob_ready: Some(ready),
            blob_bytes: None,
            reply,
        })
        .await?;
        let _ = ready_tx.send(blob_write.await);
        rx.await
            .map_err(|_| StoreError::CommitFailed("the committer stopped".into()))?
    }

    /// The blob row joins the delivery's job, so it shares the group's one commit.
    async fn deliver_with_bytes(&self, d: &Delivery, bytes: &[u8]) -> Result<Vec<Delivered>> {
        let (reply, rx) = oneshot::channel();
        self.submit(Job::Deliver {
            delivery: d.clone(),
            blob_ready: None,
            blob_bytes: Some(bytes.to_vec()),
            reply,
        })
        .await?;
        rx.await
            .map_err(|_| StoreError::CommitFailed("the committer stopped".into()))?
    }

    /// Flag changes join the group commit: one WAL fsync for every write waiting.
    async fn set_flags(
        &self,
        mailbox_id: i64,
        uids: &[u32],
        op: FlagOp,
        flags: &[String],
        unchanged_since: Option<i64>,
    ) -> Result<FlagOutcome> {
        if uids.is_empty() {
            return Ok(FlagOutcome::default());
        }
        let (reply, rx) = oneshot::channel();
        self.submit(Job::SetFlags {
            mailbox_id,
            uids: uids.to_vec(),
            op,
            flags: flags.to_vec(),
            unchanged_since,
            reply,
        })
        .await?;
        rx.await
            .map_err(|_| StoreError::CommitFailed("the committer stopped".into()))?
    }

    /// Expunges join the group commit too.
    async fn expunge(&self, mailbox_id: i64, uids: &[u32]) -> Result<u64> {
        if uids.is_empty() {
            return Ok(0);
        }
        let (reply, rx) = oneshot::channel();
        self.submit(Job::Expunge {
            mailbox_id,
            uids: uids.to_vec(),
            reply,
        })
        .await?;
        rx.await
            .map_err(|_| StoreError::CommitFailed("the committer stopped".into()))?
    }

    async fn append_many_with_text(
        &self,
        mailbox_id: i64,
        messages: &[NewMessage],
        texts: &[Option<String>],
    ) -> Result<Vec<u32>> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, rx) = oneshot::channel();
        self.submit(Job::Append {
            mailbox_id,
            messages: messages.to_vec(),
            texts: texts.to_vec(),
            reply,
        })
        .await?;
        rx.await
            .map_err(|_| StoreError::CommitFailed("the committer stopped".into()))?
    }

    async fn blobs_in_use(&self, ids: &[String]) -> Result<Vec<String>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let marks = vec!["?"; ids.len()].join(", ");
        let sql = format!(
            "SELECT blob_id FROM messages WHERE blob_id IN ({marks}) AND NOT expunged \
             UNION SELECT blob_id FROM queue WHERE blob_id IN ({marks})"
        );
        let mut q = sqlx::query_scalar::<_, String>(&sql);
        for id in ids.iter().chain(ids.iter()) {
            q = q.bind(id);
        }
        Ok(q.fetch_all(&self.write).await?)
    }
});
