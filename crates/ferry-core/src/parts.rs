//! Provider limits and the part plan of a multipart transfer.

/// What a destination accepts, as data (not booleans scattered through the code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub min_part_size: u64,
    pub max_part_size: u64,
    pub max_parts: u64,
    pub max_object_size: u64,
    /// The part size used when the user does not choose one.
    pub default_part_size: u64,
}

impl Limits {
    /// S3's published limits: 5 MiB..5 GiB parts, 10,000 parts, 5 TiB objects. Parts of 8 MiB
    /// by default (as the AWS CLI): under one memory budget, smaller parts mean more of them in
    /// flight (see docs/performance.md).
    pub const S3: Limits =
        Limits { min_part_size: 5 << 20, max_part_size: 5 << 30, max_parts: 10_000, max_object_size: 5 << 40, default_part_size: 8 << 20 };
    /// Azure block blobs: blocks up to 4000 MiB, 50,000 blocks; 8 MiB blocks by default (as AzCopy).
    pub const AZURE: Limits = Limits {
        min_part_size: 1,
        max_part_size: 4000 << 20,
        max_parts: 50_000,
        max_object_size: 190_700 << 30,
        default_part_size: 8 << 20,
    };
    /// GCS parallel composite uploads: parts are objects, composed 32 at a time.
    pub const GCS: Limits =
        Limits { min_part_size: 1, max_part_size: 5 << 40, max_parts: 1024, max_object_size: 5 << 40, default_part_size: 16 << 20 };
    /// Local disk: parts are written at their offsets into one temp file.
    pub const LOCAL: Limits =
        Limits { min_part_size: 1, max_part_size: u64::MAX, max_parts: u64::MAX, max_object_size: u64::MAX, default_part_size: 8 << 20 };
}

/// How one object is cut into parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartPlan {
    pub object_size: u64,
    pub part_size: u64,
}

const MIB: u64 = 1 << 20;

impl PartPlan {
    /// The smallest 1 MiB-aligned part size ≥ `wanted` (or the default) that keeps the part
    /// count within the destination's limit, clamped to its min/max part size.
    pub fn choose(object_size: u64, wanted: Option<u64>, limits: &Limits) -> PartPlan {
        let mut part = wanted.unwrap_or(limits.default_part_size).max(limits.min_part_size).max(1);
        if limits.max_parts != u64::MAX {
            let needed = object_size.div_ceil(limits.max_parts);
            if needed > part {
                part = needed.div_ceil(MIB) * MIB;
            }
        }
        PartPlan { object_size, part_size: part.min(limits.max_part_size) }
    }

    /// Number of parts (at least one, even for an empty object).
    pub fn count(&self) -> u64 {
        self.object_size.div_ceil(self.part_size).max(1)
    }

    /// Byte range `[start, end)` of part `index` (0-based).
    pub fn range(&self, index: u64) -> std::ops::Range<u64> {
        let start = index * self.part_size;
        start..(start + self.part_size).min(self.object_size)
    }

    /// Length of part `index`.
    pub fn len(&self, index: u64) -> u64 {
        let r = self.range(index);
        r.end - r.start
    }

    /// Whether the object should go as one request rather than a multipart upload.
    pub fn is_single(&self) -> bool {
        self.count() == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_the_object_exactly() {
        let p = PartPlan::choose(64 * MIB + 1, Some(8 * MIB), &Limits::S3);
        assert_eq!(p.count(), 9);
        assert_eq!(p.range(0), 0..8 * MIB);
        assert_eq!(p.range(8), 64 * MIB..64 * MIB + 1);
        let total: u64 = (0..p.count()).map(|i| p.range(i).end - p.range(i).start).sum();
        assert_eq!(total, 64 * MIB + 1);
    }

    #[test]
    fn part_size_grows_to_respect_the_part_count_limit() {
        let size = 5u64 << 40; // 5 TiB at S3's 10,000-part limit
        let p = PartPlan::choose(size, None, &Limits::S3);
        assert!(p.count() <= 10_000, "{} parts", p.count());
        assert_eq!(p.part_size % MIB, 0);
    }

    #[test]
    fn s3_minimum_part_size_is_enforced() {
        let p = PartPlan::choose(100 * MIB, Some(MIB), &Limits::S3);
        assert_eq!(p.part_size, 5 * MIB);
    }

    #[test]
    fn empty_and_small_objects_are_single() {
        assert!(PartPlan::choose(0, None, &Limits::S3).is_single());
        assert!(PartPlan::choose(8 * MIB, None, &Limits::S3).is_single());
        assert!(!PartPlan::choose(8 * MIB + 1, None, &Limits::S3).is_single());
    }
}
