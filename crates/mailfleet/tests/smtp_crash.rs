//! kill -9 of a node while 4 clients send mail: every message that got `250` is in its mailbox
//! afterwards (compared by Message-ID), every queued copy is still queued, and the node starts
//! again on the same store. Once with blob files, once with the messages kept in the store.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailfleet_store::{BlobStore, NewAccount, Store};
use mailfleet_test_support::ChildGuard;

const TOTAL: usize = 500;
const CLIENTS: usize = 4;

/// `extra` is appended to the node's configuration.
fn write_config(dir: &Path, offset: u16, extra: &str) -> std::path::PathBuf {
    let path = dir.join("node.toml");
    std::fs::write(
        &path,
        format!(
            "server_id = \"cr\"\nhostname = \"mx.crash.test\"\nstore = \"sqlite:{}\"\n\
             data_dir = \"{}\"\nbind = \"127.0.0.1\"\nport_offset = {offset}\n{extra}\n",
            dir.join("store.db").display(),
            dir.join("data").display()
        ),
    )
    .unwrap();
    path
}

/// Starts the node; its stderr goes to `log`. Killed when the guard drops, whatever the
/// test's outcome.
fn start_node(config: &Path, log: &Path) -> ChildGuard {
    let file = std::fs::File::create(log).unwrap();
    ChildGuard::spawn(
        Command::new(env!("CARGO_BIN_EXE_mailfleet"))
            .args(["node", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(file),
    )
    .unwrap()
}

fn wait_for_port(addr: SocketAddr, child: &mut ChildGuard, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            panic!("node exited early: {status}; its log:\n{text}");
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("node did not listen on {addr}");
}

/// A minimal SMTP client over one connection.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn connect(addr: SocketAddr) -> std::io::Result<Client> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut c = Client {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
        };
        c.expect(220)?;
        c.cmd("EHLO crash.client", 250)?;
        Ok(c)
    }

    fn reply(&mut self) -> std::io::Result<u16> {
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if line.len() < 4 || line.as_bytes()[3] == b' ' {
                return line[..3.min(line.len())]
                    .parse()
                    .map_err(|_| std::io::ErrorKind::InvalidData.into());
            }
        }
    }

    fn expect(&mut self, code: u16) -> std::io::Result<()> {
        let got = self.reply()?;
        if got != code {
            return Err(std::io::Error::other(format!("expected {code}, got {got}")));
        }
        Ok(())
    }

    fn cmd(&mut self, line: &str, code: u16) -> std::io::Result<()> {
        self.writer.write_all(format!("{line}\r\n").as_bytes())?;
        self.expect(code)
    }

    /// Sends one message; Ok(true) only on `250` after the data.
    fn send(&mut self, to: &str, message_id: &str) -> std::io::Result<bool> {
        self.cmd("MAIL FROM:<load@remote.test>", 250)?;
        self.cmd(&format!("RCPT TO:<{to}>"), 250)?;
        self.cmd("DATA", 354)?;
        let body = format!(
            "From: load@remote.test\r\nTo: {to}\r\nSubject: crash\r\nMessage-ID: {message_id}\r\n\r\n{}\r\n.\r\n",
            "x".repeat(2000)
        );
        self.writer.write_all(body.as_bytes())?;
        Ok(self.reply()? == 250)
    }
}

fn message_ids(bytes: &[u8]) -> Option<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .find_map(|l| l.strip_prefix("Message-ID: ").map(|s| s.trim().to_string()))
}

/// Message-IDs in the account's INBOX and in queued items, read straight from the store.
async fn stored_ids(
    store: &dyn Store,
    blobs: &dyn mailfleet_store::BlobStore,
) -> (Vec<String>, Vec<String>) {
    let account = store.get_account("user@crash.test").await.unwrap().unwrap();
    let mut inbox = Vec::new();
    if let Some(mb) = store.get_mailbox(account.id, "INBOX").await.unwrap() {
        let msgs = store.list_messages(mb.id, 1, u32::MAX).await.unwrap();
        let uids: Vec<u32> = msgs.iter().map(|m| m.uid).collect();
        assert!(uids.windows(2).all(|w| w[0] < w[1]), "UIDs increase");
        for m in msgs {
            inbox.extend(message_ids(&blobs.get(&m.blob_id).await.unwrap()));
        }
    }
    let mut queued = Vec::new();
    for q in store.list_queue().await.unwrap() {
        queued.extend(message_ids(&blobs.get(&q.blob_id).await.unwrap()));
    }
    (inbox, queued)
}

/// Messages as blob files: each `250` waits for the file, its directory and the commit.
#[test]
fn kill_9_loses_no_acknowledged_message_with_blob_files() {
    kill_9_during_delivery("blobs_inline_max = \"0\"");
}

/// The default for a node without `blobs`: these small messages are kept in the store.
#[test]
fn kill_9_loses_no_acknowledged_message_with_inline_blobs() {
    kill_9_during_delivery("");
}

fn kill_9_during_delivery(extra_config: &str) {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store_url = format!("sqlite:{}", dir.path().join("store.db").display());
    let blob_spec = format!("fs:{}", dir.path().join("data/blobs").display());
    rt.block_on(async {
        let store = mailfleet_store::open(&store_url).await.unwrap();
        store.add_domain("crash.test").await.unwrap();
        store
            .create_account(&NewAccount {
                address: "user@crash.test".into(),
                password_hash: mailfleet_store::password::hash_password("pw").unwrap(),
                quota_bytes: 0,
                shard: "default".into(),
            })
            .await
            .unwrap();
        // Every fifth message goes to an alias that also forwards off-site: a queue item.
        store
            .add_alias(
                "fwd@crash.test",
                &["user@crash.test".into(), "away@remote.test".into()],
            )
            .await
            .unwrap();
    });
    let offset = mailfleet_test_support::free_port_offset(mailfleet_test_support::NODE_PORTS);
    let config = write_config(dir.path(), offset, extra_config);
    let addr: SocketAddr = format!("127.0.0.1:{}", 25 + offset).parse().unwrap();
    let first_log = dir.path().join("node-1.log");
    let mut node = start_node(&config, &first_log);
    wait_for_port(addr, &mut node, &first_log);

    let next = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(Mutex::new(Vec::<(String, bool)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let run_clients = |limit: usize| {
        (0..CLIENTS)
            .map(|_| {
                let (next, acked, stop) = (next.clone(), acked.clone(), stop.clone());
                std::thread::spawn(move || {
                    let deadline = Instant::now() + Duration::from_secs(60);
                    let mut client = None;
                    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                        let n = next.fetch_add(1, Ordering::SeqCst);
                        if n >= limit {
                            break;
                        }
                        let to_alias = n % 5 == 0;
                        let to = if to_alias {
                            "fwd@crash.test"
                        } else {
                            "user@crash.test"
                        };
                        let id = format!("<crash-{n}@client.test>");
                        if client.is_none() {
                            client = Client::connect(addr).ok();
                        }
                        match client.as_mut().map(|c| c.send(to, &id)) {
                            Some(Ok(true)) => acked.lock().unwrap().push((id, to_alias)),
                            _ => {
                                client = None;
                                std::thread::sleep(Duration::from_millis(20));
                            }
                        }
                    }
                })
            })
            .collect::<Vec<_>>()
    };

    // Phase 1: send until some 150 messages are in, then kill -9 mid-stream.
    let workers = run_clients(TOTAL);
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 150 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    node.kill().unwrap(); // SIGKILL
    node.wait().unwrap();
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    let before_kill: Vec<(String, bool)> = acked.lock().unwrap().clone();
    assert!(
        before_kill.len() >= 100,
        "only {} messages before the kill",
        before_kill.len()
    );

    let check = |acked: &[(String, bool)], check_queue: bool| {
        rt.block_on(async {
            let store = mailfleet_store::open(&store_url).await.unwrap();
            let blobs = mailfleet_store::open_blobs(&blob_spec, store.clone()).unwrap();
            let (inbox, queued) = stored_ids(store.as_ref(), blobs.as_ref()).await;
            for (id, to_alias) in acked {
                assert!(
                    inbox.contains(id),
                    "acknowledged {id} missing from the mailbox"
                );
                if *to_alias && check_queue {
                    assert!(
                        queued.contains(id),
                        "acknowledged {id} missing from the queue"
                    );
                }
            }
            inbox.len()
        })
    };
    // Straight after the crash, with the node down.
    check(&before_kill, true);

    // Phase 2: restart on the same store and send the rest of the 500.
    stop.store(false, Ordering::SeqCst);
    let second_log = dir.path().join("node-2.log");
    let mut node = start_node(&config, &second_log);
    wait_for_port(addr, &mut node, &second_log);
    for w in run_clients(TOTAL) {
        w.join().unwrap();
    }
    node.kill().unwrap();
    node.wait().unwrap();
    let all: Vec<(String, bool)> = acked.lock().unwrap().clone();
    assert!(
        all.len() > before_kill.len(),
        "nothing accepted after the restart"
    );
    // The node's queue runner may have worked on the queued copies by now: mailboxes only.
    let stored = check(&all, false);
    // The messages were kept where the configuration says.
    let (files, rows) = rt.block_on(async {
        let store = mailfleet_store::open(&store_url).await.unwrap();
        let files = mailfleet_store::blob::FsBlobs::new(dir.path().join("data/blobs"))
            .list()
            .await
            .unwrap()
            .len();
        (files, store.blob_list().await.unwrap().len())
    });
    if extra_config.is_empty() {
        assert!(files == 0 && rows > 0, "{files} files, {rows} rows");
    } else {
        assert!(files > 0 && rows == 0, "{files} files, {rows} rows");
    }
    println!(
        "{} acknowledged before kill -9, {} in all; {stored} messages in the mailbox",
        before_kill.len(),
        all.len()
    );
}
