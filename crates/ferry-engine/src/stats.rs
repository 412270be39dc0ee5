//! Live counters a caller polls to draw progress (the engine itself never prints).

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Stats {
    /// Objects and bytes the current step will process (set when known).
    pub total_objects: AtomicU64,
    pub total_bytes: AtomicU64,
    pub objects_done: AtomicU64,
    pub objects_failed: AtomicU64,
    pub bytes_done: AtomicU64,
    /// Objects listed so far while planning.
    pub listed: AtomicU64,
    /// Multipart uploads resumed, and bytes their held parts saved from being sent again.
    pub resumed_objects: AtomicU64,
    pub resumed_bytes: AtomicU64,
    /// Restores of archived source objects requested (`--archived restore`).
    pub restores_requested: AtomicU64,
    /// Of those, restores asked at another tier than `--restore-tier`, which the service does
    /// not offer for the object's class (S3: no expedited retrieval of DEEP_ARCHIVE).
    pub restores_at_other_tier: AtomicU64,
}

impl Stats {
    /// Sets the totals of a run and counts what earlier runs finished as done.
    pub fn start(&self, counts: &ferry_journal::StatusCounts) {
        self.total_objects.store(counts.objects, Ordering::Relaxed);
        self.total_bytes.store(counts.bytes, Ordering::Relaxed);
        Stats::add(&self.objects_done, counts.done);
        Stats::add(&self.bytes_done, counts.done_bytes);
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
