//! Issue 14: an object restarted because its source changed since the manifest is proved like
//! any other copy, by the checksum the source declares for the version read — never by its
//! size alone where the source declares one. On the in-memory provider; the end-to-end proof on
//! fake-gcs-server is `tests/stored_bytes.rs`.

use async_trait::async_trait;
use bytes::Bytes;
use ferry_core::{Checksums, Evidence, Limits, Location, ObjectEntry};
use ferry_engine::{Access, CopyOptions, Job, Stats};
use ferry_providers::{Fetched, Provider, PutAttrs, PutReceipt};
use ferry_testkit::MemoryStore;
use futures::stream::BoxStream;
use std::ops::Range;
use std::sync::Arc;

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
