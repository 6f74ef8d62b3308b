//! Drain, maint and weight set at runtime (the runtime API, a pair's replication), and the state
//! file that keeps them across restarts.

use std::sync::Arc;

use super::Inner;
use crate::error::BalancerError;
use crate::runtime_state::RuntimeState;
use crate::server::{AdminState, ServerRt};

impl Inner {
    fn server(&self, service: &str, server: &str) -> Result<Arc<ServerRt>, BalancerError> {
        let ctl = self.lock();
        if !ctl.services.contains_key(service) {
            return Err(BalancerError::Api(format!("no service {service:?}")));
        }
        ctl.servers
            .get(&(service.to_string(), server.to_string()))
            .cloned()
            .ok_or_else(|| {
                BalancerError::Api(format!("service {service:?} has no server {server:?}"))
            })
    }

    pub fn set_admin(
        &self,
        service: &str,
        server: &str,
        state: AdminState,
    ) -> Result<(), BalancerError> {
        let s = self.server(service, server)?;
        s.set_admin(state);
        tracing::info!(service, server, state = ?state, "server state set");
        self.rebuild();
        self.save_state();
        Ok(())
    }

    pub fn set_weight(
        &self,
        service: &str,
        server: &str,
        weight: u32,
    ) -> Result<(), BalancerError> {
        if weight > crate::config::MAX_WEIGHT {
            return Err(BalancerError::Api(format!(
                "weight {weight} is too large (0 to {})",
                crate::config::MAX_WEIGHT
            )));
        }
        let s = self.server(service, server)?;
        s.set_weight_override(weight);
        tracing::info!(service, server, weight, "server weight set");
        self.rebuild();
        self.save_state();
        Ok(())
    }

    /// Drain, maint and weight of every server that differs from the file.
    pub fn runtime_state(&self) -> RuntimeState {
        RuntimeState::capture(self.lock().servers.values())
    }

    /// Puts in force a runtime state replicated from the active pair member (servers it does
    /// not list go back to ready at the file's weight) and keeps it in the state file.
    pub fn apply_runtime_state(&self, state: &RuntimeState, from: &str) {
        {
            let ctl = self.lock();
            state.apply(&ctl.servers, true, from);
        }
        self.rebuild();
        self.save_state();
    }

    /// Writes the state file (when there is one) from the state in force; a failure is logged:
    /// the change stays in force, but a restart would not know it.
    pub fn save_state(&self) {
        let _order = self.state_lock.lock().unwrap_or_else(|p| p.into_inner());
        let (path, state) = {
            let ctl = self.lock();
            (
                ctl.state_path.clone(),
                RuntimeState::capture(ctl.servers.values()),
            )
        };
        let Some(path) = path else { return };
        if let Err(e) = state.save(&path) {
            tracing::error!(
                file = %path.display(),
                error = %e,
                "cannot write the state file: the change is in force, but a restart will not keep it"
            );
        }
    }
}
