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
use crate::schema::{self, flags_from_text, flags_to_text, mailbox_name, new_uidvalidity};
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
}

const MAILBOX_COLS: &str =
    "id, account_id, name, special_use, subscribed, uidvalidity, uidnext, highestmodseq";

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
    async fn deliver_in(&self, d: &Delivery, blob: Option<&[u8]>) -> Result<Vec<Delivered>> {
        let mut tx = self.tx().await?;
        if let Some(bytes) = blob {
            sqlx::query(
                "INSERT INTO blobs (id, data, created) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(&d.blob_id)
            .bind(bytes)
            .bind(now())
            .execute(&mut *tx)
            .await?;
        }
        let mut out = Vec::with_capacity(d.targets.len());
        for t in &d.targets {
            let mailbox_id = Self::mailbox_id_in(&mut tx, t.account_id, &t.mailbox).await?;
            let uid = Self::insert_message(
                &mut tx,
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
            Self::insert_queue(&mut tx, &d.blob_id, d.size, q).await?;
        }
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
            sqlx::query("INSERT INTO schema_migrations (version, applied) VALUES ($1, $2)")
                .bind(version)
                .bind(now())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn mailbox_id_in(
        tx: &mut Transaction<'static, Postgres>,
        account_id: i64,
        name: &str,
    ) -> Result<i64> {
        let name = mailbox_name(name);
        if let Some(id) = sqlx::query_scalar::<_, i64>(
            "SELECT id FROM mailboxes WHERE account_id = $1 AND name = $2",
        )
        .bind(account_id)
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?
        {
            return Ok(id);
        }
        sqlx::query(
            "INSERT INTO mailboxes (account_id, name, uidvalidity) VALUES ($1, $2, $3) \
             ON CONFLICT (account_id, name) DO NOTHING",
        )
        .bind(account_id)
        .bind(name)
        .bind(new_uidvalidity())
        .execute(&mut **tx)
        .await
        .map_err(|e| {
            if is_fk(&e) {
                StoreError::AccountNotFound(format!("id {account_id}"))
            } else {
                StoreError::from(e)
            }
        })?;
        Ok(
            sqlx::query_scalar("SELECT id FROM mailboxes WHERE account_id = $1 AND name = $2")
                .bind(account_id)
                .bind(name)
                .fetch_one(&mut **tx)
                .await?,
        )
    }

    /// Takes the next UID and MODSEQ of a mailbox and inserts the message row.
    async fn insert_message(
        tx: &mut Transaction<'static, Postgres>,
        mailbox_id: i64,
        blob_id: &str,
        size: i64,
        internal_date: Timestamp,
        flags: &[String],
    ) -> Result<u32> {
        let row = sqlx::query(
            "UPDATE mailboxes SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1 \
             WHERE id = $1 RETURNING uidnext - 1 AS uid, highestmodseq, account_id",
        )
        .bind(mailbox_id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::MailboxNotFound(format!("id {mailbox_id}")))?;
        let uid: i64 = row.try_get("uid")?;
        let modseq: i64 = row.try_get("highestmodseq")?;
        let account_id: i64 = row.try_get("account_id")?;
        sqlx::query(
            "INSERT INTO messages (mailbox_id, uid, modseq, flags, internal_date, size, blob_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(mailbox_id)
        .bind(uid)
        .bind(modseq)
        .bind(flags_to_text(flags))
        .bind(internal_date)
        .bind(size)
        .bind(blob_id)
        .execute(&mut **tx)
        .await?;
        sqlx::query("UPDATE accounts SET used_bytes = used_bytes + $1 WHERE id = $2")
            .bind(size)
            .bind(account_id)
            .execute(&mut **tx)
            .await?;
        Ok(uid as u32)
    }
}

#[async_trait]
impl Store for PostgresStore {
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
            "INSERT INTO mailboxes (account_id, name, special_use, uidvalidity) VALUES ($1, $2, $3, $4) \
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
            "SELECT {MAILBOX_COLS} FROM mailboxes WHERE account_id = $1 AND name = $2"
        ))
        .bind(account_id)
        .bind(mailbox_name(name))
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(mailbox_from).transpose()
    }

    async fn list_mailboxes(&self, account_id: i64) -> Result<Vec<Mailbox>> {
        let rows = sqlx::query(&format!(
            "SELECT {MAILBOX_COLS} FROM mailboxes WHERE account_id = $1 ORDER BY name"
        ))
        .bind(account_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(mailbox_from).collect()
    }

    async fn mailbox_status(&self, account_id: i64) -> Result<Vec<MailboxStatus>> {
        let rows = sqlx::query(
            "SELECT m.name, m.uidnext, m.uidvalidity, \
               COUNT(x.uid)::BIGINT AS messages, \
               COALESCE(SUM(CASE WHEN x.uid IS NOT NULL AND position(' \\Seen ' in ' ' || x.flags || ' ') = 0 THEN 1 ELSE 0 END), 0)::BIGINT AS unseen, \
               COALESCE(SUM(x.size), 0)::BIGINT AS bytes \
             FROM mailboxes m LEFT JOIN messages x ON x.mailbox_id = m.id AND NOT x.expunged \
             WHERE m.account_id = $1 GROUP BY m.id ORDER BY m.name",
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
        self.deliver_in(d, None).await
    }

    async fn deliver_with_bytes(&self, d: &Delivery, bytes: &[u8]) -> Result<Vec<Delivered>> {
        self.deliver_in(d, Some(bytes)).await
    }

    async fn append(
        &self,
        mailbox_id: i64,
        blob_id: &str,
        size: i64,
        internal_date: Timestamp,
        flags: &[String],
    ) -> Result<u32> {
        let mut tx = self.tx().await?;
        let uid =
            Self::insert_message(&mut tx, mailbox_id, blob_id, size, internal_date, flags).await?;
        tx.commit().await?;
        Ok(uid)
    }

    async fn list_messages(&self, mailbox_id: i64, first: u32, last: u32) -> Result<Vec<Message>> {
        let rows = sqlx::query(
            "SELECT mailbox_id, uid, modseq, flags, internal_date, size, blob_id, expunged \
             FROM messages WHERE mailbox_id = $1 AND uid >= $2 AND uid <= $3 AND NOT expunged ORDER BY uid",
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
        sqlx::query(
            "INSERT INTO blobs (id, data, created) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(bytes)
        .bind(now())
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn blob_get(&self, id: &str) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar("SELECT data FROM blobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.read)
            .await?)
    }

    async fn blob_delete(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM blobs WHERE id = $1")
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
        Ok(sqlx::query_scalar(
            "SELECT blob_id FROM messages WHERE blob_id = ANY($1) \
             UNION SELECT blob_id FROM queue WHERE blob_id = ANY($1)",
        )
        .bind(ids)
        .fetch_all(&self.read)
        .await?)
    }
}
