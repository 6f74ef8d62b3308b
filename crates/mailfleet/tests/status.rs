//! `mailfleet status` through the real binary, against two `mailfleet node` processes on one
//! SQLite store (each with its own port offset on 127.0.0.1): both alive with their pids and
//! services, one master, a client's connection counted in its node's heartbeat, the settings
//! version each node applied, and a killed node shown dead within a bounded wait.

mod cli_support;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cli_support::Env;
use mailfleet_test_support::{ChildGuard, NODE_PORTS, free_port_offset};
use serde_json::Value;

/// Starts `mailfleet node` with server ID `id` on the store of `env`; killed when dropped.
fn start_node(env: &Env, id: &str, offset: u16) -> ChildGuard {
    let dir = env.dir.path().join(id);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!(
            "server_id = \"{id}\"\nhostname = \"{id}.status.test\"\nstore = \"{}\"\n\
             data_dir = \"{}\"\nbind = \"127.0.0.1\"\nport_offset = {offset}\n",
            env.url,
            dir.join("data").display()
        ),
    )
    .unwrap();
    ChildGuard::spawn(
        Command::new(env!("CARGO_BIN_EXE_mailfleet"))
            .args(["node", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("node.log")).unwrap()),
    )
    .unwrap()
}

fn node_log(env: &Env, id: &str) -> String {
    std::fs::read_to_string(env.dir.path().join(id).join("node.log")).unwrap_or_default()
}

/// `mailfleet status --json`, parsed.
fn status(env: &Env) -> Value {
    let out = env.ok(&["status", "--json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {out}"))
}

fn node<'a>(status: &'a Value, id: &str) -> Option<&'a Value> {
    status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["server_id"] == id)
}

/// Polls `status --json` every 200 ms until `check` holds; panics after `limit` with the last
/// status and the nodes' logs.
fn wait_status(env: &Env, what: &str, limit: Duration, check: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let s = status(env);
        if check(&s) {
            return s;
        }
        if start.elapsed() > limit {
            panic!(
                "timed out waiting for {what}; status: {s:#}\nlogs:\n{}\n{}",
                node_log(env, "sa"),
                node_log(env, "sb")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn connections(status: &Value, id: &str, service: &str) -> Option<u64> {
    node(status, id)?["services"]
        .as_array()?
        .iter()
        .find(|s| s["service"] == service)?["connections"]
        .as_u64()
}

fn read_greeting(stream: &TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line
}

fn alive(status: &Value, id: &str) -> bool {
    node(status, id).is_some_and(|n| n["alive"] == true)
}

#[test]
fn status_shows_nodes_master_connections_and_a_killed_node_dead() {
    let env = Env::sqlite();
    // The store exists (migrated) before the nodes start, so they do not race to create it.
    env.with_store(async |_| {});
    let (offset_a, offset_b) = (free_port_offset(NODE_PORTS), free_port_offset(NODE_PORTS));
    let a = start_node(&env, "sa", offset_a);
    let mut b = start_node(&env, "sb", offset_b);
    let both = wait_status(
        &env,
        "both nodes alive with a master",
        Duration::from_secs(60),
        |s| alive(s, "sa") && alive(s, "sb") && s["master"].is_object(),
    );
    for (id, child, offset) in [("sa", &a, offset_a), ("sb", &b, offset_b)] {
        let n = node(&both, id).unwrap();
        assert_eq!(n["pid"], child.id(), "{n:#}");
        assert_eq!(n["hostname"], format!("{id}.status.test"));
        assert_eq!(n["addresses"], serde_json::json!(["127.0.0.1"]));
        assert_eq!(n["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(n["state"], "running");
        assert!(n["uptime"].as_i64().unwrap() >= 0);
        let services = n["services"].as_array().unwrap();
        assert_eq!(services.len(), NODE_PORTS.len(), "{n:#}");
        let imap = services.iter().find(|s| s["service"] == "imap").unwrap();
        assert_eq!(imap["address"], format!("127.0.0.1:{}", 143 + offset));
        assert_eq!(imap["connections"], 0);
        assert!(n["load"].is_array() || n["load"].is_null());
    }
    let master = both["master"]["server_id"].as_str().unwrap().to_string();
    assert!(master == "sa" || master == "sb", "{both:#}");
    assert!(both["master"]["since"].as_i64().unwrap() > 0);
    let flagged: Vec<&str> = both["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["master"] == true)
        .map(|n| n["server_id"].as_str().unwrap())
        .collect();
    assert_eq!(flagged, vec![master.as_str()]);
    assert_eq!(both["queue"]["items"], 0);

    // A client on sa's IMAP port counts in sa's heartbeat while it is connected.
    let imap_a: SocketAddr = format!("127.0.0.1:{}", 143 + offset_a).parse().unwrap();
    let client = TcpStream::connect_timeout(&imap_a, Duration::from_secs(5)).unwrap();
    assert!(read_greeting(&client).starts_with("* OK"));
    wait_status(&env, "sa's imap connection", Duration::from_secs(20), |s| {
        connections(s, "sa", "imap") == Some(1)
    });
    let s = status(&env);
    assert_eq!(connections(&s, "sb", "imap"), Some(0));
    assert_eq!(connections(&s, "sa", "imaps"), Some(0));
    drop(client);
    wait_status(
        &env,
        "sa's imap connection to end",
        Duration::from_secs(20),
        |s| connections(s, "sa", "imap") == Some(0),
    );

    // A settings change: the store's version moves, and each node reports it applied.
    env.ok(&["settings", "set", "queue.concurrency", "4"]);
    let version = status(&env)["settings_version"].as_i64().unwrap();
    assert!(version > both["settings_version"].as_i64().unwrap());
    wait_status(
        &env,
        "both nodes on the new settings",
        Duration::from_secs(20),
        |s| {
            ["sa", "sb"].iter().all(|id| {
                node(s, id).is_some_and(|n| {
                    n["settings_version"] == version && n["settings_current"] == true
                })
            })
        },
    );

    // The human table names both nodes alive and the master.
    let table = env.ok(&["status"]);
    assert!(table.contains("2 alive, 0 dead"), "{table}");
    assert!(
        table.contains(&format!("master: {master} since")),
        "{table}"
    );
    for id in ["sa", "sb"] {
        let line = table
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{table}"));
        assert!(line.contains("alive"), "{table}");
    }

    // sb killed: dead (no heartbeat for 3 s) within a bounded wait, still listed.
    b.kill().unwrap();
    b.wait().unwrap();
    let killed = Instant::now();
    let after = wait_status(&env, "sb dead", Duration::from_secs(20), |s| {
        node(s, "sb").is_some_and(|n| n["alive"] == false) && alive(s, "sa")
    });
    let took = killed.elapsed();
    eprintln!("sb shown dead {took:?} after its kill");
    let sb = node(&after, "sb").unwrap();
    assert_eq!(
        (sb["master"].clone(), sb["uptime"].clone()),
        (Value::Bool(false), Value::Null)
    );
    let table = env.ok(&["status"]);
    assert!(table.contains("1 alive, 1 dead"), "{table}");
    let line = table
        .lines()
        .find(|l| l.starts_with("sb"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(line.contains("dead ("), "{table}");
    drop(a);
}

#[test]
fn status_without_nodes_says_so() {
    let env = Env::sqlite();
    let s = status(&env);
    assert_eq!(s["nodes"], serde_json::json!([]));
    assert_eq!(s["master"], Value::Null);
    assert_eq!(s["queue"]["oldest"], Value::Null);
    let table = env.ok(&["status"]);
    assert!(
        table.starts_with("nodes: 0 alive, 0 dead; master: none; queue: empty"),
        "{table}"
    );
}
