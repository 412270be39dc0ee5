//! The local adapter on a temporary directory per check.

use ferry_providers::Connect;
use ferry_testkit::conformance::{Adapter, ListOrder, Options};

fn adapter() -> Adapter {
    let root = tempfile::tempdir().unwrap();
    let options = Options {
        limits: ferry_providers::local::LIMITS,
        // A file keeps its bytes and mode; content type and metadata have nowhere to go.
        keeps_attributes: false,
        list_order: ListOrder::NamesPerFolder,
        lists_uploads: true,
        server_copy: false,
        copies_in_parts: false,
        long_segment: true,
        aborts_gone_uploads: true,
        copy_refuses_changed: true,
    };
    let base = format!("file://{}/", root.path().display());
    Adapter::registry(&base, "file:///nonexistent/ferry/dir", Connect::default(), options).keeping(root)
}

ferry_testkit::conformance_tests!(adapter());
