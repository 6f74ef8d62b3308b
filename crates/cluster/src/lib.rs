//! mailfleet's cluster logic: shared settings applied live, node heartbeats, the master lease,
//! the jobs its holder runs, among them the watchdog and scheduled backup.

pub mod backup;
pub mod master;
pub mod membership;
pub mod settings;
pub mod watchdog;

pub use master::MasterJobs;
pub use membership::{
    Heartbeat, LeaseTiming, MasterLease, NodeLifecycle, NodeReport, NodeState, ServiceReport,
};
pub use settings::{LiveSettings, Settings};
