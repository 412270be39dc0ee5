//! Amazon S3 and S3-compatible services, on aws-sdk-s3.
//!
//! Credentials and region come from the AWS standard chain (`AWS_ACCESS_KEY_ID`, profiles, …);
//! the endpoint from `--*-endpoint` or `AWS_ENDPOINT_URL`. With a custom endpoint, requests are
//! path-style and the region defaults to `us-east-1` so that nothing asks a metadata server.
//! Every put and part carries `x-amz-checksum-crc32c`, so S3 rejects a corrupted body; their
//! payloads are sent unsigned (`UNSIGNED-PAYLOAD`), the checksum standing for SigV4's hash.

//!
//! # Layout
//! - `mod.rs`: [`S3Provider`], its constructor and the [`Provider`] methods (head, get, put,
//!   delete, the bucket check and the MD5 ETag check).
//! - `client.rs`: the SDK client built from the standard AWS environment, error mapping, the
//!   checksum helpers and the retry interceptor.
//! - `list.rs`: the listing, top-level prefixes in parallel, read back in key order.
//! - `multipart.rs`: [`Multipart`] (CreateMultipartUpload, ListParts for resume,
//!   ListMultipartUploads for stale uploads) and the upload handle.
//! - `server_copy.rs`: [`ServerCopy`] (CopyObject, UploadPartCopy).

mod client;
mod list;
mod multipart;
mod server_copy;

use crate::{Fetched, Multipart, Provider, ProviderError, PutAttrs, PutReceipt, Result, RunContext, ServerCopy, unquote};
use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumMode;
use bytes::Bytes;
use client::*;
use ferry_core::Md5Etag;
use ferry_core::{Checksums, ErrorClass, Evidence, FailureKind, Limits, Location, ObjectEntry};
use futures::StreamExt;
use futures::stream::BoxStream;
use std::ops::Range;
use std::sync::Arc;

/// Attempts at the bucket check when the service answers 429/5xx.
const CHECK_ATTEMPTS: u32 = 5;
const PROVIDER: &str = "s3";

/// S3's published limits: 5 MiB..5 GiB parts, 10,000 parts, 5 TiB objects. Parts of 8 MiB
/// by default (as the AWS CLI): under one memory budget, smaller parts mean more of them in
/// flight (see docs/performance.md).
pub const LIMITS: Limits =
    Limits { min_part_size: 5 << 20, max_part_size: 5 << 30, max_parts: 10_000, max_object_size: 5 << 40, default_part_size: 8 << 20 };

/// The registry's opener (see [`crate::REGISTRY`]).
pub(crate) fn open(
    location: &Location,
    connect: &crate::Connect,
    run: &std::sync::Arc<crate::RunContext>,
) -> futures::future::BoxFuture<'static, Result<std::sync::Arc<dyn Provider>>> {
    let (location, connect, run) = (location.clone(), connect.clone(), run.clone());
    Box::pin(async move {
        let provider: std::sync::Arc<dyn Provider> = std::sync::Arc::new(S3Provider::new(location, &connect, &run).await?);
        Ok(provider)
    })
}

pub struct S3Provider {
    /// How this location is reached (names only), compared with a source's for server-side copy.
    connect: crate::Connect,
    location: Location,
    client: Client,
    endpoint: String,
    /// The run whose pace, counts and buffers the requests use.
    run: Arc<RunContext>,
}

impl S3Provider {
    pub async fn new(location: Location, connect: &crate::Connect, run: &Arc<RunContext>) -> Result<S3Provider> {
        let (client, endpoint) = client::connect(connect, run).await;
        Ok(S3Provider { location, client, endpoint, connect: connect.clone(), run: run.clone() })
    }

    fn full_key(&self, key: &str) -> String {
        self.location.key_for(key)
    }

    fn error<E>(&self, op: &'static str, key: &str, e: SdkError<E, aws_smithy_runtime_api::http::Response>) -> ProviderError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        map_error(&self.endpoint, &self.location.bucket, op, key, e)
    }
}

#[async_trait]
impl Provider for S3Provider {
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
        // A HEAD's 429 or 503 has no body, so the SDK cannot tell it is throttling and does
        // not retry it: a busy service must not fail the run before it starts.
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.run.take_slot().await;
            let err = match self.client.head_bucket().bucket(&self.location.bucket).send().await {
                Ok(_) => return Ok(()),
                Err(e) => match self.error("head bucket", "", e) {
                    ProviderError::NotFound { .. } => {
                        ProviderError::NoSuchBucket { provider: PROVIDER, bucket: self.location.bucket.clone() }
                    }
                    other => other,
                },
            };
            if err.class() != ErrorClass::Retryable || attempt >= CHECK_ATTEMPTS {
                return Err(err);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100 << attempt)).await;
        }
    }

    fn list(&self) -> BoxStream<'_, Result<Vec<ObjectEntry>>> {
        futures::stream::once(self.top_level())
            .flat_map(move |top| match top {
                // A deep bucket: its top-level prefixes are listed in parallel, read back in key order.
                Ok(Some(segments)) => self.list_segments(segments),
                // A flat one (or a small one): one listing.
                Ok(None) => self.list_under(self.location.prefix.clone()),
                Err(e) => futures::stream::once(async { Err(e) }).boxed(),
            })
            .boxed()
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectEntry>> {
        let full = self.full_key(key);
        self.run.take_slot().await;
        match self.client.head_object().bucket(&self.location.bucket).key(&full).checksum_mode(ChecksumMode::Enabled).send().await {
            Ok(o) => Ok(Some(ObjectEntry {
                key: key.to_string(),
                size: o.content_length().unwrap_or(0).max(0) as u64,
                last_modified: to_chrono(o.last_modified()),
                etag: o.e_tag().map(unquote),
                version: o.version_id().map(str::to_string),
                checksums: Checksums {
                    crc32c: crc_hex(o.checksum_crc32_c()),
                    crc64nvme: crc64_hex(o.checksum_crc64_nvme()),
                    ..Checksums::default()
                },
                content_type: o.content_type().map(str::to_string),
                metadata: o.metadata().map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default(),
                ..Default::default()
            })),
            Err(e) => match self.error("head", key, e) {
                ProviderError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn etag_check(&self, object: &ObjectEntry) -> Result<Option<Md5Etag>> {
        let Some(etag) = object.etag.as_deref().filter(|_| object.checksums.crc32c.is_none() && object.checksums.crc64nvme.is_none())
        else {
            return Ok(None);
        };
        if !etag.contains('-') {
            return Ok(Md5Etag::new(etag, object.size, None));
        }
        // A multipart ETag: the size of part 1 gives the part size (every part but the last).
        let full = self.full_key(&object.key);
        self.run.take_slot().await;
        let o = self
            .client
            .head_object()
            .bucket(&self.location.bucket)
            .key(&full)
            .part_number(1)
            .send()
            .await
            .map_err(|e| self.error("head", &object.key, e))?;
        // S3 gives the object's ETag and parts count here (some services the part's ETag); a
        // parts count that disagrees with the ETag's means another object.
        let count = etag.rsplit_once('-').and_then(|(_, n)| n.parse::<i32>().ok());
        if !etag_is_md5(o.server_side_encryption(), o.sse_customer_algorithm()) || o.parts_count().is_some_and(|n| Some(n) != count) {
            return Ok(None);
        }
        Ok(Md5Etag::new(etag, object.size, o.content_length().map(|l| l.max(0) as u64)))
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Fetched> {
        let full = self.full_key(key);
        let mut req = self.client.get_object().bucket(&self.location.bucket).key(&full);
        let ranged = range.as_ref().is_some_and(|r| r.end > r.start);
        if let Some(r) = range.as_ref().filter(|r| r.end > r.start) {
            req = req.range(format!("bytes={}-{}", r.start, r.end - 1));
        } else {
            // A whole object comes with its checksum, which the SDK checks as the body arrives.
            req = req.checksum_mode(ChecksumMode::Enabled);
        }
        self.run.before_request().await;
        let o = req.send().await.map_err(|e| self.error("get", key, e))?;
        let total = o
            .content_range()
            .and_then(|cr| cr.rsplit('/').next())
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(o.content_length().unwrap_or(0).max(0) as u64);
        let md5_etag = !ranged
            && o.checksum_crc32_c().is_none()
            && o.checksum_crc64_nvme().is_none()
            && etag_is_md5(o.server_side_encryption(), o.sse_customer_algorithm());
        let object = ObjectEntry {
            key: key.to_string(),
            size: total,
            last_modified: to_chrono(o.last_modified()),
            etag: o.e_tag().map(unquote),
            version: o.version_id().map(str::to_string),
            checksums: match ranged {
                true => Checksums::default(),
                false => Checksums {
                    crc32c: crc_hex(o.checksum_crc32_c()),
                    crc64nvme: crc64_hex(o.checksum_crc64_nvme()),
                    ..Checksums::default()
                },
            },
            content_type: o.content_type().map(str::to_string),
            metadata: o.metadata().map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default(),
            ..Default::default()
        };
        // One buffer of the announced length, filled chunk by chunk (the SDK's `collect`
        // keeps every chunk and then copies them all into one more buffer).
        let announced = o.content_length().unwrap_or(0).clamp(0, 1 << 30) as usize;
        let mut body = o.body;
        let mut buf = self.run.buffers().take(announced);
        let failed = |e: aws_smithy_types::byte_stream::error::Error| {
            // The chain says why a body failed, e.g. the SDK's response checksum mismatch.
            let detail = aws_smithy_types::error::display::DisplayErrorContext(&e).to_string();
            match body_checksum_mismatch(&e) {
                true => ProviderError::corrupted(PROVIDER, "get", key, detail),
                false => ProviderError::Request {
                    provider: PROVIDER,
                    op: "get",
                    key: key.to_string(),
                    detail,
                    class: ErrorClass::Retryable,
                    kind: FailureKind::Connection,
                },
            }
        };
        while let Some(chunk) = body.try_next().await.map_err(failed)? {
            buf.extend_from_slice(&chunk);
        }
        let data = self.run.buffers().freeze(buf);
        let short = match &range {
            Some(r) if ranged => (data.len() as u64 != r.end - r.start).then(|| r.end - r.start),
            _ => (data.len() as u64 != total).then_some(total),
        };
        if let Some(want) = short {
            return Err(ProviderError::Request {
                provider: PROVIDER,
                op: "get",
                key: key.to_string(),
                detail: format!("short read: {} of {want} bytes", data.len()),
                class: ErrorClass::Retryable,
                kind: FailureKind::ShortRead,
            });
        }
        // No checksum on a whole object: its single-part ETag is the MD5 of its bytes.
        let mut checked = None;
        if let Some(mut check) = md5_etag.then(|| object.etag.as_deref().and_then(|e| Md5Etag::new(e, total, None))).flatten() {
            check.update(&data);
            if !check.matches() {
                let detail = format!("the bytes read have MD5 {}, the source's ETag is {}", check.computed(), check.expected());
                return Err(ProviderError::corrupted(PROVIDER, "get", key, detail));
            }
            checked = Some(Evidence::SourceMd5);
        }
        Ok(Fetched { data, object, checked })
    }

    async fn put(&self, key: &str, data: Bytes, crc32c: u32, attrs: &PutAttrs) -> Result<PutReceipt> {
        let full = self.full_key(key);
        let request = || {
            let mut req = self
                .client
                .put_object()
                .bucket(&self.location.bucket)
                .key(&full)
                .content_length(data.len() as i64)
                .checksum_crc32_c(b64_crc(crc32c))
                .set_content_type(attrs.content_type.clone())
                .body(ByteStream::from(data.clone()));
            for (k, v) in &attrs.metadata {
                req = req.metadata(k, v);
            }
            req
        };
        resend_on_checksum_mismatch(&self.run, data.len(), || async {
            // UNSIGNED-PAYLOAD: the CRC32C header proves the body; hashing it again for SigV4
            // would cost a SHA-256 pass over every byte.
            let o = request().customize().disable_payload_signing().send().await.map_err(|e| self.error("put", key, e))?;
            let etag = o.e_tag().map(unquote);
            acknowledged(o.checksum_crc32_c(), etag.as_deref(), &data, crc32c)
                .map_err(|detail| ProviderError::corrupted(PROVIDER, "put", key, detail))?;
            Ok(PutReceipt { etag, version: o.version_id().map(str::to_string) })
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let full = self.full_key(key);
        self.run.take_slot().await;
        self.client.delete_object().bucket(&self.location.bucket).key(&full).send().await.map_err(|e| self.error("delete", key, e))?;
        Ok(())
    }

    fn multipart(&self) -> Option<&dyn Multipart> {
        Some(self)
    }

    fn server_copy(&self) -> Option<&dyn ServerCopy> {
        Some(self)
    }
}

/// Whether a body failed because the SDK found its bytes differ from the checksum S3 sent with
/// them (the SDK's own error type, found in the error's chain).
fn body_checksum_mismatch(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    // Bounded: an error chain is a handful of links.
    for _ in 0..16 {
        let Some(err) = cur else { return false };
        if matches!(err.downcast_ref(), Some(aws_smithy_checksums::body::validate::Error::ChecksumMismatch { .. })) {
            return true;
        }
        cur = err.source();
    }
    false
}
