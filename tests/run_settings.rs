//! Issue 14, hostile-user finding 2: a resume that left out `--sse` or `--storage-class` wrote
//! the rest of the job without them (11 of 12 objects unencrypted and STANDARD; `verify` exited
//! 0). A job now keeps its run settings from its first copy: a later run that leaves a flag out
//! takes the kept value, one that contradicts it is refused (exit 2, nothing written). Each
//! object's setting is read back from the emulator (boto3 HEAD on moto, Azurite's List Blobs),
//! never from ferry. Also findings 9 and 10: empty key names and restore flags without
//! `--archived restore` are refused.

mod common;

use common::{ferry, ferry_ok};
use ferry_testkit::{Azurite, Moto};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const KEYS: [&str; 6] = ["a.txt", "b.txt", "c/d.txt", "c/e.txt", "f.bin", "g.bin"];

/// A source folder of [`KEYS`].
fn source(w: &Path) -> PathBuf {
    let src = w.join("src");
    for (i, key) in KEYS.iter().enumerate() {
        let path = src.join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, format!("object {i}").repeat(i + 1)).unwrap();
    }
    src
}

/// Moves every source file but the first away (`back`: puts them back), so that a copy of the
/// planned job writes one object and fails the rest: a job left half done, without a kill.
fn hide_all_but_one(w: &Path, src: &Path, back: bool) {
    let aside = w.join("aside");
    for key in &KEYS[1..] {
        let (from, to) = if back { (aside.join(key), src.join(key)) } else { (src.join(key), aside.join(key)) };
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::rename(from, to).unwrap();
    }
}

fn all(value: &str) -> BTreeMap<String, String> {
    KEYS.iter().map(|k| (k.to_string(), value.to_string())).collect()
}

/// A refusal: exit 2, one line on stderr saying `says`.
fn refused(w: &Path, args: &[&str], env: &[(String, String)], says: &str) {
    let run = ferry(w, args, env);
    assert_eq!(run.code, 2, "{args:?}: {}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains(says), "{args:?}: {}", run.stderr);
    assert_eq!(run.stderr.trim().lines().count(), 1, "one line: {}", run.stderr);
}

#[test]
fn finding_02_a_resume_without_the_flags_writes_the_rest_encrypted_and_in_the_class() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = source(w);
    let src = src.to_str().unwrap();
    let moto = Moto::start();
    let env = moto.env();
    moto.create_bucket("sealed");
    let ep = moto.endpoint.as_str();

    ferry_ok(w, &["plan", src, "s3://sealed/", "--job", "j", "--dst-endpoint", ep], &env, 0);
    hide_all_but_one(w, Path::new(src), false);
    let first = ["copy", "--job", "j", "--sse", "AES256", "--storage-class", "standard_ia", "--json"];
    let report = ferry_ok(w, &[&first[..], &["--dst-endpoint", ep]].concat(), &env, 1).json();
    assert_eq!((report["copied"].as_u64(), report["failed"].as_u64()), (Some(1), Some(5)), "{report}");
    hide_all_but_one(w, Path::new(src), true);
    let written = moto.head_headers("sealed", &["x-amz-storage-class", "x-amz-server-side-encryption"]);
    assert_eq!(written, BTreeMap::from([("a.txt".to_string(), "STANDARD_IA AES256".to_string())]));
    let toml = std::fs::read_to_string(w.join("j/job.toml")).unwrap();
    assert!(toml.contains("[settings]") && toml.contains("sse = \"AES256\"") && toml.contains("storage_class = \"STANDARD_IA\""), "{toml}");

    // Another value is refused, before anything is written; the same value in another case is
    // the same value.
    refused(w, &["resume", "--job", "j", "--sse", "aws:kms"], &env, "--sse aws:kms: this job was first copied with --sse AES256");
    refused(
        w,
        &["copy", src, "s3://sealed/", "--job", "j", "--storage-class", "STANDARD"],
        &env,
        "--storage-class STANDARD: this job was first copied with --storage-class STANDARD_IA",
    );
    refused(w, &["resume", "--job", "j", "--tags", "skip"], &env, "--tags skip: this job was first copied with --tags copy");
    assert_eq!(
        moto.head_headers("sealed", &["x-amz-storage-class", "x-amz-server-side-encryption"]),
        written,
        "nothing written by a refused run"
    );

    // The flags left out: the kept ones.
    let report = ferry_ok(w, &["resume", "--job", "j", "--storage-class", "STANDARD_IA", "--json"], &env, 0).json();
    assert_eq!((report["copied"].as_u64(), report["sse"].as_str()), (Some(5), Some("AES256")), "{report}");
    assert_eq!(moto.head_headers("sealed", &["x-amz-storage-class", "x-amz-server-side-encryption"]), all("STANDARD_IA AES256"));
    ferry_ok(w, &["verify", "--job", "j"], &env, 0);
}

#[test]
fn finding_02_azure_blobs_keep_the_tier_and_local_metadata_is_kept_too() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = source(w);
    let src = src.to_str().unwrap();
    let azurite = Azurite::start();
    azurite.create_container("tiered");
    let ep = azurite.endpoint.as_str();

    ferry_ok(w, &["plan", src, "az://tiered/", "--job", "j", "--dst-endpoint", ep], &[], 0);
    hide_all_but_one(w, Path::new(src), false);
    ferry_ok(w, &["copy", "--job", "j", "--storage-class", "cool"], &[], 1);
    hide_all_but_one(w, Path::new(src), true);
    assert_eq!(azurite.access_tiers("tiered"), BTreeMap::from([("a.txt".to_string(), "Cool".to_string())]));

    refused(w, &["resume", "--job", "j", "--storage-class", "Hot"], &[], "this job was first copied with --storage-class Cool");
    // The job was copied without local metadata: reading the source's sidecars now would
    // write the rest with what the first objects lack.
    refused(w, &["resume", "--job", "j", "--local-metadata", "sidecar"], &[], "first copied with --local-metadata none");
    assert_eq!(azurite.access_tiers("tiered").len(), 1, "nothing written by a refused run");

    ferry_ok(w, &["resume", "--job", "j"], &[], 0);
    assert_eq!(azurite.access_tiers("tiered"), all("Cool"));
}

#[test]
fn a_job_made_before_settings_were_kept_keeps_those_of_its_next_copy() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = source(w);
    let src = src.to_str().unwrap();
    let moto = Moto::start();
    let env = moto.env();
    moto.create_bucket("old");
    let ep = moto.endpoint.as_str();
    ferry_ok(w, &["plan", src, "s3://old/", "--job", "j", "--dst-endpoint", ep], &env, 0);
    // What a plan (or an older ferry) leaves: no [settings].
    assert!(!std::fs::read_to_string(w.join("j/job.toml")).unwrap().contains("settings"));
    // A dry run keeps nothing: it wrote nothing.
    ferry_ok(w, &["copy", "--job", "j", "--sse", "aws:kms", "--dry-run"], &env, 0);
    hide_all_but_one(w, Path::new(src), false);
    ferry_ok(w, &["copy", "--job", "j", "--sse", "AES256"], &env, 1);
    hide_all_but_one(w, Path::new(src), true);
    ferry_ok(w, &["resume", "--job", "j"], &env, 0);
    assert_eq!(moto.head_headers("old", &["x-amz-storage-class", "x-amz-server-side-encryption"]), all("- AES256"));
}

#[test]
fn findings_09_10_empty_keys_and_restore_flags_without_restore_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = source(w);
    let src = src.to_str().unwrap();
    // Nothing listens on port 9: a request would fail differently (and later).
    let ep = "http://127.0.0.1:9";
    let cases: [(&[&str], &str); 6] = [
        (&["s3://bkt/", "--sse", "aws:kms", "--sse-kms-key-id", ""], "--sse-kms-key-id is empty"),
        (&["s3://bkt/", "--sse", "aws:kms", "--sse-kms-key-id", " "], "--sse-kms-key-id is empty"),
        (&["gs://bkt/", "--gcs-kms-key", ""], "--gcs-kms-key is empty"),
        (&["s3://bkt/", "--restore-days", "3"], "--restore-days applies only with --archived restore"),
        (&["s3://bkt/", "--archived", "skip", "--restore-tier", "bulk"], "--restore-tier applies only with --archived restore"),
        (&["s3://bkt/", "--restore-wait", "1h"], "--restore-wait applies only with --archived restore"),
    ];
    for (args, says) in cases {
        refused(w, &[&["copy", src][..], args, &["--job", "j", "--dst-endpoint", ep]].concat(), &[], says);
        assert!(!w.join("j").exists(), "nothing written: {args:?}");
    }
}

// Finding 10: `copy` did not say how many objects were archived, and `expedited` was sent for
// DEEP_ARCHIVE (which S3 refuses). moto restores at once and takes any tier, so what is proved
// here is the count of restores asked at standard instead, and the summaries.
#[test]
fn finding_10_copy_counts_archived_objects_and_restores_deep_archive_at_standard() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let moto = Moto::start();
    let env = moto.env();
    // Two buckets alike: moto keeps an object restored once.
    for bucket in ["cold", "cold2"] {
        moto.create_bucket(bucket);
        moto.boto3_on(
            bucket,
            r#"
s3.put_object(Bucket=bucket, Key="hot.txt", Body=b"aaa")
s3.put_object(Bucket=bucket, Key="2019.tar", Body=b"x" * 100, StorageClass="GLACIER")
s3.put_object(Bucket=bucket, Key="2018.tar", Body=b"y" * 50, StorageClass="DEEP_ARCHIVE")
"#,
        );
    }
    let ep = moto.endpoint.as_str();
    let skip = ferry_ok(w, &["copy", "s3://cold/", "out", "--job", "j", "--src-endpoint", ep], &env, 1);
    assert!(skip.stdout.contains("archived objects: 2 in the manifest, 2 not read (--archived skip;"), "{}", skip.stdout);
    let json = ferry_ok(w, &["resume", "--job", "j", "--json"], &env, 1).json();
    assert_eq!((json["archived"].as_u64(), json["archived_not_read"].as_u64()), (Some(2), Some(2)), "{json}");

    // The next run of the same job restores them: `--archived` follows the latest run.
    let run = ferry_ok(w, &["resume", "--job", "j", "--archived", "restore", "--restore-tier", "expedited"], &env, 0);
    assert!(run.stdout.contains("archived objects: 2 in the manifest, 2 restores requested"), "{}", run.stdout);
    assert!(run.stdout.contains("1 restores asked at standard, not expedited"), "{}", run.stdout);
    assert_eq!(std::fs::read(w.join("out/2018.tar")).unwrap(), vec![b'y'; 50]);
    let toml = std::fs::read_to_string(w.join("j/job.toml")).unwrap();
    assert!(toml.contains("tier = \"expedited\""), "kept: {toml}");

    let args = [
        "copy",
        "s3://cold2/",
        "out2",
        "--job",
        "k",
        "--src-endpoint",
        ep,
        "--archived",
        "restore",
        "--restore-tier",
        "expedited",
        "--json",
    ];
    let json = ferry_ok(w, &args, &env, 0).json();
    assert_eq!((json["restores_requested"].as_u64(), json["restores_at_other_tier"].as_u64()), (Some(2), Some(1)), "{json}");
    assert_eq!(
        (json["archived"].as_u64(), json["restoring"].as_u64(), json["archived_not_read"].as_u64()),
        (Some(2), Some(0), Some(0)),
        "{json}"
    );
}

// Finding 10: object locks were counted by `plan` only; a `copy` that plans says them too.
#[test]
fn finding_10_copy_names_the_objects_under_object_lock() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let moto = Moto::start();
    let env = moto.env();
    moto.boto3_on(
        "vault",
        r#"
s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
s3.put_object(Bucket=bucket, Key="free.txt", Body=b"a")
s3.put_object(Bucket=bucket, Key="held.txt", Body=b"b", ChecksumAlgorithm="CRC32", ObjectLockLegalHoldStatus="ON")
"#,
    );
    let ep = moto.endpoint.as_str();
    let text = ferry_ok(w, &["copy", "s3://vault/", "out", "--job", "j", "--src-endpoint", ep], &env, 0);
    assert!(text.stdout.contains("1 objects are under object lock (legal hold or retention)"), "{}", text.stdout);
    assert!(text.stdout.contains("held.txt: legal hold"), "{}", text.stdout);
    let json = ferry_ok(w, &["copy", "s3://vault/", "out", "--job", "k", "--src-endpoint", ep, "--json"], &env, 0).json();
    assert_eq!((json["locked"].as_u64(), json["locked_objects"][0]["key"].as_str()), (Some(1), Some("held.txt")), "{json}");
}

// Issue 14: `--storage-class-map SRC=DST,…` writes each object in the class mapped from the
// source class the manifest recorded; unmapped classes keep the destination's default. Read
// back from Azurite (a put per object) and from moto (a server copy per object).
#[test]
fn a_storage_class_map_writes_each_object_in_the_class_mapped_from_its_source_class() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let moto = Moto::start();
    let env = moto.env();
    moto.create_bucket("mixed");
    moto.boto3_on(
        "mixed",
        r#"
s3.put_object(Bucket=bucket, Key="std.txt", Body=b"aaa")
s3.put_object(Bucket=bucket, Key="ia.txt", Body=b"bbb", StorageClass="STANDARD_IA")
s3.put_object(Bucket=bucket, Key="ir.txt", Body=b"ccc", StorageClass="GLACIER_IR")
"#,
    );
    let ep = moto.endpoint.as_str();
    let azurite = Azurite::start();
    azurite.create_container("tiers");
    let map = "glacier_ir=Archive,STANDARD_IA=cool";
    let args = ["copy", "s3://mixed/", "az://tiers/", "--job", "j", "--src-endpoint", ep, "--dst-endpoint", &azurite.endpoint];
    let report = ferry_ok(w, &[&args[..], &["--storage-class-map", map, "--json"]].concat(), &env, 0).json();
    assert_eq!(report["storage_class_map"], serde_json::json!({"GLACIER_IR": "Archive", "STANDARD_IA": "Cool"}), "{report}");
    let want = [("ia.txt", "Cool"), ("ir.txt", "Archive"), ("std.txt", "Hot (inferred)")];
    assert_eq!(azurite.access_tiers("tiers"), want.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    let toml = std::fs::read_to_string(w.join("j/job.toml")).unwrap();
    assert!(toml.contains("[settings.storage_class_map]") && toml.contains("GLACIER_IR = \"Archive\""), "kept: {toml}");
    refused(
        w,
        &["resume", "--job", "j", "--storage-class-map", "STANDARD=Cool"],
        &env,
        "this job was first copied with --storage-class-map",
    );

    // A server copy (CopyObject) takes the mapped class too; an unmapped one gets --storage-class.
    moto.create_bucket("mapped");
    let args = ["copy", "s3://mixed/", "s3://mapped/", "--job", "k", "--src-endpoint", ep, "--dst-endpoint", ep, "--json"];
    let more = ["--storage-class-map", "STANDARD_IA=GLACIER_IR,GLACIER_IR=STANDARD_IA", "--storage-class", "ONEZONE_IA"];
    let report = ferry_ok(w, &[&args[..], &more].concat(), &env, 0).json();
    assert!(report["requests"].as_object().unwrap().keys().any(|k| k.contains("copy")), "a server copy: {report}");
    let want = [("ia.txt", "GLACIER_IR -"), ("ir.txt", "STANDARD_IA -"), ("std.txt", "ONEZONE_IA -")];
    assert_eq!(
        moto.head_headers("mapped", &["x-amz-storage-class", "x-amz-server-side-encryption"]),
        want.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    );
}

// Issue 14: `--archived restore` for an Azure Archive blob: a read refused with BlobArchived
// sends Set Blob Tier (Cool, priority High for `expedited`) and copies the blob once readable.
// Azurite rehydrates at once (Azure takes hours: the blob then waits for a later run, like an
// S3 restore), so the whole path shows in one run here.
#[test]
fn an_azure_archive_blob_is_rehydrated_and_copied_with_archived_restore() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let azurite = Azurite::start();
    azurite.create_container("frozen");
    azurite.put_blobs("frozen", &[("hot.txt", "hot".into()), ("cold.txt", "cold".into())]);
    azurite.set_tier("frozen", "cold.txt", "Archive");
    let ep = azurite.endpoint.as_str();
    let args = ["copy", "az://frozen/", "out", "--job", "j", "--src-endpoint", ep, "--archived", "restore", "--restore-tier", "expedited"];
    let report = ferry_ok(w, &[&args[..], &["--json"]].concat(), &[], 0).json();
    assert_eq!((report["copied"].as_u64(), report["restores_requested"].as_u64()), (Some(2), Some(1)), "{report}");
    assert_eq!(std::fs::read(w.join("out/cold.txt")).unwrap(), b"cold");
    // Rehydrated at the source to Cool (Set Blob Tier), the other blob untouched.
    let tiers = azurite.access_tiers("frozen");
    assert_eq!((tiers["cold.txt"].as_str(), tiers["hot.txt"].as_str()), ("Cool", "Hot (inferred)"), "{tiers:?}");
}
