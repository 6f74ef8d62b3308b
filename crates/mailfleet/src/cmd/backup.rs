//! `mailfleet backup DIR` and `mailfleet restore DIR`: the whole store and its blobs, into a
//! backup area and back (`mailfleet_store::backup`).

use std::path::PathBuf;

use clap::Args;
use mailfleet_store::transfer::TableSummary;

use super::output::{count, print_table};
use super::size::format_bytes;
use super::{StoreOpt, store_err};

#[derive(Args)]
pub struct BackupCmd {
    #[command(flatten)]
    store: StoreOpt,
    /// The backup area: each backup is a directory in it, beside one shared blob directory.
    dir: PathBuf,
    /// Where the nodes keep blobs: `fs:PATH` or `db`, as in their configuration. Without it only
    /// the blobs in the store's own table are backed up, and the backup fails if there are others.
    #[arg(long, value_name = "fs:PATH|db", env = "MAILFLEET_BLOBS")]
    blobs: Option<String>,
    /// The backup's name, with strftime date variables in UTC.
    #[arg(long, value_name = "PATTERN", default_value = mailfleet_store::backup::DEFAULT_NAME)]
    name: String,
    /// Keep only the newest N backups of the area (older ones, and blobs only they used, are
    /// removed).
    #[arg(long, value_name = "N")]
    keep: Option<usize>,
}

#[derive(Args)]
pub struct RestoreCmd {
    #[command(flatten)]
    store: StoreOpt,
    /// A backup directory, or a backup area (its newest complete backup).
    dir: PathBuf,
    /// Where the restored store's nodes keep blobs (`fs:PATH` or `db`); needed when the backup
    /// holds blobs that were kept as files.
    #[arg(long, value_name = "fs:PATH|db", env = "MAILFLEET_BLOBS")]
    blobs: Option<String>,
}

pub async fn run_backup(cmd: BackupCmd) -> anyhow::Result<()> {
    if cmd.keep == Some(0) {
        anyhow::bail!("--keep 0 would remove the backup just made");
    }
    let store = cmd.store.open().await?;
    let blobs = mailfleet_store::open_blobs(cmd.blobs.as_deref().unwrap_or("db"), store.clone())
        .map_err(store_err)?;
    let report = mailfleet_store::backup::backup(
        store.as_ref(),
        blobs.as_ref(),
        &cmd.dir,
        &mailfleet_store::backup::BackupOptions {
            name_pattern: &cmd.name,
            keep: cmd.keep,
            // Without --blobs, a blob outside the store's table is one the command was not told
            // where to find: fail rather than keep a backup without it.
            require_all_blobs: cmd.blobs.is_none(),
            fence: None,
        },
        chrono::Utc::now(),
    )
    .await
    .map_err(|e| match (&e, &cmd.blobs) {
        (mailfleet_store::StoreError::Invalid(m), None) if m.contains("cannot be read") => {
            anyhow::anyhow!("{m}; pass --blobs fs:PATH (the nodes' blob directory)")
        }
        _ => store_err(e),
    })?;
    let m = &report.manifest;
    println!(
        "backup {} written to {}",
        report.name,
        report.path.display()
    );
    println!(
        "{}, {}; {}, {} copied ({}), the others already in the area",
        count(m.tables.len() as u64, "table", "tables"),
        count(m.tables.iter().map(|t| t.rows).sum::<u64>(), "row", "rows"),
        count(m.blobs, "blob", "blobs"),
        report.blobs_copied,
        format_bytes(report.blobs_bytes_copied as i64)
    );
    if !m.missing_blobs.is_empty() {
        println!(
            "warning: {} the store refers to could not be read (listed in the manifest)",
            count(m.missing_blobs.len() as u64, "blob", "blobs")
        );
    }
    if !report.removed_backups.is_empty() {
        println!(
            "removed {} ({}) and {} only they used",
            count(
                report.removed_backups.len() as u64,
                "old backup",
                "old backups"
            ),
            report.removed_backups.join(", "),
            count(report.removed_blobs, "blob", "blobs")
        );
    }
    Ok(())
}

pub async fn run_restore(cmd: RestoreCmd) -> anyhow::Result<()> {
    let store = cmd.store.open().await?;
    let blobs = match &cmd.blobs {
        Some(spec) => Some(mailfleet_store::open_blobs(spec, store.clone()).map_err(store_err)?),
        None => None,
    };
    let report = mailfleet_store::backup::restore(store.as_ref(), blobs.as_deref(), &cmd.dir)
        .await
        .map_err(store_err)?;
    println!(
        "restored backup {} ({}, taken from {} at schema version {})",
        report.manifest.name,
        report.path.display(),
        report.manifest.backend,
        report.manifest.schema_version
    );
    print_tables(&report.tables)?;
    println!(
        "{} in the store's blobs table, {} written to {}",
        count(report.blobs_in_table, "blob", "blobs"),
        count(report.blobs_written, "blob", "blobs"),
        cmd.blobs.as_deref().unwrap_or("-")
    );
    if !report.manifest.missing_blobs.is_empty() {
        println!(
            "warning: the backup lacks {} the store referred to when it was taken",
            count(report.manifest.missing_blobs.len() as u64, "blob", "blobs")
        );
    }
    Ok(())
}

/// Each table's rows and checksum.
pub fn print_tables(tables: &[TableSummary]) -> anyhow::Result<()> {
    let rows: Vec<Vec<String>> = tables
        .iter()
        .map(|t| vec![t.name.clone(), t.rows.to_string(), t.checksum.clone()])
        .collect();
    print_table(&["TABLE", "ROWS", "CHECKSUM"], &rows)
}
