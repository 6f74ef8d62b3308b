//! `mailfleet balancer` stops softly: after SIGTERM or `POST /shutdown` it refuses new
//! connections, keeps relaying the open ones, and exits when the last one ends or when
//! `stop_timeout` passes; a second SIGTERM or SIGINT ends it at once. Drain, maint and weight set through
//! the runtime API survive a restart (the state file). A second balancer on the same address is
//! refused while the first runs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mailfleet_test_support::{ChildGuard, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_mailfleet");
/// Generous: only a broken balancer takes this long.
const LONG: Duration = Duration::from_secs(30);

/// An echo server on loopback that greets with its name; one thread per connection.
fn backend(name: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                if s.write_all(format!("* OK {name}\r\n").as_bytes()).is_err() {
                    return;
                }
                let Ok(r) = s.try_clone() else { return };
                for line in BufReader::new(r).lines() {
                    let Ok(line) = line else { return };
                    if s.write_all(format!("{line}\r\n").as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

struct Running {
    child: ChildGuard,
    listen: SocketAddr,
    admin: SocketAddr,
    log: PathBuf,
}

impl Running {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn config(
    dir: &Path,
    servers: &[(&str, SocketAddr)],
    extra: &str,
) -> (PathBuf, SocketAddr, SocketAddr) {
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut text = format!(
        "{extra}\n[admin]\nlisten = \"{admin}\"\n\n[[service]]\nname = \"imap\"\nlisten = [\"{listen}\"]\nscheduler = \"roundrobin\"\n"
    );
    for (name, addr) in servers {
        text.push_str(&format!(
            "\n[[service.server]]\nname = \"{name}\"\naddress = \"{addr}\"\n"
        ));
    }
    let path = dir.join("balancer.toml");
    std::fs::write(&path, text).unwrap();
    (path, listen, admin)
}

fn start(path: &Path, listen: SocketAddr, admin: SocketAddr) -> Running {
    let log = path.with_extension("log");
    let err = std::fs::File::create(&log).unwrap();
    let child = ChildGuard::spawn(
        Command::new(BIN)
            .args(["balancer", "--config"])
            .arg(path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err),
    )
    .unwrap();
    let r = Running {
        child,
        listen,
        admin,
        log,
    };
    let t0 = Instant::now();
    while Client::open(listen).is_err() {
        assert!(t0.elapsed() < LONG, "balancer not up; log:\n{}", r.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    r
}

struct Client {
    r: BufReader<TcpStream>,
    server: String,
}

impl Client {
    fn open(to: SocketAddr) -> std::io::Result<Client> {
        let s = TcpStream::connect_timeout(&to, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut r = BufReader::new(s);
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let server = line.trim_end().trim_start_matches("* OK ").to_string();
        Ok(Client { r, server })
    }

    fn roundtrip(&mut self, text: &str) -> std::io::Result<String> {
        self.r
            .get_mut()
            .write_all(format!("{text}\r\n").as_bytes())?;
        let mut line = String::new();
        if self.r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(line.trim_end().to_string())
    }
}

/// An HTTP request to the runtime API; the status and body.
fn api(admin: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&admin, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

fn signal(r: &Running, sig: i32) {
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(r.child.id() as i32, sig);
    }
}

/// Waits until a new connection to the balancer is refused.
fn until_refused(r: &Running) {
    let t0 = Instant::now();
    loop {
        match TcpStream::connect_timeout(&r.listen, Duration::from_secs(2)) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
            _ => {}
        }
        assert!(t0.elapsed() < LONG, "still accepting; log:\n{}", r.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn exited(r: &mut Running, within: Duration) -> Option<std::process::ExitStatus> {
    r.child.wait_timeout(within).unwrap()
}

#[test]
fn sigterm_lets_open_connections_finish_then_exits() {
    let dir = tempfile::tempdir().unwrap();
    let a = backend("a");
    let (path, listen, admin) = config(dir.path(), &[("a", a)], "stop_timeout = \"60s\"");
    let mut r = start(&path, listen, admin);
    let mut c = Client::open(listen).unwrap();
    assert_eq!(c.roundtrip("before").unwrap(), "before");

    signal(&r, libc::SIGTERM);
    until_refused(&r);
    // The open session goes on, and the balancer waits for it.
    assert_eq!(
        c.roundtrip("during")
            .unwrap_or_else(|e| panic!("{e}; log:\n{}", r.log())),
        "during"
    );
    assert!(
        exited(&mut r, Duration::from_millis(300)).is_none(),
        "exited with a session open"
    );
    assert_eq!(c.roundtrip("still").unwrap(), "still");

    drop(c);
    let status = exited(&mut r, LONG).unwrap_or_else(|| panic!("did not exit; log:\n{}", r.log()));
    assert!(status.success(), "{status:?}; log:\n{}", r.log());
    assert!(
        r.log().contains("every connection has ended"),
        "{}",
        r.log()
    );
}

#[test]
fn post_shutdown_stops_softly_and_stop_timeout_ends_the_wait() {
    let dir = tempfile::tempdir().unwrap();
    let a = backend("a");
    let (path, listen, admin) = config(dir.path(), &[("a", a)], "stop_timeout = \"1s\"");
    let mut r = start(&path, listen, admin);
    let mut c = Client::open(listen).unwrap();
    // `start`'s readiness probes were clients too: wait until only `c` is open, so the count
    // below is this test's client (a probe not yet seen closing was counted under load).
    let t0 = Instant::now();
    loop {
        let (_, stats) = api(admin, "GET", "/stats", "");
        let v: serde_json::Value = serde_json::from_str(&stats).unwrap_or_default();
        if v["services"][0]["active"] == 1 {
            break;
        }
        assert!(t0.elapsed() < LONG, "never one open connection: {stats}");
        std::thread::sleep(Duration::from_millis(20));
    }

    let (status, body) = api(admin, "POST", "/shutdown", "");
    let asked = Instant::now();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"open_connections\": 1"), "{body}");
    until_refused(&r);
    assert_eq!(c.roundtrip("during").unwrap(), "during");

    // The client never closes: the balancer gives up after stop_timeout.
    let status = exited(&mut r, LONG).unwrap_or_else(|| panic!("did not exit; log:\n{}", r.log()));
    let took = asked.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took >= Duration::from_millis(900),
        "exited after {took:?}, before stop_timeout"
    );
    assert!(r.log().contains("stop_timeout passed"), "{}", r.log());
    // Its connection went with the process.
    assert!(c.roundtrip("after").is_err());
}

#[test]
fn a_second_sigterm_or_sigint_stops_at_once() {
    for second in [libc::SIGTERM, libc::SIGINT] {
        let dir = tempfile::tempdir().unwrap();
        let a = backend("a");
        let (path, listen, admin) = config(dir.path(), &[("a", a)], "stop_timeout = \"60s\"");
        let mut r = start(&path, listen, admin);
        let mut c = Client::open(listen).unwrap();
        signal(&r, libc::SIGTERM);
        until_refused(&r);
        assert_eq!(c.roundtrip("during").unwrap(), "during");
        let t0 = Instant::now();
        signal(&r, second);
        exited(&mut r, LONG).unwrap_or_else(|| panic!("did not exit; log:\n{}", r.log()));
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "signal {second}: took {:?}",
            t0.elapsed()
        );
        assert!(r.log().contains("second stop signal"), "{}", r.log());
    }
}

#[test]
fn maint_drain_and_weight_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (backend("a"), backend("b"), backend("c"));
    let (path, listen, admin) = config(dir.path(), &[("a", a), ("b", b), ("c", c)], "");
    let mut r = start(&path, listen, admin);
    assert_eq!(
        api(admin, "POST", "/service/imap/server/a/maint", "").0,
        200
    );
    assert_eq!(
        api(admin, "POST", "/service/imap/server/c/drain", "").0,
        200
    );
    assert_eq!(
        api(admin, "PUT", "/service/imap/server/b/weight", "7").0,
        200
    );
    let state = std::fs::read_to_string(dir.path().join("balancer.state")).unwrap();
    assert!(state.contains("\"maint\""), "{state}");
    assert!(state.contains("\"drain\""), "{state}");
    for _ in 0..6 {
        assert_eq!(Client::open(listen).unwrap().server, "b");
    }
    signal(&r, libc::SIGTERM);
    exited(&mut r, LONG).unwrap_or_else(|| panic!("did not exit; log:\n{}", r.log()));

    // Started again: a is still in maintenance and c still draining (round robin alone would
    // give each of them a third of the clients), and b keeps its runtime weight.
    let r = start(&path, listen, admin);
    for _ in 0..6 {
        assert_eq!(Client::open(listen).unwrap().server, "b");
    }
    let (_, stats) = api(r.admin, "GET", "/stats", "");
    let v: serde_json::Value = serde_json::from_str(&stats).unwrap();
    let servers = v["services"][0]["servers"].as_array().unwrap();
    let find = |n: &str| servers.iter().find(|s| s["name"] == n).unwrap().clone();
    assert_eq!(find("a")["state"], "maint", "{stats}");
    assert_eq!(find("c")["state"], "drain", "{stats}");
    assert_eq!(find("b")["weight"], 7, "{stats}");

    // Back to ready through the API: saved too.
    for s in ["a", "c"] {
        assert_eq!(
            api(
                r.admin,
                "POST",
                &format!("/service/imap/server/{s}/ready"),
                ""
            )
            .0,
            200
        );
    }
    let state = std::fs::read_to_string(dir.path().join("balancer.state")).unwrap();
    assert!(
        !state.contains("\"maint\"") && !state.contains("\"drain\""),
        "{state}"
    );
}

#[test]
fn a_bad_stop_timeout_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _, _) = config(
        dir.path(),
        &[("a", "127.0.0.1:1".parse().unwrap())],
        "stop_timeout = \"soon\"",
    );
    let out = Command::new(BIN)
        .args(["balancer", "--check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stop_timeout"), "{err}");
}

#[test]
fn a_second_balancer_on_the_same_address_is_refused_until_the_first_has_stopped() {
    // A second process must not take any of the address's clients, whatever socket options the
    // listeners use. Its server greets "b", so a client it took would show.
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (backend("a"), backend("b"));
    let (path, listen, admin) = config(dir.path(), &[("a", a)], "stop_timeout = \"60s\"");
    let mut first = start(&path, listen, admin);

    let dir2 = tempfile::tempdir().unwrap();
    let (path2, _, admin2) = config(dir2.path(), &[("b", b)], "");
    let text = std::fs::read_to_string(&path2).unwrap();
    let other_listen = text
        .lines()
        .find_map(|l| l.strip_prefix("listen = [\"")?.strip_suffix("\"]"))
        .unwrap()
        .to_string();
    std::fs::write(&path2, text.replace(&other_listen, &listen.to_string())).unwrap();
    let log2 = path2.with_extension("log");
    let mut second = ChildGuard::spawn(
        Command::new(BIN)
            .args(["balancer", "--config"])
            .arg(&path2)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log2).unwrap()),
    )
    .unwrap();
    let status = second
        .wait_timeout(LONG)
        .unwrap()
        .unwrap_or_else(|| panic!("a second balancer runs on {listen}"));
    let err = std::fs::read_to_string(&log2).unwrap();
    assert!(!status.success(), "{status:?}: {err}");
    assert!(err.contains("service[0].listen[0]"), "{err}");

    // Every client still goes to the first one.
    for i in 0..40 {
        let mut c = Client::open(listen).unwrap();
        assert_eq!(c.server, "a", "client {i}");
        assert_eq!(c.roundtrip("hi").unwrap(), "hi");
    }

    // Once the first has stopped, the address is free.
    signal(&first, libc::SIGTERM);
    let status = exited(&mut first, LONG).unwrap_or_else(|| panic!("{}", first.log()));
    assert!(status.success(), "{status:?}; log:\n{}", first.log());
    let _second = start(&path2, listen, admin2);
    assert_eq!(Client::open(listen).unwrap().server, "b");
}
