//! Copying: the scheduler. It plans when needed, pages through the journal's pending objects,
//! runs the mover (`mover.rs`) on `--transfers` of them at a time, stops early on a fatal
//! error, and folds the outcomes into a summary and a JSON report.

use crate::concurrency::Gate;
use crate::mover::{Budget, Mover};
use crate::{EngineError, Job, Result, Stats};
use ferry_core::size::format_size;
use ferry_core::{ErrorClass, Limits, PartPlan};
use ferry_journal::{Journal, ObjectRow};
use ferry_providers::{Provider, RequestCount, RunContext};
use futures::stream::StreamExt;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Objects in flight.
    pub transfers: usize,
    /// Part size; `None` lets the destination's limits decide.
    pub part_size: Option<u64>,
    /// Bytes buffered in total across all parts in flight.
    pub max_memory: u64,
    /// Parts in flight per object (reads and uploads each).
    pub parts_per_object: usize,
    /// Attempts per object within one run for retryable failures.
    pub attempts: u32,
    /// Plan and count what would be copied; write nothing to the destination.
    pub dry_run: bool,
    /// Let the service copy objects itself when source and destination are the same service
    /// reached the same way (`--server-side auto`); `false` moves every byte through ferry.
    pub server_side: bool,
    /// Permission bits of files written to local disk from a source that has none (an object
    /// store); `None`: 0644. A local source's own bits are kept.
    pub file_mode: Option<u32>,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            transfers: 16,
            part_size: None,
            max_memory: 64 << 20,
            parts_per_object: 4,
            attempts: 5,
            dry_run: false,
            server_side: true,
            file_mode: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub key: String,
    pub error: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CopySummary {
    pub source: String,
    pub destination: String,
    pub generation: u32,
    pub objects_total: u64,
    /// Objects finished by this run.
    pub copied: u64,
    pub bytes_copied: u64,
    /// Objects a previous run had finished already.
    pub already_done: u64,
    /// How many objects each kind of evidence proved while copying.
    pub verified_by: BTreeMap<String, u64>,
    /// Failed attempts that were tried again, by cause (`throttled (429)`, `unavailable (503)`,
    /// `checksum mismatch`, `connection dropped`, …): requests the transport retried and
    /// objects or ranges read or sent again.
    pub retries: BTreeMap<String, u64>,
    /// Calls to each provider by method (`s3 put part`, `local get`…): how many, how many
    /// failed, and the bytes of those that succeeded.
    pub requests: BTreeMap<String, RequestCount>,
    /// The size parts are cut to (objects up to it go in one request): the one asked for or
    /// the destination's default, lowered to fit `--max-memory`, and raised only for objects
    /// the destination's part count limit demands it of.
    pub part_size: u64,
    /// `--part-size` as given, when it was not the part size used (it did not fit the budget).
    pub part_size_asked: Option<u64>,
    /// The fewest objects copied at once: below `--transfers` when the services pushed back
    /// (429/503) and ferry slowed down.
    pub transfers_lowest: usize,
    /// Objects whose source changed since the manifest: their partial upload was dropped and
    /// the current version copied from the start (never two versions stitched together).
    pub restarted: Vec<Failure>,
    /// Multipart uploads continued from an earlier run, and the bytes they did not send again.
    pub resumed_objects: u64,
    pub resumed_bytes: u64,
    pub failed: u64,
    pub failures: Vec<Failure>,
    /// Entries the listing met that are not copied (symlinks, FIFOs…), by reason and named.
    pub skipped: crate::Skipped,
    /// A fatal error that stopped the run early.
    pub stopped_by: Option<String>,
    /// `--dry-run`: nothing was copied; these are the objects and bytes a copy would send.
    pub dry_run: bool,
    pub pending: u64,
    pub pending_bytes: u64,
    pub seconds: f64,
    pub report: Option<std::path::PathBuf>,
}

/// Copies everything the job's manifest lists that the journal does not have as done.
/// Plans first when the job has no sealed manifest. Both providers must have been checked,
/// and opened in `run` (whose retry and request counts the summary reports).
pub async fn copy(
    job: &mut Job,
    src: Arc<dyn Provider>,
    dst: Arc<dyn Provider>,
    opts: CopyOptions,
    stats: Arc<Stats>,
    run: &Arc<RunContext>,
) -> Result<CopySummary> {
    let started = Instant::now();
    let limits = dst.limits();
    let part_size = check_part_size(&opts, dst.name(), &limits)?;
    let planned = crate::plan(job, src.as_ref(), &stats).await?;
    let journal = Journal::open(&job.journal_path())?;
    // Refused before a byte moves when the largest object cannot be cut into parts that fit
    // the memory budget (every smaller one then can).
    if let Some((key, size)) = journal.largest_pending()? {
        PartPlan::fit(size, opts.part_size, &limits, opts.max_memory)
            .map_err(|source| EngineError::NoPartPlan { what: format!("{key} ({})", format_size(size)), source })?;
    }
    let before = journal.counts()?;
    let skipped = crate::Skipped::of(&journal)?;
    stats.start(&before);
    let mut summary = CopySummary {
        source: job.source.to_string(),
        destination: job.destination.to_string(),
        generation: planned.generation,
        objects_total: before.objects,
        copied: 0,
        bytes_copied: 0,
        already_done: before.done,
        verified_by: BTreeMap::new(),
        retries: BTreeMap::new(),
        requests: BTreeMap::new(),
        transfers_lowest: opts.transfers.max(1),
        part_size,
        part_size_asked: opts.part_size.filter(|asked| *asked != part_size),
        restarted: Vec::new(),
        resumed_objects: 0,
        resumed_bytes: 0,
        failed: 0,
        failures: Vec::new(),
        skipped,
        stopped_by: None,
        dry_run: opts.dry_run,
        pending: before.objects - before.done,
        pending_bytes: before.bytes - before.done_bytes,
        seconds: 0.0,
        report: None,
    };
    if opts.dry_run {
        summary.seconds = started.elapsed().as_secs_f64();
        return Ok(summary);
    }

    let (journal, budget) = shared(journal, &opts, run);
    let mut mover = Mover::new(src, dst, &journal, &budget, &opts, &stats, run);
    mover.server_side = opts.server_side && same_service(job);
    let mover = Arc::new(mover);
    let pass = run_pass(&mover.journal, opts.transfers, run, |_| Some(mover.clone())).await?;
    summary.stopped_by = pass.stopped_by;
    summary.restarted = std::mem::take(&mut *mover.restarted.lock().expect("restarted lock"));
    mover.take_verified(&mut summary.verified_by);
    summary.retries = run.retries().snapshot();
    summary.requests = run.requests().snapshot();
    summary.transfers_lowest = pass.transfers_lowest;
    summary.resumed_objects = Stats::get(&stats.resumed_objects);
    summary.resumed_bytes = Stats::get(&stats.resumed_bytes);
    (summary.copied, summary.bytes_copied, summary.failed) = (pass.copied, pass.bytes, pass.failures.len() as u64);
    summary.failures = pass.failures;
    summary.seconds = started.elapsed().as_secs_f64();
    let report = serde_json::to_value(&summary).expect("summary serializes");
    summary.report = Some(job.write_report("copy", &report)?);
    Ok(summary)
}

/// The part size a run cuts objects into (see [`CopySummary::part_size`]); a usage error when
/// `--part-size` is below the destination's minimum or no part the destination takes fits
/// `--max-memory`. Checked before anything is written.
pub fn check_part_size(opts: &CopyOptions, provider: &'static str, limits: &Limits) -> Result<u64> {
    if let Some(given) = opts.part_size.filter(|p| *p < limits.min_part_size) {
        return Err(EngineError::PartSizeBelowMinimum { provider, given, min: limits.min_part_size });
    }
    limits
        .part_size_within(opts.part_size, opts.max_memory)
        .map_err(|source| EngineError::NoPartPlan { what: format!("{provider} destination"), source })
}

/// What a run's movers share: the journal, and the memory budget (part buffers are recycled in
/// the run's pool; the free ones kept are bounded by the same budget).
pub(crate) fn shared(journal: Journal, opts: &CopyOptions, run: &RunContext) -> (Arc<Mutex<Journal>>, Budget) {
    run.buffers().set_limit(usize::try_from(opts.max_memory).unwrap_or(usize::MAX));
    (Arc::new(Mutex::new(journal)), Budget::new(opts.max_memory))
}

/// What one pass over the journal's pending objects did.
pub(crate) struct Pass {
    pub(crate) copied: u64,
    pub(crate) bytes: u64,
    /// In key order.
    pub(crate) failures: Vec<Failure>,
    /// A fatal error that stopped the pass early.
    pub(crate) stopped_by: Option<String>,
    /// Objects whose device filled up (or had before they started): (journal id, device).
    pub(crate) full: Vec<(i64, u32)>,
    pub(crate) transfers_lowest: usize,
}

/// Runs every pending object of `journal` through the mover `pick` chooses for it (`None`:
/// not now, e.g. an object not yet placed on a device), `transfers` at a time or fewer while
/// the services push back. A fatal error stops the pass; a device that fills up does not: its
/// objects are handed back in [`Pass::full`], and the device is not written again this pass.
pub(crate) async fn run_pass(
    journal: &Arc<Mutex<Journal>>,
    transfers: usize,
    run: &RunContext,
    pick: impl Fn(&ObjectRow) -> Option<Arc<Mover>>,
) -> Result<Pass> {
    let stop: Arc<Mutex<Option<String>>> = Arc::default();
    let stopping = Arc::new(AtomicBool::new(false));
    let full_devices: Arc<Mutex<BTreeSet<u32>>> = Arc::default();
    // Page through the journal lazily: ids only grow, so a cursor never revisits an object
    // that failed in this pass.
    let pages = futures::stream::unfold((0i64, false), {
        let journal = journal.clone();
        let stopping = stopping.clone();
        move |(cursor, finished)| {
            let journal = journal.clone();
            let stopping = stopping.clone();
            async move {
                if finished || stopping.load(Ordering::Relaxed) {
                    return None;
                }
                let rows = journal.lock().expect("journal lock").todo(cursor, 512, i64::MAX);
                match rows {
                    Ok(rows) if rows.is_empty() => None,
                    Ok(rows) => {
                        let next = rows.last().map(|r| r.id).unwrap_or(cursor);
                        Some((Ok(rows), (next, false)))
                    }
                    Err(e) => Some((Err(e), (cursor, true))),
                }
            }
        }
    });
    let mut journal_error = None;
    // At most `transfers` objects at once, fewer while the services push back.
    let throttles = || run.retries().throttles();
    let gate = Arc::new(Gate::new(transfers, throttles()));
    // Outcomes are folded as they come: memory stays flat however many objects the job has.
    let (copied, bytes, mut failures, full) = pages
        .filter_map(|page| {
            let keep = match page {
                Ok(rows) => Some(futures::stream::iter(rows)),
                Err(e) => {
                    journal_error = Some(e);
                    None
                }
            };
            async move { keep }
        })
        .flatten()
        .filter_map(|row| {
            let mover = pick(&row);
            async move { mover.map(|m| (row, m)) }
        })
        .map(|(row, mover)| {
            let gate = gate.clone();
            let stop = stop.clone();
            let stopping = stopping.clone();
            let full_devices = full_devices.clone();
            async move {
                if stopping.load(Ordering::Relaxed) {
                    return None;
                }
                let key = row.entry.key.clone();
                let device = row.route.device;
                if let Some(d) = device.filter(|d| full_devices.lock().expect("full lock").contains(d)) {
                    return Some((key, Outcome::Full(row.id, d)));
                }
                let slot = gate.enter(throttles()).await;
                let result = mover.copy_with_retries(&row).await;
                gate.leave(slot, throttles());
                let outcome = match (result, device) {
                    (Ok(copied), _) => Outcome::Done(copied),
                    (Err(e), Some(d)) if e.full => {
                        full_devices.lock().expect("full lock").insert(d);
                        Outcome::Full(row.id, d)
                    }
                    (Err(e), _) => {
                        if e.class == ErrorClass::Fatal {
                            stopping.store(true, Ordering::Relaxed);
                            stop.lock().expect("stop lock").get_or_insert_with(|| e.message.clone());
                        }
                        Outcome::Failed(e.message)
                    }
                };
                Some((key, outcome))
            }
        })
        .buffer_unordered(transfers.max(1))
        .filter_map(|r| async move { r })
        .fold((0u64, 0u64, Vec::new(), Vec::new()), |(copied, bytes, mut failures, mut full), (key, outcome)| async move {
            match outcome {
                // The size of the version copied, which a restart may have changed.
                Outcome::Done(size) => return (copied + 1, bytes + size, failures, full),
                Outcome::Failed(error) => failures.push(Failure { key, error }),
                Outcome::Full(id, device) => full.push((id, device)),
            }
            (copied, bytes, failures, full)
        })
        .await;
    if let Some(e) = journal_error {
        return Err(e.into());
    }
    failures.sort_by(|a, b| a.key.cmp(&b.key));
    let stopped_by = stop.lock().expect("stop lock").clone();
    Ok(Pass { copied, bytes, failures, stopped_by, full, transfers_lowest: gate.lowest() })
}

/// How one object of a pass ended.
enum Outcome {
    /// Copied, with the size of the version copied.
    Done(u64),
    Failed(String),
    /// Its device is full: (journal id, device).
    Full(i64, u32),
}

/// Whether the job's two sides are one service reached one way, so the service can copy
/// between them itself: S3, GCS or Azure on both sides with the same endpoint and credentials
/// (profile).
fn same_service(job: &Job) -> bool {
    use ferry_core::Scheme;
    job.source.scheme == job.destination.scheme
        && matches!(job.source.scheme, Scheme::S3 | Scheme::Gcs | Scheme::Azure)
        && job.access.source.endpoint == job.access.destination.endpoint
        && job.access.source.profile == job.access.destination.profile
}
