//! `mailfleet up` and `mailfleet check-config` through the real binary.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mailfleet_test_support::ChildGuard;

const BIN: &str = env!("CARGO_BIN_EXE_mailfleet");

/// Starts `up`, reads its banner until the admin line, returns (child, banner). The child is
/// killed when its guard drops, whatever the test's outcome.
fn start_up(data: &std::path::Path, offset: u16) -> (ChildGuard, Vec<String>) {
    let mut child = ChildGuard::spawn(
        Command::new(BIN)
            .args(["up", "--data"])
            .arg(data)
            .args(["--port-offset", &offset.to_string()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    )
    .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut banner = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            let done = line.contains("admin:");
            banner.push(line);
            if done {
                // Keep draining so the child never blocks on a full pipe.
                std::thread::spawn(move || while rx.recv().is_ok() {});
                return (child, banner);
            }
        }
    }
    panic!("up printed no banner within 60 s: {banner:?}");
}

fn sigterm_and_wait(child: &mut ChildGuard) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    match child.wait_timeout(Duration::from_secs(60)).unwrap() {
        Some(status) => status,
        None => panic!("up did not stop within 60 s of SIGTERM"),
    }
}

#[test]
fn up_creates_the_demo_account_once_serves_smtp_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // An offset whose ports are free right now.
    let offset = mailfleet_test_support::free_port_offset(mailfleet_test_support::UP_PORTS);
    let (mut child, banner) = start_up(&data, offset);
    let text = banner.join("\n");
    assert!(
        text.contains(&format!(
            "sqlite:{}",
            data.canonicalize().unwrap().join("mailfleet.db").display()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("127.0.0.1:{}", 25 + offset)),
        "{text}"
    );
    assert!(
        text.contains(&format!("127.0.0.1:{}", 587 + offset)),
        "{text}"
    );
    for port in [465, 110, 995, 143, 993] {
        assert!(
            text.contains(&format!("127.0.0.1:{}", port + offset)),
            "{text}"
        );
    }
    let password = banner
        .iter()
        .find_map(|l| l.split("demo@example.test password ").nth(1))
        .expect("first start prints the demo password")
        .trim()
        .to_string();

    // The demo account receives mail on the MX port, can authenticate on submission, and
    // reads the message over POP3S and IMAPS.
    let script = format!(
        r#"
import smtplib, ssl
s = smtplib.SMTP("127.0.0.1", {mx}, timeout=20)
s.sendmail("someone@elsewhere.test", ["demo@example.test"], "Subject: hi\r\n\r\nhello\r\n")
s.quit()
c = smtplib.SMTP("127.0.0.1", {sub}, timeout=20)
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
c.starttls(context=ctx)
c.login("demo@example.test", "{password}")
c.quit()
import poplib
p = poplib.POP3_SSL("127.0.0.1", {pop3s}, timeout=20, context=ctx)
p.user("demo@example.test")
p.pass_("{password}")
assert p.stat()[0] == 1, p.stat()
assert b"Subject: hi" in b"\n".join(p.retr(1)[1])
p.quit()
import imaplib
m = imaplib.IMAP4_SSL("127.0.0.1", {imaps}, ssl_context=ctx, timeout=20)
m.login("demo@example.test", "{password}")
typ, data = m.select("INBOX")
assert typ == "OK" and data == [b"1"], data
typ, data = m.fetch("1", "(BODY[] ENVELOPE)")
assert typ == "OK" and b"hello" in data[0][1], data
assert b'"hi"' in data[1], data
names = [l.decode() for l in m.list()[1]]
assert any("\\Sent" in n for n in names) and any("\\Trash" in n for n in names), names
m.logout()
"#,
        mx = 25 + offset,
        sub = 587 + offset,
        pop3s = 995 + offset,
        imaps = 993 + offset
    );
    let py = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    let status = Command::new(BIN)
        .args([
            "mailbox",
            "status",
            "demo@example.test",
            "--json",
            "--store",
        ])
        .arg(format!("sqlite:{}", data.join("mailfleet.db").display()))
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let inbox = json
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "INBOX")
        .unwrap();
    assert_eq!(inbox["messages"], 1);

    // The cluster on one machine: two nodes behind the balancer, each a child process of `up`.
    let pids = node_pids(&banner);
    assert_eq!(pids.len(), 2, "{text}");
    for pid in &pids {
        assert!(
            children_of(child.id()).contains(pid),
            "node {pid} is a child of up"
        );
    }
    // `mailfleet status` lists both nodes, alive, with the pids `up` printed.
    let store_url = format!(
        "sqlite:{}",
        data.canonicalize().unwrap().join("mailfleet.db").display()
    );
    wait_status_pids(&store_url, &pids);
    // Kill node1 outright: the balancer routes around it at once (a refused connect goes to the
    // other node), and `up` starts it again.
    let node1 = pids[0];
    let _ = Command::new("kill")
        .args(["-KILL", &node1.to_string()])
        .status();
    let around = format!(
        r#"
import imaplib, smtplib, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
for i in range(5):
    s = smtplib.SMTP("127.0.0.1", {mx}, timeout=20)
    s.sendmail("someone@elsewhere.test", ["demo@example.test"], "Subject: after %d\r\n\r\nx\r\n" % i)
    s.quit()
    m = imaplib.IMAP4_SSL("127.0.0.1", {imaps}, ssl_context=ctx, timeout=20)
    m.login("demo@example.test", "{password}")
    typ, data = m.select("INBOX")
    assert typ == "OK" and int(data[0]) == 2 + i, data
    m.logout()
"#,
        mx = 25 + offset,
        imaps = 993 + offset
    );
    let py = Command::new("python3")
        .args(["-c", &around])
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "sessions while node1 is dead: {}",
        String::from_utf8_lossy(&py.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let restarted = loop {
        let now: Vec<u32> = children_of(child.id());
        if let Some(p) = now.iter().find(|p| !pids.contains(p))
            && std::net::TcpStream::connect(("127.0.0.2", 25 + offset)).is_ok()
        {
            break *p;
        }
        assert!(
            Instant::now() < deadline,
            "node1 was not started again within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    wait_status_pids(&store_url, &[restarted, pids[1]]);

    assert!(
        sigterm_and_wait(&mut child).success(),
        "clean exit on SIGTERM"
    );
    for pid in [pids[1], restarted] {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z ")),
            "node {pid} outlived up"
        );
    }

    // The second start keeps the store and prints no new password.
    let (mut child, banner) = start_up(&data, offset);
    assert!(!banner.join("\n").contains("password "), "{banner:?}");
    soft_stop_through_the_api(&mut child, offset);
}

/// `POST /shutdown` to up's balancer API stops `up` softly: new connections are refused, an
/// open IMAP session goes on, and a second signal (SIGINT, as a second Ctrl-C) ends the wait for
/// it at once, well before the 10 s `up` would otherwise give it.
fn soft_stop_through_the_api(child: &mut ChildGuard, offset: u16) {
    let imap = ("127.0.0.1", 143 + offset);
    let mut session = TcpStream::connect(imap).unwrap();
    session
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut reader = BufReader::new(session.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("* OK"), "{line:?}");

    let mut api = TcpStream::connect(("127.0.0.1", 8404 + offset)).unwrap();
    api.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    api.write_all(
        b"POST /shutdown HTTP/1.1\r\nHost: up\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut answer = String::new();
    api.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(imap).is_ok() {
        assert!(
            Instant::now() < deadline,
            "up still accepts IMAP clients after POST /shutdown"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    session.write_all(b"a1 NOOP\r\n").unwrap();
    loop {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "session cut");
        if line.starts_with("a1 ") {
            assert!(line.starts_with("a1 OK"), "{line:?}");
            break;
        }
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "up exited with a session open"
    );

    let t0 = Instant::now();
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let status = child
        .wait_timeout(Duration::from_secs(60))
        .unwrap()
        .expect("up did not stop after a second signal");
    assert!(status.success(), "{status:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "the second signal did not skip the wait: {:?}",
        t0.elapsed()
    );
}

/// Waits (up to 30 s) until `mailfleet status --json` shows exactly `pids` alive.
fn wait_status_pids(store: &str, pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while Instant::now() < deadline {
        let out = Command::new(BIN)
            .args(["status", "--json", "--store", store])
            .output()
            .unwrap();
        last = String::from_utf8_lossy(&out.stdout).into_owned();
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
            let mut alive: Vec<u32> = v["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|n| n["alive"] == true)
                .filter_map(|n| n["pid"].as_u64().map(|p| p as u32))
                .collect();
            alive.sort_unstable();
            let mut want = pids.to_vec();
            want.sort_unstable();
            if alive == want {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("status never showed pids {pids:?} alive: {last}");
}

/// The node pids `up` printed (`node NAME on ADDR pid PID ...`).
fn node_pids(banner: &[String]) -> Vec<u32> {
    banner
        .iter()
        .filter_map(|l| l.trim().strip_prefix("node ")?.split(" pid ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

/// The pids of `parent`'s living children, from /proc.
fn children_of(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command name in parentheses: state, ppid, ...
        let Some(after) = stat.rsplit_once(") ").map(|(_, a)| a) else {
            continue;
        };
        let mut fields = after.split_whitespace();
        let state = fields.next();
        let ppid = fields.next().and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) && state != Some("Z") {
            out.push(pid);
        }
    }
    out
}

#[test]
fn check_config_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("node.toml");
    let good = "server_id = \"n1\"\nhostname = \"mx1.example.test\"\nstore = \"sqlite:/tmp/x.db\"\ndata_dir = \"/tmp/x\"\n";
    std::fs::write(&file, good).unwrap();
    let ok = Command::new(BIN)
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    std::fs::write(&file, format!("{good}port_offset = -1\n")).unwrap();
    let bad = Command::new(BIN)
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("node.toml") && err.contains("port_offset"),
        "{err}"
    );
}
