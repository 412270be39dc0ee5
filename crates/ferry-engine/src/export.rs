//! Disk export: the sealed manifest written onto appliance disks, with a shipment manifest on
//! each.
//!
//! ```text
//! manifest gen N ──map keys (layout)──▶ export journal (JournalKind::Export)
//!   ──refuse conflicts──▶ pack by size onto devices ──▶ mover per device (temp + fsync + rename)
//!   ──▶ ferry-shipment.jsonl + SHA256SUMS (+ Data Box BOM) on each device, copies in JOB/export/
//! ```
//! The export journal is separate from the job's copy journal: a job planned for a network
//! copy can ship part of its data on disks. Each object's layout path, device and outcome
//! (SHA-256, CRC64NVME, CRC32C of the bytes read, proved against the source's checksums) are
//! journaled, so a killed export continues where it stopped and never rewrites a finished file.
//! Objects are packed largest first, each onto the first device (most free space first) with
//! room; a device that fills up anyway (ENOSPC) is closed and its unfinished objects packed again
//! onto the others. An object is never split across devices.

use crate::error::ApplianceError;
use crate::mover::{Mover, ObjectError};
use crate::options::{CopyOptions, Failure};
use crate::scheduler::{Router, Shared, run_pass, shared};
use crate::{EngineError, Job, Result, Stats};
use ferry_core::layout::{Layout, Placement};
use ferry_core::{Evidence, Location};
use ferry_journal::{Journal, JournalKind, ObjectRow, Route, RoutedEntry};
use ferry_manifest::ManifestReader;
use ferry_manifest::shipment::{self, ShipmentFile, ShipmentHeader, ShipmentWriter};
use ferry_providers::Provider;
use ferry_providers::local::LocalProvider;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub layout: Layout,
    /// Device roots (mounted appliance disks or shares), in the order given.
    pub devices: Vec<PathBuf>,
    /// Lint only: report renames, refusals and the packing; write nothing to a device.
    pub check: bool,
    pub copy: CopyOptions,
}

/// A key the layout renames or refuses.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub key: String,
    /// `renamed` or `refused`.
    pub action: &'static str,
    /// Where a renamed object goes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceSummary {
    /// 1-based, as in the shipment manifest.
    pub device: u32,
    pub path: PathBuf,
    /// Free bytes when this run started.
    pub free: u64,
    /// Objects packed onto it and not yet written, and their bytes.
    pub pending: u64,
    pub pending_bytes: u64,
    pub done: u64,
    pub done_bytes: u64,
    /// It filled up during this run.
    pub full: bool,
    /// The shipment manifest written on it and its SHA-256.
    pub shipment: Option<PathBuf>,
    pub shipment_sha256: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExportSummary {
    pub source: String,
    pub generation: u32,
    pub layout: String,
    pub check: bool,
    pub objects_total: u64,
    pub bytes_total: u64,
    pub renamed: u64,
    pub refused: u64,
    /// Every rename and refusal, in key order — the first 100 000 of them when there are more.
    pub findings: Vec<Finding>,
    /// When there are more findings than `findings` holds: a text file in the job's reports
    /// with every one of them, a line each.
    pub findings_file: Option<PathBuf>,
    /// Objects no device given has room for.
    pub unplaced: u64,
    pub unplaced_bytes: u64,
    pub copied: u64,
    pub bytes_copied: u64,
    pub already_done: u64,
    pub verified_by: BTreeMap<Evidence, u64>,
    pub failed: u64,
    pub failures: Vec<Failure>,
    /// What does not travel on the disks: object tags (the shipment carries each object's
    /// Content-Type, metadata and headers, but no tags).
    pub fidelity: crate::Fidelity,
    pub stopped_by: Option<String>,
    pub devices: Vec<DeviceSummary>,
    pub seconds: f64,
    pub report: Option<PathBuf>,
}

/// Renames and refusals listed in a summary (and printed by `ferry export`); beyond them the
/// counts, and a file with every one.
const FINDINGS_KEPT: usize = 100_000;

/// Bytes kept free on every device beyond the data: the shipment files and slack.
const DEVICE_RESERVE: u64 = 1 << 20;
/// Shipment-manifest bytes counted per file (a JSON line, a SHA256SUMS line, a BOM line).
const SHIPMENT_BYTES_PER_FILE: u64 = 512;

/// Exports the job's manifest (planning first when it has none) onto `opts.devices`.
/// `src` and the devices' adapters count and pool their buffers in `run`.
pub async fn export(
    job: &mut Job,
    src: Arc<dyn Provider>,
    opts: ExportOptions,
    stats: Arc<Stats>,
    run: &Arc<ferry_providers::RunContext>,
) -> Result<ExportSummary> {
    let started = Instant::now();
    // A disk layout places one file per key: a device cannot hold a key's versions.
    if job.all_versions() {
        let location = job.destination.to_string();
        return Err(EngineError::AllVersions { side: "destination", location, refusal: crate::VersionsRefusal::Unsupported });
    }
    let devices = open_devices(&opts.devices)?;
    // Planning takes the job's lock: only then may this run touch what a run of the job left on
    // its devices, and a check never does.
    let planned = crate::plan(job, src.as_ref(), &stats).await?;
    if !opts.check {
        for d in &devices {
            release_reserve(&d.root)?;
        }
    }
    let generation = planned.generation;
    let (dir, opened) = open_journal(job, &opts, generation).await?;
    let journal = opened.as_ref();
    seed(job, journal, &opts.layout, generation).await?;
    let (findings, findings_file) = findings(job, journal, opts.check, FINDINGS_KEPT).await?;
    let numbered = number_devices(journal, &devices, opts.check).await?;
    let given = &numbered.given;
    let counts = journal.counts().await?;
    let mut summary = new_summary(job, &opts, generation, journal, &counts, findings).await?;
    summary.findings_file = findings_file;
    // Each device also carries the manifest generation (see [`ship_manifest`]).
    let manifest_bytes = manifest_bytes(&job.generation_dir(generation))?;
    let mut room = room_left(journal, given, manifest_bytes).await?;
    if opts.check {
        check_packing(journal, given, &mut room, &mut summary).await?;
        summary.seconds = started.elapsed().as_secs_f64();
        return Ok(summary);
    }
    stats.start(&counts);
    let shared = shared(opened.clone(), ferry_journal::RunKind::Export, generation, &opts.copy, &stats, run).await?;
    write_devices(&shared, src, given, &mut room, manifest_bytes, &opts.copy, &mut summary).await?;
    summary.devices = write_shipments(job, journal, &dir, &numbered, &room, &opts.layout, generation).await?;
    summary.seconds = started.elapsed().as_secs_f64();
    let report = serde_json::to_value(&summary).expect("summary serializes");
    summary.report = Some(job.write_report("export", &report)?);
    Ok(summary)
}

/// Opens the devices given, each on its own file system, no more than a shipment numbers.
fn open_devices(roots: &[PathBuf]) -> Result<Vec<Device>> {
    if roots.len() > shipment::MAX_DEVICES as usize {
        return Err(ApplianceError::TooManyDevices { given: roots.len(), max: shipment::MAX_DEVICES, across_runs: false }.into());
    }
    let devices = roots.iter().map(|d| open_device(d)).collect::<Result<Vec<_>>>()?;
    // Two roots on one file system share one free space: packing would count it twice.
    for (i, a) in devices.iter().enumerate() {
        if let Some(b) = devices[..i].iter().find(|b| b.fs == a.fs) {
            return Err(ApplianceError::SameFileSystem { first: b.root.clone(), second: a.root.clone() }.into());
        }
    }
    Ok(devices)
}

/// The export's directory and journal, checked to be for this layout and manifest generation.
async fn open_journal(job: &mut Job, opts: &ExportOptions, generation: u32) -> Result<(PathBuf, Arc<dyn Journal>)> {
    let dir = job.dir.join("export");
    std::fs::create_dir_all(&dir).map_err(EngineError::io(&dir))?;
    // A check works on a scratch journal (every finding kept until the next check): it may try
    // every layout on a job whose export is under way with one of them.
    let kind = if opts.check { JournalKind::ExportCheck } else { JournalKind::Export };
    if opts.check {
        job.remove_journal(kind)?;
    }
    let journal = job.journal(kind).await?;
    let layout_text = serde_json::to_string(&opts.layout).expect("layout serializes");
    check_same(journal.as_ref(), "layout", &layout_text, "layout").await?;
    check_same(journal.as_ref(), "generation", &generation.to_string(), "manifest generation").await?;
    Ok((dir, journal))
}

/// Maps every key once: paths, renames and refusals are journaled, and later runs read them
/// from there instead of the manifest.
async fn seed(job: &Job, journal: &dyn Journal, layout: &Layout, generation: u32) -> Result<()> {
    if journal.meta("seeded").await?.is_some() {
        return Ok(());
    }
    let reader = ManifestReader::open(&job.generation_dir(generation))?;
    let (mut batches, read) = crate::plan::read_batches(reader);
    while let Some(batch) = batches.recv().await {
        let routed: Vec<RoutedEntry> = batch
            .into_iter()
            .map(|entry| {
                // A skipped entry is journaled as skipped, with no path on any device.
                let placement = entry.skipped.is_none().then(|| layout.place(&entry.key, entry.size));
                let (dst_path, refused, renamed) = match placement {
                    None => (None, None, None),
                    Some(Placement::Path(p)) => (Some(p), None, None),
                    Some(Placement::Renamed { path, reason }) => (Some(path), None, Some(reason)),
                    Some(Placement::Refused(reason)) => (None, Some(reason), None),
                };
                RoutedEntry { entry, route: Route { dst_path, ..Route::default() }, refused, renamed }
            })
            .collect();
        journal.seed_routed(generation, &routed).await?;
    }
    read.await.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
    journal.index_routes().await?;
    for (id, _key, reason) in journal.path_conflicts(layout.case_insensitive()).await? {
        journal.refuse(id, &reason).await?;
    }
    journal.set_meta("layout", &serde_json::to_string(layout).expect("layout serializes")).await?;
    journal.set_meta("generation", &generation.to_string()).await?;
    journal.set_meta("export_id", &uuid::Uuid::new_v4().to_string()).await?;
    journal.set_meta("seeded", "1").await?;
    Ok(())
}

/// The renames and refusals, in key order, the first `kept` of them; when there are more, every
/// one is also written to a file in the job's reports (a line each, as `ferry export` prints
/// them), whose path comes second.
async fn findings(job: &Job, journal: &dyn Journal, check: bool, kept: usize) -> Result<(Vec<Finding>, Option<PathBuf>)> {
    let page = |after: String| async move {
        let rows = journal.noted(&after, 1024).await?;
        Ok::<_, EngineError>(
            rows.into_iter()
                .map(|n| match n.refused {
                    Some(reason) => Finding { key: n.key, action: "refused", path: None, reason },
                    None => Finding { key: n.key, action: "renamed", path: n.dst_path, reason: n.renamed.unwrap_or_default() },
                })
                .collect::<Vec<_>>(),
        )
    };
    let mut findings = Vec::new();
    let mut after = String::new();
    while findings.len() <= kept {
        let rows = page(after.clone()).await?;
        let Some(last) = rows.last() else { break };
        after = last.key.clone();
        findings.extend(rows);
    }
    if findings.len() <= kept {
        return Ok((findings, None));
    }
    findings.truncate(kept);
    let (path, file) = job.report_file(if check { "check-findings" } else { "export-findings" }, "txt")?;
    let mut out = std::io::BufWriter::new(file);
    let mut after = String::new();
    loop {
        let rows = page(after.clone()).await?;
        let Some(last) = rows.last() else { break };
        after = last.key.clone();
        for f in rows {
            writeln!(out, "{f}").map_err(EngineError::io(&path))?;
        }
    }
    out.flush().map_err(EngineError::io(&path))?;
    Ok((findings, Some(path)))
}

impl std::fmt::Display for Finding {
    /// `refused: KEY: REASON`, or `renamed: KEY -> PATH: REASON`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{}: {} -> {}: {}", self.action, self.key, path, self.reason),
            None => write!(f, "{}: {}: {}", self.action, self.key, self.reason),
        }
    }
}

/// Numbers the devices given: indexes are stable across runs (matched by path); new ones are
/// appended (and journaled, unless this is a check). Returns every device path the export has
/// had, and each device given with its index.
async fn number_devices<'d>(journal: &dyn Journal, devices: &'d [Device], check: bool) -> Result<Numbered<'d>> {
    let mut known: Vec<String> = journal.meta("devices").await?.map(|t| serde_json::from_str(&t).unwrap_or_default()).unwrap_or_default();
    let mut given = Vec::new();
    for d in devices {
        let text = d.root.to_string_lossy().into_owned();
        let index = match known.iter().position(|k| *k == text) {
            Some(i) => i,
            None => {
                known.push(text);
                known.len() - 1
            }
        };
        given.push((index as u32, d));
    }
    if known.len() > shipment::MAX_DEVICES as usize {
        return Err(ApplianceError::TooManyDevices { given: known.len(), max: shipment::MAX_DEVICES, across_runs: true }.into());
    }
    if !check {
        journal.set_meta("devices", &serde_json::to_string(&known).expect("list serializes")).await?;
    }
    Ok(Numbered { known, given })
}

/// The devices of an export, numbered.
struct Numbered<'d> {
    /// Every device path the export has had, in index order.
    known: Vec<String>,
    /// The devices given to this run, each with its index.
    given: Vec<(u32, &'d Device)>,
}

/// The summary before anything is written: totals, renames and refusals.
async fn new_summary(
    job: &Job,
    opts: &ExportOptions,
    generation: u32,
    journal: &dyn Journal,
    counts: &ferry_journal::StatusCounts,
    findings: Vec<Finding>,
) -> Result<ExportSummary> {
    Ok(ExportSummary {
        source: job.source.to_string(),
        generation,
        layout: opts.layout.kind.to_string(),
        check: opts.check,
        objects_total: counts.objects,
        bytes_total: counts.bytes,
        renamed: journal.renamed_count().await?,
        refused: counts.refused,
        findings,
        findings_file: None,
        unplaced: 0,
        unplaced_bytes: 0,
        copied: 0,
        bytes_copied: 0,
        already_done: counts.done,
        verified_by: BTreeMap::new(),
        failed: 0,
        failures: Vec::new(),
        fidelity: crate::Fidelity::default(),
        stopped_by: None,
        devices: Vec::new(),
        seconds: 0.0,
        report: None,
    })
}

/// The room each device given has for objects not packed yet: its free space less what the
/// objects already packed onto it will take.
async fn room_left(journal: &dyn Journal, given: &[(u32, &Device)], manifest_bytes: u64) -> Result<BTreeMap<u32, Room>> {
    let mut room: BTreeMap<u32, Room> = BTreeMap::new();
    for (index, d) in given {
        let (pending, pending_bytes) = journal.on_device(*index, false).await?;
        let committed = pending_bytes + pending * (d.block + SHIPMENT_BYTES_PER_FILE);
        let reserve = DEVICE_RESERVE + manifest_bytes;
        room.insert(*index, Room { left: d.free.saturating_sub(reserve + committed), block: d.block, full: false });
    }
    Ok(room)
}

/// `--check`: the packing counted, not journaled, into the summary.
async fn check_packing(
    journal: &dyn Journal,
    given: &[(u32, &Device)],
    room: &mut BTreeMap<u32, Room>,
    summary: &mut ExportSummary,
) -> Result<()> {
    let (unplaced, bytes, placed) = pack(journal, room, false).await?;
    (summary.unplaced, summary.unplaced_bytes) = (unplaced, bytes);
    summary.devices = device_summaries(journal, given, room).await?;
    for d in &mut summary.devices {
        let (n, b) = placed.get(&(d.device - 1)).copied().unwrap_or_default();
        (d.pending, d.pending_bytes) = (d.pending + n, d.pending_bytes + b);
    }
    Ok(())
}

/// Packs and writes; a device that fills up is closed and what it did not take is packed again
/// onto the others. The outcome goes into `summary`.
async fn write_devices(
    shared: &Shared,
    src: Arc<dyn Provider>,
    given: &[(u32, &Device)],
    room: &mut BTreeMap<u32, Room>,
    manifest_bytes: u64,
    opts: &CopyOptions,
    summary: &mut ExportSummary,
) -> Result<()> {
    let (journal, run) = (&shared.journal, &shared.run);
    let movers: BTreeMap<u32, Arc<Mover>> = given
        .iter()
        .map(|(index, d)| {
            let dst = ferry_providers::open_local(d.location.clone(), run);
            let mover = Mover::new(src.clone(), dst, shared, opts);
            (*index, Arc::new(mover))
        })
        .collect();
    let router = ToDevices { movers, full: Mutex::default() };

    // Each round closes a device or ends, so there are at most devices + 1.
    for round in 0..=given.len() {
        pack(journal.as_ref(), room, true).await?;
        if round == 0 {
            // Room for the shipment files is taken now, so a device that fills up can still
            // say what it holds.
            for (index, d) in given {
                let (pending, _) = journal.on_device(*index, false).await?;
                let (done, _) = journal.on_device(*index, true).await?;
                take_reserve(&d.root, (pending + done) * SHIPMENT_BYTES_PER_FILE + manifest_bytes + (64 << 10));
            }
        }
        let pass = run_pass(journal, opts.transfers, run, &router).await?;
        summary.copied += pass.copied;
        summary.bytes_copied += pass.bytes;
        summary.failures.extend(pass.failures);
        summary.stopped_by = pass.stopped_by;
        let refilled = !pass.handed_back.is_empty();
        for id in pass.handed_back {
            journal.place(id, None).await?;
        }
        for device in router.full.lock().expect("full lock").iter() {
            if let Some(r) = room.get_mut(device) {
                r.full = true;
            }
        }
        if summary.stopped_by.is_some() || !refilled {
            break;
        }
    }
    let (unplaced, bytes, _) = pack(journal.as_ref(), room, false).await?;
    (summary.unplaced, summary.unplaced_bytes) = (unplaced, bytes);
    summary.failures.sort_by(|a, b| a.key.cmp(&b.key));
    summary.failed = summary.failures.len() as u64;
    for mover in router.movers.values() {
        mover.take_verified(&mut summary.verified_by);
        // A device keeps no headers or metadata, but the shipment carries them: only what it
        // does not carry is said.
        let mut carried = mover.fidelity.take();
        carried.pair_limits.retain(|l| *l != crate::fidelity::PairLimit::NoMetadata);
        summary.fidelity.absorb(carried);
    }
    Ok(())
}

/// A shipment manifest on every device given, for what it holds now (a copy of each in
/// `JOB/export/shipments/`); returns the devices' summaries.
async fn write_shipments(
    job: &Job,
    journal: &dyn Journal,
    dir: &Path,
    devices: &Numbered<'_>,
    room: &BTreeMap<u32, Room>,
    layout: &Layout,
    generation: u32,
) -> Result<Vec<DeviceSummary>> {
    let Numbered { known, given } = devices;
    let export_id = journal.meta("export_id").await?.unwrap_or_default();
    let manifest_sha256 = shipment::file_sha256(&ferry_manifest::ManifestHeader::path(&job.generation_dir(generation)))?;
    let counts = journal.counts().await?;
    let copies = dir.join("shipments");
    std::fs::create_dir_all(&copies).map_err(EngineError::io(&copies))?;
    let mut devices_out = device_summaries(journal, given, room).await?;
    for (summary_device, (index, d)) in devices_out.iter_mut().zip(given.iter()) {
        release_reserve(&d.root)?;
        let (files, bytes) = journal.on_device(*index, true).await?;
        let header = ShipmentHeader {
            format: shipment::FORMAT.into(),
            export_id: export_id.clone(),
            source: job.source.to_string(),
            generation,
            manifest_sha256: manifest_sha256.clone(),
            layout: serde_json::to_value(layout).expect("layout serializes"),
            device: index + 1,
            devices: known.len() as u32,
            label: d.root.to_string_lossy().into_owned(),
            files,
            bytes,
            pending_elsewhere: counts.objects - counts.done,
            created_at: chrono::Utc::now(),
        };
        // The manifest first: a device's shipment manifest is written last, over what it holds.
        ship_manifest(&job.generation_dir(generation), &d.root, generation)
            .map_err(|e| ApplianceError::ShipmentWrite { device: d.root.clone(), source: Box::new(e) })?;
        let copy = copies.join(format!("device-{}.jsonl", index + 1));
        // A shipment already on the device for exactly this content keeps its digest: an export
        // run again with nothing to write does not change what was printed for custody.
        let digest = match unchanged_shipment(&d.root, &copy, &header) {
            Some(digest) => digest,
            None => {
                let digest = write_shipment(journal, *index, &d.root, &header, layout.kind.name().starts_with("databox"))
                    .await
                    .map_err(|e| ApplianceError::ShipmentWrite { device: d.root.clone(), source: Box::new(e) })?;
                std::fs::copy(d.root.join(shipment::SHIPMENT_FILE), &copy).map_err(EngineError::io(&copy))?;
                digest
            }
        };
        summary_device.shipment = Some(d.root.join(shipment::SHIPMENT_FILE));
        summary_device.shipment_sha256 = Some(digest);
    }
    Ok(devices_out)
}

/// The bytes of sealed generation `dir` (its header, shards and change set).
fn manifest_bytes(dir: &Path) -> Result<u64> {
    let header = ferry_manifest::ManifestHeader::read(dir)?;
    let path = ferry_manifest::ManifestHeader::path(dir);
    let own = std::fs::metadata(&path).map_err(EngineError::io(&path))?.len();
    Ok(own + header.shards.iter().chain(&header.changes).chain(&header.tables).map(|s| s.bytes).sum::<u64>())
}

/// Copies sealed generation `gen_dir` onto the device, as `ferry-manifest/gen-NNNN/` at its
/// root (a temp folder, each file fsynced, then renamed): the source's identity of every
/// object (entity tag, version, checksums, times), which the ingest adopts so that a delta from
/// the source after it finds what changed since the export. The shipment header's
/// `manifest_sha256` is its header's digest: a device cannot carry another manifest unnoticed.
/// A device that holds it already is left as it is.
fn ship_manifest(gen_dir: &Path, root: &Path, generation: u32) -> Result<()> {
    use ferry_manifest::ManifestHeader;
    let folder = root.join(ferry_core::layout::SHIPPED_MANIFEST_DIR);
    let target = folder.join(ManifestHeader::dir_name(generation));
    let digest = shipment::file_sha256(&ManifestHeader::path(gen_dir))?;
    if shipment::file_sha256(&ManifestHeader::path(&target)).is_ok_and(|d| d == digest) {
        return Ok(());
    }
    // Never written through a link planted on the device in the folder's place.
    if std::fs::symlink_metadata(&folder).is_ok_and(|m| !m.is_dir()) {
        let source = std::io::Error::new(std::io::ErrorKind::AlreadyExists, "not a plain folder (a link or a file): remove it");
        return Err(EngineError::Io { path: folder, source });
    }
    let header = ManifestHeader::read(gen_dir)?;
    let tmp = folder.join(format!("{}.tmp", ManifestHeader::dir_name(generation)));
    for stale in [&tmp, &target] {
        if stale.exists() {
            std::fs::remove_dir_all(stale).map_err(EngineError::io(stale))?;
        }
    }
    std::fs::create_dir_all(&tmp).map_err(EngineError::io(&tmp))?;
    let files = header.shards.iter().chain(&header.changes).chain(&header.tables).map(|s| s.file.as_str());
    for file in files.chain([ferry_manifest::header::HEADER_FILE]) {
        let (from, to) = (gen_dir.join(file), tmp.join(file));
        std::fs::copy(&from, &to).map_err(EngineError::io(&to))?;
        std::fs::File::open(&to).and_then(|f| f.sync_all()).map_err(EngineError::io(&to))?;
    }
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(EngineError::io(&tmp))?;
    std::fs::rename(&tmp, &target).map_err(EngineError::io(&target))?;
    std::fs::File::open(&folder).and_then(|f| f.sync_all()).map_err(EngineError::io(&folder))
}

/// One mover per device; a device that fills up (ENOSPC) is closed for the rest of the pass,
/// and the objects it did not take are handed back to be packed onto the others.
struct ToDevices {
    movers: BTreeMap<u32, Arc<Mover>>,
    /// Devices that filled up.
    full: Mutex<BTreeSet<u32>>,
}

impl Router for ToDevices {
    fn mover(&self, row: &ObjectRow) -> Option<Arc<Mover>> {
        row.route.device.and_then(|d| self.movers.get(&d).cloned())
    }

    fn closed(&self, row: &ObjectRow) -> bool {
        row.route.device.is_some_and(|d| self.full.lock().expect("full lock").contains(&d))
    }

    fn close_on(&self, row: &ObjectRow, error: &ObjectError) -> bool {
        let Some(d) = row.route.device.filter(|_| error.full) else { return false };
        self.full.lock().expect("full lock").insert(d);
        true
    }
}

/// A device root given with `--to`, and its free space now (read only: opening a device
/// writes nothing to it).
struct Device {
    root: PathBuf,
    /// The file system's device number.
    fs: u64,
    location: Location,
    free: u64,
    block: u64,
}

fn open_device(root: &Path) -> Result<Device> {
    let root = std::path::absolute(root).map_err(EngineError::io(root))?;
    if !root.is_dir() {
        return Err(ApplianceError::NoDevice { device: root }.into());
    }
    let location = Location::parse(&root.to_string_lossy())?;
    let space = LocalProvider::new(location.clone()).space().map_err(|source| EngineError::Provider { side: "device", source })?;
    let fs = std::os::unix::fs::MetadataExt::dev(&std::fs::metadata(&root).map_err(EngineError::io(&root))?);
    // A reserve left by an earlier run is free space to this one: it is released once the job's
    // lock is held (never by a check), so it is not touched here.
    let reserved = std::fs::symlink_metadata(root.join(RESERVE_FILE))
        .ok()
        .filter(|m| m.is_file())
        .map_or(0, |m| std::os::unix::fs::MetadataExt::blocks(&m) * 512);
    Ok(Device { root, fs, location, free: space.available + reserved, block: space.block })
}

/// Objects and bytes packed onto each device (by index).
type Packed = BTreeMap<u32, (u64, u64)>;

/// Space set aside on a device for its shipment files (a name listings skip).
const RESERVE_FILE: &str = ".shipment-reserve.ferry-tmp-0";

/// Sets `bytes` aside on the device (really allocated, not a sparse file). Best effort: a
/// device already too full to hold it gets none.
fn take_reserve(root: &Path, bytes: u64) {
    use std::io::Write;
    let path = root.join(RESERVE_FILE);
    let taken = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&path)?;
        if rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, bytes).is_err() {
            let zeros = vec![0u8; 64 << 10];
            let mut left = bytes;
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                f.write_all(&zeros[..n])?;
                left -= n as u64;
            }
        }
        f.sync_all()
    })();
    if taken.is_err() {
        let _ = std::fs::remove_file(&path);
    }
}

fn release_reserve(root: &Path) -> Result<()> {
    let path = root.join(RESERVE_FILE);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(EngineError::Io { path, source: e }),
        _ => Ok(()),
    }
}

/// What is left on a device for objects not packed yet.
struct Room {
    left: u64,
    block: u64,
    full: bool,
}

/// Packs the objects not on a device yet, largest first, each onto the first device (most
/// room first) it fits; `persist`: journal the placement (else only count, for `--check`).
/// Returns what did not fit (objects, bytes) and what went on each device (objects, bytes).
async fn pack(journal: &dyn Journal, room: &mut BTreeMap<u32, Room>, persist: bool) -> Result<(u64, u64, Packed)> {
    let mut order: Vec<u32> = room.iter().filter(|(_, r)| !r.full).map(|(i, _)| *i).collect();
    order.sort_by_key(|i| std::cmp::Reverse(room[i].left));
    let mut simulated: BTreeMap<u32, u64> = BTreeMap::new();
    let mut placed = Packed::new();
    let (mut unplaced, mut unplaced_bytes) = (0, 0);
    let mut after = None;
    loop {
        let batch = journal.unplaced(after, 4096).await?;
        let Some(last) = batch.last() else { break };
        after = Some((last.1, last.0));
        let mut placements = Vec::new();
        for (id, size) in batch {
            let target = order.iter().copied().find(|i| {
                let r = &room[i];
                size.div_ceil(r.block) * r.block + SHIPMENT_BYTES_PER_FILE <= r.left
            });
            match target {
                Some(i) => {
                    let r = room.get_mut(&i).expect("device in order");
                    let cost = size.div_ceil(r.block) * r.block + SHIPMENT_BYTES_PER_FILE;
                    r.left -= cost;
                    *simulated.entry(i).or_default() += cost;
                    let on = placed.entry(i).or_default();
                    (on.0, on.1) = (on.0 + 1, on.1 + size);
                    placements.push((id, i));
                }
                None => {
                    unplaced += 1;
                    unplaced_bytes += size;
                }
            }
        }
        // On disk before any file is written to a device for them.
        if persist {
            journal.place_all(&placements).await?;
        }
    }
    if !persist {
        // A check leaves the room as it found it.
        for (i, cost) in simulated {
            room.get_mut(&i).expect("device").left += cost;
        }
    }
    Ok((unplaced, unplaced_bytes, placed))
}

async fn device_summaries(journal: &dyn Journal, given: &[(u32, &Device)], room: &BTreeMap<u32, Room>) -> Result<Vec<DeviceSummary>> {
    let mut out = Vec::with_capacity(given.len());
    for (index, d) in given {
        let (pending, pending_bytes) = journal.on_device(*index, false).await?;
        let (done, done_bytes) = journal.on_device(*index, true).await?;
        out.push(DeviceSummary {
            device: index + 1,
            path: d.root.clone(),
            free: d.free,
            pending,
            pending_bytes,
            done,
            done_bytes,
            full: room.get(index).is_some_and(|r| r.full),
            shipment: None,
            shipment_sha256: None,
        });
    }
    Ok(out)
}

/// Writes the shipment files of device `index` at `root` from the journal; returns the digest.
async fn write_shipment(journal: &dyn Journal, index: u32, root: &Path, header: &ShipmentHeader, bom: bool) -> Result<String> {
    let mut writer = ShipmentWriter::create(root, header, bom)?;
    let mut after = String::new();
    loop {
        let rows = journal.done_on_device(index, &after, 4096).await?;
        let Some(last) = rows.last() else { break };
        after = last.dst_key().to_string();
        for row in rows {
            // What the source gave the read that copied the bytes (a listing may carry none of
            // it); a row copied by an older ferry falls back to what its listing carried.
            let attrs = row.src_attrs.clone().unwrap_or_else(|| ferry_core::headers::Attrs {
                content_type: row.entry.content_type.clone(),
                headers: row.entry.headers.clone(),
                metadata: row.entry.metadata.clone(),
            });
            writer.push(&ShipmentFile {
                path: row.dst_key().to_string(),
                key: row.entry.key.clone(),
                size: row.entry.size,
                sha256: row.copied.sha256.clone().unwrap_or_default(),
                crc64nvme: row.copied.crc64nvme.clone().unwrap_or_default(),
                crc32c: row.copied.crc32c.clone().unwrap_or_default(),
                content_type: attrs.content_type,
                metadata: attrs.metadata,
                headers: attrs.headers,
            })?;
        }
    }
    Ok(writer.finish()?)
}

/// The digest of the shipment manifest on the device when it is the one this job wrote last
/// (same bytes as the job's copy) and describes the same content as `header` would.
fn unchanged_shipment(root: &Path, copy: &Path, header: &ShipmentHeader) -> Option<String> {
    let (old, _) = shipment::read(root).ok()?;
    let same = (old.export_id == header.export_id)
        && (old.device, old.devices, old.files, old.bytes, old.pending_elsewhere)
            == (header.device, header.devices, header.files, header.bytes, header.pending_elsewhere);
    let digest = shipment::digest(root).ok()?;
    (same && shipment::file_sha256(copy).ok()? == digest && root.join(shipment::SUMS_FILE).is_file()).then_some(digest)
}

async fn check_same(journal: &dyn Journal, name: &str, value: &str, what: &'static str) -> Result<()> {
    match journal.meta(name).await? {
        Some(was) if was != value => Err(ApplianceError::OptionChanged { what, was }.into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::ObjectEntry;

    // Issue 13 review: `ferry export` printed every rename and refusal, past 100,000 too (read
    // from the journal). The summary keeps the first ones; every one goes to a file beside the
    // reports, which the command points to.
    #[tokio::test]
    async fn findings_past_those_kept_are_written_to_a_file_in_the_job_s_reports() {
        let dir = tempfile::tempdir().unwrap();
        let mut job = Job::open(
            &dir.path().join("job"),
            Some(Location::parse("s3://src/").unwrap()),
            Some(Location::parse("s3://dst/").unwrap()),
            crate::Access::default(),
        )
        .unwrap();
        job.persist().unwrap();
        let journal = job.journal(JournalKind::Export).await.unwrap();
        let refused = |key: &str| RoutedEntry {
            entry: ObjectEntry { key: key.into(), size: 1, ..Default::default() },
            route: Route::default(),
            refused: Some("too long".into()),
            renamed: None,
        };
        let renamed = RoutedEntry {
            route: Route { dst_path: Some("x/b~1".into()), ..Route::default() },
            refused: None,
            renamed: Some("reserved name".into()),
            ..refused("b")
        };
        journal.seed_routed(1, &[refused("a"), renamed, refused("c"), refused("d")]).await.unwrap();

        let (all, file) = findings(&job, journal.as_ref(), false, 4).await.unwrap();
        assert_eq!((all.len(), file), (4, None), "no more than kept: no file");
        let (kept, file) = findings(&job, journal.as_ref(), false, 2).await.unwrap();
        assert_eq!(kept.iter().map(|f| f.key.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        let file = file.expect("a file with every finding");
        assert!(file.starts_with(dir.path().join("job/reports")), "{}", file.display());
        let lines = std::fs::read_to_string(&file).unwrap();
        assert_eq!(
            lines.lines().collect::<Vec<_>>(),
            ["refused: a: too long", "renamed: b -> x/b~1: reserved name", "refused: c: too long", "refused: d: too long"]
        );
    }
}
