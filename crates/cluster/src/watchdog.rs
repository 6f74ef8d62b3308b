//! The watchdog, a master-only duty: every `watchdog.interval` the master connects to every
//! live node's services (a TCP connect and the greeting: SMTP `220`, IMAP `* OK`, POP3 `+OK`;
//! a connect only on the TLS-only ports), reads the node list, the queue's size and each node's
//! disk (reported in its heartbeat), and alerts, in its log (`warn`) and by mail to
//! `cluster.admin_address`, when something starts failing, when it recovers, and when the
//! master changes.
//!
//! One alert per event, not one per check: [`AlertState`] remembers what is failing and alerts
//! again only when that changes. Every node that is not master reads the master lease's holder
//! each second (one read), so the node that takes over from a dead master knows whom it
//! replaced; the checks run only on the master, as one of its jobs (`crate::master`), and a new
//! master starts with no memory of what its predecessor alerted (it reports what it finds
//! failing once).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mailfleet_store::{BlobStore, Fence, NodeInfo, Store, Timestamp};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use crate::master::{JobError, JobRun};
use crate::membership::{
    FORGET_DEAD_AFTER_SECS, MASTER_LEASE, MasterLease, NodeReport, NodeState, is_alive,
};
use crate::settings::{LiveSettings, Settings};

/// The watchdog's cluster settings: name, default, meaning.
pub const KEYS: &[(&str, &str, &str)] = &[
    (
        "cluster.admin_address",
        "",
        "where the watchdog's alerts are mailed; empty = alerts only in the master's log",
    ),
    (
        "watchdog.interval",
        "30s",
        "how often the master checks every live node's services, the node list, the queue and the disks",
    ),
    (
        "watchdog.connect_timeout",
        "5s",
        "how long a service has to accept a connection and send its greeting",
    ),
    (
        "watchdog.queue_threshold",
        "1000",
        "alert when the queue holds more items than this; 0 = never",
    ),
    (
        "watchdog.disk_percent",
        "90",
        "alert when a node's data_dir filesystem is fuller than this percentage; 0 = never",
    ),
];

fn parse_positive_duration(v: &str) -> Result<Duration, String> {
    match humantime::parse_duration(v) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(format!("{v:?}: must be more than zero")),
        Err(e) => Err(format!("{v:?}: {e} (examples: 10s, 1m, 5m)")),
    }
}

fn parse_percent(v: &str) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("{v:?}: expected a percentage from 0 to 100")),
    }
}

/// Checks a watchdog key; `None` for keys it does not own.
pub fn validate(key: &str, value: &str) -> Option<Result<(), String>> {
    let v = value.trim();
    let r = match key {
        "cluster.admin_address" => {
            if v.is_empty() {
                Ok(())
            } else {
                mailfleet_store::address::normalize_address(v)
                    .map(|_| ())
                    .map_err(|e| format!("{v:?}: {e}"))
            }
        }
        "watchdog.interval" | "watchdog.connect_timeout" => parse_positive_duration(v).map(|_| ()),
        "watchdog.queue_threshold" => v
            .parse::<u64>()
            .map(|_| ())
            .map_err(|_| format!("{v:?}: expected a number of items (0 = never)")),
        "watchdog.disk_percent" => parse_percent(v).map(|_| ()),
        k if k.starts_with("watchdog.") => Err(format!("unknown watchdog key {k}")),
        _ => return None,
    };
    Some(r.map_err(|e| format!("{key}: {e}")))
}

/// The watchdog's settings as it applies them in a round.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchdogPolicy {
    pub interval: Duration,
    pub connect_timeout: Duration,
    /// Alert above this many queued items (0: never).
    pub queue_threshold: i64,
    /// Alert above this percentage of a disk used (0: never).
    pub disk_percent: f64,
    pub admin_address: Option<String>,
}

impl WatchdogPolicy {
    /// The policy from the settings; a value that does not parse (only a hand-edited row can
    /// hold one) leaves its default.
    pub fn from_settings(s: &Settings) -> Self {
        let duration = |key: &str, default: u64| {
            s.get(key)
                .and_then(|v| parse_positive_duration(v.trim()).ok())
                .unwrap_or(Duration::from_secs(default))
        };
        Self {
            interval: duration("watchdog.interval", 30),
            connect_timeout: duration("watchdog.connect_timeout", 5),
            queue_threshold: s.get_or("watchdog.queue_threshold", 1000),
            disk_percent: s
                .get("watchdog.disk_percent")
                .and_then(|v| parse_percent(v.trim()).ok())
                .unwrap_or(90.0),
            admin_address: s
                .get("cluster.admin_address")
                .and_then(|v| mailfleet_store::address::normalize_address(v.trim()).ok()),
        }
    }
}

// ---------------------------------------------------------------- what is remembered

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Ok,
    /// Failing, with what was seen.
    Failing(String),
}

/// One alert: something started failing, recovered, or the master changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alert {
    Failing { what: String, detail: String },
    Recovered { what: String, detail: String },
    MasterChanged { from: String, to: String },
}

impl Alert {
    /// One line, for the log and a mail's subject.
    pub fn line(&self) -> String {
        match self {
            Alert::Failing { what, detail } => format!("FAILING: {what}: {detail}"),
            Alert::Recovered { what, detail } => {
                format!("RECOVERED: {what} (it was: {detail})")
            }
            Alert::MasterChanged { from, to } => format!("MASTER CHANGED: {from} -> {to}"),
        }
    }
}

/// What has been alerted: the checks failing now (with what was said of them) and the master
/// last seen.
#[derive(Debug, Default)]
pub struct AlertState {
    failing: BTreeMap<String, String>,
    master: Option<String>,
}

impl AlertState {
    /// A round's checks, each named by what it checks. A check that starts failing alerts, a
    /// failing one that passes again alerts as recovered; one that goes on failing (even with
    /// other words) or passing says nothing. A failing check that is not made any more (its
    /// node is dead, or left the list) is forgotten without an alert: what replaced it (the
    /// node's death) has its own.
    pub fn observe(&mut self, checks: &BTreeMap<String, Health>) -> Vec<Alert> {
        let mut alerts = Vec::new();
        self.failing.retain(|what, _| checks.contains_key(what));
        for (what, health) in checks {
            match (health, self.failing.get(what)) {
                (Health::Failing(detail), None) => {
                    self.failing.insert(what.clone(), detail.clone());
                    alerts.push(Alert::Failing {
                        what: what.clone(),
                        detail: detail.clone(),
                    });
                }
                (Health::Ok, Some(_)) => {
                    if let Some(detail) = self.failing.remove(what) {
                        alerts.push(Alert::Recovered {
                            what: what.clone(),
                            detail,
                        });
                    }
                }
                _ => {}
            }
        }
        alerts
    }

    /// The master lease's holder now (`None`: nobody holds it). A change from a holder seen
    /// before to another alerts; the first holder seen, and a lapse, do not.
    pub fn observe_master(&mut self, holder: Option<&str>) -> Option<Alert> {
        let holder = holder?;
        let before = self.master.replace(holder.to_string());
        match before {
            Some(from) if from != holder => Some(Alert::MasterChanged {
                from,
                to: holder.to_string(),
            }),
            _ => None,
        }
    }

    /// Forgets what was failing (this node is not the master: another one watches).
    pub fn forget_checks(&mut self) {
        self.failing.clear();
    }
}

// ---------------------------------------------------------------- checks

/// A node's data_dir filesystem, as its heartbeat reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskReport {
    pub path: String,
    /// Used, as `df` counts it: of the blocks not reserved for root.
    pub used_percent: f64,
}

/// The filesystem holding `path`: its use in percent (`statvfs`).
pub fn disk_usage(path: &Path) -> std::io::Result<DiskReport> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("a NUL byte in the path"))?;
    // SAFETY: `c` is a NUL-terminated path; `st` is written by statvfs before it is read.
    let st = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        st
    };
    let used = st.f_blocks.saturating_sub(st.f_bfree) as f64;
    let usable = used + st.f_bavail as f64;
    Ok(DiskReport {
        path: path.display().to_string(),
        used_percent: if usable > 0.0 {
            used * 100.0 / usable
        } else {
            0.0
        },
    })
}

/// What a service must say first: SMTP `220`, IMAP `* OK`, POP3 `+OK`; `None` for the
/// TLS-only ports (and names this watchdog does not know), where a connect is the check.
fn expected_greeting(service: &str) -> Option<&'static str> {
    match service {
        "smtp" | "submission" => Some("220"),
        "imap" => Some("* OK"),
        "pop3" => Some("+OK"),
        _ => None,
    }
}

/// Connects to `address` and reads the greeting `service` sends, within `timeout`.
pub async fn check_service(service: &str, address: SocketAddr, timeout: Duration) -> Health {
    let attempt = async {
        let mut tcp = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let Some(want) = expected_greeting(service) else {
            return Ok(());
        };
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        while !got.contains(&b'\n') && got.len() < 512 {
            let n = tcp
                .read(&mut buf)
                .await
                .map_err(|e| format!("reading the greeting: {e}"))?;
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        let line = String::from_utf8_lossy(&got);
        let line = line.lines().next().unwrap_or("").trim_end();
        if line.starts_with(want) {
            Ok(())
        } else if line.is_empty() {
            Err("closed without a greeting".to_string())
        } else {
            Err(format!("greeted with {line:?}"))
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(())) => Health::Ok,
        Ok(Err(e)) => Health::Failing(e),
        Err(_) => Health::Failing(format!("no greeting within {timeout:?}")),
    }
}

/// A timestamp as UTC date and time.
fn format_time(ts: Timestamp) -> String {
    match chrono::DateTime::from_timestamp(ts, 0) {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        None => ts.to_string(),
    }
}

/// A round's checks: every listed node alive or dead; the services (unless it is draining) and
/// the disk of the live ones; the queue. A drained node is not checked at all.
pub async fn run_checks(
    nodes: &[NodeInfo],
    queue_items: i64,
    policy: &WatchdogPolicy,
    now: Timestamp,
) -> BTreeMap<String, Health> {
    let mut checks = BTreeMap::new();
    let mut probes = tokio::task::JoinSet::new();
    for node in nodes {
        let state = NodeState::of(&node.info);
        // A drained node left on purpose: neither its end nor its closed ports are failures.
        if state == NodeState::Drained {
            continue;
        }
        let alive = is_alive(node.last_seen, now);
        checks.insert(
            format!("node {}", node.server_id),
            if alive {
                Health::Ok
            } else {
                Health::Failing(format!(
                    "no heartbeat since {} ({} s)",
                    format_time(node.last_seen),
                    now - node.last_seen
                ))
            },
        );
        if !alive {
            continue;
        }
        let report = NodeReport::from_info(&node.info);
        // A draining node has closed its listeners: its services are not checked.
        let services = if state == NodeState::Draining {
            Vec::new()
        } else {
            report.services
        };
        for s in services {
            let what = format!("{} on node {} ({})", s.service, node.server_id, s.address);
            match s.address.parse::<SocketAddr>() {
                Ok(addr) if addr.ip().is_unspecified() => {
                    checks.insert(
                        what,
                        Health::Failing(
                            "the node listens on every address and advertises none \
                             (set advertise in its file)"
                                .into(),
                        ),
                    );
                }
                Ok(addr) => {
                    let timeout = policy.connect_timeout;
                    probes.spawn(async move {
                        let health = check_service(&s.service, addr, timeout).await;
                        (what, health)
                    });
                }
                Err(_) => {
                    checks.insert(what, Health::Failing("not an ip:port address".into()));
                }
            }
        }
        if let Some(skew) = report.clock_skew_ms {
            checks.insert(
                format!("clock of node {}", node.server_id),
                if skew.abs() > crate::membership::MAX_CLOCK_SKEW_MS {
                    Health::Failing(format!(
                        "{:+.1} s from the database server's (leases need under 1 s: run NTP)",
                        -(skew as f64) / 1000.0
                    ))
                } else {
                    Health::Ok
                },
            );
        }
        if policy.disk_percent > 0.0
            && let Some(disk) = node
                .info
                .get("disk")
                .and_then(|d| serde_json::from_value::<DiskReport>(d.clone()).ok())
        {
            checks.insert(
                format!("disk of node {} ({})", node.server_id, disk.path),
                if disk.used_percent > policy.disk_percent {
                    Health::Failing(format!(
                        "{:.1}% used, above {}%",
                        disk.used_percent, policy.disk_percent
                    ))
                } else {
                    Health::Ok
                },
            );
        }
    }
    while let Some(done) = probes.join_next().await {
        if let Ok((what, health)) = done {
            checks.insert(what, health);
        }
    }
    if policy.queue_threshold > 0 {
        checks.insert(
            "the queue".into(),
            if queue_items > policy.queue_threshold {
                Health::Failing(format!(
                    "{queue_items} items, above {}",
                    policy.queue_threshold
                ))
            } else {
                Health::Ok
            },
        );
    }
    checks
}

// ---------------------------------------------------------------- the job

/// How often every node reads who holds the master lease, and how often the master job looks
/// whether a round is due.
pub const LOOK_EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Memory {
    alerts: AlertState,
    last_round: Option<Instant>,
    mails: u64,
}

/// The watchdog of one node. Every node follows the master lease's holder
/// ([`Watchdog::spawn_lease_watch`]); the rounds run as a master job ([`Watchdog::job`]).
pub struct Watchdog {
    store: Arc<dyn Store>,
    blobs: Arc<dyn BlobStore>,
    settings: LiveSettings,
    server_id: String,
    /// This node's hostname, for the alerts' `From:` and `Message-ID`.
    hostname: String,
    memory: Mutex<Memory>,
}

impl Watchdog {
    pub fn new(
        store: Arc<dyn Store>,
        blobs: Arc<dyn BlobStore>,
        settings: LiveSettings,
        server_id: String,
        hostname: String,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            blobs,
            settings,
            server_id,
            hostname,
            memory: Mutex::new(Memory::default()),
        })
    }

    fn memory(&self) -> MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// While this node is not master: reads the lease's holder every [`LOOK_EVERY`] (so that,
    /// should it take over, it knows whom it replaced) and forgets what it alerted as master
    /// (the master watches now).
    pub fn spawn_lease_watch(
        self: &Arc<Self>,
        lease: MasterLease,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(LOOK_EVERY) => {}
                }
                if lease.is_master() {
                    continue;
                }
                let now = mailfleet_store::now();
                let holder = match this.store.get_lease(MASTER_LEASE).await {
                    Ok(l) => l.filter(|l| l.expires >= now).map(|l| l.holder),
                    Err(e) => {
                        tracing::debug!("watchdog: cannot read the master lease: {e}");
                        continue;
                    }
                };
                let mut memory = this.memory();
                memory.alerts.forget_checks();
                // This node as holder is left for its own job to see: the change is its to
                // alert. Another node's change is that node's to alert.
                if holder.as_deref() != Some(this.server_id.as_str()) {
                    let _ = memory.alerts.observe_master(holder.as_deref());
                }
            }
        })
    }

    /// The master job: every [`LOOK_EVERY`] it looks whether `watchdog.interval` has passed
    /// since the last round (so a change of the setting applies at once), and runs one then,
    /// at once when the node has just become master.
    pub fn job(self: &Arc<Self>) -> impl Fn(Fence) -> JobRun + Send + Sync + 'static {
        let this = self.clone();
        move |_fence| {
            let this = this.clone();
            Box::pin(async move {
                let policy = WatchdogPolicy::from_settings(&this.settings.current());
                let due = this
                    .memory()
                    .last_round
                    .is_none_or(|t| t.elapsed() >= policy.interval);
                if !due {
                    return Ok(String::new());
                }
                let alerts = this.round(&policy).await?;
                Ok(match alerts {
                    0 => String::new(),
                    n => format!("watchdog raised {n} alerts"),
                })
            })
        }
    }

    /// One round on the master: every check, and the alerts they raise (with a change of
    /// master) logged and mailed. Returns how many alerts it raised.
    pub async fn round(&self, policy: &WatchdogPolicy) -> Result<usize, JobError> {
        let now = mailfleet_store::now();
        let mut alerts = Vec::new();
        {
            let mut memory = self.memory();
            memory.last_round = Some(Instant::now());
            alerts.extend(memory.alerts.observe_master(Some(&self.server_id)));
        }
        let nodes: Vec<NodeInfo> = self
            .store
            .list_nodes()
            .await?
            .into_iter()
            .filter(|n| now - n.last_seen <= FORGET_DEAD_AFTER_SECS)
            .collect();
        let queue_items = self.store.queue_summary(now).await?.items;
        let checks = run_checks(&nodes, queue_items, policy, now).await;
        let failing = checks
            .values()
            .filter(|h| matches!(h, Health::Failing(_)))
            .count();
        tracing::debug!(checks = checks.len(), failing, "watchdog round");
        alerts.extend(self.memory().alerts.observe(&checks));
        if alerts.is_empty() {
            return Ok(0);
        }
        for a in &alerts {
            tracing::warn!("watchdog: {}", a.line());
        }
        if let Some(admin) = &policy.admin_address {
            self.mail(admin, &alerts, now).await;
        }
        Ok(alerts.len())
    }

    /// Mails `alerts` to `admin` as one message, delivered (or queued for a remote address)
    /// as the queue's bounces are: null sender, so it never bounces back.
    async fn mail(&self, admin: &str, alerts: &[Alert], now: Timestamp) {
        let serial = {
            let mut memory = self.memory();
            memory.mails += 1;
            memory.mails
        };
        let message = alert_message(&self.hostname, &self.server_id, admin, alerts, now, serial);
        match mailfleet_delivery::deliver_to_addresses(
            self.store.as_ref(),
            self.blobs.as_ref(),
            "",
            &[admin.to_string()],
            message.as_bytes(),
            true,
        )
        .await
        {
            Ok(outcomes) => {
                if let Some(o) = outcomes
                    .iter()
                    .find(|o| **o != mailfleet_delivery::AddressOutcome::Accepted)
                {
                    tracing::warn!("watchdog: cannot mail cluster.admin_address {admin}: {o:?}");
                }
            }
            Err(e) => tracing::warn!("watchdog: cannot mail cluster.admin_address {admin}: {e}"),
        }
    }
}

/// The alert mail: one subject line for the first alert (and how many more), every alert in
/// the body.
pub fn alert_message(
    hostname: &str,
    server_id: &str,
    admin: &str,
    alerts: &[Alert],
    now: Timestamp,
    serial: u64,
) -> String {
    let first = alerts.first().map(Alert::line).unwrap_or_default();
    let subject = match alerts.len() {
        0 | 1 => first,
        n => format!("{first} (and {} more)", n - 1),
    };
    // Keep the subject on one line whatever a detail held.
    let subject: String = subject
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let date = chrono::DateTime::from_timestamp(now, 0)
        .map(|t| t.to_rfc2822())
        .unwrap_or_default();
    let mut m = String::new();
    m.push_str(&format!(
        "From: mailfleet watchdog <MAILER-DAEMON@{hostname}>\r\n"
    ));
    m.push_str(&format!("To: <{admin}>\r\n"));
    m.push_str(&format!("Subject: [mailfleet] {subject}\r\n"));
    m.push_str(&format!("Date: {date}\r\n"));
    m.push_str(&format!(
        "Message-ID: <watchdog.{now}.{serial}.{server_id}@{hostname}>\r\n"
    ));
    m.push_str("Auto-Submitted: auto-generated\r\n");
    m.push_str("MIME-Version: 1.0\r\n");
    m.push_str("Content-Type: text/plain; charset=utf-8\r\n");
    m.push_str("\r\n");
    m.push_str(&format!(
        "The mailfleet watchdog on {server_id} ({hostname}), master of the cluster, at {}:\r\n\r\n",
        format_time(now)
    ));
    for a in alerts {
        m.push_str(&a.line().replace(['\r', '\n'], " "));
        m.push_str("\r\n");
    }
    m
}

/// The data directory's disk for the heartbeat, or `None` when `statvfs` fails.
pub fn disk_report(data_dir: &Path) -> Option<DiskReport> {
    match disk_usage(data_dir) {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::debug!("statvfs {}: {e}", data_dir.display());
            None
        }
    }
}

#[cfg(test)]
mod tests;
