//! `ferry plan SRC DST --job DIR`

use super::{open_job, print_json};
use crate::Exit;
use crate::args::Common;
use crate::progress::Progress;
use ferry_core::size::format_size;
use ferry_engine::{EngineError, Stats};
use std::sync::Arc;

/// Locked objects the text report names (`--json` names more).
const LOCKED_SHOWN: usize = 20;

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
                "  {} objects, {} ({}) are archived and cannot be read until restored (--archived skip|restore)",
                summary.objects,
                summary.archived,
                format_size(summary.archived_bytes)
            );
        }
        if summary.locked > 0 {
            println!(
                "  {} objects are under object lock (legal hold or retention): ferry copies their bytes, never their lock",
                summary.locked
            );
            for locked in summary.locked_objects.iter().take(LOCKED_SHOWN) {
                println!("    {}: {}", locked.key, locked.lock);
            }
            if summary.locked > LOCKED_SHOWN as u64 {
                println!(
                    "    … and {} more (a plan run with --json names up to {})",
                    summary.locked - LOCKED_SHOWN as u64,
                    ferry_engine::plan::LOCKED_NAMED
                );
            }
        }
        if !summary.skipped_by_reason.is_empty() {
            for (reason, n) in &summary.skipped_by_reason {
                println!("  skipped {n} {reason}: {}", reason.advice());
            }
            println!("  (named in the manifest, column skipped: `ferry manifest export --job DIR`)");
        }
    }
    Ok(Exit::Ok)
}
