//! Reverse replication after a cutover: a new job from the old destination back to the old
//! source, whose first generation is the new side as it stood at cutover, so `ferry delta` on it
//! replicates only what changed after cutover (the way back, should the migration be undone at
//! the data level).
//!
//! The new job's generation 1 is a listing of the old destination; every key of it with the
//! size and the entity tag the destination gave when ferry wrote it is recorded as done (the
//! cutover proved those equal to the source), and anything else — written or rewritten on the
//! new side since, even at the same size — stays pending, so the first delta of the reversed
//! job copies it back.
//!
//! The job is made in a staging directory beside `--job-out` (`.NAME.reversing`) and renamed
//! into place only once it is whole: a reverse cut off (kill -9 included) leaves no job that
//! would copy everything back, and the next reverse starts the staging over.

use crate::{EngineError, Job, Result, Stats};
use ferry_journal::JournalKind;
use ferry_providers::RunContext;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone, Serialize)]
pub struct ReverseSummary {
    /// The new job: its directory, source (the old destination) and destination (the old source).
    pub job: PathBuf,
    pub source: String,
    pub destination: String,
    /// The cutover record it starts from, and its final generation.
    pub cutover_record: PathBuf,
    pub cutover_generation: u32,
    /// Objects the new side listed, those equal at cutover (done), and those written since
    /// (pending: the first delta copies them back).
    pub objects: u64,
    pub equal_at_cutover: u64,
    pub written_since: u64,
}

/// The newest cutover record of the job that holds for its newest generation.
fn holding_cutover(job: &Job) -> Result<(PathBuf, u32)> {
    let latest = job.latest_generation().ok_or_else(|| EngineError::NotPlanned { dir: job.dir.clone() })?;
    let mut records: Vec<PathBuf> =
        std::fs::read_dir(job.dir.join("reports")).map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect()).unwrap_or_default();
    records.retain(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("cutover-") && n.ends_with(".json")));
    records.sort();
    let newest = records.pop().ok_or_else(|| EngineError::NoCutover { dir: job.dir.clone() })?;
    let text = std::fs::read(&newest).map_err(EngineError::io(&newest))?;
    let record: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| EngineError::JobFile { path: newest.clone(), detail: e.to_string() })?;
    if record["holds"] != true || record["final_generation"].as_u64() != Some(latest as u64) {
        return Err(EngineError::NoCutover { dir: job.dir.clone() });
    }
    Ok((newest, latest))
}

/// Makes the reversed job in `out` from `job` (see the module docs).
pub async fn reverse(job: &mut Job, out: &Path, run: &Arc<RunContext>, stats: &Stats) -> Result<ReverseSummary> {
    job.lock()?;
    let (record, generation) = holding_cutover(job)?;
    if out.join("job.toml").exists() {
        return Err(EngineError::JobExists { dir: out.to_path_buf() });
    }
    if out.exists() && std::fs::read_dir(out).map_err(EngineError::io(out))?.next().is_some() {
        return Err(EngineError::JobExists { dir: out.to_path_buf() });
    }
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "reversed".into());
    let staging = out.with_file_name(format!(".{name}.reversing"));
    if staging.exists() {
        // An earlier reverse cut off: its half-made job is started over.
        std::fs::remove_dir_all(&staging).map_err(EngineError::io(&staging))?;
    }
    let made = make(job, &staging, &record, run, stats).await;
    let made = match made {
        Ok(made) => made,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    // The staged job's journal and lock are closed (dropped in `make`): the whole directory
    // moves into place at once.
    std::fs::rename(&staging, out).map_err(EngineError::io(out))?;
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(parent).and_then(|d| d.sync_all()).map_err(EngineError::io(parent))?;
    let (source, destination, objects, equal) = made;
    Ok(ReverseSummary {
        job: out.to_path_buf(),
        source,
        destination,
        cutover_record: record,
        cutover_generation: generation,
        objects,
        equal_at_cutover: equal,
        written_since: objects - equal,
    })
}

/// Makes the reversed job of `job` in `dir`: its source, destination, objects listed and
/// objects equal at cutover. Everything it opens is closed when it returns.
async fn make(job: &Job, dir: &Path, record: &Path, run: &Arc<RunContext>, stats: &Stats) -> Result<(String, String, u64, u64)> {
    let side = |c: &ferry_providers::Connect| ferry_providers::Connect { write: Default::default(), ..c.clone() };
    let access = crate::Access { source: side(&job.access.destination), destination: side(&job.access.source) };
    let mut back = Job::open(dir, Some(job.destination.clone()), Some(job.source.clone()), access)?;
    let new_side = back.source_provider(run).await?;
    let planned = crate::plan(&mut back, new_side.as_ref(), stats).await?;
    let journal = back.journal(JournalKind::Main).await?;
    let note = format!("equal at cutover ({})", record.file_name().and_then(|n| n.to_str()).unwrap_or_default());
    // What ferry wrote at the old destination, as the destination described it then.
    let written = job.journal(JournalKind::Main).await?;
    let (mut equal, mut after) = (0, 0);
    loop {
        let rows = written.in_state(ferry_journal::ObjectState::Done, after, 4096).await?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        // Each as the new side holds it, with what the old side (the reversed destination) holds.
        let held: Vec<(ferry_core::ObjectEntry, Option<String>)> = rows
            .iter()
            .map(|r| {
                let new_side = ferry_core::ObjectEntry {
                    key: r.dst_key().to_string(),
                    size: r.entry.size,
                    etag: r.dst_etag.clone(),
                    ..Default::default()
                };
                (new_side, r.entry.etag.clone())
            })
            .collect();
        equal += journal.mark_equal_done(&held, &note).await?;
    }
    journal.release(&[]).await?;
    Ok((back.source.to_string(), back.destination.to_string(), planned.objects, equal))
}
