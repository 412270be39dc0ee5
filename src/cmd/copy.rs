//! `ferry copy [SRC DST] --job DIR`

use super::{open_job, print_json};
use crate::Exit;
use crate::args::{Common, Tuning};
use crate::progress::Progress;
use ferry_core::size::format_size;
use ferry_engine::{CopyOptions, EngineError, Stats};
use std::sync::Arc;

pub async fn run(
    src: Option<&str>,
    dst: Option<&str>,
    common: &Common,
    tuning: &Tuning,
    run: &std::sync::Arc<ferry_providers::RunContext>,
) -> Result<Exit, EngineError> {
    let asked = tuning.asked().map_err(EngineError::WriteSetting)?;
    let mut job = open_job(common, src, dst)?;
    let settings = job.settle(&asked)?;
    let (source, destination) = job.providers(run).await?;
    let opts = CopyOptions {
        dry_run: tuning.dry_run,
        server_side: tuning.server_side == crate::args::ServerSide::Auto,
        file_mode: tuning.file_mode,
        tags: settings.tags,
        archived: settings.archived(),
        restore_wait: tuning.restore_wait.unwrap_or_default(),
        ..tuning.transfer.options()
    };
    // Said before the copy starts, so a long run does not hide it until the end.
    let part_size = ferry_engine::copy::check_part_size(&opts, destination.name(), &destination.limits())?;
    if let Some(asked) = opts.part_size.filter(|asked| *asked != part_size) {
        eprintln!(
            "ferry: parts of {} (--part-size {} lowered to fit --max-memory {})",
            format_size(part_size),
            format_size(asked),
            format_size(opts.max_memory)
        );
    }
    let stats = Arc::new(Stats::default());
    let progress = Progress::transfer("copy", stats.clone(), common.json);
    let summary = ferry_engine::copy(&mut job, source, destination, opts, stats, run).await;
    progress.finish();
    let summary = summary?;
    if common.json {
        print_json(&summary);
    } else if summary.dry_run {
        println!(
            "dry run: would copy {} objects ({}); {} already done of {}",
            summary.pending,
            format_size(summary.pending_bytes),
            summary.already_done,
            summary.objects_total
        );
    } else {
        println!(
            "copied {} objects ({}) in {:.1}s; {} already done; {} failed of {}",
            summary.copied,
            format_size(summary.bytes_copied),
            summary.seconds,
            summary.already_done,
            summary.failed,
            summary.objects_total
        );
        if !summary.verified_by.is_empty() {
            let proved: Vec<String> = summary.verified_by.iter().map(|(how, n)| format!("{n} by {how}")).collect();
            println!("verified while copying: {}", proved.join(", "));
        }
        if !summary.retries.is_empty() {
            let retried: Vec<String> = summary.retries.iter().map(|(why, n)| format!("{n} {why}")).collect();
            println!("retried: {}", retried.join(", "));
        }
        if summary.restores_requested > 0 {
            println!("restores requested of archived objects: {} (`ferry status` counts those in flight)", summary.restores_requested);
        }
        super::print_skipped(&summary.skipped);
        print_fidelity(&summary.fidelity);
        super::print_failures_and_report(&summary.failures, summary.report.as_deref());
    }
    if let Some(exit) = super::stopped_early(summary.stopped_by.as_ref()) {
        return Ok(exit);
    }
    let lost = summary.failed > 0 || summary.skipped.lost > 0 || summary.fidelity.lost_user_data();
    Ok(if lost { Exit::Failures } else { Exit::Ok })
}

/// What the destination did not keep of headers, metadata and tags.
fn print_fidelity(f: &ferry_engine::Fidelity) {
    for limit in &f.pair_limits {
        match limit {
            ferry_engine::fidelity::PairLimit::NoTags => println!("not carried: the destination keeps no object tags"),
            ferry_engine::fidelity::PairLimit::NoMetadata => {
                println!("not carried: the destination keeps no headers or metadata (see --local-metadata)")
            }
        }
    }
    if f.objects == 0 {
        return;
    }
    let kinds: Vec<String> = f.by_kind.iter().map(|(kind, n)| format!("{n} {kind}")).collect();
    println!("{} objects not carried in full: {}", f.objects, kinds.join(", "));
    for o in &f.named {
        let what: Vec<String> = o.not_carried.iter().map(|n| n.to_string()).collect();
        println!("  {}: {}", o.key, what.join("; "));
    }
}
