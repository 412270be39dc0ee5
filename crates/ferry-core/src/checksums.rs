//! The checksums one object's bytes have, as far as they are known.

use serde::{Deserialize, Serialize};

/// An object's checksums, each in its provider's native text form (lowercase hex) and `None`
/// where nobody computed or declared it. The one shape for every place that carries them: what
/// a source declares, what ferry computed of the bytes it sent, what a service reports of a
/// copy it made.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Checksums {
    /// CRC32C, 8 hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32c: Option<String>,
    /// Full-object CRC64NVME (S3's default checksum), 16 hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc64nvme: Option<String>,
    /// MD5, 32 hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    /// SHA-256, 64 hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl Checksums {
    /// Whether no checksum is known.
    pub fn is_empty(&self) -> bool {
        self.crc32c.is_none() && self.crc64nvme.is_none() && self.md5.is_none() && self.sha256.is_none()
    }
}
