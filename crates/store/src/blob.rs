//! Message bytes as immutable, content-addressed blobs (SHA-256, hex).
//!
//! One small interface, [`BlobStore`]; nothing outside this module assumes a blob is a file.
//! `fs:PATH` keeps each blob as `PATH/ab/cd/<id>`, written to a temp file in the same filesystem,
//! fsynced, renamed into place, and the directory fsynced; `db` keeps blobs in the store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::error::StoreError;
use crate::model::{BlobEntry, Timestamp};
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
    async fn get(&self, id: &str) -> Result<Vec<u8>>;
    async fn delete(&self, id: &str) -> Result<()>;
    async fn list(&self) -> Result<Vec<BlobEntry>>;
}

/// Opens the blob backend a node config names: `fs:PATH` or `db`.
pub fn open_blobs(spec: &str, store: Arc<dyn Store>) -> Result<Arc<dyn BlobStore>> {
    if spec == "db" {
        Ok(Arc::new(DbBlobs { store }))
    } else if let Some(path) = spec.strip_prefix("fs:") {
        if path.is_empty() {
            return Err(StoreError::Invalid("blobs = \"fs:\" needs a path".into()));
        }
        Ok(Arc::new(FsBlobs::new(path)))
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
    let candidates: Vec<BlobEntry> = blobs
        .list()
        .await?
        .into_iter()
        .filter(|b| b.created <= now - grace_secs)
        .collect();
    let mut removed = 0;
    for chunk in candidates.chunks(500) {
        let ids: Vec<String> = chunk.iter().map(|b| b.id.clone()).collect();
        let used: std::collections::HashSet<String> =
            store.blobs_in_use(&ids).await?.into_iter().collect();
        for id in ids.iter().filter(|id| !used.contains(*id)) {
            blobs.delete(id).await?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Blobs under a directory, fanned out as `ab/cd/<id>`.
pub struct FsBlobs {
    root: PathBuf,
}

impl FsBlobs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
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

fn put_file(root: &Path, final_path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    if final_path.exists() {
        return Ok(());
    }
    let dir = final_path.parent().unwrap_or(root);
    let created_dir = !dir.exists();
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let tmp_dir = root.join("tmp");
    std::fs::create_dir_all(&tmp_dir).map_err(io_err(&tmp_dir))?;
    let mut tmp = tempfile::NamedTempFile::new_in(&tmp_dir).map_err(io_err(&tmp_dir))?;
    tmp.write_all(bytes).map_err(io_err(tmp.path()))?;
    tmp.as_file().sync_all().map_err(io_err(final_path))?;
    tmp.persist(final_path)
        .map_err(|e| io_err(final_path)(e.error))?;
    fsync_dir(dir)?;
    if created_dir {
        // The fan-out directories themselves must survive a crash too.
        if let Some(parent) = dir.parent() {
            fsync_dir(parent)?;
            fsync_dir(root)?;
        }
    }
    Ok(())
}

#[async_trait]
impl BlobStore for FsBlobs {
    async fn put(&self, bytes: &[u8]) -> Result<String> {
        let id = blob_id(bytes);
        let root = self.root.clone();
        let path = self.path_of(&id);
        let bytes = bytes.to_vec();
        tokio::task::spawn_blocking(move || put_file(&root, &path, &bytes))
            .await
            .map_err(|e| StoreError::Invalid(format!("blob writer task failed: {e}")))??;
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

    async fn list(&self) -> Result<Vec<BlobEntry>> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || list_files(&root))
            .await
            .map_err(|e| StoreError::Invalid(format!("blob lister task failed: {e}")))?
    }
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
                let created = f
                    .metadata()
                    .ok()
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fs_put_get_delete_list() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = FsBlobs::new(dir.path());
        let id = blobs.put(b"hello").await.unwrap();
        assert_eq!(id, blob_id(b"hello"));
        assert_eq!(blobs.put(b"hello").await.unwrap(), id);
        assert!(
            dir.path()
                .join(&id[0..2])
                .join(&id[2..4])
                .join(&id)
                .exists()
        );
        assert_eq!(blobs.get(&id).await.unwrap(), b"hello");
        let listed = blobs.list().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, id);
        blobs.delete(&id).await.unwrap();
        assert!(matches!(
            blobs.get(&id).await,
            Err(StoreError::BlobNotFound(_))
        ));
        assert!(matches!(
            blobs.get("../etc/passwd").await,
            Err(StoreError::BlobNotFound(_))
        ));
    }
}
