//! The Azure adapter against Azurite, reached the documented way: `AZURE_STORAGE_USE_EMULATOR`
//! with `AZURITE_BLOB_STORAGE_URL`, no endpoint flag. One test per check, all on one Azurite
//! (the variables are process-wide), each check on locations of its own.

use ferry_providers::Connect;
use ferry_testkit::Azurite;
use ferry_testkit::conformance::{Adapter, ListOrder, Options, run_checks};

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

fn adapter() -> Adapter {
    let azurite = Azurite::shared();
    // Set once, before any test opens a provider; the others wait in `call_once`.
    static EMULATOR: std::sync::Once = std::sync::Once::new();
    EMULATOR.call_once(|| {
        azurite.create_container("conformance");
        // SAFETY: no thread reads the environment until this closure returns (see above).
        unsafe {
            std::env::set_var("AZURE_STORAGE_USE_EMULATOR", "true");
            std::env::set_var("AZURITE_BLOB_STORAGE_URL", &azurite.endpoint);
        }
    });
    Adapter::registry("az://conformance/", "az://no-such-container/", Connect::default(), options())
}

ferry_testkit::conformance_tests!(adapter());

/// The endpoint flag reaches the same service (it wins over the variables).
#[test]
fn the_endpoint_flag_reaches_azurite_too() {
    let by_variables = adapter();
    let by_flag = Connect { endpoint: Some(Azurite::shared().endpoint.clone()), ..by_variables.connect };
    let adapter = Adapter::registry("az://conformance/flag-", "az://no-such-container/", by_flag, options());
    run_checks(adapter, &["check_and_missing_bucket", "put_head_get_delete", "server_copy"]);
}
