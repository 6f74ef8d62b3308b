//! mailfleet's cluster logic: shared settings applied live, node heartbeats, the master lease and
//! the jobs its holder runs.

pub mod master;
pub mod membership;
pub mod settings;

pub use master::MasterJobs;
pub use membership::{
    Heartbeat, LeaseTiming, MasterLease, NodeLifecycle, NodeReport, NodeState, ServiceReport,
};
pub use settings::{LiveSettings, Settings};
