//! The JSON API client: requests with retries and credentials, answers as typed objects.

use crate::{ProviderError, PutAttrs, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use ferry_core::{Checksums, ErrorClass, FailureKind, Headers, ObjectEntry, Tags};
use google_cloud_auth::credentials::{CacheableResource, Credentials};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

use super::*;

/// The longest JSON answer read (a page of 1000 objects with metadata is a few MB).
pub(super) const MAX_JSON: usize = 64 << 20;

pub(super) const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

pub(super) fn enc(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

#[derive(Clone)]
pub(super) struct Client {
    pub(super) http: reqwest::Client,
    pub(super) base: String,
    pub(super) bucket: String,
    pub(super) creds: Option<Credentials>,
    pub(super) endpoint: String,
    /// The class the objects ferry writes are stored in (`--storage-class`); `None`: the
    /// bucket's default. Part objects of a composite upload keep the default: they live minutes.
    pub(super) storage_class: Option<String>,
    /// The Cloud KMS key objects ferry writes are encrypted with (`--gcs-kms-key`).
    pub(super) kms_key: Option<String>,
    /// The run whose pace, counts and buffers the requests use.
    pub(super) run: std::sync::Arc<crate::RunContext>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct GcsObject {
    pub(super) name: String,
    #[serde(default)]
    pub(super) size: Option<String>,
    pub(super) updated: Option<DateTime<Utc>>,
    pub(super) time_created: Option<DateTime<Utc>>,
    pub(super) etag: Option<String>,
    pub(super) generation: Option<String>,
    pub(super) crc32c: Option<String>,
    pub(super) md5_hash: Option<String>,
    pub(super) content_type: Option<String>,
    pub(super) content_encoding: Option<String>,
    pub(super) content_disposition: Option<String>,
    pub(super) content_language: Option<String>,
    pub(super) cache_control: Option<String>,
    #[serde(default)]
    pub(super) metadata: BTreeMap<String, String>,
    /// `STANDARD`, `NEARLINE`, `COLDLINE`, `ARCHIVE`: every one read without a restore.
    pub(super) storage_class: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListPage {
    #[serde(default)]
    pub(super) items: Vec<GcsObject>,
    pub(super) next_page_token: Option<String>,
}

/// Writes `attrs` into an object resource (a JSON upload's metadata part, a compose's
/// destination): Content-Type, the headers GCS has (no Expires), user metadata.
pub(super) fn set_attrs(resource: &mut serde_json::Value, attrs: &PutAttrs) {
    if let Some(ct) = &attrs.content_type {
        resource["contentType"] = ct.clone().into();
    }
    let h = &attrs.headers;
    for (field, value) in [
        ("contentEncoding", &h.content_encoding),
        ("contentDisposition", &h.content_disposition),
        ("contentLanguage", &h.content_language),
        ("cacheControl", &h.cache_control),
    ] {
        if let Some(v) = value {
            resource[field] = v.clone().into();
        }
    }
    if !attrs.metadata.is_empty() {
        resource["metadata"] = serde_json::to_value(&attrs.metadata).expect("map serializes");
    }
}

pub(super) fn b64_to_hex(b64: Option<&str>) -> Option<String> {
    B64.decode(b64?).ok().map(hex::encode)
}

impl GcsObject {
    pub(super) fn entry(self, key: String) -> ObjectEntry {
        ObjectEntry {
            key,
            size: self.size.and_then(|s| s.parse().ok()).unwrap_or(0),
            last_modified: self.updated,
            etag: self.etag,
            version: self.generation,
            checksums: Checksums {
                crc32c: b64_to_hex(self.crc32c.as_deref()),
                md5: b64_to_hex(self.md5_hash.as_deref()),
                ..Checksums::default()
            },
            content_type: self.content_type,
            metadata: self.metadata,
            headers: Headers {
                content_encoding: self.content_encoding,
                content_disposition: self.content_disposition,
                content_language: self.content_language,
                cache_control: self.cache_control,
                expires: None,
            },
            // GCS has no object tags: known to be none.
            tags: Some(Tags::new()),
            storage_class: self.storage_class.map(ferry_core::StorageClass::online),
            ..ObjectEntry::default()
        }
    }
}

impl Client {
    pub(super) async fn auth(&self, req: reqwest::RequestBuilder) -> Result<reqwest::RequestBuilder> {
        let Some(creds) = &self.creds else { return Ok(req) };
        match creds.headers(http::Extensions::new()).await {
            Ok(CacheableResource::New { data, .. }) => Ok(req.headers(data)),
            Ok(CacheableResource::NotModified) => Ok(req),
            Err(e) => Err(ProviderError::Denied { provider: PROVIDER, bucket: self.bucket.clone(), detail: crate::error::chain(&e) }),
        }
    }

    /// Sends a request built by `build` through the run's one retry layer. Answers 2xx as
    /// `Ok`; any other status becomes a classified error.
    pub(super) async fn send(&self, op: &'static str, key: &str, build: impl Fn() -> reqwest::RequestBuilder) -> Result<reqwest::Response> {
        self.send_expecting(op, key, Some(0), build).await
    }

    /// [`Client::send`] for an answer of about `expect` bytes (`None`: unknown), which the
    /// request's time limit allows for.
    pub(super) async fn send_expecting(
        &self,
        op: &'static str,
        key: &str,
        expect: Option<u64>,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        let peer = crate::http::Peer { provider: PROVIDER, bucket: &self.bucket, endpoint: &self.endpoint };
        crate::http::send_retrying(&self.run, &peer, op, key, || async {
            match self.auth(build()).await?.build() {
                Ok(req) => Ok(crate::http::execute_timed(&self.http, req, expect).await),
                Err(e) => Ok(Err(e)),
            }
        })
        .await
    }

    pub(super) fn object_url(&self, name: &str) -> String {
        format!("{}/storage/v1/b/{}/o/{}", self.base, enc(&self.bucket), enc(name))
    }

    /// The answer's JSON (a listing page or an object's description: never more than
    /// [`MAX_JSON`] bytes is read).
    pub(super) async fn json<T: for<'de> Deserialize<'de>>(&self, op: &'static str, key: &str, resp: reqwest::Response) -> Result<T> {
        let failed = |(kind, detail): (FailureKind, String)| ProviderError::Request {
            provider: PROVIDER,
            op,
            key: key.to_string(),
            detail,
            // The request was answered; its answer was cut or garbled on the way.
            class: ErrorClass::Restart,
            kind,
        };
        let body = crate::http::read_limited(resp, MAX_JSON).await.map_err(failed)?;
        serde_json::from_slice(&body).map_err(|e| failed((FailureKind::Other, format!("unreadable answer: {e}"))))
    }

    pub(super) async fn upload_media(&self, name: &str, data: Bytes) -> Result<GcsObject> {
        let url = format!("{}/upload/storage/v1/b/{}/o", self.base, enc(&self.bucket));
        let resp = self
            .send("upload part", name, || {
                self.http
                    .post(&url)
                    .query(&[("uploadType", "media"), ("name", name)])
                    .header("content-type", "application/octet-stream")
                    .body(data.clone())
            })
            .await?;
        self.json("upload part", name, resp).await
    }

    /// One page (up to 1000 objects) of the names starting with `prefix`, after `token`.
    pub(super) async fn list_page(&self, prefix: &str, token: Option<&str>) -> Result<ListPage> {
        let url = format!("{}/storage/v1/b/{}/o", self.base, enc(&self.bucket));
        let resp = self
            .send("list", prefix, || {
                let mut q = vec![("prefix", prefix), ("maxResults", "1000")];
                if let Some(t) = token {
                    q.push(("pageToken", t));
                }
                self.http.get(&url).query(&q)
            })
            .await?;
        self.json("list", prefix, resp).await
    }

    /// One page of every generation (live and noncurrent) of the names starting with `prefix`,
    /// after `token` (`versions=true`).
    pub(super) async fn list_versions_page(&self, prefix: &str, token: Option<&str>) -> Result<ListPage> {
        let url = format!("{}/storage/v1/b/{}/o", self.base, enc(&self.bucket));
        let resp = self
            .send("list versions", prefix, || {
                let mut q = vec![("prefix", prefix), ("maxResults", "1000"), ("versions", "true")];
                if let Some(t) = token {
                    q.push(("pageToken", t));
                }
                self.http.get(&url).query(&q)
            })
            .await?;
        self.json("list versions", prefix, resp).await
    }

    /// Every object whose name starts with `prefix` (all pages).
    pub(super) async fn list_prefix(&self, prefix: &str) -> Result<Vec<GcsObject>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self.list_page(prefix, token.as_deref()).await?;
            out.extend(page.items);
            match page.next_page_token {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    pub(super) async fn delete(&self, name: &str) -> Result<()> {
        match self.send("delete", name, || self.http.delete(self.object_url(name))).await {
            Ok(_) | Err(ProviderError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub(super) async fn compose(&self, dest: &str, sources: &[String], attrs: Option<&PutAttrs>) -> Result<GcsObject> {
        let mut destination = serde_json::json!({});
        // Only the final compose makes the object; intermediate ones are removed with the parts.
        if let Some(a) = attrs {
            set_attrs(&mut destination, a);
            self.set_class(&mut destination, a.storage_class.as_deref());
        }
        let body = serde_json::json!({
            "sourceObjects": sources.iter().map(|n| serde_json::json!({"name": n})).collect::<Vec<_>>(),
            "destination": destination,
        });
        let url = format!("{}/compose", self.object_url(dest));
        // The final compose makes the object: it is encrypted with the key asked for.
        let kms: Vec<(&str, &str)> = attrs.and(self.kms_key.as_deref()).map(|k| ("kmsKeyName", k)).into_iter().collect();
        let resp = self.send("compose", dest, || self.http.post(&url).query(&kms).json(&body)).await?;
        self.json("compose", dest, resp).await
    }
}

impl Client {
    /// Asks for `class` (this object's), else the `--storage-class`, in an object resource
    /// about to be written.
    pub(super) fn set_class(&self, resource: &mut serde_json::Value, class: Option<&str>) {
        if let Some(class) = class.or(self.storage_class.as_deref()) {
            resource["storageClass"] = class.into();
        }
    }

    /// The client for `bucket` through `connect`'s endpoint, else `STORAGE_EMULATOR_HOST` (an
    /// emulator, reached without credentials), else Google with Application Default Credentials.
    pub(super) fn connect(bucket: &str, connect: &crate::Connect, run: &std::sync::Arc<crate::RunContext>) -> Result<Client> {
        let emulator = connect.endpoint.clone().or_else(|| std::env::var("STORAGE_EMULATOR_HOST").ok().filter(|s| !s.is_empty()));
        let (base, creds) = match &emulator {
            Some(ep) => {
                let ep = if ep.contains("://") { ep.clone() } else { format!("http://{ep}") };
                (ep.trim_end_matches('/').to_string(), None)
            }
            None => {
                let creds = google_cloud_auth::credentials::Builder::default()
                    .build()
                    .map_err(|e| ProviderError::Config { provider: PROVIDER, detail: format!("Google credentials: {e}") })?;
                ("https://storage.googleapis.com".to_string(), Some(creds))
            }
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_secs(120))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| ProviderError::Config { provider: PROVIDER, detail: e.to_string() })?;
        let endpoint = ferry_core::location::redact(&base);
        let storage_class = connect.write.storage_class.clone();
        let kms_key = connect.write.gcs_kms_key.clone();
        Ok(Client { http, base, bucket: bucket.to_string(), creds, endpoint, storage_class, kms_key, run: run.clone() })
    }
}

/// GCS answers an upload with the CRC32C of what it stored: it must be the one ferry sent, or
/// the bytes were corrupted on the way (sending them again is the repair).
pub(super) fn stored_as_sent(o: &GcsObject, crc32c: u32, op: &'static str, name: &str) -> Result<()> {
    let sent = ferry_core::digest::crc32c_hex(crc32c);
    match b64_to_hex(o.crc32c.as_deref()) {
        Some(stored) if stored != sent => Err(ProviderError::corrupted(PROVIDER, op, name, format!("stored crc32c {stored}, sent {sent}"))),
        _ => Ok(()),
    }
}
