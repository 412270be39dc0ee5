//! Recycled part buffers: the memory a part is read into is handed out again for a later part
//! once every reference to the first is gone, instead of going back to the allocator.
//!
//! Why: parts are large (MiBs) and short-lived, and the system allocator serves such sizes
//! badly. glibc raises its mmap threshold after the first large free, so later part buffers
//! come from per-thread heaps and fragment them: peak RSS ran at about twice the copy's memory
//! budget. A buffer frozen with [`BufferPool::freeze`] is an ordinary `Bytes` (cloned, sliced and sent
//! without copies); when its last clone drops, the buffer returns here.
//!
//! Buffers are pooled by capacity in whole MiBs (from 1 MiB); smaller ones are plain
//! allocations. Free buffers kept are bounded by [`BufferPool::set_limit`] (default 256 MiB), so
//! the pool never holds more than a budget's worth of memory nobody uses. Each run has its own
//! pool (in its run context), so one run's budget never bounds, or lends to, another's.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Buffers smaller than this are not pooled; pooled capacities are multiples of it.
pub const GRAIN: usize = 1 << 20;

/// The bound on free buffers a new pool keeps, until a run sets its memory budget.
pub const DEFAULT_LIMIT: usize = 256 << 20;

struct Pool {
    free: BTreeMap<usize, Vec<Vec<u8>>>,
    free_bytes: usize,
    /// Bytes of frozen buffers not yet back (see [`BufferPool::freeze`]): with the free ones,
    /// what the pool's buffers take in all, kept within `limit`.
    lent: usize,
    limit: usize,
}

impl Pool {
    /// Releases free buffers, largest class first, until `fits` holds or none is left.
    fn release_while(&mut self, mut over: impl FnMut(&Pool) -> bool, largest_first: bool) {
        while over(self) {
            let next = if largest_first { self.free.keys().next_back() } else { self.free.keys().next() };
            let Some(class) = next.copied() else { break };
            let list = self.free.get_mut(&class).expect("key just seen");
            list.pop();
            if list.is_empty() {
                self.free.remove(&class);
            }
            self.free_bytes -= class;
        }
    }
}

/// One run's part buffers (a run makes one and hands it to its providers; two runs in one
/// process never share one, so neither's budget bounds the other's buffers). Clones share the
/// pool.
#[derive(Clone)]
pub struct BufferPool(Arc<Mutex<Pool>>);

impl Default for BufferPool {
    fn default() -> Self {
        BufferPool::new(DEFAULT_LIMIT)
    }
}

impl std::fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = self.lock();
        f.debug_struct("BufferPool").field("free_bytes", &p.free_bytes).field("lent", &p.lent).field("limit", &p.limit).finish()
    }
}

fn lock(pool: &Mutex<Pool>) -> std::sync::MutexGuard<'_, Pool> {
    // A panic while holding the lock cannot leave the pool inconsistent (each operation is a
    // single push or pop), so a poisoned lock is still usable.
    pool.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl BufferPool {
    /// A pool keeping at most `limit` bytes of buffers, free and lent together.
    pub fn new(limit: usize) -> BufferPool {
        BufferPool(Arc::new(Mutex::new(Pool { free: BTreeMap::new(), free_bytes: 0, lent: 0, limit })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pool> {
        lock(&self.0)
    }

    /// Bounds the free buffers kept for reuse to `bytes` (a copy sets it to its memory budget).
    /// Free buffers over the new bound are released.
    pub fn set_limit(&self, bytes: usize) {
        let mut p = self.lock();
        p.limit = bytes;
        p.release_while(|p| p.free_bytes > p.limit, false);
    }

    /// Free bytes the pool holds now (for tests and reports).
    pub fn free_bytes(&self) -> usize {
        self.lock().free_bytes
    }

    /// The bound set by [`BufferPool::set_limit`].
    pub fn limit(&self) -> usize {
        self.lock().limit
    }

    /// A buffer of `class` bytes (its old contents, if recycled): a free one, else a new one —
    /// after releasing free buffers of other sizes until the new one fits the limit beside the
    /// free and lent ones (so memory in parts of one size never sits idle in buffers of
    /// another).
    fn lend(&self, class: usize) -> Vec<u8> {
        let mut p = self.lock();
        if let Some(v) = p.free.get_mut(&class).and_then(|list| list.pop()) {
            p.free_bytes -= class;
            if p.free.get(&class).is_some_and(|list| list.is_empty()) {
                p.free.remove(&class);
            }
            return v;
        }
        p.release_while(|p| p.free_bytes + p.lent + class > p.limit, true);
        drop(p);
        Vec::with_capacity(class)
    }

    /// An empty buffer with room for `len` bytes, recycled when one of its size is free.
    pub fn take(&self, len: usize) -> Vec<u8> {
        match class_of(len) {
            Some(class) => {
                let mut v = self.lend(class);
                v.clear();
                v
            }
            None => Vec::with_capacity(len),
        }
    }

    /// A buffer of exactly `len` initialized bytes (zeros, or a recycled buffer's old
    /// contents), for reads that fill a slice. Recycled buffers are not zeroed again.
    pub fn take_filled(&self, len: usize) -> Vec<u8> {
        let mut v = class_of(len).map(|class| self.lend(class)).unwrap_or_else(|| Vec::with_capacity(len));
        v.resize(len, 0);
        v
    }

    /// Turns a buffer from [`BufferPool::take`] / [`BufferPool::take_filled`] into `Bytes`; the
    /// buffer returns to this pool when the last clone of them drops.
    pub fn freeze(&self, buf: Vec<u8>) -> Bytes {
        if buf.capacity() >= GRAIN && buf.capacity().is_multiple_of(GRAIN) {
            self.lock().lent += buf.capacity();
            Bytes::from_owner(Recycled { buf, pool: self.0.clone() })
        } else {
            Bytes::from(buf)
        }
    }
}

fn class_of(len: usize) -> Option<usize> {
    (len >= GRAIN).then(|| len.next_multiple_of(GRAIN))
}

struct Recycled {
    buf: Vec<u8>,
    pool: Arc<Mutex<Pool>>,
}

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        let class = buf.capacity();
        let mut p = lock(&self.pool);
        p.lent = p.lent.saturating_sub(class);
        if p.free_bytes + p.lent + class <= p.limit {
            p.free.entry(class).or_default().push(buf);
            p.free_bytes += class;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_once_their_last_clone_drops_and_the_limit_holds() {
        let pool = BufferPool::new(8 * GRAIN);
        let mut a = pool.take(3 * GRAIN + 5);
        assert!(a.is_empty() && a.capacity() == 4 * GRAIN, "rounded up to whole MiBs");
        a.extend_from_slice(&vec![7u8; 3 * GRAIN + 5]);
        let ptr = a.as_ptr();
        let bytes = pool.freeze(a);
        let slice = bytes.slice(10..20);
        drop(bytes);
        assert_eq!(pool.free_bytes(), 0, "a slice still holds the buffer");
        assert_eq!(&slice[..], &[7u8; 10]);
        drop(slice);
        assert_eq!(pool.free_bytes(), 4 * GRAIN);

        let b = pool.take_filled(4 * GRAIN - 1);
        assert_eq!((b.as_ptr(), b.len()), (ptr, 4 * GRAIN - 1), "the same memory, handed out again");
        assert_eq!(pool.free_bytes(), 0);

        // Small buffers are never pooled.
        drop(pool.freeze(vec![1u8; 100]));
        assert_eq!(pool.free_bytes(), 0);

        // Free buffers beyond the limit are released, not kept.
        let held: Vec<Bytes> = (0..3).map(|_| pool.freeze(pool.take_filled(3 * GRAIN))).collect();
        drop(held);
        assert_eq!(pool.free_bytes(), 6 * GRAIN, "the third buffer would exceed 8 MiB");
        drop(pool.freeze(b));
        assert_eq!(pool.free_bytes(), 6 * GRAIN);
        pool.set_limit(2 * GRAIN);
        assert_eq!(pool.free_bytes(), 0);
    }

    #[test]
    fn two_pools_keep_their_own_buffers_and_limits() {
        let (a, b) = (BufferPool::new(8 * GRAIN), BufferPool::new(GRAIN));
        drop(a.freeze(a.take_filled(2 * GRAIN)));
        drop(b.freeze(b.take_filled(2 * GRAIN)));
        assert_eq!((a.free_bytes(), b.free_bytes()), (2 * GRAIN, 0), "b's limit is b's alone");
        let again = b.take_filled(2 * GRAIN);
        assert_eq!(a.free_bytes(), 2 * GRAIN, "b never takes a's free buffers");
        drop(b.freeze(again));
        assert_eq!(b.free_bytes(), 0);
    }
}
