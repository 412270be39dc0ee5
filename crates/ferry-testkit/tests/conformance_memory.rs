//! The testkit's in-memory provider passes the same suite, so engine tests on it stand for the
//! real adapters.

use ferry_providers::{Connect, Provider};
use ferry_testkit::conformance::{Adapter, ListOrder, Open, Options};
use ferry_testkit::memory::{LIMITS, MemoryStore};
use std::sync::Arc;

fn adapter() -> Adapter {
    let store = MemoryStore::new();
    let on = store.clone();
    let open: Open = Arc::new(move |name: String| {
        let p: Arc<dyn Provider> = Arc::new(on.provider(&format!("s3://conformance/{name}/")));
        Box::pin(async move { p })
    });
    let missing: Open = Arc::new(move |_| {
        let p: Arc<dyn Provider> = Arc::new(store.open(ferry_core::Location::parse("s3://no-such-bucket/").unwrap()));
        Box::pin(async move { p })
    });
    let options = Options {
        limits: LIMITS,
        keeps_attributes: true,
        list_order: ListOrder::Bytes,
        lists_uploads: true,
        server_copy: true,
        copies_in_parts: true,
        long_segment: true,
        aborts_gone_uploads: true,
        copy_refuses_changed: true,
    };
    Adapter::new(open, missing, Connect::default(), options)
}

ferry_testkit::conformance_tests!(adapter());
