//! The master's watchdog through the real binary: two `mailfleet node` processes on one SQLite
//! store, `watchdog.interval` 1 s, alerts mailed to a local admin account read back over IMAP
//! (Python's imaplib). A killed node is alerted once (dead), not at every round; its return is
//! alerted once (recovered); a killed master is alerted by its successor, with the master
//! change.

mod cli_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cli_support::Env;
use mailfleet_test_support::{ChildGuard, NODE_PORTS, free_port_offset};
use serde_json::Value;

struct Node {
    id: &'static str,
    offset: u16,
    child: ChildGuard,
}

/// Starts (or restarts) `mailfleet node` with server ID `id`; killed when dropped.
fn start_node(env: &Env, id: &'static str, offset: u16) -> Node {
    let dir = env.dir.path().join(id);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!(
            "server_id = \"{id}\"\nhostname = \"{id}.watch.test\"\nstore = \"{}\"\n\
             data_dir = \"{}\"\nbind = \"127.0.0.1\"\nport_offset = {offset}\n",
            env.url,
            dir.join("data").display()
        ),
    )
    .unwrap();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("node.log"))
        .unwrap();
    let child = ChildGuard::spawn(
        Command::new(env!("CARGO_BIN_EXE_mailfleet"))
            .args(["node", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn,mailfleet_cluster::watchdog=debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log),
    )
    .unwrap();
    Node { id, offset, child }
}

fn log_of(env: &Env, id: &str) -> String {
    std::fs::read_to_string(env.dir.path().join(id).join("node.log")).unwrap_or_default()
}

fn logs(env: &Env) -> String {
    format!(
        "--- wa:\n{}\n--- wb:\n{}",
        log_of(env, "wa"),
        log_of(env, "wb")
    )
}

fn status(env: &Env) -> Value {
    let out = env.ok(&["status", "--json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("status --json: {e}: {out}"))
}

/// Polls `check` every 200 ms until it gives a value; panics after `limit` with the logs.
fn wait_for<T>(env: &Env, what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        if start.elapsed() > limit {
            panic!(
                "timed out after {limit:?} waiting for {what}\n{}",
                logs(env)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The bodies of every message in admin@watch.test's INBOX, read over IMAPS on `port` (the
/// node's self-signed certificate is not checked).
fn admin_mail(port: u16) -> Result<Vec<String>, String> {
    let script = r#"
import imaplib, json, ssl, sys
ctx = ssl._create_unverified_context()
m = imaplib.IMAP4_SSL("127.0.0.1", int(sys.argv[1]), ssl_context=ctx, timeout=10)
m.login("admin@watch.test", "pw")
m.select("INBOX")
typ, data = m.search(None, "ALL")
out = []
for n in data[0].split():
    typ, parts = m.fetch(n, "(BODY.PEEK[])")
    out.append(parts[0][1].decode("utf-8", "replace"))
m.logout()
print(json.dumps(out))
"#;
    let out = Command::new("python3")
        .args(["-c", script, &port.to_string()])
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("{e}"))
}

/// How many alert lines in `mails` start with `prefix`.
fn alerts(mails: &[String], prefix: &str) -> usize {
    mails
        .iter()
        .flat_map(|m| m.lines())
        .filter(|l| l.starts_with(prefix))
        .count()
}

/// Debug lines the watchdog logs once per round it runs as master.
fn rounds(env: &Env, id: &str) -> usize {
    log_of(env, id).matches("watchdog round").count()
}

#[test]
fn a_killed_node_is_alerted_once_and_its_return_and_a_new_master_too() {
    let env = Env::sqlite();
    env.ok(&["domain", "add", "watch.test"]);
    let r = env.run_stdin(
        &["account", "add", "admin@watch.test", "--password-stdin"],
        "pw\n",
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    for (k, v) in [
        ("watchdog.interval", "1s"),
        ("watchdog.connect_timeout", "2s"),
        ("watchdog.disk_percent", "0"),
        ("cluster.admin_address", "admin@watch.test"),
    ] {
        env.ok(&["settings", "set", k, v]);
    }
    let mut nodes = [
        start_node(&env, "wa", free_port_offset(NODE_PORTS)),
        start_node(&env, "wb", free_port_offset(NODE_PORTS)),
    ];
    let master = wait_for(
        &env,
        "both nodes alive and a master",
        Duration::from_secs(60),
        || {
            let s = status(&env);
            let alive = s["nodes"]
                .as_array()?
                .iter()
                .filter(|n| n["alive"] == true)
                .count();
            let m = s["master"]["server_id"].as_str()?.to_string();
            (alive == 2).then_some(m)
        },
    );
    // The master is kept in nodes[0], the other one (the victim) in nodes[1].
    if nodes[0].id != master {
        nodes.swap(0, 1);
    }
    let (m_id, m_port) = (nodes[0].id, 993 + nodes[0].offset);
    let (v_id, v_offset) = (nodes[1].id, nodes[1].offset);
    // Rounds with both nodes fine: nothing to alert.
    let before = rounds(&env, m_id);
    wait_for(&env, "three quiet rounds", Duration::from_secs(30), || {
        (rounds(&env, m_id) >= before + 3).then_some(())
    });
    assert_eq!(admin_mail(m_port), Ok(vec![]), "{}", logs(&env));

    // The victim killed: one alert that it died, whatever the rounds after.
    nodes[1].child.kill().unwrap();
    nodes[1].child.wait().unwrap();
    let dead = format!("FAILING: node {v_id}:");
    let mails = wait_for(
        &env,
        "the dead node's alert",
        Duration::from_secs(60),
        || admin_mail(m_port).ok().filter(|m| alerts(m, &dead) > 0),
    );
    let seen = rounds(&env, m_id);
    wait_for(&env, "five more rounds", Duration::from_secs(60), || {
        (rounds(&env, m_id) >= seen + 5).then_some(())
    });
    let mails_after = admin_mail(m_port).unwrap();
    assert_eq!(alerts(&mails_after, &dead), 1, "{mails_after:#?}");
    assert_eq!(mails_after.len(), mails.len(), "{mails_after:#?}");
    // Each of its services alerted at most once (before its death was known).
    for service in [
        "smtp",
        "submission",
        "submissions",
        "imap",
        "imaps",
        "pop3",
        "pop3s",
    ] {
        let prefix = format!("FAILING: {service} on node {v_id} ");
        assert!(alerts(&mails_after, &prefix) <= 1, "{mails_after:#?}");
    }
    assert_eq!(
        log_of(&env, m_id)
            .matches(&format!("watchdog: {dead}"))
            .count(),
        1,
        "{}",
        logs(&env)
    );
    let subject = mails_after
        .iter()
        .find(|m| m.contains(&dead))
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("Subject: "))
                .map(str::to_string)
        })
        .unwrap();
    assert!(
        subject.starts_with("Subject: [mailfleet] FAILING: "),
        "{subject}"
    );

    // Back: one "recovered", and its services say nothing.
    nodes[1] = start_node(&env, v_id, v_offset);
    let back = format!("RECOVERED: node {v_id} ");
    let mails = wait_for(&env, "the recovery alert", Duration::from_secs(60), || {
        admin_mail(m_port).ok().filter(|m| alerts(m, &back) > 0)
    });
    assert_eq!(alerts(&mails, &back), 1, "{mails:#?}");
    assert_eq!(alerts(&mails, &format!("FAILING: node {v_id}:")), 1);

    // The master killed: the other node takes the lease and alerts both events.
    nodes[0].child.kill().unwrap();
    nodes[0].child.wait().unwrap();
    let v_port = 993 + v_offset;
    let changed = format!("MASTER CHANGED: {m_id} -> {v_id}");
    let m_dead = format!("FAILING: node {m_id}:");
    let mails = wait_for(
        &env,
        "the new master's alerts",
        Duration::from_secs(90),
        || {
            admin_mail(v_port)
                .ok()
                .filter(|m| alerts(m, &changed) > 0 && alerts(m, &m_dead) > 0)
        },
    );
    assert_eq!(alerts(&mails, &changed), 1, "{mails:#?}");
    assert_eq!(alerts(&mails, &m_dead), 1, "{mails:#?}");
    eprintln!("the admin's mail at the end:\n{}", mails.join("\n-----\n"));
}
