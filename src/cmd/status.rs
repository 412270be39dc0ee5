//! `ferry status --job DIR`

use super::{open_job, print_json};
use crate::Exit;
use crate::args::Common;
use ferry_core::size::format_size;
use ferry_engine::EngineError;
use ferry_journal::{JournalKind, ObjectState};

pub async fn run(common: &Common) -> Result<Exit, EngineError> {
    let job = open_job(common, None, None)?;
    let generation = job.latest_generation().ok_or_else(|| EngineError::NotPlanned { dir: job.dir.clone() })?;
    let journal = job.journal(JournalKind::Main).await?;
    let counts = journal.counts().await?;
    let lag = journal.lag(chrono::Utc::now()).await?;
    let failed = journal.in_state(ObjectState::Failed, 0, 100).await?;
    let uploads = journal.open_uploads().await?;
    let orphans = journal.possible_orphans().await?;
    let skipped_by_reason = journal.skipped_by_reason().await?;
    // An ingest job: which export and manifest generation its data came from.
    let shipment: Option<serde_json::Value> = journal.meta("shipment").await?.and_then(|t| serde_json::from_str(&t).ok());
    // A disk export keeps its own journal.
    let export = match job.has_journal(JournalKind::Export) {
        true => {
            let j = job.journal(JournalKind::Export).await?;
            let devices: Vec<String> = j.meta("devices").await?.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
            Some((j.counts().await?, devices))
        }
        false => None,
    };
    if common.json {
        let failed: Vec<_> =
            failed.iter().map(|r| serde_json::json!({"key": r.entry.key, "error": r.error, "attempts": r.attempts})).collect();
        print_json(&serde_json::json!({
            "source": job.source.to_string(),
            "destination": job.destination.to_string(),
            "generation": generation,
            "counts": counts,
            "lag": lag,
            "skipped_by_reason": skipped_by_reason,
            "remaining_bytes": counts.bytes - counts.done_bytes,
            "possibly_orphaned_uploads": orphans,
            "open_uploads": uploads.iter().map(|u| serde_json::json!({"key": u.key, "upload_id": u.upload_id, "parts": u.parts, "bytes": u.bytes})).collect::<Vec<_>>(),
            "failed": failed,
            "shipment": shipment,
            "export": export.as_ref().map(|(counts, devices)| serde_json::json!({"counts": counts, "devices": devices})),
        }));
    } else {
        println!("job {}: {} → {} (generation {generation})", job.dir.display(), job.source, job.destination);
        println!(
            "  done {} of {} objects ({} of {}), pending {}, failed {}",
            counts.done,
            counts.objects,
            format_size(counts.done_bytes),
            format_size(counts.bytes),
            counts.pending,
            counts.failed
        );
        if counts.restores_requested > 0 {
            println!(
                "  restores of archived objects: {} requested, {} in flight (`ferry copy` again copies those restored since)",
                counts.restores_requested, counts.restoring
            );
        }
        if counts.pending_delete > 0 || counts.deleted > 0 {
            println!("  gone from the source: {} deleted at the destination, {} still there", counts.deleted, counts.pending_delete);
        }
        if let Some(line) = super::lag_line(&lag) {
            println!("  {line}");
        }
        if counts.skipped > 0 {
            let text: Vec<String> = skipped_by_reason.iter().map(|(r, n)| format!("{n} {r}")).collect();
            println!("  not copied (skipped by the listing): {}", text.join(", "));
        }
        if let Some((c, devices)) = &export {
            println!(
                "  export to disks: written {} of {} objects ({} of {}) on {} device(s), pending {}, failed {}, refused {}",
                c.done,
                c.objects,
                format_size(c.done_bytes),
                format_size(c.bytes),
                devices.len(),
                c.pending,
                c.failed,
                c.refused
            );
        }
        if let Some(s) = &shipment {
            println!(
                "  shipped on disks: export {} of {} (manifest generation {}, {} device(s))",
                s["export_id"].as_str().unwrap_or_default(),
                s["source"].as_str().unwrap_or_default(),
                s["generation"],
                s["devices"]
            );
        }
        if !uploads.is_empty() {
            let held: u64 = uploads.iter().map(|u| u.bytes).sum();
            println!(
                "  open uploads: {} holding {} (resumed by the next copy; `ferry clean` aborts them)",
                uploads.len(),
                format_size(held)
            );
        }
        if orphans > 0 {
            println!(
                "  {orphans} upload(s) cut off while being created may be open at the destination, which cannot list them: \
                 a lifecycle rule aborting incomplete multipart uploads removes them"
            );
        }
        for r in &failed {
            println!("  failed: {}: {}", r.entry.key, r.error.as_deref().unwrap_or(""));
        }
    }
    Ok(Exit::Ok)
}
