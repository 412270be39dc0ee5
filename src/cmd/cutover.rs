//! `ferry cutover --job DIR [--all-bytes | --sample N]`

use super::print_json;
use crate::Exit;
use crate::args::{Common, Tuning};
use crate::progress::Progress;
use ferry_engine::{CutoverOptions, DeltaOptions, EngineError, Stats, VerifyOptions};
use std::sync::Arc;

pub async fn run(
    common: &Common,
    tuning: &Tuning,
    deletes: super::delta::DeleteArgs,
    all_bytes: bool,
    sample: Option<u64>,
    run: &Arc<ferry_providers::RunContext>,
) -> Result<Exit, EngineError> {
    if tuning.dry_run {
        return Err(EngineError::CutoverDryRun);
    }
    let mut job = super::open_job(common, None, None)?;
    // An ingest job's cutover lists the system its disks were exported from (kept once the
    // run's checks have passed and its providers are open).
    ferry_engine::follow_source(&mut job, false).await?;
    let settings = super::copy::settle(&mut job, tuning)?;
    let (source, destination) = job.providers(run).await?;
    let copy = super::copy::options(tuning, &settings, destination.as_ref())?;
    ferry_engine::follow_source(&mut job, true).await?;
    let verify = VerifyOptions { transfers: copy.transfers, all_bytes, sample, extras: true, max_memory: copy.max_memory };
    let delta = DeltaOptions { copy, delete: true, max_delete: deletes.max_delete.unwrap_or_default(), force_delete: deletes.force_delete };
    let stats = Arc::new(Stats::default());
    let progress = Progress::transfer("cutover", stats.clone(), common.json);
    let summary = ferry_engine::cutover(&mut job, source, destination, CutoverOptions { delta, verify }, stats, run).await;
    progress.finish();
    let summary = summary?;
    let r = &summary.record;
    if common.json {
        print_json(&summary);
    } else {
        let text = std::fs::read_to_string(&summary.summary_path).unwrap_or_default();
        println!("{}", text.trim_end_matches('\n'));
        for d in summary.verify.differences.iter().take(20) {
            println!("  {}: {}: {}", d.kind, d.key, d.detail);
        }
        println!("summary: {}", summary.summary_path.display());
    }
    eprintln!("ferry: cutover record {} sha256 {}", summary.record_path.display(), summary.record_sha256);
    Ok(match () {
        _ if r.holds => Exit::Ok,
        // The source is not the destination: it changed after the final delta, the destination
        // differs, or (a table job) the database has rows, tables or prepared writes pending.
        _ if !r.listings_identical
            || r.verify_differences > 0
            || r.tables_written_since.unwrap_or(0) > 0
            || !r.tables_pending.is_empty() =>
        {
            Exit::Differences
        }
        _ => Exit::Failures,
    })
}
