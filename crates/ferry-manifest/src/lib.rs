//! Sealed manifest generations: the contract between planning and doing.
//!
//! A generation is a directory (`JOB/manifests/gen-0001/`) holding Parquet shards of
//! [`ObjectEntry`](ferry_core::ObjectEntry) rows and a `manifest.json` header that lists every shard with its SHA-256.
//! Writing streams (rows are buffered per row group, never the whole listing); sealing writes the
//! header last, atomically, so a generation without a header is not a manifest. Reading checks
//! every shard's digest first, so a corrupt or edited manifest is refused with its path named.
//!
//! This crate knows files and formats only: no network, no journal, no terminal.
//!
//! # Layout
//! - [`header`]: `manifest.json`, its totals and shard list.
//! - [`shard`]: the Parquet schema, the streaming [`ManifestWriter`] and the [`ManifestReader`].
//! - [`mod@export`]: plain CSV / JSONL forms of a generation.
//! - [`shipment`]: what a disk export put on one device (`ferry-shipment.jsonl`, `SHA256SUMS`,
//!   a Data Box BOM), written and read back.

pub mod export;
pub mod header;
pub mod shard;
pub mod shipment;

pub use export::{ExportFormat, Proof, export};
pub use header::{GENERATION_PREFIX, ManifestHeader, ShardInfo, Totals};
pub use shard::{ManifestReader, ManifestWriter};

use std::path::PathBuf;

/// Errors reading or writing a manifest. Every variant names the file involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    #[error("manifest I/O on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("manifest shard {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// A shipment manifest (`ferry-shipment.jsonl`) that is not one ferry wrote, or was altered.
    #[error("shipment manifest {path} is corrupt: line {line}: {reason}")]
    Shipment { path: PathBuf, line: u64, reason: String },
    /// An object whose shipment line would be longer than an ingest reads
    /// ([`shipment::MAX_LINE`]): the export stops before the device's manifest is written.
    #[error(
        "cannot ship {key:?}: its shipment manifest line would be {bytes} bytes, more than the {max} an ingest reads (its metadata is too large to ship)"
    )]
    LineTooLong { key: String, bytes: usize, max: usize },
    #[error("manifest header {path} is unreadable: {source}")]
    Header { path: PathBuf, source: serde_json::Error },
    #[error("parquet error in {path}: {source}")]
    Parquet { path: PathBuf, source: parquet::errors::ParquetError },
    #[error("arrow error in {path}: {source}")]
    Arrow { path: PathBuf, source: arrow_schema::ArrowError },
}

pub type Result<T, E = ManifestError> = std::result::Result<T, E>;
