//! Failover, measured (issue 16 §6): PostgreSQL, three nodes and a balancer on loopback; four
//! senders deliver 300 messages through the balancer's SMTP port (a new session and another
//! attempt on any error, as MTAs do) while IMAP clients IDLE through it; the master is killed
//! with SIGKILL halfway. Every message that got 250 must be readable over IMAP exactly once, a
//! new master must hold the lease within 5 s, the balancer must stop sending to the dead node
//! within 3 s, and the IDLE clients, reconnected, must hear every message. The test prints the
//! times it measured.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mailfleet_store::{NewAccount, password};
use mailfleet_test_support::{ChildGuard, PgServer, free_port, free_port_offset};

const BIN: &str = env!("CARGO_BIN_EXE_mailfleet");
const USERS: [&str; 2] = ["alice@failover.test", "bob@failover.test"];
const PASSWORD: &str = "failover-secret";
const MESSAGES: usize = 300;
const SENDERS: usize = 4;

struct Node {
    server_id: String,
    addr: String,
    child: ChildGuard,
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start_node(dir: &Path, server_id: &str, addr: &str, store: &str, offset: u16) -> Node {
    let data = dir.join(server_id);
    std::fs::create_dir_all(&data).unwrap();
    let config = dir.join(format!("{server_id}.toml"));
    write(
        &config,
        &format!(
            "server_id = \"{server_id}\"\nhostname = \"{server_id}.failover.test\"\n\
             store = \"{store}\"\ndata_dir = \"{}\"\nblobs = \"fs:{}\"\n\
             bind = \"{addr}\"\nport_offset = {offset}\ntrusted_proxies = [\"127.0.0.1\"]\n",
            data.display(),
            dir.join("blobs").display()
        ),
    );
    let log = std::fs::File::create(dir.join(format!("{server_id}.stderr"))).unwrap();
    let child = ChildGuard::spawn(
        Command::new(BIN)
            .args(["node", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log),
    )
    .unwrap();
    Node {
        server_id: server_id.to_string(),
        addr: addr.to_string(),
        child,
    }
}

/// The balancer's view of `server` in `service`, from its runtime API.
fn server_state(admin: u16, service: &str, server: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "2"])
        .arg(format!("http://127.0.0.1:{admin}/stats"))
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["services"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == service)?["servers"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == server)?["state"]
        .as_str()
        .map(str::to_string)
}

#[test]
fn killing_the_master_loses_no_acknowledged_message() {
    let pg = PgServer::start();
    let url = pg.create_database("failover");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = rt.block_on(mailfleet_store::open(&url)).unwrap();
    rt.block_on(async {
        store.add_domain("failover.test").await.unwrap();
        let hash = password::hash_password(PASSWORD).unwrap();
        for user in USERS {
            store
                .create_account(&NewAccount {
                    address: user.into(),
                    password_hash: hash.clone(),
                    quota_bytes: 0,
                    shard: "default".into(),
                })
                .await
                .unwrap();
        }
    });

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("blobs")).unwrap();
    let offset = free_port_offset(&[25, 993]);
    let mut nodes: Vec<Node> = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        .iter()
        .enumerate()
        .map(|(i, addr)| start_node(dir.path(), &format!("n{}", i + 1), addr, &url, offset))
        .collect();
    for n in &nodes {
        for port in [25 + offset, 993 + offset] {
            wait_for(
                &format!("node {} listening on {port}", n.server_id),
                Duration::from_secs(60),
                || TcpStream::connect((n.addr.as_str(), port)).is_ok(),
            );
        }
    }

    // The balancer: SMTP and IMAP, least connections, PROXY v2, the protocols' own checks
    // every 500 ms, down after 2 failures.
    let admin = free_port();
    let mut conf = format!("stop_timeout = \"2s\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n");
    for (service, port, check) in [
        ("smtp", 25 + offset, "smtp"),
        ("imaps", 993 + offset, "tcp"),
    ] {
        conf.push_str(&format!(
            "\n[[service]]\nname = \"{service}\"\nlisten = [\"127.0.0.1:{port}\"]\n\
             scheduler = \"leastconn\"\nproxy_protocol = \"v2\"\n\
             health = {{ check = \"{check}\", interval = \"500ms\", rise = 2, fall = 2, timeout = \"1s\" }}\n"
        ));
        for n in &nodes {
            conf.push_str(&format!(
                "\n[[service.server]]\nname = \"{}\"\naddress = \"{}:{port}\"\n",
                n.server_id, n.addr
            ));
        }
    }
    let balancer_conf = dir.path().join("balancer.toml");
    write(&balancer_conf, &conf);
    let balancer_log = std::fs::File::create(dir.path().join("balancer.stderr")).unwrap();
    let _balancer = ChildGuard::spawn(
        Command::new(BIN)
            .args(["balancer", "--config"])
            .arg(&balancer_conf)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(balancer_log),
    )
    .unwrap();
    wait_for("balancer API", Duration::from_secs(30), || {
        server_state(admin, "smtp", "n1").is_some()
    });

    // The master, before the kill.
    let master_now = || {
        rt.block_on(store.get_lease("master"))
            .ok()
            .flatten()
            .filter(|l| l.expires > mailfleet_store::now())
            .map(|l| l.holder)
    };
    wait_for("a master", Duration::from_secs(30), || {
        master_now().is_some()
    });
    let old_master = master_now().unwrap_or_default();
    let victim = nodes
        .iter()
        .position(|n| n.server_id == old_master)
        .unwrap_or_else(|| panic!("master {old_master} is none of the nodes"));

    let mut load = ChildGuard::spawn(
        Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/failover_client.py"
            ))
            .args([
                (25 + offset).to_string(),
                (993 + offset).to_string(),
                MESSAGES.to_string(),
                SENDERS.to_string(),
                PASSWORD.to_string(),
            ])
            .args(USERS)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .unwrap();
    let out = load.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let half = rx.recv_timeout(Duration::from_secs(240));
    assert_eq!(
        half.as_deref().ok(),
        Some("HALF"),
        "the load never got halfway"
    );

    // Kill the master outright, mid-run.
    let killed = Instant::now();
    nodes[victim].child.kill().unwrap();
    let _ = nodes[victim].child.wait();
    let dead = nodes[victim].server_id.clone();

    let mut new_master_after = None;
    let mut balancer_down_after = None;
    let watch_until = killed + Duration::from_secs(20);
    while Instant::now() < watch_until
        && (new_master_after.is_none() || balancer_down_after.is_none())
    {
        if new_master_after.is_none() && master_now().is_some_and(|m| m != dead && !m.is_empty()) {
            new_master_after = Some(killed.elapsed());
        }
        if balancer_down_after.is_none()
            && server_state(admin, "smtp", &dead).as_deref() == Some("down")
            && server_state(admin, "imaps", &dead).as_deref() == Some("down")
        {
            balancer_down_after = Some(killed.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let status = load
        .wait_timeout(Duration::from_secs(300))
        .unwrap()
        .expect("the load finished within 300 s");
    let result: Vec<String> = rx.try_iter().collect();
    let mut err = String::new();
    if let Some(mut e) = load.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    println!(
        "killed master {dead} (SIGKILL) after {} acknowledged messages",
        MESSAGES / 2
    );
    println!("new master holds the lease after: {new_master_after:?}");
    println!("balancer marked {dead} down (smtp and imaps) after: {balancer_down_after:?}");
    println!("load: {}", result.join("\n"));
    assert!(
        status.success(),
        "the load reported a failure: {}\n{err}",
        result.join("\n")
    );
    let new_master_after = new_master_after.expect("no new master within 20 s");
    assert!(
        new_master_after <= Duration::from_secs(5),
        "new master after {new_master_after:?}, more than 5 s"
    );
    let balancer_down_after = balancer_down_after.expect("the balancer never marked it down");
    assert!(
        balancer_down_after <= Duration::from_secs(3),
        "balancer marked the dead node down after {balancer_down_after:?}, more than 3 s"
    );
}
