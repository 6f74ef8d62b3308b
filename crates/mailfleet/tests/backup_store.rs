//! `backup_store` through the real binary (`mailfleet node --config`): a node whose primary
//! store cannot be reached at start runs on its backup store; one whose primary answers uses the
//! primary and leaves the backup alone; a node whose primary dies while it runs moves to the
//! backup and back when the primary returns, each message in exactly one of them; without a
//! backup it does not start. The stores are databases of throwaway PostgreSQL servers; an
//! unreachable primary is a loopback port where nothing listens, or a server the test stops.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mailfleet_store::{NewAccount, Store};
use mailfleet_test_support::{ChildGuard, PgServer};

/// A running `mailfleet node`; killed (and reaped) when dropped, whatever the test's outcome.
struct Node {
    child: ChildGuard,
    log: PathBuf,
}

impl Node {
    fn start(dir: &Path, store: &str, backup: Option<&str>, offset: u16) -> Node {
        let config = dir.join("node.toml");
        let mut text = format!(
            "server_id = \"bk\"\nhostname = \"mx.backup.test\"\nstore = \"{store}\"\n\
             data_dir = \"{}\"\nbind = \"127.0.0.1\"\nport_offset = {offset}\n",
            dir.join("data").display()
        );
        if let Some(b) = backup {
            text.push_str(&format!("backup_store = \"{b}\"\n"));
        }
        std::fs::write(&config, text).unwrap();
        let log = dir.join("node.log");
        let child = ChildGuard::spawn(
            Command::new(env!("CARGO_BIN_EXE_mailfleet"))
                .args(["node", "--config"])
                .arg(&config)
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap()),
        )
        .unwrap();
        Node { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the node listens on `addr`; panics with its log if it exits or takes over
    /// 60 s.
    fn wait_listening(&mut self, addr: SocketAddr) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("node exited: {status}; its log:\n{}", self.log());
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("node did not listen on {addr}; its log:\n{}", self.log());
    }

    /// Waits for the node to exit by itself (at most 60 s); its exit code.
    fn wait_exit(&mut self) -> i32 {
        match self.child.wait_timeout(Duration::from_secs(60)).unwrap() {
            Some(status) => status.code().unwrap_or(-1),
            None => panic!("node still running after 60 s; its log:\n{}", self.log()),
        }
    }
}

/// One message over SMTP; the reply code at the end of its data.
fn send(addr: SocketAddr, to: &str, subject: &str) -> u16 {
    try_send(addr, to, subject).unwrap()
}

/// One message over SMTP, as an MTA sends it: the reply code at the end of its data, or why the
/// transaction did not get there (a refused connection, a closed one, an unexpected reply).
fn try_send(addr: SocketAddr, to: &str, subject: &str) -> Result<u16, String> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut r = BufReader::new(s.try_clone().map_err(|e| e.to_string())?);
    let mut w = s;
    let mut reply = || -> Result<String, String> {
        loop {
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(0) => return Err("connection closed".into()),
                Ok(_) if line.len() < 4 || line.as_bytes()[3] == b' ' => return Ok(line),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    let code = |line: &str| {
        line.get(..3)
            .and_then(|c| c.parse::<u16>().ok())
            .unwrap_or(0)
    };
    let greeting = reply()?;
    if code(&greeting) != 220 {
        return Err(greeting);
    }
    for (cmd, want) in [
        ("EHLO client.test".to_string(), 250),
        ("MAIL FROM:<someone@remote.test>".to_string(), 250),
        (format!("RCPT TO:<{to}>"), 250),
        ("DATA".to_string(), 354),
    ] {
        w.write_all(format!("{cmd}\r\n").as_bytes())
            .map_err(|e| e.to_string())?;
        let line = reply()?;
        if code(&line) != want {
            return Err(format!("{cmd}: {line}"));
        }
    }
    w.write_all(format!("Subject: {subject}\r\n\r\nhello\r\n.\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let line = reply()?;
    let _ = w.write_all(b"QUIT\r\n");
    Ok(code(&line))
}

/// Sends one message, retrying every 200 ms (as an MTA retries a temporary failure) until it
/// gets 250 or `limit` passes; how long it took.
fn send_until_accepted(addr: SocketAddr, subject: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < limit {
        match try_send(addr, "user@backup.test", subject) {
            Ok(250) => return start.elapsed(),
            Ok(code) => last = format!("final reply {code}"),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{subject:?} not accepted within {limit:?}; last: {last}");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Opens (migrating) the store at `url` and gives it `backup.test` with `user@backup.test`.
fn provision(rt: &tokio::runtime::Runtime, url: &str) {
    rt.block_on(async {
        let store = mailfleet_store::open(url).await.unwrap();
        store.add_domain("backup.test").await.unwrap();
        store
            .create_account(&NewAccount {
                address: "user@backup.test".into(),
                password_hash: mailfleet_store::password::hash_password("pw").unwrap(),
                quota_bytes: 0,
                shard: "default".into(),
            })
            .await
            .unwrap();
    });
}

/// (messages in user@backup.test's INBOX, server ids with a heartbeat) in the store at `url`.
fn contents(rt: &tokio::runtime::Runtime, url: &str) -> (usize, Vec<String>) {
    rt.block_on(async {
        let store: std::sync::Arc<dyn Store> = mailfleet_store::open(url).await.unwrap();
        let account = store
            .get_account("user@backup.test")
            .await
            .unwrap()
            .unwrap();
        let messages = match store.get_mailbox(account.id, "INBOX").await.unwrap() {
            Some(mb) => store.list_messages(mb.id, 1, u32::MAX).await.unwrap().len(),
            None => 0,
        };
        let nodes = store
            .list_nodes()
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.server_id)
            .collect();
        (messages, nodes)
    })
}

/// `mailfleet status --json` read from the store at `url`.
fn status_of(url: &str) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_mailfleet"))
        .args(["status", "--json", "--store", url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Provisions both stores and starts a node on them; waits until it listens. (The node, its
/// SMTP address, its directory.)
fn provisioned_node(
    rt: &tokio::runtime::Runtime,
    primary: &str,
    backup: &str,
) -> (Node, SocketAddr, tempfile::TempDir) {
    provision(rt, primary);
    provision(rt, backup);
    let dir = tempfile::tempdir().unwrap();
    let offset = mailfleet_test_support::free_port_offset(mailfleet_test_support::NODE_PORTS);
    let mx: SocketAddr = format!("127.0.0.1:{}", 25 + offset).parse().unwrap();
    let mut node = Node::start(dir.path(), primary, Some(backup), offset);
    node.wait_listening(mx);
    (node, mx, dir)
}

/// A PostgreSQL URL on a loopback port where nothing listens.
fn unreachable_url() -> String {
    let port = mailfleet_test_support::free_port();
    format!("postgres://postgres@127.0.0.1:{port}/mail")
}

#[test]
fn a_node_whose_primary_store_is_unreachable_runs_on_its_backup() {
    let pg = PgServer::start();
    let backup = pg.create_database("backup");
    let rt = runtime();
    provision(&rt, &backup);
    let dir = tempfile::tempdir().unwrap();
    let offset = mailfleet_test_support::free_port_offset(mailfleet_test_support::NODE_PORTS);
    let mx: SocketAddr = format!("127.0.0.1:{}", 25 + offset).parse().unwrap();
    let primary = unreachable_url();
    let mut node = Node::start(dir.path(), &primary, Some(&backup), offset);
    node.wait_listening(mx);
    assert_eq!(send(mx, "user@backup.test", "via backup"), 250);
    let (messages, _) = contents(&rt, &backup);
    assert_eq!(messages, 1, "the message is in the backup store");
    // The node's heartbeat goes there too: the whole node runs on it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !contents(&rt, &backup).1.contains(&"bk".to_string()) {
        assert!(
            Instant::now() < deadline,
            "no heartbeat in the backup store"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = node.log();
    assert!(log.contains("using backup_store"), "{log}");
}

#[test]
fn a_node_whose_primary_store_answers_leaves_the_backup_alone() {
    let pg = PgServer::start();
    let primary = pg.create_database("primary");
    let backup = pg.create_database("backup");
    let rt = runtime();
    let (node, mx, _dir) = provisioned_node(&rt, &primary, &backup);
    assert_eq!(send(mx, "user@backup.test", "via primary"), 250);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !contents(&rt, &primary).1.contains(&"bk".to_string()) {
        assert!(
            Instant::now() < deadline,
            "no heartbeat in the primary store"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(contents(&rt, &primary).0, 1);
    assert_eq!(contents(&rt, &backup), (0, vec![]), "the backup was used");
    assert!(!node.log().contains("backup_store"), "{}", node.log());
}

#[test]
fn a_node_moves_to_its_backup_while_the_primary_is_down_and_back_when_it_returns() {
    // Two servers, as a primary and the standby an operator has promoted: each store is on its
    // own server, so stopping one leaves the other up.
    let primary_server = PgServer::start();
    let backup_server = PgServer::start();
    let primary = primary_server.create_database("mail");
    let backup = backup_server.create_database("mail");
    let rt = runtime();
    let (node, mx, _dir) = provisioned_node(&rt, &primary, &backup);
    assert_eq!(send(mx, "user@backup.test", "before"), 250);
    assert_eq!(contents(&rt, &primary).0, 1);
    assert_eq!(contents(&rt, &backup).0, 0);

    // The primary dies: mail is accepted again once the node has moved to the backup.
    primary_server.stop();
    let to_backup = send_until_accepted(mx, "during", Duration::from_secs(60));
    println!("primary stopped: a message was accepted again after {to_backup:?}");
    let log = node.log();
    assert!(log.contains("using backup_store"), "{log}");
    assert_eq!(contents(&rt, &backup).0, 1, "the message is in the backup");
    // Nothing is left trying the primary: the node's heartbeat goes to the backup too, and
    // says the node is on it (`mailfleet status` shows that).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = status_of(&backup);
        let on = status["nodes"]
            .as_array()
            .and_then(|n| n.iter().find(|n| n["server_id"] == "bk"))
            .map(|n| n["store"].clone());
        if on == Some(serde_json::Value::from("backup")) {
            // The heartbeat also says how far the node's clock is from the database server's
            // (the same machine's here: near zero).
            let node = &status["nodes"][0];
            let skew = node["clock_skew_ms"].as_i64();
            assert!(skew.is_some_and(|ms| ms.abs() < 1000), "{node:#}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "status on the backup does not show the node on it: {status:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The primary returns: the node goes back to it once it has answered for a while.
    primary_server.restart();
    let back = Instant::now();
    while !node.log().contains("is back; leaving backup_store") {
        assert!(
            back.elapsed() < Duration::from_secs(60),
            "the node did not go back to the primary; its log:\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "primary restarted: the node went back after {:?}",
        back.elapsed()
    );
    assert_eq!(send(mx, "user@backup.test", "after"), 250);
    // Each message is in exactly one store: never written to both.
    assert_eq!(contents(&rt, &primary).0, 2, "before and after");
    assert_eq!(contents(&rt, &backup).0, 1, "during only");
}

#[test]
fn without_a_backup_a_node_whose_primary_is_unreachable_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let offset = mailfleet_test_support::free_port_offset(mailfleet_test_support::NODE_PORTS);
    let primary = unreachable_url();
    let mut node = Node::start(dir.path(), &primary, None, offset);
    let code = node.wait_exit();
    assert_ne!(code, 0);
    let log = node.log();
    let port = primary
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    assert!(log.contains(port), "the error names the store: {log}");
}
