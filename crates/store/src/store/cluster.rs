//! Cluster state: node heartbeats, named leases with fencing tokens, and the shared settings.

use async_trait::async_trait;

use super::Result;
use crate::model::{
    BalancerServerView, DrainRequest, Fence, Lease, NodeInfo, Setting, StaleLeases, Timestamp,
};

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
    /// Whether `fence`'s lease is still held by its holder with its token and unexpired at
    /// `now`: `Ok(())`, else [`crate::StoreError::Fenced`]. For a master job about to do work
    /// outside the store (removing blob files); its store writes check the fence themselves.
    async fn check_fence(&self, fence: &Fence, now: Timestamp) -> Result<()>;
    /// Deletes the leases other than `fence`'s own that expired before `expired_before` (a dead
    /// node's POP3 maildrop leases, say) and clears the queue items' leases that did, if
    /// `fence` holds at `now`, in one transaction ([`crate::StoreError::Fenced`] and nothing
    /// written otherwise).
    async fn delete_stale_leases(
        &self,
        fence: &Fence,
        now: Timestamp,
        expired_before: Timestamp,
    ) -> Result<StaleLeases>;
    async fn get_setting(&self, key: &str) -> Result<Option<Setting>>;
    /// Sets a value; its version becomes one more than the highest version of any setting.
    async fn set_setting(&self, key: &str, value: &str) -> Result<Setting>;
    async fn delete_setting(&self, key: &str) -> Result<bool>;
    async fn list_settings(&self) -> Result<Vec<Setting>>;
    /// The highest version of any setting (0 if none): a cheap "did anything change" probe.
    async fn settings_version(&self) -> Result<i64>;
    /// Asks node `server_id` to drain (replacing an earlier request for it).
    async fn request_drain(&self, request: &DrainRequest) -> Result<()>;
    /// The drain request for `server_id`, if there is one.
    async fn drain_request(&self, server_id: &str) -> Result<Option<DrainRequest>>;
    /// Removes the drain request for `server_id` if it was made before `requested_before`;
    /// true when one was removed.
    async fn clear_drain(&self, server_id: &str, requested_before: Timestamp) -> Result<bool>;
    /// Replaces every row balancer `balancer` reported before with `servers`, in one
    /// transaction.
    async fn report_balancer(&self, balancer: &str, servers: &[BalancerServerView]) -> Result<()>;
    /// Every balancer's latest report, by balancer, service and server.
    async fn list_balancer_servers(&self) -> Result<Vec<BalancerServerView>>;
}
