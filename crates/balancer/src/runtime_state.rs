//! What the runtime API changed (drain, maint, weight), kept across restarts in the state file
//! and replicated to the passive pair member.
//!
//! The file is JSON, rewritten whole after every change: written to a temporary file beside it,
//! flushed to disk, renamed over the old one, and the directory flushed, so a crash leaves either
//! the old state or the new one, never a torn file. It lists only servers that differ from the
//! configuration file (not `ready`, or with a runtime weight); each weight carries the file's
//! weight it was set over, because a changed file weight drops the runtime one (as a reload does).
//! Entries for servers the configuration no longer has are ignored with a log line.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::server::{AdminState, ServerRt};

/// The largest state file read (a line per server: far below this).
const MAX_STATE_BYTES: u64 = 16 * 1024 * 1024;

/// The runtime state of every server that differs from the configuration file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeState {
    /// Format version (1).
    #[serde(default = "version_one")]
    pub version: u32,
    #[serde(default)]
    pub servers: Vec<SavedServer>,
}

fn version_one() -> u32 {
    1
}

/// One server's runtime state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedServer {
    pub service: String,
    pub server: String,
    #[serde(default)]
    pub admin: AdminState,
    /// The runtime weight, when one is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// The file's weight when the runtime weight was in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_weight: Option<u32>,
}

/// Why the state file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("state file {path}: {problem} (remove it to start with every server ready)")]
    Bad { path: String, problem: String },
}

/// Where the state lives: `state_file` as configured (relative to the configuration file's
/// directory; empty turns it off), or beside the configuration file when unset, or nowhere for a
/// balancer started without a file and without the key.
pub fn resolve(configured: Option<&Path>, config_path: Option<&Path>) -> Option<PathBuf> {
    let dir = config_path
        .and_then(|p| p.parent())
        .filter(|d| !d.as_os_str().is_empty());
    match configured {
        Some(p) if p.as_os_str().is_empty() => None,
        Some(p) if p.is_relative() => Some(match dir {
            Some(d) => d.join(p),
            None => p.to_path_buf(),
        }),
        Some(p) => Some(p.to_path_buf()),
        None => config_path.map(default_beside),
    }
}

/// `balancer.toml` → `balancer.state`.
pub fn default_beside(config_path: &Path) -> PathBuf {
    config_path.with_extension("state")
}

impl RuntimeState {
    /// The state of `servers` (those that differ from the file), in a stable order.
    pub fn capture<'a>(servers: impl IntoIterator<Item = &'a Arc<ServerRt>>) -> RuntimeState {
        let mut out: Vec<SavedServer> = servers
            .into_iter()
            .filter_map(|s| {
                let admin = s.admin();
                let weight = s.weight_override();
                if admin == AdminState::Ready && weight.is_none() {
                    return None;
                }
                Some(SavedServer {
                    service: s.service.clone(),
                    server: s.name.clone(),
                    admin,
                    weight,
                    file_weight: weight.map(|_| s.configured_weight()),
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.service, &a.server).cmp(&(&b.service, &b.server)));
        RuntimeState {
            version: 1,
            servers: out,
        }
    }

    /// Reads the file; `None` when there is none.
    pub fn load(path: &Path) -> Result<Option<RuntimeState>, StateFileError> {
        let bad = |problem: String| StateFileError::Bad {
            path: path.display().to_string(),
            problem,
        };
        let f = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(bad(e.to_string())),
        };
        let mut text = Vec::new();
        f.take(MAX_STATE_BYTES + 1)
            .read_to_end(&mut text)
            .map_err(|e| bad(e.to_string()))?;
        if text.len() as u64 > MAX_STATE_BYTES {
            return Err(bad(format!("larger than {MAX_STATE_BYTES} bytes")));
        }
        let state: RuntimeState =
            serde_json::from_slice(&text).map_err(|e| bad(format!("not a state file: {e}")))?;
        if state.version != 1 {
            return Err(bad(format!("unknown version {}", state.version)));
        }
        Ok(Some(state))
    }

    /// Writes the file atomically: a temporary file beside it, flushed, renamed over it.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "state".into());
        let tmp = path.with_file_name(format!(".{name}.tmp"));
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&text)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
        }
        if let Err(e) = std::fs::rename(&tmp, path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(d) = std::fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Sets the listed servers' state; with `exact`, every other server goes back to ready at
    /// the file's weight (a replicated state replaces the whole picture). `from` names the source
    /// in log lines.
    pub fn apply(
        &self,
        servers: &HashMap<(String, String), Arc<ServerRt>>,
        exact: bool,
        from: &str,
    ) {
        let mut seen = std::collections::HashSet::new();
        for e in &self.servers {
            let key = (e.service.clone(), e.server.clone());
            let Some(s) = servers.get(&key) else {
                tracing::info!(
                    from,
                    service = %e.service,
                    server = %e.server,
                    "runtime state for a server the configuration does not have: ignored"
                );
                continue;
            };
            seen.insert(key);
            if s.admin() != e.admin {
                s.set_admin(e.admin);
            }
            match (e.weight, e.file_weight) {
                (Some(w), _) if w > crate::config::MAX_WEIGHT => {
                    tracing::warn!(
                        from,
                        service = %e.service,
                        server = %e.server,
                        weight = w,
                        "runtime weight above the largest weight ignored"
                    );
                    s.clear_weight_override();
                }
                (Some(w), Some(fw)) if fw != s.configured_weight() => {
                    tracing::info!(
                        from,
                        service = %e.service,
                        server = %e.server,
                        weight = w,
                        "runtime weight dropped: the file's weight for the server changed"
                    );
                    s.clear_weight_override();
                }
                (Some(w), _) => s.set_weight_override(w),
                (None, _) => s.clear_weight_override(),
            }
        }
        if exact {
            for (key, s) in servers {
                if !seen.contains(key) {
                    if s.admin() != AdminState::Ready {
                        s.set_admin(AdminState::Ready);
                    }
                    s.clear_weight_override();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(service: &str, name: &str, weight: u32) -> Arc<ServerRt> {
        Arc::new(ServerRt::new(
            service,
            name,
            "127.0.0.1".parse().unwrap(),
            Some(1),
            weight,
        ))
    }

    fn map(list: &[&Arc<ServerRt>]) -> HashMap<(String, String), Arc<ServerRt>> {
        list.iter()
            .map(|s| ((s.service.clone(), s.name.clone()), (*s).clone()))
            .collect()
    }

    #[test]
    fn capture_save_load_apply() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.state");
        let (a, b, c) = (
            server("imap", "a", 100),
            server("imap", "b", 50),
            server("imap", "c", 10),
        );
        a.set_admin(AdminState::Maint);
        b.set_weight_override(7);
        let st = RuntimeState::capture([&a, &b, &c]);
        assert_eq!(st.servers.len(), 2, "c is as the file says: not saved");
        st.save(&path).unwrap();
        assert!(!dir.path().join(".b.state.tmp").exists());
        let back = RuntimeState::load(&path).unwrap().unwrap();
        assert_eq!(back, st);

        let (a2, b2, c2) = (
            server("imap", "a", 100),
            server("imap", "b", 50),
            server("imap", "c", 10),
        );
        c2.set_admin(AdminState::Drain);
        back.apply(&map(&[&a2, &b2, &c2]), false, "test");
        assert_eq!(a2.admin(), AdminState::Maint);
        assert_eq!(b2.weight(), 7);
        assert_eq!(c2.admin(), AdminState::Drain, "not exact: others kept");
        back.apply(&map(&[&a2, &b2, &c2]), true, "test");
        assert_eq!(c2.admin(), AdminState::Ready, "exact: others ready");

        // A changed file weight drops the runtime one; a missing server is skipped.
        let b3 = server("imap", "b", 60);
        back.apply(&map(&[&b3]), false, "test");
        assert_eq!(b3.weight(), 60);

        // Written by hand: a weight without the file's is taken, one too large is not.
        let hand = |w: u32| RuntimeState {
            version: 1,
            servers: vec![SavedServer {
                service: "imap".into(),
                server: "c".into(),
                admin: AdminState::Ready,
                weight: Some(w),
                file_weight: None,
            }],
        };
        hand(5).apply(&map(&[&c]), false, "test");
        assert_eq!(c.weight(), 5);
        hand(70_000).apply(&map(&[&c]), false, "test");
        assert_eq!(c.weight(), 10);
    }

    #[test]
    fn missing_bad_and_resolved_paths() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(RuntimeState::load(&dir.path().join("none")).unwrap(), None);
        let bad = dir.path().join("bad.state");
        std::fs::write(&bad, "{ not json").unwrap();
        let e = RuntimeState::load(&bad).unwrap_err().to_string();
        assert!(e.contains("bad.state"), "{e}");
        let cfg = Path::new("/etc/mf/balancer.toml");
        assert_eq!(
            resolve(None, Some(cfg)),
            Some(PathBuf::from("/etc/mf/balancer.state"))
        );
        assert_eq!(resolve(Some(Path::new("")), Some(cfg)), None);
        assert_eq!(
            resolve(Some(Path::new("s.json")), Some(cfg)),
            Some(PathBuf::from("/etc/mf/s.json"))
        );
        assert_eq!(
            resolve(Some(Path::new("/var/lib/x")), Some(cfg)),
            Some(PathBuf::from("/var/lib/x"))
        );
        assert_eq!(resolve(None, None), None);
    }
}
