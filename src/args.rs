//! The command-line interface.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "ferry", version, about = "Plan it, move it fast, prove every byte, resume anything.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List SRC into a sealed manifest in the job directory, and print its totals.
    Plan {
        /// s3://bucket/prefix, gs://bucket/prefix, az://container/prefix, file:///path or a path.
        src: String,
        dst: String,
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        rates: Rates,
    },
    /// Copy what the job's manifest lists (planning first when the job has none yet). SRC may
    /// be a database, `postgres://HOST:PORT/DB` with --table or --schema: its tables are
    /// exported from one snapshot into Parquet files, `DST/<schema>/<table>/part-NNNNN.parquet`,
    /// proved against the database's own figures, e.g. `ferry copy
    /// postgres://127.0.0.1:5432/shop s3://bucket/tables --table public.orders --job DIR`
    /// (the password from PGPASSWORD, ~/.pgpass or a pg_service.conf service, never the URL).
    Copy {
        src: Option<String>,
        dst: Option<String>,
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        tables: TableArgs,
        #[command(flatten)]
        tuning: Tuning,
        #[command(flatten)]
        rates: Rates,
    },
    /// Continue an interrupted copy (the same as `ferry copy --job DIR`).
    Resume {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        tuning: Tuning,
        #[command(flatten)]
        rates: Rates,
    },
    /// Catch up with a live source: list it again into the next manifest generation, copy what
    /// was added or changed since the last one and, with --delete, delete at the destination
    /// what the source no longer has. A delta cut off is finished by the next. Of a table job
    /// exported with --incremental-by, it first exports each table's rows written since into a
    /// new file, `DST/<schema>/<table>/part-gNNNN-00000.parquet` (deletes are not seen).
    Delta {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        tuning: Tuning,
        #[command(flatten)]
        rates: Rates,
        /// Delete at the destination the keys the source no longer has: only after every copy
        /// of the run succeeded, each recorded first (what the destination held) for a rollback.
        #[arg(long)]
        delete: bool,
        /// The most deletes a delta carries out, as a count or a percentage of the objects
        /// (e.g. 500 or 2%) [default: 10% of the objects, at most 10,000]. More are refused
        /// (exit 2, nothing deleted) unless --force-delete.
        #[arg(long, value_name = "N|P%", value_parser = parse_max_delete, requires = "delete")]
        max_delete: Option<ferry_engine::MaxDelete>,
        /// Delete beyond --max-delete, and accept a source that lists no objects at all.
        #[arg(long)]
        force_delete: bool,
        /// Keep going: one delta (one sealed generation) every --interval until SIGINT or
        /// SIGTERM, which stop it between passes (a pass under way finishes first; a second
        /// signal stops at once, and the next delta finishes the pass).
        #[arg(long)]
        watch: bool,
        /// With --watch: the time from the start of one pass to the start of the next.
        #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_interval, requires = "watch")]
        interval: std::time::Duration,
        /// With --watch: stop once a pass found at most N objects to copy (and, with --delete,
        /// no deletes left) and left nothing failed: `--until-lag 0` runs until the source is
        /// quiet.
        #[arg(long, value_name = "N", requires = "watch")]
        until_lag: Option<u64>,
    },
    /// Declare the source frozen and prove the destination equals it: a final delta (deletes
    /// included, within --max-delete), a second listing that must be identical, a verify of the
    /// whole destination, and a cutover record (JSON and text in JOB/reports/) whose SHA-256 is
    /// printed. Exit 0 only if all of it holds (3: the source changed or verify found
    /// differences).
    Cutover {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        tuning: Tuning,
        #[command(flatten)]
        rates: Rates,
        /// Verify by reading every object back (SHA-256 against the copy's).
        #[arg(long)]
        all_bytes: bool,
        /// Verify by reading N randomly chosen objects back besides the quick check of all.
        #[arg(long, value_name = "N", conflicts_with = "all_bytes")]
        sample: Option<u64>,
        /// As for `ferry delta`: the most deletes the final delta carries out.
        #[arg(long, value_name = "N|P%", value_parser = parse_max_delete)]
        max_delete: Option<ferry_engine::MaxDelete>,
        /// As for `ferry delta`.
        #[arg(long)]
        force_delete: bool,
    },
    /// After a cutover that holds: make a job from the new side back to the old (in
    /// --job-out), whose first generation is the new side as it was at cutover, so
    /// `ferry delta --job DIR2` copies back only what is written there after cutover.
    Reverse {
        #[command(flatten)]
        common: Common,
        /// The directory of the reversed job (new).
        #[arg(long, value_name = "DIR2")]
        job_out: PathBuf,
        #[command(flatten)]
        rates: Rates,
    },
    /// Put the destination back as it was before a run (--run ID, and every later run) or as
    /// generation N left it (--to-generation N), from the write ledger: objects ferry created
    /// are deleted, objects it overwrote or deleted are copied back from --backup-to or from
    /// the destination's own versions (S3 versioning, GCS object versioning). Each key that
    /// cannot be put back, or that another writer changed since, is named (exit 1). The undone
    /// objects are pending again: the next copy or delta moves forward. Journaled: run it again
    /// to finish one that was cut off. Example: `ferry rollback --job DIR --to-generation 1
    /// --dry-run`, then without --dry-run.
    Rollback {
        #[command(flatten)]
        common: Common,
        /// Undo this run and every later one (`--list` shows the runs).
        #[arg(long, value_name = "ID", conflicts_with = "to_generation", required_unless_present_any = ["to_generation", "list"])]
        run: Option<i64>,
        /// Undo every run begun after generation N was the newest (0: every run).
        #[arg(long, value_name = "N")]
        to_generation: Option<u32>,
        /// Print what would be done to each key (also written to JOB/reports/), touching nothing.
        #[arg(long)]
        dry_run: bool,
        /// List the job's runs (id, kind, generation, writes, undone) and exit.
        #[arg(long, conflicts_with_all = ["run", "to_generation", "dry_run"])]
        list: bool,
        /// Keys undone at once.
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=4096))]
        transfers: u16,
        #[command(flatten)]
        rates: Rates,
    },
    /// Compare the destination with the manifest: presence, size, checksum.
    Verify {
        #[command(flatten)]
        common: Common,
        /// Read every object back and compare its SHA-256 with the one recorded while copying.
        #[arg(long)]
        all_bytes: bool,
        /// Also read back N randomly chosen objects in full and compare their SHA-256. In a
        /// table job, also fetch N random rows of each table from the database by primary key
        /// and compare them field by field, and look their foreign keys up among the parent
        /// table's exported rows.
        #[arg(long, value_name = "N", conflicts_with = "all_bytes")]
        sample: Option<u64>,
        /// Do not list the destination for objects the manifest does not have (by default each
        /// is reported as `extra`, a difference).
        #[arg(long)]
        no_extra: bool,
        /// Objects checked in parallel (1 to 10000).
        #[arg(long, default_value_t = 32, value_parser = parse_transfers)]
        transfers: usize,
        /// With --all-bytes or --sample: object data read back and held at once, across all
        /// objects (each read is a range of at most 8 MiB).
        #[arg(long, value_parser = parse_max_memory, default_value = "64MiB")]
        max_memory: u64,
        #[command(flatten)]
        rates: Rates,
    },
    /// Abort the multipart uploads a job left open, or sweep a destination for stale ones
    /// (they are billed until aborted).
    #[command(group(clap::ArgGroup::new("what").required(true).args(["dst", "job"])))]
    Clean {
        /// A destination to sweep for uploads older than --older-than, whoever started them
        /// (lists only, unless --abort).
        dst: Option<String>,
        /// The job whose open uploads to abort.
        #[arg(long)]
        job: Option<PathBuf>,
        #[arg(long, value_name = "URL")]
        dst_endpoint: Option<String>,
        /// AWS named profile for an S3 destination.
        #[arg(long, value_name = "NAME")]
        dst_profile: Option<String>,
        /// With DST: how old an upload must be to count as stale, e.g. 24h, 90m, 7d (at most
        /// 36500d).
        #[arg(long, value_parser = parse_duration, default_value = "24h")]
        older_than: std::time::Duration,
        /// With DST: abort what is listed.
        #[arg(long, requires = "dst")]
        abort: bool,
        /// With --job: list the uploads that would be aborted; abort nothing.
        #[arg(long, requires = "job")]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Write the job's manifest onto appliance disks (Data Box, Snowball, Transfer Appliance or
    /// plain) with a shipment manifest on each, planning from SRC first when the job has none.
    Export {
        /// The source to plan from when the job has no manifest yet (a URL or a path).
        src: Option<String>,
        /// A device root (a mounted appliance disk or share); repeat for several. Objects are
        /// packed across them by free space, largest first, never split.
        #[arg(long = "to", value_name = "DIR", required_unless_present = "check")]
        to: Vec<PathBuf>,
        /// The appliance the disks are for; its naming rules decide each path (see
        /// docs/appliance-export.md).
        #[arg(long, value_enum)]
        layout: LayoutArg,
        /// Lint only: list every key the layout renames or refuses, and how the objects would
        /// pack onto the --to devices; write nothing to a device.
        #[arg(long, visible_alias = "dry-run")]
        check: bool,
        /// Data Box: put every object in this container (else the key's first folder is the
        /// container).
        #[arg(long, value_name = "NAME")]
        container: Option<String>,
        /// Data Box: the Azure storage type to load into (its top folder on the device).
        #[arg(long, value_enum, default_value_t = AzureTypeArg::BlockBlob)]
        azure_type: AzureTypeArg,
        /// Data Box: the storage account its shares are named after (`ACCOUNT_BlockBlob`).
        #[arg(long, value_name = "NAME", required_if_eq("layout", "databox"))]
        storage_account: Option<String>,
        /// Snowball / Transfer Appliance: the prefix the objects will be loaded under (counts
        /// towards the 1024-byte name limit).
        #[arg(long, value_name = "PREFIX")]
        prefix: Option<String>,
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        transfer: Transfer,
        #[command(flatten)]
        rates: Rates,
    },
    /// Upload shipped disks to DST, proving every file against its shipment manifest; names
    /// what is missing, extra or altered.
    Ingest {
        /// The destination (needed when the job is new).
        dst: Option<String>,
        /// A device root written by `ferry export`; repeat for every disk of the shipment.
        #[arg(long = "from", value_name = "DIR", required = true)]
        from: Vec<PathBuf>,
        /// The shipment digest printed at export; refuse a disk whose shipment manifest differs.
        #[arg(long = "expect-digest", value_name = "SHA256", value_parser = parse_sha256)]
        expect_digest: Vec<String>,
        /// Read the shipment manifests and the disks, report what would be uploaded and what
        /// is extra; upload nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        transfer: Transfer,
        #[command(flatten)]
        rates: Rates,
    },
    /// What is done, pending and failed (reads the journal).
    Status {
        #[command(flatten)]
        common: Common,
    },
    /// Work with the job's manifest.
    Manifest {
        #[command(subcommand)]
        command: ManifestCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Write the newest sealed generation as CSV or JSON Lines (with SHA-256s of copied objects).
    Export {
        #[command(flatten)]
        common: Common,
        #[arg(long, value_enum, default_value_t = Format::Csv)]
        format: Format,
        /// Write here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

/// A `--watch` interval: a duration of at least a second.
/// A SHA-256 as `sha256sum` prints it: 64 hex digits (either case), kept in lower case.
fn parse_sha256(text: &str) -> Result<String, String> {
    match text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        true => Ok(text.to_ascii_lowercase()),
        false => Err(format!("{text:?} is not a SHA-256 (64 hex digits, as the export printed it)")),
    }
}

fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    let d = parse_duration(text)?;
    if d < std::time::Duration::from_secs(1) {
        return Err(format!("{text:?}: an interval is at least 1s"));
    }
    Ok(d)
}

fn parse_max_delete(text: &str) -> Result<ferry_engine::MaxDelete, String> {
    ferry_engine::MaxDelete::parse(text)
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
}

#[derive(Debug, Args)]
pub struct Common {
    /// The job directory (created by plan/copy; holds manifest, journal, reports).
    #[arg(long)]
    pub job: PathBuf,
    /// Endpoint for the source (an S3-compatible service, Azurite, fake-gcs-server).
    #[arg(long, value_name = "URL")]
    pub src_endpoint: Option<String>,
    /// Endpoint for the destination.
    #[arg(long, value_name = "URL")]
    pub dst_endpoint: Option<String>,
    /// AWS named profile (from the standard config/credentials files) for an S3 source.
    #[arg(long, value_name = "NAME")]
    pub src_profile: Option<String>,
    /// AWS named profile for an S3 destination: two S3 sides may use different credentials.
    #[arg(long, value_name = "NAME")]
    pub dst_profile: Option<String>,
    /// A local source: copy what symbolic links point to when the target stays inside the
    /// source (links leading out, or in a loop, are still skipped and reported). Without it,
    /// every link is skipped and reported. A job planned with it keeps it.
    #[arg(long)]
    pub follow_symlinks: bool,
    /// Copy every version of each key, oldest first, not only the current one (S3 and GCS, with
    /// versioning on at the destination, else refused with exit 2). Delete markers are
    /// recorded and counted, not written. A job planned with it keeps it (docs/fidelity.md).
    #[arg(long)]
    pub all_versions: bool,
    /// A local source or destination: where headers, user metadata and tags are kept beside
    /// each file, so a local hop carries them. `xattr`: the file's `user.ferry.attrs` extended
    /// attribute; `sidecar`: a JSON file `.ferry-meta/KEY.json` under the root (never listed
    /// or copied as an object); `none`: bytes only (docs/fidelity.md) [default: none; a job
    /// keeps the value of its first copy, and refuses another].
    #[arg(long, value_enum)]
    pub local_metadata: Option<LocalMetadataArg>,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What a `postgres://` source exports (docs/tables.md).
#[derive(Debug, Args, Default)]
pub struct TableArgs {
    /// A table to export: `schema.table`, or `table` for `public.table` (repeatable).
    #[arg(long = "table", value_name = "SCHEMA.TABLE")]
    pub tables: Vec<String>,
    /// Every table of this schema (repeatable).
    #[arg(long = "schema", value_name = "NAME")]
    pub schemas: Vec<String>,
    /// Export a column that has no exact Parquet type as PostgreSQL's text form of its values:
    /// `schema.table.column=text` (repeatable). Without it such a column is refused (exit 2).
    #[arg(long = "cast", value_name = "SCHEMA.TABLE.COLUMN=text")]
    pub casts: Vec<String>,
    /// Make the tables incremental: `ferry delta` then exports the rows written since, those
    /// past the largest value of COLUMN exported (an `updated_at` or an id that only grows) or
    /// written after the last export's snapshot, as new files. Deletes are not seen. `COLUMN`
    /// for every table, or `schema.table.column` for one (repeatable).
    #[arg(long = "incremental-by", value_name = "COLUMN")]
    pub incremental_by: Vec<String>,
    /// Rows per Parquet file: each file is one range of its table (by integer primary key, else
    /// by heap pages), exported, resumed and proved as a whole.
    #[arg(long, value_name = "N", default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub rows_per_file: u64,
    /// Parquet compression.
    #[arg(long, value_enum, default_value_t = CompressionArg::Zstd)]
    pub compression: CompressionArg,
    /// Bytes of a Parquet row group, held in memory per connection while it is built.
    #[arg(long, value_name = "SIZE", default_value = "32MiB", value_parser = parse_size)]
    pub row_group_size: u64,
    /// Workers exporting files at once, each one file at a time over two database connections:
    /// the COPY, and PostgreSQL's figures for the same rows, computed meanwhile.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub db_connections: u16,
}

impl TableArgs {
    /// Whether any table flag was given (they need a `postgres://` source).
    pub fn given(&self) -> bool {
        !self.tables.is_empty() || !self.schemas.is_empty() || !self.casts.is_empty() || !self.incremental_by.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum CompressionArg {
    #[default]
    Zstd,
    Snappy,
    None,
}

impl From<CompressionArg> for ferry_engine::tables::Compression {
    fn from(c: CompressionArg) -> Self {
        match c {
            CompressionArg::Zstd => ferry_engine::tables::Compression::Zstd,
            CompressionArg::Snappy => ferry_engine::tables::Compression::Snappy,
            CompressionArg::None => ferry_engine::tables::Compression::None,
        }
    }
}

/// How hard a transfer runs.
#[derive(Debug, Args)]
pub struct Transfer {
    /// Objects in flight (1 to 10000).
    #[arg(long, default_value_t = 16, value_parser = parse_transfers)]
    pub transfers: usize,
    /// Part size for multipart transfers, e.g. 8MiB (default: from the destination's limits).
    /// At least the destination's minimum (5MiB for S3); lowered to fit --max-memory.
    #[arg(long, value_parser = parse_part_size)]
    pub part_size: Option<u64>,
    /// Object data held in memory at once across all transfers (each part in flight holds its
    /// size; objects larger than it always go in parts). Raise it on long, fast links, e.g. 512MiB.
    #[arg(long, value_parser = parse_max_memory, default_value = "64MiB")]
    pub max_memory: u64,
}

impl Transfer {
    pub fn options(&self) -> ferry_engine::CopyOptions {
        ferry_engine::CopyOptions {
            transfers: self.transfers,
            part_size: self.part_size,
            max_memory: self.max_memory,
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LayoutArg {
    Plain,
    Databox,
    DataboxDisk,
    Snowball,
    TransferAppliance,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AzureTypeArg {
    BlockBlob,
    PageBlob,
    AzureFile,
}

#[derive(Debug, Args)]
pub struct Tuning {
    #[command(flatten)]
    pub transfer: Transfer,
    /// Plan and show what would be copied; write nothing to the destination.
    #[arg(long)]
    pub dry_run: bool,
    /// `auto`: when source and destination are the same S3 service reached the same way
    /// (endpoint and profile), the service copies each object itself (CopyObject, UploadPartCopy
    /// in parallel parts) and no byte passes through ferry. `never`: ferry moves every byte.
    #[arg(long, value_enum, default_value_t = ServerSide::Auto)]
    pub server_side: ServerSide,
    /// Permission bits (octal, e.g. 0640) of files written to a local destination from an object
    /// store [default: 0644]. Files from a local source keep their own bits.
    #[arg(long, value_name = "MODE", value_parser = parse_file_mode)]
    pub file_mode: Option<u32>,
    /// `copy`: object tags (S3 tagging, Azure blob index tags) travel where both sides keep
    /// them; a destination without tags (GCS) is named in the report. `skip`: no tags are read
    /// or written [default: copy; a job keeps the value of its first copy].
    #[arg(long, value_enum)]
    pub tags: Option<TagsArg>,
    /// Source objects archived and not restored (S3 GLACIER / DEEP_ARCHIVE, Azure Archive):
    /// `skip` leaves them unread, names them and exits 1; `restore` asks the source to restore
    /// them and copies them once readable (in a later run if the restore takes time; `ferry
    /// status` counts restores in flight). Neither stops the run [default: skip; a job keeps
    /// the value of its last copy].
    #[arg(long, value_enum)]
    pub archived: Option<ArchivedArg>,
    /// With `--archived restore`: days the restored copy stays readable [default: 1].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=30_000))]
    pub restore_days: Option<u32>,
    /// With `--archived restore`: how fast (and dear) the restore is [default: standard]. S3
    /// has no expedited retrieval of DEEP_ARCHIVE: those objects are restored at standard.
    #[arg(long, value_enum)]
    pub restore_tier: Option<RestoreTierArg>,
    /// With `--archived restore`: how long this run may wait for restores in flight, e.g. 6h,
    /// looking again every 5 minutes [default: 0s, a later run copies them].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub restore_wait: Option<std::time::Duration>,
    /// The class objects are written in at the destination: S3 StorageClass (STANDARD_IA,
    /// GLACIER_IR, …), GCS storageClass (NEARLINE, COLDLINE, ARCHIVE, …), Azure access tier
    /// (Hot, Cool, Cold, Archive); any case. Refused for a local destination or a class the
    /// destination does not have [default: the destination's default class].
    #[arg(long, value_name = "CLASS")]
    pub storage_class: Option<String>,
    /// Per source class, the class objects are written in at the destination, e.g.
    /// `GLACIER_IR=Archive,STANDARD_IA=Cool,STANDARD=Hot` (any case; each side checked against
    /// its provider's classes), from the class the manifest recorded for each object. Objects
    /// of a class not listed get --storage-class, else the destination's default.
    #[arg(long, value_name = "SRC=DST[,SRC=DST...]", value_parser = parse_class_map)]
    pub storage_class_map: Option<ClassMap>,
    /// S3 server-side encryption of every object written: `AES256` (SSE-S3) or `aws:kms`
    /// (SSE-KMS; the proof is then the CRC, never the ETag). S3 destinations only
    /// [default: the bucket's default encryption]. Like every write setting, kept by the job
    /// from its first copy: a later run takes it, and refuses another value.
    #[arg(long, value_enum, value_name = "ALGORITHM")]
    pub sse: Option<SseArg>,
    /// With `--sse aws:kms`: the KMS key (id, ARN or alias) [default: the AWS-managed key].
    #[arg(long, value_name = "KEY")]
    pub sse_kms_key_id: Option<String>,
    /// GCS destinations: the Cloud KMS key (`projects/P/locations/L/keyRings/R/cryptoKeys/K`)
    /// every object is encrypted with [default: the bucket's default].
    #[arg(long, value_name = "NAME")]
    pub gcs_kms_key: Option<String>,
    /// Azure destinations: the encryption scope every blob is written in [default: the
    /// container's default].
    #[arg(long, value_name = "NAME")]
    pub azure_encryption_scope: Option<String>,
    /// Before an object at the destination is overwritten (or deleted by `ferry delta
    /// --delete`), keep it under URL/run-N/ with the same key, so `ferry rollback` can put it
    /// back (like rclone's --backup-dir). Copied by the service where URL is on the
    /// destination's service, else through ferry. Must not overlap the source or destination.
    /// Kept by the job: later runs back up there too.
    #[arg(long, value_name = "URL")]
    pub backup_to: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SseArg {
    #[value(name = "AES256")]
    Aes256,
    #[value(name = "aws:kms")]
    AwsKms,
}

impl Tuning {
    /// The encryption asked for, or why the flags do not go together.
    pub fn sse(&self) -> Result<Option<ferry_providers::placement::Sse>, String> {
        use ferry_providers::placement::Sse;
        match (self.sse, &self.sse_kms_key_id) {
            (_, Some(key)) if key.trim().is_empty() => {
                Err("--sse-kms-key-id is empty: give a KMS key id, ARN or alias, or leave it out for the AWS-managed key".into())
            }
            (None, None) => Ok(None),
            (Some(SseArg::Aes256), None) => Ok(Some(Sse::Aes256)),
            (Some(SseArg::AwsKms), key) => Ok(Some(Sse::Kms { key_id: key.clone() })),
            (_, Some(_)) => Err("--sse-kms-key-id needs --sse aws:kms".into()),
        }
    }

    /// The run settings the command line gives (`None` where a flag was left out: the job's
    /// kept value, or the default, applies), or why they are refused.
    pub fn asked(&self) -> Result<ferry_engine::AskedSettings, String> {
        for (flag, value) in [("--gcs-kms-key", &self.gcs_kms_key), ("--azure-encryption-scope", &self.azure_encryption_scope)] {
            if value.as_ref().is_some_and(|v| v.trim().is_empty()) {
                return Err(format!("{flag} is empty: give a name, or leave it out for the default"));
            }
        }
        Ok(ferry_engine::AskedSettings {
            storage_class: self.storage_class.clone(),
            storage_class_map: self.storage_class_map.clone().map(|m| m.0),
            sse: self.sse()?,
            gcs_kms_key: self.gcs_kms_key.clone(),
            azure_encryption_scope: self.azure_encryption_scope.clone(),
            tags: self.tags.map(|t| match t {
                TagsArg::Copy => ferry_engine::TagsMode::Copy,
                TagsArg::Skip => ferry_engine::TagsMode::Skip,
            }),
            restore: self.archived.map(|a| a == ArchivedArg::Restore),
            restore_days: self.restore_days,
            restore_tier: self.restore_tier.map(|t| match t {
                RestoreTierArg::Standard => ferry_core::RestoreTier::Standard,
                RestoreTierArg::Bulk => ferry_core::RestoreTier::Bulk,
                RestoreTierArg::Expedited => ferry_core::RestoreTier::Expedited,
            }),
            restore_wait: self.restore_wait.is_some(),
            backup_to: match &self.backup_to {
                Some(text) => Some(crate::cmd::location(text).map_err(|e| format!("--backup-to: {e}"))?),
                None => None,
            },
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LocalMetadataArg {
    None,
    Xattr,
    Sidecar,
}

impl From<LocalMetadataArg> for ferry_providers::local::LocalMetadata {
    fn from(a: LocalMetadataArg) -> Self {
        match a {
            LocalMetadataArg::None => Self::None,
            LocalMetadataArg::Xattr => Self::Xattr,
            LocalMetadataArg::Sidecar => Self::Sidecar,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TagsArg {
    Copy,
    Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ArchivedArg {
    Skip,
    Restore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RestoreTierArg {
    Standard,
    Bulk,
    Expedited,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServerSide {
    Auto,
    Never,
}

/// Ceilings for a shared link or an account's request rate (network providers only; local disks
/// are not limited).
#[derive(Debug, Args)]
pub struct Rates {
    /// Bytes per second, each way, e.g. 100MiB or 50MB/s (a copy between two clouds reads and
    /// writes at up to this rate each).
    #[arg(long, value_parser = parse_rate, value_name = "RATE")]
    pub bwlimit: Option<u64>,
    /// Requests per second to the storage services, e.g. 500.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub tpslimit: Option<u64>,
}

impl Rates {
    /// A run under these ceilings: every provider the command opens is held to them (and no
    /// other run in the process is).
    pub fn run(&self) -> std::sync::Arc<ferry_providers::RunContext> {
        ferry_providers::RunContext::new(ferry_providers::Rates { bytes_per_second: self.bwlimit, requests_per_second: self.tpslimit })
    }
}

/// `--storage-class-map` as read (one value: clap would take a bare `Vec` for a list of values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassMap(pub Vec<(String, String)>);

fn parse_class_map(s: &str) -> Result<ClassMap, String> {
    ferry_engine::settings::parse_class_map(s).map(ClassMap)
}

fn parse_rate(s: &str) -> Result<u64, String> {
    let n = parse_size(s.trim().trim_end_matches("/s"))?;
    if n == 0 {
        return Err(format!("invalid rate {s:?}: must be more than 0 (leave the option out for no limit)"));
    }
    Ok(n)
}

/// The most objects in flight: far above what any link needs, and well within what the
/// schedulers' semaphores can count.
const MAX_TRANSFERS: usize = 10_000;

fn parse_transfers(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_TRANSFERS).contains(&n) => Ok(n),
        _ => Err(format!("invalid number of transfers {s:?}: give 1 to {MAX_TRANSFERS}")),
    }
}

/// The longest age `--older-than` takes: 100 years (a date that far back is still a date).
const MAX_AGE_SECS: u64 = 36_500 * 86_400;

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let secs: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" | "" => 3600,
        "d" => 86_400,
        other => return Err(format!("invalid duration {s:?}: unknown unit {other:?} (s, m, h, d)")),
    };
    let too_long = || format!("invalid duration {s:?}: at most 36500d (100 years)");
    let n: u64 = match n.parse() {
        Ok(n) => n,
        Err(e) if *e.kind() == std::num::IntErrorKind::PosOverflow => return Err(too_long()),
        Err(_) => return Err(format!("invalid duration {s:?}: expected e.g. 24h")),
    };
    match n.checked_mul(secs) {
        Some(total) if total <= MAX_AGE_SECS => Ok(std::time::Duration::from_secs(total)),
        _ => Err(too_long()),
    }
}

fn parse_file_mode(s: &str) -> Result<u32, String> {
    match u32::from_str_radix(s, 8) {
        Ok(mode) if mode <= 0o777 => Ok(mode),
        _ => Err("give octal permission bits from 0 to 0777, e.g. 0640 (no setuid, setgid or sticky bit)".into()),
    }
}

fn parse_size(s: &str) -> Result<u64, String> {
    ferry_core::size::parse_size(s)
}

fn parse_part_size(s: &str) -> Result<u64, String> {
    match parse_size(s)? {
        0 => Err(format!("invalid part size {s:?}: must be more than 0, e.g. 8MiB")),
        n => Ok(n),
    }
}

/// A memory budget: at least 1 MiB (the smallest read ferry makes of a large object).
fn parse_max_memory(s: &str) -> Result<u64, String> {
    match parse_size(s)? {
        n if n < 1 << 20 => Err(format!("invalid memory budget {s:?}: must be at least 1MiB")),
        n => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archived_and_restore_flags_are_asked_only_when_given() {
        let copy = |args: &[&str]| match Cli::try_parse_from([&["ferry", "copy", "a", "b", "--job", "j"], args].concat()) {
            Ok(Cli { command: Command::Copy { tuning, .. }, .. }) => Ok(tuning.asked().unwrap()),
            Ok(_) => panic!("not a copy"),
            Err(e) => Err(e.kind()),
        };
        assert_eq!(copy(&[]), Ok(ferry_engine::AskedSettings::default()), "nothing asked: the job's kept settings apply");
        let restore =
            copy(&["--archived", "restore", "--restore-days", "3", "--restore-tier", "expedited", "--restore-wait", "6h"]).unwrap();
        assert_eq!(restore.restore, Some(true));
        assert_eq!((restore.restore_days, restore.restore_tier), (Some(3), Some(ferry_core::RestoreTier::Expedited)));
        assert!(restore.restore_wait);
        for bad in [&["--archived", "thaw"][..], &["--restore-days", "0"], &["--restore-tier", "fast"], &["--restore-wait", "soon"]] {
            assert!(copy(bad).is_err(), "{bad:?}");
        }
    }

    // Hostile-user finding 9: an empty key was taken as a key.
    #[test]
    fn empty_key_names_are_refused() {
        let asked = |args: &[&str]| match Cli::try_parse_from([&["ferry", "copy", "a", "b", "--job", "j"], args].concat()).unwrap() {
            Cli { command: Command::Copy { tuning, .. }, .. } => tuning.asked(),
            _ => panic!("not a copy"),
        };
        for bad in [
            &["--sse", "aws:kms", "--sse-kms-key-id", ""][..],
            &["--sse", "aws:kms", "--sse-kms-key-id", "  "],
            &["--gcs-kms-key", ""],
            &["--azure-encryption-scope", " "],
        ] {
            assert!(asked(bad).unwrap_err().contains("is empty"), "{bad:?}");
        }
        assert!(asked(&["--sse", "aws:kms", "--sse-kms-key-id", "alias/k"]).is_ok());
    }

    #[test]
    fn transfers_and_ages_are_bounded() {
        assert_eq!(parse_transfers("16"), Ok(16));
        assert_eq!(parse_transfers("10000"), Ok(10_000));
        for bad in ["0", "10001", "2305843009213693952", "-1", "x"] {
            assert!(parse_transfers(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_duration("36500d"), Ok(std::time::Duration::from_secs(MAX_AGE_SECS)));
        assert_eq!(parse_duration("90m"), Ok(std::time::Duration::from_secs(5400)));
        for bad in ["36501d", "1000000000d", "18446744073709551615s", "99999999999999999999d", "7w", "d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
