//! `ferry export [SRC] --job DIR --to DEVICE… --layout L [--check]`

use super::{device_side, open_job, print_json};
use crate::Exit;
use crate::args::{AzureTypeArg, Common, LayoutArg, Transfer};
use crate::progress::Progress;
use ferry_core::layout::{AzureType, Layout, LayoutKind};
use ferry_core::size::format_size;
use ferry_engine::{EngineError, ExportOptions, Stats};
use std::path::PathBuf;
use std::sync::Arc;

pub fn layout(
    kind: LayoutArg,
    container: Option<String>,
    azure_type: AzureTypeArg,
    account: Option<String>,
    prefix: Option<String>,
) -> Layout {
    let kind = match kind {
        LayoutArg::Plain => LayoutKind::Plain,
        LayoutArg::Databox => LayoutKind::Databox,
        LayoutArg::DataboxDisk => LayoutKind::DataboxDisk,
        LayoutArg::Snowball => LayoutKind::Snowball,
        LayoutArg::TransferAppliance => LayoutKind::TransferAppliance,
    };
    let azure_type = match azure_type {
        AzureTypeArg::BlockBlob => AzureType::BlockBlob,
        AzureTypeArg::PageBlob => AzureType::PageBlob,
        AzureTypeArg::AzureFile => AzureType::AzureFile,
    };
    Layout { kind, container, azure_type, account, prefix }
}

pub async fn run(
    src: Option<&str>,
    to: Vec<PathBuf>,
    layout: Layout,
    check: bool,
    common: &Common,
    transfer: &Transfer,
    run: &std::sync::Arc<ferry_providers::RunContext>,
) -> Result<Exit, EngineError> {
    // A new job records the first device as its destination.
    let mut job = open_job(common, src, device_side(common, to.first()).as_deref())?;
    let source = job.source_provider(run).await?;
    let stats = Arc::new(Stats::default());
    let progress = Progress::transfer("export", stats.clone(), common.json || check);
    let opts = ExportOptions { layout, devices: to, check, copy: transfer.options() };
    let summary = ferry_engine::export(&mut job, source, opts, stats, run).await;
    progress.finish();
    let summary = summary?;
    if common.json {
        print_json(&summary);
    } else {
        println!(
            "{}manifest generation {}, layout {}: {} objects ({}); {} renamed, {} refused",
            if summary.check { "check: " } else { "" },
            summary.generation,
            summary.layout,
            summary.objects_total,
            format_size(summary.bytes_total),
            summary.renamed,
            summary.refused
        );
        for f in &summary.findings {
            println!("  {f}");
        }
        let more = (summary.renamed + summary.refused).saturating_sub(summary.findings.len() as u64);
        if let Some(file) = summary.findings_file.as_ref().filter(|_| more > 0) {
            println!("  … and {more} more renamed or refused: every one is listed in {}", file.display());
        }
        for d in &summary.devices {
            let verb = if summary.check { "would take" } else { "holds" };
            let (n, bytes) = if summary.check { (d.pending, d.pending_bytes) } else { (d.done, d.done_bytes) };
            println!(
                "device {} {}: {verb} {n} objects ({}) of {} free{}",
                d.device,
                d.path.display(),
                format_size(bytes),
                format_size(d.free),
                if d.full { "; filled up" } else { "" }
            );
            if !summary.check && d.pending > 0 {
                println!("  {} objects ({}) still to write", d.pending, format_size(d.pending_bytes));
            }
            if let (Some(path), Some(digest)) = (&d.shipment, &d.shipment_sha256) {
                println!("  shipment manifest {} sha256 {digest}", path.display());
            }
        }
        if summary.unplaced > 0 {
            println!(
                "{} objects ({}) do not fit on the devices given: export again with more --to devices",
                summary.unplaced,
                format_size(summary.unplaced_bytes)
            );
        }
        if !summary.check {
            println!(
                "wrote {} objects ({}) in {:.1}s; {} already done; {} failed",
                summary.copied,
                format_size(summary.bytes_copied),
                summary.seconds,
                summary.already_done,
                summary.failed
            );
        }
        super::copy::print_fidelity(&summary.fidelity);
        super::print_failures_and_report(&summary.failures, summary.report.as_deref());
    }
    if let Some(exit) = super::stopped_early(summary.stopped_by.as_ref()) {
        return Ok(exit);
    }
    let clean = summary.failed == 0 && summary.refused == 0 && summary.unplaced == 0;
    Ok(if clean { Exit::Ok } else { Exit::Failures })
}
