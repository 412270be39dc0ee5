//! Azure Blob Storage (and Azurite), on object_store.
//!
//! Credentials come from object_store's Azure chain (`AZURE_STORAGE_ACCOUNT_NAME`,
//! `AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_STORAGE_SAS_TOKEN`, service principals, managed identity,
//! `AZURE_STORAGE_USE_EMULATOR` with `AZURITE_BLOB_STORAGE_URL`). An explicit endpoint such as
//! `http://127.0.0.1:10000` with no account configured means Azurite: its published development
//! account is used and appended to the URL path.
//!
//! Listing, HEAD and delete go through object_store. Bytes move through ferry's own signed
//! requests (`client.rs`) so each carries an MD5 Azure checks: a small blob is one Put Blob with
//! its Content-MD5, a large one blocks in parallel (each with its MD5) committed by one Put Block
//! List that also sets content type and metadata; reads come in ranges of at most 4 MiB, each
//! checked against the MD5 Azure computes for that range and all but the first conditional on
//! the first's entity tag (one version, never two stitched), and the whole is proved against the
//! blob's own Content-MD5 where it has one.
//!
//! One URL for everything: the account URL is resolved once (flag, emulator variables,
//! endpoint setting, or the public endpoint) and given to object_store and the block client
//! alike.
//!
//! # Layout
//! - `mod.rs`: [`AzureProvider`], its constructor and the [`Provider`] methods.
//! - `config.rs`: the one account URL, from the flag, the emulator variables or the account.
//! - `client.rs`: ferry's own signed requests (blocks, ranged reads with MD5, copy), errors
//!   mapped, answers read into entries.
//! - `list.rs`: the listing through object_store.
//! - `multipart.rs`: [`Multipart`] as uncommitted blocks with ferry's block ids.
//! - `server_copy.rs`: [`ServerCopy`] as Copy Blob.
//! - `transport.rs`: object_store's HTTP sent through the run's one retry layer.

mod client;
mod config;
mod list;
mod multipart;
mod server_copy;
mod transport;

use crate::{Fetched, Multipart, Provider, ProviderError, PutAttrs, PutReceipt, Result, ServerCopy};
use async_trait::async_trait;
use bytes::Bytes;
use client::{blob_entry, entry_from_headers, map_error};
use config::resolve_endpoint;
use ferry_core::headers::NameRule;
use ferry_core::{Carries, Evidence, Header, Limits, Location, ObjectEntry};
use futures::stream::BoxStream;
use object_store::azure::{MicrosoftAzure, MicrosoftAzureBuilder};
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, RetryConfig};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

const PROVIDER: &str = "azure";

/// Azure block blobs: blocks up to 4000 MiB, 50,000 blocks; 8 MiB blocks by default (as AzCopy).
pub const LIMITS: Limits =
    Limits { min_part_size: 1, max_part_size: 4000 << 20, max_parts: 50_000, max_object_size: 190_700 << 30, default_part_size: 8 << 20 };

/// The registry's opener (see [`crate::REGISTRY`]).
pub(crate) fn open(
    location: &Location,
    connect: &crate::Connect,
    run: &std::sync::Arc<crate::RunContext>,
) -> futures::future::BoxFuture<'static, Result<std::sync::Arc<dyn Provider>>> {
    let (location, connect, run) = (location.clone(), connect.clone(), run.clone());
    Box::pin(async move {
        let provider: std::sync::Arc<dyn Provider> = std::sync::Arc::new(AzureProvider::new(location, &connect, &run)?);
        Ok(provider)
    })
}

pub struct AzureProvider {
    /// How this location is reached (names only), compared with a source's for server-side copy.
    connect: crate::Connect,
    location: Location,
    store: Arc<MicrosoftAzure>,
    endpoint: String,
    blocks: Arc<client::BlockClient>,
}

impl AzureProvider {
    pub fn new(location: Location, connect: &crate::Connect, run: &Arc<crate::RunContext>) -> Result<AzureProvider> {
        // One retry layer: object_store's requests (listing, container check, deletes) are
        // retried by ferry's, through the connector (`transport.rs`), never by object_store.
        let retry = RetryConfig { max_retries: 0, ..Default::default() };
        let builder = MicrosoftAzureBuilder::from_env()
            .with_container_name(&location.bucket)
            .with_retry(retry)
            .with_http_connector(transport::Layered { run: run.clone() });
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
        let blocks = Arc::new(client::BlockClient {
            http,
            credentials: store.credentials().clone(),
            account,
            container_url: format!("{account_url}/{}", location.bucket),
            container: location.bucket.clone(),
            endpoint: endpoint.clone(),
            access_tier: connect.write.storage_class.clone(),
            encryption_scope: connect.write.azure_encryption_scope.clone(),
            run: run.clone(),
        });
        Ok(AzureProvider { location, store: Arc::new(store), endpoint, blocks, connect: connect.clone() })
    }

    fn path(&self, key: &str) -> Result<Path> {
        let full = self.location.key_for(key);
        Path::parse(&full).map_err(|e| ProviderError::BadKey { provider: PROVIDER, key: key.to_string(), reason: e.to_string() })
    }

    fn error(&self, op: &'static str, key: &str, e: object_store::Error) -> ProviderError {
        map_error(&self.endpoint, &self.location.bucket, op, key, e)
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
        LIMITS
    }

    async fn check(&self, _for_write: bool) -> Result<()> {
        let prefix = self.path("")?;
        let prefix = (!self.location.prefix.is_empty()).then_some(prefix);
        self.store.list_with_delimiter(prefix.as_ref()).await.map(|_| ()).map_err(|e| self.error("list", "", e))
    }

    fn list(&self) -> BoxStream<'_, Result<Vec<ObjectEntry>>> {
        self.listing()
    }
    async fn head(&self, key: &str) -> Result<Option<ObjectEntry>> {
        self.path(key)?;
        let head = self.blocks.properties(None, &self.location.key_for(key), key).await?;
        Ok(head.map(|h| blob_entry(key, &h)))
    }

    /// A blob that declares a whole-object Content-MD5 (HEAD's, in `object.checksums.md5`): the bytes read
    /// in parts, in order, must hash to it.
    async fn etag_check(&self, object: &ObjectEntry) -> Result<Option<ferry_core::Md5Etag>> {
        Ok(object.checksums.md5.as_deref().and_then(|md5| ferry_core::Md5Etag::new(md5, object.size, None)))
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Fetched> {
        self.path(key)?;
        let full = self.location.key_for(key);
        let (data, head, total) = self.blocks.get_checked(&full, key, range.filter(|r| r.end > r.start)).await?;
        Ok(Fetched { data, object: entry_from_headers(key, &head, total), checked: Some(Evidence::SourceMd5) })
    }

    /// Rehydrates an Archive blob (Set Blob Tier to Cool): `expedited` is Azure's High
    /// priority, `standard` and `bulk` its Standard (Azure has nothing slower). The blob stays
    /// in Cool at the source; `request.days` has no meaning here (a rehydration is for good).
    async fn restore(
        &self,
        key: &str,
        _class: &ferry_core::StorageClass,
        request: &ferry_core::RestoreRequest,
    ) -> Result<Option<ferry_core::RestoreTier>> {
        self.path(key)?;
        let priority = match request.tier {
            ferry_core::RestoreTier::Expedited => "High",
            ferry_core::RestoreTier::Standard | ferry_core::RestoreTier::Bulk => "Standard",
        };
        self.blocks.rehydrate(&self.location.key_for(key), key, priority).await?;
        Ok(Some(request.tier))
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

    fn lists_in_key_order(&self) -> bool {
        true
    }

    fn carries(&self) -> Carries {
        CARRIES
    }

    async fn tags(&self, key: &str) -> Result<ferry_core::Tags> {
        self.path(key)?;
        self.blocks.tags(None, &self.location.key_for(key), key).await
    }

    fn server_copy(&self) -> Option<&dyn ServerCopy> {
        Some(self)
    }

    fn multipart(&self) -> Option<&dyn Multipart> {
        Some(self)
    }
}

/// What Azure keeps: Content-Type and four headers (it has no Expires), index tags, and
/// metadata whose names must be C# identifiers (other names are escaped, see
/// [`ferry_core::headers::azure_name`]) and whose values are header values (printable ASCII).
/// Blob index tags: at most 10, keys of 1–128 and values of 0–256 characters among ASCII
/// letters, digits, space and `+ - . / : = _`.
pub const CARRIES: Carries = Carries {
    metadata: true,
    headers: &[Header::ContentEncoding, Header::ContentDisposition, Header::ContentLanguage, Header::CacheControl],
    tags: true,
    tag_limits: ferry_core::TagLimits {
        max_tags: 10,
        max_key_chars: 128,
        max_value_chars: 256,
        symbols: Some("+-./:=_"),
        unicode_letters: false,
    },
    names: NameRule::Identifier,
    ascii_values: true,
};
