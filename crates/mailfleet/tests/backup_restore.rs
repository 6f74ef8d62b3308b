//! `mailfleet backup`, `restore` and `store copy` through the real binary, with real nodes: mail
//! sent over SMTP and flagged over IMAP on a node on SQLite is backed up while the node runs,
//! restored into an empty SQLite store and into an empty PostgreSQL database, and a node on
//! each restored store serves the same messages, UIDs and flags over IMAP (Python's imaplib).
//! Also: a second backup copies no unchanged blob; `--keep` removes old backups and the blobs
//! only they used; a damaged or unfinished backup and a non-empty target are refused; `store
//! copy` from SQLite to PostgreSQL prints equal counts and checksums and a node on PostgreSQL
//! serves the mail; the master writes scheduled backups from the `backup.*` settings; the
//! full-text index, which neither carries, is filled by `store reindex` and by the master.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mailfleet_store::NewAccount;
use mailfleet_test_support::{ChildGuard, NODE_PORTS, PgServer, free_port_offset};

const BIN: &str = env!("CARGO_BIN_EXE_mailfleet");
const USER: &str = "user@backup.test";
const PASSWORD: &str = "secret-pw";

/// A running `mailfleet node`, killed when dropped.
struct Node {
    child: ChildGuard,
    log: PathBuf,
    offset: u16,
}

impl Node {
    /// Starts a node on `store` with its data (and, unless `blobs` says otherwise, its blobs)
    /// under `dir/data`, and waits until it answers on IMAPS.
    fn start(dir: &Path, store: &str, blobs: Option<&str>) -> Node {
        std::fs::create_dir_all(dir).unwrap();
        let offset = free_port_offset(NODE_PORTS);
        let config = dir.join("node.toml");
        let mut text = format!(
            "server_id = \"{}\"\nhostname = \"mx.backup.test\"\nstore = \"{store}\"\n\
             data_dir = \"{}\"\nbind = \"127.0.0.1\"\nport_offset = {offset}\n",
            dir.file_name().unwrap().to_string_lossy(),
            dir.join("data").display()
        );
        if let Some(b) = blobs {
            text.push_str(&format!("blobs = \"{b}\"\nblobs_inline_max = \"64K\"\n"));
        }
        std::fs::write(&config, text).unwrap();
        let log = dir.join("node.log");
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
        let mut node = Node { child, log, offset };
        node.wait_listening(993);
        node
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_listening(&mut self, port: u16) {
        let addr: SocketAddr = ([127, 0, 0, 1], port + self.offset).into();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("node exited: {status}; its log:\n{}", self.log());
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("node did not listen on {addr}; its log:\n{}", self.log());
    }

    /// Runs a Python script with `SMTP`, `IMAPS` (ports) and `USER`, `PASSWORD` defined and
    /// an `imap()` that logs in; returns its stdout.
    fn python(&self, body: &str) -> String {
        let script = format!(
            r#"
import smtplib, ssl, imaplib, json, hashlib, re
SMTP = {smtp}
IMAPS = {imaps}
USER = "{USER}"
PASSWORD = "{PASSWORD}"
def imap():
    ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
    m = imaplib.IMAP4_SSL("127.0.0.1", IMAPS, ssl_context=ctx, timeout=30)
    m.login(USER, PASSWORD)
    return m
def send(subject, body):
    s = smtplib.SMTP("127.0.0.1", SMTP, timeout=30)
    s.sendmail("someone@remote.test", [USER], "Subject: " + subject + "\r\n\r\n" + body)
    s.quit()
def view():
    # Every message of INBOX: UID, flags (without \Recent, which is per session), body digest.
    m = imap()
    typ, data = m.select("INBOX")
    assert typ == "OK", data
    uidvalidity = m.response("UIDVALIDITY")[1][0].decode()
    typ, data = m.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[])")
    assert typ == "OK", data
    out = []
    for item in data:
        if not isinstance(item, tuple):
            continue
        head = item[0].decode()
        uid = int(re.search(r"UID (\d+)", head).group(1))
        flags = sorted(f for f in re.search(r"FLAGS \(([^)]*)\)", head).group(1).split() if f != "\\Recent")
        out.append([uid, flags, hashlib.sha256(item[1]).hexdigest()])
    m.logout()
    return {{"uidvalidity": uidvalidity, "messages": sorted(out)}}
{body}
"#,
            smtp = 25 + self.offset,
            imaps = 993 + self.offset,
        );
        let out = Command::new("python3")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "python failed: {}\nnode log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The INBOX as [`Node::python`]'s `view()` sees it.
    fn view(&self) -> serde_json::Value {
        serde_json::from_str(&self.python("print(json.dumps(view()))")).unwrap()
    }
}

fn provision(url: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = mailfleet_store::open(url).await.unwrap();
        store.add_domain("backup.test").await.unwrap();
        store
            .create_account(&NewAccount {
                address: USER.into(),
                password_hash: mailfleet_store::password::hash_password(PASSWORD).unwrap(),
                quota_bytes: 0,
                shard: "default".into(),
            })
            .await
            .unwrap();
    });
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn mailfleet(args: &[&str]) -> Run {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("MAILFLEET_STORE")
        .env_remove("MAILFLEET_BLOBS")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ok(args: &[&str]) -> String {
    let r = mailfleet(args);
    assert_eq!(r.code, 0, "{args:?}: {}{}", r.stdout, r.stderr);
    r.stdout
}

/// The one error line of a failed run, without its `mailfleet: ` prefix.
fn fails(args: &[&str]) -> String {
    let r = mailfleet(args);
    assert_eq!(r.code, 1, "{args:?} should fail: {}{}", r.stdout, r.stderr);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: {}", r.stderr);
    lines[0].trim_start_matches("mailfleet: ").to_string()
}

fn sqlite(dir: &Path) -> String {
    format!("sqlite:{}", dir.join("mailfleet.db").display())
}

/// Every blob file of a backup area: path → (inode, modification time).
fn blob_files(area: &Path) -> BTreeMap<PathBuf, (u64, std::time::SystemTime)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![area.join("blobs")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let md = e.metadata().unwrap();
            if md.is_dir() {
                if e.file_name() != "tmp" {
                    stack.push(e.path());
                }
            } else {
                out.insert(e.path(), (md.ino(), md.modified().unwrap()));
            }
        }
    }
    out
}

/// The complete backups of an area, by name.
fn backups(area: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(area)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().join("manifest.json").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// (table → (rows, checksum)) from a `TABLE ROWS CHECKSUM` listing, from the line after
/// `after` up to the next line that is not a table row.
fn parse_tables(text: &str, after: &str) -> BTreeMap<String, (u64, String)> {
    let mut out = BTreeMap::new();
    let mut lines = text.lines().skip_while(|l| !l.starts_with(after)).skip(1);
    assert!(
        lines.next().is_some_and(|h| h.starts_with("TABLE")),
        "{text}"
    );
    for line in lines {
        let cols: Vec<&str> = line.split_whitespace().collect();
        match cols.as_slice() {
            [name, rows, sum] if rows.parse::<u64>().is_ok() && sum.len() == 64 => {
                out.insert(name.to_string(), (rows.parse().unwrap(), sum.to_string()));
            }
            _ => break,
        }
    }
    out
}

#[test]
fn backup_while_running_restore_into_sqlite_and_postgres_and_read_over_imap() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("source");
    std::fs::create_dir_all(&src).unwrap();
    let src_url = sqlite(&src);
    provision(&src_url);
    let node = Node::start(&src, &src_url, None);
    // Two small messages (kept in the store's blobs table) and a large one (a file); flags,
    // a keyword, an expunge.
    node.python(
        r#"
send("one", "first\r\n")
send("two", "second\r\n")
send("three", "x" * 200000 + "\r\n")
m = imap()
m.select("INBOX")
assert m.uid("STORE", "1", "+FLAGS", "(\\Flagged $Work)")[0] == "OK"
assert m.uid("STORE", "3", "+FLAGS", "(\\Seen)")[0] == "OK"
assert m.uid("STORE", "2", "+FLAGS", "(\\Deleted)")[0] == "OK"
assert m.expunge()[0] == "OK"
m.logout()
"#,
    );
    let before = node.view();
    let uids: Vec<u64> = before["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m[0].as_u64().unwrap())
        .collect();
    assert_eq!(uids, vec![1, 3], "{before}");

    // Backed up while the node runs.
    let area = dir.path().join("backups");
    let blobs_flag = format!("fs:{}", src.join("data").join("blobs").display());
    let area_s = area.to_str().unwrap();
    let out = ok(&[
        "backup",
        area_s,
        "--store",
        &src_url,
        "--blobs",
        &blobs_flag,
        "--name",
        "first",
    ]);
    // The expunged message's blob is still a row of the blobs table (until blob GC), so it is
    // kept too: three blobs.
    assert!(out.contains("3 blobs, 3 copied"), "{out}");
    let files = blob_files(&area);
    assert_eq!(files.len(), 3, "{files:?}");

    // A second backup of the unchanged store writes no blob file.
    let out = ok(&[
        "backup",
        area_s,
        "--store",
        &src_url,
        "--blobs",
        &blobs_flag,
        "--name",
        "second",
    ]);
    assert!(out.contains("3 blobs, 0 copied"), "{out}");
    assert_eq!(
        blob_files(&area),
        files,
        "a second backup rewrote blob files"
    );
    assert_eq!(backups(&area), vec!["first", "second"]);

    // Into a new area without --blobs, the large message's blob file cannot be found:
    // refused, nothing kept. (Into the first area it would pass: that blob is there already.)
    let other = dir.path().join("other-area");
    let e = fails(&[
        "backup",
        other.to_str().unwrap(),
        "--store",
        &src_url,
        "--name",
        "third",
    ]);
    assert!(e.contains("--blobs fs:PATH"), "{e}");
    assert!(backups(&other).is_empty());
    assert!(!other.join("third").exists());

    // Into an empty SQLite store: a node on it serves the same UIDs, flags and bytes.
    let restored = dir.path().join("rsqlite");
    std::fs::create_dir_all(&restored).unwrap();
    let restored_url = sqlite(&restored);
    let restored_blobs = format!("fs:{}", restored.join("data").join("blobs").display());
    let second = area.join("second");
    let out = ok(&[
        "restore",
        second.to_str().unwrap(),
        "--store",
        &restored_url,
        "--blobs",
        &restored_blobs,
    ]);
    assert!(out.contains("restored backup second"), "{out}");
    assert!(out.contains("1 blob written"), "{out}");
    // The full-text index is not in a backup; here the master's job fills it.
    assert_eq!(missing_text(&restored_url), 2);
    {
        let node = Node::start(&restored, &restored_url, None);
        let deadline = Instant::now() + Duration::from_secs(30);
        while missing_text(&restored_url) > 0 {
            assert!(
                Instant::now() < deadline,
                "the master did not index the mail"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(node.view(), before);
        // New mail continues the UIDs.
        let after: serde_json::Value = serde_json::from_str(
            &node.python("send(\"four\", \"fourth\\r\\n\")\nprint(json.dumps(view()))"),
        )
        .unwrap();
        let last = after["messages"].as_array().unwrap().last().unwrap()[0]
            .as_u64()
            .unwrap();
        assert_eq!(last, 4, "{after}");
    }
    // It has accounts now: refused, naming the problem.
    let e = fails(&[
        "restore",
        area_s,
        "--store",
        &restored_url,
        "--blobs",
        &restored_blobs,
    ]);
    assert!(e.contains("not empty") && e.contains("accounts"), "{e}");

    // Into an empty PostgreSQL database, from the area (its newest backup).
    let pg = PgServer::start();
    let pg_url = pg.create_database("restored");
    let on_pg = dir.path().join("rpg");
    let pg_blobs = format!("fs:{}", on_pg.join("data").join("blobs").display());
    let out = ok(&["restore", area_s, "--store", &pg_url, "--blobs", &pg_blobs]);
    assert!(out.contains("restored backup second"), "{out}");
    // The full-text index is not in a backup: `store reindex` fills it from the blobs.
    assert_eq!(missing_text(&pg_url), 2);
    let out = ok(&["store", "reindex", "--store", &pg_url, "--blobs", &pg_blobs]);
    assert!(
        out.contains("2 messages indexed; 0 messages left out"),
        "{out}"
    );
    assert_eq!(missing_text(&pg_url), 0);
    let out = ok(&["store", "reindex", "--store", &pg_url, "--blobs", &pg_blobs]);
    assert!(out.contains("0 messages indexed"), "{out}");
    {
        let node = Node::start(&on_pg, &pg_url, None);
        assert_eq!(node.view(), before);
    }

    // An unfinished backup (no manifest) and a damaged one are refused.
    let half = area.join("half");
    std::fs::create_dir_all(half.join("tables")).unwrap();
    for e in std::fs::read_dir(second.join("tables")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), half.join("tables").join(e.file_name())).unwrap();
    }
    std::fs::copy(second.join("blobs.list"), half.join("blobs.list")).unwrap();
    let empty = dir.path().join("empty");
    let empty_url = sqlite(&empty);
    let e = fails(&[
        "restore",
        half.to_str().unwrap(),
        "--store",
        &empty_url,
        "--blobs",
        "db",
    ]);
    assert!(e.contains("not a complete backup"), "{e}");
    std::fs::copy(second.join("manifest.json"), half.join("manifest.json")).unwrap();
    let table = half.join("tables").join("messages.jsonl");
    let mut text = std::fs::read_to_string(&table).unwrap();
    text.truncate(text.len() - 10);
    std::fs::write(&table, text).unwrap();
    let e = fails(&[
        "restore",
        half.to_str().unwrap(),
        "--store",
        &empty_url,
        "--blobs",
        "db",
    ]);
    assert!(e.contains("messages.jsonl") && e.contains("damaged"), "{e}");
    std::fs::remove_dir_all(&half).unwrap();

    // Retention: a new large message, and the large one before it expunged (its file is no
    // longer referred to), then backups with --keep 2: that file goes from the area once no
    // kept backup lists it.
    node.python(
        r#"
send("five", "y" * 150000 + "\r\n")
m = imap()
m.select("INBOX")
assert m.uid("STORE", "3", "+FLAGS", "(\\Deleted)")[0] == "OK"
assert m.expunge()[0] == "OK"
m.logout()
"#,
    );
    let out = ok(&[
        "backup",
        area_s,
        "--store",
        &src_url,
        "--blobs",
        &blobs_flag,
        "--name",
        "third",
        "--keep",
        "2",
    ]);
    assert!(out.contains("1 copied"), "{out}");
    assert!(
        out.contains("removed 1 old backup (first) and 0 blobs"),
        "{out}"
    );
    assert_eq!(backups(&area), vec!["second", "third"]);
    assert_eq!(blob_files(&area).len(), 4);
    let out = ok(&[
        "backup",
        area_s,
        "--store",
        &src_url,
        "--blobs",
        &blobs_flag,
        "--name",
        "fourth",
        "--keep",
        "2",
    ]);
    assert!(out.contains("0 copied"), "{out}");
    assert!(
        out.contains("removed 1 old backup (second) and 1 blob"),
        "{out}"
    );
    assert_eq!(backups(&area), vec!["fourth", "third"]);
    assert_eq!(blob_files(&area).len(), 3);
    drop(node);
}

#[test]
fn store_copy_from_sqlite_to_postgres_then_a_node_on_postgres_serves_the_mail() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("one");
    std::fs::create_dir_all(&src).unwrap();
    let src_url = sqlite(&src);
    provision(&src_url);
    let before = {
        let node = Node::start(&src, &src_url, None);
        node.python(
            r#"
send("small", "hello\r\n")
send("large", "z" * 100000 + "\r\n")
m = imap()
m.select("INBOX")
assert m.uid("STORE", "2", "+FLAGS", "(\\Answered $Label1)")[0] == "OK"
m.logout()
"#,
        );
        node.view()
    };
    let pg = PgServer::start();
    let pg_url = pg.create_database("cluster");
    let out = ok(&["store", "copy", "--from", &src_url, "--to", &pg_url]);
    let source = parse_tables(&out, "source");
    let target = parse_tables(&out, "target");
    assert_eq!(source, target, "{out}");
    assert_eq!(source["accounts"].0, 1, "{out}");
    assert_eq!(source["messages"].0, 2, "{out}");
    assert!(out.contains("1 blob file kept where they are"), "{out}");
    // A second copy into it is refused.
    let e = fails(&["store", "copy", "--from", &src_url, "--to", &pg_url]);
    assert!(e.contains("not empty"), "{e}");

    // A node on PostgreSQL, its blob files where the one-machine install kept them.
    assert_eq!(
        missing_text(&pg_url),
        2,
        "the full-text index is not copied"
    );
    let blobs = format!("fs:{}", src.join("data").join("blobs").display());
    let node = Node::start(&dir.path().join("two"), &pg_url, Some(&blobs));
    assert_eq!(node.view(), before);
    // As master, the node fills the full-text index (its `text-index` job).
    let deadline = Instant::now() + Duration::from_secs(30);
    while missing_text(&pg_url) > 0 {
        assert!(
            Instant::now() < deadline,
            "the master did not index the copied mail; its log:\n{}",
            std::fs::read_to_string(&node.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// How many messages of the store at `url` the full-text index has no row for.
fn missing_text(url: &str) -> usize {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = mailfleet_store::open(url).await.unwrap();
        mailfleet_store::text_index::blobs_without_text(store.as_ref(), "", 1000)
            .await
            .unwrap()
            .len()
    })
}

#[test]
fn the_master_writes_scheduled_backups_and_keeps_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("n1");
    std::fs::create_dir_all(&src).unwrap();
    let url = sqlite(&src);
    provision(&url);
    let area = dir.path().join("scheduled");
    for (k, v) in [
        ("backup.dir", area.to_str().unwrap()),
        ("backup.interval", "1s"),
        ("backup.keep", "2"),
    ] {
        ok(&["settings", "set", k, v, "--store", &url]);
    }
    // Checked when set.
    let e = fails(&["settings", "set", "backup.interval", "0s", "--store", &url]);
    assert!(
        e.contains("backup.interval") || e.contains("at least 1s"),
        "{e}"
    );
    let node = Node::start(&src, &url, None);
    node.python("send(\"s\", \"scheduled\\r\\n\")");
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while seen.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "saw only {seen:?} in 90 s; node log:\n{}",
            node.log()
        );
        if area.exists() {
            let now = backups(&area);
            // The newest is renamed into place before the oldest goes.
            assert!(now.len() <= 3, "more than backup.keep + 1: {now:?}");
            seen.extend(now);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Stopped (SIGTERM: a backup under way is abandoned at an await, never between its rename
    // and the retention that follows), the area holds backup.keep backups.
    let mut node = node;
    let _ = Command::new("kill")
        .args(["-TERM", &node.child.id().to_string()])
        .status();
    assert!(
        node.child
            .wait_timeout(Duration::from_secs(30))
            .unwrap()
            .is_some(),
        "the node did not stop on SIGTERM"
    );
    let kept = backups(&area);
    assert_eq!(kept.len(), 2, "{kept:?}");
    // The newest is a complete backup that restores.
    let newest = kept.last().unwrap().clone();
    let target = dir.path().join("target");
    let out = ok(&[
        "restore",
        area.join(&newest).to_str().unwrap(),
        "--store",
        &sqlite(&target),
        "--blobs",
        "db",
    ]);
    assert!(out.contains(&format!("restored backup {newest}")), "{out}");
}
