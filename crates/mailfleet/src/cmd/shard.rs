//! `mailfleet shard add|list`.

use clap::{Args, Subcommand};

use super::output::{print_json, print_table};
use super::{JsonOpt, StoreOpt, store_err};

#[derive(Args)]
pub struct ShardCmd {
    #[command(flatten)]
    store: StoreOpt,
    #[command(subcommand)]
    action: ShardAction,
}

#[derive(Subcommand)]
enum ShardAction {
    /// Add a shard, or change the weight of an existing one.
    Add {
        name: String,
        /// Share of new accounts under the `weighted` policy; 0 takes no new accounts.
        #[arg(long, default_value_t = 1)]
        weight: i64,
    },
    /// List the shards with their weights and account counts.
    List {
        #[command(flatten)]
        json: JsonOpt,
    },
}

/// A shard name: 1 to 64 lower-case letters, digits, `-`, `_` or `.`.
pub fn check_shard_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.'
        });
    if ok {
        Ok(())
    } else {
        anyhow::bail!(
            "malformed shard name {name:?}: use 1 to 64 lower-case letters, digits, '-', '_' or '.'"
        )
    }
}

pub async fn run(cmd: ShardCmd) -> anyhow::Result<()> {
    match cmd.action {
        ShardAction::Add { name, weight } => {
            check_shard_name(&name)?;
            if !(0..=1_000_000).contains(&weight) {
                anyhow::bail!("shard weight {weight}: expected 0 to 1000000");
            }
            let store = cmd.store.open().await?;
            store.put_shard(&name, weight).await.map_err(store_err)?;
            println!("shard {name} (weight {weight})");
        }
        ShardAction::List { json } => {
            let store = cmd.store.open().await?;
            let shards = store.list_shards().await.map_err(store_err)?;
            if json.json {
                print_json(&shards)?;
            } else {
                let rows: Vec<Vec<String>> = shards
                    .iter()
                    .map(|s| vec![s.name.clone(), s.weight.to_string(), s.accounts.to_string()])
                    .collect();
                print_table(&["SHARD", "WEIGHT", "ACCOUNTS"], &rows)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names() {
        for good in ["default", "eu-1", "b_2", "x.y", "a"] {
            assert!(check_shard_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Big", "a b", "a/b", &"x".repeat(65)] {
            assert!(check_shard_name(bad).is_err(), "{bad}");
        }
    }
}
