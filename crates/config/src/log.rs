//! The `[log]` table: where a node's log goes and how long its files are kept.
//!
//! ```toml
//! log_dir = "/var/log/mailfleet"   # top-level key, default DATA_DIR/logs
//! [log]                            # every key optional; shown with its default
//! keep_days = 30                   # log files older than this are deleted; 0 keeps them forever
//! max_size = "0"                   # a file past this size is continued in a new one; 0: daily only
//! per_service = false              # one file per service type: smtp, imap, pop3, queue, other
//! syslog = false                   # also send every line to the system log (journald, rsyslog)
//! syslog_socket = "/dev/log"       # the local syslog socket (a unix datagram socket)
//! ```

use std::path::PathBuf;

use serde::Deserialize;

/// Default `keep_days`.
pub const DEFAULT_KEEP_DAYS: u32 = 30;

/// The `[log]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// Log files older than this many days are deleted (0: never).
    pub keep_days: u32,
    /// A file that reaches this size (`100M`) is continued in a new one the same day; `0`: a new
    /// file each day only.
    pub max_size: String,
    /// One file per service type (smtp, imap, pop3, queue, other) instead of one for all.
    pub per_service: bool,
    /// Also send every line to the system log.
    pub syslog: bool,
    /// The system log's socket.
    pub syslog_socket: PathBuf,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            keep_days: DEFAULT_KEEP_DAYS,
            max_size: "0".into(),
            per_service: false,
            syslog: false,
            syslog_socket: PathBuf::from("/dev/log"),
        }
    }
}

/// Smallest `max_size` other than 0: smaller files would be mostly their names.
pub const MIN_MAX_SIZE: i64 = 64 << 10;

impl LogSection {
    /// `max_size` in bytes; `None` when files are rotated daily only.
    pub fn max_size_bytes(&self) -> Option<u64> {
        match crate::size::parse_size(&self.max_size) {
            Ok(n) if n > 0 => u64::try_from(n).ok(),
            _ => None,
        }
    }

    pub(crate) fn check(&self) -> Result<(), (&'static str, String)> {
        match crate::size::parse_size(&self.max_size) {
            Err(e) => return Err(("log.max_size", e.to_string())),
            Ok(n) if n != 0 && n < MIN_MAX_SIZE => {
                return Err((
                    "log.max_size",
                    format!(
                        "{:?} is smaller than 64K (0 rotates daily only)",
                        self.max_size
                    ),
                ));
            }
            Ok(_) => {}
        }
        if self.keep_days > 36_500 {
            return Err((
                "log.keep_days",
                format!(
                    "{} days is over 100 years (0 keeps files forever)",
                    self.keep_days
                ),
            ));
        }
        if self.syslog_socket.as_os_str().is_empty() {
            return Err(("log.syslog_socket", "must not be empty".into()));
        }
        Ok(())
    }
}
