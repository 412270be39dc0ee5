//! Azure Blob Storage (and Azurite), on object_store.
//!
//! Credentials come from object_store's Azure chain (`AZURE_STORAGE_ACCOUNT_NAME`,
//! `AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_STORAGE_SAS_TOKEN`, service principals, managed identity,
//! `AZURE_STORAGE_USE_EMULATOR` with `AZURITE_BLOB_STORAGE_URL`). An explicit endpoint such as
//! `http://127.0.0.1:10000` with no account configured means Azurite: its published development
//! account is used and appended to the URL path.
//!
//! Listing, HEAD and delete go through object_store. Bytes move through ferry's own signed
//! requests (`blocks.rs`) so each carries an MD5 Azure checks: a small blob is one Put Blob with
//! its Content-MD5, a large one blocks in parallel (each with its MD5) committed by one Put Block
//! List that also sets content type and metadata; reads come in ranges of at most 4 MiB, each
//! checked against the MD5 Azure computes for that range and all but the first conditional on
//! the first's entity tag (one version, never two stitched), and the whole is proved against the
//! blob's own Content-MD5 where it has one.
//!
//! One URL for everything: the account URL is resolved once (flag, emulator variables,
//! endpoint setting, or the public endpoint) and given to object_store and the block client
//! alike.

mod blocks;

use crate::{
    Fetched, Multipart, MultipartUpload, PartReceipt, Provider, ProviderError, PutAttrs, PutReceipt, Result, ServerCopied, ServerCopy,
};
use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use ferry_core::{ErrorClass, Limits, Location, ObjectEntry};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::azure::{AzureConfigKey, MicrosoftAzure, MicrosoftAzureBuilder};
use object_store::path::Path;
use object_store::{Attribute, Attributes, ClientOptions, ObjectStore, RetryConfig};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

const PROVIDER: &str = "azure";
/// Azurite's development storage account, published by Microsoft for the emulator (not a secret).
const EMULATOR_ACCOUNT: &str = "devstoreaccount1";
const EMULATOR_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

pub struct AzureProvider {
    location: Location,
    store: Arc<MicrosoftAzure>,
    endpoint: String,
    blocks: Arc<blocks::BlockClient>,
}

impl AzureProvider {
    pub fn new(location: Location, connect: &crate::Connect) -> Result<AzureProvider> {
        let retry = RetryConfig { max_retries: 5, retry_timeout: Duration::from_secs(60), ..Default::default() };
        let builder = MicrosoftAzureBuilder::from_env().with_container_name(&location.bucket).with_retry(retry);
        let (builder, account, account_url, endpoint) = resolve_endpoint(builder, connect.endpoint.as_deref())?;
        let options = ClientOptions::new().with_connect_timeout(Duration::from_secs(5)).with_timeout(Duration::from_secs(300));
        let http_allowed = account_url.starts_with("http://");
        let store = builder
            .with_allow_http(http_allowed)
            .with_client_options(options.with_allow_http(http_allowed))
            .build()
            .map_err(|e| ProviderError::Config { provider: PROVIDER, detail: crate::error::chain(&e) })?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| ProviderError::Config { provider: PROVIDER, detail: e.to_string() })?;
        let blocks = Arc::new(blocks::BlockClient {
            http,
            credentials: store.credentials().clone(),
            account,
            container_url: format!("{account_url}/{}", location.bucket),
            container: location.bucket.clone(),
            endpoint: endpoint.clone(),
        });
        Ok(AzureProvider { location, store: Arc::new(store), endpoint, blocks })
    }

    fn path(&self, key: &str) -> Result<Path> {
        let full = self.location.key_for(key);
        Path::parse(&full).map_err(|e| ProviderError::BadKey { provider: PROVIDER, key: key.to_string(), reason: e.to_string() })
    }

    fn error(&self, op: &'static str, key: &str, e: object_store::Error) -> ProviderError {
        map_error(&self.endpoint, &self.location.bucket, op, key, e)
    }
}

/// The account URL every request goes to, decided once from the same settings object_store
/// reads — the endpoint flag, else `AZURE_STORAGE_USE_EMULATOR` with `AZURITE_BLOB_STORAGE_URL`,
/// else `AZURE_STORAGE_ENDPOINT`, else the account's public (or Fabric) endpoint — and handed to
/// object_store as its endpoint, so its requests (listing, delete) and ferry's own block
/// requests cannot disagree. The emulator (by flag or variable) with no account named means
/// Azurite's published development account. Returns the builder set to that URL, the account,
/// the URL, and the endpoint to name in messages (redacted).
fn resolve_endpoint(builder: MicrosoftAzureBuilder, flag: Option<&str>) -> Result<(MicrosoftAzureBuilder, String, String, String)> {
    let config = |key: AzureConfigKey| builder.get_config_value(&key).filter(|v| !v.is_empty());
    let truthy =
        |key: AzureConfigKey| config(key).is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "on" | "yes" | "y"));
    let named = config(AzureConfigKey::AccountName);
    let emulator = flag.is_none() && truthy(AzureConfigKey::UseEmulator);
    let (account_url, endpoint, development) = match flag {
        Some(ep) => {
            let url = ep.trim_end_matches('/');
            let url =
                if named.is_some() || url.ends_with(EMULATOR_ACCOUNT) { url.to_string() } else { format!("{url}/{EMULATOR_ACCOUNT}") };
            (url, ferry_core::location::redact(ep), named.is_none())
        }
        None if emulator => {
            let base = std::env::var("AZURITE_BLOB_STORAGE_URL").ok().filter(|u| !u.is_empty());
            let base = base.as_deref().unwrap_or("http://127.0.0.1:10000").trim_end_matches('/').to_string();
            let account = named.clone().unwrap_or_else(|| EMULATOR_ACCOUNT.to_string());
            (format!("{base}/{account}"), ferry_core::location::redact(&base), named.is_none())
        }
        None => {
            let account = named.clone().ok_or_else(|| ProviderError::Config {
                provider: PROVIDER,
                detail: "no storage account: set AZURE_STORAGE_ACCOUNT_NAME".into(),
            })?;
            match config(AzureConfigKey::Endpoint) {
                Some(url) => {
                    let endpoint = ferry_core::location::redact(&url);
                    (url.trim_end_matches('/').to_string(), endpoint, false)
                }
                None if truthy(AzureConfigKey::UseFabricEndpoint) => {
                    (format!("https://{account}.blob.fabric.microsoft.com"), "Azure Blob Storage (Fabric)".to_string(), false)
                }
                None => (format!("https://{account}.blob.core.windows.net"), "Azure Blob Storage".to_string(), false),
            }
        }
    };
    let credential_given =
        [AzureConfigKey::AccessKey, AzureConfigKey::SasKey, AzureConfigKey::Token].into_iter().any(|k| config(k).is_some());
    let mut builder = builder.with_use_emulator(false).with_endpoint(account_url.clone());
    let account = match development {
        true => {
            // The emulator's own account, with its published key unless a credential was given
            // (as object_store's emulator mode does).
            builder = builder.with_account(EMULATOR_ACCOUNT);
            if !credential_given {
                builder = builder.with_access_key(EMULATOR_KEY);
            }
            EMULATOR_ACCOUNT.to_string()
        }
        false => named.unwrap_or_else(|| EMULATOR_ACCOUNT.to_string()),
    };
    Ok((builder, account, account_url, endpoint))
}

fn map_error(endpoint: &str, container: &str, op: &'static str, key: &str, e: object_store::Error) -> ProviderError {
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
            ProviderError::Request { provider: PROVIDER, op, key: key.to_string(), detail: first_line(&text), class: ErrorClass::Retryable }
        }
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().chars().take(300).collect()
}

fn entry_from(key: &str, meta: &object_store::ObjectMeta, attrs: &Attributes) -> ObjectEntry {
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
fn entry_from_headers(key: &str, head: &http::HeaderMap, total: u64) -> ObjectEntry {
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
            .filter_map(|(k, v)| Some((k.as_str().strip_prefix("x-ms-meta-")?.to_string(), v.to_str().ok()?.to_string())))
            .collect(),
        ..Default::default()
    }
}

/// A blob as its properties (HEAD) describe it, with its stored Content-MD5 where it has one.
fn blob_entry(key: &str, head: &http::HeaderMap) -> ObjectEntry {
    let size = head.get("content-length").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(0);
    let md5 = head.get("content-md5").and_then(|v| v.to_str().ok()).and_then(|b64| B64.decode(b64).ok()).map(hex::encode);
    ObjectEntry { md5, ..entry_from_headers(key, head, size) }
}

#[async_trait]
impl ServerCopy for AzureProvider {
    async fn copy_from(
        &self,
        source: &Location,
        object: &ObjectEntry,
        _part_size: u64,
        _started: &(dyn for<'s> Fn(&'s str) -> Result<()> + Sync),
    ) -> Result<ServerCopied> {
        let key = object.key.as_str();
        self.path(key)?;
        let head =
            self.blocks.copy_blob(&self.location.key_for(key), key, &source.bucket, &source.key_for(key), object.etag.as_deref()).await?;
        let copy = blob_entry(key, &head);
        Ok(ServerCopied { etag: copy.etag, md5: copy.md5, crc32c: None, crc64nvme: None, parts: 0 })
    }
}

#[async_trait]
impl Provider for AzureProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    fn location(&self) -> &Location {
        &self.location
    }

    fn limits(&self) -> Limits {
        Limits::AZURE
    }

    async fn check(&self, _for_write: bool) -> Result<()> {
        let prefix = self.path("")?;
        let prefix = (!self.location.prefix.is_empty()).then_some(prefix);
        self.store.list_with_delimiter(prefix.as_ref()).await.map(|_| ()).map_err(|e| self.error("list", "", e))
    }

    fn list(&self) -> BoxStream<'_, Result<Vec<ObjectEntry>>> {
        // Path::parse keeps the prefix as given (Path::from would percent-encode `%` or `#`).
        let prefix = match Path::parse(self.location.prefix.trim_end_matches('/')) {
            Ok(p) => (!self.location.prefix.is_empty()).then_some(p),
            Err(e) => {
                let err = ProviderError::BadKey { provider: PROVIDER, key: self.location.prefix.clone(), reason: e.to_string() };
                return futures::stream::once(async move { Err(err) }).boxed();
            }
        };
        let strip = self.location.prefix.len();
        self.store
            .list(prefix.as_ref())
            .map_err(|e| self.error("list", "", e))
            .map_ok(move |m| {
                let key = m.location.as_ref().get(strip..).unwrap_or_default().to_string();
                entry_from(&key, &m, &Attributes::new())
            })
            .try_chunks(1000)
            .map_err(|e| e.1)
            .boxed()
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectEntry>> {
        self.path(key)?;
        let head = self.blocks.properties(None, &self.location.key_for(key), key).await?;
        Ok(head.map(|h| blob_entry(key, &h)))
    }

    /// A blob that declares a whole-object Content-MD5 (HEAD's, in `object.md5`): the bytes read
    /// in parts, in order, must hash to it.
    async fn etag_check(&self, object: &ObjectEntry) -> Result<Option<ferry_core::Md5Etag>> {
        Ok(object.md5.as_deref().and_then(|md5| ferry_core::Md5Etag::new(md5, object.size, None)))
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Fetched> {
        self.path(key)?;
        let full = self.location.key_for(key);
        let (data, head, total) = self.blocks.get_checked(&full, key, range.filter(|r| r.end > r.start)).await?;
        Ok(Fetched { data, object: entry_from_headers(key, &head, total), checked: Some("source md5") })
    }

    async fn put(&self, key: &str, data: Bytes, _crc32c: u32, attrs: &PutAttrs) -> Result<PutReceipt> {
        self.path(key)?;
        self.blocks.put_blob(&self.location.key_for(key), key, data, attrs).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match object_store::ObjectStoreExt::delete(self.store.as_ref(), &path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("delete", key, e)),
        }
    }

    fn server_copy(&self) -> Option<&dyn ServerCopy> {
        Some(self)
    }

    fn multipart(&self) -> Option<&dyn Multipart> {
        Some(self)
    }
}

#[async_trait]
impl Multipart for AzureProvider {
    /// Blocks are named after the upload id, so nothing exists at Azure until the first block.
    async fn start(&self, key: &str, attrs: &PutAttrs, _size: u64, id: &str) -> Result<Box<dyn MultipartUpload>> {
        self.path(key)?;
        Ok(Box::new(self.upload(key, id, attrs)))
    }

    /// The blob's uncommitted blocks of this upload are held; a block is trusted only with the
    /// CRC32C the journal recorded for it (Azure keeps no CRC32C of a block).
    async fn resume(
        &self,
        key: &str,
        upload_id: &str,
        attrs: &PutAttrs,
        _size: u64,
        recorded: &[PartReceipt],
    ) -> Result<Option<(Box<dyn MultipartUpload>, Vec<PartReceipt>)>> {
        let full = self.location.key_for(key);
        let blocks = self.blocks.uncommitted(&full, key, upload_id).await?;
        let held = blocks
            .into_iter()
            .filter_map(|(index, size)| {
                let r = recorded.iter().find(|r| r.index == index && r.size == size)?;
                Some(PartReceipt { index, id: blocks::block_id(upload_id, index), size, crc32c: r.crc32c })
            })
            .collect();
        Ok(Some((Box::new(self.upload(key, upload_id, attrs)), held)))
    }

    /// Azure has no call to drop uncommitted blocks; it garbage-collects them after a week, and
    /// a later commit of the blob discards them.
    async fn abort_upload(&self, _key: &str, _upload_id: &str) -> Result<()> {
        Ok(())
    }

    async fn stale_uploads(&self, _before: chrono::DateTime<chrono::Utc>) -> Result<Vec<crate::OpenUpload>> {
        Err(ProviderError::Config {
            provider: PROVIDER,
            detail: "Azure keeps uncommitted blocks out of listings and deletes them after a week by itself".into(),
        })
    }
}

impl AzureProvider {
    fn upload(&self, key: &str, upload_id: &str, attrs: &PutAttrs) -> AzureUpload {
        AzureUpload {
            blocks: self.blocks.clone(),
            full_key: self.location.key_for(key),
            key: key.to_string(),
            upload_id: upload_id.to_string(),
            attrs: attrs.clone(),
        }
    }
}

/// A block blob upload with ferry's own block ids.
struct AzureUpload {
    blocks: Arc<blocks::BlockClient>,
    full_key: String,
    key: String,
    upload_id: String,
    attrs: PutAttrs,
}

#[async_trait]
impl MultipartUpload for AzureUpload {
    fn upload_id(&self) -> Option<String> {
        Some(self.upload_id.clone())
    }

    fn put_part(&mut self, index: u32, _offset: u64, data: Bytes, crc32c: u32) -> BoxFuture<'static, Result<PartReceipt>> {
        let (blocks, full_key, key) = (self.blocks.clone(), self.full_key.clone(), self.key.clone());
        let id = blocks::block_id(&self.upload_id, index);
        Box::pin(async move {
            let size = data.len() as u64;
            blocks.put_block(&full_key, &key, &id, data).await?;
            Ok(PartReceipt { index, id, size, crc32c })
        })
    }

    async fn complete(self: Box<Self>, parts: Vec<PartReceipt>) -> Result<PutReceipt> {
        self.blocks.put_block_list(&self.full_key, &self.key, &self.upload_id, &parts, &self.attrs).await
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        // Uncommitted blocks are garbage-collected by Azure after a week; nothing to delete.
        Ok(())
    }
}
