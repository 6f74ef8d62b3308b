//! `bind` and `[ports]` through the real binary: a node with `bind = "*"` answers on 127.0.0.1
//! and on ::1, a moved port answers where the file says, and a port turned off is closed.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mailfleet_test_support::ChildGuard;

/// The first line a server sends on `addr`.
fn greeting(addr: SocketAddr) -> String {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    line
}

fn addr(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

#[test]
fn bind_all_moved_and_closed_ports() {
    let dir = tempfile::tempdir().unwrap();
    // 26 stands for the moved POP3 port.
    let offset = mailfleet_test_support::free_port_offset(&[25, 26, 110, 587, 465, 995, 143, 993]);
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "server_id = \"ls\"\nhostname = \"mx.listen.test\"\nstore = \"sqlite:{}\"\n\
             data_dir = \"{}\"\nbind = \"*\"\nport_offset = {offset}\n\
             [ports]\nsubmission = false\nimaps = false\npop3 = 26\n",
            dir.path().join("store.db").display(),
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let log: PathBuf = dir.path().join("node.log");
    let mut child = ChildGuard::spawn(
        Command::new(env!("CARGO_BIN_EXE_mailfleet"))
            .args(["node", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap()),
    )
    .unwrap();
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let mx4 = addr("127.0.0.1", 25 + offset);
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect_timeout(&mx4, Duration::from_millis(200)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("node exited: {status}; its log:\n{}", log_text());
        }
        assert!(
            Instant::now() < deadline,
            "node did not listen within 60 s; its log:\n{}",
            log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for ip in ["127.0.0.1", "::1"] {
        assert!(
            greeting(addr(ip, 25 + offset)).starts_with("220 "),
            "smtp on {ip}"
        );
        assert!(
            greeting(addr(ip, 143 + offset)).starts_with("* OK"),
            "imap on {ip}"
        );
        assert!(
            greeting(addr(ip, 26 + offset)).starts_with("+OK"),
            "moved pop3 on {ip}"
        );
        // Turned off: nothing listens (the ports were free when the test chose them).
        for off in [587, 993, 110] {
            let a = addr(ip, off + offset);
            assert!(
                TcpStream::connect_timeout(&a, Duration::from_secs(5)).is_err(),
                "{a} should be closed"
            );
        }
    }
    // 465 stays on unless turned off (implicit TLS: it accepts, then waits for a handshake).
    assert!(TcpStream::connect_timeout(&addr("::1", 465 + offset), Duration::from_secs(5)).is_ok());
    let text = log_text();
    assert!(
        text.contains(&format!("smtp listening on [::]:{}", 25 + offset)),
        "{text}"
    );
}
