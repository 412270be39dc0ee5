//! The conformance suite: what every provider adapter must do, run against its real service.
//!
//! An adapter's test file (`tests/conformance_s3.rs`, …) starts its service, says how to open a
//! provider on a fresh location and what the provider declares about itself ([`Adapter`],
//! [`Options`]: its limits and capabilities), and calls [`run`] — the way object_store's
//! `integration.rs` and rclone's `fstests` are used. Every check in [`CHECKS`] runs on a
//! location of its own, in a task of its own: a failing check does not hide the others, and the
//! test fails naming each check that failed and why.

use bytes::Bytes;
use ferry_core::{ErrorClass, Limits, Location, ObjectEntry, PartPlan, crc32c};
use ferry_providers::{Connect, PartReceipt, Provider, ProviderError, PutAttrs};
use futures::StreamExt;
use futures::future::BoxFuture;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Opens a provider on an empty location of its own, for the check (and role) named.
pub type Open = Arc<dyn Fn(String) -> BoxFuture<'static, Arc<dyn Provider>> + Send + Sync>;

/// How the listing orders keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListOrder {
    /// By the keys' bytes (object stores).
    Bytes,
    /// Folder by folder, names sorted within each (a walk of a file system): `a/b` before `a-b`.
    NamesPerFolder,
}

/// What a provider declares about itself; the checks hold it to each.
#[derive(Debug, Clone)]
pub struct Options {
    /// What [`Provider::limits`] reports.
    pub limits: Limits,
    /// Content type and user metadata survive a put, a multipart upload and a server-side copy.
    pub keeps_attributes: bool,
    pub list_order: ListOrder,
    /// [`ferry_providers::Multipart::stale_uploads`] lists open uploads (else it answers a
    /// configuration error saying it cannot).
    pub lists_uploads: bool,
    /// [`Provider::server_copy`] is offered.
    pub server_copy: bool,
    /// A server-side copy of an object over the part size is made in parts (and journaled
    /// through `started` first).
    pub copies_in_parts: bool,
    /// A path segment of 255 bytes is a valid key.
    pub long_segment: bool,
    /// The service refuses a server-side copy whose source changed since its HEAD (the
    /// adapter's precondition). Where an emulator ignores it, the copy's checksum must still
    /// differ from the HEAD's, so the copier's proof catches the change.
    pub copy_refuses_changed: bool,
    /// Aborting an upload that is already gone succeeds (the service says it does not exist).
    pub aborts_gone_uploads: bool,
}

/// An adapter under test: how to open its providers, and what they declare.
#[derive(Clone)]
pub struct Adapter {
    /// A provider on an empty location of its own, given a name unique to the caller.
    pub open: Open,
    /// A provider whose bucket, container or directory does not exist.
    pub missing: Open,
    /// How the providers are reached (what a server-side copy between two of them compares).
    pub connect: Connect,
    pub options: Options,
    /// What must live as long as the adapter (its service, its directory).
    keep: Vec<Arc<dyn std::any::Any + Send + Sync>>,
}

impl Adapter {
    pub fn new(open: Open, missing: Open, connect: Connect, options: Options) -> Adapter {
        Adapter { open, missing, connect, options, keep: Vec::new() }
    }

    /// Keeps `thing` (a service handle, a temp directory) alive as long as the adapter.
    pub fn keeping(mut self, thing: impl std::any::Any + Send + Sync) -> Adapter {
        self.keep.push(Arc::new(thing));
        self
    }

    /// An adapter opened through the registry: each check gets `{base}{name}/` (created first
    /// for a local directory), and `missing` names a location that does not exist.
    pub fn registry(base: &str, missing: &str, connect: Connect, options: Options) -> Adapter {
        let (base, missing) = (base.to_string(), missing.to_string());
        let open_connect = connect.clone();
        let open: Open = Arc::new(move |name: String| {
            let (url, connect) = (format!("{base}{name}/"), open_connect.clone());
            Box::pin(async move {
                let location = Location::parse(&url).unwrap_or_else(|e| panic!("{url}: {e}"));
                if location.scheme == ferry_core::Scheme::Local {
                    std::fs::create_dir_all(&location.prefix).expect("create the check's directory");
                }
                ferry_providers::open(&location, &connect, &ferry_providers::RunContext::unlimited())
                    .await
                    .unwrap_or_else(|e| panic!("open {url}: {e}"))
            })
        });
        let missing_connect = connect.clone();
        let missing: Open = Arc::new(move |_| {
            let (url, connect) = (missing.clone(), missing_connect.clone());
            Box::pin(async move {
                let location = Location::parse(&url).unwrap_or_else(|e| panic!("{url}: {e}"));
                ferry_providers::open(&location, &connect, &ferry_providers::RunContext::unlimited())
                    .await
                    .unwrap_or_else(|e| panic!("open {url}: {e}"))
            })
        });
        Adapter::new(open, missing, connect, options)
    }
}

/// What a check is given: the adapter, and its own name (its locations are named after it).
#[derive(Clone)]
pub struct Ctx {
    pub adapter: Adapter,
    pub check: &'static str,
}

impl Ctx {
    /// A provider on an empty location of this check's own (`role` tells two apart).
    pub async fn open(&self, role: &str) -> Arc<dyn Provider> {
        (self.adapter.open)(format!("{}-{role}", self.check)).await
    }

    fn options(&self) -> &Options {
        &self.adapter.options
    }
}

type Check = fn(Ctx) -> BoxFuture<'static, ()>;

macro_rules! checks {
    ($($name:ident),* $(,)?) => {
        /// Every check, by name.
        pub const CHECKS: &[(&str, Check)] = &[$((stringify!($name), |c| Box::pin($name(c)))),*];
    };
}

checks!(
    limits,
    check_and_missing_bucket,
    missing_objects,
    put_head_get_delete,
    ranged_get,
    key_edge_cases,
    list_order,
    multipart_in_any_order,
    multipart_resume,
    multipart_abort,
    stale_uploads,
    server_copy,
);

/// One `#[test]` per check (see [`CHECKS`]), each on an adapter of its own made by
/// `$adapter` (an expression, evaluated in each test): a broken adapter method fails only the
/// checks that use it.
#[macro_export]
macro_rules! conformance_tests {
    ($adapter:expr) => {
        $crate::conformance_tests!(@each $adapter;
            limits, check_and_missing_bucket, missing_objects, put_head_get_delete, ranged_get, key_edge_cases,
            list_order, multipart_in_any_order, multipart_resume, multipart_abort, stale_uploads, server_copy);
    };
    (@each $adapter:expr; $($check:ident),*) => {
        $(
            #[test]
            fn $check() {
                $crate::conformance::run_checks($adapter, &[stringify!($check)]);
            }
        )*
        /// The tests above are every check there is.
        #[test]
        fn every_check_has_a_test() {
            let tested = [$(stringify!($check)),*];
            let all: Vec<&str> = $crate::conformance::CHECKS.iter().map(|(name, _)| *name).collect();
            assert_eq!(tested.to_vec(), all);
        }
    };
}

/// Runs every check against `adapter` (each in its own task, all to the end), then fails
/// naming each check that failed.
pub fn run(adapter: Adapter) {
    run_checks(adapter, &CHECKS.iter().map(|(name, _)| *name).collect::<Vec<_>>());
}

/// Runs the checks named (see [`CHECKS`]).
pub fn run_checks(adapter: Adapter, names: &[&str]) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let failed: Vec<String> = rt.block_on(async {
        let mut running = Vec::new();
        for name in names {
            let (name, check) = *CHECKS.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no check named {name}"));
            running.push((name, tokio::spawn(check(Ctx { adapter: adapter.clone(), check: name }))));
        }
        let mut failed = Vec::new();
        for (name, task) in running {
            if let Err(e) = task.await {
                let why = match e.try_into_panic() {
                    Ok(p) => p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())),
                    Err(e) => Some(e.to_string()),
                };
                failed.push(format!("{name}: {}", why.unwrap_or_default()));
            }
        }
        failed
    });
    assert!(failed.is_empty(), "{} of {} conformance checks failed:\n{}", failed.len(), names.len(), failed.join("\n"));
}

fn bytes_of(seed: u8, len: usize) -> Bytes {
    Bytes::from((0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect::<Vec<u8>>())
}

fn attrs() -> PutAttrs {
    PutAttrs {
        content_type: Some("text/x-ferry".into()),
        metadata: BTreeMap::from([("origin".to_string(), "conformance".to_string())]),
        ..PutAttrs::default()
    }
}

async fn put(p: &dyn Provider, key: &str, data: &Bytes) {
    p.put(key, data.clone(), crc32c(data), &attrs()).await.unwrap_or_else(|e| panic!("{}: put {key:?}: {e}", p.name()));
}

async fn read(p: &dyn Provider, key: &str) -> Bytes {
    p.get(key, None).await.unwrap_or_else(|e| panic!("{}: get {key:?}: {e}", p.name())).data
}

async fn head(p: &dyn Provider, key: &str) -> Option<ObjectEntry> {
    p.head(key).await.unwrap_or_else(|e| panic!("{}: head {key:?}: {e}", p.name()))
}

/// Every object under the provider's location, in listing order (skipped entries, such as
/// another upload's parts, left out).
pub async fn listed(p: &dyn Provider) -> Vec<ObjectEntry> {
    let mut out = Vec::new();
    let mut pages = p.list();
    while let Some(page) = pages.next().await {
        out.extend(page.unwrap_or_else(|e| panic!("{}: list: {e}", p.name())).into_iter().filter(|e| e.skipped.is_none()));
    }
    out
}

/// Every key and size under the provider's location.
pub async fn list_all(p: &dyn Provider) -> BTreeMap<String, u64> {
    listed(p).await.into_iter().map(|e| (e.key, e.size)).collect()
}

/// The part size multipart checks send: the provider's minimum, at least 256 KiB.
fn part_size(o: &Options) -> usize {
    o.limits.min_part_size.max(256 << 10) as usize
}

/// The provider reports the limits it declares, and they are coherent: a default part between
/// the smallest and the largest, and the largest object cut within the part count.
async fn limits(c: Ctx) {
    let p = c.open("p").await;
    let l = c.options().limits;
    assert_eq!(p.limits(), l, "{}: limits", p.name());
    assert!(l.min_part_size <= l.default_part_size && l.default_part_size <= l.max_part_size, "{}: default part size {l:?}", p.name());
    if l.max_object_size != u64::MAX {
        let plan = PartPlan::choose(l.max_object_size, None, &l);
        assert!(plan.count() <= l.max_parts, "{}: the largest object needs {} parts, more than {}", p.name(), plan.count(), l.max_parts);
        assert!(plan.part_size <= l.max_part_size, "{}: the largest object's parts are over the maximum: {plan:?}", p.name());
    }
}

/// The location is checked in one request; a bucket that does not exist is named, and fatal.
async fn check_and_missing_bucket(c: Ctx) {
    let p = c.open("p").await;
    p.check(false).await.unwrap_or_else(|e| panic!("{}: check: {e}", p.name()));
    let missing = (c.adapter.missing)(String::new()).await;
    match missing.check(false).await {
        Err(e @ ProviderError::NoSuchBucket { .. }) => assert_eq!(e.class(), ErrorClass::Fatal),
        other => panic!("{}: check of a missing bucket gave {other:?}", p.name()),
    }
}

/// A key nobody wrote: no head, a get that says not found, a delete that succeeds.
async fn missing_objects(c: Ctx) {
    let p = c.open("p").await;
    assert!(head(p.as_ref(), "missing").await.is_none(), "{}: head of a missing key", p.name());
    match p.get("missing", None).await {
        Err(ProviderError::NotFound { .. }) => {}
        other => panic!("{}: get of a missing key gave {:?}", p.name(), other.map(|f| f.data.len())),
    }
    p.delete("missing").await.unwrap_or_else(|e| panic!("{}: deleting a missing key must succeed: {e}", p.name()));
}

/// A put is read back whole, described by head (size, and attributes where kept), deleted;
/// an empty object too.
async fn put_head_get_delete(c: Ctx) {
    let p = c.open("p").await;
    let name = p.name();
    let data = bytes_of(1, 4321);
    put(p.as_ref(), "object.bin", &data).await;
    let got = p.get("object.bin", None).await.unwrap_or_else(|e| panic!("{name}: get: {e}"));
    assert_eq!(got.data, data, "{name}: get returned other bytes");
    assert_eq!(got.object.size, data.len() as u64, "{name}: get's size");
    let h = head(p.as_ref(), "object.bin").await.unwrap_or_else(|| panic!("{name}: head of a written object"));
    assert_eq!((h.key.as_str(), h.size), ("object.bin", data.len() as u64), "{name}: head");
    if c.options().keeps_attributes {
        assert_eq!(h.content_type.as_deref(), Some("text/x-ferry"), "{name}: content type");
        assert_eq!(h.metadata.get("origin").map(String::as_str), Some("conformance"), "{name}: metadata");
    }
    // A second put replaces the first.
    let again = bytes_of(2, 100);
    put(p.as_ref(), "object.bin", &again).await;
    assert_eq!(read(p.as_ref(), "object.bin").await, again, "{name}: an overwrite");
    let empty = Bytes::new();
    put(p.as_ref(), "empty", &empty).await;
    assert_eq!(read(p.as_ref(), "empty").await.len(), 0, "{name}: empty object");
    assert_eq!(head(p.as_ref(), "empty").await.map(|h| h.size), Some(0), "{name}: head of an empty object");
    p.delete("object.bin").await.unwrap_or_else(|e| panic!("{name}: delete: {e}"));
    assert!(head(p.as_ref(), "object.bin").await.is_none(), "{name}: a deleted object is still there");
    assert_eq!(list_all(p.as_ref()).await.into_keys().collect::<Vec<_>>(), ["empty"], "{name}: listing after the delete");
}

/// Ranges at the start, the middle and the end, and one byte, each reporting the whole size.
async fn ranged_get(c: Ctx) {
    let p = c.open("p").await;
    let name = p.name();
    let data = bytes_of(3, 10_000);
    put(p.as_ref(), "ranged", &data).await;
    for r in [0..100u64, 4000..6000, 9000..10_000, 5000..5001] {
        let got = p.get("ranged", Some(r.clone())).await.unwrap_or_else(|e| panic!("{name}: get {r:?}: {e}"));
        assert_eq!(got.data, data.slice(r.start as usize..r.end as usize), "{name}: bytes of {r:?}");
        assert_eq!(got.object.size, data.len() as u64, "{name}: a ranged get of {r:?} reports the whole size");
    }
}

const AWKWARD_KEYS: [&str; 11] = [
    "plain.txt",
    "with space/and more.txt",
    "plus+sign",
    "per%cent",
    "percent/%41%2F not decoded",
    "hash#tag",
    "caf\u{e9}-nfc",
    "cafe\u{301}-nfd",
    "unicode/\u{65e5}\u{672c}\u{8a9e} \u{43a}\u{43b}\u{44e}\u{447}.txt",
    "a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/deep",
    "emoji \u{1f6a2}",
];

/// Keys with spaces, `+`, `%` (never decoded), `#`, both Unicode normal forms (two keys), deep
/// paths and, where allowed, a 255-byte segment: each written, read (whole and ranged), headed
/// and listed as itself.
async fn key_edge_cases(c: Ctx) {
    let p = c.open("p").await;
    let name = p.name();
    let mut keys: Vec<String> = AWKWARD_KEYS.iter().map(|k| k.to_string()).collect();
    if c.options().long_segment {
        keys.push(format!("long/{}", "n".repeat(255)));
    }
    for (i, key) in keys.iter().enumerate() {
        let data = bytes_of(i as u8, 1000 + i);
        put(p.as_ref(), key, &data).await;
        assert_eq!(read(p.as_ref(), key).await, data, "{name}: get {key:?} returned other bytes");
        let part = p.get(key, Some(100..200)).await.unwrap_or_else(|e| panic!("{name}: ranged get {key:?}: {e}"));
        assert_eq!(part.data, data.slice(100..200), "{name}: ranged get {key:?}");
        assert_eq!(head(p.as_ref(), key).await.map(|h| h.size), Some(data.len() as u64), "{name}: head {key:?}");
    }
    let listed = list_all(p.as_ref()).await;
    assert_eq!(listed.keys().cloned().collect::<BTreeSet<_>>(), keys.iter().cloned().collect(), "{name}: listing");
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(listed[key], 1000 + i as u64, "{name}: listed size of {key:?}");
    }
}

/// Keys written out of order are listed in the provider's declared order, relative to the
/// location, each once.
async fn list_order(c: Ctx) {
    let p = c.open("p").await;
    let keys = ["b", "a/b", "a-b", "a0", "B", "\u{e9}", "~x", "a b", "a/a/z", "a/c"];
    for (i, key) in keys.iter().enumerate() {
        put(p.as_ref(), key, &bytes_of(i as u8, 10)).await;
    }
    let got: Vec<String> = listed(p.as_ref()).await.into_iter().map(|e| e.key).collect();
    let mut want: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    match c.options().list_order {
        ListOrder::Bytes => want.sort(),
        ListOrder::NamesPerFolder => want.sort_by(|a, b| a.split('/').cmp(b.split('/'))),
    }
    assert_eq!(got, want, "{}: listing order", p.name());
}

/// Parts started in index order and finished in reverse, the last one short, make the object;
/// its attributes are kept where declared.
async fn multipart_in_any_order(c: Ctx) {
    let p = c.open("p").await;
    let name = p.name();
    let mp = p.multipart().unwrap_or_else(|| panic!("{name}: no multipart capability"));
    let size = part_size(c.options());
    let parts: Vec<Bytes> = [size, size, 1234].iter().enumerate().map(|(i, n)| bytes_of(100 + i as u8, *n)).collect();
    let total: u64 = parts.iter().map(|d| d.len() as u64).sum();
    let mut upload = mp
        .start("multi/part object", &attrs(), total, "0123456789abcdef0123456789abcdef")
        .await
        .unwrap_or_else(|e| panic!("{name}: start: {e}"));
    let mut offset = 0u64;
    let mut sending = Vec::new();
    for (i, data) in parts.iter().enumerate() {
        sending.push(upload.put_part(i as u32, offset, data.clone(), crc32c(data)));
        offset += data.len() as u64;
    }
    let mut receipts: Vec<PartReceipt> = Vec::new();
    for fut in sending.into_iter().rev() {
        receipts.push(fut.await.unwrap_or_else(|e| panic!("{name}: put part: {e}")));
    }
    receipts.sort_by_key(|r| r.index);
    upload.complete(receipts).await.unwrap_or_else(|e| panic!("{name}: complete: {e}"));
    let whole: Vec<u8> = parts.iter().flat_map(|b| b.iter().copied()).collect();
    let got = read(p.as_ref(), "multi/part object").await;
    assert!(got == whole, "{name}: the multipart object has other bytes ({} vs {})", got.len(), whole.len());
    let h = head(p.as_ref(), "multi/part object").await.unwrap_or_else(|| panic!("{name}: the multipart object is missing"));
    if c.options().keeps_attributes {
        assert_eq!(h.content_type.as_deref(), Some("text/x-ferry"), "{name}: multipart content type");
        assert_eq!(h.metadata.get("origin").map(String::as_str), Some("conformance"), "{name}: multipart metadata");
    }
    assert_eq!(list_all(p.as_ref()).await, BTreeMap::from([("multi/part object".to_string(), total)]), "{name}: listing");
}

/// An upload left by a process that died is reattached by its id: the parts acknowledged are
/// held (with the journal's receipts where the service keeps no checksum), the rest are sent,
/// and the object completes. An upload nobody started has nothing to resume.
async fn multipart_resume(c: Ctx) {
    let p = c.open("p").await;
    let name = p.name();
    let mp = p.multipart().unwrap_or_else(|| panic!("{name}: no multipart capability"));
    let size = part_size(c.options());
    let parts: Vec<Bytes> = [size, size, 999].iter().enumerate().map(|(i, n)| bytes_of(40 + i as u8, *n)).collect();
    let total: u64 = parts.iter().map(|d| d.len() as u64).sum();
    let key = "resumed/object";
    let ferry_id = "00112233445566778899aabbccddeeff";
    let mut upload = mp.start(key, &attrs(), total, ferry_id).await.unwrap_or_else(|e| panic!("{name}: start: {e}"));
    let upload_id = upload.upload_id().unwrap_or_else(|| ferry_id.to_string());
    let mut recorded = Vec::new();
    for (i, data) in parts.iter().enumerate().take(2) {
        let r = upload.put_part(i as u32, (i * size) as u64, data.clone(), crc32c(data)).await;
        recorded.push(r.unwrap_or_else(|e| panic!("{name}: put part {i}: {e}")));
    }
    drop(upload); // the process dies

    let resumed = mp.resume(key, &upload_id, &attrs(), total, &recorded).await.unwrap_or_else(|e| panic!("{name}: resume: {e}"));
    let (mut upload, held) = resumed.unwrap_or_else(|| panic!("{name}: an upload with two parts is not resumable"));
    let summary = |r: &[PartReceipt]| r.iter().map(|p| (p.index, p.size, p.crc32c)).collect::<Vec<_>>();
    assert_eq!(summary(&held), summary(&recorded), "{name}: parts held after resume");
    let last = upload.put_part(2, 2 * size as u64, parts[2].clone(), crc32c(&parts[2])).await;
    let mut all = held;
    all.push(last.unwrap_or_else(|e| panic!("{name}: put part after resume: {e}")));
    upload.complete(all).await.unwrap_or_else(|e| panic!("{name}: complete after resume: {e}"));
    let whole: Vec<u8> = parts.iter().flat_map(|b| b.iter().copied()).collect();
    assert!(read(p.as_ref(), key).await == whole, "{name}: the resumed object has other bytes");

    // Nothing to resume: an answer of none, or of no parts, or that the upload cannot be found.
    match mp.resume("never/started", "ffeeddccbbaa99887766554433221100", &attrs(), total, &[]).await {
        Ok(None) | Err(ProviderError::UnlistedUpload { .. }) => {}
        Ok(Some((_, held))) => assert!(held.is_empty(), "{name}: an upload nobody started holds parts"),
        Err(e) => panic!("{name}: resuming an upload nobody started: {e}"),
    }
}

/// An upload aborted (by its handle, or by key and id as a journal would) leaves no object and
/// nothing listed; aborting an upload that is gone succeeds.
async fn multipart_abort(c: Ctx) {
    let p = c.open("p").await;
    let name = p.name();
    let mp = p.multipart().unwrap_or_else(|| panic!("{name}: no multipart capability"));
    let data = bytes_of(7, part_size(c.options()));
    let ids = ["fedcba9876543210fedcba9876543210", "0f1e2d3c4b5a69780f1e2d3c4b5a6978"];
    for (i, id) in ids.iter().enumerate() {
        let key = format!("aborted-{i}");
        let mut upload =
            mp.start(&key, &PutAttrs::default(), 2 * data.len() as u64, id).await.unwrap_or_else(|e| panic!("{name}: start: {e}"));
        upload.put_part(0, 0, data.clone(), crc32c(&data)).await.unwrap_or_else(|e| panic!("{name}: put part: {e}"));
        match i {
            0 => upload.abort().await.unwrap_or_else(|e| panic!("{name}: abort: {e}")),
            _ => {
                let upload_id = upload.upload_id().unwrap_or_else(|| id.to_string());
                drop(upload);
                mp.abort_upload(&key, &upload_id).await.unwrap_or_else(|e| panic!("{name}: abort_upload: {e}"));
                if c.options().aborts_gone_uploads {
                    mp.abort_upload(&key, &upload_id).await.unwrap_or_else(|e| panic!("{name}: aborting an aborted upload: {e}"));
                }
            }
        }
        assert!(head(p.as_ref(), &key).await.is_none(), "{name}: an aborted upload became an object");
    }
    let mut pages = p.list();
    while let Some(page) = pages.next().await {
        let page = page.unwrap_or_else(|e| panic!("{name}: list: {e}"));
        assert!(page.is_empty(), "{name}: aborted uploads left {:?}", page.iter().map(|e| &e.key).collect::<Vec<_>>());
    }
}

/// Open uploads are listed by age where the service can list them (and then removed by key and
/// id as listed); elsewhere the answer says it cannot, as a configuration error.
async fn stale_uploads(c: Ctx) {
    let p = c.open("p").await;
    let name = p.name();
    let mp = p.multipart().unwrap_or_else(|| panic!("{name}: no multipart capability"));
    let data = bytes_of(9, part_size(c.options()));
    let id = "abcdefabcdefabcdefabcdefabcdef01";
    let mut upload =
        mp.start("left/open", &PutAttrs::default(), 2 * data.len() as u64, id).await.unwrap_or_else(|e| panic!("{name}: start: {e}"));
    let upload_id = upload.upload_id().unwrap_or_else(|| id.to_string());
    upload.put_part(0, 0, data.clone(), crc32c(&data)).await.unwrap_or_else(|e| panic!("{name}: put part: {e}"));
    drop(upload);
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    if !c.options().lists_uploads {
        match mp.stale_uploads(later).await {
            Err(e @ ProviderError::Config { .. }) => assert_eq!(e.class(), ErrorClass::Fatal),
            other => panic!("{name}: a service that cannot list uploads answered {other:?}"),
        }
        return;
    }
    let open = mp.stale_uploads(later).await.unwrap_or_else(|e| panic!("{name}: stale uploads: {e}"));
    let found = open.iter().find(|u| u.upload_id == upload_id).unwrap_or_else(|| panic!("{name}: the open upload is not listed: {open:?}"));
    let earlier = chrono::Utc::now() - chrono::Duration::hours(1);
    let young = mp.stale_uploads(earlier).await.unwrap_or_else(|e| panic!("{name}: stale uploads: {e}"));
    assert!(young.iter().all(|u| u.upload_id != upload_id), "{name}: an upload started now is older than an hour");
    mp.abort_upload(&found.key, &found.upload_id).await.unwrap_or_else(|e| panic!("{name}: abort the listed upload: {e}"));
    let open = mp.stale_uploads(later).await.unwrap_or_else(|e| panic!("{name}: stale uploads: {e}"));
    assert!(open.iter().all(|u| u.upload_id != upload_id), "{name}: the aborted upload is still listed");
}

/// Where offered: the service copies from a location of its own reached the same way (not
/// from another endpoint or service), proves the copy with a checksum of the source's, copies
/// large objects in parts where it does, and refuses a source that changed since its HEAD.
async fn server_copy(c: Ctx) {
    let (src, dst) = (c.open("src").await, c.open("dst").await);
    let name = dst.name();
    let Some(copier) = dst.server_copy() else {
        assert!(!c.options().server_copy, "{name}: server-side copy is declared but not offered");
        return;
    };
    assert!(c.options().server_copy, "{name}: server-side copy is offered but not declared");
    let connect = &c.adapter.connect;
    assert!(copier.copies_from(src.location(), connect), "{name}: cannot copy from its own service reached the same way");
    let elsewhere = Connect { endpoint: Some("http://127.0.0.1:9".into()), ..connect.clone() };
    assert!(!copier.copies_from(src.location(), &elsewhere), "{name}: would copy from another endpoint");
    let other_profile = Connect { profile: Some("ferry-conformance-other".into()), ..connect.clone() };
    assert!(!copier.copies_from(src.location(), &other_profile), "{name}: would copy with other credentials (profile)");
    let disk = Location::parse("/tmp/ferry-conformance").expect("a local path");
    assert!(!copier.copies_from(&disk, &Connect::default()), "{name}: would copy from a local disk");

    let part = c.options().limits.min_part_size.max(5 << 20);
    for (key, size) in [("small copy", 1000usize), ("large/copy", 2 * part as usize + 1000)] {
        let data = bytes_of(size as u8, size);
        put(src.as_ref(), key, &data).await;
        let entry = head(src.as_ref(), key).await.unwrap_or_else(|| panic!("{name}: the source object is missing"));
        let started = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let recorded = started.clone();
        let journal = move |id: String| -> futures::future::BoxFuture<'static, ferry_providers::Result<()>> {
            recorded.lock().unwrap().push(id);
            Box::pin(async { Ok(()) })
        };
        let plan = ferry_core::PartPlan { object_size: entry.size, part_size: part };
        let copied =
            copier.copy_from(src.location(), &entry, None, &plan, &journal).await.unwrap_or_else(|e| panic!("{name}: copy {key:?}: {e}"));
        assert!(read(dst.as_ref(), key).await == data, "{name}: the copy of {key:?} has other bytes");
        if c.options().keeps_attributes {
            let h = head(dst.as_ref(), key).await.unwrap_or_else(|| panic!("{name}: the copy is missing"));
            assert_eq!(h.content_type.as_deref(), Some("text/x-ferry"), "{name}: the copy's content type");
        }
        let (source, copy) = (&entry.checksums, &copied.checksums);
        let proof = [(&source.crc32c, &copy.crc32c), (&source.md5, &copy.md5), (&source.crc64nvme, &copy.crc64nvme)];
        for (source, copy) in proof {
            if let (Some(a), Some(b)) = (source, copy) {
                assert_eq!(a, b, "{name}: the copy of {key:?} has another checksum");
            }
        }
        assert!(
            copied.checksums.crc32c.is_some() || copied.checksums.md5.is_some() || copied.etag.is_some(),
            "{name}: a copy with nothing to prove it by"
        );
        let in_parts = size as u64 > part && c.options().copies_in_parts;
        assert_eq!(copied.parts > 0, in_parts, "{name}: copy of {key:?} in parts: {}", copied.parts);
        assert_eq!(started.lock().unwrap().len(), in_parts as usize, "{name}: upload ids journaled for {key:?}");
    }

    // The source changes after its HEAD: the copy is refused, never made of the newer version.
    put(src.as_ref(), "changing", &bytes_of(1, 500)).await;
    let before = head(src.as_ref(), "changing").await.unwrap_or_else(|| panic!("{name}: the source object is missing"));
    put(src.as_ref(), "changing", &bytes_of(2, 600)).await;
    let plan = ferry_core::PartPlan { object_size: before.size, part_size: part };
    let copied = copier.copy_from(src.location(), &before, None, &plan, &|_| Box::pin(async { Ok(()) })).await;
    if c.options().copy_refuses_changed {
        assert!(copied.is_err(), "{name}: a source that changed since its HEAD was copied");
        assert!(head(dst.as_ref(), "changing").await.is_none(), "{name}: a refused copy left an object");
    } else {
        let copied = copied.unwrap_or_else(|e| panic!("{name}: copy of a changed source: {e}"));
        let differs = [(&before.checksums.crc32c, &copied.checksums.crc32c), (&before.checksums.md5, &copied.checksums.md5)]
            .iter()
            .any(|(a, b)| a.is_some() && b.is_some() && a != b);
        assert!(differs, "{name}: the copy of a changed source carries no checksum that tells it from the HEAD's");
    }
}
