//! The long-lived state of one real server and one service: counters, administrative state,
//! health. These outlive configuration reloads for servers whose address did not change, so
//! connection counts and health are never reset by a reload.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

use crate::clock::now_ms;
use crate::config::ServerHost;
use crate::persist::PersistTable;

/// What the operator asked of a server through the runtime API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminState {
    /// Takes new connections.
    #[default]
    Ready,
    /// Takes only clients already persistent to it; open connections go on.
    Drain,
    /// Takes nothing new; open connections go on.
    Maint,
}

impl AdminState {
    fn from_u8(v: u8) -> AdminState {
        match v {
            1 => AdminState::Drain,
            2 => AdminState::Maint,
            _ => AdminState::Ready,
        }
    }
    fn to_u8(self) -> u8 {
        match self {
            AdminState::Ready => 0,
            AdminState::Drain => 1,
            AdminState::Maint => 2,
        }
    }
}

/// The result of the latest health check, for `/stats`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckDetail {
    /// "ok" or why the check failed.
    pub last: String,
    /// When the latest check ended (milliseconds on the balancer's clock).
    pub at_ms: u64,
    /// How long it took.
    pub took_ms: u64,
    /// Consecutive successes and failures so far.
    pub successes: u32,
    pub failures: u32,
}

/// One real server of one service.
#[derive(Debug)]
pub struct ServerRt {
    pub service: String,
    pub name: String,
    /// The address as configured: an IP address or a host name.
    pub host: ServerHost,
    /// The address connections go to: the configured IP, or the host name's latest
    /// resolution (None until it first resolves).
    ip: ArcSwapOption<IpAddr>,
    /// When the host name is next resolved (milliseconds on the balancer's clock).
    pub(crate) resolve_at_ms: AtomicU64,
    pub port: Option<u16>,
    cfg_weight: AtomicU32,
    weight_override: AtomicU32,
    admin: AtomicU8,
    up: AtomicBool,
    /// A cluster node that is draining (`servers = "cluster"`): no new clients, persistent
    /// ones included; its open connections go on.
    cluster_draining: AtomicBool,
    /// When the server last became usable (for slow start); `u64::MAX` for "no ramp".
    ramp_from_ms: AtomicU64,
    pub active: AtomicU64,
    /// Connects to the server under way: the schedulers count them with `active`, so a burst
    /// of clients chosen before their connects finish is spread, not sent to one server.
    pub connecting: AtomicU64,
    pub total: AtomicU64,
    /// Bytes from clients to the server, and from the server to clients.
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub connect_errors: AtomicU64,
    pub check: Mutex<CheckDetail>,
}

const NO_OVERRIDE: u32 = u32::MAX;
const NO_RAMP: u64 = u64::MAX;

impl ServerRt {
    /// A server at IP address `ip`.
    pub fn new(service: &str, name: &str, ip: IpAddr, port: Option<u16>, weight: u32) -> ServerRt {
        ServerRt::with_host(service, name, ServerHost::Ip(ip), None, port, weight)
    }

    /// A server at `host`; `ip` is where a host name last resolved to, if known.
    pub fn with_host(
        service: &str,
        name: &str,
        host: ServerHost,
        ip: Option<IpAddr>,
        port: Option<u16>,
        weight: u32,
    ) -> ServerRt {
        let ip = match &host {
            ServerHost::Ip(fixed) => Some(*fixed),
            ServerHost::Name(_) => ip,
        };
        ServerRt {
            service: service.to_string(),
            name: name.to_string(),
            host,
            ip: ArcSwapOption::new(ip.map(Arc::new)),
            resolve_at_ms: AtomicU64::new(0),
            port,
            cfg_weight: AtomicU32::new(weight),
            weight_override: AtomicU32::new(NO_OVERRIDE),
            admin: AtomicU8::new(0),
            up: AtomicBool::new(true),
            cluster_draining: AtomicBool::new(false),
            ramp_from_ms: AtomicU64::new(NO_RAMP),
            active: AtomicU64::new(0),
            connecting: AtomicU64::new(0),
            total: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            connect_errors: AtomicU64::new(0),
            check: Mutex::new(CheckDetail::default()),
        }
    }

    /// The IP address connections go to (None: a host name not resolved yet).
    pub fn ip(&self) -> Option<IpAddr> {
        self.ip.load().as_deref().copied()
    }

    /// Where a client that came in on `listen_port` is relayed to.
    pub fn addr(&self, listen_port: u16) -> Option<SocketAddr> {
        self.ip()
            .map(|ip| SocketAddr::new(ip, self.port.unwrap_or(listen_port)))
    }

    /// Records a new resolution of the host name; returns whether the address changed.
    /// A server given by IP address keeps it.
    pub fn set_resolved(&self, ip: IpAddr) -> bool {
        if matches!(self.host, ServerHost::Ip(_)) || self.ip() == Some(ip) {
            return false;
        }
        self.ip.store(Some(Arc::new(ip)));
        true
    }

    /// The address as `/stats` shows it: `10.0.0.2:143`, or `n1.example:143 (10.0.0.2)` for a
    /// host name.
    pub fn address_text(&self) -> String {
        let host = match &self.host {
            ServerHost::Ip(ip) => match self.port {
                Some(p) => return SocketAddr::new(*ip, p).to_string(),
                None => return ip.to_string(),
            },
            ServerHost::Name(n) => n,
        };
        let at = match self.ip() {
            Some(ip) => ip.to_string(),
            None => "not resolved".into(),
        };
        match self.port {
            Some(p) => format!("{host}:{p} ({at})"),
            None => format!("{host} ({at})"),
        }
    }

    pub fn admin(&self) -> AdminState {
        AdminState::from_u8(self.admin.load(Ordering::Relaxed))
    }

    /// Sets the administrative state; a server leaving maintenance ramps up again.
    pub fn set_admin(&self, s: AdminState) {
        let old = AdminState::from_u8(self.admin.swap(s.to_u8(), Ordering::Relaxed));
        if old == AdminState::Maint && s != AdminState::Maint {
            self.start_ramp();
        }
    }

    pub fn cluster_draining(&self) -> bool {
        self.cluster_draining.load(Ordering::Relaxed)
    }

    pub fn set_cluster_draining(&self, draining: bool) {
        self.cluster_draining.store(draining, Ordering::Relaxed);
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Records a health flip; coming up starts slow start. Returns whether the state changed.
    pub fn set_up(&self, up: bool) -> bool {
        let old = self.up.swap(up, Ordering::Relaxed);
        if up && !old {
            self.start_ramp();
        }
        old != up
    }

    pub fn start_ramp(&self) {
        self.ramp_from_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Slow-start progress in thousandths at `now_ms` (1000 = full weight).
    pub fn ramp_permille(&self, slow_start_ms: u64, now_ms: u64) -> u32 {
        let from = self.ramp_from_ms.load(Ordering::Relaxed);
        if from == NO_RAMP || slow_start_ms == 0 {
            return 1000;
        }
        let elapsed = now_ms.saturating_sub(from);
        if elapsed >= slow_start_ms {
            return 1000;
        }
        ((elapsed * 1000 / slow_start_ms) as u32).clamp(1, 1000)
    }

    /// The weight from the file, or the runtime override when one is set.
    pub fn weight(&self) -> u32 {
        match self.weight_override.load(Ordering::Relaxed) {
            NO_OVERRIDE => self.cfg_weight.load(Ordering::Relaxed),
            w => w,
        }
    }

    pub fn configured_weight(&self) -> u32 {
        self.cfg_weight.load(Ordering::Relaxed)
    }

    /// A reload gives the file's weight; a changed file weight drops the runtime override.
    pub fn set_configured_weight(&self, w: u32) {
        if self.cfg_weight.swap(w, Ordering::Relaxed) != w {
            self.weight_override.store(NO_OVERRIDE, Ordering::Relaxed);
        }
    }

    pub fn set_weight_override(&self, w: u32) {
        self.weight_override.store(w, Ordering::Relaxed);
    }

    /// The runtime weight, when one overrides the file's.
    pub fn weight_override(&self) -> Option<u32> {
        match self.weight_override.load(Ordering::Relaxed) {
            NO_OVERRIDE => None,
            w => Some(w),
        }
    }

    /// Back to the file's weight.
    pub fn clear_weight_override(&self) {
        self.weight_override.store(NO_OVERRIDE, Ordering::Relaxed);
    }

    /// What `/stats` shows as the server's state.
    pub fn state_name(&self) -> &'static str {
        match self.admin() {
            AdminState::Maint => "maint",
            _ if self.ip().is_none() => "unresolved",
            _ if !self.is_up() => "down",
            AdminState::Drain => "drain",
            AdminState::Ready => "up",
        }
    }
}

/// Counts a connection on a server for as long as the guard lives.
pub struct ActiveGuard<'a>(pub &'a AtomicU64);

impl<'a> ActiveGuard<'a> {
    pub fn new(c: &'a AtomicU64) -> ActiveGuard<'a> {
        c.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(c)
    }
}

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a connection on a server while it is kept open (owned form, for pooled connections).
pub struct OwnedActive(std::sync::Arc<ServerRt>);

impl OwnedActive {
    pub fn new(s: std::sync::Arc<ServerRt>) -> OwnedActive {
        s.active.fetch_add(1, Ordering::Relaxed);
        OwnedActive(s)
    }
}

impl Drop for OwnedActive {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The long-lived state of one service (kept by name across reloads).
#[derive(Debug, Default)]
pub struct ServiceShared {
    pub active: AtomicU64,
    pub total: AtomicU64,
    /// Refused by the allow/deny rules.
    pub denied: AtomicU64,
    /// Refused because `max_connections` were open.
    pub rejected_full: AtomicU64,
    /// Refused because no server could take the client.
    pub no_server: AtomicU64,
    /// The schedulers' rotating position, kept across snapshot rebuilds.
    pub counter: std::sync::Arc<AtomicUsize>,
    pub persist: PersistTable,
}
