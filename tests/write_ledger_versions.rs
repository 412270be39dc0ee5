//! The write ledger records the version each write made, where the destination keeps versions
//! (issue 13 review: `Wrote.version` was always empty, since a put's receipt had none): an S3
//! bucket with versioning on (moto) gives a version id for each put and server-side copy (moto
//! answers a multipart completion with checksums by an error, so single puts only there); GCS
//! (fake-gcs-server) a generation for each upload and compose.

mod common;

use common::ferry_ok;
use ferry_journal::WriteRow;
use ferry_testkit::tree::write_tree;
use ferry_testkit::{FakeGcs, Moto};
use std::collections::BTreeMap;
use std::path::Path;

/// Small objects, and one of two 5 MiB parts.
fn tree() -> Vec<(String, usize)> {
    vec![("a.txt".into(), 10), ("d/b.bin".into(), 300), ("big.bin".into(), 6 << 20)]
}

/// Objects each written in one request.
fn small_tree() -> Vec<(String, usize)> {
    tree().into_iter().filter(|(_, size)| *size < 1 << 20).collect()
}

fn ledger(job: &Path) -> Vec<WriteRow> {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let journal = ferry_journal::open(job, ferry_journal::JournalKind::Main).await.unwrap();
        journal.writes(None, 0, 10_000).await.unwrap()
    })
}

/// The version each finished write recorded, by key.
fn recorded_versions(rows: &[WriteRow]) -> BTreeMap<String, Option<String>> {
    rows.iter().map(|r| (r.key.clone(), r.wrote.as_ref().unwrap_or_else(|| panic!("unfinished: {r:?}")).version.clone())).collect()
}

#[test]
fn a_copy_to_a_versioned_s3_bucket_records_each_version_it_made() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    write_tree(&w.join("src"), &small_tree());
    let moto = Moto::start();
    moto.create_bucket("vers");
    moto.enable_versioning("vers");
    let env = moto.env();
    let to = ["--dst-endpoint", moto.endpoint.as_str(), "--part-size", "5MiB"];
    ferry_ok(w, &[&["copy", "src", "s3://vers/data", "--job", "j1"][..], &to].concat(), &env, 0);
    let latest = moto.latest_versions("vers");
    let want: BTreeMap<String, Option<String>> =
        small_tree().into_iter().map(|(k, _)| (k.clone(), latest.get(&format!("data/{k}")).cloned())).collect();
    assert!(want.values().all(Option::is_some), "moto made a version of each: {latest:?}");
    assert_eq!(recorded_versions(&ledger(&w.join("j1"))), want);

    // The service copying the objects itself records the copies' versions too.
    let both = ["--src-endpoint", moto.endpoint.as_str(), "--dst-endpoint", moto.endpoint.as_str(), "--part-size", "5MiB"];
    let summary =
        ferry_ok(w, &[&["copy", "s3://vers/data", "s3://vers/copy", "--job", "j2", "--json"][..], &both].concat(), &env, 0).json();
    assert!(summary["verified_by"].as_object().unwrap().keys().all(|k| k.starts_with("server-side")), "{summary}");
    let latest = moto.latest_versions("vers");
    let want: BTreeMap<String, Option<String>> =
        small_tree().into_iter().map(|(k, _)| (k.clone(), latest.get(&format!("copy/{k}")).cloned())).collect();
    assert_eq!(recorded_versions(&ledger(&w.join("j2"))), want);
}

#[test]
fn a_copy_to_gcs_records_each_generation_it_made() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    write_tree(&w.join("src"), &tree());
    let gcs = FakeGcs::start();
    gcs.create_bucket("gens");
    ferry_ok(w, &["copy", "src", "gs://gens/data", "--job", "j1", "--dst-endpoint", &gcs.endpoint, "--part-size", "5MiB"], &[], 0);
    let generations = gcs.generations("gens");
    let want: BTreeMap<String, Option<String>> =
        tree().into_iter().map(|(k, _)| (k.clone(), generations.get(&format!("data/{k}")).cloned())).collect();
    assert!(want.values().all(Option::is_some), "{generations:?}");
    assert_eq!(recorded_versions(&ledger(&w.join("j1"))), want);
}
