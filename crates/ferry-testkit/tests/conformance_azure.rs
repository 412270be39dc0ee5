//! The Azure adapter against Azurite, reached the documented way: `AZURE_STORAGE_USE_EMULATOR`
//! with `AZURITE_BLOB_STORAGE_URL` (no endpoint flag).

use ferry_providers::Connect;
use ferry_testkit::Azurite;
use ferry_testkit::conformance::{Adapter, ListOrder, Options, run, run_checks};

fn options() -> Options {
    Options {
        limits: ferry_providers::azure::LIMITS,
        keeps_attributes: true,
        list_order: ListOrder::Bytes,
        // Uncommitted blocks are not listable; Azure drops them after a week.
        lists_uploads: false,
        server_copy: true,
        copies_in_parts: false,
        long_segment: true,
        aborts_gone_uploads: true,
        copy_refuses_changed: true,
    }
}

/// One test: the emulator variables are set once, before any runtime starts and while no other
/// thread reads the environment.
#[test]
fn azure_adapter_conforms() {
    let azurite = Azurite::start();
    azurite.create_container("conformance");
    // SAFETY: the only test in this binary; no other thread exists yet that reads the environment.
    unsafe {
        std::env::set_var("AZURE_STORAGE_USE_EMULATOR", "true");
        std::env::set_var("AZURITE_BLOB_STORAGE_URL", &azurite.endpoint);
    }
    run(Adapter::registry("az://conformance/", "az://no-such-container/", Connect::default(), options()));

    // The endpoint flag reaches the same service (it wins over the variables).
    let by_flag = Connect { endpoint: Some(azurite.endpoint.clone()), ..Default::default() };
    run_checks(
        Adapter::registry("az://conformance/flag-", "az://no-such-container/", by_flag, options()),
        &["check_and_missing_bucket", "put_head_get_delete", "server_copy"],
    );
}
