//! Backup, restore and store copy at the store's level (`mailfleet_store::{transfer, backup}`),
//! from each backend: every table comes back with the same rows and checksums, on SQLite and
//! on PostgreSQL, and ids, UIDs, MODSEQs, UIDVALIDITY and fencing tokens continue after the
//! restored values.

use std::path::Path;
use std::sync::Arc;

use mailfleet_store::backup::{self, DEFAULT_NAME};
use mailfleet_store::transfer::{self, NOT_DUMPED};
use mailfleet_store::*;
use mailfleet_test_support::{TestStore, both_backends, sqlite_url};

both_backends!(
    workers = 2;
    a_backup_restores_into_sqlite_and_postgres_with_counters_continuing,
    every_table_of_the_catalog_is_dumped_or_named,
    a_damaged_or_unfinished_backup_is_refused,
    a_store_with_accounts_is_refused_as_a_target,
    a_master_past_its_lease_puts_no_backup_in_place,
);

fn opts(name: &str) -> backup::BackupOptions<'_> {
    backup::BackupOptions {
        name_pattern: name,
        keep: None,
        require_all_blobs: true,
        fence: None,
    }
}

fn new_account(address: &str) -> NewAccount {
    NewAccount {
        address: address.into(),
        password_hash: password::hash_password("pw").unwrap(),
        quota_bytes: 0,
        shard: "default".into(),
    }
}

/// A store with something in most tables: a domain, two accounts, an alias, a shard, messages
/// (a blob in the `blobs` table and one as a file), flags and keywords, an expunge, a queue
/// item, a setting, a lease taken twice, a heartbeat, rate events and login failures.
/// Returns the blob directory.
async fn fill(s: &Arc<dyn Store>, blob_dir: &Path) -> Arc<dyn BlobStore> {
    let blobs = open_blobs(&format!("fs:{}", blob_dir.display()), s.clone()).unwrap();
    s.add_domain("example.test").await.unwrap();
    s.put_shard("default", 100).await.unwrap();
    let ann = s
        .create_account(&new_account("ann@example.test"))
        .await
        .unwrap();
    let bob = s
        .create_account(&new_account("bob@example.test"))
        .await
        .unwrap();
    // An account removed: its id is never handed out again.
    let gone = s
        .create_account(&new_account("gone@example.test"))
        .await
        .unwrap();
    s.remove_account("gone@example.test").await.unwrap();
    assert!(gone.id > bob.id);
    s.add_alias(
        "all@example.test",
        &["ann@example.test".into(), "bob@example.test".into()],
    )
    .await
    .unwrap();
    for (i, body) in ["one", "two", "three"].iter().enumerate() {
        let bytes = format!("Subject: {body}\r\n\r\n{body}\r\n").into_bytes();
        let id = blob::blob_id(&bytes);
        let d = Delivery {
            blob_id: id.clone(),
            size: bytes.len() as i64,
            internal_date: 1_700_000_000 + i as i64,
            targets: vec![
                DeliveryTarget {
                    account_id: ann.id,
                    mailbox: "INBOX".into(),
                    flags: vec![],
                },
                DeliveryTarget {
                    account_id: bob.id,
                    mailbox: "INBOX".into(),
                    flags: vec!["\\Seen".into()],
                },
            ],
            queue: if i == 0 {
                vec![NewQueueItem {
                    sender: "ann@example.test".into(),
                    recipients: vec![QueueRecipient::new("x@remote.test")],
                    envid: Some("env1".into()),
                    ret: None,
                    next_attempt: 1_700_000_100,
                }]
            } else {
                vec![]
            },
            meta: Some(format!("meta-{body}")),
            text: Some(body.to_string()),
        };
        if i == 1 {
            // Kept in the database.
            s.deliver_with_bytes(&d, &bytes).await.unwrap();
        } else {
            blobs.put(&bytes).await.unwrap();
            s.deliver(&d).await.unwrap();
        }
    }
    let inbox = s.get_mailbox(ann.id, "INBOX").await.unwrap().unwrap();
    s.set_flags(
        inbox.id,
        &[1, 3],
        FlagOp::Add,
        &["\\Flagged".into(), "$Work".into()],
        None,
    )
    .await
    .unwrap();
    s.expunge(inbox.id, &[2]).await.unwrap();
    s.set_setting("queue.concurrency", "4").await.unwrap();
    s.acquire_lease("master", "n1", 1000, 10)
        .await
        .unwrap()
        .unwrap();
    s.acquire_lease("master", "n2", 2000, 10)
        .await
        .unwrap()
        .unwrap();
    s.heartbeat(&NodeInfo {
        server_id: "n1".into(),
        hostname: "h".into(),
        info: serde_json::json!({"x": 1}),
        started: 1,
        last_seen: 2,
    })
    .await
    .unwrap();
    s.add_rate_events(&[("sender:ann".into(), 10, 3)])
        .await
        .unwrap();
    s.auth_failed("192.0.2.1", 1_700_000_000, 600)
        .await
        .unwrap();
    blobs
}

/// A fresh, empty database on the same PostgreSQL server as `url`.
async fn another_pg_database(url: &str, name: &str) -> String {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut c)
        .await
        .unwrap();
    let (base, _) = url.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

async fn a_backup_restores_into_sqlite_and_postgres_with_counters_continuing(b: TestStore) {
    let dir = tempfile::tempdir().unwrap();
    let source = mailfleet_store::open(&b.url).await.unwrap();
    let blobs = fill(&source, &dir.path().join("blobs")).await;
    let area = dir.path().join("backups");
    let report = backup::backup(
        source.as_ref(),
        blobs.as_ref(),
        &area,
        &opts(DEFAULT_NAME),
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    // Three message blobs (one in the blobs table); message two is expunged in one INBOX but
    // not in the other.
    assert_eq!(report.manifest.blobs, 3);
    assert_eq!(report.blobs_copied, 3);
    assert!(report.manifest.missing_blobs.is_empty());
    let before = transfer::summarize(source.as_ref()).await.unwrap();
    let by_name = |name: &str| before.iter().find(|t| t.name == name).unwrap().clone();
    assert_eq!(by_name("accounts").rows, 2);
    assert_eq!(by_name("messages").rows, 6);
    assert_eq!(by_name("blobs").rows, 1);
    assert_eq!(by_name("queue").rows, 1);
    for t in &before {
        let m = report
            .manifest
            .tables
            .iter()
            .find(|m| m.name == t.name)
            .unwrap();
        assert_eq!((m.rows, &m.checksum), (t.rows, &t.checksum), "{}", t.name);
    }

    // Into an empty SQLite store, and into an empty PostgreSQL database (a second server when
    // the source is SQLite).
    let pg_holder;
    let pg_url = if b.is_sqlite() {
        pg_holder = tokio::task::spawn_blocking(TestStore::postgres)
            .await
            .unwrap();
        pg_holder.url.clone()
    } else {
        another_pg_database(&b.url, "restored").await
    };
    let targets = [sqlite_url(&dir.path().join("restored")), pg_url];
    for (n, url) in targets.iter().enumerate() {
        let target = mailfleet_store::open(url).await.unwrap();
        let target_blobs_dir = dir.path().join(format!("target-blobs-{n}"));
        let target_blobs = open_blobs(
            &format!("fs:{}", target_blobs_dir.display()),
            target.clone(),
        )
        .unwrap();
        let restored = backup::restore(target.as_ref(), Some(target_blobs.as_ref()), &area)
            .await
            .unwrap();
        assert_eq!(restored.blobs_written, 2, "{url}");
        assert_eq!(restored.blobs_in_table, 1, "{url}");
        let after = transfer::summarize(target.as_ref()).await.unwrap();
        assert_eq!(after, before, "{url}");

        // The mail reads back, blobs included.
        let ann = target
            .get_account("ann@example.test")
            .await
            .unwrap()
            .unwrap();
        let inbox = target.get_mailbox(ann.id, "INBOX").await.unwrap().unwrap();
        let msgs = target.list_messages(inbox.id, 1, u32::MAX).await.unwrap();
        let uids: Vec<u32> = msgs.iter().map(|m| m.uid).collect();
        assert_eq!(uids, vec![1, 3], "{url}");
        assert!(msgs[0].flags.contains(&"\\Flagged".to_string()), "{url}");
        assert!(msgs[1].flags.contains(&"$Work".to_string()), "{url}");
        for m in &msgs {
            let bytes = target_blobs.get(&m.blob_id).await.unwrap();
            assert_eq!(blob::blob_id(&bytes), m.blob_id);
        }
        // Counters continue after the restored values.
        let old_inbox = source.get_mailbox(ann.id, "INBOX").await.unwrap().unwrap();
        let carol = target
            .create_account(&new_account("carol@example.test"))
            .await
            .unwrap();
        assert!(
            carol.id > ann.id + 2,
            "{url}: account id {} reused",
            carol.id
        );
        let new_box = target.create_mailbox(ann.id, "Later", None).await.unwrap();
        assert!(new_box.uidvalidity > old_inbox.uidvalidity, "{url}");
        let bytes = b"Subject: four\r\n\r\nfour\r\n";
        target_blobs.put(bytes).await.unwrap();
        let got = target
            .deliver(&Delivery {
                blob_id: blob::blob_id(bytes),
                size: bytes.len() as i64,
                internal_date: 1_700_000_010,
                targets: vec![DeliveryTarget {
                    account_id: ann.id,
                    mailbox: "INBOX".into(),
                    flags: vec![],
                }],
                queue: vec![NewQueueItem {
                    sender: String::new(),
                    recipients: vec![QueueRecipient::new("y@remote.test")],
                    envid: None,
                    ret: None,
                    next_attempt: 0,
                }],
                meta: None,
                text: None,
            })
            .await
            .unwrap();
        assert_eq!(got[0].uid, old_inbox.uidnext, "{url}");
        let after_inbox = target.mailbox_by_id(inbox.id).await.unwrap().unwrap();
        assert!(after_inbox.highestmodseq > old_inbox.highestmodseq, "{url}");
        let queue = target.list_queue().await.unwrap();
        let old_queue = source.list_queue().await.unwrap();
        assert!(queue.iter().map(|q| q.id).max() > old_queue.iter().map(|q| q.id).max());
        let old_token = source.get_lease("master").await.unwrap().unwrap().token;
        let lease = target
            .acquire_lease("master", "n9", mailfleet_store::now() + 100, 10)
            .await
            .unwrap()
            .unwrap();
        assert!(lease.token > old_token, "{url}: fencing token went back");
        assert_eq!(
            target
                .get_setting("queue.concurrency")
                .await
                .unwrap()
                .unwrap()
                .value,
            "4"
        );
    }
}

async fn every_table_of_the_catalog_is_dumped_or_named(b: TestStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = mailfleet_store::open(&b.url).await.unwrap();
    let export = transfer::export(s.as_ref(), dir.path()).await.unwrap();
    let dumped: Vec<&str> = export.tables.iter().map(|t| t.name.as_str()).collect();
    let catalog = transfer::catalog_tables(s.as_ref()).await.unwrap();
    for table in &catalog {
        assert!(
            dumped.contains(&table.as_str()) || NOT_DUMPED.iter().any(|(n, _)| n == table),
            "table {table} is neither dumped nor named in NOT_DUMPED"
        );
    }
    for must in [
        "accounts",
        "messages",
        "mailboxes",
        "queue",
        "leases",
        "counters",
        "blobs",
    ] {
        assert!(dumped.contains(&must), "{must} not dumped: {dumped:?}");
    }
}

async fn a_damaged_or_unfinished_backup_is_refused(b: TestStore) {
    let dir = tempfile::tempdir().unwrap();
    let source = mailfleet_store::open(&b.url).await.unwrap();
    let blobs = fill(&source, &dir.path().join("blobs")).await;
    let area = dir.path().join("backups");
    let report = backup::backup(
        source.as_ref(),
        blobs.as_ref(),
        &area,
        &opts("good"),
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    let target_url = sqlite_url(&dir.path().join("t"));
    let target = mailfleet_store::open(&target_url).await.unwrap();
    let target_blobs = open_blobs("db", target.clone()).unwrap();

    // A copy without its manifest: an unfinished backup.
    let copy = area.join("copy");
    std::fs::create_dir_all(copy.join("tables")).unwrap();
    for e in std::fs::read_dir(report.path.join("tables")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), copy.join("tables").join(e.file_name())).unwrap();
    }
    std::fs::copy(report.path.join("blobs.list"), copy.join("blobs.list")).unwrap();
    let e = backup::restore(target.as_ref(), Some(target_blobs.as_ref()), &copy)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not a complete backup"), "{e}");

    // A row changed in a table file.
    std::fs::copy(
        report.path.join("manifest.json"),
        copy.join("manifest.json"),
    )
    .unwrap();
    let file = copy.join("tables").join("accounts.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("ann@example.test", "eve@example.test")).unwrap();
    let e = backup::restore(target.as_ref(), Some(target_blobs.as_ref()), &copy)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("accounts.jsonl"), "{e}");
    assert!(e.to_string().contains("damaged"), "{e}");

    // A blob's bytes changed in the blob area.
    let id = std::fs::read_to_string(report.path.join("blobs.list"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    let blob = area.join("blobs").join(&id[0..2]).join(&id[2..4]).join(&id);
    std::fs::write(&blob, b"not the message").unwrap();
    let e = backup::restore(target.as_ref(), Some(target_blobs.as_ref()), &report.path)
        .await
        .unwrap_err();
    assert!(e.to_string().contains(&id), "{e}");
    // Nothing of it reached the target.
    assert!(target.list_accounts(None).await.unwrap().is_empty());
    assert!(target.list_domains().await.unwrap().is_empty());
}

async fn a_store_with_accounts_is_refused_as_a_target(b: TestStore) {
    let dir = tempfile::tempdir().unwrap();
    let source = mailfleet_store::open(&b.url).await.unwrap();
    let blobs = fill(&source, &dir.path().join("blobs")).await;
    let area = dir.path().join("backups");
    backup::backup(
        source.as_ref(),
        blobs.as_ref(),
        &area,
        &opts("b"),
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    // The source itself has accounts.
    let e = backup::restore(source.as_ref(), Some(blobs.as_ref()), &area)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotEmpty { .. }), "{e}");
    assert!(e.to_string().contains("not empty"), "{e}");
    let work = dir.path().join("work");
    let e = backup::copy_store(source.clone(), source.as_ref(), None, &work)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotEmpty { .. }), "{e}");
}

async fn a_master_past_its_lease_puts_no_backup_in_place(b: TestStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = mailfleet_store::open(&b.url).await.unwrap();
    let blobs = fill(&s, &dir.path().join("blobs")).await;
    let area = dir.path().join("backups");
    let t = mailfleet_store::now();
    let old = s
        .acquire_lease("master", "n1", t, 10)
        .await
        .unwrap()
        .unwrap();
    let fence = |l: &Lease| Fence {
        lease: l.name.clone(),
        holder: l.holder.clone(),
        token: l.token,
    };
    fn with<'a>(name: &'a str, f: &'a Fence) -> backup::BackupOptions<'a> {
        backup::BackupOptions {
            name_pattern: name,
            keep: Some(1),
            require_all_blobs: true,
            fence: Some(f),
        }
    }
    let held = fence(&old);
    backup::backup(
        s.as_ref(),
        blobs.as_ref(),
        &area,
        &with("by-master", &held),
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    // n1 paused past its lease; n2 holds it now.
    s.acquire_lease("master", "n2", t + 60, 10)
        .await
        .unwrap()
        .unwrap();
    let e = backup::backup(
        s.as_ref(),
        blobs.as_ref(),
        &area,
        &with("stale", &held),
        chrono::Utc::now(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, StoreError::Fenced { .. }), "{e}");
    // Nothing put in place, nothing removed by its retention, no partial left.
    let names: Vec<String> = std::fs::read_dir(&area)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".lock")
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(names, vec!["blobs", "by-master"]);
}
