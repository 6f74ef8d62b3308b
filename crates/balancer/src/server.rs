//! The long-lived state of one real server and one service: counters, administrative state,
//! health. These outlive configuration reloads for servers whose address did not change, so
//! connection counts and health are never reset by a reload.

use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

use crate::clock::now_ms;
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
    pub ip: IpAddr,
    pub port: Option<u16>,
    cfg_weight: AtomicU32,
    weight_override: AtomicU32,
    admin: AtomicU8,
    up: AtomicBool,
    /// When the server last became usable (for slow start); `u64::MAX` for "no ramp".
    ramp_from_ms: AtomicU64,
    pub active: AtomicU64,
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
    pub fn new(service: &str, name: &str, ip: IpAddr, port: Option<u16>, weight: u32) -> ServerRt {
        ServerRt {
            service: service.to_string(),
            name: name.to_string(),
            ip,
            port,
            cfg_weight: AtomicU32::new(weight),
            weight_override: AtomicU32::new(NO_OVERRIDE),
            admin: AtomicU8::new(0),
            up: AtomicBool::new(true),
            ramp_from_ms: AtomicU64::new(NO_RAMP),
            active: AtomicU64::new(0),
            total: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            connect_errors: AtomicU64::new(0),
            check: Mutex::new(CheckDetail::default()),
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
