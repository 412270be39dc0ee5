//! What proved an object's bytes: at copy time, that the bytes read are the source's (and the
//! destination holds what was sent); at verify time, that the destination still holds them.

use serde::{Serialize, Serializer};

/// One kind of proof, by its stable name: the names are what reports, the journal and
/// `manifest export` have always written, so they never change once released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Evidence {
    /// The SHA-256 a shipment manifest declares for a file on a shipped disk.
    ShipmentSha256,
    /// The source's CRC32C against the bytes read.
    SourceCrc32c,
    /// The source's full-object CRC64NVME against the bytes read.
    SourceCrc64nvme,
    /// The source's MD5 (an S3 MD5 ETag, Azure's Content-MD5) against the bytes read.
    SourceMd5,
    /// A local file read whole, its size checked against the file's as the read ended.
    LocalFile,
    /// Nothing proved the bytes read but their count.
    SizeOnly,
    /// A server-side copy's CRC32C, as the service reports it, against the source's.
    ServerSideCrc32c,
    ServerSideCrc64nvme,
    ServerSideMd5,
    /// A server-side copy with no checksum to compare: the copy's size alone.
    ServerSideSize,
    /// Verify read the destination back and its SHA-256 matched the one recorded at copy.
    Sha256ReadBack,
    /// Verify: the destination's own CRC32C matched the one recorded at copy.
    DestinationCrc32c,
    /// Verify: the destination's entity tag is the one it gave when ferry wrote the object.
    EtagRecordedAtCopy,
    /// Verify: a key gone from the source (a later generation) is not at the destination either.
    Absent,
}

impl Evidence {
    pub const ALL: [Evidence; 14] = [
        Evidence::ShipmentSha256,
        Evidence::SourceCrc32c,
        Evidence::SourceCrc64nvme,
        Evidence::SourceMd5,
        Evidence::LocalFile,
        Evidence::SizeOnly,
        Evidence::ServerSideCrc32c,
        Evidence::ServerSideCrc64nvme,
        Evidence::ServerSideMd5,
        Evidence::ServerSideSize,
        Evidence::Sha256ReadBack,
        Evidence::DestinationCrc32c,
        Evidence::EtagRecordedAtCopy,
        Evidence::Absent,
    ];

    /// The stable name written to reports, the journal and manifest exports.
    pub fn as_str(self) -> &'static str {
        match self {
            Evidence::ShipmentSha256 => "shipment sha256",
            Evidence::SourceCrc32c => "source crc32c",
            Evidence::SourceCrc64nvme => "source crc64nvme",
            Evidence::SourceMd5 => "source md5",
            Evidence::LocalFile => "local file",
            Evidence::SizeOnly => "size only",
            Evidence::ServerSideCrc32c => "server-side crc32c",
            Evidence::ServerSideCrc64nvme => "server-side crc64nvme",
            Evidence::ServerSideMd5 => "server-side md5",
            Evidence::ServerSideSize => "server-side size",
            Evidence::Sha256ReadBack => "sha256 read-back",
            Evidence::DestinationCrc32c => "destination crc32c",
            Evidence::EtagRecordedAtCopy => "etag recorded at copy",
            Evidence::Absent => "absent",
        }
    }

    /// The evidence a stable name stands for (`None` for a name no release wrote).
    pub fn parse(name: &str) -> Option<Evidence> {
        Evidence::ALL.into_iter().find(|e| e.as_str() == name)
    }
}

impl std::fmt::Display for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Evidence {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Ordered by name, so counts keyed by evidence list (and print) in the order they always did.
impl Ord for Evidence {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for Evidence {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::Evidence;
    use std::collections::BTreeMap;

    #[test]
    fn names_are_stable_and_parse_back() {
        for e in Evidence::ALL {
            assert_eq!(Evidence::parse(e.as_str()), Some(e));
        }
        assert_eq!(Evidence::parse("checked somehow"), None);
        let counts: BTreeMap<Evidence, u64> = [(Evidence::SourceMd5, 2), (Evidence::ServerSideCrc32c, 1)].into();
        assert_eq!(serde_json::to_string(&counts).unwrap(), r#"{"server-side crc32c":1,"source md5":2}"#);
    }
}
