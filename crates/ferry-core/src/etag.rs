//! S3-style MD5 entity tags, checked while streaming: the evidence an S3 source offers when it
//! holds no checksum of the object. A single-part object's ETag is the MD5 of its bytes; a
//! multipart object's is the MD5 of its parts' MD5s followed by `-N`. Given the source's part
//! size, the bytes ferry reads (in any part plan of its own, in order) are hashed into the same
//! form and compared at the end.
//!
//! Objects encrypted with SSE-KMS or SSE-C have ETags that are not MD5s; callers must not ask
//! for this check on those.

use md5::{Digest, Md5};
use sha2::digest::common::hazmat::SerializableState;

/// The running check of one object against its MD5-shaped ETag.
#[derive(Clone)]
pub struct Md5Etag {
    expected: String,
    /// Bytes per source part (the whole object for a single-part ETag).
    part_size: u64,
    parts: Vec<[u8; 16]>,
    current: Md5,
    filled: u64,
    multipart: bool,
}

fn is_md5_hex(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The ETag S3 gives an object completed from parts whose ETags (their MD5s, hex) are `parts`:
/// the MD5 of the parts' MD5s, then `-N`. `None` when a part's ETag is not an MD5.
pub fn multipart_etag<'a>(parts: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut whole = Md5::new();
    let mut n = 0;
    for part in parts {
        let part = part.trim_matches('"');
        if !is_md5_hex(part) {
            return None;
        }
        whole.update(hex::decode(part).ok()?);
        n += 1;
    }
    Some(format!("{}-{n}", hex::encode(whole.finalize())))
}

impl Md5Etag {
    /// The check for an object of `size` bytes whose ETag is `etag` (quotes stripped), or `None`
    /// when the ETag is not MD5-shaped or a multipart ETag comes without a `part_size` that
    /// gives its part count.
    pub fn new(etag: &str, size: u64, part_size: Option<u64>) -> Option<Md5Etag> {
        let etag = etag.trim_matches('"').to_ascii_lowercase();
        let (hash, count) = match etag.split_once('-') {
            Some((hash, n)) => (hash, Some(n.parse::<u64>().ok()?)),
            None => (etag.as_str(), None),
        };
        if !is_md5_hex(hash) {
            return None;
        }
        let (part_size, multipart) = match count {
            None => (size.max(1), false),
            Some(n) => {
                let part = part_size.filter(|p| *p > 0)?;
                if size.div_ceil(part).max(1) != n {
                    return None;
                }
                (part, true)
            }
        };
        Some(Md5Etag { expected: etag, part_size, parts: Vec::new(), current: Md5::new(), filled: 0, multipart })
    }

    /// Hashes the next bytes of the object.
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = (self.part_size - self.filled) as usize;
            let take = room.min(data.len());
            self.current.update(&data[..take]);
            self.filled += take as u64;
            data = &data[take..];
            if self.filled == self.part_size {
                self.parts.push(std::mem::take(&mut self.current).finalize().into());
                self.filled = 0;
            }
        }
    }

    /// The ETag the bytes so far would have.
    pub fn computed(&self) -> String {
        let mut parts = self.parts.clone();
        if self.filled > 0 || parts.is_empty() {
            parts.push(self.current.clone().finalize().into());
        }
        if !self.multipart {
            return hex::encode(parts[0]);
        }
        let mut all = Md5::new();
        for p in &parts {
            all.update(p);
        }
        format!("{}-{}", hex::encode(all.finalize()), parts.len())
    }

    pub fn expected(&self) -> &str {
        &self.expected
    }

    pub fn matches(&self) -> bool {
        self.computed() == self.expected
    }

    /// The running state, appended to an [`crate::ObjectDigest`]'s.
    pub(crate) fn save(&self, out: &mut Vec<u8>) {
        out.push(self.multipart as u8);
        out.extend_from_slice(&self.part_size.to_be_bytes());
        out.extend_from_slice(&self.filled.to_be_bytes());
        out.extend_from_slice(&(self.parts.len() as u32).to_be_bytes());
        for p in &self.parts {
            out.extend_from_slice(p);
        }
        out.extend_from_slice(&self.current.serialize());
        out.extend_from_slice(self.expected.as_bytes());
    }

    pub(crate) fn restore(saved: &[u8]) -> Option<Md5Etag> {
        let (&multipart, rest) = saved.split_first()?;
        let (part_size, rest) = rest.split_at_checked(8)?;
        let (filled, rest) = rest.split_at_checked(8)?;
        let (n, mut rest) = rest.split_at_checked(4)?;
        let n = u32::from_be_bytes(n.try_into().ok()?) as usize;
        let mut parts = Vec::with_capacity(n.min(10_000));
        for _ in 0..n {
            let (p, tail) = rest.split_at_checked(16)?;
            parts.push(p.try_into().ok()?);
            rest = tail;
        }
        let state_len = Md5::new().serialize().len();
        let (state, expected) = rest.split_at_checked(state_len)?;
        let current = Md5::deserialize(&state.try_into().ok()?).ok()?;
        Some(Md5Etag {
            expected: String::from_utf8(expected.to_vec()).ok()?,
            part_size: u64::from_be_bytes(part_size.try_into().ok()?),
            parts,
            current,
            filled: u64::from_be_bytes(filled.try_into().ok()?),
            multipart: multipart == 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multipart_etag_is_the_md5_of_the_part_md5s() {
        let (a, b) = (vec![1u8; 100], vec![2u8; 50]);
        let mut check =
            Md5Etag::new(&super::multipart_etag([md5_hex(&a).as_str(), md5_hex(&b).as_str()]).unwrap(), 150, Some(100)).unwrap();
        check.update(&a);
        check.update(&b);
        assert!(check.matches());
        assert_eq!(super::multipart_etag(["not-an-md5"]), None);
    }

    fn md5_hex(data: &[u8]) -> String {
        hex::encode(Md5::digest(data))
    }

    fn multipart_etag(data: &[u8], part: usize) -> String {
        let mut all = Md5::new();
        let chunks: Vec<&[u8]> = data.chunks(part).collect();
        for c in &chunks {
            all.update(Md5::digest(c));
        }
        format!("{}-{}", hex::encode(all.finalize()), chunks.len())
    }

    #[test]
    fn single_and_multipart_etags_match_whatever_the_read_sizes() {
        let data: Vec<u8> = (0..1_000_003u32).map(|i| (i.wrapping_mul(2654435761) >> 7) as u8).collect();
        let single = md5_hex(&data);
        let multi = multipart_etag(&data, 300_000);
        for read in [1usize, 4096, 299_999, 300_000, 700_001] {
            let mut a = Md5Etag::new(&format!("\"{single}\""), data.len() as u64, None).unwrap();
            let mut b = Md5Etag::new(&multi, data.len() as u64, Some(300_000)).unwrap();
            for chunk in data.chunks(read) {
                a.update(chunk);
                b.update(chunk);
            }
            assert!(a.matches(), "single, reads of {read}");
            assert!(b.matches(), "multipart, reads of {read}: {} vs {}", b.computed(), b.expected());
        }
        let mut flipped = data.clone();
        flipped[654_321] ^= 4;
        let mut b = Md5Etag::new(&multi, data.len() as u64, Some(300_000)).unwrap();
        b.update(&flipped);
        assert!(!b.matches());
    }

    #[test]
    fn refuses_what_is_not_an_md5_etag() {
        assert!(Md5Etag::new("abc", 10, None).is_none());
        assert!(Md5Etag::new("0123456789abcdef0123456789abcdef-3", 10, None).is_none(), "needs the part size");
        assert!(Md5Etag::new("0123456789abcdef0123456789abcdef-3", 100, Some(10)).is_none(), "10 parts, not 3");
        assert!(Md5Etag::new("0123456789abcdef0123456789abcdef-3", 25, Some(10)).is_some());
    }

    #[test]
    fn a_saved_check_continues_where_it_stopped() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        let multi = multipart_etag(&data, 30_000);
        let mut first = Md5Etag::new(&multi, data.len() as u64, Some(30_000)).unwrap();
        first.update(&data[..45_000]);
        let mut saved = Vec::new();
        first.save(&mut saved);
        let mut resumed = Md5Etag::restore(&saved).unwrap();
        resumed.update(&data[45_000..]);
        assert!(resumed.matches());
    }
}
