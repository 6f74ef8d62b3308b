//! The balancer's side of an active/passive pair (`mailfleet_ha`): what is replicated and how
//! the passive member applies it.
//!
//! The active member replicates its configuration without its `[pair]` section (the two members'
//! sections differ: role, listen, peer), the source-IP persistence tables and the runtime state
//! of its servers (drain, maint, weight set through the API), so a server halted on the active
//! stays halted after a failover. The passive member puts its own `[pair]` section back, writes
//! the result to its configuration file (so a restart or a failover keeps it) and applies it like
//! a reload; then it replaces its persistence tables, so clients keep their servers when it takes
//! over, and puts the servers' runtime state in force (kept in its own state file too). The text
//! is edited, not re-serialised: the active's comments and layout reach the passive's file, and
//! the passive keeps the comments of its own `[pair]` section.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use serde::{Deserialize, Serialize};

use crate::balancer::Inner;
use crate::clock::now_ms;
use crate::config::PersistenceKind;
use crate::persist::ExportedEntry;
use crate::runtime_state::RuntimeState;

#[derive(Debug, Serialize, Deserialize)]
struct Wire {
    /// The configuration text without `[pair]`, comments and layout kept.
    config: String,
    /// Service name → its persistence entries.
    persistence: BTreeMap<String, Vec<ExportedEntry>>,
    /// Drain, maint and weight set at runtime (absent from an older active: left as is).
    #[serde(default)]
    runtime: Option<RuntimeState>,
}

pub(crate) struct PairState {
    pub inner: Weak<Inner>,
}

/// `text` without its `[pair]` table and the comments that belong to it (those on its lines
/// and right above its header, up to the previous table); everything else as written.
pub(crate) fn without_pair(text: &str) -> Result<String, String> {
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| format!("{e}"))?;
    doc.remove("pair");
    Ok(doc.to_string())
}

/// `shared` (a configuration without `[pair]`) with the `[pair]` table of `local`, and its
/// comments, put back at the end.
fn with_local_pair(shared: &str, local: &str) -> Result<String, String> {
    let l: toml_edit::DocumentMut = local.parse().map_err(|e| format!("{e}"))?;
    let mut out = shared.to_string();
    if let Some(p) = l.get("pair") {
        let mut pair = toml_edit::DocumentMut::new();
        pair.insert("pair", p.clone());
        // One blank line between the shared part and the local section.
        while !out.is_empty() && !out.ends_with("\n\n") {
            out.push('\n');
        }
        out.push_str(&pair.to_string());
    }
    // The result must still be one valid document (e.g. no duplicate [pair]).
    out.parse::<toml_edit::DocumentMut>()
        .map_err(|e| format!("merged configuration: {e}"))?;
    Ok(out)
}

/// Whether two configuration texts hold the same values (comments and layout aside).
fn same_values(a: &str, b: &str) -> bool {
    match (a.parse::<toml::Table>(), b.parse::<toml::Table>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

impl mailfleet_ha::ReplicatedState for PairState {
    fn snapshot(&self) -> Vec<u8> {
        let Some(inner) = self.inner.upgrade() else {
            return Vec::new();
        };
        let (config, services) = inner.view();
        let Ok(text) = without_pair(&config.text) else {
            return Vec::new();
        };
        let now = now_ms();
        let persistence = services
            .iter()
            .filter(|(cfg, ..)| cfg.persistence == PersistenceKind::SourceIp)
            .map(|(cfg, shared, ..)| (cfg.name.clone(), shared.persist.export(now)))
            .collect();
        serde_json::to_vec(&Wire {
            config: text,
            persistence,
            runtime: Some(inner.runtime_state()),
        })
        .unwrap_or_default()
    }

    fn apply(&self, snapshot: &[u8]) -> Result<(), String> {
        let inner = self
            .inner
            .upgrade()
            .ok_or_else(|| "the balancer has stopped".to_string())?;
        let wire: Wire =
            serde_json::from_slice(snapshot).map_err(|e| format!("bad replicated state: {e}"))?;
        let current = inner.config_text();
        // Values, not text: a comment-only difference needs no reload, and the merged text
        // need not match the active's byte for byte.
        if !same_values(&without_pair(&current)?, &wire.config) {
            let merged = with_local_pair(&wire.config, &current)?;
            inner
                .apply_replicated(&merged)
                .map_err(|e| format!("replicated configuration refused: {e}"))?;
            tracing::info!("applied the configuration replicated from the active balancer");
        }
        let (_, services) = inner.view();
        let now = now_ms();
        for (cfg, shared, ..) in services {
            if let Some(entries) = wire.persistence.get(&cfg.name) {
                shared.persist.import(entries, now);
            }
        }
        if let Some(runtime) = &wire.runtime
            && inner.runtime_state() != *runtime
        {
            inner.apply_runtime_state(runtime, "the active pair member");
            tracing::info!(
                servers = runtime.servers.len(),
                "applied the servers' runtime state replicated from the active balancer"
            );
        }
        Ok(())
    }
}

/// Starts the pair member of `inner` when its configuration has a `[pair]` section.
pub(crate) async fn start(inner: &Arc<Inner>) -> Result<(), crate::BalancerError> {
    let Some(section) = inner.pair_section() else {
        return Ok(());
    };
    let state = Arc::new(PairState {
        inner: Arc::downgrade(inner),
    });
    let handle = mailfleet_ha::start(section, state, inner.shutdown.clone())
        .await
        .map_err(|e| crate::BalancerError::Pair(e.to_string()))?;
    tracing::info!(role = %handle.role(), "balancer pair member started");
    inner.set_pair(handle);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_pair_section_survives_replication() {
        let active = "[pair]\nrole = \"active\"\nlisten = \"10.0.0.1:7000\"\npeer = \"10.0.0.2:7000\"\n\n[[service]]\nname = \"imap\"\nlisten = [\"10.0.0.100:143\"]\n";
        let passive = "[pair]\nrole = \"passive\"\nlisten = \"10.0.0.2:7000\"\npeer = \"10.0.0.1:7000\"\n\n[[service]]\nname = \"old\"\nlisten = [\"10.0.0.100:110\"]\n";
        let shared = without_pair(active).unwrap();
        assert!(!shared.contains("pair"));
        let merged = with_local_pair(&shared, passive).unwrap();
        let t: toml::Table = merged.parse().unwrap();
        assert_eq!(t["pair"]["role"].as_str(), Some("passive"));
        assert_eq!(t["service"][0]["name"].as_str(), Some("imap"));
        assert!(same_values(&without_pair(&merged).unwrap(), &shared));
    }

    #[test]
    fn comments_survive_replication() {
        let active = "# Front door of the mail cluster.\n\n# The active half.\n[pair]\nrole = \"active\" # starts active\nlisten = \"10.0.0.1:7000\"\npeer = \"10.0.0.2:7000\"\n\n# IMAP for everyone.\n[[service]]\nname = \"imap\"\nlisten = [\"10.0.0.100:143\"] # the VIP\n";
        let passive = "# The standby half: do not edit its services, they come from the active.\n[pair]\nrole = \"passive\"\nlisten = \"10.0.0.2:7000\" # eth1\npeer = \"10.0.0.1:7000\"\n\n[[service]]\nname = \"old\"\nlisten = [\"10.0.0.100:110\"]\n";
        let shared = without_pair(active).unwrap();
        assert!(!shared.contains("active half") && !shared.contains("starts active"));
        assert!(shared.contains("# IMAP for everyone.") && shared.contains("# the VIP"));
        let merged = with_local_pair(&shared, passive).unwrap();
        for comment in [
            "# IMAP for everyone.",
            "# the VIP",
            "# The standby half",
            "# eth1",
        ] {
            assert!(merged.contains(comment), "{comment:?} lost:\n{merged}");
        }
        assert!(
            !merged.contains("old"),
            "the passive's own services are replaced"
        );
        let t: toml::Table = merged.parse().unwrap();
        assert_eq!(t["pair"]["role"].as_str(), Some("passive"));
        // Replicating the same again changes nothing: the values match.
        assert!(same_values(&without_pair(&merged).unwrap(), &shared));
        assert!(!same_values(&shared, &without_pair(passive).unwrap()));
        // A comment-only change is not a change of values.
        assert!(same_values(
            &shared,
            &shared.replace("# the VIP", "# still the VIP")
        ));
    }
}
