//! `mailfleet up` and `mailfleet check-config` through the real binary.

use std::io::{BufRead, BufReader};
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
    // An offset whose node ports are free right now.
    let offset = mailfleet_test_support::free_port_offset(mailfleet_test_support::NODE_PORTS);
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

    assert!(
        sigterm_and_wait(&mut child).success(),
        "clean exit on SIGTERM"
    );

    // The second start keeps the store and prints no new password.
    let (mut child, banner) = start_up(&data, offset);
    assert!(!banner.join("\n").contains("password "), "{banner:?}");
    assert!(sigterm_and_wait(&mut child).success());
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
