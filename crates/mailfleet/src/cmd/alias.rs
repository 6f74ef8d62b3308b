//! `mailfleet alias add|remove|list`.

use clap::{Args, Subcommand};
use mailfleet_store::StoreError;
use mailfleet_store::address::normalize_alias;

use super::output::{print_json, print_table};
use super::{JsonOpt, StoreOpt, address_arg, domain_arg, require_domain, store_err};

#[derive(Args)]
pub struct AliasCmd {
    #[command(flatten)]
    store: StoreOpt,
    #[command(subcommand)]
    action: AliasAction,
}

#[derive(Subcommand)]
enum AliasAction {
    /// Forward ALIAS (an address of a local domain, or `@domain` for every address of the
    /// domain without an account) to one or more targets; adds to an existing alias.
    Add {
        alias: String,
        #[arg(required = true, num_args = 1..)]
        targets: Vec<String>,
    },
    /// Remove an alias.
    Remove { alias: String },
    /// List aliases, all or one domain's.
    List {
        domain: Option<String>,
        #[command(flatten)]
        json: JsonOpt,
    },
}

fn alias_domain(alias: &str) -> &str {
    alias.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
}

pub async fn run(cmd: AliasCmd) -> anyhow::Result<()> {
    match cmd.action {
        AliasAction::Add { alias, targets } => {
            let alias = normalize_alias(&alias).map_err(store_err)?;
            let targets = targets
                .iter()
                .map(|t| address_arg(t))
                .collect::<anyhow::Result<Vec<String>>>()?;
            if targets.contains(&alias) {
                anyhow::bail!("alias {alias} cannot forward to itself");
            }
            let store = cmd.store.open().await?;
            require_domain(store.as_ref(), alias_domain(&alias)).await?;
            store.add_alias(&alias, &targets).await.map_err(store_err)?;
            println!("alias {alias} -> {}", targets.join(", "));
        }
        AliasAction::Remove { alias } => {
            let alias = normalize_alias(&alias).map_err(store_err)?;
            let store = cmd.store.open().await?;
            if store.get_alias(&alias).await.map_err(store_err)?.is_none() {
                return Err(store_err(StoreError::AliasNotFound(alias)));
            }
            store.remove_alias(&alias).await.map_err(store_err)?;
            println!("alias {alias} removed");
        }
        AliasAction::List { domain, json } => {
            let domain = domain.as_deref().map(domain_arg).transpose()?;
            let store = cmd.store.open().await?;
            if let Some(d) = &domain {
                require_domain(store.as_ref(), d).await?;
            }
            let aliases = store
                .list_aliases(domain.as_deref())
                .await
                .map_err(store_err)?;
            if json.json {
                print_json(&aliases)?;
            } else {
                let rows: Vec<Vec<String>> = aliases
                    .iter()
                    .map(|a| vec![a.address.clone(), a.targets.join(", ")])
                    .collect();
                print_table(&["ALIAS", "TARGETS"], &rows)?;
            }
        }
    }
    Ok(())
}
