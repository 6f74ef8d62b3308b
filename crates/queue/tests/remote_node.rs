//! Delivery through the queue to a second mailfleet node acting as the remote MX: its own
//! store, its SMTP server on 127.0.0.1, found through an MX record; opportunistic STARTTLS
//! against its self-signed certificate.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use mailfleet_cluster::LiveSettings;
use mailfleet_smtp::{SmtpContext, SmtpError, SmtpServer};
use mailfleet_store::{BlobStore, NewAccount, Store};
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(20);

struct RemoteNode {
    mx: SocketAddr,
    store: Arc<dyn Store>,
    blobs: Arc<dyn BlobStore>,
    _dir: tempfile::TempDir,
    shutdown: CancellationToken,
}

impl Drop for RemoteNode {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A node for `example.test` with the account bob.
async fn remote_node() -> RemoteNode {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("remote.db");
    let store = mailfleet_store::open(&format!("sqlite:{}", db.display()))
        .await
        .unwrap();
    let blobs = mailfleet_store::open_blobs(
        &format!("fs:{}", dir.path().join("blobs").display()),
        store.clone(),
    )
    .unwrap();
    store.add_domain("example.test").await.unwrap();
    store
        .create_account(&NewAccount {
            address: "bob@example.test".into(),
            password_hash: "x".into(),
            quota_bytes: 0,
            shard: "default".into(),
        })
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let settings = LiveSettings::start(store.clone(), Duration::from_millis(100), shutdown.clone())
        .await
        .unwrap();
    // The ports are free when handed out; another process may still take one before the
    // server binds it, so try a few offsets.
    for _ in 0..10 {
        let offset = mailfleet_test_support::free_port_offset(&[25, 587, 465]);
        let text = format!(
            "server_id = \"r1\"\nhostname = \"mx.example.test\"\nstore = \"sqlite:{}\"\n\
             data_dir = \"{}\"\nbind = \"127.0.0.1\"\nport_offset = {offset}\n",
            db.display(),
            dir.path().display(),
        );
        let config = mailfleet_config::NodeConfig::parse(&text, "remote.toml").unwrap();
        let ctx = SmtpContext {
            config: Arc::new(config),
            auth: Arc::new(mailfleet_auth::Authenticator::new(store.clone())),
            store: store.clone(),
            blobs: blobs.clone(),
            settings: settings.clone(),
        };
        match SmtpServer::start(ctx, shutdown.child_token()).await {
            Ok(bound) => {
                let mx = bound.iter().find(|(n, _)| *n == "smtp").unwrap().1;
                return RemoteNode {
                    mx,
                    store,
                    blobs,
                    _dir: dir,
                    shutdown,
                };
            }
            Err(SmtpError::Bind { .. }) => continue,
            Err(e) => panic!("{e}"),
        }
    }
    panic!("no free ports");
}

impl RemoteNode {
    async fn inbox(&self, address: &str) -> Vec<String> {
        let account = self.store.get_account(address).await.unwrap().unwrap();
        let Some(mb) = self.store.get_mailbox(account.id, "INBOX").await.unwrap() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for m in self.store.list_messages(mb.id, 1, u32::MAX).await.unwrap() {
            let bytes = self.blobs.get(&m.blob_id).await.unwrap();
            out.push(String::from_utf8_lossy(&bytes).into_owned());
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_to_a_second_node_over_starttls_and_bounces_its_refusals() {
    let remote = remote_node().await;
    let dns = Dns::start(&[
        ("example.test", Rr::Mx(10, "mx.example.test")),
        ("mx.example.test", Rr::A(Ipv4Addr::LOCALHOST)),
    ])
    .await;
    let cluster = Cluster::new(&dns, remote.mx.port(), &[]).await;
    let _w = cluster.worker("n1");
    cluster
        .enqueue(
            ALICE,
            &["bob@example.test", "nobody@example.test"],
            "to-node",
        )
        .await;
    let got = wait_for(LIMIT, "bob's message on the remote node", || async {
        remote.inbox("bob@example.test").await.pop()
    })
    .await;
    assert!(got.contains("Subject: to-node\r\n"), "{got}");
    // One Return-Path, the remote node's own: the sending node drops the one it stored.
    assert!(
        got.starts_with("Return-Path: <alice@local.test>\r\n"),
        "{got}"
    );
    assert_eq!(got.matches("Return-Path:").count(), 1, "{got}");
    // The remote node records how the message came: ESMTPS means our STARTTLS was used.
    assert!(got.contains("from n1.local.test"), "{got}");
    assert!(got.contains("with ESMTPS"), "opportunistic STARTTLS: {got}");
    assert!(got.contains("\r\n.leading dot line\r\n"), "{got}");
    let bounce = wait_for(LIMIT, "the bounce for nobody@", || async {
        cluster.inbox().await.pop()
    })
    .await;
    assert!(
        bounce.contains(
            "Final-Recipient: rfc822; nobody@example.test\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        ),
        "{bounce}"
    );
    assert!(
        bounce.contains("Remote-MTA: dns; mx.example.test\r\n"),
        "{bounce}"
    );
    wait_for(LIMIT, "an empty queue", || async {
        (cluster.queue_len().await == 0).then_some(())
    })
    .await;
    assert_eq!(remote.inbox("bob@example.test").await.len(), 1);
}
