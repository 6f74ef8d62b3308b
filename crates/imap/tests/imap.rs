//! The IMAP server over real sockets on 127.0.0.1, driven by Python's imaplib (and raw
//! sockets) in `tests/client.py` and by curl, on SQLite and on PostgreSQL: one server (or two
//! "nodes" on the same store) per test, its store provisioned with `alice` and `bob`, both
//! empty.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mailfleet_cluster::LiveSettings;
use mailfleet_imap::{ImapContext, ImapServer};
use mailfleet_store::password::hash_password;
use mailfleet_store::{AccountUpdate, NewAccount, Store};
use mailfleet_test_support::{TestStore, both_backends};
use tokio_util::sync::CancellationToken;

const PASSWORD: &str = "correct horse";

/// One node: its plain (143) and TLS (993) listeners.
struct Node {
    imap: SocketAddr,
    imaps: SocketAddr,
}

struct Server {
    nodes: Vec<Node>,
    store: Arc<dyn Store>,
    /// Node 1's blob store.
    blobs: Arc<dyn mailfleet_store::BlobStore>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
    _db: TestStore,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts `nodes` IMAP servers on one store (each with its own context, settings poller and
/// change poller; one shared blob directory) with `settings` set.
async fn start(db: TestStore, settings: &[(&str, &str)], nodes: usize) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = mailfleet_store::open(&db.url).await.unwrap();
    store.add_domain("example.test").await.unwrap();
    let hash = hash_password(PASSWORD).unwrap();
    for user in ["alice", "bob"] {
        store
            .create_account(&NewAccount {
                address: format!("{user}@example.test"),
                password_hash: hash.clone(),
                quota_bytes: 0,
                shard: "default".into(),
            })
            .await
            .unwrap();
    }
    for (k, v) in settings {
        store.set_setting(k, v).await.unwrap();
    }
    let shutdown = CancellationToken::new();
    let mut started = Vec::new();
    let mut first_blobs = None;
    for n in 0..nodes {
        let id = format!("i{n}");
        // Each node opens the store itself, as separate processes would.
        let node_store = mailfleet_store::open(&db.url).await.unwrap();
        let blobs = mailfleet_store::open_node_blobs(
            &format!("fs:{}", dir.path().join("blobs").display()),
            node_store.clone(),
            &id,
            0,
        )
        .unwrap();
        first_blobs.get_or_insert_with(|| blobs.clone());
        let live = LiveSettings::start(
            node_store.clone(),
            Duration::from_millis(50),
            shutdown.clone(),
        )
        .await
        .unwrap();
        let data = dir.path().join(&id);
        std::fs::create_dir_all(&data).unwrap();
        let offset = mailfleet_test_support::free_port_offset(&[143, 993]);
        let text = format!(
            "server_id = \"{id}\"\nhostname = \"imap.example.test\"\nstore = \"{}\"\n\
             data_dir = \"{}\"\nbind = \"127.0.0.1\"\nport_offset = {offset}\n",
            db.url,
            data.display(),
        );
        let config = mailfleet_config::NodeConfig::parse(&text, "test.toml").unwrap();
        let bound = ImapServer::start(
            ImapContext {
                config: Arc::new(config),
                auth: Arc::new(mailfleet_auth::Authenticator::new(node_store.clone())),
                store: node_store,
                blobs,
                settings: live,
            },
            shutdown.clone(),
        )
        .await
        .unwrap();
        let find = |name: &str| bound.iter().find(|(n, _)| *n == name).unwrap().1;
        started.push(Node {
            imap: find("imap"),
            imaps: find("imaps"),
        });
    }
    Server {
        nodes: started,
        store,
        blobs: first_blobs.expect("at least one node"),
        shutdown,
        _dir: dir,
        _db: db,
    }
}

const CLEARTEXT: &[(&str, &str)] = &[("imap.auth.allow_cleartext", "true")];

impl Server {
    /// Runs a scenario of `client.py` against every node (ports: 143 and 993 of node 1, then
    /// of node 2...); panics with its output if it fails.
    async fn client(&self, scenario: &str) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/client.py");
        let mut cmd = tokio::process::Command::new("python3");
        cmd.arg(script).arg(scenario);
        for n in &self.nodes {
            cmd.arg(n.imap.port().to_string())
                .arg(n.imaps.port().to_string());
        }
        let out = tokio::time::timeout(Duration::from_secs(60), cmd.kill_on_drop(true).output())
            .await
            .expect("client timed out")
            .expect("python3 runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "scenario {scenario} failed:\n{text}");
    }
}

both_backends!(
    workers = 2;
    greeting_logins_and_tls,
    mailboxes_append_and_fetch,
    store_search_sort_thread,
    thread_answers_follow_changes,
    appends_are_acknowledged_at_once,
    recent_and_reselect_from_the_node_view,
    copy_move_expunge,
    mailbox_management_and_quota,
    condstore_qresync_and_idle,
    idle_hears_store_deliveries,
    two_nodes_on_one_store,
    robustness,
    curl_lists_and_fetches,
    more_fetch_search_and_mailboxes,
    sessions_literals_and_lockout,
    expunges_below_the_tombstone_floor_still_reach_clients,
);

/// Item 1: CAPABILITY in the greeting, LOGINDISABLED without TLS, STARTTLS, LOGIN, failures,
/// AUTHENTICATE PLAIN (SASL-IR) and LOGIN.
async fn greeting_logins_and_tls(db: TestStore) {
    let s = start(db, &[], 1).await;
    s.client("logins").await;
}

/// Items 2, 3 and 4: the default mailboxes, APPEND/MULTIAPPEND, SELECT, FETCH items.
async fn mailboxes_append_and_fetch(db: TestStore) {
    let s = start(db, CLEARTEXT, 1).await;
    s.client("append_fetch").await;
}

/// Items 5 and 6: STORE, SEARCH/ESEARCH/SEARCHRES, SORT, THREAD.
async fn store_search_sort_thread(db: TestStore) {
    let s = start(db, CLEARTEXT, 1).await;
    s.client("store_search").await;
}

/// THREAD of a mailbox whose answer the node keeps (2,100 messages): a message appended
/// elsewhere, a flag and an expunge each give the fresh answer.
async fn thread_answers_follow_changes(db: TestStore) {
    let s = start(db, CLEARTEXT, 1).await;
    s.client("thread_chains").await;
}

/// APPEND and MULTIAPPEND from clients that write a literal and what follows it apart, with
/// Nagle's algorithm on (imaplib): each exchange takes well under the kernel's delayed ACK.
async fn appends_are_acknowledged_at_once(db: TestStore) {
    let s = start(db, CLEARTEXT, 1).await;
    s.client("append_acks").await;
}

/// \Recent claimed by the first read-write session only, and SELECTs of a mailbox the node
/// has a view of (shared with the sessions that selected it) after other sessions changed it.
async fn recent_and_reselect_from_the_node_view(db: TestStore) {
    let s = start(db, CLEARTEXT, 1).await;
    s.client("recent_and_reselect").await;
}

/// Item 7: COPY, MOVE, UID EXPUNGE, EXPUNGE, CLOSE.
async fn copy_move_expunge(db: TestStore) {
    let s = start(db, CLEARTEXT, 1).await;
    s.client("copy_move").await;
}

/// Item 8: CREATE/RENAME/DELETE, subscriptions, STATUS, LIST-STATUS, NAMESPACE, quota.
async fn mailbox_management_and_quota(db: TestStore) {
    let s = start(db, CLEARTEXT, 1).await;
    s.store
        .update_account(
            "alice@example.test",
            &AccountUpdate {
                password_hash: None,
                quota_bytes: Some(20_000),
                enabled: None,
                shard: None,
            },
        )
        .await
        .unwrap();
    s.client("mailboxes").await;
}

/// Items 9 and 10: ENABLE CONDSTORE/QRESYNC, VANISHED (EARLIER), IDLE.
async fn condstore_qresync_and_idle(db: TestStore) {
    let s = start(db, CLEARTEXT, 1).await;
    s.client("qresync_idle").await;
}

/// Item 10 with deliveries that do not come through IMAP: `store.deliver` (as SMTP delivers)
/// reaches a session in IDLE as `* n EXISTS` within 1 s, through the node's change poller
/// (once that poller has its baseline: see the first delivery below).
async fn idle_hears_store_deliveries(db: TestStore) {
    use tokio::io::AsyncBufReadExt;
    let s = start(db, CLEARTEXT, 1).await;
    let alice = s
        .store
        .get_account("alice@example.test")
        .await
        .unwrap()
        .unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/client.py");
    let mut child = tokio::process::Command::new("python3")
        .arg(script)
        .arg("idle_deliver")
        .arg(s.nodes[0].imap.port().to_string())
        .arg(s.nodes[0].imaps.port().to_string())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut transcript = String::new();
    // The next line of the client that starts with `prefix`, within `limit`.
    let mut next = async |prefix: &str, limit: Duration, transcript: &mut String| {
        let end = tokio::time::Instant::now() + limit;
        loop {
            let line = match tokio::time::timeout_at(end, lines.next_line()).await {
                Ok(Ok(Some(line))) => line,
                Ok(_) => panic!("client ended:\n{transcript}"),
                Err(_) => return None,
            };
            transcript.push_str(&line);
            transcript.push('\n');
            if line.starts_with(prefix) {
                return Some(line);
            }
        }
    };
    next("IDLING", Duration::from_secs(20), &mut transcript)
        .await
        .unwrap_or_else(|| panic!("the client never idled:\n{transcript}"));
    let mut latencies = Vec::new();
    let mut commits = Vec::new();
    for i in 1..=4u32 {
        let body = format!("From: x@remote.test\r\nSubject: delivered {i}\r\n\r\nhi\r\n");
        let blob_id = s.blobs.put(body.as_bytes()).await.unwrap();
        let before_commit = std::time::Instant::now();
        s.store
            .deliver(&mailfleet_store::Delivery {
                blob_id,
                size: body.len() as i64,
                internal_date: mailfleet_store::now(),
                targets: vec![mailfleet_store::DeliveryTarget {
                    account_id: alice.id,
                    mailbox: "INBOX".into(),
                    flags: vec![],
                }],
                queue: vec![],
                meta: None,
                text: None,
            })
            .await
            .unwrap();
        // The change is made when the delivery commits (its own fsync, which a busy disk can
        // make long, is not the notification's latency).
        commits.push(before_commit.elapsed());
        let t0 = std::time::Instant::now();
        let got = next("EXISTS", Duration::from_millis(1500), &mut transcript).await;
        match got {
            Some(line) => {
                assert_eq!(line, format!("EXISTS {i}"), "{transcript}");
                latencies.push(t0.elapsed());
            }
            None => panic!("delivery {i} unreported within 1.5 s:\n{transcript}"),
        }
    }
    println!("IDLE latencies of store deliveries: {latencies:?} (the deliveries took {commits:?})");
    assert!(
        latencies.iter().all(|l| *l < Duration::from_secs(1)),
        "{latencies:?}\n{transcript}"
    );
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("the client ends")
        .unwrap();
    assert!(status.success(), "{transcript}");
}

/// Item 11: two nodes on one store: IDLE across nodes, concurrent flag changes converge.
async fn two_nodes_on_one_store(db: TestStore) {
    let s = start(db, CLEARTEXT, 2).await;
    s.client("two_nodes").await;
}

/// Item 12: over-long lines, huge literals, deep nesting and garbage; the server goes on.
async fn robustness(db: TestStore) {
    let s = start(db, CLEARTEXT, 1).await;
    s.client("robustness").await;
}

/// Item 13: curl over 993 (and 143 with STARTTLS): the mailbox list, a SEARCH, messages by UID.
async fn curl_lists_and_fetches(db: TestStore) {
    let s = start(db, CLEARTEXT, 1).await;
    s.client("seed_for_curl").await;
    let port = s.nodes[0].imaps.port();
    let plain = s.nodes[0].imap.port();
    let curl = |url: String, extra: &'static [&'static str]| async move {
        let out = tokio::process::Command::new("curl")
            .args(["-s", "-S", "-k", "--max-time", "30", "-u"])
            .arg(format!("alice@example.test:{PASSWORD}"))
            .arg(&url)
            .args(extra)
            .kill_on_drop(true)
            .output()
            .await
            .expect("curl runs");
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    // The server's root: curl sends LIST "" * and prints the LIST lines.
    let (code, listing) = curl(format!("imaps://127.0.0.1:{port}/"), &[]).await;
    println!("curl /:\n{listing}");
    assert_eq!(code, Some(0), "{listing}");
    assert!(listing.contains("INBOX"), "{listing}");
    assert!(listing.contains("\\Sent"), "{listing}");
    // A mailbox without UID: curl 7.88 sends `LIST "INBOX" *`, which matches INBOX itself
    // (reference and pattern joined: "INBOX*") and no child.
    let (code, listing) = curl(format!("imaps://127.0.0.1:{port}/INBOX"), &[]).await;
    println!("curl /INBOX:\n{listing}");
    assert_eq!(code, Some(0), "{listing}");
    assert_eq!(listing.trim(), "* LIST (\\HasNoChildren) \"/\" INBOX");
    // A custom request on the selected mailbox.
    let (code, search) = curl(
        format!("imaps://127.0.0.1:{port}/INBOX"),
        &["-X", "SEARCH ALL"],
    )
    .await;
    assert_eq!(code, Some(0), "{search}");
    assert!(search.contains("* SEARCH 1 2"), "{search}");
    // curl's own search URL (`?`): SELECT, then SEARCH.
    let (code, search) = curl(format!("imaps://127.0.0.1:{port}/INBOX?SUBJECT%20two"), &[]).await;
    assert_eq!(code, Some(0), "{search}");
    assert!(search.contains("* SEARCH 2"), "{search}");
    let (code, message) = curl(format!("imaps://127.0.0.1:{port}/INBOX;UID=1"), &[]).await;
    assert_eq!(code, Some(0), "{message}");
    assert!(message.contains("Subject: curl one"), "{message}");
    assert!(message.contains("first body line"), "{message}");
    let (code, message) = curl(format!("imaps://127.0.0.1:{port}/INBOX;UID=2"), &[]).await;
    assert_eq!(code, Some(0), "{message}");
    assert!(message.contains("Subject: curl two"), "{message}");
    assert!(!message.contains("curl one"), "{message}");
    let (code, message) = curl(format!("imaps://127.0.0.1:{port}/INBOX;UID=9"), &[]).await;
    assert_ne!(code, Some(0), "a missing UID fails: {message}");
    // STARTTLS on 143, and the wrong password.
    let (code, message) = curl(
        format!("imap://127.0.0.1:{plain}/INBOX;UID=1"),
        &["--ssl-reqd"],
    )
    .await;
    assert_eq!(code, Some(0), "{message}");
    assert!(message.contains("Subject: curl one"), "{message}");
    let out = tokio::process::Command::new("curl")
        .args([
            "-s",
            "-k",
            "--max-time",
            "30",
            "-u",
            "alice@example.test:nope",
        ])
        .arg(format!("imaps://127.0.0.1:{port}/INBOX;UID=1"))
        .kill_on_drop(true)
        .output()
        .await
        .expect("curl runs");
    assert_eq!(
        out.status.code(),
        Some(67),
        "a login denied (CURLE_LOGIN_DENIED)"
    );
}

/// More FETCH sections, SEARCH keys, MOVE under QRESYNC, mailbox names, RENAME INBOX, a 3 MB
/// message through the spool, UNAUTHENTICATE.
async fn more_fetch_search_and_mailboxes(db: TestStore) {
    let s = start(db, CLEARTEXT, 1).await;
    s.client("fetch_more").await;
}

/// Pipelining and LITERAL+, APPEND edge cases, LIST/CREATE special-use, ESORT, no EXPUNGE
/// during FETCH/STORE/SEARCH, SEARCHRES, IDLE ended by garbage, the login lockout.
async fn sessions_literals_and_lockout(db: TestStore) {
    let s = start(db, CLEARTEXT, 1).await;
    s.client("sessions_more").await;
}

/// The master's tombstone purge (here `purge_tombstones` with a master lease's fence, as its
/// job calls it) removes every tombstone between two halves of a client scenario; a session
/// selected before it, a QRESYNC SELECT and a CHANGEDSINCE VANISHED fetch from before it all
/// still learn of every expunge (see `purged_tombstones` in `client.py`).
async fn expunges_below_the_tombstone_floor_still_reach_clients(db: TestStore) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let s = start(db, CLEARTEXT, 1).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/client.py");
    let mut child = tokio::process::Command::new("python3")
        .arg(script)
        .arg("purged_tombstones")
        .arg(s.nodes[0].imap.port().to_string())
        .arg(s.nodes[0].imaps.port().to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut transcript = String::new();
    let limit = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let line = match tokio::time::timeout_at(limit, lines.next_line()).await {
            Ok(Ok(Some(line))) => line,
            other => panic!("client ended or stalled ({other:?}):\n{transcript}"),
        };
        transcript.push_str(&line);
        transcript.push('\n');
        if line == "PURGE" {
            break;
        }
    }
    let now = mailfleet_store::now();
    let lease = s
        .store
        .acquire_lease("master", "test", now, 60)
        .await
        .unwrap()
        .unwrap();
    let fence = mailfleet_store::Fence {
        lease: "master".into(),
        holder: "test".into(),
        token: lease.token,
    };
    // Every tombstone so far (they are at most seconds old).
    let purged = s
        .store
        .purge_tombstones(&fence, now, now + 1)
        .await
        .unwrap();
    assert_eq!(
        (purged.mailboxes, purged.tombstones),
        (1, 3),
        "{transcript}"
    );
    stdin.write_all(b"PURGED\n").await.unwrap();
    loop {
        match tokio::time::timeout_at(limit, lines.next_line()).await {
            Ok(Ok(Some(line))) => {
                transcript.push_str(&line);
                transcript.push('\n');
            }
            Ok(Ok(None)) => break,
            other => panic!("client stalled ({other:?}):\n{transcript}"),
        }
    }
    let status = tokio::time::timeout_at(limit, child.wait())
        .await
        .expect("the client ends")
        .unwrap();
    assert!(status.success(), "{transcript}");
    assert!(transcript.contains("DONE"), "{transcript}");
}
