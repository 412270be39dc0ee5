//! The SDK client, its errors and the checksum helpers every S3 request shares.

use super::*;
use crate::retries::Failed;
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
use std::time::Duration;

/// The SDK client for `connect` (its endpoint and profile, else the standard AWS environment),
/// and the endpoint to name in messages (redacted).
pub(super) async fn connect(connect: &crate::Connect) -> (Client, String) {
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
        // One retry layer: every request goes through ferry's (`crate::retries::request`),
        // which paces, honours Retry-After, bounds attempts and time and counts each retry by
        // cause. The SDK's own retries under it would multiply every send (5 × 5 for one
        // throttled request) and hide their count; its adaptive mode also slowed a copy
        // tenfold under a steady 5% of 503s.
        .retry_config(RetryConfig::disabled())
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

/// An SDK error as the retry layer sees it: classified, with the `Retry-After` the service
/// sent (in seconds).
pub(super) fn failed<E>(
    endpoint: &str,
    bucket: &str,
    op: &'static str,
    key: &str,
    e: SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> Failed
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let retry_after =
        e.raw_response().and_then(|r| r.headers().get("retry-after")).and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs);
    Failed { error: map_error(endpoint, bucket, op, key, e), retry_after }
}

/// Sends an S3 request with a body of `len` bytes through the run's one retry layer
/// ([`crate::retries::request`]): `send` builds and sends it anew each time. A re-send charges
/// its body's bytes again (the first send's were charged by [`crate::Throttled`]), and a body
/// the service says arrived corrupted is sent again like any transient failure.
pub(super) async fn request<T, F, Fut>(run: &RunContext, len: usize, mut send: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, Failed>>,
{
    crate::retries::request(run, &crate::retries::REQUEST, |n| {
        let sent = send();
        async move {
            if n > 1 && len > 0 {
                run.throttle().sending(len).await;
            }
            sent.await
        }
    })
    .await
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
) -> std::result::Result<Option<String>, SdkError<CompleteMultipartUploadError, aws_smithy_runtime_api::http::Response>> {
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
pub(super) fn crc64_hex(b64: Option<&str>) -> Option<String> {
    let bytes = B64.decode(b64?).ok()?;
    (bytes.len() == 8).then(|| hex::encode(bytes))
}

pub(super) fn to_chrono(t: Option<&aws_smithy_types::DateTime>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
}
