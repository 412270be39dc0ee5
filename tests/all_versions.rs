//! `--all-versions` (issue 14, fidelity): every version of each key is listed, read by its
//! version id and written oldest first, so a versioned destination holds the source's history in
//! the source's order; delete markers are recorded and counted, never written; a destination
//! that does not keep versions (or a provider without them) is refused with exit 2 before
//! anything is written. On moto (S3 with bucket versioning).

mod common;

use common::ferry_ok;
use ferry_testkit::{CountingProxy, FakeGcs, Faults, Moto};
use std::collections::BTreeMap;

type History = BTreeMap<String, Vec<Option<String>>>;

fn history(entries: &[(&str, &[Option<&str>])]) -> History {
    entries.iter().map(|(k, v)| (k.to_string(), v.iter().map(|b| b.map(str::to_string)).collect())).collect()
}

/// A key with three versions then a delete marker, and one with a single version.
fn source(moto: &Moto, bucket: &str) {
    moto.create_bucket(bucket);
    moto.enable_versioning(bucket);
    let steps =
        [("a.txt", Some("one")), ("b.txt", Some("only b")), ("a.txt", Some("two, longer")), ("a.txt", Some("three")), ("a.txt", None)];
    moto.write_history(bucket, &steps);
    assert_eq!(
        moto.history(bucket),
        history(&[("a.txt", &[Some("one"), Some("two, longer"), Some("three"), None]), ("b.txt", &[Some("only b")])]),
        "the source as written"
    );
}

#[test]
fn every_version_is_copied_oldest_first_and_delete_markers_are_counted_not_written() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let moto = Moto::start();
    source(&moto, "src");
    moto.create_bucket("dst");
    moto.enable_versioning("dst");
    let env = moto.env();
    let ends = ["--src-endpoint", moto.endpoint.as_str(), "--dst-endpoint", moto.endpoint.as_str()];

    let plan = ferry_ok(w, &[&["plan", "s3://src", "s3://dst", "--job", "j", "--all-versions", "--json"][..], &ends].concat(), &env, 0);
    let plan = plan.json();
    assert_eq!(plan["objects"], 4, "{plan}");
    assert_eq!(plan["skipped_by_reason"]["delete-marker"], 1, "{plan}");
    let toml = std::fs::read_to_string(w.join("j/job.toml")).unwrap();
    assert!(toml.contains("all_versions = true"), "{toml}");

    // A job planned without the flag does not take it later: its rows are one per key.
    ferry_ok(w, &[&["plan", "s3://src", "s3://dst", "--job", "current", "--json"][..], &ends].concat(), &env, 0);
    let run = ferry_ok(w, &[&["copy", "--job", "current", "--all-versions"][..], &ends].concat(), &env, 2);
    assert!(run.stderr.contains("was planned without --all-versions"), "{}", run.stderr);

    // The job keeps the flag: copy is not given it again. Server-side copies would name the
    // current version: the versions are read and sent.
    let copy = ferry_ok(w, &[&["copy", "--job", "j", "--json"][..], &ends].concat(), &env, 0).json();
    assert_eq!(copy["copied"], 4, "{copy}");
    let copied = history(&[("a.txt", &[Some("one"), Some("two, longer"), Some("three")]), ("b.txt", &[Some("only b")])]);
    assert_eq!(moto.history("dst"), copied, "the same versions in the same order, the delete marker not written");

    // The manifest's export names each version with what copying it proved.
    let export = ferry_ok(w, &["manifest", "export", "--job", "j", "--format", "jsonl"], &env, 0).stdout;
    let lines: Vec<serde_json::Value> = export.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let a: Vec<_> = lines.iter().filter(|l| l["key"] == "a.txt").collect();
    assert_eq!(a.len(), 4, "{export}");
    let shas: std::collections::BTreeSet<_> = a[..3].iter().map(|l| l["sha256"].as_str().expect("copied, proved")).collect();
    assert_eq!(shas.len(), 3, "each version's own proof: {export}");
    assert_eq!(a[3]["skipped"], "delete-marker", "{export}");

    // verify compares each key's versions, in order: by the entity tags the copy was given,
    // or by reading every version back.
    let verify = ferry_ok(w, &[&["verify", "--job", "j", "--json"][..], &ends].concat(), &env, 0).json();
    assert_eq!((verify["checked"].as_u64(), verify["matched"].as_u64()), (Some(4), Some(4)), "{verify}");
    assert_eq!(verify["proved_by"]["etag recorded at copy"], 4, "{verify}");
    let verify = ferry_ok(w, &[&["verify", "--job", "j", "--all-bytes", "--json"][..], &ends].concat(), &env, 0).json();
    assert_eq!(verify["proved_by"]["sha256 read-back"], 4, "{verify}");
    // A version written at the destination since: the key's versions no longer line up.
    moto.write_history("dst", &[("a.txt", Some("later"))]);
    let verify = ferry_ok(w, &[&["verify", "--job", "j", "--json"][..], &ends].concat(), &env, 3).json();
    let differences = verify["differences"].as_array().unwrap();
    assert_eq!(differences.len(), 3, "{verify}");
    // Each copied version now meets the one written after it: another size, or another etag.
    assert!(differences.iter().all(|d| d["key"] == "a.txt" && (d["kind"] == "size" || d["kind"] == "changed")), "{verify}");
}

#[test]
fn a_version_that_fails_holds_back_the_newer_ones_and_a_resume_writes_them_in_order() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let moto = Moto::start();
    source(&moto, "src");
    moto.create_bucket("dst");
    moto.enable_versioning("dst");
    let env = moto.env();
    // The destination refuses the first object's every upload (one request's attempts): the
    // oldest version of a.txt fails.
    let attempts = u64::from(ferry_providers::retries::REQUEST.attempts);
    let proxy = CountingProxy::start_with_faults(&moto.endpoint, Faults { refuse_uploads: attempts, ..Faults::DEFAULT });
    let args = ["copy", "s3://src", "s3://dst", "--job", "j", "--all-versions", "--transfers", "1", "--json"];
    let ends = ["--src-endpoint", moto.endpoint.as_str(), "--dst-endpoint", proxy.endpoint.as_str()];
    let first = ferry_ok(w, &[&args[..], &ends].concat(), &env, 1).json();
    assert_eq!((first["copied"].as_u64(), first["failed"].as_u64()), (Some(1), Some(1)), "{first}");
    assert_eq!(moto.history("dst"), history(&[("b.txt", &[Some("only b")])]), "no newer version of a.txt written before its oldest");

    let ends = ["--src-endpoint", moto.endpoint.as_str(), "--dst-endpoint", moto.endpoint.as_str()];
    let again = ferry_ok(w, &[&["copy", "--job", "j", "--json"][..], &ends].concat(), &env, 0).json();
    assert_eq!(again["copied"], 3, "{again}");
    assert_eq!(
        moto.history("dst"),
        history(&[("a.txt", &[Some("one"), Some("two, longer"), Some("three")]), ("b.txt", &[Some("only b")])]),
        "the resume wrote a.txt's versions oldest first"
    );
}

#[test]
fn a_destination_that_does_not_keep_versions_is_refused_before_anything_is_written() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let moto = Moto::start();
    source(&moto, "src");
    moto.create_bucket("flat");
    let env = moto.env();
    let ends = ["--src-endpoint", moto.endpoint.as_str(), "--dst-endpoint", moto.endpoint.as_str()];
    let run = ferry_ok(w, &[&["copy", "s3://src", "s3://flat", "--job", "j", "--all-versions"][..], &ends].concat(), &env, 2);
    assert!(run.stderr.contains("does not keep versions"), "{}", run.stderr);
    assert_eq!(run.stderr.lines().filter(|l| !l.trim().is_empty()).count(), 1, "one clear line: {}", run.stderr);
    assert!(moto.history("flat").is_empty(), "nothing written");
    assert!(!w.join("j").exists(), "no job made");

    // A GCS bucket without object versioning: the same.
    let gcs = FakeGcs::start();
    gcs.create_bucket("gcs");
    let gcs_end = ["--src-endpoint", moto.endpoint.as_str(), "--dst-endpoint", gcs.endpoint.as_str()];
    let run = ferry_ok(w, &[&["plan", "s3://src", "gs://gcs", "--job", "g", "--all-versions"][..], &gcs_end].concat(), &env, 2);
    assert!(run.stderr.contains("does not keep versions"), "{}", run.stderr);
    assert!(gcs.object_names("gcs").is_empty());

    // A provider without versions ferry can list and read (a local folder): refused too.
    let run = ferry_ok(w, &[&["copy", "s3://src", "out", "--job", "l", "--all-versions"][..], &ends[..2]].concat(), &env, 2);
    assert!(run.stderr.contains("has no versions ferry can list and read"), "{}", run.stderr);
    assert!(!w.join("out").exists() && !w.join("l").exists());
}

#[test]
fn gcs_generations_are_copied_oldest_first_between_versioned_buckets_and_from_s3() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let gcs = FakeGcs::start();
    gcs.create_versioned_bucket("src");
    for (key, body) in [("a.txt", "one"), ("b.txt", "only b"), ("a.txt", "two, longer"), ("a.txt", "three")] {
        gcs.put_objects("src", &[(key, bytes::Bytes::from(body))], None);
    }
    let want: BTreeMap<String, Vec<String>> = [("a.txt", vec!["one", "two, longer", "three"]), ("b.txt", vec!["only b"])]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into_iter().map(str::to_string).collect()))
        .collect();
    assert_eq!(gcs.history("src"), want, "the source as written");
    gcs.create_versioned_bucket("dst");
    let ends = ["--src-endpoint", gcs.endpoint.as_str(), "--dst-endpoint", gcs.endpoint.as_str()];
    let copy = ferry_ok(w, &[&["copy", "gs://src", "gs://dst", "--job", "j", "--all-versions", "--json"][..], &ends].concat(), &[], 0);
    assert_eq!(copy.json()["copied"], 4, "{}", copy.stdout);
    assert_eq!(gcs.history("dst"), want, "each generation read by its number and written in order");
    let verify = ferry_ok(w, &[&["verify", "--job", "j", "--json"][..], &ends].concat(), &[], 0).json();
    assert_eq!(verify["matched"], 4, "{verify}");

    // From S3 (versions and a delete marker) into a versioned GCS bucket.
    let moto = Moto::start();
    source(&moto, "s3src");
    gcs.create_versioned_bucket("froms3");
    let ends = ["--src-endpoint", moto.endpoint.as_str(), "--dst-endpoint", gcs.endpoint.as_str()];
    ferry_ok(w, &[&["copy", "s3://s3src", "gs://froms3", "--job", "k", "--all-versions"][..], &ends].concat(), &moto.env(), 0);
    let mut want = want;
    want.insert("b.txt".into(), vec!["only b".into()]);
    assert_eq!(gcs.history("froms3"), want);
}
