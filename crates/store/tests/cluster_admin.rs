//! Drain requests, queue lease release and the balancers' reports, on SQLite and PostgreSQL
//! with the same test bodies.

use std::sync::Arc;

use mailfleet_store::*;
use mailfleet_test_support::{TestStore, both_backends};

both_backends!(
    workers = 2;
    drain_requests_are_kept_per_node_until_cleared,
    a_holders_queue_leases_are_released_at_once,
    a_balancers_report_replaces_its_earlier_one,
);

async fn open_store(b: &TestStore) -> Arc<dyn Store> {
    mailfleet_store::open(&b.url).await.unwrap()
}

async fn drain_requests_are_kept_per_node_until_cleared(b: TestStore) {
    let s = open_store(&b).await;
    assert_eq!(s.drain_request("n1").await.unwrap(), None);
    let first = DrainRequest {
        server_id: "n1".into(),
        requested: 1000,
        deadline: 1600,
    };
    s.request_drain(&first).await.unwrap();
    assert_eq!(s.drain_request("n1").await.unwrap(), Some(first.clone()));
    assert_eq!(s.drain_request("n2").await.unwrap(), None);
    // A second request replaces the first.
    let second = DrainRequest {
        requested: 1010,
        deadline: 1020,
        ..first.clone()
    };
    s.request_drain(&second).await.unwrap();
    assert_eq!(s.drain_request("n1").await.unwrap(), Some(second.clone()));
    // A node started at 1010 clears requests made before it started, not this one.
    assert!(!s.clear_drain("n1", 1010).await.unwrap());
    assert_eq!(s.drain_request("n1").await.unwrap(), Some(second));
    assert!(!s.clear_drain("n2", i64::MAX).await.unwrap());
    assert!(s.clear_drain("n1", 1011).await.unwrap());
    assert_eq!(s.drain_request("n1").await.unwrap(), None);
}

async fn a_holders_queue_leases_are_released_at_once(b: TestStore) {
    let s = open_store(&b).await;
    for i in 0..4 {
        s.enqueue(
            &format!("blob{i}"),
            10,
            &NewQueueItem {
                sender: "a@example.test".into(),
                recipients: vec![QueueRecipient::new("x@remote.test")],
                envid: None,
                ret: None,
                next_attempt: 100,
            },
        )
        .await
        .unwrap();
    }
    let mine = s.claim_queue("n1-a", 100, 300, 3).await.unwrap();
    assert_eq!(mine.len(), 3);
    let theirs = s.claim_queue("n2-b", 100, 300, 3).await.unwrap();
    assert_eq!(theirs.len(), 1);
    // Under their leases, nobody else gets them.
    assert!(
        s.claim_queue("n3-c", 101, 300, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.release_queue_leases("n1-a").await.unwrap(), 3);
    assert_eq!(s.release_queue_leases("n1-a").await.unwrap(), 0);
    for item in &mine {
        let now = s.get_queue_item(item.id).await.unwrap().unwrap();
        assert_eq!((now.lease_holder, now.lease_until), (None, None));
    }
    // Long before their leases would have run out, another node takes the released three,
    // and only those: the other holder keeps its own.
    let taken = s.claim_queue("n3-c", 101, 300, 10).await.unwrap();
    let mut ids: Vec<i64> = taken.iter().map(|i| i.id).collect();
    ids.sort();
    let mut want: Vec<i64> = mine.iter().map(|i| i.id).collect();
    want.sort();
    assert_eq!(ids, want);
    let kept = s.get_queue_item(theirs[0].id).await.unwrap().unwrap();
    assert_eq!(kept.lease_holder.as_deref(), Some("n2-b"));
}

async fn a_balancers_report_replaces_its_earlier_one(b: TestStore) {
    let s = open_store(&b).await;
    let view =
        |balancer: &str, server: &str, state: &str, active: i64, updated| BalancerServerView {
            balancer: balancer.into(),
            service: "imap".into(),
            server: server.into(),
            address: format!("127.0.0.2:{}", 143 + active),
            state: state.into(),
            active,
            updated,
        };
    assert!(s.list_balancer_servers().await.unwrap().is_empty());
    s.report_balancer(
        "lb1",
        &[
            view("lb1", "n1", "up", 3, 100),
            view("lb1", "n2", "up", 1, 100),
        ],
    )
    .await
    .unwrap();
    s.report_balancer("lb2", &[view("lb2", "n1", "down", 0, 101)])
        .await
        .unwrap();
    // lb1's next report no longer has n2: its row goes; lb2's stays.
    s.report_balancer("lb1", &[view("lb1", "n1", "drain", 2, 105)])
        .await
        .unwrap();
    assert_eq!(
        s.list_balancer_servers().await.unwrap(),
        vec![
            view("lb1", "n1", "drain", 2, 105),
            view("lb2", "n1", "down", 0, 101)
        ]
    );
    s.report_balancer("lb1", &[]).await.unwrap();
    assert_eq!(
        s.list_balancer_servers().await.unwrap(),
        vec![view("lb2", "n1", "down", 0, 101)]
    );
}
