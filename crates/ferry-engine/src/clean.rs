//! Cleaning up: abort the multipart uploads a job started and no longer needs.
//!
//! Abandoned uploads are billed by most providers until aborted. A copy aborts the upload of an
//! object that failed for good; uploads of objects still pending are kept so the next `copy`
//! resumes them. `ferry clean` aborts those too, when the user gives up on resuming.

use crate::{Job, Result};
use ferry_journal::JournalKind;
use ferry_providers::Provider;
use serde::Serialize;
use std::sync::Arc;

#[derive(Debug, Clone, Serialize)]
pub struct AbortedUpload {
    pub key: String,
    pub upload_id: String,
    /// What the journal knows the upload holds (job cleanup only).
    pub parts: Option<u64>,
    pub bytes: Option<u64>,
    /// When the destination says it was started (destination sweep only).
    pub initiated: Option<chrono::DateTime<chrono::Utc>>,
    /// Why it could not be aborted, if it could not.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CleanSummary {
    pub dry_run: bool,
    pub uploads: Vec<AbortedUpload>,
}

/// Aborts every upload the job's journal has open (or only lists them with `dry_run`).
pub async fn clean(job: &mut Job, dst: Arc<dyn Provider>, dry_run: bool) -> Result<CleanSummary> {
    job.lock()?;
    let journal = job.journal(JournalKind::Main).await?;
    let open = journal.open_uploads().await?;
    let mut uploads = Vec::with_capacity(open.len());
    for u in open {
        let mut error = None;
        if !dry_run {
            match dst.multipart().map(|mp| mp.abort_upload(&u.key, &u.upload_id)) {
                Some(abort) => match abort.await {
                    Ok(()) => journal.clear_upload(u.id).await?,
                    Err(e) => error = Some(e.to_string()),
                },
                None => journal.clear_upload(u.id).await?,
            }
        }
        uploads.push(AbortedUpload {
            key: u.key,
            upload_id: u.upload_id,
            parts: Some(u.parts),
            bytes: Some(u.bytes),
            initiated: None,
            error,
        });
    }
    Ok(CleanSummary { dry_run, uploads })
}

/// Lists the uploads open under `dst` that were started before `before`, whoever started them,
/// and aborts them unless `dry_run` — a listing page at a time, so what is held is the uploads
/// found, never the listing.
pub async fn sweep(dst: Arc<dyn Provider>, before: chrono::DateTime<chrono::Utc>, dry_run: bool) -> Result<CleanSummary> {
    use futures::StreamExt;
    let mp = dst.multipart().ok_or_else(|| crate::EngineError::Provider {
        side: "destination",
        source: ferry_providers::ProviderError::Config { provider: dst.name(), detail: "no multipart uploads to clean".into() },
    })?;
    let mut uploads = Vec::new();
    let mut pages = mp.stale_upload_pages(before);
    while let Some(page) = pages.next().await {
        for u in page.map_err(|source| crate::EngineError::Provider { side: "destination", source })? {
            let error = if dry_run { None } else { mp.abort_upload(&u.key, &u.upload_id).await.err().map(|e| e.to_string()) };
            uploads.push(AbortedUpload { key: u.key, upload_id: u.upload_id, parts: None, bytes: None, initiated: u.initiated, error });
        }
    }
    Ok(CleanSummary { dry_run, uploads })
}
