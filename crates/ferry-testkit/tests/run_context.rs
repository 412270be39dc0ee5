//! A run's ceilings against a real service: every call through `ferry_providers::open` takes
//! one request slot per request it sends — head and delete as much as reads and writes — and a
//! call of several requests (a GCS multipart completion composes, then deletes its parts) takes
//! one for each, never a second for the same request. Counted by the run's own schedule, so
//! nothing here depends on time.
//!
//! One test function on purpose: the S3 adapter reads credentials only from the standard AWS
//! environment, which is set once before any runtime starts (as the conformance test does).

use bytes::Bytes;
use ferry_core::Location;
use ferry_providers::{Connect, PutAttrs, Rates, RunContext};
use ferry_testkit::{FakeGcs, S3Server};
use futures::StreamExt;

#[test]
fn calls_take_one_request_slot_per_request() {
    let s3 = S3Server::start();
    s3.create_bucket("slots");
    for (k, v) in s3.env() {
        // SAFETY: the only test in this binary; no other thread exists yet that reads the environment.
        unsafe { std::env::set_var(k, v) };
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let run = RunContext::new(Rates { bytes_per_second: Some(1 << 30), requests_per_second: Some(10_000) });
        let connect = Connect { endpoint: Some(s3.endpoint.clone()), ..Connect::default() };
        let p = ferry_providers::open(&Location::parse("s3://slots/run").unwrap(), &connect, &run).await.unwrap();
        let requests = || run.throttle().charged().2.units;
        let data = Bytes::from_static(b"one request each");
        p.put("a", data.clone(), ferry_core::crc32c(&data), &PutAttrs::default()).await.unwrap();
        assert_eq!(requests(), 1, "put");
        assert!(p.head("a").await.unwrap().is_some());
        assert_eq!(requests(), 2, "head: one slot, the wrapper's, which the provider's own request used");
        assert_eq!(p.get("a", None).await.unwrap().data, data);
        assert_eq!(requests(), 3, "get");
        // Issue 13 review: the lister took a slot for the poll that found the listing over.
        let pages: Vec<_> = p.list().collect().await;
        assert_eq!(pages.len(), 1);
        assert_eq!(requests(), 5, "two listing requests (the top level, then the flat listing), no slot for their ends");
        // Issue 13 review: an etag check that sends a request (S3: HEAD of part 1, for a
        // multipart ETag) was not counted; one answered from the entry takes nothing.
        let single = ferry_core::ObjectEntry { key: "a".into(), size: 16, etag: Some("0".repeat(32)), ..Default::default() };
        assert!(p.etag_check(&single).await.unwrap().is_some());
        assert_eq!(requests(), 5, "a single-part ETag is checked without a request");
        let multipart = ferry_core::ObjectEntry { etag: Some(format!("{}-2", "0".repeat(32))), ..single };
        let _ = p.etag_check(&multipart).await;
        assert_eq!(requests(), 6, "HEAD of part 1");
        p.delete("a").await.unwrap();
        assert_eq!(requests(), 7, "delete is throttled like every call");
        let (received, sent, _) = run.throttle().charged();
        assert_eq!((received.units, sent.units), (data.len() as u64, data.len() as u64), "bodies charged once each way");
        let counts = run.requests().snapshot();
        assert_eq!(counts.get("s3 etag check").map(|c| c.calls), Some(1), "{counts:?}");
    });
    drop(rt);

    let gcs = FakeGcs::start();
    gcs.create_bucket("slots");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // High enough that nothing waits long; only the count matters.
        let run = RunContext::new(Rates { bytes_per_second: None, requests_per_second: Some(10_000) });
        let connect = Connect { endpoint: Some(gcs.endpoint.clone()), ..Connect::default() };
        let p = ferry_providers::open(&Location::parse("gs://slots/run").unwrap(), &connect, &run).await.unwrap();
        let requests = || run.throttle().charged().2.units;

        let data = Bytes::from_static(b"one request each");
        p.put("a", data.clone(), ferry_core::crc32c(&data), &PutAttrs::default()).await.unwrap();
        assert_eq!(requests(), 1, "put");
        assert!(p.head("a").await.unwrap().is_some());
        assert_eq!(requests(), 2, "head");
        assert_eq!(p.get("a", None).await.unwrap().data, data);
        assert_eq!(requests(), 3, "get");
        let pages: Vec<_> = p.list().collect().await;
        assert_eq!(pages.len(), 1);
        assert_eq!(requests(), 4, "one listing page");
        p.delete("a").await.unwrap();
        assert_eq!(requests(), 5, "delete");

        // Two parts, then a completion that composes them and deletes the two part objects.
        let mp = p.multipart().expect("gcs offers multipart");
        let mut upload = mp.start("b", &PutAttrs::default(), 8, "0123456789abcdef0123456789abcdef").await.unwrap();
        // Issue 13 review: the wrapper charged a slot for starting an upload, which on GCS sends
        // no request.
        assert_eq!(requests(), 5, "starting an upload sends nothing");
        let (x, y) = (Bytes::from_static(b"abcd"), Bytes::from_static(b"efgh"));
        let first = upload.put_part(0, 0, x.clone(), ferry_core::crc32c(&x));
        let second = upload.put_part(1, 4, y.clone(), ferry_core::crc32c(&y));
        let parts = vec![first.await.unwrap(), second.await.unwrap()];
        assert_eq!(requests(), 7, "one per part");
        upload.complete(parts).await.unwrap();
        assert_eq!(requests(), 10, "compose, then each part's deletion, a slot each");
        let counts = run.requests().snapshot();
        assert_eq!(counts["gcs complete upload"].calls, 1, "{counts:?}");
        assert_eq!(counts["gcs put part"].bytes, 8, "{counts:?}");
    });
}
