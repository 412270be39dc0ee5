//! Amazon S3 and S3-compatible services, on aws-sdk-s3.
//!
//! Credentials and region come from the AWS standard chain (`AWS_ACCESS_KEY_ID`, profiles, …);
//! the endpoint from `--*-endpoint` or `AWS_ENDPOINT_URL`. With a custom endpoint, requests are
//! path-style and the region defaults to `us-east-1` so that nothing asks a metadata server.
//! Every put and part carries `x-amz-checksum-crc32c`, so S3 rejects a corrupted body; their
//! payloads are sent unsigned (`UNSIGNED-PAYLOAD`), the checksum standing for SigV4's hash.

use crate::{
    Fetched, Multipart, MultipartUpload, PartReceipt, Provider, ProviderError, PutAttrs, PutReceipt, Result, ServerCopied, ServerCopy,
    class_of_status, unquote,
};
use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use ferry_core::Md5Etag;
use ferry_core::{ErrorClass, Limits, Location, ObjectEntry};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use std::ops::Range;
use std::time::Duration;

/// Attempts at the bucket check when the service answers 429/5xx.
const CHECK_ATTEMPTS: u32 = 5;
const PROVIDER: &str = "s3";

pub struct S3Provider {
    location: Location,
    client: Client,
    endpoint: String,
}

impl S3Provider {
    pub async fn new(location: Location, connect: &crate::Connect) -> Result<S3Provider> {
        let endpoint = connect
            .endpoint
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok())
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(profile) = &connect.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(ep) = &endpoint {
            loader = loader.endpoint_url(ep);
            if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none() {
                loader = loader.region(Region::new("us-east-1"));
            }
        }
        let shared = loader.load().await;
        let mut conf = aws_sdk_s3::config::Builder::from(&shared)
            .timeout_config(TimeoutConfig::builder().connect_timeout(Duration::from_secs(5)).read_timeout(Duration::from_secs(120)).build())
            // Throttling answers slow requests down through ferry's own pace (see `retries`): the
            // SDK's adaptive mode slowed a copy tenfold under a steady 5% of 503s.
            .retry_config(RetryConfig::standard().with_max_attempts(5))
            .interceptor(CountRetries)
            // ferry computes the CRC32C itself and sends it; the SDK need not hash again.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired);
        if endpoint.is_some() {
            conf = conf.force_path_style(true);
        }
        if shared.region().is_none() {
            conf = conf.region(Region::new("us-east-1"));
        }
        let endpoint = endpoint.map(|e| ferry_core::location::redact(&e)).unwrap_or_else(|| "AWS S3".into());
        Ok(S3Provider { location, client: Client::from_conf(conf.build()), endpoint })
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

fn map_error<E>(
    endpoint: &str,
    bucket: &str,
    op: &'static str,
    key: &str,
    e: SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = e.raw_response().map(|r| r.status().as_u16());
    let code = e.code().unwrap_or_default().to_string();
    let detail = match (e.message(), code.is_empty()) {
        (Some(m), _) => format!("{code} {m}").trim().to_string(),
        (None, false) => code.clone(),
        (None, true) => match &e {
            SdkError::DispatchFailure(d) => format!("{:?}", d.as_connector_error().map(|c| c.to_string())),
            SdkError::ServiceError(_) => format!("HTTP {}", status.unwrap_or_default()),
            other => format!("{}", aws_smithy_types::error::display::DisplayErrorContext(other)),
        },
    };
    match (&e, status, code.as_str()) {
        (SdkError::DispatchFailure(_) | SdkError::TimeoutError(_), _, _) => {
            ProviderError::Unreachable { provider: PROVIDER, endpoint: endpoint.to_string(), detail }
        }
        (_, _, "NoSuchBucket") => ProviderError::NoSuchBucket { provider: PROVIDER, bucket: bucket.to_string() },
        (_, _, "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "AccessDenied" | "ExpiredToken" | "InvalidToken")
        | (_, Some(401 | 403), _) => ProviderError::Denied { provider: PROVIDER, bucket: bucket.to_string(), detail },
        (_, _, "NoSuchKey" | "NotFound") | (_, Some(404), _) => ProviderError::NotFound { provider: PROVIDER, key: key.to_string() },
        // The service found the body differs from its checksum header: corrupted in transit, so
        // sending it again is the repair.
        (_, _, "BadDigest" | "InvalidDigest" | "XAmzContentChecksumMismatch" | "XAmzContentSHA256Mismatch") => {
            ProviderError::corrupted(PROVIDER, op, key, detail)
        }
        (_, Some(s), _) => ProviderError::Request { provider: PROVIDER, op, key: key.to_string(), detail, class: class_of_status(s) },
        _ => ProviderError::Request { provider: PROVIDER, op, key: key.to_string(), detail, class: ErrorClass::Retryable },
    }
}

/// Sends a body again (the same bytes, which passed the read check) while the service says it
/// arrived corrupted, up to 3 times, each counted as a `checksum mismatch` retry. Other errors
/// are left to the SDK's retries and the mover's.
async fn resend_on_checksum_mismatch<T, F, Fut>(mut send: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match send().await {
            Err(e) if attempt < 3 && e.is_corrupted() => {
                crate::retries::record(crate::retries::CHECKSUM);
            }
            other => return other,
        }
    }
}

/// Whether S3 answered for the very bytes sent (else why not). S3 checks the CRC32C header itself and echoes
/// it; a service that echoes no checksum (some S3-compatibles) is held to its ETag, the MD5 of
/// what it stored for a plain put or part.
fn acknowledged(echoed_crc: Option<&str>, etag: Option<&str>, sent: &[u8], crc32c: u32) -> std::result::Result<(), String> {
    if let Some(echoed) = crc_hex(echoed_crc) {
        let sent_crc = ferry_core::digest::crc32c_hex(crc32c);
        return if echoed == sent_crc { Ok(()) } else { Err(format!("stored crc32c {echoed}, sent {sent_crc}")) };
    }
    if let Some(mut check) = etag.and_then(|e| Md5Etag::new(e, sent.len() as u64, None)) {
        check.update(sent);
        if !check.matches() {
            return Err(format!("stored ETag {}, the bytes sent have MD5 {}", check.expected(), check.computed()));
        }
    }
    Ok(())
}

/// Whether an object's ETag is the MD5 of its bytes: not under SSE-KMS or SSE-C.
fn etag_is_md5(sse: Option<&ServerSideEncryption>, customer_algorithm: Option<&str>) -> bool {
    customer_algorithm.is_none() && !matches!(sse, Some(ServerSideEncryption::AwsKms | ServerSideEncryption::AwsKmsDsse))
}

/// Counts each failed attempt the SDK retries (5xx including 503 SlowDown, timeouts, dropped
/// connections) in the run's retry counts, and feeds throttling answers and successes to
/// ferry's pace, which every S3 data request waits on.
#[derive(Debug)]
struct CountRetries;

impl aws_sdk_s3::config::Intercept for CountRetries {
    fn name(&self) -> &'static str {
        "ferry-count-retries"
    }

    fn read_after_attempt(
        &self,
        ctx: &aws_sdk_s3::config::interceptors::FinalizerInterceptorContextRef<'_>,
        _: &aws_sdk_s3::config::RuntimeComponents,
        _: &mut aws_sdk_s3::config::ConfigBag,
    ) -> std::result::Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let status = ctx.response().map(|r| r.status().as_u16());
        if matches!(status, Some(429 | 503)) {
            crate::retries::throttled();
        }
        let Some(Err(e)) = ctx.output_or_error() else {
            crate::retries::succeeded();
            return Ok(());
        };
        // A 429 is retried by the SDK only under some error codes; the mover counts the rest.
        let cause = match status {
            Some(s @ 500..=599) => crate::retries::cause_of_status(s),
            Some(_) => return Ok(()),
            None if e.is_timeout_error() => crate::retries::TIMEOUT,
            None => crate::retries::CONNECTION,
        };
        crate::retries::record(cause);
        Ok(())
    }
}

fn b64_crc(crc: u32) -> String {
    B64.encode(crc.to_be_bytes())
}

/// A whole-object (not composite `…-N`) base64 CRC32C, as 8 hex digits.
fn crc_hex(b64: Option<&str>) -> Option<String> {
    crc_u32(b64).map(ferry_core::digest::crc32c_hex)
}

/// A whole-object base64 CRC32C as a number.
fn crc_u32(b64: Option<&str>) -> Option<u32> {
    Some(u32::from_be_bytes(B64.decode(b64?).ok()?.try_into().ok()?))
}

/// Completes multipart upload `upload_id` of `full_key` from `parts`; returns the object's
/// entity tag.
async fn complete_upload(
    client: &Client,
    bucket: &str,
    full_key: &str,
    upload_id: &str,
    parts: Vec<CompletedPart>,
) -> std::result::Result<Option<String>, SdkError<CompleteMultipartUploadError, aws_smithy_runtime_api::http::Response>> {
    crate::throttle::request().await;
    let o = client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(full_key)
        .upload_id(upload_id)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
        .send()
        .await?;
    Ok(o.e_tag().map(unquote))
}

/// A full-object base64 CRC64NVME (always full-object, multipart or not), as 16 hex digits.
fn crc64_hex(b64: Option<&str>) -> Option<String> {
    let bytes = B64.decode(b64?).ok()?;
    (bytes.len() == 8).then(|| hex::encode(bytes))
}

fn to_chrono(t: Option<&aws_smithy_types::DateTime>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
}

/// Top-level prefixes listed at once, and pages each may list ahead of the one being read.
const LIST_FANOUT: usize = 16;
const LIST_AHEAD_PAGES: usize = 8;
/// A delimited listing of the top level longer than this many pages means a flat bucket: it is
/// listed plainly instead.
const TOP_LEVEL_PAGES: usize = 4;

/// A run of the listing in key order: top-level objects, or everything under one prefix.
enum Segment {
    Objects(Vec<ObjectEntry>),
    Prefix(String),
}

impl Segment {
    /// Where the segment starts, relative to the location's prefix (`prefix_len` bytes).
    fn start(&self, prefix_len: usize) -> &str {
        match self {
            Segment::Objects(v) => v.first().map_or("", |e| e.key.as_str()),
            Segment::Prefix(p) => p.get(prefix_len..).unwrap_or(p),
        }
    }
}

impl S3Provider {
    fn entries(&self, page: &aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output) -> Vec<ObjectEntry> {
        let prefix_len = self.location.prefix.len();
        page.contents()
            .iter()
            .filter_map(|o| {
                let key = o.key()?.get(prefix_len..)?.to_string();
                Some(ObjectEntry {
                    key,
                    size: o.size().unwrap_or(0).max(0) as u64,
                    last_modified: to_chrono(o.last_modified()),
                    etag: o.e_tag().map(unquote),
                    ..Default::default()
                })
            })
            .collect()
    }

    /// The top level of the location, listed with delimiter `/`, as segments in key order; `None`
    /// when there is nothing to split (fewer than two prefixes) or too much at the top level.
    async fn top_level(&self) -> Result<Option<Vec<Segment>>> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.location.bucket)
            .prefix(&self.location.prefix)
            .delimiter("/")
            .into_paginator()
            .send();
        let mut segments = Vec::new();
        for _ in 0..TOP_LEVEL_PAGES {
            crate::throttle::request().await;
            let Some(page) = pages.next().await else {
                let prefix_len = self.location.prefix.len();
                segments.sort_by(|a: &Segment, b: &Segment| a.start(prefix_len).cmp(b.start(prefix_len)));
                let prefixes = segments.iter().filter(|s| matches!(s, Segment::Prefix(_))).count();
                return Ok((prefixes >= 2).then_some(segments));
            };
            let page = page.map_err(|e| self.error("list", &self.location.prefix, e))?;
            segments.extend(self.entries(&page).into_iter().map(|e| Segment::Objects(vec![e])));
            segments.extend(page.common_prefixes().iter().filter_map(|p| p.prefix()).map(|p| Segment::Prefix(p.to_string())));
        }
        Ok(None)
    }

    /// Everything under `prefix` (a full key prefix), a page at a time.
    fn list_under(&self, prefix: String) -> BoxStream<'_, Result<Vec<ObjectEntry>>> {
        let pages = self.client.list_objects_v2().bucket(&self.location.bucket).prefix(&prefix).into_paginator().send();
        futures::stream::unfold(pages, move |mut pages| async move {
            crate::throttle::request().await;
            let page = pages.next().await?;
            Some((page.map_err(|e| self.error("list", &self.location.prefix, e)).map(|page| self.entries(&page)), pages))
        })
        .boxed()
    }

    /// The segments' listings, up to `LIST_FANOUT` under way at once, each at most
    /// `LIST_AHEAD_PAGES` ahead of the reader, read back in key order.
    fn list_segments(&self, segments: Vec<Segment>) -> BoxStream<'_, Result<Vec<ObjectEntry>>> {
        futures::stream::iter(segments)
            .map(move |segment| async move {
                let (tx, rx) = tokio::sync::mpsc::channel(LIST_AHEAD_PAGES);
                match segment {
                    Segment::Objects(entries) => {
                        let _ = tx.try_send(Ok(entries));
                    }
                    Segment::Prefix(prefix) => {
                        let lister =
                            S3Provider { location: self.location.clone(), client: self.client.clone(), endpoint: self.endpoint.clone() };
                        tokio::spawn(async move {
                            let mut pages = lister.list_under(prefix);
                            while let Some(page) = pages.next().await {
                                // The reader went away (an error elsewhere, or done): stop.
                                if tx.send(page).await.is_err() {
                                    break;
                                }
                            }
                        });
                    }
                }
                futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|page| (page, rx)) })
            })
            .buffered(LIST_FANOUT)
            .flatten()
            .boxed()
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
        Limits::S3
    }

    async fn check(&self, _for_write: bool) -> Result<()> {
        // A HEAD's 429 or 503 has no body, so the SDK cannot tell it is throttling and does
        // not retry it: a busy service must not fail the run before it starts.
        let mut attempt = 0;
        loop {
            attempt += 1;
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
        crate::throttle::request().await;
        match self.client.head_object().bucket(&self.location.bucket).key(&full).checksum_mode(ChecksumMode::Enabled).send().await {
            Ok(o) => Ok(Some(ObjectEntry {
                key: key.to_string(),
                size: o.content_length().unwrap_or(0).max(0) as u64,
                last_modified: to_chrono(o.last_modified()),
                etag: o.e_tag().map(unquote),
                version: o.version_id().map(str::to_string),
                crc32c: crc_hex(o.checksum_crc32_c()),
                crc64nvme: crc64_hex(o.checksum_crc64_nvme()),
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
        let Some(etag) = object.etag.as_deref().filter(|_| object.crc32c.is_none() && object.crc64nvme.is_none()) else {
            return Ok(None);
        };
        if !etag.contains('-') {
            return Ok(Md5Etag::new(etag, object.size, None));
        }
        // A multipart ETag: the size of part 1 gives the part size (every part but the last).
        let full = self.full_key(&object.key);
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
        crate::retries::pace().await;
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
            crc32c: if ranged { None } else { crc_hex(o.checksum_crc32_c()) },
            crc64nvme: if ranged { None } else { crc64_hex(o.checksum_crc64_nvme()) },
            content_type: o.content_type().map(str::to_string),
            metadata: o.metadata().map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default(),
            ..Default::default()
        };
        // One buffer of the announced length, filled chunk by chunk (the SDK's `collect`
        // keeps every chunk and then copies them all into one more buffer).
        let announced = o.content_length().unwrap_or(0).clamp(0, 1 << 30) as usize;
        let mut body = o.body;
        let mut buf = ferry_core::buffers::take(announced);
        let failed = |e: aws_smithy_types::byte_stream::error::Error| ProviderError::Request {
            provider: PROVIDER,
            op: "get",
            key: key.to_string(),
            // The chain says why a body failed, e.g. the SDK's response checksum mismatch.
            detail: aws_smithy_types::error::display::DisplayErrorContext(&e).to_string(),
            class: ErrorClass::Retryable,
        };
        while let Some(chunk) = body.try_next().await.map_err(failed)? {
            buf.extend_from_slice(&chunk);
        }
        let data = ferry_core::buffers::freeze(buf);
        crate::throttle::received(data.len()).await;
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
            checked = Some("source md5");
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
        let etag = resend_on_checksum_mismatch(|| async {
            crate::retries::pace().await;
            crate::throttle::sending(data.len()).await;
            // UNSIGNED-PAYLOAD: the CRC32C header proves the body; hashing it again for SigV4
            // would cost a SHA-256 pass over every byte.
            let o = request().customize().disable_payload_signing().send().await.map_err(|e| self.error("put", key, e))?;
            let etag = o.e_tag().map(unquote);
            acknowledged(o.checksum_crc32_c(), etag.as_deref(), &data, crc32c)
                .map_err(|detail| ProviderError::corrupted(PROVIDER, "put", key, detail))?;
            Ok(etag)
        })
        .await?;
        Ok(PutReceipt { etag })
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let full = self.full_key(key);
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

/// Characters kept as they are in an `x-amz-copy-source` key: unreserved ones and `/`.
const COPY_SOURCE_KEEP: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');

/// Server-side copies issued at once for one object's parts.
const COPY_PARTS_IN_FLIGHT: usize = 8;

#[async_trait]
impl ServerCopy for S3Provider {
    async fn copy_from(
        &self,
        source: &Location,
        object: &ObjectEntry,
        part_size: u64,
        started: &(dyn for<'s> Fn(&'s str) -> Result<()> + Sync),
    ) -> Result<ServerCopied> {
        let key = object.key.as_str();
        let full = self.full_key(key);
        let mut copy_source =
            format!("{}/{}", source.bucket, percent_encoding::utf8_percent_encode(&source.key_for(key), COPY_SOURCE_KEEP));
        if let Some(v) = &object.version {
            copy_source.push_str(&format!("?versionId={}", percent_encoding::utf8_percent_encode(v, COPY_SOURCE_KEEP)));
        }
        // The copy is of the very version the HEAD saw, or nothing (412, retried: the retry's
        // HEAD then sees the change and the object starts over).
        let if_match = object.etag.as_ref().map(|e| format!("\"{e}\""));
        if object.size <= part_size {
            crate::retries::pace().await;
            let o = self
                .client
                .copy_object()
                .bucket(&self.location.bucket)
                .key(&full)
                .copy_source(&copy_source)
                .set_copy_source_if_match(if_match)
                .checksum_algorithm(ChecksumAlgorithm::Crc32C)
                .send()
                .await
                .map_err(|e| self.error("copy", key, e))?;
            let r = o.copy_object_result();
            return Ok(ServerCopied {
                etag: r.and_then(|r| r.e_tag()).map(unquote),
                crc32c: crc_hex(r.and_then(|r| r.checksum_crc32_c())),
                crc64nvme: crc64_hex(r.and_then(|r| r.checksum_crc64_nvme())),
                md5: None,
                parts: 0,
            });
        }
        let plan = ferry_core::PartPlan { object_size: object.size, part_size };
        let count = plan.parts().map_err(|e| ProviderError::Request {
            provider: PROVIDER,
            op: "copy",
            key: key.to_string(),
            detail: e.to_string(),
            class: ErrorClass::PerObject,
        })?;
        let attrs = PutAttrs { content_type: object.content_type.clone(), metadata: object.metadata.clone(), mode: None };
        let upload = Multipart::start(self, key, &attrs, object.size, "").await?;
        let upload_id = upload.upload_id().expect("S3 uploads have ids");
        if let Err(e) = started(upload_id.as_str()) {
            let _ = self.abort_upload(key, &upload_id).await;
            return Err(e);
        }
        let copied = async {
            let parts: Vec<(u64, Option<String>, Option<String>)> = futures::stream::iter(0..plan.count())
                .map(|i| {
                    let range = plan.range(i);
                    let (copy_source, if_match, full, upload_id) = (&copy_source, &if_match, &full, &upload_id);
                    async move {
                        crate::retries::pace().await;
                        let o = self
                            .client
                            .upload_part_copy()
                            .bucket(&self.location.bucket)
                            .key(full)
                            .upload_id(upload_id)
                            .part_number(i as i32 + 1)
                            .copy_source(copy_source)
                            .copy_source_range(format!("bytes={}-{}", range.start, range.end - 1))
                            .set_copy_source_if_match(if_match.clone())
                            .send()
                            .await
                            .map_err(|e| self.error("copy part", key, e))?;
                        let r = o.copy_part_result();
                        let etag = r.and_then(|r| r.e_tag()).map(unquote);
                        Ok::<_, ProviderError>((range.end - range.start, etag, r.and_then(|r| r.checksum_crc32_c()).map(str::to_string)))
                    }
                })
                .buffered(COPY_PARTS_IN_FLIGHT)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<Result<_>>()?;
            // The parts' CRC32Cs combine into the copy's, when the service gave every one.
            let crcs: Option<Vec<u32>> =
                parts.iter().map(|(_, _, c)| crc_hex(c.as_deref()).and_then(|h| u32::from_str_radix(&h, 16).ok())).collect();
            let completed = parts
                .iter()
                .enumerate()
                .map(|(i, (_, etag, crc))| {
                    CompletedPart::builder()
                        .part_number(i as i32 + 1)
                        .set_e_tag(etag.as_ref().map(|e| format!("\"{e}\"")))
                        .set_checksum_crc32_c(crc.clone())
                        .build()
                })
                .collect();
            let etag = complete_upload(&self.client, &self.location.bucket, &full, &upload_id, completed)
                .await
                .map_err(|e| self.error("complete copy", key, e))?;
            let crc32c = crcs.map(|crcs| {
                let whole = parts
                    .iter()
                    .zip(crcs)
                    .fold(None, |acc: Option<u32>, ((len, _, _), crc)| Some(acc.map_or(crc, |a| ferry_core::crc32c_combine(a, crc, *len))));
                ferry_core::digest::crc32c_hex(whole.unwrap_or(0))
            });
            Ok::<_, ProviderError>(ServerCopied { etag, crc32c, crc64nvme: None, md5: None, parts: count })
        }
        .await;
        if copied.is_err() {
            let _ = self.abort_upload(key, &upload_id).await;
        }
        copied
    }
}

#[async_trait]
impl Multipart for S3Provider {
    async fn start(&self, key: &str, attrs: &PutAttrs, _size: u64, _id: &str) -> Result<Box<dyn MultipartUpload>> {
        let full = self.full_key(key);
        let mut req = self
            .client
            .create_multipart_upload()
            .bucket(&self.location.bucket)
            .key(&full)
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .set_content_type(attrs.content_type.clone());
        for (k, v) in &attrs.metadata {
            req = req.metadata(k, v);
        }
        crate::throttle::request().await;
        let o = req.send().await.map_err(|e| self.error("create multipart upload", key, e))?;
        let upload_id = o.upload_id().ok_or_else(|| ProviderError::Request {
            provider: PROVIDER,
            op: "create multipart upload",
            key: key.to_string(),
            detail: "no upload id in the answer".into(),
            class: ErrorClass::Retryable,
        })?;
        Ok(self.upload(key, upload_id))
    }

    async fn resume(
        &self,
        key: &str,
        upload_id: &str,
        _attrs: &PutAttrs,
        _size: u64,
        recorded: &[PartReceipt],
    ) -> Result<Option<(Box<dyn MultipartUpload>, Vec<PartReceipt>)>> {
        let full = self.full_key(key);
        if is_ferry_id(upload_id) {
            // The journal holds only the id ferry chose before CreateMultipartUpload: the process
            // died before S3's id was recorded. Abort what S3 lists for this key, if it lists.
            return if self.abort_unrecorded(key).await {
                Ok(None)
            } else {
                Err(ProviderError::UnlistedUpload { provider: PROVIDER, key: key.to_string() })
            };
        }
        let mut held = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_parts()
                .bucket(&self.location.bucket)
                .key(&full)
                .upload_id(upload_id)
                .set_part_number_marker(marker.clone())
                .send()
                .await;
            let page = match page {
                Ok(p) => p,
                Err(e) if e.code() == Some("NoSuchUpload") => return Ok(None),
                Err(e) => match self.error("list parts", key, e) {
                    // Some S3-compatibles deny rather than 404 an upload id they do not know.
                    ProviderError::NotFound { .. } | ProviderError::Denied { .. } => return Ok(None),
                    other => return Err(other),
                },
            };
            for p in page.parts() {
                let Some(index) = p.part_number().and_then(|n| u32::try_from(n).ok()).and_then(|n| n.checked_sub(1)) else { continue };
                let size = p.size().unwrap_or(0).max(0) as u64;
                let etag = p.e_tag().map(unquote);
                // What the journal recorded of this part: the same ETag, or — where the service
                // lists parts without their ETags (s3s-fs) — the same size. A listed part is
                // one the service acknowledged whole; ferry forgets a journaled part before it
                // sends different bytes for it, so the journal's is the one listed.
                let journaled = recorded
                    .iter()
                    .find(|r| r.index == index && r.size == size && etag.as_ref().is_none_or(|e| *e == r.id) && !r.id.is_empty());
                // The part's checksum as S3 holds it, else the journal's; a part known by
                // neither is sent again.
                let crc = crc_hex(p.checksum_crc32_c()).and_then(|h| u32::from_str_radix(&h, 16).ok()).or(journaled.map(|r| r.crc32c));
                let id = etag.or_else(|| journaled.map(|r| r.id.clone()));
                if let (Some(crc32c), Some(id)) = (crc, id) {
                    held.push(PartReceipt { index, id, size, crc32c });
                }
            }
            match (page.is_truncated(), page.next_part_number_marker()) {
                (Some(true), Some(next)) => marker = Some(next.to_string()),
                _ => break,
            }
        }
        // ListParts answers are not always sorted (s3s-fs).
        held.sort_by_key(|p| p.index);
        Ok(Some((self.upload(key, upload_id), held)))
    }

    async fn stale_uploads(&self, before: DateTime<Utc>) -> Result<Vec<crate::OpenUpload>> {
        let prefix_len = self.location.prefix.len();
        let mut out = Vec::new();
        let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.location.bucket)
                .prefix(&self.location.prefix)
                .set_key_marker(key_marker.clone())
                .set_upload_id_marker(id_marker.clone())
                .send()
                .await
                .map_err(|e| match self.error("list multipart uploads", &self.location.prefix, e) {
                    ProviderError::Request { detail, .. } if detail.contains("501") || detail.contains("NotImplemented") => {
                        ProviderError::Config {
                            provider: PROVIDER,
                            detail: format!(
                                "{} cannot list multipart uploads (ListMultipartUploads is not implemented there)",
                                self.endpoint
                            ),
                        }
                    }
                    other => other,
                })?;
            for u in page.uploads() {
                let (Some(key), Some(id)) = (u.key(), u.upload_id()) else { continue };
                let initiated = to_chrono(u.initiated());
                if initiated.is_none_or(|t| t < before) {
                    out.push(crate::OpenUpload {
                        key: key.get(prefix_len..).unwrap_or(key).to_string(),
                        upload_id: id.to_string(),
                        initiated,
                    });
                }
            }
            if page.is_truncated() != Some(true) {
                return Ok(out);
            }
            key_marker = page.next_key_marker().map(str::to_string);
            id_marker = page.next_upload_id_marker().map(str::to_string);
        }
    }

    async fn abort_upload(&self, key: &str, upload_id: &str) -> Result<()> {
        match self.upload(key, upload_id).abort().await {
            Err(ProviderError::NotFound { .. }) => Ok(()),
            Err(ProviderError::Request { detail, .. }) if detail.contains("NoSuchUpload") => Ok(()),
            other => other,
        }
    }
}

/// Ids ferry chooses (32 hex digits) never look like an S3 upload id.
fn is_ferry_id(upload_id: &str) -> bool {
    upload_id.len() == 32 && upload_id.chars().all(|c| c.is_ascii_hexdigit())
}

impl S3Provider {
    /// Aborts the uploads S3 lists for exactly `key` (ListMultipartUploads); `false` when the
    /// service cannot list them (s3s-fs answers 501), leaving them to a lifecycle rule.
    async fn abort_unrecorded(&self, key: &str) -> bool {
        let full = self.full_key(key);
        let Ok(listed) = self.client.list_multipart_uploads().bucket(&self.location.bucket).prefix(&full).send().await else {
            return false;
        };
        for u in listed.uploads() {
            if let (Some(k), Some(id)) = (u.key(), u.upload_id())
                && k == full
            {
                let _ = self.upload(key, id).abort().await;
            }
        }
        true
    }

    fn upload(&self, key: &str, upload_id: &str) -> Box<S3Upload> {
        Box::new(S3Upload {
            client: self.client.clone(),
            bucket: self.location.bucket.clone(),
            full_key: self.full_key(key),
            key: key.to_string(),
            upload_id: upload_id.to_string(),
            endpoint: self.endpoint.clone(),
        })
    }
}

struct S3Upload {
    client: Client,
    bucket: String,
    full_key: String,
    key: String,
    upload_id: String,
    endpoint: String,
}

#[async_trait]
impl MultipartUpload for S3Upload {
    fn upload_id(&self) -> Option<String> {
        Some(self.upload_id.clone())
    }

    fn put_part(&mut self, index: u32, _offset: u64, data: Bytes, crc32c: u32) -> BoxFuture<'static, Result<PartReceipt>> {
        let (client, full_key, upload_id) = (self.client.clone(), self.full_key.clone(), self.upload_id.clone());
        let (endpoint, bucket, key) = (self.endpoint.clone(), self.bucket.clone(), self.key.clone());
        Box::pin(async move {
            let request = || {
                client
                    .upload_part()
                    .bucket(&bucket)
                    .key(&full_key)
                    .upload_id(&upload_id)
                    .part_number(index as i32 + 1)
                    .content_length(data.len() as i64)
                    .checksum_crc32_c(b64_crc(crc32c))
                    .body(ByteStream::from(data.clone()))
            };
            let etag = resend_on_checksum_mismatch(|| async {
                crate::retries::pace().await;
                crate::throttle::sending(data.len()).await;
                let o = request()
                    .customize()
                    .disable_payload_signing()
                    .send()
                    .await
                    .map_err(|e| map_error(&endpoint, &bucket, "upload part", &key, e))?;
                let etag = o.e_tag().map(unquote).unwrap_or_default();
                acknowledged(o.checksum_crc32_c(), Some(&etag), &data, crc32c)
                    .map_err(|detail| ProviderError::corrupted(PROVIDER, "upload part", format!("{key} part {}", index + 1), detail))?;
                Ok(etag)
            })
            .await?;
            Ok(PartReceipt { index, id: etag, size: data.len() as u64, crc32c })
        })
    }

    async fn complete(self: Box<Self>, parts: Vec<PartReceipt>) -> Result<PutReceipt> {
        let completed = parts
            .iter()
            .map(|p| {
                CompletedPart::builder()
                    .part_number(p.index as i32 + 1)
                    .e_tag(format!("\"{}\"", p.id))
                    .checksum_crc32_c(b64_crc(p.crc32c))
                    .build()
            })
            .collect();
        let etag = complete_upload(&self.client, &self.bucket, &self.full_key, &self.upload_id, completed)
            .await
            .map_err(|e| map_error(&self.endpoint, &self.bucket, "complete multipart upload", &self.key, e))?;
        Ok(PutReceipt { etag })
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.full_key)
            .upload_id(&self.upload_id)
            .send()
            .await
            .map_err(|e| map_error(&self.endpoint, &self.bucket, "abort multipart upload", &self.key, e))?;
        Ok(())
    }
}
