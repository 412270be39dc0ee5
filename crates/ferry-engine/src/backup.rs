//! `--backup-to URL`: before ferry overwrites or deletes an object at the destination, it keeps
//! what was there under `URL/job-ID/run-N/` with the same key (rclone's `--backup-dir`; a folder
//! per job, so two jobs backing up to one URL never overwrite each other's copies, and per run,
//! so two runs that replace the same key keep both), and the write ledger row says where and
//! what the kept copy was. A rollback checks the copy against that before putting it back.
//!
//! The copy is made by the service where the backup and the destination are one service reached
//! the same way (S3 CopyObject/UploadPartCopy, GCS rewrite); else its bytes pass through ferry,
//! part by part, each part's CRC32C sent with it. A backup that fails fails its object: nothing
//! is overwritten or deleted that could not be kept.

use crate::{EngineError, Result};
use ferry_core::{Location, ObjectEntry, PartPlan};
use ferry_providers::{Connect, PartReceipt, Provider, ProviderError, PutAttrs, RunContext, ServerCopied};
use std::sync::Arc;

/// The backup location of one run.
pub(crate) struct Backup {
    /// `URL/run-N/`: where this run keeps what it replaces.
    pub(crate) location: Location,
    provider: Arc<dyn Provider>,
    /// Whether the backup's service copies from the destination by itself.
    server_side: bool,
}

/// How to reach a backup location: the destination's way when it is the same service (one
/// endpoint and profile serve both), else the provider's standard environment.
pub(crate) fn connect_for(backup: &Location, destination: &Location, dst_connect: &Connect) -> Connect {
    match backup.scheme == destination.scheme {
        true => Connect { endpoint: dst_connect.endpoint.clone(), profile: dst_connect.profile.clone(), ..Connect::default() },
        false => Connect::default(),
    }
}

/// Opens `location` (a backup root, or one run's folder under it) for `run`, checked for writing.
pub(crate) async fn open(location: &Location, connect: &Connect, run: &Arc<RunContext>) -> Result<Arc<dyn Provider>> {
    let err = |source| EngineError::Provider { side: "backup", source };
    let provider = ferry_providers::open(location, connect, run).await.map_err(err)?;
    provider.check(true).await.map_err(err)?;
    Ok(provider)
}

impl Backup {
    /// The backup of run `run_id` under `root`, for a destination reached through `dst_connect`.
    pub(crate) async fn open(
        root: &Location,
        job_id: &str,
        run_id: ferry_journal::RunId,
        dst: &dyn Provider,
        dst_connect: &Connect,
        run: &Arc<RunContext>,
    ) -> Result<Backup> {
        let location = root.child(&format!("job-{job_id}")).child(&format!("run-{}", run_id.0));
        let connect = connect_for(root, dst.location(), dst_connect);
        let provider = open(&location, &connect, run).await?;
        let server_side = provider.server_copy().is_some_and(|c| c.copies_from(dst.location(), dst_connect));
        Ok(Backup { location, provider, server_side })
    }

    /// Keeps what `dst` holds under `key` now, under the same key here, and says what the kept
    /// copy is (one HEAD of it: its size must be the object's). `Ok(None)`: the key holds
    /// nothing (there is nothing to keep).
    pub(crate) async fn keep(&self, dst: &dyn Provider, key: &str) -> std::result::Result<Option<ferry_journal::Kept>, ProviderError> {
        let Some(held) = dst.head(key).await? else { return Ok(None) };
        copy(dst, &held, self.provider.as_ref(), self.server_side).await?;
        let kept = self.provider.head(key).await?.filter(|k| k.size == held.size);
        let Some(kept) = kept else { return Err(short_read(key, 0, held.size)) };
        Ok(Some(ferry_journal::Kept { location: self.location.to_string(), size: kept.size, etag: kept.etag }))
    }
}

/// Copies `object` (as `from` describes it now) to the same key at `to`: by the service when
/// `server_side`, else through ferry. Checked: the bytes that arrive are the object's size, and
/// every part's CRC32C is the destination's to check as it is sent.
pub(crate) async fn copy(
    from: &dyn Provider,
    object: &ObjectEntry,
    to: &dyn Provider,
    server_side: bool,
) -> std::result::Result<Option<String>, ProviderError> {
    if server_side && let Some(copier) = to.server_copy() {
        let plan = crate::mover::server_copy_plan(object.size, None, &to.limits()).map_err(|e| plan_error(&object.key, e))?;
        let started = |_: String| -> futures::future::BoxFuture<'static, ferry_providers::Result<()>> { Box::pin(async { Ok(()) }) };
        let ServerCopied { etag, .. } = copier.copy_from(from.location(), object, None, &plan, &started).await?;
        return Ok(etag);
    }
    let attrs = PutAttrs {
        content_type: object.content_type.clone(),
        metadata: object.metadata.clone(),
        mode: object.mode,
        headers: object.headers.clone(),
        tags: None,
        storage_class: None,
    };
    let read = |range: Option<std::ops::Range<u64>>| async move {
        let fetched = match (object.pinned, object.version.as_deref(), from.versions()) {
            (true, Some(v), Some(versions)) => versions.get_version(&object.key, v, range.clone()).await?,
            _ => from.get(&object.key, range.clone()).await?,
        };
        let want = range.map_or(object.size, |r| r.end - r.start);
        if fetched.data.len() as u64 != want {
            return Err(short_read(&object.key, fetched.data.len() as u64, want));
        }
        Ok(fetched.data)
    };
    let plan = PartPlan::fit(object.size, None, &to.limits(), 64 << 20).map_err(|e| plan_error(&object.key, e))?;
    match to.multipart() {
        Some(mp) if !plan.is_single() => {
            // An id of the kind ferry's own uploads have (a local disk takes no other).
            let id = uuid::Uuid::new_v4().simple().to_string();
            let mut upload = mp.start(&object.key, &attrs, object.size, &id).await?;
            let mut parts: Vec<PartReceipt> = Vec::new();
            for index in 0..plan.count() {
                let range = plan.range(index);
                let data = match read(Some(range.clone())).await {
                    Ok(d) => d,
                    Err(e) => {
                        let _ = upload.abort().await;
                        return Err(e);
                    }
                };
                let crc = ferry_core::crc32c(&data);
                match upload.put_part(index as u32, range.start, data, crc).await {
                    Ok(r) => parts.push(r),
                    Err(e) => {
                        let _ = upload.abort().await;
                        return Err(e);
                    }
                }
            }
            Ok(upload.complete(parts).await?.etag)
        }
        _ => {
            let data = read(None).await?;
            let crc = ferry_core::crc32c(&data);
            Ok(to.put(&object.key, data, crc, &attrs).await?.etag)
        }
    }
}

fn plan_error(key: &str, e: ferry_core::PlanError) -> ProviderError {
    ProviderError::Request {
        provider: "backup",
        op: "plan",
        key: key.to_string(),
        detail: e.to_string(),
        class: ferry_core::ErrorClass::PerObject,
        kind: ferry_core::FailureKind::NoPartPlan,
    }
}

fn short_read(key: &str, got: u64, want: u64) -> ProviderError {
    ProviderError::Request {
        provider: "backup",
        op: "get",
        key: key.to_string(),
        detail: format!("read {got} bytes, expected {want}"),
        class: ferry_core::ErrorClass::PerObject,
        kind: ferry_core::FailureKind::Other,
    }
}
