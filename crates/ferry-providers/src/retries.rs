//! Failed attempts counted by cause for the run's report, and the adaptive pace ferry's own
//! HTTP requests keep: a throttling answer (429, 503) slows every later request down, and each
//! success speeds them up again a little, so a service that pushes back gets fewer requests
//! until it recovers. (The S3 SDK paces itself the same way in its adaptive retry mode.)
//!
//! Counts are process-wide: one ferry process runs one job.

use ferry_core::FailureKind;
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

/// Why a failed attempt was tried again. Each counts under its stable name in the run's
/// report (`throttled (429)`, `checksum mismatch`, …); the cause is decided from a status or a
/// [`FailureKind`], never from an error's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Cause {
    Throttled,
    Unavailable,
    ServerError,
    Timeout,
    Connection,
    Checksum,
    ShortRead,
    Other,
}

impl Cause {
    /// The name the report counts this cause under.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Throttled => "throttled (429)",
            Cause::Unavailable => "unavailable (503)",
            Cause::ServerError => "server error (5xx)",
            Cause::Timeout => "timeout",
            Cause::Connection => "connection dropped",
            Cause::Checksum => "checksum mismatch",
            Cause::ShortRead => "short read",
            Cause::Other => "other",
        }
    }

    /// The cause of a failed HTTP status.
    pub fn of_status(status: u16) -> Cause {
        match status {
            429 => Cause::Throttled,
            503 => Cause::Unavailable,
            408 | 504 => Cause::Timeout,
            500..=599 => Cause::ServerError,
            _ => Cause::Other,
        }
    }

    /// The cause a failure of this kind is retried for.
    pub fn of(kind: FailureKind) -> Cause {
        match kind {
            FailureKind::Throttled => Cause::Throttled,
            FailureKind::Unavailable => Cause::Unavailable,
            FailureKind::ServerError => Cause::ServerError,
            FailureKind::Timeout => Cause::Timeout,
            FailureKind::Connection => Cause::Connection,
            FailureKind::CorruptedInTransit => Cause::Checksum,
            FailureKind::ShortRead => Cause::ShortRead,
            _ => Cause::Other,
        }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counts one failed attempt.
pub fn record(cause: Cause) {
    *COUNTS.lock().expect("retry counts lock").entry(cause.as_str()).or_default() += 1;
}

/// Failed attempts so far, by cause.
pub fn snapshot() -> BTreeMap<String, u64> {
    COUNTS.lock().expect("retry counts lock").iter().map(|(k, v)| (k.to_string(), *v)).collect()
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
    fn causes_are_named_from_statuses_and_kinds() {
        assert_eq!(Cause::of_status(429).as_str(), "throttled (429)");
        assert_eq!(Cause::of_status(503).as_str(), "unavailable (503)");
        assert_eq!(Cause::of_status(500).as_str(), "server error (5xx)");
        assert_eq!(Cause::of_status(504), Cause::Timeout);
        assert_eq!(Cause::of_status(501).as_str(), "server error (5xx)");
        assert_eq!(Cause::of_status(400), Cause::Other);
        assert_eq!(Cause::of(FailureKind::CorruptedInTransit).as_str(), "checksum mismatch");
        assert_eq!(Cause::of(FailureKind::ShortRead).as_str(), "short read");
        assert_eq!(Cause::of(FailureKind::SourceGone), Cause::Other);
    }
}
