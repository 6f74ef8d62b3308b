//! `mailfleet account add|set|remove|list`.

use clap::{Args, Subcommand};
use mailfleet_store::address::domain_of;
use mailfleet_store::{Account, AccountUpdate, NewAccount, StoreError};
use serde::Serialize;

use super::output::{print_json, print_table};
use super::size::{format_bytes, format_size, parse_size};
use super::{
    JsonOpt, StoreOpt, address_arg, domain_arg, hash_password, placement, read_password_stdin,
    require_domain, store_err,
};

#[derive(Args)]
pub struct AccountCmd {
    #[command(flatten)]
    store: StoreOpt,
    #[command(subcommand)]
    action: AccountAction,
}

#[derive(Subcommand)]
enum AccountAction {
    /// Create an account (and its INBOX). Without --password-stdin a password is generated and
    /// printed once.
    Add {
        address: String,
        /// Read the password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
        /// Mailbox quota: bytes, or a number with K, M, G or T; 0 or unlimited for none.
        #[arg(long, value_name = "SIZE")]
        quota: Option<String>,
        /// Home shard; by default the placement policy chooses.
        #[arg(long, value_name = "NAME")]
        shard: Option<String>,
    },
    /// Change an account's password, quota or state.
    Set {
        address: String,
        /// Read the new password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
        /// New quota: bytes, or a number with K, M, G or T; 0 or unlimited for none.
        #[arg(long, value_name = "SIZE")]
        quota: Option<String>,
        /// Enable or disable logins and delivery.
        #[arg(long, value_name = "true|false", action = clap::ArgAction::Set)]
        enabled: Option<bool>,
    },
    /// Remove an account with its mailboxes and messages.
    Remove { address: String },
    /// List accounts, all or one domain's.
    List {
        domain: Option<String>,
        #[command(flatten)]
        json: JsonOpt,
    },
}

/// A `--quota` value, if given.
fn quota_arg(s: Option<&str>) -> anyhow::Result<Option<i64>> {
    Ok(s.map(parse_size).transpose()?)
}

/// One account as `account list --json` prints it.
#[derive(Serialize)]
pub struct AccountRow {
    pub address: String,
    pub shard: String,
    pub quota_bytes: i64,
    pub used_bytes: i64,
    pub enabled: bool,
}

impl From<Account> for AccountRow {
    fn from(a: Account) -> Self {
        Self {
            address: a.address,
            shard: a.shard,
            quota_bytes: a.quota_bytes,
            used_bytes: a.used_bytes,
            enabled: a.enabled,
        }
    }
}

pub async fn run(cmd: AccountCmd) -> anyhow::Result<()> {
    match cmd.action {
        AccountAction::Add {
            address,
            password_stdin,
            quota,
            shard,
        } => {
            let quota = quota_arg(quota.as_deref())?;
            add(&cmd.store, &address, password_stdin, quota, shard).await
        }
        AccountAction::Set {
            address,
            password_stdin,
            quota,
            enabled,
        } => {
            let address = address_arg(&address)?;
            let quota = quota_arg(quota.as_deref())?;
            if !password_stdin && quota.is_none() && enabled.is_none() {
                anyhow::bail!("nothing to change: give --password-stdin, --quota or --enabled");
            }
            let password = if password_stdin {
                Some(read_password_stdin()?)
            } else {
                None
            };
            let store = cmd.store.open().await?;
            if store
                .get_account(&address)
                .await
                .map_err(store_err)?
                .is_none()
            {
                return Err(store_err(StoreError::AccountNotFound(address)));
            }
            let password_hash = match password {
                Some(p) => Some(hash_password(p).await?),
                None => None,
            };
            let update = AccountUpdate {
                password_hash,
                quota_bytes: quota,
                enabled,
                shard: None,
            };
            let a = store
                .update_account(&address, &update)
                .await
                .map_err(store_err)?;
            println!(
                "account {} updated (quota {}, {})",
                a.address,
                format_size(a.quota_bytes),
                if a.enabled { "enabled" } else { "disabled" }
            );
            Ok(())
        }
        AccountAction::Remove { address } => {
            let address = address_arg(&address)?;
            let store = cmd.store.open().await?;
            if store
                .get_account(&address)
                .await
                .map_err(store_err)?
                .is_none()
            {
                return Err(store_err(StoreError::AccountNotFound(address)));
            }
            store.remove_account(&address).await.map_err(store_err)?;
            println!("account {address} removed");
            Ok(())
        }
        AccountAction::List { domain, json } => {
            let domain = domain.as_deref().map(domain_arg).transpose()?;
            let store = cmd.store.open().await?;
            if let Some(d) = &domain {
                require_domain(store.as_ref(), d).await?;
            }
            let accounts = store
                .list_accounts(domain.as_deref())
                .await
                .map_err(store_err)?;
            if json.json {
                let rows: Vec<AccountRow> = accounts.into_iter().map(AccountRow::from).collect();
                print_json(&rows)
            } else {
                let rows: Vec<Vec<String>> = accounts
                    .iter()
                    .map(|a| {
                        vec![
                            a.address.clone(),
                            a.shard.clone(),
                            format_size(a.quota_bytes),
                            format_bytes(a.used_bytes),
                            if a.enabled { "yes" } else { "no" }.to_string(),
                        ]
                    })
                    .collect();
                print_table(&["ADDRESS", "SHARD", "QUOTA", "USED", "ENABLED"], &rows)
            }
        }
    }
}

async fn add(
    store_opt: &StoreOpt,
    address: &str,
    password_stdin: bool,
    quota: Option<i64>,
    shard: Option<String>,
) -> anyhow::Result<()> {
    let address = address_arg(address)?;
    let (password, generated) = if password_stdin {
        (read_password_stdin()?, false)
    } else {
        (mailfleet_store::password::generate_password(), true)
    };
    let store = store_opt.open().await?;
    let domain = domain_of(&address).to_string();
    require_domain(store.as_ref(), &domain).await?;
    if store
        .get_account(&address)
        .await
        .map_err(store_err)?
        .is_some()
    {
        return Err(store_err(StoreError::AccountExists(address)));
    }
    let mut placer = placement::load(store.as_ref()).await?;
    placement::learn_domain(&mut placer, store.as_ref(), &domain).await?;
    let shard = placer
        .place(&domain, shard.as_deref())
        .map_err(|e| anyhow::anyhow!(e))?;
    let password_hash = hash_password(password.clone()).await?;
    let account = store
        .create_account(&NewAccount {
            address,
            password_hash,
            quota_bytes: quota.unwrap_or(0),
            shard,
        })
        .await
        .map_err(store_err)?;
    println!(
        "account {} created on shard {} (quota {})",
        account.address,
        account.shard,
        format_size(account.quota_bytes)
    );
    if generated {
        println!("password: {password}");
    }
    Ok(())
}
