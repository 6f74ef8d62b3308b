//! Backups of the whole store, restore, and copying a store to another backend.
//!
//! A backup area is a directory holding one directory per backup and one shared blob
//! directory:
//!
//! ```text
//! AREA/blobs/ab/cd/<sha256>        every blob any kept backup refers to, once (content-addressed)
//! AREA/NAME/manifest.json          written last: schema version, tables (rows, checksums), ...
//! AREA/NAME/tables/TABLE.jsonl     the dump (crate::transfer)
//! AREA/NAME/blobs.list             the blob ids this backup refers to
//! AREA/.partial-NAME-*/            a backup being written (renamed to NAME when complete)
//! AREA/.lock                       held while a backup or its retention runs
//! ```
//!
//! A backup copies only blobs not in `AREA/blobs` yet, so a second backup of an unchanged store
//! writes no blob. It is written under a `.partial-` name and renamed into place only when its
//! manifest is on disk, so a directory without a manifest is never taken for a backup. With a
//! retention count, the oldest backups beyond it are removed, then every blob no remaining
//! backup lists.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::blob::{BlobStore, FsBlobs, blob_id};
use crate::error::StoreError;
use crate::store::{Result, Store};
use crate::transfer::{self, Sequence, TableSummary};

/// The format of `manifest.json`; a restore refuses others.
pub const FORMAT: u32 = 1;
/// The default backup name: UTC date and time (`chrono` strftime variables).
pub const DEFAULT_NAME: &str = "mailfleet-%Y%m%d-%H%M%S";
const MANIFEST: &str = "manifest.json";
const BLOB_LIST: &str = "blobs.list";
const BLOB_AREA: &str = "blobs";
const PARTIAL: &str = ".partial-";

/// `manifest.json`: what a backup holds, written after everything else.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub name: String,
    /// Unix time the backup started.
    pub created: i64,
    pub mailfleet_version: String,
    pub schema_version: i64,
    /// The backend it was taken from (`sqlite`, `postgres`).
    pub backend: String,
    pub tables: Vec<TableSummary>,
    pub sequences: Vec<Sequence>,
    /// How many blobs `blobs.list` names, and the SHA-256 of that file.
    pub blobs: u64,
    pub blobs_list_sha256: String,
    /// Blobs the store refers to that could not be read when the backup was taken.
    #[serde(default)]
    pub missing_blobs: Vec<String>,
}

/// What [`backup`] did.
#[derive(Debug, Clone)]
pub struct BackupReport {
    pub name: String,
    pub path: PathBuf,
    pub manifest: Manifest,
    /// Blobs written to the blob area by this backup (the others were there already).
    pub blobs_copied: u64,
    pub blobs_bytes_copied: u64,
    /// Backups removed by the retention count, and blobs removed with them.
    pub removed_backups: Vec<String>,
    pub removed_blobs: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::BlobIo {
        path: path.display().to_string(),
        source,
    }
}

/// A backup's name from a pattern with strftime variables (`%Y%m%d-%H%M%S`), in UTC.
pub fn backup_name(pattern: &str, at: chrono::DateTime<chrono::Utc>) -> Result<String> {
    use std::fmt::Write;
    let mut name = String::new();
    write!(name, "{}", at.format(pattern)).map_err(|_| {
        StoreError::Invalid(format!("backup name {pattern:?}: not a valid date pattern"))
    })?;
    check_name(&name).map_err(|e| StoreError::Invalid(format!("backup name {pattern:?}: {e}")))?;
    Ok(name)
}

/// A backup's name is one directory entry of the area that is not the blob area.
pub fn check_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("empty".into());
    }
    if name.starts_with('.') {
        return Err("may not start with '.'".into());
    }
    if name.contains('/') || name.contains('\0') {
        return Err("may not hold '/'".into());
    }
    if name == BLOB_AREA {
        return Err(format!("{BLOB_AREA} is the blob directory"));
    }
    Ok(())
}

fn blob_path(area_blobs: &Path, id: &str) -> PathBuf {
    area_blobs.join(&id[0..2]).join(&id[2..4]).join(id)
}

fn valid_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Holds `AREA/.lock` until dropped.
struct AreaLock(#[allow(dead_code)] std::fs::File);

fn lock_area(area: &Path) -> Result<AreaLock> {
    std::fs::create_dir_all(area).map_err(io(area))?;
    let path = area.join(".lock");
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(AreaLock(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Invalid(format!(
            "another backup is writing to {} now",
            area.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(io(&path)(e)),
    }
}

fn write_durable(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

fn fsync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// How [`backup`] names and keeps backups.
#[derive(Debug, Clone)]
pub struct BackupOptions<'a> {
    /// The name, with strftime date variables ([`DEFAULT_NAME`]).
    pub name_pattern: &'a str,
    /// Keep the newest this many backups of the area.
    pub keep: Option<usize>,
    /// Fail (writing nothing) when a blob the store refers to cannot be read, instead of
    /// listing it in the manifest's `missing_blobs`.
    pub require_all_blobs: bool,
    /// A master job's lease: checked before the backup is put in place and before retention
    /// removes anything, so that a master paused past its lease changes nothing.
    pub fence: Option<&'a crate::model::Fence>,
}

/// Writes a backup of `store` (its tables in one snapshot, and every blob it refers to, read
/// from `blobs`) into the area `area`, named by the options' pattern at `at`. With `keep`, the
/// oldest backups beyond that many are removed afterwards, with the blobs only they used.
pub async fn backup(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    area: &Path,
    options: &BackupOptions<'_>,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<BackupReport> {
    let keep = options.keep;
    let name = backup_name(options.name_pattern, at)?;
    if keep == Some(0) {
        return Err(StoreError::Invalid(
            "a retention count of 0 would remove the backup just made".into(),
        ));
    }
    let _lock = lock_area(area)?;
    // Under the lock no other backup runs: any partial directory is a crashed one's.
    remove_partials(area)?;
    let partial = area.join(format!("{PARTIAL}{name}-{}", std::process::id()));
    std::fs::create_dir_all(&partial).map_err(io(&partial))?;
    let result = write_backup(store, blobs, area, &partial, &name, at, options).await;
    let (manifest, copied, bytes) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(e);
        }
    };
    if let Some(fence) = options.fence
        && let Err(e) = store.check_fence(fence, crate::model::now()).await
    {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(e);
    }
    let path = area.join(&name);
    if path.exists() {
        // Same name as an earlier backup (a pattern without seconds): the new one replaces it.
        let old = area.join(format!("{PARTIAL}replaced-{name}-{}", std::process::id()));
        std::fs::rename(&path, &old).map_err(io(&path))?;
        std::fs::rename(&partial, &path).map_err(io(&path))?;
        fsync_dir(area)?;
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(&partial, &path).map_err(io(&path))?;
        fsync_dir(area)?;
    }
    let (removed_backups, removed_blobs) = match keep {
        Some(keep) => apply_retention(area, keep)?,
        None => (Vec::new(), 0),
    };
    Ok(BackupReport {
        name,
        path,
        manifest,
        blobs_copied: copied,
        blobs_bytes_copied: bytes,
        removed_backups,
        removed_blobs,
    })
}

async fn write_backup(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    area: &Path,
    dir: &Path,
    name: &str,
    at: chrono::DateTime<chrono::Utc>,
    options: &BackupOptions<'_>,
) -> Result<(Manifest, u64, u64)> {
    let export = transfer::export(store, dir).await?;
    let area_blobs = area.join(BLOB_AREA);
    let sink = FsBlobs::new(&area_blobs).with_temp_prefix("backup");
    let mut copied = 0;
    let mut bytes_copied = 0;
    let mut listed = Vec::new();
    let mut missing = Vec::new();
    for id in &export.blob_ids {
        if !valid_id(id) {
            missing.push(id.clone());
            continue;
        }
        if tokio::fs::try_exists(blob_path(&area_blobs, id))
            .await
            .unwrap_or(false)
        {
            listed.push(id.clone());
            continue;
        }
        match blobs.get(id).await {
            Ok(bytes) if blob_id(&bytes) == *id => {
                sink.put(&bytes).await?;
                copied += 1;
                bytes_copied += bytes.len() as u64;
                listed.push(id.clone());
            }
            Ok(_) => {
                tracing::warn!(blob = %id, "backup: the blob's bytes do not hash to its id; left out");
                missing.push(id.clone());
            }
            Err(StoreError::BlobNotFound(_)) => missing.push(id.clone()),
            Err(e) => return Err(e),
        }
    }
    if !missing.is_empty() && options.require_all_blobs {
        return Err(StoreError::Invalid(format!(
            "{} blobs the store refers to cannot be read (the first: {}); nothing was kept",
            missing.len(),
            missing[0]
        )));
    }
    if !missing.is_empty() {
        tracing::warn!(
            count = missing.len(),
            first = %missing[0],
            "backup: blobs the store refers to could not be read"
        );
    }
    let mut list = listed.join("\n");
    if !list.is_empty() {
        list.push('\n');
    }
    let list_path = dir.join(BLOB_LIST);
    write_durable(&list_path, list.as_bytes())?;
    let manifest = Manifest {
        format: FORMAT,
        name: name.to_string(),
        created: at.timestamp(),
        mailfleet_version: env!("CARGO_PKG_VERSION").to_string(),
        schema_version: export.schema_version,
        backend: export.backend,
        tables: export.tables,
        sequences: export.sequences,
        blobs: listed.len() as u64,
        blobs_list_sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(list.as_bytes())),
        missing_blobs: missing,
    };
    let text = serde_json::to_string_pretty(&manifest)?;
    write_durable(&dir.join(MANIFEST), text.as_bytes())?;
    fsync_dir(dir)?;
    Ok((manifest, copied, bytes_copied))
}

fn remove_partials(area: &Path) -> Result<()> {
    for entry in std::fs::read_dir(area).map_err(io(area))? {
        let entry = entry.map_err(io(area))?;
        if entry.file_name().to_string_lossy().starts_with(PARTIAL) {
            let path = entry.path();
            tracing::info!(path = %path.display(), "removing an unfinished backup");
            std::fs::remove_dir_all(&path).map_err(io(&path))?;
        }
    }
    Ok(())
}

/// Reads a backup's manifest.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StoreError::Invalid(format!(
                "{}: no {MANIFEST}, so not a complete backup",
                dir.display()
            )));
        }
        Err(e) => return Err(io(&path)(e)),
    };
    let manifest: Manifest = serde_json::from_str(&text)
        .map_err(|e| StoreError::Invalid(format!("{}: {e}", path.display())))?;
    if manifest.format != FORMAT {
        return Err(StoreError::Invalid(format!(
            "{}: format {}, this mailfleet reads format {FORMAT}",
            path.display(),
            manifest.format
        )));
    }
    Ok(manifest)
}

/// The complete backups of an area (directories with a manifest), oldest first.
pub fn list_backups(area: &Path) -> Result<Vec<(PathBuf, Manifest)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(area).map_err(io(area))? {
        let entry = entry.map_err(io(area))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') || name == BLOB_AREA || !entry.path().is_dir() {
            continue;
        }
        if let Ok(m) = read_manifest(&entry.path()) {
            // Backups made within one second are told apart by when their manifest was written.
            let written = std::fs::metadata(entry.path().join(MANIFEST))
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            out.push((entry.path(), m, written));
        }
    }
    out.sort_by(|a, b| (a.1.created, a.2, &a.1.name).cmp(&(b.1.created, b.2, &b.1.name)));
    Ok(out.into_iter().map(|(p, m, _)| (p, m)).collect())
}

/// Removes the oldest backups beyond `keep`, then every blob of the area that no remaining
/// backup lists. Returns the backups removed and how many blobs.
fn apply_retention(area: &Path, keep: usize) -> Result<(Vec<String>, u64)> {
    let backups = list_backups(area)?;
    let excess = backups.len().saturating_sub(keep);
    let mut removed = Vec::new();
    for (path, manifest) in &backups[..excess] {
        std::fs::remove_dir_all(path).map_err(io(path))?;
        removed.push(manifest.name.clone());
    }
    if removed.is_empty() {
        return Ok((removed, 0));
    }
    let mut wanted = BTreeSet::new();
    for (path, _) in &backups[excess..] {
        let list = path.join(BLOB_LIST);
        let text = std::fs::read_to_string(&list).map_err(io(&list))?;
        wanted.extend(text.lines().map(str::to_string));
    }
    let area_blobs = area.join(BLOB_AREA);
    let mut removed_blobs = 0;
    for a in read_dirs(&area_blobs)? {
        for b in read_dirs(&a)? {
            for f in std::fs::read_dir(&b).map_err(io(&b))? {
                let f = f.map_err(io(&b))?;
                let id = f.file_name().to_string_lossy().to_string();
                if valid_id(&id) && !wanted.contains(&id) {
                    std::fs::remove_file(f.path()).map_err(io(&f.path()))?;
                    removed_blobs += 1;
                }
            }
        }
    }
    Ok((removed, removed_blobs))
}

/// The subdirectories of `dir` other than `tmp` (none if it is missing).
fn read_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(dir)(e)),
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(io(dir))?;
        if e.file_name() != "tmp" && e.path().is_dir() {
            out.push(e.path());
        }
    }
    Ok(out)
}

/// Which backup a path names: a backup directory (with a manifest), or an area, whose newest
/// complete backup it then is.
pub fn locate(path: &Path) -> Result<PathBuf> {
    if path.join(MANIFEST).exists() {
        return Ok(path.to_path_buf());
    }
    if path.join(BLOB_AREA).is_dir() {
        return match list_backups(path)?.pop() {
            Some((p, _)) => Ok(p),
            None => Err(StoreError::Invalid(format!(
                "{}: no complete backup in it",
                path.display()
            ))),
        };
    }
    // Neither: let the manifest's absence be the message.
    read_manifest(path).map(|_| path.to_path_buf())
}

/// What [`restore`] did.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    pub path: PathBuf,
    pub manifest: Manifest,
    /// The tables as read back from the restored store (equal to the manifest's).
    pub tables: Vec<TableSummary>,
    /// Blobs written to the target's blob storage, besides those in its `blobs` table.
    pub blobs_written: u64,
    pub blobs_in_table: u64,
}

/// Restores the backup at `path` (see [`locate`]) into `store`, which must be empty. Everything
/// is checked before anything is written: the manifest, every table file's SHA-256, rows and
/// checksum, and every blob's bytes against its id. Blobs kept in the source's `blobs` table
/// go back into the target's; the others are written to `blobs` (the nodes' `fs:` directory,
/// or `db`), which is needed only when there are such blobs.
pub async fn restore(
    store: &dyn Store,
    blobs: Option<&dyn BlobStore>,
    path: &Path,
) -> Result<RestoreReport> {
    let dir = locate(path)?;
    let manifest = read_manifest(&dir)?;
    let area_blobs = dir
        .parent()
        .map(|p| p.join(BLOB_AREA))
        .ok_or_else(|| StoreError::Invalid(format!("{}: no parent directory", dir.display())))?;
    let list_path = dir.join(BLOB_LIST);
    let list = std::fs::read(&list_path).map_err(io(&list_path))?;
    if hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&list)) != manifest.blobs_list_sha256 {
        return Err(StoreError::Invalid(format!(
            "{}: its SHA-256 differs from the manifest's: the file is damaged",
            list_path.display()
        )));
    }
    let ids: Vec<String> = String::from_utf8_lossy(&list)
        .lines()
        .map(str::to_string)
        .collect();
    if ids.len() as u64 != manifest.blobs || ids.iter().any(|id| !valid_id(id)) {
        return Err(StoreError::Invalid(format!(
            "{}: does not list the manifest's {} blobs",
            list_path.display(),
            manifest.blobs
        )));
    }
    transfer::check_empty(store).await?;
    let db_ids = transfer::verify(&dir, &manifest.tables).await?;
    let area = FsBlobs::new(&area_blobs);
    let mut outside = Vec::new();
    for id in &ids {
        let bytes = area.get(id).await.map_err(|e| match e {
            StoreError::BlobNotFound(_) => StoreError::Invalid(format!(
                "blob {id} is missing from {}",
                area_blobs.display()
            )),
            other => other,
        })?;
        if blob_id(&bytes) != *id {
            return Err(StoreError::Invalid(format!(
                "blob {id} in {}: its bytes do not hash to its id (damaged)",
                area_blobs.display()
            )));
        }
        if !db_ids.contains(id) {
            outside.push(id.clone());
        }
    }
    let target = match (outside.is_empty(), blobs) {
        (true, _) => None,
        (false, Some(b)) => Some(b),
        (false, None) => {
            return Err(StoreError::Invalid(format!(
                "the backup has {} blobs kept outside the store's blobs table: say where they \
                 go with --blobs fs:PATH (the nodes' blob directory) or --blobs db",
                outside.len()
            )));
        }
    };
    let tables = transfer::import(
        store,
        &dir,
        manifest.schema_version,
        &manifest.tables,
        &manifest.sequences,
        &area,
    )
    .await?;
    let mut written = 0;
    if let Some(target) = target {
        for id in &outside {
            let bytes = area.get(id).await?;
            target.put(&bytes).await?;
            written += 1;
        }
    }
    Ok(RestoreReport {
        path: dir,
        tables,
        blobs_written: written,
        blobs_in_table: db_ids.len() as u64,
        manifest,
    })
}

/// What [`copy_store`] did.
#[derive(Debug, Clone)]
pub struct CopyReport {
    /// The source's tables as read in its snapshot, and the target's as read back.
    pub source: Vec<TableSummary>,
    pub target: Vec<TableSummary>,
    /// Blobs kept in the `blobs` table (copied with it) and blobs copied between directories.
    pub blobs_in_table: u64,
    pub blobs_copied: u64,
    /// Blobs the source refers to outside its `blobs` table (left where they are when no
    /// blob directories are given).
    pub blobs_outside: u64,
}

/// Copies every table of `from` (one snapshot) into the empty store `to`, through a dump in
/// `work` (the same files a backup writes), and with `blobs` = (source, target) copies the
/// blobs kept outside the `blobs` table too.
pub async fn copy_store(
    from: Arc<dyn Store>,
    to: &dyn Store,
    blobs: Option<(&dyn BlobStore, &dyn BlobStore)>,
    work: &Path,
) -> Result<CopyReport> {
    transfer::check_empty(to).await?;
    let export = transfer::export(from.as_ref(), work).await?;
    transfer::verify(work, &export.tables).await?;
    let source_rows = crate::blob::open_blobs("db", from.clone())?;
    let target = transfer::import(
        to,
        work,
        export.schema_version,
        &export.tables,
        &export.sequences,
        source_rows.as_ref(),
    )
    .await?;
    let outside: Vec<&String> = export
        .blob_ids
        .iter()
        .filter(|id| !export.db_blob_ids.contains(*id))
        .collect();
    let mut copied = 0;
    if let Some((source, dest)) = blobs {
        for id in &outside {
            match source.get(id).await {
                Ok(bytes) if blob_id(&bytes) == **id => {
                    dest.put(&bytes).await?;
                    copied += 1;
                }
                Ok(_) => {
                    return Err(StoreError::Invalid(format!(
                        "blob {id}: its bytes do not hash to its id (damaged)"
                    )));
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(CopyReport {
        source: export.tables,
        target,
        blobs_in_table: export.db_blob_ids.len() as u64,
        blobs_copied: copied,
        blobs_outside: outside.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_take_date_variables_and_refuse_bad_ones() {
        let at = chrono::DateTime::from_timestamp(1_780_000_000, 0).unwrap();
        assert_eq!(
            backup_name(DEFAULT_NAME, at).unwrap(),
            format!("mailfleet-{}", at.format("%Y%m%d-%H%M%S"))
        );
        assert_eq!(backup_name("nightly", at).unwrap(), "nightly");
        assert!(backup_name("%Y/%m", at).is_err());
        assert!(backup_name(".hidden", at).is_err());
        assert!(backup_name("blobs", at).is_err());
        assert!(backup_name("%Q", at).is_err());
        assert!(backup_name("", at).is_err());
    }
}
