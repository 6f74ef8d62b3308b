//! mailfleet active/passive balancer pair: heartbeats, virtual IP, state replication.
//!
//! Two balancers form a pair (seed 004's "clustered pair"). Each runs [`start`] with its
//! `[pair]` section. They exchange UDP heartbeats every `interval` (1 s by default) on
//! their `listen` addresses. The active one holds the virtual IPs and replicates its state
//! (configuration and persistence table, as an opaque [`ReplicatedState::snapshot`]) to
//! the passive one over TCP on the same address. When the active one has been silent for
//! three intervals, the passive one takes over: it adds the VIPs with netlink and announces
//! them, IPv4 ones with gratuitous ARP, IPv6 ones with unsolicited neighbour advertisements
//! (override flag set, to all nodes). A pair may hold several VIPs (`pair.vip` as a list, each
//! on `pair.interface` or an interface of its own): they move together. Roles never move back
//! by themselves.
//!
//! Tie-break when both claim active (after a partition heals, or two members started
//! blind): every member carries an epoch, and becoming active takes the highest epoch
//! known plus one, so the member that became active *later* has the higher epoch and keeps the
//! role; the other turns passive. On equal epochs the member configured `active` wins,
//! then the one with the lower `listen` address, then a random per-process nonce. Both
//! members compute the same order from the same heartbeats, so the pair converges to
//! exactly one active. When both are passive and hear each other, the same order (minus
//! the epoch) picks the one that becomes active.
//!
//! Graceful shutdown (cancelling the token) releases the VIP and tells the peer, which
//! takes over at once; await [`PairHandle::stopped`] to know the VIP is gone. A member
//! that crashed leaves the VIP configured; when it starts again it removes it before
//! anything else (and keeps it only if it becomes active).
//!
//! # For the balancer
//!
//! - Call [`start`] with the `[pair]` section (or [`PairSection::validate`] alone for a
//!   configuration check; errors read `pair.<key>: ...`).
//! - The passive member does not hold the VIP, so listeners on the VIP must bind the
//!   wildcard address, or use `IP_FREEBIND` / `net.ipv4.ip_nonlocal_bind=1`, to start on
//!   both members; traffic reaches only the member holding the VIP.
//! - [`ReplicatedState::snapshot`] is polled once per interval on the active member and
//!   [`ReplicatedState::apply`] runs on the passive one, both on blocking threads.
//! - Watch [`PairHandle::subscribe`] to react to role changes (e.g. stop health checks
//!   on the passive member).
//! - Adding the VIPs and announcing them need `CAP_NET_ADMIN` and `CAP_NET_RAW`.
//!
//! # Trust
//!
//! Heartbeats and state are accepted only from the peer's IP address. With `pair.key` set
//! (the same secret on both members) every heartbeat carries an HMAC-SHA256 tag and every
//! state frame is sealed with XChaCha20-Poly1305, so a host on the pair's network can
//! neither forge them nor read the replicated configuration. Recorded heartbeats cannot be
//! played back: a heartbeat counts only if it echoes the receiver's own per-process nonce
//! and carries a sequence number not counted before, and nonces of the peer's earlier
//! processes are refused. A state frame opens only for the receiving process it was sealed
//! for. Without `pair.key` the same checks run with a key everybody knows, which catches
//! strays and corruption but not an attacker; the member logs a warning at start.

mod config;
mod election;
mod node;
mod vip;
mod wire;

#[cfg(feature = "testing")]
pub mod testing;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{DEFAULT_INTERVAL, PairSection, Role, ValidPair, Vip, VipEntry, VipSetting};

/// The state the active balancer replicates to the passive one.
pub trait ReplicatedState: Send + Sync + 'static {
    /// The active's configuration and persistence table, opaque to this crate. Called
    /// once per heartbeat interval on the active (on a blocking thread); a changed result
    /// is sent to the passive.
    fn snapshot(&self) -> Vec<u8>;
    /// Called on the passive with a snapshot newer than the last one applied.
    fn apply(&self, snapshot: &[u8]) -> Result<(), String>;
}

/// Errors of [`start`] and of configuration validation.
#[derive(thiserror::Error, Debug)]
pub enum HaError {
    /// A bad `[pair]` key.
    #[error("pair.{key}: {message}")]
    Config {
        /// The key, without the `pair.` prefix.
        key: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The listen address cannot be bound (UDP or TCP).
    #[error("pair.listen: cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The VIP's interface is missing or unreadable.
    #[error("pair.interface: {name}: {message}")]
    Interface {
        /// Interface name.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// A netlink operation on the VIP failed.
    #[error("virtual IP: {0}")]
    Netlink(String),
}

/// A running pair member.
#[derive(Debug)]
pub struct PairHandle {
    role: watch::Receiver<Role>,
    tasks: TaskTracker,
}

impl PairHandle {
    /// The current role.
    pub fn role(&self) -> Role {
        *self.role.borrow()
    }

    /// Role changes; the value turns `Passive` when the member shuts down.
    pub fn subscribe(&self) -> watch::Receiver<Role> {
        self.role.clone()
    }

    /// Resolves when every task has ended after the shutdown token was cancelled: the VIP
    /// is removed and the peer was told.
    pub async fn stopped(&self) {
        self.tasks.wait().await;
    }
}

/// Starts this balancer's pair member.
///
/// Validates the section, binds UDP and TCP on `listen`, checks the VIP's interface and
/// spawns the member's tasks. A member configured active returns once it has heard its
/// peer or waited two intervals without hearing it, so [`PairHandle::role`] right after
/// start is the decided role; a member configured passive returns at once, passive.
pub async fn start(
    section: PairSection,
    state: Arc<dyn ReplicatedState>,
    shutdown: CancellationToken,
) -> Result<PairHandle, HaError> {
    start_with(section, state, shutdown, node::Options::default()).await
}

pub(crate) async fn start_with(
    section: PairSection,
    state: Arc<dyn ReplicatedState>,
    shutdown: CancellationToken,
    options: node::Options,
) -> Result<PairHandle, HaError> {
    let cfg = section.validate()?;
    if !cfg.authenticated {
        tracing::warn!(
            "pair.key is not set: heartbeats and replicated state are not authenticated; set the same key on both members"
        );
    }
    let bind_err = |source| HaError::Bind {
        addr: cfg.listen,
        source,
    };
    let udp = UdpSocket::bind(cfg.listen).await.map_err(bind_err)?;
    let tcp = TcpListener::bind(cfg.listen).await.map_err(bind_err)?;
    let mut vips = Vec::with_capacity(cfg.vips.len());
    for (vip, ifname) in &cfg.vips {
        vips.push(vip::VipControl::new(*vip, ifname.clone()).await?);
    }
    let wait = cfg.interval * 3;
    let spawned = node::spawn(cfg, udp, tcp, vips, state, shutdown, options);
    let mut decided = spawned.decided;
    // Bounded: the heartbeat loop decides within two intervals.
    let _ = tokio::time::timeout(wait, decided.wait_for(|d| *d)).await;
    Ok(PairHandle {
        role: spawned.role,
        tasks: spawned.tasks,
    })
}

#[cfg(test)]
mod tests;
