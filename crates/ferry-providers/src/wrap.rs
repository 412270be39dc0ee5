//! Behaviour put around any provider, object_store's `ThrottledStore` idea: [`Throttled`]
//! charges the run's ceilings on every call, [`Counted`] counts every call by method. Both
//! wrap the optional capabilities too ([`Multipart`], its uploads, [`ServerCopy`]), so nothing
//! a provider offers escapes them, and a provider never has to remember to throttle a call by
//! hand.
//!
//! [`crate::open`] puts `Counted` around every provider and `Throttled` around the network ones
//! (local disks are never throttled). A call takes one request slot here, which its first
//! request uses; any further request of the call (a re-send, a GCS compose round, an Azure
//! range, an S3 server copy's parts) takes its own inside the provider
//! (`RunContext::take_slot`), so each request is charged once. Calls that may send nothing
//! (listing pages, starting an upload, an ETag check) take no slot here: the provider takes one
//! for each request it does send.

use crate::run::{Slot, in_call};
use crate::{
    Fetched, Multipart, MultipartUpload, OpenUpload, PartReceipt, Provider, PutAttrs, PutReceipt, Result, RunContext, ServerCopied,
    ServerCopy, Versions,
};
use async_trait::async_trait;
use bytes::Bytes;
use ferry_core::{Limits, Location, ObjectEntry};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use std::ops::Range;
use std::sync::Arc;
#[cfg(test)]
use std::time::Duration;

/// A provider whose every call waits for the run's request slot, and whose bodies are charged
/// to the run's byte ceilings (sent before a write, received once a read has arrived).
pub struct Throttled<P: ?Sized> {
    inner: Arc<P>,
    run: Arc<RunContext>,
}

impl<P: ?Sized> Throttled<P> {
    pub fn new(inner: Arc<P>, run: Arc<RunContext>) -> Self {
        Throttled { inner, run }
    }
}

/// A listing (or a listing of uploads) whose every page takes a request slot: the provider's
/// own, when it takes one per request it sends ([`RunContext::take_slot`]), else one charged
/// here once the page has arrived (charging before each poll would also charge the poll that
/// finds the listing over, which sends nothing). The next page is asked for only once the
/// slot's time has come, so the rate holds all the same.
fn throttled_pages<'a, T: Send + 'a>(run: &'a RunContext, pages: BoxStream<'a, Result<T>>) -> BoxStream<'a, Result<T>> {
    futures::stream::unfold(pages, move |mut pages| async move {
        let (page, paid) = in_call(Slot::Unpaid, pages.next()).await;
        let page = page?;
        if !paid {
            run.throttle().request().await;
        }
        Some((page, pages))
    })
    .boxed()
}

impl<P: ?Sized> Throttled<P> {
    /// Takes the call's request slot, then runs it with the slot prepaid: its first request
    /// uses that slot, any further one takes its own.
    async fn call<F: std::future::Future>(&self, call: F) -> F::Output {
        self.run.throttle().request().await;
        in_call(Slot::Prepaid, call).await.0
    }
}

#[async_trait]
impl<P: Provider + ?Sized + 'static> Provider for Throttled<P> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn location(&self) -> &Location {
        self.inner.location()
    }
    fn limits(&self) -> Limits {
        self.inner.limits()
    }

    async fn check(&self, for_write: bool) -> Result<()> {
        self.call(self.inner.check(for_write)).await
    }

    fn list(&self) -> BoxStream<'_, Result<Vec<ObjectEntry>>> {
        throttled_pages(&self.run, self.inner.list())
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectEntry>> {
        self.call(self.inner.head(key)).await
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Fetched> {
        let fetched = self.call(self.inner.get(key, range)).await?;
        self.run.throttle().received(fetched.data.len()).await;
        Ok(fetched)
    }

    async fn put(&self, key: &str, data: Bytes, crc32c: u32, attrs: &PutAttrs) -> Result<PutReceipt> {
        self.run.throttle().sending(data.len()).await;
        self.call(self.inner.put(key, data, crc32c, attrs)).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.call(self.inner.delete(key)).await
    }

    async fn restore(
        &self,
        key: &str,
        class: &ferry_core::StorageClass,
        request: &ferry_core::RestoreRequest,
    ) -> Result<Option<ferry_core::RestoreTier>> {
        self.call(self.inner.restore(key, class, request)).await
    }

    // Most answers come from what the caller holds (no request): no slot is taken here. A
    // provider that must ask (S3, for a multipart ETag's part size) takes its own.
    async fn etag_check(&self, object: &ObjectEntry) -> Result<Option<ferry_core::Md5Etag>> {
        self.inner.etag_check(object).await
    }

    fn carries(&self) -> ferry_core::Carries {
        self.inner.carries()
    }

    fn etag_names_content(&self) -> bool {
        self.inner.etag_names_content()
    }

    fn lists_in_key_order(&self) -> bool {
        self.inner.lists_in_key_order()
    }

    async fn prune_folders(&self, key: &str) -> Result<()> {
        self.inner.prune_folders(key).await
    }

    async fn tags(&self, key: &str) -> Result<ferry_core::Tags> {
        self.call(self.inner.tags(key)).await
    }

    async fn locks_objects(&self) -> Result<bool> {
        self.call(self.inner.locks_objects()).await
    }

    async fn lock(&self, key: &str) -> Result<Option<ferry_core::ObjectLock>> {
        self.call(self.inner.lock(key)).await
    }

    fn multipart(&self) -> Option<&dyn Multipart> {
        self.inner.multipart().map(|_| self as &dyn Multipart)
    }

    fn versions(&self) -> Option<&dyn Versions> {
        self.inner.versions().map(|_| self as &dyn Versions)
    }

    fn server_copy(&self) -> Option<&dyn ServerCopy> {
        self.inner.server_copy().map(|_| self as &dyn ServerCopy)
    }
}

impl<P: Provider + ?Sized> Throttled<P> {
    fn inner_versions(&self) -> &dyn Versions {
        self.inner.versions().expect("only offered when the inner provider has it")
    }
}

#[async_trait]
impl<P: Provider + ?Sized + 'static> Versions for Throttled<P> {
    async fn keeps_versions(&self) -> Result<bool> {
        self.call(self.inner_versions().keeps_versions()).await
    }

    fn list_versions(&self) -> BoxStream<'_, Result<Vec<ObjectEntry>>> {
        throttled_pages(&self.run, self.inner_versions().list_versions())
    }

    async fn head_version(&self, key: &str, version: &str) -> Result<Option<ObjectEntry>> {
        self.call(self.inner_versions().head_version(key, version)).await
    }

    async fn get_version(&self, key: &str, version: &str, range: Option<Range<u64>>) -> Result<Fetched> {
        let fetched = self.call(self.inner_versions().get_version(key, version, range)).await?;
        self.run.throttle().received(fetched.data.len()).await;
        Ok(fetched)
    }

    async fn versions_of(&self, key: &str) -> Result<Vec<ObjectEntry>> {
        self.call(self.inner_versions().versions_of(key)).await
    }
}

impl<P: Provider + ?Sized> Throttled<P> {
    fn inner_multipart(&self) -> &dyn Multipart {
        self.inner.multipart().expect("only offered when the inner provider has it")
    }
}

#[async_trait]
impl<P: Provider + ?Sized + 'static> Multipart for Throttled<P> {
    // Starting sends a request on some services (S3) and none on others (GCS, Azure: the
    // upload is only a name until its first part): the provider takes a slot if it sends one.
    async fn start(&self, key: &str, attrs: &PutAttrs, size: u64, id: &str) -> Result<Box<dyn MultipartUpload>> {
        let (upload, _) = in_call(Slot::Unpaid, self.inner_multipart().start(key, attrs, size, id)).await;
        let upload = upload?;
        Ok(Box::new(ThrottledUpload { inner: upload, run: self.run.clone() }))
    }

    async fn resume(
        &self,
        key: &str,
        upload_id: &str,
        attrs: &PutAttrs,
        size: u64,
        recorded: &[PartReceipt],
    ) -> Result<Option<(Box<dyn MultipartUpload>, Vec<PartReceipt>)>> {
        let resumed = self.call(self.inner_multipart().resume(key, upload_id, attrs, size, recorded)).await?;
        Ok(resumed
            .map(|(upload, held)| (Box::new(ThrottledUpload { inner: upload, run: self.run.clone() }) as Box<dyn MultipartUpload>, held)))
    }

    async fn abort_upload(&self, key: &str, upload_id: &str) -> Result<()> {
        self.call(self.inner_multipart().abort_upload(key, upload_id)).await
    }

    async fn stale_uploads(&self, before: chrono::DateTime<chrono::Utc>) -> Result<Vec<OpenUpload>> {
        self.call(self.inner_multipart().stale_uploads(before)).await
    }

    fn stale_upload_pages(&self, before: chrono::DateTime<chrono::Utc>) -> BoxStream<'_, Result<Vec<OpenUpload>>> {
        throttled_pages(&self.run, self.inner_multipart().stale_upload_pages(before))
    }
}

#[async_trait]
impl<P: Provider + ?Sized + 'static> ServerCopy for Throttled<P> {
    fn copies_from(&self, source: &Location, connect: &crate::Connect) -> bool {
        self.inner.server_copy().is_some_and(|copy| copy.copies_from(source, connect))
    }

    async fn copy_from(
        &self,
        source: &Location,
        object: &ObjectEntry,
        class: Option<&str>,
        plan: &ferry_core::PartPlan,
        started: &crate::UploadStarted,
    ) -> Result<ServerCopied> {
        let copy = self.inner.server_copy().expect("only offered when the inner provider has it");
        self.call(copy.copy_from(source, object, class, plan, started)).await
    }
}

struct ThrottledUpload {
    inner: Box<dyn MultipartUpload>,
    run: Arc<RunContext>,
}

#[async_trait]
impl MultipartUpload for ThrottledUpload {
    fn upload_id(&self) -> Option<String> {
        self.inner.upload_id()
    }

    fn put_part(&mut self, index: u32, offset: u64, data: Bytes, crc32c: u32) -> BoxFuture<'static, Result<PartReceipt>> {
        let len = data.len();
        // Started here, in index order as the contract asks; it sends nothing until polled.
        let part = self.inner.put_part(index, offset, data, crc32c);
        let run = self.run.clone();
        Box::pin(async move {
            run.throttle().sending(len).await;
            run.throttle().request().await;
            in_call(Slot::Prepaid, part).await.0
        })
    }

    async fn complete(self: Box<Self>, parts: Vec<PartReceipt>) -> Result<PutReceipt> {
        self.run.throttle().request().await;
        in_call(Slot::Prepaid, self.inner.complete(parts)).await.0
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        self.run.throttle().request().await;
        in_call(Slot::Prepaid, self.inner.abort()).await.0
    }
}

/// A provider whose every call is counted in the run's [`crate::run::Requests`], by method, with the
/// bytes of its body and whether it failed.
pub struct Counted<P: ?Sized> {
    inner: Arc<P>,
    run: Arc<RunContext>,
}

impl<P: ?Sized> Counted<P> {
    pub fn new(inner: Arc<P>, run: Arc<RunContext>) -> Self {
        Counted { inner, run }
    }
}

impl<P: Provider + ?Sized> Counted<P> {
    fn count<T>(&self, method: &'static str, result: &Result<T>, bytes: impl FnOnce(&T) -> u64) {
        let (ok, bytes) = match result {
            Ok(v) => (true, bytes(v)),
            Err(_) => (false, 0),
        };
        self.run.requests().add(self.inner.name(), method, ok, bytes);
    }

    fn inner_multipart(&self) -> &dyn Multipart {
        self.inner.multipart().expect("only offered when the inner provider has it")
    }

    fn inner_versions(&self) -> &dyn Versions {
        self.inner.versions().expect("only offered when the inner provider has it")
    }
}

#[async_trait]
impl<P: Provider + ?Sized + 'static> Versions for Counted<P> {
    async fn keeps_versions(&self) -> Result<bool> {
        let r = self.inner_versions().keeps_versions().await;
        self.count("versioning", &r, |_| 0);
        r
    }

    fn list_versions(&self) -> BoxStream<'_, Result<Vec<ObjectEntry>>> {
        self.inner_versions()
            .list_versions()
            .map(move |page| {
                self.count("list versions", &page, |_| 0);
                page
            })
            .boxed()
    }

    async fn head_version(&self, key: &str, version: &str) -> Result<Option<ObjectEntry>> {
        let r = self.inner_versions().head_version(key, version).await;
        self.count("head", &r, |_| 0);
        r
    }

    async fn get_version(&self, key: &str, version: &str, range: Option<Range<u64>>) -> Result<Fetched> {
        let r = self.inner_versions().get_version(key, version, range).await;
        self.count("get", &r, |f| f.data.len() as u64);
        r
    }

    async fn versions_of(&self, key: &str) -> Result<Vec<ObjectEntry>> {
        let r = self.inner_versions().versions_of(key).await;
        self.count("list versions", &r, |_| 0);
        r
    }
}

#[async_trait]
impl<P: Provider + ?Sized + 'static> Provider for Counted<P> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn location(&self) -> &Location {
        self.inner.location()
    }
    fn limits(&self) -> Limits {
        self.inner.limits()
    }

    async fn check(&self, for_write: bool) -> Result<()> {
        let r = self.inner.check(for_write).await;
        self.count("check", &r, |_| 0);
        r
    }

    fn list(&self) -> BoxStream<'_, Result<Vec<ObjectEntry>>> {
        self.inner
            .list()
            .map(move |page| {
                self.count("list", &page, |_| 0);
                page
            })
            .boxed()
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectEntry>> {
        let r = self.inner.head(key).await;
        self.count("head", &r, |_| 0);
        r
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Fetched> {
        let r = self.inner.get(key, range).await;
        self.count("get", &r, |f| f.data.len() as u64);
        r
    }

    async fn put(&self, key: &str, data: Bytes, crc32c: u32, attrs: &PutAttrs) -> Result<PutReceipt> {
        let len = data.len() as u64;
        let r = self.inner.put(key, data, crc32c, attrs).await;
        self.count("put", &r, |_| len);
        r
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let r = self.inner.delete(key).await;
        self.count("delete", &r, |_| 0);
        r
    }

    async fn restore(
        &self,
        key: &str,
        class: &ferry_core::StorageClass,
        request: &ferry_core::RestoreRequest,
    ) -> Result<Option<ferry_core::RestoreTier>> {
        let r = self.inner.restore(key, class, request).await;
        self.count("restore", &r, |_| 0);
        r
    }

    // Counted when it sent a request (S3's HEAD of part 1 for a multipart ETag, which takes a
    // request slot); most checks are answered from the entry, and are no call to count.
    async fn etag_check(&self, object: &ObjectEntry) -> Result<Option<ferry_core::Md5Etag>> {
        let (r, sent) = in_call(Slot::Unpaid, self.inner.etag_check(object)).await;
        if sent {
            self.count("etag check", &r, |_| 0);
        }
        r
    }

    fn carries(&self) -> ferry_core::Carries {
        self.inner.carries()
    }

    fn etag_names_content(&self) -> bool {
        self.inner.etag_names_content()
    }

    fn lists_in_key_order(&self) -> bool {
        self.inner.lists_in_key_order()
    }

    async fn prune_folders(&self, key: &str) -> Result<()> {
        self.inner.prune_folders(key).await
    }

    async fn tags(&self, key: &str) -> Result<ferry_core::Tags> {
        let r = self.inner.tags(key).await;
        self.count("tags", &r, |_| 0);
        r
    }

    async fn locks_objects(&self) -> Result<bool> {
        let r = self.inner.locks_objects().await;
        self.count("lock configuration", &r, |_| 0);
        r
    }

    async fn lock(&self, key: &str) -> Result<Option<ferry_core::ObjectLock>> {
        let r = self.inner.lock(key).await;
        self.count("lock", &r, |_| 0);
        r
    }

    fn multipart(&self) -> Option<&dyn Multipart> {
        self.inner.multipart().map(|_| self as &dyn Multipart)
    }

    fn versions(&self) -> Option<&dyn Versions> {
        self.inner.versions().map(|_| self as &dyn Versions)
    }

    fn server_copy(&self) -> Option<&dyn ServerCopy> {
        self.inner.server_copy().map(|_| self as &dyn ServerCopy)
    }
}

#[async_trait]
impl<P: Provider + ?Sized + 'static> Multipart for Counted<P> {
    async fn start(&self, key: &str, attrs: &PutAttrs, size: u64, id: &str) -> Result<Box<dyn MultipartUpload>> {
        let r = self.inner_multipart().start(key, attrs, size, id).await;
        self.count("start upload", &r, |_| 0);
        let upload = r?;
        Ok(Box::new(CountedUpload { inner: upload, run: self.run.clone(), provider: self.inner.name() }))
    }

    async fn resume(
        &self,
        key: &str,
        upload_id: &str,
        attrs: &PutAttrs,
        size: u64,
        recorded: &[PartReceipt],
    ) -> Result<Option<(Box<dyn MultipartUpload>, Vec<PartReceipt>)>> {
        let r = self.inner_multipart().resume(key, upload_id, attrs, size, recorded).await;
        self.count("resume upload", &r, |_| 0);
        let provider = self.inner.name();
        Ok(r?.map(|(upload, held)| {
            (Box::new(CountedUpload { inner: upload, run: self.run.clone(), provider }) as Box<dyn MultipartUpload>, held)
        }))
    }

    async fn abort_upload(&self, key: &str, upload_id: &str) -> Result<()> {
        let r = self.inner_multipart().abort_upload(key, upload_id).await;
        self.count("abort upload", &r, |_| 0);
        r
    }

    async fn stale_uploads(&self, before: chrono::DateTime<chrono::Utc>) -> Result<Vec<OpenUpload>> {
        let r = self.inner_multipart().stale_uploads(before).await;
        self.count("list uploads", &r, |_| 0);
        r
    }

    fn stale_upload_pages(&self, before: chrono::DateTime<chrono::Utc>) -> BoxStream<'_, Result<Vec<OpenUpload>>> {
        self.inner_multipart()
            .stale_upload_pages(before)
            .map(move |page| {
                self.count("list uploads", &page, |_| 0);
                page
            })
            .boxed()
    }
}

#[async_trait]
impl<P: Provider + ?Sized + 'static> ServerCopy for Counted<P> {
    fn copies_from(&self, source: &Location, connect: &crate::Connect) -> bool {
        self.inner.server_copy().is_some_and(|copy| copy.copies_from(source, connect))
    }

    async fn copy_from(
        &self,
        source: &Location,
        object: &ObjectEntry,
        class: Option<&str>,
        plan: &ferry_core::PartPlan,
        started: &crate::UploadStarted,
    ) -> Result<ServerCopied> {
        let copy = self.inner.server_copy().expect("only offered when the inner provider has it");
        let r = copy.copy_from(source, object, class, plan, started).await;
        // The bytes the service copied: none passed through ferry.
        self.count("server copy", &r, |_| 0);
        r
    }
}

struct CountedUpload {
    inner: Box<dyn MultipartUpload>,
    run: Arc<RunContext>,
    provider: &'static str,
}

#[async_trait]
impl MultipartUpload for CountedUpload {
    fn upload_id(&self) -> Option<String> {
        self.inner.upload_id()
    }

    fn put_part(&mut self, index: u32, offset: u64, data: Bytes, crc32c: u32) -> BoxFuture<'static, Result<PartReceipt>> {
        let len = data.len() as u64;
        let part = self.inner.put_part(index, offset, data, crc32c);
        let (run, provider) = (self.run.clone(), self.provider);
        Box::pin(async move {
            let r = part.await;
            run.requests().add(provider, "put part", r.is_ok(), len);
            r
        })
    }

    async fn complete(self: Box<Self>, parts: Vec<PartReceipt>) -> Result<PutReceipt> {
        let (run, provider) = (self.run.clone(), self.provider);
        let r = self.inner.complete(parts).await;
        run.requests().add(provider, "complete upload", r.is_ok(), 0);
        r
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        let (run, provider) = (self.run.clone(), self.provider);
        let r = self.inner.abort().await;
        run.requests().add(provider, "abort upload", r.is_ok(), 0);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rates;
    use crate::local::LocalProvider;

    /// Every call through the wrappers — head and delete and list pages as much as reads and
    /// writes, and the multipart capability's — is counted once, and takes one request slot
    /// when it sends a request.
    #[tokio::test(start_paused = true)]
    async fn every_call_takes_a_request_slot_and_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunContext::new(Rates { bytes_per_second: Some(1 << 20), requests_per_second: Some(10) });
        let local: Arc<dyn Provider> = Arc::new(LocalProvider::new(Location::parse(&dir.path().to_string_lossy()).unwrap()));
        let p = Counted::new(Arc::new(Throttled::new(local, run.clone())), run.clone());
        let started = tokio::time::Instant::now();

        p.put("a", Bytes::from(vec![1u8; 1000]), ferry_core::crc32c(&[1u8; 1000]), &PutAttrs::default()).await.unwrap();
        assert!(p.head("a").await.unwrap().is_some());
        assert_eq!(p.get("a", Some(0..100)).await.unwrap().data.len(), 100);
        let pages: Vec<_> = p.list().collect().await;
        assert_eq!(pages.len(), 1);
        let mp = p.multipart().expect("local offers multipart");
        let mut upload = mp.start("b", &PutAttrs::default(), 10, "0123456789abcdef0123456789abcdef").await.unwrap();
        let part = upload.put_part(0, 0, Bytes::from_static(b"0123456789"), ferry_core::crc32c(b"0123456789")).await.unwrap();
        upload.complete(vec![part]).await.unwrap();
        p.delete("a").await.unwrap();
        p.delete("b").await.unwrap();

        let (received, sent, requests) = run.throttle().charged();
        // put, head, get, list page, part, complete, delete × 2; starting an upload sends no
        // request (a provider whose start does, S3, takes its own slot).
        assert_eq!(requests.units, 8, "every call that sends a request took a slot");
        assert_eq!((received.units, sent.units), (100, 1010));
        // 8 slots at 10 a second: the eighth may go 0.7 s after the first.
        assert_eq!(started.elapsed(), Duration::from_millis(700));
        let counts = run.requests().snapshot();
        let calls = |m: &str| counts.get(&format!("local {m}")).map(|c| (c.calls, c.bytes));
        assert_eq!(calls("put"), Some((1, 1000)));
        assert_eq!(calls("get"), Some((1, 100)));
        assert_eq!(calls("put part"), Some((1, 10)));
        assert_eq!(calls("delete"), Some((2, 0)));
        assert_eq!(
            (calls("head"), calls("list"), calls("start upload"), calls("complete upload")),
            (Some((1, 0)), Some((1, 0)), Some((1, 0)), Some((1, 0)))
        );
    }
}

#[cfg(test)]
mod slot_tests {
    use super::*;
    use crate::Rates;

    /// A provider whose `head` sends three requests (as a GCS compose sends several), each
    /// taking its slot as the HTTP code does, and whose listing sends none of its own.
    struct ThreeRequests {
        location: Location,
        run: Arc<RunContext>,
    }

    #[async_trait]
    impl Provider for ThreeRequests {
        fn name(&self) -> &'static str {
            "three"
        }
        fn location(&self) -> &Location {
            &self.location
        }
        fn limits(&self) -> Limits {
            crate::s3::LIMITS
        }
        async fn check(&self, _: bool) -> Result<()> {
            Ok(())
        }
        fn list(&self) -> BoxStream<'_, Result<Vec<ObjectEntry>>> {
            futures::stream::iter([Ok(vec![]), Ok(vec![])]).boxed()
        }
        async fn head(&self, _: &str) -> Result<Option<ObjectEntry>> {
            for _ in 0..3 {
                self.run.take_slot().await;
            }
            Ok(None)
        }
        async fn get(&self, _: &str, _: Option<Range<u64>>) -> Result<Fetched> {
            unimplemented!()
        }
        async fn put(&self, _: &str, _: Bytes, _: u32, _: &PutAttrs) -> Result<PutReceipt> {
            unimplemented!()
        }
        async fn delete(&self, _: &str) -> Result<()> {
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn each_request_takes_one_slot_whoever_takes_it() {
        let run = RunContext::new(Rates { bytes_per_second: None, requests_per_second: Some(100) });
        let inner = ThreeRequests { location: Location::parse("s3://bucket-x/p").unwrap(), run: run.clone() };
        let p = Throttled::new(Arc::new(inner), run.clone());
        let requests = || run.throttle().charged().2.units;
        p.head("k").await.unwrap();
        assert_eq!(requests(), 3, "the wrapper's slot went to the first request, never a fourth");
        p.delete("k").await.unwrap();
        assert_eq!(requests(), 4, "a call that takes no slot itself has the wrapper's");
        assert_eq!(p.list().collect::<Vec<_>>().await.len(), 2);
        assert_eq!(requests(), 6, "pages with no slot of their own are charged once each, the end of the listing never");
        // Outside any wrapper, a provider's requests each take their own.
        ThreeRequests { location: Location::parse("s3://bucket-x/p").unwrap(), run: run.clone() }.head("k").await.unwrap();
        assert_eq!(requests(), 9);
    }
}

#[cfg(test)]
mod error_tests {
    use super::*;
    use crate::ProviderError;
    use crate::Rates;
    use ferry_core::{ErrorClass, FailureKind};

    /// A provider whose every call fails: reads as corrupted in transit, heads as throttled.
    struct Failing(Location);

    #[async_trait]
    impl Provider for Failing {
        fn name(&self) -> &'static str {
            "failing"
        }
        fn location(&self) -> &Location {
            &self.0
        }
        fn limits(&self) -> Limits {
            crate::s3::LIMITS
        }
        async fn check(&self, _: bool) -> Result<()> {
            Ok(())
        }
        fn list(&self) -> BoxStream<'_, Result<Vec<ObjectEntry>>> {
            futures::stream::empty().boxed()
        }
        async fn head(&self, key: &str) -> Result<Option<ObjectEntry>> {
            let (class, kind) = (ErrorClass::Retryable, FailureKind::Throttled);
            Err(ProviderError::Request { provider: "failing", op: "head", key: key.into(), detail: "HTTP 429".into(), class, kind })
        }
        async fn get(&self, key: &str, _: Option<Range<u64>>) -> Result<Fetched> {
            Err(ProviderError::corrupted("failing", "get", key, "bytes flipped"))
        }
        async fn put(&self, _: &str, _: Bytes, _: u32, _: &PutAttrs) -> Result<PutReceipt> {
            unimplemented!()
        }
        async fn delete(&self, _: &str) -> Result<()> {
            Ok(())
        }
    }

    /// The wrappers `open` puts around every provider hand its failures on as they are: the
    /// kind set where the failure was seen reaches the mover, the retry counts and the report.
    #[tokio::test(start_paused = true)]
    async fn wrapped_failures_keep_their_kind_class_and_message() {
        let run = RunContext::new(Rates { bytes_per_second: Some(1 << 20), requests_per_second: Some(10) });
        let inner: Arc<dyn Provider> = Arc::new(Failing(Location::parse("s3://bucket-x/p").unwrap()));
        let p = Counted::new(Arc::new(Throttled::new(inner.clone(), run.clone())), run.clone());
        let (direct, wrapped) = (inner.get("k", None).await.unwrap_err(), p.get("k", None).await.unwrap_err());
        assert_eq!((wrapped.kind(), wrapped.class()), (FailureKind::CorruptedInTransit, ErrorClass::Restart));
        assert!(wrapped.is_corrupted());
        assert_eq!(wrapped.to_string(), direct.to_string());
        let wrapped = p.head("k").await.unwrap_err();
        assert_eq!((wrapped.kind(), wrapped.class()), (FailureKind::Throttled, ErrorClass::Retryable));
        assert_eq!(run.requests().snapshot().get("failing get").map(|c| c.calls), Some(1), "counted as a failed call");
    }
}
