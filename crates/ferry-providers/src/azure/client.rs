//! Azure block uploads with ferry's own block ids, so an upload can be reattached from another
//! process: Put Block, Get Block List (uncommitted), Put Block List — signed by object_store's
//! authorizer with whatever credential its chain resolved (shared key, SAS, bearer token).
//!
//! Block ids are `base64("{upload id}-{index:06}")`: one length for every block of a blob, as
//! Azure requires, and each names the upload and part it belongs to.

use crate::{PartReceipt, ProviderError, PutAttrs, PutReceipt, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use bytes::BytesMut;
use ferry_core::headers::{azure_name, from_azure_name};
use ferry_core::{Checksums, Headers, ObjectEntry, Tags};
use ferry_core::{ErrorClass, FailureKind};
use object_store::azure::{AzureAuthorizer, AzureCredentialProvider};
use object_store::{Attribute, Attributes};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use std::ops::Range;

const PROVIDER: &str = "azure";
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// How long a pending Copy Blob is waited for: 1800 polls, one a second.
const COPY_POLLS: u32 = 1800;
const COPY_POLL_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

pub(super) struct BlockClient {
    pub http: reqwest::Client,
    pub credentials: AzureCredentialProvider,
    pub account: String,
    /// `https://ACCOUNT.blob.core.windows.net/CONTAINER` or the emulator's path-style equivalent:
    /// the account URL object_store was given, so both reach the one endpoint.
    pub container_url: String,
    pub container: String,
    pub endpoint: String,
    /// The access tier every blob written is set in (`--storage-class`); `None`: the
    /// account's default tier.
    pub access_tier: Option<String>,
    /// The encryption scope every blob is written in (`--azure-encryption-scope`); `None`:
    /// the container's default.
    pub encryption_scope: Option<String>,
    /// The run whose pace, counts and buffers the requests use.
    pub run: std::sync::Arc<crate::RunContext>,
}

pub(super) fn block_id(upload_id: &str, index: u32) -> String {
    B64.encode(format!("{upload_id}-{index:06}"))
}

/// `(upload id, index)` of a block id ferry made.
fn parse_block_id(id: &str) -> Option<(String, u32)> {
    let raw = String::from_utf8(B64.decode(id).ok()?).ok()?;
    let (upload, index) = raw.rsplit_once('-')?;
    Some((upload.to_string(), index.parse().ok()?))
}

impl BlockClient {
    fn blob_url(&self, full_key: &str) -> String {
        let path: Vec<String> = full_key.split('/').map(|s| utf8_percent_encode(s, UNRESERVED).to_string()).collect();
        format!("{}/{}", self.container_url, path.join("/"))
    }

    /// Signs and sends one request, retrying transient failures (signing each attempt anew).
    async fn send(
        &self,
        op: &'static str,
        key: &str,
        method: http::Method,
        url: String,
        headers: Vec<(String, String)>,
        body: Bytes,
    ) -> Result<reqwest::Response> {
        self.send_expecting(op, key, method, url, headers, body, 0).await
    }

    /// [`BlockClient::send`] for an answer of about `expect` bytes (its time limit grows with them).
    #[allow(clippy::too_many_arguments)]
    async fn send_expecting(
        &self,
        op: &'static str,
        key: &str,
        method: http::Method,
        url: String,
        headers: Vec<(String, String)>,
        body: Bytes,
        expect: u64,
    ) -> Result<reqwest::Response> {
        crate::retries::request(&self.run, &crate::retries::REQUEST, |_| self.send_once(op, key, &method, &url, &headers, &body, expect))
            .await
    }

    /// One send of a request, signed anew, for the retry layer: its answer if 2xx.
    #[allow(clippy::too_many_arguments)]
    async fn send_once(
        &self,
        op: &'static str,
        key: &str,
        method: &http::Method,
        url: &str,
        headers: &[(String, String)],
        body: &Bytes,
        expect: u64,
    ) -> std::result::Result<reqwest::Response, crate::retries::Failed> {
        let peer = crate::http::Peer { provider: PROVIDER, bucket: &self.container, endpoint: &self.endpoint };
        let sent = match self.signed(method, url, headers, body).await?.build() {
            Ok(req) => crate::http::execute_timed(&self.http, req, Some(expect)).await,
            Err(e) => Err(e),
        };
        crate::http::answer(&peer, op, key, sent).await
    }

    /// The request, signed with the credential object_store's chain resolved.
    async fn signed(
        &self,
        method: &http::Method,
        url: &str,
        headers: &[(String, String)],
        body: &Bytes,
    ) -> Result<reqwest::RequestBuilder> {
        let config = |e: &dyn std::fmt::Display| ProviderError::Config { provider: PROVIDER, detail: e.to_string() };
        let credential = self.credentials.get_credential().await.map_err(|e| ProviderError::Denied {
            provider: PROVIDER,
            bucket: self.container.clone(),
            detail: crate::error::chain(&e),
        })?;
        let mut req = http::Request::builder().method(method.clone()).uri(url);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        // Azure wants a length on every write, an empty blob's too.
        if !body.is_empty() || *method == http::Method::PUT {
            req = req.header("content-length", body.len().to_string());
        }
        let mut req = req.body(object_store::client::HttpRequestBody::from(body.clone())).map_err(|e| config(&e))?;
        AzureAuthorizer::new(&credential, &self.account).try_authorize(&mut req).map_err(|e| config(&e))?;
        let mut out = self.http.request(method.clone(), req.uri().to_string());
        for (k, v) in req.headers() {
            out = out.header(k, v);
        }
        Ok(out.body(body.clone()))
    }

    /// The blob's index tags (Get Blob Tags), in `container` (else this client's).
    pub async fn tags(&self, container: Option<&str>, full_key: &str, key: &str) -> Result<Tags> {
        let blob = container.map_or_else(|| self.blob_url(full_key), |c| self.blob_url_in(c, full_key));
        let url = format!("{blob}?comp=tags");
        let resp = self.send("get tags", key, http::Method::GET, url, Vec::new(), Bytes::new()).await?;
        let xml = resp.text().await.map_err(|e| ProviderError::Request {
            provider: PROVIDER,
            op: "get tags",
            key: key.to_string(),
            detail: crate::error::chain(&e),
            class: ErrorClass::Retryable,
            kind: FailureKind::Connection,
        })?;
        Ok(tags_in(&xml))
    }

    /// The headers of a blob write for what was asked: `x-ms-access-tier` (`tier`, this
    /// object's, else `--storage-class`), `x-ms-encryption-scope`.
    fn write_headers(&self, tier: Option<&str>) -> Vec<(String, String)> {
        let tier = tier.or(self.access_tier.as_deref()).map(|tier| ("x-ms-access-tier".to_string(), tier.to_string()));
        tier.into_iter().chain(self.scope_header()).collect()
    }

    /// The `x-ms-encryption-scope` header of a write (blocks included), when one was asked for.
    fn scope_header(&self) -> Option<(String, String)> {
        self.encryption_scope.clone().map(|scope| ("x-ms-encryption-scope".to_string(), scope))
    }

    /// Sends a block with its MD5, which Azure checks before it keeps the block.
    pub async fn put_block(&self, full_key: &str, key: &str, block_id: &str, data: Bytes) -> Result<()> {
        let url = format!("{}?comp=block&blockid={}", self.blob_url(full_key), utf8_percent_encode(block_id, UNRESERVED));
        let mut headers = vec![("content-md5".to_string(), md5_b64(&data))];
        headers.extend(self.scope_header());
        self.send("put block", key, http::Method::PUT, url, headers, data).await?;
        Ok(())
    }

    /// Writes a whole blob in one request (Put Blob) with its MD5, which Azure checks and keeps
    /// as the blob's Content-MD5, the evidence a later read of it is checked against.
    pub async fn put_blob(&self, full_key: &str, key: &str, data: Bytes, attrs: &PutAttrs) -> Result<PutReceipt> {
        let mut headers = vec![("x-ms-blob-type".to_string(), "BlockBlob".to_string()), ("content-md5".to_string(), md5_b64(&data))];
        headers.extend(attr_headers(attrs));
        headers.extend(self.write_headers(attrs.storage_class.as_deref()));
        let resp = self.send("put", key, http::Method::PUT, self.blob_url(full_key), headers, data).await?;
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok());
        // A version id only where the account keeps blob versions.
        Ok(PutReceipt { etag: header("etag").map(crate::unquote), version: header("x-ms-version-id").map(str::to_string) })
    }

    /// Reads `range` of a blob (all of it when `None`) in requests of at most 4 MiB, each with
    /// Azure's MD5 of that range checked against the bytes received; a range that fails its
    /// check or arrives cut short is read again (by the retry layer, as one request). Every range after the first carries `If-Match`
    /// the first answer's entity tag, so all come from one version of the blob (else
    /// [`ProviderError::Changed`]). A whole blob read is also checked against the blob's own
    /// Content-MD5 when it has one. Returns the bytes and the headers of the first answer, and
    /// the blob's size.
    pub async fn get_checked(&self, full_key: &str, key: &str, range: Option<Range<u64>>) -> Result<(Bytes, http::HeaderMap, u64)> {
        use md5::Digest;
        let url = self.blob_url(full_key);
        let whole = range.is_none();
        let mut start = range.as_ref().map_or(0, |r| r.start);
        let mut end = range.as_ref().map(|r| r.end);
        // The ranges as read; joined (one copy) only when there is more than one.
        let mut chunks: Vec<Bytes> = Vec::new();
        let mut first: Option<(http::HeaderMap, u64)> = None;
        let mut blob_md5 = md5::Md5::new();
        while end.is_none_or(|e| start < e) {
            let want_end = (start + MD5_RANGE).min(end.unwrap_or(u64::MAX));
            let mut headers = vec![
                ("x-ms-range".to_string(), format!("bytes={start}-{}", want_end - 1)),
                ("x-ms-range-get-content-md5".to_string(), "true".to_string()),
            ];
            if let Some(etag) = first.as_ref().and_then(|(head, _)| head.get("etag")?.to_str().ok()) {
                headers.push(("if-match".to_string(), etag.to_string()));
            }
            // One range is one request of the retry layer, its body and MD5 check included: a
            // range cut short or failing its MD5 is sent for again (4 MiB, not the object).
            let read = crate::retries::request(&self.run, &crate::retries::REQUEST, |_| async {
                let resp = self.send_once("get", key, &http::Method::GET, &url, &headers, &Bytes::new(), want_end - start).await?;
                read_checked(self.run.buffers(), resp, start, want_end).await.map_err(|(kind, detail)| {
                    let error = match kind {
                        FailureKind::CorruptedInTransit => ProviderError::corrupted(PROVIDER, "get", key, detail),
                        kind => ProviderError::Request {
                            provider: PROVIDER,
                            op: "get",
                            key: key.to_string(),
                            detail,
                            class: ErrorClass::Restart,
                            kind,
                        },
                    };
                    crate::retries::Failed::from(error)
                })
            })
            .await;
            let (data, head, total) = match read {
                Ok(got) => got,
                // An empty blob has no byte 0 to ask for.
                Err(ProviderError::Request { kind: FailureKind::RangeNotSatisfiable, .. }) if start == 0 && first.is_none() => {
                    let resp = self.send("get", key, http::Method::GET, url.clone(), Vec::new(), Bytes::new()).await?;
                    return Ok((Bytes::new(), resp.headers().clone(), 0));
                }
                Err(e) => return Err(e),
            };
            let end = *end.get_or_insert(total);
            if first.is_none() {
                first = Some((head, total));
            }
            let got = data.len() as u64;
            if whole {
                blob_md5.update(&data);
            }
            chunks.push(data);
            start += got;
            if got == 0 || start >= end {
                break;
            }
        }
        let (head, total) = first.expect("at least one range was read");
        // The blob's own MD5 (which a ranged answer gives as x-ms-blob-content-md5) proves the
        // ranges joined are the blob it describes.
        if let Some(declared) = head.get("x-ms-blob-content-md5").and_then(|v| v.to_str().ok()).filter(|_| whole) {
            let read = B64.encode(blob_md5.finalize());
            if read != declared {
                return Err(ProviderError::corrupted(
                    PROVIDER,
                    "get",
                    key,
                    format!("the blob's bytes have MD5 {read}, its Content-MD5 is {declared}"),
                ));
            }
        }
        let data = match chunks.len() {
            1 => chunks.pop().expect("one chunk"),
            _ => {
                let mut out = BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
                chunks.iter().for_each(|c| out.extend_from_slice(c));
                out.freeze()
            }
        };
        Ok((data, head, total))
    }

    /// The URL of `full_key` in another container of the same account.
    fn blob_url_in(&self, container: &str, full_key: &str) -> String {
        let account_url = self.container_url.rsplit_once('/').map_or(self.container_url.as_str(), |(base, _)| base);
        let path: Vec<String> = full_key.split('/').map(|s| utf8_percent_encode(s, UNRESERVED).to_string()).collect();
        format!("{account_url}/{}/{}", utf8_percent_encode(container, UNRESERVED), path.join("/"))
    }

    /// The blob's properties (a HEAD), or `None` when it does not exist. `container` names
    /// another container of the account, else this one's.
    pub async fn properties(&self, container: Option<&str>, full_key: &str, key: &str) -> Result<Option<http::HeaderMap>> {
        let url = container.map_or_else(|| self.blob_url(full_key), |c| self.blob_url_in(c, full_key));
        match self.send("head", key, http::Method::HEAD, url, Vec::new(), Bytes::new()).await {
            Ok(resp) => Ok(Some(resp.headers().clone())),
            Err(ProviderError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Asks Azure to rehydrate Archive blob `full_key` to [`REHYDRATE_TO`] (Set Blob Tier) at
    /// `priority` (`Standard` or `High`), through the run's one retry layer.
    pub async fn rehydrate(&self, full_key: &str, key: &str, priority: &str) -> Result<()> {
        let url = format!("{}?comp=tier", self.blob_url(full_key));
        let headers =
            vec![("x-ms-access-tier".to_string(), REHYDRATE_TO.to_string()), ("x-ms-rehydrate-priority".to_string(), priority.to_string())];
        self.send("rehydrate", key, http::Method::PUT, url, headers, Bytes::new()).await?;
        Ok(())
    }

    /// Has Azure copy blob `source_key` of container `source_container` (same account) to
    /// `full_key` (Copy Blob), only while its entity tag is still `if_match`, and waits until the
    /// copy is done; `tier`: the copy's access tier, else `--storage-class`. Returns the copy's
    /// properties.
    pub async fn copy_blob(
        &self,
        full_key: &str,
        key: &str,
        (source_container, source_key): (&str, &str),
        if_match: Option<&str>,
        tags: Option<&Tags>,
        tier: Option<&str>,
    ) -> Result<http::HeaderMap> {
        let mut headers = vec![("x-ms-copy-source".to_string(), self.blob_url_in(source_container, source_key))];
        // Copy Blob keeps properties and metadata but not index tags: they are set here.
        if let Some(tags) = tags.filter(|t| !t.is_empty()) {
            headers.push(("x-ms-tags".into(), url::form_urlencoded::Serializer::new(String::new()).extend_pairs(tags.iter()).finish()));
        }
        headers.extend(self.write_headers(tier));
        if let Some(etag) = if_match {
            headers.push(("x-ms-source-if-match".to_string(), format!("\"{etag}\"")));
        }
        let resp = self.send("copy", key, http::Method::PUT, self.blob_url(full_key), headers, Bytes::new()).await?;
        let failed = |detail: String| ProviderError::Request {
            provider: PROVIDER,
            op: "copy",
            key: key.to_string(),
            detail,
            class: ErrorClass::Restart,
            kind: FailureKind::Other,
        };
        let status_of = |h: &http::HeaderMap| h.get("x-ms-copy-status").and_then(|v| v.to_str().ok()).unwrap_or("success").to_string();
        let mut status = status_of(resp.headers());
        // Same-account copies finish at once or soon; a bounded wait, polling the destination.
        for _ in 0..COPY_POLLS {
            if status != "pending" {
                break;
            }
            tokio::time::sleep(COPY_POLL_EVERY).await;
            let head = self.properties(None, full_key, key).await?.ok_or_else(|| failed("the copy's blob vanished".into()))?;
            status = status_of(&head);
        }
        if status != "success" {
            return Err(failed(format!("copy status {status}")));
        }
        self.properties(None, full_key, key).await?.ok_or_else(|| failed("the copied blob is not there".into()))
    }

    /// The uncommitted blocks of `full_key` that belong to `upload_id`: `(index, size)`.
    pub async fn uncommitted(&self, full_key: &str, key: &str, upload_id: &str) -> Result<Vec<(u32, u64)>> {
        let url = format!("{}?comp=blocklist&blocklisttype=uncommitted", self.blob_url(full_key));
        let text = match self.send("get block list", key, http::Method::GET, url, Vec::new(), Bytes::new()).await {
            // 50,000 blocks take about 7 MB.
            Ok(resp) => match crate::http::read_limited(resp, MAX_BLOCK_LIST).await {
                Ok(body) => String::from_utf8_lossy(&body).into_owned(),
                Err((kind, detail)) => {
                    return Err(ProviderError::Request {
                        provider: PROVIDER,
                        op: "get block list",
                        key: key.to_string(),
                        detail,
                        class: ErrorClass::Restart,
                        kind,
                    });
                }
            },
            Err(ProviderError::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(blocks_in(&text)
            .into_iter()
            .filter_map(|(name, size)| {
                let (upload, index) = parse_block_id(&name)?;
                (upload == upload_id).then_some((index, size))
            })
            .collect())
    }

    pub async fn put_block_list(
        &self,
        full_key: &str,
        key: &str,
        upload_id: &str,
        parts: &[PartReceipt],
        attrs: &PutAttrs,
    ) -> Result<PutReceipt> {
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
        for p in parts {
            xml.push_str(&format!("<Latest>{}</Latest>", block_id(upload_id, p.index)));
        }
        xml.push_str("</BlockList>");
        let mut headers = vec![("content-type".to_string(), "application/xml".to_string())];
        headers.extend(attr_headers(attrs));
        headers.extend(self.write_headers(attrs.storage_class.as_deref()));
        let url = format!("{}?comp=blocklist", self.blob_url(full_key));
        let resp = self.send("put block list", key, http::Method::PUT, url, headers, Bytes::from(xml)).await?;
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok());
        // A version id only where the account keeps blob versions.
        Ok(PutReceipt { etag: header("etag").map(crate::unquote), version: header("x-ms-version-id").map(str::to_string) })
    }
}

/// Azure's MD5 of a range is given for ranges of at most 4 MiB.
const MD5_RANGE: u64 = 4 << 20;

/// The longest Get Block List answer read.
const MAX_BLOCK_LIST: usize = 64 << 20;

fn md5_b64(data: &[u8]) -> String {
    use md5::Digest;
    B64.encode(md5::Md5::digest(data))
}

/// The headers that write `attrs` with a blob: its properties, its metadata under names mapped
/// to C# identifiers ([`azure_name`]; a name that has none was named by `fit` and is not
/// here), its index tags.
fn attr_headers(attrs: &PutAttrs) -> Vec<(String, String)> {
    let mut headers = Vec::new();
    if let Some(ct) = &attrs.content_type {
        headers.push(("x-ms-blob-content-type".into(), ct.clone()));
    }
    let h = &attrs.headers;
    for (name, value) in [
        ("x-ms-blob-content-encoding", &h.content_encoding),
        ("x-ms-blob-content-disposition", &h.content_disposition),
        ("x-ms-blob-content-language", &h.content_language),
        ("x-ms-blob-cache-control", &h.cache_control),
    ] {
        if let Some(v) = value {
            headers.push((name.to_string(), v.clone()));
        }
    }
    for (k, v) in &attrs.metadata {
        if let Some(name) = azure_name(k) {
            headers.push((format!("x-ms-meta-{name}"), v.clone()));
        }
    }
    if let Some(tags) = attrs.tags.as_ref().filter(|t| !t.is_empty()) {
        headers.push(("x-ms-tags".into(), url::form_urlencoded::Serializer::new(String::new()).extend_pairs(tags.iter()).finish()));
    }
    headers
}

/// `(key, value)` of each `<Tag>` in a Get Blob Tags answer.
pub(super) fn tags_in(xml: &str) -> Tags {
    let tag = |s: &str, name: &str| -> Option<String> {
        let open = format!("<{name}>");
        let start = s.find(&open)? + open.len();
        let end = s[start..].find(&format!("</{name}>"))? + start;
        Some(unescape_xml(&s[start..end]))
    };
    xml.split("<Tag>").skip(1).filter_map(|t| Some((tag(t, "Key")?, tag(t, "Value")?))).collect()
}

fn unescape_xml(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

/// Reads one ranged answer and checks it: the range asked for (`start..want_end`, or to the
/// blob's end), every byte of it, and the MD5 Azure gave for it. Returns the bytes, the
/// answer's headers and the blob's size, or why the read must be repeated.
/// A failed ranged read's kind and what happened (for a checksum mismatch, without the
/// words `checksum mismatch`, which the error adds).
type ReadFailure = (FailureKind, String);

async fn read_checked(
    pool: &ferry_core::buffers::BufferPool,
    resp: reqwest::Response,
    start: u64,
    want_end: u64,
) -> std::result::Result<(Bytes, http::HeaderMap, u64), ReadFailure> {
    let head = resp.headers().clone();
    let total = head
        .get("content-range")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit('/').next())
        .and_then(|t| t.parse::<u64>().ok())
        .ok_or((FailureKind::Connection, "connection dropped: the answer has no Content-Range".to_string()))?;
    let md5 = head.get("content-md5").and_then(|v| v.to_str().ok()).map(str::to_string);
    let data = crate::http::read_body(pool, resp)
        .await
        .map_err(|e| (FailureKind::Connection, format!("connection dropped while reading: {}", crate::error::chain(&e))))?;
    let expected = want_end.min(total).saturating_sub(start);
    if data.len() as u64 != expected {
        return Err((FailureKind::ShortRead, format!("short read: {} of {expected} bytes at offset {start}", data.len())));
    }
    match md5 {
        Some(md5) if md5 != md5_b64(&data) => {
            Err((FailureKind::CorruptedInTransit, format!("bytes {start}+{} have MD5 {}, Azure says {md5}", data.len(), md5_b64(&data))))
        }
        Some(_) => Ok((data, head, total)),
        None => Err((FailureKind::Other, "the answer carries no MD5 of the range".to_string())),
    }
}

/// `(name, size)` of each `<Block>` in a Get Block List answer.
fn blocks_in(xml: &str) -> Vec<(String, u64)> {
    let tag = |s: &str, name: &str| -> Option<String> {
        let open = format!("<{name}>");
        let start = s.find(&open)? + open.len();
        let end = s[start..].find(&format!("</{name}>"))? + start;
        Some(s[start..end].to_string())
    };
    xml.split("<Block>").skip(1).filter_map(|block| Some((tag(block, "Name")?, tag(block, "Size")?.trim().parse().ok()?))).collect()
}

pub(super) fn map_error(endpoint: &str, container: &str, op: &'static str, key: &str, e: object_store::Error) -> ProviderError {
    let text = crate::error::chain(&e);
    match e {
        object_store::Error::NotFound { .. } if text.contains("ContainerNotFound") => {
            ProviderError::NoSuchBucket { provider: PROVIDER, bucket: container.to_string() }
        }
        object_store::Error::NotFound { .. } => ProviderError::NotFound { provider: PROVIDER, key: key.to_string() },
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
            ProviderError::Denied { provider: PROVIDER, bucket: container.to_string(), detail: first_line(&text) }
        }
        _ if text.contains("ContainerNotFound") => ProviderError::NoSuchBucket { provider: PROVIDER, bucket: container.to_string() },
        _ if text.contains("AuthenticationFailed") || text.contains("AuthorizationFailure") => {
            ProviderError::Denied { provider: PROVIDER, bucket: container.to_string(), detail: first_line(&text) }
        }
        _ if text.contains("error sending request") || text.contains("onnection refused") || text.contains("dns error") => {
            ProviderError::Unreachable { provider: PROVIDER, endpoint: endpoint.to_string(), detail: first_line(&text) }
        }
        object_store::Error::InvalidPath { .. } => ProviderError::BadKey { provider: PROVIDER, key: key.to_string(), reason: text },
        _ => {
            let detail = first_line(&text);
            ProviderError::Request {
                provider: PROVIDER,
                op,
                key: key.to_string(),
                detail,
                class: ErrorClass::Retryable,
                kind: FailureKind::Other,
            }
        }
    }
}

pub(super) fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().chars().take(300).collect()
}

pub(super) fn entry_from(key: &str, meta: &object_store::ObjectMeta, attrs: &Attributes) -> ObjectEntry {
    let mut e = ObjectEntry {
        key: key.to_string(),
        size: meta.size,
        last_modified: Some(meta.last_modified),
        etag: meta.e_tag.as_deref().map(crate::unquote),
        version: meta.version.clone(),
        ..Default::default()
    };
    for (k, v) in attrs {
        match k {
            Attribute::ContentType => e.content_type = Some(v.to_string()),
            Attribute::Metadata(name) => {
                e.metadata.insert(name.to_string(), v.to_string());
            }
            _ => {}
        }
    }
    e
}

/// The object a GET answer describes: `total` bytes, with the answer's entity tag, time, version,
/// content type and metadata.
pub(super) fn entry_from_headers(key: &str, head: &http::HeaderMap, total: u64) -> ObjectEntry {
    let text = |name: &str| head.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    ObjectEntry {
        key: key.to_string(),
        size: total,
        last_modified: text("last-modified")
            .and_then(|t| chrono::DateTime::parse_from_rfc2822(&t).ok())
            .map(|t| t.with_timezone(&chrono::Utc)),
        etag: text("etag").as_deref().map(crate::unquote),
        version: text("x-ms-version-id"),
        content_type: text("content-type"),
        metadata: head
            .iter()
            .filter_map(|(k, v)| Some((from_azure_name(k.as_str().strip_prefix("x-ms-meta-")?), v.to_str().ok()?.to_string())))
            .collect(),
        headers: Headers {
            content_encoding: text("content-encoding"),
            content_disposition: text("content-disposition"),
            content_language: text("content-language"),
            cache_control: text("cache-control"),
            expires: None,
        },
        // Properties (a HEAD) name the access tier; a read's answer does not.
        storage_class: text("x-ms-access-tier").map(|tier| access_tier(&tier, text("x-ms-archive-status").as_deref())),
        // The answer counts the blob's index tags; one Get Blob Tags reads them when wanted.
        tags: match text("x-ms-tag-count").and_then(|n| n.parse::<u32>().ok()) {
            Some(n) if n > 0 => None,
            _ => Some(Tags::new()),
        },
        ..Default::default()
    }
}

/// A blob's access tier as its storage class: an `Archive` blob must be rehydrated before it
/// can be read (`x-ms-archive-status: rehydrate-pending-to-…` while that is under way); `Hot`,
/// `Cool`, `Cold` are read like any object. A rehydrated blob is in its new tier: online.
pub(super) fn access_tier(tier: &str, archive_status: Option<&str>) -> ferry_core::StorageClass {
    use ferry_core::ArchiveState;
    let state = match (tier.eq_ignore_ascii_case("Archive"), archive_status) {
        (false, _) => ArchiveState::Online,
        (true, Some(s)) if s.starts_with("rehydrate-pending") => ArchiveState::Restoring,
        (true, _) => ArchiveState::Archived,
    };
    ferry_core::StorageClass { name: tier.to_string(), state }
}

/// The tier an Archive blob is rehydrated to for `--archived restore`: Cool, the cheaper
/// online tier to keep what a migration reads once (rehydration changes the source blob's tier
/// for good; Hot would bill more each month it stays).
pub(super) const REHYDRATE_TO: &str = "Cool";

/// A blob as its properties (HEAD) describe it, with its stored Content-MD5 where it has one.
pub(super) fn blob_entry(key: &str, head: &http::HeaderMap) -> ObjectEntry {
    let size = head.get("content-length").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(0);
    let md5 = head.get("content-md5").and_then(|v| v.to_str().ok()).and_then(|b64| B64.decode(b64).ok()).map(hex::encode);
    ObjectEntry { checksums: Checksums { md5, ..Checksums::default() }, ..entry_from_headers(key, head, size) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_ids_have_one_length_and_parse_back() {
        let a = block_id("0123456789abcdef0123456789abcdef", 0);
        let b = block_id("0123456789abcdef0123456789abcdef", 49_999);
        assert_eq!(a.len(), b.len());
        assert_eq!(parse_block_id(&b), Some(("0123456789abcdef0123456789abcdef".to_string(), 49_999)));
    }

    #[test]
    fn archive_blobs_need_a_rehydration() {
        use ferry_core::ArchiveState;
        assert_eq!(access_tier("Hot", None).state, ArchiveState::Online);
        assert_eq!(access_tier("Cool", Some("rehydrate-pending-to-hot")).state, ArchiveState::Online);
        assert_eq!(access_tier("Archive", None).state, ArchiveState::Archived);
        assert_eq!(access_tier("Archive", Some("rehydrate-pending-to-cool")).state, ArchiveState::Restoring);
        assert_eq!(access_tier("Archive", None).name, "Archive");
    }

    #[test]
    fn reads_blob_tags() {
        let xml = "<?xml version=\"1.0\"?><Tags><TagSet><Tag><Key>team</Key><Value>a &amp; b</Value></Tag><Tag><Key>tier</Key><Value>gold</Value></Tag></TagSet></Tags>";
        assert_eq!(tags_in(xml), Tags::from([("team".into(), "a & b".into()), ("tier".into(), "gold".into())]));
    }

    #[test]
    fn reads_a_block_list() {
        let xml = "<?xml version=\"1.0\"?><BlockList><CommittedBlocks/><UncommittedBlocks><Block><Name>QQ==</Name><Size>5</Size></Block><Block><Name>Qg==</Name><Size>7</Size></Block></UncommittedBlocks></BlockList>";
        assert_eq!(blocks_in(xml), vec![("QQ==".to_string(), 5), ("Qg==".to_string(), 7)]);
    }
}
