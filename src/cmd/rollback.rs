//! `ferry rollback --job DIR (--run ID | --to-generation N) [--dry-run]`, `ferry rollback --job DIR --list`

use super::{open_job, print_json};
use crate::Exit;
use crate::args::Common;
use ferry_engine::rollback::plan_lines;
use ferry_engine::{EngineError, RollbackOptions, RollbackTo};
use ferry_journal::JournalKind;
use std::sync::Arc;

pub async fn run(
    common: &Common,
    to: Option<RollbackTo>,
    dry_run: bool,
    transfers: usize,
    run: &Arc<ferry_providers::RunContext>,
) -> Result<Exit, EngineError> {
    let mut job = open_job(common, None, None)?;
    let Some(to) = to else {
        // --list
        if !job.exists() {
            return Err(EngineError::NoJob { dir: job.dir.clone() });
        }
        let runs = job.journal(JournalKind::Main).await?.runs().await?;
        if common.json {
            print_json(&runs);
        } else {
            println!("{:>5}  {:<9} {:>10}  {:>8}  {:>8}  started", "run", "kind", "generation", "writes", "undone");
            for r in &runs {
                let generation = r.generation.map_or("-".to_string(), |g| g.to_string());
                println!("{:>5}  {:<9} {:>10}  {:>8}  {:>8}  {}", r.id.0, r.kind.as_str(), generation, r.writes, r.undone, r.started);
            }
        }
        return Ok(Exit::Ok);
    };
    if !job.exists() {
        return Err(EngineError::NoJob { dir: job.dir.clone() });
    }
    let destination = job.destination_provider(run).await?;
    let summary = ferry_engine::rollback(&mut job, destination, RollbackOptions { to, dry_run, transfers }, run).await?;
    if common.json {
        print_json(&summary);
    } else {
        if summary.runs.is_empty() {
            println!("nothing to roll back: no run wrote to {} after that", summary.destination);
            return Ok(Exit::Ok);
        }
        let runs: Vec<String> = summary.runs.iter().map(|r| r.to_string()).collect();
        let verb = if summary.dry_run { "would roll back" } else { "rolled back" };
        println!("{verb} runs {} at {}: {} keys", runs.join(", "), summary.destination, summary.keys);
        if let Some(plan) = summary.plan.as_deref().filter(|_| summary.dry_run) {
            // The exact plan, a line a key.
            for step in plan_lines(plan).map_err(|source| EngineError::Io { path: plan.to_path_buf(), source })? {
                println!("  {step}");
            }
        }
        let (deleted, restored) = if summary.dry_run { ("would delete", "would restore") } else { ("deleted", "restored") };
        println!(
            "  {deleted} {}, {restored} from backup {}, {restored} from the destination's versions {}, already as before {}",
            summary.deleted, summary.restored_from_backup, summary.restored_from_version, summary.already
        );
        if summary.incomplete() {
            println!(
                "  NOT undone: {} changed by another writer since ferry, {} unrecoverable, {} failed",
                summary.left_changed, summary.unrecoverable, summary.failed
            );
            if !summary.dry_run {
                for step in summary.not_undone.iter().take(50) {
                    println!("  {step}");
                }
                if summary.not_undone.len() > 50 {
                    println!("  … and more (see the steps file)");
                }
            }
        }
        if let Some(plan) = &summary.plan {
            println!("  steps: {}", plan.display());
        }
        if let Some(report) = &summary.report {
            println!("  report: {}", report.display());
        }
        if !summary.dry_run && !summary.incomplete() {
            println!("  the undone objects are pending again: `ferry delta` or `ferry copy` moves forward");
        }
    }
    Ok(if summary.incomplete() { Exit::Failures } else { Exit::Ok })
}
