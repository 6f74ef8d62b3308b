//! A monotonic millisecond clock shared by the crate (persistence ages, slow start, idle timers).

use std::sync::OnceLock;
use std::time::Instant;

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Milliseconds since the first call in this process.
pub fn now_ms() -> u64 {
    base().elapsed().as_millis() as u64
}
