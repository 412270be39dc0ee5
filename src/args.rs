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
    },
    /// Copy what the job's manifest lists (planning first when the job has none yet).
    Copy {
        src: Option<String>,
        dst: Option<String>,
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        tuning: Tuning,
    },
    /// Continue an interrupted copy (the same as `ferry copy --job DIR`).
    Resume {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        tuning: Tuning,
    },
    /// Compare the destination with the manifest: presence, size, checksum.
    Verify {
        #[command(flatten)]
        common: Common,
        /// Read every object back and compare its SHA-256 with the one recorded while copying.
        #[arg(long)]
        all_bytes: bool,
        /// Objects checked in parallel.
        #[arg(long, default_value_t = 32)]
        transfers: usize,
    },
    /// Abort the multipart uploads the job left open (they are billed until aborted).
    Clean {
        #[command(flatten)]
        common: Common,
        /// List the uploads that would be aborted; abort nothing.
        #[arg(long)]
        dry_run: bool,
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
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct Tuning {
    /// Objects in flight.
    #[arg(long, default_value_t = 16)]
    pub transfers: usize,
    /// Part size for multipart transfers, e.g. 8MiB (default: from the destination's limits).
    #[arg(long, value_parser = parse_size)]
    pub part_size: Option<u64>,
    /// Bytes buffered in total across all transfers, e.g. 512MiB.
    #[arg(long, value_parser = parse_size, default_value = "1GiB")]
    pub max_memory: u64,
    /// Plan and show what would be copied; write nothing to the destination.
    #[arg(long)]
    pub dry_run: bool,
}

fn parse_size(s: &str) -> Result<u64, String> {
    ferry_core::size::parse_size(s)
}
