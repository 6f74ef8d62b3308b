//! Admin commands: provisioning and inspection through the shared store.
//!
//! Every command takes `--store URL` (or `MAILFLEET_STORE`); list commands take `--json` and
//! then print exactly one JSON array of objects on stdout. Failures come back as one-line
//! `anyhow` errors that `main` prints as `mailfleet: <problem>` with exit code 1.

mod account;
mod alias;
mod backup;
pub mod balancer_ctl;
mod blobs;
mod domain;
mod import;
mod mailbox;
pub mod node_admin;
mod output;
pub mod placement;
mod queue;
mod settings;
mod shard;
pub mod size;
mod status;
mod store;

use std::sync::Arc;

use clap::{Args, Subcommand};
use mailfleet_store::{Store, StoreError};

/// The admin command groups, flattened into the top-level `mailfleet` command.
#[derive(Subcommand)]
pub enum AdminCommand {
    /// Add, remove and list mail domains.
    Domain(domain::DomainCmd),
    /// Create, change, remove and list accounts.
    Account(account::AccountCmd),
    /// Forward addresses (or a whole domain, `@domain`) to other addresses.
    Alias(alias::AliasCmd),
    /// Add and list shards (the homes accounts are placed on).
    Shard(shard::ShardCmd),
    /// Choose where new accounts without `--shard` go.
    Placement(placement::PlacementCmd),
    /// Bulk imports.
    Import(import::ImportCmd),
    /// Inspect mailboxes.
    Mailbox(mailbox::MailboxCmd),
    /// Message blob maintenance.
    Blobs(blobs::BlobsCmd),
    /// Cluster settings kept in the store and applied live on every node.
    Settings(settings::SettingsCmd),
    /// Inspect and act on the outbound queue.
    Queue(queue::QueueCmd),
    /// The cluster at a glance: nodes alive or dead, the master, connections, queue, settings.
    Status(status::StatusCmd),
    /// Back up the whole store and its blobs into a backup area (incremental for blobs).
    Backup(backup::BackupCmd),
    /// Restore a backup into an empty store.
    Restore(backup::RestoreCmd),
    /// Whole-store operations: copy a store into an empty one on another backend.
    Store(store::StoreCmd),
}

/// Runs one admin command to completion.
pub async fn run(cmd: AdminCommand) -> anyhow::Result<()> {
    match cmd {
        AdminCommand::Domain(c) => domain::run(c).await,
        AdminCommand::Account(c) => account::run(c).await,
        AdminCommand::Alias(c) => alias::run(c).await,
        AdminCommand::Shard(c) => shard::run(c).await,
        AdminCommand::Placement(c) => placement::run(c).await,
        AdminCommand::Import(c) => import::run(c).await,
        AdminCommand::Mailbox(c) => mailbox::run(c).await,
        AdminCommand::Blobs(c) => blobs::run(c).await,
        AdminCommand::Settings(c) => settings::run(c).await,
        AdminCommand::Queue(c) => queue::run(c).await,
        AdminCommand::Status(c) => status::run(c).await,
        AdminCommand::Backup(c) => backup::run_backup(c).await,
        AdminCommand::Restore(c) => backup::run_restore(c).await,
        AdminCommand::Store(c) => store::run(c).await,
    }
}

/// `--store URL`, shared by every admin command.
#[derive(Args, Clone)]
pub struct StoreOpt {
    /// The shared store: `sqlite:PATH` or `postgres://USER:PASSWORD@HOST/DB`.
    #[arg(
        long = "store",
        value_name = "URL",
        env = "MAILFLEET_STORE",
        hide_env_values = true,
        global = true
    )]
    url: Option<String>,
}

impl StoreOpt {
    /// Opens (and migrates) the store.
    pub async fn open(&self) -> anyhow::Result<Arc<dyn Store>> {
        let url = self
            .url
            .as_deref()
            .filter(|u| !u.trim().is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!("no store given: pass --store URL or set MAILFLEET_STORE")
            })?;
        mailfleet_store::open(url).await.map_err(store_err)
    }
}

/// `--json` of list commands.
#[derive(Args, Clone, Copy)]
pub struct JsonOpt {
    /// Print one JSON array of objects instead of columns.
    #[arg(long)]
    pub json: bool,
}

/// A store error as the one line the user sees. `Invalid` carries a complete sentence already
/// ("malformed address ..."), so its "invalid value" prefix is dropped.
pub fn store_err(e: StoreError) -> anyhow::Error {
    match e {
        StoreError::Invalid(msg) => anyhow::anyhow!(msg),
        other => anyhow::anyhow!(other),
    }
}

/// A checked, lower-cased address.
pub fn address_arg(input: &str) -> anyhow::Result<String> {
    mailfleet_store::address::normalize_address(input).map_err(store_err)
}

/// A checked, lower-cased domain name.
pub fn domain_arg(input: &str) -> anyhow::Result<String> {
    mailfleet_store::address::normalize_domain(input).map_err(store_err)
}

/// Fails with "domain not found: NAME" unless the domain exists.
pub async fn require_domain(store: &dyn Store, domain: &str) -> anyhow::Result<()> {
    if store.domain_exists(domain).await.map_err(store_err)? {
        Ok(())
    } else {
        Err(store_err(StoreError::DomainNotFound(domain.to_string())))
    }
}

/// Reads a password from stdin: the first line, without its line ending.
pub fn read_password_stdin() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| anyhow::anyhow!("cannot read the password from stdin: {e}"))?;
    let password = line.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        anyhow::bail!("empty password on stdin");
    }
    Ok(password)
}

/// Hashes a password off the async threads (argon2id takes tens of milliseconds).
pub async fn hash_password(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || mailfleet_store::password::hash_password(&password))
        .await
        .map_err(|e| anyhow::anyhow!("password hashing task failed: {e}"))?
        .map_err(store_err)
}

/// A Unix timestamp as UTC date and time, for tables.
pub fn format_time(ts: mailfleet_store::Timestamp) -> String {
    match chrono::DateTime::from_timestamp(ts, 0) {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        None => ts.to_string(),
    }
}
