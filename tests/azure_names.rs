//! Issue 14, hostile-user finding 5: Azure metadata names that another tool wrote are never
//! taken for ferry's escape. `size_20`, `n_00` and `content_2dtype` (set with a plain Set Blob
//! Metadata) reach GCS and S3 exactly as written — not as `"size "`, a name with a NUL byte, or
//! `content-type` — and names that need ferry's escape still come back exact from Azure.

mod common;

use bytes::Bytes;
use common::ferry;
use ferry_providers::{Connect, PutAttrs};
use ferry_testkit::{Azurite, FakeGcs, S3Server};
use std::collections::BTreeMap;
use std::path::Path;

const KEY: &str = "a.txt";

fn pairs(list: &[(&str, &str)]) -> BTreeMap<String, String> {
    list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// An S3 server that keeps metadata names with `_` (s3s-fs: moto's HTTP server drops request
/// headers whose names hold `_`, docs/fidelity.md), with the keys this process's own S3 client
/// (seeding, reading back) takes from the chain.
fn s3_server() -> S3Server {
    const KEYS: (&str, &str) = ("ferry-names", "ferry-names-secret");
    static ENV: std::sync::Once = std::sync::Once::new();
    ENV.call_once(|| {
        for (k, v) in [("AWS_ACCESS_KEY_ID", KEYS.0), ("AWS_SECRET_ACCESS_KEY", KEYS.1), ("AWS_REGION", "us-east-1")] {
            // SAFETY: set once, before any thread of this test reads the environment for S3.
            unsafe { std::env::set_var(k, v) };
        }
    });
    S3Server::start_with_keys(KEYS.0, KEYS.1)
}

/// Opens `url` (a prefix) at `endpoint` with ferry's own provider.
async fn open(url: &str, endpoint: &str) -> std::sync::Arc<dyn ferry_providers::Provider> {
    let connect = Connect { endpoint: Some(endpoint.to_string()), ..Connect::default() };
    let location = ferry_core::Location::parse(url).unwrap();
    ferry_providers::open(&location, &connect, &ferry_providers::RunContext::unlimited()).await.unwrap()
}

/// The user metadata of `url`'s object [`KEY`] (a HEAD: GCS's JSON keeps the names' case).
fn metadata(url: &str, endpoint: &str) -> BTreeMap<String, String> {
    tokio::runtime::Runtime::new().unwrap().block_on(async { open(url, endpoint).await.head(KEY).await.unwrap().unwrap().metadata })
}

fn put(url: &str, endpoint: &str, meta: &BTreeMap<String, String>) {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let data = Bytes::from_static(b"names\n");
        let attrs = PutAttrs { metadata: meta.clone(), ..PutAttrs::default() };
        open(url, endpoint).await.put(KEY, data.clone(), ferry_core::crc32c(&data), &attrs).await.unwrap();
    });
}

/// `ferry copy SRC DST` (its own job) with both endpoints; returns the JSON report.
fn copy(
    w: &Path,
    job: &str,
    (src, src_ep): (&str, &str),
    (dst, dst_ep): (&str, &str),
    env: &[(String, String)],
    code: i32,
) -> serde_json::Value {
    let args = ["copy", src, dst, "--job", job, "--json", "--src-endpoint", src_ep, "--dst-endpoint", dst_ep];
    let run = ferry(w, &args, env);
    assert_eq!(run.code, code, "{src} → {dst}: {}\n{}", run.stdout, run.stderr);
    run.json()
}

#[test]
fn names_other_tools_wrote_arrive_as_written() {
    let azurite = Azurite::start();
    azurite.create_container("names");
    azurite.put_blobs("names", &[(&format!("p/{KEY}"), Bytes::from_static(b"names\n"))]);
    // What a plain client writes: each a valid Azure name, none written by ferry.
    let written = [("size_20", "1"), ("n_00", "2"), ("content_2dtype", "3"), ("my_key", "4")];
    azurite.set_metadata("names", &format!("p/{KEY}"), &written);
    let want = pairs(&written);
    assert_eq!(metadata("az://names/p/", &azurite.endpoint), want, "ferry reads Azure's names as they are");

    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let gcs = FakeGcs::start();
    gcs.create_bucket("names");
    let report = copy(w, "to-gcs", ("az://names/p", &azurite.endpoint), ("gs://names/p", &gcs.endpoint), &[], 0);
    assert_eq!(report["copied"], 1, "{report}");
    assert_eq!(metadata("gs://names/p/", &gcs.endpoint), want, "GCS keeps the names as written");
    let verified = ferry(w, &["verify", "--job", "to-gcs", "--json", "--dst-endpoint", &gcs.endpoint], &[]);
    assert_eq!(verified.code, 0, "{}\n{}", verified.stdout, verified.stderr);

    let s3 = s3_server();
    s3.create_bucket("names");
    let env = s3.env();
    let report = copy(w, "to-s3", ("az://names/p", &azurite.endpoint), ("s3://names/p", &s3.endpoint), &env, 0);
    assert_eq!(report["copied"], 1, "{report}");
    assert_eq!(metadata("s3://names/p/", &s3.endpoint), want, "S3 keeps the names as written");
}

/// Names that need ferry's escape on Azure (dashed, dotted, a leading digit, `_`; upper case
/// from GCS, which keeps it) go there and back exact.
#[test]
fn escaped_names_round_trip_through_azure() {
    let azurite = Azurite::start();
    azurite.create_container("hop");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();

    let s3 = s3_server();
    s3.create_bucket("names");
    let env = s3.env();
    let s3_names = pairs(&[("build-id", "42"), ("owner.team", "web"), ("1st", "a"), ("a_b", "b"), ("plain", "c")]);
    put("s3://names/there/", &s3.endpoint, &s3_names);
    copy(w, "s3-az", ("s3://names/there", &s3.endpoint), ("az://hop/s3", &azurite.endpoint), &env, 0);
    assert_eq!(metadata("az://hop/s3/", &azurite.endpoint), s3_names);
    copy(w, "az-s3", ("az://hop/s3", &azurite.endpoint), ("s3://names/back", &s3.endpoint), &env, 0);
    assert_eq!(metadata("s3://names/back/", &s3.endpoint), s3_names, "S3 → Azure → S3");

    let gcs = FakeGcs::start();
    gcs.create_bucket("names");
    let gcs_names = pairs(&[("Owner-Team", "web"), ("x-Reviewed-By", "ann"), ("Mixed_Case.v2", "d")]);
    put("gs://names/there/", &gcs.endpoint, &gcs_names);
    copy(w, "gcs-az", ("gs://names/there", &gcs.endpoint), ("az://hop/gcs", &azurite.endpoint), &[], 0);
    copy(w, "az-gcs", ("az://hop/gcs", &azurite.endpoint), ("gs://names/back", &gcs.endpoint), &[], 0);
    assert_eq!(metadata("gs://names/back/", &gcs.endpoint), gcs_names, "GCS → Azure → GCS");
}
