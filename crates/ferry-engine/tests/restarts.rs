//! Issue 14 on the in-memory provider: an object restarted because its source changed since
//! the manifest is proved like any other copy, by the checksum the source declares for the
//! version read (the end-to-end proof on fake-gcs-server is `tests/stored_bytes.rs`); restores
//! of archived objects that take time are counted in flight, and a bounded wait copies them
//! (on moto, which restores at once: `tests/archived.rs`).

use async_trait::async_trait;
use bytes::Bytes;
use ferry_core::{ArchiveState, Checksums, Evidence, Limits, Location, ObjectEntry, RestoreRequest, RestoreTier, StorageClass};
use ferry_engine::{Access, Archived, CopyOptions, Job, Stats};
use ferry_providers::{Fetched, Provider, PutAttrs, PutReceipt};
use ferry_testkit::MemoryStore;
use futures::stream::BoxStream;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

/// A source whose reads carry no checksum of the object (as GCS's media download once did):
/// its listing and HEAD declare them.
struct ReadsWithoutChecksums(Arc<dyn Provider>);

#[async_trait]
impl Provider for ReadsWithoutChecksums {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn location(&self) -> &Location {
        self.0.location()
    }
    fn limits(&self) -> Limits {
        self.0.limits()
    }
    async fn check(&self, for_write: bool) -> ferry_providers::Result<()> {
        self.0.check(for_write).await
    }
    fn list(&self) -> BoxStream<'_, ferry_providers::Result<Vec<ObjectEntry>>> {
        self.0.list()
    }
    async fn head(&self, key: &str) -> ferry_providers::Result<Option<ObjectEntry>> {
        self.0.head(key).await
    }
    async fn get(&self, key: &str, range: Option<Range<u64>>) -> ferry_providers::Result<Fetched> {
        let mut fetched = self.0.get(key, range).await?;
        fetched.object.checksums = Checksums::default();
        Ok(fetched)
    }
    async fn put(&self, key: &str, data: Bytes, crc32c: u32, attrs: &PutAttrs) -> ferry_providers::Result<PutReceipt> {
        self.0.put(key, data, crc32c, attrs).await
    }
    async fn delete(&self, key: &str) -> ferry_providers::Result<()> {
        self.0.delete(key).await
    }
}

// See: issue 14 ("a restart falls back to size-only evidence").
#[tokio::test(start_paused = true)]
async fn a_restarted_object_is_proved_by_the_checksum_of_the_version_read() {
    let tmp = tempfile::tempdir().unwrap();
    let store = MemoryStore::new();
    store.create_bucket("dst");
    store.insert("src", "moving", Bytes::from_static(b"first version"));
    store.insert("src", "still", Bytes::from_static(b"unchanged"));
    let src: Arc<dyn Provider> = Arc::new(ReadsWithoutChecksums(Arc::new(store.provider("s3://src/"))));
    let dst: Arc<dyn Provider> = Arc::new(store.provider("s3://dst/"));
    let (src_loc, dst_loc) = (Location::parse("s3://src/").unwrap(), Location::parse("s3://dst/").unwrap());
    let mut job = Job::open(&tmp.path().join("job"), Some(src_loc), Some(dst_loc), Access::default()).unwrap();
    let stats = Arc::new(Stats::default());
    ferry_engine::plan(&mut job, src.as_ref(), &stats).await.unwrap();
    store.insert("src", "moving", Bytes::from_static(b"the second version, longer"));

    let opts = CopyOptions { server_side: false, ..CopyOptions::default() };
    let run = ferry_providers::RunContext::unlimited();
    let summary = ferry_engine::copy(&mut job, src, dst, opts, stats, &run).await.unwrap();
    assert_eq!((summary.copied, summary.failed, summary.restarted.len()), (2, 0, 1), "{:?}", summary.restarted);
    assert_eq!(store.get("dst", "moving").as_deref(), Some(&b"the second version, longer"[..]));
    assert_eq!(summary.verified_by.get(&Evidence::SizeOnly), None, "{:?}", summary.verified_by);
    assert_eq!(summary.verified_by.get(&Evidence::SourceCrc32c), Some(&2), "{:?}", summary.verified_by);
}

/// A source whose object `cold` is archived and takes two looks after its restore was asked
/// for before it is readable (as a real restore takes hours); the others are online.
struct SlowRestores {
    inner: Arc<dyn Provider>,
    /// Looks (HEADs) since the restore was asked for; `None`: not asked for.
    looks: std::sync::Mutex<Option<u32>>,
}

impl SlowRestores {
    fn class(&self, key: &str, look: bool) -> Option<StorageClass> {
        if key != "cold" {
            return Some(StorageClass::online("STANDARD"));
        }
        let mut looks = self.looks.lock().unwrap();
        let state = match looks.as_mut() {
            None => ArchiveState::Archived,
            Some(n) if *n >= 2 => ArchiveState::Restored,
            Some(n) => {
                *n += u32::from(look);
                ArchiveState::Restoring
            }
        };
        Some(StorageClass { name: "GLACIER".into(), state })
    }
}

#[async_trait]
impl Provider for SlowRestores {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn location(&self) -> &Location {
        self.inner.location()
    }
    fn limits(&self) -> Limits {
        self.inner.limits()
    }
    async fn check(&self, for_write: bool) -> ferry_providers::Result<()> {
        self.inner.check(for_write).await
    }
    fn list(&self) -> BoxStream<'_, ferry_providers::Result<Vec<ObjectEntry>>> {
        use futures::StreamExt;
        self.inner
            .list()
            .map(|page| {
                page.map(|entries| entries.into_iter().map(|e| ObjectEntry { storage_class: self.class(&e.key, false), ..e }).collect())
            })
            .boxed()
    }
    async fn head(&self, key: &str) -> ferry_providers::Result<Option<ObjectEntry>> {
        let head = self.inner.head(key).await?;
        Ok(head.map(|e| ObjectEntry { storage_class: self.class(key, true), ..e }))
    }
    async fn get(&self, key: &str, range: Option<Range<u64>>) -> ferry_providers::Result<Fetched> {
        assert!(!self.class(key, false).unwrap().needs_restore(), "{key} read before it was restored");
        self.inner.get(key, range).await
    }
    async fn put(&self, key: &str, data: Bytes, crc32c: u32, attrs: &PutAttrs) -> ferry_providers::Result<PutReceipt> {
        self.inner.put(key, data, crc32c, attrs).await
    }
    async fn delete(&self, key: &str) -> ferry_providers::Result<()> {
        self.inner.delete(key).await
    }
    async fn restore(
        &self,
        key: &str,
        _: &ferry_core::StorageClass,
        asked: &RestoreRequest,
    ) -> ferry_providers::Result<Option<ferry_core::RestoreTier>> {
        assert_eq!(key, "cold");
        self.looks.lock().unwrap().get_or_insert(0);
        Ok(Some(asked.tier))
    }
}

/// Copies a bucket of one online and one archived object with `--archived restore` and
/// `restore_wait`; returns the summary and the journal's counts after it.
async fn copy_with_restores(restore_wait: Duration) -> (ferry_engine::CopySummary, ferry_journal::StatusCounts) {
    let tmp = tempfile::tempdir().unwrap();
    let store = MemoryStore::new();
    store.create_bucket("dst");
    store.insert("src", "cold", Bytes::from_static(b"frozen bytes"));
    store.insert("src", "warm", Bytes::from_static(b"warm bytes"));
    let src: Arc<dyn Provider> =
        Arc::new(SlowRestores { inner: Arc::new(store.provider("s3://src/")), looks: std::sync::Mutex::new(None) });
    let dst: Arc<dyn Provider> = Arc::new(store.provider("s3://dst/"));
    let (src_loc, dst_loc) = (Location::parse("s3://src/").unwrap(), Location::parse("s3://dst/").unwrap());
    let mut job = Job::open(&tmp.path().join("job"), Some(src_loc), Some(dst_loc), Access::default()).unwrap();
    let request = RestoreRequest { days: 1, tier: RestoreTier::Bulk };
    let opts = CopyOptions { server_side: false, archived: Archived::Restore(request), restore_wait, ..CopyOptions::default() };
    let run = ferry_providers::RunContext::unlimited();
    let summary = ferry_engine::copy(&mut job, src, dst, opts, Arc::new(Stats::default()), &run).await.unwrap();
    let counts = job.journal(ferry_journal::JournalKind::Main).await.unwrap().counts().await.unwrap();
    assert_eq!(store.get("dst", "warm").as_deref(), Some(&b"warm bytes"[..]));
    (summary, counts)
}

// See: issue 14 (`--archived restore`): a restore that takes time is in flight at the end of a
// run without `--restore-wait` (the journal counts it for `ferry status`); with one, the copy
// looks again (bounded, on tokio's paused clock here) and copies the object once it is readable.
#[tokio::test(start_paused = true)]
async fn a_restore_in_flight_is_counted_and_a_bounded_wait_copies_it_once_readable() {
    let (summary, counts) = copy_with_restores(Duration::ZERO).await;
    assert_eq!((summary.copied, summary.failed, summary.restores_requested), (1, 1, 1));
    assert_eq!(summary.failures[0].kind, ferry_core::FailureKind::Archived, "{:?}", summary.failures);
    assert!(summary.failures[0].error.contains("in progress"), "{:?}", summary.failures);
    assert_eq!((counts.restores_requested, counts.restoring), (1, 1), "one restore in flight");

    let started = tokio::time::Instant::now();
    let (summary, counts) = copy_with_restores(Duration::from_secs(3600)).await;
    assert_eq!((summary.copied, summary.failed, summary.restores_requested), (2, 0, 1), "{:?}", summary.failures);
    assert_eq!((counts.restores_requested, counts.restoring), (1, 0));
    // Two looks, five minutes apart, on the paused clock: well within the hour allowed.
    assert!(started.elapsed() < Duration::from_secs(3600), "{:?}", started.elapsed());
}
