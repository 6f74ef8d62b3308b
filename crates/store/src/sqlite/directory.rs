//! The directory on SQLite: domains, accounts, aliases and shards.

use super::*;

impl SqliteStore {
    pub(super) async fn add_domain_impl(&self, name: &str) -> Result<()> {
        sqlx::query("INSERT INTO domains (name, created) VALUES (?, ?)")
            .bind(name)
            .bind(now())
            .execute(&self.write)
            .await
            .map_err(|e| map_unique(e, || StoreError::DomainExists(name.into())))?;
        Ok(())
    }

    pub(super) async fn remove_domain_impl(&self, name: &str) -> Result<()> {
        let r = sqlx::query("DELETE FROM domains WHERE name = ?")
            .bind(name)
            .execute(&self.write)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::DomainNotFound(name.into()));
        }
        Ok(())
    }

    pub(super) async fn list_domains_impl(&self) -> Result<Vec<Domain>> {
        let rows = sqlx::query("SELECT name, created FROM domains ORDER BY name")
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Domain {
                    name: r.try_get("name")?,
                    created: r.try_get("created")?,
                })
            })
            .collect()
    }

    pub(super) async fn domain_exists_impl(&self, name: &str) -> Result<bool> {
        Ok(
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM domains WHERE name = ?")
                .bind(name)
                .fetch_one(&self.read)
                .await?
                > 0,
        )
    }

    pub(super) async fn create_account_impl(&self, account: &NewAccount) -> Result<Account> {
        let mut tx = self.tx().await?;
        let id = Self::insert_account(&mut tx, account).await?;
        tx.commit().await?;
        self.get_account_by_id(id)
            .await?
            .ok_or_else(|| StoreError::AccountNotFound(account.address.clone()))
    }

    pub(super) async fn create_accounts_impl(&self, accounts: &[NewAccount]) -> Result<()> {
        let mut tx = self.tx().await?;
        for a in accounts {
            Self::insert_account(&mut tx, a).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn get_account_impl(&self, address: &str) -> Result<Option<Account>> {
        let row = sqlx::query(&format!(
            "SELECT {ACCOUNT_COLS} FROM accounts WHERE address = ?"
        ))
        .bind(address)
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(account_from).transpose()
    }

    pub(super) async fn get_account_by_id_impl(&self, id: i64) -> Result<Option<Account>> {
        let row = sqlx::query(&format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.write)
            .await?;
        row.as_ref().map(account_from).transpose()
    }

    pub(super) async fn update_account_impl(
        &self,
        address: &str,
        u: &AccountUpdate,
    ) -> Result<Account> {
        let row = sqlx::query(&format!(
            "UPDATE accounts SET password_hash = COALESCE(?, password_hash), \
             quota_bytes = COALESCE(?, quota_bytes), enabled = COALESCE(?, enabled), \
             shard = COALESCE(?, shard) WHERE address = ? RETURNING {ACCOUNT_COLS}"
        ))
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

    pub(super) async fn remove_account_impl(&self, address: &str) -> Result<()> {
        let r = sqlx::query("DELETE FROM accounts WHERE address = ?")
            .bind(address)
            .execute(&self.write)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::AccountNotFound(address.into()));
        }
        Ok(())
    }

    pub(super) async fn list_accounts_impl(&self, domain: Option<&str>) -> Result<Vec<Account>> {
        let rows = match domain {
            Some(d) => {
                if !self.domain_exists(d).await? {
                    return Err(StoreError::DomainNotFound(d.into()));
                }
                sqlx::query(&format!(
                    "SELECT {ACCOUNT_COLS} FROM accounts WHERE domain = ? ORDER BY address"
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

    pub(super) async fn add_alias_impl(&self, address: &str, targets: &[String]) -> Result<()> {
        let domain = schema::alias_domain(address).to_string();
        let mut tx = self.tx().await?;
        for t in targets {
            sqlx::query(
                "INSERT INTO aliases (address, target, domain) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            )
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

    pub(super) async fn remove_alias_impl(&self, address: &str) -> Result<()> {
        let r = sqlx::query("DELETE FROM aliases WHERE address = ?")
            .bind(address)
            .execute(&self.write)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::AliasNotFound(address.into()));
        }
        Ok(())
    }

    pub(super) async fn get_alias_impl(&self, address: &str) -> Result<Option<Alias>> {
        let targets: Vec<String> =
            sqlx::query_scalar("SELECT target FROM aliases WHERE address = ? ORDER BY target")
                .bind(address)
                .fetch_all(&self.read)
                .await?;
        Ok((!targets.is_empty()).then(|| Alias {
            address: address.into(),
            targets,
        }))
    }

    pub(super) async fn list_aliases_impl(&self, domain: Option<&str>) -> Result<Vec<Alias>> {
        let rows = match domain {
            Some(d) => {
                if !self.domain_exists(d).await? {
                    return Err(StoreError::DomainNotFound(d.into()));
                }
                sqlx::query(
                    "SELECT address, target FROM aliases WHERE domain = ? ORDER BY address, target",
                )
                .bind(d)
                .fetch_all(&self.read)
                .await?
            }
            None => {
                sqlx::query("SELECT address, target FROM aliases ORDER BY address, target")
                    .fetch_all(&self.read)
                    .await?
            }
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

    pub(super) async fn put_shard_impl(&self, name: &str, weight: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO shards (name, weight) VALUES (?, ?) \
             ON CONFLICT (name) DO UPDATE SET weight = excluded.weight",
        )
        .bind(name)
        .bind(weight)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    pub(super) async fn list_shards_impl(&self) -> Result<Vec<Shard>> {
        let rows = sqlx::query(
            "SELECT s.name, s.weight, (SELECT COUNT(*) FROM accounts a WHERE a.shard = s.name) AS n \
             FROM shards s ORDER BY s.name",
        )
        .fetch_all(&self.read)
        .await?;
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
}
