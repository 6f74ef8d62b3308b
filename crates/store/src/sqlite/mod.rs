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
use sqlx::{Row, Sqlite, SqliteConnection, Transaction};
use tokio::sync::{mpsc, oneshot};

use crate::error::StoreError;
use crate::model::*;
use crate::schema::{self, flags_from_text, flags_to_text, mailbox_name, new_uidvalidity};
use crate::store::{BlobWrite, Result, Store};

mod group_commit;

use group_commit::{GROUP_MAX, Job, OVERLAP_MAX_BYTES, group_committer};

pub struct SqliteStore {
    write: SqlitePool,
    read: SqlitePool,
    /// Deliveries and appends, committed in groups by [`group_committer`].
    jobs: mpsc::Sender<Job>,
}

crate::rows::row_decoders!(SqliteRow);
crate::sql::limits::impl_limits!(SqliteStore);
crate::sql::cluster::impl_cluster!(SqliteStore);
crate::sql::directory::impl_directory!(SqliteStore, sqlx::SqliteConnection);
crate::sql::queue::impl_queue!(SqliteStore, sqlx::SqliteConnection);

impl crate::sql::Dialect for SqliteStore {
    const FOR_UPDATE: &str = "";
    const SKIP_LOCKED: &str = "";
}

const MAILBOX_COLS: &str =
    "id, account_id, name, special_use, subscribed, uidvalidity, uidnext, highestmodseq";

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
            .foreign_keys(true);
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
        let store = Self { write, read, jobs };
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
            sqlx::query("INSERT INTO schema_migrations (version, applied) VALUES (?, ?)")
                .bind(version)
                .bind(now())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn mailbox_id_in(
        conn: &mut SqliteConnection,
        account_id: i64,
        name: &str,
    ) -> Result<i64> {
        let name = mailbox_name(name);
        if let Some(id) = sqlx::query_scalar::<_, i64>(
            "SELECT id FROM mailboxes WHERE account_id = ? AND name = ?",
        )
        .bind(account_id)
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?
        {
            return Ok(id);
        }
        sqlx::query(
            "INSERT INTO mailboxes (account_id, name, uidvalidity) VALUES (?, ?, ?) \
             ON CONFLICT (account_id, name) DO NOTHING",
        )
        .bind(account_id)
        .bind(name)
        .bind(new_uidvalidity())
        .execute(&mut *conn)
        .await
        .map_err(|e| {
            if is_fk(&e) {
                StoreError::AccountNotFound(format!("id {account_id}"))
            } else {
                StoreError::from(e)
            }
        })?;
        Ok(
            sqlx::query_scalar("SELECT id FROM mailboxes WHERE account_id = ? AND name = ?")
                .bind(account_id)
                .bind(name)
                .fetch_one(&mut *conn)
                .await?,
        )
    }

    /// Takes the next UID and MODSEQ of a mailbox and inserts the message row.
    async fn insert_message(
        conn: &mut SqliteConnection,
        mailbox_id: i64,
        blob_id: &str,
        size: i64,
        internal_date: Timestamp,
        flags: &[String],
    ) -> Result<u32> {
        let row = sqlx::query(
            "UPDATE mailboxes SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1 \
             WHERE id = ? RETURNING uidnext - 1 AS uid, highestmodseq, account_id",
        )
        .bind(mailbox_id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::MailboxNotFound(format!("id {mailbox_id}")))?;
        let uid: i64 = row.try_get("uid")?;
        let modseq: i64 = row.try_get("highestmodseq")?;
        let account_id: i64 = row.try_get("account_id")?;
        sqlx::query(
            "INSERT INTO messages (mailbox_id, uid, modseq, flags, internal_date, size, blob_id) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(mailbox_id)
        .bind(uid)
        .bind(modseq)
        .bind(flags_to_text(flags))
        .bind(internal_date)
        .bind(size)
        .bind(blob_id)
        .execute(&mut *conn)
        .await?;
        sqlx::query("UPDATE accounts SET used_bytes = used_bytes + ? WHERE id = ?")
            .bind(size)
            .bind(account_id)
            .execute(&mut *conn)
            .await?;
        Ok(uid as u32)
    }

    async fn submit(&self, job: Job) -> Result<()> {
        self.jobs
            .send(job)
            .await
            .map_err(|_| StoreError::CommitFailed("the committer stopped".into()))
    }

    async fn insert_blob(conn: &mut SqliteConnection, id: &str, bytes: &[u8]) -> Result<()> {
        sqlx::query(
            "INSERT INTO blobs (id, data, created) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(bytes)
        .bind(now())
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// One delivery's rows, inside the caller's transaction.
    async fn deliver_in(conn: &mut SqliteConnection, d: &Delivery) -> Result<Vec<Delivered>> {
        let mut out = Vec::with_capacity(d.targets.len());
        for t in &d.targets {
            let mailbox_id = Self::mailbox_id_in(conn, t.account_id, &t.mailbox).await?;
            let uid = Self::insert_message(
                conn,
                mailbox_id,
                &d.blob_id,
                d.size,
                d.internal_date,
                &t.flags,
            )
            .await?;
            out.push(Delivered { mailbox_id, uid });
        }
        for q in &d.queue {
            Self::insert_queue(conn, &d.blob_id, d.size, q).await?;
        }
        Ok(out)
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn create_mailbox(
        &self,
        account_id: i64,
        name: &str,
        special_use: Option<&str>,
    ) -> Result<Mailbox> {
        let name = mailbox_name(name);
        let row = sqlx::query(&format!(
            "INSERT INTO mailboxes (account_id, name, special_use, uidvalidity) VALUES (?, ?, ?, ?) \
             RETURNING {MAILBOX_COLS}"
        ))
        .bind(account_id)
        .bind(name)
        .bind(special_use)
        .bind(new_uidvalidity())
        .fetch_one(&self.write)
        .await
        .map_err(|e| {
            if is_fk(&e) {
                StoreError::AccountNotFound(format!("id {account_id}"))
            } else {
                map_unique(e, || StoreError::MailboxExists(name.into()))
            }
        })?;
        mailbox_from(&row)
    }

    async fn get_mailbox(&self, account_id: i64, name: &str) -> Result<Option<Mailbox>> {
        let row = sqlx::query(&format!(
            "SELECT {MAILBOX_COLS} FROM mailboxes WHERE account_id = ? AND name = ?"
        ))
        .bind(account_id)
        .bind(mailbox_name(name))
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(mailbox_from).transpose()
    }

    async fn list_mailboxes(&self, account_id: i64) -> Result<Vec<Mailbox>> {
        let rows = sqlx::query(&format!(
            "SELECT {MAILBOX_COLS} FROM mailboxes WHERE account_id = ? ORDER BY name"
        ))
        .bind(account_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(mailbox_from).collect()
    }

    async fn mailbox_status(&self, account_id: i64) -> Result<Vec<MailboxStatus>> {
        let rows = sqlx::query(
            "SELECT m.name, m.uidnext, m.uidvalidity, \
               COUNT(x.uid) AS messages, \
               COALESCE(SUM(CASE WHEN x.uid IS NOT NULL AND instr(' ' || x.flags || ' ', ' \\Seen ') = 0 THEN 1 ELSE 0 END), 0) AS unseen, \
               COALESCE(SUM(x.size), 0) AS bytes \
             FROM mailboxes m LEFT JOIN messages x ON x.mailbox_id = m.id AND x.expunged = 0 \
             WHERE m.account_id = ? GROUP BY m.id ORDER BY m.name",
        )
        .bind(account_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(MailboxStatus {
                    name: r.try_get("name")?,
                    messages: r.try_get("messages")?,
                    unseen: r.try_get("unseen")?,
                    uidnext: r.try_get::<i64, _>("uidnext")? as u32,
                    uidvalidity: r.try_get::<i64, _>("uidvalidity")? as u32,
                    bytes: r.try_get("bytes")?,
                })
            })
            .collect()
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

    async fn append(
        &self,
        mailbox_id: i64,
        blob_id: &str,
        size: i64,
        internal_date: Timestamp,
        flags: &[String],
    ) -> Result<u32> {
        let (reply, rx) = oneshot::channel();
        self.submit(Job::Append {
            mailbox_id,
            blob_id: blob_id.into(),
            size,
            internal_date,
            flags: flags.to_vec(),
            reply,
        })
        .await?;
        rx.await
            .map_err(|_| StoreError::CommitFailed("the committer stopped".into()))?
    }

    async fn list_messages(&self, mailbox_id: i64, first: u32, last: u32) -> Result<Vec<Message>> {
        let rows = sqlx::query(
            "SELECT mailbox_id, uid, modseq, flags, internal_date, size, blob_id, expunged \
             FROM messages WHERE mailbox_id = ? AND uid >= ? AND uid <= ? AND expunged = 0 ORDER BY uid",
        )
        .bind(mailbox_id)
        .bind(first as i64)
        .bind(last as i64)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                let flags: String = r.try_get("flags")?;
                Ok(Message {
                    mailbox_id: r.try_get("mailbox_id")?,
                    uid: r.try_get::<i64, _>("uid")? as u32,
                    modseq: r.try_get("modseq")?,
                    flags: flags_from_text(&flags),
                    internal_date: r.try_get("internal_date")?,
                    size: r.try_get("size")?,
                    blob_id: r.try_get("blob_id")?,
                    expunged: r.try_get("expunged")?,
                })
            })
            .collect()
    }

    async fn blob_put(&self, id: &str, bytes: &[u8]) -> Result<()> {
        let mut conn = self.write.acquire().await?;
        Self::insert_blob(&mut conn, id, bytes).await
    }

    async fn blob_get(&self, id: &str) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar("SELECT data FROM blobs WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.read)
            .await?)
    }

    async fn blob_delete(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM blobs WHERE id = ?")
            .bind(id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn blob_list(&self) -> Result<Vec<BlobEntry>> {
        let rows = sqlx::query("SELECT id, created FROM blobs ORDER BY id")
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(BlobEntry {
                    id: r.try_get("id")?,
                    created: r.try_get("created")?,
                })
            })
            .collect()
    }

    async fn blobs_in_use(&self, ids: &[String]) -> Result<Vec<String>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let marks = vec!["?"; ids.len()].join(", ");
        let sql = format!(
            "SELECT blob_id FROM messages WHERE blob_id IN ({marks}) \
             UNION SELECT blob_id FROM queue WHERE blob_id IN ({marks})"
        );
        let mut q = sqlx::query_scalar::<_, String>(&sql);
        for id in ids.iter().chain(ids.iter()) {
            q = q.bind(id);
        }
        Ok(q.fetch_all(&self.write).await?)
    }
}
