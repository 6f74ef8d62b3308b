//! `mailfleet balancer` out of file descriptors: a listener whose accepts fail backs off and logs
//! the burst in a line or two, not a line per try, and accepts again once descriptors are free.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mailfleet");
/// The balancer's open-file limit: its own descriptors plus a few dozen clients.
const NOFILE: libc::rlim_t = 64;

/// A child process killed (and reaped) when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The child's stderr lines with the time each arrived.
type Lines = Arc<Mutex<Vec<(Instant, String)>>>;

fn accept_lines(lines: &Lines, from: Instant, to: Instant) -> Vec<String> {
    lines
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, l)| *t >= from && *t <= to && l.contains("accept"))
        .map(|(_, l)| l.clone())
        .collect()
}

/// Polls `cond` every 20 ms for up to `within`.
fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn accept_errors_back_off_and_are_logged_once_per_burst() {
    let dir = tempfile::tempdir().unwrap();
    let port = 80 + mailfleet_test_support::free_port_offset(&[80]);
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    // http mode: an idle client holds exactly one of the balancer's descriptors (no server
    // connection until it sends a request).
    let config = dir.path().join("balancer.toml");
    std::fs::write(
        &config,
        format!(
            "[[service]]\nname = \"web\"\nlisten = [\"127.0.0.1:{port}\"]\nmode = \"http\"\n\
             timeouts = {{ client = \"5m\" }}\n\
             [[service.server]]\nname = \"a\"\naddress = \"{dead}\"\n"
        ),
    )
    .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("balancer")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: only setrlimit, which is async-signal-safe, runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: NOFILE,
                rlim_max: NOFILE,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = Killed(cmd.spawn().unwrap());
    let lines: Lines = Arc::default();
    let err = child.0.stderr.take().unwrap();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            sink.lock().unwrap().push((Instant::now(), line));
        }
    });
    let all = || {
        lines
            .lock()
            .unwrap()
            .iter()
            .map(|(_, l)| l.clone())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        eventually(Duration::from_secs(30), || TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "the balancer did not listen: {}",
        all()
    );

    // More clients than the balancer has descriptors: the kernel completes their connections
    // (backlog 4096), the balancer's accepts start failing with EMFILE.
    let mut clients: Vec<TcpStream> = (0..2 * NOFILE)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    assert!(
        eventually(Duration::from_secs(20), || all().contains("accept failed")),
        "no accept failed: {}",
        all()
    );
    let first = lines
        .lock()
        .unwrap()
        .iter()
        .find(|(_, l)| l.contains("accept failed"))
        .map(|(t, _)| *t)
        .unwrap();
    assert!(all().contains("Too many open files"), "{}", all());

    // Three seconds of failing accepts: one line (the first error), not one per try.
    let window = Duration::from_secs(3);
    std::thread::sleep((first + window).saturating_duration_since(Instant::now()));
    let during = accept_lines(&lines, first, first + window);
    assert!(
        during.len() <= 2,
        "{} accept lines in {window:?}:\n{}",
        during.len(),
        during.join("\n")
    );

    // Descriptors free again: a new client is served (503: the only server is down), and
    // the burst is summed up in one line. The client comes first: whether connections are
    // still waiting in the backlog once the old ones close is up to the kernel, and with
    // none an accept has nothing to succeed on.
    clients.clear();
    let served = || {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        if s.write_all(b"GET / HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.starts_with("HTTP/1.1 503")
    };
    assert!(
        eventually(Duration::from_secs(30), served),
        "no client served after the descriptors came back: {}",
        all()
    );
    assert!(
        eventually(Duration::from_secs(20), || all()
            .contains("accept errors in the last burst")),
        "no end-of-burst line: {}",
        all()
    );
    let total = accept_lines(&lines, first, Instant::now());
    assert!(total.len() <= 3, "{}", total.join("\n"));
}
