//! A delta merges the listing of a source that lists in key order as it arrives: these runs
//! check what it does when such a source breaks the order (it lists again through the
//! key-order spool, and says so), and when its listing fails part way (nothing sealed or
//! merged). The stores are in memory; the real services' listings go the same way in
//! `tests/delta.rs`.

use async_trait::async_trait;
use bytes::Bytes;
use ferry_core::{Limits, Location, ObjectEntry};
use ferry_engine::{Access, CopyOptions, DeltaOptions, Job, Stats};
use ferry_providers::{Fetched, Provider, ProviderError, PutAttrs, PutReceipt, RunContext};
use ferry_testkit::MemoryStore;
use futures::StreamExt;
use futures::stream::BoxStream;
use std::ops::Range;
use std::sync::Arc;

const OBJECTS: usize = 60;
const PAGE: usize = 7;

fn key(i: usize) -> String {
    format!("k/{i:03}")
}

/// What the source's listing does, though it claims key order.
#[derive(Clone, Copy)]
enum Listing {
    /// Page `n` (from 0) comes reversed.
    Reversed(usize),
    /// Page `n` fails.
    Fails(usize),
}

/// A source that claims to list in key order and does not keep its word.
struct Unruly {
    inner: Arc<dyn Provider>,
    listing: Listing,
}

#[async_trait]
impl Provider for Unruly {
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
    fn lists_in_key_order(&self) -> bool {
        true
    }
    fn list(&self) -> BoxStream<'_, ferry_providers::Result<Vec<ObjectEntry>>> {
        let listing = self.listing;
        self.inner
            .list()
            .enumerate()
            .map(move |(n, page)| match (listing, page) {
                (Listing::Reversed(at), Ok(mut page)) if at == n => {
                    page.reverse();
                    Ok(page)
                }
                (Listing::Fails(at), Ok(_)) if at == n => {
                    Err(ProviderError::Denied { provider: "memory", bucket: "src".into(), detail: format!("listing page {n} refused") })
                }
                (_, page) => page,
            })
            .boxed()
    }
    async fn head(&self, key: &str) -> ferry_providers::Result<Option<ObjectEntry>> {
        self.inner.head(key).await
    }
    async fn get(&self, key: &str, range: Option<Range<u64>>) -> ferry_providers::Result<Fetched> {
        self.inner.get(key, range).await
    }
    async fn put(&self, key: &str, data: Bytes, crc32c: u32, attrs: &PutAttrs) -> ferry_providers::Result<PutReceipt> {
        self.inner.put(key, data, crc32c, attrs).await
    }
    async fn delete(&self, key: &str) -> ferry_providers::Result<()> {
        self.inner.delete(key).await
    }
}

/// A job copied from `s3://src/` to `s3://dst/` in memory, and the source then changed: 5
/// added, 5 overwritten with other bytes, 5 deleted.
async fn copied_then_changed(root: &std::path::Path, store: &MemoryStore) -> (Job, Arc<dyn Provider>, Arc<RunContext>) {
    store.create_bucket("src");
    store.create_bucket("dst");
    for i in 0..OBJECTS {
        store.insert("src", &key(i), format!("object {i}"));
    }
    let (src, dst) = (Location::parse("s3://src/").unwrap(), Location::parse("s3://dst/").unwrap());
    let mut job = Job::open(&root.join("job"), Some(src.clone()), Some(dst.clone()), Access::default()).unwrap();
    let run = RunContext::new(Default::default());
    let source: Arc<dyn Provider> = Arc::new(store.open(src).with_page_size(PAGE));
    let destination: Arc<dyn Provider> = Arc::new(store.open(dst));
    let copied =
        ferry_engine::copy(&mut job, source, destination.clone(), CopyOptions::default(), Arc::new(Stats::default()), &run).await.unwrap();
    assert_eq!((copied.copied, copied.failed), (OBJECTS as u64, 0));
    for i in OBJECTS..OBJECTS + 5 {
        store.insert("src", &key(i), format!("added {i}"));
    }
    for i in 10..15 {
        store.insert("src", &key(i), format!("overwritten {i}, other bytes"));
    }
    for i in 30..35 {
        store.provider("s3://src/").delete(&key(i)).await.unwrap();
    }
    (job, destination, run)
}

fn unruly(store: &MemoryStore, listing: Listing) -> Arc<dyn Provider> {
    let inner: Arc<dyn Provider> = Arc::new(store.provider("s3://src/").with_page_size(PAGE));
    Arc::new(Unruly { inner, listing })
}

#[tokio::test]
async fn a_source_that_breaks_its_key_order_is_listed_again_and_sorted_and_the_delta_says_so() {
    let root = tempfile::tempdir().unwrap();
    let store = MemoryStore::new();
    let (mut job, dst, run) = copied_then_changed(root.path(), &store).await;
    let src = unruly(&store, Listing::Reversed(3));
    let opts = DeltaOptions { delete: true, ..DeltaOptions::default() };
    let summary = ferry_engine::delta(&mut job, src, dst, opts, Arc::new(Stats::default()), &run).await.unwrap();

    // Page 3 (keys 21..27 before the deletes) reversed: its second key is the first out of order.
    assert_eq!(summary.listed_out_of_order.as_deref(), Some("k/026"), "{summary:?}");
    let c = &summary.changes;
    assert_eq!((c.added, c.changed, c.deleted), (5, 5, 5), "{c:?}");
    assert_eq!((summary.generation, summary.parent, summary.objects), (2, 1, OBJECTS as u64));
    assert_eq!(summary.copy.as_ref().map(|c| (c.copied, c.failed)), Some((10, 0)));
    assert_eq!(summary.deletes.deleted, 5);
    assert_eq!(store.keys("dst"), store.keys("src"), "the destination is the source again");
    for (k, _) in store.keys("src") {
        assert_eq!(store.get("dst", &k), store.get("src", &k), "{k}");
    }
    // The report says it too.
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(summary.report.unwrap()).unwrap()).unwrap();
    assert_eq!(report["listed_out_of_order"], "k/026");
}

#[tokio::test]
async fn a_listing_in_key_order_is_merged_as_it_arrives_and_says_nothing_of_order() {
    let root = tempfile::tempdir().unwrap();
    let store = MemoryStore::new();
    let (mut job, dst, run) = copied_then_changed(root.path(), &store).await;
    let src: Arc<dyn Provider> = Arc::new(store.provider("s3://src/").with_page_size(PAGE));
    assert!(src.lists_in_key_order());
    let opts = DeltaOptions { delete: true, ..DeltaOptions::default() };
    let summary = ferry_engine::delta(&mut job, src, dst, opts, Arc::new(Stats::default()), &run).await.unwrap();
    assert_eq!(summary.listed_out_of_order, None);
    let c = &summary.changes;
    assert_eq!((c.added, c.changed, c.deleted, c.unchanged), (5, 5, 5, (OBJECTS - 10) as u64), "{c:?}");
    assert_eq!(store.keys("dst"), store.keys("src"));
}

#[tokio::test]
async fn a_listing_that_fails_as_it_arrives_seals_nothing_merges_nothing_and_deletes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let store = MemoryStore::new();
    let (mut job, dst, run) = copied_then_changed(root.path(), &store).await;
    let before = store.keys("dst");
    let src = unruly(&store, Listing::Fails(4));
    let opts = DeltaOptions { delete: true, force_delete: true, ..DeltaOptions::default() };
    let failed = ferry_engine::delta(&mut job, src, dst.clone(), opts.clone(), Arc::new(Stats::default()), &run).await;
    let e = failed.expect_err("a listing that failed is no delta");
    assert!(e.to_string().contains("listing page 4 refused"), "{e}");
    assert!(!job.generation_dir(2).exists(), "no generation 2, sealed or not");
    assert_eq!(store.keys("dst"), before, "nothing deleted, nothing copied");

    // The next delta, on a source that lists whole, finds every change: nothing was merged.
    let src: Arc<dyn Provider> = Arc::new(store.provider("s3://src/").with_page_size(PAGE));
    let summary = ferry_engine::delta(&mut job, src, dst, opts, Arc::new(Stats::default()), &run).await.unwrap();
    let c = &summary.changes;
    assert_eq!((c.added, c.changed, c.deleted, summary.generation), (5, 5, 5, 2), "{c:?}");
    assert_eq!(store.keys("dst"), store.keys("src"));
}
