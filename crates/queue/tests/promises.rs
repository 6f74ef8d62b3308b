//! What the queue promises about retries and delivery status notifications, with real sockets
//! on 127.0.0.1 (a DNS responder for the MX records, the Python sink as the next hop):
//! the back-off grows along `queue.retry_schedule` (its last step repeating), NOTIFY=SUCCESS and
//! NOTIFY=NEVER are honoured, and NOTIFY, ORCPT, ENVID and RET go on to a next hop that does
//! DSN.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mailfleet_store::{NewAccount, QueueRecipient};

const LIMIT: Duration = Duration::from_secs(20);

fn rcpt(address: &str, notify: &[&str], orcpt: Option<&str>) -> QueueRecipient {
    let mut r = QueueRecipient::new(address);
    r.notify = notify.iter().map(|n| n.to_string()).collect();
    r.orcpt = orcpt.map(str::to_string);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wait_between_attempts_grows_along_the_schedule_and_its_last_step_repeats() {
    let dns = standard_dns().await;
    let sink = Sink::start(&[]).await;
    let cluster = Cluster::new(
        &dns,
        sink.port,
        &[
            ("queue.retry_schedule", "1s,2s,4s"),
            ("queue.delay_warning", ""),
        ],
    )
    .await;
    let id = cluster
        .enqueue(ALICE, &["temp-x@remote.test"], "backoff")
        .await;
    let _w = cluster.worker("n1");
    // For attempts 1 to 4: when its result was seen, and the wait it chose (next_attempt less
    // the store's clock then; whole seconds, so the wait or one less).
    let wanted = [1i64, 2, 4, 4];
    let mut seen: Vec<(Instant, i64)> = Vec::new();
    let start = Instant::now();
    while seen.len() < wanted.len() {
        assert!(
            start.elapsed() < LIMIT,
            "attempts seen within {LIMIT:?}: {seen:?}"
        );
        let item = cluster.store.get_queue_item(id).await.unwrap().unwrap();
        let n = seen.len() as i64 + 1;
        if item.attempts == n && item.lease_holder.is_none() && item.last_error.is_some() {
            let wait = item.next_attempt - mailfleet_store::now();
            seen.push((Instant::now(), wait));
        } else {
            assert!(item.attempts <= n, "attempt {n} was not seen: {item:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (i, (want, (_, wait))) in wanted.iter().zip(&seen).enumerate() {
        assert!(
            *wait == *want || *wait == *want - 1,
            "after attempt {}: waits {:?}, wanted {wanted:?}",
            i + 1,
            seen.iter().map(|s| s.1).collect::<Vec<_>>()
        );
    }
    // And the worker kept to them: the time between attempts k and k+1 is the k-th step,
    // give or take the store's whole seconds.
    for k in 0..3 {
        let between = seen[k + 1].0 - seen[k].0;
        let step = Duration::from_secs(wanted[k] as u64);
        assert!(
            between + Duration::from_millis(1100) > step
                && between < step + Duration::from_millis(1500),
            "between attempts {} and {}: {between:?}, step {step:?}",
            k + 1,
            k + 2
        );
    }
    let tempfails = sink
        .events()
        .iter()
        .filter(|e| *e == "TEMPFAIL temp-x@remote.test")
        .count();
    assert!(tempfails >= 4, "{:?}", sink.events());
}

/// NOTIFY, ORCPT (in xtext), ENVID and RET reach a next hop that announces DSN; that hop then
/// reports success itself, so no notice is sent from here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dsn_parameters_are_passed_to_a_next_hop_that_does_dsn() {
    let dns = standard_dns().await;
    let sink = Sink::start(&[]).await;
    let cluster = Cluster::new(&dns, sink.port, &[]).await;
    let id = cluster
        .enqueue_with(
            ALICE,
            vec![
                rcpt(
                    "bob@remote.test",
                    &["SUCCESS", "FAILURE"],
                    Some("rfc822;bob@remote.test"),
                ),
                // Stored in wire form by the SMTP server: passed on as it is.
                rcpt(
                    "dave@remote.test",
                    &["DELAY"],
                    Some("rfc822;dave+2Bold@remote.test"),
                ),
                // Not valid xtext ('='): encoded on the way out.
                rcpt("eve@remote.test", &[], Some("rfc822;eve=x@remote.test")),
                rcpt("carol@remote.test", &[], None),
            ],
            "passon",
            Some("HDRS"),
        )
        .await;
    let _w = cluster.worker("n1");
    let msgs = wait_for(LIMIT, "four deliveries", || async {
        let m = sink.messages();
        (m.len() == 4).then_some(m)
    })
    .await;
    let rcpt_line = |who: &str| -> String {
        msgs.iter()
            .find_map(|m| {
                m.lines()
                    .find(|l| l.starts_with(&format!("X-Sink-Rcpt: RCPT TO:<{who}>")))
                    .map(str::to_string)
            })
            .unwrap_or_else(|| panic!("no RCPT for {who}: {msgs:?}"))
    };
    assert_eq!(
        rcpt_line("bob@remote.test"),
        "X-Sink-Rcpt: RCPT TO:<bob@remote.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@remote.test"
    );
    assert_eq!(
        rcpt_line("dave@remote.test"),
        "X-Sink-Rcpt: RCPT TO:<dave@remote.test> NOTIFY=DELAY ORCPT=rfc822;dave+2Bold@remote.test"
    );
    assert_eq!(
        rcpt_line("eve@remote.test"),
        "X-Sink-Rcpt: RCPT TO:<eve@remote.test> ORCPT=rfc822;eve+3Dx@remote.test"
    );
    assert_eq!(
        rcpt_line("carol@remote.test"),
        "X-Sink-Rcpt: RCPT TO:<carol@remote.test>"
    );
    for m in &msgs {
        let mail = m.lines().find(|l| l.starts_with("X-Sink-Mail: ")).unwrap();
        assert!(
            mail.contains(" RET=HDRS") && mail.contains(" ENVID=env-passon"),
            "{mail}"
        );
    }
    // Done, and no notice was queued with the outcome (the next hop reports success).
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
    assert_eq!(cluster.queue_len().await, 0, "a notice was queued");
    assert!(cluster.inbox().await.is_empty());
}

/// NOTIFY=NEVER and NOTIFY=SUCCESS alone: a failure is not reported. NOTIFY=SUCCESS: a local
/// delivery is reported `delivered`, a hand-over to a next hop without DSN `relayed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_success_and_never_are_honoured() {
    let dns = standard_dns().await;
    let sink = Sink::start(&[]).await;
    let plain = Sink::start(&["--no-dsn"]).await;
    let cluster = Cluster::new(
        &dns,
        sink.port,
        &[(
            "queue.transport.plain.test",
            &format!("127.0.0.1:{}", plain.port),
        )],
    )
    .await;
    cluster
        .store
        .create_account(&NewAccount {
            address: "bob@local.test".into(),
            password_hash: "x".into(),
            quota_bytes: 0,
            shard: "default".into(),
        })
        .await
        .unwrap();
    let _w = cluster.worker("n1");

    // Failures nobody asked to hear about.
    let quiet = cluster
        .enqueue_with(
            ALICE,
            vec![
                rcpt("perm-never@remote.test", &["NEVER"], None),
                rcpt("perm-success@remote.test", &["SUCCESS"], None),
            ],
            "quiet",
            None,
        )
        .await;
    wait_for(LIMIT, "the failures to be recorded", || async {
        cluster
            .store
            .get_queue_item(quiet)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    let refused: Vec<String> = sink
        .events()
        .into_iter()
        .filter(|e| e.starts_with("PERMFAIL"))
        .collect();
    assert_eq!(refused.len(), 2, "both were tried: {refused:?}");
    // A notice would have been queued in the same transaction that removed the item.
    assert_eq!(cluster.queue_len().await, 0, "a notice was queued");
    assert!(cluster.inbox().await.is_empty());

    // Successes asked for, and one failure as a control.
    cluster
        .enqueue_with(
            ALICE,
            vec![
                rcpt("bob@local.test", &["SUCCESS"], None),
                rcpt("x@plain.test", &["SUCCESS"], Some("rfc822;x@plain.test")),
                rcpt("y@plain.test", &["FAILURE"], None),
                rcpt("perm-f@remote.test", &["FAILURE"], None),
                rcpt("perm-n@remote.test", &["NEVER"], None),
            ],
            "loud",
            None,
        )
        .await;
    let notice = wait_for(LIMIT, "the notice in alice's INBOX", || async {
        cluster.inbox().await.pop()
    })
    .await;
    let has = |s: &str| notice.contains(s);
    assert!(
        has("Final-Recipient: rfc822; bob@local.test\r\nAction: delivered\r\nStatus: 2.0.0\r\n"),
        "{notice}"
    );
    assert!(
        has("Original-Recipient: rfc822; x@plain.test\r\n\
             Final-Recipient: rfc822; x@plain.test\r\nAction: relayed\r\n"),
        "{notice}"
    );
    assert!(
        has("Final-Recipient: rfc822; perm-f@remote.test\r\nAction: failed\r\n"),
        "{notice}"
    );
    for quiet in ["y@plain.test", "perm-n@remote.test"] {
        assert!(
            !has(&format!("Final-Recipient: rfc822; {quiet}")),
            "{quiet} reported: {notice}"
        );
    }
    // The plain hop got no DSN parameters (it did not announce DSN).
    let m = wait_for(LIMIT, "two deliveries at the plain hop", || async {
        let m = plain.messages();
        (m.len() == 2).then_some(m)
    })
    .await;
    for one in &m {
        assert!(!one.contains("NOTIFY=") && !one.contains("ENVID="), "{one}");
    }
    wait_for(LIMIT, "an empty queue", || async {
        (cluster.queue_len().await == 0).then_some(())
    })
    .await;
    assert_eq!(cluster.inbox().await.len(), 1, "one notice");
}
