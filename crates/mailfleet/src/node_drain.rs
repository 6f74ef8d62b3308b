//! A node's drain, asked for by `mailfleet node drain SERVER_ID` through the store and seen by
//! the node's heartbeat within about a second.
//!
//! In order: the heartbeat says `"state": "draining"` (a balancer that takes its servers from
//! the cluster sends the node no new clients); the listening sockets close (so health checks
//! fail too); the queue claims nothing more. Open IMAP, POP3 and SMTP sessions and queue
//! deliveries under way go on until they end or the request's deadline passes; then the
//! sessions still open are closed (IMAP `* BYE`, POP3 `-ERR`, SMTP `421`), the deliveries still
//! under way are cut off, and the queue leases the node still holds are given back. Last, the
//! node writes one more heartbeat saying `"drained"`, removes the request and exits 0.

use std::sync::Arc;
use std::time::Duration;

use mailfleet_cluster::{NodeLifecycle, NodeState};
use mailfleet_listener::Intake;
use mailfleet_store::{DrainRequest, NodeInfo, Store, now};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::node::RunningNode;

/// How long, after the deadline, the sessions get to say goodbye and the node's tasks to stop.
const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// What a drain acts on, kept by the running node.
pub(crate) struct DrainHandles {
    pub store: Arc<dyn Store>,
    /// Who the node is, for the heartbeats the drain writes itself.
    pub node_info: NodeInfo,
    pub lifecycle: NodeLifecycle,
    pub intake: Intake,
    /// Cancelled: the queue claims no more items.
    pub queue_claiming: CancellationToken,
    /// Cancelled: the queue cuts off its deliveries under way and gives their leases back.
    pub queue_cut_off: CancellationToken,
    pub queue: Option<JoinHandle<()>>,
}

impl DrainHandles {
    /// Waits for the queue worker to end (it ends after its cut-off at the latest).
    pub async fn queue_stopped(&mut self) {
        if let Some(q) = self.queue.take()
            && tokio::time::timeout(Duration::from_secs(30), q)
                .await
                .is_err()
        {
            tracing::warn!("the queue worker did not stop within 30 s");
        }
    }

    /// Writes a heartbeat saying `state` now, and otherwise what the latest one said.
    async fn beat(&self, state: NodeState) {
        let mut info = self.node_info.clone();
        info.info = self.lifecycle.last_info();
        info.last_seen = now();
        state.put_into(&mut info.info);
        if let Err(e) = self.store.heartbeat(&info).await {
            tracing::warn!("heartbeat failed: {e}");
        }
    }
}

/// Drains `node` as `request` asks; returns once it has stopped. `shutdown` (a stop signal)
/// cuts the wait short: the sessions still open are closed at once.
pub(crate) async fn drain(
    node: RunningNode,
    request: DrainRequest,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let RunningNode {
        listeners: _,
        tasks,
        drain: mut handles,
    } = node;
    let allowed = Duration::from_secs(request.deadline.saturating_sub(now()).max(0) as u64);
    let deadline = tokio::time::Instant::now() + allowed;
    tracing::info!(
        deadline = %humantime::format_duration(allowed),
        "drain requested: taking no new clients; open sessions may go on until the deadline"
    );
    handles.lifecycle.set_state(NodeState::Draining);
    handles.beat(NodeState::Draining).await;
    handles.intake.accepting.cancel();
    handles.queue_claiming.cancel();
    handles.intake.sessions.close();

    let sessions = handles.intake.sessions.clone();
    let mut queue = handles.queue.take();
    let all_ended = async {
        let queue_ended = async {
            if let Some(q) = queue.as_mut() {
                let _ = q.await;
            }
        };
        tokio::join!(sessions.wait(), queue_ended);
    };
    let ended = tokio::select! {
        _ = all_ended => true,
        _ = tokio::time::sleep_until(deadline) => {
            tracing::warn!(
                sessions = sessions.len(),
                "drain deadline passed: closing the sessions still open"
            );
            false
        }
        _ = shutdown.cancelled() => {
            tracing::warn!(
                sessions = sessions.len(),
                "stop signal during the drain: closing the sessions still open"
            );
            false
        }
    };
    if ended {
        tracing::info!("drain: every session and queue delivery has ended");
        // A finished JoinHandle must not be awaited again.
        queue = None;
    }
    handles.queue_cut_off.cancel();
    shutdown.cancel();
    if tokio::time::timeout(CLOSE_GRACE, sessions.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            sessions = sessions.len(),
            "sessions still open {} after the drain closed them",
            humantime::format_duration(CLOSE_GRACE)
        );
    }
    handles.queue = queue;
    handles.queue_stopped().await;
    for t in tasks {
        let _ = tokio::time::timeout(CLOSE_GRACE, t).await;
    }
    // The heartbeat task has stopped: this beat is the node's last.
    handles.lifecycle.set_state(NodeState::Drained);
    handles.beat(NodeState::Drained).await;
    handles
        .store
        .clear_drain(&handles.node_info.server_id, i64::MAX)
        .await?;
    tracing::info!("drained; stopping");
    Ok(())
}
