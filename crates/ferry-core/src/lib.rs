//! The model of a ferry migration: locations, object entries, part plans, digests, sizes
//! and error classes.
//!
//! This crate owns the vocabulary every other crate speaks. It must never know about the
//! network, a terminal, a database or a file format: no I/O lives here, so everything in
//! it is cheap to unit-test and safe to use from any layer.
//!
//! # Layout
//! - [`location`]: `s3://`, `gs://`, `az://`, `file://` URLs and their redacted display.
//! - [`entry`]: one object as listed from a source ([`ObjectEntry`]), and what names it in a
//!   job ([`ObjectId`]: its key, and its version in an `--all-versions` job).
//! - [`headers`]: the system headers, metadata names and tags that travel with an object, what
//!   each kind of store [`Carries`], and what a destination did not keep ([`NotCarried`]).
//! - [`checksums`]: an object's checksums as far as known ([`Checksums`]).
//! - [`evidence`]: what proved an object's bytes ([`Evidence`]), by stable names.
//! - [`parts`]: provider limits and the part plan of a multipart transfer.
//! - [`digest`]: streaming CRC32C + SHA-256 of an object, part CRCs combined.
//! - [`layout`]: where an object goes on an appliance disk, and the names appliances refuse.
//! - [`etag`]: an S3-style MD5 ETag (single or multipart) checked on the bytes as they stream.
//! - [`size`]: human sizes (`8MiB`) both ways.
//! - [`buffers`]: part buffers recycled once their last `Bytes` clone drops, one pool per run.
//! - [`skip`]: why a listed entry is recorded but not copied ([`SkipReason`]).
//! - [`storage`]: an object's storage class and whether it is archived ([`StorageClass`],
//!   [`ArchiveState`]), and the restore ferry may ask for ([`RestoreRequest`]).
//! - [`lock`]: an S3 object version's legal hold or retention ([`ObjectLock`]), reported,
//!   never carried.
//! - [`error`]: how the engine should treat a failure ([`ErrorClass`]) and what it was
//!   ([`FailureKind`]).

pub mod buffers;
pub mod checksums;
pub mod digest;
pub mod entry;
pub mod error;
pub mod etag;
pub mod evidence;
pub mod headers;
pub mod layout;
pub mod location;
pub mod lock;
pub mod parts;
pub mod size;
pub mod skip;
pub mod storage;

pub use checksums::Checksums;
pub use digest::{ObjectDigest, crc32c, crc32c_combine};
pub use entry::{ObjectEntry, ObjectId};
pub use error::{ErrorClass, FailureKind};
pub use etag::Md5Etag;
pub use evidence::Evidence;
pub use headers::{Carries, Header, Headers, NotCarried, TagLimits, Tags};
pub use location::{Location, LocationError, Scheme};
pub use lock::{ObjectLock, Retention, RetentionMode};
pub use parts::{Limits, PartPlan, PlanError};
pub use skip::SkipReason;
pub use storage::{ArchiveState, RestoreRequest, RestoreTier, StorageClass};
