//! `ferry verify --job DIR`

use super::{open_job, print_json};
use crate::Exit;
use crate::args::Common;
use crate::progress::Progress;
use ferry_engine::{EngineError, Stats, VerifyOptions};
use std::sync::Arc;

pub async fn run(common: &Common, opts: VerifyOptions, run: &std::sync::Arc<ferry_providers::RunContext>) -> Result<Exit, EngineError> {
    let mut job = open_job(common, None, None)?;
    let destination = job.destination_provider(run).await?;
    let stats = Arc::new(Stats::default());
    let progress = Progress::transfer("verify", stats.clone(), common.json);
    let summary = ferry_engine::verify(&mut job, destination, opts, stats, run).await;
    progress.finish();
    let summary = summary?;
    if common.json {
        print_json(&summary);
    } else {
        let proved: Vec<String> = summary.proved_by.iter().map(|(how, n)| format!("{n} by {how}")).collect();
        let by = if proved.is_empty() { String::new() } else { format!(" ({})", proved.join(", ")) };
        println!("verified {} of {} objects{by}", summary.matched, summary.checked);
        if let Some(t) = &summary.tables {
            println!(
                "tables: {} of {} files of {} tables ({} rows read back) match the database's figures",
                t.matched, t.files, t.tables, t.rows
            );
            if let Some(s) = &t.sample {
                println!(
                    "  sampled {} rows from the database by primary key: {} equal, {} differ, {} uncertain, {} changed and {} deleted since the export (not compared)",
                    s.counts.rows, s.counts.equal, s.counts.differ, s.counts.uncertain, s.counts.changed_since, s.counts.gone_since
                );
                for t in s.tables.iter().filter(|t| t.counts.rows > t.counts.equal) {
                    let c = &t.counts;
                    println!(
                        "    {}: {} of {} equal, {} differ, {} uncertain, {} changed and {} deleted since",
                        t.table, c.equal, c.rows, c.differ, c.uncertain, c.changed_since, c.gone_since
                    );
                }
                if s.references > 0 {
                    println!(
                        "  foreign keys of the sampled rows: {} of {} found among the parent tables' exported rows",
                        s.references_found, s.references
                    );
                }
                for n in &s.not_sampled {
                    println!("  not sampled: {}: {}", n.table, n.why);
                }
                for r in &s.references_unchecked {
                    println!("  foreign key {r} not checked: {}", r.why.as_str());
                }
            }
        }
        if summary.extra > 0 {
            println!("{} objects at the destination are not in the manifest", summary.extra);
        }
        for d in &summary.differences {
            println!("  {}: {}: {}", d.kind, d.key, d.detail);
        }
        super::print_skipped(&summary.skipped);
        if let Some(report) = &summary.report {
            println!("report: {}", report.display());
        }
    }
    Ok(match (summary.differences.is_empty(), summary.skipped.lost) {
        (false, _) => Exit::Differences,
        (true, 0) => Exit::Ok,
        // The destination matches what was copied, but the source held entries it lacks.
        (true, _) => Exit::Failures,
    })
}
