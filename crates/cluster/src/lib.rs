//! mailfleet's cluster logic: shared settings applied live, node heartbeats, the master lease.

pub mod membership;
pub mod settings;

pub use membership::{Heartbeat, MasterLease, NodeReport, ServiceReport};
pub use settings::{LiveSettings, Settings};
