//! One adapter per storage provider behind a small trait, with optional abilities as typed
//! capabilities, and the registry that turns a [`Location`] into an adapter.
//!
//! Adapters speak relative keys (as recorded in a manifest) and map them under their location's
//! prefix themselves. Credentials come only from each provider's standard chain (environment,
//! profile, metadata server, SAS, emulator defaults); nothing here ever returns or logs one.
//!
//! # Layout
//! - [`Provider`]: list, get (whole or ranged), put, head, delete, restore (an archived
//!   object), plus [`Limits`] and what it [`Carries`] besides bytes (headers, metadata names,
//!   tags) as data, an object's tags, and its object lock (reported, never carried).
//! - [`Multipart`] / [`MultipartUpload`]: the capability to upload one object in parallel parts.
//! - [`Versions`]: the capability to keep, list and read every version of a key
//!   (`--all-versions`; S3 and GCS, in their `versions.rs`).
//! - [`s3`] (aws-sdk-s3), [`gcs`] (the JSON API over reqwest), [`azure`] (object_store and
//!   ferry's own signed block requests), [`local`] (the file system, with ferry's own multipart
//!   into a temp file). Each is a folder of the same files: `mod.rs` (the [`Provider`] impl and
//!   its constructor), `client.rs` (`fs.rs` for local; Azure adds `config.rs`: how the service
//!   is reached, requests, errors), `list.rs`, `multipart.rs`, and `server_copy.rs` where the
//!   service copies by itself. Each folder also owns its `LIMITS` and an `open` for the
//!   registry.
//! - [`placement`]: [`WriteSettings`], how the destination stores what ferry writes
//!   (`--storage-class`), and each provider's classes.
//! - [`error`]: [`ProviderError`], its [`ErrorClass`] and its [`FailureKind`](ferry_core::FailureKind).
//! - [`run`]: [`RunContext`], what one run shares across its providers (ceilings, pace,
//!   retry and request counts, the part-buffer pool); never a process static.
//! - [`retries`]: the one request-retry layer every provider sends through
//!   ([`retries::request`]), failed attempts counted by [`Cause`](retries::Cause), and the
//!   adaptive pace after throttling.
//! - [`throttle`]: the user's ceilings, bytes per second each way and requests per second.
//! - [`wrap`]: [`Throttled`] and [`Counted`], put around any provider (and its capabilities).
//! - [`REGISTRY`] and [`open`]: the providers by URL scheme, one line each; `open` wraps each
//!   adapter for its run.

pub mod azure;
pub mod error;
pub mod gcs;
mod http;
pub mod local;
pub mod placement;
pub mod retries;
pub mod run;
pub mod s3;
pub mod throttle;
pub mod wrap;

pub use error::{FileKind, ProviderError, Refusal};
pub use placement::WriteSettings;
pub use run::{RequestCount, RunContext};
pub use throttle::Rates;
pub use wrap::{Counted, Throttled};

use async_trait::async_trait;
use bytes::Bytes;
use ferry_core::{Carries, Checksums, ErrorClass, Evidence, Headers, Limits, Location, ObjectEntry, PartPlan, Scheme, Tags};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

pub type Result<T, E = ProviderError> = std::result::Result<T, E>;

/// Attributes written with an object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutAttrs {
    pub content_type: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// Permission bits for a file written to local disk (`mode & 0o777`; object stores ignore
    /// it). `None`: 0644.
    pub mode: Option<u32>,
    /// The system headers beside Content-Type; a provider writes those it [`Carries`].
    pub headers: Headers,
    /// Tags to set (`None`: none sent). Only given to a provider that carries tags.
    pub tags: Option<Tags>,
    /// The class (or access tier) this object is written in, as the destination's provider
    /// spells it, in place of the destination's [`WriteSettings::storage_class`]
    /// (`--storage-class-map`); `None`: that one.
    pub storage_class: Option<String>,
}

/// What the destination said after a write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutReceipt {
    /// The destination's entity tag (or equivalent) of what was written, quotes stripped.
    pub etag: Option<String>,
    /// The version the write made, where the destination keeps versions: S3's version id
    /// (versioning on), GCS's generation, Azure's version id (blob versioning on).
    pub version: Option<String>,
}

/// One part acknowledged by the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartReceipt {
    /// 0-based part index.
    pub index: u32,
    /// The destination's id for the part (S3 ETag, GCS part object name, Azure block id).
    pub id: String,
    pub size: u64,
    pub crc32c: u32,
}

/// Bytes read from a source, with what the response said about the whole object.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub data: Bytes,
    /// The object as the read saw it: `size` is the whole object's size, and content type,
    /// metadata, etag or version are filled where the response carries them.
    pub object: ObjectEntry,
    /// The source's own checksum the adapter checked these bytes against as they arrived
    /// ([`Evidence::SourceMd5`] for an S3 MD5 ETag or Azure's per-range MD5), if it did. A
    /// mismatch is an error, never a `Fetched`.
    pub checked: Option<Evidence>,
}

/// A storage provider: a bucket or container (or a local directory) under a prefix.
///
/// Every method takes keys relative to the provider's location. Each call is one or a few
/// requests; none buffers more than the bytes it returns or is given.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Short provider name for messages: `s3`, `gcs`, `azure`, `local`.
    fn name(&self) -> &'static str;
    fn location(&self) -> &Location;
    fn limits(&self) -> Limits;

    /// One cheap request proving the bucket exists and the credentials may list it. Fails with a
    /// fatal [`ProviderError`] naming what is wrong (missing bucket, denied, unreachable).
    /// `for_write`: the location is a destination (a local directory may then be created later).
    async fn check(&self, for_write: bool) -> Result<()>;

    /// Streams the objects under the prefix, a page at a time, keys relative to the prefix.
    /// Pages arrive in the provider's listing order; no page is held after it is yielded.
    fn list(&self) -> BoxStream<'_, Result<Vec<ObjectEntry>>>;

    /// The object's current state, or `None` if it does not exist.
    async fn head(&self, key: &str) -> Result<Option<ObjectEntry>>;

    /// Reads `range` of the object (the whole object when `None`).
    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Fetched>;

    /// Writes a whole object in one request, sending `crc32c` as the integrity header where the
    /// provider has one.
    async fn put(&self, key: &str, data: Bytes, crc32c: u32, attrs: &PutAttrs) -> Result<PutReceipt>;

    async fn delete(&self, key: &str) -> Result<()>;

    /// Removes the folders above `key` that hold nothing now, deepest first, up to the
    /// location's root (never the root): a key deleted from a local disk takes the folders
    /// written for it with it, as an object store's implied folders go with their last key.
    /// Stops at the first folder that is not empty (or not a plain folder). Object stores have
    /// no folders: nothing to do.
    async fn prune_folders(&self, key: &str) -> Result<()> {
        let _ = key;
        Ok(())
    }

    /// Asks the service to restore archived object `key`, now in `class` (see
    /// [`ferry_core::storage`]), so it can be read: a copy kept `request.days` days, made at
    /// `request.tier`, or at the nearest tier the service offers for that class (S3 has no
    /// Expedited retrieval of DEEP_ARCHIVE). The restore takes the service minutes to days; a
    /// HEAD's [`ObjectEntry::storage_class`] says when it is readable. `Ok(Some(tier))`:
    /// requested at `tier`, or already under way; `Ok(None)`: this provider has no archived
    /// objects to restore. Restores are billed by the service.
    async fn restore(
        &self,
        key: &str,
        class: &ferry_core::StorageClass,
        request: &ferry_core::RestoreRequest,
    ) -> Result<Option<ferry_core::RestoreTier>> {
        let _ = (key, class, request);
        Ok(None)
    }

    /// For a source object that declares no CRC32C: the check of its bytes against the MD5
    /// entity tag it does declare, when it has one (S3), so ranged reads can still be proved.
    /// `object` is the source's current state (a HEAD).
    async fn etag_check(&self, object: &ObjectEntry) -> Result<Option<ferry_core::Md5Etag>> {
        let _ = object;
        Ok(None)
    }

    /// What this location keeps besides bytes (headers, metadata names, tags), as data. By
    /// default everything, as given.
    fn carries(&self) -> Carries {
        Carries::ALL
    }

    /// Whether a listed entity tag changes only when the content does. A local disk's is made
    /// of the modification time and size, so a touched file shows a new one: a delta then
    /// reads the file to tell a touch from a change. By default: yes.
    fn etag_names_content(&self) -> bool {
        true
    }

    /// Whether [`Provider::list`] gives each key once, in byte order (S3, GCS and Azure list so;
    /// a fanned-out walk of a local disk does not). A delta then merges the listing as it
    /// arrives instead of sorting it first, and checks the order as it goes. By default: no.
    fn lists_in_key_order(&self) -> bool {
        false
    }

    /// The tags of `key`, in one request (S3 GetObjectTagging, Azure Get Blob Tags). Asked only
    /// when tags are to be copied, the destination keeps them, and the read said the object has
    /// some it did not return (`ObjectEntry::tags` is `None`). By default: none.
    async fn tags(&self, key: &str) -> Result<Tags> {
        let _ = key;
        Ok(Tags::new())
    }

    /// Whether the location's bucket has object lock on (S3 GetObjectLockConfiguration, one
    /// request): only then is each object asked for its [`Provider::lock`]. By default: no.
    async fn locks_objects(&self) -> Result<bool> {
        Ok(false)
    }

    /// The lock in effect on `key`'s current version (a legal hold, a retention whose date is
    /// ahead), in one request (S3: a HEAD, which reports both). Asked only where
    /// [`Provider::locks_objects`]. By default: none.
    async fn lock(&self, key: &str) -> Result<Option<ferry_core::ObjectLock>> {
        let _ = key;
        Ok(None)
    }

    /// The capability to upload one object as parallel parts, if the provider has it.
    fn multipart(&self) -> Option<&dyn Multipart> {
        None
    }

    /// The capability to have the service copy objects into this location itself, if it has it.
    /// Every version of a key, where the provider keeps them (`--all-versions`).
    fn versions(&self) -> Option<&dyn Versions> {
        None
    }

    fn server_copy(&self) -> Option<&dyn ServerCopy> {
        None
    }
}

/// What a server copy in parts calls with its upload id once the destination has the upload and
/// before its first part is copied: the caller records the id (durably: an fsync) before the
/// parts exist. Awaited, so the recording never blocks an executor thread.
pub type UploadStarted = dyn Fn(String) -> BoxFuture<'static, Result<()>> + Send + Sync;

/// An object the service copied, as the destination reported it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerCopied {
    /// The copy's entity tag, quotes stripped.
    pub etag: Option<String>,
    /// The copy's whole-object checksums, where the service gave them: CRC32C (for a copy in
    /// parts, every part's, combined), CRC64NVME, MD5 (GCS, Azure). Never a SHA-256.
    pub checksums: Checksums,
    /// Parts it was copied in (0: one request).
    pub parts: u32,
    /// The version the copy made, where the destination keeps versions (see [`PutReceipt::version`]).
    pub version: Option<String>,
}

/// A provider that keeps a version per write and can list and read each (S3 with bucket
/// versioning, GCS with object versioning). `--all-versions` needs it on both sides: the
/// source's versions are listed and read one by one, and the destination must keep each write
/// as a version of its own.
#[async_trait]
pub trait Versions: Send + Sync {
    /// Whether the location keeps every write as a version of its own (S3: bucket versioning
    /// `Enabled`; `Suspended` or never enabled keeps only the last write; GCS: the bucket's
    /// `versioning.enabled`). One request.
    async fn keeps_versions(&self) -> Result<bool>;
    /// Every version of every object under the location, a page at a time: keys in order, each
    /// key's versions oldest first, every entry pinned to its version (`ObjectEntry::pinned`);
    /// a delete marker is an entry skipped as [`ferry_core::SkipReason::DeleteMarker`]. A
    /// key's versions are held until the key's last one is listed.
    fn list_versions(&self) -> BoxStream<'_, Result<Vec<ObjectEntry>>>;
    /// [`Provider::head`] of one version of `key`.
    async fn head_version(&self, key: &str, version: &str) -> Result<Option<ObjectEntry>>;
    /// [`Provider::get`] of one version of `key`.
    async fn get_version(&self, key: &str, version: &str, range: Option<Range<u64>>) -> Result<Fetched>;
    /// Every version of exactly `key`, oldest first, each pinned; a delete marker is an entry
    /// skipped as [`ferry_core::SkipReason::DeleteMarker`] (what a rollback searches for the
    /// version a write replaced). One listing of the key's versions (S3 ListObjectVersions with
    /// the key as prefix). By default: not offered, a [`ProviderError::Config`].
    async fn versions_of(&self, key: &str) -> Result<Vec<ObjectEntry>> {
        let _ = key;
        Err(ProviderError::Config { provider: "versions", detail: "this provider cannot list one key's versions".into() })
    }
}

/// Copying objects inside one service, without their bytes passing through ferry (S3
/// CopyObject / UploadPartCopy, GCS rewrite).
#[async_trait]
pub trait ServerCopy: Send + Sync {
    /// Whether the service can copy from `source`, reached through `connect`, by itself: only a
    /// location of this same service reached the same way (see [`Connect::same_way`]), which
    /// this provider's credentials can then read. Asked once per run, before any copy; `false`
    /// means the bytes pass through ferry.
    fn copies_from(&self, source: &Location, connect: &Connect) -> bool;

    /// Copies `object` (the source's current state, its key relative to `source`, which must be
    /// a location of this same service that this provider's credentials can read) to the same
    /// relative key here, in the parts of `plan` (the caller's, chosen against [`Provider::limits`]
    /// for `object.size`; one request when it has one part). A copy in parts copies them in
    /// parallel, calls `started` with its upload id before the first part (to journal it), and
    /// aborts the upload itself when it fails. The copy is refused if the source changed from
    /// `object` meanwhile, and before any request if `plan` is not `object`'s or the service
    /// would not take it. Services that copy whole objects in their own steps ignore `plan`.
    /// `object.tags` are the tags the copy must carry (`Some`, empty for none) where the service
    /// keeps tags; `None`: the source's, however the service gets them (S3 CopyObject copies
    /// them; a copy in parts or Azure's Copy Blob reads them first).
    /// `class`: the class (or access tier) the copy is written in, in place of the
    /// destination's [`WriteSettings::storage_class`] (`--storage-class-map`; `None`: that one).
    async fn copy_from(
        &self,
        source: &Location,
        object: &ObjectEntry,
        class: Option<&str>,
        plan: &PartPlan,
        started: &crate::UploadStarted,
    ) -> Result<ServerCopied>;
}

/// Uploading one object in parts.
#[async_trait]
pub trait Multipart: Send + Sync {
    /// Starts an upload of `key`. Parts are then sent through the returned handle.
    /// Abandoned uploads may be billed by the provider until aborted.
    ///
    /// `id` is the caller's choice of upload id, journaled before this call: providers whose
    /// uploads ferry names itself (local temp files, GCS part objects) use it, so a crash at any
    /// moment leaves nothing the journal cannot find. Providers that assign ids (S3) ignore it;
    /// the handle's [`MultipartUpload::upload_id`] is the id to resume.
    async fn start(&self, key: &str, attrs: &PutAttrs, size: u64, id: &str) -> Result<Box<dyn MultipartUpload>>;

    /// Reattaches to upload `upload_id` of `key`, started earlier (perhaps by a process that
    /// died), and returns it with the parts the destination holds: the destination is the truth
    /// for resume. `recorded` is what the journal says was acknowledged; a provider that cannot
    /// list parts checks those instead. `None` when the upload no longer exists or cannot be
    /// resumed: the caller starts over.
    async fn resume(
        &self,
        key: &str,
        upload_id: &str,
        attrs: &PutAttrs,
        size: u64,
        recorded: &[PartReceipt],
    ) -> Result<Option<(Box<dyn MultipartUpload>, Vec<PartReceipt>)>>;

    /// Aborts upload `upload_id` of `key` and drops its parts. Aborting an upload that no
    /// longer exists succeeds.
    async fn abort_upload(&self, key: &str, upload_id: &str) -> Result<()>;

    /// Uploads open under the location's prefix that were started before `before`, whoever
    /// started them. `ProviderError::Config` when the service cannot list uploads.
    async fn stale_uploads(&self, before: chrono::DateTime<chrono::Utc>) -> Result<Vec<OpenUpload>>;

    /// [`Multipart::stale_uploads`] a page at a time, so a sweep can act on each page without
    /// holding the whole listing (GCS finds part objects by listing every object under the
    /// prefix). By default, one page of all of them.
    fn stale_upload_pages(&self, before: chrono::DateTime<chrono::Utc>) -> BoxStream<'_, Result<Vec<OpenUpload>>> {
        futures::stream::once(self.stale_uploads(before)).boxed()
    }
}

/// An upload open at a destination.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OpenUpload {
    /// Relative to the provider's location.
    pub key: String,
    pub upload_id: String,
    pub initiated: Option<chrono::DateTime<chrono::Utc>>,
}

/// An upload in progress.
#[async_trait]
pub trait MultipartUpload: Send {
    /// The provider's id for the upload, to record before the first part is sent.
    fn upload_id(&self) -> Option<String>;
    /// Starts sending part `index` (0-based). Parts must be started in index order; the returned
    /// futures may then run concurrently.
    fn put_part(&mut self, index: u32, offset: u64, data: Bytes, crc32c: u32) -> BoxFuture<'static, Result<PartReceipt>>;
    /// Assembles the object from `parts` (all of them, in index order).
    async fn complete(self: Box<Self>, parts: Vec<PartReceipt>) -> Result<PutReceipt>;
    /// Drops the upload and whatever parts the destination holds for it.
    async fn abort(self: Box<Self>) -> Result<()>;
}

/// How to reach a location: an optional endpoint (an S3-compatible service, Azurite,
/// fake-gcs-server) and, for S3, an optional named profile of the AWS configuration files (so
/// two S3 sides can use different credentials). Names only: never a credential. Without them,
/// the provider's standard environment applies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Connect {
    pub endpoint: Option<String>,
    pub profile: Option<String>,
    /// A local source: list and read what symbolic links inside the root point to, when the
    /// target stays inside the root (`--follow-symlinks`). Links are skipped otherwise.
    pub follow_symlinks: bool,
    /// A local location: where headers, metadata and tags are kept (`--local-metadata`).
    pub local_metadata: local::LocalMetadata,
    /// The destination's write settings (`--storage-class`); default for a source.
    pub write: WriteSettings,
    /// A source: every version of each key is listed and copied, oldest first
    /// (`--all-versions`); both sides must have [`Versions`].
    pub all_versions: bool,
}

impl Connect {
    /// Whether `other` reaches the service the way this does: the same endpoint and the same
    /// profile, so one side's credentials can read what the other names (what a server-side
    /// copy needs, see [`ServerCopy::copies_from`]).
    pub fn same_way(&self, other: &Connect) -> bool {
        self.endpoint == other.endpoint && self.profile == other.profile
    }
}

/// Opens a provider for a location (how to reach it, and the run it serves), building clients
/// only.
pub type Opener = fn(&Location, &Connect, &Arc<RunContext>) -> BoxFuture<'static, Result<Arc<dyn Provider>>>;

/// Where a provider's requests go: a network provider's calls are held to the run's ceilings,
/// a local disk's never are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    Network,
    LocalDisk,
}

/// Every provider ferry knows, by the URL scheme it serves. A new provider is its folder (with
/// its `open`, its `LIMITS` and its conformance test) and one line here; the scheme itself is
/// URL grammar, in `ferry_core::Scheme`.
pub const REGISTRY: &[(Scheme, Opener, Reach)] = &[
    (Scheme::S3, s3::open, Reach::Network),
    (Scheme::Gcs, gcs::open, Reach::Network),
    (Scheme::Azure, azure::open, Reach::Network),
    (Scheme::Local, local::open, Reach::LocalDisk),
];

/// Opens the adapter for `location` through [`REGISTRY`] in `run`: every call counted
/// ([`Counted`]), and a network provider's calls held to the run's ceilings ([`Throttled`]).
/// Builds clients only: no request is sent (see [`Provider::check`]).
pub async fn open(location: &Location, connect: &Connect, run: &Arc<RunContext>) -> Result<Arc<dyn Provider>> {
    let Some((_, open, reach)) = REGISTRY.iter().find(|(scheme, _, _)| *scheme == location.scheme) else {
        return Err(ProviderError::Config {
            provider: location.scheme.as_url_scheme(),
            detail: format!("no provider serves {}:// locations", location.scheme.as_url_scheme()),
        });
    };
    let adapter = open(location, connect, run).await?;
    let adapter: Arc<dyn Provider> = match reach {
        Reach::Network => Arc::new(Throttled::new(adapter, run.clone())),
        Reach::LocalDisk => adapter,
    };
    Ok(Arc::new(Counted::new(adapter, run.clone())))
}

/// A local directory's adapter in `run`, counted (and never throttled), for the engine's own
/// devices (an export's destinations, an ingest's sources) where no URL or [`Connect`] applies.
pub fn open_local(location: Location, run: &Arc<RunContext>) -> Arc<dyn Provider> {
    Arc::new(Counted::new(Arc::new(local::LocalProvider::new(location).buffers(run.buffers().clone())), run.clone()))
}

/// Classifies an HTTP status the same way for every provider.
pub(crate) fn class_of_status(status: u16) -> ErrorClass {
    match status {
        408 | 429 | 500..=599 => ErrorClass::Retryable,
        _ => ErrorClass::PerObject,
    }
}

/// Strips the quotes providers put around entity tags.
pub(crate) fn unquote(etag: &str) -> String {
    etag.trim_matches('"').to_string()
}

/// Marks the names of ferry's temporary files and objects (uploads in progress, a device's
/// reserve).
pub(crate) const TEMP_MARK: &str = ".ferry-tmp-";

/// Rejects keys that cannot be stored as given. Object stores accept almost any key; these
/// rules are the ones no destination can honour safely.
pub fn check_key(key: &str) -> std::result::Result<(), &'static str> {
    if key.is_empty() {
        return Err("empty key");
    }
    if key.contains('\0') {
        return Err("key contains NUL");
    }
    Ok(())
}
