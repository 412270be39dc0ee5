//! Planning at scale: `ferry plan` of a synthetic bucket of 10 million objects (1000 keys per
//! page, like S3) into a sealed manifest and a seeded journal, reporting objects per second and
//! the process's peak RSS. Not a criterion benchmark: one run is the measurement.
//!
//! `cargo bench --bench plan_scale` (objects: `FERRY_PLAN_OBJECTS`, default 10 000 000; the job
//! directory goes under `TMPDIR`). Under `cargo test --all-targets` (no `--bench` argument) it
//! plans 20 000 objects, as a smoke test of the benchmark itself.

use ferry_engine::{Access, Job, Stats};
use ferry_testkit::SyntheticBucket;
use std::time::Instant;

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib =
        status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
    kib.map_or(f64::NAN, |k| k / 1024.0)
}

fn dir_mib(path: &std::path::Path) -> f64 {
    walkdir(path) as f64 / (1024.0 * 1024.0)
}

fn walkdir(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walkdir(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let default = if benchmarking { 10_000_000 } else { 20_000 };
    let count: u64 = std::env::var("FERRY_PLAN_OBJECTS").ok().and_then(|v| v.replace('_', "").parse().ok()).unwrap_or(default);
    let tmp = tempfile::tempdir().expect("temp dir");
    let src = ferry_core::Location::parse("s3://synthetic-source/").expect("url");
    let dst = ferry_core::Location::parse("s3://synthetic-destination/").expect("url");
    let mut job = Job::open(&tmp.path().join("job"), Some(src.clone()), Some(dst), Access::default()).expect("job");
    let bucket = SyntheticBucket::new(src, count);
    let stats = Stats::default();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let started = Instant::now();
    let summary = rt.block_on(ferry_engine::plan(&mut job, &bucket, &stats)).expect("plan");
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(summary.objects, count, "every listed object is in the manifest");
    println!("plan of a synthetic bucket: {count} objects, 1000 per page");
    println!("  wall          {secs:.2} s");
    println!("  rate          {:.0} objects/s", count as f64 / secs);
    println!("  peak RSS      {:.0} MiB", peak_rss_mib());
    println!("  manifest      {:.1} MiB", dir_mib(&job.generation_dir(1)));
    println!("  journal       {:.1} MiB", dir_mib(&job.dir) - dir_mib(&job.dir.join("manifests")));
}
