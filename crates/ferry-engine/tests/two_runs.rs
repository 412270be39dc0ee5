//! Two runs in one process (a worker holding two shards) keep their own ceilings, counts and
//! buffers: each run's context is charged for its own bytes at its own rate, and neither
//! waits on the other's schedule. Local directories stand in for two network links, each
//! wrapped in `Throttled` as `ferry_providers::open` wraps a network provider; time is tokio's
//! paused clock, so the seconds below are the schedules', never waited for.

use ferry_core::Location;
use ferry_engine::{Access, CopyOptions, Job, Stats};
use ferry_providers::throttle::Charged;
use ferry_providers::{Provider, Rates, RunContext, Throttled};
use std::sync::Arc;
use std::time::Duration;

const MIB: usize = 1 << 20;
const FILES: usize = 4;

/// A job copying `FILES` files of 1 MiB between two fresh directories.
fn job(root: &std::path::Path, name: &str) -> (Job, Location, Location) {
    let (src, dst) = (root.join(format!("{name}-src")), root.join(format!("{name}-dst")));
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..FILES {
        std::fs::write(src.join(format!("f{i}")), vec![i as u8; MIB]).unwrap();
    }
    let (src, dst) = (Location::parse(&src.to_string_lossy()).unwrap(), Location::parse(&dst.to_string_lossy()).unwrap());
    let job = Job::open(&root.join(format!("{name}-job")), Some(src.clone()), Some(dst.clone()), Access::default()).unwrap();
    (job, src, dst)
}

/// Copies the job in `run`, both sides throttled as network providers are; returns the
/// (paused) time the copy took.
async fn copy(mut job: Job, src: Location, dst: Location, run: Arc<RunContext>) -> Duration {
    let side = |loc: Location| -> Arc<dyn Provider> { Arc::new(Throttled::new(ferry_providers::open_local(loc, &run), run.clone())) };
    let (src, dst) = (side(src), side(dst));
    src.check(false).await.unwrap();
    dst.check(true).await.unwrap();
    let started = tokio::time::Instant::now();
    let opts = CopyOptions { transfers: 2, ..CopyOptions::default() };
    let summary = ferry_engine::copy(&mut job, src, dst, opts, Arc::new(Stats::default()), &run).await.unwrap();
    assert_eq!((summary.copied, summary.failed, summary.bytes_copied), (FILES as u64, 0, (FILES * MIB) as u64));
    let puts = &summary.requests["local put"];
    assert_eq!((puts.calls, puts.failed, puts.bytes), (FILES as u64, 0, (FILES * MIB) as u64), "{:?}", summary.requests);
    started.elapsed()
}

#[tokio::test(start_paused = true)]
async fn two_runs_in_one_process_keep_their_own_bandwidth_limits() {
    let root = tempfile::tempdir().unwrap();
    let (slow_job, slow_src, slow_dst) = job(root.path(), "slow");
    let (fast_job, fast_src, fast_dst) = job(root.path(), "fast");
    let slow = RunContext::new(Rates { bytes_per_second: Some(MIB as u64), requests_per_second: None });
    let fast = RunContext::new(Rates { bytes_per_second: Some(4 * MIB as u64), requests_per_second: None });

    let (slow_took, fast_took) =
        tokio::join!(copy(slow_job, slow_src, slow_dst, slow.clone()), copy(fast_job, fast_src, fast_dst, fast.clone()));

    // Each run's schedules were charged its own 4 MiB each way, at its own rate: one shared
    // schedule would hold 8 MiB, and the fast run would wait behind the slow one.
    let charged = |run: &RunContext| {
        let (received, sent, _) = run.throttle().charged();
        (received, sent)
    };
    let bytes = (FILES * MIB) as u64;
    assert_eq!(
        charged(&slow),
        (Charged { units: bytes, booked: Duration::from_secs(4) }, Charged { units: bytes, booked: Duration::from_secs(4) })
    );
    assert_eq!(
        charged(&fast),
        (Charged { units: bytes, booked: Duration::from_secs(1) }, Charged { units: bytes, booked: Duration::from_secs(1) })
    );
    // The first MiB each way goes at once; the slow run's last waits 3 s on its own schedule,
    // the fast run's at most 3/4 s on its own.
    assert!(slow_took >= Duration::from_secs(3), "{slow_took:?}");
    assert!(fast_took < Duration::from_secs(1), "the fast run never waited on the slow one: {fast_took:?}");
    // No ceiling on requests was set: none was charged.
    assert_eq!((slow.throttle().charged().2.units, fast.throttle().charged().2.units), (0, 0));
}
