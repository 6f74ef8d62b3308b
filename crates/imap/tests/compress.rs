//! COMPRESS=DEFLATE (RFC 4978) over real sockets on 127.0.0.1, driven by
//! `tests/compress_client.py` (raw sockets and Python's zlib: imaplib has no COMPRESS).

use std::sync::Arc;
use std::time::Duration;

use mailfleet_cluster::LiveSettings;
use mailfleet_imap::{ImapContext, ImapServer};
use mailfleet_store::password::hash_password;
use mailfleet_store::{NewAccount, Store};
use mailfleet_test_support::TestStore;
use tokio_util::sync::CancellationToken;

const PASSWORD: &str = "correct horse";

/// Starts one IMAP node on `db` with `alice` provisioned and cleartext logins allowed;
/// returns its 143 and 993 ports.
async fn start(db: &TestStore, dir: &std::path::Path, shutdown: &CancellationToken) -> (u16, u16) {
    let store: Arc<dyn Store> = mailfleet_store::open(&db.url).await.unwrap();
    store.add_domain("example.test").await.unwrap();
    store
        .create_account(&NewAccount {
            address: "alice@example.test".into(),
            password_hash: hash_password(PASSWORD).unwrap(),
            quota_bytes: 0,
            shard: "default".into(),
        })
        .await
        .unwrap();
    store
        .set_setting("imap.auth.allow_cleartext", "true")
        .await
        .unwrap();
    let id = "i0";
    let blobs = mailfleet_store::open_node_blobs(
        &format!("fs:{}", dir.join("blobs").display()),
        store.clone(),
        id,
        0,
    )
    .unwrap();
    let live = LiveSettings::start(store.clone(), Duration::from_millis(50), shutdown.clone())
        .await
        .unwrap();
    let data = dir.join(id);
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
            auth: Arc::new(mailfleet_auth::Authenticator::new(store.clone())),
            store,
            blobs,
            settings: live,
        },
        shutdown.clone(),
    )
    .await
    .unwrap();
    let find = |name: &str| bound.iter().find(|(n, _)| *n == name).unwrap().1.port();
    (find("imap"), find("imaps"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compress_deflate_login_select_append_fetch_logout() {
    let db = TestStore::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let (imap, imaps) = start(&db, dir.path(), &shutdown).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/compress_client.py");
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new("python3")
            .arg(script)
            .arg(imap.to_string())
            .arg(imaps.to_string())
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
    assert!(out.status.success(), "compress_client.py failed:\n{text}");
    for line in text.lines().filter(|l| l.starts_with("measured:")) {
        eprintln!("{line}");
    }
}
