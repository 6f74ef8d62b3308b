//! The directory (domains, accounts, aliases, shards): the SQL, written once, and the one
//! implementation of [`crate::store::Directory`] that both backends expand.

pub(crate) const ACCOUNT_COLS: &str =
    "id, address, password_hash, quota_bytes, used_bytes, shard, enabled, created";

pub(crate) const ADD_DOMAIN: &str = "INSERT INTO domains (name, created) VALUES ($1, $2)";

pub(crate) const REMOVE_DOMAIN: &str = "DELETE FROM domains WHERE name = $1";

pub(crate) const LIST_DOMAINS: &str = "SELECT name, created FROM domains ORDER BY name";

pub(crate) const DOMAIN_EXISTS: &str = "SELECT COUNT(*) FROM domains WHERE name = $1";

pub(crate) const INSERT_ACCOUNT: &str = "INSERT INTO accounts \
     (address, domain, password_hash, quota_bytes, shard, created) \
     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id";

/// A new account's mailboxes ([`crate::schema::DEFAULT_MAILBOXES`], in one statement: `$1`
/// account, `$2` the last of the six UIDVALIDITY values taken, the names and special uses
/// written in).
pub(crate) const INSERT_DEFAULT_MAILBOXES: &str = "INSERT INTO mailboxes \
     (account_id, name, special_use, uidvalidity) VALUES \
     ($1, 'INBOX', NULL, $2 - 5), ($1, 'Drafts', '\\Drafts', $2 - 4), \
     ($1, 'Sent', '\\Sent', $2 - 3), ($1, 'Trash', '\\Trash', $2 - 2), \
     ($1, 'Junk', '\\Junk', $2 - 1), ($1, 'Archive', '\\Archive', $2)";

/// Takes six UIDVALIDITY values at once; returns the last.
pub(crate) const NEXT_SIX_UIDVALIDITIES: &str =
    "UPDATE counters SET value = value + 6 WHERE name = 'uidvalidity' RETURNING value";

/// Subscribes a new account (`$1`) to its six mailboxes.
pub(crate) const SUBSCRIBE_DEFAULT_MAILBOXES: &str = "INSERT INTO subscriptions (account_id, name) \
     VALUES ($1, 'INBOX'), ($1, 'Drafts'), ($1, 'Sent'), ($1, 'Trash'), ($1, 'Junk'), \
     ($1, 'Archive')";

/// `NULL` leaves a field as it is (`$1` password hash, `$2` quota, `$3` enabled, `$4` shard,
/// `$5` address); [`ACCOUNT_COLS`] follow `RETURNING`.
pub(crate) const UPDATE_ACCOUNT: &str = "UPDATE accounts SET \
     password_hash = COALESCE($1, password_hash), quota_bytes = COALESCE($2, quota_bytes), \
     enabled = COALESCE($3, enabled), shard = COALESCE($4, shard) \
     WHERE address = $5 RETURNING";

pub(crate) const REMOVE_ACCOUNT: &str = "DELETE FROM accounts WHERE address = $1";

/// Before removing accounts (`{which}`: `address = $1` or `domain = $1`), their mailbox rows
/// and then their own rows are locked in ascending id order (`{for_update}`:
/// [`crate::sql::Dialect::FOR_UPDATE`]), the order every message write takes them in; the
/// cascading delete alone would lock each account before its mailboxes, and could deadlock with
/// a delivery to them on PostgreSQL.
pub(crate) const LOCK_MAILBOXES_OF: &str = "SELECT id FROM mailboxes WHERE account_id IN \
     (SELECT id FROM accounts WHERE {which}) ORDER BY id{for_update}";
pub(crate) const LOCK_ACCOUNTS_OF: &str =
    "SELECT id FROM accounts WHERE {which} ORDER BY id{for_update}";

pub(crate) const ADD_ALIAS_TARGET: &str =
    "INSERT INTO aliases (address, target, domain) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";

pub(crate) const REMOVE_ALIAS: &str = "DELETE FROM aliases WHERE address = $1";

pub(crate) const GET_ALIAS: &str = "SELECT target FROM aliases WHERE address = $1 ORDER BY target";

pub(crate) const LIST_DOMAIN_ALIASES: &str =
    "SELECT address, target FROM aliases WHERE domain = $1 ORDER BY address, target";

pub(crate) const LIST_ALIASES: &str =
    "SELECT address, target FROM aliases ORDER BY address, target";

pub(crate) const PUT_SHARD: &str = "INSERT INTO shards (name, weight) VALUES ($1, $2) \
     ON CONFLICT (name) DO UPDATE SET weight = excluded.weight";

pub(crate) const LIST_SHARDS: &str = "SELECT s.name, s.weight, \
     (SELECT COUNT(*) FROM accounts a WHERE a.shard = s.name) AS n \
     FROM shards s ORDER BY s.name";

/// Implements [`crate::store::Directory`] for a backend's store, whose connection type is
/// `$conn` (see [`crate::sql`]).
macro_rules! impl_directory {
    // `get_account` (every login) with sqlx, unless the backend reads it its own way
    // (`own_reads`, then written in its braces: SQLite's `sqlite/reader.rs`); spliced in
    // because `#[async_trait]` rewrites the impl before a macro inside it would expand.
    ($store:ty, $conn:ty) => {
        $crate::sql::directory::impl_directory!(@impl $store, $conn, {
                async fn get_account(&self, address: &str) -> Result<Option<Account>> {
                    let row = sqlx::query(&format!(
                        "SELECT {ACCOUNT_COLS} FROM accounts WHERE address = $1"
                    ))
                    .bind(address)
                    .fetch_optional(&self.read)
                    .await?;
                    row.as_ref().map(account_from).transpose()
                }
        });
    };
    ($store:ty, $conn:ty, own_reads, { $($backend:tt)* }) => {
        $crate::sql::directory::impl_directory!(@impl $store, $conn, { $($backend)* });
    };
    (@impl $store:ty, $conn:ty, { $($backend:tt)* }) => {
        const _: () = {
            use sqlx::Row;
            use $crate::error::StoreError;
            use $crate::model::{Account, AccountUpdate, Alias, Domain, NewAccount, Shard, now};
            use $crate::schema::{DEFAULT_MAILBOXES, alias_domain};
            use $crate::sql::Dialect;
            use $crate::sql::directory::*;

            /// Locks the mailboxes and then the accounts that a removal deletes (see
            /// [`LOCK_MAILBOXES_OF`]).
            async fn lock_for_removal(conn: &mut $conn, which: &str, key: &str) -> Result<()> {
                for sql in [LOCK_MAILBOXES_OF, LOCK_ACCOUNTS_OF] {
                    let sql = sql
                        .replace("{which}", which)
                        .replace("{for_update}", <$store as Dialect>::FOR_UPDATE);
                    sqlx::query(&sql).bind(key).fetch_all(&mut *conn).await?;
                }
                Ok(())
            }
            use $crate::store::{Directory, Result};

            /// Inserts an account and its mailboxes (INBOX, Drafts, Sent, Trash, Junk, Archive),
            /// all subscribed, in the caller's transaction.
            async fn insert_account(conn: &mut $conn, a: &NewAccount) -> Result<i64> {
                let domain = $crate::address::domain_of(&a.address).to_string();
                let id: i64 = sqlx::query_scalar(INSERT_ACCOUNT)
                    .bind(&a.address)
                    .bind(&domain)
                    .bind(&a.password_hash)
                    .bind(a.quota_bytes)
                    .bind(&a.shard)
                    .bind(now())
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(|e| {
                        if is_fk(&e) {
                            StoreError::DomainNotFound(domain.clone())
                        } else {
                            map_unique(e, || StoreError::AccountExists(a.address.clone()))
                        }
                    })?;
                // Three statements for the six mailboxes (DEFAULT_MAILBOXES), their UIDVALIDITY
                // values and subscriptions: an import of 100,000 accounts makes 400,000
                // statements, not 1.9 million.
                debug_assert_eq!(DEFAULT_MAILBOXES.len(), 6);
                let last: i64 = sqlx::query_scalar(NEXT_SIX_UIDVALIDITIES)
                    .fetch_one(&mut *conn)
                    .await?;
                sqlx::query(INSERT_DEFAULT_MAILBOXES)
                    .bind(id)
                    .bind(last)
                    .execute(&mut *conn)
                    .await?;
                sqlx::query(SUBSCRIBE_DEFAULT_MAILBOXES)
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
                Ok(id)
            }

            #[async_trait::async_trait]
            impl Directory for $store {
                async fn add_domain(&self, name: &str) -> Result<()> {
                    sqlx::query(ADD_DOMAIN)
                        .bind(name)
                        .bind(now())
                        .execute(&self.write)
                        .await
                        .map_err(|e| map_unique(e, || StoreError::DomainExists(name.into())))?;
                    Ok(())
                }

                async fn remove_domain(&self, name: &str) -> Result<()> {
                    let mut tx = self.tx().await?;
                    lock_for_removal(&mut tx, "domain = $1", name).await?;
                    let r = sqlx::query(REMOVE_DOMAIN)
                        .bind(name)
                        .execute(&mut *tx)
                        .await?;
                    if r.rows_affected() == 0 {
                        return Err(StoreError::DomainNotFound(name.into()));
                    }
                    tx.commit().await?;
                    Ok(())
                }

                async fn list_domains(&self) -> Result<Vec<Domain>> {
                    let rows = sqlx::query(LIST_DOMAINS).fetch_all(&self.read).await?;
                    rows.iter()
                        .map(|r| {
                            Ok(Domain {
                                name: r.try_get("name")?,
                                created: r.try_get("created")?,
                            })
                        })
                        .collect()
                }

                async fn domain_exists(&self, name: &str) -> Result<bool> {
                    Ok(sqlx::query_scalar::<_, i64>(DOMAIN_EXISTS)
                        .bind(name)
                        .fetch_one(&self.read)
                        .await?
                        > 0)
                }

                async fn create_account(&self, account: &NewAccount) -> Result<Account> {
                    let mut tx = self.tx().await?;
                    let id = insert_account(&mut tx, account).await?;
                    tx.commit().await?;
                    self.get_account_by_id(id)
                        .await?
                        .ok_or_else(|| StoreError::AccountNotFound(account.address.clone()))
                }

                async fn create_accounts(&self, accounts: &[NewAccount]) -> Result<()> {
                    let mut tx = self.tx().await?;
                    for a in accounts {
                        insert_account(&mut tx, a).await?;
                    }
                    tx.commit().await?;
                    Ok(())
                }

                async fn get_account_by_id(&self, id: i64) -> Result<Option<Account>> {
                    let row = sqlx::query(&format!(
                        "SELECT {ACCOUNT_COLS} FROM accounts WHERE id = $1"
                    ))
                    .bind(id)
                    .fetch_optional(&self.write)
                    .await?;
                    row.as_ref().map(account_from).transpose()
                }

                async fn update_account(
                    &self,
                    address: &str,
                    u: &AccountUpdate,
                ) -> Result<Account> {
                    let row = sqlx::query(&format!("{UPDATE_ACCOUNT} {ACCOUNT_COLS}"))
                        .bind(&u.password_hash)
                        .bind(u.quota_bytes)
                        .bind(u.enabled)
                        .bind(&u.shard)
                        .bind(address)
                        .fetch_optional(&self.write)
                        .await?;
                    match row {
                        Some(r) => account_from(&r),
                        None => Err(StoreError::AccountNotFound(address.into())),
                    }
                }

                async fn remove_account(&self, address: &str) -> Result<()> {
                    let mut tx = self.tx().await?;
                    lock_for_removal(&mut tx, "address = $1", address).await?;
                    let r = sqlx::query(REMOVE_ACCOUNT)
                        .bind(address)
                        .execute(&mut *tx)
                        .await?;
                    if r.rows_affected() == 0 {
                        return Err(StoreError::AccountNotFound(address.into()));
                    }
                    tx.commit().await?;
                    Ok(())
                }

                async fn list_accounts(&self, domain: Option<&str>) -> Result<Vec<Account>> {
                    let rows = match domain {
                        Some(d) => {
                            if !self.domain_exists(d).await? {
                                return Err(StoreError::DomainNotFound(d.into()));
                            }
                            sqlx::query(&format!(
                                "SELECT {ACCOUNT_COLS} FROM accounts WHERE domain = $1 \
                                 ORDER BY address"
                            ))
                            .bind(d)
                            .fetch_all(&self.read)
                            .await?
                        }
                        None => {
                            sqlx::query(&format!(
                                "SELECT {ACCOUNT_COLS} FROM accounts ORDER BY address"
                            ))
                            .fetch_all(&self.read)
                            .await?
                        }
                    };
                    rows.iter().map(account_from).collect()
                }

                async fn add_alias(&self, address: &str, targets: &[String]) -> Result<()> {
                    let domain = alias_domain(address).to_string();
                    let mut tx = self.tx().await?;
                    for t in targets {
                        sqlx::query(ADD_ALIAS_TARGET)
                            .bind(address)
                            .bind(t)
                            .bind(&domain)
                            .execute(&mut *tx)
                            .await
                            .map_err(|e| {
                                if is_fk(&e) {
                                    StoreError::DomainNotFound(domain.clone())
                                } else {
                                    e.into()
                                }
                            })?;
                    }
                    tx.commit().await?;
                    Ok(())
                }

                async fn remove_alias(&self, address: &str) -> Result<()> {
                    let r = sqlx::query(REMOVE_ALIAS)
                        .bind(address)
                        .execute(&self.write)
                        .await?;
                    if r.rows_affected() == 0 {
                        return Err(StoreError::AliasNotFound(address.into()));
                    }
                    Ok(())
                }

                async fn get_alias(&self, address: &str) -> Result<Option<Alias>> {
                    let targets: Vec<String> = sqlx::query_scalar(GET_ALIAS)
                        .bind(address)
                        .fetch_all(&self.read)
                        .await?;
                    Ok((!targets.is_empty()).then(|| Alias {
                        address: address.into(),
                        targets,
                    }))
                }

                async fn list_aliases(&self, domain: Option<&str>) -> Result<Vec<Alias>> {
                    let rows = match domain {
                        Some(d) => {
                            if !self.domain_exists(d).await? {
                                return Err(StoreError::DomainNotFound(d.into()));
                            }
                            sqlx::query(LIST_DOMAIN_ALIASES)
                                .bind(d)
                                .fetch_all(&self.read)
                                .await?
                        }
                        None => sqlx::query(LIST_ALIASES).fetch_all(&self.read).await?,
                    };
                    let mut out: Vec<Alias> = Vec::new();
                    for r in rows {
                        let address: String = r.try_get("address")?;
                        let target: String = r.try_get("target")?;
                        match out.last_mut() {
                            Some(a) if a.address == address => a.targets.push(target),
                            _ => out.push(Alias {
                                address,
                                targets: vec![target],
                            }),
                        }
                    }
                    Ok(out)
                }

                async fn put_shard(&self, name: &str, weight: i64) -> Result<()> {
                    sqlx::query(PUT_SHARD)
                        .bind(name)
                        .bind(weight)
                        .execute(&self.write)
                        .await?;
                    Ok(())
                }

                async fn list_shards(&self) -> Result<Vec<Shard>> {
                    let rows = sqlx::query(LIST_SHARDS).fetch_all(&self.read).await?;
                    rows.iter()
                        .map(|r| {
                            Ok(Shard {
                                name: r.try_get("name")?,
                                weight: r.try_get("weight")?,
                                accounts: r.try_get("n")?,
                            })
                        })
                        .collect()
                }

                $($backend)*
            }
        };
    };
}

pub(crate) use impl_directory;
