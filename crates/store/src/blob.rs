//! Message bytes as immutable, content-addressed blobs (SHA-256, hex).
//!
//! One small interface, [`BlobStore`]; nothing outside this module assumes a blob is a file.
//! `fs:PATH` keeps each blob as `PATH/ab/cd/<id>`, written to a temp file in the same filesystem,
//! fsynced, renamed into place, and the directory fsynced; `db` keeps blobs in the store. With
//! `fs:` a node may keep small messages in the store too (`blobs_inline_max`): their blob is
//! then written in the delivery's own transaction, which saves the file's two fsyncs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::error::StoreError;
use crate::model::{BlobEntry, Timestamp};
use crate::spool::SpooledFile;
use crate::store::{Result, Store};

/// The blob id of some bytes: lower-case hex SHA-256.
pub fn blob_id(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn valid_id(id: &str) -> bool {
    id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Stores the bytes durably and returns their id. Storing the same bytes twice is harmless.
    async fn put(&self, bytes: &[u8]) -> Result<String>;
    /// Stores a spooled message's bytes durably and returns their id (the file's hash). A
    /// store that keeps files takes the file itself where the filesystem allows (a rename);
    /// the default reads it and [`BlobStore::put`]s the bytes.
    async fn put_spooled(&self, file: SpooledFile) -> Result<String> {
        let path = file.path().to_path_buf();
        let bytes = file.read().await.map_err(io_err(&path))?;
        self.put(&bytes).await
    }
    async fn get(&self, id: &str) -> Result<Vec<u8>>;
    /// Bytes `[offset, min(offset + len, size))` of a blob, empty when `offset` is at or past
    /// its end (IMAP partial FETCH, a body part at its offsets). The default reads the whole
    /// blob and slices it; a store of files reads only the range.
    async fn get_range(&self, id: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        Ok(slice_range(self.get(id).await?, offset, len))
    }
    async fn delete(&self, id: &str) -> Result<()>;
    /// Blob GC's delete: removes the blob unless it was written, or written again, after
    /// `before` (a put of bytes already stored refreshes them), so that a message stored
    /// again while GC runs keeps its blob. Returns whether it is gone (false: spared). The
    /// default deletes.
    async fn delete_unless_newer(&self, id: &str, _before: Timestamp) -> Result<bool> {
        self.delete(id).await.map(|_| true)
    }
    async fn list(&self) -> Result<Vec<BlobEntry>>;
    /// True when a blob of `len` bytes lives in the node's store itself: a delivery then writes
    /// it in its own transaction ([`Mailboxes::deliver_with_bytes`]) rather than beside it
    /// ([`Mailboxes::deliver_with_blob`], whose blob write must not need the store's writer).
    ///
    /// [`Mailboxes::deliver_with_bytes`]: crate::Mailboxes::deliver_with_bytes
    /// [`Mailboxes::deliver_with_blob`]: crate::Mailboxes::deliver_with_blob
    fn written_through_store(&self, _len: usize) -> bool {
        false
    }
    /// Removes temp files left by writes that never finished (a crash between the temp file
    /// and its rename) and last touched before `before`. Returns how many went.
    async fn remove_stale_temp(&self, _before: Timestamp) -> Result<usize> {
        Ok(0)
    }
}

/// `bytes[offset..offset + len]`, cut at the end of `bytes`.
fn slice_range(mut bytes: Vec<u8>, offset: u64, len: u64) -> Vec<u8> {
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let end = usize::try_from(offset.saturating_add(len))
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    bytes.truncate(end);
    bytes.drain(..start);
    bytes
}

/// Reads bytes `[offset, offset + len)` of a file, cut at its end.
fn read_file_range(path: &Path, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    if offset >= size {
        return Ok(Vec::new());
    }
    let want = len.min(size - offset);
    file.seek(SeekFrom::Start(offset))?;
    let mut out = Vec::with_capacity(usize::try_from(want).unwrap_or(0));
    file.take(want).read_to_end(&mut out)?;
    Ok(out)
}

/// Opens the blob backend a node config names: `fs:PATH` or `db`. With `fs:` it reads, lists
/// and deletes blobs kept in the store as well, so tools see every node's blobs whatever its
/// `blobs_inline_max`; it writes files only.
pub fn open_blobs(spec: &str, store: Arc<dyn Store>) -> Result<Arc<dyn BlobStore>> {
    open_spec(spec, store, "mailfleet", 0, false)
}

/// As [`open_blobs`], for a node: its temp files start with its server id, so that on a shared
/// blob directory each node's leftovers can be told apart.
/// Messages up to `inline_max` bytes are kept in the store even with `fs:` (0: none).
/// With `fs:` the blob root is made (if missing) now, as the node starts: a root that is gone
/// later (an unmounted share) is then never made again, even before the node's first write.
pub fn open_node_blobs(
    spec: &str,
    store: Arc<dyn Store>,
    server_id: &str,
    inline_max: usize,
) -> Result<Arc<dyn BlobStore>> {
    open_spec(spec, store, server_id, inline_max, true)
}

fn open_spec(
    spec: &str,
    store: Arc<dyn Store>,
    server_id: &str,
    inline_max: usize,
    prepare_now: bool,
) -> Result<Arc<dyn BlobStore>> {
    if spec == "db" {
        Ok(Arc::new(DbBlobs { store }))
    } else if let Some(path) = spec.strip_prefix("fs:") {
        if path.is_empty() {
            return Err(StoreError::Invalid("blobs = \"fs:\" needs a path".into()));
        }
        let fs = FsBlobs::new(path).with_temp_prefix(server_id);
        if prepare_now {
            fs.prepare()?;
        }
        Ok(Arc::new(FsAndDbBlobs {
            fs,
            db: DbBlobs { store },
            inline_max,
        }))
    } else {
        Err(StoreError::Invalid(format!(
            "blobs {spec:?}: expected fs:PATH or db"
        )))
    }
}

/// Removes blobs that no message or queue item uses and that are older than `grace_secs`
/// (a blob being delivered right now is written before its row is committed). Returns how many
/// were removed.
pub async fn collect_garbage(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    now: Timestamp,
    grace_secs: i64,
) -> Result<usize> {
    collect_garbage_fenced(store, blobs, now, grace_secs, None).await
}

/// As [`collect_garbage`], for a master job: with a `fence`, each batch of up to 500 blobs is
/// removed only after [`crate::Cluster::check_fence`] found the lease still held (at the
/// current time), so a master that lost its lease stops with [`StoreError::Fenced`].
pub async fn collect_garbage_fenced(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    now: Timestamp,
    grace_secs: i64,
    fence: Option<&crate::model::Fence>,
) -> Result<usize> {
    if let Some(f) = fence {
        store.check_fence(f, crate::model::now()).await?;
    }
    let candidates: Vec<BlobEntry> = blobs
        .list()
        .await?
        .into_iter()
        .filter(|b| b.created <= now - grace_secs)
        .collect();
    let mut removed = blobs.remove_stale_temp(now - grace_secs).await?;
    for chunk in candidates.chunks(500) {
        let ids: Vec<String> = chunk.iter().map(|b| b.id.clone()).collect();
        let used: std::collections::HashSet<String> =
            store.blobs_in_use(&ids).await?.into_iter().collect();
        if let Some(f) = fence {
            store.check_fence(f, crate::model::now()).await?;
        }
        for id in ids.iter().filter(|id| !used.contains(*id)) {
            if blobs.delete_unless_newer(id, now - grace_secs).await? {
                store.forget_meta(id).await?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// Blobs under a directory, fanned out as `ab/cd/<id>`.
///
/// The root, its `tmp` directory and the 256 first-level directories are made (and made durable)
/// once: when a node opens its blobs ([`open_node_blobs`]), else on the first write. After
/// that a blob costs two fsyncs (its file and its leaf directory), three when it is the first
/// blob of its leaf directory.
pub struct FsBlobs {
    root: PathBuf,
    temp_prefix: String,
    prepared: std::sync::OnceLock<()>,
}

impl FsBlobs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            temp_prefix: "mailfleet".into(),
            prepared: std::sync::OnceLock::new(),
        }
    }

    /// Makes the root, `tmp` and the first-level directories now, if missing. After this a
    /// missing root is never made again: writes fail until it is back.
    pub fn prepare(&self) -> Result<()> {
        prepare_root(&self.root)?;
        let _ = self.prepared.set(());
        Ok(())
    }

    /// Temp files are named `PREFIX.<random>` under `tmp/`.
    pub fn with_temp_prefix(mut self, prefix: &str) -> Self {
        self.temp_prefix = prefix.to_string();
        self
    }

    fn path_of(&self, id: &str) -> PathBuf {
        self.root.join(&id[0..2]).join(&id[2..4]).join(id)
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::BlobIo {
        path: path.display().to_string(),
        source,
    }
}

fn fsync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Makes `dir` if it is missing; true when this call made it (its parent then needs an fsync
/// for the new entry to survive a crash).
fn make_dir(dir: &Path) -> Result<bool> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(io_err(dir)(e)),
    }
}

/// The root, `tmp` and the 256 first-level fan-out directories, all durable.
fn prepare_root(root: &Path) -> Result<()> {
    std::fs::create_dir_all(root).map_err(io_err(root))?;
    let mut created = make_dir(&root.join("tmp"))?;
    for top in 0..=255u8 {
        created |= make_dir(&root.join(hex::encode([top])))?;
    }
    if created {
        fsync_dir(root)?;
    }
    if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
        fsync_dir(parent)?;
    }
    Ok(())
}

/// Whether a blob file is there; if so its modification time becomes now, so that blob GC
/// (which spares blobs newer than its grace period, checked again just before it deletes)
/// cannot take it before the row naming it is committed.
fn refresh_existing(path: &Path) -> bool {
    match std::fs::File::options().write(true).open(path) {
        Ok(f) => {
            let _ = f.set_modified(std::time::SystemTime::now());
            true
        }
        Err(_) => path.exists(),
    }
}

fn put_file(root: &Path, final_path: &Path, bytes: &[u8], temp_prefix: &str) -> Result<()> {
    use std::io::Write;
    let leaf = final_path.parent().unwrap_or(root);
    let top = leaf.parent().unwrap_or(root);
    if refresh_existing(final_path) {
        // The same bytes are stored already, perhaps by a write that has renamed its file but
        // not yet made the rename durable: make sure of it before a row may name the blob.
        return fsync_dir(leaf);
    }
    // A first-level directory is only missing if someone removed it after start. The root
    // itself is not made again: if a shared mount has gone away, writing under the empty
    // mount point would put messages on the local disk, so the write fails instead.
    if make_dir(top)? {
        fsync_dir(root)?;
    }
    let leaf_created = make_dir(leaf)?;
    let tmp_dir = root.join("tmp");
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!("{temp_prefix}."))
        .tempfile_in(&tmp_dir)
        .map_err(io_err(&tmp_dir))?;
    tmp.write_all(bytes).map_err(io_err(tmp.path()))?;
    tmp.as_file().sync_all().map_err(io_err(final_path))?;
    tmp.persist(final_path)
        .map_err(|e| io_err(final_path)(e.error))?;
    fsync_dir(leaf)?;
    if leaf_created {
        fsync_dir(top)?;
    }
    Ok(())
}

/// Moves a durable spool file into place as `final_path` (a rename; a copy into the blob
/// root's `tmp/` first when the spool is on another filesystem).
fn put_spooled_file(
    root: &Path,
    final_path: &Path,
    file: SpooledFile,
    temp_prefix: &str,
) -> Result<()> {
    let leaf = final_path.parent().unwrap_or(root);
    let top = leaf.parent().unwrap_or(root);
    if refresh_existing(final_path) {
        // The same bytes are stored already; the spool file goes when `file` is dropped.
        return fsync_dir(leaf);
    }
    if make_dir(top)? {
        fsync_dir(root)?;
    }
    let leaf_created = make_dir(leaf)?;
    match std::fs::rename(file.path(), final_path) {
        Ok(()) => {
            // Taken: nothing to remove on drop.
            let _ = file.path.keep();
        }
        Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
            let tmp_dir = root.join("tmp");
            let tmp = tempfile::Builder::new()
                .prefix(&format!("{temp_prefix}."))
                .tempfile_in(&tmp_dir)
                .map_err(io_err(&tmp_dir))?;
            let mut from = std::fs::File::open(file.path()).map_err(io_err(file.path()))?;
            let mut to = tmp.as_file();
            std::io::copy(&mut from, &mut to).map_err(io_err(tmp.path()))?;
            tmp.as_file().sync_all().map_err(io_err(final_path))?;
            tmp.persist(final_path)
                .map_err(|e| io_err(final_path)(e.error))?;
        }
        Err(e) => return Err(io_err(final_path)(e)),
    }
    fsync_dir(leaf)?;
    if leaf_created {
        fsync_dir(top)?;
    }
    Ok(())
}

#[async_trait]
impl BlobStore for FsBlobs {
    async fn put_spooled(&self, file: SpooledFile) -> Result<String> {
        let id = file.id().to_string();
        let root = self.root.clone();
        let path = self.path_of(&id);
        let first = self.prepared.get().is_none();
        let prefix = self.temp_prefix.clone();
        tokio::task::spawn_blocking(move || {
            if first {
                prepare_root(&root)?;
            }
            put_spooled_file(&root, &path, file, &prefix)
        })
        .await
        .map_err(|e| StoreError::Invalid(format!("blob writer task failed: {e}")))??;
        if first {
            let _ = self.prepared.set(());
        }
        Ok(id)
    }

    async fn put(&self, bytes: &[u8]) -> Result<String> {
        let id = blob_id(bytes);
        let root = self.root.clone();
        let path = self.path_of(&id);
        let bytes = bytes.to_vec();
        let first = self.prepared.get().is_none();
        let prefix = self.temp_prefix.clone();
        tokio::task::spawn_blocking(move || {
            if first {
                prepare_root(&root)?;
            }
            put_file(&root, &path, &bytes, &prefix)
        })
        .await
        .map_err(|e| StoreError::Invalid(format!("blob writer task failed: {e}")))??;
        if first {
            let _ = self.prepared.set(());
        }
        Ok(id)
    }

    async fn get(&self, id: &str) -> Result<Vec<u8>> {
        if !valid_id(id) {
            return Err(StoreError::BlobNotFound(id.to_string()));
        }
        let path = self.path_of(id);
        match tokio::fs::read(&path).await {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::BlobNotFound(id.to_string()))
            }
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    async fn get_range(&self, id: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        if !valid_id(id) {
            return Err(StoreError::BlobNotFound(id.to_string()));
        }
        let path = self.path_of(id);
        let read = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || read_file_range(&path, offset, len))
                .await
                .map_err(|e| StoreError::Invalid(format!("blob reader task failed: {e}")))?
        };
        match read {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::BlobNotFound(id.to_string()))
            }
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    async fn delete(&self, id: &str) -> Result<()> {
        if !valid_id(id) {
            return Ok(());
        }
        let path = self.path_of(id);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    async fn delete_unless_newer(&self, id: &str, before: Timestamp) -> Result<bool> {
        if !valid_id(id) {
            return Ok(false);
        }
        let path = self.path_of(id);
        match tokio::fs::metadata(&path).await {
            Ok(m)
                if m.modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .is_some_and(|d| d.as_secs() as i64 > before) =>
            {
                Ok(false)
            }
            Ok(_) => self.delete(id).await.map(|_| true),
            // Gone already: nothing left to spare.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    async fn remove_stale_temp(&self, before: Timestamp) -> Result<usize> {
        let tmp_dir = self.root.join("tmp");
        tokio::task::spawn_blocking(move || remove_old_files(&tmp_dir, before))
            .await
            .map_err(|e| StoreError::Invalid(format!("blob temp cleaner failed: {e}")))?
    }

    async fn list(&self) -> Result<Vec<BlobEntry>> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || list_files(&root))
            .await
            .map_err(|e| StoreError::Invalid(format!("blob lister task failed: {e}")))?
    }
}

/// A directory entry's modification time in seconds since the epoch (0 if unknown).
fn modified_secs(entry: &std::fs::DirEntry) -> Timestamp {
    entry
        .metadata()
        .ok()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn remove_old_files(dir: &Path, before: Timestamp) -> Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        if entry.file_type().is_ok_and(|t| t.is_file()) && modified_secs(&entry) < before {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                // Another node's collector may have taken it first.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&entry.path())(e)),
            }
        }
    }
    Ok(removed)
}

fn list_files(root: &Path) -> Result<Vec<BlobEntry>> {
    let mut out = Vec::new();
    if !root.exists() {
        return Ok(out);
    }
    let read = |p: &Path| std::fs::read_dir(p).map_err(io_err(p));
    for a in read(root)? {
        let a = a.map_err(io_err(root))?.path();
        if !a.is_dir() || a.file_name().is_some_and(|n| n == "tmp") {
            continue;
        }
        for b in read(&a)? {
            let b = b.map_err(io_err(&a))?.path();
            if !b.is_dir() {
                continue;
            }
            for f in read(&b)? {
                let f = f.map_err(io_err(&b))?;
                let name = f.file_name().to_string_lossy().to_string();
                if !valid_id(&name) {
                    continue;
                }
                let created = modified_secs(&f);
                out.push(BlobEntry { id: name, created });
            }
        }
    }
    Ok(out)
}

/// Blobs kept in the store's `blobs` table.
pub struct DbBlobs {
    store: Arc<dyn Store>,
}

#[async_trait]
impl BlobStore for DbBlobs {
    fn written_through_store(&self, _len: usize) -> bool {
        true
    }

    async fn put(&self, bytes: &[u8]) -> Result<String> {
        let id = blob_id(bytes);
        self.store.blob_put(&id, bytes).await?;
        Ok(id)
    }

    async fn get(&self, id: &str) -> Result<Vec<u8>> {
        self.store
            .blob_get(id)
            .await?
            .ok_or_else(|| StoreError::BlobNotFound(id.to_string()))
    }

    async fn delete(&self, id: &str) -> Result<()> {
        self.store.blob_delete(id).await
    }

    async fn list(&self) -> Result<Vec<BlobEntry>> {
        self.store.blob_list().await
    }
}

/// Files under a directory, and the store's blobs for messages up to `inline_max` bytes.
/// Reads look where a blob of unknown size is likelier first: the files when nothing is
/// written inline, else the store.
pub struct FsAndDbBlobs {
    fs: FsBlobs,
    db: DbBlobs,
    inline_max: usize,
}

#[async_trait]
impl BlobStore for FsAndDbBlobs {
    fn written_through_store(&self, len: usize) -> bool {
        self.inline_max > 0 && len <= self.inline_max
    }

    async fn put(&self, bytes: &[u8]) -> Result<String> {
        if self.written_through_store(bytes.len()) {
            self.db.put(bytes).await
        } else {
            self.fs.put(bytes).await
        }
    }

    async fn put_spooled(&self, file: SpooledFile) -> Result<String> {
        if self.written_through_store(file.len() as usize) {
            self.db.put_spooled(file).await
        } else {
            self.fs.put_spooled(file).await
        }
    }

    async fn get(&self, id: &str) -> Result<Vec<u8>> {
        let (first, second): (&dyn BlobStore, &dyn BlobStore) = if self.inline_max == 0 {
            (&self.fs, &self.db)
        } else {
            (&self.db, &self.fs)
        };
        match first.get(id).await {
            Err(StoreError::BlobNotFound(_)) => second.get(id).await,
            found => found,
        }
    }

    async fn get_range(&self, id: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let (first, second): (&dyn BlobStore, &dyn BlobStore) = if self.inline_max == 0 {
            (&self.fs, &self.db)
        } else {
            (&self.db, &self.fs)
        };
        match first.get_range(id, offset, len).await {
            Err(StoreError::BlobNotFound(_)) => second.get_range(id, offset, len).await,
            found => found,
        }
    }

    async fn delete(&self, id: &str) -> Result<()> {
        self.fs.delete(id).await?;
        self.db.delete(id).await
    }

    async fn delete_unless_newer(&self, id: &str, before: Timestamp) -> Result<bool> {
        // A file refreshed since `before` keeps the blob (and any row copy of it).
        if !self.fs.delete_unless_newer(id, before).await? {
            return Ok(false);
        }
        self.db.delete(id).await?;
        Ok(true)
    }

    async fn list(&self) -> Result<Vec<BlobEntry>> {
        let mut all = self.fs.list().await?;
        let mut seen: std::collections::HashSet<String> =
            all.iter().map(|b| b.id.clone()).collect();
        for b in self.db.list().await? {
            if seen.insert(b.id.clone()) {
                all.push(b);
            }
        }
        Ok(all)
    }

    async fn remove_stale_temp(&self, before: Timestamp) -> Result<usize> {
        self.fs.remove_stale_temp(before).await
    }
}

#[cfg(test)]
mod tests;
