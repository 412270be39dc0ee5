//! The destination write ledger (issue 13): after a copy over a destination that already held
//! some of the keys, the journal has exactly one row per object written, with what the
//! destination held before for the keys ferry overwrote, and "absent" for the others. Checked
//! through the ferry binary against s3s-fs (single puts, multipart and server-side copies) and
//! a local directory.

mod common;

use common::ferry_ok;
use ferry_journal::{Prior, Seen, WriteOp, WriteRow};
use ferry_testkit::S3Server;
use ferry_testkit::tree::write_tree;
use std::collections::BTreeMap;
use std::path::Path;

/// The tree copied: small objects and one of three parts (8 MiB parts).
fn tree() -> Vec<(String, usize)> {
    let mut files: Vec<(String, usize)> = (0..12).map(|i| (format!("d{}/f{i}.bin", i % 3), 50 + i * 31)).collect();
    files.push(("big.bin".into(), 17 << 20));
    files
}

/// What the destination holds before: some of the same keys with other sizes, and one key the
/// copy does not touch.
fn earlier() -> Vec<(String, usize)> {
    vec![("d0/f0.bin".into(), 7), ("d1/f4.bin".into(), 9), ("big.bin".into(), 11), ("untouched.txt".into(), 5)]
}

fn ledger(job: &Path) -> Vec<WriteRow> {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let journal = ferry_journal::open(job, ferry_journal::JournalKind::Main).await.unwrap();
        journal.writes(None, 0, 10_000).await.unwrap()
    })
}

/// Checks the ledger of a copy of `copied` over [`earlier`]: one finished put per object, the
/// overwritten keys with their earlier size. The run lists the (small) destination, so absent
/// keys are known from the listing; an overwritten key from the listing too where it names an
/// entity tag, else from a HEAD (`overwritten_seen`: s3s-fs lists no ETags).
fn assert_one_row_per_write(rows: &[WriteRow], copied: &[(String, usize)], overwritten_seen: Seen) {
    let by_key: BTreeMap<&str, &WriteRow> = rows.iter().map(|r| (r.key.as_str(), r)).collect();
    assert_eq!(by_key.len(), rows.len(), "one row per key: {rows:#?}");
    let sizes: BTreeMap<String, usize> = copied.iter().cloned().collect();
    assert_eq!(by_key.keys().map(|k| k.to_string()).collect::<Vec<_>>(), sizes.keys().cloned().collect::<Vec<_>>());
    let earlier: BTreeMap<String, usize> = earlier().into_iter().collect();
    for (key, row) in &by_key {
        let seen = if earlier.contains_key(*key) { overwritten_seen } else { Seen::Listing };
        assert_eq!((row.op, row.seen), (WriteOp::Put, seen), "{row:?}");
        match earlier.get(*key) {
            Some(size) => assert!(matches!(row.prior, Prior::Present { size: s, .. } if s == *size as u64), "{key}: {row:?}"),
            None => assert_eq!(row.prior, Prior::Absent, "{key}"),
        }
        let wrote = row.wrote.as_ref().unwrap_or_else(|| panic!("{key}: write not finished: {row:?}"));
        assert_eq!(wrote.size, sizes[*key] as u64, "{key}");
    }
    let runs: std::collections::BTreeSet<_> = rows.iter().map(|r| r.run).collect();
    assert_eq!(runs.len(), 1, "all tagged with the one run: {runs:?}");
}

#[test]
fn a_copy_to_s3_over_some_existing_keys_records_what_each_write_replaced() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    write_tree(&w.join("src"), &tree());
    write_tree(&w.join("before"), &earlier());
    let s3 = S3Server::start();
    s3.create_bucket("ledger");
    let env = s3.env();
    ferry_ok(w, &["copy", "before", "s3://ledger/data", "--job", "j0", "--dst-endpoint", &s3.endpoint], &env, 0);
    let etag_before = match &ledger(&w.join("j0")).iter().find(|r| r.key == "big.bin").unwrap().wrote {
        Some(wrote) => wrote.etag.clone(),
        None => panic!("j0 finished its write"),
    };

    ferry_ok(w, &["copy", "src", "s3://ledger/data", "--job", "j1", "--dst-endpoint", &s3.endpoint], &env, 0);
    let rows = ledger(&w.join("j1"));
    assert_one_row_per_write(&rows, &tree(), Seen::Head);
    // The prior state is the destination's own description of the object replaced.
    let big = rows.iter().find(|r| r.key == "big.bin").unwrap();
    assert!(matches!(&big.prior, Prior::Present { etag, .. } if *etag == etag_before && etag.is_some()), "{big:?}");

    // A second run writes nothing, so records nothing.
    ferry_ok(w, &["copy", "--job", "j1"], &env, 0);
    assert_eq!(ledger(&w.join("j1")).len(), rows.len());

    // The service copying objects itself (same server both sides) is recorded the same way.
    ferry_ok(w, &["copy", "before", "s3://ledger/copy", "--job", "j2", "--dst-endpoint", &s3.endpoint], &env, 0);
    let args =
        ["copy", "s3://ledger/data", "s3://ledger/copy", "--job", "j3", "--src-endpoint", &s3.endpoint, "--dst-endpoint", &s3.endpoint];
    let summary = ferry_ok(w, &[&args[..], &["--json"]].concat(), &env, 0).json();
    assert!(summary["verified_by"].as_object().unwrap().keys().all(|k| k.starts_with("server-side")), "{summary}");
    // The source now also holds the key only the earlier copy wrote.
    let source_now = [tree(), vec![("untouched.txt".to_string(), 5)]].concat();
    assert_one_row_per_write(&ledger(&w.join("j3")), &source_now, Seen::Head);
}

#[test]
fn a_copy_to_local_disk_over_some_existing_files_records_what_each_write_replaced() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    write_tree(&w.join("src"), &tree());
    write_tree(&w.join("dst"), &earlier());
    ferry_ok(w, &["copy", "src", "dst", "--job", "j1"], &[], 0);
    assert_one_row_per_write(&ledger(&w.join("j1")), &tree(), Seen::Listing);
    assert_eq!(std::fs::read(w.join("dst/untouched.txt")).unwrap().len(), 5, "a key the copy does not have is left alone");
}

#[test]
fn a_planted_symlink_at_a_destination_name_is_recorded_as_unknown_and_replaced() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    write_tree(&w.join("src"), &[("a.txt".to_string(), 10)]);
    std::fs::create_dir_all(w.join("dst")).unwrap();
    std::fs::write(w.join("outside.txt"), b"keep me").unwrap();
    std::os::unix::fs::symlink(w.join("outside.txt"), w.join("dst/a.txt")).unwrap();
    ferry_ok(w, &["copy", "src", "dst", "--job", "j"], &[], 0);
    let rows = ledger(&w.join("j"));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].prior, Prior::Unknown, "a symlink is not an object ferry could describe");
    assert_eq!(std::fs::read(w.join("outside.txt")).unwrap(), b"keep me");
    assert!(!std::fs::symlink_metadata(w.join("dst/a.txt")).unwrap().is_symlink());
}
