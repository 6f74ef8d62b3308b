//! Node heartbeats and the master lease (DESIGN.md §4).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mailfleet_store::{NodeInfo, Store, Timestamp, now};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// How often a node writes its heartbeat.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// A node whose heartbeat is older than this many seconds (three missed beats) is dead.
pub const DEAD_AFTER_SECS: i64 = 3;

/// Whether a node last seen at `last_seen` is alive at `now`.
pub fn is_alive(last_seen: Timestamp, now: Timestamp) -> bool {
    now - last_seen <= DEAD_AFTER_SECS
}

/// One listening service of a node, as its heartbeat reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceReport {
    /// The service's name (`smtp`, `submission`, `submissions`, `imap`, `imaps`, `pop3`, ...).
    pub service: String,
    /// The `ip:port` it listens on.
    pub address: String,
    /// Connections open on it now.
    #[serde(default)]
    pub connections: u64,
}

/// What a node's heartbeat says about it (`NodeInfo::info`), besides `NodeInfo`'s own server
/// ID, hostname, start and last-seen times. Other keys may be present (read with defaults, so
/// a heartbeat from an older or newer node still reads).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeReport {
    /// mailfleet's version.
    pub version: String,
    pub pid: u32,
    /// The IP addresses the node's services listen on.
    pub addresses: Vec<String>,
    pub services: Vec<ServiceReport>,
    /// Queue items this node holds under a live lease (being delivered by it).
    pub queue_held: i64,
    /// The 1, 5 and 15 minute load averages (`None` where `/proc/loadavg` cannot be read).
    pub load: Option<[f64; 3]>,
    /// The version of the shared settings the node has applied.
    pub settings_version: i64,
}

impl NodeReport {
    /// Reads a heartbeat's `info`; keys it lacks take their defaults.
    pub fn from_info(info: &serde_json::Value) -> Self {
        serde_json::from_value(info.clone()).unwrap_or_default()
    }

    /// The report as a heartbeat's `info` object.
    pub fn to_info(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// This machine's load averages from `/proc/loadavg`.
pub fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    parse_loadavg(&text)
}

fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut words = text.split_whitespace().map(|w| w.parse::<f64>().ok());
    Some([words.next()??, words.next()??, words.next()??])
}

/// Writes this node's heartbeat row every `every` until shutdown.
pub struct Heartbeat;

impl Heartbeat {
    /// Heartbeats with a fixed `info`.
    pub fn spawn(
        store: Arc<dyn Store>,
        node: NodeInfo,
        every: Duration,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let info = node.info.clone();
        Self::spawn_describing(store, node, every, shutdown, move || {
            std::future::ready(info.clone())
        })
    }

    /// Heartbeats whose `info` is made afresh for each beat by `describe`.
    pub fn spawn_describing<F, Fut>(
        store: Arc<dyn Store>,
        mut node: NodeInfo,
        every: Duration,
        shutdown: CancellationToken,
        mut describe: F,
    ) -> tokio::task::JoinHandle<()>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = serde_json::Value> + Send,
    {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {}
                }
                node.info = describe().await;
                node.last_seen = now();
                if let Err(e) = store.heartbeat(&node).await {
                    tracing::warn!("heartbeat failed: {e}");
                }
            }
        })
    }
}

/// Name of the lease whose holder runs the cluster-wide jobs.
pub const MASTER_LEASE: &str = "master";

/// Keeps trying to hold the master lease; `is_master()` tells whether this node holds it now.
#[derive(Clone)]
pub struct MasterLease {
    held: Arc<AtomicBool>,
}

impl MasterLease {
    pub fn spawn(
        store: Arc<dyn Store>,
        holder: String,
        ttl_secs: i64,
        shutdown: CancellationToken,
    ) -> Self {
        let held = Arc::new(AtomicBool::new(false));
        let flag = held.clone();
        let renew = Duration::from_millis((ttl_secs.max(3) * 1000 / 3) as u64);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(renew);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let got = match store
                    .acquire_lease(MASTER_LEASE, &holder, now(), ttl_secs)
                    .await
                {
                    Ok(l) => l.is_some(),
                    Err(e) => {
                        tracing::warn!("master lease: {e}");
                        false
                    }
                };
                if flag.swap(got, Ordering::SeqCst) != got {
                    tracing::info!(master = got, "master role changed");
                }
            }
            if flag.load(Ordering::SeqCst) {
                let _ = store.release_lease(MASTER_LEASE, &holder).await;
            }
            // Stopped: whatever the release did, this node runs no cluster-wide job now.
            flag.store(false, Ordering::SeqCst);
        });
        Self { held }
    }

    pub fn is_master(&self) -> bool {
        self.held.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_averages_are_read_from_the_first_three_words() {
        assert_eq!(
            parse_loadavg("0.52 0.58 0.59 2/1187 12345\n"),
            Some([0.52, 0.58, 0.59])
        );
        assert_eq!(parse_loadavg("0.52 x 0.59"), None);
        assert_eq!(parse_loadavg(""), None);
    }

    #[test]
    fn a_node_is_dead_after_three_missed_beats() {
        assert!(is_alive(100, 103));
        assert!(!is_alive(100, 104));
    }

    #[test]
    fn reports_read_back_and_tolerate_missing_and_extra_keys() {
        let report = NodeReport {
            version: "0.1.0".into(),
            pid: 42,
            addresses: vec!["127.0.0.2".into()],
            services: vec![ServiceReport {
                service: "imap".into(),
                address: "127.0.0.2:10143".into(),
                connections: 3,
            }],
            queue_held: 1,
            load: Some([0.1, 0.2, 0.3]),
            settings_version: 7,
        };
        let mut info = report.to_info();
        assert_eq!(info["services"][0]["connections"], 3);
        assert_eq!(info["load"][2], 0.3);
        info["state"] = "active".into();
        assert_eq!(NodeReport::from_info(&info), report);
        let old = serde_json::json!({"services": [{"service": "smtp", "address": "a:25"}]});
        let read = NodeReport::from_info(&old);
        assert_eq!((read.services[0].connections, read.pid), (0, 0));
    }
}
