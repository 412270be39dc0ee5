//! One object as the source listed it.

use crate::Checksums;
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
    /// This entry stands for the one version `version` of its key, not for the key's current
    /// version: an `--all-versions` listing lists every version of a key as an entry of its
    /// own, each read by its version and identified by its key and version together (see
    /// [`ObjectEntry::id`]). Not a manifest column: a manifest of all versions says so once,
    /// in its header.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pinned: bool,
    /// The source's own checksums: CRC32C and MD5 as listed (manifests keep them); the
    /// full-object CRC64NVME (S3's default checksum) seen by a HEAD or GET at copy time
    /// (listings do not carry it and manifests do not keep it; a shipment manifest does). Never
    /// a SHA-256: a shipped file's is its route's.
    #[serde(flatten)]
    pub checksums: Checksums,
    /// A local file's permission bits (`mode & 0o777`), seen by a HEAD or GET at copy time so
    /// a local destination can keep them; listings and manifests do not carry it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    pub content_type: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// The system headers beside Content-Type, where the listing or the read carried them.
    #[serde(default, skip_serializing_if = "crate::Headers::is_empty")]
    pub headers: crate::Headers,
    /// The object's tags: `None` when not read (S3 and Azure listings do not carry them, and a
    /// read only says whether there are any; see `Provider::tags`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<crate::Tags>,
    /// The object's storage class (tier) as the listing or a HEAD gave it, and whether it is
    /// archived (see [`crate::storage`]). `None` where the provider has no classes (a local
    /// disk) or did not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<crate::StorageClass>,
    /// Set when the listing met this entry but ferry will not copy it, and why (a symlink, a
    /// FIFO, a folder marker…). Such entries are recorded, counted and reported, never copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<crate::SkipReason>,
}

/// What names an object in a job: its key, and where the entry is [`ObjectEntry::pinned`] the
/// source version it stands for. Two entries with the same id are the same object; an
/// `--all-versions` job has one per version of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId<'a> {
    pub key: &'a str,
    /// `None`: the key's current version (a job of current versions).
    pub version: Option<&'a str>,
}

impl ObjectEntry {
    /// The entry's identity: its key, and its version where it is pinned to one.
    pub fn id(&self) -> ObjectId<'_> {
        ObjectId { key: &self.key, version: if self.pinned { self.version.as_deref() } else { None } }
    }

    /// An entry the listing met but ferry will not copy.
    pub fn skipped(key: String, reason: crate::SkipReason) -> ObjectEntry {
        ObjectEntry { key, skipped: Some(reason), ..Default::default() }
    }

    /// Whether `other` (a later listing of the same key) is this version: the same size, and
    /// the same entity tag, version and source checksums (each compared only where both have
    /// one) and skip reason. A last-modified time alone does not make another version.
    pub fn same_version(&self, other: &ObjectEntry) -> bool {
        fn same(a: &Option<String>, b: &Option<String>) -> bool {
            match (a, b) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
        }
        self.size == other.size
            && self.skipped == other.skipped
            && same(&self.etag, &other.etag)
            && same(&self.version, &other.version)
            && same(&self.checksums.crc32c, &other.checksums.crc32c)
            && same(&self.checksums.md5, &other.checksums.md5)
            && same(&self.checksums.crc64nvme, &other.checksums.crc64nvme)
    }
}
