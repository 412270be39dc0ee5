//! Planning: list the source into a sealed manifest generation, then seed the journal from it.

use crate::{EngineError, Job, Result, Stats};
use ferry_journal::Journal;
use ferry_manifest::{ManifestHeader, ManifestReader, ManifestWriter};
use ferry_providers::Provider;
use futures::StreamExt;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize)]
pub struct PlanSummary {
    pub generation: u32,
    pub objects: u64,
    pub bytes: u64,
    /// Listed entries left out (directory markers such as `photos/`).
    pub skipped: u64,
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
        let header = seed(job, generation)?;
        return Ok(PlanSummary::of(&header, dir, true));
    }
    let generation = 1;
    let dir = job.generation_dir(generation);
    if dir.exists() {
        // An unsealed generation is the remains of an interrupted listing: start it again.
        std::fs::remove_dir_all(&dir).map_err(EngineError::io(&dir))?;
    }
    let mut writer = ManifestWriter::create(&dir, generation, None, &job.source.to_string(), &job.destination.to_string())?;
    let mut pages = src.list();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|source| EngineError::Provider { side: "source", source })?;
        for entry in &page {
            if entry.key.is_empty() || entry.key.ends_with('/') {
                writer.skip();
                continue;
            }
            writer.push(entry)?;
        }
        Stats::add(&stats.listed, page.len() as u64);
    }
    writer.seal()?;
    let header = seed(job, generation)?;
    Ok(PlanSummary::of(&header, dir, false))
}

/// Seeds the journal from sealed generation `generation` (once; replays are harmless).
fn seed(job: &Job, generation: u32) -> Result<ManifestHeader> {
    let reader = ManifestReader::open(&job.generation_dir(generation))?;
    let mut journal = Journal::open(&job.journal_path())?;
    let marker = generation.to_string();
    if journal.meta("seeded_generation")?.as_deref() != Some(marker.as_str()) {
        reader.for_each_batch::<EngineError>(|batch| Ok(journal.seed(generation, &batch)?))?;
        journal.set_meta("seeded_generation", &marker)?;
    }
    Ok(reader.header().clone())
}
