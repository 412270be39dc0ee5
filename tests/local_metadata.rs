//! Issue 14, local metadata (`--local-metadata xattr|sidecar|none`) under attack: the name of
//! ferry's sidecar store is reserved at a local root whatever the mode, a local source's store
//! is read as metadata and never copied, a malformed sidecar or xattr fails its object by name,
//! sidecar paths never collide, and tags a destination cannot hold are named, not fatal.
//! Real local disk on one side; moto or Azurite on the other where that side matters.

mod common;

use bytes::Bytes;
use common::ferry;
use ferry_core::{ObjectEntry, Tags};
use ferry_providers::local::{LocalMetadata, LocalProvider};
use ferry_providers::{Connect, Provider, PutAttrs};
use ferry_testkit::{Azurite, Moto};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

/// moto, with this process's own S3 client given moto's keys (moto accepts any).
fn moto(bucket: &str) -> Moto {
    static KEYS: std::sync::Once = std::sync::Once::new();
    KEYS.call_once(|| {
        for (k, v) in [("AWS_ACCESS_KEY_ID", "moto"), ("AWS_SECRET_ACCESS_KEY", "moto"), ("AWS_REGION", "us-east-1")] {
            // SAFETY: set once, before any thread of this test reads the environment for S3.
            unsafe { std::env::set_var(k, v) };
        }
    });
    let moto = Moto::start();
    moto.create_bucket(bucket);
    moto
}

async fn open(url: &str, endpoint: Option<&str>, mode: LocalMetadata) -> Arc<dyn Provider> {
    let connect = Connect { endpoint: endpoint.map(str::to_string), local_metadata: mode, ..Connect::default() };
    let location = ferry_core::Location::parse(url).unwrap();
    ferry_providers::open(&location, &connect, &ferry_providers::RunContext::unlimited()).await.unwrap()
}

fn local(root: &Path, mode: LocalMetadata) -> LocalProvider {
    LocalProvider::new(ferry_core::Location::parse(root.to_str().unwrap()).unwrap()).metadata(mode)
}

fn attrs(meta: &[(&str, &str)], tags: &[(&str, &str)]) -> PutAttrs {
    PutAttrs {
        content_type: Some("text/plain".into()),
        metadata: meta.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        tags: Some(tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
        ..PutAttrs::default()
    }
}

async fn put(p: &dyn Provider, key: &str, data: &'static [u8], a: &PutAttrs) {
    let data = Bytes::from_static(data);
    p.put(key, data.clone(), ferry_core::crc32c(&data), a).await.unwrap();
}

/// `ferry copy SRC DST --json` with `extra` flags; asserts its exit code.
fn copy(w: &Path, src: &str, dst: &str, job: &str, extra: &[&str], env: &[(String, String)], code: i32) -> serde_json::Value {
    let mut args = vec!["copy", src, dst, "--job", job, "--json"];
    args.extend(extra);
    let run = ferry(w, &args, env);
    assert_eq!(run.code, code, "copy {src} → {dst}: exit {}\n{}\n{}", run.code, run.stdout, run.stderr);
    run.json()
}

fn failures(report: &serde_json::Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = report["failures"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|f| (f["key"].as_str().unwrap().to_string(), f["kind"].as_str().unwrap().to_string()))
        .collect();
    out.sort();
    out
}

/// Every regular file under `root`, as relative paths.
fn files(root: &Path) -> Vec<String> {
    let mut out: Vec<String> = walk(root).into_iter().map(|p| p.strip_prefix(root).unwrap().to_str().unwrap().to_string()).collect();
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let t = e.file_type().unwrap();
        if t.is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// The sidecar file ferry keeps for `key` under `root` (found by the key it records, whatever
/// the layout; the first layout's `KEY.json` otherwise).
fn sidecar_of(root: &Path, key: &str) -> PathBuf {
    for p in walk(&root.join(".ferry-meta")) {
        let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap_or_default();
        if doc["key"] == key {
            return p;
        }
    }
    let old = root.join(".ferry-meta").join(format!("{key}.json"));
    assert!(old.is_file(), "no sidecar for {key} under {}: {:?}", root.display(), files(root));
    old
}

async fn head(p: &dyn Provider, key: &str) -> ObjectEntry {
    p.head(key).await.unwrap().unwrap_or_else(|| panic!("{key} missing"))
}

/// Finding 1 (and 7): a source key named `.ferry-meta`, or under `.ferry-meta/`, is refused at a
/// local destination whatever `--local-metadata` says — that object alone fails, by name, kind
/// `destination-refused`; every other object and its sidecar are written; a resume fails it
/// again and nothing else, and `verify` names it.
#[test]
fn reserved_store_name_fails_alone_at_a_local_destination() {
    let s3 = moto("lm-reserved");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    rt().block_on(async {
        let src = open("s3://lm-reserved/in", Some(&s3.endpoint), LocalMetadata::None).await;
        let a = attrs(&[("owner", "web")], &[("team", "web")]);
        put(&*src, ".ferry-meta", b"a key named like the store", &a).await;
        put(&*src, "a.txt", b"alpha", &a).await;
        put(&*src, "z/b.txt", b"beta", &a).await;
        // A planted sidecar, as the first layout named it and as any layout could.
        let evil = attrs(&[("evil", "1")], &[("pwn", "1")]);
        put(&*src, ".ferry-meta/a.txt.json", br#"{"metadata":{"evil/x":"1"},"tags":{"pwn":"1"}}"#, &evil).await;
    });
    let env = s3.env();
    let ep = s3.endpoint.clone();
    for mode in ["sidecar", "none", "xattr"] {
        let dst = w.join(format!("dst-{mode}"));
        let dst_url = dst.to_str().unwrap().to_string();
        let job = format!("job-{mode}");
        let flags = ["--src-endpoint", ep.as_str(), "--local-metadata", mode];
        let report = copy(w, "s3://lm-reserved/in", &dst_url, &job, &flags, &env, 1);
        let want = vec![
            (".ferry-meta".to_string(), "destination-refused".to_string()),
            (".ferry-meta/a.txt.json".to_string(), "destination-refused".to_string()),
        ];
        assert_eq!(failures(&report), want, "{mode}: {report}");
        assert_eq!(report["copied"], 2, "{mode}: {report}");
        assert_eq!(std::fs::read(dst.join("a.txt")).unwrap(), b"alpha");
        assert_eq!(std::fs::read(dst.join("z/b.txt")).unwrap(), b"beta");
        assert!(!dst.join(".ferry-meta").is_file(), "{mode}: the store's name was written as a file");
        if mode != "sidecar" {
            assert!(!dst.join(".ferry-meta").exists(), "{mode}: {:?}", files(&dst));
        }
        // A later sidecar run reads only what ferry wrote: nothing planted.
        rt().block_on(async {
            let p = local(&dst, LocalMetadata::Sidecar);
            let got = head(&p, "a.txt").await;
            let meta_expected: BTreeMap<String, String> = match mode {
                "sidecar" => BTreeMap::from([("owner".to_string(), "web".to_string())]),
                _ => BTreeMap::new(),
            };
            assert_eq!(got.metadata, meta_expected, "{mode}");
            assert!(!got.tags.unwrap_or_default().contains_key("pwn"), "{mode}");
        });
        // A resume fails the same object again, and only it.
        let run = ferry(w, &["resume", "--job", &job, "--json", "--src-endpoint", &ep, "--local-metadata", mode], &env);
        assert_eq!(run.code, 1, "{mode} resume: {}\n{}", run.stdout, run.stderr);
        assert_eq!(failures(&run.json()), want, "{mode} resume");
        let run = ferry(w, &["verify", "--job", &job, "--json", "--local-metadata", mode], &env);
        assert_ne!(run.code, 0, "{mode} verify: {}", run.stdout);
        let v = run.json();
        let diffs = v["differences"].to_string();
        assert!(diffs.contains("\".ferry-meta\"") && diffs.contains("not-copied"), "{mode} verify: {v}");
        assert!(!diffs.contains("a.txt\""), "{mode} verify: {v}");
    }
}

/// Finding 1, the source side: a local source's own sidecar store is read as metadata, never
/// copied; a file named `.ferry-meta` (sidecar mode) or a `.ferry-meta/` folder (other modes)
/// is named as skipped (reason `ferry-metadata`, a loss: exit 1), never copied as an object.
#[test]
fn a_local_sources_store_is_never_copied_as_objects() {
    let s3 = moto("lm-store");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    rt().block_on(async {
        let p = local(&src, LocalMetadata::Sidecar);
        put(&p, "a.txt", b"alpha", &attrs(&[("owner", "web")], &[])).await;
    });
    assert!(src.join(".ferry-meta").is_dir());
    let (env, ep) = (s3.env(), s3.endpoint.clone());
    let src_url = src.to_str().unwrap().to_string();

    // Sidecar mode: the store is metadata.
    let report = copy(w, &src_url, "s3://lm-store/side", "j1", &["--dst-endpoint", &ep, "--local-metadata", "sidecar"], &env, 0);
    assert_eq!((report["copied"].as_u64(), report["skipped"]["total"].as_u64()), (Some(1), Some(0)), "{report}");
    // Other modes: the store is named, not copied.
    let report = copy(w, &src_url, "s3://lm-store/none", "j2", &["--dst-endpoint", &ep, "--local-metadata", "none"], &env, 1);
    assert_eq!(report["copied"], 1, "{report}");
    assert_eq!(report["skipped"]["by_reason"]["ferry-metadata"], 1, "{report}");
    let named = report["skipped"]["entries"].to_string();
    assert!(named.contains(".ferry-meta"), "{report}");

    // A file named like the store, with sidecars in use: named, not copied.
    let src2 = w.join("src2");
    std::fs::create_dir_all(&src2).unwrap();
    std::fs::write(src2.join(".ferry-meta"), b"a user's file").unwrap();
    std::fs::write(src2.join("b.txt"), b"beta").unwrap();
    let src2_url = src2.to_str().unwrap().to_string();
    let report = copy(w, &src2_url, "s3://lm-store/two", "j3", &["--dst-endpoint", &ep, "--local-metadata", "sidecar"], &env, 1);
    assert_eq!(report["copied"], 1, "{report}");
    assert_eq!(report["skipped"]["by_reason"]["ferry-metadata"], 1, "{report}");

    // Nothing of the store arrived as an object.
    rt().block_on(async {
        let p = open("s3://lm-store", Some(&ep), LocalMetadata::None).await;
        for key in ["two/.ferry-meta", "none/.ferry-meta/a.txt.json", "side/.ferry-meta/a.txt.json"] {
            assert_eq!(p.head(key).await.unwrap(), None, "{key}");
        }
    });
}

/// Finding 3: a sidecar that is not JSON, has the wrong types, is over the size bound or is a
/// symlink, and an xattr that is not JSON: each fails its object alone, kind
/// `metadata-unreadable`, exit 1; the good object is copied with its metadata.
#[test]
fn malformed_local_metadata_fails_its_object_by_name() {
    let s3 = moto("lm-bad");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    let keys = ["bad-json.txt", "big.txt", "good.txt", "link.txt", "wrong-type.txt"];
    rt().block_on(async {
        let p = local(&src, LocalMetadata::Sidecar);
        for key in keys {
            put(&p, key, b"bytes", &attrs(&[("owner", "web")], &[])).await;
        }
    });
    std::fs::write(sidecar_of(&src, "bad-json.txt"), b"{\"metadata\": ").unwrap();
    std::fs::write(sidecar_of(&src, "wrong-type.txt"), br#"{"metadata": 5}"#).unwrap();
    let big = format!(r#"{{"key":"big.txt","metadata":{{"owner":"{}"}}}}"#, "x".repeat(1 << 20));
    std::fs::write(sidecar_of(&src, "big.txt"), big).unwrap();
    let link = sidecar_of(&src, "link.txt");
    std::fs::copy(&link, w.join("outside.json")).unwrap();
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(w.join("outside.json"), &link).unwrap();

    let (env, ep) = (s3.env(), s3.endpoint.clone());
    let src_url = src.to_str().unwrap().to_string();
    let report = copy(w, &src_url, "s3://lm-bad/out", "j1", &["--dst-endpoint", &ep, "--local-metadata", "sidecar"], &env, 1);
    let want: Vec<(String, String)> =
        ["bad-json.txt", "big.txt", "link.txt", "wrong-type.txt"].iter().map(|k| (k.to_string(), "metadata-unreadable".into())).collect();
    assert_eq!(failures(&report), want, "{report}");
    assert_eq!(report["copied"], 1, "{report}");
    let got = rt().block_on(async {
        let p = open("s3://lm-bad/out", Some(&ep), LocalMetadata::None).await;
        head(&*p, "good.txt").await
    });
    assert_eq!(got.metadata.get("owner").map(String::as_str), Some("web"));

    // An xattr that is not the document.
    let xsrc = w.join("xsrc");
    rt().block_on(async {
        let p = local(&xsrc, LocalMetadata::Xattr);
        for key in ["good.txt", "bad.txt"] {
            put(&p, key, b"bytes", &attrs(&[("owner", "web")], &[])).await;
        }
    });
    let bad = std::ffi::CString::new(xsrc.join("bad.txt").into_os_string().into_encoded_bytes()).unwrap();
    let value = b"not json";
    // SAFETY: both strings are NUL-terminated and `value` outlives the call.
    let set = unsafe { libc::setxattr(bad.as_ptr(), c"user.ferry.attrs".as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    assert_eq!(set, 0, "{}", std::io::Error::last_os_error());
    let xsrc_url = xsrc.to_str().unwrap().to_string();
    let report = copy(w, &xsrc_url, "s3://lm-bad/x", "j2", &["--dst-endpoint", &ep, "--local-metadata", "xattr"], &env, 1);
    assert_eq!(failures(&report), [("bad.txt".to_string(), "metadata-unreadable".to_string())], "{report}");
    assert_eq!(report["copied"], 1, "{report}");
}

/// Finding 8: keys `a` and `a.json/b` both keep their sidecars, and read them back.
#[test]
fn sidecar_paths_never_collide() {
    let s3 = moto("lm-collide");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let keys = ["a", "a.json/b", "x/y", "x/y.json/z"];
    rt().block_on(async {
        let src = open("s3://lm-collide/in", Some(&s3.endpoint), LocalMetadata::None).await;
        for (i, key) in keys.iter().enumerate() {
            put(&*src, key, b"data", &attrs(&[("n", &i.to_string())], &[("t", &i.to_string())])).await;
        }
    });
    let dst = w.join("dst");
    let (env, ep) = (s3.env(), s3.endpoint.clone());
    let report =
        copy(w, "s3://lm-collide/in", dst.to_str().unwrap(), "j1", &["--src-endpoint", &ep, "--local-metadata", "sidecar"], &env, 0);
    assert_eq!(report["copied"], 4, "{report}");
    rt().block_on(async {
        let p = local(&dst, LocalMetadata::Sidecar);
        for (i, key) in keys.iter().enumerate() {
            let got = head(&p, key).await;
            assert_eq!(got.metadata.get("n"), Some(&i.to_string()), "{key}");
            assert_eq!(got.tags.unwrap_or_default().get("t"), Some(&i.to_string()), "{key}");
        }
    });
    let run = ferry(w, &["verify", "--job", "j1", "--json", "--local-metadata", "sidecar"], &env);
    assert_eq!(run.code, 0, "verify: {}\n{}", run.stdout, run.stderr);
}

/// Finding 6: tags a destination cannot hold (an 11th tag on S3 or Azure, `@` on Azure) are
/// named per object as not carried; the object's bytes and the tags it can hold arrive; exit 1.
/// Local (11 tags) → moto, local → Azurite, and moto (10 tags, one with `@`) → Azurite.
#[test]
fn tags_a_destination_cannot_hold_are_named_not_fatal() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    let mut tags: Vec<(String, String)> = (0..11).map(|i| (format!("k{i:02}"), format!("v{i}"))).collect();
    tags[0].1 = "ann@example.com".into();
    let tag_refs: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    rt().block_on(async {
        let p = local(&src, LocalMetadata::Sidecar);
        put(&p, "tagged.txt", b"tagged bytes", &attrs(&[("owner", "web")], &tag_refs)).await;
    });
    let src_url = src.to_str().unwrap().to_string();
    let all: Tags = tags.iter().cloned().collect();

    // S3 (moto): ten tags at most; `@` is allowed.
    let s3 = moto("lm-tags");
    let report =
        copy(w, &src_url, "s3://lm-tags/out", "j1", &["--dst-endpoint", &s3.endpoint, "--local-metadata", "sidecar"], &s3.env(), 1);
    assert_eq!(report["copied"], 1, "{report}");
    assert!(failures(&report).is_empty(), "{report}");
    let f = &report["fidelity"];
    assert_eq!(f["objects_losing_metadata"], 1, "{f}");
    let named = f["named"].to_string();
    assert!(named.contains("tagged.txt") && named.contains("k10"), "{f}");
    let (data, got) = rt().block_on(async {
        let p = open("s3://lm-tags/out", Some(&s3.endpoint), LocalMetadata::None).await;
        (p.get("tagged.txt", None).await.unwrap().data, p.tags("tagged.txt").await.unwrap())
    });
    assert_eq!(&data[..], b"tagged bytes");
    let mut first_ten = all.clone();
    first_ten.remove("k10");
    assert_eq!(got, first_ten);

    // Azure (Azurite): ten at most, and no `@`.
    let azurite = Azurite::start();
    azurite.create_container("lm-tags");
    let report = copy(w, &src_url, "az://lm-tags/out", "j2", &["--dst-endpoint", &azurite.endpoint, "--local-metadata", "sidecar"], &[], 1);
    assert_eq!(report["copied"], 1, "{report}");
    let f = &report["fidelity"];
    let named = f["named"].to_string();
    assert!(named.contains("k00") && !named.contains("k10"), "{f}");
    let (data, got) = rt().block_on(async {
        let p = open("az://lm-tags/out", Some(&azurite.endpoint), LocalMetadata::None).await;
        (p.get("tagged.txt", None).await.unwrap().data, p.tags("tagged.txt").await.unwrap())
    });
    assert_eq!(&data[..], b"tagged bytes");
    let mut valid = all.clone();
    valid.remove("k00");
    assert_eq!(got, valid);

    // S3 → Azure: the ten tags moto holds, `@` among them.
    let (ep, az) = (s3.endpoint.clone(), azurite.endpoint.clone());
    let report = copy(w, "s3://lm-tags/out", "az://lm-tags/from-s3", "j3", &["--src-endpoint", &ep, "--dst-endpoint", &az], &s3.env(), 1);
    assert_eq!(report["copied"], 1, "{report}");
    assert_eq!(report["fidelity"]["by_kind"]["tag not allowed"], 1, "{report}");
    let got = rt().block_on(async {
        let p = open("az://lm-tags/from-s3", Some(&az), LocalMetadata::None).await;
        assert_eq!(&p.get("tagged.txt", None).await.unwrap().data[..], b"tagged bytes");
        p.tags("tagged.txt").await.unwrap()
    });
    first_ten.remove("k00");
    assert_eq!(got, first_ten);
}
