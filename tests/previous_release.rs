//! A job made by the previous release (before issue 13: journal schema version 3) resumes and
//! verifies with this one.
//!
//! `tests/fixtures/prev-release-job` is the job directory ferry 7bd935a left after
//! `ferry plan src dst --job job` over `/tmp/ferry13-fixture/{src,dst}` and a `ferry copy` with
//! `docs/f01.bin` deleted from the source: eight objects done, `docs/f01.bin` failed (deleted
//! from the source), `link.txt` skipped (a symlink). Only its job.toml names those paths; the
//! test points them at a fresh source and destination holding the same bytes.

mod common;

use common::ferry_ok;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

/// Where the fixture's job was made: rewritten to the test's own directory.
const MADE_IN: &str = "/tmp/ferry13-fixture";

/// The source as the fixture's job listed it: each file is its key and a newline, repeated to
/// its size, modified at 1,700,000,000 s (a local object's etag is its mtime and size).
fn source_files() -> Vec<(String, Vec<u8>)> {
    let mut keys: Vec<(String, usize)> = (0..8).map(|i| (format!("docs/f{i:02}.bin"), 40 << 10)).collect();
    keys.push(("readme.txt".into(), 6));
    keys.into_iter()
        .map(|(key, size)| {
            let line = format!("{key}\n").into_bytes();
            let data: Vec<u8> = line.iter().copied().cycle().take(size).collect();
            (key, data)
        })
        .collect()
}

fn write(root: &Path, key: &str, data: &[u8], mtime: Option<u64>) {
    let path = root.join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, data).unwrap();
    if let Some(secs) = mtime {
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(UNIX_EPOCH + Duration::from_secs(secs)).unwrap();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn a_job_made_by_the_previous_release_resumes_and_verifies() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let job = w.join("job");
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/prev-release-job"), &job);
    let toml = std::fs::read_to_string(job.join("job.toml")).unwrap();
    assert!(toml.contains(MADE_IN), "the fixture names where it was made:\n{toml}");
    std::fs::write(job.join("job.toml"), toml.replace(MADE_IN, w.to_str().unwrap())).unwrap();
    // The source as listed (docs/f01.bin is back); the destination as the copy left it.
    for (key, data) in source_files() {
        write(&w.join("src"), &key, &data, Some(1_700_000_000));
        if key != "docs/f01.bin" {
            write(&w.join("dst"), &key, &data, None);
        }
    }

    let status = ferry_ok(w, &["status", "--job", "job", "--json"], &[], 0).json();
    assert_eq!(status["counts"]["done"], 8, "{status}");
    assert_eq!(status["counts"]["failed"], 1, "{status}");
    assert_eq!(status["failed"][0]["key"], "docs/f01.bin");

    // Exit 1: the symlink the listing skipped is data the destination lacks.
    let copy = ferry_ok(w, &["copy", "--job", "job", "--json"], &[], 1).json();
    assert_eq!((copy["copied"].as_u64(), copy["already_done"].as_u64(), copy["failed"].as_u64()), (Some(1), Some(8), Some(0)), "{copy}");
    assert_eq!(copy["skipped"]["total"], 1, "{copy}");
    assert_eq!(std::fs::read(w.join("dst/docs/f01.bin")).unwrap(), source_files()[1].1);

    // The destination files were rewritten here, so their etags are not the ones the copy
    // recorded: every object is proved by reading it back against its recorded SHA-256.
    let verify = ferry_ok(w, &["verify", "--job", "job", "--all-bytes", "--json"], &[], 1).json();
    assert_eq!(verify["differences"], serde_json::json!([]), "{verify}");
    assert_eq!((verify["checked"].as_u64(), verify["matched"].as_u64()), (Some(9), Some(9)), "{verify}");
    assert_eq!(verify["proved_by"]["sha256 read-back"], 9, "{verify}");

    // Written by this ferry now: a second run has nothing to do.
    let again = ferry_ok(w, &["copy", "--job", "job", "--json"], &[], 1).json();
    assert_eq!((again["copied"].as_u64(), again["already_done"].as_u64()), (Some(0), Some(9)), "{again}");
}
