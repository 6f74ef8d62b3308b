//! `mailfleet queue list|show|retry|delete`: the outbound queue in the store.

use clap::{Args, Subcommand};
use mailfleet_store::QueueItem;

use super::output::{print_json, print_json_object, print_table};
use super::size::format_bytes;
use super::{JsonOpt, StoreOpt, format_time, store_err};

#[derive(Args)]
pub struct QueueCmd {
    #[command(flatten)]
    store: StoreOpt,
    #[command(subcommand)]
    action: QueueAction,
}

#[derive(Subcommand)]
enum QueueAction {
    /// List queued messages.
    List {
        #[command(flatten)]
        json: JsonOpt,
    },
    /// Show one queued message with its recipients.
    Show {
        id: i64,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Make a queued message due now (dropping any node's claim on it).
    Retry { id: i64 },
    /// Delete a queued message without sending a bounce.
    Delete { id: i64 },
}

fn not_found(id: i64) -> anyhow::Error {
    anyhow::anyhow!("queue item not found: {id}")
}

fn sender(item: &QueueItem) -> &str {
    if item.sender.is_empty() {
        "<>"
    } else {
        &item.sender
    }
}

pub async fn run(cmd: QueueCmd) -> anyhow::Result<()> {
    let store = cmd.store.open().await?;
    match cmd.action {
        QueueAction::List { json } => {
            let items = store.list_queue().await.map_err(store_err)?;
            if json.json {
                return print_json(&items);
            }
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|q| {
                    let pending = q
                        .recipients
                        .iter()
                        .filter(|r| r.status == "pending")
                        .count();
                    vec![
                        q.id.to_string(),
                        sender(q).to_string(),
                        format!("{pending}/{}", q.recipients.len()),
                        format_bytes(q.size),
                        q.attempts.to_string(),
                        format_time(q.next_attempt),
                        q.last_error.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            print_table(
                &[
                    "ID",
                    "SENDER",
                    "PENDING",
                    "SIZE",
                    "ATTEMPTS",
                    "NEXT ATTEMPT (UTC)",
                    "LAST ERROR",
                ],
                &rows,
            )
        }
        QueueAction::Show { id, json } => {
            let item = store
                .get_queue_item(id)
                .await
                .map_err(store_err)?
                .ok_or_else(|| not_found(id))?;
            if json {
                return print_json_object(&item);
            }
            let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
            let mut lines = vec![
                format!("id:            {}", item.id),
                format!("sender:        {}", sender(&item)),
                format!("size:          {}", format_bytes(item.size)),
                format!("blob:          {}", item.blob_id),
                format!("created:       {} UTC", format_time(item.created)),
                format!("next attempt:  {} UTC", format_time(item.next_attempt)),
                format!("attempts:      {}", item.attempts),
                format!("last error:    {}", opt(&item.last_error)),
                format!("envid:         {}", opt(&item.envid)),
                format!("ret:           {}", opt(&item.ret)),
                format!("delay warned:  {}", if item.warned { "yes" } else { "no" }),
            ];
            match (&item.lease_holder, item.lease_until) {
                (Some(holder), Some(until)) => lines.push(format!(
                    "claimed by:    {holder} until {} UTC",
                    format_time(until)
                )),
                _ => lines.push("claimed by:    -".into()),
            }
            lines.push("recipients:".into());
            for r in &item.recipients {
                let mut line = format!("  {}  {}", r.address, r.status);
                if let Some(e) = &r.last_error {
                    line.push_str(&format!("  ({e})"));
                }
                lines.push(line);
            }
            println!("{}", lines.join("\n"));
            Ok(())
        }
        QueueAction::Retry { id } => {
            if !store.retry_queue_item(id).await.map_err(store_err)? {
                return Err(not_found(id));
            }
            println!("queue item {id} is due now");
            Ok(())
        }
        QueueAction::Delete { id } => {
            if !store.delete_queue_item(id).await.map_err(store_err)? {
                return Err(not_found(id));
            }
            println!("queue item {id} deleted");
            Ok(())
        }
    }
}
