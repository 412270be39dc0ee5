//! The Parquet form of manifest rows: schema, streaming writer, verified reader.

use crate::header::{FORMAT, FORMAT_VERSION, ManifestHeader, ShardInfo, Totals};
use crate::{ManifestError, Result};
use arrow_array::builder::{StringBuilder, TimestampMillisecondBuilder, UInt64Builder};
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, TimestampMillisecondArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};
use ferry_core::{Checksums, ObjectEntry, SkipReason};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::ChunkReader;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Rows buffered before a record batch is written (one row group each).
const BATCH_ROWS: usize = 65_536;
/// Rows per shard file: keeps files a convenient size for parallel readers.
const SHARD_ROWS: u64 = 4_000_000;

pub fn schema() -> SchemaRef {
    let s = |name| Field::new(name, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("size", DataType::UInt64, false),
        Field::new("last_modified", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), true),
        s("etag"),
        s("version"),
        s("crc32c"),
        s("md5"),
        s("content_type"),
        s("metadata"),
        // Why the listing's entry is not copied (a `SkipReason` name); null for objects to copy.
        s("skipped"),
        // The system headers beside Content-Type (JSON, `ferry_core::Headers`) and the tags
        // (JSON object), where the listing carried them; null otherwise.
        s("headers"),
        s("tags"),
        // The storage class and whether the object is archived, as JSON (`{"name":"GLACIER",
        // "state":"archived"}`); null where the provider has none.
        s("storage_class"),
    ]))
}

#[derive(Default)]
struct Columns {
    key: StringBuilder,
    size: UInt64Builder,
    last_modified: TimestampMillisecondBuilder,
    etag: StringBuilder,
    version: StringBuilder,
    crc32c: StringBuilder,
    md5: StringBuilder,
    content_type: StringBuilder,
    metadata: StringBuilder,
    skipped: StringBuilder,
    headers: StringBuilder,
    tags: StringBuilder,
    storage_class: StringBuilder,
    rows: usize,
}

impl Columns {
    fn push(&mut self, e: &ObjectEntry) {
        self.key.append_value(&e.key);
        self.size.append_value(e.size);
        self.last_modified.append_option(e.last_modified.map(|t| t.timestamp_millis()));
        self.etag.append_option(e.etag.as_deref());
        self.version.append_option(e.version.as_deref());
        self.crc32c.append_option(e.checksums.crc32c.as_deref());
        self.md5.append_option(e.checksums.md5.as_deref());
        self.content_type.append_option(e.content_type.as_deref());
        let meta = (!e.metadata.is_empty()).then(|| serde_json::to_string(&e.metadata).expect("map serializes"));
        self.metadata.append_option(meta);
        self.skipped.append_option(e.skipped.map(|r| r.as_str()));
        let headers = (!e.headers.is_empty()).then(|| serde_json::to_string(&e.headers).expect("headers serialize"));
        self.headers.append_option(headers);
        self.tags.append_option(e.tags.as_ref().map(|t| serde_json::to_string(t).expect("map serializes")));
        self.storage_class.append_option(e.storage_class.as_ref().map(|c| serde_json::to_string(c).expect("class serializes")));
        self.rows += 1;
    }

    fn finish(&mut self, schema: &SchemaRef) -> std::result::Result<RecordBatch, arrow_schema::ArrowError> {
        self.rows = 0;
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.key.finish()),
            Arc::new(self.size.finish()),
            Arc::new(self.last_modified.finish().with_timezone("UTC")),
            Arc::new(self.etag.finish()),
            Arc::new(self.version.finish()),
            Arc::new(self.crc32c.finish()),
            Arc::new(self.md5.finish()),
            Arc::new(self.content_type.finish()),
            Arc::new(self.metadata.finish()),
            Arc::new(self.skipped.finish()),
            Arc::new(self.headers.finish()),
            Arc::new(self.tags.finish()),
            Arc::new(self.storage_class.finish()),
        ];
        RecordBatch::try_new(schema.clone(), cols)
    }
}

/// Streams entries into Parquet shards, then seals the generation.
pub struct ManifestWriter {
    dir: PathBuf,
    header: ManifestHeader,
    schema: SchemaRef,
    cols: Columns,
    current: Option<(ArrowWriter<File>, String, u64)>,
}

impl ManifestWriter {
    /// Starts generation `generation` in `dir` (created if needed; must not be sealed already).
    pub fn create(dir: &Path, generation: u32, parent: Option<u32>, source: &str, destination: &str) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|source| ManifestError::Io { path: dir.to_path_buf(), source })?;
        Ok(ManifestWriter {
            dir: dir.to_path_buf(),
            header: ManifestHeader {
                format: FORMAT.into(),
                format_version: FORMAT_VERSION,
                generation,
                parent,
                source: source.into(),
                destination: destination.into(),
                created_at: Utc::now(),
                totals: Totals::default(),
                shards: Vec::new(),
                all_versions: false,
                changes: None,
                tables: None,
            },
            schema: schema(),
            cols: Columns::default(),
            current: None,
        })
    }

    /// Marks the generation as a listing of every version (see [`ManifestHeader::all_versions`]):
    /// its entries are read back pinned to their version.
    pub fn all_versions(mut self) -> Self {
        self.header.all_versions = true;
        self
    }

    /// Adds an entry: an object to copy, or one the listing skipped (counted by reason).
    pub fn push(&mut self, entry: &ObjectEntry) -> Result<()> {
        self.cols.push(entry);
        match entry.skipped {
            None => {
                self.header.totals.objects += 1;
                self.header.totals.bytes += entry.size;
                if entry.storage_class.as_ref().is_some_and(|c| c.needs_restore()) {
                    self.header.totals.archived += 1;
                    self.header.totals.archived_bytes += entry.size;
                }
            }
            Some(reason) => {
                self.header.totals.skipped += 1;
                *self.header.totals.skipped_by_reason.entry(reason).or_default() += 1;
            }
        }
        if self.cols.rows >= BATCH_ROWS {
            self.flush_batch()?;
        }
        Ok(())
    }

    pub fn totals(&self) -> &Totals {
        &self.header.totals
    }

    fn flush_batch(&mut self) -> Result<()> {
        if self.cols.rows == 0 {
            return Ok(());
        }
        let rows = self.cols.rows as u64;
        if self.current.is_none() {
            let name = format!("objects-{:05}.parquet", self.header.shards.len());
            let path = self.dir.join(&name);
            let file = File::create(&path).map_err(|source| ManifestError::Io { path: path.clone(), source })?;
            // A batch is a row group: the writer holds one batch's pages, not a million rows'.
            let props =
                WriterProperties::builder().set_compression(Compression::SNAPPY).set_max_row_group_row_count(Some(BATCH_ROWS)).build();
            let writer =
                ArrowWriter::try_new(file, self.schema.clone(), Some(props)).map_err(|source| ManifestError::Parquet { path, source })?;
            self.current = Some((writer, name, 0));
        }
        let batch = self.cols.finish(&self.schema).map_err(|source| ManifestError::Arrow { path: self.dir.clone(), source })?;
        let (writer, name, written) = self.current.as_mut().expect("opened above");
        writer.write(&batch).map_err(|source| ManifestError::Parquet { path: self.dir.join(&*name), source })?;
        *written += rows;
        if *written >= SHARD_ROWS {
            self.close_shard()?;
        }
        Ok(())
    }

    fn close_shard(&mut self) -> Result<()> {
        let Some((writer, name, rows)) = self.current.take() else { return Ok(()) };
        let path = self.dir.join(&name);
        let file = writer.into_inner().map_err(|source| ManifestError::Parquet { path: path.clone(), source })?;
        file.sync_all().map_err(|source| ManifestError::Io { path: path.clone(), source })?;
        drop(file);
        let (sha256, bytes) = file_sha256(&path)?;
        self.header.shards.push(ShardInfo { file: name, rows, bytes, sha256 });
        Ok(())
    }

    /// Seals `file` (written in the generation's directory, `rows` lines) with the generation as
    /// its change set: hashed now, checked by every reader.
    pub fn attach_changes(&mut self, file: &str, rows: u64) -> Result<()> {
        let path = self.dir.join(file);
        std::fs::File::open(&path).and_then(|f| f.sync_all()).map_err(|source| ManifestError::Io { path: path.clone(), source })?;
        let (sha256, bytes) = file_sha256(&path)?;
        self.header.changes = Some(ShardInfo { file: file.to_string(), rows, bytes, sha256 });
        Ok(())
    }

    /// Copies `from` into the generation's directory as `file` (`rows` entries) and seals it as
    /// the generation's table export entries: hashed now, checked by every reader.
    pub fn attach_tables(&mut self, from: &Path, file: &str, rows: u64) -> Result<()> {
        let path = self.dir.join(file);
        std::fs::copy(from, &path).map_err(|source| ManifestError::Io { path: path.clone(), source })?;
        std::fs::File::open(&path).and_then(|f| f.sync_all()).map_err(|source| ManifestError::Io { path: path.clone(), source })?;
        let (sha256, bytes) = file_sha256(&path)?;
        self.header.tables = Some(ShardInfo { file: file.to_string(), rows, bytes, sha256 });
        Ok(())
    }

    /// Writes the remaining rows, hashes every shard and writes the header: the generation is sealed.
    pub fn seal(mut self) -> Result<ManifestHeader> {
        self.flush_batch()?;
        self.close_shard()?;
        self.header.write(&self.dir)?;
        Ok(self.header)
    }
}

fn file_sha256(path: &Path) -> Result<(String, u64)> {
    let io = |source| ManifestError::Io { path: path.to_path_buf(), source };
    let mut f = File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), total))
}

/// Reads a sealed generation, having checked every shard against the header's SHA-256.
pub struct ManifestReader {
    dir: PathBuf,
    header: ManifestHeader,
}

impl ManifestReader {
    pub fn open(dir: &Path) -> Result<Self> {
        let header = ManifestHeader::read(dir)?;
        for shard in header.shards.iter().chain(&header.changes).chain(&header.tables) {
            let path = dir.join(&shard.file);
            // The size first: a shard of another size is refused without reading it through.
            let len = std::fs::metadata(&path).map_err(|source| ManifestError::Io { path: path.clone(), source })?.len();
            if len != shard.bytes {
                let reason = format!("{len} bytes, the sealed shard has {}", shard.bytes);
                return Err(ManifestError::Corrupt { path, reason });
            }
            let (sha, bytes) = file_sha256(&path)?;
            if sha != shard.sha256 || bytes != shard.bytes {
                return Err(ManifestError::Corrupt {
                    path,
                    reason: format!("sha256 {sha} ({bytes} bytes) does not match the sealed {} ({} bytes)", shard.sha256, shard.bytes),
                });
            }
        }
        Ok(ManifestReader { dir: dir.to_path_buf(), header })
    }

    pub fn header(&self) -> &ManifestHeader {
        &self.header
    }

    /// Calls `f` with each batch of entries, in manifest order. Memory is one batch at a time.
    /// `f`'s error type lets callers stop the walk with their own errors.
    pub fn for_each_batch<E: From<ManifestError>>(&self, mut f: impl FnMut(Vec<ObjectEntry>) -> Result<(), E>) -> Result<(), E> {
        for shard in &self.header.shards {
            let path = self.dir.join(&shard.file);
            let open = || File::open(&path).map_err(|source| ManifestError::Io { path: path.clone(), source });
            let pinned = self.header.all_versions;
            read_shard(open, &path, &mut |mut batch: Vec<ObjectEntry>| {
                if pinned {
                    batch.iter_mut().for_each(|e| e.pinned = true);
                }
                f(batch)
            })?;
        }
        Ok(())
    }
}

/// Walks one shard held in memory (`path` names it in errors), one batch at a time, and returns
/// how many entries it holds. Whatever the bytes, the answer is a count or an error, never a
/// panic: the manifest fuzz target holds this.
pub fn count_shard(data: bytes::Bytes, path: &Path) -> Result<u64> {
    let mut count = 0;
    read_shard(|| Ok(data.clone()), path, &mut |batch: Vec<ObjectEntry>| {
        count += batch.len() as u64;
        Ok::<_, ManifestError>(())
    })?;
    Ok(count)
}

/// `open` gives the shard's bytes, once for a walk over its page headers and once to read it.
fn read_shard<R: ChunkReader + 'static, E: From<ManifestError>>(
    open: impl Fn() -> Result<R>,
    path: &Path,
    f: &mut impl FnMut(Vec<ObjectEntry>) -> Result<(), E>,
) -> Result<(), E> {
    let pq = |source| ManifestError::Parquet { path: path.to_path_buf(), source };
    let corrupt = |reason: String| ManifestError::Corrupt { path: path.to_path_buf(), reason };
    let data = open()?;
    let len = data.len();
    let builder = guarded(path, || ParquetRecordBatchReaderBuilder::try_new(data))?.map_err(pq)?;
    if builder.schema().fields() != schema().fields() {
        return Err(corrupt("the schema is not ferry's manifest schema".into()).into());
    }
    check_layout(builder.metadata(), len).map_err(corrupt)?;
    guarded(path, || check_pages(open()?, path))??;
    let mut reader = guarded(path, || builder.with_batch_size(8192).build())?.map_err(pq)?;
    while let Some(batch) = guarded(path, || reader.next())? {
        let batch = batch.map_err(|source| ManifestError::Arrow { path: path.to_path_buf(), source })?;
        let entries = decode(&batch).map_err(corrupt)?;
        f(entries)?;
    }
    Ok(())
}

/// Refuses column chunks that lie outside the file, which the Parquet reader would panic on.
/// Also refuses more rows than the file could hold: keys are unique, so each row takes some of
/// the file, and a footer claiming otherwise would make the reader decode a flood of rows.
fn check_layout(metadata: &ParquetMetaData, file_len: u64) -> std::result::Result<(), String> {
    let rows = metadata.file_metadata().num_rows();
    if rows < 0 || rows as u64 > file_len.saturating_mul(8) {
        return Err(format!("the footer claims {rows} rows in a {file_len}-byte file"));
    }
    for (g, group) in metadata.row_groups().iter().enumerate() {
        for column in group.columns() {
            let start = column.dictionary_page_offset().unwrap_or(column.data_page_offset());
            let len = column.compressed_size();
            if start < 0 || len < 0 || (start as u64).saturating_add(len as u64) > file_len {
                return Err(format!("row group {g}: column {} claims bytes {start}+{len} of a {file_len}-byte file", column.column_path()));
            }
        }
    }
    Ok(())
}

/// Refuses data pages whose headers claim more values than their row group has rows (every
/// column is flat): the reader sizes its buffers from those claims before it finds the page
/// short, and a crafted header made it allocate gigabytes. Reads page headers only.
fn check_pages<R: ChunkReader + 'static>(data: R, path: &Path) -> Result<()> {
    use parquet::file::reader::FileReader;
    let pq = |source| ManifestError::Parquet { path: path.to_path_buf(), source };
    let corrupt = |reason: String| ManifestError::Corrupt { path: path.to_path_buf(), reason };
    let reader = parquet::file::serialized_reader::SerializedFileReader::new(data).map_err(pq)?;
    for g in 0..reader.num_row_groups() {
        let group = reader.get_row_group(g).map_err(pq)?;
        let rows = group.metadata().num_rows().max(0) as u64;
        for c in 0..group.num_columns() {
            let mut pages = group.get_column_page_reader(c).map_err(pq)?;
            let mut values = 0u64;
            // Every page takes at least a byte of its chunk: more pages than bytes means the
            // reader is not moving on (a crafted header can make it stand still), so stop.
            let mut budget = group.metadata().column(c).compressed_size().max(0) as u64 + 1;
            while let Some(page) = pages.peek_next_page().map_err(pq)? {
                budget =
                    budget.checked_sub(1).ok_or_else(|| corrupt(format!("row group {g}: column {c}'s page headers do not advance")))?;
                if !page.is_dict {
                    values = values.saturating_add(page.num_levels.or(page.num_rows).unwrap_or(0) as u64);
                    if values > rows {
                        return Err(corrupt(format!("row group {g}: column {c}'s pages claim {values} values for {rows} rows")));
                    }
                }
                pages.skip_next_page().map_err(pq)?;
            }
        }
    }
    Ok(())
}

/// Runs a step of the Parquet reader, turning a panic on malformed input into an error: a
/// corrupt shard must fail the command with a message, never abort it.
fn guarded<T>(path: &Path, step: impl FnOnce() -> T) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(step))
        .map_err(|_| ManifestError::Corrupt { path: path.to_path_buf(), reason: "the Parquet reader gave up on malformed data".into() })
}

fn decode(batch: &RecordBatch) -> std::result::Result<Vec<ObjectEntry>, String> {
    fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> std::result::Result<&'a T, String> {
        b.column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<T>())
            .ok_or_else(|| format!("column {name} is missing or has the wrong type"))
    }
    let key = col::<StringArray>(batch, "key")?;
    let size = col::<UInt64Array>(batch, "size")?;
    let lm = col::<TimestampMillisecondArray>(batch, "last_modified")?;
    let strs: Vec<&StringArray> = ["etag", "version", "crc32c", "md5", "content_type", "metadata"]
        .iter()
        .map(|n| col::<StringArray>(batch, n))
        .collect::<std::result::Result<_, _>>()?;
    let opt = |a: &StringArray, i: usize| (!a.is_null(i)).then(|| a.value(i).to_string());
    // Manifests written before skipped entries were recorded have no such column.
    let skipped = match batch.column_by_name("skipped") {
        None => None,
        Some(c) => Some(c.as_any().downcast_ref::<StringArray>().ok_or("column skipped has the wrong type")?),
    };
    // Nor these, before headers and tags were.
    let optional = |name: &str| -> std::result::Result<Option<&StringArray>, String> {
        match batch.column_by_name(name) {
            None => Ok(None),
            Some(c) => Ok(Some(c.as_any().downcast_ref::<StringArray>().ok_or_else(|| format!("column {name} has the wrong type"))?)),
        }
    };
    let (headers, tags) = (optional("headers")?, optional("tags")?);
    // Nor do manifests written before storage classes were.
    let storage_class = match batch.column_by_name("storage_class") {
        None => None,
        Some(c) => Some(c.as_any().downcast_ref::<StringArray>().ok_or("column storage_class has the wrong type")?),
    };
    (0..batch.num_rows())
        .map(|i| {
            let metadata = match opt(strs[5], i) {
                Some(json) => serde_json::from_str(&json).map_err(|e| format!("row {i}: metadata: {e}"))?,
                None => Default::default(),
            };
            Ok(ObjectEntry {
                key: key.value(i).to_string(),
                size: size.value(i),
                last_modified: (!lm.is_null(i)).then(|| DateTime::from_timestamp_millis(lm.value(i))).flatten(),
                etag: opt(strs[0], i),
                version: opt(strs[1], i),
                // CRC64NVME is seen at copy time, never listed: manifests do not keep it.
                checksums: Checksums { crc32c: opt(strs[2], i), md5: opt(strs[3], i), ..Checksums::default() },
                content_type: opt(strs[4], i),
                metadata,
                skipped: match skipped.and_then(|a| opt(a, i)) {
                    None => None,
                    Some(name) => Some(SkipReason::parse(&name).ok_or_else(|| format!("row {i}: unknown skip reason {name:?}"))?),
                },
                mode: None,
                // Set for every entry of a manifest of all versions (see `for_each_batch`).
                pinned: false,
                headers: match headers.and_then(|a| opt(a, i)) {
                    Some(json) => serde_json::from_str(&json).map_err(|e| format!("row {i}: headers: {e}"))?,
                    None => Default::default(),
                },
                tags: match tags.and_then(|a| opt(a, i)) {
                    Some(json) => Some(serde_json::from_str(&json).map_err(|e| format!("row {i}: tags: {e}"))?),
                    None => None,
                },
                storage_class: match storage_class.and_then(|a| opt(a, i)) {
                    None => None,
                    Some(json) => Some(serde_json::from_str(&json).map_err(|e| format!("row {i}: storage_class: {e}"))?),
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u64) -> ObjectEntry {
        let mut e = ObjectEntry { key: format!("dir/é {i}#%+"), size: i, ..Default::default() };
        if i.is_multiple_of(2) {
            e.checksums.crc32c = Some("0badf00d".into());
            e.content_type = Some("text/plain".into());
            e.metadata.insert("owner".into(), format!("u{i}"));
            e.headers.cache_control = Some("max-age=60".into());
            e.tags = Some(ferry_core::Tags::from([("team".to_string(), format!("t{i}"))]));
            e.last_modified = DateTime::from_timestamp_millis(1_700_000_000_123);
        }
        if i.is_multiple_of(3) {
            let state = if i.is_multiple_of(2) { ferry_core::ArchiveState::Archived } else { ferry_core::ArchiveState::Online };
            e.storage_class = Some(ferry_core::StorageClass { name: "GLACIER".into(), state });
        }
        e
    }

    // Issue 15 (a 10 M-object delta at 257 MiB against a 256 MiB goal): the writer kept a
    // million rows' pages in memory before it wrote a row group (the Parquet default), not the
    // one batch this module says a row group is.
    #[test]
    fn each_batch_is_written_as_its_own_row_group() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ManifestWriter::create(dir.path(), 1, None, "s3://a/", "gs://b/").unwrap();
        let rows = 2 * BATCH_ROWS as u64 + 1;
        for i in 0..rows {
            w.push(&ObjectEntry { key: format!("k/{i:07}"), size: i, ..Default::default() }).unwrap();
        }
        let header = w.seal().unwrap();
        let file = File::open(dir.path().join(&header.shards[0].file)).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        let groups: Vec<i64> = reader.metadata().row_groups().iter().map(|g| g.num_rows()).collect();
        assert_eq!(groups, [BATCH_ROWS as i64, BATCH_ROWS as i64, 1]);
        let mut read = 0;
        let count = |b: Vec<ObjectEntry>| {
            read += b.len() as u64;
            Ok(())
        };
        ManifestReader::open(dir.path()).unwrap().for_each_batch::<ManifestError>(count).unwrap();
        assert_eq!(read, rows);
    }

    #[test]
    fn a_damaged_shard_gives_its_entries_or_an_error_naming_it_never_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ManifestWriter::create(dir.path(), 1, None, "s3://a/", "gs://b/").unwrap();
        for i in 0..50 {
            w.push(&entry(i)).unwrap();
        }
        let header = w.seal().unwrap();
        let shard = std::fs::read(dir.path().join(&header.shards[0].file)).unwrap();
        let path = Path::new("objects-00000.parquet");
        assert_eq!(count_shard(bytes::Bytes::from(shard.clone()), path).unwrap(), 50);
        // Every byte of the footer (where the reader learns offsets, sizes and row counts) and a
        // spread of the pages, each inverted in turn: the right count, or an error naming the
        // shard (a flipped value byte may still decode). The reader must never panic or hang.
        let mut refused = 0;
        for at in (0..shard.len()).rev().take(1500).chain((0..shard.len()).step_by(7)) {
            let mut damaged = shard.clone();
            damaged[at] ^= 0xff;
            match count_shard(bytes::Bytes::from(damaged), path) {
                Ok(n) => assert_eq!(n, 50, "byte {at} flipped"),
                Err(e) => {
                    assert!(e.to_string().contains("objects-00000.parquet"), "{e}");
                    refused += 1;
                }
            }
        }
        assert!(refused > 100, "only {refused} damaged shards were refused");
    }

    #[test]
    fn round_trips_entries_and_refuses_a_tampered_shard() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ManifestWriter::create(dir.path(), 1, None, "s3://a/", "gs://b/").unwrap();
        for i in 0..100_000 {
            w.push(&entry(i)).unwrap();
        }
        let header = w.seal().unwrap();
        assert_eq!(header.totals.objects, 100_000);
        assert_eq!(header.totals.bytes, (0..100_000u64).sum::<u64>());

        let reader = ManifestReader::open(dir.path()).unwrap();
        let mut got = Vec::new();
        reader
            .for_each_batch::<ManifestError>(|b| {
                got.extend(b);
                Ok(())
            })
            .unwrap();
        assert_eq!(got.len(), 100_000);
        // Entries 0, 6, 12…: archived.
        assert_eq!(header.totals.archived, (0..100_000u64).filter(|i| i % 6 == 0).count() as u64);
        assert_eq!(got[0], entry(0));
        assert_eq!(got[99_999], entry(99_999));

        let shard = dir.path().join(&header.shards[0].file);
        let mut bytes = std::fs::read(&shard).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        std::fs::write(&shard, bytes).unwrap();
        let err = ManifestReader::open(dir.path()).err().expect("tampered shard refused").to_string();
        assert!(err.contains("objects-00000.parquet") && err.contains("corrupt"), "{err}");
    }

    // Issue 12, case 4: skipped entries are rows of the sealed manifest, with their reason, and
    // are counted apart from the objects to copy.
    #[test]
    fn skipped_entries_round_trip_with_their_reason_and_count_apart() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ManifestWriter::create(dir.path(), 1, None, "file:///a", "s3://b/").unwrap();
        w.push(&entry(7)).unwrap();
        w.push(&ObjectEntry::skipped("pipe".into(), SkipReason::Fifo)).unwrap();
        w.push(&ObjectEntry::skipped("photos/".into(), SkipReason::DirectoryMarker)).unwrap();
        let header = w.seal().unwrap();
        assert_eq!((header.totals.objects, header.totals.bytes, header.totals.skipped), (1, 7, 2));
        assert_eq!(header.totals.skipped_by_reason.get(&SkipReason::Fifo), Some(&1));
        let mut got = Vec::new();
        ManifestReader::open(dir.path())
            .unwrap()
            .for_each_batch::<ManifestError>(|b| {
                got.extend(b);
                Ok(())
            })
            .unwrap();
        assert_eq!(got[0], entry(7));
        assert_eq!(got[1].skipped, Some(SkipReason::Fifo));
        assert_eq!(got[2].skipped, Some(SkipReason::DirectoryMarker));
    }

    #[test]
    fn an_empty_listing_seals_an_empty_generation() {
        let dir = tempfile::tempdir().unwrap();
        let header = ManifestWriter::create(dir.path(), 1, None, "s3://a/", "gs://b/").unwrap().seal().unwrap();
        assert_eq!(header.totals.objects, 0);
        let mut n = 0;
        ManifestReader::open(dir.path())
            .unwrap()
            .for_each_batch::<ManifestError>(|b| {
                n += b.len();
                Ok(())
            })
            .unwrap();
        assert_eq!(n, 0);
    }
}
