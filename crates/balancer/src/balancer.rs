//! The running balancer: its snapshot, the control state behind it, and configuration changes.
//!
//! Readers (connections) only ever `load()` the snapshot. Writers (reload, the runtime API,
//! health flips, the slow-start ticker) take the control mutex, change the long-lived state, and
//! build and store a new snapshot. A reload binds every new listener before it changes anything,
//! so a file that cannot be applied leaves the old configuration running untouched.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::now_ms;
use crate::config::{Config, ServiceConfig};
use crate::error::BalancerError;
use crate::health::{self, CheckPlan};
use crate::runtime_state::RuntimeState;
use crate::server::{AdminState, ServerRt, ServiceShared};
use crate::snapshot::{ServiceSnap, Snapshot};

mod members;
mod runtime_admin;

/// A running balancer. Cloning gives another handle to the same one.
#[derive(Clone)]
pub struct Balancer {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub snap: ArcSwap<Snapshot>,
    ctl: Mutex<Ctl>,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
    path: Option<PathBuf>,
    /// This member of a balancer pair, when the configuration has `[pair]`.
    pair: Mutex<Option<mailfleet_ha::PairHandle>>,
    /// The latest addresses of server host names (`resolve`), for servers a reload adds.
    resolved: Mutex<HashMap<String, Vec<std::net::IpAddr>>>,
    /// Held while the state file is captured and written, so writes land in order.
    state_lock: Mutex<()>,
    /// The servers of `servers = "cluster"` services, from the membership (`cluster`).
    cluster: Mutex<ClusterServers>,
}

/// One cluster node serving a `servers = "cluster"` service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClusterMember {
    /// The node's server ID.
    pub name: String,
    pub addr: SocketAddr,
    pub draining: bool,
}

#[derive(Default)]
struct ClusterServers {
    /// Service name → its members, as last read.
    members: HashMap<String, Vec<ClusterMember>>,
    /// The services whose membership is in force: a member added after that ramps up (slow
    /// start); the first reading's members do not.
    applied: std::collections::HashSet<String>,
}

type ServerKey = (String, String);

/// A service as configured, its long-lived state, its servers and its bound addresses.
pub(crate) type ServiceView = (
    Arc<ServiceConfig>,
    Arc<ServiceShared>,
    Vec<Arc<ServerRt>>,
    Vec<SocketAddr>,
);

struct Ctl {
    config: Config,
    servers: HashMap<ServerKey, Arc<ServerRt>>,
    services: HashMap<String, Arc<ServiceShared>>,
    /// Configured address → (token, bound address).
    listeners: HashMap<SocketAddr, (CancellationToken, SocketAddr)>,
    health: HashMap<ServerKey, (CancellationToken, CheckPlan)>,
    admin: Option<(SocketAddr, CancellationToken, SocketAddr)>,
    /// Where drain, maint and weight set at runtime are kept (None: nowhere).
    state_path: Option<PathBuf>,
}

/// A listener bound ahead of a configuration change.
struct Bound {
    configured: SocketAddr,
    listener: TcpListener,
}

/// Binds a listener the way every balancer listener is bound: address reuse, IP_FREEBIND so a
/// passive balancer can listen on a virtual address it does not hold yet, and TCP_NODELAY, which
/// Linux passes on to every accepted connection (one system call less per client).
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_nodelay(true)?;
    #[cfg(target_os = "linux")]
    {
        if addr.is_ipv4() {
            s.set_freebind(true)?;
        } else {
            s.set_freebind_ipv6(true)?;
        }
    }
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(4096)?;
    TcpListener::from_std(s.into())
}

impl Balancer {
    /// Starts a balancer from a checked configuration (no file: `reload` is refused).
    pub async fn start(
        config: Config,
        shutdown: CancellationToken,
    ) -> Result<Balancer, BalancerError> {
        Self::start_inner(config, None, shutdown).await
    }

    /// Starts a balancer from a file; `reload` and SIGHUP read it again.
    pub async fn start_file(
        path: PathBuf,
        shutdown: CancellationToken,
    ) -> Result<Balancer, BalancerError> {
        let config = Config::load(&path)?;
        Self::start_inner(config, Some(path), shutdown).await
    }

    async fn start_inner(
        config: Config,
        path: Option<PathBuf>,
        shutdown: CancellationToken,
    ) -> Result<Balancer, BalancerError> {
        let inner = Arc::new(Inner {
            snap: ArcSwap::from_pointee(Snapshot::default()),
            ctl: Mutex::new(Ctl {
                config: config.clone(),
                servers: HashMap::new(),
                services: HashMap::new(),
                listeners: HashMap::new(),
                health: HashMap::new(),
                admin: None,
                state_path: None,
            }),
            shutdown,
            tracker: TaskTracker::new(),
            path,
            pair: Mutex::new(None),
            resolved: Mutex::new(HashMap::new()),
            state_lock: Mutex::new(()),
            cluster: Mutex::new(ClusterServers::default()),
        });
        // Host names resolve before anything starts: one that does not is an error naming it.
        for (name, ip) in crate::resolve::resolve_all(&config).await? {
            inner.remember_resolution(&name, &[ip]);
        }
        let cluster = match &config.cluster {
            Some(c) => Some((c.clone(), crate::cluster::open(c).await?)),
            None => None,
        };
        inner.apply(config, true)?;
        crate::resolve::spawn(&inner, inner.shutdown.clone());
        if let Some((cluster, link)) = cluster {
            crate::cluster::spawn(&inner, cluster, link, inner.shutdown.clone());
        }
        crate::pair::start(&inner).await?;
        let b = Balancer { inner };
        b.spawn_background();
        Ok(b)
    }

    fn spawn_background(&self) {
        // Slow start: rebuild while any server ramps. Persistence: sweep expired entries.
        let weak = Arc::downgrade(&self.inner);
        let token = self.inner.shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            let mut sweep_at = 0u64;
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let Some(inner) = weak.upgrade() else { return };
                let now = now_ms();
                let snap = inner.snap.load();
                let ramping = snap.services.iter().any(|s| {
                    s.cands.iter().any(|c| c.ramp < 1000)
                        || (!s.cfg.slow_start.is_zero()
                            && s.servers.iter().any(|srv| {
                                srv.ramp_permille(s.cfg.slow_start.as_millis() as u64, now) < 1000
                            }))
                });
                if ramping {
                    inner.rebuild();
                }
                if now >= sweep_at {
                    for s in &snap.services {
                        s.shared
                            .persist
                            .sweep(now, s.cfg.persistence_timeout.as_millis() as u64);
                    }
                    sweep_at = now + 5_000;
                }
            }
        });
    }

    /// The addresses a service listens on, as bound (port 0 in the file becomes a real port).
    pub fn listen_addrs(&self, service: &str) -> Vec<SocketAddr> {
        let ctl = self.inner.lock();
        let Some(svc) = ctl.config.services.iter().find(|s| s.name == service) else {
            return Vec::new();
        };
        svc.listen
            .iter()
            .filter_map(|a| ctl.listeners.get(a).map(|l| l.1))
            .collect()
    }

    /// The runtime API's address, as bound.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.inner.lock().admin.as_ref().map(|a| a.2)
    }

    /// Reads the file again and applies it; on error the running configuration stays.
    pub fn reload(&self) -> Result<(), BalancerError> {
        self.inner.reload()
    }

    /// Applies a configuration given as text (as if it were the file's new content).
    pub fn apply_text(&self, text: &str) -> Result<(), BalancerError> {
        let file = self.inner.file_name();
        let config = Config::parse(text, &file)?;
        self.inner.apply(config, false)
    }

    /// The configuration text in force.
    pub fn config_text(&self) -> String {
        self.inner.config_text()
    }

    /// This balancer's role in its pair, when it has one.
    pub fn pair_role(&self) -> Option<mailfleet_ha::Role> {
        self.inner.pair_role()
    }

    /// After shutdown: waits until the pair member has stopped (it releases the virtual IP
    /// and tells its peer on the way out). At once without a pair.
    pub async fn pair_stopped(&self) {
        let handle = self
            .inner
            .pair
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(h) = handle {
            h.stopped().await;
        }
    }

    /// Sets a server's administrative state (`drain`, `maint`, `ready`).
    pub fn set_admin(
        &self,
        service: &str,
        server: &str,
        state: AdminState,
    ) -> Result<(), BalancerError> {
        self.inner.set_admin(service, server, state)
    }

    /// Sets a server's weight until the file's weight for it changes.
    pub fn set_weight(
        &self,
        service: &str,
        server: &str,
        weight: u32,
    ) -> Result<(), BalancerError> {
        self.inner.set_weight(service, server, weight)
    }

    /// Starts a soft stop, as SIGTERM does: listeners close, open connections go on.
    pub fn stop(&self) {
        self.inner.shutdown.cancel();
    }

    /// How long a soft stop waits for open connections (`stop_timeout`).
    pub fn stop_timeout(&self) -> Duration {
        self.inner.lock().config.stop_timeout
    }

    /// Client connections open now.
    pub fn open_connections(&self) -> usize {
        self.inner.tracker.len()
    }

    /// The state file in use, if any.
    pub fn state_file(&self) -> Option<PathBuf> {
        self.inner.lock().state_path.clone()
    }

    /// The statistics `/stats` shows.
    pub fn stats(&self) -> crate::stats::Stats {
        crate::stats::collect(&self.inner)
    }

    /// Waits until the shutdown token is cancelled and every connection has ended.
    pub async fn wait(&self) {
        self.inner.shutdown.cancelled().await;
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Ctl> {
        self.ctl.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn file_name(&self) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            None => self.lock().config.file.clone(),
        }
    }

    pub fn reload(self: &Arc<Self>) -> Result<(), BalancerError> {
        let Some(path) = &self.path else {
            return Err(BalancerError::Api(
                "this balancer was not started from a file".into(),
            ));
        };
        let config = Config::load(path)?;
        self.apply(config, false)?;
        tracing::info!(file = %path.display(), "configuration reloaded");
        Ok(())
    }

    /// Applies `config`: binds new listeners first (any failure changes nothing), then swaps
    /// servers, services, snapshot, listeners and health checks.
    pub fn apply(self: &Arc<Self>, config: Config, initial: bool) -> Result<(), BalancerError> {
        // At start the open-file limit is raised to the hard limit; an explicit
        // max_connections must fit in it (`limits`).
        let nofile = if initial {
            crate::limits::raise_nofile()?
        } else {
            crate::limits::current_nofile()?
        };
        let config = crate::limits::fit(config, nofile)?;
        let (config, ramping_services) = self.with_cluster_servers(config);
        let mut ctl = self.lock();

        // 1. Everything that can fail.
        let mut bound = Vec::new();
        for (i, svc) in config.services.iter().enumerate() {
            for (j, addr) in svc.listen.iter().enumerate() {
                if ctl.listeners.contains_key(addr) {
                    continue;
                }
                let listener = bind(*addr)
                    .and_then(|l| crate::keepalive::set(&l, svc.tcp_keepalive).map(|()| l))
                    .map_err(|error| BalancerError::Bind {
                        key: format!("{}: service[{i}].listen[{j}]", config.file),
                        addr: *addr,
                        error,
                    })?;
                bound.push(Bound {
                    configured: *addr,
                    listener,
                });
            }
        }
        let state_path =
            crate::runtime_state::resolve(config.state_file.as_deref(), self.path.as_deref());
        let saved = match &state_path {
            Some(p) => RuntimeState::load(p).map_err(|e| BalancerError::State(e.to_string()))?,
            None => None,
        };
        let new_admin = match &config.admin {
            Some(a) if ctl.admin.as_ref().map(|x| x.0) != Some(a.listen) => {
                let l = bind(a.listen).map_err(|error| BalancerError::Bind {
                    key: format!("{}: admin.listen", config.file),
                    addr: a.listen,
                    error,
                })?;
                Some(l)
            }
            _ => None,
        };

        // 2. Long-lived state: reuse servers whose address is unchanged, services by name.
        let mut servers = HashMap::new();
        let mut services = HashMap::new();
        for svc in &config.services {
            let shared = ctl.services.get(&svc.name).cloned().unwrap_or_default();
            services.insert(svc.name.clone(), shared);
            for s in &svc.servers {
                let key = (svc.name.clone(), s.name.clone());
                let rt = match ctl.servers.get(&key) {
                    Some(old) if old.host == s.host && old.port == s.port => {
                        old.set_configured_weight(s.weight);
                        old.clone()
                    }
                    _ => {
                        let rt = Arc::new(ServerRt::with_host(
                            &svc.name,
                            &s.name,
                            s.host.clone(),
                            self.resolution(&s.host),
                            s.port,
                            s.weight,
                        ));
                        let ramps =
                            svc.cluster_service.is_none() || ramping_services.contains(&svc.name);
                        if !initial && ramps && !svc.slow_start.is_zero() {
                            rt.start_ramp();
                        }
                        rt
                    }
                };
                // A server without health checks is up; one whose checks were removed too.
                if svc.health.is_none() {
                    rt.set_up(true);
                }
                servers.insert(key, rt);
            }
        }
        // tcp_keepalive is set on a listener when it opens (its connections inherit it).
        for svc in &config.services {
            for addr in svc.listen.iter().filter(|a| ctl.listeners.contains_key(a)) {
                let before = ctl
                    .config
                    .services
                    .iter()
                    .find(|o| o.listen.contains(addr))
                    .map(|o| o.tcp_keepalive);
                if before.is_some_and(|b| b != svc.tcp_keepalive) {
                    tracing::warn!(service = %svc.name, listen = %addr,
                        "the tcp_keepalive change applies to this listener's clients after a restart (servers get it at once)");
                }
            }
        }
        if !initial && format!("{:?}", ctl.config.pair) != format!("{:?}", config.pair) {
            tracing::warn!("[pair] changes take effect when the balancer restarts");
        }
        if !initial && ctl.config.cluster != config.cluster {
            tracing::warn!("[cluster] changes take effect when the balancer restarts");
        }
        self.mark_cluster_draining(&config, &servers);
        if let (Some(saved), Some(p)) = (&saved, &state_path) {
            saved.apply(&servers, false, &p.display().to_string());
        }
        ctl.servers = servers;
        ctl.services = services;
        ctl.config = config;
        ctl.state_path = state_path;
        let snap = build_snapshot(&ctl);
        self.snap.store(Arc::new(snap));

        // 3. Listeners.
        let wanted: Vec<SocketAddr> = ctl
            .config
            .services
            .iter()
            .flat_map(|s| s.listen.iter().copied())
            .collect();
        ctl.listeners.retain(|addr, (token, _)| {
            let keep = wanted.contains(addr);
            if !keep {
                token.cancel();
            }
            keep
        });
        for b in bound {
            let token = self.shutdown.child_token();
            let local = b.listener.local_addr().unwrap_or(b.configured);
            ctl.listeners.insert(b.configured, (token.clone(), local));
            tracing::info!(listen = %local, "listening");
            crate::proxy::spawn_accept_loop(self.clone(), b.listener, b.configured, token);
        }
        let admin_cfg = ctl.config.admin.clone();
        match (&admin_cfg, new_admin) {
            (Some(a), Some(l)) => {
                if let Some(old) = ctl.admin.take() {
                    old.1.cancel();
                }
                let token = self.shutdown.child_token();
                let local = l.local_addr().unwrap_or(a.listen);
                ctl.admin = Some((a.listen, token.clone(), local));
                crate::admin::spawn(self.clone(), l, token);
            }
            (None, _) => {
                if let Some(old) = ctl.admin.take() {
                    old.1.cancel();
                }
            }
            _ => {}
        }

        // 4. Health checks: keep the ones whose plan is unchanged.
        let mut plans = HashMap::new();
        for svc in &ctl.config.services {
            let Some(h) = &svc.health else { continue };
            let pre = health::preamble(svc.proxy_protocol);
            for s in &svc.servers {
                let port = h
                    .port
                    .or(s.port)
                    .or(svc.listen.first().map(|a| a.port()))
                    .unwrap_or(0);
                let key = (svc.name.clone(), s.name.clone());
                let Some(server) = ctl.servers.get(&key).cloned() else {
                    continue;
                };
                let plan = CheckPlan {
                    cfg: h.clone(),
                    server,
                    port,
                    preamble: pre.clone(),
                };
                plans.insert(key, plan);
            }
        }
        let old = std::mem::take(&mut ctl.health);
        for (key, (token, plan)) in old {
            if plans.get(&key) == Some(&plan) && ctl.servers.contains_key(&key) {
                ctl.health.insert(key, (token, plan));
            } else {
                token.cancel();
            }
        }
        for (key, plan) in plans {
            if ctl.health.contains_key(&key) {
                continue;
            }
            let token = self.shutdown.child_token();
            let weak = Arc::downgrade(self);
            ctl.health.insert(key, (token.clone(), plan.clone()));
            tokio::spawn(health::run_loop(plan, token, move || {
                if let Some(inner) = weak.upgrade() {
                    inner.rebuild();
                }
            }));
        }
        Ok(())
    }

    /// Applies a configuration replicated from the active pair member: written to the file
    /// first (when there is one), so a restart keeps it.
    pub fn apply_replicated(self: &Arc<Self>, text: &str) -> Result<(), BalancerError> {
        let file = self.file_name();
        // Never write a file that the next start or reload would refuse to read.
        let limit = mailfleet_config::MAX_CONFIG_BYTES;
        if text.len() as u64 > limit {
            return Err(BalancerError::Read {
                file,
                problem: mailfleet_config::FileProblem::TooLarge {
                    size: Some(text.len() as u64),
                    limit,
                },
            });
        }
        let config = Config::parse(text, &file)?;
        if let Some(path) = &self.path {
            // Whole or not at all, and on disk before it replaces the file: a crash must not
            // leave an empty configuration behind.
            let tmp = path.with_extension("replicated.tmp");
            {
                use std::io::Write;
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(text.as_bytes())?;
                f.sync_all()?;
            }
            std::fs::rename(&tmp, path)?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
                && let Ok(d) = std::fs::File::open(dir)
            {
                let _ = d.sync_all();
            }
        }
        self.apply(config, false)
    }

    pub fn config_text(&self) -> String {
        self.lock().config.text.clone()
    }

    pub fn pair_section(&self) -> Option<mailfleet_ha::PairSection> {
        self.lock().config.pair.clone()
    }

    pub fn set_pair(&self, h: mailfleet_ha::PairHandle) {
        *self.pair.lock().unwrap_or_else(|p| p.into_inner()) = Some(h);
    }

    pub fn pair_role(&self) -> Option<mailfleet_ha::Role> {
        self.pair
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|h| h.role())
    }

    /// Keeps the latest addresses of a host name, for servers a reload adds.
    pub fn remember_resolution(&self, name: &str, ips: &[std::net::IpAddr]) {
        let mut r = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
        r.insert(name.to_string(), ips.to_vec());
    }

    /// Where a new server at `host` goes: its IP, or the host name's latest resolution (None
    /// until the resolver task first resolves it).
    fn resolution(&self, host: &crate::config::ServerHost) -> Option<std::net::IpAddr> {
        match host {
            crate::config::ServerHost::Ip(ip) => Some(*ip),
            crate::config::ServerHost::Name(n) => self
                .resolved
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(n)
                .and_then(|ips| ips.first().copied()),
        }
    }

    /// Builds and stores a new snapshot from the current state.
    pub fn rebuild(&self) {
        let ctl = self.lock();
        let snap = build_snapshot(&ctl);
        self.snap.store(Arc::new(snap));
    }

    /// The services in force with their servers (for statistics and replication).
    pub fn view(&self) -> (Config, Vec<ServiceView>) {
        let ctl = self.lock();
        let mut out = Vec::new();
        for svc in &ctl.config.services {
            let shared = ctl.services.get(&svc.name).cloned().unwrap_or_default();
            let servers = svc
                .servers
                .iter()
                .filter_map(|s| {
                    ctl.servers
                        .get(&(svc.name.clone(), s.name.clone()))
                        .cloned()
                })
                .collect();
            let bound = svc
                .listen
                .iter()
                .filter_map(|a| ctl.listeners.get(a).map(|l| l.1))
                .collect();
            out.push((svc.clone(), shared, servers, bound));
        }
        (ctl.config.clone(), out)
    }
}

fn build_snapshot(ctl: &Ctl) -> Snapshot {
    let now = now_ms();
    let mut snap = Snapshot::default();
    for svc in &ctl.config.services {
        let shared = ctl.services.get(&svc.name).cloned().unwrap_or_default();
        let servers: Vec<Arc<ServerRt>> = svc
            .servers
            .iter()
            .filter_map(|s| {
                ctl.servers
                    .get(&(svc.name.clone(), s.name.clone()))
                    .cloned()
            })
            .collect();
        let idx = snap.services.len();
        for a in &svc.listen {
            snap.by_listen.insert(*a, idx);
        }
        snap.by_name.insert(svc.name.clone(), idx);
        snap.services
            .push(ServiceSnap::build(svc.clone(), shared, servers, now));
    }
    snap
}
