//! `ferry plan SRC DST --job DIR`

use super::{open_job, print_json};
use crate::Exit;
use crate::args::Common;
use crate::progress::Progress;
use ferry_core::size::format_size;
use ferry_engine::{EngineError, Stats};
use std::sync::Arc;

pub async fn run(src: &str, dst: &str, common: &Common, run: &std::sync::Arc<ferry_providers::RunContext>) -> Result<Exit, EngineError> {
    let mut job = open_job(common, Some(src), Some(dst))?;
    // The destination is checked too: a plan for a destination that cannot be written is a mistake.
    let (source, _destination) = job.providers(run).await?;
    let stats = Arc::new(Stats::default());
    let progress = Progress::listing(stats.clone(), common.json);
    let summary = ferry_engine::plan(&mut job, source.as_ref(), &stats).await;
    progress.finish();
    let summary = summary?;
    if common.json {
        print_json(&summary);
    } else {
        let verb = if summary.already_planned { "already planned" } else { "planned" };
        println!(
            "{verb}: generation {} — {} objects, {} ({} skipped) → {}",
            summary.generation,
            summary.objects,
            format_size(summary.bytes),
            summary.skipped,
            summary.manifest.display()
        );
        if summary.archived > 0 {
            println!(
                "  {} of {} objects ({}) are archived and cannot be read until restored (--archived skip|restore)",
                summary.archived,
                summary.objects,
                format_size(summary.archived_bytes)
            );
        }
        super::print_locked(summary.locked, &summary.locked_objects);
        if !summary.skipped_by_reason.is_empty() {
            for (reason, n) in &summary.skipped_by_reason {
                println!("  skipped {n} {reason}: {}", reason.advice());
            }
            println!("  (named in the manifest, column skipped: `ferry manifest export --job DIR`)");
        }
    }
    Ok(Exit::Ok)
}
