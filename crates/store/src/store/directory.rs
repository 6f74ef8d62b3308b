//! The directory: domains, accounts, aliases and shards.

use async_trait::async_trait;

use super::Result;
use crate::model::{Account, AccountUpdate, Alias, Domain, NewAccount, Shard};

/// Who has mail here: domains, their accounts and aliases, and the shards accounts live on.
#[async_trait]
pub trait Directory: Send + Sync {
    // ---- domains ----
    async fn add_domain(&self, name: &str) -> Result<()>;
    /// Removes the domain with its accounts, their mailboxes and messages, and its aliases.
    async fn remove_domain(&self, name: &str) -> Result<()>;
    async fn list_domains(&self) -> Result<Vec<Domain>>;
    async fn domain_exists(&self, name: &str) -> Result<bool>;

    // ---- accounts ----
    /// Creates the account and its INBOX. Fails with `AccountExists` or `DomainNotFound`.
    async fn create_account(&self, account: &NewAccount) -> Result<Account>;
    /// Creates many accounts, all or none (an import batch). Each is independent of the others:
    /// the caller checks duplicates first.
    async fn create_accounts(&self, accounts: &[NewAccount]) -> Result<()>;
    async fn get_account(&self, address: &str) -> Result<Option<Account>>;
    async fn get_account_by_id(&self, id: i64) -> Result<Option<Account>>;
    async fn update_account(&self, address: &str, update: &AccountUpdate) -> Result<Account>;
    async fn remove_account(&self, address: &str) -> Result<()>;
    /// All accounts, or a domain's, ordered by address.
    async fn list_accounts(&self, domain: Option<&str>) -> Result<Vec<Account>>;

    // ---- aliases ----
    /// Adds targets to an alias (creating it).
    async fn add_alias(&self, address: &str, targets: &[String]) -> Result<()>;
    async fn remove_alias(&self, address: &str) -> Result<()>;
    async fn get_alias(&self, address: &str) -> Result<Option<Alias>>;
    async fn list_aliases(&self, domain: Option<&str>) -> Result<Vec<Alias>>;

    // ---- shards ----
    /// Adds a shard or changes its weight.
    async fn put_shard(&self, name: &str, weight: i64) -> Result<()>;
    async fn list_shards(&self) -> Result<Vec<Shard>>;
}
