//! `ferry cutover` (issue 15) end to end: on a quiet source it exits 0 and writes a record whose
//! SHA-256 it prints; a change written between its final delta and its second listing makes it
//! fail, naming the key.

mod common;

use common::{ferry, ferry_ok};
use ferry_testkit::proxy::Hook;
use ferry_testkit::tree::write_tree;
use ferry_testkit::{CountingProxy, Faults, Moto};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

fn sha256_hex(bytes: &[u8]) -> String {
    ferry_testkit::tree::file_sha256_of_bytes(bytes)
}

/// The record file the run printed on stderr (`cutover record PATH sha256 DIGEST`).
fn printed_record(w: &Path, stderr: &str) -> (std::path::PathBuf, String) {
    let line = stderr.lines().find(|l| l.contains("cutover record")).unwrap_or_else(|| panic!("no record line: {stderr}"));
    let mut words = line.split_whitespace().skip_while(|w| *w != "record").skip(1);
    let path = w.join(words.next().unwrap());
    assert_eq!(words.next(), Some("sha256"));
    (path, words.next().unwrap().to_string())
}

#[test]
fn a_cutover_of_a_quiet_source_holds_and_its_record_is_the_file_it_hashed() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    write_tree(&src, &(0..30).map(|i| (format!("d{}/f{i}.bin", i % 3), 100 + i)).collect::<Vec<_>>());
    ferry_ok(w, &["copy", "src", "dst", "--job", "j"], &[], 0);
    // Changed since the bulk copy: the final delta replays it.
    write_tree(&src, &[("d0/new.bin".to_string(), 77)]);
    std::fs::remove_file(src.join("d1/f1.bin")).unwrap();

    let out = ferry_ok(w, &["cutover", "--job", "j", "--all-bytes"], &[], 0);
    assert!(out.stdout.contains("HOLDS"), "{}", out.stdout);
    let (path, digest) = printed_record(w, &out.stderr);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(sha256_hex(&bytes), digest, "the printed digest is the record's");
    let record: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(record["holds"], true, "{record:#}");
    assert_eq!(record["final_generation"], 2);
    assert_eq!((record["lag_objects"].as_u64(), record["lag_deletes"].as_u64()), (Some(0), Some(0)));
    assert_eq!(record["listings_identical"], true);
    assert_eq!(record["objects"], 30);
    assert_eq!(record["verify_differences"], 0);
    assert_eq!(record["proved_by"]["sha256 read-back"], 30, "{record:#}");
    assert_eq!(record["proved_by"]["absent"], 1, "{record:#}");
    // Each generation's digest is its sealed manifest.json's.
    let generations = record["generations"].as_array().unwrap();
    assert_eq!(generations.len(), 2);
    for g in generations {
        let dir = w.join(format!("j/manifests/gen-{:04}", g["generation"].as_u64().unwrap()));
        assert_eq!(g["digest"].as_str().unwrap(), sha256_hex(&std::fs::read(dir.join("manifest.json")).unwrap()));
    }
    assert_eq!(record["manifest_digest"], generations[1]["digest"]);
    assert!(w.join("dst/d0/new.bin").exists() && !w.join("dst/d1/f1.bin").exists());
    // --dry-run is not a cutover.
    let out = ferry(w, &["cutover", "--job", "j", "--dry-run"], &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
}

#[test]
fn a_change_between_the_final_delta_and_the_second_listing_fails_the_cutover_naming_the_key() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let moto = Moto::start();
    moto.create_bucket("frozen");
    write_tree(&w.join("seed"), &(0..20).map(|i| (format!("k{i:02}"), 50)).collect::<Vec<_>>());
    let env = moto.env();
    ferry_ok(w, &["copy", "seed", "s3://frozen", "--job", "seed-job", "--dst-endpoint", &moto.endpoint], &env, 0);
    ferry_ok(w, &["copy", "s3://frozen", "dst", "--job", "j", "--src-endpoint", &moto.endpoint], &env, 0);

    // One change for the final delta to copy: its read marks the end of that delta's listing.
    std::fs::write(w.join("changed.txt"), "changed before the freeze").unwrap();
    let one = w.join("one");
    std::fs::create_dir_all(&one).unwrap();
    std::fs::rename(w.join("changed.txt"), one.join("k00")).unwrap();
    ferry_ok(w, &["copy", "one", "s3://frozen", "--job", "one-job", "--dst-endpoint", &moto.endpoint], &env, 0);

    // A writer that ignores the freeze: it puts a key just before the first listing request
    // after the final delta read its change (the cutover's second listing) reaches the source.
    let stage = Arc::new(AtomicU64::new(0));
    let upstream = moto.endpoint.clone();
    let seen = stage.clone();
    let hook: Hook = Arc::new(move |head| {
        let get = head.method == http::Method::GET;
        let listing = get && head.uri.query().is_some_and(|q| q.contains("list-type=2"));
        let object_read = get && !listing && head.uri.path() == "/frozen/k00";
        if object_read {
            let _ = seen.compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst);
        }
        if !listing || seen.compare_exchange(1, 2, Ordering::SeqCst, Ordering::SeqCst).is_err() {
            return None;
        }
        let url = format!("{upstream}/frozen/late-writer.txt");
        Some(Box::pin(async move {
            let status = reqwest::Client::new().put(url).body("written after the freeze").send().await.unwrap().status();
            assert!(status.is_success(), "{status}");
        }))
    });
    let proxy = CountingProxy::start_with_hook(&moto.endpoint, Faults::DEFAULT, Some(hook));
    let out = ferry(w, &["cutover", "--job", "j", "--src-endpoint", &proxy.endpoint], &env);
    assert_eq!(stage.load(Ordering::SeqCst), 2, "the late write was made");
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("DOES NOT HOLD") && out.stdout.contains("late-writer.txt"), "{}", out.stdout);
    let (path, _) = printed_record(w, &out.stderr);
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert_eq!(record["holds"], false);
    assert_eq!(record["listing_differences"][0]["key"], "late-writer.txt", "{record:#}");
    assert_eq!(record["listing_differences"][0]["change"], "added");
    // Once the writer is stopped, the next cutover replays it and holds.
    let out = ferry_ok(w, &["cutover", "--job", "j", "--src-endpoint", &moto.endpoint], &env, 0);
    assert!(out.stdout.contains("HOLDS"), "{}", out.stdout);
    assert!(w.join("dst/late-writer.txt").exists());
}

#[test]
fn after_a_cutover_a_reversed_job_copies_back_exactly_what_was_written_on_the_new_side() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // moto: its listings carry entity tags, as S3's do (s3s-fs lists none, and without them
    // nothing can be taken as equal).
    let s3 = Moto::start();
    s3.create_bucket("new-side");
    let env = s3.env();
    write_tree(&w.join("old"), &(0..40).map(|i| (format!("d{}/f{i}.bin", i % 4), 100 + i)).collect::<Vec<_>>());
    ferry_ok(w, &["copy", "old", "s3://new-side", "--job", "j", "--dst-endpoint", &s3.endpoint], &env, 0);
    // Refused before a cutover holds.
    let out = ferry(w, &["reverse", "--job", "j", "--job-out", "back", "--dst-endpoint", &s3.endpoint], &env);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("no cutover record"), "{}", out.stderr);
    ferry_ok(w, &["cutover", "--job", "j", "--dst-endpoint", &s3.endpoint], &env, 0);
    // A reverse cut off earlier (kill -9) left its staging directory, half made: never a job at
    // --job-out. The next reverse starts it over.
    std::fs::create_dir_all(w.join(".back.reversing/manifests/gen-0001")).unwrap();
    std::fs::write(w.join(".back.reversing/job.toml"), "half made").unwrap();
    let reversed = ferry_ok(w, &["reverse", "--job", "j", "--job-out", "back", "--dst-endpoint", &s3.endpoint, "--json"], &env, 0).json();
    assert_eq!((reversed["objects"].as_u64(), reversed["equal_at_cutover"].as_u64()), (Some(40), Some(40)), "{reversed:#}");
    assert!(!w.join(".back.reversing").exists() && w.join("back/job.toml").exists());
    // A --job-out that holds anything is refused.
    std::fs::create_dir_all(w.join("busy")).unwrap();
    std::fs::write(w.join("busy/notes.txt"), "mine").unwrap();
    let busy = ferry(w, &["reverse", "--job", "j", "--job-out", "busy", "--dst-endpoint", &s3.endpoint], &env);
    assert_eq!(busy.code, 2, "{}", busy.stderr);

    // 50 objects written on the new side after cutover: a delta of the reversed job copies
    // back exactly those.
    write_tree(&w.join("later"), &(0..50).map(|i| (format!("after/n{i}.bin"), 64)).collect::<Vec<_>>());
    ferry_ok(w, &["copy", "later", "s3://new-side", "--job", "later-job", "--dst-endpoint", &s3.endpoint], &env, 0);
    let back = ferry_ok(w, &["delta", "--job", "back", "--src-endpoint", &s3.endpoint, "--json"], &env, 0).json();
    assert_eq!(back["changes"]["added"], 50, "{back:#}");
    assert_eq!(back["copy"]["copied"], 50, "only what was written after cutover: {back:#}");
    assert_eq!(ferry_testkit::tree::digest_tree(&w.join("old/after")), ferry_testkit::tree::digest_tree(&w.join("later/after")));
    // A key that existed at cutover and is deleted on the new side is deleted on the old side.
    s3.boto3("s3.delete_object(Bucket=args[0], Key=args[1])", &["new-side", "d0/f0.bin"]);
    let gone = ferry_ok(w, &["delta", "--delete", "--job", "back", "--src-endpoint", &s3.endpoint, "--json"], &env, 0).json();
    assert_eq!(gone["deletes"]["deleted"], 1, "{gone:#}");
    assert!(!w.join("old/d0/f0.bin").exists());
}

#[test]
fn a_same_size_rewrite_on_the_new_side_before_reverse_is_copied_back() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let s3 = Moto::start();
    s3.create_bucket("rewritten");
    let env = s3.env();
    write_tree(&w.join("old"), &(0..10).map(|i| (format!("f{i}.bin"), 100)).collect::<Vec<_>>());
    ferry_ok(w, &["copy", "old", "s3://rewritten", "--job", "j", "--dst-endpoint", &s3.endpoint], &env, 0);
    ferry_ok(w, &["cutover", "--job", "j", "--dst-endpoint", &s3.endpoint], &env, 0);
    // f3 rewritten on the new side at the same size, before the reverse.
    std::fs::create_dir_all(w.join("new")).unwrap();
    std::fs::write(w.join("new/f3.bin"), vec![b'N'; 100]).unwrap();
    ferry_ok(w, &["copy", "new", "s3://rewritten", "--job", "rewrite", "--dst-endpoint", &s3.endpoint], &env, 0);
    let reversed = ferry_ok(w, &["reverse", "--job", "j", "--job-out", "back", "--dst-endpoint", &s3.endpoint, "--json"], &env, 0).json();
    assert_eq!((reversed["equal_at_cutover"].as_u64(), reversed["written_since"].as_u64()), (Some(9), Some(1)), "{reversed:#}");
    let back = ferry_ok(w, &["delta", "--job", "back", "--src-endpoint", &s3.endpoint, "--json"], &env, 0).json();
    assert_eq!(back["copy"]["copied"], 1, "{back:#}");
    assert_eq!(std::fs::read(w.join("old/f3.bin")).unwrap(), vec![b'N'; 100]);
}
