//! `mailfleet mailbox status` and `mailfleet blobs gc` against SQLite and PostgreSQL, with
//! messages delivered through the store directly.

mod cli_support;

use std::sync::Arc;

use cli_support::{Env, keys};
use mailfleet_store::{BlobStore, Delivery, DeliveryTarget, NewQueueItem, QueueRecipient, Store};

both_backends!(mailbox_status, blobs_gc_on_files, blobs_gc_in_database);

async fn deliver(
    store: &Arc<dyn Store>,
    blobs: &Arc<dyn BlobStore>,
    account_id: i64,
    mailbox: &str,
    body: &[u8],
    flags: &[&str],
) -> String {
    let blob_id = blobs.put(body).await.unwrap();
    store
        .deliver(&Delivery {
            blob_id: blob_id.clone(),
            size: body.len() as i64,
            internal_date: mailfleet_store::now(),
            targets: vec![DeliveryTarget {
                account_id,
                mailbox: mailbox.to_string(),
                flags: flags.iter().map(|f| f.to_string()).collect(),
            }],
            queue: Vec::new(),
            meta: None,
            text: None,
        })
        .await
        .unwrap();
    blob_id
}

const ONE: &[u8] = b"Subject: one\r\n\r\nhello\r\n";
const TWO: &[u8] = b"Subject: two\r\n\r\nhi\r\n";
const OLD: &[u8] = b"Subject: old\r\n\r\nx\r\n";

fn mailbox_status(env: &Env) {
    env.ok(&["domain", "add", "x.test"]);
    env.ok(&["account", "add", "a@x.test"]);
    assert_eq!(
        env.fail(&["mailbox", "status", "nobody@x.test"]),
        "account not found: nobody@x.test"
    );
    let fs = format!("fs:{}", env.dir.path().join("blobs").display());
    env.with_store(async |store| {
        let blobs = mailfleet_store::open_blobs(&fs, store.clone()).unwrap();
        let id = store.get_account("a@x.test").await.unwrap().unwrap().id;
        deliver(&store, &blobs, id, "INBOX", ONE, &[]).await;
        deliver(&store, &blobs, id, "INBOX", TWO, &["\\Seen"]).await;
        deliver(&store, &blobs, id, "Archive", OLD, &["\\Seen"]).await;
    });
    // A new account's mailboxes: Archive, Drafts, INBOX, Junk, Sent, Trash.
    let status = env.json(&["mailbox", "status", "a@x.test"]);
    assert_eq!(status.len(), 6);
    assert_eq!(
        keys(&status[0]),
        [
            "bytes",
            "messages",
            "name",
            "uidnext",
            "uidvalidity",
            "unseen"
        ]
    );
    let archive = &status[0];
    let inbox = &status[2];
    assert_eq!(archive["name"], "Archive");
    assert_eq!(inbox["name"], "INBOX");
    assert_eq!(inbox["messages"], 2);
    assert_eq!(inbox["unseen"], 1);
    assert_eq!(inbox["uidnext"], 3);
    assert_eq!(inbox["bytes"], ONE.len() + TWO.len());
    assert!(inbox["uidvalidity"].as_u64().unwrap() > 0);
    assert_eq!(archive["messages"], 1);
    assert_eq!(archive["unseen"], 0);
    let table = env.ok(&["mailbox", "status", "A@x.test"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 7);
    assert!(
        lines[0].starts_with("MAILBOX  MESSAGES  UNSEEN  UIDNEXT"),
        "{table}"
    );
    assert!(
        lines[3].starts_with("INBOX    2         1       3"),
        "{table}"
    );
    // Delivery counted the bytes against the account.
    assert_eq!(
        env.json(&["account", "list"])[0]["used_bytes"],
        ONE.len() + TWO.len() + OLD.len()
    );
}

/// Two blobs used by a message and a queue item, one unused: gc removes only the unused one,
/// and only once it is older than the grace period.
fn gc_scenario(env: &Env, spec: &str) {
    env.ok(&["domain", "add", "x.test"]);
    env.ok(&["account", "add", "a@x.test"]);
    let (used, queued, unused) = env.with_store(async |store| {
        let blobs = mailfleet_store::open_blobs(spec, store.clone()).unwrap();
        let id = store.get_account("a@x.test").await.unwrap().unwrap().id;
        let used = deliver(&store, &blobs, id, "INBOX", b"kept: a message\r\n", &[]).await;
        let queued = blobs.put(b"kept: queued").await.unwrap();
        store
            .enqueue(
                &queued,
                12,
                &NewQueueItem {
                    sender: "a@x.test".into(),
                    recipients: vec![QueueRecipient::new("b@remote.example")],
                    envid: None,
                    ret: None,
                    next_attempt: mailfleet_store::now(),
                },
            )
            .await
            .unwrap();
        let unused = blobs.put(b"garbage").await.unwrap();
        (used, queued, unused)
    });
    let gc = |grace: &str| {
        let mut c = env.command(&["blobs", "gc", "--grace", grace]);
        c.env("MAILFLEET_BLOBS", spec);
        let r: cli_support::Run = c.output().unwrap().into();
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.stdout
    };
    // Everything is younger than an hour.
    assert_eq!(gc("3600"), "removed 0 unused blobs\n");
    // Blob times have one-second resolution: make sure "older than 0 s" holds.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(gc("0"), "removed 1 unused blob\n");
    assert_eq!(gc("0"), "removed 0 unused blobs\n");
    env.with_store(async |store| {
        let blobs = mailfleet_store::open_blobs(spec, store.clone()).unwrap();
        assert!(blobs.get(&used).await.is_ok());
        assert!(blobs.get(&queued).await.is_ok());
        assert!(blobs.get(&unused).await.is_err());
    });
    assert!(
        env.fail(&["blobs", "gc", "--blobs", "s3:bucket"])
            .starts_with("blobs \"s3:bucket\": expected fs:PATH or db")
    );
}

fn blobs_gc_on_files(env: &Env) {
    let spec = format!("fs:{}", env.dir.path().join("blobs").display());
    gc_scenario(env, &spec);
}

fn blobs_gc_in_database(env: &Env) {
    gc_scenario(env, "db");
}
