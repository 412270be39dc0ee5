//! Issue 14, hostile-user finding 4: `ferry verify` compares every header and metadata pair
//! the pair of providers can carry, on every destination — not only the metadata a GCS listing
//! recorded. An S3 object carrying every header and two metadata pairs is copied to S3, GCS,
//! Azure and a local directory (sidecar); `verify` passes untouched, then each destination's
//! object is rewritten behind ferry's back (same bytes; Cache-Control and Content-Encoding
//! changed, a metadata pair added) and `verify` exits 3 naming each, by its own kind.

mod common;

use bytes::Bytes;
use common::ferry;
use ferry_core::Headers;
use ferry_providers::local::LocalMetadata;
use ferry_providers::{Connect, PutAttrs};
use ferry_testkit::{Azurite, FakeGcs, Moto};
use std::path::Path;

const KEY: &str = "site/index.html";

/// 50 lines of HTML, gzipped (as tests/fidelity.rs): bytes that are what Content-Encoding says.
fn gzip_page() -> Bytes {
    const GZ: &str = "1f8b0800000000000203b3c928c9cdb1b349ca4fa9b44b4b2d2aaa5448cb4c49cdc92ca9b4d1070bdae8835570d98c2a1c5538aa7054e1a8c25185a30a878f4200c87f648b02080000";
    Bytes::from((0..GZ.len()).step_by(2).map(|i| u8::from_str_radix(&GZ[i..i + 2], 16).unwrap()).collect::<Vec<u8>>())
}

fn every_header() -> PutAttrs {
    PutAttrs {
        content_type: Some("text/html; charset=utf-8".into()),
        headers: Headers {
            content_encoding: Some("gzip".into()),
            content_disposition: Some("inline; filename=\"index.html\"".into()),
            content_language: Some("en-GB".into()),
            cache_control: Some("public, max-age=3600".into()),
            expires: Some("Wed, 21 Oct 2026 07:28:00 GMT".into()),
        },
        metadata: [("Owner-Team", "web"), ("build-id", "42")].into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..PutAttrs::default()
    }
}

/// A destination: its URL base, endpoint, `--local-metadata` and the service kept alive.
struct Dest {
    name: &'static str,
    base: String,
    endpoint: Option<String>,
    local_metadata: Option<&'static str>,
    _service: Box<dyn std::any::Any>,
}

impl Dest {
    async fn open(&self) -> std::sync::Arc<dyn ferry_providers::Provider> {
        let connect = Connect {
            endpoint: self.endpoint.clone(),
            local_metadata: if self.local_metadata.is_some() { LocalMetadata::Sidecar } else { LocalMetadata::None },
            ..Connect::default()
        };
        let location = ferry_core::Location::parse(&format!("{}/p/", self.base)).unwrap();
        ferry_providers::open(&location, &connect, &ferry_providers::RunContext::unlimited()).await.unwrap()
    }
}

fn destinations() -> Vec<Dest> {
    let moto = Moto::start();
    moto.create_bucket("dst");
    let gcs = FakeGcs::start();
    gcs.create_bucket("dst");
    let azurite = Azurite::start();
    azurite.create_container("dst");
    let dir = tempfile::tempdir().unwrap();
    let local_base = dir.path().to_str().unwrap().to_string();
    vec![
        Dest { name: "s3", base: "s3://dst".into(), endpoint: Some(moto.endpoint.clone()), local_metadata: None, _service: Box::new(moto) },
        Dest { name: "gcs", base: "gs://dst".into(), endpoint: Some(gcs.endpoint.clone()), local_metadata: None, _service: Box::new(gcs) },
        Dest {
            name: "azure",
            base: "az://dst".into(),
            endpoint: Some(azurite.endpoint.clone()),
            local_metadata: None,
            _service: Box::new(azurite),
        },
        Dest { name: "local", base: local_base, endpoint: None, local_metadata: Some("sidecar"), _service: Box::new(dir) },
    ]
}

fn moto_keys() -> Vec<(String, String)> {
    // This process's own S3 client (seeding, tampering) takes moto's keys from the chain.
    static KEYS: std::sync::Once = std::sync::Once::new();
    let keys = [("AWS_ACCESS_KEY_ID", "moto"), ("AWS_SECRET_ACCESS_KEY", "moto"), ("AWS_REGION", "us-east-1")];
    KEYS.call_once(|| {
        for (k, v) in keys {
            // SAFETY: set once, before any thread of this test reads the environment for S3.
            unsafe { std::env::set_var(k, v) };
        }
    });
    keys.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn verify(w: &Path, job: &str, to: &Dest, env: &[(String, String)], code: i32) -> serde_json::Value {
    let mut args = vec!["verify", "--job", job, "--json"];
    if let Some(ep) = &to.endpoint {
        args.extend(["--dst-endpoint", ep.as_str()]);
    }
    if let Some(mode) = to.local_metadata {
        args.extend(["--local-metadata", mode]);
    }
    let run = ferry(w, &args, env);
    assert_eq!(run.code, code, "verify {}: {}\n{}", to.name, run.stdout, run.stderr);
    run.json()
}

#[test]
fn verify_names_every_header_and_pair_changed_behind_ferrys_back() {
    let env = moto_keys();
    let source = Moto::start();
    source.create_bucket("src");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let connect = Connect { endpoint: Some(source.endpoint.clone()), ..Connect::default() };
        let location = ferry_core::Location::parse("s3://src/p/").unwrap();
        let src = ferry_providers::open(&location, &connect, &ferry_providers::RunContext::unlimited()).await.unwrap();
        let data = gzip_page();
        src.put(KEY, data.clone(), ferry_core::crc32c(&data), &every_header()).await.unwrap();
    });
    let work = tempfile::tempdir().unwrap();
    let w = work.path();

    for to in destinations() {
        let job = format!("job-{}", to.name);
        let dst = format!("{}/p", to.base);
        let mut args = vec!["copy", "s3://src/p", &dst, "--job", &job, "--json", "--src-endpoint", &source.endpoint];
        if let Some(ep) = &to.endpoint {
            args.extend(["--dst-endpoint", ep.as_str()]);
        }
        if let Some(mode) = to.local_metadata {
            args.extend(["--local-metadata", mode]);
        }
        let run = ferry(w, &args, &env);
        assert_eq!(run.code, 0, "copy to {}: {}\n{}", to.name, run.stdout, run.stderr);

        // Untouched: every header and pair as the destination can hold it.
        let clean = verify(w, &job, &to, &env, 0);
        assert_eq!(clean["differences"], serde_json::json!([]), "{}: {clean}", to.name);
        // Cost: the one HEAD per object quick mode sends carries the headers and metadata.
        let requests = clean["requests"].as_object().unwrap();
        let heads: u64 = requests.iter().filter(|(m, _)| m.ends_with(" head")).map(|(_, c)| c["calls"].as_u64().unwrap()).sum();
        assert_eq!(heads, 1, "{}: {requests:?}", to.name);
        // Besides it, once a run: the check of the destination on opening, the listing for extras.
        let once = [" head", " list", " check"];
        assert!(requests.keys().all(|m| once.iter().any(|s| m.ends_with(s))), "{}: {requests:?}", to.name);

        // Behind ferry's back: the same bytes, two headers changed and a pair added.
        rt.block_on(async {
            let p = to.open().await;
            let now = p.head(KEY).await.unwrap().unwrap();
            let mut metadata = now.metadata.clone();
            metadata.insert("sneaky".into(), "1".into());
            let headers =
                Headers { cache_control: Some("no-store".into()), content_encoding: Some("identity".into()), ..now.headers.clone() };
            let attrs = PutAttrs { content_type: now.content_type.clone(), metadata, headers, ..PutAttrs::default() };
            let data = gzip_page();
            p.put(KEY, data.clone(), ferry_core::crc32c(&data), &attrs).await.unwrap();
        });
        let report = verify(w, &job, &to, &env, 3);
        let differences = report["differences"].as_array().unwrap();
        let of_kind = |kind: &str| differences.iter().filter(|d| d["kind"] == kind).map(|d| d["detail"].to_string()).collect::<Vec<_>>();
        assert!(differences.iter().all(|d| d["key"] == KEY), "{}: {report}", to.name);
        let cache = of_kind("cache-control");
        assert!(cache.len() == 1 && cache[0].contains("no-store") && cache[0].contains("max-age=3600"), "{}: {report}", to.name);
        let encoding = of_kind("content-encoding");
        assert!(encoding.len() == 1 && encoding[0].contains("identity") && encoding[0].contains("gzip"), "{}: {report}", to.name);
        let metadata = of_kind("metadata");
        assert!(metadata.len() == 1 && metadata[0].contains("sneaky"), "{}: {report}", to.name);
        assert_eq!(differences.len(), 3, "{}: nothing else differs: {report}", to.name);
    }
}
