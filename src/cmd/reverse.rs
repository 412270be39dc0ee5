//! `ferry reverse --job DIR --job-out DIR2`

use super::{open_job, print_json};
use crate::Exit;
use crate::args::Common;
use ferry_engine::{EngineError, Stats};
use std::sync::Arc;

pub async fn run(common: &Common, out: &std::path::Path, run: &Arc<ferry_providers::RunContext>) -> Result<Exit, EngineError> {
    let mut job = open_job(common, None, None)?;
    let summary = ferry_engine::reverse(&mut job, out, run, &Stats::default()).await?;
    if common.json {
        print_json(&summary);
    } else {
        println!("reversed job {}: {} → {}", summary.job.display(), summary.source, summary.destination);
        println!(
            "generation 1: {} objects, {} equal at cutover (generation {} of {}), {} written since (the first delta copies them back)",
            summary.objects,
            summary.equal_at_cutover,
            summary.cutover_generation,
            common.job.display(),
            summary.written_since
        );
        println!("next: ferry delta --job {}", summary.job.display());
    }
    Ok(Exit::Ok)
}
