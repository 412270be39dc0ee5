//! Ingest into a local destination that fills up: every object that did not fit is a failure,
//! counted and named, and the exit is 1.
//!
//! See issue 13: the scheduler treated any object with a device whose copy met ENOSPC as "its
//! device is full, hand it back" — right for an export, whose devices are destinations, wrong for
//! an ingest, whose devices are sources: nothing took those objects back, so they were neither
//! copied nor failed, and the run said it was clean (exit 0). Routing is now the command's
//! (`Router`), and ingest's never closes a route.

mod common;

use common::{Tmpfs, ferry_ok};
use ferry_testkit::tree::write_tree;

#[test]
fn an_ingest_whose_destination_fills_up_counts_every_object_it_could_not_write() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // 24 files of 512 KiB (12 MiB) shipped on one disk, ingested into a 4 MiB file system.
    let files: Vec<(String, usize)> = (0..24).map(|i| (format!("f/{i:02}.bin"), 512 << 10)).collect();
    write_tree(&w.join("src"), &files);
    std::fs::create_dir_all(w.join("dev")).unwrap();
    ferry_ok(w, &["export", "src", "--to", "dev", "--job", "exp", "--layout", "plain"], &[], 0);
    let landing = Tmpfs::mount(&w.join("landing"), 4);

    let run = ferry_ok(w, &["ingest", "--from", "dev", "landing", "--job", "ing", "--transfers", "2", "--json"], &[], 1);
    let summary = run.json();
    let (copied, failed) = (summary["copied"].as_u64().unwrap(), summary["failed"].as_u64().unwrap());
    assert!(copied > 0 && failed > 0, "some fit, some did not: {summary}");
    assert_eq!(copied + failed, files.len() as u64, "every object copied or failed, none dropped: {summary}");
    let failures = summary["failures"].as_array().unwrap();
    assert_eq!(failures.len() as u64, failed, "{summary}");
    let written = std::fs::read_dir(landing.0.join("f")).unwrap().filter(|e| e.as_ref().unwrap().path().is_file()).count();
    assert_eq!(written as u64, copied, "the files on the full disk are the ones counted copied: {summary}");
}
