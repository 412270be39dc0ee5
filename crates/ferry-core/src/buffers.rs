//! Recycled part buffers: the memory a part is read into is handed out again for a later part
//! once every reference to the first is gone, instead of going back to the allocator.
//!
//! Why: parts are large (MiBs) and short-lived, and the system allocator serves such sizes
//! badly. glibc raises its mmap threshold after the first large free, so later part buffers
//! come from per-thread heaps and fragment them: peak RSS ran at about twice the copy's memory
//! budget. A buffer frozen with [`freeze`] is an ordinary `Bytes` (cloned, sliced and sent
//! without copies); when its last clone drops, the buffer returns here.
//!
//! Buffers are pooled by capacity in whole MiBs (from 1 MiB); smaller ones are plain
//! allocations. Free buffers kept are bounded by [`set_limit`] (default 256 MiB), so the pool
//! never holds more than a budget's worth of memory nobody uses.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Buffers smaller than this are not pooled; pooled capacities are multiples of it.
pub const GRAIN: usize = 1 << 20;

const DEFAULT_LIMIT: usize = 256 << 20;

struct Pool {
    free: BTreeMap<usize, Vec<Vec<u8>>>,
    free_bytes: usize,
    /// Bytes of frozen buffers not yet back (see [`freeze`]): with the free ones, what the
    /// pool's buffers take in all, kept within `limit`.
    lent: usize,
    limit: usize,
}

static POOL: Mutex<Pool> = Mutex::new(Pool { free: BTreeMap::new(), free_bytes: 0, lent: 0, limit: DEFAULT_LIMIT });

fn pool() -> std::sync::MutexGuard<'static, Pool> {
    // A panic while holding the lock cannot leave the pool inconsistent (each operation is a
    // single push or pop), so a poisoned lock is still usable.
    POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Bounds the free buffers kept for reuse to `bytes` (a copy sets it to its memory budget).
/// Free buffers over the new bound are released.
pub fn set_limit(bytes: usize) {
    let mut p = pool();
    p.limit = bytes;
    while p.free_bytes > p.limit {
        let Some(class) = p.free.keys().next().copied() else { break };
        let list = p.free.get_mut(&class).expect("key just seen");
        list.pop();
        if list.is_empty() {
            p.free.remove(&class);
        }
        p.free_bytes -= class;
    }
}

/// Free bytes the pool holds now (for tests and reports).
pub fn free_bytes() -> usize {
    pool().free_bytes
}

fn class_of(len: usize) -> Option<usize> {
    (len >= GRAIN).then(|| len.next_multiple_of(GRAIN))
}

/// A buffer of `class` bytes (its old contents, if recycled): a free one, else a new one — after releasing free buffers of
/// other sizes until the new one fits the limit beside the free and lent ones (so memory in
/// parts of one size never sits idle in buffers of another).
fn lend(class: usize) -> Vec<u8> {
    let mut p = pool();
    if let Some(v) = p.free.get_mut(&class).and_then(|list| list.pop()) {
        p.free_bytes -= class;
        if p.free.get(&class).is_some_and(|list| list.is_empty()) {
            p.free.remove(&class);
        }
        return v;
    }
    while p.free_bytes + p.lent + class > p.limit {
        let Some(other) = p.free.keys().next_back().copied() else { break };
        let list = p.free.get_mut(&other).expect("key just seen");
        list.pop();
        if list.is_empty() {
            p.free.remove(&other);
        }
        p.free_bytes -= other;
    }
    drop(p);
    Vec::with_capacity(class)
}

/// An empty buffer with room for `len` bytes, recycled when one of its size is free.
pub fn take(len: usize) -> Vec<u8> {
    match class_of(len) {
        Some(class) => {
            let mut v = lend(class);
            v.clear();
            v
        }
        None => Vec::with_capacity(len),
    }
}

/// A buffer of exactly `len` initialized bytes (zeros, or a recycled buffer's old contents),
/// for reads that fill a slice. Recycled buffers are not zeroed again.
pub fn take_filled(len: usize) -> Vec<u8> {
    let mut v = class_of(len).map(lend).unwrap_or_else(|| Vec::with_capacity(len));
    v.resize(len, 0);
    v
}

/// Turns a buffer from [`take`] / [`take_filled`] into `Bytes`; the buffer returns to the pool
/// when the last clone of them drops.
pub fn freeze(buf: Vec<u8>) -> Bytes {
    if buf.capacity() >= GRAIN && buf.capacity().is_multiple_of(GRAIN) {
        pool().lent += buf.capacity();
        Bytes::from_owner(Recycled(buf))
    } else {
        Bytes::from(buf)
    }
}

struct Recycled(Vec<u8>);

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.0);
        let class = buf.capacity();
        let mut p = pool();
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

    // The pool is process-wide: one test exercises it start to end so none races another.
    #[test]
    fn buffers_come_back_once_their_last_clone_drops_and_the_limit_holds() {
        set_limit(8 * GRAIN);
        let mut a = take(3 * GRAIN + 5);
        assert!(a.is_empty() && a.capacity() == 4 * GRAIN, "rounded up to whole MiBs");
        a.extend_from_slice(&vec![7u8; 3 * GRAIN + 5]);
        let ptr = a.as_ptr();
        let bytes = freeze(a);
        let slice = bytes.slice(10..20);
        drop(bytes);
        assert_eq!(free_bytes(), 0, "a slice still holds the buffer");
        assert_eq!(&slice[..], &[7u8; 10]);
        drop(slice);
        assert_eq!(free_bytes(), 4 * GRAIN);

        let b = take_filled(4 * GRAIN - 1);
        assert_eq!((b.as_ptr(), b.len()), (ptr, 4 * GRAIN - 1), "the same memory, handed out again");
        assert_eq!(free_bytes(), 0);

        // Small buffers are never pooled.
        drop(freeze(vec![1u8; 100]));
        assert_eq!(free_bytes(), 0);

        // Free buffers beyond the limit are released, not kept.
        let held: Vec<Bytes> = (0..3).map(|_| freeze(take_filled(3 * GRAIN))).collect();
        drop(held);
        assert_eq!(free_bytes(), 6 * GRAIN, "the third buffer would exceed 8 MiB");
        drop(freeze(b));
        assert_eq!(free_bytes(), 6 * GRAIN);
        set_limit(2 * GRAIN);
        assert_eq!(free_bytes(), 0);
        set_limit(DEFAULT_LIMIT);
    }
}
