//! Failed attempts counted by cause for the run's report, and the adaptive pace ferry's own
//! HTTP requests keep: a throttling answer (429, 503) slows every later request down, and each
//! success speeds them up again a little, so a service that pushes back gets fewer requests
//! until it recovers. (The S3 SDK paces itself the same way in its adaptive retry mode.)
//!
//! Counts and pace are one run's ([`Retries`] lives in its [`crate::RunContext`]): two runs in
//! one process neither add to each other's counts nor slow each other down.

use ferry_core::FailureKind;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// One run's failed attempts by cause and its adaptive pace.
#[derive(Debug, Default)]
pub struct Retries {
    counts: Mutex<BTreeMap<Cause, u64>>,
    /// Delay before each request, in microseconds; 0 when the services are not pushing back.
    pace_us: AtomicU64,
    /// Throttling answers (429, 503) seen by this run so far.
    throttles: AtomicU64,
}

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

impl Retries {
    fn counts(&self) -> std::sync::MutexGuard<'_, BTreeMap<Cause, u64>> {
        // Each update is one increment: a panic elsewhere cannot leave the counts torn.
        self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts one failed attempt.
    pub fn record(&self, cause: Cause) {
        *self.counts().entry(cause).or_default() += 1;
    }

    /// Failed attempts so far, by cause.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts().iter().map(|(k, v)| (k.as_str().to_string(), *v)).collect()
    }

    /// Throttling answers (429, 503) this run has seen: callers compare two readings to learn
    /// whether the services pushed back meanwhile.
    pub fn throttles(&self) -> u64 {
        self.throttles.load(Ordering::Relaxed)
    }

    /// Slows later requests down after a throttling answer.
    pub(crate) fn throttled(&self) {
        self.throttles.fetch_add(1, Ordering::Relaxed);
        let _ = self.pace_us.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| Some((p * 2).clamp(FIRST_PACE_US, MAX_PACE_US)));
    }

    /// Speeds later requests up after a success (the pace shrinks by 1/16). Against doubling
    /// on each throttling answer, the pace grows only while more than about one request in
    /// twelve is throttled, and falls back to none once the service stops pushing back.
    pub(crate) fn succeeded(&self) {
        let _ =
            self.pace_us.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| (p > 0).then(|| if p < 1_000 { 0 } else { p - p / 16 }));
    }

    /// Waits the current pace (jittered) before a request (see
    /// [`crate::RunContext::before_request`], which takes the request slot first).
    pub(crate) async fn pace(&self) {
        let p = self.pace_us.load(Ordering::Relaxed);
        if p > 0 {
            tokio::time::sleep(Duration::from_micros(p / 2 + rand::random_range(0..=p / 2))).await;
        }
    }

    #[cfg(test)]
    fn pace_us(&self) -> u64 {
        self.pace_us.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_slows_down_and_successes_recover_slowly() {
        let r = Retries::default();
        r.throttled();
        r.throttled();
        let slowed = r.pace_us();
        assert_eq!(slowed, 2 * FIRST_PACE_US);
        for _ in 0..5 {
            r.succeeded();
        }
        let after = r.pace_us();
        assert!(after < slowed && after > slowed / 2, "recovers slowly: {slowed} -> {after}");
        for _ in 0..200 {
            r.succeeded();
        }
        assert_eq!(r.pace_us(), 0, "and fully");
        for _ in 0..20 {
            r.throttled();
        }
        assert_eq!(r.pace_us(), MAX_PACE_US, "capped");
        assert_eq!(r.throttles(), 22);
    }

    #[test]
    fn two_runs_count_and_pace_apart() {
        let (a, b) = (Retries::default(), Retries::default());
        a.throttled();
        a.record(Cause::Throttled);
        b.record(Cause::Checksum);
        b.record(Cause::Checksum);
        assert_eq!((a.pace_us(), b.pace_us()), (FIRST_PACE_US, 0), "b is not slowed by a's 429");
        assert_eq!((a.throttles(), b.throttles()), (1, 0));
        assert_eq!(a.snapshot(), BTreeMap::from([("throttled (429)".to_string(), 1)]));
        assert_eq!(b.snapshot(), BTreeMap::from([("checksum mismatch".to_string(), 2)]));
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
