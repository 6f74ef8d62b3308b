//! Test harness: an SMTP server on 127.0.0.1 with a temp store (SQLite, or a throwaway
//! PostgreSQL server) and blob dir, settings read live from the store, and helpers to provision
//! and inspect mailboxes.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mailfleet_cluster::LiveSettings;
use mailfleet_smtp::{SmtpContext, SmtpError, SmtpServer};
use mailfleet_store::password::hash_password;
use mailfleet_store::{BlobStore, NewAccount, Store};
use mailfleet_test_support::PgServer;
use tokio_util::sync::CancellationToken;

pub struct Server {
    pub mx: SocketAddr,
    pub submission: SocketAddr,
    pub submissions: SocketAddr,
    pub store: Arc<dyn Store>,
    pub blobs: Arc<dyn BlobStore>,
    pub dir: Arc<tempfile::TempDir>,
    pub shutdown: CancellationToken,
    settings: LiveSettings,
    trusted: Vec<String>,
    inline_max: usize,
    blob_spec: String,
    store_url: String,
    /// Last field: the PostgreSQL server stops after everything else has let go of it.
    _pg: Option<Arc<PgServer>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub const PASSWORD: &str = "correct horse";

/// The store a test server runs on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in the server's temp dir.
    #[default]
    Sqlite,
    /// A throwaway PostgreSQL server of the test's own.
    Postgres,
}

#[derive(Default)]
pub struct Options {
    pub backend: Backend,
    pub settings: Vec<(&'static str, String)>,
    pub trusted_proxies: Vec<&'static str>,
    /// Keep blobs in the store (`blobs = "db"`) instead of a directory.
    pub db_blobs: bool,
    /// With a blob directory: messages up to this size are kept in the store.
    pub inline_max: usize,
}

/// Starts a server with `example.test` as local domain and accounts alice, bob (password
/// [`PASSWORD`]).
pub async fn start(opts: Options) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let (store_url, pg) = match opts.backend {
        Backend::Sqlite => (
            format!("sqlite:{}", dir.path().join("store.db").display()),
            None,
        ),
        Backend::Postgres => {
            let pg = tokio::task::spawn_blocking(PgServer::start).await.unwrap();
            (pg.url(), Some(Arc::new(pg)))
        }
    };
    let store = mailfleet_store::open(&store_url).await.unwrap();
    let blob_spec = if opts.db_blobs {
        "db".to_string()
    } else {
        format!("fs:{}", dir.path().join("blobs").display())
    };
    let blobs =
        mailfleet_store::open_node_blobs(&blob_spec, store.clone(), "t1", opts.inline_max).unwrap();
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
    for (k, v) in &opts.settings {
        store.set_setting(k, v).await.unwrap();
    }
    let shutdown = CancellationToken::new();
    let settings = LiveSettings::start(store.clone(), Duration::from_millis(50), shutdown.clone())
        .await
        .unwrap();
    let trusted: Vec<String> = opts
        .trusted_proxies
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect();
    start_node(
        Arc::new(dir),
        "t1",
        store,
        blobs,
        settings,
        trusted,
        opts.inline_max,
        blob_spec,
        shutdown,
        (store_url, pg),
    )
    .await
}

/// Starts node `server_id` on `store` and `blobs` in `dir`, on free ports.
#[allow(clippy::too_many_arguments)]
async fn start_node(
    dir: Arc<tempfile::TempDir>,
    server_id: &str,
    store: Arc<dyn Store>,
    blobs: Arc<dyn BlobStore>,
    settings: LiveSettings,
    trusted: Vec<String>,
    inline_max: usize,
    blob_spec: String,
    shutdown: CancellationToken,
    (store_url, pg): (String, Option<Arc<PgServer>>),
) -> Server {
    // The ports are free when handed out; another process may still take one before the
    // server binds it, so try a few offsets.
    for _ in 0..10 {
        let offset = mailfleet_test_support::free_port_offset(&[25, 587, 465]);
        let text = format!(
            "server_id = \"{server_id}\"\nhostname = \"mx.example.test\"\nstore = \"{}\"\n\
             data_dir = \"{}\"\nbind = \"127.0.0.1\"\nport_offset = {offset}\ntrusted_proxies = [{}]\n",
            store_url,
            dir.path().display(),
            trusted.join(", ")
        );
        let config = mailfleet_config::NodeConfig::parse(&text, "test.toml").unwrap();
        let ctx = SmtpContext {
            config: Arc::new(config),
            auth: Arc::new(mailfleet_auth::Authenticator::new(store.clone())),
            store: store.clone(),
            blobs: blobs.clone(),
            settings: settings.clone(),
        };
        match SmtpServer::start(ctx, shutdown.child_token()).await {
            Ok(bound) => {
                let find = |name: &str| bound.iter().find(|(n, _)| *n == name).unwrap().1;
                return Server {
                    mx: find("smtp"),
                    submission: find("submission"),
                    submissions: find("submissions"),
                    store,
                    blobs,
                    dir,
                    shutdown,
                    settings,
                    trusted,
                    inline_max,
                    blob_spec,
                    store_url,
                    _pg: pg,
                };
            }
            Err(SmtpError::Bind { .. }) => continue,
            Err(e) => panic!("{e}"),
        }
    }
    panic!("no free ports");
}

impl Server {
    /// A second node on the same store and blob directory (its own store handle, as
    /// another process would have), with its own ports and server id `t2`.
    pub async fn second_node(&self) -> Server {
        let store = mailfleet_store::open(&self.store_url).await.unwrap();
        let blobs =
            mailfleet_store::open_node_blobs(&self.blob_spec, store.clone(), "t2", self.inline_max)
                .unwrap();
        let shutdown = CancellationToken::new();
        let settings =
            LiveSettings::start(store.clone(), Duration::from_millis(50), shutdown.clone())
                .await
                .unwrap();
        start_node(
            self.dir.clone(),
            "t2",
            store,
            blobs,
            settings,
            self.trusted.clone(),
            self.inline_max,
            self.blob_spec.clone(),
            shutdown,
            (self.store_url.clone(), self._pg.clone()),
        )
        .await
    }

    /// The messages in an account's INBOX, oldest first.
    pub async fn inbox(&self, address: &str) -> Vec<Vec<u8>> {
        let account = self.store.get_account(address).await.unwrap().unwrap();
        let Some(mb) = self.store.get_mailbox(account.id, "INBOX").await.unwrap() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for m in self.store.list_messages(mb.id, 1, u32::MAX).await.unwrap() {
            out.push(self.blobs.get(&m.blob_id).await.unwrap());
        }
        out
    }

    /// Runs a scenario of `tests/client.py`; panics with its output if it fails.
    pub async fn client(&self, scenario: &str, extra: &[&str]) -> String {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/client.py");
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::new("python3")
                .arg(&script)
                .arg(scenario)
                .arg(self.mx.port().to_string())
                .arg(self.submission.port().to_string())
                .arg(self.submissions.port().to_string())
                .args(extra)
                // Killed if the test gives up on it (timeout, panic).
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
        text
    }

    /// Sets a cluster setting and waits until this node's live settings have it (they poll
    /// the store's settings version every 50 ms; the policy is re-read from them on use).
    pub async fn set(&self, key: &str, value: &str) {
        self.store.set_setting(key, value).await.unwrap();
        let version = self.store.settings_version().await.unwrap();
        let start = std::time::Instant::now();
        while self.settings.current().version < version {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{key} = {value} did not reach the node's settings within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
