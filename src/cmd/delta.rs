//! `ferry delta --job DIR [--delete] [--max-delete N|P%] [--force-delete] [--dry-run]`

use super::print_json;
use crate::Exit;
use crate::args::{Common, Tuning};
use crate::progress::Progress;
use ferry_core::size::format_size;
use ferry_engine::{DeltaOptions, EngineError, MaxDelete, Stats};
use std::sync::Arc;

pub struct DeleteArgs {
    pub delete: bool,
    pub max_delete: Option<MaxDelete>,
    pub force_delete: bool,
}

pub async fn run(
    common: &Common,
    tuning: &Tuning,
    deletes: DeleteArgs,
    run: &Arc<ferry_providers::RunContext>,
) -> Result<Exit, EngineError> {
    let mut job = super::open_job(common, None, None)?;
    super::copy::write_settings(&mut job, tuning)?;
    let (source, destination) = job.providers(run).await?;
    let copy = super::copy::options(tuning, destination.as_ref())?;
    let opts = DeltaOptions {
        copy,
        delete: deletes.delete,
        max_delete: deletes.max_delete.unwrap_or_default(),
        force_delete: deletes.force_delete,
    };
    let stats = Arc::new(Stats::default());
    let progress = Progress::transfer("delta", stats.clone(), common.json);
    let summary = ferry_engine::delta(&mut job, source, destination, opts, stats, run).await;
    progress.finish();
    let summary = summary?;
    if common.json {
        print_json(&summary);
    } else {
        let c = &summary.changes;
        let what = if summary.dry_run {
            "dry run: a delta would record".to_string()
        } else if summary.resumed {
            format!("finished generation {} (an earlier delta's)", summary.generation)
        } else {
            format!("generation {} (parent {})", summary.generation, summary.parent)
        };
        println!(
            "{what}: {} added, {} changed, {} deleted, {} unchanged ({} touched: only the time changed, not copied); {} objects, {}",
            c.added,
            c.changed,
            c.deleted,
            c.unchanged,
            c.touched,
            summary.objects,
            format_size(summary.bytes)
        );
        if let Some(copy) = &summary.copy {
            println!("copied {} objects ({}) in {:.1}s; {} failed", copy.copied, format_size(copy.bytes_copied), copy.seconds, copy.failed);
            super::print_skipped(&copy.skipped);
            super::copy::print_fidelity(&copy.fidelity);
            super::print_failures_and_report(&copy.failures, None);
        }
        let d = &summary.deletes;
        if summary.dry_run {
            println!("deletes at the destination a `--delete` run would carry out: {}", d.pending);
        } else if let Some(why) = &d.held_back {
            println!("{why}");
        } else if d.deleted > 0 || d.failed > 0 {
            println!("deleted at the destination: {}; {} failed", d.deleted, d.failed);
        } else if d.pending > 0 {
            println!("{} keys gone from the source are still at the destination (`ferry delta --delete` deletes them)", d.pending);
        }
        if let Some(line) = summary.lag.as_ref().and_then(super::lag_line) {
            println!("{line}");
        }
        super::print_failures_and_report(&d.failures, summary.report.as_deref());
    }
    if let Some(exit) = super::stopped_early(summary.copy.as_ref().and_then(|c| c.stopped_by.as_ref())) {
        return Ok(exit);
    }
    Ok(if summary.incomplete() { Exit::Failures } else { Exit::Ok })
}
