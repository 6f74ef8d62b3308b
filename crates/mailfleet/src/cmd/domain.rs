//! `mailfleet domain add|remove|list`.

use clap::{Args, Subcommand};
use serde::Serialize;

use super::output::{print_json, print_table};
use super::{JsonOpt, StoreOpt, domain_arg, format_time, require_domain, store_err};

#[derive(Args)]
pub struct DomainCmd {
    #[command(flatten)]
    store: StoreOpt,
    #[command(subcommand)]
    action: DomainAction,
}

#[derive(Subcommand)]
enum DomainAction {
    /// Add a mail domain.
    Add { name: String },
    /// Remove a domain with all its accounts, their mail, and its aliases.
    Remove { name: String },
    /// List the domains.
    List {
        #[command(flatten)]
        json: JsonOpt,
    },
}

#[derive(Serialize)]
struct DomainRow {
    name: String,
    created: i64,
}

pub async fn run(cmd: DomainCmd) -> anyhow::Result<()> {
    // Check arguments before touching the store.
    match &cmd.action {
        DomainAction::Add { name } | DomainAction::Remove { name } => {
            domain_arg(name)?;
        }
        DomainAction::List { .. } => {}
    }
    let store = cmd.store.open().await?;
    match cmd.action {
        DomainAction::Add { name } => {
            let name = domain_arg(&name)?;
            store.add_domain(&name).await.map_err(store_err)?;
            println!("domain {name} added");
        }
        DomainAction::Remove { name } => {
            let name = domain_arg(&name)?;
            require_domain(store.as_ref(), &name).await?;
            store.remove_domain(&name).await.map_err(store_err)?;
            println!("domain {name} removed");
        }
        DomainAction::List { json } => {
            let domains = store.list_domains().await.map_err(store_err)?;
            if json.json {
                let rows: Vec<DomainRow> = domains
                    .into_iter()
                    .map(|d| DomainRow {
                        name: d.name,
                        created: d.created,
                    })
                    .collect();
                print_json(&rows)?;
            } else {
                let rows: Vec<Vec<String>> = domains
                    .iter()
                    .map(|d| vec![d.name.clone(), format_time(d.created)])
                    .collect();
                print_table(&["DOMAIN", "CREATED (UTC)"], &rows)?;
            }
        }
    }
    Ok(())
}
