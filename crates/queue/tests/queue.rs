//! Outbound queue scenarios: real sockets on 127.0.0.1, a DNS responder serving the MX records,
//! the Python sink as remote server, SQLite stores. Each test bounds its own waits.

mod common;

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
    assert!(start.elapsed() < Duration::from_secs(5));
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
