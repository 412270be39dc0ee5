//! Streaming digests of an object: CRC32C per part (combined into the whole-object CRC) and
//! a whole-object SHA-256 hashed in part order.

use crate::etag::Md5Etag;
use crc_fast::CrcAlgorithm;
use sha2::digest::common::hazmat::SerializableState;
use sha2::{Digest, Sha256};

/// CRC32C (Castagnoli) of a buffer, hardware-accelerated.
pub fn crc32c(data: &[u8]) -> u32 {
    crc_fast::checksum(CrcAlgorithm::Crc32Iscsi, data) as u32
}

/// CRC32C of `a ++ b` given CRC32C(a), CRC32C(b) and `b`'s length.
pub fn crc32c_combine(a: u32, b: u32, b_len: u64) -> u32 {
    crc_fast::checksum_combine(CrcAlgorithm::Crc32Iscsi, a as u64, b as u64, b_len) as u32
}

/// CRC64/NVME of a buffer (S3's default full-object checksum), hardware-accelerated.
pub fn crc64nvme(data: &[u8]) -> u64 {
    crc_fast::checksum(CrcAlgorithm::Crc64Nvme, data)
}

/// CRC64/NVME of `a ++ b` given CRC64(a), CRC64(b) and `b`'s length.
pub fn crc64nvme_combine(a: u64, b: u64, b_len: u64) -> u64 {
    crc_fast::checksum_combine(CrcAlgorithm::Crc64Nvme, a, b, b_len)
}

/// Formats a CRC64NVME the way ferry compares it: 16 lowercase hex digits.
pub fn crc64_hex(crc: u64) -> String {
    format!("{crc:016x}")
}

/// Formats a CRC32C the way ferry records it: 8 lowercase hex digits.
pub fn crc32c_hex(crc: u32) -> String {
    format!("{crc:08x}")
}

/// The digests of one object, fed its parts in order: SHA-256, CRC32C and CRC64NVME (the CRCs
/// per part, combined), and optionally the check of the source's MD5-shaped ETag on the same
/// bytes.
#[derive(Clone)]
pub struct ObjectDigest {
    sha256: Sha256,
    crc32c: u32,
    crc64: u64,
    len: u64,
    etag: Option<Md5Etag>,
}

impl Default for ObjectDigest {
    fn default() -> Self {
        Self { sha256: Sha256::new(), crc32c: 0, crc64: 0, len: 0, etag: None }
    }
}

impl ObjectDigest {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next part, whose CRC32C the caller already computed (it was sent as the part's
    /// checksum header), so the bytes are walked once more only for SHA-256.
    pub fn push_part(&mut self, data: &[u8], part_crc: u32) {
        self.sha256.update(data);
        if let Some(etag) = &mut self.etag {
            etag.update(data);
        }
        self.crc32c = if self.len == 0 { part_crc } else { crc32c_combine(self.crc32c, part_crc, data.len() as u64) };
        let part_crc64 = crc64nvme(data);
        self.crc64 = if self.len == 0 { part_crc64 } else { crc64nvme_combine(self.crc64, part_crc64, data.len() as u64) };
        self.len += data.len() as u64;
    }

    /// Adds the next bytes, computing their CRC32C.
    pub fn update(&mut self, data: &[u8]) {
        let crc = crc32c(data);
        self.push_part(data, crc);
    }

    /// Also checks the bytes against the source's MD5-shaped ETag. Call before the first part.
    pub fn with_etag(mut self, check: Option<Md5Etag>) -> Self {
        self.etag = check;
        self
    }

    /// The ETag check riding along, if any.
    pub fn etag(&self) -> Option<&Md5Etag> {
        self.etag.as_ref()
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The running state, to persist so a resumed copy need not re-read what it already hashed:
    /// the SHA-256 state, the CRC32C, the length and the CRC64NVME so far, then the ETag
    /// check's state if any.
    pub fn save(&self) -> Vec<u8> {
        let mut out = self.sha256.serialize().to_vec();
        out.extend_from_slice(&self.crc32c.to_be_bytes());
        out.extend_from_slice(&self.len.to_be_bytes());
        out.extend_from_slice(&self.crc64.to_be_bytes());
        if let Some(etag) = &self.etag {
            etag.save(&mut out);
        }
        out
    }

    /// Restores a state written by [`ObjectDigest::save`]; `None` if it is not one.
    pub fn restore(saved: &[u8]) -> Option<ObjectDigest> {
        let (sha, tail) = saved.split_at_checked(Sha256::new().serialize().len())?;
        let (crc32c, tail) = tail.split_at_checked(4)?;
        let (len, tail) = tail.split_at_checked(8)?;
        // A state saved before ferry kept a CRC64NVME ends here: not restorable, hash again.
        let (crc64, etag) = tail.split_at_checked(8)?;
        let sha256 = Sha256::deserialize(&sha.try_into().ok()?).ok()?;
        let crc32c = u32::from_be_bytes(crc32c.try_into().ok()?);
        let len = u64::from_be_bytes(len.try_into().ok()?);
        let crc64 = u64::from_be_bytes(crc64.try_into().ok()?);
        let etag = if etag.is_empty() { None } else { Some(Md5Etag::restore(etag)?) };
        Some(ObjectDigest { sha256, crc32c, crc64, len, etag })
    }

    /// The CRC32C of everything pushed so far, 8 hex digits.
    pub fn crc32c_hex(&self) -> String {
        crc32c_hex(self.crc32c)
    }

    /// The CRC64NVME of everything pushed so far, 16 hex digits.
    pub fn crc64nvme_hex(&self) -> String {
        crc64_hex(self.crc64)
    }

    /// `(sha256 hex, crc32c hex)` of everything pushed so far.
    pub fn finish(self) -> (String, String) {
        (hex::encode(self.sha256.finalize()), crc32c_hex(self.crc32c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_part_crcs_equal_the_straight_crc() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        for split in [1usize, 7, 4096, 33_333, 99_999] {
            let mut d = ObjectDigest::new();
            for chunk in data.chunks(split) {
                d.update(chunk);
            }
            assert_eq!(d.clone().finish().1, crc32c_hex(crc32c(&data)), "split {split}");
        }
    }

    #[test]
    fn a_saved_state_finishes_with_the_same_digests() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut whole = ObjectDigest::new();
        whole.update(&data);
        let mut first = ObjectDigest::new();
        first.update(&data[..123_457]);
        let mut resumed = ObjectDigest::restore(&first.save()).expect("restores");
        assert_eq!(resumed.crc64nvme_hex(), first.crc64nvme_hex());
        resumed.update(&data[123_457..]);
        assert_eq!(resumed.len(), data.len() as u64);
        assert_eq!(resumed.crc64nvme_hex(), whole.crc64nvme_hex());
        assert_eq!(resumed.finish(), whole.finish());
        assert!(ObjectDigest::restore(b"not a state").is_none());
    }

    proptest::proptest! {
        /// Any split into parts, combined in order, gives the CRC of the whole.
        #[test]
        fn combining_part_crcs_matches_a_straight_crc(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..20_000),
                                                     cuts in proptest::collection::vec(0usize..20_000, 0..12)) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (data.len() + 1)).collect();
            cuts.sort_unstable();
            let mut d = ObjectDigest::new();
            let mut start = 0;
            for cut in cuts.into_iter().chain([data.len()]) {
                d.update(&data[start..cut]);
                start = cut;
            }
            proptest::prop_assert_eq!(d.finish().1, crc32c_hex(crc32c(&data)));
        }

        /// The CRC64NVME too, and an MD5 ETag rebuilt over the same random reads matches.
        #[test]
        fn crc64_and_md5_etags_hold_over_random_splits(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..40_000),
                                                       cuts in proptest::collection::vec(0usize..40_000, 0..12),
                                                       source_part in 1u64..10_000) {
            use md5::Digest as _;
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (data.len() + 1)).collect();
            cuts.sort_unstable();
            let chunks: Vec<&[u8]> = data.chunks(source_part as usize).collect();
            let mut all = md5::Md5::new();
            for c in &chunks {
                all.update(md5::Md5::digest(c));
            }
            let etag = format!("{}-{}", hex::encode(all.finalize()), chunks.len());
            let check = Md5Etag::new(&etag, data.len() as u64, Some(source_part));
            let mut d = ObjectDigest::new().with_etag(check);
            let mut start = 0;
            for cut in cuts.into_iter().chain([data.len()]) {
                d.update(&data[start..cut]);
                start = cut;
            }
            proptest::prop_assert_eq!(d.crc64nvme_hex(), crc64_hex(crc64nvme(&data)));
            proptest::prop_assert!(d.etag().expect("an etag check").matches());
        }

        /// Combining is associative: (a+b)+c equals a+(b+c), so parts may be joined in any grouping.
        #[test]
        fn combining_is_associative(a in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2_000),
                                    b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2_000),
                                    c in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2_000)) {
            let (ca, cb, cc) = (crc32c(&a), crc32c(&b), crc32c(&c));
            let left = crc32c_combine(crc32c_combine(ca, cb, b.len() as u64), cc, c.len() as u64);
            let right = crc32c_combine(ca, crc32c_combine(cb, cc, c.len() as u64), (b.len() + c.len()) as u64);
            proptest::prop_assert_eq!(left, right);
        }
    }

    #[test]
    fn known_vectors() {
        // RFC 3720 test vector and SHA-256 of the empty string.
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        // CRC-64/NVME check value.
        assert_eq!(crc64nvme(b"123456789"), 0xae8b_1486_0a79_9888);
        let (sha, crc) = ObjectDigest::new().finish();
        assert_eq!(sha, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(crc, "00000000");
    }
}
