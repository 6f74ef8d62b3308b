//! The servers of `servers = "cluster"` services, from the cluster's membership: put into the
//! configuration in force, their draining marked, a new membership applied.

use std::collections::HashMap;
use std::sync::Arc;

use super::{ClusterMember, Inner, ServerKey};
use crate::config::Config;
use crate::server::ServerRt;

impl Inner {
    /// `config` with each `servers = "cluster"` service's servers taken from the membership
    /// as last read; and the services whose new members ramp up (slow start).
    pub(super) fn with_cluster_servers(
        &self,
        mut config: Config,
    ) -> (Config, std::collections::HashSet<String>) {
        let mut cluster = self.cluster.lock().unwrap_or_else(|p| p.into_inner());
        let ramping = cluster.applied.clone();
        for svc in config.services.iter_mut() {
            if svc.cluster_service.is_none() {
                continue;
            }
            let members = cluster.members.get(&svc.name).cloned().unwrap_or_default();
            let mut with = (**svc).clone();
            with.servers = members
                .iter()
                .map(|m| crate::config::ServerConfig {
                    name: m.name.clone(),
                    host: crate::config::ServerHost::Ip(m.addr.ip()),
                    port: Some(m.addr.port()),
                    weight: crate::config::DEFAULT_WEIGHT,
                })
                .collect();
            *svc = Arc::new(with);
            if cluster.members.contains_key(&svc.name) {
                cluster.applied.insert(svc.name.clone());
            }
        }
        (config, ramping)
    }

    /// Marks the draining members of `servers = "cluster"` services on their servers.
    pub(super) fn mark_cluster_draining(
        &self,
        config: &Config,
        servers: &HashMap<ServerKey, Arc<ServerRt>>,
    ) {
        let cluster = self.cluster.lock().unwrap_or_else(|p| p.into_inner());
        for svc in config
            .services
            .iter()
            .filter(|s| s.cluster_service.is_some())
        {
            for m in cluster.members.get(&svc.name).into_iter().flatten() {
                if let Some(rt) = servers.get(&(svc.name.clone(), m.name.clone())) {
                    rt.set_cluster_draining(m.draining);
                }
            }
        }
    }

    /// The `servers = "cluster"` services in force: (service, node service it fronts).
    pub fn cluster_services(&self) -> Vec<(String, String)> {
        self.lock()
            .config
            .services
            .iter()
            .filter_map(|s| Some((s.name.clone(), s.cluster_service.clone()?)))
            .collect()
    }

    /// Puts a new membership in force (service → members) when it differs from the one in
    /// force: members that joined are added (with slow start), members gone are removed
    /// (their open connections go on), draining ones take no new clients.
    pub fn set_cluster_members(self: &Arc<Self>, members: HashMap<String, Vec<ClusterMember>>) {
        {
            let mut cluster = self.cluster.lock().unwrap_or_else(|p| p.into_inner());
            if cluster.members == members {
                return;
            }
            for (service, now) in &members {
                let before = cluster.members.get(service).cloned().unwrap_or_default();
                for m in now {
                    match before.iter().find(|b| b.name == m.name) {
                        None => {
                            tracing::info!(service, server = %m.name, addr = %m.addr, "cluster node joined")
                        }
                        Some(b) if b.draining != m.draining || b.addr != m.addr => tracing::info!(
                            service, server = %m.name, addr = %m.addr, draining = m.draining,
                            "cluster node changed"
                        ),
                        Some(_) => {}
                    }
                }
                for b in before
                    .iter()
                    .filter(|b| !now.iter().any(|m| m.name == b.name))
                {
                    tracing::info!(service, server = %b.name, "cluster node left (drained or dead)");
                }
            }
            cluster.members = members;
        }
        let config = self.lock().config.clone();
        if let Err(e) = self.apply(config, false) {
            tracing::error!(error = %e, "cannot put the cluster's membership in force");
        }
    }
}
