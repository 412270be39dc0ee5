//! The SDK client, its errors and the checksum helpers every S3 request shares.

use super::*;
use crate::{ProviderError, Result, RunContext, class_of_status, unquote};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadError;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Utc};
use ferry_core::Md5Etag;
use ferry_core::{ErrorClass, FailureKind};
use std::sync::Arc;
use std::time::Duration;

/// The SDK client for `connect` (its endpoint and profile, else the standard AWS environment),
/// and the endpoint to name in messages (redacted).
pub(super) async fn connect(connect: &crate::Connect, run: &Arc<RunContext>) -> (Client, String) {
    let endpoint =
        connect.endpoint.clone().or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok()).or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
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
        .interceptor(CountRetries(run.clone()))
        // ferry computes the CRC32C itself and sends it; the SDK need not hash again.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired);
    if endpoint.is_some() {
        conf = conf.force_path_style(true);
    }
    if shared.region().is_none() {
        conf = conf.region(Region::new("us-east-1"));
    }
    let endpoint = endpoint.map(|e| ferry_core::location::redact(&e)).unwrap_or_else(|| "AWS S3".into());
    (Client::from_conf(conf.build()), endpoint)
}

pub(super) fn map_error<E>(
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
        (_, Some(s), code) => {
            // S3 names its push-backs by code; a 503 SlowDown is throttling, not an outage.
            let kind = match code {
                "SlowDown" | "Throttling" | "ThrottlingException" | "TooManyRequests" | "RequestLimitExceeded" => FailureKind::Throttled,
                "NoSuchUpload" => FailureKind::NotFound,
                "NotImplemented" => FailureKind::Unsupported,
                _ => FailureKind::of_status(s),
            };
            ProviderError::Request { provider: PROVIDER, op, key: key.to_string(), detail, class: class_of_status(s), kind }
        }
        _ => {
            let kind = if matches!(e, SdkError::ResponseError(_)) { FailureKind::Connection } else { FailureKind::Other };
            ProviderError::Request { provider: PROVIDER, op, key: key.to_string(), detail, class: ErrorClass::Retryable, kind }
        }
    }
}

/// Sends a body (`len` bytes) again (the same bytes, which passed the read check) while the
/// service says it arrived corrupted, up to 3 times, each counted as a `checksum mismatch`
/// retry. Other errors are left to the SDK's retries and the mover's. Each send takes a request
/// slot and waits the run's pace; a re-send also charges its bytes again (the first send's
/// were charged by [`crate::Throttled`]).
pub(super) async fn resend_on_checksum_mismatch<T, F, Fut>(run: &RunContext, len: usize, mut send: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        run.before_request().await;
        if attempt > 1 {
            run.throttle().sending(len).await;
        }
        match send().await {
            Err(e) if attempt < 3 && e.is_corrupted() => {
                run.retries().record(crate::retries::Cause::Checksum);
            }
            other => return other,
        }
    }
}

/// Whether S3 answered for the very bytes sent (else why not). S3 checks the CRC32C header itself and echoes
/// it; a service that echoes no checksum (some S3-compatibles) is held to its ETag, the MD5 of
/// what it stored for a plain put or part.
pub(super) fn acknowledged(echoed_crc: Option<&str>, etag: Option<&str>, sent: &[u8], crc32c: u32) -> std::result::Result<(), String> {
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
pub(super) fn etag_is_md5(sse: Option<&ServerSideEncryption>, customer_algorithm: Option<&str>) -> bool {
    customer_algorithm.is_none() && !matches!(sse, Some(ServerSideEncryption::AwsKms | ServerSideEncryption::AwsKmsDsse))
}

/// Counts each failed attempt the SDK retries (5xx including 503 SlowDown, timeouts, dropped
/// connections) in the run's retry counts, and feeds throttling answers and successes to
/// ferry's pace, which every S3 data request waits on.
#[derive(Debug)]
pub(super) struct CountRetries(Arc<RunContext>);

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
            self.0.retries().throttled();
        }
        let Some(Err(e)) = ctx.output_or_error() else {
            self.0.retries().succeeded();
            return Ok(());
        };
        // A 429 is retried by the SDK only under some error codes; the mover counts the rest.
        let cause = match status {
            Some(s @ 500..=599) => crate::retries::Cause::of_status(s),
            Some(_) => return Ok(()),
            None if e.is_timeout_error() => crate::retries::Cause::Timeout,
            None => crate::retries::Cause::Connection,
        };
        self.0.retries().record(cause);
        Ok(())
    }
}

pub(super) fn b64_crc(crc: u32) -> String {
    B64.encode(crc.to_be_bytes())
}

/// A whole-object (not composite `…-N`) base64 CRC32C, as 8 hex digits.
pub(super) fn crc_hex(b64: Option<&str>) -> Option<String> {
    crc_u32(b64).map(ferry_core::digest::crc32c_hex)
}

/// A whole-object base64 CRC32C as a number.
pub(super) fn crc_u32(b64: Option<&str>) -> Option<u32> {
    Some(u32::from_be_bytes(B64.decode(b64?).ok()?.try_into().ok()?))
}

/// Completes multipart upload `upload_id` of `full_key` from `parts`; returns the object's
/// entity tag.
pub(super) async fn complete_upload(
    client: &Client,
    bucket: &str,
    full_key: &str,
    upload_id: &str,
    parts: Vec<CompletedPart>,
) -> std::result::Result<PutReceipt, SdkError<CompleteMultipartUploadError, aws_smithy_runtime_api::http::Response>> {
    let o = client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(full_key)
        .upload_id(upload_id)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
        .send()
        .await?;
    Ok(PutReceipt { etag: o.e_tag().map(unquote), version: o.version_id().map(str::to_string) })
}

/// A full-object base64 CRC64NVME (always full-object, multipart or not), as 16 hex digits.
pub(super) fn crc64_hex(b64: Option<&str>) -> Option<String> {
    let bytes = B64.decode(b64?).ok()?;
    (bytes.len() == 8).then(|| hex::encode(bytes))
}

pub(super) fn to_chrono(t: Option<&aws_smithy_types::DateTime>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
}
