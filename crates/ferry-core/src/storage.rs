//! An object's storage class (or access tier), and whether its bytes can be read now: an
//! archived object (S3 GLACIER / DEEP_ARCHIVE, Azure's Archive tier) must be restored first.
//!
//! The class keeps the provider's own name (it is recorded and reported as the provider said
//! it); what ferry does with an object is decided by its [`ArchiveState`], set by the provider's
//! adapter, never by matching the name.

use serde::{Deserialize, Serialize};

/// An object's storage class as its provider names it, and what that means for reading it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StorageClass {
    /// The provider's name: S3 `STANDARD`, `GLACIER`, `DEEP_ARCHIVE`…; GCS `NEARLINE`,
    /// `ARCHIVE`…; Azure `Hot`, `Cool`, `Archive`.
    pub name: String,
    /// Whether the object's bytes can be read now.
    pub state: ArchiveState,
}

impl StorageClass {
    /// A class whose objects are read like any other (GCS's ARCHIVE class is one: colder
    /// prices, no restore).
    pub fn online(name: impl Into<String>) -> StorageClass {
        StorageClass { name: name.into(), state: ArchiveState::Online }
    }

    /// Whether the object must be restored before it can be read.
    pub fn needs_restore(&self) -> bool {
        matches!(self.state, ArchiveState::Archived | ArchiveState::Restoring)
    }
}

/// Whether an object's bytes can be read now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArchiveState {
    /// Read like any object.
    Online,
    /// Archived: unreadable until a restore (rehydration) is requested and completes.
    Archived,
    /// Archived, a restore requested and not complete yet.
    Restoring,
    /// Archived, with a restored copy readable until it expires.
    Restored,
}

impl ArchiveState {
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveState::Online => "online",
            ArchiveState::Archived => "archived",
            ArchiveState::Restoring => "restoring",
            ArchiveState::Restored => "restored",
        }
    }
}

/// How fast (and how dear) a restore is: S3's retrieval tiers (Azure's rehydrate priority:
/// `Expedited` is High, the others Standard).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestoreTier {
    /// Hours (S3 GLACIER: 3-5, DEEP_ARCHIVE: up to 12).
    #[default]
    Standard,
    /// Cheapest and slowest (S3 GLACIER: 5-12 hours, DEEP_ARCHIVE: up to 48).
    Bulk,
    /// Minutes, at a price (S3 GLACIER only).
    Expedited,
}

impl RestoreTier {
    pub fn as_str(self) -> &'static str {
        match self {
            RestoreTier::Standard => "standard",
            RestoreTier::Bulk => "bulk",
            RestoreTier::Expedited => "expedited",
        }
    }
}

/// A restore ferry asks for: a readable copy kept `days` days, made at `tier`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreRequest {
    pub days: u32,
    pub tier: RestoreTier,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_archived_and_restoring_objects_need_a_restore() {
        let class = |state| StorageClass { name: "GLACIER".into(), state };
        assert!(class(ArchiveState::Archived).needs_restore());
        assert!(class(ArchiveState::Restoring).needs_restore());
        assert!(!class(ArchiveState::Restored).needs_restore());
        assert!(!StorageClass::online("ARCHIVE").needs_restore(), "GCS ARCHIVE reads without a restore");
        let json = serde_json::to_string(&class(ArchiveState::Archived)).unwrap();
        assert_eq!(json, r#"{"name":"GLACIER","state":"archived"}"#);
        assert_eq!(serde_json::from_str::<StorageClass>(&json).unwrap(), class(ArchiveState::Archived));
    }
}
