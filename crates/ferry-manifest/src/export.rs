//! Plain forms of a sealed generation: CSV (RFC 4180) and JSON Lines.

use crate::{ManifestError, ManifestReader, Result};
use ferry_core::{Evidence, ObjectEntry};
use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    Jsonl,
}

const COLUMNS: [&str; 12] =
    ["key", "size", "last_modified", "etag", "version", "crc32c", "md5", "content_type", "sha256", "verified_by", "note", "skipped"];

/// What a copy recorded about one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proof {
    /// SHA-256 of the bytes read from the source and sent (none when the service copied them).
    pub sha256: Option<String>,
    /// Which check proved them (written by its stable name, e.g. `source crc32c`).
    pub verified_by: Option<Evidence>,
    /// The version of the object that was copied, when it is not the manifest's entry (the
    /// source changed and the object was restarted): its size, etag, version, checksums and
    /// time are written instead of the sealed ones.
    pub copied: Option<ObjectEntry>,
    /// Why the row differs from the sealed manifest (the `note` column).
    pub note: Option<String>,
}

/// Writes every entry of `reader` to `out`. `proof_of` supplies what a copy recorded for the
/// object (from the journal), or `None` for objects it knows nothing about. A row whose object
/// was copied in another version than the manifest lists shows that version, and says so in
/// its `note`.
pub fn export(
    reader: &ManifestReader,
    format: ExportFormat,
    out: &mut dyn Write,
    mut proof_of: impl FnMut(&ObjectEntry) -> Option<Proof>,
) -> Result<u64> {
    let io = |source| ManifestError::Io { path: "<export output>".into(), source };
    if format == ExportFormat::Csv {
        writeln!(out, "{}", COLUMNS.join(",")).map_err(io)?;
    }
    let mut rows = 0;
    reader.for_each_batch::<ManifestError>(|batch| {
        for e in &batch {
            let Proof { sha256: sha, verified_by, copied, note } = proof_of(e).unwrap_or_default();
            let e = copied.as_ref().unwrap_or(e);
            match format {
                ExportFormat::Csv => {
                    let fields = [
                        e.key.clone(),
                        e.size.to_string(),
                        e.last_modified.map(|t| t.to_rfc3339()).unwrap_or_default(),
                        e.etag.clone().unwrap_or_default(),
                        e.version.clone().unwrap_or_default(),
                        e.checksums.crc32c.clone().unwrap_or_default(),
                        e.checksums.md5.clone().unwrap_or_default(),
                        e.content_type.clone().unwrap_or_default(),
                        sha.unwrap_or_default(),
                        verified_by.map(|v| v.as_str().to_string()).unwrap_or_default(),
                        note.unwrap_or_default(),
                        e.skipped.map(|r| r.as_str().to_string()).unwrap_or_default(),
                    ];
                    let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
                    writeln!(out, "{}", line.join(",")).map_err(io)?;
                }
                ExportFormat::Jsonl => {
                    let mut v = serde_json::to_value(e).expect("entry serializes");
                    // The listed checksums are columns of the export: null when unknown.
                    v["crc32c"] = e.checksums.crc32c.clone().map(Into::into).unwrap_or(serde_json::Value::Null);
                    v["md5"] = e.checksums.md5.clone().map(Into::into).unwrap_or(serde_json::Value::Null);
                    v["sha256"] = sha.map(Into::into).unwrap_or(serde_json::Value::Null);
                    v["verified_by"] = verified_by.map(|v| v.as_str().into()).unwrap_or(serde_json::Value::Null);
                    v["note"] = note.map(Into::into).unwrap_or(serde_json::Value::Null);
                    v["skipped"] = e.skipped.map(|r| r.as_str().into()).unwrap_or(serde_json::Value::Null);
                    writeln!(out, "{v}").map_err(io)?;
                }
            }
            rows += 1;
        }
        Ok(())
    })?;
    Ok(rows)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManifestWriter;

    #[test]
    fn csv_quotes_awkward_keys_and_jsonl_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ManifestWriter::create(dir.path(), 1, None, "file:///a", "s3://b/").unwrap();
        let e = ObjectEntry { key: "a,\"b\"\nc".into(), size: 3, ..Default::default() };
        w.push(&e).unwrap();
        w.seal().unwrap();
        let r = ManifestReader::open(dir.path()).unwrap();
        let mut csv = Vec::new();
        let proof = Proof { sha256: Some("ab".into()), verified_by: Some(Evidence::SizeOnly), ..Proof::default() };
        export(&r, ExportFormat::Csv, &mut csv, |_| Some(proof.clone())).unwrap();
        let csv = String::from_utf8(csv).unwrap();
        assert!(csv.contains("\"a,\"\"b\"\"\nc\",3,"), "{csv}");
        assert!(csv.trim_end().ends_with(",ab,size only,,"), "{csv}");
        let mut jl = Vec::new();
        export(&r, ExportFormat::Jsonl, &mut jl, |_| None).unwrap();
        let v: serde_json::Value = serde_json::from_slice(jl.split(|b| *b == b'\n').next().unwrap()).unwrap();
        assert_eq!(v["key"], "a,\"b\"\nc");
        assert_eq!(v["sha256"], serde_json::Value::Null);
        // Unknown listed checksums are written as null columns, as they always were.
        assert!(v.get("crc32c").is_some_and(|c| c.is_null()) && v.get("md5").is_some_and(|m| m.is_null()), "{v}");
    }

    // Issue 12, case 13: a row copied in another version than the manifest's shows that version.
    #[test]
    fn a_restarted_row_shows_the_version_copied_and_why() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ManifestWriter::create(dir.path(), 1, None, "file:///a", "s3://b/").unwrap();
        w.push(&ObjectEntry { key: "k".into(), size: 6, etag: Some("old".into()), ..Default::default() }).unwrap();
        w.seal().unwrap();
        let r = ManifestReader::open(dir.path()).unwrap();
        let proof = Proof {
            sha256: Some("ab".into()),
            verified_by: Some(Evidence::SizeOnly),
            copied: Some(ObjectEntry { key: "k".into(), size: 26, etag: Some("new".into()), ..Default::default() }),
            note: Some("restarted: changed".into()),
        };
        let mut jl = Vec::new();
        export(&r, ExportFormat::Jsonl, &mut jl, |_| Some(proof.clone())).unwrap();
        let v: serde_json::Value = serde_json::from_slice(jl.split(|b| *b == b'\n').next().unwrap()).unwrap();
        assert_eq!((v["size"].as_u64(), v["etag"].as_str(), v["note"].as_str()), (Some(26), Some("new"), Some("restarted: changed")));
        let mut csv = Vec::new();
        export(&r, ExportFormat::Csv, &mut csv, |_| Some(proof.clone())).unwrap();
        let csv = String::from_utf8(csv).unwrap();
        assert_eq!(csv.lines().nth(1), Some("k,26,,new,,,,,ab,size only,restarted: changed,"), "{csv}");
    }
}
