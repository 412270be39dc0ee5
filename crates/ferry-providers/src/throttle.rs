//! User-set ceilings for a shared link or an account's rate limit: bytes per second each way
//! (`--bwlimit`) and requests per second (`--tpslimit`), for the whole process.
//!
//! Each ceiling is a virtual schedule (GCRA): a transfer of `n` bytes is given the next free
//! slot and moves that slot on by `n / rate`, so the rate holds on average over every part,
//! however many transfers share it. Reads are charged when their bytes have arrived, writes
//! before they are sent. Local disks are never throttled, only the network providers.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// A schedule of units per second; `None` while unlimited.
struct Schedule {
    rate: Mutex<Option<(f64, Instant)>>,
}

impl Schedule {
    const fn new() -> Self {
        Schedule { rate: Mutex::new(None) }
    }

    fn set(&self, per_second: Option<u64>) {
        *self.lock() = per_second.filter(|r| *r > 0).map(|r| (r as f64, Instant::now()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(f64, Instant)>> {
        self.rate.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// When the caller may go, having booked `units`.
    fn book(&self, units: u64) -> Option<Instant> {
        let mut guard = self.lock();
        let (rate, next) = guard.as_mut()?;
        let start = (*next).max(Instant::now());
        *next = start + Duration::from_secs_f64(units as f64 / *rate);
        Some(start)
    }

    async fn take(&self, units: u64) {
        if let Some(start) = self.book(units) {
            tokio::time::sleep_until(start).await;
        }
    }
}

static RECEIVED: Schedule = Schedule::new();
static SENT: Schedule = Schedule::new();
static REQUESTS: Schedule = Schedule::new();

/// Sets the ceilings (`None`: unlimited). `bytes_per_second` applies to each direction on its
/// own: a cloud-to-cloud copy at 100 MB/s reads 100 MB/s and writes 100 MB/s.
pub fn configure(bytes_per_second: Option<u64>, requests_per_second: Option<u64>) {
    RECEIVED.set(bytes_per_second);
    SENT.set(bytes_per_second);
    REQUESTS.set(requests_per_second);
}

/// Waits for a request slot.
pub(crate) async fn request() {
    REQUESTS.take(1).await;
}

/// Charges `n` bytes that have arrived; returns once the read ceiling allows more.
pub(crate) async fn received(n: usize) {
    RECEIVED.take(n as u64).await;
}

/// Waits until `n` bytes may be sent.
pub(crate) async fn sending(n: usize) {
    SENT.take(n as u64).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_schedule_holds_its_rate_across_concurrent_callers() {
        let s = std::sync::Arc::new(Schedule::new());
        s.set(Some(1000));
        let started = tokio::time::Instant::now();
        // 8 callers × 5 takes of 250 units = 10 000 units at 1000/s: 9.75 s until the last
        // may start (the first starts at once).
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move {
                    for _ in 0..5 {
                        s.take(250).await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(9_700) && took <= Duration::from_millis(9_800), "{took:?}");
        s.set(None);
        let again = tokio::time::Instant::now();
        s.take(1 << 40).await;
        assert_eq!(again.elapsed(), Duration::ZERO, "unlimited never waits");
    }
}
