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
//!   delete, the bucket check, the MD5 ETag check and the object lock report).
//! - `client.rs`: the SDK client built from the standard AWS environment, error mapping, the
//!   checksum helpers and the retry interceptor.
//! - `list.rs`: the listing, top-level prefixes in parallel, read back in key order.
//! - `multipart.rs`: [`Multipart`] (CreateMultipartUpload, ListParts for resume,
//!   ListMultipartUploads for stale uploads) and the upload handle.
//! - `server_copy.rs`: [`ServerCopy`] (CopyObject, UploadPartCopy).
//! - `versions.rs`: [`Versions`] (GetBucketVersioning, ListObjectVersions; reads by version id).

/// The object's attributes and the destination's write settings on a put or an upload's start
/// (the SDK's two builders have the same setters but no common trait).
macro_rules! object_attrs {
    ($req:expr, $provider:expr, $attrs:expr) => {
        $req.set_content_type($attrs.content_type.clone())
            .set_content_encoding($attrs.headers.content_encoding.clone())
            .set_content_disposition($attrs.headers.content_disposition.clone())
            .set_content_language($attrs.headers.content_language.clone())
            .set_cache_control($attrs.headers.cache_control.clone())
            .set_expires(expires_of(&$attrs.headers))
            .set_tagging($attrs.tags.as_ref().filter(|t| !t.is_empty()).map(tagging))
            .set_storage_class($provider.storage_class($attrs.storage_class.as_deref()))
            .set_server_side_encryption($provider.sse())
            .set_ssekms_key_id($provider.sse_key())
    };
}
use object_attrs;

mod client;
mod list;
mod multipart;
mod server_copy;
mod versions;

use crate::{Fetched, Multipart, Provider, ProviderError, PutAttrs, PutReceipt, Result, RunContext, ServerCopy, Versions, unquote};
use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumMode;
use bytes::Bytes;
use client::*;
use ferry_core::Md5Etag;
use ferry_core::headers::NameRule;
use ferry_core::{
    Carries, Checksums, ErrorClass, Evidence, FailureKind, Header, Headers, Limits, Location, ObjectEntry, RestoreRequest, RestoreTier,
    Tags,
};
use futures::StreamExt;
use futures::stream::BoxStream;
use std::ops::Range;
use std::sync::Arc;

/// Attempts at the bucket check when the service answers 429/5xx.
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
    /// The class a write asks for: `asked` (the object's, `--storage-class-map`), else
    /// `--storage-class`; `None`: the bucket's default.
    fn storage_class(&self, asked: Option<&str>) -> Option<aws_sdk_s3::types::StorageClass> {
        asked.or(self.connect.write.storage_class.as_deref()).map(aws_sdk_s3::types::StorageClass::from)
    }

    /// The server-side encryption every write asks for (`--sse`); `None`: the bucket's default.
    fn sse(&self) -> Option<aws_sdk_s3::types::ServerSideEncryption> {
        use aws_sdk_s3::types::ServerSideEncryption;
        self.connect.write.sse.as_ref().map(|sse| match sse {
            crate::placement::Sse::Aes256 => ServerSideEncryption::Aes256,
            crate::placement::Sse::Kms { .. } => ServerSideEncryption::AwsKms,
        })
    }

    /// The KMS key of `--sse aws:kms` (`None`: the AWS-managed key).
    fn sse_key(&self) -> Option<String> {
        match &self.connect.write.sse {
            Some(crate::placement::Sse::Kms { key_id }) => key_id.clone(),
            _ => None,
        }
    }

    pub async fn new(location: Location, connect: &crate::Connect, run: &Arc<RunContext>) -> Result<S3Provider> {
        let (client, endpoint) = client::connect(connect).await;
        Ok(S3Provider { location, client, endpoint, connect: connect.clone(), run: run.clone() })
    }

    fn full_key(&self, key: &str) -> String {
        self.location.key_for(key)
    }

    /// The tags of `bucket/full` (GetObjectTagging). A service that does not implement tagging
    /// (501, as s3s-fs) holds none.
    async fn tags_of(&self, bucket: &str, full: &str, key: &str) -> Result<Tags> {
        request(&self.run, 0, || async {
            match self.client.get_object_tagging().bucket(bucket).key(full).send().await {
                Ok(o) => Ok(o.tag_set().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect()),
                Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 501) || e.code() == Some("NotImplemented") => {
                    Ok(Tags::new())
                }
                Err(e) => Err(self.failed("get tags", key, e)),
            }
        })
        .await
    }

    /// An SDK error classified ([`map_error`]) with its `Retry-After`, for the retry layer.
    fn failed<E>(&self, op: &'static str, key: &str, e: SdkError<E, aws_smithy_runtime_api::http::Response>) -> crate::retries::Failed
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        failed(&self.endpoint, &self.location.bucket, op, key, e)
    }
}

impl S3Provider {
    /// [`Provider::head`] of the key's current version, or of `version`.
    pub(crate) async fn head_of(&self, key: &str, version: Option<&str>) -> Result<Option<ObjectEntry>> {
        let full = self.full_key(key);
        let head = request(&self.run, 0, || async {
            let req = self.client.head_object().bucket(&self.location.bucket).key(&full).checksum_mode(ChecksumMode::Enabled);
            req.set_version_id(version.map(str::to_string)).send().await.map_err(|e| self.failed("head", key, e))
        });
        match head.await {
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
                headers: headers_of(
                    o.content_encoding(),
                    o.content_disposition(),
                    o.content_language(),
                    o.cache_control(),
                    o.expires_string(),
                ),
                // A HEAD need not count tags: unknown, asked when wanted.
                tags: None,
                storage_class: Some(storage_class(
                    o.storage_class().map(|c| c.as_str()),
                    o.restore(),
                    o.archive_status().map(|a| a.as_str()),
                )),
                ..Default::default()
            })),
            Err(ProviderError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn etag_check_of(&self, object: &ObjectEntry) -> Result<Option<Md5Etag>> {
        let Some(etag) = object.etag.as_deref().filter(|_| object.checksums.crc32c.is_none() && object.checksums.crc64nvme.is_none())
        else {
            return Ok(None);
        };
        if !etag.contains('-') {
            return Ok(Md5Etag::new(etag, object.size, None));
        }
        // A multipart ETag: the size of part 1 gives the part size (every part but the last).
        let full = self.full_key(&object.key);
        let o = request(&self.run, 0, || async {
            // A pinned entry's part 1 is its version's (see `ObjectEntry::id`).
            let req = self.client.head_object().bucket(&self.location.bucket).key(&full).part_number(1);
            let req = req.set_version_id(object.id().version.map(str::to_string));
            req.send().await.map_err(|e| self.failed("head", &object.key, e))
        })
        .await?;
        // S3 gives the object's ETag and parts count here (some services the part's ETag); a
        // parts count that disagrees with the ETag's means another object.
        let count = etag.rsplit_once('-').and_then(|(_, n)| n.parse::<i32>().ok());
        if !etag_is_md5(o.server_side_encryption(), o.sse_customer_algorithm()) || o.parts_count().is_some_and(|n| Some(n) != count) {
            return Ok(None);
        }
        Ok(Md5Etag::new(etag, object.size, o.content_length().map(|l| l.max(0) as u64)))
    }

    /// [`Provider::get`] of the key's current version, or of `version` (a pinned entry, see
    /// [`crate::Versions::get_version`]).
    pub(crate) async fn get_of(&self, key: &str, version: Option<&str>, range: Option<Range<u64>>) -> Result<Fetched> {
        let full = self.full_key(key);
        let mut req = self.client.get_object().bucket(&self.location.bucket).key(&full).set_version_id(version.map(str::to_string));
        let ranged = range.as_ref().is_some_and(|r| r.end > r.start);
        if let Some(r) = range.as_ref().filter(|r| r.end > r.start) {
            req = req.range(format!("bytes={}-{}", r.start, r.end - 1));
        } else {
            // A whole object comes with its checksum, which the SDK checks as the body arrives.
            req = req.checksum_mode(ChecksumMode::Enabled);
        }
        let o = request(&self.run, 0, || async { req.clone().send().await.map_err(|e| self.failed("get", key, e)) }).await?;
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
            headers: headers_of(o.content_encoding(), o.content_disposition(), o.content_language(), o.cache_control(), o.expires_string()),
            tags: tags_known(o.tag_count()),
            storage_class: Some(storage_class(o.storage_class().map(|c| c.as_str()), o.restore(), None)),
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
                    // Cut mid-stream: the object starts over (the mover), never a request
                    // retry joining bytes of two answers.
                    class: ErrorClass::Restart,
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
                class: ErrorClass::Restart,
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
        // A busy service must not fail the run before it starts: a HEAD's 429 or 503 (no
        // body, so no error code) is retried like any other request's.
        let head = request(&self.run, 0, || async {
            self.client.head_bucket().bucket(&self.location.bucket).send().await.map_err(|e| self.failed("head bucket", "", e))
        })
        .await;
        match head {
            Ok(_) => Ok(()),
            Err(ProviderError::NotFound { .. }) => {
                Err(ProviderError::NoSuchBucket { provider: PROVIDER, bucket: self.location.bucket.clone() })
            }
            Err(e) => Err(e),
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
        self.head_of(key, None).await
    }

    async fn etag_check(&self, object: &ObjectEntry) -> Result<Option<Md5Etag>> {
        self.etag_check_of(object).await
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Fetched> {
        self.get_of(key, None, range).await
    }

    async fn put(&self, key: &str, data: Bytes, crc32c: u32, attrs: &PutAttrs) -> Result<PutReceipt> {
        let full = self.full_key(key);
        let build = || {
            let req = self.client.put_object().bucket(&self.location.bucket).key(&full);
            let req = req.content_length(data.len() as i64).checksum_crc32_c(b64_crc(crc32c));
            let mut req = object_attrs!(req, self, attrs).body(ByteStream::from(data.clone()));
            for (k, v) in &attrs.metadata {
                req = req.metadata(k, v);
            }
            req
        };
        request(&self.run, data.len(), || async {
            // UNSIGNED-PAYLOAD: the CRC32C header proves the body; hashing it again for SigV4
            // would cost a SHA-256 pass over every byte.
            let o = build().customize().disable_payload_signing().send().await.map_err(|e| self.failed("put", key, e))?;
            let etag = o.e_tag().map(unquote);
            // An SSE-KMS (or SSE-C) ETag is not an MD5: only the CRC can prove the bytes.
            let md5 = etag.as_deref().filter(|_| etag_is_md5(o.server_side_encryption(), o.sse_customer_algorithm()));
            acknowledged(o.checksum_crc32_c(), md5, &data, crc32c)
                .map_err(|detail| ProviderError::corrupted(PROVIDER, "put", key, detail))?;
            Ok(PutReceipt { etag, version: o.version_id().map(str::to_string) })
        })
        .await
    }

    async fn restore(&self, key: &str, class: &ferry_core::StorageClass, asked: &RestoreRequest) -> Result<Option<RestoreTier>> {
        use aws_sdk_s3::types::{GlacierJobParameters, Tier};
        let offered = offered_tier(class, asked.tier);
        let tier = match offered {
            RestoreTier::Standard => Tier::Standard,
            RestoreTier::Bulk => Tier::Bulk,
            RestoreTier::Expedited => Tier::Expedited,
        };
        let job = GlacierJobParameters::builder().tier(tier).build().expect("the tier is set");
        let restore =
            aws_sdk_s3::types::RestoreRequest::builder().days(asked.days.min(i32::MAX as u32) as i32).glacier_job_parameters(job).build();
        let full = self.full_key(key);
        request(&self.run, 0, || async {
            let req = self.client.restore_object().bucket(&self.location.bucket).key(&full).restore_request(restore.clone());
            match req.send().await {
                Ok(_) => Ok(Some(offered)),
                // Asked before (by ferry or anyone): it is under way.
                Err(e) if e.code() == Some("RestoreAlreadyInProgress") => Ok(Some(offered)),
                Err(e) => Err(self.failed("restore", key, e)),
            }
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let full = self.full_key(key);
        request(&self.run, 0, || async {
            self.client.delete_object().bucket(&self.location.bucket).key(&full).send().await.map_err(|e| self.failed("delete", key, e))
        })
        .await?;
        Ok(())
    }

    fn lists_in_key_order(&self) -> bool {
        true
    }

    fn carries(&self) -> Carries {
        CARRIES
    }

    async fn tags(&self, key: &str) -> Result<Tags> {
        self.tags_of(&self.location.bucket, &self.full_key(key), key).await
    }

    async fn locks_objects(&self) -> Result<bool> {
        use aws_sdk_s3::types::ObjectLockEnabled;
        request(&self.run, 0, || async {
            match self.client.get_object_lock_configuration().bucket(&self.location.bucket).send().await {
                Ok(o) => Ok(o.object_lock_configuration().and_then(|c| c.object_lock_enabled()) == Some(&ObjectLockEnabled::Enabled)),
                // A bucket without object lock, or a service without it (501, as s3s-fs).
                Err(e)
                    if matches!(e.code(), Some("ObjectLockConfigurationNotFoundError" | "NotImplemented"))
                        || e.raw_response().is_some_and(|r| r.status().as_u16() == 501) =>
                {
                    Ok(false)
                }
                Err(e) => Err(self.failed("get object lock configuration", "", e)),
            }
        })
        .await
    }

    /// One HEAD: it reports the legal hold and the retention both (to a caller allowed
    /// `s3:GetObjectLegalHold` and `s3:GetObjectRetention`), where GetObjectLegalHold and
    /// GetObjectRetention would take two requests.
    async fn lock(&self, key: &str) -> Result<Option<ferry_core::ObjectLock>> {
        use aws_sdk_s3::types::{ObjectLockLegalHoldStatus, ObjectLockMode};
        use ferry_core::{ObjectLock, RetentionMode};
        let full = self.full_key(key);
        let o = request(&self.run, 0, || async {
            self.client.head_object().bucket(&self.location.bucket).key(&full).send().await.map_err(|e| self.failed("head", key, e))
        })
        .await?;
        let held = o.object_lock_legal_hold_status() == Some(&ObjectLockLegalHoldStatus::On);
        let mode = match o.object_lock_mode() {
            Some(ObjectLockMode::Compliance) => Some(RetentionMode::Compliance),
            Some(ObjectLockMode::Governance) => Some(RetentionMode::Governance),
            _ => None,
        };
        let retention = mode.zip(to_chrono(o.object_lock_retain_until_date()));
        Ok(ObjectLock::in_effect(held, retention, chrono::Utc::now()))
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

/// What S3 keeps: every header (Expires too), tags, and `x-amz-meta-*` names, which travel as
/// HTTP header names and come back in lower case; values are header values (printable ASCII).
/// Tags: at most 10, keys of 1–128 and values of 0–256 characters among letters, digits, space
/// and `+ - = . _ : / @`.
pub const CARRIES: Carries = Carries {
    metadata: true,
    headers: &Header::ALL,
    tags: true,
    tag_limits: ferry_core::TagLimits {
        max_tags: 10,
        max_key_chars: 128,
        max_value_chars: 256,
        symbols: Some("+-=._:/@"),
        unicode_letters: true,
    },
    names: NameRule::LowerCaseToken,
    ascii_values: true,
};

/// The system headers of a HEAD or GET answer.
fn headers_of(
    encoding: Option<&str>,
    disposition: Option<&str>,
    language: Option<&str>,
    cache: Option<&str>,
    expires: Option<&str>,
) -> Headers {
    let own = |v: Option<&str>| v.map(str::to_string);
    Headers {
        content_encoding: own(encoding),
        content_disposition: own(disposition),
        content_language: own(language),
        cache_control: own(cache),
        expires: own(expires),
    }
}

/// Tags as far as a read knows them: none when it says there are none (`x-amz-tagging-count`
/// absent or 0), unknown (`None`: one GetObjectTagging asks) otherwise.
fn tags_known(count: Option<i32>) -> Option<Tags> {
    match count {
        Some(n) if n > 0 => None,
        _ => Some(Tags::new()),
    }
}

/// `Expires` as the SDK sends it; a value that is not an HTTP date is not sent.
pub(super) fn expires_of(headers: &Headers) -> Option<aws_smithy_types::DateTime> {
    let text = headers.expires.as_deref()?;
    aws_smithy_types::DateTime::from_str(text, aws_smithy_types::date_time::Format::HttpDate).ok()
}

/// Tags as S3's `x-amz-tagging` header wants them: a URL-encoded query string.
pub(super) fn tagging(tags: &Tags) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(tags.iter()).finish()
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
