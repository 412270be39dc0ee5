//! What the destination held before a copy wrote to it, from one listing: the write ledger's
//! prior states for a destination that is empty or small, at a listing page per thousand keys
//! instead of a HEAD per object.
//!
//! A copy lists its destination once at the start of a run, stopping as soon as the listing
//! outgrows what the run will write (twice its pending objects, at most [`MAX_KEYS`]): a large
//! destination is not listed through, and each write then HEADs its key as before. What the
//! listing shows is the ledger's record (`seen: listing`), as a HEAD's would be: a write by
//! someone else between the listing and ferry's write is no more seen than one between a HEAD
//! and the write. A key the listing names without an entity tag (s3s-fs lists none) is still
//! HEADed: its size alone would describe it too thinly for an undo.

use ferry_journal::Prior;
use ferry_providers::Provider;
use futures::StreamExt;
use std::collections::HashMap;

/// The most keys a snapshot holds (about 3 MB): beyond it, writes HEAD their keys.
pub(crate) const MAX_KEYS: usize = 20_000;

/// The destination's keys as one listing found them.
#[derive(Debug, Default)]
pub(crate) struct Held {
    /// `None`: listed, but too thinly described (no entity tag) to stand for a HEAD.
    keys: HashMap<String, Option<Prior>>,
}

impl Held {
    /// Lists `dst` while it holds at most `limit` keys. `None` when it holds more, or when the
    /// listing fails (credentials that may write but not list): writes then HEAD their keys.
    pub(crate) async fn list(dst: &dyn Provider, limit: usize) -> Option<Held> {
        let mut keys = HashMap::new();
        let mut pages = dst.list();
        while let Some(page) = pages.next().await {
            for entry in page.ok()? {
                // Not an object ferry reads (a symlink, a FIFO on a local disk): the write
                // decides what becomes of it, and the ledger says it does not know what was there.
                let prior = match (entry.skipped, entry.etag) {
                    (Some(_), _) => Some(Prior::Unknown),
                    (None, Some(etag)) => Some(Prior::Present { size: entry.size, etag: Some(etag), version: entry.version }),
                    (None, None) => None,
                };
                keys.insert(entry.key, prior);
            }
            if keys.len() > limit {
                return None;
            }
        }
        Some(Held { keys })
    }

    /// The listing's limit for a run that will write `pending` objects.
    pub(crate) fn limit(pending: u64) -> usize {
        usize::try_from(pending.saturating_mul(2)).unwrap_or(usize::MAX).min(MAX_KEYS)
    }

    /// What the destination held under `key` when listed; `None` when the listing named it
    /// without describing it (the write HEADs it).
    pub(crate) fn prior(&self, key: &str) -> Option<Prior> {
        match self.keys.get(key) {
            Some(prior) => prior.clone(),
            None => Some(Prior::Absent),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use ferry_testkit::{MemoryProvider, MemoryStore};

    async fn holding(n: usize) -> MemoryProvider {
        let store = MemoryStore::new();
        let dst = store.provider("s3://dst/");
        for i in 0..n {
            store.insert("dst", &format!("k{i:05}"), Bytes::from(vec![b'x'; i + 1]));
        }
        dst
    }

    #[tokio::test]
    async fn a_small_destination_is_held_whole_and_an_unlisted_key_was_absent() {
        let dst = holding(3).await;
        let held = Held::list(&dst, 10).await.expect("3 keys under a limit of 10");
        assert!(matches!(held.prior("k00002"), Some(Prior::Present { size: 3, .. })));
        assert_eq!(held.prior("k00003"), Some(Prior::Absent));
    }

    #[tokio::test]
    async fn a_destination_larger_than_the_limit_is_not_held() {
        let dst = holding(11).await;
        assert!(Held::list(&dst, 10).await.is_none());
    }

    #[test]
    fn the_limit_is_twice_the_pending_objects_and_at_most_max_keys() {
        assert_eq!(Held::limit(0), 0);
        assert_eq!(Held::limit(2000), 4000);
        assert_eq!(Held::limit(u64::MAX), MAX_KEYS);
    }
}
