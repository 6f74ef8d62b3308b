//! `mailfleet node --config FILE`: one node with every listener it has, until SIGINT/SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use mailfleet_cluster::membership::{HEARTBEAT_EVERY, load_average};
use mailfleet_cluster::watchdog::{Watchdog, disk_report};
use mailfleet_cluster::{
    Heartbeat, LiveSettings, MasterJobs, MasterLease, NodeLifecycle, NodeReport, ServiceReport,
};
use mailfleet_config::NodeConfig;
use mailfleet_store::{BlobStore, NodeInfo, Store};
use tokio_util::sync::CancellationToken;

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct NodeArgs {
    /// The node's TOML configuration file.
    #[arg(long, required = true)]
    pub config: Option<PathBuf>,
    /// Act on a running node instead of running one.
    #[command(subcommand)]
    pub admin: Option<crate::cmd::node_admin::NodeSub>,
}

pub use crate::logging::{init_node_logging, init_stderr_logging};

/// Cancels `token` on SIGINT (Ctrl-C) or SIGTERM.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("cannot watch SIGTERM: {e}");
                    let _ = tokio::signal::ctrl_c().await;
                    token.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("stopping");
        token.cancel();
    });
}

/// Opens the store. With a `backup_store`, calls go to the primary while it can be reached and
/// to the backup while it cannot, switching at run time both ways
/// ([`mailfleet_store::FailoverStore`]).
pub async fn open_store(config: &NodeConfig) -> anyhow::Result<Arc<dyn Store>> {
    match &config.backup_store {
        Some(backup) => Ok(mailfleet_store::FailoverStore::open(
            &config.store,
            backup,
            mailfleet_store::FailoverTiming::default(),
        )
        .await?),
        None => Ok(mailfleet_store::open(&config.store).await?),
    }
}

/// What a running node exposes to whoever started it.
pub struct RunningNode {
    pub listeners: Vec<(&'static str, std::net::SocketAddr)>,
    pub(crate) tasks: Vec<tokio::task::JoinHandle<()>>,
    /// What a drain acts on (`node_drain`).
    pub(crate) drain: crate::node_drain::DrainHandles,
}

impl RunningNode {
    /// Waits for the node's background tasks after shutdown was requested.
    pub async fn stopped(mut self) {
        self.drain.queue_stopped().await;
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }

    /// Runs until `shutdown` is cancelled (then stops) or a drain is requested for this node
    /// (then drains: see `node_drain`); returns once the node has stopped.
    pub async fn run_until_stopped_or_drained(
        self,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let lifecycle = self.drain.lifecycle.clone();
        tokio::select! {
            _ = shutdown.cancelled() => {
                self.stopped().await;
                Ok(())
            }
            request = lifecycle.drain_requested() => {
                crate::node_drain::drain(self, request, shutdown).await
            }
        }
    }
}

/// Starts every service of one node; they stop when `shutdown` is cancelled.
pub async fn start_node(
    config: Arc<NodeConfig>,
    store: Arc<dyn Store>,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningNode> {
    std::fs::create_dir_all(config.temp_dir())
        .with_context(|| format!("cannot create {}", config.temp_dir().display()))?;
    let blobs: Arc<dyn BlobStore> = mailfleet_store::open_node_blobs(
        &config.blobs_spec(),
        store.clone(),
        &config.server_id,
        config.blobs_inline_max(),
    )?;
    let settings = LiveSettings::start(store.clone(), Duration::from_secs(1), shutdown.clone())
        .await
        .context("cannot read cluster settings")?;

    // One authenticator per node: its password-check pool and login cache serve every protocol.
    let auth = Arc::new(mailfleet_auth::Authenticator::new(store.clone()));
    // The listeners close when `intake.accepting` is cancelled (a drain, or the stop); the
    // sessions they opened go on until `shutdown`.
    let intake = mailfleet_listener::Intake::until(&shutdown);
    let mut listeners = mailfleet_smtp::SmtpServer::start_with(
        mailfleet_smtp::SmtpContext {
            config: config.clone(),
            auth: auth.clone(),
            store: store.clone(),
            blobs: blobs.clone(),
            settings: settings.clone(),
        },
        intake.clone(),
        shutdown.clone(),
    )
    .await?;
    listeners.extend(
        mailfleet_pop3::Pop3Server::start_with(
            mailfleet_pop3::Pop3Context {
                config: config.clone(),
                auth: auth.clone(),
                store: store.clone(),
                blobs: blobs.clone(),
                settings: settings.clone(),
            },
            intake.clone(),
            shutdown.clone(),
        )
        .await?,
    );
    listeners.extend(
        mailfleet_imap::ImapServer::start_with(
            mailfleet_imap::ImapContext {
                config: config.clone(),
                auth: auth.clone(),
                store: store.clone(),
                blobs: blobs.clone(),
                settings: settings.clone(),
            },
            intake.clone(),
            shutdown.clone(),
        )
        .await?,
    );
    // The queue claims items until `queue_claiming` (a drain, or the stop); its deliveries
    // under way run on until `queue_cut_off` (a drain's deadline, or 10 s into the stop).
    let queue_claiming = shutdown.child_token();
    let queue_cut_off = CancellationToken::new();
    {
        let (stop, cut) = (shutdown.clone(), queue_cut_off.clone());
        tokio::spawn(async move {
            stop.cancelled().await;
            tokio::time::sleep(Duration::from_secs(10)).await;
            cut.cancel();
        });
    }
    let queue_context = mailfleet_queue::QueueContext {
        config: config.clone(),
        store: store.clone(),
        blobs: blobs.clone(),
        settings: settings.clone(),
        held: Default::default(),
    };
    let queue = mailfleet_queue::QueueWorker::spawn_stopping(
        queue_context.clone(),
        queue_claiming.clone(),
        queue_cut_off.clone(),
    );
    let mut tasks = Vec::new();

    let started = mailfleet_store::now();
    let node_info = NodeInfo {
        server_id: config.server_id.clone(),
        hostname: config.hostname.clone(),
        info: serde_json::Value::Null,
        started,
        last_seen: started,
    };
    if config.advertise.is_none() && listeners.iter().any(|(_, a)| a.ip().is_unspecified()) {
        tracing::warn!(
            "the node listens on every address and `advertise` is not set: balancers with \
             servers = \"cluster\" and the watchdog cannot tell where to reach it"
        );
    }
    let lifecycle = NodeLifecycle::default();
    tasks.push(Heartbeat::spawn_for_node(
        store.clone(),
        node_info.clone(),
        lifecycle.clone(),
        HEARTBEAT_EVERY,
        shutdown.clone(),
        describe_node(
            listeners
                .iter()
                .map(|(name, addr)| (*name, *addr, config.advertised(*addr)))
                .collect(),
            queue_context.held.clone(),
            store.clone(),
            settings.clone(),
            config.data_dir.clone(),
        ),
    ));
    let master = if config.master {
        MasterLease::spawn(store.clone(), config.server_id.clone(), shutdown.clone())
    } else {
        tracing::info!("master = false: this node never becomes master");
        MasterLease::never(config.server_id.clone())
    };
    let watchdog = Watchdog::new(
        store.clone(),
        blobs.clone(),
        settings.clone(),
        config.server_id.clone(),
        config.hostname.clone(),
    );
    tasks.push(watchdog.spawn_lease_watch(master.clone(), shutdown.clone()));
    tasks.extend(
        master_jobs(store.clone(), blobs, settings, &watchdog, queue_context)
            .spawn(master, shutdown),
    );
    Ok(RunningNode {
        listeners,
        tasks,
        drain: crate::node_drain::DrainHandles {
            store,
            node_info,
            lifecycle,
            intake,
            queue_claiming,
            queue_cut_off,
            queue: Some(queue),
        },
    })
}

/// What the node's heartbeat says of it, made afresh for each beat: its services with their
/// open connections, the queue items it holds, the load, the settings version it applied, and
/// its data directory's disk. `listeners` are (service, bound address, address others reach it
/// at); `queue_held` is the queue worker's count of the items it holds; `store` tells which
/// of its stores a node with a `backup_store` uses.
fn describe_node(
    listeners: Vec<(&'static str, std::net::SocketAddr, std::net::SocketAddr)>,
    queue_held: Arc<std::sync::atomic::AtomicUsize>,
    store: Arc<dyn Store>,
    settings: LiveSettings,
    data_dir: std::path::PathBuf,
) -> impl FnMut() -> std::pin::Pin<Box<dyn std::future::Future<Output = serde_json::Value> + Send>>
+ Send
+ 'static {
    let mut addresses: Vec<String> = Vec::new();
    for (_, _, addr) in &listeners {
        let ip = addr.ip().to_string();
        if !addresses.contains(&ip) {
            addresses.push(ip);
        }
    }
    let clock = Arc::new(ClockWatch::default());
    move || {
        let mut report = NodeReport {
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            addresses: addresses.clone(),
            services: listeners
                .iter()
                .map(|(name, bound, reached)| ServiceReport {
                    service: (*name).into(),
                    address: reached.to_string(),
                    connections: mailfleet_listener::open_connections(*bound).unwrap_or(0),
                })
                .collect(),
            queue_held: i64::try_from(queue_held.load(std::sync::atomic::Ordering::Relaxed))
                .unwrap_or(i64::MAX),
            load: load_average(),
            settings_version: settings.current().version,
            store: store.active_store().map(str::to_string),
            clock_skew_ms: None,
        };
        // The data directory's filesystem, for the master's watchdog.
        let disk = disk_report(&data_dir);
        let (store, clock) = (store.clone(), clock.clone());
        Box::pin(async move {
            report.clock_skew_ms = clock.skew(store.as_ref()).await;
            let mut info = report.to_info();
            if let (Some(disk), Some(map)) = (disk, info.as_object_mut()) {
                map.insert(
                    "disk".into(),
                    serde_json::to_value(disk).unwrap_or(serde_json::Value::Null),
                );
            }
            info
        })
    }
}

/// The node's clock against the database server's, measured every 10 s for the heartbeat;
/// a difference past what the leases tolerate is logged (at most every 10 minutes).
#[derive(Default)]
struct ClockWatch {
    /// (last skew measured, when, when last warned of)
    state: std::sync::Mutex<(
        Option<i64>,
        Option<std::time::Instant>,
        Option<std::time::Instant>,
    )>,
}

impl ClockWatch {
    const MEASURE_EVERY: Duration = Duration::from_secs(10);
    const WARN_EVERY: Duration = Duration::from_secs(600);

    async fn skew(&self, store: &dyn Store) -> Option<i64> {
        {
            let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if s.1.is_some_and(|at| at.elapsed() < Self::MEASURE_EVERY) {
                return s.0;
            }
        }
        let skew = mailfleet_cluster::membership::measure_clock_skew(store).await;
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.0 = skew;
        s.1 = Some(std::time::Instant::now());
        if let Some(ms) = skew
            && ms.abs() > mailfleet_cluster::membership::MAX_CLOCK_SKEW_MS
            && s.2.is_none_or(|at| at.elapsed() >= Self::WARN_EVERY)
        {
            s.2 = Some(std::time::Instant::now());
            tracing::warn!(
                "this machine's clock is {:+.1} s from the database server's: the master lease \
                 needs nodes' clocks within 1 s of each other (run NTP)",
                -(ms as f64) / 1000.0
            );
        }
        skew
    }
}

/// The cluster-wide duties only the master runs (see `mailfleet_cluster::master`).
fn master_jobs(
    store: Arc<dyn Store>,
    blobs: Arc<dyn BlobStore>,
    settings: LiveSettings,
    watchdog: &Arc<Watchdog>,
    queue: mailfleet_queue::QueueContext,
) -> MasterJobs {
    use mailfleet_cluster::master;
    const HOUR: Duration = Duration::from_secs(3600);
    const TEN_MINUTES: Duration = Duration::from_secs(600);
    let mut jobs = MasterJobs::new();
    jobs.add(
        "blob-gc",
        HOUR,
        master::blob_gc(store.clone(), blobs.clone(), 3600),
    )
    .add(
        "stale-leases",
        HOUR,
        master::stale_leases(store.clone(), 3600),
    )
    .add(
        "tombstone-purge",
        HOUR,
        master::tombstone_purge(
            store.clone(),
            settings.clone(),
            mailfleet_imap::settings::tombstone_days,
        ),
    )
    // Looks every second; runs a round every `watchdog.interval` (a live setting).
    .add(
        "watchdog",
        mailfleet_cluster::watchdog::LOOK_EVERY,
        watchdog.job(),
    )
    .add(
        "text-index",
        Duration::from_secs(60),
        master::text_index(store.clone(), blobs.clone(), Default::default()),
    )
    .add(
        "queue-lifetime-sweep",
        TEN_MINUTES,
        mailfleet_queue::sweep::lifetime_sweep(queue),
    );
    // Looks each second whether a backup is due by the `backup.*` settings.
    jobs.add(
        "backup",
        Duration::from_secs(1),
        mailfleet_cluster::backup::scheduled_backup(store, blobs, settings),
    );
    jobs
}

pub async fn run(args: NodeArgs) -> anyhow::Result<()> {
    if let Some(sub) = args.admin {
        return crate::cmd::node_admin::run(sub).await;
    }
    let Some(path) = args.config else {
        anyhow::bail!("mailfleet node needs --config FILE");
    };
    let config = Arc::new(NodeConfig::load(&path)?);
    let _guard = init_node_logging(&config)?;
    let store = open_store(&config).await?;
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let node = start_node(config.clone(), store, shutdown.clone()).await?;
    for (service, addr) in &node.listeners {
        tracing::info!("{service} on {addr}");
    }
    tracing::info!(server_id = %config.server_id, "node running");
    node.run_until_stopped_or_drained(shutdown).await
}
