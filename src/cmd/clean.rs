//! `ferry clean --job DIR [--dry-run]`

use super::{open_job, print_json};
use crate::Exit;
use crate::args::Common;
use ferry_core::size::format_size;
use ferry_engine::EngineError;

pub async fn run(common: &Common, dry_run: bool) -> Result<Exit, EngineError> {
    let mut job = open_job(common, None, None)?;
    let destination = job.destination_provider(&ferry_providers::RunContext::unlimited()).await?;
    let summary = ferry_engine::clean(&mut job, destination, dry_run).await?;
    Ok(render(&summary, common.json))
}

/// `ferry clean DST --older-than AGE [--abort]`: any uploads under DST, not only a job's.
pub async fn sweep(
    dst: &str,
    connect: ferry_providers::Connect,
    older_than: std::time::Duration,
    abort: bool,
    json: bool,
) -> Result<Exit, EngineError> {
    let location = super::location(dst)?;
    let provider = ferry_providers::open(&location, &connect, &ferry_providers::RunContext::unlimited())
        .await
        .map_err(|source| EngineError::Provider { side: "destination", source })?;
    provider.check(true).await.map_err(|source| EngineError::Provider { side: "destination", source })?;
    // An age beyond the calendar means every upload (the parser bounds it; this never panics).
    let before = chrono::Duration::from_std(older_than)
        .ok()
        .and_then(|age| chrono::Utc::now().checked_sub_signed(age))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
    let summary = ferry_engine::sweep(provider, before, !abort).await?;
    Ok(render(&summary, json))
}

fn render(summary: &ferry_engine::CleanSummary, json: bool) -> Exit {
    if json {
        print_json(summary);
    } else {
        let verb = if summary.dry_run { "to abort" } else { "aborted" };
        for u in &summary.uploads {
            let held = match (u.parts, u.bytes) {
                (Some(p), Some(b)) => format!(", {p} parts, {}", format_size(b)),
                _ => u.initiated.map(|t| format!(", started {}", t.to_rfc3339())).unwrap_or_default(),
            };
            match &u.error {
                None => println!("{verb}: {} (upload {}{held})", u.key, u.upload_id),
                Some(e) => println!("could not abort: {} (upload {}): {e}", u.key, u.upload_id),
            }
        }
        println!("{} upload(s) {verb}", summary.uploads.iter().filter(|u| u.error.is_none()).count());
    }
    if summary.uploads.iter().any(|u| u.error.is_some()) { Exit::Failures } else { Exit::Ok }
}
