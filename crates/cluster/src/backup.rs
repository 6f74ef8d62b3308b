//! Scheduled backup, a master job ([`crate::master::MasterJobs`]): every `backup.interval` the
//! master writes a backup of the store and its blobs into `backup.dir`
//! (`mailfleet_store::backup`), named by `backup.name`, and keeps the newest `backup.keep`. The time of the last backup is the newest manifest in
//! the directory, so a new master (or a restarted one) does not back up again before it is due.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mailfleet_store::{BlobStore, Fence, Store};

use crate::master::{JobError, JobRun};
use crate::{LiveSettings, Settings};

/// Every `backup.*` key: name, default (empty = unset) and what it does.
pub const KEYS: &[(&str, &str, &str)] = &[
    (
        "backup.dir",
        "",
        "directory the master writes scheduled backups to (a shared mount in a cluster); empty = no scheduled backup",
    ),
    (
        "backup.interval",
        "1d",
        "time between scheduled backups (30m, 6h, 1d)",
    ),
    (
        "backup.keep",
        "7",
        "how many backups to keep; older ones, and blobs only they used, are removed; 0 = keep all",
    ),
    (
        "backup.name",
        mailfleet_store::backup::DEFAULT_NAME,
        "name of each backup, with strftime date variables in UTC (%Y %m %d %H %M %S)",
    ),
];

/// Checks a value before it is stored. `None` if the key is not a backup key.
pub fn validate(key: &str, value: &str) -> Option<Result<(), String>> {
    if !key.starts_with("backup.") {
        return None;
    }
    let v = value.trim();
    Some(match key {
        "backup.dir" => {
            if v.is_empty() || v.starts_with('/') {
                Ok(())
            } else {
                Err(format!("{v:?}: expected an absolute path (or empty)"))
            }
        }
        "backup.interval" => parse_interval(v).map(|_| ()),
        "backup.keep" => v
            .parse::<usize>()
            .map(|_| ())
            .map_err(|_| format!("{v:?}: expected a whole number (0 = keep all)")),
        "backup.name" => mailfleet_store::backup::backup_name(v, chrono::Utc::now())
            .map(|_| ())
            .map_err(|e| e.to_string()),
        other => Err(format!("unknown backup setting {other}")),
    })
}

fn parse_interval(v: &str) -> Result<Duration, String> {
    match humantime::parse_duration(v) {
        Ok(d) if d >= Duration::from_secs(1) => Ok(d),
        Ok(_) => Err(format!("{v:?}: must be at least 1s")),
        Err(e) => Err(format!("{v:?}: {e} (examples: 30m, 6h, 1d)")),
    }
}

/// The schedule the settings describe; `None` when scheduled backup is off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub dir: PathBuf,
    pub interval: Duration,
    pub keep: Option<usize>,
    pub name: String,
}

impl Schedule {
    pub fn from_settings(s: &Settings) -> Option<Schedule> {
        let dir = s.get("backup.dir").map(str::trim).unwrap_or("");
        if dir.is_empty() {
            return None;
        }
        let interval = s
            .get("backup.interval")
            .and_then(|v| parse_interval(v.trim()).ok())
            .unwrap_or(Duration::from_secs(86_400));
        let keep = s.get_or("backup.keep", 7usize);
        let name = s
            .get("backup.name")
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .unwrap_or(mailfleet_store::backup::DEFAULT_NAME)
            .to_string();
        Some(Schedule {
            dir: PathBuf::from(dir),
            interval,
            keep: (keep > 0).then_some(keep),
            name,
        })
    }
}

/// The time of the newest complete backup in `dir` (None: none, or no such directory).
async fn newest_backup(dir: PathBuf) -> Option<i64> {
    tokio::task::spawn_blocking(move || {
        mailfleet_store::backup::list_backups(&dir)
            .ok()?
            .last()
            .map(|(_, m)| m.created)
    })
    .await
    .ok()
    .flatten()
}

/// What the job remembers between runs: for the lease token and directory it was read under,
/// when the last backup was made or last tried.
#[derive(Default)]
struct Last {
    token: i64,
    dir: PathBuf,
    at: Option<i64>,
}

/// The scheduled backup job for [`crate::master::MasterJobs`], to run every second or so: it
/// reads the `backup.*` settings, and writes a backup when `backup.interval` has passed since
/// the newest one in `backup.dir` (read from the directory when this node becomes master or
/// the directory changes). The backup checks the fence before it is put in place and before
/// its retention removes anything. A failed backup is tried again after a minute (or the
/// interval, if shorter).
pub fn scheduled_backup(
    store: Arc<dyn Store>,
    blobs: Arc<dyn BlobStore>,
    settings: LiveSettings,
) -> impl Fn(Fence) -> JobRun + Send + Sync + 'static {
    let last = Arc::new(tokio::sync::Mutex::new(Last::default()));
    move |fence| {
        let (store, blobs, settings, last) =
            (store.clone(), blobs.clone(), settings.clone(), last.clone());
        Box::pin(async move {
            let Some(schedule) = Schedule::from_settings(&settings.current()) else {
                return Ok(String::new());
            };
            let mut last = last.lock().await;
            if last.token != fence.token || last.dir != schedule.dir {
                *last = Last {
                    token: fence.token,
                    dir: schedule.dir.clone(),
                    at: newest_backup(schedule.dir.clone()).await,
                };
            }
            let now = chrono::Utc::now();
            let interval = schedule.interval.as_secs() as i64;
            if last.at.is_some_and(|l| now.timestamp() < l + interval) {
                return Ok(String::new());
            }
            let result = mailfleet_store::backup::backup(
                store.as_ref(),
                blobs.as_ref(),
                &schedule.dir,
                &mailfleet_store::backup::BackupOptions {
                    name_pattern: &schedule.name,
                    keep: schedule.keep,
                    require_all_blobs: false,
                    fence: Some(&fence),
                },
                now,
            )
            .await;
            match result {
                Ok(r) => {
                    last.at = Some(now.timestamp());
                    let mut summary = format!(
                        "backup {} written: {} blobs, {} copied",
                        r.path.display(),
                        r.manifest.blobs,
                        r.blobs_copied
                    );
                    if !r.manifest.missing_blobs.is_empty() {
                        summary.push_str(&format!(
                            "; {} blobs could not be read (listed in its manifest)",
                            r.manifest.missing_blobs.len()
                        ));
                    }
                    if !r.removed_backups.is_empty() {
                        summary.push_str(&format!(
                            "; removed {} old backups and {} blobs",
                            r.removed_backups.len(),
                            r.removed_blobs
                        ));
                    }
                    Ok(summary)
                }
                Err(e) => {
                    last.at = Some(now.timestamp() - interval + interval.min(60));
                    Err(Box::new(e) as JobError)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        assert!(validate("queue.lease", "1s").is_none());
        assert!(validate("backup.dir", "/srv/backup").unwrap().is_ok());
        assert!(validate("backup.dir", "").unwrap().is_ok());
        assert!(validate("backup.dir", "relative").unwrap().is_err());
        assert!(validate("backup.interval", "6h").unwrap().is_ok());
        assert!(validate("backup.interval", "0s").unwrap().is_err());
        assert!(validate("backup.interval", "soon").unwrap().is_err());
        assert!(validate("backup.keep", "0").unwrap().is_ok());
        assert!(validate("backup.keep", "-1").unwrap().is_err());
        assert!(validate("backup.name", "nightly-%Y%m%d").unwrap().is_ok());
        assert!(validate("backup.name", "a/%Y").unwrap().is_err());
        assert!(validate("backup.other", "x").unwrap().is_err());
        for (k, d, _) in KEYS {
            assert!(validate(k, d).unwrap().is_ok(), "default of {k}");
        }
    }

    #[test]
    fn the_schedule_is_off_without_a_directory() {
        let mut m = std::collections::BTreeMap::new();
        assert_eq!(
            Schedule::from_settings(&Settings::from_map(1, m.clone())),
            None
        );
        m.insert("backup.dir".to_string(), "/b".to_string());
        m.insert("backup.interval".to_string(), "2h".to_string());
        m.insert("backup.keep".to_string(), "0".to_string());
        let s = Schedule::from_settings(&Settings::from_map(2, m)).unwrap();
        assert_eq!(s.interval, Duration::from_secs(7200));
        assert_eq!(s.keep, None);
        assert_eq!(s.name, mailfleet_store::backup::DEFAULT_NAME);
    }
}
