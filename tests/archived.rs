//! Issue 14: archived source objects (S3 GLACIER / DEEP_ARCHIVE on moto) are counted at plan
//! time, never stop a run, and are either skipped and named (`--archived skip`) or restored and
//! copied (`--archived restore`); an S3 error about one object is that object's failure, with
//! its code, never "check the credentials".

mod common;

use common::{ferry, ferry_ok};
use ferry_testkit::Moto;

/// A bucket with two objects to copy and two archived ones (GLACIER and DEEP_ARCHIVE).
fn cold_bucket(moto: &Moto, bucket: &str) {
    moto.create_bucket(bucket);
    moto.boto3_on(
        bucket,
        r#"
s3.put_object(Bucket=bucket, Key="hot/a.txt", Body=b"aaa")
s3.put_object(Bucket=bucket, Key="hot/b.txt", Body=b"bbbb")
s3.put_object(Bucket=bucket, Key="old/2019.tar", Body=b"x" * 100, StorageClass="GLACIER")
s3.put_object(Bucket=bucket, Key="old/2018.tar", Body=b"y" * 50, StorageClass="DEEP_ARCHIVE")
"#,
    );
}

// See: issue 14 ("one archived object stops the migration"). The object went to GLACIER after
// the plan listed it as STANDARD: its read fails with InvalidObjectState (HTTP 403), which ferry
// took for a credentials problem and stopped the run with exit 2.
#[test]
fn an_s3_error_about_one_object_fails_that_object_with_its_code() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let moto = Moto::start();
    let env = moto.env();
    moto.create_bucket("frozen");
    moto.boto3_on(
        "frozen",
        "s3.put_object(Bucket=bucket, Key='a.txt', Body=b'aaa')\ns3.put_object(Bucket=bucket, Key='b.txt', Body=b'bbb')",
    );
    ferry_ok(w, &["plan", "s3://frozen/", "out", "--job", "j", "--src-endpoint", &moto.endpoint], &env, 0);
    let to_glacier = "s3.copy_object(Bucket=bucket, Key='b.txt', CopySource={'Bucket': bucket, 'Key': 'b.txt'}, StorageClass='GLACIER')";
    moto.boto3_on("frozen", to_glacier);

    let run = ferry(w, &["copy", "s3://frozen/", "out", "--job", "j", "--src-endpoint", &moto.endpoint, "--json"], &env);
    assert_eq!(run.code, 1, "one object failed, the run went on\n{}{}", run.stdout, run.stderr);
    assert!(!format!("{}{}", run.stdout, run.stderr).contains("credentials"), "{}{}", run.stdout, run.stderr);
    let summary = run.json();
    assert_eq!(summary["stopped_by"], serde_json::Value::Null, "{summary}");
    assert_eq!(summary["copied"], 1, "{summary}");
    let failures = summary["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{summary}");
    assert_eq!(failures[0]["key"], "b.txt");
    assert_eq!(failures[0]["kind"], "archived", "{summary}");
    assert!(failures[0]["error"].as_str().unwrap().contains("InvalidObjectState"), "{summary}");
    assert_eq!(std::fs::read(w.join("out/a.txt")).unwrap(), b"aaa");
}

#[test]
fn plan_counts_the_archived_objects_and_the_manifest_records_each_class() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let moto = Moto::start();
    let env = moto.env();
    cold_bucket(&moto, "cold");
    let plan = ferry_ok(w, &["plan", "s3://cold/", "out", "--job", "j", "--src-endpoint", &moto.endpoint], &env, 0);
    assert!(plan.stdout.contains("2 of 4 objects (150 B) are archived and cannot be read until restored"), "{}", plan.stdout);
    let json = ferry_ok(w, &["plan", "s3://cold/", "out", "--job", "j", "--json"], &env, 0).json();
    assert_eq!((json["archived"].as_u64(), json["archived_bytes"].as_u64()), (Some(2), Some(150)), "{json}");

    let export = ferry_ok(w, &["manifest", "export", "--job", "j", "--format", "jsonl"], &env, 0);
    let classes: Vec<(String, String, String)> = export
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|v| {
            let class = &v["storage_class"];
            let name = class["name"].as_str().unwrap_or("-").to_string();
            (v["key"].as_str().unwrap().to_string(), name, class["state"].as_str().unwrap_or("-").to_string())
        })
        .collect();
    let want = [
        ("hot/a.txt", "STANDARD", "online"),
        ("hot/b.txt", "STANDARD", "online"),
        ("old/2018.tar", "DEEP_ARCHIVE", "archived"),
        ("old/2019.tar", "GLACIER", "archived"),
    ];
    let want: Vec<(String, String, String)> = want.iter().map(|(k, c, s)| (k.to_string(), c.to_string(), s.to_string())).collect();
    assert_eq!(classes, want, "{}", export.stdout);
}

#[test]
fn archived_skip_copies_the_rest_and_names_the_archived_objects() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let moto = Moto::start();
    let env = moto.env();
    cold_bucket(&moto, "cold");
    let args = ["copy", "s3://cold/", "out", "--job", "j", "--src-endpoint", &moto.endpoint, "--archived", "skip", "--json"];
    let run = ferry(w, &args, &env);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let summary = run.json();
    assert_eq!(summary["copied"], 2, "{summary}");
    let mut named: Vec<(&str, &str)> =
        summary["failures"].as_array().unwrap().iter().map(|f| (f["key"].as_str().unwrap(), f["kind"].as_str().unwrap())).collect();
    named.sort();
    assert_eq!(named, [("old/2018.tar", "archived"), ("old/2019.tar", "archived")], "{summary}");
    assert!(summary["failures"][0]["error"].as_str().unwrap().contains("--archived restore"), "{summary}");
    assert_eq!(std::fs::read(w.join("out/hot/b.txt")).unwrap(), b"bbbb");
    assert!(!w.join("out/old").exists(), "nothing archived was read or written");

    // The text report names them too, and so does verify.
    let text = ferry(w, &["copy", "s3://cold/", "out", "--job", "j", "--src-endpoint", &moto.endpoint, "--archived", "skip"], &env);
    assert_eq!(text.code, 1);
    assert!(text.stdout.contains("old/2019.tar") || text.stderr.contains("old/2019.tar"), "{}{}", text.stdout, text.stderr);
    let verify = ferry(w, &["verify", "--job", "j"], &env);
    assert_eq!(verify.code, 3, "{}{}", verify.stdout, verify.stderr);
    assert!(verify.stdout.contains("old/2018.tar") && verify.stdout.contains("archived"), "{}", verify.stdout);
}

#[test]
fn archived_restore_requests_restores_and_copies_the_objects_once_readable() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let moto = Moto::start();
    let env = moto.env();
    cold_bucket(&moto, "cold");
    let args = [
        "copy",
        "s3://cold/",
        "out",
        "--job",
        "j",
        "--src-endpoint",
        &moto.endpoint,
        "--archived",
        "restore",
        "--restore-days",
        "2",
        "--restore-tier",
        "bulk",
        "--json",
    ];
    let summary = ferry_ok(w, &args, &env, 0).json();
    assert_eq!((summary["copied"].as_u64(), summary["failed"].as_u64()), (Some(4), Some(0)), "{summary}");
    assert_eq!(summary["restores_requested"], 2, "{summary}");
    assert_eq!(std::fs::read(w.join("out/old/2019.tar")).unwrap(), vec![b'x'; 100]);
    assert_eq!(std::fs::read(w.join("out/old/2018.tar")).unwrap(), vec![b'y'; 50]);
    // Restored for the days asked (moto keeps the restored copy until now + days).
    let kept_days = r#"
import email.utils, time
restore = s3.head_object(Bucket=bucket, Key="old/2019.tar")["Restore"]
expiry = email.utils.parsedate_to_datetime(restore.split('expiry-date="')[1].rstrip('"')).timestamp()
days = (expiry - time.time()) / 86400
assert 1.5 < days <= 2.01, restore
"#;
    moto.boto3_on("cold", kept_days);
    // The journal recorded the restores; none is in flight any more.
    let status = ferry_ok(w, &["status", "--job", "j", "--json"], &env, 0).json();
    assert_eq!(status["counts"]["restores_requested"], 2, "{status}");
    assert_eq!(status["counts"]["restoring"].as_u64().unwrap_or(0), 0, "{status}");
    ferry_ok(w, &["verify", "--job", "j", "--all-bytes"], &env, 0);
}

// Azure's Archive tier: the read answers 409 BlobArchived. That blob fails alone, kind
// `archived`, with the code in its message; the others are copied and the run goes on.
#[test]
fn an_azure_blob_in_the_archive_tier_fails_alone_with_its_code() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let azurite = ferry_testkit::Azurite::start();
    azurite.create_container("tiers");
    azurite.put_blobs("tiers", &[("hot.txt", "hot".into()), ("frozen.txt", "frozen".into())]);
    azurite.set_tier("tiers", "frozen.txt", "Archive");
    let run = ferry(w, &["copy", "az://tiers/", "out", "--job", "j", "--src-endpoint", &azurite.endpoint, "--json"], &[]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let summary = run.json();
    assert_eq!((summary["copied"].as_u64(), summary["stopped_by"].is_null()), (Some(1), true), "{summary}");
    let failure = &summary["failures"][0];
    assert_eq!((failure["key"].as_str(), failure["kind"].as_str()), (Some("frozen.txt"), Some("archived")), "{summary}");
    assert!(failure["error"].as_str().unwrap().contains("BlobArchived"), "{summary}");
    assert_eq!(std::fs::read(w.join("out/hot.txt")).unwrap(), b"hot");
}
