//! `manifest.json`: the header that seals a generation.

use crate::{ManifestError, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const HEADER_FILE: &str = "manifest.json";
pub const FORMAT: &str = "ferry-manifest";
pub const FORMAT_VERSION: u32 = 1;
/// Generation directories are named `gen-0001`, `gen-0002`, …
pub const GENERATION_PREFIX: &str = "gen-";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub objects: u64,
    pub bytes: u64,
    /// Listed entries recorded but not copied (rows with a `skipped` reason): not in `objects`
    /// or `bytes`.
    pub skipped: u64,
    /// `skipped`, by reason.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub skipped_by_reason: std::collections::BTreeMap<ferry_core::SkipReason, u64>,
    /// Objects (in `objects`) archived when listed, which cannot be read until restored, and
    /// their bytes (see `ferry_core::storage`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub archived: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub archived_bytes: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub file: String,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestHeader {
    pub format: String,
    pub format_version: u32,
    pub generation: u32,
    pub parent: Option<u32>,
    /// Source and destination, as redacted URLs (locations never carry credentials).
    pub source: String,
    pub destination: String,
    pub created_at: DateTime<Utc>,
    pub totals: Totals,
    pub shards: Vec<ShardInfo>,
    /// Every version of each key was listed (`--all-versions`): each entry is one version
    /// (pinned to it), a key's versions oldest first, delete markers as skipped entries.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all_versions: bool,
    /// A delta generation's change set: `changes.jsonl`, a line per key added, changed,
    /// deleted or touched since the parent, with the old and new identity (see
    /// `docs/job-directory.md`), hashed like a shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<ShardInfo>,
    /// A table export's entries: `tables.json` (each table, its files, their snapshot and the
    /// database's figures), hashed like a shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<ShardInfo>,
}

impl ManifestHeader {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(HEADER_FILE)
    }

    pub fn read(dir: &Path) -> Result<ManifestHeader> {
        let path = Self::path(dir);
        let text = std::fs::read(&path).map_err(|source| ManifestError::Io { path: path.clone(), source })?;
        Self::parse(&text, &path)
    }

    /// Parses a header's bytes (`path` names it in errors): a header or an error, never a panic.
    pub fn parse(text: &[u8], path: &Path) -> Result<ManifestHeader> {
        let header: ManifestHeader =
            serde_json::from_slice(text).map_err(|source| ManifestError::Header { path: path.to_path_buf(), source })?;
        if header.format != FORMAT || header.format_version != FORMAT_VERSION {
            return Err(ManifestError::Corrupt {
                path: path.to_path_buf(),
                reason: format!("format {} v{} is not {FORMAT} v{FORMAT_VERSION}", header.format, header.format_version),
            });
        }
        Ok(header)
    }

    /// Writes the header atomically (temp file, fsync, rename, then the directory and its parent
    /// fsynced so the rename survives a power loss): the generation is sealed once this returns.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = Self::path(dir);
        let tmp = dir.join(format!("{HEADER_FILE}.tmp"));
        let io = |source| ManifestError::Io { path: path.clone(), source };
        let text = serde_json::to_vec_pretty(self).expect("header serializes");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(&text).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &path).map_err(io)?;
        // The header's entry, then the generation directory's own entry in its parent.
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        for d in [Some(dir.as_path()), dir.parent()].into_iter().flatten() {
            std::fs::File::open(d).and_then(|f| f.sync_all()).map_err(|source| ManifestError::Io { path: d.to_path_buf(), source })?;
        }
        Ok(())
    }

    /// The digest of the sealed generation in `dir`: the SHA-256 (hex) of its `manifest.json`,
    /// which holds each shard's SHA-256 (checked whenever a shard is read).
    pub fn digest(dir: &Path) -> Result<String> {
        use sha2::Digest;
        let path = Self::path(dir);
        let text = std::fs::read(&path).map_err(|source| ManifestError::Io { path: path.clone(), source })?;
        Ok(hex::encode(sha2::Sha256::digest(&text)))
    }

    /// The directory name of generation `n`.
    pub fn dir_name(generation: u32) -> String {
        format!("{GENERATION_PREFIX}{generation:04}")
    }
}
