//! Test harness: a DNS responder on 127.0.0.1 serving MX and A records, the Python SMTP sink,
//! and queue nodes (a [`QueueWorker`] over a temp SQLite store with `local.test` as local
//! domain and an account `alice@local.test`).

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, MX};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use mailfleet_cluster::{LiveSettings, Settings};
use mailfleet_queue::{QueueContext, QueueWorker};
use mailfleet_store::{BlobStore, NewAccount, NewQueueItem, QueueRecipient, Store};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::UdpSocket;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

pub const LOCAL: &str = "local.test";
pub const ALICE: &str = "alice@local.test";

// ---------------------------------------------------------------- DNS

/// One record of the test zone.
#[derive(Clone, Debug)]
pub enum Rr {
    Mx(u16, &'static str),
    A(Ipv4Addr),
}

/// An authoritative-looking responder for a fixed zone: names it does not know are NXDOMAIN,
/// known names without records of the asked type get an empty NOERROR answer.
pub struct Dns {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Dns {
    pub async fn start(zone: &[(&str, Rr)]) -> Dns {
        let mut map: HashMap<String, Vec<Rr>> = HashMap::new();
        for (name, rr) in zone {
            map.entry(name.to_ascii_lowercase())
                .or_default()
                .push(rr.clone());
        }
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let reply = answer(&map, &query);
                if let Ok(bytes) = reply.to_vec() {
                    let _ = sock.send_to(&bytes, peer).await;
                }
            }
        });
        Dns { addr, task }
    }
}

fn answer(zone: &HashMap<String, Vec<Rr>>, query: &Message) -> Message {
    let mut reply = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.metadata.authoritative = true;
    let Some(q) = query.queries.first() else {
        reply.metadata.response_code = ResponseCode::FormErr;
        return reply;
    };
    reply.add_query(q.clone());
    let name = q.name.to_ascii().trim_end_matches('.').to_ascii_lowercase();
    let Some(records) = zone.get(&name) else {
        reply.metadata.response_code = ResponseCode::NXDomain;
        return reply;
    };
    for rr in records {
        let data = match (rr, q.query_type) {
            (Rr::Mx(pref, host), RecordType::MX) => {
                let exchange = if *host == "." {
                    Name::root()
                } else {
                    Name::from_ascii(format!("{host}.")).unwrap()
                };
                RData::MX(MX::new(*pref, exchange))
            }
            (Rr::A(ip), RecordType::A) => RData::A(A(*ip)),
            _ => continue,
        };
        reply.add_answer(Record::from_rdata(q.name.clone(), 60, data));
    }
    reply
}

// ---------------------------------------------------------------- sink

/// The Python SMTP sink (tests/sink.py), stopped when dropped.
pub struct Sink {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Sink {
    pub async fn start(args: &[&str]) -> Sink {
        let dir = tempfile::tempdir().unwrap();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sink.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(dir.path())
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 must be installed");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("sink did not start in time")
            .unwrap()
            .unwrap();
        let port = line.strip_prefix("PORT ").unwrap().parse().unwrap();
        Sink { port, dir, child }
    }

    /// Accepted messages (with the sink's X-Sink-* lines in front), in no particular order.
    pub fn messages(&self) -> Vec<String> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.dir.path()).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "eml") {
                out.push(std::fs::read_to_string(&p).unwrap());
            }
        }
        out
    }

    /// The event log lines (`ACCEPT addr`, `TEMPFAIL addr`, ...).
    pub fn events(&self) -> Vec<String> {
        read_lines(&self.dir.path().join("events.log"))
    }

    /// With `--delay-ms`: the recipients of each message received in full whose answer the
    /// sink is holding back (or held back), one line per message.
    pub fn held(&self) -> Vec<String> {
        read_lines(&self.dir.path().join("held.log"))
    }
}

fn read_lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .map(|s| s.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------- queue nodes

/// A store shared by one or more queue workers.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub store: Arc<dyn Store>,
    pub blobs: Arc<dyn BlobStore>,
    pub settings: BTreeMap<String, String>,
}

/// One running worker.
pub struct Worker {
    pub handle: tokio::task::JoinHandle<()>,
    pub shutdown: CancellationToken,
    /// The worker's count of the items it holds (what its node's heartbeat reports).
    pub held: Arc<std::sync::atomic::AtomicUsize>,
}

impl Worker {
    pub fn held(&self) -> usize {
        self.held.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.handle.abort();
    }
}

impl Cluster {
    /// A store with `local.test` and alice, and the queue settings for tests (fast polling,
    /// `queue.dns_servers` = `dns`, `queue.port` = `port`) plus `extra`.
    pub async fn new(dns: &Dns, port: u16, extra: &[(&str, &str)]) -> Cluster {
        Self::with_store(None, dns, port, extra).await
    }

    /// The same on the store at `url` (a SQLite file in the temp dir when `None`).
    pub async fn with_store(
        url: Option<String>,
        dns: &Dns,
        port: u16,
        extra: &[(&str, &str)],
    ) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let url =
            url.unwrap_or_else(|| format!("sqlite:{}", dir.path().join("store.db").display()));
        let store = mailfleet_store::open(&url).await.unwrap();
        let blobs = mailfleet_store::open_blobs(
            &format!("fs:{}", dir.path().join("blobs").display()),
            store.clone(),
        )
        .unwrap();
        store.add_domain(LOCAL).await.unwrap();
        store
            .create_account(&NewAccount {
                address: ALICE.into(),
                password_hash: "x".into(),
                quota_bytes: 0,
                shard: "default".into(),
            })
            .await
            .unwrap();
        let mut settings: BTreeMap<String, String> = [
            ("queue.dns_servers", dns.addr.to_string()),
            ("queue.port", port.to_string()),
            ("queue.poll_interval", "100ms".to_string()),
            ("queue.retry_schedule", "1s".to_string()),
            ("queue.connect_timeout", "2s".to_string()),
            ("queue.command_timeout", "10s".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (k, v) in extra {
            assert_eq!(
                mailfleet_queue::settings::validate(k, v),
                Some(Ok(())),
                "{k} = {v}"
            );
            settings.insert(k.to_string(), v.to_string());
        }
        Cluster {
            dir,
            url,
            store,
            blobs,
            settings,
        }
    }

    /// What a node named `server_id` (host name `<server_id>.local.test`) gives its queue.
    pub fn context(&self, server_id: &str) -> QueueContext {
        let text = format!(
            "server_id = \"{server_id}\"\nhostname = \"{server_id}.local.test\"\n\
             store = \"{}\"\ndata_dir = \"{}\"\n",
            self.url,
            self.dir.path().display(),
        );
        let config = mailfleet_config::NodeConfig::parse(&text, "test.toml").unwrap();
        QueueContext {
            config: Arc::new(config),
            store: self.store.clone(),
            blobs: self.blobs.clone(),
            settings: LiveSettings::fixed(Settings::from_map(1, self.settings.clone())),
            held: Default::default(),
        }
    }

    /// Starts a worker named `server_id` (host name `<server_id>.local.test`).
    pub fn worker(&self, server_id: &str) -> Worker {
        let ctx = self.context(server_id);
        let held = ctx.held.clone();
        let shutdown = CancellationToken::new();
        let handle = QueueWorker::spawn(ctx, shutdown.clone());
        Worker {
            handle,
            shutdown,
            held,
        }
    }

    /// Queues a message from `sender` to `rcpts`; returns the item id.
    pub async fn enqueue(&self, sender: &str, rcpts: &[&str], subject: &str) -> i64 {
        self.enqueue_with(
            sender,
            rcpts.iter().map(|r| QueueRecipient::new(*r)).collect(),
            subject,
            None,
        )
        .await
    }

    pub async fn enqueue_with(
        &self,
        sender: &str,
        recipients: Vec<QueueRecipient>,
        subject: &str,
        ret: Option<&str>,
    ) -> i64 {
        // As the SMTP server stores a message: with the final delivery's Return-Path first.
        let msg = format!(
            "Return-Path: <{sender}>\r\nFrom: <{sender}>\r\nTo: <someone@remote.test>\r\nSubject: {subject}\r\n\
             Message-ID: <{subject}@local.test>\r\n\r\nHello.\r\n.leading dot line\r\nBye.\r\n"
        );
        let blob = self.blobs.put(msg.as_bytes()).await.unwrap();
        self.store
            .enqueue(
                &blob,
                msg.len() as i64,
                &NewQueueItem {
                    sender: sender.into(),
                    recipients,
                    envid: Some(format!("env-{subject}")),
                    ret: ret.map(str::to_string),
                    next_attempt: mailfleet_store::now(),
                },
            )
            .await
            .unwrap()
    }

    /// Messages in alice's INBOX.
    pub async fn inbox(&self) -> Vec<String> {
        let account = self.store.get_account(ALICE).await.unwrap().unwrap();
        let Some(mb) = self.store.get_mailbox(account.id, "INBOX").await.unwrap() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for m in self.store.list_messages(mb.id, 1, u32::MAX).await.unwrap() {
            let bytes = self.blobs.get(&m.blob_id).await.unwrap();
            out.push(String::from_utf8_lossy(&bytes).into_owned());
        }
        out
    }

    pub async fn queue_len(&self) -> usize {
        self.store.list_queue().await.unwrap().len()
    }
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `limit`.
pub async fn wait_for<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The standard zone: `remote.test` has two MX hosts, the preferred one on 127.0.0.3 (where
/// nothing listens) and the other on 127.0.0.1; `nomx.test` has only an A record; `null.test`
/// has a null MX.
pub async fn standard_dns() -> Dns {
    Dns::start(&[
        ("remote.test", Rr::Mx(10, "mx1.remote.test")),
        ("remote.test", Rr::Mx(20, "mx2.remote.test")),
        ("mx1.remote.test", Rr::A(Ipv4Addr::new(127, 0, 0, 3))),
        ("mx2.remote.test", Rr::A(Ipv4Addr::new(127, 0, 0, 1))),
        ("nomx.test", Rr::A(Ipv4Addr::new(127, 0, 0, 1))),
        ("null.test", Rr::Mx(0, ".")),
    ])
    .await
}
