//! Filling the full-text index for messages that have no row in it: mail restored from a
//! backup or copied with `store copy` (neither carries the index, each backend keeping its own
//! form), or delivered while indexing failed. Searches stay correct without it (a message
//! with no row is always a candidate and is scanned); they are only slower.
//!
//! The caller computes each message's text (`mailfleet-delivery`'s `index_missing_text`,
//! which the master runs as a job and `mailfleet store reindex` runs by hand); this module
//! finds the blobs that lack it and writes it.

use crate::store::{Result, Store};
use crate::transfer::Pools;

/// Blob ids after `after` (in id order, at most `limit`) that some message row names and the
/// full-text index has no row for.
pub async fn blobs_without_text(store: &dyn Store, after: &str, limit: i64) -> Result<Vec<String>> {
    const Q: &str = "SELECT DISTINCT m.blob_id FROM messages m \
         WHERE m.blob_id > $1 AND NOT m.expunged \
         AND NOT EXISTS (SELECT 1 FROM message_text t WHERE t.blob_id = m.blob_id) \
         ORDER BY m.blob_id LIMIT $2";
    let access = store.transfer_access();
    Ok(match &access.0 {
        Pools::Sqlite { read, .. } => {
            sqlx::query_scalar(Q)
                .bind(after)
                .bind(limit)
                .fetch_all(*read)
                .await?
        }
        Pools::Postgres(pool) => {
            sqlx::query_scalar(Q)
                .bind(after)
                .bind(limit)
                .fetch_all(*pool)
                .await?
        }
    })
}

/// Keeps each `(blob id, text)` in the full-text index, in one transaction; a blob that has a
/// row already keeps it.
pub async fn index_texts(store: &dyn Store, texts: &[(String, String)]) -> Result<()> {
    if texts.is_empty() {
        return Ok(());
    }
    let access = store.transfer_access();
    match &access.0 {
        Pools::Sqlite { write, .. } => {
            let mut tx = write.begin_with("BEGIN IMMEDIATE").await?;
            for (blob_id, text) in texts {
                crate::sqlite::SqliteStore::insert_text(&mut tx, blob_id, text).await?;
            }
            tx.commit().await?;
        }
        Pools::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            for (blob_id, text) in texts {
                crate::postgres::PostgresStore::insert_text(&mut tx, blob_id, text).await?;
            }
            tx.commit().await?;
        }
    }
    Ok(())
}
