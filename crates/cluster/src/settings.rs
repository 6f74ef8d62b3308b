//! Cluster settings, read from the store and applied live on every node (DESIGN.md §4).
//!
//! Each node polls the store's settings version (one cheap query); when it moves, the whole set is
//! re-read and published through a `watch` channel. Readers take an `Arc<Settings>` snapshot.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use mailfleet_store::{Store, StoreError};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// One consistent view of every cluster setting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub version: i64,
    values: BTreeMap<String, String>,
}

impl Settings {
    pub fn from_map(version: i64, values: BTreeMap<String, String>) -> Self {
        Self { version, values }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// The value parsed as `T`, or `default` when unset or unparsable (unparsable values are
    /// refused by `mailfleet settings set`, so this only guards against hand-edited rows).
    pub fn get_or<T: FromStr>(&self, key: &str, default: T) -> T {
        self.get(key)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(default)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// The live settings of a node.
#[derive(Clone)]
pub struct LiveSettings {
    rx: watch::Receiver<Arc<Settings>>,
}

async fn read_all(store: &dyn Store) -> Result<Settings, StoreError> {
    // Read the version first: a change made while listing shows up at the next poll.
    let version = store.settings_version().await?;
    let list = store.list_settings().await?;
    Ok(Settings {
        version,
        values: list.into_iter().map(|s| (s.key, s.value)).collect(),
    })
}

impl LiveSettings {
    /// Reads the settings now, then polls the store every `poll` until `shutdown`.
    pub async fn start(
        store: Arc<dyn Store>,
        poll: Duration,
        shutdown: CancellationToken,
    ) -> Result<Self, StoreError> {
        let first = read_all(store.as_ref()).await?;
        let (tx, rx) = watch::channel(Arc::new(first));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(poll);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let known = tx.borrow().version;
                match store.settings_version().await {
                    Ok(v) if v != known => match read_all(store.as_ref()).await {
                        Ok(s) => {
                            tracing::info!(version = s.version, "cluster settings changed");
                            tx.send_replace(Arc::new(s));
                        }
                        Err(e) => tracing::warn!("cannot read cluster settings: {e}"),
                    },
                    Ok(_) => {}
                    Err(e) => tracing::warn!("cannot poll cluster settings: {e}"),
                }
            }
        });
        Ok(Self { rx })
    }

    /// Settings that never change (tests, tools).
    pub fn fixed(settings: Settings) -> Self {
        let (_tx, rx) = watch::channel(Arc::new(settings));
        Self { rx }
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<Settings> {
        self.rx.borrow().clone()
    }

    /// A receiver that wakes on every change.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Settings>> {
        self.rx.clone()
    }
}
