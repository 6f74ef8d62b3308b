//! Test helpers: throwaway PostgreSQL servers on free loopback ports, SQLite URLs, free ports.
//!
//! A [`PgServer`] is a real `postgres` started with `initdb` + `pg_ctl` in a temp directory,
//! listening on 127.0.0.1 only, stopped and deleted on drop. When the tests run as root the server
//! runs as the `postgres` user (initdb refuses root).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

/// A `port_offset` under which every one of `ports` (standard ports such as 25, 587, 465) is free
/// on 127.0.0.1 right now. The offset ports stay below 32768, Linux's default ephemeral range,
/// so no outgoing connection of another test can take one of them meanwhile. Offsets already
/// handed out in this process are not handed out again (tests run in parallel threads).
pub fn free_port_offset(ports: &[u16]) -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let highest = ports.iter().copied().max().unwrap_or(0);
    let span = 32768u32.saturating_sub(u32::from(highest) + 10000).max(1);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id().wrapping_mul(2654435761);
    for attempt in 0..1000u32 {
        let offset = 10000 + (seed.wrapping_add(attempt.wrapping_mul(7919)) % span) as u16;
        // Ports of offsets given out earlier must not be among this one's either.
        let clash = given.iter().any(|g| {
            ports
                .iter()
                .any(|p| ports.iter().any(|q| p + offset == q + g))
        });
        if !clash
            && ports
                .iter()
                .all(|p| TcpListener::bind(("127.0.0.1", p + offset)).is_ok())
        {
            given.push(offset);
            return offset;
        }
    }
    panic!("no port offset with {ports:?} all free on 127.0.0.1");
}

/// `sqlite:DIR/mailfleet.db`.
pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite:{}", dir.join("mailfleet.db").display())
}

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
    // SAFETY-free check: root's home and uid via the id command would need a process; read /proc.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// A running throwaway PostgreSQL server.
pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres_user: bool,
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
            as_postgres_user,
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
        // A port can be taken between probing and binding; try a few.
        for _ in 0..5 {
            let port = free_port();
            let opts = format!(
                "-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={} \
                 -c max_connections=300 -c shared_buffers=64MB",
                server.dir.path().display()
            );
            let log = server.dir.path().join("log");
            let ok = server.try_run(
                "pg_ctl",
                &[
                    "-D",
                    data.to_str().unwrap_or_default(),
                    "-l",
                    log.to_str().unwrap_or_default(),
                    "-o",
                    &opts,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ],
            );
            if ok {
                server.port = port;
                return server;
            }
        }
        let log = std::fs::read_to_string(server.dir.path().join("log")).unwrap_or_default();
        panic!("PostgreSQL did not start:\n{log}");
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
        let data = self.dir.path().join("data");
        let _ = self.try_run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap_or_default(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_and_stops() {
        let pg = PgServer::start();
        let db = pg.create_database("probe");
        assert!(db.ends_with("/probe"));
        // The server answers on its port.
        assert!(std::net::TcpStream::connect(("127.0.0.1", pg.port())).is_ok());
        let port = pg.port();
        drop(pg);
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    }
}
