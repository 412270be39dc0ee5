//! Issue 12 (hardening), the listing's side: nothing a source holds is left out unnamed. Every
//! entry a listing meets is copied or recorded as skipped with its reason, and the plan, the
//! copy's summary and report, `verify`, `status` and `manifest export` name it; skipped data
//! makes `copy` and `verify` exit 1.

mod common;

use common::{ferry, ferry_as_nobody, ferry_ok};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success());
}

/// The rows of `manifest export --format csv` as (key, skipped) pairs.
fn exported_skips(w: &Path, job: &str) -> Vec<(String, String)> {
    let csv = ferry_ok(w, &["manifest", "export", "--job", job, "--format", "csv"], &[], 0).stdout;
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().ends_with(",skipped"), "{csv}");
    lines
        .map(|l| {
            let (key, rest) = l.split_once(',').unwrap();
            (key.to_string(), rest.rsplit(',').next().unwrap().to_string())
        })
        .collect()
}

// Issue 12, case 4: symlinks, FIFOs, sockets and names that look like ferry's temp files were
// left out of the manifest while the plan printed "(0 skipped)" and verify exited 0; a user's
// `report.ferry-tmp-2024.csv` was never migrated.
#[test]
fn case_04_special_entries_are_recorded_as_skipped_and_named_everywhere() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    write(&src.join("a.txt"), "alpha");
    write(&src.join("report.ferry-tmp-2024.csv"), "user data, not a temp file");
    write(&src.join("sub/b.txt"), "beta");
    write(&w.join("outside.txt"), "secret outside the source");
    symlink("a.txt", src.join("link-in")).unwrap();
    symlink(w.join("outside.txt"), src.join("sub/link-out")).unwrap();
    mkfifo(&src.join("pipe"));
    let _socket = std::os::unix::net::UnixListener::bind(src.join("sock")).unwrap();
    write(&src.join(".half.bin.ferry-tmp-put"), "a put cut short");

    let plan = ferry_ok(w, &["plan", "src", "dst", "--job", "job", "--json"], &[], 0).json();
    assert_eq!(plan["objects"], 3, "{plan}");
    assert_eq!(plan["skipped"], 5, "{plan}");
    let by = &plan["skipped_by_reason"];
    assert_eq!((by["symlink"].as_u64(), by["fifo"].as_u64(), by["socket"].as_u64()), (Some(2), Some(1), Some(1)), "{plan}");
    assert_eq!(by["ferry-temp-file"], 1, "{plan}");

    let text = ferry_ok(w, &["plan", "src", "dst", "--job", "job"], &[], 0).stdout;
    assert!(text.contains("skipped 2 symlink") && text.contains("skipped 1 fifo"), "{text}");

    let copy = ferry(w, &["copy", "--job", "job", "--json"], &[]);
    assert_eq!(copy.code, 1, "skipped data is reflected in the exit code\n{}{}", copy.stdout, copy.stderr);
    let copied = copy.json();
    assert_eq!((copied["copied"].as_u64(), copied["failed"].as_u64()), (Some(3), Some(0)), "{copied}");
    assert_eq!(copied["skipped"]["total"], 5, "{copied}");
    assert_eq!(copied["skipped"]["lost"], 4, "ferry's own temp file is no loss: {copied}");
    let named: Vec<&str> = copied["skipped"]["entries"].as_array().unwrap().iter().map(|e| e["key"].as_str().unwrap()).collect();
    for key in ["link-in", "sub/link-out", "pipe", "sock", ".half.bin.ferry-tmp-put"] {
        assert!(named.contains(&key), "{key} not named: {copied}");
    }
    assert_eq!(std::fs::read_to_string(w.join("dst/report.ferry-tmp-2024.csv")).unwrap(), "user data, not a temp file");
    for absent in ["link-in", "sub/link-out", "pipe", "sock", ".half.bin.ferry-tmp-put"] {
        assert!(std::fs::symlink_metadata(w.join("dst").join(absent)).is_err(), "{absent} written");
    }
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(w.join(copied["report"].as_str().unwrap())).unwrap()).unwrap();
    assert_eq!(report["skipped"]["by_reason"]["fifo"], 1, "{report}");

    let text = ferry(w, &["copy", "--job", "job"], &[]);
    assert_eq!(text.code, 1);
    assert!(
        text.stdout.contains("not copied (skipped by the listing)") && text.stdout.contains("skipped: pipe: named pipe"),
        "{}",
        text.stdout
    );

    let verify = ferry(w, &["verify", "--job", "job", "--json"], &[]);
    assert_eq!(verify.code, 1, "{}{}", verify.stdout, verify.stderr);
    let verified = verify.json();
    assert_eq!((verified["matched"].as_u64(), verified["differences"].as_array().unwrap().len()), (Some(3), 0), "{verified}");
    assert_eq!(verified["skipped"]["by_reason"]["socket"], 1, "{verified}");

    let status = ferry_ok(w, &["status", "--job", "job", "--json"], &[], 0).json();
    assert_eq!(status["counts"]["skipped"], 5, "{status}");
    assert_eq!(status["counts"]["objects"], 3, "{status}");
    assert_eq!(status["skipped_by_reason"]["symlink"], 2, "{status}");

    let rows = exported_skips(w, "job");
    assert!(rows.contains(&("pipe".into(), "fifo".into())), "{rows:?}");
    assert!(rows.contains(&("sub/link-out".into(), "symlink".into())), "{rows:?}");
    assert!(rows.contains(&("report.ferry-tmp-2024.csv".into(), String::new())), "{rows:?}");
}

// Issue 12, case 3: one file name that is not UTF-8 aborted the whole plan (and left a job
// directory behind).
#[test]
fn case_03_a_name_that_is_not_utf8_is_skipped_not_fatal() {
    use std::os::unix::ffi::OsStrExt;
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    write(&src.join("ok.txt"), "fine");
    let bad = src.join(std::ffi::OsStr::from_bytes(b"caf\xe9"));
    std::fs::create_dir(&bad).unwrap();
    std::fs::write(bad.join("inner.txt"), "under a bad folder name").unwrap();
    std::fs::write(src.join(std::ffi::OsStr::from_bytes(b"r\xe9sum\xe9.doc")), "bad name").unwrap();

    let copy = ferry(w, &["copy", "src", "dst", "--job", "job", "--json"], &[]);
    assert_eq!(copy.code, 1, "{}{}", copy.stdout, copy.stderr);
    let copied = copy.json();
    assert_eq!(copied["copied"], 1, "{copied}");
    assert_eq!(copied["skipped"]["by_reason"]["invalid-name"], 2, "{copied}");
    let named: Vec<&str> = copied["skipped"]["entries"].as_array().unwrap().iter().map(|e| e["key"].as_str().unwrap()).collect();
    assert!(named.contains(&"caf\\xe9/inner.txt") && named.contains(&"r\\xe9sum\\xe9.doc"), "{copied}");
    assert_eq!(std::fs::read_to_string(w.join("dst/ok.txt")).unwrap(), "fine");
}

fn chown_nobody(path: &Path) {
    let status = std::process::Command::new("chown").args(["-R", "65534:65534"]).arg(path).status().unwrap();
    assert!(status.success());
}

// Issue 12, case 3: an unreadable folder aborted the whole plan.
#[test]
fn case_03_an_unreadable_folder_is_skipped_and_named_not_fatal() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::set_permissions(w, std::fs::Permissions::from_mode(0o755)).unwrap();
    let src = w.join("src");
    write(&src.join("a.txt"), "readable");
    write(&src.join("locked/secret.txt"), "not for ferry");
    chown_nobody(w);
    std::fs::set_permissions(src.join("locked"), std::fs::Permissions::from_mode(0o000)).unwrap();

    let run = ferry_as_nobody(w, &["copy", "src", "dst", "--job", "job", "--json"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let copied = run.json();
    assert_eq!(copied["copied"], 1, "{copied}");
    assert_eq!(copied["skipped"]["by_reason"]["unreadable"], 1, "{copied}");
    assert_eq!(copied["skipped"]["entries"][0]["key"], "locked/", "{copied}");

    // Fixed permissions, planned again in a new job: everything arrives.
    std::fs::set_permissions(src.join("locked"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = ferry_as_nobody(w, &["copy", "src", "dst2", "--job", "job2", "--json"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(std::fs::read_to_string(w.join("dst2/locked/secret.txt")).unwrap(), "not for ferry");
}

// Issue 12, case 2 (listing side) and the `--follow-symlinks` the issue asks for: links that stay
// inside the source are followed, links that leave it or loop are skipped and named.
#[test]
fn follow_symlinks_copies_links_inside_the_source_only() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    write(&src.join("data/a.txt"), "alpha");
    write(&w.join("outside/secret.txt"), "secret outside the source");
    symlink("data/a.txt", src.join("file-link")).unwrap();
    symlink("data", src.join("dir-link")).unwrap();
    symlink(w.join("outside"), src.join("out-dir")).unwrap();
    symlink(w.join("outside/secret.txt"), src.join("out-file")).unwrap();
    symlink("..", src.join("data/up")).unwrap();
    symlink("nowhere", src.join("dangling")).unwrap();

    let copy = ferry(w, &["copy", "src", "dst", "--job", "job", "--follow-symlinks", "--json"], &[]);
    assert_eq!(copy.code, 1, "{}{}", copy.stdout, copy.stderr);
    let copied = copy.json();
    assert_eq!(std::fs::read_to_string(w.join("dst/file-link")).unwrap(), "alpha");
    assert_eq!(std::fs::read_to_string(w.join("dst/dir-link/a.txt")).unwrap(), "alpha");
    assert_eq!(std::fs::read_to_string(w.join("dst/data/a.txt")).unwrap(), "alpha");
    assert!(!w.join("dst/out-dir").exists() && !w.join("dst/out-file").exists(), "a link leading out was followed");
    let by = &copied["skipped"]["by_reason"];
    assert_eq!(by["symlink-outside-root"], 3, "out-dir, out-file, dangling: {copied}");
    assert_eq!(by["symlink-loop"], 2, "data/up and dir-link/up: {copied}");
    assert_eq!(copied["copied"], 3, "{copied}");

    // The job keeps the choice: a re-run without the flag reads through the same links.
    let again = ferry(w, &["copy", "--job", "job", "--json"], &[]).json();
    assert_eq!(again["already_done"], 3, "{again}");
}

// Issue 12, case 4 (GCS): every name containing `.ferry-tmp-` was dropped from a GCS listing;
// only ferry's own part objects are set aside now, and they are named as such.
#[test]
fn case_04_gcs_sets_aside_only_ferrys_own_part_objects() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let gcs = ferry_testkit::FakeGcs::start();
    gcs.create_bucket("lake");
    let part = "big.bin.ferry-tmp-3f2a9c0d1e2b4a5f8e7d6c5b4a392817-00001";
    gcs.put_objects(
        "lake",
        &[("report.ferry-tmp-2024.csv", bytes::Bytes::from_static(b"user data")), (part, bytes::Bytes::from_static(b"a part"))],
        None,
    );
    let copy = ferry_ok(w, &["copy", "gs://lake/", "dst", "--job", "job", "--src-endpoint", &gcs.endpoint, "--json"], &[], 0).json();
    assert_eq!(copy["copied"], 1, "{copy}");
    assert_eq!(copy["skipped"]["by_reason"]["ferry-temp-file"], 1, "{copy}");
    assert_eq!(copy["skipped"]["entries"][0]["key"], part, "{copy}");
    assert_eq!(std::fs::read_to_string(w.join("dst/report.ferry-tmp-2024.csv")).unwrap(), "user data");
}
