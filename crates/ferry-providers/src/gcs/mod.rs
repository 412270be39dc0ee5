//! Google Cloud Storage (and fake-gcs-server), on the JSON API over reqwest.
//!
//! Credentials come from Google's Application Default Credentials chain
//! (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's ADC file, the metadata server). An explicit
//! endpoint or `STORAGE_EMULATOR_HOST` means an emulator, reached without credentials.
//! Large objects are uploaded as parallel part objects and joined with `compose` (32 sources a
//! call, in rounds), the way parallel composite uploads work; the composite's CRC32C is then
//! checked against the CRC ferry combined from its parts, and the part objects are deleted.
//!
//! # Layout
//! - `mod.rs`: [`GcsProvider`], its constructor and the [`Provider`] methods.
//! - `client.rs`: the JSON API client (credentials or emulator, retries, typed answers).
//! - `list.rs`: the listing, ferry's own part objects marked skipped.
//! - `multipart.rs`: [`Multipart`] as part objects joined by compose, resume and stale uploads
//!   found by listing part objects.
//! - `server_copy.rs`: [`ServerCopy`] as rewrite calls.
//! - `versions.rs`: [`Versions`] (object versioning: the bucket's `versioning.enabled`, listings
//!   with `versions=true`, reads by `generation`).

mod client;
mod list;
mod multipart;
mod server_copy;
mod versions;

use crate::{Fetched, Multipart, Provider, ProviderError, PutAttrs, PutReceipt, Result, ServerCopy, Versions};
use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::{Bytes, BytesMut};
use ferry_core::headers::NameRule;
use ferry_core::{Carries, Checksums, ErrorClass, FailureKind, Header, Headers, Limits, Location, ObjectEntry};
use futures::stream::BoxStream;
use std::ops::Range;

use client::*;

const PROVIDER: &str = "gcs";

/// What GCS keeps: Content-Type and four headers (it has no Expires), metadata under any name
/// and value, and no object tags.
pub const CARRIES: Carries = Carries {
    metadata: true,
    headers: &[Header::ContentEncoding, Header::ContentDisposition, Header::ContentLanguage, Header::CacheControl],
    tags: false,
    tag_limits: ferry_core::TagLimits::ANY,
    names: NameRule::Any,
    ascii_values: false,
};

/// GCS parallel composite uploads: parts are objects, composed 32 at a time.
pub const LIMITS: Limits =
    Limits { min_part_size: 1, max_part_size: 5 << 40, max_parts: 1024, max_object_size: 5 << 40, default_part_size: 16 << 20 };

/// The registry's opener (see [`crate::REGISTRY`]).
pub(crate) fn open(
    location: &Location,
    connect: &crate::Connect,
    run: &std::sync::Arc<crate::RunContext>,
) -> futures::future::BoxFuture<'static, Result<std::sync::Arc<dyn Provider>>> {
    let (location, connect, run) = (location.clone(), connect.clone(), run.clone());
    Box::pin(async move {
        let provider: std::sync::Arc<dyn Provider> = std::sync::Arc::new(GcsProvider::new(location, &connect, &run).await?);
        Ok(provider)
    })
}

pub struct GcsProvider {
    /// How this location is reached (names only), compared with a source's for server-side copy.
    connect: crate::Connect,
    location: Location,
    client: Client,
}

impl GcsProvider {
    pub async fn new(location: Location, connect: &crate::Connect, run: &std::sync::Arc<crate::RunContext>) -> Result<GcsProvider> {
        Ok(GcsProvider { client: Client::connect(&location.bucket, connect, run)?, location, connect: connect.clone() })
    }
}

impl GcsProvider {
    /// [`Provider::head`] of the key's live generation, or of `generation`.
    pub(crate) async fn head_of(&self, key: &str, generation: Option<&str>) -> Result<Option<ObjectEntry>> {
        let c = &self.client;
        let name = self.location.key_for(key);
        let url = c.object_url(&name);
        match c.send("head", key, || c.http.get(&url).query(&generation.map(|g| vec![("generation", g)]).unwrap_or_default())).await {
            Ok(resp) => Ok(Some(c.json::<GcsObject>("head", key, resp).await?.entry(key.to_string()))),
            Err(ProviderError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// [`Provider::get`] of the key's live generation, or of `generation`.
    pub(crate) async fn get_of(&self, key: &str, generation: Option<&str>, range: Option<Range<u64>>) -> Result<Fetched> {
        let c = &self.client;
        let name = self.location.key_for(key);
        let url = c.object_url(&name);
        let range = range.filter(|r| r.end > r.start);
        let resp = c
            .send_expecting("get", key, range.as_ref().map(|r| r.end - r.start), || {
                // The stored bytes, always: without `Accept-Encoding: gzip`, GCS serves an object
                // stored with `Content-Encoding: gzip` decompressed (decompressive transcoding),
                // bytes no stored checksum or size describes. ferry's HTTP client never
                // decompresses (reqwest without its `gzip` feature).
                let req = c.http.get(&url).query(&[("alt", "media")]).header("accept-encoding", "gzip");
                let req = req.query(&generation.map(|g| vec![("generation", g)]).unwrap_or_default());
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
        // Served transcoded all the same (stored gzip, sent otherwise): these are not the bytes
        // the object's size and checksums describe, and reading again will not change that.
        let stored_encoding = header("x-goog-stored-content-encoding").filter(|e| e != "identity");
        if let Some(stored) = stored_encoding.filter(|stored| header("content-encoding").as_deref() != Some(stored.as_str())) {
            return Err(ProviderError::Request {
                provider: PROVIDER,
                op: "get",
                key: key.to_string(),
                detail: format!("the service sent the object decoded from its stored Content-Encoding {stored}, not the stored bytes"),
                class: ErrorClass::PerObject,
                kind: FailureKind::Unsupported,
            });
        }
        // A whole read comes with the object's own checksums (`x-goog-hash`), of the stored
        // bytes of the generation read: the proof of this read, whatever the manifest says.
        let checksums = match range {
            Some(_) => Checksums::default(),
            None => goog_hash(header("x-goog-hash").as_deref()),
        };
        let object = ObjectEntry {
            key: key.to_string(),
            size: total,
            version: header("x-goog-generation"),
            content_type: header("content-type"),
            // No metadata from `x-goog-meta-*`: header names arrive in lower case and values
            // that are not ASCII not at all. The listing's (JSON) metadata is exact.
            headers: Headers {
                // A transcoded read says what is stored in its own header.
                content_encoding: header("x-goog-stored-content-encoding")
                    .filter(|e| e != "identity")
                    .or_else(|| header("content-encoding")),
                content_disposition: header("content-disposition"),
                content_language: header("content-language"),
                cache_control: header("cache-control"),
                expires: None,
            },
            tags: Some(ferry_core::Tags::new()),
            checksums,
            ..Default::default()
        };
        let data = crate::http::read_body(self.client.run.buffers(), resp).await.map_err(|e| ProviderError::Request {
            provider: PROVIDER,
            op: "get",
            key: key.to_string(),
            detail: crate::error::chain(&e),
            class: ErrorClass::Restart,
            kind: if e.is_timeout() { FailureKind::Timeout } else { FailureKind::Connection },
        })?;
        let expected = range.map(|r| r.end - r.start).unwrap_or(total);
        if data.len() as u64 != expected {
            return Err(ProviderError::Request {
                provider: PROVIDER,
                op: "get",
                key: key.to_string(),
                detail: format!("short read: {} of {expected} bytes", data.len()),
                class: ErrorClass::Restart,
                kind: FailureKind::ShortRead,
            });
        }
        Ok(Fetched { data, object, checked: None })
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
        LIMITS
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
        self.listing()
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectEntry>> {
        self.head_of(key, None).await
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Fetched> {
        self.get_of(key, None, range).await
    }

    async fn put(&self, key: &str, data: Bytes, crc32c: u32, attrs: &PutAttrs) -> Result<PutReceipt> {
        let c = &self.client;
        let name = self.location.key_for(key);
        let mut meta = serde_json::json!({ "name": name, "crc32c": B64.encode(crc32c.to_be_bytes()) });
        client::set_attrs(&mut meta, attrs);
        c.set_class(&mut meta, attrs.storage_class.as_deref());
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
        let kms: Vec<(&str, &str)> = c.kms_key.as_deref().map(|k| ("kmsKeyName", k)).into_iter().collect();
        let resp = c
            .send("put", key, || {
                c.http
                    .post(&url)
                    .query(&[("uploadType", "multipart")])
                    .query(&kms)
                    .header("content-type", format!("multipart/related; boundary={boundary}"))
                    .body(body.clone())
            })
            .await?;
        let o: GcsObject = c.json("put", key, resp).await?;
        stored_as_sent(&o, crc32c, "put", key)?;
        Ok(PutReceipt { etag: o.etag, version: o.generation })
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.client.delete(&self.location.key_for(key)).await
    }

    fn lists_in_key_order(&self) -> bool {
        true
    }

    fn carries(&self) -> ferry_core::Carries {
        CARRIES
    }

    fn multipart(&self) -> Option<&dyn Multipart> {
        Some(self)
    }

    fn versions(&self) -> Option<&dyn Versions> {
        Some(self)
    }

    fn server_copy(&self) -> Option<&dyn ServerCopy> {
        Some(self)
    }
}

/// The checksums an `x-goog-hash` header declares (`crc32c=BASE64,md5=BASE64`), as hex.
fn goog_hash(header: Option<&str>) -> Checksums {
    let mut checksums = Checksums::default();
    for part in header.unwrap_or_default().split(',') {
        match part.trim().split_once('=') {
            Some(("crc32c", b64)) => checksums.crc32c = b64_to_hex(Some(b64)).filter(|h| h.len() == 8),
            Some(("md5", b64)) => checksums.md5 = b64_to_hex(Some(b64)).filter(|h| h.len() == 32),
            _ => {}
        }
    }
    checksums
}

#[cfg(test)]
mod tests {
    #[test]
    fn goog_hash_gives_hex_checksums() {
        let c = super::goog_hash(Some("crc32c=eZqf0w==,md5=yECM/wRhsgGTsBHShQ8Rlg=="));
        assert_eq!(c.crc32c.as_deref(), Some("799a9fd3"));
        assert_eq!(c.md5.as_deref(), Some("c8408cff0461b20193b011d2850f1196"));
        assert_eq!(super::goog_hash(Some("crc32c=bad")), ferry_core::Checksums::default());
        assert_eq!(super::goog_hash(None), ferry_core::Checksums::default());
    }
}
