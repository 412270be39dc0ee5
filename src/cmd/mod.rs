//! One module per command, and what they share: turning arguments into a job.

mod clean;
mod copy;
mod cutover;
mod delta;
mod export;
mod ingest;
mod manifest;
mod plan;
mod reverse;
mod rollback;
mod status;
mod verify;

use crate::Exit;
use crate::args::{Cli, Command, Common, ManifestCommand};
use ferry_core::Location;
use ferry_engine::{Access, EngineError, Job};
use ferry_providers::Connect;

pub async fn run(cli: Cli) -> Result<Exit, EngineError> {
    match cli.command {
        Command::Plan { src, dst, common, rates } => plan::run(&src, &dst, &common, &rates.run()).await,
        Command::Copy { src, dst, common, tables, tuning, rates } => {
            copy::run(src.as_deref(), dst.as_deref(), &common, &tables, &tuning, &rates.run()).await
        }
        Command::Resume { common, tuning, rates } => {
            copy::run(None, None, &common, &crate::args::TableArgs::default(), &tuning, &rates.run()).await
        }
        Command::Delta { common, tuning, rates, delete, max_delete, force_delete, watch, interval, until_lag } => {
            let deletes = delta::DeleteArgs { delete, max_delete, force_delete };
            let watch = watch.then_some(delta::Watch { interval, until_lag });
            delta::run(&common, &tuning, deletes, watch, &rates.run()).await
        }
        Command::Cutover { common, tuning, rates, all_bytes, sample, max_delete, force_delete } => {
            let deletes = delta::DeleteArgs { delete: true, max_delete, force_delete };
            cutover::run(&common, &tuning, deletes, all_bytes, sample, &rates.run()).await
        }
        Command::Reverse { common, job_out, rates } => reverse::run(&common, &job_out, &rates.run()).await,
        Command::Rollback { common, run, to_generation, dry_run, list: _, transfers, rates } => {
            // `--list` is the one way to give neither --run nor --to-generation.
            let to = match (run, to_generation) {
                (Some(id), _) => Some(ferry_engine::RollbackTo::Run(id)),
                (None, Some(n)) => Some(ferry_engine::RollbackTo::Generation(n)),
                (None, None) => None,
            };
            rollback::run(&common, to, dry_run, usize::from(transfers), &rates.run()).await
        }
        Command::Verify { common, all_bytes, sample, no_extra, transfers, max_memory, rates } => {
            let opts = ferry_engine::VerifyOptions { transfers, all_bytes, sample, extras: !no_extra, max_memory };
            verify::run(&common, opts, &rates.run()).await
        }
        Command::Export { src, to, layout, check, container, azure_type, storage_account, prefix, common, transfer, rates } => {
            let layout = export::layout(layout, container, azure_type, storage_account, prefix);
            export::run(src.as_deref(), to, layout, check, &common, &transfer, &rates.run()).await
        }
        Command::Ingest { dst, from, expect_digest, dry_run, common, transfer, rates } => {
            ingest::run(dst.as_deref(), from, expect_digest, dry_run, &common, &transfer, &rates.run()).await
        }
        Command::Status { common } => status::run(&common).await,
        Command::Clean { dst, job, dst_endpoint, dst_profile, older_than, abort, dry_run, json } => match (dst, job) {
            (Some(dst), _) => {
                clean::sweep(&dst, Connect { endpoint: dst_endpoint, profile: dst_profile, ..Connect::default() }, older_than, abort, json)
                    .await
            }
            (None, Some(job)) => {
                clean::run(
                    &Common {
                        job,
                        src_endpoint: None,
                        dst_endpoint,
                        src_profile: None,
                        dst_profile: dst_profile.clone(),
                        follow_symlinks: false,
                        all_versions: false,
                        local_metadata: None,
                        json,
                    },
                    dry_run,
                )
                .await
            }
            (None, None) => unreachable!("clap requires DST or --job"),
        },
        Command::Manifest { command: ManifestCommand::Export { common, format, output } } => {
            manifest::export(&common, format, output.as_deref()).await
        }
    }
}

/// Parses a URL or a path; relative paths are taken from the working directory.
pub(crate) fn location(text: &str) -> Result<Location, EngineError> {
    if !text.contains("://") && !text.starts_with('/') {
        let cwd = std::env::current_dir().map_err(|source| EngineError::Io { path: ".".into(), source })?;
        return Ok(Location::parse(&cwd.join(text).to_string_lossy())?);
    }
    Ok(Location::parse(text)?)
}

/// Whether `src` names a database.
pub(crate) fn is_database(src: &str) -> bool {
    src.starts_with("postgres://") || src.starts_with("postgresql://")
}

/// Opens the job in `--job` for a `postgres://` source: its source is the job's spool, which
/// the tables are exported into.
fn open_table_job(common: &Common, url: &str, dst: Option<&str>, args: &crate::args::TableArgs) -> Result<Job, EngineError> {
    let parsed = ferry_engine::tables::PgUrl::parse(url)?;
    if args.tables.is_empty() && args.schemas.is_empty() {
        return Err(EngineError::TablesRefused { refusals: Vec::new() });
    }
    let spec = ferry_engine::tables::TablesSpec {
        url: parsed.to_string(),
        tables: args.tables.clone(),
        schemas: args.schemas.clone(),
        casts: args.casts.clone(),
        incremental_by: args.incremental_by.clone(),
        rows_per_file: args.rows_per_file,
        compression: args.compression.into(),
        row_group_bytes: args.row_group_size,
    };
    let spool = ferry_engine::tables::spool(&common.job);
    let mut job = open_job(common, Some(&spool.to_string_lossy()), dst)?;
    job.set_tables(spec)?;
    Ok(job)
}

/// Opens the job in `--job`, checking given locations against it.
fn open_job(common: &Common, src: Option<&str>, dst: Option<&str>) -> Result<Job, EngineError> {
    let src = src.map(location).transpose()?;
    let dst = dst.map(location).transpose()?;
    let access = Access {
        source: Connect {
            endpoint: common.src_endpoint.clone(),
            profile: common.src_profile.clone(),
            follow_symlinks: common.follow_symlinks,
            all_versions: common.all_versions,
            ..Connect::default()
        },
        destination: Connect { endpoint: common.dst_endpoint.clone(), profile: common.dst_profile.clone(), ..Connect::default() },
    };
    let mut job = Job::open(&common.job, src, dst, access)?;
    job.settle_local_metadata(common.local_metadata.map(Into::into))?;
    Ok(job)
}

/// A device (`--to` of an export, `--from` of an ingest) as the side a new job records; an
/// existing job keeps its own (the device may be mounted elsewhere on each run).
fn device_side(common: &Common, device: Option<&std::path::PathBuf>) -> Option<String> {
    device.filter(|_| !common.job.join("job.toml").exists()).map(|d| d.to_string_lossy().into_owned())
}

fn print_json(value: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(value).expect("output serializes"));
}

/// The end of a run's text output: its failures (the first 20) and where its report is.
fn print_failures_and_report(failures: &[ferry_engine::copy::Failure], report: Option<&std::path::Path>) {
    for f in failures.iter().take(20) {
        println!("  failed: {}: {}", f.key, f.error);
    }
    if failures.len() > 20 {
        println!("  … and {} more (see the report)", failures.len() - 20);
    }
    if let Some(report) = report {
        println!("report: {}", report.display());
    }
}

/// The entries the listing met and ferry does not copy: counts by reason, then the first 20 of
/// those that are data the destination lacks.
fn print_skipped(skipped: &ferry_engine::Skipped) {
    if skipped.total == 0 {
        return;
    }
    println!("not copied (skipped by the listing): {}", skipped.counts_text());
    let lost: Vec<_> = skipped.entries.iter().filter(|e| e.reason.is_loss()).collect();
    for e in lost.iter().take(20) {
        println!("  skipped: {}: {}", e.key, e.reason.advice());
    }
    if skipped.lost > 20 {
        println!("  … and {} more (`ferry manifest export` lists them all, column skipped)", skipped.lost - 20);
    }
}

/// Locked objects the text report names (`--json` names more).
const LOCKED_SHOWN: usize = 20;

/// The objects under S3 object lock a plan counted, and the first of them by name (`plan`,
/// and `copy` when it planned).
fn print_locked(locked: u64, named: &[ferry_engine::Locked]) {
    if locked == 0 {
        return;
    }
    println!("  {locked} objects are under object lock (legal hold or retention): ferry copies their bytes, never their lock");
    for o in named.iter().take(LOCKED_SHOWN) {
        println!("    {}: {}", o.key, o.lock);
    }
    if locked > LOCKED_SHOWN as u64 {
        println!("    … and {} more (--json names up to {})", locked - LOCKED_SHOWN as u64, ferry_engine::plan::LOCKED_NAMED);
    }
}

/// A run stopped early by a fatal error: said on stderr, exit 2.
fn stopped_early(reason: Option<&String>) -> Option<Exit> {
    let reason = reason?;
    eprintln!("ferry: error: stopped early: {reason}");
    Some(Exit::Usage)
}

/// How far behind the destination is, in one line (`None` when it is not behind).
fn lag_line(lag: &ferry_journal::Lag) -> Option<String> {
    if lag.objects == 0 && lag.deletes == 0 {
        return None;
    }
    let oldest = match lag.oldest_age_seconds {
        Some(age) => format!(", the oldest changed {} ago", age_text(age)),
        None => String::new(),
    };
    Some(format!(
        "behind the source: {} objects ({}) to copy{oldest} [under 1 min {}, 1-15 min {}, 15-60 min {}, over 1 h {}{}], {} deletes to carry out",
        lag.objects,
        ferry_core::size::format_size(lag.bytes),
        lag.under_1m,
        lag.from_1m_to_15m,
        lag.from_15m_to_1h,
        lag.over_1h,
        if lag.age_unknown > 0 { format!(", age unknown {}", lag.age_unknown) } else { String::new() },
        lag.deletes
    ))
}

/// An age in seconds the way people say it: `45s`, `12m 5s`, `3h 20m`, `2d 4h`.
fn age_text(seconds: u64) -> String {
    let (d, h, m, s) = (seconds / 86_400, seconds / 3600 % 24, seconds / 60 % 60, seconds % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}
