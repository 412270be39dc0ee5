//! Failed attempts counted by cause for the run's report, and the adaptive pace ferry's own
//! HTTP requests keep: a throttling answer (429, 503) slows every later request down, and each
//! success speeds them up again a little, so a service that pushes back gets fewer requests
//! until it recovers. (The S3 SDK paces itself the same way in its adaptive retry mode.)
//!
//! Counts are process-wide: one ferry process runs one job.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

static COUNTS: Mutex<BTreeMap<&'static str, u64>> = Mutex::new(BTreeMap::new());
/// Delay before each request, in microseconds; 0 when the services are not pushing back.
static PACE_US: AtomicU64 = AtomicU64::new(0);
/// Throttling answers (429, 503) seen by this process so far.
static THROTTLES: AtomicU64 = AtomicU64::new(0);
const MAX_PACE_US: u64 = 2_000_000;
const FIRST_PACE_US: u64 = 10_000;

pub const THROTTLED: &str = "throttled (429)";
pub const UNAVAILABLE: &str = "unavailable (503)";
pub const SERVER_ERROR: &str = "server error (5xx)";
pub const TIMEOUT: &str = "timeout";
pub const CONNECTION: &str = "connection dropped";
pub const CHECKSUM: &str = "checksum mismatch";
pub const SHORT_READ: &str = "short read";
pub const OTHER: &str = "other";

/// Counts one failed attempt.
pub fn record(cause: &'static str) {
    *COUNTS.lock().expect("retry counts lock").entry(cause).or_default() += 1;
}

/// Failed attempts so far, by cause.
pub fn snapshot() -> BTreeMap<String, u64> {
    COUNTS.lock().expect("retry counts lock").iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// The cause of a failed HTTP status.
pub fn cause_of_status(status: u16) -> &'static str {
    match status {
        429 => THROTTLED,
        503 => UNAVAILABLE,
        408 | 504 => TIMEOUT,
        500..=599 => SERVER_ERROR,
        _ => OTHER,
    }
}

/// The cause named by an error's message (for failures found above the transport: a checksum
/// that does not match, a body shorter than announced).
pub fn cause_of_message(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if m.contains(CHECKSUM) {
        CHECKSUM
    } else if m.contains("short read") {
        SHORT_READ
    } else if m.contains("429") || m.contains("slowdown") || m.contains("throttl") || m.contains("toomanyrequests") {
        THROTTLED
    } else if m.contains("503") {
        UNAVAILABLE
    } else if m.contains("timeout") || m.contains("timed out") {
        TIMEOUT
    } else if m.contains("connection") || m.contains("dispatch") || m.contains("body") {
        CONNECTION
    } else {
        OTHER
    }
}

/// Throttling answers (429, 503) this process has seen: callers compare two readings to learn
/// whether the services pushed back meanwhile.
pub fn throttles() -> u64 {
    THROTTLES.load(Ordering::Relaxed)
}

/// Slows later requests down after a throttling answer.
pub(crate) fn throttled() {
    THROTTLES.fetch_add(1, Ordering::Relaxed);
    let _ = PACE_US.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| Some((p * 2).clamp(FIRST_PACE_US, MAX_PACE_US)));
}

/// Speeds later requests up after a success (the pace shrinks by 1/16). Against doubling on
/// each throttling answer, the pace grows only while more than about one request in twelve is
/// throttled, and falls back to none once the service stops pushing back.
pub(crate) fn succeeded() {
    let _ = PACE_US.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| (p > 0).then(|| if p < 1_000 { 0 } else { p - p / 16 }));
}

/// Waits the current pace (jittered) and a request slot under `--tpslimit` before a request.
pub(crate) async fn pace() {
    crate::throttle::request().await;
    let p = PACE_US.load(Ordering::Relaxed);
    if p > 0 {
        tokio::time::sleep(Duration::from_micros(p / 2 + rand::random_range(0..=p / 2))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_slows_down_and_successes_recover_slowly() {
        throttled();
        throttled();
        let slowed = PACE_US.load(Ordering::Relaxed);
        assert_eq!(slowed, 2 * FIRST_PACE_US);
        for _ in 0..5 {
            succeeded();
        }
        let after = PACE_US.load(Ordering::Relaxed);
        assert!(after < slowed && after > slowed / 2, "recovers slowly: {slowed} -> {after}");
        for _ in 0..200 {
            succeeded();
        }
        assert_eq!(PACE_US.load(Ordering::Relaxed), 0, "and fully");
        for _ in 0..20 {
            throttled();
        }
        assert_eq!(PACE_US.load(Ordering::Relaxed), MAX_PACE_US, "capped");
        PACE_US.store(0, Ordering::Relaxed);
    }

    #[test]
    fn causes_are_named_from_statuses_and_messages() {
        assert_eq!(cause_of_status(429), THROTTLED);
        assert_eq!(cause_of_status(503), UNAVAILABLE);
        assert_eq!(cause_of_status(500), SERVER_ERROR);
        assert_eq!(cause_of_message("get a/b: checksum mismatch: stored crc32c 1, sent 2"), CHECKSUM);
        assert_eq!(cause_of_message("short read: 3 of 8 bytes"), SHORT_READ);
    }
}
