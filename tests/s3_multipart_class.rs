//! Issue 14: an S3 multipart upload keeps the storage class and the server-side encryption
//! asked for (`--storage-class`, `--sse`), as a put does. moto before 5.2.2 answered
//! CompleteMultipartUpload with the root element `CompleteMultipartUploadResponse` (moto issue
//! #10055, a 5.2.0 regression), which the Rust SDK refuses; moto 5.2.5 (scripts/
//! install-services.sh) answers `CompleteMultipartUploadResult`. What moto keeps is read back
//! with boto3, not through ferry.

mod common;

use common::{ferry, ferry_ok};
use ferry_testkit::Moto;
use ferry_testkit::services::services_dir;
use std::collections::BTreeMap;

/// Each object's `x-amz-storage-class`, `x-amz-server-side-encryption` and its KMS key id as
/// moto's HEAD gives them (`-` where absent), and its ETag's part count (`-N`).
fn read_back(moto: &Moto, bucket: &str) -> BTreeMap<String, String> {
    let script = r#"
import sys, boto3
endpoint, bucket = sys.argv[1:3]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="moto", aws_secret_access_key="moto", region_name="us-east-1")
for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
    h = s3.head_object(Bucket=bucket, Key=o["Key"])["ResponseMetadata"]["HTTPHeaders"]
    parts = h["etag"].strip('"').partition("-")[2] or "1"
    print(o["Key"], h.get("x-amz-storage-class", "-"), h.get("x-amz-server-side-encryption", "-"),
          h.get("x-amz-server-side-encryption-aws-kms-key-id", "-"), "parts=" + parts)
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, &moto.endpoint, bucket])
        .env("PYTHONPATH", services_dir().join("moto"))
        .output()
        .expect("run python3");
    assert!(out.status.success(), "boto3: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split_once(' ').map(|(k, r)| (k.to_string(), r.to_string())).unwrap())
        .collect()
}

#[test]
fn s3_multipart_keeps_the_storage_class_and_encryption_asked_for() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // Above S3's smallest part (5 MiB), so `--part-size 5MiB` sends two parts.
    let src = w.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("big.bin"), (0..(5 << 20) + 4096).map(|i: u32| (i % 251) as u8).collect::<Vec<u8>>()).unwrap();
    let moto = Moto::start();
    let env = moto.env();
    moto.create_bucket("sealed");
    let ep = moto.endpoint.as_str();

    let args = ["copy", src.to_str().unwrap(), "s3://sealed/", "--job", "j", "--dst-endpoint", ep, "--part-size", "5MiB", "--json"];
    let flags = ["--storage-class", "STANDARD_IA", "--sse", "aws:kms", "--sse-kms-key-id", "ferry-test-key"];
    let report = ferry_ok(w, &[&args[..], &flags[..]].concat(), &env, 0).json();
    assert_eq!(report["requests"]["s3 put part"]["calls"], 2, "in two parts: {}", report["requests"]);
    assert_eq!((&report["storage_class"], &report["sse"]), (&"STANDARD_IA".into(), &"aws:kms (key ferry-test-key)".into()), "{report}");
    let got = read_back(&moto, "sealed");
    assert_eq!(got.get("big.bin").map(String::as_str), Some("STANDARD_IA aws:kms ferry-test-key parts=2"), "{got:?}");
    let verify = ferry(w, &["verify", "--job", "j", "--dst-endpoint", ep, "--all-bytes"], &env);
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
}
