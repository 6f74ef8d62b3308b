//! Incoming messages on their way to the blob store, shared by every protocol that receives
//! one (SMTP DATA and BDAT; IMAP APPEND).
//!
//! A message is kept in memory while it is small. Once it passes the spool's threshold it goes
//! to a temp file in the node's local temp directory (seed 001: temp files are local), hashed
//! as it arrives, so that a node holding many large messages at once uses a buffer per
//! connection, not a message per connection. When it is complete, [`BlobStore::put_spooled`]
//! moves the file into the blob store by a rename where the filesystem allows (no second read)
//! and copies it otherwise.
//!
//! The bytes a receiver adds in front of the message (trace headers) are asked for once, from
//! the first part of the message: when the message spills to a file, or at its end if it
//! never does.
//!
//! [`BlobStore::put_spooled`]: crate::BlobStore::put_spooled

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// Messages up to this size stay in memory.
pub const DEFAULT_THRESHOLD: usize = 256 * 1024;
/// Bytes gathered before each write to a spool file.
const WRITE_BUFFER: usize = 128 * 1024;

/// Makes the bytes that go in front of a message, from the message's first part: the whole
/// message when it stays in memory (the flag is then true), or what had arrived when it
/// spilled (up to the threshold).
pub type HeadFn = Box<dyn FnOnce(&[u8], bool) -> Vec<u8> + Send + Sync>;

/// A node's spool directory.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
    prefix: String,
    threshold: usize,
}

impl Spool {
    /// Files go in `dir`, named `PREFIX.spool.<random>`.
    pub fn new(dir: impl Into<PathBuf>, prefix: &str, threshold: usize) -> Spool {
        Spool {
            dir: dir.into(),
            prefix: prefix.to_string(),
            threshold,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// Makes the directory and removes this node's spool files left by an earlier run (a
    /// message that was never acknowledged). Returns how many went.
    pub fn prepare(&self) -> std::io::Result<usize> {
        std::fs::create_dir_all(&self.dir)?;
        let mine = format!("{}.spool.", self.prefix);
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(&mine)
                && entry.file_type().is_ok_and(|t| t.is_file())
                && std::fs::remove_file(entry.path()).is_ok()
            {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// A writer for one message, with `head` to make the bytes in front of it.
    pub fn writer(&self, head: HeadFn) -> SpoolWriter {
        SpoolWriter {
            spool: self.clone(),
            head: Some(head),
            memory: Vec::new(),
            file: None,
            body_len: 0,
        }
    }
}

struct SpillFile {
    file: tokio::fs::File,
    path: tempfile::TempPath,
    hasher: Sha256,
    buffer: Vec<u8>,
    len: u64,
}

impl SpillFile {
    async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.hasher.update(data);
        self.len += data.len() as u64;
        if self.buffer.len() + data.len() > WRITE_BUFFER {
            self.file.write_all(&self.buffer).await?;
            self.buffer.clear();
        }
        if data.len() >= WRITE_BUFFER {
            self.file.write_all(data).await
        } else {
            self.buffer.extend_from_slice(data);
            Ok(())
        }
    }
}

/// One message being received.
pub struct SpoolWriter {
    spool: Spool,
    head: Option<HeadFn>,
    memory: Vec<u8>,
    file: Option<SpillFile>,
    body_len: u64,
}

impl SpoolWriter {
    /// Message bytes received so far (the head not counted).
    pub fn len(&self) -> u64 {
        self.body_len
    }

    pub fn is_empty(&self) -> bool {
        self.body_len == 0
    }

    /// True once the message has gone to a file.
    pub fn spilled(&self) -> bool {
        self.file.is_some()
    }

    /// Adds message bytes.
    pub async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.body_len += data.len() as u64;
        if let Some(f) = self.file.as_mut() {
            return f.write(data).await;
        }
        if self.memory.len() + data.len() <= self.spool.threshold {
            self.memory.extend_from_slice(data);
            return Ok(());
        }
        self.spill().await?;
        match self.file.as_mut() {
            Some(f) => f.write(data).await,
            None => Err(std::io::Error::other("spool file missing after spill")),
        }
    }

    async fn spill(&mut self) -> std::io::Result<()> {
        let dir = self.spool.dir.clone();
        let prefix = format!("{}.spool.", self.spool.prefix);
        let (file, path) = tokio::task::spawn_blocking(move || {
            tempfile::Builder::new()
                .prefix(&prefix)
                .tempfile_in(&dir)
                .map(|t| t.into_parts())
        })
        .await
        .map_err(std::io::Error::other)??;
        let mut spill = SpillFile {
            file: tokio::fs::File::from_std(file),
            path,
            hasher: Sha256::new(),
            buffer: Vec::with_capacity(WRITE_BUFFER),
            len: 0,
        };
        let head = self
            .head
            .take()
            .map(|f| f(&self.memory, false))
            .unwrap_or_default();
        spill.write(&head).await?;
        let memory = std::mem::take(&mut self.memory);
        spill.write(&memory).await?;
        self.file = Some(spill);
        Ok(())
    }

    /// Ends the message: in memory (head included), or a file fsynced to disk.
    pub async fn finish(mut self) -> std::io::Result<Spooled> {
        match self.file.take() {
            None => {
                let head = self
                    .head
                    .take()
                    .map(|f| f(&self.memory, true))
                    .unwrap_or_default();
                let mut message = head;
                message.extend_from_slice(&self.memory);
                Ok(Spooled::Memory(message))
            }
            Some(mut f) => {
                f.file.write_all(&f.buffer).await?;
                f.file.sync_all().await?;
                Ok(Spooled::File(SpooledFile {
                    path: f.path,
                    id: hex::encode(f.hasher.finalize()),
                    len: f.len,
                }))
            }
        }
    }
}

/// A complete message in a spool file, durable, named by its content hash. The file is
/// removed when this is dropped unless a blob store has taken it.
#[derive(Debug)]
pub struct SpooledFile {
    pub(crate) path: tempfile::TempPath,
    pub(crate) id: String,
    pub(crate) len: u64,
}

impl SpooledFile {
    /// The blob id its bytes will have.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the whole file (for stores that keep bytes in the database).
    pub async fn read(&self) -> std::io::Result<Vec<u8>> {
        tokio::fs::read(&self.path).await
    }
}

/// A complete message.
#[derive(Debug)]
pub enum Spooled {
    Memory(Vec<u8>),
    File(SpooledFile),
}

impl Spooled {
    pub fn len(&self) -> u64 {
        match self {
            Spooled::Memory(m) => m.len() as u64,
            Spooled::File(f) => f.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> HeadFn {
        Box::new(|first: &[u8], whole: bool| {
            format!("X-First: {} {whole}\r\n", first.len()).into_bytes()
        })
    }

    #[tokio::test]
    async fn small_messages_stay_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path(), "n1", 16);
        let mut w = spool.writer(head());
        w.write(b"0123456789").await.unwrap();
        w.write(b"abcdef").await.unwrap();
        assert!(!w.spilled());
        match w.finish().await.unwrap() {
            Spooled::Memory(m) => assert_eq!(m, b"X-First: 16 true\r\n0123456789abcdef"),
            Spooled::File(_) => panic!("spilled"),
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn large_messages_go_to_a_hashed_file_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path(), "n1", 16);
        let mut w = spool.writer(head());
        let mut whole = Vec::new();
        for i in 0..20_000u32 {
            let part = format!("line {i}\r\n");
            whole.extend_from_slice(part.as_bytes());
            w.write(part.as_bytes()).await.unwrap();
        }
        assert!(w.spilled());
        let Spooled::File(f) = w.finish().await.unwrap() else {
            panic!("in memory")
        };
        // The head saw what was in memory when the message spilled: two lines of 8 bytes.
        let on_disk = std::fs::read(f.path()).unwrap();
        assert!(on_disk.starts_with(b"X-First: 16 false\r\nline 0\r\n"));
        assert!(on_disk.ends_with(&whole));
        assert_eq!(f.len(), on_disk.len() as u64);
        assert_eq!(f.id(), crate::blob::blob_id(&on_disk));
        let path = f.path().to_path_buf();
        assert!(
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("n1.spool.")
        );
        drop(f);
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn prepare_removes_only_this_nodes_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path().join("tmp"), "n1", 16);
        assert_eq!(spool.prepare().unwrap(), 0);
        std::fs::write(spool.dir().join("n1.spool.abc"), b"x").unwrap();
        std::fs::write(spool.dir().join("n2.spool.abc"), b"x").unwrap();
        assert_eq!(spool.prepare().unwrap(), 1);
        assert!(spool.dir().join("n2.spool.abc").exists());
    }
}
