//! Cutover: the source is declared frozen; a final delta (with its deletes) brings the
//! destination level, a second listing proves the source did not change meanwhile, and a verify
//! of the whole destination proves it holds the final generation. The result is a cutover
//! record (JSON and a human summary in `JOB/reports/`) whose own SHA-256 is printed, so the
//! record a team signs off is the record ferry wrote.
//!
//! It holds only if all of it holds: the delta copied and deleted everything (lag 0), the two
//! listings are identical, and verify found no difference.

use crate::delta::{DeltaOptions, DeltaSummary, sort_generation, sort_listing};
use crate::{EngineError, Job, Result, Stats, VerifyOptions, VerifySummary};
use chrono::{DateTime, Utc};
use ferry_core::{Evidence, ObjectEntry};
use ferry_manifest::{ManifestHeader, ManifestReader};
use ferry_providers::{Provider, RunContext};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct CutoverOptions {
    /// The final delta (its deletes are always carried out, within its limits).
    pub delta: DeltaOptions,
    pub verify: VerifyOptions,
}

/// How a key differs between the final generation and the listing after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ListingChange {
    Added,
    Changed,
    Deleted,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListingDifference {
    pub key: String,
    pub change: ListingChange,
}

/// One generation of the job, as the record lists them.
#[derive(Debug, Clone, Serialize)]
pub struct GenerationRecord {
    pub generation: u32,
    pub parent: Option<u32>,
    pub created_at: DateTime<Utc>,
    pub objects: u64,
    pub bytes: u64,
    /// SHA-256 of its sealed `manifest.json` (which holds each shard's SHA-256).
    pub digest: String,
}

/// What a cutover proved, as written to `JOB/reports/cutover-TIME.json`.
#[derive(Debug, Clone, Serialize)]
pub struct CutoverRecord {
    pub source: String,
    pub destination: String,
    /// When the source was declared frozen (the cutover started).
    pub frozen_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub final_generation: u32,
    pub manifest_digest: String,
    pub objects: u64,
    pub bytes: u64,
    /// Objects and deletes still behind after the final delta, and when that was measured.
    pub lag_objects: u64,
    pub lag_deletes: u64,
    pub lag_at: DateTime<Utc>,
    /// The listing after the final delta was the final generation's, key for key.
    pub listings_identical: bool,
    /// How they differed (the first 1,000), and how many in all.
    pub listing_differences: Vec<ListingDifference>,
    pub listing_differences_total: u64,
    /// Verify of the whole destination against the final generation.
    pub verified: u64,
    pub verify_differences: u64,
    pub proved_by: BTreeMap<Evidence, u64>,
    pub all_bytes: bool,
    pub sample: Option<u64>,
    /// Every generation of the job, the first to the final.
    pub generations: Vec<GenerationRecord>,
    /// A table job: the rows written since the final delta, counted in the database after it
    /// (the second listing lists the spool, which the database does not change). Rows deleted
    /// from the tables are not seen by an incremental export and stay at the destination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tables_written_since: Option<u64>,
    /// A table job: what else keeps the database from being the destination's (tables created
    /// since in the job's schemas, prepared transactions).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tables_pending: Vec<String>,
    /// Whether the destination equals the source as of `finished_at`.
    pub holds: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct CutoverSummary {
    pub record: CutoverRecord,
    /// The record's file, its SHA-256 (of the file's bytes), and the human summary beside it.
    pub record_path: PathBuf,
    pub record_sha256: String,
    pub summary_path: PathBuf,
    pub delta: DeltaSummary,
    pub verify: VerifySummary,
}

/// Differences named in the record; all are counted.
const NAMED: usize = 1000;

/// Runs a cutover of the job (see the module docs).
pub async fn cutover(
    job: &mut Job,
    src: Arc<dyn Provider>,
    dst: Arc<dyn Provider>,
    opts: CutoverOptions,
    stats: Arc<Stats>,
    run: &Arc<RunContext>,
) -> Result<CutoverSummary> {
    let frozen_at = Utc::now();
    let delta_opts = DeltaOptions { delete: true, ..opts.delta.clone() };
    let delta = crate::delta(job, src.clone(), dst.clone(), delta_opts, stats.clone(), run).await?;
    // A delta that finished an earlier one has not listed: the final delta is the next.
    let delta = match delta.resumed {
        true => crate::delta(job, src.clone(), dst.clone(), DeltaOptions { delete: true, ..opts.delta }, stats.clone(), run).await?,
        false => delta,
    };
    let generation = delta.generation;
    let lag = delta.lag.clone().unwrap_or_default();

    // The second listing, compared key for key with the final generation.
    let spool = job.dir.join("tmp");
    let listed = sort_listing(src.as_ref(), &spool.join("cutover-listing"), &stats).await?;
    let sealed = sort_generation(job, generation, &spool.join("cutover-generation"))?;
    let (differences, total) = compare(&sealed, &listed, &job.dir)?;
    let (tables_written_since, tables_pending) = match job.tables() {
        Some(_) => {
            let since = crate::tables::export_since(job, generation + 1, true, &stats).await?;
            let pending: Vec<String> = since
                .not_exported
                .iter()
                .map(|t| format!("table {t}, created since the export, is not exported"))
                .chain(since.prepared.iter().map(|g| format!("prepared transaction {g:?} is not committed or rolled back")))
                .collect();
            (Some(since.tables.iter().map(|t| t.rows).sum::<u64>()), pending)
        }
        None => (None, Vec::new()),
    };

    let verify = crate::verify(job, dst, opts.verify.clone(), stats, run).await?;
    let mut generations = Vec::new();
    for g in 1..=generation {
        let dir = job.generation_dir(g);
        let header = ManifestReader::open(&dir)?.header().clone();
        generations.push(GenerationRecord {
            generation: g,
            parent: header.parent,
            created_at: header.created_at,
            objects: header.totals.objects,
            bytes: header.totals.bytes,
            digest: ManifestHeader::digest(&dir)?,
        });
    }
    let last = generations.last().expect("the final generation");
    let copies_done = !delta.incomplete();
    let record = CutoverRecord {
        source: job.source.to_string(),
        destination: job.destination.to_string(),
        frozen_at,
        finished_at: Utc::now(),
        final_generation: generation,
        manifest_digest: last.digest.clone(),
        objects: last.objects,
        bytes: last.bytes,
        lag_objects: lag.objects,
        lag_deletes: lag.deletes,
        lag_at: lag.at,
        listings_identical: total == 0,
        listing_differences: differences,
        listing_differences_total: total,
        verified: verify.matched,
        verify_differences: verify.differences.len() as u64,
        proved_by: verify.proved_by.clone(),
        all_bytes: opts.verify.all_bytes,
        sample: opts.verify.sample,
        holds: copies_done
            && lag.objects == 0
            && lag.deletes == 0
            && total == 0
            && verify.differences.is_empty()
            && tables_written_since.unwrap_or(0) == 0
            && tables_pending.is_empty(),
        tables_written_since,
        tables_pending,
        generations,
    };
    let (record_path, mut file) = job.report_file("cutover", "json")?;
    let bytes = serde_json::to_vec_pretty(&record).expect("record serializes");
    {
        use std::io::Write;
        file.write_all(&bytes).and_then(|()| file.sync_all()).map_err(EngineError::io(&record_path))?;
    }
    let record_sha256 = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    let (summary_path, mut text) = job.report_file("cutover", "txt")?;
    {
        use std::io::Write;
        let human = human(&record, &record_path, &record_sha256);
        text.write_all(human.as_bytes()).and_then(|()| text.sync_all()).map_err(EngineError::io(&summary_path))?;
    }
    Ok(CutoverSummary { record, record_path, record_sha256, summary_path, delta, verify })
}

/// Walks the final generation and the later listing in key order: every key on one side only,
/// or in another version, is a difference.
fn compare(
    sealed: &crate::key_order::Sorted,
    listed: &crate::key_order::Sorted,
    job_dir: &std::path::Path,
) -> Result<(Vec<ListingDifference>, u64)> {
    let io = |e| EngineError::Io { path: job_dir.join("tmp"), source: e };
    let (a, a_error) = sealed.entries().map_err(io)?;
    let (b, b_error) = listed.entries().map_err(io)?;
    let (mut a, mut b) = (a.peekable(), b.peekable());
    let (mut named, mut total) = (Vec::new(), 0u64);
    let mut note = |key: &str, change| {
        total += 1;
        if named.len() < NAMED {
            named.push(ListingDifference { key: key.to_string(), change });
        }
    };
    loop {
        let order = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => x.key.cmp(&y.key),
        };
        match order {
            std::cmp::Ordering::Less => {
                let gone: ObjectEntry = a.next().expect("an entry");
                note(&gone.key, ListingChange::Deleted);
            }
            std::cmp::Ordering::Greater => {
                let new = b.next().expect("an entry");
                note(&new.key, ListingChange::Added);
            }
            std::cmp::Ordering::Equal => {
                let (was, now) = (a.next().expect("an entry"), b.next().expect("an entry"));
                if !was.same_version(&now) {
                    note(&now.key, ListingChange::Changed);
                }
            }
        }
    }
    if let Some(e) = a_error.take().or_else(|| b_error.take()) {
        return Err(io(e));
    }
    Ok((named, total))
}

/// The record as people read it.
fn human(r: &CutoverRecord, path: &std::path::Path, sha256: &str) -> String {
    use ferry_core::size::format_size;
    let mut out = String::new();
    let verdict = if r.holds { "HOLDS" } else { "DOES NOT HOLD" };
    out.push_str(&format!("ferry cutover: {verdict}\n"));
    out.push_str(&format!("{} → {}\n", r.source, r.destination));
    out.push_str(&format!("source frozen at {}, finished at {}\n", r.frozen_at.to_rfc3339(), r.finished_at.to_rfc3339()));
    out.push_str(&format!(
        "final generation {} ({} objects, {}), manifest sha256 {}\n",
        r.final_generation,
        r.objects,
        format_size(r.bytes),
        r.manifest_digest
    ));
    out.push_str(&format!("lag at {}: {} objects, {} deletes\n", r.lag_at.to_rfc3339(), r.lag_objects, r.lag_deletes));
    match r.listings_identical {
        true => out.push_str("a second listing of the source is identical to the final generation\n"),
        false => {
            out.push_str(&format!("the source changed after the final delta: {} keys\n", r.listing_differences_total));
            for d in r.listing_differences.iter().take(20) {
                out.push_str(&format!("  {:?}: {}\n", d.change, d.key));
            }
        }
    }
    if let Some(rows) = r.tables_written_since {
        match rows {
            0 => out.push_str("tables: no row written since the final delta (counted in the database after it)\n"),
            n => out.push_str(&format!("tables: {n} rows written since the final delta (counted in the database after it)\n")),
        }
        out.push_str("tables: rows deleted from the database are not seen by an incremental export; the destination keeps them\n");
        for p in &r.tables_pending {
            out.push_str(&format!("tables: {p}\n"));
        }
    }
    let proved: Vec<String> = r.proved_by.iter().map(|(how, n)| format!("{n} by {how}")).collect();
    out.push_str(&format!("verify: {} matched ({}), {} differences\n", r.verified, proved.join(", "), r.verify_differences));
    out.push_str("generations:\n");
    for g in &r.generations {
        out.push_str(&format!("  {} ({} objects) sha256 {}\n", g.generation, g.objects, g.digest));
    }
    out.push_str(&format!("record: {} sha256 {sha256}\n", path.display()));
    out
}
