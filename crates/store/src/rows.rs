//! Row decoding shared by both backends: the same columns decode the same way, only the row
//! type differs, so one macro writes the functions for each.

/// Defines `map_unique`, `is_fk`, `account_from`, `mailbox_from`, `queue_from` and `setting_from`
/// for a backend's row type.
macro_rules! row_decoders {
    ($row:ty) => {
        fn map_unique(e: sqlx::Error, on_unique: impl FnOnce() -> StoreError) -> StoreError {
            match &e {
                sqlx::Error::Database(d) if d.is_unique_violation() => on_unique(),
                _ => StoreError::Database(e),
            }
        }

        fn is_fk(e: &sqlx::Error) -> bool {
            matches!(e, sqlx::Error::Database(d) if d.is_foreign_key_violation())
        }

        fn account_from(row: &$row) -> Result<Account> {
            Ok(Account {
                id: row.try_get("id")?,
                address: row.try_get("address")?,
                password_hash: row.try_get("password_hash")?,
                quota_bytes: row.try_get("quota_bytes")?,
                used_bytes: row.try_get("used_bytes")?,
                shard: row.try_get("shard")?,
                enabled: row.try_get("enabled")?,
                created: row.try_get("created")?,
            })
        }

        fn mailbox_from(row: &$row) -> Result<Mailbox> {
            Ok(Mailbox {
                id: row.try_get("id")?,
                account_id: row.try_get("account_id")?,
                name: row.try_get("name")?,
                special_use: row.try_get("special_use")?,
                subscribed: row.try_get("subscribed")?,
                uidvalidity: row.try_get::<i64, _>("uidvalidity")? as u32,
                uidnext: row.try_get::<i64, _>("uidnext")? as u32,
                highestmodseq: row.try_get("highestmodseq")?,
            })
        }

        fn queue_from(row: &$row) -> Result<QueueItem> {
            let recipients: String = row.try_get("recipients")?;
            Ok(QueueItem {
                id: row.try_get("id")?,
                blob_id: row.try_get("blob_id")?,
                size: row.try_get("size")?,
                sender: row.try_get("sender")?,
                recipients: serde_json::from_str(&recipients)?,
                envid: row.try_get("envid")?,
                ret: row.try_get("ret")?,
                created: row.try_get("created")?,
                next_attempt: row.try_get("next_attempt")?,
                attempts: row.try_get("attempts")?,
                last_error: row.try_get("last_error")?,
                warned: row.try_get("warned")?,
                lease_holder: row.try_get("lease_holder")?,
                lease_until: row.try_get("lease_until")?,
            })
        }

        fn setting_from(r: &$row) -> Result<Setting> {
            Ok(Setting {
                key: r.try_get("key")?,
                value: r.try_get("value")?,
                version: r.try_get("version")?,
            })
        }
    };
}

pub(crate) use row_decoders;
