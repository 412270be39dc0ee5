//! `ferry ingest --from DEVICE… DST --job DIR`

use super::{device_side, open_job, print_json};
use crate::Exit;
use crate::args::{Common, Transfer};
use crate::progress::Progress;
use ferry_core::size::format_size;
use ferry_engine::{EngineError, IngestOptions, Stats};
use std::path::PathBuf;
use std::sync::Arc;

pub async fn run(
    dst: Option<&str>,
    from: Vec<PathBuf>,
    expect_digests: Vec<String>,
    dry_run: bool,
    common: &Common,
    transfer: &Transfer,
    run: &std::sync::Arc<ferry_providers::RunContext>,
) -> Result<Exit, EngineError> {
    // A new job records the first disk as its source.
    let mut job = open_job(common, device_side(common, from.first()).as_deref(), dst)?;
    let destination = job.destination_provider(run).await?;
    let stats = Arc::new(Stats::default());
    let progress = Progress::transfer("ingest", stats.clone(), common.json);
    let expect_digests_given = expect_digests.len();
    let opts = IngestOptions { devices: from, expect_digests, copy: ferry_engine::CopyOptions { dry_run, ..transfer.options() } };
    let summary = ferry_engine::ingest(&mut job, destination, opts, stats, run).await;
    progress.finish();
    let summary = summary?;
    if expect_digests_given == 0 {
        // Without the digests printed at export, a shipment proves only itself: what its lines
        // say (bytes, types, metadata, headers) is what was written.
        eprintln!(
            "ferry: warning: no --expect-digest: nothing proved these shipment manifests are the ones the export wrote (give the digests it printed)"
        );
    }
    if common.json {
        print_json(&summary);
    } else {
        let p = &summary.provenance;
        println!("shipment of {} (manifest generation {}, export {})", p.source, p.generation, p.export_id);
        for s in &p.shipments {
            println!(
                "  device {} of {} at {}: {} files ({}), shipment sha256 {}",
                s.device,
                p.devices,
                s.path.display(),
                s.files,
                format_size(s.bytes),
                s.sha256
            );
        }
        for d in &summary.devices_missing {
            println!("  device {d} of {} not given: its files are not ingested", p.devices);
        }
        if summary.dry_run {
            println!(
                "dry run: would upload {} objects ({}); {} already done of {}",
                summary.objects_total - summary.already_done,
                format_size(summary.pending_bytes),
                summary.already_done,
                summary.objects_total
            );
        } else {
            println!(
                "uploaded {} objects ({}) in {:.1}s; {} already done of {}",
                summary.copied,
                format_size(summary.bytes_copied),
                summary.seconds,
                summary.already_done,
                summary.objects_total
            );
        }
        for f in &summary.missing {
            println!("  missing: {}: {}", f.key, f.error);
        }
        for f in &summary.altered {
            println!("  altered: {}: {}", f.key, f.error);
        }
        for e in &summary.extra {
            println!("  extra: {e} (not in the shipment manifest; not uploaded)");
        }
        super::copy::print_fidelity(&summary.fidelity);
        super::print_failures_and_report(&summary.failures, summary.report.as_deref());
    }
    if let Some(exit) = super::stopped_early(summary.stopped_by.as_ref()) {
        return Ok(exit);
    }
    Ok(if summary.has_differences() {
        Exit::Differences
    } else if summary.failed > 0 || summary.fidelity.lost_user_data() {
        Exit::Failures
    } else {
        Exit::Ok
    })
}
