//! The running pair member: heartbeat loop, state replication and the VIP task.

use std::collections::VecDeque;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::config::ValidPair;
use crate::election::{Election, Identity};
use crate::vip::{self, VipControl};
use crate::wire::{self, Heartbeat, PairKey, STATE_HEADER_LEN, STATE_SEAL_OVERHEAD, Version};
use crate::{ReplicatedState, Role};

/// Number of announcement rounds after taking a VIP (gratuitous ARP: one request and one reply
/// each; IPv6: one unsolicited neighbour advertisement each).
pub const GARP_ROUNDS: u32 = 3;
/// Spacing of the gratuitous ARP rounds.
pub const GARP_SPACING: Duration = Duration::from_millis(200);
/// The active resends its snapshot at least this many intervals apart even when the
/// passive reports it is up to date.
const RESYNC_INTERVALS: u32 = 30;
/// How many of the peer's past nonces (earlier processes) are remembered and refused.
const RETIRED_NONCES: usize = 16;

/// Knobs the tests turn; production uses the defaults.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Options {
    /// On shutdown, tell the peer we are leaving (so it takes over at once). Tests turn
    /// this off to make a shutdown look like a crash.
    pub announce_leave: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            announce_leave: true,
        }
    }
}

/// What the tasks share.
#[derive(Debug)]
pub(crate) struct Shared {
    role: Role,
    epoch: u64,
    peer_alive: bool,
    /// The version the peer reported in its last heartbeat.
    peer_state: Version,
    /// The nonce of the peer's process: a new one means the peer restarted.
    peer_nonce: u64,
    /// Last snapshot applied here (as passive).
    applied: Version,
    /// Current snapshot version produced here (as active).
    published: Version,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panic while holding this lock leaves plain data behind; keep going with it.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) struct Spawned {
    pub role: watch::Receiver<Role>,
    pub decided: watch::Receiver<bool>,
    pub tasks: TaskTracker,
}

/// Spawns all tasks of one pair member on `tracker`.
pub(crate) fn spawn(
    cfg: ValidPair,
    udp: UdpSocket,
    tcp: TcpListener,
    vips: Vec<VipControl>,
    state: Arc<dyn ReplicatedState>,
    shutdown: CancellationToken,
    options: Options,
) -> Spawned {
    let tracker = TaskTracker::new();
    let (role_tx, role_rx) = watch::channel(Role::Passive);
    let (decided_tx, decided_rx) = watch::channel(false);
    let shared = Arc::new(Mutex::new(Shared {
        role: Role::Passive,
        epoch: 0,
        peer_alive: false,
        peer_state: Version::default(),
        peer_nonce: 0,
        applied: Version::default(),
        published: Version::default(),
    }));
    // Tasks other than the heartbeat loop stop when it stops (after it announced passive).
    let inner_stop = CancellationToken::new();
    // Asks the VIP task for another round of gratuitous ARP.
    let (announce, _) = watch::channel(0u64);
    // This process's nonce; 0 is kept for "not heard" in echoes.
    let nonce = loop {
        let n: u64 = rand::random();
        if n != 0 {
            break n;
        }
    };

    tracker.spawn(receiver(
        tcp,
        cfg.peer,
        Opener {
            key: cfg.key.clone(),
            nonce,
        },
        state.clone(),
        shared.clone(),
        role_rx.clone(),
        inner_stop.clone(),
    ));
    tracker.spawn(replicator(
        state,
        shared.clone(),
        role_rx.clone(),
        cfg.peer,
        cfg.key.clone(),
        cfg.interval,
        inner_stop.clone(),
    ));
    for control in vips {
        tracker.spawn(vip_task(
            control,
            role_rx.clone(),
            announce.subscribe(),
            cfg.interval,
        ));
    }
    tracker.spawn(async move {
        let signals = Signals {
            role: role_tx,
            decided: decided_tx,
            announce,
        };
        heartbeat_loop(&cfg, nonce, &udp, &shared, &signals, &shutdown, options).await;
        inner_stop.cancel();
        // Dropping role_tx here ends the VIP task, after it removed the address.
    });
    tracker.close();
    Spawned {
        role: role_rx,
        decided: decided_rx,
        tasks: tracker,
    }
}

/// Sends this member's heartbeats: numbers them, echoes the peer's nonce and tags them.
struct Beater<'a> {
    udp: &'a UdpSocket,
    peer: SocketAddr,
    key: &'a PairKey,
    seq: u64,
}

impl Beater<'_> {
    async fn send(&mut self, hb: &mut Heartbeat, track: &PeerTrack) {
        self.seq += 1;
        hb.seq = self.seq;
        hb.echo = track.echo;
        if let Err(e) = self.udp.send_to(&hb.encode(self.key), self.peer).await {
            debug!(peer = %self.peer, error = %e, "heartbeat not sent");
        }
    }
}

/// What this member knows of the peer's heartbeats, to refuse replayed ones.
///
/// A heartbeat counts (for the election) only when it echoes this member's own nonce, so
/// it was sent after the peer heard this process; and only once per (nonce, sequence),
/// so a recorded one cannot be played back. Nonces of the peer's earlier processes are
/// remembered and refused.
#[derive(Debug, Default)]
struct PeerTrack {
    /// The nonce of the peer's process whose heartbeats count now (0: none yet).
    nonce: u64,
    /// The highest sequence number counted from `nonce`.
    seq: u64,
    /// Nonces the peer used before `nonce`.
    retired: VecDeque<u64>,
    /// What this member echoes: the nonce of the last authentic heartbeat heard, whether it
    /// counted or not (the peer learns it is heard before it is counted).
    echo: u64,
}

/// How a heartbeat that passed its tag check is taken.
#[derive(Debug, PartialEq, Eq)]
enum Freshness {
    /// Counts: the peer is alive.
    Fresh,
    /// From a process of the peer that came before the current one.
    Retired,
    /// Does not echo this member's nonce: the peer has not heard this process (yet).
    NotForUs,
    /// A sequence number already counted: played back.
    Replayed,
}

impl PeerTrack {
    fn take(&mut self, hb: &Heartbeat, my_nonce: u64) -> Freshness {
        if self.retired.contains(&hb.nonce) {
            return Freshness::Retired;
        }
        self.echo = hb.nonce;
        if hb.echo != my_nonce {
            return Freshness::NotForUs;
        }
        if hb.nonce == self.nonce {
            if hb.seq <= self.seq {
                return Freshness::Replayed;
            }
        } else {
            if self.nonce != 0 {
                if self.retired.len() == RETIRED_NONCES {
                    self.retired.pop_front();
                }
                self.retired.push_back(self.nonce);
            }
            self.nonce = hb.nonce;
        }
        self.seq = hb.seq;
        Freshness::Fresh
    }
}

fn my_heartbeat(election: &Election, shared: &Mutex<Shared>) -> Heartbeat {
    let mut hb = election.heartbeat();
    let s = lock(shared);
    hb.state = match election.role() {
        Role::Active => s.published,
        Role::Passive => s.applied,
    };
    hb
}

/// What the heartbeat loop tells the other tasks and the handle.
struct Signals {
    role: watch::Sender<Role>,
    decided: watch::Sender<bool>,
    /// Asks the VIP task for another round of gratuitous ARP.
    announce: watch::Sender<u64>,
}

async fn heartbeat_loop(
    cfg: &ValidPair,
    nonce: u64,
    udp: &UdpSocket,
    shared: &Mutex<Shared>,
    signals: &Signals,
    shutdown: &CancellationToken,
    options: Options,
) {
    let me = Identity {
        configured: cfg.role,
        listen: cfg.listen,
        nonce,
    };
    let mut beater = Beater {
        udp,
        peer: cfg.peer,
        key: &cfg.key,
        seq: 0,
    };
    let mut track = PeerTrack::default();
    // Warn about heartbeats failing authentication once, until an authentic one arrives.
    let mut warned_auth = false;
    let mut election = Election::new(
        me,
        Instant::now().into_std(),
        cfg.interval * 2,
        cfg.dead_after(),
    );
    let mut tick = tokio::time::interval(cfg.interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut heard_peer = false;
    let mut heard_self = false;
    let mut buf = [0u8; 128];
    info!(listen = %cfg.listen, peer = %cfg.peer, configured = %cfg.role, "pair member started");

    loop {
        let deadline = election.next_deadline().map(Instant::from_std);
        let change = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            received = udp.recv_from(&mut buf) => {
                let (n, src) = match received {
                    Ok(r) => r,
                    Err(e) => {
                        debug!(error = %e, "heartbeat receive failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                if src.ip() != cfg.peer.ip() {
                    debug!(%src, "datagram from a stranger ignored");
                    continue;
                }
                let hb = match Heartbeat::decode(&buf[..n], &cfg.key) {
                    Ok(hb) => hb,
                    Err(e @ wire::WireError::Authentication) => {
                        if !warned_auth {
                            warn!(%src, error = %e, "heartbeat from the peer's address ignored");
                            warned_auth = true;
                        }
                        continue;
                    }
                    Err(e) => {
                        debug!(%src, error = %e, "bad heartbeat ignored");
                        continue;
                    }
                };
                warned_auth = false;
                if hb.nonce == me.nonce && hb.listen == cfg.listen {
                    if !heard_self {
                        warn!(peer = %cfg.peer, "pair.peer leads back to this member; ignoring its own heartbeats");
                        heard_self = true;
                    }
                    continue;
                }
                match track.take(&hb, me.nonce) {
                    Freshness::Fresh => {}
                    Freshness::NotForUs => {
                        // The peer has not heard this process yet: answer a starting peer
                        // at once so it learns our nonce; count nothing.
                        if hb.hello && !hb.leaving {
                            beater.send(&mut my_heartbeat(&election, shared), &track).await;
                        }
                        continue;
                    }
                    other => {
                        debug!(%src, nonce = hb.nonce, seq = hb.seq, verdict = ?other, "heartbeat not counted");
                        continue;
                    }
                }
                heard_peer = true;
                let now = Instant::now().into_std();
                let change = election.on_heartbeat(&hb, now);
                if change.is_none() && election.role() == Role::Active && hb.role == Role::Active && !hb.leaving {
                    // Both active and this member keeps the role: the peer is yielding and
                    // may have announced the VIP; announce it again.
                    signals.announce.send_modify(|n| *n += 1);
                }
                {
                    let mut s = lock(shared);
                    s.peer_state = hb.state;
                    s.peer_nonce = hb.nonce;
                    s.peer_alive = election.peer_alive(now);
                    s.epoch = election.epoch();
                }
                if hb.leaving {
                    info!(peer = %cfg.peer, "peer announced it is leaving");
                } else if hb.hello && change.is_none() {
                    beater.send(&mut my_heartbeat(&election, shared), &track).await;
                }
                change
            }
            _ = tick.tick() => {
                let now = Instant::now().into_std();
                let change = election.on_tick(now);
                {
                    let mut s = lock(shared);
                    s.peer_alive = election.peer_alive(now);
                    s.epoch = election.epoch();
                }
                let mut hb = my_heartbeat(&election, shared);
                hb.hello = !heard_peer;
                if change.is_none() {
                    beater.send(&mut hb, &track).await;
                }
                change
            }
            _ = async { if let Some(d) = deadline { tokio::time::sleep_until(d).await } }, if deadline.is_some() => {
                let now = Instant::now().into_std();
                let change = election.on_tick(now);
                let mut s = lock(shared);
                s.peer_alive = election.peer_alive(now);
                s.epoch = election.epoch();
                change
            }
        };
        if let Some(role) = change {
            {
                let mut s = lock(shared);
                s.role = role;
                s.epoch = election.epoch();
            }
            match role {
                Role::Active => info!(epoch = election.epoch(), "became active"),
                Role::Passive => info!(
                    epoch = election.epoch(),
                    "became passive: the peer is active"
                ),
            }
            signals.role.send_replace(role);
            let mut hb = my_heartbeat(&election, shared);
            hb.hello = !heard_peer;
            beater.send(&mut hb, &track).await;
        }
        if election.decided() && !*signals.decided.borrow() {
            signals.decided.send_replace(true);
        }
    }

    if options.announce_leave {
        let mut hb = my_heartbeat(&election, shared);
        hb.role = Role::Passive;
        hb.leaving = true;
        for _ in 0..2 {
            beater.send(&mut hb, &track).await;
        }
    }
    lock(shared).role = Role::Passive;
    signals.role.send_replace(Role::Passive);
    info!(listen = %cfg.listen, "pair member stopped");
}

/// What the passive side needs to open state frames: the key and its own nonce.
#[derive(Clone)]
struct Opener {
    key: PairKey,
    nonce: u64,
}

/// Passive side: accepts state frames from the peer and applies newer ones.
async fn receiver(
    listener: TcpListener,
    peer: SocketAddr,
    opener: Opener,
    state: Arc<dyn ReplicatedState>,
    shared: Arc<Mutex<Shared>>,
    role: watch::Receiver<Role>,
    stop: CancellationToken,
) {
    let mut current: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, src) = match accepted {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "state listener accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if src.ip() != peer.ip() {
            debug!(%src, "state connection from a stranger refused");
            continue;
        }
        // One connection from the active at a time: the newest replaces the old one.
        if let Some(old) = current.take() {
            old.abort();
        }
        current = Some(tokio::spawn(receive_frames(
            stream,
            opener.clone(),
            state.clone(),
            shared.clone(),
            role.clone(),
        )));
    }
    if let Some(c) = current {
        c.abort();
    }
}

async fn receive_frames(
    mut stream: TcpStream,
    opener: Opener,
    state: Arc<dyn ReplicatedState>,
    shared: Arc<Mutex<Shared>>,
    role: watch::Receiver<Role>,
) {
    loop {
        let mut header = [0u8; STATE_HEADER_LEN];
        if stream.read_exact(&mut header).await.is_err() {
            return;
        }
        let (version, len) = match wire::decode_state_header(&header) {
            Ok(h) => h,
            Err(e) => {
                warn!(error = %e, "bad state frame from the peer; dropping the connection");
                return;
            }
        };
        let mut sealed = Vec::new();
        let want = len + STATE_SEAL_OVERHEAD;
        match (&mut stream).take(want).read_to_end(&mut sealed).await {
            Ok(n) if n as u64 == want => {}
            _ => return,
        }
        let body = match wire::open_state(&opener.key, &header, opener.nonce, &sealed) {
            Ok(body) => body,
            Err(e) => {
                warn!(error = %e, "state frame from the peer's address failed authentication; dropping the connection");
                return;
            }
        };
        if *role.borrow() != Role::Passive {
            debug!(
                epoch = version.epoch,
                seq = version.seq,
                "state ignored: this member is active"
            );
            continue;
        }
        let applied = lock(&shared).applied;
        if version <= applied {
            debug!(
                epoch = version.epoch,
                seq = version.seq,
                "stale state ignored"
            );
            continue;
        }
        let st = state.clone();
        match tokio::task::spawn_blocking(move || st.apply(&body)).await {
            Ok(Ok(())) => {
                lock(&shared).applied = version;
                debug!(
                    epoch = version.epoch,
                    seq = version.seq,
                    bytes = len,
                    "state applied"
                );
            }
            Ok(Err(e)) => {
                warn!(epoch = version.epoch, seq = version.seq, error = %e, "replicated state rejected")
            }
            Err(e) => error!(error = %e, "applying replicated state panicked"),
        }
    }
}

fn hash(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// Active side: polls the snapshot every interval and sends it when it changed, when the
/// passive reports another version, and every [`RESYNC_INTERVALS`] intervals.
async fn replicator(
    state: Arc<dyn ReplicatedState>,
    shared: Arc<Mutex<Shared>>,
    mut role: watch::Receiver<Role>,
    peer: SocketAddr,
    key: PairKey,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let connect_timeout = (interval * 3).max(Duration::from_secs(1));
    let write_timeout = (interval * 10).max(Duration::from_secs(10));
    // The connection to the peer, with the peer's nonce when it was opened.
    let mut conn: Option<(TcpStream, u64)> = None;
    let mut current: Option<(Version, u64, Arc<Vec<u8>>)> = None;
    let mut last_sent: Option<(Version, Instant)> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
            changed = role.changed() => if changed.is_err() { return },
        }
        let (my_role, epoch, peer_alive, peer_state, peer_nonce) = {
            let s = lock(&shared);
            (s.role, s.epoch, s.peer_alive, s.peer_state, s.peer_nonce)
        };
        // A restarted peer: the old connection leads nowhere.
        if conn.as_ref().is_some_and(|(_, nonce)| *nonce != peer_nonce) {
            conn = None;
        }
        if my_role != Role::Active {
            conn = None;
            current = None;
            last_sent = None;
            continue;
        }
        let st = state.clone();
        let bytes = match tokio::task::spawn_blocking(move || st.snapshot()).await {
            Ok(b) => b,
            Err(e) => {
                error!(error = %e, "taking the state snapshot panicked");
                continue;
            }
        };
        let h = hash(&bytes);
        let next = match &current {
            Some((v, old, _)) if v.epoch == epoch && *old == h => None,
            Some((v, _, _)) if v.epoch == epoch => Some(Version {
                epoch,
                seq: v.seq + 1,
            }),
            _ => Some(Version { epoch, seq: 1 }),
        };
        if let Some(v) = next {
            current = Some((v, h, Arc::new(bytes)));
            lock(&shared).published = v;
        }
        let Some((version, _, bytes)) = current.clone() else {
            continue;
        };
        let due = match last_sent {
            None => true,
            Some((v, at)) => {
                v != version
                    || (peer_state != version && at.elapsed() >= interval * 2)
                    || at.elapsed() >= interval * RESYNC_INTERVALS
            }
        };
        if !due || !peer_alive {
            continue;
        }
        // Sealed for the peer's current process: a restarted passive cannot be fed it.
        let frame = match wire::seal_state(&key, version, peer_nonce, &bytes) {
            Ok(f) => f,
            Err(e) => {
                error!(error = %e, "state snapshot not sent");
                continue;
            }
        };
        let stream = match conn.take() {
            Some((s, _)) => s,
            None => match tokio::time::timeout(connect_timeout, TcpStream::connect(peer)).await {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    s
                }
                Ok(Err(e)) => {
                    debug!(%peer, error = %e, "cannot connect to the peer for state");
                    continue;
                }
                Err(_) => {
                    debug!(%peer, "connecting to the peer for state timed out");
                    continue;
                }
            },
        };
        let mut stream = stream;
        let sent = tokio::time::timeout(write_timeout, async {
            stream.write_all(&frame).await?;
            stream.flush().await
        })
        .await;
        match sent {
            Ok(Ok(())) => {
                debug!(
                    epoch = version.epoch,
                    seq = version.seq,
                    bytes = bytes.len(),
                    "state sent"
                );
                last_sent = Some((version, Instant::now()));
                conn = Some((stream, peer_nonce));
            }
            Ok(Err(e)) => debug!(%peer, error = %e, "sending state failed"),
            Err(_) => warn!(%peer, "sending state timed out"),
        }
    }
}

/// Keeps one VIP on its interface exactly while the role is active; announces it (gratuitous
/// ARP, or unsolicited neighbour advertisements for IPv6) after adding it and whenever the
/// heartbeat loop asks; removes it when the pair member stops.
async fn vip_task(
    control: VipControl,
    mut role: watch::Receiver<Role>,
    mut announce: watch::Receiver<u64>,
    interval: Duration,
) {
    let mut announce_open = true;
    loop {
        let wanted = *role.borrow_and_update();
        let mut retry = false;
        let mut garp: Option<(u32, [u8; 6])> = None;
        match wanted {
            Role::Active => match control.add().await {
                Ok(link) => {
                    info!(vip = %control.vip(), "virtual IP added");
                    garp = Some(link);
                }
                Err(e) => {
                    error!(vip = %control.vip(), error = %e, "cannot take the virtual IP; retrying");
                    retry = true;
                }
            },
            Role::Passive => {
                if let Err(e) = control.remove().await {
                    error!(vip = %control.vip(), error = %e, "cannot remove the virtual IP");
                    retry = true;
                }
            }
        }
        let mut rounds = 0;
        let mut next_garp = Instant::now();
        loop {
            let garp_due = garp.is_some() && rounds < GARP_ROUNDS;
            tokio::select! {
                changed = role.changed() => {
                    if changed.is_err() {
                        if let Err(e) = control.remove().await {
                            error!(vip = %control.vip(), error = %e, "cannot remove the virtual IP at shutdown");
                        } else {
                            info!(vip = %control.vip(), "virtual IP released at shutdown");
                        }
                        return;
                    }
                    break;
                }
                _ = tokio::time::sleep_until(next_garp), if garp_due => {
                    if let Some((index, mac)) = garp
                        && let Err(e) = vip::announce(index, mac, control.vip().addr)
                    {
                        warn!(vip = %control.vip(), error = %e, "announcement of the virtual IP not sent");
                    }
                    rounds += 1;
                    next_garp += GARP_SPACING;
                }
                _ = tokio::time::sleep(interval), if retry => break,
                asked = announce.changed(), if garp.is_some() && announce_open => {
                    if asked.is_err() {
                        // The heartbeat loop has ended; the role channel says the rest.
                        announce_open = false;
                        continue;
                    }
                    info!(vip = %control.vip(), "announcing the virtual IP again");
                    rounds = 0;
                    next_garp = Instant::now();
                }
            }
        }
    }
}
