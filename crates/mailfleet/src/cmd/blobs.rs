//! `mailfleet blobs gc`: removes message blobs nothing refers to any more.

use clap::{Args, Subcommand};

use super::{StoreOpt, store_err};

#[derive(Args)]
pub struct BlobsCmd {
    #[command(flatten)]
    store: StoreOpt,
    #[command(subcommand)]
    action: BlobsAction,
}

#[derive(Subcommand)]
enum BlobsAction {
    /// Delete blobs that no message and no queue item uses and that are older than the grace
    /// period (a blob is written just before the row that uses it is committed).
    Gc {
        /// Where the blobs are: `fs:PATH` or `db`, as in the nodes' configuration.
        #[arg(long, value_name = "fs:PATH|db", env = "MAILFLEET_BLOBS")]
        blobs: String,
        /// Keep unreferenced blobs younger than this many seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
        grace: u32,
    },
}

pub async fn run(cmd: BlobsCmd) -> anyhow::Result<()> {
    match cmd.action {
        BlobsAction::Gc { blobs, grace } => {
            let store = cmd.store.open().await?;
            let blob_store =
                mailfleet_store::open_blobs(&blobs, store.clone()).map_err(store_err)?;
            let removed = mailfleet_store::blob::collect_garbage(
                store.as_ref(),
                blob_store.as_ref(),
                mailfleet_store::now(),
                i64::from(grace),
            )
            .await
            .map_err(store_err)?;
            println!(
                "removed {}",
                super::output::count(removed as u64, "unused blob", "unused blobs")
            );
            Ok(())
        }
    }
}
