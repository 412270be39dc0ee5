//! Planning: list the source into a sealed manifest generation, then seed the journal from it;
//! objects under S3 object lock are counted and named on the way.

use crate::{EngineError, Job, Result, Stats};
use ferry_core::{ObjectEntry, ObjectLock, SkipReason};
use ferry_journal::{Journal, JournalKind};
use ferry_manifest::{ManifestHeader, ManifestReader, ManifestWriter};
use ferry_providers::Provider;
use futures::StreamExt;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::mpsc::{Receiver, Sender};

#[derive(Debug, Clone, Serialize)]
pub struct PlanSummary {
    pub generation: u32,
    pub objects: u64,
    pub bytes: u64,
    /// Listed entries recorded but not copied (symlinks, FIFOs, folder markers such as
    /// `photos/`…), not in `objects`.
    pub skipped: u64,
    /// `skipped` by reason.
    pub skipped_by_reason: BTreeMap<SkipReason, u64>,
    /// Objects (in `objects`) the listing showed archived (S3 GLACIER / DEEP_ARCHIVE…): they
    /// cannot be read until restored (`--archived`), and their bytes.
    pub archived: u64,
    pub archived_bytes: u64,
    /// Objects (in `objects`) under S3 object lock when listed (a legal hold, or a retention
    /// whose date is ahead), asked only where the source bucket has object lock on; counted by
    /// the plan that lists (0 when `already_planned`). ferry copies their bytes, never their lock.
    pub locked: u64,
    /// The first [`LOCKED_NAMED`] of them, in listing order, with their lock.
    pub locked_objects: Vec<Locked>,
    /// The job already had a sealed generation; nothing was listed.
    pub already_planned: bool,
    pub manifest: PathBuf,
}

impl PlanSummary {
    fn of(header: &ManifestHeader, manifest: PathBuf, already_planned: bool) -> Self {
        PlanSummary {
            generation: header.generation,
            objects: header.totals.objects,
            bytes: header.totals.bytes,
            skipped: header.totals.skipped,
            skipped_by_reason: header.totals.skipped_by_reason.clone(),
            archived: header.totals.archived,
            archived_bytes: header.totals.archived_bytes,
            locked: 0,
            locked_objects: Vec::new(),
            already_planned,
            manifest,
        }
    }
}

/// Lists `src` into generation 1 of the job (unless a generation is already sealed) and seeds
/// the journal. The job is persisted first, so call this only once both sides checked out.
pub async fn plan(job: &mut Job, src: &dyn Provider, stats: &Stats) -> Result<PlanSummary> {
    job.persist()?;
    if let Some(generation) = job.latest_generation() {
        let dir = job.generation_dir(generation);
        let header = seed(job, generation).await?;
        return Ok(PlanSummary::of(&header, dir, true));
    }
    let generation = 1;
    let dir = job.generation_dir(generation);
    if dir.exists() {
        // An unsealed generation is the remains of an interrupted listing: start it again.
        std::fs::remove_dir_all(&dir).map_err(EngineError::io(&dir))?;
    }
    let journal = job.journal(JournalKind::Main).await?;
    if !is_seeded(journal.as_ref(), generation).await? {
        journal.unseed(generation).await?;
    }
    let mut writer = ManifestWriter::create(&dir, generation, None, &job.source.to_string(), &job.destination.to_string())?;
    // Every version of each key (`--all-versions`): the source's versions, refused up front
    // where it has none (`Job::providers`).
    let versions = match job.all_versions() {
        true => {
            writer = writer.all_versions();
            Some(src.versions().ok_or_else(|| EngineError::AllVersions {
                side: "source",
                location: job.source.to_string(),
                refusal: crate::VersionsRefusal::Unsupported,
            })?)
        }
        false => None,
    };
    // The journal is seeded by a second task while the listing is written, so the two costs
    // overlap; the generation counts as seeded only once it is sealed (see `seed`).
    let (batches, mut to_seed) = tokio::sync::mpsc::channel::<Vec<ObjectEntry>>(SEED_QUEUE);
    let seeder = tokio::spawn({
        let journal = journal.clone();
        async move {
            while let Some(batch) = to_seed.recv().await {
                journal.seed(generation, &batch).await?;
            }
            Ok::<_, EngineError>(())
        }
    });
    let mut locks = match src.locks_objects().await {
        Ok(on) => Locks { on, ..Locks::default() },
        Err(source) => return Err(EngineError::Provider { side: "source", source }),
    };
    let pages = match versions {
        Some(versions) => versions.list_versions(),
        None => src.list(),
    };
    let listed = list_into(src, pages, &mut writer, &batches, stats, &mut locks).await;
    drop(batches);
    seeder.await.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
    if let Err(e) = listed {
        // Rows of a listing that did not finish are not work to do; the next plan lists again.
        journal.unseed(generation).await?;
        return Err(e);
    }
    match crate::tables::staged(job)? {
        Some((staged, files)) => writer.attach_tables(&staged, crate::tables::TABLES_FILE, files)?,
        None if job.tables().is_some() => {
            journal.unseed(generation).await?;
            return Err(EngineError::TablesNotExported { dir: job.dir.clone() });
        }
        None => {}
    }
    let header = writer.seal()?;
    journal.set_meta(SEEDED, &generation.to_string()).await?;
    let mut summary = PlanSummary::of(&header, dir, false);
    (summary.locked, summary.locked_objects) = (locks.count, locks.named);
    Ok(summary)
}

/// An object under object lock, as a plan names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Locked {
    pub key: String,
    #[serde(flatten)]
    pub lock: ObjectLock,
}

/// Locked objects a plan names (all are counted).
pub const LOCKED_NAMED: usize = 1000;

/// Requests in flight asking one page's objects for their lock.
const LOCK_QUERIES: usize = 8;

/// What a listing found locked.
#[derive(Default)]
struct Locks {
    /// The source bucket has object lock on: each object is asked.
    on: bool,
    count: u64,
    named: Vec<Locked>,
}

/// Entries handed to the seeding thread at a time, and batches queued for it: bounded, so a
/// listing that outruns the journal waits instead of piling up in memory.
const SEED_BATCH: usize = 8192;
const SEED_QUEUE: usize = 4;
const SEEDED: &str = "seeded_generation";

/// Streams the source's listing into the manifest writer and, in batches, to the seeder.
async fn list_into(
    src: &dyn Provider,
    mut pages: futures::stream::BoxStream<'_, ferry_providers::Result<Vec<ObjectEntry>>>,
    writer: &mut ManifestWriter,
    seeder: &Sender<Vec<ObjectEntry>>,
    stats: &Stats,
    locks: &mut Locks,
) -> Result<()> {
    let mut batch = Vec::with_capacity(SEED_BATCH);
    while let Some(page) = pages.next().await {
        let page = page.map_err(|source| EngineError::Provider { side: "source", source })?;
        Stats::add(&stats.listed, page.len() as u64);
        if locks.on {
            let keys = page.iter().filter(|e| e.skipped.is_none() && !e.key.is_empty() && !e.key.ends_with('/')).map(|e| e.key.as_str());
            let mut asked = futures::stream::iter(keys).map(|key| async move { (key, src.lock(key).await) }).buffered(LOCK_QUERIES);
            while let Some((key, lock)) = asked.next().await {
                let Some(lock) = lock.map_err(|source| EngineError::Provider { side: "source", source })? else { continue };
                locks.count += 1;
                if locks.named.len() < LOCKED_NAMED {
                    locks.named.push(Locked { key: key.to_string(), lock });
                }
            }
        }
        for mut entry in page {
            if entry.skipped.is_none() && (entry.key.is_empty() || entry.key.ends_with('/')) {
                // A version of one stays that version (`--all-versions`).
                entry = ObjectEntry {
                    version: entry.version,
                    pinned: entry.pinned,
                    ..ObjectEntry::skipped(entry.key, SkipReason::DirectoryMarker)
                };
            }
            writer.push(&entry)?;
            batch.push(entry);
        }
        if batch.len() >= SEED_BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(SEED_BATCH));
            // A closed queue means the seeder stopped on an error, which the caller reports.
            if seeder.send(full).await.is_err() {
                return Ok(());
            }
        }
    }
    if !batch.is_empty() {
        let _ = seeder.send(batch).await;
    }
    Ok(())
}

async fn is_seeded(journal: &dyn Journal, generation: u32) -> Result<bool> {
    Ok(journal.meta(SEEDED).await?.as_deref() == Some(generation.to_string().as_str()))
}

/// Seeds the journal from sealed generation `generation` (once; replays are harmless).
async fn seed(job: &Job, generation: u32) -> Result<ManifestHeader> {
    let reader = ManifestReader::open(&job.generation_dir(generation))?;
    let journal: Arc<dyn Journal> = job.journal(JournalKind::Main).await?;
    if !is_seeded(journal.as_ref(), generation).await? {
        let (mut batches, read) = read_batches(reader);
        while let Some(batch) = batches.recv().await {
            journal.seed(generation, &batch).await?;
        }
        let reader = read.await.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
        journal.set_meta(SEEDED, &generation.to_string()).await?;
        return Ok(reader.header().clone());
    }
    Ok(reader.header().clone())
}

/// Reads a sealed generation's entries a batch at a time on the blocking pool, for an async
/// consumer (seeding a journal); the reader comes back when all are read. A consumer that stops
/// early closes the queue, and reading stops there too.
pub(crate) fn read_batches(reader: ManifestReader) -> (Receiver<Vec<ObjectEntry>>, tokio::task::JoinHandle<Result<ManifestReader>>) {
    /// Why reading stopped: the manifest, or a consumer gone (its own error is what counts).
    enum Stop {
        Manifest(ferry_manifest::ManifestError),
        Closed,
    }
    impl From<ferry_manifest::ManifestError> for Stop {
        fn from(e: ferry_manifest::ManifestError) -> Self {
            Stop::Manifest(e)
        }
    }
    let (batches, to_seed) = tokio::sync::mpsc::channel::<Vec<ObjectEntry>>(SEED_QUEUE);
    let read = tokio::task::spawn_blocking(move || {
        match reader.for_each_batch::<Stop>(|batch| batches.blocking_send(batch).map_err(|_| Stop::Closed)) {
            Ok(()) | Err(Stop::Closed) => Ok(reader),
            Err(Stop::Manifest(e)) => Err(e.into()),
        }
    });
    (to_seed, read)
}
