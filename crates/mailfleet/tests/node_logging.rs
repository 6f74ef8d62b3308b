//! A node's `[log]` table through the real binary: one file per service type, a file continued
//! in a new one past `max_size`, old files of the node deleted (and nobody else's), and every
//! line also sent to a syslog socket the test binds itself.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use mailfleet_test_support::ChildGuard;

/// Names in `dir` that start with `prefix` and end with `suffix`.
fn files(dir: &Path, prefix: &str, suffix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix) && n.ends_with(suffix))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Everything written to the files of one log stem (`lg.smtp`), all days and parts.
fn text_of(dir: &Path, stem: &str) -> String {
    files(dir, &format!("{stem}.2"), ".log")
        .iter()
        .map(|n| std::fs::read_to_string(dir.join(n)).unwrap_or_default())
        .collect()
}

/// Polls `cond` every 50 ms for up to 60 s.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One session: the greeting, then each command and its one-line reply.
fn session(addr: SocketAddr, commands: &[&str]) {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    for c in commands {
        w.write_all(format!("{c}\r\n").as_bytes()).unwrap();
        line.clear();
        r.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "{c}: connection closed");
    }
}

#[test]
fn files_per_service_size_rotation_retention_and_syslog() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    // Left by an earlier run 40 days ago: the node's own goes, another program's stays.
    let forty_days_ago = SystemTime::now() - Duration::from_secs(40 * 86_400);
    for name in ["lg.2020-01-01.log", "lg.smtp.2020-01-01.1.log", "other.log"] {
        let f = std::fs::File::create(logs.join(name)).unwrap();
        f.set_modified(forty_days_ago).unwrap();
    }
    let socket_path = dir.path().join("syslog.sock");
    let syslog = UnixDatagram::bind(&socket_path).unwrap();
    // Read as a system log does, all along (the kernel queues only a few datagrams).
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    {
        let received = received.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n) = syslog.recv(&mut buf) {
                let line = String::from_utf8_lossy(&buf[..n]).into_owned();
                received.lock().unwrap().push(line);
            }
        });
    }

    let offset = mailfleet_test_support::free_port_offset(mailfleet_test_support::NODE_PORTS);
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "server_id = \"lg\"\nhostname = \"mx.log.test\"\nstore = \"sqlite:{}\"\n\
             data_dir = \"{}\"\nbind = \"127.0.0.1\"\nport_offset = {offset}\nlog_dir = \"{}\"\n\
             [log]\nper_service = true\nkeep_days = 30\nmax_size = \"64K\"\n\
             syslog = true\nsyslog_socket = \"{}\"\n",
            dir.path().join("store.db").display(),
            dir.path().join("data").display(),
            logs.display(),
            socket_path.display(),
        ),
    )
    .unwrap();
    let stderr = dir.path().join("stderr.log");
    let mut child = ChildGuard::spawn(
        Command::new(env!("CARGO_BIN_EXE_mailfleet"))
            .args(["node", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info,mailfleet_smtp=trace,mailfleet_pop3=trace")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap()),
    )
    .unwrap();
    let smtp: SocketAddr = format!("127.0.0.1:{}", 25 + offset).parse().unwrap();
    let pop3: SocketAddr = format!("127.0.0.1:{}", 110 + offset).parse().unwrap();
    wait_for("the node listens", || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "node exited: {status}; stderr:\n{}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        }
        TcpStream::connect_timeout(&smtp, Duration::from_millis(200)).is_ok()
    });

    session(smtp, &["EHLO logs.test", "QUIT"]);
    session(pop3, &["CAPA", "QUIT"]);
    // Each service's lines in its own file, the node's own in `other`.
    wait_for("smtp commands in lg.smtp", || {
        text_of(&logs, "lg.smtp").contains("verb=\"EHLO\"")
    });
    wait_for("pop3 commands in lg.pop3", || {
        text_of(&logs, "lg.pop3").contains("command")
    });
    wait_for("the node's start in lg.other", || {
        text_of(&logs, "lg.other").contains("node running")
    });
    assert!(!text_of(&logs, "lg.other").contains("verb=\"EHLO\""));
    assert!(!text_of(&logs, "lg.smtp").contains("node running"));
    assert_eq!(files(&logs, "lg.imap.", ".log").len(), 1);
    assert_eq!(files(&logs, "lg.queue.", ".log").len(), 1);

    // Retention at start: the node's 40-day-old files are gone, the other program's is not.
    wait_for("old files deleted", || {
        !logs.join("lg.2020-01-01.log").exists() && !logs.join("lg.smtp.2020-01-01.1.log").exists()
    });
    assert!(logs.join("other.log").exists());
    wait_for("the deletion logged", || {
        text_of(&logs, "lg.other").contains("log retention: deleted 2 file(s)")
    });

    // Past 64K the day goes on in a second file.
    let noops: Vec<&str> = std::iter::repeat_n("NOOP", 1500).collect();
    session(smtp, &noops);
    let sizes = || -> Vec<(String, u64)> {
        files(&logs, "lg.", ".log")
            .into_iter()
            .map(|n| {
                let size = std::fs::metadata(logs.join(&n)).map_or(0, |m| m.len());
                (n, size)
            })
            .collect()
    };
    wait_for(&format!("a second smtp file ({:?})", sizes()), || {
        !files(&logs, "lg.smtp.", ".1.log").is_empty()
    });
    for name in files(&logs, "lg.smtp.", ".log") {
        let size = std::fs::metadata(logs.join(&name)).unwrap().len();
        assert!(size <= 64 * 1024, "{name} is {size} bytes");
    }

    // The same lines reach the syslog socket, as syslog(3) would send them.
    let tag = format!(" mailfleet-lg[{}]: ", child.id());
    wait_for("the node's start on the syslog socket", || {
        let lines = received.lock().unwrap();
        for line in lines.iter() {
            assert!(line.starts_with('<') && line.contains(&tag), "{line}");
        }
        // Facility mail, severity info: <22>.
        lines
            .iter()
            .any(|l| l.starts_with("<22>") && l.contains("node running"))
    });
    assert!(
        received
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("<23>") && l.contains("verb=\"NOOP\"")),
        "trace lines are debug (7): <23>"
    );
}
