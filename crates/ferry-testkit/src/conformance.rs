//! The conformance suite: what every provider adapter must do, run against its real service.
//!
//! An adapter's test opens a provider on a fresh bucket/prefix, declares what the provider keeps
//! ([`Suite`]), and calls [`run`]. Assertions name the provider and the operation that failed.

use bytes::Bytes;
use ferry_core::crc32c;
use ferry_providers::{PartReceipt, Provider, ProviderError, PutAttrs};
use std::collections::{BTreeMap, BTreeSet};

/// What a provider keeps besides the bytes.
#[derive(Debug, Clone, Copy)]
pub struct Suite {
    /// User metadata and content type survive a put and a multipart upload.
    pub keeps_attributes: bool,
}

const AWKWARD_KEYS: [&str; 8] = [
    "plain.txt",
    "with space/and more.txt",
    "plus+sign",
    "per%cent",
    "hash#tag",
    "caf\u{e9}-nfc",
    "cafe\u{301}-nfd",
    "a/b/c/d/e/f/g/h/i/j/deep",
];

fn bytes_of(seed: u8, len: usize) -> Bytes {
    Bytes::from((0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect::<Vec<u8>>())
}

fn attrs() -> PutAttrs {
    PutAttrs {
        content_type: Some("text/x-ferry".into()),
        metadata: BTreeMap::from([("origin".to_string(), "conformance".to_string())]),
        mode: None,
    }
}

/// Runs the whole suite against `p`, whose location must be empty.
pub async fn run(p: &dyn Provider, suite: Suite) {
    let name = p.name();
    p.check(false).await.unwrap_or_else(|e| panic!("{name}: check: {e}"));

    // Missing objects.
    assert!(p.head("missing").await.unwrap_or_else(|e| panic!("{name}: head missing: {e}")).is_none(), "{name}: head of a missing key");
    match p.get("missing", None).await {
        Err(ProviderError::NotFound { .. }) => {}
        other => panic!("{name}: get of a missing key gave {:?}", other.map(|f| f.data.len())),
    }

    // Single puts with awkward keys; reads whole and ranged; head.
    for (i, key) in AWKWARD_KEYS.iter().enumerate() {
        let data = bytes_of(i as u8, 1000 + i);
        p.put(key, data.clone(), crc32c(&data), &attrs()).await.unwrap_or_else(|e| panic!("{name}: put {key:?}: {e}"));
        let got = p.get(key, None).await.unwrap_or_else(|e| panic!("{name}: get {key:?}: {e}"));
        assert_eq!(got.data, data, "{name}: get {key:?} returned other bytes");
        assert_eq!(got.object.size, data.len() as u64, "{name}: get {key:?} size");
        let part = p.get(key, Some(100..200)).await.unwrap_or_else(|e| panic!("{name}: ranged get {key:?}: {e}"));
        assert_eq!(part.data, data.slice(100..200), "{name}: ranged get {key:?}");
        assert_eq!(part.object.size, data.len() as u64, "{name}: ranged get {key:?} reports the whole size");
        let head = p
            .head(key)
            .await
            .unwrap_or_else(|e| panic!("{name}: head {key:?}: {e}"))
            .unwrap_or_else(|| panic!("{name}: head {key:?}: missing"));
        assert_eq!(head.size, data.len() as u64, "{name}: head {key:?} size");
        if suite.keeps_attributes {
            assert_eq!(head.content_type.as_deref(), Some("text/x-ferry"), "{name}: content type of {key:?}");
            assert_eq!(head.metadata.get("origin").map(String::as_str), Some("conformance"), "{name}: metadata of {key:?}");
        }
    }
    let empty = Bytes::new();
    p.put("empty", empty.clone(), crc32c(&empty), &PutAttrs::default()).await.unwrap_or_else(|e| panic!("{name}: put empty: {e}"));
    assert_eq!(p.get("empty", None).await.unwrap_or_else(|e| panic!("{name}: get empty: {e}")).data.len(), 0);

    // Multipart: parts started in order, finished in any order; the last part short.
    let mp = p.multipart().unwrap_or_else(|| panic!("{name}: no multipart capability"));
    let sizes = [5 << 20, 5 << 20, 1234usize];
    let parts: Vec<Bytes> = sizes.iter().enumerate().map(|(i, n)| bytes_of(100 + i as u8, *n)).collect();
    let mut upload = mp
        .start("multi/part object", &attrs(), sizes.iter().sum::<usize>() as u64, "0123456789abcdef0123456789abcdef")
        .await
        .unwrap_or_else(|e| panic!("{name}: start: {e}"));
    let mut offset = 0u64;
    let mut sending = Vec::new();
    for (i, data) in parts.iter().enumerate() {
        sending.push(upload.put_part(i as u32, offset, data.clone(), crc32c(data)));
        offset += data.len() as u64;
    }
    let mut receipts: Vec<PartReceipt> = Vec::new();
    for fut in sending.into_iter().rev() {
        receipts.push(fut.await.unwrap_or_else(|e| panic!("{name}: put part: {e}")));
    }
    receipts.sort_by_key(|r| r.index);
    upload.complete(receipts).await.unwrap_or_else(|e| panic!("{name}: complete: {e}"));
    let whole: Vec<u8> = parts.iter().flat_map(|b| b.iter().copied()).collect();
    let got = p.get("multi/part object", None).await.unwrap_or_else(|e| panic!("{name}: get multipart object: {e}"));
    assert!(got.data == whole, "{name}: multipart object has other bytes ({} vs {})", got.data.len(), whole.len());
    let head = p.head("multi/part object").await.unwrap_or_else(|e| panic!("{name}: head: {e}")).expect("multipart object exists");
    if suite.keeps_attributes {
        assert_eq!(head.content_type.as_deref(), Some("text/x-ferry"), "{name}: multipart content type");
        assert_eq!(head.metadata.get("origin").map(String::as_str), Some("conformance"), "{name}: multipart metadata");
    }

    // An aborted upload leaves nothing visible.
    let mut aborted = mp
        .start("aborted", &PutAttrs::default(), 10 << 20, "fedcba9876543210fedcba9876543210")
        .await
        .unwrap_or_else(|e| panic!("{name}: start: {e}"));
    let data = bytes_of(7, 5 << 20);
    aborted.put_part(0, 0, data.clone(), crc32c(&data)).await.unwrap_or_else(|e| panic!("{name}: put part: {e}"));
    aborted.abort().await.unwrap_or_else(|e| panic!("{name}: abort: {e}"));
    assert!(p.head("aborted").await.expect("head").is_none(), "{name}: an aborted upload became an object");

    // Listing: every key, relative to the prefix, with sizes; nothing else (no temp objects).
    let listed = list_all(p).await;
    let mut expected: BTreeSet<String> = AWKWARD_KEYS.iter().map(|k| k.to_string()).collect();
    expected.insert("empty".into());
    expected.insert("multi/part object".into());
    assert_eq!(listed.keys().cloned().collect::<BTreeSet<_>>(), expected, "{name}: listing");
    assert_eq!(listed["multi/part object"], whole.len() as u64, "{name}: listed size");

    // Delete.
    p.delete("plain.txt").await.unwrap_or_else(|e| panic!("{name}: delete: {e}"));
    assert!(p.head("plain.txt").await.expect("head").is_none(), "{name}: deleted object still there");
    p.delete("plain.txt").await.unwrap_or_else(|e| panic!("{name}: deleting a missing key must succeed: {e}"));
}

/// Every key and size under the provider's location.
pub async fn list_all(p: &dyn Provider) -> BTreeMap<String, u64> {
    use futures::StreamExt;
    let mut out = BTreeMap::new();
    let mut pages = p.list();
    while let Some(page) = pages.next().await {
        for e in page.unwrap_or_else(|e| panic!("{}: list: {e}", p.name())) {
            out.insert(e.key, e.size);
        }
    }
    out
}
