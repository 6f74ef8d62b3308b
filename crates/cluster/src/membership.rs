//! Node heartbeats and the master lease (DESIGN.md §4).

use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailfleet_store::{DrainRequest, Fence, NodeInfo, Store, Timestamp, now};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often a node writes its heartbeat.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// A node whose heartbeat is older than this many seconds (three missed beats) is dead.
pub const DEAD_AFTER_SECS: i64 = 3;

/// A dead node is still listed (by `mailfleet status`) and watched (by the master's watchdog)
/// this long after its last heartbeat, then left out.
pub const FORGET_DEAD_AFTER_SECS: i64 = 24 * 3600;

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
    /// With a `backup_store`: which store the node uses now, `primary` or `backup`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// How far the node's clock is behind the database server's (positive: the node is
    /// behind), in milliseconds, as last measured; `None` on a store without a clock of its
    /// own (SQLite) or before the first measure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock_skew_ms: Option<i64>,
}

/// The largest clock difference between a node and the database server that the leases
/// tolerate: a master's lease is trusted for 2 s of its 3 s, so nodes' clocks must agree
/// within a second.
pub const MAX_CLOCK_SKEW_MS: i64 = 1000;

/// Measures how far this machine's clock is from `store`'s (see
/// [`NodeReport::clock_skew_ms`]): the server's time against the middle of the round trip.
/// A round trip longer than [`MAX_CLOCK_SKEW_MS`] measures nothing and is given up (a slow
/// or unreachable store must not hold up the heartbeat that measures).
pub async fn measure_clock_skew(store: &dyn mailfleet_store::Store) -> Option<i64> {
    let limit = std::time::Duration::from_millis(MAX_CLOCK_SKEW_MS.unsigned_abs());
    let before = unix_ms();
    let server = tokio::time::timeout(limit, store.clock_ms())
        .await
        .ok()?
        .ok()??;
    let after = unix_ms();
    Some(server - (before + after) / 2)
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
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

/// What a node is doing, as its heartbeat tells the cluster: `"state"` in its info.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Taking clients.
    Running,
    /// Taking no new clients; its open sessions go on until they end or its deadline.
    Draining,
    /// Drained and gone (its last heartbeat).
    Drained,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Running => "running",
            NodeState::Draining => "draining",
            NodeState::Drained => "drained",
        }
    }

    /// The state a heartbeat's info gives (`running` when it names none).
    pub fn of(info: &serde_json::Value) -> NodeState {
        match info.get("state").and_then(|v| v.as_str()) {
            Some("draining") => NodeState::Draining,
            Some("drained") => NodeState::Drained,
            _ => NodeState::Running,
        }
    }

    /// Writes this state into a heartbeat's info (made an object if it was not one).
    pub fn put_into(self, info: &mut serde_json::Value) {
        if !info.is_object() {
            *info = serde_json::Value::Object(Default::default());
        }
        if let Some(map) = info.as_object_mut() {
            map.insert("state".into(), self.as_str().into());
        }
    }
}

/// A node's state as it changes, shared by the node and its heartbeat; the drain request the
/// heartbeat has seen for it; and the info of its latest beat.
#[derive(Clone)]
pub struct NodeLifecycle {
    state: Arc<AtomicU8>,
    drain: watch::Sender<Option<DrainRequest>>,
    last_info: Arc<Mutex<serde_json::Value>>,
}

impl Default for NodeLifecycle {
    fn default() -> Self {
        NodeLifecycle {
            state: Arc::new(AtomicU8::new(0)),
            drain: watch::Sender::new(None),
            last_info: Arc::new(Mutex::new(serde_json::Value::Null)),
        }
    }
}

impl NodeLifecycle {
    pub fn state(&self) -> NodeState {
        match self.state.load(Ordering::SeqCst) {
            1 => NodeState::Draining,
            2 => NodeState::Drained,
            _ => NodeState::Running,
        }
    }

    pub fn set_state(&self, state: NodeState) {
        let n = match state {
            NodeState::Running => 0,
            NodeState::Draining => 1,
            NodeState::Drained => 2,
        };
        self.state.store(n, Ordering::SeqCst);
    }

    /// Waits until a drain is requested for this node; the request.
    pub async fn drain_requested(&self) -> DrainRequest {
        let mut rx = self.drain.subscribe();
        loop {
            if let Some(r) = rx.borrow_and_update().clone() {
                return r;
            }
            if rx.changed().await.is_err() {
                // Not reached: the sender lives in `self`, borrowed for this call.
                std::future::pending::<()>().await;
            }
        }
    }

    /// The info of the node's latest heartbeat (null before the first).
    pub fn last_info(&self) -> serde_json::Value {
        self.last_info
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
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
        node: NodeInfo,
        every: Duration,
        shutdown: CancellationToken,
        describe: F,
    ) -> tokio::task::JoinHandle<()>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = serde_json::Value> + Send + 'static,
    {
        tokio::spawn(beat(store, node, None, every, shutdown, describe))
    }

    /// [`Self::spawn_describing`] for a node that can be drained: each beat's info also carries
    /// `lifecycle`'s state (`"state"`), and after each beat of a running node the heartbeat
    /// looks for a drain request for it and hands it to `lifecycle`. A request made before the
    /// node started (left by a node that did not finish draining) is removed at the first beat.
    pub fn spawn_for_node<F, Fut>(
        store: Arc<dyn Store>,
        node: NodeInfo,
        lifecycle: NodeLifecycle,
        every: Duration,
        shutdown: CancellationToken,
        describe: F,
    ) -> tokio::task::JoinHandle<()>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = serde_json::Value> + Send + 'static,
    {
        tokio::spawn(beat(
            store,
            node,
            Some(lifecycle),
            every,
            shutdown,
            describe,
        ))
    }
}

async fn beat<F, Fut>(
    store: Arc<dyn Store>,
    mut node: NodeInfo,
    lifecycle: Option<NodeLifecycle>,
    every: Duration,
    shutdown: CancellationToken,
    mut describe: F,
) where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = serde_json::Value> + Send + 'static,
{
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stale_checked = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        node.info = describe().await;
        node.last_seen = now();
        let Some(lifecycle) = &lifecycle else {
            if let Err(e) = store.heartbeat(&node).await {
                tracing::warn!("heartbeat failed: {e}");
            }
            continue;
        };
        let state = lifecycle.state();
        state.put_into(&mut node.info);
        *lifecycle
            .last_info
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = node.info.clone();
        if let Err(e) = store.heartbeat(&node).await {
            tracing::warn!("heartbeat failed: {e}");
        }
        if state != NodeState::Running || lifecycle.drain.borrow().is_some() {
            continue;
        }
        if !stale_checked {
            match store.clear_drain(&node.server_id, node.started).await {
                Ok(true) => tracing::info!("removed a drain request made before this node started"),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!("cannot read drain requests: {e}");
                    continue;
                }
            }
            stale_checked = true;
        }
        match store.drain_request(&node.server_id).await {
            Ok(Some(r)) => {
                lifecycle.drain.send_replace(Some(r));
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("cannot read drain requests: {e}"),
        }
    }
}

/// Name of the lease whose holder runs the cluster-wide jobs.
pub const MASTER_LEASE: &str = "master";

/// How the master lease is held: long enough to ride out a slow renewal, short enough that a
/// successor holds it within 5 s of the master's death.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTiming {
    /// The lease's length in the store (whole seconds, as the store counts them).
    pub ttl_secs: i64,
    /// How often the holder renews it.
    pub renew_every: Duration,
    /// How often a node that does not hold it looks whether it has expired (a read; it tries to
    /// take the lease only then).
    pub try_every: Duration,
    /// How long after sending a renewal (on this node's monotonic clock) the holder still
    /// counts itself master if no later renewal succeeds: less than `ttl_secs`, so that it stops
    /// before any other node could see the lease expired, with a margin for clocks that differ
    /// between nodes.
    pub trust_for: Duration,
}

impl LeaseTiming {
    /// A 3 s lease renewed every second; others look every 500 ms; the holder trusts a renewal
    /// for 2 s. The store keeps whole seconds: a lease sent at wall time `t` expires at
    /// `floor(t) + 3` and is free once another node's `floor(now)` passes that, i.e. between
    /// `t + 3` and `t + 4`; a node looking every 500 ms then holds it before `t + 4.5` s. The
    /// holder stops counting itself master at `t + 2` s, a second before the earliest moment
    /// anyone else could take it.
    pub const DEFAULT: LeaseTiming = LeaseTiming {
        ttl_secs: 3,
        renew_every: Duration::from_secs(1),
        try_every: Duration::from_millis(500),
        trust_for: Duration::from_secs(2),
    };
}

/// The master lease as this node holds it: its fencing token, and until when (on the monotonic
/// clock) this node may act on it.
#[derive(Debug, Clone, Copy)]
struct Held {
    token: i64,
    until: Instant,
}

/// Keeps trying to hold the master lease; `is_master()` tells whether this node holds it now,
/// and [`MasterLease::fence`] gives what its master jobs show with their writes.
#[derive(Clone)]
pub struct MasterLease {
    holder: Arc<str>,
    held: Arc<Mutex<Option<Held>>>,
}

impl MasterLease {
    /// Contends for the lease with [`LeaseTiming::DEFAULT`].
    pub fn spawn(store: Arc<dyn Store>, holder: String, shutdown: CancellationToken) -> Self {
        Self::spawn_with(store, holder, LeaseTiming::DEFAULT, shutdown)
    }

    /// A node that may never be master (`master = false` in its file): it never takes the
    /// lease, so `is_master()` is always false.
    pub fn never(holder: String) -> Self {
        Self {
            holder: holder.into(),
            held: Arc::new(Mutex::new(None)),
        }
    }

    pub fn spawn_with(
        store: Arc<dyn Store>,
        holder: String,
        timing: LeaseTiming,
        shutdown: CancellationToken,
    ) -> Self {
        let lease = Self::never(holder);
        let this = lease.clone();
        tokio::spawn(async move {
            let mut was_master = false;
            loop {
                let period = if this.is_master() {
                    timing.renew_every
                } else {
                    timing.try_every
                };
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(period) => {}
                }
                this.contend(store.as_ref(), timing).await;
                let master = this.is_master();
                if master != was_master {
                    match this.fence() {
                        Some(f) => tracing::info!(token = f.token, "this node is now master"),
                        None => tracing::warn!("this node is no longer master"),
                    }
                    was_master = master;
                }
            }
            // Stopped: whatever the release does, this node runs no cluster-wide job now.
            let was_held = this.held_lock().take().is_some();
            if was_held && let Err(e) = store.release_lease(MASTER_LEASE, &this.holder).await {
                tracing::warn!("master lease not released: {e}");
            }
        });
        lease
    }

    /// One round: renews the lease if held, else takes it if it is free or has expired.
    async fn contend(&self, store: &dyn Store, timing: LeaseTiming) {
        if !self.is_master() {
            // A read first: while another node holds the lease, contenders write nothing.
            match store.get_lease(MASTER_LEASE).await {
                Ok(Some(l)) if *l.holder != *self.holder && l.expires >= now() => return,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!("master lease not read: {e}");
                    return;
                }
            }
        }
        let sent = Instant::now();
        match store
            .acquire_lease(MASTER_LEASE, &self.holder, now(), timing.ttl_secs)
            .await
        {
            Ok(Some(l)) => {
                *self.held_lock() = Some(Held {
                    token: l.token,
                    until: sent + timing.trust_for,
                })
            }
            Ok(None) => *self.held_lock() = None,
            // The last renewal's trust runs out by itself.
            Err(e) => tracing::warn!("master lease not renewed: {e}"),
        }
    }

    fn held_lock(&self) -> std::sync::MutexGuard<'_, Option<Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this node holds the lease now, by its own monotonic clock.
    pub fn is_master(&self) -> bool {
        self.fence().is_some()
    }

    /// The fence for a master job's writes while this node holds the lease, else `None`.
    pub fn fence(&self) -> Option<Fence> {
        let held = (*self.held_lock())?;
        (Instant::now() < held.until).then(|| Fence {
            lease: MASTER_LEASE.into(),
            holder: self.holder.to_string(),
            token: held.token,
        })
    }

    /// The name this node holds the lease under (its server ID).
    pub fn holder(&self) -> &str {
        &self.holder
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
            store: Some("backup".into()),
            clock_skew_ms: Some(-12),
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
