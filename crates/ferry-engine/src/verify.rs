//! Verification: the destination against what the copy recorded and what the source declared.
//!
//! Quick mode asks the destination for each object's current state (one HEAD) and proves it by
//! the strongest evidence available, in order: the destination's own CRC32C against the CRC of
//! the bytes ferry read, else the entity tag the destination gave when ferry wrote the object
//! (any later write changes it), else the size alone. `--all-bytes` reads every object back and
//! compares its SHA-256 with the one recorded while copying. A job of every version
//! (`--all-versions`) lists the destination's versions instead and checks each key's in order.
//!
//! The same HEAD's headers and metadata are compared with what the source gave the copy (kept
//! in the journal), fitted to what the destination can hold: one difference per header or
//! metadata pair, each of its own [`DifferenceKind`].

use crate::{EngineError, Job, Result, Stats};
use ferry_core::headers::{Attrs, NameRule, fit};
use ferry_core::{Carries, Evidence, Header, ObjectDigest, ObjectEntry};
use ferry_journal::{Journal, JournalKind, ObjectRow, ObjectState};
use ferry_manifest::ManifestReader;
use ferry_providers::Provider;
use futures::StreamExt;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct VerifyOptions {
    pub transfers: usize,
    pub all_bytes: bool,
    /// Read back this many randomly chosen objects in full (besides the quick check of all),
    /// and, in a table job, fetch this many rows of each table from the database to compare.
    pub sample: Option<u64>,
    /// List the destination and report objects the manifest does not have.
    pub extras: bool,
    /// Bytes read back and held at once across all objects (`--max-memory`).
    pub max_memory: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Difference {
    pub key: String,
    pub kind: DifferenceKind,
    pub detail: String,
}

/// How the destination differs from what the copy recorded, by stable name (`missing`,
/// `extra`, `size`, `checksum`, `changed`, `not-copied`, `metadata`, `content-type`,
/// `content-encoding`, `content-disposition`, `content-language`, `cache-control`, `expires`,
/// `error`) in reports and output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum DifferenceKind {
    /// The destination does not have the object.
    Missing,
    /// The destination has an object the manifest does not.
    Extra,
    /// The destination's object has another size than the source's.
    Size,
    /// The destination's bytes do not match the checksum recorded at copy.
    Checksum,
    /// The destination's object was written since the copy (its entity tag changed).
    Changed,
    /// The journal does not have the object as copied (failed, pending, refused…).
    NotCopied,
    /// User metadata the source gave the copy is not at the destination as it can hold it (a
    /// name or value it cannot hold, a pair missing or changed), or the destination has a pair
    /// the source did not.
    Metadata,
    /// The destination's Content-Type is not the source's.
    ContentType,
    /// A system header the destination carries is not as the source gave it (changed, missing,
    /// or there without the source having it): one kind per header.
    ContentEncoding,
    ContentDisposition,
    ContentLanguage,
    CacheControl,
    Expires,
    /// The destination could not be asked.
    Error,
    /// A table file's figures read back from the destination (rows, fingerprint, a column's
    /// counts, minimum, maximum or sum) are not the ones PostgreSQL computed for its rows.
    TableFigures,
    /// A table file at the destination is not the export's Parquet (unreadable, or other
    /// columns).
    TableFile,
    /// A row sampled from a table file (`--sample`) is not the database's: the export's
    /// snapshot saw that version of the row, and some field differs.
    TableSample,
    /// A sampled row's foreign key is not among the parent table's exported rows.
    TableReference,
    /// Gone from the source (a delta's later generation), still at the destination: a delete
    /// not carried out yet (`ferry delta --delete`).
    DeletedAtSource,
}

impl DifferenceKind {
    /// The stable name written to reports and output.
    pub fn as_str(self) -> &'static str {
        match self {
            DifferenceKind::Missing => "missing",
            DifferenceKind::Extra => "extra",
            DifferenceKind::Size => "size",
            DifferenceKind::Checksum => "checksum",
            DifferenceKind::Changed => "changed",
            DifferenceKind::NotCopied => "not-copied",
            DifferenceKind::Metadata => "metadata",
            DifferenceKind::ContentType => "content-type",
            DifferenceKind::ContentEncoding => "content-encoding",
            DifferenceKind::ContentDisposition => "content-disposition",
            DifferenceKind::ContentLanguage => "content-language",
            DifferenceKind::CacheControl => "cache-control",
            DifferenceKind::Expires => "expires",
            DifferenceKind::Error => "error",
            DifferenceKind::TableFigures => "table-figures",
            DifferenceKind::TableFile => "table-file",
            DifferenceKind::TableSample => "table-sample",
            DifferenceKind::TableReference => "table-reference",
            DifferenceKind::DeletedAtSource => "deleted-at-source",
        }
    }

    /// The kind that names a difference in `header`.
    pub fn of_header(header: Header) -> DifferenceKind {
        match header {
            Header::ContentEncoding => DifferenceKind::ContentEncoding,
            Header::ContentDisposition => DifferenceKind::ContentDisposition,
            Header::ContentLanguage => DifferenceKind::ContentLanguage,
            Header::CacheControl => DifferenceKind::CacheControl,
            Header::Expires => DifferenceKind::Expires,
        }
    }
}

impl std::fmt::Display for DifferenceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifySummary {
    pub destination: String,
    pub generation: u32,
    pub checked: u64,
    pub matched: u64,
    /// Objects at the destination the manifest does not have (each also a difference).
    pub extra: u64,
    /// How many objects each kind of evidence proved.
    pub proved_by: BTreeMap<Evidence, u64>,
    pub differences: Vec<Difference>,
    /// Entries the source had that were never copied (symlinks, FIFOs…): the destination
    /// lacks them by design, named here rather than as differences.
    pub skipped: crate::Skipped,
    /// Calls to the destination by method (`s3 head`, `azure head`…): quick mode sends one per
    /// object, whose answer carries the headers and metadata compared too.
    pub requests: BTreeMap<String, ferry_providers::RequestCount>,
    /// The table files read back and proved against the database's figures (a table job).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tables: Option<crate::tables::TablesVerified>,
    pub seconds: f64,
    pub report: Option<std::path::PathBuf>,
}

pub(crate) const READ_CHUNK: u64 = 8 << 20;

/// Checks the destination (`dst`, opened in `run`) against what the job recorded.
pub async fn verify(
    job: &mut Job,
    dst: Arc<dyn Provider>,
    opts: VerifyOptions,
    stats: Arc<Stats>,
    run: &Arc<ferry_providers::RunContext>,
) -> Result<VerifySummary> {
    let started = Instant::now();
    job.lock()?;
    let generation = job.latest_generation().ok_or_else(|| EngineError::NotPlanned { dir: job.dir.clone() })?;
    let header = ManifestReader::open(&job.generation_dir(generation))?.header().clone();
    let journal = job.journal(JournalKind::Main).await?;
    stats.total_objects.store(header.totals.objects, std::sync::atomic::Ordering::Relaxed);
    stats.total_bytes.store(header.totals.bytes, std::sync::atomic::Ordering::Relaxed);

    let mut summary = VerifySummary {
        destination: job.destination.to_string(),
        generation,
        checked: 0,
        matched: 0,
        extra: 0,
        proved_by: BTreeMap::new(),
        differences: Vec::new(),
        skipped: crate::Skipped::of(journal.as_ref()).await?,
        requests: BTreeMap::new(),
        tables: None,
        seconds: 0.0,
        report: None,
    };
    // Read-backs take their ranges from one budget, so however many objects are checked at
    // once, at most `max_memory` of their bytes are held.
    run.buffers().set_limit(usize::try_from(opts.max_memory).unwrap_or(usize::MAX));
    let budget = Arc::new(tokio::sync::Semaphore::new(kib(opts.max_memory)));
    let chunk = READ_CHUNK.min(opts.max_memory);
    let sampled = match opts.sample {
        Some(n) if !opts.all_bytes => sample_ids(journal.as_ref(), n).await?,
        _ => HashSet::new(),
    };
    if job.all_versions() {
        verify_versions(job, dst.as_ref(), journal.as_ref(), &opts, &stats, &mut summary).await?;
    }
    let mut cursor = 0;
    while !job.all_versions() {
        let rows = journal.page(cursor, 1024).await?;
        let Some(last) = rows.last() else { break };
        cursor = last.id;
        let to_check = rows.into_iter().filter(|row| row.entry.skipped.is_none());
        let results: Vec<(ObjectRow, std::result::Result<Evidence, Vec<Difference>>)> = futures::stream::iter(to_check)
            .map(|row| {
                let dst = dst.clone();
                let stats = stats.clone();
                let read_back = (opts.all_bytes || sampled.contains(&row.id)).then(|| ReadBack { budget: budget.clone(), chunk });
                async move {
                    let r = check(dst.as_ref(), &row, read_back).await;
                    Stats::add(&stats.objects_done, 1);
                    Stats::add(&stats.bytes_done, row.entry.size);
                    (row, r)
                }
            })
            .buffer_unordered(opts.transfers.max(1))
            .collect()
            .await;
        for (_, result) in results {
            summary.checked += 1;
            match result {
                Ok(method) => {
                    summary.matched += 1;
                    *summary.proved_by.entry(method).or_default() += 1;
                }
                Err(d) => summary.differences.extend(d),
            }
        }
    }
    if opts.extras {
        summary.extra = find_extras(dst.as_ref(), journal.as_ref(), &mut summary.differences).await?;
    }
    if let Some(exports) = crate::tables::sealed(job, generation)? {
        let env = crate::tables::Environment::current();
        let sample = opts.sample.map(|n| crate::tables::SampleRun { rows: usize::try_from(n).unwrap_or(usize::MAX), env: &env });
        summary.tables = Some(crate::tables::verify(job, dst.as_ref(), &exports, sample, &mut summary.differences).await?);
    }
    summary.differences.sort_by(|a, b| a.key.cmp(&b.key));
    summary.requests = run.requests().snapshot();
    summary.seconds = started.elapsed().as_secs_f64();
    let report = serde_json::to_value(&summary).expect("summary serializes");
    summary.report = Some(job.write_report("verify", &report)?);
    Ok(summary)
}

/// Checks an `--all-versions` job: the destination's versions of each key (listed once, delete
/// markers aside) against the journal's, in order. The key's N copied versions are its newest N
/// at the destination (versions it held before the copy come first); each is proved by the
/// entity tag the destination gave when ferry wrote it (a version out of place has another), or
/// with `--all-bytes` by reading that version back. A version missing, of another size or in
/// another place is a difference.
async fn verify_versions(
    job: &Job,
    dst: &dyn Provider,
    journal: &dyn Journal,
    opts: &VerifyOptions,
    stats: &Stats,
    summary: &mut VerifySummary,
) -> Result<()> {
    let versions = dst.versions().ok_or_else(|| EngineError::AllVersions {
        side: "destination",
        location: job.destination.to_string(),
        refusal: crate::VersionsRefusal::Unsupported,
    })?;
    let mut at_dst: BTreeMap<String, Vec<ferry_core::ObjectEntry>> = BTreeMap::new();
    let mut pages = versions.list_versions();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|source| EngineError::Provider { side: "destination", source })?;
        for e in page.into_iter().filter(|e| e.skipped.is_none()) {
            at_dst.entry(e.key.clone()).or_default().push(e);
        }
    }
    // A key's rows are contiguous in id order (seeded from the listing, oldest first).
    let mut key_rows: Vec<ObjectRow> = Vec::new();
    let mut cursor = 0;
    loop {
        let rows = journal.page(cursor, 1024).await?;
        let last_page = rows.is_empty();
        if let Some(last) = rows.last() {
            cursor = last.id;
        }
        for row in rows.into_iter().filter(|r| r.entry.skipped.is_none()).map(Some).chain(last_page.then_some(None)) {
            if key_rows.first().is_some_and(|first| row.as_ref().is_none_or(|r| r.entry.key != first.entry.key)) {
                let rows = std::mem::take(&mut key_rows);
                let held = at_dst.remove(&rows[0].entry.key).unwrap_or_default();
                for result in check_versions(versions, &rows, &held, opts.all_bytes).await {
                    Stats::add(&stats.objects_done, 1);
                    summary.checked += 1;
                    match result {
                        Ok(method) => {
                            summary.matched += 1;
                            *summary.proved_by.entry(method).or_default() += 1;
                        }
                        Err(d) => summary.differences.push(d),
                    }
                }
            }
            key_rows.extend(row);
        }
        if last_page {
            return Ok(());
        }
    }
}

/// One key's copied versions (`rows`, oldest first) against the versions the destination
/// holds (`held`, oldest first).
async fn check_versions(
    versions: &dyn ferry_providers::Versions,
    rows: &[ObjectRow],
    held: &[ferry_core::ObjectEntry],
    all_bytes: bool,
) -> Vec<std::result::Result<Evidence, Difference>> {
    use DifferenceKind::*;
    let n = rows.len();
    let mut out = Vec::with_capacity(n);
    for (i, row) in rows.iter().enumerate() {
        let e = &row.entry;
        let which = format!("version {} of {n} (source version {})", i + 1, e.version.as_deref().unwrap_or("?"));
        let diff = |kind, detail: String| Difference { key: e.key.clone(), kind, detail: format!("{which}: {detail}") };
        if row.state != ObjectState::Done {
            out.push(Err(diff(NotCopied, format!("the journal has it {}", row.state))));
            continue;
        }
        // The i-th of the key's n copied versions is the destination's (held - n + i)-th.
        let Some(at) = (held.len() + i).checked_sub(n).and_then(|at| held.get(at)) else {
            out.push(Err(diff(Missing, format!("the destination holds {} versions of the key, the source {n}", held.len()))));
            continue;
        };
        if at.size != e.size {
            out.push(Err(diff(Size, format!("destination has {} bytes, the source {}", at.size, e.size))));
            continue;
        }
        if let (true, Some(want), Some(version)) = (all_bytes, &row.copied.sha256, &at.version) {
            let got = match version_sha256(versions, &e.key, version, e.size).await {
                Ok(got) => got,
                Err(err) => {
                    out.push(Err(diff(Error, err.to_string())));
                    continue;
                }
            };
            out.push(if &got == want { Ok(Evidence::Sha256ReadBack) } else { Err(diff(Checksum, format!("sha256 {got}, copied {want}"))) });
            continue;
        }
        out.push(match (&at.etag, &row.dst_etag) {
            (Some(now), Some(then)) if now == then => Ok(Evidence::EtagRecordedAtCopy),
            (Some(now), Some(then)) => Err(diff(
                Changed,
                format!("the destination's version here has etag {now}, the copy wrote {then} (another version, or out of order)"),
            )),
            _ => Ok(Evidence::SizeOnly),
        });
    }
    out
}

/// The SHA-256 of one version at the destination, read back in ranges of [`READ_CHUNK`].
async fn version_sha256(versions: &dyn ferry_providers::Versions, key: &str, version: &str, size: u64) -> ferry_providers::Result<String> {
    let mut digest = ObjectDigest::new();
    let mut offset = 0;
    while offset < size {
        let end = (offset + READ_CHUNK).min(size);
        digest.update(&versions.get_version(key, version, Some(offset..end)).await?.data);
        offset = end;
    }
    Ok(digest.finish().0)
}

/// Lists the destination and names every object the manifest does not have (left by another
/// writer, a rename at the source, or an upload's temporary part). Returns how many.
async fn find_extras(dst: &dyn Provider, journal: &dyn Journal, differences: &mut Vec<Difference>) -> Result<u64> {
    let mut extra = 0;
    let mut pages = dst.list();
    while let Some(page) = pages.next().await {
        let page = match page {
            Ok(page) => page,
            Err(e) => {
                let detail = format!("listing the destination: {e}");
                differences.push(Difference { key: String::new(), kind: DifferenceKind::Error, detail });
                break;
            }
        };
        for entry in page {
            // ferry's own temp files and folder markers hold nothing of the migration's.
            if entry.skipped.is_some_and(|r| !r.is_loss()) {
                continue;
            }
            if !journal.has_key(&entry.key).await? {
                extra += 1;
                let detail = match entry.skipped {
                    Some(reason) => format!("a {reason} at the destination, not in the manifest"),
                    None => format!("{} bytes at the destination, not in the manifest", entry.size),
                };
                differences.push(Difference { key: entry.key, kind: DifferenceKind::Extra, detail });
            }
        }
    }
    Ok(extra)
}

/// Up to `n` ids of done objects, uniformly at random (reservoir sampling over the journal).
async fn sample_ids(journal: &dyn Journal, n: u64) -> Result<HashSet<i64>> {
    let mut reservoir: Vec<i64> = Vec::with_capacity(n.min(1 << 20) as usize);
    let (mut seen, mut cursor) = (0u64, 0);
    loop {
        let rows = journal.in_state(ObjectState::Done, cursor, 4096).await?;
        let Some(last) = rows.last() else { break };
        cursor = last.id;
        for row in rows {
            seen += 1;
            if (reservoir.len() as u64) < n {
                reservoir.push(row.id);
            } else {
                let j = rand::random_range(0..seen);
                if j < n {
                    reservoir[j as usize] = row.id;
                }
            }
        }
    }
    Ok(reservoir.into_iter().collect())
}

/// How an object is read back: in ranges of `chunk` bytes, each holding its size of `budget`
/// (KiB permits) while it is read and hashed.
struct ReadBack {
    budget: Arc<tokio::sync::Semaphore>,
    chunk: u64,
}

/// Permits (KiB) of a memory budget of `bytes`.
fn kib(bytes: u64) -> usize {
    usize::try_from(bytes.div_ceil(1024).clamp(1, u32::MAX as u64 / 2)).unwrap_or(usize::MAX)
}

async fn check(dst: &dyn Provider, row: &ObjectRow, read_back: Option<ReadBack>) -> std::result::Result<Evidence, Vec<Difference>> {
    use DifferenceKind::*;
    let e = &row.entry;
    let diff = |kind, detail: String| vec![Difference { key: e.key.clone(), kind, detail }];
    // A key gone from the source must be gone from the destination too.
    if matches!(row.state, ObjectState::PendingDelete | ObjectState::Deleted) {
        return match dst.head(row.dst_key()).await {
            Ok(None) => Ok(Evidence::Absent),
            // A folder there now (the key became one at the source): no object under the key.
            Err(ferry_providers::ProviderError::Refused {
                refusal: ferry_providers::Refusal::Source(ferry_providers::FileKind::Directory),
                ..
            }) => Ok(Evidence::Absent),
            Ok(Some(_)) if row.state == ObjectState::PendingDelete => {
                Err(diff(DeletedAtSource, "deleted at the source, still at the destination (`ferry delta --delete` deletes it)".into()))
            }
            Ok(Some(_)) => Err(diff(
                DeletedAtSource,
                "deleted at the source; the destination still holds an object there (one ferry did not write, or wrote again since)".into(),
            )),
            Err(err) => Err(diff(Error, err.to_string())),
        };
    }
    if row.state != ObjectState::Done {
        let why = row.error.as_deref().map(|x| format!(": {x}")).unwrap_or_default();
        // An object the listing showed archived is named as such, whatever its last error said.
        let archived =
            e.storage_class.as_ref().filter(|c| c.needs_restore()).map(|c| format!(" (archived: {})", c.name)).unwrap_or_default();
        return Err(diff(NotCopied, format!("the journal has it {}{archived}{why}", row.state)));
    }
    // The one request per object: its answer carries the headers and metadata as well.
    let head = match dst.head(&e.key).await {
        Ok(Some(h)) => h,
        Ok(None) => return Err(diff(Missing, "not found at the destination".into())),
        Err(err) => return Err(diff(Error, err.to_string())),
    };
    if head.size != e.size {
        return Err(diff(Size, format!("destination has {} bytes, the source {}", head.size, e.size)));
    }
    let attrs = attr_differences(&dst.carries(), row, &head);
    if !attrs.is_empty() {
        return Err(attrs);
    }
    // Objects the service copied itself have no SHA-256 of their bytes to compare a read-back
    // with: they are checked by the service's checksums below.
    if let (Some(want), Some(read_back)) = (row.copied.sha256.clone(), read_back) {
        let got = read_back_sha256(dst, &e.key, e.size, &read_back).await.map_err(|err| diff(Error, err.to_string()))?;
        return if got == want { Ok(Evidence::Sha256ReadBack) } else { Err(diff(Checksum, format!("sha256 {got}, copied {want}"))) };
    }
    if let (Some(dst_crc), Some(copied)) = (&head.checksums.crc32c, &row.copied.crc32c) {
        return if dst_crc == copied {
            Ok(Evidence::DestinationCrc32c)
        } else {
            Err(diff(Checksum, format!("destination crc32c {dst_crc}, copied {copied}")))
        };
    }
    if let (Some(now), Some(then)) = (&head.etag, &row.dst_etag) {
        return if now == then {
            Ok(Evidence::EtagRecordedAtCopy)
        } else {
            Err(diff(Changed, format!("written since the copy: etag {now}, the copy left {then}")))
        };
    }
    Ok(Evidence::SizeOnly)
}

/// How the destination's attributes (`head`, of a destination keeping `to`) differ from what
/// it can hold of the source's: one difference per header and per metadata pair, each of its
/// own kind. What the pair of providers cannot carry at all (Expires to GCS or Azure, case in
/// S3 names) is expected absent; a name or value lost is a difference. The source's
/// attributes are those the journal kept of the copy; an object copied by a ferry that kept
/// none is compared by the metadata the manifest recorded (a GCS listing's) alone.
fn attr_differences(to: &Carries, row: &ObjectRow, head: &ObjectEntry) -> Vec<Difference> {
    let e = &row.entry;
    if !to.metadata {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut push = |kind, detail: String| out.push(Difference { key: e.key.clone(), kind, detail });
    let (src, whole) = match &row.src_attrs {
        Some(attrs) => (attrs.clone(), true),
        None => (Attrs { metadata: e.metadata.clone(), ..Attrs::default() }, false),
    };
    let fitted = fit(src.content_type.as_deref(), &src.metadata, &src.headers, None, to);
    for lost in fitted.not_carried.iter().filter(|n| n.loses_user_data()) {
        push(DifferenceKind::Metadata, lost.to_string());
    }
    let shown = |v: Option<&str>| v.map_or_else(|| "none".to_string(), |v| format!("{v:?}"));
    // A destination gives every object a Content-Type (S3 `binary/octet-stream`, Azure
    // `application/octet-stream`): compared only where the source had one.
    if let Some(want) = fitted.content_type.as_deref().filter(|_| whole)
        && head.content_type.as_deref() != Some(want)
    {
        push(
            DifferenceKind::ContentType,
            format!("Content-Type {} at the destination, {want:?} at the source", shown(head.content_type.as_deref())),
        );
    }
    for header in to.headers.iter().copied().filter(|_| whole) {
        let (want, got) = (fitted.headers.get(header), head.headers.get(header));
        if want != got {
            let detail = format!("{} {} at the destination, {} at the source", header.as_str(), shown(got), shown(want));
            push(DifferenceKind::of_header(header), detail);
        }
    }
    // Metadata names as the destination gives them back.
    let stored = |k: &str| match to.names {
        NameRule::LowerCaseToken => k.to_ascii_lowercase(),
        NameRule::Any | NameRule::Identifier => k.to_string(),
    };
    let mut expected = std::collections::HashSet::new();
    for (k, v) in &fitted.metadata {
        let name = stored(k);
        match head.metadata.get(&name) {
            Some(got) if got == v => {}
            Some(got) => push(DifferenceKind::Metadata, format!("metadata {k:?}: {got:?} at the destination, {v:?} at the source")),
            None => push(DifferenceKind::Metadata, format!("metadata {k:?}: not at the destination as copied")),
        }
        expected.insert(name);
    }
    for (k, v) in head.metadata.iter().filter(|(k, _)| whole && !expected.contains(k.as_str())) {
        push(DifferenceKind::Metadata, format!("metadata {k:?}: {v:?} at the destination, not at the source"));
    }
    out
}

/// The SHA-256 of `key`'s `size` bytes, read in ranges of [`READ_CHUNK`] one at a time.
pub(crate) async fn sha256_of(src: &dyn Provider, key: &str, size: u64) -> ferry_providers::Result<String> {
    let mut digest = ObjectDigest::new();
    let mut offset = 0;
    while offset < size {
        let end = (offset + READ_CHUNK).min(size);
        digest.update(&src.get(key, Some(offset..end)).await?.data);
        offset = end;
    }
    Ok(digest.finish().0)
}

async fn read_back_sha256(dst: &dyn Provider, key: &str, size: u64, read_back: &ReadBack) -> ferry_providers::Result<String> {
    let mut digest = ObjectDigest::new();
    let mut offset = 0;
    while offset < size {
        let end = (offset + read_back.chunk).min(size);
        let permits = u32::try_from(kib(end - offset)).unwrap_or(u32::MAX);
        let _held = read_back.budget.acquire_many(permits).await.expect("the verify budget is never closed");
        let fetched = dst.get(key, Some(offset..end)).await?;
        digest.update(&fetched.data);
        offset = end;
    }
    Ok(digest.finish().0)
}
