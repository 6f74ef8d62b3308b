//! The SMTP intake probed as an attacker would: the real `mailfleet node` binary on 127.0.0.1,
//! clients that do not play by the rules, and the node's own memory (from /proc) measured
//! while they do. Each test here failed before the fix it is named for. IMAP and POP3 add
//! their own probes beside these.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use base64::Engine;
use mailfleet_store::password::hash_password;
use mailfleet_store::{NewAccount, Store};
use mailfleet_test_support::{ChildGuard, free_port_offset};

const PASSWORD: &str = "correct horse";

/// The binary under test: this build's, or another named by `MAILFLEET_TEST_BIN` (to run
/// the probes against an older build and see them fail).
fn binary() -> PathBuf {
    std::env::var_os("MAILFLEET_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_mailfleet")))
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn plain(user: &str, pass: &str) -> String {
    b64(&format!("\0{user}\0{pass}"))
}

/// A store with the domain `example.test`, `accounts` accounts `u0..` plus `alice`, all with
/// [`PASSWORD`], and `settings`.
struct Site {
    dir: tempfile::TempDir,
    store_url: String,
}

impl Site {
    fn new(accounts: usize, settings: &[(&str, &str)]) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let store_url = format!("sqlite:{}", dir.path().join("store.db").display());
        block_on(async {
            let store = mailfleet_store::open(&store_url).await.unwrap();
            store.add_domain("example.test").await.unwrap();
            // One hash for every account: the node checks each as if it were its own.
            let hash = hash_password(PASSWORD).unwrap();
            let mut all: Vec<NewAccount> = (0..accounts)
                .map(|i| NewAccount {
                    address: format!("u{i}@example.test"),
                    password_hash: hash.clone(),
                    quota_bytes: 0,
                    shard: "default".into(),
                })
                .collect();
            all.push(NewAccount {
                address: "alice@example.test".into(),
                password_hash: hash.clone(),
                quota_bytes: 0,
                shard: "default".into(),
            });
            store.create_accounts(&all).await.unwrap();
            // Over plain TCP in these tests.
            store
                .set_setting("smtp.auth.allow_cleartext", "true")
                .await
                .unwrap();
            for (k, v) in settings {
                store.set_setting(k, v).await.unwrap();
            }
        });
        Site { dir, store_url }
    }

    fn store(&self) -> Arc<dyn Store> {
        block_on(mailfleet_store::open(&self.store_url)).unwrap()
    }

    /// Runs `f` on the site's store.
    fn store_blocking<F, Fut>(&self, f: F)
    where
        F: FnOnce(Arc<dyn Store>) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        block_on(async {
            let store = mailfleet_store::open(&self.store_url).await.unwrap();
            f(store).await
        })
    }

    /// The messages in `address`'s INBOX, by UID, read from the store and the blob files.
    fn inbox(&self, address: &str) -> Vec<Vec<u8>> {
        let store = self.store();
        let data = self.dir.path().join("data-n1");
        block_on(async move {
            let blobs = mailfleet_store::open_node_blobs(
                &format!("fs:{}", data.join("blobs").display()),
                store.clone(),
                "n1",
                0,
            )
            .unwrap();
            let a = store.get_account(address).await.unwrap().unwrap();
            let mb = store.get_mailbox(a.id, "INBOX").await.unwrap().unwrap();
            let mut out = Vec::new();
            for m in store.list_messages(mb.id, 1, u32::MAX).await.unwrap() {
                out.push(blobs.get(&m.blob_id).await.unwrap());
            }
            out
        })
    }
}

/// A `mailfleet node` process on the site's store; killed when dropped.
struct Node {
    child: ChildGuard,
    log: PathBuf,
    data: PathBuf,
    mx: SocketAddr,
    submission: SocketAddr,
    pop3: SocketAddr,
}

impl Node {
    fn start(site: &Site, server_id: &str) -> Node {
        Self::start_limited(site, server_id, None)
    }

    /// With `nofile`, the node's open-file limit.
    fn start_limited(site: &Site, server_id: &str, nofile: Option<u64>) -> Node {
        let offset = free_port_offset(mailfleet_test_support::NODE_PORTS);
        let data = site.dir.path().join(format!("data-{server_id}"));
        let config = site.dir.path().join(format!("{server_id}.toml"));
        std::fs::write(
            &config,
            format!(
                "server_id = \"{server_id}\"\nhostname = \"mx.example.test\"\nstore = \"{}\"\n\
                 data_dir = \"{}\"\nblobs = \"fs:{}\"\nbind = \"127.0.0.1\"\nport_offset = {offset}\n",
                site.store_url,
                data.display(),
                site.dir.path().join("data-n1").join("blobs").display(),
            ),
        )
        .unwrap();
        let log = site.dir.path().join(format!("{server_id}.log"));
        let mut cmd = Command::new(binary());
        cmd.args(["node", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some(limit) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: only setrlimit, async-signal-safe, runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = ChildGuard::spawn(&mut cmd).unwrap();
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let mut node = Node {
            child,
            log,
            data,
            mx: SocketAddr::new(ip, 25 + offset),
            submission: SocketAddr::new(ip, 587 + offset),
            pop3: SocketAddr::new(ip, 110 + offset),
        };
        node.wait_listening();
        node
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("node exited early: {status}; its log:\n{}", self.log_text());
            }
            if TcpStream::connect_timeout(&self.submission, Duration::from_millis(200)).is_ok()
                && TcpStream::connect_timeout(&self.mx, Duration::from_millis(200)).is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("node did not listen; its log:\n{}", self.log_text());
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A field of /proc/PID/status in KiB (`VmRSS`, `VmHWM`).
    fn status_kib(&self, field: &str) -> u64 {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }

    fn rss_mib(&self) -> u64 {
        self.status_kib("VmRSS") / 1024
    }
}

/// Samples a node's RSS every 20 ms while `work` runs; returns (work's result, peak MiB).
fn peak_rss_while<T>(node: &Node, work: impl FnOnce() -> T) -> (T, u64) {
    let pid = node.child.id();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/status"))
                    && let Some(kib) = text
                        .lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                {
                    peak = peak.max(kib / 1024);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        })
    };
    let out = work();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    (out, sampler.join().unwrap())
}

/// A raw SMTP client over one connection.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        Self::connect_from(addr, None)
    }

    /// Connects from a chosen loopback source address.
    fn connect_from(addr: SocketAddr, source: Option<Ipv4Addr>) -> Client {
        let s = match source {
            None => TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap(),
            Some(ip) => {
                let sock = socket2::Socket::new(
                    socket2::Domain::IPV4,
                    socket2::Type::STREAM,
                    Some(socket2::Protocol::TCP),
                )
                .unwrap();
                sock.bind(&SocketAddr::new(IpAddr::V4(ip), 0).into())
                    .unwrap();
                sock.connect_timeout(&addr.into(), Duration::from_secs(10))
                    .unwrap();
                sock.into()
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut c = Client {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
        };
        assert_eq!(c.reply().0, 220);
        c
    }

    /// One reply: its code and its last line. Code 0 at EOF.
    fn reply(&mut self) -> (u16, String) {
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) | Err(_) => return (0, String::new()),
                Ok(_) => {}
            }
            if line.len() < 4 || line.as_bytes()[3] == b' ' {
                let code = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
                return (code, line.trim_end().to_string());
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    fn cmd(&mut self, line: &str) -> (u16, String) {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    fn ok(&mut self, line: &str, code: u16) {
        let (got, text) = self.cmd(line);
        assert_eq!(got, code, "{line:?} got {text:?}");
    }

    fn login(&mut self, user: &str) {
        self.ok("EHLO probe.test", 250);
        self.ok(&format!("AUTH PLAIN {}", plain(user, PASSWORD)), 235);
    }
}

/// Finding 1: forty guesses from one address at the same moment, over two nodes on one store,
/// get at most five password checks between them; the right password after them is refused.
#[test]
fn parallel_guesses_from_one_address_count_one_each() {
    let site = Site::new(0, &[]);
    let nodes = [Node::start(&site, "n1"), Node::start(&site, "n2")];
    let barrier = Arc::new(Barrier::new(40));
    let mut threads = Vec::new();
    for i in 0..40 {
        let addr = nodes[i % 2].submission;
        let barrier = barrier.clone();
        threads.push(std::thread::spawn(move || {
            let mut c = Client::connect(addr);
            c.ok("EHLO guesser.test", 250);
            barrier.wait();
            c.cmd(&format!(
                "AUTH PLAIN {}",
                plain("alice@example.test", &format!("guess {i}"))
            ))
            .0
        }));
    }
    let codes: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let checked = codes.iter().filter(|&&c| c == 535).count();
    let refused = codes.iter().filter(|&&c| c == 454).count();
    assert!(checked <= 5, "{checked} guesses checked: {codes:?}");
    assert_eq!(checked + refused, 40, "{codes:?}");
    let mut c = Client::connect(nodes[0].submission);
    c.ok("EHLO owner.test", 250);
    let (code, text) = c.cmd(&format!(
        "AUTH PLAIN {}",
        plain("alice@example.test", PASSWORD)
    ));
    assert_eq!(code, 454, "the right password after the lockout: {text}");
}

/// Finding 2: a hundred failed logins from a hundred addresses at once, each against its own
/// account (no lockout, no pacing slows them): the node stays under 200 MB and goes back
/// near where it started.
#[test]
fn parallel_password_checks_are_bounded_in_memory() {
    let site = Site::new(100, &[]);
    let node = Node::start(&site, "n1");
    // Warm up: one login, so that the baseline includes a check's own memory.
    Client::connect(node.submission).login("alice@example.test");
    let baseline = node.rss_mib();
    let ((), peak) = peak_rss_while(&node, || {
        let barrier = Arc::new(Barrier::new(100));
        let threads: Vec<_> = (0..100u8)
            .map(|i| {
                let addr = node.submission;
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let mut c = Client::connect_from(addr, Some(Ipv4Addr::new(127, 0, 1, i + 1)));
                    c.ok("EHLO guesser.test", 250);
                    barrier.wait();
                    let (code, text) = c.cmd(&format!(
                        "AUTH PLAIN {}",
                        plain(&format!("u{i}@example.test"), "wrong")
                    ));
                    // 454 only if the check queue were full (it holds 64 per core).
                    assert!(code == 535 || code == 454, "{text}");
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    });
    eprintln!("RSS baseline {baseline} MiB, peak during 100 parallel logins {peak} MiB");
    assert!(peak < 200, "peak RSS {peak} MiB (baseline {baseline} MiB)");
    // Back near the baseline once the checks are over.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = node.rss_mib();
        if now <= baseline + 40 {
            eprintln!("RSS after: {now} MiB");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "RSS stays at {now} MiB after the logins (baseline {baseline} MiB)"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Finding 3: an over-long line in an AUTH exchange gets one reply, and the replies after it
/// answer the commands they belong to.
#[test]
fn an_over_long_auth_answer_gets_one_reply() {
    let site = Site::new(0, &[]);
    let node = Node::start(&site, "n1");
    let long = "A".repeat(20_000);
    let mut c = Client::connect(node.submission);
    c.ok("EHLO long.test", 250);
    // PLAIN's one prompt, LOGIN's user prompt, LOGIN's password prompt.
    for (command, prompts_before) in [("AUTH PLAIN", 0), ("AUTH LOGIN", 0), ("AUTH LOGIN", 1)] {
        let (code, _) = c.cmd(command);
        assert_eq!(code, 334, "{command}");
        for _ in 0..prompts_before {
            let (code, _) = c.cmd(&b64("alice@example.test"));
            assert_eq!(code, 334);
        }
        c.send(format!("{long}\r\nNOOP\r\n").as_bytes());
        let (code, text) = c.reply();
        assert_eq!(code, 501, "{command}: {text}");
        let (code, text) = c.reply();
        assert_eq!(code, 250, "{command}: NOOP's reply, got {text}");
    }
    c.ok("NOOP", 250);
    c.ok("QUIT", 221);
}

/// Finding 4: `<Postmaster>` and postmaster at a local domain are accepted and reach the
/// `smtp.postmaster` address, though no account of that name exists.
#[test]
fn postmaster_is_accepted_and_delivered() {
    let site = Site::new(0, &[("smtp.postmaster", "alice@example.test")]);
    let node = Node::start(&site, "n1");
    let mut c = Client::connect(node.mx);
    c.ok("EHLO remote.test", 250);
    for rcpt in [
        "<Postmaster>",
        "<postmaster@example.test>",
        "<POSTMASTER@Example.Test>",
    ] {
        c.ok("MAIL FROM:<someone@remote.test>", 250);
        c.ok(&format!("RCPT TO:{rcpt}"), 250);
        c.ok("DATA", 354);
        c.send(format!("Subject: to {rcpt}\r\n\r\nhello\r\n.\r\n").as_bytes());
        let (code, text) = c.reply();
        assert_eq!(code, 250, "{rcpt}: {text}");
    }
    c.ok("QUIT", 221);
    let inbox = site.inbox("alice@example.test");
    assert_eq!(inbox.len(), 3);
    for (m, rcpt) in inbox
        .iter()
        .zip(["<Postmaster>", "<postmaster@example.test>"])
    {
        let text = String::from_utf8_lossy(m);
        assert!(text.contains(&format!("Subject: to {rcpt}")), "{text}");
    }
}

/// Finding 5: a client sending one byte at a time is cut off by the command deadline (and
/// during DATA by the minimum rate), however often the bytes come.
#[test]
fn trickling_clients_are_cut_off() {
    let site = Site::new(
        0,
        &[
            ("smtp.command_deadline_seconds", "2"),
            ("smtp.data_min_rate", "500"),
        ],
    );
    let node = Node::start(&site, "n1");
    let trickle = |c: &mut Client| -> Duration {
        let started = Instant::now();
        c.writer
            .set_write_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        // A byte every 250 ms, far more often than the 300 s idle timeout, for up to 60 s.
        for _ in 0..240 {
            if c.writer.write_all(b"x").is_err() {
                break;
            }
            c.writer
                .set_read_timeout(Some(Duration::from_millis(250)))
                .unwrap();
            let mut byte = [0u8; 1];
            match c.reader.get_mut().peek(&mut byte) {
                Ok(_) => break,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => break,
            }
        }
        c.writer
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        started.elapsed()
    };
    let mut c = Client::connect(node.mx);
    c.send(b"NOOP ");
    let took = trickle(&mut c);
    let (code, text) = c.reply();
    assert_eq!(code, 421, "command line: {text}");
    assert!(took < Duration::from_secs(30), "cut off after {took:?}");

    let mut c = Client::connect(node.mx);
    c.ok("EHLO slow.test", 250);
    c.ok("MAIL FROM:<slow@remote.test>", 250);
    c.ok("RCPT TO:<alice@example.test>", 250);
    c.ok("DATA", 354);
    let took = trickle(&mut c);
    let (code, text) = c.reply();
    assert_eq!(code, 421, "DATA: {text}");
    assert!(took < Duration::from_secs(30), "cut off after {took:?}");
}

/// Sends one message of `size` bytes with DATA (`bdat_chunk` = None) or BDAT in chunks.
fn send_large(addr: SocketAddr, size: usize, bdat_chunk: Option<usize>, tag: usize) -> u16 {
    let mut c = Client::connect(addr);
    c.ok("EHLO big.test", 250);
    c.ok("MAIL FROM:<big@remote.test>", 250);
    c.ok("RCPT TO:<alice@example.test>", 250);
    let head = format!("Subject: large {tag}\r\n\r\n");
    let line = format!("{}\r\n", "y".repeat(998));
    let mut body = Vec::with_capacity(size);
    body.extend_from_slice(head.as_bytes());
    while body.len() + line.len() <= size {
        body.extend_from_slice(line.as_bytes());
    }
    match bdat_chunk {
        None => {
            c.ok("DATA", 354);
            c.send(&body);
            c.send(b".\r\n");
        }
        Some(chunk) => {
            let parts: Vec<&[u8]> = body.chunks(chunk).collect();
            for (i, part) in parts.iter().enumerate() {
                let last = if i + 1 == parts.len() { " LAST" } else { "" };
                c.send(format!("BDAT {}{last}\r\n", part.len()).as_bytes());
                c.send(part);
                if last.is_empty() {
                    assert_eq!(c.reply().0, 250);
                }
            }
        }
    }
    c.reply().0
}

/// Finding 6: twenty 20 MB messages arriving at once (half DATA, half BDAT) do not sit in
/// the node's memory: they go to spool files and from there into the blob store.
#[test]
fn large_messages_are_spooled_not_held_in_memory() {
    let site = Site::new(0, &[]);
    let node = Node::start(&site, "n1");
    let size = 20 << 20;
    let baseline = node.rss_mib();
    let (codes, peak) = peak_rss_while(&node, || {
        let threads: Vec<_> = (0..20)
            .map(|i| {
                let addr = node.mx;
                std::thread::spawn(move || {
                    let chunk = (i % 2 == 1).then_some(1 << 20);
                    send_large(addr, size, chunk, i)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect::<Vec<_>>()
    });
    eprintln!("RSS baseline {baseline} MiB, peak during 20 × 20 MB {peak} MiB");
    assert!(codes.iter().all(|&c| c == 250), "{codes:?}");
    assert!(peak < 150, "peak RSS {peak} MiB (baseline {baseline} MiB)");
    let inbox = site.inbox("alice@example.test");
    assert_eq!(inbox.len(), 20);
    for m in &inbox {
        assert!(
            m.len() > size - 1000 && m.len() < size + 1000,
            "{}",
            m.len()
        );
        assert!(m.starts_with(b"Return-Path: <big@remote.test>\r\nReceived: from big.test"));
    }
    // Nothing left in the spool.
    let left: Vec<_> = std::fs::read_dir(node.data.join("tmp"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".spool."))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Finding 7: a BDAT chunk declared over the size limit is answered 552 at once; one too
/// large to read past closes the connection, a smaller one is read and dropped and the
/// session goes on. DATA past the limit gets 552 too.
#[test]
fn oversized_chunks_are_refused_at_once() {
    let site = Site::new(0, &[("smtp.max_message_size", "4K")]);
    let node = Node::start(&site, "n1");
    let mut c = Client::connect(node.mx);
    c.ok("EHLO big.test", 250);
    c.ok("MAIL FROM:<big@remote.test>", 250);
    c.ok("RCPT TO:<alice@example.test>", 250);
    let started = Instant::now();
    let (code, text) = c.cmd("BDAT 9223372036854775808 LAST");
    assert_eq!(code, 552, "{text}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(c.reply().0, 0, "then the connection closes");

    let mut c = Client::connect(node.mx);
    c.ok("EHLO big.test", 250);
    c.ok("MAIL FROM:<big@remote.test>", 250);
    c.ok("RCPT TO:<alice@example.test>", 250);
    c.send(b"BDAT 3000\r\n");
    c.send(&[b'z'; 3000]);
    assert_eq!(c.reply().0, 250);
    // 3000 + 2000 > 4096: answered before the chunk is sent.
    let (code, text) = c.cmd("BDAT 2000 LAST");
    assert_eq!(code, 552, "{text}");
    c.send(&[b'z'; 2000]);
    c.ok("NOOP", 250);
    c.ok("MAIL FROM:<big@remote.test>", 250);
    c.ok("RCPT TO:<alice@example.test>", 250);
    c.ok("DATA", 354);
    c.send(format!("{}\r\n.\r\n", "w".repeat(6000)).as_bytes());
    assert_eq!(c.reply().0, 552);
    c.ok("NOOP", 250);
}

/// Submission: the `From:` header must be the user's, as the envelope sender must.
#[test]
fn submission_checks_the_from_header() {
    let site = Site::new(0, &[]);
    site.store_blocking(|store| async move {
        store
            .add_alias("sales@example.test", &["alice@example.test".to_string()])
            .await
            .unwrap();
    });
    let node = Node::start(&site, "n1");
    let mut c = Client::connect(node.submission);
    c.login("alice@example.test");
    for (from, code) in [
        ("Mallory <mallory@example.test>", 550),
        ("Alice <alice@example.test>", 250),
        ("sales@example.test", 250),
        ("alice@example.test, ceo@example.test", 550),
        ("undisclosed", 550),
    ] {
        c.ok("MAIL FROM:<alice@example.test>", 250);
        c.ok("RCPT TO:<friend@remote.test>", 250);
        c.ok("DATA", 354);
        c.send(format!("From: {from}\r\nSubject: hi\r\n\r\nhello\r\n.\r\n").as_bytes());
        let (got, text) = c.reply();
        assert_eq!(got, code, "From: {from}: {text}");
    }
    drop(c);
    site.store_blocking(|store| async move {
        store
            .set_setting("smtp.submission.check_from_header", "false")
            .await
            .unwrap();
    });
    // Settings reach the node within about a second: poll until the header passes.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut c = Client::connect(node.submission);
        c.login("alice@example.test");
        c.ok("MAIL FROM:<alice@example.test>", 250);
        c.ok("RCPT TO:<friend@remote.test>", 250);
        c.ok("DATA", 354);
        c.send(b"From: mallory@example.test\r\n\r\nhello\r\n.\r\n");
        if c.reply().0 == 250 {
            break;
        }
        assert!(Instant::now() < deadline, "the setting never took effect");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Out of file descriptors, the listener backs off and logs a burst in a few lines, not one
/// line per failed accept.
#[test]
fn accept_errors_are_logged_once_per_burst() {
    let site = Site::new(0, &[]);
    let node = Node::start_limited(&site, "n1", Some(64));
    // Hold connections until accepts fail, then keep trying for three seconds.
    let mut held = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        if let Ok(s) = TcpStream::connect_timeout(&node.mx, Duration::from_millis(200)) {
            held.push(s);
        }
        if held.len() >= 200 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let log = node.log_text();
    let lines = log.lines().filter(|l| l.contains("accept")).count();
    assert!(
        log.contains("accept failed"),
        "the limit was never reached ({} connections held):\n{log}",
        held.len()
    );
    assert!(lines <= 3, "{lines} accept lines in 3 s:\n{log}");
    // Once connections close, it accepts again and says so.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(s) = TcpStream::connect_timeout(&node.mx, Duration::from_secs(2)) {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut c = Client {
                reader: BufReader::new(s.try_clone().unwrap()),
                writer: s,
            };
            if c.reply().0 == 220 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "never accepted again");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The lockout is the node's, not SMTP's: failed SMTP logins from an address lock it out of
/// POP3 too, and a POP3 line of 100 KB gets one error without growing the node.
#[test]
fn smtp_failures_lock_pop3_out_and_pop3_junk_is_refused() {
    let site = Site::new(
        0,
        &[
            ("smtp.auth.lockout_failures", "3"),
            ("pop3.auth.allow_cleartext", "true"),
        ],
    );
    let node = Node::start(&site, "n1");
    let mut c = Client::connect(node.submission);
    c.ok("EHLO guesser.test", 250);
    for i in 0..3 {
        let (code, _) = c.cmd(&format!(
            "AUTH PLAIN {}",
            plain("alice@example.test", &format!("guess {i}"))
        ));
        assert_eq!(code, 535);
    }
    let pop3 = TcpStream::connect_timeout(&node.pop3, Duration::from_secs(10)).unwrap();
    pop3.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut reader = BufReader::new(pop3.try_clone().unwrap());
    let mut writer = pop3;
    let mut line = || {
        let mut l = String::new();
        reader.read_line(&mut l).unwrap();
        l
    };
    assert!(line().starts_with("+OK"));
    let before = node.rss_mib();
    writer
        .write_all(
            format!(
                "NOOP {}\r\nUSER alice@example.test\r\n",
                "x".repeat(100_000)
            )
            .as_bytes(),
        )
        .unwrap();
    assert!(line().starts_with("-ERR"), "one error for the long line");
    assert!(line().starts_with("+OK"), "then USER is answered in step");
    writer
        .write_all(format!("PASS {PASSWORD}\r\n").as_bytes())
        .unwrap();
    let answer = line();
    assert!(answer.starts_with("-ERR [LOGIN-DELAY]"), "{answer}");
    assert!(node.rss_mib() < before + 20, "the long line was not kept");
}
