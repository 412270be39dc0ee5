//! The one place a failed request is tried again, the failed attempts counted by cause for the
//! run's report, and the adaptive pace every request keeps: a throttling answer (429, 503)
//! slows every later request down, and each success speeds them up again a little, so a
//! service that pushes back gets fewer requests until it recovers.
//!
//! # One retry layer
//! Every request a provider sends goes through [`request`]: a transient failure (throttled,
//! unavailable, 5xx, a timeout, a connection that failed or dropped before the answer, the
//! service refusing an upload's bytes as corrupted) is sent again, after the `Retry-After` the
//! service asked for or a jittered exponential backoff, up to [`REQUEST`]'s attempts and total
//! wait; each retry is counted once here by [`Cause`]. Nothing else re-sends a request: the S3
//! SDK and object_store are built with their own retries off, and the mover retries an object
//! only for what sending one request again cannot fix ([`ErrorClass::Restart`]: a checksum that
//! fails over the bytes received, a body cut mid-stream or short, the source changed). Nested
//! layers multiply (the SDK's 5 attempts under the mover's 5 made 25 sends of one throttled
//! request, with backoffs multiplying too and only some attempts counted).
//!
//! Counts and pace are one run's ([`Retries`] lives in its [`crate::RunContext`]): two runs in
//! one process neither add to each other's counts nor slow each other down.

use crate::{ProviderError, RunContext};
use ferry_core::ErrorClass;
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
    pub(crate) fn pace_us(&self) -> u64 {
        self.pace_us.load(Ordering::Relaxed)
    }
}

/// How a request is retried: at most `attempts` sends, and no retry whose wait would take the
/// waits past `max_wait` in all. Backoff doubles from `base` up to `max_backoff`, jittered
/// (half fixed, half random), unless the service said when to come back (`Retry-After`, cut to
/// `max_retry_after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub attempts: u32,
    pub max_wait: Duration,
    pub base: Duration,
    pub max_backoff: Duration,
    pub max_retry_after: Duration,
}

/// The policy of every request ferry sends: 5 attempts (the S3 SDK's and ferry's own HTTP
/// helper's before there was one layer), at most 2 minutes of waiting in all (a service down
/// longer fails the object, which the run reports and a later run resumes).
pub const REQUEST: Policy = Policy {
    attempts: 5,
    max_wait: Duration::from_secs(120),
    base: Duration::from_millis(100),
    max_backoff: Duration::from_secs(10),
    max_retry_after: Duration::from_secs(60),
};

impl Policy {
    /// The backoff before send `n + 1` (after `n` failed sends), jittered.
    fn backoff(&self, n: u32) -> Duration {
        let full = self.base.saturating_mul(1 << (n.max(1) - 1).min(16)).min(self.max_backoff);
        let half = full / 2;
        half + Duration::from_micros(rand::random_range(0..=half.as_micros() as u64))
    }
}

/// One failed send: the error, and how long the service asked ferry to wait (`Retry-After`).
#[derive(Debug)]
pub struct Failed {
    pub error: ProviderError,
    pub retry_after: Option<Duration>,
}

impl From<ProviderError> for Failed {
    fn from(error: ProviderError) -> Failed {
        Failed { error, retry_after: None }
    }
}

/// The `Retry-After` of an answer, in seconds (the form services use for throttling).
pub(crate) fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    headers.get("retry-after")?.to_str().ok()?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Whether sending the request again may succeed: a transient failure, or bytes of this very
/// send found corrupted (by the service, or by a check of the answer read inside the attempt).
fn worth_sending_again(e: &ProviderError) -> bool {
    matches!(e.class(), ErrorClass::Retryable | ErrorClass::Restart)
}

/// Sends a request through the run's one retry layer (see the module docs): `send(n)` makes
/// send `n` (from 1) and returns its result. Before each send the request takes a request slot
/// and waits the run's pace (`RunContext::before_request`); a throttling failure slows the
/// pace, a success speeds it up; each retry is counted in the run by its cause. The last
/// failure is returned as it is, so what reaches the engine has used up its request retries.
pub async fn request<T, F, Fut>(run: &RunContext, policy: &Policy, mut send: F) -> Result<T, ProviderError>
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = Result<T, Failed>>,
{
    let mut waited = Duration::ZERO;
    let mut n = 0;
    loop {
        n += 1;
        run.before_request().await;
        let Failed { error, retry_after } = match send(n).await {
            Ok(out) => {
                run.retries().succeeded();
                return Ok(out);
            }
            Err(failed) => failed,
        };
        let kind = error.kind();
        if matches!(kind, FailureKind::Throttled | FailureKind::Unavailable) {
            run.retries().throttled();
        }
        if !worth_sending_again(&error) || n >= policy.attempts {
            return Err(error);
        }
        let delay = match retry_after {
            // The service said when to come back; honour it, within reason.
            Some(after) => after.min(policy.max_retry_after),
            None => policy.backoff(n),
        };
        if waited + delay > policy.max_wait {
            return Err(error);
        }
        waited += delay;
        run.retries().record(Cause::of(kind));
        tokio::time::sleep(delay).await;
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

    fn refused(kind: FailureKind, class: ErrorClass) -> ProviderError {
        ProviderError::Request { provider: "t", op: "put", key: "k".into(), detail: "refused".into(), class, kind }
    }

    /// One layer: a request refused for good is sent `attempts` times, each retry counted once
    /// by cause; one refused twice is sent three times; `Retry-After` replaces the backoff.
    #[tokio::test(start_paused = true)]
    async fn a_refused_request_is_sent_the_policys_attempts_and_counted_once_each() {
        let run = RunContext::unlimited();
        let sends = AtomicU64::new(0);
        let always = request(&run, &REQUEST, |_| async {
            sends.fetch_add(1, Ordering::Relaxed);
            Err::<(), _>(Failed::from(refused(FailureKind::Throttled, ErrorClass::Retryable)))
        });
        assert_eq!(always.await.unwrap_err().kind(), FailureKind::Throttled);
        assert_eq!(sends.load(Ordering::Relaxed), u64::from(REQUEST.attempts));
        assert_eq!(run.retries().snapshot(), BTreeMap::from([("throttled (429)".to_string(), u64::from(REQUEST.attempts - 1))]));

        let run = RunContext::unlimited();
        let started = tokio::time::Instant::now();
        let twice = request(&run, &REQUEST, |n| async move {
            match n {
                1 | 2 => Err(Failed {
                    error: refused(FailureKind::Unavailable, ErrorClass::Retryable),
                    retry_after: Some(Duration::from_secs(7)),
                }),
                _ => Ok(n),
            }
        });
        assert_eq!(twice.await.unwrap(), 3);
        assert!(started.elapsed() >= Duration::from_secs(14), "waited as the service asked: {:?}", started.elapsed());
        assert_eq!(run.retries().snapshot(), BTreeMap::from([("unavailable (503)".to_string(), 2)]));
        assert_eq!(run.retries().throttles(), 2);
    }

    /// Not worth sending again: a per-object failure is returned at once; and no retry waits
    /// past the policy's total.
    #[tokio::test(start_paused = true)]
    async fn permanent_failures_are_not_resent_and_the_total_wait_is_bounded() {
        let run = RunContext::unlimited();
        let sends = AtomicU64::new(0);
        let gone = request(&run, &REQUEST, |_| async {
            sends.fetch_add(1, Ordering::Relaxed);
            Err::<(), _>(Failed::from(refused(FailureKind::Rejected, ErrorClass::PerObject)))
        });
        gone.await.unwrap_err();
        assert_eq!(sends.load(Ordering::Relaxed), 1);

        let sends = AtomicU64::new(0);
        let policy = Policy { attempts: 100, max_wait: Duration::from_secs(30), ..REQUEST };
        let long = request(&run, &policy, |_| async {
            sends.fetch_add(1, Ordering::Relaxed);
            Err::<(), _>(Failed {
                error: refused(FailureKind::Throttled, ErrorClass::Retryable),
                retry_after: Some(Duration::from_secs(10)),
            })
        });
        long.await.unwrap_err();
        assert_eq!(sends.load(Ordering::Relaxed), 4, "3 waits of 10 s fit in 30 s, a fourth does not");
        assert_eq!(run.retries().snapshot(), BTreeMap::from([("throttled (429)".to_string(), 3)]), "the per-object failure counted none");
    }
}
