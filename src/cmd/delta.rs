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

/// `--watch`: a delta every `interval`, until a signal, or until `until_lag` holds.
pub struct Watch {
    pub interval: std::time::Duration,
    pub until_lag: Option<u64>,
}

pub async fn run(
    common: &Common,
    tuning: &Tuning,
    deletes: DeleteArgs,
    watch: Option<Watch>,
    run: &Arc<ferry_providers::RunContext>,
) -> Result<Exit, EngineError> {
    let mut job = super::open_job(common, None, None)?;
    // An ingest job's deltas list the system its disks were exported from (kept once the run's
    // checks have passed and its providers are open; a dry run keeps nothing).
    ferry_engine::follow_source(&mut job, false).await?;
    let settings = super::copy::settle(&mut job, tuning)?;
    let (source, destination) = job.providers(run).await?;
    let copy = super::copy::options(tuning, &settings, destination.as_ref())?;
    if !tuning.dry_run {
        ferry_engine::follow_source(&mut job, true).await?;
    }
    let opts = DeltaOptions {
        copy,
        delete: deletes.delete,
        max_delete: deletes.max_delete.unwrap_or_default(),
        force_delete: deletes.force_delete,
    };
    let Some(watch) = watch else {
        return Ok(pass_summary(&mut job, source, destination, &opts, common.json, run).await?.0);
    };
    let stop = stop_on_signals();
    loop {
        let started = tokio::time::Instant::now();
        let (exit, quiet) = match pass_summary(&mut job, source.clone(), destination.clone(), &opts, common.json, run).await {
            Ok((Exit::Usage, _)) => return Ok(Exit::Usage),
            Ok((exit, summary)) => {
                let quiet = summary.lag_listed.as_ref().is_some_and(|lag| {
                    watch
                        .until_lag
                        .is_some_and(|n| lag.objects <= n && (!opts.delete || summary.deletes.pending == summary.deletes.deleted))
                }) && exit == Exit::Ok;
                (exit, quiet)
            }
            // A refusal or a configuration error stops the watch; anything else (a listing the
            // retries could not finish) is said, and the next pass tries again.
            Err(e) if e.is_usage() => return Err(e),
            Err(e) => {
                eprintln!("ferry: error: {e} (the next pass tries again)");
                (Exit::Failures, false)
            }
        };
        if quiet {
            eprintln!("ferry: the source is quiet (--until-lag {}): stopping", watch.until_lag.unwrap_or_default());
            return Ok(exit);
        }
        let next = started + watch.interval;
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stop.notified() => {}
        }
        if stop.requested() {
            eprintln!("ferry: stopped between passes (the next `ferry delta` goes on from here)");
            return Ok(exit);
        }
    }
}

/// Stops a watch between passes: the first SIGINT or SIGTERM lets the pass under way finish,
/// a second ends the process at once (what is journaled is kept; the next delta goes on).
fn stop_on_signals() -> Arc<Stop> {
    use tokio::signal::unix::{SignalKind, signal};
    let stop = Arc::new(Stop::default());
    let notify = stop.clone();
    tokio::spawn(async move {
        let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else { return };
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            if notify.requested.swap(true, std::sync::atomic::Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("ferry: stopping after this pass (signal again to stop at once)");
            notify.notify.notify_one();
        }
    });
    stop
}

#[derive(Default)]
struct Stop {
    requested: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

impl Stop {
    fn requested(&self) -> bool {
        self.requested.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn notified(&self) {
        if !self.requested() {
            self.notify.notified().await;
        }
    }
}

/// One delta, printed; its exit code and summary.
async fn pass_summary(
    job: &mut ferry_engine::Job,
    source: Arc<dyn ferry_providers::Provider>,
    destination: Arc<dyn ferry_providers::Provider>,
    opts: &DeltaOptions,
    json: bool,
    run: &Arc<ferry_providers::RunContext>,
) -> Result<(Exit, ferry_engine::DeltaSummary), EngineError> {
    let stats = Arc::new(Stats::default());
    let progress = Progress::transfer("delta", stats.clone(), json);
    let summary = ferry_engine::delta(job, source, destination, opts.clone(), stats, run).await;
    progress.finish();
    let summary = summary?;
    if json {
        print_json(&summary);
    } else {
        if let Some(t) = &summary.tables {
            for line in &t.tables {
                let to = match (&line.file, t.dry_run) {
                    (_, true) => "would be exported".to_string(),
                    (Some(f), _) => format!("into {f}{}", if line.resumed { " (an earlier run's)" } else { "" }),
                    (None, _) => "nothing to export".to_string(),
                };
                println!(
                    "table {}: {} rows written since (past {} {} or after the last export's snapshot) {to}",
                    line.table,
                    line.rows,
                    line.column,
                    line.watermark_shown.as_deref().unwrap_or("(none)")
                );
            }
            println!("tables: rows deleted from the database are not seen by an incremental export; the destination keeps them");
            for t in &t.not_exported {
                println!(
                    "table {t}: created since the export in the job's schemas, not exported by a delta (export it in a job of its own)"
                );
            }
        }
        let c = &summary.changes;
        let what = if summary.dry_run {
            "dry run: a delta would record".to_string()
        } else if summary.resumed {
            format!("finished generation {} (an earlier delta's)", summary.generation)
        } else if summary.unchanged_source {
            format!("no change since generation {} (nothing sealed)", summary.generation)
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
        if let Some(key) = &summary.listed_out_of_order {
            println!("the source listed {key:?} out of key order: listed again and sorted (the first listing was not merged)");
        }
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
        return Ok((exit, summary));
    }
    let exit = if summary.incomplete() { Exit::Failures } else { Exit::Ok };
    Ok((exit, summary))
}
