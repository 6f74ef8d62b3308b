//! Shared by the `cli_*` tests: a store per test (SQLite file or a database on a throwaway
//! PostgreSQL server), the real `mailfleet` binary run against it, and direct store access for
//! setting up and checking what the commands did.

#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};

use mailfleet_store::Store;
use mailfleet_test_support::PgServer;

/// One PostgreSQL server shared by the tests of a binary that run at the same time; it stops
/// when the last of them drops its handle.
fn shared_pg() -> Arc<PgServer> {
    static PG: Mutex<Weak<PgServer>> = Mutex::new(Weak::new());
    let mut slot = PG.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(pg) = slot.upgrade() {
        return pg;
    }
    let pg = Arc::new(PgServer::start());
    *slot = Arc::downgrade(&pg);
    pg
}

/// A fresh, empty store for one test.
pub struct Env {
    pub url: String,
    pub dir: tempfile::TempDir,
    _pg: Option<Arc<PgServer>>,
}

/// The result of one run of the binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Env {
    pub fn sqlite() -> Env {
        let dir = tempfile::tempdir().unwrap();
        Env {
            url: mailfleet_test_support::sqlite_url(dir.path()),
            dir,
            _pg: None,
        }
    }

    pub fn postgres() -> Env {
        static N: AtomicU32 = AtomicU32::new(0);
        let pg = shared_pg();
        let name = format!(
            "cli_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let url = pg.create_database(&name);
        Env {
            url,
            dir: tempfile::tempdir().unwrap(),
            _pg: Some(pg),
        }
    }

    /// The binary with `--store` and nothing from the caller's environment that could change
    /// its behaviour.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mailfleet"));
        c.args(args)
            .arg("--store")
            .arg(&self.url)
            .env_remove("MAILFLEET_STORE")
            .env_remove("MAILFLEET_BLOBS")
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.command(args).output().unwrap().into()
    }

    /// Runs with `input` on stdin.
    pub fn run_stdin(&self, args: &[&str], input: &str) -> Run {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap().into()
    }

    /// Runs and expects success with nothing on stderr; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert_eq!(r.code, 0, "{args:?} failed: {}{}", r.stdout, r.stderr);
        assert_eq!(r.stderr, "", "{args:?} wrote to stderr");
        r.stdout
    }

    /// Runs and expects exit code 1 with exactly one line `mailfleet: ...` on stderr; returns
    /// that line without the prefix.
    pub fn fail(&self, args: &[&str]) -> String {
        let r = self.run(args);
        expect_one_error_line(args, &r)
    }

    /// Runs a list command with `--json` and parses the one JSON array it prints.
    pub fn json(&self, args: &[&str]) -> Vec<serde_json::Value> {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.ok(&all);
        let v: serde_json::Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"));
        v.as_array()
            .unwrap_or_else(|| panic!("{args:?}: not an array: {out}"))
            .clone()
    }

    /// Runs `f` with the store open, on a runtime of its own.
    pub fn with_store<T>(&self, f: impl AsyncFnOnce(Arc<dyn Store>) -> T) -> T {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let store = mailfleet_store::open(&self.url).await.unwrap();
            f(store).await
        })
    }
}

pub fn expect_one_error_line(args: &[&str], r: &Run) -> String {
    assert_eq!(
        r.code, 1,
        "{args:?}: expected exit code 1, got {}: {}{}",
        r.code, r.stdout, r.stderr
    );
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{args:?}: expected one stderr line: {}",
        r.stderr
    );
    lines[0]
        .strip_prefix("mailfleet: ")
        .unwrap_or_else(|| panic!("{args:?}: no `mailfleet: ` prefix: {}", r.stderr))
        .to_string()
}

/// Field names of a JSON object, sorted.
pub fn keys(v: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

/// `one test function per backend` for a scenario `fn name(env: &Env)`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn sqlite() {
                    super::$name(&$crate::cli_support::Env::sqlite());
                }
                #[test]
                fn postgres() {
                    super::$name(&$crate::cli_support::Env::postgres());
                }
            }
        )*
    };
}
