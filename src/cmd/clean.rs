//! `ferry clean --job DIR [--dry-run]`

use super::{open_job, print_json};
use crate::Exit;
use crate::args::Common;
use ferry_core::size::format_size;
use ferry_engine::EngineError;

pub async fn run(common: &Common, dry_run: bool) -> Result<Exit, EngineError> {
    let mut job = open_job(common, None, None)?;
    let destination = job.destination_provider().await?;
    let summary = ferry_engine::clean(&mut job, destination, dry_run).await?;
    if common.json {
        print_json(&summary);
    } else {
        let verb = if dry_run { "to abort" } else { "aborted" };
        for u in &summary.uploads {
            match &u.error {
                None => println!("{verb}: {} (upload {}, {} parts, {})", u.key, u.upload_id, u.parts, format_size(u.bytes)),
                Some(e) => println!("could not abort: {} (upload {}): {e}", u.key, u.upload_id),
            }
        }
        println!("{} upload(s) {verb}", summary.uploads.iter().filter(|u| u.error.is_none()).count());
    }
    Ok(if summary.uploads.iter().any(|u| u.error.is_some()) { Exit::Failures } else { Exit::Ok })
}
