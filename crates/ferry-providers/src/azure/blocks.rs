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
use object_store::azure::{AzureAuthorizer, AzureCredentialProvider};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

const PROVIDER: &str = "azure";
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
const ATTEMPTS: u32 = 4;

pub(super) struct BlockClient {
    pub http: reqwest::Client,
    pub credentials: AzureCredentialProvider,
    pub account: String,
    /// `https://ACCOUNT.blob.core.windows.net/CONTAINER` or the emulator's path-style equivalent.
    pub container_url: String,
    pub endpoint: String,
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
        let peer = crate::http::Peer { provider: PROVIDER, bucket: &self.container_url, endpoint: &self.endpoint };
        crate::http::send_retrying(&peer, op, key, ATTEMPTS, || async {
            Ok(self.signed(&method, &url, &headers, &body).await?.send().await)
        })
        .await
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
            bucket: self.container_url.clone(),
            detail: e.to_string(),
        })?;
        let mut req = http::Request::builder().method(method.clone()).uri(url);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        if !body.is_empty() {
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

    pub async fn put_block(&self, full_key: &str, key: &str, block_id: &str, data: Bytes) -> Result<()> {
        let url = format!("{}?comp=block&blockid={}", self.blob_url(full_key), utf8_percent_encode(block_id, UNRESERVED));
        self.send("put block", key, http::Method::PUT, url, Vec::new(), data).await?;
        Ok(())
    }

    /// The uncommitted blocks of `full_key` that belong to `upload_id`: `(index, size)`.
    pub async fn uncommitted(&self, full_key: &str, key: &str, upload_id: &str) -> Result<Vec<(u32, u64)>> {
        let url = format!("{}?comp=blocklist&blocklisttype=uncommitted", self.blob_url(full_key));
        let text = match self.send("get block list", key, http::Method::GET, url, Vec::new(), Bytes::new()).await {
            Ok(resp) => resp.text().await.unwrap_or_default(),
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
        if let Some(ct) = &attrs.content_type {
            headers.push(("x-ms-blob-content-type".into(), ct.clone()));
        }
        for (k, v) in &attrs.metadata {
            headers.push((format!("x-ms-meta-{k}"), v.clone()));
        }
        let url = format!("{}?comp=blocklist", self.blob_url(full_key));
        let resp = self.send("put block list", key, http::Method::PUT, url, headers, Bytes::from(xml)).await?;
        let etag = resp.headers().get("etag").and_then(|v| v.to_str().ok()).map(crate::unquote);
        Ok(PutReceipt { etag })
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
    fn reads_a_block_list() {
        let xml = "<?xml version=\"1.0\"?><BlockList><CommittedBlocks/><UncommittedBlocks><Block><Name>QQ==</Name><Size>5</Size></Block><Block><Name>Qg==</Name><Size>7</Size></Block></UncommittedBlocks></BlockList>";
        assert_eq!(blocks_in(xml), vec![("QQ==".to_string(), 5), ("Qg==".to_string(), 7)]);
    }
}
