//! The cluster logic over a real store, each test on SQLite and on PostgreSQL: settings set on
//! one node reach the others live, heartbeats, and the master lease (one master at a time, a
//! successor when it stops, none while a dead master's lease still runs).

use std::sync::Arc;
use std::time::{Duration, Instant};

use mailfleet_cluster::membership::MASTER_LEASE;
use mailfleet_cluster::{Heartbeat, LiveSettings, MasterJobs, MasterLease};
use mailfleet_store::{NodeInfo, Store};
use mailfleet_test_support::{TestStore, both_backends};
use tokio_util::sync::CancellationToken;

/// Each node gets its own handle on the store, as separate processes have.
async fn open(b: &TestStore) -> Arc<dyn Store> {
    mailfleet_store::open(&b.url).await.unwrap()
}

both_backends!(
    workers = 2;
    settings_set_on_one_node_reach_another_live,
    heartbeats_list_every_node_and_advance,
    one_master_at_a_time_and_a_successor_when_it_stops,
    a_dead_masters_lease_is_taken_only_once_it_expires,
    master_jobs_run_only_on_the_master_with_its_token,
    a_master_that_cannot_renew_stops_before_its_lease_expires,
    a_master_refused_its_renewal_stops_at_once,
);

const LIMIT: Duration = Duration::from_secs(10);

/// Polls `check` every 20 ms until it holds; panics after [`LIMIT`]. Returns the time taken.
async fn until<F, Fut>(what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < LIMIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

/// Cancels the token when dropped, so a failing test leaves no task polling the store.
struct Stop(CancellationToken);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

async fn settings_set_on_one_node_reach_another_live(b: TestStore) {
    let admin = open(&b).await;
    admin.set_setting("smtp.max_recipients", "7").await.unwrap();
    let node = open(&b).await;
    let stop = Stop(CancellationToken::new());
    let live = LiveSettings::start(node, Duration::from_millis(100), stop.0.clone())
        .await
        .unwrap();
    // Read at start.
    let first = live.current();
    assert_eq!(first.get("smtp.max_recipients"), Some("7"));
    let mut changes = live.subscribe();
    changes.borrow_and_update();

    // A set through another handle shows up at a following poll, with a higher version.
    admin.set_setting("smtp.max_recipients", "9").await.unwrap();
    admin.set_setting("queue.lifetime", "2d").await.unwrap();
    until("the new values", || {
        let s = live.current();
        async move {
            s.get("smtp.max_recipients") == Some("9") && s.get("queue.lifetime") == Some("2d")
        }
    })
    .await;
    assert!(live.current().version > first.version);
    assert!(changes.has_changed().unwrap(), "subscribers are woken");

    // A delete moves the version too.
    let before = live.current().version;
    assert!(admin.delete_setting("smtp.max_recipients").await.unwrap());
    until("the deletion", || {
        let s = live.current();
        async move { s.get("smtp.max_recipients").is_none() }
    })
    .await;
    assert!(live.current().version > before);
    assert_eq!(live.current().get("queue.lifetime"), Some("2d"));
}

fn node(id: &str) -> NodeInfo {
    NodeInfo {
        server_id: id.into(),
        hostname: format!("{id}.example.test"),
        info: serde_json::json!({ "services": [] }),
        started: mailfleet_store::now(),
        last_seen: 0,
    }
}

async fn heartbeats_list_every_node_and_advance(b: TestStore) {
    let store = open(&b).await;
    let stop = Stop(CancellationToken::new());
    let mut tasks = Vec::new();
    for id in ["hb1", "hb2"] {
        tasks.push(Heartbeat::spawn(
            open(&b).await,
            node(id),
            Duration::from_millis(200),
            stop.0.clone(),
        ));
    }
    let seen = |store: Arc<dyn Store>| async move {
        let mut nodes = store.list_nodes().await.unwrap();
        nodes.sort_by(|a, b| a.server_id.cmp(&b.server_id));
        nodes
    };
    until("both nodes' rows", || {
        let s = store.clone();
        async move { seen(s).await.len() == 2 }
    })
    .await;
    let first = seen(store.clone()).await;
    assert_eq!(first[0].server_id, "hb1");
    assert_eq!(first[1].hostname, "hb2.example.test");
    assert!(first.iter().all(|n| n.last_seen >= n.started));
    // last_seen is in seconds: it moves on within about a second.
    until("last_seen to advance for both", || {
        let (s, first) = (store.clone(), first.clone());
        async move {
            let now = seen(s).await;
            now.iter()
                .zip(&first)
                .all(|(n, f)| n.last_seen > f.last_seen)
        }
    })
    .await;
    // On shutdown the heartbeat tasks end.
    stop.0.cancel();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(5), t)
            .await
            .expect("heartbeat did not stop")
            .unwrap();
    }
}

async fn one_master_at_a_time_and_a_successor_when_it_stops(b: TestStore) {
    let store = open(&b).await;
    let stop_a = Stop(CancellationToken::new());
    let stop_b = Stop(CancellationToken::new());
    // A 3 s lease is renewed every second (`LeaseTiming::DEFAULT`).
    let a = MasterLease::spawn(open(&b).await, "node-a".into(), stop_a.0.clone());
    let b_ = MasterLease::spawn(open(&b).await, "node-b".into(), stop_b.0.clone());
    until("a master", || {
        let (a, b_) = (a.clone(), b_.clone());
        async move { a.is_master() || b_.is_master() }
    })
    .await;
    // For a few renewals: never two masters, and the store agrees with the one.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2500) {
        assert!(!(a.is_master() && b_.is_master()), "two masters at once");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (master, other, stop_master, stop_others, other_name) = if a.is_master() {
        (a, b_, stop_a, stop_b, "node-b")
    } else {
        (b_, a, stop_b, stop_a, "node-a")
    };
    assert!(master.is_master() && !other.is_master());
    let held = store.get_lease(MASTER_LEASE).await.unwrap().unwrap();
    assert_ne!(held.holder, other_name);

    // The master stops: it gives the lease up, and the other takes it at its next renewal,
    // well before the 3 s lease would have run out, with a higher fencing token.
    drop(stop_master);
    let took = until("the other node to become master", || {
        let other = other.clone();
        async move { other.is_master() }
    })
    .await;
    assert!(took < Duration::from_millis(2500), "{took:?}");
    let now = store.get_lease(MASTER_LEASE).await.unwrap().unwrap();
    assert_eq!(now.holder, other_name);
    assert!(now.token > held.token, "{held:?} then {now:?}");
    // And the stopped node no longer counts itself master.
    until("the stopped node to stop counting itself master", || {
        let master = master.clone();
        async move { !master.is_master() }
    })
    .await;
    drop(stop_others);
}

async fn a_dead_masters_lease_is_taken_only_once_it_expires(b: TestStore) {
    let store = open(&b).await;
    // A node took the lease for 3 s and died: it neither renews nor releases it.
    let dead = store
        .acquire_lease(MASTER_LEASE, "dead-node", mailfleet_store::now(), 3)
        .await
        .unwrap()
        .unwrap();
    let taken_at = Instant::now();
    let stop = Stop(CancellationToken::new());
    let m = MasterLease::spawn(open(&b).await, "node-c".into(), stop.0.clone());
    let took = until("the lease to pass to the live node", || {
        let m = m.clone();
        async move { m.is_master() }
    })
    .await;
    // Whole seconds: expired once now > taken + 3, so more than 2 s after it was taken.
    let after = taken_at.elapsed();
    assert!(
        after > Duration::from_secs(2),
        "taken {after:?} after the dead node's claim"
    );
    assert!(took < Duration::from_secs(6), "{took:?}");
    let now = store.get_lease(MASTER_LEASE).await.unwrap().unwrap();
    assert_eq!(now.holder, "node-c");
    assert!(now.token > dead.token);
}

/// Records `(node, token)` for each run of a job, on any node.
type Runs = Arc<std::sync::Mutex<Vec<(String, i64)>>>;

fn probe_jobs(node: &str, runs: &Runs) -> MasterJobs {
    let mut jobs = MasterJobs::new();
    let (node, runs) = (node.to_string(), runs.clone());
    jobs.add("probe", Duration::from_millis(200), move |fence| {
        let (node, runs) = (node.clone(), runs.clone());
        async move {
            assert_eq!(fence.holder, node, "a job gets its own node's fence");
            runs.lock().unwrap().push((node, fence.token));
            Ok(String::new())
        }
    });
    jobs
}

async fn master_jobs_run_only_on_the_master_with_its_token(b: TestStore) {
    let store = open(&b).await;
    let runs: Runs = Default::default();
    let stop_a = Stop(CancellationToken::new());
    let stop_b = Stop(CancellationToken::new());
    let a = MasterLease::spawn(open(&b).await, "node-a".into(), stop_a.0.clone());
    let _a_jobs = probe_jobs("node-a", &runs).spawn(a.clone(), stop_a.0.clone());
    until("node-a to be master", || {
        let a = a.clone();
        async move { a.is_master() }
    })
    .await;
    // node-b joins once node-a is master, so it is not.
    let nb = MasterLease::spawn(open(&b).await, "node-b".into(), stop_b.0.clone());
    let _b_jobs = probe_jobs("node-b", &runs).spawn(nb.clone(), stop_b.0.clone());
    until("a few runs of the job", || {
        let runs = runs.clone();
        async move { runs.lock().unwrap().len() >= 4 }
    })
    .await;
    let first = store.get_lease(MASTER_LEASE).await.unwrap().unwrap();
    assert!(!nb.is_master());
    assert!(
        runs.lock()
            .unwrap()
            .iter()
            .all(|r| *r == ("node-a".to_string(), first.token)),
        "{runs:?}"
    );
    // node-a stops; node-b takes over and its job runs, with the new token.
    drop(stop_a);
    until("the job to run on node-b", || {
        let runs = runs.clone();
        async move { runs.lock().unwrap().iter().any(|r| r.0 == "node-b") }
    })
    .await;
    let second = store.get_lease(MASTER_LEASE).await.unwrap().unwrap();
    assert_eq!(second.holder, "node-b");
    let on_b: Vec<i64> = runs
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.0 == "node-b")
        .map(|r| r.1)
        .collect();
    assert!(
        on_b.iter().all(|t| *t == second.token && *t > first.token),
        "{on_b:?}"
    );
    drop(stop_b);
}

/// A connection that holds the store's lease row (PostgreSQL: `FOR UPDATE`) or its write lock
/// (SQLite: `BEGIN IMMEDIATE`) until dropped, so that renewals wait.
enum Blocker {
    Sqlite(#[allow(dead_code)] sqlx::SqliteConnection),
    Postgres(#[allow(dead_code)] sqlx::PgConnection),
}

/// Blocks renewals; returns the blocker and the lease's expiry as stored.
async fn block_renewals(b: &TestStore) -> (Blocker, i64) {
    use sqlx::Connection;
    const READ: &str = "SELECT expires FROM leases WHERE name = 'master'";
    if b.url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(&b.url).await.unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut conn)
            .await
            .unwrap();
        let expires: i64 = sqlx::query_scalar(READ).fetch_one(&mut conn).await.unwrap();
        (Blocker::Sqlite(conn), expires)
    } else {
        let mut conn = sqlx::PgConnection::connect(&b.url).await.unwrap();
        sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
        let expires: i64 = sqlx::query_scalar(&format!("{READ} FOR UPDATE"))
            .fetch_one(&mut conn)
            .await
            .unwrap();
        (Blocker::Postgres(conn), expires)
    }
}

/// A master whose renewals stop reaching the store (they wait on a lock here) stops counting
/// itself master by its own monotonic clock, while the lease it last wrote has not expired:
/// no other node could hold it yet.
async fn a_master_that_cannot_renew_stops_before_its_lease_expires(b: TestStore) {
    let stop = Stop(CancellationToken::new());
    let m = MasterLease::spawn(open(&b).await, "node-d".into(), stop.0.clone());
    until("node-d to be master", || {
        let m = m.clone();
        async move { m.is_master() }
    })
    .await;
    let (conn, expires) = block_renewals(&b).await;
    let stopped = until("node-d to stop counting itself master", || {
        let m = m.clone();
        async move { !m.is_master() }
    })
    .await;
    let at = mailfleet_store::now();
    // The lease another node reads is free only once its `now` passes `expires`.
    assert!(
        at <= expires,
        "stopped at {at}, after its lease ran out at {expires}"
    );
    // Its last renewal was sent at most a second before the lock: trusted for 2 s.
    assert!(stopped < Duration::from_millis(2500), "{stopped:?}");
    drop(conn);
    // Once the store answers again it renews and is master again.
    until("node-d to be master again", || {
        let m = m.clone();
        async move { m.is_master() }
    })
    .await;
}

/// A master whose renewal the store refuses (another holder took the lease, as if its own
/// had run out meanwhile) stops at once.
async fn a_master_refused_its_renewal_stops_at_once(b: TestStore) {
    let store = open(&b).await;
    let stop = Stop(CancellationToken::new());
    let m = MasterLease::spawn(open(&b).await, "node-d".into(), stop.0.clone());
    until("node-d to be master", || {
        let m = m.clone();
        async move { m.is_master() }
    })
    .await;
    // Another holder appears as if node-d's renewals stopped reaching the store: node-d's
    // next renewal is refused, and it must stop at once, not when the lease would expire.
    let lease = store.get_lease(MASTER_LEASE).await.unwrap().unwrap();
    store.release_lease(MASTER_LEASE, "node-d").await.unwrap();
    let thief = store
        .acquire_lease(MASTER_LEASE, "node-e", mailfleet_store::now(), 60)
        .await
        .unwrap()
        .unwrap();
    assert!(thief.token > lease.token);
    let stopped = until("node-d to stop counting itself master", || {
        let m = m.clone();
        async move { !m.is_master() }
    })
    .await;
    // Its trust of 2 s ran out, or a refused renewal ended it sooner.
    assert!(stopped < Duration::from_millis(2500), "{stopped:?}");
    assert!(m.fence().is_none());
}
