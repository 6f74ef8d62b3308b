//! The master lease between real `mailfleet node` processes on one SQLite store: a node whose
//! file says `master = false` never takes it, even alone; when the master is killed with
//! SIGKILL, another node holds the lease within 5 s, with a higher fencing token. The test
//! prints the time the takeover took.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailfleet_store::Store;
use mailfleet_test_support::{ChildGuard, NODE_PORTS, free_port_offset, sqlite_url};

const MASTER: &str = "master";

/// Starts `mailfleet node` with its own data directory and ports; killed when dropped.
fn start_node(dir: &Path, store: &str, server_id: &str, master: bool) -> ChildGuard {
    let home = dir.join(server_id);
    std::fs::create_dir_all(&home).unwrap();
    let config = home.join("node.toml");
    std::fs::write(
        &config,
        format!(
            "server_id = \"{server_id}\"\nhostname = \"{server_id}.cluster.test\"\n\
             store = \"{store}\"\ndata_dir = \"{}\"\nbind = \"127.0.0.1\"\n\
             port_offset = {}\nmaster = {master}\n",
            home.join("data").display(),
            free_port_offset(NODE_PORTS),
        ),
    )
    .unwrap();
    ChildGuard::spawn(
        Command::new(env!("CARGO_BIN_EXE_mailfleet"))
            .args(["node", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(home.join("node.log")).unwrap()),
    )
    .unwrap()
}

/// Polls `check` every 50 ms until it gives `Some`; panics naming `what` after `limit`.
async fn until<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The node's heartbeat time as the store has it.
async fn last_seen(store: &Arc<dyn Store>, server_id: &str) -> Option<i64> {
    store
        .list_nodes()
        .await
        .unwrap()
        .into_iter()
        .find(|n| n.server_id == server_id)
        .map(|n| n.last_seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_is_replaced_within_5_s_and_a_node_without_master_mode_never_is() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let store = mailfleet_store::open(&url).await.unwrap();
    let start_limit = Duration::from_secs(60);

    // Alone, a node with `master = false` does not take the lease: its heartbeat runs for
    // longer than a lease contender needs (it looks every 500 ms), and no lease appears.
    let _observer = start_node(dir.path(), &url, "obs", false);
    let first = until("the observer's heartbeat", start_limit, || {
        let store = store.clone();
        async move { last_seen(&store, "obs").await }
    })
    .await;
    until("three more heartbeats", start_limit, || {
        let store = store.clone();
        async move { last_seen(&store, "obs").await.filter(|t| *t >= first + 3) }
    })
    .await;
    assert_eq!(store.get_lease(MASTER).await.unwrap(), None);

    // Two nodes that may be master: one takes the lease.
    let mut a = Some(start_node(dir.path(), &url, "na", true));
    let mut b = Some(start_node(dir.path(), &url, "nb", true));
    let held = until("a master", start_limit, || {
        let store = store.clone();
        async move {
            store
                .get_lease(MASTER)
                .await
                .unwrap()
                .filter(|l| l.expires >= mailfleet_store::now())
        }
    })
    .await;
    assert!(["na", "nb"].contains(&held.holder.as_str()), "{held:?}");
    let successor = if held.holder == "na" { "nb" } else { "na" };
    // Both candidates are up (heartbeating) before the master dies.
    for id in ["na", "nb"] {
        until("the candidates' heartbeats", start_limit, || {
            let store = store.clone();
            async move { last_seen(&store, id).await }
        })
        .await;
    }

    // SIGKILL: no release, the lease must run out.
    let killed = if held.holder == "na" {
        a.take()
    } else {
        b.take()
    };
    let mut killed = killed.unwrap();
    killed.kill().unwrap();
    let killed_at = Instant::now();
    killed.wait().unwrap();
    // Every holder seen meanwhile: never the node without master mode.
    let mut seen = Vec::new();
    let took = loop {
        if let Some(l) = store.get_lease(MASTER).await.unwrap() {
            seen.push(l.holder.clone());
            if l.holder != held.holder {
                break l;
            }
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(10),
            "no successor 10 s after the kill; holders seen: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let elapsed = killed_at.elapsed();
    println!("master killed; {successor} held the lease {elapsed:?} later");
    assert_eq!(took.holder, successor, "holders seen: {seen:?}");
    assert!(took.token > held.token, "{held:?} then {took:?}");
    assert!(
        elapsed < Duration::from_secs(5),
        "takeover took {elapsed:?}"
    );
    assert!(!seen.iter().any(|h| h == "obs"));
    drop((a, b));
}
