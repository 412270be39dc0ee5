//! A delta: list the source again, seal the next manifest generation with its change set
//! against the newest one, copy what was added or changed through the normal copy, and, only
//! when asked and only when it is safe, delete at the destination what the source no longer has.
//!
//! Order of side effects, each step resumable:
//! 1. the listing goes to an unsealed generation directory and to the merge (`feed`): as it
//!    arrives when the source lists in key order (S3, GCS, Azure; checked as it goes), else
//!    through a key-order spool (`key_order`); a listing that fails leaves no generation (the
//!    merge rolled back, the directory removed);
//! 2. the listing is merged into the journal in one pass and one transaction, watched
//!    (`DeltaWatch`): what looks touched is asked about (a HEAD, or a read of a local file),
//!    each change is written to the change set, and at the end the delete limits are checked —
//!    an emptied source, or more deletes than `--max-delete`, refuse here (unless
//!    `--force-delete`), and a dry run or a listing equal to the newest generation stop here:
//!    the merge is rolled back and the generation directory removed, nothing sealed, merged or
//!    deleted. Otherwise the generation is sealed, and then the merge committed (added and
//!    changed objects pending, gone ones pending deletes) with the journal's record that it
//!    merged the generation;
//! 3. the copy runs over what is pending, as `ferry copy` would;
//! 4. with `--delete`, and only after every copy of the run succeeded, the pending deletes are
//!    carried out, each recorded in the write ledger first (what the destination held), so a
//!    rollback can restore it.
//!
//! A run killed after the seal and before the commit finds a sealed generation the journal has
//! not merged: the next `ferry delta` merges it; killed later, the next run finishes the copies,
//! then the deletes, before it lists again.

mod feed;

use crate::copy::{CopyOptions, CopySummary, Failure};
use crate::key_order::KeySorter;
use crate::{EngineError, Job, Result, Stats};
use ferry_core::{ObjectEntry, SkipReason};
use ferry_journal::{
    GenerationDelta, Held, Intent, JournalKind, Lag, Look, LookKind, MergeStep, MergeWatch, ObjectState, Prior, RunKind, Seen, Verdict,
    WriteOp, Wrote,
};
use ferry_manifest::{ManifestReader, ManifestWriter};
use ferry_providers::{Provider, RunContext};
use futures::StreamExt;
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

/// How many deletes a delta may carry out without `--force-delete`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum MaxDelete {
    /// 10% of the objects, or 10,000, whichever is smaller.
    #[default]
    Default,
    Count(u64),
    /// A percentage of the objects.
    Percent(f64),
}

impl MaxDelete {
    /// The most deletes allowed of `objects` objects the destination holds for the job.
    pub fn limit(self, objects: u64) -> u64 {
        match self {
            MaxDelete::Default => (objects / 10).min(10_000),
            MaxDelete::Count(n) => n,
            MaxDelete::Percent(p) => ((objects as f64) * p / 100.0).floor() as u64,
        }
    }

    /// `N` or `P%` (as `--max-delete` takes it).
    pub fn parse(text: &str) -> std::result::Result<MaxDelete, String> {
        let text = text.trim();
        if let Some(p) = text.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| format!("{text:?} is not a percentage such as 5%"))?;
            if !(0.0..=100.0).contains(&p) {
                return Err(format!("{text:?}: a percentage is between 0% and 100%"));
            }
            return Ok(MaxDelete::Percent(p));
        }
        text.parse().map(MaxDelete::Count).map_err(|_| format!("{text:?} is not a count of objects or a percentage such as 5%"))
    }
}

impl std::fmt::Display for MaxDelete {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaxDelete::Default => f.write_str("the default (10% of the objects, at most 10,000)"),
            MaxDelete::Count(n) => write!(f, "{n}"),
            MaxDelete::Percent(p) => write!(f, "{p}%"),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct DeltaOptions {
    /// The copy of what was added or changed (its `dry_run` is the delta's).
    pub copy: CopyOptions,
    /// Delete at the destination what the source no longer has.
    pub delete: bool,
    pub max_delete: MaxDelete,
    /// Delete beyond `max_delete`, and accept a source that lists empty.
    pub force_delete: bool,
}

/// Why a delta refused to go on: nothing was sealed, merged or deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "refusal", rename_all = "kebab-case")]
pub enum DeltaRefusal {
    #[error(
        "the source lists no objects, and generation {parent} had {had}: refusing to record them all as deleted (a wrong prefix or credentials look like this); --force-delete if the source really is empty"
    )]
    EmptySource { parent: u32, had: u64 },
    #[error(
        "{deletes} deletes exceed --max-delete {limit} (of {of} objects the destination holds for the job); nothing deleted: check the source, or raise --max-delete, or --force-delete"
    )]
    TooManyDeletes { deletes: u64, limit: u64, of: u64 },
}

/// The deletes a delta carried out at the destination.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Deletes {
    /// Keys gone from the source whose delete at the destination is still to do (before this
    /// run carried any out).
    pub pending: u64,
    pub deleted: u64,
    pub failed: u64,
    pub failures: Vec<Failure>,
    /// Why no delete was carried out although `--delete` was given (copies failed).
    pub held_back: Option<String>,
    /// Keys gone from the source that this job never copied: whatever the destination holds
    /// under them is not the job's, and is left there (named by `verify`).
    pub left_not_copied: u64,
    /// Keys whose object at the destination is not the one ferry wrote (another writer
    /// replaced it since): left there, named by `verify`.
    pub left_changed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeltaSummary {
    pub source: String,
    pub destination: String,
    /// The generation this delta sealed (or finished), and the one it was compared with.
    pub generation: u32,
    pub parent: u32,
    /// This run finished a delta an earlier run sealed and did not finish (no listing).
    pub resumed: bool,
    /// The listing was the newest generation exactly (nothing added, changed, deleted or
    /// touched): no generation was sealed, `generation` is that one. A `--watch` on a quiet
    /// source does not seal a manifest a pass.
    pub unchanged_source: bool,
    /// Objects and bytes the new generation lists.
    pub objects: u64,
    pub bytes: u64,
    /// What the merge found (a resumed delta: what it found when it merged).
    pub changes: GenerationDelta,
    /// How far behind the destination was when this delta had merged its listing (before it
    /// copied), and when it ended.
    pub lag_listed: Option<Lag>,
    pub lag: Option<Lag>,
    pub copy: Option<CopySummary>,
    pub deletes: Deletes,
    /// `--dry-run`: nothing was sealed, copied or deleted; `changes` is what a delta would do.
    pub dry_run: bool,
    /// A source that lists in key order gave this key at or before the one before it: the
    /// merge was rolled back and the source listed again through a key-order spool.
    pub listed_out_of_order: Option<String>,
    /// A table job's export of the rows written since (incremental tables).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tables: Option<crate::tables::TablesSince>,
    pub seconds: f64,
    pub report: Option<std::path::PathBuf>,
}

impl DeltaSummary {
    /// Whether anything was lost or left undone that the user must hear about (exit 1).
    pub fn incomplete(&self) -> bool {
        let copy = self.copy.as_ref().is_some_and(|c| c.failed > 0 || c.skipped.lost > 0 || c.fidelity.lost_user_data());
        let tables = self.tables.as_ref().is_some_and(|t| !t.not_exported.is_empty());
        copy || tables || self.deletes.failed > 0 || self.deletes.held_back.is_some()
    }
}

/// The journal's meta entries a delta keeps: the generation merged into the journal (shared
/// with planning), and the last generation whose delta ran to its end.
const SEEDED: &str = "seeded_generation";
const FINISHED: &str = "delta_finished";

/// Runs a delta of the job (see the module docs). Both providers must have been checked and
/// opened in `run`. A refusal is [`EngineError::DeltaRefused`] (a usage error, exit 2).
pub async fn delta(
    job: &mut Job,
    src: Arc<dyn Provider>,
    dst: Arc<dyn Provider>,
    opts: DeltaOptions,
    stats: Arc<Stats>,
    run: &Arc<RunContext>,
) -> Result<DeltaSummary> {
    let started = Instant::now();
    job.persist()?;
    if job.all_versions() {
        return Err(EngineError::DeltaOfAllVersions { dir: job.dir.clone() });
    }
    // An ingest job's source is its disks until [`crate::follow_source`] moves it to where they
    // were exported from: a listing of the disks would replay their files under their paths.
    if let Some(shipped_from) = crate::ingest::shipped_from(job).filter(|from| *from != job.source.to_string()) {
        return Err(EngineError::DeltaOfIngest { dir: job.dir.clone(), shipped_from });
    }
    let latest = job.latest_generation().ok_or_else(|| EngineError::NotPlanned { dir: job.dir.clone() })?;
    let journal = job.journal(JournalKind::Main).await?;
    let seeded = meta_u32(journal.meta(SEEDED).await?);
    let finished = meta_u32(journal.meta(FINISHED).await?).max(1);
    if opts.copy.dry_run && latest > 1 && (seeded < latest || finished < latest) {
        // Its merge or its copies are not done: what a new delta would do depends on them.
        return Err(EngineError::DeltaUnfinished { generation: latest });
    }
    let header = ManifestReader::open(&job.generation_dir(latest))?.header().clone();
    let mut summary = DeltaSummary {
        source: job.source.to_string(),
        destination: job.destination.to_string(),
        generation: latest,
        parent: header.parent.unwrap_or(latest),
        resumed: false,
        unchanged_source: false,
        objects: header.totals.objects,
        bytes: header.totals.bytes,
        changes: GenerationDelta::default(),
        lag_listed: None,
        lag: None,
        copy: None,
        deletes: Deletes::default(),
        dry_run: opts.copy.dry_run,
        listed_out_of_order: None,
        tables: None,
        seconds: 0.0,
        report: None,
    };

    if latest > 1 && (seeded < latest || finished < latest) && !opts.copy.dry_run {
        // An earlier delta sealed `latest` and did not finish: finish it before listing again.
        summary.resumed = true;
        if seeded < latest {
            summary.changes = merge_sealed(job, latest).await?;
        }
    } else {
        // The journal must hold the generation it is compared with (a plan that was never
        // copied has not seeded it yet).
        if seeded < latest {
            crate::plan(job, src.as_ref(), &stats).await?;
        }
        let generation = latest + 1;
        if job.tables().is_some() {
            // The rows written since into new files of the spool, and the table entries of
            // `generation` staged, before the spool is listed.
            summary.tables = Some(crate::tables::export_since(job, generation, opts.copy.dry_run, &stats).await?);
        }
        let dir = job.generation_dir(generation);
        if dir.exists() {
            // An unsealed generation is the remains of an interrupted listing: start it again.
            std::fs::remove_dir_all(&dir).map_err(EngineError::io(&dir))?;
        }
        let parent = Parent { generation: latest, objects: header.totals.objects };
        let merged = list_and_merge(job, journal.as_ref(), src.clone(), &stats, generation, parent, &opts).await;
        let (changes, committed, outcome) = match merged {
            Ok(merged) => merged,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        if !committed {
            // Refused, a dry run, or the listing again: nothing sealed, nothing merged.
            std::fs::remove_dir_all(&dir).map_err(EngineError::io(&dir))?;
        }
        if let Some(refusal) = outcome.refusal {
            return Err(EngineError::DeltaRefused(refusal));
        }
        (summary.objects, summary.bytes) = (outcome.objects, outcome.bytes);
        summary.listed_out_of_order = outcome.out_of_order;
        summary.changes = changes;
        if opts.copy.dry_run {
            summary.deletes.pending = outcome.pending_deletes;
            summary.seconds = started.elapsed().as_secs_f64();
            return Ok(summary);
        }
        if committed {
            (summary.generation, summary.parent) = (generation, latest);
        } else {
            // The listing is generation `latest` again, key for key: nothing to seal or merge.
            summary.unchanged_source = true;
        }
    }

    summary.lag_listed = Some(journal.lag(chrono::Utc::now()).await?);
    let mut copied = crate::copy(job, src.clone(), dst.clone(), opts.copy.clone(), stats.clone(), run).await?;
    // A key that became a folder (`a` gone, `a/b` added) cannot be copied to a destination where
    // `a` is still a file, and the deletes wait for every copy: they would wait for good. When
    // every failed copy is under a key still to delete, those deletes (and only they) go first,
    // within --max-delete, and the copies are tried again.
    if opts.delete && copied.failed > 0 && copied.stopped_by.is_none() && copied.failed as usize == copied.failures.len() {
        let blocking = blocking_deletes(journal.as_ref(), &copied.failures).await?;
        if let Some(blocking) = blocking {
            let counts = journal.counts().await?;
            if let Some(refusal) = too_many_deletes(&opts, counts.pending_delete, counts.objects + counts.pending_delete) {
                return Err(EngineError::DeltaRefused(refusal));
            }
            let generation = summary.generation;
            delete_gone(job, dst.as_ref(), &opts.copy, generation, run, Some(&blocking), &mut summary.deletes).await?;
            let first = copied;
            copied = crate::copy(job, src, dst.clone(), opts.copy.clone(), stats, run).await?;
            copied.copied += first.copied;
            copied.bytes_copied += first.bytes_copied;
        }
    }
    let copies_failed = copied.failed > 0 || copied.stopped_by.is_some();
    let stopped = copied.stopped_by.is_some();
    summary.copy = Some(copied);
    let counts = journal.counts().await?;
    summary.deletes.pending = counts.pending_delete;
    if opts.delete && summary.deletes.pending > 0 {
        if copies_failed {
            summary.deletes.held_back = Some(format!(
                "{} deletes held back: copies of this run failed (deletes run only after every copy succeeded)",
                summary.deletes.pending
            ));
        } else {
            if let Some(refusal) = too_many_deletes(&opts, counts.pending_delete, counts.objects + counts.pending_delete) {
                return Err(EngineError::DeltaRefused(refusal));
            }
            delete_gone(job, dst.as_ref(), &opts.copy, summary.generation, run, None, &mut summary.deletes).await?;
        }
    }
    if !stopped {
        journal.set_meta(FINISHED, &summary.generation.to_string()).await?;
    }
    summary.lag = Some(journal.lag(chrono::Utc::now()).await?);
    summary.seconds = started.elapsed().as_secs_f64();
    let report = serde_json::to_value(&summary).expect("summary serializes");
    summary.report = Some(job.write_report("delta", &report)?);
    Ok(summary)
}

fn meta_u32(value: Option<String>) -> u32 {
    value.and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// A refusal when `deletes` exceed `--max-delete` of the `of` objects the destination holds
/// for the job (those of the new generation and those still to delete).
fn too_many_deletes(opts: &DeltaOptions, deletes: u64, of: u64) -> Option<DeltaRefusal> {
    let limit = opts.max_delete.limit(of);
    (opts.delete && !opts.force_delete && deletes > limit).then_some(DeltaRefusal::TooManyDeletes { deletes, limit, of })
}

/// Lists the source into the unsealed generation `generation` and a key-order spool.
async fn list(
    job: &Job,
    src: &dyn Provider,
    generation: u32,
    parent: u32,
    stats: &Stats,
) -> Result<(ManifestWriter, crate::key_order::Sorted)> {
    let mut writer = generation_writer(job, generation, parent)?;
    let spool = job.dir.join("tmp").join("delta-keys");
    let mut sorter = KeySorter::new(&spool).map_err(EngineError::io(&spool))?;
    let mut pages = src.list();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|source| EngineError::Provider { side: "source", source })?;
        Stats::add(&stats.listed, page.len() as u64);
        for entry in page {
            let entry = marker_skipped(entry);
            writer.push(&entry)?;
            sorter.push(entry).map_err(EngineError::io(&spool))?;
        }
    }
    let sorted = sorter.finish().map_err(EngineError::io(&spool))?;
    Ok((writer, sorted))
}

/// The unsealed manifest of the delta's generation `generation` (parent `parent`).
fn generation_writer(job: &Job, generation: u32, parent: u32) -> Result<ManifestWriter> {
    let dir = job.generation_dir(generation);
    Ok(ManifestWriter::create(&dir, generation, Some(parent), &job.source.to_string(), &job.destination.to_string())?)
}

/// The generation a delta is compared with.
#[derive(Debug, Clone, Copy)]
struct Parent {
    generation: u32,
    /// Objects its manifest lists.
    objects: u64,
}

/// What a watched merge concluded, besides what it merged.
#[derive(Default)]
struct Outcome {
    /// What stopped it (the change set not written, the listing not read back, the
    /// generation not sealed): nothing was committed.
    error: Option<EngineError>,
    refusal: Option<DeltaRefusal>,
    /// Deletes still to carry out once the listing is merged.
    pending_deletes: u64,
    /// Objects and bytes the listing holds.
    objects: u64,
    bytes: u64,
    /// The key a source that lists in key order gave out of order (it was listed again).
    out_of_order: Option<String>,
}

/// Lists the source and merges the listing into the journal as `generation` in one pass (see
/// [`DeltaWatch`]), as it arrives when the source lists in key order, else through a key-order
/// spool: returns what it merged, whether it was committed (the generation sealed, its change
/// set beside it), and the watch's outcome. An error stops it before anything is committed.
#[allow(clippy::too_many_arguments)]
async fn list_and_merge(
    job: &Job,
    journal: &dyn ferry_journal::Journal,
    src: Arc<dyn Provider>,
    stats: &Arc<Stats>,
    generation: u32,
    parent: Parent,
    opts: &DeltaOptions,
) -> Result<(GenerationDelta, bool, Outcome)> {
    let dir = job.generation_dir(generation);
    let mut out_of_order = None;
    if src.lists_in_key_order() {
        let writer = generation_writer(job, generation, parent.generation)?;
        let (listing, feed, lister) = feed::arriving(src.clone(), writer, stats.clone());
        let merged = merge_fed(job, journal, src.clone(), Box::new(listing), feed, generation, parent, opts).await;
        match lister.end() {
            Some(feed::Stopped::Failed(e)) => return Err(e),
            Some(feed::Stopped::OutOfOrder { key }) => {
                // Rolled back: listed again, and sorted this time.
                drop(merged);
                std::fs::remove_dir_all(&dir).map_err(EngineError::io(&dir))?;
                out_of_order = Some(key);
            }
            None => return merged,
        }
    }
    let (writer, sorted) = list(job, src.as_ref(), generation, parent.generation, stats).await?;
    let tmp = job.dir.join("tmp");
    let (entries, read_error) = sorted.entries().map_err(EngineError::io(&tmp))?;
    let feed = feed::Feed::Spooled { writer: Some(Box::new(writer)), read_error, tmp };
    let (changes, committed, mut outcome) = merge_fed(job, journal, src, Box::new(entries), feed, generation, parent, opts).await?;
    outcome.out_of_order = out_of_order;
    Ok((changes, committed, outcome))
}

/// Merges `listing` into the journal as `generation`, watched by a [`DeltaWatch`] over `feed`.
#[allow(clippy::too_many_arguments)]
async fn merge_fed(
    job: &Job,
    journal: &dyn ferry_journal::Journal,
    src: Arc<dyn Provider>,
    listing: Box<dyn Iterator<Item = ObjectEntry> + Send>,
    feed: feed::Feed,
    generation: u32,
    parent: Parent,
    opts: &DeltaOptions,
) -> Result<(GenerationDelta, bool, Outcome)> {
    let path = job.generation_dir(generation).join(CHANGES_FILE);
    let file = std::fs::File::create(&path).map_err(EngineError::io(&path))?;
    let outcome = Arc::new(std::sync::Mutex::new(Outcome::default()));
    let watch = DeltaWatch {
        src,
        runtime: tokio::runtime::Handle::current(),
        feed,
        changes: std::io::BufWriter::new(file),
        path,
        rows: 0,
        parent,
        opts: opts.clone(),
        outcome: outcome.clone(),
        tables: crate::tables::staged(job)?,
    };
    let meta = vec![(SEEDED.to_string(), generation.to_string())];
    let (changes, committed) = journal.merge_generation(generation, listing, Box::new(watch), meta).await?;
    let mut outcome = std::mem::take(&mut *outcome.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    if let Some(e) = outcome.error.take() {
        return Err(e);
    }
    Ok((changes, committed, outcome))
}

/// Watches a delta's merge from inside the journal's transaction:
/// - judges what looks touched: where the source's entity tags name content, an object copied
///   before with the same tag at a new time is asked for its headers (one HEAD), and copied
///   again when its Content-Type, headers or metadata are no longer those the copy was given
///   (S3 rewrites metadata by copying an object onto itself, keeping the ETag; S3 and GCS list
///   no metadata); where they do not (a local disk, whose tag is its time), a file copied
///   before at the same size with another tag is read, and when its SHA-256 is the copy's it
///   is touched, not changed, and not sent again;
/// - writes each change as a line of the change set;
/// - at the end, checks the listing was read back whole, refuses an emptied source or more
///   deletes than `--max-delete` allows, and seals the generation — unless refused, a dry run,
///   or the listing again key for key, which roll the merge back.
struct DeltaWatch {
    src: Arc<dyn Provider>,
    /// The merge runs on the journal's thread: the provider is called on the engine's runtime.
    runtime: tokio::runtime::Handle,
    feed: feed::Feed,
    changes: std::io::BufWriter<std::fs::File>,
    path: std::path::PathBuf,
    rows: u64,
    parent: Parent,
    opts: DeltaOptions,
    outcome: Arc<std::sync::Mutex<Outcome>>,
    /// A table job's staged table entries (and their file count), sealed with the generation.
    tables: Option<(std::path::PathBuf, u64)>,
}

/// Objects a watch asks the source about at a time (a HEAD, or a read of a local file).
const LOOKS_AT_ONCE: usize = 8;

impl DeltaWatch {
    fn fail(&mut self, error: EngineError) {
        self.outcome.lock().unwrap_or_else(std::sync::PoisonError::into_inner).error.get_or_insert(error);
    }
}

impl MergeWatch for DeltaWatch {
    fn judge(&mut self, looks: &[Look<'_>]) -> Vec<Verdict> {
        let src = self.src.as_ref();
        let names_content = src.etag_names_content();
        self.runtime.block_on(
            futures::stream::iter(looks)
                .map(|look| async move {
                    match (look.kind, names_content) {
                        (LookKind::NewTime, true) => metadata_verdict(src, look).await,
                        (LookKind::OtherTag, false) => content_verdict(src, look).await,
                        (kind, _) => Verdict::unexamined(kind),
                    }
                })
                .buffered(LOOKS_AT_ONCE)
                .collect(),
        )
    }

    fn step(&mut self, step: MergeStep<'_>) -> bool {
        use std::io::Write;
        if self.feed.stopped() {
            return false;
        }
        let change = match step {
            MergeStep::Added { new } => Change { change: "added", key: &new.key, old: None, new: Some(Identity::of(new)) },
            MergeStep::Changed { old, new } => {
                Change { change: "changed", key: &new.key, old: Some(Identity::of(old)), new: Some(Identity::of(new)) }
            }
            MergeStep::Touched { old, new } => {
                Change { change: "touched", key: &new.key, old: Some(Identity::of(old)), new: Some(Identity::of(new)) }
            }
            MergeStep::Deleted { old } => Change { change: "deleted", key: &old.key, old: Some(Identity::of(old)), new: None },
        };
        serde_json::to_writer(&mut self.changes, &change).expect("a change serializes");
        if let Err(e) = self.changes.write_all(b"\n") {
            let error = EngineError::Io { path: self.path.clone(), source: e };
            self.fail(error);
            return false;
        }
        self.rows += 1;
        true
    }

    fn finish(&mut self, delta: &GenerationDelta, held: &Held) -> bool {
        use std::io::Write;
        if let Err(e) = self.changes.flush() {
            let error = EngineError::Io { path: self.path.clone(), source: e };
            self.fail(error);
            return false;
        }
        let writer = match self.feed.writer() {
            Ok(Some(writer)) => writer,
            Ok(None) => return false,
            Err(e) => {
                self.fail(e);
                return false;
            }
        };
        let (objects, bytes) = (writer.totals().objects, writer.totals().bytes);
        // Deletes still pending that the listing shows again are no longer deletes.
        let pending_deletes = held.pending_delete + delta.deleted - delta.returned;
        let refusal = if objects == 0 && self.parent.objects > 0 && !self.opts.force_delete {
            Some(DeltaRefusal::EmptySource { parent: self.parent.generation, had: self.parent.objects })
        } else {
            too_many_deletes(&self.opts, pending_deletes, held.objects + held.pending_delete)
        };
        let quiet = delta.added + delta.changed + delta.deleted + delta.returned + delta.touched == 0;
        let go = refusal.is_none() && !self.opts.copy.dry_run && !quiet;
        {
            let mut outcome = self.outcome.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            (outcome.refusal, outcome.pending_deletes, outcome.objects, outcome.bytes) = (refusal, pending_deletes, objects, bytes);
        }
        if !go {
            return false;
        }
        let mut writer = writer;
        let mut sealed = writer.attach_changes(CHANGES_FILE, self.rows);
        if let (Ok(()), Some((staged, files))) = (&sealed, &self.tables) {
            sealed = writer.attach_tables(staged, crate::tables::TABLES_FILE, *files);
        }
        let sealed = sealed.and_then(|()| writer.seal().map(|_| ()));
        if let Err(e) = sealed {
            self.fail(e.into());
            return false;
        }
        true
    }
}

/// A copied object at the same entity tag and a new time: changed when the source now gives it
/// other headers or metadata than it gave the copy (and still the same tag). A HEAD that fails
/// takes it as touched: its bytes are as copied.
async fn metadata_verdict(src: &dyn Provider, look: &Look<'_>) -> Verdict {
    let (Ok(Some(head)), Some(was)) = (src.head(&look.listed.key).await, look.row.src_attrs.as_ref()) else {
        return Verdict::Unchanged;
    };
    let now = ferry_core::headers::Attrs {
        content_type: head.content_type.clone(),
        headers: head.headers.clone(),
        metadata: head.metadata.clone(),
    };
    if now != *was && head.etag == look.row.entry.etag { Verdict::Changed } else { Verdict::Unchanged }
}

/// A copied file at its old size with another tag: unchanged when its SHA-256 is the copy's. A
/// file that cannot be read now is taken as changed: the copy meets the error.
async fn content_verdict(src: &dyn Provider, look: &Look<'_>) -> Verdict {
    let Some(copied) = look.row.copied.sha256.as_deref() else { return Verdict::Changed };
    match crate::verify::sha256_of(src, &look.listed.key, look.listed.size).await {
        Ok(read) if read == copied => Verdict::Unchanged,
        _ => Verdict::Changed,
    }
}

/// The change set's file in a delta generation's directory.
const CHANGES_FILE: &str = "changes.jsonl";

/// One line of a change set: a key and what it was and is.
#[derive(Serialize)]
struct Change<'a> {
    change: &'static str,
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    old: Option<Identity<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    new: Option<Identity<'a>>,
}

/// What tells one content from another.
#[derive(Serialize)]
struct Identity<'a> {
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    etag: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'a str>,
    #[serde(skip_serializing_if = "ferry_core::Checksums::is_empty")]
    checksums: &'a ferry_core::Checksums,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_modified: Option<chrono::DateTime<chrono::Utc>>,
}

impl<'a> Identity<'a> {
    fn of(e: &'a ObjectEntry) -> Identity<'a> {
        Identity {
            size: e.size,
            etag: e.etag.as_deref(),
            version: e.version.as_deref(),
            checksums: &e.checksums,
            last_modified: e.last_modified,
        }
    }
}

/// A folder marker (`photos/`, or an empty key) is recorded as skipped, as a plan records it.
fn marker_skipped(entry: ObjectEntry) -> ObjectEntry {
    if entry.skipped.is_none() && (entry.key.is_empty() || entry.key.ends_with('/')) {
        return ObjectEntry::skipped(entry.key, SkipReason::DirectoryMarker);
    }
    entry
}

/// Merges sorted entries into the journal as `generation`, checking every one was read.
async fn merge(
    journal: &dyn ferry_journal::Journal,
    generation: u32,
    sorted: &crate::key_order::Sorted,
    job: &Job,
) -> Result<GenerationDelta> {
    let (entries, read_error) = sorted.entries().map_err(EngineError::io(job.dir.clone()))?;
    let changes = journal.seed_generation(generation, Box::new(entries)).await?;
    if let Some(e) = read_error.take() {
        // Keys after the error were taken as gone: nothing is deleted before a merge of the
        // whole listing (the next delta merges again and puts them back).
        return Err(EngineError::Io { path: job.dir.join("tmp"), source: e });
    }
    Ok(changes)
}

/// Merges the sealed generation `generation` (a delta killed before its merge ended).
async fn merge_sealed(job: &Job, generation: u32) -> Result<GenerationDelta> {
    let sorted = sort_generation(job, generation, &job.dir.join("tmp").join("delta-keys"))?;
    let journal = job.journal(JournalKind::Main).await?;
    let changes = merge(journal.as_ref(), generation, &sorted, job).await?;
    journal.set_meta(SEEDED, &generation.to_string()).await?;
    Ok(changes)
}

/// The entries of sealed generation `generation`, in key order (spilled under `spool`).
pub(crate) fn sort_generation(job: &Job, generation: u32, spool: &std::path::Path) -> Result<crate::key_order::Sorted> {
    let reader = ManifestReader::open(&job.generation_dir(generation))?;
    let mut sorter = KeySorter::new(spool).map_err(EngineError::io(spool))?;
    let mut failed = None;
    reader.for_each_batch::<ferry_manifest::ManifestError>(|batch| {
        for e in batch {
            if let Err(e) = sorter.push(e) {
                failed.get_or_insert(e);
            }
        }
        Ok(())
    })?;
    if let Some(e) = failed {
        return Err(EngineError::Io { path: spool.to_path_buf(), source: e });
    }
    sorter.finish().map_err(EngineError::io(spool))
}

/// The source's listing, in key order (spilled under `spool`), folder markers recorded as a
/// plan records them.
pub(crate) async fn sort_listing(src: &dyn Provider, spool: &std::path::Path, stats: &Stats) -> Result<crate::key_order::Sorted> {
    let mut sorter = KeySorter::new(spool).map_err(EngineError::io(spool))?;
    let mut pages = src.list();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|source| EngineError::Provider { side: "source", source })?;
        Stats::add(&stats.listed, page.len() as u64);
        for entry in page {
            sorter.push(marker_skipped(entry)).map_err(EngineError::io(spool))?;
        }
    }
    sorter.finish().map_err(EngineError::io(spool))
}

/// What became of one key gone from the source.
enum Gone {
    /// Deleted: its key, whose emptied folders go once the batch is done.
    Deleted(String),
    NotCopied,
    Changed,
    Failed(Failure),
}

/// The pending deletes whose keys are folders of the failed copies' keys (`a` of `a/b/c`), when
/// every failed copy has one: `None` when any failure has another cause.
async fn blocking_deletes(journal: &dyn ferry_journal::Journal, failures: &[Failure]) -> Result<Option<std::collections::HashSet<i64>>> {
    let mut blocking = std::collections::HashSet::new();
    for f in failures {
        let folders: Vec<String> = f.key.match_indices('/').map(|(i, _)| f.key[..i].to_string()).collect();
        let pending: Vec<i64> =
            journal.get_many(&folders).await?.into_iter().filter(|r| r.state == ObjectState::PendingDelete).map(|r| r.id).collect();
        if pending.is_empty() {
            return Ok(None);
        }
        blocking.extend(pending);
    }
    Ok((!blocking.is_empty()).then_some(blocking))
}

/// Deletes at the destination every key the source no longer has (of `only`, when given), `at_once` at a time
/// (`--transfers`), recording in the write ledger what the destination held first.
async fn delete_gone(
    job: &Job,
    dst: &dyn Provider,
    opts: &CopyOptions,
    generation: u32,
    run_context: &Arc<RunContext>,
    only: Option<&std::collections::HashSet<i64>>,
    deletes: &mut Deletes,
) -> Result<()> {
    let at_once = opts.transfers;
    let journal = job.journal(JournalKind::Main).await?;
    let run = journal.begin_run(RunKind::Delta, generation).await?;
    let backup = match &opts.backup_to {
        Some(root) => Some(crate::backup::Backup::open(root, &job.id(), run, dst, &job.access.destination, run_context).await?),
        None => None,
    };
    let backup = backup.as_ref();
    let target = job.destination.to_string();
    let mut after = 0;
    loop {
        let rows = journal.in_state(ObjectState::PendingDelete, after, 512).await?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        let rows: Vec<_> = rows.into_iter().filter(|r| only.is_none_or(|only| only.contains(&r.id))).collect();
        let results: Vec<_> = futures::stream::iter(rows)
            .map(|row| {
                let (journal, target) = (journal.clone(), target.as_str());
                async move {
                    let key = row.dst_key().to_string();
                    // What ferry left there: its newest write (a changed key's row forgets the copy
                    // before, the ledger does not), or what a reversed job knows is there.
                    let wrote = journal.last_put(row.id, target).await?.and_then(|w| w.etag).or_else(|| row.dst_etag.clone());
                    let copied = wrote.is_some() || row.verified_by.is_some() || row.copied.sha256.is_some();
                    if !copied {
                        journal.mark_deleted(row.id).await?;
                        return Ok::<_, EngineError>(Gone::NotCopied);
                    }
                    let (prior, seen) = match dst.head(&key).await {
                        Ok(None) => (Prior::Absent, Seen::Head),
                        Ok(Some(h)) => (Prior::Present { size: h.size, etag: h.etag, version: h.version }, Seen::Head),
                        Err(_) => (Prior::Unknown, Seen::None),
                    };
                    // Another writer's object now: not ferry's to delete.
                    if let (Prior::Present { etag: Some(now), .. }, Some(wrote)) = (&prior, &wrote)
                        && now != wrote
                    {
                        return Ok(Gone::Changed);
                    }
                    let intent = Intent { object: row.id, target, key: &key, op: WriteOp::Delete, prior: &prior, seen };
                    let ledger = journal.begin_write(run, &intent).await?;
                    // What the delete removes is kept first (--backup-to): a failure to keep it
                    // fails the delete.
                    if let Some(backup) = backup
                        && let Err(e) = crate::mover::keep_replaced(backup, journal.as_ref(), dst, ledger, &key).await
                    {
                        return Ok(Gone::Failed(Failure { key, kind: e.kind, error: e.message }));
                    }
                    let outcome = match prior {
                        // Nothing to delete: already gone.
                        Prior::Absent => Ok(()),
                        _ => dst.delete(&key).await,
                    };
                    match outcome {
                        Ok(()) => {
                            journal.finish_write(ledger, &Wrote::default()).await?;
                            journal.mark_deleted(row.id).await?;
                            Ok(Gone::Deleted(key))
                        }
                        Err(e) => Ok(Gone::Failed(Failure { key, kind: e.kind(), error: e.to_string() })),
                    }
                }
            })
            .buffer_unordered(at_once.max(1))
            .collect()
            .await;
        for r in results {
            match r? {
                Gone::Deleted(key) => {
                    deletes.deleted += 1;
                    // A folder left empty holds nothing to lose: like an object store's implied
                    // folders, it goes with its last key (a local destination's own folders).
                    let _ = dst.prune_folders(&key).await;
                }
                Gone::NotCopied => deletes.left_not_copied += 1,
                Gone::Changed => deletes.left_changed += 1,
                Gone::Failed(f) => {
                    deletes.failed += 1;
                    if deletes.failures.len() < 1000 {
                        deletes.failures.push(f);
                    }
                }
            }
        }
    }
    journal.release(&[]).await?;
    Ok(())
}
