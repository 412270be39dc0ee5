//! Any string given as SRC or DST: a location or an error, never a panic; a parsed location
//! prints as a URL that parses back to itself, and redaction never fails.
#![no_main]

use ferry_core::location::{Location, redact};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|url: &str| {
    let _ = redact(url);
    if let Ok(location) = Location::parse(url) {
        let printed = location.to_string();
        assert_eq!(Location::parse(&printed).as_ref(), Ok(&location), "{url:?} printed as {printed:?}");
        let _ = location.key_for("a/b");
    }
});
