//! Where a process's log goes: stderr always; for a node also files in `log_dir` and, when the
//! node file's `[log]` table says so, the system log.
//!
//! - **Files**: `SERVER_ID.YYYY-MM-DD.log` (UTC date), a new one each day; past `log.max_size`
//!   the day goes on in `SERVER_ID.YYYY-MM-DD.1.log`, `.2.log`, ... With `log.per_service`,
//!   one set per service type, `SERVER_ID.smtp.YYYY-MM-DD.log` and likewise `imap`, `pop3`,
//!   `queue`, `other`, chosen by the crate an event comes from (`mailfleet_smtp`, ...; the
//!   shared listener, the store and the node itself are `other`).
//! - **Retention**: at start and every hour, the node's own log files (`SERVER_ID.*.log`)
//!   last written more than `log.keep_days` days ago are deleted (0: never).
//! - **Syslog**: each line as one datagram to `log.syslog_socket` (`/dev/log`, read by
//!   journald or rsyslog), in the format the C library's `syslog(3)` sends locally (RFC 3164):
//!   `<PRI>Mmm dd hh:mm:ss mailfleet-SERVER_ID[PID]: line`, facility mail. A thread of its own
//!   sends them, so a slow reader never stalls a session; a line that waits over a second for
//!   room in the reader's queue is dropped.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use mailfleet_config::NodeConfig;
use tracing::Metadata;
use tracing_appender::non_blocking::{NonBlocking, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Logs to stderr only (commands that have no node configuration).
pub fn init_stderr_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(env_filter())
        .with_writer(std::io::stderr)
        .try_init();
}

fn env_filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Keeps a node's log files written: dropping it flushes what is still queued.
pub struct LogGuard {
    _files: Vec<WorkerGuard>,
}

/// Logs to stderr, to files in `log_dir` and, if asked, to the system log (see the module's
/// notes); starts the retention sweep.
pub fn init_node_logging(config: &NodeConfig) -> anyhow::Result<LogGuard> {
    let dir = config.log_dir();
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create log_dir {}", dir.display()))?;
    let max_size = config.log.max_size_bytes();
    let mut guards = Vec::new();
    let mut open = |stem: String| -> anyhow::Result<NonBlocking> {
        let file = LogFile::open(&dir, &stem, max_size, SystemTime::now())
            .with_context(|| format!("cannot open a log file in {}", dir.display()))?;
        let (writer, guard) = tracing_appender::non_blocking(file);
        guards.push(guard);
        Ok(writer)
    };
    let files = if config.log.per_service {
        let mut by_kind = Vec::new();
        for kind in ServiceKind::ALL {
            by_kind.push(open(format!("{}.{}", config.server_id, kind.name()))?);
        }
        FileWriters::PerService(by_kind)
    } else {
        FileWriters::One(open(config.server_id.clone())?)
    };
    let syslog = if config.log.syslog {
        let (sink, guard) = SyslogSink::connect(
            &config.log.syslog_socket,
            format!("mailfleet-{}", config.server_id),
        )
        .with_context(|| {
            format!(
                "log.syslog_socket: cannot reach {}",
                config.log.syslog_socket.display()
            )
        })?;
        guards.push(guard);
        Some(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .without_time()
                .with_writer(SyslogWriter(Arc::new(sink))),
        )
    } else {
        None
    };
    let _ = tracing_subscriber::registry()
        .with(env_filter())
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(files),
        )
        .with(syslog)
        .try_init();
    if config.log.keep_days > 0 {
        spawn_retention(dir, config.server_id.clone(), config.log.keep_days)?;
    }
    Ok(LogGuard { _files: guards })
}

// ---------------------------------------------------------------- service types

/// The service types of `log.per_service`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServiceKind {
    Smtp,
    Imap,
    Pop3,
    Queue,
    Other,
}

impl ServiceKind {
    const ALL: [ServiceKind; 5] = [
        ServiceKind::Smtp,
        ServiceKind::Imap,
        ServiceKind::Pop3,
        ServiceKind::Queue,
        ServiceKind::Other,
    ];

    fn name(self) -> &'static str {
        match self {
            ServiceKind::Smtp => "smtp",
            ServiceKind::Imap => "imap",
            ServiceKind::Pop3 => "pop3",
            ServiceKind::Queue => "queue",
            ServiceKind::Other => "other",
        }
    }

    /// The type of an event, by the crate it comes from (its target's first segment).
    fn of_target(target: &str) -> ServiceKind {
        let krate = target.split("::").next().unwrap_or(target);
        match krate {
            "mailfleet_smtp" | "mailfleet_smtp_proto" => ServiceKind::Smtp,
            "mailfleet_imap" | "mailfleet_imap_proto" | "mailfleet_imap_search" => {
                ServiceKind::Imap
            }
            "mailfleet_pop3" | "mailfleet_pop3_proto" => ServiceKind::Pop3,
            "mailfleet_queue" => ServiceKind::Queue,
            _ => ServiceKind::Other,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The file writers: one for everything, or one per [`ServiceKind`] (in `ALL`'s order).
enum FileWriters {
    One(NonBlocking),
    PerService(Vec<NonBlocking>),
}

impl<'a> MakeWriter<'a> for FileWriters {
    type Writer = NonBlocking;

    fn make_writer(&'a self) -> NonBlocking {
        match self {
            FileWriters::One(w) => w.clone(),
            FileWriters::PerService(ws) => ws[ServiceKind::Other.index()].clone(),
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> NonBlocking {
        match self {
            FileWriters::One(w) => w.clone(),
            FileWriters::PerService(ws) => {
                ws[ServiceKind::of_target(meta.target()).index()].clone()
            }
        }
    }
}

// ---------------------------------------------------------------- files

/// `YYYY-MM-DD` of `t` in UTC.
fn utc_date(t: SystemTime) -> String {
    let dt: chrono::DateTime<chrono::Utc> = t.into();
    dt.format("%Y-%m-%d").to_string()
}

/// One log (a stem such as `mx1` or `mx1.smtp`): a file per day, continued in a new one past
/// `max_size`.
struct LogFile {
    dir: PathBuf,
    stem: String,
    max_size: Option<u64>,
    date: String,
    /// 0 for `STEM.DATE.log`, n for `STEM.DATE.n.log`.
    index: u32,
    file: File,
    size: u64,
}

impl LogFile {
    fn path(dir: &Path, stem: &str, date: &str, index: u32) -> PathBuf {
        if index == 0 {
            dir.join(format!("{stem}.{date}.log"))
        } else {
            dir.join(format!("{stem}.{date}.{index}.log"))
        }
    }

    /// Opens the day's last file (after a restart the day goes on where it was).
    fn open(dir: &Path, stem: &str, max_size: Option<u64>, now: SystemTime) -> io::Result<Self> {
        let date = utc_date(now);
        let mut index = 0;
        while Self::path(dir, stem, &date, index + 1).exists() {
            index += 1;
        }
        let (file, size) = Self::open_file(&Self::path(dir, stem, &date, index))?;
        Ok(LogFile {
            dir: dir.to_path_buf(),
            stem: stem.to_string(),
            max_size,
            date,
            index,
            file,
            size,
        })
    }

    fn open_file(path: &Path) -> io::Result<(File, u64)> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let size = file.metadata()?.len();
        Ok((file, size))
    }

    fn reopen(&mut self) -> io::Result<()> {
        (self.file, self.size) =
            Self::open_file(&Self::path(&self.dir, &self.stem, &self.date, self.index))?;
        Ok(())
    }

    /// Writes one line, first moving to the next file if the day changed or the line would
    /// take the file past `max_size` (a line longer than `max_size` gets a file to itself).
    fn write_line(&mut self, line: &[u8], now: SystemTime) -> io::Result<()> {
        let date = utc_date(now);
        if date != self.date {
            self.date = date;
            self.index = 0;
            self.reopen()?;
        }
        if let Some(max) = self.max_size {
            while self.size > 0 && self.size + line.len() as u64 > max {
                self.index += 1;
                self.reopen()?;
            }
        }
        self.file.write_all(line)?;
        self.size += line.len() as u64;
        Ok(())
    }
}

impl Write for LogFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_line(buf, SystemTime::now())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

// ---------------------------------------------------------------- retention

/// How often the retention sweep runs.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// Whether `name` is one of the log files of `server_id` (`SERVER_ID.….log`).
fn is_own_log(name: &str, server_id: &str) -> bool {
    name.strip_prefix(server_id)
        .is_some_and(|rest| rest.starts_with('.') && rest.ends_with(".log"))
}

/// Deletes `server_id`'s log files in `dir` last modified before `now - keep_days`; returns
/// the names deleted.
fn sweep(dir: &Path, server_id: &str, keep_days: u32, now: SystemTime) -> Vec<String> {
    let Some(cutoff) = now.checked_sub(Duration::from_secs(u64::from(keep_days) * 86_400)) else {
        return Vec::new();
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!("log retention: cannot read {}: {e}", dir.display());
            return Vec::new();
        }
    };
    let mut deleted = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_own_log(&name, server_id) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() || meta.modified().map_or(true, |m| m >= cutoff) {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => deleted.push(name),
            Err(e) => tracing::warn!("log retention: cannot delete {name}: {e}"),
        }
    }
    deleted.sort();
    deleted
}

fn spawn_retention(dir: PathBuf, server_id: String, keep_days: u32) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name("log-retention".into())
        .spawn(move || {
            loop {
                let deleted = sweep(&dir, &server_id, keep_days, SystemTime::now());
                if !deleted.is_empty() {
                    tracing::info!(
                        "log retention: deleted {} file(s) older than {keep_days} days: {}",
                        deleted.len(),
                        deleted.join(", ")
                    );
                }
                std::thread::sleep(SWEEP_EVERY);
            }
        })
        .context("cannot start the log retention thread")?;
    Ok(())
}

// ---------------------------------------------------------------- syslog

/// Facility `mail` (RFC 5424 §6.2.1).
const FACILITY_MAIL: u8 = 2;
/// Longest line sent; the rest is cut (journald and rsyslog take far more, other readers not).
const MAX_DATAGRAM: usize = 8192;

/// How long one datagram may wait for room in the system log's queue before it is dropped.
const SYSLOG_SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// The system log's socket, written by the syslog writer's own thread (a line waits there,
/// not in a session, when the reader is slow).
struct SyslogSocket {
    path: PathBuf,
    socket: UnixDatagram,
}

fn connect_datagram(path: &Path) -> io::Result<UnixDatagram> {
    let socket = UnixDatagram::unbound()?;
    socket.connect(path)?;
    socket.set_write_timeout(Some(SYSLOG_SEND_TIMEOUT))?;
    Ok(socket)
}

impl SyslogSocket {
    fn connect(path: &Path) -> io::Result<Self> {
        Ok(SyslogSocket {
            path: path.to_path_buf(),
            socket: connect_datagram(path)?,
        })
    }
}

impl Write for SyslogSocket {
    /// One datagram; once more on a fresh socket if the reader went away (a restarted
    /// journald); dropped if the reader's queue stays full past [`SYSLOG_SEND_TIMEOUT`].
    fn write(&mut self, datagram: &[u8]) -> io::Result<usize> {
        match self.socket.send(datagram) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                if let Ok(fresh) = connect_datagram(&self.path) {
                    let _ = fresh.send(datagram);
                    self.socket = fresh;
                }
            }
        }
        Ok(datagram.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What formats the lines for the system log and hands them to its thread.
struct SyslogSink {
    tag: String,
    queue: NonBlocking,
}

impl SyslogSink {
    /// Connects to `path` and starts the writer thread (flushed when the guard drops).
    fn connect(path: &Path, tag: String) -> io::Result<(Self, WorkerGuard)> {
        let socket = SyslogSocket::connect(path)?;
        let (queue, guard) = tracing_appender::non_blocking(socket);
        Ok((SyslogSink { tag, queue }, guard))
    }

    /// Queues one line (one write is one datagram).
    fn send(&self, severity: u8, line: &[u8]) {
        let datagram = self.format(severity, line, chrono::Local::now());
        let _ = self.queue.clone().write(&datagram);
    }

    fn format(&self, severity: u8, line: &[u8], now: chrono::DateTime<chrono::Local>) -> Vec<u8> {
        let mut out = format!(
            "<{}>{} {}[{}]: ",
            FACILITY_MAIL * 8 + severity,
            now.format("%b %e %H:%M:%S"),
            self.tag,
            std::process::id()
        )
        .into_bytes();
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let room = MAX_DATAGRAM.saturating_sub(out.len());
        out.extend(
            line.iter()
                .take(room)
                .map(|&b| if b == b'\n' { b' ' } else { b }),
        );
        out
    }
}

/// RFC 5424 severity of a tracing level.
fn severity(level: &tracing::Level) -> u8 {
    match *level {
        tracing::Level::ERROR => 3,
        tracing::Level::WARN => 4,
        tracing::Level::INFO => 6,
        _ => 7,
    }
}

/// One event's line on its way to the system log: sent when dropped (the formatter writes a
/// whole event, then drops its writer).
struct SyslogLine {
    sink: Arc<SyslogSink>,
    severity: u8,
    buf: Vec<u8>,
}

impl Write for SyslogLine {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogLine {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.sink.send(self.severity, &self.buf);
        }
    }
}

/// Makes a [`SyslogLine`] per event.
struct SyslogWriter(Arc<SyslogSink>);

impl<'a> MakeWriter<'a> for SyslogWriter {
    type Writer = SyslogLine;

    fn make_writer(&'a self) -> SyslogLine {
        SyslogLine {
            sink: self.0.clone(),
            severity: 6,
            buf: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> SyslogLine {
        SyslogLine {
            sink: self.0.clone(),
            severity: severity(meta.level()),
            buf: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(n: u64) -> SystemTime {
        // 2026-01-01T12:00:00Z plus n days.
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_268_800 + n * 86_400)
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn files_turn_daily_and_at_the_size() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogFile::open(dir.path(), "mx1", Some(100), day(0)).unwrap();
        let line = [b'x'; 39];
        let mut line = line.to_vec();
        line.push(b'\n');
        for _ in 0..5 {
            log.write_line(&line, day(0)).unwrap();
        }
        log.write_line(&line, day(1)).unwrap();
        assert_eq!(
            names(dir.path()),
            [
                "mx1.2026-01-01.1.log",
                "mx1.2026-01-01.2.log",
                "mx1.2026-01-01.log",
                "mx1.2026-01-02.log"
            ]
        );
        let size = |n: &str| std::fs::metadata(dir.path().join(n)).unwrap().len();
        assert_eq!(size("mx1.2026-01-01.log"), 80);
        assert_eq!(size("mx1.2026-01-01.1.log"), 80);
        assert_eq!(size("mx1.2026-01-01.2.log"), 40);
        // A restart the same day goes on in the day's last file.
        let mut again = LogFile::open(dir.path(), "mx1", Some(100), day(0)).unwrap();
        again.write_line(&line, day(0)).unwrap();
        assert_eq!(size("mx1.2026-01-01.2.log"), 80);
        // Without a size, one file a day whatever its size.
        let mut daily = LogFile::open(dir.path(), "mx2", None, day(0)).unwrap();
        for _ in 0..100 {
            daily.write_line(&line, day(0)).unwrap();
        }
        assert_eq!(size("mx2.2026-01-01.log"), 4000);
    }

    #[test]
    fn retention_deletes_only_the_nodes_old_files() {
        let dir = tempfile::tempdir().unwrap();
        let now = day(40);
        for (name, age_days) in [
            ("mx1.2026-01-01.log", 40),
            ("mx1.smtp.2026-01-01.1.log", 40),
            ("mx1.2026-02-09.log", 0),
            ("mx1.2026-01-20.log", 20),
            ("mx12.2026-01-01.log", 40),
            ("mx1.2026-01-01.txt", 40),
            ("notes.log", 40),
        ] {
            let f = File::create(dir.path().join(name)).unwrap();
            f.set_modified(now - Duration::from_secs(age_days * 86_400))
                .unwrap();
        }
        let deleted = sweep(dir.path(), "mx1", 30, now);
        assert_eq!(deleted, ["mx1.2026-01-01.log", "mx1.smtp.2026-01-01.1.log"]);
        assert_eq!(
            names(dir.path()),
            [
                "mx1.2026-01-01.txt",
                "mx1.2026-01-20.log",
                "mx1.2026-02-09.log",
                "mx12.2026-01-01.log",
                "notes.log"
            ]
        );
    }

    #[test]
    fn events_go_to_their_service_type() {
        for (target, kind) in [
            ("mailfleet_smtp::session", ServiceKind::Smtp),
            ("mailfleet_imap", ServiceKind::Imap),
            ("mailfleet_imap_search::sort", ServiceKind::Imap),
            ("mailfleet_pop3::session", ServiceKind::Pop3),
            ("mailfleet_queue::worker", ServiceKind::Queue),
            ("mailfleet_listener", ServiceKind::Other),
            ("mailfleet::node", ServiceKind::Other),
            ("mailfleet_smtpx", ServiceKind::Other),
        ] {
            assert_eq!(ServiceKind::of_target(target), kind, "{target}");
        }
    }

    #[test]
    fn syslog_lines_are_what_syslog_3_sends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sock");
        let reader = UnixDatagram::bind(&path).unwrap();
        let (sink, _guard) = SyslogSink::connect(&path, "mailfleet-mx1".into()).unwrap();
        sink.send(4, b"smtp: something odd\nsecond line\n");
        let mut buf = [0u8; 9000];
        reader
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let n = reader.recv(&mut buf).unwrap();
        let got = String::from_utf8_lossy(&buf[..n]).into_owned();
        // <20>: facility mail (2) * 8 + warning (4).
        assert!(got.starts_with("<20>"), "{got}");
        let pid_tag = format!(" mailfleet-mx1[{}]: ", std::process::id());
        assert!(
            got.ends_with(&format!("{pid_tag}smtp: something odd second line")),
            "{got}"
        );
        // A line too long for one datagram is cut, not split.
        sink.send(6, &vec![b'y'; 20_000]);
        let n = reader.recv(&mut buf).unwrap();
        assert_eq!(n, MAX_DATAGRAM);
    }
}
