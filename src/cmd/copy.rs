//! `ferry copy [SRC DST] --job DIR`

use super::{open_job, print_json};
use crate::Exit;
use crate::args::{Common, TableArgs, Tuning};
use crate::progress::Progress;
use ferry_core::size::format_size;
use ferry_engine::{CopyOptions, EngineError, Stats};
use std::sync::Arc;

pub async fn run(
    src: Option<&str>,
    dst: Option<&str>,
    common: &Common,
    tables: &TableArgs,
    tuning: &Tuning,
    run: &std::sync::Arc<ferry_providers::RunContext>,
) -> Result<Exit, EngineError> {
    let mut job = match src {
        Some(url) if super::is_database(url) => super::open_table_job(common, url, dst, tables)?,
        _ if tables.given() => {
            return Err(EngineError::WriteSetting("--table, --schema, --cast and --incremental-by need a postgres:// source".into()));
        }
        _ => open_job(common, src, dst)?,
    };
    let mut export = None;
    if let Some(spec) = job.tables().cloned() {
        let stats = Arc::new(Stats::default());
        let progress = Progress::transfer("export", stats.clone(), common.json);
        let asked = ferry_engine::tables::ExportRun { connections: usize::from(tables.db_connections), dry_run: tuning.dry_run };
        let exported = ferry_engine::tables::export(&mut job, &spec, &ferry_engine::tables::Environment::current(), asked, &stats).await;
        progress.finish();
        let exported = exported?;
        if !common.json {
            print_exported(&exported);
        }
        if tuning.dry_run {
            if common.json {
                print_json(&serde_json::json!({ "export": exported }));
            }
            return Ok(Exit::Ok);
        }
        export = Some(exported);
    }
    let settings = settle(&mut job, tuning)?;
    let (source, destination) = job.providers(run).await?;
    let opts = options(tuning, &settings, destination.as_ref())?;
    let stats = Arc::new(Stats::default());
    let progress = Progress::transfer("copy", stats.clone(), common.json);
    let summary = ferry_engine::copy(&mut job, source, destination, opts, stats, run).await;
    progress.finish();
    let summary = summary?;
    if common.json {
        let mut doc = serde_json::to_value(&summary).expect("summary serializes");
        if let Some(export) = &export {
            doc["export"] = serde_json::to_value(export).expect("summary serializes");
        }
        print_json(&doc);
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
        print_archived(&summary, &settings);
        super::print_locked(summary.locked, &summary.locked_objects);
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

/// What the table export did, before the copy of its files.
fn print_exported(s: &ferry_engine::tables::TablesSummary) {
    for r in &s.references_unchecked {
        match r.why {
            ferry_engine::tables::Unchecked::ParentNotExported => {
                println!("  foreign key {r}: the parent table is not in the export, so its rows will not be at the destination")
            }
            why => println!("  foreign key {r}: verify --sample will not check it: {}", why.as_str()),
        }
    }
    if s.dry_run {
        println!("dry run: {} tables of {} would be exported; nothing written", s.tables, s.source);
        return;
    }
    if s.already_planned {
        println!("tables: {} tables, {} files, {} rows exported earlier (sealed)", s.tables, s.files, s.rows);
    } else {
        let snapshot = match &s.snapshot {
            Some(i) => format!(" from snapshot {} (PostgreSQL {}, WAL {})", i.id, i.server_version, i.lsn),
            None => String::new(),
        };
        println!(
            "exported {} tables into {} files ({} by this run), {} rows{snapshot} in {:.1}s",
            s.tables, s.files, s.exported, s.rows, s.seconds
        );
    }
    if s.snapshots > 1 {
        println!(
            "  the files come from {} snapshots (the export was resumed); each table's rows and fingerprint were proved whole in the last one",
            s.snapshots
        );
    }
}

/// The archived objects of the manifest, and what this run did with them.
fn print_archived(s: &ferry_engine::CopySummary, settings: &ferry_engine::Settings) {
    if s.archived == 0 && s.restores_requested == 0 {
        return;
    }
    let mut said = vec![format!("{} in the manifest", s.archived)];
    if s.restores_requested > 0 {
        said.push(format!("{} restores requested", s.restores_requested));
    }
    if s.restoring > 0 {
        said.push(format!("{} still restoring (`ferry copy` again copies those restored since)", s.restoring));
    }
    let not_read = s.archived_not_read.saturating_sub(s.restoring);
    if not_read > 0 {
        let why = match settings.archived() {
            ferry_engine::Archived::Skip => " (--archived skip; --archived restore asks the source to restore them)",
            ferry_engine::Archived::Restore(_) => "",
        };
        said.push(format!("{not_read} not read{why}"));
    }
    println!("archived objects: {}", said.join(", "));
    if s.restores_at_other_tier > 0 {
        println!("  {} restores asked at standard, not expedited: S3 has no expedited retrieval of DEEP_ARCHIVE", s.restores_at_other_tier);
    }
}

/// What the destination did not keep of headers, metadata and tags.
pub(super) fn print_fidelity(f: &ferry_engine::Fidelity) {
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

/// The run settings of the job, its kept ones met by the flags (shared by `copy`, `resume`,
/// `delta` and `cutover`): before the providers are opened, which write by them.
pub(super) fn settle(job: &mut ferry_engine::Job, tuning: &Tuning) -> Result<ferry_engine::Settings, EngineError> {
    let asked = tuning.asked().map_err(EngineError::WriteSetting)?;
    job.settle(&asked)
}

/// The copy options the flags and the job's settings ask for; says the part size before the
/// run starts when it was lowered.
pub(super) fn options(
    tuning: &Tuning,
    settings: &ferry_engine::Settings,
    destination: &dyn ferry_providers::Provider,
) -> Result<CopyOptions, EngineError> {
    let opts = CopyOptions {
        dry_run: tuning.dry_run,
        server_side: tuning.server_side == crate::args::ServerSide::Auto,
        file_mode: tuning.file_mode,
        tags: settings.tags,
        archived: settings.archived(),
        storage_class_map: settings.storage_class_map.clone(),
        restore_wait: tuning.restore_wait.unwrap_or_default(),
        backup_to: settings.backup_to()?,
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
    Ok(opts)
}
