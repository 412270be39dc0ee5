//! One object as the source listed it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An object (or a table-export file) as recorded in a manifest.
///
/// `key` is relative to the source location's prefix, with `/` separators, so the same entry
/// maps onto any destination prefix. Checksums are the source's own, in the provider's
/// native text form (hex), and are `None` when the listing did not offer them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ObjectEntry {
    pub key: String,
    pub size: u64,
    pub last_modified: Option<DateTime<Utc>>,
    /// The provider's entity tag, quotes stripped. Never compared across providers.
    pub etag: Option<String>,
    /// Object version / generation where the provider has one.
    pub version: Option<String>,
    /// Source-native CRC32C, 8 lowercase hex digits.
    pub crc32c: Option<String>,
    /// Source-native MD5, 32 lowercase hex digits.
    pub md5: Option<String>,
    /// Source-native full-object CRC64NVME (S3's default checksum), 16 lowercase hex digits.
    /// Seen by a HEAD or GET at copy time; listings do not carry it and manifests do not keep it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc64nvme: Option<String>,
    /// A local file's permission bits (`mode & 0o777`), seen by a HEAD or GET at copy time so
    /// a local destination can keep them; listings and manifests do not carry it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    pub content_type: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// Set when the listing met this entry but ferry will not copy it, and why (a symlink, a
    /// FIFO, a folder marker…). Such entries are recorded, counted and reported, never copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<crate::SkipReason>,
}

impl ObjectEntry {
    /// An entry the listing met but ferry will not copy.
    pub fn skipped(key: String, reason: crate::SkipReason) -> ObjectEntry {
        ObjectEntry { key, skipped: Some(reason), ..Default::default() }
    }
}
