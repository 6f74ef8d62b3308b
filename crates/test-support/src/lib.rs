//! Test helpers: free loopback ports, child processes that die with the test, throwaway
//! PostgreSQL servers, SQLite URLs, examples built on demand.
//!
//! **Ports.** [`free_port`] and [`free_port_offset`] are the only way tests pick a port they
//! bind later (or hand to a server they start). Ports come from 10000..32768 and never from
//! the kernel's ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`, 32768-60999 by
//! default): a port released by a probe and bound a moment later by the server cannot be taken
//! meanwhile as the source port of some other test's outgoing connection. Every port is free
//! for TCP and UDP when handed out, and none is handed out twice in one process. A listener
//! the test binds itself and keeps (`127.0.0.1:0`) needs none of this.
//!
//! **Children.** [`ChildGuard`] kills and reaps its process when dropped, so a failed
//! assertion leaves nothing running; the process also gets `SIGKILL` if the thread that
//! started it ends (`PR_SET_PDEATHSIG`), which covers a test binary killed from outside.
//!
//! **PostgreSQL.** A [`PgServer`] is a real `postgres` started with `initdb` + `pg_ctl` in a
//! temp directory, listening on 127.0.0.1 only, stopped and deleted on drop. When the tests run
//! as root the server runs as the `postgres` user (initdb refuses root). `pg_ctl` detaches the
//! server, so a parent-death signal cannot reach it; instead each server has a *watchdog*: a
//! small `sh` process, in its own process group, that blocks reading a pipe whose only writer
//! is the test process. When the test process ends for any reason (a normal drop, a panic, or
//! `SIGKILL` from outside) the pipe closes, and the watchdog stops the server (`SIGQUIT`, the
//! immediate shutdown, then `SIGKILL` if it lingers) and removes the temp directory.

use std::collections::BTreeSet;
use std::io;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- ports

/// The lowest port handed out.
const PORT_FLOOR: u32 = 10000;
/// Ports handed out stay below this (Linux's default ephemeral range starts here).
const PORT_CEILING: u32 = 32768;

/// The kernel's ephemeral port range (inclusive).
fn ephemeral_range() -> (u32, u32) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|w| w.parse::<u32>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999))
}

/// Whether `port` may be handed out at all.
fn usable(port: u32, ephemeral: (u32, u32)) -> bool {
    (PORT_FLOOR..PORT_CEILING).contains(&port) && !(ephemeral.0..=ephemeral.1).contains(&port)
}

/// Whether `port` can be bound on 127.0.0.1 for TCP and for UDP right now.
fn bindable(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok() && UdpSocket::bind(("127.0.0.1", port)).is_ok()
}

struct Given {
    ports: BTreeSet<u16>,
    rng: u64,
}

impl Given {
    /// xorshift64*, seeded from the clock and the process id so that test processes running
    /// at the same time start at different places.
    fn next(&mut self) -> u32 {
        if self.rng == 0 {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1);
            self.rng = (t ^ (u64::from(std::process::id()) << 32)) | 1;
        }
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }
}

static GIVEN: Mutex<Given> = Mutex::new(Given {
    ports: BTreeSet::new(),
    rng: 0,
});

/// An offset `o` such that every `p + o` (for `p` in `ports`) is usable, free and not handed
/// out before; marks them handed out.
fn pick(ports: &[u16]) -> u16 {
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let ephemeral = ephemeral_range();
    let low = ports.iter().copied().min().unwrap_or(0) as u32;
    let high = ports.iter().copied().max().unwrap_or(0) as u32;
    // Offsets that put every port in [PORT_FLOOR, PORT_CEILING).
    let first = PORT_FLOOR.saturating_sub(low);
    let span = PORT_CEILING
        .saturating_sub(high)
        .saturating_sub(first)
        .max(1);
    for _ in 0..5000 {
        let offset = first + given.next() % span;
        let candidates: Vec<u32> = ports.iter().map(|&p| p as u32 + offset).collect();
        if candidates.iter().all(|&p| {
            usable(p, ephemeral) && !given.ports.contains(&(p as u16)) && bindable(p as u16)
        }) {
            given.ports.extend(candidates.iter().map(|&p| p as u16));
            return offset as u16;
        }
    }
    panic!(
        "no free ports for {ports:?} in {PORT_FLOOR}..{PORT_CEILING} outside the ephemeral range \
         {}-{} on 127.0.0.1",
        ephemeral.0, ephemeral.1
    );
}

/// The standard ports a `mailfleet node` binds (plus its `port_offset`): SMTP, submission,
/// submissions, POP3, POP3S, IMAP, IMAPS. Tests that start the node binary ask [`free_port_offset`] for all.
pub const NODE_PORTS: &[u16] = &[25, 587, 465, 110, 995, 143, 993];

/// The ports `mailfleet up` binds (plus its `--port-offset`): the balancer's mail ports on
/// 127.0.0.1 (the nodes behind it take the same ports on 127.0.0.2 and 127.0.0.3) and its
/// runtime API, 8404.
pub const UP_PORTS: &[u16] = &[25, 587, 465, 110, 995, 143, 993, 8404];

/// A port that is free on 127.0.0.1 (TCP and UDP), below 32768 and outside the kernel's
/// ephemeral range, and not handed out before in this process.
pub fn free_port() -> u16 {
    pick(&[0])
}

/// A `port_offset` under which every one of `ports` (standard ports such as 25, 587, 465) is
/// free on 127.0.0.1 right now, with the same guarantees as [`free_port`] for each.
pub fn free_port_offset(ports: &[u16]) -> u16 {
    pick(ports)
}

// ---------------------------------------------------------------- child processes

/// Makes the child get `SIGKILL` when the thread that spawns it ends (the test thread, or a
/// tokio runtime's thread: both live as long as the test). Also when that thread is already
/// gone by the time the child runs.
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        })
    }
}

/// A child process that is killed (`SIGKILL`) and reaped when the guard drops, whatever the
/// test's outcome. Derefs to the [`Child`].
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
}

impl ChildGuard {
    /// Spawns `cmd` (with [`die_with_parent`]) under a guard.
    pub fn spawn(cmd: &mut Command) -> io::Result<ChildGuard> {
        die_with_parent(cmd);
        Ok(ChildGuard {
            child: cmd.spawn()?,
        })
    }

    /// Waits up to `limit` for the process to exit; its status if it did.
    pub fn wait_timeout(
        &mut self,
        limit: Duration,
    ) -> io::Result<Option<std::process::ExitStatus>> {
        let end = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= end {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl std::ops::Deref for ChildGuard {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.child
    }
}

impl std::ops::DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- examples

/// The path of example `name` of this workspace, built first (`cargo build --workspace
/// --example NAME`, in the profile of the running test): `cargo test --test X` alone does not
/// build examples. With the workspace's features, so after `cargo test --workspace` it is a
/// no-op; `-p CRATE` would resolve other features and rebuild many dependencies.
pub fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lives in target/PROFILE/deps");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "--quiet", "--workspace", "--example", name]);
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            build.arg("--release");
        }
        Some(other) => {
            build.args(["--profile", other]);
        }
    }
    match build.stdin(Stdio::null()).output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => println!(
            "warning: building example {name} failed, using the existing binary: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => println!("warning: cannot run cargo ({e}), using the existing binary"),
    }
    let bin = profile_dir.join("examples").join(name);
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build --workspace --example {name}`",
        bin.display()
    );
    bin
}

// ---------------------------------------------------------------- SQLite

/// `sqlite:DIR/mailfleet.db`.
pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite:{}", dir.join("mailfleet.db").display())
}

// ---------------------------------------------------------------- PostgreSQL

/// The directory holding `initdb`, `pg_ctl` and `postgres`.
pub fn pg_bin_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("MAILFLEET_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists() && p.join("pg_ctl").exists())
        .collect();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// What the watchdog runs (`$1` is the server's temp directory): wait for end of input, then
/// stop the server if it still runs and remove the directory.
const WATCHDOG: &str = r#"
trap '' INT HUP
while read -r _; do :; done
pidfile="$1/data/postmaster.pid"
if [ -f "$pidfile" ]; then
    pid=$(head -n 1 "$pidfile")
    if [ -n "$pid" ] && kill -QUIT "$pid" 2>/dev/null; then
        n=0
        while kill -0 "$pid" 2>/dev/null && [ "$n" -lt 100 ]; do
            sleep 0.1
            n=$((n + 1))
        done
        kill -KILL "$pid" 2>/dev/null
    fi
fi
rm -rf "$1"
"#;

/// The watchdog of one server: its process and the writing end of its pipe.
struct Watchdog {
    child: Child,
    pipe: Option<ChildStdin>,
}

impl Watchdog {
    fn start(dir: &Path) -> Watchdog {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("mailfleet-pg-watchdog")
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: a Ctrl-C meant for the tests does not kill it before
            // it has cleaned up.
            .process_group(0)
            .spawn()
            .expect("cannot start the PostgreSQL watchdog (sh)");
        let pipe = child.stdin.take();
        Watchdog { child, pipe }
    }

    /// Closes the pipe, as the end of the test process would, and waits for the watchdog.
    fn finish(&mut self) {
        drop(self.pipe.take());
        let _ = self.child.wait();
    }
}

/// A running throwaway PostgreSQL server.
pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// The server's `-o` options (port included), for a restart on the same port.
    options: String,
    as_postgres_user: bool,
    watchdog: Watchdog,
}

impl PgServer {
    /// Starts a server; panics with a clear message when PostgreSQL is not installed.
    pub fn start() -> Self {
        let bin = pg_bin_dir().expect(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin \
             (apt-get install -y postgresql, or set MAILFLEET_PG_BIN)",
        );
        let as_postgres_user = is_root();
        let dir = tempfile::Builder::new()
            .prefix("mailfleet-pg-")
            .tempdir()
            .expect("cannot create a temp dir");
        // Before anything can leave a server behind.
        let watchdog = Watchdog::start(dir.path());
        if as_postgres_user {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(
                ok,
                "running as root: cannot chown the PostgreSQL temp dir to user postgres"
            );
        }
        let data = dir.path().join("data");
        let mut server = PgServer {
            dir,
            bin,
            port: 0,
            options: String::new(),
            as_postgres_user,
            watchdog,
        };
        server.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap_or_default(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        // A port can be taken between probing and binding (by another test process); try a few.
        for _ in 0..5 {
            let port = free_port();
            let opts = format!(
                "-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={} \
                 -c max_connections=300 -c shared_buffers=64MB",
                server.dir.path().display()
            );
            if server.pg_ctl_start(&opts) {
                server.port = port;
                server.options = opts;
                return server;
            }
        }
        let log = std::fs::read_to_string(server.dir.path().join("log")).unwrap_or_default();
        panic!("PostgreSQL did not start:\n{log}");
    }

    fn pg_ctl_start(&self, options: &str) -> bool {
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("log");
        self.try_run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap_or_default(),
                "-l",
                log.to_str().unwrap_or_default(),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
    }

    /// Stops the server at once (`pg_ctl -m immediate stop`, as a crash would): its clients'
    /// connections break and new ones are refused until [`PgServer::restart`].
    pub fn stop(&self) {
        assert!(self.pg_ctl_stop(), "pg_ctl stop failed");
    }

    fn pg_ctl_stop(&self) -> bool {
        let data = self.dir.path().join("data");
        self.try_run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap_or_default(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        )
    }

    /// Starts a stopped server again, on the same port with the same data.
    pub fn restart(&self) {
        assert!(
            self.pg_ctl_start(&self.options),
            "PostgreSQL did not start again:\n{}",
            std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
        );
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path).args(args);
            c
        } else {
            let mut c = Command::new(path);
            c.args(args);
            c
        }
    }

    fn try_run(&self, program: &str, args: &[&str]) -> bool {
        self.command(program, args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .current_dir(self.dir.path())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    fn run(&self, program: &str, args: &[&str]) {
        let out = self
            .command(program, args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// URL of the server's `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Creates a database and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        let port = self.port.to_string();
        let host = self.dir.path().display().to_string();
        self.run(
            "createdb",
            &["-h", &host, "-p", &port, "-U", "postgres", name],
        );
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self.pg_ctl_stop();
        // The watchdog removes the directory (and stops the server if pg_ctl could not).
        self.watchdog.finish();
    }
}

// ---------------------------------------------------------------- a store on either backend

/// The store a test runs on: a SQLite file in a temp directory, or a throwaway PostgreSQL
/// server. Keeps either alive as long as it lives; `url` is for `mailfleet_store::open`.
pub struct TestStore {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    _pg: Option<PgServer>,
}

impl TestStore {
    pub fn sqlite() -> TestStore {
        let dir = tempfile::tempdir().expect("a temp dir");
        TestStore {
            url: sqlite_url(dir.path()),
            _dir: Some(dir),
            _pg: None,
        }
    }

    /// Starts a server (blocking: call it from `spawn_blocking` inside a runtime).
    pub fn postgres() -> TestStore {
        let pg = PgServer::start();
        TestStore {
            url: pg.url(),
            _dir: None,
            _pg: Some(pg),
        }
    }

    pub fn is_sqlite(&self) -> bool {
        self.url.starts_with("sqlite:")
    }
}

/// Runs each named `async fn NAME(store: TestStore)` of the calling module twice, as the tokio
/// tests `on_sqlite::NAME` and `on_postgres::NAME` (so a failure on one backend never hides
/// the other), on a multi-thread runtime with `workers` threads.
#[macro_export]
macro_rules! both_backends {
    (workers = $workers:literal; $($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = $workers)]
            async fn $name() { super::$name($crate::TestStore::sqlite()).await })*
        }
        mod on_postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = $workers)]
            async fn $name() {
                let store = tokio::task::spawn_blocking($crate::TestStore::postgres)
                    .await
                    .expect("the PostgreSQL server starts");
                super::$name(store).await
            })*
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(port: u16) -> bool {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    }

    fn poll(what: &str, mut f: impl FnMut() -> bool) {
        let end = Instant::now() + Duration::from_secs(60);
        while !f() {
            assert!(Instant::now() < end, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn starts_and_stops() {
        let pg = PgServer::start();
        let db = pg.create_database("probe");
        assert!(db.ends_with("/probe"));
        // The server answers on its port.
        assert!(answers(pg.port()));
        let port = pg.port();
        let dir = pg.dir.path().to_path_buf();
        drop(pg);
        // pg_ctl stop -w has returned: the server is gone, and so is its directory.
        assert!(!answers(port));
        assert!(!dir.exists(), "{} left behind", dir.display());
    }

    /// What happens when the test process dies: its end of the watchdog's pipe closes.
    #[test]
    fn the_watchdog_stops_an_abandoned_server_and_removes_its_directory() {
        let mut pg = PgServer::start();
        let port = pg.port();
        let dir = pg.dir.path().to_path_buf();
        assert!(answers(port));
        // Close the pipe without stopping anything, then forget the rest (no drop runs).
        drop(pg.watchdog.pipe.take());
        std::mem::forget(pg);
        poll("the abandoned server to stop", || !answers(port));
        poll("its directory to be removed", || !dir.exists());
    }

    #[test]
    fn ports_are_outside_the_ephemeral_range_and_never_repeat() {
        let ephemeral = ephemeral_range();
        let mut seen = BTreeSet::new();
        for _ in 0..200 {
            let p = free_port();
            assert!(usable(u32::from(p), ephemeral), "{p}");
            assert!(seen.insert(p), "{p} handed out twice");
        }
        for _ in 0..50 {
            let o = free_port_offset(&[25, 587, 465]);
            for p in [25, 587, 465] {
                assert!(usable(u32::from(p + o), ephemeral), "{}", p + o);
                assert!(seen.insert(p + o), "{} handed out twice", p + o);
            }
        }
    }

    #[test]
    fn a_guarded_child_dies_with_its_guard() {
        let guard = ChildGuard::spawn(Command::new("sleep").arg("600")).unwrap();
        let pid = guard.id() as libc::pid_t;
        drop(guard);
        // Reaped: the pid no longer names our child.
        // SAFETY: kill with signal 0 only checks for existence.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        assert!(!alive, "child {pid} still running");
    }

    #[test]
    fn a_child_dies_when_the_thread_that_started_it_ends() {
        let pid = std::thread::spawn(|| {
            let mut c = Command::new("sleep");
            c.arg("600");
            die_with_parent(&mut c);
            // Deliberately not guarded: only the parent-death signal can end it.
            c.spawn().unwrap().id() as libc::pid_t
        })
        .join()
        .unwrap();
        // The child is ours but unreaped until we wait for it; waitpid tells how it ended.
        let mut status = 0;
        // SAFETY: waiting for our own child.
        let got = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(got, pid);
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
            "status {status:#x}"
        );
    }
}
