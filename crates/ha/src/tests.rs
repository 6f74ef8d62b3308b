//! In-process pair tests on 127.0.0.1 (no VIP).
//!
//! They run on tokio's paused clock (`start_paused`): the heartbeat intervals, dead-after
//! windows and the tests' own waits are virtual time, which moves only while every task of the
//! test is idle, so a machine busy with other work stalls the whole scene instead of making
//! one member miss the other's heartbeats. Datagrams and frames on loopback are in the peer's
//! socket by the time `send` returns; [`fine_clock`] keeps a timer due every millisecond so
//! that auto-advancing time never jumps past a datagram waiting to be read.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::node::Options;
use crate::wire::{self, HEARTBEAT_LEN, Heartbeat, PairKey, Version};
use crate::{PairHandle, PairSection, ReplicatedState, Role, start, start_with};
use mailfleet_test_support::free_port;

/// A balancer's state stand-in: `apply` replaces what `snapshot` returns, as the real
/// balancer's config and persistence table would.
#[derive(Default)]
struct TestState {
    current: Mutex<Vec<u8>>,
    applied: Mutex<Vec<Vec<u8>>>,
}

impl TestState {
    fn with(bytes: Vec<u8>) -> Arc<TestState> {
        Arc::new(TestState {
            current: Mutex::new(bytes),
            applied: Mutex::new(Vec::new()),
        })
    }
    fn set(&self, bytes: Vec<u8>) {
        *self.current.lock().unwrap() = bytes;
    }
    fn applied(&self) -> Vec<Vec<u8>> {
        self.applied.lock().unwrap().clone()
    }
}

impl ReplicatedState for TestState {
    fn snapshot(&self) -> Vec<u8> {
        self.current.lock().unwrap().clone()
    }
    fn apply(&self, snapshot: &[u8]) -> Result<(), String> {
        if snapshot.starts_with(b"reject") {
            return Err("refused by the test".into());
        }
        *self.current.lock().unwrap() = snapshot.to_vec();
        self.applied.lock().unwrap().push(snapshot.to_vec());
        Ok(())
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Keeps a timer due every millisecond of virtual time for the rest of the test. Without it a
/// paused clock would auto-advance straight to the next heartbeat or deadline whenever the
/// runtime is idle, even while a datagram sits in a socket, and handle it that much later.
fn fine_clock() {
    tokio::spawn(async {
        loop {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The `pair.key` of every member in these tests.
const KEY: &str = "in-process test pair key";

fn key() -> PairKey {
    PairKey::new(KEY.as_bytes())
}

fn section(role: Role, listen: u16, peer: u16, interval_ms: u64) -> PairSection {
    PairSection {
        role,
        listen: addr(listen),
        peer: addr(peer),
        interval: Some(format!("{interval_ms}ms")),
        vip: None,
        interface: None,
        key: Some(KEY.into()),
    }
}

async fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < within,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    t0.elapsed()
}

async fn wait_role(h: &PairHandle, role: Role, within: Duration) -> Duration {
    let mut rx = h.subscribe();
    let t0 = Instant::now();
    tokio::time::timeout(within, rx.wait_for(|r| *r == role))
        .await
        .unwrap_or_else(|_| panic!("not {role} within {within:?}"))
        .unwrap();
    t0.elapsed()
}

#[tokio::test(start_paused = true)]
async fn pair_elects_and_replicates_large_state() {
    fine_clock();
    let (pa, pb) = (free_port(), free_port());
    let big = pattern(200 * 1024, 1);
    let sa = TestState::with(big.clone());
    let sb = TestState::with(b"passive's own".to_vec());
    let stop = CancellationToken::new();
    let b = start(
        section(Role::Passive, pb, pa, 100),
        sb.clone(),
        stop.clone(),
    )
    .await
    .unwrap();
    assert_eq!(b.role(), Role::Passive);
    let a = start(section(Role::Active, pa, pb, 100), sa.clone(), stop.clone())
        .await
        .unwrap();
    assert_eq!(
        a.role(),
        Role::Active,
        "decided at start: B answered the hello as passive"
    );

    wait_for("the 200 KiB snapshot on B", Duration::from_secs(3), || {
        sb.applied().last() == Some(&big)
    })
    .await;
    // A change on the active reaches the passive within a few intervals.
    let second = pattern(70 * 1024, 2);
    sa.set(second.clone());
    let took = wait_for("the changed snapshot on B", Duration::from_secs(2), || {
        sb.applied().last() == Some(&second)
    })
    .await;
    assert!(
        took < Duration::from_secs(1),
        "change replicated after {took:?}"
    );
    // Heartbeats keep the roles for a while; nothing is re-applied (same versions are stale).
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!((a.role(), b.role()), (Role::Active, Role::Passive));
    assert_eq!(sb.applied(), vec![big, second]);
    assert!(sa.applied().is_empty(), "the active applied nothing");
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(2), async {
        a.stopped().await;
        b.stopped().await;
    })
    .await
    .unwrap();
    assert_eq!(a.role(), Role::Passive);
}

#[tokio::test(start_paused = true)]
async fn failover_after_silence_and_old_active_stays_passive() {
    fine_clock();
    let (pa, pb) = (free_port(), free_port());
    let sa = TestState::with(b"config v1 + persistence table".to_vec());
    let sb = TestState::with(Vec::new());
    let stop_a = CancellationToken::new();
    let stop_b = CancellationToken::new();
    let crash = Options {
        announce_leave: false,
    };
    let b = start(
        section(Role::Passive, pb, pa, 100),
        sb.clone(),
        stop_b.clone(),
    )
    .await
    .unwrap();
    let a = start_with(
        section(Role::Active, pa, pb, 100),
        sa.clone(),
        stop_a.clone(),
        crash,
    )
    .await
    .unwrap();
    assert_eq!(a.role(), Role::Active);
    wait_for("state on B", Duration::from_secs(2), || {
        !sb.applied().is_empty()
    })
    .await;

    // A dies silently. B takes over after 3 intervals (300 ms) of silence, not before.
    stop_a.cancel();
    a.stopped().await;
    let took = wait_role(&b, Role::Active, Duration::from_secs(2)).await;
    // A's last heartbeat left at most one interval before it stopped.
    assert!(
        took >= Duration::from_millis(190) && took <= Duration::from_millis(400),
        "takeover after {took:?}"
    );
    assert_eq!(sb.snapshot(), b"config v1 + persistence table");

    // A comes back with its configured role active: it hears B active and stays passive.
    let sa2 = TestState::with(b"stale local config".to_vec());
    let stop_a2 = CancellationToken::new();
    let a2 = start(
        section(Role::Active, pa, pb, 100),
        sa2.clone(),
        stop_a2.clone(),
    )
    .await
    .unwrap();
    assert_eq!(a2.role(), Role::Passive, "decided at start: B is active");
    let mut a2_roles = a2.subscribe();
    let mut b_roles = b.subscribe();
    a2_roles.mark_unchanged();
    b_roles.mark_unchanged();
    // It gets B's state (which is A's old state B applied).
    wait_for(
        "B's state on the returning A",
        Duration::from_secs(2),
        || sa2.applied().last().map(Vec::as_slice) == Some(&b"config v1 + persistence table"[..]),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        !a2_roles.has_changed().unwrap(),
        "A flapped: {:?}",
        a2.role()
    );
    assert!(!b_roles.has_changed().unwrap(), "B flapped: {:?}", b.role());
    assert_eq!((a2.role(), b.role()), (Role::Passive, Role::Active));
    stop_a2.cancel();
    stop_b.cancel();
}

#[tokio::test(start_paused = true)]
async fn graceful_shutdown_hands_over_at_once() {
    fine_clock();
    let (pa, pb) = (free_port(), free_port());
    let stop_a = CancellationToken::new();
    let stop_b = CancellationToken::new();
    let b = start(
        section(Role::Passive, pb, pa, 500),
        TestState::with(vec![1]),
        stop_b.clone(),
    )
    .await
    .unwrap();
    let a = start(
        section(Role::Active, pa, pb, 500),
        TestState::with(vec![2]),
        stop_a.clone(),
    )
    .await
    .unwrap();
    assert_eq!((a.role(), b.role()), (Role::Active, Role::Passive));
    stop_a.cancel();
    // Dead-after is 1.5 s; the leave announcement makes B take over well before.
    let took = wait_role(&b, Role::Active, Duration::from_secs(3)).await;
    assert!(took < Duration::from_secs(1), "takeover after {took:?}");
    tokio::time::timeout(Duration::from_secs(1), a.stopped())
        .await
        .unwrap();
    assert_eq!(a.role(), Role::Passive);
    stop_b.cancel();
}

#[tokio::test(start_paused = true)]
async fn two_configured_actives_converge_to_one() {
    fine_clock();
    let (pa, pb) = (free_port(), free_port());
    let stop = CancellationToken::new();
    let (a, b) = tokio::join!(
        start(
            section(Role::Active, pa, pb, 100),
            TestState::with(vec![1]),
            stop.clone()
        ),
        start(
            section(Role::Active, pb, pa, 100),
            TestState::with(vec![2]),
            stop.clone()
        ),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let winner = if a.role() == Role::Active { &a } else { &b };
    let loser = if a.role() == Role::Active { &b } else { &a };
    assert_eq!((winner.role(), loser.role()), (Role::Active, Role::Passive));
    // Equal epochs and configured roles: the lower listen address keeps the role.
    let lower_is_a = addr(pa) < addr(pb);
    assert_eq!(std::ptr::eq(winner, &a), lower_is_a);
    let (mut w, mut l) = (winner.subscribe(), loser.subscribe());
    w.mark_unchanged();
    l.mark_unchanged();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !w.has_changed().unwrap() && !l.has_changed().unwrap(),
        "roles flapped"
    );
    stop.cancel();
}

/// A scripted peer: sends heartbeats from `port` to a member, as the process `nonce`,
/// echoing the member's nonce as it last heard it.
struct FakePeer {
    udp: UdpSocket,
    to: SocketAddr,
    /// Opens the member's heartbeats.
    key: PairKey,
    /// Tags this peer's heartbeats (the pair's key unless a test forges).
    sign_key: PairKey,
    nonce: AtomicU64,
    seq: AtomicU64,
    member: AtomicU64,
}

impl FakePeer {
    async fn new(port: u16, to: u16) -> FakePeer {
        FakePeer {
            udp: UdpSocket::bind(addr(port)).await.unwrap(),
            to: addr(to),
            key: key(),
            sign_key: key(),
            nonce: AtomicU64::new(42),
            seq: AtomicU64::new(0),
            member: AtomicU64::new(0),
        }
    }
    fn heard(&self, datagram: &[u8]) -> Option<Heartbeat> {
        let hb = Heartbeat::decode(datagram, &self.key).ok()?;
        self.member.store(hb.nonce, Ordering::SeqCst);
        Some(hb)
    }
    /// Reads what the member sent so far (to learn its nonce).
    fn drain(&self) {
        let mut buf = [0u8; 256];
        while let Ok((n, _)) = self.udp.try_recv_from(&mut buf) {
            self.heard(&buf[..n]);
        }
    }
    /// Sends one heartbeat and returns its bytes.
    async fn beat(&self, role: Role, epoch: u64) -> [u8; HEARTBEAT_LEN] {
        self.drain();
        let hb = Heartbeat {
            role,
            configured_active: true,
            hello: false,
            leaving: false,
            epoch,
            nonce: self.nonce.load(Ordering::SeqCst),
            state: Version::default(),
            listen: self.udp.local_addr().unwrap(),
            seq: self.seq.fetch_add(1, Ordering::SeqCst) + 1,
            echo: self.member.load(Ordering::SeqCst),
        };
        let bytes = hb.encode(&self.sign_key);
        self.udp.send_to(&bytes, self.to).await.unwrap();
        bytes
    }
    /// The member's latest heartbeat, waiting at most `within`.
    async fn last_heard(&self, within: Duration) -> Option<Heartbeat> {
        let mut buf = [0u8; 256];
        let mut last = None;
        let end = Instant::now() + within;
        while let Ok(Ok((n, _))) = tokio::time::timeout_at(end, self.udp.recv_from(&mut buf)).await
        {
            last = self.heard(&buf[..n]);
        }
        last
    }
}

#[tokio::test(start_paused = true)]
async fn passive_takes_over_three_intervals_after_the_last_heartbeat() {
    fine_clock();
    let (pf, pb) = (free_port(), free_port());
    let fake = FakePeer::new(pf, pb).await;
    let b = start(
        section(Role::Passive, pb, pf, 100),
        TestState::with(vec![]),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    // An active peer beats for a second: B stays passive and adopts its epoch.
    for _ in 0..10 {
        fake.beat(Role::Active, 7).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(b.role(), Role::Passive);
    let heard = fake.last_heard(Duration::from_millis(150)).await.unwrap();
    assert_eq!((heard.role, heard.epoch), (Role::Passive, 7));
    // Garbage and datagrams from strangers change nothing.
    fake.udp.send_to(b"garbage", addr(pb)).await.unwrap();
    fake.beat(Role::Active, 7).await;
    let last = Instant::now();
    wait_role(&b, Role::Active, Duration::from_secs(2)).await;
    let silent = last.elapsed();
    // Virtual time: exactly three intervals, plus at most one for the member's tick.
    assert!(
        silent >= Duration::from_millis(300) && silent <= Duration::from_millis(400),
        "took over {silent:?} after the last heartbeat"
    );
    let heard = fake.last_heard(Duration::from_millis(150)).await.unwrap();
    assert_eq!(
        (heard.role, heard.epoch),
        (Role::Active, 8),
        "new active takes epoch + 1"
    );
    // A peer that claims active with a higher epoch makes B yield; a lower one does not.
    fake.beat(Role::Active, 3).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(b.role(), Role::Active);
    fake.beat(Role::Active, 9).await;
    wait_role(&b, Role::Passive, Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn stale_and_bad_state_frames_are_ignored() {
    fine_clock();
    let (pf, pb) = (free_port(), free_port());
    let fake = Arc::new(FakePeer::new(pf, pb).await);
    let sb = TestState::with(vec![]);
    let stop = CancellationToken::new();
    let b = start(
        section(Role::Passive, pb, pf, 100),
        sb.clone(),
        stop.clone(),
    )
    .await
    .unwrap();
    let beating = {
        let fake = fake.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                fake.beat(Role::Active, 5).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    wait_for("the member's nonce", Duration::from_secs(2), || {
        fake.drain();
        fake.member.load(Ordering::SeqCst) != 0
    })
    .await;
    let member = fake.member.load(Ordering::SeqCst);
    async fn frame_for(
        s: &mut TcpStream,
        key: &PairKey,
        receiver: u64,
        epoch: u64,
        seq: u64,
        body: &[u8],
    ) {
        s.write_all(&wire::seal_state(key, Version { epoch, seq }, receiver, body).unwrap())
            .await
            .unwrap();
    }
    let frame = async |s: &mut TcpStream, epoch: u64, seq: u64, body: &[u8]| {
        frame_for(s, &key(), member, epoch, seq, body).await
    };
    let mut s = TcpStream::connect(addr(pb)).await.unwrap();
    frame(&mut s, 5, 1, b"one").await;
    frame(&mut s, 4, 9, b"older epoch").await;
    frame(&mut s, 5, 1, b"same version").await;
    frame(&mut s, 5, 2, b"reject: apply fails").await;
    frame(&mut s, 5, 3, b"three").await;
    wait_for("version 5.3", Duration::from_secs(2), || {
        sb.applied().len() == 2
    })
    .await;
    assert_eq!(sb.applied(), vec![b"one".to_vec(), b"three".to_vec()]);
    // An oversized announced length drops the connection without allocating it.
    s.write_all(&wire::encode_state_header(
        Version { epoch: 5, seq: 4 },
        u64::MAX,
    ))
    .await
    .unwrap();
    let mut sink = [0u8; 1];
    let closed = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::io::AsyncReadExt::read(&mut s, &mut sink),
    )
    .await
    .unwrap();
    assert!(
        matches!(closed, Ok(0) | Err(_)),
        "connection not closed: {closed:?}"
    );
    // A new connection works again.
    let mut s2 = TcpStream::connect(addr(pb)).await.unwrap();
    frame(&mut s2, 6, 1, b"four").await;
    wait_for("version 6.1", Duration::from_secs(2), || {
        sb.applied().len() == 3
    })
    .await;
    // A frame sealed with another key, or for another process of the member (one recorded
    // before a restart), is not applied and drops the connection.
    for (k, receiver) in [
        (PairKey::new(b"some other key of the pair"), member),
        (key(), member ^ 1),
    ] {
        let mut s3 = TcpStream::connect(addr(pb)).await.unwrap();
        frame_for(&mut s3, &k, receiver, 7, 1, b"forged").await;
        let closed = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::io::AsyncReadExt::read(&mut s3, &mut sink),
        )
        .await
        .unwrap();
        assert!(
            matches!(closed, Ok(0) | Err(_)),
            "connection not closed: {closed:?}"
        );
    }
    assert_eq!(sb.applied().len(), 3, "a forged frame was applied");
    assert_eq!(b.role(), Role::Passive);
    stop.cancel();
    beating.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn heartbeats_with_another_key_do_not_count() {
    fine_clock();
    let (pf, pb) = (free_port(), free_port());
    let mut fake = FakePeer::new(pf, pb).await;
    // It hears the member (so it echoes the member's nonce) but signs with another key.
    fake.sign_key = PairKey::new(b"not the key of this pair");
    let b = start(
        section(Role::Passive, pb, pf, 100),
        TestState::with(vec![]),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let stop = CancellationToken::new();
    let fake = Arc::new(fake);
    let beating = {
        let (fake, stop) = (fake.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                fake.beat(Role::Active, 5).await;
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        })
    };
    // Nothing it sends counts: the passive member hears no peer and takes over.
    wait_role(&b, Role::Active, Duration::from_secs(2)).await;
    stop.cancel();
    beating.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn replayed_heartbeats_do_not_keep_a_dead_peer_alive() {
    fine_clock();
    let (pf, pb) = (free_port(), free_port());
    let fake = FakePeer::new(pf, pb).await;
    let b = start(
        section(Role::Passive, pb, pf, 100),
        TestState::with(vec![]),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    // The peer's first process (nonce 42) beats as active, and is recorded.
    let mut recorded = Vec::new();
    for _ in 0..10 {
        recorded.push(fake.beat(Role::Active, 7).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(b.role(), Role::Passive);
    // It restarts as process 43, which beats for a while and is recorded too.
    fake.nonce.store(43, Ordering::SeqCst);
    fake.seq.store(0, Ordering::SeqCst);
    let mut last = Instant::now();
    for _ in 0..10 {
        recorded.push(fake.beat(Role::Active, 7).await);
        last = Instant::now();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(b.role(), Role::Passive);
    let heard = fake.last_heard(Duration::from_millis(150)).await.unwrap();
    assert_eq!(
        heard.echo, 43,
        "the member echoes the peer's current process"
    );
    // The peer dies; an attacker plays every recorded heartbeat back, over and over. They
    // are authentic but old: the member takes over three intervals after the last real one.
    let t0 = Instant::now();
    while b.role() == Role::Passive && t0.elapsed() < Duration::from_secs(3) {
        for d in &recorded {
            fake.udp.send_to(d, addr(pb)).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let silent = last.elapsed();
    assert_eq!(
        b.role(),
        Role::Active,
        "replayed heartbeats kept the member passive"
    );
    // Virtual time: exactly three intervals, plus at most one for the member's tick.
    assert!(
        silent >= Duration::from_millis(300) && silent <= Duration::from_millis(400),
        "took over {silent:?} after the last real heartbeat"
    );
}

#[tokio::test(start_paused = true)]
async fn heartbeats_recorded_before_a_member_started_do_not_count() {
    fine_clock();
    let (pf, pb) = (free_port(), free_port());
    let fake = FakePeer::new(pf, pb).await;
    // The member's first process hears the peer (process 50) and the heartbeats are recorded.
    fake.nonce.store(50, Ordering::SeqCst);
    let stop = CancellationToken::new();
    let first = start(
        section(Role::Passive, pb, pf, 100),
        TestState::with(vec![]),
        stop.clone(),
    )
    .await
    .unwrap();
    let mut recorded = Vec::new();
    for _ in 0..40 {
        recorded.push(fake.beat(Role::Active, 7).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(first.role(), Role::Passive);
    stop.cancel();
    first.stopped().await;
    // The member restarts while the peer is gone; the recorded heartbeats (2 s of them),
    // played back at their own pace, were made for its previous process: it hears no peer
    // and takes over three intervals after its start.
    let second = start(
        section(Role::Passive, pb, pf, 100),
        TestState::with(vec![]),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let t0 = Instant::now();
    for d in &recorded {
        if second.role() == Role::Active {
            break;
        }
        fake.udp.send_to(d, addr(pb)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = t0.elapsed();
    assert_eq!(
        second.role(),
        Role::Active,
        "heartbeats recorded for the previous process kept the member passive"
    );
    assert!(
        took >= Duration::from_millis(300) && took <= Duration::from_millis(500),
        "took over {took:?} after its start"
    );
}
