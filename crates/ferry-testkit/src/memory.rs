//! An in-memory provider, for engine tests that run in milliseconds with no service.
//!
//! A [`MemoryStore`] holds buckets of objects; every [`MemoryProvider`] opened on one store sees
//! the same buckets, so two providers on one store are a source and a destination of one
//! service, and the destination can copy from the source by itself ([`ServerCopy`]).
//!
//! It behaves the way the real services do where ferry depends on it: listings in byte order
//! of the keys a page at a time, ranged reads that report the whole object's size, a put or a
//! part whose bytes do not match the CRC32C sent refused as corrupted (as S3 and GCS refuse
//! them), multipart uploads that outlive the process that started them (resume lists the parts
//! the store holds), parts below the minimum size refused at completion, stale uploads
//! listable, and a server-side copy refused when the source changed from the version asked for.
//! Every object carries its whole-object CRC32C and MD5 (as GCS does), in listings too.

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use ferry_core::{Checksums, ErrorClass, FailureKind, Limits, Location, ObjectEntry, Scheme};
use ferry_providers::{
    Connect, Fetched, Multipart, MultipartUpload, OpenUpload, PartReceipt, Provider, ProviderError, PutAttrs, PutReceipt, Result,
    ServerCopied, ServerCopy,
};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

const PROVIDER: &str = "memory";

/// The limits a memory provider has unless told otherwise: any part size, S3's part count.
pub const LIMITS: Limits =
    Limits { min_part_size: 1, max_part_size: 5 << 30, max_parts: 10_000, max_object_size: u64::MAX, default_part_size: 8 << 20 };

/// One stored object.
#[derive(Debug, Clone)]
struct Stored {
    data: Bytes,
    etag: String,
    crc32c: u32,
    md5: String,
    content_type: Option<String>,
    metadata: BTreeMap<String, String>,
    modified: DateTime<Utc>,
    version: u64,
}

/// One upload in progress: its parts, by index.
#[derive(Debug, Clone)]
struct Upload {
    bucket: String,
    full_key: String,
    attrs: PutAttrs,
    parts: BTreeMap<u32, (Bytes, u32)>,
    initiated: DateTime<Utc>,
}

#[derive(Debug, Default)]
struct State {
    buckets: BTreeMap<String, BTreeMap<String, Stored>>,
    /// Uploads in progress, by upload id.
    uploads: BTreeMap<String, Upload>,
    /// The last version given to a write.
    version: u64,
}

impl State {
    fn write(&mut self, bucket: &str, full_key: &str, data: Bytes, attrs: &PutAttrs, etag: String) -> Result<Stored> {
        self.version += 1;
        let stored = Stored {
            crc32c: ferry_core::crc32c(&data),
            md5: md5_hex(&data),
            etag,
            data,
            content_type: attrs.content_type.clone(),
            metadata: attrs.metadata.clone(),
            modified: Utc::now(),
            version: self.version,
        };
        let objects =
            self.buckets.get_mut(bucket).ok_or_else(|| ProviderError::NoSuchBucket { provider: PROVIDER, bucket: bucket.to_string() })?;
        objects.insert(full_key.to_string(), stored.clone());
        Ok(stored)
    }
}

fn md5_hex(data: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(data))
}

/// Buckets held in memory, shared by every provider opened on the store (clones share it too).
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A test that panicked while holding the lock has failed already; its state is still
        // what it was, so later readers (its assertions' messages) may look.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes an empty bucket (no-op when it exists).
    pub fn create_bucket(&self, bucket: &str) {
        self.lock().buckets.entry(bucket.to_string()).or_default();
    }

    /// A provider for `url` (`s3://bucket/prefix/`, `gs://…`, `file:///dir` — the scheme only
    /// names it; every location lives in this store), creating its bucket.
    pub fn provider(&self, url: &str) -> MemoryProvider {
        let location = Location::parse(url).unwrap_or_else(|e| panic!("memory provider location {url:?}: {e}"));
        self.create_bucket(&location.bucket);
        self.open(location)
    }

    /// A provider for `location`, whose bucket may not exist (its check then fails).
    pub fn open(&self, location: Location) -> MemoryProvider {
        MemoryProvider {
            store: self.clone(),
            location,
            limits: LIMITS,
            page: 1000,
            connect: Connect::default(),
            multipart: true,
            server_copy: true,
        }
    }

    /// Stores `data` under full key `key` of `bucket` directly (seeding a test: no request).
    pub fn insert(&self, bucket: &str, key: &str, data: impl Into<Bytes>) {
        let mut state = self.lock();
        state.buckets.entry(bucket.to_string()).or_default();
        let data = data.into();
        let etag = md5_hex(&data);
        state.write(bucket, key, data, &PutAttrs::default(), etag).expect("the bucket exists");
    }

    /// The bytes under full key `key` of `bucket`, if any.
    pub fn get(&self, bucket: &str, key: &str) -> Option<Bytes> {
        self.lock().buckets.get(bucket)?.get(key).map(|o| o.data.clone())
    }

    /// Every full key of `bucket` with its size, in key order.
    pub fn keys(&self, bucket: &str) -> Vec<(String, u64)> {
        self.lock().buckets.get(bucket).map(|b| b.iter().map(|(k, o)| (k.clone(), o.data.len() as u64)).collect()).unwrap_or_default()
    }

    /// Uploads in progress (started, neither completed nor aborted): `(full key, upload id)`.
    pub fn open_uploads(&self) -> Vec<(String, String)> {
        self.lock().uploads.iter().map(|(id, u)| (u.full_key.clone(), id.clone())).collect()
    }
}

/// A provider on a [`MemoryStore`]: one bucket under a prefix, like the real adapters.
#[derive(Debug, Clone)]
pub struct MemoryProvider {
    store: MemoryStore,
    location: Location,
    limits: Limits,
    page: usize,
    connect: Connect,
    multipart: bool,
    server_copy: bool,
}

/// The key `key` has in the store under `location`.
fn full_key(location: &Location, key: &str) -> String {
    match location.scheme {
        // A local location's prefix is its root directory; `key_for` gives the relative key.
        Scheme::Local => format!("{}/{key}", location.prefix.trim_end_matches('/')),
        _ => location.key_for(key),
    }
}

/// The prefix every key under `location` starts with in the store.
fn prefix_of(location: &Location) -> String {
    match location.scheme {
        Scheme::Local => format!("{}/", location.prefix.trim_end_matches('/')),
        _ => location.prefix.clone(),
    }
}

fn request(op: &'static str, key: &str, detail: impl Into<String>, class: ErrorClass, kind: FailureKind) -> ProviderError {
    ProviderError::Request { provider: PROVIDER, op, key: key.to_string(), detail: detail.into(), class, kind }
}

impl MemoryProvider {
    /// Other limits (a small `max_parts` or a large `min_part_size`, to exercise the plans).
    pub fn with_limits(mut self, limits: Limits) -> MemoryProvider {
        self.limits = limits;
        self
    }

    /// Listing pages of `page` entries (1000 by default).
    pub fn with_page_size(mut self, page: usize) -> MemoryProvider {
        self.page = page.max(1);
        self
    }

    /// How this location is reached: a server-side copy needs the source reached the same way.
    pub fn with_connect(mut self, connect: Connect) -> MemoryProvider {
        self.connect = connect;
        self
    }

    /// Without the multipart capability (every object is one put).
    pub fn without_multipart(mut self) -> MemoryProvider {
        self.multipart = false;
        self
    }

    /// Without the server-side copy capability (bytes always pass through the caller).
    pub fn without_server_copy(mut self) -> MemoryProvider {
        self.server_copy = false;
        self
    }

    /// The store this provider reads and writes.
    pub fn store(&self) -> &MemoryStore {
        &self.store
    }

    fn full(&self, key: &str) -> Result<String> {
        ferry_providers::check_key(key).map_err(|reason| ProviderError::BadKey {
            provider: PROVIDER,
            key: key.to_string(),
            reason: reason.into(),
        })?;
        Ok(full_key(&self.location, key))
    }

    fn entry(key: String, o: &Stored) -> ObjectEntry {
        ObjectEntry {
            key,
            size: o.data.len() as u64,
            last_modified: Some(o.modified),
            etag: Some(o.etag.clone()),
            version: Some(o.version.to_string()),
            checksums: Checksums {
                crc32c: Some(ferry_core::digest::crc32c_hex(o.crc32c)),
                md5: Some(o.md5.clone()),
                ..Checksums::default()
            },
            content_type: o.content_type.clone(),
            metadata: o.metadata.clone(),
            ..Default::default()
        }
    }

    fn upload(&self, key: &str, id: &str) -> Box<MemoryUpload> {
        Box::new(MemoryUpload { store: self.store.clone(), key: key.to_string(), id: id.to_string(), min_part: self.limits.min_part_size })
    }
}

#[async_trait]
impl Provider for MemoryProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    fn location(&self) -> &Location {
        &self.location
    }

    fn lists_in_key_order(&self) -> bool {
        true
    }

    fn limits(&self) -> Limits {
        self.limits
    }

    async fn check(&self, _for_write: bool) -> Result<()> {
        match self.store.lock().buckets.contains_key(&self.location.bucket) {
            true => Ok(()),
            false => Err(ProviderError::NoSuchBucket { provider: PROVIDER, bucket: self.location.bucket.clone() }),
        }
    }

    /// Pages of the keys under the prefix in byte order, each read under the lock on its own
    /// (as a service's pages are separate requests: a write between two pages may show).
    fn list(&self) -> BoxStream<'_, Result<Vec<ObjectEntry>>> {
        let prefix = prefix_of(&self.location);
        let bucket = self.location.bucket.clone();
        let page = self.page;
        let store = self.store.clone();
        Box::pin(futures::stream::unfold(Some(None::<String>), move |after| {
            let (prefix, bucket, store) = (prefix.clone(), bucket.clone(), store.clone());
            async move {
                let after = after?;
                let state = store.lock();
                let Some(objects) = state.buckets.get(&bucket) else {
                    return Some((Err(ProviderError::NoSuchBucket { provider: PROVIDER, bucket }), None));
                };
                let from = after.clone().unwrap_or_else(|| prefix.clone());
                let entries: Vec<ObjectEntry> = objects
                    .range(from..)
                    .filter(|(k, _)| Some(*k) != after.as_ref())
                    .take_while(|(k, _)| k.starts_with(&prefix))
                    .take(page)
                    .map(|(k, o)| MemoryProvider::entry(k[prefix.len()..].to_string(), o))
                    .collect();
                if entries.is_empty() && after.is_some() {
                    return None;
                }
                let next = (entries.len() == page).then(|| Some(format!("{prefix}{}", entries[page - 1].key)));
                Some((Ok(entries), next))
            }
        }))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectEntry>> {
        let full = self.full(key)?;
        let state = self.store.lock();
        Ok(state.buckets.get(&self.location.bucket).and_then(|b| b.get(&full)).map(|o| MemoryProvider::entry(key.to_string(), o)))
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Fetched> {
        let full = self.full(key)?;
        let state = self.store.lock();
        let Some(o) = state.buckets.get(&self.location.bucket).and_then(|b| b.get(&full)) else {
            return Err(ProviderError::NotFound { provider: PROVIDER, key: key.to_string() });
        };
        let size = o.data.len() as u64;
        let mut object = MemoryProvider::entry(key.to_string(), o);
        let data = match range.filter(|r| r.end > r.start) {
            Some(r) if r.start >= size => {
                return Err(request(
                    "get",
                    key,
                    format!("range {}..{} beyond the object's {size} bytes (416)", r.start, r.end),
                    ErrorClass::PerObject,
                    FailureKind::RangeNotSatisfiable,
                ));
            }
            Some(r) => {
                // A ranged answer carries no whole-object checksum (as S3's does not).
                (object.checksums.crc32c, object.checksums.md5) = (None, None);
                o.data.slice(r.start as usize..r.end.min(size) as usize)
            }
            None => o.data.clone(),
        };
        Ok(Fetched { data, object, checked: None })
    }

    async fn put(&self, key: &str, data: Bytes, crc32c: u32, attrs: &PutAttrs) -> Result<PutReceipt> {
        let full = self.full(key)?;
        if ferry_core::crc32c(&data) != crc32c {
            return Err(ProviderError::corrupted(PROVIDER, "put", key, "the body differs from its crc32c header"));
        }
        let etag = md5_hex(&data);
        let stored = self.store.lock().write(&self.location.bucket, &full, data, attrs, etag)?;
        Ok(PutReceipt { etag: Some(stored.etag), version: None })
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let full = self.full(key)?;
        if let Some(b) = self.store.lock().buckets.get_mut(&self.location.bucket) {
            b.remove(&full);
        }
        Ok(())
    }

    fn multipart(&self) -> Option<&dyn Multipart> {
        self.multipart.then_some(self as &dyn Multipart)
    }

    fn server_copy(&self) -> Option<&dyn ServerCopy> {
        self.server_copy.then_some(self as &dyn ServerCopy)
    }
}

#[async_trait]
impl Multipart for MemoryProvider {
    /// Uses the caller's id (as GCS and local do); an empty id gets a fresh one (as S3 gives).
    async fn start(&self, key: &str, attrs: &PutAttrs, _size: u64, id: &str) -> Result<Box<dyn MultipartUpload>> {
        let full = self.full(key)?;
        let id = if id.is_empty() { uuid::Uuid::new_v4().simple().to_string() } else { id.to_string() };
        let mut state = self.store.lock();
        if !state.buckets.contains_key(&self.location.bucket) {
            return Err(ProviderError::NoSuchBucket { provider: PROVIDER, bucket: self.location.bucket.clone() });
        }
        let upload = Upload {
            bucket: self.location.bucket.clone(),
            full_key: full,
            attrs: attrs.clone(),
            parts: BTreeMap::new(),
            initiated: Utc::now(),
        };
        state.uploads.insert(id.clone(), upload);
        Ok(self.upload(key, &id))
    }

    /// The store is the truth: the parts it holds for the upload, whatever the journal recorded.
    async fn resume(
        &self,
        key: &str,
        upload_id: &str,
        _attrs: &PutAttrs,
        _size: u64,
        _recorded: &[PartReceipt],
    ) -> Result<Option<(Box<dyn MultipartUpload>, Vec<PartReceipt>)>> {
        let full = self.full(key)?;
        let state = self.store.lock();
        let Some(upload) = state.uploads.get(upload_id).filter(|u| u.full_key == full && u.bucket == self.location.bucket) else {
            return Ok(None);
        };
        let held = upload
            .parts
            .iter()
            .map(|(index, (data, crc32c))| PartReceipt { index: *index, id: md5_hex(data), size: data.len() as u64, crc32c: *crc32c })
            .collect();
        drop(state);
        Ok(Some((self.upload(key, upload_id) as Box<dyn MultipartUpload>, held)))
    }

    async fn abort_upload(&self, _key: &str, upload_id: &str) -> Result<()> {
        self.store.lock().uploads.remove(upload_id);
        Ok(())
    }

    async fn stale_uploads(&self, before: DateTime<Utc>) -> Result<Vec<OpenUpload>> {
        let prefix = prefix_of(&self.location);
        let state = self.store.lock();
        Ok(state
            .uploads
            .iter()
            .filter(|(_, u)| u.bucket == self.location.bucket && u.full_key.starts_with(&prefix) && u.initiated < before)
            .map(|(id, u)| OpenUpload { key: u.full_key[prefix.len()..].to_string(), upload_id: id.clone(), initiated: Some(u.initiated) })
            .collect())
    }

    /// In pages of the listing's page size, in key order (as S3 lists uploads).
    fn stale_upload_pages(&self, before: DateTime<Utc>) -> BoxStream<'_, Result<Vec<OpenUpload>>> {
        let page = self.page;
        Box::pin(futures::StreamExt::flat_map(futures::stream::once(self.stale_uploads(before)), move |all| {
            let pages: Vec<Result<Vec<OpenUpload>>> = match all {
                Ok(mut all) => {
                    all.sort_by(|a, b| (&a.key, &a.upload_id).cmp(&(&b.key, &b.upload_id)));
                    all.chunks(page).map(|c| Ok(c.to_vec())).collect()
                }
                Err(e) => vec![Err(e)],
            };
            futures::stream::iter(pages)
        }))
    }
}

/// An upload in progress on a [`MemoryStore`].
struct MemoryUpload {
    store: MemoryStore,
    key: String,
    id: String,
    min_part: u64,
}

#[async_trait]
impl MultipartUpload for MemoryUpload {
    fn upload_id(&self) -> Option<String> {
        Some(self.id.clone())
    }

    fn put_part(&mut self, index: u32, _offset: u64, data: Bytes, crc32c: u32) -> BoxFuture<'static, Result<PartReceipt>> {
        let (store, key, id) = (self.store.clone(), self.key.clone(), self.id.clone());
        Box::pin(async move {
            if ferry_core::crc32c(&data) != crc32c {
                return Err(ProviderError::corrupted(
                    PROVIDER,
                    "upload part",
                    format!("{key} part {}", index + 1),
                    "the body differs from its crc32c header",
                ));
            }
            let mut state = store.lock();
            let upload = state
                .uploads
                .get_mut(&id)
                .ok_or_else(|| request("upload part", &key, "NoSuchUpload", ErrorClass::PerObject, FailureKind::NotFound))?;
            let receipt = PartReceipt { index, id: md5_hex(&data), size: data.len() as u64, crc32c };
            upload.parts.insert(index, (data, crc32c));
            Ok(receipt)
        })
    }

    /// Joins `parts` (all of them, in index order, each as the store holds it); every part but
    /// the last must reach the minimum part size.
    async fn complete(self: Box<Self>, parts: Vec<PartReceipt>) -> Result<PutReceipt> {
        let mut state = self.store.lock();
        let upload = state
            .uploads
            .get(&self.id)
            .ok_or_else(|| request("complete", &self.key, "NoSuchUpload", ErrorClass::PerObject, FailureKind::NotFound))?;
        let mut body = BytesMut::new();
        for (i, part) in parts.iter().enumerate() {
            let held = upload.parts.get(&part.index).filter(|(data, _)| md5_hex(data) == part.id);
            let Some((data, _)) = held else {
                return Err(request(
                    "complete",
                    &self.key,
                    format!("InvalidPart: part {} is not held", part.index + 1),
                    ErrorClass::PerObject,
                    FailureKind::Rejected,
                ));
            };
            if i + 1 < parts.len() && (data.len() as u64) < self.min_part {
                return Err(request(
                    "complete",
                    &self.key,
                    format!("EntityTooSmall: part {} has {} bytes, below the minimum {}", part.index + 1, data.len(), self.min_part),
                    ErrorClass::PerObject,
                    FailureKind::Rejected,
                ));
            }
            body.extend_from_slice(data);
        }
        let upload = state.uploads.remove(&self.id).expect("held above");
        let etag = format!("{}-{}", md5_hex(&body), parts.len());
        let stored = state.write(&upload.bucket, &upload.full_key, body.freeze(), &upload.attrs, etag)?;
        Ok(PutReceipt { etag: Some(stored.etag), version: None })
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        self.store.lock().uploads.remove(&self.id);
        Ok(())
    }
}

#[async_trait]
impl ServerCopy for MemoryProvider {
    /// A location in this same store (its bucket exists here), reached the same way.
    fn copies_from(&self, source: &Location, connect: &Connect) -> bool {
        source.scheme == self.location.scheme && self.connect.same_way(connect) && self.store.lock().buckets.contains_key(&source.bucket)
    }

    /// Copies in one step; a plan of more than one part reports the parts a service would have
    /// copied it in, calling `started` with an upload id first. Refused before anything when
    /// the plan is not the object's or breaks this provider's limits, as S3's is; refused (412)
    /// when the source's version is no longer `object`'s.
    async fn copy_from(
        &self,
        source: &Location,
        object: &ObjectEntry,
        _class: Option<&str>,
        plan: &ferry_core::PartPlan,
        started: &ferry_providers::UploadStarted,
    ) -> Result<ServerCopied> {
        let key = object.key.as_str();
        let (from, to) = (full_key(source, key), self.full(key)?);
        if plan.object_size != object.size {
            let detail = format!("a part plan for {} bytes, the object has {}", plan.object_size, object.size);
            return Err(request("copy", key, detail, ErrorClass::PerObject, FailureKind::NoPartPlan));
        }
        let parts = match plan
            .check(&self.limits)
            .map_err(|e| request("copy", key, e.to_string(), ErrorClass::PerObject, FailureKind::NoPartPlan))?
        {
            1 => 0,
            count => {
                started(uuid::Uuid::new_v4().simple().to_string()).await?;
                count
            }
        };
        let mut state = self.store.lock();
        let Some(o) = state.buckets.get(&source.bucket).and_then(|b| b.get(&from)).cloned() else {
            return Err(ProviderError::NotFound { provider: PROVIDER, key: key.to_string() });
        };
        if object.etag.as_ref().is_some_and(|e| *e != o.etag) || object.version.as_ref().is_some_and(|v| *v != o.version.to_string()) {
            return Err(request(
                "copy",
                key,
                "PreconditionFailed (412): the source changed",
                ErrorClass::PerObject,
                FailureKind::SourceChanged,
            ));
        }
        let attrs = PutAttrs { content_type: o.content_type.clone(), metadata: o.metadata.clone(), ..PutAttrs::default() };
        let copy = state.write(&self.location.bucket, &to, o.data.clone(), &attrs, o.etag.clone())?;
        Ok(ServerCopied {
            etag: Some(copy.etag),
            checksums: Checksums { crc32c: Some(ferry_core::digest::crc32c_hex(copy.crc32c)), md5: Some(copy.md5), ..Checksums::default() },
            parts,
            version: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn listing_pages_in_key_order_under_the_prefix_only() {
        let store = MemoryStore::new();
        let p = store.provider("s3://bkt/pre/").with_page_size(2);
        for key in ["c", "a", "b/x", "b", "é", "Z"] {
            p.put(key, Bytes::from(key.to_string()), ferry_core::crc32c(key.as_bytes()), &PutAttrs::default()).await.unwrap();
        }
        store.insert("bkt", "other/a", "not under the prefix");
        store.insert("bkt", "pre", "the prefix itself, without its slash");
        let pages: Vec<Vec<ObjectEntry>> = p.list().map(|p| p.unwrap()).collect().await;
        assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 2]);
        let keys: Vec<String> = pages.into_iter().flatten().map(|e| e.key).collect();
        assert_eq!(keys, ["Z", "a", "b", "b/x", "c", "é"]);
    }

    #[tokio::test]
    async fn a_corrupted_body_is_refused() {
        let p = MemoryStore::new().provider("gs://bkt/");
        let e = p.put("k", Bytes::from_static(b"abc"), 0, &PutAttrs::default()).await.unwrap_err();
        assert!(e.is_corrupted(), "{e}");
        assert!(p.head("k").await.unwrap().is_none());
    }
}
