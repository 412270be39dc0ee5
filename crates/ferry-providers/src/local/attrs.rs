//! Headers, user metadata and tags kept beside a local file, when asked (`--local-metadata`):
//! in an extended attribute of the file, or in a sidecar file under a reserved folder.
//!
//! Both hold the same JSON document ([`Kept`]): `{"content_type": …, "headers": {…},
//! "metadata": {…}, "tags": {…}}`, fields left out when empty.
//! - `xattr`: one attribute, `user.ferry.attrs`, on the file itself (set on the temp file before
//!   it is fsynced and renamed, so the file never appears without it). File systems without user
//!   xattrs (some tmpfs, FAT) fail the write.
//! - `sidecar`: `ROOT/.ferry-meta/KEY.json`, written (the same safe way as any file) after the
//!   object. Nothing under `.ferry-meta/` is listed as an object, and no object key may start
//!   with it, so a sidecar never collides with a real key and is never copied as one.

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
    /// A sidecar file, `.ferry-meta/KEY.json`.
    Sidecar,
}

/// The reserved folder of sidecar files, at the root.
pub const SIDECAR_DIR: &str = ".ferry-meta";

/// The extended attribute that holds [`Kept`].
pub(super) const XATTR: &str = "user.ferry.attrs";

/// What a local file keeps of its object's attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Kept {
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
    /// The document for `attrs`, or `None` when there is nothing to keep.
    pub(super) fn of(attrs: &PutAttrs) -> Option<Vec<u8>> {
        let kept = Kept {
            content_type: attrs.content_type.clone(),
            headers: attrs.headers.clone(),
            metadata: attrs.metadata.clone(),
            tags: attrs.tags.clone().unwrap_or_default(),
        };
        (kept != Kept::default()).then(|| serde_json::to_vec(&kept).expect("attributes serialize"))
    }

    /// Puts a kept document's attributes on `entry` (a document that does not parse is ignored:
    /// the file's own type guess stays).
    pub(super) fn apply(json: &[u8], entry: &mut ObjectEntry) {
        let Ok(kept) = serde_json::from_slice::<Kept>(json) else { return };
        if kept.content_type.is_some() {
            entry.content_type = kept.content_type;
        }
        entry.headers = kept.headers;
        entry.metadata = kept.metadata;
        entry.tags = Some(kept.tags);
    }
}

/// The sidecar key of `key`.
pub(super) fn sidecar_key(key: &str) -> String {
    format!("{SIDECAR_DIR}/{key}.json")
}

/// Whether `key` lies in the sidecar folder.
pub(super) fn is_sidecar(key: &str) -> bool {
    key.strip_prefix(SIDECAR_DIR).is_some_and(|rest| rest.starts_with('/'))
}

/// The kept document in `file`'s extended attribute, if it has one.
pub(super) fn read_xattr(file: &std::fs::File) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 64 << 10];
    let n = rustix::fs::fgetxattr(file, XATTR, &mut buf[..]).ok()?;
    buf.truncate(n);
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecars_have_their_own_folder_and_documents_round_trip() {
        assert_eq!(sidecar_key("a/b.txt"), ".ferry-meta/a/b.txt.json");
        assert!(is_sidecar(".ferry-meta/a/b.txt.json"));
        for user in [".ferry-meta", ".ferry-metadata/x", "a/.ferry-meta/x", "ferry-meta/x"] {
            assert!(!is_sidecar(user), "{user}");
        }
        assert_eq!(Kept::of(&PutAttrs::default()), None, "nothing to keep, no document");
        let attrs = PutAttrs {
            content_type: Some("text/html".into()),
            metadata: BTreeMap::from([("Owner-Team".to_string(), "web".to_string())]),
            headers: Headers { content_encoding: Some("gzip".into()), ..Headers::default() },
            tags: Some(Tags::from([("team".to_string(), "web".to_string())])),
            ..PutAttrs::default()
        };
        let json = Kept::of(&attrs).unwrap();
        let mut entry = ObjectEntry { content_type: Some("guessed/type".into()), ..ObjectEntry::default() };
        Kept::apply(&json, &mut entry);
        assert_eq!(
            (entry.content_type, entry.headers, entry.metadata, entry.tags),
            (attrs.content_type, attrs.headers, attrs.metadata, attrs.tags)
        );
    }
}
