//! An HTTP/1.1 proxy in front of a service that counts the bytes clients upload through it (the
//! measure of what a copy sent, independent of what the client reports) and injects faults per
//! request: drop the connection mid-body, cut a response short, flip a byte in an object's
//! bytes on the way down or up, answer 500/503/429 (with or without `Retry-After`), add latency.
//!
//! Byte flips touch only object data — a GET answer that is not XML or JSON, an upload body that
//! is not (for a GCS multipart upload, the media part) — because a flipped listing or commit
//! request is a different fault from the one under test: data corrupted in transit.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Faults injected per request, in percent of requests (flips: of requests carrying object data).
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Close the connection after half of the request body, without an answer.
    pub drop_pct: u32,
    /// Answer 503 (alternately with `Retry-After: 0` and without) instead of passing it on.
    pub unavailable_pct: u32,
    /// Answer 500 (`InternalError`) instead of passing it on.
    pub internal_pct: u32,
    /// Answer 429 (alternately with `Retry-After: 0` and without) instead of passing it on.
    pub throttle_pct: u32,
    /// Pass it on, then cut the answer's body in half and close the connection.
    pub truncate_pct: u32,
    /// Flip one byte of the object bytes a GET returns.
    pub flip_download_pct: u32,
    /// Flip one byte of the object bytes an upload sends.
    pub flip_upload_pct: u32,
    /// Flip at most this many times in all (0: no limit), so a test can flip often early and
    /// still know no object meets more flips than its attempts.
    pub max_flips: u64,
    /// Added before every request is passed on.
    pub latency: Duration,
    /// Answer the first this many uploads (a PUT or POST of object bytes, not XML or JSON)
    /// 503 SlowDown with `Retry-After: 0`, before any other fault: a service that pushes back
    /// on exactly those, so a test can count how often one upload is sent.
    pub refuse_uploads: u64,
    /// Answer the first this many requests of any kind the same way (a service that is busy
    /// when the run starts).
    pub refuse_first: u64,
}

impl Faults {
    /// No faults (a `const` form of `Default`).
    pub const DEFAULT: Faults = Faults {
        drop_pct: 0,
        unavailable_pct: 0,
        internal_pct: 0,
        throttle_pct: 0,
        truncate_pct: 0,
        flip_download_pct: 0,
        flip_upload_pct: 0,
        max_flips: 0,
        latency: Duration::ZERO,
        refuse_uploads: 0,
        refuse_first: 0,
    };
}

/// A request's method, URI and headers, as a [`Hook`] sees them.
pub use http::request::Parts as RequestHead;

/// What the proxy did, by fault kind.
pub type FaultCounts = BTreeMap<&'static str, u64>;

/// Runs before each request is passed on (after faults are decided), with the request's head;
/// work it returns is finished first — e.g. another writer changing the object upstream at an
/// exact point of a transfer, which a test cannot time from outside.
pub type Hook = Arc<dyn Fn(&RequestHead) -> Option<futures::future::BoxFuture<'static, ()>> + Send + Sync>;

/// Decides, for each request, whether the proxy answers it `500 InternalError` itself instead
/// of passing it on (e.g. every listing request from the third page on: a listing cut off).
pub type Refuse = Arc<dyn Fn(&RequestHead) -> bool + Send + Sync>;

pub struct CountingProxy {
    pub endpoint: String,
    uploaded: Arc<AtomicU64>,
    in_flight: Arc<AtomicU64>,
    injected: Arc<Mutex<FaultCounts>>,
    requests: Arc<Mutex<Vec<String>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    upstream: String,
    faults: Faults,
    uploaded: Arc<AtomicU64>,
    in_flight: Arc<AtomicU64>,
    injected: Arc<Mutex<FaultCounts>>,
    flips: AtomicU64,
    refused: AtomicU64,
    refused_any: AtomicU64,
    requests: Arc<Mutex<Vec<String>>>,
    hook: Option<Hook>,
    refuse: Option<Refuse>,
    client: hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

type ProxyBody = BoxBody<Bytes, std::io::Error>;

impl CountingProxy {
    /// Listens on a free loopback port and forwards every request to `upstream`
    /// (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> CountingProxy {
        Self::start_with_faults(upstream, Faults::default())
    }

    /// Like [`CountingProxy::start`], injecting `faults`.
    pub fn start_with_faults(upstream: &str, faults: Faults) -> CountingProxy {
        Self::start_with_hook(upstream, faults, None)
    }

    /// Like [`CountingProxy::start_with_faults`], running `hook` before each request is passed on.
    pub fn start_with_hook(upstream: &str, faults: Faults, hook: Option<Hook>) -> CountingProxy {
        Self::start_full(upstream, faults, hook, None)
    }

    /// Like [`CountingProxy::start`], answering the requests `refuse` picks with 500.
    pub fn start_refusing(upstream: &str, refuse: Refuse) -> CountingProxy {
        Self::start_full(upstream, Faults::DEFAULT, None, Some(refuse))
    }

    fn start_full(upstream: &str, faults: Faults, hook: Option<Hook>, refuse: Option<Refuse>) -> CountingProxy {
        let upstream = upstream.trim_end_matches('/').to_string();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let uploaded = Arc::new(AtomicU64::new(0));
        let in_flight = Arc::new(AtomicU64::new(0));
        let injected = Arc::new(Mutex::new(FaultCounts::new()));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let (up, inj, log, busy) = (uploaded.clone(), injected.clone(), requests.clone(), in_flight.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
            rt.block_on(async move {
                let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(30))
                    .build_http();
                let shared = Arc::new(Shared {
                    upstream,
                    faults,
                    uploaded: up,
                    in_flight: busy,
                    injected: inj,
                    flips: AtomicU64::new(0),
                    refused: AtomicU64::new(0),
                    refused_any: AtomicU64::new(0),
                    requests: log,
                    hook,
                    refuse,
                    client,
                });
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                loop {
                    tokio::select! {
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let shared = shared.clone();
                            tokio::spawn(async move {
                                let service = hyper::service::service_fn(move |req| handle(shared.clone(), req));
                                let _ = hyper::server::conn::http1::Builder::new()
                                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                                    .await;
                            });
                        }
                        _ = &mut rx => break,
                    }
                }
            });
        });
        CountingProxy {
            endpoint: format!("http://127.0.0.1:{port}"),
            uploaded,
            in_flight,
            injected,
            requests,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// Bytes clients have sent so far (request lines, headers and bodies).
    pub fn uploaded(&self) -> u64 {
        self.uploaded.load(Ordering::Relaxed)
    }

    /// Every request received so far, in arrival order, as `METHOD /path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("requests lock").clone()
    }

    /// Requests passed on to the service that it has not answered yet (they are carried out
    /// even when the client went away).
    pub fn requests_in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Requests that got a fault, all kinds together.
    pub fn faults_injected(&self) -> u64 {
        self.injected.lock().expect("faults lock").values().sum()
    }

    /// Requests that got a fault, by kind (`drop`, `503`, `500`, `429`, `truncate`,
    /// `flip download`, `flip upload`, `refused upload`, `refused`).
    pub fn faults_by_kind(&self) -> FaultCounts {
        self.injected.lock().expect("faults lock").clone()
    }
}

#[derive(Debug)]
struct Dropped;
impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the fault proxy")
    }
}
impl std::error::Error for Dropped {}

fn full(body: Bytes) -> ProxyBody {
    Full::new(body).map_err(|never| match never {}).boxed()
}

fn is_structured(content_type: Option<&http::HeaderValue>) -> bool {
    content_type.and_then(|v| v.to_str().ok()).is_some_and(|t| t.contains("xml") || t.contains("json"))
}

/// Where the object bytes of an upload body lie: all of it, or for `multipart/related` (GCS) the
/// media part after the JSON metadata.
fn upload_data(content_type: &str, body: &[u8]) -> Option<std::ops::Range<usize>> {
    if !content_type.starts_with("multipart/related") {
        return (!body.is_empty()).then_some(0..body.len());
    }
    let find = |from: usize, needle: &[u8]| body[from..].windows(needle.len()).position(|w| w == needle).map(|p| p + from);
    let meta = find(0, b"\r\n\r\n")? + 4;
    let start = find(meta, b"\r\n\r\n")? + 4;
    let end = (start..body.len()).rev().find(|&i| body[i..].starts_with(b"\r\n--"))?;
    (end > start).then_some(start..end)
}

fn flip(body: &mut [u8], range: std::ops::Range<usize>) {
    let at = rand::random_range(range);
    body[at] ^= 1 << rand::random_range(0..8u32);
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<ProxyBody>, Dropped> {
    let f = shared.faults;
    let count = |kind: &'static str| *shared.injected.lock().expect("faults lock").entry(kind).or_default() += 1;
    let roll = rand::random_range(0..100u32);
    let mut bound = 0;
    let mut hit = |pct: u32| {
        let h = roll >= bound && roll < bound + pct;
        bound += pct;
        h
    };
    let (drop, unavailable, internal, throttle, truncate) =
        (hit(f.drop_pct), hit(f.unavailable_pct), hit(f.internal_pct), hit(f.throttle_pct), hit(f.truncate_pct));
    // A flip is the only fault of its request, so each one is a clean case of corrupted bytes.
    let clean = !(drop || unavailable || internal || throttle || truncate);
    // Takes one of the `max_flips` (atomically, so concurrent requests cannot overshoot).
    let may_flip = || {
        f.max_flips == 0 || shared.flips.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < f.max_flips).then_some(n + 1)).is_ok()
    };
    let (flip_down, flip_up) =
        (clean && rand::random_range(0..100u32) < f.flip_download_pct, clean && rand::random_range(0..100u32) < f.flip_upload_pct);

    let (parts, body) = req.into_parts();
    let line = format!("{} {}", parts.method, parts.uri.path_and_query().map_or("/", |p| p.as_str()));
    shared.requests.lock().expect("requests lock").push(line);
    if shared.refuse.as_ref().is_some_and(|refuse| refuse(&parts)) {
        count("refused by the test");
        let xml = "<?xml version=\"1.0\"?><Error><Code>InternalError</Code><Message>refused by the test proxy</Message></Error>";
        let answer = Response::builder().status(StatusCode::INTERNAL_SERVER_ERROR).header("content-type", "application/xml");
        return Ok(answer.body(full(Bytes::from(xml))).expect("response"));
    }
    let head_len = parts.uri.to_string().len() + 16 + parts.headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum::<usize>();
    let declared: Option<usize> = parts.headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
    if drop && declared.unwrap_or(0) > 1 {
        // Take half the body, then hang up.
        let mut body = body;
        let mut got = 0;
        while got < declared.unwrap_or(0) / 2 {
            match body.frame().await {
                Some(Ok(frame)) => got += frame.data_ref().map_or(0, |d| d.len()),
                _ => break,
            }
        }
        count("drop");
        return Err(Dropped);
    }
    let mut body = match body.collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(_) => return Err(Dropped),
    };
    shared.uploaded.fetch_add((head_len + body.len()) as u64, Ordering::Relaxed);
    let is_upload =
        matches!(parts.method, http::Method::PUT | http::Method::POST) && !is_structured(parts.headers.get(http::header::CONTENT_TYPE));
    let take = |taken: &AtomicU64, of: u64| taken.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < of).then_some(n + 1)).is_ok();
    let refused_upload = is_upload && take(&shared.refused, f.refuse_uploads);
    if refused_upload || take(&shared.refused_any, f.refuse_first) {
        count(if refused_upload { "refused upload" } else { "refused" });
        let xml = "<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>refused by the test proxy</Message></Error>";
        let answer = Response::builder().status(StatusCode::SERVICE_UNAVAILABLE).header("content-type", "application/xml");
        return Ok(answer.header("retry-after", "0").body(full(Bytes::from(xml))).expect("response"));
    }
    if unavailable || throttle || internal {
        let (status, code, kind) = if unavailable {
            (StatusCode::SERVICE_UNAVAILABLE, "SlowDown", "503")
        } else if throttle {
            (StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", "429")
        } else {
            (StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "500")
        };
        count(kind);
        let xml = format!("<?xml version=\"1.0\"?><Error><Code>{code}</Code><Message>injected by the test proxy</Message></Error>");
        let mut answer = Response::builder().status(status).header("content-type", "application/xml");
        if kind != "500" && rand::random::<bool>() {
            answer = answer.header("retry-after", "0");
        }
        return Ok(answer.body(full(Bytes::from(xml))).expect("response"));
    }
    if flip_up && is_upload {
        let ct = parts.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if let Some(range) = upload_data(ct, &body).filter(|_| may_flip()) {
            flip(&mut body, range);
            count("flip upload");
        }
    }
    if !f.latency.is_zero() {
        tokio::time::sleep(f.latency).await;
    }
    if let Some(work) = shared.hook.as_ref().and_then(|hook| hook(&parts)) {
        work.await;
    }

    let is_get = parts.method == http::Method::GET;
    let is_head = parts.method == http::Method::HEAD;
    let uri: http::Uri =
        format!("{}{}", shared.upstream, parts.uri.path_and_query().map_or("/", |p| p.as_str())).parse().expect("upstream uri");
    let mut upstream = Request::builder().method(parts.method).uri(uri);
    for (name, value) in &parts.headers {
        if !matches!(name.as_str(), "connection" | "keep-alive" | "transfer-encoding" | "expect" | "content-length") {
            upstream = upstream.header(name, value);
        }
    }
    // Declared lengths are passed on as they are, 0 included (hyper would leave a zero out, and
    // a signed Content-Length must arrive).
    if declared.is_some() {
        upstream = upstream.header(http::header::CONTENT_LENGTH, body.len());
    }
    let upstream = upstream.body(Full::new(Bytes::from(body))).expect("request");
    // Once a request has arrived whole it is carried out even if the client goes away (a killed
    // ferry), as a real service does: s3s-fs would drop a CompleteMultipartUpload cut off
    // halfway, having forgotten the upload but not yet written the object.
    shared.in_flight.fetch_add(1, Ordering::Relaxed);
    let forwarded = {
        let shared = shared.clone();
        async move {
            let answer = shared.client.request(upstream).await;
            shared.in_flight.fetch_sub(1, Ordering::Relaxed);
            answer
        }
    };
    let answer = tokio::spawn(forwarded).await.map_err(|_| Dropped)?.map_err(|_| Dropped)?;
    let (mut parts, body) = answer.into_parts();
    let mut body = body.collect().await.map_err(|_| Dropped)?.to_bytes().to_vec();
    parts.headers.remove(http::header::TRANSFER_ENCODING);
    if is_head {
        return Ok(Response::from_parts(parts, http_body_util::Empty::new().map_err(|never| match never {}).boxed()));
    }
    if flip_down
        && is_get
        && parts.status.is_success()
        && !body.is_empty()
        && !is_structured(parts.headers.get(http::header::CONTENT_TYPE))
        && may_flip()
    {
        let len = body.len();
        flip(&mut body, 0..len);
        count("flip download");
    }
    if truncate && body.len() > 1 {
        count("truncate");
        parts.headers.insert(http::header::CONTENT_LENGTH, body.len().into());
        let half = body.len() / 2;
        let half = Bytes::from(body).slice(..half);
        let frames = futures::stream::iter(vec![Ok(Frame::data(half)), Err(std::io::Error::other("cut short by the fault proxy"))]);
        return Ok(Response::from_parts(parts, StreamBody::new(frames).boxed()));
    }
    parts.headers.remove(http::header::CONTENT_LENGTH);
    Ok(Response::from_parts(parts, full(Bytes::from(body))))
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
