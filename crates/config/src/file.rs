//! Reading a configuration file: a regular file (after following symbolic links) of at most
//! [`MAX_CONFIG_BYTES`], read whole as UTF-8 text.
//!
//! Anything else is refused with a [`FileProblem`] before it can hurt: a character device such as
//! `/dev/zero` would be read until memory runs out, and opening a FIFO with no writer blocks
//! forever. The path is checked before it is opened, opened with `O_NONBLOCK` (so a FIFO swapped
//! in meanwhile cannot block the open) and checked again through the open descriptor; the read
//! itself stops one byte past the limit, so a file that grows after the check is caught too.

use std::fmt;
use std::fs::{File, Metadata};
use std::io::Read;
use std::path::Path;

/// The largest configuration file read: 1 MiB.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Why a configuration file was not read. Its text names the problem, not the file: callers
/// prefix the file's name.
#[derive(Debug)]
pub enum FileProblem {
    /// The operating system refused (no such file, permission, a symbolic link loop...).
    Io(std::io::Error),
    /// A directory, FIFO, device or socket.
    NotRegular(&'static str),
    /// Larger than the limit (`size` is None when the file grew past it while being read).
    TooLarge { size: Option<u64>, limit: u64 },
    /// Not UTF-8 text.
    NotUtf8,
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The cause is part of this text and is not also returned by `source()`, so a
            // printer that walks the error chain shows it once.
            FileProblem::Io(e) => write!(f, "cannot read: {e}"),
            FileProblem::NotRegular(kind) => write!(f, "not a regular file but {kind}"),
            FileProblem::TooLarge {
                size: Some(size),
                limit,
            } => write!(
                f,
                "too large: {size} bytes, more than the {} a configuration file may have",
                show_limit(*limit)
            ),
            FileProblem::TooLarge { size: None, limit } => write!(
                f,
                "too large: grew past {} while being read",
                show_limit(*limit)
            ),
            FileProblem::NotUtf8 => write!(f, "not UTF-8 text"),
        }
    }
}

impl std::error::Error for FileProblem {}

fn show_limit(limit: u64) -> String {
    if limit >= 1 << 20 && limit.is_multiple_of(1 << 20) {
        format!("{} MiB", limit >> 20)
    } else {
        format!("{limit} bytes")
    }
}

/// What kind of file `meta` describes, when it is not a regular file.
fn not_regular(meta: &Metadata) -> Option<&'static str> {
    let t = meta.file_type();
    if t.is_file() {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return Some("a FIFO");
        }
        if t.is_char_device() {
            return Some("a character device");
        }
        if t.is_block_device() {
            return Some("a block device");
        }
        if t.is_socket() {
            return Some("a socket");
        }
    }
    if t.is_dir() {
        return Some("a directory");
    }
    Some("not a file")
}

fn check(meta: &Metadata, limit: u64) -> Result<(), FileProblem> {
    if let Some(kind) = not_regular(meta) {
        return Err(FileProblem::NotRegular(kind));
    }
    if meta.len() > limit {
        return Err(FileProblem::TooLarge {
            size: Some(meta.len()),
            limit,
        });
    }
    Ok(())
}

/// Reads the configuration file at `path` (symbolic links followed) if it is a regular file of
/// at most [`MAX_CONFIG_BYTES`].
pub fn read_config_file(path: &Path) -> Result<String, FileProblem> {
    read_limited(path, MAX_CONFIG_BYTES)
}

/// [`read_config_file`] with another limit.
pub fn read_limited(path: &Path, limit: u64) -> Result<String, FileProblem> {
    // Follows symbolic links: a loop or a dangling link is an error here.
    check(&std::fs::metadata(path).map_err(FileProblem::Io)?, limit)?;
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // A FIFO put in the file's place after the check must not block the open; for a
        // regular file the flag changes nothing.
        opts.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file: File = opts.open(path).map_err(FileProblem::Io)?;
    check(&file.metadata().map_err(FileProblem::Io)?, limit)?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(FileProblem::Io)?;
    if bytes.len() as u64 > limit {
        return Err(FileProblem::TooLarge { size: None, limit });
    }
    String::from_utf8(bytes).map_err(|_| FileProblem::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regular_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.toml");
        std::fs::write(&p, "x = 1\n").unwrap();
        assert_eq!(read_config_file(&p).unwrap(), "x = 1\n");
        // Through a symbolic link too.
        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert_eq!(read_config_file(&link).unwrap(), "x = 1\n");
    }

    #[test]
    fn the_limit_is_inclusive() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.toml");
        std::fs::write(&p, "0123456789").unwrap();
        assert!(read_limited(&p, 10).is_ok());
        let e = read_limited(&p, 9).unwrap_err();
        assert!(
            matches!(
                e,
                FileProblem::TooLarge {
                    size: Some(10),
                    limit: 9
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn devices_directories_and_fifos_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_config_file(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(e.to_string(), "not a regular file but a character device");
        let e = read_config_file(dir.path()).unwrap_err();
        assert!(e.to_string().contains("a directory"), "{e}");
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path and a plain mode.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_config_file(&fifo).unwrap_err();
        assert!(e.to_string().contains("a FIFO"), "{e}");
    }

    #[test]
    fn binary_is_not_text() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.toml");
        std::fs::write(&p, [0xff, 0xfe, 0x00]).unwrap();
        assert_eq!(
            read_config_file(&p).unwrap_err().to_string(),
            "not UTF-8 text"
        );
    }
}
