//! Configuration files through the real binary (`check-config`, `balancer --check`): only
//! regular files of at most 1 MiB are read, anything else is refused quickly with an error that
//! names the file and the problem, and every cause is printed once.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mailfleet");

/// A child process killed (and reaped) when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the binary with `args`; returns (exit code, stderr), or panics if it has not finished
/// within `within` (the child is killed).
fn run(args: &[&std::ffi::OsStr], within: Duration) -> (i32, String) {
    let child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    let mut err = child.0.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            let stderr = reader.join().unwrap();
            return (status.code().unwrap_or(-1), stderr);
        }
        assert!(
            start.elapsed() < within,
            "mailfleet {args:?} still running after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `check-config FILE` and `balancer --config FILE --check`.
fn both(file: &Path) -> [(i32, String); 2] {
    let f = file.as_os_str();
    [
        run(&["check-config".as_ref(), f], Duration::from_secs(20)),
        run(
            &[
                "balancer".as_ref(),
                "--config".as_ref(),
                f,
                "--check".as_ref(),
            ],
            Duration::from_secs(20),
        ),
    ]
}

#[test]
fn a_character_device_is_refused_at_once() {
    for (code, err) in both(Path::new("/dev/zero")) {
        assert_eq!(code, 1, "{err}");
        assert_eq!(
            err.trim_end(),
            "mailfleet: /dev/zero: not a regular file but a character device"
        );
    }
}

#[test]
fn a_fifo_is_refused_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("node.toml");
    let ok = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(ok.success());
    for (code, err) in both(&fifo) {
        assert_eq!(code, 1, "{err}");
        assert!(
            err.contains(&format!(
                "{}: not a regular file but a FIFO",
                fifo.display()
            )),
            "{err}"
        );
    }
}

#[test]
fn a_file_over_one_mib_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("node.toml");
    let line = "# a comment line that only makes the file larger than a configuration may be\n";
    std::fs::write(&big, line.repeat((2 << 20) / line.len() + 1)).unwrap();
    for (code, err) in both(&big) {
        assert_eq!(code, 1, "{err}");
        assert!(
            err.contains(&format!("{}: too large", big.display())) && err.contains("1 MiB"),
            "{err}"
        );
    }
}

#[test]
fn a_symbolic_link_loop_prints_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.toml");
    let b = dir.path().join("b.toml");
    std::os::unix::fs::symlink(&b, &a).unwrap();
    std::os::unix::fs::symlink(&a, &b).unwrap();
    for (code, err) in both(&a) {
        assert_eq!(code, 1, "{err}");
        assert_eq!(
            err.trim_end(),
            format!(
                "mailfleet: {}: cannot read: Too many levels of symbolic links (os error 40)",
                a.display()
            )
        );
    }
}
