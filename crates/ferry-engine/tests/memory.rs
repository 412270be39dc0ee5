//! The scheduler and the mover on the testkit's in-memory and fault-injecting providers: a copy
//! of many objects, a corrupted read, throttling, a fatal error and a failed object, each in
//! milliseconds with no service and no network. Backoff and delays run on tokio's paused clock,
//! so no test waits for real time.
//!
//! The end-to-end tests on real services (tests/*.rs at the workspace root) stay the proof
//! that the adapters behave; these prove what the engine does with what providers answer.

use async_trait::async_trait;
use bytes::Bytes;
use ferry_core::{ErrorClass, Limits, Location, ObjectEntry};
use ferry_engine::{Access, CopyOptions, CopySummary, Job, Stats, copy};
use ferry_providers::{Fetched, Provider, PutAttrs, PutReceipt};
use ferry_testkit::faulty::{Fault, Method, Rule, When};
use ferry_testkit::{FaultyProvider, MemoryStore};
use futures::stream::BoxStream;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Bytes of object `i`: distinct per object, so a mix-up shows.
fn data(i: usize, len: usize) -> Bytes {
    (0..len).map(|b| (b as u64 * 31 + i as u64 * 7919) as u8).collect::<Vec<u8>>().into()
}

fn key(i: usize) -> String {
    format!("obj/{i:05}")
}

/// A store whose bucket `src` holds `n` objects of `len` bytes.
fn store_with(n: usize, len: usize) -> MemoryStore {
    let store = MemoryStore::new();
    store.create_bucket("dst");
    for i in 0..n {
        store.insert("src", &key(i), data(i, len));
    }
    store
}

fn job(dir: &std::path::Path) -> Job {
    let src = Location::parse("s3://src/").unwrap();
    let dst = Location::parse("s3://dst/").unwrap();
    Job::open(&dir.join("job"), Some(src), Some(dst), Access::default()).unwrap()
}

/// Bytes move through ferry (the memory store could copy by itself).
fn through_ferry(transfers: usize) -> CopyOptions {
    CopyOptions { transfers, server_side: false, ..CopyOptions::default() }
}

async fn run(store: &MemoryStore, src: Arc<dyn Provider>, dst: Arc<dyn Provider>, opts: CopyOptions) -> CopySummary {
    run_in(&ferry_providers::RunContext::unlimited(), store, src, dst, opts).await
}

/// [`run`] in `ctx`, the run a [`FaultyProvider`] was put `in_run`.
async fn run_in(
    ctx: &Arc<ferry_providers::RunContext>,
    store: &MemoryStore,
    src: Arc<dyn Provider>,
    dst: Arc<dyn Provider>,
    opts: CopyOptions,
) -> CopySummary {
    let tmp = tempfile::tempdir().unwrap();
    let summary = copy(&mut job(tmp.path()), src, dst, opts, Arc::new(Stats::default()), ctx).await.unwrap();
    assert!(store.open_uploads().is_empty(), "no upload left open: {:?}", store.open_uploads());
    summary
}

/// Every object of `src` is in `dst` with the same bytes.
fn assert_copied(store: &MemoryStore, n: usize) {
    let (src, dst) = (store.keys("src"), store.keys("dst"));
    assert_eq!(dst.len(), n, "objects at the destination");
    assert_eq!(src, dst, "same keys and sizes");
    for (k, _) in &src {
        assert_eq!(store.get("dst", k), store.get("src", k), "{k}: same bytes");
    }
}

#[tokio::test]
async fn ten_thousand_objects_are_copied_in_memory() {
    let n = 10_000;
    let store = store_with(n, 64);
    let (src, dst) = (Arc::new(store.provider("s3://src/")), Arc::new(store.provider("s3://dst/")));
    let summary = run(&store, src, dst, through_ferry(16)).await;
    assert_eq!((summary.copied, summary.failed, summary.already_done), (n as u64, 0, 0), "{summary:?}");
    assert_eq!(summary.bytes_copied, n as u64 * 64);
    assert_eq!(summary.verified_by.get(&ferry_core::Evidence::SourceCrc32c), Some(&(n as u64)), "every read proved by the source's CRC32C");
    assert_copied(&store, n);
}

#[tokio::test(start_paused = true)]
async fn a_corrupted_part_is_read_again_and_the_object_ends_correct() {
    // One object of 3.5 parts: the second ranged read comes back with a byte flipped.
    let len = (7 << 20) / 2;
    let store = store_with(1, len);
    let src = Arc::new(FaultyProvider::new(Arc::new(store.provider("s3://src/"))).inject(Method::Get, When::Nth(2), Fault::Corrupt));
    let dst = Arc::new(store.provider("s3://dst/"));
    let opts = CopyOptions { part_size: Some(1 << 20), ..through_ferry(4) };
    let summary = run(&store, src.clone(), dst, opts).await;
    assert_eq!((summary.copied, summary.failed), (1, 0), "{summary:?}");
    assert_copied(&store, 1);
    assert_eq!(src.injected(Method::Get), 1);
    assert_eq!(src.calls(Method::Get), 8, "four parts read, then all four again");
    assert!(summary.retries.get("checksum mismatch") == Some(&1), "the retry is counted once, in this run's counts: {:?}", summary.retries);
    assert_eq!(summary.verified_by.get(&ferry_core::Evidence::SourceCrc32c), Some(&1));
}

/// A destination that counts the puts in flight when each one starts; each put takes 5 ms of
/// tokio's clock, so objects copied at once overlap there.
struct InFlight {
    inner: Arc<dyn Provider>,
    now: AtomicUsize,
    /// In flight when each put started, in order.
    seen: Mutex<Vec<usize>>,
}

#[async_trait]
impl Provider for InFlight {
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
        self.inner.list()
    }
    async fn head(&self, key: &str) -> ferry_providers::Result<Option<ObjectEntry>> {
        self.inner.head(key).await
    }
    async fn get(&self, key: &str, range: Option<Range<u64>>) -> ferry_providers::Result<Fetched> {
        self.inner.get(key, range).await
    }
    async fn put(&self, key: &str, data: Bytes, crc32c: u32, attrs: &PutAttrs) -> ferry_providers::Result<PutReceipt> {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.seen.lock().unwrap().push(now);
        tokio::time::sleep(Duration::from_millis(5)).await;
        let put = self.inner.put(key, data, crc32c, attrs).await;
        self.now.fetch_sub(1, Ordering::SeqCst);
        put
    }
    async fn delete(&self, key: &str) -> ferry_providers::Result<()> {
        self.inner.delete(key).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_throttled_run_slows_down_and_recovers() {
    let n = 300;
    let store = store_with(n, 1024);
    let src = Arc::new(store.provider("s3://src/"));
    let probe = Arc::new(InFlight { inner: Arc::new(store.provider("s3://dst/")), now: AtomicUsize::new(0), seen: Mutex::default() });
    // The service answers the first six puts with 429 SlowDown, then takes everything.
    let ctx = ferry_providers::RunContext::unlimited();
    let dst = Arc::new(FaultyProvider::new(probe.clone()).in_run(&ctx).inject(Method::Put, When::First(6), Fault::Throttle));
    let summary = run_in(&ctx, &store, src, dst.clone(), through_ferry(8)).await;
    assert_eq!((summary.copied, summary.failed), (n as u64, 0), "{summary:?}");
    assert_copied(&store, n);
    assert_eq!(dst.injected(Method::Put), 6);
    assert!(summary.transfers_lowest < 8, "slowed down: lowest {} of 8", summary.transfers_lowest);
    let seen = probe.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), n, "one successful put per object");
    // Slow at first (at most the lowest limit once the limit came down), back to 8 at the end.
    let low = seen.iter().position(|&s| s <= summary.transfers_lowest).expect("puts while slowed down");
    let tail = &seen[seen.len() - 40..];
    assert!(tail.contains(&8), "recovered to 8 objects at once: {tail:?}");
    assert!(low < seen.len() - 40, "slowed before the end: {seen:?}");
}

#[tokio::test(start_paused = true)]
async fn a_fatal_error_stops_the_pass() {
    let n = 500;
    let store = store_with(n, 256);
    let src = Arc::new(store.provider("s3://src/"));
    let dst = Arc::new(FaultyProvider::new(Arc::new(store.provider("s3://dst/"))).inject(
        Method::Put,
        When::Nth(20),
        Fault::Fail(ErrorClass::Fatal),
    ));
    let summary = run(&store, src, dst.clone(), through_ferry(4)).await;
    let stopped = summary.stopped_by.as_deref().expect("the pass stopped");
    assert!(stopped.contains("injected Fatal failure"), "{stopped}");
    assert_eq!(summary.failed, 1, "{summary:?}");
    // Objects already in flight finish; nothing new starts.
    assert!(summary.copied >= 19 && summary.copied < 19 + 4, "{} copied", summary.copied);
    assert!(dst.calls(Method::Put) < 20 + 4, "{} puts", dst.calls(Method::Put));
    assert_eq!(store.keys("dst").len() as u64, summary.copied);
}

#[tokio::test(start_paused = true)]
async fn a_failure_on_one_object_does_not_stop_the_others() {
    let n = 100;
    let store = store_with(n, 256);
    let src = Arc::new(FaultyProvider::new(Arc::new(store.provider("s3://src/"))));
    // One object the source refuses for good; one whose reads always drop (retried, then failed).
    src.add(Rule::new(Method::Get, When::Always, Fault::Fail(ErrorClass::PerObject)).for_key(key(50)));
    src.add(Rule::new(Method::Get, When::Always, Fault::Drop).for_key(key(70)));
    let dst = Arc::new(store.provider("s3://dst/"));
    let opts = through_ferry(8);
    // A dropped read is a transient failure of one request: sent again by the request layer,
    // not restarted by the mover (issue 13: one retry layer).
    let attempts = u64::from(ferry_providers::retries::REQUEST.attempts);
    let summary = run(&store, src.clone(), dst, opts).await;
    assert_eq!((summary.copied, summary.failed, summary.stopped_by.as_deref()), (n as u64 - 2, 2, None), "{summary:?}");
    let failed: Vec<&str> = summary.failures.iter().map(|f| f.key.as_str()).collect();
    assert_eq!(failed, [key(50), key(70)]);
    assert_eq!(
        src.injected(Method::Get),
        1 + attempts,
        "a per-object failure is not retried; a dropped read is sent the request layer's attempts, no more"
    );
    assert_eq!(store.keys("dst").len(), n - 2);
}

// Found in review (issue 13): the write ledger's HEAD of the destination failed the object —
// and, denied, stopped the run — where credentials may write but not read (a write-only SAS,
// a "drop bucket" policy), which copied before the ledger asked.
#[tokio::test(start_paused = true)]
async fn a_destination_that_may_write_but_not_read_is_copied_and_its_ledger_says_unknown() {
    let n = 20;
    let store = store_with(n, 100);
    let src = Arc::new(store.provider("s3://src/"));
    let dst = Arc::new(FaultyProvider::new(Arc::new(store.provider("s3://dst/"))));
    dst.add(Rule::new(Method::Head, When::Always, Fault::Fail(ErrorClass::Fatal)));
    // Nor list: the run cannot take its prior states from a listing, and asks each key.
    dst.add(Rule::new(Method::List, When::Always, Fault::Fail(ErrorClass::Fatal)));
    let tmp = tempfile::tempdir().unwrap();
    let mut job = job(tmp.path());
    let run = ferry_providers::RunContext::unlimited();
    let summary = copy(&mut job, src, dst.clone(), through_ferry(4), Arc::new(Stats::default()), &run).await.unwrap();
    assert_eq!((summary.copied, summary.failed, summary.stopped_by.as_deref()), (n as u64, 0, None), "{summary:?}");
    assert!(dst.injected(Method::Head) >= n as u64, "every write asked first");
    let journal = job.journal(ferry_journal::JournalKind::Main).await.unwrap();
    let rows = journal.writes(None, 0, 1000).await.unwrap();
    assert_eq!(rows.len(), n);
    assert!(rows.iter().all(|r| r.prior == ferry_journal::Prior::Unknown && r.seen == ferry_journal::Seen::None && r.wrote.is_some()));
}

// Issue 13: the ledger's prior states cost a HEAD per object (2000 small objects took twice the
// CPU); a destination no larger than twice what the run writes is listed once instead.
#[tokio::test(start_paused = true)]
async fn a_small_destination_is_listed_once_instead_of_a_head_per_write() {
    let n = 30;
    let store = store_with(n, 100);
    // The destination already holds two of the keys (one the same size, one not) and one other.
    store.insert("dst", &key(3), data(3, 100));
    store.insert("dst", &key(4), data(4, 7));
    store.insert("dst", "elsewhere", data(0, 5));
    let src = Arc::new(store.provider("s3://src/"));
    let dst = Arc::new(FaultyProvider::new(Arc::new(store.provider("s3://dst/"))));
    let tmp = tempfile::tempdir().unwrap();
    let mut job = job(tmp.path());
    let run = ferry_providers::RunContext::unlimited();
    let summary = copy(&mut job, src, dst.clone(), through_ferry(4), Arc::new(Stats::default()), &run).await.unwrap();
    assert_eq!((summary.copied, summary.failed), (n as u64, 0), "{summary:?}");
    assert_eq!(dst.calls(Method::Head), 0, "no HEAD: the listing said what each key held");
    assert!(dst.calls(Method::List) <= 2, "one page of keys (and the listing's end): {}", dst.calls(Method::List));
    let journal = job.journal(ferry_journal::JournalKind::Main).await.unwrap();
    let rows = journal.writes(None, 0, 1000).await.unwrap();
    assert_eq!(rows.len(), n);
    for row in &rows {
        assert_eq!(row.seen, ferry_journal::Seen::Listing, "{row:?}");
        let size = match &row.prior {
            ferry_journal::Prior::Present { size, etag, .. } => {
                assert!(etag.is_some(), "the listing's etag is recorded for {}", row.key);
                Some(*size)
            }
            ferry_journal::Prior::Absent => None,
            other => panic!("{}: {other:?}", row.key),
        };
        let expected = match row.key.as_str() {
            k if k == key(3) => Some(100),
            k if k == key(4) => Some(7),
            _ => None,
        };
        assert_eq!(size, expected, "{}", row.key);
    }
}

#[tokio::test(start_paused = true)]
async fn a_destination_larger_than_twice_the_run_is_not_listed_through_and_each_write_heads_its_key() {
    let n = 5;
    let store = store_with(n, 100);
    for i in 0..11 {
        store.insert("dst", &format!("other/{i}"), data(i, 3));
    }
    let src = Arc::new(store.provider("s3://src/"));
    let dst = Arc::new(FaultyProvider::new(Arc::new(store.open(Location::parse("s3://dst/").unwrap()).with_page_size(4))));
    let tmp = tempfile::tempdir().unwrap();
    let mut job = job(tmp.path());
    let run = ferry_providers::RunContext::unlimited();
    let summary = copy(&mut job, src, dst.clone(), through_ferry(2), Arc::new(Stats::default()), &run).await.unwrap();
    assert_eq!((summary.copied, summary.failed), (n as u64, 0), "{summary:?}");
    assert_eq!(dst.calls(Method::List), 3, "the listing stops once it holds more than 2 × 5 keys");
    assert_eq!(dst.calls(Method::Head), n as u64, "each write HEADs its key");
    let journal = job.journal(ferry_journal::JournalKind::Main).await.unwrap();
    let rows = journal.writes(None, 0, 1000).await.unwrap();
    assert!(rows.iter().all(|r| r.seen == ferry_journal::Seen::Head && r.prior == ferry_journal::Prior::Absent), "{rows:?}");
}
