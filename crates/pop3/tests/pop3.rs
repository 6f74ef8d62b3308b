//! The POP3 server over real sockets on 127.0.0.1, driven by Python's poplib
//! (`tests/client.py`), on SQLite and on PostgreSQL: one server per test, its store provisioned
//! with `alice` (three messages) and `bob`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mailfleet_cluster::LiveSettings;
use mailfleet_pop3::{Pop3Context, Pop3Server};
use mailfleet_store::password::hash_password;
use mailfleet_store::{NewAccount, Store};
use mailfleet_test_support::{TestStore, both_backends};
use tokio_util::sync::CancellationToken;

const PASSWORD: &str = "correct horse";

struct Server {
    pop3: SocketAddr,
    pop3s: SocketAddr,
    store: Arc<dyn Store>,
    alice_inbox: i64,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
    _db: TestStore,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start(db: TestStore, settings: &[(&str, &str)]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = mailfleet_store::open(&db.url).await.unwrap();
    let blobs = mailfleet_store::open_node_blobs(
        &format!("fs:{}", dir.path().join("blobs").display()),
        store.clone(),
        "p1",
        0,
    )
    .unwrap();
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
    let alice = store
        .get_account("alice@example.test")
        .await
        .unwrap()
        .unwrap();
    let inbox = store.get_mailbox(alice.id, "INBOX").await.unwrap().unwrap();
    for (subject, body) in [
        ("first", ".dotted line\r\nplain line\r\n"),
        ("second", "hello\r\n"),
        ("third", "bye\r\n"),
    ] {
        let message = format!("From: x@remote.test\r\nSubject: {subject}\r\n\r\n{body}");
        let id = blobs.put(message.as_bytes()).await.unwrap();
        store
            .append(inbox.id, &id, message.len() as i64, 1, &[], None)
            .await
            .unwrap();
    }
    for (k, v) in settings {
        store.set_setting(k, v).await.unwrap();
    }
    let shutdown = CancellationToken::new();
    let live = LiveSettings::start(store.clone(), Duration::from_millis(50), shutdown.clone())
        .await
        .unwrap();
    let offset = mailfleet_test_support::free_port_offset(&[110, 995]);
    let text = format!(
        "server_id = \"p1\"\nhostname = \"pop.example.test\"\nstore = \"{}\"\n\
         data_dir = \"{}\"\nbind = \"127.0.0.1\"\nport_offset = {offset}\n",
        db.url,
        dir.path().display(),
    );
    let config = mailfleet_config::NodeConfig::parse(&text, "test.toml").unwrap();
    let bound = Pop3Server::start(
        Pop3Context {
            config: Arc::new(config),
            auth: Arc::new(mailfleet_auth::Authenticator::new(store.clone())),
            store: store.clone(),
            blobs,
            settings: live,
        },
        shutdown.clone(),
    )
    .await
    .unwrap();
    let find = |name: &str| bound.iter().find(|(n, _)| *n == name).unwrap().1;
    Server {
        pop3: find("pop3"),
        pop3s: find("pop3s"),
        store,
        alice_inbox: inbox.id,
        shutdown,
        _dir: dir,
        _db: db,
    }
}

impl Server {
    /// Runs a scenario of `client.py`; panics with its output if it fails.
    async fn client(&self, scenario: &str) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/client.py");
        let out = tokio::time::timeout(
            Duration::from_secs(120),
            tokio::process::Command::new("python3")
                .arg(script)
                .arg(scenario)
                .arg(self.pop3.port().to_string())
                .arg(self.pop3s.port().to_string())
                .kill_on_drop(true)
                .output(),
        )
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

    async fn alice_uids(&self) -> Vec<u32> {
        self.store
            .list_messages(self.alice_inbox, 1, u32::MAX)
            .await
            .unwrap()
            .iter()
            .map(|m| m.uid)
            .collect()
    }
}

both_backends!(
    workers = 2;
    a_session_reads_and_deletes_at_quit,
    a_locked_maildrop_is_refused_and_freed,
    sasl_plain_and_the_shared_lockout,
    junk_gets_one_error_per_line,
    curl_lists_and_retrieves,
);

async fn a_session_reads_and_deletes_at_quit(db: TestStore) {
    let s = start(db, &[]).await;
    s.client("session").await;
    // DELE 1, RSET, DELE 3, QUIT: only 3 goes.
    assert_eq!(s.alice_uids().await, [1, 2]);
}

async fn a_locked_maildrop_is_refused_and_freed(db: TestStore) {
    let s = start(db, &[]).await;
    s.client("locked").await;
    assert_eq!(s.alice_uids().await, [1, 2, 3]);
}

async fn sasl_plain_and_the_shared_lockout(db: TestStore) {
    let s = start(db, &[("smtp.auth.lockout_failures", "3")]).await;
    s.client("auth").await;
}

async fn junk_gets_one_error_per_line(db: TestStore) {
    let s = start(db, &[]).await;
    s.client("junk").await;
}

/// curl as a second client: a listing and a message over 995, and STLS on 110; without TLS
/// the login is refused.
async fn curl_lists_and_retrieves(db: TestStore) {
    let s = start(db, &[]).await;
    let curl = |url: String, tls: bool| async move {
        let mut cmd = tokio::process::Command::new("curl");
        cmd.args(["-s", "-k", "--max-time", "60", "-u"])
            .arg(format!("alice@example.test:{PASSWORD}"))
            .arg(&url)
            .kill_on_drop(true);
        if tls {
            cmd.arg("--ssl-reqd");
        }
        let out = cmd.output().await.expect("curl runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, listing) = curl(format!("pop3s://127.0.0.1:{}/", s.pop3s.port()), true).await;
    assert_eq!(code, Some(0), "{listing}");
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 3, "{listing}");
    assert!(lines[0].starts_with("1 "), "{listing}");
    let (code, message) = curl(format!("pop3s://127.0.0.1:{}/1", s.pop3s.port()), true).await;
    assert_eq!(code, Some(0));
    assert!(message.contains("Subject: first"), "{message}");
    assert!(
        message.contains("\r\n.dotted line\r\n"),
        "un-stuffed: {message:?}"
    );
    let (code, listing) = curl(format!("pop3://127.0.0.1:{}/", s.pop3.port()), true).await;
    assert_eq!(code, Some(0), "STLS on 110: {listing}");
    assert_eq!(listing.lines().count(), 3);
    let (code, _) = curl(format!("pop3://127.0.0.1:{}/", s.pop3.port()), false).await;
    assert_ne!(code, Some(0), "a login without TLS is refused");
}
