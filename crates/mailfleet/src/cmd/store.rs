//! `mailfleet store copy`: a whole store into an empty one on another backend (a one-machine
//! SQLite install onto PostgreSQL, so that more nodes can join), verified table by table.
//! `mailfleet store reindex`: the full-text index for the messages that have none (a store
//! restored or copied: neither carries it), at once instead of by the master's job.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::backup::print_tables;
use super::output::count;
use super::store_err;

#[derive(Args)]
pub struct StoreCmd {
    #[command(subcommand)]
    action: StoreAction,
}

#[derive(Subcommand)]
enum StoreAction {
    /// Copy every table of a store, read in one snapshot, into an empty store; prints each
    /// table's rows and checksum, equal on both sides. Blobs in the store's own table go with
    /// it; blob files stay where they are unless --blobs-from and --blobs-to are given.
    Copy {
        /// The store to copy: `sqlite:PATH` or `postgres://...`.
        #[arg(long, value_name = "URL")]
        from: String,
        /// The empty store to copy into.
        #[arg(long, value_name = "URL")]
        to: String,
        /// The source's blob directory (`fs:PATH`), to copy its files to --blobs-to.
        #[arg(long, value_name = "fs:PATH", requires = "blobs_to")]
        blobs_from: Option<String>,
        /// Where the copied blob files go (`fs:PATH`, or `db` for the target's blobs table).
        #[arg(long, value_name = "fs:PATH|db", requires = "blobs_from")]
        blobs_to: Option<String>,
        /// A directory for the dump on its way (default: a temporary directory).
        #[arg(long, value_name = "DIR")]
        work_dir: Option<PathBuf>,
    },
    /// Put into the full-text index the text of every message it has no row for, reading the
    /// messages from --blobs. The master does the same in the background (its `text-index`
    /// job); searches are right without the index, only slower.
    Reindex {
        #[command(flatten)]
        store: super::StoreOpt,
        /// Where the messages are: the nodes' `blobs` (`fs:PATH` or `db`).
        #[arg(long, value_name = "fs:PATH|db")]
        blobs: String,
    },
}

pub async fn run(cmd: StoreCmd) -> anyhow::Result<()> {
    match cmd.action {
        StoreAction::Reindex { store, blobs } => {
            let store = store.open().await?;
            let blobs = mailfleet_store::open_blobs(&blobs, store.clone()).map_err(store_err)?;
            let (mut indexed, mut skipped, mut after) = (0, 0, String::new());
            loop {
                let page = mailfleet_delivery::text_index::index_missing_text(
                    store.as_ref(),
                    blobs.as_ref(),
                    &after,
                    500,
                )
                .await
                .map_err(store_err)?;
                indexed += page.indexed;
                skipped += page.skipped;
                match page.last {
                    Some(last) => after = last,
                    None => break,
                }
            }
            println!(
                "{} indexed; {} left out (text too long for the index, or blob missing)",
                count(indexed as u64, "message", "messages"),
                count(skipped as u64, "message", "messages"),
            );
            Ok(())
        }
        StoreAction::Copy {
            from,
            to,
            blobs_from,
            blobs_to,
            work_dir,
        } => {
            if from == to {
                anyhow::bail!("--from and --to name the same store");
            }
            let source = mailfleet_store::open(&from).await.map_err(store_err)?;
            let target = mailfleet_store::open(&to).await.map_err(store_err)?;
            let blob_stores = match (&blobs_from, &blobs_to) {
                (Some(a), Some(b)) => Some((
                    mailfleet_store::open_blobs(a, source.clone()).map_err(store_err)?,
                    mailfleet_store::open_blobs(b, target.clone()).map_err(store_err)?,
                )),
                _ => None,
            };
            let work = match &work_dir {
                Some(d) => tempfile::Builder::new()
                    .prefix("mailfleet-store-copy-")
                    .tempdir_in(d),
                None => tempfile::Builder::new()
                    .prefix("mailfleet-store-copy-")
                    .tempdir(),
            }
            .map_err(|e| anyhow::anyhow!("cannot make a work directory: {e}"))?;
            let report = mailfleet_store::backup::copy_store(
                source,
                target.as_ref(),
                blob_stores.as_ref().map(|(a, b)| (a.as_ref(), b.as_ref())),
                work.path(),
            )
            .await
            .map_err(store_err)?;
            println!(
                "copied {} to {}",
                mailfleet_store::redact_url(&from),
                mailfleet_store::redact_url(&to)
            );
            println!("source (one snapshot):");
            print_tables(&report.source)?;
            println!("target (read back before commit):");
            print_tables(&report.target)?;
            println!(
                "{} in the blobs table copied with it",
                count(report.blobs_in_table, "blob", "blobs")
            );
            match (&blobs_from, &blobs_to) {
                (Some(a), Some(b)) => println!(
                    "{} copied from {a} to {b}",
                    count(report.blobs_copied, "blob file", "blob files")
                ),
                _ => println!(
                    "{} kept where they are: point the nodes' `blobs` at that directory",
                    count(report.blobs_outside, "blob file", "blob files")
                ),
            }
            Ok(())
        }
    }
}
