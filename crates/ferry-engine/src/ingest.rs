//! Ingest: shipped disks into a cloud destination, every file proved against its shipment.
//!
//! ```text
//! ferry-shipment.jsonl on each device ──check digest, same export──▶ manifest gen 1 + journal
//!   (key = the object's key; route = device + path there + the SHA-256/CRC64 shipped)
//!   ──▶ mover per device (parallel, checksummed, resumable) ──▶ destination
//! ```
//! Each file's bytes are hashed as they are read and compared with the shipment manifest before
//! the object is committed at the destination: a file altered in transit is never written as
//! good, and is named. Files the shipment lists but the device lacks are `missing`; files on
//! the device the shipment does not list are `extra` (not uploaded). The job records which
//! export, source and manifest generation the shipment came from (`JOB/shipment.json` and the
//! journal), so a later delta from the original source knows where to start.
//!
//! The export also ships its manifest generation (`ferry-manifest/gen-NNNN/` on each device),
//! hashed into every shipment header. The ingest checks it and refuses one that is not the
//! shipment's, then gives each seeded row the source's identity of its object (entity tag,
//! version, times, checksums, metadata). A delta of the ingest job ([`follow_source`]) then lists
//! that source and finds exactly what changed there since the export.

use crate::error::ApplianceError;
use crate::mover::Mover;
use crate::options::{CopyOptions, Failure};
use crate::scheduler::{Router, run_pass, shared};
use crate::{EngineError, Job, Result, Stats};
use ferry_core::layout::{SHIPPED_MANIFEST_DIR, reserved_on_device};
use ferry_core::{Checksums, Evidence, FailureKind, Location, ObjectEntry};
use ferry_journal::{Journal, JournalKind, ObjectRow, Route, RoutedEntry};
use ferry_manifest::shipment::{self, ShipmentHeader};
use ferry_manifest::{ManifestReader, ManifestWriter};
use ferry_providers::Provider;
use ferry_providers::local::LocalProvider;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Device roots (the shipped disks, mounted), any order.
    pub devices: Vec<PathBuf>,
    /// Shipment digests printed at export: a device whose shipment manifest hashes to none of
    /// them is refused before anything is read. Empty: not checked.
    pub expect_digests: Vec<String>,
    pub copy: CopyOptions,
}

/// One device's shipment manifest as found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShipmentSeen {
    pub device: u32,
    pub path: PathBuf,
    /// Where the device was mounted at export.
    pub label: String,
    pub files: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// Where the shipment came from: recorded in the ingest job for the delta that follows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Provenance {
    pub export_id: String,
    pub source: String,
    pub generation: u32,
    pub manifest_sha256: String,
    pub devices: u32,
    pub shipments: Vec<ShipmentSeen>,
    /// Objects that took on the source's identity from the manifest the devices carried;
    /// `None`: they carried none (an export by an older ferry), and no delta can follow.
    #[serde(default)]
    pub identities: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IngestSummary {
    pub destination: String,
    pub provenance: Provenance,
    /// Devices of the export that were not given (their files are not ingested).
    pub devices_missing: Vec<u32>,
    pub objects_total: u64,
    /// `--dry-run`: nothing was uploaded; `pending_bytes` is what would be.
    pub dry_run: bool,
    pub pending_bytes: u64,
    pub copied: u64,
    pub bytes_copied: u64,
    pub already_done: u64,
    pub verified_by: BTreeMap<Evidence, u64>,
    /// Listed by the shipment, not on the device.
    pub missing: Vec<Failure>,
    /// On the device with other bytes than the shipment lists.
    pub altered: Vec<Failure>,
    /// On a device, not in its shipment manifest (`device N: path`); not uploaded.
    pub extra: Vec<String>,
    /// Other failures (the destination refused, …).
    pub failed: u64,
    pub failures: Vec<Failure>,
    /// What the destination did not keep of the headers, metadata and tags the shipment
    /// carried (lost user metadata makes the ingest exit 1, as a copy does).
    pub fidelity: crate::Fidelity,
    pub stopped_by: Option<String>,
    pub seconds: f64,
    pub report: Option<PathBuf>,
}

impl IngestSummary {
    /// Whether the shipment did not arrive as sent.
    pub fn has_differences(&self) -> bool {
        !self.missing.is_empty() || !self.altered.is_empty() || !self.extra.is_empty() || !self.devices_missing.is_empty()
    }
}

const PROVENANCE: &str = "shipment";

/// Reads the shipment manifests on `opts.devices`, and uploads every file they list to `dst`.
/// `dst` and the devices' adapters count and pool their buffers in `run`.
pub async fn ingest(
    job: &mut Job,
    dst: Arc<dyn Provider>,
    opts: IngestOptions,
    stats: Arc<Stats>,
    run: &Arc<ferry_providers::RunContext>,
) -> Result<IngestSummary> {
    let started = Instant::now();
    // A shipped disk holds one file per key: no versions to copy.
    if job.all_versions() {
        let location = job.source.to_string();
        return Err(EngineError::AllVersions { side: "source", location, refusal: crate::VersionsRefusal::Unsupported });
    }
    let (mut provenance, roots) = read_shipments(&opts)?;
    // Checked before the job is made: a device carrying another manifest is refused.
    let shipped = shipped_manifest(&provenance, &roots)?;
    job.persist()?;
    let journal = job.journal(JournalKind::Main).await?;
    if let Some(source) = journal.meta(LEFT_DEVICES).await? {
        return Err(ApplianceError::IngestAfterDelta { job: job.dir.clone(), reads_from: source }.into());
    }
    match journal.meta(PROVENANCE).await? {
        None => seed(job, journal.as_ref(), &mut provenance, &roots, shipped).await?,
        Some(text) => {
            let seeded: Provenance =
                serde_json::from_str(&text).map_err(|e| ApplianceError::ShipmentRecord { job: job.dir.clone(), detail: e.to_string() })?;
            provenance.identities = seeded.identities;
            if seeded.export_id != provenance.export_id {
                return Err(ApplianceError::OtherExport { disks: provenance.export_id, job: seeded.export_id }.into());
            }
            let known: BTreeSet<u32> = seeded.shipments.iter().map(|s| s.device).collect();
            if let Some(s) = provenance.shipments.iter().find(|s| !known.contains(&s.device)) {
                return Err(ApplianceError::DeviceNotInJob { device: s.path.clone(), index: s.device }.into());
            }
        }
    }
    let given: BTreeSet<u32> = provenance.shipments.iter().map(|s| s.device).collect();
    let devices_missing: Vec<u32> = (1..=provenance.devices).filter(|d| !given.contains(d)).collect();

    let mut extra = Vec::new();
    for (device, root) in &roots {
        find_extras(journal.as_ref(), *device, root, &mut extra).await?;
    }

    let counts = journal.counts().await?;
    let mut summary = IngestSummary {
        destination: job.destination.to_string(),
        provenance,
        devices_missing,
        objects_total: counts.objects,
        dry_run: opts.copy.dry_run,
        pending_bytes: counts.bytes - counts.done_bytes,
        copied: 0,
        bytes_copied: 0,
        already_done: counts.done,
        verified_by: BTreeMap::new(),
        missing: Vec::new(),
        altered: Vec::new(),
        extra,
        failed: 0,
        failures: Vec::new(),
        fidelity: crate::Fidelity::default(),
        stopped_by: None,
        seconds: 0.0,
        report: None,
    };
    if opts.copy.dry_run {
        summary.seconds = started.elapsed().as_secs_f64();
        return Ok(summary);
    }
    stats.start(&counts);
    let shared = shared(journal, ferry_journal::RunKind::Ingest, job.latest_generation().unwrap_or(1), &opts.copy, &stats, run).await?;
    let journal = shared.journal.clone();
    let movers: BTreeMap<u32, Arc<Mover>> = roots
        .iter()
        .map(|(device, root)| {
            let location = Location::parse(&root.to_string_lossy())?;
            let src = ferry_providers::open_local(location, run);
            let mover = Mover::new(src, dst.clone(), &shared, &opts.copy);
            Ok((device - 1, Arc::new(mover)))
        })
        .collect::<Result<_>>()?;
    let router = FromDevices(movers);
    let pass = run_pass(&journal, opts.copy.transfers, run, &router).await?;
    (summary.copied, summary.bytes_copied, summary.stopped_by) = (pass.copied, pass.bytes, pass.stopped_by);
    summary.pending_bytes = summary.pending_bytes.saturating_sub(pass.bytes);
    for f in pass.failures {
        match f.kind {
            FailureKind::SourceGone => summary.missing.push(f),
            FailureKind::AlteredInShipment => summary.altered.push(f),
            _ => summary.failures.push(f),
        }
    }
    summary.failed = summary.failures.len() as u64;
    for mover in router.0.values() {
        mover.take_verified(&mut summary.verified_by);
        summary.fidelity.absorb(mover.fidelity.take());
    }
    summary.seconds = started.elapsed().as_secs_f64();
    let report = serde_json::to_value(&summary).expect("summary serializes");
    summary.report = Some(job.write_report("ingest", &report)?);
    Ok(summary)
}

/// One mover per shipped device, each reading the files of its own device. No route closes: a
/// destination that fills up fails its objects like any other error.
struct FromDevices(BTreeMap<u32, Arc<Mover>>);

impl Router for FromDevices {
    fn mover(&self, row: &ObjectRow) -> Option<Arc<Mover>> {
        row.route.device.and_then(|d| self.0.get(&d).cloned())
    }
}

/// The shipments on the given devices, checked to be one export's, each device once.
fn read_shipments(opts: &IngestOptions) -> Result<(Provenance, Vec<(u32, PathBuf)>)> {
    let mut first: Option<ShipmentHeader> = None;
    let mut shipments = Vec::new();
    let mut roots = Vec::new();
    for root in &opts.devices {
        let root = std::path::absolute(root).map_err(EngineError::io(root))?;
        if !root.join(shipment::SHIPMENT_FILE).is_file() {
            return Err(ApplianceError::NoShipment { device: root }.into());
        }
        let digest = shipment::digest(&root)?;
        if !opts.expect_digests.is_empty() && !opts.expect_digests.iter().any(|d| d.eq_ignore_ascii_case(&digest)) {
            return Err(ApplianceError::UnexpectedDigest { device: root, digest }.into());
        }
        // Every count the shipment declares is checked against its lines before it is used.
        let header = shipment::read_checked(&root)?;
        if let Some(f) = &first {
            if f.export_id != header.export_id {
                return Err(ApplianceError::MixedExports { device: root, export: header.export_id, others: f.export_id.clone() }.into());
            }
            if f.devices != header.devices {
                return Err(ApplianceError::DeviceCountDiffers { device: root, says: header.devices, other: f.devices }.into());
            }
            if roots.iter().any(|(d, _)| *d == header.device) {
                return Err(ApplianceError::DeviceTwice { device: root, index: header.device }.into());
            }
        }
        shipments.push(ShipmentSeen {
            device: header.device,
            path: root.clone(),
            label: header.label.clone(),
            files: header.files,
            bytes: header.bytes,
            sha256: digest,
        });
        roots.push((header.device, root));
        first.get_or_insert(header);
    }
    let header = first.ok_or(ApplianceError::NoDevices)?;
    let provenance = Provenance {
        export_id: header.export_id,
        source: header.source,
        generation: header.generation,
        manifest_sha256: header.manifest_sha256,
        devices: header.devices,
        shipments,
        identities: None,
    };
    Ok((provenance, roots))
}

/// Where the shipment an ingest job took in came from (`JOB/shipment.json`), if it is one.
pub(crate) fn shipped_from(job: &Job) -> Option<String> {
    let text = std::fs::read(job.dir.join("shipment.json")).ok()?;
    let provenance: serde_json::Value = serde_json::from_slice(&text).ok()?;
    Some(provenance["source"].as_str().unwrap_or("the exported source").to_string())
}

/// The journal's meta entry naming the source an ingest job reads from since its first delta.
const LEFT_DEVICES: &str = "left_devices";

/// Makes an ingest job's source the one its shipment was exported from, for a delta (or a
/// cutover): objects are read from that source by key from now on. A job that is not an
/// ingest's is left as it is. Refused ([`EngineError::DeltaOfIngest`]) when the shipment
/// carried no manifest to take the source's identity from: without it, a delta could not tell
/// an object rewritten at its old size from one left alone.
///
/// In two steps, so that nothing is kept before the run's checks have passed: `commit: false`
/// makes the job read from that source for this run only (a dry run stops there); `commit:
/// true`, once the providers are open, writes `job.toml` with it, then, in one commit, forgets
/// the rows' routes on the disks and marks the job as having left them (a kill between the two
/// leaves a job whose next delta does the second again). A row the shipped manifest gave no
/// identity (its object was shipped at another size than the manifest lists: the export met a
/// newer version) is copied again from the source: nothing tells what it holds.
pub async fn follow_source(job: &mut Job, commit: bool) -> Result<()> {
    if shipped_from(job).is_none() {
        return Ok(());
    }
    let journal = job.journal(JournalKind::Main).await?;
    let Some(text) = journal.meta(PROVENANCE).await? else { return Ok(()) };
    let record = |detail: String| ApplianceError::ShipmentRecord { job: job.dir.clone(), detail };
    let provenance: Provenance = serde_json::from_str(&text).map_err(|e| record(e.to_string()))?;
    let source = Location::parse(&provenance.source).map_err(|e| record(e.to_string()))?;
    let left = journal.meta(LEFT_DEVICES).await?.is_some();
    if !left && provenance.identities.is_none() {
        return Err(EngineError::DeltaOfIngest { dir: job.dir.clone(), shipped_from: provenance.source });
    }
    if !commit {
        (job.source, job.access.source.follow_symlinks) = (source, false);
        return Ok(());
    }
    job.move_source(source)?;
    if !left {
        journal.leave_devices(&[(LEFT_DEVICES.to_string(), provenance.source)]).await?;
    }
    Ok(())
}

/// Builds the job's manifest (generation 1) from the shipments and seeds the journal with each
/// file's route and the checksums it was shipped with; records where the shipment came from.
async fn seed(
    job: &Job,
    journal: &dyn Journal,
    provenance: &mut Provenance,
    roots: &[(u32, PathBuf)],
    shipped: Option<ManifestReader>,
) -> Result<()> {
    let generation = 1;
    let dir = job.generation_dir(generation);
    if dir.exists() {
        // The remains of an ingest cut off while seeding: start again.
        std::fs::remove_dir_all(&dir).map_err(EngineError::io(&dir))?;
    }
    journal.unseed(generation).await?;
    let mut writer = ManifestWriter::create(&dir, generation, None, &job.source.to_string(), &job.destination.to_string())?;
    for (device, root) in roots {
        let (_, files) = shipment::read(root)?;
        let mut batch = Vec::with_capacity(4096);
        for file in files {
            let file = file?;
            let entry = ObjectEntry {
                key: file.key,
                size: file.size,
                content_type: file.content_type,
                metadata: file.metadata,
                headers: file.headers,
                checksums: Checksums { crc64nvme: Some(file.crc64nvme).filter(|c| !c.is_empty()), ..Checksums::default() },
                ..Default::default()
            };
            writer.push(&entry)?;
            let route = Route { device: Some(device - 1), src_path: Some(file.path), dst_path: None, expect_sha256: Some(file.sha256) };
            batch.push(RoutedEntry { entry, route, refused: None, renamed: None });
            if batch.len() == 4096 {
                journal.seed_routed(generation, &std::mem::take(&mut batch)).await?;
            }
        }
        journal.seed_routed(generation, &batch).await?;
    }
    writer.seal()?;
    journal.index_routes().await?;
    if let Some(reader) = shipped {
        provenance.identities = Some(adopt_identities(journal, reader).await?);
    }
    let text = serde_json::to_string_pretty(provenance).expect("provenance serializes");
    let record = job.dir.join("shipment.json");
    std::fs::write(&record, &text).map_err(EngineError::io(&record))?;
    journal.set_meta("seeded_generation", &generation.to_string()).await?;
    journal.set_meta(PROVENANCE, &text).await?;
    Ok(())
}

/// The manifest generation the export shipped (`ferry-manifest/gen-NNNN/` on a device), checked
/// on every device that carries one: its header must hash to the shipment's `manifest_sha256`,
/// and be of the shipment's source and generation; its shards are checked against the header
/// as it is opened. Only regular files are read (a link or a FIFO planted there is refused).
/// `None`: no device carries one.
fn shipped_manifest(provenance: &Provenance, roots: &[(u32, PathBuf)]) -> Result<Option<ManifestReader>> {
    let name = ferry_manifest::ManifestHeader::dir_name(provenance.generation);
    let mut found = None;
    for (_, root) in roots {
        let folder = root.join(SHIPPED_MANIFEST_DIR);
        let dir = folder.join(&name);
        let header = ferry_manifest::ManifestHeader::path(&dir);
        let unreadable = |detail: String| ApplianceError::ShippedManifest { dir: dir.clone(), detail };
        match std::fs::symlink_metadata(&folder) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(unreadable(e.to_string()).into()),
            Ok(m) if !m.is_dir() => return Err(unreadable("not a folder".into()).into()),
            Ok(_) => {}
        }
        if !regular(&dir, true) || !regular(&header, false) {
            return Err(unreadable(format!("no sealed generation {} there (or not a plain folder and file)", provenance.generation)).into());
        }
        let digest = shipment::file_sha256(&header)?;
        if !digest.eq_ignore_ascii_case(&provenance.manifest_sha256) {
            return Err(unreadable(format!(
                "its manifest.json hashes to {digest}, the shipment declares {}: not the manifest this shipment was exported from",
                provenance.manifest_sha256
            ))
            .into());
        }
        found.get_or_insert(dir);
    }
    let Some(dir) = found else { return Ok(None) };
    let unreadable = |detail: String| ApplianceError::ShippedManifest { dir: dir.clone(), detail };
    let header = ferry_manifest::ManifestHeader::read(&dir).map_err(|e| unreadable(e.to_string()))?;
    for shard in header.shards.iter().chain(&header.changes).chain(&header.tables) {
        let plain_name = std::path::Path::new(&shard.file).file_name().is_some_and(|n| n == shard.file.as_str());
        if !plain_name || !regular(&dir.join(&shard.file), false) {
            return Err(unreadable(format!("{:?} is not a plain file in the generation's folder", shard.file)).into());
        }
    }
    if header.generation != provenance.generation || header.source != provenance.source {
        let (generation, source) = (header.generation, header.source);
        return Err(unreadable(format!("it is generation {generation} of {source}, not the shipment's")).into());
    }
    Ok(Some(ManifestReader::open(&dir).map_err(|e| unreadable(e.to_string()))?))
}

/// Whether `path` is a folder (`dir`) or a regular file, not a link to one.
fn regular(path: &std::path::Path, dir: bool) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| if dir { m.is_dir() } else { m.is_file() })
}

/// Gives each seeded row the source's identity of its object, from the shipped manifest read
/// a batch at a time (on the blocking pool). Returns how many rows took one on.
async fn adopt_identities(journal: &dyn Journal, reader: ManifestReader) -> Result<u64> {
    let (mut batches, reading) = crate::plan::read_batches(reader);
    let mut adopted = 0;
    while let Some(batch) = batches.recv().await {
        adopted += journal.adopt_identity(&batch).await?;
    }
    reading.await.expect("the manifest reader does not panic")?;
    Ok(adopted)
}

/// Files on the device its shipment manifest does not list.
async fn find_extras(journal: &dyn Journal, device: u32, root: &std::path::Path, extra: &mut Vec<String>) -> Result<()> {
    let location = Location::parse(&root.to_string_lossy())?;
    let provider = LocalProvider::new(location);
    let mut pages = provider.list();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|source| EngineError::Provider { side: "device", source })?;
        for entry in page {
            // ferry's own temp files (a device's reserve) hold nothing shipped.
            if reserved_on_device(&entry.key) || entry.skipped.is_some_and(|r| !r.is_loss()) {
                continue;
            }
            match entry.skipped {
                Some(reason) => extra.push(format!("device {device}: {} (a {reason}, not a shipped file)", entry.key)),
                None if !journal.has_src_path(device - 1, &entry.key).await? => extra.push(format!("device {device}: {}", entry.key)),
                None => {}
            }
        }
    }
    Ok(())
}
