//! Headers, user metadata and tags kept beside a local file, when asked (`--local-metadata`):
//! in an extended attribute of the file, or in a sidecar file under a reserved folder.
//!
//! Both hold the same JSON document ([`Kept`]): `{"content_type": …, "headers": {…},
//! "metadata": {…}, "tags": {…}}`, fields left out when empty.
//! - `xattr`: one attribute, `user.ferry.attrs`, on the file itself (set on the temp file before
//!   it is fsynced and renamed, so the file never appears without it). File systems without user
//!   xattrs (some tmpfs, FAT) fail the write.
//! - `sidecar`: `ROOT/.ferry-meta/HH/SHA.json`, where SHA is the SHA-256 of the key in hex and
//!   HH its first two digits, written (the same safe way as any file) after the object. Named by
//!   a digest, no two keys' sidecars collide (`a` and `a.json/b` did when the path was the key's
//!   own), every name is short, and the document records its key (checked on read).
//!
//! `.ferry-meta` at the root is ferry's whatever the mode ([`is_reserved`]): an object with that
//! key or under it is refused at a local destination, and a local source never lists it as
//! objects (with sidecars, its folder is read as metadata; otherwise it is named as skipped), so
//! a sidecar can neither collide with a real key nor be planted by a source.
//!
//! Reads are bounded ([`MAX_DOC`]) and strict: a document that does not parse, records another
//! key, is too large, or a sidecar that is not a regular file (a symlink is never followed) is
//! an error of that object ([`ProviderError::Metadata`](crate::ProviderError::Metadata)), never
//! ignored.

use crate::PutAttrs;
use ferry_core::{Headers, ObjectEntry, Tags};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where a local location keeps what travels with an object besides its bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LocalMetadata {
    /// Bytes (and permission bits) only.
    #[default]
    None,
    /// One extended attribute of the file, `user.ferry.attrs`.
    Xattr,
    /// A sidecar file, `.ferry-meta/HH/SHA256(KEY).json`.
    Sidecar,
}

/// The reserved folder of sidecar files, at the root.
pub const SIDECAR_DIR: &str = ".ferry-meta";

/// The largest kept document read (a sidecar's size, an xattr's value): far above what any
/// store's headers, metadata and tags add up to (S3 allows 2 KiB of metadata, GCS and Azure
/// 8 KiB), and the largest xattr value Linux allows.
pub const MAX_DOC: usize = 64 << 10;

/// The extended attribute that holds [`Kept`].
pub(super) const XATTR: &str = "user.ferry.attrs";

/// What a local file keeps of its object's attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Kept {
    /// The object's key (in a sidecar, whose name is a digest of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Headers::is_empty")]
    headers: Headers,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    metadata: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    tags: Tags,
}

impl Kept {
    /// The document for `attrs` (recording `key` if given), or `None` when there is nothing to
    /// keep.
    pub(super) fn of(attrs: &PutAttrs, key: Option<&str>) -> Option<Vec<u8>> {
        let kept = Kept {
            key: None,
            content_type: attrs.content_type.clone(),
            headers: attrs.headers.clone(),
            metadata: attrs.metadata.clone(),
            tags: attrs.tags.clone().unwrap_or_default(),
        };
        (kept != Kept::default()).then(|| serde_json::to_vec(&Kept { key: key.map(str::to_string), ..kept }).expect("attributes serialize"))
    }

    /// Puts a kept document's attributes on `entry`, or says why it cannot: it does not parse
    /// as the document, is over [`MAX_DOC`], or records another key than `entry`'s.
    pub(super) fn apply(json: &[u8], entry: &mut ObjectEntry) -> Result<(), String> {
        if json.len() > MAX_DOC {
            return Err(format!("over {} KiB", MAX_DOC >> 10));
        }
        let malformed = |e: serde_json::Error| format!("not ferry's metadata document: {e}");
        // An object, not the array form serde would also take for a struct.
        let value = serde_json::from_slice::<serde_json::Value>(json).map_err(malformed)?;
        if !value.is_object() {
            return Err("not ferry's metadata document: not a JSON object".into());
        }
        let kept = serde_json::from_value::<Kept>(value).map_err(malformed)?;
        if let Some(key) = kept.key.as_ref().filter(|k| **k != entry.key) {
            return Err(format!("it records the key {key:?}"));
        }
        if kept.content_type.is_some() {
            entry.content_type = kept.content_type;
        }
        entry.headers = kept.headers;
        entry.metadata = kept.metadata;
        entry.tags = Some(kept.tags);
        Ok(())
    }
}

/// The sidecar key of `key`: `.ferry-meta/HH/SHA.json` (SHA-256 of the key, hex).
pub(super) fn sidecar_key(key: &str) -> String {
    let mut digest = ferry_core::ObjectDigest::new();
    digest.update(key.as_bytes());
    let (sha, _) = digest.finish();
    format!("{SIDECAR_DIR}/{}/{sha}.json", &sha[..2])
}

/// Whether `key` is ferry's at a local root: `.ferry-meta` itself or anything under it.
pub(super) fn is_reserved(key: &str) -> bool {
    key.strip_prefix(SIDECAR_DIR).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The kept document in `file`'s extended attribute, if it has one (a file system without user
/// xattrs has none); a value over [`MAX_DOC`] is an error, not a document.
pub(super) fn read_xattr(file: &std::fs::File) -> std::result::Result<Option<Vec<u8>>, XattrError> {
    use rustix::io::Errno;
    let mut buf = vec![0u8; MAX_DOC];
    match rustix::fs::fgetxattr(file, XATTR, &mut buf[..]) {
        Ok(n) => {
            buf.truncate(n);
            Ok(Some(buf))
        }
        Err(Errno::NODATA | Errno::NOTSUP) => Ok(None),
        Err(Errno::RANGE) => Err(XattrError::TooLarge),
        Err(e) => Err(XattrError::Io(e.into())),
    }
}

/// Why an xattr could not be read.
pub(super) enum XattrError {
    TooLarge,
    Io(std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecars_have_their_own_folder_and_documents_round_trip() {
        let side = sidecar_key("a/b.txt");
        assert!(side.starts_with(".ferry-meta/") && side.ends_with(".json") && side.len() == ".ferry-meta/".len() + 3 + 64 + 5);
        assert!(is_reserved(&side) && is_reserved(".ferry-meta"));
        // Keys whose own names would nest (`a` and `a.json/b`) get unrelated sidecars.
        let (a, nested) = (sidecar_key("a"), sidecar_key("a.json/b"));
        assert!(!nested.starts_with(a.trim_end_matches(".json")) && a != nested);
        for user in [".ferry-metadata/x", "a/.ferry-meta/x", "ferry-meta/x", ".ferry-meta.json"] {
            assert!(!is_reserved(user), "{user}");
        }
        assert_eq!(Kept::of(&PutAttrs::default(), Some("k")), None, "nothing to keep, no document");
        let attrs = PutAttrs {
            content_type: Some("text/html".into()),
            metadata: BTreeMap::from([("Owner-Team".to_string(), "web".to_string())]),
            headers: Headers { content_encoding: Some("gzip".into()), ..Headers::default() },
            tags: Some(Tags::from([("team".to_string(), "web".to_string())])),
            ..PutAttrs::default()
        };
        let json = Kept::of(&attrs, Some("k")).unwrap();
        let mut entry = ObjectEntry { key: "k".into(), content_type: Some("guessed/type".into()), ..ObjectEntry::default() };
        Kept::apply(&json, &mut entry).unwrap();
        assert_eq!(
            (entry.content_type, entry.headers, entry.metadata, entry.tags),
            (attrs.content_type, attrs.headers, attrs.metadata, attrs.tags)
        );
    }

    #[test]
    fn malformed_documents_are_errors() {
        let mut entry = ObjectEntry { key: "k".into(), ..ObjectEntry::default() };
        for bad in [&b"{\"metadata\": "[..], br#"{"metadata": 5}"#, br#"{"tags": {"a": 1}}"#, br#"{"key": "other"}"#, b"[]"] {
            assert!(Kept::apply(bad, &mut entry).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let big = format!(r#"{{"metadata": {{"a": "{}"}}}}"#, "x".repeat(MAX_DOC));
        assert!(Kept::apply(big.as_bytes(), &mut entry).is_err());
        assert!(Kept::apply(br#"{"key": "k", "metadata": {"a": "1"}}"#, &mut entry).is_ok());
        assert_eq!(entry.metadata.get("a").map(String::as_str), Some("1"));
    }
}
