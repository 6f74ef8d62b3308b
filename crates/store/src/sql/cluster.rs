//! Cluster state (node heartbeats, named leases, shared settings): the SQL, written once, and
//! the one implementation of [`crate::store::Cluster`] that both backends expand.

pub(crate) const HEARTBEAT: &str = "INSERT INTO nodes \
     (server_id, hostname, info, started, last_seen) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (server_id) DO UPDATE SET hostname = excluded.hostname, info = excluded.info, \
     started = excluded.started, last_seen = excluded.last_seen";

pub(crate) const LIST_NODES: &str =
    "SELECT server_id, hostname, info, started, last_seen FROM nodes ORDER BY server_id";

/// A lease nobody held yet (`$1` name, `$2` holder, `$3` expiry, `$4` now): inserted, or left
/// alone.
pub(crate) const INSERT_LEASE: &str = "INSERT INTO leases (name, holder, token, expires, acquired) \
     VALUES ($1, $2, 1, $3, $4) ON CONFLICT (name) DO NOTHING";

/// The lease as it stands, to decide on; [`crate::sql::Dialect::FOR_UPDATE`] follows.
pub(crate) const LEASE_FOR_UPDATE: &str =
    "SELECT holder, token, expires, acquired FROM leases WHERE name = $1";

pub(crate) const NEW_LEASE: &str =
    "INSERT INTO leases (name, holder, token, expires, acquired) VALUES ($1, $2, 1, $3, $4)";

pub(crate) const UPDATE_LEASE: &str =
    "UPDATE leases SET holder = $1, token = $2, expires = $3, acquired = $5 WHERE name = $4";

/// Expire rather than delete, so the next holder's token still grows.
pub(crate) const RELEASE_LEASE: &str =
    "UPDATE leases SET expires = $1 WHERE name = $2 AND holder = $3";

pub(crate) const GET_LEASE: &str =
    "SELECT name, holder, token, expires, acquired FROM leases WHERE name = $1";

/// A fence's lease as long as its holder still holds it with its token, unexpired (`$4` now);
/// [`crate::sql::Dialect::FOR_UPDATE`] follows, so that on PostgreSQL a node taking the lease
/// over waits for the fenced write to end.
pub(crate) const FENCE_HELD: &str = "SELECT token FROM leases \
     WHERE name = $1 AND holder = $2 AND token = $3 AND expires >= $4";

/// Leases expired before `$1`, except the fence's own (`$2`).
pub(crate) const DELETE_STALE_LEASES: &str = "DELETE FROM leases WHERE expires < $1 AND name <> $2";

/// Queue items whose lease ran out before `$1`: the lease is cleared (a claim would pass over
/// it anyway), so that nothing shows the item as held by a node that is gone.
pub(crate) const CLEAR_STALE_QUEUE_LEASES: &str = "UPDATE queue \
     SET lease_holder = NULL, lease_until = NULL WHERE lease_until < $1";

/// Checks, inside the transaction `$tx` of a store of type `$store`, that the
/// [`crate::Fence`] `$fence` still holds at `$now`; returns [`crate::StoreError::Fenced`]
/// from the enclosing function (the transaction rolled back by its drop) if not.
macro_rules! hold_fence {
    ($store:ty, $tx:expr, $fence:expr, $now:expr) => {{
        let fence: &$crate::model::Fence = $fence;
        let held = sqlx::query(&format!(
            "{}{}",
            $crate::sql::cluster::FENCE_HELD,
            <$store as $crate::sql::Dialect>::FOR_UPDATE
        ))
        .bind(&fence.lease)
        .bind(&fence.holder)
        .bind(fence.token)
        .bind($now)
        .fetch_optional(&mut *$tx)
        .await?;
        if held.is_none() {
            return Err($crate::StoreError::Fenced {
                lease: fence.lease.clone(),
                holder: fence.holder.clone(),
                token: fence.token,
            });
        }
    }};
}

pub(crate) use hold_fence;

pub(crate) const GET_SETTING: &str = "SELECT key, value, version FROM settings WHERE key = $1";

/// Takes the next settings version.
pub(crate) const NEXT_SETTINGS_VERSION: &str =
    "UPDATE counters SET value = value + 1 WHERE name = 'settings' RETURNING value";

pub(crate) const PUT_SETTING: &str = "INSERT INTO settings (key, value, version) \
     VALUES ($1, $2, $3) \
     ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = excluded.version";

pub(crate) const DELETE_SETTING: &str = "DELETE FROM settings WHERE key = $1";

pub(crate) const BUMP_SETTINGS_VERSION: &str =
    "UPDATE counters SET value = value + 1 WHERE name = 'settings'";

pub(crate) const LIST_SETTINGS: &str = "SELECT key, value, version FROM settings ORDER BY key";

pub(crate) const SETTINGS_VERSION: &str = "SELECT value FROM counters WHERE name = 'settings'";

pub(crate) const REQUEST_DRAIN: &str = "INSERT INTO node_drains (server_id, requested, deadline) \
     VALUES ($1, $2, $3) \
     ON CONFLICT (server_id) DO UPDATE SET requested = excluded.requested, \
     deadline = excluded.deadline";

pub(crate) const DRAIN_REQUEST: &str =
    "SELECT server_id, requested, deadline FROM node_drains WHERE server_id = $1";

pub(crate) const CLEAR_DRAIN: &str =
    "DELETE FROM node_drains WHERE server_id = $1 AND requested < $2";

pub(crate) const FORGET_BALANCER: &str = "DELETE FROM balancer_servers WHERE balancer = $1";

pub(crate) const REPORT_BALANCER_SERVER: &str = "INSERT INTO balancer_servers \
     (balancer, service, server, address, state, active, updated) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

pub(crate) const LIST_BALANCER_SERVERS: &str = "SELECT balancer, service, server, address, \
     state, active, updated FROM balancer_servers ORDER BY balancer, service, server";

/// Implements [`crate::store::Cluster`] for a backend's store (see [`crate::sql`]).
macro_rules! impl_cluster {
    ($store:ty) => {
        const _: () = {
            use sqlx::Row;
            use $crate::model::{
                BalancerServerView, DrainRequest, Fence, Lease, NodeInfo, Setting, StaleLeases,
                Timestamp, now,
            };
            use $crate::sql::Dialect;
            use $crate::sql::cluster::*;
            use $crate::store::{Cluster, Result};

            #[async_trait::async_trait]
            impl Cluster for $store {
                async fn heartbeat(&self, node: &NodeInfo) -> Result<()> {
                    sqlx::query(HEARTBEAT)
                        .bind(&node.server_id)
                        .bind(&node.hostname)
                        .bind(node.info.to_string())
                        .bind(node.started)
                        .bind(node.last_seen)
                        .execute(&self.write)
                        .await?;
                    Ok(())
                }

                async fn list_nodes(&self) -> Result<Vec<NodeInfo>> {
                    let rows = sqlx::query(LIST_NODES).fetch_all(&self.read).await?;
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

                /// Inserts the lease if nobody held it yet; otherwise reads it (locking its row
                /// on PostgreSQL; SQLite's transaction holds the write lock already) and takes
                /// it over only if it is ours or has expired.
                async fn acquire_lease(
                    &self,
                    name: &str,
                    holder: &str,
                    now: Timestamp,
                    ttl_secs: i64,
                ) -> Result<Option<Lease>> {
                    let mut tx = self.tx().await?;
                    let expires = now + ttl_secs;
                    let inserted = sqlx::query(INSERT_LEASE)
                        .bind(name)
                        .bind(holder)
                        .bind(expires)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    if inserted.rows_affected() == 1 {
                        tx.commit().await?;
                        return Ok(Some(Lease {
                            name: name.into(),
                            holder: holder.into(),
                            token: 1,
                            expires,
                            acquired: now,
                        }));
                    }
                    let row = sqlx::query(&format!("{LEASE_FOR_UPDATE}{}", Self::FOR_UPDATE))
                        .bind(name)
                        .fetch_optional(&mut *tx)
                        .await?;
                    let (token, acquired) = match row {
                        None => {
                            sqlx::query(NEW_LEASE)
                                .bind(name)
                                .bind(holder)
                                .bind(expires)
                                .bind(now)
                                .execute(&mut *tx)
                                .await?;
                            (1, now)
                        }
                        Some(r) => {
                            let cur_holder: String = r.try_get("holder")?;
                            let token: i64 = r.try_get("token")?;
                            let cur_expires: i64 = r.try_get("expires")?;
                            let cur_acquired: i64 = r.try_get("acquired")?;
                            // A renewal keeps the time the lease was taken; a takeover starts it.
                            let (token, acquired) = if cur_holder == holder && cur_expires >= now {
                                (token, cur_acquired)
                            } else if cur_expires < now {
                                (token + 1, now)
                            } else {
                                return Ok(None);
                            };
                            sqlx::query(UPDATE_LEASE)
                                .bind(holder)
                                .bind(token)
                                .bind(expires)
                                .bind(name)
                                .bind(acquired)
                                .execute(&mut *tx)
                                .await?;
                            (token, acquired)
                        }
                    };
                    tx.commit().await?;
                    Ok(Some(Lease {
                        name: name.into(),
                        holder: holder.into(),
                        token,
                        expires,
                        acquired,
                    }))
                }

                async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
                    sqlx::query(RELEASE_LEASE)
                        .bind(now() - 1)
                        .bind(name)
                        .bind(holder)
                        .execute(&self.write)
                        .await?;
                    Ok(())
                }

                async fn get_lease(&self, name: &str) -> Result<Option<Lease>> {
                    let row = sqlx::query(GET_LEASE)
                        .bind(name)
                        .fetch_optional(&self.read)
                        .await?;
                    row.map(|r| {
                        Ok(Lease {
                            name: r.try_get("name")?,
                            holder: r.try_get("holder")?,
                            token: r.try_get("token")?,
                            expires: r.try_get("expires")?,
                            acquired: r.try_get("acquired")?,
                        })
                    })
                    .transpose()
                }

                async fn check_fence(&self, fence: &Fence, now: Timestamp) -> Result<()> {
                    let held = sqlx::query(FENCE_HELD)
                        .bind(&fence.lease)
                        .bind(&fence.holder)
                        .bind(fence.token)
                        .bind(now)
                        .fetch_optional(&self.read)
                        .await?;
                    match held {
                        Some(_) => Ok(()),
                        None => Err($crate::StoreError::Fenced {
                            lease: fence.lease.clone(),
                            holder: fence.holder.clone(),
                            token: fence.token,
                        }),
                    }
                }

                async fn delete_stale_leases(
                    &self,
                    fence: &Fence,
                    now: Timestamp,
                    expired_before: Timestamp,
                ) -> Result<StaleLeases> {
                    let mut tx = self.tx().await?;
                    hold_fence!($store, tx, fence, now);
                    let leases = sqlx::query(DELETE_STALE_LEASES)
                        .bind(expired_before)
                        .bind(&fence.lease)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    let queue_leases = sqlx::query(CLEAR_STALE_QUEUE_LEASES)
                        .bind(expired_before)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    tx.commit().await?;
                    Ok(StaleLeases {
                        leases,
                        queue_leases,
                    })
                }

                async fn get_setting(&self, key: &str) -> Result<Option<Setting>> {
                    let row = sqlx::query(GET_SETTING)
                        .bind(key)
                        .fetch_optional(&self.read)
                        .await?;
                    row.as_ref().map(setting_from).transpose()
                }

                async fn set_setting(&self, key: &str, value: &str) -> Result<Setting> {
                    let mut tx = self.tx().await?;
                    let version: i64 = sqlx::query_scalar(NEXT_SETTINGS_VERSION)
                        .fetch_one(&mut *tx)
                        .await?;
                    sqlx::query(PUT_SETTING)
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

                async fn delete_setting(&self, key: &str) -> Result<bool> {
                    let mut tx = self.tx().await?;
                    let r = sqlx::query(DELETE_SETTING)
                        .bind(key)
                        .execute(&mut *tx)
                        .await?;
                    if r.rows_affected() > 0 {
                        sqlx::query(BUMP_SETTINGS_VERSION).execute(&mut *tx).await?;
                    }
                    tx.commit().await?;
                    Ok(r.rows_affected() > 0)
                }

                async fn list_settings(&self) -> Result<Vec<Setting>> {
                    let rows = sqlx::query(LIST_SETTINGS).fetch_all(&self.read).await?;
                    rows.iter().map(setting_from).collect()
                }

                async fn settings_version(&self) -> Result<i64> {
                    Ok(sqlx::query_scalar(SETTINGS_VERSION)
                        .fetch_one(&self.read)
                        .await?)
                }

                async fn request_drain(&self, request: &DrainRequest) -> Result<()> {
                    sqlx::query(REQUEST_DRAIN)
                        .bind(&request.server_id)
                        .bind(request.requested)
                        .bind(request.deadline)
                        .execute(&self.write)
                        .await?;
                    Ok(())
                }

                async fn drain_request(&self, server_id: &str) -> Result<Option<DrainRequest>> {
                    let row = sqlx::query(DRAIN_REQUEST)
                        .bind(server_id)
                        .fetch_optional(&self.read)
                        .await?;
                    row.map(|r| {
                        Ok(DrainRequest {
                            server_id: r.try_get("server_id")?,
                            requested: r.try_get("requested")?,
                            deadline: r.try_get("deadline")?,
                        })
                    })
                    .transpose()
                }

                async fn clear_drain(
                    &self,
                    server_id: &str,
                    requested_before: Timestamp,
                ) -> Result<bool> {
                    let r = sqlx::query(CLEAR_DRAIN)
                        .bind(server_id)
                        .bind(requested_before)
                        .execute(&self.write)
                        .await?;
                    Ok(r.rows_affected() > 0)
                }

                async fn report_balancer(
                    &self,
                    balancer: &str,
                    servers: &[BalancerServerView],
                ) -> Result<()> {
                    let mut tx = self.tx().await?;
                    sqlx::query(FORGET_BALANCER)
                        .bind(balancer)
                        .execute(&mut *tx)
                        .await?;
                    for s in servers {
                        sqlx::query(REPORT_BALANCER_SERVER)
                            .bind(balancer)
                            .bind(&s.service)
                            .bind(&s.server)
                            .bind(&s.address)
                            .bind(&s.state)
                            .bind(s.active)
                            .bind(s.updated)
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    Ok(())
                }

                async fn list_balancer_servers(&self) -> Result<Vec<BalancerServerView>> {
                    let rows = sqlx::query(LIST_BALANCER_SERVERS)
                        .fetch_all(&self.read)
                        .await?;
                    rows.iter()
                        .map(|r| {
                            Ok(BalancerServerView {
                                balancer: r.try_get("balancer")?,
                                service: r.try_get("service")?,
                                server: r.try_get("server")?,
                                address: r.try_get("address")?,
                                state: r.try_get("state")?,
                                active: r.try_get("active")?,
                                updated: r.try_get("updated")?,
                            })
                        })
                        .collect()
                }
            }
        };
    };
}

pub(crate) use impl_cluster;
