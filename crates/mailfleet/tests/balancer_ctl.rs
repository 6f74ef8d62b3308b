//! `mailfleet balancer ctl` against a real `mailfleet balancer` process: status as a table and
//! as JSON, drain/maint/ready/weight/reload through the runtime API with a bearer token, a wrong
//! token refused; the balancer logs every change with the client's address.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailfleet_test_support::{ChildGuard, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_mailfleet");
const TOKEN: &str = "ctl-test-token-0123456789";

fn ctl(api: &str, token_file: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["balancer", "ctl", "--api", api, "--token-file"])
        .arg(token_file)
        .args(args)
        .env_remove("MAILFLEET_BALANCER_API")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A field of a server in `ctl status --json`.
fn server_field(api: &str, token: &Path, server: &str, field: &str) -> serde_json::Value {
    let o = ctl(api, token, &["status", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    field_of(&o, server, field)
}

/// The same while the balancer may still be starting: None until `ctl status` succeeds.
fn server_field_once_up(
    api: &str,
    token: &Path,
    server: &str,
    field: &str,
) -> Option<serde_json::Value> {
    let o = ctl(api, token, &["status", "--json"]);
    o.status.success().then(|| field_of(&o, server, field))
}

fn field_of(o: &Output, server: &str, field: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["services"][0]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == server)
        .map(|s| s[field].clone())
        .unwrap_or(serde_json::Value::Null)
}

fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn ctl_drives_the_runtime_api() {
    let dir = tempfile::tempdir().unwrap();
    // Servers: listeners the kernel completes handshakes for (the default TCP check passes).
    let n1 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let n2 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let admin_port = free_port();
    let api = format!("http://127.0.0.1:{admin_port}");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let bad_token = dir.path().join("bad-token");
    std::fs::write(&bad_token, "not-the-token-at-all-0000").unwrap();
    let config = dir.path().join("balancer.toml");
    let file = |servers: &[(&str, std::net::SocketAddr)]| {
        let mut t = format!(
            "[admin]\nlisten = \"127.0.0.1:{admin_port}\"\ntoken = \"{TOKEN}\"\n\
             [[service]]\nname = \"imap\"\nlisten = [\"127.0.0.1:0\"]\n"
        );
        for (name, addr) in servers {
            t.push_str(&format!(
                "[[service.server]]\nname = \"{name}\"\naddress = \"{addr}\"\n"
            ));
        }
        t
    };
    let (a1, a2) = (n1.local_addr().unwrap(), n2.local_addr().unwrap());
    std::fs::write(&config, file(&[("n1", a1)])).unwrap();
    let mut child = ChildGuard::spawn(
        Command::new(BIN)
            .arg("balancer")
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    )
    .unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    {
        let stderr = child.stderr.take().unwrap();
        let lines = lines.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(stderr).lines() {
                let Ok(l) = l else { return };
                lines.lock().unwrap().push(l);
            }
        });
    }
    let log_has = |needle: &[&str]| {
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| needle.iter().all(|n| l.contains(n)))
    };

    // Up, and the default check has seen n1.
    assert!(
        eventually(Duration::from_secs(20), || {
            server_field_once_up(&api, &token_file, "n1", "state").is_some_and(|s| s == "up")
                && server_field_once_up(&api, &token_file, "n1", "check")
                    .is_some_and(|c| !c.is_null())
        }),
        "balancer up; log: {:?}",
        lines.lock().unwrap()
    );

    // status: a table with a header and a line per service and per server.
    let o = ctl(&api, &token_file, &["status"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let rows: Vec<&str> = out.lines().collect();
    assert!(
        rows[0].starts_with("SERVICE") && rows[0].contains("STATE"),
        "{out}"
    );
    assert!(
        rows.iter()
            .any(|r| r.starts_with("imap") && r.contains("n1") && r.contains(&a1.to_string())),
        "{out}"
    );

    // drain, weight, maint, ready: each visible in the JSON.
    let o = ctl(&api, &token_file, &["drain", "imap", "n1"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(server_field(&api, &token_file, "n1", "state"), "drain");
    let o = ctl(&api, &token_file, &["weight", "imap", "n1", "7"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(server_field(&api, &token_file, "n1", "base_weight"), 7);
    let o = ctl(&api, &token_file, &["maint", "imap", "n1"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(server_field(&api, &token_file, "n1", "state"), "maint");
    let o = ctl(&api, &token_file, &["ready", "imap", "n1"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(server_field(&api, &token_file, "n1", "admin"), "ready");

    // Errors come back as the API's message, exit status 1.
    let o = ctl(&api, &token_file, &["drain", "imap", "nope"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("has no server \"nope\""),
        "{}",
        text(&o)
    );
    let o = ctl(&api, &token_file, &["weight", "imap", "n1", "70000"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let o = ctl(&api, &bad_token, &["drain", "imap", "n1"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--token-file"),
        "{}",
        text(&o)
    );
    assert_eq!(server_field(&api, &token_file, "n1", "admin"), "ready");

    // reload: a second server appears.
    std::fs::write(&config, file(&[("n1", a1), ("n2", a2)])).unwrap();
    let o = ctl(&api, &token_file, &["reload"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!server_field(&api, &token_file, "n2", "state").is_null());

    // The balancer logged who changed what, and the refused attempt.
    assert!(
        eventually(Duration::from_secs(5), || {
            log_has(&[
                "runtime API: change made",
                "client=127.0.0.1",
                "/service/imap/server/n1/drain",
            ]) && log_has(&["runtime API: change made", "/reload"])
                && log_has(&[
                    "runtime API: change made",
                    "client=127.0.0.1",
                    "/weight",
                    "set=\"weight 7\"",
                ])
                && log_has(&["runtime API: refused, no valid token", "client=127.0.0.1"])
        }),
        "log: {:?}",
        lines.lock().unwrap()
    );
    drop(child);
}

#[test]
fn ctl_says_what_is_wrong_without_a_balancer() {
    let port = free_port();
    let o = Command::new(BIN)
        .args(["balancer", "ctl", "--api"])
        .arg(format!("http://127.0.0.1:{port}"))
        .arg("status")
        .env_remove("MAILFLEET_BALANCER_TOKEN_FILE")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot connect to the runtime API") && err.contains(&port.to_string()),
        "{err}"
    );
    let o = Command::new(BIN)
        .args(["balancer", "ctl", "--api", "https://127.0.0.1:1", "status"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("plain HTTP"));
}
