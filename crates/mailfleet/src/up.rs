//! `mailfleet up`: the newcomer's command, and the cluster on one machine. The balancer on
//! 127.0.0.1 (every mail port plus the offset), two nodes as child processes on 127.0.0.2 and
//! 127.0.0.3 (the same ports), all on the SQLite store in the data directory, PROXY v2 from the
//! balancer to the nodes. A demo domain and account are made on first start.
//!
//! `up` supervises its nodes: one that exits is started again (after a pause that grows while it
//! keeps failing), and meanwhile the balancer's health checks route around it. The first Ctrl-C
//! or SIGTERM, or a `POST /shutdown` to the balancer's runtime API, stops softly: the balancer
//! takes no new connection, the open ones may finish (up to the balancer's `stop_timeout`), then
//! the nodes get SIGTERM and stop as `mailfleet node` does; a second signal skips the wait.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use mailfleet_store::{NewAccount, Store, password};
use tokio_util::sync::CancellationToken;

#[derive(clap::Args)]
pub struct UpArgs {
    /// Data directory (store, blobs, logs).
    #[arg(long, default_value = "./mailfleet-data")]
    pub data: PathBuf,
    /// Added to every standard port, so no root is needed.
    #[arg(long, default_value_t = 10000)]
    pub port_offset: u16,
}

pub const DEMO_DOMAIN: &str = "example.test";
pub const DEMO_ACCOUNT: &str = "demo@example.test";

/// The mail services the balancer fronts: name, standard port, health check, how a refused
/// client is told (nothing on the TLS ports: a plain-text line would garble the handshake).
const SERVICES: [(&str, u16, &str, &str); 7] = [
    ("smtp", 25, "smtp", "smtp"),
    ("submission", 587, "smtp", "smtp"),
    ("smtps", 465, "tcp", "none"),
    ("pop3", 110, "pop3", "pop3"),
    ("pop3s", 995, "tcp", "none"),
    ("imap", 143, "imap", "imap"),
    ("imaps", 993, "tcp", "none"),
];

/// The balancer's runtime API: this port plus the offset, on 127.0.0.1.
pub const ADMIN_PORT: u16 = 8404;

/// How long the balancer lets open connections run at a soft stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a node has to stop after SIGTERM before it is killed.
const NODE_STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// One node of the local cluster.
struct NodeSpec {
    server_id: &'static str,
    addr: Ipv4Addr,
}

const NODES: [NodeSpec; 2] = [
    NodeSpec {
        server_id: "node1",
        addr: Ipv4Addr::new(127, 0, 0, 2),
    },
    NodeSpec {
        server_id: "node2",
        addr: Ipv4Addr::new(127, 0, 0, 3),
    },
];

/// Creates the demo domain and account, and makes the account postmaster, when the store has
/// no domain yet; returns the password.
async fn first_start(store: &dyn Store) -> anyhow::Result<Option<String>> {
    if !store.list_domains().await?.is_empty() {
        return Ok(None);
    }
    store.add_domain(DEMO_DOMAIN).await?;
    let pw = password::generate_password();
    store
        .create_account(&NewAccount {
            address: DEMO_ACCOUNT.into(),
            password_hash: password::hash_password(&pw)?,
            quota_bytes: 0,
            shard: "default".into(),
        })
        .await?;
    // Mail to postmaster (RFC 5321 §4.5.1) reaches someone from the first message on.
    store.set_setting("smtp.postmaster", DEMO_ACCOUNT).await?;
    Ok(Some(pw))
}

/// A TOML basic string holding `s`.
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn port(standard: u16, offset: u16) -> anyhow::Result<u16> {
    standard
        .checked_add(offset)
        .with_context(|| format!("--port-offset {offset} takes port {standard} past 65535"))
}

/// The node file of `node`: its own address and data directory, the shared store, blobs and
/// certificate, and the balancer (on 127.0.0.1) trusted to send PROXY headers.
fn node_file(
    node: &NodeSpec,
    store_url: &str,
    data: &Path,
    offset: u16,
    cert: &Path,
    key: &Path,
) -> String {
    let node_dir = data.join("nodes").join(node.server_id);
    let blobs = format!("fs:{}", data.join("blobs").display());
    format!(
        "# Written by `mailfleet up` at every start; edits are overwritten.\n\
         server_id = {id}\n\
         hostname = \"{id_plain}.localhost\"\n\
         store = {store}\n\
         data_dir = {dir}\n\
         blobs = {blobs}\n\
         blobs_inline_max = \"64K\"\n\
         bind = \"{addr}\"\n\
         port_offset = {offset}\n\
         trusted_proxies = [\"127.0.0.1\"]\n\
         \n\
         [[tls.certificates]]\n\
         cert = {cert}\n\
         key = {key}\n",
        id = toml_str(node.server_id),
        id_plain = node.server_id,
        store = toml_str(store_url),
        dir = toml_str(&node_dir.display().to_string()),
        blobs = toml_str(&blobs),
        addr = node.addr,
        cert = toml_str(&cert.display().to_string()),
        key = toml_str(&key.display().to_string()),
    )
}

/// The balancer file: one tcp service per mail port, least connections with source-IP
/// persistence (a client's sessions stay on one node, so its IMAP views agree), the protocol's
/// own health check every second, PROXY v2 so the nodes see the client's address, and client
/// data acknowledged at once (`quick_ack`: an APPEND literal or a message body written apart
/// from its end by a client with Nagle's algorithm on would wait for the delayed ACK).
fn balancer_file(offset: u16, data: &Path) -> anyhow::Result<String> {
    let max_connections = max_connections_per_service();
    let mut f = format!(
        "# Written by `mailfleet up` at every start; edits are overwritten.\n\
         stop_timeout = \"{}s\"\n\
         state_file = {}\n\
         \n\
         [admin]\n\
         listen = \"127.0.0.1:{}\"\n",
        STOP_TIMEOUT.as_secs(),
        toml_str(&data.join("balancer.state").display().to_string()),
        port(ADMIN_PORT, offset)?,
    );
    for (name, standard, check, reject) in SERVICES {
        let p = port(standard, offset)?;
        f.push_str(&format!(
            "\n[[service]]\n\
             name = \"{name}\"\n\
             listen = [\"127.0.0.1:{p}\"]\n\
             scheduler = \"leastconn\"\n\
             max_connections = {max_connections}\n\
             proxy_protocol = \"v2\"\n\
             reject = \"{reject}\"\n\
             quick_ack = true\n\
             persistence = {{ kind = \"source-ip\", timeout = \"30m\" }}\n\
             health = {{ check = \"{check}\", interval = \"1s\", rise = 2, fall = 2, timeout = \"2s\" }}\n"
        ));
        for node in &NODES {
            f.push_str(&format!(
                "\n[[service.server]]\nname = \"{}\"\naddress = \"{}:{p}\"\n",
                node.server_id, node.addr
            ));
        }
    }
    Ok(f)
}

/// Connections each service may hold so that all of them fit in the open-file hard limit the
/// balancer raises itself to (two descriptors per relayed connection, some to spare), at most
/// the balancer's default of 20,000.
fn max_connections_per_service() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit for getrlimit to fill.
    let hard = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_max
    } else {
        1024
    };
    let services = SERVICES.len() as u64;
    (hard.saturating_sub(256) / (2 * services)).clamp(16, 20_000)
}

/// Writes `text` to `path` through a temporary file, so a reader never sees half of it.
fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

enum NodeEvent {
    Exited(std::io::Result<std::process::ExitStatus>),
    RestartDue,
}

/// A node child process and what `up` knows of it.
struct Child {
    spec: &'static NodeSpec,
    config: PathBuf,
    process: Option<tokio::process::Child>,
    started: Instant,
    /// Pause before the next start; doubles while the node keeps dying young.
    backoff: Duration,
    restart_at: Option<tokio::time::Instant>,
}

impl Child {
    fn start(&mut self) -> anyhow::Result<()> {
        let exe = std::env::current_exe().context("cannot find the mailfleet binary")?;
        let mut cmd = tokio::process::Command::new(exe);
        cmd.arg("node")
            .arg("--config")
            .arg(&self.config)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            // Its own process group: a Ctrl-C at the terminal reaches `up` only, which stops
            // the balancer first and then the nodes.
            .process_group(0)
            .kill_on_drop(true);
        // SAFETY: the closure runs in the child between fork and exec and only calls prctl,
        // which is async-signal-safe. PR_SET_PDEATHSIG makes the node get SIGTERM if `up`
        // dies without stopping it (killed by SIGKILL), so no node outlives its supervisor.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let process = cmd
            .spawn()
            .with_context(|| format!("cannot start node {}", self.spec.server_id))?;
        tracing::info!(
            node = self.spec.server_id,
            pid = process.id(),
            "node started"
        );
        self.process = Some(process);
        self.started = Instant::now();
        self.restart_at = None;
        Ok(())
    }

    fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(|p| p.id())
    }

    /// Waits for what happens next to this node: its process exits, or its restart is due.
    async fn next_event(&mut self) -> NodeEvent {
        if let Some(p) = self.process.as_mut() {
            return NodeEvent::Exited(p.wait().await);
        }
        match self.restart_at {
            Some(at) => {
                tokio::time::sleep_until(at).await;
                NodeEvent::RestartDue
            }
            None => std::future::pending().await,
        }
    }

    /// Notes the exit and schedules the next start.
    fn exited_with(&mut self, status: std::io::Result<std::process::ExitStatus>) {
        self.process = None;
        // A node that ran a while gets restarted soon; one that keeps dying waits longer.
        if self.started.elapsed() > Duration::from_secs(30) {
            self.backoff = Duration::from_secs(1);
        } else {
            self.backoff = (self.backoff * 2).min(Duration::from_secs(30));
        }
        let how = match status {
            Ok(s) => s.to_string(),
            Err(e) => format!("cannot wait for it: {e}"),
        };
        tracing::warn!(
            node = self.spec.server_id,
            "node exited ({how}); starting it again in {}s, the balancer routes around it meanwhile",
            self.backoff.as_secs()
        );
        self.restart_at = Some(tokio::time::Instant::now() + self.backoff);
    }

    /// SIGTERM, then SIGKILL if the node has not stopped within `grace`.
    async fn stop(&mut self, grace: Duration) {
        let Some(mut p) = self.process.take() else {
            return;
        };
        if let Some(pid) = p.id().and_then(|id| i32::try_from(id).ok()) {
            // SAFETY: kill(2) on the pid of a child this process has not reaped yet.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        match tokio::time::timeout(grace, p.wait()).await {
            Ok(_) => {}
            Err(_) => {
                tracing::warn!(
                    node = self.spec.server_id,
                    "node did not stop within {}s of SIGTERM; killing it",
                    grace.as_secs()
                );
                let _ = p.kill().await;
            }
        }
    }
}

/// Waits until every mail port of `node` accepts a connection, or `deadline` passes.
async fn wait_listening(node: &NodeSpec, offset: u16, deadline: Instant) -> bool {
    for (_, standard, _, _) in SERVICES {
        let Ok(p) = port(standard, offset) else {
            return false;
        };
        let addr = SocketAddr::new(IpAddr::V4(node.addr), p);
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    true
}

/// The next SIGINT or SIGTERM.
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot watch SIGINT")?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            Some(()) = self.term.recv() => {}
            Some(()) = self.int.recv() => {}
            else => std::future::pending().await,
        }
    }
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    crate::node::init_stderr_logging();
    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("cannot create {}", args.data.display()))?;
    let data = args
        .data
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", args.data.display()))?;
    let offset = args.port_offset;
    let store_url = format!("sqlite:{}", data.join("mailfleet.db").display());
    // Creates or migrates the store before any node opens it.
    let created = {
        let store = mailfleet_store::open(&store_url).await?;
        first_start(store.as_ref()).await?
    };
    // One certificate for both nodes: a client sees the same one whichever node serves it.
    let (cert, key) = mailfleet_tls::self_signed(&data, "localhost")
        .context("cannot make the self-signed certificate")?;

    let mut children = Vec::new();
    for spec in &NODES {
        let dir = data.join("nodes").join(spec.server_id);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let config = data.join("nodes").join(format!("{}.toml", spec.server_id));
        write_file(
            &config,
            &node_file(spec, &store_url, &data, offset, &cert, &key),
        )?;
        children.push(Child {
            spec,
            config,
            process: None,
            started: Instant::now(),
            backoff: Duration::from_secs(1),
            restart_at: None,
        });
    }
    let balancer_path = data.join("balancer.toml");
    write_file(&balancer_path, &balancer_file(offset, &data)?)?;

    let mut signals = StopSignals::new()?;
    for c in &mut children {
        c.start()?;
    }
    let ready_by = Instant::now() + Duration::from_secs(60);
    for spec in &NODES {
        if !wait_listening(spec, offset, ready_by).await {
            for c in &mut children {
                c.stop(Duration::from_secs(5)).await;
            }
            anyhow::bail!(
                "node {} did not open its ports within 60 s; its log is in {}",
                spec.server_id,
                data.join("nodes")
                    .join(spec.server_id)
                    .join("logs")
                    .display()
            );
        }
    }
    let shutdown = CancellationToken::new();
    let balancer =
        match mailfleet_balancer::Balancer::start_file(balancer_path.clone(), shutdown.clone())
            .await
        {
            Ok(b) => b,
            Err(e) => {
                for c in &mut children {
                    c.stop(Duration::from_secs(5)).await;
                }
                return Err(e).context("cannot start the balancer");
            }
        };

    println!("mailfleet is up (Ctrl-C stops it)");
    println!("  store:  {store_url}");
    println!("  data:   {}", data.display());
    println!("  balancer on 127.0.0.1, PROXY v2 to the nodes:");
    for (name, standard, _, _) in SERVICES {
        let p = port(standard, offset)?;
        let behind: Vec<String> = NODES.iter().map(|n| format!("{}:{p}", n.addr)).collect();
        println!("  {name:<11} 127.0.0.1:{p} -> {}", behind.join(", "));
    }
    for c in &children {
        println!(
            "  node {} on {} pid {} (config {})",
            c.spec.server_id,
            c.spec.addr,
            c.pid().map_or_else(|| "-".to_string(), |p| p.to_string()),
            c.config.display()
        );
    }
    println!(
        "  balancer API: http://127.0.0.1:{}/stats (mailfleet balancer ctl --api URL status)",
        port(ADMIN_PORT, offset)?
    );
    match created {
        Some(pw) => {
            println!("  account {DEMO_ACCOUNT} password {pw}");
            println!(
                "  (shown once; change it with: mailfleet account set {DEMO_ACCOUNT} --password-stdin --store {store_url})"
            );
        }
        None => println!("  existing store: accounts kept"),
    }
    println!(
        "  admin:  export MAILFLEET_STORE={store_url}; mailfleet status; mailfleet account list"
    );

    // Supervise until the first stop signal, or a `POST /shutdown` to the balancer's API
    // (which cancels `shutdown`).
    loop {
        let [a, b] = &mut children[..] else {
            anyhow::bail!("up runs exactly two nodes");
        };
        let (child, event) = tokio::select! {
            _ = signals.next() => break,
            _ = shutdown.cancelled() => {
                println!("soft stop asked through the balancer's runtime API");
                break;
            }
            e = a.next_event() => (0, e),
            e = b.next_event() => (1, e),
        };
        let child = &mut children[child];
        match event {
            NodeEvent::Exited(status) => child.exited_with(status),
            NodeEvent::RestartDue => child.start()?,
        }
    }

    println!(
        "stopping: no new connections; open ones may finish (up to {}s)",
        STOP_TIMEOUT.as_secs()
    );
    shutdown.cancel();
    let hurry = tokio::select! {
        _ = balancer.wait() => false,
        _ = tokio::time::sleep(STOP_TIMEOUT) => false,
        _ = signals.next() => true,
    };
    let grace = if hurry {
        Duration::from_secs(2)
    } else {
        NODE_STOP_TIMEOUT
    };
    if let [a, b] = &mut children[..] {
        tokio::join!(a.stop(grace), b.stop(grace));
    }
    println!("mailfleet stopped");
    Ok(())
}
