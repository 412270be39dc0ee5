//! A delta: list the source again, seal the next manifest generation with its change set
//! against the newest one, copy what was added or changed through the normal copy, and, only
//! when asked and only when it is safe, delete at the destination what the source no longer has.
//!
//! Order of side effects, each step resumable:
//! 1. the listing goes to an unsealed generation directory and to a key-order spool
//!    (`key_order`); a listing that fails leaves no generation (the directory is removed);
//! 2. the merge is previewed against the journal (nothing written) and the delete limits are
//!    checked: an emptied source, or more deletes than `--max-delete`, refuse here with
//!    nothing sealed, merged or deleted (unless `--force-delete`);
//! 3. the generation is sealed, then merged into the journal (added and changed objects become
//!    pending, gone ones pending deletes);
//! 4. the copy runs over what is pending, as `ferry copy` would;
//! 5. with `--delete`, and only after every copy of the run succeeded, the pending deletes are
//!    carried out, each recorded in the write ledger first (what the destination held), so a
//!    rollback can restore it.
//!
//! A run killed after step 3 is finished by the next `ferry delta` (copies, then deletes)
//! before it lists again.

use crate::copy::{CopyOptions, CopySummary, Failure};
use crate::key_order::KeySorter;
use crate::{EngineError, Job, Result, Stats};
use ferry_core::{ObjectEntry, SkipReason};
use ferry_journal::{GenerationDelta, Intent, JournalKind, Lag, ObjectState, Prior, RunKind, Seen, WriteOp, Wrote};
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
    pub seconds: f64,
    pub report: Option<std::path::PathBuf>,
}

impl DeltaSummary {
    /// Whether anything was lost or left undone that the user must hear about (exit 1).
    pub fn incomplete(&self) -> bool {
        let copy = self.copy.as_ref().is_some_and(|c| c.failed > 0 || c.skipped.lost > 0 || c.fidelity.lost_user_data());
        copy || self.deletes.failed > 0 || self.deletes.held_back.is_some()
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
    if let Some(shipped_from) = crate::ingest::shipped_from(job) {
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
        let dir = job.generation_dir(generation);
        if dir.exists() {
            // An unsealed generation is the remains of an interrupted listing: start it again.
            std::fs::remove_dir_all(&dir).map_err(EngineError::io(&dir))?;
        }
        let touched = Touched { journal: journal.clone(), confirmed: Vec::new(), metadata_changed: Vec::new() };
        let listed = list(job, src.as_ref(), generation, latest, &stats, touched).await;
        let (mut writer, sorted, touched) = match listed {
            Ok(listed) => listed,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let refused = async {
            let (entries, read_error) = sorted.entries().map_err(EngineError::io(job.dir.clone()))?;
            let preview = journal.preview_generation(Box::new(entries)).await?;
            if let Some(e) = read_error.take() {
                return Err(EngineError::Io { path: job.dir.clone(), source: e });
            }
            let counts = journal.counts().await?;
            // Deletes still pending that the listing shows again are no longer deletes.
            let pending_deletes = counts.pending_delete + preview.deleted - preview.returned;
            let listed_objects = writer.totals().objects;
            let refusal = if listed_objects == 0 && header.totals.objects > 0 && !opts.force_delete {
                Some(DeltaRefusal::EmptySource { parent: latest, had: header.totals.objects })
            } else {
                too_many_deletes(&opts, pending_deletes, counts.objects + counts.pending_delete)
            };
            Ok::<_, EngineError>((preview, refusal))
        }
        .await;
        let (preview, refusal) = match refused {
            Ok(r) => r,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        if let Some(refusal) = refusal {
            std::fs::remove_dir_all(&dir).map_err(EngineError::io(&dir))?;
            return Err(EngineError::DeltaRefused(refusal));
        }
        let quiet = preview.added + preview.changed + preview.deleted + preview.returned + preview.touched == 0
            && touched.confirmed.is_empty()
            && !opts.copy.dry_run;
        if quiet {
            // The listing is generation `latest` again, key for key: nothing to seal or merge.
            std::fs::remove_dir_all(&dir).map_err(EngineError::io(&dir))?;
            summary.unchanged_source = true;
            summary.changes = preview;
        } else {
            (summary.generation, summary.parent) = (generation, latest);
        }
        (summary.objects, summary.bytes) = (writer.totals().objects, writer.totals().bytes);
        if opts.copy.dry_run {
            std::fs::remove_dir_all(&dir).map_err(EngineError::io(&dir))?;
            // Touched files read and found unchanged: the preview (their new identity not
            // recorded) took them as changed.
            let restamped = touched.metadata_changed.len() as u64;
            let touched = touched.confirmed.len() as u64;
            let mut preview = preview;
            preview.changed -= touched;
            (preview.unchanged, preview.touched) = (preview.unchanged + touched, preview.touched + touched);
            (preview.changed, preview.unchanged, preview.touched) =
                (preview.changed + restamped, preview.unchanged.saturating_sub(restamped), preview.touched.saturating_sub(restamped));
            summary.changes = preview;
            summary.deletes.pending = journal.counts().await?.pending_delete + preview.deleted - preview.returned;
            summary.seconds = started.elapsed().as_secs_f64();
            return Ok(summary);
        }
        if !quiet {
            touched.record().await?;
            let rows = write_change_set(job, latest, &sorted, &touched, &dir)?;
            writer.attach_changes(CHANGES_FILE, rows)?;
            writer.seal()?;
            summary.changes = merge(journal.as_ref(), generation, &sorted, job).await?;
            summary.changes.touched += touched.confirmed.len() as u64;
            touched.recopy().await?;
            let restamped = touched.metadata_changed.len() as u64;
            let c = &mut summary.changes;
            (c.changed, c.unchanged, c.touched) =
                (c.changed + restamped, c.unchanged.saturating_sub(restamped), c.touched.saturating_sub(restamped));
            journal.set_meta(SEEDED, &generation.to_string()).await?;
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

/// Lists the source into the unsealed generation `generation` and a key-order spool; where
/// the source's entity tags do not name content (a local disk), files that look changed at
/// their old size are read to tell a touch from a change. Returns how many were touches.
async fn list(
    job: &Job,
    src: &dyn Provider,
    generation: u32,
    parent: u32,
    stats: &Stats,
    mut touched: Touched,
) -> Result<(ManifestWriter, crate::key_order::Sorted, Touched)> {
    let dir = job.generation_dir(generation);
    let mut writer = ManifestWriter::create(&dir, generation, Some(parent), &job.source.to_string(), &job.destination.to_string())?;
    let spool = job.dir.join("tmp").join("delta-keys");
    let mut sorter = KeySorter::new(&spool).map_err(EngineError::io(&spool))?;
    let mut pages = src.list();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|source| EngineError::Provider { side: "source", source })?;
        Stats::add(&stats.listed, page.len() as u64);
        let page: Vec<ObjectEntry> = page.into_iter().map(marker_skipped).collect();
        if !src.etag_names_content() {
            touched.confirm(src, &page).await?;
        } else {
            touched.restamped(src, &page).await?;
        }
        for entry in page {
            writer.push(&entry)?;
            sorter.push(entry).map_err(EngineError::io(&spool))?;
        }
    }
    let sorted = sorter.finish().map_err(EngineError::io(&spool))?;
    Ok((writer, sorted, touched))
}

/// Tells touched files from changed ones where a listing's entity tag is made of the time (a
/// local disk): a file copied before, of the same size, with another tag, is read, and when
/// its SHA-256 is the one recorded when it was copied, only its time changed — its new tag is
/// recorded (unless a dry run) so the merge finds it unchanged, and it is not sent again.
struct Touched {
    journal: Arc<dyn ferry_journal::Journal>,
    /// The objects found touched and their new listed identity: recorded only once the delta
    /// goes ahead (a refused or dry run writes nothing).
    confirmed: Vec<(i64, ObjectEntry)>,
    /// Objects whose bytes are as copied (the same entity tag) but whose headers or metadata
    /// changed at the source since (S3 rewrites an object's metadata by copying it onto itself,
    /// keeping its ETag): copied again once the delta goes ahead.
    metadata_changed: Vec<(i64, String)>,
}

impl Touched {
    async fn confirm(&mut self, src: &dyn Provider, page: &[ObjectEntry]) -> Result<()> {
        const READS_AT_ONCE: usize = 4;
        let keys: Vec<String> = page.iter().filter(|e| e.skipped.is_none()).map(|e| e.key.clone()).collect();
        let rows = self.journal.get_many(&keys).await?;
        let listed: std::collections::HashMap<&str, &ObjectEntry> = page.iter().map(|e| (e.key.as_str(), e)).collect();
        let suspects = rows.into_iter().filter_map(|row| {
            let now = *listed.get(row.entry.key.as_str())?;
            let sha256 = row.copied.sha256.clone()?;
            let other = !row.entry.same_version(now);
            // Copied (done, or gone from a listing since and still at the destination).
            let copied = row.state == ObjectState::Done || (row.state == ObjectState::PendingDelete && row.verified_by.is_some());
            (copied && row.entry.size == now.size && other).then_some((row, now, sha256))
        });
        let same: Vec<_> = futures::stream::iter(suspects)
            .map(|(row, now, sha256)| async move {
                let read = crate::verify::sha256_of(src, &now.key, now.size).await;
                // A file that cannot be read now is taken as changed: the copy meets the error.
                (read.ok().as_deref() == Some(sha256.as_str())).then_some((row.id, now))
            })
            .buffer_unordered(READS_AT_ONCE)
            .filter_map(|same| async move { same })
            .collect()
            .await;
        self.confirmed.extend(same.into_iter().map(|(id, now)| (id, now.clone())));
        Ok(())
    }

    /// Where entity tags name content: of `page`'s objects copied before with the same tag and a
    /// new last-modified time (the merge would call them touched), those whose Content-Type,
    /// headers or metadata the source now gives otherwise than it gave the copy (one HEAD each,
    /// only for those): S3 and GCS list no metadata, and a metadata rewrite keeps the tag.
    async fn restamped(&mut self, src: &dyn Provider, page: &[ObjectEntry]) -> Result<()> {
        const HEADS_AT_ONCE: usize = 8;
        let listed: std::collections::HashMap<&str, &ObjectEntry> =
            page.iter().filter(|e| e.skipped.is_none() && e.last_modified.is_some()).map(|e| (e.key.as_str(), e)).collect();
        if listed.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = listed.keys().map(|k| k.to_string()).collect();
        let rows = self.journal.get_many(&keys).await?;
        let suspects = rows.into_iter().filter(|row| {
            let Some(now) = listed.get(row.entry.key.as_str()) else { return false };
            row.state == ObjectState::Done
                && row.src_attrs.is_some()
                && row.entry.same_version(now)
                && row.entry.last_modified.is_some()
                && row.entry.last_modified != now.last_modified
        });
        let changed: Vec<(i64, String)> = futures::stream::iter(suspects)
            .map(|row| async move {
                let head = src.head(&row.entry.key).await.ok().flatten()?;
                let was = row.src_attrs.as_ref()?;
                let now = ferry_core::headers::Attrs {
                    content_type: head.content_type.clone(),
                    headers: head.headers.clone(),
                    metadata: head.metadata.clone(),
                };
                (now != *was && head.etag == row.entry.etag).then_some((row.id, row.entry.key.clone()))
            })
            .buffer_unordered(HEADS_AT_ONCE)
            .filter_map(|id| async move { id })
            .collect()
            .await;
        self.metadata_changed.extend(changed);
        Ok(())
    }

    /// Makes the objects whose metadata changed pending again (after the merge, which found
    /// them touched).
    async fn recopy(&self) -> Result<()> {
        for (id, _) in &self.metadata_changed {
            self.journal.recopy(*id, "metadata changed at the source (same bytes)").await?;
        }
        Ok(())
    }

    /// Records the touched objects' new identity, so the merge finds them unchanged.
    async fn record(&self) -> Result<()> {
        for (id, listed) in &self.confirmed {
            self.journal.refresh_identity(*id, listed).await?;
        }
        Ok(())
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

/// Writes generation `parent`'s change set against the sorted new listing into `dir`: one
/// streaming merge of two key-ordered walks (the parent's entries sorted under `JOB/tmp`), so
/// memory does not grow with the object count. Returns its lines.
fn write_change_set(job: &Job, parent: u32, listing: &crate::key_order::Sorted, touched: &Touched, dir: &std::path::Path) -> Result<u64> {
    use std::io::Write;
    let spool = job.dir.join("tmp").join("delta-parent");
    let before = sort_generation(job, parent, &spool)?;
    let (old, old_error) = before.entries().map_err(EngineError::io(&spool))?;
    let (new, new_error) = listing.entries().map_err(EngineError::io(job.dir.join("tmp")))?;
    let read_touched: std::collections::HashSet<&str> = touched.confirmed.iter().map(|(_, e)| e.key.as_str()).collect();
    let restamped: std::collections::HashSet<&str> = touched.metadata_changed.iter().map(|(_, k)| k.as_str()).collect();
    let path = dir.join(CHANGES_FILE);
    let file = std::fs::File::create(&path).map_err(EngineError::io(&path))?;
    let mut out = std::io::BufWriter::new(file);
    let mut rows = 0u64;
    let mut write = |change: Change<'_>| -> Result<()> {
        serde_json::to_writer(&mut out, &change).expect("a change serializes");
        out.write_all(b"\n").map_err(EngineError::io(&path))?;
        rows += 1;
        Ok(())
    };
    let (mut old, mut new) = (old.filter(|e| e.skipped.is_none()).peekable(), new.filter(|e| e.skipped.is_none()).peekable());
    loop {
        let order = match (old.peek(), new.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(o), Some(n)) => o.id().cmp(&n.id()),
        };
        match order {
            std::cmp::Ordering::Less => {
                let o = old.next().expect("peeked");
                write(Change { change: "deleted", key: &o.key, old: Some(Identity::of(&o)), new: None })?;
            }
            std::cmp::Ordering::Greater => {
                let n = new.next().expect("peeked");
                write(Change { change: "added", key: &n.key, old: None, new: Some(Identity::of(&n)) })?;
            }
            std::cmp::Ordering::Equal => {
                let (o, n) = (old.next().expect("peeked"), new.next().expect("peeked"));
                let change = if restamped.contains(n.key.as_str()) {
                    "changed"
                } else if read_touched.contains(n.key.as_str()) {
                    "touched"
                } else if !o.same_version(&n) {
                    "changed"
                } else if o.last_modified != n.last_modified {
                    "touched"
                } else {
                    continue;
                };
                write(Change { change, key: &n.key, old: Some(Identity::of(&o)), new: Some(Identity::of(&n)) })?;
            }
        }
    }
    out.flush().map_err(EngineError::io(&path))?;
    for error in [old_error, new_error] {
        if let Some(e) = error.take() {
            return Err(EngineError::Io { path: job.dir.join("tmp"), source: e });
        }
    }
    Ok(rows)
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
    Deleted,
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
                            Ok(Gone::Deleted)
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
                Gone::Deleted => deletes.deleted += 1,
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
