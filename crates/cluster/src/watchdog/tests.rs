use super::*;

fn checks(list: &[(&str, Option<&str>)]) -> BTreeMap<String, Health> {
    list.iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                match v {
                    None => Health::Ok,
                    Some(d) => Health::Failing(d.to_string()),
                },
            )
        })
        .collect()
}

#[test]
fn a_failure_alerts_once_then_once_more_when_it_recovers() {
    let mut s = AlertState::default();
    assert_eq!(s.observe(&checks(&[("imap on n1", None)])), vec![]);
    let down = checks(&[("imap on n1", Some("connect: refused"))]);
    assert_eq!(
        s.observe(&down),
        vec![Alert::Failing {
            what: "imap on n1".into(),
            detail: "connect: refused".into()
        }]
    );
    // Still failing, even with other words: nothing new.
    for _ in 0..5 {
        assert_eq!(s.observe(&down), vec![]);
    }
    assert_eq!(
        s.observe(&checks(&[("imap on n1", Some("no greeting"))])),
        vec![]
    );
    assert_eq!(
        s.observe(&checks(&[("imap on n1", None)])),
        vec![Alert::Recovered {
            what: "imap on n1".into(),
            detail: "connect: refused".into()
        }]
    );
    assert_eq!(s.observe(&checks(&[("imap on n1", None)])), vec![]);
    // Failing again is a new event.
    assert_eq!(s.observe(&down).len(), 1);
}

#[test]
fn a_dead_nodes_services_are_forgotten_without_a_recovery() {
    let mut s = AlertState::default();
    let first = s.observe(&checks(&[
        ("node n2", None),
        ("imap on n2", Some("connect: refused")),
        ("pop3 on n2", Some("connect: refused")),
    ]));
    assert_eq!(first.len(), 2);
    // n2 is dead now: its services are not checked any more.
    let dead = checks(&[("node n2", Some("no heartbeat"))]);
    assert_eq!(
        s.observe(&dead),
        vec![Alert::Failing {
            what: "node n2".into(),
            detail: "no heartbeat".into()
        }]
    );
    assert_eq!(s.observe(&dead), vec![]);
    // Back, with its services answering: the node recovers, the services say nothing.
    let back = checks(&[
        ("node n2", None),
        ("imap on n2", None),
        ("pop3 on n2", None),
    ]);
    assert_eq!(
        s.observe(&back),
        vec![Alert::Recovered {
            what: "node n2".into(),
            detail: "no heartbeat".into()
        }]
    );
}

#[test]
fn the_master_changing_alerts_once() {
    let mut s = AlertState::default();
    assert_eq!(s.observe_master(Some("n1")), None, "the first holder seen");
    assert_eq!(s.observe_master(Some("n1")), None);
    assert_eq!(s.observe_master(None), None, "a lapse");
    assert_eq!(
        s.observe_master(Some("n2")),
        Some(Alert::MasterChanged {
            from: "n1".into(),
            to: "n2".into()
        })
    );
    assert_eq!(s.observe_master(Some("n2")), None);
    // Forgetting the checks keeps the master.
    s.forget_checks();
    assert!(s.observe_master(Some("n1")).is_some());
}

#[test]
fn keys_are_checked_and_the_policy_reads_them() {
    assert_eq!(validate("smtp.max_recipients", "5"), None);
    assert!(validate("watchdog.interval", "10s").unwrap().is_ok());
    assert!(validate("watchdog.interval", "0s").unwrap().is_err());
    assert!(validate("watchdog.disk_percent", "101").unwrap().is_err());
    assert!(validate("watchdog.queue_threshold", "-1").unwrap().is_err());
    assert!(validate("watchdog.bogus", "1").unwrap().is_err());
    assert!(validate("cluster.admin_address", "").unwrap().is_ok());
    assert!(
        validate("cluster.admin_address", "not an address")
            .unwrap()
            .unwrap_err()
            .contains("cluster.admin_address")
    );
    let defaults = WatchdogPolicy::from_settings(&Settings::default());
    assert_eq!(defaults.interval, Duration::from_secs(30));
    assert_eq!(
        (defaults.queue_threshold, defaults.disk_percent),
        (1000, 90.0)
    );
    assert_eq!(defaults.admin_address, None);
    let set = Settings::from_map(
        3,
        [
            ("watchdog.interval", "2s"),
            ("watchdog.queue_threshold", "0"),
            ("cluster.admin_address", "Admin@Example.TEST"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    );
    let p = WatchdogPolicy::from_settings(&set);
    assert_eq!(p.interval, Duration::from_secs(2));
    assert_eq!(p.queue_threshold, 0);
    assert_eq!(p.admin_address.as_deref(), Some("admin@example.test"));
}

fn node(id: &str, last_seen: Timestamp, info: serde_json::Value) -> NodeInfo {
    NodeInfo {
        server_id: id.into(),
        hostname: format!("{id}.test"),
        info,
        started: 0,
        last_seen,
    }
}

#[tokio::test]
async fn checks_cover_dead_nodes_disks_and_the_queue() {
    let policy = WatchdogPolicy::from_settings(&Settings::default());
    let nodes = [
        node(
            "n1",
            100,
            serde_json::json!({"services": [], "disk": {"path": "/srv", "used_percent": 95.0}}),
        ),
        node(
            "n2",
            90,
            serde_json::json!({"services": [{"service": "imap", "address": "127.0.0.1:1"}]}),
        ),
    ];
    let c = run_checks(&nodes, 1001, &policy, 101).await;
    assert_eq!(c["node n1"], Health::Ok);
    assert!(matches!(&c["node n2"], Health::Failing(d) if d.contains("11 s")));
    assert!(matches!(&c["disk of node n1 (/srv)"], Health::Failing(d) if d.contains("95.0%")));
    assert!(matches!(&c["the queue"], Health::Failing(d) if d.contains("1001")));
    // The dead node's services are not checked.
    assert_eq!(c.len(), 4, "{c:?}");
    let c = run_checks(&nodes[..1], 1000, &policy, 101).await;
    assert_eq!(c["the queue"], Health::Ok);
    // Draining: alive, its closed services unchecked; drained: not checked at all.
    let draining = node(
        "n3",
        100,
        serde_json::json!({"state": "draining",
                "services": [{"service": "imap", "address": "127.0.0.1:1"}]}),
    );
    let drained = node("n4", 50, serde_json::json!({"state": "drained"}));
    let c = run_checks(&[draining, drained], 0, &policy, 101).await;
    assert_eq!(c.keys().collect::<Vec<_>>(), vec!["node n3", "the queue"]);
    assert_eq!(c["node n3"], Health::Ok);
    // A wildcard address (bind = "*" and no advertise) is not connected to: it would be
    // the watchdog's own machine, not the node's.
    let wild = node(
        "n5",
        100,
        serde_json::json!({"services": [{"service": "smtp", "address": "[::]:25"}]}),
    );
    let c = run_checks(&[wild], 0, &policy, 101).await;
    assert!(
        matches!(&c["smtp on node n5 ([::]:25)"], Health::Failing(d) if d.contains("advertise")),
        "{c:?}"
    );
    // A node whose clock is off by more than the leases tolerate (a heartbeat says how far
    // it is from the database server's); one within it is fine.
    let off = node("n6", 100, serde_json::json!({"clock_skew_ms": -2500}));
    let near = node("n7", 100, serde_json::json!({"clock_skew_ms": 300}));
    let c = run_checks(&[off, near], 0, &policy, 101).await;
    assert!(
        matches!(&c["clock of node n6"], Health::Failing(d) if d.contains("+2.5 s")),
        "{c:?}"
    );
    assert_eq!(c["clock of node n7"], Health::Ok);
}

#[test]
fn the_alert_mail_has_one_subject_line_and_every_alert() {
    let alerts = vec![
        Alert::Failing {
            what: "node n2".into(),
            detail: "no heartbeat\r\nBcc: x@y".into(),
        },
        Alert::MasterChanged {
            from: "n2".into(),
            to: "n1".into(),
        },
    ];
    let m = alert_message("mx1.test", "n1", "admin@example.test", &alerts, 0, 1);
    let (head, body) = m.split_once("\r\n\r\n").unwrap();
    assert!(
        head.contains(
            "Subject: [mailfleet] FAILING: node n2: no heartbeat  Bcc: x@y (and 1 more)\r\n"
        ),
        "{head}"
    );
    assert!(!head.contains("\r\nBcc:"));
    assert!(body.contains("MASTER CHANGED: n2 -> n1"));
    assert!(head.contains("To: <admin@example.test>"));
}

#[test]
fn the_disk_of_a_real_path_is_read() {
    let d = disk_usage(Path::new("/")).unwrap();
    assert!((0.0..=100.0).contains(&d.used_percent), "{d:?}");
    assert!(disk_usage(Path::new("/no/such/dir")).is_err());
}
