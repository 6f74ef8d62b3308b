//! The immutable view every connection reads: services, their servers, who may take new clients,
//! and the scheduler over them. Built from the configuration and the servers' current health and
//! administrative state, and swapped in whole (`ArcSwap`) whenever any of these change, so a
//! reader sees one consistent state and never locks.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::{PersistenceKind, ServiceConfig};
use crate::select::{self, Candidate, Scheduler};
use crate::server::{AdminState, ServerRt, ServiceShared};

#[derive(Debug, Default)]
pub struct Snapshot {
    pub services: Vec<ServiceSnap>,
    /// Configured listen address → index into `services`.
    pub by_listen: HashMap<SocketAddr, usize>,
    pub by_name: HashMap<String, usize>,
}

#[derive(Debug)]
pub struct ServiceSnap {
    pub cfg: Arc<ServiceConfig>,
    pub shared: Arc<ServiceShared>,
    /// Every server, in file order.
    pub servers: Vec<Arc<ServerRt>>,
    pub server_index: HashMap<Arc<str>, usize>,
    /// The servers' names, shared with the persistence table.
    pub names: Vec<Arc<str>>,
    /// Per server: may a client already persistent to it go on using it (up, not in maint).
    pub keeps_persistent: Vec<bool>,
    /// The servers that take new clients.
    pub cands: Vec<Candidate>,
    /// Index into `servers` of each candidate.
    pub cand_server: Vec<usize>,
    pub scheduler: Box<dyn Scheduler>,
    /// Whether connections need the address the client connected to (PROXY headers, servers
    /// that take the client's port).
    pub needs_local: bool,
}

impl ServiceSnap {
    pub fn build(
        cfg: Arc<ServiceConfig>,
        shared: Arc<ServiceShared>,
        servers: Vec<Arc<ServerRt>>,
        now_ms: u64,
    ) -> ServiceSnap {
        let slow_ms = cfg.slow_start.as_millis() as u64;
        let mut cands = Vec::new();
        let mut cand_server = Vec::new();
        let mut keeps = Vec::with_capacity(servers.len());
        let mut names = Vec::with_capacity(servers.len());
        let mut server_index = HashMap::new();
        for (i, s) in servers.iter().enumerate() {
            let name: Arc<str> = Arc::from(s.name.as_str());
            server_index.insert(name.clone(), i);
            names.push(name);
            let admin = s.admin();
            // A host name not resolved yet has nowhere to send a client.
            let up = s.is_up() && s.ip().is_some();
            // A draining cluster node closes its listeners: nobody new goes there.
            let draining = s.cluster_draining();
            keeps.push(up && admin != AdminState::Maint && !draining);
            let base = s.weight();
            if up && admin == AdminState::Ready && !draining && base > 0 {
                let ramp = s.ramp_permille(slow_ms, now_ms);
                let weight = ((base as u64 * ramp as u64) / 1000).max(1) as u32;
                cands.push(Candidate {
                    server: s.clone(),
                    weight,
                    base_weight: base,
                    ramp,
                });
                cand_server.push(i);
            }
        }
        let scheduler = select::build(cfg.scheduler, &cands, shared.counter.clone());
        let needs_local = cfg.proxy_protocol != crate::config::ProxyProtocol::None
            || servers.iter().any(|s| s.port.is_none());
        ServiceSnap {
            cfg,
            shared,
            servers,
            server_index,
            names,
            keeps_persistent: keeps,
            cands,
            cand_server,
            scheduler,
            needs_local,
        }
    }

    /// Whether the service keeps source-IP persistence.
    pub fn source_persistent(&self) -> bool {
        self.cfg.persistence == PersistenceKind::SourceIp
    }
}
