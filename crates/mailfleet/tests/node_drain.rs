//! `mailfleet node drain` through the real binary: a running `mailfleet node` is asked to drain
//! while two IMAP clients are logged in, a POP3 and an SMTP client are connected, and its queue
//! holds an item (its delivery stalled at a smart host that greets and then never answers). It
//! takes no new clients, the first IMAP client's session goes on until it logs out, the others
//! are closed at the deadline (`* BYE`, `-ERR`, `421`), the queue item's lease is given back,
//! the node exits 0, and the command reports that it has left.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailfleet_store::{NewAccount, NewQueueItem, QueueRecipient, Store};
use mailfleet_test_support::{ChildGuard, NODE_PORTS, free_port, free_port_offset};

const BIN: &str = env!("CARGO_BIN_EXE_mailfleet");
const USER: &str = "ann@drain.test";
const PASSWORD: &str = "drain-test-pw";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Polls `f` every 50 ms until it gives a value; panics naming `what` after `limit`.
fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A smart host that greets every connection and then never answers: a delivery to it stays
/// under way, its queue item leased, until it is cut off. Returns its address.
fn stalling_smtp_server() -> SocketAddr {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let listener = TcpListener::bind(addr).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        // Bounded: the worker is cut off once, and may come back after that.
        for conn in listener.incoming().take(8) {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.write_all(b"220 stall.test ESMTP\r\n");
            held.push(conn);
        }
    });
    addr
}

/// A client that connected and read its greeting (`expect` at its start), then waits.
fn greeted(addr: SocketAddr, expect: &str) -> BufReader<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with(expect), "{line}");
    r
}

/// The next line the server sends.
fn next_line(r: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    assert!(r.read_line(&mut line).unwrap() > 0, "closed without a word");
    line
}

/// One IMAP client on a real socket, logged in.
struct Imap {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Imap {
    fn login(addr: SocketAddr) -> Imap {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut c = Imap {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
        };
        let greeting = c.line();
        assert!(greeting.starts_with("* OK"), "{greeting}");
        let done = c.command("a1", &format!("LOGIN {USER} {PASSWORD}"));
        assert!(done.starts_with("a1 OK"), "{done}");
        c
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).unwrap();
        assert!(n > 0, "the server closed the connection");
        line
    }

    /// Sends a command; the untagged lines are dropped, the tagged one returned.
    fn command(&mut self, tag: &str, command: &str) -> String {
        self.writer
            .write_all(format!("{tag} {command}\r\n").as_bytes())
            .unwrap();
        loop {
            let line = self.line();
            if line.starts_with(&format!("{tag} ")) {
                return line;
            }
        }
    }
}

fn node_config(dir: &Path, url: &str, offset: u16) -> PathBuf {
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!(
            "server_id = \"dr1\"\nhostname = \"dr1.drain.test\"\nstore = \"{url}\"\n\
             data_dir = \"{}\"\nblobs = \"db\"\nbind = \"127.0.0.1\"\nport_offset = {offset}\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    config
}

/// The account, the settings (cleartext IMAP login on loopback, every remote message through
/// the stalling smart host) and one queued message; returns its queue id.
async fn provision(store: &Arc<dyn Store>, smarthost: SocketAddr) -> i64 {
    store.add_domain("drain.test").await.unwrap();
    store
        .create_account(&NewAccount {
            address: USER.into(),
            password_hash: mailfleet_store::password::hash_password(PASSWORD).unwrap(),
            quota_bytes: 0,
            shard: "default".into(),
        })
        .await
        .unwrap();
    for (key, value) in [
        ("imap.auth.allow_cleartext", "true".to_string()),
        ("queue.smarthost", smarthost.to_string()),
        ("queue.tls", "none".to_string()),
        ("queue.poll_interval", "200ms".to_string()),
    ] {
        store.set_setting(key, &value).await.unwrap();
    }
    let blobs = mailfleet_store::open_blobs("db", store.clone()).unwrap();
    let message = b"From: ann@drain.test\r\nTo: bob@remote.test\r\nSubject: held\r\n\r\nhi\r\n";
    let blob = blobs.put(message).await.unwrap();
    store
        .enqueue(
            &blob,
            message.len() as i64,
            &NewQueueItem {
                sender: USER.into(),
                recipients: vec![QueueRecipient::new("bob@remote.test")],
                envid: None,
                ret: None,
                next_attempt: 0,
            },
        )
        .await
        .unwrap()
}

fn log_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn a_drained_node_lets_its_sessions_finish_gives_back_its_queue_lease_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let url = mailfleet_test_support::sqlite_url(dir.path());
    let rt = runtime();
    let store = rt.block_on(mailfleet_store::open(&url)).unwrap();
    let smarthost = stalling_smtp_server();
    let queue_id = rt.block_on(provision(&store, smarthost));

    let offset = free_port_offset(NODE_PORTS);
    let imap = SocketAddr::from(([127, 0, 0, 1], 143 + offset));
    let smtp = SocketAddr::from(([127, 0, 0, 1], 25 + offset));
    let node_log = dir.path().join("node.log");
    let mut node = ChildGuard::spawn(
        Command::new(BIN)
            .args(["node", "--config"])
            .arg(node_config(dir.path(), &url, offset))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&node_log).unwrap()),
    )
    .unwrap();
    wait_for(Duration::from_secs(60), "the node to listen", || {
        if let Ok(Some(status)) = node.try_wait() {
            panic!("node exited: {status}; its log:\n{}", log_of(&node_log));
        }
        TcpStream::connect_timeout(&imap, Duration::from_millis(200))
            .ok()
            .map(|_| ())
    });
    // The queue item is under way at the stalling smart host, leased to the node.
    let holder = wait_for(
        Duration::from_secs(30),
        "the node to lease the item",
        || {
            let item = rt
                .block_on(store.get_queue_item(queue_id))
                .unwrap()
                .unwrap();
            item.lease_holder.filter(|h| h.starts_with("dr1-"))
        },
    );

    let mut stays = Imap::login(imap);
    let mut leaves = Imap::login(imap);
    let mut pop3 = greeted(SocketAddr::from(([127, 0, 0, 1], 110 + offset)), "+OK");
    let mut smtp_client = greeted(smtp, "220");

    let drain_out = dir.path().join("drain.out");
    let drain_started = Instant::now();
    let mut drain = ChildGuard::spawn(
        Command::new(BIN)
            .args(["node", "drain", "dr1", "--deadline", "8s", "--store", &url])
            .env_remove("MAILFLEET_STORE")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&drain_out).unwrap())
            .stderr(std::fs::File::create(dir.path().join("drain.err")).unwrap()),
    )
    .unwrap();

    // Within about a second the heartbeat says so, and the listening sockets are closed.
    wait_for(
        Duration::from_secs(5),
        "the heartbeat to say draining",
        || {
            let nodes = rt.block_on(store.list_nodes()).unwrap();
            let n = nodes.into_iter().find(|n| n.server_id == "dr1")?;
            (n.info["state"] == "draining").then_some(())
        },
    );
    wait_for(
        Duration::from_secs(5),
        "new connections to be refused",
        || {
            let refused =
                |a: &SocketAddr| TcpStream::connect_timeout(a, Duration::from_secs(1)).is_err();
            (refused(&imap) && refused(&smtp)).then_some(())
        },
    );
    // The open sessions go on: one logs out by itself before the deadline.
    let noop = leaves.command("a2", "NOOP");
    assert!(noop.starts_with("a2 OK"), "{noop}");
    let noop = stays.command("a2", "NOOP");
    assert!(noop.starts_with("a2 OK"), "{noop}");
    let logout = leaves.command("a3", "LOGOUT");
    assert!(logout.starts_with("a3 OK"), "{logout}");
    assert!(
        drain_started.elapsed() < Duration::from_secs(7),
        "the test was too slow to see the sessions before the deadline: {:?}",
        drain_started.elapsed()
    );
    assert!(
        node.try_wait().unwrap().is_none(),
        "the node left with a session still open before its deadline"
    );

    // The other is closed at the deadline with BYE.
    let bye = stays.line();
    let closed_after = drain_started.elapsed();
    assert!(bye.starts_with("* BYE"), "{bye}");
    assert!(
        closed_after >= Duration::from_secs(6),
        "closed {closed_after:?} after the request, before its 8 s deadline"
    );
    // So are the POP3 and SMTP sessions, each in its protocol's words.
    let words = next_line(&mut pop3);
    assert!(words.starts_with("-ERR"), "{words}");
    let words = next_line(&mut smtp_client);
    assert!(words.starts_with("421"), "{words}");

    let status = node
        .wait_timeout(Duration::from_secs(60))
        .unwrap()
        .unwrap_or_else(|| panic!("the node did not exit; its log:\n{}", log_of(&node_log)));
    assert_eq!(status.code(), Some(0), "node log:\n{}", log_of(&node_log));
    let drained = drain
        .wait_timeout(Duration::from_secs(30))
        .unwrap()
        .expect("the drain command returns once the node has left");
    let out = log_of(&drain_out);
    let err = log_of(&dir.path().join("drain.err"));
    assert_eq!(drained.code(), Some(0), "{out}{err}");
    assert!(out.contains("node dr1: draining"), "{out}");
    assert!(out.contains("node dr1: drained and left"), "{out}");

    // The lease the node held is given back: the item is due for any node now.
    let item = rt
        .block_on(store.get_queue_item(queue_id))
        .unwrap()
        .unwrap();
    assert_eq!(
        (item.lease_holder, item.lease_until),
        (None, None),
        "{holder}'s lease was kept; node log:\n{}",
        log_of(&node_log)
    );
    let taken = rt
        .block_on(store.claim_queue("other-node", mailfleet_store::now(), 60, 10))
        .unwrap();
    assert_eq!(
        taken.iter().map(|i| i.id).collect::<Vec<_>>(),
        vec![queue_id]
    );
    // Its last heartbeat says it drained, and the request is gone.
    let nodes = rt.block_on(store.list_nodes()).unwrap();
    let last = nodes.iter().find(|n| n.server_id == "dr1").unwrap();
    assert_eq!(last.info["state"], "drained");
    assert_eq!(rt.block_on(store.drain_request("dr1")).unwrap(), None);
}

#[test]
fn draining_a_node_that_is_not_running_is_refused_and_one_draining_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let url = mailfleet_test_support::sqlite_url(dir.path());
    let rt = runtime();
    let store = rt.block_on(mailfleet_store::open(&url)).unwrap();
    // A node that sent its last heartbeat a minute ago.
    let then = mailfleet_store::now() - 60;
    rt.block_on(store.heartbeat(&mailfleet_store::NodeInfo {
        server_id: "old1".into(),
        hostname: "old1.drain.test".into(),
        info: serde_json::json!({}),
        started: then - 100,
        last_seen: then,
    }))
    .unwrap();
    // A node draining already keeps its first request; the command says so.
    let now = mailfleet_store::now();
    rt.block_on(store.heartbeat(&mailfleet_store::NodeInfo {
        server_id: "busy1".into(),
        hostname: "busy1.drain.test".into(),
        info: serde_json::json!({"state": "draining"}),
        started: now - 100,
        last_seen: now,
    }))
    .unwrap();
    let first = mailfleet_store::DrainRequest {
        server_id: "busy1".into(),
        requested: now - 5,
        deadline: now + 600,
    };
    rt.block_on(store.request_drain(&first)).unwrap();
    let out = Command::new(BIN)
        .args([
            "node",
            "drain",
            "busy1",
            "--deadline",
            "1s",
            "--no-wait",
            "--store",
            &url,
        ])
        .env_remove("MAILFLEET_STORE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("node busy1: draining already"), "{stdout}");
    assert_eq!(
        rt.block_on(store.drain_request("busy1")).unwrap(),
        Some(first)
    );
    for (id, problem) in [
        ("nope", "no node \"nope\" has ever sent a heartbeat"),
        ("old1", "node old1 is not running"),
    ] {
        let out = Command::new(BIN)
            .args(["node", "drain", id, "--store", &url])
            .env_remove("MAILFLEET_STORE")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(problem), "{stderr}");
        assert_eq!(rt.block_on(store.drain_request(id)).unwrap(), None);
    }
}
