//! The mover: one object at a time, from source to destination. A small object is one GET and
//! one put; a large one is a HEAD, then ranged GETs feeding a multipart upload — resumed from the
//! journal when one is open — with every part's CRC32C sent as its checksum header and the
//! object's SHA-256 hashed in part order on the same buffers.
//!
//! Memory is bounded by one byte budget shared by every part in flight: a part acquires its
//! size from the budget before it is read and gives it back when the destination acknowledged it.

use crate::Stats;
use crate::options::{Archived, CopyOptions, Failure};
use crate::scheduler::Shared;
use ferry_core::headers::Attrs;
use ferry_core::{ArchiveState, Checksums, ErrorClass, Evidence, FailureKind, NotCarried, ObjectDigest, ObjectEntry, PartPlan, crc32c};
use ferry_journal::{Intent, Journal, ObjectRow, Outcome, PartRow, Prior, RunId, Seen, WriteOp, Wrote};
use ferry_providers::{Multipart, MultipartUpload, PartReceipt, Provider, ProviderError, PutAttrs, ServerCopied, ServerCopy};
use futures::stream::{FuturesUnordered, StreamExt};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How a memory budget is counted: KiB units keep permit counts within `u32`. Clones share
/// one budget.
#[derive(Clone)]
pub(crate) struct Budget {
    sem: Arc<Semaphore>,
    total_kib: u32,
    bytes: u64,
}

impl Budget {
    pub(crate) fn new(bytes: u64) -> Budget {
        let total_kib = bytes.div_ceil(1024).clamp(1, u32::MAX as u64 / 2) as u32;
        Budget { sem: Arc::new(Semaphore::new(total_kib as usize)), total_kib, bytes }
    }

    /// The budget in bytes, as given.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Waits until `bytes` of the budget are free and holds them. A request larger than the
    /// whole budget is refused, never clamped: part plans are made to fit
    /// ([`PartPlan::fit`]), so one would be a bug that breaks the cap.
    pub(crate) async fn take(&self, bytes: u64) -> Result<OwnedSemaphorePermit, ObjectError> {
        let kib = bytes.div_ceil(1024).max(1);
        if kib > self.total_kib as u64 {
            let message = format!("{bytes} bytes asked of a memory budget of {} (--max-memory)", self.bytes);
            return Err(ObjectError::new(ErrorClass::Fatal, FailureKind::Config, message));
        }
        Ok(self.sem.clone().acquire_many_owned(kib as u32).await.expect("budget semaphore is never closed"))
    }
}

pub(crate) struct Mover {
    pub(crate) src: Arc<dyn Provider>,
    pub(crate) dst: Arc<dyn Provider>,
    pub(crate) journal: Arc<dyn Journal>,
    pub(crate) opts: CopyOptions,
    /// The destination's service copies objects from the source itself.
    pub(crate) server_side: bool,
    /// The run whose writes the journal's destination write ledger records.
    pub(crate) run_id: RunId,
    pub(crate) budget: Budget,
    pub(crate) stats: Arc<Stats>,
    /// The run's counts (an object read or sent again is a retry like a request's).
    pub(crate) run: Arc<ferry_providers::RunContext>,
    /// Objects restarted because their source changed, with why.
    pub(crate) restarted: Mutex<Vec<Failure>>,
    /// Objects proved by each kind of evidence.
    pub(crate) verified_by: Mutex<BTreeMap<Evidence, u64>>,
    /// What the destination did not keep of the objects' attributes.
    pub(crate) fidelity: crate::fidelity::Collect,
    /// The destination as one listing at the start of the run found it, when it was small
    /// enough to hold: the ledger's prior states come from it instead of a HEAD per object.
    pub(crate) held: Option<crate::held::Held>,
    /// `--backup-to`: where what each write replaces is kept first.
    pub(crate) backup: Option<Arc<crate::backup::Backup>>,
}

/// How often one object may be restarted in a run because its source keeps changing.
const MAX_RESTARTS: u32 = 2;

/// An object-level failure with its class (what to do) and kind (what it was).
#[derive(Debug)]
pub(crate) struct ObjectError {
    pub(crate) class: ErrorClass,
    pub(crate) kind: FailureKind,
    pub(crate) message: String,
    /// The source's current object, when the failure is that it changed since the manifest.
    /// `None` with kind `SourceChanged`: a read found the source changed under it
    /// ([`ProviderError::Changed`]), and what it is now is not known yet.
    changed: Option<Box<ObjectEntry>>,
    /// The destination's file system is full (a disk export moves on to another device).
    pub(crate) full: bool,
}

impl ObjectError {
    fn new(class: ErrorClass, kind: FailureKind, message: String) -> Self {
        ObjectError { class, kind, message, changed: None, full: false }
    }
}

impl From<ProviderError> for ObjectError {
    fn from(e: ProviderError) -> Self {
        ObjectError { full: e.is_full(), ..ObjectError::new(e.class(), e.kind(), e.to_string()) }
    }
}

impl From<ferry_journal::JournalError> for ObjectError {
    fn from(e: ferry_journal::JournalError) -> Self {
        ObjectError::new(ErrorClass::Fatal, FailureKind::Journal, e.to_string())
    }
}

impl Mover {
    /// A mover from `src` to `dst`, sharing the run's journal, memory budget and counters with
    /// the run's other movers (a disk export or ingest has one per device). Bytes pass through
    /// ferry unless `server_side` is set afterwards.
    pub(crate) fn new(src: Arc<dyn Provider>, dst: Arc<dyn Provider>, shared: &Shared, opts: &CopyOptions) -> Mover {
        Mover {
            run: shared.run.clone(),
            journal: shared.journal.clone(),
            opts: opts.clone(),
            server_side: false,
            run_id: shared.run_id,
            budget: shared.budget.clone(),
            stats: shared.stats.clone(),
            restarted: Mutex::default(),
            verified_by: Mutex::default(),
            fidelity: crate::fidelity::Collect::new(crate::Fidelity::for_pair(&dst.carries(), opts.tags)),
            held: None,
            backup: None,
            src,
            dst,
        }
    }

    /// Adds what proved each object this mover copied to `into`, and forgets it.
    pub(crate) fn take_verified(&self, into: &mut BTreeMap<Evidence, u64>) {
        for (how, n) in std::mem::take(&mut *self.verified_by.lock().expect("verified lock")) {
            *into.entry(how).or_default() += n;
        }
    }

    /// Copies the object; returns the size of the version copied (the source's current one when
    /// it changed since the manifest and the object was restarted).
    pub(crate) async fn copy_with_retries(&self, row: &ObjectRow) -> Result<u64, ObjectError> {
        let mut row = row.clone();
        let mut attempt = 0;
        let mut restarts = 0;
        // Whether a read refused as archived was looked at (once) for a restore.
        let mut looked = false;
        loop {
            attempt += 1;
            // Bytes this attempt sent, so a retry does not count them twice.
            let sent = AtomicU64::new(0);
            let copied = match self.copy_object(&row, &sent).await {
                Err(e) if e.kind == FailureKind::SourceChanged && e.changed.is_none() => Err(self.changed_now(&row, e).await),
                other => other,
            };
            match copied {
                Ok((outcome, memory)) => {
                    self.journal.mark_done(row.id, &outcome).await?;
                    // A single put's memory is given back once the object is journaled done:
                    // a crash can make ferry send again only what holds memory.
                    drop(memory);
                    *self.verified_by.lock().expect("verified lock").entry(outcome.verified_by).or_default() += 1;
                    Stats::add(&self.stats.objects_done, 1);
                    return Ok(row.entry.size);
                }
                // The source changed since the manifest: never stitch two versions together.
                // Drop whatever was uploaded and copy the current version from the start.
                Err(ObjectError { changed: Some(current), message, .. }) if restarts < MAX_RESTARTS => {
                    restarts += 1;
                    self.stats.bytes_done.fetch_sub(sent.load(Ordering::Relaxed), Ordering::Relaxed);
                    self.abandon(&row).await;
                    // The version copied from now on is proved by the checksums the source
                    // declares for it, like any other copy (never by its size alone).
                    let current = self.with_declared_checksums(&row, *current).await;
                    let current = ObjectEntry { key: row.entry.key.clone(), ..current };
                    let note = format!("restarted: {message}");
                    self.journal.restart_object(row.id, &current, &note).await?;
                    let restarted = Failure { key: row.entry.key.clone(), kind: FailureKind::SourceChanged, error: note };
                    self.restarted.lock().expect("restarted lock").push(restarted);
                    row.entry =
                        ObjectEntry { content_type: row.entry.content_type.clone(), metadata: row.entry.metadata.clone(), ..current };
                }
                // Only what sending one request again cannot fix starts the object over: bytes
                // that failed a checksum, a body cut short. A transient failure (throttled, 5xx,
                // a timeout) was already retried by the providers' one request-retry layer;
                // restarting the object would multiply its sends (see `ferry_providers::retries`).
                Err(e) if e.class == ErrorClass::Restart && attempt < self.opts.attempts => {
                    self.run.retries().record(ferry_providers::retries::Cause::of(e.kind));
                    self.stats.bytes_done.fetch_sub(sent.load(Ordering::Relaxed), Ordering::Relaxed);
                    let backoff = 200u64 << attempt.min(6);
                    tokio::time::sleep(Duration::from_millis(backoff / 2 + rand::random_range(0..=backoff / 2))).await;
                }
                // Archived since the plan listed it readable, or by a source whose listing does
                // not say (Azure): with `--archived restore`, what a HEAD says now decides, as for
                // an object listed archived (restored and copied, or left restoring).
                Err(e)
                    if e.kind == FailureKind::Archived
                        && !looked
                        && matches!(self.opts.archived, Archived::Restore(_))
                        && !row.entry.storage_class.as_ref().is_some_and(|c| c.needs_restore()) =>
                {
                    looked = true;
                    if let Err(e) = self.ready_to_read(&row).await {
                        self.abandon(&row).await;
                        self.journal.mark_failed(row.id, &e.message).await?;
                        Stats::add(&self.stats.objects_failed, 1);
                        return Err(e);
                    }
                }
                Err(e) => {
                    self.abandon(&row).await;
                    self.journal.mark_failed(row.id, &e.message).await?;
                    Stats::add(&self.stats.objects_failed, 1);
                    return Err(e);
                }
            }
        }
    }

    /// `current` (the source's version found changed) with the checksums the source declares
    /// for it: the read that found the change may carry none (a ranged read, a service whose
    /// reads do not declare them), and then a HEAD of that same version gives them.
    async fn with_declared_checksums(&self, row: &ObjectRow, current: ObjectEntry) -> ObjectEntry {
        let c = &current.checksums;
        if c.crc32c.is_some() || c.crc64nvme.is_some() || c.md5.is_some() {
            return current;
        }
        let agree = |a: &Option<String>, b: &Option<String>| a.is_none() || b.is_none() || a == b;
        match self.src_head(row).await {
            Ok(Some(head)) if head.size == current.size && agree(&head.version, &current.version) && agree(&head.etag, &current.etag) => {
                ObjectEntry { checksums: head.checksums, ..current }
            }
            // Another version already, or no answer: the next attempt's own read decides.
            _ => current,
        }
    }

    /// A HEAD of what `row` copies at the source: its key's current version, or the one version
    /// it is pinned to (`--all-versions`), which stays pinned (an MD5 ETag check then asks that
    /// version too).
    async fn src_head(&self, row: &ObjectRow) -> ferry_providers::Result<Option<ObjectEntry>> {
        match row.entry.id().version {
            None => self.src.head(row.src_key()).await,
            Some(version) => {
                let head = self.src_versions(row)?.head_version(row.src_key(), version).await?;
                Ok(head.map(|h| ObjectEntry { pinned: true, ..h }))
            }
        }
    }

    /// A read of what `row` copies at the source (see [`Mover::src_head`]).
    async fn src_get(&self, row: &ObjectRow, range: Option<std::ops::Range<u64>>) -> ferry_providers::Result<ferry_providers::Fetched> {
        match row.entry.id().version {
            None => self.src.get(row.src_key(), range).await,
            Some(version) => {
                let mut fetched = self.src_versions(row)?.get_version(row.src_key(), version, range).await?;
                fetched.object.pinned = true;
                Ok(fetched)
            }
        }
    }

    /// The source's versions, for a pinned row: a job of all versions is refused up front where
    /// the source has none, so their absence here stops the run rather than reading another version.
    fn src_versions(&self, row: &ObjectRow) -> ferry_providers::Result<&dyn ferry_providers::Versions> {
        self.src.versions().ok_or_else(|| ProviderError::Request {
            provider: self.src.name(),
            op: "get",
            key: row.entry.key.clone(),
            detail: "the source cannot read one version of a key (--all-versions)".into(),
            class: ErrorClass::Fatal,
            kind: FailureKind::Unsupported,
        })
    }

    /// An object the listing showed archived: readable now (a restored copy), or made so (a
    /// restore asked for, `--archived restore`), else its failure, kind `Archived`, which never
    /// stops the run.
    async fn ready_to_read(&self, row: &ObjectRow) -> Result<(), ObjectError> {
        // The listing cannot tell a restored copy; a HEAD can.
        let now = self.src_head(row).await?.ok_or_else(|| gone(row))?;
        let Some(class) = now.storage_class.filter(|c| c.needs_restore()) else { return Ok(()) };
        let failed = |why: String| {
            let message = format!("{} is archived (storage class {}): {why}", row.src_key(), class.name);
            Err(ObjectError::new(ErrorClass::PerObject, FailureKind::Archived, message))
        };
        let request = match self.opts.archived {
            Archived::Skip => return failed("not restored, so not read (`--archived restore` asks the source to restore it)".into()),
            Archived::Restore(request) => request,
        };
        if class.state == ArchiveState::Archived {
            let Some(tier) = self.src.restore(row.src_key(), &class, &request).await? else {
                return failed(format!("ferry cannot ask {} to restore it", self.src.name()));
            };
            self.journal.restore_requested(row.id).await?;
            Stats::add(&self.stats.restores_requested, 1);
            if tier != request.tier {
                Stats::add(&self.stats.restores_at_other_tier, 1);
            }
            // Some services restore at once: one look before the object waits for a later run.
            if let Some(now) = self.src_head(row).await?
                && !now.storage_class.is_some_and(|c| c.needs_restore())
            {
                return Ok(());
            }
        }
        failed("a restore was requested and is in progress; run `ferry copy` again once it completes (`ferry status` counts restores in flight)".into())
    }

    /// A read was refused because the source changed under it: what it is now, so the object
    /// restarts from that version like any other change (or fails as gone).
    async fn changed_now(&self, row: &ObjectRow, e: ObjectError) -> ObjectError {
        match self.src_head(row).await {
            Ok(Some(now)) => ObjectError { changed: Some(Box::new(now)), ..e },
            Ok(None) => gone(row),
            Err(head) => head.into(),
        }
    }

    /// Copies one object; returns how it was proved, and the memory a single put still holds
    /// (to give back once the outcome is journaled).
    async fn copy_object(&self, row: &ObjectRow, sent: &AtomicU64) -> Result<(Outcome, Option<OwnedSemaphorePermit>), ObjectError> {
        let entry = &row.entry;
        if entry.storage_class.as_ref().is_some_and(|c| c.needs_restore()) {
            self.ready_to_read(row).await?;
        }
        let mut open = self.journal.upload_of(row.id).await?;
        // A server-side copy names the source's current version: a pinned one is read and sent.
        if self.server_side
            && !entry.pinned
            && let Some(copier) = self.dst.server_copy()
        {
            return Ok((self.copy_server_side(row, copier, open.is_some()).await?, None));
        }
        // An open upload keeps the part size it was started with, whatever this run was given,
        // as long as its parts fit this run's memory budget; else it starts over.
        if open.as_ref().is_some_and(|(_, part_size)| *part_size > self.budget.bytes()) {
            self.abandon(row).await;
            self.journal.clear_upload(row.id).await?;
            open = None;
        }
        let plan = match &open {
            Some((_, part_size)) => PartPlan { object_size: entry.size, part_size: *part_size },
            None => PartPlan::fit(entry.size, self.opts.part_size, &self.dst.limits(), self.budget.bytes())
                .map_err(|e| ObjectError::new(ErrorClass::PerObject, FailureKind::NoPartPlan, format!("{}: {e}", entry.key)))?,
        };
        // Everything is read (and every part sent) before the object is committed: a read that
        // fails the source's checksum is never completed or written as a copy.
        let (commit, digest, seen, reads_checked, prior, src_attrs) = match self.dst.multipart() {
            Some(mp) if !plan.is_single() => {
                // One HEAD gives the attributes to write and proves the source unchanged; every
                // part read is checked again.
                let (current, prior) = tokio::join!(self.src_head(row), self.prior(row));
                let current = current?.ok_or_else(|| gone(row))?;
                check_unchanged(row, &current)?;
                let (attrs, src_attrs) = self.attrs_for(row, &current).await?;
                // Without a source CRC32C, ranged reads are proved by the source's MD5 ETag if it has one.
                let etag_check =
                    match entry.checksums.crc32c.is_none() && current.checksums.crc32c.is_none() && current.checksums.crc64nvme.is_none() {
                        true => self.src.etag_check(&current).await?,
                        false => None,
                    };
                let mut opened = self.open_upload(row, mp, &plan, &attrs, open.map(|(id, _)| id), etag_check).await?;
                let (parts, reads_checked) = self.send_parts(row, &plan, &mut opened, sent).await?;
                (Commit::Parts(opened.upload, parts), opened.digest, current, reads_checked, prior?, src_attrs)
            }
            _ => {
                // Only objects that fit the budget go in one request (the plan's parts fit it).
                let permit = self.budget.take(entry.size).await?;
                // What the destination holds is asked beside the read: no round trip added.
                let (fetched, prior) = tokio::join!(self.src_get(row, None), self.prior(row));
                let fetched = match fetched {
                    Err(ProviderError::NotFound { .. }) => return Err(gone(row)),
                    other => other?,
                };
                check_unchanged(row, &fetched.object)?;
                let crc = crc32c(&fetched.data);
                let mut digest = ObjectDigest::new();
                digest.push_part(&fetched.data, crc);
                let (attrs, src_attrs) = self.attrs_for(row, &fetched.object).await?;
                (Commit::Whole(fetched.data, crc, Box::new(attrs), permit), digest, fetched.object, fetched.checked, prior?, src_attrs)
            }
        };
        let verified_by = match source_evidence(row, &seen, &digest, reads_checked) {
            Ok(how) => how,
            Err(e) => {
                // The parts sent came from a bad read: drop them, so the retry reads afresh.
                if let Commit::Parts(upload, _) = commit {
                    let _ = upload.abort().await;
                    self.journal.clear_upload(row.id).await?;
                }
                return Err(e);
            }
        };
        let ledger = self.begin_write(row, &prior).await?;
        let (receipt, memory) = match commit {
            Commit::Parts(upload, parts) => (upload.complete(parts).await?, None),
            Commit::Whole(data, crc, attrs, permit) => {
                let size = data.len() as u64;
                let receipt = self.dst.put(row.dst_key(), data, crc, &attrs).await?;
                Stats::add(&self.stats.bytes_done, size);
                Stats::add(sent, size);
                (receipt, Some(permit))
            }
        };
        let wrote = Wrote { size: entry.size, etag: receipt.etag.clone(), version: receipt.version };
        self.journal.finish_write(ledger, &wrote).await?;
        let crc64nvme = Some(digest.crc64nvme_hex());
        let (sha256, crc) = digest.finish();
        let copied = Checksums { sha256: Some(sha256), crc32c: Some(crc), crc64nvme, md5: None };
        let outcome = Outcome { copied, dst_etag: receipt.etag, verified_by, src_attrs: Some(src_attrs) };
        Ok((outcome, memory))
    }

    /// The class `row` is written in by `--storage-class-map`, from the source class the
    /// manifest recorded; `None`: unmapped (the destination's `--storage-class` or default).
    fn mapped_class(&self, row: &ObjectRow) -> Option<String> {
        let class = row.entry.storage_class.as_ref()?;
        self.opts.storage_class_map.iter().find(|(from, _)| from.eq_ignore_ascii_case(&class.name)).map(|(_, to)| to.clone())
    }

    /// The attributes to write for `row`, given what the read (or HEAD) saw: fitted to what the
    /// destination keeps, with what it does not recorded for the report. Tags the read did not
    /// return cost one request, asked only when they are copied and the destination keeps them.
    /// Also what the source gave besides tags, as read: the journal keeps it for `verify`.
    async fn attrs_for(&self, row: &ObjectRow, read: &ObjectEntry) -> Result<(PutAttrs, Attrs), ObjectError> {
        let base = attrs_of(row, read, self.opts.file_mode);
        let headers = source_headers(row, read);
        let carries = self.dst.carries();
        let tags = match (self.opts.tags, carries.tags) {
            (crate::TagsMode::Skip, _) => None,
            // Named when known; a destination without tags is said once in the report.
            (crate::TagsMode::Copy, false) => read.tags.clone().or_else(|| row.entry.tags.clone()),
            (crate::TagsMode::Copy, true) => match read.tags.clone() {
                Some(tags) => Some(tags),
                None => Some(self.src.tags(row.src_key()).await?),
            },
        };
        let fitted = ferry_core::headers::fit(base.content_type.as_deref(), &base.metadata, &headers, tags.as_ref(), &carries);
        // What a pair cannot carry at all is said once for the run, not per object.
        let not_carried = fitted.not_carried.into_iter().filter(|n| !matches!(n, NotCarried::Metadata | NotCarried::Tags)).collect();
        self.fidelity.record(&row.entry.key, not_carried);
        let src_attrs = Attrs { content_type: base.content_type.clone(), headers, metadata: base.metadata };
        let put = PutAttrs {
            content_type: fitted.content_type.or(base.content_type.filter(|_| !carries.metadata)),
            metadata: fitted.metadata,
            mode: base.mode,
            headers: fitted.headers,
            tags: fitted.tags,
            storage_class: self.mapped_class(row),
        };
        Ok((put, src_attrs))
    }

    /// Has the service copy the object (no bytes through ferry), and checks the copy against
    /// the source's own checksums as the service reports them.
    /// `open`: the journal has an upload of this object open.
    async fn copy_server_side(&self, row: &ObjectRow, copier: &dyn ServerCopy, open: bool) -> Result<Outcome, ObjectError> {
        let entry = &row.entry;
        // Parts of a copy an earlier attempt or run left open are dropped: copying them again
        // costs the service, not ferry's link.
        if open {
            self.abandon(row).await;
        }
        let (current, prior) = tokio::join!(self.src.head(&entry.key), self.prior(row));
        let current = current?.ok_or_else(|| gone(row))?;
        check_unchanged(row, &current)?;
        // The tags the copy is to carry: none with `--tags skip`; else the source's, which the
        // service copies its own way (`None`: it reads them where the HEAD did not).
        let tags = match self.opts.tags {
            crate::TagsMode::Skip => Some(ferry_core::Tags::new()),
            crate::TagsMode::Copy => current.tags.clone(),
        };
        let object = ObjectEntry { key: entry.key.clone(), tags, ..current.clone() };
        let plan = server_copy_plan(entry.size, self.opts.part_size, &self.dst.limits())
            .map_err(|e| ObjectError::new(ErrorClass::PerObject, FailureKind::NoPartPlan, format!("{}: {e}", entry.key)))?;
        // Only now is the write certain to be sent.
        let ledger = self.begin_write(row, &prior?).await?;
        let (journal, id, part_size) = (self.journal.clone(), row.id, plan.part_size);
        let key = entry.key.clone();
        // The service awaits this once the upload exists and before its first part is copied
        // (S3 assigns the id), so the id is on disk before any part is.
        let started = move |upload_id: String| -> futures::future::BoxFuture<'static, ferry_providers::Result<()>> {
            let (journal, key) = (journal.clone(), key.clone());
            Box::pin(async move {
                journal.set_upload(id, Some(&upload_id), part_size).await.map_err(|e| ProviderError::Request {
                    provider: "journal",
                    op: "record upload",
                    key,
                    detail: e.to_string(),
                    class: ErrorClass::Fatal,
                    kind: FailureKind::Journal,
                })
            })
        };
        let class = self.mapped_class(row);
        let copied = copier.copy_from(self.src.location(), &object, class.as_deref(), &plan, &started).await?;
        let verified_by = match server_evidence(entry, &current, &copied)? {
            Some(how) => how,
            None => {
                let written = self.dst.head(&entry.key).await?;
                match written {
                    Some(w) if w.size == entry.size => Evidence::ServerSideSize,
                    other => {
                        return Err(ObjectError::new(
                            ErrorClass::Restart,
                            FailureKind::Other,
                            format!(
                                "server-side copy of {} left {:?} bytes, the source has {}",
                                entry.key,
                                other.map(|w| w.size),
                                entry.size
                            ),
                        ));
                    }
                }
            }
        };
        Stats::add(&self.stats.bytes_done, entry.size);
        let wrote = Wrote { size: entry.size, etag: copied.etag.clone(), version: copied.version.clone() };
        self.journal.finish_write(ledger, &wrote).await?;
        // The journal keeps no MD5 of a copy.
        let checksums = Checksums { md5: None, ..copied.checksums };
        // The service copied the source's attributes as its HEAD gave them.
        let base = attrs_of(row, &current, None);
        let src_attrs = Attrs { content_type: base.content_type, headers: source_headers(row, &current), metadata: base.metadata };
        Ok(Outcome { copied: checksums, dst_etag: copied.etag, verified_by, src_attrs: Some(src_attrs) })
    }

    /// What the destination holds under the object's key now, for the write ledger, and how
    /// that is known.
    async fn prior(&self, row: &ObjectRow) -> Result<(Prior, Seen), ObjectError> {
        if let Some(prior) = self.held.as_ref().and_then(|held| held.prior(row.dst_key())) {
            return Ok((prior, Seen::Listing));
        }
        Ok(match self.dst.head(row.dst_key()).await {
            Ok(Some(held)) => (Prior::Present { size: held.size, etag: held.etag, version: held.version }, Seen::Head),
            Ok(None) => (Prior::Absent, Seen::Head),
            // Not an object ferry reads (a planted symlink on a local disk): the write decides
            // what happens to it, and the ledger says it does not know what was there.
            Err(ProviderError::Refused { .. }) => (Prior::Unknown, Seen::Head),
            // A transient failure the request layer gave up on fails the object (a later run
            // resumes it), as any request of the object would.
            Err(e) if e.class() == ErrorClass::Retryable => return Err(e.into()),
            // Credentials that may write but not read (a write-only SAS or bucket policy) copied
            // before the ledger asked: the write goes on, recorded as not known.
            Err(_) => (Prior::Unknown, Seen::None),
        })
    }

    /// Records in the write ledger, before the object is written, what the destination held.
    async fn begin_write(&self, row: &ObjectRow, (prior, seen): &(Prior, Seen)) -> Result<i64, ObjectError> {
        let target = self.dst.location().to_string();
        let intent = Intent { object: row.id, target: &target, key: row.dst_key(), op: WriteOp::Put, prior, seen: *seen };
        let ledger = self.journal.begin_write(self.run_id, &intent).await?;
        if let Some(backup) = &self.backup {
            keep_replaced(backup, self.journal.as_ref(), self.dst.as_ref(), ledger, row.dst_key()).await?;
        }
        Ok(ledger)
    }

    /// Resumes the object's recorded upload (`recorded_id`, as the journal has it) when the
    /// destination still has it, else starts one (its id journaled before anything is created).
    /// Returns it with the parts already held and the running digest of the leading parts, when
    /// the journal kept one.
    async fn open_upload(
        &self,
        row: &ObjectRow,
        mp: &dyn Multipart,
        plan: &PartPlan,
        attrs: &PutAttrs,
        recorded_id: Option<String>,
        etag_check: Option<ferry_core::Md5Etag>,
    ) -> Result<OpenedUpload, ObjectError> {
        let fresh = ObjectDigest::new().with_etag(etag_check);
        let key = row.dst_key();
        if let Some(upload_id) = recorded_id {
            let (recorded, hash) = (self.journal.parts(row.id).await?, self.journal.hash_state(row.id).await?);
            let recorded: Vec<PartReceipt> = recorded
                .iter()
                .filter_map(|p| {
                    let crc32c = u32::from_str_radix(&p.crc32c, 16).ok()?;
                    Some(PartReceipt { index: p.part_no, id: p.etag.clone().unwrap_or_default(), size: p.size, crc32c })
                })
                .collect();
            let resumed = match mp.resume(key, &upload_id, attrs, row.entry.size, &recorded).await {
                Err(ProviderError::UnlistedUpload { .. }) => {
                    self.journal.note_orphan(row.id).await?;
                    Ok(None)
                }
                other => other,
            };
            // Parts the journal has as acknowledged that the destination no longer lists: the
            // upload was completed (by a run cut off before it journaled the object done), or
            // aborted. Either way it cannot be continued.
            let resumed = match resumed? {
                Some((upload, held)) if recorded.iter().any(|r| !held.iter().any(|h| h.index == r.index)) => {
                    if let Some(completed) = self.completed_earlier(row, plan, &recorded, fresh.clone()).await? {
                        return Ok(completed);
                    }
                    let _ = upload.abort().await;
                    None
                }
                other => other,
            };
            match resumed {
                // Held parts must match this upload's part plan, or it cannot be continued.
                Some((upload, held)) if held.iter().all(|p| u64::from(p.index) < plan.count() && p.size == plan.len(p.index as u64)) => {
                    Stats::add(&self.stats.resumed_objects, 1);
                    let held: BTreeMap<u32, PartReceipt> = held.into_iter().map(|p| (p.index, p)).collect();
                    // The saved digest is usable only if every part it covers is still held.
                    let (next, digest) = hash
                        .filter(|(next, _)| (0..*next).all(|i| held.contains_key(&i)))
                        .and_then(|(next, state)| Some((next, ObjectDigest::restore(&state)?)))
                        .unwrap_or((0, fresh));
                    let journaled = recorded.iter().map(|p| p.index).collect();
                    return Ok(OpenedUpload { upload, held, digest, next, journaled, completed: false });
                }
                // An upload that cannot be continued is dropped; if the abort fails, the
                // lifecycle rule for abandoned uploads has the last word.
                Some((upload, _)) => {
                    let _ = upload.abort().await;
                }
                // The provider no longer knows it: completed by a run cut off before it
                // journaled the object done, or gone. Abort anyway (harmless if it is gone) so
                // an upload a listing failed to show cannot stay open.
                None => {
                    if let Some(completed) = self.completed_earlier(row, plan, &recorded, fresh.clone()).await? {
                        return Ok(completed);
                    }
                    let _ = mp.abort_upload(key, &upload_id).await;
                }
            }
            self.journal.clear_upload(row.id).await?;
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        self.journal.set_upload(row.id, Some(&id), plan.part_size).await?;
        let upload = mp.start(key, attrs, row.entry.size, &id).await?;
        let actual = upload.upload_id();
        if actual.as_deref() != Some(id.as_str()) {
            self.journal.set_upload(row.id, actual.as_deref(), plan.part_size).await?;
        }
        Ok(OpenedUpload { upload, held: BTreeMap::new(), digest: fresh, next: 0, journaled: BTreeSet::new(), completed: false })
    }

    /// The upload an earlier run completed without living to journal the object done: every
    /// part journaled, and the destination's object has the size and the multipart ETag those
    /// parts make (S3's MD5 of part MD5s). Returned as an upload holding every part, so the
    /// parts are read and hashed again, each proved against its journaled CRC32C, and nothing
    /// is sent. `None` when that cannot be shown: the object is copied again.
    async fn completed_earlier(
        &self,
        row: &ObjectRow,
        plan: &PartPlan,
        recorded: &[PartReceipt],
        digest: ObjectDigest,
    ) -> Result<Option<OpenedUpload>, ObjectError> {
        let count = plan.count();
        let all_parts = recorded.len() as u64 == count
            && recorded.iter().enumerate().all(|(i, p)| u64::from(p.index) == i as u64 && p.size == plan.len(i as u64));
        let Some(etag) = all_parts.then(|| ferry_core::etag::multipart_etag(recorded.iter().map(|p| p.id.as_str()))).flatten() else {
            return Ok(None);
        };
        let Some(written) = self.dst.head(row.dst_key()).await? else { return Ok(None) };
        if written.size != row.entry.size || written.etag.as_deref().map(|e| e.trim_matches('"')) != Some(etag.as_str()) {
            return Ok(None);
        }
        let held = recorded.iter().map(|p| (p.index, p.clone())).collect();
        let upload = Box::new(Completed { etag: written.etag });
        Ok(Some(OpenedUpload { upload, held, digest, next: 0, journaled: BTreeSet::new(), completed: true }))
    }

    /// Aborts the recorded upload of an object that failed for good, so none stays open (and billed).
    async fn abandon(&self, row: &ObjectRow) {
        let Some(mp) = self.dst.multipart() else { return };
        let upload_id = self.journal.upload_of(row.id).await;
        if let Ok(Some((upload_id, _))) = upload_id
            && mp.abort_upload(row.dst_key(), &upload_id).await.is_ok()
        {
            let _ = self.journal.clear_upload(row.id).await;
        }
    }

    /// Reads the parts from `opened.next` on with bounded parallel ranged GETs, hashing them in
    /// order, and uploads those the destination does not already hold. Each time the leading
    /// run of acknowledged parts grows, the digest state after it is journaled.
    async fn send_parts(
        &self,
        row: &ObjectRow,
        plan: &PartPlan,
        opened: &mut OpenedUpload,
        sent: &AtomicU64,
    ) -> Result<(Vec<PartReceipt>, Option<Evidence>), ObjectError> {
        // What the adapter checked every read of this attempt against, if it checked them all.
        let mut reads_checked: Option<Option<Evidence>> = None;
        let width = self.opts.parts_per_object.max(1);
        let count = plan
            .parts()
            .map_err(|e| ObjectError::new(ErrorClass::PerObject, FailureKind::NoPartPlan, format!("{}: {e}", row.entry.key)))?;
        // Parts the saved digest covers are held: nothing to read or send.
        let mut receipts: Vec<PartReceipt> = (0..opened.next).filter_map(|i| opened.held.get(&i).cloned()).collect();
        for r in &receipts {
            Stats::add(&self.stats.bytes_done, r.size);
            Stats::add(&self.stats.resumed_bytes, r.size);
        }
        let mut acked = AckedRun::new(opened.next);
        // Memory is taken for the parts in order, before their reads start: a read that holds
        // memory never waits for more, so it always finishes and hands the part on. (Taking it
        // inside the parallel reads let a later part hold memory while an earlier one waited
        // for some, across objects: a deadlock once the budget was small.)
        let reads = futures::stream::iter(opened.next..count)
            .then(|i| async move {
                let range = plan.range(i as u64);
                let permit = self.budget.take(range.end - range.start).await;
                (i, range, permit)
            })
            .map(|(i, range, permit)| async move {
                let permit = permit?;
                let fetched = self.src_get(row, Some(range)).await?;
                check_unchanged(row, &fetched.object)?;
                Ok::<_, ObjectError>((i, fetched.data, fetched.checked, permit))
            })
            .buffered(width);
        let mut reads = std::pin::pin!(reads);
        // Reads and uploads are driven together: an upload in flight must keep moving (and give
        // its memory back) while the next read waits for memory.
        let mut in_flight = FuturesUnordered::new();
        let mut reading = true;
        loop {
            tokio::select! {
                part = reads.next(), if reading && in_flight.len() < width => {
                    let Some(part) = part else {
                        reading = false;
                        continue;
                    };
                    let (index, data, checked, permit) = part?;
                    reads_checked = Some(match reads_checked {
                        None => checked,
                        Some(before) => before.filter(|b| Some(*b) == checked),
                    });
                    let crc = crc32c(&data);
                    opened.digest.push_part(&data, crc);
                    acked.snapshot(index, opened.digest.save());
                    let offset = plan.range(index as u64).start;
                    // A part the destination already holds with these very bytes is not sent again.
                    if let Some(receipt) = opened.held.get(&index).filter(|r| r.crc32c == crc && r.size == data.len() as u64) {
                        let receipt = receipt.clone();
                        drop(permit);
                        Stats::add(&self.stats.resumed_bytes, receipt.size);
                        self.part_done(row.id, plan, &receipt, None).await?;
                        self.advance(row.id, &mut acked, index).await?;
                        receipts.push(receipt);
                        continue;
                    }
                    // The completed object holds other bytes than these: copy it again.
                    if opened.completed {
                        self.journal.clear_upload(row.id).await?;
                        let message = format!("{}: the copy an earlier run completed differs in part {}: copying it again", row.entry.key, index + 1);
                        return Err(ObjectError::new(ErrorClass::Restart, FailureKind::Other, message));
                    }
                    // Different bytes for a part the journal has recorded: forget the record
                    // first, so a crash before their acknowledgement is journaled cannot leave
                    // the old record vouching for the new part.
                    if opened.journaled.remove(&index) {
                        self.journal.forget_part(row.id, index).await?;
                    }
                    let sending = opened.upload.put_part(index, offset, data, crc);
                    in_flight.push(async move { (sending.await, permit) });
                }
                Some((receipt, permit)) = in_flight.next(), if !in_flight.is_empty() => {
                    let receipt = receipt?;
                    self.part_done(row.id, plan, &receipt, Some(sent)).await?;
                    // The part's memory is given back only once its acknowledgement is
                    // journaled: the bytes a crash can make ferry send again are bounded by
                    // the budget.
                    drop(permit);
                    self.advance(row.id, &mut acked, receipt.index).await?;
                    receipts.push(receipt);
                }
                else => break,
            }
        }
        receipts.sort_by_key(|r| r.index);
        Ok((receipts, reads_checked.flatten()))
    }

    /// Journals an acknowledged part; `sent` counts it as uploaded by this attempt.
    async fn part_done(&self, id: i64, plan: &PartPlan, r: &PartReceipt, sent: Option<&AtomicU64>) -> Result<(), ObjectError> {
        let offset = plan.range(r.index as u64).start;
        let crc = ferry_core::digest::crc32c_hex(r.crc32c);
        let part = PartRow { part_no: r.index, offset, size: r.size, crc32c: crc, etag: Some(r.id.clone()) };
        self.journal.record_part(id, &part).await?;
        Stats::add(&self.stats.bytes_done, r.size);
        if let Some(sent) = sent {
            Stats::add(sent, r.size);
        }
        Ok(())
    }

    /// Marks part `index` acknowledged and journals the digest after the leading acknowledged run.
    async fn advance(&self, id: i64, acked: &mut AckedRun, index: u32) -> Result<(), ObjectError> {
        if let Some((next, state)) = acked.ack(index) {
            self.journal.set_hash_state(id, next, &state).await?;
        }
        Ok(())
    }
}

/// Which parts are acknowledged, and the digest state after each part not yet covered by the
/// leading acknowledged run.
struct AckedRun {
    next: u32,
    acked: BTreeSet<u32>,
    snapshots: BTreeMap<u32, Vec<u8>>,
}

impl AckedRun {
    fn new(next: u32) -> Self {
        AckedRun { next, acked: BTreeSet::new(), snapshots: BTreeMap::new() }
    }

    /// Remembers the digest state after part `index` was hashed.
    fn snapshot(&mut self, index: u32, state: Vec<u8>) {
        self.snapshots.insert(index, state);
    }

    /// Marks `index` acknowledged; when the leading run grows, returns its new length and the
    /// digest state after it.
    fn ack(&mut self, index: u32) -> Option<(u32, Vec<u8>)> {
        self.acked.insert(index);
        let before = self.next;
        while self.acked.remove(&self.next) {
            self.next += 1;
        }
        if self.next == before {
            return None;
        }
        let state = self.snapshots.remove(&(self.next - 1));
        self.snapshots.retain(|i, _| *i >= self.next);
        state.map(|s| (self.next, s))
    }
}

/// An upload to send parts through, the parts the destination already holds, and the running
/// digest of the leading `next` parts.
struct OpenedUpload {
    upload: Box<dyn MultipartUpload>,
    held: BTreeMap<u32, PartReceipt>,
    digest: ObjectDigest,
    next: u32,
    /// Parts the journal has a record of that this attempt has not acknowledged yet.
    journaled: BTreeSet<u32>,
    /// An earlier run completed the upload: every part must prove held, none may be sent.
    completed: bool,
}

/// An upload the destination completed already (see [`Mover::completed_earlier`]).
struct Completed {
    etag: Option<String>,
}

#[async_trait::async_trait]
impl MultipartUpload for Completed {
    fn upload_id(&self) -> Option<String> {
        None
    }

    fn put_part(
        &mut self,
        index: u32,
        _offset: u64,
        _data: bytes::Bytes,
        _crc32c: u32,
    ) -> futures::future::BoxFuture<'static, ferry_providers::Result<PartReceipt>> {
        unreachable!("part {index} sent to an upload completed earlier: send_parts starts over instead")
    }

    async fn complete(self: Box<Self>, _parts: Vec<PartReceipt>) -> ferry_providers::Result<ferry_providers::PutReceipt> {
        Ok(ferry_providers::PutReceipt { etag: self.etag.map(|e| e.trim_matches('"').to_string()), version: None })
    }

    async fn abort(self: Box<Self>) -> ferry_providers::Result<()> {
        Ok(())
    }
}

/// What makes the copy visible at the destination once its bytes are proved.
enum Commit {
    /// Complete the multipart upload from these parts.
    Parts(Box<dyn MultipartUpload>, Vec<PartReceipt>),
    /// Put the whole object (its memory stays reserved until then).
    Whole(bytes::Bytes, u32, Box<PutAttrs>, OwnedSemaphorePermit),
}

/// The strongest evidence that the bytes read are the source's: the SHA-256 a shipment
/// manifest declares, else the source's CRC32C, else its CRC64NVME, else its MD5 ETag, else
/// the checksum the adapter checked each read against. A short read or a mismatch is an error
/// to retry from the source, never a copy marked verified — except against a shipment
/// manifest: a file on a disk that does not match it was altered in transit, and reading it
/// again will not change that.
fn source_evidence(
    row: &ObjectRow,
    seen: &ObjectEntry,
    digest: &ObjectDigest,
    reads_checked: Option<Evidence>,
) -> Result<Evidence, ObjectError> {
    let entry = &row.entry;
    let retry = |kind, message: String| Err(ObjectError::new(ErrorClass::Restart, kind, message));
    let corrupted = |message: String| retry(FailureKind::CorruptedInTransit, message);
    if let Some(expected) = &row.route.expect_sha256 {
        let altered = |what: &str, got: &str, want: &str| {
            let message = format!("altered in transit: {} has {what} {got}, the shipment manifest says {want}", row.src_key());
            Err(ObjectError::new(ErrorClass::PerObject, FailureKind::AlteredInShipment, message))
        };
        if digest.len() != entry.size {
            return altered("size", &digest.len().to_string(), &entry.size.to_string());
        }
        let (sha256, _) = digest.clone().finish();
        if sha256 != *expected {
            return altered("sha256", &sha256, expected);
        }
        if let Some(crc64) = entry.checksums.crc64nvme.as_ref().filter(|c| **c != digest.crc64nvme_hex()) {
            return altered("crc64nvme", &digest.crc64nvme_hex(), crc64);
        }
        return Ok(Evidence::ShipmentSha256);
    }
    if digest.len() != entry.size {
        return retry(FailureKind::ShortRead, format!("short read: {} bytes, the manifest says {}", digest.len(), entry.size));
    }
    let crc = digest.crc32c_hex();
    let crc64 = digest.crc64nvme_hex();
    let seen = &seen.checksums;
    match (entry.checksums.crc32c.as_ref().or(seen.crc32c.as_ref()), digest.etag()) {
        (Some(source_crc), _) if *source_crc != crc => {
            corrupted(format!("checksum mismatch: bytes read have crc32c {crc}, the source declares {source_crc}"))
        }
        (Some(_), _) => Ok(Evidence::SourceCrc32c),
        (None, _) if seen.crc64nvme.as_ref().is_some_and(|c| *c != crc64) => corrupted(format!(
            "checksum mismatch: bytes read have crc64nvme {crc64}, the source declares {}",
            seen.crc64nvme.as_deref().unwrap_or_default()
        )),
        (None, _) if seen.crc64nvme.is_some() => Ok(Evidence::SourceCrc64nvme),
        (None, Some(check)) if !check.matches() => {
            corrupted(format!("checksum mismatch: bytes read have MD5 ETag {}, the source's is {}", check.computed(), check.expected()))
        }
        (None, Some(_)) => Ok(Evidence::SourceMd5),
        // The destination checked the CRC32C of what ferry sent, but nothing from the source
        // proved what ferry read: only its size matched. Counted, so it stays rare and visible.
        (None, None) => Ok(reads_checked.unwrap_or(Evidence::SizeOnly)),
    }
}

fn gone(row: &ObjectRow) -> ObjectError {
    let message = match row.route.expect_sha256 {
        Some(_) => format!("missing: {} is not on the device", row.src_key()),
        None => format!("{} was deleted from the source since the manifest was sealed", row.src_key()),
    };
    ObjectError::new(ErrorClass::PerObject, FailureKind::SourceGone, message)
}

/// Content type and metadata to write: what the read returned, else what the listing said —
/// except for a file read off a shipped disk, whose type the shipment manifest kept from the
/// original source (the disk's own is only guessed from the name). Permission bits: the source
/// file's (local disk), else `file_mode` (`--file-mode`), else the destination's default.
/// The system headers besides Content-Type the source gave: the read's, else the listing's.
fn source_headers(row: &ObjectRow, read: &ObjectEntry) -> ferry_core::Headers {
    if read.headers.is_empty() { row.entry.headers.clone() } else { read.headers.clone() }
}

fn attrs_of(row: &ObjectRow, read: &ObjectEntry, file_mode: Option<u32>) -> PutAttrs {
    let listed = &row.entry;
    let content_type = match row.route.src_path {
        Some(_) => listed.content_type.clone().or_else(|| read.content_type.clone()),
        None => read.content_type.clone().or_else(|| listed.content_type.clone()),
    };
    let metadata = if read.metadata.is_empty() { listed.metadata.clone() } else { read.metadata.clone() };
    PutAttrs { content_type, metadata, mode: read.mode.or(file_mode), ..PutAttrs::default() }
}

/// Part size of server-side copies in parts when none is given: each part is one request the
/// service carries out on its side, so parts can be large.
const SERVER_COPY_PART: u64 = 256 << 20;

/// How the service copies an object of `size` itself: parts of `--part-size` (`wanted`) or
/// [`SERVER_COPY_PART`], raised as the destination's part count limit demands and checked
/// against all its limits. No byte passes through ferry, so the memory budget does not bound
/// them. Chosen here once and handed to the provider, which requests exactly this plan.
/// `--backup-to`: keeps what ledger row `ledger` is about to replace under `key` (its prior, as
/// its first attempt saw it), unless an attempt kept it already or nothing was there; the row
/// says where. A failure fails the write: nothing is replaced that could not be kept.
pub(crate) async fn keep_replaced(
    backup: &crate::backup::Backup,
    journal: &dyn Journal,
    dst: &dyn Provider,
    ledger: i64,
    key: &str,
) -> Result<(), ObjectError> {
    let (prior, kept) = journal.prior_of(ledger).await?;
    if kept.is_some() || prior == Prior::Absent {
        return Ok(());
    }
    if let Some(kept) = backup.keep(dst, key).await? {
        journal.set_backup(ledger, &kept).await?;
    }
    Ok(())
}

pub(crate) fn server_copy_plan(size: u64, wanted: Option<u64>, limits: &ferry_core::Limits) -> Result<PartPlan, ferry_core::PlanError> {
    let plan = PartPlan::choose(size, Some(wanted.unwrap_or(SERVER_COPY_PART)), limits);
    plan.check(limits)?;
    Ok(plan)
}

/// What proves a server-side copy: the service's checksum of the copy against the source's
/// own (an error when they differ), or `None` when there is nothing to compare but the size.
fn server_evidence(entry: &ObjectEntry, source: &ObjectEntry, copied: &ServerCopied) -> Result<Option<Evidence>, ObjectError> {
    let mismatch = |what: &str, a: &str, b: &str| {
        let message = format!("checksum mismatch: the server-side copy has {what} {b}, the source {a}");
        Err(ObjectError::new(ErrorClass::Restart, FailureKind::CorruptedInTransit, message))
    };
    let copied_sums = &copied.checksums;
    if let (Some(src), Some(dst)) = (entry.checksums.crc32c.as_ref().or(source.checksums.crc32c.as_ref()), copied_sums.crc32c.as_ref()) {
        return if src == dst { Ok(Some(Evidence::ServerSideCrc32c)) } else { mismatch("crc32c", src, dst) };
    }
    if let (Some(src), Some(dst)) = (source.checksums.crc64nvme.as_ref(), copied_sums.crc64nvme.as_ref()) {
        return if src == dst { Ok(Some(Evidence::ServerSideCrc64nvme)) } else { mismatch("crc64nvme", src, dst) };
    }
    if let (Some(src), Some(dst)) = (entry.checksums.md5.as_ref().or(source.checksums.md5.as_ref()), copied_sums.md5.as_ref()) {
        return if src == dst { Ok(Some(Evidence::ServerSideMd5)) } else { mismatch("md5", src, dst) };
    }
    // A copy in one request keeps a plain MD5 ETag: equal ETags are the same bytes. (Different
    // ones prove nothing either way: encryption or a multipart source change the ETag.)
    let md5_like = |e: &str| e.len() == 32 && e.bytes().all(|b| b.is_ascii_hexdigit());
    if copied.parts == 0
        && let (Some(src), Some(dst)) = (source.etag.as_deref(), copied.etag.as_deref())
        && md5_like(src)
        && src == dst
    {
        return Ok(Some(Evidence::ServerSideMd5));
    }
    Ok(None)
}

/// Refuses to stitch an object together from two versions: the source must still be the object
/// the manifest recorded.
fn check_unchanged(row: &ObjectRow, read: &ObjectEntry) -> Result<(), ObjectError> {
    let listed = &row.entry;
    // A file on a shipped disk is what the shipment manifest says, or it was altered.
    if row.route.expect_sha256.is_some() {
        if read.size != listed.size {
            let message =
                format!("altered in transit: {} has size {}, the shipment manifest says {}", row.src_key(), read.size, listed.size);
            return Err(ObjectError::new(ErrorClass::PerObject, FailureKind::AlteredInShipment, message));
        }
        // The row's tag and version are the exported source's (taken from the shipped
        // manifest), not the disk file's: the shipped SHA-256, checked once read, proves it.
        return Ok(());
    }
    let changed = |what: &str, a: &str, b: &str| ObjectError {
        class: ErrorClass::PerObject,
        kind: FailureKind::SourceChanged,
        message: format!("source changed since the manifest was sealed: {what} {a} is now {b}"),
        changed: Some(Box::new(read.clone())),
        full: false,
    };
    if read.size != listed.size {
        return Err(changed("size", &listed.size.to_string(), &read.size.to_string()));
    }
    if let (Some(a), Some(b)) = (&listed.version, &read.version)
        && a != b
    {
        return Err(changed("version", a, b));
    }
    if let (Some(a), Some(b)) = (&listed.etag, &read.etag)
        && a != b
    {
        return Err(changed("etag", a, b));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::{Limits, Location};
    use ferry_providers::s3::LIMITS as S3;
    use ferry_providers::{Fetched, PutReceipt, RunContext};
    use std::sync::atomic::AtomicU32;

    const MIB: u64 = 1 << 20;

    /// A one-object source whose first `corrupt` reads fail as corrupted in transit, or a
    /// destination that keeps what it is given. In memory: the mover's retries run in
    /// milliseconds under tokio's paused clock.
    struct Flaky {
        location: Location,
        object: ObjectEntry,
        data: bytes::Bytes,
        corrupt: AtomicU32,
        puts: AtomicU32,
    }

    impl Flaky {
        fn new(data: &'static [u8], corrupt: u32) -> Arc<Flaky> {
            let object = ObjectEntry { key: "k".into(), size: data.len() as u64, ..Default::default() };
            let location = Location::parse("/flaky").unwrap();
            Arc::new(Flaky {
                location,
                object,
                data: bytes::Bytes::from_static(data),
                corrupt: AtomicU32::new(corrupt),
                puts: AtomicU32::new(0),
            })
        }
    }

    #[async_trait::async_trait]
    impl Provider for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }
        fn location(&self) -> &Location {
            &self.location
        }
        fn limits(&self) -> Limits {
            ferry_providers::local::LIMITS
        }
        async fn check(&self, _: bool) -> ferry_providers::Result<()> {
            Ok(())
        }
        fn list(&self) -> futures::stream::BoxStream<'_, ferry_providers::Result<Vec<ObjectEntry>>> {
            futures::stream::empty().boxed()
        }
        async fn head(&self, _: &str) -> ferry_providers::Result<Option<ObjectEntry>> {
            Ok(Some(self.object.clone()))
        }
        async fn get(&self, key: &str, _: Option<std::ops::Range<u64>>) -> ferry_providers::Result<Fetched> {
            if self.corrupt.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok() {
                // The detail names no checksum: the kind alone must say what happened.
                return Err(ProviderError::corrupted("flaky", "get", key, "bytes flipped on the way"));
            }
            Ok(Fetched { data: self.data.clone(), object: self.object.clone(), checked: None })
        }
        async fn put(&self, _: &str, _: bytes::Bytes, _: u32, _: &PutAttrs) -> ferry_providers::Result<PutReceipt> {
            self.puts.fetch_add(1, Ordering::Relaxed);
            Ok(PutReceipt::default())
        }
        async fn delete(&self, _: &str) -> ferry_providers::Result<()> {
            Ok(())
        }
    }

    /// The mover's run's retries counted as checksum mismatches.
    fn checksum_retries(mover: &Mover) -> u64 {
        mover.run.retries().snapshot().get(ferry_providers::retries::Cause::Checksum.as_str()).copied().unwrap_or(0)
    }

    /// A mover over a fresh journal holding the one object, in a run of its own.
    async fn mover(dir: &std::path::Path, src: Arc<Flaky>, dst: Arc<Flaky>, attempts: u32) -> (Mover, ObjectRow) {
        let journal = ferry_journal::open(dir, ferry_journal::JournalKind::Main).await.unwrap();
        journal.seed(1, std::slice::from_ref(&src.object)).await.unwrap();
        let row = journal.get(&src.object.key).await.unwrap().unwrap();
        let opts = CopyOptions { attempts, ..CopyOptions::default() };
        let stats = Arc::new(Stats::default());
        let shared =
            crate::scheduler::shared(journal, ferry_journal::RunKind::Copy, 1, &opts, &stats, &RunContext::unlimited()).await.unwrap();
        (Mover::new(src, dst, &shared, &opts), row)
    }

    #[tokio::test(start_paused = true)]
    async fn a_corrupted_get_is_retried_and_counted_as_a_checksum_mismatch_by_its_kind() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (Flaky::new(b"twelve bytes", 2), Flaky::new(b"", 0));
        let (mover, row) = mover(dir.path(), src.clone(), dst.clone(), 5).await;
        assert_eq!(mover.copy_with_retries(&row).await.unwrap(), 12);
        assert_eq!(dst.puts.load(Ordering::Relaxed), 1, "sent once, after the good read");
        assert_eq!(checksum_retries(&mover), 2, "both corrupted reads counted as checksum mismatches");
        let mut proved = BTreeMap::new();
        mover.take_verified(&mut proved);
        assert_eq!(proved, BTreeMap::from([(Evidence::SizeOnly, 1)]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_corrupted_every_time_fails_as_corrupted_in_transit() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (Flaky::new(b"twelve bytes", u32::MAX), Flaky::new(b"", 0));
        let (mover, row) = mover(dir.path(), src, dst.clone(), 2).await;
        let e = mover.copy_with_retries(&row).await.unwrap_err();
        assert_eq!((e.kind, e.class), (FailureKind::CorruptedInTransit, ErrorClass::Restart), "{}", e.message);
        assert_eq!(dst.puts.load(Ordering::Relaxed), 0, "nothing written from a bad read");
    }

    #[tokio::test]
    async fn a_shipped_file_that_differs_is_altered_and_a_missing_one_gone_by_kind() {
        let dir = tempfile::tempdir().unwrap();
        let journal = ferry_journal::open(dir.path(), ferry_journal::JournalKind::Main).await.unwrap();
        let entry = ObjectEntry { key: "k".into(), size: 3, ..Default::default() };
        let route =
            ferry_journal::Route { device: Some(0), src_path: Some("p/k".into()), dst_path: None, expect_sha256: Some("00".repeat(32)) };
        let routed = ferry_journal::RoutedEntry { entry: entry.clone(), route, refused: None, renamed: None };
        journal.seed_routed(1, &[routed]).await.unwrap();
        let row = journal.get("k").await.unwrap().unwrap();
        let mut digest = ObjectDigest::new();
        digest.push_part(b"abc", crc32c(b"abc"));
        let e = source_evidence(&row, &entry, &digest, None).unwrap_err();
        assert_eq!((e.kind, e.class), (FailureKind::AlteredInShipment, ErrorClass::PerObject), "{}", e.message);
        assert_eq!(gone(&row).kind, FailureKind::SourceGone);
        let short = ObjectEntry { size: 4, ..entry.clone() };
        let plain = ObjectRow { entry: short.clone(), route: ferry_journal::Route::default(), ..row };
        assert_eq!(source_evidence(&plain, &short, &digest, None).unwrap_err().kind, FailureKind::ShortRead);
    }

    #[test]
    fn a_server_side_copy_plan_keeps_within_the_destinations_limits() {
        // Issue 13: with --part-size 8MiB, 12,000 parts' worth of object (93.75 GiB) — and with
        // the default 256 MiB parts, an object over 2.5 TiB — would be more than S3's 10,000.
        for (size, wanted) in [(12_000 * 8 * MIB, Some(8 * MIB)), (12_000 * 256 * MIB, None), (5 << 40, Some(5 * MIB))] {
            let plan = server_copy_plan(size, wanted, &S3).unwrap();
            assert_eq!(plan.object_size, size);
            assert!(plan.count() <= 10_000, "{size}: {} parts", plan.count());
            assert!(plan.part_size <= 5 << 30 && plan.part_size >= wanted.unwrap_or(256 * MIB), "{plan:?}");
        }
        // A part size over 5 GiB (no memory budget bounds a server-side copy) is lowered to it:
        // CopyObject and UploadPartCopy take no more.
        let plan = server_copy_plan(6 << 30, Some(10 << 30), &S3).unwrap();
        assert_eq!((plan.part_size, plan.count()), (5 << 30, 2));
        // An object no plan fits is refused before a request (no real service's limits show it:
        // these are made up for the test).
        let tight = Limits { max_parts: 2, max_part_size: 8 * MIB, ..S3 };
        assert!(server_copy_plan(100 * MIB, None, &tight).is_err());
    }

    #[test]
    fn the_leading_acknowledged_run_reports_the_state_after_its_last_part() {
        let mut run = AckedRun::new(2);
        for i in 2..6 {
            run.snapshot(i, vec![i as u8]);
        }
        assert_eq!(run.ack(4), None, "part 2 and 3 are still in flight");
        assert_eq!(run.ack(2), Some((3, vec![2])));
        assert_eq!(run.ack(3), Some((5, vec![4])), "3 joins 2 and the already acknowledged 4");
        assert_eq!(run.ack(5), Some((6, vec![5])));
    }
}
