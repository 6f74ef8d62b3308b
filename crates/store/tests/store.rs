//! The store's behaviour, run against SQLite and PostgreSQL with the same test bodies.

use std::sync::Arc;

use mailfleet_store::*;
use mailfleet_test_support::{ChildGuard, TestStore, both_backends, example_binary, sqlite_url};

both_backends!(
    workers = 4;
    domains_and_accounts,
    aliases_and_shards,
    concurrent_appends_in_one_process,
    concurrent_appends_in_eight_processes,
    deliver_is_one_transaction,
    queue_claims_are_exclusive,
    queue_leases_are_renewed_by_their_holder_only,
    leases_have_fencing_tokens,
    a_fenced_write_from_a_stale_holder_writes_nothing,
    expired_queue_items_are_claimed_for_the_master_only,
    settings_have_versions,
    schema_newer_than_binary_is_refused,
    db_blobs_and_gc,
    small_blobs_inline_with_fs_blobs,
    a_failing_write_among_concurrent_ones_fails_alone,
    rows_wait_for_their_blob,
    a_failed_blob_sinks_only_its_own_delivery,
    blob_bytes_share_the_delivery_transaction,
    rate_events_and_login_failures_are_shared_by_nodes,
    login_attempts_are_reserved_atomically,
    the_store_names_its_backend,
    the_database_server_tells_its_clock,
    expunge_leaves_tombstones_and_gives_bytes_back,
    a_notice_is_queued_only_with_the_outcome,
    a_version_1_store_is_migrated,
    a_version_2_store_is_migrated,
    flags_counters_keywords_and_meta_are_kept,
    set_flags_takes_one_modseq_and_keeps_counters,
    concurrent_flag_changes_keep_counters,
    the_quota_is_checked_inside_the_transaction,
    deliveries_naming_accounts_in_opposite_orders_do_not_deadlock,
    removing_an_account_while_it_gets_mail_does_not_deadlock,
    copy_keeps_messages_and_counts_them,
    copy_over_quota_writes_nothing,
    move_leaves_tombstones,
    append_many_is_all_or_nothing,
    rename_moves_children_and_subscriptions,
    rename_inbox_moves_its_messages,
    delete_mailbox_gives_bytes_back,
    subscriptions_are_independent_of_mailboxes,
    one_mailbox_by_id_and_its_status,
    fetch_messages_pages_with_meta,
    mailbox_versions_rise_on_each_write,
    recent_messages_are_claimed_once,
    a_version_3_store_is_migrated,
    a_version_4_store_is_migrated,
    the_text_index_narrows_searches,
    appended_texts_are_indexed,
    a_version_5_store_is_migrated,
    a_version_7_store_is_migrated,
    old_tombstones_are_purged_under_a_floor,
    leases_know_when_their_holder_took_them,
    the_queue_summary_counts_items_and_holders,
);

fn new_account(address: &str) -> NewAccount {
    NewAccount {
        address: address.into(),
        password_hash: password::hash_password("pw").unwrap(),
        quota_bytes: 0,
        shard: "default".into(),
    }
}

async fn open_store(b: &TestStore) -> Arc<dyn Store> {
    mailfleet_store::open(&b.url).await.unwrap()
}

/// An account's INBOX counters.
async fn inbox_status(s: &Arc<dyn Store>, account_id: i64) -> MailboxStatus {
    let inbox = s.get_mailbox(account_id, "INBOX").await.unwrap().unwrap();
    s.status_of(inbox.id).await.unwrap()
}

async fn domains_and_accounts(b: TestStore) {
    let s = open_store(&b).await;
    s.add_domain("example.test").await.unwrap();
    assert!(matches!(
        s.add_domain("example.test").await,
        Err(StoreError::DomainExists(_))
    ));
    assert!(matches!(
        s.create_account(&new_account("a@nowhere.test")).await,
        Err(StoreError::DomainNotFound(d)) if d == "nowhere.test"
    ));
    let a = s
        .create_account(&new_account("a@example.test"))
        .await
        .unwrap();
    assert!(a.enabled);
    assert!(matches!(
        s.create_account(&new_account("a@example.test")).await,
        Err(StoreError::AccountExists(_))
    ));
    // A new account has INBOX and the special-use mailboxes, all subscribed.
    let boxes = s.list_mailboxes(a.id).await.unwrap();
    let names: Vec<(&str, Option<&str>, bool)> = boxes
        .iter()
        .map(|m| (m.name.as_str(), m.special_use.as_deref(), m.subscribed))
        .collect();
    assert_eq!(
        names,
        [
            ("Archive", Some("\\Archive"), true),
            ("Drafts", Some("\\Drafts"), true),
            ("INBOX", None, true),
            ("Junk", Some("\\Junk"), true),
            ("Sent", Some("\\Sent"), true),
            ("Trash", Some("\\Trash"), true),
        ]
    );
    assert!(boxes.iter().all(|m| m.uidnext == 1));
    let mut validities: Vec<u32> = boxes.iter().map(|m| m.uidvalidity).collect();
    validities.sort();
    validities.dedup();
    assert_eq!(validities.len(), 6, "each its own UIDVALIDITY");
    assert_eq!(
        s.subscriptions(a.id).await.unwrap(),
        ["Archive", "Drafts", "INBOX", "Junk", "Sent", "Trash"]
    );
    let u = s
        .update_account(
            "a@example.test",
            &AccountUpdate {
                quota_bytes: Some(1000),
                enabled: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((u.quota_bytes, u.enabled), (1000, false));
    assert!(password::verify_password(&u.password_hash, "pw"));
    // A failed batch creates nothing.
    let batch = vec![new_account("b@example.test"), new_account("a@example.test")];
    assert!(s.create_accounts(&batch).await.is_err());
    assert!(s.get_account("b@example.test").await.unwrap().is_none());
    s.create_accounts(&batch[..1]).await.unwrap();
    let list = s.list_accounts(Some("example.test")).await.unwrap();
    assert_eq!(
        list.iter().map(|a| a.address.as_str()).collect::<Vec<_>>(),
        ["a@example.test", "b@example.test"]
    );
    assert!(matches!(
        s.list_accounts(Some("other.test")).await,
        Err(StoreError::DomainNotFound(_))
    ));
    s.remove_account("b@example.test").await.unwrap();
    assert!(matches!(
        s.remove_account("b@example.test").await,
        Err(StoreError::AccountNotFound(_))
    ));
    // Removing a domain removes its accounts and their mailboxes.
    s.remove_domain("example.test").await.unwrap();
    assert!(s.get_account("a@example.test").await.unwrap().is_none());
    assert!(s.list_mailboxes(a.id).await.unwrap().is_empty());
    assert!(matches!(
        s.remove_domain("example.test").await,
        Err(StoreError::DomainNotFound(_))
    ));
}

async fn aliases_and_shards(b: TestStore) {
    let s = open_store(&b).await;
    s.add_domain("example.test").await.unwrap();
    s.add_alias(
        "sales@example.test",
        &["a@example.test".into(), "b@remote.test".into()],
    )
    .await
    .unwrap();
    s.add_alias("sales@example.test", &["a@example.test".into()])
        .await
        .unwrap();
    s.add_alias("@example.test", &["a@example.test".into()])
        .await
        .unwrap();
    assert!(matches!(
        s.add_alias("x@other.test", &["a@example.test".into()])
            .await,
        Err(StoreError::DomainNotFound(_))
    ));
    let a = s.get_alias("sales@example.test").await.unwrap().unwrap();
    assert_eq!(a.targets, ["a@example.test", "b@remote.test"]);
    assert_eq!(s.list_aliases(Some("example.test")).await.unwrap().len(), 2);
    s.remove_alias("sales@example.test").await.unwrap();
    assert!(s.get_alias("sales@example.test").await.unwrap().is_none());

    s.put_shard("s1", 100).await.unwrap();
    s.put_shard("s2", 50).await.unwrap();
    s.put_shard("s2", 70).await.unwrap();
    let mut acc = new_account("z@example.test");
    acc.shard = "s2".into();
    s.create_account(&acc).await.unwrap();
    let shards = s.list_shards().await.unwrap();
    assert_eq!(shards.len(), 2);
    assert_eq!(
        (
            shards[1].name.as_str(),
            shards[1].weight,
            shards[1].accounts
        ),
        ("s2", 70, 1)
    );
}

const WRITERS: usize = 8;
const PER_WRITER: usize = 500;

async fn setup_mailbox(s: &Arc<dyn Store>) -> i64 {
    s.add_domain("example.test").await.unwrap();
    let a = s
        .create_account(&new_account("a@example.test"))
        .await
        .unwrap();
    s.get_mailbox(a.id, "inbox").await.unwrap().unwrap().id
}

async fn check_uids(s: &Arc<dyn Store>, mailbox_id: i64) {
    let msgs = s.list_messages(mailbox_id, 1, u32::MAX).await.unwrap();
    assert_eq!(msgs.len(), WRITERS * PER_WRITER);
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(m.uid as usize, i + 1, "UIDs are dense and increasing");
    }
    let mut modseqs: Vec<i64> = msgs.iter().map(|m| m.modseq).collect();
    modseqs.sort();
    modseqs.dedup();
    assert_eq!(modseqs.len(), msgs.len(), "MODSEQs are distinct");
    let status = s.status_of(mailbox_id).await.unwrap();
    assert_eq!(status.uidnext as usize, WRITERS * PER_WRITER + 1);
    assert_eq!(status.messages as usize, WRITERS * PER_WRITER);
}

async fn concurrent_appends_in_one_process(b: TestStore) {
    let s = open_store(&b).await;
    let mailbox = setup_mailbox(&s).await;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut last = 0;
            for i in 0..PER_WRITER {
                let uid = s
                    .append(mailbox, &format!("{w}-{i}"), 10, 0, &[], None)
                    .await
                    .unwrap();
                assert!(uid > last, "UIDs one writer sees increase");
                last = uid;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    check_uids(&s, mailbox).await;
}

/// WRITERS processes (the `append_worker` example of this crate) append PER_WRITER messages
/// each to one mailbox. Every one is killed if the test fails before it ends.
async fn concurrent_appends_in_eight_processes(b: TestStore) {
    let s = open_store(&b).await;
    let mailbox = setup_mailbox(&s).await;
    let exe = tokio::task::spawn_blocking(|| example_binary("append_worker"))
        .await
        .unwrap();
    let mut children: Vec<ChildGuard> = (0..WRITERS)
        .map(|_| {
            ChildGuard::spawn(
                std::process::Command::new(&exe)
                    .arg(&b.url)
                    .arg(mailbox.to_string())
                    .arg(PER_WRITER.to_string())
                    .stdout(std::process::Stdio::null()),
            )
            .unwrap()
        })
        .collect();
    // Waits without blocking the runtime; the guards still hold every child not yet done.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while !children.is_empty() {
        let mut still = Vec::new();
        for mut c in children {
            match c.try_wait().unwrap() {
                Some(status) => assert!(status.success(), "a writer process failed: {status}"),
                None => still.push(c),
            }
        }
        children = still;
        assert!(
            std::time::Instant::now() < deadline,
            "{} writer processes still running after 300 s",
            children.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    check_uids(&s, mailbox).await;
}

async fn deliver_is_one_transaction(b: TestStore) {
    let s = open_store(&b).await;
    s.add_domain("example.test").await.unwrap();
    let a = s
        .create_account(&new_account("a@example.test"))
        .await
        .unwrap();
    let c = s
        .create_account(&new_account("c@example.test"))
        .await
        .unwrap();
    let d = Delivery {
        blob_id: "b1".into(),
        size: 100,
        internal_date: 1,
        targets: vec![
            DeliveryTarget {
                account_id: a.id,
                mailbox: "INBOX".into(),
                flags: vec![],
            },
            DeliveryTarget {
                account_id: c.id,
                mailbox: "Archive/2026".into(),
                flags: vec!["\\Seen".into()],
            },
        ],
        queue: vec![NewQueueItem {
            sender: "a@example.test".into(),
            recipients: vec![QueueRecipient::new("x@remote.test")],
            envid: None,
            ret: None,
            next_attempt: 0,
        }],
        meta: None,
        text: None,
    };
    let out = s.deliver(&d).await.unwrap();
    assert_eq!(out.iter().map(|d| d.uid).collect::<Vec<_>>(), [1, 1]);
    assert_eq!(s.list_queue().await.unwrap().len(), 1);
    assert_eq!(
        s.get_account_by_id(a.id).await.unwrap().unwrap().used_bytes,
        100
    );
    let st = s.mailbox_status(c.id).await.unwrap();
    let archive = st.iter().find(|m| m.name == "Archive/2026").unwrap();
    assert_eq!(
        (archive.messages, archive.unseen, archive.bytes),
        (1, 0, 100)
    );
    let inbox = inbox_status(&s, a.id).await;
    assert_eq!((inbox.messages, inbox.unseen), (1, 1));
    // A delivery that fails part-way (unknown account) leaves nothing behind.
    let mut bad = d.clone();
    bad.targets.push(DeliveryTarget {
        account_id: 999_999,
        mailbox: "INBOX".into(),
        flags: vec![],
    });
    assert!(s.deliver(&bad).await.is_err());
    assert_eq!(s.list_queue().await.unwrap().len(), 1);
    assert_eq!(inbox_status(&s, a.id).await.messages, 1);
    assert_eq!(
        s.get_account_by_id(a.id).await.unwrap().unwrap().used_bytes,
        100
    );
    // The writer goes on after the rollback, and the failed delivery took no UID.
    let out = s.deliver(&d).await.unwrap();
    assert_eq!(out.iter().map(|d| d.uid).collect::<Vec<_>>(), [2, 2]);
}

async fn queue_claims_are_exclusive(b: TestStore) {
    let s = open_store(&b).await;
    for i in 0..50 {
        s.enqueue(
            &format!("blob{i}"),
            10,
            &NewQueueItem {
                sender: "a@example.test".into(),
                recipients: vec![QueueRecipient::new("x@remote.test")],
                envid: Some("E1".into()),
                ret: Some("HDRS".into()),
                next_attempt: 100,
            },
        )
        .await
        .unwrap();
    }
    assert!(
        s.claim_queue("n1", 99, 60, 10).await.unwrap().is_empty(),
        "not due yet"
    );
    // Four claimers at once: every item claimed exactly once.
    let mut tasks = Vec::new();
    for n in 0..4 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let batch = s.claim_queue(&format!("n{n}"), 100, 60, 3).await.unwrap();
                if batch.is_empty() {
                    break got;
                }
                got.extend(batch.into_iter().map(|i| i.id));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!((before, all.len()), (50, 50));
    // Leased items come back only after the lease expires, to whoever claims then.
    assert!(s.claim_queue("n9", 159, 60, 100).await.unwrap().is_empty());
    let again = s.claim_queue("n9", 161, 60, 100).await.unwrap();
    assert_eq!(again.len(), 50);
    assert_eq!(again[0].attempts, 2);
    assert_eq!(again[0].envid.as_deref(), Some("E1"));
    // The old holder's outcome is refused; the new holder's is taken.
    let id = again[0].id;
    assert!(matches!(
        s.finish_queue_item(id, "n0", &QueueOutcome::Done, None)
            .await,
        Err(StoreError::LeaseLost(_))
    ));
    let mut r = again[0].recipients.clone();
    r[0].last_error = Some("451 try later".into());
    s.finish_queue_item(
        id,
        "n9",
        &QueueOutcome::Retry {
            recipients: r,
            next_attempt: 500,
            last_error: Some("451".into()),
            warned: true,
        },
        None,
    )
    .await
    .unwrap();
    let item = s.get_queue_item(id).await.unwrap().unwrap();
    assert!(item.warned && item.lease_holder.is_none() && item.next_attempt == 500);
    assert_eq!(
        item.recipients[0].last_error.as_deref(),
        Some("451 try later")
    );
    s.finish_queue_item(again[1].id, "n9", &QueueOutcome::Done, None)
        .await
        .unwrap();
    assert!(s.get_queue_item(again[1].id).await.unwrap().is_none());
    assert!(s.retry_queue_item(id).await.unwrap());
    assert!(s.delete_queue_item(id).await.unwrap());
    assert!(!s.delete_queue_item(id).await.unwrap());
}

async fn queue_leases_are_renewed_by_their_holder_only(b: TestStore) {
    let s = open_store(&b).await;
    let item = NewQueueItem {
        sender: "a@example.test".into(),
        recipients: vec![QueueRecipient::new("x@remote.test")],
        envid: None,
        ret: None,
        next_attempt: 100,
    };
    let id = s.enqueue("blob-r1", 10, &item).await.unwrap();
    let other = s.enqueue("blob-r2", 10, &item).await.unwrap();
    let got = s.claim_queue("n1", 100, 60, 1).await.unwrap();
    assert_eq!(got.iter().map(|i| i.id).collect::<Vec<_>>(), [id]);
    assert_eq!(got[0].lease_until, Some(160));

    // The holder renews: past the first expiry the item stays with it.
    assert!(s.renew_queue_lease(id, "n1", 220).await.unwrap());
    let taken = s.claim_queue("n2", 170, 60, 10).await.unwrap();
    assert_eq!(
        taken.iter().map(|i| i.id).collect::<Vec<_>>(),
        [other],
        "a renewed item is not claimed by another node"
    );
    let held = s.get_queue_item(id).await.unwrap().unwrap();
    assert_eq!(
        (
            held.lease_holder.as_deref(),
            held.lease_until,
            held.attempts
        ),
        (Some("n1"), Some(220), 1)
    );

    // A stranger cannot renew, and its try changes nothing.
    assert!(!s.renew_queue_lease(id, "n2", 400).await.unwrap());
    let held = s.get_queue_item(id).await.unwrap().unwrap();
    assert_eq!(
        (held.lease_holder.as_deref(), held.lease_until),
        (Some("n1"), Some(220))
    );

    // Once the renewed lease runs out another node claims the item; the old holder's renewal
    // is then refused, like its outcome, and the new holder's is taken.
    let again = s.claim_queue("n2", 221, 60, 10).await.unwrap();
    assert_eq!(again.iter().map(|i| i.id).collect::<Vec<_>>(), [id]);
    assert!(!s.renew_queue_lease(id, "n1", 300).await.unwrap());
    let held = s.get_queue_item(id).await.unwrap().unwrap();
    assert_eq!(
        (held.lease_holder.as_deref(), held.lease_until),
        (Some("n2"), Some(281))
    );
    assert!(matches!(
        s.finish_queue_item(id, "n1", &QueueOutcome::Done, None)
            .await,
        Err(StoreError::LeaseLost(_))
    ));
    assert!(s.renew_queue_lease(id, "n2", 300).await.unwrap());
    assert_eq!(
        s.get_queue_item(id).await.unwrap().unwrap().lease_until,
        Some(300)
    );

    // A finished item has no lease left to renew: gone, or put back for a later retry.
    s.finish_queue_item(id, "n2", &QueueOutcome::Done, None)
        .await
        .unwrap();
    assert!(!s.renew_queue_lease(id, "n2", 400).await.unwrap());
    s.finish_queue_item(
        other,
        "n2",
        &QueueOutcome::Retry {
            recipients: taken[0].recipients.clone(),
            next_attempt: 500,
            last_error: None,
            warned: false,
        },
        None,
    )
    .await
    .unwrap();
    assert!(!s.renew_queue_lease(other, "n2", 400).await.unwrap());
    assert!(!s.renew_queue_lease(9999, "n2", 400).await.unwrap());
}

/// Stale lease cleanup, a master job's write: made only while its fence holds (same holder,
/// same token, unexpired); refused with `Fenced`, writing nothing, for a holder whose lease was
/// taken over or ran out.
async fn a_fenced_write_from_a_stale_holder_writes_nothing(b: TestStore) {
    let s = open_store(&b).await;
    // A POP3 maildrop lease of a node that died long ago, and a queue item it held.
    s.acquire_lease("pop3:7", "dead", 10, 30)
        .await
        .unwrap()
        .unwrap();
    let item = s
        .enqueue(
            "blob-q",
            10,
            &NewQueueItem {
                sender: "a@example.test".into(),
                recipients: vec![QueueRecipient::new("x@remote.test")],
                envid: None,
                ret: None,
                next_attempt: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(s.claim_queue("dead", 10, 30, 10).await.unwrap().len(), 1);
    // n1 is master from 100 to 110 with token 1; n2 takes over once it expired.
    let l1 = s
        .acquire_lease("master", "n1", 100, 10)
        .await
        .unwrap()
        .unwrap();
    let old = Fence {
        lease: "master".into(),
        holder: "n1".into(),
        token: l1.token,
    };
    s.check_fence(&old, 105).await.unwrap();
    let l2 = s
        .acquire_lease("master", "n2", 111, 10)
        .await
        .unwrap()
        .unwrap();
    assert!(l2.token > l1.token);
    let new = Fence {
        lease: "master".into(),
        holder: "n2".into(),
        token: l2.token,
    };

    // The old master, paused past its lease, wakes up believing it is 105.
    let refused = s.delete_stale_leases(&old, 105, 90).await.unwrap_err();
    assert!(
        matches!(&refused, StoreError::Fenced { holder, token, .. } if holder == "n1" && *token == l1.token),
        "{refused:?}"
    );
    assert!(matches!(
        s.check_fence(&old, 105).await,
        Err(StoreError::Fenced { .. })
    ));
    assert!(
        s.get_lease("pop3:7").await.unwrap().is_some(),
        "nothing deleted"
    );
    let held = s.get_queue_item(item).await.unwrap().unwrap();
    assert_eq!(held.lease_until, Some(40), "nothing cleared");
    // The right holder with a wrong token, and the right token once the lease ran out: refused.
    let wrong_token = Fence {
        token: l2.token + 1,
        ..new.clone()
    };
    assert!(matches!(
        s.delete_stale_leases(&wrong_token, 112, 90).await,
        Err(StoreError::Fenced { .. })
    ));
    assert!(matches!(
        s.delete_stale_leases(&new, 122, 90).await,
        Err(StoreError::Fenced { .. })
    ));
    assert!(s.get_lease("pop3:7").await.unwrap().is_some());

    // The master of now: the dead node's leases go, its own stays.
    let gone = s.delete_stale_leases(&new, 112, 90).await.unwrap();
    assert_eq!(
        gone,
        StaleLeases {
            leases: 1,
            queue_leases: 1
        }
    );
    assert!(s.get_lease("pop3:7").await.unwrap().is_none());
    assert_eq!(s.get_lease("master").await.unwrap().unwrap().holder, "n2");
    let item_now = s.get_queue_item(item).await.unwrap().unwrap();
    assert_eq!(item_now.lease_until, None);
    // A lease that expired recently stays.
    s.acquire_lease("pop3:8", "n3", 100, 5)
        .await
        .unwrap()
        .unwrap();
    let gone = s.delete_stale_leases(&new, 112, 90).await.unwrap();
    assert_eq!(gone, StaleLeases::default());
    assert!(s.get_lease("pop3:8").await.unwrap().is_some());
}

/// The lifetime sweep's claim: items created before the cut that no live lease holds, due or
/// not; never one a live lease holds; nothing for a stale fence.
async fn expired_queue_items_are_claimed_for_the_master_only(b: TestStore) {
    let s = open_store(&b).await;
    let item = |next_attempt| NewQueueItem {
        sender: "a@example.test".into(),
        recipients: vec![QueueRecipient::new("x@remote.test")],
        envid: None,
        ret: None,
        next_attempt,
    };
    // `t`: before every item was created; the cuts below are an hour either side of it.
    let t = now();
    // Not due for a long time; held by a live worker; due.
    let later = s.enqueue("b1", 10, &item(t + 86_400)).await.unwrap();
    let held = s.enqueue("b2", 10, &item(t)).await.unwrap();
    let due = s.enqueue("b3", 10, &item(t)).await.unwrap();
    let claimed = s.claim_queue("worker", t, 600, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    s.release_queue_leases("worker").await.unwrap();
    assert_eq!(
        s.claim_queue("worker", t, 600, 1).await.unwrap()[0].id,
        held
    );
    let lease = s
        .acquire_lease("master", "n1", t, 60)
        .await
        .unwrap()
        .unwrap();
    let fence = Fence {
        lease: "master".into(),
        holder: "n1".into(),
        token: lease.token,
    };
    let stale = Fence {
        holder: "n0".into(),
        ..fence.clone()
    };
    assert!(matches!(
        s.claim_expired_queue(&stale, "sweep", t, 300, t + 3600, 10)
            .await,
        Err(StoreError::Fenced { .. })
    ));
    assert_eq!(
        s.get_queue_item(later).await.unwrap().unwrap().lease_holder,
        None
    );
    // Nothing was created before an hour ago.
    assert!(
        s.claim_expired_queue(&fence, "sweep", t, 300, t - 3600, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let swept = s
        .claim_expired_queue(&fence, "sweep", t, 300, t + 3600, 10)
        .await
        .unwrap();
    assert_eq!(
        swept.iter().map(|i| i.id).collect::<Vec<_>>(),
        [later, due],
        "never the item a live lease holds"
    );
    assert!(
        swept
            .iter()
            .all(|i| i.lease_holder.as_deref() == Some("sweep"))
    );
    assert_eq!(
        s.get_queue_item(held)
            .await
            .unwrap()
            .unwrap()
            .lease_holder
            .as_deref(),
        Some("worker")
    );
    // Claimed: a second sweep (or a worker) gets them no more while the lease runs.
    assert!(
        s.claim_expired_queue(&fence, "sweep2", t, 300, t + 3600, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn leases_have_fencing_tokens(b: TestStore) {
    let s = open_store(&b).await;
    let l1 = s
        .acquire_lease("master", "n1", 100, 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(l1.token, 1);
    assert!(
        s.acquire_lease("master", "n2", 105, 10)
            .await
            .unwrap()
            .is_none()
    );
    let renewed = s
        .acquire_lease("master", "n1", 105, 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((renewed.token, renewed.expires), (1, 115));
    let l2 = s
        .acquire_lease("master", "n2", 116, 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((l2.holder.as_str(), l2.token), ("n2", 2));
    // Many nodes racing for a free lease: exactly one wins.
    let mut tasks = Vec::new();
    for n in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.acquire_lease("race", &format!("n{n}"), 1000, 10)
                .await
                .unwrap()
                .is_some()
        }));
    }
    let mut winners = 0;
    for t in tasks {
        winners += t.await.unwrap() as usize;
    }
    assert_eq!(winners, 1);
    s.heartbeat(&NodeInfo {
        server_id: "n1".into(),
        hostname: "h1".into(),
        info: serde_json::json!({"connections": 3}),
        started: 1,
        last_seen: 2,
    })
    .await
    .unwrap();
    let nodes = s.list_nodes().await.unwrap();
    assert_eq!(nodes[0].info["connections"], 3);
}

async fn settings_have_versions(b: TestStore) {
    let s = open_store(&b).await;
    assert_eq!(s.settings_version().await.unwrap(), 0);
    let a = s.set_setting("smtp.max_recipients", "100").await.unwrap();
    let b2 = s.set_setting("smtp.max_message_size", "10M").await.unwrap();
    assert!(b2.version > a.version);
    let v = s.settings_version().await.unwrap();
    assert!(s.delete_setting("smtp.max_message_size").await.unwrap());
    assert!(
        s.settings_version().await.unwrap() > v,
        "a delete is a change too"
    );
    assert_eq!(
        s.get_setting("smtp.max_recipients")
            .await
            .unwrap()
            .unwrap()
            .value,
        "100"
    );
    assert_eq!(s.list_settings().await.unwrap().len(), 1);
}

async fn schema_newer_than_binary_is_refused(b: TestStore) {
    let s = open_store(&b).await;
    drop(s);
    // Pretend a newer binary migrated the store.
    let bump = "INSERT INTO schema_migrations (version, applied) VALUES (999, 0)";
    if b.url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(&b.url).await.unwrap();
        sqlx::query(bump).execute(&pool).await.unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(&b.url).await.unwrap();
        sqlx::query(bump).execute(&pool).await.unwrap();
        pool.close().await;
    }
    let err = mailfleet_store::open(&b.url).await.err().unwrap();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found: 999, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("newer than this binary"));
}

async fn db_blobs_and_gc(b: TestStore) {
    let s = open_store(&b).await;
    let blobs = open_blobs("db", s.clone()).unwrap();
    let used = blobs.put(b"kept").await.unwrap();
    let orphan = blobs.put(b"orphan").await.unwrap();
    assert_eq!(blobs.get(&used).await.unwrap(), b"kept");
    s.add_domain("example.test").await.unwrap();
    let a = s
        .create_account(&new_account("a@example.test"))
        .await
        .unwrap();
    let inbox = s.get_mailbox(a.id, "INBOX").await.unwrap().unwrap();
    s.append(inbox.id, &used, 4, 0, &[], Some("meta-k"))
        .await
        .unwrap();
    // An expunged message does not keep its blob, nor the blob's metadata.
    s.append(inbox.id, &orphan, 6, 0, &[], Some("meta-o"))
        .await
        .unwrap();
    assert_eq!(s.expunge(inbox.id, &[2]).await.unwrap(), 1);
    // Within the grace period nothing is collected.
    assert_eq!(
        blob::collect_garbage(s.as_ref(), blobs.as_ref(), now(), 3600)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        blob::collect_garbage(s.as_ref(), blobs.as_ref(), now() + 10, 0)
            .await
            .unwrap(),
        1
    );
    assert!(blobs.get(&orphan).await.is_err());
    assert_eq!(blobs.get(&used).await.unwrap(), b"kept");
    assert_eq!(s.message_meta(&orphan).await.unwrap(), None);
    assert_eq!(
        s.message_meta(&used).await.unwrap().as_deref(),
        Some("meta-k")
    );
}

/// `fs:` with `blobs_inline_max`: small messages go to the store in the delivery's own
/// transaction, larger ones to files; reads, listing and collection see both, also through a
/// tool that opens `fs:PATH` alone.
async fn small_blobs_inline_with_fs_blobs(b: TestStore) {
    let s = open_store(&b).await;
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("fs:{}", dir.path().join("blobs").display());
    let node = mailfleet_store::open_node_blobs(&spec, s.clone(), "n1", 100).unwrap();
    let small = vec![b's'; 100];
    let large = vec![b'L'; 101];
    assert!(node.written_through_store(small.len()));
    assert!(!node.written_through_store(large.len()));
    s.add_domain("example.test").await.unwrap();
    let a = s
        .create_account(&new_account("a@example.test"))
        .await
        .unwrap();
    // A small delivery's blob row is committed with its message row.
    let small_id = blob::blob_id(&small);
    let delivery = Delivery {
        blob_id: small_id.clone(),
        size: small.len() as i64,
        internal_date: now(),
        targets: vec![DeliveryTarget {
            account_id: a.id,
            mailbox: "INBOX".into(),
            flags: vec![],
        }],
        queue: vec![],
        meta: None,
        text: None,
    };
    s.deliver_with_bytes(&delivery, &small).await.unwrap();
    assert_eq!(s.blob_get(&small_id).await.unwrap(), Some(small.clone()));
    let large_id = node.put(&large).await.unwrap();
    let orphan_id = node.put(b"orphan").await.unwrap();
    assert!(
        s.blob_get(&large_id).await.unwrap().is_none(),
        "a file, not a row"
    );
    assert!(
        dir.path()
            .join("blobs")
            .join(&large_id[0..2])
            .join(&large_id[2..4])
            .join(&large_id)
            .exists()
    );
    let tool = open_blobs(&spec, s.clone()).unwrap();
    for blobs in [&node, &tool] {
        assert_eq!(blobs.get(&small_id).await.unwrap(), small);
        assert_eq!(blobs.get(&large_id).await.unwrap(), large);
        let mut listed: Vec<String> = blobs
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        listed.sort();
        let mut expected = vec![small_id.clone(), large_id.clone(), orphan_id.clone()];
        expected.sort();
        assert_eq!(listed, expected);
    }
    // Only the unused large file and the unused small row go.
    assert_eq!(
        blob::collect_garbage(s.as_ref(), tool.as_ref(), now() + 10, 0)
            .await
            .unwrap(),
        2
    );
    assert_eq!(node.get(&small_id).await.unwrap(), small);
    assert!(node.get(&large_id).await.is_err());
    assert!(node.get(&orphan_id).await.is_err());
}

#[tokio::test]
async fn fs_blobs_gc_keeps_used_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let s = mailfleet_store::open(&sqlite_url(dir.path()))
        .await
        .unwrap();
    let blobs = open_blobs(
        &format!("fs:{}", dir.path().join("blobs").display()),
        s.clone(),
    )
    .unwrap();
    let used = blobs.put(b"used").await.unwrap();
    let queued = blobs.put(b"queued").await.unwrap();
    let orphan = blobs.put(b"orphan").await.unwrap();
    s.add_domain("example.test").await.unwrap();
    let a = s
        .create_account(&new_account("a@example.test"))
        .await
        .unwrap();
    let inbox = s.get_mailbox(a.id, "INBOX").await.unwrap().unwrap();
    s.append(inbox.id, &used, 4, 0, &[], None).await.unwrap();
    s.enqueue(
        &queued,
        6,
        &NewQueueItem {
            sender: String::new(),
            recipients: vec![],
            envid: None,
            ret: None,
            next_attempt: 0,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        blob::collect_garbage(s.as_ref(), blobs.as_ref(), now() + 10, 0)
            .await
            .unwrap(),
        1
    );
    assert!(blobs.get(&orphan).await.is_err());
    assert!(blobs.get(&used).await.is_ok() && blobs.get(&queued).await.is_ok());
}

#[tokio::test]
async fn unreachable_postgres_names_url_without_password() {
    let port = mailfleet_test_support::free_port();
    let url = format!("postgres://mf:s3cret@127.0.0.1:{port}/mail");
    let err = mailfleet_store::open(&url).await.err().unwrap().to_string();
    assert!(
        err.contains("cannot reach the store at postgres://mf:***@127.0.0.1"),
        "{err}"
    );
    assert!(!err.contains("s3cret"));
}

/// Concurrent writes share commits on SQLite (group commit); a bad one must not sink the others.
async fn a_failing_write_among_concurrent_ones_fails_alone(b: TestStore) {
    let s = open_store(&b).await;
    let mailbox = setup_mailbox(&s).await;
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            // Every tenth write names a mailbox that does not exist.
            let target = if i % 10 == 0 { 999_999 } else { mailbox };
            (i, s.append(target, &format!("b{i}"), 1, 0, &[], None).await)
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let (i, r) = t.await.unwrap();
        match r {
            Ok(_) => ok += 1,
            Err(e) => assert!(i % 10 == 0, "write {i} failed: {e}"),
        }
    }
    assert_eq!(ok, 180);
    let msgs = s.list_messages(mailbox, 1, u32::MAX).await.unwrap();
    assert_eq!(msgs.len(), 180);
    assert_eq!(
        msgs.last().unwrap().uid,
        180,
        "no UID was taken by a failed write"
    );
}

fn delivery_to(account_id: i64, blob_id: &str) -> Delivery {
    Delivery {
        blob_id: blob_id.into(),
        size: 10,
        internal_date: 1,
        targets: vec![DeliveryTarget {
            account_id,
            mailbox: "INBOX".into(),
            flags: vec![],
        }],
        queue: vec![],
        meta: None,
        text: None,
    }
}

/// `deliver_with_blob`: nothing is visible, or durable, before the blob write has finished,
/// for a small message (rows prepared meanwhile on SQLite) and a large one (blob first).
async fn rows_wait_for_their_blob(b: TestStore) {
    let s = open_store(&b).await;
    let mailbox = setup_mailbox(&s).await;
    let account = s.get_account("a@example.test").await.unwrap().unwrap();
    for (n, size) in [(1usize, 10i64), (2, 4 << 20)] {
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let writer = {
            let s = s.clone();
            tokio::spawn(async move {
                let mut d = delivery_to(account.id, &format!("slow{n}"));
                d.size = size;
                let blob: BlobWrite<'_> = Box::pin(async move {
                    released.await.ok();
                    Ok(())
                });
                s.deliver_with_blob(&d, blob).await
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(
            s.list_messages(mailbox, 1, u32::MAX).await.unwrap().len(),
            n - 1,
            "a row of {size} bytes is visible before its blob is written"
        );
        release.send(()).unwrap();
        let out = writer.await.unwrap().unwrap();
        assert_eq!(out[0].uid as usize, n);
        assert_eq!(
            s.list_messages(mailbox, 1, u32::MAX).await.unwrap().len(),
            n
        );
    }
}

/// Among concurrent deliveries, one whose blob write fails gets that error and leaves no row;
/// the others are committed with dense UIDs.
async fn a_failed_blob_sinks_only_its_own_delivery(b: TestStore) {
    let s = open_store(&b).await;
    let mailbox = setup_mailbox(&s).await;
    let account = s.get_account("a@example.test").await.unwrap().unwrap();
    let mut tasks = Vec::new();
    for i in 0..60u64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let d = delivery_to(account.id, &format!("b{i}"));
            let blob: BlobWrite<'_> = Box::pin(async move {
                tokio::time::sleep(std::time::Duration::from_millis(i % 7)).await;
                if i % 10 == 3 {
                    Err(StoreError::Invalid(format!("disk full for b{i}")))
                } else {
                    Ok(())
                }
            });
            (i, s.deliver_with_blob(&d, blob).await)
        }));
    }
    for t in tasks {
        let (i, r) = t.await.unwrap();
        match r {
            Ok(_) => assert_ne!(i % 10, 3, "delivery {i} committed without its blob"),
            Err(e) => {
                assert_eq!(i % 10, 3, "delivery {i} failed: {e}");
                assert!(e.to_string().contains(&format!("b{i}")), "{e}");
            }
        }
    }
    let msgs = s.list_messages(mailbox, 1, u32::MAX).await.unwrap();
    assert_eq!(msgs.len(), 54);
    assert!(msgs.iter().all(|m| !m.blob_id.ends_with('3')));
    assert_eq!(
        msgs.last().unwrap().uid,
        54,
        "no UID was taken by a failed delivery"
    );
    assert_eq!(
        s.get_account_by_id(account.id)
            .await
            .unwrap()
            .unwrap()
            .used_bytes,
        540
    );
}

/// `deliver_with_bytes` (blobs kept in the database): blob row and message rows commit together.
async fn blob_bytes_share_the_delivery_transaction(b: TestStore) {
    let s = open_store(&b).await;
    let mailbox = setup_mailbox(&s).await;
    let account = s.get_account("a@example.test").await.unwrap().unwrap();
    let bytes = b"Subject: kept in the store\r\n\r\nhi\r\n";
    let id = blob::blob_id(bytes);
    let out = s
        .deliver_with_bytes(&delivery_to(account.id, &id), bytes)
        .await
        .unwrap();
    assert_eq!(out[0].uid, 1);
    assert_eq!(s.blob_get(&id).await.unwrap().unwrap(), bytes);
    // The same bytes again: one blob row, two messages.
    s.deliver_with_bytes(&delivery_to(account.id, &id), bytes)
        .await
        .unwrap();
    assert_eq!(s.blob_list().await.unwrap().len(), 1);
    // A delivery that fails leaves no blob behind either.
    let other = b"never stored";
    let mut bad = delivery_to(account.id, &blob::blob_id(other));
    bad.targets[0].account_id = 999_999;
    assert!(s.deliver_with_bytes(&bad, other).await.is_err());
    assert!(s.blob_get(&blob::blob_id(other)).await.unwrap().is_none());
    assert_eq!(
        s.list_messages(mailbox, 1, u32::MAX).await.unwrap().len(),
        2
    );
}

/// Two handles on one store stand for two nodes: what one counts, the other sees.
async fn rate_events_and_login_failures_are_shared_by_nodes(b: TestStore) {
    let n1 = open_store(&b).await;
    let n2 = mailfleet_store::open(&b.url).await.unwrap();
    let ev = |k: &str, bucket: i64, n: i64| (k.to_string(), bucket, n);
    n1.add_rate_events(&[ev("a@x.test", 100, 2), ev("b@x.test", 100, 1)])
        .await
        .unwrap();
    n2.add_rate_events(&[ev("a@x.test", 100, 3), ev("a@x.test", 101, 4)])
        .await
        .unwrap();
    n2.add_rate_events(&[]).await.unwrap();
    assert_eq!(n1.rate_events_since("a@x.test", 100).await.unwrap(), 9);
    assert_eq!(n2.rate_events_since("a@x.test", 101).await.unwrap(), 4);
    assert_eq!(n2.rate_events_since("b@x.test", 90).await.unwrap(), 1);
    assert_eq!(n1.rate_events_since("nobody@x.test", 0).await.unwrap(), 0);
    assert_eq!(n1.prune_rate_events(101).await.unwrap(), 2);
    assert_eq!(n2.rate_events_since("a@x.test", 0).await.unwrap(), 4);

    // Failures from one address count across nodes while each follows the last within the
    // window (60 s here).
    let ip = "192.0.2.7";
    assert_eq!(n1.auth_failed(ip, 1000, 60).await.unwrap(), 1);
    assert_eq!(n2.auth_failed(ip, 1030, 60).await.unwrap(), 2);
    assert_eq!(n1.auth_failed(ip, 1089, 60).await.unwrap(), 3);
    assert_eq!(n2.auth_failures(ip, 1100, 60).await.unwrap(), 3);
    assert_eq!(n2.auth_failures(ip, 1148, 60).await.unwrap(), 3);
    assert_eq!(n2.auth_failures(ip, 1149, 60).await.unwrap(), 0, "expired");
    // After a quiet window the count starts again.
    assert_eq!(n1.auth_failed(ip, 1200, 60).await.unwrap(), 1);
    assert_eq!(n1.auth_failures("192.0.2.8", 1200, 60).await.unwrap(), 0);
    n2.clear_auth_failures(ip).await.unwrap();
    assert_eq!(n1.auth_failures(ip, 1200, 60).await.unwrap(), 0);
}

/// Expunged messages leave the listing, share one new MODSEQ, and hand their bytes back.
async fn expunge_leaves_tombstones_and_gives_bytes_back(b: TestStore) {
    let s = open_store(&b).await;
    s.add_domain("example.test").await.unwrap();
    let a = s
        .create_account(&new_account("a@example.test"))
        .await
        .unwrap();
    let inbox = s.get_mailbox(a.id, "INBOX").await.unwrap().unwrap();
    for (i, size) in [100, 200, 300].into_iter().enumerate() {
        let uid = s
            .append(inbox.id, &format!("blob{i}"), size, 1, &[], None)
            .await
            .unwrap();
        assert_eq!(uid, i as u32 + 1);
    }
    let before = s.get_mailbox(a.id, "INBOX").await.unwrap().unwrap();
    assert_eq!(
        s.get_account_by_id(a.id).await.unwrap().unwrap().used_bytes,
        600
    );
    assert_eq!(s.expunge(inbox.id, &[1, 3, 99]).await.unwrap(), 2);
    let left = s.list_messages(inbox.id, 1, u32::MAX).await.unwrap();
    assert_eq!(left.iter().map(|m| m.uid).collect::<Vec<_>>(), [2]);
    assert_eq!(
        s.get_account_by_id(a.id).await.unwrap().unwrap().used_bytes,
        200
    );
    let after = s.get_mailbox(a.id, "INBOX").await.unwrap().unwrap();
    assert_eq!(after.highestmodseq, before.highestmodseq + 1);
    // Again: nothing to do, nothing changes.
    assert_eq!(s.expunge(inbox.id, &[1, 3]).await.unwrap(), 0);
    assert_eq!(s.expunge(inbox.id, &[]).await.unwrap(), 0);
    let again = s.get_mailbox(a.id, "INBOX").await.unwrap().unwrap();
    assert_eq!(again.highestmodseq, after.highestmodseq);
    assert_eq!(
        s.get_account_by_id(a.id).await.unwrap().unwrap().used_bytes,
        200
    );
    // The blobs of tombstones are no longer in use; the live one is.
    let ids: Vec<String> = (0..3).map(|i| format!("blob{i}")).collect();
    let mut used = s.blobs_in_use(&ids).await.unwrap();
    used.sort();
    assert_eq!(used, ["blob1"]);
}

async fn the_store_names_its_backend(b: TestStore) {
    let s = open_store(&b).await;
    let expected = if b.is_sqlite() { "sqlite" } else { "postgres" };
    assert_eq!(s.backend(), expected);
}

/// `clock_ms`: PostgreSQL's clock, which on this machine is the test's own (within the round
/// trip and a second of rounding); SQLite has none of its own.
async fn the_database_server_tells_its_clock(b: TestStore) {
    let s = open_store(&b).await;
    let local = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    match s.clock_ms().await.unwrap() {
        None => assert!(b.is_sqlite()),
        Some(ms) => {
            assert!(!b.is_sqlite());
            assert!((ms - local).abs() < 2000, "server {ms}, local {local}");
        }
    }
}

/// Forty attempts from one address at once, over two handles (two nodes): exactly `max` are
/// reserved, whatever the interleaving; a good login gives its reservation back.
async fn login_attempts_are_reserved_atomically(b: TestStore) {
    let n1 = open_store(&b).await;
    let n2 = mailfleet_store::open(&b.url).await.unwrap();
    let ip = "192.0.2.40";
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = if i % 2 == 0 { n1.clone() } else { n2.clone() };
        tasks.push(tokio::spawn(async move {
            s.auth_attempt(ip, 1000, 60, 5).await.unwrap()
        }));
    }
    let mut reserved: Vec<i64> = Vec::new();
    for t in tasks {
        if let Some(n) = t.await.unwrap() {
            reserved.push(n);
        }
    }
    reserved.sort();
    assert_eq!(reserved, vec![1, 2, 3, 4, 5]);
    assert_eq!(n1.auth_failures(ip, 1001, 60).await.unwrap(), 5);
    // Refused attempts wrote nothing: the lockout runs from the last reserved one.
    assert_eq!(n1.auth_attempt(ip, 1059, 60, 5).await.unwrap(), None);
    assert_eq!(n1.auth_failures(ip, 1060, 60).await.unwrap(), 0);
    // A good login hands its reservation back; earlier failures stay.
    assert_eq!(n2.auth_attempt(ip, 1061, 60, 5).await.unwrap(), Some(1));
    n2.auth_attempt_succeeded(ip).await.unwrap();
    assert_eq!(n1.auth_failures(ip, 1062, 60).await.unwrap(), 0);
    assert_eq!(n1.auth_attempt(ip, 1062, 60, 2).await.unwrap(), Some(1));
    assert_eq!(n1.auth_attempt(ip, 1063, 60, 2).await.unwrap(), Some(2));
    assert_eq!(n1.auth_attempt(ip, 1064, 60, 2).await.unwrap(), None);
    n1.auth_attempt_succeeded(ip).await.unwrap();
    assert_eq!(n2.auth_attempt(ip, 1065, 60, 2).await.unwrap(), Some(2));
    // Nothing to take back: no row, or a count already at zero.
    n1.auth_attempt_succeeded("192.0.2.41").await.unwrap();
    assert_eq!(n1.auth_failures("192.0.2.41", 1065, 60).await.unwrap(), 0);
}

/// A store made by a binary that knew only schema version 1 gets version 2 on open.
/// Runs statements on the store's database directly, outside the store.
async fn run_sql(b: &TestStore, statements: &[&str]) {
    if b.url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(&b.url).await.unwrap();
        for q in statements {
            sqlx::query(q).execute(&pool).await.unwrap();
        }
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(&b.url).await.unwrap();
        for q in statements {
            sqlx::query(q).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }
}

/// Takes a store's schema back from version 4 to version 3.
const UNDO_V4: &[&str] = &[
    "DROP TABLE subscriptions",
    "ALTER TABLE mailboxes DROP COLUMN recent_from",
    "DELETE FROM schema_migrations WHERE version = 4",
];

/// Takes a store's schema back from version 8 to version 7.
const UNDO_V8: &[&str] = &[
    "DROP INDEX messages_tombstones",
    "ALTER TABLE messages DROP COLUMN expunged_at",
    "ALTER TABLE mailboxes DROP COLUMN purged_modseq",
    "DELETE FROM schema_migrations WHERE version = 8",
];

/// Takes a store's schema back from version 7 to version 6.
const UNDO_V7: &[&str] = &[
    "DROP TABLE node_drains",
    "DROP TABLE balancer_servers",
    "DELETE FROM schema_migrations WHERE version = 7",
];

/// Takes a store's schema back from version 6 to version 5.
const UNDO_V6: &[&str] = &[
    "ALTER TABLE leases DROP COLUMN acquired",
    "DELETE FROM schema_migrations WHERE version = 6",
];

/// Takes a store's schema back from version 5 to version 4.
const UNDO_V5: &[&str] = &[
    "DROP TABLE IF EXISTS message_text_fts",
    "DROP TABLE message_text",
    "DELETE FROM schema_migrations WHERE version = 5",
];

/// Takes a store's schema back from version 3 to version 2.
const UNDO_V3: &[&str] = &[
    "DROP TABLE mailbox_keywords",
    "DROP TABLE message_meta",
    "ALTER TABLE messages DROP COLUMN system_flags",
    "ALTER TABLE messages DROP COLUMN keywords",
    "ALTER TABLE messages ADD COLUMN flags TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE mailboxes DROP COLUMN messages",
    "ALTER TABLE mailboxes DROP COLUMN unseen",
    "ALTER TABLE mailboxes DROP COLUMN deleted",
    "ALTER TABLE mailboxes DROP COLUMN bytes",
    "DELETE FROM counters WHERE name = 'uidvalidity'",
    "DELETE FROM schema_migrations WHERE version = 3",
];

async fn a_version_1_store_is_migrated(b: TestStore) {
    let s = open_store(&b).await;
    drop(s);
    run_sql(&b, UNDO_V8).await;
    run_sql(&b, UNDO_V7).await;
    run_sql(&b, UNDO_V6).await;
    run_sql(&b, UNDO_V5).await;
    run_sql(&b, UNDO_V4).await;
    run_sql(&b, UNDO_V3).await;
    run_sql(
        &b,
        &[
            "DROP TABLE rate_events",
            "DROP TABLE auth_failures",
            "DELETE FROM schema_migrations WHERE version = 2",
        ],
    )
    .await;
    let s = mailfleet_store::open(&b.url).await.unwrap();
    s.add_rate_events(&[("k".into(), 1, 1)]).await.unwrap();
    assert_eq!(s.auth_failed("192.0.2.1", 10, 60).await.unwrap(), 1);
}

/// A delivery status notification is queued in the outcome's transaction: a holder whose
/// lease passed on queues none, the new holder queues exactly one.
async fn a_notice_is_queued_only_with_the_outcome(b: TestStore) {
    let s = open_store(&b).await;
    let item = NewQueueItem {
        sender: "someone@remote.test".into(),
        recipients: vec![QueueRecipient::new("gone@remote.test")],
        envid: None,
        ret: None,
        next_attempt: 100,
    };
    s.blob_put(&"a".repeat(64), b"message").await.unwrap();
    s.blob_put(&"b".repeat(64), b"notice").await.unwrap();
    let id = s.enqueue(&"a".repeat(64), 7, &item).await.unwrap();
    let notice = QueuedMessage {
        blob_id: "b".repeat(64),
        size: 6,
        item: NewQueueItem {
            sender: String::new(),
            recipients: vec![QueueRecipient::new("someone@remote.test")],
            envid: None,
            ret: None,
            next_attempt: 200,
        },
    };
    assert_eq!(s.claim_queue("n1", 100, 60, 10).await.unwrap().len(), 1);
    // n1's lease runs out and n2 takes the item over.
    assert_eq!(s.claim_queue("n2", 161, 60, 10).await.unwrap().len(), 1);
    assert!(matches!(
        s.finish_queue_item(id, "n1", &QueueOutcome::Done, Some(&notice))
            .await,
        Err(StoreError::LeaseLost(_))
    ));
    assert_eq!(s.list_queue().await.unwrap().len(), 1, "n1 queued a notice");
    let dsn = s
        .finish_queue_item(id, "n2", &QueueOutcome::Done, Some(&notice))
        .await
        .unwrap()
        .unwrap();
    let queue = s.list_queue().await.unwrap();
    assert_eq!(queue.len(), 1);
    assert_eq!((queue[0].id, queue[0].sender.as_str()), (dsn, ""));
    assert_eq!(queue[0].blob_id, "b".repeat(64));
    assert_eq!(queue[0].next_attempt, 200);
}

/// A v2 store's text flags become system flag bits and keywords, its mailboxes get their
/// counters, and UIDVALIDITY goes on above every value in use.
async fn a_version_2_store_is_migrated(b: TestStore) {
    let s = open_store(&b).await;
    s.add_domain("example.test").await.unwrap();
    let a = s
        .create_account(&new_account("a@example.test"))
        .await
        .unwrap();
    let inbox = s.get_mailbox(a.id, "INBOX").await.unwrap().unwrap();
    drop(s);
    run_sql(&b, UNDO_V8).await;
    run_sql(&b, UNDO_V7).await;
    run_sql(&b, UNDO_V6).await;
    run_sql(&b, UNDO_V5).await;
    run_sql(&b, UNDO_V4).await;
    run_sql(&b, UNDO_V3).await;
    let id = inbox.id;
    let rows = [
        format!("UPDATE mailboxes SET uidvalidity = 3000000000, uidnext = 5 WHERE id = {id}"),
        format!(
            "INSERT INTO messages (mailbox_id, uid, modseq, flags, internal_date, size, blob_id, \
             expunged) VALUES ({id}, 1, 2, '\\Seen $Junk', 1, 10, 'b1', FALSE), \
             ({id}, 2, 3, '\\Deleted \\flagged Work $junk', 1, 20, 'b2', FALSE), \
             ({id}, 3, 4, '', 1, 30, 'b3', FALSE), ({id}, 4, 5, '\\Seen Gone', 1, 40, 'b4', TRUE)"
        ),
    ];
    run_sql(&b, &rows.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let s = mailfleet_store::open(&b.url).await.unwrap();
    let msgs = s.list_messages(id, 1, u32::MAX).await.unwrap();
    let flags: Vec<Vec<String>> = msgs.iter().map(|m| m.flags.clone()).collect();
    assert_eq!(
        flags,
        [
            vec!["\\Seen".to_string(), "$Junk".into()],
            vec![
                "\\Flagged".into(),
                "\\Deleted".into(),
                "Work".into(),
                "$junk".into()
            ],
            vec![],
        ]
    );
    let st = inbox_status(&s, a.id).await;
    assert_eq!(
        (st.messages, st.unseen, st.deleted, st.bytes),
        (3, 2, 1, 60)
    );
    assert_eq!(
        s.mailbox_keywords(id).await.unwrap(),
        ["$Junk", "Gone", "Work"]
    );
    let new = s.create_mailbox(a.id, "Later", None).await.unwrap();
    assert!(new.uidvalidity > 3_000_000_000, "{}", new.uidvalidity);
    // Delivery after the migration keeps the counters.
    let out = s.deliver(&delivery_to(a.id, "b5")).await.unwrap();
    assert_eq!(out[0].uid, 5);
    let st = s.mailbox_status(a.id).await.unwrap();
    let inbox = st.iter().find(|m| m.name == "INBOX").unwrap();
    assert_eq!((inbox.messages, inbox.unseen, inbox.bytes), (4, 3, 60 + 10));
}

/// Flags are kept as system flag bits and keywords, the mailbox's counters follow every
/// write, metadata is kept once per blob, and UIDVALIDITY only grows.
async fn flags_counters_keywords_and_meta_are_kept(b: TestStore) {
    let s = open_store(&b).await;
    s.add_domain("example.test").await.unwrap();
    let a = s
        .create_account(&new_account("a@example.test"))
        .await
        .unwrap();
    let mut d = delivery_to(a.id, "m1");
    d.targets[0].flags = vec!["$Label1".into(), "\\seen".into(), "\\Recent".into()];
    d.meta = Some("{\"v\":1}".into());
    let mailbox = s.deliver(&d).await.unwrap()[0].mailbox_id;
    s.append(
        mailbox,
        "m2",
        5,
        1,
        &["\\Deleted".into(), "\\Draft".into(), "$label1".into()],
        Some("{\"v\":2}"),
    )
    .await
    .unwrap();
    // A copy of m1 keeps m1's metadata.
    s.append(mailbox, "m1", 10, 1, &[], Some("other"))
        .await
        .unwrap();
    let msgs = s.list_messages(mailbox, 1, u32::MAX).await.unwrap();
    assert_eq!(msgs[0].flags, ["\\Seen", "$Label1"]);
    assert_eq!(msgs[1].flags, ["\\Deleted", "\\Draft", "$label1"]);
    assert!(msgs[2].flags.is_empty());
    assert_eq!(s.mailbox_keywords(mailbox).await.unwrap(), ["$Label1"]);
    assert_eq!(
        s.message_meta("m1").await.unwrap().as_deref(),
        Some("{\"v\":1}")
    );
    assert_eq!(
        s.message_meta("m2").await.unwrap().as_deref(),
        Some("{\"v\":2}")
    );
    assert_eq!(s.message_meta("m3").await.unwrap(), None);
    let status = |s: Arc<dyn Store>| async move {
        let st = inbox_status(&s, a.id).await;
        (st.messages, st.unseen, st.deleted, st.bytes)
    };
    assert_eq!(status(s.clone()).await, (3, 2, 1, 25));
    assert_eq!(s.expunge(mailbox, &[2, 3]).await.unwrap(), 2);
    assert_eq!(status(s.clone()).await, (1, 0, 0, 10));
    // UIDVALIDITY: a counter, so mailboxes made in one second still differ and grow.
    let mut last = s
        .get_mailbox(a.id, "INBOX")
        .await
        .unwrap()
        .unwrap()
        .uidvalidity;
    for i in 0..3 {
        let m = s
            .create_mailbox(a.id, &format!("Box{i}"), None)
            .await
            .unwrap();
        assert!(m.uidvalidity > last, "{} after {last}", m.uidvalidity);
        last = m.uidvalidity;
    }
}

async fn flags_of(s: &Arc<dyn Store>, mailbox: i64) -> Vec<(u32, Vec<String>, i64)> {
    s.list_messages(mailbox, 1, u32::MAX)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.uid, m.flags, m.modseq))
        .collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A flag change takes one new MODSEQ for every message it changes, refuses messages changed
/// after UNCHANGEDSINCE, keeps the counters, and shows in `changes_since` with expunges.
async fn set_flags_takes_one_modseq_and_keeps_counters(b: TestStore) {
    let s = open_store(&b).await;
    s.add_domain("example.test").await.unwrap();
    let a = s
        .create_account(&new_account("a@example.test"))
        .await
        .unwrap();
    let mut mailbox = 0;
    for i in 0..3 {
        mailbox = s
            .deliver(&delivery_to(a.id, &format!("m{i}")))
            .await
            .unwrap()[0]
            .mailbox_id;
    }
    let highest = |s: Arc<dyn Store>| async move {
        s.get_mailbox(a.id, "INBOX")
            .await
            .unwrap()
            .unwrap()
            .highestmodseq
    };
    let counts = |s: Arc<dyn Store>| async move {
        let st = inbox_status(&s, a.id).await;
        (st.messages, st.unseen, st.deleted)
    };
    assert_eq!(highest(s.clone()).await, 4);
    let out = s
        .set_flags(
            mailbox,
            &[2, 1, 9],
            FlagOp::Add,
            &strings(&["\\Seen", "Work"]),
            None,
        )
        .await
        .unwrap();
    assert!(out.modified.is_empty());
    assert_eq!(
        out.changed,
        [1, 2]
            .map(|uid| FlagChange {
                uid,
                flags: strings(&["\\Seen", "Work"]),
                modseq: 5
            })
            .to_vec()
    );
    assert_eq!(highest(s.clone()).await, 5);
    assert_eq!(counts(s.clone()).await, (3, 1, 0));
    // No change: no new MODSEQ.
    let out = s
        .set_flags(
            mailbox,
            &[1],
            FlagOp::Add,
            &strings(&["\\seen", "work"]),
            None,
        )
        .await
        .unwrap();
    assert_eq!(out, FlagOutcome::default());
    assert_eq!(highest(s.clone()).await, 5);
    // UNCHANGEDSINCE 4: message 1 (MODSEQ 5) is refused, message 3 (MODSEQ 4) changes.
    let out = s
        .set_flags(
            mailbox,
            &[1, 3],
            FlagOp::Replace,
            &strings(&["\\Deleted"]),
            Some(4),
        )
        .await
        .unwrap();
    assert_eq!(out.modified, [1]);
    assert_eq!(
        out.changed,
        [FlagChange {
            uid: 3,
            flags: strings(&["\\Deleted"]),
            modseq: 6
        }]
    );
    assert_eq!(counts(s.clone()).await, (3, 1, 1));
    let out = s
        .set_flags(
            mailbox,
            &[2],
            FlagOp::Remove,
            &strings(&["\\SEEN", "WORK"]),
            None,
        )
        .await
        .unwrap();
    assert_eq!(out.changed[0].flags, Vec::<String>::new());
    assert_eq!(out.changed[0].modseq, 7);
    assert_eq!(counts(s.clone()).await, (3, 2, 1));
    assert_eq!(
        flags_of(&s, mailbox).await,
        [
            (1, strings(&["\\Seen", "Work"]), 5),
            (2, vec![], 7),
            (3, strings(&["\\Deleted"]), 6)
        ]
    );
    assert_eq!(s.expunge(mailbox, &[3]).await.unwrap(), 1);
    assert_eq!(counts(s.clone()).await, (2, 1, 0));
    let changes = s.changes_since(mailbox, 5).await.unwrap();
    assert_eq!(
        changes,
        Changes {
            changed: vec![FlagChange {
                uid: 2,
                flags: vec![],
                modseq: 7
            }],
            expunged: vec![3],
            highest: 8,
            purged_up_to: 0,
        }
    );
    let all = s.changes_since(mailbox, 0).await.unwrap();
    assert_eq!(
        all.changed.iter().map(|c| c.uid).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(all.expunged, [3]);
    assert!(
        s.changes_since(mailbox, 8)
            .await
            .unwrap()
            .changed
            .is_empty()
    );
    assert_eq!(s.mailbox_keywords(mailbox).await.unwrap(), ["Work"]);
    assert!(matches!(
        s.set_flags(mailbox + 1000, &[1], FlagOp::Add, &[], None)
            .await,
        Err(StoreError::MailboxNotFound(_))
    ));
}

/// Flag changes from many tasks at once leave the counters equal to the messages' flags, and
/// each change that changed something took its own MODSEQ.
async fn concurrent_flag_changes_keep_counters(b: TestStore) {
    let s = open_store(&b).await;
    s.add_domain("example.test").await.unwrap();
    let a = s
        .create_account(&new_account("a@example.test"))
        .await
        .unwrap();
    let mut mailbox = 0;
    for i in 0..20 {
        mailbox = s
            .deliver(&delivery_to(a.id, &format!("m{i}")))
            .await
            .unwrap()[0]
            .mailbox_id;
    }
    let uids: Vec<u32> = (1..=20).collect();
    let mut tasks = Vec::new();
    for w in 0..8u32 {
        let s = s.clone();
        let uids = uids.clone();
        tasks.push(tokio::spawn(async move {
            let mut changes = 0;
            for i in 0..10u32 {
                let op = if (w + i) % 2 == 0 {
                    FlagOp::Add
                } else {
                    FlagOp::Remove
                };
                let flag = if w % 3 == 0 { "\\Deleted" } else { "\\Seen" };
                let part: Vec<u32> = uids
                    .iter()
                    .copied()
                    .filter(|u| (u + w + i) % 3 != 0)
                    .collect();
                let out = s
                    .set_flags(mailbox, &part, op, &strings(&[flag]), None)
                    .await
                    .unwrap();
                changes += usize::from(!out.changed.is_empty());
            }
            changes
        }));
    }
    let mut changes = 0;
    for t in tasks {
        changes += t.await.unwrap();
    }
    let msgs = s.list_messages(mailbox, 1, u32::MAX).await.unwrap();
    let unseen = msgs
        .iter()
        .filter(|m| !m.flags.iter().any(|f| f == "\\Seen"))
        .count();
    let deleted = msgs
        .iter()
        .filter(|m| m.flags.iter().any(|f| f == "\\Deleted"))
        .count();
    let st = inbox_status(&s, a.id).await;
    assert_eq!((st.unseen, st.deleted), (unseen as i64, deleted as i64));
    let highest = s
        .get_mailbox(a.id, "INBOX")
        .await
        .unwrap()
        .unwrap()
        .highestmodseq;
    assert_eq!(highest, 21 + changes as i64);
}

/// 20 appends at once into a quota with room for 7 of them: exactly 7 succeed, the others are
/// refused with OverQuota and write nothing; a delivery that no longer fits writes nothing
/// either, not even its queue part.
async fn the_quota_is_checked_inside_the_transaction(b: TestStore) {
    let s = open_store(&b).await;
    s.add_domain("example.test").await.unwrap();
    let mut acc = new_account("a@example.test");
    acc.quota_bytes = 75;
    let a = s.create_account(&acc).await.unwrap();
    let inbox = s.get_mailbox(a.id, "INBOX").await.unwrap().unwrap().id;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.append(inbox, &format!("m{i}"), 10, 1, &[], None).await
        }));
    }
    let (mut ok, mut over) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::OverQuota(id)) if id == a.id => over += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((ok, over), (7, 13));
    assert_eq!(
        s.get_account_by_id(a.id).await.unwrap().unwrap().used_bytes,
        70
    );
    let st = inbox_status(&s, a.id).await;
    assert_eq!((st.messages, st.bytes, st.uidnext), (7, 70, 8));
    // 5 more bytes fit, 6 do not; a refused delivery queues nothing.
    let mut d = delivery_to(a.id, "big");
    d.size = 6;
    d.queue = vec![NewQueueItem {
        sender: "a@example.test".into(),
        recipients: vec![QueueRecipient::new("x@remote.test")],
        envid: None,
        ret: None,
        next_attempt: 0,
    }];
    assert!(matches!(s.deliver(&d).await, Err(StoreError::OverQuota(_))));
    assert!(s.list_queue().await.unwrap().is_empty());
    d.size = 5;
    assert_eq!(s.deliver(&d).await.unwrap()[0].uid, 8);
    assert_eq!(
        s.get_account_by_id(a.id).await.unwrap().unwrap().used_bytes,
        75
    );
}

/// Deliveries naming the same two accounts in opposite orders, many at once: each locks the
/// mailboxes and then the accounts in ascending id order, so none waits for another in a
/// cycle (PostgreSQL would abort one with "deadlock detected"), and every one succeeds.
async fn deliveries_naming_accounts_in_opposite_orders_do_not_deadlock(b: TestStore) {
    let s = open_store(&b).await;
    s.add_domain("example.test").await.unwrap();
    let a = s
        .create_account(&new_account("a@example.test"))
        .await
        .unwrap();
    let c = s
        .create_account(&new_account("c@example.test"))
        .await
        .unwrap();
    let ia = s.get_mailbox(a.id, "INBOX").await.unwrap().unwrap().id;
    let ic = s.get_mailbox(c.id, "INBOX").await.unwrap().unwrap().id;
    let mut tasks = Vec::new();
    for w in 0..8 {
        let s = s.clone();
        let (first, second, boxes) = if w % 2 == 0 {
            (a.id, c.id, [ia, ic])
        } else {
            (c.id, a.id, [ic, ia])
        };
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let mut d = delivery_to(first, &format!("w{w}-{i}"));
                d.targets.push(DeliveryTarget {
                    account_id: second,
                    mailbox: "INBOX".into(),
                    flags: vec![],
                });
                let out = s.deliver(&d).await.unwrap();
                // The answer follows the order of the targets.
                assert_eq!(out.iter().map(|d| d.mailbox_id).collect::<Vec<_>>(), boxes);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for id in [a.id, c.id] {
        let inbox = s.get_mailbox(id, "INBOX").await.unwrap().unwrap();
        let uids: Vec<u32> = s
            .list_messages(inbox.id, 1, u32::MAX)
            .await
            .unwrap()
            .iter()
            .map(|m| m.uid)
            .collect();
        assert_eq!(uids, (1..=200).collect::<Vec<u32>>());
        let acc = s.get_account_by_id(id).await.unwrap().unwrap();
        assert_eq!(acc.used_bytes, 2000);
    }
}

/// Removing an account while deliveries to it (and to another account) run: the removal
/// locks the mailboxes before the account, as the deliveries do, so the two never wait for each
/// other in a cycle. Deliveries after the removal fail as the account is gone, never as a
/// deadlock; the other account's bytes match its messages.
async fn removing_an_account_while_it_gets_mail_does_not_deadlock(b: TestStore) {
    let s = open_store(&b).await;
    s.add_domain("example.test").await.unwrap();
    let c = s
        .create_account(&new_account("c@example.test"))
        .await
        .unwrap();
    for round in 0..6 {
        let address = format!("gone{round}@example.test");
        let a = s.create_account(&new_account(&address)).await.unwrap();
        let mut tasks = Vec::new();
        for w in 0..4 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..10 {
                    let mut d = delivery_to(c.id, &format!("r{round}-w{w}-{i}"));
                    d.targets.push(DeliveryTarget {
                        account_id: a.id,
                        mailbox: "INBOX".into(),
                        flags: vec![],
                    });
                    if let Err(e) = s.deliver(&d).await {
                        assert!(!e.to_string().contains("deadlock"), "{e}");
                    }
                }
            }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        s.remove_account(&address).await.unwrap();
        for t in tasks {
            t.await.unwrap();
        }
        assert!(s.get_account(&address).await.unwrap().is_none());
    }
    let inbox = s.get_mailbox(c.id, "INBOX").await.unwrap().unwrap();
    let count = s.list_messages(inbox.id, 1, u32::MAX).await.unwrap().len() as i64;
    let acc = s.get_account_by_id(c.id).await.unwrap().unwrap();
    assert_eq!(acc.used_bytes, count * 10);
}

// ---- The calls an IMAP server needs ----

/// A domain and accounts `a@` (quota `quota_a`) and `b@example.test`.
async fn two_accounts(s: &Arc<dyn Store>, quota_a: i64) -> (Account, Account) {
    s.add_domain("example.test").await.unwrap();
    let mut a = new_account("a@example.test");
    a.quota_bytes = quota_a;
    let a = s.create_account(&a).await.unwrap();
    let b = s
        .create_account(&new_account("b@example.test"))
        .await
        .unwrap();
    (a, b)
}

async fn mailbox_id(s: &Arc<dyn Store>, account_id: i64, name: &str) -> i64 {
    s.get_mailbox(account_id, name).await.unwrap().unwrap().id
}

async fn used_bytes(s: &Arc<dyn Store>, account_id: i64) -> i64 {
    s.get_account_by_id(account_id)
        .await
        .unwrap()
        .unwrap()
        .used_bytes
}

fn new_message(blob_id: &str, size: i64, flags: &[&str]) -> NewMessage {
    NewMessage {
        blob_id: blob_id.into(),
        size,
        internal_date: 1_700_000_000 + size,
        flags: strings(flags),
        meta: None,
    }
}

/// COPY: each message still there gets the destination's next UID with its blob, flags,
/// keywords, date and size; one new MODSEQ for the destination; COPYUID pairs in source UID
/// order; the account's used bytes grow; the source is left as it was.
async fn copy_keeps_messages_and_counts_them(b: TestStore) {
    let s = open_store(&b).await;
    let (a, _) = two_accounts(&s, 0).await;
    let inbox = mailbox_id(&s, a.id, "INBOX").await;
    let archive = mailbox_id(&s, a.id, "Archive").await;
    let uids = s
        .append_many(
            inbox,
            &[
                new_message("c1", 10, &["\\Seen", "Work"]),
                new_message("c2", 20, &["\\Deleted", "$Label1"]),
                new_message("c3", 30, &[]),
                new_message("c4", 40, &["\\Flagged"]),
            ],
        )
        .await
        .unwrap();
    assert_eq!(uids, [1, 2, 3, 4]);
    s.expunge(inbox, &[3]).await.unwrap();
    // Something already in the destination: copies take the UIDs after it.
    s.append(archive, "old", 5, 1, &[], None).await.unwrap();
    let source_before = s.status_of(inbox).await.unwrap();
    let before = s.status_of(archive).await.unwrap();
    assert_eq!(used_bytes(&s, a.id).await, 75);
    // Unordered, with an expunged UID (3) and one never there (9).
    let pairs = s
        .copy_messages(inbox, &[4, 9, 1, 3, 2], archive, false)
        .await
        .unwrap();
    assert_eq!(pairs, [(1, 2), (2, 3), (4, 4)]);
    let copied = s.list_messages(archive, 2, u32::MAX).await.unwrap();
    let got: Vec<(u32, &str, i64, i64, Vec<String>)> = copied
        .iter()
        .map(|m| {
            (
                m.uid,
                m.blob_id.as_str(),
                m.size,
                m.internal_date,
                m.flags.clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (2, "c1", 10, 1_700_000_010, strings(&["\\Seen", "Work"])),
            (
                3,
                "c2",
                20,
                1_700_000_020,
                strings(&["\\Deleted", "$Label1"])
            ),
            (4, "c4", 40, 1_700_000_040, strings(&["\\Flagged"])),
        ]
    );
    let after = s.status_of(archive).await.unwrap();
    assert_eq!(after.highestmodseq, before.highestmodseq + 1);
    assert!(copied.iter().all(|m| m.modseq == after.highestmodseq));
    assert_eq!(
        (
            after.messages,
            after.unseen,
            after.deleted,
            after.bytes,
            after.uidnext
        ),
        (4, 3, 1, 75, 5)
    );
    assert_eq!(
        s.mailbox_keywords(archive).await.unwrap(),
        ["$Label1", "Work"]
    );
    assert_eq!(s.status_of(inbox).await.unwrap(), source_before);
    assert_eq!(used_bytes(&s, a.id).await, 75 + 70);
    // The copies are new to a CONDSTORE client of the destination.
    let changes = s
        .changes_since(archive, before.highestmodseq)
        .await
        .unwrap();
    assert_eq!(
        changes.changed.iter().map(|c| c.uid).collect::<Vec<_>>(),
        [2, 3, 4]
    );
    // COPY within one mailbox.
    let pairs = s.copy_messages(inbox, &[1], inbox, false).await.unwrap();
    assert_eq!(pairs, [(1, 5)]);
    let st = s.status_of(inbox).await.unwrap();
    assert_eq!((st.messages, st.uidnext, st.bytes), (4, 6, 80));
    assert_eq!(
        s.list_messages(inbox, 5, 5).await.unwrap()[0].flags,
        strings(&["\\Seen", "Work"])
    );
    // Nothing to copy: nothing written, no new MODSEQ; unknown mailboxes are errors.
    let st = s.status_of(archive).await.unwrap();
    assert!(
        s.copy_messages(inbox, &[3, 99], archive, false)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.copy_messages(inbox, &[], archive, true)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.status_of(archive).await.unwrap(), st);
    assert!(matches!(
        s.copy_messages(inbox, &[1], 999_999, false).await,
        Err(StoreError::MailboxNotFound(_))
    ));
    assert!(matches!(
        s.copy_messages(999_999, &[1], inbox, false).await,
        Err(StoreError::MailboxNotFound(_))
    ));
}

/// A COPY that would take the destination account over its quota writes nothing.
async fn copy_over_quota_writes_nothing(b: TestStore) {
    let s = open_store(&b).await;
    let (a, other) = two_accounts(&s, 100).await;
    let inbox = mailbox_id(&s, a.id, "INBOX").await;
    let trash = mailbox_id(&s, a.id, "Trash").await;
    s.append_many(
        inbox,
        &[new_message("q1", 30, &["k1"]), new_message("q2", 30, &[])],
    )
    .await
    .unwrap();
    let boxes_before = s.mailbox_status(a.id).await.unwrap();
    assert!(matches!(
        s.copy_messages(inbox, &[1, 2], trash, false).await,
        Err(StoreError::OverQuota(id)) if id == a.id
    ));
    assert_eq!(s.mailbox_status(a.id).await.unwrap(), boxes_before);
    assert!(
        s.list_messages(trash, 1, u32::MAX)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.mailbox_keywords(trash).await.unwrap().is_empty());
    assert_eq!(used_bytes(&s, a.id).await, 60);
    // One fits.
    assert_eq!(
        s.copy_messages(inbox, &[2], trash, false).await.unwrap(),
        [(2, 1)]
    );
    assert_eq!(used_bytes(&s, a.id).await, 90);
    // A MOVE within the account changes nothing, even at the quota's edge.
    let junk = mailbox_id(&s, a.id, "Junk").await;
    assert_eq!(
        s.copy_messages(inbox, &[1, 2], junk, true).await.unwrap(),
        [(1, 1), (2, 2)]
    );
    assert_eq!(used_bytes(&s, a.id).await, 90);
    // Into another account: that account's quota and used bytes.
    let upd = AccountUpdate {
        quota_bytes: Some(50),
        ..Default::default()
    };
    s.update_account("b@example.test", &upd).await.unwrap();
    let b_inbox = mailbox_id(&s, other.id, "INBOX").await;
    let before = s.status_of(junk).await.unwrap();
    assert!(matches!(
        s.copy_messages(junk, &[1, 2], b_inbox, true).await,
        Err(StoreError::OverQuota(id)) if id == other.id
    ));
    assert_eq!(
        s.status_of(junk).await.unwrap(),
        before,
        "the MOVE left no tombstone"
    );
    assert_eq!(s.list_messages(junk, 1, u32::MAX).await.unwrap().len(), 2);
    assert_eq!(
        s.copy_messages(junk, &[1], b_inbox, true).await.unwrap(),
        [(1, 1)]
    );
    assert_eq!(used_bytes(&s, other.id).await, 30);
    assert_eq!(used_bytes(&s, a.id).await, 60);
}

/// MOVE: copies as COPY does, then expunges the sources with one new MODSEQ of the source,
/// whose tombstones `changes_since` reports; counters and used bytes follow.
async fn move_leaves_tombstones(b: TestStore) {
    let s = open_store(&b).await;
    let (a, _) = two_accounts(&s, 0).await;
    let inbox = mailbox_id(&s, a.id, "INBOX").await;
    let sent = mailbox_id(&s, a.id, "Sent").await;
    s.append_many(
        inbox,
        &[
            new_message("m1", 10, &[]),
            new_message("m2", 20, &["\\Seen", "\\Deleted"]),
            new_message("m3", 30, &["Kw"]),
        ],
    )
    .await
    .unwrap();
    let src_before = s.status_of(inbox).await.unwrap();
    let dst_before = s.status_of(sent).await.unwrap();
    let pairs = s
        .copy_messages(inbox, &[2, 3, 7], sent, true)
        .await
        .unwrap();
    assert_eq!(pairs, [(2, 1), (3, 2)]);
    let src = s.status_of(inbox).await.unwrap();
    let dst = s.status_of(sent).await.unwrap();
    assert_eq!(src.highestmodseq, src_before.highestmodseq + 1);
    assert_eq!(dst.highestmodseq, dst_before.highestmodseq + 1);
    assert_eq!(
        (src.messages, src.unseen, src.deleted, src.bytes),
        (1, 1, 0, 10)
    );
    assert_eq!(
        (dst.messages, dst.unseen, dst.deleted, dst.bytes),
        (2, 1, 1, 50)
    );
    assert_eq!(used_bytes(&s, a.id).await, 60, "a move within an account");
    let changes = s
        .changes_since(inbox, src_before.highestmodseq)
        .await
        .unwrap();
    assert_eq!(changes.expunged, [2, 3]);
    assert!(changes.changed.is_empty());
    let left = s.list_messages(inbox, 1, u32::MAX).await.unwrap();
    assert_eq!(left.iter().map(|m| m.uid).collect::<Vec<_>>(), [1]);
    let moved = s.list_messages(sent, 1, u32::MAX).await.unwrap();
    assert_eq!(
        moved
            .iter()
            .map(|m| (m.blob_id.as_str(), m.flags.clone()))
            .collect::<Vec<_>>(),
        [
            ("m2", strings(&["\\Seen", "\\Deleted"])),
            ("m3", strings(&["Kw"]))
        ]
    );
    // Moved again: nothing left to move.
    assert!(
        s.copy_messages(inbox, &[2, 3], sent, true)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.status_of(inbox).await.unwrap(), src);
    // The blobs are still in use by the moved copies.
    let mut used = s.blobs_in_use(&strings(&["m1", "m2", "m3"])).await.unwrap();
    used.sort();
    assert_eq!(used, ["m1", "m2", "m3"]);
}

/// MULTIAPPEND: all or nothing, UIDs in order, the quota checked once for the total.
async fn append_many_is_all_or_nothing(b: TestStore) {
    let s = open_store(&b).await;
    let (a, _) = two_accounts(&s, 100).await;
    let drafts = mailbox_id(&s, a.id, "Drafts").await;
    let before = s.status_of(drafts).await.unwrap();
    let mut with_meta = new_message("x1", 10, &["\\Draft", "Todo"]);
    with_meta.meta = Some("{\"x\":1}".into());
    let uids = s
        .append_many(
            drafts,
            &[
                with_meta,
                new_message("x2", 20, &[]),
                new_message("x3", 30, &[]),
            ],
        )
        .await
        .unwrap();
    assert_eq!(uids, [1, 2, 3]);
    let st = s.status_of(drafts).await.unwrap();
    assert_eq!(
        (st.messages, st.unseen, st.bytes, st.uidnext),
        (3, 3, 60, 4)
    );
    assert_eq!(st.highestmodseq, before.highestmodseq + 3);
    assert_eq!(used_bytes(&s, a.id).await, 60);
    assert_eq!(s.mailbox_keywords(drafts).await.unwrap(), ["Todo"]);
    assert_eq!(
        s.message_meta("x1").await.unwrap().as_deref(),
        Some("{\"x\":1}")
    );
    // 20 + 21 bytes: each would fit alone, not together. Nothing is written.
    let mut meta = new_message("y1", 20, &["New"]);
    meta.meta = Some("{}".into());
    assert!(matches!(
        s.append_many(drafts, &[meta, new_message("y2", 21, &[])]).await,
        Err(StoreError::OverQuota(id)) if id == a.id
    ));
    assert_eq!(s.status_of(drafts).await.unwrap(), st);
    assert_eq!(used_bytes(&s, a.id).await, 60);
    assert_eq!(s.mailbox_keywords(drafts).await.unwrap(), ["Todo"]);
    assert_eq!(s.message_meta("y1").await.unwrap(), None);
    assert_eq!(s.list_messages(drafts, 1, u32::MAX).await.unwrap().len(), 3);
    // The next append takes UID 4: the refused ones took none.
    assert_eq!(s.append(drafts, "y3", 40, 1, &[], None).await.unwrap(), 4);
    assert!(s.append_many(drafts, &[]).await.unwrap().is_empty());
    assert!(matches!(
        s.append_many(999_999, &[new_message("z", 1, &[])]).await,
        Err(StoreError::MailboxNotFound(_))
    ));
}

/// RENAME: the mailbox and its children (not a sibling sharing the prefix) keep their ids,
/// UIDVALIDITY and messages; subscriptions follow the renamed names.
async fn rename_moves_children_and_subscriptions(b: TestStore) {
    let s = open_store(&b).await;
    let (a, _) = two_accounts(&s, 0).await;
    for name in ["Work", "Work/2025", "Work/2025/Q1", "Workshop", "Other"] {
        s.create_mailbox(a.id, name, None).await.unwrap();
    }
    s.subscribe(a.id, "Work").await.unwrap();
    s.subscribe(a.id, "Work/2025/Q1").await.unwrap();
    s.subscribe(a.id, "Workshop").await.unwrap();
    let work = s.get_mailbox(a.id, "Work").await.unwrap().unwrap();
    let q1 = s.get_mailbox(a.id, "Work/2025/Q1").await.unwrap().unwrap();
    s.append(q1.id, "r1", 10, 1, &strings(&["\\Seen"]), None)
        .await
        .unwrap();
    s.rename_mailbox(a.id, "Work", "Jobs/Old").await.unwrap();
    let names: Vec<String> = s
        .list_mailboxes(a.id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    for gone in ["Work", "Work/2025", "Work/2025/Q1"] {
        assert!(!names.iter().any(|n| n == gone), "{gone} in {names:?}");
    }
    for there in ["Jobs/Old", "Jobs/Old/2025", "Jobs/Old/2025/Q1", "Workshop"] {
        assert!(names.iter().any(|n| n == there), "{there} not in {names:?}");
    }
    let renamed = s.get_mailbox(a.id, "Jobs/Old").await.unwrap().unwrap();
    assert_eq!(
        (renamed.id, renamed.uidvalidity, renamed.subscribed),
        (work.id, work.uidvalidity, true)
    );
    let q1_now = s
        .get_mailbox(a.id, "Jobs/Old/2025/Q1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((q1_now.id, q1_now.uidvalidity), (q1.id, q1.uidvalidity));
    assert_eq!(s.list_messages(q1.id, 1, u32::MAX).await.unwrap().len(), 1);
    let subs = s.subscriptions(a.id).await.unwrap();
    assert!(subs.contains(&"Jobs/Old".to_string()), "{subs:?}");
    assert!(subs.contains(&"Jobs/Old/2025/Q1".to_string()), "{subs:?}");
    assert!(subs.contains(&"Workshop".to_string()), "{subs:?}");
    assert!(!subs.iter().any(|n| n.starts_with("Work/") || n == "Work"));
    assert!(
        !subs.contains(&"Jobs/Old/2025".to_string()),
        "not subscribed before"
    );
    // Errors: nothing to rename; a taken name, for the mailbox or for a child.
    assert!(matches!(
        s.rename_mailbox(a.id, "Work", "X").await,
        Err(StoreError::MailboxNotFound(n)) if n == "Work"
    ));
    assert!(matches!(
        s.rename_mailbox(a.id, "Jobs/Old", "Other").await,
        Err(StoreError::MailboxExists(n)) if n == "Other"
    ));
    s.create_mailbox(a.id, "New/2025", None).await.unwrap();
    assert!(matches!(
        s.rename_mailbox(a.id, "Jobs/Old", "New").await,
        Err(StoreError::MailboxExists(n)) if n == "New"
    ));
    assert!(
        s.get_mailbox(a.id, "New").await.unwrap().is_none(),
        "nothing renamed"
    );
    assert!(
        s.get_mailbox(a.id, "Jobs/Old/2025")
            .await
            .unwrap()
            .is_some()
    );
    assert!(matches!(
        s.rename_mailbox(a.id, "Other", "inbox").await,
        Err(StoreError::MailboxExists(_))
    ));
    // A subscription already held by the new name stays one.
    s.subscribe(a.id, "Gone").await.unwrap();
    s.subscribe(a.id, "Other").await.unwrap();
    s.rename_mailbox(a.id, "Other", "Gone").await.unwrap();
    let subs = s.subscriptions(a.id).await.unwrap();
    assert_eq!(subs.iter().filter(|n| *n == "Gone").count(), 1);
    assert!(!subs.contains(&"Other".to_string()));
}

/// RENAME INBOX (RFC 3501 §6.3.5): a new mailbox with a new UIDVALIDITY takes every INBOX
/// message (UIDs 1..n, flags kept); INBOX stays, empty, and so do its children.
async fn rename_inbox_moves_its_messages(b: TestStore) {
    let s = open_store(&b).await;
    let (a, _) = two_accounts(&s, 0).await;
    let inbox = s.get_mailbox(a.id, "INBOX").await.unwrap().unwrap();
    s.create_mailbox(a.id, "INBOX/Child", None).await.unwrap();
    s.append_many(
        inbox.id,
        &[
            new_message("i1", 10, &["\\Seen"]),
            new_message("i2", 20, &["Kw"]),
            new_message("i3", 30, &[]),
            new_message("i4", 40, &["\\Flagged"]),
        ],
    )
    .await
    .unwrap();
    s.expunge(inbox.id, &[1]).await.unwrap();
    let before = s.status_of(inbox.id).await.unwrap();
    s.rename_mailbox(a.id, "inbox", "Old Mail").await.unwrap();
    let old = s.get_mailbox(a.id, "Old Mail").await.unwrap().unwrap();
    assert_ne!(old.id, inbox.id);
    assert!(old.uidvalidity > inbox.uidvalidity);
    let moved = s.list_messages(old.id, 1, u32::MAX).await.unwrap();
    assert_eq!(
        moved
            .iter()
            .map(|m| (m.uid, m.blob_id.as_str(), m.flags.clone()))
            .collect::<Vec<_>>(),
        [
            (1, "i2", strings(&["Kw"])),
            (2, "i3", vec![]),
            (3, "i4", strings(&["\\Flagged"]))
        ]
    );
    let st = s.status_of(old.id).await.unwrap();
    assert_eq!(
        (st.messages, st.unseen, st.bytes, st.uidnext),
        (3, 3, 90, 4)
    );
    assert_eq!(s.mailbox_keywords(old.id).await.unwrap(), ["Kw"]);
    let inbox_now = s.get_mailbox(a.id, "INBOX").await.unwrap().unwrap();
    assert_eq!(
        (inbox_now.id, inbox_now.uidvalidity),
        (inbox.id, inbox.uidvalidity)
    );
    let st = s.status_of(inbox.id).await.unwrap();
    assert_eq!((st.messages, st.bytes), (0, 0));
    assert!(st.highestmodseq > before.highestmodseq);
    assert_eq!(
        s.changes_since(inbox.id, before.highestmodseq)
            .await
            .unwrap()
            .expunged,
        [2, 3, 4]
    );
    assert!(s.get_mailbox(a.id, "INBOX/Child").await.unwrap().is_some());
    assert!(
        s.get_mailbox(a.id, "Old Mail/Child")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(used_bytes(&s, a.id).await, 90);
    assert!(
        s.subscriptions(a.id)
            .await
            .unwrap()
            .contains(&"INBOX".to_string())
    );
    // An empty INBOX renames too; a taken name is refused.
    s.rename_mailbox(a.id, "INBOX", "Empty").await.unwrap();
    assert_eq!(
        s.status_of(mailbox_id(&s, a.id, "Empty").await)
            .await
            .unwrap()
            .messages,
        0
    );
    assert!(matches!(
        s.rename_mailbox(a.id, "INBOX", "Sent").await,
        Err(StoreError::MailboxExists(n)) if n == "Sent"
    ));
}

/// DELETE: the mailbox and its messages go, the account's used bytes go down, children and
/// subscriptions stay; INBOX cannot be deleted; blobs are no longer in use.
async fn delete_mailbox_gives_bytes_back(b: TestStore) {
    let s = open_store(&b).await;
    let (a, _) = two_accounts(&s, 0).await;
    let proj = s.create_mailbox(a.id, "Proj", None).await.unwrap();
    s.create_mailbox(a.id, "Proj/Sub", None).await.unwrap();
    s.subscribe(a.id, "Proj").await.unwrap();
    let mut meta = new_message("d1", 10, &["Kw"]);
    meta.meta = Some("{}".into());
    s.append_many(
        proj.id,
        &[meta, new_message("d2", 20, &[]), new_message("d3", 30, &[])],
    )
    .await
    .unwrap();
    let inbox = mailbox_id(&s, a.id, "INBOX").await;
    s.append(inbox, "d3", 30, 1, &[], None).await.unwrap();
    s.expunge(proj.id, &[2]).await.unwrap();
    assert_eq!(used_bytes(&s, a.id).await, 70);
    s.delete_mailbox(a.id, "Proj").await.unwrap();
    assert_eq!(used_bytes(&s, a.id).await, 30);
    assert!(s.get_mailbox(a.id, "Proj").await.unwrap().is_none());
    assert!(s.mailbox_by_id(proj.id).await.unwrap().is_none());
    assert!(
        s.list_messages(proj.id, 1, u32::MAX)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.get_mailbox(a.id, "Proj/Sub").await.unwrap().is_some());
    assert!(
        s.subscriptions(a.id)
            .await
            .unwrap()
            .contains(&"Proj".to_string())
    );
    // Only the blob a message still has is in use; the others' metadata can go.
    let mut used = s.blobs_in_use(&strings(&["d1", "d2", "d3"])).await.unwrap();
    used.sort();
    assert_eq!(used, ["d3"]);
    s.forget_meta("d1").await.unwrap();
    assert_eq!(s.message_meta("d1").await.unwrap(), None);
    assert!(matches!(
        s.delete_mailbox(a.id, "Proj").await,
        Err(StoreError::MailboxNotFound(n)) if n == "Proj"
    ));
    for name in ["INBOX", "inbox"] {
        assert!(matches!(
            s.delete_mailbox(a.id, name).await,
            Err(StoreError::Invalid(m)) if m == "INBOX cannot be deleted"
        ));
    }
    // The name can be made again, with a new UIDVALIDITY.
    let again = s.create_mailbox(a.id, "Proj", None).await.unwrap();
    assert!(again.uidvalidity > proj.uidvalidity);
    assert!(again.subscribed, "the subscription stayed");
}

/// Subscriptions are names, whether or not a mailbox has them; both calls are idempotent.
async fn subscriptions_are_independent_of_mailboxes(b: TestStore) {
    let s = open_store(&b).await;
    let (a, other) = two_accounts(&s, 0).await;
    s.subscribe(a.id, "Nowhere/Yet").await.unwrap();
    s.subscribe(a.id, "Nowhere/Yet").await.unwrap();
    s.unsubscribe(a.id, "Junk").await.unwrap();
    s.unsubscribe(a.id, "Junk").await.unwrap();
    s.unsubscribe(a.id, "Never").await.unwrap();
    assert_eq!(
        s.subscriptions(a.id).await.unwrap(),
        ["Archive", "Drafts", "INBOX", "Nowhere/Yet", "Sent", "Trash"]
    );
    assert!(
        !s.get_mailbox(a.id, "Junk")
            .await
            .unwrap()
            .unwrap()
            .subscribed
    );
    let made = s.create_mailbox(a.id, "Nowhere/Yet", None).await.unwrap();
    assert!(made.subscribed);
    assert!(
        !s.create_mailbox(a.id, "Plain", None)
            .await
            .unwrap()
            .subscribed
    );
    s.unsubscribe(a.id, "inbox").await.unwrap();
    assert!(
        !s.subscriptions(a.id)
            .await
            .unwrap()
            .contains(&"INBOX".to_string())
    );
    assert_eq!(s.subscriptions(other.id).await.unwrap().len(), 6);
    assert!(matches!(
        s.subscribe(999_999, "X").await,
        Err(StoreError::AccountNotFound(_))
    ));
    // Removing the account removes its subscriptions.
    s.remove_account("a@example.test").await.unwrap();
    assert!(s.subscriptions(a.id).await.unwrap().is_empty());
}

/// mailbox_by_id, status_of and mailbox_status agree, HIGHESTMODSEQ included.
async fn one_mailbox_by_id_and_its_status(b: TestStore) {
    let s = open_store(&b).await;
    let (a, _) = two_accounts(&s, 0).await;
    let inbox = s.get_mailbox(a.id, "INBOX").await.unwrap().unwrap();
    assert_eq!(
        s.mailbox_by_id(inbox.id).await.unwrap(),
        Some(inbox.clone())
    );
    assert_eq!(s.mailbox_by_id(999_999).await.unwrap(), None);
    s.deliver(&delivery_to(a.id, "s1")).await.unwrap();
    let st = s.status_of(inbox.id).await.unwrap();
    let now = s.mailbox_by_id(inbox.id).await.unwrap().unwrap();
    assert_eq!(
        (
            st.name.as_str(),
            st.messages,
            st.unseen,
            st.uidnext,
            st.bytes
        ),
        ("INBOX", 1, 1, 2, 10)
    );
    assert_eq!(st.uidvalidity, inbox.uidvalidity);
    assert_eq!(st.highestmodseq, now.highestmodseq);
    assert!(now.highestmodseq > inbox.highestmodseq);
    let all = s.mailbox_status(a.id).await.unwrap();
    assert_eq!(all.iter().find(|m| m.name == "INBOX"), Some(&st));
    assert!(matches!(
        s.status_of(999_999).await,
        Err(StoreError::MailboxNotFound(_))
    ));
    // highestmodseq is not in the JSON `mailbox status --json` prints.
    let json = serde_json::to_value(&st).unwrap();
    assert!(json.get("highestmodseq").is_none());
}

/// Paged reads with each blob's metadata; put_message_meta keeps the first metadata.
async fn fetch_messages_pages_with_meta(b: TestStore) {
    let s = open_store(&b).await;
    let (a, _) = two_accounts(&s, 0).await;
    let inbox = mailbox_id(&s, a.id, "INBOX").await;
    let mut messages: Vec<NewMessage> = (1..=7)
        .map(|i| new_message(&format!("f{i}"), i, &[]))
        .collect();
    messages[0].meta = Some("meta1".into());
    messages[3].meta = Some("meta4".into());
    s.append_many(inbox, &messages).await.unwrap();
    s.expunge(inbox, &[2]).await.unwrap();
    let page = s.fetch_messages(inbox, 1, u32::MAX, 3).await.unwrap();
    assert_eq!(
        page.iter()
            .map(|(m, meta)| (m.uid, meta.as_deref()))
            .collect::<Vec<_>>(),
        [(1, Some("meta1")), (2, None), (3, None)]
    );
    assert_eq!(page[0].0.blob_id, "f1");
    assert!(
        page[1].0.expunged && !page[0].0.expunged,
        "tombstones come, marked"
    );
    let next = s.fetch_messages(inbox, 5, 6, 100).await.unwrap();
    assert_eq!(next.iter().map(|(m, _)| m.uid).collect::<Vec<_>>(), [5, 6]);
    assert!(
        s.fetch_messages(inbox, 8, u32::MAX, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.fetch_messages(inbox, 1, u32::MAX, 0)
            .await
            .unwrap()
            .is_empty()
    );
    s.put_message_meta("f3", "meta3").await.unwrap();
    s.put_message_meta("f3", "other").await.unwrap();
    s.put_message_meta("f1", "other").await.unwrap();
    let page = s.fetch_messages(inbox, 1, 3, 10).await.unwrap();
    assert_eq!(
        page.iter()
            .map(|(_, meta)| meta.as_deref())
            .collect::<Vec<_>>(),
        [Some("meta1"), None, Some("meta3")]
    );
}

/// Every write that changes a mailbox's messages raises its HIGHESTMODSEQ, which
/// mailbox_versions reads for many mailboxes at once (more than one chunk of ids).
async fn mailbox_versions_rise_on_each_write(b: TestStore) {
    let s = open_store(&b).await;
    let (a, _) = two_accounts(&s, 0).await;
    let inbox = mailbox_id(&s, a.id, "INBOX").await;
    let trash = mailbox_id(&s, a.id, "Trash").await;
    let version = |id: i64| {
        let s = s.clone();
        async move {
            let v = s.mailbox_versions(&[id]).await.unwrap();
            assert_eq!(v.len(), 1);
            assert_eq!(v[0].0, id);
            v[0].1
        }
    };
    let mut last = version(inbox).await;
    let rose = |last: &mut i64, now: i64, what: &str| {
        assert!(now > *last, "{what}: {now} after {last}");
        *last = now;
    };
    s.deliver(&delivery_to(a.id, "v1")).await.unwrap();
    rose(&mut last, version(inbox).await, "delivery");
    s.append(inbox, "v2", 10, 1, &[], None).await.unwrap();
    rose(&mut last, version(inbox).await, "append");
    s.append_many(inbox, &[new_message("v3", 1, &[])])
        .await
        .unwrap();
    rose(&mut last, version(inbox).await, "multiappend");
    s.set_flags(inbox, &[1], FlagOp::Add, &strings(&["\\Seen"]), None)
        .await
        .unwrap();
    rose(&mut last, version(inbox).await, "set_flags");
    // A flag change that changes nothing leaves it.
    s.set_flags(inbox, &[1], FlagOp::Add, &strings(&["\\Seen"]), None)
        .await
        .unwrap();
    assert_eq!(version(inbox).await, last);
    s.expunge(inbox, &[3]).await.unwrap();
    rose(&mut last, version(inbox).await, "expunge");
    let t0 = version(trash).await;
    s.copy_messages(inbox, &[1], inbox, false).await.unwrap();
    rose(
        &mut last,
        version(inbox).await,
        "copy into the same mailbox",
    );
    s.copy_messages(inbox, &[1], trash, false).await.unwrap();
    let t1 = version(trash).await;
    assert!(t1 > t0, "copy raises the destination");
    s.copy_messages(inbox, &[2], trash, true).await.unwrap();
    assert!(version(trash).await > t1, "move raises the destination");
    rose(&mut last, version(inbox).await, "move raises the source");
    // Many ids at once, across chunks; unknown ids are left out.
    let boxes = s.list_mailboxes(a.id).await.unwrap();
    let mut ids: Vec<i64> = (1_000_000..1_001_200).collect();
    ids.extend(boxes.iter().map(|m| m.id));
    ids.reverse();
    let mut got = s.mailbox_versions(&ids).await.unwrap();
    got.sort();
    let mut want: Vec<(i64, i64)> = boxes.iter().map(|m| (m.id, m.highestmodseq)).collect();
    want.sort();
    assert_eq!(got, want);
    assert!(s.mailbox_versions(&[]).await.unwrap().is_empty());
}

/// A v3 store gets the subscriptions table, holding the mailboxes then marked subscribed.
async fn a_version_3_store_is_migrated(b: TestStore) {
    let s = open_store(&b).await;
    let (a, _) = two_accounts(&s, 0).await;
    s.create_mailbox(a.id, "Kept", None).await.unwrap();
    drop(s);
    run_sql(&b, UNDO_V8).await;
    run_sql(&b, UNDO_V7).await;
    run_sql(&b, UNDO_V6).await;
    run_sql(&b, UNDO_V5).await;
    run_sql(&b, UNDO_V4).await;
    run_sql(
        &b,
        &[
            "UPDATE mailboxes SET subscribed = FALSE WHERE name IN ('Junk', 'Trash')",
            "UPDATE mailboxes SET subscribed = TRUE WHERE name = 'Kept'",
        ],
    )
    .await;
    let s = mailfleet_store::open(&b.url).await.unwrap();
    assert_eq!(
        s.subscriptions(a.id).await.unwrap(),
        ["Archive", "Drafts", "INBOX", "Kept", "Sent"]
    );
    assert!(
        s.get_mailbox(a.id, "Kept")
            .await
            .unwrap()
            .unwrap()
            .subscribed
    );
    assert!(
        !s.get_mailbox(a.id, "Junk")
            .await
            .unwrap()
            .unwrap()
            .subscribed
    );
}

/// `\Recent`: messages are recent until one read-write SELECT claims them; EXAMINE looks
/// without claiming; STATUS counts them.
async fn recent_messages_are_claimed_once(b: TestStore) {
    let s = open_store(&b).await;
    let (a, _) = two_accounts(&s, 0).await;
    let inbox = mailbox_id(&s, a.id, "INBOX").await;
    for i in 0..3 {
        s.append(inbox, &format!("r{i}"), 5, 0, &[], None)
            .await
            .unwrap();
    }
    assert_eq!(s.status_of(inbox).await.unwrap().recent, 3);
    assert_eq!(
        s.recent_from(inbox, false).await.unwrap(),
        (1, u32::MAX),
        "EXAMINE"
    );
    assert_eq!(s.status_of(inbox).await.unwrap().recent, 3);
    assert_eq!(
        s.recent_from(inbox, true).await.unwrap(),
        (1, 4),
        "first SELECT"
    );
    assert_eq!(s.status_of(inbox).await.unwrap().recent, 0);
    assert_eq!(
        s.recent_from(inbox, true).await.unwrap(),
        (4, 4),
        "second SELECT: nothing"
    );
    s.append(inbox, "r3", 5, 0, &[], None).await.unwrap();
    assert_eq!(s.status_of(inbox).await.unwrap().recent, 1);
    assert_eq!(s.recent_from(inbox, true).await.unwrap(), (4, 5));
    // Sessions claiming at once: each message is claimed once.
    for i in 0..20 {
        s.append(inbox, &format!("c{i}"), 5, 0, &[], None)
            .await
            .unwrap();
    }
    let claims = futures_join(&s, inbox).await;
    let mut claimed: Vec<u32> = claims.iter().flat_map(|&(a, b)| a..b).collect();
    claimed.sort_unstable();
    assert_eq!(claimed, (5..25).collect::<Vec<u32>>(), "{claims:?}");
    assert!(s.recent_from(-1, true).await.is_err());
}

/// Version 4 to 5: the text index's tables; messages from before have no text, so every
/// search keeps them among its candidates.
async fn a_version_4_store_is_migrated(b: TestStore) {
    let s = open_store(&b).await;
    let (a, _) = two_accounts(&s, 0).await;
    let inbox = mailbox_id(&s, a.id, "INBOX").await;
    s.deliver(&delivery_to(a.id, "old")).await.unwrap();
    drop(s);
    run_sql(&b, UNDO_V8).await;
    run_sql(&b, UNDO_V7).await;
    run_sql(&b, UNDO_V6).await;
    run_sql(&b, UNDO_V5).await;
    let s = mailfleet_store::open(&b.url).await.unwrap();
    let mut d = delivery_to(a.id, "new");
    d.text = Some("hello there, general kenobi".into());
    s.deliver(&d).await.unwrap();
    assert_eq!(
        s.text_candidates(inbox, " there, ").await.unwrap(),
        Some(vec![1, 2])
    );
    assert_eq!(
        s.text_candidates(inbox, " absent ").await.unwrap(),
        Some(vec![1])
    );
}

/// Version 5 to 6: a lease taken before gets `acquired` 0, renewals keep it, and the next
/// holder's takeover sets it.
async fn a_version_5_store_is_migrated(b: TestStore) {
    let s = open_store(&b).await;
    drop(s);
    run_sql(&b, UNDO_V8).await;
    run_sql(&b, UNDO_V7).await;
    run_sql(&b, UNDO_V6).await;
    run_sql(
        &b,
        &["INSERT INTO leases (name, holder, token, expires) VALUES ('master', 'n1', 3, 200)"],
    )
    .await;
    let s = mailfleet_store::open(&b.url).await.unwrap();
    let lease = s.get_lease("master").await.unwrap().unwrap();
    assert_eq!((lease.token, lease.acquired), (3, 0));
    let renewed = s
        .acquire_lease("master", "n1", 150, 60)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((renewed.token, renewed.acquired), (3, 0));
    let taken = s
        .acquire_lease("master", "n2", 300, 60)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((taken.token, taken.acquired), (4, 300));
}

/// Tombstones left before the upgrade count from the upgrade: a purge of older ones leaves
/// them, a later one takes them.
async fn a_version_7_store_is_migrated(b: TestStore) {
    let s = open_store(&b).await;
    s.add_domain("example.test").await.unwrap();
    let a = s
        .create_account(&new_account("a@example.test"))
        .await
        .unwrap();
    let inbox = s.get_mailbox(a.id, "INBOX").await.unwrap().unwrap();
    for i in 0..3 {
        s.append(inbox.id, &format!("blob{i}"), 10, 1, &[], None)
            .await
            .unwrap();
    }
    drop(s);
    run_sql(&b, UNDO_V8).await;
    run_sql(
        &b,
        &["UPDATE messages SET expunged = TRUE, modseq = 9 WHERE uid = 2"],
    )
    .await;
    let s = mailfleet_store::open(&b.url).await.unwrap();
    let changes = s.changes_since(inbox.id, 0).await.unwrap();
    assert_eq!((changes.expunged, changes.purged_up_to), (vec![2], 0));
    let lease = s
        .acquire_lease("master", "n1", now(), 60)
        .await
        .unwrap()
        .unwrap();
    let fence = Fence {
        lease: "master".into(),
        holder: "n1".into(),
        token: lease.token,
    };
    let kept = s.purge_tombstones(&fence, now(), now() - 60).await.unwrap();
    assert_eq!(kept, TombstonePurge::default());
    let gone = s.purge_tombstones(&fence, now(), now() + 60).await.unwrap();
    assert_eq!((gone.mailboxes, gone.tombstones), (1, 1));
    let changes = s.changes_since(inbox.id, 0).await.unwrap();
    assert_eq!((changes.expunged.len(), changes.purged_up_to), (0, 9));
}

/// The tombstone purge: only tombstones older than the cut go, each mailbox's floor rises to
/// the highest MODSEQ purged from it, `changes_since` reports the floor, and a master whose
/// lease was taken over purges nothing.
async fn old_tombstones_are_purged_under_a_floor(b: TestStore) {
    let s = open_store(&b).await;
    s.add_domain("example.test").await.unwrap();
    let a = s
        .create_account(&new_account("a@example.test"))
        .await
        .unwrap();
    let inbox = s.get_mailbox(a.id, "INBOX").await.unwrap().unwrap();
    let other = s.create_mailbox(a.id, "Other", None).await.unwrap();
    for i in 0..5 {
        s.append(inbox.id, &format!("blob{i}"), 10, 1, &[], None)
            .await
            .unwrap();
        s.append(other.id, &format!("blob{i}"), 10, 1, &[], None)
            .await
            .unwrap();
    }
    assert_eq!(s.expunge(inbox.id, &[2, 3]).await.unwrap(), 2);
    let first = s
        .get_mailbox(a.id, "INBOX")
        .await
        .unwrap()
        .unwrap()
        .highestmodseq;
    assert_eq!(s.expunge(inbox.id, &[4]).await.unwrap(), 1);
    // A move leaves tombstones too.
    s.copy_messages(other.id, &[1], inbox.id, true)
        .await
        .unwrap();
    let all = s.changes_since(inbox.id, 0).await.unwrap();
    assert_eq!((all.expunged, all.purged_up_to), (vec![2, 3, 4], 0));

    let l1 = s
        .acquire_lease("master", "n1", now(), 60)
        .await
        .unwrap()
        .unwrap();
    let fence = Fence {
        lease: "master".into(),
        holder: "n1".into(),
        token: l1.token,
    };
    // Nothing is older than a minute.
    let none = s.purge_tombstones(&fence, now(), now() - 60).await.unwrap();
    assert_eq!(none, TombstonePurge::default());

    // Make the first expunge old (as if 40 days passed), the later one recent.
    run_sql(
        &b,
        &[&format!(
            "UPDATE messages SET expunged_at = expunged_at - 40 * 86400 \
             WHERE mailbox_id = {} AND modseq <= {first} AND expunged",
            inbox.id
        )],
    )
    .await;
    let cut = now() - 30 * 86400;

    // A fence with an older token than the lease's (a master since replaced) purges nothing.
    let stale = Fence {
        token: l1.token - 1,
        ..fence.clone()
    };
    assert!(matches!(
        s.purge_tombstones(&stale, now(), cut).await,
        Err(StoreError::Fenced { .. })
    ));
    assert_eq!(
        s.changes_since(inbox.id, 0).await.unwrap().expunged,
        [2, 3, 4]
    );

    let done = s.purge_tombstones(&fence, now(), cut).await.unwrap();
    assert_eq!((done.mailboxes, done.tombstones), (1, 2));
    let after = s.changes_since(inbox.id, 0).await.unwrap();
    assert_eq!(after.expunged, [4], "the recent tombstone stays");
    assert_eq!(after.purged_up_to, first);
    assert!(after.changed.iter().all(|c| c.uid != 2 && c.uid != 3));
    // Live messages and the other mailbox are untouched.
    let live: Vec<u32> = s
        .list_messages(inbox.id, 1, u32::MAX)
        .await
        .unwrap()
        .iter()
        .map(|m| m.uid)
        .collect();
    assert_eq!(live, [1, 5, 6]);
    let in_other = s.changes_since(other.id, 0).await.unwrap();
    assert_eq!((in_other.expunged, in_other.purged_up_to), (vec![1], 0));
    // Again: nothing left to purge, the floor stays.
    let again = s.purge_tombstones(&fence, now(), cut).await.unwrap();
    assert_eq!(again, TombstonePurge::default());
    assert_eq!(
        s.changes_since(inbox.id, 0).await.unwrap().purged_up_to,
        first
    );
}

/// `acquired` is when the present holder took the lease: set by the first holder and by
/// each takeover, kept by renewals, read back by `get_lease`.
async fn leases_know_when_their_holder_took_them(b: TestStore) {
    let s = open_store(&b).await;
    let first = s
        .acquire_lease("master", "n1", 100, 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.acquired, 100);
    let renewed = s
        .acquire_lease("master", "n1", 108, 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((renewed.acquired, renewed.expires), (100, 118));
    assert_eq!(s.get_lease("master").await.unwrap().unwrap().acquired, 100);
    assert!(
        s.acquire_lease("master", "n2", 110, 10)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(s.get_lease("master").await.unwrap().unwrap().acquired, 100);
    let taken = s
        .acquire_lease("master", "n2", 119, 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((taken.token, taken.acquired), (2, 119));
    // A holder that released its lease and takes it again took it anew.
    s.release_lease("master", "n2").await.unwrap();
    let again = s
        .acquire_lease("master", "n2", mailfleet_store::now(), 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.token, 3);
    assert!(again.acquired > 119);
    assert_eq!(s.get_lease("master").await.unwrap().unwrap(), again);
}

/// `queue_summary`: the size, the oldest item's time, and per holder the items under a lease
/// not yet run out (an expired lease counts for nobody).
async fn the_queue_summary_counts_items_and_holders(b: TestStore) {
    let s = open_store(&b).await;
    assert_eq!(s.queue_summary(100).await.unwrap(), QueueSummary::default());
    s.blob_put(&"a".repeat(64), b"message").await.unwrap();
    let item = NewQueueItem {
        sender: "someone@example.test".into(),
        recipients: vec![QueueRecipient::new("far@remote.test")],
        envid: None,
        ret: None,
        next_attempt: 0,
    };
    let started = mailfleet_store::now();
    for _ in 0..5 {
        s.enqueue(&"a".repeat(64), 7, &item).await.unwrap();
    }
    let now = mailfleet_store::now();
    assert_eq!(s.claim_queue("n1", now, 60, 2).await.unwrap().len(), 2);
    assert_eq!(s.claim_queue("n2", now, 5, 1).await.unwrap().len(), 1);
    let summary = s.queue_summary(now).await.unwrap();
    assert_eq!(summary.items, 5);
    let oldest = summary.oldest.unwrap();
    assert!(oldest >= started && oldest <= now, "{summary:?}");
    assert_eq!(summary.held, vec![("n1".into(), 2), ("n2".into(), 1)]);
    assert_eq!((summary.held_by("n1"), summary.held_by("n3")), (2, 0));
    // n2's lease runs out at now + 5: it holds nothing after.
    let later = s.queue_summary(now + 6).await.unwrap();
    assert_eq!(later.held, vec![("n1".into(), 2)]);
    assert_eq!(later.items, 5);
}

/// A delivery of `blob` to the account's INBOX with `text` for the index; its UID.
async fn deliver_text(s: &Arc<dyn Store>, account_id: i64, blob: &str, text: Option<&str>) -> u32 {
    let mut d = delivery_to(account_id, blob);
    d.text = text.map(str::to_string);
    s.deliver(&d).await.unwrap()[0].uid
}

/// `text_candidates`: a superset of the messages whose text holds the needle without regard
/// to case, messages without text always among them, expunged ones never; needles that are
/// FTS5 or tsquery syntax are only text; what cannot narrow says `None`; `forget_meta` takes
/// a blob's text away with its metadata.
async fn the_text_index_narrows_searches(b: TestStore) {
    let sqlite = b.url.starts_with("sqlite:");
    let s = open_store(&b).await;
    let (a, _) = two_accounts(&s, 0).await;
    let inbox = mailbox_id(&s, a.id, "INBOX").await;
    let t1 = "Subject: Hello World\nthe QUICK brown fox said \"hi*\" near-by: x-ray (a OR b)";
    assert_eq!(deliver_text(&s, a.id, "t1", Some(t1)).await, 1);
    let t2 = "ann@example.test wrote: nothing to see, Grüße";
    assert_eq!(deliver_text(&s, a.id, "t2", Some(t2)).await, 2);
    assert_eq!(deliver_text(&s, a.id, "t3", None).await, 3);
    assert_eq!(deliver_text(&s, a.id, "t4", Some("hello again")).await, 4);
    // A blob's text is written once: the first delivery's stays.
    assert_eq!(deliver_text(&s, a.id, "t1", Some("zzz")).await, 5);
    let c = |needle: &'static str| {
        let s = s.clone();
        async move { s.text_candidates(inbox, needle).await.unwrap() }
    };
    let some = |v: &[u32]| Some(v.to_vec());
    if sqlite {
        assert_eq!(c("ello").await, some(&[1, 3, 4, 5]), "inside a word");
        assert_eq!(c("ELLO W").await, some(&[1, 3, 5]));
        assert_eq!(c("o w").await, some(&[1, 3, 5]));
        assert_eq!(c("zzz").await, some(&[3]), "the first text stays");
        assert_eq!(c("\"hi*\"").await, some(&[1, 3, 5]));
        assert_eq!(c("near-by:").await, some(&[1, 3, 5]));
        assert_eq!(c("NEAR").await, some(&[1, 3, 5]));
        assert_eq!(c("-by").await, some(&[1, 3, 5]));
        assert_eq!(c("a OR b").await, some(&[1, 3, 5]));
        assert_eq!(c("x OR y").await, some(&[3]));
        assert_eq!(c("NEAR(x y)").await, some(&[3]));
        assert_eq!(c("a\"b").await, some(&[3]));
        assert_eq!(c("***").await, some(&[3]));
        assert_eq!(c("ann@example").await, some(&[2, 3]));
        assert_eq!(c("GRÜSS").await, some(&[3]));
        assert_eq!(c("rÜßE").await, some(&[2, 3]));
        assert_eq!(c("absent").await, some(&[3]));
        for short in ["", "he", ":", "\"", "*", "-", "ü"] {
            assert_eq!(c(short).await, None, "{short:?}");
        }
    } else {
        for no_interior in ["ello", "hello world", "o w", "lo wor", "near-by", "", "\""] {
            assert_eq!(c(no_interior).await, None, "{no_interior:?}");
        }
        assert_eq!(c(" hello ").await, some(&[1, 3, 4, 5]));
        assert_eq!(c(" HELLO ").await, some(&[1, 3, 4, 5]));
        assert_eq!(c("the quick brown").await, some(&[1, 3, 5]));
        assert_eq!(c(" zzz ").await, some(&[3]), "the first text stays");
        assert_eq!(c("\"hi*\"").await, some(&[1, 3, 5]));
        assert_eq!(c(" near-by:").await, some(&[1, 3, 5]));
        assert_eq!(c("(a OR b)").await, some(&[1, 3, 5]));
        assert_eq!(c("x OR y").await, some(&[1, 3, 5]), "the word or");
        assert_eq!(c("x NOR y").await, some(&[3]));
        assert_eq!(c("x & y | !z:*").await, some(&[3]));
        assert_eq!(c("a'b c\\d e").await, some(&[3]));
        assert_eq!(c("@example.").await, some(&[2, 3]), "a word of an address");
        assert_eq!(c(" GRÜSSE ").await, some(&[3]));
        assert_eq!(c(" GRÜßE ").await, some(&[2, 3]));
        assert_eq!(c(" absent ").await, some(&[3]));
    }
    for line_break in ["hello\nworld", "hello\r\n", "a\0b c d"] {
        assert_eq!(c(line_break).await, None, "{line_break:?}");
    }
    // Another mailbox's messages are not candidates.
    let sent = mailbox_id(&s, a.id, "Sent").await;
    assert_eq!(
        s.text_candidates(sent, " hello ").await.unwrap(),
        Some(vec![])
    );
    // Expunged messages are not candidates.
    s.expunge(inbox, &[4]).await.unwrap();
    let again = if sqlite { "again" } else { " again " };
    let absent = if sqlite { "absent" } else { " absent " };
    assert_eq!(c(again).await, some(&[3]));
    // forget_meta takes the text of a blob no message uses any more, and only that.
    s.forget_meta("t4").await.unwrap();
    s.forget_meta("t1").await.unwrap();
    assert_eq!(deliver_text(&s, a.id, "t4", None).await, 6);
    assert_eq!(c(absent).await, some(&[3, 6]), "t4's text is gone");
    assert_eq!(c(again).await, some(&[3, 6]));
    let hello = if sqlite { "hello" } else { " hello " };
    assert_eq!(c(hello).await, some(&[1, 3, 5, 6]), "t1's text stays");
}

/// `append_many_with_text` keeps the texts in the append's transaction; `append_many`
/// keeps none.
async fn appended_texts_are_indexed(b: TestStore) {
    let sqlite = b.url.starts_with("sqlite:");
    let s = open_store(&b).await;
    let (a, _) = two_accounts(&s, 0).await;
    let drafts = mailbox_id(&s, a.id, "Drafts").await;
    let uids = s
        .append_many_with_text(
            drafts,
            &[
                new_message("a1", 10, &[]),
                new_message("a2", 20, &[]),
                new_message("a3", 30, &[]),
            ],
            &[Some("first draft text".into()), None],
        )
        .await
        .unwrap();
    assert_eq!(uids, [1, 2, 3]);
    s.append_many(drafts, &[new_message("a4", 40, &[])])
        .await
        .unwrap();
    let needle = if sqlite { "DRAFT" } else { "first draft text" };
    assert_eq!(
        s.text_candidates(drafts, needle).await.unwrap(),
        Some(vec![1, 2, 3, 4])
    );
    let needle = if sqlite { "nowhere" } else { " nowhere " };
    assert_eq!(
        s.text_candidates(drafts, needle).await.unwrap(),
        Some(vec![2, 3, 4])
    );
}

/// Eight claims of the recent messages at once, on separate tasks.
async fn futures_join(s: &Arc<dyn Store>, mailbox: i64) -> Vec<(u32, u32)> {
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.recent_from(mailbox, true).await.unwrap()
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}
