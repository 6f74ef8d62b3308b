//! The cluster store: PostgreSQL, shared by every node.
//!
//! UID allocation is an `UPDATE ... RETURNING` on the mailbox row, whose row lock serialises
//! appenders to one mailbox across nodes; queue items are claimed with `FOR UPDATE SKIP LOCKED`.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};

use crate::error::StoreError;
use crate::model::*;
use crate::schema;
use crate::store::{Result, Store};

/// Key of the advisory lock that serialises migrations of several nodes starting at once.
const MIGRATION_LOCK: i64 = 0x6d61_696c_666c;

pub struct PostgresStore {
    write: PgPool,
    read: PgPool,
}

crate::rows::row_decoders!(PgRow);
crate::sql::limits::impl_limits!(PostgresStore);
crate::sql::cluster::impl_cluster!(PostgresStore);
crate::sql::directory::impl_directory!(PostgresStore, sqlx::PgConnection);
crate::sql::queue::impl_queue!(PostgresStore, sqlx::PgConnection);

impl crate::sql::Dialect for PostgresStore {
    const FOR_UPDATE: &str = " FOR UPDATE";
    const SKIP_LOCKED: &str = " FOR UPDATE SKIP LOCKED";
    const TEXT_MATCH: &str = "SELECT blob_id FROM message_text WHERE tsv @@ $2::tsquery";
}

/// The longest word (in bytes) the PostgreSQL text index keeps; longer ones are left out, and
/// a search word longer than this does not narrow (a lexeme may not pass 2 KB).
const MAX_TEXT_WORD: usize = 256;

/// The most bytes of words one blob's tsvector holds (PostgreSQL refuses one of 1 MB); a
/// text with more keeps no row, so that searches scan it.
const MAX_TEXT_WORDS_BYTES: usize = 1_000_000;

/// The full-text index on PostgreSQL: `message_text(blob_id, tsv)` with a GIN index on `tsv`.
/// The words are cut here rather than by `to_tsvector`, whose parser makes single tokens of
/// addresses, host names and URLs (so `ann` would not be a lexeme of `ann@example.test`): a
/// word is a longest run of alphanumeric characters ([`crate::sql::mailbox::words`]), the
/// same rule [`PostgresStore::text_query`] applies to the needle, and the lexemes go in as
/// they are (`array_to_tsvector`, no dictionary).
impl PostgresStore {
    /// Keeps a blob's words in the index unless it has some already.
    pub(crate) async fn insert_text(
        conn: &mut sqlx::PgConnection,
        blob_id: &str,
        text: &str,
    ) -> Result<()> {
        let mut words: Vec<&str> = crate::sql::mailbox::words(text)
            .filter(|w| w.len() <= MAX_TEXT_WORD)
            .collect();
        words.sort_unstable();
        words.dedup();
        if words.iter().map(|w| w.len()).sum::<usize>() > MAX_TEXT_WORDS_BYTES {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO message_text (blob_id, tsv) VALUES ($1, array_to_tsvector($2::text[])) \
             ON CONFLICT DO NOTHING",
        )
        .bind(blob_id)
        .bind(&words)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// The tsquery for messages whose text may hold `needle`: the AND of the needle's interior
    /// words (bounded by a non-word character on both sides inside the needle, so whole words
    /// of any text that holds the needle), each a quoted lexeme. `None` when the needle has no
    /// such word (of at most [`MAX_TEXT_WORD`] bytes).
    pub(crate) fn text_query(needle: &str) -> Option<String> {
        let folded = crate::sql::mailbox::fold(needle);
        let mut terms: Vec<String> = crate::sql::mailbox::interior_words(&folded)
            .filter(|w| w.len() <= MAX_TEXT_WORD)
            .map(|w| format!("'{}'", w.replace('\\', "\\\\").replace('\'', "''")))
            .collect();
        terms.sort();
        terms.dedup();
        (!terms.is_empty()).then(|| terms.join(" & "))
    }
}

impl PostgresStore {
    /// Connects to `postgres://...` and applies migrations.
    pub async fn open(url: &str) -> Result<Self> {
        let redacted = crate::redact_url(url);
        let options: PgConnectOptions =
            url.parse().map_err(|e: sqlx::Error| StoreError::BadUrl {
                url: redacted.clone(),
                reason: e.to_string(),
            })?;
        let pool = PgPoolOptions::new()
            .max_connections(32)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Unreachable {
                url: redacted.clone(),
                reason: e.to_string(),
            })?;
        let store = Self {
            write: pool.clone(),
            read: pool,
        };
        store.migrate().await?;
        Ok(store)
    }

    /// One delivery in one transaction, with its blob row when the blob is kept in the
    /// database.
    async fn deliver_one(&self, d: &Delivery, blob: Option<&[u8]>) -> Result<Vec<Delivered>> {
        let mut tx = self.tx().await?;
        if let Some(bytes) = blob {
            Self::insert_blob(&mut tx, &d.blob_id, bytes).await?;
        }
        let out = Self::deliver_in(&mut tx, d).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn tx(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self.write.begin().await?)
    }

    async fn migrate(&self) -> Result<()> {
        let mut tx = self.tx().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied BIGINT NOT NULL)",
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
        for (version, sql) in schema::POSTGRES.iter().filter(|(v, _)| *v > current) {
            sqlx::raw_sql(sql).execute(&mut *tx).await?;
            if *version == 3 {
                crate::schema::migrate_v3_flags!(tx);
            }
            sqlx::query("INSERT INTO schema_migrations (version, applied) VALUES ($1, $2)")
                .bind(version)
                .bind(now())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn transfer_access(&self) -> crate::transfer::Access<'_> {
        crate::transfer::Access(crate::transfer::Pools::Postgres(&self.write))
    }

    async fn clock_ms(&self) -> Result<Option<i64>> {
        let ms: i64 = sqlx::query_scalar(
            "SELECT CAST(FLOOR(EXTRACT(EPOCH FROM clock_timestamp()) * 1000) AS BIGINT)",
        )
        .fetch_one(&self.read)
        .await?;
        Ok(Some(ms))
    }
}

crate::sql::mailbox::impl_mailboxes!(PostgresStore, sqlx::PgConnection, {
    async fn deliver(&self, d: &Delivery) -> Result<Vec<Delivered>> {
        self.deliver_one(d, None).await
    }

    async fn deliver_with_bytes(&self, d: &Delivery, bytes: &[u8]) -> Result<Vec<Delivered>> {
        self.deliver_one(d, Some(bytes)).await
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
        let mut tx = self.tx().await?;
        let uids = Self::insert_messages(&mut tx, mailbox_id, messages, texts).await?;
        tx.commit().await?;
        Ok(uids)
    }

    async fn set_flags(
        &self,
        mailbox_id: i64,
        uids: &[u32],
        op: FlagOp,
        flags: &[String],
        unchanged_since: Option<i64>,
    ) -> Result<FlagOutcome> {
        let mut tx = self.tx().await?;
        let out = Self::set_flags_in(&mut tx, mailbox_id, uids, op, flags, unchanged_since).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn expunge(&self, mailbox_id: i64, uids: &[u32]) -> Result<u64> {
        let mut tx = self.tx().await?;
        let n = Self::expunge_in(&mut tx, mailbox_id, uids).await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn blobs_in_use(&self, ids: &[String]) -> Result<Vec<String>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_scalar(
            "SELECT blob_id FROM messages WHERE blob_id = ANY($1) AND NOT expunged \
             UNION SELECT blob_id FROM queue WHERE blob_id = ANY($1)",
        )
        .bind(ids)
        .fetch_all(&self.read)
        .await?)
    }
});
