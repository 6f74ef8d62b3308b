//! A balancer with `servers = "cluster"` through the real binaries: `mailfleet balancer` in front
//! of `mailfleet node` processes on one SQLite store. It sends IMAP clients to both nodes; once
//! one is asked to drain it sends it nobody new while a session it has open goes on; it stops
//! sending to a killed node and adds a node started later; and it reports its view of each
//! node to the store.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailfleet_store::{BalancerServerView, Store};
use mailfleet_test_support::{ChildGuard, NODE_PORTS, free_port, free_port_offset};

const BIN: &str = env!("CARGO_BIN_EXE_mailfleet");

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Polls `f` every 100 ms until it gives a value; panics naming `what` after `limit`.
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
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn log_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A `mailfleet node` named `id` (host name `ID.cluster.test`) on its own port offset.
struct Node {
    child: ChildGuard,
    log: PathBuf,
    imap: SocketAddr,
}

impl Node {
    fn start(dir: &Path, url: &str, id: &str) -> Node {
        let offset = free_port_offset(NODE_PORTS);
        let config = dir.join(format!("{id}.toml"));
        std::fs::write(
            &config,
            format!(
                "server_id = \"{id}\"\nhostname = \"{id}.cluster.test\"\nstore = \"{url}\"\n\
                 data_dir = \"{}\"\nbind = \"127.0.0.1\"\nport_offset = {offset}\n",
                dir.join(id).display()
            ),
        )
        .unwrap();
        let log = dir.join(format!("{id}.log"));
        let child = ChildGuard::spawn(
            Command::new(BIN)
                .args(["node", "--config"])
                .arg(&config)
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap()),
        )
        .unwrap();
        let mut node = Node {
            child,
            log,
            imap: SocketAddr::from(([127, 0, 0, 1], 143 + offset)),
        };
        let imap = node.imap;
        wait_for(Duration::from_secs(60), "a node to listen", || {
            if let Ok(Some(status)) = node.child.try_wait() {
                panic!(
                    "node {id} exited: {status}; its log:\n{}",
                    log_of(&node.log)
                );
            }
            TcpStream::connect_timeout(&imap, Duration::from_millis(200))
                .ok()
                .map(|_| ())
        });
        node
    }
}

/// One IMAP connection through the balancer; the node that greets it (its host name's first
/// label), or None when the balancer closes it without a greeting.
fn connect(addr: SocketAddr) -> Option<(String, BufReader<TcpStream>, TcpStream)> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut greeting = String::new();
    if r.read_line(&mut greeting).ok()? == 0 {
        return None;
    }
    // "* OK [CAPABILITY ...] n1.cluster.test IMAP mailfleet ready"
    let host = greeting
        .split_whitespace()
        .find(|w| w.ends_with(".cluster.test"))?;
    let node = host.split('.').next()?.to_string();
    Some((node, r, w))
}

/// The nodes that greet `n` new connections through the balancer, one after another.
fn greeters(addr: SocketAddr, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| connect(addr).map(|c| c.0).unwrap_or_else(|| "-".into()))
        .collect()
}

fn report(rt: &tokio::runtime::Runtime, store: &Arc<dyn Store>) -> Vec<BalancerServerView> {
    rt.block_on(store.list_balancer_servers())
        .unwrap()
        .into_iter()
        .filter(|v| v.balancer == "lbtest")
        .collect()
}

#[test]
fn a_cluster_service_follows_joining_draining_and_dead_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let url = mailfleet_test_support::sqlite_url(dir.path());
    let rt = runtime();
    let store = rt.block_on(mailfleet_store::open(&url)).unwrap();

    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let balancer_file = dir.path().join("balancer.toml");
    std::fs::write(
        &balancer_file,
        format!(
            "[cluster]\nstore = \"{url}\"\nname = \"lbtest\"\n\n\
             [[service]]\nname = \"imap\"\nlisten = [\"{listen}\"]\nservers = \"cluster\"\n\
             cluster_service = \"imap\"\nslow_start = \"1s\"\n\
             health = {{ check = \"imap\", interval = \"500ms\", rise = 1, fall = 1 }}\n"
        ),
    )
    .unwrap();
    let balancer_log = dir.path().join("balancer.log");
    let _balancer = ChildGuard::spawn(
        Command::new(BIN)
            .args(["balancer", "--config"])
            .arg(&balancer_file)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&balancer_log).unwrap()),
    )
    .unwrap();
    wait_for(Duration::from_secs(60), "the balancer to listen", || {
        TcpStream::connect_timeout(&listen, Duration::from_millis(200))
            .ok()
            .map(|_| ())
    });

    let n1 = Node::start(dir.path(), &url, "n1");
    let mut n2 = Node::start(dir.path(), &url, "n2");

    // Both nodes get clients.
    wait_for(Duration::from_secs(20), "clients on both nodes", || {
        let seen = greeters(listen, 6);
        (seen.contains(&"n1".to_string()) && seen.contains(&"n2".to_string())).then_some(())
    });
    let view = wait_for(Duration::from_secs(20), "the balancer's report", || {
        let v = report(&rt, &store);
        (v.len() == 2 && v.iter().all(|s| s.state == "up")).then_some(v)
    });
    assert_eq!(
        view.iter()
            .map(|v| (v.service.as_str(), v.server.as_str(), v.address.clone()))
            .collect::<Vec<_>>(),
        vec![
            ("imap", "n1", n1.imap.to_string()),
            ("imap", "n2", n2.imap.to_string())
        ]
    );

    // A session on n1 through the balancer, held while n1 drains.
    let (_, mut held_r, mut held_w) = wait_for(Duration::from_secs(20), "a session on n1", || {
        connect(listen).filter(|c| c.0 == "n1")
    });
    let drain = Command::new(BIN)
        .args([
            "node",
            "drain",
            "n1",
            "--deadline",
            "60s",
            "--no-wait",
            "--store",
            &url,
        ])
        .env_remove("MAILFLEET_STORE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        drain.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&drain.stderr)
    );
    let drain_asked = Instant::now();
    // Within a bounded time, every new client goes to n2.
    wait_for(
        Duration::from_secs(10),
        "new clients to go to n2 only",
        || greeters(listen, 8).iter().all(|n| n == "n2").then_some(()),
    );
    let to_n2_after = drain_asked.elapsed();
    wait_for(
        Duration::from_secs(10),
        "the report to say n1 drains",
        || {
            report(&rt, &store)
                .iter()
                .any(|v| v.server == "n1" && v.state == "drain")
                .then_some(())
        },
    );
    // `mailfleet status` shows the node draining and the balancer's view of it.
    let status = Command::new(BIN)
        .args(["status", "--json", "--store", &url])
        .env_remove("MAILFLEET_STORE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(0));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let n1_status = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["server_id"] == "n1")
        .unwrap();
    assert_eq!(n1_status["state"], "draining", "{status}");
    let seen: Vec<(String, String)> = status["balancers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["balancer"] == "lbtest" && b["service"] == "imap")
        .map(|b| {
            (
                b["server"].as_str().unwrap().to_string(),
                b["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(seen.contains(&("n1".into(), "drain".into())), "{status}");
    let table = Command::new(BIN)
        .args(["status", "--store", &url])
        .env_remove("MAILFLEET_STORE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("alive, draining") && table.contains("BALANCER") && table.contains("lbtest"),
        "{table}"
    );
    // The held session goes on through the balancer.
    held_w.write_all(b"a1 NOOP\r\n").unwrap();
    let mut line = String::new();
    held_r.read_line(&mut line).unwrap();
    assert!(line.starts_with("a1 OK"), "{line}");
    held_w.write_all(b"a2 LOGOUT\r\n").unwrap();
    // n1 then leaves, and the balancer forgets it.
    let mut n1 = n1;
    let status = n1
        .child
        .wait_timeout(Duration::from_secs(30))
        .unwrap()
        .unwrap_or_else(|| {
            panic!(
                "n1 did not exit after its last session; its log:\n{}",
                log_of(&n1.log)
            )
        });
    assert_eq!(status.code(), Some(0));
    wait_for(Duration::from_secs(10), "n1 to leave the report", || {
        let v = report(&rt, &store);
        (v.iter().map(|s| s.server.as_str()).collect::<Vec<_>>() == ["n2"]).then_some(())
    });

    // n2 is killed, n3 joins: every new client goes to n3.
    n2.child.kill().unwrap();
    let _ = n2.child.wait();
    let killed = Instant::now();
    let n3 = Node::start(dir.path(), &url, "n3");
    wait_for(
        Duration::from_secs(20),
        "new clients to go to n3 only",
        || greeters(listen, 8).iter().all(|n| n == "n3").then_some(()),
    );
    let to_n3_after = killed.elapsed();
    wait_for(
        Duration::from_secs(20),
        "the dead n2 to leave the report",
        || {
            let v = report(&rt, &store);
            (v.iter()
                .map(|s| (s.server.as_str(), s.address.clone()))
                .collect::<Vec<_>>()
                == [("n3", n3.imap.to_string())])
            .then_some(())
        },
    );
    eprintln!(
        "new clients all on n2 {to_n2_after:?} after the drain request; all on n3 {to_n3_after:?} after n2 was killed and n3 started"
    );
    let log = log_of(&balancer_log);
    assert!(log.contains("cluster node joined"), "{log}");
}
