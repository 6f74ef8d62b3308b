//! `mailfleet settings ...` and `mailfleet queue ...` against SQLite and PostgreSQL.

mod cli_support;

use cli_support::Env;
use mailfleet_store::{NewQueueItem, QueueRecipient};

both_backends!(settings, queue);

fn settings(env: &Env) {
    let list = env.json(&["settings", "list"]);
    let placement = list.iter().find(|s| s["key"] == "placement").unwrap();
    assert_eq!(placement["value"], "weighted");
    assert_eq!(placement["default"], "weighted");
    assert_eq!(placement["set"], false);
    assert_eq!(env.ok(&["settings", "get", "placement"]), "weighted\n");

    let out = env.ok(&["settings", "set", "placement", "least-used"]);
    assert!(out.starts_with("placement = least-used (version "), "{out}");
    assert_eq!(env.ok(&["settings", "get", "placement"]), "least-used\n");
    assert_eq!(env.ok(&["placement", "show"]), "placement: least-used\n");
    let list = env.json(&["settings", "list"]);
    let placement = list.iter().find(|s| s["key"] == "placement").unwrap();
    assert_eq!(placement["value"], "least-used");
    assert_eq!(placement["set"], true);
    assert!(placement["version"].as_i64().unwrap() > 0);
    let table = env.ok(&["settings", "list"]);
    assert!(
        table.lines().any(|l| l.starts_with("placement")
            && l.contains("least-used")
            && l.ends_with("default: weighted")),
        "{table}"
    );

    assert_eq!(
        env.fail(&["settings", "set", "placement", "round-robin"]),
        "bad value: placement \"round-robin\": expected random, weighted, least-used or domain"
    );
    assert_eq!(
        env.fail(&["settings", "set", "no.such.key", "1"]),
        "unknown setting: no.such.key (see `mailfleet settings list`)"
    );
    assert_eq!(
        env.fail(&["settings", "get", "no.such.key"]),
        "unknown setting: no.such.key (see `mailfleet settings list`)"
    );

    assert_eq!(
        env.ok(&["settings", "unset", "placement"]),
        "placement unset (default: weighted)\n"
    );
    assert_eq!(env.ok(&["settings", "get", "placement"]), "weighted\n");

    // The SMTP and queue services' keys are known, with their defaults, and checked by them.
    let list = env.json(&["settings", "list"]);
    let smtp = list
        .iter()
        .find(|s| s["key"] == "smtp.max_recipients")
        .unwrap();
    assert_eq!(smtp["value"], "100");
    assert_eq!(smtp["set"], false);
    assert!(list.iter().any(|s| s["key"] == "queue.retry_schedule"));
    env.ok(&["settings", "set", "smtp.max_recipients", "20"]);
    assert_eq!(env.ok(&["settings", "get", "smtp.max_recipients"]), "20\n");
    let e = env.fail(&["settings", "set", "smtp.max_recipients", "lots"]);
    assert!(e.starts_with("bad value: smtp.max_recipients: "), "{e}");
    let e = env.fail(&["settings", "set", "queue.lifetime", "forever"]);
    assert!(e.starts_with("bad value: queue.lifetime: "), "{e}");
    assert!(
        env.fail(&["settings", "set", "queue.no_such_thing", "1"])
            .starts_with("bad value: queue.no_such_thing: unknown queue setting")
    );
    // Per-domain transport entries are accepted and listed; secrets are not echoed.
    env.ok(&[
        "settings",
        "set",
        "queue.transport.example.com",
        "relay.example.net:2525",
    ]);
    assert_eq!(
        env.fail(&["settings", "get", "queue.transport.other.example"]),
        "not set: queue.transport.other.example"
    );
    let out = env.ok(&["settings", "set", "queue.smarthost.password", "hunter2"]);
    assert!(
        out.starts_with("queue.smarthost.password = *** (version "),
        "{out}"
    );
    let list = env.json(&["settings", "list"]);
    let t = list
        .iter()
        .find(|s| s["key"] == "queue.transport.example.com")
        .unwrap();
    assert_eq!(t["value"], "relay.example.net:2525");
    assert_eq!(t["description"], "per-domain entry");
    let pw = list
        .iter()
        .find(|s| s["key"] == "queue.smarthost.password")
        .unwrap();
    assert_eq!(pw["value"], "***");
    assert!(!env.ok(&["settings", "list"]).contains("hunter2"));
    assert_eq!(
        env.ok(&["settings", "get", "queue.smarthost.password"]),
        "hunter2\n"
    );

    // A key some other mailfleet version wrote is listed, not hidden.
    env.with_store(async |s| {
        s.set_setting("future.key", "x").await.unwrap();
    });
    let list = env.json(&["settings", "list"]);
    let future = list.iter().find(|s| s["key"] == "future.key").unwrap();
    assert_eq!(future["value"], "x");
    assert_eq!(future["default"], serde_json::Value::Null);
    assert_eq!(env.ok(&["settings", "get", "future.key"]), "x\n");

    // A login key set under its former name: the new key shows the value in effect.
    env.ok(&["settings", "set", "smtp.auth.lockout_failures", "0"]);
    let list = env.json(&["settings", "list"]);
    let new = list
        .iter()
        .find(|s| s["key"] == "auth.lockout_failures")
        .unwrap();
    assert_eq!(new["value"], "0");
    assert_eq!(new["set_as"], "smtp.auth.lockout_failures");
    let old = list
        .iter()
        .find(|s| s["key"] == "smtp.auth.lockout_failures")
        .unwrap();
    assert_eq!(old["description"], "former name of auth.lockout_failures");
    let table = env.ok(&["settings", "list"]);
    assert!(
        table.contains("set as smtp.auth.lockout_failures; default: 5"),
        "{table}"
    );
    let line = table
        .lines()
        .find(|l| l.starts_with("smtp.auth.lockout_failures"))
        .unwrap();
    assert!(
        line.ends_with("(former name of auth.lockout_failures)"),
        "{table}"
    );
}

fn queue(env: &Env) {
    assert!(env.json(&["queue", "list"]).is_empty());
    let later = mailfleet_store::now() + 3600;
    let (first, second) = env.with_store(async |s| {
        let item = |sender: &str, rcpts: &[&str]| NewQueueItem {
            sender: sender.into(),
            recipients: rcpts.iter().map(|r| QueueRecipient::new(*r)).collect(),
            envid: Some("env-1".into()),
            ret: None,
            next_attempt: later,
        };
        let blob = "ab".repeat(32);
        let a = s
            .enqueue(
                &blob,
                1234,
                &item("a@x.test", &["r1@remote.example", "r2@remote.example"]),
            )
            .await
            .unwrap();
        let b = s
            .enqueue(&blob, 10, &item("", &["bounce@remote.example"]))
            .await
            .unwrap();
        (a, b)
    });
    let list = env.json(&["queue", "list"]);
    assert_eq!(list.len(), 2);
    let ids: Vec<i64> = list.iter().map(|q| q["id"].as_i64().unwrap()).collect();
    assert!(ids.contains(&first) && ids.contains(&second));
    let a = list.iter().find(|q| q["id"] == first).unwrap();
    assert_eq!(a["sender"], "a@x.test");
    assert_eq!(a["size"], 1234);
    assert_eq!(a["recipients"].as_array().unwrap().len(), 2);
    assert_eq!(a["next_attempt"], later);

    let table = env.ok(&["queue", "list"]);
    assert!(table.starts_with("ID  SENDER"), "{table}");
    assert!(
        table.contains("<>"),
        "a bounce shows its empty sender: {table}"
    );

    let shown: serde_json::Value =
        serde_json::from_str(&env.ok(&["queue", "show", &first.to_string(), "--json"])).unwrap();
    assert_eq!(shown["id"], first);
    assert_eq!(shown["envid"], "env-1");
    assert_eq!(shown["recipients"][1]["address"], "r2@remote.example");
    let text = env.ok(&["queue", "show", &first.to_string()]);
    assert!(text.contains("sender:        a@x.test\n"), "{text}");
    assert!(text.contains("  r1@remote.example  pending\n"), "{text}");

    assert_eq!(
        env.ok(&["queue", "retry", &first.to_string()]),
        format!("queue item {first} is due now\n")
    );
    let after = env.with_store(async |s| s.get_queue_item(first).await.unwrap().unwrap());
    assert!(after.next_attempt <= mailfleet_store::now());

    assert_eq!(
        env.ok(&["queue", "delete", &second.to_string()]),
        format!("queue item {second} deleted\n")
    );
    assert_eq!(
        env.fail(&["queue", "delete", &second.to_string()]),
        format!("queue item not found: {second}")
    );
    assert_eq!(
        env.fail(&["queue", "show", &second.to_string()]),
        format!("queue item not found: {second}")
    );
    assert_eq!(
        env.fail(&["queue", "retry", "999999"]),
        "queue item not found: 999999"
    );
    assert_eq!(env.json(&["queue", "list"]).len(), 1);
}
