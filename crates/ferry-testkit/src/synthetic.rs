//! A bucket that exists only as a listing: [`SyntheticBucket`] pages out `count` generated
//! entries, 1000 per page like S3's ListObjectsV2, in key order, for planning at a scale no
//! local service can hold (tens of millions of objects). Reads and writes are refused.
//!
//! This is a benchmark and test input for the planner, never proof that a provider works.

use async_trait::async_trait;
use bytes::Bytes;
use ferry_core::{Limits, Location, ObjectEntry};
use ferry_providers::{Fetched, Provider, ProviderError, PutAttrs, PutReceipt, Result};
use futures::stream::{self, BoxStream, StreamExt};
use std::ops::Range;

/// S3's page size for ListObjectsV2.
pub const PAGE: u64 = 1000;

pub struct SyntheticBucket {
    location: Location,
    count: u64,
    fail_at_page: Option<u64>,
}

impl SyntheticBucket {
    /// A bucket of `count` objects at `location` (only used for names in messages).
    pub fn new(location: Location, count: u64) -> Self {
        SyntheticBucket { location, count, fail_at_page: None }
    }

    /// The same bucket, whose listing fails (a fatal error, like access revoked midway) when
    /// page `page` (0-based) is requested.
    pub fn failing_at_page(mut self, page: u64) -> Self {
        self.fail_at_page = Some(page);
        self
    }

    /// Entry `i`: keys spread over day and hour folders like a data lake's, in the byte order
    /// S3 lists them (keys grow with `i`), sizes from 0 to ~16 MiB, an MD5-shaped etag.
    /// Deterministic, so runs are comparable.
    pub fn entry(i: u64) -> ObjectEntry {
        let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        ObjectEntry {
            key: format!("events/day-{:05}/hour-{:02}/part-{i:010}.json.gz", i / 100_000, i / 4_000 % 25),
            size: (h >> 40) % (16 << 20),
            last_modified: None,
            etag: Some(format!("{h:016x}{:016x}", h.rotate_left(17))),
            version: None,
            checksums: Default::default(),
            mode: None,
            content_type: None,
            metadata: Default::default(),
            storage_class: None,
            skipped: None,
            ..ObjectEntry::default()
        }
    }

    fn refused(&self, op: &'static str, key: &str) -> ProviderError {
        ProviderError::Request {
            provider: "synthetic",
            op,
            key: key.into(),
            detail: "a synthetic bucket can only be listed".into(),
            class: ferry_core::ErrorClass::Fatal,
            kind: ferry_core::FailureKind::Other,
        }
    }
}

#[async_trait]
impl Provider for SyntheticBucket {
    fn name(&self) -> &'static str {
        "synthetic"
    }

    fn location(&self) -> &Location {
        &self.location
    }

    fn limits(&self) -> Limits {
        ferry_providers::s3::LIMITS
    }

    async fn check(&self, _for_write: bool) -> Result<()> {
        Ok(())
    }

    fn list(&self) -> BoxStream<'_, Result<Vec<ObjectEntry>>> {
        let (count, fail_at) = (self.count, self.fail_at_page);
        stream::iter((0..count.div_ceil(PAGE)).map(move |page| {
            if Some(page) == fail_at {
                return Err(ProviderError::Denied {
                    provider: "synthetic",
                    bucket: "synthetic".into(),
                    detail: format!("listing page {page} refused"),
                });
            }
            let start = page * PAGE;
            Ok((start..(start + PAGE).min(count)).map(Self::entry).collect())
        }))
        .boxed()
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectEntry>> {
        Err(self.refused("head", key))
    }

    async fn get(&self, key: &str, _range: Option<Range<u64>>) -> Result<Fetched> {
        Err(self.refused("get", key))
    }

    async fn put(&self, key: &str, _data: Bytes, _crc32c: u32, _attrs: &PutAttrs) -> Result<PutReceipt> {
        Err(self.refused("put", key))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        Err(self.refused("delete", key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pages_are_full_sorted_and_count_exactly() {
        let bucket = SyntheticBucket::new(Location::parse("s3://synthetic/").unwrap(), 2_345);
        let pages: Vec<_> = bucket.list().map(|p| p.unwrap()).collect().await;
        assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [1000, 1000, 345]);
        let keys: Vec<_> = pages.iter().flatten().map(|e| e.key.clone()).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "keys come in listing order");
        // Across folder boundaries too (a new hour every 4000, a new day every 100 000).
        for i in (0..3_000_000).step_by(997).chain([3_999, 99_999, 9_999_999]) {
            let (a, b) = (SyntheticBucket::entry(i).key, SyntheticBucket::entry(i + 1).key);
            assert!(a < b, "{a} < {b}");
        }
    }
}
