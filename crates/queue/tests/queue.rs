//! Outbound queue scenarios: real sockets on 127.0.0.1, a DNS responder serving the MX records,
//! the Python sink as remote server, SQLite stores. Each test bounds its own waits.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use mailfleet_store::QueueRecipient;

const LIMIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_through_mx_skipping_a_dead_host() {
    let dns = standard_dns().await;
    let sink = Sink::start(&[]).await;
    let cluster = Cluster::new(&dns, sink.port, &[]).await;
    let _w = cluster.worker("n1");
    let id = cluster
        .enqueue(ALICE, &["bob@remote.test", "carol@remote.test"], "mx1")
        .await;
    let msgs = wait_for(LIMIT, "two deliveries", || async {
        let m = sink.messages();
        (m.len() == 2).then_some(m)
    })
    .await;
    for m in &msgs {
        assert!(m.contains("X-Sink-Helo: n1.local.test\r\n"), "{m}");
        assert!(
            m.contains("X-Sink-Mail: MAIL FROM:<alice@local.test>"),
            "{m}"
        );
        assert!(m.contains("ENVID=env-mx1"), "DSN parameters passed on: {m}");
        assert!(m.contains("Subject: mx1\r\n"), "{m}");
        // The stored Return-Path is for final delivery only: a relayed copy goes without it.
        assert!(!m.contains("Return-Path:"), "{m}");
        // Dot-stuffing was undone by the sink: the line arrives as written.
        assert!(m.contains("\r\n.leading dot line\r\n"), "{m}");
    }
    let rcpts: Vec<bool> = ["bob@remote.test", "carol@remote.test"]
        .iter()
        .map(|r| msgs.iter().any(|m| m.contains(&format!("RCPT TO:<{r}>"))))
        .collect();
    assert_eq!(rcpts, vec![true, true]);
    wait_for(LIMIT, "the item to leave the queue", || async {
        cluster
            .store
            .get_queue_item(id)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(cluster.inbox().await.is_empty(), "no notification expected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domain_without_mx_uses_its_address() {
    let dns = standard_dns().await;
    let sink = Sink::start(&[]).await;
    let cluster = Cluster::new(&dns, sink.port, &[]).await;
    let _w = cluster.worker("n1");
    cluster.enqueue(ALICE, &["dave@nomx.test"], "nomx").await;
    let m = wait_for(LIMIT, "delivery", || async { sink.messages().pop() }).await;
    assert!(m.contains("RCPT TO:<dave@nomx.test>"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_after_a_temporary_failure() {
    let dns = standard_dns().await;
    let sink = Sink::start(&[]).await;
    let cluster = Cluster::new(&dns, sink.port, &[("queue.retry_schedule", "1s")]).await;
    let _w = cluster.worker("n1");
    let id = cluster
        .enqueue(ALICE, &["once-bob@remote.test"], "retry")
        .await;
    // First attempt: 451, the item stays with the recipient pending and the error recorded.
    let item = wait_for(LIMIT, "the first attempt to be recorded", || async {
        let item = cluster.store.get_queue_item(id).await.unwrap()?;
        item.recipients[0].last_error.is_some().then_some(item)
    })
    .await;
    assert_eq!(item.recipients[0].status, "pending");
    let err = item.recipients[0].last_error.clone().unwrap();
    assert!(err.contains("451 4.3.0"), "{err}");
    assert!(item.lease_holder.is_none());
    // Second attempt, a second later: accepted.
    let start = Instant::now();
    wait_for(LIMIT, "the retry to deliver", || async {
        (sink.messages().len() == 1).then_some(())
    })
    .await;
    assert_eq!(
        sink.events(),
        vec![
            "TEMPFAIL once-bob@remote.test",
            "ACCEPT once-bob@remote.test"
        ]
    );
    // The retry comes after the 1 s of the schedule, not after a default one of minutes (the
    // bound is loose: only how soon it comes matters, and a busy machine slows the attempt).
    assert!(
        start.elapsed() < Duration::from_secs(12),
        "{:?}",
        start.elapsed()
    );
    wait_for(LIMIT, "the item to leave the queue", || async {
        cluster
            .store
            .get_queue_item(id)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        cluster.inbox().await.is_empty(),
        "no bounce for a delivered message"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failure_bounces_at_once_to_a_local_sender() {
    let dns = standard_dns().await;
    let sink = Sink::start(&[]).await;
    let cluster = Cluster::new(&dns, sink.port, &[]).await;
    let _w = cluster.worker("n1");
    cluster
        .enqueue(ALICE, &["perm-x@remote.test", "bob@remote.test"], "perm")
        .await;
    let bounce = wait_for(LIMIT, "the bounce in alice's INBOX", || async {
        cluster.inbox().await.pop()
    })
    .await;
    assert_eq!(sink.messages().len(), 1, "the good recipient is delivered");
    assert!(bounce.starts_with("Return-Path: <>\r\n"), "{bounce}");
    assert!(bounce.contains("To: <alice@local.test>\r\n"), "{bounce}");
    assert!(bounce.contains("report-type=delivery-status"), "{bounce}");
    assert!(
        bounce.contains("Original-Envelope-Id: env-perm\r\n"),
        "{bounce}"
    );
    assert!(
        bounce.contains("Final-Recipient: rfc822; perm-x@remote.test\r\n"),
        "{bounce}"
    );
    assert!(
        bounce.contains("Action: failed\r\nStatus: 5.1.1\r\n"),
        "{bounce}"
    );
    assert!(
        bounce.contains("Remote-MTA: dns; mx2.remote.test\r\n"),
        "{bounce}"
    );
    assert!(
        bounce.contains("Diagnostic-Code: smtp; 550 5.1.1 no such user here\r\n"),
        "{bounce}"
    );
    assert!(
        !bounce.contains("Final-Recipient: rfc822; bob@"),
        "{bounce}"
    );
    assert!(
        bounce.contains("Content-Type: message/rfc822\r\n"),
        "{bounce}"
    );
    assert!(bounce.contains("Subject: perm\r\n"), "{bounce}");
    wait_for(LIMIT, "an empty queue", || async {
        (cluster.queue_len().await == 0).then_some(())
    })
    .await;
}

/// A local mailbox found full at the end of data is queued by the SMTP server; the queue's
/// local delivery bounces it (5.2.2), and delivers to a disabled one nothing (5.2.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_local_mailbox_bounces_with_5_2_2() {
    let dns = standard_dns().await;
    let sink = Sink::start(&[]).await;
    let cluster = Cluster::new(&dns, sink.port, &[]).await;
    for (address, quota) in [("full@local.test", 10), ("off@local.test", 0)] {
        cluster
            .store
            .create_account(&mailfleet_store::NewAccount {
                address: address.into(),
                password_hash: mailfleet_store::password::hash_password("x").unwrap(),
                quota_bytes: quota,
                shard: "default".into(),
            })
            .await
            .unwrap();
    }
    cluster
        .store
        .update_account(
            "off@local.test",
            &mailfleet_store::AccountUpdate {
                enabled: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let _w = cluster.worker("n1");
    cluster
        .enqueue(ALICE, &["full@local.test", "off@local.test"], "full")
        .await;
    let bounce = wait_for(LIMIT, "the bounce in alice's INBOX", || async {
        cluster.inbox().await.pop()
    })
    .await;
    assert!(
        bounce.contains(
            "Final-Recipient: rfc822; full@local.test\r\nAction: failed\r\nStatus: 5.2.2\r\n"
        ),
        "{bounce}"
    );
    assert!(
        bounce.contains(
            "Final-Recipient: rfc822; off@local.test\r\nAction: failed\r\nStatus: 5.2.1\r\n"
        ),
        "{bounce}"
    );
    wait_for(LIMIT, "an empty queue", || async {
        (cluster.queue_len().await == 0).then_some(())
    })
    .await;
    for address in ["full@local.test", "off@local.test"] {
        let account = cluster.store.get_account(address).await.unwrap().unwrap();
        let inbox = cluster
            .store
            .get_mailbox(account.id, "INBOX")
            .await
            .unwrap();
        let n = match inbox {
            Some(mb) => cluster
                .store
                .list_messages(mb.id, 1, u32::MAX)
                .await
                .unwrap()
                .len(),
            None => 0,
        };
        assert_eq!(n, 0, "{address} got the message");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounces_after_the_lifetime() {
    let dns = standard_dns().await;
    let sink = Sink::start(&[]).await;
    let cluster = Cluster::new(
        &dns,
        sink.port,
        &[
            ("queue.retry_schedule", "1s"),
            ("queue.lifetime", "3s"),
            ("queue.delay_warning", ""),
        ],
    )
    .await;
    let _w = cluster.worker("n1");
    let start = Instant::now();
    cluster
        .enqueue_with(
            ALICE,
            vec![QueueRecipient::new("temp-x@remote.test")],
            "expire",
            Some("HDRS"),
        )
        .await;
    let bounce = wait_for(LIMIT, "the bounce", || async {
        cluster.inbox().await.pop()
    })
    .await;
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "bounced too early: {took:?}"
    );
    let tempfails = sink
        .events()
        .iter()
        .filter(|e| e.starts_with("TEMPFAIL"))
        .count();
    assert!(
        tempfails >= 2,
        "retried before giving up: {:?}",
        sink.events()
    );
    assert!(
        bounce.contains("Subject: Undelivered Mail Returned to Sender"),
        "{bounce}"
    );
    assert!(
        bounce.contains("Final-Recipient: rfc822; temp-x@remote.test\r\n"),
        "{bounce}"
    );
    assert!(
        bounce.contains("Action: failed\r\nStatus: 5.4.7\r\n"),
        "{bounce}"
    );
    assert!(
        bounce.contains("Diagnostic-Code: smtp; 451 4.3.0 try again later"),
        "{bounce}"
    );
    // RET=HDRS: the header comes back, the body does not.
    assert!(
        bounce.contains("Content-Type: text/rfc822-headers\r\n"),
        "{bounce}"
    );
    assert!(
        bounce.contains("Subject: expire\r\n") && !bounce.contains("leading dot"),
        "{bounce}"
    );
    assert!(sink.messages().is_empty());
    wait_for(LIMIT, "an empty queue", || async {
        (cluster.queue_len().await == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_never_deliver_one_item_twice() {
    two_workers_on(None).await;
}

/// The same on PostgreSQL (`FOR UPDATE SKIP LOCKED`), on a throwaway server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_never_deliver_one_item_twice_postgres() {
    let pg = mailfleet_test_support::PgServer::start();
    let url = pg.create_database("queue_two_workers");
    two_workers_on(Some(url)).await;
}

async fn two_workers_on(url: Option<String>) {
    let dns = standard_dns().await;
    // Each message takes 100 ms to be acknowledged, so both workers are busy at once.
    let sink = Sink::start(&["--delay-ms", "100"]).await;
    let cluster = Cluster::with_store(url, &dns, sink.port, &[("queue.concurrency", "4")]).await;
    const N: usize = 24;
    for i in 0..N {
        cluster
            .enqueue(ALICE, &[&format!("user{i}@remote.test")], &format!("m{i}"))
            .await;
    }
    let _a = cluster.worker("n1");
    let _b = cluster.worker("n2");
    wait_for(LIMIT, "an empty queue", || async {
        (cluster.queue_len().await == 0).then_some(())
    })
    .await;
    // Give a duplicate, if there were one, time to arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let msgs = sink.messages();
    assert_eq!(msgs.len(), N, "one delivery per item");
    for i in 0..N {
        let rcpt = format!("RCPT TO:<user{i}@remote.test>");
        assert_eq!(
            msgs.iter().filter(|m| m.contains(&rcpt)).count(),
            1,
            "{rcpt}"
        );
    }
    let by = |n: &str| {
        msgs.iter()
            .filter(|m| m.contains(&format!("X-Sink-Helo: {n}.local.test")))
            .count()
    };
    assert!(
        by("n1") > 0 && by("n2") > 0,
        "both workers delivered: n1 {} n2 {}",
        by("n1"),
        by("n2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_of_a_dead_worker_is_retried_after_its_lease() {
    let dns = standard_dns().await;
    let sink = Sink::start(&[]).await;
    let cluster = Cluster::new(&dns, sink.port, &[("queue.lease", "3s")]).await;
    let id = cluster
        .enqueue(ALICE, &["hang-bob@remote.test"], "dead")
        .await;
    let mut a = cluster.worker("n1");
    // n1 has sent the message and waits for the answer, which never comes: it dies now.
    wait_for(LIMIT, "n1 to be mid-delivery", || async {
        sink.events()
            .iter()
            .any(|e| e.starts_with("HANG"))
            .then_some(())
    })
    .await;
    a.handle.abort();
    let _ = (&mut a.handle).await;
    let item = cluster.store.get_queue_item(id).await.unwrap().unwrap();
    assert!(
        item.lease_holder.as_deref().unwrap().starts_with("n1-"),
        "{item:?}"
    );
    let _b = cluster.worker("n2");
    // While the lease runs, n2 leaves the item alone: watched until the lease's end (a
    // wall-clock second, the store's clock), however long the machine takes to get there.
    let until = item.lease_until.unwrap();
    loop {
        let still = cluster.store.get_queue_item(id).await.unwrap();
        let delivered = sink.messages().len();
        // Read after the item: if the lease still ran then, it ran when the item was read.
        if mailfleet_store::now() >= until {
            break;
        }
        // Gone (delivered by n2) while the lease still ran would be the bug this test is for.
        let still = still.expect("the item left the queue while n1's lease ran");
        assert_eq!(
            still.lease_holder, item.lease_holder,
            "lease taken before it ran out"
        );
        assert_eq!(delivered, 0, "delivered while n1's lease ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Then it delivers.
    let m = wait_for(LIMIT, "n2 to deliver", || async { sink.messages().pop() }).await;
    assert!(m.contains("X-Sink-Helo: n2.local.test"), "{m}");
    assert_eq!(sink.messages().len(), 1);
    wait_for(LIMIT, "an empty queue", || async {
        (cluster.queue_len().await == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_mx_and_missing_domain_bounce_without_retry() {
    let dns = standard_dns().await;
    let sink = Sink::start(&[]).await;
    let cluster = Cluster::new(&dns, sink.port, &[]).await;
    let _w = cluster.worker("n1");
    cluster
        .enqueue(ALICE, &["x@null.test", "y@nx.test"], "nomail")
        .await;
    let bounce = wait_for(LIMIT, "the bounce", || async {
        cluster.inbox().await.pop()
    })
    .await;
    assert!(
        bounce.contains(
            "Final-Recipient: rfc822; x@null.test\r\nAction: failed\r\nStatus: 5.1.10\r\n"
        ),
        "{bounce}"
    );
    assert!(
        bounce
            .contains("Final-Recipient: rfc822; y@nx.test\r\nAction: failed\r\nStatus: 5.1.2\r\n"),
        "{bounce}"
    );
    assert!(bounce.contains("null MX"), "{bounce}");
    assert_eq!(cluster.inbox().await.len(), 1, "one notification for both");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_delay_warning_then_delivery() {
    let dns = standard_dns().await;
    let sink = Sink::start(&[]).await;
    let cluster = Cluster::new(
        &dns,
        sink.port,
        &[
            ("queue.delay_warning", "1s"),
            ("queue.retry_schedule", "1s"),
        ],
    )
    .await;
    let _w = cluster.worker("n1");
    let mut never = QueueRecipient::new("temp-quiet@remote.test");
    never.notify = vec!["NEVER".into()];
    let id = cluster
        .enqueue_with(
            ALICE,
            vec![QueueRecipient::new("temp-y@remote.test"), never],
            "slow",
            None,
        )
        .await;
    let warning = wait_for(LIMIT, "the delay warning", || async {
        cluster.inbox().await.pop()
    })
    .await;
    assert!(
        warning.contains("Subject: Delayed Mail (still being retried)"),
        "{warning}"
    );
    assert!(
        warning.contains("Final-Recipient: rfc822; temp-y@remote.test\r\nAction: delayed\r\n"),
        "{warning}"
    );
    assert!(
        !warning.contains("temp-quiet@"),
        "NOTIFY=NEVER is respected: {warning}"
    );
    assert!(warning.contains("Will-Retry-Until: "), "{warning}");
    assert!(!warning.contains("Hello."), "headers only: {warning}");
    let item = cluster.store.get_queue_item(id).await.unwrap().unwrap();
    assert!(item.warned);
    // More attempts follow, but no second warning.
    wait_for(LIMIT, "two more attempts", || async {
        let n = cluster.store.get_queue_item(id).await.unwrap()?.attempts;
        (n >= item.attempts + 2).then_some(())
    })
    .await;
    assert_eq!(cluster.inbox().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smart_host_with_auth_and_transport_map() {
    let dns = standard_dns().await;
    let relay = Sink::start(&["--auth"]).await;
    let direct = Sink::start(&[]).await;
    let cluster = Cluster::new(
        &dns,
        direct.port,
        &[
            ("queue.smarthost", &format!("127.0.0.1:{}", relay.port)),
            ("queue.smarthost.username", "relayuser"),
            ("queue.smarthost.password", "s3cret"),
            ("queue.smarthost.allow_cleartext", "true"),
            ("queue.transport.remote.test", "mx:remote.test"),
        ],
    )
    .await;
    let _w = cluster.worker("n1");
    cluster
        .enqueue(ALICE, &["a@elsewhere.test", "b@remote.test"], "relay")
        .await;
    let m = wait_for(LIMIT, "relay delivery", || async { relay.messages().pop() }).await;
    assert!(m.contains("X-Sink-Auth: relayuser:s3cret\r\n"), "{m}");
    assert!(m.contains("RCPT TO:<a@elsewhere.test>"), "{m}");
    let d = wait_for(LIMIT, "MX delivery", || async { direct.messages().pop() }).await;
    assert!(
        d.contains("RCPT TO:<b@remote.test>") && d.contains("X-Sink-Auth: \r\n"),
        "{d}"
    );
    assert_eq!(relay.messages().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_and_required_tls_are_never_sent_in_clear() {
    let dns = standard_dns().await;
    let relay = Sink::start(&["--auth"]).await;
    let cluster = Cluster::new(
        &dns,
        relay.port,
        &[
            ("queue.transport.auth.test", "smarthost"),
            ("queue.smarthost", &format!("127.0.0.1:{}", relay.port)),
            ("queue.smarthost.username", "relayuser"),
            ("queue.smarthost.password", "s3cret"),
            (
                "queue.transport.tls.test",
                &format!("127.0.0.1:{}", relay.port),
            ),
        ],
    )
    .await;
    let mut settings = cluster.settings.clone();
    settings.insert("queue.tls".into(), "required".into());
    let id_auth = cluster.enqueue(ALICE, &["a@auth.test"], "noauth").await;
    let _w = cluster.worker("n1");
    let err = wait_for(LIMIT, "the AUTH refusal", || async {
        cluster
            .store
            .get_queue_item(id_auth)
            .await
            .unwrap()?
            .recipients[0]
            .last_error
            .clone()
    })
    .await;
    assert!(err.contains("clear text"), "{err}");
    assert!(relay.messages().is_empty());
    drop(_w);

    let tls_cluster = Cluster {
        settings,
        ..cluster
    };
    let id_tls = tls_cluster.enqueue(ALICE, &["b@tls.test"], "tls").await;
    let _w = tls_cluster.worker("n2");
    let err = wait_for(LIMIT, "the TLS refusal", || async {
        tls_cluster
            .store
            .get_queue_item(id_tls)
            .await
            .unwrap()?
            .recipients[0]
            .last_error
            .clone()
    })
    .await;
    assert!(
        err.contains("STARTTLS") && err.contains("required"),
        "{err}"
    );
    assert!(relay.messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounce_to_a_remote_sender_goes_out_with_empty_path_and_is_never_bounced() {
    let dns = standard_dns().await;
    let sink = Sink::start(&[]).await;
    let cluster = Cluster::new(&dns, sink.port, &[]).await;
    let _w = cluster.worker("n1");
    cluster
        .enqueue("carol@remote.test", &["perm-a@remote.test"], "b1")
        .await;
    // This sender refuses the bounce itself: it must die there, not bounce again.
    cluster
        .enqueue("perm-sender@remote.test", &["perm-b@remote.test"], "b2")
        .await;
    let bounce = wait_for(LIMIT, "the bounce at the sink", || async {
        sink.messages().pop()
    })
    .await;
    assert!(bounce.contains("X-Sink-Mail: MAIL FROM:<>"), "{bounce}");
    assert!(
        bounce.contains("X-Sink-Rcpt: RCPT TO:<carol@remote.test>"),
        "{bounce}"
    );
    assert!(
        bounce.contains("Final-Recipient: rfc822; perm-a@remote.test"),
        "{bounce}"
    );
    wait_for(LIMIT, "an empty queue", || async {
        (cluster.queue_len().await == 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(cluster.queue_len().await, 0);
    let refused = sink
        .events()
        .iter()
        .filter(|e| *e == "PERMFAIL perm-sender@remote.test")
        .count();
    assert_eq!(refused, 1, "{:?}", sink.events());
    assert_eq!(sink.messages().len(), 1);
    assert!(cluster.inbox().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_stops_on_shutdown() {
    let dns = standard_dns().await;
    let cluster = Cluster::new(&dns, 9, &[("queue.poll_interval", "1h")]).await;
    let mut w = cluster.worker("n1");
    tokio::time::sleep(Duration::from_millis(200)).await;
    w.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), &mut w.handle)
        .await
        .expect("worker did not stop")
        .unwrap();
}

/// The item's (holder, attempts, lease_until) while it is leased, every 50 ms until it leaves
/// the queue; panics after [`LIMIT`].
async fn watch_lease(cluster: &Cluster, id: i64) -> Vec<(String, i64, i64)> {
    let start = Instant::now();
    let mut seen = Vec::new();
    while let Some(item) = cluster.store.get_queue_item(id).await.unwrap() {
        if let (Some(h), Some(u)) = (item.lease_holder, item.lease_until) {
            seen.push((h, item.attempts, u));
        }
        assert!(start.elapsed() < LIMIT, "item still queued: {seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_longer_than_the_lease_renews_it_and_is_delivered_once() {
    let dns = standard_dns().await;
    // Each message is answered 5 s after its end: more than twice the lease.
    let sink = Sink::start(&["--delay-ms", "5000"]).await;
    let cluster = Cluster::new(&dns, sink.port, &[("queue.lease", "2s")]).await;
    let id = cluster.enqueue(ALICE, &["bob@remote.test"], "slow").await;
    let start = Instant::now();
    let a = cluster.worker("n1");
    let b = cluster.worker("n2");
    // While it is delivered, one worker counts the item as held (its node's heartbeat says
    // so), the other none.
    let counting = {
        let (a, b) = (a.held.clone(), b.held.clone());
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let held = (a.load(Ordering::Relaxed), b.load(Ordering::Relaxed));
                if held == (1, 0) || held == (0, 1) || Instant::now() > deadline {
                    return held;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let seen = watch_lease(&cluster, id).await;
    let took = start.elapsed();
    let held = counting.await.unwrap();
    assert!(
        held == (1, 0) || held == (0, 1),
        "held while delivering: {held:?}"
    );
    let done = Instant::now();
    while a.held() + b.held() > 0 {
        assert!(
            done.elapsed() < Duration::from_secs(5),
            "still held after delivery"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(took >= Duration::from_secs(5), "{took:?}");
    // One holder and one attempt from claim to finish, its lease pushed on as it went.
    let (holder, attempts, first) = seen.first().cloned().expect("the claim was seen");
    assert!(
        seen.iter().all(|(h, a, _)| *h == holder && *a == attempts),
        "{seen:?}"
    );
    assert_eq!(attempts, 1);
    let last = seen.iter().map(|(_, _, u)| *u).max().unwrap();
    assert!(last >= first + 3, "lease renewed: {first} → {last}");
    assert_eq!(sink.events(), ["ACCEPT bob@remote.test"]);
    let msgs = sink.messages();
    assert_eq!(msgs.len(), 1);
    let by = holder.split('-').next().unwrap();
    assert!(
        msgs[0].contains(&format!("X-Sink-Helo: {by}.local.test")),
        "{}",
        msgs[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_whose_lease_passed_on_stops_at_once_and_records_nothing() {
    let dns = standard_dns().await;
    let sink = Sink::start(&["--delay-ms", "8000"]).await;
    // Renewals every 2 s; before renewal an attempt was cut off at 80% of the lease (4.8 s).
    let cluster = Cluster::new(&dns, sink.port, &[("queue.lease", "6s")]).await;
    let id = cluster.enqueue(ALICE, &["bob@remote.test"], "stolen").await;
    let _a = cluster.worker("n1");
    let claimed = wait_for(LIMIT, "n1 to claim the item", || async {
        let item = cluster.store.get_queue_item(id).await.unwrap()?;
        item.lease_holder.is_some().then_some(item)
    })
    .await;
    // n1 has sent the message; the sink holds back its answer.
    wait_for(LIMIT, "the sink to hold the message", || async {
        (!sink.held().is_empty()).then_some(())
    })
    .await;
    // Another node takes the item, as it would once n1's lease had run out.
    let late = claimed.lease_until.unwrap() + 100;
    let stolen = cluster
        .store
        .claim_queue("thief", late, 60, 10)
        .await
        .unwrap();
    assert_eq!(stolen.iter().map(|i| i.id).collect::<Vec<_>>(), [id]);
    let at = Instant::now();
    // n1's next renewal (within a third of the lease) finds out, and it hangs up unanswered.
    wait_for(LIMIT, "n1 to hang up", || async {
        sink.events()
            .contains(&"GONE bob@remote.test".to_string())
            .then_some(())
    })
    .await;
    // At n1's next renewal (a third of the lease, 2 s), well before its own lease would run
    // out (6 s from the claim) and the sink would answer (8 s): sized for a busy machine.
    let after = at.elapsed();
    assert!(after < Duration::from_secs(5), "{after:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sink.messages().is_empty());
    let item = cluster.store.get_queue_item(id).await.unwrap().unwrap();
    assert_eq!(item.lease_holder.as_deref(), Some("thief"));
    assert_eq!(item.lease_until, Some(late + 60));
    assert_eq!(item.attempts, 2);
    assert_eq!(item.next_attempt, claimed.next_attempt);
    assert_eq!(item.recipients[0].status, "pending");
    assert_eq!(item.recipients[0].last_error, None, "n1 recorded nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_is_cut_off_at_the_attempt_timeout() {
    let dns = standard_dns().await;
    let sink = Sink::start(&["--delay-ms", "8000"]).await;
    let cluster = Cluster::new(
        &dns,
        sink.port,
        &[
            ("queue.lease", "1s"),
            ("queue.attempt_timeout", "2s"),
            ("queue.retry_schedule", "1h"),
        ],
    )
    .await;
    let id = cluster.enqueue(ALICE, &["bob@remote.test"], "wedged").await;
    let start = Instant::now();
    let _a = cluster.worker("n1");
    // The lease is renewed past its 1 s, yet the attempt ends after 2 s, deferred.
    let item = wait_for(LIMIT, "the attempt to be deferred", || async {
        let item = cluster.store.get_queue_item(id).await.unwrap()?;
        item.recipients[0].last_error.is_some().then_some(item)
    })
    .await;
    // Cut off at the 2 s attempt timeout: not before, and not when the sink would have
    // answered (8 s after the message; the bound leaves a busy machine 5 s to spare).
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(7),
        "{took:?}"
    );
    let err = item.recipients[0].last_error.clone().unwrap();
    assert!(err.contains("queue.attempt_timeout"), "{err}");
    assert_eq!(item.recipients[0].status, "pending");
    assert_eq!((item.attempts, item.lease_holder), (1, None));
    wait_for(LIMIT, "the sink to see the hang-up", || async {
        (sink.events() == ["GONE bob@remote.test"]).then_some(())
    })
    .await;
    assert!(sink.messages().is_empty());
}

/// The master's lifetime sweep: an item past `queue.lifetime` whose node died holding it is
/// given up (5.4.7, a bounce to the sender) and leaves the queue, though no worker ran; an
/// item a live worker holds stays with it; before the lifetime, or under a stale fence,
/// nothing is swept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lifetime_sweep_gives_up_items_no_worker_holds() {
    use mailfleet_store::{Fence, StoreError, now};
    let dns = standard_dns().await;
    let sink = Sink::start(&[]).await;
    let cluster = Cluster::new(
        &dns,
        sink.port,
        &[("queue.lifetime", "3s"), ("queue.delay_warning", "")],
    )
    .await;
    let orphan = cluster
        .enqueue_with(
            ALICE,
            vec![QueueRecipient::new("orphan-x@remote.test")],
            "orphan",
            Some("HDRS"),
        )
        .await;
    let busy = cluster
        .enqueue(ALICE, &["busy-y@remote.test"], "busy")
        .await;
    // Node n9 claimed both; its lease on the orphan runs out in a second (it died), while it
    // still works on the other.
    let t = now();
    assert_eq!(
        cluster
            .store
            .claim_queue("n9", t, 1, 10)
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(
        cluster
            .store
            .renew_queue_lease(busy, "n9", t + 600)
            .await
            .unwrap()
    );
    let created = cluster
        .store
        .get_queue_item(orphan)
        .await
        .unwrap()
        .unwrap()
        .created;
    let lease = cluster
        .store
        .acquire_lease("master", "m1", t, 60)
        .await
        .unwrap()
        .unwrap();
    let fence = Fence {
        lease: "master".into(),
        holder: "m1".into(),
        token: lease.token,
    };
    let ctx = cluster.context("m1");
    // Before the lifetime (checked against the store's clock, with a second to spare).
    if now() < created + 2 {
        let swept = mailfleet_queue::sweep::sweep_expired(&ctx, &fence)
            .await
            .unwrap();
        assert_eq!(swept, 0, "swept before queue.lifetime");
    }
    wait_for(LIMIT, "the lifetime to pass", || async {
        (now() > created + 3).then_some(())
    })
    .await;
    // A master whose lease changed hands sweeps nothing.
    let stale = Fence {
        token: lease.token + 1,
        ..fence.clone()
    };
    let refused = mailfleet_queue::sweep::sweep_expired(&ctx, &stale).await;
    assert!(
        matches!(refused, Err(StoreError::Fenced { .. })),
        "{refused:?}"
    );
    assert_eq!(cluster.queue_len().await, 2);

    let swept = mailfleet_queue::sweep::sweep_expired(&ctx, &fence)
        .await
        .unwrap();
    assert_eq!(swept, 1);
    assert!(
        cluster
            .store
            .get_queue_item(orphan)
            .await
            .unwrap()
            .is_none()
    );
    let kept = cluster.store.get_queue_item(busy).await.unwrap().unwrap();
    assert_eq!(kept.lease_holder.as_deref(), Some("n9"));
    // The bounce is queued for alice; a worker delivers it (and leaves n9's item alone).
    let _w = cluster.worker("n1");
    let bounce = wait_for(LIMIT, "the bounce", || async {
        cluster.inbox().await.pop()
    })
    .await;
    assert!(
        bounce.contains("Final-Recipient: rfc822; orphan-x@remote.test\r\n"),
        "{bounce}"
    );
    assert!(
        bounce.contains("Action: failed\r\nStatus: 5.4.7\r\n"),
        "{bounce}"
    );
    assert!(sink.messages().is_empty(), "{:?}", sink.messages());
    assert_eq!(cluster.queue_len().await, 1);
}
