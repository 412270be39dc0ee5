//! What the providers that speak HTTP themselves (GCS's JSON API, Azure blocks) share: turning
//! an answer into a classified [`ProviderError`], and retrying transient failures with jittered
//! exponential backoff, each retry counted by cause and throttling answers slowing the pace.

use crate::{ProviderError, Result, class_of_status, retries};
use ferry_core::ErrorClass;
use std::future::Future;
use std::time::Duration;

/// The longest `Retry-After` honoured; a longer one is cut to this.
const MAX_RETRY_AFTER_SECS: u64 = 60;

/// Who is being talked to, for error messages.
pub(crate) struct Peer<'a> {
    pub provider: &'static str,
    pub bucket: &'a str,
    pub endpoint: &'a str,
}

/// Sends the request `attempt` builds, up to `attempts` times while failures are retryable.
/// A 2xx answer is `Ok`; 401/403 are `Denied`, 404 `NotFound`, anything else classified by status.
/// A retryable answer's `Retry-After` (in seconds) replaces the backoff.
pub(crate) async fn send_retrying<F, Fut>(
    peer: &Peer<'_>,
    op: &'static str,
    key: &str,
    attempts: u32,
    mut attempt: F,
) -> Result<reqwest::Response>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<reqwest::Result<reqwest::Response>>>,
{
    let mut n = 0;
    loop {
        n += 1;
        let mut retry_after = None;
        crate::retries::pace().await;
        let cause;
        let err = match attempt().await? {
            Ok(resp) if resp.status().is_success() => {
                retries::succeeded();
                return Ok(resp);
            }
            Ok(resp) => {
                let status = resp.status().as_u16();
                if matches!(status, 429 | 503) {
                    retries::throttled();
                }
                retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
                // Azure names the error in a header; both services explain it in the body.
                let code = resp.headers().get("x-ms-error-code").and_then(|v| v.to_str().ok()).map(str::to_string);
                let body = resp.text().await.unwrap_or_default();
                let body = match body.strip_prefix("<?xml").and_then(|rest| rest.split_once("?>")) {
                    Some((_, after)) => after,
                    None => body.as_str(),
                };
                let body: String = body.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(300).collect();
                let detail = format!("HTTP {status} {}{body}", code.map(|c| c + ": ").unwrap_or_default());
                match status {
                    401 | 403 => return Err(ProviderError::Denied { provider: peer.provider, bucket: peer.bucket.to_string(), detail }),
                    404 => return Err(ProviderError::NotFound { provider: peer.provider, key: key.to_string() }),
                    // The service found the body differs from the checksum ferry sent with it:
                    // corrupted on the way, and sending the same bytes again is the repair.
                    400 if detail.contains("Md5Mismatch") || detail.contains("contentMD5 doesn't match") => {
                        cause = retries::CHECKSUM;
                        ProviderError::corrupted(peer.provider, op, key, detail)
                    }
                    s => {
                        cause = retries::cause_of_status(s);
                        ProviderError::Request { provider: peer.provider, op, key: key.to_string(), detail, class: class_of_status(s) }
                    }
                }
            }
            Err(e) if e.is_connect() => {
                cause = retries::CONNECTION;
                ProviderError::Unreachable { provider: peer.provider, endpoint: peer.endpoint.to_string(), detail: crate::error::chain(&e) }
            }
            Err(e) => {
                cause = if e.is_timeout() { retries::TIMEOUT } else { retries::CONNECTION };
                ProviderError::Request {
                    provider: peer.provider,
                    op,
                    key: key.to_string(),
                    detail: crate::error::chain(&e),
                    class: ErrorClass::Retryable,
                }
            }
        };
        if err.class() != ErrorClass::Retryable || n >= attempts {
            return Err(err);
        }
        retries::record(cause);
        let delay = match retry_after {
            // The service said when to come back (seconds); honour it, within reason.
            Some(secs) => Duration::from_secs(secs.min(MAX_RETRY_AFTER_SECS)),
            None => {
                let backoff = 100u64 << n.min(6);
                Duration::from_millis(backoff / 2 + rand::random_range(0..=backoff / 2))
            }
        };
        tokio::time::sleep(delay).await;
    }
}

/// Largest buffer reserved up front from a response's Content-Length; a longer body grows it.
const MAX_RESERVE: u64 = 1 << 30;

/// Reads a response body into one (recycled) buffer sized from its Content-Length, chunk by chunk as the
/// connection delivers them: one copy of each byte, and never the chunks and a joined copy of
/// them in memory at once (what collecting then flattening a body costs).
pub(crate) async fn read_body(mut resp: reqwest::Response) -> reqwest::Result<bytes::Bytes> {
    let mut buf = ferry_core::buffers::take(resp.content_length().unwrap_or(0).min(MAX_RESERVE) as usize);
    while let Some(chunk) = resp.chunk().await? {
        buf.extend_from_slice(&chunk);
    }
    crate::throttle::received(buf.len()).await;
    Ok(ferry_core::buffers::freeze(buf))
}
