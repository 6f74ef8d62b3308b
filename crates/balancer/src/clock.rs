//! A monotonic millisecond clock shared by the crate (persistence ages, slow start, idle timers).
//!
//! It reads tokio's clock, which is the system's monotonic clock, except under a runtime whose
//! time a test paused (`#[tokio::test(start_paused = true)]`): there ages, ramps and idle
//! timers follow the test's virtual time, like the balancer's tokio timers do.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;

/// How long before the first reading the clock's zero lies. A paused runtime's clock starts at
/// the moment the runtime was made, which can be before the first reading of another runtime
/// in the same process (tests run side by side); it must not read as before zero.
const ZERO_BEFORE_FIRST_READING: Duration = Duration::from_secs(3600);

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(|| {
        let now = std::time::Instant::now();
        Instant::from_std(now.checked_sub(ZERO_BEFORE_FIRST_READING).unwrap_or(now))
    })
}

/// Milliseconds since the clock's zero (an hour before the first call in this process).
pub fn now_ms() -> u64 {
    Instant::now().saturating_duration_since(base()).as_millis() as u64
}
