//! Issue 14: `--storage-class CLASS` writes every object in that class (S3 StorageClass, GCS
//! storageClass, Azure access tier) on put, multipart start and server copy, checked per
//! destination provider before anything is written; the default keeps the destination's
//! default. Each emulator is asked what it really keeps (moto's HEAD, fake-gcs-server's JSON,
//! Azurite's List Blobs).

mod common;

use common::{ferry, ferry_ok};
use ferry_testkit::{Azurite, FakeGcs, Moto};
use std::collections::BTreeMap;
use std::path::Path;

/// A source folder of two objects, `big.bin` of `big` bytes (sent in parts of 1 MiB where the
/// test asks for them).
fn source(w: &Path, big: usize) -> String {
    let src = w.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"aaa").unwrap();
    std::fs::write(src.join("big.bin"), vec![7u8; big]).unwrap();
    src.to_str().unwrap().to_string()
}

fn classes(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn s3_objects_are_written_in_the_class_asked_for_by_put_and_server_copy() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // One request per object (the class on a multipart upload: tests/s3_multipart_class.rs).
    let src = source(w, 100);
    let moto = Moto::start();
    let env = moto.env();
    for b in ["infrequent", "glacier-ir", "plain"] {
        moto.create_bucket(b);
    }
    let ep = moto.endpoint.as_str();

    // Put, the class spelt in any case.
    let args = ["copy", &src, "s3://infrequent/", "--job", "j1", "--dst-endpoint", ep, "--storage-class", "standard_ia"];
    let report = ferry_ok(w, &[&args[..], &["--json"]].concat(), &env, 0).json();
    assert_eq!(report["storage_class"], "STANDARD_IA", "{report}");
    assert_eq!(moto.head_headers("infrequent", &["x-amz-storage-class"]), classes(&[("a.txt", "STANDARD_IA"), ("big.bin", "STANDARD_IA")]));

    // The service copies (CopyObject) into the class asked for.
    let args = ["copy", "s3://infrequent/", "s3://glacier-ir/", "--job", "j2", "--src-endpoint", ep, "--dst-endpoint", ep, "--json"];
    let report = ferry_ok(w, &[&args[..], &["--storage-class", "GLACIER_IR"]].concat(), &env, 0).json();
    assert!(report["requests"].as_object().unwrap().keys().any(|k| k.contains("copy")), "a server copy: {report}");
    assert_eq!(moto.head_headers("glacier-ir", &["x-amz-storage-class"]), classes(&[("a.txt", "GLACIER_IR"), ("big.bin", "GLACIER_IR")]));

    // Without the flag, the destination's default: not the source's class.
    let args = ["copy", "s3://infrequent/", "s3://plain/", "--job", "j3", "--src-endpoint", ep, "--dst-endpoint", ep, "--json"];
    let report = ferry_ok(w, &args, &env, 0).json();
    assert_eq!(report["storage_class"], serde_json::Value::Null, "{report}");
    assert_eq!(moto.head_headers("plain", &["x-amz-storage-class"]), classes(&[("a.txt", "-"), ("big.bin", "-")]));
}

#[test]
fn gcs_objects_are_written_in_the_class_asked_for_by_upload_and_rewrite() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // One upload per object: fake-gcs-server's compose ignores the destination's storageClass
    // (a composed object came back STANDARD), so a composite upload cannot be tried there.
    let src = source(w, 100);
    let gcs = FakeGcs::start();
    for b in ["near", "cold"] {
        gcs.create_bucket(b);
    }
    let ep = gcs.endpoint.as_str();

    let args = ["copy", &src, "gs://near/", "--job", "j1", "--dst-endpoint", ep, "--storage-class", "nearline"];
    let report = ferry_ok(w, &[&args[..], &["--json"]].concat(), &[], 0).json();
    assert_eq!(report["storage_class"], "NEARLINE", "{report}");
    assert_eq!(gcs.storage_classes("near"), classes(&[("a.txt", "NEARLINE"), ("big.bin", "NEARLINE")]));

    let args = ["copy", "gs://near/", "gs://cold/", "--job", "j2", "--src-endpoint", ep, "--dst-endpoint", ep, "--json"];
    let report = ferry_ok(w, &[&args[..], &["--storage-class", "COLDLINE"]].concat(), &[], 0).json();
    assert!(report["requests"].as_object().unwrap().keys().any(|k| k.contains("copy")), "a server copy: {report}");
    // fake-gcs-server's rewrite ignores the resource's storageClass (its copies come back
    // STANDARD whatever is asked, the source's NEARLINE too): only that the rewrite with a
    // resource is taken, and what it carries still arrives, can be seen here.
    assert_eq!(report["copied"], 2, "{report}");
    assert_eq!(gcs.storage_classes("cold").len(), 2);
}

#[test]
fn azure_blobs_are_written_in_the_tier_asked_for_by_put_block_list_and_copy() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = source(w, 3 << 19);
    let azurite = Azurite::start();
    for c in ["cool", "archive", "plain"] {
        azurite.create_container(c);
    }
    let ep = azurite.endpoint.as_str();

    let args = ["copy", &src, "az://cool/", "--job", "j1", "--dst-endpoint", ep, "--storage-class", "cool", "--part-size", "1MiB"];
    let report = ferry_ok(w, &[&args[..], &["--json"]].concat(), &[], 0).json();
    assert_eq!(report["storage_class"], "Cool", "{report}");
    assert_eq!(azurite.access_tiers("cool"), classes(&[("a.txt", "Cool"), ("big.bin", "Cool")]));

    let args = ["copy", "az://cool/", "az://archive/", "--job", "j2", "--src-endpoint", ep, "--dst-endpoint", ep, "--json"];
    let report = ferry_ok(w, &[&args[..], &["--storage-class", "Archive"]].concat(), &[], 0).json();
    assert!(report["requests"].as_object().unwrap().keys().any(|k| k.contains("copy")), "a server copy: {report}");
    assert_eq!(azurite.access_tiers("archive"), classes(&[("a.txt", "Archive"), ("big.bin", "Archive")]));

    // Without the flag: the account's default tier, inferred, not set on the blob.
    ferry_ok(w, &["copy", &src, "az://plain/", "--job", "j3", "--dst-endpoint", ep], &[], 0);
    assert_eq!(azurite.access_tiers("plain"), classes(&[("a.txt", "Hot (inferred)"), ("big.bin", "Hot (inferred)")]));
}

#[test]
fn a_class_the_destination_does_not_have_is_refused_before_anything_is_written() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = source(w, 10);
    // Nothing listens on port 9: a request would fail differently (and later).
    for (dst, class, says) in [
        ("s3://bucket/", "NEARLINE", "--storage-class NEARLINE: not an S3 storage class; one of STANDARD,"),
        ("gs://bucket/", "Hot", "--storage-class Hot: not a GCS storage class; one of STANDARD,"),
        ("az://bucket/", "GLACIER", "--storage-class GLACIER: not an Azure access tier; one of Hot, Cool, Cold, Archive"),
        ("out", "STANDARD", "--storage-class does not apply to a local destination"),
    ] {
        let run = ferry(w, &["copy", &src, dst, "--job", "j", "--dst-endpoint", "http://127.0.0.1:9", "--storage-class", class], &[]);
        assert_eq!(run.code, 2, "{dst}: {}{}", run.stdout, run.stderr);
        assert!(run.stderr.contains(says), "{dst}: {}", run.stderr);
        assert_eq!(run.stderr.trim().lines().count(), 1, "one line: {}", run.stderr);
        assert!(!w.join("j").exists() && !w.join("out").exists(), "nothing written for {dst}");
    }
}

#[test]
fn s3_objects_are_encrypted_as_asked_and_still_proved_by_their_crcs() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = source(w, 100);
    let moto = Moto::start();
    let env = moto.env();
    for b in ["kms-sealed", "s3-sealed"] {
        moto.create_bucket(b);
    }
    let ep = moto.endpoint.as_str();

    let args = ["copy", &src, "s3://kms-sealed/", "--job", "j1", "--dst-endpoint", ep, "--json"];
    let report = ferry_ok(w, &[&args[..], &["--sse", "aws:kms", "--sse-kms-key-id", "ferry-test-key"]].concat(), &env, 0).json();
    assert_eq!(report["sse"], "aws:kms (key ferry-test-key)", "{report}");
    let kms = "aws:kms ferry-test-key";
    assert_eq!(
        moto.head_headers("kms-sealed", &["x-amz-server-side-encryption", "x-amz-server-side-encryption-aws-kms-key-id"]),
        classes(&[("a.txt", kms), ("big.bin", kms)])
    );
    // Proved by what S3 says of the bytes (the CRC), never by the ETag of an SSE-KMS object.
    let proved = report["verified_by"].as_object().unwrap();
    assert!(proved.keys().all(|how| !how.contains("md5")), "{report}");
    assert_eq!(proved.values().map(|n| n.as_u64().unwrap()).sum::<u64>(), 2, "{report}");
    let verify = ferry(w, &["verify", "--job", "j1", "--dst-endpoint", ep, "--all-bytes"], &env);
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);

    // The service copies into SSE-S3.
    let args = ["copy", "s3://kms-sealed/", "s3://s3-sealed/", "--job", "j2", "--src-endpoint", ep, "--dst-endpoint", ep, "--json"];
    let report = ferry_ok(w, &[&args[..], &["--sse", "AES256"]].concat(), &env, 0).json();
    assert!(report["requests"].as_object().unwrap().keys().any(|k| k.contains("copy")), "a server copy: {report}");
    assert_eq!(
        moto.head_headers("s3-sealed", &["x-amz-server-side-encryption", "x-amz-server-side-encryption-aws-kms-key-id"]),
        classes(&[("a.txt", "AES256 -"), ("big.bin", "AES256 -")])
    );
}

#[test]
fn encryption_flags_that_do_not_fit_the_destination_are_refused_before_anything_is_written() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = source(w, 10);
    for (dst, flags, says) in [
        ("gs://bucket/", &["--sse", "AES256"][..], "--sse applies to an S3 destination only"),
        ("az://bucket/", &["--sse", "aws:kms"], "--sse applies to an S3 destination only"),
        ("out", &["--sse", "AES256"], "--sse applies to an S3 destination only"),
        ("s3://bucket/", &["--gcs-kms-key", "k"], "--gcs-kms-key applies to a GCS destination only"),
        ("gs://bucket/", &["--azure-encryption-scope", "s"], "--azure-encryption-scope applies to an Azure destination only"),
        ("s3://bucket/", &["--sse-kms-key-id", "k"], "--sse-kms-key-id needs --sse aws:kms"),
        ("s3://bucket/", &["--sse", "AES256", "--sse-kms-key-id", "k"], "--sse-kms-key-id needs --sse aws:kms"),
    ] {
        let args = [&["copy", &src, dst, "--job", "j", "--dst-endpoint", "http://127.0.0.1:9"][..], flags].concat();
        let run = ferry(w, &args, &[]);
        assert_eq!(run.code, 2, "{dst} {flags:?}: {}{}", run.stdout, run.stderr);
        assert!(run.stderr.contains(says), "{dst} {flags:?}: {}", run.stderr);
        assert_eq!(run.stderr.trim().lines().count(), 1, "one line: {}", run.stderr);
        assert!(!w.join("j").exists() && !w.join("out").exists(), "nothing written for {dst}");
    }
}

#[test]
fn gcs_kms_key_and_azure_encryption_scope_are_sent_taken_and_reported() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = source(w, 3 << 19);
    let key = "projects/p/locations/global/keyRings/r/cryptoKeys/ferry";

    let gcs = FakeGcs::start();
    gcs.create_bucket("sealed");
    gcs.create_bucket("plain");
    // Through a proxy that records each request line: the key is in each upload's query.
    let proxy = ferry_testkit::CountingProxy::start(&gcs.endpoint);
    let args = ["copy", &src, "gs://sealed/", "--job", "j1", "--dst-endpoint", &proxy.endpoint, "--gcs-kms-key", key, "--json"];
    let report = ferry_ok(w, &args, &[], 0).json();
    assert_eq!(report["gcs_kms_key"], key, "{report}");
    let uploads: Vec<String> = proxy.requests().into_iter().filter(|r| r.starts_with("POST /upload/")).collect();
    assert_eq!(uploads.len(), 2, "{uploads:?}");
    assert!(uploads.iter().all(|r| r.contains("kmsKeyName=projects%2Fp%2F")), "{uploads:?}");
    // Without the flag: no key, and no empty query pair in its place.
    let proxy = ferry_testkit::CountingProxy::start(&gcs.endpoint);
    ferry_ok(w, &["copy", &src, "gs://plain/", "--job", "j0", "--dst-endpoint", &proxy.endpoint], &[], 0);
    let uploads: Vec<String> = proxy.requests().into_iter().filter(|r| r.starts_with("POST /upload/")).collect();
    assert_eq!(uploads.len(), 2, "{uploads:?}");
    assert!(uploads.iter().all(|r| !r.contains("kmsKeyName") && !r.contains("&=") && r.ends_with("uploadType=multipart")), "{uploads:?}");
    // fake-gcs-server takes `kmsKeyName` on an upload but keeps no key (the
    // object's `kmsKeyName` stays empty): that the writes are taken is what can be seen here.
    assert_eq!(report["copied"], 2, "{report}");
    assert_eq!(gcs.fields("sealed", "name").len(), 2);

    let azurite = Azurite::start();
    azurite.create_container("sealed");
    let args = ["copy", &src, "az://sealed/", "--job", "j2", "--dst-endpoint", &azurite.endpoint, "--azure-encryption-scope", "ferryscope"];
    let report = ferry_ok(w, &[&args[..], &["--part-size", "1MiB", "--json"]].concat(), &[], 0).json();
    assert_eq!(report["azure_encryption_scope"], "ferryscope", "{report}");
    // Azurite takes `x-ms-encryption-scope` on Put Blob, Put Block and Put Block List but keeps
    // no scope (List Blobs shows no `<EncryptionScope>`): that the writes are taken is what can
    // be seen here.
    assert_eq!(report["copied"], 2, "{report}");
    assert_eq!(azurite.blob_properties("sealed").len(), 2);
}
