//! What the providers that speak HTTP themselves (GCS's JSON API, Azure blocks) share: turning
//! an answer into a classified [`ProviderError`] (and its `Retry-After`) for the run's one
//! retry layer ([`retries::request`]); a time limit on every request that grows with its bytes; and bodies read only as far as
//! their use needs (an error answer's first 64 KiB). No error text carries a request's URL.

use crate::{ProviderError, Result, class_of_status, retries};
use ferry_core::{ErrorClass, FailureKind};
use std::future::Future;
use std::time::Duration;

/// The longest `Retry-After` honoured; a longer one is cut to this.
const MAX_RETRY_AFTER_SECS: u64 = 60;

/// How much of an error answer's body is read for its message; the rest is never taken.
const MAX_ERROR_BODY: usize = 64 << 10;

/// The time one request may take, its bytes included: a base for the round trip
/// (`FERRY_REQUEST_TIMEOUT` seconds, 60 by default) plus its `bytes` (sent, or expected back)
/// at the slowest rate a transfer may keep (`FERRY_MIN_RATE` per second, e.g. `256KiB`, 1 MiB
/// by default). A peer that stops reading an upload or answering ends the attempt there.
pub(crate) fn request_timeout(bytes: u64) -> Duration {
    static LIMITS: std::sync::OnceLock<(Duration, u64)> = std::sync::OnceLock::new();
    let (base, rate) = *LIMITS.get_or_init(|| {
        let base =
            std::env::var("FERRY_REQUEST_TIMEOUT").ok().and_then(|v| v.trim().parse::<f64>().ok()).filter(|s| s.is_finite() && *s > 0.0);
        let rate = std::env::var("FERRY_MIN_RATE").ok().and_then(|v| ferry_core::size::parse_size(&v).ok()).filter(|r| *r > 0);
        (Duration::from_secs_f64(base.unwrap_or(60.0)), rate.unwrap_or(1 << 20))
    });
    base + Duration::from_secs_f64(bytes as f64 / rate as f64)
}

/// Sends `req` under [`request_timeout`] for its body, or for `expect` bytes of answer when
/// that is more (a ranged read); `expect: None` is an answer of unknown length, limited only by
/// the client's per-read timeout.
pub(crate) async fn execute_timed(
    client: &reqwest::Client,
    mut req: reqwest::Request,
    expect: Option<u64>,
) -> reqwest::Result<reqwest::Response> {
    let sent = req.body().and_then(|b| b.as_bytes()).map_or(0, |b| b.len() as u64);
    if let Some(expect) = expect {
        *req.timeout_mut() = Some(request_timeout(sent.max(expect)));
    }
    client.execute(req).await
}

/// The text of an error answer's body, read no further than [`MAX_ERROR_BODY`] bytes.
async fn error_text(mut resp: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY {
        match resp.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk[..chunk.len().min(MAX_ERROR_BODY - body.len())]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// An answer's body when it is at most `max` bytes (a listing, a block list, an object's
/// description): a longer one is refused as soon as it passes `max`, never held whole.
pub(crate) async fn read_limited(mut resp: reqwest::Response, max: usize) -> std::result::Result<bytes::Bytes, (FailureKind, String)> {
    let mut body = bytes::BytesMut::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) if body.len() + chunk.len() > max => {
                return Err((FailureKind::Other, format!("the answer is longer than {max} bytes")));
            }
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => return Ok(body.freeze()),
            Err(e) => {
                let kind = if e.is_timeout() { FailureKind::Timeout } else { FailureKind::Connection };
                return Err((kind, format!("connection dropped while reading: {}", crate::error::chain(&e.without_url()))));
            }
        }
    }
}

/// The message of a transport failure: the error without its URL (which may carry a SAS
/// token), naming a timeout plainly.
fn transport_detail(e: reqwest::Error) -> String {
    let timed_out = e.is_timeout();
    let text = crate::error::chain(&e.without_url());
    match timed_out {
        true => format!("timed out: the peer did not take the request or answer it in time ({text})"),
        false => text,
    }
}

/// Who is being talked to, for error messages.
pub(crate) struct Peer<'a> {
    pub provider: &'static str,
    pub bucket: &'a str,
    pub endpoint: &'a str,
}

/// Sends the request `attempt` builds through the run's one retry layer
/// ([`retries::request`]). A 2xx answer is `Ok`; 401/403 are `Denied`, 404 `NotFound`, 412
/// `Changed`, anything else classified by status, its `Retry-After` (seconds) handed to the
/// layer.
pub(crate) async fn send_retrying<F, Fut>(
    run: &crate::RunContext,
    peer: &Peer<'_>,
    op: &'static str,
    key: &str,
    mut attempt: F,
) -> Result<reqwest::Response>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<reqwest::Result<reqwest::Response>>>,
{
    retries::request(run, &retries::REQUEST, |_| {
        let sent = attempt();
        async move { answer(peer, op, key, sent.await?).await }
    })
    .await
}

/// An answer (or a transport failure) as the retry layer sees it.
pub(crate) async fn answer(
    peer: &Peer<'_>,
    op: &'static str,
    key: &str,
    sent: reqwest::Result<reqwest::Response>,
) -> std::result::Result<reqwest::Response, retries::Failed> {
    let resp = match sent {
        Ok(resp) if resp.status().is_success() => return Ok(resp),
        Ok(resp) => resp,
        Err(e) if e.is_connect() => {
            let detail = transport_detail(e);
            return Err(ProviderError::Unreachable { provider: peer.provider, endpoint: peer.endpoint.to_string(), detail }.into());
        }
        Err(e) => {
            let kind = if e.is_timeout() { FailureKind::Timeout } else { FailureKind::Connection };
            let (provider, key, detail) = (peer.provider, key.to_string(), transport_detail(e));
            return Err(ProviderError::Request { provider, op, key, detail, class: ErrorClass::Retryable, kind }.into());
        }
    };
    let status = resp.status().as_u16();
    let retry_after = retries::retry_after(resp.headers()).map(|d| d.min(Duration::from_secs(MAX_RETRY_AFTER_SECS)));
    // Azure names the error in a header; both services explain it in the body.
    let code = resp.headers().get("x-ms-error-code").and_then(|v| v.to_str().ok()).map(str::to_string);
    let body = error_text(resp).await;
    let body = match body.strip_prefix("<?xml").and_then(|rest| rest.split_once("?>")) {
        Some((_, after)) => after,
        None => body.as_str(),
    };
    let body: String = body.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(300).collect();
    let archived = code.as_deref() == Some("BlobArchived");
    let detail = format!("HTTP {status} {}{body}", code.map(|c| c + ": ").unwrap_or_default());
    let error = match status {
        401 | 403 => ProviderError::Denied { provider: peer.provider, bucket: peer.bucket.to_string(), detail },
        404 => ProviderError::NotFound { provider: peer.provider, key: key.to_string() },
        // Only reads of a source carry conditions (If-Match, a generation match).
        412 => ProviderError::Changed { provider: peer.provider, key: key.to_string(), detail },
        // The service found the body differs from the checksum ferry sent with it:
        // corrupted on the way, and sending the same bytes again is the repair.
        400 if detail.contains("Md5Mismatch") || detail.contains("contentMD5 doesn't match") => {
            ProviderError::corrupted(peer.provider, op, key, detail)
        }
        // Azure's Archive tier: the blob cannot be read until rehydrated. That object's
        // failure, never a retry or a stop.
        409 if archived => {
            let (class, kind) = (ErrorClass::PerObject, FailureKind::Archived);
            ProviderError::Request { provider: peer.provider, op, key: key.to_string(), detail, class, kind }
        }
        s => {
            let (class, kind) = (class_of_status(s), FailureKind::of_status(s));
            ProviderError::Request { provider: peer.provider, op, key: key.to_string(), detail, class, kind }
        }
    };
    Err(retries::Failed { error, retry_after })
}

/// Largest buffer reserved up front from a response's Content-Length; a longer body grows it.
const MAX_RESERVE: u64 = 1 << 30;

/// Reads a response body into one buffer of `pool` (recycled) sized from its Content-Length,
/// chunk by chunk as the connection delivers them: one copy of each byte, and never the chunks
/// and a joined copy of them in memory at once (what collecting then flattening a body costs).
/// Its bytes are charged to the run's read ceiling by [`crate::Throttled`] once they are all in.
pub(crate) async fn read_body(pool: &ferry_core::buffers::BufferPool, mut resp: reqwest::Response) -> reqwest::Result<bytes::Bytes> {
    let mut buf = pool.take(resp.content_length().unwrap_or(0).min(MAX_RESERVE) as usize);
    while let Some(chunk) = resp.chunk().await.map_err(reqwest::Error::without_url)? {
        buf.extend_from_slice(&chunk);
    }
    Ok(pool.freeze(buf))
}
