//! Shipment manifests: what a disk export put on one device, provable on arrival.
//!
//! Each device root gets:
//! - `ferry-shipment.jsonl`: a header line ([`ShipmentHeader`]: which export, source, manifest
//!   generation, layout, device n of m, totals), then one [`ShipmentFile`] per line (path on the
//!   device, the object's key, size, SHA-256, CRC64NVME, CRC32C), in path order. Its SHA-256 is
//!   the shipment's digest, printed at export and checked at ingest (chain of custody).
//! - `SHA256SUMS`: `sha256sum -c SHA256SUMS` run at the device root checks every file.
//! - `ferry-bom.txt` for Data Box layouts: the Data Box BOM form,
//!   `<file size="N" crc64="0x…">path</file>` per file.
//!
//! Every file is written under a temp name, fsynced and renamed into place, then the directory
//! is fsynced: a shipment file is whole or absent.
//!
//! A shipment arrives from outside and is read as hostile: no line is read past [`MAX_LINE`]
//! bytes, device numbers must be in range (at most [`MAX_DEVICES`]), and [`read_checked`] holds
//! the header's `files` and `bytes` to the lines that follow it.

use crate::{ManifestError, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

pub const SHIPMENT_FILE: &str = "ferry-shipment.jsonl";
pub const SUMS_FILE: &str = "SHA256SUMS";
pub const BOM_FILE: &str = "ferry-bom.txt";
pub const FORMAT: &str = "ferry-shipment/1";
/// The most devices one export spans; a shipment claiming more is refused (an export never
/// writes one).
pub const MAX_DEVICES: u32 = 1024;
/// The longest line a shipment manifest may have: a line names one file (a path and a key of at
/// most a few KiB, even JSON-escaped), so a longer one is not a shipment's, and is refused
/// before it is read into memory.
pub const MAX_LINE: usize = 64 << 10;

/// The first line of a shipment manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentHeader {
    pub format: String,
    /// Same on every device of one export.
    pub export_id: String,
    /// The source the manifest listed (credentials never appear in it).
    pub source: String,
    /// The sealed manifest generation the export copied, and the SHA-256 of its header.
    pub generation: u32,
    pub manifest_sha256: String,
    /// The layout name and its options.
    pub layout: serde_json::Value,
    /// This device's number (1-based) among the export's devices, and how many there are.
    pub device: u32,
    pub devices: u32,
    /// Where the device was mounted at export (a label for people).
    pub label: String,
    pub files: u64,
    pub bytes: u64,
    /// Objects of the export not yet on any device when this manifest was written.
    pub pending_elsewhere: u64,
    pub created_at: DateTime<Utc>,
}

/// One file on the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentFile {
    /// Relative to the device root, `/`-separated.
    pub path: String,
    /// The object's key at the source (and at the destination an ingest writes to).
    pub key: String,
    pub size: u64,
    pub sha256: String,
    pub crc64nvme: String,
    pub crc32c: String,
    /// The Content-Type, user metadata and system headers the source gave the export's read:
    /// a disk keeps none of them, so the ingest writes them from here (and a delta compares
    /// the source with them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "ferry_core::Headers::is_empty")]
    pub headers: ferry_core::Headers,
}

/// Writes a device's shipment files; [`ShipmentWriter::finish`] puts them in place.
pub struct ShipmentWriter {
    root: PathBuf,
    jsonl: Staged,
    sums: Staged,
    bom: Option<Staged>,
}

/// A file being written under a temp name, hashed as it goes; removed if dropped before
/// [`Staged::commit`] (an export stopped while writing it leaves nothing on the device).
struct Staged {
    tmp: PathBuf,
    target: PathBuf,
    out: Option<BufWriter<File>>,
    hash: Sha256,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if self.out.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

impl Staged {
    fn create(root: &Path, name: &str) -> Result<Staged> {
        let target = root.join(name);
        let tmp = root.join(format!(".{name}.ferry-tmp-shipment"));
        let file = File::create(&tmp).map_err(io(&tmp))?;
        Ok(Staged { tmp, target, out: Some(BufWriter::new(file)), hash: Sha256::new() })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.hash.update(bytes);
        self.out.as_mut().expect("open until committed").write_all(bytes).map_err(io(&self.tmp))
    }

    /// Flushes, fsyncs and renames into place; returns the file's SHA-256.
    fn commit(mut self) -> Result<String> {
        let out = self.out.take().expect("open until committed");
        let placed = out
            .into_inner()
            .map_err(|e| ManifestError::Io { path: self.tmp.clone(), source: e.into_error() })
            .and_then(|file| file.sync_all().map_err(io(&self.tmp)))
            .and_then(|()| std::fs::rename(&self.tmp, &self.target).map_err(io(&self.target)));
        if placed.is_err() {
            let _ = std::fs::remove_file(&self.tmp);
        }
        placed?;
        Ok(hex::encode(std::mem::take(&mut self.hash).finalize()))
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ManifestError + '_ {
    move |source| ManifestError::Io { path: path.to_path_buf(), source }
}

impl ShipmentWriter {
    /// Starts the shipment files at `root`; `bom`: also write the Data Box BOM form.
    pub fn create(root: &Path, header: &ShipmentHeader, bom: bool) -> Result<ShipmentWriter> {
        let mut jsonl = Staged::create(root, SHIPMENT_FILE)?;
        let mut line = serde_json::to_vec(header).expect("header serializes");
        line.push(b'\n');
        jsonl.write(&line)?;
        let sums = Staged::create(root, SUMS_FILE)?;
        let bom = bom.then(|| Staged::create(root, BOM_FILE)).transpose()?;
        Ok(ShipmentWriter { root: root.to_path_buf(), jsonl, sums, bom })
    }

    /// Adds a file's line; one longer than [`MAX_LINE`] (an ingest would refuse it) is refused
    /// here, before anything is shipped.
    pub fn push(&mut self, file: &ShipmentFile) -> Result<()> {
        let mut line = serde_json::to_vec(file).expect("file entry serializes");
        if line.len() > MAX_LINE {
            return Err(ManifestError::LineTooLong { key: file.key.clone(), bytes: line.len(), max: MAX_LINE });
        }
        line.push(b'\n');
        self.jsonl.write(&line)?;
        self.sums.write(sums_line(&file.sha256, &file.path).as_bytes())?;
        if let Some(bom) = &mut self.bom {
            let line = format!("<file size=\"{}\" crc64=\"0x{}\">{}</file>\n", file.size, file.crc64nvme, xml_escape(&file.path));
            bom.write(line.as_bytes())?;
        }
        Ok(())
    }

    /// Puts every file in place (the shipment manifest last) and returns its SHA-256: the
    /// shipment's digest.
    pub fn finish(self) -> Result<String> {
        self.sums.commit()?;
        if let Some(bom) = self.bom {
            bom.commit()?;
        }
        let digest = self.jsonl.commit()?;
        File::open(&self.root).and_then(|d| d.sync_all()).map_err(io(&self.root))?;
        Ok(digest)
    }
}

/// A `sha256sum` line; names with a backslash or a line feed are escaped the way
/// `sha256sum` writes and `sha256sum -c` reads them (the line starts with `\`).
pub fn sums_line(sha256: &str, path: &str) -> String {
    if path.contains(['\\', '\n']) {
        format!("\\{sha256}  {}\n", path.replace('\\', "\\\\").replace('\n', "\\n"))
    } else {
        format!("{sha256}  {path}\n")
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The SHA-256 of a device's shipment manifest, as printed at export.
pub fn digest(root: &Path) -> Result<String> {
    file_sha256(&root.join(SHIPMENT_FILE))
}

/// The SHA-256 of a file, read in 64 KiB blocks.
pub fn file_sha256(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(io(path))?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
    }
    Ok(hex::encode(hash.finalize()))
}

/// Reads a device's shipment manifest: the header now (checked in itself: format, device
/// numbers), the files as an iterator. Lines longer than [`MAX_LINE`] are refused unread.
pub fn read(root: &Path) -> Result<(ShipmentHeader, impl Iterator<Item = Result<ShipmentFile>> + use<>)> {
    let path = root.join(SHIPMENT_FILE);
    let file = File::open(&path).map_err(io(&path))?;
    let mut lines = Lines { reader: BufReader::new(file), path: path.clone(), line: 0, done: false };
    let header: ShipmentHeader = match lines.next() {
        Some(Ok((n, text))) => serde_json::from_slice(&text).map_err(|e| corrupt(&path, n, e.to_string()))?,
        Some(Err(e)) => return Err(e),
        None => return Err(corrupt(&path, 1, "empty file".into())),
    };
    if header.format != FORMAT {
        return Err(corrupt(&path, 1, format!("format {:?}, this ferry reads {FORMAT:?}", header.format)));
    }
    if header.devices > MAX_DEVICES {
        return Err(corrupt(&path, 1, format!("`devices` is {}, more than the {MAX_DEVICES} an export spans", header.devices)));
    }
    if header.device == 0 || header.device > header.devices {
        return Err(corrupt(&path, 1, format!("`device` is {}, not one of the export's devices 1 to {}", header.device, header.devices)));
    }
    let files = lines.map(move |line| {
        let (n, text) = line?;
        let file = serde_json::from_slice::<ShipmentFile>(&text).map_err(|e| corrupt(&path, n, e.to_string()))?;
        match header_value_issue(&file) {
            Some(reason) => Err(corrupt(&path, n, reason)),
            None => Ok(file),
        }
    });
    Ok((header, files))
}

/// Why a line's Content-Type or system headers cannot be an HTTP header's value (a control
/// character, which no source gives and an upload could not send): such a line is not one an
/// export wrote.
fn header_value_issue(file: &ShipmentFile) -> Option<String> {
    let bad = |v: &str| v.chars().any(|c| (c.is_control() && c != '\t') || c == '\u{7f}');
    if file.content_type.as_deref().is_some_and(bad) {
        return Some(format!("{:?}: its content_type has a control character", file.key));
    }
    let (h, _) = file.headers.iter().find(|(_, v)| bad(v))?;
    Some(format!("{:?}: its {} header has a control character", file.key, h.as_str()))
}

/// Reads a device's whole shipment manifest and returns its header once the counts it declares
/// (`files`, `bytes`) are those of the file lines that follow it.
pub fn read_checked(root: &Path) -> Result<ShipmentHeader> {
    let path = root.join(SHIPMENT_FILE);
    let (header, files) = read(root)?;
    let (mut count, mut bytes) = (0u64, 0u64);
    for file in files {
        let file = file?;
        count += 1;
        bytes = bytes.checked_add(file.size).ok_or_else(|| corrupt(&path, count + 1, "sizes add up to more than 2^64 bytes".into()))?;
    }
    if header.files != count {
        return Err(corrupt(&path, 1, format!("`files` is {}, the manifest lists {count}", header.files)));
    }
    if header.bytes != bytes {
        return Err(corrupt(&path, 1, format!("`bytes` is {}, the files listed hold {bytes}", header.bytes)));
    }
    Ok(header)
}

/// Numbered lines (from 1, without their line feed), each at most [`MAX_LINE`] bytes: a longer
/// one is an error after reading [`MAX_LINE`] + 1 bytes of it, and ends the iteration.
struct Lines {
    reader: BufReader<File>,
    path: PathBuf,
    line: u64,
    done: bool,
}

impl Iterator for Lines {
    type Item = Result<(u64, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let mut buf = Vec::new();
        let read = (&mut self.reader).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut buf);
        self.line += 1;
        let outcome = match read {
            Ok(0) => None,
            Ok(_) if buf.last() == Some(&b'\n') => {
                buf.pop();
                Some(Ok((self.line, buf)))
            }
            Ok(_) if buf.len() > MAX_LINE => {
                Some(Err(corrupt(&self.path, self.line, format!("longer than {} KiB: not a shipment manifest's line", MAX_LINE >> 10))))
            }
            // The last line, without a line feed.
            Ok(_) => Some(Ok((self.line, buf))),
            Err(e) => Some(Err(ManifestError::Io { path: self.path.clone(), source: e })),
        };
        self.done = !matches!(outcome, Some(Ok(_)));
        outcome
    }
}

fn corrupt(path: &Path, line: u64, reason: String) -> ManifestError {
    ManifestError::Shipment { path: path.to_path_buf(), line, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Device 1 of `devices`, declaring `files` files of `bytes` bytes.
    fn header(devices: u32, files: u64, bytes: u64) -> ShipmentHeader {
        ShipmentHeader {
            format: FORMAT.into(),
            export_id: "e".into(),
            source: "s3://b/".into(),
            generation: 1,
            manifest_sha256: "m".into(),
            layout: serde_json::json!({"kind": "plain"}),
            device: 1,
            devices,
            label: "/mnt/d1".into(),
            files,
            bytes,
            pending_elsewhere: 0,
            created_at: Utc::now(),
        }
    }

    /// A file at path `key` with nothing besides its bytes' facts.
    fn file(key: &str, size: u64) -> ShipmentFile {
        ShipmentFile {
            path: key.into(),
            key: key.into(),
            size,
            sha256: "ab".repeat(32),
            crc64nvme: String::new(),
            crc32c: String::new(),
            content_type: None,
            metadata: BTreeMap::new(),
            headers: ferry_core::Headers::default(),
        }
    }

    #[test]
    fn a_shipment_reads_back_and_its_digest_is_the_manifest_file_hash() {
        let dir = tempfile::tempdir().unwrap();
        let header = header(2, 2, 3);
        let mut files = [("a<&>.txt", 1u64), ("line\nfeed", 2)].map(|(p, size)| ShipmentFile {
            crc64nvme: "0123456789abcdef".into(),
            crc32c: "00000000".into(),
            ..file(p, size)
        });
        // What the source gave the export's read travels with the file.
        files[1].content_type = Some("text/x-ferry".into());
        files[1].metadata.insert("Owner".into(), "ops team".into());
        *files[1].headers.slot(ferry_core::Header::CacheControl) = Some("max-age=60".into());
        let mut w = ShipmentWriter::create(dir.path(), &header, true).unwrap();
        for f in &files {
            w.push(f).unwrap();
        }
        let digest = w.finish().unwrap();
        assert_eq!(super::digest(dir.path()).unwrap(), digest);
        let (back, rows) = read(dir.path()).unwrap();
        assert_eq!(back, header);
        assert_eq!(rows.collect::<Result<Vec<_>>>().unwrap(), files);
        let sums = std::fs::read_to_string(dir.path().join(SUMS_FILE)).unwrap();
        assert!(sums.contains(&format!("\\{}  line\\nfeed\n", "ab".repeat(32))), "{sums}");
        let bom = std::fs::read_to_string(dir.path().join(BOM_FILE)).unwrap();
        assert!(bom.starts_with("<file size=\"1\" crc64=\"0x0123456789abcdef\">a&lt;&amp;&gt;.txt</file>\n"), "{bom}");
        assert!(!std::fs::read_dir(dir.path()).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().contains("ferry-tmp")));
    }

    #[test]
    fn a_line_an_ingest_would_refuse_is_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let header = header(1, 1, 1);
        let mut w = ShipmentWriter::create(dir.path(), &header, false).unwrap();
        let big = ShipmentFile { metadata: BTreeMap::from([("m".to_string(), "v".repeat(MAX_LINE))]), ..file("k", 1) };
        let err = w.push(&big).unwrap_err().to_string();
        assert!(err.contains("cannot ship \"k\"") && err.contains("too large"), "{err}");
        drop(w);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "a stopped shipment leaves nothing on the device: {left:?}");
    }

    #[test]
    fn a_line_whose_headers_no_upload_could_send_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let header = header(1, 2, 2);
        let file = |key: &str| ShipmentFile { content_type: Some("text/plain".into()), ..file(key, 1) };
        let mut typed = file("typed");
        typed.content_type = Some("text/html\r\nSet-Cookie: x".into());
        let mut cached = file("cached");
        *cached.headers.slot(ferry_core::Header::CacheControl) = Some("max-age=1\n".into());
        for (bad, what) in [(typed, "content_type"), (cached, "Cache-Control header")] {
            let mut w = ShipmentWriter::create(dir.path(), &header, false).unwrap();
            w.push(&file("fine")).unwrap();
            w.push(&bad).unwrap();
            w.finish().unwrap();
            let (_, rows) = read(dir.path()).unwrap();
            let err = rows.collect::<Result<Vec<_>>>().unwrap_err().to_string();
            assert!(err.contains("line 3") && err.contains(what) && err.contains("control character"), "{err}");
        }
    }
}
