//! Issue 14: every read gets the bytes the source stores, and the copy is proved by the
//! source's own checksum of them — GCS decompressive transcoding, restarts, S3 error codes.

mod common;

use common::{ferry, ferry_ok};
use ferry_testkit::FakeGcs;
use std::path::Path;

/// Runs a Python 3 snippet (standard library only) with `args`; panics with its stderr if it fails.
fn python(script: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("python3").arg("-c").arg(script).args(args).output().expect("run python3");
    assert!(out.status.success(), "python: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Uploads `body` as `bucket/name` on fake-gcs-server with `Content-Encoding: gzip`, the way a
/// website's precompressed assets are stored; returns the object's stored size and CRC32C (hex).
fn put_gzip_object(gcs: &FakeGcs, bucket: &str, name: &str, body: &Path) -> (u64, String) {
    let script = r#"
import sys, json, base64, urllib.request
endpoint, bucket, name, path = sys.argv[1:5]
data = open(path, "rb").read()
meta = json.dumps({"name": name, "contentEncoding": "gzip", "contentType": "text/plain"})
b = "ferry-test-boundary"
body = f"--{b}\r\ncontent-type: application/json\r\n\r\n{meta}\r\n--{b}\r\ncontent-type: text/plain\r\n\r\n".encode() + data + f"\r\n--{b}--\r\n".encode()
req = urllib.request.Request(f"{endpoint}/upload/storage/v1/b/{bucket}/o?uploadType=multipart", data=body,
                             headers={"content-type": f"multipart/related; boundary={b}"}, method="POST")
o = json.loads(urllib.request.urlopen(req).read())
print(o["size"], base64.b64decode(o["crc32c"]).hex())
"#;
    let out = python(script, &[&gcs.endpoint, bucket, name, body.to_str().unwrap()]);
    let (size, crc) = out.split_once(' ').expect("size and crc32c");
    (size.parse().unwrap(), crc.to_string())
}

/// 8,400 bytes of text, gzipped (deterministically, no timestamp) to a few dozen bytes.
fn gzip_of_text(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("page.txt.gz");
    let script = r#"
import sys, gzip
open(sys.argv[1], "wb").write(gzip.compress(b"hello world " * 700, mtime=0))
"#;
    python(script, &[path.to_str().unwrap()]);
    path
}

// See: issue 14 (GCS decompressive transcoding). fake-gcs-server, like GCS, serves an object
// stored with `Content-Encoding: gzip` decompressed to a reader that does not send
// `Accept-Encoding: gzip`: ferry wrote the decompressed bytes and called them proved by size.
#[test]
fn a_gzip_object_on_gcs_lands_as_its_stored_bytes_proved_by_the_source_crc32c() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let gcs = FakeGcs::start();
    gcs.create_bucket("site");
    let gz = gzip_of_text(w);
    let stored = std::fs::read(&gz).unwrap();
    let (size, crc) = put_gzip_object(&gcs, "site", "assets/page.txt", &gz);
    assert_eq!(size, stored.len() as u64, "the service stores the gzip bytes");

    let args = ["copy", "gs://site/assets", "out", "--job", "j", "--src-endpoint", &gcs.endpoint, "--json"];
    let summary = ferry_ok(w, &args, &[], 0).json();
    let landed = std::fs::read(w.join("out/page.txt")).unwrap();
    assert_eq!(landed.len(), stored.len(), "the stored {} bytes, not the {} decompressed ones", stored.len(), 8400);
    assert_eq!(landed, stored);
    assert_eq!(summary["verified_by"], serde_json::json!({"source crc32c": 1}), "{summary}");
    assert!(summary["restarted"].as_array().is_none_or(|r| r.is_empty()), "nothing changed at the source: {summary}");
    assert_eq!(format!("{:08x}", ferry_core::crc32c(&landed)), crc, "the copy has the source's crc32c");
    ferry_ok(w, &["verify", "--job", "j"], &[], 0);
    ferry_ok(w, &["verify", "--job", "j", "--all-bytes"], &[], 0);

    // In parts too: every ranged read is of the stored bytes (parts of 16 bytes).
    let args = ["copy", "gs://site/assets", "parts", "--job", "p", "--src-endpoint", &gcs.endpoint, "--part-size", "16", "--json"];
    let summary = ferry_ok(w, &args, &[], 0).json();
    assert_eq!(std::fs::read(w.join("parts/page.txt")).unwrap(), stored);
    assert_eq!(summary["verified_by"], serde_json::json!({"source crc32c": 1}), "{summary}");
    let verify = ferry(w, &["verify", "--job", "p", "--all-bytes"], &[]);
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
}

/// Replaces `bucket/name` on fake-gcs-server with `data` (a new generation, no encoding).
fn replace_object(gcs: &FakeGcs, bucket: &str, name: &str, data: &[u8]) {
    let script = r#"
import sys, urllib.request
endpoint, bucket, name, data = sys.argv[1:5]
req = urllib.request.Request(f"{endpoint}/upload/storage/v1/b/{bucket}/o?uploadType=media&name={name}", data=data.encode(),
                             headers={"content-type": "text/plain"}, method="POST")
urllib.request.urlopen(req).read()
"#;
    python(script, &[&gcs.endpoint, bucket, name, std::str::from_utf8(data).unwrap()]);
}

// See: issue 14 ("a restart falls back to size-only evidence"). An object that changed since
// the plan is restarted from its current version, and that copy is proved by the checksum GCS
// declares for the generation read, never by its size alone.
#[test]
fn an_object_restarted_because_it_changed_is_proved_by_the_source_crc32c() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let gcs = FakeGcs::start();
    gcs.create_bucket("moving");
    gcs.put_objects("moving", &[("a.txt", "first version".into()), ("b.txt", "stays".into())], None);
    ferry_ok(w, &["plan", "gs://moving/", "out", "--job", "j", "--src-endpoint", &gcs.endpoint], &[], 0);
    replace_object(&gcs, "moving", "a.txt", b"the second version, longer");

    let args = ["copy", "gs://moving/", "out", "--job", "j", "--src-endpoint", &gcs.endpoint, "--json"];
    let summary = ferry_ok(w, &args, &[], 0).json();
    assert_eq!(summary["restarted"].as_array().map(Vec::len), Some(1), "{summary}");
    assert_eq!(std::fs::read(w.join("out/a.txt")).unwrap(), b"the second version, longer");
    assert_eq!(summary["verified_by"], serde_json::json!({"source crc32c": 2}), "no size-only proof: {summary}");
    ferry_ok(w, &["verify", "--job", "j", "--all-bytes"], &[], 0);
}
