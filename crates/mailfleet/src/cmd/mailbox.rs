//! `mailfleet mailbox status ADDRESS`.

use clap::{Args, Subcommand};
use mailfleet_store::StoreError;

use super::output::{print_json, print_table};
use super::size::format_bytes;
use super::{JsonOpt, StoreOpt, address_arg, store_err};

#[derive(Args)]
pub struct MailboxCmd {
    #[command(flatten)]
    store: StoreOpt,
    #[command(subcommand)]
    action: MailboxAction,
}

#[derive(Subcommand)]
enum MailboxAction {
    /// Messages, unseen, UIDNEXT, UIDVALIDITY and bytes of each mailbox of an account.
    Status {
        address: String,
        #[command(flatten)]
        json: JsonOpt,
    },
}

pub async fn run(cmd: MailboxCmd) -> anyhow::Result<()> {
    match cmd.action {
        MailboxAction::Status { address, json } => {
            let address = address_arg(&address)?;
            let store = cmd.store.open().await?;
            let account = store
                .get_account(&address)
                .await
                .map_err(store_err)?
                .ok_or_else(|| store_err(StoreError::AccountNotFound(address.clone())))?;
            let mut status = store.mailbox_status(account.id).await.map_err(store_err)?;
            status.sort_by(|a, b| a.name.cmp(&b.name));
            if json.json {
                print_json(&status)
            } else {
                let rows: Vec<Vec<String>> = status
                    .iter()
                    .map(|m| {
                        vec![
                            m.name.clone(),
                            m.messages.to_string(),
                            m.unseen.to_string(),
                            m.uidnext.to_string(),
                            m.uidvalidity.to_string(),
                            format_bytes(m.bytes),
                        ]
                    })
                    .collect();
                print_table(
                    &[
                        "MAILBOX",
                        "MESSAGES",
                        "UNSEEN",
                        "UIDNEXT",
                        "UIDVALIDITY",
                        "BYTES",
                    ],
                    &rows,
                )
            }
        }
    }
}
