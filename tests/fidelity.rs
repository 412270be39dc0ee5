//! Issue 14: headers, user metadata and tags travel faithfully. One small gzip object carrying
//! every system header, user metadata with mixed-case and dashed names, and two tags is copied
//! along each pair of providers (moto ↔ fake-gcs-server ↔ Azurite ↔ a local directory with
//! metadata) and back. At every hop the bytes, each header and each metadata pair are compared
//! with what the destination can hold ([`expected_at`]), and what it cannot is asserted to be
//! named in the copy's report ([`check_hop`]).

mod common;

use bytes::Bytes;
use common::ferry;
use ferry_core::{Headers, ObjectEntry, Tags};
use ferry_providers::local::LocalMetadata;
use ferry_providers::{Connect, PutAttrs};
use ferry_testkit::{Azurite, FakeGcs, Moto};
use std::collections::BTreeMap;
use std::path::Path;

const KEY: &str = "site/index.html";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    S3,
    Gcs,
    Azure,
    Local,
}

/// One side of a hop: a location, how to reach it, and the service that serves it.
struct Side {
    kind: Kind,
    /// Without the trailing prefix: a hop writes under `BASE/N`.
    base: String,
    endpoint: Option<String>,
    local_metadata: Option<&'static str>,
    env: Vec<(String, String)>,
    _service: Box<dyn std::any::Any>,
}

fn s3(bucket: &str) -> Side {
    // This process's own S3 client (seeding, reading back) takes moto's keys from the chain;
    // moto accepts any, so every test may share them.
    static KEYS: std::sync::Once = std::sync::Once::new();
    KEYS.call_once(|| {
        for (k, v) in [("AWS_ACCESS_KEY_ID", "moto"), ("AWS_SECRET_ACCESS_KEY", "moto"), ("AWS_REGION", "us-east-1")] {
            // SAFETY: set once, before any thread of this test reads the environment for S3.
            unsafe { std::env::set_var(k, v) };
        }
    });
    let moto = Moto::start();
    moto.create_bucket(bucket);
    let (endpoint, env) = (Some(moto.endpoint.clone()), moto.env());
    Side { kind: Kind::S3, base: format!("s3://{bucket}"), endpoint, local_metadata: None, env, _service: Box::new(moto) }
}

fn gcs(bucket: &str) -> Side {
    let gcs = FakeGcs::start();
    gcs.create_bucket(bucket);
    let endpoint = Some(gcs.endpoint.clone());
    Side { kind: Kind::Gcs, base: format!("gs://{bucket}"), endpoint, local_metadata: None, env: Vec::new(), _service: Box::new(gcs) }
}

fn azure(container: &str) -> Side {
    let azurite = Azurite::start();
    azurite.create_container(container);
    let endpoint = Some(azurite.endpoint.clone());
    Side {
        kind: Kind::Azure,
        base: format!("az://{container}"),
        endpoint,
        local_metadata: None,
        env: Vec::new(),
        _service: Box::new(azurite),
    }
}

fn local(mode: &'static str) -> Side {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_str().unwrap().to_string();
    Side { kind: Kind::Local, base, endpoint: None, local_metadata: Some(mode), env: Vec::new(), _service: Box::new(dir) }
}

impl Side {
    fn url(&self, prefix: &str) -> String {
        format!("{}/{prefix}", self.base)
    }

    async fn open(&self, prefix: &str) -> std::sync::Arc<dyn ferry_providers::Provider> {
        let connect = Connect {
            endpoint: self.endpoint.clone(),
            local_metadata: match self.local_metadata {
                Some("xattr") => LocalMetadata::Xattr,
                Some("sidecar") => LocalMetadata::Sidecar,
                _ => LocalMetadata::None,
            },
            ..Connect::default()
        };
        let location = ferry_core::Location::parse(&self.url(prefix)).unwrap();
        ferry_providers::open(&location, &connect, &ferry_providers::RunContext::unlimited()).await.unwrap()
    }
}

/// The object as a reader sees it: its bytes and attributes, tags read.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    data: Bytes,
    content_type: Option<String>,
    headers: Headers,
    metadata: BTreeMap<String, String>,
    tags: Tags,
}

/// 50 lines of HTML, gzipped (Python's `gzip.compress(…, mtime=0)`): 73 stored bytes that a
/// transcoding read would inflate to 2,050.
fn gzip_page() -> Bytes {
    const GZ: &str = "1f8b0800000000000203b3c928c9cdb1b349ca4fa9b44b4b2d2aaa5448cb4c49cdc92ca9b4d1070bdae8835570d98c2a1c5538aa7054e1a8c25185a30a878f4200c87f648b02080000";
    Bytes::from((0..GZ.len()).step_by(2).map(|i| u8::from_str_radix(&GZ[i..i + 2], 16).unwrap()).collect::<Vec<u8>>())
}

fn original() -> Seen {
    Seen {
        data: gzip_page(),
        content_type: Some("text/html; charset=utf-8".into()),
        headers: Headers {
            content_encoding: Some("gzip".into()),
            content_disposition: Some("inline; filename=\"index.html\"".into()),
            content_language: Some("en-GB".into()),
            cache_control: Some("public, max-age=3600".into()),
            expires: Some("Wed, 21 Oct 2026 07:28:00 GMT".into()),
        },
        metadata: [("Owner-Team", "web"), ("build-id", "42"), ("x-Reviewed-By", "ann")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        tags: Tags::from([("team".to_string(), "web".to_string()), ("tier".to_string(), "gold".to_string())]),
    }
}

fn seed(side: &Side, prefix: &str, o: &Seen) {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let p = side.open(prefix).await;
        let attrs = PutAttrs {
            content_type: o.content_type.clone(),
            metadata: o.metadata.clone(),
            headers: o.headers.clone(),
            tags: Some(o.tags.clone()).filter(|_| side.kind != Kind::Gcs),
            ..PutAttrs::default()
        };
        p.put(KEY, o.data.clone(), ferry_core::crc32c(&o.data), &attrs).await.unwrap();
    });
}

/// The object's bytes (a GET) and attributes ([`read_attrs`]).
fn read(side: &Side, prefix: &str) -> Seen {
    let data = tokio::runtime::Runtime::new().unwrap().block_on(async { side.open(prefix).await.get(KEY, None).await.unwrap().data });
    Seen { data, ..read_attrs(side, prefix) }
}

/// The object's attributes (a HEAD: GCS's JSON keeps the case of metadata names, which any
/// HTTP header loses), its tags read, its bytes left empty.
fn read_attrs(side: &Side, prefix: &str) -> Seen {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let p = side.open(prefix).await;
        let ObjectEntry { content_type, headers, metadata, tags, .. } = p.head(KEY).await.unwrap().unwrap();
        let tags = match tags {
            Some(t) => t,
            None => p.tags(KEY).await.unwrap(),
        };
        Seen { data: Bytes::new(), content_type, headers, metadata, tags }
    })
}

/// What `to` holds of `o`: S3 names come back in lower case; GCS and Azure have no Expires;
/// GCS has no tags.
fn expected_at(to: Kind, o: &Seen) -> Seen {
    let mut e = o.clone();
    match to {
        Kind::S3 => e.metadata = o.metadata.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect(),
        Kind::Gcs => {
            e.headers.expires = None;
            e.tags.clear();
        }
        Kind::Azure => e.headers.expires = None,
        Kind::Local => {}
    }
    e
}

/// Copies `from/PREFIX` to `to/PREFIX` with ferry and returns the copy's report.
fn hop(w: &Path, from: &Side, to: &Side, prefix: &str, extra: &[&str], code: i32) -> serde_json::Value {
    let (src, dst) = (from.url(prefix), to.url(prefix));
    let job = format!("job-{prefix}");
    let mut args = vec!["copy", &src, &dst, "--job", &job, "--json"];
    for (flag, value) in [("--src-endpoint", &from.endpoint), ("--dst-endpoint", &to.endpoint)] {
        if let Some(ep) = value {
            args.extend([flag, ep.as_str()]);
        }
    }
    if let Some(mode) = from.local_metadata.or(to.local_metadata) {
        args.extend(["--local-metadata", mode]);
    }
    args.extend(extra);
    let env: Vec<(String, String)> = from.env.iter().chain(&to.env).cloned().collect();
    let run = ferry(w, &args, &env);
    assert_eq!(run.code, code, "{src} → {dst}: exit {}\n{}\n{}", run.code, run.stdout, run.stderr);
    let report = run.json();
    assert_eq!(report["copied"], 1, "{report}");
    report
}

/// `ferry verify` of the hop that wrote `to/PREFIX`: metadata included, it must exit `code`.
fn verify(w: &Path, to: &Side, prefix: &str, code: i32) -> serde_json::Value {
    let job = format!("job-{prefix}");
    let mut args = vec!["verify", "--job", &job, "--json"];
    if let Some(ep) = &to.endpoint {
        args.extend(["--dst-endpoint", ep.as_str()]);
    }
    if let Some(mode) = to.local_metadata {
        args.extend(["--local-metadata", mode]);
    }
    let run = ferry(w, &args, &to.env);
    assert_eq!(run.code, code, "verify {prefix}: {}\n{}", run.stdout, run.stderr);
    run.json()
}

/// The shared check of one hop: the destination holds `expected_at` of what the source held,
/// byte for byte and attribute by attribute, and the report names what it could not keep.
fn check_hop(from: &Seen, to: &Side, got: &Seen, report: &serde_json::Value) {
    let want = expected_at(to.kind, from);
    assert_eq!(got.data, want.data, "{:?}: bytes", to.kind);
    assert_eq!(got.content_type, want.content_type, "{:?}: Content-Type", to.kind);
    for (h, v) in want.headers.iter() {
        assert_eq!(got.headers.get(h), Some(v), "{:?}: {}", to.kind, h.as_str());
    }
    assert_eq!(got.headers, want.headers, "{:?}: headers", to.kind);
    for (k, v) in &want.metadata {
        assert_eq!(got.metadata.get(k), Some(v), "{:?}: metadata {k} in {:?}", to.kind, got.metadata);
    }
    assert_eq!(got.metadata.len(), want.metadata.len(), "{:?}: {:?}", to.kind, got.metadata);
    assert_eq!(got.tags, want.tags, "{:?}: tags", to.kind);

    let f = &report["fidelity"];
    let kinds = &f["by_kind"];
    let named = f["named"].to_string();
    if from.headers.expires.is_some() && want.headers.expires.is_none() {
        assert_eq!(kinds["header Expires"], 1, "{f}");
        assert!(named.contains(KEY) && named.contains("expires"), "{f}");
    }
    if from.metadata.keys().any(|k| k.chars().any(|c| c.is_ascii_uppercase())) && to.kind == Kind::S3 {
        assert_eq!(kinds["metadata name lower-cased"], 1, "{f}");
        assert!(named.contains("Owner-Team"), "{f}");
    }
    let no_tags = f["pair_limits"].as_array().unwrap().iter().any(|l| l == "no-tags");
    assert_eq!(no_tags, to.kind == Kind::Gcs, "{f}");
    assert_eq!(f["objects_losing_metadata"], 0, "{f}");
}

/// Seeds the object on `a`, copies it to `b` and back to `a`, checking each hop.
fn there_and_back(a: Side, b: Side) {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let first = match a.kind {
        Kind::Gcs => expected_at(Kind::Gcs, &original()),
        _ => original(),
    };
    seed(&a, "there", &first);
    assert_eq!(read(&a, "there"), expected_at(a.kind, &first), "{:?} keeps the seeded object", a.kind);
    let at_a = read(&a, "there");

    let report = hop(w, &a, &b, "there", &[], 0);
    let at_b = read(&b, "there");
    check_hop(&at_a, &b, &at_b, &report);
    verify(w, &b, "there", 0);
    // Cost: one GET reads the object and its attributes; its tags take one request more, only
    // where the destination keeps tags.
    let calls = |what: &str| report["requests"][what]["calls"].as_u64().unwrap_or(0);
    let tags_kept = b.kind != Kind::Gcs;
    match a.kind {
        Kind::S3 => assert_eq!((calls("s3 get"), calls("s3 tags")), (1, u64::from(tags_kept)), "{}", report["requests"]),
        Kind::Azure => assert_eq!(calls("azure tags"), u64::from(tags_kept), "{}", report["requests"]),
        Kind::Gcs | Kind::Local => {}
    }

    // Back, under a new prefix of `a`.
    copy_within(&b, "there", "back");
    let report = hop(w, &b, &a, "back", &[], 0);
    let back = read(&a, "back");
    check_hop(&at_b, &a, &back, &report);
}

/// Puts what `side/from` holds at `side/to` too (the way back starts from a prefix of its own).
fn copy_within(side: &Side, from: &str, to: &str) {
    let o = read(side, from);
    seed(side, to, &o);
}

#[test]
fn s3_and_gcs() {
    there_and_back(s3("fid-s3"), gcs("fid-gcs"));
}

#[test]
fn gcs_and_s3() {
    there_and_back(gcs("fid-gcs"), s3("fid-s3"));
}

#[test]
fn s3_and_azure() {
    there_and_back(s3("fid-s3"), azure("fid-az"));
}

#[test]
fn azure_and_gcs() {
    there_and_back(azure("fid-az"), gcs("fid-gcs"));
}

#[test]
fn s3_and_local_sidecar() {
    there_and_back(s3("fid-s3"), local("sidecar"));
}

#[test]
fn azure_and_local_xattr() {
    there_and_back(azure("fid-az"), local("xattr"));
}

#[test]
fn gcs_and_local_sidecar() {
    there_and_back(gcs("fid-gcs"), local("sidecar"));
}

/// The sidecar lives under `.ferry-meta/` (`HH/SHA-256 of the key.json`, recording its key) and
/// a copy out of the directory does not list it.
#[test]
fn local_sidecar_is_never_an_object() {
    let dir = local("sidecar");
    seed(&dir, "p", &original());
    let store = Path::new(&dir.base).join("p/.ferry-meta");
    let shard: Vec<_> = std::fs::read_dir(&store).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(shard.len(), 1, "{shard:?}");
    let side: Vec<_> = std::fs::read_dir(&shard[0]).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(side.len(), 1, "{side:?}");
    let name = side[0].file_name().unwrap().to_str().unwrap();
    assert!(name.len() == 64 + ".json".len() && name.starts_with(shard[0].file_name().unwrap().to_str().unwrap()), "{name}");
    let kept: serde_json::Value = serde_json::from_slice(&std::fs::read(&side[0]).unwrap()).unwrap();
    assert_eq!(kept["key"], KEY, "{kept}");
    assert_eq!(kept["headers"]["content_encoding"], "gzip", "{kept}");
    assert_eq!(kept["metadata"]["Owner-Team"], "web", "{kept}");
    let to = local("sidecar");
    let work = tempfile::tempdir().unwrap();
    let report = hop(work.path(), &dir, &to, "p", &[], 0);
    assert_eq!(report["objects_total"], 1, "the sidecar is not listed: {report}");
    assert_eq!(read(&to, "p"), original());
}

/// `--tags skip`: no tags read (no GetObjectTagging) or written.
#[test]
fn tags_skip_reads_and_writes_no_tags() {
    let (a, b) = (s3("fid-s3"), azure("fid-az"));
    seed(&a, "p", &original());
    let work = tempfile::tempdir().unwrap();
    let report = hop(work.path(), &a, &b, "p", &["--tags", "skip"], 0);
    assert!(report["requests"].get("s3 tags").is_none(), "{}", report["requests"]);
    assert!(read(&b, "p").tags.is_empty());
}

/// A destination without `--local-metadata` keeps bytes only, and the report says so.
#[test]
fn local_without_metadata_is_named_in_the_report() {
    let (a, b) = (s3("fid-s3"), local("none"));
    seed(&a, "p", &original());
    let work = tempfile::tempdir().unwrap();
    let report = hop(work.path(), &a, &b, "p", &[], 0);
    let limits = report["fidelity"]["pair_limits"].to_string();
    assert!(limits.contains("no-metadata") && limits.contains("no-tags"), "{limits}");
    assert_eq!(std::fs::read(Path::new(&b.base).join("p").join(KEY)).unwrap(), gzip_page());
}

/// A metadata value S3 cannot hold (not ASCII) is not written, named per object, and the copy
/// exits 1.
#[test]
fn metadata_s3_cannot_hold_is_named_and_exits_1() {
    let (a, b) = (gcs("fid-gcs"), s3("fid-s3"));
    let mut o = expected_at(Kind::Gcs, &original());
    o.metadata.insert("city".into(), "Zürich".into());
    seed(&a, "p", &o);
    let work = tempfile::tempdir().unwrap();
    let report = hop(work.path(), &a, &b, "p", &[], 1);
    let f = &report["fidelity"];
    assert_eq!(f["objects_losing_metadata"], 1, "{f}");
    assert_eq!(f["by_kind"]["metadata value not allowed"], 1, "{f}");
    assert!(f["named"].to_string().contains("city"), "{f}");
    let got = read(&b, "p");
    assert!(!got.metadata.contains_key("city"));
    assert_eq!(got.metadata.get("build-id").map(String::as_str), Some("42"));

    // `verify` names it too, and exits 3.
    let verified = verify(work.path(), &b, "p", 3);
    let differences = verified["differences"].to_string();
    assert!(differences.contains("\"metadata\"") && differences.contains("city"), "{verified}");
}

/// The multipart path (a HEAD for the attributes, then parts): the same attributes arrive.
#[test]
fn in_parts_to_gcs_azure_and_local() {
    let a = s3("fid-s3");
    seed(&a, "p", &original());
    let at_a = read(&a, "p");
    let work = tempfile::tempdir().unwrap();
    for b in [gcs("fid-gcs"), azure("fid-az"), local("xattr")] {
        let report = hop(work.path(), &a, &b, "p", &["--part-size", "32"], 0);
        assert!(report["requests"].to_string().contains("put part"), "{:?} in parts: {}", b.kind, report["requests"]);
        check_hop(&at_a, &b, &read(&b, "p"), &report);
        std::fs::remove_dir_all(work.path().join("job-p")).unwrap();
    }
}

/// A side in another bucket of the same service (a server-side copy's destination).
fn sibling(side: &Side, bucket: &str) -> Side {
    let base = match side.kind {
        Kind::S3 => format!("s3://{bucket}"),
        Kind::Gcs => format!("gs://{bucket}"),
        Kind::Azure => format!("az://{bucket}"),
        Kind::Local => unreachable!("no server copy"),
    };
    Side { kind: side.kind, base, endpoint: side.endpoint.clone(), local_metadata: None, env: side.env.clone(), _service: Box::new(()) }
}

/// The service copies the object itself (S3 CopyObject, GCS rewrite, Azure Copy Blob): the
/// attributes stay as the source has them.
fn server_copy(a: Side, b: Side) {
    seed(&a, "p", &expected_at(a.kind, &original()));
    let at_a = read(&a, "p");
    let work = tempfile::tempdir().unwrap();
    let report = hop(work.path(), &a, &b, "p", &[], 0);
    assert!(!report["requests"].to_string().contains("get\""), "no byte through ferry: {}", report["requests"]);
    let got = match a.kind {
        // moto gives an object it copied a CRC32C that is the bytes' CRC32 (docs/fidelity.md),
        // which the SDK's read then refuses: the copy's bytes are proved by its MD5 ETag.
        Kind::S3 => {
            let etag = |side: &Side| {
                let rt = tokio::runtime::Runtime::new().unwrap();
                rt.block_on(async { side.open("p").await.head(KEY).await.unwrap().unwrap().etag })
            };
            assert_eq!(etag(&b), etag(&a));
            Seen { data: at_a.data.clone(), ..read_attrs(&b, "p") }
        }
        _ => read(&b, "p"),
    };
    check_hop(&at_a, &b, &got, &report);
}

#[test]
fn server_copy_s3() {
    let a = s3("fid-a");
    let b = sibling(&a, "fid-b");
    ferry_testkit_create(&a, "fid-b");
    server_copy(a, b);
}

#[test]
fn server_copy_gcs() {
    let a = gcs("fid-a");
    let b = sibling(&a, "fid-b");
    ferry_testkit_create(&a, "fid-b");
    server_copy(a, b);
}

#[test]
fn server_copy_azure() {
    let a = azure("fid-a");
    let b = sibling(&a, "fid-b");
    ferry_testkit_create(&a, "fid-b");
    server_copy(a, b);
}

/// Creates bucket `name` on `side`'s service.
fn ferry_testkit_create(side: &Side, name: &str) {
    let service = side._service.as_ref();
    if let Some(m) = service.downcast_ref::<Moto>() {
        m.create_bucket(name);
    } else if let Some(g) = service.downcast_ref::<FakeGcs>() {
        g.create_bucket(name);
    } else if let Some(z) = service.downcast_ref::<Azurite>() {
        z.create_container(name);
    }
}
