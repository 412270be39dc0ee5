//! Copying: plans when needed, runs the scheduler (`scheduler.rs`) over the journal's pending
//! objects with one mover (`mover.rs`) from source to destination, and folds the outcomes into
//! a summary and a JSON report.

pub use crate::options::{Archived, CopyOptions, Failure};

use crate::mover::Mover;
use crate::scheduler::{OneMover, run_pass, shared};
use crate::{EngineError, Job, Result, Stats};
use ferry_core::size::format_size;
use ferry_core::{Evidence, Limits, PartPlan};
use ferry_journal::JournalKind;
use ferry_providers::{Provider, RequestCount, RunContext};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

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
    pub verified_by: BTreeMap<Evidence, u64>,
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
    /// Objects the manifest lists archived (S3 GLACIER / DEEP_ARCHIVE, Azure Archive), as
    /// `plan` counts them: unreadable until restored (`--archived`).
    pub archived: u64,
    /// Archived objects this run did not read (`failures` of kind `archived`): left unread by
    /// `--archived skip`, or with a restore in progress.
    pub archived_not_read: u64,
    /// Restores of archived source objects this run asked for (`--archived restore`).
    pub restores_requested: u64,
    /// Of those, asked at another tier than `--restore-tier`: the service does not offer it
    /// for the object's class (S3 has no expedited retrieval of DEEP_ARCHIVE: standard).
    pub restores_at_other_tier: u64,
    /// Restores in flight when the run ended (`ferry status` counts them too); a later run
    /// copies those restored since.
    pub restoring: u64,
    /// Objects under S3 object lock (legal hold or retention ahead) counted by the plan this
    /// run made, and the first of them named (0 when the job was planned before: `ferry
    /// plan` reports them). ferry copies their bytes, never their lock.
    pub locked: u64,
    pub locked_objects: Vec<crate::Locked>,
    pub failed: u64,
    pub failures: Vec<Failure>,
    /// What the destination did not keep of the objects' headers, metadata and tags.
    pub fidelity: crate::Fidelity,
    /// Entries the listing met that are not copied (symlinks, FIFOs…), by reason and named.
    pub skipped: crate::Skipped,
    /// The class (or access tier) every write asked for (`--storage-class`); `None`: the
    /// destination's default.
    pub storage_class: Option<String>,
    /// `--storage-class-map`: the class objects of each source class were written in (others:
    /// `storage_class`).
    pub storage_class_map: BTreeMap<String, String>,
    /// The S3 server-side encryption every write asked for (`--sse`), e.g. `aws:kms (key K)`;
    /// `None`: the bucket's default.
    pub sse: Option<String>,
    /// The Cloud KMS key (`--gcs-kms-key`) or Azure encryption scope
    /// (`--azure-encryption-scope`) every write asked for.
    pub gcs_kms_key: Option<String>,
    pub azure_encryption_scope: Option<String>,
    /// A fatal error that stopped the run early.
    pub stopped_by: Option<String>,
    /// `--dry-run`: nothing was copied; these are the objects and bytes a copy would send.
    pub dry_run: bool,
    pub pending: u64,
    pub pending_bytes: u64,
    pub seconds: f64,
    pub report: Option<std::path::PathBuf>,
}

/// How often a copy waiting for restores (`--restore-wait`) looks at them again.
const RESTORE_POLL: std::time::Duration = std::time::Duration::from_secs(300);

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
    let journal = job.journal(JournalKind::Main).await?;
    // Refused before a byte moves when the largest object cannot be cut into parts that fit
    // the memory budget (every smaller one then can).
    if let Some((key, size)) = journal.largest_pending().await? {
        PartPlan::fit(size, opts.part_size, &limits, opts.max_memory)
            .map_err(|source| EngineError::NoPartPlan { what: format!("{key} ({})", format_size(size)), source })?;
    }
    let before = journal.counts().await?;
    let skipped = crate::Skipped::of(journal.as_ref()).await?;
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
        archived: planned.archived,
        archived_not_read: 0,
        restores_requested: 0,
        restores_at_other_tier: 0,
        restoring: before.restoring,
        locked: planned.locked,
        locked_objects: planned.locked_objects.clone(),
        failed: 0,
        failures: Vec::new(),
        fidelity: crate::Fidelity::default(),
        skipped,
        storage_class: job.access.destination.write.storage_class.clone(),
        storage_class_map: opts.storage_class_map.clone(),
        sse: job.access.destination.write.sse.as_ref().map(|s| s.describe()),
        gcs_kms_key: job.access.destination.write.gcs_kms_key.clone(),
        azure_encryption_scope: job.access.destination.write.azure_encryption_scope.clone(),
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
    // Before the first write: a later run of this job writes the way this one does.
    job.keep_settings()?;

    let shared = shared(journal, ferry_journal::RunKind::Copy, job.latest_generation().unwrap_or(1), &opts, &stats, run).await?;
    let mut mover = Mover::new(src, dst, &shared, &opts);
    mover.server_side = opts.server_side && mover.dst.server_copy().is_some_and(|c| c.copies_from(&job.source, &job.access.source));
    // The write ledger's prior states from one listing of a destination no larger than what
    // this run writes (an empty one: a single request), instead of a HEAD per object.
    mover.held = crate::held::Held::list(mover.dst.as_ref(), crate::held::Held::limit(summary.pending)).await;
    if let Some(root) = &opts.backup_to {
        let backup = crate::backup::Backup::open(root, &job.id(), shared.run_id, mover.dst.as_ref(), &job.access.destination, run).await?;
        mover.backup = Some(Arc::new(backup));
    }
    let mover = Arc::new(mover);
    let mut pass = run_pass(&mover.journal, opts.transfers, run, &OneMover(mover.clone())).await?;
    // Restores in flight (`--archived restore`): looked at again every few minutes, as long as
    // `--restore-wait` allows, each time a pass over what is left (a pass hands an object out
    // once). Bounded by the wait; without one, a later run copies them.
    let waiting = tokio::time::Instant::now();
    while pass.stopped_by.is_none() && matches!(opts.archived, crate::options::Archived::Restore(_)) {
        let left = opts.restore_wait.saturating_sub(waiting.elapsed());
        if left.is_zero() || mover.journal.counts().await?.restoring == 0 {
            break;
        }
        tokio::time::sleep(left.min(RESTORE_POLL)).await;
        let next = run_pass(&mover.journal, opts.transfers, run, &OneMover(mover.clone())).await?;
        // What the last pass left failed is what failed; what any pass copied was copied.
        pass = crate::scheduler::Pass {
            copied: pass.copied + next.copied,
            bytes: pass.bytes + next.bytes,
            transfers_lowest: pass.transfers_lowest.min(next.transfers_lowest),
            ..next
        };
    }
    summary.stopped_by = pass.stopped_by;
    summary.restarted = std::mem::take(&mut *mover.restarted.lock().expect("restarted lock"));
    mover.take_verified(&mut summary.verified_by);
    summary.fidelity = mover.fidelity.take();
    summary.retries = run.retries().snapshot();
    summary.requests = run.requests().snapshot();
    summary.transfers_lowest = pass.transfers_lowest;
    summary.resumed_objects = Stats::get(&stats.resumed_objects);
    summary.resumed_bytes = Stats::get(&stats.resumed_bytes);
    summary.restores_requested = Stats::get(&stats.restores_requested);
    summary.restores_at_other_tier = Stats::get(&stats.restores_at_other_tier);
    summary.restoring = mover.journal.counts().await?.restoring;
    summary.archived_not_read = pass.failures.iter().filter(|f| f.kind == ferry_core::FailureKind::Archived).count() as u64;
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
