//! User-set ceilings for a shared link or an account's rate limit: bytes per second each way
//! (`--bwlimit`) and requests per second (`--tpslimit`), for one run ([`Throttle`] lives in the
//! run's [`crate::RunContext`]; two runs in one process each keep their own).
//!
//! Each ceiling is a virtual schedule (GCRA): a transfer of `n` bytes is given the next free
//! slot and moves that slot on by `n / rate`, so the rate holds on average over every part,
//! however many transfers share it. Reads are charged when their bytes have arrived, writes
//! before they are sent. Local disks are never throttled, only the network providers (the
//! [`crate::Throttled`] wrapper is put around those alone).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// The ceilings of one run; `None`: unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rates {
    /// Applies to each direction on its own: a cloud-to-cloud copy at 100 MB/s reads 100 MB/s
    /// and writes 100 MB/s.
    pub bytes_per_second: Option<u64>,
    pub requests_per_second: Option<u64>,
}

/// A schedule of units per second; `None` while unlimited.
struct Schedule {
    rate: Mutex<Option<(f64, Instant)>>,
    /// Units booked while a rate was set (what the ceiling was asked to pass).
    charged: AtomicU64,
    /// Time the bookings take at their rate, in nanoseconds: the schedule's own clock, which
    /// moves on by `units / rate` per booking whoever makes it.
    booked_nanos: AtomicU64,
}

impl Schedule {
    fn new(per_second: Option<u64>) -> Self {
        let s = Schedule { rate: Mutex::new(None), charged: AtomicU64::new(0), booked_nanos: AtomicU64::new(0) };
        s.set(per_second);
        s
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
        let takes = Duration::from_secs_f64(units as f64 / *rate);
        *next = start + takes;
        self.charged.fetch_add(units, Ordering::Relaxed);
        self.booked_nanos.fetch_add(takes.as_nanos() as u64, Ordering::Relaxed);
        Some(start)
    }

    async fn take(&self, units: u64) {
        if let Some(start) = self.book(units) {
            tokio::time::sleep_until(start).await;
        }
    }

    fn account(&self) -> Charged {
        Charged { units: self.charged.load(Ordering::Relaxed), booked: Duration::from_nanos(self.booked_nanos.load(Ordering::Relaxed)) }
    }
}

/// What one ceiling was charged in a run: the units (bytes or requests) booked against it, and
/// the time they take at its rate (a schedule's clock, not the wall's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Charged {
    pub units: u64,
    pub booked: Duration,
}

/// The three schedules of a run.
pub struct Throttle {
    received: Schedule,
    sent: Schedule,
    requests: Schedule,
    rates: Rates,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle").field("rates", &self.rates).finish_non_exhaustive()
    }
}

impl Throttle {
    pub fn new(rates: Rates) -> Throttle {
        Throttle {
            received: Schedule::new(rates.bytes_per_second),
            sent: Schedule::new(rates.bytes_per_second),
            requests: Schedule::new(rates.requests_per_second),
            rates,
        }
    }

    pub fn rates(&self) -> Rates {
        self.rates
    }

    /// Waits for a request slot.
    pub async fn request(&self) {
        self.requests.take(1).await;
    }

    /// Charges `n` bytes that have arrived; returns once the read ceiling allows more.
    pub async fn received(&self, n: usize) {
        self.received.take(n as u64).await;
    }

    /// Waits until `n` bytes may be sent.
    pub async fn sending(&self, n: usize) {
        self.sent.take(n as u64).await;
    }

    /// What each ceiling has been charged so far: (bytes received, bytes sent, requests).
    pub fn charged(&self) -> (Charged, Charged, Charged) {
        (self.received.account(), self.sent.account(), self.requests.account())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_schedule_holds_its_rate_across_concurrent_callers() {
        let s = std::sync::Arc::new(Schedule::new(Some(1000)));
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
        assert_eq!(s.account(), Charged { units: 10_000, booked: Duration::from_secs(10) });
        s.set(None);
        let again = tokio::time::Instant::now();
        s.take(1 << 40).await;
        assert_eq!(again.elapsed(), Duration::ZERO, "unlimited never waits");
        assert_eq!(s.account().units, 10_000, "nor is charged");
    }

    #[tokio::test(start_paused = true)]
    async fn two_throttles_keep_their_own_schedules() {
        let slow = Throttle::new(Rates { bytes_per_second: Some(1000), requests_per_second: Some(2) });
        let fast = Throttle::new(Rates { bytes_per_second: Some(4000), requests_per_second: None });
        let started = tokio::time::Instant::now();
        for _ in 0..4 {
            slow.sending(1000).await;
            fast.sending(1000).await;
            fast.received(500).await;
            slow.request().await;
            fast.request().await;
        }
        let (received, sent, requests) = slow.charged();
        assert_eq!((received.units, sent.units, requests.units), (0, 4000, 4));
        assert_eq!((sent.booked, requests.booked), (Duration::from_secs(4), Duration::from_secs(2)));
        let (received, sent, requests) = fast.charged();
        assert_eq!((received.units, sent.units, requests.units), (2000, 4000, 0), "no request ceiling: none charged");
        assert_eq!((received.booked, sent.booked), (Duration::from_millis(500), Duration::from_secs(1)));
        // The slow schedule alone paced the loop: 3 s until its fourth kilobyte may go.
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }
}
