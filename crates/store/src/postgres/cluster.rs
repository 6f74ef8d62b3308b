//! Cluster state on PostgreSQL: node heartbeats, named leases and the shared settings.

use sqlx::Row;

use super::{PostgresStore, setting_from};
use crate::model::{Lease, NodeInfo, Setting, Timestamp, now};
use crate::store::Result;

impl PostgresStore {
    pub(super) async fn heartbeat_impl(&self, node: &NodeInfo) -> Result<()> {
        sqlx::query(
            "INSERT INTO nodes (server_id, hostname, info, started, last_seen) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (server_id) DO UPDATE SET hostname = excluded.hostname, info = excluded.info, \
             started = excluded.started, last_seen = excluded.last_seen",
        )
        .bind(&node.server_id)
        .bind(&node.hostname)
        .bind(node.info.to_string())
        .bind(node.started)
        .bind(node.last_seen)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    pub(super) async fn list_nodes_impl(&self) -> Result<Vec<NodeInfo>> {
        let rows = sqlx::query(
            "SELECT server_id, hostname, info, started, last_seen FROM nodes ORDER BY server_id",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                let info: String = r.try_get("info")?;
                Ok(NodeInfo {
                    server_id: r.try_get("server_id")?,
                    hostname: r.try_get("hostname")?,
                    info: serde_json::from_str(&info)?,
                    started: r.try_get("started")?,
                    last_seen: r.try_get("last_seen")?,
                })
            })
            .collect()
    }

    pub(super) async fn acquire_lease_impl(
        &self,
        name: &str,
        holder: &str,
        now: Timestamp,
        ttl_secs: i64,
    ) -> Result<Option<Lease>> {
        let mut tx = self.tx().await?;
        let inserted = sqlx::query(
            "INSERT INTO leases (name, holder, token, expires) VALUES ($1, $2, 1, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(holder)
        .bind(now + ttl_secs)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 1 {
            tx.commit().await?;
            return Ok(Some(Lease {
                name: name.into(),
                holder: holder.into(),
                token: 1,
                expires: now + ttl_secs,
            }));
        }
        let row =
            sqlx::query("SELECT holder, token, expires FROM leases WHERE name = $1 FOR UPDATE")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
        let expires = now + ttl_secs;
        let token = match row {
            None => {
                sqlx::query(
                    "INSERT INTO leases (name, holder, token, expires) VALUES ($1, $2, 1, $3)",
                )
                .bind(name)
                .bind(holder)
                .bind(expires)
                .execute(&mut *tx)
                .await?;
                1
            }
            Some(r) => {
                let cur_holder: String = r.try_get("holder")?;
                let token: i64 = r.try_get("token")?;
                let cur_expires: i64 = r.try_get("expires")?;
                let token = if cur_holder == holder && cur_expires >= now {
                    token
                } else if cur_expires < now {
                    token + 1
                } else {
                    return Ok(None);
                };
                sqlx::query(
                    "UPDATE leases SET holder = $1, token = $2, expires = $3 WHERE name = $4",
                )
                .bind(holder)
                .bind(token)
                .bind(expires)
                .bind(name)
                .execute(&mut *tx)
                .await?;
                token
            }
        };
        tx.commit().await?;
        Ok(Some(Lease {
            name: name.into(),
            holder: holder.into(),
            token,
            expires,
        }))
    }

    pub(super) async fn release_lease_impl(&self, name: &str, holder: &str) -> Result<()> {
        // Expire rather than delete, so the next holder's token still grows.
        sqlx::query("UPDATE leases SET expires = $1 WHERE name = $2 AND holder = $3")
            .bind(now() - 1)
            .bind(name)
            .bind(holder)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    pub(super) async fn get_lease_impl(&self, name: &str) -> Result<Option<Lease>> {
        let row = sqlx::query("SELECT name, holder, token, expires FROM leases WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| {
            Ok(Lease {
                name: r.try_get("name")?,
                holder: r.try_get("holder")?,
                token: r.try_get("token")?,
                expires: r.try_get("expires")?,
            })
        })
        .transpose()
    }

    pub(super) async fn get_setting_impl(&self, key: &str) -> Result<Option<Setting>> {
        let row = sqlx::query("SELECT key, value, version FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(setting_from).transpose()
    }

    pub(super) async fn set_setting_impl(&self, key: &str, value: &str) -> Result<Setting> {
        let mut tx = self.tx().await?;
        let version: i64 = sqlx::query_scalar(
            "UPDATE counters SET value = value + 1 WHERE name = 'settings' RETURNING value",
        )
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO settings (key, value, version) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = excluded.version",
        )
        .bind(key)
        .bind(value)
        .bind(version)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Setting {
            key: key.into(),
            value: value.into(),
            version,
        })
    }

    pub(super) async fn delete_setting_impl(&self, key: &str) -> Result<bool> {
        let mut tx = self.tx().await?;
        let r = sqlx::query("DELETE FROM settings WHERE key = $1")
            .bind(key)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() > 0 {
            sqlx::query("UPDATE counters SET value = value + 1 WHERE name = 'settings'")
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(r.rows_affected() > 0)
    }

    pub(super) async fn list_settings_impl(&self) -> Result<Vec<Setting>> {
        let rows = sqlx::query("SELECT key, value, version FROM settings ORDER BY key")
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(setting_from).collect()
    }

    pub(super) async fn settings_version_impl(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT value FROM counters WHERE name = 'settings'")
                .fetch_one(&self.read)
                .await?,
        )
    }
}
