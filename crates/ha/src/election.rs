//! Who is active: a pure state machine fed heartbeats and the clock.
//!
//! Rules:
//! - Every node has an *epoch*. A node that becomes active takes `highest epoch known + 1`;
//!   a passive node adopts the highest epoch it hears. So the node that became active
//!   last always has the highest epoch.
//! - A passive node takes over when its peer has been silent for `dead_after` (3 × the
//!   interval), or at once when the peer announces it is leaving. A node configured
//!   active that has heard nothing at all since it started waits only `startup_wait`.
//! - Nothing ever hands the role back by itself: a node that comes back and hears an
//!   active peer stays passive.
//! - Both active (after a partition heals, or two nodes starting blind): the one with the
//!   higher *rank* stays active and the other becomes passive. The rank is compared as
//!   (epoch, configured role active, lower `listen` address, higher nonce): the node
//!   that became active later wins; on equal epochs the node configured active wins;
//!   then the one with the lower `listen` address; then the higher random nonce. Both
//!   nodes compute the same order from the same heartbeats, so exactly one stays active.
//! - Both passive and alive: the node with the higher rank (ignoring epochs, which a
//!   passive pair shares) becomes active, the other stays passive.

use std::cmp::Reverse;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::Role;
use crate::wire::Heartbeat;

/// What a node says about itself in every heartbeat and uses for tie-breaks.
#[derive(Clone, Copy, Debug)]
pub struct Identity {
    pub configured: Role,
    pub listen: SocketAddr,
    pub nonce: u64,
}

#[derive(Clone, Copy, Debug)]
struct PeerView {
    role: Role,
    epoch: u64,
    configured_active: bool,
    listen: SocketAddr,
    nonce: u64,
    heard: Instant,
}

type Rank = (u64, bool, Reverse<SocketAddr>, u64);

/// The election state of one node.
#[derive(Debug)]
pub struct Election {
    me: Identity,
    role: Role,
    epoch: u64,
    started: Instant,
    startup_wait: Duration,
    dead_after: Duration,
    peer: Option<PeerView>,
    /// The peer said it is leaving: take over without waiting.
    peer_left: bool,
    /// Set once the first decision after start is made.
    decided: bool,
}

impl Election {
    pub fn new(me: Identity, now: Instant, startup_wait: Duration, dead_after: Duration) -> Self {
        Election {
            me,
            role: Role::Passive,
            epoch: 0,
            started: now,
            startup_wait,
            dead_after,
            peer: None,
            peer_left: false,
            decided: me.configured == Role::Passive,
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether the start-up decision (hear the peer, or wait `startup_wait`) is made.
    pub fn decided(&self) -> bool {
        self.decided
    }

    /// Whether the peer has been heard within `dead_after`.
    pub fn peer_alive(&self, now: Instant) -> bool {
        self.alive_peer(now).is_some()
    }

    /// This node's heartbeat (without hello/leaving flags and state version).
    pub fn heartbeat(&self) -> Heartbeat {
        Heartbeat {
            role: self.role,
            configured_active: self.me.configured == Role::Active,
            hello: false,
            leaving: false,
            epoch: self.epoch,
            nonce: self.me.nonce,
            state: Default::default(),
            listen: self.me.listen,
            seq: 0,
            echo: 0,
        }
    }

    fn my_rank(&self, epoch: u64) -> Rank {
        (
            epoch,
            self.me.configured == Role::Active,
            Reverse(self.me.listen),
            self.me.nonce,
        )
    }

    fn peer_rank(p: &PeerView, epoch: u64) -> Rank {
        (epoch, p.configured_active, Reverse(p.listen), p.nonce)
    }

    fn alive_peer(&self, now: Instant) -> Option<PeerView> {
        self.peer
            .filter(|p| now.saturating_duration_since(p.heard) < self.dead_after)
    }

    /// Feeds a heartbeat from the peer; returns the new role if it changed.
    pub fn on_heartbeat(&mut self, hb: &Heartbeat, now: Instant) -> Option<Role> {
        self.decided = true;
        if hb.leaving {
            if self.role == Role::Passive {
                self.epoch = self.epoch.max(hb.epoch);
            }
            self.peer = None;
            self.peer_left = true;
            return self.evaluate(now);
        }
        self.peer_left = false;
        self.peer = Some(PeerView {
            role: hb.role,
            epoch: hb.epoch,
            configured_active: hb.configured_active,
            listen: hb.listen,
            nonce: hb.nonce,
            heard: now,
        });
        self.evaluate(now)
    }

    /// Re-evaluates with the clock only; returns the new role if it changed.
    pub fn on_tick(&mut self, now: Instant) -> Option<Role> {
        if !self.decided && now.saturating_duration_since(self.started) >= self.startup_wait {
            self.decided = true;
        }
        self.evaluate(now)
    }

    /// The next instant at which [`Election::on_tick`] could change the role, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.role {
            Role::Active => None,
            Role::Passive => {
                let (since, wait) = self.silence();
                Some(since + wait)
            }
        }
    }

    /// Since when the peer is silent, and how long silence may last before taking over.
    fn silence(&self) -> (Instant, Duration) {
        match self.peer {
            Some(p) => (p.heard, self.dead_after),
            None if self.peer_left => (self.started, Duration::ZERO),
            None if self.me.configured == Role::Active => (self.started, self.startup_wait),
            None => (self.started, self.dead_after),
        }
    }

    fn evaluate(&mut self, now: Instant) -> Option<Role> {
        let alive = self.alive_peer(now);
        match self.role {
            Role::Passive => {
                let take_over = match alive {
                    Some(p) => {
                        self.epoch = self.epoch.max(p.epoch);
                        match p.role {
                            Role::Active => false,
                            // Both passive: the higher rank (epochs are shared) takes over.
                            Role::Passive => self.my_rank(0) > Self::peer_rank(&p, 0),
                        }
                    }
                    None => {
                        let (since, wait) = self.silence();
                        self.peer_left || now.saturating_duration_since(since) >= wait
                    }
                };
                if take_over {
                    let known = self.peer.map_or(0, |p| p.epoch);
                    self.epoch = self.epoch.max(known) + 1;
                    self.role = Role::Active;
                    self.decided = true;
                    return Some(Role::Active);
                }
                None
            }
            Role::Active => {
                let p = alive?;
                if p.role == Role::Active && Self::peer_rank(&p, p.epoch) > self.my_rank(self.epoch)
                {
                    self.epoch = self.epoch.max(p.epoch);
                    self.role = Role::Passive;
                    return Some(Role::Passive);
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IV: Duration = Duration::from_millis(100);

    fn node(configured: Role, port: u16, now: Instant) -> Election {
        Election::new(
            Identity {
                configured,
                listen: SocketAddr::from(([127, 0, 0, 1], port)),
                nonce: port as u64,
            },
            now,
            IV * 2,
            IV * 3,
        )
    }

    /// Delivers `from`'s heartbeat to `to`.
    fn deliver(from: &Election, to: &mut Election, now: Instant) -> Option<Role> {
        to.on_heartbeat(&from.heartbeat(), now)
    }

    #[test]
    fn configured_active_alone_takes_over_after_startup_wait() {
        let t0 = Instant::now();
        let mut a = node(Role::Active, 1, t0);
        assert!(!a.decided());
        assert_eq!(a.on_tick(t0 + IV), None);
        assert_eq!(a.next_deadline(), Some(t0 + IV * 2));
        assert_eq!(a.on_tick(t0 + IV * 2), Some(Role::Active));
        assert!(a.decided());
        assert_eq!(a.epoch(), 1);
    }

    #[test]
    fn configured_passive_alone_waits_three_intervals() {
        let t0 = Instant::now();
        let mut b = node(Role::Passive, 2, t0);
        assert!(b.decided());
        assert_eq!(b.on_tick(t0 + IV * 2), None);
        assert_eq!(b.on_tick(t0 + IV * 3 - Duration::from_millis(1)), None);
        assert_eq!(b.on_tick(t0 + IV * 3), Some(Role::Active));
    }

    #[test]
    fn normal_start_then_failover_after_silence() {
        let t0 = Instant::now();
        let mut a = node(Role::Active, 1, t0);
        let mut b = node(Role::Passive, 2, t0);
        // A hears B (passive) and, configured active, takes over at once.
        assert_eq!(deliver(&b, &mut a, t0), Some(Role::Active));
        assert_eq!(deliver(&a, &mut b, t0), None);
        assert_eq!(b.epoch(), 1);
        // Heartbeats keep B passive.
        let t1 = t0 + IV * 10;
        assert_eq!(deliver(&a, &mut b, t1), None);
        assert_eq!(b.on_tick(t1 + IV * 2), None);
        assert_eq!(b.next_deadline(), Some(t1 + IV * 3));
        // A falls silent: B takes over after exactly 3 intervals, with a higher epoch.
        assert_eq!(b.on_tick(t1 + IV * 3), Some(Role::Active));
        assert_eq!(b.epoch(), 2);
        assert_eq!(b.next_deadline(), None);
    }

    #[test]
    fn old_active_coming_back_stays_passive() {
        let t0 = Instant::now();
        let mut b = node(Role::Passive, 2, t0);
        let mut a = node(Role::Active, 1, t0);
        deliver(&b, &mut a, t0);
        deliver(&a, &mut b, t0);
        assert_eq!(b.on_tick(t0 + IV * 3), Some(Role::Active));
        // A restarts (new process, epoch 0) and hears B active: it stays passive.
        let t2 = t0 + IV * 20;
        let mut a2 = node(Role::Active, 1, t2);
        assert_eq!(deliver(&b, &mut a2, t2), None);
        assert_eq!(a2.role(), Role::Passive);
        assert!(a2.decided());
        assert_eq!(deliver(&a2, &mut b, t2), None);
        for i in 1..50 {
            let t = t2 + IV * i;
            assert_eq!(deliver(&b, &mut a2, t), None);
            assert_eq!(a2.on_tick(t), None);
            assert_eq!(deliver(&a2, &mut b, t), None);
        }
        assert_eq!(b.role(), Role::Active);
    }

    #[test]
    fn stalled_active_that_resumes_yields_to_the_newer_active() {
        let t0 = Instant::now();
        let mut a = node(Role::Active, 1, t0);
        let mut b = node(Role::Passive, 2, t0);
        deliver(&b, &mut a, t0);
        deliver(&a, &mut b, t0);
        assert_eq!(b.on_tick(t0 + IV * 3), Some(Role::Active));
        // A never noticed (it was stopped) and is still active with epoch 1.
        assert_eq!(a.role(), Role::Active);
        let t = t0 + IV * 4;
        assert_eq!(deliver(&a, &mut b, t), None, "B (epoch 2) keeps the role");
        assert_eq!(deliver(&b, &mut a, t), Some(Role::Passive));
        assert_eq!(a.epoch(), 2);
    }

    fn converge(mut a: Election, mut b: Election, t0: Instant) -> (Election, Election) {
        for i in 0..20 {
            let t = t0 + IV * i;
            deliver(&a, &mut b, t);
            deliver(&b, &mut a, t);
            a.on_tick(t);
            b.on_tick(t);
        }
        (a, b)
    }

    #[test]
    fn both_configured_active_converge_to_one() {
        let t0 = Instant::now();
        // Both start blind and both become active with epoch 1.
        let mut a = node(Role::Active, 1, t0);
        let mut b = node(Role::Active, 2, t0);
        a.on_tick(t0 + IV * 2);
        b.on_tick(t0 + IV * 2);
        assert_eq!((a.role(), b.role()), (Role::Active, Role::Active));
        let (a, b) = converge(a, b, t0 + IV * 2);
        // Equal epochs and configured roles: the lower listen address stays.
        assert_eq!((a.role(), b.role()), (Role::Active, Role::Passive));
    }

    #[test]
    fn both_passive_elect_the_configured_active_then_the_lower_address() {
        let t0 = Instant::now();
        let (a, b) = converge(node(Role::Passive, 5, t0), node(Role::Active, 9, t0), t0);
        assert_eq!((a.role(), b.role()), (Role::Passive, Role::Active));
        let (a, b) = converge(node(Role::Passive, 5, t0), node(Role::Passive, 9, t0), t0);
        assert_eq!((a.role(), b.role()), (Role::Active, Role::Passive));
    }

    #[test]
    fn higher_epoch_wins_over_configured_role() {
        let t0 = Instant::now();
        let mut a = node(Role::Active, 1, t0);
        let mut b = node(Role::Passive, 2, t0);
        a.on_tick(t0 + IV * 2); // epoch 1
        b.on_tick(t0 + IV * 3); // epoch 1
        // B became active later than A in some earlier history: its epoch is higher.
        b.epoch = 4;
        let (a, b) = converge(a, b, t0 + IV * 3);
        assert_eq!((a.role(), b.role()), (Role::Passive, Role::Active));
        assert_eq!(a.epoch(), 4);
    }

    #[test]
    fn leaving_peer_means_take_over_now() {
        let t0 = Instant::now();
        let mut a = node(Role::Active, 1, t0);
        let mut b = node(Role::Passive, 2, t0);
        deliver(&b, &mut a, t0);
        deliver(&a, &mut b, t0);
        let mut bye = a.heartbeat();
        bye.leaving = true;
        bye.role = Role::Passive;
        assert_eq!(b.on_heartbeat(&bye, t0 + IV), Some(Role::Active));
        assert_eq!(b.epoch(), 2);
    }
}
