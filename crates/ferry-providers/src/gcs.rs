//! Google Cloud Storage (and fake-gcs-server), on the JSON API over reqwest.
//!
//! Credentials come from Google's Application Default Credentials chain
//! (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's ADC file, the metadata server). An explicit
//! endpoint or `STORAGE_EMULATOR_HOST` means an emulator, reached without credentials.
//! Large objects are uploaded as parallel part objects and joined with `compose` (32 sources a
//! call, in rounds), the way parallel composite uploads work; the composite's CRC32C is then
//! checked against the CRC ferry combined from its parts, and the part objects are deleted.

use crate::{
    Fetched, Multipart, MultipartUpload, PartReceipt, Provider, ProviderError, PutAttrs, PutReceipt, Result, ServerCopied, ServerCopy,
};
use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use ferry_core::{ErrorClass, Limits, Location, ObjectEntry};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use google_cloud_auth::credentials::{CacheableResource, Credentials};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use crate::TEMP_MARK;

const PROVIDER: &str = "gcs";
/// GCS composes at most 32 sources per call.
const COMPOSE_FANIN: usize = 32;
const ATTEMPTS: u32 = 5;
/// The longest JSON answer read (a page of 1000 objects with metadata is a few MB).
const MAX_JSON: usize = 64 << 20;

const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

fn enc(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    base: String,
    bucket: String,
    creds: Option<Credentials>,
    endpoint: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct GcsObject {
    name: String,
    #[serde(default)]
    size: Option<String>,
    updated: Option<DateTime<Utc>>,
    time_created: Option<DateTime<Utc>>,
    etag: Option<String>,
    generation: Option<String>,
    crc32c: Option<String>,
    md5_hash: Option<String>,
    content_type: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListPage {
    #[serde(default)]
    items: Vec<GcsObject>,
    next_page_token: Option<String>,
}

fn b64_to_hex(b64: Option<&str>) -> Option<String> {
    B64.decode(b64?).ok().map(hex::encode)
}

impl GcsObject {
    fn entry(self, key: String) -> ObjectEntry {
        ObjectEntry {
            key,
            size: self.size.and_then(|s| s.parse().ok()).unwrap_or(0),
            last_modified: self.updated,
            etag: self.etag,
            version: self.generation,
            crc32c: b64_to_hex(self.crc32c.as_deref()),
            md5: b64_to_hex(self.md5_hash.as_deref()),
            content_type: self.content_type,
            metadata: self.metadata,
            crc64nvme: None,
            skipped: None,
            mode: None,
        }
    }
}

impl Client {
    async fn auth(&self, req: reqwest::RequestBuilder) -> Result<reqwest::RequestBuilder> {
        let Some(creds) = &self.creds else { return Ok(req) };
        match creds.headers(http::Extensions::new()).await {
            Ok(CacheableResource::New { data, .. }) => Ok(req.headers(data)),
            Ok(CacheableResource::NotModified) => Ok(req),
            Err(e) => Err(ProviderError::Denied { provider: PROVIDER, bucket: self.bucket.clone(), detail: crate::error::chain(&e) }),
        }
    }

    /// Sends a request built by `build`, retrying transient failures with jittered backoff.
    /// Answers 2xx as `Ok`; any other status becomes a classified error.
    async fn send(&self, op: &'static str, key: &str, build: impl Fn() -> reqwest::RequestBuilder) -> Result<reqwest::Response> {
        self.send_expecting(op, key, Some(0), build).await
    }

    /// [`Client::send`] for an answer of about `expect` bytes (`None`: unknown), which the
    /// request's time limit allows for.
    async fn send_expecting(
        &self,
        op: &'static str,
        key: &str,
        expect: Option<u64>,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        let peer = crate::http::Peer { provider: PROVIDER, bucket: &self.bucket, endpoint: &self.endpoint };
        crate::http::send_retrying(&peer, op, key, ATTEMPTS, || async {
            match self.auth(build()).await?.build() {
                Ok(req) => Ok(crate::http::execute_timed(&self.http, req, expect).await),
                Err(e) => Ok(Err(e)),
            }
        })
        .await
    }

    fn object_url(&self, name: &str) -> String {
        format!("{}/storage/v1/b/{}/o/{}", self.base, enc(&self.bucket), enc(name))
    }

    /// The answer's JSON (a listing page or an object's description: never more than
    /// [`MAX_JSON`] bytes is read).
    async fn json<T: for<'de> Deserialize<'de>>(&self, op: &'static str, key: &str, resp: reqwest::Response) -> Result<T> {
        let failed =
            |detail: String| ProviderError::Request { provider: PROVIDER, op, key: key.to_string(), detail, class: ErrorClass::Retryable };
        let body = crate::http::read_limited(resp, MAX_JSON).await.map_err(failed)?;
        serde_json::from_slice(&body).map_err(|e| failed(format!("unreadable answer: {e}")))
    }

    async fn upload_media(&self, name: &str, data: Bytes) -> Result<GcsObject> {
        let url = format!("{}/upload/storage/v1/b/{}/o", self.base, enc(&self.bucket));
        let resp = self
            .send("upload part", name, || {
                self.http
                    .post(&url)
                    .query(&[("uploadType", "media"), ("name", name)])
                    .header("content-type", "application/octet-stream")
                    .body(data.clone())
            })
            .await?;
        self.json("upload part", name, resp).await
    }

    /// One page (up to 1000 objects) of the names starting with `prefix`, after `token`.
    async fn list_page(&self, prefix: &str, token: Option<&str>) -> Result<ListPage> {
        let url = format!("{}/storage/v1/b/{}/o", self.base, enc(&self.bucket));
        let resp = self
            .send("list", prefix, || {
                let mut q = vec![("prefix", prefix), ("maxResults", "1000")];
                if let Some(t) = token {
                    q.push(("pageToken", t));
                }
                self.http.get(&url).query(&q)
            })
            .await?;
        self.json("list", prefix, resp).await
    }

    /// Every object whose name starts with `prefix` (all pages).
    async fn list_prefix(&self, prefix: &str) -> Result<Vec<GcsObject>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self.list_page(prefix, token.as_deref()).await?;
            out.extend(page.items);
            match page.next_page_token {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    async fn delete(&self, name: &str) -> Result<()> {
        match self.send("delete", name, || self.http.delete(self.object_url(name))).await {
            Ok(_) | Err(ProviderError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn compose(&self, dest: &str, sources: &[String], attrs: Option<&PutAttrs>) -> Result<GcsObject> {
        let mut destination = serde_json::json!({});
        if let Some(a) = attrs {
            if let Some(ct) = &a.content_type {
                destination["contentType"] = ct.clone().into();
            }
            if !a.metadata.is_empty() {
                destination["metadata"] = serde_json::to_value(&a.metadata).expect("map serializes");
            }
        }
        let body = serde_json::json!({
            "sourceObjects": sources.iter().map(|n| serde_json::json!({"name": n})).collect::<Vec<_>>(),
            "destination": destination,
        });
        let url = format!("{}/compose", self.object_url(dest));
        let resp = self.send("compose", dest, || self.http.post(&url).json(&body)).await?;
        self.json("compose", dest, resp).await
    }
}

pub struct GcsProvider {
    location: Location,
    client: Client,
}

impl GcsProvider {
    pub async fn new(location: Location, connect: &crate::Connect) -> Result<GcsProvider> {
        let emulator = connect.endpoint.clone().or_else(|| std::env::var("STORAGE_EMULATOR_HOST").ok().filter(|s| !s.is_empty()));
        let (base, creds) = match &emulator {
            Some(ep) => {
                let ep = if ep.contains("://") { ep.clone() } else { format!("http://{ep}") };
                (ep.trim_end_matches('/').to_string(), None)
            }
            None => {
                let creds = google_cloud_auth::credentials::Builder::default()
                    .build()
                    .map_err(|e| ProviderError::Config { provider: PROVIDER, detail: format!("Google credentials: {e}") })?;
                ("https://storage.googleapis.com".to_string(), Some(creds))
            }
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_secs(120))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| ProviderError::Config { provider: PROVIDER, detail: e.to_string() })?;
        let endpoint = ferry_core::location::redact(&base);
        Ok(GcsProvider { client: Client { http, base, bucket: location.bucket.clone(), creds, endpoint }, location })
    }
}

#[async_trait]
impl Provider for GcsProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    fn location(&self) -> &Location {
        &self.location
    }

    fn limits(&self) -> Limits {
        Limits::GCS
    }

    async fn check(&self, _for_write: bool) -> Result<()> {
        let c = &self.client;
        let url = format!("{}/storage/v1/b/{}", c.base, enc(&c.bucket));
        match c.send("get bucket", "", || c.http.get(&url)).await {
            Ok(_) => Ok(()),
            Err(ProviderError::NotFound { .. }) => Err(ProviderError::NoSuchBucket { provider: PROVIDER, bucket: c.bucket.clone() }),
            Err(e) => Err(e),
        }
    }

    fn list(&self) -> BoxStream<'_, Result<Vec<ObjectEntry>>> {
        let prefix = self.location.prefix.as_str();
        futures::stream::unfold(Some(None::<String>), move |state| async move {
            let token = state?;
            match self.client.list_page(prefix, token.as_deref()).await {
                Ok(p) => {
                    let entries = p
                        .items
                        .into_iter()
                        .filter_map(|o| {
                            let key = o.name.get(prefix.len()..)?.to_string();
                            // ferry's own part objects are recorded as skipped, never copied;
                            // a user's look-alike name is an ordinary object.
                            Some(match part_object(&o.name) {
                                Some(_) => ObjectEntry::skipped(key, ferry_core::SkipReason::FerryTempFile),
                                None => o.entry(key),
                            })
                        })
                        .collect();
                    Some((Ok(entries), p.next_page_token.map(Some)))
                }
                Err(e) => Some((Err(e), None)),
            }
        })
        .boxed()
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectEntry>> {
        let c = &self.client;
        let name = self.location.key_for(key);
        let url = c.object_url(&name);
        match c.send("head", key, || c.http.get(&url)).await {
            Ok(resp) => Ok(Some(c.json::<GcsObject>("head", key, resp).await?.entry(key.to_string()))),
            Err(ProviderError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Fetched> {
        let c = &self.client;
        let name = self.location.key_for(key);
        let url = c.object_url(&name);
        let range = range.filter(|r| r.end > r.start);
        let resp = c
            .send_expecting("get", key, range.as_ref().map(|r| r.end - r.start), || {
                let req = c.http.get(&url).query(&[("alt", "media")]);
                match &range {
                    Some(r) => req.header("range", format!("bytes={}-{}", r.start, r.end - 1)),
                    None => req,
                }
            })
            .await?;
        let header = |n: &str| resp.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
        let total = header("content-range")
            .and_then(|cr| cr.rsplit('/').next().and_then(|t| t.parse().ok()))
            .or_else(|| header("x-goog-stored-content-length").and_then(|s| s.parse().ok()))
            .or(resp.content_length())
            .unwrap_or(0);
        let object = ObjectEntry {
            key: key.to_string(),
            size: total,
            version: header("x-goog-generation"),
            content_type: header("content-type"),
            ..Default::default()
        };
        let data = crate::http::read_body(resp).await.map_err(|e| ProviderError::Request {
            provider: PROVIDER,
            op: "get",
            key: key.to_string(),
            detail: crate::error::chain(&e),
            class: ErrorClass::Retryable,
        })?;
        let expected = range.map(|r| r.end - r.start).unwrap_or(total);
        if data.len() as u64 != expected {
            return Err(ProviderError::Request {
                provider: PROVIDER,
                op: "get",
                key: key.to_string(),
                detail: format!("short read: {} of {expected} bytes", data.len()),
                class: ErrorClass::Retryable,
            });
        }
        Ok(Fetched { data, object, checked: None })
    }

    async fn put(&self, key: &str, data: Bytes, crc32c: u32, attrs: &PutAttrs) -> Result<PutReceipt> {
        crate::throttle::sending(data.len()).await;
        let c = &self.client;
        let name = self.location.key_for(key);
        let mut meta = serde_json::json!({ "name": name, "crc32c": B64.encode(crc32c.to_be_bytes()) });
        if let Some(ct) = &attrs.content_type {
            meta["contentType"] = ct.clone().into();
        }
        if !attrs.metadata.is_empty() {
            meta["metadata"] = serde_json::to_value(&attrs.metadata).expect("map serializes");
        }
        let boundary = format!("ferry-{}", uuid::Uuid::new_v4().simple());
        let media_type = attrs.content_type.as_deref().unwrap_or("application/octet-stream");
        let head = format!(
            "--{boundary}\r\ncontent-type: application/json; charset=UTF-8\r\n\r\n{meta}\r\n--{boundary}\r\ncontent-type: {media_type}\r\n\r\n"
        );
        let tail = format!("\r\n--{boundary}--\r\n");
        let mut body = BytesMut::with_capacity(head.len() + data.len() + tail.len());
        body.extend_from_slice(head.as_bytes());
        body.extend_from_slice(&data);
        body.extend_from_slice(tail.as_bytes());
        let body = body.freeze();
        let url = format!("{}/upload/storage/v1/b/{}/o", c.base, enc(&c.bucket));
        let resp = c
            .send("put", key, || {
                c.http
                    .post(&url)
                    .query(&[("uploadType", "multipart")])
                    .header("content-type", format!("multipart/related; boundary={boundary}"))
                    .body(body.clone())
            })
            .await?;
        let o: GcsObject = c.json("put", key, resp).await?;
        stored_as_sent(&o, crc32c, "put", key)?;
        Ok(PutReceipt { etag: o.etag })
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.client.delete(&self.location.key_for(key)).await
    }

    fn multipart(&self) -> Option<&dyn Multipart> {
        Some(self)
    }

    fn server_copy(&self) -> Option<&dyn ServerCopy> {
        Some(self)
    }
}

#[async_trait]
impl Multipart for GcsProvider {
    async fn start(&self, key: &str, attrs: &PutAttrs, _size: u64, id: &str) -> Result<Box<dyn MultipartUpload>> {
        Ok(Box::new(self.upload(key, id, attrs, Vec::new())))
    }

    /// Part objects are the upload's state: those that exist (with their CRC32C) are held.
    async fn resume(
        &self,
        key: &str,
        upload_id: &str,
        attrs: &PutAttrs,
        _size: u64,
        _recorded: &[PartReceipt],
    ) -> Result<Option<(Box<dyn MultipartUpload>, Vec<PartReceipt>)>> {
        let upload = self.upload(key, upload_id, attrs, Vec::new());
        let prefix = upload.temp_name("");
        let found = self.client.list_prefix(&prefix).await?;
        let mut held = Vec::new();
        let mut names = Vec::new();
        for o in found {
            names.push(o.name.clone());
            let index = o.name.strip_prefix(&prefix).and_then(|s| s.parse::<u32>().ok());
            let crc = b64_to_hex(o.crc32c.as_deref()).and_then(|h| u32::from_str_radix(&h, 16).ok());
            if let (Some(index), Some(crc32c), Some(size)) = (index, crc, o.size.as_deref().and_then(|s| s.parse().ok())) {
                held.push(PartReceipt { index, id: o.name, size, crc32c });
            }
        }
        held.sort_by_key(|p| p.index);
        let upload = self.upload(key, upload_id, attrs, names);
        Ok(Some((Box::new(upload), held)))
    }

    /// Part objects under the prefix, grouped by upload.
    async fn stale_uploads(&self, before: DateTime<Utc>) -> Result<Vec<crate::OpenUpload>> {
        let pages: Vec<Vec<crate::OpenUpload>> = self.stale_upload_pages(before).try_collect().await?;
        Ok(pages.into_iter().flatten().collect())
    }

    /// Part objects under the prefix, grouped by upload, a listing page at a time. A listing is
    /// in name order and an upload's part objects share a name prefix, so they come together:
    /// only the upload the page ended in is held over to the next page.
    fn stale_upload_pages(&self, before: DateTime<Utc>) -> BoxStream<'_, Result<Vec<crate::OpenUpload>>> {
        struct Listing {
            token: Option<String>,
            open: Option<crate::OpenUpload>,
            done: bool,
        }
        let prefix = self.location.prefix.as_str();
        futures::stream::unfold(Listing { token: None, open: None, done: false }, move |mut at| async move {
            if at.done {
                return None;
            }
            let page = match self.client.list_page(prefix, at.token.as_deref()).await {
                Ok(page) => page,
                Err(e) => {
                    at.done = true;
                    return Some((Err(e), at));
                }
            };
            let mut out = Vec::new();
            for o in page.items {
                // Any other name after an upload's parts means they have all been listed.
                let Some((dest, id)) = part_object(&o.name) else {
                    out.extend(at.open.take());
                    continue;
                };
                let key = dest.get(prefix.len()..).unwrap_or(dest);
                let created = o.time_created.or(o.updated);
                match &mut at.open {
                    Some(u) if u.key == key && u.upload_id == id => u.initiated = u.initiated.min(created),
                    open => {
                        let next = crate::OpenUpload { key: key.to_string(), upload_id: id.to_string(), initiated: created };
                        out.extend(open.replace(next));
                    }
                }
            }
            match page.next_page_token {
                Some(token) => at.token = Some(token),
                None => {
                    at.done = true;
                    out.extend(at.open.take());
                }
            }
            out.retain(|u| u.initiated.is_none_or(|t| t < before));
            Some((Ok(out), at))
        })
        .boxed()
    }

    async fn abort_upload(&self, key: &str, upload_id: &str) -> Result<()> {
        let upload = self.upload(key, upload_id, &PutAttrs::default(), Vec::new());
        let names = self.client.list_prefix(&upload.temp_name("")).await?.into_iter().map(|o| o.name).collect();
        *upload.parts.lock().expect("parts lock") = names;
        upload.delete_temps().await
    }
}

impl GcsProvider {
    fn upload(&self, key: &str, id: &str, attrs: &PutAttrs, existing: Vec<String>) -> GcsUpload {
        GcsUpload {
            client: self.client.clone(),
            dest: self.location.key_for(key),
            key: key.to_string(),
            id: id.to_string(),
            attrs: attrs.clone(),
            parts: Arc::new(std::sync::Mutex::new(existing)),
        }
    }
}

/// The upload a name belongs to when it is one of ferry's part objects: `DEST.ferry-tmp-ID-PART`,
/// ID the upload's 32 hex digits, gives `(DEST, ID)`. A user's `report.ferry-tmp-2024.csv` is
/// not one: listings copy it and `clean` never aborts it.
fn part_object(name: &str) -> Option<(&str, &str)> {
    let (dest, rest) = name.rsplit_once(TEMP_MARK)?;
    let (id, part) = rest.split_once('-')?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) && !part.is_empty()).then_some((dest, id))
}

struct GcsUpload {
    client: Client,
    dest: String,
    key: String,
    id: String,
    attrs: PutAttrs,
    /// Every temporary object created so far, for cleanup.
    parts: Arc<std::sync::Mutex<Vec<String>>>,
}

impl GcsUpload {
    fn temp_name(&self, suffix: &str) -> String {
        format!("{}{TEMP_MARK}{}-{suffix}", self.dest, self.id)
    }

    async fn delete_temps(&self) -> Result<()> {
        let names = std::mem::take(&mut *self.parts.lock().expect("parts lock"));
        let results: Vec<Result<()>> =
            futures::stream::iter(names).map(|n| async move { self.client.delete(&n).await }).buffer_unordered(16).collect().await;
        results.into_iter().collect()
    }
}

/// GCS answers an upload with the CRC32C of what it stored: it must be the one ferry sent, or
/// the bytes were corrupted on the way (sending them again is the repair).
fn stored_as_sent(o: &GcsObject, crc32c: u32, op: &'static str, name: &str) -> Result<()> {
    let sent = ferry_core::digest::crc32c_hex(crc32c);
    match b64_to_hex(o.crc32c.as_deref()) {
        Some(stored) if stored != sent => Err(ProviderError::corrupted(PROVIDER, op, name, format!("stored crc32c {stored}, sent {sent}"))),
        _ => Ok(()),
    }
}

#[async_trait]
impl MultipartUpload for GcsUpload {
    fn upload_id(&self) -> Option<String> {
        Some(self.id.clone())
    }

    fn put_part(&mut self, index: u32, _offset: u64, data: Bytes, crc32c: u32) -> BoxFuture<'static, Result<PartReceipt>> {
        let name = self.temp_name(&format!("{index:05}"));
        {
            let mut parts = self.parts.lock().expect("parts lock");
            if !parts.contains(&name) {
                parts.push(name.clone());
            }
        }
        let client = self.client.clone();
        Box::pin(async move {
            let size = data.len() as u64;
            crate::throttle::sending(data.len()).await;
            let o = client.upload_media(&name, data).await?;
            stored_as_sent(&o, crc32c, "upload part", &name)?;
            Ok(PartReceipt { index, id: name, size, crc32c })
        })
    }

    async fn complete(self: Box<Self>, parts: Vec<PartReceipt>) -> Result<PutReceipt> {
        let expected = parts.iter().fold((0u32, 0u64), |(crc, len), p| {
            (if len == 0 { p.crc32c } else { ferry_core::crc32c_combine(crc, p.crc32c, p.size) }, len + p.size)
        });
        let mut names: Vec<String> = parts.into_iter().map(|p| p.id).collect();
        let mut round = 0;
        let result = async {
            while names.len() > COMPOSE_FANIN {
                round += 1;
                let mut next = Vec::new();
                for (i, group) in names.chunks(COMPOSE_FANIN).enumerate() {
                    let name = self.temp_name(&format!("c{round}-{i:05}"));
                    self.parts.lock().expect("parts lock").push(name.clone());
                    self.client.compose(&name, group, None).await?;
                    next.push(name);
                }
                names = next;
            }
            let o = self.client.compose(&self.dest, &names, Some(&self.attrs)).await?;
            let want = ferry_core::digest::crc32c_hex(expected.0);
            match b64_to_hex(o.crc32c.as_deref()) {
                Some(got) if got != want => Err(ProviderError::Request {
                    provider: PROVIDER,
                    op: "compose",
                    key: self.key.clone(),
                    detail: format!("composite crc32c {got} differs from the parts' combined {want}"),
                    class: ErrorClass::Retryable,
                }),
                _ => Ok(PutReceipt { etag: o.etag }),
            }
        }
        .await;
        let cleanup = self.delete_temps().await;
        let receipt = result?;
        cleanup?;
        Ok(receipt)
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        self.delete_temps().await
    }
}

/// What a rewrite call answers: done with the new object, or a token to call again with.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RewriteAnswer {
    done: bool,
    rewrite_token: Option<String>,
    resource: Option<GcsObject>,
}

/// Rewrite calls one object may take (GCS copies up to ~1 GiB per call between locations or
/// storage classes, and in one call otherwise): a bound, so the loop always ends.
const MAX_REWRITE_CALLS: u32 = 100_000;

#[async_trait]
impl ServerCopy for GcsProvider {
    async fn copy_from(
        &self,
        source: &Location,
        object: &ObjectEntry,
        _part_size: u64,
        _started: &(dyn for<'s> Fn(&'s str) -> Result<()> + Sync),
    ) -> Result<ServerCopied> {
        let key = object.key.as_str();
        let c = &self.client;
        let url = format!(
            "{}/storage/v1/b/{}/o/{}/rewriteTo/b/{}/o/{}",
            c.base,
            enc(&source.bucket),
            enc(&source.key_for(key)),
            enc(&c.bucket),
            enc(&self.location.key_for(key))
        );
        let mut token: Option<String> = None;
        for _ in 0..MAX_REWRITE_CALLS {
            // The copy is of the generation the HEAD saw, or nothing (412, retried: the retry's
            // HEAD then sees the change and the object starts over).
            let mut query: Vec<(&str, String)> = Vec::new();
            if let Some(generation) = &object.version {
                query.push(("ifSourceGenerationMatch", generation.clone()));
            }
            if let Some(t) = &token {
                query.push(("rewriteToken", t.clone()));
            }
            let resp = c.send("copy", key, || c.http.post(&url).query(&query).header("content-length", "0")).await?;
            let answer: RewriteAnswer = c.json("copy", key, resp).await?;
            if answer.done {
                let o = answer.resource.unwrap_or_default();
                return Ok(ServerCopied {
                    etag: o.etag.clone(),
                    crc32c: b64_to_hex(o.crc32c.as_deref()),
                    md5: b64_to_hex(o.md5_hash.as_deref()),
                    crc64nvme: None,
                    parts: 0,
                });
            }
            token = Some(answer.rewrite_token.ok_or_else(|| ProviderError::Request {
                provider: PROVIDER,
                op: "copy",
                key: key.to_string(),
                detail: "the rewrite is not done and gave no token to continue with".into(),
                class: ErrorClass::Retryable,
            })?);
        }
        Err(ProviderError::Request {
            provider: PROVIDER,
            op: "copy",
            key: key.to_string(),
            detail: format!("the rewrite was not done after {MAX_REWRITE_CALLS} calls"),
            class: ErrorClass::Retryable,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Issue 12, case 4: only ferry's own part objects are set aside, never a user's look-alike.
    #[test]
    fn part_objects_are_ferrys_own_only() {
        let id = "3f2a9c0d1e2b4a5f8e7d6c5b4a392817";
        assert_eq!(part_object(&format!("dir/big.bin.ferry-tmp-{id}-00001")), Some(("dir/big.bin", id)));
        assert_eq!(part_object(&format!("dir/big.bin.ferry-tmp-{id}-c1-00002")), Some(("dir/big.bin", id)));
        for theirs in ["report.ferry-tmp-2024.csv", "report.ferry-tmp-2024-x.csv", "a.ferry-tmp-", "x.ferry-tmp-zz-1", "plain.txt"] {
            assert_eq!(part_object(theirs), None, "{theirs}");
        }
    }
}
