//! The awkward tree every round trip carries, and a byte-for-byte tree comparison.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

const MIB: usize = 1 << 20;

/// (relative path, size) of the awkward files: sizes at and around part boundaries, and keys
/// with spaces, `+`, `%`, `#`, NFC and NFD unicode, and a 20-level path.
pub fn awkward_files(large: bool) -> Vec<(String, usize)> {
    let mut files = vec![
        ("empty".to_string(), 0),
        ("one byte".to_string(), 1),
        ("sizes/5MiB-1.bin".to_string(), 5 * MIB - 1),
        ("sizes/5MiB+1.bin".to_string(), 5 * MIB + 1),
        ("sizes/64MiB+1.bin".to_string(), 64 * MIB + 1),
        ("names/with space.txt".to_string(), 10),
        ("names/plus+sign.txt".to_string(), 11),
        ("names/per%cent.txt".to_string(), 12),
        ("names/hash#tag.txt".to_string(), 13),
        ("names/caf\u{e9} nfc.txt".to_string(), 14),
        ("names/cafe\u{301} nfd.txt".to_string(), 15),
        ("names/\u{65e5}\u{672c}\u{8a9e}.txt".to_string(), 16),
        (format!("{}deep.txt", (1..=20).map(|i| format!("d{i}/")).collect::<String>()), 17),
    ];
    if large {
        files.push(("sizes/300MiB.bin".to_string(), 300 * MIB));
    }
    for i in 0..1000 {
        files.push((format!("small/{:02}/f{i:04}.txt", i % 10), 1 + i % 700));
    }
    files
}

/// Writes deterministic pseudo-random contents (different for each path) under `root`.
pub fn write_tree(root: &Path, files: &[(String, usize)]) {
    for (rel, size) in files {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().expect("has parent")).expect("mkdir");
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
        let mut state = u64::from_le_bytes(Sha256::digest(rel.as_bytes())[..8].try_into().expect("8 bytes")) | 1;
        let mut left = *size;
        let mut buf = vec![0u8; MIB.min(left.max(1))];
        while left > 0 {
            let n = buf.len().min(left);
            for chunk in buf[..n].chunks_mut(8) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let bytes = state.to_le_bytes();
                chunk.copy_from_slice(&bytes[..chunk.len()]);
            }
            f.write_all(&buf[..n]).expect("write");
            left -= n;
        }
        f.flush().expect("flush");
    }
}

/// SHA-256 of every regular file under `root`, by relative path.
pub fn digest_tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let entry = entry.expect("dir entry");
            let ty = entry.file_type().expect("file type");
            if ty.is_dir() {
                stack.push(entry.path());
            } else if ty.is_file() {
                let rel = entry.path().strip_prefix(root).expect("under root").to_string_lossy().into_owned();
                out.insert(rel, file_sha256(&entry.path()));
            }
        }
    }
    out
}

/// SHA-256 of bytes, hex.
pub fn file_sha256_of_bytes(bytes: &[u8]) -> String {
    let mut digest = ferry_core::ObjectDigest::new();
    digest.update(bytes);
    digest.finish().0
}

/// SHA-256 of a file, hex.
pub fn file_sha256(path: &Path) -> String {
    use std::io::Read;
    let mut f = std::fs::File::open(path).expect("open");
    let mut digest = ferry_core::ObjectDigest::new();
    let mut buf = vec![0u8; MIB];
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        digest.update(&buf[..n]);
    }
    digest.finish().0
}

/// Panics with the first differences if the two trees are not byte-identical.
pub fn assert_same_tree(expected: &Path, actual: &Path) {
    let (a, b) = (digest_tree(expected), digest_tree(actual));
    let missing: Vec<_> = a.keys().filter(|k| !b.contains_key(*k)).take(5).collect();
    let extra: Vec<_> = b.keys().filter(|k| !a.contains_key(*k)).take(5).collect();
    let differ: Vec<_> = a.iter().filter(|(k, v)| b.get(*k).is_some_and(|w| w != *v)).map(|(k, _)| k).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty() && differ.is_empty(),
        "trees differ: missing {missing:?}, extra {extra:?}, different {differ:?} ({} vs {} files)",
        a.len(),
        b.len()
    );
}
