//! Cluster state: node heartbeats, named leases with fencing tokens, and the shared settings.

use async_trait::async_trait;

use super::Result;
use crate::model::{Lease, NodeInfo, Setting, Timestamp};

/// What the nodes of a cluster share about themselves: who is alive, who holds which lease,
/// and the settings every node applies live.
#[async_trait]
pub trait Cluster: Send + Sync {
    async fn heartbeat(&self, node: &NodeInfo) -> Result<()>;
    async fn list_nodes(&self) -> Result<Vec<NodeInfo>>;
    /// Takes or renews the lease `name` for `holder` if it is free, expired or already held by
    /// `holder`. Returns the lease with its fencing token, or `None` if someone else holds it.
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: Timestamp,
        ttl_secs: i64,
    ) -> Result<Option<Lease>>;
    async fn release_lease(&self, name: &str, holder: &str) -> Result<()>;
    async fn get_lease(&self, name: &str) -> Result<Option<Lease>>;
    async fn get_setting(&self, key: &str) -> Result<Option<Setting>>;
    /// Sets a value; its version becomes one more than the highest version of any setting.
    async fn set_setting(&self, key: &str, value: &str) -> Result<Setting>;
    async fn delete_setting(&self, key: &str) -> Result<bool>;
    async fn list_settings(&self) -> Result<Vec<Setting>>;
    /// The highest version of any setting (0 if none): a cheap "did anything change" probe.
    async fn settings_version(&self) -> Result<i64>;
}
